/* runs_cancel: DELETE /runs/{run_id} (API.md): a queued or running async run is cancelled (202), a
 * finished one is a 409, an unknown one (or another caller's, with authentication on) a 404. The
 * record says where the run stands; it is read from the worker pool, as GET /runs/{id} reads it
 * (the journal's files are never read on a loop). */
#include <stdlib.h>
#include <string.h>

#include "kailash/api.h"
#include "kailash/auth.h"
#include "kailash/engine.h"
#include "kailash/jobs.h"
#include "kailash/store.h"

static void reply_cancelled(kreq *r, const char *id)
{
    char self[64];
    snprintf(self, sizeof self, "/runs/%s", id);
    http_reply_json(r, 202, json_pack("{s:s,s:s,s:{s:s}}", "run_id", id, "cancel", "accepted", "links", "self", self));
}

/* The record is at hand (any thread): decide. */
static void decide(kreq *r, json_t *rec)
{
    const char *who = http_req_state(r);
    const char *principal = json_string_value(json_object_get(rec, "principal"));
    const char *status = json_string_value(json_object_get(rec, "status"));
    const char *id = json_string_value(json_object_get(rec, "run_id"));
    if (!id || !status || (who && (!principal || strcmp(principal, who) != 0))) {
        http_reply_error(r, 404, "not_found", "no such run", NULL);
        return;
    }
    int live = strcmp(status, "queued") == 0 || strcmp(status, "running") == 0;
    if (live && jobs_cancel(id) == JOBS_CANCELLED) {
        reply_cancelled(r, id);
        return;
    }
    char msg[96];
    snprintf(msg, sizeof msg, "the run has already finished (%s)", live ? "just now" : status);
    http_reply_error(r, 409, "conflict", msg, json_pack("{s:s}", "run_id", id));
}

static void on_get(void *ud, int status, const char *json, size_t len)
{
    kreq *r = ud;
    json_t *rec = status == STORE_OK ? json_loadb(json, len, JSON_ALLOW_NUL, NULL) : NULL;
    if (rec)
        decide(r, rec);
    else if (status == STORE_UNAVAILABLE)
        http_reply_error(r, 503, "unavailable", "the run store cannot be read right now", NULL);
    else
        http_reply_error(r, 404, "not_found", "no such run", NULL);
    json_decref(rec);
    http_complete(r);
}

static void get_on_pool(void *arg)
{
    kreq *r = arg;
    store_get(http_req_param(r), on_get, r);
}

int api_runs_cancel(kreq *r)
{
    if (!store_enabled()) {
        http_reply_error(r, 503, "unavailable", "run records are off (store.enabled is false)", NULL);
        return HTTP_DONE;
    }
    if (!store_is_uuid(http_req_param(r))) {
        http_reply_error(r, 404, "not_found", "no such run", NULL);
        return HTTP_DONE;
    }
    const auth_principal *p = http_req_principal(r);
    int all = !auth_ctx_enabled(auth_ctx_current()) || (p && auth_principal_has_role(p, "admin"));
    const char *who = all ? NULL : p ? auth_principal_id(p) : "anonymous";
    char *copy = who ? strdup(who) : NULL;
    if (who && !copy) {
        http_reply_error(r, 500, "internal", "out of memory", NULL);
        return HTTP_DONE;
    }
    http_req_set_state(r, copy, free);
    if (engine_submit(get_on_pool, r) != 0) {
        http_reply_error(r, 503, "unavailable", "the server is stopping", NULL);
        return HTTP_DONE;
    }
    return HTTP_PENDING;
}
