"""pbx.rtp.jitter under hypothesis: a state machine for the playout invariants, and the C twin
taking exactly the Python twin's decisions on random operations and random network traces."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from pbx.media._native import lib
from pbx.rtp import traces as tr
from pbx.rtp.jitter import (
    FLAG_DROPPED,
    FLAG_EVENT,
    FLAG_SILENT,
    Frame,
    JitterBuffer,
    Missing,
    MissingReason,
    PutResult,
)

EVENT_PT = 101
FRAME = 160
CONCEAL = (MissingReason.LOST, MissingReason.NOT_YET, MissingReason.INSERTED)


class JitterMachine(RuleBasedStateMachine):
    """A sender with a little network chaos in front of the buffer. With the C twin built, the
    Python twin runs in lockstep and every result must be identical."""

    def __init__(self) -> None:
        super().__init__()
        self.jb = JitterBuffer(capacity=16, max_delay=120, start_delay=40,
                               dtmf_payload_type=EVENT_PT)
        self.twin = (JitterBuffer(capacity=16, max_delay=120, start_delay=40,
                                  dtmf_payload_type=EVENT_PT, implementation="py")
                     if self.jb.implementation == "c" else None)
        self.now = 0.0
        self.ssrc = 1
        self.seq = 100
        self.ts = 1000
        self.sent: dict[bytes, tuple[int, int, int, int, bool | None]] = {}
        self.in_flight: list[tuple[int, int, bool, int, bytes, int, bool | None]] = []
        self.delivered: list[tuple[int, int, bool, int, bytes, int, bool | None]] = []
        self.returned: set[bytes] = set()
        self.event_indexes: set[int] = set()
        self.events = 0
        self.last_index: int | None = None
        self.ticks: dict[str, int] = {}
        self.dropped = 0

    # -- the sender and the network

    @rule(gap=st.sampled_from([0, 0, 0, 0, 1, 2, 5, 40]),
          ts_gap=st.sampled_from([0, 0, 0, 0, 3, 200]),
          marker=st.booleans(), silent=st.sampled_from([None, True, False]),
          event=st.integers(0, 9), size=st.integers(0, 200))
    def send(self, gap: int, ts_gap: int, marker: bool, silent: bool | None, event: int,
             size: int) -> None:
        """The sender emits its next packet (after ``gap`` lost ones): audio, or an event."""
        self.seq = (self.seq + gap) & 0xFFFF
        self.ts = (self.ts + FRAME * (gap + ts_gap)) & 0xFFFFFFFF
        pt = EVENT_PT if event == 0 else 0
        payload = len(self.sent).to_bytes(4, "big") + bytes(size)
        self.sent[payload] = (self.seq, self.ts, pt, self.ssrc, silent)
        self.in_flight.append((self.seq, self.ts, marker, pt, payload, self.ssrc, silent))
        self.seq = (self.seq + 1) & 0xFFFF
        self.ts = (self.ts + FRAME) & 0xFFFFFFFF

    @rule(ssrc=st.integers(0, 3), seq=st.integers(0, 0xFFFF), ts=st.integers(0, 2**32 - 1))
    def new_source(self, ssrc: int, seq: int, ts: int) -> None:
        self.ssrc, self.seq, self.ts = ssrc, seq, ts

    @precondition(lambda self: self.in_flight)
    @rule(pick=st.integers(0, 3), data=st.data())
    def deliver(self, pick: int, data: st.DataObject) -> None:
        """A packet in flight arrives; usually the oldest, sometimes a later one (reordering)."""
        i = min(pick if data.draw(st.integers(0, 4)) == 0 else 0, len(self.in_flight) - 1)
        p = self.in_flight.pop(i)
        self.delivered.append(p)
        self._put(p)

    @precondition(lambda self: self.delivered)
    @rule(back=st.integers(1, 3))
    def duplicate(self, back: int) -> None:
        """The network delivers a recent packet again (recent: the buffer remembers the last four
        epochs; a copy of a packet from before more resyncs than that would play again)."""
        self._put(self.delivered[-min(back, len(self.delivered))])

    @rule(dt=st.sampled_from([0.0, 0.001, 0.007, 0.02, 0.02, 0.02, 0.05, 0.3, 3.0]))
    def tick(self, dt: float) -> None:
        """Time passes; the playout clock asks for a frame."""
        self.now += dt
        out = self._call("get", self.now)
        self._check_output(out)

    # -- checks

    def _call(self, name: str, *args: Any, **kw: Any) -> Any:
        r = getattr(self.jb, name)(*args, **kw)
        if self.twin is not None:
            assert getattr(self.twin, name)(*args, **kw) == r
            assert self.twin.counters() == self.jb.counters()
        return r

    def _put(self, p: tuple[int, int, bool, int, bytes, int, bool | None]) -> None:
        seq, ts, marker, pt, payload, ssrc, silent = p
        r = self._call("put", seq, ts, marker, pt, payload, ssrc, self.now, silent=silent)
        assert isinstance(r, PutResult)
        for e in self._call("pop_events"):
            assert e.flags & FLAG_EVENT and e.payload_type == EVENT_PT
            assert self.sent[e.payload][:3] == (e.seq, e.timestamp, e.payload_type)
            self.event_indexes.add(e.index)
            self.events += 1

    def _check_output(self, out: Frame | Missing) -> None:
        if isinstance(out, Frame):
            key = "frame"
            assert out.payload not in self.returned, "a frame came out twice"
            self.returned.add(out.payload)
            seq, ts, pt, _, silent = self.sent[out.payload]
            assert (out.seq, out.timestamp, out.payload_type) == (seq, ts, pt) and pt != EVENT_PT
            assert bool(out.flags & FLAG_SILENT) == bool(silent)
            self.dropped += bool(out.flags & FLAG_DROPPED)
            index: int | None = out.index
        else:
            key = out.reason.value
            assert (out.index is not None) == (out.reason is MissingReason.LOST)
            assert out.conceal == (out.reason in CONCEAL)
            index = out.index
        self.ticks[key] = self.ticks.get(key, 0) + 1
        if index is None:
            return
        if self.last_index is not None:
            assert index > self.last_index, "output order"
            dropped = isinstance(out, Frame) and out.flags & FLAG_DROPPED
            for gap in range(self.last_index + 1, index):
                # every index skipped is a telephone event or the one frame dropped
                assert gap in self.event_indexes or (dropped and gap == index - 1), gap
        self.last_index = index

    @invariant()
    def counters_are_consistent(self) -> None:
        s = self.jb.stats
        assert 0 <= s.buffered <= self.jb.capacity
        assert s.received == (s.played + s.removed_samples // FRAME + s.late + s.discarded
                              + s.duplicated + s.events + s.buffered)
        assert s.played == self.ticks.get("frame", 0)
        assert s.lost == self.ticks.get("lost", 0)
        assert s.inserted_samples == FRAME * self.ticks.get("inserted", 0)
        assert s.removed_samples == FRAME * self.dropped
        assert s.concealed_samples == FRAME * sum(self.ticks.get(r.value, 0) for r in CONCEAL)
        assert s.events == self.events
        assert s.reordered <= s.received


JitterMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=60,
                                           deadline=None)
TestJitterMachine = JitterMachine.TestCase


# --- the C twin against the Python twin ---------------------------------------------------------

_OPS = st.lists(st.one_of(
    st.tuples(st.just("get"), st.integers(-5_000, 60_000)),
    st.tuples(st.just("put"), st.integers(-3, 40), st.integers(-400, 4_000), st.booleans(),
              st.sampled_from([0, 0, 0, 8, EVENT_PT]), st.integers(0, 70),
              st.sampled_from([7, 7, 7, 7, 8]), st.integers(-5_000, 60_000),
              st.sampled_from([None, True, False])),
    st.tuples(st.just("wild"), st.integers(0, 0xFFFF), st.integers(0, 2**32 - 1),
              st.integers(0, 2**32 - 1)),
), max_size=120)

_CONFIGS = st.fixed_dictionaries({
    "clock_rate": st.sampled_from([8000, 16000, 48000]),
    "min_delay": st.sampled_from([0, 20, 60]),
    "max_delay": st.sampled_from([20, 100, 500, 2000]),
    "start_delay": st.sampled_from([0, 40, 100]),
    "fixed": st.sampled_from([None, None, 0, 40, 120]),
    "capacity": st.sampled_from([None, 4, 8, 64]),
    "max_payload": st.sampled_from([32, 1500]),
})


def _drive(jb: JitterBuffer, ops: list[tuple[Any, ...]], frame: int) -> list[Any]:
    """Apply ops (time steps in microseconds, sequence/timestamp steps relative) to a buffer."""
    out: list[Any] = []
    now_us, seq, ts = 10_000_000, 60_000, 2**32 - 3_000
    for op in ops:
        if op[0] == "get":
            now_us += op[1]
            out.append(jb.get(now_us / 1e6))
        elif op[0] == "put":
            _, dseq, dts, marker, pt, size, ssrc, dt, silent = op
            seq, ts, now_us = (seq + dseq) & 0xFFFF, (ts + dts * frame // 160) & 0xFFFFFFFF, \
                now_us + dt
            out.append(jb.put(seq, ts, marker, pt, bytes([len(out) & 0xFF]) * size, ssrc,
                              now_us / 1e6, silent=silent))
        else:
            _, s, t, src = op
            out.append(jb.put(s, t, True, 0, b"w", src, now_us / 1e6))
        out.append(jb.pop_events())
        out.append(jb.counters())
    return out


def _invariants(jb: JitterBuffer) -> None:
    s = jb.stats
    assert 0 <= s.buffered <= jb.capacity
    assert s.received == (s.played + s.removed_samples // jb.frame_samples + s.late + s.discarded
                          + s.duplicated + s.events + s.buffered)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=_CONFIGS, ops=_OPS)
def test_random_operations_keep_the_invariants(config: dict[str, Any],
                                               ops: list[tuple[Any, ...]]) -> None:
    frame = config["clock_rate"] // 50
    jb = JitterBuffer(frame_samples=frame, dtmf_payload_type=EVENT_PT, **config)
    _drive(jb, ops, frame)
    _invariants(jb)


@settings(max_examples=25, deadline=None)
@given(name=st.sampled_from(sorted(tr.SCENARIOS)), seed=st.integers(0, 2**16),
       config=_CONFIGS.filter(lambda c: c["clock_rate"] == 8000))
def test_random_traces_keep_the_invariants(name: str, seed: int, config: dict[str, Any]) -> None:
    jb = JitterBuffer(dtmf_payload_type=EVENT_PT, **config)
    pk = tr.dtmf(tr.SCENARIOS[name](seed, 4.0), 1.0 + (seed % 100) / 100, 0.2)
    rep = tr.replay(jb, pk)
    _invariants(jb)
    indexes = [o.index for _, o in rep.ticks if getattr(o, "index", None) is not None]
    assert indexes == sorted(set(indexes))


if lib is not None:  # the C twin is built: it must take the Python twin's decisions

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(config=_CONFIGS, ops=_OPS)
    def test_c_twin_equals_python_twin_on_random_operations(config: dict[str, Any],
                                                             ops: list[tuple[Any, ...]]) -> None:
        frame = config["clock_rate"] // 50
        c = JitterBuffer(frame_samples=frame, dtmf_payload_type=EVENT_PT,
                         implementation="c", **config)
        py = JitterBuffer(frame_samples=frame, dtmf_payload_type=EVENT_PT,
                          implementation="py", **config)
        assert c.capacity == py.capacity
        assert _drive(c, ops, frame) == _drive(py, ops, frame)

    @settings(max_examples=25, deadline=None)
    @given(name=st.sampled_from(sorted(tr.SCENARIOS)), seed=st.integers(0, 2**16),
           config=_CONFIGS.filter(lambda c: c["clock_rate"] == 8000))
    def test_c_twin_equals_python_twin_on_random_traces(name: str, seed: int,
                                                         config: dict[str, Any]) -> None:
        pk = tr.dtmf(tr.SCENARIOS[name](seed, 4.0), 1.0 + (seed % 100) / 100, 0.2)
        c = JitterBuffer(dtmf_payload_type=EVENT_PT, implementation="c", **config)
        py = JitterBuffer(dtmf_payload_type=EVENT_PT, implementation="py", **config)
        rc, rp = tr.replay(c, pk), tr.replay(py, pk)
        assert rc.ticks == rp.ticks and rc.events == rp.events
        assert [r for _, r in rc.puts] == [r for _, r in rp.puts]
        assert c.counters() == py.counters()
