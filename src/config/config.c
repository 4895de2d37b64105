/* config: API.md's configuration keys, described once in a table and checked from it.
 *
 * Each row names a dotted key, its kind, where it lands in kconfig and its bounds. Objects are
 * walked against the table so an unknown key anywhere is found. Keys of features this build does not
 * have yet (jobs, TLS) are rows of kind
 * UNBUILT: they are accepted only with their documented default, and any other value stops
 * start-up saying so, instead of being silently ignored. */
#include "kailash/config.h"

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kailash/log.h"
#include "kailash/util.h"

enum kind { K_OBJ, K_STR, K_STR_NULL, K_INT, K_INT_NULL, K_SIZE, K_BOOL, K_STRLIST, K_CIDRS, K_AUD, K_ARRAY, K_LEVEL, K_HOSTS, K_UNBUILT };

typedef struct key_row {
    const char *key;
    enum kind kind;
    size_t off; /* offsetof(kconfig, ...) for stored kinds */
    long long min, max;
    const char *dflt; /* K_UNBUILT: the only accepted value, as JSON; K_STR: default */
    const char *why;  /* K_UNBUILT: what is missing */
} key_row;

/* A config file is a few hundred bytes; anything this large is a mistake (or /dev/zero's kin). */
#define CONFIG_MAX_FILE ((size_t)4 << 20)

#define OFF(f) offsetof(kconfig, f)
#define NOTYET(k, d, w)                                                                                                \
    {                                                                                                                  \
        k, K_UNBUILT, 0, 0, 0, d, w                                                                                    \
    }

