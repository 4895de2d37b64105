/* http_internal: what server.c (the life of a request) and daemons.c (one libmicrohttpd daemon per
 * I/O loop) share inside src/http. */
#ifndef KAILASH_HTTP_INTERNAL_H
#define KAILASH_HTTP_INTERNAL_H

#include <microhttpd.h>
#include <stdarg.h>

#include "kailash/http.h"

/* server.c: libmicrohttpd's callbacks, on the thread running the daemon. */
enum MHD_Result http_on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                const char *version, const char *data, size_t *data_size, void **con_cls);
void http_on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode t);
void http_on_mhd_log(void *cls, const char *fmt, va_list ap);

/* daemons.c: the daemon the calling thread is running (kreq->srv), NULL on other threads. */
void *http_daemon_current(void);
/* daemons.c: after MHD_resume_connection on one of srv's connections, makes its loop run the daemon
 * again. Any thread. */
void http_daemon_kick(void *srv);
/* daemons.c: MHD_suspend_connection through mhd_park_suspend, with the connection's socket. */
void http_daemon_suspend(struct MHD_Connection *c);
/* daemons.c: c, one of srv's connections, has request r in progress (NULL: not any more). A
 * connection without one is idle, and closed at once when the server starts draining; one with one
 * is told when its client leaves (http_server_client_left). */
void http_daemon_busy(void *srv, struct MHD_Connection *c, kreq *r);
/* server.c: on the loop thread, the client of r's connection shut its side (EPOLLRDHUP): a request
 * waiting on its handler is told (http_req_on_leave), and its connection is closed unanswered. */
void http_server_client_left(kreq *r);

/* server.c: from now on every answer carries `Connection: close` (the server is draining). */
void http_server_drain(void);

/* tls.c: whether cfg asks for TLS; the certificate callback for MHD_OPTION_HTTPS_CERT_CALLBACK (a
 * gnutls_certificate_retrieve_function2 *). */
int http_tls_configured(const kconfig *cfg);
void *http_tls_callback(void);

/* mhd_park.c: a suspended connection keeps its place in its daemon's epoll set (see the file). One
 * per daemon, used by the loop thread running it. */
typedef struct {
    const void *c; /* the connection, NULL for a free slot */
    int fd;
} mhd_parked;

enum { FD_PARKED = 1, FD_EMPTY = 2, FD_HUP = 4 }; /* mhd_park.fdst bits */

typedef struct mhd_park {
    int epfd; /* the daemon's epoll set */
    int on;   /* parking is on (libmicrohttpd 0.9.75) */
    mhd_parked *set; /* parked connections, open addressing */
    size_t cap, n;
    unsigned char *fdst; /* by socket: FD_PARKED, FD_EMPTY (the last read found nothing, no event
                          * since), FD_HUP (the client shut its side) */
    size_t nfd;
    size_t kept;   /* DELs and ADDs not made */
    size_t hidden; /* events of suspended connections kept from the daemon */
    size_t spared; /* reads answered EAGAIN without the kernel */
    int quiet;     /* the set gave all it had, and the loop has not seen it readable since */
    size_t quiet_skips; /* the daemon's waits skipped for it */
} mhd_park;

/* What parking saved on one daemon, for /metrics (http_loop_stats). */
typedef struct mhd_park_counters {
    size_t kept, hidden, spared, quiet_skips;
} mhd_park_counters;

int mhd_park_version_ok(const char *version);
/* p's counters so far; on the thread running p's daemon. */
mhd_park_counters mhd_park_counters_get(const mhd_park *p);
void mhd_park_init(mhd_park *p, int epfd, int enable);
void mhd_park_free(mhd_park *p);
/* This thread runs p's daemon from now on. */
void mhd_park_enter(mhd_park *p);
/* The loop saw the daemon's epoll set readable: the daemon's next wait asks the kernel. */
void mhd_park_wake(mhd_park *p);
/* MHD_suspend_connection(c), parking c (socket fd) if the daemon takes it out of the set. */
void mhd_park_suspend(struct MHD_Connection *c, int fd);
/* The loop saw the client shut its side of socket fd: from now on every read asks the kernel, which
 * has the FIN (it may have come with the request, in the same edge as its bytes). */
void mhd_park_hup(mhd_park *p, int fd);
/* c (socket fd) is closing: if parked, it leaves the set now. */
void mhd_park_closed(mhd_park *p, const struct MHD_Connection *c, int fd);
int mhd_park_has(const mhd_park *p, const void *c);
size_t mhd_park_count(const mhd_park *p);
/* The parked set itself (tests): add is 0 or -1 (out of memory), remove is 1 if c was there. */
int mhd_park_add(mhd_park *p, const void *c, int fd);
int mhd_park_remove(mhd_park *p, const void *c);

#endif
