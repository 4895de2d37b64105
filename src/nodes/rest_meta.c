/* rest_meta: the SDK RESTClientNode's metadata extraction and error text, over hostile answers
 * (see rest_meta.h). Each function follows the Python it mirrors (kailash/nodes/api/rest.py:
 * _extract_rate_limit_metadata, _extract_pagination_metadata, _parse_link_header, _extract_links,
 * and run()'s error branch) step by step. */
#include "rest_meta.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kailash/util.h"

/* ---- Python's str.strip() and truthiness ---- */

/* Bytes of the Python whitespace character at s (ASCII ones, and U+0085, U+00A0 in UTF-8), or 0. */
static size_t py_space_at(const char *s, size_t n)
{
    unsigned char c = (unsigned char)s[0];
    if (c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f))
        return 1;
    if (n >= 2 && c == 0xC2 && ((unsigned char)s[1] == 0x85 || (unsigned char)s[1] == 0xA0))
        return 2;
    return 0;
}

/* The bytes [*p, *end) without leading and trailing Python whitespace. */
static void py_strip_space(const char **p, const char **end)
{
    size_t k;
    while (*p < *end && (k = py_space_at(*p, (size_t)(*end - *p))) > 0)
        *p += k;
    for (;;) {
        if (*end > *p && py_space_at((*end) - 1, 1) == 1)
            (*end)--;
        else if (*end - *p >= 2 && py_space_at((*end) - 2, 2) == 2)
            *end -= 2;
        else
            break;
    }
}

/* str.strip(chars) for ASCII chars. */
static void py_strip_chars(const char **p, const char **end, const char *chars)
{
    while (*p < *end && strchr(chars, **p))
        (*p)++;
    while (*end > *p && strchr(chars, (*end)[-1]))
        (*end)--;
}

static int py_truthy(json_t *v)
{
    if (!v)
        return 0;
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return json_object_size(v) > 0;
    case JSON_ARRAY:
        return json_array_size(v) > 0;
    case JSON_STRING:
        return json_string_length(v) > 0;
    case JSON_INTEGER:
        return json_integer_value(v) != 0;
    case JSON_REAL:
        return json_real_value(v) != 0;
    case JSON_TRUE:
        return 1;
    default:
        return 0;
    }
}

int rest_meta_py_int(const char *text, long long *out)
{
    const char *p = text, *end = text + strlen(text);
    py_strip_space(&p, &end);
    int neg = 0;
    if (p < end && (*p == '+' || *p == '-'))
        neg = *p++ == '-';
    if (p == end)
        return 0;
    unsigned long long v = 0, lim = neg ? (unsigned long long)LLONG_MAX + 1 : (unsigned long long)LLONG_MAX;
    int digit_before = 0;
    for (; p < end; p++) {
        if (*p == '_' && digit_before && p + 1 < end && p[1] >= '0' && p[1] <= '9') {
            digit_before = 0;
            continue;
        }
        if (*p < '0' || *p > '9')
            return 0;
        unsigned d = (unsigned)(*p - '0');
        if (v > (lim - d) / 10)
            return 0; /* Python has big integers; past 64 bits the text stays text */
        v = v * 10 + d;
        digit_before = 1;
    }
    *out = neg ? (v == (unsigned long long)LLONG_MAX + 1 ? LLONG_MIN : -(long long)v) : (long long)v;
    return 1;
}

/* ---- rate_limit ---- */

static int rest_rate_limit(json_t *metadata, json_t *headers)
{
    static const char *const names[][2] = {
        {"X-RateLimit-Limit", "limit"},      {"X-RateLimit-Remaining", "remaining"},
        {"X-RateLimit-Reset", "reset"},      {"X-Rate-Limit-Limit", "limit"},
        {"X-Rate-Limit-Remaining", "remaining"}, {"X-Rate-Limit-Reset", "reset"},
        {"RateLimit-Limit", "limit"},        {"RateLimit-Remaining", "remaining"},
        {"RateLimit-Reset", "reset"},
    };
    json_t *rl = json_object();
    if (!rl)
        return -1;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        /* headers.get(name) or headers.get(name.lower()): a plain dict, so these two spellings only */
        char lower[32];
        size_t n = strlen(names[i][0]);
        for (size_t k = 0; k <= n; k++)
            lower[k] = (char)((names[i][0][k] >= 'A' && names[i][0][k] <= 'Z') ? names[i][0][k] + 32 : names[i][0][k]);
        json_t *v = json_object_get(headers, names[i][0]);
        if (!py_truthy(v))
            v = json_object_get(headers, lower);
        if (!json_is_string(v) || !py_truthy(v))
            continue;
        long long iv;
        json_t *val = rest_meta_py_int(json_string_value(v), &iv) ? json_integer(iv) : json_copy(v);
        if (!val || json_object_set_new(rl, names[i][1], val) != 0) {
            json_decref(rl);
            return -1;
        }
    }
    if (json_object_size(rl) == 0) {
        json_decref(rl);
        return 0;
    }
    return json_object_set_new(metadata, "rate_limit", rl);
}

