#!/usr/bin/env python3
"""Conference mixer cost per participant per 20 ms tick: C kernel vs numpy twin.

For each layout (conferences x participants, 8 kHz, 160-sample frames) two levels are timed:

- ``kernel``: one ``mix_rows`` call per conference on ready (n, 160) int16 arrays; what the native
  engine's tick pays (plus the cffi call, which it will not pay);
- ``conference``: ``Conference.mix`` with a dict of frames in and out, as Python code uses it.

Each figure is the best of ``--repeats`` runs of at least ``--min-time`` seconds, in ns per
participant per tick, with the participants one core could mix in a 20 ms tick at that cost
(mixing only: no jitter buffer, codec or I/O). The C column uses ``pbx._dsp`` directly, so it is
measured even under ``PBX_NO_EXTENSIONS=1``.

    .venv/bin/python benchmarks/media_mixer.py            # about 30 s
    .venv/bin/python benchmarks/media_mixer.py --quick    # a few seconds

Figures go to stdout and benchmarks/out/media_mixer.json. Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "benchmarks" / "out" / "media_mixer.json"
TICK = 0.020
SAMPLES = 160

from pbx.media import mixer  # noqa: E402
from pbx.media.mixer import Conference, MixKernel, c_mix_rows, py_mix_rows  # noqa: E402

# (conferences, participants per conference, whispering participants per conference)
LAYOUTS = [(1, 3, 0), (1, 10, 0), (1, 50, 0), (1, 10, 1),
           (500, 3, 0), (150, 10, 0), (30, 50, 0)]


def kernels() -> dict[str, MixKernel]:
    out: dict[str, MixKernel] = {"py": py_mix_rows}
    try:
        from pbx import _dsp  # type: ignore[attr-defined]
    except ImportError:
        print("pbx._dsp is not built: C figures left out", file=sys.stderr)
        return out
    out["c"] = functools.partial(c_mix_rows, ffi=_dsp.ffi, lib=_dsp.lib)
    return out


def best_time(fn: Callable[[], None], min_time: float, repeats: int) -> float:
    """Best seconds per call over ``repeats`` runs of at least ``min_time`` each."""
    fn()  # warm up
    best = float("inf")
    for _ in range(repeats):
        calls = 0
        start = time.perf_counter()
        while True:
            fn()
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_time:
                break
        best = min(best, elapsed / calls)
    return best


def layout_case(n_conf: int, n: int, whisperers: int, kernel: MixKernel, rng: np.random.Generator
                ) -> tuple[Callable[[], None], Callable[[], None]]:
    """(kernel-level tick, Conference-level tick) for one layout and kernel."""
    arrays = []
    for _ in range(n_conf):
        inp = rng.integers(-8000, 8000, (n, SAMPLES)).astype(np.int16)
        flags = np.zeros(n, np.uint8)
        whisper = np.full(n, -1, np.int32)
        whisper[n - whisperers:] = 0
        arrays.append((inp, np.empty_like(inp), flags, whisper))

    def kernel_tick() -> None:
        for inp, out, flags, whisper in arrays:
            kernel(inp, out, flags, whisper)

    confs = []
    for k in range(n_conf):
        c = Conference(8000, SAMPLES, kernel=kernel)
        for p in range(n):
            c.join(p)
        for p in range(n - whisperers, n):
            c.whisper(p, to=0)
        frames = {p: arrays[k][0][p] for p in range(n)}
        c.mix(frames)  # apply the joins
        confs.append((c, frames))

    def conference_tick() -> None:
        for c, frames in confs:
            c.mix(frames)

    return kernel_tick, conference_tick


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    ap.add_argument("--min-time", type=float, default=0.25, help="seconds per timed run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    if args.quick:
        args.min_time, args.repeats = 0.03, 1

    ks = kernels()
    rng = np.random.default_rng(7)
    rows: list[dict[str, Any]] = []
    print(f"pbx mixer: live implementation {mixer.IMPLEMENTATION!r}; python {platform.python_version()}, "
          f"numpy {np.__version__}, {platform.processor() or platform.machine()}")
    header = (f"{'confs':>5} {'n':>3} {'wh':>2} | {'level':<10} "
              + " ".join(f"{k + ' ns/p':>10} {k + ' max p':>8}" for k in ks)
              + (f" {'c speedup':>9}" if "c" in ks else ""))
    print(header)
    print("-" * len(header))
    for n_conf, n, whisperers in LAYOUTS:
        participants = n_conf * n
        per: dict[str, dict[str, float]] = {"kernel": {}, "conference": {}}
        for name, kernel in ks.items():
            kernel_tick, conference_tick = layout_case(n_conf, n, whisperers, kernel, rng)
            for level, fn in (("kernel", kernel_tick), ("conference", conference_tick)):
                per[level][name] = best_time(fn, args.min_time, args.repeats) / participants
        for level, costs in per.items():
            row: dict[str, Any] = {"conferences": n_conf, "participants": n,
                                   "whisperers": whisperers, "level": level,
                                   "frame_samples": SAMPLES}
            cells = []
            for name, sec in costs.items():
                row[f"{name}_ns_per_participant_tick"] = round(sec * 1e9, 1)
                row[f"{name}_participants_per_core"] = int(TICK / sec)
                cells.append(f"{sec * 1e9:>10.0f} {int(TICK / sec):>8}")
            line = f"{n_conf:>5} {n:>3} {whisperers:>2} | {level:<10} " + " ".join(cells)
            if "c" in costs:
                row["c_speedup"] = round(costs["py"] / costs["c"], 2)
                line += f" {row['c_speedup']:>8.1f}x"
            rows.append(row)
            print(line)

    report = {
        "benchmark": "media_mixer",
        "implementation": mixer.IMPLEMENTATION,
        "kernels": list(ks),
        "machine": {"python": platform.python_version(), "numpy": np.__version__,
                    "processor": platform.processor() or platform.machine()},
        "settings": {"min_time": args.min_time, "repeats": args.repeats, "rate": 8000,
                     "frame_samples": SAMPLES, "tick_seconds": TICK},
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nns/p: nanoseconds per participant per tick; max p: participants one core mixes in "
          f"a 20 ms tick at that cost (mixing only). Written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
