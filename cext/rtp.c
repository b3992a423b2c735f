/* RTP header parsing, RFC 3550 A.1 sequence validation with A.3 loss figures, and A.8
 * interarrival jitter. Twins: pbx.rtp.packet, pbx.rtp.seq, pbx.rtp.stats. */
#include <stdint.h>
#include <stddef.h>
#include <string.h>
#include "rtp.h"

int pbx_rtp_parse(const uint8_t *buf, size_t len, pbx_rtp_hdr *out)
{
    if (len < 12)
        return PBX_RTP_ETOOSHORT;
    uint8_t b0 = buf[0];
    if ((b0 >> 6) != 2)
        return PBX_RTP_EVERSION;
    size_t cc = b0 & 0x0F;
    size_t off = 12 + 4 * cc;
    if (off > len)
        return PBX_RTP_ECSRC;
    uint16_t profile = 0;
    size_t ext_len = 0;
    if (b0 & 0x10) {
        if (len - off < 4)
            return PBX_RTP_EEXT;
        profile = (uint16_t)(buf[off] << 8 | buf[off + 1]);
        ext_len = 4 * (size_t)(buf[off + 2] << 8 | buf[off + 3]);
        off += 4;
        if (ext_len > len - off)
            return PBX_RTP_EEXT;
        off += ext_len;
    }
    size_t pad = 0;
    if (b0 & 0x20) {
        pad = buf[len - 1];
        if (pad == 0 || pad > len - off)
            return PBX_RTP_EPADDING;
    }
    out->version = 2;
    out->padding = (b0 >> 5) & 1;
    out->marker = buf[1] >> 7;
    out->pt = buf[1] & 0x7F;
    out->seq = (uint16_t)(buf[2] << 8 | buf[3]);
    out->ts = (uint32_t)buf[4] << 24 | (uint32_t)buf[5] << 16 | (uint32_t)buf[6] << 8 | buf[7];
    out->ssrc = (uint32_t)buf[8] << 24 | (uint32_t)buf[9] << 16 | (uint32_t)buf[10] << 8 | buf[11];
    out->csrc_count = (uint8_t)cc;
    out->has_ext = (b0 >> 4) & 1;
    out->ext_profile = profile;
    out->ext_len = (uint32_t)ext_len;
    out->pad_len = (uint32_t)pad;
    out->payload_offset = (uint32_t)off;
    out->payload_len = (uint32_t)(len - off - pad);
    return PBX_RTP_OK;
}

int pbx_rtp_is_rtcp(const uint8_t *buf, size_t len)
{
    return len >= 2 && buf[1] >= 192 && buf[1] <= 223;
}

/* A.1 init_seq: the counting restarts at seq. */
static void seq_restart(pbx_rtp_seq_t *s, uint16_t seq)
{
    s->base_seq = seq;
    s->max_seq = seq;
    s->bad_seq = 65536 + 1; /* so seq == bad_seq is false */
    s->cycles = 0;
    s->received = 0;
    s->received_prior = 0;
    s->expected_prior = 0;
    s->window[0] = 1;
    s->window[1] = 0;
}

void pbx_rtp_seq_init(pbx_rtp_seq_t *s, uint32_t min_sequential)
{
    memset(s, 0, sizeof *s);
    s->min_sequential = min_sequential ? min_sequential : 1;
    s->bad_seq = 65536 + 1;
}

static void window_advance(pbx_rtp_seq_t *s, unsigned d)
{
    if (d >= 128) {
        s->window[1] = 0;
        s->window[0] = 0;
    } else if (d >= 64) {
        s->window[1] = s->window[0] << (d - 64);
        s->window[0] = 0;
    } else if (d > 0) {
        s->window[1] = s->window[1] << d | s->window[0] >> (64 - d);
        s->window[0] <<= d;
    }
    s->window[0] |= 1;
}

/* Marks ext max - behind as received; 1 when it already was. */
static int window_mark(pbx_rtp_seq_t *s, unsigned behind)
{
    if (behind >= 128)
        return 0;
    uint64_t *w = &s->window[behind >> 6];
    uint64_t bit = (uint64_t)1 << (behind & 63);
    int seen = (*w & bit) != 0;
    *w |= bit;
    return seen;
}

