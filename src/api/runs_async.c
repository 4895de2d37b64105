/* runs_async: accepting an async run (API.md "Running a workflow": ?mode=async, Prefer:
 * respond-async, /execute "mode": "async"). The body was checked as for a sync run; here the job is
 * made (its run id, the caller as the auth step found it, the inputs) and handed to jobs_accept,
 * whose answer may come on another thread (the store's writer, once the queued record is synced):
 * 202 with Location, or 503. */
#include <stdlib.h>
#include <string.h>

#include "kailash/auth.h"
#include "kailash/jobs.h"
#include "runs_internal.h"

static void reply_accepted(kreq *r, int execute)
{
    const char *id = http_req_run_id(r);
    char loc[64];
    snprintf(loc, sizeof loc, "/runs/%s", id);
    json_t *body;
    if (execute) {
        body = json_pack("{s:s,s:s}", "execution_id", id, "status", "pending");
    } else {
        char events[80];
        snprintf(events, sizeof events, "/runs/%s/events", id);
        body = json_pack("{s:s,s:s,s:{s:s,s:s}}", "run_id", id, "status", "queued", "links", "self", loc, "events", events);
    }
    http_reply_json(r, 202, body);
    http_reply_header(r, "Location", loc);
    if (((run_req *)http_req_state(r))->prefer_async)
        http_reply_header(r, "Preference-Applied", "respond-async");
}

static void on_accepted(void *ud, int status, const char *why)
{
    kreq *r = ud;
    run_req *s = http_req_state(r);
    if (status == JOBS_ACCEPTED) {
        reply_accepted(r, s->execute);
    } else if (status == JOBS_OVERLOADED) {
        http_reply_error(r, 503, "overloaded", "the workflow's queue is full; retry later", NULL);
        http_reply_header(r, "Retry-After", "1");
    } else {
        http_reply_error(r, 503, "unavailable", why ? why : "async runs cannot be accepted right now", NULL);
    }
    http_reply_header(r, "X-Run-ID", http_req_run_id(r));
    http_complete(r);
}

/* The job of r: its caller, inputs and parameters (copied: the job outlives the request). */
static job *job_of(kreq *r, const workflow *wf, json_t *inputs, json_t *params, const char *callback_url)
{
    job *j = job_new(wf->name);
    if (!j)
        return NULL;
    run_req *s = http_req_state(r);
    const auth_principal *who = http_req_principal(r);
    util_uuid7(j->run_id);
    free(j->request_id);
    j->request_id = strdup(http_req_request_id(r));
    j->principal = who && auth_principal_id(who) ? strdup(auth_principal_id(who)) : NULL;
    json_t *roles = auth_principal_roles(who), *attrs = auth_principal_attributes(who);
    j->roles = roles ? json_deep_copy(roles) : NULL;
    j->attributes = attrs ? json_deep_copy(attrs) : NULL;
    json_decref(j->inputs);
    j->inputs = json_deep_copy(inputs);
    j->parameters = params ? json_deep_copy(params) : NULL;
    j->callback_url = callback_url ? strdup(callback_url) : NULL;
    j->hops = http_req_hops(r);
    j->execute = s->execute;
    if (!j->request_id || !j->inputs || (params && !j->parameters) || (callback_url && !j->callback_url)) {
        job_free(j);
        return NULL;
    }
    return j;
}

int runs_accept_async(kreq *r, json_t *inputs, json_t *params, const char *callback_url)
{
    run_req *s = http_req_state(r);
    char why[200];
    if (!jobs_available(why, sizeof why)) {
        http_reply_error(r, 503, "unavailable", why, NULL);
        return HTTP_DONE;
    }
    job *j = job_of(r, exec_workflow(s->ex), inputs, params, callback_url);
    if (!j) {
        http_reply_error(r, 500, "internal", "out of memory", NULL);
        return HTTP_DONE;
    }
    http_req_set_run_id(r, j->run_id);
    jobs_accept(j, on_accepted, r); /* may answer before it returns: the server handles that */
    return HTTP_PENDING;
}