/* ---- pagination ---- */

/* o[key] = v (taken) unless o is full and key is new. -1 out of memory. */
static int rest_put_bounded(json_t *o, const char *key, json_t *v)
{
    if (!v)
        return -1;
    if (json_object_size(o) >= REST_META_MAX_LINKS && !json_object_get(o, key)) {
        json_decref(v);
        return 0;
    }
    return json_object_set_new(o, key, v);
}

json_t *rest_meta_link_header(const char *value)
{
    json_t *links = json_object();
    const char *s = value;
    while (links) {
        const char *cut = strchr(s, ','), *end = cut ? cut : s + strlen(s), *p = s;
        py_strip_space(&p, &end);
        const char *semi = memchr(p, ';', (size_t)(end - p));
        if (semi) {
            const char *us = p, *ue = semi, *rs = semi + 1, *re = end;
            py_strip_chars(&us, &ue, "<>");
            const char *eq = memchr(rs, '=', (size_t)(re - rs));
            if (eq) {
                rs = eq + 1;
                py_strip_chars(&rs, &re, "\"'");
                size_t ul = (size_t)(ue - us), rl = (size_t)(re - rs);
                if (ul <= REST_META_MAX_TEXT && rl <= REST_META_MAX_TEXT) {
                    char *rel = malloc(rl + 1);
                    if (rel) {
                        memcpy(rel, rs, rl);
                        rel[rl] = '\0';
                    }
                    if (!rel || rest_put_bounded(links, rel, json_stringn(us, ul)) != 0) {
                        json_decref(links);
                        links = NULL;
                    }
                    free(rel);
                }
            }
        }
        if (!cut)
            break;
        s = cut + 1;
    }
    return links;
}

static int rest_pagination(json_t *metadata, json_t *headers, json_t *content)
{
    static const char *const fields[][5] = {
        {"page", "page", "current_page", "pageNumber", NULL},
        {"per_page", "per_page", "page_size", "pageSize", "limit"},
        {"total", "total", "totalCount", "total_count", "totalRecords"},
        {"total_pages", "total_pages", "totalPages", "pageCount", NULL},
        {"has_next", "has_next", "hasNext", "has_more", "hasMore"},
        {"has_prev", "has_prev", "hasPrev", "has_previous", "hasPrevious"},
    };
    json_t *link = json_object_get(headers, "Link");
    if (!py_truthy(link))
        link = json_object_get(headers, "link");
    json_t *pg = json_is_string(link) && py_truthy(link) ? rest_meta_link_header(json_string_value(link)) : json_object();
    if (!pg)
        return -1;
    if (json_is_object(content)) {
        /* content.get("meta") or content.get("metadata", {}) */
        json_t *meta = json_object_get(content, "meta");
        if (!py_truthy(meta))
            meta = json_object_get(content, "metadata");
        for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
            for (int f = 1; f < 5 && fields[i][f]; f++) {
                json_t *v = json_object_get(content, fields[i][f]);
                if (!v && json_is_object(meta))
                    v = json_object_get(meta, fields[i][f]);
                if (!v)
                    continue;
                if (json_object_set(pg, fields[i][0], v) != 0) {
                    json_decref(pg);
                    return -1;
                }
                break;
            }
    }
    if (json_object_size(pg) == 0) {
        json_decref(pg);
        return 0;
    }
    return json_object_set_new(metadata, "pagination", pg);
}

/* ---- links (HATEOAS) ---- */

/* A list entry's rel as the JSON key Python's json.dumps would write for it; NULL: Python could
 * not use it as a key (a list or a dict: the SDK fails with TypeError; kailashd skips it). */
