/* Shared inside src/upstream/ only. */
#ifndef KAILASH_UPSTREAM_INTERNAL_H
#define KAILASH_UPSTREAM_INTERNAL_H

#include <stdatomic.h>

#include "kailash/upstream.h"

#define HTTP_BACKOFF_CAP_MS 5000.0
#define HTTP_MAX_HEADER_BYTES (256 * 1024) /* an answer's header lines, 1xx answers' and trailers included */

typedef struct h1_client h1_client;
typedef struct curl_client curl_client;

/* What one loop holds (loop.c): found through the loop's local key from any thread, used on the
 * loop's own. */
typedef struct up_loop {
    ioloop *io;
    h1_client *h1;
    curl_client *curl;
    atomic_size_t inflight; /* transfers started, done not yet called (both clients) */
    int stopping;           /* the loop is stopping: no new transfer */
    io_hook stop;
} up_loop;

/* The calling thread's loop's upstream state, NULL when it has none (or is stopping). */
up_loop *up_loop_current(void);

/* h1.c: a client keeping at most max_idle idle connections; free closes them (no transfer may be
 * active: abort_all first, which ends each with UP_STOPPING). */
h1_client *h1_client_new(up_loop *l, long max_idle);
void h1_client_abort_all(h1_client *c);
void h1_client_free(h1_client *c);

/* curl_multi.c: the same for the multi handle. */
curl_client *curl_client_new(up_loop *l, long max_connects);
void curl_client_abort_all(curl_client *c);
void curl_client_free(curl_client *c);

/* request.c: an HTTP token (RFC 9110: a header name). */
int http_is_token(const char *s);
/* request.c: standard base64 of n bytes into *out (caller frees). 0 or -1. */
int http_base64(const unsigned char *in, size_t n, char **out);

/* content.c: n bytes as a JSON string, invalid UTF-8 as U+FFFD. New reference or NULL. */
json_t *http_text_json(const char *p, size_t n);
/* content.c: a Content-Type value (NULL: none) says JSON: application/json or a +json type. */
int http_is_json_type(const char *ctype);
/* content.c: an answer's body (n bytes at p) as a node's content, per fmt and the answer's
 * Content-Type value (NULL: none; its charset decodes text). 0 with *content (a new reference);
 * 1 when fmt (or auto by the type) is json and the body is not JSON (jerr says why); -1 out of
 * memory. */
int http_content_make(http_format fmt, const char *ctype, const char *p, size_t n, json_t **content,
                      json_error_t *jerr);

#endif
