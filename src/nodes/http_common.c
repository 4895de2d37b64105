/* http_common: config checks, request building and the retrying exchange shared by the HTTP-type
 * nodes (see http_common.h for the surface).
 *
 * An attempt goes one of two ways (http_attempt): an http:// URL whose host is a numeric address or
 * a name the resolver holds through the I/O loop's own HTTP/1.1 client (the plain path, http_wire.c:
 * its bytes are built here and sent as they are), anything else through libcurl. Both report into the same callbacks
 * (http_on_header, http_on_body) and end in http_on_end with a CURLcode, so every decision below is one code path. An
 * attempt through libcurl takes a new easy handle and cleans it up as soon as it ends, also before a retry or failover:
 * a reused handle is what libcurl 7.88.1's header-unfolding double free needs (http_easy.c). Connections are reused
 * through the multi handle all the same. Everything per attempt (response bytes, headers, the CURLU of the load
 * balancer) is reset in http_attempt.
 *
 * Decisions an answer goes through, on the loop thread (http_on_done):
 *   curl OK                      -> an answer; 502/503/504 are retried while retries and time
 *                                   remain, any other status is final (404/500: success false);
 *   oversize, out of memory,
 *   loop shutdown, run deadline  -> fail at once (retrying cannot help);
 *   anything else (refused,
 *   reset, TLS, DNS, garbage,
 *   the node's own timeout)      -> transport error: fail over (load balancer) or retry with
 *                                   backoff, else fail with upstream_error.
 * Backoff is retry_backoff x 2^n, capped at HTTP_BACKOFF_CAP_MS, and a retry that would start
 * after the run's deadline is not scheduled: the last result stands.
 *
 * Response bodies and headers count against max_response_bytes together, checked in the write
 * callbacks, so a hostile upstream can make us hold at most that many bytes per transfer; header
 * lines alone stop at HTTP_MAX_HEADER_BYTES (each one stored costs a JSON string and a key), and the
 * plain path stops reading at twice max_response_bytes of answer, chunk framing included. */
#include "http_common.h"

#include <ctype.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kailash/ioloop.h"
#include "kailash/template.h"
#include "kailash/util.h"

#define HTTP_DEFAULT_TIMEOUT_MS 30000.0
#define HTTP_DEFAULT_BACKOFF_MS 100.0
#define HTTP_BACKOFF_CAP_MS 5000.0
#define HTTP_MAX_SECONDS 3600.0
#define HTTP_MAX_RETRIES 10
#define HTTP_DEFAULT_MAX_RESPONSE (10u * 1024u * 1024u)
#define HTTP_DEFAULT_CONNECT_MS 2000L
#define HTTP_MAX_HEADER_BYTES (256 * 1024) /* an answer's header lines, 1xx answers' and trailers included */

const char *const http_methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", NULL};
const char *const http_formats[] = {"auto", "json", "text", "binary", NULL};
const char *const http_auth_types[] = {"bearer", "basic", "api_key", "oauth2", NULL};

/* ======================================================================== 1. config checks */

int http_value_deferred(json_t *v)
{
    if (json_is_string(v))
        return tmpl_value_has_expr(v);
    return json_is_object(v) && json_object_size(v) == 1 && json_object_get(v, "$env") != NULL;
}

static int http_choice_index(const char *const *choices, const char *s)
{
    for (int i = 0; choices[i]; i++)
        if (strcasecmp(choices[i], s) == 0)
            return i;
    return -1;
}

static int http_check_enum(const http_key *k, json_t *v, const char *pfx, char *err, size_t errlen)
{
    if (json_is_string(v) && http_choice_index(k->choices, json_string_value(v)) >= 0)
        return 0;
    buf b = {0};
    for (int i = 0; k->choices[i]; i++)
        buf_appendf(&b, "%s%s", i ? " " : "", k->choices[i]);
    util_err(err, errlen, "%s%s: expected one of %s", pfx, k->name, b.data ? b.data : "");
    buf_free(&b);
    return -1;
}

static int http_is_scalar(json_t *v)
{
    return json_is_string(v) || json_is_number(v) || json_is_boolean(v);
}

/* A member of a headers/params object; at load, a template member is checked when it arrives. */
static int http_field_ok(json_t *f, int query, int at_load)
{
    if (http_is_scalar(f) || (at_load && http_value_deferred(f)) || (query && json_is_null(f)))
        return 1;
    if (!query || !json_is_array(f))
        return 0;
    size_t i;
    json_t *e;
    json_array_foreach(f, i, e) if (!http_is_scalar(e) && !(at_load && http_value_deferred(e))) return 0;
    return 1;
}

static int http_check_fields(const http_key *k, json_t *v, int at_load, const char *pfx, char *err, size_t errlen)
{
    if (!json_is_object(v))
        return util_err(err, errlen, "%s%s: expected an object", pfx, k->name);
    const char *name;
    json_t *f;
    json_object_foreach(v, name, f)
    {
        if (!http_field_ok(f, k->kind == HTTP_K_QUERY, at_load))
            return util_err(err, errlen, "%s%s.%s: expected a string, number or boolean", pfx, k->name, name);
    }
    return 0;
}

static int http_check_seconds(const http_key *k, json_t *v, int allow_zero, const char *pfx, char *err, size_t errlen)
{
    double s = json_number_value(v);
    if (json_is_number(v) && (allow_zero ? s >= 0 : s > 0) && s <= HTTP_MAX_SECONDS)
        return 0;
    return util_err(err, errlen, "%s%s: expected a number of seconds %s 0 and at most %.0f", pfx, k->name,
                    allow_zero ? ">=" : ">", HTTP_MAX_SECONDS);
}

static int http_check_value(const http_key *k, json_t *v, int at_load, const char *pfx, char *err, size_t errlen)
{
    switch (k->kind) {
    case HTTP_K_STRING:
        return json_is_string(v) ? 0 : util_err(err, errlen, "%s%s: expected a string", pfx, k->name);
    case HTTP_K_ENUM:
        return http_check_enum(k, v, pfx, err, errlen);
    case HTTP_K_FIELDS:
    case HTTP_K_QUERY:
        return http_check_fields(k, v, at_load, pfx, err, errlen);
    case HTTP_K_ANY:
        return 0;
    case HTTP_K_BODY:
        return json_is_string(v) || json_is_object(v)
                   ? 0
                   : util_err(err, errlen, "%s%s: expected a string or an object", pfx, k->name);
    case HTTP_K_SECONDS:
        return http_check_seconds(k, v, 0, pfx, err, errlen);
    case HTTP_K_SECONDS0:
        return http_check_seconds(k, v, 1, pfx, err, errlen);
    case HTTP_K_RETRIES:
        if (json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) <= HTTP_MAX_RETRIES)
            return 0;
        return util_err(err, errlen, "%s%s: expected an integer from 0 to %d", pfx, k->name, HTTP_MAX_RETRIES);
    case HTTP_K_BOOL:
        return json_is_boolean(v) ? 0 : util_err(err, errlen, "%s%s: expected true or false", pfx, k->name);
    case HTTP_K_URLS:
        if (json_is_array(v) && json_array_size(v) > 0)
            return 0;
        return util_err(err, errlen, "%s%s: expected a non-empty array of URLs", pfx, k->name);
    }
    return util_err(err, errlen, "%s%s: unknown kind", pfx, k->name);
}

