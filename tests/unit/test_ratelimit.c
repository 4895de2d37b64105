/* ratelimit: the GCRA arithmetic against an exact token-bucket model, the local table (independence,
 * two-key atomicity, denials, eviction, sweeping, a million keys in bounded memory, threads), and
 * the Lua script against a real redis-server started here (hiredis's synchronous API: test only). */
#include <criterion/criterion.h>
#include <hiredis/hiredis.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kailash/ratelimit.h"

#include "under_asan.h"

static rl_policy pol(long limit, long window_ms, long burst)
{
    return (rl_policy){.limit = limit, .window_ms = window_ms, .burst = burst};
}

static uint64_t rng_state;
static uint64_t rng(void)
{
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    return rng_state;
}

/* ---- the reference: a token bucket in exact integers ----
 * Time counts units of 1/D ms; a token is S = w*D "grains", so one unit of time refills exactly q
 * grains (q/w tokens per ms). The bucket starts full (B tokens) and a request takes one token. This
 * is the token-bucket formulation, not GCRA's timestamp: the two agree only if rl_gcra is right. */
typedef struct ref_bucket {
    long long q, w, B, D, S;
    long long grains, last;
} ref_bucket;

typedef struct ref_out {
    int allowed, tie; /* tie: the exact bucket held exactly one token (GCRA's new - now == B*T) */
    long long remaining;
    double full_ms;  /* until full again (after this request if allowed) */
    double retry_ms; /* refused: until one token is there */
} ref_out;

static void ref_init(ref_bucket *r, long long q, long long w, long long B, long long D, long long t)
{
    *r = (ref_bucket){.q = q, .w = w, .B = B, .D = D, .S = w * D, .last = t};
    r->grains = B * r->S;
}

static ref_out ref_request(ref_bucket *r, long long t)
{
    ref_out o = {0};
    long long cap = r->B * r->S;
    long long add = (t - r->last) > cap / r->q + 1 ? cap : r->q * (t - r->last);
    r->grains = r->grains + add > cap ? cap : r->grains + add;
    r->last = t;
    o.tie = r->grains == r->S;
    if (r->grains >= r->S) {
        r->grains -= r->S;
        o.allowed = 1;
        o.remaining = r->grains / r->S;
    } else {
        o.retry_ms = (double)(r->S - r->grains) / (double)(r->q * r->D);
    }
    o.full_ms = (double)(cap - r->grains) / (double)(r->q * r->D);
    return o;
}

static void ref_undo(ref_bucket *r)
{
    r->grains += r->S;
}

/* ---- GCRA arithmetic ---- */

Test(gcra, first_request_on_an_idle_key)
{
    rl_policy p = pol(100, 60000, 100); /* T = 600 */
    rl_decision d;
    double tat = rl_gcra(&p, 0, 5000, &d);
    cr_assert_eq(d.allowed, 1);
    cr_assert_eq(d.remaining, 99);
    cr_assert_float_eq(d.full_ms, 600, 1e-9);
    cr_assert_eq(d.retry_ms, 0);
    cr_assert_float_eq(tat, 5600, 1e-9);
    /* a tat in the past is the same as none */
    rl_decision d2;
    cr_assert_float_eq(rl_gcra(&p, 4000, 5000, &d2), 5600, 1e-9);
    cr_assert_eq(d2.remaining, 99);
    cr_assert_eq(rl_reset_s(&d), 1);
}

static void burst_at_one_instant(rl_policy p, double now)
{
    rl_decision d;
    double tat = 0, T = (double)p.window_ms / (double)p.limit;
    for (long i = 0; i < p.burst; i++) {
        tat = rl_gcra(&p, tat, now, &d);
        cr_assert_eq(d.allowed, 1, "q=%ld w=%ld B=%ld now=%.3f: request %ld of the burst refused", p.limit, p.window_ms,
                     p.burst, now, i + 1);
        cr_assert_eq(d.remaining, p.burst - 1 - i, "q=%ld w=%ld B=%ld: remaining %ld after %ld", p.limit, p.window_ms,
                     p.burst, d.remaining, i + 1);
        cr_assert(fabs(d.full_ms - (double)(i + 1) * T) < 1e-3 * T);
    }
    double full_tat = tat;
    for (int i = 0; i < 3; i++) {
        tat = rl_gcra(&p, tat, now, &d);
        cr_assert_eq(d.allowed, 0, "q=%ld w=%ld B=%ld now=%.3f: request B+%d passed", p.limit, p.window_ms, p.burst,
                     now, i + 1);
        cr_assert_eq(d.remaining, 0);
        cr_assert(fabs(d.retry_ms - T) < 1e-3 * T, "retry %.6f, T %.6f", d.retry_ms, T);
        cr_assert_eq(tat, full_tat, "a refusal moved the tat");
        cr_assert_geq(rl_reset_s(&d), 1);
    }
}

Test(gcra, exactly_burst_at_one_instant_then_refusal)
{
    const rl_policy ps[] = {pol(100, 60000, 100), pol(3, 1000, 3),  pol(7, 1000, 7),    pol(1000, 60000, 1000),
                            pol(10, 1000, 4),     pol(1, 60000, 1), pol(60, 60000, 10), pol(6000, 60000, 6000)};
    /* small now (a monotonic clock), and Unix-epoch ms where doubles round (Redis's TIME) */
    const double nows[] = {0, 12345.678, 86400000.5, 1712345678901.234, 1795000000000.999};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++)
        for (size_t j = 0; j < sizeof nows / sizeof nows[0]; j++)
            burst_at_one_instant(ps[i], nows[j]);
}

