/* Adaptive jitter buffer: see jitter.h, and src/pbx/rtp/jitter.py for the algorithm and the
 * readable twin. Every step here mirrors the Python one; only integer arithmetic, and every
 * division or shift is on a non-negative value, so both twins compute the same numbers. */
#include "jitter.h"
#include <stdlib.h>
#include <string.h>

#define JB_EMPTY 0
#define JB_AUDIO 1
#define JB_TOMB 2
#define JB_DONE 3

#define JB_HIST_GAIN 65625
#define JB_HIST_W0 ((int64_t)1 << 20)
#define JB_HIST_TOP ((int64_t)1 << 40)
#define JB_HIST_SHIFT 20
#define JB_DECAY_SHIFT 7
#define JB_MAX_MISORDER 100
#define JB_STALE 3000        /* that far before an old epoch's last packet is a straggler */
#define JB_INF ((int64_t)1 << 62)

static int64_t jb_max(int64_t a, int64_t b) { return a > b ? a : b; }
static int64_t jb_min(int64_t a, int64_t b) { return a < b ? a : b; }

/* Normalised configuration: the same formulas as _config in jitter.py. */
static void jb_config(const pbx_jb_config_t *cfg, int64_t *min_s, int64_t *max_s,
                      int64_t *start_s, int64_t *fixed_s, int32_t *cap, int64_t *bin_w)
{
    int64_t frame = cfg->frame_samples > 0 ? cfg->frame_samples : 1;
    int64_t mx = jb_max(cfg->max_delay, frame);
    int64_t mn = jb_min(jb_max(cfg->min_delay, 0), mx);
    int64_t sd = jb_min(jb_max(cfg->start_delay, mn), mx);
    int64_t fx = cfg->fixed_delay;
    int64_t span = jb_max(mx, fx);
    int64_t want = cfg->capacity;
    int32_t c = 4;
    if (want <= 0)
        want = 2 * ((span + frame - 1) / frame) + 8;
    while (c < want && c < PBX_JB_MAX_CAPACITY)
        c <<= 1;
    *min_s = mn;
    *max_s = mx;
    *start_s = sd;
    *fixed_s = fx;
    *cap = c;
    *bin_w = jb_max(1, (mx + PBX_JB_NBINS - 1) / PBX_JB_NBINS);
}

size_t pbx_jb_mem_size(const pbx_jb_config_t *cfg)
{
    int64_t mn, mx, sd, fx, bw;
    int32_t cap;
    size_t maxp = cfg->max_payload > 0 ? (size_t)cfg->max_payload : 0;
    jb_config(cfg, &mn, &mx, &sd, &fx, &cap, &bw);
    return (size_t)cap * sizeof(pbx_jb_slot_t) + (((size_t)cap * maxp + 7) & ~(size_t)7);
}

void pbx_jb_reset(pbx_jb_t *jb)
{
    int i;
    memset(jb->slots, 0, (size_t)jb->cap * sizeof(pbx_jb_slot_t));
    jb->t0 = jb->last_us = 0;
    jb->clock_valid = 0;
    jb->have_stream = 0;
    jb->fresh = 1;
    jb->moved = jb->started = jb->rebuffering = jb->skipped = jb->play_valid = 0;
    jb->last_event = 0;
    jb->ssrc = 0;
    for (i = 0; i < PBX_JB_HISTORY; i++) {
        jb->prev_ssrc[i] = -1;
        jb->prev_seq[i] = 0;
        jb->prev_until[i] = 0;
    }
    jb->prev_pos = 0;
    jb->bad_seq = -1;
    jb->epoch_start = -JB_INF;
    jb->hi_seq = 0;
    jb->hi_index = -1;
    jb->hi_ts = 0;
    jb->hi_mts = 0;
    jb->max_index = -1;
    jb->max_mts = -jb->frame;
    jb->next = 0;
    jb->count = 0;
    jb->play_ts = 0;
    jb->last_silent = -1;
    jb->resync_flag = 0;
    jb->win_start = 0;
    jb->cur_min = jb->prev_min = jb->dmin = JB_INF;
    memset(jb->hist, 0, sizeof jb->hist);
    jb->total = 0;
    jb->weight = JB_HIST_W0;
    jb->pct = 0;
    jb->below = 0;
    jb->tstate = jb->start_s;
    jb->target = jb->fixed_s >= 0 ? jb->fixed_s : jb->start_s;
    jb->current = 0;
    jb->ev_head = jb->ev_count = 0;
    memset(&jb->st, 0, sizeof jb->st);
}

