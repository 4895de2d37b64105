/* sql_pool: per loop and target, a few non-blocking libpq connections and a FIFO of statements
 * (sql_pool.h; DESIGN.md "Waiting inside the loop").
 *
 * Everything here runs on the loop's thread and nothing waits: a connection is a small state machine
 * driven by one io_watch on PQsocket,
 *   resolving   a host name at the project's resolver (its thread; the answer posted here),
 *   connecting  PQconnectStartParams with the numeric hostaddr, then PQconnectPoll at each event
 *               (the watch restarted after each step: libpq may switch sockets while it connects),
 *   idle        watched for input: a server that closes it (restart, idle timeout) is seen at once
 *               and the connection dropped,
 *   busy        PQsendQueryParams, PQflush while the socket takes it, PQconsumeInput/PQisBusy/
 *               PQgetResult as the answer comes,
 * with one timer bounding resolving plus connecting. A pool opens connections as statements wait,
 * up to SQL_POOL_MAX; the FIFO's head goes to the first connection that is idle.
 *
 * Failures: a connection that cannot be made fails every waiting statement when it was the pool's
 * last (the server is down: say so now, not at each statement's timeout), else the others serve
 * them. A connection lost mid-statement fails that statement: it may have run, so it is not sent
 * again. One whose loss shows before the statement went out (an idle connection's EOF not yet
 * read) is dropped and the statement waits for another. Cancelling a running statement closes its
 * connection: libpq's PQcancel opens a second connection and blocks until the server answers, which
 * the loop cannot afford; the server ends the statement at its statement_timeout (sql_target.c).
 *
 * Failures reach the caller through a zero-delay timer of the statement, never from inside
 * sql_pool_query; results from the socket's callback. The loop's stop hook fails what is left. */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "kailash/ioloop.h"
#include "kailash/upstream.h"
#include "kailash/util.h"
#include "sql_internal.h"

enum { SC_RESOLVING, SC_CONNECTING, SC_IDLE, SC_BUSY };

typedef struct sql_pool sql_pool;
typedef struct sql_conn sql_conn;

/* A resolver wait outlives its connection when the answer is already posted: it frees itself. */
typedef struct sql_rwait {
    up_resolve_wait w; /* first: the resolver's callback gets &w */
    sql_conn *c;       /* NULL once the connection went */
} sql_rwait;

struct sql_conn {
    sql_pool *pool;
    sql_conn *next;
    int state;
    PGconn *pg;
    io_watch w;
    int watching;
    io_timer connect_t; /* resolving + connecting */
    sql_rwait *rw;
    sql_query *q;   /* busy: the statement */
    int flushing;   /* busy: PQflush said more is to go */
};

struct sql_query {
    sql_pool *pool;
    sql_conn *conn; /* running on it, or NULL */
    sql_query *next, *prev; /* in the FIFO */
    int queued;
    int requeued; /* sent back to the FIFO once already (a stale connection) */
    const char *sql;
    int n;
    const char *const *values;
    sql_query_fn fn;
    void *ud;
    PGresult *last;  /* busy: the last result so far */
    io_timer later;  /* delivers fail */
    sql_failure fail;
};

struct sql_pool {
    sql_pool *next;
    ioloop *io;
    sql_target *t; /* the pool's own copy */
    sql_conn *conns;
    int nconns, nopening;
    sql_query *head, *tail;
    int nqueued;
};

typedef struct sql_loop {
    ioloop *io;
    sql_pool *pools;
    io_hook stop;
} sql_loop;

static int g_key = -1;
static pthread_once_t g_key_once = PTHREAD_ONCE_INIT;

static void sql_pool_pump(sql_pool *p);
static void sql_conn_drop(sql_conn *c);

/* ======================================================================== statements */

static void sql_fifo_push(sql_pool *p, sql_query *q, int front)
{
    q->queued = 1;
    q->prev = q->next = NULL;
    if (!p->head) {
        p->head = p->tail = q;
    } else if (front) {
        q->next = p->head;
        p->head->prev = q;
        p->head = q;
    } else {
        q->prev = p->tail;
        p->tail->next = q;
        p->tail = q;
    }
    p->nqueued++;
}

