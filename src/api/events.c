/* events: GET /runs/{run_id}/events, a run's events as Server-Sent Events (API.md "Events (SSE)").
 *
 * Where the events come from, first found first:
 *   1. this instance's buffer of the run (events.h): the kept events after Last-Event-ID at once,
 *      then each new one as the run emits it, and the end after run_completed / run_failed;
 *   2. with redis_url, the run's stream in Redis (a run on another instance): followed from
 *      Last-Event-ID to its end (remote.c);
 *   3. the run record (store_get, on the worker pool as GET /runs/{id}): a finished run whose
 *      buffer is gone (older than the buffers' life, or a run of an earlier process) gets one final
 *      event made from its record (run_completed, or run_failed for failed, timeout and cancelled;
 *      no id line: it is not one of the run's numbered events), then the end. A queued or running
 *      run of this process (an async job not started yet) gets a buffer now and is followed live. A
 *      queued or running run that is neither here nor in Redis runs on another instance without
 *      Redis to share its events: the stream says so in a comment and ends; an EventSource client
 *      reconnects (after its retry delay) and gets the final event once the run is over.
 *
 * Who sees what is GET /runs/{id}'s rule: with authentication on, a caller without the admin role
 * follows only its own runs (another's is a 404, as an unknown id). Ids are UUIDs (anything else is
 * a 404 before any lookup), compared lowercased. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "kailash/api.h"
#include "kailash/auth.h"
#include "kailash/engine.h"
#include "kailash/events.h"
#include "kailash/ioloop.h"
#include "kailash/store.h"

typedef struct ev_req {
    char id[37];
    char *who; /* NULL: the caller sees every run */
    uint64_t last;
    ioloop *io;
} ev_req;

static void ev_req_free(void *p)
{
    ev_req *q = p;
    free(q->who);
    free(q);
}

/* NULL: every run; else the only principal whose runs r may follow (runs_read.c's rule). */
static const char *visible_principal(kreq *r)
{
    const auth_principal *p = http_req_principal(r);
    if (!auth_ctx_enabled(auth_ctx_current()) || (p && auth_principal_has_role(p, "admin")))
        return NULL;
    return p ? auth_principal_id(p) : "anonymous";
}

static int reply_not_found(kreq *r)
{
    http_reply_error(r, 404, "not_found", "no such run", NULL);
    return HTTP_DONE;
}

/* Follows the run's buffer here: 0 answered (a stream or an error), -1 no buffer. */
static int follow_buffer(kreq *r, ev_req *q, const char *create_for)
{
    events_sub *s;
    events_sub_opts o = {.run_id = q->id,
                         .after_id = q->last,
                         .visible_to = q->who,
                         .create_for = create_for,
                         .format = EVENTS_FMT_SSE,
                         .io = q->io};
    int rc = events_subscribe(&o, &s);
    if (rc == EVENTS_NO_BUFFER)
        return -1;
    if (rc == EVENTS_OK)
        events_sub_reply(r, s);
    else if (rc == EVENTS_NOT_VISIBLE)
        reply_not_found(r);
    else
        http_reply_error(r, 500, "internal", "out of memory", NULL);
    return 0;
}

/* ---- from the run record ---------------------------------------------------------------------- */

static int status_final(const char *st)
{
    return st && strcmp(st, "queued") != 0 && strcmp(st, "running") != 0;
}

/* The final event's data, made from a finished run's record. A new reference, or NULL. */
static json_t *record_final_data(json_t *rec, const char *status)
{
    char ts[40];
    util_rfc3339_now(ts, sizeof ts);
    json_t *fin = json_object_get(rec, "finished_at");
    json_t *d = json_pack("{s:O?,s:O?,s:s,s:s}", "run_id", json_object_get(rec, "run_id"), "workflow",
                          json_object_get(rec, "workflow"), "ts", json_is_string(fin) ? json_string_value(fin) : ts,
                          "status", status);
    if (!d)
        return NULL;
    json_t *dur = json_object_get(rec, "duration_ms");
    if (json_is_number(dur))
        json_object_set(d, "duration_ms", dur);
    const char *key = strcmp(status, "completed") == 0 ? "outputs" : "error";
    json_t *v = json_object_get(rec, key);
    if (v)
        json_object_set(d, key, v);
    return d;
}