Test(gcra, refill_after_T)
{
    rl_policy p = pol(10, 1000, 5); /* T = 100, bucket 500 */
    rl_decision d;
    double tat = 0;
    for (int i = 0; i < 5; i++)
        tat = rl_gcra(&p, tat, 1000, &d);
    cr_assert_float_eq(tat, 1500, 1e-9);
    tat = rl_gcra(&p, tat, 1099.75, &d);
    cr_assert_eq(d.allowed, 0, "a token came back before T");
    cr_assert_float_eq(d.retry_ms, 0.25, 1e-9);
    cr_assert_eq(rl_reset_s(&d), 1);
    tat = rl_gcra(&p, tat, 1100, &d);
    cr_assert_eq(d.allowed, 1, "one token after exactly T");
    cr_assert_eq(d.remaining, 0);
    cr_assert_float_eq(d.full_ms, 500, 1e-9);
    tat = rl_gcra(&p, tat, 1100, &d);
    cr_assert_eq(d.allowed, 0, "only one token after T");
    cr_assert_float_eq(d.retry_ms, 100, 1e-9);
    /* after 3T, three pass and not four */
    int passed = 0;
    for (int i = 0; i < 10; i++) {
        tat = rl_gcra(&p, tat, 1400, &d);
        passed += d.allowed;
    }
    cr_assert_eq(passed, 3);
    /* idle for a whole bucket: full again, B pass */
    passed = 0;
    for (int i = 0; i < 10; i++) {
        tat = rl_gcra(&p, tat, 1900, &d);
        passed += d.allowed;
    }
    cr_assert_eq(passed, 5);
}

Test(gcra, remaining_full_and_retry_numbers)
{
    rl_policy p = pol(4, 1000, 4); /* T = 250, bucket 1000 */
    rl_decision d;
    double tat = rl_gcra(&p, 0, 0, &d);
    cr_assert_eq(d.remaining, 3);
    cr_assert_float_eq(d.full_ms, 250, 1e-9);
    tat = rl_gcra(&p, tat, 100, &d); /* tat 250 -> 500: 400 ms of debt */
    cr_assert_eq(d.allowed, 1);
    cr_assert_eq(d.remaining, 2); /* 1000 - 400 = 600: two whole tokens */
    cr_assert_float_eq(d.full_ms, 400, 1e-9);
    tat = rl_gcra(&p, tat, 100, &d);
    tat = rl_gcra(&p, tat, 100, &d); /* tat 1000: debt 900 */
    cr_assert_eq(d.remaining, 0);
    cr_assert_float_eq(d.full_ms, 900, 1e-9);
    tat = rl_gcra(&p, tat, 100, &d);
    cr_assert_eq(d.allowed, 0);
    cr_assert_float_eq(d.retry_ms, 150, 1e-9); /* at 250 the debt is 750: one fits */
    cr_assert_float_eq(d.full_ms, 900, 1e-9);  /* refused: the bucket as it stands */
    cr_assert_float_eq(tat, 1000, 1e-9);
    tat = rl_gcra(&p, tat, 249.9, &d);
    cr_assert_eq(d.allowed, 0);
    tat = rl_gcra(&p, tat, 250, &d);
    cr_assert_eq(d.allowed, 1);
    cr_assert_eq(d.remaining, 0);
}

Test(gcra, reset_seconds_rounding)
{
    rl_decision d = {.allowed = 1, .full_ms = 0};
    cr_assert_eq(rl_reset_s(&d), 0);
    d.full_ms = 0.5;
    cr_assert_eq(rl_reset_s(&d), 1);
    d.full_ms = 1000;
    cr_assert_eq(rl_reset_s(&d), 1);
    d.full_ms = 1000.0000001; /* rounding noise, not a second more */
    cr_assert_eq(rl_reset_s(&d), 1);
    d.full_ms = 1001;
    cr_assert_eq(rl_reset_s(&d), 2);
    d.full_ms = 60000;
    cr_assert_eq(rl_reset_s(&d), 60);
    d = (rl_decision){.allowed = 0, .retry_ms = 0.25};
    cr_assert_eq(rl_reset_s(&d), 1);
    d.retry_ms = 0;
    cr_assert_eq(rl_reset_s(&d), 1, "a refusal always says at least 1 s");
    d.retry_ms = 1000;
    cr_assert_eq(rl_reset_s(&d), 1);
    d.retry_ms = 1001;
    cr_assert_eq(rl_reset_s(&d), 2);
    d.retry_ms = 2999.5;
    cr_assert_eq(rl_reset_s(&d), 3);
    d.retry_ms = NAN;
    cr_assert_eq(rl_reset_s(&d), 1);
}

Test(gcra, degenerate_policies_and_clocks)
{
    rl_decision d;
    /* limit 0, burst 0: one request per window, never unlimited */
    rl_policy p = pol(0, 1000, 0);
    double tat = rl_gcra(&p, 0, 0, &d);
    cr_assert_eq(d.allowed, 1);
    cr_assert_float_eq(tat, 1000, 1e-9);
    rl_gcra(&p, tat, 0, &d);
    cr_assert_eq(d.allowed, 0);
    cr_assert_float_eq(d.retry_ms, 1000, 1e-9);
    p = pol(-5, -1, -7); /* window < 1 reads as 1 ms */
    tat = rl_gcra(&p, 0, 10, &d);
    cr_assert_eq(d.allowed, 1);
    cr_assert_float_eq(tat, 11, 1e-9);
    rl_gcra(&p, tat, 10, &d);
    cr_assert_eq(d.allowed, 0);
    /* a corrupt tat is an idle key, not one locked out forever */
    p = pol(10, 1000, 10);
    tat = rl_gcra(&p, NAN, 500, &d);
    cr_assert_eq(d.allowed, 1);
    cr_assert_float_eq(tat, 600, 1e-9);
    tat = rl_gcra(&p, INFINITY, 500, &d);
    cr_assert_eq(d.allowed, 1);
    cr_assert_float_eq(tat, 600, 1e-9);
    /* no clock: refused, tat kept */
    tat = rl_gcra(&p, 700, NAN, &d);
    cr_assert_eq(d.allowed, 0);
    cr_assert_eq(tat, 700);
    cr_assert(d.retry_ms > 0);
    cr_assert_eq(rl_reset_s(&d), 1);
}

/* Every interval between two passed requests holds at most B + elapsed/T of them (exactly, in
 * integers: (count - B) * w * D <= (t_b - t_a) * q). */
static void assert_sliding_bound(const long long *passed, size_t n, long long q, long long w, long long B, long long D)
{
    for (size_t a = 0; a < n; a++)
        for (size_t b = a; b < n; b++) {
            long long count = (long long)(b - a + 1);
            cr_assert_leq((count - B) * w * D, (passed[b] - passed[a]) * q,
                          "%lld passed in [%lld, %lld]/%lld ms with q=%lld w=%lld B=%lld", count, passed[a], passed[b],
                          D, q, w, B);
        }
}

