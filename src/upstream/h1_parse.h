/* h1_parse: reads one HTTP/1.x answer from a byte stream (src/upstream/h1_parse.c), for the loop's
 * plain HTTP/1.1 client. Private to src/upstream.
 *
 * What it accepts, as libcurl does: a status line `HTTP/1.x NNN [reason]`, header lines ending in
 * CRLF or LF, a blank line; 1xx answers before the final one (passed on, then skipped); a body
 * framed by chunked transfer coding, Content-Length, or the connection's end. No body for HEAD,
 * 204 and 304. Everything else the upstream sends is hostile: a line over H1_MAX_LINE, a bad
 * status line, a header or trailer line that is not `token ":" value` (folded, no colon, blanks
 * before the colon, a NUL or lone CR in the value), a second Transfer-Encoding line, a bad or
 * conflicting length, a bad chunk size end the answer as an error (stricter than libcurl). */
#ifndef KAILASH_UPSTREAM_H1_PARSE_H
#define KAILASH_UPSTREAM_H1_PARSE_H

#include "kailash/upstream.h"
#include <stddef.h>
#include <stdint.h>

#include "kailash/util.h"

#define H1_MAX_LINE (100 * 1024) /* libcurl's CURL_MAX_HTTP_HEADER */

typedef struct h1_parser {
    /* set by h1_parser_init */
    int no_body;
    size_t (*on_header)(char *line, size_t n, void *ud);
    size_t (*on_body)(char *p, size_t n, void *ud);
    void *ud;
    /* state */
    int state;
    buf line;      /* a line split across reads */
    long status;   /* of the answer being read */
    int http10;    /* HTTP/1.0 answer */
    int close;     /* Connection: close */
    int keep;      /* Connection: keep-alive */
    int chunked;   /* Transfer-Encoding ends in chunked */
    int coded;     /* another Transfer-Encoding: the body runs to the connection's end */
    int te_lines;  /* Transfer-Encoding lines seen (more than one is refused) */
    int has_len;   /* Content-Length seen */
    uint64_t len;  /* its value */
    uint64_t left; /* body or chunk bytes still to come */
    size_t seen;   /* bytes of the answer fed so far */
    up_code code; /* after an error */
    char error[160];
} h1_parser;

void h1_parser_init(h1_parser *p, int no_body, size_t (*on_header)(char *, size_t, void *),
                    size_t (*on_body)(char *, size_t, void *), void *ud);
void h1_parser_free(h1_parser *p);

/* Feeds n bytes (data is writable: callbacks get pointers into it). Returns 0 when more is needed,
 * 1 when the answer is complete (*used: the bytes it took; any after belong to nobody), or -1 with
 * p->code and p->error. */
int h1_parse(h1_parser *p, char *data, size_t n, size_t *used);

/* The upstream closed the connection: 1 when that completes the answer, else -1 with code/error. */
int h1_parse_eof(h1_parser *p);

/* After a complete answer: may the connection carry another request? */
int h1_parse_reusable(const h1_parser *p);

#endif
