/* Native media engine. See engine.h for the contract.
 *
 * Receiving: one epoll descriptor holds every RTP (and RTCP) socket, level-triggered; epoll data
 * is (slot << 1 | is_rtcp). pbx_engine_drain() polls it with a zero timeout and reads ONE
 * datagram (recvfrom) from each ready socket per round, until a round finds nothing ready (or a
 * budget is spent); a socket with more waiting is simply reported again by the next round, so a
 * flooded socket cannot starve the others. One socket per leg sees about one packet per wake-up,
 * so the win is doing all ready sockets in one call, not batching per socket: recvmmsg (needed
 * to make edge triggering safe) measured about 8 % more CPU per packet than recvfrom with level
 * triggering, whose only extra is one cheap re-poll per socket read.
 *
 * Ticking: pbx_engine_tick() = tick_rx (timeouts; per terminated stream: jitter buffer ->
 * decode or conceal -> in-band DTMF -> receive tap -> conference input) + tick_tx (conference
 * mixes; per terminated stream: playout ring entry / conference output / silence -> send tap ->
 * encode -> send). The per-stream media work is the media core (pbx_engine_media_*), which has
 * a Python twin in pbx.media._engine_media.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "g711.h"
#include "g722.h"
#include "goertzel.h"
#include "jitter.h"
#include "mix.h"
#include "plc.h"
#include "resample.h"
#include "rtp.h"

#define RTP_MAX_MISORDER 100
#define RTP_MAX_DROPOUT 3000
#define PKT_BUF 2048
#define SEND_BUF (12 + 4 * PBX_ENGINE_MAX_FRAME)
#define SEND_PAYLOAD (4 * PBX_ENGINE_MAX_FRAME)
#define EXT_MAX_PAYLOAD 1500
#define EPOLL_BATCH 256
#define DRAIN_BUDGET 8192 /* datagrams per pbx_engine_drain call, so the loop gets a turn */
#define PAUSE_S 0.25      /* a gap this long between own packets is a pause: marker, jump */
#define WHISPER_NOBODY (-2)

static const char keys[16] = {'1', '2', '3', 'A', '4', '5', '6', 'B',
                              '7', '8', '9', 'C', '*', '0', '#', 'D'};

/* ---- the per-stream media core ------------------------------------------------------------ */

struct pbx_engine_media {
    pbx_engine_media_config cfg;
    int32_t frame;              /* PCM samples per 20 ms */
    int32_t step;               /* RTP timestamp units per 20 ms */
    int32_t jb_dtmf_pt;         /* the telephone-event payload type as the jitter buffer knows it */
    pbx_jb_t *jb;
    int has_plc;
    pbx_plc plc;
    pbx_g722_state g722_dec, g722_enc;
    pbx_goertzel_det *det;      /* in-band detector; NULL when off */
    int held;                   /* digit index the detector holds, -1: none */
    int32_t held_frames;        /* frames it has been held */
    /* packet time (media_unit, pbx_engine_media_put): the newest packet, a waiting first half */
    int32_t half[8];            /* bytes of 10 ms per kind; 0: not split */
    int sp_has;
    uint32_t sp_ssrc;
    uint16_t sp_seq;
    int64_t sp_unit;
    int64_t sp_units;
    int64_t pend_unit;          /* -1: no first half waiting */
    uint32_t pend_ts;
    int pend_marker, pend_pt;
    uint32_t pend_ssrc;
    int32_t pend_len;
    uint8_t pend_payload[PBX_ENGINE_MAX_FRAME * 2]; /* half of a frame of L16 stereo at most */
    int32_t tx_units;           /* 10 ms units per packet we send (2: one frame per tick) */
    int32_t tx_len;             /* encoded audio waiting for a packet of tx_units */
    uint8_t tx_acc[2 * SEND_PAYLOAD];
};

#define MAX_UNITS 12              /* 10 ms units a packet may carry (120 ms); more: not split */
#define UNIT_BASE ((int64_t)1 << 24)

/* Banker's rounding of ms * rate / 1000, as Python's round() in pbx.rtp.jitter. */
static int32_t ms_samples(int32_t ms, int32_t rate)
{
    int64_t v = (int64_t)ms * rate, q = v / 1000, r = v % 1000;
    if (r > 500 || (r == 500 && (q & 1))) q++;
    return q > (1 << 30) ? (1 << 30) : (int32_t)q;
}

static int32_t frame_bytes(int kind, int32_t frame)
{
    switch (kind) {
    case PBX_ENGINE_KIND_PCMU:
    case PBX_ENGINE_KIND_PCMA: return frame;
    case PBX_ENGINE_KIND_G722: return frame / 2;
    case PBX_ENGINE_KIND_L16: return 2 * frame;
    case PBX_ENGINE_KIND_L16_STEREO: return 4 * frame;
    case PBX_ENGINE_KIND_EXTERNAL: return EXT_MAX_PAYLOAD / 2;
    default: return 0;
    }
}

/* The packet time we send with, in 10 ms units: cfg.ptime when the codec can be cut in 10 ms
 * pieces and the packet fits, else 20 ms (the twin of MediaCore._set_ptime). */
static void media_set_ptime(pbx_engine_media *m)
{
    int32_t half = m->half[m->cfg.send_kind & 7], p = m->cfg.ptime;
    m->tx_units = 2;
    if (half > 0 && p >= 10 && p <= 10 * MAX_UNITS && p % 10 == 0 && (p / 10) * half <= SEND_PAYLOAD)
        m->tx_units = p / 10;
    m->tx_len = 0;
}

pbx_engine_media *pbx_engine_media_new(const pbx_engine_media_config *cfg)
{
    if (cfg->sample_rate <= 0 || cfg->sample_rate % 50 || cfg->sample_rate / 50 > PBX_ENGINE_MAX_FRAME
        || cfg->clock_rate <= 0 || cfg->clock_rate % 50 || cfg->send_kind < PBX_ENGINE_KIND_PCMU
        || cfg->send_kind > PBX_ENGINE_KIND_EXTERNAL || cfg->jb_min < 0 || cfg->jb_max < 0
        || cfg->jb_start < 0) {
        errno = EINVAL;
        return NULL;
    }
    pbx_engine_media *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->cfg = *cfg;
    m->frame = cfg->sample_rate / 50;
    m->step = cfg->clock_rate / 50;
    m->jb_dtmf_pt = -1;
    for (int pt = 0; pt < 128; pt++)
        if (cfg->pt_kind[pt] == PBX_ENGINE_KIND_EVENT) {
            m->jb_dtmf_pt = pt;
            break;
        }
    int32_t maxp = 2 * frame_bytes(cfg->send_kind, m->frame) + 64;
    pbx_jb_config_t jc;
    memset(&jc, 0, sizeof jc);
    jc.clock_rate = cfg->clock_rate;
    jc.frame_samples = m->step;
    jc.min_delay = ms_samples(cfg->jb_min, cfg->clock_rate);
    jc.max_delay = ms_samples(cfg->jb_max, cfg->clock_rate);
    jc.start_delay = ms_samples(cfg->jb_start, cfg->clock_rate);
    jc.fixed_delay = cfg->jb_fixed < 0 ? -1 : ms_samples(cfg->jb_fixed, cfg->clock_rate);
    jc.capacity = 0;
    jc.max_payload = maxp < 256 ? 256 : maxp;
    jc.dtmf_pt = m->jb_dtmf_pt;
    m->jb = pbx_jb_new(&jc);
    if (!m->jb) {
        free(m);
        errno = ENOMEM;
        return NULL;
    }
    m->has_plc = cfg->send_kind != PBX_ENGINE_KIND_EXTERNAL
                 && pbx_plc_init(&m->plc, cfg->sample_rate) == 0;
    pbx_g722_init(&m->g722_dec);
    pbx_g722_init(&m->g722_enc);
    m->held = -1;
    int half_ok = m->step % 2 == 0 && m->frame % 2 == 0;
    for (int k = 0; k < 8; k++)
        m->half[k] = half_ok && k >= PBX_ENGINE_KIND_PCMU && k <= PBX_ENGINE_KIND_L16_STEREO
                         ? frame_bytes(k, m->frame) / 2 : 0;
    m->pend_unit = -1;
    media_set_ptime(m);
    return m;
}

void pbx_engine_media_free(pbx_engine_media *m)
{
    if (!m) return;
    pbx_jb_free(m->jb);
    free(m->det);
    free(m);
}

int pbx_engine_media_frame(const pbx_engine_media *m) { return m->frame; }

int pbx_engine_media_set_inband(pbx_engine_media *m, int on)
{
    if (!on) {
        free(m->det);
        m->det = NULL;
        m->held = -1;
        return 0;
    }
    if (m->det) return 0;
    pbx_goertzel_det *d = calloc(1, sizeof *d);
    if (!d) return -1;
    if (pbx_goertzel_init(d, m->cfg.sample_rate) != 0) {
        free(d);
        return -1;
    }
    m->det = d;
    m->held = -1;
    return 0;
}

/* 1 when every sample of a G.711 or L16 payload is below PBX_ENGINE_SILENCE_PEAK (so the jitter
 * buffer adapts its delay in the pauses), 0 when one is not, -1 when unknown (other codecs). */
