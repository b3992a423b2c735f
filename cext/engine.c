/* Native media engine (phase 1: relay). See engine.h for the contract.
 *
 * One epoll descriptor holds every RTP (and RTCP) socket, level-triggered; epoll data is
 * (slot << 1 | is_rtcp). pbx_engine_drain() polls it with a zero timeout and reads ONE datagram
 * (recvfrom) from each ready socket per round, until a round finds nothing ready (or a budget is
 * spent); a socket with more waiting is simply reported again by the next round, so a flooded
 * socket cannot starve the others. One socket per leg sees about one packet per wake-up, so the
 * win is doing all ready sockets in one call, not batching per socket: recvmmsg (needed to make
 * edge triggering safe) measured about 8 % more CPU per packet than recvfrom with level
 * triggering, whose only extra is one cheap re-poll per socket read.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "engine.h"
#include "rtp.h"

#define RTP_MAX_MISORDER 100
#define RTP_MAX_DROPOUT 3000
#define PKT_BUF 2048
#define EPOLL_BATCH 256
#define DRAIN_BUDGET 8192 /* datagrams per pbx_engine_drain call, so the loop gets a turn */

typedef struct pbx_engine_stream {
    int slot;
    int fd;
    int rtcp_fd;
    pbx_engine_rx rx;
    pbx_engine_tx tx;
    pbx_engine_counters c;
    struct sockaddr_storage remote_sa; /* rx.remote as a sockaddr, to send to */
    socklen_t remote_salen;
    int relay;        /* slot of the relay partner, or -1 */
    double timeout;   /* seconds without accepted packets before an RTP timeout event */
    double last_rx;   /* last accepted packet (or when the timeout was armed) */
    int timed_out;    /* event sent; re-armed by the next accepted packet */
    /* Phase 2 extension points. Receive side, in on_rtp() where relay < 0: RFC 4733 receiver,
     * jitter-buffer insert (decoder and PLC run at playout). Send side, in pbx_engine_tick():
     * jitter-buffer get + decode, mixer slot (sum minus self), playout source, encoder,
     * recording taps, then send with tx as the sequence space. Each will be a pointer to its
     * module's own state struct (cext/jitter.h, cext/mix.h, ...), NULL when unused. */
} pbx_engine_stream;

struct pbx_engine {
    int epfd;
    pbx_engine_stream **slots;
    int cap;
    int *free_slots;
    int nfree;
    pbx_engine_event *events;
    int max_events;
    int ev_head;
    int ev_count;
    pbx_engine_totals totals;
    uint8_t buf[PKT_BUF];
};

/* ---- pure kernels ------------------------------------------------------------------------ */

static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }

static inline uint32_t rd32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline void wr16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static inline void wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

int pbx_engine_rtp_check(const uint8_t *pkt, size_t len)
{
    if (len < 4 || (pkt[0] >> 6) != 2) return PBX_ENGINE_MALFORMED;
    if (pbx_rtp_is_rtcp(pkt, len)) /* RTCP packet types 192-223 (RFC 5761 section 4) */
        return (len >= 8 && len % 4 == 0) ? PBX_ENGINE_RTCP : PBX_ENGINE_MALFORMED;
    pbx_rtp_hdr h; /* phase 2 hands the parsed header to the jitter buffer / RFC 4733 receiver */
    return pbx_rtp_parse(pkt, len, &h) == PBX_RTP_OK ? PBX_ENGINE_RTP : PBX_ENGINE_MALFORMED;
}

static inline int addr_eq(const pbx_engine_addr *a, const pbx_engine_addr *b)
{
    return a->port == b->port && a->family == b->family && memcmp(a->ip, b->ip, 16) == 0;
}