int http_keys_check(const http_key *keys, json_t *obj, int at_load, char *err, size_t errlen)
{
    const char *pfx = at_load ? "config." : "";
    for (const http_key *k = keys; k->name; k++) {
        json_t *v = json_object_get(obj, k->name);
        if (!v || json_is_null(v)) /* null is "not set", as the SDK writes unset parameters */
            continue;
        if (at_load && http_value_deferred(v)) {
            if (k->pinned)
                return util_err(err, errlen, "%s%s: must be a literal value, not a template", pfx, k->name);
            continue;
        }
        if (http_check_value(k, v, at_load, pfx, err, errlen) != 0)
            return -1;
    }
    return 0;
}

/* ======================================================================== compiled base */

int http_base_init(http_base *base, const http_key *keys, const node_env *env, json_t *config, char *err, size_t errlen)
{
    base->lim.max_response_bytes = env->max_response_bytes ? env->max_response_bytes : HTTP_DEFAULT_MAX_RESPONSE;
    base->lim.connect_timeout_ms = env->connect_timeout_ms > 0 ? env->connect_timeout_ms : HTTP_DEFAULT_CONNECT_MS;
    json_t *verify = json_object_get(config, "verify_ssl");
    base->lim.verify_tls = env->verify_tls && !json_is_false(verify);
    base->pinned = json_object();
    if (!base->pinned)
        return util_err(err, errlen, "out of memory");
    for (const http_key *k = keys; k->name; k++) {
        json_t *v = json_object_get(config, k->name);
        if (k->pinned && v && !json_is_null(v) && json_object_set_new(base->pinned, k->name, json_deep_copy(v)) != 0) {
            http_base_clear(base);
            return util_err(err, errlen, "out of memory");
        }
    }
    base->keys = keys;
    return 0;
}

void http_base_clear(http_base *base)
{
    json_decref(base->pinned);
    base->pinned = NULL;
}

int http_origin_node_compile(const http_key *keys, const char *url_key, const char *missing, const node_env *env,
                             json_t *config, void **compiled, char *err, size_t errlen)
{
    if (http_keys_check(keys, config, 1, err, errlen) != 0)
        return -1;
    json_t *url = json_object_get(config, url_key);
    if (!json_is_string(url))
        return util_err(err, errlen, "%s", missing);
    http_origin_node *n = calloc(1, sizeof *n);
    if (!n)
        return util_err(err, errlen, "out of memory");
    if (http_origin_from_config(url_key, json_string_value(url), &n->origin, err, errlen) != 0 ||
        http_base_init(&n->base, keys, env, config, err, errlen) != 0) {
        free(n);
        return -1;
    }
    *compiled = n;
    return 0;
}

void http_origin_node_free(void *compiled)
{
    http_origin_node *n = compiled;
    if (!n)
        return;
    http_base_clear(&n->base);
    http_url_memo_free(n->memo);
    free(n);
}

int http_base_check_inputs(const http_base *base, json_t *inputs, node_error *err)
{
    char msg[sizeof err->message];
    if (http_keys_check(base->keys, inputs, 0, msg, sizeof msg) != 0)
        return node_fail(err, "bad_request", "%s", msg);
    for (const http_key *k = base->keys; k->name; k++) {
        if (!k->pinned)
            continue;
        json_t *want = json_object_get(base->pinned, k->name);
        json_t *got = json_object_get(inputs, k->name);
        if (got && json_is_null(got))
            got = NULL;
        if ((want || got) && !(want && got && json_equal(want, got)))
            return node_fail(err, "bad_request", "%s: may not change at run time", k->name);
    }
    return 0;
}

/* ======================================================================== origins and URLs */

int http_url_origin(CURLU *u, http_origin *o)
{
    char *scheme = NULL, *host = NULL, *port = NULL;
    int rc = -1;
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK)
        goto out;
    if (strlen(scheme) >= sizeof o->scheme || strlen(host) >= sizeof o->host || !host[0])
        goto out;
    for (size_t i = 0; scheme[i]; i++)
        o->scheme[i] = (char)tolower((unsigned char)scheme[i]);
    o->scheme[strlen(scheme)] = '\0';
    for (size_t i = 0; host[i]; i++)
        o->host[i] = (char)tolower((unsigned char)host[i]);
    o->host[strlen(host)] = '\0';
    o->port = strtol(port, NULL, 10);
    rc = 0;
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    return rc;
}

static int http_origin_equal(const http_origin *a, const http_origin *b)
{
    return strcmp(a->scheme, b->scheme) == 0 && strcmp(a->host, b->host) == 0 && a->port == b->port;
}

static int http_scheme_ok(const http_origin *o)
{
    return strcmp(o->scheme, "http") == 0 || strcmp(o->scheme, "https") == 0;
}

/* Parses text into a new CURLU and its origin. Any scheme is accepted here so callers can say
 * "scheme must be http or https" rather than "not a URL". */
