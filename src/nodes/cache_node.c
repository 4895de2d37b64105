/* CacheNode (+ InMemoryCacheNode, RedisCacheNode, IntelligentCacheNode): the SDK's key-value cache
 * node (kailash.nodes.cache.cache.CacheNode) for the operations get, set, delete and exists, on two
 * backends:
 *
 *   memory  one store per process, shared by every run and every node (the SDK keeps one dict per
 *           node instance, so a value set by one node is invisible to the next node and to another
 *           worker: useless behind a gateway). It is a cache_l1 (cache.h: sharded LRU, TTL per
 *           entry) of CACHE_NODE_MEMORY_BYTES of its own, apart from the response cache's, keyed by
 *           SHA-256 of "kailash:node:" + the SDK's full key. An entry is an 8-byte version then the
 *           value's compact JSON. Sets take one of CN_STRIPES mutexes (by key) so the version bump
 *           and expected_version's compare-and-set are atomic; gets take none.
 *   redis   the loop's connection (redis.h), one command per operation (GET, SET [EX ttl], DEL,
 *           EXISTS) on the key "kailash:node:" + the SDK's full key. The prefix keeps a request's
 *           key out of the response cache's and the rate limiter's keys ("kailash:rc:", ...); an SDK
 *           process shares these entries by using namespace "kailash:node" (or
 *           "kailash:node:<namespace>"), whose full keys are then the same. Values are JSON, as the
 *           SDK's serialization "json" writes them (compact here: the SDK's json.loads reads both).
 *
 * The SDK's full key is tenant_id:namespace:key with the empty parts left out, and it is the `key`
 * output. ttl is in seconds (default 3600); ttl <= 0 never expires. Outputs are the SDK's dicts,
 * keys in the order its LocalRuntime gives them (the output schema's ports that are not None, in the
 * schema's order, then the rest):
 *   get     success, value, hit, key, backend_used, operation_time, version
 *   set     success, key, ttl_remaining (ttl, or -1 for none), backend_used, operation_time, version
 *   delete  success, key, backend_used, operation_time, deleted
 *   exists  success, key, backend_used, operation_time, exists
 * and a failed compare-and-set: success false, key, cas_failed, expected_version, actual_version, error.
 *
 * Differences from the SDK (each a consequence of the shared store): version lives with the entry,
 * so it is null after the entry expired or was evicted (the SDK keeps counting in the node
 * instance); on redis, version is null (the SDK reports its own instance's counter) and
 * expected_version fails as the SDK's does. An expired memory entry does not exist (the SDK's exists
 * and delete still see it until a get drops it; its redis backend does not). A Redis command that
 * fails after it was sent is what the SDK makes of an exception there: get a miss, set success
 * false, delete and exists success false with error; a Redis that cannot be reached at all (none
 * configured, breaker open) fails the node, as the SDK's failed connection does. A command still
 * unanswered at the run's deadline ends the node with "timeout" (its late reply is dropped).
 *
 * Limits against hostile inputs: the full key up to CN_MAX_KEY bytes, a value's JSON up to
 * CN_MAX_VALUE bytes, ttl up to CN_MAX_TTL seconds. */
#include <ctype.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kailash/cache.h"
#include "kailash/ioloop.h"
#include "kailash/node.h"
#include "kailash/redis.h"
#include "kailash/util.h"

#define CACHE_NODE_MEMORY_BYTES ((size_t)64 << 20) /* 16 shards of 4 MiB: a 1 MiB value fits */
#define CN_MAX_KEY 1024
#define CN_MAX_VALUE ((size_t)1 << 20)
#define CN_MAX_TTL 315360000LL /* ten years */
#define CN_DEFAULT_TTL 3600
#define CN_NO_EXPIRY_MS 1e15 /* about 31000 years: L1 needs a finite TTL */
#define CN_PREFIX "kailash:node:"
#define CN_STRIPES 64
#define CN_OPS "get set delete exists"
#define CN_REDIS_URL_DEFAULT "redis://localhost:6379"

enum cn_backend { CN_MEMORY, CN_REDIS };
enum cn_op { CN_GET, CN_SET, CN_DELETE, CN_EXISTS };

typedef struct cn_conf {
    int backend;
} cn_conf;

