#!/usr/bin/env python3
"""Speech quality through the media engine (issue 3, benchmark d): PESQ under packet loss.

Speech (espeak-ng, through ``pbx.media.tts``) is encoded with each codec and sent as RTP, paced
on a 20 ms grid, from a sender task on loopback to a terminated engine stream, which records
what it decodes (``stream.record``). Packets are dropped in the sender with a seeded RNG
(independent losses at 0, 3 and 10 %, the same pattern for every codec). The recording is
aligned with the reference by cross-correlation and scored with ITU-T P.862 (PyPI ``pesq``):
narrowband at 8 kHz for G.711, wideband at 16 kHz for G.722 and Opus (its 48 kHz recording
resampled to 16 kHz). The engine's part is everything after the socket: jitter buffer,
decoding, concealment (G.711 Appendix I for PCMU, PCMA and G.722; libopus' own for Opus).

Also scored, as references: the codec alone (encode, decode, no network: what the engine can at
best deliver) and, for the send direction, the same speech played into a stream
(``stream.play``) and decoded by the receiving peer.

    .venv/bin/python benchmarks/media_pesq.py                      # native backend
    .venv/bin/python benchmarks/media_pesq.py --backend python --codecs PCMU

Figures go to stdout and benchmarks/out/media_pesq.json.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import random
import struct
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from pbx.media.codecs import Codec as MediaCodec  # noqa: E402
from pbx.media.codecs import get_codec  # noqa: E402
from pbx.media.dsp import IMPLEMENTATION  # noqa: E402
from pbx.media.engine import EngineConfig, MediaEngine, Stream  # noqa: E402
from pbx.media.playback import PcmSource  # noqa: E402
from pbx.media.resample import resample  # noqa: E402
from pbx.media.tts import EspeakNgProvider  # noqa: E402
from pbx.media.wav import read_wav  # noqa: E402
from pbx.sip.offer_answer import Codec, NegotiatedMedia  # noqa: E402

OUT = HERE / "out" / "media_pesq.json"
# Four talkers (espeak-ng voice variants, two female, two male), one Harvard sentence each.
TALKERS = (
    ("en+f2", "The birch canoe slid on the smooth planks."),
    ("en+m1", "Glue the sheet to the dark blue background."),
    ("en+f3", "It is easy to tell the depth of a well."),
    ("en-us+m3", "These days a chicken leg is a rare dish."),
)
# name -> (SDP codec, PESQ rate, mode)
CODECS: dict[str, tuple[Codec, int, str]] = {
    "PCMU": (Codec("PCMU", 8000, 1, 0), 8000, "nb"),
    "PCMA": (Codec("PCMA", 8000, 1, 8), 8000, "nb"),
    "G722": (Codec("G722", 8000, 1, 9), 16000, "wb"),
    "opus": (Codec("opus", 48000, 2, 111), 16000, "wb"),
}
HDR = struct.Struct("!BBHII")
JITTER: dict[str, Any] = {}


def score(ref: np.ndarray, deg: np.ndarray, rate: int, mode: str) -> tuple[float, int]:
    """PESQ of ``deg`` aligned to ``ref`` by cross-correlation; (score, lag in samples)."""
    from pesq import pesq

    r = ref.astype(np.float64)
    d = deg.astype(np.float64)
    n = 1 << int(np.ceil(np.log2(len(r) + len(d))))
    xc = np.fft.irfft(np.fft.rfft(d, n) * np.conj(np.fft.rfft(r, n)), n)
    lag = int(np.argmax(xc[: len(d)]))
    aligned = deg[lag:lag + len(ref)]
    if len(aligned) < len(ref):
        aligned = np.concatenate([aligned, np.zeros(len(ref) - len(aligned), np.int16)])
    return float(pesq(rate, ref.astype(np.float32), aligned.astype(np.float32), mode)), lag


def offline(codec: MediaCodec, pcm: np.ndarray) -> np.ndarray:
    """The codec alone: every 20 ms frame encoded and decoded."""
    enc, dec = codec.encoder(), codec.decoder()
    f = codec.sample_rate // 50
    return np.concatenate([dec.decode(enc.encode(pcm[i:i + f]))
                           for i in range(0, len(pcm) - f + 1, f)])


class Peer(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.got: list[bytes] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.got.append(data)


async def through_engine(backend: str, sdp: Codec, codec: MediaCodec, pcm: np.ndarray,
                         loss: float, seed: int, wav: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Send ``pcm`` as RTP with ``loss``; what the engine stream recorded, and its counters."""
    loop = asyncio.get_running_loop()
    async with MediaEngine(EngineConfig(backend=backend, port_min=24000,  # type: ignore[arg-type]
                                        port_max=24099, **JITTER)) as eng:
        transport, _ = await loop.create_datagram_endpoint(Peer, local_addr=("127.0.0.1", 0))
        addr = transport.get_extra_info("sockname")
        stream = await eng.open_stream()
        stream.set_media(NegotiatedMedia(0, addr[0], addr[1], addr[0], addr[1] + 1, sdp,
                                         {sdp.payload_type or 0: sdp}, None, {}, 20,
                                         "recvonly", False))
        rec = stream.record(wav)
        enc = codec.encoder()
        f = codec.sample_rate // 50
        step = codec.clock_rate // 50
        rng = random.Random(seed)
        frames = [pcm[i:i + f] for i in range(0, len(pcm) - f + 1, f)]
        frames += [np.zeros(f, np.int16)] * 15           # let the tail play out
        sent = 0
        t0 = loop.time()
        for i, frame in enumerate(frames):
            payload = enc.encode(frame)
            delay = t0 + 0.02 * i - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if rng.random() >= loss:
                transport.sendto(HDR.pack(0x80, sdp.payload_type or 0, i & 0xFFFF, step * i,
                                          0x5EED) + payload, stream.local)
                sent += 1
        await asyncio.sleep(0.3)
        rec.stop()
        jb = stream.jitter_stats()
        info = {"packets": len(frames), "sent": sent,
                "jitter": None if jb is None else dataclasses.asdict(jb)}
        transport.close()
    got, rate = read_wav(wav)
    assert rate == codec.sample_rate
    return got, info


