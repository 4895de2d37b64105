/* jobs_redis_conn: the blocking Redis connections of the queue's own threads (consumers, keeper,
 * subscriber), never a loop's. hiredis's blocking context would sit in recv(2) for a whole
 * XREADGROUP BLOCK and leaves a context unusable after a socket timeout; so commands are written
 * with the blocking calls but replies are waited for with poll(2) in 100 ms slices, reading only
 * what is there: a stop is seen within a slice, and a deadline closes the connection (a late reply
 * would be matched with the wrong command), after which the caller reconnects. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "jobs_redis_internal.h"
#include "kailash/log.h"
#include "kailash/util.h"

#define RQ_SLICE_MS 100
#define RQ_BACKOFF_MAX_MS 5000

int rq_sleep(int ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&RQ.mu);
    while (!atomic_load(&RQ.stop) && pthread_cond_timedwait(&RQ.cv, &RQ.mu, &ts) == 0)
        ; /* woken for something else (the keeper's ops): sleep on until ts */
    pthread_mutex_unlock(&RQ.mu);
    return atomic_load(&RQ.stop);
}

/* Waits for one reply: parsed from what is buffered, else read when the socket has more. */
static redisReply *rq_recv(redisContext *c, double deadline)
{
    for (;;) {
        void *r = NULL;
        if (redisGetReplyFromReader(c, &r) != REDIS_OK)
            return NULL;
        if (r)
            return r;
        double left = deadline - util_now_ms();
        if (left <= 0 || atomic_load(&RQ.stop))
            return NULL;
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        int rc = poll(&p, 1, left < RQ_SLICE_MS ? (int)left + 1 : RQ_SLICE_MS);
        if (rc < 0 && errno != EINTR)
            return NULL;
        if (rc > 0 && redisBufferRead(c) != REDIS_OK)
            return NULL;
    }
}

int rq_recv_for(redisContext *c, int ms, redisReply **out)
{
    *out = NULL;
    void *r = NULL;
    if (redisGetReplyFromReader(c, &r) != REDIS_OK)
        return -1;
    if (!r) {
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        int rc = poll(&p, 1, ms);
        if ((rc < 0 && errno != EINTR) || (rc > 0 && redisBufferRead(c) != REDIS_OK))
            return -1;
        if (rc > 0 && redisGetReplyFromReader(c, &r) != REDIS_OK)
            return -1;
    }
    *out = r;
    return 0;
}

int rq_pipe(redisContext *c, int n, int *argc, const char ***argv, size_t **lens, redisReply **out, int extra_ms)
{
    for (int i = 0; i < n; i++)
        out[i] = NULL;
    for (int i = 0; i < n; i++)
        if (redisAppendCommandArgv(c, argc[i], argv[i], lens ? lens[i] : NULL) != REDIS_OK)
            return -1;
    int done = 0;
    while (!done)
        if (redisBufferWrite(c, &done) != REDIS_OK)
            return -1;
    double deadline = util_now_ms() + RQ.timeout_ms + extra_ms;
    for (int i = 0; i < n; i++)
        if (!(out[i] = rq_recv(c, deadline))) {
            for (int k = 0; k < i; k++) {
                freeReplyObject(out[k]);
                out[k] = NULL;
            }
            return -1;
        }
    return 0;
}

redisReply *rq_call(redisContext *c, int extra_ms, int argc, const char **argv, const size_t *lens)
{
    redisReply *r;
    const char **av[1] = {argv};
    size_t *lv[1] = {(size_t *)lens};
    return rq_pipe(c, 1, &argc, av, lens ? lv : NULL, &r, extra_ms) == 0 ? r : NULL;
}

redisReply *rq_callv(redisContext *c, const char *const *argv)
{
    int n = 0;
    while (n < 16 && argv[n])
        n++;
    return rq_call(c, 0, n, (const char **)argv, NULL);
}

/* AUTH (with a password) and SELECT (db != 0); 0, or -1 with why. */
static int rq_handshake(redisContext *c, char *why, size_t whylen)
{
    char db[16];
    snprintf(db, sizeof db, "%d", RQ.t.db);
    const char *auth[] = {"AUTH", RQ.t.user[0] ? RQ.t.user : RQ.t.password, RQ.t.password, NULL};
    if (!RQ.t.user[0])
        auth[2] = NULL;
    const char *sel[] = {"SELECT", db, NULL};
    const char *const *steps[2] = {RQ.t.password[0] ? auth : NULL, RQ.t.db ? sel : NULL};
    for (int i = 0; i < 2; i++) {
        if (!steps[i])
            continue;
        redisReply *r = rq_callv(c, steps[i]);
        int ok = r && r->type != REDIS_REPLY_ERROR;
        if (!ok) /* the error text of AUTH names no secret; still, say only which step */
            util_err(why, whylen, "%s %s", steps[i][0], r ? "refused" : "got no answer");
        freeReplyObject(r);
        if (!ok)
            return -1;
    }
    return 0;
}

redisContext *rq_conn_open(char *why, size_t whylen)
{
    int ms = RQ.timeout_ms > 1000 ? RQ.timeout_ms : 1000; /* connecting (and resolving) may take longer */
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    redisContext *c =
        RQ.t.path[0] ? redisConnectUnixWithTimeout(RQ.t.path, tv) : redisConnectWithTimeout(RQ.t.host, RQ.t.port, tv);
    if (!c || c->err) {
        util_err(why, whylen, "%s", c ? c->errstr : "out of memory");
        redisFree(c);
        return NULL;
    }
    if (rq_handshake(c, why, whylen) != 0) {
        redisFree(c);
        return NULL;
    }
    return c;
}

static pthread_mutex_t report_mu = PTHREAD_MUTEX_INITIALIZER;
static int report_state = -1; /* -1 never said, 0 down, 1 up */

void rq_conn_report(int up, const char *why)
{
    pthread_mutex_lock(&report_mu);
    int was = report_state;
    report_state = up;
    pthread_mutex_unlock(&report_mu);
    if (was == up)
        return;
    if (up)
        log_msg(LOG_INFO, "async jobs: consuming the Redis job streams at %s", RQ.where);
    else
        log_msg(LOG_WARN, "async jobs: Redis at %s unreachable for the job consumers (%s); retrying with backoff",
                RQ.where, why ? why : "connection lost");
}

redisContext *rq_conn_backoff(int *backoff_ms)
{
    while (!atomic_load(&RQ.stop)) {
        char why[200] = "";
        redisContext *c = rq_conn_open(why, sizeof why);
        if (c) {
            *backoff_ms = 0;
            return c;
        }
        rq_conn_report(0, why);
        *backoff_ms = *backoff_ms ? *backoff_ms * 2 : 100;
        if (*backoff_ms > RQ_BACKOFF_MAX_MS)
            *backoff_ms = RQ_BACKOFF_MAX_MS;
        rq_sleep(*backoff_ms);
    }
    return NULL;
}

void rq_conn_reset_report(void)
{
    pthread_mutex_lock(&report_mu);
    report_state = -1;
    pthread_mutex_unlock(&report_mu);
}
