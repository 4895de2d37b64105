/* conn: one hiredis redisAsyncContext per I/O loop (redis.h; DESIGN.md "Waiting inside the loop").
 *
 * The loop is hiredis's event library: the adapter hooks (ac->ev) turn read and write interest into
 * one io_watch on the context's socket, and the watch's events call redisAsyncHandleRead/Write, as
 * hiredis's own ae and libevent adapters do. Commands of every request on the loop go out on that
 * one connection, pipelined, with no lock. Two departures from the stock adapters:
 *   - writes: a command queued while connected does not ask epoll for EPOLLOUT (two epoll_ctl and a
 *     wakeup per batch); it arms a zero-delay loop timer instead, which runs after the round's
 *     callbacks and hooks and writes everything queued in the round with one write(2). Only a write
 *     that does not finish asks for EPOLLOUT (a large batch, a slow reader).
 *   - connecting: hiredis 0.14's redisAsyncConnect resolves names with a blocking getaddrinfo, so a
 *     host name goes through the upstream module's resolver first (its own thread, the answer on
 *     this loop) and hiredis gets a numeric address; a unix: path goes straight to hiredis.
 *
 * A command's record (rcmd) mirrors hiredis's callback queue in a FIFO of our own, in the same order
 * (Redis answers in order), so the oldest pending command is the FIFO's head. Its deadline is kept
 * by one timer per connection, re-armed lazily: it fires at some deadline no later than the head's,
 * and moves itself to the head's when the head was answered meanwhile. A command past its deadline
 * drops the connection: a reply arriving later would be matched with the next command's callback.
 * hiredis then answers every pending callback NULL (redisAsyncFree), which is how every failure
 * reaches the callers; the adapter's cleanup hook is the one place that learns a context is gone,
 * whatever the cause, counts it for the breaker and schedules the reconnect (backoff from 100 ms,
 * doubling to 5 s). A lost context is one failure however many commands it held; an idle one the
 * server closed (its `timeout`, a restart) is none, the reconnect tells.
 *
 * A new connection sends AUTH (when a password is set) and SELECT (db != 0), or PING when neither,
 * before anything else; it takes user commands only once they are answered, so a refused password
 * is a failed connection, not a NOAUTH error in a caller's reply. A connection that is up while the
 * breaker is not closed sends the probe itself (a PING, once a second at most): a daemon without
 * traffic, whose /ready depends on redis_state, still finds Redis back.
 *
 * Lifetime: the connection lives on its loop and ends there, from redis_stop (ioloop_call) or the
 * loop's stop hook, whichever comes first. User callbacks run inside hiredis (replies, and NULLs
 * while a context is freed) and may call redis_stop; every entry into hiredis holds c->depth, and a
 * connection detached meanwhile is freed when the outermost entry returns. */
#include <arpa/inet.h>
#include <hiredis/async.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "kailash/ioloop.h"
#include "kailash/log.h"
#include "kailash/upstream.h"
#include "kailash/util.h"
#include "redis_internal.h"

#define RC_MAX_LOOPS 64
#define RC_BACKOFF_MIN_MS 100.0
#define RC_BACKOFF_MAX_MS 5000.0
#define RC_CONNECT_MIN_MS 250 /* connecting and the handshake get at least this long */
#define RC_FREE_MAX 256       /* command records kept for reuse per connection */

typedef struct rconn rconn;

enum { K_USER = 1, K_PROBE = 2, K_HANDSHAKE = 4 };

/* One command in flight: hiredis's privdata for it. */
typedef struct rcmd {
    struct rcmd *next;
    rconn *c;
    redis_reply_fn done;
    void *ud;
    double deadline_ms;
    int kind; /* K_* */
} rcmd;

/* A wait on the resolver. Apart from the connection: a wait whose answer is already posted to the
 * loop must outlive a connection freed meanwhile (c is then NULL and the answer frees it). */
typedef struct rwait {
    up_resolve_wait w; /* first: the resolver's callback gets &w */
    rconn *c;
} rwait;

