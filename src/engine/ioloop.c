/* ioloop: one thread that drives libcurl's multi-socket API with epoll.
 *
 * Shape (after curl's docs/examples/ephiperfifo.c, with the timerfd folded into epoll_wait's
 * timeout):
 *   - curl tells us which sockets to watch (CURLMOPT_SOCKETFUNCTION -> epoll_ctl) and when it next
 *     wants to be called without socket activity (CURLMOPT_TIMERFUNCTION -> curl_due_ms);
 *   - the loop sleeps in epoll_wait until a socket is ready, curl's timeout or the earliest
 *     ioloop_after timer is due, or the eventfd says another thread queued work;
 *   - finished transfers are read with curl_multi_info_read, removed from the multi handle and
 *     handed back through their done callback.
 *
 * Threads: the multi handle and every easy handle inside it are touched only by the loop thread.
 * ioloop_add and ioloop_after may be called from any thread (the loop's own included): adds go on a
 * locked intrusive queue that the loop drains; timers go straight into a min-heap under the same
 * lock (so a failed allocation is reported to the caller, never lost on the loop thread). The lock
 * is held only for list/heap surgery, never around a callback or a curl call.
 *
 * The multi handle's connection cache is the keep-alive pool to upstreams (CURLMOPT_MAXCONNECTS);
 * there is no per-host cap, so one slow upstream cannot starve another of connections.
 *
 * A guest (ioloop.h) adds its own fds to the same epoll set, tagged in the high half of the event's
 * data, and its hooks run on the loop thread: the HTTP front end's daemon lives here.
 *
 * Plain HTTP/1.1 transfers (ioloop_h1_add) skip libcurl: their queue is drained with the curl adds,
 * their sockets sit in the same epoll set under their own tag, and their deadlines bound the sleep
 * like curl's timeout (h1.c).
 *
 * While a transfer is in the loop we borrow its CURLOPT_PRIVATE (to find our record in O(1) when
 * curl reports it done) and restore the caller's value before done runs. */
#include "kailash/ioloop.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "h1.h"
#include "kailash/util.h"

/* One transfer handed to the loop. Owned by the loop from ioloop_add until done is called. */
typedef struct io_xfer {
    CURL *easy;
    ioloop_done_fn done;
    void *ud;
    void *user_private;          /* the caller's CURLOPT_PRIVATE, restored before done */
    struct io_xfer *prev, *next; /* pending queue (next only), then the active list */
} io_xfer;

typedef struct io_timer {
    double due_ms;
    uint64_t seq; /* FIFO among timers due at the same instant */
    void (*fn)(void *ud);
    void *ud;
} io_timer;

struct ioloop {
    pthread_t thread;
    int epfd;
    int wakefd;
    CURLM *multi;
    atomic_size_t inflight; /* accepted by ioloop_add, done not yet called */

    pthread_mutex_t lock; /* guards everything down to `woken` */
    io_xfer *queue_head, *queue_tail;
    h1_xfer *h1_head, *h1_tail; /* ioloop_h1_add's queue */
    io_timer *heap;
    size_t heap_len, heap_cap;
    uint64_t timer_seq;
    int stopping;
    int woken; /* an eventfd write is outstanding: later callers need not write again */
    int awake; /* the loop is between two epoll_waits and will look at the queue and timers again
                * before it sleeps: callers need not write at all (saves two syscalls a request) */

    /* Loop thread only. */
    io_xfer *active;       /* transfers inside the multi handle */
    h1_client *h1;         /* the plain HTTP/1.1 client's connections and transfers */
    double curl_due_ms;    /* < 0: curl wants no timeout */
    ioloop_guest guest;    /* on_event == NULL: none */
    struct io_sock *socks; /* by fd: curl's sockets (see io_sock) */
    size_t nsocks;
};

