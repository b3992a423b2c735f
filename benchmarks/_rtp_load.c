/* RTP load generator and a plain C epoll relay, for benchmarks/media_relay.py.
 *
 * Compiled at run time by media_relay.py (gcc -O2) into benchmarks/out/rtp_load.
 *
 *   rtp_load gen TARGETS K SIZE WARMUP DURATION TAIL QUANTUM_US [poll]
 *     TARGETS: a file of "host port" lines, one per relay stream; streams 2i and 2i+1 are the two
 *     legs of relay pair i. Every stream gets 50 packets/s of SIZE bytes (RTP header + payload)
 *     from one of K generator sockets (stream j uses socket j*K/S, so the relay must be told that
 *     socket is the stream's peer). The payload carries the send time (CLOCK_REALTIME ns, taken
 *     just before sendmmsg), the sending stream and the packet index. Receiving uses recvmmsg
 *     with SO_TIMESTAMPNS, so the latency is from our send call to the kernel's arrival stamp of
 *     the relayed packet: it excludes our own receive delays.
 *     Protocol: prints "PORTS p0 .. pK-1", waits for "GO" on stdin, prints "MEASURE" when the
 *     warm-up is over, "END" after the last send, then (after TAIL seconds of receiving) one JSON
 *     line of results. With "poll" the generator polls (epoll with a zero timeout) instead of
 *     sleeping between sends, napping 0.1 ms every 0.9 ms (so SCHED_FIFO's throttling at 95 %
 *     never stops it for 50 ms): it costs 90 % of a core but spares both sides most cross-core
 *     wake-ups of a sleeping receiver, which on a VM cost about as much as the packet itself.
 *
 *   rtp_load relay S
 *     The reference: a plain C relay. S sockets on 127.0.0.1 (ports printed as "PORTS ..."),
 *     reads "REMOTES p0 .. pS-1" (peers on 127.0.0.1), prints "READY", then relays 2i <-> 2i+1:
 *     epoll (level-triggered, 256 events per wait), recvfrom, source check, SSRC rewrite,
 *     sendto. On "STATS" (stdin) prints a JSON line and exits.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define PERIOD_NS 20000000LL
#define BATCH 16          /* packets per sendmmsg: bounds the stamp-to-send bias */
#define RBATCH 64
#define HIST_US 200000    /* latency histogram: 1 us bins up to 200 ms */
#define PKT_MAX 1500

static int64_t now_ns(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void die(const char *what)
{
    perror(what);
    exit(2);
}

static int udp_socket(int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    if (fd < 0) die("socket");
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
    if (rcvbuf > 0 && setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) < 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    return fd;
}

static int port_of(int fd)
{
    struct sockaddr_in a;
    socklen_t l = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &l);
    return ntohs(a.sin_port);
}

static void raise_nofile(void)
{
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) == 0) {
        r.rlim_cur = r.rlim_max;
        setrlimit(RLIMIT_NOFILE, &r);
    }
}

