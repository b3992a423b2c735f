"""pbx.rtp.jitter: exact behaviour on hand-made packet sequences and synthetic network traces.

Every test runs on each available twin (Python always, C when built); time is a plain variable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from pbx.media._native import lib
from pbx.rtp import traces as tr
from pbx.rtp.jitter import (
    FLAG_DROPPED,
    FLAG_EVENT,
    FLAG_MARKER,
    FLAG_RESYNC,
    FLAG_SILENT,
    Frame,
    JitterBuffer,
    JitterStats,
    Missing,
    MissingReason,
    PutResult,
)
from pbx.rtp.packet import RtpPacket

IMPLS = ["py", "c"] if lib is not None else ["py"]


@pytest.fixture(params=IMPLS)
def impl(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make(impl: str, **kw: Any) -> JitterBuffer:
    return JitterBuffer(implementation=impl, **kw)


def pay(k: int) -> bytes:
    return k.to_bytes(4, "big") + bytes(156)


def put(jb: JitterBuffer, k: int, now: float, *, seq0: int = 1000, ts0: int = 5000,
        ssrc: int = 7, marker: bool = False, silent: bool | None = None) -> PutResult:
    """Frame number ``k`` of a plain 20 ms stream."""
    return jb.put((seq0 + k) & 0xFFFF, (ts0 + 160 * k) & 0xFFFFFFFF, marker, 0, pay(k), ssrc,
                  now, silent=silent)


def run(impl: str, packets: Sequence[tr.TracePacket], **kw: Any) -> tuple[tr.Replay, JitterStats]:
    """Replay a trace through a fresh buffer up to the last arrival (after it, the buffer would
    rightly take the frame that never comes for lost); the replay and the final counters."""
    jb = make(impl, **kw)
    return tr.replay(jb, packets, until=max(p.arrival for p in packets)), jb.stats


def identity(s: JitterStats, frame: int = 160) -> int:
    return (s.played + s.removed_samples // frame + s.late + s.discarded + s.duplicated
            + s.events + s.buffered)


def frames(ticks: Sequence[tuple[float, Any]]) -> list[Frame]:
    return [o for _, o in ticks if isinstance(o, Frame)]


def missing(ticks: Sequence[tuple[float, Any]], reason: MissingReason) -> int:
    return sum(1 for _, o in ticks if isinstance(o, Missing) and o.reason is reason)


def after_start(ticks: Sequence[tuple[float, Any]]) -> list[tuple[float, Any]]:
    first = next(i for i, (_, o) in enumerate(ticks) if isinstance(o, Frame))
    return list(ticks[first:])


def check_order(ticks: Sequence[tuple[float, Any]]) -> None:
    """Indexes of frames and lost frames strictly increase; gaps only where a frame was dropped."""
    last = None
    for _, o in ticks:
        idx = o.index if isinstance(o, Frame) else (
            o.index if o.reason is MissingReason.LOST else None)
        if idx is None:
            continue
        if last is not None:
            step = 2 if isinstance(o, Frame) and o.flags & FLAG_DROPPED else 1
            assert idx == last + step, (last, idx)
        last = idx


# --- basic sequencing ---------------------------------------------------------------------------


def test_startup_waits_the_start_delay_then_plays_in_order(impl: str) -> None:
    jb = make(impl, start_delay=60)
    out = []
    for k in range(20):
        now = 0.02 * k
        assert put(jb, k, now + 0.001) is PutResult.ACCEPTED
        out.append(jb.get(now + 0.01))
    # first packet at 1 ms; 60 ms later is 61 ms: the tick at 70 ms plays it
    assert [o.reason for o in out[:3]] == [MissingReason.STARTUP] * 3
    assert isinstance(out[3], Frame) and out[3].payload == pay(0) and out[3].seq == 1000
    assert out[3].timestamp == 5000 and out[3].index == 0 and out[3].flags & FLAG_MARKER == 0
    assert [o.index for o in out[3:]] == list(range(17))
    s = jb.stats
    assert (s.received, s.played, s.lost, s.late, s.buffered) == (20, 17, 0, 0, 3)
    assert s.concealed_samples == 0 and identity(s) == s.received


def test_first_put_is_not_counted_as_a_resync(impl: str) -> None:
    jb = make(impl)
    assert put(jb, 0, 0.0) is PutResult.ACCEPTED
    assert put(jb, 1, 0.02) is PutResult.ACCEPTED
    assert jb.stats.resyncs == 0


def test_get_before_any_packet_is_startup(impl: str) -> None:
    jb = make(impl)
    assert jb.get(0.0) == Missing(MissingReason.STARTUP)
    assert not jb.get(0.02).conceal  # type: ignore[union-attr]


def test_no_loss_no_jitter_no_missing_after_start(impl: str) -> None:
    pk = tr.delay(tr.voice(20.0), 0.035)
    last = max(p.arrival for p in pk)
    rep = tr.replay(make(impl), pk, until=last)
    ticks = after_start(rep.ticks)
    assert all(isinstance(o, Frame) for _, o in ticks)
    check_order(ticks)  # frames skipped only where flagged dropped (shrinking from start_delay)
    played = [f.index for f in frames(ticks)]
    assert played == [tr.frame_of(f.payload) for f in frames(ticks)]


def test_lost_frames_are_reported_with_their_index(impl: str) -> None:
    jb = make(impl, start_delay=40)
    got = []
    for k in range(12):
        if k not in (5, 6):
            put(jb, k, 0.02 * k + 0.001)
        got.append(jb.get(0.02 * k + 0.015))
    seq = [o.index if isinstance(o, Frame) else (o.reason, o.index) for o in got]
    assert seq[2:] == [0, 1, 2, 3, 4, (MissingReason.LOST, 5), (MissingReason.LOST, 6), 7, 8, 9]
    lost = got[7]
    assert isinstance(lost, Missing) and lost.conceal
    s = jb.stats
    assert s.lost == 2 and s.concealed_samples == 320


def test_a_packet_after_its_slot_was_skipped_is_late(impl: str) -> None:
    jb = make(impl, start_delay=20)
    for k in range(6):
        if k != 3:
            put(jb, k, 0.02 * k + 0.001)
        jb.get(0.02 * k + 0.015)
    put(jb, 6, 0.121)
    out = [jb.get(0.135)]
    assert put(jb, 3, 0.14) is PutResult.LATE
    out.append(jb.get(0.155))
    s = jb.stats
    assert s.late == 1 and s.reordered == 1 and identity(s) == s.received


def test_duplicates_are_counted_and_never_played_twice(impl: str) -> None:
    jb = make(impl, start_delay=40)
    assert put(jb, 0, 0.0) is PutResult.ACCEPTED
    assert put(jb, 0, 0.001) is PutResult.DUPLICATE
    put(jb, 1, 0.02)
    played = []
    for k in range(8):
        o = jb.get(0.02 * k + 0.045)
        if isinstance(o, Frame):
            played.append(o.index)
    assert put(jb, 1, 0.3) is PutResult.DUPLICATE  # already played: still recognised
    assert played == [0, 1]
    assert jb.stats.duplicated == 2 and jb.stats.late == 0


def test_oversized_payloads_are_discarded(impl: str) -> None:
    jb = make(impl, max_payload=200)
    assert jb.put(1, 0, False, 0, bytes(201), 1, 0.0) is PutResult.DISCARDED
    assert jb.put(1, 0, False, 0, bytes(200), 1, 0.0) is PutResult.ACCEPTED
    assert jb.stats.discarded == 1


def test_packets_beyond_a_full_ring_are_discarded(impl: str) -> None:
    jb = make(impl, capacity=8, max_delay=40)
    assert jb.capacity == 8
    results = [put(jb, k, 0.001 * k) for k in range(10)]
    assert results[8:] == [PutResult.DISCARDED] * 2
    s = jb.stats
    assert s.buffered == 8 and s.discarded == 2 and identity(s) == s.received


def test_a_jump_past_the_ring_resyncs_and_continues(impl: str) -> None:
    jb = make(impl, capacity=16, start_delay=20)
    for k in range(5):
        put(jb, k, 0.02 * k)
        jb.get(0.02 * k + 0.019)
    assert put(jb, 500, 0.1) is PutResult.RESYNC
    out = [jb.get(0.02 * k + 0.119) for k in range(4)]
    got = [o for o in out if isinstance(o, Frame)]
    assert [f.payload for f in got] == [pay(4), pay(500)]  # frame 4 was still buffered
    assert got[1].flags & FLAG_RESYNC and got[1].index == 5
    assert jb.stats.resyncs == 1


def test_frame_flags_marker_and_silent(impl: str) -> None:
    jb = make(impl, start_delay=0)
    put(jb, 0, 0.0, marker=True, silent=True)
    put(jb, 1, 0.02, silent=False)
    a, b = jb.get(0.02), jb.get(0.04)
    assert isinstance(a, Frame) and isinstance(b, Frame)
    assert a.marker and a.silent and a.flags == FLAG_MARKER | FLAG_SILENT
    assert not b.marker and not b.silent


def test_put_packet_reads_an_rtp_packet(impl: str) -> None:
    jb = make(impl, start_delay=0)
    p = RtpPacket(payload_type=8, sequence=65535, timestamp=2**32 - 80, ssrc=99,
                  payload=b"\x55" * 160, marker=True)
    assert jb.put_packet(p, 1.0) is PutResult.ACCEPTED
    q = RtpPacket(payload_type=8, sequence=0, timestamp=80, ssrc=99, payload=b"\xd5" * 160)
    assert jb.put_packet(q, 1.02) is PutResult.ACCEPTED
    a, b = jb.get(1.02), jb.get(1.04)
    assert isinstance(a, Frame) and isinstance(b, Frame)
    assert (a.seq, a.timestamp, a.payload_type, b.seq, b.timestamp) == (65535, 2**32 - 80, 8, 0, 80)
    assert b.index == a.index + 1  # across the sequence and timestamp wrap


def test_reset_forgets_everything(impl: str) -> None:
    jb = make(impl)
    for k in range(5):
        put(jb, k, 0.02 * k)
    jb.reset()
    assert jb.stats.received == 0 and jb.stats.buffered == 0
    assert put(jb, 0, 5.0, seq0=1, ssrc=5) is PutResult.ACCEPTED
    assert jb.stats.resyncs == 0


@pytest.mark.parametrize("kw", [
    {"clock_rate": 0}, {"frame_samples": 0}, {"max_payload": 0}, {"dtmf_payload_type": 128},
    {"min_delay": -1}, {"fixed": -5}, {"capacity": 5000}, {"implementation": "rust"},
])
def test_bad_arguments(kw: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        JitterBuffer(**kw)


def test_stats_convert_samples_to_milliseconds(impl: str) -> None:
    jb = make(impl, clock_rate=16000, frame_samples=320, fixed=50)
    assert jb.stats.target_delay_ms == 50.0
    assert jb.counters()[15] == 800


# --- traces: loss, reordering, duplicates -------------------------------------------------------


def test_random_loss_is_counted_exactly(impl: str) -> None:
    sent = tr.voice(60.0)
    pk = tr.delay(tr.random_loss(sent, 5, 0.05), 0.02)
    got = {p.frame for p in pk}
    dropped = [f for f in range(min(got), max(got)) if f not in got]
    assert 0.04 < len(dropped) / len(sent) < 0.06
    rep, s = run(impl, pk)
    lost = [o.index for _, o in rep.ticks if isinstance(o, Missing)
            and o.reason is MissingReason.LOST]
    base = min(got)
    assert lost == [f - base for f in dropped]
    assert s.late == 0 and s.played + s.removed_samples // 160 + s.buffered == len(pk)
    check_order(rep.ticks)


def test_reordering_within_the_delay_is_never_late(impl: str) -> None:
    pk = tr.reorder(tr.delay(tr.voice(30.0), 0.01), 3, 0.1, max_frames=2)
    assert any(a.send > b.send for a, b in zip(tr.arrivals(pk), tr.arrivals(pk)[1:], strict=False))
    rep, s = run(impl, pk, min_delay=60)
    assert s.late == 0 and s.lost == 0 and s.reordered > 100
    assert s.played + s.buffered == len(pk) and identity(s) == s.received
    check_order(rep.ticks)


def test_reordering_raises_the_target_to_cover_it(impl: str) -> None:
    pk = tr.reorder(tr.delay(tr.voice(30.0), 0.01), 4, 0.05, max_frames=1)
    _, s = run(impl, pk)
    assert s.target_delay_ms >= 20.0
    assert s.late + s.lost <= 2  # only before the first reordered packet taught it


def test_duplicates_in_a_trace(impl: str) -> None:
    base = tr.gaussian_jitter(tr.delay(tr.voice(30.0), 0.01), 8, 0.004)
    pk = tr.duplicate(base, 9, 0.1, lag=0.003)
    rep, s = run(impl, pk)
    played = [tr.frame_of(f.payload) for f in frames(rep.ticks)]
    assert len(played) == len(set(played)) == len(base) - s.removed_samples // 160 - s.buffered
    assert s.duplicated == len(pk) - len(base)
    assert identity(s) == s.received


# --- traces: delay changes ----------------------------------------------------------------------


def test_a_300ms_spike_raises_the_target_at_once_and_lowers_it_slowly(impl: str) -> None:
    pk = tr.arrivals(tr.spikes(tr.delay(tr.voice(40.0), 0.02), [10.0], 0.3))
    jb = make(impl)
    seen: dict[str, float] = {}

    class Probe:
        def put(self, *a: Any, **kw: Any) -> PutResult:
            before = jb.stats.target_delay_ms
            r = jb.put(*a, **kw)
            if a[6] >= 10.3 and "jump" not in seen:
                seen["before"], seen["jump"] = before, jb.stats.target_delay_ms
            return r

        def get(self, now: float) -> Frame | Missing:
            o = jb.get(now)
            for t in (11.3, 13.0, 35.0):
                if abs(now - t) < 1e-9:
                    seen[str(t)] = jb.stats.target_delay_ms
            return o

        def pop_events(self) -> list[Frame]:
            return jb.pop_events()

    rep = tr.replay(Probe(), pk, until=pk[-1].arrival)
    assert seen["before"] < 30.0
    assert seen["jump"] >= 270.0  # the first packet after the stall raised it at once
    assert seen["11.3"] > 0.5 * seen["jump"]  # a second later, still most of it
    assert seen["11.3"] > seen["13.0"] > seen["35.0"]
    assert seen["35.0"] < 30.0
    s = jb.stats
    # the first frame of the stall was taken for lost (and came late); then the playout stalled
    # (concealment) instead of losing the delayed frames
    assert s.late == 1 and s.lost == 1 and s.underflows == 1
    assert 12 <= missing(rep.ticks, MissingReason.NOT_YET) <= 16
    assert s.played + s.removed_samples // 160 + s.buffered + s.late == len(pk)


def test_fixed_mode_keeps_its_target(impl: str) -> None:
    pk = tr.gaussian_jitter(tr.delay(tr.voice(20.0), 0.01), 2, 0.01)
    rep, s = run(impl, pk, fixed=80)
    assert s.target_delay_ms == 80.0
    delays = [t - next(p.arrival for p in pk if p.frame == tr.frame_of(f.payload))
              for t, f in [(t, o) for t, o in rep.ticks if isinstance(o, Frame)][-100:]]
    assert 0.05 < sum(delays) / len(delays) < 0.13
    assert s.late == 0


@pytest.mark.parametrize("ppm", [500.0, -500.0])
def test_clock_skew_over_five_minutes_stays_bounded(impl: str, ppm: float) -> None:
    talk = tr.voice(300.0, skew_ppm=ppm, talk=(1.2, 1.5), rng=11)
    pk = tr.gaussian_jitter(tr.delay(talk, 0.02), 12, 0.002)
    last = max(p.arrival for p in pk)
    jb = make(impl)
    worst = [0.0]

    def watch(now: float, out: Frame | Missing) -> None:
        if now > 10.0:
            worst[0] = max(worst[0], jb.stats.current_delay_ms)

    rep = tr.replay(jb, pk, on_tick=watch, until=last)
    s = jb.stats
    drift_frames = 300.0 * abs(ppm) * 1e-6 / 0.02  # 7.5 frames over the run
    assert worst[0] < 80.0
    assert s.late + s.lost <= 2
    # the drift is absorbed in silence: frames removed (fast sender) or inserted (slow one)
    # (a stall while the next frame is late grows the delay by a frame, like an insertion)
    grown = (s.inserted_samples - s.removed_samples) // 160 + missing(rep.ticks,
                                                                      MissingReason.NOT_YET)
    assert drift_frames - 3 <= (-grown if ppm > 0 else grown) <= drift_frames + 3
    assert (s.removed_samples if ppm > 0 else s.inserted_samples) > 0
    assert s.removed_samples + s.inserted_samples < 160 * 50  # some churn, in silence
    assert s.underflows <= 12


def test_silence_is_preferred_for_dropping(impl: str) -> None:
    g = 21
    pk = tr.spikes(tr.delay(tr.voice(30.0, talk=(1.0, 1.0), rng=g), 0.02), [5.0, 15.0], 0.25)
    rep, s = run(impl, pk)
    silent = {p.frame: p.silent for p in pk}
    dropped = [f.index - 1 for f in frames(rep.ticks) if f.flags & FLAG_DROPPED]
    assert s.removed_samples // 160 == len(dropped) > 5
    assert sum(1 for i in dropped if silent[i]) >= 0.8 * len(dropped)


# --- traces: stream changes ---------------------------------------------------------------------


def test_ssrc_change_resyncs_and_output_continues(impl: str) -> None:
    pk = tr.ssrc_change(tr.delay(tr.voice(20.0), 0.02), 10.0, 0xBEEF, 40000, 123456)
    rep, s = run(impl, pk)
    assert s.resyncs == 1 and s.late == 0 and s.lost == 0
    out = frames(rep.ticks)
    new = [f for f in out if f.seq >= 40000]
    assert new and new[0].flags & FLAG_RESYNC and new[0].seq == 40000
    assert sum(1 for f in out if f.flags & FLAG_RESYNC) == 1
    assert [tr.frame_of(f.payload) for f in out] == sorted(tr.frame_of(f.payload) for f in out)
    check_order(rep.ticks)
    t_change = next(t for t, o in rep.ticks if o is new[0])
    around = [o for t, o in rep.ticks if 9.5 < t < t_change]
    assert sum(1 for o in around if isinstance(o, Missing)) <= 3


def test_stale_packets_of_the_previous_ssrc_are_late(impl: str) -> None:
    jb = make(impl, start_delay=0)
    put(jb, 0, 0.0)
    put(jb, 0, 0.02, ssrc=8, seq0=9)
    assert put(jb, 1, 0.03) is PutResult.LATE
    assert put(jb, 2, 2.0) is PutResult.RESYNC  # a second later it counts as a switch back
    assert jb.stats.resyncs == 2


def test_a_copy_from_before_a_restart_is_not_replayed(impl: str) -> None:
    jb = make(impl, start_delay=0)
    put(jb, 0, 0.0)
    put(jb, 1, 0.02)
    assert put(jb, 0, 0.04, seq0=500) is PutResult.LATE  # restart lower: needs a second packet
    assert put(jb, 1, 0.06, seq0=500) is PutResult.RESYNC
    # the network repeats the pre-restart packet: a forward jump now, yet a straggler
    assert put(jb, 1, 0.08) is PutResult.LATE
    played = [o.seq for k in range(6) if isinstance(o := jb.get(0.1 + 0.02 * k), Frame)]
    assert played.count(1001) <= 1 and played.count(501) == 1
    s = jb.stats
    assert (s.resyncs, s.late, s.duplicated) == (1, 2, 0)  # the probation packet, the copy


def test_events_of_the_previous_source_still_come_out(impl: str) -> None:
    jb = make(impl, dtmf_payload_type=101)
    end = b"\x05\x8a\x03\x20"
    assert jb.put(10, 800, False, 101, end, 1, 0.0) is PutResult.EVENT
    put(jb, 0, 0.02, ssrc=2)  # the source changes
    assert jb.put(11, 800, False, 101, end, 1, 0.03) is PutResult.EVENT  # redundant end packet
    assert [(e.seq, e.index) for e in jb.pop_events()] == [(10, 0), (11, -1)]
    assert put(jb, 0, 0.04, ssrc=1, seq0=9) is PutResult.LATE  # audio of the old source is not


def test_timestamp_jump_with_marker_resyncs_without_a_long_gap(impl: str) -> None:
    pk = tr.timestamp_jump(tr.delay(tr.voice(20.0), 0.02), 10.0, 8000 * 3600)
    rep, s = run(impl, pk)
    assert s.resyncs == 1 and s.late == 0 and s.lost == 0
    assert missing(rep.ticks, MissingReason.GAP) == 0
    assert len(frames(rep.ticks)) + s.removed_samples // 160 + s.buffered == len(pk)


def test_big_sequence_jump_resyncs(impl: str) -> None:
    pk = tr.seq_jump(tr.delay(tr.voice(20.0), 0.02), 10.0, 20000)
    _, s = run(impl, pk)
    assert s.resyncs == 1 and s.lost == 0
    assert s.played + s.removed_samples // 160 + s.buffered == len(pk)


def test_backward_jump_needs_a_second_packet(impl: str) -> None:
    jb = make(impl, start_delay=0)
    for k in range(5):
        put(jb, k, 0.02 * k)
    assert put(jb, 0, 0.1, seq0=500) is PutResult.LATE
    assert put(jb, 1, 0.12, seq0=500) is PutResult.RESYNC
    assert jb.stats.resyncs == 1


def test_dtx_silence_rebuffers_without_resync_or_loss(impl: str) -> None:
    pk = tr.delay(tr.dtx(tr.voice(20.0), 5.0, 8.0), 0.02)
    first_after = next(p for p in pk if p.send >= 8.0)
    assert first_after.marker and first_after.seq == 250
    rep, s = run(impl, pk)
    # the first silent tick is taken for lost (nothing says the sender paused), not the rest;
    # the talkspurt's first packet, sequence-continuous, is then indexed after it: never late
    assert s.resyncs == 0 and s.lost == 1 and s.late == 0 and s.underflows == 1
    assert missing(rep.ticks, MissingReason.GAP) == 0
    t_back = next(t for t, o in rep.ticks if isinstance(o, Frame) and o.payload == first_after.payload)
    # waits the target delay after the talkspurt starts, not the 3 s of silence again
    assert 0.0 < t_back - first_after.arrival < 0.1


def test_timestamp_gap_inside_the_buffer_plays_silence(impl: str) -> None:
    jb = make(impl, start_delay=60)
    put(jb, 0, 0.0)
    jb.put(1001, 5000 + 160 * 3, False, 0, pay(1), 7, 0.02)  # next packet 3 frames later
    out = [jb.get(0.08 + 0.02 * k) for k in range(4)]
    assert isinstance(out[0], Frame)
    assert [getattr(o, "reason", None) for o in out[1:3]] == [MissingReason.GAP] * 2
    assert not out[1].conceal  # type: ignore[union-attr]
    assert isinstance(out[3], Frame) and out[3].payload == pay(1)
    assert jb.stats.lost == 0


# --- telephone events ---------------------------------------------------------------------------


def test_dtmf_events_pass_at_once_and_are_never_dropped(impl: str) -> None:
    voice = tr.gaussian_jitter(tr.delay(tr.voice(30.0), 0.02), 13, 0.004)
    pk = tr.dtmf(tr.dtmf(voice, 5.0, 0.2), 12.0, 0.16, digit=7)
    pk = tr.spikes(pk, [5.05], 0.2)  # a stall in the middle of the first digit
    events = [p for p in pk if p.payload_type == 101]
    assert len(events) == 18
    rep, s = run(impl, pk, dtmf_payload_type=101)
    assert s.events == len(events)
    got = [e for _, e in rep.events]
    assert [(e.seq, e.payload) for e in got] == [(p.seq, p.payload) for p in tr.arrivals(events)]
    assert all(e.flags & FLAG_EVENT and e.payload_type == 101 for e in got)
    assert all(t == p.arrival for (t, _), p in zip(rep.events, tr.arrivals(events), strict=True))
    assert all(f.payload_type == 0 for f in frames(rep.ticks))
    # event sequence numbers are not audio losses, and events are never late
    lost = {o.index for _, o in rep.ticks if isinstance(o, Missing) and o.index is not None}
    assert lost.isdisjoint(e.index for e in got)
    assert s.late == 0 and identity(s) == s.received


def test_events_queue_is_bounded(impl: str) -> None:
    jb = make(impl, dtmf_payload_type=101)
    res = [jb.put(k, 0, False, 101, b"\x01\x0a\x00\xa0", 1, 0.001 * k) for k in range(20)]
    assert res.count(PutResult.EVENT) == 16 and res.count(PutResult.DISCARDED) == 4
    assert len(jb.pop_events()) == 16 and jb.pop_events() == []
    assert jb.put(40, 0, False, 101, b"\x01\x0a\x00\xa0", 1, 0.1) is PutResult.EVENT


# --- the two twins ------------------------------------------------------------------------------


if lib is not None:  # the C twin is built: it must take the Python twin's decisions

    @pytest.mark.parametrize("name", sorted(tr.SCENARIOS))
    def test_c_and_python_agree_on_the_named_traces(name: str) -> None:
        pk = tr.scenario(name, 3, 20.0)
        a, b = make("py", dtmf_payload_type=101), make("c", dtmf_payload_type=101)
        ra, rb = tr.replay(a, pk), tr.replay(b, pk)
        assert ra.ticks == rb.ticks and [r for _, r in ra.puts] == [r for _, r in rb.puts]
        assert a.counters() == b.counters()
