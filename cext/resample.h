/* Rational sample-rate conversion with a Kaiser-windowed sinc polyphase FIR (Q15, integer). */
#ifndef PBX_RESAMPLE_H
#define PBX_RESAMPLE_H
#include <stdint.h>
#include <stddef.h>

#define PBX_RESAMPLE_MAX_UP 2048        /* largest interpolation factor dst/gcd(src, dst) */
#define PBX_RESAMPLE_MAX_TAPS (1 << 19) /* largest prototype length up * taps */

typedef struct pbx_resampler pbx_resampler;

/*
 * A streaming converter from src_rate to dst_rate (1 .. 1,000,000 Hz), starting from silence.
 * Designs the filter (same double arithmetic as pbx.media.resample, so identical Q15 tables).
 * Returns NULL for unsupported ratios (see the limits above) or when out of memory.
 */
pbx_resampler *pbx_resample_new(int32_t src_rate, int32_t dst_rate);
void pbx_resample_free(pbx_resampler *r);
/* Back to silence and phase 0. */
void pbx_resample_reset(pbx_resampler *r);
/* Upper bound of the samples pbx_resample_process returns for n input samples. */
size_t pbx_resample_max_out(const pbx_resampler *r, size_t n);
/* Convert the next n samples of the stream; writes and returns the number of output samples. */
size_t pbx_resample_process(pbx_resampler *r, const int16_t *in, size_t n, int16_t *out);
/* Interpolation factor, decimation factor and taps per phase. */
void pbx_resample_info(const pbx_resampler *r, int32_t *up, int32_t *down, int32_t *taps);
/* The coefficient table, up * taps int32 in Q15, row per phase: coefs[phase * taps + tap]. */
const int32_t *pbx_resample_coefs(const pbx_resampler *r);
#endif
