/* cache: the response cache's key (canonical JSON against jansson's dump, the length-prefixed
 * SHA-256, the definition hash) and its L1 layer (round trip, TTL, replace, LRU order, the byte
 * budget in its own count and in RSS, purge by tag, threads). */
#include <criterion/criterion.h>
#include <math.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kailash/cache.h"

#include "under_asan.h"

/* ---- canonical JSON ---- */

/* The canonical text of v (a new string, caller frees), or NULL when refused. */
static char *canon(json_t *v)
{
    buf b = {0};
    if (cache_canonical_json(v, &b) != 0) {
        buf_free(&b);
        return NULL;
    }
    cr_assert_eq(buf_terminate(&b), 0);
    return b.data;
}

static char *canon_text(const char *json)
{
    json_error_t e;
    json_t *v = json_loads(json, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
    cr_assert_not_null(v, "%s: %s", json, e.text);
    char *s = canon(v);
    json_decref(v);
    return s;
}

static void expect_canon(const char *json, const char *want)
{
    char *got = canon_text(json);
    cr_assert_not_null(got, "%s refused", json);
    cr_assert_str_eq(got, want, "%s", json);
    free(got);
}

static void expect_real(double d, const char *want)
{
    json_t *v = json_real(d);
    char *got = canon(v);
    cr_assert_not_null(got);
    cr_assert_str_eq(got, want, "%.17g", d);
    free(got);
    json_decref(v);
}

Test(cache_json, sorts_keys_at_every_level)
{
    expect_canon("{\"b\":1,\"a\":{\"d\":[3,{\"z\":1,\"y\":2}],\"c\":null}}",
                 "{\"a\":{\"c\":null,\"d\":[3,{\"y\":2,\"z\":1}]},\"b\":1}");
    /* by bytes, the shorter first on a common prefix; upper case (0x42) before lower, UTF-8 last */
    expect_canon("{\"ab\":1,\"\xc3\xa9\":2,\"a\":3,\"b\":4,\"B\":5,\"\":6}",
                 "{\"\":6,\"B\":5,\"a\":3,\"ab\":1,\"b\":4,\"\xc3\xa9\":2}");
    expect_canon("[]", "[]");
    expect_canon("{}", "{}");
    expect_canon("[true,false,null,\"x\",[{}]]", "[true,false,null,\"x\",[{}]]");
}

Test(cache_json, objects_of_many_members_sort_like_jansson)
{
    /* past the stack array: 100 members inserted in reverse, against jansson's JSON_SORT_KEYS */
    json_t *o = json_object();
    for (int i = 99; i >= 0; i--) {
        char k[16];
        snprintf(k, sizeof k, "k%d", i);
        json_object_set_new(o, k, json_integer(i));
    }
    char *got = canon(o);
    char *want = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    cr_assert_str_eq(got, want);
    free(got);
    free(want);
    json_decref(o);
}

Test(cache_json, numbers_compare_by_value)
{
    expect_real(1.0, "1");
    expect_real(-0.0, "0");
    expect_real(-3.0, "-3");
    expect_real(0.1, "0.1");
    expect_real(1.5, "1.5");
    expect_real(0.1 + 0.2, "0.30000000000000004");
    expect_real(1e300, "1e+300");
    expect_real(-2.5e-8, "-2.5e-08");
    expect_real(9007199254740992.0, "9007199254740992"); /* 2^53: still written as an integer */
    expect_real(-9007199254740992.0, "-9007199254740992");
    expect_real(36028797018963968.0, "3.602879701896397e+16"); /* 2^55: past 2^53, the shortest real form */
    expect_canon("{\"a\":1.0,\"b\":[2.0,-0.0]}", "{\"a\":1,\"b\":[2,0]}");
    expect_canon("9223372036854775807", "9223372036854775807");
    expect_canon("-9223372036854775808", "-9223372036854775808");
    /* every real written reads back as itself */
    double samples[] = {1.0 / 3, 2.0 / 3, 1e-300, 5e-324, 1.7976931348623157e308, 123456.789, 4.35, 1e21, 1e15 + 0.3};
    for (size_t i = 0; i < sizeof samples / sizeof *samples; i++) {
        json_t *v = json_real(samples[i]);
        char *s = canon(v);
        cr_assert_not_null(s);
        cr_assert_eq(strtod(s, NULL), samples[i], "%s", s);
        cr_assert_leq(strlen(s), 24, "%s", s);
        free(s);
        json_decref(v);
    }
}

/* A string value and a key holding it both come out as jansson's compact dump writes them. */
static void expect_string_like_jansson(const char *s, size_t n)
{
    json_t *v = json_stringn(s, n);
    cr_assert_not_null(v);
    char *want = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    char *got = canon(v);
    cr_assert_not_null(want);
    cr_assert_not_null(got);
    cr_assert_str_eq(got, want);
    free(got);
    free(want);
    json_decref(v);

    json_t *o = json_object();
    cr_assert_eq(json_object_setn_new(o, s, n, json_true()), 0);
    want = json_dumps(o, JSON_COMPACT);
    got = canon(o);
    cr_assert_str_eq(got, want);
    free(got);
    free(want);
    json_decref(o);
}

Test(cache_json, strings_escape_as_jansson_does)
{
    const char *cases[] = {
        "plain",
        "quote\" backslash\\ slash/",
        "\b\f\n\r\t",
        "\x01\x1f\x7f",
        "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
        "\xe2\x80\xa8 line sep",
        "",
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        expect_string_like_jansson(cases[i], strlen(cases[i]));
    expect_string_like_jansson("a\0b", 3); /* a NUL inside: written by length, as \u0000 */
    expect_canon("\"\\u0000\"", "\"\\u0000\"");
}

/* depth arrays, or objects, nested: [[[...1...]]] */
static json_t *nested(int depth, int objects)
{
    json_t *v = json_integer(1);
    for (int i = 0; i < depth; i++) {
        json_t *c = objects ? json_object() : json_array();
        if (objects)
            json_object_set_new(c, "k", v);
        else
            json_array_append_new(c, v);
        v = c;
    }
    return v;
}

Test(cache_json, nesting_past_the_writers_limit_refused)
{
    for (int objects = 0; objects <= 1; objects++) {
        json_t *ok = nested(1000, objects), *deep = nested(5000, objects);
        char *s = canon(ok);
        cr_assert_not_null(s, "1000 levels are allowed");
        cr_assert_eq(s[999], objects ? ':' : '[');
        free(s);

        buf b = {0};
        cr_assert_eq(buf_append(&b, "keep", 4), 0);
        cr_assert_eq(cache_canonical_json(deep, &b), -1);
        cr_assert_eq(b.len, 4, "a refused value leaves nothing behind");
        cr_assert_str_eq(b.data, "keep");
        buf_free(&b);
        json_decref(ok);
        json_decref(deep);
    }
}

Test(cache_json, null_and_appending)
{
    buf b = {0};
    cr_assert_eq(buf_append(&b, "x:", 2), 0);
    cr_assert_eq(cache_canonical_json(NULL, &b), 0);
    json_t *v = json_pack("{s:i}", "a", 1);
    cr_assert_eq(cache_canonical_json(v, &b), 0);
    cr_assert_str_eq(b.data, "x:null{\"a\":1}");
    json_decref(v);
    buf_free(&b);
}

/* ---- keys ---- */

static cache_key key_of(const char *name, const char *def, unsigned long long gen, const char *scope,
                        const char *inputs, const char *params)
{
    json_t *in = inputs ? json_loads(inputs, JSON_DECODE_ANY, NULL) : NULL;
    json_t *pa = params ? json_loads(params, JSON_DECODE_ANY, NULL) : NULL;
    cr_assert(!inputs || in);
    cr_assert(!params || pa);
    cache_key k;
    cr_assert_eq(cache_key_make(name, def, gen, scope, in, pa, &k), 0);
    json_decref(in);
    json_decref(pa);
    return k;
}

static int key_eq(cache_key a, cache_key b)
{
    return memcmp(a.d, b.d, sizeof a.d) == 0;
}

static void sha256(const void *p, size_t n, unsigned char out[32])
{
    unsigned len = 0;
    cr_assert_eq(EVP_Digest(p, n, out, &len, EVP_sha256(), NULL), 1);
}

Test(cache_key, is_sha256_of_length_prefixed_fields)
{
    /* the documented layout, built by hand: 8-byte little-endian length, then the bytes */
    static const char *fields[] = {"orders", "0123456789abcdef0123456789abcdef", "7", "u:42", "{\"a\":1,\"b\":[1]}",
                                   "null"};
    unsigned char msg[256];
    size_t n = 0;
    for (size_t i = 0; i < 6; i++) {
        size_t len = strlen(fields[i]);
        for (int j = 0; j < 8; j++)
            msg[n++] = (unsigned char)(len >> (8 * j));
        memcpy(msg + n, fields[i], len);
        n += len;
    }
    cache_key want;
    sha256(msg, n, want.d);
    cache_key got = key_of("orders", fields[1], 7, "u:42", "{\"b\":[1.0],\"a\":1}", NULL);
    cr_assert(key_eq(got, want));

    char hex[65], want_hex[65];
    cache_key_hex(&got, hex);
    for (int i = 0; i < 32; i++)
        snprintf(want_hex + 2 * i, 3, "%02x", want.d[i]);
    cr_assert_str_eq(hex, want_hex);
    cr_assert_eq(strlen(hex), 64);
}

Test(cache_key, same_json_in_any_key_order_gives_the_same_key)
{
    cache_key a = key_of("w", "d", 0, NULL, "{\"x\":{\"p\":1,\"q\":[1,2]},\"y\":\"s\",\"z\":1.0}", "{\"m\":1,\"n\":2}");
    cache_key b = key_of("w", "d", 0, NULL, "{\"z\":1,\"y\":\"s\",\"x\":{\"q\":[1.0,2],\"p\":1}}", "{\"n\":2,\"m\":1}");
    cr_assert(key_eq(a, b));
    /* NULL scope is "", NULL params is null */
    cr_assert(key_eq(key_of("w", "d", 0, NULL, "{}", NULL), key_of("w", "d", 0, "", "{}", "null")));
}

Test(cache_key, every_field_changes_the_key)
{
    cache_key base = key_of("w", "d", 1, "s", "{\"a\":1}", "{\"p\":1}");
    cache_key others[] = {
        key_of("w2", "d", 1, "s", "{\"a\":1}", "{\"p\":1}"),
        key_of("w", "d2", 1, "s", "{\"a\":1}", "{\"p\":1}"),
        key_of("w", "d", 2, "s", "{\"a\":1}", "{\"p\":1}"),
        key_of("w", "d", 1, "t", "{\"a\":1}", "{\"p\":1}"),
        key_of("w", "d", 1, NULL, "{\"a\":1}", "{\"p\":1}"),
        key_of("w", "d", 1, "s", "{\"a\":2}", "{\"p\":1}"),
        key_of("w", "d", 1, "s", "{\"a\":\"1\"}", "{\"p\":1}"),
        key_of("w", "d", 1, "s", "{\"a\":1}", "{\"p\":2}"),
        key_of("w", "d", 1, "s", "{\"a\":1}", NULL),
        key_of("w", "d", 1, "s", "{\"p\":1}", "{\"a\":1}"),
        key_of("w", "d", 1, "s", "{\"a\":1.5}", "{\"p\":1}"),
    };
    size_t n = sizeof others / sizeof *others;
    for (size_t i = 0; i < n; i++) {
        cr_assert(!key_eq(base, others[i]), "variant %zu", i);
        for (size_t j = i + 1; j < n; j++)
            cr_assert(!key_eq(others[i], others[j]), "variants %zu and %zu", i, j);
    }
}

Test(cache_key, a_shifted_field_boundary_is_another_key)
{
    cr_assert(!key_eq(key_of("ab", "c", 0, NULL, NULL, NULL), key_of("a", "bc", 0, NULL, NULL, NULL)));
    cr_assert(!key_eq(key_of("w", "d", 1, "2", NULL, NULL), key_of("w", "d", 12, "", NULL, NULL)));
    cr_assert(!key_eq(key_of("w", "d", 0, "x", "1", NULL), key_of("w", "d", 0, "x1", NULL, NULL)));
}

Test(cache_key, definition_hash)
{
    json_t *a = json_loads("{\"nodes\":[{\"id\":\"n\",\"type\":\"Merge\"}],\"name\":\"w\",\"v\":1.0}", 0, NULL);
    json_t *b = json_loads("{\"v\":1,\"name\":\"w\",\"nodes\":[{\"type\":\"Merge\",\"id\":\"n\"}]}", 0, NULL);
    json_t *c = json_loads("{\"v\":2,\"name\":\"w\",\"nodes\":[{\"type\":\"Merge\",\"id\":\"n\"}]}", 0, NULL);
    char ha[33], hb[33], hc[33];
    cr_assert_eq(cache_def_hash(a, ha), 0);
    cr_assert_eq(cache_def_hash(b, hb), 0);
    cr_assert_eq(cache_def_hash(c, hc), 0);
    cr_assert_str_eq(ha, hb);
    cr_assert_str_neq(ha, hc);

    /* the first 16 bytes of the SHA-256 of the canonical text, in lower-case hex */
    char *text = canon(a);
    cache_key d;
    sha256(text, strlen(text), d.d);
    char hex[65];
    cache_key_hex(&d, hex);
    hex[32] = '\0';
    cr_assert_str_eq(ha, hex);
    free(text);

    json_t *deep = nested(5000, 0);
    cr_assert_eq(cache_def_hash(deep, ha), -1);
    json_decref(deep);
    json_decref(a);
    json_decref(b);
    json_decref(c);
}

/* ---- L1 ---- */

static cache_key k_n(unsigned i)
{
    cache_key k;
    cr_assert_eq(cache_key_make("l1", "def", i, NULL, NULL, NULL, &k), 0);
    return k;
}

static cache_l1_stats stats(cache_l1 *c)
{
    cache_l1_stats s;
    cache_l1_get_stats(c, &s);
    return s;
}

/* cache_l1_get into a fresh buffer; returns its result, the bytes in *got (caller frees). */
static int get(cache_l1 *c, cache_key k, double now, buf *got, double *stored)
{
    *got = (buf){0};
    return cache_l1_get(c, &k, now, got, stored);
}

Test(cache_l1, put_get_round_trip)
{
    cache_l1 *c = cache_l1_new(16u << 20);
    cr_assert_not_null(c);
    cache_key k = k_n(1);
    cr_assert_eq(cache_l1_put(c, &k, "{\"out\":1}", 9, 1000.0, 60000.0, 7), 0);

    buf out = {0};
    cr_assert_eq(buf_append(&out, "pre", 3), 0);
    double stored = 0;
    cr_assert_eq(cache_l1_get(c, &k, 2000.0, &out, &stored), 1);
    cr_assert_eq(out.len, 12);
    cr_assert_str_eq(out.data, "pre{\"out\":1}", "appended to what out held");
    cr_assert_eq(stored, 1000.0);

    /* out already large enough: copied in place */
    out.len = 0;
    cr_assert_eq(buf_reserve(&out, 4096), 0);
    char *data = out.data;
    cr_assert_eq(cache_l1_get(c, &k, 2000.0, &out, &stored), 1);
    cr_assert_eq(out.data, data);
    cr_assert_eq(memcmp(out.data, "{\"out\":1}", 9), 0);

    cache_key other = k_n(2);
    buf miss;
    cr_assert_eq(get(c, other, 2000.0, &miss, &stored), 0);
    cr_assert_eq(miss.len, 0);
    cache_l1_stats s = stats(c);
    cr_assert_eq(s.entries, 1);
    cr_assert_eq(s.hits, 2);
    cr_assert_eq(s.misses, 1);
    cr_assert_eq(s.puts, 1);
    cr_assert_geq(s.bytes, 9 + 32, "the entry and its bookkeeping are counted");

    /* an empty value is a value */
    cr_assert_eq(cache_l1_put(c, &other, "", 0, 1000.0, 60000.0, 7), 0);
    cr_assert_eq(get(c, other, 2000.0, &miss, &stored), 1);
    cr_assert_eq(miss.len, 0);
    buf_free(&miss);
    buf_free(&out);
    cache_l1_free(c);
}

Test(cache_l1, ttl_expiry)
{
    cache_l1 *c = cache_l1_new(16u << 20);
    cache_key k = k_n(1);
    cr_assert_eq(cache_l1_put(c, &k, "v", 1, 1000.0, 500.0, 1), 0);
    buf out;
    double stored;
    cr_assert_eq(get(c, k, 1499.0, &out, &stored), 1);
    buf_free(&out);
    cr_assert_eq(get(c, k, 1500.0, &out, &stored), 0, "expired at now + ttl");
    cr_assert_eq(stats(c).expired, 1);
    cr_assert_eq(stats(c).entries, 0, "an expired entry met by a get is dropped");
    cr_assert_eq(get(c, k, 1000.0, &out, &stored), 0, "and stays dropped");
    cr_assert_eq(stats(c).misses, 2);

    /* ttl <= 0 stores nothing, and drops what the key held */
    cr_assert_eq(cache_l1_put(c, &k, "v", 1, 1000.0, 60000.0, 1), 0);
    cr_assert_eq(cache_l1_put(c, &k, "w", 1, 1000.0, 0.0, 1), 0);
    cr_assert_eq(get(c, k, 1001.0, &out, &stored), 0);
    cr_assert_eq(stats(c).entries, 0);
    cache_l1_free(c);
}

Test(cache_l1, replace)
{
    cache_l1 *c = cache_l1_new(16u << 20);
    cache_key k = k_n(1);
    char big[5000];
    memset(big, 'x', sizeof big);
    cr_assert_eq(cache_l1_put(c, &k, big, sizeof big, 1000.0, 60000.0, 1), 0);
    size_t bytes_big = stats(c).bytes;
    cr_assert_eq(cache_l1_put(c, &k, "second", 6, 2000.0, 60000.0, 2), 0);
    cache_l1_stats s = stats(c);
    cr_assert_eq(s.entries, 1);
    cr_assert_lt(s.bytes, bytes_big - 4000, "the replaced entry's bytes are given back");
    buf out;
    double stored;
    cr_assert_eq(get(c, k, 2500.0, &out, &stored), 1);
    cr_assert_eq(out.len, 6);
    cr_assert_eq(memcmp(out.data, "second", 6), 0);
    cr_assert_eq(stored, 2000.0);
    buf_free(&out);
    cr_assert_eq(cache_l1_purge(c, 1), 0, "the old tag went with the old entry");
    cr_assert_eq(cache_l1_purge(c, 2), 1);
    cache_l1_free(c);
}

Test(cache_l1, lru_eviction_order_within_the_budget)
{
    /* 64 KiB: one shard; four 14 KiB entries fit, a fifth does not */
    size_t budget = 64u << 10;
    cache_l1 *c = cache_l1_new(budget);
    char val[14u << 10];
    memset(val, 'v', sizeof val);
    cache_key k[6];
    for (unsigned i = 0; i < 6; i++)
        k[i] = k_n(i);
    for (unsigned i = 0; i < 4; i++)
        cr_assert_eq(cache_l1_put(c, &k[i], val, sizeof val, 1000.0, 60000.0, 1), 0);
    cr_assert_eq(stats(c).entries, 4);
    cr_assert_eq(stats(c).evictions, 0);

    buf out;
    double stored;
    cr_assert_eq(get(c, k[0], 1100.0, &out, &stored), 1); /* k0 is now the most recent: k1 the least */
    buf_free(&out);
    cr_assert_eq(cache_l1_put(c, &k[4], val, sizeof val, 1200.0, 60000.0, 1), 0);
    cache_l1_stats s = stats(c);
    cr_assert_eq(s.evictions, 1);
    cr_assert_eq(s.entries, 4);
    cr_assert_leq(s.bytes, budget);
    cr_assert_eq(get(c, k[1], 1300.0, &out, &stored), 0, "the least recently used went");
    int expect[] = {1, 0, 1, 1, 1};
    for (unsigned i = 0; i < 5; i++) {
        cr_assert_eq(get(c, k[i], 1300.0, &out, &stored), expect[i], "k%u", i);
        buf_free(&out);
    }
    /* order now (oldest first): k0 k2 k3 k4, all touched in that order; k5 pushes out k0 */
    cr_assert_eq(cache_l1_put(c, &k[5], val, sizeof val, 1400.0, 60000.0, 1), 0);
    cr_assert_eq(get(c, k[0], 1500.0, &out, &stored), 0);
    cr_assert_eq(get(c, k[2], 1500.0, &out, &stored), 1);
    buf_free(&out);
    cr_assert_eq(stats(c).evictions, 2);
    cache_l1_free(c);
}

Test(cache_l1, expired_entries_at_the_tail_go_before_live_ones)
{
    cache_l1 *c = cache_l1_new(64u << 10);
    char val[14u << 10];
    memset(val, 'v', sizeof val);
    cache_key k[5];
    for (unsigned i = 0; i < 5; i++)
        k[i] = k_n(i);
    cr_assert_eq(cache_l1_put(c, &k[0], val, sizeof val, 1000.0, 100.0, 1), 0); /* expires at 1100 */
    for (unsigned i = 1; i < 4; i++)
        cr_assert_eq(cache_l1_put(c, &k[i], val, sizeof val, 1000.0, 60000.0, 1), 0);
    cr_assert_eq(cache_l1_put(c, &k[4], val, sizeof val, 2000.0, 60000.0, 1), 0);
    cache_l1_stats s = stats(c);
    cr_assert_eq(s.expired, 1);
    cr_assert_eq(s.evictions, 0);
    cr_assert_eq(s.entries, 4);
    cache_l1_free(c);
}

Test(cache_l1, an_entry_larger_than_a_shard_is_refused)
{
    cache_l1 *c = cache_l1_new(64u << 10); /* one shard of 64 KiB */
    size_t n = 64u << 10;
    char *val = calloc(1, 1u << 20);
    cache_key k = k_n(1);
    cr_assert_eq(cache_l1_put(c, &k, "old", 3, 1000.0, 60000.0, 1), 0);
    cr_assert_eq(cache_l1_put(c, &k, val, n, 1000.0, 60000.0, 1), -1, "its bookkeeping does not fit");
    cr_assert_eq(cache_l1_put(c, &k, val, n + 1, 1000.0, 60000.0, 1), -1);
    buf out;
    double stored;
    cr_assert_eq(get(c, k, 1100.0, &out, &stored), 1, "a refused put leaves what was there");
    cr_assert_eq(memcmp(out.data, "old", 3), 0);
    buf_free(&out);
    cr_assert_eq(cache_l1_put(c, &k, val, n - 4096, 1000.0, 60000.0, 1), 0);
    cache_l1_free(c);

    c = cache_l1_new(16u << 20); /* 16 shards of 1 MiB */
    cr_assert_eq(cache_l1_put(c, &k, val, 1u << 20, 1000.0, 60000.0, 1), -1);
    cr_assert_eq(cache_l1_put(c, &k, val, 900u << 10, 1000.0, 60000.0, 1), 0);
    cr_assert_eq(stats(c).entries, 1);
    cache_l1_free(c);
    free(val);
}

Test(cache_l1, purge_by_tag_and_del)
{
    cache_l1 *c = cache_l1_new(16u << 20);
    for (unsigned i = 0; i < 30; i++) {
        cache_key k = k_n(i);
        cr_assert_eq(cache_l1_put(c, &k, "x", 1, 1000.0, 60000.0, i % 3 == 0 ? 11 : 22), 0);
    }
    cr_assert_eq(cache_l1_purge(c, 11), 10);
    cr_assert_eq(stats(c).entries, 20);
    for (unsigned i = 0; i < 30; i++) {
        buf out;
        double stored;
        cr_assert_eq(get(c, k_n(i), 1100.0, &out, &stored), i % 3 == 0 ? 0 : 1, "k%u", i);
        buf_free(&out);
    }
    cr_assert_eq(cache_l1_purge(c, 11), 0);
    cr_assert_eq(cache_l1_purge(c, 33), 0);

    cache_key k1 = k_n(1);
    cr_assert_eq(cache_l1_del(c, &k1), 1);
    cr_assert_eq(cache_l1_del(c, &k1), 0);
    cr_assert_eq(stats(c).entries, 19);
    cr_assert_eq(cache_l1_purge(c, 22), 19);
    cache_l1_stats s = stats(c);
    cr_assert_eq(s.entries, 0);
    cache_l1_free(c);
}

static size_t rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, resident = 0;
    cr_assert_not_null(f);
    cr_assert_eq(fscanf(f, "%lu %lu", &size, &resident), 2);
    fclose(f);
    return resident * (size_t)sysconf(_SC_PAGESIZE);
}

Test(cache_l1, byte_budget_holds_under_many_large_entries)
{
    size_t budget = 16u << 20, n = 64u << 10;
    char *val = malloc(n);
    memset(val, 'r', n);
    size_t rss0 = rss_bytes();
    cache_l1 *c = cache_l1_new(budget);
    for (unsigned i = 0; i < 10000; i++) {
        cache_key k = k_n(i);
        val[0] = (char)i;
        cr_assert_eq(cache_l1_put(c, &k, val, n, 1000.0 + i, 600000.0, 1), 0);
        if (i % 1000 == 999)
            cr_assert_leq(stats(c).bytes, budget, "after %u puts", i + 1);
    }
    cache_l1_stats s = stats(c);
    cr_assert_leq(s.bytes, budget);
    cr_assert_geq(s.entries, budget / n * 3 / 4, "the budget is used: %zu entries", s.entries);
    cr_assert_eq(s.evictions + s.entries, 10000);
    size_t rss = rss_bytes();
    cr_log_info("RSS grew by %zu KiB for a %zu KiB budget", (rss - rss0) >> 10, budget >> 10);
    if (!UNDER_ASAN)
        cr_assert_lt(rss, rss0 + budget + (8u << 20), "RSS grew by %zu KiB", (rss - rss0) >> 10);

    buf out;
    double stored;
    cache_key last = k_n(9999);
    cr_assert_eq(get(c, last, 20000.0, &out, &stored), 1);
    cr_assert_eq(out.len, n);
    cr_assert_eq(out.data[0], (char)9999);
    buf_free(&out);
    cache_l1_free(c);
    free(val);
}

/* ---- threads ---- */

#define T_KEYS 64
#define T_OPS 5000

typedef struct t_arg {
    cache_l1 *c;
    cache_key *keys;
    unsigned seed;
    unsigned long long gets, hits, puts, bad;
} t_arg;

static void *t_run(void *p)
{
    t_arg *a = p;
    char *val = malloc(64u << 10);
    buf out = {0};
    for (int i = 0; i < T_OPS; i++) {
        unsigned r = (unsigned)rand_r(&a->seed);
        unsigned ki = r % T_KEYS;
        if ((r >> 8) % 3 == 0) {
            /* a value is its key's index in every byte, so a torn or mixed-up copy shows */
            size_t len = 1 + (r >> 12) % (64u << 10);
            memset(val, (int)ki, len);
            if (cache_l1_put(a->c, &a->keys[ki], val, len, util_now_ms(), 60000.0, ki % 4) == 0)
                a->puts++;
            else
                a->bad++;
        } else {
            out.len = 0;
            double stored;
            int rc = cache_l1_get(a->c, &a->keys[ki], util_now_ms(), &out, &stored);
            a->gets++;
            if (rc == 1) {
                a->hits++;
                for (size_t j = 0; j < out.len; j++)
                    if ((unsigned char)out.data[j] != ki) {
                        a->bad++;
                        break;
                    }
            } else if (rc != 0) {
                a->bad++;
            }
        }
        if (i % 1000 == 500)
            cache_l1_purge(a->c, r % 4);
        if (i % 700 == 300)
            cache_l1_del(a->c, &a->keys[(ki + 1) % T_KEYS]);
    }
    buf_free(&out);
    free(val);
    return NULL;
}

Test(cache_l1, threads_on_shared_keys)
{
    size_t budget = 2u << 20; /* two shards, smaller than the keys' values: evictions happen */
    cache_l1 *c = cache_l1_new(budget);
    cache_key keys[T_KEYS];
    for (unsigned i = 0; i < T_KEYS; i++)
        keys[i] = k_n(i);
    pthread_t th[4];
    t_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (t_arg){.c = c, .keys = keys, .seed = 1234u + (unsigned)i};
        cr_assert_eq(pthread_create(&th[i], NULL, t_run, &args[i]), 0);
    }
    unsigned long long gets = 0, hits = 0, puts = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(args[i].bad, 0, "thread %d saw %llu bad results", i, args[i].bad);
        gets += args[i].gets;
        hits += args[i].hits;
        puts += args[i].puts;
    }
    cache_l1_stats s = stats(c);
    cr_assert_eq(s.hits, hits);
    cr_assert_eq(s.hits + s.misses, gets);
    cr_assert_eq(s.puts, puts);
    cr_assert_gt(hits, 0);
    cr_assert_gt(s.evictions, 0);
    cr_assert_leq(s.entries, T_KEYS);
    cr_assert_leq(s.bytes, budget);
    cache_l1_free(c);
}
