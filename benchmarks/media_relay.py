#!/usr/bin/env python3
"""Relayed RTP streams per core (issue 3, benchmark a): how many, at zero loss and p99 < 5 ms.

N relayed call pairs = 2N streams (each pair is two engine streams relayed to each other), every
stream receiving 50 packets/s of 172-byte PCMU-sized RTP from its peer, so the engine relays
2N x 50 packets/s in total. The peers are a C load generator (``_rtp_load.c``, compiled at run
time into benchmarks/out/) pinned to CPU 1; the engine runs in its own process pinned to CPU 0.
Each packet carries its send time; the generator takes the relayed packet's kernel arrival
stamp (SO_TIMESTAMPNS), so latency = generator send -> relay -> arrival back at the generator.

Configurations: ``plain-c`` (the generator's own plain C epoll relay: the reference, and the
check that the generator is not the bottleneck), ``native`` and ``python`` engine backends, each
on asyncio and on uvloop (when installed). For each, the stream count ramps up (x1.5) until a
step fails, then bisects. A step passes with zero loss in the measurement window, p99 < 5 ms and
no send failure in the generator. Reported per step: loss, p50/p99/max latency, engine CPU %
(utime + stime of the engine process over the window, 100 % = one core), generator CPU % and its
scheduling lag (a generator that falls behind flags the step GENERATOR-LIMITED), the kernel's
UDP receive-buffer drops (host-wide), and the engine's counters.

    .venv/bin/python benchmarks/media_relay.py --quick                # a couple of minutes
    .venv/bin/python benchmarks/media_relay.py                        # full ramps
    .venv/bin/python benchmarks/media_relay.py --backend native --loop uvloop --max-streams 6000
    .venv/bin/python benchmarks/media_relay.py --backend native --steps 4000,4500   # fixed steps

Figures go to stdout and benchmarks/out/media_relay.json. Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
OUT_DIR = REPO / "benchmarks" / "out"
OUT = OUT_DIR / "media_relay.json"
GEN_SRC = REPO / "benchmarks" / "_rtp_load.c"
GEN_BIN = OUT_DIR / "rtp_load"
PY = sys.executable
PORT_MIN, PORT_MAX = 12000, 31999     # below the ephemeral range: up to 10,000 streams
P99_LIMIT_US = 5000.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- the engine process ----------------------------------------------------------------------------


def engine_process(backend: str, loop_name: str, streams: int, rtcp: bool,
                   coalesce: float) -> None:
    """Runs in the child: open the streams, relay them in pairs, report, wait for 'stats'."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    sys.path.insert(0, str(REPO / "src"))
    from pbx.media.engine import EngineConfig, MediaEngine

    async def main() -> None:
        loop = asyncio.get_running_loop()
        cfg = EngineConfig(port_min=PORT_MIN, port_max=PORT_MAX, backend=backend,  # type: ignore[arg-type]
                           rtcp_mux=not rtcp, coalesce=coalesce)
        async with MediaEngine(cfg) as eng:
            ss = [await eng.open_stream() for _ in range(streams)]
            print(json.dumps({"ports": [s.port for s in ss]}), flush=True)
            line = await loop.run_in_executor(None, sys.stdin.readline)
            remotes = json.loads(line)["remotes"]
            for s, port in zip(ss, remotes, strict=True):
                s.set_remote("127.0.0.1", port)
            for i in range(0, streams, 2):
                eng.relay(ss[i], ss[i + 1])
            print(json.dumps({"ready": True}), flush=True)
            await loop.run_in_executor(None, sys.stdin.readline)
            totals: dict[str, int] = {}
            for s in ss:
                for k, v in asdict(s.stats()).items():  # type: ignore[call-overload]
                    totals[k] = totals.get(k, 0) + v
            est = eng.stats()
            print(json.dumps({"engine": asdict(est), "streams": totals}), flush=True)  # type: ignore[call-overload]

    if loop_name == "uvloop":
        import uvloop
        uvloop.run(main())
    else:
        asyncio.run(main())


# -- the controller ---------------------------------------------------------------------------------


@dataclass
class Step:
    streams: int
    passed: bool = False
    why: str = ""
    pps: int = 0                   # packets per second into the relay (= out of it)
    sent: int = 0
    lost: int = 0
    loss_pct: float = 0.0
    p50_us: float = -1
    p99_us: float = -1
    max_us: float = -1
    engine_cpu_pct: float = 0.0
    gen_busy_pct: float = 0.0
    gen_lag_max_us: float = 0.0
    gen_limited: bool = False      # the generator fell behind: the step measured it, not the relay
    cpu_us_per_packet: float = 0.0  # engine CPU per relayed packet
    streams_per_core: int = 0      # streams / engine CPU share: the extrapolated capacity
    udp_rcvbuf_errors: int = 0
    engine: dict[str, Any] = field(default_factory=dict)
    generator: dict[str, Any] = field(default_factory=dict)


