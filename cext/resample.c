/*
 * Rational resampler: Kaiser-windowed sinc prototype at src * up, split into `up` polyphase rows
 * of `taps` Q15 coefficients (each row sums to 32768); 64-bit integer sums, round half up,
 * saturate. Twin of pbx.media.resample.PyResampler: the design below performs the same IEEE
 * double operations in the same order as the Python one, so the tables and outputs are identical.
 */
#if defined(__GNUC__) && !defined(__clang__)
/* The design must round exactly like the Python twin: no fused multiply-add. The dot product
 * should be vectorized (pmaddwd) even at -O2. */
#pragma GCC optimize("fp-contract=off", "tree-vectorize")
#endif
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "resample.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif
#define ATTEN_DB 70.0
#define BLOCK 1024 /* input samples per inner pass */

struct pbx_resampler {
    int32_t up, down, taps;
    int64_t pos;      /* upsampled position of the next output, relative to the block start */
    int32_t *coefs;   /* up * taps, as designed: coefs[p * taps + t] multiplies x[n - t] */
    int16_t *rev;     /* the same rows reversed (rev[p * taps + taps - 1 - t]), for forward
                         int16 x int16 -> int32 dot products over `chunk` taps at a time */
    int32_t chunk;    /* taps per int32 partial sum (every window of it has sum |c| < 65536,
                         so no partial sum can overflow); 0: use the int64 path */
    int16_t *buf;     /* taps - 1 history samples, then up to BLOCK new ones */
};

/* Exact int16 dot product in int32: the caller keeps sum |c| < 65536 (see design()). */
static int32_t dot16(const int16_t *restrict c, const int16_t *restrict x, int32_t n)
{
    int32_t acc = 0;
    for (int32_t t = 0; t < n; t++) acc += c[t] * x[t];
    return acc;
}

