/* jobs_redis_entry: one entry delivered to this process (read by a consumer, or claimed by the
 * keeper from a dead instance). Its payload is read as hostile input (job_from_json checks every
 * field, and the job must name its stream's workflow). Then, in order: an entry this process
 * already has in flight is left alone; a run cancelled meanwhile (its key in Redis) gets its
 * cancelled record and is acknowledged; otherwise jobs.c dispatches it (taken), or has no room
 * (held here and retried: the entry stays in flight, refreshed), or cannot start it here (a failed
 * start). A failed start stays pending for another delivery until jobs.max_deliveries, then goes
 * to the dead letters with its reason, and its record says failed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobs_redis_internal.h"
#include "kailash/log.h"
#include "kailash/util.h"

/* The value of field name in an entry's [field, value, ...] array, or NULL. */
static const redisReply *entry_field(const redisReply *fields, const char *name)
{
    if (!fields || fields->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t i = 0; i + 1 < fields->elements; i += 2) {
        const redisReply *k = fields->element[i], *v = fields->element[i + 1];
        if (k->type == REDIS_REPLY_STRING && strcmp(k->str, name) == 0 && v->type == REDIS_REPLY_STRING)
            return v;
    }
    return NULL;
}

static job *entry_job(const char *stream, const redisReply *payload, char *why, size_t whylen)
{
    if (!payload)
        return util_err(why, whylen, "the stream entry has no \"job\" field"), NULL;
    json_error_t e;
    json_t *p = json_loadb(payload->str, payload->len, 0, &e);
    if (!p)
        return util_err(why, whylen, "the job's payload is not JSON: %.100s", e.text), NULL;
    char err[200] = "";
    job *j = job_from_json(p, err, sizeof err);
    json_decref(p);
    if (!j)
        return util_err(why, whylen, "the job's payload is not a job: %s", err), NULL;
    if (strcmp(j->workflow, stream + strlen(RQ_PREFIX)) != 0) {
        util_err(why, whylen, "the job names workflow '%.128s', not its stream's", j->workflow);
        job_free(j);
        return NULL;
    }
    return j;
}

/* A job to put the failed record of a payload that was not a job, when it still says which run it
 * was (a run_id of the right length); NULL otherwise (no record can be written). */
static job *entry_job_minimal(const char *stream, const char *payload)
{
    json_t *p = payload ? json_loads(payload, 0, NULL) : NULL;
    const char *id = json_string_value(json_object_get(p, "run_id"));
    job *j = id && strlen(id) == 36 ? job_new(stream + strlen(RQ_PREFIX)) : NULL;
    if (j)
        util_copy(j->run_id, sizeof j->run_id, id);
    json_decref(p);
    return j;
}

/* 1 when run_id was cancelled (its key is set), 0 not, -1 connection broken. */
static int entry_cancelled(redisContext *c, const char *run_id)
{
    char key[sizeof RQ_CANCELLED + 40];
    snprintf(key, sizeof key, RQ_CANCELLED "%s", run_id);
    const char *argv[] = {"GET", key, NULL};
    redisReply *r = rq_callv(c, argv);
    int rc = !r ? -1 : r->type == REDIS_REPLY_STRING;
    freeReplyObject(r);
    return rc;
}

/* XADD of the entry to the dead letters: 0, or -1 (connection broken). */
static int entry_bury(redisContext *c, const char *stream, const char *id, const char *payload, int deliveries,
                      const char *reason)
{
    char n[16];
    snprintf(n, sizeof n, "%d", deliveries);
    const char *argv[] = {"XADD",         RQ_DEAD,
                          "MAXLEN",       "~",
                          RQ_DEAD_MAXLEN, "*",
                          "job",          payload ? payload : "",
                          "workflow",     stream + strlen(RQ_PREFIX),
                          "stream",       stream,
                          "entry",        id,
                          "deliveries",   n,
                          "reason",       reason};
    int argc = (int)(sizeof argv / sizeof argv[0]);
    redisReply *r = rq_call(c, 0, argc, argv, NULL);
    if (r && r->type == REDIS_REPLY_ERROR)
        log_msg(LOG_ERROR, "async jobs: the dead letters refused entry %s of %s: %.200s", id, stream, r->str);
    freeReplyObject(r);
    return r ? 0 : -1;
}