struct rconn {
    ioloop *io;
    int slot;              /* in g_conns */
    redisAsyncContext *ac; /* NULL between connections */
    io_watch w;
    uint32_t want; /* the events asked of the loop for ac's socket (0: not watched) */
    int tcp_up;    /* connect(2) finished */
    int in_write;  /* inside redisAsyncHandleWrite: write interest is real interest */
    int ready;     /* handshake answered: user commands go */
    int handshake_left;
    int lost;     /* commands of this context answered NULL so far */
    int closing;  /* redisAsyncFree called, cleanup to come */
    int stopping; /* detached: no reconnect, no new command */
    int dead;     /* detached inside hiredis: freed when depth returns to 0 */
    int depth;    /* entries into hiredis on the stack */
    io_timer deadline_t, flush_t, retry_t, probe_t;
    io_hook stop;
    rwait *rw;
    double backoff_ms;
    unsigned attempt;
    rcmd *head, *tail, *spare;
    int nspare;
    char why[256]; /* why the context is being dropped, for the breaker's log line (no secret) */
    atomic_ullong sent, failed, refused, reconnects;
};

/* Set by redis_start before any loop sees them, read-only until redis_stop has detached them all. */
static redis_target g_target;
static int g_timeout_ms;
static char g_desc[400];

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static rconn *g_conns[RC_MAX_LOOPS]; /* under g_mu */
static int g_started;                /* under g_mu */
static redis_stats g_gone;           /* counters of freed connections, under g_mu */
static atomic_ullong g_refused;      /* refusals on threads without a connection */

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_key = -1;
static _Thread_local rconn *t_conn;

static void rconn_connect(rconn *c);
static void rconn_drop(rconn *c);

/* ---- command records ---- */

static rcmd *rcmd_get(rconn *c)
{
    rcmd *q = c->spare;
    if (q) {
        c->spare = q->next;
        c->nspare--;
        return q;
    }
    return malloc(sizeof *q);
}

static void rcmd_put(rconn *c, rcmd *q)
{
    if (c->nspare >= RC_FREE_MAX) {
        free(q);
        return;
    }
    q->next = c->spare;
    c->spare = q;
    c->nspare++;
}

/* ---- leaving hiredis ---- */

static void rconn_free(rconn *c)
{
    pthread_mutex_lock(&g_mu);
    if (g_conns[c->slot] == c)
        g_conns[c->slot] = NULL;
    g_gone.sent += atomic_load(&c->sent);
    g_gone.failed += atomic_load(&c->failed);
    g_gone.refused += atomic_load(&c->refused);
    g_gone.reconnects += atomic_load(&c->reconnects);
    pthread_mutex_unlock(&g_mu);
    while (c->spare) {
        rcmd *q = c->spare;
        c->spare = q->next;
        free(q);
    }
    free(c);
}

/* After each entry into hiredis: 1 when c is gone (detached inside it, freed now). */
static int rconn_leave(rconn *c)
{
    if (--c->depth == 0 && c->dead) {
        rconn_free(c);
        return 1;
    }
    return 0;
}

/* ---- the adapter: hiredis's interest as one io_watch ---- */

static void rconn_on_io(io_watch *w, uint32_t events);

static void rconn_watch(rconn *c, uint32_t want)
{
    if (want == c->want)
        return;
    int rc = 0;
    if (!want)
        ioloop_watch_stop(c->io, &c->w);
    else if (!c->want)
        rc = ioloop_watch_start(c->io, &c->w, want);
    else
        rc = ioloop_watch_modify(c->io, &c->w, want);
    if (rc == 0) {
        c->want = want;
        return;
    }
    /* The loop cannot watch the socket: drop the context from a timer (not from inside hiredis). */
    snprintf(c->why, sizeof c->why, "cannot watch the socket");
    c->ready = 0;
    ioloop_timer_start(c->io, &c->deadline_t, 0);
}

static void rconn_ev_add_read(void *p)
{
    rconn *c = p;
    rconn_watch(c, c->want | EPOLLIN);
}

static void rconn_ev_del_read(void *p)
{
    rconn *c = p;
    rconn_watch(c, c->want & ~(uint32_t)EPOLLIN);
}

/* Connected and not inside a write: the flush timer writes the round's commands together. */
static void rconn_ev_add_write(void *p)
{
    rconn *c = p;
    if (c->tcp_up && !c->in_write && !(c->want & EPOLLOUT)) {
        if (ioloop_timer_pending(&c->flush_t) || ioloop_timer_start(c->io, &c->flush_t, 0) == 0)
            return;
    }
    rconn_watch(c, c->want | EPOLLOUT);
}