int pbx_engine_silent_payload(int kind, const uint8_t *p, size_t len)
{
    const int32_t peak = PBX_ENGINE_SILENCE_PEAK;
    if (len == 0) return -1;
    switch (kind) {
    case PBX_ENGINE_KIND_PCMU:
        for (size_t i = 0; i < len; i++) { /* G.711 mu-law magnitude */
            int32_t u = (uint8_t)~p[i];
            int32_t t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4);
            if (t - 0x84 >= peak) return 0;
        }
        return 1;
    case PBX_ENGINE_KIND_PCMA:
        for (size_t i = 0; i < len; i++) { /* G.711 A-law magnitude */
            int32_t a = p[i] ^ 0x55, seg = (a & 0x70) >> 4, t = (a & 0x0F) << 4;
            t = seg == 0 ? t + 8 : seg == 1 ? t + 0x108 : (t + 0x108) << (seg - 1);
            if (t >= peak) return 0;
        }
        return 1;
    case PBX_ENGINE_KIND_L16:
    case PBX_ENGINE_KIND_L16_STEREO:
        if (len < 2) return -1;
        for (size_t i = 0; i + 1 < len; i += 2) {
            int32_t v = (int16_t)(uint16_t)((p[i] << 8) | p[i + 1]);
            if (v >= peak || -v >= peak) return 0;
        }
        return 1;
    default: return -1;
    }
}

/* The first 10 ms unit a packet carries, counted across packets of any size, so that each 20 ms
 * frame gets its own consecutive jitter-buffer slot (unit >> 1); for 20 ms packets the slot is
 * the sequence number. The twin of MediaCore._unit. */
static int64_t media_unit(pbx_engine_media *m, uint16_t seq, uint32_t ssrc, int64_t units)
{
    if (!m->sp_has || ssrc != m->sp_ssrc) {
        m->sp_has = 1;
        m->sp_ssrc = ssrc;
        m->sp_seq = seq;
        m->sp_unit = 2 * (int64_t)seq + UNIT_BASE;
        m->sp_units = units;
        return m->sp_unit;
    }
    int64_t d = (int16_t)(uint16_t)(seq - m->sp_seq);
    if (d > 0) {
        int64_t unit = m->sp_unit + m->sp_units + (d - 1) * units;
        m->sp_seq = seq;
        m->sp_unit = unit;
        m->sp_units = units;
        return unit;
    }
    return m->sp_unit + d * units;
}

static int media_put1(pbx_engine_media *m, int64_t unit, uint32_t ts, int marker, int pt,
                      const uint8_t *payload, size_t len, uint32_t ssrc, int64_t now_us, int kind)
{
    /* speech is flagged (the jitter buffer then never shrinks its delay inside it); a quiet
     * frame stays "unknown", not "silent": a loss right after it is a loss, not a pause (DTX) */
    int speech = pbx_engine_silent_payload(kind, payload, len) == 0;
    return pbx_jb_put(m->jb, (uint16_t)(unit >> 1), ts, marker, pt, payload, len, ssrc, now_us,
                      speech ? 0 : -1);
}

int pbx_engine_media_put(pbx_engine_media *m, const uint8_t *pkt, size_t len, int64_t now_us)
{
    pbx_rtp_hdr h;
    if (pbx_rtp_parse(pkt, len, &h) != PBX_RTP_OK) return -1;
    int pt = h.pt & 0x7f;
    int kind = m->cfg.pt_kind[pt];
    if (kind == PBX_ENGINE_KIND_NONE) return -1;
    const uint8_t *payload = pkt + h.payload_offset;
    size_t n = h.payload_len;
    int marker = h.marker ? 1 : 0;
    int32_t half = m->half[kind & 7];
    int64_t units = 2;
    if (half && n % (size_t)half == 0 && n > 0 && n / (size_t)half <= MAX_UNITS)
        units = (int64_t)(n / (size_t)half);
    else
        half = 0;
    int64_t unit = media_unit(m, h.seq, h.ssrc, units);
    if (kind == PBX_ENGINE_KIND_EVENT) { /* the caller takes the packet itself: the receiver */
        pbx_jb_frame_t f;                /* needs its own payload type */
        pbx_jb_put(m->jb, (uint16_t)(unit >> 1), h.ts, marker, m->jb_dtmf_pt, payload, n, h.ssrc,
                   now_us, -1);
        while (pbx_jb_pop_event(m->jb, &f)) {
        }
        return PBX_JB_EVENT;
    }
    if (!half) return media_put1(m, unit, h.ts, marker, pt, payload, n, h.ssrc, now_us, kind);
    int r = PBX_JB_ACCEPTED;
    uint32_t ustep = (uint32_t)(m->step / 2);
    int64_t k = 0;
    if (unit & 1) { /* the second half of a frame */
        if (m->pend_unit == unit - 1 && m->pend_ssrc == h.ssrc) {
            uint8_t joined[PBX_ENGINE_MAX_FRAME * 4];
            memcpy(joined, m->pend_payload, (size_t)m->pend_len);
            memcpy(joined + m->pend_len, payload, (size_t)half);
            r = media_put1(m, unit - 1, m->pend_ts, m->pend_marker, m->pend_pt, joined,
                           (size_t)(m->pend_len + half), h.ssrc, now_us, kind);
        }
        m->pend_unit = -1;
        k = 1;
    }
    for (; k + 1 < units; k += 2)
        r = media_put1(m, unit + k, h.ts + (uint32_t)k * ustep, k == 0 ? marker : 0, pt,
                       payload + k * half, (size_t)(2 * half), h.ssrc, now_us, kind);
    if (k < units) { /* a first half: wait for the second */
        m->pend_unit = unit + k;
        m->pend_ts = h.ts + (uint32_t)k * ustep;
        m->pend_marker = k == 0 ? marker : 0;
        m->pend_pt = pt;
        m->pend_ssrc = h.ssrc;
        m->pend_len = half;
        memcpy(m->pend_payload, payload + k * half, (size_t)half);
    }
    return r;
}

/* Decode one payload of a known kind into exactly one frame; 0 (nothing decoded) when the
 * payload is not one 20 ms frame of the stream's rate. */
static int decode(pbx_engine_media *m, int kind, const uint8_t *p, int32_t len, int16_t *out)
{
    int32_t n = m->frame;
    switch (kind) {
    case PBX_ENGINE_KIND_PCMU:
        if (len != n) return 0;
        pbx_ulaw_decode(p, out, (size_t)n);
        return 1;
    case PBX_ENGINE_KIND_PCMA:
        if (len != n) return 0;
        pbx_alaw_decode(p, out, (size_t)n);
        return 1;
    case PBX_ENGINE_KIND_G722:
        if (2 * len != n) return 0;
        pbx_g722_decode(&m->g722_dec, p, (size_t)len, out);
        return 1;
    case PBX_ENGINE_KIND_L16:
        if (len / 2 != n) return 0;
        for (int32_t i = 0; i < n; i++) out[i] = (int16_t)(uint16_t)((p[2 * i] << 8) | p[2 * i + 1]);
        return 1;
    case PBX_ENGINE_KIND_L16_STEREO:
        if (len / 4 != n) return 0;
        for (int32_t i = 0; i < n; i++) {
            int32_t a = (int16_t)(uint16_t)((p[4 * i] << 8) | p[4 * i + 1]);
            int32_t b = (int16_t)(uint16_t)((p[4 * i + 2] << 8) | p[4 * i + 3]);
            int32_t s = a + b;
            out[i] = (int16_t)(s >= 0 ? s / 2 : -((-s + 1) / 2)); /* floor, as numpy // */
        }
        return 1;
    default: return 0;
    }
}

static void inband(pbx_engine_media *m, const int16_t *pcm, pbx_engine_digit *dg)
{
    dg->digit = 0;
    dg->duration_ms = 0;
    if (!m->det) return;
    char found[8];
    size_t n = pbx_goertzel_feed(m->det, pcm, (size_t)m->frame, found, sizeof found);
    if (m->held >= 0 && (m->det->digit != m->held || n > 0)) {
        dg->digit = keys[m->held];
        dg->duration_ms = m->held_frames * 20;
        m->held = -1;
    }
    if (n > 0 && m->det->digit >= 0) {
        m->held = m->det->digit;
        m->held_frames = 0;
    }
    if (m->held >= 0) m->held_frames++;
}

static void conceal(pbx_engine_media *m, int16_t *pcm)
{
    if (m->has_plc)
        pbx_plc_missing(&m->plc, pcm, (size_t)m->frame);
    else
        memset(pcm, 0, (size_t)m->frame * sizeof *pcm);
}

int pbx_engine_media_rx(pbx_engine_media *m, int64_t now_us, int16_t *pcm, pbx_engine_digit *dg)
{
    pbx_jb_frame_t f;
    int res, r = pbx_jb_get(m->jb, now_us, &f);
    if (r == PBX_JB_FRAME
        && decode(m, m->cfg.pt_kind[f.payload_type & 0x7f], f.payload, f.len, pcm)) {
        if (m->has_plc) pbx_plc_good(&m->plc, pcm, pcm, (size_t)m->frame);
        res = PBX_ENGINE_RX_FRAME;
    } else if (r == PBX_JB_STARTUP || r == PBX_JB_GAP) {
        memset(pcm, 0, (size_t)m->frame * sizeof *pcm);
        res = PBX_ENGINE_RX_SILENCE;
    } else {
        conceal(m, pcm);
        res = PBX_ENGINE_RX_CONCEALED;
    }
    inband(m, pcm, dg);
    return res;
}

int pbx_engine_media_encode(pbx_engine_media *m, const int16_t *pcm, uint8_t *out)
{
    int32_t n = m->frame;
    switch (m->cfg.send_kind) {
    case PBX_ENGINE_KIND_PCMU: pbx_ulaw_encode(pcm, out, (size_t)n); return n;
    case PBX_ENGINE_KIND_PCMA: pbx_alaw_encode(pcm, out, (size_t)n); return n;
    case PBX_ENGINE_KIND_G722: return (int)pbx_g722_encode(&m->g722_enc, pcm, (size_t)n, out);
    case PBX_ENGINE_KIND_L16:
        for (int32_t i = 0; i < n; i++) {
            out[2 * i] = (uint8_t)((uint16_t)pcm[i] >> 8);
            out[2 * i + 1] = (uint8_t)pcm[i];
        }
        return 2 * n;
    case PBX_ENGINE_KIND_L16_STEREO:
        for (int32_t i = 0; i < n; i++) {
            out[4 * i] = out[4 * i + 2] = (uint8_t)((uint16_t)pcm[i] >> 8);
            out[4 * i + 1] = out[4 * i + 3] = (uint8_t)pcm[i];
        }
        return 4 * n;
    default: return 0;
    }
}

