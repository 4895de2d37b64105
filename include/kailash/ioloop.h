/* ioloop: an I/O loop (src/engine/ioloop.c). A thread running libcurl's multi-socket API on epoll,
 * and its own plain HTTP/1.1 client for http:// upstreams at numeric addresses (ioloop_h1_add);
 * transfers of HTTP-type nodes run here, so waiting on an upstream costs a socket, not a thread. The
 * engine runs one loop per worker; the transfers of one loop share its keep-alive connections to
 * upstreams (the multi handle's connection cache, and the plain client's idle pool).
 *
 * A loop may host one guest: another event source that shares its thread. The HTTP front end puts
 * one libmicrohttpd daemon on each loop, so a request, its upstream calls and its answer all stay
 * on one thread (no hand-off, no wake-up of another thread).
 *
 * Callbacks run on the loop's thread and must be short: hand real work to the worker pool. */
#ifndef KAILASH_IOLOOP_H
#define KAILASH_IOLOOP_H

#include <curl/curl.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

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

/* Runs fn(ud) on the loop thread and returns after it did (at once when called on that thread).
 * Returns 0, or -1 when the loop is stopping or out of memory (fn not called). */
int ioloop_call(ioloop *io, void (*fn)(void *ud), void *ud);

/* The loop whose thread is calling, or NULL on any other thread. */
ioloop *ioloop_current(void);

/* A guest's callbacks, all on the loop thread. */
typedef struct ioloop_guest {
    void (*on_event)(void *ud, int fd, uint32_t events); /* an fd it watches is ready */
    int (*wait_ms)(void *ud); /* before each sleep: the longest it may last, -1 for no limit */
    void (*after)(void *ud);  /* after each round of socket events, adds, curl timeouts and timers */
    void *ud;
} ioloop_guest;

/* Loop thread only (from ioloop_call or a guest callback). set_guest copies g; NULL detaches.
 * watch adds fd to the loop's epoll set with the given events (EPOLLET allowed), reported to the
 * guest's on_event; an fd that is closed leaves the set by itself. */
void ioloop_set_guest(ioloop *io, const ioloop_guest *g);
int ioloop_watch(ioloop *io, int fd, uint32_t events);
void ioloop_unwatch(ioloop *io, int fd);

/* ---- plain HTTP/1.1 transfers (src/engine/h1.c) ----
 * For an http:// upstream at a numeric address the loop speaks HTTP/1.1 itself instead of through
 * libcurl: one send and one read per call on a kept-alive connection, no per-transfer setup. It
 * keeps its own pool of idle connections per address (up to the loop's max_connects), each watched
 * for the upstream closing it. A request that finds a reused connection dead before any byte of the
 * answer arrived is sent once more on a new connection (as libcurl does). */

typedef struct ioloop_h1_req {
    struct sockaddr_storage addr; /* where to connect: AF_INET or AF_INET6 with its port */
    socklen_t addrlen;
    struct sockaddr_storage alt; /* altlen != 0: tried when connecting to addr fails (a name's */
    socklen_t altlen;            /* second address, as libcurl would try it) */
    const char *data;            /* the whole request as sent (line, headers, blank line, body); borrowed until done */
    size_t len;
    int no_body;               /* a HEAD request: the answer has no body */
    double timeout_ms;         /* the whole transfer, connecting included (> 0) */
    double connect_timeout_ms; /* connecting (> 0) */
    size_t max_bytes;          /* > 0: the answer's bytes as received (framing included) stop there */
    /* The answer, on the loop thread, in libcurl's callback shape: return n to go on, anything else
     * ends the transfer with CURLE_WRITE_ERROR. on_header gets each line as received (status line,
     * header lines, then the blank line; those of 1xx answers too), on_body the decoded body. */
    size_t (*on_header)(char *line, size_t n, void *ud);
    size_t (*on_body)(char *p, size_t n, void *ud);
} ioloop_h1_req;

typedef struct ioloop_h1_result {
    CURLcode code;   /* CURLE_OK, or the libcurl code for the same failure (COULDNT_CONNECT, ...;
                      * FILESIZE_EXCEEDED past max_bytes) */
    long status;     /* the final answer's status, 0 when none */
    int connected;   /* a connection was made or reused */
    double total_ms; /* from ioloop_h1_add to the end */
    char error[192]; /* a message for code != CURLE_OK (names no header and no body) */
} ioloop_h1_result;

typedef void (*ioloop_h1_done_fn)(const ioloop_h1_result *r, void *ud);

/* Starts a transfer (req is copied; req->data stays borrowed). Thread-safe like ioloop_add, and done
 * is called once on the loop thread (with CURLE_ABORTED_BY_CALLBACK when the loop stops first).
 * Returns 0, or -1 (done will not be called). */
int ioloop_h1_add(ioloop *io, const ioloop_h1_req *req, ioloop_h1_done_fn done, void *ud);

/* Transfers currently in the loop (for tests and metrics). Thread-safe. */
size_t ioloop_inflight(ioloop *io);

#endif