Test(gcra, window_edges_never_pass_more_than_burst_and_refill)
{
    long long q = 10, w = 1000, B = 10, D = 10; /* T = 100 ms; times in 0.1 ms */
    rl_policy p = pol(q, w, B);
    /* a burst at the end of one minute-style window, then at the start of the next, then a bit on */
    const long long at[] = {9999, 10000, 10001, 15000, 20000, 29999, 30000};
    long long passed[1000];
    size_t np = 0;
    double tat = 0;
    int in_edge = 0;
    for (size_t i = 0; i < sizeof at / sizeof at[0]; i++)
        for (int k = 0; k < 50; k++) {
            rl_decision d;
            tat = rl_gcra(&p, tat, (double)at[i] / (double)D, &d);
            if (d.allowed) {
                passed[np++] = at[i];
                in_edge += at[i] <= 10001;
            }
        }
    /* a fixed window would pass 2B across 999.9..1000.1 ms; GCRA passes B */
    cr_assert_eq(in_edge, B);
    /* 1500: 5 refilled; 2000: 5 more; 2999.9: full again, B; 3000: nothing */
    cr_assert_eq(np, 10 + 5 + 5 + 10);
    assert_sliding_bound(passed, np, q, w, B, D);
}

/* Compares rl_gcra with the reference over a random sequence. exact: T and the times are binary
 * fractions of small magnitude, so the doubles are exact and every number must match, ties included.
 * Otherwise each tat + T rounds (the same way each time, so the error grows along a chain of
 * requests that never let the bucket fill): within that bound of an exact tie either decision is
 * right (the reference follows rl_gcra's), remaining may be one off at an integer edge, and the
 * times match to the bound. */
static void compare_random(long long q, long long w, long long B, long long D, double base_ms, int exact, int n,
                           uint64_t seed)
{
    rl_policy p = pol(q, w, B);
    ref_bucket ref;
    ref_init(&ref, q, w, B, D, 0);
    rng_state = seed;
    long long T_units = w * D / q + 1, t = 0, cap = B * ref.S;
    double T = (double)w / (double)q, grain_ms = 1.0 / (double)(q * D); /* one grain of debt in ms */
    long long *passed = malloc(sizeof *passed * (size_t)n);
    size_t np = 0, refused = 0, early = 0;
    long chain = 0;
    double tat = 0;
    for (int i = 0; i < n; i++) {
        /* 40%: at the same instant; mostly faster than T on average; now and then idle for long */
        uint64_t r = rng() % 100;
        if (rng() % (uint64_t)(10 * B + 10) == 0)
            t += (long long)(rng() % (uint64_t)(2 * B * T_units + 1));
        else if (r >= 40)
            t += (long long)(rng() % (uint64_t)(T_units + 1));
        rl_decision d;
        double now = base_ms + (double)t / (double)D;
        double nt = rl_gcra(&p, tat, now, &d);
        tat = nt;
        ref_out o = ref_request(&ref, t);
        long long before = ref.grains + (o.allowed ? ref.S : 0);
        chain = before == cap ? 1 : chain + 1; /* a full bucket restarts from now: no carried error */
        double drift = exact ? 0 : (double)(chain + 4) * (fabs(now) + (double)B * T + T) * 0x1p-52 + 1e-9;
        double margin = (double)(ref.S - before) * grain_ms; /* exact new - now - B*T */
        if (!exact && fabs(margin) <= drift && d.allowed != o.allowed) {
            if (d.allowed)
                ref.grains -= ref.S, early++, passed[np++] = t; /* follow rl_gcra */
            else
                ref_undo(&ref), refused++;
            continue;
        }
        cr_assert_eq(d.allowed, o.allowed, "seed %llu step %d t=%lld/%lld: gcra %d, reference %d (margin %.3g ms)",
                     (unsigned long long)seed, i, t, D, d.allowed, o.allowed, margin);
        long long rem = o.allowed ? o.remaining : 0;
        double edge = (double)(ref.grains % ref.S) * grain_ms; /* how far above a whole token, in ms */
        if (!exact && o.allowed && (edge <= drift || T - edge <= drift))
            cr_assert(d.remaining >= rem - 1 && d.remaining <= rem + 1,
                      "seed %llu step %d: remaining %ld, reference %lld", (unsigned long long)seed, i, d.remaining,
                      rem);
        else
            cr_assert_eq(d.remaining, rem, "seed %llu step %d: remaining %ld, reference %lld", (unsigned long long)seed,
                         i, d.remaining, rem);
        double tol = exact ? 1e-9 : drift + 1e-6;
        cr_assert(fabs(d.full_ms - o.full_ms) <= tol, "seed %llu step %d: full %.9f, reference %.9f (chain %ld)",
                  (unsigned long long)seed, i, d.full_ms, o.full_ms, chain);
        cr_assert(fabs(d.retry_ms - o.retry_ms) <= tol, "seed %llu step %d: retry %.9f, reference %.9f",
                  (unsigned long long)seed, i, d.retry_ms, o.retry_ms);
        if (d.allowed)
            passed[np++] = t;
        else
            refused++;
    }
    cr_assert_gt(np, (size_t)B, "seed %llu: the sequence never refilled", (unsigned long long)seed);
    cr_assert_gt(refused, 0u, "seed %llu: the sequence never hit the limit", (unsigned long long)seed);
    if (exact)
        cr_assert_eq(early, 0u);
    if (np <= 10000 && !early)
        assert_sliding_bound(passed, np, q, w, B, D);
    free(passed);
}

Test(gcra, random_sequences_match_the_reference_exactly)
{
    /* T = 600, 125, 15.625, 1000, 62.5 ms: binary fractions */
    compare_random(100, 60000, 100, 4, 0, 1, 20000, 1);
    compare_random(8, 1000, 8, 8, 1000, 1, 20000, 2);
    compare_random(64, 1000, 16, 64, 0, 1, 20000, 3);
    compare_random(60, 60000, 5, 1, 3600000, 1, 20000, 4);
    compare_random(16, 1000, 1, 2, 0, 1, 20000, 5);
    compare_random(100, 60000, 100, 4, 0, 1, 3000, 6);
    compare_random(8, 1000, 3, 8, 0, 1, 3000, 7);
}

