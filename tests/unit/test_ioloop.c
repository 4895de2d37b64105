/* Tests of the I/O loop's primitives (src/engine/ioloop.c): watches, embedded timers, posts, hooks,
 * and what destroy does with what is left. Everything the loop runs records into `seen` under a
 * lock; the test thread waits on it. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "kailash/ioloop.h"
#include "kailash/util.h"
#include "wait_count.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static ioloop *the_io;

static struct {
    char order[64];
    int n; /* entries in order */
    ioloop *current;
} seen;

static void note(char c)
{
    pthread_mutex_lock(&lock);
    if (seen.n < (int)sizeof seen.order - 1)
        seen.order[seen.n++] = c;
    seen.current = ioloop_current();
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
}

static int wait_n(int n, int timeout_ms)
{
    return wait_count_on(&lock, &cond, &seen.n, n, timeout_ms);
}

/* What a test allocated for the loop, freed in teardown (after the loop is gone). */
static void *owned[32];
static int n_owned;

static void *own(size_t size)
{
    cr_assert_lt(n_owned, 32);
    return owned[n_owned++] = calloc(1, size);
}

static void setup(void)
{
    memset(&seen, 0, sizeof seen);
    char err[128];
    the_io = ioloop_create(err, sizeof err);
    cr_assert_not_null(the_io, "%s", err);
}

static void teardown(void)
{
    ioloop_destroy(the_io);
    while (n_owned)
        free(owned[--n_owned]);
}

TestSuite(ioloop, .init = setup, .fini = teardown, .timeout = 30);

static void noop(void *ud)
{
    (void)ud;
}

/* ---- posts ---- */

static void see_current(void *ud)
{
    *(ioloop **)ud = ioloop_current();
}

Test(ioloop, call_runs_on_the_loop_thread_and_waits)
{
    ioloop *cur = NULL;
    cr_assert_null(ioloop_current(), "this thread is not a loop's");
    cr_assert_eq(ioloop_call(the_io, see_current, &cur), 0);
    cr_assert_eq(cur, the_io, "ioloop_call returned before fn ran, or ran it elsewhere");
}

static void post_note(void *ud)
{
    note(*(const char *)ud);
}

static void *post_many(void *arg)
{
    static const char x = 'x';
    (void)arg;
    for (int i = 0; i < 5; i++)
        cr_assert_eq(ioloop_post(the_io, post_note, (void *)&x), 0);
    return NULL;
}

Test(ioloop, posts_from_several_threads_all_run_on_the_loop)
{
    pthread_t t[8];
    for (int i = 0; i < 8; i++)
        pthread_create(&t[i], NULL, post_many, NULL);
    for (int i = 0; i < 8; i++)
        pthread_join(t[i], NULL);
    cr_assert_eq(wait_n(40, 5000), 40);
    cr_assert_eq(seen.current, the_io);
}

Test(ioloop, posts_from_one_thread_run_in_order)
{
    static const char s[] = "abcdef";
    for (int i = 0; i < 6; i++)
        cr_assert_eq(ioloop_post(the_io, post_note, (void *)&s[i]), 0);
    cr_assert_eq(wait_n(6, 5000), 6);
    cr_assert_str_eq(seen.order, "abcdef");
}

Test(ioloop, post_rejects_bad_arguments)
{
    cr_assert_eq(ioloop_post(NULL, noop, NULL), -1);
    cr_assert_eq(ioloop_post(the_io, NULL, NULL), -1);
}

/* ---- timers ---- */

typedef struct tnote {
    io_timer t;
    char c;
    int again; /* times it restarts itself */
    double delay;
    struct tnote *victim; /* stopped from this one's callback */
} tnote;

static void tnote_fire(io_timer *t)
{
    tnote *n = t->ud;
    note(n->c);
    if (n->victim)
        ioloop_timer_stop(the_io, &n->victim->t);
    if (n->again-- > 0) /* refused while the loop is destroyed */
        ioloop_timer_start(the_io, &n->t, n->delay);
}

static tnote *tnote_new(char c, double delay)
{
    tnote *n = own(sizeof *n);
    n->c = c;
    n->delay = delay;
    ioloop_timer_init(&n->t, tnote_fire, n);
    return n;
}

static void start_them(void *ud)
{
    for (tnote **p = ud; *p; p++)
        cr_assert_eq(ioloop_timer_start(the_io, &(*p)->t, (*p)->delay), 0);
}

Test(ioloop, timers_fire_in_due_order_fifo_on_ties)
{
    tnote *t[] = {tnote_new('A', 60), tnote_new('B', 20), tnote_new('C', 40), tnote_new('D', 20), tnote_new('E', 0),
                  NULL};
    double t0 = util_now_ms();
    cr_assert_eq(ioloop_call(the_io, start_them, t), 0);
    cr_assert_eq(wait_n(5, 5000), 5);
    cr_assert_str_eq(seen.order, "EBDCA");
    cr_assert_geq(util_now_ms() - t0, 60.0, "the last timer fired early");
    for (int i = 0; t[i]; i++)
        cr_assert_not(ioloop_timer_pending(&t[i]->t));
}