int pbx_engine_rx_verdict(pbx_engine_rx *rx, const pbx_engine_addr *src, uint32_t ssrc,
                          uint16_t seq, uint8_t pt)
{
    pt &= 0x7f;
    if (rx->pt_filter && !(rx->pt_mask[pt >> 3] & (1u << (pt & 7)))) return PBX_ENGINE_DROP_PT;
    if (rx->has_remote && addr_eq(src, &rx->remote)) return PBX_ENGINE_ACCEPT;
    if (rx->latch_n <= 0) return PBX_ENGINE_DROP_SOURCE;
    if (rx->cand_count > 0 && addr_eq(src, &rx->cand) && ssrc == rx->cand_ssrc
        && seq == (uint16_t)(rx->cand_seq + 1)) {
        rx->cand_count++;
        rx->cand_seq = seq;
    } else {
        rx->cand = *src;
        rx->cand_ssrc = ssrc;
        rx->cand_seq = seq;
        rx->cand_count = 1;
    }
    if (rx->cand_count >= rx->latch_n) {
        rx->remote = rx->cand;
        rx->has_remote = 1;
        rx->cand_count = 0;
        return PBX_ENGINE_LATCHED;
    }
    return PBX_ENGINE_DROP_SOURCE;
}

void pbx_engine_tx_init(pbx_engine_tx *tx, uint32_t ssrc, uint16_t seq0, uint32_t ts0,
                        uint32_t clock_rate)
{
    memset(tx, 0, sizeof *tx);
    tx->ssrc = ssrc;
    tx->clock_rate = clock_rate ? clock_rate : 8000;
    tx->seq = (uint16_t)(seq0 - 1); /* the first anchor maps the first packet to seq0, ts0 */
    tx->ts = ts0;
    tx->ts_step = tx->clock_rate / 50;
}

void pbx_engine_tx_rewrite(pbx_engine_tx *tx, uint8_t *pkt, double now)
{
    uint16_t in_seq = rd16(pkt + 2);
    uint32_t in_ts = rd32(pkt + 4);
    uint32_t in_ssrc = rd32(pkt + 8);
    int same = 0;
    if (tx->synced && !tx->resync && in_ssrc == tx->in_ssrc) {
        int d = (int16_t)(uint16_t)(in_seq - tx->in_seq);
        if (d >= -RTP_MAX_MISORDER && d < RTP_MAX_DROPOUT) {
            same = 1;
            if (d > 0) {
                uint32_t step = in_ts - tx->in_ts;
                if (d == 1 && step != 0 && step <= tx->clock_rate) tx->ts_step = step;
                tx->in_seq = in_seq;
                tx->in_ts = in_ts;
            }
        }
    }
    if (!same) { /* new source: continue our sequence space right after what we last sent */
        uint32_t gap = 0;
        if (tx->has_sent) { /* the time since our last packet, at least one packet's worth */
            double x = (now - tx->sent_at) * (double)tx->clock_rate;
            x = x + 0.5;
            uint64_t g = x <= 0.0 ? 0 : x >= 1e18 ? (uint64_t)1e18 : (uint64_t)x;
            if (g < tx->ts_step) g = tx->ts_step;
            gap = (uint32_t)g;
        }
        tx->seq_off = (uint16_t)(tx->seq + 1 - in_seq);
        tx->ts_off = tx->ts + gap - in_ts;
        tx->in_ssrc = in_ssrc;
        tx->in_seq = in_seq;
        tx->in_ts = in_ts;
        tx->synced = 1;
        tx->resync = 0;
        pkt[1] |= 0x80; /* marker: the receiver's playout should resynchronise here */
    }
    uint16_t out_seq = (uint16_t)(in_seq + tx->seq_off);
    uint32_t out_ts = in_ts + tx->ts_off;
    if (!tx->has_sent || (int16_t)(uint16_t)(out_seq - tx->seq) > 0) {
        tx->seq = out_seq;
        tx->ts = out_ts;
        tx->sent_at = now;
        tx->has_sent = 1;
    }
    wr16(pkt + 2, out_seq);
    wr32(pkt + 4, out_ts);
    wr32(pkt + 8, tx->ssrc);
}

/* ---- engine --------------------------------------------------------------------------------- */

pbx_engine *pbx_engine_new(int max_events)
{
    pbx_engine *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    e->max_events = max_events > 0 ? max_events : 4096;
    e->events = calloc((size_t)e->max_events, sizeof *e->events);
    e->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (!e->events || e->epfd < 0) {
        int err = errno;
        if (e->epfd >= 0) close(e->epfd);
        free(e->events);
        free(e);
        errno = err ? err : ENOMEM;
        return NULL;
    }
    return e;
}