/* What the epoll set holds for one of curl's sockets, and whether curl watches it now. A kept-alive
 * socket curl stops watching (CURL_POLL_REMOVE after a transfer) stays in the set for reading, so
 * the next transfer on it costs no epoll_ctl at all (it asks for the same events). If it wakes while
 * nobody watches it, the upstream closed it or sent bytes nobody asked for; io_sock_kill makes sure
 * libcurl never reuses it (its own check before reuse, 7.88.1, calls a socket with bytes waiting
 * alive, and would read them as the next transfer's answer). Sockets curl opens come through
 * io_open_socket, which clears their row: a row left over from a closed socket with the same number
 * never counts. */
typedef struct io_sock {
    uint32_t reg; /* events in the epoll set; 0: not in it */
    int want;     /* curl watches it */
    int conn;     /* opened by io_open_socket: a connection to an upstream */
} io_sock;

/* epoll data: curl's sockets and the eventfd carry the bare fd; a guest's fds carry this tag too. */
#define IO_GUEST_TAG (UINT64_C(1) << 32)

static _Thread_local ioloop *t_current;

/* ---- timer heap (caller holds io->lock) ---- */

static int io_timer_before(const io_timer *a, const io_timer *b)
{
    return a->due_ms < b->due_ms || (a->due_ms == b->due_ms && a->seq < b->seq);
}

static int io_heap_push_locked(ioloop *io, io_timer t)
{
    if (io->heap_len == io->heap_cap) {
        size_t cap = io->heap_cap ? io->heap_cap * 2 : 16;
        io_timer *h = realloc(io->heap, cap * sizeof *h);
        if (!h)
            return -1;
        io->heap = h;
        io->heap_cap = cap;
    }
    size_t i = io->heap_len++;
    while (i > 0 && io_timer_before(&t, &io->heap[(i - 1) / 2])) {
        io->heap[i] = io->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    io->heap[i] = t;
    return 0;
}

static io_timer io_heap_pop_locked(ioloop *io)
{
    io_timer top = io->heap[0];
    io_timer last = io->heap[--io->heap_len];
    size_t i = 0, n = io->heap_len;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && io_timer_before(&io->heap[c + 1], &io->heap[c]))
            c++;
        if (!io_timer_before(&io->heap[c], &last))
            break;
        io->heap[i] = io->heap[c];
        i = c;
    }
    if (n)
        io->heap[i] = last;
    return top;
}

/* ---- waking the loop ---- */

/* Caller holds io->lock. One outstanding write is enough: the loop drains everything it finds. */
static void io_wake_locked(ioloop *io)
{
    if (io->woken || io->awake)
        return;
    uint64_t one = 1;
    if (write(io->wakefd, &one, sizeof one) == (ssize_t)sizeof one)
        io->woken = 1;
}

/* Reads, then clears the flag. A caller that skipped its write because the flag was still set did
 * its queueing before the clear, hence before this iteration drains the queue and recomputes the
 * wait; every caller after the clear writes again. */
static void io_on_wake(ioloop *io)
{
    uint64_t n;
    while (read(io->wakefd, &n, sizeof n) == (ssize_t)sizeof n)
        ;
    pthread_mutex_lock(&io->lock);
    io->woken = 0;
    pthread_mutex_unlock(&io->lock);
}

/* ---- curl callbacks (loop thread, from inside curl calls: no curl calls here) ---- */

/* The row of fd, growing the table; NULL when out of memory. */
static io_sock *io_sock_at(ioloop *io, int fd)
{
    io_sock *t = fd < 0 ? NULL : util_grow_zeroed(io->socks, &io->nsocks, sizeof *t, (size_t)fd, 256);
    if (!t)
        return NULL;
    io->socks = t;
    return &t[fd];
}

/* CURLOPT_OPENSOCKETFUNCTION: every socket curl opens in this loop starts with a clean row. */
static curl_socket_t io_open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *a)
{
    (void)purpose;
    int fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
    io_sock *k = fd >= 0 ? io_sock_at(clientp, fd) : NULL;
    if (k)
        *k = (io_sock){0, 0, 1};
    else if (fd >= 0) { /* no row: refuse the socket rather than track it wrongly */
        close(fd);
        fd = -1;
    }
    return fd < 0 ? CURL_SOCKET_BAD : fd;
}

