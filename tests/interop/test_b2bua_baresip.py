"""The acceptance call of the Call API, with two real softphones.

baresip 1001 (registered, digest auth) dials the hotline number 4000, routed to an app that
answers, plays a prompt, collects two digits that baresip sends as RFC 4733 events (``sndcode``),
records the call, and bridges it to baresip 1002 (registered, auto-answer). Both phones play
speech into the call and record what they hear; each recording must contain the other's speech
(normalised cross-correlation), so audio went both ways through the engine after the IVR part.
The call record must hold every field the issue lists.
"""

from __future__ import annotations

import asyncio
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from pbx.call import Call
from pbx.config import parse_config
from pbx.media.engine import EngineConfig
from pbx.media.wav import read_wav as read_pcm
from pbx.media.wav import write_wav
from pbx.pbx import Pbx

from .audio import level_dbfs, make_speech, read_wav, xcorr_peak
from .baresip import Baresip
from .pbxproc import PortAllocator

pytestmark = pytest.mark.interop

PASSWORDS = {"1001": "caller-secret-1001", "1002": "callee-secret-1002"}
MIN_PEAK = 0.8


def _with_leading_silence(path: Path, seconds: float) -> Path:
    samples, rate = read_pcm(path)
    padded = np.concatenate([np.zeros(int(seconds * rate), np.int16), samples])
    write_wav(path, padded, rate)
    return path


def _config(tmp_path: Path, port: int) -> object:
    users = "\n".join(f'[[users]]\nuser = "{u}"\npassword = "{p}"\n' for u, p in PASSWORDS.items())
    text = f"""
[sip]
listen = ["udp:127.0.0.1:{port}"]
domain = "127.0.0.1"
[store]
path = "pbx.sqlite3"
{users}
"""
    return parse_config(text, tmp_path / "pbx.toml")


def test_ivr_digits_and_bridge_between_two_baresip_phones(tmp_path: Path,
                                                          ports: PortAllocator) -> None:
    speech = _with_leading_silence(make_speech(
        "The quick brown fox jumps over the lazy dog. One, two, three, four, five.",
        tmp_path / "caller.wav"), 6.0)
    reply = make_speech("Hello, this is the agent speaking. Seven, eight, nine.",
                        tmp_path / "callee.wav", pad_seconds=15.0)
    prompt = tmp_path / "prompt.wav"
    t = np.arange(6400) / 8000.0
    write_wav(prompt, (np.sin(2 * np.pi * 660.0 * t) * 8000).astype(np.int16), 8000)
    recording = tmp_path / "recordings" / "call.wav"
    port = ports.port()
    rtp = ports.block(40)
    seen: dict[str, object] = {}

    async def hotline(call: Call) -> None:
        await call.answer()
        call.set_data(order="A-1001")
        digits = await call.collect_digits(prompt, max_digits=2, timeout=8,
                                           inter_digit_timeout=3)
        seen["digits"] = digits
        call.decide("menu", digits)
        leg = await call.dial("1002", timeout=10)
        async with call.record(recording):
            await call.bridge(leg)

    async def main() -> None:
        pbx = Pbx(_config(tmp_path, port),  # type: ignore[arg-type]
                  engine=EngineConfig(port_min=rtp, port_max=rtp + 39))
        pbx.route("4000", hotline, name="hotline")
        base = ports.block(20)
        phone_rtp = ports.block(40)

        def phone(name: str, user: str, offset: int, source: Path) -> Baresip:
            return Baresip(name, tmp_path / name, sip_port=base + offset,
                           ctrl_port=ports.port(),
                           rtp_ports=(phone_rtp + 2 * offset, phone_rtp + 2 * offset + 19),
                           account=(f"<sip:{user}@127.0.0.1:{port}>;auth_pass={PASSWORDS[user]};"
                                    "regint=120;answermode=auto;audio_codecs=PCMU"),
                           audio_source=source)

        callee = phone("callee-1002", "1002", 0, reply)
        caller = phone("caller-1001", "1001", 10, speech)
        async with pbx:
            try:
                for p in (callee, caller):
                    await asyncio.to_thread(p.start, lifetime=60)
                deadline = time.monotonic() + 10
                while len(pbx.registrations()) < 2:
                    assert time.monotonic() < deadline, pbx.registrations()
                    await asyncio.sleep(0.1)
                await asyncio.to_thread(caller.command, "dial", f"sip:4000@127.0.0.1:{port}")
                await asyncio.to_thread(caller.wait_event, "CALL_ESTABLISHED", 10)
                await asyncio.sleep(1.5)                  # into the prompt: digits stop it
                await asyncio.to_thread(caller.command, "sndcode", "12")
                await asyncio.to_thread(callee.wait_event, "CALL_ESTABLISHED", 10)
                closed = await asyncio.to_thread(caller.wait_event, "CALL_CLOSED", 30)
                await asyncio.to_thread(callee.wait_event, "CALL_CLOSED", 5)
            finally:
                for p in (caller, callee):
                    await asyncio.to_thread(p.stop)
            assert closed.get("param") == "end of file", (closed, caller.output())
            assert pbx.cdr is not None
            deadline = time.monotonic() + 5
            while not (records := [r for r in pbx.cdr.query()
                                   if r.disposition != "in progress"]):
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)

        assert seen.get("digits") == "12", seen
        [record] = records
        assert (record.caller, record.callee, record.dialed) == ("1001", "1002", "4000")
        assert record.disposition == "answered" and record.hangup_side == "caller"
        assert record.start_time <= record.answer_time <= record.end_time  # type: ignore[operator]
        assert record.ring_time is not None and record.duration and record.duration > 5
        assert record.billable is not None and record.billable >= 5
        assert record.path == ["hotline", "menu:12"]
        assert record.recording == str(recording)
        assert record.data == {"order": "A-1001"}
        assert record.caller_region == ""            # an extension has no region (SIPp tests: 010)
        legs = {leg.leg_id: leg for leg in record.legs}
        assert len(legs) == 2 and record.legs[1].party == "1002"
        assert record.legs[0].bridged_to == record.legs[1].leg_id

        for direction, played, listener in (("caller->callee", speech, callee),
                                            ("callee->caller", reply, caller)):
            dumps = listener.recordings("dec")
            assert len(dumps) == 1, (direction, dumps)
            _, ref = read_wav(played)
            rate, heard = read_wav(dumps[0])
            corr = xcorr_peak(ref, heard, rate)
            assert level_dbfs(heard) > -40, direction
            assert corr.peak >= MIN_PEAK, (direction, corr)
        with wave.open(str(recording), "rb") as w:          # caller left, agent right
            assert (w.getnchannels(), w.getframerate()) == (2, 8000)
            frames = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)
        _, agent = read_wav(reply)
        right = frames[:, 1].astype(np.float64) / 32768.0
        assert xcorr_peak(agent, right, 8000).peak >= MIN_PEAK

    asyncio.run(main())
