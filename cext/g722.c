/*
 * ITU-T G.722 (SB-ADPCM) encoder and decoder, 64 kbit/s mode, written from the block description
 * of the Recommendation (16-bit fixed point, saturating add/sub/mult). Twin of pbx.media.g722
 * (the Python reference); both produce identical bytes and samples.
 */
#include <stdint.h>
#include <stddef.h>
#include <string.h>
#include "g722.h"

static const int16_t QMF[24] = {3, -11, -11, 53, 12, -156, 32, 362, -210, -805, 951, 3876,
                                3876, 951, -805, -210, 362, 32, -156, 12, 53, -11, -11, 3};
static const int16_t Q6[30] = {0, 35, 72, 110, 150, 190, 233, 276, 323, 370, 422, 473, 530,
                               587, 650, 714, 786, 858, 940, 1023, 1121, 1219, 1339, 1458,
                               1612, 1765, 1980, 2195, 2557, 2919};
static const int16_t OQ4[8] = {0, 150, 323, 530, 786, 1121, 1612, 2557};
static const uint8_t RIL4[16] = {0, 7, 6, 5, 4, 3, 2, 1, 7, 6, 5, 4, 3, 2, 1, 0};
static const int16_t OQ6[31] = {0, 17, 54, 91, 130, 170, 211, 254, 300, 347, 396, 447, 501,
                                558, 618, 682, 750, 822, 899, 982, 1072, 1170, 1279, 1399,
                                1535, 1689, 1873, 2088, 2376, 2738, 3101};
static const int16_t WL[8] = {-60, -30, 58, 172, 334, 538, 1198, 3042};
static const int16_t OQ2[3] = {0, 202, 926};
static const uint8_t IH2[4] = {2, 1, 2, 1};
static const int16_t WH[3] = {0, -214, 798};
static const int16_t ILB[32] = {2048, 2093, 2139, 2186, 2233, 2282, 2332, 2383, 2435, 2489,
                                2543, 2599, 2656, 2714, 2774, 2834, 2896, 2960, 3025, 3091,
                                3158, 3228, 3298, 3371, 3444, 3520, 3597, 3676, 3756, 3838,
                                3922, 4008};

static inline int32_t sat(int32_t x) { return x < -32768 ? -32768 : x > 32767 ? 32767 : x; }
static inline int32_t mult(int32_t a, int32_t b) { return sat((a * b) >> 15); }
static inline int32_t clamp(int32_t x, int32_t lo, int32_t hi) { return x < lo ? lo : x > hi ? hi : x; }

/* 6-bit code of the lower band for interval mil (1..30) of a positive / negative error. */
static int il_pos(int mil) { return 62 - mil; }
static int il_neg(int mil) { return mil == 1 ? 63 : mil == 2 ? 62 : 34 - mil; }
/* 6-bit code -> level index and sign for the decoder's 64 kbit/s inverse quantizer. */
static int ril6(int il)
{
    if (il < 4) return 1;
    if (il < 32) return 34 - il;
    if (il < 60) return 62 - il;
    return (il & 1) ? 1 : 2;
}
static int neg6(int il) { return il < 32 || il >= 62; }

static int32_t scale(int32_t nb, int shift)
{
    int32_t mant = ILB[(nb >> 6) & 31];
    int e = shift - (nb >> 11);
    return (e >= 0 ? mant >> e : mant << -e) << 2;
}

static void band_init(pbx_g722_band *b, int32_t det)
{
    memset(b, 0, sizeof *b);
    b->det = det;
}

static void adapt(pbx_g722_band *bd, int32_t dq)
{
    int32_t *d = bd->d, *b = bd->b, *a = bd->a, *p = bd->p, *r = bd->r;
    d[0] = dq;
    p[0] = sat(dq + bd->sz);
    r[0] = sat(bd->s + dq);
    int32_t step = dq != 0 ? 128 : 0;
    int neg0 = dq < 0;
    for (int i = 6; i > 0; i--) {
        b[i] = sat(((d[i] < 0) == neg0 ? step : -step) + mult(b[i], 32640));
        d[i] = d[i - 1];
    }
    int n0 = p[0] < 0, n1 = p[1] < 0, n2 = p[2] < 0;
    int32_t wd1 = sat(a[1] * 4);
    int32_t wd2 = (n0 == n1 ? sat(-wd1) : wd1) >> 7;
    int32_t a2 = sat(sat(wd2 + (n0 == n2 ? 128 : -128)) + mult(a[2], 32512));
    a[2] = clamp(a2, -12288, 12288);
    int32_t a1 = sat((n0 == n1 ? 192 : -192) + mult(a[1], 32640));
    int32_t lim = sat(15360 - a[2]);
    if (a1 > lim) a1 = lim;
    else if (sat(a1 + lim) < 0) a1 = -lim;
    p[2] = p[1];
    p[1] = p[0];
    a[1] = a1;
    int32_t sz = 0;
    for (int i = 6; i > 0; i--) sz = sat(sz + mult(sat(d[i] + d[i]), b[i]));
    r[2] = r[1];
    r[1] = r[0];
    int32_t sp = sat(mult(a[1], sat(r[1] + r[1])) + mult(a[2], sat(r[2] + r[2])));
    bd->sz = sz;
    bd->s = sat(sp + sz);
}

