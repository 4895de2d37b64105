/* h1: the I/O loop's own plain HTTP/1.1 client (src/engine/h1.c), behind ioloop_h1_add. Private to
 * src/engine: only ioloop.c calls it, always on the loop thread except h1_xfer_new. */
#ifndef KAILASH_ENGINE_H1_H
#define KAILASH_ENGINE_H1_H

#include <stdatomic.h>
#include <stdint.h>

#include "kailash/ioloop.h"

/* epoll data of the client's sockets: this tag, then the fd in the low half. */
#define IO_H1_TAG (UINT64_C(2) << 32)

typedef struct h1_client h1_client;
typedef struct h1_xfer h1_xfer;

/* A client adding its sockets to epfd, keeping at most max_idle idle connections, and counting
 * finished transfers down in *inflight. NULL when out of memory. */
h1_client *h1_client_new(int epfd, long max_idle, atomic_size_t *inflight);
/* Closes the idle connections and frees c; no transfer may be active (h1_abort_all first). */
void h1_client_free(h1_client *c);

/* A transfer not yet started (any thread); NULL when out of memory. Queue it through next. */
h1_xfer *h1_xfer_new(const ioloop_h1_req *req, ioloop_h1_done_fn done, void *ud);
h1_xfer *h1_xfer_next(const h1_xfer *x);
void h1_xfer_set_next(h1_xfer *x, h1_xfer *next);

/* Starts x (it now belongs to c until its done runs). */
void h1_xfer_start(h1_client *c, h1_xfer *x);
/* Ends a transfer that never started with CURLE_ABORTED_BY_CALLBACK (the loop is stopping). */
void h1_xfer_abort(h1_xfer *x, atomic_size_t *inflight);

/* An event on one of the client's sockets (tagged IO_H1_TAG). */
void h1_on_event(h1_client *c, int fd, uint32_t events);
/* The earliest deadline of an active transfer (util_now_ms clock), or -1 for none. */
double h1_due_ms(const h1_client *c);
/* Ends the transfers whose deadline passed with CURLE_OPERATION_TIMEDOUT. */
void h1_run_timeouts(h1_client *c);
/* Ends every active transfer with CURLE_ABORTED_BY_CALLBACK. */
void h1_abort_all(h1_client *c);

#endif
