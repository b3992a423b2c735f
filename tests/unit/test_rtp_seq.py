"""RFC 3550 A.1 sequence validation: probation, wrap-around, gaps, late and duplicate packets, the
MAX_DROPOUT / MAX_MISORDER boundaries, resynchronisation after a jump, and A.3 loss figures."""

from __future__ import annotations

import pytest

from pbx.rtp.seq import MAX_DROPOUT, MAX_MISORDER, SequenceTracker


def feed(tracker: SequenceTracker, seqs: list[int]) -> list[int | None]:
    return [tracker.update(s) for s in seqs]


def test_probation_needs_two_sequential_packets() -> None:
    t = SequenceTracker()
    assert not t.valid
    assert feed(t, [100, 101, 102]) == [None, 101, 102]
    assert t.valid
    assert (t.base_seq, t.max_seq, t.received, t.expected, t.lost) == (101, 102, 2, 2, 0)


def test_probation_restarts_on_a_gap() -> None:
    t = SequenceTracker()
    assert feed(t, [100, 105, 107, 108, 109]) == [None, None, None, 108, 109]
    assert t.base_seq == 108
    assert t.received == 2


def test_longer_probation_and_none() -> None:
    t = SequenceTracker(min_sequential=3)
    assert feed(t, [1, 2, 3, 4]) == [None, None, 3, 4]
    t1 = SequenceTracker(min_sequential=1)
    assert feed(t1, [40000, 40001]) == [40000, 40001]
    with pytest.raises(ValueError):
        SequenceTracker(min_sequential=0)


def test_wraps_at_65535() -> None:
    t = SequenceTracker()
    assert feed(t, [65533, 65534, 65535, 0, 1]) == [None, 65534, 65535, 65536, 65537]
    assert t.cycles == 1
    assert t.max_seq == 1
    assert t.extended_max == 65537
    assert (t.expected, t.received, t.lost) == (4, 4, 0)
    assert t.report() == (0, 0, 65537)


def test_probation_across_the_wrap() -> None:
    t = SequenceTracker()
    assert feed(t, [65535, 0, 1]) == [None, 0, 1]
    assert t.cycles == 0


def test_late_packet_across_the_wrap_gets_the_previous_cycle() -> None:
    t = SequenceTracker()
    feed(t, [65533, 65534, 0, 1])  # 65535 missing
    assert t.update(65535) == 65535
    assert t.cycles == 1
    assert (t.expected, t.received, t.lost) == (4, 4, 0)


def test_gaps_count_as_lost() -> None:
    t = SequenceTracker()
    assert feed(t, [10, 11, 13, 14, 20]) == [None, 11, 13, 14, 20]
    assert (t.expected, t.received, t.lost) == (10, 4, 6)


def test_reordered_packet_is_counted_and_not_a_duplicate() -> None:
    t = SequenceTracker()
    assert feed(t, [10, 11, 13, 12, 14]) == [None, 11, 13, 12, 14]
    assert (t.expected, t.received, t.lost, t.duplicates) == (4, 4, 0, 0)
    assert t.max_seq == 14


def test_duplicates_are_received_per_rfc_and_counted_apart() -> None:
    t = SequenceTracker()
    assert feed(t, [10, 11, 12, 12, 13, 11, 12]) == [None, 11, 12, 12, 13, 11, 12]
    assert t.duplicates == 3
    assert (t.expected, t.received, t.lost) == (3, 6, -3)
    fraction, cumulative, _ = t.report()
    assert (fraction, cumulative) == (0, -3)


def test_duplicates_found_anywhere_in_the_misorder_range() -> None:
    t = SequenceTracker()
    feed(t, [0, 1, *range(2, 200)])
    assert t.update(199 - 99) == 100  # 99 behind: late, already seen
    assert t.duplicates == 1
    # after a jump, the packets skipped over are late, not duplicates
    assert t.update(2199) == 2199
    assert t.update(2198) == 2198
    assert t.duplicates == 1


def test_max_dropout_boundary() -> None:
    t = SequenceTracker()
    feed(t, [0, 1])
    assert t.update(1 + MAX_DROPOUT - 1) == MAX_DROPOUT
    t = SequenceTracker()
    feed(t, [0, 1])
    assert t.update(1 + MAX_DROPOUT) is None
    assert t.received == 1


def test_max_misorder_boundary() -> None:
    t = SequenceTracker()
    feed(t, [1000, 1001])
    assert t.update(1001 - (MAX_MISORDER - 1)) == 1001 - (MAX_MISORDER - 1)
    assert t.update(1001 - MAX_MISORDER) is None
    assert t.received == 2


def test_unconfirmed_jump_is_dropped() -> None:
    t = SequenceTracker()
    assert feed(t, [10, 11, 12, 5000, 13, 5000, 9000, 14]) == [
        None, 11, 12, None, 13, None, None, 14]
    assert (t.base_seq, t.expected, t.received) == (11, 4, 4)


def test_two_sequential_packets_after_a_jump_resync() -> None:
    t = SequenceTracker()
    feed(t, [10, 11, 12, 65535, 0, 1, 2])
    # 40000, 40001: the second confirms the jump and counting restarts there
    assert feed(t, [40000, 40001, 40002]) == [None, 40001, 40002]
    assert (t.base_seq, t.max_seq, t.cycles, t.received, t.expected) == (40001, 40002, 0, 2, 2)


def test_backward_jump_resyncs_too() -> None:
    t = SequenceTracker()
    feed(t, [30000, 30001, 30002])
    assert feed(t, [100, 101, 102]) == [None, 101, 102]
    assert t.base_seq == 101


def test_report_fraction_per_interval_and_cumulative() -> None:
    t = SequenceTracker()
    feed(t, [0, *range(1, 101)])            # 1..100: 100 expected, none lost
    assert t.report() == (0, 0, 100)
    feed(t, [s for s in range(101, 201) if s % 4 != 1])  # 100 more expected, 25 lost
    assert t.report() == ((25 * 256) // 100, 25, 200)
    feed(t, [201, 202])
    assert t.report() == (0, 25, 202)
    assert t.report() == (0, 25, 202)   # an empty interval


def test_report_clamps_cumulative_loss_to_24_bits() -> None:
    t = SequenceTracker()
    feed(t, [0, 1])
    seq = 1
    for _ in range(3000):
        seq = (seq + MAX_DROPOUT - 1) & 0xFFFF
        assert t.update(seq) is not None
    expected, received = t.expected, t.received
    assert expected == 1 + 3000 * (MAX_DROPOUT - 1)
    assert t.lost == expected - received > 0x7FFFFF
    assert t.report() == (((expected - received) << 8) // expected, 0x7FFFFF,
                          t.extended_max & 0xFFFFFFFF)
