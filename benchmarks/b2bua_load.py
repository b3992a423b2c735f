#!/usr/bin/env python3
"""B2BUA load with media: SIPp callers sending RTP -> ``pbx serve`` (media anchored in the
engine) -> a SIPp callee echoing that RTP back, all over UDP on loopback.

The callers dial a ``[[numbers]]`` entry whose app is ``dial:sip:uas@127.0.0.1:PORT``: the PBX
answers each call by ringing the callee on a leg of its own (own Call-ID, tags, SDP) and bridges
the two legs with a relay in its media engine, so every packet crosses the engine on the way to
the callee and again on the way back:

    UAC (rtp_stream, 50 pkt/s) --> [A stream -> relay -> B stream] --> UAS (sipp -rtp_echo)
    UAC                        <-- [A stream <- relay <- B stream] <-- UAS (the echo)

Two measurements, a fresh server and store per step (server pinned to CPU 0, SIPp to CPU 1):

1. calls per second: short calls (``--call-seconds`` of RTP, 1 s) at rising rates, as in
   ``sip_load.py`` (the rate doubles until a step fails, then ``--bisect`` steps narrow it);
2. concurrent calls: for each level N of ``--hold-levels``, N calls set up at ``--hold-rate``
   per second and held until all N have been up together for ``--plateau`` seconds; the
   server's CPU and the relayed packet rate are measured over that plateau. Stops at the
   first level that fails.

A step passes when both SIPp runs exit 0 with every call successful, no RTP was lost through
the PBX in either direction, the caller sent at least 90 % of the RTP it should have (so an
idle caller cannot pass), and (calls per second) at least 90 % of the target rate was achieved
over the call-generation time (the SIPp run's wall time less one call length); concurrency
steps must also see N calls up at once at the callee (SIPp's CurrentCall).

RTP is counted outside both the PBX and SIPp, in the kernel: the caller streams a payload that
starts with a marker word, and four AF_PACKET sockets on ``lo`` with classic BPF filters count
marked packets (1) leaving the caller's media port, (2) arriving at the callee's, (3) leaving
the callee's (its echo) and (4) arriving back at the caller's. Each socket's buffer is tiny and
never read, so the kernel counts a packet and drops it (PACKET_STATISTICS counts both). Loss
through the PBX is (1) - (2) toward the callee and (3) - (4) back; (2) - (3) is what the
echoing SIPp did not echo (its socket overflowed): a shortfall of the tool, not of the PBX,
reported as ``TOOL-LIMITED`` when above 1 % (the return direction then carried less load).
Counting happens where loopback packets enter the IP stack, before any socket: packets the
PBX's own sockets drop count as lost, drops at SIPp's sockets do not. Unmarked packets the
PBX sends on its own (e.g. silence before a leg is bridged) are reported, not counted as RTP
relayed. The callee runs SCHED_FIFO (``--sched fifo``, as root) so its single echo thread keeps
up. The caller does not read its media socket: the returning packets are counted by (4) and
then dropped by the kernel, which shows in the host-wide ``udp drops`` figure.

Needs root (CAP_NET_RAW) for the counters, ``sipp`` (Debian sip-tester 3.6, with RTP stream
support); ``taskset`` and ``chrt`` when present (pinning, SCHED_FIFO).

    .venv/bin/python benchmarks/b2bua_load.py            # both measurements, ~5 minutes
    .venv/bin/python benchmarks/b2bua_load.py --quick    # smoke run, under a minute
    .venv/bin/python benchmarks/b2bua_load.py --skip-hold --calls-start 300 --calls-ceiling 300
    PBX_PROFILE is per step here: --profile DIR writes DIR/<step>.pstats for every server.

Figures go to stdout and to benchmarks/out/b2bua_load.json. Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import socket
import struct
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sip_load import (  # sip_load also puts tests/ on sys.path, for interop.*
    PACE,
    REPO,
    Bench,
    Step,
    _children_cpu,
    _errors_summary,
    machine_info,
)

from interop.pbxproc import PbxProcess, wait_bound, write_config
from interop.sipp import SippProcess, SippResult, sipp

OUT = REPO / "benchmarks" / "out" / "b2bua_load.json"
NUMBER = "7000"               # the [[numbers]] entry the callers dial
MARKER = 0x5AA5C33C           # first payload word of every packet the caller streams
PACKETS_PER_SECOND = 50       # 20 ms PCMU
DRAIN_S = 0.3                 # the caller stops its RTP this long before its BYE
RTP_SHARE = 0.9               # a step must see at least this share of the RTP it should
TOOL_SHORTFALL = 0.01         # echo shortfall above this share flags the step TOOL-LIMITED

# The caller: INVITE with a PCMU offer, then, as soon as the 200 is ACKed, 20 ms PCMU packets
# from [media_port] to the answer's address (rtp_stream loops the marker file: -1 = forever)
# for the -d pause; the stream is paused DRAIN_S before the BYE so every echo is back before
# the PBX closes its streams.
_UAC_XML = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="b2bua-load-uac-rtp">
  <send retrans="500">
    <![CDATA[

      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];rport;branch=[branch]
      Max-Forwards: 70
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:sipp@[local_ip]:[local_port]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000
      a=ptime:20
      a=sendrecv

    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rtd="true"/>
  <send>
    <![CDATA[

      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];rport;branch=[branch]
      Max-Forwards: 70
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: <sip:sipp@[local_ip]:[local_port]>
      Content-Length: 0

    ]]>
  </send>
  <nop><action><exec rtp_stream="@AUDIO@,-1,0"/></action></nop>
  <pause/>
  <nop><action><exec rtp_stream="pause"/></action></nop>
  <pause milliseconds="@DRAIN_MS@"/>
  <send retrans="500">
    <![CDATA[

      BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];rport;branch=[branch]
      Max-Forwards: 70
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Contact: <sip:sipp@[local_ip]:[local_port]>
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" crlf="true"/>
</scenario>
"""


