"""Receiver and sender statistics: A.8 jitter on constant and alternating delay (the expected value
computed here from the RFC's floating-point formula), loss per interval and cumulative, LSR/DLSR,
RTT on the RFC 3550 §6.4.1 example and across two simulated hosts, and SR contents."""

from __future__ import annotations

import pytest

from pbx.rtp.packet import RtpPacket
from pbx.rtp.rtcp import (
    NTP_UNIX_OFFSET,
    ReportBlock,
    SenderReport,
    ntp_compact,
    ntp_from_time,
)
from pbx.rtp.stats import JitterEstimator, ReceiverStats, SenderStats, rtt_from_report_block

RATE = 8000
FRAME = 160  # 20 ms at 8 kHz


def rfc_jitter(arrivals: list[float], timestamps: list[int], rate: int) -> float:
    """The RFC 3550 A.8 estimator in floating point, over every packet given."""
    jitter = 0.0
    transit_prev = None
    for arrival, ts in zip(arrivals, timestamps, strict=True):
        transit = arrival * rate - ts
        if transit_prev is not None:
            jitter += (abs(transit - transit_prev) - jitter) / 16
        transit_prev = transit
    return jitter


def test_constant_delay_gives_zero_jitter() -> None:
    stats = ReceiverStats(0x1234, RATE)
    for k in range(100):
        stats.on_packet(k, 1000 + FRAME * k, now=5.037 + 0.02 * k)
    assert stats.jitter == 0
    assert stats.jitter_seconds == 0
    assert stats.report_block(now=7.0).jitter == 0


def test_constant_delay_across_timestamp_and_sequence_wrap() -> None:
    stats = ReceiverStats(1, RATE)
    first_ts = (1 << 32) - 5 * FRAME
    exts = [stats.on_packet((65530 + k) & 0xFFFF, (first_ts + FRAME * k) & 0xFFFFFFFF,
                            now=123.4 + 0.02 * k) for k in range(20)]
    assert exts == [None, *range(65531, 65550)]
    assert stats.jitter == 0
    assert stats.sequence.cycles == 1


def test_alternating_delay_matches_the_rfc_formula() -> None:
    stats = ReceiverStats(1, RATE)
    arrivals, timestamps = [], []
    for k in range(300):
        ts = 4000 + FRAME * k
        now = 10.0 + 0.02 * k + (0.010 if k % 2 else 0.0)   # 0 and 10 ms delay alternately
        ext = stats.on_packet(k, ts, now)
        if ext is not None:  # the first packet is on probation and not measured
            arrivals.append(now)
            timestamps.append(ts)
        if len(arrivals) in (2, 3, 17, 60, 299):
            expected = rfc_jitter(arrivals, timestamps, RATE)
            assert abs(stats.jitter - expected) <= 0.5 + 1e-9, (k, stats.jitter, expected)
    # |D| is 10 ms = 80 units every time, so J_n = 80 (1 - (15/16)^n)
    n = len(arrivals) - 1
    assert abs(rfc_jitter(arrivals, timestamps, RATE) - 80 * (1 - (15 / 16) ** n)) < 1e-6
    assert 79 <= stats.report_block(now=20.0).jitter <= 80
    assert abs(stats.jitter_seconds - 0.010) < 0.0002


def test_jitter_estimator_integer_steps() -> None:
    j = JitterEstimator()
    assert j.update(1000, 0) == 0      # first packet: transit only
    assert j.update(1160, 160) == 0    # same transit
    j.update(1400, 320)                # transit +80: J = 80/16 = 5
    assert (j.jitter_q4, j.jitter) == (80, 5)
    j.update(1480, 480)                # transit back -80: 80 + 80 - 5 = 155
    assert (j.jitter_q4, j.jitter) == (155, 9)
    j.update(1640, 640)                # |D| = 0: 155 - round(155/16) = 155 - 10
    assert j.jitter_q4 == 145