def build_generator() -> Path:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    if not GEN_BIN.exists() or GEN_BIN.stat().st_mtime < GEN_SRC.stat().st_mtime:
        subprocess.run(["gcc", "-O2", "-std=gnu99", "-Wall", "-o", str(GEN_BIN), str(GEN_SRC)],
                       check=True)
    return GEN_BIN


def pin(cpu: int | None, sched: str = "normal") -> Any:
    """A preexec_fn: pin the child to ``cpu`` and apply a scheduling class ("fifo", "nice")."""

    def setup() -> None:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
        if sched == "nice":
            os.nice(-20)
        elif sched == "fifo":
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))

    return setup


def proc_cpu(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields_ = f.read().rpartition(")")[2].split()
    return (int(fields_[11]) + int(fields_[12])) / CLK_TCK


def udp_rcvbuf_errors() -> int:
    with open("/proc/net/snmp") as f:
        lines = [ln.split() for ln in f if ln.startswith("Udp:")]
    head, vals = lines[0], lines[1]
    return int(vals[head.index("RcvbufErrors")])


def readline(p: subprocess.Popen[str], what: str, timeout: float = 120.0) -> str:
    import select
    assert p.stdout is not None
    r, _, _ = select.select([p.stdout], [], [], timeout)
    line = p.stdout.readline() if r else ""
    if not line:
        raise RuntimeError(f"{what}: no answer (exit code {p.poll()})")
    return line


def run_step(cfg: str, streams: int, args: argparse.Namespace) -> Step:
    backend, _, loop_name = cfg.partition("/")
    step = Step(streams)
    cpus = (0, 1) if args.pin else (None, None)
    gen_bin = build_generator()
    if backend == "plain-c":
        cmd = [str(gen_bin), "relay", str(streams)]
    else:
        cmd = [PY, __file__, "--engine-process", backend, loop_name, str(streams),
               "1" if args.rtcp else "0", str(args.coalesce)]
    eng = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                           preexec_fn=pin(cpus[0], args.sched))
    gen: subprocess.Popen[str] | None = None
    targets: str | None = None
    try:
        first = readline(eng, "engine start")
        ports = (json.loads(first)["ports"] if backend != "plain-c"
                 else [int(x) for x in first.split()[1:]])
        with tempfile.NamedTemporaryFile("w", suffix=".targets", delete=False) as tf:
            tf.write("".join(f"127.0.0.1 {p}\n" for p in ports))
            targets = tf.name
        k = min(args.gen_sockets, streams)
        gen = subprocess.Popen(
            [str(gen_bin), "gen", targets, str(k), str(args.size), str(args.warmup),
             str(args.duration), str(args.tail), str(args.quantum_us), args.gen_mode],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, preexec_fn=pin(cpus[1], args.sched))
        gports = [int(x) for x in readline(gen, "generator start").split()[1:]]
        remotes = [gports[j * k // streams] for j in range(streams)]
        assert eng.stdin is not None and gen.stdin is not None
        if backend == "plain-c":
            eng.stdin.write("REMOTES " + " ".join(map(str, remotes)) + "\n")
        else:
            eng.stdin.write(json.dumps({"remotes": remotes}) + "\n")
        eng.stdin.flush()
        readline(eng, "engine ready")
        drops0 = udp_rcvbuf_errors()
        gen.stdin.write("GO\n")
        gen.stdin.flush()
        readline(gen, "generator warm-up")               # MEASURE
        c0, t0 = proc_cpu(eng.pid), time.monotonic()
        readline(gen, "generator run", args.duration + 60)  # END
        c1, t1 = proc_cpu(eng.pid), time.monotonic()
        res = json.loads(readline(gen, "generator result", args.tail + 30))
        step.udp_rcvbuf_errors = udp_rcvbuf_errors() - drops0
        eng.stdin.write("STATS\n" if backend == "plain-c" else "stats\n")
        eng.stdin.flush()
        step.engine = json.loads(readline(eng, "engine stats"))
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
    step.pps = streams * 50
    step.sent = res["sent_window"]
    step.lost = res["sent_window"] - res["received_window"]
    step.loss_pct = 100.0 * step.lost / max(step.sent, 1)
    step.p50_us, step.p99_us, step.max_us = res["p50_us"], res["p99_us"], res["max_us"]
    step.engine_cpu_pct = 100.0 * (c1 - c0) / (t1 - t0)
    step.gen_busy_pct = res["gen_busy_pct"]
    step.gen_lag_max_us = res["lag_max_us"]
    # a generator that cannot keep up sends late: its lag, not its busy share (a polling
    # generator that finds one packet per poll is "busy" without being short of time)
    step.gen_limited = step.gen_lag_max_us > 20000 or res["lag_mean_us"] > 1000
    if step.engine_cpu_pct > 0:
        step.cpu_us_per_packet = step.engine_cpu_pct / 100 / step.pps * 1e6
        step.streams_per_core = int(streams * 100 / step.engine_cpu_pct)
    why = []
    if step.lost:
        why.append(f"lost {step.lost}")
    if step.p99_us >= P99_LIMIT_US or step.p99_us < 0:
        why.append(f"p99 {step.p99_us / 1000:.1f} ms")
    if res["send_fail"]:
        why.append(f"generator send failures {res['send_fail']}")
    if res["misrouted"]:
        why.append(f"misrouted {res['misrouted']}")
    step.passed = not why
    step.why = ", ".join(why)
    return step


def fmt(step: Step) -> str:
    ok = "ok  " if step.passed else "FAIL"
    return (f"  {ok} {step.streams:6d} streams {step.pps:7d} pps  loss {step.lost:6d} "
            f"({step.loss_pct:5.2f} %)  p50 {step.p50_us / 1000:6.2f} ms  "
            f"p99 {step.p99_us / 1000:6.2f} ms  max {step.max_us / 1000:7.2f} ms  "
            f"engine {step.engine_cpu_pct:5.1f} %  gen busy {step.gen_busy_pct:5.1f} % "
            f"(lag {step.gen_lag_max_us / 1000:.1f} ms)  {step.cpu_us_per_packet:4.1f} us/pkt"
            + (f"  rcvbuf drops {step.udp_rcvbuf_errors}" if step.udp_rcvbuf_errors else "")
            + ("  GENERATOR-LIMITED" if step.gen_limited else "")
            + (f"  [{step.why}]" if step.why and not step.passed else ""))


def even(n: float, grain: int = 50) -> int:
    return max(grain, round(n / grain) * grain)


def search(cfg: str, args: argparse.Namespace) -> tuple[list[Step], int]:
    """Ramp x1.5 until a failure (or --max-streams), then bisect. Returns the steps and the max."""
    steps: list[Step] = []

    def attempt(n: int) -> bool:
        st = run_step(cfg, n, args)
        steps.append(st)
        print(fmt(st), flush=True)
        return st.passed

    if args.steps:
        for n in args.steps:
            attempt(n)
        good = [s.streams for s in steps if s.passed]
        return steps, max(good, default=0)
    start = args.start or (500 if cfg.startswith("python") else 2000)
    n, good, bad = min(start, args.max_streams), 0, 0
    while True:
        if attempt(n):
            good = n
            if n >= args.max_streams:
                break
            n = min(even(n * 1.5), args.max_streams)
        else:
            bad = n
            break
    if bad and not good:                 # failed at the start: come down
        n = bad
        while n > 100 and not good:
            n = even(n / 2)
            if attempt(n):
                good = n
            else:
                bad = n
    for _ in range(args.bisect if bad else 0):
        mid = even((good + bad) / 2)
        if mid in (good, bad):
            break
        if attempt(mid):
            good = mid
        else:
            bad = mid
    return steps, good


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    try:
        import uvloop
        uv = uvloop.__version__
    except ImportError:
        uv = None
    sys.path.insert(0, str(REPO / "src"))
    from pbx.media.dsp import IMPLEMENTATION
    from pbx.media.engine import available_backends
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "kernel": platform.release(), "uvloop": uv, "dsp": IMPLEMENTATION,
            "engine_backends": list(available_backends()),
            "load_avg_at_start": os.getloadavg()}


def configs(args: argparse.Namespace, have_uvloop: bool, backends: tuple[str, ...]) -> list[str]:
    out = []
    for b in args.backend:
        if b == "plain-c":
            out.append("plain-c")
            continue
        if b not in backends:
            print(f"skipping backend {b}: not available in this build")
            continue
        loops = {"asyncio": ["asyncio"], "uvloop": ["uvloop"],
                 "both": ["uvloop", "asyncio"]}[args.loop]
        for lp in loops:
            if lp == "uvloop" and not have_uvloop:
                continue
            out.append(f"{b}/{lp}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    ap.add_argument("--backend", default="plain-c,native,python",
                    type=lambda s: [x.strip() for x in s.split(",") if x.strip()],
                    help="comma list of plain-c, native, python (default: all)")
    ap.add_argument("--loop", choices=["asyncio", "uvloop", "both"], default="both")
    ap.add_argument("--quick", action="store_true", help="short steps, one bisection")
    ap.add_argument("--max-streams", type=int, default=10000)
    ap.add_argument("--start", type=int, default=0, help="first step (streams)")
    ap.add_argument("--steps", type=lambda s: [int(x) for x in s.split(",")], default=None,
                    help="fixed stream counts instead of a search")
    ap.add_argument("--duration", type=float, default=None, help="measured seconds per step")
    ap.add_argument("--warmup", type=float, default=None)
    ap.add_argument("--tail", type=float, default=0.5, help="seconds to wait for stragglers")
    ap.add_argument("--bisect", type=int, default=None)
    ap.add_argument("--size", type=int, default=172, help="RTP packet size (172: 20 ms PCMU)")
    ap.add_argument("--gen-sockets", type=int, default=64)
    ap.add_argument("--quantum-us", type=int, default=200, help="generator send pacing")
    ap.add_argument("--gen-mode", choices=["poll", "sleep"], default="poll",
                    help="generator busy-polls (a whole core, no wake-ups) or sleeps between sends")
    ap.add_argument("--coalesce", type=float, default=0.001,
                    help="native engine: drain on a timer this often under load (0: never)")
    ap.add_argument("--rtcp", action="store_true", help="bind RTCP sockets too (no rtcp-mux)")
    ap.add_argument("--no-pin", dest="pin", action="store_false")
    ap.add_argument("--sched", choices=["normal", "nice", "fifo"],
                    default="fifo" if os.geteuid() == 0 else "normal",
                    help="scheduling of the engine and the generator: SCHED_FIFO 1 (default as "
                         "root) keeps other processes on a shared machine from adding their time "
                         "slices to the latency; nice = nice -20")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    args.duration = args.duration or (2.0 if args.quick else 5.0)
    args.warmup = args.warmup or (0.5 if args.quick else 1.0)
    args.bisect = args.bisect if args.bisect is not None else (1 if args.quick else 3)
    if args.max_streams % 2:
        args.max_streams -= 1
    if args.pin and (os.cpu_count() or 1) < 2:
        args.pin = False
    info = machine()
    have_uv = info["uvloop"] is not None
    cfgs = configs(args, have_uv, tuple(info["engine_backends"]))
    pinned = "engine on CPU 0, generator on CPU 1" if args.pin else "not pinned"
    print(f"machine: {info['cpu']} x{info['cores']}, python {info['python']}, kernel "
          f"{info['kernel']}, uvloop {info['uvloop']}, dsp={info['dsp']}, load "
          f"{info['load_avg_at_start'][0]:.2f}; {pinned}, sched {args.sched}, "
          f"generator {args.gen_mode}")
    print(f"each step: {args.warmup:g} s warm-up + {args.duration:g} s measured, "
          f"{args.size}-byte RTP at 50 pps per stream; pass = zero loss and p99 < 5 ms; "
          f"engine coalescing {args.coalesce * 1000:g} ms")
    results: dict[str, Any] = {"machine": info, "args": {
        k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "configs": {}}
    summary = []
    for cfg in cfgs:
        print(f"{cfg}:", flush=True)
        steps, best = search(cfg, args)
        at = next((s for s in steps if s.streams == best and s.passed), None)
        results["configs"][cfg] = {"max_streams": best, "steps": [asdict(s) for s in steps]}
        summary.append((cfg, best, at))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
    print()
    print(f"{'configuration':16s} {'max streams':>11s} {'pps':>7s} {'p50 ms':>7s} {'p99 ms':>7s}"
          f" {'engine CPU':>10s} {'us/pkt':>6s} {'streams/core':>12s}  first failure")
    for cfg, best, at in summary:
        fails = [s for s in results["configs"][cfg]["steps"] if not s["passed"]]
        first = min(fails, key=lambda s: s["streams"]) if fails else None
        why = "none" if first is None else f"{first['streams']}: {first['why']}" + (
            " (generator-limited)" if first["gen_limited"] else "")
        if at is None:
            print(f"{cfg:16s} {'-':>11s} {'':>7s} {'':>7s} {'':>7s} {'':>10s} {'':>6s} {'':>12s}"
                  f"  {why}")
            continue
        print(f"{cfg:16s} {best:11d} {at.pps:7d} {at.p50_us / 1000:7.2f} {at.p99_us / 1000:7.2f}"
              f" {at.engine_cpu_pct:9.1f}% {at.cpu_us_per_packet:6.2f} {at.streams_per_core:12d}"
              f"  {why}")
    print("streams/core: streams x 100 / engine CPU % at the max (what one whole core would carry "
          "at that cost per packet)")
    print(f"\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--engine-process":
        engine_process(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] == "1",
                       float(sys.argv[6]))
        sys.exit(0)
    sys.exit(main())
