/* Native media engine: every RTP socket of the process behind one epoll descriptor.
 *
 * The Python shell (pbx.media.engine) creates and binds the sockets, registers the engine's
 * epoll fd with its event loop and calls pbx_engine_drain() when it is readable: one call reads
 * every ready socket, checks each packet (RTP v2 header, source address, symmetric-RTP latching,
 * payload type), counts it and then either relays it (SSRC/sequence/timestamp rewritten, payload
 * type mapped, sent out of the partner stream) or, for a terminated stream (one with media set),
 * puts it in the stream's jitter buffer (packets of N x 10 ms of G.711, G.722 or L16 cut into or
 * joined to 20 ms frames first, each in its own slot); telephone-event packets are also handed
 * to Python as events (the RFC 4733 receiver runs there: they are rare), and so is the RTCP of
 * terminated streams (Python parses it and sends the reports; C keeps the RFC 3550 A.1/A.8
 * receiver statistics of the peer's source per packet, pbx_engine_stream_rtcp_info).
 *
 * pbx_engine_tick() runs once per 20 ms media tick and does all the per-frame work of all
 * streams in one call: RTP timeouts; for every terminated stream jitter-buffer playout, decoding
 * or concealment (G.711 Appendix I PLC), in-band DTMF detection and the receive recording tap;
 * conference mixing (sum minus self, mute, deaf, whisper; resampled to and from the conference
 * rate); then per stream the frame to send (the next entry of its playout ring, which Python
 * fills a few frames ahead, else its conference mix, else silence), the send recording tap,
 * encoding and sending with the stream's own SSRC, sequence and timestamps. Python sees events
 * (digits, telephone-event packets, timeouts, latching) and the frames it asks for, never single
 * packets.
 *
 * Codecs in C: PCMU, PCMA, G.722, L16 (mono, and stereo down-mixed). A stream whose codec C does
 * not have (Opus) is "external": the tick splits in two (pbx_engine_tick_rx / _tick_tx) and
 * Python decodes and encodes its frames in between (pbx_engine_ext_*).
 *
 * The per-packet and per-frame decisions are also exposed as pure functions and a per-stream
 * media core (pbx_engine_media_*) so they can be checked against their Python twins in
 * pbx.media._engine_core and pbx.media._engine_media.
 */
#ifndef PBX_ENGINE_H
#define PBX_ENGINE_H
#include <stddef.h>
#include <stdint.h>

/* pbx_engine_rtp_check results */
#define PBX_ENGINE_RTP 0
#define PBX_ENGINE_MALFORMED 1
#define PBX_ENGINE_RTCP 2

/* pbx_engine_rx_verdict results */
#define PBX_ENGINE_ACCEPT 0
#define PBX_ENGINE_LATCHED 1      /* accepted, and the stream's remote is now the source */
#define PBX_ENGINE_DROP_SOURCE 2  /* not from the peer (and not (yet) latched) */
#define PBX_ENGINE_DROP_PT 3      /* payload type not negotiated */

/* event kinds */
#define PBX_ENGINE_EV_TIMEOUT 1
#define PBX_ENGINE_EV_LATCHED 2
#define PBX_ENGINE_EV_DIGIT 3       /* in-band digit ended: digit, duration_ms */
#define PBX_ENGINE_EV_TELEVENT 4    /* a telephone-event packet: pt, marker, seq, ts, payload */

/* codec kinds of a media configuration (pt_kind entries, send_kind) */
#define PBX_ENGINE_KIND_NONE 0
#define PBX_ENGINE_KIND_PCMU 1
#define PBX_ENGINE_KIND_PCMA 2
#define PBX_ENGINE_KIND_G722 3
#define PBX_ENGINE_KIND_L16 4
#define PBX_ENGINE_KIND_L16_STEREO 5
#define PBX_ENGINE_KIND_EXTERNAL 6  /* decoded and encoded by the caller (Opus) */
#define PBX_ENGINE_KIND_EVENT 7     /* telephone-event (RFC 4733) */

