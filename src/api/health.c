/* health: liveness (/health) and readiness (/ready). Neither needs credentials. /ready reports the
 * dependencies from their last known state, no round trip per call: Redis (the circuit breaker's
 * state: "down" while it is open, with 503 "degraded"; "disabled" without redis_url), Postgres (not
 * configurable in this build yet: "disabled"), and the JWKS URL when one is configured ("down", with
 * the reason in "reasons", until its first fetch succeeded: tokens are refused meanwhile, so the
 * instance is degraded), the Python workers once a PythonCodeNode loaded ("down" while a worker is in a
 * crash loop, with the reason); and the workflow files that failed to load, without changing its status
 * for them. */
#include <string.h>

#include "kailash/api.h"
#include "kailash/auth.h"
#include "kailash/engine.h"
#include "kailash/python.h"
#include "kailash/redis.h"
#include "kailash/store.h"

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
    char why[200], pywhy[200];
    int jwks = jwks_remote_state(why, sizeof why), redis = redis_state();
    int py = python_pool_state(pywhy, sizeof pywhy);
    store_health sh;
    store_health_get(&sh);
    int pg = sh.check && strcmp(sh.check, "postgres") == 0 ? sh.up : -1;
    int down = jwks == 0 || redis == 0 || (sh.check && !sh.up) || py == 0;
    json_t *reasons = json_object();
    json_t *body = json_pack("{s:s,s:{s:s,s:s},s:o}", "status", down ? "degraded" : "ready", "checks", "redis",
                             redis < 0 ? "disabled" : redis ? "ok" : "down", "postgres",
                             pg < 0 ? "disabled" : pg ? "ok" : "down", "workflow_errors", errors);
    json_t *checks = json_object_get(body, "checks");
    if (sh.check && pg < 0) /* the journal */
        json_object_set_new(checks, sh.check, json_string(sh.up ? "ok" : "down"));
    if (sh.check && !sh.up)
        json_object_set_new(reasons, sh.check, json_string(sh.why));
    if (jwks >= 0)
        json_object_set_new(checks, "jwks", json_string(jwks ? "ok" : "down"));
    if (jwks == 0)
        json_object_set_new(reasons, "jwks", json_string(why));
    if (py >= 0)
        json_object_set_new(checks, "python", json_string(py ? "ok" : "down"));
    if (py == 0)
        json_object_set_new(reasons, "python", json_string(pywhy));
    if (body && json_object_size(reasons))
        json_object_set(body, "reasons", reasons);
    json_decref(reasons);
    http_reply_json(r, down ? 503 : 200, body);
    return HTTP_DONE;
}
