"""The compiled kernels (``pbx._dsp``), or ``None`` when absent or disabled.

``PBX_NO_EXTENSIONS=1`` disables them so the pure-Python twins run instead. Modules with a C
kernel do ``from pbx.media._native import ffi, lib`` and fall back to their twin when ``lib``
is ``None``.
"""

from __future__ import annotations

import os
from typing import Any


def _load() -> tuple[Any, Any]:
    if os.environ.get("PBX_NO_EXTENSIONS", "") not in ("", "0"):
        return None, None
    try:
        from pbx import _dsp  # type: ignore[attr-defined, unused-ignore]
    except ImportError:
        return None, None
    return _dsp.ffi, _dsp.lib


ffi, lib = _load()
IMPLEMENTATION: str = "c" if lib is not None else "py"
