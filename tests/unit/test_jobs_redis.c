/* jobs_redis: the Redis Streams job queue (src/jobs/jobs_redis*.c) with the real jobs.c, the
 * engine and the journal, against a real redis-server each test starts on a free loopback port and
 * kills by PID. The test plays the other instances with a blocking hiredis client of its own: a
 * dead consumer ("dead:1:0") that read an entry and never acknowledged it, another instance that
 * tries XAUTOCLAIM, a writer of bad entries, a PUBLISH of a cancel. Records are read back with
 * store_get. Waits are generous deadlines only (the keeper claims every claim_idle_ms/2). */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../src/jobs/jobs_internal.h"
#include "kailash/engine.h"
#include "kailash/ioloop.h"
#include "kailash/jobs.h"
#include "kailash/redis.h"
#include "kailash/store.h"
#include "kailash/util.h"
#include "test_config_dir.h"

#define CLAIM_MS 300
#define STREAM "kailash:jobs:quick"
#define SLOW "kailash:jobs:slow"
#define DEAD "kailash:jobs:dead:letters"

/* ---- the server and a client of the test's own ---- */

static pid_t g_pid;
static int g_port, g_stall_fd = -1, g_stall_port;
static redisContext *g_cli;

static int free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
    cr_assert(getsockname(fd, (struct sockaddr *)&a, &alen) == 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* A socket that accepts connections (the backlog) and never answers: a run calling it hangs. */
static void stall_listen(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    g_stall_fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(bind(g_stall_fd, (struct sockaddr *)&a, sizeof a) == 0 && listen(g_stall_fd, 64) == 0);
    cr_assert(getsockname(g_stall_fd, (struct sockaddr *)&a, &alen) == 0);
    g_stall_port = ntohs(a.sin_port);
}

static void srv_start(void)
{
    char port[16];
    g_port = free_port();
    snprintf(port, sizeof port, "%d", g_port);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0), dup2(null, 1), dup2(null, 2);
        execl("/usr/bin/redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
              "--appendonly", "no", (char *)NULL);
        _exit(127);
    }
    g_pid = pid;
    double end = util_now_ms() + 10000;
    struct timeval tv = {1, 0};
    while (!(g_cli = redisConnectWithTimeout("127.0.0.1", g_port, tv)) || g_cli->err) {
        redisFree(g_cli);
        g_cli = NULL;
        cr_assert(util_now_ms() < end, "redis-server did not start");
        usleep(20 * 1000);
    }
}

/* A command's reply (the caller frees it). */
static redisReply *cli(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(g_cli, fmt, ap);
    va_end(ap);
    cr_assert_not_null(r, "the test's Redis client: %s", g_cli->errstr);
    return r;
}

static long long cli_int(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(g_cli, fmt, ap);
    va_end(ap);
    cr_assert(r && r->type == REDIS_REPLY_INTEGER, "%s", r && r->str ? r->str : "not an integer");
    long long n = r->integer;
    freeReplyObject(r);
    return n;
}

/* XPENDING's count of entries pending in the group. */
static long long pending(const char *stream)
{
    redisReply *r = cli("XPENDING %s kailashd", stream);
    long long n = r->type == REDIS_REPLY_ARRAY && r->elements == 4 ? r->element[0]->integer : 0;
    freeReplyObject(r);
    return n;
}

static int wait_int(long long want, int ms, long long (*probe)(const char *), const char *arg)
{
    double end = util_now_ms() + ms;
    while (probe(arg) != want && util_now_ms() < end)
        usleep(20 * 1000);
    return probe(arg) == want;
}

static long long xlen(const char *stream)
{
    return cli_int("XLEN %s", stream);
}

/* ---- the daemon's parts ---- */

static kconfig *cfg;
static char dir[64];

