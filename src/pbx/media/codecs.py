"""Audio codecs: descriptions, a registry by encoding name and clock rate, and stream coders.

A ``Codec`` describes what SDP and RTP need (encoding name, RTP clock rate, channel count as in
``a=rtpmap``, static payload type, packet durations, fmtp defaults) and the PCM side (frames of
``sample_rate`` mono int16, 20 ms by default). ``codec.encoder()`` / ``codec.decoder()`` make
stateful per-stream coders:

- ``Encoder.encode(frame) -> payload``
- ``Decoder.decode(payload) -> frame`` and ``Decoder.conceal(samples, next_payload=None) ->
  frame`` for a frame that never arrived (what the jitter buffer calls). PCMU, PCMA, G.722 and
  L16 conceal with ``pbx.media.plc`` (G.711 Appendix I) at their PCM rate, which delays every
  decoded frame by ``Decoder.delay`` samples (3.75 ms); Opus uses its own concealment, or the
  in-band FEC (LBRR) carried by the *next* packet when the caller has it.

Codecs: PCMU and PCMA (G.711, PT 0 and 8), G722 (PT 9; RTP clock 8000 but 16 kHz audio, RFC 3551
§4.5.2), L16 (big-endian; PT 11 mono and 10 stereo at 44.1 kHz, dynamic at 8/16/32/48 kHz;
stereo streams are duplicated / down-mixed to mono frames) and opus ("opus/48000/2" in SDP per
RFC 7587, mono audio, 20 ms, in-band FEC on, through opuslib and libopus).

``impl`` selects the kernels of PCMU/PCMA/G722 and of the concealment: ``None`` the live ones
(``pbx.media.dsp.IMPLEMENTATION``), ``"py"`` the Python twins, ``"c"`` the C kernels (even under
``PBX_NO_EXTENSIONS=1``, for twin checks; RuntimeError when not built).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

from pbx.errors import PbxError
from pbx.media import dsp, g722, plc
from pbx.media._native import ffi as _ffi
from pbx.media._native import lib as _lib

__all__ = [
    "Codec",
    "Decoder",
    "Encoder",
    "OpusDecoder",
    "OpusEncoder",
    "UnknownCodecError",
    "codec_for_payload_type",
    "codecs",
    "get_codec",
    "static_payload_types",
]

Int16Array = npt.NDArray[np.int16]


class UnknownCodecError(PbxError, KeyError):
    """No codec with that encoding name, clock rate and channel count."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown codec"


# -- descriptions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Codec:
    """What SDP/RTP and the media path need to know about one codec."""

    name: str
    """Encoding name as written in ``a=rtpmap`` (``PCMU``, ``G722``, ``opus`` ...)."""
    clock_rate: int
    """RTP timestamp rate (8000 for G.722 although its audio is 16 kHz)."""
    sample_rate: int
    """Rate of the PCM frames the coders take and give (mono int16)."""
    channels: int = 1
    """Channel count of the RTP stream as in ``a=rtpmap`` (2 for opus, always)."""
    payload_type: int | None = None
    """Static RTP payload type (RFC 3551), or None for a dynamic one."""
    ptimes: tuple[int, ...] = (10, 20, 30, 40, 50, 60)
    """Packet durations (ms) the coders handle."""
    default_ptime: int = 20
    fmtp: tuple[tuple[str, str], ...] = ()
    """Default ``a=fmtp`` parameters as (name, value) pairs, in order."""
    kind: str = ""
    """Implementation family: ``g711u``, ``g711a``, ``g722``, ``l16``, ``opus``."""

    @property
    def rtpmap(self) -> str:
        """``a=rtpmap`` value after the payload type, e.g. ``opus/48000/2``."""
        base = f"{self.name}/{self.clock_rate}"
        return base if self.channels == 1 else f"{base}/{self.channels}"

    @property
    def fmtp_params(self) -> dict[str, str]:
        """The fmtp defaults as a new dict."""
        return dict(self.fmtp)

    @property
    def fmtp_line(self) -> str:
        """The fmtp defaults as ``key=value;key=value`` (empty when none)."""
        return ";".join(f"{k}={v}" for k, v in self.fmtp)

    def frame_samples(self, ptime: int | None = None) -> int:
        """PCM samples in one frame of ``ptime`` ms (default 20)."""
        return self.sample_rate * (ptime or self.default_ptime) // 1000

    def timestamp_step(self, ptime: int | None = None) -> int:
        """RTP timestamp increment per packet of ``ptime`` ms."""
        return self.clock_rate * (ptime or self.default_ptime) // 1000

    def encoder(self, impl: str | None = None) -> Encoder:
        """A new per-stream encoder."""
        return _ENCODERS[self.kind](self, impl)

    def decoder(self, impl: str | None = None) -> Decoder:
        """A new per-stream decoder (with its loss concealment)."""
        return _DECODERS[self.kind](self, impl)