/* One operation, read from the final inputs. */
typedef struct cn_req {
    int op;
    char full[CN_MAX_KEY + 1]; /* the SDK's full key */
    json_t *value;             /* borrowed from the inputs (set) */
    long long ttl;
    int has_expected;
    long long expected;
    double t0; /* util_now_ms() at start */
} cn_req;

static const char *const cn_keys[] = {
    "operation", "key", "value", "ttl", "backend", "namespace", "tenant_id", "expected_version", "redis_url", NULL};
static const char *const cn_inputs[] = {"operation",        "key", "value", "ttl", "namespace", "tenant_id",
                                        "expected_version", NULL};
static const char *const cn_pinned[] = {"backend", "redis_url", "namespace", "tenant_id", NULL};

/* The SDK's CacheNode parameters for features kailashd does not have: accepted at their default. */
static const node_sdk_default cn_sdk_defaults[] = {
    {"serialization", "\"json\""},
    {"compression", "false"},
    {"compression_threshold", "1024"},
    {"eviction_policy", "\"lru\""},
    {"max_memory_items", "10000"},
    {"keys", "null"},
    {"values", "null"},
    {"pattern", "null"},
    {NULL, NULL},
};

/* The SDK's output schema, in its order (LocalRuntime puts these first when not None). */
static const char *const cn_schema[] = {
    "success",      "value",          "values", "hit",        "key", "ttl_remaining",
    "backend_used", "operation_time", "stats",  "compressed", NULL};
static const char *const cn_ports[] = {
    "success",          "value",          "values",     "hit",     "key",     "ttl_remaining", "backend_used",
    "operation_time",   "stats",          "compressed", "version", "deleted", "exists",        "cas_failed",
    "expected_version", "actual_version", "error",      NULL};

/* ======================================================================== reading inputs */

static int cn_op_parse(const char *s, int *op)
{
    static const char *const names[] = {"get", "set", "delete", "exists"};
    char low[16];
    size_t n = strlen(s);
    if (n >= sizeof low)
        return -1;
    for (size_t i = 0; i <= n; i++)
        low[i] = (char)tolower((unsigned char)s[i]);
    for (int i = 0; i < 4; i++)
        if (strcmp(low, names[i]) == 0)
            return *op = i, 0;
    return -1;
}

/* The message for an operation that is not one of ours: the SDK's other ones by name. */
static int cn_op_refuse(const char *s, char *msg, size_t msglen)
{
    static const char *const sdk_only[] = {"clear", "stats", "get_pattern", "mget", "mset", NULL};
    for (const char *const *o = sdk_only; *o; o++)
        if (strcasecmp(s, *o) == 0)
            return util_err(msg, msglen,
                            "operation: '%s' is an SDK operation kailashd does not have; expected one of " CN_OPS, s);
    return util_err(msg, msglen, "operation: '%.64s' is not an operation; expected one of " CN_OPS, s);
}

/* ttl as the SDK's int(): an integer, a real (truncated), or a string of decimal digits. */
static int cn_ttl_read(json_t *v, long long *ttl, char *msg, size_t msglen)
{
    if (!v || json_is_null(v)) {
        *ttl = CN_DEFAULT_TTL;
        return 0;
    }
    if (json_is_integer(v))
        *ttl = json_integer_value(v);
    else if (json_is_real(v) && json_real_value(v) > -1e18 && json_real_value(v) < 1e18)
        *ttl = (long long)json_real_value(v);
    else if (json_is_string(v)) {
        const char *s = json_string_value(v);
        char *end;
        while (isspace((unsigned char)*s))
            s++;
        long long t = strtoll(s, &end, 10);
        while (isspace((unsigned char)*end))
            end++;
        if (end == s || *end || !isdigit((unsigned char)s[*s == '-' || *s == '+']))
            return util_err(msg, msglen, "ttl: expected an integer number of seconds");
        *ttl = t;
    } else
        return util_err(msg, msglen, "ttl: expected an integer number of seconds");
    if (*ttl > CN_MAX_TTL)
        return util_err(msg, msglen, "ttl: at most %lld seconds", CN_MAX_TTL);
    return 0;
}