int pbx_jb_init(pbx_jb_t *jb, const pbx_jb_config_t *cfg, void *mem)
{
    if (cfg->clock_rate <= 0 || cfg->frame_samples <= 0 || cfg->max_payload <= 0 || !mem)
        return -1;
    memset(jb, 0, sizeof *jb);
    jb_config(cfg, &jb->min_s, &jb->max_s, &jb->start_s, &jb->fixed_s, &jb->cap, &jb->bin_w);
    jb->rate = cfg->clock_rate;
    jb->frame = cfg->frame_samples;
    jb->mask = jb->cap - 1;
    jb->max_payload = cfg->max_payload;
    jb->dtmf_pt = cfg->dtmf_pt;
    jb->win = 2 * jb->rate;
    jb->thr_marker = jb_max(jb->max_s, 4 * jb->frame);
    jb->thr_plain = jb_max(2 * jb->max_s, 2 * jb->rate);
    /* indexed by silent code + 1: unknown, speech, silent */
    jb->shrink_thr[0] = (3 * jb->frame) >> 1;
    jb->shrink_thr[1] = 4 * jb->frame;
    jb->shrink_thr[2] = jb->frame;
    jb->grow_thr[0] = jb_max(1, jb->frame >> 1);
    jb->grow_thr[1] = 2 * jb->frame;
    jb->grow_thr[2] = 1;
    jb->slots = (pbx_jb_slot_t *)mem;
    jb->payloads = (uint8_t *)mem + (size_t)jb->cap * sizeof(pbx_jb_slot_t);
    pbx_jb_reset(jb);
    return 0;
}

pbx_jb_t *pbx_jb_new(const pbx_jb_config_t *cfg)
{
    pbx_jb_t *jb;
    void *mem;
    if (cfg->clock_rate <= 0 || cfg->frame_samples <= 0 || cfg->max_payload <= 0)
        return NULL;
    jb = (pbx_jb_t *)malloc(sizeof *jb);
    mem = malloc(pbx_jb_mem_size(cfg));
    if (!jb || !mem || pbx_jb_init(jb, cfg, mem) != 0) {
        free(jb);
        free(mem);
        return NULL;
    }
    jb->owned = mem;
    return jb;
}

void pbx_jb_free(pbx_jb_t *jb)
{
    if (!jb)
        return;
    free(jb->owned);
    free(jb);
}

int32_t pbx_jb_capacity(const pbx_jb_t *jb) { return jb->cap; }

static int64_t jb_clock(pbx_jb_t *jb, int64_t now_us)
{
    if (!jb->clock_valid) {
        jb->clock_valid = 1;
        jb->t0 = jb->last_us = now_us;
    }
    if (now_us < jb->last_us)
        now_us = jb->last_us;
    jb->last_us = now_us;
    return (now_us - jb->t0) * jb->rate / 1000000;
}

static void jb_set_target(pbx_jb_t *jb)
{
    if (jb->fixed_s >= 0)
        jb->target = jb->fixed_s;
    else
        jb->target = jb_min(jb_max(jb->tstate, jb->min_s), jb->max_s);
}

static void jb_move_percentile(pbx_jb_t *jb)
{
    int32_t p = jb->pct;
    int64_t below = jb->below, total = jb->total;
    while (p < PBX_JB_NBINS - 1 && (below + jb->hist[p]) * 20 < total * 19) {
        below += jb->hist[p];
        p++;
    }
    while (p > 0 && below * 20 >= total * 19) {
        p--;
        below -= jb->hist[p];
    }
    jb->pct = p;
    jb->below = below;
}

