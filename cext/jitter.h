/* Adaptive jitter buffer (clock-pulled playout of encoded RTP frames) for the native media
 * engine: one pbx_jb_put per received packet, one pbx_jb_get per 20 ms tick. Plain C, integer
 * arithmetic only, state in a caller-owned struct. The pure-Python twin and the description of
 * the algorithm are in src/pbx/rtp/jitter.py; property tests check both take the same decisions
 * and keep the same counters. */
#ifndef PBX_JITTER_H
#define PBX_JITTER_H
#include <stdint.h>
#include <stddef.h>

/* pbx_jb_put results */
#define PBX_JB_ACCEPTED 0
#define PBX_JB_DUPLICATE 1
#define PBX_JB_LATE 2
#define PBX_JB_DISCARDED 3   /* beyond the ring, ring full, or payload too big */
#define PBX_JB_RESYNC 4      /* accepted as the first packet of a new epoch (not the first) */
#define PBX_JB_EVENT 5       /* telephone-event packet queued for pbx_jb_pop_event */

/* pbx_jb_get results */
#define PBX_JB_FRAME 0       /* *out holds a frame */
#define PBX_JB_STARTUP 1     /* buffering before the first frame: silence */
#define PBX_JB_NOT_YET 2     /* underflow, the next frame has not arrived: conceal */
#define PBX_JB_LOST 3        /* frame out->index never came, later ones did: conceal */
#define PBX_JB_INSERTED 4    /* frame inserted to grow the delay: conceal */
#define PBX_JB_GAP 5         /* the sender sent nothing for this time (DTX, events): silence/CN */

/* frame flags */
#define PBX_JB_FLAG_MARKER 1
#define PBX_JB_FLAG_SILENT 2
#define PBX_JB_FLAG_RESYNC 4
#define PBX_JB_FLAG_DROPPED 8
#define PBX_JB_FLAG_EVENT 16

#define PBX_JB_NBINS 128
#define PBX_JB_EVENT_QUEUE 16
#define PBX_JB_EVENT_MAX_PAYLOAD 64
#define PBX_JB_MAX_CAPACITY 4096
#define PBX_JB_HISTORY 4     /* past epochs remembered to recognise their stragglers */

/* Delays in RTP timestamp units (samples). fixed_delay < 0: adaptive. capacity 0: automatic
 * (2 * max_delay in frames + 8, rounded up to a power of two). dtmf_pt < 0: none. */
typedef struct {
    int32_t clock_rate;
    int32_t frame_samples;
    int32_t min_delay;
    int32_t max_delay;
    int32_t start_delay;
    int32_t fixed_delay;
    int32_t capacity;
    int32_t max_payload;
    int32_t dtmf_pt;
} pbx_jb_config_t;

typedef struct {
    int64_t received, played, late, lost, discarded, duplicated, reordered, events;
    int64_t concealed, inserted, removed;   /* samples */
    int64_t underflows, resyncs, buffered;
    int64_t current_delay, target_delay;    /* samples */
} pbx_jb_stats_t;

/* A frame from pbx_jb_get or an event from pbx_jb_pop_event. payload points into the buffer
 * and stays valid until the next call on it. */
typedef struct {
    int64_t index;          /* extended sequence number, continuous across resyncs */
    uint32_t timestamp;     /* as received */
    uint16_t seq;           /* as received */
    uint8_t payload_type;
    uint8_t flags;
    int32_t len;
    const uint8_t *payload;
} pbx_jb_frame_t;

typedef struct {
    int64_t index, mts;
    uint32_t ts;
    uint16_t seq;
    uint8_t pt, flags, state;
    int8_t silent;
    int32_t len;
} pbx_jb_slot_t;

typedef struct {
    int64_t index;
    uint32_t ts;
    uint16_t seq;
    uint8_t pt, flags;
    int32_t len;
    uint8_t payload[PBX_JB_EVENT_MAX_PAYLOAD];
} pbx_jb_event_t;

typedef struct pbx_jb {
    /* configuration (normalised) */
    int64_t rate, frame, min_s, max_s, start_s, fixed_s, bin_w, win, thr_marker, thr_plain;
    int64_t shrink_thr[3], grow_thr[3];
    int32_t cap, mask, max_payload, dtmf_pt;
    pbx_jb_slot_t *slots;
    uint8_t *payloads;      /* cap * max_payload bytes */
    void *owned;            /* memory to free (pbx_jb_new) */
    /* clock */
    int64_t t0, last_us;
    int clock_valid;
    /* stream */
    int have_stream, fresh, moved, started, rebuffering, skipped, last_event, play_valid;
    int64_t ssrc, bad_seq, epoch_start;
    int64_t prev_ssrc[PBX_JB_HISTORY], prev_seq[PBX_JB_HISTORY], prev_until[PBX_JB_HISTORY];
    int32_t prev_pos;
    int64_t hi_seq, hi_index, hi_ts, hi_mts, max_index, max_mts, next, count;
    int64_t play_ts;
    int last_silent;
    uint8_t resync_flag;
    /* delay estimate */
    int64_t win_start, cur_min, prev_min, dmin;
    int64_t hist[PBX_JB_NBINS];
    int64_t total, weight, below;
    int32_t pct;
    int64_t tstate, target, current;
    /* telephone events */
    pbx_jb_event_t events[PBX_JB_EVENT_QUEUE];
    int32_t ev_head, ev_count;
    pbx_jb_stats_t st;
} pbx_jb_t;

/* Bytes of slot memory pbx_jb_init needs for this configuration. */
size_t pbx_jb_mem_size(const pbx_jb_config_t *cfg);
/* Initialise jb in place with caller memory of pbx_jb_mem_size bytes (8-byte aligned). */
int pbx_jb_init(pbx_jb_t *jb, const pbx_jb_config_t *cfg, void *mem);
/* Allocate and initialise (NULL on failure); pbx_jb_free releases it. */
pbx_jb_t *pbx_jb_new(const pbx_jb_config_t *cfg);
void pbx_jb_free(pbx_jb_t *jb);
/* Forget stream, delay history and counters; keep the configuration. */
void pbx_jb_reset(pbx_jb_t *jb);
int32_t pbx_jb_capacity(const pbx_jb_t *jb);
/* One received packet. silent: 1 silent, 0 speech, -1 unknown. Returns PBX_JB_ACCEPTED... */
int pbx_jb_put(pbx_jb_t *jb, uint16_t seq, uint32_t ts, int marker, int pt,
               const uint8_t *payload, size_t len, uint32_t ssrc, int64_t now_us, int silent);
/* One playout tick. Returns PBX_JB_FRAME (out filled) or a PBX_JB_STARTUP... reason. */
int pbx_jb_get(pbx_jb_t *jb, int64_t now_us, pbx_jb_frame_t *out);
/* Next queued telephone-event packet: 1 and *out filled, or 0. */
int pbx_jb_pop_event(pbx_jb_t *jb, pbx_jb_frame_t *out);
void pbx_jb_get_stats(const pbx_jb_t *jb, pbx_jb_stats_t *out);

#endif