/* A key part as the SDK's str(): a string or an integer. */
static int cn_part(json_t *v, const char *name, char *out, size_t outlen, char *msg, size_t msglen)
{
    if (json_is_string(v)) {
        if (strlen(json_string_value(v)) != json_string_length(v))
            return util_err(msg, msglen, "%s: a NUL byte is not allowed", name);
        if (json_string_length(v) >= outlen)
            return util_err(msg, msglen, "%s: longer than %d bytes", name, CN_MAX_KEY);
        memcpy(out, json_string_value(v), json_string_length(v) + 1);
        return 0;
    }
    if (json_is_integer(v)) {
        snprintf(out, outlen, "%lld", (long long)json_integer_value(v));
        return 0;
    }
    return util_err(msg, msglen, "%s: expected a string", name);
}

/* The SDK's _build_key: tenant_id:namespace:key, empty parts left out. */
static int cn_full_key(json_t *in, char *full, char *msg, size_t msglen)
{
    char key[CN_MAX_KEY + 1], ns[CN_MAX_KEY + 1] = "", tenant[CN_MAX_KEY + 1] = "";
    json_t *k = json_object_get(in, "key"), *n = json_object_get(in, "namespace"),
           *t = json_object_get(in, "tenant_id");
    if (!k || json_is_null(k))
        return util_err(msg, msglen, "key: required");
    if (cn_part(k, "key", key, sizeof key, msg, msglen) != 0 ||
        (n && !json_is_null(n) && cn_part(n, "namespace", ns, sizeof ns, msg, msglen) != 0) ||
        (t && !json_is_null(t) && cn_part(t, "tenant_id", tenant, sizeof tenant, msg, msglen) != 0))
        return -1;
    size_t len = 0;
    full[0] = '\0';
    const char *parts[] = {tenant, ns, key};
    for (int i = 0; i < 3; i++) {
        if (!*parts[i] && i < 2)
            continue;
        size_t pl = strlen(parts[i]);
        if (len + (len ? 1 : 0) + pl > CN_MAX_KEY)
            return util_err(msg, msglen, "key: tenant_id:namespace:key is longer than %d bytes", CN_MAX_KEY);
        if (len)
            full[len++] = ':';
        memcpy(full + len, parts[i], pl + 1);
        len += pl;
    }
    return 0;
}

/* The final inputs into r; 0, or -1 with err ("internal": the workflow's values are wrong). */
static int cn_req_read(json_t *in, cn_req *r, node_error *err)
{
    char msg[200];
    json_t *op = json_object_get(in, "operation");
    if (!json_is_string(op))
        return node_fail(err, "internal", "operation: required, one of " CN_OPS);
    if (cn_op_parse(json_string_value(op), &r->op) != 0) {
        cn_op_refuse(json_string_value(op), msg, sizeof msg);
        return node_fail(err, "internal", "%s", msg);
    }
    if (cn_full_key(in, r->full, msg, sizeof msg) != 0)
        return node_fail(err, "internal", "%s", msg);
    if (r->op != CN_SET)
        return 0;
    r->value = json_object_get(in, "value");
    if (!r->value || json_is_null(r->value))
        return node_fail(err, "internal", "value: required for set (the SDK fails on a missing or None value too)");
    if (cn_ttl_read(json_object_get(in, "ttl"), &r->ttl, msg, sizeof msg) != 0)
        return node_fail(err, "internal", "%s", msg);
    json_t *ev = json_object_get(in, "expected_version");
    if (ev && !json_is_null(ev)) {
        if (!json_is_integer(ev))
            return node_fail(err, "internal", "expected_version: expected an integer or null");
        r->has_expected = 1;
        r->expected = json_integer_value(ev);
    }
    return 0;
}

/* The value's stored JSON, after an 8-byte header slot; -1 with err when it is too large. */
static int cn_value_encode(json_t *v, buf *b, node_error *err)
{
    uint64_t zero = 0;
    if (buf_append(b, &zero, sizeof zero) != 0 || buf_append_json(b, v) != 0)
        return node_fail(err, "internal", "out of memory encoding the value");
    if (b->len - sizeof zero > CN_MAX_VALUE)
        return node_fail(err, "bad_request", "value: %zu bytes of JSON, more than the %zu a cache entry may hold",
                         b->len - sizeof zero, CN_MAX_VALUE);
    return 0;
}

/* ======================================================================== outputs */

/* The LocalRuntime's order: the schema's ports that are not null, then the rest as the SDK made
 * them. Takes sdk (a new object in the SDK's dict order) and returns the reordered one. */
