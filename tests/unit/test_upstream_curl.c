/* Tests of libcurl's multi handle as a client of the I/O loop (src/upstream/curl_multi.c) against a
 * real local HTTP server: a libmicrohttpd daemon on 127.0.0.1, port chosen by the kernel, one thread
 * per connection so that a slow answer can sleep. The server counts connections (keep-alive checks)
 * and requests. */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "kailash/ioloop.h"
#include "kailash/upstream.h"
#include "kailash/util.h"
#include "wait_count.h"

/* ---- a small local server ---- */

typedef struct srv {
    struct MHD_Daemon *d;
    int port;
    atomic_int connections;
    atomic_int requests;
    atomic_int stopping;
} srv;

static void srv_on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                              enum MHD_ConnectionNotificationCode code)
{
    (void)c;
    (void)socket_context;
    srv *s = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED)
        atomic_fetch_add(&s->connections, 1);
}

/* Sleeps ms in small steps, cut short when the server stops. */
static void srv_sleep(srv *s, long ms)
{
    for (long t = 0; t < ms && !atomic_load(&s->stopping); t += 10)
        usleep(10000);
}

static enum MHD_Result srv_handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                   const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
    (void)method;
    (void)version;
    (void)upload;
    srv *s = cls;
    if (!*con_cls) {
        *con_cls = (void *)1;
        return MHD_YES;
    }
    if (*upload_size) {
        *upload_size = 0;
        return MHD_YES;
    }
    atomic_fetch_add(&s->requests, 1);
    if (strcmp(url, "/slow") == 0) {
        const char *ms = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "ms");
        srv_sleep(s, ms ? atol(ms) : 1000);
    }
    static const char body[] = "{\"ok\":true}";
    struct MHD_Response *r = MHD_create_response_from_buffer(sizeof body - 1, (void *)body, MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result ret = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ret;
}

/* idle_s: seconds after which the server closes an idle kept-alive connection (0: never). */
static srv *srv_start_idle(unsigned idle_s)
{
    srv *s = calloc(1, sizeof *s);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = 0, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    s->d = MHD_start_daemon(MHD_USE_AUTO | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0, NULL,
                            NULL, srv_handler, s, MHD_OPTION_SOCK_ADDR, &sin, MHD_OPTION_NOTIFY_CONNECTION,
                            srv_on_connection, s, MHD_OPTION_CONNECTION_LIMIT, (unsigned)1000,
                            MHD_OPTION_CONNECTION_TIMEOUT, idle_s, MHD_OPTION_END);
    cr_assert_not_null(s->d, "MHD_start_daemon");
    s->port = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT)->port;
    return s;
}

static srv *srv_start(void)
{
    return srv_start_idle(0);
}

static void srv_stop(srv *s)
{
    atomic_store(&s->stopping, 1);
    MHD_stop_daemon(s->d);
    free(s);
}

/* ---- helpers ---- */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;

/* Waits until *counter reaches n (under lock), at most timeout_ms. Returns the final value. */
static int wait_count(const int *counter, int n, int timeout_ms)
{
    return wait_count_on(&lock, &cond, counter, n, timeout_ms);
}

typedef struct xfer_result {
    int done;
    CURLcode rc;
    up_code code;
    void *private_seen;
    int after_rc; /* ioloop_post's answer from inside done */
} xfer_result;

static ioloop *the_io;
static int n_done;

static size_t discard(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return size * n;
}

static CURL *easy_for(int port, const char *path, xfer_result *r)
{
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    CURL *e = curl_easy_init();
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(e, CURLOPT_PRIVATE, r); /* the loop borrows it and must restore it */
    return e;
}

static void noop(void *ud)
{
    (void)ud;
}

static void on_xfer_done(CURL *e, up_code code, CURLcode rc, void *ud)
{
    xfer_result *r = ud;
    r->code = code;
    curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&r->private_seen);
    r->after_rc = ioloop_post(the_io, noop, NULL);
    curl_easy_cleanup(e);
    pthread_mutex_lock(&lock);
    r->rc = rc;
    r->done = 1;
    n_done++;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
}

