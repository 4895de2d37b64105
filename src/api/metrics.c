/* metrics: GET /metrics (API.md), Prometheus text exposition format 0.0.4.
 *
 * The counted families (requests, runs, nodes, upstream calls, cache, rate limits) are summed from
 * the threads' blocks (kailash/metrics.h); the gauges are read here at scrape time from their
 * owners' last known state, no round trip: the executors' running and queued runs per loaded
 * workflow, the dependencies as /ready sees them (each only when configured), the store's pending
 * and dropped records, the build, and the process from /proc/self. Runs are counted by an engine
 * sink, so runs started without a request reach the counts too.
 *
 * enable_monitoring false: counting is off and the route answers 404. metrics_auth true: the auth
 * step asks for the admin or the metrics role (HTTP_AUTH_METRICS in the router's table). */
#include <dirent.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "kailash/api.h"
#include "kailash/auth.h"
#include "kailash/engine.h"
#include "kailash/log.h"
#include "kailash/metrics.h"
#include "kailash/redis.h"
#include "kailash/store.h"

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

static const metrics_family f_inflight = {
    "kailash_executor_inflight", "Runs holding one of the workflow's executor slots.", METRICS_GAUGE, 1, {"workflow"}};
static const metrics_family f_queue = {
    "kailash_executor_queue_depth", "Runs waiting in the workflow's executor queue.", METRICS_GAUGE, 1, {"workflow"}};
static const metrics_family f_dep_up = {
    "kailash_dependency_up",
    "1 when a configured dependency (redis, postgres, journal, jwks) is up, 0 when down.",
    METRICS_GAUGE,
    1,
    {"name"}};
static const metrics_family f_pending = {
    "kailash_store_pending_records", "Run records waiting to be written.", METRICS_GAUGE, 0, {0}};
static const metrics_family f_dropped = {"kailash_store_dropped_records_total",
                                         "Run records dropped because the pending set was full (store.queue_max).",
                                         METRICS_COUNTER,
                                         0,
                                         {0}};
static const metrics_family f_build = {
    "kailash_build_info", "Always 1; the version of this build as a label.", METRICS_GAUGE, 1, {"version"}};
static const metrics_family f_rss = {
    "process_resident_memory_bytes", "Resident memory size in bytes.", METRICS_GAUGE, 0, {0}};
static const metrics_family f_fds = {"process_open_fds", "Number of open file descriptors.", METRICS_GAUGE, 0, {0}};
static const metrics_family f_cpu = {
    "process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", METRICS_COUNTER, 0, {0}};
static const metrics_family f_start = {
    "process_start_time_seconds", "Start time of the process since unix epoch in seconds.", METRICS_GAUGE, 0, {0}};

/* ---- counting runs: an engine sink --------------------------------------------------------------- */

static void metrics_on_run_end(const run_summary *s)
{
    metrics_run_end(s->workflow, run_status_name(s->status), s->duration_ms / 1000.0);
}

static const engine_sink metrics_sink = {.name = "metrics", .on_run_end = metrics_on_run_end};

void api_metrics_configure(const kconfig *cfg)
{
    static atomic_int added;
    metrics_set_enabled(cfg->enable_monitoring);
    if (cfg->enable_monitoring && atomic_exchange(&added, 1) == 0 && engine_sink_add(&metrics_sink) != 0)
        log_msg(LOG_ERROR, "metrics: no room for the run sink: runs are not counted");
}

/* ---- the gauges ------------------------------------------------------------------------------------ */

static int write_one(buf *out, const metrics_family *fam, const char *value_label, double v)
{
    return metrics_write_head(out, fam) != 0 ||
                   metrics_write_value(out, fam, (const char *const[]){value_label}, v) != 0
               ? -1
               : 0;
}

static int write_executors(buf *out)
{
    registry *reg = registry_acquire();
    size_t n = reg ? registry_count(reg) : 0;
    int rc = metrics_write_head(out, &f_inflight);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        executor *ex = registry_at(reg, i);
        rc = metrics_write_value(out, &f_inflight, (const char *const[]){exec_workflow(ex)->name}, exec_running(ex));
    }
    rc = rc || metrics_write_head(out, &f_queue);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        executor *ex = registry_at(reg, i);
        rc = metrics_write_value(out, &f_queue, (const char *const[]){exec_workflow(ex)->name}, exec_queued(ex));
    }
    registry_release(reg);
    return rc;
}