def test_loss_fraction_per_interval_and_cumulative() -> None:
    stats = ReceiverStats(0xABCDEF01, RATE)
    now = 0.0
    sent = list(range(0, 51)) + [s for s in range(51, 151) if s % 10 != 5]  # 10 lost of 100
    for s in sent:
        now += 0.02
        stats.on_packet(s, s * FRAME, now)
    assert (stats.expected, stats.received, stats.lost) == (150, 140, 10)
    block = stats.report_block(now)
    assert block.ssrc == 0xABCDEF01
    assert block.ext_highest_seq == 150
    assert block.cumulative_lost == 10
    assert block.fraction_lost == (10 * 256) // 150
    for s in range(151, 201):     # a clean interval
        now += 0.02
        stats.on_packet(s, s * FRAME, now)
    block = stats.report_block(now)
    assert (block.fraction_lost, block.cumulative_lost, block.ext_highest_seq) == (0, 10, 200)
    for s in range(201, 301, 2):  # half lost
        now += 0.04
        stats.on_packet(s, s * FRAME, now)
    block = stats.report_block(now)
    assert (block.fraction_lost, block.cumulative_lost) == ((49 * 256) // 99, 59)


def test_duplicates_make_loss_negative() -> None:
    stats = ReceiverStats(7, RATE)
    for s in (1, 2, 3, 3, 4, 4):
        stats.on_packet(s, s * FRAME, s * 0.02)
    assert (stats.received, stats.duplicates, stats.lost) == (5, 2, -2)
    assert stats.report_block(1.0).cumulative_lost == -2


def test_on_rtp_and_probation() -> None:
    stats = ReceiverStats(9, RATE)
    p0 = RtpPacket(payload_type=0, sequence=500, timestamp=0, ssrc=9)
    p1 = RtpPacket(payload_type=0, sequence=501, timestamp=160, ssrc=9)
    assert stats.on_rtp(p0, 1.0) is None
    assert stats.on_rtp(p1, 1.02) == 501
    assert stats.received == 1


def test_lsr_and_dlsr_from_the_last_sender_report() -> None:
    stats = ReceiverStats(1, RATE)
    block = stats.report_block(now=3.0)
    assert (block.lsr, block.dlsr) == (0, 0)
    ntp = ntp_from_time(1_700_000_000.25)
    stats.on_sender_report(SenderReport(1, ntp), now=10.0)
    block = stats.report_block(now=10.75)
    assert block.lsr == ntp_compact(ntp) == (ntp >> 16) & 0xFFFFFFFF
    assert block.dlsr == 49152   # 0.75 s in 1/65536 s
    stats.on_sender_report(SenderReport(1, ntp + (1 << 32)), now=11.0)
    block = stats.report_block(now=11.0)
    assert (block.lsr, block.dlsr) == (ntp_compact(ntp) + (1 << 16), 0)


def test_rtt_on_the_rfc_example() -> None:
    # RFC 3550 §6.4.1: SR at 0xb44db705:20000000, RR back at A = b710:8000 with DLSR 5.25 s.
    block = ReportBlock(1, lsr=0xB7052000, dlsr=0x00054000)
    a_time = 0xB44DB705 - NTP_UNIX_OFFSET + 0.125 + 11.375   # A is 11.375 s after the SR
    assert ntp_compact(ntp_from_time(a_time)) == 0xB7108000
    assert rtt_from_report_block(block, a_time) == 6.125
    # the same on a monotonic clock mapped to the wall clock by an offset
    offset = a_time - 500.0
    assert rtt_from_report_block(block, 500.0, ntp_offset=offset) == 6.125


def test_rtt_without_lsr_or_negative_is_none() -> None:
    now = 1000.0
    a = ntp_compact(ntp_from_time(now))
    assert rtt_from_report_block(ReportBlock(1, lsr=0, dlsr=0), now) is None
    assert rtt_from_report_block(ReportBlock(1, lsr=a, dlsr=100), now) is None
    assert rtt_from_report_block(ReportBlock(1, lsr=a, dlsr=1), now) == 0.0
    assert rtt_from_report_block(ReportBlock(1, lsr=a - 655, dlsr=0), now) == 655 / 65536


def test_rtt_between_two_hosts_with_different_clocks() -> None:
    one_way = 0.040
    hold = 0.300
    a_clock = 100.0     # host A's monotonic clock reads global time + 100
    b_clock = 5000.0
    sender = SenderStats(0xA, RATE, ntp_offset=1_600_000_000.0, initial_timestamp=777)
    receiver = ReceiverStats(0xA, RATE)
    g = 1.0
    for k in range(50):
        g = 1.0 + 0.02 * k
        sender.on_sent(777 + FRAME * k, 160, g + a_clock)
        receiver.on_packet(k, 777 + FRAME * k, g + one_way + b_clock)
    sr = sender.sender_report(g + 0.005 + a_clock)
    receiver.on_sender_report(sr, g + 0.005 + one_way + b_clock)
    block = receiver.report_block(g + 0.005 + one_way + hold + b_clock)
    rtt = sender.rtt(block, g + 0.005 + 2 * one_way + hold + a_clock)
    assert rtt is not None
    assert abs(rtt - 2 * one_way) <= 2 / 65536


def test_sender_stats_counts_and_sr() -> None:
    s = SenderStats(0x5555, RATE, ntp_offset=1000.0, initial_timestamp=42)
    assert not s.has_sent
    assert s.rtp_timestamp_at(3.0) == 42
    s.on_rtp(RtpPacket(payload_type=0, sequence=1, timestamp=1000, ssrc=0x5555,
                       payload=bytes(160)), now=1.0)
    s.on_sent(1160, 100, now=1.02)
    assert s.has_sent
    assert (s.packet_count, s.octet_count) == (2, 260)
    assert s.rtp_timestamp_at(1.52) == 1160 + 4000
    block = ReportBlock(99, jitter=3)
    sr = s.sender_report(1.52, [block])
    assert sr == SenderReport(0x5555, ntp_from_time(1.52 + 1000.0), 5160, 2, 260, (block,))


def test_sender_counters_wrap_at_32_bits() -> None:
    s = SenderStats(1, RATE)
    s.octet_count = 0xFFFFFFFF - 10
    s.on_sent(0xFFFFFFFF, 20, 0.0)
    assert s.octet_count == 9
    assert s.rtp_timestamp_at(0.02) == FRAME - 1


@pytest.mark.parametrize("rate", [0, -8000])
def test_clock_rate_must_be_positive(rate: int) -> None:
    with pytest.raises(ValueError):
        ReceiverStats(1, rate)
    with pytest.raises(ValueError):
        SenderStats(1, rate)