static char *rest_rel_key(json_t *rel)
{
    if (!rel)
        return strdup("related");
    switch (json_typeof(rel)) {
    case JSON_STRING:
        return strdup(json_string_value(rel));
    case JSON_TRUE:
        return strdup("true");
    case JSON_FALSE:
        return strdup("false");
    case JSON_NULL:
        return strdup("null");
    case JSON_INTEGER:
    case JSON_REAL:
        return json_dumps(rel, JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
    default:
        return NULL;
    }
}

static int rest_links(json_t *metadata, json_t *content)
{
    static const char *const fields[] = {"links", "_links", "link", "href"};
    if (!json_is_object(content))
        return 0;
    json_t *links = json_object();
    if (!links)
        return -1;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < sizeof fields / sizeof fields[0]; i++) {
        json_t *ld = json_object_get(content, fields[i]);
        if (json_is_object(ld)) { /* HAL: {"self": {"href": ...}, "next": "..."} */
            const char *rel;
            json_t *lo;
            json_object_foreach(ld, rel, lo)
            {
                json_t *href = json_is_object(lo) ? json_object_get(lo, "href") : json_is_string(lo) ? lo : NULL;
                if (href && (rc = rest_put_bounded(links, rel, json_incref(href))) != 0)
                    break;
            }
        } else if (json_is_array(ld)) { /* [{"rel": ..., "href" or "url": ...}] */
            size_t k;
            json_t *lo;
            json_array_foreach(ld, k, lo)
            {
                if (!json_is_object(lo))
                    continue;
                json_t *href = json_object_get(lo, "href");
                if (!py_truthy(href))
                    href = json_object_get(lo, "url");
                if (!py_truthy(href))
                    continue;
                char *key = rest_rel_key(json_object_get(lo, "rel"));
                rc = key ? rest_put_bounded(links, key, json_incref(href)) : 0;
                free(key);
                if (rc != 0)
                    break;
            }
        }
    }
    if (rc != 0 || json_object_size(links) == 0) {
        json_decref(links);
        return rc;
    }
    return json_object_set_new(metadata, "links", links);
}

int rest_meta_extract(json_t *metadata, json_t *headers, json_t *content)
{
    if (rest_rate_limit(metadata, headers) != 0 || rest_pagination(metadata, headers, content) != 0 ||
        rest_links(metadata, content) != 0)
        return -1;
    return 0;
}

/* ---- the error text: Python's f"{value} (status: {code})" ---- */

/* repr() of a float as Python writes it: the shortest digits that read back, fixed notation from
 * 1e-4 to below 1e16, else d.ddde+XX. */
static int py_float(buf *b, double d)
{
    char t[40];
    int prec = 1;
    for (; prec <= 17; prec++) {
        snprintf(t, sizeof t, "%.*e", prec - 1, d);
        if (strtod(t, NULL) == d)
            break;
    }
    char *e = strchr(t, 'e');
    int exp = atoi(e + 1);
    char digits[24];
    size_t nd = 0;
    for (const char *p = t; p < e; p++)
        if (*p >= '0' && *p <= '9')
            digits[nd++] = *p;
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    int rc = d < 0 || (d == 0 && signbit(d)) ? buf_append(b, "-", 1) : 0;
    if (exp < -4 || exp >= 16) {
        rc = rc ? rc : buf_append(b, digits, 1);
        if (rc == 0 && nd > 1)
            rc = buf_appendf(b, ".%.*s", (int)nd - 1, digits + 1);
        return rc ? rc : buf_appendf(b, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    }
    if (exp < 0) {
        rc = rc ? rc : buf_append(b, "0.", 2);
        for (int i = -1; rc == 0 && i > exp; i--)
            rc = buf_append(b, "0", 1);
        return rc ? rc : buf_append(b, digits, nd);
    }
    for (int i = 0; rc == 0 && i <= exp; i++)
        rc = buf_append(b, (size_t)i < nd ? digits + i : "0", 1);
    if (rc == 0 && (size_t)exp + 1 < nd)
        rc = buf_appendf(b, ".%.*s", (int)(nd - (size_t)exp - 1), digits + exp + 1);
    else if (rc == 0)
        rc = buf_append(b, ".0", 2);
    return rc;
}

/* repr() of a string: single quotes unless it holds ' and no ", control bytes escaped. */
static int py_str_repr(buf *b, const char *s, size_t n)
{
    char q = memchr(s, '\'', n) && !memchr(s, '"', n) ? '"' : '\'';
    int rc = buf_append(b, &q, 1);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\\' || c == (unsigned char)q)
            rc = buf_appendf(b, "\\%c", c);
        else if (c == '\n' || c == '\r' || c == '\t')
            rc = buf_appendf(b, "\\%c", c == '\n' ? 'n' : c == '\r' ? 'r' : 't');
        else if (c < 0x20 || c == 0x7f)
            rc = buf_appendf(b, "\\x%02x", c);
        else if (c == 0xC2 && i + 1 < n && ((unsigned char)s[i + 1] <= 0xA0 || (unsigned char)s[i + 1] == 0xAD)) {
            rc = buf_appendf(b, "\\x%02x", (unsigned char)s[i + 1]);
            i++;
        } else
            rc = buf_append(b, (const char *)&c, 1);
    }
    return rc ? rc : buf_append(b, &q, 1);
}

