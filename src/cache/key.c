/* key: the response cache's key (cache.h). A key is a SHA-256 over the fields that make two runs
 * the same run: the workflow's name, its definition's hash, its purge generation, the scope's part,
 * and the canonical JSON of the inputs and the parameters. Each field goes in behind its length (8
 * bytes, little-endian), so ("ab", "c") and ("a", "bc") are different keys.
 *
 * The canonical JSON is this file's own walk rather than buf_append_json_as: numbers must compare by
 * value (1.0 and 1 give "1", -0.0 gives "0"), which no writer flag does, and strings and keys are
 * written by their length (a jansson string may hold a NUL). Escaping is the project's one escaper,
 * util_json_escape, so strings come out as jansson's compact dump writes them. Keys sort by their
 * bytes, the shorter first on a common prefix (jansson's JSON_SORT_KEYS order). */
#include <math.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kailash/cache.h"

#define KEY_MAX_DEPTH 1000 /* containers nested deeper than this are refused */
#define KEY_SORT_STACK 16  /* objects with at most this many members sort on the stack */

/* A number by its value: an integral real within 2^53 as the integer it holds (every such double is
 * exact, and so is its long long), any other real as the shortest of "%.15g".."%.17g" that reads
 * back as the same double ("%.17g" always does). Non-finite reals cannot be in a jansson value;
 * refused rather than given some text another value might share. */
static int key_real(buf *b, double d)
{
    char t[40];
    int n;
    if (!isfinite(d))
        return -1;
    if (d == trunc(d) && fabs(d) <= 9007199254740992.0) {
        n = snprintf(t, sizeof t, "%lld", (long long)d); /* -0.0 -> "0" */
    } else {
        n = 0;
        for (int prec = 15; prec <= 17; prec++) {
            n = snprintf(t, sizeof t, "%.*g", prec, d);
            if (strtod(t, NULL) == d)
                break;
        }
    }
    return n > 0 && (size_t)n < sizeof t ? buf_append(b, t, (size_t)n) : -1;
}

typedef struct key_member {
    const char *key;
    size_t len;
    json_t *v;
} key_member;

