/* Tests of the loop's plain HTTP/1.1 client (up_h1_start, src/upstream/h1.c) against scripted raw TCP
 * servers on 127.0.0.1 (and ::1 when the machine has it), port chosen by the kernel. Each accepted
 * connection gets its own thread, which reads whole requests and answers the i-th request of its
 * connection with step i of the test's script (exact bytes, then keep the connection, close it, close
 * it a little later, reset it or stay silent). The server counts connections and requests (keep-alive
 * and retry checks) and keeps the first request's bytes. Servers stop in the suite's teardown. */
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "kailash/ioloop.h"
#include "kailash/upstream.h"
#include "kailash/util.h"
#include "wait_count.h"

/* ---- a scripted local server ---- */

/* What the server does after sending a step's bytes. */
typedef enum then {
    KEEP,        /* wait for the next request on this connection */
    CLOSE,       /* close the connection */
    CLOSE_LATER, /* close it after 100 ms */
    RESET,       /* close it with SO_LINGER 0: the peer gets a RST */
    SILENT,      /* read and ignore until the peer closes or the server stops */
} then;

typedef struct step {
    const char *data; /* the answer's exact bytes, NULL for none; borrowed */
    size_t len;
    then after;
    int delay_ms; /* wait this long before answering */
    size_t piece; /* > 0: send in pieces of this many bytes, 2 ms apart */
} step;

/* clang-format off */
#define STEP(lit, after) {(lit), sizeof(lit) - 1, (after), 0, 0}
#define NOTHING(after) {NULL, 0, (after), 0, 0}
/* clang-format on */

enum { MAX_STEPS = 4, MAX_CONNS = 256, MAX_SERVERS = 4 };

typedef struct srv srv;

typedef struct conn {
    srv *s;
    int fd; /* -1 once closed (under s->mu) */
    pthread_t th;
} conn;

struct srv {
    int lfd, family, port;
    pthread_t acceptor;
    step steps[MAX_STEPS];
    int nsteps;
    atomic_int connections;
    atomic_int requests;
    atomic_int stopping;
    pthread_mutex_t mu;
    conn conns[MAX_CONNS];
    int nconns;
    buf first_request; /* the bytes of the first whole request received (under mu) */
};

static srv *servers[MAX_SERVERS];
static int n_servers;

/* Sleeps ms in small steps, cut short when the server stops. */
static void srv_sleep(srv *s, int ms)
{
    for (int t = 0; t < ms && !atomic_load(&s->stopping); t += 5)
        usleep(5000);
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int send_step(srv *s, int fd, const step *st)
{
    if (!st->piece)
        return send_all(fd, st->data, st->len);
    for (size_t off = 0; off < st->len && !atomic_load(&s->stopping); off += st->piece) {
        size_t n = st->len - off < st->piece ? st->len - off : st->piece;
        if (send_all(fd, st->data + off, n) < 0)
            return -1;
        usleep(2000);
    }
    return 0;
}

/* The Content-Length of a request head [head, end) ("\r\n\r\n" at end), 0 when none. */
static size_t request_body_len(const char *head, const char *end)
{
    const char *p = head;
    while (p < end) {
        if ((size_t)(end - p) > 15 && strncasecmp(p, "content-length:", 15) == 0)
            return strtoul(p + 15, NULL, 10);
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            break;
        p = nl + 1;
    }
    return 0;
}

/* Reads one whole request (head and Content-Length body) into in, counts it and drops it from in
 * (bytes after it stay). Returns 0, or -1 when the peer closed or the server stops. */
static int read_request(srv *s, int fd, buf *in)
{
    size_t need = 0;
    for (;;) {
        if (!need && in->len) {
            const char *end = memmem(in->data, in->len, "\r\n\r\n", 4);
            if (end)
                need = (size_t)(end + 4 - in->data) + request_body_len(in->data, end);
        }
        if (need && in->len >= need)
            break;
        char tmp[16384];
        ssize_t n = recv(fd, tmp, sizeof tmp, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || buf_append(in, tmp, (size_t)n) < 0)
            return -1;
    }
    if (atomic_fetch_add(&s->requests, 1) == 0) {
        pthread_mutex_lock(&s->mu);
        buf_append(&s->first_request, in->data, need);
        pthread_mutex_unlock(&s->mu);
    }
    memmove(in->data, in->data + need, in->len - need);
    in->len -= need;
    return 0;
}

static void drain_until_closed(int fd)
{
    char tmp[4096];
    while (recv(fd, tmp, sizeof tmp, 0) > 0)
        ;
}

static void conn_close(conn *c, int reset)
{
    if (reset) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    pthread_mutex_lock(&c->s->mu);
    close(c->fd);
    c->fd = -1;
    pthread_mutex_unlock(&c->s->mu);
}

static void *conn_main(void *arg)
{
    conn *c = arg;
    srv *s = c->s;
    buf in = {0};
    int reset = 0;
    for (int i = 0; read_request(s, c->fd, &in) == 0; i++) {
        const step *st = &s->steps[i < s->nsteps ? i : s->nsteps - 1];
        srv_sleep(s, st->delay_ms);
        if (st->data && send_step(s, c->fd, st) < 0)
            break;
        if (st->after == KEEP)
            continue;
        if (st->after == SILENT)
            drain_until_closed(c->fd);
        else if (st->after == CLOSE_LATER)
            srv_sleep(s, 100);
        reset = st->after == RESET;
        break;
    }
    conn_close(c, reset);
    buf_free(&in);
    return NULL;
}

/* Starts a thread for fd; closes fd when out of room or threads. */
static void srv_adopt(srv *s, int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    pthread_mutex_lock(&s->mu);
    conn *c = s->nconns < MAX_CONNS ? &s->conns[s->nconns] : NULL;
    if (c) {
        c->s = s;
        c->fd = fd;
    }
    if (c && pthread_create(&c->th, NULL, conn_main, c) == 0)
        s->nconns++;
    else
        close(fd);
    pthread_mutex_unlock(&s->mu);
}

static void *accept_main(void *arg)
{
    srv *s = arg;
    for (;;) {
        int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (atomic_load(&s->stopping)) {
            if (fd >= 0)
                close(fd);
            return NULL;
        }
        if (fd < 0) {
            if (errno == EINVAL || errno == EBADF)
                return NULL;
            usleep(1000); /* EINTR, ECONNABORTED, EMFILE: go on */
            continue;
        }
        atomic_fetch_add(&s->connections, 1);
        srv_adopt(s, fd);
    }
}

/* The loopback address of family with port into ss; returns its length. */
static socklen_t loopback(int family, int port, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        a->sin6_addr = in6addr_loopback;
        return sizeof *a;
    }
    struct sockaddr_in *a = (struct sockaddr_in *)ss;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return sizeof *a;
}