Test(gcra, random_sequences_with_rounding_match_the_reference)
{
    /* T = 1000/3, 60000/7, 60000/1000 with odd times, and Unix-epoch magnitudes */
    compare_random(3, 1000, 3, 3, 0, 0, 20000, 11);
    compare_random(7, 60000, 7, 7, 86400000, 0, 20000, 12);
    compare_random(1000, 60000, 1000, 3, 0, 0, 20000, 13);
    compare_random(3, 1000, 2, 3, 1712345678901.0, 0, 20000, 14);
    compare_random(7, 1000, 7, 1, 1795000000000.0, 0, 3000, 15);
}

/* ---- the local table ---- */

static rl_decision check1(rl_table *t, const char *key, rl_policy p, double now)
{
    rl_decision d;
    size_t len = strlen(key);
    rl_table_check(t, &key, &len, &p, 1, now, &d);
    return d;
}

static int check2(rl_table *t, const char *a, rl_policy pa, const char *b, rl_policy pb, double now, rl_decision d[2])
{
    const char *keys[2] = {a, b};
    size_t lens[2] = {strlen(a), strlen(b)};
    rl_policy ps[2] = {pa, pb};
    rl_table_check(t, keys, lens, ps, 2, now, d);
    cr_assert_eq(d[0].allowed, d[1].allowed, "allowed is the overall verdict in each");
    return d[0].allowed;
}

Test(rl_table, keys_are_independent)
{
    rl_table *t = rl_table_new(1024);
    cr_assert_not_null(t);
    rl_policy p = pol(3, 1000, 3);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(check1(t, "alice", p, 0).allowed, 1);
    cr_assert_eq(check1(t, "alice", p, 0).allowed, 0);
    rl_decision d = check1(t, "bob", p, 0);
    cr_assert_eq(d.allowed, 1, "bob pays for alice");
    cr_assert_eq(d.remaining, 2);
    cr_assert_eq(check1(t, "alic", p, 0).allowed, 1, "a prefix is another key");
    /* keys are bytes: an embedded NUL and a different length are other keys */
    const char *k = "alice\0x";
    size_t len = 7;
    rl_table_check(t, &k, &len, &p, 1, 0, &d);
    cr_assert_eq(d.allowed, 1);
    cr_assert_eq(rl_table_count(t), 4);
    /* alice refills */
    d = check1(t, "alice", p, 1000.0 / 3);
    cr_assert_eq(d.allowed, 1);
    cr_assert_eq(d.remaining, 0);
    rl_table_free(t);
}

Test(rl_table, long_keys_are_distinct_to_their_last_byte)
{
    rl_table *t = rl_table_new(1024);
    char a[400], b[400];
    memset(a, 'k', sizeof a), memset(b, 'k', sizeof b);
    b[399] = 'x';
    const char *ka = a, *kb = b, *kc = a;
    size_t la = sizeof a, lb = sizeof b, lc = 128; /* a's first 128 bytes: a short key */
    rl_policy p = pol(1, 60000, 1);
    rl_decision d;
    rl_table_check(t, &ka, &la, &p, 1, 0, &d);
    cr_assert_eq(d.allowed, 1);
    rl_table_check(t, &kb, &lb, &p, 1, 0, &d);
    cr_assert_eq(d.allowed, 1, "two long keys differing at their end were one");
    rl_table_check(t, &kc, &lc, &p, 1, 0, &d);
    cr_assert_eq(d.allowed, 1, "a long key and its 128-byte prefix were one");
    rl_table_check(t, &ka, &la, &p, 1, 0, &d);
    cr_assert_eq(d.allowed, 0, "a long key was not remembered");
    rl_table_free(t);
}

/* one key refusing: the other's tat does not move, whichever order, same shard or not */
static void two_keys_atomic(size_t max_keys)
{
    rl_table *t = rl_table_new(max_keys);
    rl_policy tight = pol(1, 60000, 1), loose = pol(5, 60000, 5);
    rl_decision d[2];
    for (int pair = 0; pair < 40; pair++) {
        char a[32], b[32];
        snprintf(a, sizeof a, "tight-%d", pair);
        snprintf(b, sizeof b, "loose-%d", pair);
        int swap = pair % 2;
        double now = 1000 + pair;
        cr_assert_eq(swap ? check2(t, b, loose, a, tight, now, d) : check2(t, a, tight, b, loose, now, d), 1);
        cr_assert_eq(d[swap].remaining, 0);
        cr_assert_eq(d[!swap].remaining, 4);
        for (int k = 0; k < 3; k++) {
            cr_assert_eq(swap ? check2(t, b, loose, a, tight, now, d) : check2(t, a, tight, b, loose, now, d), 0);
            const rl_decision *dt = &d[swap], *dl = &d[!swap];
            cr_assert(dt->retry_ms > 59000, "the refusing key says when: %f", dt->retry_ms);
            cr_assert_eq(dl->retry_ms, 0, "the passing key is not the one to wait for");
            cr_assert_eq(dl->remaining, 0);
            cr_assert_float_eq(dl->full_ms, 12000, 1e-6, "loose key as it stands: one token used");
        }
        rl_decision l = check1(t, b, loose, now);
        cr_assert_eq(l.allowed, 1);
        cr_assert_eq(l.remaining, 3, "a refused pair moved the loose key (remaining %ld)", l.remaining);
    }
    rl_table_free(t);
}

Test(rl_table, two_keys_are_atomic)
{
    two_keys_atomic(65536); /* 64 shards: pairs in different shards and some in one */
    two_keys_atomic(16);    /* one shard */
}

Test(rl_table, a_key_listed_twice_pays_twice)
{
    rl_table *t = rl_table_new(64);
    rl_policy p = pol(3, 3000, 3);
    rl_decision d[2];
    cr_assert_eq(check2(t, "k", p, "k", p, 0, d), 1);
    cr_assert_eq(d[0].remaining, 2);
    cr_assert_eq(d[1].remaining, 1);
    cr_assert_eq(check2(t, "k", p, "k", p, 0, d), 0, "two requests left one token");
    cr_assert_eq(check1(t, "k", p, 0).remaining, 0);
    cr_assert_eq(rl_table_count(t), 1);
    rl_table_free(t);
}

