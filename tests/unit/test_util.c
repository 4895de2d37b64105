/* util: ids, JSON string escaping, the JSON writer (against jansson), JSON paths, bounded file reads,
 * timestamps, durations, CIDRs. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <regex.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kailash/util.h"

Test(util, uuid7_is_well_formed_unique_and_time_ordered)
{
    regex_t re;
    cr_assert_eq(
        regcomp(&re, "^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$", REG_EXTENDED | REG_NOSUB),
        0);
    char prev[37] = "", id[37];
    for (int i = 0; i < 2000; i++) {
        util_uuid7(id);
        cr_assert_eq(regexec(&re, id, 0, NULL, 0), 0, "%s", id);
        cr_assert_str_neq(id, prev);
        /* the first 48 bits are milliseconds: never going backwards */
        cr_assert_leq(strncmp(prev, id, 13), 0, "%s then %s", prev, id);
        memcpy(prev, id, sizeof id);
    }
    regfree(&re);
}

Test(util, json_string_escaping)
{
    buf b = {0};
    cr_assert_eq(buf_append_json_str(&b, "a\"b\\c\n\x01z"), 0);
    cr_assert_str_eq(b.data, "\"a\\\"b\\\\c\\n\\u0001z\""); /* jansson's escapes */
    json_t *back = json_loads(b.data, JSON_DECODE_ANY, NULL);
    cr_assert_str_eq(json_string_value(back), "a\"b\\c\n\x01z");
    json_decref(back);
    buf_free(&b);
}

Test(util, buf_grows_and_formats)
{
    buf b = {0};
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(buf_appendf(&b, "%d,", i), 0);
    cr_assert_eq(strncmp(b.data, "0,1,2,", 6), 0);
    cr_assert_eq(b.len, strlen(b.data));
    buf_free(&b);
    cr_assert_null(b.data);
}

Test(util, json_paths)
{
    json_t *v = json_loads("{\"a\":{\"b\":[10,{\"c\":\"x\"}]}}", 0, NULL);
    cr_assert_eq(json_integer_value(util_json_path(v, "a.b.0")), 10);
    cr_assert_str_eq(json_string_value(util_json_path(v, "a.b[1].c")), "x");
    cr_assert_null(util_json_path(v, "a.b.7"));
    cr_assert_null(util_json_path(v, "a.zz.c"));
    cr_assert_null(util_json_path(v, "a.b.x"));
    cr_assert_eq(util_json_path(v, ""), v);
    json_decref(v);
}

Test(util, read_file_bounded)
{
    char path[] = "/tmp/kutilXXXXXX";
    int fd = mkstemp(path);
    cr_assert(write(fd, "0123456789", 10) == 10);
    close(fd);
    char err[256];
    size_t n;
    char *s = util_read_file(path, 10, &n, err, sizeof err);
    cr_assert_not_null(s, "%s", err);
    cr_assert_eq(n, 10);
    cr_assert_str_eq(s, "0123456789");
    free(s);
    cr_assert_null(util_read_file(path, 9, &n, err, sizeof err));
    cr_assert(strstr(err, "larger than 9 bytes"), "%s", err);
    unlink(path);
    cr_assert_null(util_read_file(path, 9, &n, err, sizeof err));
}

/* A FIFO (or directory) named as a file is refused at once: opening a FIFO for reading used to wait
 * for a writer forever, which hung `kailashd --check` and every reload. The timeout turns such a
 * hang into a failure. */
Test(util, read_file_refuses_fifo_and_directory_without_blocking, .timeout = 10)
{
    char dir[] = "/tmp/kutildXXXXXX", fifo[64], err[256] = "";
    cr_assert_not_null(mkdtemp(dir));
    snprintf(fifo, sizeof fifo, "%s/f.json", dir);
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    cr_assert_null(util_read_file(fifo, 1 << 20, NULL, err, sizeof err));
    cr_assert(strstr(err, "f.json: not a regular file (a FIFO)"), "%s", err);
    cr_assert_null(util_read_file(dir, 1 << 20, NULL, err, sizeof err));
    cr_assert(strstr(err, ": not a regular file (a directory)"), "%s", err);
    unlink(fifo);
    rmdir(dir);
}

