#!/usr/bin/env python3
"""SIP load on a real ``pbx serve``, driven by SIPp over UDP on loopback.

Two measurements, each a ramp of fixed-length steps at increasing rates (``-r R -rp 1000``,
concurrency capped with ``-l``), a fresh server per step:

1. registrations: each one is REGISTER / 401 / REGISTER with digest credentials / 200, users
   taken in turn from an injection file of ``--users`` accounts (tests/interop/scenarios/
   register.xml);
2. proxied calls: ``sipp -sn uac`` -> pbx (stateful, Record-Routing) -> ``sipp -sn uas``,
   INVITE / 100 / 180 / 200 / ACK / BYE / 200 on each side, zero-length calls.

A step passes when SIPp exits 0 with every call successful (no failed call, whatever the cause:
timeout, unexpected message, 5xx) AND the achieved rate is at least 90 % of the target (past
saturation SIPp falls behind its schedule and retransmits, yet may still fail nothing). The ramp
doubles the rate until a step fails, then bisects between the last good and the first bad rate. Reported per step: achieved rate, server CPU
(utime + stime from /proc/<pid>/stat, as % of one core and as CPU ms per registration or call),
SIPp's CPU (rusage of the reaped children), SIPp's retransmissions and mean response time, and
the kernel's UDP receive-buffer drops on the host during the step.
The server and SIPp run pinned to different cores with taskset when there are two or more.

    .venv/bin/python benchmarks/sip_load.py            # full ramp, a few minutes
    .venv/bin/python benchmarks/sip_load.py --quick    # smoke run, well under a minute

Figures go to stdout and to benchmarks/out/sip_load.json. Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from interop.pbxproc import DOMAIN, PbxProcess, PortAllocator, wait_bound, write_config  # noqa: E402
from interop.sipp import SCENARIOS, sipp  # noqa: E402

OUT = REPO / "benchmarks" / "out" / "sip_load.json"
PACE = 0.9    # a step must achieve this share of its target rate


@dataclass
class Step:
    kind: str                     # "register" | "calls"
    rate: float                   # target rate, per second
    count: int
    ok: bool = False
    returncode: int = 0
    successful: int = 0
    failed: int = 0
    retransmissions: int = 0
    elapsed_s: float = 0.0
    achieved_rate: float = 0.0
    server_cpu_s: float = 0.0
    server_cpu_pct: float = 0.0
    server_cpu_ms_per_op: float = 0.0
    sipp_cpu_s: float = 0.0
    sipp_cpu_pct: float = 0.0
    udp_rcvbuf_errors: int = 0   # kernel drops on full UDP receive buffers (whole host)
    response_time_ms: float | None = None
    response_time_repartition: dict[str, int] = field(default_factory=dict)
    note: str = ""


def _udp_rcvbuf_errors() -> int:
    """RcvbufErrors from the Udp line of /proc/net/snmp (datagrams dropped by the kernel)."""
    try:
        rows = [ln.split() for ln in Path("/proc/net/snmp").read_text().splitlines()
                if ln.startswith("Udp:")]
        return int(dict(zip(rows[0][1:], rows[1][1:], strict=False)).get("RcvbufErrors", 0))
    except (OSError, IndexError, ValueError):
        return 0


def _errors_summary(text: str) -> str:
    """SIPp's error log in a few words: each kind of event, with its count."""
    kinds: dict[str, int] = {}
    for m in re.finditer(r"\d{6}: (Aborting call on [^']*?)(?: for Call-I[dD]|:)", text):
        kinds[m.group(1)] = kinds.get(m.group(1), 0) + 1
    if not kinds:
        lines = [ln for ln in text.splitlines() if ln.strip() and "following events" not in ln]
        return lines[-1][:200] if lines else ""
    return "; ".join(f"{n} x {k}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1]))


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _sipp_time_ms(value: str) -> float | None:
    """SIPp's 'HH:MM:SS:micro' duration in ms."""
    try:
        h, m, s, us = (int(x) for x in value.split(":"))
    except ValueError:
        return None
    return ((h * 60 + m) * 60 + s) * 1000 + us / 1000


def _read_stats(path: Path) -> dict[str, str]:
    """The last row of a SIPp -trace_stat CSV, by column name."""
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return {}
    if len(lines) < 2:
        return {}
    head, last = lines[0].split(";"), lines[-1].split(";")
    return dict(zip(head, last, strict=False))


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.ports = PortAllocator()
        self.work = Path(tempfile.mkdtemp(prefix="pbx-sip-load-"))
        cores = os.cpu_count() or 1
        self.pinned = (not args.no_pin) and cores >= 2 and shutil.which("taskset") is not None
        self.server_prefix = ("taskset", "-c", "0") if self.pinned else ()
        self.sipp_prefix = ("taskset", "-c", "1") if self.pinned else ()
        self.users = {f"{100000 + i}": f"pw{i:06d}x" for i in range(args.users)}
        self.inf = self.work / "users.csv"
        rows = [f"{u};{DOMAIN};[authentication username={u} password={p}]"
                for u, p in self.users.items()]
        self.inf.write_text("SEQUENTIAL\n" + "\n".join(rows) + "\n")
        self.steps: list[Step] = []

    # one server per step ------------------------------------------------------------------------
    def _server(self, tag: str, routes: Sequence[tuple[str, str]] = ()) -> PbxProcess:
        port = self.ports.port()
        step_dir = self.work / tag     # a fresh store per step: no bindings left by the last
        step_dir.mkdir(exist_ok=True)
        cfg = write_config(step_dir / "pbx.toml", port=port, transports=("udp",),
                           users=self.users, routes=routes, log_level="warning")
        return PbxProcess(cfg, port, prefix=self.server_prefix).start(deadline=30)

    @staticmethod
    def _mark(server: PbxProcess) -> tuple[float, float, float, int]:
        """(monotonic time, server CPU s, reaped children CPU s, UDP drops) now."""
        cpu = server.cpu_seconds() if server.alive() else float("nan")
        return time.monotonic(), cpu, _children_cpu(), _udp_rcvbuf_errors()

    def _finish(self, step: Step, server: PbxProcess, start: tuple[float, float, float, int],
                end: tuple[float, float, float, int], result: Any, stat_file: Path) -> None:
        elapsed = end[0] - start[0]
        step.server_cpu_s = end[1] - start[1]
        step.sipp_cpu_s = end[2] - start[2]
        step.udp_rcvbuf_errors = end[3] - start[3]
        step.returncode = result.returncode
        step.elapsed_s = round(elapsed, 3)
        stats = _read_stats(stat_file)
        step.successful = int(stats.get("SuccessfulCall(C)", result.successful) or 0)
        step.failed = int(stats.get("FailedCall(C)", result.failed) or 0)
        step.retransmissions = int(stats.get("Retransmissions(C)", 0) or 0)
        step.response_time_ms = _sipp_time_ms(stats.get("ResponseTime1(C)", ""))
        step.response_time_repartition = {
            k.split("_", 1)[1]: int(v) for k, v in stats.items()
            if k.startswith("ResponseTimeRepartition1_") and v.strip().isdigit()}
        step.achieved_rate = round(step.successful / elapsed, 1) if elapsed > 0 else 0.0
        # zero failed calls, and the server kept pace: a rate SIPp had to fall behind on
        # (retransmissions piling up, calls queued) is not a rate the server sustains
        step.ok = (step.returncode == 0 and step.failed == 0 and step.successful == step.count
                   and server.alive() and step.achieved_rate >= PACE * step.rate)
        step.server_cpu_pct = round(100 * step.server_cpu_s / elapsed, 1)
        step.sipp_cpu_pct = round(100 * step.sipp_cpu_s / elapsed, 1)
        step.server_cpu_ms_per_op = (round(1000 * step.server_cpu_s / step.successful, 3)
                                     if step.successful else 0.0)
        if not server.alive():
            step.note = "server died: " + server.stderr(20)
        elif step.failed or step.returncode:
            step.note = _errors_summary(result.errors())
        elif not step.ok:
            step.note = (f"no failed call, but only {step.achieved_rate:g}/s achieved "
                         f"(< {PACE:.0%} of the target)")
        step.server_cpu_s = round(step.server_cpu_s, 3)
        step.sipp_cpu_s = round(step.sipp_cpu_s, 3)

    def _timeout(self, rate: float, count: int) -> float:
        return count / rate * 3 + 20

    def register_step(self, rate: float) -> Step:
        count = max(10, min(self.args.max_count, round(rate * self.args.step_seconds)))
        step = Step("register", rate, count)
        tag = f"reg-{rate:g}"
        server = self._server(tag)
        try:
            stat_file = self.work / f"{tag}.stat.csv"
            start = self._mark(server)
            result = sipp(tag, self.work, scenario=SCENARIOS / "register.xml",
                          remote=f"127.0.0.1:{server.port}", inf=self.inf,
                          local_port=self.ports.port(), media_port=self.ports.block(4),
                          control_port=self.ports.port(), calls=count, rate=rate,
                          limit=max(50, round(rate)), timeout=self._timeout(rate, count),
                          trace_msg=False, prefix=self.sipp_prefix,
                          extra=["-trace_stat", "-stf", str(stat_file), "-fd", "1"]).wait()
            self._finish(step, server, start, self._mark(server), result, stat_file)
        finally:
            server.stop()
        return step

    def calls_step(self, rate: float) -> Step:
        count = max(10, min(self.args.max_count, round(rate * self.args.step_seconds)))
        step = Step("calls", rate, count)
        tag = f"calls-{rate:g}"
        uas_port = self.ports.port()
        server = self._server(tag, routes=[("^uas$", f"sip:uas@127.0.0.1:{uas_port}")])
        timeout = self._timeout(rate, count)
        try:
            stat_file = self.work / f"{tag}.stat.csv"
            uas = sipp(f"{tag}-uas", self.work, scenario="uas", local_port=uas_port,
                       media_port=self.ports.block(4), control_port=self.ports.port(),
                       calls=count, timeout=timeout + 10, trace_msg=False,
                       prefix=self.sipp_prefix)
            try:
                wait_bound(uas_port, "udp")
                start = self._mark(server)
                result = sipp(tag, self.work, scenario="uac", service="uas",
                              remote=f"127.0.0.1:{server.port}", local_port=self.ports.port(),
                              media_port=self.ports.block(4), control_port=self.ports.port(),
                              calls=count, rate=rate, limit=max(50, round(rate)),
                              timeout=timeout, trace_msg=False, prefix=self.sipp_prefix,
                              extra=["-trace_stat", "-stf", str(stat_file), "-fd", "1"]).wait()
                end = self._mark(server)   # before the UAS's own 4 s wait for stragglers
                uas_result = uas.wait(timeout=10)
            finally:
                uas.kill()
            # the UAS is reaped after the mark: add its CPU to SIPp's share
            uas_cpu = _children_cpu() - end[2]
            end = (end[0], end[1], end[2] + uas_cpu, end[3])
            self._finish(step, server, start, end, result, stat_file)
            if uas_result.returncode != 0 or uas_result.failed:
                step.ok = False
                step.note = (step.note + f" uas: exit {uas_result.returncode}, "
                             f"failed {uas_result.failed}").strip()
        finally:
            server.stop()
        return step

    def ramp(self, kind: str, start: float, ceiling: float, bisect: int) -> dict[str, Any]:
        run = self.register_step if kind == "register" else self.calls_step
        good: Step | None = None
        bad: Step | None = None
        rate = start
        while rate <= ceiling:
            step = self._run(run, rate)
            if not step.ok:
                bad = step
                break
            good = step
            rate *= 2
        for _ in range(bisect if good is not None and bad is not None else 0):
            assert good is not None and bad is not None
            mid = round((good.rate + bad.rate) / 2)
            if mid in (good.rate, bad.rate):
                break
            step = self._run(run, mid)
            if step.ok:
                good = step
            else:
                bad = step
        return {
            "max_zero_failure_rate": good.rate if good else None,
            "achieved_rate_at_max": good.achieved_rate if good else None,
            "server_cpu_pct_at_max": good.server_cpu_pct if good else None,
            "server_cpu_ms_per_op_at_max": good.server_cpu_ms_per_op if good else None,
            "first_failing_rate": bad.rate if bad else None,
            "ceiling_reached": bad is None,
        }

    def _run(self, fn: Any, rate: float) -> Step:
        step = fn(rate)
        self.steps.append(step)
        rt = ("-" if step.response_time_ms is None else "<1 ms" if step.response_time_ms < 1
              else f"{step.response_time_ms:.0f} ms")   # SIPp measures whole milliseconds
        print(f"  {step.kind:8} {step.rate:>7g}/s x {step.count:<6} "
              f"{'ok  ' if step.ok else 'FAIL'} achieved {step.achieved_rate:>7.1f}/s  "
              f"server CPU {step.server_cpu_pct:>5.1f}% ({step.server_cpu_ms_per_op:.3f} ms/op)  "
              f"sipp CPU {step.sipp_cpu_pct:>5.1f}%  retrans {step.retransmissions:<5} "
              f"resp {rt}  failed {step.failed}  udp drops {step.udp_rcvbuf_errors}"
              + (f"\n      {step.note.splitlines()[-1] if step.note else ''}" if not step.ok else ""),
              flush=True)
        return step


def machine_info(pinned: bool) -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "pinned": pinned,
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        out = subprocess.run(["sipp", "-v"], capture_output=True, text=True, timeout=10)
        info["sipp"] = next((ln.strip() for ln in (out.stdout + out.stderr).splitlines()
                             if "SIPp" in ln), "?")
    except (OSError, subprocess.TimeoutExpired):
        info["sipp"] = None
    try:
        import pbx.media.dsp as dsp
        info["dsp_implementation"] = getattr(dsp, "IMPLEMENTATION", "?")
    except Exception as exc:  # the figure is informative only
        info["dsp_implementation"] = f"unavailable ({exc.__class__.__name__})"
    try:
        import uvloop  # noqa: F401
        info["event_loop"] = "uvloop"
    except ImportError:
        info["event_loop"] = "asyncio"
    return info


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    p.add_argument("--quick", action="store_true", help="short smoke run")
    p.add_argument("--users", type=int, default=None, help="accounts in the injection file")
    p.add_argument("--step-seconds", type=float, default=None, help="length of each step")
    p.add_argument("--max-count", type=int, default=20000, help="cap on calls per step")
    p.add_argument("--register-start", type=float, default=None)
    p.add_argument("--register-ceiling", type=float, default=None)
    p.add_argument("--calls-start", type=float, default=None)
    p.add_argument("--calls-ceiling", type=float, default=None)
    p.add_argument("--bisect", type=int, default=None, help="bisection steps after the ramp")
    p.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--keep", action="store_true", help="keep the work dir (configs, SIPp logs)")
    args = p.parse_args(argv)
    quick = args.quick
    args.users = args.users or (100 if quick else 1000)
    args.step_seconds = args.step_seconds or (2.0 if quick else 5.0)
    args.register_start = args.register_start or (50 if quick else 100)
    args.register_ceiling = args.register_ceiling or (100 if quick else 12800)
    args.calls_start = args.calls_start or (25 if quick else 50)
    args.calls_ceiling = args.calls_ceiling or (50 if quick else 6400)
    args.bisect = (0 if quick else 2) if args.bisect is None else args.bisect
    for tool in ("sipp",):
        if shutil.which(tool) is None:
            print(f"sip_load: {tool} not found (make debs)", file=sys.stderr)
            return 1

    bench = Bench(args)
    info = machine_info(bench.pinned)
    print(f"sip_load: {info.get('cpu_model', '?')}, {info['cpus']} CPUs, python {info['python']},"
          f" {info['event_loop']}, dsp {info['dsp_implementation']}, "
          f"{'server on CPU 0, sipp on CPU 1' if bench.pinned else 'not pinned'}; "
          f"{args.users} users, {args.step_seconds:g} s steps; work dir {bench.work}", flush=True)
    t0 = time.monotonic()
    print("registrations (REGISTER/401/REGISTER/200):", flush=True)
    register = bench.ramp("register", args.register_start, args.register_ceiling, args.bisect)
    print("proxied calls (uac -> pbx -> uas):", flush=True)
    calls = bench.ramp("calls", args.calls_start, args.calls_ceiling, args.bisect)
    total = time.monotonic() - t0

    report = {
        "benchmark": "sip_load",
        "quick": quick,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": info,
        "parameters": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "register": register,
        "calls": calls,
        "steps": [asdict(s) for s in bench.steps],
        "duration_s": round(total, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")

    def line(name: str, r: dict[str, Any], unit: str) -> str:
        if r["max_zero_failure_rate"] is None:
            return f"{name}: failed already at the first rate ({r['first_failing_rate']:g}/s)"
        more = " (ceiling reached, no failure)" if r["ceiling_reached"] else \
            f" (first failure at {r['first_failing_rate']:g}/s)"
        return (f"{name}: {r['max_zero_failure_rate']:g} {unit}/s at zero failures, achieved "
                f"{r['achieved_rate_at_max']:.1f}/s, server CPU {r['server_cpu_pct_at_max']:.1f}%"
                f" of a core, {r['server_cpu_ms_per_op_at_max']:.3f} CPU ms each{more}")

    print(line("registrations", register, "registrations"))
    print(line("proxied calls", calls, "calls"))
    print(f"wrote {args.out} ({total:.0f} s)")
    if args.keep:
        print(f"kept {bench.work}")
    else:
        shutil.rmtree(bench.work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
