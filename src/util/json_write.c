/* json_write: compact JSON into a buf (see util.h, buf_append_json), the project's one JSON writer.
 *
 * The answers' hot path dumped every reply through jansson, whose writer calls back per fragment
 * and decodes each string's UTF-8 as it goes: about a tenth of a one-node workflow's CPU. This
 * writes the same bytes as json_dumps(v, JSON_COMPACT | JSON_REAL_PRECISION(15)): keys in
 * insertion order, the same escapes (\" \\ \b \f \n \r \t, other control characters as \u00XX
 * upper-case), UTF-8 passed through, integers in full, reals as jansson formats them, except that
 * a real 15 digits can't hold (0.1 + 0.2, 2^53 + 2) gets the 16 or 17 it needs: an answer never
 * changes a number (jansson's precision 15 would write 0.30000000000000004 as 0.3).
 *
 * Flags change two things only. Reals: jansson's precision 17 (BUF_JSON_REAL17, json_dumps' default)
 * or the shortest text that reads back as the same double (BUF_JSON_REAL_SHORTEST, the template
 * language's "0.1" and "2.0"). Keys: sorted as jansson's JSON_SORT_KEYS sorts them (bytes, then
 * length); sorting costs one array of the object's members per object, so only the canonical form
 * (cache keys, where equal values must give equal bytes) pays it. */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kailash/util.h"

#define JW_MAX_DEPTH 4096 /* jansson's parser stops at 2048; nothing we dump is deeper */

size_t util_json_escape(unsigned char c, char out[6])
{
    static const char hex[] = "0123456789ABCDEF";
    static const char short_form[32] = {['\b'] = 'b', ['\f'] = 'f', ['\n'] = 'n', ['\r'] = 'r', ['\t'] = 't'};
    if (c >= 0x20 && c != '"' && c != '\\')
        return 0;
    out[0] = '\\';
    if (c == '"' || c == '\\' || short_form[c]) {
        out[1] = c < 0x20 ? short_form[c] : (char)c;
        return 2;
    }
    memcpy(out + 1, "u00", 3);
    out[4] = hex[c >> 4];
    out[5] = hex[c & 15];
    return 6;
}

static int jw_string(buf *b, const char *s, size_t n)
{
    if (buf_reserve(b, n + 2) != 0 || buf_append(b, "\"", 1) != 0)
        return -1;
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        char esc[6];
        size_t len = util_json_escape((unsigned char)s[i], esc);
        if (len == 0)
            continue;
        if (buf_append(b, s + run, i - run) != 0 || buf_append(b, esc, len) != 0)
            return -1;
        run = i + 1;
    }
    if (buf_append(b, s + run, n - run) != 0)
        return -1;
    return buf_append(b, "\"", 1);
}

int buf_append_json_str(buf *b, const char *s)
{
    return buf_append_json_strn(b, s, strlen(s));
}

int buf_append_json_strn(buf *b, const char *s, size_t n)
{
    size_t len = b->len;
    if (jw_string(b, s, n) == 0)
        return 0;
    b->len = len;
    return -1;
}

static int jw_integer(buf *b, json_int_t v)
{
    char tmp[24];
    size_t n = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[sizeof tmp - ++n] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        tmp[sizeof tmp - ++n] = '-';
    return buf_append(b, tmp + sizeof tmp - n, n);
}

/* A whole number of thousandths under 10^12 (every duration we write is rounded so): "%.15g" of it
 * is exactly its digits, the integer part, then up to three decimals without trailing zeros. Written
 * here without printf, which cost a few percent of a proxied call. 0 when v is not such a number. */
static size_t jw_real_milli(char *out, double v)
{
    if (!(v > -1e12 && v < 1e12) || v == 0.0)
        return 0;
    double scaled = v * 1000.0;
    long long k = (long long)(scaled < 0 ? scaled - 0.5 : scaled + 0.5);
    if ((double)k / 1000.0 != v)
        return 0;
    unsigned long long u = k < 0 ? (unsigned long long)-k : (unsigned long long)k;
    char tmp[32];
    size_t n = 0;
    unsigned frac = (unsigned)(u % 1000);
    int decimals = frac == 0 ? 0 : frac % 100 == 0 ? 1 : frac % 10 == 0 ? 2 : 3;
    for (int i = 0; i < 3 - decimals; i++)
        frac /= 10;
    if (!decimals) /* jansson's ".0" for a real that reads as an integer */
        tmp[sizeof tmp - ++n] = '0';
    for (int i = 0; i < decimals; i++, frac /= 10)
        tmp[sizeof tmp - ++n] = (char)('0' + frac % 10);
    tmp[sizeof tmp - ++n] = '.';
    u /= 1000;
    do
        tmp[sizeof tmp - ++n] = (char)('0' + u % 10);
    while (u /= 10);
    if (k < 0)
        tmp[sizeof tmp - ++n] = '-';
    memcpy(out, tmp + sizeof tmp - n, n);
    return n;
}

/* The shortest "%.Ng" (N from 15 to 17) that reads back as d; a real always shows it is one ("2.0").
 * Written by the template language since before this file held it; kept byte for byte. */
static int jw_real_shortest(buf *b, double d)
{
    char t[48];
    int n = 0;
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(t, sizeof t, "%.*g", prec, d);
        if (strtod(t, NULL) == d)
            break;
    }
    if (!strpbrk(t, ".eEn") && (size_t)n + 3 <= sizeof t) {
        memcpy(t + n, ".0", 3);
        n += 2;
    }
    return buf_append(b, t, (size_t)n);
}

/* jansson's jsonp_dtostr at precision 15 (or 17 with BUF_JSON_REAL17): "%.15g", then ".0" when it
 * reads as an integer, and the exponent without '+' or leading zeros. At 15, a text that does not
 * read back as v takes 16 digits, then 17 (which always do). */