/* A loop with the upstream module's clients on it. */
static ioloop *make_loop(long max_connects)
{
    char err[128];
    ioloop *io = ioloop_create(err, sizeof err);
    cr_assert_not_null(io, "%s", err);
    cr_assert_eq(upstream_loop_start(io, max_connects, err, sizeof err), 0, "%s", err);
    return io;
}

typedef struct add_arg {
    CURL *e;
    up_curl_done_fn done;
    void *ud;
    up_curl_xfer *x;
} add_arg;

static void add_on_loop(void *p)
{
    add_arg *a = p;
    a->x = up_curl_start(a->e, a->done, a->ud);
}

/* Starts e on the_io's thread (up_curl_start is for the loop thread only). 0, or -1 when refused. */
static int curl_add(CURL *e, up_curl_done_fn done, void *ud)
{
    add_arg a = {e, done, ud, NULL};
    return ioloop_call(the_io, add_on_loop, &a) == 0 && a.x ? 0 : -1;
}

static void setup(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    n_done = 0;
    char err[128];
    the_io = make_loop(64);
    (void)err;
}

static void teardown(void)
{
    ioloop_destroy(the_io);
    curl_global_cleanup();
}

TestSuite(curl_multi, .init = setup, .fini = teardown, .timeout = 30);

Test(curl_multi, create_and_destroy_idle)
{
    cr_assert_eq(upstream_inflight(the_io), 0);
}

/* ---- transfers ---- */

Test(curl_multi, one_transfer_completes_and_gives_back_private)
{
    srv *s = srv_start();
    xfer_result r = {0};
    cr_assert_eq(curl_add(easy_for(s->port, "/", &r), on_xfer_done, &r), 0);
    cr_assert_eq(wait_count(&n_done, 1, 10000), 1);
    cr_assert_eq(r.rc, CURLE_OK, "%s", curl_easy_strerror(r.rc));
    cr_assert_eq(r.private_seen, &r, "CURLOPT_PRIVATE was not restored");
    cr_assert_eq(r.after_rc, 0);
    cr_assert_eq(upstream_inflight(the_io), 0);
    srv_stop(s);
}

Test(curl_multi, curl_timeout_fires_through_the_timer_callback)
{
    srv *s = srv_start();
    xfer_result r = {0};
    CURL *e = easy_for(s->port, "/slow?ms=3000", &r);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 200L);
    double t0 = util_now_ms();
    cr_assert_eq(curl_add(e, on_xfer_done, &r), 0);
    cr_assert_eq(wait_count(&n_done, 1, 10000), 1);
    double elapsed = util_now_ms() - t0;
    cr_assert_eq(r.rc, CURLE_OPERATION_TIMEDOUT, "%s", curl_easy_strerror(r.rc));
    cr_assert(elapsed >= 190 && elapsed < 1500, "timed out after %.0f ms", elapsed);
    srv_stop(s);
}

/* Sequential transfers on one loop reuse one kept-alive connection. */
Test(curl_multi, sequential_transfers_reuse_one_connection)
{
    srv *s = srv_start();
    xfer_result r[5] = {{0}};
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(curl_add(easy_for(s->port, "/", &r[i]), on_xfer_done, &r[i]), 0);
        cr_assert_eq(wait_count(&n_done, i + 1, 10000), i + 1);
        cr_assert_eq(r[i].rc, CURLE_OK);
    }
    cr_assert_eq(atomic_load(&s->requests), 5);
    cr_assert_eq(atomic_load(&s->connections), 1, "connections: %d", atomic_load(&s->connections));
    srv_stop(s);
}

static double cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A kept-alive connection stays in the loop's epoll set between transfers; when the server closes it
 * while it is idle, the loop must neither spin on it nor lose the next transfer (libcurl reconnects). */
