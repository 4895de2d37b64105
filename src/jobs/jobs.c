/* jobs: asynchronous runs (jobs.h). The life of one job:
 *
 *   accept     the API made the job (its run id, the caller, the inputs) and calls jobs_accept on its
 *              loop. With Redis up, the job's queued record is put (write-behind) and the job is added
 *              to its workflow's stream (one XADD): the stream is the durable copy. Otherwise it takes a
 *              place in its workflow's queue (exec_reserve: full is 503) and its queued record, the
 *              job's payload inside, is put durably: the 202 goes when the journal's batch holding it
 *              is synced (or Postgres committed it), many accepts sharing one sync.
 *   dispatch   the run is created with the job's id and caller and handed to the executor, which
 *              starts it as slots allow (max_concurrency counts sync and async runs alike). A Redis
 *              job is dispatched by a consumer thread (jobs_redis.c) when the executor has room.
 *   end        the run's record is put durably by this module (not the engine's record sink, which
 *              skips async runs), then the callback is sent and a Redis job acknowledged: a job is
 *              acknowledged only once its final record is durable.
 *   stop       a stopping daemon ends its jobs without records: their queued or running records stay,
 *              and the next start (recover) runs them again; a Redis job is not acknowledged, so another
 *              instance claims it. Runs are at-least-once: a job cut while running runs again.
 *
 * Cancel: a job of this process is found through the engine's table of async runs (run_cancel: a
 * queued one leaves its queue, a running one stops at its next node boundary and its transfers are
 * aborted). One not yet dispatched (its accept's sync in flight, or waiting in the recovery backlog)
 * is remembered and ends cancelled when it would start. With Redis, a run elsewhere is told through
 * jobs_redis_cancel. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "jobs_internal.h"
#include "kailash/engine.h"
#include "kailash/log.h"
#include "kailash/store.h"
#include "kailash/util.h"

/* A dispatched job: its run, and what its end needs. Linked in the in-flight list until it ends. */
typedef struct jrun {
    job *j;
    run *r;
    char *payload; /* in-process jobs: the payload the running record carries (a restart needs it) */
    buf final;     /* the final record, for the callback once it is durable */
    atomic_int cancelled; /* DELETE /runs/{id} asked: its end is recorded even while stopping */
    struct jrun *prev, *next;
} jrun;

#define CANCEL_MEMO 256 /* ids cancelled before their run existed (a ring: old ones fall out) */

static struct {
    int started;
    int redis; /* redis_url is set: the Redis queue is tried first */
    char owner[300];
    ioloop *const *loops;
    int nloops;
    atomic_uint next_loop;
    atomic_int stopping;
    pthread_mutex_t mu; /* the in-flight list, the backlog, the cancel memo */
    pthread_cond_t cv;  /* an in-flight job ended */
    jrun *inflight;
    int ninflight;
    job **backlog; /* recovered jobs waiting for room */
    size_t nbacklog;
    io_timer backlog_timer; /* on loops[0] */
    char cancelled[CANCEL_MEMO][37];
    atomic_uint ncancelled;
} J = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static void backlog_arm(void *ud);

/* ---- records ------------------------------------------------------------------------------------- */

/* The payload as the queued record keeps it: the job, and which instance may pick it up again. */
static char *payload_text(const job *j, int with_owner)
{
    json_t *p = job_to_json(j);
    if (p && with_owner)
        json_object_set_new(p, "owner", json_string(J.owner));
    char *s = p ? json_dumps(p, JSON_COMPACT) : NULL;
    json_decref(p);
    return s;
}

/* The queued record of j: with its payload (in-process: what a restart needs) or without (Redis:
 * the stream holds the job; a record without a payload is never recovered from the store). */
static int queued_record(const job *j, const char *version, int with_payload, buf *b)
{
    char *payload = with_payload ? payload_text(j, 1) : NULL;
    if (with_payload && !payload)
        return -1;
    store_queued q = {j->run_id, j->workflow, version, j->principal ? j->principal : "anonymous", j->request_id,
                      j->inputs, payload, payload ? strlen(payload) : 0};
    int rc = store_record_queued(&q, b);
    free(payload);
    return rc;
}

