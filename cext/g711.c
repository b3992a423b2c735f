/* G.711 mu-law and A-law companding (ITU-T G.711), batch kernels over int16 PCM. */
#include <stdint.h>
#include <stddef.h>
#include "g711.h"

#define ULAW_BIAS 0x84
#define ULAW_CLIP 32635

static uint8_t linear_to_ulaw(int16_t pcm)
{
    int sign = (pcm >> 8) & 0x80;
    int value = pcm;
    if (sign) value = -value;
    if (value > ULAW_CLIP) value = ULAW_CLIP;
    value += ULAW_BIAS;
    int exponent = 7;
    for (int mask = 0x4000; (value & mask) == 0 && exponent > 0; mask >>= 1) exponent--;
    int mantissa = (value >> (exponent + 3)) & 0x0F;
    return (uint8_t)~(sign | (exponent << 4) | mantissa);
}

static int16_t ulaw_to_linear(uint8_t code)
{
    code = (uint8_t)~code;
    int sign = code & 0x80;
    int exponent = (code >> 4) & 0x07;
    int mantissa = code & 0x0F;
    int value = ((mantissa << 3) + ULAW_BIAS) << exponent;
    value -= ULAW_BIAS;
    return (int16_t)(sign ? -value : value);
}

static uint8_t linear_to_alaw(int16_t pcm)
{
    int value = pcm;
    int mask;
    if (value >= 0) {
        mask = 0xD5;
    } else {
        mask = 0x55;
        value = -value - 1;
    }
    value >>= 3; /* 13-bit magnitude */
    int seg;
    if (value < 32) {
        return (uint8_t)(((value >> 1) & 0x0F) ^ mask);
    }
    seg = 1;
    while (seg < 8 && value >= (32 << seg)) seg++;
    if (seg >= 8) return (uint8_t)(0x7F ^ mask);
    return (uint8_t)(((seg << 4) | ((value >> seg) & 0x0F)) ^ mask);
}

static int16_t alaw_to_linear(uint8_t code)
{
    code ^= 0x55;
    int seg = (code & 0x70) >> 4;
    int value = (code & 0x0F) << 4;
    if (seg == 0) value += 8;
    else value = (value + 0x108) << (seg - 1);
    return (int16_t)((code & 0x80) ? value : -value);
}

void pbx_ulaw_encode(const int16_t *pcm, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) out[i] = linear_to_ulaw(pcm[i]);
}

void pbx_ulaw_decode(const uint8_t *in, int16_t *pcm, size_t n)
{
    for (size_t i = 0; i < n; i++) pcm[i] = ulaw_to_linear(in[i]);
}

void pbx_alaw_encode(const int16_t *pcm, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) out[i] = linear_to_alaw(pcm[i]);
}

void pbx_alaw_decode(const uint8_t *in, int16_t *pcm, size_t n)
{
    for (size_t i = 0; i < n; i++) pcm[i] = alaw_to_linear(in[i]);
}