_CODECS: tuple[Codec, ...] = (
    Codec("PCMU", 8000, 8000, 1, 0, kind="g711u"),
    Codec("PCMA", 8000, 8000, 1, 8, kind="g711a"),
    Codec("G722", 8000, 16000, 1, 9, kind="g722"),
    *(Codec("L16", rate, rate, ch, {(44100, 2): 10, (44100, 1): 11}.get((rate, ch)),
            ptimes=(10, 20, 30, 40), kind="l16")
      for rate in (8000, 16000, 32000, 44100, 48000) for ch in (1, 2)),
    Codec("opus", 48000, 48000, 2, None, ptimes=(10, 20, 40, 60), fmtp=(("minptime", "10"), ("useinbandfec", "1")),
          kind="opus"),
)
_BY_KEY = {(c.name.lower(), c.clock_rate, c.channels): c for c in _CODECS}
_STATIC = {c.payload_type: c for c in _CODECS if c.payload_type is not None}


def get_codec(name: str, clock_rate: int, channels: int = 1) -> Codec:
    """The codec for an ``a=rtpmap`` entry; names are case-insensitive.

    Opus is always ``opus/48000/2`` in SDP (RFC 7587); ``channels=1`` finds it too.
    Raises ``UnknownCodecError`` (a ``PbxError`` and a ``KeyError``).
    """
    key = (name.lower(), clock_rate, channels)
    if key[0] == "opus" and channels == 1:
        key = ("opus", clock_rate, 2)
    try:
        return _BY_KEY[key]
    except KeyError:
        raise UnknownCodecError(
            f"unknown codec {name}/{clock_rate}/{channels}") from None


def codecs() -> list[Codec]:
    """Every registered codec."""
    return list(_CODECS)


def static_payload_types() -> dict[int, Codec]:
    """Static payload type -> codec (0 PCMU, 8 PCMA, 9 G722, 10/11 L16 at 44.1 kHz)."""
    return dict(_STATIC)


def codec_for_payload_type(pt: int) -> Codec:
    """The codec of a static payload type (for SDP without ``a=rtpmap``)."""
    try:
        return _STATIC[pt]
    except KeyError:
        raise UnknownCodecError(f"no static codec for payload type {pt}") from None


# -- coder interfaces ----------------------------------------------------------------------------


class Encoder(ABC):
    """Per-stream encoder: mono int16 frames at ``codec.sample_rate`` to RTP payloads."""

    def __init__(self, codec: Codec) -> None:
        self.codec = codec

    @abstractmethod
    def encode(self, frame: Int16Array) -> bytes:
        """Encode one frame (its length sets the packet duration)."""


class Decoder(ABC):
    """Per-stream decoder: RTP payloads to mono int16 frames, and loss concealment."""

    delay: int = 0
    """Samples every output frame lags the decoded audio (the concealment's look-back)."""

    def __init__(self, codec: Codec) -> None:
        self.codec = codec

    @abstractmethod
    def decode(self, payload: bytes) -> Int16Array:
        """Decode one payload."""

    @abstractmethod
    def conceal(self, samples: int, next_payload: bytes | None = None) -> Int16Array:
        """A replacement for ``samples`` of audio that never arrived.

        ``next_payload`` is the packet after the gap when the caller already holds it (Opus
        recovers the lost frame from its FEC data); other codecs ignore it.
        """


# -- kernel selection ----------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _forced_native() -> tuple[Any, Any]:
    """The compiled kernels even when PBX_NO_EXTENSIONS disabled them (explicit ``impl="c"``)."""
    if _lib is not None:
        return _ffi, _lib
    try:
        from pbx import _dsp  # type: ignore[attr-defined, unused-ignore]
    except ImportError as exc:
        raise RuntimeError("the C kernels (pbx._dsp) are not built") from exc
    return _dsp.ffi, _dsp.lib


def _native_for(impl: str | None) -> tuple[Any, Any] | None:
    """(ffi, lib) to use, or None for the Python twins."""
    if impl is None:
        return (_ffi, _lib) if _lib is not None else None
    if impl == "py":
        return None
    if impl == "c":
        return _forced_native()
    raise ValueError(f"impl must be None, 'c' or 'py', not {impl!r}")