static store_rec rec_of(const job *j, const char *status, const buf *b)
{
    return (store_rec){j->run_id, j->workflow, status, j->principal ? j->principal : "anonymous", b->data, b->len};
}

/* A job that ends without running (cancelled before it started, dead-lettered, its workflow gone):
 * its final record, written from the job alone. */
static void record_unrun(const job *j, const char *status, const char *code, const char *why)
{
    buf b = {0};
    store_unrun u = {j->run_id, j->workflow, j->principal ? j->principal : "anonymous", j->request_id, j->inputs,
                     status, code, why};
    if (store_record_unrun(&u, &b) == 0) {
        store_rec rec = rec_of(j, status, &b);
        store_put(&rec);
    }
    buf_free(&b);
}

void jobs_record_dead(const job *j, const char *why)
{
    record_unrun(j, "failed", "internal", why);
}

void jobs_record_cancelled(const job *j)
{
    record_unrun(j, "cancelled", "cancelled", "the run was cancelled before it started");
}

/* ---- the cancel memo ----------------------------------------------------------------------------- */

static void memo_add(const char *run_id)
{
    pthread_mutex_lock(&J.mu);
    util_copy(J.cancelled[atomic_fetch_add(&J.ncancelled, 1) % CANCEL_MEMO], 37, run_id);
    pthread_mutex_unlock(&J.mu);
}

/* Whether run_id was cancelled before it started (and forgets it). */
static int memo_take(const char *run_id)
{
    int hit = 0;
    if (atomic_load(&J.ncancelled) == 0) /* nothing was ever cancelled early: the common case */
        return 0;
    pthread_mutex_lock(&J.mu);
    for (unsigned i = 0; i < CANCEL_MEMO && !hit; i++)
        if (strcasecmp(J.cancelled[i], run_id) == 0) {
            J.cancelled[i][0] = '\0';
            hit = 1;
        }
    pthread_mutex_unlock(&J.mu);
    return hit;
}

/* ---- a job's run ------------------------------------------------------------------------------------- */

static void jrun_link(jrun *jr)
{
    pthread_mutex_lock(&J.mu);
    jr->next = J.inflight;
    if (J.inflight)
        J.inflight->prev = jr;
    J.inflight = jr;
    J.ninflight++;
    pthread_mutex_unlock(&J.mu);
}

static void jrun_unlink(jrun *jr)
{
    pthread_mutex_lock(&J.mu);
    if (jr->prev)
        jr->prev->next = jr->next;
    else
        J.inflight = jr->next;
    if (jr->next)
        jr->next->prev = jr->prev;
    J.ninflight--;
    pthread_cond_broadcast(&J.cv);
    pthread_mutex_unlock(&J.mu);
}

/* The engine's sink of async runs beginning: the running record, with the payload of an in-process
 * job (so a restart runs a job cut while running again). Write-behind: nothing waits for it. */
static void on_run_start(const run *r)
{
    jrun *jr = run_user_data(r);
    buf b = {0};
    if (store_record_of_running(r, jr->payload, jr->payload ? strlen(jr->payload) : 0, &b) == 0) {
        store_rec rec = rec_of(jr->j, "running", &b);
        store_put(&rec);
    }
    buf_free(&b);
}

static const engine_sink jobs_sink = {.name = "async jobs", .on_run_start = on_run_start};

static void jrun_free(jrun *jr)
{
    buf_free(&jr->final);
    job_free(jr->j);
    free(jr->payload);
    free(jr);
}

/* The final record is durable: the callback goes, a Redis job is acknowledged. */
static void on_final_durable(void *ud, int ok)
{
    jrun *jr = ud;
    if (!ok) {
        log_msg(LOG_ERROR, "run %s: its final record could not be kept", jr->j->run_id);
    } else {
        if (jr->j->callback_url)
            jobs_callback_send(jr->j->callback_url, jr->j->run_id, jr->final.data, jr->final.len);
        if (jr->j->entry_id[0])
            jobs_redis_ack(jr->j);
    }
    jrun_free(jr);
}