static void sql_fifo_unlink(sql_pool *p, sql_query *q)
{
    if (!q->queued)
        return;
    if (q->prev)
        q->prev->next = q->next;
    else
        p->head = q->next;
    if (q->next)
        q->next->prev = q->prev;
    else
        p->tail = q->prev;
    q->queued = 0;
    q->prev = q->next = NULL;
    p->nqueued--;
}

static void sql_query_free(sql_query *q)
{
    ioloop_timer_stop(q->pool->io, &q->later);
    PQclear(q->last);
    free(q);
}

/* q's failure, due now. Touches neither the pool nor the loop: at the loop's end this fires after
 * both went. */
static void sql_query_later(io_timer *t)
{
    sql_query *q = t->ud;
    sql_query_fn fn = q->fn;
    void *ud = q->ud;
    sql_failure f = q->fail;
    PQclear(q->last);
    free(q);
    fn(ud, NULL, &f);
}

/* Ends q with a failure, delivered from a zero-delay timer (q is out of the FIFO and off its
 * connection already, or taken off here). */
static void sql_query_fail(sql_query *q, int kind, const char *sqlstate, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void sql_query_fail(sql_query *q, int kind, const char *sqlstate, const char *fmt, ...)
{
    sql_fifo_unlink(q->pool, q);
    q->conn = NULL;
    q->fail.kind = kind;
    snprintf(q->fail.sqlstate, sizeof q->fail.sqlstate, "%s", sqlstate ? sqlstate : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(q->fail.message, sizeof q->fail.message, fmt, ap);
    va_end(ap);
    if (ioloop_timer_start(q->pool->io, &q->later, 0) != 0) { /* out of memory: now, then */
        sql_query_later(&q->later);
    }
}

/* Every waiting statement fails with what a connection attempt said. */
static void sql_pool_fail_waiting(sql_pool *p, const char *why)
{
    while (p->head)
        sql_query_fail(p->head, SQL_FAIL_DOWN, NULL, "PostgreSQL at %s is unavailable: %s", p->t->describe, why);
}

/* ======================================================================== connections */

static void sql_conn_watch(sql_conn *c, uint32_t events)
{
    ioloop *io = c->pool->io;
    int fd = PQsocket(c->pg);
    if (c->watching && (c->w.fd != fd || c->state == SC_CONNECTING)) {
        ioloop_watch_stop(io, &c->w);
        c->watching = 0;
    }
    if (fd < 0)
        return;
    if (!c->watching) {
        ioloop_watch_init(&c->w, fd, c->w.fn, c);
        c->watching = ioloop_watch_start(io, &c->w, events) == 0;
    } else if (c->w.events != events) {
        ioloop_watch_modify(io, &c->w, events);
    }
}

/* The connection could not be made: why is libpq's or ours, scrubbed here. */
static void sql_conn_failed(sql_conn *c, const char *why)
{
    sql_pool *p = c->pool;
    char msg[200];
    sql_target_scrub(p->t, why, msg, sizeof msg);
    sql_conn_drop(c);
    if (p->nconns == 0)
        sql_pool_fail_waiting(p, *msg ? msg : "connection failed");
}

/* q goes out on idle c; 0, or -1 when c turned out broken before anything was sent (c dropped). */
static int sql_conn_send(sql_conn *c, sql_query *q)
{
    if (!PQconsumeInput(c->pg) || PQstatus(c->pg) != CONNECTION_OK ||
        !PQsendQueryParams(c->pg, q->sql, q->n, NULL, q->values, NULL, NULL, 0)) {
        sql_conn_drop(c);
        return -1;
    }
    c->state = SC_BUSY;
    c->q = q;
    q->conn = c;
    int fl = PQflush(c->pg);
    c->flushing = fl == 1;
    sql_conn_watch(c, EPOLLIN | (c->flushing ? EPOLLOUT : 0));
    return fl < 0 ? -1 : 0; /* -1: the busy path below finds the connection bad */
}

/* Idle c takes the FIFO's head, if any. */
static void sql_conn_take(sql_conn *c)
{
    sql_pool *p = c->pool;
    sql_query *q = p->head;
    if (!q)
        return;
    sql_fifo_unlink(p, q);
    if (sql_conn_send(c, q) == 0)
        return;
    if (q->conn) { /* sent, then the flush failed: the statement may be on its way */
        c->q = NULL;
        char msg[200];
        sql_target_scrub(p->t, PQerrorMessage(c->pg), msg, sizeof msg);
        sql_conn_drop(c);
        sql_query_fail(q, SQL_FAIL_DOWN, NULL, "the connection to PostgreSQL at %s was lost: %s", p->t->describe, msg);
    } else if (!q->requeued) { /* a stale connection (the server closed it): another one */
        q->requeued = 1;
        sql_fifo_push(p, q, 1);
    } else {
        sql_query_fail(q, SQL_FAIL_DOWN, NULL, "PostgreSQL at %s is unavailable: the connection closed", p->t->describe);
    }
}

static void sql_conn_ready(sql_conn *c)
{
    c->state = SC_IDLE;
    c->flushing = 0;
    sql_conn_watch(c, EPOLLIN);
}

/* The statement's answer is complete (or its connection broke): hand it over. */
static void sql_conn_deliver(sql_conn *c)
{
    sql_pool *p = c->pool;
    sql_query *q = c->q;
    PGresult *r = q->last;
    q->last = NULL;
    c->q = NULL;
    q->conn = NULL;
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    int broken = PQstatus(c->pg) != CONNECTION_OK;
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
        broken ? sql_conn_drop(c) : sql_conn_ready(c);
        sql_query_fn fn = q->fn;
        void *ud = q->ud;
        sql_query_free(q);
        fn(ud, r, NULL);
    } else {
        const char *st_field = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
        char state[8] = "";
        snprintf(state, sizeof state, "%s", st_field ? st_field : ""); /* r goes before state is used */
        const char *prim = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
        char msg[200];
        sql_target_scrub(p->t, prim ? prim : r ? PQresultErrorMessage(r) : PQerrorMessage(c->pg), msg, sizeof msg);
        int copy = st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH;
        PQclear(r);
        if (broken || copy || !*state) {
            sql_conn_drop(c);
            sql_query_fail(q, SQL_FAIL_DOWN, NULL, "%s %s: %s", copy ? "COPY is not supported by" : "the connection to",
                           copy ? "the SQL node" : p->t->describe, copy ? "use INSERT or SELECT" : *msg ? msg : "lost");
        } else {
            sql_conn_ready(c);
            sql_query_fail(q, SQL_FAIL_QUERY, state, "%s", msg);
        }
    }
    sql_pool_pump(p);
}

/* Busy c's socket: write what is left, read what came, collect results. */
static void sql_conn_busy_io(sql_conn *c, uint32_t events)
{
    if (c->flushing && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
        int fl = PQflush(c->pg);
        c->flushing = fl == 1;
        sql_conn_watch(c, EPOLLIN | (c->flushing ? EPOLLOUT : 0));
    }
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP)) {
        if (!PQconsumeInput(c->pg)) {
            sql_conn_deliver(c);
            return;
        }
    }
    while (!PQisBusy(c->pg)) {
        PGresult *r = PQgetResult(c->pg);
        if (!r) {
            sql_conn_deliver(c);
            return;
        }
        ExecStatusType st = PQresultStatus(r);
        PQclear(c->q->last);
        c->q->last = r;
        if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
            sql_conn_deliver(c);
            return;
        }
    }
}