/* A listening socket on family's loopback, port chosen by the kernel; -1 when that fails. */
static int listen_loopback(int family, int *port)
{
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_storage ss;
    socklen_t len = loopback(family, 0, &ss);
    if (bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, 512) != 0 ||
        getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
        close(fd);
        return -1;
    }
    *port = ntohs(family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port : ((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

/* A server answering with steps (the last one repeats); NULL when family's loopback is unusable. */
static srv *srv_start_on(int family, const step *steps, int nsteps)
{
    cr_assert(nsteps >= 1 && nsteps <= MAX_STEPS);
    cr_assert_lt(n_servers, MAX_SERVERS);
    srv *s = calloc(1, sizeof *s);
    cr_assert_not_null(s);
    s->family = family;
    s->lfd = listen_loopback(family, &s->port);
    if (s->lfd < 0) {
        free(s);
        return NULL;
    }
    memcpy(s->steps, steps, (size_t)nsteps * sizeof *steps);
    s->nsteps = nsteps;
    pthread_mutex_init(&s->mu, NULL);
    cr_assert_eq(pthread_create(&s->acceptor, NULL, accept_main, s), 0);
    servers[n_servers++] = s;
    return s;
}

static srv *srv_start(const step *steps, int nsteps)
{
    srv *s = srv_start_on(AF_INET, steps, nsteps);
    cr_assert_not_null(s, "cannot listen on 127.0.0.1");
    return s;
}

/* Stops accepting, wakes every connection thread (shutdown) and joins them all. */
static void srv_stop(srv *s)
{
    atomic_store(&s->stopping, 1);
    shutdown(s->lfd, SHUT_RDWR);
    pthread_join(s->acceptor, NULL);
    close(s->lfd);
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->nconns; i++)
        if (s->conns[i].fd >= 0)
            shutdown(s->conns[i].fd, SHUT_RDWR);
    int n = s->nconns;
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < n; i++)
        pthread_join(s->conns[i].th, NULL);
    pthread_mutex_destroy(&s->mu);
    buf_free(&s->first_request);
    free(s);
}

/* A port on 127.0.0.1 where nothing listens (bound, read, closed). */
static int closed_port(void)
{
    int port = 0;
    int fd = listen_loopback(AF_INET, &port);
    cr_assert_geq(fd, 0);
    close(fd);
    return port;
}

/* ---- transfers and what they saw ---- */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static ioloop *the_io;
static int n_done; /* done calls of every transfer (under lock) */

typedef struct xfer {
    int done_calls;
    up_h1_result r;
    ioloop *current; /* ioloop_current() inside done */
    buf headers;     /* every on_header line, concatenated */
    buf body;        /* every on_body chunk, concatenated */
    int header_calls, body_calls;
    int bad_lines;   /* on_header calls that were not exactly one line ending in "\r\n" */
    int fail_header; /* on_header answers 0 */
    int fail_body;   /* on_body answers 0 */
} xfer;

static size_t on_header(char *line, size_t n, void *ud)
{
    xfer *x = ud;
    x->header_calls++;
    if (n < 2 || memcmp(line + n - 2, "\r\n", 2) != 0 || memchr(line, '\n', n - 1))
        x->bad_lines++;
    if (x->fail_header || buf_append(&x->headers, line, n) < 0)
        return 0;
    return n;
}

static size_t on_body(char *p, size_t n, void *ud)
{
    xfer *x = ud;
    x->body_calls++;
    if (x->fail_body || buf_append(&x->body, p, n) < 0)
        return 0;
    return n;
}

static void on_done(const up_h1_result *r, void *ud)
{
    xfer *x = ud;
    pthread_mutex_lock(&lock);
    x->r = *r;
    x->current = ioloop_current();
    x->done_calls++;
    n_done++;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
}

/* Every xfer of a test, freed in teardown (also when an assertion ended the test early). */
enum { MAX_XFERS = 128 };
static xfer *xfers[MAX_XFERS];
static int n_xfers;

static xfer *xfer_new(void)
{
    cr_assert_lt(n_xfers, MAX_XFERS);
    xfer *x = calloc(1, sizeof *x);
    cr_assert_not_null(x);
    xfers[n_xfers++] = x;
    return x;
}

static void xfers_free(void)
{
    for (int i = 0; i < n_xfers; i++) {
        buf_free(&xfers[i]->headers);
        buf_free(&xfers[i]->body);
        free(xfers[i]);
    }
    n_xfers = 0;
}

/* Waits until *counter reaches n (under lock), at most timeout_ms. Returns the final value. */
static int wait_count(const int *counter, int n, int timeout_ms)
{
    return wait_count_on(&lock, &cond, counter, n, timeout_ms);
}

/* A request for data to port on family's loopback: 10 s overall, 5 s to connect. */
static up_h1_req req_to_port(int family, int port, const char *data, size_t len)
{
    up_h1_req q;
    memset(&q, 0, sizeof q);
    q.addrlen = loopback(family, port, &q.addr);
    q.data = data;
    q.len = len;
    q.timeout_ms = 10000;
    q.connect_timeout_ms = 5000;
    q.on_header = on_header;
    q.on_body = on_body;
    return q;
}

static const char GET[] = "GET /x HTTP/1.1\r\nHost: upstream\r\n\r\n";

static up_h1_req get_from(const srv *s)
{
    return req_to_port(s->family, s->port, GET, sizeof GET - 1);
}

static void noop(void *ud)
{
    (void)ud;
}

/* A loop with the upstream module's clients on it. */
static ioloop *make_loop(long max_connects)
{
    char err[128];
    ioloop *io = ioloop_create(err, sizeof err);
    cr_assert_not_null(io, "%s", err);
    cr_assert_eq(upstream_loop_start(io, max_connects, err, sizeof err), 0, "%s", err);
    return io;
}

typedef struct add_arg {
    const up_h1_req *q;
    up_h1_done_fn done;
    void *ud;
    up_h1_xfer *x;
} add_arg;

static void add_on_loop(void *p)
{
    add_arg *a = p;
    a->x = up_h1_start(a->q, a->done, a->ud);
}

/* Starts q on the_io's thread (up_h1_start is for the loop thread only). 0, or -1 when refused. */
static int h1_add(const up_h1_req *q, up_h1_done_fn done, void *ud)
{
    add_arg a = {q, done, ud, NULL};
    return ioloop_call(the_io, add_on_loop, &a) == 0 && a.x ? 0 : -1;
}

/* Adds q, the only transfer in the loop, and waits (10 s at most) for its done. Then, after one more
 * round of the loop: done ran once, and the loop holds no transfer. */
static void run(const up_h1_req *q, xfer *x)
{
    cr_assert_eq(h1_add(q, on_done, x), 0);
    cr_assert_eq(wait_count(&x->done_calls, 1, 10000), 1, "the transfer did not end within 10 s");
    cr_assert_eq(ioloop_call(the_io, noop, NULL), 0);
    cr_assert_eq(wait_count(&x->done_calls, 2, 0), 1, "done was called more than once");
    cr_assert_eq(upstream_inflight(the_io), 0);
}

/* One GET to s; asserts it succeeded. */
static void get_ok(const srv *s, xfer *x)
{
    up_h1_req q = get_from(s);
    run(&q, x);
    cr_assert_eq(x->r.code, UP_OK, "code %d: %s", x->r.code, x->r.error);
}

/* What one GET may change: a deadline, an answer bound, callbacks that refuse (0: the defaults). */
typedef struct get_opts {
    double timeout_ms;
    size_t max_bytes;
    int fail_body, fail_header;
} get_opts;

/* Starts a server answering with script, sends it one GET (with o) and waits for its end. *out
 * (when not NULL) gets the server. */
static xfer *get_once_with(const step *script, int nsteps, get_opts o, srv **out)
{
    srv *s = srv_start(script, nsteps);
    xfer *x = xfer_new();
    x->fail_body = o.fail_body;
    x->fail_header = o.fail_header;
    up_h1_req q = get_from(s);
    if (o.timeout_ms > 0)
        q.timeout_ms = o.timeout_ms;
    if (o.max_bytes)
        q.max_bytes = o.max_bytes;
    run(&q, x);
    if (out)
        *out = s;
    return x;
}

static xfer *get_once(const step *script, int nsteps, srv **out)
{
    return get_once_with(script, nsteps, (get_opts){0}, out);
}

static void assert_failed(const xfer *x)
{
    cr_assert_neq(x->r.code, UP_OK, "the transfer succeeded (status %ld)", x->r.status);
    cr_assert_neq(x->r.error[0], '\0', "code %d without an error message", x->r.code);
}

static void assert_failed_with(const xfer *x, up_code code)
{
    assert_failed(x);
    cr_assert_eq(x->r.code, code, "code %d (%s), want %d (%s): %s", x->r.code, up_strerror(x->r.code), code,
                 up_strerror(code), x->r.error);
}

static void assert_body(const xfer *x, const char *want)
{
    size_t n = strlen(want);
    cr_assert_eq(x->body.len, n, "body of %zu bytes, want %zu", x->body.len, n);
    cr_assert(n == 0 || memcmp(x->body.data, want, n) == 0, "body %.*s, want %s", (int)x->body.len, x->body.data, want);
}

/* Two GETs in turn to a server answering each with script: both get body, over `connections`
 * connections (1: the first was kept and reused; 2: it could not be). */
static void assert_two_gets(const step *script, const char *body, int connections)
{
    srv *s = srv_start(script, 1);
    for (int i = 0; i < 2; i++) {
        xfer *x = xfer_new();
        get_ok(s, x);
        cr_assert_eq(x->r.status, 200);
        assert_body(x, body);
    }
    cr_assert_eq(atomic_load(&s->connections), connections, "connections: %d", atomic_load(&s->connections));
}

/* p[0..n) with CR and LF shown as \r and \n, into out (cut to fit). */
static const char *escaped(const char *p, size_t n, char *out, size_t outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 3 < outlen; i++) {
        if (p[i] == '\r' || p[i] == '\n') {
            out[o++] = '\\';
            out[o++] = p[i] == '\r' ? 'r' : 'n';
        } else
            out[o++] = p[i];
    }
    out[o] = '\0';
    return out;
}