static void start_all(int max_deliveries)
{
    signal(SIGPIPE, SIG_IGN);
    srv_start();
    stall_listen();
    cfg = test_config_dir(dir, "/tmp/kjrqXXXXXX");
    cfg->workers = 2;
    char url[64], slow[512];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", g_port);
    cfg->redis_url = strdup(url);
    cfg->redis_timeout_ms = 1000;
    cfg->jobs_claim_idle_ms = CLAIM_MS;
    cfg->jobs_max_deliveries = max_deliveries;
    cfg->jobs_consumers = 2;
    test_config_put(dir, "quick",
                    "{\"version\":\"1\",\"nodes\":{\"t\":{\"node_type\":\"TransformNode\",\"config\":"
                    "{\"template\":{\"got\":\"{{inputs.q}}\"}}}}}");
    snprintf(slow, sizeof slow,
             "{\"version\":\"1\",\"nodes\":{\"h\":{\"node_type\":\"HTTPRequestNode\",\"config\":"
             "{\"url\":\"http://127.0.0.1:%d/\",\"timeout\":20}}}}",
             g_stall_port);
    test_config_put(dir, "slow", slow);
    char err[256] = "";
    cr_assert_eq(engine_start(cfg, err, sizeof err), 0, "%s", err);
    int n;
    ioloop *const *loops = engine_loops(&n);
    cr_assert_eq(redis_start(cfg->redis_url, cfg->redis_timeout_ms, loops, n, err, sizeof err), 0, "%s", err);
    cr_assert_eq(store_start(cfg, err, sizeof err), 0, "%s", err);
    registry *reg = registry_load(cfg, engine_node_env(), NULL);
    cr_assert_not_null(reg);
    registry_publish(reg);
    cr_assert_eq(jobs_start(cfg, loops, n, err, sizeof err), 0, "%s", err);
    double end = util_now_ms() + 5000;
    while (!jobs_redis_up() && util_now_ms() < end)
        usleep(10 * 1000);
    cr_assert(jobs_redis_up(), "the loops' Redis connections came up");
}

static void start_default(void)
{
    start_all(3);
}

static void start_two_deliveries(void)
{
    start_all(2);
}

static void stop_all(void)
{
    jobs_stop(util_now_ms() + 3000);
    redis_stop();
    engine_stop();
    registry_publish(NULL);
    store_stop(util_now_ms() + 3000);
    config_free(cfg);
    redisFree(g_cli);
    if (g_stall_fd >= 0)
        close(g_stall_fd);
    if (g_pid > 0) {
        kill(g_pid, SIGKILL);
        waitpid(g_pid, NULL, 0);
    }
}

TestSuite(jobs_redis, .init = start_default, .fini = stop_all, .timeout = 60);
TestSuite(jobs_redis_dead, .init = start_two_deliveries, .fini = stop_all, .timeout = 60);

/* ---- accepting a job on a loop, reading a record ---- */

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;

typedef struct waited {
    int done, status;
    char *json;
} waited;

