"""The ``pbx`` command line and the logging setup."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from pbx import log as pbx_log
from pbx.cli import main

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "demo.toml"
GOOD = '[sip]\nlisten = ["udp:127.0.0.1:5060"]\ndomain = "pbx.local"\n'
BAD = '[sip]\nlisten = ["udp:127.0.0.1:5060"]\ndomian = "pbx.local"\n'

# Runs the real CLI in a child process with a stand-in for pbx.pbx (the Pbx it serves), so
# signal handling is exercised for real without binding sockets.
FAKE_SERVER = textwrap.dedent("""
    import asyncio, logging, os, sys, types
    fake = types.ModuleType("pbx.pbx")
    class Pbx:
        def __init__(self, config):
            self.config = config
        async def serve_forever(self):
            mode = os.environ.get("FAKE_MODE", "wait")
            if mode == "oserror":
                raise OSError(98, "Address already in use")
            print("serving", len(self.config.users), logging.getLogger("pbx").level,
                  flush=True)
            try:
                await asyncio.Event().wait()
            finally:
                await asyncio.sleep(0.01)  # cleanup may await
                print("stopped", flush=True)
    fake.Pbx = Pbx
    sys.modules["pbx.pbx"] = fake
    from pbx.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def _write(tmp_path: Path, text: str, name: str = "pbx.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _child(args: list[str], mode: str = "wait") -> subprocess.Popen[str]:
    env = {**os.environ, "FAKE_MODE": mode}
    return subprocess.Popen([sys.executable, "-c", FAKE_SERVER, *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


# check-config -----------------------------------------------------------------------------------

def test_check_config_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(DEMO)]) == 0
    out, err = capsys.readouterr()
    assert out == "ok: 5 users, 1 routes, listeners udp:127.0.0.1:5060, tcp:127.0.0.1:5060\n"
    assert err == ""


def test_check_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, BAD)
    assert main(["check-config", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (f"pbx: {path}:3: [sip.domian] unknown key 'domian' "
                   "(did you mean 'domain'?)\n")


def test_check_config_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(tmp_path / "nope.toml")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["serve"])  # --config is required
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    assert "usage: pbx" in capsys.readouterr().err


def test_python_dash_m_and_console_script(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD)
    proc = subprocess.run([sys.executable, "-m", "pbx", "check-config", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout) == (0, "ok: 0 users, 0 routes, listeners "
                                                 "udp:127.0.0.1:5060\n")
    script = Path(sys.executable).parent / "pbx"
    proc = subprocess.run([str(script), "check-config", str(_write(tmp_path, BAD, "b.toml"))],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "[sip.domian]" in proc.stderr and "Traceback" not in proc.stderr


# serve ------------------------------------------------------------------------------------------

def test_serve_bad_config_exits_2_without_traceback(tmp_path: Path) -> None:
    path = _write(tmp_path, BAD)
    proc = _child(["serve", "--config", str(path)])
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert err.startswith(f"pbx: {path}:3: [sip.domian]")
    assert "Traceback" not in err and "serving" not in out


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_serve_stops_cleanly_on_signal(tmp_path: Path, sig: signal.Signals) -> None:
    proc = _child(["serve", "--config", str(DEMO), "--log-level", "debug"])
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line == f"serving 5 {logging.DEBUG}\n"  # config loaded, --log-level applied
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert out == "stopped\n"  # the serve task was cancelled and its cleanup ran
    assert "Traceback" not in err
    assert f"{signal.Signals(sig).name} received, stopping" in err  # pbx logger at debug


def test_serve_uses_the_configured_log_level(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD + '[log]\nlevel = "error"\n')
    proc = _child(["serve", "--config", str(path)])
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == f"serving 0 {logging.ERROR}\n"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (proc.returncode, out, err) == (0, "stopped\n", "")  # quiet: no info line


def test_serve_runtime_error_exits_1(tmp_path: Path) -> None:
    proc = _child(["serve", "--config", str(_write(tmp_path, GOOD))], mode="oserror")
    out, err = proc.communicate(timeout=60)
    assert (proc.returncode, out) == (1, "")
    assert err == "pbx: [Errno 98] Address already in use\n"


# logging ----------------------------------------------------------------------------------------

@pytest.fixture
def restore_logging() -> Iterator[None]:
    root, ours = logging.getLogger(), logging.getLogger("pbx")
    saved = (root.level, list(root.handlers), ours.level)
    yield
    root.setLevel(saved[0])
    root.handlers[:] = saved[1]
    ours.setLevel(saved[2])
    pbx_log._handler = None


@pytest.mark.usefixtures("restore_logging")
def test_log_json_lines_with_extras() -> None:
    stream = io.StringIO()
    pbx_log.setup("info", "json", stream=stream)
    logging.getLogger("pbx.test").info("hello %s", "world", extra={"call_id": "c1", "n": 2})
    logging.getLogger("pbx.test").debug("hidden")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("pbx.test").exception("failed")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(x) for x in lines)
    assert first["msg"] == "hello world"
    assert (first["level"], first["logger"]) == ("info", "pbx.test")
    assert (first["call_id"], first["n"]) == ("c1", 2)
    assert first["ts"].endswith("Z") and "T" in first["ts"]
    assert "exc" not in first
    assert second["level"] == "error" and "ValueError: boom" in second["exc"]


@pytest.mark.usefixtures("restore_logging")
def test_log_text_is_quiet_outside_pbx() -> None:
    stream = io.StringIO()
    pbx_log.setup("debug", "text", stream=stream)
    pbx_log.setup("debug", "text", stream=stream)  # calling again does not duplicate output
    logging.getLogger("pbx.sip").debug("ours")
    logging.getLogger("asyncio").debug("theirs")
    logging.getLogger("asyncio").warning("their warning")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].endswith("DEBUG pbx.sip: ours")
    assert lines[1].endswith("WARNING asyncio: their warning")


def test_log_setup_rejects_unknown_values() -> None:
    with pytest.raises(ValueError):
        pbx_log.setup("loud")
    with pytest.raises(ValueError):
        pbx_log.setup("info", "xml")


# cdr export -------------------------------------------------------------------------------------

def _cdr_config(tmp_path: Path) -> Path:
    from pbx.cdr import CdrStore, CdrWriter
    from pbx.events import CallAnswered, CallEnded, CallStarted

    config = _write(tmp_path, GOOD + '[cdr]\npath = "cdr/calls.sqlite3"\n')
    with CdrStore(tmp_path / "cdr" / "calls.sqlite3") as store:
        writer = CdrWriter(store)
        for i, (tenant, answered) in enumerate([("a", True), ("a", False), ("b", True)]):
            at = 1_714_550_400.0 + 60 * i          # 2024-05-01T08:00Z, 08:01, 08:02
            writer(CallStarted(call_id=f"c{i}", at=at, tenant=tenant, caller="1001",
                               callee="1002"))
            if answered:
                writer(CallAnswered(call_id=f"c{i}", at=at + 1))
            writer(CallEnded(call_id=f"c{i}", at=at + 5, side="caller"))
    return config


def _ids(csv_text: str) -> list[str]:
    return [line.split(",", 1)[0] for line in csv_text.splitlines()[1:]]


def test_cdr_export_to_stdout_with_filters(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    config = str(_cdr_config(tmp_path))
    assert main(["cdr", "export", "--config", config, "--format", "csv"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("call_id,tenant,caller,callee,dialed,")
    assert (_ids(out), err) == (["c0", "c1", "c2"], "")
    assert main(["cdr", "export", "--config", config, "--since", "2024-05-01T08:01:00+00:00",
                 "--until", "2024-05-01T16:02:00+08:00"]) == 0
    assert _ids(capsys.readouterr().out) == ["c1"]
    assert main(["cdr", "export", "--config", config, "--tenant", "a",
                 "--disposition", "answered"]) == 0
    assert _ids(capsys.readouterr().out) == ["c0"]
    out_file = tmp_path / "x.csv"
    assert main(["cdr", "export", "--config", config, "--out", str(out_file)]) == 0
    assert capsys.readouterr().out == ""
    assert _ids(out_file.read_text(encoding="utf-8")) == ["c0", "c1", "c2"]


def test_cdr_export_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["cdr", "export", "--config", str(DEMO), "--since", "yesterday"])
    assert info.value.code == 2
    assert "not an ISO 8601 time: 'yesterday'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["cdr", "export", "--config", str(DEMO), "--format", "xml"])
    assert info.value.code == 2
    capsys.readouterr()
    config = _write(tmp_path, GOOD)                     # no call records written yet
    assert main(["cdr", "export", "--config", str(config)]) == 1
    assert capsys.readouterr().err == f"pbx: no call records at {tmp_path / 'cdr.sqlite3'}\n"
    assert not (tmp_path / "cdr.sqlite3").exists()      # export never creates the database
    assert main(["cdr", "export", "--config", str(_write(tmp_path, BAD, "bad.toml"))]) == 2
    assert "[sip.domian]" in capsys.readouterr().err
    config = _cdr_config(tmp_path)
    assert main(["cdr", "export", "--config", str(config), "--out",
                 str(tmp_path / "no" / "such" / "dir.csv")]) == 1
    assert "No such file or directory" in capsys.readouterr().err
