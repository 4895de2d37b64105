/* Tests of the watchdog (src/engine/watchdog.c): pings come from the first loop while every loop
 * turns, stop while any loop hangs (a post that blocks its loop until the test lets it go), come
 * back when it turns again, and the loops can be destroyed under a running watchdog. Pings are
 * counted by a callback instead of a socket. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "kailash/ioloop.h"
#include "kailash/util.h"
#include "kailash/watchdog.h"

#define INTERVAL_US 200000 /* pings every 100 ms */

static ioloop *loops[3];
static atomic_int pings;
static atomic_int pings_off_loop0;

static void on_ping(void *ud)
{
    (void)ud;
    if (ioloop_current() != loops[0])
        atomic_fetch_add(&pings_off_loop0, 1);
    atomic_fetch_add(&pings, 1);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Waits up to timeout_ms for pings to reach n; non-zero when they did. */
static int wait_pings(int n, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited += 10) {
        if (atomic_load(&pings) >= n)
            return 1;
        sleep_ms(10);
    }
    return atomic_load(&pings) >= n;
}

static void make_loops(void)
{
    char err[200];
    for (int i = 0; i < 3; i++)
        cr_assert_not_null(loops[i] = ioloop_create(err, sizeof err), "%s", err);
}

static void destroy_loops(void)
{
    for (int i = 0; i < 3; i++) {
        ioloop_destroy(loops[i]);
        loops[i] = NULL;
    }
}

/* A post that holds its loop until released: the loop neither turns nor fires timers meanwhile. */
static pthread_mutex_t hang_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hang_cv = PTHREAD_COND_INITIALIZER;
static int hang_released;

static void hang(void *ud)
{
    (void)ud;
    pthread_mutex_lock(&hang_mu);
    while (!hang_released)
        pthread_cond_wait(&hang_cv, &hang_mu);
    pthread_mutex_unlock(&hang_mu);
}

static void release_hang(void)
{
    pthread_mutex_lock(&hang_mu);
    hang_released = 1;
    pthread_cond_broadcast(&hang_cv);
    pthread_mutex_unlock(&hang_mu);
}

/* Waits up to timeout_ms until `stale` loops have not turned for the ping interval. */
static int wait_stale(watchdog *wd, int stale, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited += 10) {
        if (watchdog_stale_loops(wd, INTERVAL_US / 2000.0) == stale)
            return 1;
        sleep_ms(10);
    }
    return 0;
}

TestSuite(watchdog, .init = make_loops, .fini = destroy_loops, .timeout = 30);

Test(watchdog, pings_from_the_first_loop_while_all_turn)
{
    char err[200];
    watchdog *wd = watchdog_start(loops, 3, INTERVAL_US, on_ping, NULL, err, sizeof err);
    cr_assert_not_null(wd, "%s", err);
    cr_assert(wait_pings(3, 10000), "only %d ping(s)", atomic_load(&pings));
    cr_assert_eq(atomic_load(&pings_off_loop0), 0, "a ping came from another thread than the first loop");
    cr_assert_eq(watchdog_stale_loops(wd, 10000), 0);
    destroy_loops();
    watchdog_free(wd);
}

static void hung_loop_stops_pings(int which)
{
    char err[200];
    watchdog *wd = watchdog_start(loops, 3, INTERVAL_US, on_ping, NULL, err, sizeof err);
    cr_assert_not_null(wd, "%s", err);
    cr_assert(wait_pings(1, 10000), "no ping before the hang");
    cr_assert_eq(ioloop_post(loops[which], hang, NULL), 0);
    cr_assert(wait_stale(wd, 1, 10000), "loop %d never counted as hung", which);
    sleep_ms(50); /* a ping decided just before the stamp went stale has landed by now */
    int before = atomic_load(&pings);
    sleep_ms(600); /* six ping periods */
    cr_assert_eq(atomic_load(&pings), before, "pinged while loop %d hangs", which);
    release_hang();
    cr_assert(wait_pings(before + 2, 10000), "pings did not resume after loop %d turned again", which);
    cr_assert(wait_stale(wd, 0, 10000));
    destroy_loops();
    watchdog_free(wd);
}

Test(watchdog, a_hung_loop_stops_the_pings)
{
    hung_loop_stops_pings(2);
}

Test(watchdog, a_hung_first_loop_stops_the_pings)
{
    hung_loop_stops_pings(0);
}

/* The loops stop under a running watchdog: their stop hooks end its timers (ASan would see a timer
 * firing into freed memory, or the loop's heap holding one), and it is freed after them. */
Test(watchdog, loops_destroyed_under_it)
{
    char err[200];
    watchdog *wd = watchdog_start(loops, 3, INTERVAL_US, on_ping, NULL, err, sizeof err);
    cr_assert_not_null(wd, "%s", err);
    destroy_loops();
    int after = atomic_load(&pings);
    watchdog_free(wd);
    sleep_ms(200);
    cr_assert_eq(atomic_load(&pings), after);
}

Test(watchdog, refuses_bad_arguments)
{
    char err[200] = "";
    cr_assert_null(watchdog_start(loops, 0, INTERVAL_US, on_ping, NULL, err, sizeof err));
    cr_assert_null(watchdog_start(loops, 3, 0, on_ping, NULL, err, sizeof err));
    cr_assert_null(watchdog_start(loops, 3, INTERVAL_US, NULL, NULL, err, sizeof err));
    cr_assert_neq(err[0], '\0');
}
