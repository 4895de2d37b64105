/* logging: one JSON access-log line per request on stdout, written when the response is handed over:
 * time, request_id, method, path, status, duration_ms, workflow, run_id, client, principal, auth,
 * ratelimit ("allowed", "refused", null when not limited) and ratelimit_via ("redis", "local", or
 * "known": refused locally because Redis refused that key before). The
 * path is logged without its query string (queries may carry tokens); nothing from headers or bodies
 * is logged: the principal is the id the auth step found ("key:ci", "jwt:<sub>", "anonymous"; null
 * when authentication failed or did not run), never a credential.
 * The line is formatted directly (this runs once per request, so no JSON tree is built). */
#include <stdio.h>
#include <string.h>

#include "kailash/auth.h"
#include "kailash/log.h"
#include "kailash/middleware.h"

#define LIT(b, s) buf_append((b), (s), sizeof(s) - 1)

/* name is a literal such as ",\"path\":" */
static void field_str(buf *b, const char *name, size_t name_len, const char *v)
{
    buf_append(b, name, name_len);
    if (v && *v)
        buf_append_json_str(b, v);
    else
        LIT(b, "null");
}
#define FIELD(b, name, v) field_str((b), name, sizeof(name) - 1, (v))

void mw_logging_after(kreq *r)
{
    char ts[40], nums[64];
    util_rfc3339_now(ts, sizeof ts);
    buf b = {0};
    if (buf_reserve(&b, 500) != 0) /* a 512-byte block: see reply_dump in src/http/reply.c */
        return;
    LIT(&b, "{\"time\":\"");
    buf_append(&b, ts, strlen(ts));
    LIT(&b, "\",\"request_id\":");
    buf_append_json_str(&b, http_req_request_id(r));
    FIELD(&b, ",\"method\":", http_req_method(r));
    FIELD(&b, ",\"path\":", http_req_path(r));
    int status = http_req_answer_status(r);
    LIT(&b, ",\"status\":");
    buf_append(&b, nums, util_fmt_uint(nums, (unsigned)(status > 0 ? status : 0)));
    LIT(&b, ",\"duration_ms\":");
    buf_append(&b, nums, util_fmt_ms(nums, util_now_ms() - http_req_start_ms(r)));
    FIELD(&b, ",\"workflow\":", http_req_workflow_name(r));
    FIELD(&b, ",\"run_id\":", http_req_run_id(r));
    FIELD(&b, ",\"client\":", http_req_client_ip(r));
    auth_kind kind = (auth_kind)http_req_auth_kind(r);
    const auth_principal *who = http_req_principal(r);
    FIELD(&b, ",\"principal\":", kind == AUTH_FAILED ? NULL : auth_principal_id(who));
    FIELD(&b, ",\"auth\":", auth_kind_name(kind));
    const http_limit_note *lim = http_req_limit_note_get(r);
    static const char *const via[] = {"local", "redis", "known"};
    FIELD(&b, ",\"ratelimit\":", !lim->checked ? NULL : lim->refused ? "refused" : "allowed");
    FIELD(&b, ",\"ratelimit_via\":", lim->checked ? via[lim->via] : NULL);
    LIT(&b, "}\n");
    log_access_line(b.data, b.len);
    buf_free(&b);
}