static const key_row rows[] = {
    {"host", K_STR, OFF(host), 0, 0, "0.0.0.0", NULL},
    {"port", K_INT, OFF(port), 1, 65535, NULL, NULL},
    {"workers", K_INT, OFF(workers), 1, 256, NULL, NULL},
    {"workflows_dir", K_STR, OFF(workflows_dir), 0, 0, "workflows", NULL},
    {"data_dir", K_STR, OFF(data_dir), 0, 0, "var", NULL},
    {"max_body_bytes", K_SIZE, OFF(max_body_bytes), 1, 1LL << 30, NULL, NULL},
    {"request_timeout_ms", K_INT, OFF(request_timeout_ms), 1, 3600000, NULL, NULL},
    {"shutdown_grace_ms", K_INT, OFF(shutdown_grace_ms), 0, 3600000, NULL, NULL},
    {"trusted_proxies", K_CIDRS, 0, 0, 0, NULL, NULL},
    {"executor_defaults", K_OBJ, 0, 0, 0, NULL, NULL},
    {"executor_defaults.max_concurrency", K_INT, OFF(exec_max_concurrency), 1, 100000, NULL, NULL},
    {"executor_defaults.max_queue", K_INT, OFF(exec_max_queue), 0, 1000000, NULL, NULL},
    {"template_env", K_STRLIST, 0, 0, 0, NULL, NULL},
    {"enable_auth", K_BOOL, OFF(enable_auth), 0, 0, NULL, NULL},
    {"auth", K_OBJ, 0, 0, 0, NULL, NULL},
    {"auth.api_keys", K_ARRAY, OFF(auth_api_keys), 0, 0, NULL, NULL},
    {"auth.jwt", K_OBJ, 0, 0, 0, NULL, NULL},
    {"auth.jwt.hs256_secret_env", K_STR_NULL, OFF(jwt_hs256_secret_env), 0, 0, NULL, NULL},
    {"auth.jwt.public_key_file", K_STR_NULL, OFF(jwt_public_key_file), 0, 0, NULL, NULL},
    {"auth.jwt.jwks_file", K_STR_NULL, OFF(jwt_jwks_file), 0, 0, NULL, NULL},
    {"auth.jwt.jwks_url", K_STR_NULL, OFF(jwt_jwks_url), 0, 0, NULL, NULL},
    {"auth.jwt.jwks_min_refresh_s", K_INT, OFF(jwt_jwks_min_refresh_s), 1, 86400, NULL, NULL},
    {"auth.jwt.issuer", K_STR_NULL, OFF(jwt_issuer), 0, 0, NULL, NULL},
    {"auth.jwt.audience", K_AUD, 0, 0, 0, NULL, NULL},
    {"auth.jwt.roles_claim", K_STR, OFF(jwt_roles_claim), 0, 0, NULL, NULL},
    {"auth.jwt.leeway_s", K_INT, OFF(jwt_leeway_s), 0, 3600, NULL, NULL},
    {"rate_limiting", K_OBJ, 0, 0, 0, NULL, NULL},
    {"rate_limiting.enabled", K_BOOL, OFF(rl_enabled), 0, 0, NULL, NULL},
    {"rate_limiting.authenticated", K_INT, OFF(rl_authenticated), 1, 1000000000, NULL, NULL},
    {"rate_limiting.anonymous", K_INT, OFF(rl_anonymous), 1, 1000000000, NULL, NULL},
    {"rate_limiting.requests_per_minute", K_INT, OFF(rl_requests_per_minute), 1, 1000000000, NULL, NULL},
    {"rate_limiting.burst", K_INT_NULL, OFF(rl_burst), 1, 1000000000, NULL, NULL},
    {"cache", K_OBJ, 0, 0, 0, NULL, NULL},
    {"cache.l1_max_bytes", K_SIZE, OFF(cache_l1_max_bytes), 1048576, 1LL << 40, NULL, NULL},
    {"cache.default_ttl_s", K_INT, OFF(cache_default_ttl_s), 1, 31536000, NULL, NULL},
    {"upstream", K_OBJ, 0, 0, 0, NULL, NULL},
    {"upstream.max_response_bytes", K_SIZE, OFF(upstream_max_response_bytes), 1, 1LL << 32, NULL, NULL},
    {"upstream.connect_timeout_ms", K_INT, OFF(upstream_connect_timeout_ms), 1, 600000, NULL, NULL},
    {"upstream.verify_tls", K_BOOL, OFF(upstream_verify_tls), 0, 0, NULL, NULL},
    {"upstream.max_hops", K_INT, OFF(upstream_max_hops), 0, 255, NULL, NULL},
    {"redis_url", K_STR_NULL, OFF(redis_url), 0, 0, NULL, NULL},
    {"redis_timeout_ms", K_INT, OFF(redis_timeout_ms), 1, 60000, NULL, NULL},
    {"database_url", K_STR_NULL, OFF(database_url), 0, 0, NULL, NULL},
    {"store", K_OBJ, 0, 0, 0, NULL, NULL},
    {"store.enabled", K_BOOL, OFF(store_enabled), 0, 0, NULL, NULL},
    {"store.queue_max", K_INT, OFF(store_queue_max), 1, 10000000, NULL, NULL},
    {"store.batch_max", K_INT, OFF(store_batch_max), 1, 100000, NULL, NULL},
    {"store.segment_bytes", K_SIZE, OFF(store_segment_bytes), 4096, 1LL << 40, NULL, NULL},
    {"store.retain_segments", K_INT, OFF(store_retain_segments), 0, 1000000, NULL, NULL},
    {"store.retain_s", K_INT, OFF(store_retain_s), 0, 1000000000, NULL, NULL},
    {"jobs", K_OBJ, 0, 0, 0, NULL, NULL},
    {"jobs.claim_idle_ms", K_INT, OFF(jobs_claim_idle_ms), 100, 86400000, NULL, NULL},
    {"jobs.max_deliveries", K_INT, OFF(jobs_max_deliveries), 1, 1000, NULL, NULL},
    {"jobs.consumers", K_INT, OFF(jobs_consumers), 1, 64, NULL, NULL},
    {"jobs.callback_max_attempts", K_INT, OFF(jobs_callback_max_attempts), 1, 100, NULL, NULL},
    {"jobs.callback_timeout_ms", K_INT, OFF(jobs_callback_timeout_ms), 1, 600000, NULL, NULL},
    {"jobs.callback_allow_hosts", K_HOSTS, 0, 0, 0, NULL, NULL},
    {"jobs.callback_secret_env", K_STR_NULL, OFF(jobs_callback_secret_env), 0, 0, NULL, NULL},
    {"enable_monitoring", K_BOOL, OFF(enable_monitoring), 0, 0, NULL, NULL},
    {"metrics_auth", K_BOOL, OFF(metrics_auth), 0, 0, NULL, NULL},
    {"front_end", K_OBJ, 0, 0, 0, NULL, NULL},
    {"front_end.park", K_BOOL, OFF(front_end_park), 0, 0, NULL, NULL},
    {"log", K_OBJ, 0, 0, 0, NULL, NULL},
    {"log.level", K_LEVEL, OFF(log_level), 0, 0, NULL, NULL},
    NOTYET("log.format", "\"json\"", "only the json log format is built"),
    {"tls", K_OBJ, 0, 0, 0, NULL, NULL},
    {"tls.cert_file", K_STR_NULL, OFF(tls_cert_file), 0, 0, NULL, NULL},
    {"tls.key_file", K_STR_NULL, OFF(tls_key_file), 0, 0, NULL, NULL},
    {"python", K_OBJ, 0, 0, 0, NULL, NULL},
    {"python.workers", K_INT_NULL, OFF(python_workers), 1, 256, NULL, NULL},
    {"python.executable", K_STR, OFF(python_executable), 0, 0, "python3", NULL},
    {"python.runner", K_STR_NULL, OFF(python_runner), 0, 0, NULL, NULL},
    {"python.memory_mb", K_INT, OFF(python_memory_mb), 64, 65536, NULL, NULL},
};