/* The run ended (any thread). A run a stopping daemon cut leaves its record as it was. */
static void on_job_run_done(run *r, void *ud)
{
    jrun *jr = ud;
    int cut = atomic_load(&J.stopping) && run_get_status(r) == RUN_CANCELLED && !atomic_load(&jr->cancelled);
    buf *b = &jr->final;
    int have = !cut && store_record_of_run(r, b) == 0;
    const char *status = run_status_name(run_get_status(r));
    jrun_unlink(jr);
    run_release(r); /* the list's reference; whoever ended the run holds it still */
    if (have) {
        store_rec rec = rec_of(jr->j, status, b);
        store_put_durable(&rec, on_final_durable, jr); /* on_final_durable frees jr */
    } else {
        if (!cut)
            log_msg(LOG_ERROR, "run %s: out of memory writing its record", jr->j->run_id);
        jrun_free(jr);
    }
}

/* The monotonic time (util_now_ms) the job was accepted at, from the wall time its id carries. */
static double accepted_ms(const job *j)
{
    double now = util_now_ms(), ago = util_now_unix_s() * 1000.0 - store_uuid7_ms(j->run_id);
    return ago > 0 ? now - ago : now;
}

/* Creates j's run and hands it to ex, whose place it holds (exec_reserve). Takes j. */
static void dispatch_reserved(executor *ex, job *j)
{
    if (memo_take(j->run_id)) {
        exec_unreserve(ex);
        jobs_record_cancelled(j);
        if (j->entry_id[0])
            jobs_redis_ack(j);
        job_free(j);
        return;
    }
    jrun *jr = calloc(1, sizeof *jr);
    unsigned k = atomic_fetch_add(&J.next_loop, 1);
    run_opts o = {.request_id = j->request_id,
                  .inputs = j->inputs,
                  .parameters = j->parameters,
                  .principal_id = j->principal,
                  .principal_roles = j->roles,
                  .principal_attributes = j->attributes,
                  .hops = j->hops,
                  .home = J.nloops ? J.loops[k % (unsigned)J.nloops] : NULL,
                  .cache = "BYPASS",
                  .run_id = j->run_id,
                  .created_ms = accepted_ms(j),
                  .async = 1,
                  .events = 1,
                  .done = on_job_run_done,
                  .ud = jr};
    if (jr && !j->entry_id[0] && !(jr->payload = payload_text(j, 1))) {
        free(jr);
        jr = NULL;
    }
    run *r = jr ? run_create(ex, &o) : NULL;
    if (!r) {
        exec_unreserve(ex);
        log_msg(LOG_ERROR, "run %s: out of memory starting it; it stays queued for the next start", j->run_id);
        job_free(j);
        if (jr)
            free(jr->payload);
        free(jr);
        return;
    }
    jr->j = j;
    jr->r = r;
    run_retain(r); /* the in-flight list's */
    jrun_link(jr);
    exec_submit_reserved(ex, r);
}

int jobs_room(const char *wf_name)
{
    if (atomic_load(&J.stopping)) /* a stopping instance takes no more jobs from the streams */
        return 0;
    registry *reg = registry_acquire();
    executor *ex = reg ? registry_find(reg, wf_name) : NULL;
    int room = ex && exec_reserve(ex) == EXEC_OK;
    if (room)
        exec_unreserve(ex);
    registry_release(reg);
    return room;
}

int jobs_dispatch(job *j, char *why, size_t whylen)
{
    if (atomic_load(&J.stopping))
        return JOBS_DISPATCH_FULL;
    registry *reg = registry_acquire();
    executor *ex = reg ? registry_find(reg, j->workflow) : NULL;
    int rc = JOBS_DISPATCH_OK;
    if (!ex) {
        util_err(why, whylen, "workflow '%.128s' is not loaded on this instance", j->workflow);
        rc = JOBS_DISPATCH_FAILED;
    } else if (exec_reserve(ex) != EXEC_OK) {
        rc = JOBS_DISPATCH_FULL;
    } else {
        dispatch_reserved(ex, j);
    }
    registry_release(reg);
    return rc;
}

/* ---- accepting ----------------------------------------------------------------------------------- */

typedef struct accept_ctx {
    job *j;
    registry *reg;
    executor *ex;
    jobs_accept_fn cb;
    void *ud;
} accept_ctx;

static void accept_ctx_free(accept_ctx *a)
{
    job_free(a->j);
    registry_release(a->reg);
    free(a);
}

