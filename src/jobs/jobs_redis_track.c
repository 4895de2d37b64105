/* jobs_redis_track: what this process holds of the Redis queue, each behind its own lock (any
 * thread: consumers, the keeper, loops answering acks). Plain arrays with linear scans: they hold
 * at most the jobs this instance has in flight (its executors' concurrency and queues), and the
 * scans run once per entry or once per refresh, never per request. */
#include <stdlib.h>
#include <string.h>

#include "jobs_redis_internal.h"
#include "kailash/log.h"
#include "kailash/util.h"

typedef struct rq_entry {
    char stream[RQ_STREAM_MAX];
    char id[48];
} rq_entry;

static struct {
    pthread_mutex_t mu;
    rq_entry *inflight;
    size_t ninflight, capinflight;
    job **held;
    size_t nheld;
    char **groups;
    size_t ngroups;
    char **reading; /* one per read in progress (a stream's name: a place for one entry) */
    size_t nreading;
    rq_op *ops;
} T = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* ---- entries in flight ---- */

static size_t inflight_find_locked(const char *stream, const char *id)
{
    for (size_t i = 0; i < T.ninflight; i++)
        if (strcmp(T.inflight[i].id, id) == 0 && strcmp(T.inflight[i].stream, stream) == 0)
            return i;
    return (size_t)-1;
}

void rq_inflight_add(const char *stream, const char *id)
{
    pthread_mutex_lock(&T.mu);
    if (inflight_find_locked(stream, id) == (size_t)-1) {
        if (T.ninflight == T.capinflight) {
            size_t cap = T.capinflight ? T.capinflight * 2 : 32;
            rq_entry *grown = realloc(T.inflight, cap * sizeof *grown);
            if (grown) {
                T.inflight = grown;
                T.capinflight = cap;
            }
        }
        if (T.ninflight < T.capinflight) { /* out of memory: not refreshed, claimed after claim_idle_ms */
            util_copy(T.inflight[T.ninflight].stream, RQ_STREAM_MAX, stream);
            util_copy(T.inflight[T.ninflight].id, sizeof T.inflight[0].id, id);
            T.ninflight++;
        }
    }
    pthread_mutex_unlock(&T.mu);
}

void rq_inflight_remove(const char *stream, const char *id)
{
    pthread_mutex_lock(&T.mu);
    size_t i = inflight_find_locked(stream, id);
    if (i != (size_t)-1)
        T.inflight[i] = T.inflight[--T.ninflight];
    pthread_mutex_unlock(&T.mu);
}

int rq_inflight_has(const char *stream, const char *id)
{
    pthread_mutex_lock(&T.mu);
    int has = inflight_find_locked(stream, id) != (size_t)-1;
    pthread_mutex_unlock(&T.mu);
    return has;
}

int rq_read_reserve(const char *stream, int slots)
{
    int n = 0, ok = 0;
    pthread_mutex_lock(&T.mu);
    for (size_t i = 0; i < T.ninflight; i++)
        n += strcmp(T.inflight[i].stream, stream) == 0;
    for (size_t i = 0; i < T.nreading; i++)
        n += strcmp(T.reading[i], stream) == 0;
    char **grown = n < slots ? realloc(T.reading, (T.nreading + 1) * sizeof *grown) : NULL;
    if (grown) {
        T.reading = grown;
        if ((T.reading[T.nreading] = strdup(stream))) {
            T.nreading++;
            ok = 1;
        }
    }
    pthread_mutex_unlock(&T.mu);
    return ok;
}

void rq_read_release(const char *stream)
{
    pthread_mutex_lock(&T.mu);
    for (size_t i = 0; i < T.nreading; i++)
        if (strcmp(T.reading[i], stream) == 0) {
            free(T.reading[i]);
            T.reading[i] = T.reading[--T.nreading];
            break;
        }
    pthread_mutex_unlock(&T.mu);
}

