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

#endif
