/* jobs_redis_keep: the keeper thread, on its own blocking connection ("host:pid:k").
 *
 *   refresh   every claim_idle_ms/3, the entries this process has in flight (running, queued on an
 *             executor, held for room) have their idle time reset, so that no other instance claims
 *             a live instance's long run. One script per stream: for each id still pending under a
 *             consumer of this process (XPENDING), XCLAIM ... 0 JUSTID (the delivery count stays).
 *             Checked in the script, atomically: a plain XCLAIM with min-idle 0 would take back an
 *             entry another instance claimed meanwhile, and both would run it.
 *   claim     every claim_idle_ms/2, XAUTOCLAIM of entries idle for claim_idle_ms in every job
 *             stream: those of the registry's workflows while they have room here, and those SCAN
 *             finds for workflows not loaded here (their entries can only be orphans of a dead
 *             instance, and end in the dead letters after jobs.max_deliveries failed starts unless
 *             an instance that has the workflow claims them first). A claimed entry's delivery
 *             count comes from XPENDING; it is then taken like a read one.
 *   ops       acks and cancels a loop could not send. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jobs_redis_internal.h"
#include "kailash/log.h"
#include "kailash/util.h"

#define RQ_REFRESH_BATCH 100
#define RQ_CLAIM_ROUNDS 32 /* XAUTOCLAIM calls per stream and pass */
#define RQ_KEEP_TICK_MS 200

static const char refresh_lua[] = "local n = 0\n"
                                  "for i = 3, #ARGV do\n"
                                  "  local p = redis.call('XPENDING', KEYS[1], '" RQ_GROUP "', ARGV[i], ARGV[i], 1)\n"
                                  "  if p[1] and string.sub(p[1][2], 1, #ARGV[1]) == ARGV[1] then\n"
                                  "    redis.call('XCLAIM', KEYS[1], '" RQ_GROUP "', ARGV[2], 0, ARGV[i], 'JUSTID')\n"
                                  "    n = n + 1\n"
                                  "  end\n"
                                  "end\n"
                                  "return n\n";

/* ---- ops ---- */

static int send_ops(redisContext *c)
{
    rq_op *op = rq_op_take_all(), *next;
    for (; op; op = next) {
        next = op->next;
        const char *argv[2][6];
        size_t lens[2][6];
        int argc[2];
        rq_op_argv(op, argv, lens, argc);
        const char **av[2] = {argv[0], argv[1]};
        size_t *lv[2] = {lens[0], lens[1]};
        redisReply *out[2];
        if (rq_pipe(c, 2, argc, av, lv, out, 0) != 0) {
            for (; op; op = next) { /* kept for the next connection */
                next = op->next;
                rq_op_defer(op);
            }
            return -1;
        }
        freeReplyObject(out[0]);
        freeReplyObject(out[1]);
        if (op->kind == RQ_OP_ACK)
            rq_inflight_remove(op->stream, op->id);
        free(op);
    }
    return 0;
}

/* ---- refresh ---- */

static int refresh_stream(redisContext *c, const char *me, const char *stream)
{
    size_t n;
    char **ids = rq_inflight_ids(stream, &n);
    int rc = 0;
    for (size_t at = 0; at < n && rc == 0; at += RQ_REFRESH_BATCH) {
        size_t k = n - at < RQ_REFRESH_BATCH ? n - at : RQ_REFRESH_BATCH;
        const char *argv[6 + RQ_REFRESH_BATCH] = {"EVAL", refresh_lua, "1", stream, RQ.prefix, me};
        for (size_t i = 0; i < k; i++)
            argv[6 + i] = ids[at + i];
        redisReply *r = rq_call(c, 0, 6 + (int)k, argv, NULL);
        if (!r)
            rc = -1;
        else if (r->type == REDIS_REPLY_ERROR)
            log_msg(LOG_WARN, "async jobs: refreshing the jobs in flight of %s: %.200s", stream, r->str);
        freeReplyObject(r);
    }
    rq_strv_free(ids, n);
    return rc;
}

static int refresh(redisContext *c, const char *me)
{
    size_t n;
    char **streams = rq_inflight_streams(&n);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = refresh_stream(c, me, streams[i]);
    rq_strv_free(streams, n);
    return rc;
}

/* ---- claim ---- */

/* The delivery count of a pending entry (counting the claim that just took it); -1 broken. */
static int deliveries_of(redisContext *c, const char *stream, const char *id)
{
    const char *argv[] = {"XPENDING", stream, RQ_GROUP, id, id, "1", NULL};
    redisReply *r = rq_callv(c, argv);
    if (!r)
        return -1;
    int n = 1;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 && r->element[0]->type == REDIS_REPLY_ARRAY &&
        r->element[0]->elements == 4 && r->element[0]->element[3]->type == REDIS_REPLY_INTEGER)
        n = (int)r->element[0]->element[3]->integer;
    freeReplyObject(r);
    return n;
}

static int take_claimed(redisContext *c, const char *stream, const redisReply *entries)
{
    for (size_t e = 0; e < entries->elements; e++) {
        const redisReply *en = entries->element[e];
        if (en->type != REDIS_REPLY_ARRAY || en->elements != 2 || en->element[0]->type != REDIS_REPLY_STRING)
            continue; /* Redis 6.2: a deleted entry is nil */
        int d = deliveries_of(c, stream, en->element[0]->str);
        if (d < 0 || rq_entry_take(c, stream, en->element[0]->str, en->element[1], d) != 0)
            return -1;
    }
    return 0;
}

