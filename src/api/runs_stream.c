/* runs_stream: POST /workflows/{name}/execute with "mode": "stream" (API.md "Kailash-compatible
 * route"), the SDK WorkflowAPI's Server-Sent Events answer.
 *
 * The SDK (kailash/api/workflow_api.py, _execute_stream) sends
 *   id: 1  event: start     data: {"workflow_id", "version", "timestamp"}
 *   id: 2  event: complete  data: {"result": {"outputs", "execution_time", "workflow_id", "version"},
 *                                  "timestamp"}
 *   ": keepalive"
 * or, when the run fails, `event: error` with data {"error": ..., "timestamp"}. We send the same,
 * with the run's id added to start and to result (as sync /execute's body has it), the run's node
 * events between start and the end (node_started, node_completed, node_skipped, node_failed, with
 * API.md's data; numbered in the same sequence; an SDK client ignores names it does not know), and
 * error's data in API.md's error shape ({"code", "message", "request_id", "details": {run_id,
 * status, node}}) where the SDK has a string. timestamp is Unix seconds, as the SDK's time.time().
 *
 * The run is created with its events on and the subscriber made (with the run's buffer) before it is
 * submitted, so no event can come before the client is there; the answer (200, the stream) is set
 * at once and its bytes follow as the run goes. The run's done callback pushes complete or error and
 * ends the stream. The stream is never cached (X-Cache: BYPASS). A client that leaves does not
 * cancel the run: it goes on to its end and its record, as an async run, and GET /runs/{id}/events
 * follows it meanwhile. */
#include <stdlib.h>
#include <string.h>

#include "kailash/auth.h"
#include "kailash/events.h"
#include "runs_internal.h"

/* Pushes one SDK event whose data is d (stolen) plus its "timestamp". */
static void push_json(events_sub *s, const char *name, json_t *d)
{
    buf b = {0};
    if (d && json_object_set_new(d, "timestamp", json_real(util_now_unix_s())) == 0 && buf_append_json(&b, d) == 0)
        events_sub_push(s, 0, name, b.data, b.len, 0);
    buf_free(&b);
    json_decref(d);
}

static json_t *error_data(run *rn)
{
    const char *code = run_error_code(rn), *node = run_error_node(rn);
    if (!code || !code[0])
        code = run_get_status(rn) == RUN_CANCELLED ? "cancelled" : "internal";
    json_t *details = json_pack("{s:s,s:s}", "run_id", run_id(rn), "status", run_status_name(run_get_status(rn)));
    if (details && node && node[0])
        json_object_set_new(details, "node", json_string(node));
    return json_pack("{s:{s:s,s:s,s:s,s:o*}}", "error", "code", code, "message", run_error_message(rn), "request_id",
                     run_request_id(rn), "details", details);
}

static json_t *complete_data(run *rn)
{
    const workflow *wf = run_workflow(rn);
    return json_pack("{s:{s:O,s:f,s:s,s:s,s:s}}", "result", "outputs", run_results(rn), "execution_time",
                     run_duration_ms(rn) / 1000.0, "workflow_id", wf->name, "version", wf->version, "run_id",
                     run_id(rn));
}

/* The run ended (any thread): its last event, then the end of the stream. */
static void on_stream_done(run *rn, void *ud)
{
    events_sub *s = ud;
    if (run_get_status(rn) == RUN_COMPLETED)
        push_json(s, "complete", complete_data(rn));
    else
        push_json(s, "error", error_data(rn));
    events_sub_push(s, 0, NULL, "keepalive", 9, 0);
    events_sub_finish(s);
    events_sub_release(s);
}

int runs_start_stream(kreq *r, json_t *inputs, json_t *params)
{
    run_req *st = http_req_state(r);
    const workflow *wf = exec_workflow(st->ex);
    const auth_principal *who = http_req_principal(r);
    const char *owner = who ? auth_principal_id(who) : NULL;
    char id[37];
    util_uuid7(id); /* the run's id first: the subscriber (and the run's buffer) exist before the run */
    events_sub *s;
    events_sub_opts so = {.run_id = id,
                          .create_for = owner ? owner : "anonymous",
                          .format = EVENTS_FMT_SDK,
                          .io = ioloop_current()};
    if (events_subscribe(&so, &s) != EVENTS_OK) {
        http_reply_error(r, 500, "internal", "out of memory", NULL);
        return HTTP_DONE;
    }
    run_opts o = {.request_id = http_req_request_id(r),
                  .principal_id = owner,
                  .principal_roles = auth_principal_roles(who),
                  .principal_attributes = auth_principal_attributes(who),
                  .inputs = inputs,
                  .parameters = params,
                  .hops = http_req_hops(r),
                  .cache = "BYPASS",
                  .run_id = id,
                  .events = 1,
                  .done = on_stream_done,
                  .ud = s};
    st->run = run_create(st->ex, &o);
    if (!st->run) {
        events_sub_release(s);
        http_reply_error(r, 500, "internal", "out of memory", NULL);
        return HTTP_DONE;
    }
    push_json(s, "start", json_pack("{s:s,s:s,s:s}", "workflow_id", wf->name, "version", wf->version, "run_id", id));
    events_sub_retain(s); /* the done callback's reference; the creator's goes to the stream */
    http_req_set_run_id(r, id);
    events_sub_reply(r, s);
    http_reply_header(r, "X-Run-ID", id);
    http_reply_header(r, "X-Cache", "BYPASS");
    run_retain(st->run); /* one for exec_submit to take, one kept in the request's state */
    if (exec_submit(st->ex, st->run, 1) == EXEC_OVERLOADED) {
        run_release(st->run);
        events_sub_release(s); /* the done callback's: it will not run */
        http_req_set_run_id(r, "");
        http_reply_error(r, 503, "overloaded", "the workflow is at capacity; retry later", NULL);
        http_reply_header(r, "Retry-After", "1");
    }
    return HTTP_DONE;
}