static const key_row *row_find(const char *key)
{
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        if (strcmp(rows[i].key, key) == 0)
            return &rows[i];
    return NULL;
}

static int set_str(char **dst, const char *s)
{
    char *c = strdup(s);
    if (!c)
        return -1;
    free(*dst);
    *dst = c;
    return 0;
}

static void free_list(char **l, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(l[i]);
    free(l);
}

/* Where a list kind lands: trusted_proxies, template_env, auth.jwt.audience or jobs.callback_allow_hosts. */
static void list_slot(kconfig *c, enum kind k, char ****l, size_t **n)
{
    *l = k == K_CIDRS ? &c->trusted_proxies : k == K_AUD ? &c->jwt_audience : k == K_HOSTS ? &c->jobs_callback_allow_hosts : &c->template_env;
    *n = k == K_CIDRS ? &c->n_trusted_proxies : k == K_AUD ? &c->n_jwt_audience : k == K_HOSTS ? &c->n_jobs_callback_allow_hosts : &c->n_template_env;
}

/* A host name or IP literal as callback_allow_hosts lists it: [A-Za-z0-9.:-], at most 253. */
static int host_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 253)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
              s[i] == '.' || s[i] == '-' || s[i] == ':'))
            return 0;
    return 1;
}

static int load_list(kconfig *c, const key_row *r, json_t *v, char *err, size_t errlen)
{
    const char *file = c->file;
    json_t *one = NULL;
    if (r->kind == K_AUD && (json_is_null(v) || json_is_string(v))) /* one audience, or none */
        v = one = json_is_null(v) ? json_array() : json_pack("[O]", v);
    if (!json_is_array(v))
        return util_err(err, errlen, "%s: key '%s': expected %s", file, r->key,
                        r->kind == K_AUD ? "a string, an array of strings or null" : "an array of strings");
    size_t n = json_array_size(v);
    char **l = calloc(n + 1, sizeof *l);
    if (!l) {
        json_decref(one);
        return util_err(err, errlen, "%s: out of memory", file);
    }
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(v, i);
        if (!json_is_string(e) || (r->kind == K_CIDRS && !util_net_cidr_valid(json_string_value(e))) ||
            (r->kind == K_HOSTS && !host_valid(json_string_value(e)))) {
            free_list(l, i);
            json_decref(one);
            return util_err(err, errlen, "%s: key '%s[%zu]': expected %s", file, r->key, i,
                            r->kind == K_CIDRS   ? "a CIDR such as \"10.0.0.0/8\""
                            : r->kind == K_HOSTS ? "a host name or IP address such as \"hooks.example.com\""
                                                 : "a string");
        }
        l[i] = strdup(json_string_value(e));
    }
    json_decref(one);
    char ***slot;
    size_t *count;
    list_slot(c, r->kind, &slot, &count);
    free_list(*slot, *count);
    *slot = l;
    *count = n;
    return 0;
}