Test(rl_table, deny_until)
{
    rl_table *t = rl_table_new(1024);
    cr_assert_eq(rl_table_denied_for(t, "x", 1, 0), 0);
    rl_table_deny_until(t, "x", 1, 5000);
    cr_assert_float_eq(rl_table_denied_for(t, "x", 1, 1000), 4000, 1e-9);
    cr_assert_float_eq(rl_table_denied_for(t, "x", 1, 4999.5), 0.5, 1e-9);
    cr_assert_eq(rl_table_denied_for(t, "x", 1, 5000), 0);
    cr_assert_eq(rl_table_denied_for(t, "y", 1, 1000), 0, "another key is not denied");
    rl_table_deny_until(t, "x", 1, 3000); /* an earlier until does not shorten a denial */
    rl_table_deny_until(t, "x", 1, 9000);
    rl_table_deny_until(t, "x", 1, 8000);
    cr_assert_float_eq(rl_table_denied_for(t, "x", 1, 2000), 7000, 1e-9);
    rl_table_deny_until(t, "z", 1, NAN);
    rl_table_deny_until(t, "z", 1, INFINITY);
    cr_assert_eq(rl_table_denied_for(t, "z", 1, 0), 0);
    /* a denial and the local tat live in one entry: the local limit still applies */
    rl_policy p = pol(1, 1000, 1);
    cr_assert_eq(check1(t, "x", p, 2000).allowed, 1);
    cr_assert_eq(check1(t, "x", p, 2000).allowed, 0);
    cr_assert_float_eq(rl_table_denied_for(t, "x", 1, 2000), 7000, 1e-9);
    cr_assert_eq(rl_table_count(t), 1);
    /* once the denial is over and the bucket full, the entry expires and is swept */
    cr_assert_eq(rl_table_denied_for(t, "x", 1, 20000), 0);
    for (int i = 0; i < 64 * 40; i++) {
        char k[32];
        snprintf(k, sizeof k, "probe%d", i);
        rl_table_denied_for(t, k, strlen(k), 20000);
    }
    cr_assert_eq(rl_table_count(t), 0);
    rl_table_free(t);
}

Test(rl_table, a_full_table_evicts_the_entry_that_expires_first)
{
    rl_table *t = rl_table_new(16); /* one shard of 16 */
    rl_policy p = pol(1, 1000, 1);
    char k[32];
    for (int i = 0; i < 16; i++) {
        snprintf(k, sizeof k, "k%d", i);
        cr_assert_eq(check1(t, k, p, i).allowed, 1); /* k_i expires at i + 1000 */
    }
    cr_assert_eq(rl_table_count(t), 16);
    cr_assert_eq(check1(t, "new", p, 16).allowed, 1);
    cr_assert_eq(rl_table_count(t), 16);
    for (int i = 1; i < 16; i++) {
        snprintf(k, sizeof k, "k%d", i);
        cr_assert_eq(check1(t, k, p, 17).allowed, 0, "k%d was evicted, not k0", i);
    }
    cr_assert_eq(check1(t, "new", p, 17).allowed, 0);
    cr_assert_eq(check1(t, "k0", p, 17).allowed, 1, "k0 (expiring first) was kept");
    cr_assert_eq(rl_table_count(t), 16);

    /* an expired entry is swept before any live one is evicted */
    rl_table *u = rl_table_new(16);
    for (int i = 0; i < 16; i++) {
        snprintf(k, sizeof k, "k%d", i);
        check1(u, k, i == 9 ? pol(1, 10, 1) : p, 0); /* k9 expires at 10, the rest at 1000 */
    }
    cr_assert_eq(check1(u, "new", p, 20).allowed, 1);
    for (int i = 0; i < 16; i++) {
        snprintf(k, sizeof k, "k%d", i);
        if (i != 9)
            cr_assert_eq(check1(u, k, p, 21).allowed, 0, "live k%d was evicted while k9 had expired", i);
    }
    rl_table_free(u);

    /* two new keys into a full shard: the second insert never evicts the first */
    rl_table *v = rl_table_new(2);
    check1(v, "a", p, 0);
    rl_decision d[2];
    cr_assert_eq(check2(v, "b", p, "c", p, 1, d), 1);
    cr_assert_eq(check1(v, "b", p, 2).allowed, 0, "b was evicted by c");
    cr_assert_eq(check1(v, "c", p, 2).allowed, 0);
    cr_assert_eq(rl_table_count(v), 2);
    rl_table_free(v);
    rl_table_free(t);
}

Test(rl_table, expired_keys_are_swept_as_the_table_is_touched)
{
    rl_table *t = rl_table_new(1024); /* 64 shards of 16 */
    rl_policy shortp = pol(1, 10, 1);
    char k[32];
    for (int i = 0; i < 600; i++) {
        snprintf(k, sizeof k, "old%d", i);
        check1(t, k, shortp, 0); /* expire at 10 */
    }
    size_t before = rl_table_count(t);
    cr_assert_gt(before, 500u);
    cr_assert_leq(before, 1024u);
    rl_policy longp = pol(1, 60000, 1);
    for (int i = 0; i < 300; i++) {
        snprintf(k, sizeof k, "new%d", i);
        cr_assert_eq(check1(t, k, longp, 100).allowed, 1);
    }
    for (int i = 0; i < 64 * 40; i++) { /* touches every shard many times */
        snprintf(k, sizeof k, "probe%d", i);
        rl_table_denied_for(t, k, strlen(k), 100);
    }
    cr_assert_eq(rl_table_count(t), 300, "expired keys left: %zu held", rl_table_count(t));
    for (int i = 0; i < 300; i++) {
        snprintf(k, sizeof k, "new%d", i);
        cr_assert_eq(check1(t, k, longp, 100).allowed, 0, "a live key was lost");
    }
    rl_table_free(t);
}

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, resident = 0;
    cr_assert_not_null(f);
    cr_assert_eq(fscanf(f, "%ld %ld", &size, &resident), 2);
    fclose(f);
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

