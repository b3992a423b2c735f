"""Headless baresip softphones driven through the ctrl_tcp module (see /work/shared/PEERS.md).

Each ``Baresip`` has its own config folder, SIP port (baresip also binds TLS on port + 1, so
callers space instances by 10), RTP port range and ctrl_tcp port, all on 127.0.0.1. The phone
plays a WAV into its calls (aufile) and the sndfile module writes what it sent and what it heard
(``dump-*-enc.wav`` / ``dump-*-dec.wav``) into ``snd_dir``. Commands and events are JSON
netstrings on the ctrl_tcp socket: no terminal, no fixed sleeps.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Baresip", "BaresipError"]

MODULE_PATH = "/usr/lib/baresip/modules"


class BaresipError(AssertionError):
    pass


@dataclass
class Baresip:
    name: str
    workdir: Path                  # config folder, log and recordings live under it
    sip_port: int
    ctrl_port: int
    rtp_ports: tuple[int, int]
    account: str                   # the whole accounts line
    audio_source: Path
    process: subprocess.Popen[bytes] | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    _sock: socket.socket | None = None
    _buf: bytes = b""
    _token: int = 0

    @property
    def config_dir(self) -> Path:
        return self.workdir / "config"

    @property
    def snd_dir(self) -> Path:
        return self.workdir / "snd"

    @property
    def log_path(self) -> Path:
        return self.workdir / "baresip.log"

    def write_config(self) -> None:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.snd_dir.mkdir(parents=True, exist_ok=True)
        lines = [
            "poll_method epoll",
            f"sip_listen 127.0.0.1:{self.sip_port}",
            "net_interface 127.0.0.1",
            f"audio_source aufile,{self.audio_source}",
            "audio_player aufile,/dev/null",
            "audio_alert aufile,/dev/null",
            "audio_srate 8000",
            "audio_channels 1",
            f"rtp_ports {self.rtp_ports[0]}-{self.rtp_ports[1]}",
            f"module_path {MODULE_PATH}",
            "module g711.so",
            "module aufile.so",
            "module sndfile.so",
            "module account.so",
            "module menu.so",
            "module ctrl_tcp.so",
            f"ctrl_tcp_listen 127.0.0.1:{self.ctrl_port}",
            f"snd_path {self.snd_dir}",
        ]
        (self.config_dir / "config").write_text("\n".join(lines) + "\n")
        (self.config_dir / "accounts").write_text(self.account + "\n")
        # an empty contacts file keeps baresip from writing a template one
        (self.config_dir / "contacts").write_text("")

    def start(self, *, lifetime: float, connect_timeout: float = 5.0) -> None:
        """Start baresip (it quits by itself after ``lifetime`` seconds) and connect ctrl_tcp."""
        self.write_config()
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            ["baresip", "-f", str(self.config_dir), "-t", str(int(lifetime))],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            cwd=self.workdir, start_new_session=True)
        log.close()
        deadline = time.monotonic() + connect_timeout
        while True:
            if self.process.poll() is not None:
                raise BaresipError(f"{self.name}: baresip exited with {self.process.returncode}"
                                   f" during start-up\n{self.output()}")
            try:
                self._sock = socket.create_connection(("127.0.0.1", self.ctrl_port), timeout=0.2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise BaresipError(f"{self.name}: ctrl_tcp on 127.0.0.1:{self.ctrl_port} "
                                       f"not reachable\n{self.output()}") from None
                time.sleep(0.05)

    # ctrl_tcp -----------------------------------------------------------------------------------
    def _send(self, obj: dict[str, Any]) -> None:
        assert self._sock is not None
        data = json.dumps(obj).encode()
        self._sock.sendall(b"%d:%s," % (len(data), data))

    def _read_one(self, timeout: float) -> dict[str, Any] | None:
        """The next JSON message, or None if none arrived within ``timeout``."""
        assert self._sock is not None
        deadline = time.monotonic() + timeout
        while True:
            colon = self._buf.find(b":")
            if colon > 0:
                size = int(self._buf[:colon])
                end = colon + 1 + size
                if len(self._buf) > end:
                    payload, self._buf = self._buf[colon + 1:end], self._buf[end + 1:]
                    msg: dict[str, Any] = json.loads(payload)
                    if msg.get("event"):
                        self.events.append(msg)
                    return msg
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._sock.settimeout(left)
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                return None
            if not chunk:
                raise BaresipError(f"{self.name}: ctrl_tcp closed\n{self.output()}")
            self._buf += chunk

    def command(self, command: str, params: str = "", timeout: float = 5.0) -> dict[str, Any]:
        """Run a command (a menu command name without the slash); returns its response."""
        self._token += 1
        token = f"{self.name}-{self._token}"
        self._send({"command": command, "params": params, "token": token})
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            msg = self._read_one(left)
            if msg is not None and msg.get("response") and msg.get("token") == token:
                if not msg.get("ok"):
                    raise BaresipError(f"{self.name}: {command} {params!r} failed: {msg}")
                return msg
        raise BaresipError(f"{self.name}: no response to {command!r}\n{self.output()}")

    def wait_event(self, type_: str, timeout: float) -> dict[str, Any]:
        """The first event of ``type_`` (seen before or arriving within ``timeout``)."""
        for ev in self.events:
            if ev.get("type") == type_:
                return ev
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            msg = self._read_one(left)
            if msg is not None and msg.get("event") and msg.get("type") == type_:
                return msg
        seen = [e.get("type") for e in self.events]
        raise BaresipError(f"{self.name}: no {type_} event within {timeout:g} s "
                           f"(events seen: {seen})\n{self.output()}")

    def wait_events(self, type_: str, count: int, timeout: float) -> list[dict[str, Any]]:
        """The first ``count`` events of ``type_`` (seen before or arriving within ``timeout``),
        e.g. ``CALL_DTMF_START`` once per digit received, the digit in ``param``."""
        deadline = time.monotonic() + timeout
        while True:
            found = [ev for ev in self.events if ev.get("type") == type_]
            if len(found) >= count:
                return found[:count]
            left = deadline - time.monotonic()
            if left <= 0:
                raise BaresipError(f"{self.name}: {len(found)} of {count} {type_} events within "
                                   f"{timeout:g} s ({found})\n{self.output()}")
            self._read_one(left)

    # shutdown and results -----------------------------------------------------------------------
    def stop(self, timeout: float = 5.0) -> int | None:
        """Ask baresip to quit, then SIGTERM, then SIGKILL; returns its exit status."""
        proc = self.process
        if proc is None:
            return None
        if proc.poll() is None and self._sock is not None:
            with contextlib.suppress(OSError, BaresipError):
                self._send({"command": "quit", "params": "", "token": "quit"})
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout)
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout)
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        return proc.returncode

    def output(self, tail: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return f"[{self.name}: no output]"
        # status lines are rewritten in place with \r: keep the last state of each line
        lines = [line.rsplit("\r", 1)[-1] for line in text.splitlines()]
        return f"--- {self.name} baresip output (last {tail} lines) ---\n" + "\n".join(lines[-tail:])

    def recordings(self, kind: str) -> list[Path]:
        """The sndfile dumps of ``kind`` 'dec' (heard) or 'enc' (sent), oldest first."""
        return sorted(self.snd_dir.glob(f"dump-*-{kind}.wav"))