static void stop_it(void *ud)
{
    ioloop_timer_stop(the_io, &((tnote *)ud)->t);
    ioloop_timer_stop(the_io, &((tnote *)ud)->t); /* twice: nothing */
}

Test(ioloop, a_stopped_timer_never_fires)
{
    tnote *t[] = {tnote_new('x', 30), tnote_new('y', 60), NULL};
    cr_assert_eq(ioloop_call(the_io, start_them, t), 0);
    cr_assert(ioloop_timer_pending(&t[0]->t));
    cr_assert_eq(ioloop_call(the_io, stop_it, t[0]), 0);
    cr_assert_not(ioloop_timer_pending(&t[0]->t));
    cr_assert_eq(wait_n(1, 5000), 1);
    usleep(50 * 1000);
    cr_assert_str_eq(seen.order, "y");
}

/* 'a' fires first and stops 'b', due at the same instant: 'b' never fires, 'c' does. */
Test(ioloop, a_timer_stopped_from_another_timers_callback_never_fires)
{
    tnote *a = tnote_new('a', 20), *b = tnote_new('b', 20), *c = tnote_new('c', 40);
    a->victim = b;
    tnote *t[] = {a, b, c, NULL};
    cr_assert_eq(ioloop_call(the_io, start_them, t), 0);
    cr_assert_eq(wait_n(2, 5000), 2);
    usleep(50 * 1000);
    cr_assert_str_eq(seen.order, "ac");
}

/* A timer restarting itself with no delay fires once per round, and the loop still sees others. */
Test(ioloop, a_timer_may_restart_itself)
{
    tnote *r = tnote_new('r', 0), *o = tnote_new('o', 5);
    r->again = 9;
    tnote *t[] = {r, o, NULL};
    cr_assert_eq(ioloop_call(the_io, start_them, t), 0);
    cr_assert_eq(wait_n(11, 5000), 11);
    int rs = 0;
    for (int i = 0; i < seen.n; i++)
        rs += seen.order[i] == 'r';
    cr_assert_eq(rs, 10);
    cr_assert(strchr(seen.order, 'o'));
}

/* ---- watches ---- */

typedef struct wnote {
    io_watch w;
    char c;
    struct wnote *victim; /* stopped from this one's callback */
} wnote;

static void wnote_fire(io_watch *w, uint32_t events)
{
    wnote *n = w->ud;
    uint64_t v;
    if (events & EPOLLIN)
        cr_assert_eq(read(w->fd, &v, sizeof v), (ssize_t)sizeof v); /* level-triggered: drain */
    note((events & EPOLLOUT) ? (char)(n->c - 32) : n->c); /* upper case: writable */
    if (n->victim)
        ioloop_watch_stop(ioloop_current(), &n->victim->w);
}

static void kick(int fd)
{
    uint64_t one = 1;
    cr_assert_eq(write(fd, &one, sizeof one), (ssize_t)sizeof one);
}

typedef struct wop {
    wnote *n;
    uint32_t events;
    int rc;
} wop;

static void w_start(void *ud)
{
    wop *o = ud;
    o->rc = ioloop_watch_start(the_io, &o->n->w, o->events);
}
static void w_modify(void *ud)
{
    wop *o = ud;
    o->rc = ioloop_watch_modify(the_io, &o->n->w, o->events);
}
static void w_start_two(void *ud)
{
    wop *o = ud;
    w_start(&o[0]);
    w_start(&o[1]);
}
static void w_stop(void *ud)
{
    ioloop_watch_stop(the_io, &((wop *)ud)->n->w);
}

static wnote *wnote_new(char c)
{
    wnote *n = own(sizeof *n);
    n->c = c;
    ioloop_watch_init(&n->w, eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), wnote_fire, n);
    cr_assert_geq(n->w.fd, 0);
    return n;
}

Test(ioloop, watch_start_modify_stop)
{
    wnote *n = wnote_new('r');
    wop o = {n, EPOLLIN, -1};
    cr_assert_eq(ioloop_call(the_io, w_start, &o), 0);
    cr_assert_eq(o.rc, 0);
    kick(n->w.fd);
    cr_assert_eq(wait_n(1, 5000), 1);
    cr_assert_eq(seen.current, the_io, "the callback ran off the loop");
    o.events = EPOLLOUT | EPOLLET; /* an eventfd is writable: one edge */
    cr_assert_eq(ioloop_call(the_io, w_modify, &o), 0);
    cr_assert_eq(o.rc, 0);
    cr_assert_eq(wait_n(2, 5000), 2);
    cr_assert_str_eq(seen.order, "rR");
    cr_assert_eq(ioloop_call(the_io, w_stop, &o), 0);
    cr_assert_eq(n->w.events, 0u);
    kick(n->w.fd);
    usleep(50 * 1000);
    cr_assert_eq(seen.n, 2, "a stopped watch got an event");
    cr_assert_eq(ioloop_call(the_io, w_stop, &o), 0); /* stopped twice: nothing */
    close(n->w.fd);
}

