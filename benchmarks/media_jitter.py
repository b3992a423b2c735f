"""Jitter-buffer quality: late loss against added delay, adaptive vs fixed, on synthetic traces.

Every named trace of ``pbx.rtp.traces.SCENARIOS`` (LAN, Wi-Fi, bursty 3G-like, clock skew both
ways, delay spikes; talkspurts flagged silent/speech) is replayed through ``pbx.rtp.jitter
.JitterBuffer`` on a 20 ms clock, once adaptive and once pinned at each fixed delay. Then the cost
of one ``put`` + ``get`` is measured for the C and the Python twin in the same run.

Figures go to stdout and to ``benchmarks/out/media_jitter.json``. Nothing here asserts on time.

    .venv/bin/python benchmarks/media_jitter.py [--duration 60] [--seed 1] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from pbx.media._native import lib  # noqa: E402
from pbx.rtp import traces as tr  # noqa: E402
from pbx.rtp.jitter import (  # noqa: E402
    FLAG_DROPPED,
    IMPLEMENTATION,
    Frame,
    JitterBuffer,
    Missing,
    MissingReason,
)

FIXED = (20, 40, 60, 80, 120)


def quality(packets: list[tr.TracePacket], **config: Any) -> dict[str, Any]:
    """Replay one trace; what the listener gets, in rates of the audio frames delivered."""
    first: dict[int, float] = {}
    silent: dict[int, bool | None] = {}
    for p in packets:
        if p.frame >= 0 and p.frame not in first:
            first[p.frame], silent[p.frame] = p.arrival, p.silent
    last = max(p.arrival for p in packets)
    jb = JitterBuffer(dtmf_payload_type=101, **config)
    rep = tr.replay(jb, packets, until=last)
    delays, stalls, dropped_speech, dropped_silence = [], 0, 0, 0
    for now, out in rep.ticks:
        if isinstance(out, Frame):
            frame = tr.frame_of(out.payload)
            delays.append(now - first[frame])
            if out.flags & FLAG_DROPPED:  # the frame just before this one was removed
                if silent.get(frame - 1):
                    dropped_silence += 1
                else:
                    dropped_speech += 1
        elif isinstance(out, Missing) and out.reason is MissingReason.NOT_YET:
            stalls += 1
    s = jb.stats
    delivered = len(first)
    late_loss = (s.late + s.discarded + stalls + dropped_speech) / delivered
    delays.sort()
    return {
        "delivered": delivered,
        "late_loss_pct": round(100 * late_loss, 3),
        "mean_delay_ms": round(1000 * statistics.fmean(delays), 1),
        "p95_delay_ms": round(1000 * delays[int(0.95 * (len(delays) - 1))], 1),
        "late": s.late,
        "stalls": stalls,
        "dropped_speech": dropped_speech,
        "dropped_silence": dropped_silence,
        "inserted": s.inserted_samples // jb.frame_samples,
        "lost": s.lost,
        "resyncs": s.resyncs,
        "final_target_ms": s.target_delay_ms,
    }


def op_cost(packets: list[tr.TracePacket], implementation: str,
            repeat: int) -> dict[str, float]:
    """Seconds per put+get pair through the public API and through the bare twin."""
    arrivals = tr.arrivals(packets)
    rows = [(p.seq, p.timestamp, p.marker, p.payload_type, p.payload, p.ssrc, p.arrival, p.silent)
            for p in arrivals]
    raw = [(p.seq, p.timestamp, int(p.marker), p.payload_type, p.payload, p.ssrc,
            round(p.arrival * 1e6), -1 if p.silent is None else int(p.silent)) for p in arrivals]
    ticks = [k * 0.02 for k in range(len(rows))]
    tick_us = [k * 20_000 for k in range(len(rows))]
    best_api = best_core = float("inf")
    for _ in range(repeat):
        jb = JitterBuffer(implementation=implementation)
        put, get = jb.put, jb.get
        t0 = time.perf_counter()
        for row, now in zip(rows, ticks, strict=True):
            put(*row[:6], row[6], silent=row[7])
            get(now + 0.02)
        best_api = min(best_api, (time.perf_counter() - t0) / len(rows))
        core = JitterBuffer(implementation=implementation)._core
        cput, cget = core.put, core.get
        t0 = time.perf_counter()
        for row, now_us in zip(raw, tick_us, strict=True):
            cput(*row)
            cget(now_us + 20_000)
        best_core = min(best_core, (time.perf_counter() - t0) / len(raw))
    return {"api_us": round(best_api * 1e6, 3), "core_us": round(best_core * 1e6, 3)}


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(),
                            "cpus": os.cpu_count(), "jitter_implementation": IMPLEMENTATION}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=60.0, help="seconds per trace (60)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3, help="timing runs, best kept (3)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "media_jitter.json")
    args = ap.parse_args()
    started = time.perf_counter()
    info = machine_info()
    print("machine:", ", ".join(f"{k}={v}" for k, v in info.items()), flush=True)
    configs: list[tuple[str, dict[str, Any]]] = [("adaptive", {})]
    configs += [(f"fixed {d} ms", {"fixed": d}) for d in FIXED]

    results: dict[str, Any] = {}
    print(f"\n{'trace':<14} {'buffer':<12} {'late loss':>9} {'mean delay':>10} {'p95 delay':>9} "
          f"{'late':>5} {'stalls':>6} {'drop sp':>7} {'drop sil':>8} {'ins':>4} {'lost':>5}")
    for name in tr.SCENARIOS:
        packets = tr.scenario(name, args.seed, args.duration)
        results[name] = {}
        for label, config in configs:
            q = quality(packets, **config)
            results[name][label] = q
            print(f"{name:<14} {label:<12} {q['late_loss_pct']:>8.2f}% "
                  f"{q['mean_delay_ms']:>8.1f}ms {q['p95_delay_ms']:>7.1f}ms {q['late']:>5} "
                  f"{q['stalls']:>6} {q['dropped_speech']:>7} {q['dropped_silence']:>8} "
                  f"{q['inserted']:>4} {q['lost']:>5}", flush=True)

    timing_trace = tr.scenario("wifi", args.seed, args.duration)
    cost: dict[str, Any] = {"trace": "wifi", "packets": len(timing_trace)}
    impls = ["c", "py"] if lib is not None else ["py"]
    for impl in impls:
        cost[impl] = op_cost(timing_trace, impl, args.repeat)
    print("\nput+get cost per packet (best of "
          f"{args.repeat}, {len(timing_trace)} packets of the wifi trace):")
    for impl in impls:
        print(f"  {impl:<2}  public API {cost[impl]['api_us']:7.2f} µs   "
              f"bare twin {cost[impl]['core_us']:7.2f} µs")
    if lib is not None:
        cost["py_over_c_api"] = round(cost["py"]["api_us"] / cost["c"]["api_us"], 2)
        cost["py_over_c_core"] = round(cost["py"]["core_us"] / cost["c"]["core_us"], 2)
        print(f"  Python / C: {cost['py_over_c_api']}x through the API, "
              f"{cost['py_over_c_core']}x bare (cffi call overhead included for C)")

    report = {"machine": info, "duration_s": args.duration, "seed": args.seed,
              "late_loss_definition": "(late + discarded + underflow stalls + speech frames "
                                      "dropped) / audio frames delivered",
              "traces": results, "cost": cost,
              "elapsed_s": round(time.perf_counter() - started, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out} in {report['elapsed_s']} s")


if __name__ == "__main__":
    main()
