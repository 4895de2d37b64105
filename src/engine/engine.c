/* engine: the process-wide pieces every run shares: the worker pool, the I/O loop, the node_env
 * handed to node compiles and the template environment (the values of template_env variables, read
 * once at start). */
#include <curl/curl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine_internal.h"
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
    return 0;
}

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
        if (!(g_io[i] = ioloop_create(1024, err, errlen)))
            return -1;
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