/* A symlink to a regular file is read: operators link config and workflows into place. */
Test(util, read_file_follows_symlinks)
{
    char path[] = "/tmp/kutilsXXXXXX", link[64], err[256] = "";
    int fd = mkstemp(path);
    cr_assert(write(fd, "{}", 2) == 2);
    close(fd);
    snprintf(link, sizeof link, "%s.lnk", path);
    cr_assert_eq(symlink(path, link), 0);
    char *s = util_read_file(link, 16, NULL, err, sizeof err);
    cr_assert_not_null(s, "%s", err);
    cr_assert_str_eq(s, "{}");
    free(s);
    unlink(link);
    unlink(path);
}

Test(util, rfc3339_milliseconds)
{
    char ts[40];
    util_rfc3339_now(ts, sizeof ts);
    regex_t re;
    regcomp(&re, "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z$", REG_EXTENDED | REG_NOSUB);
    cr_assert_eq(regexec(&re, ts, 0, NULL, 0), 0, "%s", ts);
    regfree(&re);
}

/* The cached per-second part follows the clock: it matches a fresh gmtime of the same second, and
 * it changes when the second does. */
Test(util, rfc3339_follows_the_clock_across_seconds)
{
    for (int i = 0; i < 3; i++) {
        char ts[40], want[24];
        time_t before = time(NULL);
        util_rfc3339_now(ts, sizeof ts);
        time_t after = time(NULL);
        if (before != after) { /* a second turned over in between: try again */
            i--;
            continue;
        }
        struct tm tm;
        gmtime_r(&before, &tm);
        strftime(want, sizeof want, "%Y-%m-%dT%H:%M:%S", &tm);
        cr_assert_eq(strncmp(ts, want, strlen(want)), 0, "%s against %s", ts, want);
        usleep(600 * 1000);
    }
}

Test(util, fmt_ms_writes_what_printf_writes)
{
    double samples[] = {0,      0.0004,   0.0005, 0.0015,     0.0025,     0.475,     1,    9.9995,
                        12.345, 999.9999, 1000,   123456.789, 1e11 + 0.5, 0.1 + 0.2, -1.5, 2e12};
    for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++) {
        char want[64], got[32];
        snprintf(want, sizeof want, "%.3f", samples[i]);
        size_t n = util_fmt_ms(got, samples[i]);
        cr_assert_str_eq(got, want, "%.17g", samples[i]);
        cr_assert_eq(n, strlen(want));
    }
    for (int i = 0; i < 200000; i++) { /* a sweep over the values durations take */
        double v = i * 0.0137 + i * 1e-7;
        char want[64], got[32];
        snprintf(want, sizeof want, "%.3f", v);
        util_fmt_ms(got, v);
        cr_assert_str_eq(got, want, "%.17g", v);
    }
}

/* buf_append_json_as(flags) writes what jansson's json_dumps(jflags) writes. The answers' writer
 * (flags 0) differs only where jansson's precision 15 loses a real: then what it writes must read
 * back exactly equal. */
static void same_as_jansson_with(json_t *v, unsigned flags, size_t jflags)
{
    char *want = json_dumps(v, jflags | JSON_ENCODE_ANY);
    buf b = {0};
    cr_assert_eq(flags ? buf_append_json_as(&b, v, flags) : buf_append_json(&b, v), 0);
    cr_assert_not_null(want);
    if (!flags && (b.len != strlen(want) || memcmp(b.data, want, b.len) != 0)) {
        json_t *back = json_loadb(b.data, b.len, JSON_DECODE_ANY, NULL);
        cr_assert(json_equal(back, v), "a real changed: %.*s", (int)b.len, b.data);
        json_decref(back);
        free(want);
        buf_free(&b);
        return;
    }
    cr_assert_eq(b.len, strlen(want), "length: got %zu, jansson %zu: %s", b.len, strlen(want), want);
    cr_assert_eq(memcmp(b.data, want, b.len), 0, "got %.*s\njansson %s", (int)b.len, b.data, want);
    free(want);
    buf_free(&b);
}

/* buf_append_json writes what jansson's json_dumps writes with the answers' flags. */
static void same_as_jansson(json_t *v)
{
    same_as_jansson_with(v, 0, JSON_COMPACT | JSON_REAL_PRECISION(15));
}

/* The canonical form is json_dumps' with sorted keys and its default precision (17). */
static void canonical_as_jansson(json_t *v)
{
    same_as_jansson_with(v, BUF_JSON_CANONICAL, JSON_COMPACT | JSON_SORT_KEYS);
}