static int64_t rusage_us(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (int64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000
           + ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
}

/* ---- generator ------------------------------------------------------------------------------ */

static uint32_t *hist;
static uint64_t hist_over;

static double percentile(uint64_t total, double q)
{
    if (!total) return -1;
    uint64_t want = (uint64_t)(q * (double)total), acc = 0;
    if (want >= total) want = total - 1;
    for (int i = 0; i < HIST_US; i++) {
        acc += hist[i];
        if (acc > want) return i;
    }
    return HIST_US;
}

static int gen(int argc, char **argv)
{
    if (argc < 9) {
        fprintf(stderr, "usage: rtp_load gen TARGETS K SIZE WARMUP DURATION TAIL QUANTUM_US\n");
        return 2;
    }
    FILE *f = fopen(argv[2], "r");
    if (!f) die("targets");
    int cap = 1024, S = 0;
    struct sockaddr_in *tgt = malloc(sizeof *tgt * (size_t)cap);
    char host[64];
    int port;
    while (fscanf(f, "%63s %d", host, &port) == 2) {
        if (S == cap) tgt = realloc(tgt, sizeof *tgt * (size_t)(cap *= 2));
        memset(&tgt[S], 0, sizeof tgt[S]);
        tgt[S].sin_family = AF_INET;
        tgt[S].sin_port = htons((uint16_t)port);
        inet_pton(AF_INET, host, &tgt[S].sin_addr);
        S++;
    }
    fclose(f);
    int K = atoi(argv[3]);
    int size = atoi(argv[4]);
    double warmup = atof(argv[5]), duration = atof(argv[6]), tail = atof(argv[7]);
    int64_t quantum = (int64_t)atoi(argv[8]) * 1000;
    int poll = argc > 9 && strcmp(argv[9], "poll") == 0;
    if (S < 2 || K < 1 || K > S || size < 40 || size > PKT_MAX) {
        fprintf(stderr, "bad arguments\n");
        return 2;
    }
    raise_nofile();
    hist = calloc(HIST_US, sizeof *hist);
    int *gfd = malloc(sizeof *gfd * (size_t)K);
    int ep = epoll_create1(0);
    printf("PORTS");
    for (int g = 0; g < K; g++) {
        gfd[g] = udp_socket(16 << 20);
        int on = 1;
        setsockopt(gfd[g], SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on);
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)g};
        epoll_ctl(ep, EPOLL_CTL_ADD, gfd[g], &ev);
        printf(" %d", port_of(gfd[g]));
    }
    printf("\n");
    fflush(stdout);
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    struct epoll_event tev = {.events = EPOLLIN, .data.u32 = (uint32_t)K};
    epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &tev);

    char line[64];
    if (!fgets(line, sizeof line, stdin) || strncmp(line, "GO", 2) != 0) return 2;

    int *gof = malloc(sizeof *gof * (size_t)S);
    for (int j = 0; j < S; j++) gof[j] = (int)((int64_t)j * K / S);
    uint8_t *pkts = calloc((size_t)S, PKT_MAX);
    for (int j = 0; j < S; j++) {
        uint8_t *p = pkts + (size_t)j * PKT_MAX;
        p[0] = 0x80;
        p[1] = 0; /* PCMU */
        uint32_t ssrc = htonl(0x10000000u + (uint32_t)j);
        memcpy(p + 8, &ssrc, 4);
        memset(p + 32, 0xff, (size_t)size - 32);
    }
    int64_t k_warm = (int64_t)(warmup * 50 + 0.5), k_end = k_warm + (int64_t)(duration * 50 + 0.5);
    uint64_t n = 0, n_end = (uint64_t)k_end * (uint64_t)S;
    uint64_t sent = 0, sent_win = 0, recv_all = 0, recv_win = 0, send_fail = 0, misrouted = 0;
    int64_t lag_max = 0, lag_sum = 0, lag_n = 0, over_quantum = 0;
    struct mmsghdr sm[BATCH];
    struct iovec siov[BATCH];
    int sj[BATCH];
    struct mmsghdr rm[RBATCH];
    struct iovec riov[RBATCH];
    uint8_t rbuf[RBATCH][PKT_MAX];
    char rctl[RBATCH][64];
    struct epoll_event evs[128];
    int measuring = 0, ended = 0;
    uint64_t idle_polls = 0;
    int64_t idle_ns = 0; /* poll mode: time in polls that found nothing (since the loop top) */
    int64_t slice_start = now_ns(CLOCK_MONOTONIC);
    int64_t cpu0 = 0, cpu1 = 0, wall0 = 0, wall1 = 0;

    int64_t t0 = now_ns(CLOCK_MONOTONIC) + 20000000; /* start 20 ms from now */
    int64_t stop_at = 0;
    for (;;) {
        int64_t now = now_ns(CLOCK_MONOTONIC);
        /* --- send everything due --- */
        if (n < n_end) {
            int64_t due0 = t0 + (int64_t)(n / (uint64_t)S) * PERIOD_NS
                           + (int64_t)(n % (uint64_t)S) * PERIOD_NS / S;
            if (due0 <= now) {
                int64_t lag = now - due0;
                if (lag > lag_max) lag_max = lag;
                lag_sum += lag;
                lag_n++;
                if (lag > quantum + 1000000) over_quantum++;
            }
        }
        int nb = 0, bg = -1;
        for (;;) {
            int flush = 0, more = 0;
            int64_t k = 0;
            int j = 0;
            if (n < n_end) {
                k = (int64_t)(n / (uint64_t)S);
                j = (int)(n % (uint64_t)S);
                int64_t due = t0 + k * PERIOD_NS + (int64_t)j * PERIOD_NS / S;
                more = due <= now;
            }
            if (!more || (nb && (gof[j] != bg || nb == BATCH || nb >= S))) flush = nb > 0;
            if (flush) {
                int64_t stamp = now_ns(CLOCK_REALTIME);
                for (int i = 0; i < nb; i++) memcpy(pkts + (size_t)sj[i] * PKT_MAX + 12, &stamp, 8);
                int done = 0;
                while (done < nb) {
                    int r = sendmmsg(gfd[bg], sm + done, (unsigned)(nb - done), MSG_DONTWAIT);
                    if (r <= 0) break;
                    done += r;
                }
                send_fail += (uint64_t)(nb - done);
                sent += (uint64_t)done;
                for (int i = 0; i < done; i++) {
                    uint32_t kk;
                    memcpy(&kk, pkts + (size_t)sj[i] * PKT_MAX + 24, 4);
                    if ((int64_t)kk >= k_warm) sent_win++;
                }
                nb = 0;
            }
            if (!more) break;
            if (!measuring && k >= k_warm) {
                measuring = 1;
                cpu0 = rusage_us();
                wall0 = now_ns(CLOCK_MONOTONIC);
                printf("MEASURE\n");
                fflush(stdout);
            }
            uint8_t *p = pkts + (size_t)j * PKT_MAX;
            uint16_t seq = htons((uint16_t)k);
            uint32_t ts = htonl((uint32_t)(k * 160));
            uint32_t jj = (uint32_t)j, kk = (uint32_t)k;
            memcpy(p + 2, &seq, 2);
            memcpy(p + 4, &ts, 4);
            memcpy(p + 20, &jj, 4);
            memcpy(p + 24, &kk, 4);
            siov[nb].iov_base = p;
            siov[nb].iov_len = (size_t)size;
            memset(&sm[nb], 0, sizeof sm[nb]);
            sm[nb].msg_hdr.msg_name = &tgt[j];
            sm[nb].msg_hdr.msg_namelen = sizeof tgt[j];
            sm[nb].msg_hdr.msg_iov = &siov[nb];
            sm[nb].msg_hdr.msg_iovlen = 1;
            sj[nb] = j;
            bg = gof[j];
            nb++;
            n++;
        }
        if (n >= n_end && !ended) {
            ended = 1;
            cpu1 = rusage_us();
            wall1 = now_ns(CLOCK_MONOTONIC);
            printf("END\n");
            fflush(stdout);
            stop_at = now_ns(CLOCK_MONOTONIC) + (int64_t)(tail * 1e9);
        }
        if (ended && now_ns(CLOCK_MONOTONIC) >= stop_at) break;
        /* --- sleep until the next quantum (or a packet) --- */
        int64_t wake = ended ? stop_at : now + quantum;
        if (!ended) {
            int64_t due = t0 + (int64_t)(n / (uint64_t)S) * PERIOD_NS
                          + (int64_t)(n % (uint64_t)S) * PERIOD_NS / S;
            if (due > wake) wake = due;
        }
        int ne;
        if (poll) {
            if (now - slice_start > 900000) { /* 10 % asleep: under RT throttling's 95 % */
                struct timespec nap = {0, 100000};
                nanosleep(&nap, NULL);
                slice_start = now_ns(CLOCK_MONOTONIC);
            }
            ne = epoll_wait(ep, evs, 128, 0);
            if (ne == 0) {
                idle_polls++;
                if (measuring && !ended) idle_ns += now_ns(CLOCK_MONOTONIC) - now;
            }
        } else {
            struct itimerspec its = {.it_value = {.tv_sec = wake / 1000000000LL,
                                                  .tv_nsec = wake % 1000000000LL}};
            timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
            ne = epoll_wait(ep, evs, 128, -1);
        }
        for (int e = 0; e < ne; e++) {
            int g = (int)evs[e].data.u32;
            if (g == K) {
                uint64_t x;
                if (read(tfd, &x, sizeof x) < 0) { /* spurious */ }
                continue;
            }
            for (;;) {
                for (int i = 0; i < RBATCH; i++) {
                    riov[i].iov_base = rbuf[i];
                    riov[i].iov_len = PKT_MAX;
                    memset(&rm[i], 0, sizeof rm[i]);
                    rm[i].msg_hdr.msg_iov = &riov[i];
                    rm[i].msg_hdr.msg_iovlen = 1;
                    rm[i].msg_hdr.msg_control = rctl[i];
                    rm[i].msg_hdr.msg_controllen = sizeof rctl[i];
                }
                int r = recvmmsg(gfd[g], rm, RBATCH, MSG_DONTWAIT, NULL);
                if (r <= 0) break;
                for (int i = 0; i < r; i++) {
                    if (rm[i].msg_len < 28) continue;
                    int64_t rx = -1;
                    for (struct cmsghdr *c = CMSG_FIRSTHDR(&rm[i].msg_hdr); c;
                         c = CMSG_NXTHDR(&rm[i].msg_hdr, c))
                        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
                            struct timespec ts;
                            memcpy(&ts, CMSG_DATA(c), sizeof ts);
                            rx = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
                        }
                    if (rx < 0) rx = now_ns(CLOCK_REALTIME);
                    int64_t stamp;
                    uint32_t jj, kk;
                    memcpy(&stamp, rbuf[i] + 12, 8);
                    memcpy(&jj, rbuf[i] + 20, 4);
                    memcpy(&kk, rbuf[i] + 24, 4);
                    recv_all++;
                    if (jj >= (uint32_t)S || gof[jj ^ 1] != g) misrouted++;
                    if ((int64_t)kk < k_warm || (int64_t)kk >= k_end) continue;
                    recv_win++;
                    int64_t us = (rx - stamp) / 1000;
                    if (us < 0) us = 0;
                    if (us >= HIST_US)
                        hist_over++;
                    else
                        hist[us]++;
                }
                if (r < RBATCH) break;
            }
        }
    }
    double wall = (double)(wall1 - wall0) / 1e9;
    uint64_t tot = recv_win;
    printf("{\"streams\": %d, \"gen_sockets\": %d, \"size\": %d, \"sent\": %" PRIu64
           ", \"received\": %" PRIu64 ", \"sent_window\": %" PRIu64
           ", \"received_window\": %" PRIu64 ", \"send_fail\": %" PRIu64
           ", \"misrouted\": %" PRIu64 ", \"p50_us\": %.0f, \"p99_us\": %.0f"
           ", \"p999_us\": %.0f, \"max_us\": %.0f, \"over_200ms\": %" PRIu64
           ", \"lag_max_us\": %.0f, \"lag_mean_us\": %.1f, \"late_wakeups\": %" PRId64
           ", \"gen_cpu_pct\": %.1f, \"window_s\": %.3f, \"idle_polls\": %" PRIu64 ", \"gen_busy_pct\": %.1f}\n",
           S, K, size, sent, recv_all, sent_win, recv_win, send_fail, misrouted,
           percentile(tot, 0.50), percentile(tot, 0.99), percentile(tot, 0.999),
           tot ? (hist_over ? (double)HIST_US : percentile(tot, 1.0)) : -1.0, hist_over,
           (double)lag_max / 1000.0, lag_n ? (double)lag_sum / (double)lag_n / 1000.0 : 0.0,
           over_quantum, wall > 0 ? 100.0 * (double)(cpu1 - cpu0) / 1e6 / wall : 0.0, wall,
           idle_polls,
           wall > 0 ? (poll ? 100.0 * (1.0 - (double)idle_ns / 1e9 / wall)
                            : 100.0 * (double)(cpu1 - cpu0) / 1e6 / wall) : 0.0);
    fflush(stdout);
    return 0;
}

