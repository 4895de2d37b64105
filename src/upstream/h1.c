/* h1: the I/O loop's own plain HTTP/1.1 client. See upstream.h ("the plain HTTP/1.1 client").
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
 * A client of the loop like any other: each connection is a watch (edge-triggered, for everything,
 * from connect to close: never an epoll_ctl in between), each transfer carries its deadline as an
 * embedded loop timer (the connect deadline while connecting, then the whole transfer's). A failure
 * found while the transfer starts is handed back through that timer at once, so done never runs
 * inside up_h1_start. */
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
#include "upstream_internal.h"

typedef up_h1_xfer h1_xfer;

#define H1_READ_SIZE 16384
#define H1_MAX_IDLE_MS 118000.0 /* an idle connection older than this is not reused (libcurl's default) */

typedef struct h1_conn {
    int fd;
    io_watch watch;
    int connecting;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    h1_xfer *x;                  /* NULL: idle */
    struct h1_conn *prev, *next; /* the idle list */
    double idle_since;
    h1_parser parser; /* its line buffer is kept across answers */
} h1_conn;

struct up_h1_xfer {
    h1_client *c;
    struct up_h1_xfer *prev, *next; /* the client's active transfers */
    up_h1_req req;
    up_h1_done_fn done;
    void *ud;
    double start_ms;
    io_timer timer; /* the deadline; at once for a failure found while starting */
    int starting;   /* inside up_h1_start: an end now is handed back through the timer */
    int ended;      /* that end: its code and message */
    up_code end_code;
    char end_error[160];
    h1_conn *conn;
    size_t sent;
    int reused;    /* conn came from the idle list */
    int retried;   /* sent once more on a new connection already */
    int tried_alt; /* went on to req.alt after the first address failed to connect */
    int connected; /* a connection was made or reused */
};

struct h1_client {
    up_loop *loop;
    long max_idle;
    h1_xfer *active;
    h1_conn **by_fd; /* the client's connections by fd */
    size_t nfd;
    h1_conn *idle; /* most recently used first */
    long nidle;
    char rbuf[H1_READ_SIZE];
};

/* ---- deadlines ---- */

static void h1_on_timer(io_timer *t);

/* The transfer's deadline moves to due_ms (util_now_ms clock). */
static void h1_set_due(h1_client *c, h1_xfer *x, double due_ms)
{
    if (ioloop_timer_start(c->loop->io, &x->timer, due_ms - util_now_ms()) != 0) /* out of memory: at once */
        ioloop_timer_start(c->loop->io, &x->timer, 0);
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
    ioloop_watch_stop(c->loop->io, &k->watch);
    close(k->fd);
    h1_parser_free(&k->parser);
    free(k);
}

static int h1_is_addr(const h1_conn *k, const struct sockaddr_storage *a, socklen_t len)
{
    return len && k->addrlen == len && memcmp(&k->addr, a, len) == 0;
}

/* A connection to either of the request's addresses will do. */
static int h1_same_addr(const h1_conn *k, const up_h1_req *r)
{
    return h1_is_addr(k, &r->addr, r->addrlen) || h1_is_addr(k, &r->alt, r->altlen);
}

/* The most recently used idle connection to the request's address, taken off the list; those
 * found too old on the way are closed. */
static h1_conn *h1_idle_take(h1_client *c, const up_h1_req *r)
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