void pbx_engine_media_jitter(const pbx_engine_media *m, int64_t *out)
{
    pbx_jb_stats_t s;
    pbx_jb_get_stats(m->jb, &s);
    int64_t v[16] = {s.received, s.played,    s.late,     s.lost,       s.discarded, s.duplicated,
                     s.reordered, s.events,   s.concealed, s.inserted,  s.removed,   s.underflows,
                     s.resyncs,  s.buffered, s.current_delay, s.target_delay};
    memcpy(out, v, sizeof v);
}

/* ---- engine state --------------------------------------------------------------------------- */

typedef struct {
    uint8_t kind;           /* PBX_ENGINE_ENTRY_* */
    uint8_t marker;
    uint8_t len;
    uint32_t ts_off;
    uint8_t payload[16];
} ring_entry;

typedef struct pbx_engine_stream {
    int slot;
    int fd;
    int rtcp_fd;
    pbx_engine_rx rx;
    pbx_engine_tx tx;
    pbx_engine_counters c;
    struct sockaddr_storage remote_sa; /* rx.remote as a sockaddr, to send to */
    socklen_t remote_salen;
    int relay;        /* slot of the relay partner, or -1 */
    int has_pt_map;   /* relayed packets from here get pt_map[pt] out of the partner */
    double timeout;   /* seconds without accepted packets before an RTP timeout event */
    double last_rx;   /* last accepted packet (or when the timeout was armed) */
    int timed_out;    /* event sent; re-armed by the next accepted packet */
    /* cold: read per packet only when has_pt_map (kept off the relay path's cache lines) */
    uint8_t pt_map[128];
    /* receiver statistics of the peer's source (terminated streams), for RTCP report blocks */
    int rs_has;
    uint32_t rs_ssrc;
    pbx_rtp_seq_t rs;
    pbx_rtp_jitter_t rj;
    /* terminated streams */
    pbx_engine_media *media;
    int frame;                  /* PCM samples per frame (0 without media) */
    int external;
    int16_t *rx_pcm, *tx_pcm;   /* this tick's frames */
    /* playout ring */
    ring_entry ring[PBX_ENGINE_RING];
    int16_t *ring_pcm;          /* PBX_ENGINE_RING frames, allocated on the first push */
    int ring_head, ring_count;
    uint64_t consumed;
    int want_feed, on_feed_list;
    uint32_t te_ts;             /* timestamp of the telephone-event being sent */
    /* recording taps: frame i of each direction at tap_rx/tap_tx + i * frame */
    int tap_mode;
    int16_t *tap_rx, *tap_tx;
    int tap_n;
    /* conference */
    int conf;                   /* id, or -1 */
    int conf_idx;               /* position among the members */
    int conf_flags;
    int whisper_to;             /* slot, -1 nobody in particular, WHISPER_NOBODY */
    pbx_resampler *up, *down;   /* stream rate <-> conference rate (NULL when equal) */
    int16_t *conf_in, *conf_out;
    int conf_in_valid, conf_heard;
    /* external codec */
    int ext_code, ext_len, ext_tx_ready;
    uint8_t *ext_buf;
} pbx_engine_stream;

typedef struct {
    int used;
    int rate, frame;
    int n, cap;
    int *members;               /* slots, in the order of the mix rows */
    const int16_t **in;
    int16_t **out;
    uint8_t *flags;
    int32_t *whisper;
    int32_t *work;
    int tap_on;
    int16_t *tap;               /* PBX_ENGINE_TAP_FRAMES frames */
    int16_t *tap_frame;
    int tap_n;
} pbx_engine_conf;

struct pbx_engine {
    int epfd;
    pbx_engine_stream **slots;
    int cap;
    int *free_slots;
    int nfree;
    pbx_engine_event *events;
    int max_events;
    int ev_head;
    int ev_count;
    pbx_engine_totals totals;
    pbx_engine_conf *confs;
    int nconfs;
    int *feed;                  /* slots wanting frames (cap entries) */
    int nfeed;
    int *ext;                   /* external streams of this tick */
    int next;
    struct timespec tick_start;
    uint8_t buf[PKT_BUF];
    uint8_t sendbuf[SEND_BUF];
    /* RTCP of terminated streams, waiting for Python (one PBX_ENGINE_EV_RTCP event each) */
    uint64_t rtcp_head;
    int rtcp_unread;
    int32_t rtcp_len[PBX_ENGINE_RTCP_RING];
    uint8_t rtcp_buf[PBX_ENGINE_RTCP_RING][PBX_ENGINE_RTCP_MAX];
};

/* ---- pure kernels ------------------------------------------------------------------------ */

static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }

static inline uint32_t rd32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline void wr16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static inline void wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

int pbx_engine_rtp_check(const uint8_t *pkt, size_t len)
{
    if (len < 4 || (pkt[0] >> 6) != 2) return PBX_ENGINE_MALFORMED;
    if (pbx_rtp_is_rtcp(pkt, len)) /* RTCP packet types 192-223 (RFC 5761 section 4) */
        return (len >= 8 && len % 4 == 0) ? PBX_ENGINE_RTCP : PBX_ENGINE_MALFORMED;
    pbx_rtp_hdr h;
    return pbx_rtp_parse(pkt, len, &h) == PBX_RTP_OK ? PBX_ENGINE_RTP : PBX_ENGINE_MALFORMED;
}

static inline int addr_eq(const pbx_engine_addr *a, const pbx_engine_addr *b)
{
    return a->port == b->port && a->family == b->family && memcmp(a->ip, b->ip, 16) == 0;
}

int pbx_engine_rx_verdict(pbx_engine_rx *rx, const pbx_engine_addr *src, uint32_t ssrc,
                          uint16_t seq, uint8_t pt)
{
    pt &= 0x7f;
    if (rx->pt_filter && !(rx->pt_mask[pt >> 3] & (1u << (pt & 7)))) return PBX_ENGINE_DROP_PT;
    if (rx->has_remote && addr_eq(src, &rx->remote)) return PBX_ENGINE_ACCEPT;
    if (rx->latch_n <= 0) return PBX_ENGINE_DROP_SOURCE;
    if (rx->cand_count > 0 && addr_eq(src, &rx->cand) && ssrc == rx->cand_ssrc
        && seq == (uint16_t)(rx->cand_seq + 1)) {
        rx->cand_count++;
        rx->cand_seq = seq;
    } else {
        rx->cand = *src;
        rx->cand_ssrc = ssrc;
        rx->cand_seq = seq;
        rx->cand_count = 1;
    }
    if (rx->cand_count >= rx->latch_n) {
        rx->remote = rx->cand;
        rx->has_remote = 1;
        rx->cand_count = 0;
        return PBX_ENGINE_LATCHED;
    }
    return PBX_ENGINE_DROP_SOURCE;
}

void pbx_engine_tx_init(pbx_engine_tx *tx, uint32_t ssrc, uint16_t seq0, uint32_t ts0,
                        uint32_t clock_rate)
{
    memset(tx, 0, sizeof *tx);
    tx->ssrc = ssrc;
    tx->clock_rate = clock_rate ? clock_rate : 8000;
    tx->seq = (uint16_t)(seq0 - 1); /* the first anchor maps the first packet to seq0, ts0 */
    tx->ts = ts0;
    tx->ts_step = tx->clock_rate / 50;
}

/* Timestamp units since the last packet sent, at least min. */
static uint32_t elapsed_units(const pbx_engine_tx *tx, double now, uint32_t min)
{
    double x = (now - tx->sent_at) * (double)tx->clock_rate;
    x = x + 0.5;
    uint64_t g = x <= 0.0 ? 0 : x >= 1e18 ? (uint64_t)1e18 : (uint64_t)x;
    if (g < min) g = min;
    return (uint32_t)g;
}

void pbx_engine_tx_rewrite(pbx_engine_tx *tx, uint8_t *pkt, double now)
{
    uint16_t in_seq = rd16(pkt + 2);
    uint32_t in_ts = rd32(pkt + 4);
    uint32_t in_ssrc = rd32(pkt + 8);
    int same = 0;
    if (tx->synced && !tx->resync && in_ssrc == tx->in_ssrc) {
        int d = (int16_t)(uint16_t)(in_seq - tx->in_seq);
        if (d >= -RTP_MAX_MISORDER && d < RTP_MAX_DROPOUT) {
            same = 1;
            if (d > 0) {
                uint32_t step = in_ts - tx->in_ts;
                if (d == 1 && step != 0 && step <= tx->clock_rate) tx->ts_step = step;
                tx->in_seq = in_seq;
                tx->in_ts = in_ts;
            }
        }
    }
    if (!same) { /* new source: continue our sequence space right after what we last sent */
        /* the time since our last packet, at least one packet's worth */
        uint32_t gap = tx->has_sent ? elapsed_units(tx, now, tx->ts_step) : 0;
        tx->seq_off = (uint16_t)(tx->seq + 1 - in_seq);
        tx->ts_off = tx->ts + gap - in_ts;
        tx->in_ssrc = in_ssrc;
        tx->in_seq = in_seq;
        tx->in_ts = in_ts;
        tx->synced = 1;
        tx->resync = 0;
        pkt[1] |= 0x80; /* marker: the receiver's playout should resynchronise here */
    }
    uint16_t out_seq = (uint16_t)(in_seq + tx->seq_off);
    uint32_t out_ts = in_ts + tx->ts_off;
    if (!tx->has_sent || (int16_t)(uint16_t)(out_seq - tx->seq) > 0) {
        tx->seq = out_seq;
        tx->ts = out_ts;
        tx->sent_at = now;
        tx->has_sent = 1;
    }
    tx->local = 0;
    wr16(pkt + 2, out_seq);
    wr32(pkt + 4, out_ts);
    wr32(pkt + 8, tx->ssrc);
}