/* In-process: the queued record is durable (any thread: the store's writer). */
static void on_queued_durable(void *ud, int ok)
{
    accept_ctx *a = ud;
    if (!ok) {
        exec_unreserve(a->ex);
        a->cb(a->ud, JOBS_UNAVAILABLE, "the run's record could not be written");
        accept_ctx_free(a);
        return;
    }
    a->cb(a->ud, JOBS_ACCEPTED, NULL);
    job *j = a->j;
    a->j = NULL;
    dispatch_reserved(a->ex, j);
    accept_ctx_free(a);
}

static void accept_local(accept_ctx *a, int after_redis)
{
    if (exec_reserve(a->ex) != EXEC_OK) {
        /* after Redis refused it, the job's queued record is already put: it must not stay queued */
        if (after_redis)
            record_unrun(a->j, "failed", "overloaded", "not accepted: the Redis job queue refused it and this "
                                                       "instance's queue was full");
        a->cb(a->ud, JOBS_OVERLOADED, NULL);
        accept_ctx_free(a);
        return;
    }
    buf b = {0};
    if (queued_record(a->j, exec_workflow(a->ex)->version, 1, &b) != 0) {
        buf_free(&b);
        exec_unreserve(a->ex);
        a->cb(a->ud, JOBS_UNAVAILABLE, "out of memory");
        accept_ctx_free(a);
        return;
    }
    store_rec rec = rec_of(a->j, "queued", &b);
    store_put_durable(&rec, on_queued_durable, a);
    buf_free(&b);
}

/* Redis answered the XADD (on the accepting loop). Refused: the job goes to the in-process queue. */
static void on_redis_added(void *ud, int ok)
{
    accept_ctx *a = ud;
    if (ok) {
        a->cb(a->ud, JOBS_ACCEPTED, NULL);
        accept_ctx_free(a);
        return;
    }
    log_msg(LOG_WARN, "run %s: the Redis job queue refused it; it runs on this instance's queue", a->j->run_id);
    accept_local(a, 1);
}

void jobs_accept(job *j, jobs_accept_fn cb, void *ud)
{
    accept_ctx *a = calloc(1, sizeof *a);
    if (!a || atomic_load(&J.stopping) || !store_enabled()) {
        free(a);
        job_free(j);
        cb(ud, JOBS_UNAVAILABLE, "the server is not taking async runs");
        return;
    }
    *a = (accept_ctx){.j = j, .cb = cb, .ud = ud, .reg = registry_acquire()};
    a->ex = a->reg ? registry_find(a->reg, j->workflow) : NULL;
    if (!a->ex) {
        a->cb(a->ud, JOBS_UNAVAILABLE, "the workflow was unloaded");
        accept_ctx_free(a);
        return;
    }
    if (!J.redis || !jobs_redis_up()) {
        accept_local(a, 0);
        return;
    }
    /* the queued record first: the job may run (elsewhere) as soon as it is in the stream, and its
     * later records must supersede this one, never the other way round */
    buf b = {0};
    if (queued_record(j, exec_workflow(a->ex)->version, 0, &b) == 0) {
        store_rec rec = rec_of(j, "queued", &b);
        store_put(&rec);
    }
    buf_free(&b);
    jobs_redis_enqueue(j, on_redis_added, a);
}

int jobs_available(char *why, size_t whylen)
{
    if (!store_enabled())
        return util_err(why, whylen, "async runs need run records (store.enabled is false)"), 0;
    if (atomic_load(&J.stopping))
        return util_err(why, whylen, "the server is stopping"), 0;
    store_health h;
    store_health_get(&h);
    /* the journal cannot sync the queued record (Postgres down is fine: its spool file is synced) */
    if (h.check && !h.up && strcmp(h.check, "journal") == 0 && !(J.redis && jobs_redis_up()))
        return util_err(why, whylen, "the run journal cannot be written right now (%s)", h.why), 0;
    return 1;
}

/* ---- cancel ---------------------------------------------------------------------------------------- */