static void low_update(pbx_g722_band *bd, int il)
{
    int ril = il >> 2;
    int32_t level = OQ4[RIL4[ril]] << 3;
    int32_t dq = mult(bd->det, (ril >= 1 && ril <= 7) ? -level : level);
    bd->nb = clamp(sat(mult(bd->nb, 32512) + WL[RIL4[ril]]), 0, 18432);
    bd->det = scale(bd->nb, 8);
    adapt(bd, dq);
}

static void high_update(pbx_g722_band *bd, int ih)
{
    int32_t level = OQ2[IH2[ih]] << 3;
    int32_t dq = mult(ih < 2 ? -level : level, bd->det);
    bd->nb = clamp(sat(mult(bd->nb, 32512) + WH[IH2[ih]]), 0, 22528);
    bd->det = scale(bd->nb, 10);
    adapt(bd, dq);
}

static int quant_low(int32_t el, int32_t det)
{
    int32_t wd = el >= 0 ? el : 32767 - (el & 32767);
    /* First mil in 1..29 whose level exceeds wd, else 30 (levels rise with mil: bisect). */
    int lo = 1, hi = 30;
    while (lo < hi) {
        int mid = (lo + hi) >> 1;
        if (mult(Q6[mid] << 3, det) <= wd) lo = mid + 1;
        else hi = mid;
    }
    return el >= 0 ? il_pos(lo) : il_neg(lo);
}

static int quant_high(int32_t eh, int32_t det)
{
    int32_t wd = eh >= 0 ? eh : 32767 - (eh & 32767);
    int big = wd >= mult(564 << 3, det);
    if (eh >= 0) return big ? 2 : 3;
    return big ? 0 : 1;
}

void pbx_g722_init(pbx_g722_state *st)
{
    band_init(&st->low, 32);
    band_init(&st->high, 8);
    memset(st->qmf, 0, sizeof st->qmf);
}

size_t pbx_g722_encode(pbx_g722_state *st, const int16_t *pcm, size_t n, uint8_t *out)
{
    int32_t *x = st->qmf;
    size_t pairs = n / 2;
    for (size_t k = 0; k < pairs; k++) {
        memmove(x + 2, x, 22 * sizeof *x);
        x[1] = pcm[2 * k];
        x[0] = pcm[2 * k + 1];
        int32_t even = 0, odd = 0;
        for (int i = 0; i < 24; i += 2) {
            even += QMF[i] * x[i];
            odd += QMF[i + 1] * x[i + 1];
        }
        int32_t xl = clamp((even + odd) >> 14, -16384, 16383);
        int32_t xh = clamp((even - odd) >> 14, -16384, 16383);
        int il = quant_low(sat(xl - st->low.s), st->low.det);
        low_update(&st->low, il);
        int ih = quant_high(sat(xh - st->high.s), st->high.det);
        high_update(&st->high, ih);
        out[k] = (uint8_t)((ih << 6) | il);
    }
    return pairs;
}

size_t pbx_g722_decode(pbx_g722_state *st, const uint8_t *in, size_t n, int16_t *pcm)
{
    int32_t *y = st->qmf;
    for (size_t k = 0; k < n; k++) {
        int il = in[k] & 0x3F, ih = in[k] >> 6;
        int32_t level = OQ6[ril6(il)] << 3;
        int32_t dl = mult(st->low.det, neg6(il) ? -level : level);
        int32_t rl = clamp(sat(st->low.s + dl), -16384, 16383);
        low_update(&st->low, il);
        high_update(&st->high, ih);
        int32_t rh = clamp(st->high.r[0], -16384, 16383);
        memmove(y + 2, y, 22 * sizeof *y);
        y[1] = sat(rl + rh);
        y[0] = sat(rl - rh);
        int32_t even = 0, odd = 0;
        for (int i = 0; i < 24; i += 2) {
            even += QMF[i] * y[i];
            odd += QMF[i + 1] * y[i + 1];
        }
        pcm[2 * k] = (int16_t)clamp(even >> 11, -32768, 32767);
        pcm[2 * k + 1] = (int16_t)clamp(odd >> 11, -32768, 32767);
    }
    return 2 * n;
}