static void h1_on_watch(io_watch *w, uint32_t events);

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
    if (k)
        ioloop_watch_init(&k->watch, fd, h1_on_watch, c);
    if (!row || ioloop_watch_start(c->loop->io, &k->watch, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET) != 0) {
        int e = row ? errno : ENOMEM;
        free(k);
        close(fd);
        errno = e;
        return NULL;
    }
    if (connect(fd, (const struct sockaddr *)addr, addrlen) != 0 && errno != EINPROGRESS) {
        int e = errno;
        ioloop_watch_stop(c->loop->io, &k->watch);
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

static void h1_active_unlink(h1_client *c, h1_xfer *x)
{
    if (x->prev)
        x->prev->next = x->next;
    else
        c->active = x->next;
    if (x->next)
        x->next->prev = x->prev;
    x->prev = x->next = NULL;
}

/* Takes x out of the client (its connection back to the idle list when reusable) and frees it. */
static void h1_drop(h1_client *c, h1_xfer *x, int reusable)
{
    ioloop_timer_stop(c->loop->io, &x->timer);
    h1_release_conn(c, x, reusable);
    h1_active_unlink(c, x);
    atomic_fetch_sub(&c->loop->inflight, 1);
    free(x);
}

static void h1_finish(h1_client *c, h1_xfer *x, up_code code, int reusable, const char *error)
{
    if (x->starting) { /* hand it back from the loop, not from inside up_h1_start */
        x->ended = 1;
        x->end_code = code;
        snprintf(x->end_error, sizeof x->end_error, "%s", error ? error : "");
        h1_release_conn(c, x, 0);
        ioloop_timer_start(c->loop->io, &x->timer, 0);
        return;
    }
    up_h1_result r = {.code = code, .connected = x->connected, .total_ms = util_now_ms() - x->start_ms};
    if (x->conn)
        r.status = x->conn->parser.status;
    if (code != UP_OK)
        snprintf(r.error, sizeof r.error, "%s", error && *error ? error : up_strerror(code));
    up_h1_done_fn done = x->done;
    void *ud = x->ud;
    h1_drop(c, x, code == UP_OK && reusable);
    done(&r, ud);
}

static void h1_fail_errno(h1_client *c, h1_xfer *x, up_code code, const char *what, int e)
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
        h1_fail_errno(c, x, UP_COULDNT_CONNECT, "failed to connect to the upstream", errno);
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
        h1_finish(c, x, UP_OK, 0, NULL);
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
                h1_fail_errno(c, x, UP_RECV_ERROR, "recv failure", errno);
            return;
        }
        size_t used = 0;
        if (x->req.max_bytes && k->parser.seen + (size_t)n > x->req.max_bytes) {
            h1_finish(c, x, UP_TOO_LARGE, 0, "the answer is larger than allowed");
            return;
        }
        int rc = h1_parse(&k->parser, c->rbuf, (size_t)n, &used);
        if (rc < 0) {
            h1_finish(c, x, k->parser.code, 0, k->parser.error);
            return;
        }
        if (rc == 1) { /* bytes past the answer, or a request not yet all sent: no reuse */
            int clean = used == (size_t)n && x->sent == x->req.len && !h1_more_queued(k, (size_t)n);
            h1_finish(c, x, UP_OK, clean && h1_parse_reusable(&k->parser), NULL);
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
            h1_fail_errno(c, x, UP_SEND_ERROR, "send failure", n < 0 ? errno : EPIPE);
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
        h1_fail_errno(c, x, UP_COULDNT_CONNECT, "failed to connect to the upstream", errno);
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
            h1_fail_errno(c, x, UP_COULDNT_CONNECT, "failed to connect to the upstream", e);
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

static void h1_on_watch(io_watch *w, uint32_t events)
{
    h1_client *c = w->ud;
    int fd = w->fd;
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

h1_client *h1_client_new(up_loop *l, long max_idle)
{
    h1_client *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->loop = l;
    c->max_idle = max_idle > 0 ? max_idle : 0;
    return c;
}

void h1_client_free(h1_client *c)
{
    if (!c)
        return;
    while (c->idle)
        h1_conn_close(c, c->idle);
    free(c->by_fd);
    free(c);
}

void h1_client_abort_all(h1_client *c)
{
    while (c && c->active) {
        c->active->starting = 0;
        h1_finish(c, c->active, UP_STOPPING, 0, "the I/O loop is stopping");
    }
}

/* The deadline passed, or an end found while starting is handed back. */
static void h1_on_timer(io_timer *t)
{
    h1_xfer *x = t->ud;
    h1_client *c = x->c;
    if (x->ended) {
        h1_finish(c, x, x->end_code, 0, x->end_error);
        return;
    }
    char msg[160];
    int connecting = x->conn && x->conn->connecting;
    snprintf(msg, sizeof msg, "%s timed out after %.0f ms", connecting ? "connecting" : "the request",
             util_now_ms() - x->start_ms);
    h1_finish(c, x, UP_TIMEOUT, 0, msg);
}

up_h1_xfer *up_h1_start(const up_h1_req *req, up_h1_done_fn done, void *ud)
{
    up_loop *l = up_loop_current();
    if (!l || !req || !done || !req->data || req->timeout_ms <= 0 || req->connect_timeout_ms <= 0 || !req->on_header ||
        !req->on_body)
        return NULL;
    h1_client *c = l->h1;
    h1_xfer *x = calloc(1, sizeof *x);
    if (!x)
        return NULL;
    *x = (h1_xfer){.c = c, .req = *req, .done = done, .ud = ud, .start_ms = util_now_ms(), .starting = 1};
    ioloop_timer_init(&x->timer, h1_on_timer, x);
    if (ioloop_timer_start(l->io, &x->timer, req->timeout_ms) != 0) {
        free(x);
        return NULL;
    }
    x->next = c->active;
    if (c->active)
        c->active->prev = x;
    c->active = x;
    atomic_fetch_add(&l->inflight, 1);
    h1_conn *k = h1_idle_take(c, &x->req);
    x->reused = k != NULL;
    if (k)
        h1_begin_on(c, x, k);
    else
        h1_connect(c, x, &x->req.addr, x->req.addrlen);
    x->starting = 0;
    return x;
}

void up_h1_cancel(up_h1_xfer *x)
{
    if (x)
        h1_drop(x->c, x, 0);
}
