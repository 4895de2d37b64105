/* pool: the python.* settings, one pool of workers per I/O loop, and the health /ready reports
 * (python.h).
 *
 * A loop's pool is made on the loop the first time it is needed (python_pool_warm at load, or the
 * first call) and goes when the loop stops (an at-stop hook kills its workers and fails what is
 * queued). The python.workers processes are spread over the loops (loop i gets workers / loops, the
 * first workers % loops one more; at least one each, so a loop never hands a call to another
 * thread). Calls wait in the pool's FIFO and go to whichever worker is idle first, so a slow call
 * holds up only its own worker.
 *
 * python.executable is found on PATH at start; a script there (a pyenv shim) is asked once which
 * interpreter it runs, and that one is exec'd. The runner is python.runner, or found from the binary:
 * ../python/kailash_runner.py (the source tree: build/kailashd) or ../share/kailashd/kailash_runner.py (an installed
 * bin/kailashd). */
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kailash/log.h"
#include "kailash/util.h"
#include "python_internal.h"

#define PY_MAX_LOOPS 64
#define PY_DEFAULT_MEMORY_MB 512

struct py_pool {
    ioloop *io;
    py_worker **w;
    int n;
    py_call *head, *tail;
    uint64_t next_id;
    io_hook stop_hook;
};

static py_settings g_set;
static ioloop *g_loops[PY_MAX_LOOPS];
static int g_nloops;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_key = -1;
static atomic_int g_started;
static atomic_int g_warmed;
static atomic_int g_looping; /* workers in a crash loop, over all loops */
static atomic_ullong g_code_ids;
static pthread_mutex_t g_why_mu = PTHREAD_MUTEX_INITIALIZER;
static char g_why[200];

/* ---- settings ---- */

static void find_exe(const char *name, char *out, size_t outlen)
{
    const char *path = getenv("PATH");
    snprintf(out, outlen, "%s", name);
    if (strchr(name, '/'))
        return;
    if (!path || !*path)
        path = "/usr/local/bin:/usr/bin:/bin";
    char dirs[4096];
    snprintf(dirs, sizeof dirs, "%s", path);
    char *save = NULL;
    for (char *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        char cand[PATH_MAX];
        if ((size_t)snprintf(cand, sizeof cand, "%s/%s", d, name) < sizeof cand && access(cand, X_OK) == 0) {
            snprintf(out, outlen, "%s", cand);
            return;
        }
    }
}

/* A script on PATH (a pyenv shim, a wrapper) cannot run in the sandbox (it forks, it reads the
 * environment): ask it once, at start, which interpreter it runs, and exec that one. */
static void resolve_script(char *exe, size_t exelen)
{
    char head[2] = {0, 0}, out[PATH_MAX];
    int fd = open(exe, O_RDONLY | O_CLOEXEC), p[2];
    if (fd < 0)
        return;
    ssize_t n = read(fd, head, 2);
    close(fd);
    if (n != 2 || head[0] != '#' || head[1] != '!' || pipe2(p, O_CLOEXEC) != 0)
        return;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    char *argv[] = {exe, "-c", "import sys; sys.stdout.write(sys.executable)", NULL};
    extern char **environ;
    pid_t pid;
    int ok = posix_spawn(&pid, exe, &fa, NULL, argv, environ) == 0;
    posix_spawn_file_actions_destroy(&fa);
    close(p[1]);
    size_t len = 0;
    while (ok && len < sizeof out - 1 && (n = read(p[0], out + len, sizeof out - 1 - len)) > 0)
        len += (size_t)n;
    close(p[0]);
    if (ok)
        waitpid(pid, NULL, 0);
    out[len] = '\0';
    if (ok && out[0] == '/' && access(out, X_OK) == 0 && len < exelen)
        memcpy(exe, out, len + 1);
}

static void find_runner(char *out, size_t outlen)
{
    static const char *const rel[] = {"/../python/kailash_runner.py", "/../share/kailashd/kailash_runner.py"};
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    snprintf(out, outlen, "%s", "python/kailash_runner.py");
    if (n <= 0)
        return;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash)
        *slash = '\0';
    for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
        char cand[PATH_MAX + 64], real[PATH_MAX];
        snprintf(cand, sizeof cand, "%s%s", exe, rel[i]);
        if (realpath(cand, real)) {
            snprintf(out, outlen, "%s", real);
            return;
        }
    }
}

/* dir's parent, n levels up ("/a/b/c", 1 -> "/a/b"); "/" at the top. */
static void parent_dir(const char *path, int levels, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s", path);
    for (int i = 0; i < levels; i++) {
        char *slash = strrchr(out, '/');
        if (!slash || slash == out) {
            snprintf(out, outlen, "/");
            return;
        }
        *slash = '\0';
    }
}

