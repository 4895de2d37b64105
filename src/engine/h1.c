/* h1: the I/O loop's own plain HTTP/1.1 client. See ioloop.h ("plain HTTP/1.1 transfers") and h1.h.
 *
 * Why it exists: an upstream call through libcurl costs a fresh transfer setup, a liveness poll of
 * the reused connection, a readability poll after the send and an extra read, and many small
 * allocations; for a gateway whose answer is one upstream call that was half of its CPU per
 * request. Here a call on a kept-alive connection is one send() and one recv() on a socket that
 * stays in the loop's epoll set (edge-triggered) from connect to close.
 *
 * Connections: each belongs to the client from connect to close. Active, it carries one transfer;
 * idle, it sits on the client's idle list (most recently used first) and any event on it (the
 * upstream closing it, or sending unasked) closes it. A transfer that finds its reused connection
 * dead before any byte of the answer is sent once more on a new one.
 *
 * Deadlines: active transfers sit in a min-heap by due time (the connect deadline while
 * connecting, then the whole transfer's); the loop sleeps no longer than the earliest. */
#include "h1.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "h1_parse.h"
#include "kailash/util.h"

#define H1_READ_SIZE 16384
#define H1_NOT_IN_HEAP ((size_t)-1)
#define H1_MAX_IDLE_MS 118000.0 /* an idle connection older than this is not reused (libcurl's default) */

typedef struct h1_conn {
    int fd;
    int connecting;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    h1_xfer *x;                  /* NULL: idle */
    struct h1_conn *prev, *next; /* the idle list */
    double idle_since;
    h1_parser parser; /* its line buffer is kept across answers */
} h1_conn;

struct h1_xfer {
    h1_xfer *qnext; /* the loop's queue of adds */
    ioloop_h1_req req;
    ioloop_h1_done_fn done;
    void *ud;
    double start_ms, due_ms;
    size_t heap_i;
    h1_conn *conn;
    size_t sent;
    int reused;    /* conn came from the idle list */
    int retried;   /* sent once more on a new connection already */
    int tried_alt; /* went on to req.alt after the first address failed to connect */
    int connected; /* a connection was made or reused */
};

struct h1_client {
    int epfd;
    long max_idle;
    atomic_size_t *inflight;
    h1_conn **by_fd; /* the client's connections by fd */
    size_t nfd;
    h1_conn *idle; /* most recently used first */
    long nidle;
    h1_xfer **heap;
    size_t heap_len, heap_cap;
    char rbuf[H1_READ_SIZE];
};

/* ---- the deadline heap ---- */

static void h1_heap_set(h1_client *c, size_t i, h1_xfer *x)
{
    c->heap[i] = x;
    x->heap_i = i;
}

