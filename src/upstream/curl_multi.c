/* curl_multi: libcurl's multi-socket API as a client of the I/O loop, one multi handle per loop.
 *
 * Shape (curl's docs/examples/ephiperfifo.c, on the loop's primitives instead of a timerfd):
 *   - CURLMOPT_SOCKETFUNCTION: each socket curl wants watched gets a row (curl_sock) whose io_watch
 *     carries what the epoll set holds for it; its events go to curl_multi_socket_action;
 *   - CURLMOPT_TIMERFUNCTION: one loop timer, started, moved or stopped as curl asks; when it fires,
 *     curl_multi_socket_action(CURL_SOCKET_TIMEOUT);
 *   - after each action, finished transfers are read with curl_multi_info_read, taken out of the
 *     multi handle and handed back through their done callback.
 * No curl call is made from inside curl's own callbacks: they only touch watches and the timer.
 *
 * The multi handle's connection cache is the keep-alive pool to upstreams (CURLMOPT_MAXCONNECTS);
 * there is no per-host cap, so one slow upstream cannot starve another of connections.
 *
 * A kept-alive socket curl stops watching (CURL_POLL_REMOVE after a transfer) stays in the set for
 * reading, so the next transfer on it costs no epoll_ctl at all (it asks for the same events). If it
 * wakes while nobody watches it, the upstream closed it or sent bytes nobody asked for; curl_sock_kill
 * makes sure libcurl never reuses it (its own check before reuse, 7.88.1, calls a socket with bytes
 * waiting alive, and would read them as the next transfer's answer). Sockets curl opens come through
 * curl_open_socket and leave through curl_close_socket, which give each its row and take it away;
 * others curl watches (its resolver's socketpair) get a row when first watched and lose it when curl
 * stops watching them.
 *
 * While a transfer is in the multi handle we borrow its CURLOPT_PRIVATE (to find our record in O(1)
 * when curl reports it done) and restore the caller's value before done runs. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "upstream_internal.h"

typedef struct curl_sock {
    io_watch watch;
    uint32_t reg; /* events in the epoll set; 0: not in it */
    int want;     /* curl watches it */
    int conn;     /* opened by curl_open_socket: a connection to an upstream */
} curl_sock;

struct up_curl_xfer {
    curl_client *c;
    CURL *easy;
    up_curl_done_fn done;
    void *ud;
    void *user_private;
    struct up_curl_xfer *prev, *next;
};
typedef up_curl_xfer curl_xfer;

struct curl_client {
    up_loop *loop;
    CURLM *multi;
    io_timer timer;
    curl_sock **socks; /* rows by fd */
    size_t nsocks;
    curl_xfer *active;
};

up_code up_from_curl(CURLcode c)
{
    switch (c) {
    case CURLE_OK: return UP_OK;
    case CURLE_COULDNT_CONNECT: return UP_COULDNT_CONNECT;
    case CURLE_COULDNT_RESOLVE_HOST: return UP_RESOLVE;
    case CURLE_SEND_ERROR: return UP_SEND_ERROR;
    case CURLE_RECV_ERROR: return UP_RECV_ERROR;
    case CURLE_OPERATION_TIMEDOUT: return UP_TIMEOUT;
    case CURLE_FILESIZE_EXCEEDED: return UP_TOO_LARGE;
    case CURLE_WRITE_ERROR: return UP_WRITE_ERROR;
    case CURLE_GOT_NOTHING: return UP_GOT_NOTHING;
    case CURLE_PARTIAL_FILE: return UP_PARTIAL;
    case CURLE_WEIRD_SERVER_REPLY: return UP_BAD_ANSWER;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE: return UP_TLS;
    case CURLE_OUT_OF_MEMORY: return UP_NO_MEMORY;
    case CURLE_ABORTED_BY_CALLBACK: return UP_STOPPING;
    default: return UP_FAILED;
    }
}

/* ---- sockets (loop thread, from inside curl calls: no curl calls here) ---- */

static void curl_on_watch(io_watch *w, uint32_t events);

static curl_sock *curl_row(curl_client *c, int fd)
{
    return fd >= 0 && (size_t)fd < c->nsocks ? c->socks[fd] : NULL;
}

/* Forgets fd's row: out of the epoll set (if still there) and freed. */
static void curl_row_drop(curl_client *c, int fd)
{
    curl_sock *k = curl_row(c, fd);
    if (!k)
        return;
    ioloop_watch_stop(c->loop->io, &k->watch);
    free(k);
    c->socks[fd] = NULL;
}