static CURLU *http_parse_any(const char *text, http_origin *o)
{
    CURLU *u = curl_url();
    if (!u)
        return NULL;
    if (curl_url_set(u, CURLUPART_URL, text, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK || http_url_origin(u, o) != 0) {
        curl_url_cleanup(u);
        return NULL;
    }
    return u;
}

/* The literal text a template URL keeps: through scheme://authority, which must end (with '/',
 * '?' or '#') before the first `{{`. Returns a new string with a '/' closing the authority. */
static char *http_template_origin_text(const char *url)
{
    const char *tpl = strstr(url, "{{");
    const char *sep = strstr(url, "://");
    if (!sep || sep > tpl)
        return NULL;
    const char *auth = sep + 3;
    size_t alen = strcspn(auth, "/?#");
    if (alen == 0 || auth + alen >= tpl)
        return NULL;
    size_t n = (size_t)(auth + alen - url);
    char *text = malloc(n + 2);
    if (!text)
        return NULL;
    memcpy(text, url, n);
    memcpy(text + n, "/", 2);
    return text;
}

int http_origin_from_config(const char *key, const char *url, http_origin *o, char *err, size_t errlen)
{
    char *text = NULL;
    if (strstr(url, "{{")) {
        text = http_template_origin_text(url);
        if (!text)
            return util_err(err, errlen, "config.%s: a template may only change the path and query", key);
    }
    CURLU *u = http_parse_any(text ? text : url, o);
    free(text);
    if (!u)
        return util_err(err, errlen, "config.%s: not a valid URL with a host", key);
    curl_url_cleanup(u);
    if (!http_scheme_ok(o))
        return util_err(err, errlen, "config.%s: scheme must be http or https", key);
    return 0;
}

int http_url_parse(const char *key, const char *url, const http_origin *want, CURLU **out, node_error *err)
{
    http_origin o;
    CURLU *u = http_parse_any(url, &o);
    if (!u)
        return node_fail(err, "bad_request", "%s: not a valid URL with a host", key);
    if (!http_scheme_ok(&o)) {
        curl_url_cleanup(u);
        return node_fail(err, "bad_request", "%s: scheme must be http or https", key);
    }
    if (want && !http_origin_equal(&o, want)) {
        curl_url_cleanup(u);
        return node_fail(err, "bad_request", "%s: scheme, host and port may not change", key);
    }
    *out = u;
    return 0;
}

char *http_scalar_text(json_t *v)
{
    if (json_is_string(v))
        return strdup(json_string_value(v));
    if (json_is_boolean(v))
        return strdup(json_is_true(v) ? "true" : "false");
    if (json_is_number(v))
        return json_dumps(v, JSON_ENCODE_ANY | JSON_REAL_PRECISION(15));
    return NULL;
}

/* "name=value", both percent-encoded (curl_easy_escape keeps only ALPHA DIGIT - . _ ~). */
static int http_form_pair(buf *b, const char *name, json_t *v)
{
    char *text = http_scalar_text(v);
    char *en = curl_easy_escape(NULL, name, 0);
    char *ev = text ? curl_easy_escape(NULL, text, (int)strlen(text)) : NULL;
    int rc = (en && ev) ? buf_appendf(b, "%s%s=%s", b->len ? "&" : "", en, ev) : -1;
    curl_free(en);
    curl_free(ev);
    free(text);
    return rc;
}

static int http_query_field(buf *q, const char *key, const char *name, json_t *v, node_error *err)
{
    if (!http_is_scalar(v))
        return node_fail(err, "bad_request", "%s.%s: expected a string, number or boolean", key, name);
    return http_form_pair(q, name, v) == 0 ? 0 : node_fail(err, "internal", "out of memory building the URL");
}

/* Splices query (already encoded) into u's URL text before any fragment. curl_url_set on
 * CURLUPART_QUERY would lower-case every %XX of the whole query (curl 7.88); the full URL keeps it. */
static int http_url_splice_query(CURLU *u, const buf *query)
{
    char *full = NULL;
    if (curl_url_get(u, CURLUPART_URL, &full, 0) != CURLUE_OK)
        return -1;
    size_t head = strcspn(full, "#");
    buf b = {0};
    int rc = buf_append(&b, full, head);
    if (rc == 0)
        rc = buf_appendf(&b, "%c%s%s", memchr(full, '?', head) ? '&' : '?', query->data, full + head);
    if (rc == 0 && curl_url_set(u, CURLUPART_URL, b.data, 0) != CURLUE_OK)
        rc = -1;
    buf_free(&b);
    curl_free(full);
    return rc;
}

int http_url_add_query(CURLU *u, const char *key, json_t *params, node_error *err)
{
    if (!params || json_is_null(params))
        return 0;
    if (!json_is_object(params))
        return node_fail(err, "bad_request", "%s: expected an object", key);
    buf q = {0};
    const char *name;
    json_t *v;
    int rc = 0;
    json_object_foreach(params, name, v)
    {
        size_t i;
        json_t *e;
        if (json_is_array(v))
            json_array_foreach(v, i, e) rc = rc ? rc : http_query_field(&q, key, name, e, err);
        else if (!json_is_null(v))
            rc = rc ? rc : http_query_field(&q, key, name, v, err);
    }
    if (rc == 0 && q.len && http_url_splice_query(u, &q) != 0)
        rc = node_fail(err, "internal", "%s: cannot add to the URL", key);
    buf_free(&q);
    return rc;
}

/* "scheme://host:port" of r's URL, for messages (never the path or query: they may carry keys). */
static void http_url_origin_text(const http_request *r, char *out, size_t outlen)
{
    http_origin o;
    if (!r->url && r->memo)
        snprintf(out, outlen, "%s://%s:%ld", r->memo->origin.scheme, r->memo->origin.host, r->memo->origin.port);
    else if (r->url && http_url_origin(r->url, &o) == 0)
        snprintf(out, outlen, "%s://%s:%ld", o.scheme, o.host, o.port);
    else
        snprintf(out, outlen, "(no url)");
}

char *http_url_public(CURLU *u)
{
    char *s = NULL, *copy = NULL, *user = NULL;
    if (!u)
        return NULL;
    if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_NO_USER) { /* the usual case: no copy needed */
        if (curl_url_get(u, CURLUPART_URL, &s, 0) == CURLUE_OK)
            copy = strdup(s);
        curl_free(s);
        return copy;
    }
    curl_free(user);
    CURLU *c = curl_url_dup(u);
    if (!c)
        return NULL;
    curl_url_set(c, CURLUPART_USER, NULL, 0);
    curl_url_set(c, CURLUPART_PASSWORD, NULL, 0);
    if (curl_url_get(c, CURLUPART_URL, &s, 0) == CURLUE_OK)
        copy = strdup(s);
    curl_free(s);
    curl_url_cleanup(c);
    return copy;
}

/* ======================================================================== 2. one request */

void http_request_clear(http_request *r)
{
    curl_url_cleanup(r->url);
    curl_slist_free_all(r->headers);
    free(r->body);
    memset(r, 0, sizeof *r);
}

int http_request_options(http_request *r, json_t *inputs, http_format fmt, node_error *err)
{
    json_t *v = json_object_get(inputs, "method");
    const char *m = json_is_string(v) ? json_string_value(v) : "GET";
    int mi = http_choice_index(http_methods, m);
    if (mi < 0)
        return node_fail(err, "bad_request", "method: unknown method");
    util_copy(r->method, sizeof r->method, http_methods[mi]);
    v = json_object_get(inputs, "timeout");
    r->timeout_ms = json_is_number(v) ? json_number_value(v) * 1000.0 : HTTP_DEFAULT_TIMEOUT_MS;
    v = json_object_get(inputs, "retry_count");
    r->retry_count = json_is_integer(v) ? (int)json_integer_value(v) : 0;
    v = json_object_get(inputs, "retry_backoff");
    r->backoff_ms = json_is_number(v) ? json_number_value(v) * 1000.0 : HTTP_DEFAULT_BACKOFF_MS;
    v = json_object_get(inputs, "response_format");
    r->format = json_is_string(v) ? (http_format)http_choice_index(http_formats, json_string_value(v)) : fmt;
    return 0;
}

