/* watchdog: WATCHDOG=1 pings that prove the loops turn (watchdog.h).
 *
 * Each loop has a slot with a heartbeat timer; the timer's callback stamps the slot's "last turn"
 * (an atomic: the first loop reads every slot) and re-arms. A timer fires only from a loop that
 * turns, so the stamp is the loop's liveness. The first loop also has the ping timer: every half
 * interval it reads the stamps and pings when none is older than half the interval. The heartbeat
 * runs at an eighth of the interval (at most once a second), so a slow but live loop has four beats
 * of slack before it counts as hung, and a hung one stops the pings within an interval.
 *
 * Shutdown needs no call into the loops (one of them may be hung): each slot's stop hook ends its
 * timers on the loop's own thread as the loop stops, and the slots are freed after the loops. */
#include "kailash/watchdog.h"

#include <stdatomic.h>
#include <stdlib.h>

#include "kailash/ioloop.h"
#include "kailash/log.h"
#include "kailash/util.h"

#define WATCHDOG_BEAT_MAX_MS 1000.0

typedef struct wd_slot {
    watchdog *wd;
    ioloop *io;
    io_timer beat;
    io_hook stop;
    atomic_llong last_us; /* util_now_ms() clock, µs: written by this loop, read by the first */
} wd_slot;

struct watchdog {
    double beat_ms, ping_ms;
    watchdog_ping_fn ping;
    void *ud;
    io_timer ping_timer; /* on slots[0].io */
    int withheld;        /* first loop only: pings are being withheld (logged once per episode) */
    int n;
    wd_slot slots[];
};

static long long wd_now_us(void)
{
    return (long long)(util_now_ms() * 1000.0);
}

static void wd_on_beat(io_timer *t)
{
    wd_slot *s = t->ud;
    atomic_store_explicit(&s->last_us, wd_now_us(), memory_order_relaxed);
    ioloop_timer_start(s->io, &s->beat, s->wd->beat_ms);
}

int watchdog_stale_loops(const watchdog *wd, double max_age_ms)
{
    long long now = wd_now_us(), max_us = (long long)(max_age_ms * 1000.0);
    int stale = 0;
    for (int i = 0; i < wd->n; i++)
        stale += now - atomic_load_explicit(&wd->slots[i].last_us, memory_order_relaxed) > max_us;
    return stale;
}

static void wd_on_ping(io_timer *t)
{
    watchdog *wd = t->ud;
    int stale = watchdog_stale_loops(wd, wd->ping_ms);
    if (stale == 0)
        wd->ping(wd->ud);
    if (stale > 0 && !wd->withheld)
        log_msg(LOG_ERROR, "watchdog: %d I/O loop(s) have not turned for %.0f ms: pings withheld", stale, wd->ping_ms);
    else if (stale == 0 && wd->withheld)
        log_msg(LOG_WARN, "watchdog: every I/O loop turns again: pings resumed");
    wd->withheld = stale > 0;
    ioloop_timer_start(wd->slots[0].io, &wd->ping_timer, wd->ping_ms);
}

/* Stop hook, on the loop's thread as it stops: no timer of ours may outlive the loop's turns. */
static int wd_on_stop(io_hook *h)
{
    wd_slot *s = h->ud;
    ioloop_timer_stop(s->io, &s->beat);
    if (s == &s->wd->slots[0])
        ioloop_timer_stop(s->io, &s->wd->ping_timer);
    return 0;
}

/* ioloop_call: the slot's timers and hook, on its loop's thread. */
static void wd_arm(void *ud)
{
    wd_slot *s = ud;
    atomic_store_explicit(&s->last_us, wd_now_us(), memory_order_relaxed);
    ioloop_timer_init(&s->beat, wd_on_beat, s);
    ioloop_timer_start(s->io, &s->beat, s->wd->beat_ms);
    ioloop_at_stop(s->io, &s->stop, wd_on_stop, s);
    if (s == &s->wd->slots[0]) {
        ioloop_timer_init(&s->wd->ping_timer, wd_on_ping, s->wd);
        ioloop_timer_start(s->io, &s->wd->ping_timer, s->wd->ping_ms);
    }
}

/* ioloop_call: undoes wd_arm (start failed half-way; the loops go on). */
static void wd_disarm(void *ud)
{
    wd_slot *s = ud;
    wd_on_stop(&s->stop);
    ioloop_hook_remove(s->io, &s->stop);
}

watchdog *watchdog_start(ioloop *const *loops, int n, uint64_t interval_us, watchdog_ping_fn ping, void *ud,
                         char *err, size_t errlen)
{
    if (n < 1 || interval_us < 2000 || !ping) {
        util_err(err, errlen, "watchdog: needs a loop and an interval of 2 ms or more");
        return NULL;
    }
    watchdog *wd = calloc(1, sizeof *wd + (size_t)n * sizeof wd->slots[0]);
    if (!wd) {
        util_err(err, errlen, "watchdog: out of memory");
        return NULL;
    }
    double interval_ms = (double)interval_us / 1000.0;
    wd->ping_ms = interval_ms / 2;
    wd->beat_ms = interval_ms / 8 < WATCHDOG_BEAT_MAX_MS ? interval_ms / 8 : WATCHDOG_BEAT_MAX_MS;
    wd->ping = ping;
    wd->ud = ud;
    wd->n = n;
    for (int i = 0; i < n; i++) {
        wd->slots[i].wd = wd;
        wd->slots[i].io = loops[i];
        if (ioloop_call(loops[i], wd_arm, &wd->slots[i]) != 0) {
            while (i-- > 0)
                ioloop_call(loops[i], wd_disarm, &wd->slots[i]);
            free(wd);
            util_err(err, errlen, "watchdog: an I/O loop is stopping");
            return NULL;
        }
    }
    return wd;
}

void watchdog_free(watchdog *wd)
{
    free(wd);
}