void pbx_engine_free(pbx_engine *e)
{
    if (!e) return;
    for (int i = 0; i < e->cap; i++) free(e->slots[i]);
    free(e->slots);
    free(e->free_slots);
    free(e->events);
    close(e->epfd);
    free(e);
}

int pbx_engine_fd(const pbx_engine *e) { return e->epfd; }

static pbx_engine_stream *get(const pbx_engine *e, int slot)
{
    return (slot >= 0 && slot < e->cap) ? e->slots[slot] : NULL;
}

static void emit(pbx_engine *e, int kind, int slot, double at, const pbx_engine_addr *addr)
{
    if (e->ev_count >= e->max_events) {
        e->totals.events_lost++;
        return;
    }
    pbx_engine_event *ev = &e->events[(e->ev_head + e->ev_count) % e->max_events];
    e->ev_count++;
    ev->kind = kind;
    ev->slot = slot;
    ev->at = at;
    if (addr)
        ev->addr = *addr;
    else
        memset(&ev->addr, 0, sizeof ev->addr);
}

static int grow(pbx_engine *e)
{
    int cap = e->cap ? e->cap * 2 : 64;
    pbx_engine_stream **slots = realloc(e->slots, (size_t)cap * sizeof *slots);
    if (!slots) return -1;
    e->slots = slots;
    int *fs = realloc(e->free_slots, (size_t)cap * sizeof *fs);
    if (!fs) return -1;
    e->free_slots = fs;
    for (int i = cap - 1; i >= e->cap; i--) { /* lowest slot handed out first */
        slots[i] = NULL;
        fs[e->nfree++] = i;
    }
    e->cap = cap;
    return 0;
}

static int watch(pbx_engine *e, int fd, uint64_t data)
{
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN;
    ev.data.u64 = data;
    return epoll_ctl(e->epfd, EPOLL_CTL_ADD, fd, &ev);
}

int pbx_engine_stream_add(pbx_engine *e, int fd, int rtcp_fd, uint32_t ssrc, uint16_t seq0,
                          uint32_t ts0)
{
    if (e->nfree == 0 && grow(e) < 0) return -1;
    pbx_engine_stream *s = calloc(1, sizeof *s);
    if (!s) return -1;
    int slot = e->free_slots[e->nfree - 1];
    s->slot = slot;
    s->fd = fd;
    s->rtcp_fd = rtcp_fd;
    s->relay = -1;
    pbx_engine_tx_init(&s->tx, ssrc, seq0, ts0, 8000);
    if (watch(e, fd, (uint64_t)slot << 1) < 0) {
        free(s);
        return -1;
    }
    if (rtcp_fd >= 0 && watch(e, rtcp_fd, ((uint64_t)slot << 1) | 1) < 0) {
        int err = errno;
        epoll_ctl(e->epfd, EPOLL_CTL_DEL, fd, NULL);
        free(s);
        errno = err;
        return -1;
    }
    e->nfree--;
    e->slots[slot] = s;
    return slot;
}

int pbx_engine_unrelay(pbx_engine *e, int slot)
{
    pbx_engine_stream *s = get(e, slot);
    if (!s) return -1;
    pbx_engine_stream *p = get(e, s->relay);
    if (p) p->relay = -1;
    s->relay = -1;
    return 0;
}

int pbx_engine_stream_remove(pbx_engine *e, int slot)
{
    pbx_engine_stream *s = get(e, slot);
    if (!s) return -1;
    pbx_engine_unrelay(e, slot);
    epoll_ctl(e->epfd, EPOLL_CTL_DEL, s->fd, NULL);
    if (s->rtcp_fd >= 0) epoll_ctl(e->epfd, EPOLL_CTL_DEL, s->rtcp_fd, NULL);
    free(s);
    e->slots[slot] = NULL;
    e->free_slots[e->nfree++] = slot;
    return 0;
}