int http_request_body_json(http_request *r, json_t *v, node_error *err)
{
    if (!v || json_is_null(v))
        return 0;
    r->body = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!r->body)
        return node_fail(err, "internal", "out of memory encoding the body");
    r->body_len = strlen(r->body);
    r->body_type = "application/json";
    return 0;
}

static int http_body_form(http_request *r, json_t *obj, node_error *err)
{
    buf b = {0};
    const char *name;
    json_t *v;
    json_object_foreach(obj, name, v)
    {
        if (json_is_null(v))
            continue;
        if (!http_is_scalar(v) || http_form_pair(&b, name, v) != 0) {
            buf_free(&b);
            return node_fail(err, "bad_request", "data.%s: expected a string, number or boolean", name);
        }
    }
    if (buf_terminate(&b) != 0) {
        buf_free(&b);
        return node_fail(err, "internal", "out of memory encoding the body");
    }
    r->body = b.data;
    r->body_len = b.len;
    r->body_type = "application/x-www-form-urlencoded";
    return 0;
}

int http_request_body_data(http_request *r, json_t *v, node_error *err)
{
    if (!v || json_is_null(v))
        return 0;
    if (json_is_object(v))
        return http_body_form(r, v, err);
    if (!json_is_string(v))
        return node_fail(err, "bad_request", "data: expected a string or an object");
    size_t n = json_string_length(v);
    r->body = malloc(n + 1);
    if (!r->body)
        return node_fail(err, "internal", "out of memory encoding the body");
    memcpy(r->body, json_string_value(v), n + 1);
    r->body_len = n;
    return 0;
}

/* ---- headers ---- */

static int http_is_token(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("!#$%&'*+-.^_`|~", *s))
            return 0;
    return 1;
}

/* A header value may not break out of its line. */
static int http_value_safe(const char *s, size_t len)
{
    return strlen(s) == len && !strpbrk(s, "\r\n");
}

static int http_base64(const unsigned char *in, size_t n, char **out)
{
    *out = malloc(4 * ((n + 2) / 3) + 1);
    if (!*out)
        return -1;
    EVP_EncodeBlock((unsigned char *)*out, in, (int)n);
    return 0;
}

