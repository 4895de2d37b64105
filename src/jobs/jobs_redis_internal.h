/* Shared by the files of the Redis Streams job queue only (jobs_redis*.c); jobs_internal.h is the
 * queue's contract with jobs.c.
 *
 *   jobs_redis.c          start, stop, state; XADD on a loop; acks and cancels sent on a loop (the
 *                         async connection), deferred to the keeper's connection when that fails
 *   jobs_redis_conn.c     a blocking connection of our own threads: AUTH/SELECT from the URL,
 *                         commands waited for in slices so a stop is seen within 100 ms
 *   jobs_redis_track.c    this process's entries in flight (refreshed so no one claims them), jobs
 *                         held for room, the streams whose group exists, the deferred ops
 *   jobs_redis_entry.c    one delivered entry: parse, cancelled?, dispatch, hold, or count a failed
 *                         start and dead-letter it at jobs.max_deliveries
 *   jobs_redis_consume.c  the consumer threads: XREADGROUP on the streams that have room
 *   jobs_redis_keep.c     the keeper thread: refreshes entries in flight, XAUTOCLAIMs idle ones of
 *                         dead instances, sends deferred ops
 *   jobs_redis_cancel.c   the subscriber thread: cancels told by other instances
 *
 * Keys: stream "kailash:jobs:<workflow>" (field "job": the payload), group "kailashd"; dead letters
 * "kailash:jobs:dead:letters"; channel "kailash:jobs:cancel"; "kailash:jobs:cancelled:<run_id>" for
 * an hour. Workflow names cannot hold ':', so no workflow's stream collides with the other keys. */
#ifndef KAILASH_JOBS_REDIS_INTERNAL_H
#define KAILASH_JOBS_REDIS_INTERNAL_H

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdatomic.h>

#include "jobs_internal.h"
#include "kailash/redis.h"

#define RQ_PREFIX "kailash:jobs:"
#define RQ_GROUP "kailashd"
#define RQ_DEAD "kailash:jobs:dead:letters"
#define RQ_DEAD_MAXLEN "100000" /* dead letters are for inspection: the oldest go first (MAXLEN ~) */
#define RQ_CHANNEL "kailash:jobs:cancel"
#define RQ_CANCELLED "kailash:jobs:cancelled:"
#define RQ_CANCELLED_TTL "3600"
#define RQ_STREAM_MAX 160 /* RQ_PREFIX and a workflow name of at most 128 bytes */

/* The queue's settings and threads (jobs_redis.c). Written by jobs_redis_start before any thread
 * starts, read-only afterwards except stop. */
typedef struct rq_state {
    redis_target t;
    char where[300]; /* redis_describe-like, for logs */
    int timeout_ms;  /* one command's deadline on our connections (not XREADGROUP's BLOCK) */
    int claim_idle_ms, max_deliveries, consumers;
    int block_ms;     /* XREADGROUP BLOCK: short enough for a prompt stop */
    char prefix[300]; /* "host:pid:": every consumer name of this process starts so */
    atomic_int stop;
    pthread_mutex_t mu; /* with cv: stop-aware sleeps, the keeper's wake-up */
    pthread_cond_t cv;
} rq_state;

extern rq_state RQ;

/* ---- jobs_redis_conn.c: blocking connections (our own threads only) ---- */

/* Connects and sends AUTH/SELECT; NULL with why. */
redisContext *rq_conn_open(char *why, size_t whylen);
/* Sends n commands pipelined and waits for their replies (into out[0..n)), each within
 * RQ.timeout_ms past extra_ms. 0, or -1 (connection broken, deadline, stop): close the connection;
 * out[] is then all NULL. Replies are the caller's (freeReplyObject). */
int rq_pipe(redisContext *c, int n, int *argc, const char ***argv, size_t **lens, redisReply **out, int extra_ms);
/* A reply if one comes within ms (*out NULL if none): 0, or -1 (connection broken). */
int rq_recv_for(redisContext *c, int ms, redisReply **out);
/* One command: its reply, or NULL (close the connection). */
redisReply *rq_call(redisContext *c, int extra_ms, int argc, const char **argv, const size_t *lens);
/* A command from strings (argv NULL-terminated, at most 16). */
redisReply *rq_callv(redisContext *c, const char *const *argv);
/* Sleeps ms, or less when stopping. 1 when stopping. */
int rq_sleep(int ms);
/* The consumers' connections went up (1) or down (0): logged once per transition. */
void rq_conn_report(int up, const char *why);
/* Connects with backoff (*backoff_ms doubles up to 5 s, reset on success); NULL when stopping. */
redisContext *rq_conn_backoff(int *backoff_ms);
/* The next transition is logged whichever it is (a new start). */
void rq_conn_reset_report(void);