int pbx_engine_tx_next(pbx_engine_tx *tx, uint32_t step, double now, uint16_t *seq,
                       uint32_t *ts)
{
    int marker = 0;
    uint32_t t = tx->ts;
    if (!tx->has_sent) {
        marker = 1;
    } else if (tx->local && now - tx->sent_at < PAUSE_S) {
        t += step;
    } else { /* after relayed packets or a pause: continue by the time that passed */
        t += elapsed_units(tx, now, step);
        marker = 1;
    }
    tx->seq = (uint16_t)(tx->seq + 1);
    tx->ts = t;
    tx->sent_at = now;
    tx->has_sent = 1;
    tx->local = 1;
    tx->resync = 1; /* relayed packets after these re-anchor */
    *seq = tx->seq;
    *ts = t;
    return marker;
}

/* ---- engine --------------------------------------------------------------------------------- */

pbx_engine *pbx_engine_new(int max_events)
{
    pbx_engine *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    e->max_events = max_events > 0 ? max_events : 4096;
    e->events = calloc((size_t)e->max_events, sizeof *e->events);
    e->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (!e->events || e->epfd < 0) {
        int err = errno;
        if (e->epfd >= 0) close(e->epfd);
        free(e->events);
        free(e);
        errno = err ? err : ENOMEM;
        return NULL;
    }
    return e;
}

static void conf_release(pbx_engine_conf *c)
{
    free(c->members);
    free(c->in);
    free(c->out);
    free(c->flags);
    free(c->whisper);
    free(c->work);
    free(c->tap);
    free(c->tap_frame);
    memset(c, 0, sizeof *c);
}

static void stream_free(pbx_engine_stream *s)
{
    if (!s) return;
    pbx_engine_media_free(s->media);
    free(s->rx_pcm);
    free(s->tx_pcm);
    free(s->ring_pcm);
    free(s->tap_rx);
    free(s->tap_tx);
    pbx_resample_free(s->up);
    pbx_resample_free(s->down);
    free(s->conf_in);
    free(s->conf_out);
    free(s->ext_buf);
    free(s);
}

void pbx_engine_free(pbx_engine *e)
{
    if (!e) return;
    for (int i = 0; i < e->cap; i++) stream_free(e->slots[i]);
    for (int i = 0; i < e->nconfs; i++) conf_release(&e->confs[i]);
    free(e->confs);
    free(e->slots);
    free(e->free_slots);
    free(e->feed);
    free(e->ext);
    free(e->events);
    close(e->epfd);
    free(e);
}

int pbx_engine_fd(const pbx_engine *e) { return e->epfd; }

static pbx_engine_stream *get(const pbx_engine *e, int slot)
{
    return (slot >= 0 && slot < e->cap) ? e->slots[slot] : NULL;
}

static pbx_engine_event *emit(pbx_engine *e, int kind, int slot, double at,
                              const pbx_engine_addr *addr)
{
    if (e->ev_count >= e->max_events) {
        e->totals.events_lost++;
        return NULL;
    }
    pbx_engine_event *ev = &e->events[(e->ev_head + e->ev_count) % e->max_events];
    e->ev_count++;
    memset(ev, 0, sizeof *ev);
    ev->kind = kind;
    ev->slot = slot;
    ev->at = at;
    if (addr) ev->addr = *addr;
    return ev;
}

static int grow(pbx_engine *e)
{
    int cap = e->cap ? e->cap * 2 : 64;
    pbx_engine_stream **slots = realloc(e->slots, (size_t)cap * sizeof *slots);
    if (!slots) return -1;
    e->slots = slots;
    int *fs = realloc(e->free_slots, (size_t)cap * sizeof *fs);
    if (!fs) return -1;
    e->free_slots = fs;
    int *feed = realloc(e->feed, (size_t)cap * sizeof *feed);
    if (!feed) return -1;
    e->feed = feed;
    int *ext = realloc(e->ext, (size_t)cap * sizeof *ext);
    if (!ext) return -1;
    e->ext = ext;
    for (int i = cap - 1; i >= e->cap; i--) { /* lowest slot handed out first */
        slots[i] = NULL;
        fs[e->nfree++] = i;
    }
    e->cap = cap;
    return 0;
}

static int watch(pbx_engine *e, int fd, uint64_t data)
{
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN;
    ev.data.u64 = data;
    return epoll_ctl(e->epfd, EPOLL_CTL_ADD, fd, &ev);
}

int pbx_engine_stream_add(pbx_engine *e, int fd, int rtcp_fd, uint32_t ssrc, uint16_t seq0,
                          uint32_t ts0)
{
    if (e->nfree == 0 && grow(e) < 0) return -1;
    pbx_engine_stream *s = calloc(1, sizeof *s);
    if (!s) return -1;
    int slot = e->free_slots[e->nfree - 1];
    s->slot = slot;
    s->fd = fd;
    s->rtcp_fd = rtcp_fd;
    s->relay = -1;
    s->conf = -1;
    s->whisper_to = -1;
    pbx_engine_tx_init(&s->tx, ssrc, seq0, ts0, 8000);
    if (watch(e, fd, (uint64_t)slot << 1) < 0) {
        free(s);
        return -1;
    }
    if (rtcp_fd >= 0 && watch(e, rtcp_fd, ((uint64_t)slot << 1) | 1) < 0) {
        int err = errno;
        epoll_ctl(e->epfd, EPOLL_CTL_DEL, fd, NULL);
        free(s);
        errno = err;
        return -1;
    }
    e->nfree--;
    e->slots[slot] = s;
    return slot;
}

int pbx_engine_unrelay(pbx_engine *e, int slot)
{
    pbx_engine_stream *s = get(e, slot);
    if (!s) return -1;
    pbx_engine_stream *p = get(e, s->relay);
    if (p) {
        p->relay = -1;
        p->has_pt_map = 0;
    }
    s->relay = -1;
    s->has_pt_map = 0;
    return 0;
}

int pbx_engine_stream_remove(pbx_engine *e, int slot)
{
    pbx_engine_stream *s = get(e, slot);
    if (!s) return -1;
    pbx_engine_unrelay(e, slot);
    pbx_engine_conf_leave(e, slot);
    epoll_ctl(e->epfd, EPOLL_CTL_DEL, s->fd, NULL);
    if (s->rtcp_fd >= 0) epoll_ctl(e->epfd, EPOLL_CTL_DEL, s->rtcp_fd, NULL);
    for (int i = 0; i < e->nfeed; i++) /* not on the feed list any more */
        if (e->feed[i] == slot) e->feed[i] = -1;
    stream_free(s);
    e->slots[slot] = NULL;
    e->free_slots[e->nfree++] = slot;
    return 0;
}

static void addr_to_sa(const pbx_engine_addr *a, struct sockaddr_storage *sa, socklen_t *len)
{
    memset(sa, 0, sizeof *sa);
    if (a->family == 6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)sa;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(a->port);
        memcpy(&s6->sin6_addr, a->ip, 16);
        *len = sizeof *s6;
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)sa;
        s4->sin_family = AF_INET;
        s4->sin_port = htons(a->port);
        memcpy(&s4->sin_addr, a->ip, 4);
        *len = sizeof *s4;
    }
}

static void sa_to_addr(const struct sockaddr_storage *sa, pbx_engine_addr *a)
{
    memset(a, 0, sizeof *a);
    if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        a->family = 6;
        a->port = ntohs(s6->sin6_port);
        memcpy(a->ip, &s6->sin6_addr, 16);
    } else if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        a->family = 4;
        a->port = ntohs(s4->sin_port);
        memcpy(a->ip, &s4->sin_addr, 4);
    }
}

/* The relay partner's send side must re-anchor: the packets it carries come from a new source. */
static void partner_resync(pbx_engine *e, pbx_engine_stream *s)
{
    pbx_engine_stream *p = get(e, s->relay);
    if (p) p->tx.resync = 1;
}

static void set_clock_rate(pbx_engine_tx *tx, uint32_t clock_rate)
{
    if (clock_rate && clock_rate != tx->clock_rate) {
        tx->clock_rate = clock_rate;
        tx->ts_step = clock_rate / 50;
    }
}

int pbx_engine_stream_set_remote(pbx_engine *e, int slot, const pbx_engine_addr *remote,
                                 const uint8_t *pt_mask, uint32_t clock_rate, int latch_n,
                                 double timeout, double now)
{
    pbx_engine_stream *s = get(e, slot);
    if (!s || (remote->family != 4 && remote->family != 6)) return -1;
    pbx_engine_rx *rx = &s->rx;
    rx->remote = *remote;
    rx->has_remote = 1;
    rx->latch_n = latch_n > 0 ? latch_n : 0;
    rx->cand_count = 0;
    rx->pt_filter = pt_mask != NULL;
    if (pt_mask) memcpy(rx->pt_mask, pt_mask, 16);
    addr_to_sa(remote, &s->remote_sa, &s->remote_salen);
    set_clock_rate(&s->tx, clock_rate);
    s->timeout = timeout;
    s->last_rx = now;
    s->timed_out = 0;
    partner_resync(e, s);
    return 0;
}

int pbx_engine_stream_set_timeout(pbx_engine *e, int slot, double timeout, double now)
{
    pbx_engine_stream *s = get(e, slot);
    if (!s) return -1;
    s->timeout = timeout;
    s->last_rx = now;
    s->timed_out = 0;
    return 0;
}

int pbx_engine_stream_counters(const pbx_engine *e, int slot, pbx_engine_counters *out)
{
    pbx_engine_stream *s = get(e, slot);
    if (!s) return -1;
    *out = s->c;
    return 0;
}