/* What the workers' Landlock rules let them read: the interpreter's prefix, the runner's directory. */
static void settings_paths(void)
{
    char real[PATH_MAX];
    parent_dir(realpath(g_set.exe, real) ? real : g_set.exe, 2, g_set.prefix, sizeof g_set.prefix);
    parent_dir(realpath(g_set.runner, real) ? real : g_set.runner, 1, g_set.runner_dir, sizeof g_set.runner_dir);
    static atomic_int told;
    if (!atomic_exchange(&told, 1) && py_landlock_abi() < 1)
        log_msg(LOG_WARN, "python: this kernel has no Landlock: workers are confined by seccomp and limits only");
}

static void settings_defaults(void)
{
    if (g_set.exe[0])
        return;
    find_exe("python3", g_set.exe, sizeof g_set.exe);
    resolve_script(g_set.exe, sizeof g_set.exe);
    find_runner(g_set.runner, sizeof g_set.runner);
    snprintf(g_set.tmp_base, sizeof g_set.tmp_base, "/tmp");
    g_set.mem_bytes = (uint64_t)PY_DEFAULT_MEMORY_MB << 20;
    settings_paths();
}

static void pool_once(void)
{
    g_key = ioloop_key_new();
    settings_defaults();
}

const py_settings *py_settings_get(void)
{
    return &g_set;
}

void python_pool_configure(const kconfig *cfg, struct ioloop *const *loops, int nloops)
{
    pthread_once(&g_once, pool_once);
    find_exe(cfg->python_executable ? cfg->python_executable : "python3", g_set.exe, sizeof g_set.exe);
    resolve_script(g_set.exe, sizeof g_set.exe);
    if (cfg->python_runner)
        snprintf(g_set.runner, sizeof g_set.runner, "%s", cfg->python_runner);
    char real[PATH_MAX];
    if (cfg->data_dir && realpath(cfg->data_dir, real) && access(real, W_OK) == 0 &&
        strlen(real) < sizeof g_set.tmp_base)
        memcpy(g_set.tmp_base, real, strlen(real) + 1);
    g_set.mem_bytes = (uint64_t)(cfg->python_memory_mb > 0 ? cfg->python_memory_mb : PY_DEFAULT_MEMORY_MB) << 20;
    settings_paths();
    g_nloops = nloops < PY_MAX_LOOPS ? nloops : PY_MAX_LOOPS;
    for (int i = 0; i < g_nloops; i++)
        g_loops[i] = loops[i];
    g_set.nloops = g_nloops;
    g_set.workers = cfg->python_workers > 0 ? cfg->python_workers : g_nloops;
    if (g_set.workers < g_nloops)
        log_msg(LOG_INFO, "python.workers %d raised to %d: one per I/O loop", g_set.workers, g_nloops);
}

uint64_t python_code_id(void)
{
    return atomic_fetch_add(&g_code_ids, 1) + 1;
}

/* ---- one loop's pool ---- */

static int pool_share(ioloop *io)
{
    for (int i = 0; i < g_nloops; i++)
        if (g_loops[i] == io) {
            int n = g_set.workers / g_nloops + (i < g_set.workers % g_nloops);
            return n > 0 ? n : 1;
        }
    return 1; /* a loop the engine did not configure (tests): one worker */
}

static int pool_on_stop(io_hook *h)
{
    py_pool *p = h->ud;
    ioloop_set_local(p->io, g_key, NULL);
    for (py_call *c = p->head, *next; c; c = next) {
        next = c->next;
        py_call_finish(c, NULL, "internal", "the server is stopping");
    }
    p->head = p->tail = NULL;
    for (int i = 0; i < p->n; i++) {
        if (py_worker_crash_looping(p->w[i]))
            atomic_fetch_sub(&g_looping, 1);
        py_worker_free(p->w[i]);
    }
    free(p->w);
    free(p);
    return 0;
}

static py_pool *pool_for(ioloop *io)
{
    pthread_once(&g_once, pool_once);
    if (g_key < 0)
        return NULL;
    py_pool *p = ioloop_get_local(io, g_key);
    if (p)
        return p;
    if (!(p = calloc(1, sizeof *p)))
        return NULL;
    p->io = io;
    p->n = pool_share(io);
    if (!(p->w = calloc((size_t)p->n, sizeof *p->w))) {
        free(p);
        return NULL;
    }
    for (int i = 0; i < p->n; i++)
        if ((p->w[i] = py_worker_new(p, io, i)))
            py_worker_start(p->w[i]);
    for (int i = 0; i < p->n; i++)
        if (!p->w[i]) { /* out of memory: run with the workers made */
            p->n = i;
            break;
        }
    ioloop_set_local(io, g_key, p);
    ioloop_at_stop(io, &p->stop_hook, pool_on_stop, p);
    atomic_store(&g_started, 1);
    return p;
}

static void pool_warm_one(void *ud)
{
    pool_for(ud);
}