/* pbx_engine_media_rx results */
#define PBX_ENGINE_RX_FRAME 0       /* a frame was decoded */
#define PBX_ENGINE_RX_CONCEALED 1   /* loss, underflow or an undecodable frame: concealed */
#define PBX_ENGINE_RX_SILENCE 2     /* before the first packet, or the sender paused: silence */

/* playout ring entry kinds */
#define PBX_ENGINE_ENTRY_PCM 0
#define PBX_ENGINE_ENTRY_EVENT 1

/* recording taps */
#define PBX_ENGINE_TAP_RX 1
#define PBX_ENGINE_TAP_TX 2

/* conference member flags (as in cext/mix.h) */
#define PBX_ENGINE_CONF_MUTED 1
#define PBX_ENGINE_CONF_DEAF 2

#define PBX_ENGINE_MAX_FRAME 960    /* PCM samples of 20 ms at 48 kHz */
#define PBX_ENGINE_EV_PAYLOAD 64    /* telephone-event payload bytes an event carries */
#define PBX_ENGINE_RING 8           /* playout ring entries per stream (160 ms) */
#define PBX_ENGINE_RING_LOW 3       /* ask Python for more at or below this many */
#define PBX_ENGINE_TAP_FRAMES 100   /* recording tap capacity per direction (2 s) */
#define PBX_ENGINE_SILENCE_PEAK 256 /* a received frame below this everywhere is silence */

/* A transport address in a form cheap to compare: family is 4 or 6, port in host order, ip in
 * network order (4 bytes used for IPv4, the rest zero). */
typedef struct {
    uint16_t family;
    uint16_t port;
    uint8_t ip[16];
} pbx_engine_addr;

/* Receive-side acceptance state of one stream: who may send to it. */
typedef struct {
    pbx_engine_addr remote;
    int has_remote;
    int latch_n;            /* 0: latching off; else packets needed to latch to a new source */
    pbx_engine_addr cand;   /* latching candidate */
    uint32_t cand_ssrc;
    uint16_t cand_seq;
    int cand_count;
    int pt_filter;          /* 0: any payload type accepted */
    uint8_t pt_mask[16];    /* bit (pt & 7) of byte (pt >> 3): payload type accepted */
} pbx_engine_rx;

/* Send-side state of one stream: the RTP sequence space it sends in. Relayed packets are mapped
 * into it by fixed offsets, re-anchored (resync) when the source changes; packets the engine
 * makes itself (pbx_engine_tx_next) continue it one 20 ms step at a time. */
typedef struct {
    uint32_t ssrc;          /* this leg's stable SSRC */
    uint32_t clock_rate;
    uint16_t seq;           /* highest sequence number sent */
    uint32_t ts;            /* timestamp sent with it */
    double sent_at;         /* when it was sent */
    int has_sent;
    int synced;             /* offsets valid for the current source */
    int resync;             /* re-anchor on the next packet (relay start, peer changed) */
    uint32_t in_ssrc;       /* current source */
    uint16_t in_seq;        /* highest source sequence number */
    uint32_t in_ts;         /* its timestamp */
    uint32_t ts_step;       /* timestamp increment between consecutive source packets */
    uint16_t seq_off;
    uint32_t ts_off;
    int local;              /* the last packet sent was made by the engine (not relayed) */
} pbx_engine_tx;

typedef struct {
    uint64_t packets_in, bytes_in, packets_out, bytes_out, rtcp_in;
    uint64_t dropped_malformed, dropped_source, dropped_payload_type, dropped_unrouted;
    uint64_t send_errors, latched, timeouts;
} pbx_engine_counters;

typedef struct {
    int kind;
    int slot;
    double at;
    pbx_engine_addr addr;   /* latched: the new remote */
    char digit;             /* digit: the character */
    int32_t duration_ms;    /* digit: how long it was held */
    uint8_t pt;             /* televent: the packet's payload type, marker bit, sequence ... */
    uint8_t marker;
    uint16_t seq;
    uint32_t ts;
    int32_t len;            /* ... and payload (len bytes; -1 when it did not fit) */
    uint8_t payload[PBX_ENGINE_EV_PAYLOAD];
} pbx_engine_event;