/* The header lines, concatenated, are want (prefix_only: begin with want). */
static void check_headers(const xfer *x, const char *want, int prefix_only)
{
    size_t n = strlen(want);
    char got[1024], exp[1024];
    cr_assert_eq(x->bad_lines, 0, "on_header got something else than one line");
    int same =
        (prefix_only ? x->headers.len >= n : x->headers.len == n) && (n == 0 || memcmp(x->headers.data, want, n) == 0);
    cr_assert(same, "on_header got\n  %s\nwant%s\n  %s", escaped(x->headers.data, x->headers.len, got, sizeof got),
              prefix_only ? " (at the start)" : "", escaped(want, n, exp, sizeof exp));
}

static void assert_headers(const xfer *x, const char *want)
{
    check_headers(x, want, 0);
}

/* The header lines begin with want (trailer lines may follow). */
static void assert_headers_start(const xfer *x, const char *want)
{
    check_headers(x, want, 1);
}

static void setup(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    n_done = 0;
    n_servers = 0;
    n_xfers = 0;
    char err[128];
    (void)err;
    the_io = make_loop(64);
}

static void teardown(void)
{
    ioloop_destroy(the_io);
    for (int i = 0; i < n_servers; i++)
        srv_stop(servers[i]);
    xfers_free(); /* after the loop stopped: no callback writes into them any more */
    curl_global_cleanup();
}

TestSuite(h1, .init = setup, .fini = teardown, .timeout = 30);

/* ---- arguments ---- */

Test(h1, add_rejects_null_arguments)
{
    xfer *x = xfer_new();
    up_h1_req q = req_to_port(AF_INET, closed_port(), GET, sizeof GET - 1);
    cr_assert_null(up_h1_start(&q, on_done, x), "not on a loop's thread: refused");
    cr_assert_eq(h1_add(NULL, on_done, x), -1);
    cr_assert_eq(h1_add(&q, NULL, x), -1);
    cr_assert_eq(ioloop_call(the_io, noop, NULL), 0); /* a round of the loop: a done would have run */
    cr_assert_eq(x->done_calls, 0);
    cr_assert_eq(upstream_inflight(the_io), 0);
}

/* ---- answers that succeed ---- */

Test(h1, content_length_answer_gives_status_header_lines_and_body)
{
    static const step script[] = {
        STEP("HTTP/1.1 200 OK\r\nX-One: 1\r\nContent-Length: 5\r\nX-Two: two\r\n\r\nhello", KEEP)};
    srv *s = srv_start(script, 1);
    xfer *x = xfer_new();
    get_ok(s, x);
    cr_assert_eq(x->r.status, 200);
    cr_assert_eq(x->r.connected, 1);
    cr_assert_geq(x->r.total_ms, 0.0);
    assert_headers(x, "HTTP/1.1 200 OK\r\nX-One: 1\r\nContent-Length: 5\r\nX-Two: two\r\n\r\n");
    cr_assert_eq(x->header_calls, 5, "on_header calls: %d", x->header_calls);
    assert_body(x, "hello");
    cr_assert_eq(x->current, the_io, "done did not run on the loop thread");
    cr_assert_eq(x->done_calls, 1);
}

Test(h1, request_bytes_are_sent_verbatim)
{
    static const step script[] = {STEP("HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n", KEEP)};
    static const char post[] = "POST /submit?x=1&y=%20 HTTP/1.1\r\nHost: upstream:8080\r\nX-Odd:  spaced \r\n"
                               "Content-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"a\":[1,2,3]}";
    srv *s = srv_start(script, 1);
    xfer *x = xfer_new();
    up_h1_req q = req_to_port(AF_INET, s->port, post, sizeof post - 1);
    run(&q, x);
    cr_assert_eq(x->r.code, UP_OK, "%s", x->r.error);
    cr_assert_eq(x->r.status, 201);
    assert_body(x, "");
    pthread_mutex_lock(&s->mu);
    int same = s->first_request.len == sizeof post - 1 && memcmp(s->first_request.data, post, sizeof post - 1) == 0;
    pthread_mutex_unlock(&s->mu);
    cr_assert(same, "the server got other bytes than the request");
}

