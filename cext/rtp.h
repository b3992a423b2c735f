/* RTP (RFC 3550) header parsing, sequence validation (appendix A.1, A.3) and interarrival
 * jitter (appendix A.8) for the native media engine. Plain C, state in caller-owned structs.
 * The pure-Python twins are pbx.rtp.packet.parse_rtp, pbx.rtp.seq.SequenceTracker and
 * pbx.rtp.stats.JitterEstimator; property tests check they agree. */
#ifndef PBX_RTP_H
#define PBX_RTP_H
#include <stdint.h>
#include <stddef.h>

/* pbx_rtp_parse results: 0 or one of these (checked in this order). */
#define PBX_RTP_OK 0
#define PBX_RTP_ETOOSHORT (-1) /* fewer than 12 bytes */
#define PBX_RTP_EVERSION (-2)  /* version field is not 2 */
#define PBX_RTP_ECSRC (-3)     /* CSRC list runs past the end */
#define PBX_RTP_EEXT (-4)      /* extension header or its data runs past the end */
#define PBX_RTP_EPADDING (-5)  /* padding count 0 or larger than the payload */

typedef struct {
    uint8_t version;
    uint8_t padding;        /* P bit */
    uint8_t marker;
    uint8_t pt;
    uint16_t seq;
    uint32_t ts;
    uint32_t ssrc;
    uint8_t csrc_count;     /* CSRCs are at buf + 12, 4 bytes each, network order */
    uint8_t has_ext;
    uint16_t ext_profile;
    uint32_t ext_len;       /* bytes of extension data, at buf + 16 + 4 * csrc_count */
    uint32_t pad_len;       /* padding bytes removed (0 without the P bit) */
    uint32_t payload_offset;
    uint32_t payload_len;   /* padding excluded */
} pbx_rtp_hdr;

int pbx_rtp_parse(const uint8_t *buf, size_t len, pbx_rtp_hdr *out);
/* RFC 5761 section 4 rtcp-mux demultiplexing: 1 when the second byte is 192..223. */
int pbx_rtp_is_rtcp(const uint8_t *buf, size_t len);

#define PBX_RTP_MIN_SEQUENTIAL 2
#define PBX_RTP_MAX_DROPOUT 3000
#define PBX_RTP_MAX_MISORDER 100

/* Per-source sequence state (RFC 3550 A.1) with the A.3 interval counters and a 128-packet
 * window for counting duplicates. Zero it with pbx_rtp_seq_init before the first packet. */
typedef struct {
    uint16_t max_seq;         /* highest sequence number seen */
    uint16_t base_seq;        /* first sequence number counted */
    uint32_t cycles;          /* number of sequence wraps (not shifted) */
    uint32_t bad_seq;         /* last 'bad' sequence number + 1 */
    uint32_t probation;       /* sequential packets still needed before valid */
    uint32_t min_sequential;
    int32_t started;          /* a packet has been seen */
    uint64_t received;        /* packets counted valid (duplicates included, as in A.1) */
    uint64_t duplicates;      /* packets seen twice within the last 128 sequence numbers */
    int64_t expected_prior;   /* A.3 interval bookkeeping */
    int64_t received_prior;
    uint64_t window[2];       /* bit i: extended max - i was received */
} pbx_rtp_seq_t;

void pbx_rtp_seq_init(pbx_rtp_seq_t *s, uint32_t min_sequential);
/* 1 and *ext = extended sequence number when the packet counts, 0 while on probation or
 * after a large jump not yet confirmed. *ext may be negative for a packet from before the
 * first one counted. */
int pbx_rtp_seq_update(pbx_rtp_seq_t *s, uint16_t seq, int64_t *ext);
/* Packets expected since the first counted one (0 until valid). */
int64_t pbx_rtp_seq_expected(const pbx_rtp_seq_t *s);
/* Extended highest sequence number (cycles << 16 | max_seq). */
int64_t pbx_rtp_seq_extended_max(const pbx_rtp_seq_t *s);
/* A.3 report-block loss figures; starts a new interval for the fraction. cumulative is
 * clamped to the signed 24-bit range, ext_highest is the low 32 bits of the extended max. */
void pbx_rtp_seq_report(pbx_rtp_seq_t *s, uint8_t *fraction, int32_t *cumulative,
                        uint32_t *ext_highest);

/* Interarrival jitter (A.8) in RTP timestamp units, kept times 16 in integers. */
typedef struct {
    uint32_t transit;
    int32_t started;
    uint64_t jitter_q4;
} pbx_rtp_jitter_t;

void pbx_rtp_jitter_init(pbx_rtp_jitter_t *j);
/* Feed one packet: arrival time and RTP timestamp in the same units (mod 2^32). Returns the
 * jitter as a report block carries it (jitter_q4 / 16, rounded down). */
uint32_t pbx_rtp_jitter_update(pbx_rtp_jitter_t *j, uint32_t arrival, uint32_t rtp_ts);

#endif
