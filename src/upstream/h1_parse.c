/* h1_parse: one HTTP/1.x answer from a byte stream. See h1_parse.h.
 *
 * A state machine over lines and counted bytes. Lines that arrive whole in one read are handed on
 * in place; only a line split across reads is gathered in p->line (bounded by H1_MAX_LINE). */
#include "h1_parse.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

enum {
    S_STATUS,     /* waiting for a status line */
    S_HEADERS,    /* header lines until the blank one */
    S_LEN,        /* a Content-Length body */
    S_CHUNK_SIZE, /* a chunk-size line */
    S_CHUNK_DATA, /* chunk bytes */
    S_CHUNK_END,  /* the CRLF after a chunk */
    S_TRAILERS,   /* trailer lines until the blank one */
    S_TO_EOF,     /* a body that runs to the connection's end */
    S_DONE,
};

void h1_parser_init(h1_parser *p, int no_body, size_t (*on_header)(char *, size_t, void *),
                    size_t (*on_body)(char *, size_t, void *), void *ud)
{
    buf line = p->line;
    line.len = 0;
    memset(p, 0, sizeof *p);
    p->line = line; /* keep the buffer across answers on one connection */
    p->no_body = no_body;
    p->on_header = on_header;
    p->on_body = on_body;
    p->ud = ud;
    p->state = S_STATUS;
}

void h1_parser_free(h1_parser *p)
{
    buf_free(&p->line);
}

static int h1_fail(h1_parser *p, up_code code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->error, sizeof p->error, fmt, ap);
    va_end(ap);
    p->code = code;
    return -1;
}

/* ---- header values ---- */

/* [s, e) without surrounding blanks and the line ending. */
static void h1_trim(const char **s, const char **e)
{
    while (*s < *e && (**s == ' ' || **s == '\t'))
        (*s)++;
    while (*e > *s && ((*e)[-1] == ' ' || (*e)[-1] == '\t' || (*e)[-1] == '\r' || (*e)[-1] == '\n'))
        (*e)--;
}

/* Calls fn for each comma-separated token of [s, e), trimmed. */
static void h1_tokens(h1_parser *p, const char *s, const char *e, void (*fn)(h1_parser *, const char *, size_t))
{
    while (s < e) {
        const char *c = memchr(s, ',', (size_t)(e - s));
        const char *te = c ? c : e, *ts = s;
        h1_trim(&ts, &te);
        if (te > ts)
            fn(p, ts, (size_t)(te - ts));
        s = c ? c + 1 : e;
    }
}

static int h1_token_is(const char *t, size_t n, const char *word)
{
    return strlen(word) == n && strncasecmp(t, word, n) == 0;
}

static void h1_connection_token(h1_parser *p, const char *t, size_t n)
{
    p->close |= h1_token_is(t, n, "close");
    p->keep |= h1_token_is(t, n, "keep-alive");
}

/* Transfer-Encoding: chunked counts only as the last coding; any other leaves the body unframed. */
static void h1_coding_token(h1_parser *p, const char *t, size_t n)
{
    p->chunked = h1_token_is(t, n, "chunked");
    p->coded |= !p->chunked;
}

static int h1_content_length(h1_parser *p, const char *s, const char *e)
{
    uint64_t v = 0;
    if (s == e || e - s > 18)
        return h1_fail(p, UP_BAD_ANSWER, "invalid Content-Length in the answer");
    for (const char *q = s; q < e; q++) {
        if (!isdigit((unsigned char)*q))
            return h1_fail(p, UP_BAD_ANSWER, "invalid Content-Length in the answer");
        v = v * 10 + (uint64_t)(*q - '0');
    }
    if (p->has_len && p->len != v)
        return h1_fail(p, UP_BAD_ANSWER, "conflicting Content-Length values in the answer");
    p->has_len = 1;
    p->len = v;
    return 0;
}