/* CURLOPT_CLOSESOCKETFUNCTION: the row forgets the socket, so an event for its number still in the
 * batch being handled touches nothing (the number may already be another's). */
static int io_close_socket(void *clientp, curl_socket_t fd)
{
    ioloop *io = clientp;
    if (fd >= 0 && (size_t)fd < io->nsocks)
        io->socks[fd] = (io_sock){0, 0, 0};
    return close(fd);
}

static void io_sock_drop(ioloop *io, int fd, io_sock *k)
{
    epoll_ctl(io->epfd, EPOLL_CTL_DEL, fd, NULL); /* curl may already have closed it: ignore */
    k->reg = 0;
    k->want = 0;
}

/* An idle connection of curl's woke with bytes (or its end) to read: nobody asked for them. It is
 * emptied and shut both ways, so libcurl's check before reuse reads its end and drops it; should
 * more bytes arrive first, the request's send fails (EPIPE), which libcurl retries on a new
 * connection. It cannot be closed here: the fd is libcurl's. A peek first: a socket curl just opened
 * under a reused number (the event was for the old one) has nothing to read and is left alone. */
static void io_sock_kill(int fd)
{
    char scrap[4096];
    ssize_t n = recv(fd, scrap, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && errno != ECONNRESET)
        return;
    for (int i = 0; i < 16 && recv(fd, scrap, sizeof scrap, MSG_DONTWAIT) > 0; i++)
        ;
    shutdown(fd, SHUT_RDWR);
}

/* Puts s in the epoll set for events (k->reg says what it holds now). 0, or -1 (not in the set). */
static int io_sock_set(ioloop *io, curl_socket_t s, io_sock *k, uint32_t events)
{
    if (k->reg == events)
        return 0;
    struct epoll_event ev = {.events = events, .data.u64 = (uint64_t)(uint32_t)s};
    if (epoll_ctl(io->epfd, k->reg ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, s, &ev) != 0 &&
        epoll_ctl(io->epfd, errno == ENOENT ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, s, &ev) != 0) {
        k->reg = 0;
        return -1;
    }
    k->reg = events;
    return 0;
}

static int io_on_curl_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)easy;
    (void)socketp;
    ioloop *io = userp;
    io_sock *k = io_sock_at(io, s);
    if (!k)
        return -1;
    if (what == CURL_POLL_REMOVE) {
        k->want = 0;
        /* an idle socket is always writable, which would wake us for nothing; reading is what tells
         * of bytes nobody asked for */
        if ((k->reg & EPOLLOUT) && io_sock_set(io, s, k, EPOLLIN) != 0)
            io_sock_drop(io, s, k);
        return 0;
    }
    uint32_t events = ((what & CURL_POLL_IN) ? EPOLLIN : 0u) | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0u);
    k->want = 1;
    return io_sock_set(io, s, k, events);
}

static int io_on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    ioloop *io = userp;
    io->curl_due_ms = timeout_ms < 0 ? -1.0 : util_now_ms() + (double)timeout_ms;
    return 0;
}

/* ---- transfers ---- */

static void io_active_unlink(ioloop *io, io_xfer *x)
{
    if (x->prev)
        x->prev->next = x->next;
    else
        io->active = x->next;
    if (x->next)
        x->next->prev = x->prev;
    x->prev = x->next = NULL;
}

/* Hands x back to its owner. x must no longer be in the multi handle nor on any list. */
static void io_xfer_finish(ioloop *io, io_xfer *x, CURLcode result)
{
    CURL *easy = x->easy;
    ioloop_done_fn done = x->done;
    void *ud = x->ud;
    curl_easy_setopt(easy, CURLOPT_PRIVATE, x->user_private);
    free(x);
    atomic_fetch_sub(&io->inflight, 1);
    done(easy, result, ud); /* may call ioloop_add / ioloop_after: we hold no lock */
}

