/* ioloop: one thread, one epoll set, and four primitives (ioloop.h): watches, timers, posts, hooks.
 *
 * Shape (after Redis's ae.c and nginx's event timers):
 *   - a watch is the owner's struct; epoll's data points at it, and its callback gets it back. A
 *     watch stopped while a batch of events is being handled is also struck from the rest of that
 *     batch, so no callback ever reaches a watch (or its owner) that is gone;
 *   - timers are the owners' structs too, in one min-heap of pointers ordered by (due, seq); each
 *     timer keeps its own heap index, so stopping one is O(log n) and needs no search and no
 *     allocation (nginx embeds an rbtree node in its events for the same reason; a heap is enough
 *     here: we never need the timers in order, only the earliest);
 *   - posts are the only thing other threads touch: a locked FIFO of small records and an eventfd.
 *     One outstanding eventfd write is enough, and none is needed while the loop is between two
 *     epoll_waits (it looks at the queue again before it sleeps): that saves two system calls per
 *     cross-thread post under load;
 *   - before-sleep hooks run after each round's events, posts and timers, and may bound the sleep
 *     (the front end's libmicrohttpd daemon runs there).
 *
 * One round: epoll_wait; the events; then posts, due timers and hooks, again while a hook asks to
 * run at once or that work left posts or due timers (at most IO_ROUNDS times: each saves an
 * epoll_wait); then the sleep, bounded by the earliest timer and the hooks.
 *
 * The loop knows no protocol: libcurl's multi handle, the plain HTTP/1.1 client (src/upstream/) and
 * the front end (src/http/) are clients like any other. */
#include "kailash/ioloop.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "kailash/util.h"

#define IO_BATCH 64
#define IO_ROUNDS 4
enum { IO_HOOK_SLEEP = 1, IO_HOOK_STOP = 2 };

typedef struct io_post {
    void (*fn)(void *ud);
    void *ud;
    struct io_post *next;
} io_post;

struct ioloop {
    pthread_t thread;
    int epfd;
    int wakefd;

    pthread_mutex_t lock; /* guards the posts and the flags down to `awake` */
    io_post *post_head, *post_tail;
    int stopping;
    int woken; /* an eventfd write is outstanding: later posters need not write again */
    int awake; /* between two epoll_waits: posters need not write at all */

    /* Loop thread only (the destroying thread once the loop thread is gone). */
    io_timer **heap;
    size_t heap_len, heap_cap;
    uint64_t timer_seq;
    int timers_closed; /* destroy is firing the last timers: no new ones */
    io_hook *hooks;
    struct epoll_event *batch; /* the events being handled, for ioloop_watch_stop */
    int batch_n, batch_i;
    io_watch wake;
    void *local[IOLOOP_KEYS];
};

static _Thread_local ioloop *t_current;
static atomic_int g_keys;

ioloop *ioloop_current(void)
{
    return t_current;
}

/* ---- watches ---- */

void ioloop_watch_init(io_watch *w, int fd, io_watch_fn fn, void *ud)
{
    *w = (io_watch){.fd = fd, .events = 0, .fn = fn, .ud = ud};
}

int ioloop_watch_start(ioloop *io, io_watch *w, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = w};
    if (epoll_ctl(io->epfd, EPOLL_CTL_ADD, w->fd, &ev) != 0)
        return -1;
    w->events = events ? events : EPOLLET; /* non-zero: started */
    return 0;
}

int ioloop_watch_modify(ioloop *io, io_watch *w, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = w};
    if (epoll_ctl(io->epfd, EPOLL_CTL_MOD, w->fd, &ev) != 0)
        return -1;
    w->events = events ? events : EPOLLET;
    return 0;
}

void ioloop_watch_stop(ioloop *io, io_watch *w)
{
    if (!w->events)
        return;
    epoll_ctl(io->epfd, EPOLL_CTL_DEL, w->fd, NULL); /* EBADF after a close: the kernel dropped it */
    w->events = 0;
    for (int i = io->batch_i + 1; i < io->batch_n; i++)
        if (io->batch[i].data.ptr == w)
            io->batch[i].data.ptr = NULL;
}

