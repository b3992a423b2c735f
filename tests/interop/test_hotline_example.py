"""examples/hotline.py as a caller uses it: greeting, menu, a digit, bridged to the desk.

The example's app runs on a test PBX whose extension 1002 is a SIPp callee ([[routes]]); the
caller (SIPp) answers the menu with a SIP INFO digit 2 and hangs up after talking."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

from pbx.config import parse_config
from pbx.pbx import Pbx

from .pbxproc import PortAllocator
from .sipp import SCENARIOS, SippProcess

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hotline.py"


def test_hotline_example(tmp_path: Path, ports: PortAllocator, run_sipp: object) -> None:
    assert len(EXAMPLE.read_text().splitlines()) < 40
    spec = importlib.util.spec_from_file_location("hotline_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    port, desk_port = ports.port(), ports.port()
    config = parse_config(f"""
[sip]
listen = ["udp:127.0.0.1:{port}"]
domain = "pbx.test"
trusted = ["127.0.0.0/8"]
[store]
path = "pbx.sqlite3"
[[routes]]
match = "^1002$"
to = "sip:desk@127.0.0.1:{desk_port}"
""", tmp_path / "pbx.toml")

    async def main() -> None:
        pbx = Pbx(config)
        pbx.route("4000", module.hotline, name="hotline")
        async with pbx:
            desk: SippProcess = run_sipp(  # type: ignore[operator]
                "desk", scenario=SCENARIOS / "b2b_uas_answer.xml", local_port=desk_port,
                calls=1, timeout=40)
            caller: SippProcess = run_sipp(  # type: ignore[operator]
                "caller", scenario=SCENARIOS / "b2b_uac_info.xml",
                remote=f"127.0.0.1:{port}", service="4000", calls=1, timeout=40,
                extra=["-key", "digit", "2"])
            for proc in (caller, desk):
                (await asyncio.to_thread(proc.wait)).check(1)
            assert pbx.cdr is not None
            for _ in range(100):
                records = [r for r in pbx.cdr.query() if r.disposition != "in progress"]
                if records:
                    break
                await asyncio.sleep(0.05)
        [record] = records
        assert record.path == ["hotline", "menu:2"], record
        assert record.disposition == "answered" and record.hangup_side == "caller"
        assert record.callee == "1002"

    asyncio.run(main())
