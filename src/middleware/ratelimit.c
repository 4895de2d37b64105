/* ratelimit: the chain's rate_limit step (API.md "Rate limiting"), after auth, before the body.
 *
 * Who is limited: the principal (per client IP for anonymous callers, the address being the one
 * trusted_proxies let X-Forwarded-For name), by tier (rate_limiting.authenticated or anonymous per
 * minute, a bucket of rate_limiting.burst), and by the workflow's gateway.rate_limit when it has one
 * (per principal, per workflow): up to two policies, checked and charged together (GCRA, ratelimit.h).
 * /health, /ready, /metrics and the other routes that need no credentials are never limited.
 *
 * Where: with redis_url, one EVALSHA per request on the loop's own Redis connection (the request
 * parks until the reply, which the loop's deadline bounds), so instances share one limit. A key that
 * Redis refused is remembered locally until its retry time and refused again without a Redis call.
 * Without Redis, or when it fails (a reply missing, late, or the breaker open: then at once), the
 * same arithmetic runs on the local table, so limits go on per instance: never unlimited, never 5xx.
 *
 * The decision is kept in the request's note; after() writes the headers (RateLimit-Policy,
 * RateLimit, X-RateLimit-Limit/Remaining/Reset, and Retry-After on a 429) into whatever answer the
 * request got, and the access log reads the note. */
#include <openssl/sha.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kailash/auth.h"
#include "kailash/ioloop.h"
#include "kailash/log.h"
#include "kailash/metrics.h"
#include "kailash/middleware.h"
#include "kailash/ratelimit.h"
#include "kailash/redis.h"
#include "kailash/workflow.h"

#define RL_LOCAL_KEYS 131072 /* the local table's bound: at most about 22 MiB, touched as used */
#define RL_KEY_MAX 128
#define RL_WINDOW_MS 60000

typedef struct rl_check {
    kreq *r;
    int n;
    char keys[RL_MAX_POLICIES][RL_KEY_MAX + 1];
    size_t lens[RL_MAX_POLICIES];
    rl_policy pol[RL_MAX_POLICIES];
    const char *names[RL_MAX_POLICIES];
} rl_check;

static rl_table *g_table;
static redis_script *g_script;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void rl_init(void)
{
    g_table = rl_table_new(RL_LOCAL_KEYS);
    g_script = redis_script_new(rl_script_lua);
    if (!g_table || !g_script)
        log_msg(LOG_ERROR, "rate_limit: out of memory at start: requests are not limited");
}

/* ---- keys and policies ------------------------------------------------------------------------ */

/* "<prefix><who>", or when that is longer than a key may be, "<prefix>#" and its SHA-256 in hex. */
static size_t key_make(char *out, const char *prefix, const char *who)
{
    int n = snprintf(out, RL_KEY_MAX + 1, "%s%s", prefix, who);
    if (n >= 0 && n <= RL_KEY_MAX)
        return (size_t)n;
    unsigned char d[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)who, strlen(who), d);
    size_t len = (size_t)snprintf(out, RL_KEY_MAX + 1, "%.40s#", prefix);
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++)
        len += (size_t)snprintf(out + len, RL_KEY_MAX + 1 - len, "%02x", d[i]);
    return len;
}

static rl_policy policy(long per_minute, long burst)
{
    return (rl_policy){.limit = per_minute, .window_ms = RL_WINDOW_MS, .burst = burst > 0 ? burst : per_minute};
}

static void rl_check_build(kreq *r, rl_check *c)
{
    const kconfig *cfg = http_server_config();
    const auth_principal *who = http_req_principal(r);
    char id[300];
    snprintf(id, sizeof id, "%s", who ? auth_principal_id(who) : http_req_client_ip(r));
    c->r = r;
    c->n = 1;
    c->names[0] = "default";
    c->lens[0] = key_make(c->keys[0], who ? "rl:p:" : "rl:ip:", id);
    c->pol[0] = policy(who ? cfg->rl_authenticated : cfg->rl_anonymous, cfg->rl_burst);
    const workflow *wf = http_req_route(r)->runs ? http_req_workflow_def(r) : NULL; /* not a view or a purge */
    if (wf && wf->rate_per_minute) {
        char scoped[600];
        snprintf(scoped, sizeof scoped, "%s:%s", wf->name, id);
        c->names[1] = "workflow";
        c->lens[1] = key_make(c->keys[1], who ? "rl:wp:" : "rl:wip:", scoped);
        c->pol[1] = policy(wf->rate_per_minute, wf->rate_burst);
        c->n = 2;
    }
}

