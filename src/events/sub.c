/* sub: one client following a run's events, and the bridge from the threads that emit them to the
 * client's connection on its own I/O loop.
 *
 * Events come from any thread (the run's loop, a pool worker, the Redis follower): push renders the
 * frame into the subscriber's outgoing bytes under its lock and, once per batch, posts a wake to the
 * client's loop, which resumes the connection (http_stream_wake); the connection's reader takes the
 * bytes there (stream_read). Nothing an emitter does waits on the client: a client whose bytes
 * waiting pass max_bytes (EVENTS_SUB_MAX_BYTES) is dropped (its bytes freed, its connection closed
 * with http_stream_abort), the run going on unaffected. A new subscriber's backlog (the buffer's
 * kept events, bounded per run) is queued whatever the bound: the bound is for a client that stops
 * reading while the run goes on.
 *
 * References: the creator's (handed to events_sub_reply, which gives it to the stream as its ud),
 * the run list's while linked (buffer.c), and one per posted wake or heartbeat start. The heartbeat
 * is a timer on the client's loop, stopped when the stream closes (on that loop). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "events_internal.h"
#include "kailash/ioloop.h"

struct events_sub {
    pthread_mutex_t mu;
    atomic_int refs;
    ioloop *io;
    int format;
    size_t max_bytes;
    char run_id[37];  /* the buffer it is linked to ("": none), for the unlink at close */
    events_sub *next; /* in its run's list (buffer.c, under the run's stripe lock) */
    /* under mu: */
    buf out;
    size_t off; /* out's bytes before off are sent */
    int dropped, ended, closed, wake_posted;
    uint64_t last_id;  /* EVENTS_FMT_SSE: the last event id queued */
    uint64_t sdk_next; /* EVENTS_FMT_SDK: the last number given */
    http_stream *hs;
    /* the client's loop thread: */
    io_timer hb;
    int hb_on;
};

events_sub *events_sub_new(int format, ioloop *io, size_t max_bytes)
{
    events_sub *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    pthread_mutex_init(&s->mu, NULL);
    atomic_init(&s->refs, 1);
    s->io = io;
    s->format = format;
    s->max_bytes = max_bytes ? max_bytes : EVENTS_SUB_MAX_BYTES;
    return s;
}

void events_sub_retain(events_sub *s)
{
    atomic_fetch_add(&s->refs, 1);
}

