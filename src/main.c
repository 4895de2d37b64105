/* kailashd: command line, start-up, the signal loop and reload.
 *
 * Every thread is started with SIGTERM/SIGINT/SIGHUP blocked; the main thread alone waits for them
 * with sigwait, so signal handling is ordinary code (reload, graceful stop) rather than async-signal
 * handlers. */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "kailash/api.h"
#include "kailash/auth.h"
#include "kailash/cache.h"
#include "kailash/config.h"
#include "kailash/engine.h"
#include "kailash/events.h"
#include "kailash/http.h"
#include "kailash/jobs.h"
#include "kailash/log.h"
#include "kailash/notify.h"
#include "kailash/redis.h"
#include "kailash/store.h"
#include "kailash/watchdog.h"

static const char *g_config_path;
static kconfig *g_cfg; /* the config serving now */
static pthread_mutex_t g_reload_mu = PTHREAD_MUTEX_INITIALIZER;
static watchdog *g_watchdog; /* when the service manager asked for one */

static void usage(FILE *f)
{
    fprintf(f, "usage: kailashd [--config FILE]        serve the workflows\n"
               "       kailashd --check [--config FILE] load config and every workflow, print each problem\n"
               "                                        (also: kailashd check)\n"
               "       kailashd run WORKFLOW --input JSON|@FILE|@- [--config FILE]\n"
               "                                        run one workflow in-process (no HTTP), print its answer;\n"
               "                                        exit 0 completed, 1 failed, 2 usage or load error\n"
               "       kailashd hash-key                read an API key on stdin, print its SHA-256 for auth.api_keys\n"
               "       kailashd --version | --help\n"
               "The config comes from --config, else $KAILASH_CONFIG, else conf/kailashd.json.\n");
}

static const char *config_path(const char *arg)
{
    if (arg)
        return arg;
    const char *env = getenv("KAILASH_CONFIG");
    if (env && *env)
        return env;
    return "conf/kailashd.json";
}