# RTP counters in the kernel --------------------------------------------------------------------

_SO_ATTACH_FILTER = 26
_SOL_PACKET = 263
_PACKET_STATISTICS = 6
_ETH_P_IP = 0x0800
# classic BPF opcodes
_LD_B_ABS, _LD_H_ABS, _LDX_B_MSH, _LD_H_IND, _LD_W_IND = 0x30, 0x28, 0xB1, 0x48, 0x40
_JEQ_K, _JSET_K, _RET_K = 0x15, 0x45, 0x06


def _bpf(port_offset: int, port: int, marked: bool) -> list[bytes]:
    """A filter over IPv4 packets (cooked packet socket: offsets from the IP header) accepting
    unfragmented UDP with source (``port_offset`` 0) or destination (2) ``port`` and, when
    ``marked``, a payload whose first word after the 12-byte RTP header is ``MARKER``."""
    n = 11 if marked else 9
    drop = n - 1

    def ins(code: int, jt: int, jf: int, k: int) -> bytes:
        return struct.pack("HBBI", code, jt, jf, k)

    prog = [ins(_LD_B_ABS, 0, 0, 9),                   # 0: IP protocol
            ins(_JEQ_K, 0, drop - 2, socket.IPPROTO_UDP),
            ins(_LD_H_ABS, 0, 0, 6),                   # 2: flags + fragment offset
            ins(_JSET_K, drop - 4, 0, 0x1FFF),         # a later fragment has no UDP header
            ins(_LDX_B_MSH, 0, 0, 0),                  # 4: X = IP header length
            ins(_LD_H_IND, 0, 0, port_offset),
            ins(_JEQ_K, 0, drop - 7, port)]
    if marked:
        prog += [ins(_LD_W_IND, 0, 0, 8 + 12),         # 7: UDP header + RTP header
                 ins(_JEQ_K, 0, drop - 9, MARKER)]
    prog += [ins(_RET_K, 0, 0, 1), ins(_RET_K, 0, 0, 0)]
    assert len(prog) == n
    return prog


class _PacketCounter:
    """Counts the IPv4 packets on ``lo`` a BPF filter accepts, in the kernel (see the module
    docstring). ``read()`` returns the count since the counter was made."""

    def __init__(self, port_offset: int, port: int, marked: bool) -> None:
        prog = _bpf(port_offset, port, marked)
        self._code = ctypes.create_string_buffer(b"".join(prog))
        fprog = struct.pack("HL", len(prog), ctypes.addressof(self._code))
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(_ETH_P_IP))
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)   # the kernel minimum
        self._sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)
        self._sock.bind(("lo", _ETH_P_IP))
        self._total = 0
        self.read()              # PACKET_STATISTICS resets on read: start from zero now
        self._total = 0

    def read(self) -> int:
        packets, _drops = struct.unpack(   # packets already includes the drops
            "II", self._sock.getsockopt(_SOL_PACKET, _PACKET_STATISTICS, 8))
        self._total += packets
        return self._total

    def close(self) -> None:
        self._sock.close()


