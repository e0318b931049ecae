/* pace: an open-loop, constant-rate HTTP/1.1 keep-alive load generator for latency percentiles.
 *
 * Requests are scheduled at fixed intervals (RATE per second, timerfd with nanosecond deadlines) and
 * handed to whichever of CONNS keep-alive connections is idle; when none is, they wait in a queue.
 * Latency is measured from the *intended* send time, so a stalled proxy cannot hide its stall by
 * slowing the generator down (no coordinated omission, as wrk2 does it).
 *
 * usage: pace HOST PORT HOSTHEADER PATH RATE SECONDS CONNS WARMUP_SECONDS
 * prints one JSON object: sent, completed, errors, reconnects, rate (responses completed within the
 * measured window, per second: below RATE when the server cannot keep up), p50/p90/p99/p999/max in us.
 * Build: cc -O2 -o pace pace.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAXCONN 1024
#define BUFSZ 65536

typedef struct {
    int fd;
    int busy;      /* a request is outstanding */
    int connected; /* connect() completed */
    uint64_t intended;
    size_t len;
    char buf[BUFSZ];
} conn_t;

static conn_t conns[MAXCONN];
static int nconns, epfd;
static struct sockaddr_in addr;
static char request[1024];
static size_t request_len;
static uint64_t *queue; /* intended send times waiting for an idle connection */
static size_t qhead, qtail, qcap;
static uint32_t *lat; /* recorded latencies, us */
static size_t nlat, latcap;
static uint64_t record_from, record_to, sent, completed, errors, reconnects, in_window;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static void open_conn(conn_t *c) {
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->busy = 0;
    c->connected = 0;
    c->len = 0;
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
        perror("connect");
        exit(2);
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
}

static void reconnect(conn_t *c, uint64_t now) {
    int was_busy = c->busy;
    uint64_t intended = c->intended;
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    reconnects++;
    open_conn(c);
    if (was_busy) { /* the outstanding request failed: count it, do not retry */
        errors++;
        (void)intended;
        (void)now;
    }
}

static void push(uint64_t t) {
    if (qtail - qhead == qcap) {
        fprintf(stderr, "queue overflow\n");
        exit(2);
    }
    queue[qtail++ % qcap] = t;
}

static void send_on(conn_t *c, uint64_t intended) {
    c->busy = 1;
    c->intended = intended;
    ssize_t n = write(c->fd, request, request_len);
    if (n != (ssize_t)request_len) { /* the request is tiny: a short write means the connection is gone */
        reconnect(c, now_ns());
        return;
    }
    sent++;
}

static void dispatch(void) {
    for (int i = 0; i < nconns && qhead < qtail; i++) {
        conn_t *c = &conns[i];
        if (c->connected && !c->busy) send_on(c, queue[qhead++ % qcap]);
    }
}

/* A complete response in c->buf? Returns its length (head + body), 0 if incomplete, -1 if invalid.
 * Sets *close when the server announced it closes the connection. */
static long complete_response(conn_t *c, int *close_after) {
    c->buf[c->len] = 0;
    char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
    if (!end) return 0;
    size_t head = end - c->buf + 4;
    if (strncmp(c->buf, "HTTP/1.", 7) != 0) return -1;
    *close_after = 0;
    long body = -1;
    int chunked = 0;
    for (char *line = strstr(c->buf, "\r\n"); line && line < end; line = strstr(line + 2, "\r\n")) {
        char *h = line + 2;
        if (!strncasecmp(h, "content-length:", 15)) body = strtol(h + 15, NULL, 10);
        else if (!strncasecmp(h, "transfer-encoding:", 18) && strcasestr(h, "chunked") && strcasestr(h, "chunked") < strstr(h, "\r\n")) chunked = 1;
        else if (!strncasecmp(h, "connection:", 11)) {
            char *eol = strstr(h, "\r\n");
            char *cl = strcasestr(h, "close");
            if (cl && cl < eol) *close_after = 1;
        }
    }
    if (chunked) {
        char *term = memmem(c->buf + head, c->len - head, "0\r\n\r\n", 5);
        if (!term) return 0;
        return term - c->buf + 5;
    }
    if (body < 0) body = 0;
    if (c->len < head + (size_t)body) return 0;
    return head + body;
}

static int cmp32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(double p) {
    if (!nlat) return 0;
    size_t i = (size_t)(p / 100.0 * (nlat - 1) + 0.5);
    return lat[i];
}