static int64_t gcd64(int64_t a, int64_t b)
{
    while (b) {
        int64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

static double bessel_i0(double x)
{
    double half = x / 2.0, term = 1.0, total = 1.0;
    for (int k = 1;; k++) {
        term = term * half / k;
        double sq = term * term;
        total = total + sq;
        if (sq < total * 1e-21) return total;
    }
}

static int design(pbx_resampler *r, int32_t src, int32_t dst)
{
    double beta = 0.1102 * (ATTEN_DB - 8.7);
    int64_t up = r->up, taps = r->taps, n = up * taps;
    int32_t fmin = src < dst ? src : dst;
    int64_t fu = (int64_t)src * up;
    double fc = (93.0 * fmin) / (200.0 * fu);
    double centre = (n - 1) / 2.0;
    double i0b = bessel_i0(beta);
    for (int64_t k = 0; k < n; k++) {
        double t = k - centre;
        double h = t == 0.0 ? 2.0 * fc : sin(2.0 * M_PI * fc * t) / (M_PI * t);
        double rr = 2.0 * k / (n - 1) - 1.0;
        double w = bessel_i0(beta * sqrt(1.0 - rr * rr)) / i0b;
        int64_t p = k % up, tap = k / up;
        r->coefs[p * taps + tap] = (int32_t)floor(up * (h * w) * 32768.0 + 0.5);
    }
    for (int64_t p = 0; p < up; p++) {
        int32_t *row = r->coefs + p * taps;
        int64_t sum = 0;
        int64_t big = 0;
        for (int64_t t = 0; t < taps; t++) {
            sum += row[t];
            if (llabs((long long)row[t]) > llabs((long long)row[big])) big = t;
        }
        row[big] += (int32_t)(32768 - sum);
    }
    /* int16 rows for the fast path, and the longest chunk (a multiple of 8 taps) whose partial
     * sums provably fit an int32: sum |c| * 32768 < 2**31 over every window of that length. */
    r->chunk = 0;
    for (int64_t i = 0; i < n; i++)
        if (r->coefs[i] < -32768 || r->coefs[i] > 32767) return 0;
    for (int64_t p = 0; p < up; p++)
        for (int64_t t = 0; t < taps; t++)
            r->rev[p * taps + taps - 1 - t] = (int16_t)r->coefs[p * taps + t];
    for (int64_t size = 8;; size += 8) {
        int64_t worst = 0;
        for (int64_t p = 0; p < up && worst < 65536; p++) {
            const int32_t *row = r->coefs + p * taps;
            int64_t win = 0;
            for (int64_t t = 0; t < taps; t++) {
                win += llabs((long long)row[t]);
                if (t >= size) win -= llabs((long long)row[t - size]);
                if (win > worst) worst = win;
            }
        }
        if (worst >= 65536) break;
        r->chunk = (int32_t)size;
        if (size >= taps) break;
    }
    return 0;
}

pbx_resampler *pbx_resample_new(int32_t src, int32_t dst)
{
    if (src <= 0 || dst <= 0 || src > 1000000 || dst > 1000000) return NULL;
    int64_t g = gcd64(src, dst);
    int64_t up = dst / g, down = src / g;
    if (up > PBX_RESAMPLE_MAX_UP) return NULL;
    int32_t fmin = src < dst ? src : dst;
    int64_t fu = (int64_t)src * up;
    double dw = 2.0 * M_PI * (7.0 * fmin) / (100.0 * fu);
    int64_t n0 = (int64_t)ceil((ATTEN_DB - 8.0) / (2.285 * dw)) + 1;
    int64_t taps = (n0 + up - 1) / up;
    if (taps < 2) taps = 2;
    if (taps * up > PBX_RESAMPLE_MAX_TAPS) return NULL;
    pbx_resampler *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->up = (int32_t)up;
    r->down = (int32_t)down;
    r->taps = (int32_t)taps;
    r->coefs = malloc(sizeof(int32_t) * (size_t)(up * taps));
    r->rev = malloc(sizeof(int16_t) * (size_t)(up * taps));
    r->buf = calloc((size_t)(taps - 1 + BLOCK), sizeof(int16_t));
    if (!r->coefs || !r->rev || !r->buf) {
        pbx_resample_free(r);
        return NULL;
    }
    design(r, src, dst);
    return r;
}

void pbx_resample_free(pbx_resampler *r)
{
    if (!r) return;
    free(r->coefs);
    free(r->rev);
    free(r->buf);
    free(r);
}

void pbx_resample_reset(pbx_resampler *r)
{
    memset(r->buf, 0, sizeof(int16_t) * (size_t)(r->taps - 1));
    r->pos = 0;
}

size_t pbx_resample_max_out(const pbx_resampler *r, size_t n)
{
    return (size_t)(((int64_t)n * r->up) / r->down) + 1;
}

size_t pbx_resample_process(pbx_resampler *r, const int16_t *in, size_t n, int16_t *out)
{
    const int64_t up = r->up, down = r->down, taps = r->taps, hist = taps - 1;
    size_t produced = 0;
    while (n > 0) {
        size_t k = n < BLOCK ? n : BLOCK;
        memcpy(r->buf + hist, in, k * sizeof(int16_t));
        /* Output positions pos, pos + down, ... below k * up, walked as (input index, phase)
         * without a division per sample. */
        int64_t idx = r->pos / up, phase = r->pos % up;
        const int64_t step_idx = down / up, step_phase = down % up;
        for (; idx < (int64_t)k; idx += step_idx) {
            const int16_t *x = r->buf + hist + idx;         /* newest input of this output */
            int64_t acc = 0;
            if (r->chunk) {
                const int16_t *c = r->rev + phase * taps, *xs = x - hist;
                for (int64_t t = 0; t < taps; t += r->chunk) {
                    int64_t len = taps - t < r->chunk ? taps - t : r->chunk;
                    acc += dot16(c + t, xs + t, (int32_t)len);
                }
            } else {
                const int32_t *c = r->coefs + phase * taps;
                for (int64_t t = 0; t < taps; t++) acc += (int64_t)c[t] * x[-t];
            }
            acc = (acc + 16384) >> 15;
            out[produced++] = (int16_t)(acc < -32768 ? -32768 : acc > 32767 ? 32767 : acc);
            phase += step_phase;
            if (phase >= up) {
                phase -= up;
                idx++;
            }
        }
        r->pos = idx * up + phase - (int64_t)k * up;
        memmove(r->buf, r->buf + k, (size_t)hist * sizeof(int16_t));
        in += k;
        n -= k;
    }
    return produced;
}

void pbx_resample_info(const pbx_resampler *r, int32_t *up, int32_t *down, int32_t *taps)
{
    *up = r->up;
    *down = r->down;
    *taps = r->taps;
}

const int32_t *pbx_resample_coefs(const pbx_resampler *r) { return r->coefs; }