/* ---- timers: a min-heap of the owners' timers, each knowing its index ---- */

static int io_timer_before(const io_timer *a, const io_timer *b)
{
    return a->due_ms < b->due_ms || (a->due_ms == b->due_ms && a->seq < b->seq);
}

static void io_heap_set(ioloop *io, size_t i, io_timer *t)
{
    io->heap[i] = t;
    t->heap_i = i;
}

static void io_heap_up(ioloop *io, size_t i)
{
    io_timer *t = io->heap[i];
    while (i > 0 && io_timer_before(t, io->heap[(i - 1) / 2])) {
        io_heap_set(io, i, io->heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    io_heap_set(io, i, t);
}

static void io_heap_down(ioloop *io, size_t i)
{
    io_timer *t = io->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= io->heap_len)
            break;
        if (c + 1 < io->heap_len && io_timer_before(io->heap[c + 1], io->heap[c]))
            c++;
        if (!io_timer_before(io->heap[c], t))
            break;
        io_heap_set(io, i, io->heap[c]);
        i = c;
    }
    io_heap_set(io, i, t);
}

void ioloop_timer_init(io_timer *t, io_timer_fn fn, void *ud)
{
    *t = (io_timer){.heap_i = IO_TIMER_IDLE, .fn = fn, .ud = ud};
}

int ioloop_timer_pending(const io_timer *t)
{
    return t->heap_i != IO_TIMER_IDLE;
}

void ioloop_timer_stop(ioloop *io, io_timer *t)
{
    size_t i = t->heap_i;
    if (i == IO_TIMER_IDLE)
        return;
    t->heap_i = IO_TIMER_IDLE;
    io_timer *last = io->heap[--io->heap_len];
    if (last == t)
        return;
    io_heap_set(io, i, last);
    io_heap_up(io, i);
    io_heap_down(io, last->heap_i);
}

int ioloop_timer_start(ioloop *io, io_timer *t, double delay_ms)
{
    ioloop_timer_stop(io, t);
    if (io->timers_closed)
        return -1;
    if (io->heap_len == io->heap_cap) {
        size_t cap = io->heap_cap ? 2 * io->heap_cap : 64;
        io_timer **h = realloc(io->heap, cap * sizeof *h);
        if (!h)
            return -1;
        io->heap = h;
        io->heap_cap = cap;
    }
    t->due_ms = util_now_ms() + (delay_ms > 0 ? delay_ms : 0);
    t->seq = io->timer_seq++;
    io_heap_set(io, io->heap_len++, t);
    io_heap_up(io, t->heap_i);
    return 0;
}

/* Fires the timers due now that were armed before this call: one that restarts itself with no delay
 * waits for the next round instead of spinning here. */
static void io_run_timers(ioloop *io)
{
    double now = util_now_ms();
    uint64_t limit = io->timer_seq;
    while (io->heap_len && io->heap[0]->due_ms <= now && io->heap[0]->seq < limit) {
        io_timer *t = io->heap[0];
        ioloop_timer_stop(io, t);
        t->fn(t);
    }
}

/* ---- posts ---- */

/* Caller holds io->lock. */
static void io_wake_locked(ioloop *io)
{
    if (io->woken || io->awake)
        return;
    uint64_t one = 1;
    if (write(io->wakefd, &one, sizeof one) == (ssize_t)sizeof one)
        io->woken = 1;
}

/* Reads, then clears the flag. A poster that skipped its write because the flag was still set queued
 * before the clear, hence before this round takes the queue; every poster after the clear writes. */
static void io_on_wake(io_watch *w, uint32_t events)
{
    (void)events;
    ioloop *io = w->ud;
    uint64_t n;
    while (read(io->wakefd, &n, sizeof n) == (ssize_t)sizeof n)
        ;
    pthread_mutex_lock(&io->lock);
    io->woken = 0;
    pthread_mutex_unlock(&io->lock);
}