void python_pool_warm(void)
{
    if (g_nloops == 0 || atomic_exchange(&g_warmed, 1))
        return;
    for (int i = 0; i < g_nloops; i++)
        ioloop_post(g_loops[i], pool_warm_one, g_loops[i]);
}

/* ---- calls ---- */

static void call_free(py_call *c)
{
    free(c->code);
    free(c->frame);
    free(c->frame_code);
    free(c);
}

void py_call_finish(py_call *c, json_t *reply, const char *code, const char *message)
{
    if (!c->cancelled)
        c->done(c->ud, reply, code, message);
    call_free(c);
}

void py_pool_worker_idle(py_pool *p, py_worker *w)
{
    while (p->head && py_worker_idle(w)) {
        py_call *c = p->head;
        p->head = c->next;
        if (!p->head)
            p->tail = NULL;
        c->next = NULL;
        py_worker_take(w, c);
    }
}

void py_pool_health_note(py_pool *p, int crash_looping, const char *why)
{
    (void)p;
    atomic_fetch_add(&g_looping, crash_looping ? 1 : -1);
    if (!crash_looping)
        return;
    pthread_mutex_lock(&g_why_mu);
    snprintf(g_why, sizeof g_why, "python worker crash loop: %s", why ? why : "");
    pthread_mutex_unlock(&g_why_mu);
}

/* The request frames, with and without the code. 0, or -1. */
static int call_frames(py_call *c, const py_request *rq)
{
    size_t cap = 0;
    json_t *m = json_pack("{s:I,s:I,s:O,s:f,s:b}", "id", (json_int_t)c->id, "code_id", (json_int_t)c->code_id, "inputs",
                          rq->inputs, "timeout", rq->timeout_ms / 1000.0, "async", rq->asynchronous);
    int rc = !m || py_frame_encode(m, &c->frame, &c->frame_len, &cap) != 0 ? -1 : 0;
    cap = 0;
    if (rc == 0 && (json_object_set_new(m, "code", json_string(rq->code)) != 0 ||
                    py_frame_encode(m, &c->frame_code, &c->frame_code_len, &cap) != 0))
        rc = -1;
    json_decref(m);
    return rc;
}

static int pool_all_looping(const py_pool *p)
{
    for (int i = 0; i < p->n; i++)
        if (!py_worker_crash_looping(p->w[i]))
            return 0;
    return 1;
}

py_call *python_call(struct ioloop *io, const py_request *rq, py_done_fn done, void *ud, char *message, size_t msglen)
{
    py_pool *p = pool_for(io);
    if (!p || p->n == 0) {
        util_err(message, msglen, "the Python workers could not be set up (out of memory)");
        return NULL;
    }
    if (pool_all_looping(p)) {
        pthread_mutex_lock(&g_why_mu);
        util_err(message, msglen, "no Python worker is running (%s)", g_why);
        pthread_mutex_unlock(&g_why_mu);
        return NULL;
    }
    py_call *c = calloc(1, sizeof *c);
    if (!c || !(c->code = strdup(rq->code ? rq->code : ""))) {
        free(c);
        util_err(message, msglen, "out of memory");
        return NULL;
    }
    c->pool = p;
    c->id = ++p->next_id;
    c->code_id = rq->code_id;
    c->timeout_ms = rq->timeout_ms;
    c->done = done;
    c->ud = ud;
    if (call_frames(c, rq) != 0) {
        call_free(c);
        util_err(message, msglen, "the inputs could not be sent to Python (over %zu bytes of JSON?)", PY_FRAME_MAX);
        return NULL;
    }
    for (int i = 0; i < p->n; i++)
        if (py_worker_take(p->w[i], c) == 0)
            return c;
    if (p->tail)
        p->tail->next = c;
    else
        p->head = c;
    p->tail = c;
    return c;
}

void python_call_cancel(py_call *c)
{
    if (c->worker) { /* running: its answer is dropped */
        c->cancelled = 1;
        return;
    }
    py_pool *p = c->pool;
    for (py_call **pp = &p->head, *prev = NULL; *pp; prev = *pp, pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            if (p->tail == c)
                p->tail = prev;
            call_free(c);
            return;
        }
}

int python_pool_pids(struct ioloop *io, int *pids, int max)
{
    py_pool *p = g_key >= 0 ? ioloop_get_local(io, g_key) : NULL;
    int n = 0;
    for (int i = 0; p && i < p->n && n < max; i++)
        if (py_worker_pid(p->w[i]) > 0)
            pids[n++] = py_worker_pid(p->w[i]);
    return n;
}

int python_pool_state(char *why, size_t whylen)
{
    if (!atomic_load(&g_started))
        return -1;
    if (atomic_load(&g_looping) <= 0)
        return 1;
    pthread_mutex_lock(&g_why_mu);
    snprintf(why, whylen, "%s", g_why);
    pthread_mutex_unlock(&g_why_mu);
    return 0;
}
