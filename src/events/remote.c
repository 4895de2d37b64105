/* remote: events across instances, through Redis (with redis_url).
 *
 * Publishing: every event of a local run is also XADDed to the stream kailash:events:{run_id} with
 * the event's own id as the entry id ("0-N": ids stay the ones clients resume with), its name, data
 * and the run's principal, trimmed (MAXLEN ~ EVENTS_RUN_MAX_EVENTS) and given EXPIRE of the buffers'
 * life after each event. The commands go out on a loop's own async connection (redis_command), never
 * blocking: the listener posts each event to the loop its run id hashes to, so one run's XADDs leave
 * in order whichever thread emitted them. The first event (id 1) deletes the key first: a job run
 * again after a restart keeps its run id and numbers its events from 1 again.
 *
 * Following: a client of an instance that has no buffer for a run looks for the run's stream
 * (XREVRANGE + - COUNT 1: does it exist, whose is it); then a follower on the client's loop polls it
 * with a non-blocking XREAD COUNT from the last id it passed on, every EVENTS_REMOTE_POLL_MS, pushing
 * what it finds to the client's subscriber, until the run's end or the client leaves. Polling costs
 * one command per follower per poll and no thread; a blocking XREAD would need a connection and a
 * thread of its own per instance (DESIGN.md allows it), more than the few remote followers need.
 *
 * Redis down: publishing is skipped (the breaker refuses at once); following falls back to what the
 * caller does without Redis (the run record). */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events_internal.h"
#include "kailash/ioloop.h"
#include "kailash/redis.h"

#define EVENTS_REMOTE_POLL_MS 100.0
#define EVENTS_REMOTE_BATCH "100"
#define KEY_PREFIX "kailash:events:"

static ioloop **g_loops;
static int g_nloops;
static atomic_int g_on;

int events_remote_on(void)
{
    return atomic_load_explicit(&g_on, memory_order_relaxed);
}

int events_remote_start(const kconfig *cfg, ioloop *const *loops, int nloops)
{
    (void)cfg;
    if (nloops < 1)
        return 0;
    g_loops = malloc((size_t)nloops * sizeof *g_loops);
    if (!g_loops)
        return -1;
    memcpy(g_loops, loops, (size_t)nloops * sizeof *g_loops);
    g_nloops = nloops;
    atomic_store(&g_on, 1);
    return 0;
}

void events_remote_stop(void)
{
    atomic_store(&g_on, 0);
    free(g_loops); /* posts already queued do not read it */
    g_loops = NULL;
    g_nloops = 0;
}

/* ---- publishing ---- */

typedef struct pub_job {
    char key[64];
    char id[24];
    const char *name; /* static */
    char *principal;
    size_t len;
    char data[]; /* len bytes */
} pub_job;

static void pub_done(redisReply *reply, void *ud)
{
    (void)reply, (void)ud; /* lost events are the subscriber's gap, never the run's failure */
}

static void pub_send(void *ud)
{
    pub_job *j = ud;
    char ttl[24];
    snprintf(ttl, sizeof ttl, "%lld", (long long)(events_keep_ms() / 1000.0 + 0.999));
    if (strcmp(j->id, "0-1") == 0) {
        const char *del[] = {"DEL", j->key};
        redis_command(2, del, NULL, pub_done, NULL);
    }
    const char *argv[] = {"XADD",  j->key, "MAXLEN",       "~",         "10000",  j->id,     "event",
                          j->name, "data", j->data,        "principal", j->principal};
    size_t lens[12];
    for (int i = 0; i < 12; i++)
        lens[i] = strlen(argv[i]);
    lens[9] = j->len;
    if (redis_command(12, argv, lens, pub_done, NULL) == 0) {
        const char *ex[] = {"EXPIRE", j->key, ttl};
        redis_command(3, ex, NULL, pub_done, NULL);
    }
    free(j->principal);
    free(j);
}

static size_t loop_of(const char *run_id)
{
    size_t h = 5381;
    for (const unsigned char *p = (const unsigned char *)run_id; *p; p++)
        h = h * 33 + *p;
    return h % (size_t)g_nloops;
}

void events_remote_publish(const char *run_id, const char *principal, uint64_t id, const char *name,
                           const char *data, size_t len, int final)
{
    (void)final;
    if (!g_nloops)
        return;
    pub_job *j = malloc(sizeof *j + len + 1);
    if (!j)
        return;
    snprintf(j->key, sizeof j->key, KEY_PREFIX "%s", run_id);
    snprintf(j->id, sizeof j->id, "0-%llu", (unsigned long long)id);
    j->name = name;
    j->principal = strdup(principal);
    j->len = len;
    memcpy(j->data, data, len);
    j->data[len] = '\0';
    if (!j->principal || ioloop_post(g_loops[loop_of(run_id)], pub_send, j) != 0) {
        free(j->principal);
        free(j);
    }
}

/* ---- following ---- */

typedef struct follow {
    kreq *r; /* until answered */
    void (*fallback)(kreq *r);
    char *visible_to;
    events_sub *sub;
    ioloop *io;
    io_timer poll;
    char key[64];
    uint64_t last;
} follow;

static void follow_free(follow *f)
{
    events_sub_release(f->sub);
    free(f->visible_to);
    free(f);
}

/* A known event name (static), or NULL: Redis's entries are ours, but a frame is never built from a
 * name that could carry a line break. */
