#ifndef PBX_GOERTZEL_H
#define PBX_GOERTZEL_H
/* In-band DTMF detector: Goertzel filters on the 8 DTMF frequencies over windows of 12.75 ms
 * (102 samples at 8 kHz) every 6.375 ms (half overlap), with level, twist, peak-dominance and
 * in-band-energy checks per window, and hit/miss counting for timing (see pbx/media/inband.py,
 * the reference twin). All state lives in pbx_goertzel_det; no globals. */
#include <stddef.h>
#include <stdint.h>

#define PBX_GOERTZEL_NFREQ 8
#define PBX_GOERTZEL_WIN_8K 102
#define PBX_GOERTZEL_MAX_WIN (PBX_GOERTZEL_WIN_8K * 6)

typedef struct pbx_goertzel_det {
    int rate;            /* samples per second, a multiple of 8000 up to 48000 */
    int win;             /* window length in samples */
    int hop;             /* window step (win / 2) */
    int fill;            /* samples waiting in buf */
    int digit;           /* index (row * 4 + col) of the digit being held, -1 when none */
    int streak_digit;    /* digit of the current run of hits, -1 when none */
    int streak;          /* windows in that run */
    int misses;          /* windows without the held digit since it was last seen */
    int hits_to_begin;   /* run length that reports a digit */
    int misses_to_end;   /* misses that end a held digit */
    double min_power;    /* minimum mean-square power of each tone */
    double normal_twist; /* max low-group / high-group power ratio */
    double reverse_twist;/* max high-group / low-group power ratio */
    double rel_peak;     /* min ratio of the best row (col) to every other row (col) */
    double energy_ratio; /* min share of the window's power in the two tones */
    double coef[PBX_GOERTZEL_NFREQ];   /* 2 cos(2 pi f / rate) */
    double energy[PBX_GOERTZEL_NFREQ]; /* |X(f)|^2 of the last window */
    double total;        /* sum of x^2 of the last window */
    int last_hit;        /* classification of the last window */
    uint64_t windows;    /* windows analysed */
    uint64_t dropped;    /* digits that did not fit the caller's buffer */
    int16_t buf[PBX_GOERTZEL_MAX_WIN];
} pbx_goertzel_det;

/* 0 on success, -1 when rate is not a multiple of 8000 in 8000..48000. */
int pbx_goertzel_init(pbx_goertzel_det *d, int rate);
/* Forget the signal (buffer and timing state); thresholds and counters are kept. */
void pbx_goertzel_reset(pbx_goertzel_det *d);
/* |X(f)|^2 for the 8 frequencies (rows 697..941, then cols 1209..1633) of d->win samples, and
 * the sum of their squares. */
void pbx_goertzel_energies(const pbx_goertzel_det *d, const int16_t *x, double *energy,
                           double *total);
/* Digit index 0..15 (row * 4 + col) when the window holds a valid DTMF pair, else -1. */
int pbx_goertzel_classify(const pbx_goertzel_det *d, const double *energy, double total);
/* Feed n samples; writes the characters of newly detected digits to digits (at most
 * max_digits, the rest are counted in d->dropped) and returns how many it wrote. A digit needs
 * at least 4 hops, so n / (2 * d->win) + 1 characters always suffice. */
size_t pbx_goertzel_feed(pbx_goertzel_det *d, const int16_t *pcm, size_t n, char *digits,
                         size_t max_digits);
#endif
