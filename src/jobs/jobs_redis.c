/* jobs_redis: the Redis Streams job queue (jobs_internal.h's jobs_redis_*; the files' map is in
 * jobs_redis_internal.h). One stream per workflow, one consumer group for every instance, so each
 * job is delivered to one consumer; an entry stays in the group's pending list until its final
 * record is durable and it is acknowledged, so the jobs of an instance that died are claimed by
 * another (XAUTOCLAIM after jobs.claim_idle_ms), while a live instance refreshes its own.
 *
 * What runs where: the XADD of an accept, acks and cancels go through the calling loop's async
 * connection (src/redis: pipelined, with its deadline and breaker); everything that waits (reads
 * with BLOCK, claims, dead letters, the cancel subscription) runs on threads of this module, each
 * on a blocking connection of its own. An ack or cancel a loop could not send is handed to the
 * keeper thread's connection. Runs are at-least-once: a job whose ack is lost runs again. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jobs_redis_internal.h"
#include "kailash/engine.h"
#include "kailash/log.h"
#include "kailash/util.h"

rq_state RQ = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static struct {
    pthread_t *threads;
    int nthreads;
    atomic_uint next_loop;
} S;

void rq_stream_name(char out[RQ_STREAM_MAX], const char *wf_name)
{
    snprintf(out, RQ_STREAM_MAX, RQ_PREFIX "%s", wf_name);
}

int jobs_redis_up(void)
{
    return redis_state() == 1;
}

/* ---- XADD on the accepting loop ---- */

typedef struct rq_add {
    void (*cb)(void *ud, int ok);
    void *ud;
} rq_add;

static void on_added(redisReply *r, void *ud)
{
    rq_add *a = ud;
    int ok = r && r->type == REDIS_REPLY_STRING;
    if (r && r->type == REDIS_REPLY_ERROR)
        log_msg(LOG_WARN, "async jobs: Redis refused a job: %.200s", r->str);
    a->cb(a->ud, ok);
    free(a);
}

void jobs_redis_enqueue(const job *j, void (*cb)(void *ud, int ok), void *ud)
{
    char stream[RQ_STREAM_MAX];
    json_t *p = job_to_json(j);
    char *text = p ? json_dumps(p, JSON_COMPACT) : NULL;
    json_decref(p);
    rq_add *a = text ? malloc(sizeof *a) : NULL;
    rq_stream_name(stream, j->workflow);
    const char *argv[] = {"XADD", stream, "*", "job", text};
    size_t lens[] = {4, strlen(stream), 1, 3, text ? strlen(text) : 0};
    if (a)
        *a = (rq_add){cb, ud};
    int rc = a ? redis_command(5, argv, lens, on_added, a) : -1;
    free(text);
    if (rc != 0) {
        free(a);
        cb(ud, 0);
    }
}

/* ---- acks and cancels: on a loop, else deferred to the keeper ---- */

void rq_op_argv(const rq_op *op, const char *argv[2][6], size_t lens[2][6], int argc[2])
{
    if (op->kind == RQ_OP_ACK) {
        const char *a0[] = {"XACK", op->stream, RQ_GROUP, op->id}, *a1[] = {"XDEL", op->stream, op->id};
        argc[0] = 4, argc[1] = 3;
        memcpy(argv[0], a0, sizeof a0);
        memcpy(argv[1], a1, sizeof a1);
    } else {
        /* the SET's key is built in op->stream (unused by a cancel) */
        const char *a0[] = {"PUBLISH", RQ_CHANNEL, op->id}, *a1[] = {"SET", op->stream, "1", "EX", RQ_CANCELLED_TTL};
        argc[0] = 3, argc[1] = 5;
        memcpy(argv[0], a0, sizeof a0);
        memcpy(argv[1], a1, sizeof a1);
    }
    for (int c = 0; c < 2; c++)
        for (int i = 0; i < argc[c]; i++)
            lens[c][i] = strlen(argv[c][i]);
}

static void op_finish(rq_op *op)
{
    if (op->failed) {
        rq_op_defer(op);
        return;
    }
    if (op->kind == RQ_OP_ACK)
        rq_inflight_remove(op->stream, op->id);
    free(op);
}

static void on_op_reply(redisReply *r, void *ud)
{
    rq_op *op = ud;
    if (!r || r->type == REDIS_REPLY_ERROR)
        op->failed = 1;
    if (--op->pending == 0)
        op_finish(op);
}

/* On a loop thread: both commands on its connection. */
static void op_send(void *ud)
{
    rq_op *op = ud;
    const char *argv[2][6];
    size_t lens[2][6];
    int argc[2];
    rq_op_argv(op, argv, lens, argc);
    op->pending = 1; /* held until both are sent: replies never come from inside redis_command */
    op->failed = 0;
    for (int i = 0; i < 2; i++) {
        op->pending++;
        if (redis_command(argc[i], argv[i], lens[i], on_op_reply, op) != 0) {
            op->pending--;
            op->failed = 1;
            break;
        }
    }
    if (--op->pending == 0)
        op_finish(op);
}