class RtpCounters:
    """The four marked counters of the module docstring, plus unmarked totals."""

    NAMES = ("sent", "to_callee", "echoed", "back")

    def __init__(self, uac_media: int, uas_media: int) -> None:
        where = {"sent": (0, uac_media), "to_callee": (2, uas_media),
                 "echoed": (0, uas_media), "back": (2, uac_media)}
        self._marked = {k: _PacketCounter(off, port, True) for k, (off, port) in where.items()}
        self._all = {k: _PacketCounter(off, port, False) for k, (off, port) in where.items()}

    def read(self) -> dict[str, int]:
        out = {k: c.read() for k, c in self._marked.items()}
        out.update({f"{k}_all": c.read() for k, c in self._all.items()})
        return out

    def close(self) -> None:
        for c in (*self._marked.values(), *self._all.values()):
            c.close()


def _softnet_drops() -> int:
    """Packets dropped at full per-CPU backlogs (second column of /proc/net/softnet_stat)."""
    try:
        return sum(int(line.split()[1], 16)
                   for line in Path("/proc/net/softnet_stat").read_text().splitlines())
    except (OSError, IndexError, ValueError):
        return 0


def _proc_cpu(pid: int) -> float:
    """utime + stime of ``pid`` so far (0.0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_calls(path: Path) -> int:
    """The highest CurrentCall of a SIPp -trace_stat CSV (one row per second)."""
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return 0
    if len(lines) < 2:
        return 0
    col = lines[0].split(";").index("CurrentCall")
    return max((int(row.split(";")[col]) for row in lines[1:]
                if row.split(";")[col].strip().isdigit()), default=0)


# The benchmark ---------------------------------------------------------------------------------

@dataclass
class B2bStep(Step):
    """A ``sip_load`` step plus call length, concurrency and the RTP accounting."""

    call_s: float = 0.0                 # RTP per call (the caller's -d pause)
    server_cpu_pct_generating: float = 0.0  # calls/s: server CPU over the generation time
    peak_calls: int = 0                 # highest CurrentCall seen by the callee
    rtp_expected: int = 0               # calls x call_s x 50
    rtp_sent: int = 0                   # (1) marked, from the caller
    rtp_to_callee: int = 0              # (2)
    rtp_echoed: int = 0                 # (3)
    rtp_back: int = 0                   # (4)
    rtp_lost_to_callee: int = 0         # (1) - (2)
    rtp_lost_back: int = 0              # (3) - (4)
    echo_shortfall: int = 0             # (2) - (3): not echoed by SIPp
    tool_limited: bool = False
    pbx_own_to_callee: int = 0          # unmarked packets from the PBX, not relayed
    pbx_own_to_caller: int = 0
    softnet_drops: int = 0
    plateau_s: float = 0.0              # concurrency steps: the window all calls were up
    plateau_server_cpu_pct: float = 0.0
    plateau_sipp_cpu_pct: float = 0.0
    plateau_relayed_pps: float = 0.0    # marked packets the engine relayed per second (both ways)
    plateau_us_per_packet: float = 0.0  # server CPU per relayed packet over the plateau


class B2buaBench(Bench):
    """``sip_load.Bench`` (pinning, ports, the rate ramp, step reports) for B2BUA calls."""

    def __init__(self, args: argparse.Namespace) -> None:
        args.users = 0
        super().__init__(args)
        fifo = (args.sched == "fifo" and os.geteuid() == 0 and shutil.which("chrt") is not None)
        self.fifo = fifo
        self.uas_prefix = (("chrt", "-f", "1") if fifo else ()) + tuple(self.sipp_prefix)
        audio = self.work / "marker.pcmu"                 # 1 s of 20 ms frames, each one
        audio.write_bytes(MARKER.to_bytes(4, "big") * 2000)   # starting with the marker
        self.uac_xml = self.work / "b2bua_uac_rtp.xml"
        self.uac_xml.write_text(_UAC_XML.replace("@AUDIO@", str(audio))
                                .replace("@DRAIN_MS@", str(round(DRAIN_S * 1000))))

    def _b2b_server(self, tag: str, uas_port: int) -> PbxProcess:
        port = self.ports.port()
        step_dir = self.work / tag
        step_dir.mkdir(exist_ok=True)
        cfg = write_config(step_dir / "pbx.toml", port=port, transports=("udp",), users={},
                           log_level="warning")
        with cfg.open("a") as f:
            f.write(f'\n[[numbers]]\nnumber = "{NUMBER}"\n'
                    f'app = "dial:sip:uas@127.0.0.1:{uas_port}"\n')
        if self.args.profile is not None:
            self.args.profile.mkdir(parents=True, exist_ok=True)
            os.environ["PBX_PROFILE"] = str((self.args.profile / f"{tag}.pstats").resolve())
        try:
            return PbxProcess(cfg, port, prefix=self.server_prefix).start(deadline=30)
        finally:
            os.environ.pop("PBX_PROFILE", None)

    def calls_step(self, rate: float) -> Step:
        count = max(10, min(self.args.max_count, round(rate * self.args.step_seconds)))
        step = B2bStep("calls", rate, count, call_s=self.args.call_seconds)
        limit = round(rate * (step.call_s + DRAIN_S + 2)) + 50
        self._call_run(step, f"calls-{rate:g}", rate=rate, limit=limit, plateau=None)
        return step

    def hold_step(self, calls: int) -> B2bStep:
        rate = self.args.hold_rate
        build = calls / rate                          # seconds until the last call is set up
        call_s = round(build + self.args.plateau + 3, 1)
        step = B2bStep("hold", rate, calls, call_s=call_s)
        self._call_run(step, f"hold-{calls}", rate=rate, limit=calls + 10,
                       plateau=(build + 2, call_s - 1))
        return step

    def _call_run(self, step: B2bStep, tag: str, *, rate: float, limit: int,
                  plateau: tuple[float, float] | None) -> None:
        """One step: a fresh server, the echoing callee, the counters, the callers."""
        uas_port, uac_media, uas_media = self.ports.port(), self.ports.block(4), self.ports.block(4)
        timeout = step.count / rate * 3 + step.call_s + 30
        server = self._b2b_server(tag, uas_port)
        counters = RtpCounters(uac_media, uas_media)
        stat_file, uas_stat = self.work / f"{tag}.stat.csv", self.work / f"{tag}-uas.stat.csv"
        try:
            uas = sipp(f"{tag}-uas", self.work, scenario="uas", local_port=uas_port,
                       media_port=uas_media, control_port=self.ports.port(), calls=step.count,
                       timeout=timeout + 10, trace_msg=False, prefix=self.uas_prefix,
                       extra=["-rtp_echo", "-trace_stat", "-stf", str(uas_stat), "-fd", "1"])
            uac: SippProcess | None = None
            try:
                wait_bound(uas_port, "udp")
                start = self._mark(server)
                softnet0 = _softnet_drops()
                uac = sipp(tag, self.work, scenario=self.uac_xml, service=NUMBER,
                           remote=f"127.0.0.1:{server.port}", local_port=self.ports.port(),
                           media_port=uac_media, control_port=self.ports.port(),
                           calls=step.count, rate=rate, limit=limit, timeout=timeout,
                           trace_msg=False, prefix=self.sipp_prefix,
                           extra=["-d", str(round(step.call_s * 1000)), "-trace_stat",
                                  "-stf", str(stat_file), "-fd", "1"])
                if plateau is not None:
                    self._plateau(step, server, counters, (uac, uas), start[0], plateau)
                result = uac.wait()
                end = self._mark(server)
                uas_result = uas.wait(timeout=10)
            finally:
                for proc in (uac, uas):
                    if proc is not None:
                        proc.kill()
            time.sleep(0.1)        # nothing is in flight after the drain, but be sure
            rtp = counters.read()
            step.softnet_drops = _softnet_drops() - softnet0
            # the callee is reaped after the mark: add its CPU to SIPp's share
            end = (end[0], end[1], _children_cpu(), end[3])
            self._finish(step, server, start, end, result, stat_file)
            step.peak_calls = _peak_calls(uas_stat)
            self._judge(step, rtp, uas_result, server.alive())
        finally:
            counters.close()
            server.stop()

    def _plateau(self, step: B2bStep, server: PbxProcess, counters: RtpCounters,
                 procs: tuple[SippProcess, SippProcess], t0: float,
                 window: tuple[float, float]) -> None:
        """Server CPU, SIPp CPU and relayed packets over ``window`` (seconds after ``t0``)
        while every call is up."""
        def sample() -> tuple[float, float, float, int]:
            rtp = counters.read()
            return (time.monotonic(), server.cpu_seconds() if server.alive() else float("nan"),
                    sum(_proc_cpu(p.proc.pid) for p in procs),
                    rtp["to_callee"] + rtp["back"])

        time.sleep(max(0.0, t0 + window[0] - time.monotonic()))
        a = sample()
        time.sleep(max(0.0, t0 + window[1] - time.monotonic()))
        b = sample()
        dt = b[0] - a[0]
        if dt <= 0:
            return
        step.plateau_s = round(dt, 2)
        step.plateau_server_cpu_pct = round(100 * (b[1] - a[1]) / dt, 1)
        step.plateau_sipp_cpu_pct = round(100 * (b[2] - a[2]) / dt, 1)
        step.plateau_relayed_pps = round((b[3] - a[3]) / dt)
        if b[3] > a[3]:
            step.plateau_us_per_packet = round(1e6 * (b[1] - a[1]) / (b[3] - a[3]), 2)

    def _judge(self, step: B2bStep, rtp: dict[str, int], uas_result: SippResult,
               alive: bool) -> None:
        """RTP accounting, the pace over the call-generation time, and the verdict."""
        step.rtp_sent, step.rtp_to_callee = rtp["sent"], rtp["to_callee"]
        step.rtp_echoed, step.rtp_back = rtp["echoed"], rtp["back"]
        step.rtp_lost_to_callee = step.rtp_sent - step.rtp_to_callee
        step.rtp_lost_back = step.rtp_echoed - step.rtp_back
        step.echo_shortfall = step.rtp_to_callee - step.rtp_echoed
        step.tool_limited = step.echo_shortfall > TOOL_SHORTFALL * max(1, step.rtp_to_callee)
        step.pbx_own_to_callee = rtp["to_callee_all"] - rtp["to_callee"]
        step.pbx_own_to_caller = rtp["back_all"] - rtp["back"]
        step.rtp_expected = round(step.count * step.call_s * PACKETS_PER_SECOND)
        # sip_load's pace is successful calls over the whole run; here every call lasts
        # call_s + DRAIN_S, so the generation time is the run less one call
        busy = step.elapsed_s - step.call_s - DRAIN_S
        if step.kind == "calls" and busy > 0:
            step.achieved_rate = round(step.successful / busy, 1)
            step.server_cpu_pct_generating = round(100 * step.server_cpu_s / busy, 1)
        notes = []
        sip_ok = (step.returncode == 0 and step.failed == 0 and step.successful == step.count
                  and alive)
        if step.note and not sip_ok:     # sip_load's note: server died, or SIPp's errors
            notes.append(step.note)
        if uas_result.returncode != 0 or uas_result.failed:
            notes.append(f"uas: exit {uas_result.returncode}, failed {uas_result.failed}: "
                         + _errors_summary(uas_result.errors()))
        if step.kind == "calls" and step.achieved_rate < PACE * step.rate:
            notes.append(f"only {step.achieved_rate:g}/s achieved (< {PACE:.0%} of the target)")
        if step.kind == "hold" and step.peak_calls < step.count:
            notes.append(f"only {step.peak_calls} calls up at once")
        if step.rtp_lost_to_callee or step.rtp_lost_back:
            notes.append(f"RTP lost: {step.rtp_lost_to_callee} toward the callee, "
                         f"{step.rtp_lost_back} back")
        if step.rtp_sent < RTP_SHARE * step.rtp_expected:
            notes.append(f"the callers sent {step.rtp_sent} RTP packets, expected "
                         f"~{step.rtp_expected}")
        if rtp["sent_all"] != rtp["sent"]:
            notes.append(f"{rtp['sent_all'] - rtp['sent']} unmarked packets from the caller")
        step.ok = sip_ok and not notes
        if step.tool_limited:
            notes.append(f"TOOL-LIMITED: SIPp echoed {step.echo_shortfall} packets fewer than "
                         "it received")
        step.note = "; ".join(notes)

    def _run(self, fn: Any, rate: float) -> Step:
        step = super()._run(fn, rate)
        assert isinstance(step, B2bStep)
        print(f"      server CPU {step.server_cpu_pct_generating:.1f}% over the "
              f"{step.elapsed_s - step.call_s - DRAIN_S:.1f} s of call generation",
              flush=True)
        print(_rtp_line(step), flush=True)
        return step

    def ramp(self, kind: str, start: float, ceiling: float, bisect: int) -> dict[str, Any]:
        result = super().ramp(kind, start, ceiling, bisect)
        best = next((s for s in reversed(self.steps) if isinstance(s, B2bStep) and s.ok
                     and s.kind == kind and s.rate == result["max_zero_failure_rate"]), None)
        result["server_cpu_pct_generating_at_max"] = (best.server_cpu_pct_generating
                                                      if best else None)
        result["response_time_ms_at_max"] = best.response_time_ms if best else None
        return result

    def hold_ramp(self, levels: list[int]) -> dict[str, Any]:
        good: B2bStep | None = None
        bad: B2bStep | None = None
        for n in levels:
            step = self.hold_step(n)
            self.steps.append(step)
            print(f"  hold {n:>6} calls at {step.rate:g}/s, {step.call_s:g} s each  "
                  f"{'ok  ' if step.ok else 'FAIL'} peak {step.peak_calls}  "
                  f"server CPU {step.plateau_server_cpu_pct:.1f}% over the {step.plateau_s:g} s "
                  f"plateau ({step.plateau_relayed_pps:,.0f} pkt/s relayed, "
                  f"{step.plateau_us_per_packet:.2f} us/pkt)  sipp CPU "
                  f"{step.plateau_sipp_cpu_pct:.1f}%  failed {step.failed}"
                  + (f"\n      {step.note}" if step.note else ""), flush=True)
            print(_rtp_line(step), flush=True)
            if not step.ok:
                bad = step
                break
            good = step
        return {
            "max_concurrent_calls": good.count if good else None,
            "peak_calls_at_max": good.peak_calls if good else None,
            "server_cpu_pct_at_max": good.plateau_server_cpu_pct if good else None,
            "relayed_pps_at_max": good.plateau_relayed_pps if good else None,
            "us_per_packet_at_max": good.plateau_us_per_packet if good else None,
            "first_failing_level": bad.count if bad else None,
            "ceiling_reached": bad is None,
        }


def _rtp_line(step: B2bStep) -> str:
    return (f"      RTP: sent {step.rtp_sent:,} (expected ~{step.rtp_expected:,}), to callee "
            f"{step.rtp_to_callee:,}, echoed {step.rtp_echoed:,}, back {step.rtp_back:,}; lost "
            f"{step.rtp_lost_to_callee} + {step.rtp_lost_back}; PBX's own packets "
            f"{step.pbx_own_to_callee} + {step.pbx_own_to_caller}; softnet drops "
            f"{step.softnet_drops}" + ("  TOOL-LIMITED" if step.tool_limited else ""))


def _check_tools() -> str | None:
    for tool in ("sipp",):
        if shutil.which(tool) is None:
            return f"{tool} not found (make debs)"
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(_ETH_P_IP)).close()
    except PermissionError:
        return "the RTP counters need packet sockets: run as root (CAP_NET_RAW)"
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    p.add_argument("--quick", action="store_true", help="short smoke run")
    p.add_argument("--step-seconds", type=float, default=None,
                   help="calls per second: seconds of call generation per step")
    p.add_argument("--call-seconds", type=float, default=1.0,
                   help="calls per second: RTP per call")
    p.add_argument("--max-count", type=int, default=20000, help="cap on calls per step")
    p.add_argument("--calls-start", type=float, default=None)
    p.add_argument("--calls-ceiling", type=float, default=None)
    p.add_argument("--bisect", type=int, default=None, help="bisection steps after the ramp")
    p.add_argument("--hold-levels", default=None,
                   help="concurrent calls to try, comma-separated (stops at the first failure)")
    p.add_argument("--hold-rate", type=float, default=100.0,
                   help="calls per second while building up concurrency")
    p.add_argument("--plateau", type=float, default=None,
                   help="seconds all calls of a concurrency step are up together")
    p.add_argument("--skip-calls", action="store_true", help="no calls-per-second ramp")
    p.add_argument("--skip-hold", action="store_true", help="no concurrency steps")
    p.add_argument("--sched", choices=("fifo", "normal"), default="fifo",
                   help="the echoing SIPp's scheduling (fifo needs root)")
    p.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    p.add_argument("--profile", type=Path, default=None,
                   help="write a cProfile dump of each server to DIR/<step>.pstats")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--keep", action="store_true", help="keep the work dir (configs, SIPp logs)")
    args = p.parse_args(argv)
    quick = args.quick
    args.step_seconds = args.step_seconds or (2.0 if quick else 5.0)
    args.calls_start = args.calls_start or (50 if quick else 100)
    args.calls_ceiling = args.calls_ceiling or (100 if quick else 1600)
    args.bisect = (0 if quick else 2) if args.bisect is None else args.bisect
    args.plateau = args.plateau or (3.0 if quick else 10.0)
    levels = [int(x) for x in (args.hold_levels or ("200" if quick else
                                                    "500,1000,1500,1750,2000,2400")).split(",")]
    problem = _check_tools()
    if problem:
        print(f"b2bua_load: {problem}", file=sys.stderr)
        return 1

    bench = B2buaBench(args)
    info = machine_info(bench.pinned)
    info["callee_sched"] = "SCHED_FIFO 1" if bench.fifo else "normal"
    print(f"b2bua_load: {info.get('cpu_model', '?')}, {info['cpus']} CPUs, python "
          f"{info['python']}, {info['event_loop']}, dsp {info['dsp_implementation']}, "
          f"{'server on CPU 0, sipp on CPU 1' if bench.pinned else 'not pinned'}, callee "
          f"{info['callee_sched']}; work dir {bench.work}", flush=True)
    t0 = time.monotonic()
    calls: dict[str, Any] | None = None
    hold: dict[str, Any] | None = None
    if not args.skip_calls:
        print(f"calls per second (uac -> pbx -> uas, {args.call_seconds:g} s of RTP each, "
              f"{args.step_seconds:g} s steps):", flush=True)
        calls = bench.ramp("calls", args.calls_start, args.calls_ceiling, args.bisect)
    if not args.skip_hold:
        print(f"concurrent calls (set up at {args.hold_rate:g}/s, all up for "
              f"{args.plateau:g} s):", flush=True)
        hold = bench.hold_ramp(levels)
    total = time.monotonic() - t0

    report = {
        "benchmark": "b2bua_load",
        "quick": quick,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": info,
        "parameters": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "calls": calls,
        "hold": hold,
        "steps": [asdict(s) for s in bench.steps],
        "duration_s": round(total, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")

    if calls is not None:
        if calls["max_zero_failure_rate"] is None:
            print(f"calls: failed already at the first rate ({calls['first_failing_rate']:g}/s)")
        else:
            more = (" (ceiling reached, no failure)" if calls["ceiling_reached"] else
                    f" (first failure at {calls['first_failing_rate']:g}/s)")
            print(f"calls: {calls['max_zero_failure_rate']:g} calls/s at zero failures and zero "
                  f"lost RTP, achieved {calls['achieved_rate_at_max']:.1f}/s, server CPU "
                  f"{calls['server_cpu_pct_generating_at_max']:.1f}% of a core while "
                  f"generating ({calls['server_cpu_pct_at_max']:.1f}% over the whole run), "
                  f"{calls['server_cpu_ms_per_op_at_max']:.3f} CPU ms per call{more}")
    if hold is not None:
        if hold["max_concurrent_calls"] is None:
            print(f"concurrency: failed already at {hold['first_failing_level']} calls")
        else:
            more = (" (highest level tried)" if hold["ceiling_reached"] else
                    f" (failed at {hold['first_failing_level']})")
            print(f"concurrency: {hold['max_concurrent_calls']} anchored calls held at zero "
                  f"failures and zero lost RTP, server CPU {hold['server_cpu_pct_at_max']:.1f}% "
                  f"relaying {hold['relayed_pps_at_max']:,.0f} pkt/s "
                  f"({hold['us_per_packet_at_max']:.2f} us/pkt){more}")
    print(f"wrote {args.out} ({total:.0f} s)")
    if args.keep:
        print(f"kept {bench.work}")
    else:
        shutil.rmtree(bench.work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