static void jb_observe(pbx_jb_t *jb, int64_t d, int64_t now_s)
{
    int64_t j, b, w;
    int i;
    if (jb->fresh) {
        jb->fresh = 0;
        jb->cur_min = jb->prev_min = JB_INF;
        jb->win_start = now_s;
    } else if (now_s - jb->win_start >= jb->win) {
        jb->prev_min = now_s - jb->win_start < 2 * jb->win ? jb->cur_min : JB_INF;
        jb->cur_min = JB_INF;
        jb->win_start = now_s;
    }
    if (d < jb->cur_min)
        jb->cur_min = d;
    jb->dmin = jb_min(jb->cur_min, jb->prev_min);
    j = d - jb->dmin;
    b = jb_min(j / jb->bin_w, PBX_JB_NBINS - 1);
    w = jb->weight;
    jb->hist[b] += w;
    jb->total += w;
    if (b < jb->pct)
        jb->below += w;
    jb->weight = (w * JB_HIST_GAIN) >> 16;
    if (jb->weight > JB_HIST_TOP) {
        jb->weight >>= JB_HIST_SHIFT;
        jb->total = 0;
        jb->below = 0;
        for (i = 0; i < PBX_JB_NBINS; i++) {
            jb->hist[i] >>= JB_HIST_SHIFT;
            jb->total += jb->hist[i];
            if (i < jb->pct)
                jb->below += jb->hist[i];
        }
    }
    jb_move_percentile(jb);
    if (j > jb->tstate) {
        jb->tstate = jb_min(j, jb->max_s);
        jb_set_target(jb);
    }
}

static void jb_decay(pbx_jb_t *jb)
{
    int64_t floor = jb->total > 0 ? (int64_t)(jb->pct + 1) * jb->bin_w : 0;
    int64_t t = jb->tstate;
    if (t < floor)
        t = floor;
    else if (t > floor)
        t -= (t - floor + ((int64_t)1 << JB_DECAY_SHIFT) - 1) >> JB_DECAY_SHIFT;
    jb->tstate = t;
    jb_set_target(jb);
}

static void jb_new_epoch(pbx_jb_t *jb, int64_t seq, int64_t ts, int64_t ssrc, int64_t now_s)
{
    if (jb->have_stream) {
        jb->st.resyncs++;
        /* the old source: its stragglers are late (for a second, or when not newer) */
        int k = jb->prev_pos;
        jb->prev_until[k] = ssrc != jb->ssrc ? now_s + jb->rate : 0;
        jb->prev_ssrc[k] = jb->ssrc;
        jb->prev_seq[k] = jb->hi_seq;
        jb->prev_pos = (k + 1) % PBX_JB_HISTORY;
        jb->epoch_start = jb_max(jb->max_index + 1, jb->next);
        if (jb->count == 0 && jb->started)
            jb->rebuffering = 1;
        jb->resync_flag = PBX_JB_FLAG_RESYNC;
    }
    jb->have_stream = 1;
    jb->ssrc = ssrc;
    jb->bad_seq = -1;
    jb->hi_seq = seq;
    jb->hi_index = jb_max(jb->max_index + 1, jb->next);
    jb->hi_ts = ts;
    jb->hi_mts = jb->max_mts + jb->frame;
    jb->fresh = 1;
}

static int64_t jb_seq_diff(int64_t seq, int64_t ref)
{
    return (int64_t)((uint64_t)(seq - ref + 0x8000) & 0xFFFF) - 0x8000;
}

static int64_t jb_ts_diff(int64_t ts, int64_t ref)
{
    return (int64_t)((uint64_t)(ts - ref + 0x80000000LL) & 0xFFFFFFFFULL) - 0x80000000LL;
}

/* A straggler of a recent epoch: within a second of the switch away from its source (now_s
 * JB_INF: ignore that), or at most JB_STALE before the epoch's last packet. */
static int jb_stale(const pbx_jb_t *jb, int64_t ssrc, int64_t seq, int64_t now_s)
{
    int k;
    for (k = 0; k < PBX_JB_HISTORY; k++) {
        if (jb->prev_ssrc[k] == ssrc) {
            int64_t age = jb_seq_diff(jb->prev_seq[k], seq);
            if (now_s < jb->prev_until[k] || (age >= 0 && age <= JB_STALE))
                return 1;
        }
    }
    return 0;
}

