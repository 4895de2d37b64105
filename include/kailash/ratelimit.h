/* ratelimit: GCRA (the generic cell rate algorithm: a token bucket held as one timestamp per key),
 * one algorithm in two places (API.md "Rate limiting"):
 *
 *   gcra.c       the arithmetic, pure: a policy (q requests per w ms, a bucket of burst) and a key's
 *                theoretical arrival time (tat) give a decision and the new tat;
 *   rl_table.c   the local table: sharded, one tat per key, finely locked; expired keys swept so
 *                memory stays bounded under a flood of distinct keys; also what the shared limiter
 *                learnt (a key known to be over its limit until a time is refused without Redis);
 *   rl_script.c  the same arithmetic as one Lua script for Redis (EVALSHA), checking and updating
 *                up to RL_MAX_POLICIES keys atomically, with Redis's own clock (TIME), so instances
 *                on one Redis share one limit;
 *   ratelimit.c  the chain step (src/middleware/ratelimit.c): which keys, which policies, local or
 *                shared, the answer's headers, 429.
 *
 * The bucket: emission interval T = window_ms / limit; it holds burst requests (B). A request at now
 * with the key's tat: t0 = max(tat, now); new = t0 + T; allowed when new - now <= B*T + eps (then tat =
 * new), refused otherwise (tat unchanged). remaining = floor((B*T + eps - (new - now)) / T) when
 * allowed (at most B - 1), 0 when refused; full_ms = new - now when allowed (time until the bucket is
 * full again), t0 - now when refused (the bucket as it stands), and for a refusal retry_ms = new -
 * now - B*T (time until one request fits). eps = min(T/2, (B+2) * (|now| + B*T) * DBL_EPSILON) only
 * absorbs the doubles' rounding (each tat + T rounds the same way; at epoch ms a burst of B would
 * otherwise end a few ulps over B*T): exactly B pass at one instant, never B+1. Degenerate policies
 * read limit, window_ms, burst < 1 as 1; a non-finite tat reads as idle (0); a non-finite now
 * refuses (retry_ms = T) and keeps the tat. */
#ifndef KAILASH_RATELIMIT_H
#define KAILASH_RATELIMIT_H

#include <stddef.h>

#define RL_MAX_POLICIES 2 /* the tier's, and a workflow's gateway.rate_limit */

typedef struct rl_policy {
    long limit;     /* q: requests per window (>= 1) */
    long window_ms; /* w in ms (60000 for the per-minute tiers) */
    long burst;     /* B: the bucket's size (>= 1; the tiers default it to limit) */
} rl_policy;

typedef struct rl_decision {
    int allowed;
    long remaining;  /* r: what may be sent now (after this request when allowed; 0 when refused) */
    double full_ms;  /* allowed: ms until the bucket is full again (0: full) */
    double retry_ms; /* refused: ms until one request fits (> 0) */
} rl_decision;

/* ---- gcra.c ---- */

/* One request at now_ms against a key whose tat is tat_ms (0 or anything <= now: an idle key).
 * Fills *d and returns the key's tat after it (unchanged when refused). Pure, thread-safe. */
double rl_gcra(const rl_policy *p, double tat_ms, double now_ms, rl_decision *d);
/* API.md's header numbers from a decision: t (whole seconds, >= 1 for a refusal: Retry-After).
 * Allowed: ceil(full_ms / 1000), 0 when full; refused: max(1, ceil(retry_ms / 1000)). A microsecond
 * of rounding noise is ignored (1000.0000001 ms is 1 s). */
long rl_reset_s(const rl_decision *d);

/* ---- rl_table.c ---- */

typedef struct rl_table rl_table;

/* A table that holds at most max_keys keys (at least RL_MAX_POLICIES; its memory is bounded by
 * that, allocated at once and touched as used: RL_TABLE_KEY_BYTES + 16 bytes a key at most). When
 * full of live keys, the key that expires first is forgotten (it starts afresh). NULL when out of
 * memory or without kernel randomness (the chains' hash key). Thread-safe from then on; free once
 * no other thread uses it. */
#define RL_TABLE_KEY_BYTES 160
rl_table *rl_table_new(size_t max_keys);
void rl_table_free(rl_table *t);
/* One request against n (<= RL_MAX_POLICIES) keys with their policies, at now_ms, atomically: it
 * is allowed only when every key allows it, and then every key's tat moves; refused, none moves.
 * Keys are byte strings (keylen <= 128; the caller hashes longer ones first, else they are folded to
 * 120 bytes plus a keyed digest). d[i] is key i's decision (allowed is the overall one in each);
 * refused, a key that would have passed has remaining 0, retry_ms 0 and full_ms as it stands, so
 * the Retry-After is the largest retry_ms. A key listed twice is charged twice, in order. n outside
 * 1..RL_MAX_POLICIES is a caller's bug: nothing is stored and every d[i] is a refusal. */
void rl_table_check(rl_table *t, const char *const *keys, const size_t *keylens, const rl_policy *p, int n,
                    double now_ms, rl_decision *d);
/* The shared limiter learnt that key is over its limit until until_ms: remember it (the later until
 * wins; a non-finite one is ignored). */
void rl_table_deny_until(rl_table *t, const char *key, size_t keylen, double until_ms);
/* ms until key may pass again if it is known to be over its limit (> 0), else 0. */
double rl_table_denied_for(rl_table *t, const char *key, size_t keylen, double now_ms);
/* Keys held now (expired ones are swept as calls meet them, so some may still be counted). */
size_t rl_table_count(rl_table *t);

/* ---- rl_script.c ---- */

/* The Lua text (Redis >= 7, EVAL/EVALSHA). KEYS[1..n]; ARGV: n, then per key T_ms, B (as integers
 * or decimals; write T with %.17g to keep it exact). It reads Redis's TIME, applies rl_gcra's
 * arithmetic (eps included) to every key, moves every tat (SET key "%.17g" PX ceil(tat - now), so a
 * key vanishes once its bucket is full) only when all allow, and returns a flat array with, per key:
 * allowed (0/1, the overall verdict in each), remaining, full_ms, retry_ms (integers, ms rounded
 * up; refused, a key that would have passed has remaining 0, retry_ms 0, full_ms as it stands).
 * A bad n or a T_ms that is not a positive number is an error reply; B < 1 reads as 1. */
extern const char rl_script_lua[];

#endif
