"""One terminated stream's media work, in pure Python: the twin of the C media core in cext/engine.c.

A stream is *terminated* when the engine itself decodes what it receives and encodes what it
sends (``Stream.set_media``), instead of relaying it. ``MediaCore`` is that per-stream work,
mirroring ``pbx_engine_media_*`` step for step so hypothesis can check they agree:

- ``put``: a received RTP packet (already checked by ``rtp_check``) into the jitter buffer;
  telephone-event packets go through it too (so their sequence numbers are not taken for
  losses) and are reported as ``EVENT``, for the caller to hand to its RFC 4733 receiver;
- ``rx``: one 20 ms tick: jitter-buffer playout, then decoding (PCMU, PCMA, G.722, L16 mono or
  stereo; packets of 10 to 120 ms in 10 ms steps are cut into or joined to 20 ms frames first,
  other sizes are concealed), G.711 Appendix I
  concealment for losses and underflows (``pbx.media.plc``, 3.75 ms of delay), silence before
  the first packet and while the sender pauses, then in-band DTMF detection: a digit is reported
  once, in the frame where it ends, with how long it was held (frames x 20 ms);
- ``encode``: one frame to a payload of the send codec.

Opus (``KIND_EXTERNAL``) has no C codec: ``ExternalCoder`` runs the Python codec objects
(``pbx.media.codecs``, with libopus' own concealment) for both backends.

Sans-I/O: ``now`` is passed in. ``impl="py"`` forces every kernel's pure-Python twin (for the
twin checks); the default uses the live kernels (C when built).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from pbx.media import dsp, g722, inband, plc
from pbx.media._native import ffi as _ffi
from pbx.media._native import lib as _lib
from pbx.media.codecs import Codec
from pbx.rtp.jitter import Frame, JitterBuffer, MissingReason, PutResult

__all__ = [
    "KIND_EVENT",
    "KIND_EXTERNAL",
    "KIND_G722",
    "KIND_L16",
    "KIND_L16_STEREO",
    "KIND_NONE",
    "KIND_PCMA",
    "KIND_PCMU",
    "MAX_FRAME",
    "RX_CONCEALED",
    "RX_FRAME",
    "RX_SILENCE",
    "ExternalCoder",
    "MediaConfig",
    "MediaCore",
    "kind_of",
    "payload_bounds",
    "silent_payload",
]

KIND_NONE, KIND_PCMU, KIND_PCMA, KIND_G722, KIND_L16, KIND_L16_STEREO = 0, 1, 2, 3, 4, 5
KIND_EXTERNAL, KIND_EVENT = 6, 7
RX_FRAME, RX_CONCEALED, RX_SILENCE = 0, 1, 2
MAX_FRAME = 960                     # PCM samples of 20 ms at 48 kHz
SEND_PAYLOAD = 4 * MAX_FRAME        # the largest payload the engine sends
EXT_MAX_PAYLOAD = 1500
KEYS = inband.KEYS

Int16Array = npt.NDArray[np.int16]
_HDR = struct.Struct("!BBHII")
_SILENCE_REASONS = frozenset({MissingReason.STARTUP, MissingReason.GAP})
MAX_UNITS = 12                      # 10 ms units a packet may carry (120 ms); more: not split
UNIT_BASE = 1 << 24                 # where unit counting starts (keeps units positive)
_SPLIT = frozenset({KIND_PCMU, KIND_PCMA, KIND_G722, KIND_L16, KIND_L16_STEREO})


def _s16(v: int) -> int:
    v &= 0xFFFF
    return v - 0x10000 if v & 0x8000 else v


def kind_of(codec: Codec) -> int:
    """The engine's codec kind for a codec of ``pbx.media.codecs``."""
    if codec.kind == "l16":
        return KIND_L16 if codec.channels == 1 else KIND_L16_STEREO
    return {"g711u": KIND_PCMU, "g711a": KIND_PCMA, "g722": KIND_G722,
            "opus": KIND_EXTERNAL}.get(codec.kind, KIND_NONE)


def payload_bounds(pkt: bytes | bytearray) -> tuple[int, int]:
    """(start, end) of the payload of a packet that passed ``rtp_check`` (padding removed)."""
    b0 = pkt[0]
    start = 12 + 4 * (b0 & 0x0F)
    if b0 & 0x10:
        start += 4 + 4 * ((pkt[start + 2] << 8) | pkt[start + 3])
    end = len(pkt) - (pkt[-1] if b0 & 0x20 else 0)
    return start, end


SILENCE_PEAK = 256                  # a received frame below this everywhere is silence