typedef struct {
    uint64_t wakeups;       /* pbx_engine_drain calls */
    uint64_t rounds;        /* epoll_wait calls that returned ready sockets */
    uint64_t packets;       /* datagrams read */
    uint64_t max_batch;     /* most datagrams read in one pbx_engine_drain call */
    uint64_t ticks;
    uint64_t events_lost;   /* events dropped because Python did not collect them */
    uint64_t recv_errors;
    uint64_t tick_ns;       /* time spent in ticks (CLOCK_MONOTONIC), total ... */
    uint64_t tick_ns_max;   /* ... and the longest tick */
    uint64_t frames_sent;   /* packets the engine made itself (terminated streams) */
    uint64_t tap_lost;      /* recording frames dropped because Python did not collect them */
} pbx_engine_totals;

/* What a terminated stream receives and sends. Delays in ms (jb_fixed < 0: adaptive). */
typedef struct {
    int32_t send_kind;      /* PBX_ENGINE_KIND_PCMU .. _EXTERNAL: the codec we send with */
    int32_t send_pt;
    int32_t sample_rate;    /* PCM rate of the stream's frames (the send codec's) */
    int32_t clock_rate;     /* its RTP clock rate */
    int32_t te_pt;          /* telephone-event payload type we send with, -1: none */
    int32_t sends;          /* 0: send nothing (recvonly, inactive, held) */
    int32_t jb_min, jb_max, jb_start, jb_fixed;
    uint8_t pt_kind[128];   /* what each received payload type carries (NONE: not negotiated) */
    int32_t ptime;          /* ms of audio per packet we send: 10 to 120 in 10 ms steps for
                             * G.711, G.722 and L16 (if the packet fits); anything else: 20 */
} pbx_engine_media_config;

/* One decoded or concealed 20 ms frame's in-band digit report. */
typedef struct {
    char digit;             /* 0: no digit ended in this frame */
    int32_t duration_ms;
} pbx_engine_digit;

typedef struct pbx_engine pbx_engine;
typedef struct pbx_engine_media pbx_engine_media;

/* Engine lifetime. NULL (errno set) on failure. */
pbx_engine *pbx_engine_new(int max_events);
void pbx_engine_free(pbx_engine *e);
int pbx_engine_fd(const pbx_engine *e);

/* Streams. fd (and rtcp_fd, or -1 with rtcp-mux) are bound non-blocking UDP sockets the caller
 * owns and closes after pbx_engine_stream_remove. Returns the stream's slot, or -1 (errno). */
int pbx_engine_stream_add(pbx_engine *e, int fd, int rtcp_fd, uint32_t ssrc, uint16_t seq0,
                          uint32_t ts0);
int pbx_engine_stream_remove(pbx_engine *e, int slot);
/* pt_mask: 16 bytes, or NULL for any payload type. latch_n 0 disables latching. timeout <= 0
 * disables the RTP timeout. */
int pbx_engine_stream_set_remote(pbx_engine *e, int slot, const pbx_engine_addr *remote,
                                 const uint8_t *pt_mask, uint32_t clock_rate, int latch_n,
                                 double timeout, double now);
int pbx_engine_stream_set_timeout(pbx_engine *e, int slot, double timeout, double now);
int pbx_engine_stream_counters(const pbx_engine *e, int slot, pbx_engine_counters *out);
int pbx_engine_stream_remote(const pbx_engine *e, int slot, pbx_engine_addr *out);
/* pt_map_ab: 128 bytes (payload type of packets from a as sent out of b), or NULL: unchanged. */
int pbx_engine_relay(pbx_engine *e, int a, int b, const uint8_t *pt_map_ab,
                     const uint8_t *pt_map_ba);
int pbx_engine_unrelay(pbx_engine *e, int slot);

/* Terminated streams. set_media (cfg NULL: back to a plain stream) keeps the jitter buffer and
 * codec state when only payload types, telephone-event or direction change; otherwise it starts
 * afresh and empties the playout ring. Returns the PCM samples per frame, or -1. */