/* Sends op on the calling loop, or on a loop, or (no loop) through the keeper. */
static void op_post(rq_op *op)
{
    if (ioloop_current()) {
        op_send(op);
        return;
    }
    int n = 0;
    struct ioloop *const *loops = engine_loops(&n);
    if (n > 0 && ioloop_post(loops[atomic_fetch_add(&S.next_loop, 1) % (unsigned)n], op_send, op) == 0)
        return;
    rq_op_defer(op);
}

void jobs_redis_ack(const job *j)
{
    rq_op *op = calloc(1, sizeof *op);
    if (!op) {
        log_msg(LOG_ERROR, "run %s: out of memory acknowledging its job; it may run again", j->run_id);
        return;
    }
    op->kind = RQ_OP_ACK;
    rq_stream_name(op->stream, j->workflow);
    util_copy(op->id, sizeof op->id, j->entry_id);
    op_post(op);
}

void jobs_redis_cancel(const char *run_id)
{
    rq_op *op = calloc(1, sizeof *op);
    if (!op)
        return;
    op->kind = RQ_OP_CANCEL;
    util_copy(op->id, sizeof op->id, run_id);
    snprintf(op->stream, sizeof op->stream, RQ_CANCELLED "%s", op->id);
    op_post(op);
}

int rq_ack_now(redisContext *c, const char *stream, const char *id)
{
    rq_op op = {.kind = RQ_OP_ACK};
    util_copy(op.stream, sizeof op.stream, stream);
    util_copy(op.id, sizeof op.id, id);
    const char *argv[2][6];
    size_t lens[2][6];
    int argc[2];
    rq_op_argv(&op, argv, lens, argc);
    const char **av[2] = {argv[0], argv[1]};
    size_t *lv[2] = {lens[0], lens[1]};
    redisReply *out[2];
    if (rq_pipe(c, 2, argc, av, lv, out, 0) != 0)
        return -1;
    freeReplyObject(out[0]);
    freeReplyObject(out[1]);
    rq_inflight_remove(stream, id);
    return 0;
}

/* ---- start and stop ---- */

static int rq_configure(const kconfig *cfg, char *err, size_t errlen)
{
    if (redis_url_parse(cfg->redis_url, &RQ.t, err, errlen) != 0)
        return -1;
    redis_target_describe(&RQ.t, RQ.where, sizeof RQ.where);
    RQ.timeout_ms = cfg->redis_timeout_ms > 1000 ? cfg->redis_timeout_ms : 1000; /* our threads may wait */
    RQ.claim_idle_ms = cfg->jobs_claim_idle_ms;
    RQ.max_deliveries = cfg->jobs_max_deliveries;
    RQ.consumers = cfg->jobs_consumers;
    RQ.block_ms = RQ.claim_idle_ms / 4 < 1000 ? RQ.claim_idle_ms / 4 : 1000;
    if (RQ.block_ms < 20)
        RQ.block_ms = 20;
    char host[256] = "localhost";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    snprintf(RQ.prefix, sizeof RQ.prefix, "%.200s:%ld:", host, (long)getpid());
    return 0;
}

static int rq_spawn(void *(*fn)(void *), intptr_t arg)
{
    if (pthread_create(&S.threads[S.nthreads], NULL, fn, (void *)arg) != 0)
        return -1;
    S.nthreads++;
    return 0;
}

int jobs_redis_start(const kconfig *cfg, char *err, size_t errlen)
{
    if (!cfg->redis_url || S.threads)
        return 0;
    if (rq_configure(cfg, err, errlen) != 0)
        return -1;
    atomic_store(&RQ.stop, 0);
    rq_conn_reset_report();
    S.threads = calloc((size_t)RQ.consumers + 2, sizeof *S.threads);
    if (!S.threads)
        return util_err(err, errlen, "out of memory");
    int rc = rq_spawn(rq_keep_main, 0) | rq_spawn(rq_cancel_main, 0);
    for (int i = 0; i < RQ.consumers && rc == 0; i++)
        rc = rq_spawn(rq_consume_main, i);
    if (rc != 0) {
        jobs_redis_stop();
        return util_err(err, errlen, "could not start the Redis job consumer threads");
    }
    log_msg(LOG_INFO, "async jobs: Redis Streams queue at %s, %d consumer(s), claim after %d ms idle", RQ.where,
            RQ.consumers, RQ.claim_idle_ms);
    return 0;
}

void jobs_redis_stop(void)
{
    if (!S.threads)
        return;
    pthread_mutex_lock(&RQ.mu);
    atomic_store(&RQ.stop, 1);
    pthread_cond_broadcast(&RQ.cv);
    pthread_mutex_unlock(&RQ.mu);
    for (int i = 0; i < S.nthreads; i++)
        pthread_join(S.threads[i], NULL);
    free(S.threads);
    S.threads = NULL;
    S.nthreads = 0;
    rq_track_clear();
}