static int write_dependencies(buf *out)
{
    char why[200];
    int redis = redis_state(), jwks = jwks_remote_state(why, sizeof why);
    store_health sh;
    store_health_get(&sh);
    int rc = metrics_write_head(out, &f_dep_up);
    if (rc == 0 && redis >= 0)
        rc = metrics_write_value(out, &f_dep_up, (const char *const[]){"redis"}, redis);
    if (rc == 0 && sh.check)
        rc = metrics_write_value(out, &f_dep_up, (const char *const[]){sh.check}, sh.up != 0);
    if (rc == 0 && jwks >= 0)
        rc = metrics_write_value(out, &f_dep_up, (const char *const[]){"jwks"}, jwks);
    return rc;
}

static int write_store(buf *out)
{
    store_counts c;
    store_counts_get(&c);
    return write_one(out, &f_pending, NULL, (double)c.pending) || write_one(out, &f_dropped, NULL, (double)c.dropped);
}

/* ---- the process, from /proc/self ------------------------------------------------------------------ */

/* utime + stime and starttime (clock ticks) from /proc/self/stat. -1 when unreadable. */
static int proc_stat(double *cpu_ticks, double *start_ticks)
{
    char line[1024];
    FILE *f = fopen("/proc/self/stat", "re");
    size_t n = f ? fread(line, 1, sizeof line - 1, f) : 0;
    if (f)
        fclose(f);
    line[n] = '\0';
    const char *p = strrchr(line, ')'); /* the command may hold spaces and parentheses */
    unsigned long long ut, st, start;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d %*d %llu", &ut,
                     &st, &start) != 3)
        return -1;
    *cpu_ticks = (double)ut + (double)st;
    *start_ticks = (double)start;
    return 0;
}

static double boot_time_s(void)
{
    char line[256];
    unsigned long long bt = 0;
    FILE *f = fopen("/proc/stat", "re");
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "btime %llu", &bt) == 1)
            break;
    if (f)
        fclose(f);
    return (double)bt;
}

static double resident_bytes(void)
{
    unsigned long long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "re");
    if (!f)
        return 0;
    if (fscanf(f, "%llu %llu", &size, &resident) != 2)
        resident = 0;
    fclose(f);
    return (double)resident * (double)sysconf(_SC_PAGESIZE);
}

static double open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return 0;
    int n = -1; /* the directory's own descriptor */
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static int write_process(buf *out)
{
    double cpu = 0, start = 0, hz = (double)sysconf(_SC_CLK_TCK);
    int have = proc_stat(&cpu, &start) == 0 && hz > 0;
    int rc = write_one(out, &f_rss, NULL, resident_bytes()) || write_one(out, &f_fds, NULL, open_fds());
    if (rc == 0 && have)
        rc = write_one(out, &f_cpu, NULL, cpu / hz) || write_one(out, &f_start, NULL, boot_time_s() + start / hz);
    return rc;
}

/* ---- the route ------------------------------------------------------------------------------------- */

int api_metrics(kreq *r)
{
    if (!http_server_config()->enable_monitoring) {
        http_reply_error(r, 404, "not_found", "metrics are off (enable_monitoring is false)", NULL);
        return HTTP_DONE;
    }
    buf b = {0};
    if (buf_reserve(&b, 16384) != 0 || metrics_write_counted(&b) != 0 || write_executors(&b) != 0 ||
        write_dependencies(&b) != 0 || write_store(&b) != 0 || write_one(&b, &f_build, KAILASH_VERSION, 1) != 0 ||
        write_process(&b) != 0 || buf_terminate(&b) != 0) {
        buf_free(&b);
        http_reply_error(r, 500, "internal", "out of memory", NULL);
        return HTTP_DONE;
    }
    http_reply_buf(r, 200, &b);
    http_reply_header(r, "Content-Type", METRICS_CONTENT_TYPE);
    return HTTP_DONE;
}