static const char *http_str(json_t *inputs, const char *key)
{
    json_t *v = json_object_get(inputs, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Basic credentials: auth_username + auth_password (the SDK's), else auth_token "user:password". */
static int http_auth_basic(json_t *inputs, buf *line, node_error *err)
{
    const char *user = http_str(inputs, "auth_username"), *token = http_str(inputs, "auth_token");
    buf cred = {0};
    int rc = -1;
    const char *password = http_str(inputs, "auth_password");
    if (user)
        rc = buf_appendf(&cred, "%s:%s", user, password ? password : "");
    else if (token && strchr(token, ':'))
        rc = buf_appendf(&cred, "%s", token);
    else
        return node_fail(err, "bad_request", "auth_token: basic auth needs \"user:password\" (or auth_username)");
    char *b64 = NULL;
    if (rc == 0)
        rc = http_base64((const unsigned char *)cred.data, cred.len, &b64);
    if (rc == 0)
        rc = buf_appendf(line, "Authorization: Basic %s", b64);
    free(b64);
    buf_free(&cred);
    return rc == 0 ? 0 : node_fail(err, "internal", "out of memory building the auth header");
}

/* The auth header line into line (empty when no auth_type), its name into *name. */
static int http_auth_header(json_t *inputs, buf *line, const char **name, node_error *err)
{
    const char *type = http_str(inputs, "auth_type");
    *name = NULL;
    if (!type)
        return 0;
    const char *token = http_str(inputs, "auth_token");
    const char *fields[] = {"auth_token", "auth_username", "auth_password"};
    for (size_t i = 0; i < 3; i++) {
        json_t *f = json_object_get(inputs, fields[i]);
        if (json_is_string(f) && !http_value_safe(json_string_value(f), json_string_length(f)))
            return node_fail(err, "bad_request", "%s: holds a line break or NUL", fields[i]);
    }
    if (strcasecmp(type, "basic") == 0) {
        *name = "Authorization";
        return http_auth_basic(inputs, line, err);
    }
    if (!token || !*token)
        return node_fail(err, "bad_request", "auth_token: required for auth_type %s", type);
    if (strcasecmp(type, "api_key") == 0) {
        const char *h = http_str(inputs, "api_key_header") ? http_str(inputs, "api_key_header") : "X-API-Key";
        if (!http_is_token(h))
            return node_fail(err, "bad_request", "api_key_header: not a valid header name");
        *name = h;
        return buf_appendf(line, "%s: %s", h, token) == 0 ? 0 : node_fail(err, "internal", "out of memory");
    }
    *name = "Authorization"; /* bearer and oauth2 */
    return buf_appendf(line, "Authorization: Bearer %s", token) == 0 ? 0 : node_fail(err, "internal", "out of memory");
}

static int http_add_line(http_request *r, const char *line)
{
    struct curl_slist *l = curl_slist_append(r->headers, line);
    if (!l)
        return -1;
    r->headers = l;
    return 0;
}

/* One header from inputs.headers. skip_name: the auth header, which wins over a user one. */
static int http_user_header(http_request *r, const char *name, json_t *v, const char *skip_name, node_error *err)
{
    if (!http_is_token(name))
        return node_fail(err, "bad_request", "headers: '%.64s' is not a valid header name", name);
    if (strcasecmp(name, "content-length") == 0 || strcasecmp(name, "transfer-encoding") == 0 ||
        strcasecmp(name, HTTP_HOPS_HEADER) == 0)
        return node_fail(err, "bad_request", "headers.%s: set by the node, not configurable", name);
    if (skip_name && strcasecmp(name, skip_name) == 0)
        return 0;
    char *text = http_scalar_text(v);
    if (!text)
        return node_fail(err, "bad_request", "headers.%s: expected a string, number or boolean", name);
    int safe = http_value_safe(text, json_is_string(v) ? json_string_length(v) : strlen(text));
    buf line = {0};
    /* "Name;" is curl's way to send a header with an empty value ("Name:" would remove it). */
    int rc = safe ? (*text ? buf_appendf(&line, "%s: %s", name, text) : buf_appendf(&line, "%s;", name)) : 0;
    free(text);
    if (!safe)
        return node_fail(err, "bad_request", "headers.%s: value holds a line break or NUL", name);
    if (rc == 0)
        rc = http_add_line(r, line.data);
    buf_free(&line);
    return rc == 0 ? 0 : node_fail(err, "internal", "out of memory building headers");
}

int http_request_headers(http_request *r, json_t *inputs, const char *default_accept, node_error *err)
{
    buf auth = {0};
    const char *auth_name;
    if (http_auth_header(inputs, &auth, &auth_name, err) != 0) {
        buf_free(&auth);
        return -1;
    }
    json_t *h = json_object_get(inputs, "headers");
    int has_ct = 0, has_accept = 0, rc = 0;
    const char *name;
    json_t *v;
    if (json_is_object(h)) {
        json_object_foreach(h, name, v)
        {
            if ((rc = http_user_header(r, name, v, auth_name, err)) != 0)
                break;
            has_ct |= strcasecmp(name, "content-type") == 0;
            has_accept |= strcasecmp(name, "accept") == 0;
        }
    }
    if (rc == 0 && auth.len && http_add_line(r, auth.data) != 0)
        rc = node_fail(err, "internal", "out of memory building headers");
    buf_free(&auth);
    if (rc != 0)
        return -1;
    char line[128]; /* body_type and default_accept are short static strings */
    if (r->body && r->body_type && !has_ct) {
        snprintf(line, sizeof line, "Content-Type: %s", r->body_type);
        rc |= http_add_line(r, line);
    }
    if (default_accept && !has_accept) {
        snprintf(line, sizeof line, "Accept: %s", default_accept);
        rc |= http_add_line(r, line);
    }
    rc |= http_add_line(r, "Expect:"); /* no 100-continue round trip for large bodies */
    return rc == 0 ? 0 : node_fail(err, "internal", "out of memory building headers");
}

int http_request_add_hops(http_request *r, int hops, node_error *err)
{
    char line[64];
    snprintf(line, sizeof line, HTTP_HOPS_HEADER ": %d", hops + 1);
    return http_add_line(r, line) == 0 ? 0 : node_fail(err, "internal", "out of memory building headers");
}

int http_request_fill(http_request *r, json_t *inputs, node_error *err)
{
    if (http_request_options(r, inputs, HTTP_FMT_AUTO, err) != 0)
        return -1;
    json_t *json_data = json_object_get(inputs, "json_data");
    int rc = json_data && !json_is_null(json_data) ? http_request_body_json(r, json_data, err)
                                                   : http_request_body_data(r, json_object_get(inputs, "data"), err);
    if (rc != 0)
        return -1;
    return http_request_headers(r, inputs, NULL, err);
}

/* ======================================================================== 3. the exchange */

struct http_exchange {
    http_request req;
    http_limits lim;
    node_call *call;
    const http_hooks *hooks;
    void *ud;   /* owned, freed with hooks->free_ud */
    CURL *easy; /* the libcurl attempt in flight; NULL otherwise */
    char errbuf[CURL_ERROR_SIZE];
    buf wire; /* the plain path's request bytes */
    /* per attempt */
    long status;      /* of the answer */
    long line_status; /* of the last status line the header callback saw (1xx included) */
    double total_ms; /* the attempt's time */
    int connected;   /* it had a connection */
    buf body;
    json_t *rheaders; /* owned */
    size_t rx_bytes, header_bytes;
    int oversize, oom, header_oversize;
    int deadline_limited;
    /* across attempts */
    int retries_done;
};

typedef enum http_outcome { HTTP_ANSWER, HTTP_TRANSPORT, HTTP_FATAL } http_outcome;

http_exchange *http_exchange_new(node_call *call, const http_limits *lim, const http_hooks *hooks, void *ud)
{
    http_exchange *ex = calloc(1, sizeof *ex);
    if (ex)
        ex->rheaders = json_object();
    if (!ex || !ex->rheaders) {
        free(ex);
        if (hooks->free_ud)
            hooks->free_ud(ud);
        return NULL;
    }
    ex->call = call;
    ex->lim = *lim;
    ex->hooks = hooks;
    ex->ud = ud;
    return ex;
}

http_request *http_exchange_request(http_exchange *ex)
{
    return &ex->req;
}
void *http_exchange_ud(http_exchange *ex)
{
    return ex->ud;
}

void http_exchange_free(http_exchange *ex)
{
    if (!ex)
        return;
    http_easy_put(ex->easy);
    http_request_clear(&ex->req);
    buf_free(&ex->wire);
    buf_free(&ex->body);
    json_decref(ex->rheaders);
    if (ex->hooks->free_ud)
        ex->hooks->free_ud(ex->ud);
    free(ex);
}

/* Frees ex, then completes the call: the call is the caller's again the moment done runs. */
static void http_finish(http_exchange *ex, json_t *outputs, const node_error *err)
{
    node_call *call = ex->call;
    node_error copy;
    if (err)
        copy = *err;
    http_exchange_free(ex);
    call->done(call, outputs, err ? &copy : NULL);
}

/* ---- write callbacks (loop thread) ---- */

static int http_count(http_exchange *ex, size_t n)
{
    if (n > ex->lim.max_response_bytes - ex->rx_bytes) {
        ex->oversize = 1;
        return -1;
    }
    ex->rx_bytes += n;
    return 0;
}

static size_t http_on_body(char *p, size_t size, size_t nmemb, void *ud)
{
    http_exchange *ex = ud;
    size_t n = size * nmemb;
    if (http_count(ex, n) != 0)
        return 0; /* curl aborts the transfer with CURLE_WRITE_ERROR */
    if (buf_append(&ex->body, p, n) != 0) {
        ex->oom = 1;
        return 0;
    }
    return n;
}

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0. Same rules as jansson's check. */
static size_t http_utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len = c < 0x80                 ? 1
                 : c >= 0xC2 && c <= 0xDF ? 2
                 : c >= 0xE0 && c <= 0xEF ? 3
                 : c >= 0xF0 && c <= 0xF4 ? 4
                                          : 0;
    if (len == 0 || len > n)
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    if ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] > 0x9F) || (c == 0xF0 && s[1] < 0x90) ||
        (c == 0xF4 && s[1] > 0x8F))
        return 0; /* overlong, surrogate, or past U+10FFFF */
    return len;
}

/* A JSON string of n bytes; invalid UTF-8 becomes U+FFFD. New reference or NULL. */
static json_t *http_text_json(const char *p, size_t n)
{
    json_t *s = json_stringn(p, n);
    if (s)
        return s;
    buf b = {0};
    for (size_t i = 0; i < n;) {
        size_t k = http_utf8_seq((const unsigned char *)p + i, n - i);
        if (buf_append(&b, k ? p + i : "\xEF\xBF\xBD", k ? k : 3) != 0) {
            buf_free(&b);
            return NULL;
        }
        i += k ? k : 1;
    }
    s = json_stringn(b.data ? b.data : "", b.len);
    buf_free(&b);
    return s;
}

