#!/usr/bin/env python3
"""Conference participants per core (issue 3, benchmark b): jitter buffering, decoding, mixing,
encoding and sending, with zero late ticks and no loss.

N participants = N terminated PCMU engine streams in conferences of ``--size`` members (5 and
50 by default), each receiving 50 packets/s of 20 ms PCMU from a C load generator
(``_rtp_load.c``, the relay benchmark's, pinned to CPU 1) and sending its mix back every 20 ms.
The engine runs in its own process pinned to CPU 0. Per tick the engine does, for every
participant: jitter-buffer playout, G.711 decoding with Appendix I concealment, the conference
mix (sum minus self), G.711 encoding and one sendto; per packet: receive, checks, jitter-buffer
insert.

A step passes when, over the measured window: no tick ran late (the media clock's overruns and
skipped ticks stay 0), the jitter buffers lost, dropped and discarded nothing (late + lost +
discarded = 0), the kernel dropped no datagram (RcvbufErrors, host-wide) and every tick sent
every participant's frame. Per step: engine CPU % (utime + stime over the window, 100 % = one
core), CPU per participant-tick, the engine's own time per tick (mean / max, in the backend),
the generator's lag (GENERATOR-LIMITED when it fell behind). Each configuration ramps x1.5
until a step fails, then bisects.

    .venv/bin/python benchmarks/media_conference.py --quick         # a few minutes
    .venv/bin/python benchmarks/media_conference.py                 # full ramps
    .venv/bin/python benchmarks/media_conference.py --backend native --size 5 --steps 1500,2000

Figures go to stdout and benchmarks/out/media_conference.json. Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "src"))

import media_relay as relay  # noqa: E402  (the generator, pinning, /proc readers)

OUT = relay.OUT_DIR / "media_conference.json"
PY = sys.executable
PORT_MIN, PORT_MAX = 12000, 31999


# -- the engine process ----------------------------------------------------------------------------


def engine_process(backend: str, loop_name: str, participants: int, size: int,
                   coalesce: float) -> None:
    """Runs in the child: streams with PCMU media in conferences; 'mark' and 'stats' on stdin."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    from pbx.media.engine import EngineConfig, MediaEngine
    from pbx.sip.offer_answer import Codec, NegotiatedMedia

    pcmu = Codec("PCMU", 8000, 1, 0)

    def media(port: int) -> NegotiatedMedia:
        return NegotiatedMedia(0, "127.0.0.1", port, "127.0.0.1", port, pcmu, {0: pcmu}, None, {},
                               20, "sendrecv", True)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        cfg = EngineConfig(port_min=PORT_MIN, port_max=PORT_MAX, backend=backend,  # type: ignore[arg-type]
                           rtcp_mux=True, coalesce=coalesce, rtp_timeout=0)
        async with MediaEngine(cfg) as eng:
            ss = [await eng.open_stream() for _ in range(participants)]
            print(json.dumps({"ports": [s.port for s in ss]}), flush=True)
            line = await loop.run_in_executor(None, sys.stdin.readline)
            remotes = json.loads(line)["remotes"]
            conf = None
            for i, (s, port) in enumerate(zip(ss, remotes, strict=True)):
                s.set_media(media(port))
                if i % size == 0:
                    conf = eng.conference(8000)
                assert conf is not None
                conf.join(s)
            print(json.dumps({"ready": True}), flush=True)

            def streams_total() -> dict[str, float]:
                totals: dict[str, float] = {}
                for s in ss:
                    for k, v in asdict(s.stats()).items():  # type: ignore[call-overload]
                        totals[k] = totals.get(k, 0) + v
                    jb = s.jitter_stats()
                    assert jb is not None
                    for k in ("received", "played", "late", "lost", "discarded", "duplicated",
                              "underflows", "concealed_samples", "resyncs"):
                        totals["jb_" + k] = totals.get("jb_" + k, 0) + getattr(jb, k)
                return totals

            # The mark is cheap (engine counters only): walking every stream would stall the
            # loop for tens of ms and make a late tick of its own. The streams' counters
            # (jitter buffers included) are totals since the start, warm-up included.
            mark = {"engine": asdict(eng.stats()), "t": time.monotonic()}  # type: ignore[call-overload]
            while True:
                cmd = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
                if cmd == "mark":
                    mark = {"engine": asdict(eng.stats()), "t": time.monotonic()}  # type: ignore[call-overload]
                elif cmd == "stats" or not cmd:
                    end = {"engine": asdict(eng.stats()), "t": time.monotonic()}  # type: ignore[call-overload]
                    delta: dict[str, Any] = {
                        "engine": {k: (v - mark["engine"][k]) if isinstance(v, int) else v
                                   for k, v in end["engine"].items()},
                        "streams": streams_total(),
                        "window_s": end["t"] - mark["t"],
                    }
                    ticks = delta["engine"]["ticks"]
                    e0, e1 = mark["engine"], end["engine"]
                    delta["engine"]["tick_mean_ms"] = (
                        (e1["tick_mean_ms"] * e1["ticks"] - e0["tick_mean_ms"] * e0["ticks"])
                        / ticks if ticks else 0.0)
                    print(json.dumps(delta), flush=True)
                    return

    if loop_name == "uvloop":
        import uvloop
        uvloop.run(main())
    else:
        asyncio.run(main())


