"""The README's library quick start runs as printed (on free ports) and prints 200."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.interop

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_quick_start_runs(tmp_path: Path, ports) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "README has no python block"
    code = blocks[0]
    for old in ("5070", "5071", "5090"):
        assert old in code
        code = code.replace(old, str(ports.port()))
    script = tmp_path / "quickstart.py"
    script.write_text(code)
    out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["200"], out.stdout + out.stderr
    assert (tmp_path / "pbx.sqlite3").exists()          # the embedded store, beside the config
