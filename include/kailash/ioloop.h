/* ioloop: an I/O loop (src/engine/ioloop.c), one thread sleeping in epoll_wait. The engine runs one
 * per worker; everything a request waits on is an event source on its loop (DESIGN.md, "Waiting
 * inside the loop"): the front end's libmicrohttpd daemon, the plain HTTP/1.1 client, libcurl's
 * multi handle, and later Redis and Postgres connections. The loop knows none of them: each is an
 * ordinary client of the four primitives below, in the manner of Redis's ae.c and nginx's events.
 *
 *   watches    a file descriptor with a callback of its own (start, modify, stop);
 *   timers     cancellable, embedded in their owners (one heap, the index kept in the timer);
 *   posts      run a function on the loop thread, from any thread;
 *   hooks      before each sleep (they may bound it), and once when the loop stops.
 *
 * Threads: ioloop_post, ioloop_call, ioloop_current and ioloop_get_local are thread-safe; every other
 * function is for the loop's own thread only (from a callback, a post or ioloop_call). Callbacks run
 * on the loop thread and must be short: hand real work to the worker pool.
 *
 * Memory: watches, timers and hooks are the caller's (embedded in what they serve); the loop only
 * links them. A watch or timer must be stopped, and a hook removed, before its memory goes. */
#ifndef KAILASH_IOLOOP_H
#define KAILASH_IOLOOP_H

#include <stddef.h>
#include <stdint.h>

typedef struct ioloop ioloop;

/* Creates the loop and starts its thread. NULL on error (err filled). */
ioloop *ioloop_create(char *err, size_t errlen);

/* Stops the loop: its thread runs the stop hooks (which end what their clients have in flight) and
 * exits; then, on the calling thread, posts still queued run and timers still pending fire at once,
 * early, so that their owners let go of what they hold; then the loop is freed. From the moment the
 * stop begins ioloop_post refuses. */
void ioloop_destroy(ioloop *io);

/* The loop whose thread is calling, or NULL on any other thread. */
ioloop *ioloop_current(void);

/* ---- watches ---- */

typedef struct io_watch io_watch;
/* events: what epoll reported (EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP, EPOLLRDHUP). */
typedef void (*io_watch_fn)(io_watch *w, uint32_t events);

struct io_watch {
    int fd;
    uint32_t events; /* as last given to start or modify; 0: stopped */
    io_watch_fn fn;
    void *ud; /* the owner's, for callbacks that do not use container_of */
};

/* Sets w up for fd (not yet watched). */
void ioloop_watch_init(io_watch *w, int fd, io_watch_fn fn, void *ud);
/* Adds w->fd to the loop's epoll set for events (EPOLLET allowed). 0, or -1 with errno. */
int ioloop_watch_start(ioloop *io, io_watch *w, uint32_t events);
/* Changes the events of a started watch. 0, or -1 with errno. */
int ioloop_watch_modify(ioloop *io, io_watch *w, uint32_t events);
/* Stops w: no callback for it from now on, not even for events already fetched in this round. Call
 * it before closing the fd where possible; after the close it still forgets w (the kernel has
 * dropped the fd already). A stopped watch may be stopped again. */
void ioloop_watch_stop(ioloop *io, io_watch *w);

/* ---- timers ---- */

typedef struct io_timer io_timer;
typedef void (*io_timer_fn)(io_timer *t);

struct io_timer {
    double due_ms; /* util_now_ms() clock */
    uint64_t seq;  /* FIFO among timers due at the same instant */
    size_t heap_i; /* where in the heap; IO_TIMER_IDLE when not pending */
    io_timer_fn fn;
    void *ud;
};
#define IO_TIMER_IDLE ((size_t)-1)

/* Sets t up (not pending). */
void ioloop_timer_init(io_timer *t, io_timer_fn fn, void *ud);
/* Arms t to fire once, delay_ms from now (<= 0: in this round); a pending t is moved. A timer may
 * restart itself from its own callback. 0, or -1 when out of memory (t is then not pending). */
int ioloop_timer_start(ioloop *io, io_timer *t, double delay_ms);
/* Disarms t if pending (from any callback, another timer's included). */
void ioloop_timer_stop(ioloop *io, io_timer *t);
/* Non-zero while t is pending. */
int ioloop_timer_pending(const io_timer *t);

/* ---- posts ---- */

/* Runs fn(ud) on the loop thread soon, in the order posted (from the loop thread too: after the
 * current callback). Thread-safe. 0, or -1 when the loop is stopping or out of memory (fn will
 * not run). */
int ioloop_post(ioloop *io, void (*fn)(void *ud), void *ud);

/* Runs fn(ud) on the loop thread and returns after it did (at once when called on that thread).
 * A post and a wait: for setup and shutdown, never on a request's path. 0, or -1 as ioloop_post. */
int ioloop_call(ioloop *io, void (*fn)(void *ud), void *ud);

/* ---- hooks ---- */

typedef struct io_hook io_hook;
/* Before-sleep hooks return the longest the loop may sleep in ms (0: run again at once, -1: no
 * bound); stop hooks' return value is ignored. */
typedef int (*io_hook_fn)(io_hook *h);

struct io_hook {
    io_hook_fn fn;
    void *ud;
    io_hook *next; /* the loop's */
    int kind;      /* the loop's */
};

/* Runs h->fn before every sleep, after the round's events, posts and timers. When a hook answers 0
 * the hooks run again (a few times) before the loop looks at its epoll set: libmicrohttpd takes a
 * few runs to carry a connection from "answer sent" to "waiting for the next request". */
void ioloop_before_sleep(ioloop *io, io_hook *h, io_hook_fn fn, void *ud);
/* Runs h->fn once on the loop thread when the loop stops, before it exits: a client ends what it has
 * in flight there (its callbacks see ioloop_post refusing). */
void ioloop_at_stop(ioloop *io, io_hook *h, io_hook_fn fn, void *ud);
/* Unlinks h (either kind); nothing when it is not linked. */
void ioloop_hook_remove(ioloop *io, io_hook *h);

/* ---- loop-local data ---- */

/* A key for one pointer per loop, like pthread_key_create: once per client, at start. -1 when all
 * IOLOOP_KEYS are taken. Thread-safe. */
#define IOLOOP_KEYS 8
int ioloop_key_new(void);
/* Sets the loop's pointer for key (loop thread, or before the loop is shared). */
void ioloop_set_local(ioloop *io, int key, void *p);
/* The loop's pointer for key, NULL when unset. Thread-safe for pointers set before use. */
void *ioloop_get_local(const ioloop *io, int key);

#endif
