/* fuzz_answer: what HTTP-type nodes make of an upstream's answer (hostile bytes): the body read as
 * requests reads it (src/upstream/content.c: charsets, JSON, text, base64) and what RESTClientNode
 * extracts from it (src/nodes/rest_meta.c: Link headers, rate limits, pagination, links, the error
 * text). The first byte picks the response format; the input up to the first newline is the
 * Content-Type and also the Link and X-RateLimit-Limit header values; the rest is the body. Every
 * JSON made must dump and parse back (valid UTF-8), which ASan and this check hold to. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "upstream_internal.h"

#include "../../src/nodes/rest_meta.h"

/* Aborts unless v dumps to JSON that parses back equal (strings valid UTF-8, no NUL surprise). */
static void fz_valid(json_t *v)
{
    if (!v)
        return;
    char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    if (!text)
        abort();
    json_t *back = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (!back || !json_equal(back, v))
        abort();
    json_decref(back);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    http_format fmt = (http_format)(data[0] % 5);
    const char *rest = (const char *)data + 1;
    size_t n = size - 1;
    const char *nl = memchr(rest, '\n', n);
    size_t hlen = nl ? (size_t)(nl - rest) : 0;
    char *header = strndup(rest, hlen); /* stops at a NUL too, as a header value would */
    const char *body = nl ? nl + 1 : rest;
    size_t blen = nl ? n - hlen - 1 : n;
    json_t *content = NULL;
    json_error_t jerr;
    if (http_content_make(fmt, header, body, blen, &content, &jerr) >= 0)
        fz_valid(content);
    json_t *links = rest_meta_link_header(header);
    fz_valid(links);
    json_decref(links);
    json_t *headers = json_object(), *hv = json_string(header);
    if (hv) { /* a header value that is not UTF-8 never reaches a node as a JSON string */
        json_object_set(headers, "Link", hv);
        json_object_set(headers, "X-RateLimit-Limit", hv);
        json_object_set_new(headers, "RateLimit-Reset", hv);
    }
    json_t *meta = json_object();
    if (rest_meta_extract(meta, headers, content ? content : json_null()) == 0)
        fz_valid(meta);
    json_t *err = rest_meta_error(content ? content : json_null(), 404);
    fz_valid(err);
    long long i;
    (void)rest_meta_py_int(header, &i);
    json_decref(err);
    json_decref(meta);
    json_decref(headers);
    json_decref(content);
    free(header);
    return 0;
}
