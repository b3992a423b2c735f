/* Conference mixing: total-minus-self in int32 with saturation, whispers on the side. O(N). */
#include <stdint.h>
#include <stddef.h>
#include <string.h>
#include "mix.h"

/* Samples per pass: the int32 accumulators stay in L1 whatever the frame length. */
#define CHUNK 480

/* Where the rows live: a contiguous block (base + i*stride) or one pointer each. */
typedef struct {
    const int16_t *in_base;
    int16_t *out_base;
    const int16_t *const *in_ptrs;
    int16_t *const *out_ptrs;
    size_t stride;
} rows_t;

static inline const int16_t *in_row(const rows_t *r, size_t i)
{
    return r->in_ptrs ? r->in_ptrs[i] : r->in_base + i * r->stride;
}

static inline int16_t *out_row(const rows_t *r, size_t i)
{
    return r->out_ptrs ? r->out_ptrs[i] : r->out_base + i * r->stride;
}

static inline int16_t sat16(int32_t v)
{
    return (int16_t)(v > 32767 ? 32767 : v < -32768 ? -32768 : v);
}

/* The loops below go 8 samples at a time so that -O2 (GCC's very-cheap vector cost model,
 * which leaves loops of unknown trip count scalar) still turns each block into SIMD code. */
#define BLOCK 8

static void add_row(int32_t *restrict acc, const int16_t *restrict x, size_t len)
{
    size_t s = 0;
    for (; s + BLOCK <= len; s += BLOCK)
        for (size_t k = 0; k < BLOCK; k++) acc[s + k] += x[s + k];
    for (; s < len; s++) acc[s] += x[s];
}

static void out_minus(int16_t *restrict y, const int32_t *restrict acc,
                      const int16_t *restrict x, size_t len)
{
    size_t s = 0;
    for (; s + BLOCK <= len; s += BLOCK)
        for (size_t k = 0; k < BLOCK; k++) y[s + k] = sat16(acc[s + k] - x[s + k]);
    for (; s < len; s++) y[s] = sat16(acc[s] - x[s]);
}

static void out_plain(int16_t *restrict y, const int32_t *restrict acc, size_t len)
{
    size_t s = 0;
    for (; s + BLOCK <= len; s += BLOCK)
        for (size_t k = 0; k < BLOCK; k++) y[s + k] = sat16(acc[s + k]);
    for (; s < len; s++) y[s] = sat16(acc[s]);
}

static int mix_core(const rows_t *r, const uint8_t *flags, const int32_t *whisper_to,
                    size_t n, size_t samples, int32_t *work)
{
    if (n > PBX_MIX_MAX_PARTIES) return -1;
    int32_t *head = NULL, *next = NULL;
    int any_whisper = 0;
    if (whisper_to) {
        for (size_t i = 0; i < n && !any_whisper; i++) any_whisper = whisper_to[i] >= 0;
    }
    int32_t local[PBX_MIX_WORK_INTS(PBX_MIX_LOCAL_PARTIES)];
    if (any_whisper) {
        if (!work && n <= PBX_MIX_LOCAL_PARTIES) work = local;
        if (!work) return -1;
        head = work;          /* head[t]: first whisperer heard by t, or -1 */
        next = work + n;      /* next[w]: next whisperer with the same target */
        for (size_t t = 0; t < n; t++) head[t] = -1;
        for (size_t k = n; k-- > 0;) {
            int32_t t = whisper_to[k];
            if (t < 0 || (size_t)t >= n || (size_t)t == k) continue;
            if ((flags[k] & PBX_MIX_MUTED) || !in_row(r, k)) continue;
            next[k] = head[t];
            head[t] = (int32_t)k;
        }
    }

    int32_t acc[CHUNK], tmp[CHUNK];
    for (size_t off = 0; off < samples; off += CHUNK) {
        size_t len = samples - off < CHUNK ? samples - off : CHUNK;
        memset(acc, 0, len * sizeof acc[0]);
        for (size_t i = 0; i < n; i++) {
            const int16_t *x = in_row(r, i);
            if (!x || (flags[i] & PBX_MIX_MUTED) || (whisper_to && whisper_to[i] >= 0)) continue;
            add_row(acc, x + off, len);
        }
        for (size_t j = 0; j < n; j++) {
            int16_t *y = out_row(r, j);
            if (!y || (flags[j] & PBX_MIX_DEAF)) continue;
            const int16_t *x = in_row(r, j);
            int common = x && !(flags[j] & PBX_MIX_MUTED) && !(whisper_to && whisper_to[j] >= 0);
            if (head && head[j] >= 0) {
                memcpy(tmp, acc, len * sizeof tmp[0]);
                if (common)
                    for (size_t s = 0; s < len; s++) tmp[s] -= x[off + s];  /* rare path */
                for (int32_t w = head[j]; w >= 0; w = next[w])
                    add_row(tmp, in_row(r, (size_t)w) + off, len);
                out_plain(y + off, tmp, len);
            } else if (common) {
                out_minus(y + off, acc, x + off, len);
            } else {
                out_plain(y + off, acc, len);
            }
        }
    }
    return 0;
}

int pbx_mix_rows(const int16_t *in, int16_t *out, size_t stride, const uint8_t *flags,
                 const int32_t *whisper_to, size_t n, size_t samples, int32_t *work)
{
    rows_t r = {in, out, NULL, NULL, stride};
    return mix_core(&r, flags, whisper_to, n, samples, work);
}

int pbx_mix_ptrs(const int16_t *const *in, int16_t *const *out, const uint8_t *flags,
                 const int32_t *whisper_to, size_t n, size_t samples, int32_t *work)
{
    rows_t r = {NULL, NULL, in, out, 0};
    return mix_core(&r, flags, whisper_to, n, samples, work);
}