def silent_payload(kind: int, payload: bytes) -> int:
    """1 when every sample of a G.711 or L16 payload is below ``SILENCE_PEAK`` (the jitter
    buffer then adapts its delay in this pause), 0 when one is not, -1 when unknown."""
    if not payload:
        return -1
    if kind in (KIND_PCMU, KIND_PCMA):
        b = np.frombuffer(payload, np.uint8).astype(np.int32)
        if kind == KIND_PCMU:
            u = ~b & 0xFF
            mag = ((((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)) - 0x84
        else:
            a = b ^ 0x55
            seg, t = (a & 0x70) >> 4, (a & 0x0F) << 4
            mag = np.where(seg == 0, t + 8, (t + 0x108) << np.maximum(seg - 1, 0))
        return int(bool(mag.max() < SILENCE_PEAK))
    if kind in (KIND_L16, KIND_L16_STEREO):
        if len(payload) < 2:
            return -1
        x = np.frombuffer(payload[:len(payload) // 2 * 2], ">i2").astype(np.int32)
        return int(bool(np.abs(x).max() < SILENCE_PEAK))
    return -1


def _frame_bytes(kind: int, frame: int) -> int:
    return {KIND_PCMU: frame, KIND_PCMA: frame, KIND_G722: frame // 2, KIND_L16: 2 * frame,
            KIND_L16_STEREO: 4 * frame, KIND_EXTERNAL: EXT_MAX_PAYLOAD // 2}.get(kind, 0)


@dataclass(frozen=True, slots=True)
class MediaConfig:
    """What a terminated stream receives and sends (the C ``pbx_engine_media_config``).

    ``pt_kind`` maps each received payload type to its kind (``KIND_EVENT`` for
    telephone-event); ``te_pt`` is the telephone-event payload type we send with (-1: none);
    delays in ms, ``jb_fixed`` < 0 for an adaptive jitter buffer. ``codec`` is the send codec's
    description, needed only for external (Opus) streams. ``ptime``: ms of audio per packet we
    send, 10 to 120 in 10 ms steps for G.711, G.722 and L16 when the packet fits (else 20).
    """

    send_kind: int
    send_pt: int
    sample_rate: int
    clock_rate: int
    pt_kind: Mapping[int, int]
    te_pt: int = -1
    sends: bool = True
    jb_min: int = 0
    jb_max: int = 300
    jb_start: int = 60
    jb_fixed: int = -1
    codec: Codec | None = field(default=None, compare=False)
    ptime: int = 20

    @property
    def frame(self) -> int:
        return self.sample_rate // 50

    @property
    def step(self) -> int:
        return self.clock_rate // 50

    def same_core(self, other: MediaConfig) -> bool:
        """True when ``other`` can keep this one's jitter buffer and codec state (as in C)."""
        return (self.send_kind, self.sample_rate, self.clock_rate, self.jb_min, self.jb_max,
                self.jb_start, self.jb_fixed, self.dtmf_pt) == (
            other.send_kind, other.sample_rate, other.clock_rate, other.jb_min, other.jb_max,
            other.jb_start, other.jb_fixed, other.dtmf_pt)

    @property
    def dtmf_pt(self) -> int:
        """The lowest telephone-event payload type received (the jitter buffer's), or -1."""
        return min((pt for pt, k in self.pt_kind.items() if k == KIND_EVENT), default=-1)


class ExternalCoder:
    """Decoder and encoder of a codec the C engine does not have (Opus), per stream."""

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self.frame = codec.sample_rate // 50
        self.decoder = codec.decoder()
        self.encoder = codec.encoder()

    def rx(self, frame: Frame | None, conceal: bool) -> Int16Array:
        """The tick's PCM: ``frame`` decoded, else concealment (``conceal``) or silence."""
        n = self.frame
        if frame is not None:
            try:
                pcm = self.decoder.decode(frame.payload)
            except Exception:                    # a corrupt packet: conceal it
                pcm = None
            if pcm is not None and len(pcm) == n:
                return pcm
            conceal = True
        if conceal:
            pcm = self.decoder.conceal(n)
            if len(pcm) == n:
                return pcm
        return np.zeros(n, np.int16)

    def encode(self, pcm: Int16Array) -> bytes:
        return self.encoder.encode(pcm)


class _G711:
    def __init__(self, law: str, py: bool) -> None:
        if law == "u":
            self.dec, self.enc = ((dsp.py_ulaw_decode, dsp.py_ulaw_encode) if py
                                  else (dsp.ulaw_decode, dsp.ulaw_encode))
        else:
            self.dec, self.enc = ((dsp.py_alaw_decode, dsp.py_alaw_encode) if py
                                  else (dsp.alaw_decode, dsp.alaw_encode))

    def decode(self, payload: bytes) -> Int16Array:
        return np.frombuffer(self.dec(payload), dtype="<i2").astype(np.int16)

    def encode(self, pcm: Int16Array) -> bytes:
        return self.enc(np.ascontiguousarray(pcm, dtype="<i2").tobytes())


class MediaCore:
    """The per-stream media work of a terminated stream (see the module docstring)."""

    def __init__(self, cfg: MediaConfig, impl: str | None = None) -> None:
        if (cfg.sample_rate <= 0 or cfg.sample_rate % 50 or cfg.frame > MAX_FRAME
                or cfg.clock_rate <= 0 or cfg.clock_rate % 50
                or not KIND_PCMU <= cfg.send_kind <= KIND_EXTERNAL
                or min(cfg.jb_min, cfg.jb_max, cfg.jb_start) < 0):
            raise ValueError(f"bad media configuration {cfg}")
        if impl not in (None, "py"):
            raise ValueError("impl must be None (live kernels) or 'py'")
        py = impl == "py" or _lib is None
        native = None if py else (_ffi, _lib)
        self.cfg = cfg
        self.frame = cfg.frame
        self.step = cfg.step
        self.pt_kind = [cfg.pt_kind.get(pt, KIND_NONE) for pt in range(128)]
        self.dtmf_pt = cfg.dtmf_pt
        maxp = 2 * _frame_bytes(cfg.send_kind, self.frame) + 64
        self.jb = JitterBuffer(
            cfg.clock_rate, self.step, min_delay=cfg.jb_min, max_delay=cfg.jb_max,
            start_delay=cfg.jb_start, fixed=None if cfg.jb_fixed < 0 else cfg.jb_fixed,
            dtmf_payload_type=None if self.dtmf_pt < 0 else self.dtmf_pt,
            max_payload=max(maxp, 256), implementation="py" if py else "c")
        self._py = py
        self._native = native
        self.external: ExternalCoder | None = None
        self.plc: Any = None
        if cfg.send_kind == KIND_EXTERNAL:
            if cfg.codec is None:
                raise ValueError("an external (Opus) stream needs its codec")
            self.external = ExternalCoder(cfg.codec)
        elif cfg.sample_rate in plc.SUPPORTED_RATES:
            self.plc = (plc.PyPlc(cfg.sample_rate, self.frame) if py
                        else plc.CPlc(cfg.sample_rate, self.frame, native=native))
        self._ulaw = _G711("u", py)
        self._alaw = _G711("a", py)
        self._g722_dec: Any = g722.PyG722Decoder() if py else g722.CG722Decoder(native)
        self._g722_enc: Any = g722.PyG722Encoder() if py else g722.CG722Encoder(native)
        self.det: Any = None
        self.held = -1
        self.held_frames = 0
        # packet-time state (``_unit``, ``put``): the newest packet and a waiting first half
        half_ok = self.step % 2 == 0 and self.frame % 2 == 0
        self.half = [(_frame_bytes(k, self.frame) // 2 if half_ok and k in _SPLIT else 0)
                     for k in range(8)]
        self.sp_has = False
        self.sp_ssrc = 0
        self.sp_seq = 0
        self.sp_unit = 0
        self.sp_units = 0
        self.pend_unit = -1
        self.pend_ts = 0
        self.pend_marker = 0
        self.pend_pt = 0
        self.pend_ssrc = 0
        self.pend_payload = b""
        self.tx_units = 2
        self.tx_acc = bytearray()
        self._set_ptime()

    def _set_ptime(self) -> None:
        """The packet time we send with, in 10 ms units (as ``media_set_ptime`` in C)."""
        half, p = self.half[self.cfg.send_kind & 7], self.cfg.ptime
        self.tx_units = 2
        if half > 0 and 10 <= p <= 10 * MAX_UNITS and p % 10 == 0 and p // 10 * half <= SEND_PAYLOAD:
            self.tx_units = p // 10
        self.tx_acc = bytearray()

    @property
    def ptime(self) -> int:
        """ms of audio in each packet we send."""
        return 10 * self.tx_units

    def packets(self, pcm: Int16Array) -> list[tuple[bytes, int]]:
        """One frame to the (payload, timestamp step) of each packet to send now: one per frame
        at 20 ms; else the frame's payload is collected and every full packet goes out (10 ms:
        two per frame, 30 ms: on two frames of three)."""
        payload = self.encode(pcm)
        if self.tx_units == 2:
            return [(payload, self.step)]
        acc = self.tx_acc
        acc += payload
        size = self.tx_units * self.half[self.cfg.send_kind & 7]
        step = self.tx_units * (self.step // 2)
        out = []
        while len(acc) >= size:
            out.append((bytes(acc[:size]), step))
            del acc[:size]
        return out

    def reconfigure(self, cfg: MediaConfig) -> None:
        """Payload types, telephone-event or direction changed, codec and delays did not
        (``cfg.same_core(self.cfg)``): keep the jitter buffer and codec state."""
        if not cfg.same_core(self.cfg):
            raise ValueError("reconfigure keeps the codec; make a new MediaCore instead")
        ptime = self.cfg.ptime
        self.cfg = cfg
        self.pt_kind = [cfg.pt_kind.get(pt, KIND_NONE) for pt in range(128)]
        if cfg.ptime != ptime:
            self._set_ptime()

    # -- receiving ---------------------------------------------------------------------------

    def set_inband(self, on: bool) -> None:
        """Start (a fresh detector) or stop in-band DTMF detection; ValueError for a rate the
        detector does not take (44.1 kHz)."""
        if not on:
            self.det = None
            self.held = -1
            return
        if self.det is None:
            self.det = (inband.PyInbandDetector(self.cfg.sample_rate) if self._py
                        else inband.CInbandDetector(self.cfg.sample_rate))
            self.held = -1

    def put(self, pkt: bytes | bytearray, now: float) -> int:
        """One accepted packet: a ``PutResult`` code (of its last frame put; ``ACCEPTED`` when
        it only left a first half waiting), ``PutResult.EVENT`` for telephone-event, or -1 when
        its payload type is not in the configuration.

        Packets of N x 10 ms of G.711, G.722 or L16 are cut into 20 ms frames, each put in its
        own slot of the jitter buffer (see ``_unit``); a frame whose two halves come in two
        packets (10 or 30 ms packets) is joined when the second half comes right after the
        first (a lost half loses the frame: concealed). Other sizes go in whole (and are
        concealed when decoded); events and Opus packets take one slot each."""
        start, end = payload_bounds(pkt)
        if end < start:
            return -1
        b1, seq, ts, ssrc = _HDR.unpack_from(pkt)[1:]
        pt = b1 & 0x7F
        kind = self.pt_kind[pt]
        if kind == KIND_NONE:
            return -1
        event = kind == KIND_EVENT
        payload = bytes(pkt[start:end])
        marker = b1 >> 7
        half = self.half[kind]
        n = len(payload)
        units = 2
        if half and n % half == 0 and 0 < n // half <= MAX_UNITS:
            units = n // half
        else:
            half = 0
        unit = self._unit(seq, ssrc, units)
        if event:
            self.jb.put((unit >> 1) & 0xFFFF, ts, bool(marker), self.dtmf_pt, payload, ssrc, now)
            self.jb.pop_events()             # the caller takes the packet itself
            return int(PutResult.EVENT)
        if not half:
            return self._put1(unit, ts, marker, pt, payload, ssrc, now, kind)
        r = int(PutResult.ACCEPTED)
        ustep = self.step // 2
        k = 0
        if unit & 1:                         # the second half of a frame
            if self.pend_unit == unit - 1 and self.pend_ssrc == ssrc:
                r = self._put1(unit - 1, self.pend_ts, self.pend_marker, self.pend_pt,
                               self.pend_payload + payload[:half], ssrc, now, kind)
            self.pend_unit = -1
            k = 1
        while k + 1 < units:
            r = self._put1(unit + k, (ts + k * ustep) & 0xFFFFFFFF, marker if k == 0 else 0, pt,
                           payload[k * half:(k + 2) * half], ssrc, now, kind)
            k += 2
        if k < units:                        # a first half: wait for the second
            self.pend_unit = unit + k
            self.pend_ts = (ts + k * ustep) & 0xFFFFFFFF
            self.pend_marker = marker if k == 0 else 0
            self.pend_pt = pt
            self.pend_ssrc = ssrc
            self.pend_payload = payload[k * half:]
        return r

    def _put1(self, unit: int, ts: int, marker: int, pt: int, payload: bytes, ssrc: int,
              now: float, kind: int) -> int:
        speech = silent_payload(kind, payload) == 0   # quiet frames stay "unknown" (as in C)
        return int(self.jb.put((unit >> 1) & 0xFFFF, ts, bool(marker), pt, payload, ssrc, now,
                               silent=False if speech else None))

    def _unit(self, seq: int, ssrc: int, units: int) -> int:
        """The first 10 ms unit a packet carries, counted across packets of any size, so each
        20 ms frame gets its own consecutive slot (``unit >> 1``) in the jitter buffer: packets
        whose sequence number goes forward by d start ``units`` of the last packet plus
        ``(d - 1) * units`` after it (lost packets assumed the size of this one); older ones
        ``d * units`` before it. For 20 ms packets the slot is the sequence number itself. A new
        SSRC starts afresh."""
        if not self.sp_has or ssrc != self.sp_ssrc:
            self.sp_has = True
            self.sp_ssrc = ssrc
            self.sp_seq = seq
            self.sp_unit = 2 * seq + UNIT_BASE
            self.sp_units = units
            return self.sp_unit
        d = _s16(seq - self.sp_seq)
        if d > 0:
            unit = self.sp_unit + self.sp_units + (d - 1) * units
            self.sp_seq = seq
            self.sp_unit = unit
            self.sp_units = units
            return unit
        return self.sp_unit + d * units

    def rx(self, now: float) -> tuple[int, Int16Array, tuple[str, int] | None]:
        """The tick's frame: (``RX_*`` code, PCM, (digit, duration_ms) of a digit that ended)."""
        f = self.jb.get(now)
        if self.external is not None:
            pcm = self.external.rx(f if isinstance(f, Frame) else None,
                                   not isinstance(f, Frame) and f.conceal)
            return RX_FRAME, pcm, self.inband(pcm)
        decoded = self._decode(self.pt_kind[f.payload_type], f.payload) \
            if isinstance(f, Frame) else None
        if decoded is not None:
            pcm = self.plc.good(decoded) if self.plc is not None else decoded
            res = RX_FRAME
        elif not isinstance(f, Frame) and f.reason in _SILENCE_REASONS:
            pcm = np.zeros(self.frame, np.int16)
            res = RX_SILENCE
        else:
            pcm = (self.plc.missing(self.frame) if self.plc is not None
                   else np.zeros(self.frame, np.int16))
            res = RX_CONCEALED
        return res, pcm, self.inband(pcm)

    def _decode(self, kind: int, payload: bytes) -> Int16Array | None:
        n, size = self.frame, len(payload)
        if kind == KIND_PCMU:
            return self._ulaw.decode(payload) if size == n else None
        if kind == KIND_PCMA:
            return self._alaw.decode(payload) if size == n else None
        if kind == KIND_G722:
            if 2 * size != n:
                return None
            out: Int16Array = np.asarray(self._g722_dec.decode(payload), np.int16)
            return out
        if kind == KIND_L16:
            if size // 2 != n:
                return None
            mono: Int16Array = np.frombuffer(payload[:2 * n], ">i2").astype(np.int16)
            return mono
        if kind == KIND_L16_STEREO:
            if size // 4 != n:
                return None
            x = np.frombuffer(payload[:4 * n], ">i2").astype(np.int32).reshape(n, 2)
            mixed: Int16Array = (x.sum(axis=1) // 2).astype(np.int16)
            return mixed
        return None

    def inband(self, pcm: Int16Array) -> tuple[str, int] | None:
        """Feed the in-band detector; (digit, duration_ms) when a held digit ended here."""
        det = self.det
        if det is None:
            return None
        found = det.feed(pcm)
        out = None
        if self.held >= 0 and (det.digit != self.held or found):
            out = (KEYS[self.held], self.held_frames * 20)
            self.held = -1
        if found and det.digit >= 0:
            self.held = det.digit
            self.held_frames = 0
        if self.held >= 0:
            self.held_frames += 1
        return out

    # -- sending -----------------------------------------------------------------------------

    def encode(self, pcm: Int16Array) -> bytes:
        """One frame to a payload of the send codec."""
        kind = self.cfg.send_kind
        if kind == KIND_PCMU:
            return self._ulaw.encode(pcm)
        if kind == KIND_PCMA:
            return self._alaw.encode(pcm)
        if kind == KIND_G722:
            return bytes(self._g722_enc.encode(np.ascontiguousarray(pcm, np.int16)))
        if kind == KIND_L16:
            return np.asarray(pcm, np.int16).astype(">i2").tobytes()
        if kind == KIND_L16_STEREO:
            return np.repeat(np.asarray(pcm, np.int16), 2).astype(">i2").tobytes()
        if self.external is not None:
            return self.external.encode(pcm)
        return b""

    def jitter(self) -> tuple[int, ...]:
        """The jitter buffer's counters (``JitterBuffer.counters()``)."""
        return self.jb.counters()