Test(util, json_writer_matches_jansson_on_edge_values)
{
    char controls[40];
    for (int i = 0; i < 32; i++)
        controls[i] = (char)(i + 1 == 32 ? 0x1f : i + 1);
    controls[31] = '"';
    json_t *v = json_pack("{s:s, s:s%, s:s, s:I, s:I, s:I, s:[f,f,f,f,f,f,f,f,f,f,f], s:{}, s:[], s:b, s:b, s:n}",
                          "plain", "hello", "controls", controls, (size_t)32, "quotes \"\\/ é 日本 😀", "q\"k", "zero",
                          (json_int_t)0, "min", (json_int_t)INT64_MIN, "max", (json_int_t)INT64_MAX, "reals", 0.683,
                          1.0, -0.0, 0.1, 1e300, 1e-7, 5e-324, 1e21, -2.5e-10, 3.0e15, 100.0,
                          "empty_obj", "empty_arr", "t", 1, "f", 0, "nil");
    cr_assert_not_null(v);
    json_object_set_new(v, "nul", json_stringn("a\0b", 3));
    json_object_set_new(v, "key\nwith\tescapes", json_integer(-42));
    same_as_jansson(v);
    canonical_as_jansson(v);
    json_decref(v);
    json_t *scalars[] = {json_string(""), json_integer(7), json_real(2.5), json_true(), json_null(), json_real(0.1)};
    for (size_t i = 0; i < 6; i++) {
        same_as_jansson(scalars[i]);
        canonical_as_jansson(scalars[i]);
        json_decref(scalars[i]);
    }
}

/* Keys that share a prefix, differ only in length, hold NUL or bytes >= 0x80, in several insertion
 * orders: sorted as jansson sorts them. */
Test(json_write, canonical_sorts_keys_as_jansson_does)
{
    static const struct {
        const char *k;
        size_t n;
    } keys[] = {{"b", 1}, {"a", 1}, {"", 0}, {"ab", 2}, {"a\0", 2}, {"a\0b", 3}, {"\xc3\xa9", 2},
                {"Z", 1}, {"aa", 2}, {"_", 1}, {"a b", 3}, {"\x7f", 1}};
    size_t nk = sizeof keys / sizeof keys[0];
    for (size_t rot = 0; rot < nk; rot++) {
        json_t *o = json_object(), *inner = json_object();
        for (size_t i = 0; i < nk; i++) {
            size_t j = (i * 5 + rot) % nk;
            json_object_setn_new(o, keys[j].k, keys[j].n, json_integer((json_int_t)j));
            json_object_setn_new(inner, keys[(j + 3) % nk].k, keys[(j + 3) % nk].n, json_real(0.1 * (double)j));
        }
        json_object_set_new(o, "nested", json_pack("[o,{s:o}]", inner, "z", json_object()));
        canonical_as_jansson(o);
        json_decref(o);
    }
}

/* Equal values built in different key orders give the same canonical bytes. */
Test(json_write, canonical_is_independent_of_insertion_order)
{
    json_t *x = json_pack("{s:i,s:{s:[i,f],s:s},s:n}", "b", 1, "a", "y", 2, 0.5, "x", "s", "c");
    json_t *y = json_pack("{s:n,s:{s:s,s:[i,f]},s:i}", "c", "a", "x", "s", "y", 2, 0.5, "b", 1);
    buf bx = {0}, by = {0};
    cr_assert_eq(buf_append_json_as(&bx, x, BUF_JSON_CANONICAL), 0);
    cr_assert_eq(buf_append_json_as(&by, y, BUF_JSON_CANONICAL), 0);
    cr_assert_str_eq(bx.data, by.data);
    cr_assert_str_eq(bx.data, "{\"a\":{\"x\":\"s\",\"y\":[2,0.5]},\"b\":1,\"c\":null}");
    buf_free(&bx);
    buf_free(&by);
    json_decref(x);
    json_decref(y);
}