/* A stream of one event made from the record, then the end. */
static void reply_from_record(kreq *r, ev_req *q, json_t *rec, const char *status)
{
    json_t *d = record_final_data(rec, status);
    buf b = {0};
    events_sub *s = events_sub_new(EVENTS_FMT_SSE, q->io, 0);
    if (!d || !s || buf_append_json(&b, d) != 0) {
        http_reply_error(r, 500, "internal", "out of memory", NULL);
        events_sub_release(s);
    } else {
        events_sub_push(s, 0, strcmp(status, "completed") == 0 ? "run_completed" : "run_failed", b.data, b.len, 1);
        events_sub_reply(r, s);
    }
    buf_free(&b);
    json_decref(d);
}

/* A queued or running run with no buffer here: this process's async job (follow it from now), or
 * another instance's run whose events cannot reach this one. */
static void reply_unfinished(kreq *r, ev_req *q, json_t *rec, const char *status)
{
    if (follow_buffer(r, q, NULL) == 0) /* its first event came meanwhile */
        return;
    run *mine = engine_async_find(q->id);
    if (mine) {
        run_release(mine);
        const char *owner = json_string_value(json_object_get(rec, "principal"));
        if (follow_buffer(r, q, owner ? owner : "anonymous") == 0)
            return;
    }
    events_sub *s = events_sub_new(EVENTS_FMT_SSE, q->io, 0);
    if (!s) {
        http_reply_error(r, 500, "internal", "out of memory", NULL);
        return;
    }
    char msg[160];
    int n = snprintf(msg, sizeof msg, "run is %s on another instance; its events are not shared without Redis: "
                     "reconnect for its end", status);
    events_sub_push(s, 0, NULL, msg, (size_t)n, 1);
    events_sub_reply(r, s);
}

static void on_record(void *ud, int status, const char *json, size_t len)
{
    kreq *r = ud;
    ev_req *q = http_req_state(r);
    json_t *rec = status == STORE_OK ? json_loadb(json, len, JSON_ALLOW_NUL, NULL) : NULL;
    const char *owner = json_string_value(json_object_get(rec, "principal"));
    const char *st = json_string_value(json_object_get(rec, "status"));
    if (status == STORE_UNAVAILABLE)
        http_reply_error(r, 503, "unavailable", "the run store cannot be read right now", NULL);
    else if (!rec || !st || (q->who && (!owner || strcmp(owner, q->who) != 0)))
        reply_not_found(r);
    else if (status_final(st))
        reply_from_record(r, q, rec, st);
    else
        reply_unfinished(r, q, rec, st);
    json_decref(rec);
    http_complete(r);
}

static void get_on_pool(void *arg)
{
    kreq *r = arg;
    store_get(((ev_req *)http_req_state(r))->id, on_record, r);
}

/* No buffer here, nothing in Redis: the record says (on the loop thread; r is pending). */
static void from_store(kreq *r)
{
    if (!store_enabled())
        reply_not_found(r); /* no records: a run with no buffer here is unknown */
    else if (engine_submit(get_on_pool, r) == 0)
        return;
    else
        http_reply_error(r, 503, "unavailable", "the run store cannot be read right now (the server is stopping)",
                         NULL);
    http_complete(r);
}

int api_run_events(kreq *r)
{
    const char *param = http_req_param(r);
    if (!store_is_uuid(param))
        return reply_not_found(r);
    ev_req *q = calloc(1, sizeof *q);
    const char *who = visible_principal(r);
    if (!q || (who && !(q->who = strdup(who)))) {
        free(q);
        http_reply_error(r, 500, "internal", "out of memory", NULL);
        return HTTP_DONE;
    }
    for (size_t i = 0; i < 36; i++)
        q->id[i] = (char)tolower((unsigned char)param[i]);
    q->last = events_parse_last_id(http_req_header(r, "Last-Event-ID"));
    q->io = ioloop_current();
    http_req_set_state(r, q, ev_req_free);
    if (follow_buffer(r, q, NULL) == 0)
        return HTTP_DONE;
    if (events_remote_follow(r, q->id, q->last, q->who, from_store) != 0)
        from_store(r);
    return HTTP_PENDING;
}