int pbx_engine_stream_remote(const pbx_engine *e, int slot, pbx_engine_addr *out)
{
    pbx_engine_stream *s = get(e, slot);
    if (!s || !s->rx.has_remote) return -1;
    *out = s->rx.remote;
    return 0;
}

int pbx_engine_relay(pbx_engine *e, int a, int b, const uint8_t *pt_map_ab,
                     const uint8_t *pt_map_ba)
{
    pbx_engine_stream *sa = get(e, a), *sb = get(e, b);
    if (!sa || !sb || a == b || sa->relay >= 0 || sb->relay >= 0) return -1;
    sa->relay = b;
    sb->relay = a;
    sa->tx.resync = 1;
    sb->tx.resync = 1;
    sa->has_pt_map = pt_map_ab != NULL;
    if (pt_map_ab)
        for (int i = 0; i < 128; i++) sa->pt_map[i] = pt_map_ab[i] & 0x7f;
    sb->has_pt_map = pt_map_ba != NULL;
    if (pt_map_ba)
        for (int i = 0; i < 128; i++) sb->pt_map[i] = pt_map_ba[i] & 0x7f;
    return 0;
}

/* ---- conferences ------------------------------------------------------------------------- */

static pbx_engine_conf *conf_get(const pbx_engine *e, int id)
{
    return (id >= 0 && id < e->nconfs && e->confs[id].used) ? &e->confs[id] : NULL;
}

static int stream_rate(const pbx_engine_stream *s)
{
    return s->media ? s->media->cfg.sample_rate : 0;
}

/* (Re)build a member's conference buffers and resamplers for its current media. */
static int conf_io(pbx_engine *e, pbx_engine_stream *s)
{
    pbx_engine_conf *c = conf_get(e, s->conf);
    pbx_resample_free(s->up);
    pbx_resample_free(s->down);
    s->up = s->down = NULL;
    if (!c) return 0;
    if (!s->conf_in) s->conf_in = calloc((size_t)c->frame, sizeof *s->conf_in);
    if (!s->conf_out) s->conf_out = calloc((size_t)c->frame, sizeof *s->conf_out);
    if (!s->conf_in || !s->conf_out) return -1;
    int rate = stream_rate(s);
    if (rate && rate != c->rate) {
        s->up = pbx_resample_new(rate, c->rate);
        s->down = pbx_resample_new(c->rate, rate);
        if (!s->up || !s->down) return -1;
    }
    return 0;
}

int pbx_engine_conf_new(pbx_engine *e, int rate)
{
    if (rate <= 0 || rate % 50 || rate / 50 > PBX_ENGINE_MAX_FRAME) return -1;
    int id = -1;
    for (int i = 0; i < e->nconfs; i++)
        if (!e->confs[i].used) {
            id = i;
            break;
        }
    if (id < 0) {
        pbx_engine_conf *cs = realloc(e->confs, (size_t)(e->nconfs + 1) * sizeof *cs);
        if (!cs) return -1;
        e->confs = cs;
        id = e->nconfs++;
        memset(&cs[id], 0, sizeof cs[id]);
    }
    pbx_engine_conf *c = &e->confs[id];
    c->used = 1;
    c->rate = rate;
    c->frame = rate / 50;
    c->tap_frame = calloc((size_t)c->frame, sizeof *c->tap_frame);
    if (!c->tap_frame) {
        conf_release(c);
        return -1;
    }
    return id;
}

int pbx_engine_conf_free(pbx_engine *e, int id)
{
    pbx_engine_conf *c = conf_get(e, id);
    if (!c) return -1;
    while (c->n > 0) pbx_engine_conf_leave(e, c->members[c->n - 1]);
    conf_release(c);
    return 0;
}

static int conf_reserve(pbx_engine_conf *c, int n)
{
    if (n <= c->cap) return 0;
    int cap = c->cap ? c->cap * 2 : 8;
    while (cap < n) cap *= 2;
    int *members = realloc(c->members, (size_t)cap * sizeof *members);
    if (!members) return -1;
    c->members = members;
    /* the mix rows: members plus one listener for the recording tap */
    const int16_t **in = realloc(c->in, (size_t)(cap + 1) * sizeof *in);
    if (!in) return -1;
    c->in = in;
    int16_t **out = realloc(c->out, (size_t)(cap + 1) * sizeof *out);
    if (!out) return -1;
    c->out = out;
    uint8_t *flags = realloc(c->flags, (size_t)(cap + 1));
    if (!flags) return -1;
    c->flags = flags;
    int32_t *wh = realloc(c->whisper, (size_t)(cap + 1) * sizeof *wh);
    if (!wh) return -1;
    c->whisper = wh;
    int32_t *work = realloc(c->work, (size_t)PBX_MIX_WORK_INTS(cap + 1) * sizeof *work);
    if (!work) return -1;
    c->work = work;
    c->cap = cap;
    return 0;
}

int pbx_engine_conf_join(pbx_engine *e, int id, int slot, int flags)
{
    pbx_engine_conf *c = conf_get(e, id);
    pbx_engine_stream *s = get(e, slot);
    if (!c || !s || s->conf >= 0 || c->n >= PBX_MIX_MAX_PARTIES - 1) return -1;
    if (conf_reserve(c, c->n + 1) < 0) return -1;
    s->conf = id;
    if (conf_io(e, s) < 0) {
        s->conf = -1;
        return -1;
    }
    memset(s->conf_in, 0, (size_t)c->frame * sizeof *s->conf_in);
    s->conf_idx = c->n;
    s->conf_flags = flags & (PBX_ENGINE_CONF_MUTED | PBX_ENGINE_CONF_DEAF);
    s->whisper_to = -1;
    s->conf_in_valid = 0;
    s->conf_heard = 0;
    c->members[c->n++] = slot;
    return 0;
}

int pbx_engine_conf_leave(pbx_engine *e, int slot)
{
    pbx_engine_stream *s = get(e, slot);
    if (!s || s->conf < 0) return -1;
    pbx_engine_conf *c = conf_get(e, s->conf);
    if (c) {
        int last = c->members[--c->n];
        if (last != slot) {
            c->members[s->conf_idx] = last;
            e->slots[last]->conf_idx = s->conf_idx;
        }
    }
    s->conf = -1;
    s->whisper_to = -1;
    pbx_resample_free(s->up);
    pbx_resample_free(s->down);
    s->up = s->down = NULL;
    free(s->conf_in);
    free(s->conf_out);
    s->conf_in = s->conf_out = NULL;
    s->conf_in_valid = s->conf_heard = 0;
    return 0;
}

int pbx_engine_conf_set(pbx_engine *e, int slot, int flags, int whisper_to)
{
    pbx_engine_stream *s = get(e, slot);
    if (!s || s->conf < 0 || whisper_to == slot || whisper_to < WHISPER_NOBODY) return -1;
    s->conf_flags = flags & (PBX_ENGINE_CONF_MUTED | PBX_ENGINE_CONF_DEAF);
    s->whisper_to = whisper_to;
    return 0;
}

int pbx_engine_conf_tap(pbx_engine *e, int id, int on)
{
    pbx_engine_conf *c = conf_get(e, id);
    if (!c) return -1;
    if (on && !c->tap) {
        c->tap = calloc((size_t)PBX_ENGINE_TAP_FRAMES * (size_t)c->frame, sizeof *c->tap);
        if (!c->tap) return -1;
    }
    if (!on) {
        free(c->tap);
        c->tap = NULL;
    }
    c->tap_on = on != 0;
    c->tap_n = 0;
    return 0;
}

int pbx_engine_conf_tap_read(pbx_engine *e, int id, int16_t *out, int max)
{
    pbx_engine_conf *c = conf_get(e, id);
    if (!c || !c->tap) return -1;
    int n = c->tap_n < max ? c->tap_n : max;
    size_t fb = (size_t)c->frame * sizeof(int16_t);
    memcpy(out, c->tap, (size_t)n * fb);
    memmove(c->tap, c->tap + (size_t)n * (size_t)c->frame, (size_t)(c->tap_n - n) * fb);
    c->tap_n -= n;
    return n;
}

static void conf_mix(pbx_engine *e, int id, pbx_engine_conf *c)
{
    int n = c->n, nw = 0;
    for (int i = 0; i < n; i++) {
        pbx_engine_stream *s = e->slots[c->members[i]];
        int f = s->conf_flags;
        c->in[i] = s->conf_in_valid ? s->conf_in : NULL;
        c->flags[i] = (uint8_t)f;
        s->conf_heard = !(f & PBX_ENGINE_CONF_DEAF) && s->media != NULL;
        c->out[i] = s->conf_heard ? s->conf_out : NULL;
        int32_t w = -1;
        if (s->whisper_to != -1) {
            pbx_engine_stream *t = get(e, s->whisper_to);
            w = (t && t->conf == id) ? t->conf_idx : INT32_MAX; /* out of range: nobody */
            nw++;
        }
        c->whisper[i] = w;
    }
    int rows = n;
    if (c->tap_on) { /* a listener that contributes nothing hears everyone */
        c->in[n] = NULL;
        c->out[n] = c->tap_frame;
        c->flags[n] = PBX_MIX_MUTED;
        c->whisper[n] = -1;
        rows++;
    }
    if (rows == 0) return;
    pbx_mix_ptrs(c->in, c->out, c->flags, nw ? c->whisper : NULL, (size_t)rows,
                 (size_t)c->frame, c->work);
    if (c->tap_on) {
        if (c->tap_n < PBX_ENGINE_TAP_FRAMES) {
            memcpy(c->tap + (size_t)c->tap_n * (size_t)c->frame, c->tap_frame,
                   (size_t)c->frame * sizeof(int16_t));
            c->tap_n++;
        } else {
            e->totals.tap_lost++;
        }
    }
}

/* ---- terminated streams ------------------------------------------------------------------ */