int ioloop_post(ioloop *io, void (*fn)(void *ud), void *ud)
{
    if (!io || !fn)
        return -1;
    io_post *p = malloc(sizeof *p);
    if (!p)
        return -1;
    *p = (io_post){fn, ud, NULL};
    pthread_mutex_lock(&io->lock);
    if (io->stopping) {
        pthread_mutex_unlock(&io->lock);
        free(p);
        return -1;
    }
    if (io->post_tail)
        io->post_tail->next = p;
    else
        io->post_head = p;
    io->post_tail = p;
    io_wake_locked(io);
    pthread_mutex_unlock(&io->lock);
    return 0;
}

/* Runs the posts queued so far (those they make wait for the next pass). Returns non-zero when the
 * loop must stop. */
static int io_run_posts(ioloop *io)
{
    pthread_mutex_lock(&io->lock);
    io_post *p = io->post_head;
    io->post_head = io->post_tail = NULL;
    int stopping = io->stopping;
    pthread_mutex_unlock(&io->lock);
    while (p) {
        io_post *next = p->next;
        void (*fn)(void *) = p->fn;
        void *ud = p->ud;
        free(p);
        fn(ud);
        p = next;
    }
    return stopping;
}

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
    int rc = ioloop_post(io, io_call_run, &c);
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

/* ---- hooks ---- */

static void io_hook_link(ioloop *io, io_hook *h, int kind, io_hook_fn fn, void *ud)
{
    ioloop_hook_remove(io, h);
    h->fn = fn;
    h->ud = ud;
    h->kind = kind;
    h->next = NULL;
    io_hook **p = &io->hooks;
    while (*p) /* at the end: hooks run in the order they were added */
        p = &(*p)->next;
    *p = h;
}

void ioloop_before_sleep(ioloop *io, io_hook *h, io_hook_fn fn, void *ud)
{
    io_hook_link(io, h, IO_HOOK_SLEEP, fn, ud);
}

void ioloop_at_stop(ioloop *io, io_hook *h, io_hook_fn fn, void *ud)
{
    io_hook_link(io, h, IO_HOOK_STOP, fn, ud);
}

void ioloop_hook_remove(ioloop *io, io_hook *h)
{
    for (io_hook **p = &io->hooks; *p; p = &(*p)->next)
        if (*p == h) {
            *p = h->next;
            h->next = NULL;
            h->kind = 0;
            return;
        }
}

/* Runs the hooks of one kind; the tightest sleep bound they gave (-1: none). A hook may remove
 * itself or add others. */
static int io_run_hooks(ioloop *io, int kind)
{
    int bound = -1;
    for (io_hook *h = io->hooks, *next; h; h = next) {
        next = h->next;
        if (h->kind != kind)
            continue;
        int b = h->fn(h);
        if (b >= 0 && (bound < 0 || b < bound))
            bound = b;
    }
    return bound;
}

/* ---- the loop ---- */

static int io_posts_waiting(ioloop *io)
{
    pthread_mutex_lock(&io->lock);
    int n = io->post_head != NULL || io->stopping;
    pthread_mutex_unlock(&io->lock);
    return n;
}

static int io_timer_due(const ioloop *io)
{
    return io->heap_len && io->heap[0]->due_ms <= util_now_ms();
}

/* epoll_wait's timeout: until the earliest timer or the hooks' bound, 0 when posts wait. From here
 * on posters write the eventfd. */
static int io_sleep_ms(ioloop *io, int bound)
{
    double due = io->heap_len ? io->heap[0]->due_ms : -1.0;
    pthread_mutex_lock(&io->lock);
    int now = io->post_head != NULL || io->stopping;
    io->awake = 0;
    pthread_mutex_unlock(&io->lock);
    if (now)
        return 0;
    int wait = -1;
    if (due >= 0) {
        double w = ceil(due - util_now_ms()); /* round up: waking early would spin */
        wait = w <= 0 ? 0 : w > 60000 ? 60000 : (int)w;
    }
    return bound >= 0 && (wait < 0 || bound < wait) ? bound : wait;
}