enum { BIG_REQ_BODY = 4 << 20, BIG_ANSWER_BODY = 1 << 20 };
static char big_request[BIG_REQ_BODY + 256];
static char big_answer[BIG_ANSWER_BODY + 256];

/* Fills p[0..n) with a pattern that shows misplaced bytes. */
static void fill_pattern(char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (char)('a' + (i * 7 + i / 251) % 26);
}

/* 4 MiB outgrow any socket buffer: the client must go on sending when the socket is writable again. */
Test(h1, large_request_body_is_sent_completely)
{
    static const step script[] = {STEP("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", KEEP)};
    srv *s = srv_start(script, 1);
    int head = snprintf(big_request, sizeof big_request,
                        "PUT /blob HTTP/1.1\r\nHost: upstream\r\nContent-Length: %d\r\n\r\n", BIG_REQ_BODY);
    fill_pattern(big_request + head, BIG_REQ_BODY);
    size_t len = (size_t)head + BIG_REQ_BODY;
    xfer *x = xfer_new();
    up_h1_req q = req_to_port(AF_INET, s->port, big_request, len);
    run(&q, x);
    cr_assert_eq(x->r.code, UP_OK, "%s", x->r.error);
    assert_body(x, "ok");
    pthread_mutex_lock(&s->mu);
    int same = s->first_request.len == len && memcmp(s->first_request.data, big_request, len) == 0;
    pthread_mutex_unlock(&s->mu);
    cr_assert(same, "the server got other bytes than the request");
}