static int jb_queue_event(pbx_jb_t *jb, int64_t index, int64_t seq, int64_t ts, int pt,
                          const uint8_t *payload, size_t len, int marker)
{
    pbx_jb_event_t *e;
    if (jb->ev_count >= PBX_JB_EVENT_QUEUE) {
        jb->st.discarded++;
        return PBX_JB_DISCARDED;
    }
    e = &jb->events[(jb->ev_head + jb->ev_count) % PBX_JB_EVENT_QUEUE];
    jb->ev_count++;
    e->index = index;
    e->ts = (uint32_t)ts;
    e->seq = (uint16_t)seq;
    e->pt = (uint8_t)pt;
    e->flags = PBX_JB_FLAG_EVENT | (marker ? PBX_JB_FLAG_MARKER : 0);
    e->len = (int32_t)len;
    if (len)
        memcpy(e->payload, payload, len);
    jb->st.events++;
    return PBX_JB_EVENT;
}

/* A packet the current mapping cannot place: late, or a telephone event passed on anyway
 * (index -1). */
static int jb_unplaced(pbx_jb_t *jb, int event, int64_t seq, int64_t ts, int pt,
                       const uint8_t *payload, size_t len, int marker)
{
    if (event)
        return jb_queue_event(jb, -1, seq, ts, pt, payload, len, marker);
    jb->st.late++;
    return PBX_JB_LATE;
}

static size_t jb_slot_of(const pbx_jb_t *jb, int64_t index)
{
    return (size_t)((uint64_t)index & (uint64_t)jb->mask);
}

int pbx_jb_put(pbx_jb_t *jb, uint16_t seq16, uint32_t ts32, int marker, int pt,
               const uint8_t *payload, size_t len, uint32_t ssrc32, int64_t now_us, int silent)
{
    int64_t now_s = jb_clock(jb, now_us);
    int64_t seq = seq16, ts = ts32, ssrc = ssrc32;
    int event = pt == jb->dtmf_pt;
    int resync = !jb->have_stream;
    int result = PBX_JB_ACCEPTED;
    int64_t index = 0, nxt, mts;
    pbx_jb_slot_t *sl;
    size_t s;

    marker = marker ? 1 : 0;
    jb->st.received++;
    if (len > (size_t)(event ? PBX_JB_EVENT_MAX_PAYLOAD : jb->max_payload)) {
        jb->st.discarded++;
        return PBX_JB_DISCARDED;
    }
    if (!resync && ssrc != jb->ssrc) {
        if (jb_stale(jb, ssrc, seq, now_s))
            return jb_unplaced(jb, event, seq, ts, pt, payload, len, marker);
        resync = 1;
    }
    if (!resync) {
        int64_t dseq = jb_seq_diff(seq, jb->hi_seq);
        if (dseq < -JB_MAX_MISORDER) {
            if (jb_stale(jb, ssrc, seq, JB_INF)) /* from before a jump */
                return jb_unplaced(jb, event, seq, ts, pt, payload, len, marker);
            if (seq != jb->bad_seq) { /* a restart needs a second packet to confirm it */
                jb->bad_seq = (seq + 1) & 0xFFFF;
                return jb_unplaced(jb, event, seq, ts, pt, payload, len, marker);
            }
            resync = 1;
        } else {
            index = jb->hi_index + dseq;
            if (index >= jb->next + jb->cap) {
                if (jb_stale(jb, ssrc, seq, JB_INF))
                    return jb_unplaced(jb, event, seq, ts, pt, payload, len, marker);
                resync = jb->max_index + 1 < jb->next + jb->cap;
            } else if (!event && index > jb->max_index && !jb->fresh) {
                int64_t d, thr;
                mts = jb->hi_mts + jb_ts_diff(ts, jb->hi_ts);
                d = now_s - mts;
                thr = marker ? jb->thr_marker : jb->thr_plain;
                resync = d - jb->dmin > thr || jb->dmin - d > thr;
            }
            if (!resync && !event && jb->started && index > jb->max_index && index < jb->next) {
                /* skipped as probably lost while nothing was buffered, yet not due: the sender
                 * paused (DTX) without a sequence gap. Index it after the skip instead. */
                mts = jb->hi_mts + jb_ts_diff(ts, jb->hi_ts);
                if (mts >= jb->play_ts) {
                    jb->hi_index += jb->next - index;
                    index = jb->next;
                }
            }
        }
    }
    if (resync) {
        result = jb->have_stream ? PBX_JB_RESYNC : PBX_JB_ACCEPTED;
        jb_new_epoch(jb, seq, ts, ssrc, now_s);
        index = jb->hi_index;
    }
    nxt = jb->next;
    if (index < jb->epoch_start) /* from before the last resync: the mapping cannot place it */
        return jb_unplaced(jb, event, seq, ts, pt, payload, len, marker);
    if (index >= nxt + jb->cap) {
        if (event)
            return jb_queue_event(jb, index, seq, ts, pt, payload, len, marker);
        jb->st.discarded++;
        return PBX_JB_DISCARDED;
    }
    if (index < nxt && !jb->moved && jb->max_index - index < jb->cap)
        jb->next = nxt = index; /* nothing consumed yet: an earlier packet moves the start back */
    s = jb_slot_of(jb, index);
    sl = &jb->slots[s];
    if (sl->state != JB_EMPTY && sl->index == index) {
        jb->st.duplicated++;
        return PBX_JB_DUPLICATE;
    }
    if (index < jb->max_index)
        jb->st.reordered++;
    if (event) {
        result = jb_queue_event(jb, index, seq, ts, pt, payload, len, marker);
        if (result == PBX_JB_EVENT && index >= nxt) {
            sl->state = JB_TOMB;
            sl->index = index;
            if (index > jb->max_index) {
                jb->max_index = index;
                jb->last_event = 1;
            }
            if (index > jb->hi_index) {
                jb->hi_index = index;
                jb->hi_seq = seq;
            }
        }
        return result;
    }
    mts = jb->hi_mts + jb_ts_diff(ts, jb->hi_ts);
    jb_observe(jb, now_s - mts, now_s);
    if (index < nxt) {
        jb->st.late++;
        return PBX_JB_LATE;
    }
    sl->state = JB_AUDIO;
    sl->index = index;
    sl->mts = mts;
    sl->ts = (uint32_t)ts;
    sl->seq = (uint16_t)seq;
    sl->pt = (uint8_t)pt;
    sl->flags = (uint8_t)((marker ? PBX_JB_FLAG_MARKER : 0) | (silent > 0 ? PBX_JB_FLAG_SILENT : 0)
                          | jb->resync_flag);
    jb->resync_flag = 0;
    sl->silent = (int8_t)(silent > 0 ? 1 : silent < 0 ? -1 : 0);
    sl->len = (int32_t)len;
    if (len)
        memcpy(jb->payloads + s * (size_t)jb->max_payload, payload, len);
    jb->count++;
    if (index > jb->max_index) {
        jb->max_index = index;
        jb->last_event = 0;
    }
    if (index > jb->hi_index) {
        jb->hi_index = index;
        jb->hi_seq = seq;
        jb->hi_ts = ts;
        jb->hi_mts = mts;
    }
    if (mts > jb->max_mts)
        jb->max_mts = mts;
    return result;
}