static void rconn_ev_del_write(void *p)
{
    rconn *c = p;
    rconn_watch(c, c->want & ~(uint32_t)EPOLLOUT);
}

/* hiredis is freeing the context (after answering every pending callback NULL), whatever the cause:
 * the one place a lost connection is counted and the next one scheduled. */
static void rconn_ev_cleanup(void *p)
{
    rconn *c = p;
    redisAsyncContext *ac = c->ac;
    rconn_watch(c, 0);
    ioloop_timer_stop(c->io, &c->flush_t);
    ioloop_timer_stop(c->io, &c->deadline_t);
    ioloop_timer_stop(c->io, &c->probe_t);
    /* ready still set: hiredis lost it (EOF, reset), not a deadline or a refusal of ours. An idle
     * connection the server closed (its `timeout`, a restart) is no failure: nobody waited on it,
     * and the reconnect will tell. Anything else is one, however many commands it held. */
    int idle = c->ready && c->lost == 0;
    c->ac = NULL;
    c->tcp_up = c->ready = c->closing = c->handshake_left = 0;
    if (c->stopping)
        return;
    if (!c->why[0])
        snprintf(c->why, sizeof c->why, "%s",
                 ac && ac->c.err && ac->c.errstr[0] ? ac->c.errstr : "the connection closed");
    if (!idle)
        redis_breaker_failure(0, c->why);
    c->why[0] = '\0';
    ioloop_timer_start(c->io, &c->retry_t, c->backoff_ms);
    c->backoff_ms = c->backoff_ms * 2 > RC_BACKOFF_MAX_MS ? RC_BACKOFF_MAX_MS : c->backoff_ms * 2;
}

static void rconn_on_io(io_watch *w, uint32_t events)
{
    rconn *c = w->ud;
    redisAsyncContext *ac = c->ac;
    if (!ac)
        return;
    c->depth++;
    if ((c->want & EPOLLOUT) && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
        c->in_write = 1;
        redisAsyncHandleWrite(ac);
        c->in_write = 0;
    }
    /* c->ac is NULL when the write dropped the context (cleanup ran); a new one only comes later,
     * from the retry timer, so the same pointer means the same context */
    if (c->ac == ac && (c->want & EPOLLIN) && (events & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP)))
        redisAsyncHandleRead(ac);
    rconn_leave(c);
}

static void rconn_on_flush(io_timer *t)
{
    rconn *c = t->ud;
    if (!c->ac || (c->want & EPOLLOUT))
        return;
    c->depth++;
    c->in_write = 1;
    redisAsyncHandleWrite(c->ac);
    c->in_write = 0;
    rconn_leave(c);
}

/* ---- commands ---- */

/* hiredis's callback for every command: the FIFO's head, in order. */
static void rconn_on_reply(redisAsyncContext *ac, void *r, void *priv)
{
    (void)ac;
    rcmd *q = priv;
    rconn *c = q->c;
    if (c->head == q) {
        c->head = q->next;
    } else { /* not expected (hiredis answers in order); kept correct anyway */
        rcmd *p = c->head;
        while (p && p->next != q)
            p = p->next;
        if (p)
            p->next = q->next;
        if (c->tail == q)
            c->tail = p;
    }
    if (!c->head)
        c->tail = NULL;
    redisReply *reply = r;
    c->lost += reply == NULL;
    if (q->kind & K_USER) {
        if (reply) {
            redis_breaker_success(q->kind & K_PROBE);
        } else {
            atomic_fetch_add_explicit(&c->failed, 1, memory_order_relaxed);
            if (q->kind & K_PROBE)
                redis_breaker_failure(1, c->why);
        }
    }
    redis_reply_fn done = q->done;
    void *ud = q->ud;
    rcmd_put(c, q);
    done(reply, ud);
}