static void io_xfer_begin(ioloop *io, io_xfer *x)
{
    curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x);
    curl_easy_setopt(x->easy, CURLOPT_OPENSOCKETFUNCTION, io_open_socket);
    curl_easy_setopt(x->easy, CURLOPT_OPENSOCKETDATA, io);
    curl_easy_setopt(x->easy, CURLOPT_CLOSESOCKETFUNCTION, io_close_socket);
    curl_easy_setopt(x->easy, CURLOPT_CLOSESOCKETDATA, io);
    CURLMcode mc = curl_multi_add_handle(io->multi, x->easy);
    if (mc != CURLM_OK) {
        io_xfer_finish(io, x, mc == CURLM_OUT_OF_MEMORY ? CURLE_OUT_OF_MEMORY : CURLE_FAILED_INIT);
        return;
    }
    x->prev = NULL;
    x->next = io->active;
    if (io->active)
        io->active->prev = x;
    io->active = x;
}

static void io_reap(ioloop *io)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(io->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        CURL *easy = m->easy_handle; /* m is invalid once the handle is removed */
        CURLcode result = m->data.result;
        io_xfer *x = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
        curl_multi_remove_handle(io->multi, easy);
        io_active_unlink(io, x);
        io_xfer_finish(io, x, result);
    }
}