static json_t *cn_order(json_t *sdk)
{
    json_t *out = json_object();
    if (!out) {
        json_decref(sdk);
        return NULL;
    }
    for (const char *const *p = cn_schema; *p; p++) {
        json_t *v = json_object_get(sdk, *p);
        if (v && !json_is_null(v))
            json_object_set(out, *p, v);
    }
    const char *k;
    json_t *v;
    json_object_foreach(sdk, k, v) if (!json_object_get(out, k)) json_object_set(out, k, v);
    json_decref(sdk);
    return out;
}

static json_t *cn_version(int has, uint64_t v)
{
    return has ? json_integer((json_int_t)v) : json_null();
}

/* The SDK's result for r, in its dict order, then operation_time and backend_used as async_run adds
 * them. what: get's value (borrowed; NULL on a miss), or nothing. */
static json_t *cn_result(const cn_req *r, int backend, int success, int flag, json_t *value, int has_version,
                         uint64_t version, const char *error)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_object_set_new(o, "success", json_boolean(success));
    switch (r->op) {
    case CN_GET:
        json_object_set_new(o, "value", value ? json_incref(value) : json_null());
        json_object_set_new(o, "hit", json_boolean(flag));
        json_object_set_new(o, "key", json_string(r->full));
        json_object_set_new(o, "version", cn_version(has_version, version));
        break;
    case CN_SET:
        json_object_set_new(o, "key", json_string(r->full));
        json_object_set_new(o, "ttl_remaining", json_integer(r->ttl > 0 ? r->ttl : -1));
        json_object_set_new(o, "version", cn_version(has_version, version));
        break;
    default:
        json_object_set_new(o, r->op == CN_DELETE ? "deleted" : "exists", json_boolean(flag));
        json_object_set_new(o, "key", json_string(r->full));
        break;
    }
    if (error)
        json_object_set_new(o, "error", json_string(error));
    json_object_set_new(o, "operation_time", json_real((util_now_ms() - r->t0) / 1000.0));
    json_object_set_new(o, "backend_used", json_string(backend == CN_REDIS ? "redis" : "memory"));
    return cn_order(o);
}

/* The SDK's compare-and-set refusal; actual NULL: the redis backend's (CAS is memory only). */
static json_t *cn_cas_failed(const cn_req *r, int backend, int has_actual, uint64_t actual, const char *key_out)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_object_set_new(o, "success", json_false());
    json_object_set_new(o, "key", json_string(key_out));
    json_object_set_new(o, "cas_failed", json_true());
    if (backend == CN_REDIS) {
        json_object_set_new(o, "error",
                            json_string("CAS (expected_version) is only supported with backend='memory'. "
                                        "Redis and hybrid backends require server-side CAS (e.g., Redis "
                                        "WATCH/MULTI)."));
        json_object_set_new(o, "operation_time", json_real(0.0));
    } else {
        char msg[128], act[24] = "None";
        if (has_actual)
            snprintf(act, sizeof act, "%llu", (unsigned long long)actual);
        snprintf(msg, sizeof msg, "CAS conflict: expected version %lld, actual %s", r->expected, act);
        json_object_set_new(o, "expected_version", json_integer(r->expected));
        json_object_set_new(o, "actual_version", cn_version(has_actual, actual));
        json_object_set_new(o, "error", json_string(msg));
        json_object_set_new(o, "operation_time", json_real((util_now_ms() - r->t0) / 1000.0));
    }
    json_object_set_new(o, "backend_used", json_string(backend == CN_REDIS ? "redis" : "memory"));
    return cn_order(o);
}

/* ======================================================================== memory */

static cache_l1 *g_store;
static pthread_once_t g_store_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t g_stripes[CN_STRIPES];
static const EVP_MD *g_sha256;

static void cn_store_init(void)
{
    g_sha256 = EVP_sha256();
    g_store = cache_l1_new(CACHE_NODE_MEMORY_BYTES);
    for (int i = 0; i < CN_STRIPES; i++)
        pthread_mutex_init(&g_stripes[i], NULL);
}

static int cn_store_key(const char *full, cache_key *k)
{
    char text[sizeof CN_PREFIX + CN_MAX_KEY];
    int n = snprintf(text, sizeof text, CN_PREFIX "%s", full);
    unsigned len = 0;
    return g_sha256 && EVP_Digest(text, (size_t)n, k->d, &len, g_sha256, NULL) == 1 && len == 32 ? 0 : -1;
}