int main(int argc, char **argv) {
    if (argc != 9) {
        fprintf(stderr, "usage: pace HOST PORT HOSTHEADER PATH RATE SECONDS CONNS WARMUP\n");
        return 2;
    }
    double rate = atof(argv[5]), seconds = atof(argv[6]), warmup = atof(argv[8]);
    nconns = atoi(argv[7]);
    if (nconns < 1 || nconns > MAXCONN || rate <= 0) return 2;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons(atoi(argv[2]));
    inet_pton(AF_INET, argv[1], &addr.sin_addr);
    request_len = snprintf(request, sizeof request, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: pace\r\n\r\n",
                           argv[4], argv[3]);
    qcap = (size_t)(rate * (seconds + warmup)) + 16;
    queue = malloc(qcap * sizeof *queue);
    latcap = (size_t)(rate * seconds * 1.1) + 16;
    lat = malloc(latcap * sizeof *lat);

    epfd = epoll_create1(0);
    for (int i = 0; i < nconns; i++) open_conn(&conns[i]);
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    struct epoll_event tev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(epfd, EPOLL_CTL_ADD, tfd, &tev);

    /* let the connections establish */
    uint64_t t0 = now_ns() + 200000000ull;
    double interval = 1e9 / rate;
    uint64_t k = 0;
    record_from = t0 + (uint64_t)(warmup * 1e9);
    uint64_t stop_sched = record_from + (uint64_t)(seconds * 1e9);
    record_to = stop_sched;
    uint64_t next = t0;
    struct itimerspec its = {0};
    its.it_value.tv_sec = next / 1000000000ull;
    its.it_value.tv_nsec = next % 1000000000ull;
    timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
    uint64_t hard_stop = stop_sched + 2000000000ull;

    struct epoll_event evs[256];
    for (;;) {
        uint64_t now = now_ns();
        if (now >= hard_stop) break;
        if (next >= stop_sched && qhead == qtail) {
            int busy = 0;
            for (int i = 0; i < nconns; i++) busy |= conns[i].busy;
            if (!busy) break;
        }
        int n = epoll_wait(epfd, evs, 256, 100);
        for (int e = 0; e < n; e++) {
            conn_t *c = evs[e].data.ptr;
            if (!c) { /* timer */
                uint64_t exp;
                if (read(tfd, &exp, sizeof exp) < 0) { /* spurious */ }
                now = now_ns();
                while (next <= now && next < stop_sched) {
                    push(next);
                    k++;
                    next = t0 + (uint64_t)(k * interval);
                }
                if (next < stop_sched) {
                    its.it_value.tv_sec = next / 1000000000ull;
                    its.it_value.tv_nsec = next % 1000000000ull;
                    timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
                }
                continue;
            }
            if (!c->connected && (evs[e].events & EPOLLOUT)) {
                int err = 0;
                socklen_t l = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
                if (err) {
                    errors++;
                    reconnect(c, now_ns());
                    continue;
                }
                c->connected = 1;
                struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
                epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
            }
            if (evs[e].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
                ssize_t r = read(c->fd, c->buf + c->len, BUFSZ - 1 - c->len);
                if (r <= 0) {
                    if (r < 0 && errno == EAGAIN) continue;
                    reconnect(c, now_ns());
                    continue;
                }
                c->len += r;
                int close_after = 0;
                long used = complete_response(c, &close_after);
                if (used < 0 || (used == 0 && c->len >= BUFSZ - 1)) {
                    reconnect(c, now_ns());
                    continue;
                }
                if (used > 0) {
                    uint64_t done = now_ns();
                    int ok = c->busy && !strncmp(c->buf + 9, "200", 3);
                    if (!ok) errors++;
                    else if (c->intended >= record_from && nlat < latcap)
                        lat[nlat++] = (uint32_t)((done - c->intended) / 1000);
                    completed++;
                    if (ok && done >= record_from && done < record_to) in_window++;
                    c->busy = 0;
                    memmove(c->buf, c->buf + used, c->len - used);
                    c->len -= used;
                    if (close_after) {
                        /* not an error: the server ended keep-alive; reconnect quietly */
                        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
                        close(c->fd);
                        reconnects++;
                        open_conn(c);
                    }
                }
            }
        }
        dispatch();
    }
    qsort(lat, nlat, sizeof *lat, cmp32);
    double measured = seconds;
    printf("{\"sent\": %lu, \"completed\": %lu, \"recorded\": %zu, \"errors\": %lu, \"reconnects\": %lu, "
           "\"unsent\": %zu, \"rate\": %.1f, \"p50\": %.0f, \"p90\": %.0f, \"p99\": %.0f, \"p999\": %.0f, "
           "\"max\": %.0f}\n",
           sent, completed, nlat, errors, reconnects, qtail - qhead, in_window / measured, pct(50), pct(90), pct(99),
           pct(99.9), nlat ? (double)lat[nlat - 1] : 0.0);
    return 0;
}
