/* events: what runs emit as they go (API.md "Events (SSE)"), kept per run for late clients and
 * streamed to GET /runs/{id}/events and /execute's stream mode (src/events/).
 *
 *   events.c   events_start/stop: the engine's listener, the settings, the sweep timer.
 *   buffer.c   one append-only buffer per run with events on: each event an id (1, 2, ... within
 *              the run), its name and its data (compact JSON), and the run's subscribers. A buffer
 *              lives EVENTS_KEEP_MS after its run's last event; memory is bounded per run and in
 *              total (the EVENTS_*_MAX limits: node events past them are not kept, the run's end
 *              always is).
 *   sub.c      a subscriber: the SSE bytes waiting for one client, bounded (EVENTS_SUB_MAX_BYTES:
 *              a client that falls that far behind is dropped, never the run slowed), handed to
 *              the client's connection on its own loop (http_reply_stream), heartbeats.
 *   frame.c    an event's data object and its SSE frame; Last-Event-ID.
 *   remote.c   with redis_url: every event is also XADDed to the stream kailash:events:{run_id}
 *              (MAXLEN, EXPIRE EVENTS_KEEP_MS), and a client of another instance follows it.
 *
 * Nothing reaches this module for runs without run_opts.events: a run nobody asked events of costs
 * the engine one branch per node, and this module nothing. */
#ifndef KAILASH_EVENTS_H
#define KAILASH_EVENTS_H

#include <stddef.h>
#include <stdint.h>

#include "kailash/config.h"
#include "kailash/http.h"

struct ioloop;

#define EVENTS_KEEP_MS 600000.0            /* a buffer's life after its run's last event (KAILASH_EVENTS_KEEP_MS) */
#define EVENTS_RUN_MAX_EVENTS 10000        /* events kept per run */
#define EVENTS_RUN_MAX_BYTES (1u << 20)    /* bytes of event data kept per run */
#define EVENTS_TOTAL_MAX_BYTES (64u << 20) /* bytes of event data kept in all */
#define EVENTS_SUB_MAX_BYTES (256u << 10)  /* bytes waiting for one client before it is dropped */
#define EVENTS_OUTPUTS_MAX 65536           /* node outputs larger than this are left out of events */
#define EVENTS_HEARTBEAT_MS 15000          /* ": keepalive" comment interval (KAILASH_SSE_HEARTBEAT_MS) */

/* Sets the engine's listener and starts what events need (the sweep timer on loops[0]; with
 * redis_url, publishing across instances). Before the first run. 0, or -1 with err. Reads
 * KAILASH_SSE_HEARTBEAT_MS and KAILASH_EVENTS_KEEP_MS once (tests shorten them). */
int events_start(const kconfig *cfg, struct ioloop *const *loops, int nloops, char *err, size_t errlen);
/* Stops the listener and frees every buffer (after http_server_stop: no subscriber is left). */
void events_stop(void);

/* ---- buffers (buffer.c; every function thread-safe) ---- */

enum { EVENTS_FMT_SSE = 0, EVENTS_FMT_SDK = 1 };

/* Appends one event to run_id's buffer (made, owned by principal, when the run has none) and pushes
 * it to its subscribers: what the listener does for each engine event, and the Redis follower for a
 * remote one. name is one of API.md's event names; data is its JSON object text (copied); final
 * marks the run's end (run_completed, run_failed). Returns the event's id, 0 out of memory. */
uint64_t events_feed(const char *run_id, const char *principal, const char *name, const char *data, size_t len,
                     int final);
/* Frees the buffers of ended runs whose last event is older than keep_ms at now_ms (and of runs
 * idle for 6 keep_ms whatever their state), unless a client follows them. How many it freed. */
size_t events_sweep(double now_ms, double keep_ms);
/* Bytes of event data kept in all, and buffers alive (tests, metrics). */
size_t events_bytes(void);
size_t events_runs(void);

/* ---- subscribers (sub.c) ---- */

typedef struct events_sub events_sub;