static void io_on_socket(ioloop *io, int fd, uint32_t events)
{
    io_sock *k = (size_t)fd < io->nsocks ? &io->socks[fd] : NULL;
    if (k && !k->want) { /* idle and kept alive (see io_sock), or closed by curl already */
        if (k->conn && (events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
            io_sock_kill(fd);
        if (k->reg)
            io_sock_drop(io, fd, k);
        return;
    }
    int flags = ((events & EPOLLIN) ? CURL_CSELECT_IN : 0) | ((events & EPOLLOUT) ? CURL_CSELECT_OUT : 0) |
                ((events & (EPOLLERR | EPOLLHUP)) ? CURL_CSELECT_ERR : 0);
    int running;
    curl_multi_socket_action(io->multi, fd, flags, &running);
    io_reap(io);
}

static void io_run_curl_timeout(ioloop *io)
{
    if (io->curl_due_ms < 0 || util_now_ms() < io->curl_due_ms)
        return;
    io->curl_due_ms = -1.0;
    int running;
    curl_multi_socket_action(io->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    io_reap(io);
}

/* Takes the queued adds; returns non-zero when the loop must stop (the adds are then aborted). */
static int io_take_queue(ioloop *io, io_xfer **list, h1_xfer **h1_list)
{
    pthread_mutex_lock(&io->lock);
    *list = io->queue_head;
    io->queue_head = io->queue_tail = NULL;
    *h1_list = io->h1_head;
    io->h1_head = io->h1_tail = NULL;
    int stopping = io->stopping;
    pthread_mutex_unlock(&io->lock);
    return stopping;
}

static int io_drain_queue(ioloop *io)
{
    io_xfer *x;
    h1_xfer *h;
    int stopping = io_take_queue(io, &x, &h);
    while (h) {
        h1_xfer *next = h1_xfer_next(h);
        h1_xfer_set_next(h, NULL);
        if (stopping)
            h1_xfer_abort(h, &io->inflight);
        else
            h1_xfer_start(io->h1, h);
        h = next;
    }
    while (x) {
        io_xfer *next = x->next;
        x->next = NULL;
        if (stopping)
            io_xfer_finish(io, x, CURLE_ABORTED_BY_CALLBACK);
        else
            io_xfer_begin(io, x);
        x = next;
    }
    return stopping;
}

/* Runs the ioloop_after timers that are due, one pop per lock so a callback may add timers. */
static void io_run_timers(ioloop *io)
{
    for (;;) {
        pthread_mutex_lock(&io->lock);
        if (io->heap_len == 0 || io->heap[0].due_ms > util_now_ms()) {
            pthread_mutex_unlock(&io->lock);
            return;
        }
        io_timer t = io_heap_pop_locked(io);
        pthread_mutex_unlock(&io->lock);
        t.fn(t.ud);
    }
}

/* epoll_wait timeout in ms: until the earliest of curl's timeout, the plain client's deadlines and
 * our timers; -1 for none. */
static int io_wait_ms(ioloop *io)
{
    double due = io->curl_due_ms, h1_due = h1_due_ms(io->h1);
    if (h1_due >= 0 && (due < 0 || h1_due < due))
        due = h1_due;
    pthread_mutex_lock(&io->lock);
    if (io->heap_len && (due < 0 || io->heap[0].due_ms < due))
        due = io->heap[0].due_ms;
    if (io->queue_head || io->h1_head || io->stopping) /* queued while we were busy, without a wake-up write */
        due = 0;
    io->awake = 0; /* from here on, callers write the eventfd */
    pthread_mutex_unlock(&io->lock);
    if (due < 0)
        return -1;
    double wait = ceil(due - util_now_ms()); /* round up: waking early would spin */
    if (wait <= 0)
        return 0;
    return wait > 60000 ? 60000 : (int)wait;
}

/* Ends every transfer still running with CURLE_ABORTED_BY_CALLBACK. Their done callbacks see the
 * loop stopping: ioloop_add and ioloop_after refuse from now on. */
static void io_abort_all(ioloop *io)
{
    h1_abort_all(io->h1);
    while (io->active) {
        io_xfer *x = io->active;
        curl_multi_remove_handle(io->multi, x->easy);
        io_active_unlink(io, x);
        io_xfer_finish(io, x, CURLE_ABORTED_BY_CALLBACK);
    }
}

/* The sleep: io_wait_ms, shortened to what the guest allows. */
static int io_sleep_ms(ioloop *io)
{
    int wait = io_wait_ms(io);
    if (!io->guest.on_event || !io->guest.wait_ms)
        return wait;
    int g = io->guest.wait_ms(io->guest.ud);
    return (g >= 0 && (wait < 0 || g < wait)) ? g : wait;
}

static void io_on_event(ioloop *io, const struct epoll_event *ev)
{
    int fd = (int)(uint32_t)ev->data.u64;
    if (fd == io->wakefd)
        io_on_wake(io);
    else if (ev->data.u64 & IO_H1_TAG)
        h1_on_event(io->h1, fd, ev->events);
    else if (!(ev->data.u64 & IO_GUEST_TAG))
        io_on_socket(io, fd, ev->events);
    else if (io->guest.on_event)
        io->guest.on_event(io->guest.ud, fd, ev->events);
    else /* the guest left: its fds are of no interest any more */
        epoll_ctl(io->epfd, EPOLL_CTL_DEL, fd, NULL);
}

/* The guest's after, and again while it asks to run at once (at most IO_GUEST_ROUNDS times): saves
 * an epoll_wait per round on the loop's own set. libmicrohttpd takes a few runs to take a connection
 * from "answer sent" back to "waiting for the next request". */
#define IO_GUEST_ROUNDS 4
static void io_run_guest(ioloop *io)
{
    io->guest.after(io->guest.ud);
    for (int i = 1; i < IO_GUEST_ROUNDS && io->guest.wait_ms && io->guest.wait_ms(io->guest.ud) == 0; i++)
        io->guest.after(io->guest.ud);
}

static void *io_main(void *arg)
{
    ioloop *io = arg;
    t_current = io;
    struct epoll_event evs[64];
    for (;;) {
        int n = epoll_wait(io->epfd, evs, (int)(sizeof evs / sizeof evs[0]), io_sleep_ms(io));
        pthread_mutex_lock(&io->lock);
        io->awake = 1;
        pthread_mutex_unlock(&io->lock);
        for (int i = 0; i < n; i++)
            io_on_event(io, &evs[i]);
        if (io_drain_queue(io))
            break;
        io_run_curl_timeout(io);
        h1_run_timeouts(io->h1);
        io_run_timers(io);
        if (!io->guest.after)
            continue;
        io_run_guest(io);
        if (io_drain_queue(io)) /* the guest may have added transfers: start them now */
            break;
        io_run_curl_timeout(io);
    }
    io_abort_all(io);
    return NULL;
}

/* ---- public surface ---- */

static int io_setup_multi(ioloop *io, long max_connects)
{
    io->multi = curl_multi_init();
    if (!io->multi)
        return -1;
    CURLMcode mc = CURLM_OK;
    mc |= curl_multi_setopt(io->multi, CURLMOPT_SOCKETFUNCTION, io_on_curl_socket);
    mc |= curl_multi_setopt(io->multi, CURLMOPT_SOCKETDATA, io);
    mc |= curl_multi_setopt(io->multi, CURLMOPT_TIMERFUNCTION, io_on_curl_timer);
    mc |= curl_multi_setopt(io->multi, CURLMOPT_TIMERDATA, io);
    mc |= curl_multi_setopt(io->multi, CURLMOPT_MAXCONNECTS, max_connects);
    mc |= curl_multi_setopt(io->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 0L);
    return mc == CURLM_OK ? 0 : -1;
}

/* The loop thread takes no signals: the daemon's main thread handles them. */
static int io_start_thread(ioloop *io)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&io->thread, NULL, io_main, io);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

ioloop *ioloop_create(long max_connects, char *err, size_t errlen)
{
    ioloop *io = calloc(1, sizeof *io);
    if (!io) {
        util_err(err, errlen, "ioloop: out of memory");
        return NULL;
    }
    io->epfd = io->wakefd = -1;
    io->curl_due_ms = -1.0;
    atomic_init(&io->inflight, 0);
    pthread_mutex_init(&io->lock, NULL);
    io->epfd = epoll_create1(EPOLL_CLOEXEC);
    io->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (io->epfd < 0 || io->wakefd < 0) {
        util_err(err, errlen, "ioloop: epoll/eventfd: %s", strerror(errno));
        goto err;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)(uint32_t)io->wakefd};
    if (epoll_ctl(io->epfd, EPOLL_CTL_ADD, io->wakefd, &ev) != 0) {
        util_err(err, errlen, "ioloop: epoll_ctl: %s", strerror(errno));
        goto err;
    }
    if (io_setup_multi(io, max_connects) != 0) {
        util_err(err, errlen, "ioloop: cannot set up the curl multi handle");
        goto err;
    }
    io->h1 = h1_client_new(io->epfd, max_connects, &io->inflight);
    if (!io->h1) {
        util_err(err, errlen, "ioloop: out of memory");
        goto err;
    }
    int rc = io_start_thread(io);
    if (rc != 0) {
        util_err(err, errlen, "ioloop: pthread_create: %s", strerror(rc));
        goto err;
    }
    return io;
err:
    h1_client_free(io->h1);
    if (io->multi)
        curl_multi_cleanup(io->multi);
    if (io->epfd >= 0)
        close(io->epfd);
    if (io->wakefd >= 0)
        close(io->wakefd);
    pthread_mutex_destroy(&io->lock);
    free(io);
    return NULL;
}

void ioloop_destroy(ioloop *io)
{
    if (!io)
        return;
    pthread_mutex_lock(&io->lock);
    io->stopping = 1;
    io_wake_locked(io);
    pthread_mutex_unlock(&io->lock);
    pthread_join(io->thread, NULL);
    /* Timers still pending fire now, early, on this thread: their owners (a queued run's deadline, a
     * retry's backoff) hold references that must be let go; ioloop_after refuses from here on. */
    for (;;) {
        pthread_mutex_lock(&io->lock);
        if (io->heap_len == 0) {
            pthread_mutex_unlock(&io->lock);
            break;
        }
        io_timer t = io_heap_pop_locked(io);
        pthread_mutex_unlock(&io->lock);
        t.fn(t.ud);
    }
    curl_multi_cleanup(io->multi); /* closes the cached keep-alive connections */
    h1_client_free(io->h1);
    close(io->epfd);
    close(io->wakefd);
    free(io->heap);
    free(io->socks);
    pthread_mutex_destroy(&io->lock);
    free(io);
}

int ioloop_add(ioloop *io, CURL *easy, ioloop_done_fn done, void *ud)
{
    if (!io || !easy || !done)
        return -1;
    io_xfer *x = calloc(1, sizeof *x);
    if (!x)
        return -1;
    x->easy = easy;
    x->done = done;
    x->ud = ud;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x->user_private);
    pthread_mutex_lock(&io->lock);
    if (io->stopping) {
        pthread_mutex_unlock(&io->lock);
        free(x);
        return -1;
    }
    if (io->queue_tail)
        io->queue_tail->next = x;
    else
        io->queue_head = x;
    io->queue_tail = x;
    atomic_fetch_add(&io->inflight, 1);
    io_wake_locked(io);
    pthread_mutex_unlock(&io->lock);
    return 0;
}