/* Queues one command on c's context (no breaker, no readiness check). 0, or -1 (done not called). */
static int rconn_send(rconn *c, int argc, const char **argv, const size_t *lens, redis_reply_fn done, void *ud,
                      int kind, double timeout_ms)
{
    if (!c->ac || c->closing)
        return -1;
    rcmd *q = rcmd_get(c);
    if (!q)
        return -1;
    *q = (rcmd){.c = c, .done = done, .ud = ud, .kind = kind, .deadline_ms = util_now_ms() + timeout_ms};
    if (redisAsyncCommandArgv(c->ac, rconn_on_reply, q, argc, argv, lens) != REDIS_OK) {
        rcmd_put(c, q);
        return -1;
    }
    if (c->tail)
        c->tail->next = q;
    else
        c->head = q;
    c->tail = q;
    if (kind & K_USER)
        atomic_fetch_add_explicit(&c->sent, 1, memory_order_relaxed);
    if (!ioloop_timer_pending(&c->deadline_t))
        ioloop_timer_start(c->io, &c->deadline_t, timeout_ms);
    return 0;
}

/* The oldest command's deadline (or a watch that failed): past it, the connection goes. */
static void rconn_on_deadline(io_timer *t)
{
    rconn *c = t->ud;
    if (!c->ac)
        return;
    if (!c->why[0]) { /* not a failed watch */
        if (!c->head)
            return;
        double left = c->head->deadline_ms - util_now_ms();
        if (left > 0) {
            ioloop_timer_start(c->io, t, left);
            return;
        }
        snprintf(c->why, sizeof c->why, "%s within %d ms",
                 c->head->kind & K_HANDSHAKE ? "no answer to the handshake (AUTH, SELECT or PING)" : "no reply",
                 c->head->kind & K_HANDSHAKE && g_timeout_ms < RC_CONNECT_MIN_MS ? RC_CONNECT_MIN_MS : g_timeout_ms);
    }
    rconn_drop(c);
}

/* Tears the context down: pending commands are answered NULL, cleanup schedules the reconnect. c
 * may be gone when this returns. */
static void rconn_drop(rconn *c)
{
    if (!c->ac || c->closing)
        return;
    c->ready = 0;
    c->closing = 1;
    c->depth++;
    redisAsyncFree(c->ac); /* inside a hiredis callback: done when it returns */
    rconn_leave(c);
}

/* ---- connecting ---- */

static void rconn_probe_arm(rconn *c);

static void rconn_on_probe_reply(redisReply *reply, void *ud)
{
    (void)reply;
    (void)ud;
}

/* Up while the breaker is not closed: this connection sends the probe when it is due. */
static void rconn_on_probe(io_timer *t)
{
    rconn *c = t->ud;
    if (!c->ready)
        return;
    if (!redis_breaker_closed() && redis_breaker_allow() == RB_PROBE) {
        const char *argv[] = {"PING"};
        if (rconn_send(c, 1, argv, NULL, rconn_on_probe_reply, NULL, K_USER | K_PROBE, g_timeout_ms) != 0)
            redis_breaker_release();
    }
    rconn_probe_arm(c);
}

static void rconn_probe_arm(rconn *c)
{
    double wait = REDIS_BREAKER_OPEN_MS;
    if (!redis_breaker_closed()) {
        wait = redis_breaker_reopen_ms() - util_now_ms();
        if (wait < 100)
            wait = 100;
    }
    ioloop_timer_start(c->io, &c->probe_t, wait);
}

/* A reply's text for a log line, without the password should a server ever echo it. */
static const char *rconn_safe_text(const redisReply *reply)
{
    if (!reply || reply->type != REDIS_REPLY_ERROR || !reply->str)
        return "no reply";
    if (g_target.password[0] && strstr(reply->str, g_target.password))
        return "(the server's message is not shown: it holds the password)";
    return reply->str;
}

static void rconn_handshake_step(rconn *c, redisReply *reply, const char *what)
{
    if (!reply)
        return; /* the context is going: cleanup counts it */
    if (reply->type == REDIS_REPLY_ERROR) {
        snprintf(c->why, sizeof c->why, "%s refused: %s", what, rconn_safe_text(reply));
        rconn_drop(c); /* deferred by hiredis until this callback returns */
        return;
    }
    if (--c->handshake_left > 0)
        return;
    c->ready = 1;
    c->backoff_ms = RC_BACKOFF_MIN_MS;
    redis_breaker_connected();
    rconn_probe_arm(c);
}

static void rconn_on_auth(redisReply *reply, void *ud)
{
    rconn_handshake_step(ud, reply, "AUTH");
}

static void rconn_on_select(redisReply *reply, void *ud)
{
    rconn_handshake_step(ud, reply, "SELECT");
}

