/* response: building answers. Bodies are compact JSON; every answer carries Content-Type and
 * X-Request-ID (the server adds Server-Timing when it queues). Errors have API.md's one shape:
 * {"error": {"code", "message", "request_id", "details"}}. */
#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>

#include "kailash/http.h"

static void reply_bytes(kreq *r, int status, char *body, size_t len)
{
    if (r->resp)
        MHD_destroy_response(r->resp);
    r->resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    r->status = status;
    MHD_add_response_header(r->resp, "Content-Type", "application/json; charset=utf-8");
    MHD_add_response_header(r->resp, "X-Request-ID", r->request_id);
}

#define REPLY_FLAGS (JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15))

/* json_dumps grows its buffer from 16 bytes and copies it at the end; most answers fit in a page on
 * the stack, dumped once and copied once. */
static char *reply_dump(json_t *body)
{
    char stack[4096];
    size_t n = json_dumpb(body, stack, sizeof stack, REPLY_FLAGS);
    if (n == 0 || n >= sizeof stack)
        return n == 0 ? NULL : json_dumps(body, REPLY_FLAGS);
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, stack, n);
        s[n] = '\0';
    }
    return s;
}

void http_reply_json(kreq *r, int status, json_t *body)
{
    char *s = body ? reply_dump(body) : NULL;
    json_decref(body);
    if (!s) {
        static const char oom[] = "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}";
        s = strdup(oom);
        status = 500;
    }
    reply_bytes(r, status, s, strlen(s));
}

void http_reply_error(kreq *r, int status, const char *code, const char *message, json_t *details)
{
    json_t *body = json_pack("{s:{s:s,s:s,s:s,s:o}}", "error", "code", code, "message", message, "request_id",
                             r->request_id, "details", details ? details : json_object());
    http_reply_json(r, status, body);
}

void http_reply_header(kreq *r, const char *name, const char *value)
{
    if (r->resp)
        MHD_add_response_header(r->resp, name, value);
}
