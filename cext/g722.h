/* ITU-T G.722 SB-ADPCM codec, 64 kbit/s mode: 16 kHz int16 PCM <-> one byte per sample pair. */
#ifndef PBX_G722_H
#define PBX_G722_H
#include <stdint.h>
#include <stddef.h>

/* Adaptive predictor and scale factor of one sub-band (G.722 block 4). */
typedef struct {
    int32_t det, nb, s, sz;
    int32_t a[3], b[7], d[7], p[3], r[3];
} pbx_g722_band;

/* One direction of one stream: an encoder or a decoder (the QMF line serves either). */
typedef struct {
    pbx_g722_band low, high;
    int32_t qmf[24];
} pbx_g722_state;

/* Reset to the initial state of G.722 (both directions). */
void pbx_g722_init(pbx_g722_state *st);
/* Encode n samples (n even; an odd last sample is ignored) into n/2 bytes; returns n/2. */
size_t pbx_g722_encode(pbx_g722_state *st, const int16_t *pcm, size_t n, uint8_t *out);
/* Decode n bytes into 2n samples; returns 2n. */
size_t pbx_g722_decode(pbx_g722_state *st, const uint8_t *in, size_t n, int16_t *pcm);
#endif
