/* stream: streamed answers (kailash/http.h's http_reply_stream), for Server-Sent Events.
 *
 * A stream is libmicrohttpd's content-reader response (unknown size, so HTTP/1.1 chunked encoding)
 * whose reader asks the producer (ops.read) for bytes. The daemon calls the reader on the loop thread
 * whenever the socket can take more; when the producer has nothing, the reader suspends the
 * connection (through http_daemon_suspend, so mhd_park keeps its place in the epoll set, as for a
 * request waiting on its run) and returns 0, which libmicrohttpd documents as the way to wait
 * without busy polling. http_stream_wake resumes it (MHD_resume_connection and a kick of the
 * daemon's loop, from any thread); a wake that comes while the reader is not waiting is remembered
 * (woken), so bytes pushed between the producer's "nothing" and the suspend are not left waiting.
 *
 * Life and ownership: the stream holds one reference for its creator (http_reply_stream's handle)
 * and one for the request, which passes to libmicrohttpd's response when the answer is queued; the
 * response's free callback closes the producer (ops.close, once) and drops it. `r` (the request) is
 * set while the connection is alive and cleared under `mu` when the request ends, so wake and abort
 * from other threads touch the connection only while it exists; while the reader waits (`waiting`)
 * the connection is suspended, and libmicrohttpd frees no suspended connection.
 *
 * Ends other than the producer's own: the client leaving (the loop's EPOLLRDHUP watch: a waiting
 * reader is resumed and answers END_WITH_ERROR), an abort (the same; a connection that is not
 * waiting is blocked on a full socket, so its socket is shut down and the daemon's next write fails),
 * and the server draining (http_stream_quiesce: what the producer has ready goes, then the chunked
 * end), so a graceful stop never waits on an open stream. */
#include <microhttpd.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "http_internal.h"
#include "kailash/ioloop.h"
#include "kreq.h"

#define STREAM_BLOCK 4096 /* the most one read is asked for (libmicrohttpd's write buffer bounds it too) */

struct http_stream {
    pthread_mutex_t mu;
    atomic_int refs;
    http_stream_ops ops;
    void *ud;
    int closed;      /* ops.close was called */
    /* under mu: */
    kreq *r;         /* the request while its connection is alive, else NULL */
    struct MHD_Connection *conn;
    void *srv;       /* the daemon's (http_daemon_kick) */
    ioloop *io;      /* the connection's loop */
    int waiting;     /* the reader suspended the connection for want of bytes */
    int woken;       /* a wake came while the reader was not waiting */
    int ending;      /* the server drains: end after what is ready */
    int aborting;    /* close the connection */
};

static void stream_close(http_stream *s)
{
    if (s->closed)
        return;
    s->closed = 1;
    if (s->ops.close)
        s->ops.close(s->ud);
}