/* A failed start (j, taken, may be NULL for a payload that is not a job; payload NULL: j's). */
static int entry_failed(redisContext *c, const char *stream, const char *id, const char *payload, job *j,
                        int deliveries, const char *why)
{
    if (deliveries < RQ.max_deliveries) {
        log_msg(LOG_WARN, "async jobs: entry %s of %s (run %s) cannot start here: %s; delivery %d of %d, left pending",
                id, stream, j ? j->run_id : "?", why, deliveries, RQ.max_deliveries);
        job_free(j);
        return 0;
    }
    char reason[400], *own = NULL;
    snprintf(reason, sizeof reason, "dead-lettered after %d deliveries: %s", deliveries, why);
    if (!payload && j) {
        json_t *p = job_to_json(j);
        payload = own = p ? json_dumps(p, JSON_COMPACT) : NULL;
        json_decref(p);
    }
    int rc = entry_bury(c, stream, id, payload, deliveries, reason);
    if (rc == 0) {
        job *rec = j ? j : entry_job_minimal(stream, payload);
        log_msg(LOG_WARN, "async jobs: entry %s of %s (run %s) %s", id, stream, rec ? rec->run_id : "?", reason);
        if (rec)
            jobs_record_dead(rec, reason);
        if (rec != j)
            job_free(rec);
        rc = rq_ack_now(c, stream, id);
    }
    free(own);
    job_free(j);
    return rc;
}

/* Dispatches j (taken): 1 when jobs.c took it or it is held, 0 when it cannot start here (why). */
static int entry_start(job *j, char *why, size_t whylen)
{
    char stream[RQ_STREAM_MAX], id[48];
    rq_stream_name(stream, j->workflow);
    util_copy(id, sizeof id, j->entry_id);
    rq_inflight_add(stream, id); /* before: its run may end (and ack) before jobs_dispatch returns */
    int rc = jobs_dispatch(j, why, whylen);
    if (rc == JOBS_DISPATCH_OK)
        return 1;
    if (rc == JOBS_DISPATCH_FULL) {
        rq_held_add(j);
        return 1;
    }
    rq_inflight_remove(stream, id);
    return 0;
}

int rq_entry_take(redisContext *c, const char *stream, const char *id, const redisReply *fields, int deliveries)
{
    char why[300] = "";
    const redisReply *payload = entry_field(fields, "job");
    if (rq_inflight_has(stream, id))
        return 0;
    job *j = entry_job(stream, payload, why, sizeof why);
    if (j) {
        util_copy(j->entry_id, sizeof j->entry_id, id);
        j->deliveries = deliveries;
        int rc = entry_cancelled(c, j->run_id);
        if (rc != 0) {
            if (rc == 1)
                jobs_record_cancelled(j);
            job_free(j);
            return rc == 1 ? rq_ack_now(c, stream, id) : -1;
        }
        if (entry_start(j, why, sizeof why))
            return 0;
    }
    return entry_failed(c, stream, id, payload ? payload->str : NULL, j, deliveries, why);
}

int rq_held_retry(redisContext *c)
{
    size_t n;
    job **v = rq_held_take(&n);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        char why[300] = "", stream[RQ_STREAM_MAX], id[48];
        job *j = v[i];
        if (rc != 0 || atomic_load(&RQ.stop)) {
            rq_held_add(j);
            continue;
        }
        rq_stream_name(stream, j->workflow);
        util_copy(id, sizeof id, j->entry_id);
        int d = jobs_dispatch(j, why, sizeof why);
        if (d == JOBS_DISPATCH_FULL) {
            rq_held_add(j);
        } else if (d == JOBS_DISPATCH_FAILED) {
            rq_inflight_remove(stream, id);
            rc = entry_failed(c, stream, id, NULL, j, j->deliveries, why);
        }
    }
    free(v);
    return rc;
}
