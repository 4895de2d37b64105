/* api: the route handlers (src/api/), one file per group. Each is an http_handler: it answers with
 * http_reply_* and returns HTTP_DONE, or hands the request on and returns HTTP_PENDING. */
#ifndef KAILASH_API_H
#define KAILASH_API_H

#include <stdio.h>

#include "kailash/http.h"

/* health.c: /health and /ready, and the process start they count uptime from. */
int api_health(kreq *r);
int api_ready(kreq *r);
void api_health_set_start_time(double now_ms);
/* metrics.c: GET /metrics (404 while enable_monitoring is false), and what follows the serving
 * config: counting on or off, and (once) the engine sink that counts runs. */
int api_metrics(kreq *r);
void api_metrics_configure(const kconfig *cfg);
/* workflows.c */
int api_workflows_list(kreq *r);
int api_workflows_get(kreq *r);
/* runs.c: resolve finds the workflow before the chain (http_req_set_workflow_def, or
 * http_req_set_unresolved); prepare checks size and media type before the body is read. */
int api_run_resolve(kreq *r);
int api_run_prepare(kreq *r);
int api_run(kreq *r);
int api_execute(kreq *r);
/* cache.c: DELETE /cache/{name} (its workflow found by api_run_resolve) */
int api_cache_purge(kreq *r);
/* admin.c */
int api_admin_reload(kreq *r);
/* direct.c: `kailashd run WORKFLOW --input JSON|@FILE [--config FILE]`: one run in-process, no HTTP;
 * prints the answer /run would give (the error shape for a failed run) on out, problems on stderr.
 * Returns the exit status: 0 completed, 1 failed (or timed out), 2 usage, config or load error. */
int api_direct_run(const char *config_path, const char *wf_name, const char *input, FILE *out);
/* runs_read.c: GET /runs/{run_id} and GET /runs */
int api_runs_get(kreq *r);
int api_runs_list(kreq *r);
/* runs_cancel.c: DELETE /runs/{id} */
int api_runs_cancel(kreq *r);
/* events.c: GET /runs/{id}/events (Server-Sent Events; kailash/events.h) */
int api_run_events(kreq *r);
/* openapi.c: GET /openapi.json (built once per registry and auth config, then copied). */
int api_openapi(kreq *r);
/* The OpenAPI 3.1 document for the workflows of reg (NULL: none), the credentials auth_methods
 * (a mask of AUTH_METHOD_*, 0: authentication off) and cfg's enable_monitoring and metrics_auth
 * (NULL: the defaults). A new reference, or NULL out of memory. For tests; thread-safe. */
struct registry;
json_t *api_openapi_document(const struct registry *reg, int auth_methods, const kconfig *cfg);
/* What reload does (main.c provides it): reloads config and workflows. Returns 0 with *result set
 * ({"reloaded":true,...}), or -1 with err when the new config is invalid (422). */
typedef int (*api_reload_fn)(json_t **result, char *err, size_t errlen);
void api_admin_set_reload(api_reload_fn fn);

#endif
