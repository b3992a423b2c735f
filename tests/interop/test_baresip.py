"""Two headless baresip phones register to the pbx with passwords and call each other through it;
the speech each one plays must come out of the other one's decoder.

The caller plays a sentence and hangs up when its file ends (baresip's menu ends the call on the
audio source's end of file); the callee answers automatically and plays a shorter sentence padded
with silence. Measured: normalised cross-correlation (``audio.xcorr_peak``) of each played WAV
against the other side's ``dump-*-dec.wav``; a clean G.711 path gives about 0.99.

The same call made directly, phone to phone with no registrar, is the baseline: if it passes and
the call through the pbx fails, the pbx is at fault, not the harness.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from .audio import Correlation, level_dbfs, make_speech, read_wav, xcorr_peak
from .baresip import Baresip
from .pbxproc import PortAllocator, options_ping

pytestmark = pytest.mark.interop

PASSWORDS = {"1001": "caller-secret-1001", "1002": "callee-secret-1002"}
MIN_PEAK = 0.8
MIN_LEVEL_DBFS = -40.0


@dataclass
class Heard:
    direction: str
    corr: Correlation
    level: float
    seconds: float

    def __str__(self) -> str:
        return (f"{self.direction}: peak {self.corr.peak:.4f} at lag "
                f"{self.corr.lag_seconds * 1000:.0f} ms, level {self.level:.1f} dBFS, "
                f"{self.seconds:.2f} s recorded")


def wait_registered(port: int, user: str, phones: list[Baresip], timeout: float = 10.0) -> float:
    """Poll the pbx with OPTIONS to ``user`` until it is routed to the phone and answered 200
    (480 while unregistered); returns the seconds it took."""
    start = time.monotonic()
    last = None
    while time.monotonic() - start < timeout:
        last = options_ping(port, user=user, timeout=0.5)
        if last == 200:
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"{user} not reachable through the pbx after {timeout:g} s "
                         f"(last OPTIONS status {last})\n"
                         + "\n".join(p.output() for p in phones))


def call_and_measure(tmp_path: Path, ports: PortAllocator, account: Callable[[str, int], str],
                     dial: Callable[[int], str],
                     ready: Callable[[list[Baresip]], None] = lambda phones: None) -> list[Heard]:
    """Caller 1001 dials callee 1002; returns what each side heard of the other's speech.

    ``account(user, sip_port)`` is the accounts line, ``dial(callee_sip_port)`` the URI the
    caller dials, ``ready(phones)`` waits until both can be called (registration)."""
    speech = make_speech("The quick brown fox jumps over the lazy dog. One, two, three, four, "
                         "five.", tmp_path / "caller-speech.wav")
    reply = make_speech("Hello, this is the callee speaking. Seven, eight, nine.",
                        tmp_path / "callee-speech.wav", pad_seconds=4.0)
    base = ports.block(20)          # SIP (and TLS on +1) of each phone, spaced by 10
    rtp = ports.block(40)

    def phone(name: str, user: str, offset: int, source: Path) -> Baresip:
        return Baresip(name, tmp_path / name, sip_port=base + offset, ctrl_port=ports.port(),
                       rtp_ports=(rtp + 2 * offset, rtp + 2 * offset + 19),
                       account=account(user, base + offset), audio_source=source)

    callee = phone("callee-1002", "1002", 0, reply)
    caller = phone("caller-1001", "1001", 10, speech)
    phones = [callee, caller]
    try:
        callee.start(lifetime=40)
        caller.start(lifetime=40)
        ready(phones)
        caller.command("dial", dial(callee.sip_port))
        caller.wait_event("CALL_ESTABLISHED", 10)
        callee.wait_event("CALL_ESTABLISHED", 5)
        closed = caller.wait_event("CALL_CLOSED", 20)
        callee.wait_event("CALL_CLOSED", 5)
    finally:
        for p in phones:
            p.stop()
    assert closed.get("param") == "end of file", (closed, caller.output())

    heard = []
    for direction, played, listener in (("caller->callee", speech, callee),
                                        ("callee->caller", reply, caller)):
        dumps = listener.recordings("dec")
        assert len(dumps) == 1, (direction, dumps, listener.output())
        _, ref = read_wav(played)
        rate, rec = read_wav(dumps[0])
        assert rate == 8000, (direction, rate)
        heard.append(Heard(direction, xcorr_peak(ref, rec, rate), level_dbfs(rec),
                           rec.size / rate))
    return heard


def check_heard(heard: list[Heard], record_property: Callable[[str, object], None]) -> None:
    for h in heard:
        record_property(f"{h.direction} xcorr peak", round(h.corr.peak, 4))
    report = "; ".join(str(h) for h in heard)
    for h in heard:
        assert h.level > MIN_LEVEL_DBFS, f"{h.direction}: recording is silence: {report}"
        assert h.corr.peak >= MIN_PEAK, f"{h.direction}: speech not found in recording: {report}"


def test_baresip_call_through_pbx_carries_speech(pbx, ports, tmp_path, record_property):
    t0 = time.monotonic()
    server = pbx(users=PASSWORDS)
    took: dict[str, float] = {}

    def account(user: str, _port: int) -> str:
        return (f"<sip:{user}@127.0.0.1:{server.port}>;auth_pass={PASSWORDS[user]};"
                "regint=120;answermode=auto;audio_codecs=PCMU")

    def ready(phones: list[Baresip]) -> None:
        for user in ("1002", "1001"):
            took[user] = wait_registered(server.port, user, phones)

    heard = call_and_measure(tmp_path, ports, account,
                             dial=lambda _port: f"sip:1002@127.0.0.1:{server.port}", ready=ready)
    print(f"\nbaresip through pbx: registered after {took['1002']:.2f}/{took['1001']:.2f} s; "
          + "; ".join(str(h) for h in heard) + f"; test {time.monotonic() - t0:.1f} s")
    check_heard(heard, record_property)


def test_baresip_direct_call_baseline(ports, tmp_path, record_property):
    """The harness alone: phone to phone, no registrar, no pbx."""
    heard = call_and_measure(
        tmp_path, ports,
        account=lambda user, port: (f"<sip:{user}@127.0.0.1:{port}>;regint=0;answermode=auto;"
                                    "audio_codecs=PCMU"),
        dial=lambda callee_port: f"sip:1002@127.0.0.1:{callee_port}")
    print("\nbaresip direct: " + "; ".join(str(h) for h in heard))
    check_heard(heard, record_property)