static void sql_conn_connect_step(sql_conn *c)
{
    PostgresPollingStatusType st = PQconnectPoll(c->pg);
    if (st == PGRES_POLLING_FAILED) {
        sql_conn_failed(c, PQerrorMessage(c->pg));
    } else if (st == PGRES_POLLING_OK) {
        ioloop_timer_stop(c->pool->io, &c->connect_t);
        c->pool->nopening--;
        c->state = SC_IDLE;
        if (PQsetnonblocking(c->pg, 1) != 0) {
            sql_conn_failed(c, "the connection cannot be made non-blocking");
            return;
        }
        sql_conn_ready(c);
        sql_pool_pump(c->pool);
    } else {
        sql_conn_watch(c, st == PGRES_POLLING_WRITING ? EPOLLOUT : EPOLLIN);
    }
}

static void sql_conn_on_io(io_watch *w, uint32_t events)
{
    sql_conn *c = w->ud;
    switch (c->state) {
    case SC_CONNECTING:
        sql_conn_connect_step(c);
        break;
    case SC_BUSY:
        sql_conn_busy_io(c, events);
        break;
    case SC_IDLE: /* nothing is expected: the server closed it, or a notice */
        if (!PQconsumeInput(c->pg) || PQstatus(c->pg) != CONNECTION_OK)
            sql_conn_drop(c);
        break;
    default:
        break;
    }
}

