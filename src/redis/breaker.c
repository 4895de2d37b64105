/* breaker: one circuit breaker for the whole process (redis.h), and redis_state.
 *
 *   closed     commands go; failures in a row are counted, an answer resets the count;
 *   open       REDIS_BREAKER_FAILURES failures in a row opened it: every command is refused at once
 *              (callers fall back locally) until REDIS_BREAKER_OPEN_MS have passed;
 *   half-open  the first command after that is the probe, every other one is still refused; the
 *              probe's answer closes the breaker, its failure opens it again for another period.
 *
 * It is read on every command from every loop, so "closed?" is one atomic load and a closed
 * breaker's answers store nothing unless a failure was counted (no cache line bouncing between
 * loops). Transitions are rare and take a mutex; "down" and "back" are logged once each, under it.
 * A failed probe re-opens silently: the outage was logged when it began. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#include "kailash/log.h"
#include "kailash/util.h"
#include "redis_internal.h"

enum { B_CLOSED, B_OPEN, B_HALF };

static atomic_int g_state;      /* B_* */
static atomic_int g_fails;      /* in a row, while closed */
static atomic_int g_probe;      /* 1 while half-open and the probe is out */
static _Atomic double g_reopen; /* open: when the probe may go (util_now_ms) */
static atomic_int g_configured, g_ever;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER; /* transitions */
static char g_desc[400];                                 /* for the log lines; set by reset */

void redis_breaker_reset(int configured, const char *describe)
{
    pthread_mutex_lock(&g_mu);
    atomic_store(&g_state, B_CLOSED);
    atomic_store(&g_fails, 0);
    atomic_store(&g_probe, 0);
    atomic_store(&g_reopen, 0.0);
    atomic_store(&g_ever, 0);
    snprintf(g_desc, sizeof g_desc, "%s", describe ? describe : "");
    atomic_store(&g_configured, configured);
    pthread_mutex_unlock(&g_mu);
}

int redis_breaker_allow(void)
{
    int st = atomic_load_explicit(&g_state, memory_order_acquire);
    if (st == B_CLOSED)
        return RB_GO;
    if (st == B_OPEN ? util_now_ms() < atomic_load(&g_reopen) : atomic_load(&g_probe))
        return RB_REFUSE;
    int rc = RB_REFUSE;
    pthread_mutex_lock(&g_mu);
    st = atomic_load(&g_state);
    if (st == B_CLOSED) {
        rc = RB_GO;
    } else {
        if (st == B_OPEN && util_now_ms() >= atomic_load(&g_reopen)) {
            atomic_store(&g_probe, 0);
            atomic_store(&g_state, st = B_HALF);
        }
        if (st == B_HALF && !atomic_load(&g_probe)) {
            atomic_store(&g_probe, 1);
            rc = RB_PROBE;
        }
    }
    pthread_mutex_unlock(&g_mu);
    return rc;
}

void redis_breaker_release(void)
{
    pthread_mutex_lock(&g_mu);
    if (atomic_load(&g_state) == B_HALF)
        atomic_store(&g_probe, 0);
    pthread_mutex_unlock(&g_mu);
}

/* Caller holds g_mu. */
static void rb_open_locked(void)
{
    atomic_store(&g_reopen, util_now_ms() + REDIS_BREAKER_OPEN_MS);
    atomic_store(&g_probe, 0);
    atomic_store_explicit(&g_state, B_OPEN, memory_order_release);
}

void redis_breaker_success(int probe)
{
    if (!probe) {
        if (atomic_load_explicit(&g_fails, memory_order_relaxed) != 0)
            atomic_store(&g_fails, 0);
        return;
    }
    pthread_mutex_lock(&g_mu);
    if (atomic_load(&g_state) == B_HALF) {
        atomic_store(&g_fails, 0);
        atomic_store(&g_probe, 0);
        atomic_store_explicit(&g_state, B_CLOSED, memory_order_release);
        log_msg(LOG_WARN, "redis: back (%s)", g_desc);
    }
    pthread_mutex_unlock(&g_mu);
}

void redis_breaker_failure(int probe, const char *why)
{
    if (probe) {
        pthread_mutex_lock(&g_mu);
        if (atomic_load(&g_state) == B_HALF)
            rb_open_locked();
        pthread_mutex_unlock(&g_mu);
        return;
    }
    if (atomic_load(&g_state) != B_CLOSED)
        return; /* open or half-open already: only the probe's outcome matters */
    int n = atomic_fetch_add(&g_fails, 1) + 1;
    if (n < REDIS_BREAKER_FAILURES)
        return;
    pthread_mutex_lock(&g_mu);
    if (atomic_load(&g_state) == B_CLOSED) {
        rb_open_locked();
        /* the threshold, not n: two loops failing at once may both count past it before one logs */
        log_msg(LOG_WARN, "redis: down (%d failures in a row): %s (%s); callers fall back to local behaviour",
                REDIS_BREAKER_FAILURES, why && why[0] ? why : "failed", g_desc);
    }
    pthread_mutex_unlock(&g_mu);
}

void redis_breaker_connected(void)
{
    if (!atomic_exchange(&g_ever, 1))
        log_msg(LOG_INFO, "redis: connected to %s", g_desc);
}

int redis_breaker_closed(void)
{
    return atomic_load_explicit(&g_state, memory_order_acquire) == B_CLOSED;
}

double redis_breaker_reopen_ms(void)
{
    return redis_breaker_closed() ? 0.0 : atomic_load(&g_reopen);
}

int redis_state(void)
{
    if (!atomic_load(&g_configured))
        return -1;
    return atomic_load(&g_ever) && redis_breaker_closed() ? 1 : 0;
}
