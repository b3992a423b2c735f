/*
 * Packet-loss concealment after ITU-T G.711 Appendix I (pitch-period replay with overlap-add,
 * widening to 2 and 3 periods, 20 % attenuation per 10 ms, silence after 60 ms, merge into the
 * next good frame), in integer arithmetic. Twin of pbx.media.plc.PyPlc: identical samples.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include "plc.h"

#define MIN_POWER 250
#define ATTEN_BLOCKS 5
#define SILENT_AFTER 6
#define MAX_ERASED 1000

static inline int16_t sat16(int64_t x) { return (int16_t)(x < -32768 ? -32768 : x > 32767 ? 32767 : x); }

int pbx_plc_init(pbx_plc *p, int32_t rate)
{
    if (rate != 8000 && rate != 16000 && rate != 24000 && rate != 32000 && rate != 48000)
        return -1;
    memset(p, 0, sizeof *p);
    int32_t k = rate / 8000;
    p->rate = rate;
    p->block = 80 * k;
    p->pitch_min = 40 * k;
    p->pitch_max = 120 * k;
    p->overlap_max = p->pitch_max / 4;
    p->hist = 3 * p->pitch_max + p->overlap_max;
    p->corr_len = 160 * k;
    p->ndec = 2 * k;
    p->eoverlap_incr = 32 * k;
    return 0;
}

int32_t pbx_plc_delay(const pbx_plc *p) { return p->overlap_max; }

/* out[i] = cross-fade from left to right with right weight (i + 1) / n. out may alias either. */
static void ola(const int16_t *left, const int16_t *right, int16_t *out, int32_t n)
{
    for (int32_t i = 0; i < n; i++) {
        int64_t rw = ((int64_t)(i + 1) << 15) / n;
        out[i] = sat16((left[i] * (32768 - rw) + right[i] * rw + 16384) >> 15);
    }
}

/* Append n samples to the history; write the n samples `overlap_max` older to out. */
static void save(pbx_plc *p, const int16_t *s, int16_t *out, int32_t n)
{
    int32_t h = p->hist;
    memmove(p->history, p->history + n, (size_t)(h - n) * sizeof(int16_t));
    memcpy(p->history + h - n, s, (size_t)n * sizeof(int16_t));
    memcpy(out, p->history + h - n - p->overlap_max, (size_t)n * sizeof(int16_t));
}

/* The next n samples of the replayed pitch buffer. */
static void fespeech(pbx_plc *p, int16_t *out, int32_t n)
{
    const int16_t *period = p->pitchbuf + p->hist - p->pitchblen;
    for (int32_t i = 0; i < n; i++) {
        out[i] = period[p->poffset];
        if (++p->poffset == p->pitchblen) p->poffset = 0;
    }
}

static void tail_ola(pbx_plc *p)
{
    int32_t h = p->hist, po = p->poverlap, start = h - p->pitchblen;
    ola(p->lastq, p->pitchbuf + start - po, p->pitchbuf + h - po, po);
}

static void attenuate(const pbx_plc *p, int16_t *s)
{
    int64_t span = (int64_t)ATTEN_BLOCKS * p->block;
    for (int32_t i = 0; i < p->block; i++) {
        int64_t step = (int64_t)(p->erasecnt - 1) * p->block + i;
        int64_t gain = 32768 - (step * 32768) / span;
        s[i] = sat16((s[i] * gain + 16384) >> 15);
    }
}

static double score(const int16_t *seg, const int16_t *ref, int32_t len, int32_t step, int64_t floor)
{
    int64_t corr = 0, energy = 0;
    for (int32_t i = 0; i < len; i += step) {
        corr += (int64_t)seg[i] * ref[i];
        energy += (int64_t)seg[i] * seg[i];
    }
    if (energy < floor) energy = floor;
    return (double)corr / sqrt((double)energy);
}