static int jw_integer(buf *b, json_int_t v);

static int jw_real(buf *b, double v, unsigned flags)
{
    if ((flags & BUF_JSON_REAL_INTEGRAL) && v == (double)(long long)v && v >= -9007199254740992.0 &&
        v <= 9007199254740992.0)
        return jw_integer(b, (json_int_t)v); /* -0.0 is 0 here */
    if (flags & BUF_JSON_REAL_SHORTEST)
        return jw_real_shortest(b, v);
    int prec = flags & BUF_JSON_REAL17 ? 17 : 15;
    char fast[32];
    size_t fn = prec == 15 ? jw_real_milli(fast, v) : 0; /* "%.17g" of 0.1 is not "0.1" */
    if (fn)
        return buf_append(b, fast, fn);
    char tmp[64];
    int n = snprintf(tmp, sizeof tmp, "%.*g", prec, v);
    while (n > 0 && prec < 17 && strtod(tmp, NULL) != v)
        n = snprintf(tmp, sizeof tmp, "%.*g", ++prec, v);
    if (n < 0 || (size_t)n + 3 >= sizeof tmp)
        return -1;
    size_t len = (size_t)n;
    if (!strchr(tmp, '.') && !strchr(tmp, 'e')) {
        memcpy(tmp + len, ".0", 3);
        len += 2;
    }
    char *e = strchr(tmp, 'e');
    if (e) {
        char *start = e + 1, *end = e + 2;
        if (*start == '-')
            start++;
        while (*end == '0')
            end++;
        if (end != start) {
            memmove(start, end, len - (size_t)(end - tmp) + 1);
            len -= (size_t)(end - start);
        }
    }
    return buf_append(b, tmp, len);
}

static int jw_value(buf *b, json_t *v, int depth, unsigned flags);

/* One member: "key":value. */
static int jw_member(buf *b, const char *key, size_t key_len, json_t *v, int depth, unsigned flags)
{
    return jw_string(b, key, key_len) != 0 || buf_append(b, ":", 1) != 0 ? -1 : jw_value(b, v, depth + 1, flags);
}

typedef struct jw_key {
    const char *key;
    size_t len;
    json_t *v;
} jw_key;

/* jansson's JSON_SORT_KEYS order: bytes, then the shorter key first. */
static int jw_key_cmp(const void *a, const void *b)
{
    const jw_key *x = a, *y = b;
    int c = memcmp(x->key, y->key, x->len < y->len ? x->len : y->len);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

static int jw_object_sorted(buf *b, json_t *v, int depth, unsigned flags)
{
    size_t n = json_object_size(v), i = 0;
    jw_key *keys = malloc((n ? n : 1) * sizeof *keys);
    if (!keys)
        return -1;
    for (void *it = json_object_iter(v); it && i < n; it = json_object_iter_next(v, it))
        keys[i++] = (jw_key){json_object_iter_key(it), json_object_iter_key_len(it), json_object_iter_value(it)};
    qsort(keys, i, sizeof *keys, jw_key_cmp);
    int rc = buf_append(b, "{", 1);
    for (size_t k = 0; rc == 0 && k < i; k++)
        rc = (k && buf_append(b, ",", 1) != 0) || jw_member(b, keys[k].key, keys[k].len, keys[k].v, depth, flags);
    free(keys);
    return rc != 0 ? -1 : buf_append(b, "}", 1);
}

static int jw_object(buf *b, json_t *v, int depth, unsigned flags)
{
    if (flags & BUF_JSON_SORT_KEYS)
        return jw_object_sorted(b, v, depth, flags);
    if (buf_append(b, "{", 1) != 0)
        return -1;
    int first = 1;
    for (void *it = json_object_iter(v); it; it = json_object_iter_next(v, it)) {
        if ((!first && buf_append(b, ",", 1) != 0) ||
            jw_member(b, json_object_iter_key(it), json_object_iter_key_len(it), json_object_iter_value(it), depth,
                      flags) != 0)
            return -1;
        first = 0;
    }
    return buf_append(b, "}", 1);
}

static int jw_array(buf *b, json_t *v, int depth, unsigned flags)
{
    if (buf_append(b, "[", 1) != 0)
        return -1;
    for (size_t i = 0, n = json_array_size(v); i < n; i++)
        if ((i && buf_append(b, ",", 1) != 0) || jw_value(b, json_array_get(v, i), depth + 1, flags) != 0)
            return -1;
    return buf_append(b, "]", 1);
}

static int jw_value(buf *b, json_t *v, int depth, unsigned flags)
{
    if (!v || depth > JW_MAX_DEPTH)
        return -1;
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return jw_object(b, v, depth, flags);
    case JSON_ARRAY:
        return jw_array(b, v, depth, flags);
    case JSON_STRING:
        return jw_string(b, json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
        return jw_integer(b, json_integer_value(v));
    case JSON_REAL:
        return jw_real(b, json_real_value(v), flags);
    case JSON_TRUE:
        return buf_append(b, "true", 4);
    case JSON_FALSE:
        return buf_append(b, "false", 5);
    default:
        return buf_append(b, "null", 4);
    }
}

int buf_append_json_real(buf *b, double v)
{
    size_t len = b->len;
    if (jw_real(b, v, 0) == 0)
        return 0;
    b->len = len;
    return -1;
}

int buf_append_json_as(buf *b, json_t *v, unsigned flags)
{
    size_t len = b->len;
    if (jw_value(b, v, 0, flags) == 0)
        return 0;
    b->len = len; /* nothing half-written stays */
    return -1;
}

int buf_append_json(buf *b, json_t *v)
{
    return buf_append_json_as(b, v, 0);
}