def _make_plc(rate: int, impl: str | None) -> plc.CPlc | plc.PyPlc | None:
    """Concealment at ``rate`` (20 ms frames), or None where it is not supported (44.1 kHz)."""
    if rate not in plc.SUPPORTED_RATES:
        return None
    native = _native_for(impl)
    if native is None:
        return plc.PyPlc(rate, rate // 50)
    return plc.CPlc(rate, rate // 50, native=native)


class _PlcDecoder(Decoder):
    """Decoder whose PCM goes through the Appendix I concealment (``delay`` samples late)."""

    def __init__(self, codec: Codec, impl: str | None) -> None:
        super().__init__(codec)
        self._plc = _make_plc(codec.sample_rate, impl)
        self.delay = self._plc.delay if self._plc is not None else 0

    @abstractmethod
    def _pcm(self, payload: bytes) -> Int16Array:
        """Decode without concealment bookkeeping."""

    def decode(self, payload: bytes) -> Int16Array:
        pcm = self._pcm(payload)
        return self._plc.good(pcm) if self._plc is not None else pcm

    def conceal(self, samples: int, next_payload: bytes | None = None) -> Int16Array:
        """Appendix I concealment (``samples`` a multiple of 10 ms); silence at 44.1 kHz."""
        if self._plc is None:
            return np.zeros(samples, dtype=np.int16)
        return self._plc.missing(samples)


# -- G.711 ---------------------------------------------------------------------------------------


class _G711Kernel:
    """Numpy-friendly G.711 law: the C kernel, or tables built from the dsp Python twin."""

    def __init__(self, law: str, native: tuple[Any, Any] | None) -> None:
        self._native = native
        self._law = law
        if native is None:
            self._enc_table, self._dec_table = _g711_tables(law)

    def encode(self, frame: Int16Array) -> bytes:
        x = np.ascontiguousarray(frame, dtype=np.int16)
        if self._native is None:
            return self._enc_table[x.view(np.uint16)].tobytes()
        ffi, lib = self._native
        out = bytearray(len(x))
        fn = lib.pbx_ulaw_encode if self._law == "u" else lib.pbx_alaw_encode
        fn(ffi.from_buffer("int16_t[]", x), ffi.from_buffer("uint8_t[]", out), len(x))
        return bytes(out)

    def decode(self, payload: bytes) -> Int16Array:
        if self._native is None:
            pcm: Int16Array = self._dec_table[np.frombuffer(payload, dtype=np.uint8)]
            return pcm
        ffi, lib = self._native
        out = np.empty(len(payload), dtype=np.int16)
        if payload:
            fn = lib.pbx_ulaw_decode if self._law == "u" else lib.pbx_alaw_decode
            fn(ffi.from_buffer("uint8_t[]", payload), ffi.from_buffer("int16_t[]", out),
               len(payload))
        return out


@lru_cache(maxsize=2)
def _g711_tables(law: str) -> tuple[npt.NDArray[np.uint8], Int16Array]:
    """Lookup tables from the pure-Python twin: index by uint16 view of a sample / by code."""
    encode, decode = ((dsp.py_ulaw_encode, dsp.py_ulaw_decode) if law == "u"
                      else (dsp.py_alaw_encode, dsp.py_alaw_decode))
    every = np.arange(65536, dtype=np.uint16).view(np.int16)
    enc = np.frombuffer(encode(every.astype("<i2").tobytes()), dtype=np.uint8).copy()
    dec = np.frombuffer(decode(bytes(range(256))), dtype="<i2").astype(np.int16)
    return enc, dec


class _G711Encoder(Encoder):
    def __init__(self, codec: Codec, impl: str | None) -> None:
        super().__init__(codec)
        self._k = _G711Kernel("u" if codec.kind == "g711u" else "a", _native_for(impl))

    def encode(self, frame: Int16Array) -> bytes:
        return self._k.encode(frame)


class _G711Decoder(_PlcDecoder):
    def __init__(self, codec: Codec, impl: str | None) -> None:
        super().__init__(codec, impl)
        self._k = _G711Kernel("u" if codec.kind == "g711u" else "a", _native_for(impl))

    def _pcm(self, payload: bytes) -> Int16Array:
        return self._k.decode(payload)


# -- G.722 ---------------------------------------------------------------------------------------


class _G722Encoder(Encoder):
    def __init__(self, codec: Codec, impl: str | None) -> None:
        super().__init__(codec)
        native = _native_for(impl)
        self._enc: g722.CG722Encoder | g722.PyG722Encoder = (
            g722.PyG722Encoder() if native is None else g722.CG722Encoder(native))

    def encode(self, frame: Int16Array) -> bytes:
        return self._enc.encode(frame)


class _G722Decoder(_PlcDecoder):
    """G.722 decoder; a loss is concealed on the 16 kHz PCM (the ADPCM state carries on)."""

    def __init__(self, codec: Codec, impl: str | None) -> None:
        super().__init__(codec, impl)
        native = _native_for(impl)
        self._dec: g722.CG722Decoder | g722.PyG722Decoder = (
            g722.PyG722Decoder() if native is None else g722.CG722Decoder(native))

    def _pcm(self, payload: bytes) -> Int16Array:
        return self._dec.decode(payload)


# -- L16 -----------------------------------------------------------------------------------------


class _L16Encoder(Encoder):
    """Network byte order; a stereo stream carries the mono frame on both channels."""

    def __init__(self, codec: Codec, impl: str | None) -> None:
        super().__init__(codec)

    def encode(self, frame: Int16Array) -> bytes:
        x = np.asarray(frame, dtype=np.int16)
        if self.codec.channels > 1:
            x = np.repeat(x, self.codec.channels)
        return x.astype(">i2").tobytes()


class _L16Decoder(_PlcDecoder):
    """Network byte order; stereo is averaged to mono; a trailing odd byte is ignored."""

    def _pcm(self, payload: bytes) -> Int16Array:
        ch = self.codec.channels
        usable = len(payload) // (2 * ch) * 2 * ch
        x = np.frombuffer(payload[:usable], dtype=">i2").astype(np.int16)
        if ch == 1:
            return x
        mixed: Int16Array = (x.reshape(-1, ch).astype(np.int32).sum(axis=1) // ch).astype(np.int16)
        return mixed


# -- Opus ----------------------------------------------------------------------------------------

_OPUS_MAX_FRAME = 5760          # 120 ms at 48 kHz, the longest Opus packet


class OpusEncoder(Encoder):
    """Opus (libopus through opuslib), mono, VoIP mode, in-band FEC on.

    ``expected_loss`` (percent) is what the FEC is sized for; ``bitrate`` None lets libopus
    choose. Frames must be 2.5, 5, 10, 20, 40 or 60 ms at 48 kHz.
    """

    def __init__(self, codec: Codec, impl: str | None = None, *, bitrate: int | None = None,
                 expected_loss: int = 10, fec: bool = True) -> None:
        super().__init__(codec)
        import opuslib
        import opuslib.api.ctl
        import opuslib.api.encoder

        self._enc = opuslib.Encoder(codec.sample_rate, 1, "voip")
        # opuslib's ``inband_fec`` property setter drops its argument: call the ctl directly.
        opuslib.api.encoder.encoder_ctl(self._enc.encoder_state,
                                        opuslib.api.ctl.set_inband_fec, int(fec))
        self._enc.packet_loss_perc = expected_loss
        if bitrate is not None:
            self._enc.bitrate = bitrate

    @property
    def lookahead(self) -> int:
        """Encoder delay in samples (the decoded audio lags the input by this much)."""
        return int(self._enc.lookahead)

    @property
    def fec(self) -> bool:
        """Whether in-band FEC is on."""
        return bool(self._enc.inband_fec)

    def encode(self, frame: Int16Array) -> bytes:
        x = np.ascontiguousarray(frame, dtype=np.int16)
        return bytes(self._enc.encode(x.tobytes(), len(x)))


class OpusDecoder(Decoder):
    """Opus decoder to 48 kHz mono; concealment by libopus PLC or by FEC from the next packet."""

    def __init__(self, codec: Codec, impl: str | None = None) -> None:
        super().__init__(codec)
        import opuslib
        import opuslib.api.decoder

        self._api = opuslib.api.decoder
        self._dec = opuslib.Decoder(codec.sample_rate, 1)

    def decode(self, payload: bytes) -> Int16Array:
        pcm = self._dec.decode(payload, _OPUS_MAX_FRAME)
        return np.frombuffer(pcm, dtype=np.int16).copy()

    def conceal(self, samples: int, next_payload: bytes | None = None) -> Int16Array:
        """FEC from ``next_payload`` when given (libopus falls back to PLC when it carries no
        FEC), else PLC; ``samples`` must be a multiple of 2.5 ms."""
        if samples <= 0 or samples % (self.codec.sample_rate // 400):
            raise ValueError("Opus conceals multiples of 2.5 ms")
        if next_payload:
            pcm = self._dec.decode(next_payload, samples, True)
        else:
            pcm = self._api.decode(self._dec.decoder_state, None, 0, samples, False, channels=1)
        return np.frombuffer(pcm, dtype=np.int16).copy()


# -- factories -----------------------------------------------------------------------------------

_ENCODERS: dict[str, Callable[[Codec, str | None], Encoder]] = {
    "g711u": _G711Encoder,
    "g711a": _G711Encoder,
    "g722": _G722Encoder,
    "l16": _L16Encoder,
    "opus": OpusEncoder,
}
_DECODERS: dict[str, Callable[[Codec, str | None], Decoder]] = {
    "g711u": _G711Decoder,
    "g711a": _G711Decoder,
    "g722": _G722Decoder,
    "l16": _L16Decoder,
    "opus": OpusDecoder,
}