/* A fresh row for fd (an old one under the same number is dropped). NULL when out of memory. */
static curl_sock *curl_row_new(curl_client *c, int fd, int conn)
{
    curl_sock **t = util_grow_zeroed(c->socks, &c->nsocks, sizeof *t, (size_t)fd, 256);
    if (!t)
        return NULL;
    c->socks = t;
    curl_row_drop(c, fd);
    curl_sock *k = calloc(1, sizeof *k);
    if (!k)
        return NULL;
    ioloop_watch_init(&k->watch, fd, curl_on_watch, c);
    k->conn = conn;
    t[fd] = k;
    return k;
}

/* CURLOPT_OPENSOCKETFUNCTION: every socket curl opens in this loop starts with a clean row. */
static curl_socket_t curl_open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *a)
{
    (void)purpose;
    int fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
    if (fd >= 0 && !curl_row_new(clientp, fd, 1)) { /* no row: refuse the socket rather than track it wrongly */
        close(fd);
        fd = -1;
    }
    return fd < 0 ? CURL_SOCKET_BAD : fd;
}

/* CURLOPT_CLOSESOCKETFUNCTION: the row goes with the socket, so an event for its number still in
 * the batch being handled touches nothing. */
static int curl_close_socket(void *clientp, curl_socket_t fd)
{
    curl_row_drop(clientp, fd);
    return close(fd);
}

/* An idle connection of curl's woke with bytes (or its end) to read: nobody asked for them. It is
 * emptied and shut both ways, so libcurl's check before reuse reads its end and drops it; should
 * more bytes arrive first, the request's send fails (EPIPE), which libcurl retries on a new
 * connection. It cannot be closed here: the fd is libcurl's. */
static void curl_sock_kill(int fd)
{
    char scrap[4096];
    ssize_t n = recv(fd, scrap, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && errno != ECONNRESET)
        return;
    for (int i = 0; i < 16 && recv(fd, scrap, sizeof scrap, MSG_DONTWAIT) > 0; i++)
        ;
    shutdown(fd, SHUT_RDWR);
}

/* Puts k's socket in the epoll set for events. 0, or -1 (not in the set). */
static int curl_sock_set(curl_client *c, curl_sock *k, uint32_t events)
{
    if (k->reg == events)
        return 0;
    ioloop *io = c->loop->io;
    int rc = k->reg ? ioloop_watch_modify(io, &k->watch, events) : ioloop_watch_start(io, &k->watch, events);
    if (rc != 0) /* the kernel forgot a closed number (MOD: ENOENT), or kept one (ADD: EEXIST) */
        rc = errno == ENOENT ? ioloop_watch_start(io, &k->watch, events) : ioloop_watch_modify(io, &k->watch, events);
    k->reg = rc == 0 ? events : 0;
    return rc;
}

static int curl_on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)easy;
    (void)socketp;
    curl_client *c = userp;
    curl_sock *k = curl_row(c, s);
    if (what == CURL_POLL_REMOVE) {
        if (!k)
            return 0;
        if (!k->conn) { /* not a connection (its resolver's socketpair): it may close unseen */
            curl_row_drop(c, s);
            return 0;
        }
        k->want = 0;
        /* an idle socket is always writable, which would wake us for nothing; reading is what tells
         * of bytes nobody asked for */
        if ((k->reg & EPOLLOUT) && curl_sock_set(c, k, EPOLLIN) != 0)
            ioloop_watch_stop(c->loop->io, &k->watch);
        return 0;
    }
    if (!k && !(k = curl_row_new(c, s, 0)))
        return -1;
    uint32_t events = ((what & CURL_POLL_IN) ? EPOLLIN : 0u) | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0u);
    k->want = 1;
    return curl_sock_set(c, k, events);
}

static int curl_on_timer_change(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    curl_client *c = userp;
    if (timeout_ms < 0)
        ioloop_timer_stop(c->loop->io, &c->timer);
    else if (ioloop_timer_start(c->loop->io, &c->timer, (double)timeout_ms) != 0)
        return -1;
    return 0;
}

/* ---- transfers ---- */