static void sql_notice_quiet(void *arg, const char *msg)
{
    (void)arg, (void)msg; /* libpq would print on stderr, the daemon's JSON log */
}

/* Starts libpq's connect, to ip when given (a resolved name). */
static void sql_conn_start(sql_conn *c, const char *ip)
{
    const sql_target *t = c->pool->t;
    /* dbname first: the string's values are expanded there, and what follows overrides them */
    const char *kw[] = {"dbname", "options", "client_encoding", "fallback_application_name", "hostaddr", NULL};
    const char *val[] = {t->url, t->options, "UTF8", "kailashd", ip, NULL};
    c->state = SC_CONNECTING;
    c->pg = PQconnectStartParams(kw, val, 1);
    if (!c->pg) {
        sql_conn_failed(c, "out of memory");
        return;
    }
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        sql_conn_failed(c, PQerrorMessage(c->pg));
        return;
    }
    PQsetNoticeProcessor(c->pg, sql_notice_quiet, NULL);
    sql_conn_watch(c, EPOLLOUT);
}

/* Connects c to the first address a name resolved to. */
static void sql_conn_connect_addrs(sql_conn *c, const up_addrs *a)
{
    if (a->n == 0) {
        char why[320];
        snprintf(why, sizeof why, "the host name %s does not resolve", c->pool->t->host);
        sql_conn_failed(c, why);
        return;
    }
    char ip[INET6_ADDRSTRLEN] = "";
    const struct sockaddr_storage *sa = &a->addr[0];
    if (sa->ss_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, ip, sizeof ip);
    else
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, ip, sizeof ip);
    sql_conn_start(c, ip);
}

static void sql_conn_on_resolved(up_resolve_wait *w, const up_addrs *a)
{
    sql_rwait *rw = (sql_rwait *)w;
    sql_conn *c = rw->c;
    free(rw);
    if (!c)
        return;
    c->rw = NULL;
    sql_conn_connect_addrs(c, a);
}

static void sql_conn_on_connect_timeout(io_timer *tm)
{
    sql_conn *c = tm->ud;
    char why[64];
    snprintf(why, sizeof why, "no connection within %d ms", c->pool->t->connect_timeout_ms);
    sql_conn_failed(c, why);
}

/* A new connection for p (it serves the FIFO once up). */
static void sql_conn_open(sql_pool *p)
{
    sql_conn *c = calloc(1, sizeof *c);
    if (!c) {
        if (p->nconns == 0)
            sql_pool_fail_waiting(p, "out of memory");
        return;
    }
    c->pool = p;
    c->w.fn = sql_conn_on_io;
    c->next = p->conns;
    p->conns = c;
    p->nconns++;
    p->nopening++;
    ioloop_timer_init(&c->connect_t, sql_conn_on_connect_timeout, c);
    ioloop_timer_start(p->io, &c->connect_t, p->t->connect_timeout_ms);
    if (!p->t->resolve) {
        sql_conn_start(c, NULL);
        return;
    }
    c->state = SC_RESOLVING;
    if (!(c->rw = calloc(1, sizeof *c->rw))) {
        sql_conn_failed(c, "out of memory");
        return;
    }
    c->rw->c = c;
    up_addrs a;
    int rc = upstream_resolve(p->io, p->t->host, p->t->port, &c->rw->w, sql_conn_on_resolved, &a);
    if (rc == 1 || rc < 0) {
        free(c->rw);
        c->rw = NULL;
    }
    if (rc == 1)
        sql_conn_connect_addrs(c, &a);
    else if (rc < 0)
        sql_conn_failed(c, "the host name is too long to resolve");
}