int pbx_jb_pop_event(pbx_jb_t *jb, pbx_jb_frame_t *out)
{
    pbx_jb_event_t *e;
    if (jb->ev_count == 0)
        return 0;
    e = &jb->events[jb->ev_head];
    jb->ev_head = (jb->ev_head + 1) % PBX_JB_EVENT_QUEUE;
    jb->ev_count--;
    out->index = e->index;
    out->timestamp = e->ts;
    out->seq = e->seq;
    out->payload_type = e->pt;
    out->flags = e->flags;
    out->len = e->len;
    out->payload = e->payload;
    return 1;
}

int pbx_jb_get(pbx_jb_t *jb, int64_t now_us, pbx_jb_frame_t *out)
{
    int64_t now_s = jb_clock(jb, now_us);
    int64_t frame = jb->frame, nxt, mts;
    pbx_jb_slot_t *sl;
    uint8_t extra = 0;
    size_t s;

    if (jb->started && jb->fixed_s < 0)
        jb_decay(jb);
    if (!jb->have_stream)
        return PBX_JB_STARTUP;
    nxt = jb->next;
    while (nxt <= jb->max_index) {
        sl = &jb->slots[jb_slot_of(jb, nxt)];
        if (sl->state == JB_TOMB && sl->index == nxt) {
            sl->state = JB_DONE;
            nxt++;
            jb->moved = 1;
            continue;
        }
        break;
    }
    jb->next = nxt;
    s = jb_slot_of(jb, nxt);
    sl = &jb->slots[s];
    if (sl->state != JB_AUDIO || sl->index != nxt) {
        if (nxt < jb->max_index) {
            jb->st.lost++;
            jb->st.concealed += frame;
            jb->next = nxt + 1;
            jb->moved = 1;
            if (jb->play_valid)
                jb->play_ts += frame;
            out->index = nxt;
            return PBX_JB_LOST;
        }
        if (!jb->started)
            return PBX_JB_STARTUP;
        if (jb->last_event) { /* the sender sends telephone events instead of audio */
            jb->rebuffering = 1;
            return PBX_JB_GAP;
        }
        {
            int64_t cur = now_s - jb->play_ts - jb->dmin;
            if (!jb->rebuffering && !jb->skipped && cur >= jb->target && jb->last_silent != 1) {
                /* it should be here by now: take it for lost (once) rather than stall; after a
                 * silent frame the sender more likely paused (DTX), so stall then */
                jb->current = cur;
                jb->skipped = 1;
                jb->st.lost++;
                jb->st.concealed += frame;
                jb->next = nxt + 1;
                jb->moved = 1;
                jb->play_ts += frame;
                out->index = nxt;
                return PBX_JB_LOST;
            }
        }
        if (!jb->rebuffering) {
            jb->rebuffering = 1;
            jb->st.underflows++;
        }
        jb->st.concealed += frame;
        return PBX_JB_NOT_YET;
    }
    mts = sl->mts;
    if (jb->rebuffering || !jb->started) {
        if (!jb->started || !jb->play_valid || mts > jb->play_ts) {
            jb->play_ts = mts;
            jb->play_valid = 1;
        }
        jb->current = now_s - jb->play_ts - jb->dmin;
        if (jb->current < jb->target) {
            if (!jb->started)
                return PBX_JB_STARTUP;
            jb->st.concealed += frame;
            return PBX_JB_NOT_YET;
        }
        jb->started = 1;
        jb->rebuffering = 0;
    } else {
        int64_t excess;
        if (mts - jb->play_ts >= frame) {
            jb->play_ts += frame;
            return PBX_JB_GAP;
        }
        jb->current = now_s - jb->play_ts - jb->dmin;
        excess = jb->current - jb->target;
        if (excess >= (sl->silent == 0 ? jb_max(jb->shrink_thr[1], jb->target)
                                       : jb->shrink_thr[sl->silent + 1])) {
            int64_t n2 = nxt + 1, after = jb_max(jb->play_ts, mts) + frame;
            size_t s2 = jb_slot_of(jb, n2);
            pbx_jb_slot_t *sl2 = &jb->slots[s2];
            if (sl2->state == JB_AUDIO && sl2->index == n2 && sl2->mts - after < frame) {
                sl->state = JB_DONE;
                jb->count--;
                jb->st.removed += frame;
                jb->play_ts = after;
                nxt = n2;
                s = s2;
                sl = sl2;
                mts = sl2->mts;
                extra = PBX_JB_FLAG_DROPPED;
            }
        } else if (-excess >= jb->grow_thr[jb->last_silent + 1]) {
            jb->st.inserted += frame;
            jb->st.concealed += frame;
            return PBX_JB_INSERTED;
        }
    }
    sl->state = JB_DONE;
    jb->count--;
    jb->st.played++;
    jb->next = nxt + 1;
    jb->moved = 1;
    jb->play_ts = jb_max(jb->play_ts, mts) + frame;
    jb->last_silent = sl->silent;
    jb->skipped = 0;
    out->index = nxt;
    out->timestamp = sl->ts;
    out->seq = sl->seq;
    out->payload_type = sl->pt;
    out->flags = (uint8_t)(sl->flags | extra);
    out->len = sl->len;
    out->payload = jb->payloads + s * (size_t)jb->max_payload;
    return PBX_JB_FRAME;
}

void pbx_jb_get_stats(const pbx_jb_t *jb, pbx_jb_stats_t *out)
{
    *out = jb->st;
    out->buffered = jb->count;
    out->current_delay = jb->current;
    out->target_delay = jb->target;
}