static void on_accepted(void *ud, int status, const char *why)
{
    (void)why;
    waited *w = ud;
    pthread_mutex_lock(&g_mu);
    w->status = status;
    w->done = 1;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

static void wait_done(waited *w)
{
    pthread_mutex_lock(&g_mu);
    while (!w->done)
        pthread_cond_wait(&g_cv, &g_mu);
    pthread_mutex_unlock(&g_mu);
}

typedef struct accept_call {
    job *j;
    waited w;
} accept_call;

static void accept_on_loop(void *ud)
{
    accept_call *a = ud;
    jobs_accept(a->j, on_accepted, &a->w);
}

static job *make_job(const char *wf, const char *q)
{
    job *j = job_new(wf);
    cr_assert_not_null(j);
    util_uuid7(j->run_id);
    json_object_set_new(j->inputs, "q", json_string(q));
    return j;
}

/* Accepts a job of wf on loop 0 (as the API does); its run id into run_id. */
static void accept_job(const char *wf, const char *q, char run_id[37])
{
    int n;
    ioloop *const *loops = engine_loops(&n);
    accept_call a = {.j = make_job(wf, q)};
    util_copy(run_id, 37, a.j->run_id);
    ioloop_call(loops[0], accept_on_loop, &a);
    wait_done(&a.w);
    cr_assert_eq(a.w.status, JOBS_ACCEPTED);
}

static void on_record(void *ud, int status, const char *json, size_t len)
{
    waited *w = ud;
    pthread_mutex_lock(&g_mu);
    w->status = status;
    w->json = json ? strndup(json, len) : NULL;
    w->done = 1;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

/* The record's status ("" when none), and its error message into msg. */
static void record_status(const char *run_id, char *status, size_t len, char *msg, size_t msglen)
{
    waited w = {0};
    store_get(run_id, on_record, &w);
    wait_done(&w);
    json_t *rec = w.json ? json_loads(w.json, 0, NULL) : NULL;
    util_copy(status, len, json_string_value(json_object_get(rec, "status")) ?: "");
    if (msg)
        util_copy(msg, msglen, json_string_value(json_object_get(json_object_get(rec, "error"), "message")) ?: "");
    json_decref(rec);
    free(w.json);
}

static int wait_status(const char *run_id, const char *want, int ms, char *msg, size_t msglen)
{
    char st[32];
    double end = util_now_ms() + ms;
    do {
        record_status(run_id, st, sizeof st, msg, msglen);
        if (strcmp(st, want) == 0)
            return 1;
        usleep(30 * 1000);
    } while (util_now_ms() < end);
    return 0;
}

/* An entry added by the test and read by a consumer that then died (pending under dead:1:0): in
 * one transaction, so that no consumer of this process reads it first. */
static void add_orphan(const char *stream, const char *payload)
{
    freeReplyObject(cli("XGROUP CREATE %s kailashd 0 MKSTREAM", stream));
    freeReplyObject(cli("MULTI"));
    freeReplyObject(cli("XADD %s * job %s", stream, payload));
    freeReplyObject(cli("XREADGROUP GROUP kailashd dead:1:0 COUNT 10 STREAMS %s >", stream));
    redisReply *r = cli("EXEC");
    cr_assert(r->type == REDIS_REPLY_ARRAY && r->elements == 2 && r->element[1]->type == REDIS_REPLY_ARRAY,
              "the dead consumer read it");
    freeReplyObject(r);
}

static char *payload_of(const job *j)
{
    json_t *p = job_to_json(j);
    char *s = json_dumps(p, JSON_COMPACT);
    json_decref(p);
    return s;
}

/* ---- tests ---- */

Test(jobs_redis, enqueued_job_is_consumed_run_recorded_and_acknowledged)
{
    char ids[5][37];
    for (int i = 0; i < 5; i++)
        accept_job("quick", "round", ids[i]);
    for (int i = 0; i < 5; i++)
        cr_assert(wait_status(ids[i], "completed", 10000, NULL, 0), "run %s completed", ids[i]);
    cr_assert(wait_int(0, 5000, xlen, STREAM), "acknowledged entries are deleted");
    cr_assert_eq(pending(STREAM), 0);
    redisReply *r = cli("XINFO GROUPS %s", STREAM);
    cr_assert(r->type == REDIS_REPLY_ARRAY && r->elements == 1, "one group");
    freeReplyObject(r);
}

Test(jobs_redis, a_dead_consumers_entry_is_claimed_after_claim_idle_ms)
{
    job *j = make_job("quick", "orphan");
    char *p = payload_of(j);
    add_orphan(STREAM, p);
    double t0 = util_now_ms();
    cr_assert(wait_status(j->run_id, "completed", 10000, NULL, 0), "the orphan ran here");
    cr_assert_geq(util_now_ms() - t0, CLAIM_MS * 0.9, "not before it was idle for claim_idle_ms");
    cr_assert(wait_int(0, 5000, xlen, STREAM));
    cr_assert_eq(pending(STREAM), 0);
    free(p);
    job_free(j);
}

Test(jobs_redis, a_live_owners_long_run_is_refreshed_and_never_claimed)
{
    char id[37];
    accept_job("slow", "long", id);
    cr_assert(wait_status(id, "running", 5000, NULL, 0));
    for (int i = 0; i < 6; i++) { /* another instance tries, well past claim_idle_ms */
        usleep(CLAIM_MS * 1000);
        redisReply *r = cli("XAUTOCLAIM %s kailashd other:1:0 %d 0-0 COUNT 10", SLOW, CLAIM_MS);
        cr_assert(r->type == REDIS_REPLY_ARRAY && r->element[1]->elements == 0, "round %d: the entry was claimed", i);
        freeReplyObject(r);
    }
    redisReply *r = cli("XPENDING %s kailashd - + 10", SLOW);
    cr_assert_eq(r->elements, 1);
    cr_assert_eq(r->element[0]->element[3]->integer, 1, "the refresh does not count deliveries");
    char host[256] = "";
    gethostname(host, sizeof host);
    cr_assert_eq(strncmp(r->element[0]->element[1]->str, host, strlen(host)), 0, "still this process's");
    freeReplyObject(r);
}

Test(jobs_redis, a_cancel_published_by_another_instance_cancels_the_run_here)
{
    char id[37];
    accept_job("slow", "to-cancel", id);
    cr_assert(wait_status(id, "running", 5000, NULL, 0));
    cr_assert_geq(cli_int("PUBLISH kailash:jobs:cancel %s", id), 1, "this process subscribes");
    cr_assert(wait_status(id, "cancelled", 5000, NULL, 0));
    cr_assert(wait_int(0, 5000, xlen, SLOW), "the cancelled job is acknowledged");
}

static void cancel_on_loop(void *ud)
{
    jobs_redis_cancel(ud);
}

Test(jobs_redis, cancel_publishes_and_marks_a_job_no_one_took_yet)
{
    job *j = make_job("quick", "never");
    int n;
    ioloop *const *loops = engine_loops(&n);
    ioloop_call(loops[1], cancel_on_loop, j->run_id);
    double end = util_now_ms() + 3000;
    long long exists = 0;
    while (!(exists = cli_int("EXISTS kailash:jobs:cancelled:%s", j->run_id)) && util_now_ms() < end)
        usleep(10 * 1000);
    cr_assert_eq(exists, 1);
    cr_assert_gt(cli_int("TTL kailash:jobs:cancelled:%s", j->run_id), 3000);
    jobs_redis_cancel("0192f7c2-3a4b-7c5d-8e6f-0123456789ab"); /* from no loop at all: posted to one */
    end = util_now_ms() + 3000;
    while (!cli_int("EXISTS kailash:jobs:cancelled:0192f7c2-3a4b-7c5d-8e6f-0123456789ab") && util_now_ms() < end)
        usleep(10 * 1000);
    cr_assert_eq(cli_int("EXISTS kailash:jobs:cancelled:0192f7c2-3a4b-7c5d-8e6f-0123456789ab"), 1);
    /* the job arrives later (from another instance): it ends cancelled without running */
    char *p = payload_of(j);
    freeReplyObject(cli("XADD %s * job %s", STREAM, p));
    cr_assert(wait_status(j->run_id, "cancelled", 5000, NULL, 0));
    cr_assert(wait_int(0, 5000, xlen, STREAM));
    free(p);
    job_free(j);
}

Test(jobs_redis_dead, an_unparsable_entry_is_dead_lettered_after_max_deliveries)
{
    freeReplyObject(cli("XGROUP CREATE %s kailashd 0 MKSTREAM", STREAM));
    freeReplyObject(cli("XADD %s * job %s", STREAM, "{\"v\":1,\"run_id\":\"0192f7c2-3a4b-7c5d-8e6f-0123456789ab\"}"));
    cr_assert(wait_int(1, 10000, xlen, DEAD), "one dead letter");
    cr_assert(wait_int(0, 5000, xlen, STREAM));
    cr_assert_eq(pending(STREAM), 0);
    redisReply *r = cli("XRANGE %s - +", DEAD);
    cr_assert_eq(r->elements, 1);
    const redisReply *f = r->element[0]->element[1];
    int saw_reason = 0;
    for (size_t i = 0; i + 1 < f->elements; i += 2)
        if (strcmp(f->element[i]->str, "reason") == 0)
            saw_reason = strstr(f->element[i + 1]->str, "dead-lettered after 2 deliveries: the job's payload is "
                                                        "not a job") != NULL;
    cr_assert(saw_reason, "the reason is kept");
    freeReplyObject(r);
    char msg[400];
    cr_assert(wait_status("0192f7c2-3a4b-7c5d-8e6f-0123456789ab", "failed", 5000, msg, sizeof msg),
              "the run id it carried gets a failed record");
    cr_assert(strstr(msg, "dead-lettered after 2 deliveries"), "%s", msg);
}

Test(jobs_redis_dead, an_orphan_of_a_workflow_not_loaded_here_is_dead_lettered_with_its_record)
{
    job *j = make_job("elsewhere", "x");
    char *p = payload_of(j);
    add_orphan("kailash:jobs:elsewhere", p);
    char msg[400];
    cr_assert(wait_status(j->run_id, "failed", 10000, msg, sizeof msg));
    cr_assert(strstr(msg, "dead-lettered after 2 deliveries: workflow 'elsewhere' is not loaded"), "%s", msg);
    cr_assert_eq(xlen(DEAD), 1);
    cr_assert_eq(xlen("kailash:jobs:elsewhere"), 0);
    free(p);
    job_free(j);
}
