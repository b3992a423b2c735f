/* In-band DTMF detector; the readable reference is pbx/media/inband.py (PyInbandDetector). */
#include "goertzel.h"

#include <math.h>
#include <string.h>

static const double pbx_goertzel_freqs[PBX_GOERTZEL_NFREQ] = {
    697.0, 770.0, 852.0, 941.0, 1209.0, 1336.0, 1477.0, 1633.0,
};
static const char pbx_goertzel_keys[16] = {
    '1', '2', '3', 'A', '4', '5', '6', 'B', '7', '8', '9', 'C', '*', '0', '#', 'D',
};

/* Timing, in windows of 102 samples at 8 kHz stepped by 51 (6.375 ms). */
#define PBX_GOERTZEL_HITS 4
#define PBX_GOERTZEL_MISSES 4
/* Levels: a full-scale sine is +3.14 dBm0; each tone must be at least -36 dBm0. */
#define PBX_GOERTZEL_FULL_SCALE_DBM0 3.14
#define PBX_GOERTZEL_MIN_DBM0 (-36.0)
#define PBX_GOERTZEL_NORMAL_TWIST_DB 8.0
#define PBX_GOERTZEL_REVERSE_TWIST_DB 4.0
#define PBX_GOERTZEL_REL_PEAK_DB 8.0
#define PBX_GOERTZEL_ENERGY_RATIO 0.65

static double pbx_goertzel_db(double db) { return pow(10.0, db / 10.0); }

int pbx_goertzel_init(pbx_goertzel_det *d, int rate)
{
    int i;
    double peak;
    if (rate < 8000 || rate > 48000 || rate % 8000 != 0)
        return -1;
    memset(d, 0, sizeof(*d));
    d->rate = rate;
    d->win = PBX_GOERTZEL_WIN_8K * (rate / 8000);
    d->hop = d->win / 2;
    d->hits_to_begin = PBX_GOERTZEL_HITS;
    d->misses_to_end = PBX_GOERTZEL_MISSES;
    peak = 32767.0 * pow(10.0, (PBX_GOERTZEL_MIN_DBM0 - PBX_GOERTZEL_FULL_SCALE_DBM0) / 20.0);
    d->min_power = peak * peak / 2.0;
    d->normal_twist = pbx_goertzel_db(PBX_GOERTZEL_NORMAL_TWIST_DB);
    d->reverse_twist = pbx_goertzel_db(PBX_GOERTZEL_REVERSE_TWIST_DB);
    d->rel_peak = pbx_goertzel_db(PBX_GOERTZEL_REL_PEAK_DB);
    d->energy_ratio = PBX_GOERTZEL_ENERGY_RATIO;
    for (i = 0; i < PBX_GOERTZEL_NFREQ; i++)
        d->coef[i] = 2.0 * cos(2.0 * M_PI * pbx_goertzel_freqs[i] / (double)rate);
    pbx_goertzel_reset(d);
    return 0;
}

void pbx_goertzel_reset(pbx_goertzel_det *d)
{
    d->fill = 0;
    d->digit = -1;
    d->streak_digit = -1;
    d->streak = 0;
    d->misses = 0;
    d->last_hit = -1;
}

void pbx_goertzel_energies(const pbx_goertzel_det *d, const int16_t *x, double *energy,
                           double *total)
{
    int k, n;
    double sum = 0.0;
    for (n = 0; n < d->win; n++)
        sum += (double)x[n] * (double)x[n];
    *total = sum;
    for (k = 0; k < PBX_GOERTZEL_NFREQ; k++) {
        double c = d->coef[k], s1 = 0.0, s2 = 0.0;
        for (n = 0; n < d->win; n++) {
            double s0 = (double)x[n] + c * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        energy[k] = s1 * s1 + s2 * s2 - c * s1 * s2;
    }
}

/* Index of the largest of 4 values, the first on ties; *ok is cleared unless it beats every
 * other one by the factor rel. */
static int pbx_goertzel_best(const double *p, double rel, int *ok)
{
    int i, best = 0;
    for (i = 1; i < 4; i++)
        if (p[i] > p[best])
            best = i;
    for (i = 0; i < 4; i++)
        if (i != best && p[i] * rel > p[best])
            *ok = 0;
    return best;
}

int pbx_goertzel_classify(const pbx_goertzel_det *d, const double *energy, double total)
{
    double p[PBX_GOERTZEL_NFREQ], n2 = (double)d->win * (double)d->win;
    int i, ok = 1, row, col;
    for (i = 0; i < PBX_GOERTZEL_NFREQ; i++)
        p[i] = 2.0 * energy[i] / n2; /* mean-square power of the component */
    row = pbx_goertzel_best(p, d->rel_peak, &ok);
    col = pbx_goertzel_best(p + 4, d->rel_peak, &ok);
    double pr = p[row], pc = p[4 + col];
    if (!ok || pr < d->min_power || pc < d->min_power)
        return -1;
    if (pr > pc * d->normal_twist || pc > pr * d->reverse_twist)
        return -1;
    if (pr + pc < d->energy_ratio * (total / (double)d->win))
        return -1;
    return row * 4 + col;
}

/* One window: classify, then advance the hit/miss timing. Returns the new digit or -1. */
static int pbx_goertzel_window(pbx_goertzel_det *d)
{
    int hit;
    pbx_goertzel_energies(d, d->buf, d->energy, &d->total);
    hit = pbx_goertzel_classify(d, d->energy, d->total);
    d->last_hit = hit;
    d->windows++;
    if (d->digit < 0) {
        if (hit < 0) {
            d->streak_digit = -1;
            d->streak = 0;
        } else if (hit == d->streak_digit) {
            d->streak++;
        } else {
            d->streak_digit = hit;
            d->streak = 1;
        }
        if (d->streak >= d->hits_to_begin) {
            d->digit = hit;
            d->misses = 0;
            return hit;
        }
    } else if (hit == d->digit) {
        d->misses = 0;
    } else if (++d->misses >= d->misses_to_end) {
        d->digit = -1;
        d->streak_digit = -1;
        d->streak = 0;
    }
    return -1;
}

size_t pbx_goertzel_feed(pbx_goertzel_det *d, const int16_t *pcm, size_t n, char *digits,
                         size_t max_digits)
{
    size_t i, found = 0;
    for (i = 0; i < n; i++) {
        d->buf[d->fill++] = pcm[i];
        if (d->fill == d->win) {
            int digit = pbx_goertzel_window(d);
            if (digit >= 0 && found < max_digits)
                digits[found++] = pbx_goertzel_keys[digit];
            else if (digit >= 0)
                d->dropped++;
            memmove(d->buf, d->buf + d->hop, (size_t)(d->win - d->hop) * sizeof(int16_t));
            d->fill = d->win - d->hop;
        }
    }
    return found;
}