int pbx_rtp_seq_update(pbx_rtp_seq_t *s, uint16_t seq, int64_t *ext)
{
    if (!s->started) {
        seq_restart(s, seq);
        s->max_seq = (uint16_t)(seq - 1);
        s->probation = s->min_sequential;
        s->started = 1;
    }
    uint16_t udelta = (uint16_t)(seq - s->max_seq);
    unsigned behind = 0;
    if (s->probation) {
        if (seq == (uint16_t)(s->max_seq + 1)) {
            s->probation--;
            s->max_seq = seq;
            if (s->probation == 0) {
                seq_restart(s, seq);
                s->received++;
                *ext = seq;
                return 1;
            }
        } else {
            s->probation = s->min_sequential - 1;
            s->max_seq = seq;
        }
        return 0;
    } else if (udelta < PBX_RTP_MAX_DROPOUT) {
        /* in order, with a permissible gap (0: a duplicate of the highest) */
        if (seq < s->max_seq)
            s->cycles++;
        if (udelta == 0)
            s->duplicates += (uint64_t)window_mark(s, 0);
        else
            window_advance(s, udelta);
        s->max_seq = seq;
    } else if (udelta <= 65536 - PBX_RTP_MAX_MISORDER) {
        /* a very large jump: restart if the previous packet was seq - 1 */
        if (seq == s->bad_seq) {
            seq_restart(s, seq);
        } else {
            s->bad_seq = (uint32_t)(seq + 1) & 0xFFFF;
            return 0;
        }
    } else {
        /* duplicate or reordered packet */
        behind = 65536u - udelta;
        s->duplicates += (uint64_t)window_mark(s, behind);
    }
    s->received++;
    *ext = pbx_rtp_seq_extended_max(s) - (int64_t)behind;
    return 1;
}

int64_t pbx_rtp_seq_extended_max(const pbx_rtp_seq_t *s)
{
    return ((int64_t)s->cycles << 16) + s->max_seq;
}

int64_t pbx_rtp_seq_expected(const pbx_rtp_seq_t *s)
{
    if (!s->started || s->probation)
        return 0;
    return pbx_rtp_seq_extended_max(s) - s->base_seq + 1;
}

void pbx_rtp_seq_report(pbx_rtp_seq_t *s, uint8_t *fraction, int32_t *cumulative,
                        uint32_t *ext_highest)
{
    int64_t expected = pbx_rtp_seq_expected(s);
    int64_t received = (int64_t)s->received;
    int64_t lost = expected - received;
    if (lost > 0x7FFFFF)
        lost = 0x7FFFFF;
    else if (lost < -0x800000)
        lost = -0x800000;
    int64_t expected_interval = expected - s->expected_prior;
    int64_t received_interval = received - s->received_prior;
    int64_t lost_interval = expected_interval - received_interval;
    s->expected_prior = expected;
    s->received_prior = received;
    int64_t frac = 0;
    if (expected_interval > 0 && lost_interval > 0)
        frac = (lost_interval << 8) / expected_interval;
    *fraction = (uint8_t)(frac > 255 ? 255 : frac);
    *cumulative = (int32_t)lost;
    *ext_highest = (uint32_t)pbx_rtp_seq_extended_max(s);
}

void pbx_rtp_jitter_init(pbx_rtp_jitter_t *j)
{
    memset(j, 0, sizeof *j);
}

uint32_t pbx_rtp_jitter_update(pbx_rtp_jitter_t *j, uint32_t arrival, uint32_t rtp_ts)
{
    uint32_t transit = arrival - rtp_ts;
    if (j->started) {
        int32_t diff = (int32_t)(transit - j->transit);
        uint64_t d = diff < 0 ? (uint64_t)(-(int64_t)diff) : (uint64_t)diff;
        /* J += (|D| - J) / 16, with J kept times 16 (A.8) */
        j->jitter_q4 = j->jitter_q4 + d - ((j->jitter_q4 + 8) >> 4);
    } else {
        j->started = 1;
    }
    j->transit = transit;
    return (uint32_t)(j->jitter_q4 >> 4);
}