void http_stream_release(http_stream *s)
{
    if (!s || atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    stream_close(s);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

http_stream *http_reply_stream(kreq *r, int status, const char *content_type, const http_stream_ops *ops, void *ud)
{
    http_stream *s = calloc(1, sizeof *s);
    if (!s) {
        http_reply_error(r, 500, "internal", "out of memory", NULL);
        return NULL;
    }
    pthread_mutex_init(&s->mu, NULL);
    atomic_init(&s->refs, 2); /* the caller's and the request's */
    s->ops = *ops;
    s->ud = ud;
    buf_free(&r->answer); /* replaces what was set, headers and an earlier stream included */
    r->answer = (buf){0};
    r->answer_headers.len = 0;
    http_stream_replaced(r);
    r->status = status;
    r->stream = s;
    http_reply_header(r, "Content-Type", content_type);
    return s;
}

/* The connection is suspended by the reader: resume it and make its daemon run (mu held). */
static void stream_resume_locked(http_stream *s)
{
    s->waiting = 0;
    MHD_resume_connection(s->conn);
    http_daemon_kick(s->srv);
}

void http_stream_wake(http_stream *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    if (s->r && s->waiting)
        stream_resume_locked(s);
    else if (s->r)
        s->woken = 1;
    pthread_mutex_unlock(&s->mu);
}

/* On the connection's loop: a connection that is not waiting in the reader is blocked on its socket
 * (or about to be): shutting the socket down makes the daemon's next write fail, and it closes. */
static void stream_abort_here(http_stream *s)
{
    pthread_mutex_lock(&s->mu);
    if (s->r && s->waiting) {
        stream_resume_locked(s);
    } else if (s->r) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(s->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (ci && ci->connect_fd >= 0)
            shutdown(ci->connect_fd, SHUT_RDWR);
        http_daemon_kick(s->srv);
    }
    pthread_mutex_unlock(&s->mu);
}

static void stream_abort_post(void *ud)
{
    http_stream *s = ud;
    stream_abort_here(s);
    http_stream_release(s);
}

void http_stream_abort(http_stream *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    int live = s->r != NULL;
    s->aborting = 1;
    ioloop *io = s->io;
    pthread_mutex_unlock(&s->mu);
    if (!live)
        return;
    if (ioloop_current() == io) {
        stream_abort_here(s);
        return;
    }
    atomic_fetch_add(&s->refs, 1);
    if (!io || ioloop_post(io, stream_abort_post, s) != 0)
        http_stream_release(s); /* the loop is stopping: the daemon's stop closes the connection */
}

/* ---- libmicrohttpd's side (the loop thread running the daemon) ---- */

static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max)
{
    (void)pos;
    http_stream *s = cls;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        int aborting = s->aborting;
        s->woken = 0;
        pthread_mutex_unlock(&s->mu);
        if (aborting)
            return MHD_CONTENT_READER_END_WITH_ERROR;
        long n = s->ops.read(s->ud, out, max);
        if (n > 0)
            return (ssize_t)n;
        if (n == HTTP_STREAM_END)
            return MHD_CONTENT_READER_END_OF_STREAM;
        if (n != 0)
            return MHD_CONTENT_READER_END_WITH_ERROR;
        pthread_mutex_lock(&s->mu);
        if (s->aborting || s->ending || s->woken) {
            int again = s->woken && !s->aborting && !s->ending;
            int ending = s->ending && !s->aborting;
            pthread_mutex_unlock(&s->mu);
            if (again)
                continue; /* bytes came after the producer said "nothing" */
            return ending ? MHD_CONTENT_READER_END_OF_STREAM : MHD_CONTENT_READER_END_WITH_ERROR;
        }
        s->waiting = 1;
        http_daemon_suspend(s->conn);
        pthread_mutex_unlock(&s->mu);
        return 0;
    }
}

/* The response is destroyed (its connection is done with it): the producer is closed. */
static void stream_free(void *cls)
{
    http_stream *s = cls;
    pthread_mutex_lock(&s->mu);
    s->r = NULL;
    pthread_mutex_unlock(&s->mu);
    stream_close(s);
    http_stream_release(s);
}

struct MHD_Response *http_stream_response(kreq *r, int draining)
{
    http_stream *s = r->stream;
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, STREAM_BLOCK, stream_read, s, stream_free);
    if (!resp)
        return NULL;
    pthread_mutex_lock(&s->mu);
    s->r = r;
    s->conn = r->conn;
    s->srv = r->srv;
    s->io = ioloop_current();
    s->ending = draining;
    pthread_mutex_unlock(&s->mu);
    r->stream = NULL; /* its reference is the response's now */
    r->stream_live = s;
    return resp;
}

/* A stream never queued: the request's reference goes (and with it, unless the creator still holds
 * one, the producer). */
static void stream_unstarted_drop(kreq *r)
{
    http_stream *s = r->stream;
    r->stream = NULL;
    if (!s)
        return;
    stream_close(s);
    http_stream_release(s);
}

void http_stream_replaced(kreq *r)
{
    stream_unstarted_drop(r);
}

void http_stream_req_end(kreq *r)
{
    stream_unstarted_drop(r);
    http_stream *s = r->stream_live;
    r->stream_live = NULL;
    if (!s)
        return;
    pthread_mutex_lock(&s->mu); /* the connection is going: wake and abort leave it alone */
    s->r = NULL;
    s->waiting = 0;
    pthread_mutex_unlock(&s->mu);
}

void http_stream_client_left(kreq *r)
{
    http_stream *s = r->stream_live;
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->aborting = 1;
    if (s->r && s->waiting)
        stream_resume_locked(s);
    pthread_mutex_unlock(&s->mu);
}

void http_stream_quiesce(kreq *r)
{
    http_stream *s = r->stream_live;
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->ending = 1;
    if (s->r && s->waiting)
        stream_resume_locked(s);
    pthread_mutex_unlock(&s->mu);
}
