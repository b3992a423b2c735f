"""A real ``pbx serve`` in a subprocess, free loopback ports, and a minimal SIP OPTIONS probe.

``PbxProcess.start()`` writes nothing: give it a config written by ``write_config``. It returns
once the server answers an OPTIONS over UDP with 200 (or raises, with the server's stderr, if the
server exits or stays silent past the deadline). ``stop()`` sends SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PbxProcess", "PortAllocator", "options_ping", "wait_bound", "write_config"]

DOMAIN = "pbx.local"


# Ports ------------------------------------------------------------------------------------------

def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _free(port: int) -> bool:
    """True if ``port`` can be bound on 127.0.0.1 for both UDP and TCP right now."""
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


class PortAllocator:
    """Hands out blocks of consecutive loopback ports free for UDP and TCP, never twice.

    Ports come from below the kernel's ephemeral range, so the clients' own sockets (SIPp's,
    the server's outgoing TCP) cannot take them between allocation and use.
    """

    def __init__(self, low: int = 20000, high: int | None = None, seed: int | None = None) -> None:
        self.low = low
        self.high = min(high or 32000, _ephemeral_low()) - 1
        self._used: set[int] = set()
        self._rng = random.Random(seed if seed is not None else os.getpid() ^ time.time_ns())

    def block(self, size: int = 1) -> int:
        """First port of ``size`` consecutive free ports."""
        for _ in range(2000):
            base = self._rng.randrange(self.low, self.high - size)
            span = range(base, base + size)
            if any(p in self._used for p in span):
                continue
            if all(_free(p) for p in span):
                self._used.update(span)
                return base
        raise RuntimeError(f"no {size} consecutive free loopback ports in {self.low}-{self.high}")

    def port(self) -> int:
        return self.block(1)


def _bound(port: int, proto: str) -> bool:
    """True if something holds 127.0.0.1:``port`` (``proto`` udp: bound; tcp: listening)."""
    want = f"0100007F:{port:04X}"
    try:
        lines = Path(f"/proc/net/{proto}").read_text().splitlines()[1:]
    except OSError:
        return False
    for line in lines:
        cols = line.split()
        if len(cols) > 3 and cols[1] == want and (proto == "udp" or cols[3] == "0A"):
            return True
    return False


def wait_bound(port: int, proto: str = "udp", timeout: float = 5.0) -> None:
    """Wait until a server socket is bound on 127.0.0.1:``port`` (a peer about to be called)."""
    end = time.monotonic() + timeout
    while not _bound(port, proto):
        if time.monotonic() > end:
            raise AssertionError(f"nothing listening on {proto}:127.0.0.1:{port} "
                                 f"after {timeout:g} s")
        time.sleep(0.02)


# Config -----------------------------------------------------------------------------------------

def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return _toml_str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def write_config(path: Path, *, port: int, transports: Sequence[str] = ("udp", "tcp"),
                 domain: str = DOMAIN, nonce_ttl: int = 300, t1: float = 0.5,
                 users: Mapping[str, str] | None = None,
                 routes: Iterable[tuple[str, str]] = (), log_level: str = "info",
                 sip_extra: Mapping[str, object] | None = None,
                 extra_users: Mapping[str, Mapping[str, str]] | None = None) -> Path:
    """Write a ``pbx serve`` TOML config to ``path`` (the store file sits next to it)."""
    users = {"1001": "secret1001", "1002": "secret1002"} if users is None else users
    sip: dict[str, object] = {
        "listen": [f"{t}:127.0.0.1:{port}" for t in transports],
        "domain": domain,
        "nonce_ttl": nonce_ttl,
        "t1": t1,
        "trusted": ["127.0.0.0/8"],   # SIPp's UAC calls routes without credentials
    }
    sip.update(sip_extra or {})
    lines = ["[sip]"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in sip.items()]
    lines += ["", "[store]", 'path = "pbx.sqlite3"', "", "[log]", f"level = {_toml_str(log_level)}"]
    for user, password in users.items():
        lines += ["", "[[users]]", f"user = {_toml_str(user)}", f"password = {_toml_str(password)}"]
    for user, fields in (extra_users or {}).items():   # e.g. {"ha1_sha256": "..."}
        lines += ["", "[[users]]", f"user = {_toml_str(user)}"]
        lines += [f"{k} = {_toml_str(v)}" for k, v in fields.items()]
    for match, to in routes:
        lines += ["", "[[routes]]", f"match = {_toml_str(match)}", f"to = {_toml_str(to)}"]
    path.write_text("\n".join(lines) + "\n")
    return path


# OPTIONS probe ----------------------------------------------------------------------------------

def options_ping(port: int, *, user: str | None = None, host: str = "127.0.0.1",
                 timeout: float = 0.5) -> int | None:
    """Send one OPTIONS over UDP to ``host:port`` (Request-URI ``sip:[user@]host:port``) and
    return the final status code, or None if no final response came within ``timeout``."""
    tag, branch, call_id = secrets.token_hex(4), secrets.token_hex(6), secrets.token_hex(8)
    target = f"sip:{user + '@' if user else ''}{host}:{port}"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        lport = s.getsockname()[1]
        msg = (f"OPTIONS {target} SIP/2.0\r\n"
               f"Via: SIP/2.0/UDP 127.0.0.1:{lport};rport;branch=z9hG4bK{branch}\r\n"
               f"Max-Forwards: 70\r\n"
               f"From: <sip:probe@127.0.0.1:{lport}>;tag={tag}\r\n"
               f"To: <{target}>\r\n"
               f"Call-ID: {call_id}@127.0.0.1\r\n"
               f"CSeq: 1 OPTIONS\r\n"
               f"Contact: <sip:probe@127.0.0.1:{lport}>\r\n"
               f"Accept: application/sdp\r\n"
               f"Content-Length: 0\r\n\r\n").encode()
        s.sendto(msg, (host, port))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            s.settimeout(left)
            try:
                data, _ = s.recvfrom(65536)
            except (TimeoutError, ConnectionRefusedError):
                return None
            first, _, rest = data.partition(b"\r\n")
            parts = first.split()
            if len(parts) < 2 or parts[0] != b"SIP/2.0" or call_id.encode() not in rest:
                continue
            status = int(parts[1])
            if status >= 200:
                return status
    return None


# The server -------------------------------------------------------------------------------------

@dataclass
class PbxProcess:
    config: Path
    port: int
    prefix: Sequence[str] = ()         # e.g. ("taskset", "-c", "0") to pin the server
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0

    @property
    def stderr_path(self) -> Path:
        return self.config.with_name(self.config.stem + ".stderr")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, deadline: float = 15.0) -> PbxProcess:
        err = self.stderr_path.open("wb")
        self.proc = subprocess.Popen(
            [*self.prefix, sys.executable, "-m", "pbx", "serve", "--config", str(self.config)],
            stdin=subprocess.DEVNULL, stdout=err, stderr=subprocess.STDOUT,
            cwd=self.config.parent, start_new_session=True)
        err.close()
        self.started = time.monotonic()
        end = self.started + deadline
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise AssertionError(f"pbx serve exited with {self.proc.returncode} during "
                                     f"start-up\n{self.stderr()}")
            if options_ping(self.port, timeout=0.2) == 200:
                return self
        self.stop()
        raise AssertionError(f"pbx serve did not answer OPTIONS with 200 on udp:127.0.0.1:"
                             f"{self.port} within {deadline:g} s\n{self.stderr()}")

    def stop(self, grace: float = 5.0) -> int | None:
        """SIGTERM, wait up to ``grace`` s, then SIGKILL; returns the exit status."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        return proc.returncode

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stderr(self, tail: int = 200) -> str:
        try:
            lines = self.stderr_path.read_text(errors="replace").splitlines()
        except OSError:
            return "[no pbx stderr]"
        return (f"--- pbx serve stderr ({self.stderr_path}, last {tail} lines) ---\n"
                + "\n".join(lines[-tail:]))

    def cpu_seconds(self) -> float:
        """utime + stime of the server process so far, from /proc/<pid>/stat."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