static void http_trim(const char **p, const char **end)
{
    while (*p < *end && (**p == ' ' || **p == '\t'))
        (*p)++;
    while (*end > *p && ((*end)[-1] == ' ' || (*end)[-1] == '\t' || (*end)[-1] == '\r' || (*end)[-1] == '\n'))
        (*end)--;
}

/* Adds "name: value" to rheaders (lower-case name; repeats joined with ", "). */
static int http_store_header(http_exchange *ex, const char *p, const char *colon, const char *end)
{
    const char *ns = p, *ne = colon, *vs = colon + 1, *ve = end;
    http_trim(&ns, &ne);
    http_trim(&vs, &ve);
    char name[256];
    size_t nl = (size_t)(ne - ns);
    if (nl == 0 || nl >= sizeof name)
        return 0; /* nameless or absurd: not worth keeping */
    for (size_t i = 0; i < nl; i++)
        name[i] = (char)tolower((unsigned char)ns[i]);
    name[nl] = '\0';
    if (!http_is_token(name))
        return 0; /* not a header name (libcurl passes any): it may not even be UTF-8, as a JSON key must */
    json_t *old = json_object_get(ex->rheaders, name);
    if (!old) { /* the usual case: a header seen once */
        json_t *value = http_text_json(vs, (size_t)(ve - vs));
        return value && json_object_set_new(ex->rheaders, name, value) == 0 ? 0 : -1;
    }
    buf b = {0};
    int rc = buf_appendf(&b, "%s, ", json_string_value(old));
    rc = rc ? rc : buf_append(&b, vs, (size_t)(ve - vs));
    json_t *value = rc == 0 ? http_text_json(b.data ? b.data : "", b.len) : NULL;
    buf_free(&b);
    if (!value || json_object_set_new(ex->rheaders, name, value) != 0)
        return -1;
    return 0;
}

/* The status of a status line ("HTTP/1.1 200 OK", "HTTP/2 200"), 0 when it shows none. */
static long http_line_status(const char *p, size_t n)
{
    const char *sp = memchr(p, ' ', n);
    if (!sp)
        return 0;
    size_t left = (size_t)(p + n - sp - 1);
    long st = 0;
    for (size_t i = 0; i < left && i < 3 && isdigit((unsigned char)sp[1 + i]); i++)
        st = st * 10 + (sp[1 + i] - '0');
    return st;
}

/* A Content-Length header announcing a body larger than what is left of max_response_bytes: the
 * answer fails at once rather than at the node's timeout (libcurl's CURLOPT_MAXFILESIZE does the
 * same; the plain path would read on). Not for answers without a body, whose length describes
 * another answer's: HEAD, 1xx, 204, 304. */
static int http_length_over(const http_exchange *ex, const char *p, const char *colon, const char *end)
{
    long st = ex->line_status;
    if (colon - p != 14 || strncasecmp(p, "content-length", 14) != 0 || strcmp(ex->req.method, "HEAD") == 0 ||
        st < 200 || st == 204 || st == 304)
        return 0;
    const char *v = colon + 1;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    uintmax_t len = 0;
    for (; v < end && isdigit((unsigned char)*v); v++) {
        if (len > (UINTMAX_MAX - 9) / 10)
            return 1;
        len = len * 10 + (uintmax_t)(*v - '0');
    }
    return len > ex->lim.max_response_bytes - ex->rx_bytes;
}

static size_t http_on_header(char *p, size_t size, size_t nmemb, void *ud)
{
    http_exchange *ex = ud;
    size_t n = size * nmemb;
    if (http_count(ex, n) != 0)
        return 0;
    ex->header_bytes += n;
    if (ex->header_bytes > HTTP_MAX_HEADER_BYTES) { /* each stored header costs far more than its line */
        ex->header_oversize = 1;
        return 0;
    }
    if (n >= 5 && memcmp(p, "HTTP/", 5) == 0) { /* a status line: a new response (1xx, then final) */
        json_object_clear(ex->rheaders);
        ex->line_status = http_line_status(p, n);
        return n;
    }
    const char *colon = memchr(p, ':', n);
    if (!colon || p[0] == ' ' || p[0] == '\t') /* the blank line, or an obsolete folded line */
        return n;
    if (http_length_over(ex, p, colon, p + n)) {
        ex->oversize = 1;
        return 0;
    }
    if (http_store_header(ex, p, colon, p + n) != 0) {
        ex->oom = 1;
        return 0;
    }
    return n;
}

/* ---- setting up the easy handle (once per attempt) ---- */

static int http_easy_method(CURL *e, const http_request *r)
{
    CURLcode c = CURLE_OK;
    if (strcmp(r->method, "HEAD") == 0)
        return curl_easy_setopt(e, CURLOPT_NOBODY, 1L) == CURLE_OK ? 0 : -1;
    if (r->body || strcmp(r->method, "POST") == 0) {
        c |= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(r->body ? r->body_len : 0));
        c |= curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body ? r->body : "");
    }
    if (strcmp(r->method, "POST") != 0 && (r->body || strcmp(r->method, "GET") != 0))
        c |= curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
    return c == CURLE_OK ? 0 : -1;
}

static int http_easy_setup(http_exchange *ex)
{
    CURL *e = ex->easy;
    long verify = ex->lim.verify_tls ? 1L : 0L;
    CURLcode c = CURLE_OK;
    c |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    c |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    c |= curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    c |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, ex->lim.connect_timeout_ms);
    c |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, verify);
    c |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, verify ? 2L : 0L);
    c |= curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)ex->lim.max_response_bytes);
    c |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, http_on_body);
    c |= curl_easy_setopt(e, CURLOPT_WRITEDATA, ex);
    c |= curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, http_on_header);
    c |= curl_easy_setopt(e, CURLOPT_HEADERDATA, ex);
    c |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, ex->errbuf);
    c |= curl_easy_setopt(e, CURLOPT_HTTPHEADER, ex->req.headers);
    if (c != CURLE_OK)
        return -1;
    return http_easy_method(e, &ex->req);
}

/* ---- attempts ---- */

static void http_on_done(CURL *easy, CURLcode rc, void *ud);

static void http_hook_end(http_exchange *ex, http_end how)
{
    if (ex->hooks->end)
        ex->hooks->end(ex, how);
}

static void http_on_h1_done(const ioloop_h1_result *r, void *ud);