/* str() of a JSON value as Python prints the dict/list/str/int/float/bool/None it loads to
 * (top: a string bare; inside containers repr()). Stops adding past REST_META_MAX_REPR bytes. */
static int py_value(buf *b, json_t *v, int top, int depth)
{
    if (!v)
        return buf_append(b, "None", 4);
    if (b->len > REST_META_MAX_REPR || depth > 32)
        return buf_append(b, "...", 3);
    switch (json_typeof(v)) {
    case JSON_STRING: {
        const char *s = json_string_value(v);
        size_t n = json_string_length(v);
        if (top)
            return buf_append(b, s, n);
        if (n > REST_META_MAX_REPR) { /* cut at a character's start: the text must stay UTF-8 */
            n = REST_META_MAX_REPR;
            while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
                n--;
        }
        return py_str_repr(b, s, n);
    }
    case JSON_INTEGER:
        return buf_appendf(b, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    case JSON_REAL:
        return py_float(b, json_real_value(v));
    case JSON_TRUE:
        return buf_append(b, "True", 4);
    case JSON_FALSE:
        return buf_append(b, "False", 5);
    case JSON_NULL:
        return buf_append(b, "None", 4);
    case JSON_ARRAY: {
        int rc = buf_append(b, "[", 1);
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e)
        {
            if (rc == 0 && i)
                rc = buf_append(b, ", ", 2);
            if (rc == 0)
                rc = py_value(b, e, 0, depth + 1);
            if (rc != 0 || b->len > REST_META_MAX_REPR)
                break;
        }
        return rc ? rc : buf_append(b, "]", 1);
    }
    case JSON_OBJECT: {
        int rc = buf_append(b, "{", 1), first = 1;
        const char *k;
        json_t *e;
        json_object_foreach(v, k, e)
        {
            if (rc == 0 && !first)
                rc = buf_append(b, ", ", 2);
            first = 0;
            rc = rc ? rc : py_str_repr(b, k, strlen(k));
            rc = rc ? rc : buf_append(b, ": ", 2);
            rc = rc ? rc : py_value(b, e, 0, depth + 1);
            if (rc != 0 || b->len > REST_META_MAX_REPR)
                break;
        }
        return rc ? rc : buf_append(b, "}", 1);
    }
    }
    return 0;
}

json_t *rest_meta_error(json_t *content, long status)
{
    json_t *msg = NULL; /* NULL: "Unknown error" */
    if (json_is_object(content)) {
        json_t *ev = json_object_get(content, "error");
        if (json_is_object(ev)) {
            json_t *m = json_object_get(ev, "message");
            if (py_truthy(m))
                msg = m;
        } else if (json_is_string(ev))
            msg = ev;
        /* not error_message or error_message == "Unknown error" */
        if (!msg || !py_truthy(msg) ||
            (json_is_string(msg) && json_string_length(msg) == 13 && strcmp(json_string_value(msg), "Unknown error") == 0)) {
            json_t *m = json_object_get(content, "message");
            if (py_truthy(m))
                msg = m;
        }
    }
    buf b = {0};
    int rc = msg ? py_value(&b, msg, 1, 0) : buf_append(&b, "Unknown error", 13);
    rc = rc ? rc : buf_appendf(&b, " (status: %ld)", status);
    json_t *out = rc == 0 ? json_stringn(b.data, b.len) : NULL;
    buf_free(&b);
    return out;
}
