"""pbx: a telephone exchange you import.

An asyncio SIP stack (registrar, proxy, B2BUA), an RTP media engine with a C hot path, and
call-center building blocks. See README.md for the quick start::

    from pbx import Pbx

    pbx = Pbx("pbx.toml")

    @pbx.route("4000")
    async def hotline(call):
        await call.answer()
        await call.say("Hello")
"""

from typing import Any

from pbx.errors import CallHungUp, ConfigError, DialFailed, ParseError, PbxError

__all__ = ["Call", "CallHungUp", "ConfigError", "DialFailed", "Leg", "ParseError", "Pbx",
           "PbxError", "__version__"]
__version__ = "0.1.0"

_LAZY = {"Pbx": "pbx.pbx", "Call": "pbx.call", "Leg": "pbx.call"}


def __getattr__(name: str) -> Any:
    """``Pbx``, ``Call`` and ``Leg`` load on first use (the CLI's ``check-config`` needs none)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pbx' has no attribute {name!r}")
    import importlib
    return getattr(importlib.import_module(module), name)