/* The template language's reals: shortest text that reads back, always marked as a real. */
Test(json_write, shortest_reals_as_the_template_language_writes_them)
{
    static const struct {
        double d;
        const char *want;
    } cases[] = {{0.1, "0.1"}, {2.0, "2.0"}, {1.5, "1.5"}, {-0.0, "-0.0"}, {1e300, "1e+300"},
                 {0.30000000000000004, "0.30000000000000004"}, {123456789012345678.0, "1.2345678901234568e+17"},
                 {5e-324, "4.94065645841247e-324"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        buf b = {0};
        json_t *v = json_real(cases[i].d);
        cr_assert_eq(buf_append_json_as(&b, v, BUF_JSON_REAL_SHORTEST), 0);
        cr_assert_str_eq(b.data, cases[i].want);
        buf_free(&b);
        json_decref(v);
    }
}

/* Random trees: every kind of value, nested, with keys added in no particular order. */
static json_t *random_json(unsigned *seed, int depth)
{
    int kind = depth > 4 ? 2 + rand_r(seed) % 6 : rand_r(seed) % 8;
    char s[24];
    size_t n = (size_t)(rand_r(seed) % (int)sizeof s);
    for (size_t i = 0; i < n; i++)
        s[i] = (char)(1 + rand_r(seed) % 126);
    switch (kind) {
    case 0: {
        json_t *o = json_object();
        for (int i = rand_r(seed) % 5; i > 0; i--)
            json_object_setn_new(o, s, (size_t)(rand_r(seed) % ((int)n + 1)), random_json(seed, depth + 1));
        return o;
    }
    case 1: {
        json_t *a = json_array();
        for (int i = rand_r(seed) % 5; i > 0; i--)
            json_array_append_new(a, random_json(seed, depth + 1));
        return a;
    }
    case 2:
        return json_stringn(s, n);
    case 3:
        return json_integer((json_int_t)rand_r(seed) * (rand_r(seed) % 2 ? -1 : 1) * rand_r(seed));
    case 4:
        return json_real((double)rand_r(seed) / (1 + rand_r(seed) % 100000) * (rand_r(seed) % 2 ? 1e-9 : 1e9));
    case 5:
        return json_real((double)(rand_r(seed) % 100000) / 1000.0);
    case 6:
        return rand_r(seed) % 2 ? json_true() : json_false();
    default:
        return json_null();
    }
}

Test(util, json_writer_matches_jansson_on_random_trees)
{
    unsigned seed = 12345;
    for (int i = 0; i < 2000; i++) {
        json_t *v = random_json(&seed, 0);
        same_as_jansson(v);
        canonical_as_jansson(v);
        json_decref(v);
    }
}

Test(util, json_writer_refuses_runaway_nesting_and_leaves_the_buffer)
{
    json_t *root = json_array(), *cur = root;
    for (int i = 0; i < 5000; i++) {
        json_t *next = json_array();
        json_array_append_new(cur, next);
        cur = next;
    }
    buf b = {0};
    buf_append(&b, "x", 1);
    cr_assert_eq(buf_append_json(&b, root), -1);
    cr_assert_eq(b.len, 1);
    buf_free(&b);
    json_decref(root);
}

Test(util, buf_reserve_then_append_keeps_one_block)
{
    buf b = {0};
    cr_assert_eq(buf_reserve(&b, 500), 0);
    char *block = b.data;
    cr_assert_geq(b.cap, 501);
    for (int i = 0; i < 50; i++)
        cr_assert_eq(buf_append(&b, "0123456789", 10), 0);
    cr_assert_eq(b.data, block, "500 bytes were reserved, yet the buffer moved");
    cr_assert_eq(b.len, 500);
    buf_free(&b);
}

Test(util, grow_zeroed_keeps_old_and_zeroes_new)
{
    size_t n = 0;
    int *a = util_grow_zeroed(NULL, &n, sizeof *a, 0, 0);
    cr_assert_not_null(a);
    cr_assert_geq(n, 1);
    a[0] = 7;
    int *b = util_grow_zeroed(a, &n, sizeof *b, 1000, 16);
    cr_assert_not_null(b);
    cr_assert_gt(n, 1000);
    cr_assert_eq(b[0], 7, "the old element was lost");
    for (size_t i = 1; i < n; i++)
        cr_assert_eq(b[i], 0, "element %zu is not zeroed", i);
    size_t before = n;
    cr_assert_eq(util_grow_zeroed(b, &n, sizeof *b, 5, 16), b, "an index that exists must not move the array");
    cr_assert_eq(n, before);
    free(b);
}

Test(util, cidr_validity)
{
    cr_assert(util_net_cidr_valid("10.0.0.0/8"));
    cr_assert(util_net_cidr_valid("::1"));
    cr_assert(util_net_cidr_valid("fd00::/8"));
    cr_assert_not(util_net_cidr_valid("10.0.0.0/33"));
    cr_assert_not(util_net_cidr_valid("10.0.0.0/"));
    cr_assert_not(util_net_cidr_valid("10.0.0.0/8x"));
    cr_assert_not(util_net_cidr_valid("::1/129"));
    cr_assert_not(util_net_cidr_valid("example.com"));
    cr_assert_not(util_net_cidr_valid(""));
}

Test(util, cidr_match_and_loopback)
{
    cr_assert(util_net_cidr_match("10.0.0.0/8", "10.2.3.4"));
    cr_assert_not(util_net_cidr_match("10.0.0.0/8", "11.0.0.1"));
    cr_assert(util_net_cidr_match("192.168.1.7", "192.168.1.7"));
    cr_assert_not(util_net_cidr_match("192.168.1.7", "192.168.1.8"));
    cr_assert(util_net_cidr_match("fd00::/8", "fd12::1"));
    cr_assert_not(util_net_cidr_match("fd00::/8", "fe80::1"));
    cr_assert(util_net_cidr_match("127.0.0.0/8", "::ffff:127.0.0.9"), "mapped IPv4 matches as IPv4");
    cr_assert_not(util_net_cidr_match("10.0.0.0/8", "not-an-ip"));
    cr_assert(util_net_ip_loopback("127.1.2.3"));
    cr_assert(util_net_ip_loopback("::1"));
    cr_assert_not(util_net_ip_loopback("203.0.113.9"));
}

Test(net, ipv4_formatted_as_inet_ntop_does)
{
    srand(11);
    for (int i = 0; i < 20000; i++) {
        unsigned char a[4];
        for (int k = 0; k < 4; k++) /* the edges (0, 9, 10, 99, 100, 255) often, the rest at random */
            a[k] = (unsigned char)(i % 7 == 0 ? (int[]){0, 9, 10, 99, 100, 255}[rand() % 6] : rand() % 256);
        char want[INET_ADDRSTRLEN], got[16];
        inet_ntop(AF_INET, a, want, sizeof want);
        size_t n = util_net_fmt_ipv4(got, a);
        cr_assert_str_eq(got, want);
        cr_assert_eq(n, strlen(want));
    }
}

/* Reals that are whole thousandths (durations) take a path without printf: the same bytes as
 * jansson's dump, for the edges and 200,000 random ones, and others still go through "%.15g". */
Test(json_write, thousandths_written_as_jansson_writes_them)
{
    double edges[] = {0.001, -0.001, 0.5, 1.0, -1.0, 10.0, 0.01, 0.1, 0.775, 1234.5, 999999999999.999,
                      -999999999999.999, 1e12, 1e-4, 0.0, -0.0, 100.25, 0.0005, 1.0 / 3.0, 123456.789};
    unsigned seed = 5;
    for (int i = 0; i < 200020; i++) {
        double v = i < 20 ? edges[i]
                   : i % 2 ? (double)((long long)rand_r(&seed) * (rand_r(&seed) % 2 ? 1 : -1) % 100000000) / 1000.0
                           : (double)rand_r(&seed) / (1 + rand_r(&seed) % 1000);
        json_t *r = json_real(v);
        char *want = json_dumps(r, JSON_ENCODE_ANY | JSON_COMPACT | JSON_REAL_PRECISION(15));
        for (int p = 16; p <= 17 && strtod(want, NULL) != v; p++) { /* precision 15 would change v */
            free(want);
            want = json_dumps(r, JSON_ENCODE_ANY | JSON_COMPACT | JSON_REAL_PRECISION(p));
        }
        buf b = {0};
        cr_assert_eq(buf_append_json_real(&b, v), 0);
        cr_assert(b.len == strlen(want) && memcmp(b.data, want, b.len) == 0, "%.17g: %.*s, jansson %s", v, (int)b.len,
                  b.data, want);
        buf_free(&b);
        free(want);
        json_decref(r);
    }
}

Test(util, uint_and_timestamp_written_without_printf)
{
    unsigned vals[] = {0, 7, 10, 99, 100, 200, 499, 65535, 4294967295u};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        char got[16], want[16];
        snprintf(want, sizeof want, "%u", vals[i]);
        cr_assert_eq(util_fmt_uint(got, vals[i]), strlen(want));
        cr_assert_str_eq(got, want);
    }
    char ts[40], small[12];
    util_rfc3339_now(ts, sizeof ts);
    regex_t re;
    cr_assert_eq(regcomp(&re, "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z$", REG_EXTENDED), 0);
    cr_assert_eq(regexec(&re, ts, 0, NULL, 0), 0, "%s", ts);
    regfree(&re);
    util_rfc3339_now(small, sizeof small); /* cut short, still terminated */
    cr_assert_eq(strlen(small), sizeof small - 1);
    cr_assert_eq(strncmp(small, ts, 4), 0);
}

