/* test_wait: a step that parks, for the tests of the chain's waiting path (the way the rate-limit and
 * cache steps will wait on Redis). Inert unless the daemon started with KAILASH_TEST_CHAIN_WAIT=1;
 * then a request with `X-Test-Wait-Ms: N` (1..10000) waits N ms on a timer of its own loop before
 * the body is read, and goes on; with `X-Test-Wait-Answer: 1` too, the step answers 503 after the
 * wait instead. Nothing else changes. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kailash/ioloop.h"
#include "kailash/middleware.h"

static int g_enabled;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void test_wait_init(void)
{
    const char *e = getenv("KAILASH_TEST_CHAIN_WAIT");
    g_enabled = e && strcmp(e, "1") == 0;
}

/* The request's wait: a loop timer in a record of its own (the request has no room for one). */
typedef struct test_wait {
    io_timer t;
    kreq *r;
} test_wait;

static void test_wait_done(io_timer *t)
{
    test_wait *w = t->ud;
    kreq *r = w->r;
    free(w);
    int answer = http_req_header(r, "X-Test-Wait-Answer") != NULL;
    if (answer)
        http_reply_error(r, 503, "unavailable", "test_wait answered after its wait", NULL);
    http_chain_continue(r, answer);
}

int mw_test_wait_before(kreq *r)
{
    pthread_once(&g_once, test_wait_init);
    const char *h = g_enabled ? http_req_header(r, "X-Test-Wait-Ms") : NULL;
    char *end;
    long ms = h ? strtol(h, &end, 10) : 0;
    if (!h || *end || ms < 1 || ms > 10000)
        return MW_NEXT;
    ioloop *io = ioloop_current();
    test_wait *w = io ? malloc(sizeof *w) : NULL;
    if (!w)
        return MW_NEXT;
    w->r = r;
    ioloop_timer_init(&w->t, test_wait_done, w);
    if (ioloop_timer_start(io, &w->t, (double)ms) != 0) {
        free(w);
        return MW_NEXT;
    }
    return MW_PARKED;
}