/* The entry under k: 1 with its version (and its bytes in *b when b), 0 absent, -1 out of memory. */
static int cn_store_get(const cache_key *k, buf *b, uint64_t *version)
{
    buf tmp = {0};
    buf *out = b ? b : &tmp;
    int rc = cache_l1_get(g_store, k, util_now_ms(), out, NULL);
    if (rc == 1) {
        if (out->len < sizeof *version)
            rc = 0;
        else
            memcpy(version, out->data, sizeof *version);
    }
    buf_free(&tmp);
    return rc;
}

static json_t *cn_memory_set(const cn_req *r, const cache_key *k, node_error *err)
{
    buf b = {0};
    if (cn_value_encode(r->value, &b, err) != 0) {
        buf_free(&b);
        return NULL;
    }
    pthread_mutex_t *mu = &g_stripes[k->d[31] % CN_STRIPES];
    pthread_mutex_lock(mu);
    uint64_t cur = 0;
    int has = cn_store_get(k, NULL, &cur) == 1;
    if (r->has_expected && (!has || (long long)cur != r->expected)) {
        pthread_mutex_unlock(mu);
        buf_free(&b);
        return cn_cas_failed(r, CN_MEMORY, has, cur, r->full);
    }
    uint64_t next = (has ? cur : 0) + 1;
    memcpy(b.data, &next, sizeof next);
    double ttl_ms = r->ttl > 0 ? (double)r->ttl * 1000.0 : CN_NO_EXPIRY_MS;
    int ok = cache_l1_put(g_store, k, b.data, b.len, util_now_ms(), ttl_ms, 0) == 0;
    pthread_mutex_unlock(mu);
    buf_free(&b);
    return cn_result(r, CN_MEMORY, ok, 0, NULL, ok ? 1 : has, ok ? next : cur, NULL);
}