/* The attempt through libcurl, on a new easy handle (http_on_done cleans it up). */
static int http_attempt_curl(http_exchange *ex, double limit_ms)
{
    http_easy_put(ex->easy); /* none left from an attempt that never reached the loop */
    ex->easy = http_easy_get();
    if (!ex->easy || http_easy_setup(ex) != 0)
        return -1;
    CURLU *url = http_request_url(&ex->req);
    if (!url)
        return -1;
    CURLcode c = curl_easy_setopt(ex->easy, CURLOPT_CURLU, url);
    c |= curl_easy_setopt(ex->easy, CURLOPT_TIMEOUT_MS, (long)ceil(limit_ms));
    return c == CURLE_OK ? ioloop_add(ex->call->io, ex->easy, http_on_done, ex) : -1;
}

static size_t http_h1_header(char *p, size_t n, void *ud)
{
    return http_on_header(p, 1, n, ud);
}
static size_t http_h1_body(char *p, size_t n, void *ud)
{
    return http_on_body(p, 1, n, ud);
}

/* The attempt through the loop's own client, when the URL and the request allow it; 1 when not. */
static int http_attempt_plain(http_exchange *ex, double limit_ms)
{
    ioloop_h1_req q = {
        .no_body = strcmp(ex->req.method, "HEAD") == 0,
        .timeout_ms = limit_ms,
        .connect_timeout_ms = fmin((double)ex->lim.connect_timeout_ms, limit_ms),
        /* body and headers count in http_count; this bounds chunk framing too (0: no bound, for a
         * limit so large that doubling it would wrap) */
        .max_bytes =
            ex->lim.max_response_bytes < SIZE_MAX / 4 ? 2 * ex->lim.max_response_bytes + HTTP_MAX_HEADER_BYTES : 0,
        .on_header = http_h1_header,
        .on_body = http_h1_body,
    };
    if (http_wire_prepare(&ex->req, &q, &ex->wire) != 0)
        return 1;
    q.data = ex->wire.data;
    q.len = ex->wire.len;
    return ioloop_h1_add(ex->call->io, &q, http_on_h1_done, ex);
}

/* Starts one attempt: the run's deadline caps the node's timeout. 0, or -1 with err. */
static int http_attempt(http_exchange *ex, int new_round, node_error *err)
{
    double limit = ex->req.timeout_ms, deadline = ex->call->deadline_ms;
    ex->deadline_limited = 0;
    if (deadline > 0) {
        double left = deadline - util_now_ms();
        if (left <= 0)
            return node_fail(err, "timeout", "the run's deadline passed before the request was sent");
        if (left < limit) {
            limit = left;
            ex->deadline_limited = 1;
        }
    }
    if (ex->hooks->begin && ex->hooks->begin(ex, new_round, err) != 0)
        return -1;
    ex->body.len = 0;
    ex->rx_bytes = ex->header_bytes = 0;
    ex->oversize = ex->oom = ex->header_oversize = 0;
    ex->status = ex->line_status = 0;
    ex->total_ms = 0;
    ex->connected = 0;
    ex->errbuf[0] = '\0';
    json_object_clear(ex->rheaders);
    int rc = http_attempt_plain(ex, limit);
    if (rc == 1)
        rc = http_attempt_curl(ex, limit);
    if (rc != 0) {
        http_hook_end(ex, HTTP_END_OTHER);
        return node_fail(err, "internal", "the I/O loop did not take the request");
    }
    return 0;
}

static void http_on_retry(void *ud)
{
    http_exchange *ex = ud;
    node_error err;
    if (http_attempt(ex, 1, &err) != 0)
        http_finish(ex, NULL, &err);
}

/* Schedules a retry when one is left and it can start before the run's deadline. */
static int http_retry(http_exchange *ex)
{
    if (ex->retries_done >= ex->req.retry_count)
        return 0;
    double delay = ex->req.backoff_ms * pow(2.0, ex->retries_done);
    if (delay > HTTP_BACKOFF_CAP_MS)
        delay = HTTP_BACKOFF_CAP_MS;
    if (ex->call->deadline_ms > 0 && util_now_ms() + delay >= ex->call->deadline_ms)
        return 0;
    if (ioloop_after(ex->call->io, delay, http_on_retry, ex) != 0)
        return 0;
    ex->retries_done++;
    return 1;
}

static http_outcome http_timed_out(http_exchange *ex, const char *where, node_error *err)
{
    if (ex->deadline_limited && util_now_ms() >= ex->call->deadline_ms - 5.0) {
        node_fail(err, "timeout", "the run's deadline passed while waiting for %s", where);
        return HTTP_FATAL;
    }
    if (ex->connected)
        node_fail(err, "upstream_error", "%s: no answer within %.3g s", where, ex->req.timeout_ms / 1000.0);
    else
        node_fail(err, "upstream_error", "%s: no connection within %.3g s", where,
                  fmin(ex->req.timeout_ms, (double)ex->lim.connect_timeout_ms) / 1000.0);
    return HTTP_TRANSPORT;
}

static http_outcome http_classify(http_exchange *ex, CURLcode rc, node_error *err)
{
    if (rc == CURLE_OK)
        return HTTP_ANSWER;
    char where[300], origin[280];
    http_url_origin_text(&ex->req, origin, sizeof origin);
    snprintf(where, sizeof where, "%s %s", ex->req.method, origin);
    if (ex->oom) {
        node_fail(err, "internal", "%s: out of memory reading the answer", where);
        return HTTP_FATAL;
    }
    if (ex->header_oversize) {
        node_fail(err, "upstream_error", "%s: answer headers over %d KiB", where, HTTP_MAX_HEADER_BYTES / 1024);
        return HTTP_FATAL;
    }
    if (ex->oversize || rc == CURLE_FILESIZE_EXCEEDED) {
        node_fail(err, "upstream_error", "%s: answer over max_response_bytes (%zu)", where, ex->lim.max_response_bytes);
        return HTTP_FATAL;
    }
    if (rc == CURLE_ABORTED_BY_CALLBACK) {
        node_fail(err, "upstream_error", "%s: aborted, the I/O loop is stopping", where);
        return HTTP_FATAL;
    }
    if (rc == CURLE_OPERATION_TIMEDOUT)
        return http_timed_out(ex, where, err);
    node_fail(err, "upstream_error", "%s: %s", where, ex->errbuf[0] ? ex->errbuf : curl_easy_strerror(rc));
    return HTTP_TRANSPORT;
}

/* ---- the answer ---- */

static int http_is_json_type(json_t *ct)
{
    if (!json_is_string(ct))
        return 0;
    const char *s = json_string_value(ct);
    size_t n = strcspn(s, ";");
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    return (n == 16 && strncasecmp(s, "application/json", 16) == 0) ||
           (n > 5 && strncasecmp(s + n - 5, "+json", 5) == 0);
}

static json_t *http_base64_json(const char *p, size_t n)
{
    char *b64 = NULL;
    if (http_base64((const unsigned char *)p, n, &b64) != 0)
        return NULL;
    json_t *s = json_string(b64);
    free(b64);
    return s;
}

