/* Native media engine: every RTP socket of the process behind one epoll descriptor.
 *
 * The Python shell (pbx.media.engine) creates and binds the sockets, registers the engine's
 * epoll fd with its event loop and calls pbx_engine_drain() when it is readable: one call reads
 * every ready socket, checks each packet (RTP v2 header, source address, symmetric-RTP latching,
 * payload type), counts it and, for relayed streams, rewrites SSRC/sequence/timestamp and sends
 * it out of the partner stream. pbx_engine_tick() runs once per 20 ms media tick. Python sees
 * events (RTP timeout, latched) and counters, never single packets.
 *
 * The per-packet decisions are also exposed as pure functions (pbx_engine_rtp_check,
 * pbx_engine_rx_verdict, pbx_engine_tx_rewrite) so they can be checked against their Python twin
 * in pbx.media._engine_core.
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
 * into it by fixed offsets, re-anchored (resync) when the source changes. */
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
} pbx_engine_event;

typedef struct {
    uint64_t wakeups;       /* pbx_engine_drain calls */
    uint64_t rounds;        /* epoll_wait calls that returned ready sockets */
    uint64_t packets;       /* datagrams read */
    uint64_t max_batch;     /* most datagrams read in one pbx_engine_drain call */
    uint64_t ticks;
    uint64_t events_lost;   /* events dropped because Python did not collect them */
    uint64_t recv_errors;
} pbx_engine_totals;

typedef struct pbx_engine pbx_engine;

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
int pbx_engine_relay(pbx_engine *e, int a, int b);
int pbx_engine_unrelay(pbx_engine *e, int slot);

/* The two hot calls. drain returns the datagrams it read and stores the number of events
 * waiting for pbx_engine_events in *events; tick returns that number. */
int pbx_engine_drain(pbx_engine *e, double now, int *events);
int pbx_engine_tick(pbx_engine *e, double now);
int pbx_engine_events(pbx_engine *e, pbx_engine_event *out, int max);
void pbx_engine_get_totals(const pbx_engine *e, pbx_engine_totals *out);

/* Pure per-packet kernels (the twins of pbx.media._engine_core). */
int pbx_engine_rtp_check(const uint8_t *pkt, size_t len);
int pbx_engine_rx_verdict(pbx_engine_rx *rx, const pbx_engine_addr *src, uint32_t ssrc,
                          uint16_t seq, uint8_t pt);
void pbx_engine_tx_init(pbx_engine_tx *tx, uint32_t ssrc, uint16_t seq0, uint32_t ts0,
                        uint32_t clock_rate);
void pbx_engine_tx_rewrite(pbx_engine_tx *tx, uint8_t *pkt, double now);

#endif