Test(rl_table, a_million_keys_in_bounded_memory, .timeout = 60)
{
    /* 65536 keys: 64 shards of 1024 slots of RL_TABLE_KEY_BYTES + 16: about 11 MiB when all are touched.
     * The bound asserted: 32 MiB of growth. */
    const size_t max_keys = 65536;
    long before = rss_kib();
    rl_table *t = rl_table_new(max_keys);
    cr_assert_not_null(t);
    rl_policy victim_p = pol(1, 1000000000, 1), flood_p = pol(100, 60000, 100); /* T = 600 ms */
    cr_assert_eq(check1(t, "victim", victim_p, 0).allowed, 1);
    char k[32];
    size_t max_count = 0;
    for (int i = 0; i < 1000000; i++) {
        int len = snprintf(k, sizeof k, "10.%d.%d.%d", i >> 16, (i >> 8) & 255, i & 255);
        const char *kp = k;
        size_t kl = (size_t)len;
        rl_decision d;
        rl_table_check(t, &kp, &kl, &flood_p, 1, i * 0.01, &d); /* 60000 keys live at a time */
        if (!d.allowed)
            cr_assert_fail("a new key %s was refused", k);
        if (i % 50000 == 0) {
            size_t c = rl_table_count(t);
            max_count = c > max_count ? c : max_count;
            cr_assert_leq(c, max_keys);
        }
    }
    size_t c = rl_table_count(t);
    cr_assert_leq(c, max_keys);
    cr_assert_gt(max_count, max_keys / 2, "the table held few keys: %zu", max_count);
    cr_assert_eq(check1(t, "victim", victim_p, 10000).allowed, 0, "the flood evicted a key refused for long");
    long growth = rss_kib() - before;
    cr_log_info("rl_table: 1e6 keys, %zu held at the end, RSS growth %ld KiB", c, growth);
    if (!UNDER_ASAN)
        cr_assert_lt(growth, 32 * 1024, "RSS grew %ld KiB", growth);
    rl_table_free(t);
}

#define HAMMER_ROUNDS 200
typedef struct hammer_arg {
    rl_table *t;
    pthread_barrier_t *start;
    atomic_int *passed; /* per round */
} hammer_arg;

/* Each round a fresh key and a frozen now, all four threads released together on it. */
static void *hammer_one_key(void *p)
{
    hammer_arg *a = p;
    rl_policy pl = pol(100, 60000, 100);
    for (int r = 0; r < HAMMER_ROUNDS; r++) {
        char key[32];
        snprintf(key, sizeof key, "shared%d", r);
        pthread_barrier_wait(a->start);
        for (int i = 0; i < 200; i++)
            if (check1(a->t, key, pl, 123456.0 + r).allowed)
                atomic_fetch_add(&a->passed[r], 1);
    }
    return NULL;
}

Test(rl_table, four_threads_on_one_key_pass_exactly_the_burst, .timeout = 60)
{
    rl_table *t = rl_table_new(65536);
    atomic_int passed[HAMMER_ROUNDS];
    for (int r = 0; r < HAMMER_ROUNDS; r++)
        atomic_init(&passed[r], 0);
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, 4);
    pthread_t th[4];
    hammer_arg a = {.t = t, .start = &start, .passed = passed};
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, hammer_one_key, &a);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    for (int r = 0; r < HAMMER_ROUNDS; r++)
        cr_assert_eq(atomic_load(&passed[r]), 100, "round %d: %d passed", r, atomic_load(&passed[r]));
    pthread_barrier_destroy(&start);
    rl_table_free(t);
}

#define PAIR_KEYS 64
typedef struct pair_arg {
    rl_table *t;
    atomic_int *consumed; /* per key: passed requests that named it */
    uint64_t seed;
} pair_arg;

static void *hammer_pairs(void *p)
{
    pair_arg *a = p;
    uint64_t s = a->seed;
    rl_policy pl = pol(50, 60000, 50);
    for (int i = 0; i < 30000; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        int x = (int)(s % PAIR_KEYS), y = (int)((s >> 20) % PAIR_KEYS);
        if (x == y)
            continue;
        char kx[32], ky[32];
        snprintf(kx, sizeof kx, "p%d", x);
        snprintf(ky, sizeof ky, "p%d", y);
        const char *keys[2] = {kx, ky};
        size_t lens[2] = {strlen(kx), strlen(ky)};
        rl_policy ps[2] = {pl, pl};
        rl_decision d[2];
        rl_table_check(a->t, keys, lens, ps, 2, 0, d);
        if (d[0].allowed) {
            atomic_fetch_add(&a->consumed[x], 1);
            atomic_fetch_add(&a->consumed[y], 1);
        }
    }
    return NULL;
}

Test(rl_table, pairs_in_both_orders_from_four_threads, .timeout = 60)
{
    rl_table *t = rl_table_new(4096);
    atomic_int consumed[PAIR_KEYS];
    for (int i = 0; i < PAIR_KEYS; i++)
        atomic_init(&consumed[i], 0);
    pthread_t th[4];
    pair_arg a[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (pair_arg){.t = t, .consumed = consumed, .seed = 0x9e3779b97f4a7c15ULL * (uint64_t)(i + 1)};
        pthread_create(&th[i], NULL, hammer_pairs, &a[i]);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    int total = 0;
    rl_policy pl = pol(50, 60000, 50);
    for (int i = 0; i < PAIR_KEYS; i++) {
        int c = atomic_load(&consumed[i]);
        cr_assert_leq(c, 50, "p%d passed %d times", i, c);
        char k[32];
        snprintf(k, sizeof k, "p%d", i);
        rl_decision d = check1(t, k, pl, 0);
        /* its tat moved exactly once per passed pair that named it */
        cr_assert_eq(d.allowed, c < 50);
        if (d.allowed)
            cr_assert_eq(d.remaining, 50 - c - 1, "p%d: %d consumed, remaining %ld", i, c, d.remaining);
        total += c;
    }
    cr_assert_gt(total, PAIR_KEYS * 40, "the keys were hardly used: %d", total);
    rl_table_free(t);
}

/* ---- the Lua script against a real redis-server ---- */

#define REDIS_SERVER "/usr/bin/redis-server"
static pid_t g_redis;
static redisContext *g_rc;

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static void redis_start(void)
{
    cr_assert_eq(access(REDIS_SERVER, X_OK), 0, REDIS_SERVER " is missing (scripts/deps.sh installs redis-server)");
    for (int attempt = 0; attempt < 5 && !g_rc; attempt++) {
        char port[16];
        snprintf(port, sizeof port, "%d", free_port());
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a crashed test */
            freopen("/dev/null", "w", stdout);
            execl(REDIS_SERVER, REDIS_SERVER, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                  (char *)NULL);
            _exit(127);
        }
        for (int i = 0; i < 500; i++) {
            if (waitpid(pid, NULL, WNOHANG) == pid) {
                pid = 0; /* exited: the port was taken meanwhile, try another */
                break;
            }
            redisContext *c = redisConnect("127.0.0.1", atoi(port));
            if (c && !c->err) {
                redisReply *r = redisCommand(c, "PING");
                int up = r && r->type == REDIS_REPLY_STATUS;
                freeReplyObject(r);
                if (up) {
                    g_rc = c;
                    g_redis = pid;
                    break;
                }
            }
            redisFree(c);
            usleep(10000);
        }
        if (!g_rc && pid > 0) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
        }
    }
    cr_assert_not_null(g_rc, "redis-server did not start");
}

