/* request: one request as a node asks for it, before it goes out: the URL with the origin rule of
 * WORKFLOWS.md (scheme, host and port fixed at load), the query, the method and options, the body,
 * the headers with auth (see upstream.h, "one request"). Nothing here touches the network.
 *
 * Secrets: request header values and auth credentials live only in the curl_slist of a request;
 * no error message quotes them. */
#include <ctype.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kailash/template.h"
#include "upstream_internal.h"

#define HTTP_DEFAULT_TIMEOUT_MS 30000.0
#define HTTP_DEFAULT_BACKOFF_MS 100.0

const char *const http_methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", NULL};
const char *const http_formats[] = {"auto", "json", "text", "binary", NULL};
const char *const http_auth_types[] = {"bearer", "basic", "api_key", "oauth2", NULL};

int http_choice_index(const char *const *choices, const char *s)
{
    for (int i = 0; choices[i]; i++)
        if (strcasecmp(choices[i], s) == 0)
            return i;
    return -1;
}

int http_is_scalar(json_t *v)
{
    return json_is_string(v) || json_is_number(v) || json_is_boolean(v);
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

/* Appends s (n bytes) as Python's urllib.parse.quote_plus writes it, which requests uses for query
 * parameters and form bodies: ALPHA DIGIT _ . - ~ stay, a space is '+', any other byte %XX. */
static int http_quote_plus(buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char enc[3] = {'%', hex[c >> 4], hex[c & 15]};
        int rc;
        if ((c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') || c == '_' || c == '.' || c == '-' ||
            c == '~')
            rc = buf_append(b, (const char *)&c, 1);
        else if (c == ' ')
            rc = buf_append(b, "+", 1);
        else
            rc = buf_append(b, enc, 3);
        if (rc != 0)
            return -1;
    }
    return 0;
}

/* "name=value", both encoded by http_quote_plus; a boolean is Python's str(): True, False. */
static int http_form_pair(buf *b, const char *name, json_t *v)
{
    char *text = json_is_boolean(v) ? strdup(json_is_true(v) ? "True" : "False") : http_scalar_text(v);
    int rc = text ? 0 : -1;
    if (rc == 0 && b->len)
        rc = buf_append(b, "&", 1);
    rc = rc ? rc : http_quote_plus(b, name, strlen(name));
    rc = rc ? rc : buf_append(b, "=", 1);
    rc = rc ? rc : http_quote_plus(b, text, strlen(text));
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
void http_request_origin_text(const http_request *r, char *out, size_t outlen)
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

int http_is_token(const char *s)
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

int http_base64(const unsigned char *in, size_t n, char **out)
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
    } else if (!has_ct) {
        rc |= http_add_line(r, "Content-Type:"); /* a raw body has none (requests'); not curl's form type */
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