/* ---- the decision ----------------------------------------------------------------------------- */

/* Notes the decisions and answers a refusal. MW_ANSWERED or MW_NEXT. */
static int rl_apply(const rl_check *c, const rl_decision *d, int via)
{
    http_limit_note *note = http_req_limit_note(c->r);
    note->checked = 1;
    note->via = via;
    note->n = c->n;
    note->refused = !d[0].allowed;
    metrics_ratelimit(http_req_principal(c->r) ? "authenticated" : "anonymous", note->refused);
    for (int i = 0; i < c->n; i++) /* a 429 has r=0 in every policy (API.md) */
        note->pol[i] = (struct http_limit_policy){.name = c->names[i],
                                                  .q = c->pol[i].limit,
                                                  .w_s = c->pol[i].window_ms / 1000,
                                                  .r = note->refused ? 0 : d[i].remaining,
                                                  .t = rl_reset_s(&d[i])};
    if (!note->refused)
        return MW_NEXT;
    char msg[160];
    snprintf(msg, sizeof msg, "rate limit exceeded: %ld requests per minute%s", c->pol[c->n - 1].limit,
             c->n > 1 ? " for this workflow, or the caller's tier limit" : "");
    http_reply_error(c->r, 429, "rate_limited", msg, NULL);
    return MW_ANSWERED;
}

static int rl_local(rl_check *c)
{
    rl_decision d[RL_MAX_POLICIES];
    const char *keys[RL_MAX_POLICIES] = {c->keys[0], c->keys[1]};
    rl_table_check(g_table, keys, c->lens, c->pol, c->n, util_now_ms(), d);
    return rl_apply(c, d, HTTP_LIMIT_LOCAL);
}

/* A key Redis refused before, until its retry time: refused here, without asking again. */
static int rl_known(rl_check *c)
{
    double now = util_now_ms();
    for (int i = 0; i < c->n; i++) {
        double wait = rl_table_denied_for(g_table, c->keys[i], c->lens[i], now);
        if (wait > 0) {
            rl_decision d = {.allowed = 0, .remaining = 0, .retry_ms = wait};
            rl_check one = *c;
            one.n = 1;
            one.names[0] = c->names[i];
            one.pol[0] = c->pol[i];
            return rl_apply(&one, &d, HTTP_LIMIT_KNOWN);
        }
    }
    return -1;
}

/* The script's reply: per key allowed, remaining, full_ms, retry_ms. 0, or -1 when it is not that. */
static int rl_parse(const redisReply *rep, int n, rl_decision *d)
{
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != (size_t)(4 * n))
        return -1;
    for (size_t i = 0; i < rep->elements; i++)
        if (rep->element[i]->type != REDIS_REPLY_INTEGER)
            return -1;
    for (int i = 0; i < n; i++) {
        redisReply **e = rep->element + 4 * i;
        d[i] = (rl_decision){.allowed = e[0]->integer == 1,
                             .remaining = (long)e[1]->integer,
                             .full_ms = (double)e[2]->integer,
                             .retry_ms = (double)e[3]->integer};
    }
    int all = 1; /* allowed is the overall decision in each */
    for (int i = 0; i < n; i++)
        all &= d[i].allowed;
    for (int i = 0; i < n; i++)
        d[i].allowed = all;
    return 0;
}

static void rl_on_reply(redisReply *rep, void *ud)
{
    rl_check *c = ud;
    rl_decision d[RL_MAX_POLICIES];
    int rc;
    if (rl_parse(rep, c->n, d) != 0) {
        if (rep && rep->type == REDIS_REPLY_ERROR)
            log_msg(LOG_WARN, "rate_limit: Redis refused the script: %.200s", rep->str);
        rc = rl_local(c); /* no answer in time, or not the script's: this instance decides */
    } else {
        double now = util_now_ms();
        for (int i = 0; i < c->n; i++)
            if (!d[i].allowed && d[i].retry_ms > 0)
                rl_table_deny_until(g_table, c->keys[i], c->lens[i], now + d[i].retry_ms);
        rc = rl_apply(c, d, HTTP_LIMIT_REDIS);
    }
    kreq *r = c->r;
    free(c);
    http_chain_continue(r, rc == MW_ANSWERED);
}

