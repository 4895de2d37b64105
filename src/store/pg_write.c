/* pg_write: the writer thread, write-behind for run records.
 *
 * enqueue links an item onto a mutex+condvar queue and returns (no I/O). The thread takes up to
 * batch_max items and writes them as one upsert (pg_write_batch). While Postgres is down, or a
 * write fails, the batch goes to the spool file instead (fdatasync'd: the records are durable, so
 * store_written lets them go either way), the connection is dropped, and reconnecting is tried with
 * a doubling backoff (PG_RETRY_MIN_MS..PG_RETRY_MAX_MS). Once connected again the spool is replayed
 * before anything else is written: a newer record of a run must land after an older one spooled, and
 * nothing goes directly to the table while the spool holds records. A connected idle writer checks
 * the server every few seconds, so /ready notices an outage without waiting for the next run.
 *
 * If even the spool cannot be written (a full or read-only disk), the items go back to the head of
 * the queue and wait for the next try; they stay pending in store.c, which bounds them. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kailash/log.h"
#include "pg_internal.h"

#define PG_PING_MS 5000.0 /* an idle connected writer checks the server this often */
/* Group commit: a batch starts at most this often unless batch_max records wait, so a busy daemon
 * sends one statement (and Postgres makes one commit) per few hundred records; write-behind, so
 * this delays only when a record is stored, never an answer. */
#define PG_GATHER_MS 5.0

static pthread_mutex_t w_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t w_cv;
static store_item *w_head, *w_tail; /* under w_mu */
static int w_stop;                  /* under w_mu */
static size_t w_n;                  /* under w_mu: items queued */
static int w_idle;                  /* under w_mu: the writer waits with nothing queued */
static int w_urgent;                /* under w_mu: a queued record is waited for (no gathering) */
static double w_next_at;            /* under w_mu: no batch before this unless batch_max wait */
static double w_give_up;            /* under w_mu: with w_stop, when leftovers are abandoned */
static pthread_t w_thread;
static int w_running;

/* The thread's own (no lock). */
static PGconn *w_conn;
static double w_retry_at, w_backoff, w_hold_until, w_ping_at;

void pg_writer_enqueue(store_item *it)
{
    it->next = NULL;
    pthread_mutex_lock(&w_mu);
    if (w_tail)
        w_tail->next = it;
    else
        w_head = it;
    w_tail = it;
    /* a writer that is gathering or writing takes it with its next batch: no wake-up per record */
    w_n++;
    int wake = w_idle || w_n >= (size_t)pg_g.batch_max || (it->durable && !w_urgent);
    if (it->durable) /* an async accept waits for it: the batch goes as soon as the writer is free */
        w_urgent = 1;
    if (wake)
        pthread_cond_signal(&w_cv);
    pthread_mutex_unlock(&w_mu);
}

/* Drops the connection (if any) and schedules the next try. */
static void w_down(const char *why)
{
    if (w_conn)
        PQfinish(w_conn);
    w_conn = NULL;
    w_backoff = w_backoff < PG_RETRY_MIN_MS ? PG_RETRY_MIN_MS : w_backoff * 2;
    if (w_backoff > PG_RETRY_MAX_MS)
        w_backoff = PG_RETRY_MAX_MS;
    w_retry_at = util_now_ms() + w_backoff;
    pg_health_set(0, why);
}

/* Connects and migrates; then the spool, if any, is replayed. 0 when connected and the spool empty. */
static int w_connect(void)
{
    char e[300];
    if (!w_conn) {
        int fatal;
        PGconn *c = pg_connect(util_now_ms() + PG_CONNECT_TIMEOUT_MS, NULL, e, sizeof e);
        if (!c) {
            w_down(e);
            return -1;
        }
        w_conn = c;
        if (pg_migrate(c, &fatal, e, sizeof e) != 0) {
            if (fatal) /* logged at each try: an operator must fix the schema */
                log_msg(LOG_ERROR, "store: postgres %s: %s", pg_g.describe, e);
            w_down(e);
            return -1;
        }
    }
    if (pg_spool_size() > 0) {
        if (pg_spool_replay(w_conn, e, sizeof e) != 0) {
            w_down(e);
            return -1;
        }
    }
    w_backoff = 0;
    w_ping_at = util_now_ms() + PG_PING_MS;
    pg_health_set(1, NULL);
    return 0;
}

static void w_ping(void)
{
    char e[300];
    PGresult *r = pg_exec(w_conn, "SELECT 1", 0, NULL, util_now_ms() + PG_CONNECT_TIMEOUT_MS, NULL, e, sizeof e);
    if (r && !pg_ok(r))
        pg_result_err(r, e, sizeof e);
    if (!r || !pg_ok(r))
        w_down(e);
    else
        w_ping_at = util_now_ms() + PG_PING_MS;
    PQclear(r);
}