static void rconn_on_ping(redisReply *reply, void *ud)
{
    rconn_handshake_step(ud, reply, "PING");
}

/* AUTH and SELECT (or PING), queued before connect(2) has finished: first on the wire. */
static int rconn_handshake(rconn *c)
{
    const redis_target *t = &g_target;
    double to = g_timeout_ms < RC_CONNECT_MIN_MS ? RC_CONNECT_MIN_MS : g_timeout_ms;
    c->handshake_left = 0;
    if (t->password[0]) {
        const char *argv[3];
        int argc = 0;
        argv[argc++] = "AUTH";
        if (t->user[0])
            argv[argc++] = t->user;
        argv[argc++] = t->password;
        if (rconn_send(c, argc, argv, NULL, rconn_on_auth, c, K_HANDSHAKE, to) != 0)
            return -1;
        c->handshake_left++;
    }
    if (t->db != 0) {
        char db[16];
        snprintf(db, sizeof db, "%d", t->db);
        const char *argv[] = {"SELECT", db};
        if (rconn_send(c, 2, argv, NULL, rconn_on_select, c, K_HANDSHAKE, to) != 0)
            return -1;
        c->handshake_left++;
    }
    if (!c->handshake_left) {
        const char *argv[] = {"PING"};
        if (rconn_send(c, 1, argv, NULL, rconn_on_ping, c, K_HANDSHAKE, to) != 0)
            return -1;
        c->handshake_left++;
    }
    return 0;
}

static void rconn_on_connect(const redisAsyncContext *ac, int status)
{
    rconn *c = ac->data;
    if (status == REDIS_OK)
        c->tcp_up = 1;
    else
        snprintf(c->why, sizeof c->why, "cannot connect: %s", ac->c.errstr[0] ? ac->c.errstr : "failed");
}

/* A connection attempt that failed before hiredis had a context to drop. */
static void rconn_failed(rconn *c, const char *why)
{
    redis_breaker_failure(0, why);
    if (c->stopping)
        return;
    ioloop_timer_start(c->io, &c->retry_t, c->backoff_ms);
    c->backoff_ms = c->backoff_ms * 2 > RC_BACKOFF_MAX_MS ? RC_BACKOFF_MAX_MS : c->backoff_ms * 2;
}

/* Takes a context hiredis has just made (connecting, not yet connected) onto the loop. */
static void rconn_open(rconn *c, redisAsyncContext *ac)
{
    char why[256];
    if (!ac || ac->err) {
        snprintf(why, sizeof why, "cannot connect: %s", ac && ac->errstr ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac); /* no adapter yet, no callback pending */
        rconn_failed(c, why);
        return;
    }
    c->ac = ac;
    c->tcp_up = c->ready = c->closing = c->lost = 0;
    c->why[0] = '\0';
    ac->data = c;
    ioloop_watch_init(&c->w, ac->c.fd, rconn_on_io, c);
    c->want = 0;
    ac->ev.data = c;
    ac->ev.addRead = rconn_ev_add_read;
    ac->ev.delRead = rconn_ev_del_read;
    ac->ev.addWrite = rconn_ev_add_write;
    ac->ev.delWrite = rconn_ev_del_write;
    ac->ev.cleanup = rconn_ev_cleanup;
    redisAsyncSetConnectCallback(ac, rconn_on_connect); /* asks for write interest: connect's end */
    if (rconn_handshake(c) != 0) {
        snprintf(c->why, sizeof c->why, "cannot queue the handshake (out of memory)");
        rconn_drop(c);
    }
}

static void rconn_connect_addrs(rconn *c, const up_addrs *a)
{
    if (a->n == 0) {
        char why[320];
        snprintf(why, sizeof why, "cannot resolve %s", g_target.host);
        rconn_failed(c, why);
        return;
    }
    const struct sockaddr_storage *sa = &a->addr[(c->attempt - 1) % (unsigned)a->n];
    char ip[INET6_ADDRSTRLEN] = "";
    if (sa->ss_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, ip, sizeof ip);
    else
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, ip, sizeof ip);
    rconn_open(c, redisAsyncConnect(ip, g_target.port)); /* numeric: no lookup, connect(2) in flight */
}