/* Takes run_id out of the recovery backlog; 1 when it was there (its cancelled record is put). */
static int backlog_cancel(const char *run_id)
{
    job *hit = NULL;
    pthread_mutex_lock(&J.mu);
    for (size_t i = 0; i < J.nbacklog && !hit; i++)
        if (strcasecmp(J.backlog[i]->run_id, run_id) == 0) {
            hit = J.backlog[i];
            memmove(&J.backlog[i], &J.backlog[i + 1], (J.nbacklog - i - 1) * sizeof *J.backlog);
            J.nbacklog--;
        }
    pthread_mutex_unlock(&J.mu);
    if (hit) {
        jobs_record_cancelled(hit);
        job_free(hit);
    }
    return hit != NULL;
}

/* Cancels r for its caller (not for a stop: the end is recorded). */
static void cancel_for_caller(run *r)
{
    jrun *jr = run_user_data(r);
    atomic_store(&jr->cancelled, 1);
    run_cancel(r);
}

void jobs_cancel_local(const char *run_id)
{
    run *r = engine_async_find(run_id);
    if (r) {
        cancel_for_caller(r);
        run_release(r);
        return;
    }
    if (!backlog_cancel(run_id))
        memo_add(run_id); /* not started yet here: it ends cancelled if it comes */
}

int jobs_cancel(const char *run_id)
{
    run *r = engine_async_find(run_id);
    if (r) {
        run_status st = run_get_status(r);
        if (st == RUN_QUEUED || st == RUN_RUNNING)
            cancel_for_caller(r);
        run_release(r);
        return st == RUN_QUEUED || st == RUN_RUNNING ? JOBS_CANCELLED : JOBS_FINISHED;
    }
    if (backlog_cancel(run_id))
        return JOBS_CANCELLED;
    memo_add(run_id);
    if (J.redis)
        jobs_redis_cancel(run_id);
    return JOBS_CANCELLED;
}

/* ---- recovery: jobs an earlier process left ---------------------------------------------------------- */

/* Dispatches what the backlog holds while there is room; what remains waits for the next tick. */
static void backlog_drain(void)
{
    for (;;) {
        pthread_mutex_lock(&J.mu);
        job *j = J.nbacklog ? J.backlog[0] : NULL;
        pthread_mutex_unlock(&J.mu);
        if (!j || atomic_load(&J.stopping))
            return;
        char why[200];
        int rc = jobs_dispatch(j, why, sizeof why);
        if (rc == JOBS_DISPATCH_FULL)
            return;
        pthread_mutex_lock(&J.mu);
        memmove(&J.backlog[0], &J.backlog[1], (J.nbacklog - 1) * sizeof *J.backlog);
        J.nbacklog--;
        pthread_mutex_unlock(&J.mu);
        if (rc == JOBS_DISPATCH_FAILED) {
            log_msg(LOG_WARN, "run %s: not recovered: %s", j->run_id, why);
            jobs_record_dead(j, why);
            job_free(j);
        }
    }
}

static void backlog_tick(io_timer *t)
{
    (void)t;
    backlog_drain();
    pthread_mutex_lock(&J.mu);
    int more = J.nbacklog > 0 && !atomic_load(&J.stopping);
    pthread_mutex_unlock(&J.mu);
    if (more)
        ioloop_timer_start(J.loops[0], &J.backlog_timer, 50);
}

static void backlog_arm(void *ud)
{
    (void)ud;
    backlog_tick(&J.backlog_timer);
}

/* One unfinished record with a job's payload goes to the backlog: every one in this instance's own
 * journal (only this instance writes it), in Postgres (shared) only those this instance accepted. */
static void recover_one(void *ud, const char *json, size_t len)
{
    int shared = *(int *)ud;
    json_t *rec = json_loadb(json, len, JSON_ALLOW_NUL, NULL);
    json_t *p = json_object_get(rec, "job");
    const char *owner = json_string_value(json_object_get(p, "owner"));
    char err[200];
    int mine = !shared || (owner && strcmp(owner, J.owner) == 0);
    job *j = p && mine ? job_from_json(p, err, sizeof err) : NULL;
    job **grown = j ? realloc(J.backlog, (J.nbacklog + 1) * sizeof *grown) : NULL;
    if (grown) {
        J.backlog = grown;
        J.backlog[J.nbacklog++] = j;
    } else {
        job_free(j);
    }
    json_decref(rec);
}

