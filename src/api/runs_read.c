/* runs_read: GET /runs/{run_id} and GET /runs (API.md "Run records").
 *
 * Both park and ask the store from the worker pool (the journal reads its files there, as the file
 * nodes do, never on a loop): the answer comes from the pending set or the journal, or from Postgres
 * on the store's reader thread, which sets the answer and resumes the request. Who sees
 * what: with authentication on, a caller without the admin role sees only its own runs (another's
 * is a 404, as an unknown id: a run's inputs and outputs are its caller's); admins, and everyone
 * with authentication off, see every run.
 *
 * Query values are checked before the store sees them: status is one of the six, limit a whole
 * number (clamped to 200), cursor one we made, workflow at most 128 bytes. Nothing from the request
 * is ever part of a statement's text (the store binds parameters). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kailash/api.h"
#include "kailash/auth.h"
#include "kailash/engine.h"
#include "kailash/store.h"

#define LIST_DEFAULT 50

/* NULL: every run; else the only principal whose runs r may see. */
static const char *visible_principal(kreq *r)
{
    const auth_principal *p = http_req_principal(r);
    if (!auth_ctx_enabled(auth_ctx_current()) || (p && auth_principal_has_role(p, "admin")))
        return NULL;
    return p ? auth_principal_id(p) : "anonymous";
}

static int store_off(kreq *r)
{
    http_reply_error(r, 503, "unavailable", "run records are off (store.enabled is false)", NULL);
    return HTTP_DONE;
}

static int store_off_now(kreq *r)
{
    http_reply_error(r, 503, "unavailable", "the run store cannot be read right now (the server is stopping)", NULL);
    return HTTP_DONE;
}

/* ---- one run ----------------------------------------------------------------------------------- */

static void reply_not_found(kreq *r)
{
    http_reply_error(r, 404, "not_found", "no such run", NULL);
}

/* Whether the record's principal is who (a record is ours, but a page is parsed rather than trusted
 * to have a field at a fixed place). JSON_ALLOW_NUL: an upstream's text can put a \u0000 escape in
 * the outputs, and the record is still its caller's. */
static int record_of(const char *json, size_t len, const char *who)
{
    json_t *rec = json_loadb(json, len, JSON_ALLOW_NUL, NULL);
    const char *p = json_string_value(json_object_get(rec, "principal"));
    int ok = p && strcmp(p, who) == 0;
    json_decref(rec);
    return ok;
}

static void on_get(void *ud, int status, const char *json, size_t len)
{
    kreq *r = ud;
    const char *who = http_req_state(r); /* set in the handler: this may be the store's thread */
    if (status == STORE_OK && (!who || record_of(json, len, who))) {
        buf b = {0};
        if (buf_append(&b, json, len) != 0 || buf_terminate(&b) != 0)
            buf_free(&b);
        http_reply_buf(r, 200, &b);
    } else if (status == STORE_UNAVAILABLE)
        http_reply_error(r, 503, "unavailable", "the run store cannot be read right now", NULL);
    else
        reply_not_found(r);
    http_complete(r);
}

static void get_on_pool(void *arg)
{
    kreq *r = arg;
    store_get(http_req_param(r), on_get, r);
}

int api_runs_get(kreq *r)
{
    if (!store_enabled())
        return store_off(r);
    const char *id = http_req_param(r);
    if (!store_is_uuid(id)) {
        reply_not_found(r);
        return HTTP_DONE;
    }
    const char *who = visible_principal(r);
    char *copy = who ? strdup(who) : NULL;
    if (who && !copy) {
        http_reply_error(r, 500, "internal", "out of memory", NULL);
        return HTTP_DONE;
    }
    http_req_set_state(r, copy, free);
    if (engine_submit(get_on_pool, r) != 0) /* the pool is stopping: never read the files on a loop */
        return store_off_now(r);
    return HTTP_PENDING;
}

/* ---- a page ------------------------------------------------------------------------------------------ */

static int bad(kreq *r, const char *msg)
{
    http_reply_error(r, 400, "bad_request", msg, NULL);
    return HTTP_DONE;
}

static int parse_limit(const char *s, int *out)
{
    if (!s) {
        *out = LIST_DEFAULT;
        return 0;
    }
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < 1 || s[0] == '+' || s[0] == ' ')
        return -1;
    *out = v > STORE_LIST_MAX ? STORE_LIST_MAX : (int)v;
    return 0;
}

static int known_status(const char *s)
{
    static const char *const names[] = {"queued", "running", "completed", "failed", "timeout", "cancelled"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(s, names[i]) == 0)
            return 1;
    return 0;
}

static void on_list(void *ud, int status, const store_page *page)
{
    kreq *r = ud;
    if (status != STORE_OK) {
        http_reply_error(r, 503, "unavailable", "the run store cannot be read right now", NULL);
        http_complete(r);
        return;
    }
    buf b = {0};
    int fail = buf_append(&b, "{\"runs\":[", 9) != 0;
    for (size_t i = 0; i < page->n && !fail; i++)
        fail = (i && buf_append(&b, ",", 1) != 0) || buf_append(&b, page->json[i], page->len[i]) != 0;
    char cur[33];
    if (page->more && page->n)
        store_cursor_encode(page->run_id[page->n - 1], cur);
    fail = fail || (page->more && page->n ? buf_appendf(&b, "],\"next_cursor\":\"%s\"}", cur)
                                          : buf_append(&b, "],\"next_cursor\":null}", 21)) != 0 ||
           buf_terminate(&b) != 0;
    if (fail)
        buf_free(&b);
    http_reply_buf(r, 200, &b); /* empty: 500 "out of memory" */
    http_complete(r);
}

/* A page's question, kept with the request while it waits (the query's strings are the request's). */
typedef struct list_job {
    store_query q;
    kreq *r;
    char before[37];
} list_job;

static void list_job_free(void *p)
{
    list_job *j = p;
    free((char *)j->q.principal);
    free(j);
}

static void list_on_pool(void *arg)
{
    list_job *j = arg;
    store_list(&j->q, on_list, j->r);
}

int api_runs_list(kreq *r)
{
    if (!store_enabled())
        return store_off(r);
    store_query q = {.workflow = http_req_query(r, "workflow"), .status = http_req_query(r, "status")};
    const char *cursor = http_req_query(r, "cursor");
    char before[37];
    if (parse_limit(http_req_query(r, "limit"), &q.limit) != 0)
        return bad(r, "limit: expected a whole number from 1 (at most 200 are answered)");
    if (q.status && !known_status(q.status))
        return bad(r, "status: expected queued, running, completed, failed, timeout or cancelled");
    if (q.workflow && (!*q.workflow || strlen(q.workflow) > 128))
        return bad(r, "workflow: expected a workflow name of 1..128 bytes");
    if (cursor && store_cursor_decode(cursor, before) != 0)
        return bad(r, "cursor: not a cursor this API gave out (use next_cursor as it came)");
    q.principal = visible_principal(r);
    list_job *j = malloc(sizeof *j);
    char *who = q.principal ? strdup(q.principal) : NULL;
    if (!j || (q.principal && !who)) {
        free(j);
        free(who);
        http_reply_error(r, 500, "internal", "out of memory", NULL);
        return HTTP_DONE;
    }
    memcpy(j->before, before, sizeof before);
    q.before = cursor ? j->before : NULL;
    q.principal = who;
    j->q = q;
    j->r = r;
    http_req_set_state(r, j, list_job_free);
    if (engine_submit(list_on_pool, j) != 0) /* the pool is stopping: never read the files on a loop */
        return store_off_now(r);
    return HTTP_PENDING;
}
