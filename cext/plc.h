/* Packet-loss concealment after ITU-T G.711 Appendix I, integer arithmetic, 8..48 kHz. */
#ifndef PBX_PLC_H
#define PBX_PLC_H
#include <stdint.h>
#include <stddef.h>

#define PBX_PLC_MAX_K 6                              /* rate / 8000 at most (48 kHz) */
#define PBX_PLC_HIST_MAX (390 * PBX_PLC_MAX_K)       /* 3 longest pitch periods + overlap */
#define PBX_PLC_OVERLAP_MAX (30 * PBX_PLC_MAX_K)     /* quarter of the longest period */

typedef struct {
    int32_t pitch;      /* period found at the start of the current or last loss (samples) */
    int32_t erasecnt;   /* consecutive 10 ms blocks concealed (0 while frames arrive) */
    int32_t rate, block, pitch_min, pitch_max, overlap_max, hist, corr_len, ndec, eoverlap_incr;
    int32_t poverlap, poffset, pitchblen;
    int16_t history[PBX_PLC_HIST_MAX];
    int16_t pitchbuf[PBX_PLC_HIST_MAX];
    int16_t lastq[PBX_PLC_OVERLAP_MAX];
} pbx_plc;

/* Set up for rate 8000, 16000, 24000, 32000 or 48000; returns 0, or -1 for another rate. */
int pbx_plc_init(pbx_plc *p, int32_t rate);
/* Output delay in samples (3.75 ms): every frame comes out this much later than it went in. */
int32_t pbx_plc_delay(const pbx_plc *p);
/* A received frame of n samples (any n): writes n delayed samples to out (out may be in). */
void pbx_plc_good(pbx_plc *p, const int16_t *in, int16_t *out, size_t n);
/* Conceal n lost samples (n a multiple of 10 ms); returns 0, or -1 (nothing done) otherwise. */
int pbx_plc_missing(pbx_plc *p, int16_t *out, size_t n);
#endif