static void redis_stop(void)
{
    if (g_rc)
        redisFree(g_rc);
    g_rc = NULL;
    if (g_redis > 0) {
        kill(g_redis, SIGTERM);
        waitpid(g_redis, NULL, 0);
    }
    g_redis = 0;
}

TestSuite(rl_script, .init = redis_start, .fini = redis_stop, .timeout = 30);

typedef struct script_out {
    long long v[4 * RL_MAX_POLICIES];
} script_out;

/* EVAL for n keys with (T_ms, B) each; asserts an array of 4n integers. */
static script_out eval_keys(int n, const char **keys, const double *T, const long *B)
{
    const char *argv[3 + RL_MAX_POLICIES + 1 + 2 * RL_MAX_POLICIES];
    char nkeys[8], nstr[8], ts[RL_MAX_POLICIES][32], bs[RL_MAX_POLICIES][32];
    int argc = 0;
    snprintf(nkeys, sizeof nkeys, "%d", n);
    snprintf(nstr, sizeof nstr, "%d", n);
    argv[argc++] = "EVAL";
    argv[argc++] = rl_script_lua;
    argv[argc++] = nkeys;
    for (int i = 0; i < n; i++)
        argv[argc++] = keys[i];
    argv[argc++] = nstr;
    for (int i = 0; i < n; i++) {
        snprintf(ts[i], sizeof ts[i], "%.17g", T[i]);
        snprintf(bs[i], sizeof bs[i], "%ld", B[i]);
        argv[argc++] = ts[i];
        argv[argc++] = bs[i];
    }
    redisReply *r = redisCommandArgv(g_rc, argc, argv, NULL);
    cr_assert_not_null(r, "redis: %s", g_rc->errstr);
    cr_assert_eq(r->type, REDIS_REPLY_ARRAY, "EVAL answered type %d: %s", r->type,
                 r->type == REDIS_REPLY_ERROR ? r->str : "");
    cr_assert_eq(r->elements, (size_t)(4 * n));
    script_out o;
    for (size_t i = 0; i < r->elements; i++) {
        cr_assert_eq(r->element[i]->type, REDIS_REPLY_INTEGER, "element %zu is not an integer", i);
        o.v[i] = r->element[i]->integer;
    }
    freeReplyObject(r);
    return o;
}

static script_out eval1(const char *key, double T, long B)
{
    return eval_keys(1, &key, &T, &B);
}

static double redis_now_ms(void)
{
    redisReply *r = redisCommand(g_rc, "TIME");
    cr_assert(r && r->type == REDIS_REPLY_ARRAY && r->elements == 2);
    double now = atof(r->element[0]->str) * 1000 + atof(r->element[1]->str) / 1000;
    freeReplyObject(r);
    return now;
}

static char *redis_get(const char *key)
{
    redisReply *r = redisCommand(g_rc, "GET %s", key);
    cr_assert_not_null(r);
    char *s = r->type == REDIS_REPLY_STRING ? strdup(r->str) : NULL;
    freeReplyObject(r);
    return s;
}