# -- the controller -----------------------------------------------------------------------------------


@dataclass
class Step:
    participants: int
    size: int
    passed: bool = False
    why: str = ""
    pps_in: int = 0
    engine_cpu_pct: float = 0.0
    cpu_us_per_participant_tick: float = 0.0
    participants_per_core: int = 0
    tick_mean_ms: float = 0.0
    tick_max_ms: float = 0.0
    late_ticks: int = 0
    skipped_ticks: int = 0
    jb_late: int = 0
    jb_lost: int = 0
    jb_discarded: int = 0
    frames_expected: int = 0
    frames_sent: int = 0
    gen_lag_max_us: float = 0.0
    gen_limited: bool = False
    udp_rcvbuf_errors: int = 0
    engine: dict[str, Any] = field(default_factory=dict)
    generator: dict[str, Any] = field(default_factory=dict)


def run_step(cfg: str, n: int, size: int, args: argparse.Namespace) -> Step:
    backend, _, loop_name = cfg.partition("/")
    step = Step(n, size)
    cpus = (0, 1) if args.pin else (None, None)
    gen_bin = relay.build_generator()
    cmd = [PY, __file__, "--engine-process", backend, loop_name, str(n), str(size),
           str(args.coalesce)]
    eng = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                           preexec_fn=relay.pin(cpus[0], args.sched))
    gen: subprocess.Popen[str] | None = None
    targets: str | None = None
    try:
        ports = json.loads(relay.readline(eng, "engine start"))["ports"]
        with tempfile.NamedTemporaryFile("w", suffix=".targets", delete=False) as tf:
            tf.write("".join(f"127.0.0.1 {p}\n" for p in ports))
            targets = tf.name
        k = min(args.gen_sockets, n)
        gen = subprocess.Popen(
            [str(gen_bin), "gen", targets, str(k), "172", str(args.warmup), str(args.duration),
             str(args.tail), str(args.quantum_us), args.gen_mode],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            preexec_fn=relay.pin(cpus[1], args.sched))
        gports = [int(x) for x in relay.readline(gen, "generator start").split()[1:]]
        remotes = [gports[j * k // n] for j in range(n)]
        assert eng.stdin is not None and gen.stdin is not None
        eng.stdin.write(json.dumps({"remotes": remotes}) + "\n")
        eng.stdin.flush()
        relay.readline(eng, "engine ready", 300)
        gen.stdin.write("GO\n")
        gen.stdin.flush()
        relay.readline(gen, "generator warm-up")               # MEASURE
        drops0 = relay.udp_rcvbuf_errors()
        eng.stdin.write("mark\n")
        eng.stdin.flush()
        c0, t0 = relay.proc_cpu(eng.pid), time.monotonic()
        relay.readline(gen, "generator run", args.duration + 60)  # END
        c1, t1 = relay.proc_cpu(eng.pid), time.monotonic()
        eng.stdin.write("stats\n")
        eng.stdin.flush()
        try:
            step.engine = json.loads(relay.readline(eng, "engine stats", 30))
        except RuntimeError:
            step.why = "overloaded: the engine did not answer within 30 s"
            return step
        step.udp_rcvbuf_errors = relay.udp_rcvbuf_errors() - drops0
        res = json.loads(relay.readline(gen, "generator result", args.tail + 30))
    except (RuntimeError, ValueError, KeyError) as exc:
        step.why = f"error: {exc}"
        return step
    finally:
        for p in (gen, eng):
            if p is not None and p.poll() is None:
                p.kill()
            if p is not None:
                p.wait()
        if targets is not None:
            os.unlink(targets)
    step.generator = res
    e, s = step.engine["engine"], step.engine["streams"]
    window = step.engine["window_s"]
    step.pps_in = n * 50
    step.engine_cpu_pct = 100.0 * (c1 - c0) / (t1 - t0)
    step.cpu_us_per_participant_tick = (step.engine_cpu_pct / 100 * 0.020 / n * 1e6)
    step.participants_per_core = int(n * 100 / step.engine_cpu_pct) if step.engine_cpu_pct else 0
    step.tick_mean_ms = e["tick_mean_ms"]
    step.tick_max_ms = e["tick_max_ms"]
    step.late_ticks, step.skipped_ticks = e["overruns"], e["ticks_skipped"]
    step.jb_late, step.jb_lost, step.jb_discarded = (int(s["jb_late"]), int(s["jb_lost"]),
                                                      int(s["jb_discarded"]))
    step.frames_sent = int(e["frames_sent"])
    step.frames_expected = int(e["ticks"]) * n
    step.gen_lag_max_us = res["lag_max_us"]
    step.gen_limited = step.gen_lag_max_us > 20000 or res["lag_mean_us"] > 1000
    why = []
    if step.late_ticks or step.skipped_ticks:
        why.append(f"late ticks {step.late_ticks} (skipped {step.skipped_ticks})")
    if step.jb_late or step.jb_lost or step.jb_discarded:
        why.append(f"jitter buffers: late {step.jb_late} lost {step.jb_lost} "
                   f"discarded {step.jb_discarded}")
    if step.udp_rcvbuf_errors:
        why.append(f"rcvbuf drops {step.udp_rcvbuf_errors}")
    if step.frames_sent < step.frames_expected:
        why.append(f"sent {step.frames_sent} of {step.frames_expected} frames")
    if abs(window - args.duration) > 1.0:
        why.append(f"window {window:.1f} s")
    if res["send_fail"]:
        why.append(f"generator send failures {res['send_fail']}")
    step.passed = not why
    step.why = ", ".join(why)
    return step


def fmt(step: Step) -> str:
    ok = "ok  " if step.passed else "FAIL"
    return (f"  {ok} {step.participants:6d} participants (x{step.size:<3d}) "
            f"engine {step.engine_cpu_pct:5.1f} %  {step.cpu_us_per_participant_tick:5.2f} "
            f"us/participant-tick  tick {step.tick_mean_ms:5.2f} / {step.tick_max_ms:5.2f} ms  "
            f"late {step.late_ticks}  jb late/lost/disc {step.jb_late}/{step.jb_lost}/"
            f"{step.jb_discarded}  gen lag {step.gen_lag_max_us / 1000:.1f} ms"
            + (f"  rcvbuf drops {step.udp_rcvbuf_errors}" if step.udp_rcvbuf_errors else "")
            + ("  GENERATOR-LIMITED" if step.gen_limited else "")
            + (f"  [{step.why}]" if step.why and not step.passed else ""))


def search(cfg: str, size: int, args: argparse.Namespace) -> tuple[list[Step], int]:
    steps: list[Step] = []

    def grain(x: float) -> int:
        return max(size, round(x / size) * size)

    def attempt(n: int) -> bool:
        st = run_step(cfg, n, size, args)
        steps.append(st)
        print(fmt(st), flush=True)
        return st.passed

    if args.steps:
        for n in args.steps:
            attempt(grain(n))
        return steps, max((s.participants for s in steps if s.passed), default=0)
    start = args.start or (150 if cfg.startswith("python") else 1000)
    n, good, bad = grain(min(start, args.max_participants)), 0, 0
    while True:
        if attempt(n):
            good = n
            if n >= args.max_participants:
                break
            n = grain(min(n * 1.5, args.max_participants))
        else:
            bad = n
            break
    while bad and not good and n > size:
        n = grain(n / 2)
        if attempt(n):
            good = n
        else:
            bad = n
    for _ in range(args.bisect if bad and good else 0):
        mid = grain((good + bad) / 2)
        if mid in (good, bad):
            break
        if attempt(mid):
            good = mid
        else:
            bad = mid
    return steps, good


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    ap.add_argument("--backend", default="native,python",
                    type=lambda s: [x.strip() for x in s.split(",") if x.strip()])
    ap.add_argument("--size", default="5,50", type=lambda s: [int(x) for x in s.split(",")],
                    help="conference sizes (comma list)")
    ap.add_argument("--loop", choices=["asyncio", "uvloop"], default="uvloop")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--max-participants", type=int, default=6000)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--steps", type=lambda s: [int(x) for x in s.split(",")], default=None)
    ap.add_argument("--duration", type=float, default=None)
    ap.add_argument("--warmup", type=float, default=None)
    ap.add_argument("--tail", type=float, default=0.5)
    ap.add_argument("--bisect", type=int, default=None)
    ap.add_argument("--gen-sockets", type=int, default=64)
    ap.add_argument("--quantum-us", type=int, default=200)
    ap.add_argument("--gen-mode", choices=["poll", "sleep"], default="poll")
    ap.add_argument("--coalesce", type=float, default=0.001)
    ap.add_argument("--no-pin", dest="pin", action="store_false")
    ap.add_argument("--sched", choices=["normal", "nice", "fifo"],
                    default="fifo" if os.geteuid() == 0 else "normal")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    args.duration = args.duration or (3.0 if args.quick else 5.0)
    args.warmup = args.warmup or (1.5 if args.quick else 2.0)
    args.bisect = args.bisect if args.bisect is not None else (1 if args.quick else 3)
    if args.pin and (os.cpu_count() or 1) < 2:
        args.pin = False
    info = relay.machine()
    if args.loop == "uvloop" and info["uvloop"] is None:
        args.loop = "asyncio"
    pinned = "engine on CPU 0, generator on CPU 1" if args.pin else "not pinned"
    print(f"machine: {info['cpu']} x{info['cores']}, python {info['python']}, kernel "
          f"{info['kernel']}, uvloop {info['uvloop']}, dsp={info['dsp']}, load "
          f"{info['load_avg_at_start'][0]:.2f}; {pinned}, sched {args.sched}, loop {args.loop}")
    print(f"each step: {args.warmup:g} s warm-up + {args.duration:g} s measured; PCMU 20 ms, "
          f"50 pps in and out per participant; pass = no late tick, no jitter-buffer loss, "
          f"no kernel drop, every frame sent")
    results: dict[str, Any] = {"machine": info, "args": {
        k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "configs": {}}
    summary = []
    for backend in args.backend:
        if backend not in info["engine_backends"]:
            print(f"skipping backend {backend}: not available in this build")
            continue
        for size in args.size:
            cfg = f"{backend}/{args.loop}"
            name = f"{cfg} x{size}"
            print(f"{name}:", flush=True)
            steps, best = search(cfg, size, args)
            at = next((s for s in steps if s.participants == best and s.passed), None)
            results["configs"][name] = {"max_participants": best,
                                        "steps": [asdict(s) for s in steps]}
            summary.append((name, best, at))
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=2))
    print()
    print(f"{'configuration':24s} {'max':>6s} {'engine CPU':>10s} {'us/part-tick':>12s} "
          f"{'tick mean/max ms':>17s} {'per core':>8s}  first failure")
    for name, best, at in summary:
        fails = [s for s in results["configs"][name]["steps"] if not s["passed"]]
        first = min(fails, key=lambda s: s["participants"]) if fails else None
        why = "none" if first is None else f"{first['participants']}: {first['why']}" + (
            " (generator-limited)" if first["gen_limited"] else "")
        if at is None:
            print(f"{name:24s} {'-':>6s}  {why}")
            continue
        print(f"{name:24s} {best:6d} {at.engine_cpu_pct:9.1f}% "
              f"{at.cpu_us_per_participant_tick:12.2f} "
              f"{at.tick_mean_ms:8.2f} / {at.tick_max_ms:6.2f} {at.participants_per_core:8d}  {why}")
    print("per core: participants x 100 / engine CPU % at the max (what one whole core would "
          "carry at that cost)")
    print(f"\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--engine-process":
        engine_process(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]),
                       float(sys.argv[6]))
        sys.exit(0)
    sys.exit(main())