Test(util, copy_cuts_short_and_terminates_as_snprintf_does)
{
    const char *srcs[] = {"", "a", "abcdef", "abcdefghij", "abcdefghijklmnop"};
    for (size_t i = 0; i < sizeof srcs / sizeof srcs[0]; i++)
        for (size_t cap = 1; cap < 14; cap++) {
            char got[16], want[16];
            memset(got, 'x', sizeof got);
            snprintf(want, cap, "%s", srcs[i]);
            cr_assert_eq(util_copy(got, cap, srcs[i]), got);
            cr_assert_str_eq(got, want, "'%s' into %zu", srcs[i], cap);
        }
}

/* Python's == as the SDK groups and joins by it: 1, 1.0 and true one key; "1" another. */
static int py_key_same(const char *x, const char *y)
{
    buf b[2] = {{0}, {0}};
    const char *in[2] = {x, y};
    for (int i = 0; i < 2; i++) {
        json_t *v = json_loads(in[i], JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        cr_assert_not_null(v, "%s", in[i]);
        cr_assert_eq(util_json_py_key(v, &b[i]), 0);
        json_decref(v);
    }
    int same = b[0].len == b[1].len && memcmp(b[0].data, b[1].data, b[0].len) == 0;
    buf_free(&b[0]);
    buf_free(&b[1]);
    return same;
}

Test(util, json_py_key_follows_python_equality)
{
    const char *same[][2] = {{"1", "1.0"}, {"1", "true"}, {"0", "false"}, {"-0.0", "0"}, {"\"a\"", "\"a\""},
                             {"{\"a\":1,\"b\":2}", "{\"b\":2,\"a\":1}"}, {"null", "null"}};
    const char *differ[][2] = {{"1", "\"1\""}, {"1.5", "1"}, {"true", "\"true\""}, {"null", "0"}, {"[1]", "1"},
                               {"\"a\"", "\"a\\u0000\""}};
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++)
        cr_assert(py_key_same(same[i][0], same[i][1]), "%s vs %s", same[i][0], same[i][1]);
    for (size_t i = 0; i < sizeof differ / sizeof differ[0]; i++)
        cr_assert(!py_key_same(differ[i][0], differ[i][1]), "%s vs %s", differ[i][0], differ[i][1]);
}