async def played_by_engine(backend: str, sdp: Codec, codec: MediaCodec,
                           pcm: np.ndarray) -> np.ndarray:
    """The send direction: ``pcm`` played into a stream, decoded by the receiving peer."""
    loop = asyncio.get_running_loop()
    async with MediaEngine(EngineConfig(backend=backend, port_min=24100,  # type: ignore[arg-type]
                                        port_max=24199)) as eng:
        transport, peer = await loop.create_datagram_endpoint(Peer, local_addr=("127.0.0.1", 0))
        addr = transport.get_extra_info("sockname")
        stream: Stream = await eng.open_stream()
        stream.set_media(NegotiatedMedia(0, addr[0], addr[1], addr[0], addr[1] + 1, sdp,
                                         {sdp.payload_type or 0: sdp}, None, {}, 20, "sendonly",
                                         False))
        await stream.play(PcmSource(pcm, codec.sample_rate))
        await asyncio.sleep(0.1)
        transport.close()
    dec = codec.decoder()
    pkts = sorted((p for p in peer.got if p[1] & 0x7F == (sdp.payload_type or 0)),
                  key=lambda p: HDR.unpack_from(p)[3])
    return np.concatenate([dec.decode(p[12:]) for p in pkts])


def at_rate(x: np.ndarray, src: int, dst: int) -> np.ndarray:
    return x if src == dst else resample(x, src, dst)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    tts = EspeakNgProvider(cache_dir=HERE / "out" / "tts-cache")
    parts = []
    for voice, text in TALKERS:                     # each at the same speech level
        x, _ = tts.synthesize(text, voice=voice, rate=16000)
        rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) or 1.0
        parts += [np.clip(x * (3000.0 / rms), -32768, 32767).astype(np.int16),
                  np.zeros(4800, np.int16)]
    speech16, rate16 = np.concatenate([np.zeros(3200, np.int16), *parts]), 16000
    results: dict[str, Any] = {"backend": args.backend, "dsp": IMPLEMENTATION,
                               "speech_seconds": len(speech16) / rate16, "seed": args.seed,
                               "talkers": [list(t) for t in TALKERS], "jitter": dict(JITTER),
                               "codecs": {}}
    print(f"speech: {len(speech16) / rate16:.1f} s of espeak-ng, {len(TALKERS)} talkers; "
          f"backend {args.backend}, jitter buffer min {JITTER.get('jitter_min_ms', 'default')}, "
          f"dsp={IMPLEMENTATION}; losses {args.loss} (seed {args.seed})")
    print(f"{'codec':6s} {'mode':4s} {'codec alone':>11s} {'played':>7s} "
          + " ".join(f"{f'{p:g} % loss':>10s}" for p in args.loss))
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.codecs:
            sdp, prate, mode = CODECS[name]
            codec = get_codec(sdp.name, sdp.clock_rate, sdp.channels)
            pcm = at_rate(speech16, 16000, codec.sample_rate)
            ref = at_rate(speech16, 16000, prate)
            row: dict[str, Any] = {"mode": mode, "pesq_rate": prate}
            alone = at_rate(offline(codec, pcm), codec.sample_rate, prate)
            row["codec_alone"] = round(score(ref, alone, prate, mode)[0], 3)
            played = await played_by_engine(args.backend, sdp, codec, pcm)
            row["played"] = round(score(ref, at_rate(played, codec.sample_rate, prate), prate,
                                        mode)[0], 3)
            row["loss"] = {}
            for loss in args.loss:
                got, info = await through_engine(args.backend, sdp, codec, pcm, loss / 100,
                                                 args.seed, Path(tmp) / f"{name}-{loss}.wav")
                value, lag = score(ref, at_rate(got, codec.sample_rate, prate), prate, mode)
                row["loss"][str(loss)] = {"pesq": round(value, 3), "lag_samples": lag, **info}
            results["codecs"][name] = row
            print(f"{name:6s} {mode:4s} {row['codec_alone']:11.2f} {row['played']:7.2f} "
                  + " ".join(f"{row['loss'][str(p)]['pesq']:10.2f}" for p in args.loss),
                  flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    ap.add_argument("--backend", choices=["native", "python"], default=None)
    ap.add_argument("--codecs", type=lambda s: [x.strip() for x in s.split(",")],
                    default=list(CODECS))
    ap.add_argument("--loss", type=lambda s: [float(x) for x in s.split(",")],
                    default=[0.0, 3.0, 10.0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--jitter-min", type=int, default=None, help="jitter_min_ms of the engine")
    args = ap.parse_args(argv)
    if args.jitter_min is not None:
        JITTER["jitter_min_ms"] = args.jitter_min
    from pbx.media.engine import available_backends
    args.backend = args.backend or available_backends()[0]
    for name in args.codecs:
        if name not in CODECS:
            ap.error(f"unknown codec {name}; choose from {', '.join(CODECS)}")
    results = asyncio.run(run(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
