/* health: liveness (/health) and readiness (/ready). Neither needs credentials. /ready reports the
 * dependencies (none is configurable in this build yet, so both read "disabled") and the workflow
 * files that failed to load, without changing its status for them. */
#include "kailash/api.h"
#include "kailash/engine.h"

static double g_start_ms;

void api_health_set_start_time(double now_ms)
{
    g_start_ms = now_ms;
}

int api_health(kreq *r)
{
    json_int_t up = (json_int_t)((util_now_ms() - g_start_ms) / 1000.0);
    http_reply_json(r, 200, json_pack("{s:s,s:s,s:I}", "status", "ok", "version", KAILASH_VERSION, "uptime_s", up));
    return HTTP_DONE;
}

int api_ready(kreq *r)
{
    registry *reg = registry_acquire();
    json_t *errors = reg ? json_deep_copy(registry_errors(reg)) : json_array();
    registry_release(reg);
    http_reply_json(r, 200,
                    json_pack("{s:s,s:{s:s,s:s},s:o}", "status", "ready", "checks", "redis", "disabled", "postgres",
                              "disabled", "workflow_errors", errors));
    return HTTP_DONE;
}
