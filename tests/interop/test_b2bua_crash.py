"""kill -9 with calls up: a restarted ``pbx serve`` closes their records as ``interrupted``.

SIPp sets up 20 calls to a ``[[numbers]]`` entry that dials a SIPp callee (B2BUA, two legs
each) and holds them; once the call records show all 20 answered and in progress, the server
is killed with SIGKILL (no chance to close anything) and started again on the same config. The
records must then hold exactly those 20 calls, each closed as ``interrupted`` with an end time
no earlier than its answer and no later than the restart.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from pbx.cdr import CallRecord, CdrStore, Disposition
from pbx.config import load_config

from .conftest import SippFactory
from .pbxproc import PbxProcess, PortAllocator, write_config

pytestmark = pytest.mark.interop

CALLS = 20
NUMBER = "7000"


def _config(tmp_path: Path, port: int, callee: str) -> Path:
    """A server config whose number ``NUMBER`` dials ``callee`` and bridges."""
    path = write_config(tmp_path / "pbx.toml", port=port, transports=("udp",), users={})
    with path.open("a") as f:
        f.write(f'\n[[numbers]]\nnumber = "{NUMBER}"\napp = "dial:{callee}"\n')
    return path


def _answered(store: CdrStore) -> list[CallRecord]:
    """Records of calls answered and still in progress."""
    return [r for r in store.query(disposition=Disposition.IN_PROGRESS)
            if r.answer_time is not None]


def test_kill_9_with_20_calls_up_closes_them_as_interrupted(
        tmp_path: Path, ports: PortAllocator, run_sipp: SippFactory) -> None:
    port, uas_port = ports.port(), ports.port()
    callee = f"sip:uas@127.0.0.1:{uas_port}"
    config = _config(tmp_path, port, callee)
    cdr_path = load_config(config).cdr_path
    server = PbxProcess(config, port).start()
    try:
        run_sipp("uas", scenario="uas", local_port=uas_port, calls=CALLS, timeout=60,
                 trace_msg=False)
        uac = run_sipp("uac", scenario="uac", remote=f"127.0.0.1:{port}", service=NUMBER,
                       calls=CALLS, rate=50, timeout=60, trace_msg=False,
                       extra=["-d", "60000"])          # held far longer than the test
        with CdrStore(cdr_path, create=False) as store:
            deadline = time.monotonic() + 10
            while len(up := _answered(store)) < CALLS and time.monotonic() < deadline:
                assert uac.proc.poll() is None, uac.wait().describe()
                time.sleep(0.1)
        assert len(up) == CALLS, (f"{len(up)} of {CALLS} calls answered in the records"
                                  f"\n{server.stderr(40)}")
        up_ids = {r.call_id for r in up}

        assert server.proc is not None
        server.proc.send_signal(signal.SIGKILL)
        assert server.proc.wait(5) == -signal.SIGKILL
        killed_at = time.time()

        server = PbxProcess(config, port).start()      # recovery runs before it answers
        restarted_at = time.time()
        with CdrStore(cdr_path, create=False) as store:
            records = store.query()
    finally:
        server.stop()

    assert {r.call_id for r in records} == up_ids, f"records: {records}"
    assert len(records) == CALLS
    for r in records:
        assert r.disposition == Disposition.INTERRUPTED, r
        assert r.dialed == NUMBER and r.caller == "sipp", r
        assert r.answer_time is not None and r.end_time is not None, r
        assert r.answer_time <= r.end_time <= killed_at <= restarted_at, r
        assert r.hangup_cause == "pbx restarted", r
        assert r.duration == pytest.approx(r.end_time - r.start_time, abs=1e-3)
        caller, called = r.legs[0], r.legs[1]
        assert caller.role == "caller" and called.party == callee, r.legs
        assert called.answer_time is not None and called.end_time == r.end_time, r.legs