static int32_t find_pitch(const pbx_plc *p)
{
    const int16_t *ref = p->pitchbuf + p->hist - p->corr_len;
    const int16_t *base = ref - p->pitch_max;
    int32_t diff = p->pitch_max - p->pitch_min;
    double best = score(base, ref, p->corr_len, p->ndec, MIN_POWER);
    int32_t best_j = 0;
    for (int32_t j = p->ndec; j <= diff; j += p->ndec) {
        double sc = score(base + j, ref, p->corr_len, p->ndec, MIN_POWER);
        if (sc >= best) {
            best = sc;
            best_j = j;
        }
    }
    int32_t lo = best_j - (p->ndec - 1), hi = best_j + (p->ndec - 1);
    if (lo < 0) lo = 0;
    if (hi > diff) hi = diff;
    int64_t fine_floor = (int64_t)MIN_POWER * p->ndec / 2;
    best = score(base + lo, ref, p->corr_len, 1, fine_floor);
    int32_t match = lo;
    for (int32_t j = lo + 1; j <= hi; j++) {
        double sc = score(base + j, ref, p->corr_len, 1, fine_floor);
        if (sc > best) {
            best = sc;
            match = j;
        }
    }
    return p->pitch_max - match;
}

static void conceal_block(pbx_plc *p, int16_t *out)
{
    int16_t s[80 * PBX_PLC_MAX_K];
    int32_t h = p->hist;
    if (p->erasecnt == 0) {
        memcpy(p->pitchbuf, p->history, (size_t)h * sizeof(int16_t));
        p->pitch = find_pitch(p);
        p->poverlap = p->pitch >> 2;
        memcpy(p->lastq, p->pitchbuf + h - p->poverlap, (size_t)p->poverlap * sizeof(int16_t));
        p->poffset = 0;
        p->pitchblen = p->pitch;
        tail_ola(p);
        memcpy(p->history + h - p->poverlap, p->pitchbuf + h - p->poverlap,
               (size_t)p->poverlap * sizeof(int16_t));
        fespeech(p, s, p->block);
    } else if (p->erasecnt == 1 || p->erasecnt == 2) {
        int16_t old[PBX_PLC_OVERLAP_MAX];
        int32_t saved = p->poffset;
        fespeech(p, old, p->poverlap);
        p->poffset = saved;
        while (p->poffset > p->pitch) p->poffset -= p->pitch;
        p->pitchblen += p->pitch;
        tail_ola(p);
        fespeech(p, s, p->block);
        ola(old, s, s, p->poverlap);
        attenuate(p, s);
    } else if (p->erasecnt >= SILENT_AFTER) {
        memset(s, 0, (size_t)p->block * sizeof(int16_t));
    } else {
        fespeech(p, s, p->block);
        attenuate(p, s);
    }
    if (p->erasecnt < MAX_ERASED) p->erasecnt++;
    save(p, s, out, p->block);
}

void pbx_plc_good(pbx_plc *p, const int16_t *in, int16_t *out, size_t n)
{
    int16_t chunk[80 * PBX_PLC_MAX_K], conceal[80 * PBX_PLC_MAX_K];
    for (size_t start = 0; start < n; start += (size_t)p->block) {
        int32_t len = (int32_t)(n - start < (size_t)p->block ? n - start : (size_t)p->block);
        memcpy(chunk, in + start, (size_t)len * sizeof(int16_t));
        if (p->erasecnt) {
            int64_t olen = p->poverlap + (int64_t)(p->erasecnt - 1) * p->eoverlap_incr;
            if (olen > p->block) olen = p->block;
            if (olen > len) olen = len;
            fespeech(p, conceal, (int32_t)olen);
            int64_t e = p->erasecnt;
            int64_t gain = (32768 * (ATTEN_BLOCKS + 1 - e)) / ATTEN_BLOCKS;
            if (gain < 0) gain = 0;
            for (int64_t i = 0; i < olen; i++) {
                int64_t lw = (gain * (olen - 1 - i)) / olen;
                int64_t rw = ((i + 1) << 15) / olen;
                chunk[i] = sat16((conceal[i] * lw + chunk[i] * rw + 16384) >> 15);
            }
            p->erasecnt = 0;
        }
        save(p, chunk, out + start, len);
    }
}

int pbx_plc_missing(pbx_plc *p, int16_t *out, size_t n)
{
    if (n % (size_t)p->block) return -1;
    for (size_t start = 0; start < n; start += (size_t)p->block) conceal_block(p, out + start);
    return 0;
}