static void curl_active_unlink(curl_client *c, curl_xfer *x)
{
    if (x->prev)
        x->prev->next = x->next;
    else
        c->active = x->next;
    if (x->next)
        x->next->prev = x->prev;
    x->prev = x->next = NULL;
}

/* Takes x out of the multi handle and the client, gives its handle back its CURLOPT_PRIVATE, frees x. */
static void curl_drop(curl_client *c, curl_xfer *x)
{
    curl_multi_remove_handle(c->multi, x->easy);
    curl_active_unlink(c, x);
    curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x->user_private);
    atomic_fetch_sub(&c->loop->inflight, 1);
    free(x);
}

static void curl_finish(curl_client *c, curl_xfer *x, CURLcode result)
{
    CURL *easy = x->easy;
    up_curl_done_fn done = x->done;
    void *ud = x->ud;
    curl_drop(c, x);
    done(easy, up_from_curl(result), result, ud);
}

static void curl_reap(curl_client *c)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(c->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        CURLcode result = m->data.result; /* m is invalid once the handle is removed */
        curl_xfer *x = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        curl_finish(c, x, result);
    }
}

static void curl_on_watch(io_watch *w, uint32_t events)
{
    curl_client *c = w->ud;
    int fd = w->fd;
    curl_sock *k = curl_row(c, fd);
    if (k && !k->want) { /* idle and kept alive (see the top of this file) */
        if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
            curl_sock_kill(fd);
        ioloop_watch_stop(c->loop->io, &k->watch);
        k->reg = 0;
        return;
    }
    int flags = ((events & EPOLLIN) ? CURL_CSELECT_IN : 0) | ((events & EPOLLOUT) ? CURL_CSELECT_OUT : 0) |
                ((events & (EPOLLERR | EPOLLHUP)) ? CURL_CSELECT_ERR : 0);
    int running;
    curl_multi_socket_action(c->multi, fd, flags, &running);
    curl_reap(c);
}

static void curl_on_timer(io_timer *t)
{
    curl_client *c = t->ud;
    int running;
    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    curl_reap(c);
}

up_curl_xfer *up_curl_start(CURL *easy, up_curl_done_fn done, void *ud)
{
    up_loop *l = up_loop_current();
    if (!l || !easy || !done)
        return NULL;
    curl_client *c = l->curl;
    curl_xfer *x = calloc(1, sizeof *x);
    if (!x)
        return NULL;
    *x = (curl_xfer){.c = c, .easy = easy, .done = done, .ud = ud};
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x->user_private);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, x);
    curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, curl_open_socket);
    curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, c);
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, curl_close_socket);
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETDATA, c);
    if (curl_multi_add_handle(c->multi, easy) != CURLM_OK) {
        curl_easy_setopt(easy, CURLOPT_PRIVATE, x->user_private);
        free(x);
        return NULL;
    }
    x->next = c->active;
    if (c->active)
        c->active->prev = x;
    c->active = x;
    atomic_fetch_add(&l->inflight, 1);
    return x;
}

void up_curl_cancel(up_curl_xfer *x)
{
    if (x)
        curl_drop(x->c, x);
}

/* ---- the client ---- */

curl_client *curl_client_new(up_loop *l, long max_connects)
{
    curl_client *c = calloc(1, sizeof *c);
    if (!c || !(c->multi = curl_multi_init())) {
        free(c);
        return NULL;
    }
    c->loop = l;
    ioloop_timer_init(&c->timer, curl_on_timer, c);
    CURLMcode mc = CURLM_OK;
    mc |= curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, curl_on_socket);
    mc |= curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    mc |= curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, curl_on_timer_change);
    mc |= curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    mc |= curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, max_connects);
    mc |= curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 0L);
    if (mc != CURLM_OK) {
        curl_client_free(c);
        return NULL;
    }
    return c;
}

void curl_client_abort_all(curl_client *c)
{
    while (c && c->active)
        curl_finish(c, c->active, CURLE_ABORTED_BY_CALLBACK);
}

/* No transfer may be active. Closes the cached connections (through curl_close_socket: their rows go
 * with them), then what rows are left. */
void curl_client_free(curl_client *c)
{
    if (!c)
        return;
    curl_multi_cleanup(c->multi);
    ioloop_timer_stop(c->loop->io, &c->timer);
    for (size_t fd = 0; fd < c->nsocks; fd++)
        curl_row_drop(c, (int)fd);
    free(c->socks);
    free(c);
}