static int h1_is_tchar(unsigned char c)
{
    return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* RFC 9112 section 5: `name ":" OWS value OWS`, the name a token. A folded line (obs-fold), a line
 * without a colon, blanks before the colon, any other byte that is no token's in the name, a NUL or a
 * lone CR in the value: each is refused. libcurl reads past some of them, but a lenient reading is
 * where two parsers start to disagree on an answer's framing (`Transfer-Encoding : chunked`).
 * *colon: where the name ends. */
static int h1_field_syntax(h1_parser *p, const char *line, size_t n, const char **colon)
{
    const char *end = line + n - 1; /* the LF */
    if (end > line && end[-1] == '\r')
        end--;
    if (line[0] == ' ' || line[0] == '\t')
        return h1_fail(p, UP_BAD_ANSWER, "a folded header line (obs-fold) in the answer");
    const char *c = memchr(line, ':', (size_t)(end - line));
    if (!c)
        return h1_fail(p, UP_BAD_ANSWER, "a header line without a colon in the answer");
    if (c == line)
        return h1_fail(p, UP_BAD_ANSWER, "a header line without a name in the answer");
    for (const char *q = line; q < c; q++) {
        if (*q == ' ' || *q == '\t')
            return h1_fail(p, UP_BAD_ANSWER, "whitespace in or after a header name in the answer");
        if (!h1_is_tchar((unsigned char)*q))
            return h1_fail(p, UP_BAD_ANSWER, "a header name that is not a token in the answer");
    }
    if (memchr(c, '\0', (size_t)(end - c)) || memchr(c, '\r', (size_t)(end - c)))
        return h1_fail(p, UP_BAD_ANSWER, "a NUL or a lone CR in a header value of the answer");
    *colon = c;
    return 0;
}

/* One header line (not the blank one): checked, then the framing headers are noted. */
static int h1_header(h1_parser *p, const char *line, size_t n)
{
    const char *colon;
    if (h1_field_syntax(p, line, n, &colon) != 0)
        return -1;
    const char *ns = line, *ne = colon, *vs = colon + 1, *ve = line + n;
    h1_trim(&vs, &ve);
    size_t nl = (size_t)(ne - ns);
    if (h1_token_is(ns, nl, "content-length"))
        return h1_content_length(p, vs, ve);
    if (h1_token_is(ns, nl, "transfer-encoding")) {
        /* one line only: a second one could restate the framing the first set */
        if (p->te_lines++)
            return h1_fail(p, UP_BAD_ANSWER, "more than one Transfer-Encoding line in the answer");
        h1_tokens(p, vs, ve, h1_coding_token);
    } else if (h1_token_is(ns, nl, "connection"))
        h1_tokens(p, vs, ve, h1_connection_token);
    return 0;
}

/* ---- lines ---- */

static int h1_status_line(h1_parser *p, const char *line, size_t n)
{
    if (n < 12 || memcmp(line, "HTTP/1.", 7) != 0 || (line[7] != '0' && line[7] != '1') || line[8] != ' ' ||
        !isdigit((unsigned char)line[9]) || !isdigit((unsigned char)line[10]) || !isdigit((unsigned char)line[11]) ||
        (n > 12 && line[12] != ' ' && line[12] != '\r' && line[12] != '\n'))
        return h1_fail(p, UP_BAD_ANSWER, "the upstream did not answer with an HTTP/1.x status line");
    p->status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
    if (p->status < 100)
        return h1_fail(p, UP_BAD_ANSWER, "invalid status %03ld in the answer", p->status);
    p->http10 = line[7] == '0';
    p->state = S_HEADERS;
    return 0;
}

/* The blank line after the headers: picks the body's framing. */
static int h1_headers_end(h1_parser *p)
{
    if (p->status == 101)
        return h1_fail(p, UP_BAD_ANSWER, "the upstream switched protocols unasked");
    if (p->status < 200) { /* interim: the real answer follows */
        p->close = p->keep = p->chunked = p->coded = p->has_len = p->te_lines = 0;
        p->state = S_STATUS;
        return 0;
    }
    if (p->no_body || p->status == 204 || p->status == 304)
        p->state = S_DONE;
    else if (p->chunked)
        p->state = S_CHUNK_SIZE;
    else if (p->coded || !p->has_len)
        p->state = S_TO_EOF;
    else {
        p->left = p->len;
        p->state = p->left ? S_LEN : S_DONE;
    }
    return 0;
}

static int h1_chunk_size(h1_parser *p, const char *line, size_t n)
{
    uint64_t v = 0;
    size_t i = 0;
    for (; i < n && isxdigit((unsigned char)line[i]); i++) {
        if (i >= 15)
            return h1_fail(p, UP_BAD_ANSWER, "chunk size too large in the answer");
        int c = tolower((unsigned char)line[i]);
        v = v * 16 + (uint64_t)(isdigit(c) ? c - '0' : c - 'a' + 10);
    }
    if (i == 0 || (i < n && !strchr(" \t;\r\n", line[i])))
        return h1_fail(p, UP_BAD_ANSWER, "invalid chunk size in the answer");
    p->left = v;
    p->state = v ? S_CHUNK_DATA : S_TRAILERS;
    return 0;
}

static int h1_is_blank(const char *line, size_t n)
{
    return (n == 1 && line[0] == '\n') || (n == 2 && line[0] == '\r' && line[1] == '\n');
}

static int h1_pass_header(h1_parser *p, char *line, size_t n)
{
    if (p->on_header(line, n, p->ud) != n)
        return h1_fail(p, UP_WRITE_ERROR, "the answer's headers were refused");
    return 0;
}

/* One whole line (with its LF) in the current state. */
static int h1_line(h1_parser *p, char *line, size_t n)
{
    switch (p->state) {
    case S_STATUS:
        if (h1_status_line(p, line, n) != 0)
            return -1;
        return h1_pass_header(p, line, n);
    case S_HEADERS:
        if (h1_is_blank(line, n))
            return h1_pass_header(p, line, n) != 0 ? -1 : h1_headers_end(p);
        if (h1_header(p, line, n) != 0)
            return -1;
        return h1_pass_header(p, line, n);
    case S_CHUNK_SIZE:
        return h1_chunk_size(p, line, n);
    case S_CHUNK_END:
        if (!h1_is_blank(line, n))
            return h1_fail(p, UP_BAD_ANSWER, "a chunk of the answer does not end with CRLF");
        p->state = S_CHUNK_SIZE;
        return 0;
    default: /* S_TRAILERS: checked and passed on like headers, as libcurl does (but not the blank line) */
        if (h1_is_blank(line, n)) {
            p->state = S_DONE;
            return 0;
        }
        const char *colon;
        if (h1_field_syntax(p, line, n, &colon) != 0)
            return -1;
        return h1_pass_header(p, line, n);
    }
}

/* Takes a line from data (in place when it is whole, else through p->line). Returns the bytes
 * used (a partial line is all kept), or -1 on error. */
static long h1_take_line(h1_parser *p, char *data, size_t n)
{
    char *lf = memchr(data, '\n', n);
    size_t take = lf ? (size_t)(lf - data) + 1 : n;
    if (p->line.len + take > H1_MAX_LINE)
        return h1_fail(p, UP_BAD_ANSWER, "a line of the answer is longer than %d bytes", H1_MAX_LINE);
    if (!lf || p->line.len) {
        if (buf_append(&p->line, data, take) != 0)
            return h1_fail(p, UP_NO_MEMORY, "out of memory reading the answer");
        if (!lf)
            return (long)take;
        data = p->line.data;
        n = p->line.len;
    } else
        n = take;
    int rc = h1_line(p, data, n);
    p->line.len = 0;
    return rc != 0 ? -1 : (long)take;
}

static int h1_pass_body(h1_parser *p, char *data, size_t n)
{
    if (n && p->on_body(data, n, p->ud) != n)
        return h1_fail(p, UP_WRITE_ERROR, "the answer's body was refused");
    return 0;
}

/* Counted body bytes (S_LEN, S_CHUNK_DATA) or the rest (S_TO_EOF). Returns the bytes used or -1. */
static long h1_take_body(h1_parser *p, char *data, size_t n)
{
    size_t take = n;
    if (p->state != S_TO_EOF && (uint64_t)take > p->left)
        take = (size_t)p->left;
    if (h1_pass_body(p, data, take) != 0)
        return -1;
    if (p->state != S_TO_EOF) {
        p->left -= take;
        if (p->left == 0)
            p->state = p->state == S_LEN ? S_DONE : S_CHUNK_END;
    }
    return (long)take;
}

int h1_parse(h1_parser *p, char *data, size_t n, size_t *used)
{
    size_t off = 0;
    p->seen += n;
    while (off < n && p->state != S_DONE) {
        int counted = p->state == S_LEN || p->state == S_CHUNK_DATA || p->state == S_TO_EOF;
        long k = counted ? h1_take_body(p, data + off, n - off) : h1_take_line(p, data + off, n - off);
        if (k < 0)
            return -1;
        off += (size_t)k;
    }
    *used = off;
    return p->state == S_DONE ? 1 : 0;
}

int h1_parse_eof(h1_parser *p)
{
    switch (p->state) {
    case S_TO_EOF:
        p->state = S_DONE;
        return 1;
    case S_DONE:
        return 1;
    case S_STATUS:
        if (p->seen == 0)
            return h1_fail(p, UP_GOT_NOTHING, "empty reply from the upstream");
        return h1_fail(p, UP_RECV_ERROR, "the upstream closed the connection before its answer's headers");
    case S_HEADERS:
        return h1_fail(p, UP_RECV_ERROR, "the upstream closed the connection before its answer's headers");
    case S_LEN:
        return h1_fail(p, UP_PARTIAL, "transfer closed with %llu bytes remaining to read",
                       (unsigned long long)p->left);
    default:
        return h1_fail(p, UP_PARTIAL, "transfer closed with outstanding read data remaining");
    }
}

int h1_parse_reusable(const h1_parser *p)
{
    if (p->state != S_DONE || p->close || p->coded)
        return 0;
    if (p->has_len && p->chunked)
        return 0; /* both framings: RFC 9112 section 6.3 calls it an error; chunked won, the connection goes */
    if (!p->no_body && p->status != 204 && p->status != 304 && !p->chunked && !p->has_len)
        return 0; /* the body ran to the connection's end */
    return !p->http10 || p->keep;
}