int ioloop_h1_add(ioloop *io, const ioloop_h1_req *req, ioloop_h1_done_fn done, void *ud)
{
    if (!io || !req || !done || !req->data || req->timeout_ms <= 0 || req->connect_timeout_ms <= 0 || !req->on_header ||
        !req->on_body)
        return -1;
    h1_xfer *x = h1_xfer_new(req, done, ud);
    if (!x)
        return -1;
    pthread_mutex_lock(&io->lock);
    if (io->stopping) {
        pthread_mutex_unlock(&io->lock);
        free(x);
        return -1;
    }
    if (io->h1_tail)
        h1_xfer_set_next(io->h1_tail, x);
    else
        io->h1_head = x;
    io->h1_tail = x;
    atomic_fetch_add(&io->inflight, 1);
    io_wake_locked(io);
    pthread_mutex_unlock(&io->lock);
    return 0;
}

int ioloop_after(ioloop *io, double delay_ms, void (*fn)(void *ud), void *ud)
{
    if (!io || !fn)
        return -1;
    io_timer t = {.due_ms = util_now_ms() + (delay_ms > 0 ? delay_ms : 0), .fn = fn, .ud = ud};
    pthread_mutex_lock(&io->lock);
    if (io->stopping) {
        pthread_mutex_unlock(&io->lock);
        return -1;
    }
    t.seq = io->timer_seq++;
    if (io_heap_push_locked(io, t) != 0) {
        pthread_mutex_unlock(&io->lock);
        return -1;
    }
    if (io->heap[0].seq == t.seq) /* new earliest timer: the loop may be sleeping past it */
        io_wake_locked(io);
    pthread_mutex_unlock(&io->lock);
    return 0;
}