Test(h1, large_content_length_body_arrives_whole)
{
    int head =
        snprintf(big_answer, sizeof big_answer, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", BIG_ANSWER_BODY);
    fill_pattern(big_answer + head, BIG_ANSWER_BODY);
    step script[] = {{big_answer, (size_t)head + BIG_ANSWER_BODY, KEEP, 0, 0}};
    srv *s = srv_start(script, 1);
    xfer *x = xfer_new();
    get_ok(s, x);
    cr_assert_eq(x->body.len, (size_t)BIG_ANSWER_BODY);
    cr_assert(memcmp(x->body.data, big_answer + head, BIG_ANSWER_BODY) == 0, "the body differs");
}

#define CHUNKED_ANSWER                                                                                                 \
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"                                                            \
    "5;name=value\r\nhello\r\n"                                                                                        \
    "A\r\n, chunked \r\n"                                                                                              \
    "5 ; q=\"x\"\r\nworld\r\n"                                                                                         \
    "0\r\nX-Trailer: t\r\nX-Other: o\r\n\r\n"

/* The second request on the same connection finds the trailers consumed: the framing was followed. */
Test(h1, chunked_body_is_decoded_with_extensions_and_trailers)
{
    static const step script[] = {STEP(CHUNKED_ANSWER, KEEP)};
    assert_two_gets(script, "hello, chunked world", 1);
}

/* The parser must keep its state across reads at every byte boundary. */
Test(h1, answer_arriving_byte_by_byte_is_parsed)
{
    static const step script[] = {{CHUNKED_ANSWER, sizeof CHUNKED_ANSWER - 1, KEEP, 0, 1}};
    srv *s = srv_start(script, 1);
    xfer *x = xfer_new();
    get_ok(s, x);
    cr_assert_eq(x->r.status, 200);
    assert_headers_start(x, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_body(x, "hello, chunked world");
}

/* libcurl passes the trailer lines to the header callback, but not the blank line that ends them. */
Test(h1, trailer_lines_reach_on_header_without_their_blank_line)
{
    static const step script[] = {STEP(CHUNKED_ANSWER, KEEP)};
    srv *s = srv_start(script, 1);
    xfer *x = xfer_new();
    get_ok(s, x);
    assert_headers(x, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nX-Trailer: t\r\nX-Other: o\r\n");
}

Test(h1, body_without_length_is_read_until_close_and_not_reused)
{
    static const step script[] = {STEP("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end", CLOSE)};
    assert_two_gets(script, "until the end", 2);
}

/* The HEAD answer announces 100 bytes but sends none; the next answer on the connection is read right. */
Test(h1, head_answer_has_no_body)
{
    static const step script[] = {
        STEP("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", KEEP),
        STEP("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext", KEEP),
    };
    static const char head[] = "HEAD /x HTTP/1.1\r\nHost: upstream\r\n\r\n";
    srv *s = srv_start(script, 2);
    xfer *x[2] = {xfer_new(), xfer_new()};
    up_h1_req q = req_to_port(AF_INET, s->port, head, sizeof head - 1);
    q.no_body = 1;
    q.timeout_ms = 5000; /* waiting for the announced body would run out */
    run(&q, x[0]);
    cr_assert_eq(x[0]->r.code, UP_OK, "code %d: %s", x[0]->r.code, x[0]->r.error);
    cr_assert_eq(x[0]->r.status, 200);
    assert_body(x[0], "");
    get_ok(s, x[1]);
    assert_body(x[1], "next");
    cr_assert_eq(atomic_load(&s->connections), 1, "connections: %d", atomic_load(&s->connections));
}

/* 204 without any length, 304 with the representation's Content-Length: neither has a body. */
Test(h1, status_204_and_304_have_no_body)
{
    static const step script[] = {
        STEP("HTTP/1.1 204 No Content\r\n\r\n", KEEP),
        STEP("HTTP/1.1 304 Not Modified\r\nETag: \"e\"\r\nContent-Length: 50\r\n\r\n", KEEP),
        STEP("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext", KEEP),
    };
    static const long want_status[] = {204, 304, 200};
    static const char *const want_body[] = {"", "", "next"};
    srv *s = srv_start(script, 3);
    for (int i = 0; i < 3; i++) {
        xfer *x = xfer_new();
        up_h1_req q = get_from(s);
        q.timeout_ms = 5000;
        run(&q, x);
        cr_assert_eq(x->r.code, UP_OK, "transfer %d: code %d: %s", i, x->r.code, x->r.error);
        cr_assert_eq(x->r.status, want_status[i]);
        assert_body(x, want_body[i]);
    }
    cr_assert_eq(atomic_load(&s->connections), 1, "connections: %d", atomic_load(&s->connections));
}

Test(h1, interim_1xx_answers_are_reported_then_skipped)
{
    static const step script[] = {STEP("HTTP/1.1 100 Continue\r\n\r\n"
                                       "HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n"
                                       "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
                                       KEEP)};
    srv *s = srv_start(script, 1);
    xfer *x = xfer_new();
    get_ok(s, x);
    cr_assert_eq(x->r.status, 201, "status %ld", x->r.status);
    assert_headers(x, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n"
                      "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n");
    assert_body(x, "ok");
}

Test(h1, error_status_is_an_answer_not_a_failure)
{
    static const step script[] = {STEP("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy", KEEP)};
    srv *s = srv_start(script, 1);
    xfer *x = xfer_new();
    get_ok(s, x);
    cr_assert_eq(x->r.status, 503);
    assert_body(x, "busy");
}

/* Lower-case names: the length is found (else the body would run to a close that never comes). */
Test(h1, header_names_are_case_insensitive)
{
    static const step script[] = {STEP("HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc", KEEP)};
    srv *s = srv_start(script, 1);
    xfer *x[2] = {xfer_new(), xfer_new()};
    for (int i = 0; i < 2; i++) {
        up_h1_req q = get_from(s);
        q.timeout_ms = 5000;
        run(&q, x[i]);
        cr_assert_eq(x[i]->r.code, UP_OK, "code %d: %s", x[i]->r.code, x[i]->r.error);
        assert_body(x[i], "abc");
    }
    cr_assert_eq(atomic_load(&s->connections), 1, "connections: %d", atomic_load(&s->connections));
}

/* libcurl accepts both; the second answer comes on the same connection. */
Test(h1, status_line_without_reason_and_lf_only_lines_are_accepted)
{
    static const step script[] = {
        STEP("HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok", KEEP),
        STEP("HTTP/1.1 202 Accepted\nContent-Length: 2\n\nlf", KEEP),
    };
    srv *s = srv_start(script, 2);
    xfer *x[2] = {xfer_new(), xfer_new()};
    get_ok(s, x[0]);
    cr_assert_eq(x[0]->r.status, 200);
    assert_body(x[0], "ok");
    get_ok(s, x[1]);
    cr_assert_eq(x[1]->r.status, 202);
    assert_body(x[1], "lf");
}

/* Chunked framing wins over a Content-Length (as in libcurl and RFC 9112). */
Test(h1, chunked_wins_over_content_length)
{
    static const step script[] = {STEP(
        "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", KEEP)};
    xfer *x = get_once_with(script, 1, (get_opts){.timeout_ms = 5000}, NULL);
    cr_assert_eq(x->r.code, UP_OK, "code %d: %s", x->r.code, x->r.error);
    assert_body(x, "hello");
}

/* libcurl warns "Excess found in a read" and closes the connection: the extra bytes must not be read
 * as the next answer. */
Test(h1, excess_bytes_after_an_answer_are_not_taken_for_the_next)
{
    static const step script[] = {STEP("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA", KEEP)};
    assert_two_gets(script, "ok", 2);
}

enum { READ_SIZE = 16384 }; /* the client's read size (libcurl's too) */
static char excess_answer[READ_SIZE + 64];

/* The answer fills one whole read exactly; the 5 excess bytes arrived with it (one send, one segment
 * on loopback) but lie in the socket after that read, with no new readiness edge to come. */
Test(h1, excess_bytes_beyond_a_full_read_are_not_taken_for_the_next)
{
    const int head = (int)strlen("HTTP/1.1 200 OK\r\nContent-Length: 16342\r\n\r\n");
    const int body = READ_SIZE - head;
    int n = snprintf(excess_answer, sizeof excess_answer, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", body);
    cr_assert_eq(n, head);
    memset(excess_answer + n, 'x', (size_t)body);
    memcpy(excess_answer + READ_SIZE, "EXTRA", 5);
    step script[] = {{excess_answer, READ_SIZE + 5, KEEP, 0, 0}};
    srv *s = srv_start(script, 1);
    for (int i = 0; i < 2; i++) {
        xfer *x = xfer_new();
        up_h1_req q = get_from(s);
        run(&q, x);
        cr_assert_eq(x->r.code, UP_OK, "transfer %d: code %d: %s", i, x->r.code, x->r.error);
        cr_assert_eq(x->body.len, (size_t)body);
    }
    cr_assert_eq(atomic_load(&s->connections), 2, "connections: %d", atomic_load(&s->connections));
}

Test(h1, head_answer_announcing_chunks_has_no_body)
{
    static const step script[] = {STEP("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", KEEP)};
    static const char head[] = "HEAD /x HTTP/1.1\r\nHost: upstream\r\n\r\n";
    srv *s = srv_start(script, 1);
    xfer *x = xfer_new();
    up_h1_req q = req_to_port(AF_INET, s->port, head, sizeof head - 1);
    q.no_body = 1;
    q.timeout_ms = 5000;
    run(&q, x);
    cr_assert_eq(x->r.code, UP_OK, "code %d: %s", x->r.code, x->r.error);
    assert_body(x, "");
}

/* ---- callbacks that refuse ---- */

Test(h1, body_callback_refusal_is_a_write_error)
{
    static const step script[] = {STEP("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", KEEP)};
    srv *s;
    xfer *x = get_once_with(script, 1, (get_opts){.fail_body = 1}, &s);
    assert_failed_with(x, UP_WRITE_ERROR);
    cr_assert_geq(x->body_calls, 1);
    xfer *next = xfer_new();
    get_ok(s, next);
    assert_body(next, "hello");
}

Test(h1, header_callback_refusal_is_a_write_error)
{
    static const step script[] = {STEP("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", KEEP)};
    xfer *x = get_once_with(script, 1, (get_opts){.fail_header = 1}, NULL);
    assert_failed_with(x, UP_WRITE_ERROR);
    cr_assert_eq(x->header_calls, 1, "on_header was called again after refusing");
    cr_assert_eq(x->body_calls, 0);
}

/* ---- failures ---- */

Test(h1, refused_connection_is_couldnt_connect)
{
    xfer *x = xfer_new();
    up_h1_req q = req_to_port(AF_INET, closed_port(), GET, sizeof GET - 1);
    run(&q, x);
    assert_failed_with(x, UP_COULDNT_CONNECT);
    cr_assert_eq(x->r.connected, 0);
    cr_assert_eq(x->r.status, 0);
}

Test(h1, second_address_is_tried_when_the_first_refuses)
{
    static const step script[] = {STEP("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", KEEP)};
    srv *s = srv_start(script, 1);
    for (int i = 0; i < 2; i++) { /* the second finds the connection to the second address pooled */
        xfer *x = xfer_new();
        up_h1_req q = req_to_port(AF_INET, closed_port(), GET, sizeof GET - 1);
        q.altlen = loopback(AF_INET, s->port, &q.alt);
        run(&q, x);
        cr_assert_eq(x->r.code, UP_OK, "code %d: %s", x->r.code, x->r.error);
        assert_body(x, "ok");
    }
    cr_assert_eq(atomic_load(&s->connections), 1);
}

Test(h1, both_addresses_refusing_is_couldnt_connect)
{
    xfer *x = xfer_new();
    up_h1_req q = req_to_port(AF_INET, closed_port(), GET, sizeof GET - 1);
    q.altlen = loopback(AF_INET, closed_port(), &q.alt);
    run(&q, x);
    assert_failed_with(x, UP_COULDNT_CONNECT);
}

/* A listener that never accepts, with its accept queue (one place) filled by fillers[]: the kernel
 * drops the SYN of any further connect, which then hangs. Returns the listener; fills *port. */
static int unanswering_listener(int *port, int fillers[3])
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_storage ss;
    socklen_t len = loopback(AF_INET, 0, &ss);
    cr_assert(fd >= 0 && bind(fd, (struct sockaddr *)&ss, len) == 0 && listen(fd, 0) == 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
    *port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    for (int i = 0; i < 3; i++) {
        fillers[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        cr_assert_geq(fillers[i], 0);
        connect(fillers[i], (struct sockaddr *)&ss, len); /* EINPROGRESS, or hanging: either fills */
    }
    usleep(100 * 1000);
    return fd;
}

/* connect_timeout_ms bounds the connecting alone: with a whole-transfer timeout of 60 s the transfer
 * must still end within the 10 s wait. */
Test(h1, connect_timeout_ends_a_hanging_connect)
{
    int port, fillers[3];
    int lfd = unanswering_listener(&port, fillers);
    xfer *x = xfer_new();
    up_h1_req q = req_to_port(AF_INET, port, GET, sizeof GET - 1);
    q.timeout_ms = 60000;
    q.connect_timeout_ms = 300;
    run(&q, x);
    assert_failed_with(x, UP_TIMEOUT);
    cr_assert_eq(x->r.connected, 0);
    for (int i = 0; i < 3; i++)
        close(fillers[i]);
    close(lfd);
}

/* The transfer must end (within the 10 s wait) and say why. */
Test(h1, silent_server_times_out)
{
    static const step script[] = {NOTHING(SILENT)};
    xfer *x = get_once_with(script, 1, (get_opts){.timeout_ms = 300}, NULL);
    assert_failed_with(x, UP_TIMEOUT);
    cr_assert_eq(x->r.connected, 1);
    cr_assert_eq(x->r.status, 0);
}

Test(h1, garbage_instead_of_a_status_line_is_weird_server_reply)
{
    static const step script[] = {STEP("garbage, not http\r\n\r\n", CLOSE)};
    xfer *x = get_once(script, 1, NULL);
    assert_failed_with(x, UP_BAD_ANSWER);
    cr_assert_eq(x->r.connected, 1);
}

Test(h1, close_without_answer_on_a_fresh_connection_is_got_nothing)
{
    static const step script[] = {NOTHING(CLOSE)};
    srv *s;
    xfer *x = get_once(script, 1, &s);
    assert_failed_with(x, UP_GOT_NOTHING);
    cr_assert_eq(x->r.connected, 1);
    cr_assert_eq(atomic_load(&s->connections), 1, "a fresh connection must not be retried");
}

Test(h1, close_inside_a_content_length_body_is_partial_file)
{
    static const step script[] = {STEP("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", CLOSE)};
    xfer *x = get_once(script, 1, NULL);
    assert_failed_with(x, UP_PARTIAL);
    cr_assert_eq(x->r.status, 200);
}

Test(h1, reset_fails_the_transfer_and_the_loop_goes_on)
{
    static const step resets[] = {NOTHING(RESET)};
    static const step good[] = {STEP("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", KEEP)};
    srv *bad = srv_start(resets, 1);
    srv *s = srv_start(good, 1);
    xfer *x = xfer_new();
    up_h1_req q = get_from(bad);
    run(&q, x);
    assert_failed(x);
    xfer *next = xfer_new();
    get_ok(s, next);
    assert_body(next, "ok");
}

/* libcurl: "Illegal Content-Length" (UP_BAD_ANSWER), whatever follows. */
static void assert_bad_length_fails(const char *answer, size_t len)
{
    step script[] = {{answer, len, KEEP, 0, 0}};
    xfer *x = get_once_with(script, 1, (get_opts){.timeout_ms = 5000}, NULL);
    assert_failed_with(x, UP_BAD_ANSWER);
}

Test(h1, non_numeric_content_length_is_weird_server_reply)
{
    static const char answer[] = "HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\nhello";
    assert_bad_length_fails(answer, sizeof answer - 1);
}

Test(h1, negative_content_length_is_weird_server_reply)
{
    static const char answer[] = "HTTP/1.1 200 OK\r\nContent-Length: -3\r\n\r\nhello";
    assert_bad_length_fails(answer, sizeof answer - 1);
}

/* The head and part of the body came, then nothing: the deadline still ends it. */
Test(h1, silence_inside_the_body_times_out)
{
    static const step script[] = {STEP("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", SILENT)};
    xfer *x = get_once_with(script, 1, (get_opts){.timeout_ms = 300}, NULL);
    assert_failed_with(x, UP_TIMEOUT);
    cr_assert_eq(x->r.status, 200);
    assert_body(x, "abc");
}

/* The server keeps the connection open: a parser that let the bad size through would wait for more
 * and time out instead of failing at once. */
static void assert_bad_chunk_fails(const char *answer, size_t len)
{
    step script[] = {{answer, len, KEEP, 0, 0}};
    xfer *x = get_once_with(script, 1, (get_opts){.timeout_ms = 5000}, NULL);
    assert_failed(x);
    cr_assert_neq(x->r.code, UP_TIMEOUT, "the bad chunk size was not noticed: %s", x->r.error);
}

Test(h1, non_hex_chunk_size_fails)
{
    static const char answer[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n";
    assert_bad_chunk_fails(answer, sizeof answer - 1);
}

Test(h1, huge_chunk_size_fails)
{
    static const char answer[] =
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nhello\r\n0\r\n\r\n";
    assert_bad_chunk_fails(answer, sizeof answer - 1);
}

Test(h1, answer_past_max_bytes_stops_even_when_it_is_all_framing)
{
    static const char answer[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                 "1;aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\nx\r\n"
                                 "1;aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\nx\r\n"
                                 "0\r\n\r\n";
    static const step script[] = {STEP(answer, KEEP)};
    srv *s = srv_start(script, 1);
    xfer *x = xfer_new();
    up_h1_req q = get_from(s);
    q.max_bytes = 100; /* the headers and the first chunk line fit; the rest does not */
    run(&q, x);
    assert_failed_with(x, UP_TOO_LARGE);
    x = xfer_new();
    q.max_bytes = sizeof answer - 1; /* exactly the answer: fine */
    run(&q, x);
    cr_assert_eq(x->r.code, UP_OK, "code %d: %s", x->r.code, x->r.error);
    assert_body(x, "xx");
}

enum { LONG_LINE = 150 * 1024 };
static char long_header[LONG_LINE + 256];

Test(h1, header_line_over_100_kib_fails)
{
    int n = snprintf(long_header, sizeof long_header, "HTTP/1.1 200 OK\r\nX-Big: ");
    memset(long_header + n, 'a', LONG_LINE);
    n += LONG_LINE;
    n += snprintf(long_header + n, sizeof long_header - (size_t)n, "\r\nContent-Length: 0\r\n\r\n");
    step script[] = {{long_header, (size_t)n, KEEP, 0, 0}};
    xfer *x = get_once(script, 1, NULL);
    assert_failed(x);
}

/* ---- keep-alive ---- */

Test(h1, sequential_transfers_reuse_one_connection)
{
    static const step script[] = {STEP("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", KEEP)};
    srv *s = srv_start(script, 1);
    for (int i = 0; i < 3; i++) {
        xfer *x = xfer_new();
        get_ok(s, x);
        cr_assert_eq(x->r.connected, 1);
        assert_body(x, "ok");
    }
    cr_assert_eq(atomic_load(&s->requests), 3);
    cr_assert_eq(atomic_load(&s->connections), 1, "connections: %d", atomic_load(&s->connections));
}

/* The server keeps its end open whatever it announced: only the client's choice shows. */
static int connections_for_two(const char *answer, size_t len)
{
    step script[] = {{answer, len, KEEP, 0, 0}};
    srv *s = srv_start(script, 1);
    for (int i = 0; i < 2; i++) {
        xfer *x = xfer_new();
        get_ok(s, x);
        assert_body(x, "ok");
    }
    return atomic_load(&s->connections);
}

Test(h1, connection_close_answer_is_not_reused)
{
    static const char answer[] = "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok";
    int n = connections_for_two(answer, sizeof answer - 1);
    cr_assert_eq(n, 2, "connections: %d", n);
}

Test(h1, http10_answer_is_not_reused)
{
    static const char answer[] = "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok";
    int n = connections_for_two(answer, sizeof answer - 1);
    cr_assert_eq(n, 2, "connections: %d", n);
}

Test(h1, http10_keep_alive_answer_is_reused)
{
    static const char answer[] = "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok";
    int n = connections_for_two(answer, sizeof answer - 1);
    cr_assert_eq(n, 1, "connections: %d", n);
}

/* The server closes the kept-alive connection 100 ms after answering; the next transfer comes later. */
Test(h1, server_closing_an_idle_connection_does_not_break_the_next)
{
    static const step script[] = {STEP("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", CLOSE_LATER)};
    srv *s = srv_start(script, 1);
    xfer *x[2] = {xfer_new(), xfer_new()};
    get_ok(s, x[0]);
    usleep(400 * 1000);
    get_ok(s, x[1]);
    assert_body(x[1], "ok");
    cr_assert_eq(atomic_load(&s->connections), 2, "connections: %d", atomic_load(&s->connections));
}

/* The server closes at once after a keep-alive answer (the close may come with the answer's last
 * bytes, or just after): the next transfer must not fail. */
Test(h1, server_closing_right_after_the_answer_does_not_break_the_next)
{
    static const step script[] = {STEP("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", CLOSE)};
    srv *s = srv_start(script, 1);
    for (int i = 0; i < 5; i++) {
        xfer *x = xfer_new();
        get_ok(s, x);
        assert_body(x, "ok");
    }
    cr_assert_eq(atomic_load(&s->connections), 5, "connections: %d", atomic_load(&s->connections));
}

/* A done that adds the next transfer (from the loop thread): it finds the connection back in the pool. */
typedef struct chain {
    xfer first; /* first member: the first transfer's on_header and on_body see &chain as this xfer */
    xfer second;
    up_h1_req next;
    int add_rc;
} chain;

static void on_first_done(const up_h1_result *r, void *ud)
{
    chain *c = ud;
    c->add_rc = up_h1_start(&c->next, on_done, &c->second) ? 0 : -1;
    on_done(r, &c->first);
}

Test(h1, add_from_done_reuses_the_connection)
{
    static const step script[] = {STEP("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", KEEP)};
    srv *s = srv_start(script, 1);
    static chain c;
    memset(&c, 0, sizeof c);
    c.next = get_from(s);
    up_h1_req q = get_from(s);
    cr_assert_eq(h1_add(&q, on_first_done, &c), 0);
    cr_assert_eq(wait_count(&c.second.done_calls, 1, 10000), 1, "the chained transfer did not end");
    cr_assert_eq(c.add_rc, 0);
    cr_assert_eq(c.first.r.code, UP_OK, "%s", c.first.r.error);
    cr_assert_eq(c.second.r.code, UP_OK, "%s", c.second.r.error);
    assert_body(&c.second, "ok");
    cr_assert_eq(atomic_load(&s->connections), 1, "connections: %d", atomic_load(&s->connections));
    buf_free(&c.first.headers);
    buf_free(&c.first.body);
    buf_free(&c.second.headers);
    buf_free(&c.second.body);
}

/* The kept-alive connection looks fine but the server closes it on reading the second request,
 * without a byte of answer: the request goes once more, on a new connection. */
Test(h1, reused_connection_dead_before_the_answer_is_retried_once)
{
    static const step script[] = {STEP("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", KEEP), NOTHING(CLOSE)};
    srv *s = srv_start(script, 2);
    xfer *x[2] = {xfer_new(), xfer_new()};
    get_ok(s, x[0]);
    get_ok(s, x[1]);
    assert_body(x[1], "ok");
    cr_assert_eq(atomic_load(&s->connections), 2, "connections: %d", atomic_load(&s->connections));
    cr_assert_eq(atomic_load(&s->requests), 3, "requests: %d", atomic_load(&s->requests));
}

/* Idle connections are pooled per address: alternating between two servers, each sees one. */
Test(h1, idle_connections_are_kept_per_address)
{
    static const step script_a[] = {STEP("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nA", KEEP)};
    static const step script_b[] = {STEP("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nB", KEEP)};
    srv *s[2] = {srv_start(script_a, 1), srv_start(script_b, 1)};
    for (int i = 0; i < 6; i++) {
        xfer *x = xfer_new();
        get_ok(s[i % 2], x);
        assert_body(x, i % 2 ? "B" : "A");
    }
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(atomic_load(&s[i]->requests), 3);
        cr_assert_eq(atomic_load(&s[i]->connections), 1, "server %d: connections: %d", i,
                     atomic_load(&s[i]->connections));
    }
}

/* Connections the server still holds open (the client closed the others). */
static int srv_open_connections(srv *s)
{
    pthread_mutex_lock(&s->mu);
    int open = 0;
    for (int i = 0; i < s->nconns; i++)
        open += s->conns[i].fd >= 0;
    pthread_mutex_unlock(&s->mu);
    return open;
}

/* A loop of max_connects 4 ends 12 concurrent transfers keeping at most 4 connections, and reuses them. */
Test(h1, idle_pool_keeps_at_most_max_connects)
{
    enum { N = 12, POOL = 4 };
    ioloop_destroy(the_io);
    the_io = make_loop(POOL);
    cr_assert_not_null(the_io);
    step script[] = {STEP("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", KEEP)};
    script[0].delay_ms = 100; /* so that they overlap */
    srv *s = srv_start(script, 1);
    xfer *x[N];
    for (int i = 0; i < N; i++)
        x[i] = xfer_new();
    up_h1_req q = get_from(s);
    for (int i = 0; i < N; i++)
        cr_assert_eq(h1_add(&q, on_done, x[i]), 0);
    cr_assert_eq(wait_count(&n_done, N, 10000), N, "not all transfers ended within 10 s");
    for (int i = 0; i < N; i++)
        cr_assert_eq(x[i]->r.code, UP_OK, "transfer %d: code %d: %s", i, x[i]->r.code, x[i]->r.error);
    int open = srv_open_connections(s);
    for (int t = 0; t < 5000 && open > POOL; t += 10, open = srv_open_connections(s))
        usleep(10000);
    cr_assert_leq(open, POOL, "%d connections still open", open);
    int before = atomic_load(&s->connections);
    xfer *again = xfer_new();
    get_ok(s, again);
    cr_assert_eq(atomic_load(&s->connections), before, "a pooled connection was not reused");
}

/* ---- many at once, the loop stopping, IPv6 ---- */

Test(h1, hundred_concurrent_transfers_all_complete)
{
    enum { N = 100 };
    step script[] = {STEP("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", KEEP)};
    script[0].delay_ms = 50; /* so that they overlap */
    srv *s = srv_start(script, 1);
    xfer *x[N];
    for (int i = 0; i < N; i++)
        x[i] = xfer_new();
    up_h1_req q = get_from(s);
    for (int i = 0; i < N; i++)
        cr_assert_eq(h1_add(&q, on_done, x[i]), 0);
    cr_assert_eq(wait_count(&n_done, N, 20000), N, "not all transfers ended within 20 s");
    for (int i = 0; i < N; i++) {
        cr_assert_eq(x[i]->r.code, UP_OK, "transfer %d: code %d: %s", i, x[i]->r.code, x[i]->r.error);
        cr_assert_eq(x[i]->done_calls, 1);
        assert_body(x[i], "ok");
    }
    cr_assert_eq(atomic_load(&s->requests), N);
    cr_assert_eq(ioloop_call(the_io, noop, NULL), 0); /* let the loop finish the round of the last done */
    cr_assert_eq(upstream_inflight(the_io), 0);
}

Test(h1, destroy_aborts_a_waiting_transfer_once)
{
    static const step script[] = {NOTHING(SILENT)};
    srv *s = srv_start(script, 1);
    xfer *x = xfer_new();
    up_h1_req q = get_from(s);
    cr_assert_eq(h1_add(&q, on_done, x), 0);
    for (int t = 0; t < 10000 && atomic_load(&s->requests) == 0; t += 5)
        usleep(5000);
    cr_assert_eq(atomic_load(&s->requests), 1, "the request never reached the server");
    ioloop *old = the_io;
    ioloop_destroy(the_io);
    the_io = make_loop(8); /* for teardown */
    cr_assert_eq(wait_count(&x->done_calls, 1, 10000), 1, "done was not called");
    cr_assert_eq(x->r.code, UP_STOPPING, "code %d: %s", x->r.code, x->r.error);
    cr_assert_neq(x->r.error[0], '\0');
    cr_assert_eq(x->current, old, "done did not run on the stopping loop's thread");
    usleep(50 * 1000);
    cr_assert_eq(wait_count(&x->done_calls, 2, 0), 1, "done was called more than once");
}

Test(h1, ipv6_loopback_transfer)
{
    static const step script[] = {STEP("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nv6ok", KEEP)};
    srv *s = srv_start_on(AF_INET6, script, 1);
    if (!s)
        cr_skip_test("::1 is not available here");
    xfer *x = xfer_new();
    get_ok(s, x);
    cr_assert_eq(x->r.status, 200);
    assert_body(x, "v6ok");
}

/* ---- strict header syntax (RFC 9112 section 5): each of these answers is refused ---- */

static void assert_refused(const char *answer, const char *why)
{
    step script[] = {{answer, strlen(answer), KEEP, 0, 0}};
    xfer *x = get_once(script, 1, NULL);
    assert_failed_with(x, UP_BAD_ANSWER);
    cr_assert(strstr(x->r.error, why), "error '%s', want '%s'", x->r.error, why);
}

/* libcurl 7.88.1 unfolds such a line into freed memory on a reused handle (curl issue 11101). */
Test(h1, folded_first_header_line_is_refused)
{
    assert_refused("HTTP/1.1 200 OK\r\n\tX-Folded: x\r\nContent-Length: 2\r\n\r\nok", "folded");
}

Test(h1, folded_later_header_line_is_refused)
{
    assert_refused("HTTP/1.1 200 OK\r\nX-A: a\r\n  more\r\nContent-Length: 2\r\n\r\nok", "folded");
}

/* Read leniently, this is chunked to one parser and unframed to another. */
Test(h1, whitespace_before_the_colon_is_refused)
{
    assert_refused("HTTP/1.1 200 OK\r\nTransfer-Encoding : chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", "whitespace");
    assert_refused("HTTP/1.1 200 OK\r\nContent-Length\t: 2\r\n\r\nok", "whitespace");
}

Test(h1, header_line_without_a_colon_is_refused)
{
    assert_refused("HTTP/1.1 200 OK\r\nX-No-Colon\r\nContent-Length: 2\r\n\r\nok", "without a colon");
    assert_refused("HTTP/1.1 200 OK\r\n: nameless\r\nContent-Length: 2\r\n\r\nok", "without a name");
}

Test(h1, nul_or_lone_cr_in_a_value_is_refused)
{
    static const char nul[] = "HTTP/1.1 200 OK\r\nX-Nul: a\0b\r\nContent-Length: 2\r\n\r\nok";
    step script[] = {{nul, sizeof nul - 1, KEEP, 0, 0}};
    xfer *x = get_once(script, 1, NULL);
    assert_failed_with(x, UP_BAD_ANSWER);
    cr_assert(strstr(x->r.error, "NUL"), "%s", x->r.error);
    assert_refused("HTTP/1.1 200 OK\r\nX-Cr: a\rb\r\nContent-Length: 2\r\n\r\nok", "lone CR");
}

Test(h1, header_name_that_is_not_a_token_is_refused)
{
    assert_refused("HTTP/1.1 200 OK\r\nX-\xe9t\xe9: v\r\nContent-Length: 2\r\n\r\nok", "not a token");
}

/* A second line could undo the first: `chunked`, then `identity` would leave the body unframed. */
Test(h1, second_transfer_encoding_line_is_refused)
{
    assert_refused("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "2\r\nok\r\n0\r\n\r\n",
                   "more than one Transfer-Encoding");
}

Test(h1, malformed_trailer_line_is_refused)
{
    assert_refused("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nNo-Colon\r\n\r\n",
                   "without a colon");
}

/* Both framings: chunked wins, but the connection is not trusted with another answer (RFC 9112 6.3). */
Test(h1, answer_with_both_framings_is_not_reused)
{
    static const step script[] = {STEP(
        "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", KEEP)};
    assert_two_gets(script, "hello", 2);
}

/* What is allowed stays allowed: blanks around a value, a tab inside it, bytes past ASCII in it, one
 * Transfer-Encoding line with a list. */
Test(h1, lenient_but_valid_header_lines_are_accepted)
{
    static const step script[] = {STEP("HTTP/1.1 200 OK\r\nX-A:  a\tb  \r\nX-Latin: caf\xe9\r\nX-Empty:\r\n"
                                       "Transfer-Encoding: identity, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
                                       KEEP)};
    xfer *x = get_once(script, 1, NULL);
    cr_assert_eq(x->r.code, UP_OK, "code %d: %s", x->r.code, x->r.error);
    assert_body(x, "ok");
}