static int load_scalar(kconfig *c, const key_row *r, json_t *v, char *err, size_t errlen)
{
    char *base = (char *)c;
    const char *file = c->file;
    switch (r->kind) {
    case K_STR:
        if (!json_is_string(v) || json_string_length(v) == 0)
            return util_err(err, errlen, "%s: key '%s': expected a non-empty string", file, r->key);
        return set_str((char **)(base + r->off), json_string_value(v));
    case K_STR_NULL:
        if (json_is_null(v)) {
            free(*(char **)(base + r->off));
            *(char **)(base + r->off) = NULL;
            return 0;
        }
        if (!json_is_string(v) || json_string_length(v) == 0)
            return util_err(err, errlen, "%s: key '%s': expected a non-empty string or null", file, r->key);
        return set_str((char **)(base + r->off), json_string_value(v));
    case K_ARRAY:
        if (!json_is_array(v))
            return util_err(err, errlen, "%s: key '%s': expected an array", file, r->key);
        json_decref(*(json_t **)(base + r->off));
        *(json_t **)(base + r->off) = json_incref(v);
        return 0;
    case K_BOOL:
        if (!json_is_boolean(v))
            return util_err(err, errlen, "%s: key '%s': expected true or false", file, r->key);
        *(int *)(base + r->off) = json_is_true(v);
        return 0;
    case K_INT_NULL:
        if (json_is_null(v)) {
            *(int *)(base + r->off) = 0;
            return 0;
        }
        /* fall through */
    case K_INT:
    case K_SIZE: {
        json_int_t i = json_is_integer(v) ? json_integer_value(v) : 0;
        if (!json_is_integer(v) || i < r->min || i > r->max)
            return util_err(err, errlen, "%s: key '%s': expected an integer %lld..%lld%s", file, r->key, r->min, r->max,
                            r->kind == K_INT_NULL ? " or null" : "");
        if (r->kind != K_SIZE)
            *(int *)(base + r->off) = (int)i;
        else
            *(size_t *)(base + r->off) = (size_t)i;
        return 0;
    }
    case K_LEVEL: {
        int lv = json_is_string(v) ? log_level_parse(json_string_value(v)) : -1;
        if (lv < 0)
            return util_err(err, errlen, "%s: key '%s': expected one of debug, info, warn, error", file, r->key);
        *(int *)(base + r->off) = lv;
        return 0;
    }
    default:
        return load_list(c, r, v, err, errlen);
    }
}

static int load_unbuilt(const kconfig *c, const key_row *r, json_t *v, char *err, size_t errlen)
{
    json_t *d = json_loads(r->dflt, JSON_DECODE_ANY, NULL);
    int same = d && json_equal(d, v);
    json_decref(d);
    if (same)
        return 0;
    return util_err(err, errlen, "%s: key '%s': %s; only the default %s is accepted", c->file, r->key, r->why, r->dflt);
}