Test(curl_multi, server_closing_an_idle_connection_neither_spins_nor_breaks_the_next)
{
    srv *s = srv_start_idle(1);
    xfer_result r[2] = {{0}};
    cr_assert_eq(curl_add(easy_for(s->port, "/", &r[0]), on_xfer_done, &r[0]), 0);
    cr_assert_eq(wait_count(&n_done, 1, 10000), 1);
    cr_assert_eq(r[0].rc, CURLE_OK);
    double cpu0 = cpu_seconds();
    usleep(2500 * 1000); /* the server drops the idle connection after about 1 s */
    double busy = cpu_seconds() - cpu0;
    cr_assert_lt(busy, 1.0, "the process used %.2f s of CPU while idle: the loop spun on a closed socket", busy);
    cr_assert_eq(curl_add(easy_for(s->port, "/", &r[1]), on_xfer_done, &r[1]), 0);
    cr_assert_eq(wait_count(&n_done, 2, 10000), 2);
    cr_assert_eq(r[1].rc, CURLE_OK, "%s", curl_easy_strerror(r[1].rc));
    cr_assert_eq(atomic_load(&s->connections), 2, "connections: %d", atomic_load(&s->connections));
    srv_stop(s);
}

/* 200 transfers of 300 ms each run side by side: far less than 200 x 300 ms. */
Test(curl_multi, two_hundred_concurrent_transfers)
{
    srv *s = srv_start();
    enum { N = 200 };
    xfer_result *r = calloc(N, sizeof *r);
    double t0 = util_now_ms();
    for (int i = 0; i < N; i++)
        cr_assert_eq(curl_add(easy_for(s->port, "/slow?ms=300", &r[i]), on_xfer_done, &r[i]), 0);
    cr_assert_geq(upstream_inflight(the_io), N / 2);
    cr_assert_eq(wait_count(&n_done, N, 20000), N);
    double elapsed = util_now_ms() - t0;
    for (int i = 0; i < N; i++)
        cr_assert_eq(r[i].rc, CURLE_OK, "transfer %d: %s", i, curl_easy_strerror(r[i].rc));
    cr_assert_lt(elapsed, 5000.0, "200 transfers took %.0f ms", elapsed);
    cr_assert_eq(atomic_load(&s->requests), N);
    cr_assert_eq(upstream_inflight(the_io), 0);
    free(r);
    srv_stop(s);
}

typedef struct adder_arg {
    int port;
    xfer_result *r;
    int n;
} adder_arg;

static void *add_many(void *p)
{
    adder_arg *a = p;
    for (int i = 0; i < a->n; i++)
        curl_add(easy_for(a->port, "/", &a->r[i]), on_xfer_done, &a->r[i]);
    return NULL;
}

Test(curl_multi, adds_from_several_threads)
{
    srv *s = srv_start();
    enum { T = 8, PER = 25 };
    xfer_result *r = calloc(T * PER, sizeof *r);
    adder_arg args[T];
    pthread_t th[T];
    for (int i = 0; i < T; i++) {
        args[i] = (adder_arg){s->port, r + i * PER, PER};
        pthread_create(&th[i], NULL, add_many, &args[i]);
    }
    for (int i = 0; i < T; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(wait_count(&n_done, T * PER, 20000), T * PER);
    for (int i = 0; i < T * PER; i++)
        cr_assert_eq(r[i].rc, CURLE_OK);
    free(r);
    srv_stop(s);
}

Test(curl_multi, destroy_aborts_transfers_in_flight)
{
    srv *s = srv_start();
    xfer_result r[3] = {{0}};
    for (int i = 0; i < 3; i++)
        cr_assert_eq(curl_add(easy_for(s->port, "/slow?ms=5000", &r[i]), on_xfer_done, &r[i]), 0);
    usleep(200 * 1000);
    double t0 = util_now_ms();
    ioloop_destroy(the_io);
    double elapsed = util_now_ms() - t0;
    cr_assert_eq(n_done, 3);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(r[i].rc, CURLE_ABORTED_BY_CALLBACK);
        cr_assert_eq(r[i].code, UP_STOPPING);
        cr_assert_eq(r[i].after_rc, -1, "ioloop_post must refuse while the loop stops");
    }
    cr_assert_lt(elapsed, 1000.0);
    the_io = make_loop(8); /* for teardown */
    srv_stop(s);
}

Test(curl_multi, add_rejects_bad_arguments)
{
    cr_assert_eq(curl_add(NULL, on_xfer_done, NULL), -1);
    CURL *e = curl_easy_init();
    cr_assert_null(up_curl_start(e, on_xfer_done, NULL), "not on a loop's thread: refused");
    curl_easy_cleanup(e);
    cr_assert_eq(upstream_inflight(NULL), 0);
}