/* Claims stream's idle entries (known: its workflow is loaded here). 0, or -1 broken. */
static int claim_stream(redisContext *c, const char *me, const char *stream, int known)
{
    char idle[16], cursor[48] = "0-0";
    snprintf(idle, sizeof idle, "%d", RQ.claim_idle_ms);
    for (int round = 0; round < RQ_CLAIM_ROUNDS && !atomic_load(&RQ.stop); round++) {
        if (known && !rq_stream_reserve(stream))
            return 0;
        const char *argv[] = {"XAUTOCLAIM", stream, RQ_GROUP, me, idle, cursor, "COUNT", known ? "1" : "16", NULL};
        redisReply *r = rq_callv(c, argv);
        if (!r) {
            if (known)
                rq_read_release(stream);
            return -1;
        }
        int rc = 0, more = 0;
        if (r->type == REDIS_REPLY_ARRAY && r->elements >= 2 && r->element[0]->type == REDIS_REPLY_STRING &&
            r->element[1]->type == REDIS_REPLY_ARRAY) {
            util_copy(cursor, sizeof cursor, r->element[0]->str);
            rc = take_claimed(c, stream, r->element[1]);
            more = strcmp(cursor, "0-0") != 0;
        }
        freeReplyObject(r);
        if (known)
            rq_read_release(stream);
        if (rc != 0 || !more)
            return rc;
    }
    return 0;
}

static int in_list(char **v, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i], s) == 0)
            return 1;
    return 0;
}

/* The job streams SCAN finds that are not in known (into *out, caller frees). -1 broken. */
static int streams_found(redisContext *c, char **known, size_t nknown, char ***out, size_t *n)
{
    char cursor[32] = "0";
    char **v = NULL;
    *n = 0;
    do {
        const char *argv[] = {"SCAN", cursor, "MATCH", RQ_PREFIX "*", "TYPE", "stream", "COUNT", "1000", NULL};
        redisReply *r = rq_callv(c, argv);
        if (!r) {
            rq_strv_free(v, *n);
            return -1;
        }
        int ok = r->type == REDIS_REPLY_ARRAY && r->elements == 2 && r->element[1]->type == REDIS_REPLY_ARRAY;
        util_copy(cursor, sizeof cursor, ok ? r->element[0]->str : "0");
        for (size_t i = 0; ok && i < r->element[1]->elements; i++) {
            const char *s = r->element[1]->element[i]->str;
            if (!s || strchr(s + strlen(RQ_PREFIX), ':') || strlen(s) >= RQ_STREAM_MAX || in_list(known, nknown, s) ||
                in_list(v, *n, s))
                continue; /* not a workflow's stream (the dead letters), or one seen */
            char **grown = realloc(v, (*n + 1) * sizeof *grown);
            if (grown && (grown[*n] = strdup(s))) {
                v = grown;
                (*n)++;
            } else if (grown) {
                v = grown;
            }
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0 && !atomic_load(&RQ.stop));
    *out = v;
    return 0;
}

static int claim_pass(redisContext *c, const char *me)
{
    char **known, **other = NULL;
    size_t nk, no = 0;
    if (rq_streams_known(c, &known, &nk) != 0)
        return -1;
    int rc = streams_found(c, known, nk, &other, &no);
    for (size_t i = 0; i < nk && rc == 0; i++)
        rc = claim_stream(c, me, known[i], 1);
    for (size_t i = 0; i < no && rc == 0; i++)
        rc = claim_stream(c, me, other[i], 0);
    rq_strv_free(known, nk);
    rq_strv_free(other, no);
    return rc;
}

/* ---- the thread ---- */

/* Waits until ms passed, an op is deferred, or a stop. */
static void keep_wait(double ms)
{
    if (ms > RQ_KEEP_TICK_MS)
        ms = RQ_KEEP_TICK_MS;
    if (ms < 1)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long ns = ts.tv_nsec + (long)(ms * 1e6);
    ts.tv_sec += ns / 1000000000L;
    ts.tv_nsec = ns % 1000000000L;
    pthread_mutex_lock(&RQ.mu);
    if (!atomic_load(&RQ.stop))
        pthread_cond_timedwait(&RQ.cv, &RQ.mu, &ts);
    pthread_mutex_unlock(&RQ.mu);
}

static int keep_once(redisContext *c, const char *me, double *next_refresh, double *next_claim)
{
    if (send_ops(c) != 0)
        return -1;
    double now = util_now_ms();
    if (now >= *next_refresh) {
        if (refresh(c, me) != 0)
            return -1;
        *next_refresh = now + RQ.claim_idle_ms / 3.0;
    }
    if (now >= *next_claim) {
        if (claim_pass(c, me) != 0)
            return -1;
        *next_claim = now + RQ.claim_idle_ms / 2.0;
    }
    double due = (*next_refresh < *next_claim ? *next_refresh : *next_claim) - util_now_ms();
    keep_wait(due);
    return 0;
}

void *rq_keep_main(void *arg)
{
    (void)arg;
    char me[340];
    snprintf(me, sizeof me, "%sk", RQ.prefix);
    redisContext *c = NULL;
    int backoff = 0;
    double next_refresh = 0, next_claim = 0;
    while (!atomic_load(&RQ.stop)) {
        if (!c && !(c = rq_conn_backoff(&backoff)))
            break;
        if (keep_once(c, me, &next_refresh, &next_claim) != 0) {
            redisFree(c);
            c = NULL;
        }
    }
    redisFree(c);
    return NULL;
}
