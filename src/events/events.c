/* events: the engine's listener and the module's life (kailash/events.h says how the files divide).
 *
 * The listener runs on whichever thread advances a run (a loop, a pool worker) for runs created
 * with run_opts.events only: it writes the event's data once, appends it to the run's buffer (which
 * pushes it to the run's subscribers) and, with redis_url, hands it to the publisher; none of it
 * waits. A loop timer on the first loop sweeps buffers past their time (EVENTS_KEEP_MS after their
 * run's last event). */
#include <pthread.h>
#include <stdlib.h>

#include "events_internal.h"
#include "kailash/ioloop.h"
#include "kailash/log.h"

static double g_heartbeat_ms = EVENTS_HEARTBEAT_MS, g_keep_ms = EVENTS_KEEP_MS;
static pthread_once_t g_settings_once = PTHREAD_ONCE_INIT;
static ioloop *g_sweep_loop;
static io_timer g_sweep;

/* A positive number of milliseconds from the environment, else def. */
static double env_ms(const char *name, double def)
{
    const char *v = getenv(name);
    char *end;
    double ms = v && *v ? strtod(v, &end) : 0;
    return v && *v && !*end && ms >= 1 && ms <= 86400000.0 ? ms : def;
}

static void settings_read(void)
{
    g_heartbeat_ms = env_ms("KAILASH_SSE_HEARTBEAT_MS", EVENTS_HEARTBEAT_MS);
    g_keep_ms = env_ms("KAILASH_EVENTS_KEEP_MS", EVENTS_KEEP_MS);
}

double events_heartbeat_ms(void)
{
    pthread_once(&g_settings_once, settings_read);
    return g_heartbeat_ms;
}

double events_keep_ms(void)
{
    pthread_once(&g_settings_once, settings_read);
    return g_keep_ms;
}

static void on_event(const engine_event *e)
{
    buf b = {0};
    if (events_data_of(e, &b) != 0) {
        buf_free(&b);
        return;
    }
    const char *name = events_name_of(e->kind);
    int final = e->kind == EV_RUN_COMPLETED || e->kind == EV_RUN_FAILED;
    const char *principal = e->run ? run_principal(e->run) : "anonymous";
    uint64_t id = events_feed(e->run_id, principal, name, b.data, b.len, final);
    if (id && events_remote_on())
        events_remote_publish(e->run_id, principal, id, name, b.data, b.len, final);
    buf_free(&b);
}

static const engine_listener g_listener = {"events", on_event};

/* Sweeps at a quarter of the buffers' life (10 s at most): a buffer goes at most that late. */
static double sweep_period_ms(void)
{
    double p = events_keep_ms() / 4;
    return p < 100 ? 100 : p > 10000 ? 10000 : p;
}

static void sweep_tick(io_timer *t)
{
    size_t n = events_sweep(util_now_ms(), events_keep_ms());
    if (n)
        log_msg(LOG_DEBUG, "events: %zu run buffer(s) expired, %zu left (%zu bytes)", n, events_runs(), events_bytes());
    if (ioloop_current() == g_sweep_loop) /* not at the loop's teardown */
        ioloop_timer_start(g_sweep_loop, t, sweep_period_ms());
}

static void sweep_start(void *ud)
{
    (void)ud;
    ioloop_timer_init(&g_sweep, sweep_tick, NULL);
    ioloop_timer_start(g_sweep_loop, &g_sweep, sweep_period_ms());
}

static void sweep_stop(void *ud)
{
    (void)ud;
    ioloop_timer_stop(g_sweep_loop, &g_sweep);
}

int events_start(const kconfig *cfg, ioloop *const *loops, int nloops, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    events_keep_ms();
    if (nloops > 0) {
        g_sweep_loop = loops[0];
        ioloop_call(g_sweep_loop, sweep_start, NULL);
    }
    if (cfg && cfg->redis_url && events_remote_start(cfg, loops, nloops) != 0)
        log_msg(LOG_WARN, "events: not published to Redis (out of memory): clients see this instance's runs only");
    engine_listener_set(&g_listener);
    return 0;
}

void events_stop(void)
{
    engine_listener_set(NULL);
    if (g_sweep_loop)
        ioloop_call(g_sweep_loop, sweep_stop, NULL);
    g_sweep_loop = NULL;
    events_remote_stop();
    events_sweep(1e300, -1.0); /* every buffer: no client follows any now */
}