static int key_member_cmp(const void *a, const void *b)
{
    const key_member *x = a, *y = b;
    int c = memcmp(x->key, y->key, x->len < y->len ? x->len : y->len);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

static int key_value(buf *b, json_t *v, int depth);

/* Sorting needs the members in an array: on the stack for small objects (most inputs), else one
 * allocation for the object's walk. */
static int key_object(buf *b, json_t *v, int depth)
{
    key_member stack[KEY_SORT_STACK], *m = stack;
    size_t n = json_object_size(v), i = 0;
    if (n > KEY_SORT_STACK && !(m = malloc(n * sizeof *m)))
        return -1;
    for (void *it = json_object_iter(v); it && i < n; it = json_object_iter_next(v, it))
        m[i++] = (key_member){json_object_iter_key(it), json_object_iter_key_len(it), json_object_iter_value(it)};
    qsort(m, i, sizeof *m, key_member_cmp);
    int rc = buf_append(b, "{", 1);
    for (size_t k = 0; rc == 0 && k < i; k++)
        rc = (k && buf_append(b, ",", 1) != 0) || buf_append_json_strn(b, m[k].key, m[k].len) != 0 ||
                     buf_append(b, ":", 1) != 0 || key_value(b, m[k].v, depth + 1) != 0
                 ? -1
                 : 0;
    if (m != stack)
        free(m);
    return rc != 0 ? -1 : buf_append(b, "}", 1);
}

static int key_array(buf *b, json_t *v, int depth)
{
    if (buf_append(b, "[", 1) != 0)
        return -1;
    for (size_t i = 0, n = json_array_size(v); i < n; i++)
        if ((i && buf_append(b, ",", 1) != 0) || key_value(b, json_array_get(v, i), depth + 1) != 0)
            return -1;
    return buf_append(b, "]", 1);
}

/* depth counts the containers around v; a container at depth KEY_MAX_DEPTH would be the 1001st. */
static int key_value(buf *b, json_t *v, int depth)
{
    if (!v)
        return buf_append(b, "null", 4);
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return depth >= KEY_MAX_DEPTH ? -1 : key_object(b, v, depth);
    case JSON_ARRAY:
        return depth >= KEY_MAX_DEPTH ? -1 : key_array(b, v, depth);
    case JSON_STRING:
        return buf_append_json_strn(b, json_string_value(v), json_string_length(v));
    case JSON_INTEGER: {
        char t[24];
        int n = snprintf(t, sizeof t, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return buf_append(b, t, (size_t)n);
    }
    case JSON_REAL:
        return key_real(b, json_real_value(v));
    case JSON_TRUE:
        return buf_append(b, "true", 4);
    case JSON_FALSE:
        return buf_append(b, "false", 5);
    default:
        return buf_append(b, "null", 4);
    }
}

int cache_canonical_json(json_t *v, buf *out)
{
    size_t len = out->len;
    if (key_value(out, v, 0) == 0)
        return 0;
    out->len = len; /* nothing half-written stays */
    if (out->data)
        out->data[len] = '\0';
    return -1;
}

/* ---- hashing ---- */

/* SHA-256 fetched once: OpenSSL 3's EVP_sha256() looks the algorithm up again on every digest. */
static EVP_MD *g_sha256;
static pthread_once_t g_sha256_once = PTHREAD_ONCE_INIT;

static void key_sha256_fetch(void)
{
    g_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static int key_sha256(const void *data, size_t n, unsigned char out[32])
{
    pthread_once(&g_sha256_once, key_sha256_fetch);
    unsigned int len = 0;
    return g_sha256 && EVP_Digest(data, n, out, &len, g_sha256, NULL) == 1 && len == 32 ? 0 : -1;
}

/* Appends the 8-byte little-endian length of a field to come. */
static int key_len_prefix(buf *b, size_t n)
{
    unsigned char le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (unsigned char)((uint64_t)n >> (8 * i));
    return buf_append(b, le, sizeof le);
}

static int key_field(buf *b, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    return key_len_prefix(b, n) != 0 || buf_append(b, s ? s : "", n) != 0 ? -1 : 0;
}

/* A JSON field: its length is only known once written, so the prefix is reserved and filled after. */
static int key_json_field(buf *b, json_t *v)
{
    size_t at = b->len;
    if (key_len_prefix(b, 0) != 0 || cache_canonical_json(v, b) != 0)
        return -1;
    uint64_t n = b->len - at - 8;
    for (int i = 0; i < 8; i++)
        b->data[at + (size_t)i] = (char)(unsigned char)(n >> (8 * i));
    return 0;
}

int cache_key_make(const char *name, const char *def_hash, unsigned long long gen, const char *scope, json_t *inputs,
                   json_t *params, cache_key *out)
{
    char g[24];
    snprintf(g, sizeof g, "%llu", gen);
    buf b = {0};
    int rc = buf_reserve(&b, 512) != 0 || key_field(&b, name) != 0 || key_field(&b, def_hash) != 0 ||
                     key_field(&b, g) != 0 || key_field(&b, scope) != 0 || key_json_field(&b, inputs) != 0 ||
                     key_json_field(&b, params) != 0 || key_sha256(b.data, b.len, out->d) != 0
                 ? -1
                 : 0;
    buf_free(&b);
    return rc;
}

void cache_key_hex(const cache_key *k, char out[65])
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[k->d[i] >> 4];
        out[2 * i + 1] = hex[k->d[i] & 15];
    }
    out[64] = '\0';
}

int cache_def_hash(json_t *normalized, char out[33])
{
    buf b = {0};
    cache_key k;
    int rc = cache_canonical_json(normalized, &b) != 0 || key_sha256(b.data ? b.data : "", b.len, k.d) != 0 ? -1 : 0;
    buf_free(&b);
    if (rc == 0) {
        char hex[65];
        cache_key_hex(&k, hex);
        memcpy(out, hex, 32);
        out[32] = '\0';
    }
    return rc;
}