static int load_object(kconfig *c, json_t *obj, const char *prefix, char *err, size_t errlen)
{
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v)
    {
        char key[128];
        snprintf(key, sizeof key, "%s%s%s", prefix, *prefix ? "." : "", k);
        const key_row *r = row_find(key);
        if (!r)
            return util_err(err, errlen, "%s: unknown key '%s'", c->file, key);
        int rc;
        if (r->kind == K_OBJ)
            rc = json_is_object(v) ? load_object(c, v, key, err, errlen)
                                   : util_err(err, errlen, "%s: key '%s': expected an object", c->file, key);
        else if (r->kind == K_UNBUILT)
            rc = load_unbuilt(c, r, v, err, errlen);
        else
            rc = load_scalar(c, r, v, err, errlen);
        if (rc != 0)
            return -1;
    }
    return 0;
}

static kconfig *config_defaults(const char *file)
{
    kconfig *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->file = strdup(file);
    c->host = strdup("0.0.0.0");
    c->workflows_dir = strdup("workflows");
    c->data_dir = strdup("var");
    c->port = 8000;
    c->workers = 4;
    c->max_body_bytes = 1048576;
    c->request_timeout_ms = 30000;
    c->shutdown_grace_ms = 10000;
    c->exec_max_concurrency = 64;
    c->exec_max_queue = 1024;
    c->cache_l1_max_bytes = 67108864;
    c->cache_default_ttl_s = 60;
    c->upstream_max_response_bytes = 10485760;
    c->upstream_connect_timeout_ms = 2000;
    c->upstream_verify_tls = 1;
    c->upstream_max_hops = 8;
    c->enable_monitoring = 1;
    c->rl_enabled = 1;
    c->rl_authenticated = -1; /* unset: rate_limiting.requests_per_minute, else 1000 (rl_tiers) */
    c->rl_anonymous = -1;     /* unset: requests_per_minute, else 100 */
    c->redis_timeout_ms = 20;
    c->store_enabled = 1;
    c->store_queue_max = 65536;
    c->store_batch_max = 1024;
    c->store_segment_bytes = (size_t)64 << 20;
    c->store_retain_segments = 16;
    c->store_retain_s = 0;
    c->jobs_claim_idle_ms = 30000;
    c->jobs_max_deliveries = 5;
    c->jobs_consumers = 2;
    c->jobs_callback_max_attempts = 8;
    c->jobs_callback_timeout_ms = 10000;
    c->auth_api_keys = json_array();
    c->jwt_roles_claim = strdup("roles");
    c->jwt_leeway_s = 60;
    c->jwt_jwks_min_refresh_s = 60;
    c->log_level = LOG_INFO;
    c->front_end_park = 1;
    c->python_executable = strdup("python3");
    c->python_memory_mb = 512;
    if (!c->python_executable || !c->file || !c->host || !c->workflows_dir || !c->data_dir || !c->auth_api_keys || !c->jwt_roles_claim) {
        config_free(c);
        return NULL;
    }
    return c;
}

/* KAILASH_* variables: same checks as the file, reported as the variable. */
static int apply_env_one(kconfig *c, const char *var, const char *key, char *err, size_t errlen)
{
    const char *s = getenv(var);
    if (!s || !*s)
        return 0;
    const key_row *r = row_find(key);
    json_t *v;
    if (r->kind == K_INT) {
        char *end;
        long long n = strtoll(s, &end, 10);
        v = *end ? json_string(s) : json_integer(n);
    } else {
        v = json_string(s);
    }
    char *saved = c->file;
    char label[64];
    snprintf(label, sizeof label, "environment %s", var);
    c->file = label;
    int rc = r->kind == K_UNBUILT ? load_unbuilt(c, r, v, err, errlen) : load_scalar(c, r, v, err, errlen);
    c->file = saved;
    json_decref(v);
    return rc;
}

