/* auth: the chain's authentication and authorization step (API.md "Authentication and
 * authorization", and the error table's order: after the route, before the rate limit).
 *
 * Each route says what it needs (http_route.auth): nothing (/health, /ready), a caller (workflows,
 * runs), or the admin role (admin routes); /metrics needs nothing, or with metrics_auth (and
 * enable_monitoring) the admin or the metrics role, and is then treated as an admin route.
 * With enable_auth off every caller is anonymous and admin
 * routes answer loopback clients only. With it on the step authenticates (auth_ctx.c), answers 401
 * with a WWW-Authenticate challenge when credentials are missing or fail, and 403 when the caller
 * lacks the admin role or the workflow's access roles. The workflow's attribute conditions need the
 * inputs, so the run handler checks them after the body is parsed. The principal stays with the
 * request for the access log, templates and the run. */
#include <stdio.h>

#include "kailash/auth.h"
#include "kailash/middleware.h"
#include "kailash/workflow.h"

#define CHALLENGE_REALM "realm=\"kailashd\""

static void principal_free(void *p)
{
    auth_principal_release(p);
}

static int unauthorized(kreq *r, const auth_result *res, const char *why)
{
    char challenge[256];
    if (res && res->bad_token)
        snprintf(challenge, sizeof challenge,
                 "Bearer " CHALLENGE_REALM ", error=\"invalid_token\", error_description=\"%s\", ApiKey " CHALLENGE_REALM
                 ", header=\"X-API-Key\"",
                 why);
    else
        snprintf(challenge, sizeof challenge, "Bearer " CHALLENGE_REALM ", ApiKey " CHALLENGE_REALM ", header=\"X-API-Key\"");
    http_reply_error(r, 401, "unauthorized", why, NULL);
    http_reply_header(r, "WWW-Authenticate", challenge);
    return MW_ANSWERED;
}

static int forbidden(kreq *r, const char *why)
{
    http_reply_error(r, 403, "forbidden", why, NULL);
    return MW_ANSWERED;
}

/* With authentication off: everyone is anonymous; admin routes are for this machine only. A request
 * that came through a gateway (ours included: an HTTP node pointed at this one) carries
 * X-Kailash-Hops, and its socket address says where the last hop was, not who asked. */
static int open_mode(kreq *r, int need)
{
    if ((need == HTTP_AUTH_ADMIN || need == HTTP_AUTH_METRICS) &&
        (!http_req_client_loopback(r) || http_req_header(r, "X-Kailash-Hops")))
        return forbidden(r, "admin routes answer only loopback clients while authentication is off");
    return MW_NEXT;
}

static int authorize(kreq *r, int need, const auth_principal *who)
{
    char msg[200];
    if ((need == HTTP_AUTH_ADMIN || need == HTTP_AUTH_METRICS) && !who)
        return unauthorized(r, NULL, "credentials are missing: send X-API-Key or Authorization: Bearer");
    if (need == HTTP_AUTH_METRICS)
        return auth_principal_has_role(who, "admin") || auth_principal_has_role(who, "metrics")
                   ? MW_NEXT
                   : forbidden(r, "this route needs the admin or the metrics role");
    if (need == HTTP_AUTH_ADMIN && !auth_principal_has_role(who, "admin"))
        return forbidden(r, "this route needs the admin role");
    const workflow *wf = http_req_workflow_def(r);
    if (wf && auth_access_roles(wf, who, msg, sizeof msg) != 0)
        return who ? forbidden(r, msg)
                   : unauthorized(r, NULL, "credentials are missing: send X-API-Key or Authorization: Bearer");
    if (!wf && !who)
        return unauthorized(r, NULL, "credentials are missing: send X-API-Key or Authorization: Bearer");
    return MW_NEXT;
}

int mw_auth_before(kreq *r)
{
    int need = http_req_route(r)->auth;
    const kconfig *cfg = http_server_config();
    if (need == HTTP_AUTH_METRICS && !(cfg->metrics_auth && cfg->enable_monitoring))
        need = HTTP_AUTH_NONE; /* off: the handler's 404, not a 401 */
    const auth_ctx *c = auth_ctx_current();
    if (need == HTTP_AUTH_NONE)
        return MW_NEXT;
    if (!auth_ctx_enabled(c))
        return open_mode(r, need);
    auth_result res;
    auth_authenticate(c, http_req_header(r, "X-API-Key"), http_req_header(r, "Authorization"), &res);
    http_req_set_principal(r, res.who, (int)res.kind, principal_free);
    if (res.kind == AUTH_FAILED)
        return unauthorized(r, &res, res.why);
    return authorize(r, need, res.who);
}
