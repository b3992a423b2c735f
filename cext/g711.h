#ifndef PBX_G711_H
#define PBX_G711_H
#include <stdint.h>
#include <stddef.h>
void pbx_ulaw_encode(const int16_t *pcm, uint8_t *out, size_t n);
void pbx_ulaw_decode(const uint8_t *in, int16_t *pcm, size_t n);
void pbx_alaw_encode(const int16_t *pcm, uint8_t *out, size_t n);
void pbx_alaw_decode(const uint8_t *in, int16_t *pcm, size_t n);
#endif
