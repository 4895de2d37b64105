/* jobs_redis_consume: a consumer thread (jobs.consumers of them), on its own blocking connection.
 * Each round: held jobs are dispatched again; the current registry's workflows give the streams
 * (their group made once, from id 0 so that jobs added before any instance made the group are
 * read too); only streams whose workflow has a free slot here (rq_stream_reserve) are read, one
 * entry each (XREADGROUP COUNT 1), so a busy instance leaves the rest to others. The BLOCK is
 * at most a second (claim_idle_ms/4 when smaller), which bounds how long a stop or a reload's new
 * workflow waits. Consumer names are "host:pid:n", unique per process. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobs_redis_internal.h"
#include "kailash/engine.h"
#include "kailash/log.h"
#include "kailash/workflow.h"

#define RQ_NO_ROOM_MS 20 /* no stream has room: look again this much later */

/* XGROUP CREATE of stream's group unless known: 0 (made, or exists), 1 (refused), -1 (broken). */
static int group_make(redisContext *c, const char *stream)
{
    if (rq_group_known(stream))
        return 0;
    const char *argv[] = {"XGROUP", "CREATE", stream, RQ_GROUP, "0", "MKSTREAM", NULL};
    redisReply *r = rq_callv(c, argv);
    if (!r)
        return -1;
    int ok = r->type != REDIS_REPLY_ERROR || strncmp(r->str, "BUSYGROUP", 9) == 0;
    if (ok)
        rq_group_set(stream, 1);
    else
        log_msg(LOG_WARN, "async jobs: could not make the consumer group of %s: %.200s", stream, r->str);
    freeReplyObject(r);
    return ok ? 0 : 1;
}

int rq_streams_known(redisContext *c, char ***out, size_t *n)
{
    registry *reg = registry_acquire();
    size_t count = reg ? registry_count(reg) : 0;
    char **v = calloc(count ? count : 1, sizeof *v);
    int rc = v ? 0 : 1;
    *n = 0;
    for (size_t i = 0; i < count && rc >= 0 && v; i++) {
        char stream[RQ_STREAM_MAX];
        rq_stream_name(stream, exec_workflow(registry_at(reg, i))->name);
        if ((rc = group_make(c, stream)) == 0 && (v[*n] = strdup(stream)))
            (*n)++;
    }
    registry_release(reg);
    if (rc < 0) {
        rq_strv_free(v, *n);
        return -1;
    }
    *out = v;
    return 0;
}

int rq_stream_reserve(const char *stream)
{
    const char *wf = stream + strlen(RQ_PREFIX);
    if (rq_held_has(wf))
        return 0;
    registry *reg = registry_acquire();
    executor *ex = reg ? registry_find(reg, wf) : NULL;
    int slots = ex ? exec_workflow(ex)->max_concurrency : 0;
    registry_release(reg);
    if (!rq_read_reserve(stream, slots))
        return 0;
    if (jobs_room(wf))
        return 1;
    rq_read_release(stream);
    return 0;
}

/* The read's streams: those with room, each reserved (into pick, borrowed from all). */
static size_t streams_with_room(char **all, size_t n, const char **pick)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (rq_stream_reserve(all[i]))
            pick[k++] = all[i];
    return k;
}

/* Every entry of an XREADGROUP reply, taken: 0, or -1 (connection broken). */
static int take_read(redisContext *c, const redisReply *r)
{
    for (size_t s = 0; r->type == REDIS_REPLY_ARRAY && s < r->elements; s++) {
        const redisReply *sr = r->element[s];
        if (sr->type != REDIS_REPLY_ARRAY || sr->elements != 2 || sr->element[1]->type != REDIS_REPLY_ARRAY)
            continue;
        const char *stream = sr->element[0]->str;
        for (size_t e = 0; e < sr->element[1]->elements; e++) {
            const redisReply *en = sr->element[1]->element[e];
            if (en->type != REDIS_REPLY_ARRAY || en->elements != 2 || en->element[0]->type != REDIS_REPLY_STRING)
                continue;
            if (rq_entry_take(c, stream, en->element[0]->str, en->element[1], 1) != 0)
                return -1;
        }
    }
    return 0;
}

/* XREADGROUP on k streams: 0, or -1 (connection broken). */
static int read_streams(redisContext *c, const char *me, const char **streams, size_t k)
{
    char block[16];
    snprintf(block, sizeof block, "%d", RQ.block_ms);
    const char **argv = calloc(9 + 2 * k, sizeof *argv);
    if (!argv)
        return 0;
    int argc = 0;
    const char *head[] = {"XREADGROUP", "GROUP", RQ_GROUP, me, "COUNT", "1", "BLOCK", block, "STREAMS"};
    for (size_t i = 0; i < sizeof head / sizeof head[0]; i++)
        argv[argc++] = head[i];
    for (size_t i = 0; i < k; i++)
        argv[argc++] = streams[i];
    for (size_t i = 0; i < k; i++)
        argv[argc++] = ">";
    redisReply *r = rq_call(c, RQ.block_ms, argc, argv, NULL);
    free(argv);
    if (!r)
        return -1;
    int rc = 0;
    if (r->type == REDIS_REPLY_ERROR) { /* NOGROUP: a stream or group deleted meanwhile: made again */
        log_msg(LOG_WARN, "async jobs: XREADGROUP: %.200s", r->str);
        for (size_t i = 0; i < k; i++)
            rq_group_set(streams[i], 0);
        rq_sleep(RQ.block_ms);
    } else {
        rc = take_read(c, r);
    }
    freeReplyObject(r);
    return rc;
}

/* One round: 0, or -1 (connection broken). */
static int consume_once(redisContext *c, const char *me)
{
    if (rq_held_retry(c) != 0)
        return -1;
    char **all;
    size_t n;
    if (rq_streams_known(c, &all, &n) != 0)
        return -1;
    const char **pick = calloc(n ? n : 1, sizeof *pick);
    size_t k = pick ? streams_with_room(all, n, pick) : 0;
    int rc = 0;
    if (k == 0)
        rq_sleep(RQ_NO_ROOM_MS);
    else
        rc = read_streams(c, me, pick, k);
    for (size_t i = 0; i < k; i++)
        rq_read_release(pick[i]);
    free(pick);
    rq_strv_free(all, n);
    return rc;
}

void *rq_consume_main(void *arg)
{
    char me[340];
    snprintf(me, sizeof me, "%s%d", RQ.prefix, (int)(intptr_t)arg);
    redisContext *c = NULL;
    int backoff = 0;
    while (!atomic_load(&RQ.stop)) {
        if (!c) {
            if (!(c = rq_conn_backoff(&backoff)))
                break;
            rq_conn_report(1, NULL);
        }
        if (consume_once(c, me) != 0) {
            if (!atomic_load(&RQ.stop))
                rq_conn_report(0, c->err ? c->errstr : "no answer in time");
            redisFree(c);
            c = NULL;
        }
    }
    redisFree(c);
    return NULL;
}
