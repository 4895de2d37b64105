/* loop: what the upstream module keeps per I/O loop (its plain client and its multi handle), found
 * through one loop-local key, and the result codes' texts.
 *
 * Both clients are made on the loop's thread (upstream_loop_start goes there through ioloop_call) and
 * end there, in the loop's stop hook: transfers still in flight end with UP_STOPPING, waits on the
 * resolver are answered "did not resolve", then both clients are freed. Their done callbacks run
 * while the loop refuses posts, and find no upstream state on it, so nothing new starts. */
#include <pthread.h>
#include <stdlib.h>

#include "upstream_internal.h"

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_key = -1;
static _Thread_local up_loop *t_loop;

static void up_key_init(void)
{
    g_key = ioloop_key_new();
}

up_loop *up_loop_current(void)
{
    return t_loop && !t_loop->stopping ? t_loop : NULL;
}

void up_resolve_sweep(ioloop *io); /* resolve.c */

static int up_loop_on_stop(io_hook *h)
{
    up_loop *l = h->ud;
    l->stopping = 1;
    h1_client_abort_all(l->h1);
    curl_client_abort_all(l->curl);
    up_resolve_sweep(l->io);
    h1_client_free(l->h1);
    curl_client_free(l->curl);
    ioloop_set_local(l->io, g_key, NULL);
    t_loop = NULL;
    ioloop_hook_remove(l->io, h); /* h is in l: unlinked before it goes (stop hooks after it walk the list) */
    free(l);
    return 0;
}

typedef struct up_start_arg {
    ioloop *io;
    long max_connects;
    int rc;
} up_start_arg;

static void up_loop_attach(void *ud)
{
    up_start_arg *a = ud;
    up_loop *l = calloc(1, sizeof *l);
    if (!l)
        return;
    l->io = a->io;
    atomic_init(&l->inflight, 0);
    l->h1 = h1_client_new(l, a->max_connects);
    l->curl = curl_client_new(l, a->max_connects);
    if (!l->h1 || !l->curl) {
        h1_client_free(l->h1);
        curl_client_free(l->curl);
        free(l);
        return;
    }
    ioloop_at_stop(a->io, &l->stop, up_loop_on_stop, l);
    ioloop_set_local(a->io, g_key, l);
    t_loop = l;
    a->rc = 0;
}

int upstream_loop_start(ioloop *io, long max_connects, char *err, size_t errlen)
{
    pthread_once(&g_once, up_key_init);
    up_start_arg a = {io, max_connects, -1};
    if (g_key < 0 || ioloop_call(io, up_loop_attach, &a) != 0 || a.rc != 0)
        return util_err(err, errlen, "upstream: cannot set up the I/O loop's HTTP clients");
    return 0;
}

size_t upstream_inflight(ioloop *io)
{
    up_loop *l = io ? ioloop_get_local(io, g_key) : NULL;
    return l ? atomic_load(&l->inflight) : 0;
}

const char *up_strerror(up_code c)
{
    static const char *const text[] = {
        [UP_OK] = "no error",
        [UP_COULDNT_CONNECT] = "could not connect",
        [UP_RESOLVE] = "could not resolve the host name",
        [UP_SEND_ERROR] = "failed sending the request",
        [UP_RECV_ERROR] = "failure receiving the answer",
        [UP_TIMEOUT] = "timed out",
        [UP_TOO_LARGE] = "the answer is larger than allowed",
        [UP_WRITE_ERROR] = "the answer was refused while being read",
        [UP_GOT_NOTHING] = "empty reply from the upstream",
        [UP_PARTIAL] = "the answer was cut short",
        [UP_BAD_ANSWER] = "the upstream's answer is not valid HTTP",
        [UP_TLS] = "TLS failure",
        [UP_NO_MEMORY] = "out of memory",
        [UP_STOPPING] = "the I/O loop is stopping",
        [UP_CANCELLED] = "cancelled",
        [UP_FAILED] = "the transfer failed",
    };
    return (unsigned)c <= UP_FAILED && text[c] ? text[c] : "unknown error";
}