static void recover(void)
{
    store_health h;
    store_health_get(&h);
    int shared = h.check && strcmp(h.check, "postgres") == 0;
    pthread_mutex_lock(&J.mu);
    int rc = store_unfinished(recover_one, &shared);
    size_t n = J.nbacklog;
    pthread_mutex_unlock(&J.mu);
    if (rc != 0)
        log_msg(LOG_WARN, "async jobs: could not read the unfinished runs an earlier process left");
    if (n == 0)
        return;
    log_msg(LOG_INFO, "async jobs: %zu run(s) an earlier process accepted and did not finish are queued again", n);
    ioloop_post(J.loops[0], backlog_arm, NULL);
}

/* ---- start and stop ------------------------------------------------------------------------------------ */

static void owner_name(const kconfig *cfg)
{
    char host[256] = "localhost";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    snprintf(J.owner, sizeof J.owner, "%s:%d", host, cfg->port);
}

int jobs_start(const kconfig *cfg, ioloop *const *loops, int nloops, char *err, size_t errlen)
{
    J.loops = loops;
    J.nloops = nloops;
    J.redis = cfg->redis_url != NULL;
    atomic_store(&J.stopping, 0);
    owner_name(cfg);
    ioloop_timer_init(&J.backlog_timer, backlog_tick, NULL);
    if (jobs_callback_configure(cfg, err, errlen) != 0)
        return -1;
    if (J.redis && jobs_redis_start(cfg, err, errlen) != 0)
        return -1;
    static int sink_added;
    if (!sink_added && engine_sink_add(&jobs_sink) != 0)
        return util_err(err, errlen, "too many engine sinks");
    sink_added = 1;
    J.started = 1;
    if (store_enabled() && nloops > 0)
        recover();
    return 0;
}

static void backlog_stop(void *ud)
{
    (void)ud;
    ioloop_timer_stop(J.loops[0], &J.backlog_timer);
}

/* Cancels the jobs in flight (queued ones only, or all); their ends put no record. */
static void cancel_inflight(int queued_only)
{
    pthread_mutex_lock(&J.mu);
    int n = J.ninflight, k = 0;
    run **all = calloc(n ? (size_t)n : 1, sizeof *all);
    for (jrun *jr = J.inflight; all && jr; jr = jr->next)
        if (!queued_only || run_get_status(jr->r) == RUN_QUEUED) {
            run_retain(jr->r);
            all[k++] = jr->r;
        }
    pthread_mutex_unlock(&J.mu);
    for (int i = 0; i < k; i++) {
        run_cancel(all[i]);
        run_release(all[i]);
    }
    free(all);
}

/* Waits until no job is in flight or deadline_ms (util_now_ms clock) passes; how many are left. */
static int inflight_wait(double deadline_ms)
{
    pthread_mutex_lock(&J.mu);
    while (J.ninflight > 0 && util_now_ms() < deadline_ms) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 10 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&J.cv, &J.mu, &ts);
    }
    int left = J.ninflight;
    pthread_mutex_unlock(&J.mu);
    return left;
}

void jobs_stop(double deadline_ms)
{
    if (!J.started)
        return;
    atomic_store(&J.stopping, 1); /* no more accepts, dispatches or reads from the streams */
    if (J.nloops)
        ioloop_call(J.loops[0], backlog_stop, NULL);
    cancel_inflight(1);
    /* the Redis keeper goes on refreshing the jobs still running meanwhile: none is claimed by
     * another instance while it may still finish here */
    int left = inflight_wait(deadline_ms);
    if (left > 0) {
        log_msg(LOG_WARN, "stopping: %d async run(s) still running are cut; they run again at the next start", left);
        cancel_inflight(0);
        inflight_wait(util_now_ms() + 1000);
    }
    if (J.redis)
        jobs_redis_stop();
    jobs_callback_stop();
    pthread_mutex_lock(&J.mu);
    for (size_t i = 0; i < J.nbacklog; i++)
        job_free(J.backlog[i]);
    free(J.backlog);
    J.backlog = NULL;
    J.nbacklog = 0;
    pthread_mutex_unlock(&J.mu);
    J.started = 0;
}