/* EVALSHA with the request's keys; MW_PARKED, or -1 when Redis cannot be asked now. */
static int rl_shared(rl_check *c)
{
    int known = rl_known(c);
    if (known >= 0)
        return known;
    rl_check *p = malloc(sizeof *p);
    if (!p)
        return -1;
    *p = *c;
    char num[RL_MAX_POLICIES * 2 + 1][32];
    const char *args[RL_MAX_POLICIES * 3 + 1];
    size_t lens[RL_MAX_POLICIES * 3 + 1];
    int k = 0;
    for (int i = 0; i < p->n; i++, k++) {
        args[k] = p->keys[i];
        lens[k] = p->lens[i];
    }
    snprintf(num[0], sizeof num[0], "%d", p->n);
    args[k] = num[0];
    lens[k++] = strlen(num[0]);
    for (int i = 0; i < p->n; i++) {
        snprintf(num[1 + 2 * i], 32, "%.17g", (double)p->pol[i].window_ms / (double)p->pol[i].limit);
        snprintf(num[2 + 2 * i], 32, "%ld", p->pol[i].burst);
        for (int j = 1; j <= 2; j++) {
            args[k] = num[j + 2 * i];
            lens[k++] = strlen(num[j + 2 * i]);
        }
    }
    if (redis_script_call(g_script, p->n, k, args, lens, rl_on_reply, p) != 0) {
        free(p);
        return -1;
    }
    return MW_PARKED;
}

int mw_ratelimit_before(kreq *r)
{
    int need = http_req_route(r)->auth;
    if (need == HTTP_AUTH_NONE || need == HTTP_AUTH_METRICS || !http_server_config()->rl_enabled)
        return MW_NEXT;
    pthread_once(&g_once, rl_init);
    if (!g_table)
        return MW_NEXT;
    rl_check c;
    rl_check_build(r, &c);
    if (g_script && redis_state() >= 0) {
        int rc = rl_shared(&c);
        if (rc >= 0)
            return rc;
    }
    return rl_local(&c);
}

/* ---- the answer's headers --------------------------------------------------------------------- */

void mw_ratelimit_after(kreq *r)
{
    const http_limit_note *n = http_req_limit_note_get(r);
    if (!n->checked || n->n < 1)
        return;
    char policy[160] = "", limit[160] = "", num[32];
    size_t pl = 0, ll = 0;
    int least = 0;
    for (int i = 0; i < n->n; i++) {
        const struct http_limit_policy *p = &n->pol[i];
        pl += (size_t)snprintf(policy + pl, sizeof policy - pl, "%s\"%s\";q=%ld;w=%ld", i ? ", " : "", p->name, p->q,
                               p->w_s);
        ll += (size_t)snprintf(limit + ll, sizeof limit - ll, "%s\"%s\";r=%ld;t=%ld", i ? ", " : "", p->name, p->r,
                               p->t);
        /* the trio shows the policy with less remaining; on a 429, the one to wait longest for */
        if (n->refused ? p->t > n->pol[least].t : p->r < n->pol[least].r)
            least = i;
    }
    const struct http_limit_policy *p = &n->pol[least];
    http_reply_header(r, "RateLimit-Policy", policy);
    http_reply_header(r, "RateLimit", limit);
    snprintf(num, sizeof num, "%ld", p->q);
    http_reply_header(r, "X-RateLimit-Limit", num);
    snprintf(num, sizeof num, "%ld", p->r);
    http_reply_header(r, "X-RateLimit-Remaining", num);
    snprintf(num, sizeof num, "%ld", (long)util_now_unix_s() + p->t);
    http_reply_header(r, "X-RateLimit-Reset", num);
    if (n->refused) {
        snprintf(num, sizeof num, "%ld", p->t > 0 ? p->t : 1);
        http_reply_header(r, "Retry-After", num);
    }
}