static int ring_alloc(pbx_engine_stream *s)
{
    if (s->ring_pcm) return 0;
    s->ring_pcm = calloc((size_t)PBX_ENGINE_RING * (size_t)s->frame, sizeof(int16_t));
    return s->ring_pcm ? 0 : -1;
}

int pbx_engine_play_flush(pbx_engine *e, int slot)
{
    pbx_engine_stream *s = get(e, slot);
    if (!s) return -1;
    int n = s->ring_count;
    s->consumed += (uint64_t)n;
    s->ring_count = 0;
    s->ring_head = 0;
    return n;
}

static int tap_alloc(pbx_engine_stream *s)
{
    size_t n = (size_t)PBX_ENGINE_TAP_FRAMES * (size_t)s->frame;
    free(s->tap_rx);
    free(s->tap_tx);
    s->tap_rx = s->tap_tx = NULL;
    s->tap_n = 0;
    if (!s->tap_mode || !s->frame) return 0;
    if (s->tap_mode & PBX_ENGINE_TAP_RX) s->tap_rx = calloc(n, sizeof(int16_t));
    if (s->tap_mode & PBX_ENGINE_TAP_TX) s->tap_tx = calloc(n, sizeof(int16_t));
    if (((s->tap_mode & PBX_ENGINE_TAP_RX) && !s->tap_rx)
        || ((s->tap_mode & PBX_ENGINE_TAP_TX) && !s->tap_tx))
        return -1;
    return 0;
}

int pbx_engine_stream_set_media(pbx_engine *e, int slot, const pbx_engine_media_config *cfg)
{
    pbx_engine_stream *s = get(e, slot);
    if (!s) return -1;
    pbx_engine_media *old = s->media;
    if (!cfg) {
        pbx_engine_play_flush(e, slot);
        pbx_engine_media_free(old);
        s->media = NULL;
        s->frame = 0;
        s->external = 0;
        free(s->ring_pcm);
        s->ring_pcm = NULL;
        tap_alloc(s);
        conf_io(e, s);
        return 0;
    }
    if (old && old->cfg.send_kind == cfg->send_kind && old->cfg.sample_rate == cfg->sample_rate
        && old->cfg.clock_rate == cfg->clock_rate && old->cfg.jb_min == cfg->jb_min
        && old->cfg.jb_max == cfg->jb_max && old->cfg.jb_start == cfg->jb_start
        && old->cfg.jb_fixed == cfg->jb_fixed) {
        int dtmf_pt = -1; /* same codec: keep the jitter buffer and codec state */
        for (int pt = 0; pt < 128 && dtmf_pt < 0; pt++)
            if (cfg->pt_kind[pt] == PBX_ENGINE_KIND_EVENT) dtmf_pt = pt;
        if (dtmf_pt == old->jb_dtmf_pt) {
            int32_t ptime = old->cfg.ptime;
            old->cfg = *cfg;
            if (cfg->ptime != ptime) media_set_ptime(old);
            set_clock_rate(&s->tx, (uint32_t)cfg->clock_rate);
            return s->frame;
        }
    }
    pbx_engine_media *m = pbx_engine_media_new(cfg);
    if (!m) return -1;
    int inband_on = old && old->det;
    int frame = m->frame;
    if (inband_on && pbx_engine_media_set_inband(m, 1) < 0) {
        pbx_engine_media_free(m);
        return -1;
    }
    int16_t *rx = calloc((size_t)frame, sizeof *rx), *tx = calloc((size_t)frame, sizeof *tx);
    uint8_t *ext = cfg->send_kind == PBX_ENGINE_KIND_EXTERNAL ? malloc(EXT_MAX_PAYLOAD) : NULL;
    if (!rx || !tx || (cfg->send_kind == PBX_ENGINE_KIND_EXTERNAL && !ext)) {
        free(rx);
        free(tx);
        free(ext);
        pbx_engine_media_free(m);
        return -1;
    }
    pbx_engine_media_free(old);
    free(s->rx_pcm);
    free(s->tx_pcm);
    free(s->ext_buf);
    s->media = m;
    s->rx_pcm = rx;
    s->tx_pcm = tx;
    s->ext_buf = ext;
    s->external = cfg->send_kind == PBX_ENGINE_KIND_EXTERNAL;
    s->ext_tx_ready = 0;
    if (frame != s->frame) { /* queued frames and taps are of the old size */
        pbx_engine_play_flush(e, slot);
        free(s->ring_pcm);
        s->ring_pcm = NULL;
        s->frame = frame;
        if (tap_alloc(s) < 0) s->tap_mode = 0;
    }
    s->frame = frame;
    set_clock_rate(&s->tx, (uint32_t)cfg->clock_rate);
    if (s->conf >= 0 && conf_io(e, s) < 0) pbx_engine_conf_leave(e, slot);
    return frame;
}

int pbx_engine_stream_set_inband(pbx_engine *e, int slot, int on)
{
    pbx_engine_stream *s = get(e, slot);
    if (!s || !s->media) return -1;
    return pbx_engine_media_set_inband(s->media, on);
}

int pbx_engine_stream_jitter(const pbx_engine *e, int slot, int64_t *out)
{
    pbx_engine_stream *s = get(e, slot);
    if (!s || !s->media) return -1;
    pbx_engine_media_jitter(s->media, out);
    return 0;
}

int pbx_engine_play_push(pbx_engine *e, int slot, const int16_t *pcm, int frames)
{
    pbx_engine_stream *s = get(e, slot);
    if (!s || !s->media || ring_alloc(s) < 0) return -1;
    int n = 0;
    while (n < frames && s->ring_count < PBX_ENGINE_RING) {
        int i = (s->ring_head + s->ring_count) % PBX_ENGINE_RING;
        s->ring[i].kind = PBX_ENGINE_ENTRY_PCM;
        memcpy(s->ring_pcm + (size_t)i * (size_t)s->frame, pcm + (size_t)n * (size_t)s->frame,
               (size_t)s->frame * sizeof(int16_t));
        s->ring_count++;
        n++;
    }
    return n;
}

int pbx_engine_play_push_event(pbx_engine *e, int slot, const uint8_t *payload, int len,
                               int marker, uint32_t ts_off)
{
    pbx_engine_stream *s = get(e, slot);
    if (!s || !s->media || len < 0 || len > 16 || ring_alloc(s) < 0) return -1;
    if (s->ring_count >= PBX_ENGINE_RING) return 0;
    ring_entry *r = &s->ring[(s->ring_head + s->ring_count) % PBX_ENGINE_RING];
    r->kind = PBX_ENGINE_ENTRY_EVENT;
    r->marker = marker != 0;
    r->len = (uint8_t)len;
    r->ts_off = ts_off;
    memcpy(r->payload, payload, (size_t)len);
    s->ring_count++;
    return 1;
}

int pbx_engine_play_status(const pbx_engine *e, int slot, uint64_t *consumed)
{
    pbx_engine_stream *s = get(e, slot);
    if (!s) return -1;
    *consumed = s->consumed;
    return s->ring_count;
}

int pbx_engine_play_want(pbx_engine *e, int slot, int on)
{
    pbx_engine_stream *s = get(e, slot);
    if (!s) return -1;
    s->want_feed = on != 0;
    return 0;
}

int pbx_engine_feed_list(pbx_engine *e, int *slots, int max)
{
    int n = 0, kept = 0;
    for (int i = 0; i < e->nfeed; i++) {
        int slot = e->feed[i];
        pbx_engine_stream *s = get(e, slot);
        if (!s || !s->on_feed_list) continue;
        if (n < max) {
            slots[n++] = slot;
            s->on_feed_list = 0;
        } else {
            e->feed[kept++] = slot; /* the rest waits for the next call */
        }
    }
    e->nfeed = kept;
    return n;
}

int pbx_engine_tap(pbx_engine *e, int slot, int mode)
{
    pbx_engine_stream *s = get(e, slot);
    if (!s || !s->media) return -1;
    s->tap_mode = mode & (PBX_ENGINE_TAP_RX | PBX_ENGINE_TAP_TX);
    if (tap_alloc(s) < 0) {
        s->tap_mode = 0;
        tap_alloc(s);
        return -1;
    }
    return 0;
}

int pbx_engine_tap_read(pbx_engine *e, int slot, int16_t *rx, int16_t *tx, int max)
{
    pbx_engine_stream *s = get(e, slot);
    if (!s || !s->tap_mode) return -1;
    int n = s->tap_n < max ? s->tap_n : max;
    size_t fs = (size_t)s->frame, fb = fs * sizeof(int16_t);
    size_t rest = (size_t)(s->tap_n - n) * fb;
    if (s->tap_rx) {
        if (rx) memcpy(rx, s->tap_rx, (size_t)n * fb);
        memmove(s->tap_rx, s->tap_rx + (size_t)n * fs, rest);
    }
    if (s->tap_tx) {
        if (tx) memcpy(tx, s->tap_tx, (size_t)n * fb);
        memmove(s->tap_tx, s->tap_tx + (size_t)n * fs, rest);
    }
    s->tap_n -= n;
    return n;
}

/* ---- receiving ------------------------------------------------------------------------------ */

static void on_televent(pbx_engine *e, pbx_engine_stream *s, const uint8_t *pkt, size_t n,
                        double now)
{
    pbx_rtp_hdr h;
    if (pbx_rtp_parse(pkt, n, &h) != PBX_RTP_OK) return;
    pbx_engine_event *ev = emit(e, PBX_ENGINE_EV_TELEVENT, s->slot, now, NULL);
    if (!ev) return;
    ev->pt = h.pt;
    ev->marker = h.marker;
    ev->seq = h.seq;
    ev->ts = h.ts;
    const uint8_t *p = pkt + h.payload_offset;
    uint32_t len = h.payload_len;
    if (len <= PBX_ENGINE_EV_PAYLOAD) {
        ev->len = (int32_t)len;
        memcpy(ev->payload, p, len);
    } else if (len % 4 == 0) { /* several event blocks: the receiver reads the last ones */
        ev->len = PBX_ENGINE_EV_PAYLOAD;
        memcpy(ev->payload, p + len - PBX_ENGINE_EV_PAYLOAD, PBX_ENGINE_EV_PAYLOAD);
    } else {
        ev->len = -1;
    }
}