/* The body as the response_format says. *content is a new reference. */
static int http_content(http_exchange *ex, json_t **content, node_error *err)
{
    http_format fmt = ex->req.format;
    if (fmt == HTTP_FMT_AUTO)
        fmt = http_is_json_type(json_object_get(ex->rheaders, "content-type")) ? HTTP_FMT_JSON : HTTP_FMT_TEXT;
    const char *p = ex->body.data ? ex->body.data : "";
    size_t n = ex->body.len;
    if (fmt == HTTP_FMT_JSON) {
        json_error_t jerr;
        /* No body (HEAD, 204) has nothing to parse: null. */
        *content = n == 0 ? json_null() : json_loadb(p, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
        if (!*content) {
            char origin[280];
            http_url_origin_text(&ex->req, origin, sizeof origin);
            return node_fail(err, "upstream_error", "%s %s: the answer is not valid JSON (line %d: %.80s)",
                             ex->req.method, origin, jerr.line, jerr.text);
        }
        return 0;
    }
    *content = fmt == HTTP_FMT_BINARY ? http_base64_json(p, n) : http_text_json(p, n);
    return *content ? 0 : node_fail(err, "internal", "out of memory reading the answer");
}

static void http_finish_answer(http_exchange *ex)
{
    node_error err;
    json_t *content = NULL;
    if (http_content(ex, &content, &err) != 0) {
        http_finish(ex, NULL, &err);
        return;
    }
    const http_url_memo *memo = ex->req.url ? NULL : ex->req.memo;
    char *url = memo ? NULL : http_url_public(ex->req.url);
    http_answer a = {
        .status_code = ex->status,
        .headers = ex->rheaders,
        .content = content,
        .response_time_ms = ex->total_ms,
        .url = memo ? memo->public_text : url ? url : "",
        .method = ex->req.method,
    };
    json_t *out = ex->hooks->outputs(ex, &a);
    json_decref(content);
    free(url);
    if (!out) {
        http_finish(ex, NULL, &(node_error){"internal", "out of memory building the outputs"});
        return;
    }
    http_finish(ex, out, NULL);
}

static int http_retryable_status(long status)
{
    return status >= 502 && status <= 504;
}

/* An attempt ended (loop thread): answer, fail over, retry, or fail. */
static void http_on_end(http_exchange *ex, CURLcode rc)
{
    node_error err;
    http_outcome out = http_classify(ex, rc, &err);
    http_hook_end(ex, out == HTTP_ANSWER      ? HTTP_END_ANSWER
                      : out == HTTP_TRANSPORT ? HTTP_END_TRANSPORT
                                              : HTTP_END_OTHER);
    if (out == HTTP_ANSWER) {
        if (!(http_retryable_status(ex->status) && http_retry(ex)))
            http_finish_answer(ex);
        return;
    }
    if (out == HTTP_TRANSPORT && ex->hooks->failover && ex->hooks->failover(ex)) {
        node_error e2;
        if (http_attempt(ex, 0, &e2) != 0)
            http_finish(ex, NULL, &e2);
        return;
    }
    if (out == HTTP_TRANSPORT && http_retry(ex))
        return;
    http_finish(ex, NULL, &err);
}

static void http_on_done(CURL *easy, CURLcode rc, void *ud)
{
    http_exchange *ex = ud;
    curl_off_t us = 0, connected = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &ex->status);
    curl_easy_getinfo(easy, CURLINFO_TOTAL_TIME_T, &us);
    curl_easy_getinfo(easy, CURLINFO_CONNECT_TIME_T, &connected);
    ex->total_ms = (double)us / 1000.0;
    ex->connected = connected != 0;
    http_easy_put(easy); /* out of the multi handle already; never reused (http_easy.c) */
    ex->easy = NULL;
    http_on_end(ex, rc);
}

static void http_on_h1_done(const ioloop_h1_result *r, void *ud)
{
    http_exchange *ex = ud;
    ex->status = r->status;
    ex->total_ms = r->total_ms;
    ex->connected = r->connected;
    if (r->code != CURLE_OK)
        util_copy(ex->errbuf, sizeof ex->errbuf, r->error);
    http_on_end(ex, r->code);
}

int http_exchange_start(http_exchange *ex, node_error *err)
{
    if (http_attempt(ex, 1, err) != 0) {
        http_exchange_free(ex);
        return -1;
    }
    return 0;
}

int http_exchange_run(node_call *call, const http_limits *lim, const http_hooks *hooks, void *ud, http_build_fn build,
                      const void *compiled, node_error *err)
{
    http_exchange *ex = http_exchange_new(call, lim, hooks, ud);
    if (!ex)
        return node_fail(err, "internal", "out of memory");
    if (build(compiled, call->inputs, http_exchange_request(ex), err) != 0 ||
        http_request_add_hops(http_exchange_request(ex), call->hops, err) != 0) {
        http_exchange_free(ex);
        return -1;
    }
    return http_exchange_start(ex, err);
}

int http_origin_node_start(const void *compiled, node_call *call, const http_hooks *hooks, http_build_fn build,
                           node_error *err)
{
    const http_origin_node *n = compiled;
    if (http_base_check_inputs(&n->base, call->inputs, err) != 0)
        return -1;
    return http_exchange_run(call, &n->base.lim, hooks, NULL, build, n, err);
}

/* ======================================================================== outputs */

/* Sets o[key] = v (taken); -1 when v is NULL or the set fails. Built by hand rather than by
 * json_pack: this runs once per call, and the format parser was a tenth of the outputs' cost. */
static int http_put(json_t *o, const char *key, json_t *v)
{
    return v && json_object_set_new(o, key, v) == 0 ? 0 : -1;
}

json_t *http_outputs_response(http_exchange *ex, const http_answer *a)
{
    (void)ex;
    json_t *response = json_object(), *out = json_object();
    if (!response || !out || http_put(response, "status_code", json_integer(a->status_code)) != 0 ||
        http_put(response, "headers", json_incref(a->headers)) != 0 ||
        http_put(response, "content", json_incref(a->content)) != 0 ||
        http_put(response, "response_time_ms", json_real(a->response_time_ms)) != 0 ||
        http_put(response, "url", json_string(a->url)) != 0 || http_put(out, "response", json_incref(response)) != 0 ||
        http_put(out, "status_code", json_integer(a->status_code)) != 0 ||
        http_put(out, "success", json_boolean(a->status_code >= 200 && a->status_code < 300)) != 0) {
        json_decref(response);
        json_decref(out);
        return NULL;
    }
    json_decref(response);
    return out;
}

int http_has_response_output(const void *compiled, const char *port)
{
    (void)compiled;
    return strcmp(port, "response") == 0 || strcmp(port, "status_code") == 0 || strcmp(port, "success") == 0;
}