static void addr_to_sa(const pbx_engine_addr *a, struct sockaddr_storage *sa, socklen_t *len)
{
    memset(sa, 0, sizeof *sa);
    if (a->family == 6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)sa;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(a->port);
        memcpy(&s6->sin6_addr, a->ip, 16);
        *len = sizeof *s6;
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)sa;
        s4->sin_family = AF_INET;
        s4->sin_port = htons(a->port);
        memcpy(&s4->sin_addr, a->ip, 4);
        *len = sizeof *s4;
    }
}

static void sa_to_addr(const struct sockaddr_storage *sa, pbx_engine_addr *a)
{
    memset(a, 0, sizeof *a);
    if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        a->family = 6;
        a->port = ntohs(s6->sin6_port);
        memcpy(a->ip, &s6->sin6_addr, 16);
    } else if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        a->family = 4;
        a->port = ntohs(s4->sin_port);
        memcpy(a->ip, &s4->sin_addr, 4);
    }
}

/* The relay partner's send side must re-anchor: the packets it carries come from a new source. */
static void partner_resync(pbx_engine *e, pbx_engine_stream *s)
{
    pbx_engine_stream *p = get(e, s->relay);
    if (p) p->tx.resync = 1;
}

int pbx_engine_stream_set_remote(pbx_engine *e, int slot, const pbx_engine_addr *remote,
                                 const uint8_t *pt_mask, uint32_t clock_rate, int latch_n,
                                 double timeout, double now)
{
    pbx_engine_stream *s = get(e, slot);
    if (!s || (remote->family != 4 && remote->family != 6)) return -1;
    pbx_engine_rx *rx = &s->rx;
    rx->remote = *remote;
    rx->has_remote = 1;
    rx->latch_n = latch_n > 0 ? latch_n : 0;
    rx->cand_count = 0;
    rx->pt_filter = pt_mask != NULL;
    if (pt_mask) memcpy(rx->pt_mask, pt_mask, 16);
    addr_to_sa(remote, &s->remote_sa, &s->remote_salen);
    if (clock_rate && clock_rate != s->tx.clock_rate) {
        s->tx.clock_rate = clock_rate;
        s->tx.ts_step = clock_rate / 50;
    }
    s->timeout = timeout;
    s->last_rx = now;
    s->timed_out = 0;
    partner_resync(e, s);
    return 0;
}

int pbx_engine_stream_set_timeout(pbx_engine *e, int slot, double timeout, double now)
{
    pbx_engine_stream *s = get(e, slot);
    if (!s) return -1;
    s->timeout = timeout;
    s->last_rx = now;
    s->timed_out = 0;
    return 0;
}

int pbx_engine_stream_counters(const pbx_engine *e, int slot, pbx_engine_counters *out)
{
    pbx_engine_stream *s = get(e, slot);
    if (!s) return -1;
    *out = s->c;
    return 0;
}

int pbx_engine_stream_remote(const pbx_engine *e, int slot, pbx_engine_addr *out)
{
    pbx_engine_stream *s = get(e, slot);
    if (!s || !s->rx.has_remote) return -1;
    *out = s->rx.remote;
    return 0;
}

int pbx_engine_relay(pbx_engine *e, int a, int b)
{
    pbx_engine_stream *sa = get(e, a), *sb = get(e, b);
    if (!sa || !sb || a == b || sa->relay >= 0 || sb->relay >= 0) return -1;
    sa->relay = b;
    sb->relay = a;
    sa->tx.resync = 1;
    sb->tx.resync = 1;
    return 0;
}

/* One RTP packet accepted by the checks, arrived on s. */
static void on_rtp(pbx_engine *e, pbx_engine_stream *s, uint8_t *pkt, size_t n, double now)
{
    pbx_engine_stream *p = s->relay >= 0 ? e->slots[s->relay] : NULL;
    if (!p || !p->rx.has_remote) { /* phase 2: jitter buffer / RFC 4733 receiver go here */
        s->c.dropped_unrouted++;
        return;
    }
    pbx_engine_tx_rewrite(&p->tx, pkt, now);
    ssize_t sent = sendto(p->fd, pkt, n, MSG_DONTWAIT, (struct sockaddr *)&p->remote_sa,
                          p->remote_salen);
    if (sent < 0) {
        p->c.send_errors++;
        return;
    }
    p->c.packets_out++;
    p->c.bytes_out += n;
}

