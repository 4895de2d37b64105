/* rest_meta: what RESTClientNode reads out of an answer as the SDK's RESTClientNode does
 * (kailash/nodes/api/rest.py): the metadata it extracts (_extract_metadata: rate_limit, pagination,
 * links) and the error message of an answer that is not 2xx. Private to src/nodes/.
 *
 * The answer is hostile: every parser here is bounded (REST_META_MAX_LINKS entries kept per map,
 * REST_META_MAX_TEXT bytes per Link URL or rel, REST_META_MAX_REPR bytes of a Python repr) and
 * every string it makes is valid UTF-8 (cut only at ASCII bytes of valid UTF-8 input). */
#ifndef KAILASH_NODES_REST_META_H
#define KAILASH_NODES_REST_META_H

#include <jansson.h>

#define REST_META_MAX_LINKS 64
#define REST_META_MAX_TEXT 4096
#define REST_META_MAX_REPR 4096

/* Adds to metadata (an object) "rate_limit", "pagination" and "links" when the SDK finds them in
 * headers (an answer's, names as received) and content (the parsed body, any JSON, borrowed).
 * Values from content are shared (incref'd). 0, or -1 out of memory. */
int rest_meta_extract(json_t *metadata, json_t *headers, json_t *content);

/* {rel: url} of a Link header value as the SDK's _parse_link_header splits it. New object or NULL. */
json_t *rest_meta_link_header(const char *value);

/* The SDK's error text for a status that is not 2xx: the body's error.message, error (a string) or
 * message, else "Unknown error", then " (status: N)". New string or NULL. */
json_t *rest_meta_error(json_t *content, long status);

/* Python's int(text) of a header value: 1 with *out, or 0 when Python would refuse it (or it
 * passes 64 bits). */
int rest_meta_py_int(const char *text, long long *out);

#endif