/* Unlinks and closes c (its statement, if any, is the caller's). */
static void sql_conn_drop(sql_conn *c)
{
    sql_pool *p = c->pool;
    for (sql_conn **pp = &p->conns; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    p->nconns--;
    if (c->state == SC_RESOLVING || c->state == SC_CONNECTING)
        p->nopening--;
    if (c->watching)
        ioloop_watch_stop(p->io, &c->w);
    ioloop_timer_stop(p->io, &c->connect_t);
    if (c->rw) {
        if (upstream_resolve_cancel(&c->rw->w))
            free(c->rw);
        else
            c->rw->c = NULL; /* its answer is posted: it frees the wait */
    }
    if (c->pg)
        PQfinish(c->pg);
    free(c);
}

/* ======================================================================== pools */

/* Idle connections take waiting statements; more connections open while statements wait. */
static void sql_pool_pump(sql_pool *p)
{
    for (int took = 1; p->head && took;) {
        took = 0;
        for (sql_conn *c = p->conns; c; c = c->next)
            if (c->state == SC_IDLE) {
                sql_conn_take(c); /* c busy, or dropped (its statement back in the FIFO or failed) */
                took = 1;
                break;
            }
    }
    while (p->head && p->nconns < SQL_POOL_MAX && p->nopening < p->nqueued) {
        int before = p->nconns;
        sql_conn_open(p);
        if (p->nconns <= before) /* failed at once: the waiting statements were answered */
            break;
    }
}

static void sql_key_make(void)
{
    g_key = ioloop_key_new();
}

static int sql_loop_stop(io_hook *h)
{
    sql_loop *l = h->ud;
    while (l->pools) {
        sql_pool *p = l->pools;
        l->pools = p->next;
        while (p->conns) {
            sql_conn *c = p->conns;
            sql_query *q = c->q;
            c->q = NULL;
            sql_conn_drop(c);
            if (q)
                sql_fifo_push(p, q, 0);
        }
        while (p->head) {
            sql_query *q = p->head;
            sql_fifo_unlink(p, q);
            sql_query_fn fn = q->fn;
            void *ud = q->ud;
            sql_query_free(q);
            sql_failure f = {.kind = SQL_FAIL_STOP};
            snprintf(f.message, sizeof f.message, "the daemon is stopping");
            fn(ud, NULL, &f);
        }
        sql_target_free(p->t);
        free(p);
    }
    ioloop_set_local(l->io, g_key, NULL);
    ioloop_hook_remove(l->io, &l->stop);
    free(l);
    return 0;
}

static sql_loop *sql_loop_get(ioloop *io)
{
    pthread_once(&g_key_once, sql_key_make);
    if (g_key < 0)
        return NULL;
    sql_loop *l = ioloop_get_local(io, g_key);
    if (l || !(l = calloc(1, sizeof *l)))
        return l;
    l->io = io;
    ioloop_set_local(io, g_key, l);
    ioloop_at_stop(io, &l->stop, sql_loop_stop, l);
    return l;
}

static sql_pool *sql_pool_find(ioloop *io, const sql_target *t, int create)
{
    sql_loop *l = sql_loop_get(io);
    if (!l)
        return NULL;
    for (sql_pool *p = l->pools; p; p = p->next)
        if (strcmp(p->t->key, t->key) == 0)
            return p;
    if (!create)
        return NULL;
    sql_pool *p = calloc(1, sizeof *p);
    if (!p || !(p->t = sql_target_dup(t))) {
        free(p);
        return NULL;
    }
    p->io = io;
    p->next = l->pools;
    l->pools = p;
    return p;
}

sql_query *sql_pool_query(ioloop *io, const sql_target *t, const char *sql, int nparams, const char *const *values,
                          sql_query_fn fn, void *ud)
{
    sql_pool *p = sql_pool_find(io, t, 1);
    sql_query *q = p ? calloc(1, sizeof *q) : NULL;
    if (!q)
        return NULL;
    *q = (sql_query){.pool = p, .sql = sql, .n = nparams, .values = values, .fn = fn, .ud = ud};
    ioloop_timer_init(&q->later, sql_query_later, q);
    sql_fifo_push(p, q, 0);
    sql_pool_pump(p);
    return q;
}

void sql_pool_cancel(sql_query *q)
{
    sql_pool *p = q->pool;
    sql_fifo_unlink(p, q);
    sql_conn *c = q->conn;
    if (c) {
        c->q = NULL;
        sql_conn_drop(c);
    }
    sql_query_free(q);
    sql_pool_pump(p);
}

int sql_pool_open_count(ioloop *io, const sql_target *t)
{
    sql_pool *p = sql_pool_find(io, t, 0);
    return p ? p->nconns : 0;
}
