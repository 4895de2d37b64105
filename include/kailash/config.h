/* config: the daemon's configuration (API.md "Configuration"), loaded from one JSON file plus the
 * KAILASH_* environment overrides. Every key is optional and checked: an unknown key, a wrong type
 * or a bad value refuses the whole file with a message naming the file, the key and what was
 * expected. Keys of features this build does not have yet are accepted only with their default
 * (off/null) value, so a config never silently asks for something that is not there.
 *
 * A loaded config is immutable; it is shared read-only by every thread. */
#ifndef KAILASH_CONFIG_H
#define KAILASH_CONFIG_H

#include <jansson.h>
#include <stddef.h>

typedef struct kconfig {
    char *file; /* the path it was loaded from ("(defaults)" when none) */
    char *host;
    int port;
    int workers;
    char *workflows_dir;
    char *data_dir;
    size_t max_body_bytes;
    int request_timeout_ms;
    int shutdown_grace_ms;
    char **trusted_proxies; /* CIDR strings, validated */
    size_t n_trusted_proxies;
    int exec_max_concurrency;
    int exec_max_queue;
    char **template_env;
    size_t n_template_env;
    int enable_auth;
    json_t *auth_api_keys;       /* auth.api_keys as written (an array; its entries are checked by auth_ctx_load) */
    char *jwt_hs256_secret_env;  /* auth.jwt.*: NULL when null */
    char *jwt_public_key_file;
    char *jwt_jwks_file;
    char *jwt_jwks_url;
    char *jwt_issuer;
    char **jwt_audience; /* a string or an array of strings in the file */
    size_t n_jwt_audience;
    char *jwt_roles_claim;
    int jwt_leeway_s;
    int jwt_jwks_min_refresh_s;
    int rl_enabled;               /* rate_limiting.enabled (kailashd's own key; default true) */
    int rl_authenticated;         /* rate_limiting.*: requests per minute per principal */
    int rl_anonymous;             /* ... per client IP of anonymous callers */
    int rl_burst;                 /* the bucket's size; 0: one window's worth (the tier's limit) */
    int rl_requests_per_minute;   /* the SDK's shape: both tiers' default when set (0: unset) */
    char *redis_url;              /* NULL: no Redis (local rate limits); holds a password: never log it */
    int redis_timeout_ms;         /* every Redis command's deadline */
    char *database_url;           /* NULL: run records in the embedded journal; holds a password: never log it */
    int store_enabled;            /* store.enabled: run records kept (default true) */
    int store_queue_max;          /* store.queue_max: records pending at most (more are dropped, counted) */
    int store_batch_max;          /* store.batch_max: records per write batch at most */
    size_t store_segment_bytes;   /* store.segment_bytes: a journal segment is rotated past this size */
    int store_retain_segments;    /* store.retain_segments: journal segments kept (0: no count limit) */
    int store_retain_s;           /* store.retain_s: journal segments older than this removed (0: no age limit) */
    int jobs_claim_idle_ms;       /* jobs.claim_idle_ms: a Redis job idle this long is claimed by another instance */
    int jobs_max_deliveries;      /* jobs.max_deliveries: a job that failed to start this often goes to the dead letters */
    int jobs_consumers;           /* jobs.consumers: Redis Stream consumer threads */
    int jobs_callback_max_attempts; /* jobs.callback_max_attempts: tries of one callback_url POST */
    int jobs_callback_timeout_ms; /* jobs.callback_timeout_ms: one try's deadline */
    char **jobs_callback_allow_hosts; /* jobs.callback_allow_hosts: empty: any host (never loopback/link-local) */
    size_t n_jobs_callback_allow_hosts;
    char *jobs_callback_secret_env; /* jobs.callback_secret_env: env var with the HMAC key; NULL: unsigned */
    size_t cache_l1_max_bytes;
    int cache_default_ttl_s;
    size_t upstream_max_response_bytes;
    int upstream_connect_timeout_ms;
    int upstream_verify_tls;
    int upstream_max_hops; /* a request whose X-Kailash-Hops is above this is refused (508) */
    int enable_monitoring; /* /metrics answers and requests, runs, nodes... are counted (default true) */
    int metrics_auth;      /* /metrics needs the admin or the metrics role (default false) */
    int log_level; /* LOG_DEBUG.. from log.h */
    char *tls_cert_file;   /* tls.*: HTTPS with this PEM chain and key (both or neither; NULL: plain HTTP) */
    char *tls_key_file;
    int front_end_park; /* front_end.park, or KAILASH_MHD_PARK: src/http/mhd_park.c is on (when it can be) */
    int python_workers;       /* python.workers: PythonCodeNode's worker processes (0: one per I/O loop) */
    char *python_executable;  /* python.executable (default "python3", found on PATH) */
    char *python_runner;      /* python.runner: the runner script; NULL: found next to the binary */
    int python_memory_mb;     /* python.memory_mb: a worker's RLIMIT_AS */
} kconfig;

/* Loads path (NULL: the defaults alone), then applies KAILASH_HOST, KAILASH_PORT, KAILASH_WORKERS,
 * KAILASH_LOG_LEVEL, KAILASH_REDIS_URL, KAILASH_DATABASE_URL, KAILASH_MHD_PARK (0 or 1). Returns 0 with *out (caller frees with
 * config_free), or -1 with err like "conf/k.json: key 'port': expected an integer 1..65535". */
int config_load(const char *path, kconfig **out, char *err, size_t errlen);

void config_free(kconfig *cfg);

/* The loader's own table of keys, for the README's reference (a test holds one to the other): the
 * i-th key that holds a value (objects left out, dotted: "auth.jwt.issuer"), or NULL past the end;
 * *built is 0 for a key of a feature not built yet (accepted only with its default). */
const char *config_key_at(size_t i, int *built);

#endif
