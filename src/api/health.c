/* health: liveness (/health) and readiness (/ready). Neither needs credentials. /ready reports the
 * dependencies from their last known state, no round trip per call: Redis (the circuit breaker's
 * state: "down" while it is open, with 503 "degraded"; "disabled" without redis_url), Postgres (not
 * configurable in this build yet: "disabled"), and the JWKS URL when one is configured ("down", with
 * the reason in "reasons", until its first fetch succeeded: tokens are refused meanwhile, so the
 * instance is degraded); and the workflow files that failed to load, without changing its status
 * for them. */
#include "kailash/api.h"
#include "kailash/auth.h"
#include "kailash/engine.h"
#include "kailash/redis.h"

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
    char why[200];
    int jwks = jwks_remote_state(why, sizeof why), redis = redis_state();
    int down = jwks == 0 || redis == 0;
    json_t *body = json_pack("{s:s,s:{s:s,s:s},s:o}", "status", down ? "degraded" : "ready", "checks", "redis",
                             redis < 0 ? "disabled" : redis ? "ok" : "down", "postgres", "disabled", "workflow_errors",
                             errors);
    if (body && jwks >= 0)
        json_object_set_new(json_object_get(body, "checks"), "jwks", json_string(jwks ? "ok" : "down"));
    if (body && jwks == 0)
        json_object_set_new(body, "reasons", json_pack("{s:s}", "jwks", why));
    http_reply_json(r, down ? 503 : 200, body);
    return HTTP_DONE;
}