static void h1_heap_up(h1_client *c, size_t i)
{
    h1_xfer *x = c->heap[i];
    while (i > 0 && x->due_ms < c->heap[(i - 1) / 2]->due_ms) {
        h1_heap_set(c, i, c->heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    h1_heap_set(c, i, x);
}

static void h1_heap_down(h1_client *c, size_t i)
{
    h1_xfer *x = c->heap[i];
    for (;;) {
        size_t k = 2 * i + 1;
        if (k >= c->heap_len)
            break;
        if (k + 1 < c->heap_len && c->heap[k + 1]->due_ms < c->heap[k]->due_ms)
            k++;
        if (c->heap[k]->due_ms >= x->due_ms)
            break;
        h1_heap_set(c, i, c->heap[k]);
        i = k;
    }
    h1_heap_set(c, i, x);
}

static int h1_heap_push(h1_client *c, h1_xfer *x)
{
    if (c->heap_len == c->heap_cap) {
        size_t cap = c->heap_cap ? 2 * c->heap_cap : 64;
        h1_xfer **h = realloc(c->heap, cap * sizeof *h);
        if (!h)
            return -1;
        c->heap = h;
        c->heap_cap = cap;
    }
    h1_heap_set(c, c->heap_len++, x);
    h1_heap_up(c, x->heap_i);
    return 0;
}

static void h1_heap_remove(h1_client *c, h1_xfer *x)
{
    size_t i = x->heap_i;
    if (i == H1_NOT_IN_HEAP)
        return;
    x->heap_i = H1_NOT_IN_HEAP;
    h1_xfer *last = c->heap[--c->heap_len];
    if (last == x)
        return;
    h1_heap_set(c, i, last);
    h1_heap_up(c, i);
    h1_heap_down(c, last->heap_i);
}

static void h1_set_due(h1_client *c, h1_xfer *x, double due_ms)
{
    x->due_ms = due_ms;
    h1_heap_up(c, x->heap_i);
    h1_heap_down(c, x->heap_i);
}

/* ---- connections ---- */

static void h1_idle_unlink(h1_client *c, h1_conn *k)
{
    if (k->prev)
        k->prev->next = k->next;
    else
        c->idle = k->next;
    if (k->next)
        k->next->prev = k->prev;
    k->prev = k->next = NULL;
    c->nidle--;
}

static void h1_conn_close(h1_client *c, h1_conn *k)
{
    if (!k->x)
        h1_idle_unlink(c, k);
    c->by_fd[k->fd] = NULL;
    close(k->fd); /* leaves the epoll set with it */
    h1_parser_free(&k->parser);
    free(k);
}

static int h1_is_addr(const h1_conn *k, const struct sockaddr_storage *a, socklen_t len)
{
    return len && k->addrlen == len && memcmp(&k->addr, a, len) == 0;
}

/* A connection to either of the request's addresses will do. */
static int h1_same_addr(const h1_conn *k, const ioloop_h1_req *r)
{
    return h1_is_addr(k, &r->addr, r->addrlen) || h1_is_addr(k, &r->alt, r->altlen);
}

/* The most recently used idle connection to the request's address, taken off the list; those
 * found too old on the way are closed. */
static h1_conn *h1_idle_take(h1_client *c, const ioloop_h1_req *r)
{
    double now = util_now_ms();
    for (h1_conn *k = c->idle, *next; k; k = next) {
        next = k->next;
        if (now - k->idle_since > H1_MAX_IDLE_MS)
            h1_conn_close(c, k);
        else if (h1_same_addr(k, r)) {
            h1_idle_unlink(c, k);
            return k;
        }
    }
    return NULL;
}

/* A connection's row by fd (growing the table). NULL when out of memory. */
static h1_conn **h1_row(h1_client *c, int fd)
{
    h1_conn **t = util_grow_zeroed(c->by_fd, &c->nfd, sizeof *t, (size_t)fd, 256);
    if (!t)
        return NULL;
    c->by_fd = t;
    return &t[fd];
}

/* A new non-blocking socket connecting to addr, in the epoll set for everything (edge-triggered:
 * it never needs an epoll_ctl again). Returns the connection or NULL with errno. */
static h1_conn *h1_conn_open(h1_client *c, const struct sockaddr_storage *addr, socklen_t addrlen)
{
    int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return NULL;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    h1_conn *k = calloc(1, sizeof *k);
    h1_conn **row = k ? h1_row(c, fd) : NULL;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.u64 = IO_H1_TAG | (uint32_t)fd};
    if (!row || epoll_ctl(c->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        int e = row ? errno : ENOMEM;
        free(k);
        close(fd);
        errno = e;
        return NULL;
    }
    if (connect(fd, (const struct sockaddr *)addr, addrlen) != 0 && errno != EINPROGRESS) {
        int e = errno;
        free(k);
        close(fd);
        errno = e;
        return NULL;
    }
    k->fd = fd;
    k->connecting = 1;
    k->addr = *addr;
    k->addrlen = addrlen;
    *row = k;
    return k;
}

/* ---- ending a transfer ---- */

/* Detaches x from its connection: back to the idle list when reuse is safe, else closed. */
static void h1_release_conn(h1_client *c, h1_xfer *x, int reusable)
{
    h1_conn *k = x->conn;
    if (!k)
        return;
    x->conn = NULL;
    k->x = NULL;
    if (!reusable || c->nidle >= c->max_idle) {
        k->x = x; /* not idle: h1_conn_close must not unlink it */
        h1_conn_close(c, k);
        return;
    }
    k->idle_since = util_now_ms();
    k->next = c->idle;
    if (c->idle)
        c->idle->prev = k;
    c->idle = k;
    c->nidle++;
}

static void h1_finish(h1_client *c, h1_xfer *x, CURLcode code, int reusable, const char *error)
{
    ioloop_h1_result r = {.code = code, .connected = x->connected, .total_ms = util_now_ms() - x->start_ms};
    if (x->conn)
        r.status = x->conn->parser.status;
    if (code != CURLE_OK)
        snprintf(r.error, sizeof r.error, "%s", error && *error ? error : curl_easy_strerror(code));
    h1_heap_remove(c, x);
    h1_release_conn(c, x, code == CURLE_OK && reusable);
    atomic_size_t *inflight = c->inflight;
    ioloop_h1_done_fn done = x->done;
    void *ud = x->ud;
    free(x);
    atomic_fetch_sub(inflight, 1);
    done(&r, ud);
}

static void h1_fail_errno(h1_client *c, h1_xfer *x, CURLcode code, const char *what, int e)
{
    char msg[160];
    snprintf(msg, sizeof msg, "%s: %s", what, strerror(e));
    h1_finish(c, x, code, 0, msg);
}

/* ---- the exchange on a connection ---- */

static void h1_begin_on(h1_client *c, h1_xfer *x, h1_conn *k);
static void h1_send(h1_client *c, h1_xfer *x);
static int h1_connect_alt(h1_client *c, h1_xfer *x);

/* The connection died before any byte of the answer: once, on a new connection, if it was reused. */
static int h1_try_again(h1_client *c, h1_xfer *x)
{
    h1_conn *k = x->conn;
    if (!x->reused || x->retried || k->parser.seen != 0)
        return 0;
    x->retried = 1;
    x->reused = 0;
    struct sockaddr_storage addr = k->addr;
    socklen_t addrlen = k->addrlen;
    h1_release_conn(c, x, 0);
    h1_conn *fresh = h1_conn_open(c, &addr, addrlen);
    if (!fresh) {
        h1_fail_errno(c, x, CURLE_COULDNT_CONNECT, "failed to connect to the upstream", errno);
        return 1;
    }
    h1_begin_on(c, x, fresh);
    return 1;
}

static void h1_on_eof(h1_client *c, h1_xfer *x)
{
    if (h1_try_again(c, x))
        return;
    h1_parser *p = &x->conn->parser;
    if (h1_parse_eof(p) == 1)
        h1_finish(c, x, CURLE_OK, 0, NULL);
    else
        h1_finish(c, x, p->code, 0, p->error);
}

/* After an answer that ended exactly at the end of a full read: is anything else (bytes past the
 * answer, or the upstream's close) already waiting? It raised no edge of its own, so an idle
 * connection would not notice it. A shorter read left the socket empty: what comes later will. */
static int h1_more_queued(const h1_conn *k, size_t n)
{
    char byte;
    if (n < H1_READ_SIZE)
        return 0;
    ssize_t r = recv(k->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return r >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
}

/* Reads what the socket holds. Stops at a complete answer (no read that only says EAGAIN). */
static void h1_read(h1_client *c, h1_xfer *x)
{
    h1_conn *k = x->conn;
    for (;;) {
        ssize_t n = recv(k->fd, c->rbuf, sizeof c->rbuf, 0);
        if (n == 0) {
            h1_on_eof(c, x);
            return;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            if (!h1_try_again(c, x))
                h1_fail_errno(c, x, CURLE_RECV_ERROR, "recv failure", errno);
            return;
        }
        size_t used = 0;
        if (x->req.max_bytes && k->parser.seen + (size_t)n > x->req.max_bytes) {
            h1_finish(c, x, CURLE_FILESIZE_EXCEEDED, 0, "the answer is larger than allowed");
            return;
        }
        int rc = h1_parse(&k->parser, c->rbuf, (size_t)n, &used);
        if (rc < 0) {
            h1_finish(c, x, k->parser.code, 0, k->parser.error);
            return;
        }
        if (rc == 1) { /* bytes past the answer, or a request not yet all sent: no reuse */
            int clean = used == (size_t)n && x->sent == x->req.len && !h1_more_queued(k, (size_t)n);
            h1_finish(c, x, CURLE_OK, clean && h1_parse_reusable(&k->parser), NULL);
            return;
        }
    }
}

static void h1_send(h1_client *c, h1_xfer *x)
{
    h1_conn *k = x->conn;
    while (x->sent < x->req.len) {
        ssize_t n = send(k->fd, x->req.data + x->sent, x->req.len - x->sent, MSG_NOSIGNAL);
        if (n > 0) {
            x->sent += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return; /* EPOLLOUT will say when there is room */
        if (!h1_try_again(c, x))
            h1_fail_errno(c, x, CURLE_SEND_ERROR, "send failure", n < 0 ? errno : EPIPE);
        return;
    }
}

/* x goes on connection k (new, or reused from the idle list). */
static void h1_begin_on(h1_client *c, h1_xfer *x, h1_conn *k)
{
    x->conn = k;
    k->x = x;
    x->sent = 0;
    h1_parser_init(&k->parser, x->req.no_body, x->req.on_header, x->req.on_body, x->ud);
    if (k->connecting) {
        double connect_due = util_now_ms() + x->req.connect_timeout_ms;
        h1_set_due(c, x, connect_due < x->start_ms + x->req.timeout_ms ? connect_due : x->start_ms + x->req.timeout_ms);
        return; /* EPOLLOUT says when it is connected */
    }
    x->connected = 1;
    h1_send(c, x);
}

/* Connects x to addr; when that fails at once, or later (h1_on_connected), the request's second
 * address is tried once before the transfer fails. */
static void h1_connect(h1_client *c, h1_xfer *x, const struct sockaddr_storage *addr, socklen_t addrlen)
{
    h1_conn *k = h1_conn_open(c, addr, addrlen);
    if (k) {
        h1_begin_on(c, x, k);
        return;
    }
    if (!h1_connect_alt(c, x))
        h1_fail_errno(c, x, CURLE_COULDNT_CONNECT, "failed to connect to the upstream", errno);
}

/* The second address, once: 1 when x went on to it. */
static int h1_connect_alt(h1_client *c, h1_xfer *x)
{
    if (x->tried_alt || !x->req.altlen)
        return 0;
    x->tried_alt = 1;
    h1_release_conn(c, x, 0);
    h1_connect(c, x, &x->req.alt, x->req.altlen);
    return 1;
}

static void h1_on_connected(h1_client *c, h1_xfer *x)
{
    h1_conn *k = x->conn;
    int e = 0;
    socklen_t len = sizeof e;
    if (getsockopt(k->fd, SOL_SOCKET, SO_ERROR, &e, &len) != 0)
        e = errno;
    if (e != 0) {
        if (!h1_connect_alt(c, x))
            h1_fail_errno(c, x, CURLE_COULDNT_CONNECT, "failed to connect to the upstream", e);
        return;
    }
    k->connecting = 0;
    x->connected = 1;
    h1_set_due(c, x, x->start_ms + x->req.timeout_ms);
    h1_send(c, x);
}

/* An idle connection woke: closed, or sent something unasked? A lone EPOLLOUT, or an EPOLLIN edge
 * left over from the answer it just carried, says nothing: a peek tells. */
static void h1_on_idle_event(h1_client *c, h1_conn *k, uint32_t events)
{
    char byte;
    if (!(events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)))
        return;
    if (!(events & (EPOLLRDHUP | EPOLLERR | EPOLLHUP)) && recv(k->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) < 0 &&
        (errno == EAGAIN || errno == EWOULDBLOCK))
        return;
    h1_conn_close(c, k);
}

/* After a step that may have ended or moved the transfer: the one still on fd, if it may go on. */
static h1_xfer *h1_still(h1_client *c, int fd)
{
    h1_conn *k = (size_t)fd < c->nfd ? c->by_fd[fd] : NULL;
    return k && k->x && !k->connecting ? k->x : NULL;
}

void h1_on_event(h1_client *c, int fd, uint32_t events)
{
    h1_conn *k = fd >= 0 && (size_t)fd < c->nfd ? c->by_fd[fd] : NULL;
    if (!k)
        return;
    h1_xfer *x = k->x;
    if (!x) {
        h1_on_idle_event(c, k, events);
        return;
    }
    if (k->connecting) {
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        h1_on_connected(c, x);
        if (!(x = h1_still(c, fd)))
            return;
    }
    if ((events & EPOLLOUT) && x->sent < x->req.len) {
        h1_send(c, x);
        if (!(x = h1_still(c, fd)))
            return;
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP))
        h1_read(c, x);
}

/* ---- the client ---- */

h1_client *h1_client_new(int epfd, long max_idle, atomic_size_t *inflight)
{
    h1_client *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->epfd = epfd;
    c->max_idle = max_idle > 0 ? max_idle : 0;
    c->inflight = inflight;
    return c;
}

void h1_client_free(h1_client *c)
{
    if (!c)
        return;
    while (c->idle)
        h1_conn_close(c, c->idle);
    free(c->by_fd);
    free(c->heap);
    free(c);
}

h1_xfer *h1_xfer_new(const ioloop_h1_req *req, ioloop_h1_done_fn done, void *ud)
{
    h1_xfer *x = calloc(1, sizeof *x);
    if (!x)
        return NULL;
    x->req = *req;
    x->done = done;
    x->ud = ud;
    x->start_ms = util_now_ms();
    x->heap_i = H1_NOT_IN_HEAP;
    return x;
}

h1_xfer *h1_xfer_next(const h1_xfer *x)
{
    return x->qnext;
}

void h1_xfer_set_next(h1_xfer *x, h1_xfer *next)
{
    x->qnext = next;
}

void h1_xfer_start(h1_client *c, h1_xfer *x)
{
    x->due_ms = x->start_ms + x->req.timeout_ms;
    if (h1_heap_push(c, x) != 0) {
        h1_finish(c, x, CURLE_OUT_OF_MEMORY, 0, "out of memory starting the request");
        return;
    }
    h1_conn *k = h1_idle_take(c, &x->req);
    x->reused = k != NULL;
    if (k)
        h1_begin_on(c, x, k);
    else
        h1_connect(c, x, &x->req.addr, x->req.addrlen);
}

void h1_xfer_abort(h1_xfer *x, atomic_size_t *inflight)
{
    ioloop_h1_result r = {.code = CURLE_ABORTED_BY_CALLBACK, .total_ms = util_now_ms() - x->start_ms};
    snprintf(r.error, sizeof r.error, "the I/O loop is stopping");
    ioloop_h1_done_fn done = x->done;
    void *ud = x->ud;
    free(x);
    atomic_fetch_sub(inflight, 1);
    done(&r, ud);
}

double h1_due_ms(const h1_client *c)
{
    return c->heap_len ? c->heap[0]->due_ms : -1.0;
}

void h1_run_timeouts(h1_client *c)
{
    double now = util_now_ms();
    while (c->heap_len && c->heap[0]->due_ms <= now) {
        h1_xfer *x = c->heap[0];
        char msg[160];
        int connecting = x->conn && x->conn->connecting;
        snprintf(msg, sizeof msg, "%s timed out after %.0f ms", connecting ? "connecting" : "the request",
                 now - x->start_ms);
        h1_finish(c, x, CURLE_OPERATION_TIMEDOUT, 0, msg);
    }
}

void h1_abort_all(h1_client *c)
{
    while (c->heap_len)
        h1_finish(c, c->heap[0], CURLE_ABORTED_BY_CALLBACK, 0, "the I/O loop is stopping");
}
