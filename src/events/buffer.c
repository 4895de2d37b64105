/* buffer: the events of each run with events on, kept for late clients and pushed to subscribers.
 *
 * A chained hash of run ids (EV_BUCKETS buckets) under EV_STRIPES locks (a stripe guards every
 * EV_STRIPES-th bucket), as the engine's async table: appends of different runs rarely meet, and
 * one run's events come in its order from whichever thread advances it. An event is kept as its id,
 * name (static) and data (copied JSON text); each subscriber renders it in its own format, so
 * resumption (ids) and the SDK's shape share one buffer.
 *
 * Bounds: at most EVENTS_RUN_MAX_EVENTS events and EVENTS_RUN_MAX_BYTES of data per run, and
 * EVENTS_TOTAL_MAX_BYTES in all (an atomic counter). A node event past a bound is still pushed to the
 * clients following the run live, but not kept (the buffer is marked truncated, and a late client
 * is told so in a comment); a run's end is always kept, so every late client gets the end. Buffers
 * go EVENTS_KEEP_MS after their run's last event (events_sweep, from a loop timer and lazily). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "events_internal.h"

#define EV_BUCKETS 4096
#define EV_STRIPES 64

typedef struct ev_item {
    uint64_t id;
    const char *name; /* static (API.md's names) */
    char *data;
    size_t len;
} ev_item;

typedef struct ev_run {
    char id[37];
    char *principal;
    ev_item *items;
    size_t n, cap, bytes;
    uint64_t last_id;
    int ended, truncated;
    double last_ms; /* util_now_ms() of the last event (or of the buffer's making) */
    events_sub *subs;
    struct ev_run *next;
} ev_run;

static ev_run *g_buckets[EV_BUCKETS];
static pthread_mutex_t g_stripes[EV_STRIPES] = {[0 ... EV_STRIPES - 1] = PTHREAD_MUTEX_INITIALIZER};
static atomic_size_t g_bytes, g_runs;

static size_t bucket_of(const char *id)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)id; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    return (size_t)(h % EV_BUCKETS);
}

static pthread_mutex_t *stripe_of(size_t b)
{
    return &g_stripes[b % EV_STRIPES];
}

/* The run's buffer in bucket b, or NULL (stripe held). */
static ev_run *run_find_locked(size_t b, const char *id)
{
    for (ev_run *e = g_buckets[b]; e; e = e->next)
        if (strcmp(e->id, id) == 0)
            return e;
    return NULL;
}

static ev_run *run_make_locked(size_t b, const char *id, const char *principal)
{
    if (strlen(id) >= sizeof ((ev_run *)0)->id)
        return NULL;
    ev_run *e = calloc(1, sizeof *e);
    if (!e || !(e->principal = strdup(principal ? principal : "anonymous"))) {
        free(e);
        return NULL;
    }
    memcpy(e->id, id, strlen(id) + 1);
    e->last_ms = util_now_ms();
    e->next = g_buckets[b];
    g_buckets[b] = e;
    atomic_fetch_add(&g_runs, 1);
    return e;
}

static void run_free(ev_run *e)
{
    for (size_t i = 0; i < e->n; i++) {
        atomic_fetch_sub(&g_bytes, e->items[i].len);
        free(e->items[i].data);
    }
    free(e->items);
    free(e->principal);
    free(e);
    atomic_fetch_sub(&g_runs, 1);
}

/* Keeps the event unless a bound says no (a run's end is always kept). 0 kept, -1 not. */
static int run_keep_locked(ev_run *e, uint64_t id, const char *name, const char *data, size_t len, int final)
{
    if (!final && (e->n >= EVENTS_RUN_MAX_EVENTS || e->bytes + len > EVENTS_RUN_MAX_BYTES ||
                   atomic_load(&g_bytes) + len > EVENTS_TOTAL_MAX_BYTES))
        return -1;
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 16;
        ev_item *it = realloc(e->items, cap * sizeof *it);
        if (!it)
            return -1;
        e->items = it;
        e->cap = cap;
    }
    char *copy = malloc(len + 1);
    if (!copy)
        return -1;
    memcpy(copy, data, len);
    copy[len] = '\0';
    e->items[e->n++] = (ev_item){id, name, copy, len};
    e->bytes += len;
    atomic_fetch_add(&g_bytes, len);
    return 0;
}

