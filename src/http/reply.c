/* reply: building answers (http_reply_*). Bodies are compact JSON; the server adds Content-Type, X-Request-ID and
 * Server-Timing when it queues an answer. Errors have API.md's one shape:
 * {"error": {"code", "message", "request_id", "details"}}. */
#include <stdlib.h>
#include <string.h>

#include "kreq.h"

/* A new answer replaces what was set before, headers included. The server turns it into a
 * libmicrohttpd response only when it queues it (after the after() steps have read it). */
static void reply_bytes(kreq *r, int status, char *body, size_t len)
{
    buf_free(&r->answer);
    http_stream_replaced(r); /* a streamed answer set before (stream.c) */
    r->answer = (buf){body, len, len};
    r->answer_headers.len = 0;
    r->status = status;
}

/* Most answers fit in the first block: one allocation, handed to libmicrohttpd as it is. The block
 * (512 bytes) stays under glibc's large-chunk size (1008): a larger request makes malloc consolidate its
 * fast bins every time, about 2 % of a proxied call. */
static char *reply_dump(json_t *body)
{
    buf b = {0};
    if (buf_reserve(&b, 500) != 0 || buf_append_json(&b, body) != 0 || buf_terminate(&b) != 0) {
        buf_free(&b);
        return NULL;
    }
    return b.data;
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

void http_reply_buf(kreq *r, int status, buf *body)
{
    if (!body || !body->data) {
        buf_free(body);
        http_reply_json(r, status, NULL);
        return;
    }
    reply_bytes(r, status, body->data, body->len);
    *body = (buf){0};
}

void http_reply_error(kreq *r, int status, const char *code, const char *message, json_t *details)
{
    json_t *body = json_pack("{s:{s:s,s:s,s:s,s:o}}", "error", "code", code, "message", message, "request_id",
                             r->request_id, "details", details ? details : json_object());
    http_reply_json(r, status, body);
}

void http_reply_header(kreq *r, const char *name, const char *value)
{
    if (r->status && buf_append(&r->answer_headers, name, strlen(name) + 1) == 0)
        buf_append(&r->answer_headers, value, strlen(value) + 1);
}