size_t ioloop_inflight(ioloop *io)
{
    return io ? atomic_load(&io->inflight) : 0;
}

/* ---- ioloop_call and guests ---- */

typedef struct io_call {
    void (*fn)(void *ud);
    void *ud;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
} io_call;

static void io_call_run(void *p)
{
    io_call *c = p;
    c->fn(c->ud);
    pthread_mutex_lock(&c->mu);
    c->done = 1;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

int ioloop_call(ioloop *io, void (*fn)(void *ud), void *ud)
{
    if (!io || !fn)
        return -1;
    if (t_current == io) {
        fn(ud);
        return 0;
    }
    io_call c = {.fn = fn, .ud = ud};
    pthread_mutex_init(&c.mu, NULL);
    pthread_cond_init(&c.cv, NULL);
    int rc = ioloop_after(io, 0, io_call_run, &c);
    if (rc == 0) {
        pthread_mutex_lock(&c.mu);
        while (!c.done)
            pthread_cond_wait(&c.cv, &c.mu);
        pthread_mutex_unlock(&c.mu);
    }
    pthread_cond_destroy(&c.cv);
    pthread_mutex_destroy(&c.mu);
    return rc;
}

ioloop *ioloop_current(void)
{
    return t_current;
}

void ioloop_set_guest(ioloop *io, const ioloop_guest *g)
{
    if (g)
        io->guest = *g;
    else
        memset(&io->guest, 0, sizeof io->guest);
}

int ioloop_watch(ioloop *io, int fd, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.u64 = IO_GUEST_TAG | (uint32_t)fd};
    return epoll_ctl(io->epfd, EPOLL_CTL_ADD, fd, &ev);
}

void ioloop_unwatch(ioloop *io, int fd)
{
    epoll_ctl(io->epfd, EPOLL_CTL_DEL, fd, NULL);
}