static void send_packet(pbx_engine *e, pbx_engine_stream *s, const uint8_t *pkt, size_t n)
{
    if (!s->rx.has_remote) return;
    ssize_t sent = sendto(s->fd, pkt, n, MSG_DONTWAIT, (struct sockaddr *)&s->remote_sa,
                          s->remote_salen);
    if (sent < 0) {
        s->c.send_errors++;
        return;
    }
    s->c.packets_out++;
    s->c.bytes_out += n;
    (void)e;
}

/* One RTP packet accepted by the checks, arrived on s. */
static void on_rtp(pbx_engine *e, pbx_engine_stream *s, uint8_t *pkt, size_t n, double now)
{
    pbx_engine_stream *p = s->relay >= 0 ? e->slots[s->relay] : NULL;
    if (p) {
        if (!p->rx.has_remote) {
            s->c.dropped_unrouted++;
            return;
        }
        if (s->has_pt_map) pkt[1] = (uint8_t)((pkt[1] & 0x80) | s->pt_map[pkt[1] & 0x7f]);
        pbx_engine_tx_rewrite(&p->tx, pkt, now);
        send_packet(e, p, pkt, n);
        return;
    }
    if (!s->media) {
        s->c.dropped_unrouted++;
        return;
    }
    int r = pbx_engine_media_put(s->media, pkt, n, (int64_t)llround(now * 1e6));
    if (r == PBX_JB_EVENT)
        on_televent(e, s, pkt, n, now);
    else if (r < 0)
        s->c.dropped_unrouted++;
}

static int terminated(const pbx_engine_stream *s);

/* RTCP (on port + 1, or muxed): counted; a terminated stream's, from its peer's address (any
 * port), is kept for Python, which parses it (RTCP is rare). */
static void on_rtcp(pbx_engine *e, pbx_engine_stream *s, const uint8_t *pkt, size_t n,
                    const struct sockaddr_storage *from, double now)
{
    s->c.rtcp_in++;
    if (!terminated(s) || !s->rx.has_remote || n > PBX_ENGINE_RTCP_MAX) return;
    pbx_engine_addr src;
    sa_to_addr(from, &src);
    if (src.family != s->rx.remote.family || memcmp(src.ip, s->rx.remote.ip, 16) != 0) return;
    if (e->rtcp_unread >= PBX_ENGINE_RTCP_RING) {
        e->totals.events_lost++;
        return;
    }
    pbx_engine_event *ev = emit(e, PBX_ENGINE_EV_RTCP, s->slot, now, NULL);
    if (!ev) return;
    int i = (int)(e->rtcp_head++ % PBX_ENGINE_RTCP_RING);
    e->rtcp_unread++;
    memcpy(e->rtcp_buf[i], pkt, n);
    e->rtcp_len[i] = (int32_t)n;
    ev->seq = (uint16_t)i;
    ev->len = (int32_t)n;
}

/* RFC 3550 A.1 and A.8 statistics of the peer's source (the twin: pbx.rtp.stats.ReceiverStats,
 * started afresh on a new SSRC). */
static void rx_stats(pbx_engine_stream *s, const uint8_t *pkt, double now)
{
    uint32_t ssrc = rd32(pkt + 8);
    if (!s->rs_has || ssrc != s->rs_ssrc) {
        s->rs_has = 1;
        s->rs_ssrc = ssrc;
        pbx_rtp_seq_init(&s->rs, PBX_RTP_MIN_SEQUENTIAL);
        pbx_rtp_jitter_init(&s->rj);
    }
    int64_t ext;
    if (pbx_rtp_seq_update(&s->rs, rd16(pkt + 2), &ext)) {
        double a = nearbyint(now * (double)s->media->cfg.clock_rate); /* round half even */
        pbx_rtp_jitter_update(&s->rj, (uint32_t)(uint64_t)(int64_t)a, rd32(pkt + 4));
    }
}

int pbx_engine_rtcp_read(pbx_engine *e, int index, uint8_t *buf, int max)
{
    if (index < 0 || index >= PBX_ENGINE_RTCP_RING || e->rtcp_unread <= 0) return -1;
    int n = e->rtcp_len[index] < max ? e->rtcp_len[index] : max;
    memcpy(buf, e->rtcp_buf[index], (size_t)n);
    e->rtcp_unread--;
    return n;
}

int pbx_engine_stream_rtcp_info(pbx_engine *e, int slot, int report, pbx_engine_rtcp_info *out)
{
    pbx_engine_stream *s = get(e, slot);
    if (!s) return -1;
    memset(out, 0, sizeof *out);
    out->tx_ssrc = s->tx.ssrc;
    out->tx_ts = s->tx.ts;
    out->tx_sent_at = s->tx.sent_at;
    out->tx_has_sent = s->tx.has_sent;
    if (!s->rs_has) return 0;
    out->has_source = 1;
    out->ssrc = s->rs_ssrc;
    out->received = (int64_t)s->rs.received;
    out->expected = pbx_rtp_seq_expected(&s->rs);
    out->jitter = (uint32_t)(s->rj.jitter_q4 >> 4);
    out->jitter_q4 = s->rj.jitter_q4;
    if (report) {
        uint8_t fraction;
        pbx_rtp_seq_report(&s->rs, &fraction, &out->cumulative, &out->ext_highest);
        out->fraction = fraction;
    }
    return 0;
}

static void on_datagram(pbx_engine *e, pbx_engine_stream *s, uint8_t *pkt, size_t n, int trunc,
                        const struct sockaddr_storage *from, double now)
{
    int kind = trunc ? PBX_ENGINE_MALFORMED : pbx_engine_rtp_check(pkt, n);
    if (kind == PBX_ENGINE_MALFORMED) {
        s->c.dropped_malformed++;
        return;
    }
    if (kind == PBX_ENGINE_RTCP) { /* rtcp-mux */
        on_rtcp(e, s, pkt, n, from, now);
        return;
    }
    pbx_engine_addr src;
    sa_to_addr(from, &src);
    int v = pbx_engine_rx_verdict(&s->rx, &src, rd32(pkt + 8), rd16(pkt + 2), pkt[1]);
    if (v == PBX_ENGINE_DROP_SOURCE) {
        s->c.dropped_source++;
        return;
    }
    if (v == PBX_ENGINE_DROP_PT) {
        s->c.dropped_payload_type++;
        return;
    }
    if (v == PBX_ENGINE_LATCHED) {
        addr_to_sa(&s->rx.remote, &s->remote_sa, &s->remote_salen);
        s->c.latched++;
        partner_resync(e, s);
        emit(e, PBX_ENGINE_EV_LATCHED, s->slot, now, &s->rx.remote);
    }
    s->c.packets_in++;
    s->c.bytes_in += n;
    s->last_rx = now;
    s->timed_out = 0;
    if (terminated(s)) rx_stats(s, pkt, now);
    on_rtp(e, s, pkt, n, now);
}

int pbx_engine_drain(pbx_engine *e, double now, int *events)
{
    struct epoll_event evs[EPOLL_BATCH];
    struct sockaddr_storage from;
    uint64_t got = 0;
    e->totals.wakeups++;
    while (got < DRAIN_BUDGET) {
        int n = epoll_wait(e->epfd, evs, EPOLL_BATCH, 0);
        if (n <= 0) break;
        e->totals.rounds++;
        for (int i = 0; i < n; i++) {
            uint64_t d = evs[i].data.u64;
            pbx_engine_stream *s = e->slots[d >> 1];
            if (!s) continue;
            int rtcp = (int)(d & 1);
            socklen_t fromlen = sizeof from;
            ssize_t r = recvfrom(rtcp ? s->rtcp_fd : s->fd, e->buf, PKT_BUF,
                                 MSG_DONTWAIT | MSG_TRUNC, (struct sockaddr *)&from, &fromlen);
            if (r < 0) {
                if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                    e->totals.recv_errors++;
                continue;
            }
            got++;
            if (rtcp)
                on_rtcp(e, s, e->buf, r > PKT_BUF ? PKT_BUF : (size_t)r, &from, now);
            else /* MSG_TRUNC: r is the datagram's real length, more than fitted */
                on_datagram(e, s, e->buf, r > PKT_BUF ? PKT_BUF : (size_t)r, r > PKT_BUF, &from,
                            now);
        }
    }
    e->totals.packets += got;
    if (got > e->totals.max_batch) e->totals.max_batch = got;
    *events = e->ev_count;
    return (int)got;
}

/* ---- the tick ---------------------------------------------------------------------------- */

static int terminated(const pbx_engine_stream *s) { return s && s->media && s->relay < 0; }

/* The receive half's frame is in s->rx_pcm: digit event, receive tap, conference input. */
static void after_rx(pbx_engine *e, pbx_engine_stream *s, const pbx_engine_digit *dg,
                     double now)
{
    if (dg->digit) {
        pbx_engine_event *ev = emit(e, PBX_ENGINE_EV_DIGIT, s->slot, now, NULL);
        if (ev) {
            ev->digit = dg->digit;
            ev->duration_ms = dg->duration_ms;
        }
    }
    if (s->tap_rx && s->tap_n < PBX_ENGINE_TAP_FRAMES)
        memcpy(s->tap_rx + (size_t)s->tap_n * (size_t)s->frame, s->rx_pcm,
               (size_t)s->frame * sizeof(int16_t));
    if (s->conf >= 0 && s->conf_in) {
        if (s->up)
            pbx_resample_process(s->up, s->rx_pcm, (size_t)s->frame, s->conf_in);
        else
            memcpy(s->conf_in, s->rx_pcm, (size_t)s->frame * sizeof(int16_t));
        s->conf_in_valid = 1;
    }
}