static const char *name_known(const redisReply *v)
{
    static const char *const names[] = {"run_started", "node_started", "node_completed", "node_skipped",
                                        "node_failed", "run_completed", "run_failed"};
    for (size_t i = 0; v && v->type == REDIS_REPLY_STRING && i < sizeof names / sizeof names[0]; i++)
        if (v->len == strlen(names[i]) && memcmp(v->str, names[i], v->len) == 0)
            return names[i];
    return NULL;
}

/* A field's value in an entry's [field, value, ...] array, or NULL. */
static const redisReply *entry_field(const redisReply *fields, const char *name)
{
    if (!fields || fields->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t i = 0; i + 1 < fields->elements; i += 2) {
        const redisReply *k = fields->element[i], *v = fields->element[i + 1];
        if (k->type == REDIS_REPLY_STRING && k->len == strlen(name) && memcmp(k->str, name, k->len) == 0 &&
            v->type == REDIS_REPLY_STRING)
            return v;
    }
    return NULL;
}

/* An entry [id, fields] pushed to the subscriber; 1 when it was the run's end, -1 malformed. */
static int follow_entry(follow *f, const redisReply *e)
{
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 || e->element[0]->type != REDIS_REPLY_STRING)
        return -1;
    const char *id = e->element[0]->str;
    if (strncmp(id, "0-", 2) != 0)
        return -1;
    uint64_t n = events_parse_last_id(id + 2);
    const char *name = name_known(entry_field(e->element[1], "event"));
    const redisReply *data = entry_field(e->element[1], "data");
    if (!n || !name || !data || memchr(data->str, '\n', data->len) || memchr(data->str, '\r', data->len))
        return -1;
    f->last = n;
    int final = events_name_final(name);
    events_sub_push(f->sub, n, name, data->str, data->len, final);
    return final;
}

static void follow_poll(io_timer *t);

static void follow_on_read(redisReply *reply, void *ud)
{
    follow *f = ud;
    int ended = 0;
    /* XREAD: nil (nothing new) or [[key, [entry, ...]]] */
    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 1 &&
        reply->element[0]->type == REDIS_REPLY_ARRAY && reply->element[0]->elements == 2) {
        const redisReply *entries = reply->element[0]->element[1];
        for (size_t i = 0; entries->type == REDIS_REPLY_ARRAY && i < entries->elements && !ended; i++)
            ended = follow_entry(f, entries->element[i]) == 1;
    }
    if (ended || events_sub_closed(f->sub) || ioloop_current() != f->io ||
        ioloop_timer_start(f->io, &f->poll, EVENTS_REMOTE_POLL_MS) != 0)
        follow_free(f);
}

static void follow_poll(io_timer *t)
{
    follow *f = t->ud;
    if (events_sub_closed(f->sub) || ioloop_current() != f->io) {
        follow_free(f);
        return;
    }
    char after[24];
    snprintf(after, sizeof after, "0-%llu", (unsigned long long)f->last);
    const char *argv[] = {"XREAD", "COUNT", EVENTS_REMOTE_BATCH, "STREAMS", f->key, after};
    if (redis_command(6, argv, NULL, follow_on_read, f) != 0 &&
        ioloop_timer_start(f->io, &f->poll, EVENTS_REMOTE_POLL_MS * 5) != 0) /* Redis down: wait longer */
        follow_free(f);
}

/* XREVRANGE's answer: the run's latest entry, or nothing. */
static void follow_on_probe(redisReply *reply, void *ud)
{
    follow *f = ud;
    kreq *r = f->r;
    const redisReply *e = reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 1 ? reply->element[0] : NULL;
    const redisReply *who = e && e->type == REDIS_REPLY_ARRAY && e->elements == 2 ? entry_field(e->element[1], "principal")
                                                                                 : NULL;
    if (!who) {
        f->r = NULL;
        f->fallback(r);
        follow_free(f);
        return;
    }
    if (f->visible_to && (strlen(f->visible_to) != who->len || memcmp(f->visible_to, who->str, who->len) != 0)) {
        http_reply_error(r, 404, "not_found", "no such run", NULL);
        http_complete(r);
        follow_free(f);
        return;
    }
    f->sub = events_sub_new(EVENTS_FMT_SSE, f->io, 0);
    if (!f->sub) {
        http_reply_error(r, 500, "internal", "out of memory", NULL);
        http_complete(r);
        follow_free(f);
        return;
    }
    events_sub_retain(f->sub); /* one for the stream, one kept here */
    events_sub_reply(r, f->sub);
    http_complete(r);
    f->r = NULL;
    ioloop_timer_init(&f->poll, follow_poll, f);
    follow_poll(&f->poll);
}

int events_remote_follow(kreq *r, const char *run_id, uint64_t after_id, const char *visible_to,
                         void (*fallback)(kreq *r))
{
    if (!events_remote_on() || !ioloop_current())
        return -1;
    follow *f = calloc(1, sizeof *f);
    if (!f || (visible_to && !(f->visible_to = strdup(visible_to)))) {
        free(f);
        return -1;
    }
    f->r = r;
    f->fallback = fallback;
    f->io = ioloop_current();
    f->last = after_id;
    snprintf(f->key, sizeof f->key, KEY_PREFIX "%s", run_id);
    const char *argv[] = {"XREVRANGE", f->key, "+", "-", "COUNT", "1"};
    if (redis_command(6, argv, NULL, follow_on_probe, f) != 0) {
        follow_free(f);
        return -1;
    }
    return 0;
}