static void rconn_on_resolved(up_resolve_wait *w, const up_addrs *a)
{
    rwait *rw = (rwait *)w;
    rconn *c = rw->c;
    if (!c) { /* its connection went while this answer was on its way */
        free(rw);
        return;
    }
    if (c->stopping)
        return;
    rconn_connect_addrs(c, a);
}

static int rconn_numeric(const char *host)
{
    unsigned char bin[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, bin) == 1 || inet_pton(AF_INET6, host, bin) == 1;
}

static void rconn_connect(rconn *c)
{
    if (c->stopping || c->ac)
        return;
    c->attempt++;
    if (g_target.path[0]) {
        rconn_open(c, redisAsyncConnectUnix(g_target.path));
        return;
    }
    if (rconn_numeric(g_target.host)) {
        rconn_open(c, redisAsyncConnect(g_target.host, g_target.port));
        return;
    }
    if (!c->rw && !(c->rw = calloc(1, sizeof *c->rw))) {
        rconn_failed(c, "out of memory");
        return;
    }
    c->rw->c = c;
    up_addrs a;
    int rc = upstream_resolve(c->io, g_target.host, g_target.port, &c->rw->w, rconn_on_resolved, &a);
    if (rc == 1)
        rconn_connect_addrs(c, &a);
    else if (rc < 0)
        rconn_failed(c, "the host name is too long to resolve");
}

static void rconn_on_retry(io_timer *t)
{
    rconn *c = t->ud;
    atomic_fetch_add_explicit(&c->reconnects, 1, memory_order_relaxed);
    rconn_connect(c);
}

/* ---- attaching to a loop, and letting go ---- */

/* On c's loop: everything c holds ends here; pending commands are answered NULL. */
static void rconn_detach(rconn *c)
{
    if (c->stopping)
        return;
    c->stopping = 1;
    c->ready = 0;
    if (t_conn == c)
        t_conn = NULL;
    ioloop_set_local(c->io, g_key, NULL);
    ioloop_hook_remove(c->io, &c->stop); /* c holds it: unlinked before c goes */
    if (c->rw) {
        if (upstream_resolve_cancel(&c->rw->w))
            free(c->rw);
        else
            c->rw->c = NULL; /* its answer is posted: it frees the wait */
        c->rw = NULL;
    }
    ioloop_timer_stop(c->io, &c->retry_t);
    ioloop_timer_stop(c->io, &c->probe_t);
    if (c->ac) {
        snprintf(c->why, sizeof c->why, "stopping");
        c->closing = 1;
        c->depth++;
        redisAsyncFree(c->ac); /* pending commands answered NULL, then cleanup */
        c->depth--;
    }
    ioloop_timer_stop(c->io, &c->deadline_t);
    ioloop_timer_stop(c->io, &c->flush_t);
    if (c->depth == 0)
        rconn_free(c);
    else
        c->dead = 1; /* detached from inside hiredis: freed when it returns */
}

static int rconn_on_loop_stop(io_hook *h)
{
    rconn_detach(h->ud);
    return 0;
}

typedef struct rconn_start_arg {
    ioloop *io;
    int slot;
    int rc;
} rconn_start_arg;

static void rconn_attach(void *ud)
{
    rconn_start_arg *a = ud;
    rconn *c = calloc(1, sizeof *c);
    if (!c)
        return;
    c->io = a->io;
    c->slot = a->slot;
    c->backoff_ms = RC_BACKOFF_MIN_MS;
    ioloop_timer_init(&c->deadline_t, rconn_on_deadline, c);
    ioloop_timer_init(&c->flush_t, rconn_on_flush, c);
    ioloop_timer_init(&c->retry_t, rconn_on_retry, c);
    ioloop_timer_init(&c->probe_t, rconn_on_probe, c);
    ioloop_at_stop(c->io, &c->stop, rconn_on_loop_stop, c);
    ioloop_set_local(c->io, g_key, c);
    t_conn = c;
    pthread_mutex_lock(&g_mu);
    g_conns[a->slot] = c;
    pthread_mutex_unlock(&g_mu);
    rconn_connect(c);
    a->rc = 0;
}

static void rconn_detach_post(void *ud)
{
    ioloop *io = ud;
    rconn *c = ioloop_get_local(io, g_key); /* NULL when the loop's stop hook was first */
    if (c && ioloop_current() == io)
        rconn_detach(c);
}

static void rconn_key_init(void)
{
    g_key = ioloop_key_new();
}