static long long redis_int(const char *cmd, const char *key)
{
    redisReply *r = redisCommand(g_rc, "%s %s", cmd, key);
    cr_assert(r && r->type == REDIS_REPLY_INTEGER);
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

Test(rl_script, one_key_exactly_burst_then_refusals_with_a_ttl)
{
    const double T = 60000.0 / 7; /* not a binary fraction; Redis's now is epoch ms */
    const long B = 7;
    double before = redis_now_ms();
    for (long i = 0; i < B; i++) {
        script_out o = eval1("rl:alice", T, B);
        cr_assert_eq(o.v[0], 1, "request %ld of the burst refused", i + 1);
        cr_assert_eq(o.v[1], B - 1 - i);
        cr_assert(o.v[2] >= (long long)((double)(i + 1) * T) - 1000 && o.v[2] <= (long long)ceil((double)(i + 1) * T));
        cr_assert_eq(o.v[3], 0);
    }
    for (int i = 0; i < 3; i++) {
        script_out o = eval1("rl:alice", T, B);
        cr_assert_eq(o.v[0], 0, "request B+%d passed", i + 1);
        cr_assert_eq(o.v[1], 0);
        cr_assert(o.v[3] > 0 && o.v[3] <= (long long)ceil(T), "retry_ms %lld", o.v[3]);
    }
    /* the stored tat is exact: within a burst each one is the last plus T (a 14-digit tostring
     * would be 0.1 ms off at epoch ms) */
    double last = 0;
    for (int i = 0; i < 5; i++) {
        eval1("rl:exact", T, 1000);
        char *s = redis_get("rl:exact");
        double v = strtod(s, NULL);
        free(s);
        if (i)
            cr_assert(fabs(v - last - T) < 1e-3, "stored tats %.4f then %.4f, T %.6f", last, v, T);
        last = v;
    }
    long long pttl = redis_int("PTTL", "rl:alice");
    cr_assert(pttl > 0 && pttl <= (long long)ceil(B * T), "PTTL %lld", pttl);
    char *tat = redis_get("rl:alice");
    cr_assert_not_null(tat);
    char *end;
    double v = strtod(tat, &end);
    cr_assert_eq(*end, '\0', "tat %s is not a plain decimal", tat);
    cr_assert(v > before + B * T - 1 && v < before + B * T + 5000, "tat %s, TIME was %.3f", tat, before);
    free(tat);
    cr_assert_eq(redis_int("EXISTS", "rl:bob"), 0);
    cr_assert_eq(eval1("rl:bob", T, B).v[0], 1, "another key pays for alice");
}

Test(rl_script, two_keys_atomic)
{
    const char *keys[2] = {"rl:tight", "rl:loose"};
    const double T[2] = {60000, 1000};
    const long B[2] = {1, 10};
    script_out o = eval_keys(2, keys, T, B);
    cr_assert_eq(o.v[0], 1);
    cr_assert_eq(o.v[4], 1);
    cr_assert_eq(o.v[5], 9);
    char *tight = redis_get("rl:tight"), *loose = redis_get("rl:loose");
    cr_assert(tight && loose);
    for (int i = 0; i < 3; i++) {
        o = eval_keys(2, keys, T, B);
        cr_assert_eq(o.v[0], 0);
        cr_assert_eq(o.v[4], 0, "allowed is the overall verdict");
        cr_assert(o.v[3] > 50000, "tight's retry %lld", o.v[3]);
        cr_assert_eq(o.v[7], 0, "loose is not the one to wait for");
        char *l2 = redis_get("rl:loose"), *t2 = redis_get("rl:tight");
        cr_assert_str_eq(l2, loose, "a refused call moved the loose key");
        cr_assert_str_eq(t2, tight);
        free(l2), free(t2);
    }
    /* the other order */
    const char *rev[2] = {"rl:loose", "rl:tight"};
    const double Tr[2] = {1000, 60000};
    const long Br[2] = {10, 1};
    o = eval_keys(2, rev, Tr, Br);
    cr_assert_eq(o.v[0], 0);
    cr_assert_gt(o.v[7], 50000);
    char *l3 = redis_get("rl:loose");
    cr_assert_str_eq(l3, loose);
    free(l3), free(tight), free(loose);
    /* loose alone still has 9 minus what refilled */
    o = eval1("rl:loose", 1000, 10);
    cr_assert_eq(o.v[0], 1);
    cr_assert_geq(o.v[1], 8);
    /* a key listed twice pays twice */
    const char *same[2] = {"rl:twice", "rl:twice"};
    const double Ts[2] = {10000, 10000};
    const long Bs[2] = {3, 3};
    o = eval_keys(2, same, Ts, Bs);
    cr_assert_eq(o.v[0], 1);
    cr_assert_eq(o.v[1], 2);
    cr_assert_eq(o.v[5], 1);
    o = eval_keys(2, same, Ts, Bs);
    cr_assert_eq(o.v[0], 0);
}

Test(rl_script, agrees_with_rl_gcra)
{
    const struct {
        long q, w, B;
    } cases[] = {{7, 60000, 7}, {3, 1000, 4}, {100, 60000, 100}, {10, 3600000, 3}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        rl_policy p = pol(cases[c].q, cases[c].w, cases[c].B);
        double T = (double)p.window_ms / (double)p.limit;
        char key[32];
        snprintf(key, sizeof key, "rl:agree%zu", c);
        double t0 = redis_now_ms(), tat = 0;
        script_out o[110];
        int steps = (int)p.burst + 3;
        for (int i = 0; i < steps; i++)
            o[i] = eval1(key, T, p.burst);
        double slack = redis_now_ms() - t0 + 1; /* Redis's clock moved this much during the calls */
        cr_assert_lt(slack, T / 4, "the calls took too long to compare");
        for (int i = 0; i < steps; i++) {
            rl_decision d;
            tat = rl_gcra(&p, tat, t0, &d);
            cr_assert_eq(o[i].v[0], d.allowed, "case %zu step %d", c, i);
            cr_assert_eq(o[i].v[1], d.remaining, "case %zu step %d", c, i);
            double full = d.full_ms, retry = d.retry_ms;
            cr_assert((double)o[i].v[2] >= ceil(full) - slack - 1 && (double)o[i].v[2] <= ceil(full) + 1,
                      "case %zu step %d: full %lld, rl_gcra %.3f", c, i, o[i].v[2], full);
            cr_assert((double)o[i].v[3] >= ceil(retry) - slack - 1 && (double)o[i].v[3] <= ceil(retry) + 1,
                      "case %zu step %d: retry %lld, rl_gcra %.3f", c, i, o[i].v[3], retry);
        }
    }
}

Test(rl_script, idle_keys_vanish_and_bad_arguments_are_errors)
{
    script_out o = eval1("rl:brief", 30, 2);
    cr_assert_eq(o.v[0], 1);
    long long pttl = redis_int("PTTL", "rl:brief");
    cr_assert(pttl > 0 && pttl <= 30, "PTTL %lld", pttl);
    usleep(150000);
    cr_assert_eq(redis_int("EXISTS", "rl:brief"), 0, "an idle key outlived its full bucket");

    redisReply *r = redisCommand(g_rc, "EVAL %s 1 rl:x 1 0 5", rl_script_lua);
    cr_assert(r && r->type == REDIS_REPLY_ERROR, "T_ms 0 was accepted");
    freeReplyObject(r);
    r = redisCommand(g_rc, "EVAL %s 1 rl:x 2 1000 5", rl_script_lua);
    cr_assert(r && r->type == REDIS_REPLY_ERROR, "n above the KEYS count was accepted");
    freeReplyObject(r);
    cr_assert_eq(redis_int("EXISTS", "rl:x"), 0);
    /* a corrupt stored tat reads as idle */
    redisReply *s = redisCommand(g_rc, "SET rl:corrupt garbage");
    freeReplyObject(s);
    o = eval1("rl:corrupt", 1000, 1);
    cr_assert_eq(o.v[0], 1);
}