typedef struct events_sub_opts {
    const char *run_id;
    uint64_t after_id;      /* Last-Event-ID: only events with a larger id (0: all) */
    const char *visible_to; /* NULL: any caller may follow; else only a run of this principal */
    const char *create_for; /* non-NULL: a run with no buffer yet gets one owned by this principal
                             * (a run about to start); NULL: no buffer, no subscriber */
    int format;             /* EVENTS_FMT_SSE: API.md's stream; EVENTS_FMT_SDK: the SDK's /execute stream
                             * (node events only, numbered by the subscriber; the owner pushes the rest) */
    struct ioloop *io;      /* the loop of the client's connection */
    size_t max_bytes;       /* 0: EVENTS_SUB_MAX_BYTES */
} events_sub_opts;

enum { EVENTS_OK = 0, EVENTS_NO_BUFFER = 1, EVENTS_NOT_VISIBLE = 2, EVENTS_NOMEM = -1 };

/* A subscriber of o->run_id's buffer: the events after o->after_id are queued at once, later ones
 * as they come. EVENTS_OK with *out (the caller's reference: hand it to events_sub_reply or
 * events_sub_release), EVENTS_NO_BUFFER (none here, and create_for NULL), EVENTS_NOT_VISIBLE (the
 * run is another principal's), EVENTS_NOMEM. */
int events_subscribe(const events_sub_opts *o, events_sub **out);
/* A subscriber of no buffer (a run of another instance, or an answer made from a run record): fed
 * with events_sub_push only. NULL out of memory. */
events_sub *events_sub_new(int format, struct ioloop *io, size_t max_bytes);
/* Queues one frame: "id: ID\nevent: NAME\ndata: DATA\n\n" (no id line when id is 0; with
 * EVENTS_FMT_SDK the subscriber's own next number). final: the stream ends once it is sent. A
 * comment (name NULL) is ": DATA\n\n". Any thread; nothing after the end. */
void events_sub_push(events_sub *s, uint64_t id, const char *name, const char *data, size_t len, int final);
/* Ends the stream once what is queued is sent. Any thread. */
void events_sub_finish(events_sub *s);
/* Whether the client is gone (the stream closed or dropped): its feeders may stop. Any thread. */
int events_sub_closed(events_sub *s);
/* The id of the last event queued (EVENTS_FMT_SSE), for a follower that resumes after it. */
uint64_t events_sub_last_id(events_sub *s);
/* Answers r with the subscriber's stream: 200 text/event-stream, Cache-Control: no-cache,
 * heartbeats every KAILASH_SSE_HEARTBEAT_MS. Takes the caller's reference to s (also on failure:
 * then a 500 is set). Where http_reply_* may be called (a handler, or its thread before
 * http_complete). */
void events_sub_reply(kreq *r, events_sub *s);
/* The stream's producer (http_stream_ops.read): up to max queued bytes into out; 0 nothing yet,
 * HTTP_STREAM_END after the end, HTTP_STREAM_ABORT once dropped. The client's loop thread (tests:
 * any one thread). */
long events_sub_read(events_sub *s, char *out, size_t max);
void events_sub_retain(events_sub *s);
void events_sub_release(events_sub *s);

/* ---- frames (frame.c) ---- */

/* The Last-Event-ID header's value as an event id: decimal digits only, at most 19 of them; 0 for
 * anything else (absent, empty, signs, spaces, overflow: the stream starts from the first event). */
uint64_t events_parse_last_id(const char *v);

/* ---- across instances (remote.c; with redis_url) ---- */

/* Whether remote publishing and following are on (redis_url set). */
int events_remote_on(void);
/* On the loop thread of r: looks for run_id's events in Redis and, when there are some the caller
 * may see (visible_to NULL, or the run's principal), answers r with a stream that follows them
 * from after_id, and completes r (HTTP_PENDING was returned). Otherwise calls fallback(r) on the
 * loop thread (no such events, Redis down). 0 if the lookup is under way, -1 when it cannot be
 * made (call fallback yourself). */
int events_remote_follow(kreq *r, const char *run_id, uint64_t after_id, const char *visible_to,
                         void (*fallback)(kreq *r));

#endif