/* An answer never changes a number: reals that 15 digits can't hold get 16 or 17, and read back. */
Test(json_write, reals_are_written_exactly)
{
    struct {
        double d;
        const char *text;
    } cases[] = {{0.1 + 0.2, "0.30000000000000004"}, {9007199254740994.0, "9007199254740994.0"},
                 {1.0 / 3.0, "0.3333333333333333"}, {123456789012345678.0, "1.2345678901234568e17"},
                 {0.1, "0.1"}, {2.5, "2.5"}, {1e300, "1e300"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        buf b = {0};
        cr_assert_eq(buf_append_json_real(&b, cases[i].d), 0);
        cr_assert(b.len == strlen(cases[i].text) && memcmp(b.data, cases[i].text, b.len) == 0, "%.17g: %.*s",
                  cases[i].d, (int)b.len, b.data);
        cr_assert_eq(strtod(b.data, NULL), cases[i].d);
        buf_free(&b);
    }
}

/* GET /runs lists newest first by run id: ids made one after another sort in that order, also many
 * in one millisecond, and they stay version 7 / variant 10 with the counter in rand_a. */
Test(util, uuid7_ids_grow_within_a_millisecond)
{
    char prev[37], id[37];
    util_uuid7(prev);
    for (int i = 0; i < 20000; i++) {
        util_uuid7(id);
        cr_assert_gt(strcmp(id, prev), 0, "%s after %s", id, prev);
        cr_assert_eq(id[14], '7');
        cr_assert(strchr("89ab", id[19]), "%s", id);
        memcpy(prev, id, sizeof id);
    }
}