/* Two watches ready in one batch: whichever runs first stops the other, which then never runs. */
Test(ioloop, a_watch_stopped_by_an_earlier_callback_of_its_batch_is_not_called)
{
    wnote *a = wnote_new('a'), *b = wnote_new('b');
    a->victim = b;
    b->victim = a;
    kick(a->w.fd);
    kick(b->w.fd);
    wop oa = {a, EPOLLIN, -1}, ob = {b, EPOLLIN, -1};
    wop both[2] = {oa, ob};
    cr_assert_eq(ioloop_call(the_io, w_start_two, both), 0); /* both ready at the next epoll_wait */
    cr_assert_eq(wait_n(1, 5000), 1);
    usleep(50 * 1000);
    cr_assert_eq(seen.n, 1, "the stopped watch ran: %s", seen.order);
    ioloop_call(the_io, w_stop, &oa);
    ioloop_call(the_io, w_stop, &ob);
    close(a->w.fd);
    close(b->w.fd);
}

/* ---- hooks ---- */

static int sleep_bound;
static int hook_calls;

static int count_hook(io_hook *h)
{
    (void)h;
    pthread_mutex_lock(&lock);
    hook_calls++;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
    return sleep_bound;
}

static io_hook the_hook;

static void add_hook(void *ud)
{
    (void)ud;
    ioloop_before_sleep(the_io, &the_hook, count_hook, NULL);
}
static void remove_hook(void *ud)
{
    (void)ud;
    ioloop_hook_remove(the_io, &the_hook);
}

/* With nothing to do, only the hook's bound wakes the loop: it keeps being called. */
Test(ioloop, before_sleep_hook_runs_each_round_and_bounds_the_sleep)
{
    sleep_bound = 5;
    hook_calls = 0;
    cr_assert_eq(ioloop_call(the_io, add_hook, NULL), 0);
    int calls = wait_count_on(&lock, &cond, &hook_calls, 10, 5000);
    cr_assert_geq(calls, 10, "the loop slept past its hook's bound (%d calls)", calls);
    cr_assert_eq(ioloop_call(the_io, remove_hook, NULL), 0);
    pthread_mutex_lock(&lock);
    int before = hook_calls;
    pthread_mutex_unlock(&lock);
    usleep(50 * 1000);
    pthread_mutex_lock(&lock);
    int after = hook_calls;
    pthread_mutex_unlock(&lock);
    cr_assert_leq(after - before, 1, "a removed hook ran %d times", after - before);
}

/* A post runs its work, then the hook sees it before the loop sleeps. */
Test(ioloop, before_sleep_hook_runs_after_a_post)
{
    sleep_bound = -1;
    hook_calls = 0;
    cr_assert_eq(ioloop_call(the_io, add_hook, NULL), 0);
    pthread_mutex_lock(&lock);
    int before = hook_calls;
    pthread_mutex_unlock(&lock);
    cr_assert_eq(ioloop_post(the_io, noop, NULL), 0);
    cr_assert_geq(wait_count_on(&lock, &cond, &hook_calls, before + 1, 5000), before + 1);
    cr_assert_eq(ioloop_call(the_io, remove_hook, NULL), 0);
}

/* ---- stopping ---- */

static io_hook stop_hook;

static int on_stop(io_hook *h)
{
    (void)h;
    note(ioloop_current() ? 'S' : 's');
    note(ioloop_post(the_io, noop, NULL) == 0 ? 'P' : 'p'); /* posts are refused from here on */
    return 0;
}

static void add_stop_hook(void *ud)
{
    (void)ud;
    ioloop_at_stop(the_io, &stop_hook, on_stop, NULL);
}

Test(ioloop, destroy_runs_stop_hooks_on_the_loop_then_fires_pending_timers_early)
{
    tnote *t[] = {tnote_new('T', 60000), NULL};
    t[0]->again = 5; /* a restart at destroy is refused: it cannot keep the loop alive */
    cr_assert_eq(ioloop_call(the_io, start_them, t), 0);
    cr_assert_eq(ioloop_call(the_io, add_stop_hook, NULL), 0);
    double t0 = util_now_ms();
    ioloop_destroy(the_io);
    cr_assert_lt(util_now_ms() - t0, 1000.0);
    cr_assert_str_eq(seen.order, "SpT");
    cr_assert_null(seen.current, "the timer fired on the destroying thread");
    char err[64];
    the_io = ioloop_create(err, sizeof err); /* for teardown */
}

/* ---- loop-local data ---- */

Test(ioloop, local_keys_hold_one_pointer_per_loop)
{
    int k = ioloop_key_new();
    cr_assert_geq(k, 0);
    cr_assert_null(ioloop_get_local(the_io, k));
    ioloop_set_local(the_io, k, &seen);
    cr_assert_eq(ioloop_get_local(the_io, k), &seen);
    cr_assert_null(ioloop_get_local(NULL, k));
}