void events_sub_release(events_sub *s)
{
    if (!s || atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    buf_free(&s->out);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

events_sub *events_sub_next(events_sub *s)
{
    return s->next;
}

void events_sub_set_next(events_sub *s, events_sub *next)
{
    s->next = next;
}

void events_sub_bind(events_sub *s, const char *run_id)
{
    util_copy(s->run_id, sizeof s->run_id, run_id);
}

/* ---- the loop side ---- */

static void sub_wake(void *ud)
{
    events_sub *s = ud;
    pthread_mutex_lock(&s->mu);
    s->wake_posted = 0;
    http_stream *hs = s->closed ? NULL : s->hs;
    int dropped = s->dropped;
    pthread_mutex_unlock(&s->mu);
    if (hs && dropped)
        http_stream_abort(hs);
    else if (hs)
        http_stream_wake(hs);
    events_sub_release(s);
}

/* After a change under mu (mu held): one wake on the client's loop per batch. Returns whether to post. */
static int sub_wake_needed_locked(events_sub *s)
{
    if (s->wake_posted || !s->io)
        return 0;
    s->wake_posted = 1;
    return 1;
}

static void sub_wake_post(events_sub *s)
{
    events_sub_retain(s);
    if (ioloop_post(s->io, sub_wake, s) != 0) { /* the loop is stopping: the stream ends with it */
        pthread_mutex_lock(&s->mu);
        s->wake_posted = 0;
        pthread_mutex_unlock(&s->mu);
        events_sub_release(s);
    }
}

/* The frame of one event (or a comment, name NULL) appended to b. */
static int frame_put(buf *b, uint64_t id, const char *name, const char *data, size_t len)
{
    if (!name)
        return buf_append(b, ": ", 2) || buf_append(b, data, len) || buf_append(b, "\n\n", 2);
    if (id && buf_appendf(b, "id: %llu\n", (unsigned long long)id))
        return -1;
    return buf_append(b, "event: ", 7) || buf_append(b, name, strlen(name)) || buf_append(b, "\ndata: ", 7) ||
                   buf_append(b, data, len) || buf_append(b, "\n\n", 2)
               ? -1
               : 0;
}

/* Queues a frame (force: whatever the bound, for a new subscriber's backlog). */
static void sub_push(events_sub *s, uint64_t id, const char *name, const char *data, size_t len, int final, int force)
{
    pthread_mutex_lock(&s->mu);
    if (s->closed || s->dropped || s->ended) {
        pthread_mutex_unlock(&s->mu);
        return;
    }
    if (s->off && s->off == s->out.len)
        s->out.len = s->off = 0;
    if (name && s->format == EVENTS_FMT_SDK)
        id = ++s->sdk_next;
    if (frame_put(&s->out, id, name, data, len) != 0 ||
        (!force && s->out.len - s->off > s->max_bytes)) { /* too far behind (or no memory): dropped */
        s->dropped = 1;
        buf_free(&s->out);
        s->off = 0;
    } else {
        if (name && id && s->format == EVENTS_FMT_SSE)
            s->last_id = id;
        s->ended = final;
    }
    int post = sub_wake_needed_locked(s);
    pthread_mutex_unlock(&s->mu);
    if (post)
        sub_wake_post(s);
}

void events_sub_push(events_sub *s, uint64_t id, const char *name, const char *data, size_t len, int final)
{
    sub_push(s, id, name, data, len, final, 0);
}

void events_sub_deliver(events_sub *s, uint64_t id, const char *name, const char *data, size_t len, int final,
                        int backlog)
{
    if (s->format == EVENTS_FMT_SDK && strncmp(name, "run_", 4) == 0)
        return; /* the SDK's stream has its own start and end (runs_stream.c pushes them) */
    sub_push(s, id, name, data, len, final, backlog);
}

void events_sub_finish(events_sub *s)
{
    pthread_mutex_lock(&s->mu);
    s->ended = 1;
    int post = sub_wake_needed_locked(s);
    pthread_mutex_unlock(&s->mu);
    if (post)
        sub_wake_post(s);
}

int events_sub_closed(events_sub *s)
{
    pthread_mutex_lock(&s->mu);
    int gone = s->closed || s->dropped;
    pthread_mutex_unlock(&s->mu);
    return gone;
}

uint64_t events_sub_last_id(events_sub *s)
{
    pthread_mutex_lock(&s->mu);
    uint64_t id = s->last_id;
    pthread_mutex_unlock(&s->mu);
    return id;
}

/* ---- the stream's producer (the client's loop thread) ---- */

long events_sub_read(events_sub *s, char *out, size_t max)
{
    pthread_mutex_lock(&s->mu);
    long n = 0;
    size_t avail = s->out.len - s->off;
    if (s->dropped)
        n = HTTP_STREAM_ABORT;
    else if (avail) {
        size_t k = avail < max ? avail : max;
        memcpy(out, s->out.data + s->off, k);
        s->off += k;
        if (s->off == s->out.len)
            s->out.len = s->off = 0;
        else if (s->off >= 65536) { /* a long backlog: give the sent front back */
            memmove(s->out.data, s->out.data + s->off, s->out.len - s->off);
            s->out.len -= s->off;
            s->off = 0;
        }
        n = (long)k;
    } else if (s->ended)
        n = HTTP_STREAM_END;
    pthread_mutex_unlock(&s->mu);
    return n;
}

static long sub_read(void *ud, char *out, size_t max)
{
    return events_sub_read(ud, out, max);
}

static void sub_close(void *ud)
{
    events_sub *s = ud;
    pthread_mutex_lock(&s->mu);
    s->closed = 1;
    http_stream *hs = s->hs;
    s->hs = NULL;
    pthread_mutex_unlock(&s->mu);
    http_stream_release(hs);
    int keep = 0;
    if (s->hb_on && ioloop_current() == s->io) {
        ioloop_timer_stop(s->io, &s->hb);
        s->hb_on = 0;
    } else if (s->hb_on)
        keep = 1; /* a teardown off the loop: the timer may still fire, on memory that stays */
    if (s->run_id[0])
        events_unlink(s->run_id, s);
    if (!keep)
        events_sub_release(s);
}

static void sub_heartbeat(io_timer *t)
{
    events_sub *s = t->ud;
    pthread_mutex_lock(&s->mu);
    int over = s->closed || s->dropped || s->ended;
    pthread_mutex_unlock(&s->mu);
    if (over || ioloop_current() != s->io) {
        s->hb_on = 0;
        return;
    }
    events_sub_push(s, 0, NULL, "keepalive", 9, 0);
    if (ioloop_timer_start(s->io, &s->hb, events_heartbeat_ms()) != 0)
        s->hb_on = 0;
}

static void sub_heartbeat_start(void *ud)
{
    events_sub *s = ud;
    pthread_mutex_lock(&s->mu);
    int over = s->closed || s->dropped || s->ended;
    pthread_mutex_unlock(&s->mu);
    if (!over && !s->hb_on) {
        ioloop_timer_init(&s->hb, sub_heartbeat, s);
        s->hb_on = ioloop_timer_start(s->io, &s->hb, events_heartbeat_ms()) == 0;
    }
    events_sub_release(s);
}

void events_sub_reply(kreq *r, events_sub *s)
{
    static const http_stream_ops ops = {sub_read, sub_close};
    http_stream *hs = http_reply_stream(r, 200, "text/event-stream", &ops, s);
    if (!hs) {
        events_sub_release(s);
        return;
    }
    http_reply_header(r, "Cache-Control", "no-cache");
    http_reply_header(r, "X-Accel-Buffering", "no"); /* a proxy in front must not hold the events back */
    pthread_mutex_lock(&s->mu);
    s->hs = hs;
    pthread_mutex_unlock(&s->mu);
    if (!s->io)
        return;
    events_sub_retain(s);
    if (ioloop_current() == s->io)
        sub_heartbeat_start(s);
    else if (ioloop_post(s->io, sub_heartbeat_start, s) != 0)
        events_sub_release(s);
}