static int w_by_seq(const void *a, const void *b)
{
    const store_item *x = *(store_item *const *)a, *y = *(store_item *const *)b;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Puts items back at the head of the queue (the spool failed too); under w_mu. */
static void w_requeue_locked(store_item **items, size_t n)
{
    for (size_t i = n; i-- > 0;) {
        items[i]->next = w_head;
        w_head = items[i];
        if (!w_tail)
            w_tail = items[i];
    }
    w_n += n;
}

/* Makes one batch durable: Postgres when connected (or reachable now), else the spool. */
static void w_write(store_item **items, pg_rec *recs, size_t n, int stopping)
{
    char e[300];
    qsort(items, n, sizeof *items, w_by_seq); /* oldest first: of one run's records the newest wins */
    for (size_t i = 0; i < n; i++)
        recs[i] = (pg_rec){items[i]->run_id, items[i]->json, items[i]->len};
    if ((!w_conn && !stopping && util_now_ms() >= w_retry_at) || (w_conn && pg_spool_size() > 0))
        w_connect(); /* connects if need be, and replays the spool first */
    if (w_conn && pg_spool_size() == 0) {
        if (pg_write_batch(w_conn, recs, n, e, sizeof e) == 0) {
            w_ping_at = util_now_ms() + PG_PING_MS;
            store_written(items, n);
            return;
        }
        w_down(e);
    }
    if (pg_spool_append(recs, n, e, sizeof e) == 0) {
        store_written(items, n);
        return;
    }
    char why[200];
    util_err(why, sizeof why, "postgres unreachable and %s", e);
    pg_health_set(0, why);
    pthread_mutex_lock(&w_mu);
    w_requeue_locked(items, n);
    pthread_mutex_unlock(&w_mu);
    w_hold_until = util_now_ms() + PG_RETRY_MAX_MS;
}

static double w_min(double a, double b)
{
    return a < b ? a : b;
}

static void *w_main(void *arg)
{
    (void)arg;
    size_t cap = (size_t)pg_g.batch_max;
    store_item **items = malloc(cap * sizeof *items);
    pg_rec *recs = malloc(cap * sizeof *recs);
    if (!items || !recs) { /* the queue is left to store_stop, which reports what is lost */
        log_msg(LOG_ERROR, "store: postgres writer: out of memory");
        free(items);
        free(recs);
        return NULL;
    }
    if (w_conn && pg_spool_size() > 0) /* a spool left by an earlier process */
        w_connect();
    pthread_mutex_lock(&w_mu);
    for (;;) {
        double now = util_now_ms();
        if (w_stop && (!w_head || now >= w_give_up))
            break;
        int work = w_head && now >= w_hold_until && (w_stop || w_urgent || now >= w_next_at || w_n >= cap);
        int retry = !w_stop && !w_conn && now >= w_retry_at;
        int ping = !w_stop && w_conn && now >= w_ping_at;
        if (!work && !retry && !ping) {
            double wake = w_conn ? w_ping_at : w_retry_at;
            if (w_head)
                wake = w_min(wake, now >= w_hold_until ? w_next_at : w_hold_until);
            if (w_stop)
                wake = w_min(wake, w_give_up);
            double wait = wake - now;
            if (wait > 60000)
                wait = 60000;
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            long long ns = ts.tv_nsec + (long long)(wait * 1e6);
            ts.tv_sec += (time_t)(ns / 1000000000LL);
            ts.tv_nsec = (long)(ns % 1000000000LL);
            w_idle = !w_head;
            pthread_cond_timedwait(&w_cv, &w_mu, &ts);
            w_idle = 0;
            continue;
        }
        size_t n = 0;
        while (work && w_head && n < cap) {
            items[n++] = w_head;
            w_head = w_head->next;
        }
        if (!w_head)
            w_tail = NULL;
        w_n -= n;
        if (n) {
            w_next_at = now + PG_GATHER_MS;
            w_urgent = 0;
        }
        int stopping = w_stop;
        pthread_mutex_unlock(&w_mu);
        if (n)
            w_write(items, recs, n, stopping);
        else if (retry)
            w_connect();
        else if (ping)
            w_ping();
        pthread_mutex_lock(&w_mu);
    }
    w_head = w_tail = NULL; /* leftovers stay pending in store.c, which reports them */
    w_n = 0;
    pthread_mutex_unlock(&w_mu);
    if (w_conn)
        PQfinish(w_conn);
    w_conn = NULL;
    free(items);
    free(recs);
    return NULL;
}

int pg_writer_start(PGconn *c, char *err, size_t errlen)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w_cv, &ca);
    pthread_condattr_destroy(&ca);
    w_head = w_tail = NULL;
    w_n = 0;
    w_next_at = 0;
    w_stop = 0;
    w_conn = c;
    w_backoff = 0;
    double now = util_now_ms();
    w_hold_until = 0;
    w_ping_at = now + PG_PING_MS;
    w_retry_at = c ? now : now + PG_RETRY_MIN_MS; /* down at start: start just tried */
    if (!c)
        w_backoff = PG_RETRY_MIN_MS;
    if (pthread_create(&w_thread, NULL, w_main, NULL) != 0) {
        if (c)
            PQfinish(c);
        w_conn = NULL;
        pthread_cond_destroy(&w_cv);
        return util_err(err, errlen, "store: cannot start the postgres writer thread");
    }
    w_running = 1;
    return 0;
}

void pg_writer_stop(double deadline_ms)
{
    if (!w_running)
        return;
    double now = util_now_ms(), margin = (deadline_ms - now) / 4;
    /* every wait on the server ends a little before the deadline, so what is left can be spooled */
    atomic_store(&pg_g.cut_ms, deadline_ms - (margin > 100 ? 100 : margin > 0 ? margin : 0));
    pthread_mutex_lock(&w_mu);
    w_stop = 1;
    w_give_up = deadline_ms;
    pthread_cond_signal(&w_cv);
    pthread_mutex_unlock(&w_mu);
    pthread_join(w_thread, NULL);
    pthread_cond_destroy(&w_cv);
    w_running = 0;
}