int pbx_engine_tick_rx(pbx_engine *e, double now)
{
    clock_gettime(CLOCK_MONOTONIC, &e->tick_start);
    e->totals.ticks++;
    e->next = 0;
    int64_t now_us = (int64_t)llround(now * 1e6);
    for (int i = 0; i < e->cap; i++) {
        pbx_engine_stream *s = e->slots[i];
        if (!s) continue;
        if (s->timeout > 0 && s->rx.has_remote && !s->timed_out && now - s->last_rx >= s->timeout) {
            s->timed_out = 1;
            s->c.timeouts++;
            emit(e, PBX_ENGINE_EV_TIMEOUT, i, now, NULL);
        }
        s->conf_in_valid = 0;
        if (!terminated(s)) continue;
        if (s->external) {
            pbx_jb_frame_t f;
            s->ext_code = pbx_jb_get(s->media->jb, now_us, &f);
            s->ext_len = 0;
            if (s->ext_code == PBX_JB_FRAME) {
                s->ext_len = f.len < EXT_MAX_PAYLOAD ? f.len : EXT_MAX_PAYLOAD;
                memcpy(s->ext_buf, f.payload, (size_t)s->ext_len);
            }
            e->ext[e->next++] = i;
            continue;
        }
        pbx_engine_digit dg;
        pbx_engine_media_rx(s->media, now_us, s->rx_pcm, &dg);
        after_rx(e, s, &dg, now);
    }
    return e->ev_count;
}

static int32_t step_of(const pbx_engine_stream *s) { return s->media->step; }

static void send_event(pbx_engine *e, pbx_engine_stream *s, const ring_entry *r, double now)
{
    uint16_t seq;
    uint32_t ts;
    pbx_engine_tx_next(&s->tx, (uint32_t)step_of(s), now, &seq, &ts);
    if (r->marker) s->te_ts = ts; /* the event starts with this packet */
    uint8_t *b = e->sendbuf;
    b[0] = 0x80;
    b[1] = (uint8_t)((r->marker ? 0x80 : 0) | (s->media->cfg.te_pt & 0x7f));
    wr16(b + 2, seq);
    wr32(b + 4, s->te_ts + r->ts_off);
    wr32(b + 8, s->tx.ssrc);
    memcpy(b + 12, r->payload, r->len);
    send_packet(e, s, b, 12 + (size_t)r->len);
    e->totals.frames_sent++;
}

static void send_audio(pbx_engine *e, pbx_engine_stream *s, const uint8_t *payload, int len,
                       uint32_t step, double now)
{
    uint16_t seq;
    uint32_t ts;
    int marker = pbx_engine_tx_next(&s->tx, step, now, &seq, &ts);
    uint8_t *b = e->sendbuf;
    if (payload != b + 12) memcpy(b + 12, payload, (size_t)len);
    b[0] = 0x80;
    b[1] = (uint8_t)((marker ? 0x80 : 0) | (s->media->cfg.send_pt & 0x7f));
    wr16(b + 2, seq);
    wr32(b + 4, ts);
    wr32(b + 8, s->tx.ssrc);
    send_packet(e, s, b, 12 + (size_t)len);
    e->totals.frames_sent++;
}

static void stream_tx(pbx_engine *e, pbx_engine_stream *s, double now)
{
    int f = s->frame;
    size_t fb = (size_t)f * sizeof(int16_t);
    int sends = s->media->cfg.sends;
    const ring_entry *r = NULL;
    const int16_t *pcm = NULL;
    if (s->conf_heard && s->conf_out) { /* keep the resampler's stream continuous */
        if (s->down)
            pbx_resample_process(s->down, s->conf_out, (size_t)conf_get(e, s->conf)->frame,
                                 s->tx_pcm);
        else
            memcpy(s->tx_pcm, s->conf_out, fb);
        pcm = s->tx_pcm;
    }
    if (s->ring_count > 0) {
        int i = s->ring_head;
        r = &s->ring[i];
        s->ring_head = (i + 1) % PBX_ENGINE_RING;
        s->ring_count--;
        s->consumed++;
        if (r->kind == PBX_ENGINE_ENTRY_PCM) {
            memcpy(s->tx_pcm, s->ring_pcm + (size_t)i * (size_t)f, fb);
            pcm = s->tx_pcm;
            r = NULL;
        } else {
            pcm = NULL;
        }
    }
    if (!pcm) {
        memset(s->tx_pcm, 0, fb);
        if (!r) pcm = s->tx_pcm;
    }
    if (s->tap_tx && s->tap_n < PBX_ENGINE_TAP_FRAMES)
        memcpy(s->tap_tx + (size_t)s->tap_n * (size_t)f, s->tx_pcm, fb);
    if (s->tap_mode) {
        if (s->tap_n < PBX_ENGINE_TAP_FRAMES)
            s->tap_n++;
        else
            e->totals.tap_lost++;
    }
    if (s->want_feed && s->ring_count <= PBX_ENGINE_RING_LOW && !s->on_feed_list) {
        s->on_feed_list = 1;
        e->feed[e->nfeed++] = s->slot;
    }
    pbx_engine_media *m = s->media;
    if (!sends || !s->rx.has_remote) {
        m->tx_len = 0;
        return;
    }
    if (r) {
        m->tx_len = 0; /* events replace the audio */
        if (m->cfg.te_pt >= 0) send_event(e, s, r, now);
        return;
    }
    if (s->external) {
        s->ext_tx_ready = 1;
        return;
    }
    if (m->tx_units == 2) {
        int len = pbx_engine_media_encode(m, pcm, e->sendbuf + 12);
        send_audio(e, s, e->sendbuf + 12, len, (uint32_t)step_of(s), now);
        return;
    }
    /* another packet time: collect encoded audio, send every full packet (10 ms: two per
     * tick; 30 ms: on two ticks of three) */
    m->tx_len += pbx_engine_media_encode(m, pcm, m->tx_acc + m->tx_len);
    int32_t size = m->tx_units * m->half[m->cfg.send_kind & 7];
    uint32_t step = (uint32_t)(m->tx_units * (m->step / 2));
    int32_t off = 0;
    for (; m->tx_len - off >= size; off += size)
        send_audio(e, s, m->tx_acc + off, size, step, now);
    if (off) {
        memmove(m->tx_acc, m->tx_acc + off, (size_t)(m->tx_len - off));
        m->tx_len -= off;
    }
}

int pbx_engine_tick_tx(pbx_engine *e, double now)
{
    for (int id = 0; id < e->nconfs; id++)
        if (e->confs[id].used && (e->confs[id].n > 0 || e->confs[id].tap_on))
            conf_mix(e, id, &e->confs[id]);
    for (int i = 0; i < e->cap; i++) {
        pbx_engine_stream *s = e->slots[i];
        if (terminated(s)) stream_tx(e, s, now);
    }
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    int64_t ns = (int64_t)(t1.tv_sec - e->tick_start.tv_sec) * 1000000000LL
                 + (t1.tv_nsec - e->tick_start.tv_nsec);
    if (ns > 0) {
        e->totals.tick_ns += (uint64_t)ns;
        if ((uint64_t)ns > e->totals.tick_ns_max) e->totals.tick_ns_max = (uint64_t)ns;
    }
    return e->ev_count;
}

int pbx_engine_tick(pbx_engine *e, double now)
{
    pbx_engine_tick_rx(e, now);
    return pbx_engine_tick_tx(e, now);
}

int pbx_engine_events(pbx_engine *e, pbx_engine_event *out, int max)
{
    int n = e->ev_count < max ? e->ev_count : max;
    for (int i = 0; i < n; i++) out[i] = e->events[(e->ev_head + i) % e->max_events];
    e->ev_head = (e->ev_head + n) % e->max_events;
    e->ev_count -= n;
    return n;
}

void pbx_engine_get_totals(const pbx_engine *e, pbx_engine_totals *out) { *out = e->totals; }

/* ---- external codecs ------------------------------------------------------------------------ */

int pbx_engine_ext_list(const pbx_engine *e, int *slots, int max)
{
    int n = e->next < max ? e->next : max;
    memcpy(slots, e->ext, (size_t)n * sizeof *slots);
    return n;
}

int pbx_engine_ext_rx(const pbx_engine *e, int slot, uint8_t *payload, int max, int *len)
{
    pbx_engine_stream *s = get(e, slot);
    if (!s || !s->external) return -1;
    int n = s->ext_len < max ? s->ext_len : max;
    memcpy(payload, s->ext_buf, (size_t)n);
    *len = n;
    return s->ext_code;
}

int pbx_engine_ext_rx_pcm(pbx_engine *e, int slot, const int16_t *pcm, double now)
{
    pbx_engine_stream *s = get(e, slot);
    if (!s || !s->external || !s->media) return -1;
    memcpy(s->rx_pcm, pcm, (size_t)s->frame * sizeof(int16_t));
    pbx_engine_digit dg;
    inband(s->media, s->rx_pcm, &dg);
    after_rx(e, s, &dg, now);
    return 0;
}

int pbx_engine_ext_tx(const pbx_engine *e, int slot, int16_t *pcm)
{
    pbx_engine_stream *s = get(e, slot);
    if (!s || !s->external || !s->ext_tx_ready) return 0;
    memcpy(pcm, s->tx_pcm, (size_t)s->frame * sizeof(int16_t));
    return 1;
}

int pbx_engine_ext_send(pbx_engine *e, int slot, const uint8_t *payload, int len, double now)
{
    pbx_engine_stream *s = get(e, slot);
    if (!s || !s->external || !s->ext_tx_ready || len < 0 || len > SEND_BUF - 12) return -1;
    s->ext_tx_ready = 0;
    send_audio(e, s, payload, len, (uint32_t)step_of(s), now);
    return 0;
}