/* ---- plain C relay ------------------------------------------------------------------------- */

static int relay(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: rtp_load relay S\n");
        return 2;
    }
    int S = atoi(argv[2]);
    if (S < 2 || S % 2) return 2;
    raise_nofile();
    int *fd = malloc(sizeof *fd * (size_t)S);
    struct sockaddr_in *rem = calloc((size_t)S, sizeof *rem);
    int ep = epoll_create1(0);
    printf("PORTS");
    for (int j = 0; j < S; j++) {
        fd[j] = udp_socket(0);
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)j};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd[j], &ev);
        printf(" %d", port_of(fd[j]));
    }
    printf("\n");
    fflush(stdout);
    static char line[1 << 20];
    if (!fgets(line, sizeof line, stdin) || strncmp(line, "REMOTES", 7) != 0) return 2;
    char *p = line + 7;
    for (int j = 0; j < S; j++) {
        rem[j].sin_family = AF_INET;
        rem[j].sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        rem[j].sin_port = htons((uint16_t)strtol(p, &p, 10));
    }
    struct epoll_event sev = {.events = EPOLLIN, .data.u32 = (uint32_t)S};
    epoll_ctl(ep, EPOLL_CTL_ADD, 0, &sev);
    printf("READY\n");
    fflush(stdout);
    uint8_t buf[2048];
    struct epoll_event evs[256];
    uint64_t pkts = 0, drops = 0, wakeups = 0;
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        wakeups++;
        for (int e = 0; e < n; e++) {
            int j = (int)evs[e].data.u32;
            if (j == S) {
                printf("{\"packets\": %" PRIu64 ", \"dropped\": %" PRIu64 ", \"wakeups\": %" PRIu64
                       "}\n", pkts, drops, wakeups);
                fflush(stdout);
                return 0;
            }
            struct sockaddr_in from;
            socklen_t fl = sizeof from;
            ssize_t r = recvfrom(fd[j], buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
            if (r < 12) continue;
            pkts++;
            if (from.sin_port != rem[j].sin_port || from.sin_addr.s_addr != rem[j].sin_addr.s_addr) {
                drops++;
                continue;
            }
            int o = j ^ 1;
            uint32_t ssrc = htonl(0xC0000000u + (uint32_t)o);
            memcpy(buf + 8, &ssrc, 4);
            sendto(fd[o], buf, (size_t)r, MSG_DONTWAIT, (struct sockaddr *)&rem[o], sizeof rem[o]);
        }
    }
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "gen") == 0) return gen(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "relay") == 0) return relay(argc, argv);
    fprintf(stderr, "usage: rtp_load gen|relay ...\n");
    return 2;
}
