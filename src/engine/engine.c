/* engine: the process-wide pieces every run shares: the worker pool, the I/O loop, the node_env
 * handed to node compiles, the template environment (the values of template_env variables, read
 * once at start) and the sinks every run's end is reported to. */
#include <curl/curl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine_internal.h"
#include "kailash/sql_pool.h"
#include "kailash/python.h"
#include "kailash/util.h"

static pool *g_pool;
/* One I/O loop per worker (at most ENGINE_MAX_IO): a single loop thread saturates one core with
 * libcurl's per-transfer work long before the sockets do. The HTTP front end runs one daemon on each
 * loop, so a run started by a request uses the loop it arrived on; other threads (the pool) each
 * stick to one loop, picked round-robin on their first call, which measured about a quarter faster
 * than spreading every call (bench (b)). */
#define ENGINE_MAX_IO 64
static ioloop *g_io[ENGINE_MAX_IO];
static int g_nio;
static atomic_uint g_io_next;
static json_t *g_env;
static node_env g_nenv;
static char g_data_dir[PATH_MAX];
/* Sinks are added at start and only read after: a fixed table and a count published last, so the
 * hot path (every run's end) reads them without a lock. */
#define ENGINE_MAX_SINKS 16
static const engine_sink *g_sinks[ENGINE_MAX_SINKS];
static atomic_int g_nsinks;

pool *engine_pool(void)
{
    return g_pool;
}
ioloop *engine_io(void)
{
    static _Thread_local int mine = -1;
    ioloop *cur = ioloop_current();
    if (cur)
        return cur;
    if (g_nio == 0)
        return NULL;
    if (mine < 0)
        mine = (int)(atomic_fetch_add(&g_io_next, 1) % (unsigned)g_nio);
    return g_io[mine];
}
int engine_cancel_all(void)
{
    registry *reg = registry_acquire();
    int n = 0;
    for (size_t i = 0; reg && i < registry_count(reg); i++)
        n += exec_cancel_all(registry_at(reg, i));
    registry_release(reg);
    return n;
}

int engine_submit(void (*fn)(void *arg), void *arg)
{
    return g_pool ? pool_submit(g_pool, fn, arg) : -1;
}
ioloop *const *engine_loops(int *n)
{
    *n = g_nio;
    return g_io;
}
json_t *engine_template_env(void)
{
    return g_env;
}
const node_env *engine_node_env(void)
{
    return &g_nenv;
}

static json_t *env_values(const kconfig *cfg)
{
    json_t *o = json_object();
    for (size_t i = 0; i < cfg->n_template_env; i++) {
        const char *v = getenv(cfg->template_env[i]);
        json_object_set_new(o, cfg->template_env[i], v ? json_string(v) : json_null());
    }
    return o;
}

int engine_prepare(const kconfig *cfg, char *err, size_t errlen)
{
    mkdir(cfg->data_dir, 0750);
    if (!realpath(cfg->data_dir, g_data_dir))
        return util_err(err, errlen, "data_dir '%s' cannot be used", cfg->data_dir);
    g_nenv = (node_env){g_data_dir, cfg->upstream_max_response_bytes, cfg->upstream_connect_timeout_ms,
                        cfg->upstream_verify_tls};
    if (!g_env)
        g_env = env_values(cfg);
    sql_pool_set_database_url(cfg->database_url); /* SQL nodes without a connection_string use it */
    return 0;
}

/* Kept-alive upstream connections per loop and client (plain and libcurl). */
#define ENGINE_MAX_CONNECTS 1024

int engine_start(const kconfig *cfg, char *err, size_t errlen)
{
    if (engine_prepare(cfg, err, errlen) != 0)
        return -1;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return util_err(err, errlen, "libcurl could not start");
    g_pool = pool_create(cfg->workers, err, errlen);
    if (!g_pool)
        return -1;
    g_nio = cfg->workers < ENGINE_MAX_IO ? cfg->workers : ENGINE_MAX_IO;
    for (int i = 0; i < g_nio; i++)
        if (!(g_io[i] = ioloop_create(err, errlen)) || node_registry_loop_start(g_io[i], ENGINE_MAX_CONNECTS, err, errlen) != 0)
            return -1;
    python_pool_configure(cfg, g_io, g_nio); /* PythonCodeNode's workers: started when one loads */
    return 0;
}

void engine_stop(void)
{
    /* The loop first: aborting its transfers hands their runs to the pool, which then finishes them. */
    for (int i = 0; i < g_nio; i++) {
        ioloop_destroy(g_io[i]);
        g_io[i] = NULL;
    }
    g_nio = 0;
    pool_destroy(g_pool);
    g_pool = NULL;
    node_registry_shutdown();
    json_decref(g_env);
    g_env = NULL;
    curl_global_cleanup();
}

int engine_sink_add(const engine_sink *s)
{
    int n = atomic_load(&g_nsinks);
    if (n >= ENGINE_MAX_SINKS)
        return -1;
    g_sinks[n] = s;
    atomic_store_explicit(&g_nsinks, n + 1, memory_order_release);
    return 0;
}

void engine_sinks_run_end(const run *r)
{
    int n = atomic_load_explicit(&g_nsinks, memory_order_acquire);
    if (n == 0)
        return;
    run_status st = run_get_status(r);
    int failed = st == RUN_FAILED || st == RUN_TIMEOUT;
    run_summary s = {run_id(r), run_workflow(r)->name, run_request_id(r), st, failed ? run_error_code(r) : "",
                     run_duration_ms(r), r};
    for (int i = 0; i < n; i++)
        if (g_sinks[i]->on_run_end)
            g_sinks[i]->on_run_end(&s);
}

void engine_sinks_run_start(const run *r)
{
    int n = atomic_load_explicit(&g_nsinks, memory_order_acquire);
    for (int i = 0; i < n; i++)
        if (g_sinks[i]->on_run_start)
            g_sinks[i]->on_run_start(r);
}

void engine_sinks_flush(void)
{
    int n = atomic_load_explicit(&g_nsinks, memory_order_acquire);
    for (int i = 0; i < n; i++)
        if (g_sinks[i]->flush)
            g_sinks[i]->flush();
}
