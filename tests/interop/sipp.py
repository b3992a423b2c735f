"""Running SIPp (3.6.1) from tests: bounded runs, their statistics and their message traces.

Every run gets ``-m`` (call count), ``-timeout`` with ``-timeout_error`` (a run that hits the
global timeout fails), ``-nostdin``, ``-trace_err`` and ``-trace_msg`` into the test's directory,
and binds only 127.0.0.1 (SIP, media and the remote-control socket, which SIPp otherwise opens on
0.0.0.0:8888). SIPp's exit code 0 means every call succeeded; 1 that at least one failed; 255 a
fatal error (bad scenario, timeout). ``SippResult.check()`` asserts success and says why not.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["SCENARIOS", "SipMessage", "SippProcess", "SippResult", "parse_message_log", "sipp"]

SCENARIOS = Path(__file__).parent / "scenarios"


@dataclass(frozen=True)
class SipMessage:
    """One message from a SIPp ``-trace_msg`` log."""

    direction: str                 # "sent" | "received"
    transport: str                 # "UDP" | "TCP"
    text: str

    @property
    def start_line(self) -> str:
        return self.text.split("\r\n", 1)[0].split("\n", 1)[0].strip()

    @property
    def is_response(self) -> bool:
        return self.start_line.startswith("SIP/2.0 ")

    @property
    def status(self) -> int | None:
        return int(self.start_line.split()[1]) if self.is_response else None

    @property
    def method(self) -> str:
        """Request method, or the CSeq method of a response."""
        if self.is_response:
            return (self.header("CSeq") or " ").split()[-1]
        return self.start_line.split()[0]

    @property
    def request_uri(self) -> str | None:
        return None if self.is_response else self.start_line.split()[1]

    def headers(self, name: str) -> list[str]:
        """Every value of header ``name`` (case-insensitive; compact forms not expanded)."""
        out = []
        head = re.split(r"\r?\n\r?\n", self.text, maxsplit=1)[0]
        for line in re.split(r"\r?\n", head)[1:]:
            key, sep, value = line.partition(":")
            if sep and key.strip().lower() == name.lower():
                out.append(value.strip())
        return out

    def header(self, name: str) -> str | None:
        values = self.headers(name)
        return values[0] if values else None

    @property
    def call_id(self) -> str | None:
        return self.header("Call-ID") or self.header("i")

    @property
    def top_branch(self) -> str | None:
        via = self.header("Via") or self.header("v") or ""
        m = re.search(r";\s*branch=([^;,\s]+)", via)
        return m.group(1) if m else None


_LOG_SPLIT = re.compile(r"^-{20,} .*$", re.MULTILINE)
_LOG_HEAD = re.compile(r"^\s*(UDP|TCP|TLS|SCTP) message (sent|received)\b[^\n]*:\s*\n", re.IGNORECASE)


def parse_message_log(path: Path) -> list[SipMessage]:
    """The messages of a ``-message_file`` written by ``-trace_msg``, in order."""
    if not path.exists():
        return []
    out: list[SipMessage] = []
    for chunk in _LOG_SPLIT.split(path.read_text(errors="replace")):
        m = _LOG_HEAD.match(chunk)
        if m is None:
            continue
        body = chunk[m.end():].lstrip("\r\n")
        out.append(SipMessage(m.group(2).lower(), m.group(1).upper(), body.rstrip() + "\r\n"))
    return out


@dataclass
class SippResult:
    name: str
    args: list[str]
    returncode: int
    stdout: str
    workdir: Path
    elapsed: float
    counters: dict[str, int] = field(default_factory=dict)

    @property
    def successful(self) -> int:
        return self.counters.get("Successful call", -1)

    @property
    def failed(self) -> int:
        return self.counters.get("Failed call", -1)

    @property
    def error_log(self) -> Path:
        return self.workdir / f"{self.name}.errors.log"

    @property
    def message_log(self) -> Path:
        return self.workdir / f"{self.name}.messages.log"

    def errors(self) -> str:
        try:
            return self.error_log.read_text(errors="replace")
        except OSError:
            return ""

    def messages(self) -> list[SipMessage]:
        return parse_message_log(self.message_log)

    def describe(self, trace_lines: int = 120) -> str:
        """Everything needed to diagnose a failed run: command, exit code, counters, the tail of
        the error log and of the message trace."""
        screen = self._screen()
        errors = self.errors().strip().splitlines()
        trace = []
        with contextlib.suppress(OSError):
            trace = self.message_log.read_text(errors="replace").splitlines()
        return "\n".join([
            f"sipp {self.name}: exit code {self.returncode} after {self.elapsed:.1f} s; "
            f"successful {self.successful}, failed {self.failed}",
            "command: " + " ".join(self.args),
            "--- final screen ---", screen,
            f"--- errors ({self.error_log.name}, last 30 lines) ---", *errors[-30:],
            f"--- message trace ({self.message_log.name}, last {trace_lines} lines) ---",
            *trace[-trace_lines:],
        ])

    def _screen(self) -> str:
        """The last 'Scenario Screen' SIPp printed (the per-message counters table)."""
        text = self.stdout
        i = text.rfind("Scenario Screen")
        j = text.find("Statistics Screen", i)
        return text[i:j].strip() if i >= 0 else text[-3000:]

    def check(self, calls: int) -> SippResult:
        """Assert the run ended with exit code 0 and exactly ``calls`` successful calls (SIPp's
        exit code 0 and its own counters must agree)."""
        ok = self.returncode == 0 and self.successful == calls and self.failed == 0
        assert ok, f"expected {calls} successful calls and exit code 0\n{self.describe()}"
        return self


_COUNTER = re.compile(r"^\s*(Successful call|Failed call|Total Calls created|"
                      r"Outgoing calls created|Incoming calls created)\s*\|(.*)$", re.MULTILINE)


def _parse_counters(stdout: str) -> dict[str, int]:
    """Cumulative counters from the last statistics screen SIPp printed on exit."""
    out: dict[str, int] = {}
    for m in _COUNTER.finditer(stdout):
        cells = [c.strip() for c in m.group(2).split("|")]
        value = cells[-1] if cells and cells[-1] else (cells[0] if cells else "")
        num = re.match(r"\d+", value)
        if num:
            out[m.group(1)] = int(num.group())
    return out


def sipp_args(name: str, workdir: Path, *, scenario: str | Path, remote: str | None = None,
              local_port: int, control_port: int, media_port: int, calls: int,
              timeout: float, transport: str = "u1", service: str | None = None,
              inf: Path | None = None, rate: float | None = None, rate_period_ms: int = 1000,
              limit: int | None = None, extra: Sequence[str] = (), trace_msg: bool = True,
              prefix: Sequence[str] = ()) -> list[str]:
    """The command line for one bounded SIPp run (see the module docstring). ``trace_msg``
    False drops the message trace (load runs); ``prefix`` goes first (e.g. taskset)."""
    args = [*prefix, "sipp"]
    if remote:
        args.append(remote)
    if isinstance(scenario, Path) or str(scenario).endswith(".xml"):
        args += ["-sf", str(scenario)]
    else:
        args += ["-sn", str(scenario)]
    if transport == "tn":  # SIPp refuses to start if its socket cap exceeds ulimit -n
        args += ["-max_socket", "1000"]
    args += ["-i", "127.0.0.1", "-p", str(local_port), "-t", transport,
             "-mi", "127.0.0.1", "-mp", str(media_port),
             "-ci", "127.0.0.1", "-cp", str(control_port),
             "-m", str(calls), "-timeout", f"{max(1, round(timeout))}s", "-timeout_error",
             "-nostdin",
             "-trace_err", "-error_file", str(workdir / f"{name}.errors.log")]
    if trace_msg:
        args += ["-trace_msg", "-message_file", str(workdir / f"{name}.messages.log")]
    if service:
        args += ["-s", service]
    if inf:
        args += ["-inf", str(inf)]
    if rate is not None:
        args += ["-r", f"{rate:g}", "-rp", str(rate_period_ms)]
    if limit is not None:
        args += ["-l", str(limit)]
    args += list(extra)
    return args


class SippProcess:
    """A SIPp run in the background (a UAS); ``wait()`` gives its ``SippResult``."""

    def __init__(self, name: str, workdir: Path, args: list[str], timeout: float) -> None:
        self.name = name
        self.workdir = workdir
        self.args = args
        self.timeout = timeout
        self.started = time.monotonic()
        self._out = (workdir / f"{name}.stdout").open("wb")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self._out,
                                     stderr=subprocess.STDOUT, cwd=workdir,
                                     start_new_session=True)

    def wait(self, timeout: float | None = None) -> SippResult:
        """Wait for exit (at most ``timeout`` s, default the run's own timeout + 10 s); a run
        that outlives it is killed and reported with exit code -9."""
        try:
            self.proc.wait(self.timeout + 10 if timeout is None else timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        return self._result()

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def _result(self) -> SippResult:
        self._out.close()
        stdout = (self.workdir / f"{self.name}.stdout").read_text(errors="replace")
        rc = self.proc.returncode if self.proc.returncode is not None else -9
        return SippResult(self.name, self.args, rc, stdout, self.workdir,
                          time.monotonic() - self.started, _parse_counters(stdout))

    def __enter__(self) -> SippProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


def sipp(name: str, workdir: Path, **kw: object) -> SippProcess:
    """Start one bounded SIPp run named ``name`` (files ``name.*`` in ``workdir``).

    Keyword arguments are those of ``sipp_args``. Call ``.wait()`` on the result (or use it as a
    context manager, which kills a run still going when the block ends).
    """
    timeout = float(kw["timeout"])  # type: ignore[arg-type]
    args = sipp_args(name, workdir, **kw)  # type: ignore[arg-type]
    return SippProcess(name, workdir, args, timeout)


def by_call(messages: Sequence[SipMessage]) -> Iterator[tuple[str, list[SipMessage]]]:
    """Messages grouped by Call-ID, in order of first appearance."""
    groups: dict[str, list[SipMessage]] = {}
    for msg in messages:
        groups.setdefault(msg.call_id or "", []).append(msg)
    yield from groups.items()