uint64_t events_feed(const char *run_id, const char *principal, const char *name, const char *data, size_t len,
                     int final)
{
    size_t b = bucket_of(run_id);
    pthread_mutex_lock(stripe_of(b));
    ev_run *e = run_find_locked(b, run_id);
    if (!e && !(e = run_make_locked(b, run_id, principal))) {
        pthread_mutex_unlock(stripe_of(b));
        return 0;
    }
    uint64_t id = ++e->last_id;
    if (run_keep_locked(e, id, name, data, len, final) != 0)
        e->truncated = 1;
    e->last_ms = util_now_ms();
    e->ended |= final;
    for (events_sub *s = e->subs; s; s = events_sub_next(s))
        events_sub_deliver(s, id, name, data, len, final, 0);
    if (final) { /* every subscriber has its end: none stays linked */
        for (events_sub *s = e->subs, *next; s; s = next) {
            next = events_sub_next(s);
            events_sub_set_next(s, NULL);
            events_sub_release(s);
        }
        e->subs = NULL;
    }
    pthread_mutex_unlock(stripe_of(b));
    return id;
}

/* What a new subscriber of e gets at once: the kept events after after_id. */
static void run_backlog_locked(ev_run *e, events_sub *s, uint64_t after_id)
{
    if (e->truncated && after_id < e->last_id)
        events_sub_push(s, 0, NULL, "some events of this run were not kept (too many or too large)", 61, 0);
    for (size_t i = 0; i < e->n; i++)
        if (e->items[i].id > after_id)
            events_sub_deliver(s, e->items[i].id, e->items[i].name, e->items[i].data, e->items[i].len,
                               events_name_final(e->items[i].name), 1);
}

int events_subscribe(const events_sub_opts *o, events_sub **out)
{
    *out = NULL;
    size_t b = bucket_of(o->run_id);
    pthread_mutex_lock(stripe_of(b));
    ev_run *e = run_find_locked(b, o->run_id);
    int rc = EVENTS_OK;
    if (!e && o->create_for && !(e = run_make_locked(b, o->run_id, o->create_for)))
        rc = EVENTS_NOMEM;
    else if (!e)
        rc = EVENTS_NO_BUFFER;
    else if (o->visible_to && strcmp(e->principal, o->visible_to) != 0)
        rc = EVENTS_NOT_VISIBLE;
    events_sub *s = rc == EVENTS_OK ? events_sub_new(o->format, o->io, o->max_bytes) : NULL;
    if (rc == EVENTS_OK && !s)
        rc = EVENTS_NOMEM;
    if (s) {
        run_backlog_locked(e, s, o->after_id);
        if (e->ended) /* the end was queued with the backlog, unless Last-Event-ID was past it */
            events_sub_finish(s);
        else { /* the list's reference */
            events_sub_bind(s, o->run_id);
            events_sub_retain(s);
            events_sub_set_next(s, e->subs);
            e->subs = s;
        }
    }
    pthread_mutex_unlock(stripe_of(b));
    *out = s;
    return rc;
}

void events_unlink(const char *run_id, events_sub *s)
{
    size_t b = bucket_of(run_id);
    pthread_mutex_lock(stripe_of(b));
    ev_run *e = run_find_locked(b, run_id);
    events_sub *found = NULL;
    if (e) {
        events_sub *prev = NULL;
        for (events_sub *cur = e->subs; cur; prev = cur, cur = events_sub_next(cur)) {
            if (cur != s)
                continue;
            if (prev)
                events_sub_set_next(prev, events_sub_next(cur));
            else
                e->subs = events_sub_next(cur);
            events_sub_set_next(cur, NULL);
            found = cur;
            break;
        }
    }
    pthread_mutex_unlock(stripe_of(b));
    if (found)
        events_sub_release(found);
}

size_t events_sweep(double now_ms, double keep_ms)
{
    size_t freed = 0;
    for (size_t b = 0; b < EV_BUCKETS; b++) {
        pthread_mutex_lock(stripe_of(b));
        for (ev_run **p = &g_buckets[b]; *p;) {
            ev_run *e = *p;
            double idle = now_ms - e->last_ms;
            if (!e->subs && (e->ended ? idle > keep_ms : idle > 6 * keep_ms)) {
                *p = e->next;
                run_free(e);
                freed++;
            } else
                p = &e->next;
        }
        pthread_mutex_unlock(stripe_of(b));
    }
    return freed;
}

size_t events_bytes(void)
{
    return atomic_load(&g_bytes);
}

size_t events_runs(void)
{
    return atomic_load(&g_runs);
}
