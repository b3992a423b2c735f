/* Conference mixing kernel: every listener gets the saturated sum of the others (never itself). */
#ifndef PBX_MIX_H
#define PBX_MIX_H
#include <stdint.h>
#include <stddef.h>

/* Per-participant flags. */
#define PBX_MIX_MUTED 1       /* contributes nothing this tick (muted, or no input) */
#define PBX_MIX_DEAF 2        /* receives nothing: its output row is not written */
#define PBX_MIX_MAX_PARTIES 65535 /* keeps every int32 partial sum exact */

/* Scratch (int32 entries) needed by the mixers when some participant whispers; up to
 * PBX_MIX_LOCAL_PARTIES participants the kernel uses its own (2 KB of stack) instead. */
#define PBX_MIX_WORK_INTS(n) (2 * (n))
#define PBX_MIX_LOCAL_PARTIES 256

/*
 * Mix one tick for n participants of `samples` samples each.
 *
 * Listener j (not DEAF) gets sat16(sum of in[i] over contributing i != j that do not whisper,
 * plus in[w] for every contributing w whose whisper_to[w] == j). Participant i contributes when
 * it is not MUTED (and, for pbx_mix_ptrs, in[i] != NULL). whisper_to[i] >= 0 takes i out of the
 * common sum; its audio reaches listener whisper_to[i] only (nobody when that index is out of
 * range or i itself). whisper_to may be NULL (nobody whispers); -1 means "not whispering".
 * work: PBX_MIX_WORK_INTS(n) int32 of scratch; may be NULL when nobody whispers or
 * n <= PBX_MIX_LOCAL_PARTIES.
 * Cost O(n * samples), one pass over the inputs and one over the outputs.
 * Returns 0, or -1 (nothing written) when n > PBX_MIX_MAX_PARTIES or work is missing.
 */

/* Rows of one contiguous block: participant i at in + i*stride and out + i*stride. */
int pbx_mix_rows(const int16_t *in, int16_t *out, size_t stride, const uint8_t *flags,
                 const int32_t *whisper_to, size_t n, size_t samples, int32_t *work);

/* One pointer per participant; in[i] == NULL is silence, out[i] == NULL is not written. */
int pbx_mix_ptrs(const int16_t *const *in, int16_t *const *out, const uint8_t *flags,
                 const int32_t *whisper_to, size_t n, size_t samples, int32_t *work);
#endif