static void on_datagram(pbx_engine *e, pbx_engine_stream *s, uint8_t *pkt, size_t n, int trunc,
                        const struct sockaddr_storage *from, double now)
{
    int kind = trunc ? PBX_ENGINE_MALFORMED : pbx_engine_rtp_check(pkt, n);
    if (kind == PBX_ENGINE_MALFORMED) {
        s->c.dropped_malformed++;
        return;
    }
    if (kind == PBX_ENGINE_RTCP) { /* rtcp-mux; phase 2 feeds it to the RTCP statistics */
        s->c.rtcp_in++;
        return;
    }
    pbx_engine_addr src;
    sa_to_addr(from, &src);
    int v = pbx_engine_rx_verdict(&s->rx, &src, rd32(pkt + 8), rd16(pkt + 2), pkt[1]);
    if (v == PBX_ENGINE_DROP_SOURCE) {
        s->c.dropped_source++;
        return;
    }
    if (v == PBX_ENGINE_DROP_PT) {
        s->c.dropped_payload_type++;
        return;
    }
    if (v == PBX_ENGINE_LATCHED) {
        addr_to_sa(&s->rx.remote, &s->remote_sa, &s->remote_salen);
        s->c.latched++;
        partner_resync(e, s);
        emit(e, PBX_ENGINE_EV_LATCHED, s->slot, now, &s->rx.remote);
    }
    s->c.packets_in++;
    s->c.bytes_in += n;
    s->last_rx = now;
    s->timed_out = 0;
    on_rtp(e, s, pkt, n, now);
}

int pbx_engine_drain(pbx_engine *e, double now, int *events)
{
    struct epoll_event evs[EPOLL_BATCH];
    struct sockaddr_storage from;
    uint64_t got = 0;
    e->totals.wakeups++;
    while (got < DRAIN_BUDGET) {
        int n = epoll_wait(e->epfd, evs, EPOLL_BATCH, 0);
        if (n <= 0) break;
        e->totals.rounds++;
        for (int i = 0; i < n; i++) {
            uint64_t d = evs[i].data.u64;
            pbx_engine_stream *s = e->slots[d >> 1];
            if (!s) continue;
            int rtcp = (int)(d & 1);
            socklen_t fromlen = sizeof from;
            ssize_t r = recvfrom(rtcp ? s->rtcp_fd : s->fd, e->buf, PKT_BUF,
                                 MSG_DONTWAIT | MSG_TRUNC, (struct sockaddr *)&from, &fromlen);
            if (r < 0) {
                if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                    e->totals.recv_errors++;
                continue;
            }
            got++;
            if (rtcp) /* phase 2 feeds it to the RTCP statistics */
                s->c.rtcp_in++;
            else /* MSG_TRUNC: r is the datagram's real length, more than fitted */
                on_datagram(e, s, e->buf, r > PKT_BUF ? PKT_BUF : (size_t)r, r > PKT_BUF, &from,
                            now);
        }
    }
    e->totals.packets += got;
    if (got > e->totals.max_batch) e->totals.max_batch = got;
    *events = e->ev_count;
    return (int)got;
}

int pbx_engine_tick(pbx_engine *e, double now)
{
    e->totals.ticks++;
    for (int i = 0; i < e->cap; i++) {
        pbx_engine_stream *s = e->slots[i];
        if (!s) continue;
        if (s->timeout > 0 && s->rx.has_remote && !s->timed_out && now - s->last_rx >= s->timeout) {
            s->timed_out = 1;
            s->c.timeouts++;
            emit(e, PBX_ENGINE_EV_TIMEOUT, i, now, NULL);
        }
        /* phase 2: playout, mixing, encoding and recording taps for s */
    }
    return e->ev_count;
}

int pbx_engine_events(pbx_engine *e, pbx_engine_event *out, int max)
{
    int n = e->ev_count < max ? e->ev_count : max;
    for (int i = 0; i < n; i++) out[i] = e->events[(e->ev_head + i) % e->max_events];
    e->ev_head = (e->ev_head + n) % e->max_events;
    e->ev_count -= n;
    return n;
}

void pbx_engine_get_totals(const pbx_engine *e, pbx_engine_totals *out) { *out = e->totals; }