int pbx_engine_stream_set_media(pbx_engine *e, int slot, const pbx_engine_media_config *cfg);
int pbx_engine_stream_set_inband(pbx_engine *e, int slot, int on);
/* Jitter-buffer counters in the order of pbx.rtp.jitter.JitterBuffer.counters() (16 values). */
int pbx_engine_stream_jitter(const pbx_engine *e, int slot, int64_t *out);

/* Playout ring: Python pushes frames (at the stream's rate) or telephone-event payloads a few
 * ticks ahead; every tick of a sending stream takes one entry. push returns the entries taken
 * (fewer when the ring is full). status returns the entries queued and stores the count of
 * entries consumed (sent or flushed) since the stream was added. want: put the stream on the
 * feed list whenever a tick leaves PBX_ENGINE_RING_LOW entries or fewer. */
int pbx_engine_play_push(pbx_engine *e, int slot, const int16_t *pcm, int frames);
int pbx_engine_play_push_event(pbx_engine *e, int slot, const uint8_t *payload, int len,
                               int marker, uint32_t ts_off);
int pbx_engine_play_status(const pbx_engine *e, int slot, uint64_t *consumed);
int pbx_engine_play_flush(pbx_engine *e, int slot);
int pbx_engine_play_want(pbx_engine *e, int slot, int on);
/* Slots that asked for frames during the last ticks (each once); clears the list. */
int pbx_engine_feed_list(pbx_engine *e, int *slots, int max);

/* Recording taps: mode PBX_ENGINE_TAP_RX | _TX (0: off, buffer dropped). tap_read moves up to
 * max frames of each enabled direction (rx first) out and returns how many frames per direction. */
int pbx_engine_tap(pbx_engine *e, int slot, int mode);
int pbx_engine_tap_read(pbx_engine *e, int slot, int16_t *rx, int16_t *tx, int max);

/* Conferences: ids >= 0. Changes take effect at the next tick. whisper_to: a member's slot, or
 * -1 (heard by everyone). A stream is in at most one conference. */
int pbx_engine_conf_new(pbx_engine *e, int rate);
int pbx_engine_conf_free(pbx_engine *e, int conf);
int pbx_engine_conf_join(pbx_engine *e, int conf, int slot, int flags);
int pbx_engine_conf_leave(pbx_engine *e, int slot);
int pbx_engine_conf_set(pbx_engine *e, int slot, int flags, int whisper_to);
/* The conference's mix of everyone (whispers excepted) as a tap: on/off, read like tap_read. */
int pbx_engine_conf_tap(pbx_engine *e, int conf, int on);
int pbx_engine_conf_tap_read(pbx_engine *e, int conf, int16_t *out, int max);

/* The hot calls. drain returns the datagrams it read and stores the number of events waiting
 * for pbx_engine_events in *events; tick returns that number. tick = tick_rx + tick_tx; with
 * external (Opus) streams the caller runs the ext_* calls between the two halves. */
int pbx_engine_drain(pbx_engine *e, double now, int *events);
int pbx_engine_tick(pbx_engine *e, double now);
int pbx_engine_tick_rx(pbx_engine *e, double now);
int pbx_engine_tick_tx(pbx_engine *e, double now);
int pbx_engine_events(pbx_engine *e, pbx_engine_event *out, int max);
void pbx_engine_get_totals(const pbx_engine *e, pbx_engine_totals *out);

/* External codec streams, between tick_rx and tick_tx: ext_list gives the external streams;
 * ext_rx the jitter buffer's verdict for this tick (a PBX_JB_* code; PBX_JB_FRAME with the
 * payload in payload/len); ext_rx_pcm hands back the decoded (or concealed) frame. After
 * tick_tx: ext_tx gives the frame to encode (1) or nothing to send (0); ext_send sends it. */
int pbx_engine_ext_list(const pbx_engine *e, int *slots, int max);
int pbx_engine_ext_rx(const pbx_engine *e, int slot, uint8_t *payload, int max, int *len);
int pbx_engine_ext_rx_pcm(pbx_engine *e, int slot, const int16_t *pcm, double now);
int pbx_engine_ext_tx(const pbx_engine *e, int slot, int16_t *pcm);
int pbx_engine_ext_send(pbx_engine *e, int slot, const uint8_t *payload, int len, double now);