static void io_dispatch(ioloop *io, struct epoll_event *evs, int n)
{
    io->batch = evs;
    io->batch_n = n;
    for (io->batch_i = 0; io->batch_i < n; io->batch_i++) {
        io_watch *w = evs[io->batch_i].data.ptr;
        if (w) /* NULL: stopped by an earlier callback of this batch */
            w->fn(w, evs[io->batch_i].events);
    }
    io->batch = NULL;
    io->batch_n = io->batch_i = 0;
}

/* Posts, timers and hooks, again while there is more to do at once. Returns the hooks' sleep bound,
 * or -2 when the loop must stop. */
static int io_work(ioloop *io)
{
    int bound = -1;
    for (int round = 0; round < IO_ROUNDS; round++) {
        if (io_run_posts(io))
            return -2;
        io_run_timers(io);
        bound = io_run_hooks(io, IO_HOOK_SLEEP);
        if (bound != 0 && !io_timer_due(io) && !io_posts_waiting(io))
            break;
    }
    return bound;
}

static void *io_main(void *arg)
{
    ioloop *io = arg;
    t_current = io;
    struct epoll_event evs[IO_BATCH];
    int bound = -1;
    for (;;) {
        int n = epoll_wait(io->epfd, evs, IO_BATCH, io_sleep_ms(io, bound));
        pthread_mutex_lock(&io->lock);
        io->awake = 1;
        pthread_mutex_unlock(&io->lock);
        io_dispatch(io, evs, n > 0 ? n : 0);
        if ((bound = io_work(io)) == -2)
            break;
    }
    io_run_hooks(io, IO_HOOK_STOP);
    t_current = NULL;
    return NULL;
}

/* ---- create and destroy ---- */

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

static void io_free(ioloop *io)
{
    if (io->epfd >= 0)
        close(io->epfd);
    if (io->wakefd >= 0)
        close(io->wakefd);
    free(io->heap);
    pthread_mutex_destroy(&io->lock);
    free(io);
}

ioloop *ioloop_create(char *err, size_t errlen)
{
    ioloop *io = calloc(1, sizeof *io);
    if (!io) {
        util_err(err, errlen, "ioloop: out of memory");
        return NULL;
    }
    pthread_mutex_init(&io->lock, NULL);
    io->epfd = epoll_create1(EPOLL_CLOEXEC);
    io->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (io->epfd < 0 || io->wakefd < 0) {
        util_err(err, errlen, "ioloop: epoll/eventfd: %s", strerror(errno));
        goto err;
    }
    ioloop_watch_init(&io->wake, io->wakefd, io_on_wake, io);
    if (ioloop_watch_start(io, &io->wake, EPOLLIN) != 0) {
        util_err(err, errlen, "ioloop: epoll_ctl: %s", strerror(errno));
        goto err;
    }
    int rc = io_start_thread(io);
    if (rc != 0) {
        util_err(err, errlen, "ioloop: pthread_create: %s", strerror(rc));
        goto err;
    }
    return io;
err:
    io_free(io);
    return NULL;
}

/* After the loop thread is gone: what was posted runs, what is pending fires (early), until neither
 * is left. Timers may not be armed any more, so this ends. */
static void io_drain_after_stop(ioloop *io)
{
    io->timers_closed = 1;
    for (;;) {
        io_run_posts(io);
        if (io->heap_len == 0)
            break;
        io_timer *t = io->heap[0];
        ioloop_timer_stop(io, t);
        t->fn(t);
    }
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
    io_drain_after_stop(io);
    io_free(io);
}

/* ---- loop-local data ---- */

int ioloop_key_new(void)
{
    int k = atomic_fetch_add(&g_keys, 1);
    return k < IOLOOP_KEYS ? k : -1;
}

void ioloop_set_local(ioloop *io, int key, void *p)
{
    if (key >= 0 && key < IOLOOP_KEYS)
        io->local[key] = p;
}

void *ioloop_get_local(const ioloop *io, int key)
{
    return io && key >= 0 && key < IOLOOP_KEYS ? io->local[key] : NULL;
}