static json_t *cn_memory_get(const cn_req *r, const cache_key *k, node_error *err)
{
    buf b = {0};
    uint64_t version = 0;
    int rc = cn_store_get(k, &b, &version);
    json_t *value = NULL;
    if (rc == 1) {
        value = json_loadb(b.data + sizeof version, b.len - sizeof version, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        if (!value)
            rc = 0;
    }
    buf_free(&b);
    if (rc < 0) {
        node_fail(err, "internal", "out of memory reading the cache");
        return NULL;
    }
    json_t *o = cn_result(r, CN_MEMORY, 1, rc == 1, value, rc == 1, version, NULL);
    json_decref(value);
    return o;
}

/* One operation on the process's store: the outputs, or NULL with err. */
static json_t *cn_memory_do(const cn_req *r, node_error *err)
{
    pthread_once(&g_store_once, cn_store_init);
    cache_key k;
    if (!g_store || cn_store_key(r->full, &k) != 0) {
        node_fail(err, "internal", "the memory cache could not be created");
        return NULL;
    }
    uint64_t version;
    json_t *o = NULL;
    switch (r->op) {
    case CN_GET:
        return cn_memory_get(r, &k, err);
    case CN_SET:
        return cn_memory_set(r, &k, err);
    case CN_DELETE:
        o = cn_result(r, CN_MEMORY, 1, cache_l1_del(g_store, &k) == 1, NULL, 0, 0, NULL);
        break;
    default:
        o = cn_result(r, CN_MEMORY, 1, cn_store_get(&k, NULL, &version) == 1, NULL, 0, 0, NULL);
        break;
    }
    if (!o)
        node_fail(err, "internal", "out of memory");
    return o;
}

/* ======================================================================== redis */

typedef struct cn_redis_call {
    node_call *call;   /* valid until done */
    ioloop *io;        /* call->io, where the command, its reply, the timer and cancel run */
    io_timer deadline; /* the run's deadline: done with "timeout" then, the reply comes later */
    cn_req req;
    buf value;    /* set: header slot + JSON */
    int finished; /* done was called (by the reply, the deadline or cancel); loop thread only */
} cn_redis_call;

/* Calls done once (out is taken; NULL with err), and unhooks cancel and the deadline. c stays until
 * the reply, which always comes (NULL when the connection goes or the loop stops). */
static void cn_redis_finish(cn_redis_call *c, json_t *out, const node_error *err)
{
    if (c->finished) {
        json_decref(out);
        return;
    }
    c->finished = 1;
    ioloop_timer_stop(c->io, &c->deadline);
    c->call->cancel = NULL;
    c->call->node_data = NULL;
    node_error oom;
    if (!out && !err)
        node_fail(&oom, "internal", "out of memory");
    c->call->done(c->call, out, out ? NULL : err ? err : &oom);
}

static void cn_redis_deadline(io_timer *t)
{
    cn_redis_call *c = t->ud;
    node_error e;
    node_fail(&e, "timeout", "the run's deadline passed while waiting for Redis");
    cn_redis_finish(c, NULL, &e);
}

static void cn_redis_reply(redisReply *reply, void *ud)
{
    cn_redis_call *c = ud;
    const cn_req *r = &c->req;
    /* reply NULL or an error reply: what the SDK's per-operation exception handlers return */
    int failed = !reply || reply->type == REDIS_REPLY_ERROR;
    const char *why = !reply ? "Redis command failed (connection lost or deadline passed)" : failed ? reply->str : NULL;
    if (!c->finished) {
        json_t *out = NULL;
        switch (r->op) {
        case CN_GET: {
            json_t *v = NULL;
            if (!failed && reply->type == REDIS_REPLY_STRING)
                v = json_loadb(reply->str, reply->len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL); /* not JSON: a miss */
            out = cn_result(r, CN_REDIS, 1, v != NULL, v, 0, 0, NULL);
            json_decref(v);
            break;
        }
        case CN_SET:
            out = cn_result(r, CN_REDIS, !failed && reply->type == REDIS_REPLY_STATUS, 0, NULL, 0, 0, NULL);
            break;
        default:
            out = cn_result(r, CN_REDIS, !failed, !failed && reply->type == REDIS_REPLY_INTEGER && reply->integer > 0,
                            NULL, 0, 0, why);
            break;
        }
        cn_redis_finish(c, out, NULL);
    }
    buf_free(&c->value);
    free(c);
}

/* On call->io (node_call.cancel): answers "cancelled" now; the reply still comes and frees c. */
static void cn_redis_cancel(node_call *call)
{
    cn_redis_call *c = call->node_data;
    node_error e;
    node_fail(&e, "cancelled", "cancelled");
    cn_redis_finish(c, NULL, &e);
}

/* Sends the command on the calling loop (call->io's); -1 with err when Redis cannot be asked now. */
static int cn_redis_send(cn_redis_call *c, node_error *err)
{
    char key[sizeof CN_PREFIX + CN_MAX_KEY], ttl[24];
    const cn_req *r = &c->req;
    int kl = snprintf(key, sizeof key, CN_PREFIX "%s", r->full);
    const char *argv[5] = {NULL, key};
    size_t lens[5] = {0, (size_t)kl};
    int argc = 2;
    switch (r->op) {
    case CN_GET:
        argv[0] = "GET";
        break;
    case CN_DELETE:
        argv[0] = "DEL";
        break;
    case CN_EXISTS:
        argv[0] = "EXISTS";
        break;
    default:
        argv[0] = "SET";
        argv[2] = c->value.data + sizeof(uint64_t);
        lens[2] = c->value.len - sizeof(uint64_t);
        argc = 3;
        if (r->ttl > 0) {
            argv[3] = "EX";
            lens[3] = 2;
            lens[4] = (size_t)snprintf(ttl, sizeof ttl, "%lld", r->ttl);
            argv[4] = ttl;
            argc = 5;
        }
    }
    lens[0] = strlen(argv[0]);
    if (redis_command(argc, argv, lens, cn_redis_reply, c) != 0) {
        if (redis_state() < 0)
            return node_fail(err, "upstream_error",
                             "backend 'redis': no Redis is configured (set redis_url in kailashd's configuration)");
        return node_fail(err, "upstream_error", "Failed to connect to Redis: %s is unavailable", redis_describe());
    }
    c->call->node_data = c;
    c->call->cancel = cn_redis_cancel;
    if (c->call->deadline_ms > 0)
        ioloop_timer_start(c->io, &c->deadline, c->call->deadline_ms - util_now_ms());
    return 0;
}

/* Posted to call->io when start ran on another thread. */
static void cn_redis_posted(void *ud)
{
    cn_redis_call *c = ud;
    node_error e;
    if (cn_redis_send(c, &e) != 0) {
        cn_redis_finish(c, NULL, &e);
        buf_free(&c->value);
        free(c);
    }
}

static int cn_redis_start(const cn_req *r, node_call *call, node_error *err)
{
    if (r->op == CN_SET && r->has_expected) {
        json_t *in_key = json_object_get(call->inputs, "key");
        json_t *out = cn_cas_failed(r, CN_REDIS, 0, 0, json_is_string(in_key) ? json_string_value(in_key) : r->full);
        if (!out)
            return node_fail(err, "internal", "out of memory");
        call->done(call, out, NULL);
        return 0;
    }
    if (!call->io)
        return node_fail(err, "internal", "backend 'redis': not on an I/O loop");
    cn_redis_call *c = calloc(1, sizeof *c);
    if (!c)
        return node_fail(err, "internal", "out of memory");
    c->call = call;
    c->io = call->io;
    ioloop_timer_init(&c->deadline, cn_redis_deadline, c);
    c->req = *r;
    if (r->op == CN_SET && cn_value_encode(r->value, &c->value, err) != 0)
        goto fail;
    if (ioloop_current() == call->io) {
        if (cn_redis_send(c, err) != 0)
            goto fail;
        return 0;
    }
    if (ioloop_post(call->io, cn_redis_posted, c) == 0)
        return 0;
    node_fail(err, "internal", "backend 'redis': the I/O loop is stopping");
fail:
    buf_free(&c->value);
    free(c);
    return -1;
}

/* ======================================================================== node type */

/* Checks a config value that holds no template (v non-NULL); msg names the key. */
static int cn_check_literal(const char *key, json_t *v, char *msg, size_t msglen)
{
    char part[CN_MAX_KEY + 1];
    long long ttl;
    int op;
    if (strcmp(key, "operation") == 0) {
        if (!json_is_string(v))
            return util_err(msg, msglen, "operation: expected one of " CN_OPS);
        return cn_op_parse(json_string_value(v), &op) == 0 ? 0 : cn_op_refuse(json_string_value(v), msg, msglen);
    }
    if (strcmp(key, "key") == 0 || strcmp(key, "namespace") == 0 || strcmp(key, "tenant_id") == 0)
        return json_is_null(v) ? 0 : cn_part(v, key, part, sizeof part, msg, msglen);
    if (strcmp(key, "ttl") == 0)
        return cn_ttl_read(v, &ttl, msg, msglen);
    if (strcmp(key, "expected_version") == 0 && !json_is_null(v) && !json_is_integer(v))
        return util_err(msg, msglen, "expected_version: expected an integer or null");
    if (strcmp(key, "redis_url") == 0 &&
        !(json_is_string(v) && strcmp(json_string_value(v), CN_REDIS_URL_DEFAULT) == 0))
        return util_err(msg, msglen,
                        "redis_url: a Cache node's own Redis is not supported; the redis backend uses kailashd's "
                        "redis_url setting (only the SDK's default, \"" CN_REDIS_URL_DEFAULT "\", is accepted here)");
    if (strcmp(key, "value") == 0) {
        buf b = {0};
        node_error e;
        int rc = cn_value_encode(v, &b, &e);
        buf_free(&b);
        if (rc != 0)
            return util_err(msg, msglen, "%s", e.message);
    }
    return 0;
}

/* fixed: the backend a named variant holds (-1: CacheNode's choice, memory by default). */
static int cn_compile_as(int fixed, json_t *config, void **compiled, char *err, size_t errlen)
{
    char msg[240];
    *compiled = NULL;
    int backend = fixed < 0 ? CN_MEMORY : fixed;
    json_t *b = json_object_get(config, "backend");
    if (b && !json_is_null(b)) {
        const char *s = json_is_string(b) ? json_string_value(b) : "";
        int want = strcmp(s, "memory") == 0 ? CN_MEMORY : strcmp(s, "redis") == 0 ? CN_REDIS : -1;
        if (json_is_string(b) && tmpl_string_has_expr(s))
            return util_err(err, errlen, "config.backend: must be written out (memory or redis), not a template");
        if (want < 0)
            return util_err(err, errlen, "config.backend: expected memory or redis%s",
                            strcmp(s, "file") == 0 || strcmp(s, "hybrid") == 0
                                ? " (the SDK's file and hybrid backends are not in kailashd)"
                                : "");
        if (fixed >= 0 && want != fixed)
            return util_err(err, errlen, "config.backend: this node type's backend is %s",
                            fixed == CN_REDIS ? "redis" : "memory");
        backend = want;
    }
    const char *k;
    json_t *v;
    json_object_foreach(config, k, v)
    {
        if (strcmp(k, "backend") == 0 || json_is_null(v) || (tmpl_value_has_expr(v) && strcmp(k, "redis_url") != 0))
            continue;
        if (cn_check_literal(k, v, msg, sizeof msg) != 0)
            return util_err(err, errlen, "config.%s", msg);
    }
    cn_conf *c = malloc(sizeof *c);
    if (!c)
        return util_err(err, errlen, "out of memory");
    c->backend = backend;
    *compiled = c;
    return 0;
}

static int cn_compile(const node_env *env, json_t *config, void **compiled, char *err, size_t errlen)
{
    (void)env;
    return cn_compile_as(-1, config, compiled, err, errlen);
}

static int cn_compile_memory(const node_env *env, json_t *config, void **compiled, char *err, size_t errlen)
{
    (void)env;
    return cn_compile_as(CN_MEMORY, config, compiled, err, errlen);
}

static int cn_compile_redis(const node_env *env, json_t *config, void **compiled, char *err, size_t errlen)
{
    (void)env;
    return cn_compile_as(CN_REDIS, config, compiled, err, errlen);
}

static int cn_has_output(const void *compiled, const char *port)
{
    (void)compiled;
    for (const char *const *p = cn_ports; *p; p++)
        if (strcmp(*p, port) == 0)
            return 1;
    return 0;
}

/* Reads the inputs, with backend fixed at load (a value of another backend in the inputs is refused). */
static int cn_prepare(const cn_conf *c, json_t *in, cn_req *r, node_error *err)
{
    memset(r, 0, sizeof *r);
    r->t0 = util_now_ms();
    json_t *b = json_object_get(in, "backend");
    if (b && !json_is_null(b) &&
        !(json_is_string(b) && strcmp(json_string_value(b), c->backend == CN_REDIS ? "redis" : "memory") == 0))
        return node_fail(err, "bad_request", "backend: fixed by the workflow file");
    return cn_req_read(in, r, err);
}

/* InMemoryCacheNode: synchronous. */
static int cn_run(const void *compiled, node_call *call, json_t **outputs, node_error *err)
{
    cn_req r;
    if (cn_prepare(compiled, call->inputs, &r, err) != 0)
        return -1;
    *outputs = cn_memory_do(&r, err);
    return *outputs ? 0 : -1;
}

/* CacheNode and the others whose backend may be Redis: a memory operation completes at once. */
static int cn_start(const void *compiled, node_call *call, node_error *err)
{
    const cn_conf *c = compiled;
    cn_req r;
    if (cn_prepare(c, call->inputs, &r, err) != 0)
        return -1;
    if (c->backend == CN_REDIS)
        return cn_redis_start(&r, call, err);
    json_t *out = cn_memory_do(&r, err);
    if (!out)
        return -1;
    call->done(call, out, NULL);
    return 0;
}

#define CN_TYPE(type_name, compile_fn, run_fn, start_fn)                                                               \
    {                                                                                                                  \
        .name = type_name, .config_keys = cn_keys, .sdk_defaults = cn_sdk_defaults, .input_ports = cn_inputs,          \
        .pinned_keys = cn_pinned, .compile = compile_fn, .has_output = cn_has_output, .run = run_fn,                   \
        .start = start_fn, .free = free,                                                                               \
    }

const node_type node_cache = CN_TYPE("CacheNode", cn_compile, NULL, cn_start);
const node_type node_cache_intelligent = CN_TYPE("IntelligentCacheNode", cn_compile, NULL, cn_start);
const node_type node_cache_memory = CN_TYPE("InMemoryCacheNode", cn_compile_memory, cn_run, NULL);
const node_type node_cache_redis = CN_TYPE("RedisCacheNode", cn_compile_redis, NULL, cn_start);