/* Pure per-packet kernels (the twins of pbx.media._engine_core). */
int pbx_engine_rtp_check(const uint8_t *pkt, size_t len);
int pbx_engine_rx_verdict(pbx_engine_rx *rx, const pbx_engine_addr *src, uint32_t ssrc,
                          uint16_t seq, uint8_t pt);
void pbx_engine_tx_init(pbx_engine_tx *tx, uint32_t ssrc, uint16_t seq0, uint32_t ts0,
                        uint32_t clock_rate);
void pbx_engine_tx_rewrite(pbx_engine_tx *tx, uint8_t *pkt, double now);
/* Sequence number and timestamp of the next packet the engine makes itself (step: timestamp
 * units per 20 ms); returns the marker bit (first packet, or after a pause or relayed ones). */
int pbx_engine_tx_next(pbx_engine_tx *tx, uint32_t step, double now, uint16_t *seq,
                       uint32_t *ts);

/* The per-stream media core (the twin of pbx.media._engine_media.MediaCore): jitter buffer,
 * decoder and concealment, in-band detector, encoder. put takes a packet that passed
 * pbx_engine_rtp_check and returns the jitter buffer's PBX_JB_* verdict (-1: payload type not
 * in the configuration); rx makes the tick's frame (frame samples into pcm) and reports a digit
 * that ended in it; encode returns the payload length. */
pbx_engine_media *pbx_engine_media_new(const pbx_engine_media_config *cfg);
void pbx_engine_media_free(pbx_engine_media *m);
int pbx_engine_media_frame(const pbx_engine_media *m);
int pbx_engine_media_set_inband(pbx_engine_media *m, int on);
int pbx_engine_media_put(pbx_engine_media *m, const uint8_t *pkt, size_t len, int64_t now_us);
int pbx_engine_media_rx(pbx_engine_media *m, int64_t now_us, int16_t *pcm,
                        pbx_engine_digit *digit);
int pbx_engine_media_encode(pbx_engine_media *m, const int16_t *pcm, uint8_t *payload);
void pbx_engine_media_jitter(const pbx_engine_media *m, int64_t *out);
/* Whether a payload of a kind is silence (1), speech (0) or unknown (-1), for the jitter buffer. */
int pbx_engine_silent_payload(int kind, const uint8_t *payload, size_t len);

/* RTCP of terminated streams (PBX_ENGINE_EV_RTCP events: seq is the packet's index for
 * pbx_engine_rtcp_read, len its length) and what a report needs to know about a stream. */
#define PBX_ENGINE_EV_RTCP 5
#define PBX_ENGINE_RTCP_RING 64
#define PBX_ENGINE_RTCP_MAX 1500
typedef struct {
    int32_t has_source;     /* packets of the peer's SSRC are being counted */
    uint32_t ssrc;          /* the peer's */
    int64_t received, expected;
    uint32_t jitter;        /* interarrival jitter, RTP timestamp units (as a report carries it) */
    uint64_t jitter_q4;     /* ... times 16 */
    uint8_t fraction;       /* with report: loss since the last report, 1/256 */
    int32_t cumulative;     /* with report: cumulative loss (24-bit clamped) */
    uint32_t ext_highest;   /* with report: extended highest sequence number */
    uint32_t tx_ssrc, tx_ts; /* ours: SSRC, timestamp of the last packet sent, and when */
    double tx_sent_at;
    int32_t tx_has_sent;
} pbx_engine_rtcp_info;
/* Copy captured RTCP packet index out (once); its length, or -1. */
int pbx_engine_rtcp_read(pbx_engine *e, int index, uint8_t *buf, int max);
/* Report figures (report: take fraction/cumulative/ext_highest and start a new interval). */
int pbx_engine_stream_rtcp_info(pbx_engine *e, int slot, int report, pbx_engine_rtcp_info *out);

#endif