void rq_strv_free(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

/* The strings of every in-flight entry for which pick says yes (deduplicated when unique). */
static char **inflight_collect(const char *stream, int unique, size_t *n)
{
    *n = 0;
    pthread_mutex_lock(&T.mu);
    char **v = calloc(T.ninflight ? T.ninflight : 1, sizeof *v);
    for (size_t i = 0; v && i < T.ninflight; i++) {
        const char *s = stream ? T.inflight[i].id : T.inflight[i].stream;
        if (stream && strcmp(T.inflight[i].stream, stream) != 0)
            continue;
        int seen = 0;
        for (size_t k = 0; unique && k < *n && !seen; k++)
            seen = strcmp(v[k], s) == 0;
        if (!seen && (v[*n] = strdup(s)))
            (*n)++;
    }
    pthread_mutex_unlock(&T.mu);
    return v;
}

char **rq_inflight_ids(const char *stream, size_t *n)
{
    return inflight_collect(stream, 0, n);
}

char **rq_inflight_streams(size_t *n)
{
    return inflight_collect(NULL, 1, n);
}

/* ---- held jobs ---- */

void rq_held_add(job *j)
{
    pthread_mutex_lock(&T.mu);
    job **grown = realloc(T.held, (T.nheld + 1) * sizeof *grown);
    if (grown) {
        T.held = grown;
        T.held[T.nheld++] = j;
    }
    pthread_mutex_unlock(&T.mu);
    if (!grown) { /* left pending: claimed again after claim_idle_ms */
        char stream[RQ_STREAM_MAX];
        rq_stream_name(stream, j->workflow);
        rq_inflight_remove(stream, j->entry_id);
        job_free(j);
    }
}

job **rq_held_take(size_t *n)
{
    pthread_mutex_lock(&T.mu);
    job **v = T.held;
    *n = T.nheld;
    T.held = NULL;
    T.nheld = 0;
    pthread_mutex_unlock(&T.mu);
    return v;
}

int rq_held_has(const char *wf_name)
{
    int has = 0;
    pthread_mutex_lock(&T.mu);
    for (size_t i = 0; i < T.nheld && !has; i++)
        has = strcmp(T.held[i]->workflow, wf_name) == 0;
    pthread_mutex_unlock(&T.mu);
    return has;
}

/* ---- streams whose group exists ---- */

int rq_group_known(const char *stream)
{
    int known = 0;
    pthread_mutex_lock(&T.mu);
    for (size_t i = 0; i < T.ngroups && !known; i++)
        known = strcmp(T.groups[i], stream) == 0;
    pthread_mutex_unlock(&T.mu);
    return known;
}

void rq_group_set(const char *stream, int known)
{
    pthread_mutex_lock(&T.mu);
    size_t i = 0;
    while (i < T.ngroups && strcmp(T.groups[i], stream) != 0)
        i++;
    if (!known && i < T.ngroups) {
        free(T.groups[i]);
        T.groups[i] = T.groups[--T.ngroups];
    } else if (known && i == T.ngroups) {
        char **grown = realloc(T.groups, (T.ngroups + 1) * sizeof *grown);
        if (grown) {
            T.groups = grown;
            if ((T.groups[T.ngroups] = strdup(stream)))
                T.ngroups++;
        }
    }
    pthread_mutex_unlock(&T.mu);
}

/* ---- deferred ops ---- */

void rq_op_defer(rq_op *op)
{
    if (atomic_load(&RQ.stop)) { /* no keeper any more: the entry stays pending (it may run again) */
        log_msg(LOG_WARN, "async jobs: %s of %s could not be sent to Redis",
                op->kind == RQ_OP_ACK ? "the ack" : "the cancel", op->id);
        free(op);
        return;
    }
    op->next = NULL;
    pthread_mutex_lock(&T.mu);
    rq_op **tail = &T.ops;
    while (*tail)
        tail = &(*tail)->next;
    *tail = op;
    pthread_mutex_unlock(&T.mu);
    pthread_mutex_lock(&RQ.mu);
    pthread_cond_broadcast(&RQ.cv); /* the keeper sends it now */
    pthread_mutex_unlock(&RQ.mu);
}

rq_op *rq_op_take_all(void)
{
    pthread_mutex_lock(&T.mu);
    rq_op *all = T.ops;
    T.ops = NULL;
    pthread_mutex_unlock(&T.mu);
    return all;
}

void rq_track_clear(void)
{
    size_t n;
    job **held = rq_held_take(&n);
    for (size_t i = 0; i < n; i++)
        job_free(held[i]);
    free(held);
    int lost = 0;
    for (rq_op *op = rq_op_take_all(), *next; op; op = next, lost++) {
        next = op->next;
        free(op);
    }
    if (lost)
        log_msg(LOG_WARN, "async jobs: %d ack(s) or cancel(s) not sent to Redis before the stop", lost);
    pthread_mutex_lock(&T.mu);
    free(T.inflight);
    T.inflight = NULL;
    T.ninflight = T.capinflight = 0;
    rq_strv_free(T.groups, T.ngroups);
    T.groups = NULL;
    T.ngroups = 0;
    rq_strv_free(T.reading, T.nreading);
    T.reading = NULL;
    T.nreading = 0;
    pthread_mutex_unlock(&T.mu);
}