int redis_start(const char *url, int timeout_ms, struct ioloop *const *loops, int n, char *err, size_t errlen)
{
    redis_target t;
    if (redis_url_parse(url, &t, err, errlen) != 0)
        return -1;
    if (n < 1 || n > RC_MAX_LOOPS || !loops)
        return util_err(err, errlen, "redis: between 1 and %d I/O loops are needed", RC_MAX_LOOPS);
    if (timeout_ms < 1)
        return util_err(err, errlen, "redis: the command timeout must be at least 1 ms");
    pthread_once(&g_once, rconn_key_init);
    if (g_key < 0)
        return util_err(err, errlen, "redis: no loop-local key left");
    pthread_mutex_lock(&g_mu);
    int started = g_started;
    g_started = 1;
    pthread_mutex_unlock(&g_mu);
    if (started)
        return util_err(err, errlen, "redis: already started");
    g_target = t;
    g_timeout_ms = timeout_ms;
    redis_target_describe(&t, g_desc, sizeof g_desc);
    redis_breaker_reset(1, g_desc);
    for (int i = 0; i < n; i++) {
        rconn_start_arg a = {loops[i], i, -1};
        if (ioloop_call(loops[i], rconn_attach, &a) != 0 || a.rc != 0) {
            redis_stop();
            return util_err(err, errlen, "redis: cannot set up the I/O loop's connection");
        }
    }
    return 0;
}

void redis_stop(void)
{
    ioloop *ios[RC_MAX_LOOPS];
    int n = 0;
    pthread_mutex_lock(&g_mu);
    if (!g_started) {
        pthread_mutex_unlock(&g_mu);
        return;
    }
    for (int i = 0; i < RC_MAX_LOOPS; i++)
        if (g_conns[i])
            ios[n++] = g_conns[i]->io;
    pthread_mutex_unlock(&g_mu);
    /* a loop whose stop began meanwhile refuses the call; its stop hook detaches instead */
    for (int i = 0; i < n; i++)
        ioloop_call(ios[i], rconn_detach_post, ios[i]);
    redis_breaker_reset(0, "");
    pthread_mutex_lock(&g_mu);
    g_started = 0;
    pthread_mutex_unlock(&g_mu);
}

/* ---- the public commands ---- */

int redis_command(int argc, const char **argv, const size_t *argvlen, redis_reply_fn done, void *ud)
{
    rconn *c = t_conn;
    if (!c) {
        atomic_fetch_add_explicit(&g_refused, 1, memory_order_relaxed);
        return -1;
    }
    int b;
    if (!c->ready || !done || (b = redis_breaker_allow()) == RB_REFUSE) {
        atomic_fetch_add_explicit(&c->refused, 1, memory_order_relaxed);
        return -1;
    }
    int kind = K_USER | (b == RB_PROBE ? K_PROBE : 0);
    if (rconn_send(c, argc, argv, argvlen, done, ud, kind, g_timeout_ms) != 0) {
        if (b == RB_PROBE)
            redis_breaker_release();
        atomic_fetch_add_explicit(&c->refused, 1, memory_order_relaxed);
        return -1;
    }
    return 0;
}

int redis_conn_resend(int argc, const char **argv, const size_t *argvlen, redis_reply_fn done, void *ud)
{
    rconn *c = t_conn;
    if (!c || !c->ready || rconn_send(c, argc, argv, argvlen, done, ud, K_USER, g_timeout_ms) != 0)
        return -1;
    return 0;
}

const char *redis_describe(void)
{
    return redis_state() >= 0 ? g_desc : "";
}

void redis_get_stats(redis_stats *out)
{
    pthread_mutex_lock(&g_mu);
    *out = g_gone;
    for (int i = 0; i < RC_MAX_LOOPS; i++) {
        rconn *c = g_conns[i];
        if (!c)
            continue;
        out->sent += atomic_load_explicit(&c->sent, memory_order_relaxed);
        out->failed += atomic_load_explicit(&c->failed, memory_order_relaxed);
        out->refused += atomic_load_explicit(&c->refused, memory_order_relaxed);
        out->reconnects += atomic_load_explicit(&c->reconnects, memory_order_relaxed);
    }
    pthread_mutex_unlock(&g_mu);
    out->refused += atomic_load_explicit(&g_refused, memory_order_relaxed);
}