/* ---- jobs_redis_track.c: what this process holds (each function takes its own lock) ---- */

/* Entries in flight (dispatched or held, not acked): refreshed every claim_idle_ms/3. */
void rq_inflight_add(const char *stream, const char *id);
void rq_inflight_remove(const char *stream, const char *id);
int rq_inflight_has(const char *stream, const char *id);
/* A place for one entry of stream while a read (or claim) is in progress: 1 when this process's
 * entries of it in flight plus the reads in progress stay below slots, else 0. A consumer blocked
 * in XREADGROUP holds its place, so that several consumers never take more than the free slots.
 * rq_read_release once the read's entries are in flight. */
int rq_read_reserve(const char *stream, int slots);
void rq_read_release(const char *stream);
/* The ids of stream's entries in flight (caller frees each and the array); *n their count. Every
 * stream with one: rq_inflight_streams. */
char **rq_inflight_ids(const char *stream, size_t *n);
char **rq_inflight_streams(size_t *n);
void rq_strv_free(char **v, size_t n);

/* Jobs a dispatch found FULL (taken: held until a retry dispatches them). */
void rq_held_add(job *j);
/* Takes every held job out (caller dispatches each, and holds again what is still FULL). */
job **rq_held_take(size_t *n);
int rq_held_has(const char *wf_name);

/* Streams whose consumer group exists (XGROUP CREATE answered OK or BUSYGROUP). */
int rq_group_known(const char *stream);
void rq_group_set(const char *stream, int known);

/* Ops sent on a loop that failed: the keeper sends them on its own connection. */
enum { RQ_OP_ACK = 0, RQ_OP_CANCEL = 1 };
typedef struct rq_op {
    int kind;
    char stream[RQ_STREAM_MAX]; /* ACK */
    char id[48];                /* ACK: the entry; CANCEL: the run id */
    int pending, failed;        /* replies still due on the loop, and whether one was a failure */
    struct rq_op *next;
} rq_op;
void rq_op_defer(rq_op *op);
rq_op *rq_op_take_all(void);
/* Frees everything (at stop): held jobs, deferred ops (counted in the log), the sets. */
void rq_track_clear(void);

/* ---- jobs_redis.c ---- */

void rq_stream_name(char out[RQ_STREAM_MAX], const char *wf_name);
/* The op's commands (two: XACK+XDEL, or PUBLISH+SET) into argv/lens. */
void rq_op_argv(const rq_op *op, const char *argv[2][6], size_t lens[2][6], int argc[2]);
/* XACK+XDEL on a blocking connection: 0, or -1 (connection broken). */
int rq_ack_now(redisContext *c, const char *stream, const char *id);

/* ---- jobs_redis_entry.c ---- */

/* One entry delivered to this process (XREADGROUP or XAUTOCLAIM), deliveries times so far: hand
 * it to jobs.c, hold it, or count a failed start. -1 when the connection broke. */
int rq_entry_take(redisContext *c, const char *stream, const char *id, const redisReply *fields, int deliveries);
/* Held jobs dispatched again (on a consumer's connection). -1 when the connection broke. */
int rq_held_retry(redisContext *c);

/* ---- the threads ---- */

void *rq_consume_main(void *arg); /* arg: the consumer's number (intptr_t) */
void *rq_keep_main(void *arg);
void *rq_cancel_main(void *arg);
/* Reserves a read of one entry of a registry's stream (rq_read_reserve; release it after): its
 * workflow has a free slot (this process's entries of it in flight and reads in progress below its
 * max_concurrency: a job read into a local queue would wait there while another instance may be
 * idle), no job held, and jobs_room. 0 when not (nothing reserved). */
int rq_stream_reserve(const char *stream);
/* The streams of the current registry's workflows, their group made (caller frees with
 * rq_strv_free). -1 when the connection broke. */
int rq_streams_known(redisContext *c, char ***out, size_t *n);

#endif
