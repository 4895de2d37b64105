/* ioloop: an I/O loop (src/engine/ioloop.c). A thread running libcurl's multi-socket API on epoll;
 * transfers of HTTP-type nodes run here, so waiting on an upstream costs a socket, not a thread. The
 * engine runs one loop per worker and spreads runs over them; the transfers of one loop share its
 * multi handle's connection cache (keep-alive to upstreams).
 *
 * Callbacks run on the loop's thread and must be short: hand real work to the worker pool. */
#ifndef KAILASH_IOLOOP_H
#define KAILASH_IOLOOP_H

#include <curl/curl.h>
#include <stddef.h>

typedef struct ioloop ioloop;

/* Called on the loop thread when a transfer ends. The easy handle has been removed from the multi
 * handle: the callee owns it again (curl_easy_cleanup it, or reuse it). */
typedef void (*ioloop_done_fn)(CURL *easy, CURLcode result, void *ud);

/* Creates the loop and starts its thread. max_connects: size of the keep-alive pool. NULL on error. */
ioloop *ioloop_create(long max_connects, char *err, size_t errlen);

/* Stops the thread; transfers still running end with CURLE_ABORTED_BY_CALLBACK (their done is
 * called), then pending timers fire at once on the calling thread (so their owners can let go of
 * what they hold); ioloop_add and ioloop_after refuse from then on. */
void ioloop_destroy(ioloop *io);

/* Adds a configured easy handle. Thread-safe. Returns 0, or -1 (done will not be called). */
int ioloop_add(ioloop *io, CURL *easy, ioloop_done_fn done, void *ud);

/* Calls fn(ud) on the loop thread after delay_ms (for retry backoff). Thread-safe. Returns 0 or -1. */
int ioloop_after(ioloop *io, double delay_ms, void (*fn)(void *ud), void *ud);

/* Transfers currently in the loop (for tests and metrics). Thread-safe. */
size_t ioloop_inflight(ioloop *io);

#endif