static int apply_env(kconfig *c, char *err, size_t errlen)
{
    static const char *const map[][2] = {
        {"KAILASH_HOST", "host"},           {"KAILASH_PORT", "port"},
        {"KAILASH_WORKERS", "workers"},     {"KAILASH_LOG_LEVEL", "log.level"},
        {"KAILASH_REDIS_URL", "redis_url"}, {"KAILASH_DATABASE_URL", "database_url"},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (apply_env_one(c, map[i][0], map[i][1], err, errlen) != 0)
            return -1;
    /* Read by the HTTP nodes themselves (src/upstream/wire.c); checked here so a typo stops start-up
     * instead of being ignored. */
    const char *client = getenv("KAILASH_UPSTREAM_CLIENT");
    if (client && *client && strcmp(client, "auto") != 0 && strcmp(client, "libcurl") != 0)
        return util_err(err, errlen, "environment KAILASH_UPSTREAM_CLIENT: expected \"auto\" or \"libcurl\"");
    /* front_end.park as an operator's switch, without editing the file (a bool key: "0" or "1") */
    const char *park = getenv("KAILASH_MHD_PARK");
    if (park && *park) {
        if (strcmp(park, "0") != 0 && strcmp(park, "1") != 0)
            return util_err(err, errlen, "environment KAILASH_MHD_PARK: expected 0 or 1");
        c->front_end_park = park[0] == '1';
    }
    return 0;
}

/* The SDK's own shape, {"requests_per_minute": N}, sets both tiers unless they are given. */
static void rl_tiers(kconfig *c)
{
    int rpm = c->rl_requests_per_minute;
    if (c->rl_authenticated < 0)
        c->rl_authenticated = rpm > 0 ? rpm : 1000;
    if (c->rl_anonymous < 0)
        c->rl_anonymous = rpm > 0 ? rpm : 100;
}

int config_load(const char *path, kconfig **out, char *err, size_t errlen)
{
    kconfig *c = config_defaults(path ? path : "(defaults)");
    if (!c)
        return util_err(err, errlen, "out of memory");
    if (path) {
        /* util_read_file, not json_load_file: it refuses a FIFO or device instead of blocking on it */
        size_t len;
        char *text = util_read_file(path, CONFIG_MAX_FILE, &len, err, errlen);
        if (!text)
            goto fail;
        json_error_t je;
        json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
        free(text);
        if (!root) {
            util_err(err, errlen, "%s: line %d: %s", path, je.line, je.text);
            goto fail;
        }
        int rc = json_is_object(root) ? load_object(c, root, "", err, errlen)
                                      : util_err(err, errlen, "%s: expected a JSON object", path);
        json_decref(root);
        if (rc != 0)
            goto fail;
    }
    if (apply_env(c, err, errlen) != 0)
        goto fail;
    if (!c->tls_cert_file != !c->tls_key_file) {
        util_err(err, errlen, "%s: key '%s': tls.cert_file and tls.key_file go together", c->file,
                 c->tls_cert_file ? "tls.key_file" : "tls.cert_file");
        goto fail;
    }
    rl_tiers(c);
    *out = c;
    return 0;
fail:
    config_free(c);
    return -1;
}

void config_free(kconfig *c)
{
    if (!c)
        return;
    free(c->file);
    free(c->host);
    free(c->workflows_dir);
    free(c->data_dir);
    free_list(c->trusted_proxies, c->n_trusted_proxies);
    free_list(c->template_env, c->n_template_env);
    free_list(c->jobs_callback_allow_hosts, c->n_jobs_callback_allow_hosts);
    free(c->jobs_callback_secret_env);
    json_decref(c->auth_api_keys);
    free(c->jwt_hs256_secret_env);
    free(c->jwt_public_key_file);
    free(c->jwt_jwks_file);
    free(c->jwt_jwks_url);
    free(c->jwt_issuer);
    free_list(c->jwt_audience, c->n_jwt_audience);
    free(c->jwt_roles_claim);
    free(c->redis_url);
    free(c->database_url);
    free(c->tls_cert_file);
    free(c->tls_key_file);
    free(c->python_executable);
    free(c->python_runner);
    free(c);
}

const char *config_key_at(size_t i, int *built)
{
    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
        if (rows[r].kind == K_OBJ)
            continue;
        if (i-- == 0) {
            *built = rows[r].kind != K_UNBUILT;
            return rows[r].key;
        }
    }
    return NULL;
}