static int do_check(void)
{
    char err[1024];
    kconfig *cfg;
    if (config_load(g_config_path, &cfg, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    auth_ctx *auth = NULL;
    redis_target rt;
    char rerr[300];
    if (cfg->redis_url && redis_url_parse(cfg->redis_url, &rt, rerr, sizeof rerr) != 0) {
        fprintf(stderr, "%s: key 'redis_url': %s\n", cfg->file, rerr);
        config_free(cfg);
        return 1;
    }
    if (store_check_config(cfg, rerr, sizeof rerr) != 0) {
        fprintf(stderr, "%s: key 'database_url': %s\n", cfg->file, rerr);
        config_free(cfg);
        return 1;
    }
    int tls = http_tls_load(cfg, err, sizeof err); /* the certificate and key load, and belong together */
    http_tls_free();
    if (tls != 0) {
        fprintf(stderr, "%s: %s\n", cfg->file, err);
        config_free(cfg);
        return 1;
    }
    if (auth_ctx_load(cfg, &auth, err, sizeof err) != 0 || engine_prepare(cfg, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        config_free(cfg);
        return 1;
    }
    auth_ctx_free(auth);
    registry *reg = registry_load(cfg, engine_node_env(), NULL);
    json_t *problems = registry_problems(reg);
    size_t i;
    json_t *p;
    json_array_foreach(problems, i, p) printf("%s\n", json_string_value(p));
    int bad = json_array_size(problems) > 0;
    printf("%s: %zu workflow(s) loaded, %zu problem(s)\n", g_config_path, registry_count(reg),
           json_array_size(problems));
    registry_release(reg);
    config_free(cfg);
    return bad;
}

/* Makes cfg the serving config and frees the previous one. Only request callbacks read the serving
 * config, each within one turn of its loop (workflows copy what they need at load, and runs never
 * read it): once every loop has finished the turn it was in (http_server_sync), none holds it. */
static void config_publish(kconfig *cfg, auth_ctx *auth)
{
    kconfig *old = g_cfg;
    g_cfg = cfg;
    log_set_level(cfg->log_level);
    http_server_set_config(cfg);
    auth_ctx *old_auth = auth_ctx_publish(auth); /* it borrows from its config: they go together */
    http_server_sync();
    auth_ctx_free(old_auth);
    config_free(old);
}

/* The JWKS URL's fetcher follows the config (a changed URL drops the keys it holds). */
static int jwks_follow(const kconfig *cfg, char *err, size_t errlen)
{
    jwks_remote_opts o = {.url = cfg->jwt_jwks_url,
                          .min_refresh_s = cfg->jwt_jwks_min_refresh_s,
                          .verify_tls = cfg->upstream_verify_tls,
                          .connect_timeout_ms = cfg->upstream_connect_timeout_ms};
    return jwks_remote_configure(&o, err, errlen);
}

/* A reload reads the certificate and key again (a renewed certificate serves new handshakes); TLS on
 * or off is the daemons' shape, made at start. */
static int tls_follow(const kconfig *cfg, char *err, size_t errlen)
{
    int on = cfg->tls_cert_file != NULL, was = g_cfg->tls_cert_file != NULL;
    if (on != was) {
        log_msg(LOG_WARN, "reload: turning TLS %s takes effect only after a restart", on ? "on" : "off");
        return 0;
    }
    return on ? http_tls_load(cfg, err, errlen) : 0;
}

static int str_differs(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") != 0;
}

/* Settings a reload cannot apply (threads, sockets and connections made at start) are logged. */
static void warn_restart_only(const kconfig *cfg)
{
    const kconfig *o = g_cfg;
    if (cfg->port != o->port || strcmp(cfg->host, o->host) != 0 || cfg->workers != o->workers)
        log_msg(LOG_WARN, "reload: host, port and workers take effect only after a restart");
    if (str_differs(cfg->redis_url, o->redis_url) || cfg->redis_timeout_ms != o->redis_timeout_ms)
        log_msg(LOG_WARN, "reload: redis_url and redis_timeout_ms take effect only after a restart");
    if (str_differs(cfg->database_url, o->database_url) || cfg->store_enabled != o->store_enabled ||
        cfg->store_queue_max != o->store_queue_max || cfg->store_batch_max != o->store_batch_max ||
        cfg->store_segment_bytes != o->store_segment_bytes || cfg->store_retain_segments != o->store_retain_segments ||
        cfg->store_retain_s != o->store_retain_s)
        log_msg(LOG_WARN, "reload: database_url and store.* take effect only after a restart");
}

/* New config, new registry, swap (g_reload_mu held). */
static int reload_locked(json_t **result, char *err, size_t errlen)
{
    kconfig *cfg;
    auth_ctx *auth = NULL;
    if (config_load(g_config_path, &cfg, err, errlen) != 0) {
        log_msg(LOG_ERROR, "reload refused: %s", err);
        return -1;
    }
    if (auth_ctx_load(cfg, &auth, err, errlen) != 0 || jwks_follow(cfg, err, errlen) != 0 ||
        tls_follow(cfg, err, errlen) != 0 || jobs_callback_configure(cfg, err, errlen) != 0) {
        auth_ctx_free(auth);
        config_free(cfg);
        log_msg(LOG_ERROR, "reload refused: %s", err);
        return -1;
    }
    warn_restart_only(cfg);
    registry *prev = registry_acquire();
    registry *reg = registry_load(cfg, engine_node_env(), prev);
    registry_release(prev);
    if (!reg) {
        auth_ctx_free(auth);
        config_free(cfg);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    *result = json_pack("{s:b,s:I,s:O}", "reloaded", 1, "workflows", (json_int_t)registry_count(reg), "errors",
                        registry_errors(reg));
    log_msg(LOG_INFO, "reloaded: %zu workflow(s), %zu file(s) with errors", registry_count(reg),
            json_array_size(registry_errors(reg)));
    registry_publish(reg);
    config_publish(cfg, auth);
    return 0;
}

/* READY=1 after a reload either way: a refused one leaves the previous config serving. */
static void reload_notify_end(int refused)
{
    registry *reg = registry_acquire();
    size_t n = registry_count(reg);
    registry_release(reg);
    notify_ready(n);
    if (refused)
        notify_status("serving %zu workflow(s); the last reload was refused (see the log)", n);
}

/* api_reload_fn (POST /admin/reload) and SIGHUP. Once graceful_stop holds the lock, none begins. */
static int do_reload(json_t **result, char *err, size_t errlen)
{
    pthread_mutex_lock(&g_reload_mu);
    notify_reloading();
    int rc = reload_locked(result, err, errlen);
    reload_notify_end(rc != 0);
    pthread_mutex_unlock(&g_reload_mu);
    return rc;
}

/* glibc gives memory back to the system as soon as the top of an arena has 128 KiB free, and takes
 * it again on the next request: under load that was about 4 % of the CPU of an upstream call
 * (heap_trim, madvise, then page faults). Keep up to 64 MiB per arena instead. */
static void tune_malloc(void)
{
    mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024);
    mallopt(M_TOP_PAD, 16 * 1024 * 1024);
}

static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* Waits until no request is in flight or shutdown_grace_ms has passed; returns how many are left. */
static int drain_wait(int grace_ms)
{
    double end = util_now_ms() + grace_ms;
    while (http_server_inflight() > 0 && util_now_ms() < end) {
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
        log_access_flush();
    }
    return http_server_inflight();
}

/* SIGTERM, in order: stop accepting and close idle connections; let requests in flight finish (up to
 * shutdown_grace_ms), then cancel the runs still going; stop the front end, then the engine (its
 * loops and pool: nothing runs after that); flush every sink; exit as soon as all that is done: 0,
 * or 1 when the grace ran out and runs had to be cancelled. */
#define SHUTDOWN_CANCEL_MS 1000 /* after the grace: how long cancelled runs' answers may take */
#define STORE_STOP_MIN_MS 1000  /* the run store's time to write what it holds, at the least */

/* The run store writes out what it holds by the end of the grace (writing to the journal or the
 * spool takes milliseconds; the floor is for a grace used up by requests). */
static double store_deadline(double stop_began_ms)
{
    double end = stop_began_ms + g_cfg->shutdown_grace_ms, floor = util_now_ms() + STORE_STOP_MIN_MS;
    return end > floor ? end : floor;
}

static int graceful_stop(void)
{
    double began = util_now_ms();
    notify_stopping(http_server_inflight());
    log_msg(LOG_INFO, "stopping: no new connections, waiting for %d request(s)", http_server_inflight());
    http_server_quiesce();
    pthread_mutex_lock(&g_reload_mu); /* no reload may swap g_cfg from here on */
    /* async jobs: queued ones stay queued for the next start; running ones get the grace */
    jobs_stop(began + g_cfg->shutdown_grace_ms);
    double left_ms = began + g_cfg->shutdown_grace_ms - util_now_ms();
    int cut = drain_wait(left_ms > 0 ? (int)left_ms : 0), late = cut > 0;
    if (cut > 0) {
        /* Out of time: cancel what is still running (its transfers are aborted, its answer is a 503,
         * and its end reaches the sinks like any other), then give those answers a moment to go. */
        int runs = engine_cancel_all();
        log_msg(LOG_ERROR, "shutdown_grace_ms (%d ms) ran out: %d request(s) in flight, %d run(s) cancelled",
                g_cfg->shutdown_grace_ms, cut, runs);
        notify_status("stopping: grace ran out, %d run(s) cancelled", runs);
        cut = drain_wait(SHUTDOWN_CANCEL_MS);
    }
    if (cut > 0) {
        /* Runs still going hold requests that the daemons' teardown would free under them, and the
         * loops they run on: the process ends here, non-zero, once the sinks and the access log have
         * written out what they hold (the cut runs never ended, so they have no record). */
        log_msg(LOG_ERROR, "%d request(s) in flight cut", cut);
        engine_sinks_flush();
        store_stop(store_deadline(began));
        log_access_flush();
        _exit(1);
    }
    http_server_stop();
    jwks_remote_stop();
    cache_gens_stop();
    events_stop();
    redis_stop();
    engine_stop();
    watchdog_free(g_watchdog); /* its loops are gone: so are the pings */
    g_watchdog = NULL;
    engine_sinks_flush();
    store_stop(store_deadline(began)); /* after every run ended: every record is put */
    registry_publish(NULL);
    auth_ctx_free(auth_ctx_publish(NULL));
    config_free(g_cfg);
    log_shutdown();
    log_msg(LOG_INFO, "stopped");
    return late ? 1 : 0; /* runs had to be cancelled: the grace was too short for them */
}

/* The watchdog, when systemd asked for one (WatchdogSec=): pings from the loops' liveness. */
static int watchdog_begin(char *err, size_t errlen)
{
    uint64_t usec = notify_watchdog_usec();
    if (usec == 0)
        return 0;
    int nloops;
    struct ioloop *const *loops = engine_loops(&nloops);
    g_watchdog = watchdog_start(loops, nloops, usec, notify_watchdog_ping, NULL, err, errlen);
    return g_watchdog ? 0 : -1;
}

static int serve(void)
{
    char err[1024];
    notify_init();
    if (config_load(g_config_path, &g_cfg, err, sizeof err) != 0) {
        fprintf(stderr, "kailashd: %s\n", err);
        return 1;
    }
    log_set_level(g_cfg->log_level);
    auth_ctx *auth = NULL;
    if (auth_ctx_load(g_cfg, &auth, err, sizeof err) != 0) {
        fprintf(stderr, "kailashd: %s\n", err);
        return 1;
    }
    auth_ctx_publish(auth);
    raise_fd_limit();
    tune_malloc();
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (engine_start(g_cfg, err, sizeof err) != 0) {
        fprintf(stderr, "kailashd: %s\n", err);
        return 1;
    }
    if (jwks_follow(g_cfg, err, sizeof err) != 0 || watchdog_begin(err, sizeof err) != 0) {
        fprintf(stderr, "kailashd: %s\n", err);
        return 1;
    }
    int nloops;
    struct ioloop *const *loops = engine_loops(&nloops);
    if (g_cfg->redis_url && redis_start(g_cfg->redis_url, g_cfg->redis_timeout_ms, loops, nloops, err, sizeof err) != 0) {
        fprintf(stderr, "kailashd: %s: key 'redis_url': %s\n", g_cfg->file, err);
        return 1;
    }
    if (g_cfg->redis_url)
        cache_gens_watch(loops[0]); /* purges made by other instances */
    if (store_start(g_cfg, err, sizeof err) != 0) {
        fprintf(stderr, "kailashd: run records: %s\n", err);
        return 1;
    }
    registry *reg = registry_load(g_cfg, engine_node_env(), NULL);
    if (!reg) {
        fprintf(stderr, "kailashd: out of memory\n");
        return 1;
    }
    size_t nwf = registry_count(reg);
    log_msg(LOG_INFO, "loaded %zu workflow(s) from %s, %zu file(s) with errors", nwf, g_cfg->workflows_dir,
            json_array_size(registry_errors(reg)));
    registry_publish(reg);
    if (events_start(g_cfg, loops, nloops, err, sizeof err) != 0 ||
        jobs_start(g_cfg, loops, nloops, err, sizeof err) != 0) { /* recovers jobs: after the registry */
        fprintf(stderr, "kailashd: %s\n", err);
        return 1;
    }
    api_admin_set_reload(do_reload);
    api_health_set_start_time(util_now_ms());
    if (http_server_start(g_cfg, loops, nloops, err, sizeof err) != 0) {
        fprintf(stderr, "kailashd: %s\n", err);
        return 1;
    }
    log_msg(LOG_INFO, "kailashd %s listening on %s:%d with %d worker(s)", KAILASH_VERSION, g_cfg->host, g_cfg->port,
            g_cfg->workers);
    notify_ready(nwf);
    for (;;) {
        struct timespec tick = {0, 100 * 1000 * 1000};
        int sig = sigtimedwait(&set, NULL, &tick);
        if (sig < 0) { /* the 100 ms tick (or EINTR): push out queued access-log lines */
            log_access_flush();
            continue;
        }
        if (sig == SIGHUP) {
            json_t *res = NULL;
            if (do_reload(&res, err, sizeof err) == 0)
                json_decref(res);
            continue;
        }
        return graceful_stop();
    }
}

/* kailashd hash-key: the key comes on stdin, never as an argument (it would stay in the shell's
 * history and show in ps); from a terminal it is read without echo. One trailing newline (and a CR
 * before it) is dropped. */
#define HASH_KEY_MAX 4096

static int do_hash_key(void)
{
    struct termios saved, quiet;
    int tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0;
    if (tty) {
        fprintf(stderr, "API key (not shown): ");
        quiet = saved;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    }
    char key[HASH_KEY_MAX + 2];
    size_t n = 0;
    if (tty) /* a line: the Enter key ends it */
        n = fgets(key, sizeof key, stdin) ? strlen(key) : 0;
    else
        n = fread(key, 1, sizeof key, stdin);
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
        fprintf(stderr, "\n");
    }
    if (n > 0 && key[n - 1] == '\n')
        n--;
    if (n > 0 && key[n - 1] == '\r')
        n--;
    int rc = 2;
    if (n == 0 || n > HASH_KEY_MAX) {
        fprintf(stderr, "kailashd hash-key: expected a key of 1..%d bytes on stdin\n", HASH_KEY_MAX);
    } else {
        char hex[65];
        auth_key_digest_hex(key, n, hex);
        printf("%s\n", hex);
        rc = 0;
    }
    explicit_bzero(key, sizeof key);
    return rc;
}

/* kailashd run WORKFLOW --input JSON|@FILE [--config FILE] */
static int do_run(int argc, char **argv)
{
    const char *wf_name = NULL, *input = NULL, *cfg_arg = NULL;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--input") == 0 && i + 1 < argc)
            input = argv[++i];
        else if (strncmp(argv[i], "--input=", 8) == 0)
            input = argv[i] + 8;
        else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            cfg_arg = argv[++i];
        else if (strncmp(argv[i], "--config=", 9) == 0)
            cfg_arg = argv[i] + 9;
        else if (argv[i][0] != '-' && !wf_name)
            wf_name = argv[i];
        else {
            fprintf(stderr, "kailashd run: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (!wf_name || !input) {
        fprintf(stderr, "kailashd run: expected a workflow name and --input\n");
        usage(stderr);
        return 2;
    }
    const char *path = config_path(cfg_arg);
    if (access(path, F_OK) != 0 && !cfg_arg && !getenv("KAILASH_CONFIG"))
        path = NULL; /* the embedded defaults, as the daemon */
    return api_direct_run(path, wf_name, input, stdout);
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "hash-key") == 0)
        return do_hash_key();
    if (argc >= 2 && strcmp(argv[1], "run") == 0)
        return do_run(argc, argv);
    const char *cfg_arg = NULL;
    int check = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("kailashd %s\n", KAILASH_VERSION);
            return 0;
        } else if (strcmp(argv[i], "--check") == 0 || strcmp(argv[i], "check") == 0) {
            check = 1;
        } else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            cfg_arg = argv[++i];
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            cfg_arg = argv[i] + 9;
        } else {
            fprintf(stderr, "kailashd: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    g_config_path = config_path(cfg_arg);
    if (access(g_config_path, F_OK) != 0 && !cfg_arg && !getenv("KAILASH_CONFIG")) {
        fprintf(stderr, "kailashd: %s not found; using the embedded defaults\n", g_config_path);
        g_config_path = NULL;
    }
    return check ? do_check() : serve();
}
