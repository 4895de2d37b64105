/* Tests of the HTTP-type nodes (HTTPRequestNode, RESTClientNode, LoadBalancerNode) against real
 * local upstreams, no mocks:
 *   - a libmicrohttpd daemon on 127.0.0.1 (kernel-chosen port, one thread per connection) with a
 *     few routes: /echo answers what it received on the wire (method, raw path and query,
 *     headers, body), /json, /text, /jsontext, /badjson, /latin1, /status/404, /big, /bigchunked,
 *     /slow, /flaky (503 while a counter lasts); it counts connections and requests;
 *   - a raw socket thread for upstreams that are not HTTP: garbage, reset, or close at once.
 * Nodes are driven as the engine does: compile the config, then start() with a node_call whose
 * inputs are the final values, and wait for done on a condition variable. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <ctype.h>
#include <curl/curl.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "kailash/ioloop.h"
#include "kailash/upstream.h"
#include "kailash/node.h"
#include "kailash/util.h"

extern const node_type node_http_request, node_rest_client, node_load_balancer;
/* src/nodes (http_common.h): the plain path's switch, and the resolver's cache */
void http_wire_enable(int on);

/* ======================================================================== an HTTP upstream */

typedef struct srv {
    struct MHD_Daemon *d;
    int port;
    atomic_int connections;
    atomic_int requests;
    atomic_int fail_left; /* /flaky answers 503 while this is > 0 */
    atomic_int stopping;
} srv;

typedef struct srv_req {
    buf body;
} srv_req;

static void srv_on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                              enum MHD_ConnectionNotificationCode code)
{
    (void)c;
    (void)socket_context;
    srv *s = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED)
        atomic_fetch_add(&s->connections, 1);
}

static void srv_on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode t)
{
    (void)cls;
    (void)c;
    (void)t;
    srv_req *r = *con_cls;
    if (r) {
        buf_free(&r->body);
        free(r);
    }
    *con_cls = NULL;
}

/* Keep the path and query exactly as sent, so tests see the encoding on the wire. */
static size_t srv_no_unescape(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls;
    (void)c;
    return strlen(s);
}

static enum MHD_Result srv_collect(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    char name[128];
    size_t i = 0;
    for (; key[i] && i < sizeof name - 1; i++)
        name[i] = (char)tolower((unsigned char)key[i]);
    name[i] = '\0';
    json_object_set_new(cls, name, json_string(value ? value : ""));
    return MHD_YES;
}

static enum MHD_Result srv_query(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    buf *b = cls;
    buf_appendf(b, "%s%s%s%s", b->len ? "&" : "", key, value ? "=" : "", value ? value : "");
    return MHD_YES;
}

static enum MHD_Result srv_send(struct MHD_Connection *c, unsigned status, const char *type, const char *body,
                                size_t len)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (type)
        MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "X-Server-Port", "yes");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result srv_echo(struct MHD_Connection *c, const char *url, const char *method, srv_req *rq)
{
    json_t *headers = json_object();
    buf query = {0};
    MHD_get_connection_values(c, MHD_HEADER_KIND, srv_collect, headers);
    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, srv_query, &query);
    json_t *o =
        json_pack("{s:s, s:s, s:s, s:o, s:s#}", "method", method, "path", url, "query", query.data ? query.data : "",
                  "headers", headers, "body", rq->body.data ? rq->body.data : "", (int)rq->body.len);
    char *text = json_dumps(o, JSON_COMPACT);
    enum MHD_Result ret = srv_send(c, 200, "application/json", text, strlen(text));
    free(text);
    json_decref(o);
    buf_free(&query);
    return ret;
}

static long srv_arg(struct MHD_Connection *c, const char *name, long dflt)
{
    const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, name);
    return v ? atol(v) : dflt;
}

static ssize_t srv_chunk(void *cls, uint64_t pos, char *out, size_t max)
{
    long n = *(long *)cls;
    if ((long)pos >= n)
        return MHD_CONTENT_READER_END_OF_STREAM;
    size_t k = (size_t)(n - (long)pos) < max ? (size_t)(n - (long)pos) : max;
    memset(out, 'x', k);
    return (ssize_t)k;
}

static enum MHD_Result srv_big(struct MHD_Connection *c, int chunked)
{
    long n = srv_arg(c, "n", 1000);
    if (!chunked) {
        char *body = malloc((size_t)n);
        memset(body, 'x', (size_t)n);
        enum MHD_Result ret = srv_send(c, 200, "text/plain", body, (size_t)n);
        free(body);
        return ret;
    }
    long *state = malloc(sizeof *state);
    *state = n;
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, srv_chunk, state, free);
    enum MHD_Result ret = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ret;
}

static void srv_sleep(srv *s, long ms)
{
    for (long t = 0; t < ms && !atomic_load(&s->stopping); t += 10)
        usleep(10000);
}

static enum MHD_Result srv_route(srv *s, struct MHD_Connection *c, const char *url, const char *method, srv_req *rq)
{
    const char *last = strrchr(url, '/');
    last = last ? last : url;
    if (strcmp(last, "/slow") == 0)
        srv_sleep(s, srv_arg(c, "ms", 1000));
    if (strcmp(last, "/flaky") == 0 && atomic_fetch_sub(&s->fail_left, 1) > 0)
        return srv_send(c, 503, "text/plain", "busy", 4);
    if (strcmp(last, "/echo") == 0)
        return srv_echo(c, url, method, rq);
    if (strcmp(last, "/text") == 0)
        return srv_send(c, 200, "text/plain; charset=utf-8", "hello", 5);
    if (strcmp(last, "/jsontext") == 0)
        return srv_send(c, 200, "text/plain", "{\"a\":[1,2]}", 11);
    if (strcmp(last, "/badjson") == 0)
        return srv_send(c, 200, "application/json", "{not json", 9);
    if (strcmp(last, "/latin1") == 0)
        return srv_send(c, 200, "text/plain", "caf\xe9!", 5);
    if (strcmp(url, "/status/404") == 0)
        return srv_send(c, 404, "application/json", "{\"error\":\"nope\"}", 16);
    if (strcmp(last, "/big") == 0 || strcmp(last, "/bigchunked") == 0)
        return srv_big(c, strcmp(last, "/bigchunked") == 0);
    char body[64];
    int n = snprintf(body, sizeof body, "{\"ok\":true,\"port\":%d}", s->port);
    return srv_send(c, 200, "application/json; charset=utf-8", body, (size_t)n);
}

static enum MHD_Result srv_handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                   const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
    (void)version;
    srv_req *rq = *con_cls;
    if (!rq) {
        *con_cls = calloc(1, sizeof(srv_req));
        return MHD_YES;
    }
    if (*upload_size) {
        buf_append(&rq->body, upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    srv *s = cls;
    atomic_fetch_add(&s->requests, 1);
    return srv_route(s, c, url, method, rq);
}

static srv *srv_start(void)
{
    srv *s = calloc(1, sizeof *s);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = 0, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    s->d =
        MHD_start_daemon(MHD_USE_AUTO | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0, NULL, NULL,
                         srv_handler, s, MHD_OPTION_SOCK_ADDR, &sin, MHD_OPTION_NOTIFY_CONNECTION, srv_on_connection, s,
                         MHD_OPTION_NOTIFY_COMPLETED, srv_on_completed, s, MHD_OPTION_UNESCAPE_CALLBACK,
                         srv_no_unescape, NULL, MHD_OPTION_CONNECTION_LIMIT, (unsigned)1000, MHD_OPTION_END);
    cr_assert_not_null(s->d, "MHD_start_daemon");
    s->port = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT)->port;
    return s;
}

static void srv_stop(srv *s)
{
    atomic_store(&s->stopping, 1);
    MHD_stop_daemon(s->d);
    free(s);
}

/* ======================================================================== a raw TCP upstream */

typedef enum raw_mode { RAW_GARBAGE, RAW_RESET, RAW_CLOSE, RAW_MANY_HEADERS, RAW_TINY_CHUNKS, RAW_FIXED } raw_mode;

typedef struct raw_srv {
    int fd;
    int port;
    raw_mode mode;
    const char *answer; /* RAW_FIXED: sent after the request, then the connection is held until the
                         * peer closes it (or 3 s); borrowed */
    atomic_int accepts;
    atomic_int stop;
    pthread_t th;
} raw_srv;

/* An answer with 30,000 distinct header lines (about 600 KiB), or a chunked one whose body is one
 * byte per chunk behind long chunk extensions (about 2 MiB of framing for 20 bytes of body). */
static void raw_hostile(raw_srv *r, int c)
{
    char req[4096];
    struct pollfd p = {.fd = c, .events = POLLIN};
    if (poll(&p, 1, 1000) <= 0 || recv(c, req, sizeof req, 0) <= 0)
        return;
    buf b = {0};
    if (r->mode == RAW_MANY_HEADERS) {
        buf_appendf(&b, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n");
        for (int i = 0; i < 30000; i++)
            buf_appendf(&b, "X-H%d: vvvvvv\r\n", i);
        buf_appendf(&b, "\r\nok");
    } else {
        char ext[100001];
        memset(ext, 'e', sizeof ext - 1);
        ext[sizeof ext - 1] = '\0';
        buf_appendf(&b, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        for (int i = 0; i < 20; i++)
            buf_appendf(&b, "1;%s\r\nx\r\n", ext);
        buf_appendf(&b, "0\r\n\r\n");
    }
    for (size_t off = 0; off < b.len;) {
        ssize_t w = send(c, b.data + off, b.len - off, MSG_NOSIGNAL);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    buf_free(&b);
}

static void raw_fixed(raw_srv *r, int c)
{
    char req[4096];
    struct pollfd p = {.fd = c, .events = POLLIN};
    if (poll(&p, 1, 1000) <= 0 || recv(c, req, sizeof req, 0) <= 0)
        return;
    ssize_t w = send(c, r->answer, strlen(r->answer), MSG_NOSIGNAL);
    (void)w;
    for (int i = 0; i < 150 && !atomic_load(&r->stop); i++)
        if (poll(&p, 1, 20) > 0 && recv(c, req, sizeof req, 0) <= 0)
            break; /* the peer closed it */
}

static void raw_serve(raw_srv *r, int c)
{
    if (r->mode == RAW_MANY_HEADERS || r->mode == RAW_TINY_CHUNKS)
        raw_hostile(r, c);
    else if (r->mode == RAW_FIXED)
        raw_fixed(r, c);
    else if (r->mode == RAW_GARBAGE) {
        char req[4096];
        struct pollfd p = {.fd = c, .events = POLLIN};
        if (poll(&p, 1, 1000) > 0 && recv(c, req, sizeof req, 0) > 0) {
            static const char junk[] = "THIS IS NOT HTTP AT ALL\r\n\r\n";
            ssize_t w = send(c, junk, sizeof junk - 1, MSG_NOSIGNAL);
            (void)w;
        }
    } else if (r->mode == RAW_RESET) {
        struct linger l = {.l_onoff = 1, .l_linger = 0}; /* close sends RST */
        setsockopt(c, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    }
    close(c);
}

static void *raw_main(void *arg)
{
    raw_srv *r = arg;
    while (!atomic_load(&r->stop)) {
        struct pollfd p = {.fd = r->fd, .events = POLLIN};
        if (poll(&p, 1, 20) <= 0)
            continue;
        int c = accept(r->fd, NULL, NULL);
        if (c < 0)
            continue;
        atomic_fetch_add(&r->accepts, 1);
        raw_serve(r, c);
    }
    return NULL;
}

/* A listening socket on 127.0.0.1 with a kernel-chosen port. */
static int listen_any(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = 0, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sin;
    cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    cr_assert_eq(listen(fd, 64), 0);
    getsockname(fd, (struct sockaddr *)&sin, &len);
    *port = ntohs(sin.sin_port);
    return fd;
}

static raw_srv *raw_start_with(raw_mode mode, const char *answer)
{
    raw_srv *r = calloc(1, sizeof *r);
    r->mode = mode;
    r->answer = answer;
    r->fd = listen_any(&r->port);
    pthread_create(&r->th, NULL, raw_main, r);
    return r;
}

static raw_srv *raw_start(raw_mode mode)
{
    return raw_start_with(mode, NULL);
}

static void raw_stop(raw_srv *r)
{
    atomic_store(&r->stop, 1);
    pthread_join(r->th, NULL);
    close(r->fd);
    free(r);
}

/* A port nobody listens on: bound, then closed. */
static int dead_port(void)
{
    int port;
    close(listen_any(&port));
    return port;
}

/* ======================================================================== driving a node */

static ioloop *io;
static node_env env;

typedef struct waiter {
    pthread_mutex_t m;
    pthread_cond_t c;
    int calls; /* done must be called exactly once */
    json_t *out;
    node_error err;
    int failed;
} waiter;

static void on_done(node_call *call, json_t *outputs, const node_error *err)
{
    waiter *w = call->engine_data;
    pthread_mutex_lock(&w->m);
    w->calls++;
    w->out = outputs;
    if (err) {
        w->err = *err;
        w->failed = 1;
    }
    pthread_cond_signal(&w->c);
    pthread_mutex_unlock(&w->m);
}

static void waiter_wait(waiter *w)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 20;
    pthread_mutex_lock(&w->m);
    while (!w->calls && pthread_cond_timedwait(&w->c, &w->m, &ts) == 0)
        ;
    int calls = w->calls;
    pthread_mutex_unlock(&w->m);
    cr_assert_eq(calls, 1, "done was not called");
}

static json_t *jsonf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static json_t *jsonf(const char *fmt, ...)
{
    char text[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    json_error_t e;
    json_t *v = json_loads(text, 0, &e);
    cr_assert_not_null(v, "bad test JSON: %s: %s", text, e.text);
    return v;
}

/* A compiled node, or a failed compile with its message in err. */
static int compile(const node_type *t, json_t *config, void **compiled, char *err, size_t errlen)
{
    *compiled = NULL;
    int rc = t->compile(&env, config, compiled, err, errlen);
    return rc;
}

typedef struct result {
    int rc;        /* 0: outputs; -1: failed (err) */
    int sync_fail; /* start() itself refused */
    json_t *out;   /* owned */
    node_error err;
    double elapsed_ms;
} result;

/* Runs an already compiled node with inputs (borrowed) and a deadline deadline_ms from now. */
static result run_compiled(const node_type *t, void *compiled, json_t *inputs, double deadline_ms)
{
    waiter w = {.m = PTHREAD_MUTEX_INITIALIZER, .c = PTHREAD_COND_INITIALIZER};
    result r = {0};
    node_call call = {.node_id = "n",
                      .inputs = inputs,
                      .deadline_ms = util_now_ms() + deadline_ms,
                      .io = io,
                      .done = on_done,
                      .engine_data = &w};
    double t0 = util_now_ms();
    if (t->start(compiled, &call, &r.err) != 0) {
        r.rc = -1;
        r.sync_fail = 1;
        return r;
    }
    waiter_wait(&w);
    r.elapsed_ms = util_now_ms() - t0;
    r.rc = w.failed ? -1 : 0;
    r.out = w.out;
    if (w.failed)
        r.err = w.err;
    cr_assert(w.failed ? w.out == NULL : w.out != NULL, "outputs and error are exclusive");
    return r;
}

/* Compiles config, runs it with the config itself as inputs (what the engine passes when nothing
 * overrides), frees the compiled node. Consumes config. */
static result run_config(const node_type *t, json_t *config, double deadline_ms)
{
    char err[256];
    void *compiled;
    cr_assert_eq(compile(t, config, &compiled, err, sizeof err), 0, "compile: %s", err);
    result r = run_compiled(t, compiled, config, deadline_ms);
    t->free(compiled);
    json_decref(config);
    return r;
}

static void result_free(result *r)
{
    json_decref(r->out);
    r->out = NULL;
}

static json_t *at(json_t *root, const char *path)
{
    return util_json_path(root, path);
}

static void setup(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    env = (node_env){.data_dir = "/tmp", .max_response_bytes = 1 << 20, .connect_timeout_ms = 2000, .verify_tls = 1};
    char err[128];
    io = ioloop_create(err, sizeof err);
    cr_assert_not_null(io, "%s", err);
    cr_assert_eq(upstream_loop_start(io, 64, err, sizeof err), 0, "%s", err);
}

static void teardown(void)
{
    ioloop_destroy(io);
    curl_global_cleanup();
}

TestSuite(http, .init = setup, .fini = teardown, .timeout = 60);

/* ======================================================================== HTTPRequestNode */

Test(http, get_json_answer_has_the_sdk_shape)
{
    srv *s = srv_start();
    result r = run_config(&node_http_request, jsonf("{\"url\": \"http://127.0.0.1:%d/json\"}", s->port), 10000);
    cr_assert_eq(r.rc, 0, "%s: %s", r.err.code, r.err.message);
    cr_assert_eq(json_object_size(r.out), 3);
    cr_assert(json_is_true(at(r.out, "success")));
    cr_assert_eq(json_integer_value(at(r.out, "status_code")), 200);
    json_t *resp = at(r.out, "response");
    cr_assert_eq(json_object_size(resp), 6);
    cr_assert_eq(json_integer_value(at(resp, "status_code")), 200);
    cr_assert(json_is_true(at(resp, "content.ok")));
    cr_assert_eq(json_integer_value(at(resp, "content.port")), s->port);
    /* names in the case the server sent them, as the SDK (requests) keeps them */
    cr_assert_str_eq(json_string_value(at(resp, "headers.Content-Type")), "application/json; charset=utf-8");
    cr_assert_null(at(resp, "headers.content-type"));
    cr_assert_str_eq(json_string_value(http_header_get(at(resp, "headers"), "content-TYPE")),
                     "application/json; charset=utf-8");
    cr_assert_str_eq(json_string_value(at(resp, "content_type")), "application/json; charset=utf-8");
    cr_assert_str_eq(json_string_value(at(resp, "headers.X-Server-Port")), "yes");
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/json", s->port);
    cr_assert_str_eq(json_string_value(at(resp, "url")), url);
    cr_assert(json_is_real(at(resp, "response_time_ms")) && json_real_value(at(resp, "response_time_ms")) >= 0);
    result_free(&r);
    srv_stop(s);
}

Test(http, post_sends_json_body_headers_and_params_on_the_wire)
{
    srv *s = srv_start();
    result r =
        run_config(&node_http_request,
                   jsonf("{\"url\": \"http://127.0.0.1:%d/echo?fixed=1\", \"method\": \"post\","
                         " \"json_data\": {\"a\": 1, \"b\": \"x y\"},"
                         " \"headers\": {\"X-Trace\": \"t-1\", \"X-Num\": 7},"
                         " \"params\": {\"q\": \"a b&c=d/é\", \"n\": 2, \"skip\": null, \"tag\": [\"x\", \"y\"]}}",
                         s->port),
                   10000);
    cr_assert_eq(r.rc, 0, "%s: %s", r.err.code, r.err.message);
    json_t *seen = at(r.out, "response.content");
    cr_assert_str_eq(json_string_value(at(seen, "method")), "POST");
    cr_assert_str_eq(json_string_value(at(seen, "path")), "/echo");
    /* params as requests encodes them (urlencode's quote_plus: a space is '+'); the test server's
     * MHD turns '+' back into a space */
    cr_assert_str_eq(json_string_value(at(seen, "query")), "fixed=1&q=a b%26c%3Dd%2F%C3%A9&n=2&tag=x&tag=y");
    cr_assert(strstr(json_string_value(at(r.out, "response.url")), "/echo?fixed=1&q=a+b%26c%3Dd%2F%C3%A9&n=2&tag=x&tag=y"),
              "%s", json_string_value(at(r.out, "response.url")));
    cr_assert_str_eq(json_string_value(at(seen, "body")), "{\"a\":1,\"b\":\"x y\"}");
    cr_assert_str_eq(json_string_value(at(seen, "headers.content-type")), "application/json");
    cr_assert_str_eq(json_string_value(at(seen, "headers.x-trace")), "t-1");
    cr_assert_str_eq(json_string_value(at(seen, "headers.x-num")), "7");
    cr_assert_null(at(seen, "headers.expect"));
    result_free(&r);
    srv_stop(s);
}

/* The two ways out send the same request: the I/O loop's own HTTP/1.1 client (the plain path) and,
 * with it switched off, libcurl. The echo of each (method, path, query, headers, body) must be the
 * same. */

static json_t *echo_via(int plain, int port, const char *extra)
{
    http_wire_enable(plain);
    result r = run_config(&node_http_request, jsonf("{\"url\": \"http://127.0.0.1:%d/echo?fixed=1\", %s}", port, extra),
                          10000);
    http_wire_enable(1);
    cr_assert_eq(r.rc, 0, "%s (plain %d): %s: %s", extra, plain, r.err.code, r.err.message);
    json_t *seen = json_incref(at(r.out, "response.content"));
    result_free(&r);
    cr_assert_not_null(seen);
    return seen;
}

Test(http, plain_path_and_libcurl_send_the_same_request)
{
    srv *s = srv_start();
    const char *cases[] = {
        "\"method\": \"GET\"",
        "\"method\": \"POST\", \"json_data\": {\"a\": [1, 2], \"b\": \"x y\"}, \"params\": {\"q\": \"a b\"}",
        "\"method\": \"POST\", \"data\": \"raw text\"",
        "\"method\": \"POST\"",
        "\"method\": \"PUT\", \"data\": {\"k\": \"v\"}",
        "\"method\": \"PATCH\", \"json_data\": {\"p\": 1}, \"headers\": {\"Content-Type\": "
        "\"application/merge-patch+json\"}",
        "\"method\": \"DELETE\", \"headers\": {\"X-Empty\": \"\", \"Accept\": \"text/plain\", \"X-N\": 3}",
        "\"method\": \"OPTIONS\", \"auth_type\": \"basic\", \"auth_username\": \"u\", \"auth_password\": \"p\"",
        "\"method\": \"GET\", \"auth_type\": \"api_key\", \"auth_token\": \"k1\", \"api_key_header\": \"X-Key\"",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *plain = echo_via(1, s->port, cases[i]);
        json_t *curl = echo_via(0, s->port, cases[i]);
        char *a = json_dumps(plain, JSON_SORT_KEYS), *b = json_dumps(curl, JSON_SORT_KEYS);
        cr_assert(json_equal(plain, curl), "case %zu differs:\nplain:   %s\nlibcurl: %s", i, a, b);
        free(a);
        free(b);
        json_decref(plain);
        json_decref(curl);
    }
    srv_stop(s);
}

/* A name goes the same way on its first call as later: the first waits for the resolver instead of
 * going through libcurl, so the calls share one kept-alive connection (two ways out would keep two
 * pools: two connections). The name is one the resolver has never seen in this process. */
Test(http, a_host_name_takes_the_same_path_from_its_first_call)
{
    srv *s = srv_start();
    for (int i = 0; i < 3; i++) {
        result r = run_config(&node_http_request, jsonf("{\"url\": \"http://localhost:%d/json\"}", s->port), 10000);
        cr_assert_eq(r.rc, 0, "%s", r.err.message);
        result_free(&r);
    }
    cr_assert_eq(atomic_load(&s->requests), 3);
    cr_assert_eq(atomic_load(&s->connections), 1, "connections: %d", atomic_load(&s->connections));
    srv_stop(s);
}

/* A name that does not resolve fails the call as a transport error (502), on the plain path too. */
Test(http, a_name_that_does_not_resolve_is_an_upstream_error)
{
    result r = run_config(&node_http_request, jsonf("{\"url\": \"http://no-such-host.invalid/x\", \"timeout\": 5}"), 10000);
    cr_assert_neq(r.rc, 0);
    cr_assert_str_eq(r.err.code, "upstream_error", "%s", r.err.message);
    cr_assert(strstr(r.err.message, "resolve"), "%s", r.err.message);
    result_free(&r);
}

Test(http, libcurl_path_still_answers_and_fails_like_the_plain_one)
{
    srv *s = srv_start();
    http_wire_enable(0);
    result r = run_config(&node_http_request, jsonf("{\"url\": \"http://127.0.0.1:%d/status/404\"}", s->port), 10000);
    cr_assert_eq(r.rc, 0, "%s", r.err.message);
    cr_assert_eq(json_integer_value(at(r.out, "status_code")), 404);
    result_free(&r);
    srv_stop(s);
    raw_srv *raw = raw_start(RAW_GARBAGE);
    r = run_config(&node_http_request, jsonf("{\"url\": \"http://127.0.0.1:%d/\"}", raw->port), 10000);
    http_wire_enable(1);
    cr_assert_eq(r.rc, -1);
    cr_assert_str_eq(r.err.code, "upstream_error");
    raw_stop(raw);
}

Test(http, methods_put_delete_head_and_form_data)
{
    srv *s = srv_start();
    result r = run_config(&node_http_request,
                          jsonf("{\"url\": \"http://127.0.0.1:%d/echo\", \"method\": \"PUT\","
                                " \"data\": {\"k\": \"v w\", \"n\": 1}}",
                                s->port),
                          10000);
    cr_assert_eq(r.rc, 0, "%s", r.err.message);
    cr_assert_str_eq(json_string_value(at(r.out, "response.content.method")), "PUT");
    cr_assert_str_eq(json_string_value(at(r.out, "response.content.body")), "k=v+w&n=1");
    cr_assert_str_eq(json_string_value(at(r.out, "response.content.headers.content-type")),
                     "application/x-www-form-urlencoded");
    result_free(&r);
    r = run_config(&node_http_request,
                   jsonf("{\"url\": \"http://127.0.0.1:%d/echo\", \"method\": \"DELETE\"}", s->port), 10000);
    cr_assert_str_eq(json_string_value(at(r.out, "response.content.method")), "DELETE");
    cr_assert_str_eq(json_string_value(at(r.out, "response.content.body")), "");
    result_free(&r);
    r = run_config(&node_http_request, jsonf("{\"url\": \"http://127.0.0.1:%d/json\", \"method\": \"HEAD\"}", s->port),
                   10000);
    cr_assert_eq(r.rc, 0, "%s", r.err.message);
    cr_assert_eq(json_integer_value(at(r.out, "status_code")), 200);
    /* the SDK: response.json() fails on the empty body and it keeps response.text, "" */
    cr_assert_str_eq(json_string_value(at(r.out, "response.content")), "", "HEAD's empty body is \"\"");
    result_free(&r);
    srv_stop(s);
}

Test(http, response_formats_json_text_auto)
{
    srv *s = srv_start();
    /* json forces parsing whatever the Content-Type */
    result r =
        run_config(&node_http_request,
                   jsonf("{\"url\": \"http://127.0.0.1:%d/jsontext\", \"response_format\": \"json\"}", s->port), 10000);
    cr_assert_eq(r.rc, 0, "%s", r.err.message);
    cr_assert_eq(json_integer_value(at(r.out, "response.content.a.1")), 2);
    result_free(&r);
    /* auto: text/plain stays text */
    r = run_config(&node_http_request, jsonf("{\"url\": \"http://127.0.0.1:%d/jsontext\"}", s->port), 10000);
    cr_assert_str_eq(json_string_value(at(r.out, "response.content")), "{\"a\":[1,2]}");
    result_free(&r);
    /* text keeps a JSON answer as a string */
    r = run_config(&node_http_request,
                   jsonf("{\"url\": \"http://127.0.0.1:%d/json\", \"response_format\": \"text\"}", s->port), 10000);
    cr_assert(json_is_string(at(r.out, "response.content")));
    cr_assert(strstr(json_string_value(at(r.out, "response.content")), "\"ok\":true"));
    result_free(&r);
    r = run_config(&node_http_request, jsonf("{\"url\": \"http://127.0.0.1:%d/text\"}", s->port), 10000);
    cr_assert_str_eq(json_string_value(at(r.out, "response.content")), "hello");
    result_free(&r);
    /* invalid UTF-8 in a text answer becomes U+FFFD, not a failure */
    r = run_config(&node_http_request, jsonf("{\"url\": \"http://127.0.0.1:%d/latin1\"}", s->port), 10000);
    cr_assert_eq(r.rc, 0, "%s", r.err.message);
    cr_assert_str_eq(json_string_value(at(r.out, "response.content")), "caf\xef\xbf\xbd!");
    result_free(&r);
    /* binary: base64 */
    r = run_config(&node_http_request,
                   jsonf("{\"url\": \"http://127.0.0.1:%d/text\", \"response_format\": \"binary\"}", s->port), 10000);
    cr_assert_str_eq(json_string_value(at(r.out, "response.content")), "aGVsbG8=");
    result_free(&r);
    srv_stop(s);
}

Test(http, unparsable_json_fails_in_json_and_auto)
{
    srv *s = srv_start();
    const char *formats[] = {"json", "auto"};
    for (int i = 0; i < 2; i++) {
        result r = run_config(
            &node_http_request,
            jsonf("{\"url\": \"http://127.0.0.1:%d/badjson\", \"response_format\": \"%s\"}", s->port, formats[i]),
            10000);
        cr_assert_eq(r.rc, -1);
        cr_assert_str_eq(r.err.code, "upstream_error");
        cr_assert(strstr(r.err.message, "not valid JSON"), "%s", r.err.message);
    }
    result r =
        run_config(&node_http_request,
                   jsonf("{\"url\": \"http://127.0.0.1:%d/badjson\", \"response_format\": \"text\"}", s->port), 10000);
    cr_assert_eq(r.rc, 0);
    cr_assert_str_eq(json_string_value(at(r.out, "response.content")), "{not json");
    result_free(&r);
    srv_stop(s);
}

Test(http, status_404_is_an_answer_with_success_false)
{
    srv *s = srv_start();
    result r = run_config(&node_http_request, jsonf("{\"url\": \"http://127.0.0.1:%d/status/404\"}", s->port), 10000);
    cr_assert_eq(r.rc, 0, "%s", r.err.message);
    cr_assert(json_is_false(at(r.out, "success")));
    cr_assert_eq(json_integer_value(at(r.out, "status_code")), 404);
    cr_assert_str_eq(json_string_value(at(r.out, "response.content.error")), "nope");
    result_free(&r);
    srv_stop(s);
}

Test(http, connection_refused_is_upstream_error)
{
    int port = dead_port();
    result r = run_config(&node_http_request, jsonf("{\"url\": \"http://127.0.0.1:%d/x?key=SECRETQ\"}", port), 10000);
    cr_assert_eq(r.rc, -1);
    cr_assert_str_eq(r.err.code, "upstream_error");
    cr_assert(strstr(r.err.message, "GET http://127.0.0.1:"), "%s", r.err.message);
    cr_assert_null(strstr(r.err.message, "SECRETQ"), "the query may hold keys: %s", r.err.message);
}

Test(http, garbage_and_reset_answers_are_upstream_errors)
{
    raw_mode modes[] = {RAW_GARBAGE, RAW_RESET, RAW_CLOSE};
    for (int i = 0; i < 3; i++) {
        raw_srv *raw = raw_start(modes[i]);
        result r = run_config(&node_http_request, jsonf("{\"url\": \"http://127.0.0.1:%d/\"}", raw->port), 10000);
        cr_assert_eq(r.rc, -1, "mode %d answered", i);
        cr_assert_str_eq(r.err.code, "upstream_error");
        cr_assert_eq(atomic_load(&raw->accepts), 1);
        raw_stop(raw);
    }
}

Test(http, oversize_answer_is_cut_off)
{
    srv *s = srv_start();
    env.max_response_bytes = 64 * 1024;
    const char *paths[] = {"big", "bigchunked"};
    for (int i = 0; i < 2; i++) {
        result r = run_config(&node_http_request,
                              jsonf("{\"url\": \"http://127.0.0.1:%d/%s?n=5000000\"}", s->port, paths[i]), 10000);
        cr_assert_eq(r.rc, -1, "%s was accepted", paths[i]);
        cr_assert_str_eq(r.err.code, "upstream_error");
        cr_assert(strstr(r.err.message, "max_response_bytes"), "%s", r.err.message);
        r = run_config(&node_http_request, jsonf("{\"url\": \"http://127.0.0.1:%d/%s?n=60000\"}", s->port, paths[i]),
                       10000);
        cr_assert_eq(r.rc, 0, "%s", r.err.message);
        cr_assert_eq(json_string_length(at(r.out, "response.content")), 60000);
        result_free(&r);
    }
    srv_stop(s);
}

Test(http, hostile_headers_and_chunk_framing_are_bounded)
{
    env.max_response_bytes = 1024 * 1024; /* the 600 KiB of headers fit: only the header cap stops them */
    raw_srv *raw = raw_start(RAW_MANY_HEADERS);
    for (int plain = 1; plain >= 0; plain--) {
        http_wire_enable(plain);
        result r = run_config(&node_http_request, jsonf("{\"url\": \"http://127.0.0.1:%d/\"}", raw->port), 10000);
        cr_assert_eq(r.rc, -1, "plain %d: 30,000 headers were taken", plain);
        cr_assert_str_eq(r.err.code, "upstream_error");
        cr_assert(strstr(r.err.message, "answer headers over 256 KiB"), "%s", r.err.message);
    }
    http_wire_enable(1);
    raw_stop(raw);
    env.max_response_bytes = 512 * 1024; /* 2 MiB of chunk framing is past twice that plus 256 KiB */
    raw = raw_start(RAW_TINY_CHUNKS);
    result r = run_config(&node_http_request, jsonf("{\"url\": \"http://127.0.0.1:%d/\"}", raw->port), 10000);
    cr_assert_eq(r.rc, -1, "2 MiB of framing was read for 20 bytes of body");
    cr_assert(strstr(r.err.message, "max_response_bytes"), "%s", r.err.message);
    raw_stop(raw);
}

/* A Content-Length over max_response_bytes ends the call when the header arrives, both ways out: the
 * upstream then stalls, and the node's 5 s timeout must not be what ends it. */
Test(http, content_length_over_the_limit_fails_at_once)
{
    env.max_response_bytes = 64 * 1024;
    raw_srv *raw = raw_start_with(RAW_FIXED, "HTTP/1.1 200 OK\r\nContent-Length: 65537\r\n\r\n{");
    for (int plain = 1; plain >= 0; plain--) {
        http_wire_enable(plain);
        double t0 = util_now_ms();
        result r = run_config(&node_http_request,
                              jsonf("{\"url\": \"http://127.0.0.1:%d/\", \"timeout\": 5}", raw->port), 10000);
        cr_assert_eq(r.rc, -1, "plain %d: the answer was taken", plain);
        cr_assert_str_eq(r.err.code, "upstream_error");
        cr_assert(strstr(r.err.message, "max_response_bytes"), "plain %d: %s", plain, r.err.message);
        cr_assert_lt(util_now_ms() - t0, 2000.0, "plain %d: took %.0f ms", plain, util_now_ms() - t0);
    }
    http_wire_enable(1);
    raw_stop(raw);
}

/* A HEAD answer's Content-Length describes the GET's body: over the limit, it is still an answer on
 * the plain path. (libcurl 7.88.1 refuses it: CURLOPT_MAXFILESIZE applies to HEAD too.) */
Test(http, head_answer_announcing_a_large_body_is_an_answer)
{
    env.max_response_bytes = 64 * 1024;
    raw_srv *raw = raw_start_with(RAW_FIXED, "HTTP/1.1 200 OK\r\nContent-Length: 9999999\r\n\r\n");
    result r = run_config(&node_http_request,
                          jsonf("{\"url\": \"http://127.0.0.1:%d/\", \"method\": \"HEAD\"}", raw->port), 10000);
    cr_assert_eq(r.rc, 0, "%s", r.err.message);
    cr_assert_eq(json_integer_value(at(r.out, "status_code")), 200);
    result_free(&r);
    raw_stop(raw);
}

/* A header name that is not UTF-8 cannot be a JSON key: libcurl's answer keeps the others and drops
 * it, the plain client refuses the answer; neither is an "internal" failure. */
Test(http, header_name_that_is_not_utf8_is_dropped_or_refused)
{
    raw_srv *raw = raw_start_with(RAW_FIXED, "HTTP/1.1 200 OK\r\nX-\xe9t\xe9: v\r\nX-Ok: yes\r\n"
                                             "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}");
    http_wire_enable(0);
    result r = run_config(&node_http_request, jsonf("{\"url\": \"http://127.0.0.1:%d/\"}", raw->port), 10000);
    cr_assert_eq(r.rc, 0, "libcurl: %s: %s", r.err.code, r.err.message);
    json_t *h = at(r.out, "response.headers");
    cr_assert_str_eq(json_string_value(json_object_get(h, "X-Ok")), "yes");
    cr_assert_eq(json_object_size(h), 3, "headers: %zu", json_object_size(h));
    result_free(&r);
    http_wire_enable(1);
    r = run_config(&node_http_request, jsonf("{\"url\": \"http://127.0.0.1:%d/\"}", raw->port), 10000);
    cr_assert_eq(r.rc, -1);
    cr_assert_str_eq(r.err.code, "upstream_error");
    raw_stop(raw);
}

Test(http, node_timeout_is_upstream_error)
{
    srv *s = srv_start();
    result r = run_config(&node_http_request,
                          jsonf("{\"url\": \"http://127.0.0.1:%d/slow?ms=3000\", \"timeout\": 0.2}", s->port), 10000);
    cr_assert_eq(r.rc, -1);
    cr_assert_str_eq(r.err.code, "upstream_error");
    cr_assert(r.elapsed_ms >= 180 && r.elapsed_ms < 1500, "%.0f ms", r.elapsed_ms);
    srv_stop(s);
}

Test(http, run_deadline_is_timeout)
{
    srv *s = srv_start();
    result r = run_config(
        &node_http_request,
        jsonf("{\"url\": \"http://127.0.0.1:%d/slow?ms=3000\", \"timeout\": 30, \"retry_count\": 3}", s->port), 300);
    cr_assert_eq(r.rc, -1);
    cr_assert_str_eq(r.err.code, "timeout", "%s: %s", r.err.code, r.err.message);
    cr_assert(r.elapsed_ms >= 250 && r.elapsed_ms < 1500, "%.0f ms", r.elapsed_ms);
    /* A deadline already behind us: start() refuses at once, done is never called. */
    r = run_config(&node_http_request, jsonf("{\"url\": \"http://127.0.0.1:%d/json\"}", s->port), -1);
    cr_assert(r.sync_fail);
    cr_assert_str_eq(r.err.code, "timeout");
    srv_stop(s);
}

Test(http, retries_503_then_succeeds)
{
    srv *s = srv_start();
    atomic_store(&s->fail_left, 2);
    result r = run_config(
        &node_http_request,
        jsonf("{\"url\": \"http://127.0.0.1:%d/flaky\", \"retry_count\": 3, \"retry_backoff\": 0.05}", s->port), 10000);
    cr_assert_eq(r.rc, 0, "%s", r.err.message);
    cr_assert_eq(json_integer_value(at(r.out, "status_code")), 200);
    cr_assert_eq(atomic_load(&s->requests), 3);
    cr_assert_geq(r.elapsed_ms, 50.0 + 100.0, "backoff 50 ms then 100 ms, took %.0f ms", r.elapsed_ms);
    result_free(&r);
    srv_stop(s);
}

Test(http, retries_exhausted_give_the_last_answer)
{
    srv *s = srv_start();
    atomic_store(&s->fail_left, 100);
    result r = run_config(
        &node_http_request,
        jsonf("{\"url\": \"http://127.0.0.1:%d/flaky\", \"retry_count\": 2, \"retry_backoff\": 0.01}", s->port), 10000);
    cr_assert_eq(r.rc, 0, "%s", r.err.message);
    cr_assert_eq(json_integer_value(at(r.out, "status_code")), 503);
    cr_assert(json_is_false(at(r.out, "success")));
    cr_assert_eq(atomic_load(&s->requests), 3);
    result_free(&r);
    /* without retry_count a 503 is answered at once */
    atomic_store(&s->requests, 0);
    r = run_config(&node_http_request, jsonf("{\"url\": \"http://127.0.0.1:%d/flaky\"}", s->port), 10000);
    cr_assert_eq(json_integer_value(at(r.out, "status_code")), 503);
    cr_assert_eq(atomic_load(&s->requests), 1);
    result_free(&r);
    srv_stop(s);
}

Test(http, retries_transport_errors_and_never_past_the_deadline)
{
    raw_srv *raw = raw_start(RAW_CLOSE);
    result r = run_config(
        &node_http_request,
        jsonf("{\"url\": \"http://127.0.0.1:%d/\", \"retry_count\": 2, \"retry_backoff\": 0.01}", raw->port), 10000);
    cr_assert_eq(r.rc, -1);
    cr_assert_str_eq(r.err.code, "upstream_error");
    cr_assert_eq(atomic_load(&raw->accepts), 3);
    raw_stop(raw);

    srv *s = srv_start();
    atomic_store(&s->fail_left, 100);
    r = run_config(
        &node_http_request,
        jsonf("{\"url\": \"http://127.0.0.1:%d/flaky\", \"retry_count\": 10, \"retry_backoff\": 0.2}", s->port), 500);
    /* 0.2 s, then 0.4 s would pass the 0.5 s deadline: the last answer stands, before the deadline */
    cr_assert_eq(r.rc, 0, "%s: %s", r.err.code, r.err.message);
    cr_assert_eq(json_integer_value(at(r.out, "status_code")), 503);
    cr_assert_lt(r.elapsed_ms, 500.0);
    cr_assert_eq(atomic_load(&s->requests), 2);
    result_free(&r);
    srv_stop(s);
}

Test(http, url_template_may_not_change_the_host_at_compile)
{
    const char *bad[] = {
        "http://{{inputs.host}}/x", "{{inputs.url}}",           "http://127.0.0.1:1{{inputs.port}}/x",
        "http{{inputs.s}}://h/x",   "http://u:{{inputs.p}}@h/", "http://h{{inputs.x}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[256];
        void *c;
        json_t *cfg = json_pack("{s:s}", "url", bad[i]);
        cr_assert_eq(compile(&node_http_request, cfg, &c, err, sizeof err), -1, "%s compiled", bad[i]);
        cr_assert_str_eq(err, "config.url: a template may only change the path and query", "%s: %s", bad[i], err);
        json_decref(cfg);
    }
    const char *refused[][2] = {
        {"ftp://h/x", "config.url: scheme must be http or https"},
        {"file:///etc/passwd", "config.url: not a valid URL with a host"},
        {"not a url", "config.url: not a valid URL with a host"},
    };
    for (size_t i = 0; i < 3; i++) {
        char err[256];
        void *c;
        json_t *cfg = json_pack("{s:s}", "url", refused[i][0]);
        cr_assert_eq(compile(&node_http_request, cfg, &c, err, sizeof err), -1);
        cr_assert_str_eq(err, refused[i][1]);
        json_decref(cfg);
    }
    const char *good[] = {"http://h:8080/{{inputs.p}}", "https://h?q={{inputs.q}}", "http://h#{{inputs.f}}",
                          "http://h/a/{{inputs.id}}/b"};
    for (size_t i = 0; i < 4; i++) {
        char err[256];
        void *c;
        json_t *cfg = json_pack("{s:s}", "url", good[i]);
        cr_assert_eq(compile(&node_http_request, cfg, &c, err, sizeof err), 0, "%s: %s", good[i], err);
        node_http_request.free(c);
        json_decref(cfg);
    }
}

Test(http, url_may_not_change_scheme_host_or_port_at_run)
{
    srv *s = srv_start();
    char err[256];
    void *c;
    json_t *cfg = jsonf("{\"url\": \"http://127.0.0.1:%d/{{inputs.path}}\"}", s->port);
    cr_assert_eq(compile(&node_http_request, cfg, &c, err, sizeof err), 0, "%s", err);
    const char *fmts[] = {"http://localhost:%d/echo", "http://127.0.0.1:%d/echo", "https://127.0.0.1:%d/echo",
                          "http://127.0.0.1:%d@127.0.0.2/echo"};
    for (int i = 0; i < 4; i++) {
        char url[128];
        snprintf(url, sizeof url, fmts[i], i == 1 ? s->port + 1 : s->port);
        json_t *in = json_pack("{s:s}", "url", url);
        result r = run_compiled(&node_http_request, c, in, 10000);
        cr_assert(r.sync_fail, "%s was allowed", url);
        cr_assert_str_eq(r.err.code, "bad_request");
        cr_assert_str_eq(r.err.message, "url: scheme, host and port may not change");
        json_decref(in);
    }
    json_t *in = jsonf("{\"url\": \"HTTP://127.0.0.1:%d/echo\"}", s->port); /* same origin, other spelling */
    result r = run_compiled(&node_http_request, c, in, 10000);
    cr_assert_eq(r.rc, 0, "%s", r.err.message);
    cr_assert_eq(atomic_load(&s->requests), 1, "only the same-origin call reached the server");
    result_free(&r);
    json_decref(in);
    node_http_request.free(c);
    json_decref(cfg);
    srv_stop(s);
}

Test(http, auth_headers_are_sent_and_never_shown)
{
    srv *s = srv_start();
    struct {
        const char *cfg, *header, *value;
    } cases[] = {
        {"\"auth_type\": \"bearer\", \"auth_token\": \"tok-123\"", "headers.authorization", "Bearer tok-123"},
        {"\"auth_type\": \"basic\", \"auth_token\": \"user:pw\"", "headers.authorization", "Basic dXNlcjpwdw=="},
        {"\"auth_type\": \"basic\", \"auth_username\": \"user\", \"auth_password\": \"pw\"", "headers.authorization",
         "Basic dXNlcjpwdw=="},
        {"\"auth_type\": \"api_key\", \"auth_token\": \"k-9\"", "headers.x-api-key", "k-9"},
        {"\"auth_type\": \"api_key\", \"auth_token\": \"k-9\", \"api_key_header\": \"X-Key\"", "headers.x-key", "k-9"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        result r = run_config(&node_http_request,
                              jsonf("{\"url\": \"http://127.0.0.1:%d/echo\", \"headers\": {\"Authorization\": \"x\"},"
                                    " %s}",
                                    s->port, cases[i].cfg),
                              10000);
        cr_assert_eq(r.rc, 0, "%s", r.err.message);
        json_t *seen = at(r.out, "response.content");
        cr_assert_str_eq(json_string_value(at(seen, cases[i].header)), cases[i].value, "case %zu", i);
        result_free(&r);
    }
    /* Outputs of a normal answer never carry the credentials. */
    result r = run_config(&node_http_request,
                          jsonf("{\"url\": \"http://127.0.0.1:%d/json\", \"auth_type\": \"bearer\","
                                " \"auth_token\": \"SECRET-TOKEN\", \"headers\": {\"X-Private\": \"SECRET-HDR\"}}",
                                s->port),
                          10000);
    char *dump = json_dumps(r.out, 0);
    cr_assert_null(strstr(dump, "SECRET"), "%s", dump);
    free(dump);
    result_free(&r);
    srv_stop(s);
}

Test(http, errors_never_quote_secrets_or_let_headers_break_lines)
{
    int port = dead_port();
    result r = run_config(&node_http_request,
                          jsonf("{\"url\": \"http://u:SECRET-PW@127.0.0.1:%d/\", \"auth_type\": \"bearer\","
                                " \"auth_token\": \"SECRET-TOKEN\"}",
                                port),
                          10000);
    cr_assert_eq(r.rc, -1);
    cr_assert_null(strstr(r.err.message, "SECRET"), "%s", r.err.message);
    r = run_config(
        &node_http_request,
        jsonf("{\"url\": \"http://127.0.0.1:%d/\", \"headers\": {\"X-A\": \"v\\r\\nX-Evil: SECRET\"}}", port), 10000);
    cr_assert(r.sync_fail);
    cr_assert_str_eq(r.err.message, "headers.X-A: value holds a line break or NUL");
    r = run_config(
        &node_http_request,
        jsonf("{\"url\": \"http://127.0.0.1:%d/\", \"auth_type\": \"bearer\", \"auth_token\": \"a\\nSECRET\"}", port),
        10000);
    cr_assert(r.sync_fail);
    cr_assert_null(strstr(r.err.message, "SECRET"), "%s", r.err.message);
    r = run_config(&node_http_request, jsonf("{\"url\": \"http://127.0.0.1:%d/\", \"auth_type\": \"bearer\"}", port),
                   10000);
    cr_assert(r.sync_fail);
    cr_assert_str_eq(r.err.message, "auth_token: required for auth_type bearer");
}

Test(http, credentials_in_the_url_are_sent_but_not_output)
{
    srv *s = srv_start();
    result r =
        run_config(&node_http_request, jsonf("{\"url\": \"http://user:SECRET@127.0.0.1:%d/echo\"}", s->port), 10000);
    cr_assert_eq(r.rc, 0, "%s", r.err.message);
    cr_assert_str_eq(json_string_value(at(r.out, "response.content.headers.authorization")), "Basic dXNlcjpTRUNSRVQ=");
    cr_assert_null(strstr(json_string_value(at(r.out, "response.url")), "SECRET"));
    result_free(&r);
    srv_stop(s);
}

Test(http, config_types_are_checked_at_compile_and_run)
{
    struct {
        const char *cfg, *msg;
    } cases[] = {
        {"{\"url\": \"http://h/\", \"method\": \"FETCH\"}",
         "config.method: expected one of GET POST PUT PATCH DELETE HEAD OPTIONS"},
        {"{\"url\": \"http://h/\", \"timeout\": 0}",
         "config.timeout: expected a number of seconds > 0 and at most 3600"},
        {"{\"url\": \"http://h/\", \"retry_count\": -1}", "config.retry_count: expected an integer from 0 to 10"},
        {"{\"url\": \"http://h/\", \"headers\": {\"A\": [1]}}",
         "config.headers.A: expected a string, number or boolean"},
        {"{\"url\": \"http://h/\", \"response_format\": \"xml\"}",
         "config.response_format: expected one of auto json text binary"},
        {"{\"url\": \"http://h/\", \"verify_ssl\": \"{{inputs.v}}\"}",
         "config.verify_ssl: must be a literal value, not a template"},
        {"{\"method\": \"GET\"}", "config.url: required, a string (templates may fill its path and query)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[256];
        void *c;
        json_t *cfg = jsonf("%s", cases[i].cfg);
        cr_assert_eq(compile(&node_http_request, cfg, &c, err, sizeof err), -1, "%s compiled", cases[i].cfg);
        cr_assert_str_eq(err, cases[i].msg);
        json_decref(cfg);
    }
    /* templated values pass compile and are checked when they arrive */
    char err[256];
    void *c;
    json_t *cfg = jsonf("{\"url\": \"http://127.0.0.1:1/\", \"timeout\": \"{{inputs.t}}\", \"verify_ssl\": true}");
    cr_assert_eq(compile(&node_http_request, cfg, &c, err, sizeof err), 0, "%s", err);
    json_t *in = jsonf("{\"url\": \"http://127.0.0.1:1/\", \"timeout\": \"soon\"}");
    result r = run_compiled(&node_http_request, c, in, 10000);
    cr_assert(r.sync_fail);
    cr_assert_str_eq(r.err.code, "bad_request"); /* a caller's mistake (issue 9.8), not a bug */
    cr_assert_str_eq(r.err.message, "timeout: expected a number of seconds > 0 and at most 3600");
    json_decref(in);
    in = jsonf("{\"url\": \"http://127.0.0.1:1/\", \"timeout\": 1, \"verify_ssl\": false}");
    r = run_compiled(&node_http_request, c, in, 10000);
    cr_assert(r.sync_fail);
    cr_assert_str_eq(r.err.code, "bad_request");
    cr_assert_str_eq(r.err.message, "verify_ssl: may not change at run time");
    json_decref(in);
    node_http_request.free(c);
    json_decref(cfg);
}

Test(http, sequential_calls_reuse_one_keep_alive_connection)
{
    srv *s = srv_start();
    char err[256];
    void *c;
    json_t *cfg = jsonf("{\"url\": \"http://127.0.0.1:%d/json\"}", s->port);
    cr_assert_eq(compile(&node_http_request, cfg, &c, err, sizeof err), 0);
    for (int i = 0; i < 4; i++) {
        result r = run_compiled(&node_http_request, c, cfg, 10000);
        cr_assert_eq(r.rc, 0, "%s", r.err.message);
        result_free(&r);
    }
    cr_assert_eq(atomic_load(&s->requests), 4);
    cr_assert_eq(atomic_load(&s->connections), 1, "connections: %d", atomic_load(&s->connections));
    node_http_request.free(c);
    json_decref(cfg);
    srv_stop(s);
}

/* Many runs of one node at once, on one loop. */
typedef struct par {
    waiter w;
    node_call call;
} par;

Test(http, many_concurrent_runs_on_one_loop)
{
    srv *s = srv_start();
    enum { N = 200 };
    char err[256];
    void *c;
    json_t *cfg = jsonf("{\"url\": \"http://127.0.0.1:%d/slow?ms=300\"}", s->port);
    cr_assert_eq(compile(&node_http_request, cfg, &c, err, sizeof err), 0);
    par *p = calloc(N, sizeof *p);
    double t0 = util_now_ms();
    for (int i = 0; i < N; i++) {
        pthread_mutex_init(&p[i].w.m, NULL);
        pthread_cond_init(&p[i].w.c, NULL);
        p[i].call = (node_call){.node_id = "n",
                                .inputs = cfg,
                                .deadline_ms = t0 + 20000,
                                .io = io,
                                .done = on_done,
                                .engine_data = &p[i].w};
        node_error e;
        cr_assert_eq(node_http_request.start(c, &p[i].call, &e), 0, "%s", e.message);
    }
    for (int i = 0; i < N; i++) {
        waiter_wait(&p[i].w);
        cr_assert_not(p[i].w.failed, "%d: %s", i, p[i].w.err.message);
        cr_assert_eq(json_integer_value(at(p[i].w.out, "status_code")), 200);
        json_decref(p[i].w.out);
    }
    double elapsed = util_now_ms() - t0;
    cr_assert_lt(elapsed, 5000.0, "%d runs of 300 ms took %.0f ms", N, elapsed);
    cr_assert_eq(upstream_inflight(io), 0);
    free(p);
    node_http_request.free(c);
    json_decref(cfg);
    srv_stop(s);
}

/* ======================================================================== RESTClientNode */

Test(http, rest_path_params_are_encoded_into_their_segment)
{
    srv *s = srv_start();
    result r = run_config(&node_rest_client,
                          jsonf("{\"base_url\": \"http://127.0.0.1:%d/api/\", \"version\": \"v2\","
                                " \"resource\": \"/items/{id}/sub/{name}/echo\","
                                " \"path_params\": {\"id\": \"a/b c?#%%\", \"name\": 42, \"unused\": 1},"
                                " \"query_params\": {\"x\": \"1 2\"}}",
                                s->port),
                          10000);
    cr_assert_eq(r.rc, 0, "%s: %s", r.err.code, r.err.message);
    cr_assert_eq(json_object_size(r.out), 4);
    json_t *seen = at(r.out, "data");
    cr_assert_str_eq(json_string_value(at(seen, "path")), "/api/v2/items/a%2Fb%20c%3F%23%25/sub/42/echo");
    cr_assert_str_eq(json_string_value(at(seen, "query")), "x=1 2"); /* sent as x=1+2 (MHD decodes '+') */
    cr_assert_str_eq(json_string_value(at(seen, "headers.accept")), "application/json");
    cr_assert(json_is_true(at(r.out, "success")));
    cr_assert_eq(json_integer_value(at(r.out, "status_code")), 200);
    cr_assert_str_eq(json_string_value(at(r.out, "metadata.method")), "GET");
    cr_assert(strstr(json_string_value(at(r.out, "metadata.url")), "/api/v2/items/a%2Fb"));
    cr_assert_null(strchr(json_string_value(at(r.out, "metadata.url")), '?'), "the SDK's url is without query_params");
    cr_assert(json_is_object(at(r.out, "metadata.headers")));
    cr_assert(json_is_number(at(r.out, "metadata.response_time_ms")));
    result_free(&r);
    srv_stop(s);
}

Test(http, rest_refuses_dot_segments_and_missing_params)
{
    int port = dead_port();
    result r = run_config(&node_rest_client,
                          jsonf("{\"base_url\": \"http://127.0.0.1:%d/api\", \"resource\": \"users/{id}\","
                                " \"path_params\": {\"id\": \"..\"}}",
                                port),
                          10000);
    cr_assert(r.sync_fail);
    cr_assert_str_eq(r.err.code, "bad_request");
    r = run_config(&node_rest_client,
                   jsonf("{\"base_url\": \"http://127.0.0.1:%d/api\", \"resource\": \"users/{id}\"}", port), 10000);
    cr_assert(r.sync_fail);
    cr_assert_str_eq(r.err.message, "path_params.id: missing for the resource");
    char err[256];
    void *c;
    json_t *cfg = jsonf("{\"base_url\": \"http://{{inputs.host}}/api\"}");
    cr_assert_eq(compile(&node_rest_client, cfg, &c, err, sizeof err), -1);
    cr_assert_str_eq(err, "config.base_url: a template may only change the path and query");
    json_decref(cfg);
}

Test(http, rest_posts_json_data_and_reports_errors_as_answers)
{
    srv *s = srv_start();
    result r = run_config(&node_rest_client,
                          jsonf("{\"base_url\": \"http://127.0.0.1:%d\", \"resource\": \"echo\", \"method\": \"POST\","
                                " \"data\": {\"name\": \"n\"}}",
                                s->port),
                          10000);
    cr_assert_eq(r.rc, 0, "%s", r.err.message);
    cr_assert_str_eq(json_string_value(at(r.out, "data.body")), "{\"name\":\"n\"}");
    cr_assert_str_eq(json_string_value(at(r.out, "data.headers.content-type")), "application/json");
    cr_assert_str_eq(json_string_value(at(r.out, "metadata.method")), "POST");
    result_free(&r);
    r = run_config(&node_rest_client,
                   jsonf("{\"base_url\": \"http://127.0.0.1:%d/status\", \"resource\": \"{code}\","
                         " \"path_params\": {\"code\": 404}}",
                         s->port),
                   10000);
    cr_assert_eq(r.rc, 0, "%s", r.err.message);
    /* the SDK's error answer: no data, empty metadata, the body's error text with the status */
    cr_assert(json_is_false(at(r.out, "success")));
    cr_assert(json_is_null(at(r.out, "data")));
    cr_assert_eq(json_integer_value(at(r.out, "status_code")), 404);
    cr_assert_str_eq(json_string_value(at(r.out, "error")), "nope (status: 404)");
    cr_assert_str_eq(json_string_value(at(r.out, "error_type")), "APIError");
    cr_assert_eq(json_object_size(at(r.out, "metadata")), 0);
    cr_assert_str_eq(json_string_value(json_array_get(at(r.out, "recovery_suggestions"), 0)),
                     "Verify the URL path is correct");
    cr_assert_eq(json_object_size(r.out), 7);
    result_free(&r);
    srv_stop(s);
}

/* One request to a raw upstream answering `answer`: the node's outputs (owned by the caller). */
static json_t *raw_answer_outputs(const node_type *t, const char *answer, const char *extra_config)
{
    raw_srv *raw = raw_start_with(RAW_FIXED, answer);
    json_t *config = t == &node_rest_client
                         ? jsonf("{\"base_url\": \"http://127.0.0.1:%d\", \"resource\": \"r\"%s}", raw->port, extra_config)
                         : jsonf("{\"url\": \"http://127.0.0.1:%d/r\"%s}", raw->port, extra_config);
    result r = run_config(t, config, 10000);
    raw_stop(raw);
    cr_assert_eq(r.rc, 0, "%s: %s", r.err.code, r.err.message);
    return r.out;
}

/* Text is decoded by its charset as requests decodes it (outputs recorded with the SDK 2.63), except
 * a text/ type without a charset: UTF-8 here, ISO-8859-1 in requests (a deliberate difference). */
Test(http, text_is_decoded_by_its_charset)
{
    static const char *const cases[][2] = {
        {"Content-Type: text/plain; Charset=\"ISO-8859-1\"\r\nContent-Length: 5\r\n\r\ncaf\xe9!", "caf\xc3\xa9!"},
        {"Content-Type: text/html; charset=windows-1252\r\nContent-Length: 5\r\n\r\n\x80\x81\x93x\x94",
         "\xe2\x82\xac\xef\xbf\xbd\xe2\x80\x9cx\xe2\x80\x9d"},
        {"Content-Type: text/plain; charset=us-ascii\r\nContent-Length: 4\r\n\r\na\xc3\xa9" "b",
         "a\xef\xbf\xbd\xef\xbf\xbd" "b"},
        {"Content-Type: text/plain; charset=utf-8\r\nContent-Length: 5\r\n\r\na\xc3\xa9" "b\xff",
         "a\xc3\xa9" "b\xef\xbf\xbd"},
        {"Content-Type: text/plain\r\nContent-Length: 4\r\n\r\na\xc3\xa9" "b", "a\xc3\xa9" "b"},
    };
    char answer[512];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(answer, sizeof answer, "HTTP/1.1 200 OK\r\n%s", cases[i][0]);
        json_t *out = raw_answer_outputs(&node_http_request, answer, "");
        cr_assert_str_eq(json_string_value(at(out, "response.content")), cases[i][1], "case %zu", i);
        json_decref(out);
        out = raw_answer_outputs(&node_rest_client, answer, "");
        cr_assert_str_eq(json_string_value(at(out, "data")), cases[i][1], "rest case %zu", i);
        json_decref(out);
    }
}

/* JSON is parsed from the decoded text, as response.json() does: a bad UTF-8 byte inside a string
 * is U+FFFD, a Latin-1 charset is honoured. */
Test(http, json_is_parsed_from_its_decoded_text)
{
    json_t *out = raw_answer_outputs(&node_http_request,
                                     "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 20\r\n\r\n"
                                     "{\"k\": \"a\xff" "b\", \"n\": 1}",
                                     "");
    cr_assert_str_eq(json_string_value(at(out, "response.content.k")), "a\xef\xbf\xbd" "b");
    cr_assert_eq(json_integer_value(at(out, "response.content.n")), 1);
    json_decref(out);
    out = raw_answer_outputs(&node_http_request,
                             "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=iso-8859-1\r\n"
                             "Content-Length: 13\r\n\r\n{\"k\": \"caf\xe9\"}",
                             "");
    cr_assert_str_eq(json_string_value(at(out, "response.content.k")), "caf\xc3\xa9");
    json_decref(out);
    /* an empty JSON answer is "" (the SDK keeps the text when response.json() fails) */
    out = raw_answer_outputs(&node_http_request,
                             "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 0\r\n\r\n",
                             ", \"response_format\": \"json\"");
    cr_assert_str_eq(json_string_value(at(out, "response.content")), "");
    json_decref(out);
}

/* RESTClientNode asks for JSON as the SDK's does (response_format "json", falling back to the
 * text): a JSON body is parsed whatever its Content-Type, anything else stays text. */
Test(http, rest_parses_json_whatever_its_type_and_keeps_other_text)
{
    static const char *const cases[][2] = {
        {"Content-Type: text/plain\r\nContent-Length: 8\r\n\r\n{\"k\": 1}", "{\"k\":1}"},
        {"Content-Length: 8\r\n\r\n{\"k\": 2}", "{\"k\":2}"},
        {"Content-Type: application/json\r\nContent-Length: 9\r\n\r\nnot json{", "\"not json{\""},
        {"Content-Type: application/json\r\nContent-Length: 0\r\n\r\n", "\"\""},
        {"Content-Type: text/html\r\nContent-Length: 9\r\n\r\n<p>hi</p>", "\"<p>hi</p>\""},
    };
    char answer[512];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(answer, sizeof answer, "HTTP/1.1 200 OK\r\n%s", cases[i][0]);
        json_t *out = raw_answer_outputs(&node_rest_client, answer, "");
        char *data = json_dumps(at(out, "data"), JSON_ENCODE_ANY | JSON_COMPACT);
        cr_assert_str_eq(data, cases[i][1], "case %zu", i);
        cr_assert(json_is_true(at(out, "success")));
        free(data);
        json_decref(out);
    }
    /* a 418 with a body that is not JSON is still the SDK's error answer, not a failed node */
    json_t *out = raw_answer_outputs(&node_rest_client,
                                     "HTTP/1.1 418 Teapot\r\nContent-Type: application/json\r\n"
                                     "Content-Length: 7\r\n\r\n{broken",
                                     "");
    cr_assert_str_eq(json_string_value(at(out, "error")), "Unknown error (status: 418)");
    /* the SDK's key order: its output schema's ports first */
    const char *want[] = {"data", "status_code", "success", "metadata", "error", "error_type", "recovery_suggestions"};
    size_t i = 0;
    const char *k;
    json_t *v;
    json_object_foreach(out, k, v) cr_assert_str_eq(k, want[i++]);
    cr_assert_eq(i, 7);
    json_decref(out);
}

/* metadata.url is the URL the SDK built (base_url/version/resource, a query written in the
 * resource included) before query_params are added; credentials never show. */
Test(http, rest_metadata_url_is_the_built_url)
{
    srv *s = srv_start();
    result r = run_config(&node_rest_client,
                          jsonf("{\"base_url\": \"http://user:pw@127.0.0.1:%d/\", \"resource\": \"/echo?x=1\","
                                " \"query_params\": {\"q\": \"z\"}}",
                                s->port),
                          10000);
    cr_assert_eq(r.rc, 0, "%s: %s", r.err.code, r.err.message);
    char want[96];
    snprintf(want, sizeof want, "http://127.0.0.1:%d/echo?x=1", s->port);
    cr_assert_str_eq(json_string_value(at(r.out, "metadata.url")), want);
    cr_assert_str_eq(json_string_value(at(r.out, "data.query")), "x=1&q=z");
    result_free(&r);
    srv_stop(s);
}

/* A raw string body goes without Content-Type, as requests sends it (libcurl would label it a
 * form), and so does a POST without a body; an object `data` is a form. */
Test(http, raw_body_has_no_content_type)
{
    srv *s = srv_start();
    for (int plain = 0; plain < 2; plain++) {
        http_wire_enable(plain);
        result r = run_config(&node_http_request,
                              jsonf("{\"url\": \"http://127.0.0.1:%d/echo\", \"method\": \"POST\", \"data\": \"raw\"}",
                                    s->port),
                              10000);
        cr_assert_eq(r.rc, 0, "%s: %s", r.err.code, r.err.message);
        cr_assert_str_eq(json_string_value(at(r.out, "response.content.body")), "raw");
        cr_assert_null(at(r.out, "response.content.headers.content-type"), "plain %d", plain);
        result_free(&r);
        r = run_config(&node_http_request, jsonf("{\"url\": \"http://127.0.0.1:%d/echo\", \"method\": \"POST\"}", s->port),
                       10000);
        cr_assert_eq(r.rc, 0, "%s: %s", r.err.code, r.err.message);
        cr_assert_null(at(r.out, "response.content.headers.content-type"), "plain %d", plain);
        cr_assert_str_eq(json_string_value(at(r.out, "response.content.headers.content-length")), "0");
        result_free(&r);
    }
    http_wire_enable(1);
    srv_stop(s);
}

/* ======================================================================== LoadBalancerNode */

static json_t *lb_config(const char *extra, int n, const int *ports)
{
    char list[512] = "";
    for (int i = 0; i < n; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s\"http://127.0.0.1:%d/p\"", i ? ", " : "",
                 ports[i]);
    return jsonf("{\"upstreams\": [%s]%s%s}", list, *extra ? ", " : "", extra);
}

Test(http, lb_round_robin_spreads_evenly)
{
    srv *s[3] = {srv_start(), srv_start(), srv_start()};
    int ports[3] = {s[0]->port, s[1]->port, s[2]->port};
    json_t *cfg = lb_config("\"url\": \"/echo\", \"params\": {\"a\": 1}", 3, ports);
    char err[256];
    void *c;
    cr_assert_eq(compile(&node_load_balancer, cfg, &c, err, sizeof err), 0, "%s", err);
    for (int i = 0; i < 30; i++) {
        result r = run_compiled(&node_load_balancer, c, cfg, 10000);
        cr_assert_eq(r.rc, 0, "%s", r.err.message);
        cr_assert_str_eq(json_string_value(at(r.out, "response.content.path")), "/p/echo");
        cr_assert_str_eq(json_string_value(at(r.out, "response.content.query")), "a=1");
        result_free(&r);
    }
    for (int i = 0; i < 3; i++)
        cr_assert_eq(atomic_load(&s[i]->requests), 10, "upstream %d: %d", i, atomic_load(&s[i]->requests));
    node_load_balancer.free(c);
    json_decref(cfg);
    for (int i = 0; i < 3; i++)
        srv_stop(s[i]);
}

typedef struct bg_run {
    void *compiled;
    json_t *inputs;
    result r;
} bg_run;

static void *bg_main(void *arg)
{
    bg_run *b = arg;
    b->r = run_compiled(&node_load_balancer, b->compiled, b->inputs, 20000);
    return NULL;
}

Test(http, lb_least_inflight_avoids_the_busy_upstream)
{
    srv *s[2] = {srv_start(), srv_start()};
    int ports[2] = {s[0]->port, s[1]->port};
    json_t *cfg = lb_config("\"strategy\": \"least_inflight\"", 2, ports);
    char err[256];
    void *c;
    cr_assert_eq(compile(&node_load_balancer, cfg, &c, err, sizeof err), 0, "%s", err);
    bg_run slow = {.compiled = c, .inputs = jsonf("{\"url\": \"/slow?ms=1500\"}")};
    json_object_update_missing(slow.inputs, cfg);
    pthread_t th;
    pthread_create(&th, NULL, bg_main, &slow);
    while (atomic_load(&s[0]->requests) + atomic_load(&s[1]->requests) == 0)
        usleep(5000);
    int busy = atomic_load(&s[0]->requests) ? 0 : 1;
    for (int i = 0; i < 10; i++) {
        result r = run_compiled(&node_load_balancer, c, cfg, 10000);
        cr_assert_eq(r.rc, 0, "%s", r.err.message);
        cr_assert_eq(json_integer_value(at(r.out, "response.content.port")), s[1 - busy]->port);
        result_free(&r);
    }
    cr_assert_eq(atomic_load(&s[busy]->requests), 1);
    cr_assert_eq(atomic_load(&s[1 - busy]->requests), 10);
    pthread_join(th, NULL);
    cr_assert_eq(slow.r.rc, 0, "%s", slow.r.err.message);
    result_free(&slow.r);
    json_decref(slow.inputs);
    node_load_balancer.free(c);
    json_decref(cfg);
    srv_stop(s[0]);
    srv_stop(s[1]);
}

Test(http, lb_fails_over_and_cools_a_dead_upstream_down)
{
    raw_srv *dead = raw_start(RAW_CLOSE);
    srv *live = srv_start();
    int ports[2] = {dead->port, live->port};
    json_t *cfg = lb_config("\"cooldown_s\": 0.5", 2, ports);
    char err[256];
    void *c;
    cr_assert_eq(compile(&node_load_balancer, cfg, &c, err, sizeof err), 0, "%s", err);
    for (int i = 0; i < 4; i++) {
        result r = run_compiled(&node_load_balancer, c, cfg, 10000);
        cr_assert_eq(r.rc, 0, "run %d: %s", i, r.err.message);
        cr_assert_eq(json_integer_value(at(r.out, "response.content.port")), live->port);
        result_free(&r);
    }
    cr_assert_eq(atomic_load(&dead->accepts), 1, "a cooling upstream was tried");
    cr_assert_eq(atomic_load(&live->requests), 4);
    usleep(600 * 1000);
    for (int i = 0; i < 2; i++) { /* round robin comes back to it within two runs */
        result r = run_compiled(&node_load_balancer, c, cfg, 10000);
        cr_assert_eq(r.rc, 0, "%s", r.err.message);
        result_free(&r);
    }
    cr_assert_eq(atomic_load(&dead->accepts), 2, "the cooled-down upstream was not tried again");
    node_load_balancer.free(c);
    json_decref(cfg);
    srv_stop(live);
    raw_stop(dead);
}

Test(http, lb_all_down_tries_the_one_whose_cooldown_ends_first)
{
    raw_srv *d[2] = {raw_start(RAW_CLOSE), raw_start(RAW_RESET)};
    int ports[2] = {d[0]->port, d[1]->port};
    json_t *cfg = lb_config("", 2, ports);
    char err[256];
    void *c;
    cr_assert_eq(compile(&node_load_balancer, cfg, &c, err, sizeof err), 0, "%s", err);
    result r = run_compiled(&node_load_balancer, c, cfg, 10000);
    cr_assert_eq(r.rc, -1);
    cr_assert_str_eq(r.err.code, "upstream_error");
    cr_assert_eq(atomic_load(&d[0]->accepts), 1);
    cr_assert_eq(atomic_load(&d[1]->accepts), 1);
    /* both cool down; d[0] failed first, so its cooldown ends first */
    r = run_compiled(&node_load_balancer, c, cfg, 10000);
    cr_assert_eq(r.rc, -1);
    cr_assert_eq(atomic_load(&d[0]->accepts), 2);
    cr_assert_eq(atomic_load(&d[1]->accepts), 1);
    node_load_balancer.free(c);
    json_decref(cfg);
    /* retry_count adds rounds after a backoff, each trying the soonest-back upstream again */
    cfg = lb_config("\"retry_count\": 2, \"retry_backoff\": 0.01", 2, ports);
    cr_assert_eq(compile(&node_load_balancer, cfg, &c, err, sizeof err), 0, "%s", err);
    r = run_compiled(&node_load_balancer, c, cfg, 10000);
    cr_assert_eq(r.rc, -1);
    cr_assert_str_eq(r.err.code, "upstream_error");
    /* 3 accepts before; round 1 tries both, rounds 2 and 3 the soonest-back one each */
    cr_assert_eq(atomic_load(&d[0]->accepts) + atomic_load(&d[1]->accepts), 3 + 2 + 1 + 1);
    cr_assert_eq(atomic_load(&d[0]->accepts), 4);
    cr_assert_eq(atomic_load(&d[1]->accepts), 3);
    node_load_balancer.free(c);
    json_decref(cfg);
    raw_stop(d[0]);
    raw_stop(d[1]);
}

Test(http, lb_config_is_checked_and_pinned)
{
    struct {
        const char *cfg, *msg;
    } cases[] = {
        {"{\"upstreams\": [\"http://{{inputs.h}}/\"]}", "config.upstreams[0]: expected a literal URL"},
        {"{\"upstreams\": \"{{inputs.u}}\"}", "config.upstreams: must be a literal value, not a template"},
        {"{\"upstreams\": []}", "config.upstreams: expected a non-empty array of URLs"},
        {"{\"upstreams\": [\"http://h/?a=1\"]}", "config.upstreams[0]: only scheme, host, port and a path prefix"},
        {"{\"upstreams\": [\"ftp://h/\"]}", "config.upstreams[0]: expected an http(s) URL with a host"},
        {"{\"upstreams\": [\"http://h\"], \"url\": \"x/{{inputs.p}}\"}",
         "config.url: a path starting with '/' (appended to the upstream)"},
        {"{\"upstreams\": [\"http://h\"], \"strategy\": \"random\"}",
         "config.strategy: expected one of round_robin least_inflight"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[256];
        void *c;
        json_t *cfg = jsonf("%s", cases[i].cfg);
        cr_assert_eq(compile(&node_load_balancer, cfg, &c, err, sizeof err), -1, "%s compiled", cases[i].cfg);
        cr_assert_str_eq(err, cases[i].msg);
        json_decref(cfg);
    }
    char err[256];
    void *c;
    json_t *cfg = jsonf("{\"upstreams\": [\"http://127.0.0.1:1\"], \"url\": \"/{{inputs.p}}\"}");
    cr_assert_eq(compile(&node_load_balancer, cfg, &c, err, sizeof err), 0, "%s", err);
    json_t *in = jsonf("{\"upstreams\": [\"http://127.0.0.2:1\"], \"url\": \"/x\"}");
    result r = run_compiled(&node_load_balancer, c, in, 10000);
    cr_assert(r.sync_fail);
    cr_assert_str_eq(r.err.code, "bad_request");
    cr_assert_str_eq(r.err.message, "upstreams: may not change at run time");
    json_decref(in);
    in = jsonf("{\"upstreams\": [\"http://127.0.0.1:1\"], \"url\": \"@evil/x\"}");
    r = run_compiled(&node_load_balancer, c, in, 10000);
    cr_assert(r.sync_fail);
    cr_assert_str_eq(r.err.message, "url: a path starting with '/'");
    json_decref(in);
    node_load_balancer.free(c);
    json_decref(cfg);
}

Test(http, node_types_declare_their_ports_and_keys)
{
    cr_assert_str_eq(node_http_request.name, "HTTPRequestNode");
    cr_assert_str_eq(node_rest_client.name, "RESTClientNode");
    cr_assert_str_eq(node_load_balancer.name, "LoadBalancerNode");
    const node_type *types[] = {&node_http_request, &node_rest_client, &node_load_balancer};
    for (int i = 0; i < 3; i++) {
        cr_assert_null(types[i]->run);
        cr_assert_not_null(types[i]->start);
        cr_assert(types[i]->has_output(NULL, "status_code"));
        cr_assert(types[i]->has_output(NULL, "success"));
        cr_assert_not(types[i]->has_output(NULL, "result"));
    }
    cr_assert(node_http_request.has_output(NULL, "response"));
    cr_assert(node_load_balancer.has_output(NULL, "response"));
    cr_assert(node_rest_client.has_output(NULL, "data"));
    cr_assert(node_rest_client.has_output(NULL, "metadata"));
    int found = 0;
    for (const char *const *k = node_load_balancer.config_keys; *k; k++)
        found += strcmp(*k, "upstreams") == 0 || strcmp(*k, "auth_token") == 0 || strcmp(*k, "url") == 0;
    cr_assert_eq(found, 3);
}

/* ======================================================================== a literal URL's memo */

#include "../../src/nodes/http_common.h"

/* A node whose url is a literal parses it once, at compile (http_memo.c). A request that borrows the
 * memo must go out exactly as one that parsed the same text: the same decision for the plain path,
 * the same bytes and address, the same public URL, the same URL for libcurl. */
Test(http, a_literal_urls_memo_sends_what_a_parse_sends)
{
    const char *urls[] = {
        "http://127.0.0.1:8080/a/b?x=1&y=%20z", "http://127.0.0.1/plain",       "http://[::1]:9/v6",
        "http://u:p@127.0.0.1:81/cred",         "https://127.0.0.1/tls",        "http://127.0.0.1:80/p?q#frag",
        "http://127.0.0.1:82/%7Euser/",         "http://LOCALHOST.invalid:83/x", "http://127.0.0.1:84",
    };
    for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++) {
        const char *url = urls[i];
        char err[256];
        http_origin o;
        node_error e;
        cr_assert_eq(http_origin_from_config("url", url, &o, err, sizeof err), 0, "%s: %s", url, err);
        http_url_memo *m = http_url_memo_new(url, &o);
        cr_assert_not_null(m, "%s", url);
        http_request a = {.method = "GET"}, b = {.method = "GET"};
        cr_assert_eq(http_url_parse("url", url, &o, &a.url, &e), 0, "%s", url);
        cr_assert_eq(http_request_use_memo(&b, m, url), 1);
        cr_assert_null(b.url);
        up_h1_req qa = {0}, qb = {0};
        buf ba = {0}, bb = {0};
        char ha[256] = "", hb[256] = "";
        long pa_ = 0, pb_ = 0;
        int ra = http_wire_prepare(&a, &qa, &ba, ha, sizeof ha, &pa_),
            rb = http_wire_prepare(&b, &qb, &bb, hb, sizeof hb, &pb_);
        cr_assert_eq(ra, rb, "%s: plain path %d (parsed) against %d (memo)", url, ra, rb);
        if (ra >= 0)
            cr_assert(ba.len == bb.len && memcmp(ba.data, bb.data, ba.len) == 0, "%s:\n%.*s\n%.*s", url, (int)ba.len,
                      ba.data, (int)bb.len, bb.data);
        if (ra == 0)
            cr_assert(qa.addrlen == qb.addrlen && memcmp(&qa.addr, &qb.addr, qa.addrlen) == 0, "%s", url);
        if (ra == 1)
            cr_assert(strcmp(ha, hb) == 0 && pa_ == pb_, "%s: %s:%ld against %s:%ld", url, ha, pa_, hb, pb_);
        char *pa = http_url_public(a.url);
        cr_assert_str_eq(pa, m->public_text, "%s", url);
        cr_assert_null(strstr(m->public_text, ":p@"), "%s", url);
        CURLU *own = http_request_url(&b);
        cr_assert(own && own != m->url);
        char *fa = NULL, *fb = NULL;
        curl_url_get(a.url, CURLUPART_URL, &fa, 0);
        curl_url_get(own, CURLUPART_URL, &fb, 0);
        cr_assert_str_eq(fa, fb, "%s", url);
        curl_free(fa);
        curl_free(fb);
        free(pa);
        buf_free(&ba);
        buf_free(&bb);
        http_request_clear(&a);
        http_request_clear(&b);
        http_url_memo_free(m);
    }
}

Test(http, only_a_literal_url_has_a_memo_and_only_its_own_text_borrows_it)
{
    http_origin o;
    char err[256];
    cr_assert_eq(http_origin_from_config("url", "http://127.0.0.1:9/a/{{ inputs.p }}", &o, err, sizeof err), 0);
    cr_assert_null(http_url_memo_new("http://127.0.0.1:9/a/{{ inputs.p }}", &o));
    cr_assert_eq(http_origin_from_config("url", "http://127.0.0.1:9/a", &o, err, sizeof err), 0);
    http_url_memo *m = http_url_memo_new("http://127.0.0.1:9/a", &o);
    cr_assert_not_null(m);
    http_request r = {.method = "GET"};
    cr_assert_eq(http_request_use_memo(&r, m, "http://127.0.0.1:9/b"), 0);
    cr_assert_eq(http_request_use_memo(&r, NULL, "http://127.0.0.1:9/a"), 0);
    cr_assert_null(r.memo);
    http_url_memo_free(m);
}

/* A literal url with no params, null params or empty params goes out as written (through the memo,
 * both ways out); params with values are added to its query. */
Test(http, literal_url_with_empty_params_goes_out_as_written)
{
    srv *s = srv_start();
    const char *params[] = {"", ", \"params\": null", ", \"params\": {}", ", \"params\": {\"b\": 2}"};
    for (int plain = 0; plain < 2; plain++)
        for (size_t i = 0; i < sizeof params / sizeof params[0]; i++) {
            http_wire_enable(plain);
            result r =
                run_config(&node_http_request, jsonf("{\"url\": \"http://127.0.0.1:%d/echo?a=1\"%s}", s->port, params[i]),
                           10000);
            http_wire_enable(1);
            cr_assert_eq(r.rc, 0, "%s", r.err.message);
            cr_assert_str_eq(json_string_value(at(r.out, "response.content.path")), "/echo");
            cr_assert_str_eq(json_string_value(at(r.out, "response.content.query")), i == 3 ? "a=1&b=2" : "a=1",
                             "params%s", params[i]);
            char want[64];
            snprintf(want, sizeof want, "http://127.0.0.1:%d/echo?a=1%s", s->port, i == 3 ? "&b=2" : "");
            cr_assert_str_eq(json_string_value(at(r.out, "response.url")), want);
            result_free(&r);
        }
    srv_stop(s);
}

/* ======================================================================== cancel */

/* A listening socket nobody accepts on: connections complete (the backlog), answers never come. */
static int silent_listener(int *port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
    cr_assert(listen(fd, 16) == 0);
    getsockname(fd, (struct sockaddr *)&a, &len);
    *port = ntohs(a.sin_port);
    return fd;
}

static void noop_fn(void *ud)
{
    (void)ud;
}

typedef struct cancel_case {
    const node_type *t;
    void *compiled;
    json_t *inputs;
    node_call call;
    waiter w;
    int start_rc;
    int had_cancel;
} cancel_case;

static void cancel_start(void *ud)
{
    cancel_case *c = ud;
    node_error err;
    c->call = (node_call){.node_id = "n", .inputs = c->inputs, .deadline_ms = util_now_ms() + 30000, .io = io,
                          .done = on_done, .engine_data = &c->w};
    c->start_rc = c->t->start(c->compiled, &c->call, &err);
}

static void cancel_now(void *ud)
{
    cancel_case *c = ud;
    c->had_cancel = c->call.cancel != NULL;
    if (c->call.cancel)
        c->call.cancel(&c->call);
}

/* Starts t with config on the loop, waits until the upstream has the request in flight (for
 * retry_wait_ms more when the node waits in a backoff), cancels it on the loop: done runs once,
 * before cancel returns, with "cancelled"; nothing is left in flight. */
static void check_cancel(const node_type *t, json_t *config, double settle_ms)
{
    char err[256];
    cancel_case *c = calloc(1, sizeof *c);
    c->w = (waiter){.m = PTHREAD_MUTEX_INITIALIZER, .c = PTHREAD_COND_INITIALIZER};
    c->t = t;
    cr_assert_eq(compile(t, config, &c->compiled, err, sizeof err), 0, "%s", err);
    c->inputs = config;
    cr_assert_eq(ioloop_call(io, cancel_start, c), 0);
    cr_assert_eq(c->start_rc, 0);
    usleep((useconds_t)(settle_ms * 1000));
    cr_assert_eq(c->w.calls, 0, "the call ended before it was cancelled: %s", c->w.err.message);
    cr_assert_eq(ioloop_call(io, cancel_now, c), 0);
    cr_assert(c->had_cancel, "start() set no cancel hook");
    cr_assert_eq(c->w.calls, 1, "done was not called by cancel");
    cr_assert_str_eq(c->w.err.code, "cancelled", "%s", c->w.err.message);
    cr_assert_null(c->call.cancel, "the hook outlived done");
    usleep(100 * 1000);
    cr_assert_eq(ioloop_call(io, noop_fn, NULL), 0);
    cr_assert_eq(c->w.calls, 1, "done was called again");
    cr_assert_eq(upstream_inflight(io), 0);
    t->free(c->compiled);
    json_decref(config);
    free(c);
}

Test(http, cancel_aborts_a_plain_transfer_in_flight)
{
    int port, fd = silent_listener(&port);
    check_cancel(&node_http_request, jsonf("{\"url\": \"http://127.0.0.1:%d/x\"}", port), 100);
    cr_assert_eq(upstream_inflight(io), 0);
    close(fd);
}

Test(http, cancel_aborts_a_libcurl_transfer_in_flight)
{
    int port, fd = silent_listener(&port);
    http_wire_enable(0);
    check_cancel(&node_http_request, jsonf("{\"url\": \"http://127.0.0.1:%d/x\"}", port), 100);
    http_wire_enable(1);
    close(fd);
}

Test(http, cancel_withdraws_a_retry_backoff)
{
    srv *s = srv_start();
    atomic_store(&s->fail_left, 5);
    check_cancel(&node_http_request,
                 jsonf("{\"url\": \"http://127.0.0.1:%d/flaky\", \"retry_count\": 3, \"retry_backoff\": 5}", s->port),
                 300);
    cr_assert_eq(atomic_load(&s->requests), 1, "the retry went out after the cancel");
    srv_stop(s);
}

Test(http, cancel_works_for_rest_client_and_load_balancer)
{
    int port, fd = silent_listener(&port);
    check_cancel(&node_rest_client, jsonf("{\"base_url\": \"http://127.0.0.1:%d\", \"resource\": \"x\"}", port), 100);
    check_cancel(&node_load_balancer,
                 jsonf("{\"upstreams\": [\"http://127.0.0.1:%d\"], \"url\": \"/x\", \"strategy\": \"least_inflight\"}",
                       port),
                 100);
    close(fd);
}

/* ======================================================================== answer headers, as the SDK */

/* Names keep the upstream's case; a repeat in another case joins the first one's value under the
 * first one's name (requests/urllib3); a value keeps its trailing blanks (http.client), loses its
 * leading ones. Both clients. */
Test(http, answer_header_names_keep_their_case_and_repeats_join)
{
    raw_srv *raw = raw_start_with(RAW_FIXED, "HTTP/1.1 200 OK\r\nX-RateLimit-Limit: 100\r\nSet-Cookie: a=1\r\n"
                                             "set-COOKIE: b=2\r\nServer: up \r\nX-Empty:\r\n"
                                             "CONTENT-type: application/json\r\nContent-Length: 2\r\n\r\n{}");
    for (int plain = 0; plain < 2; plain++) {
        http_wire_enable(plain);
        result r = run_config(&node_http_request, jsonf("{\"url\": \"http://127.0.0.1:%d/\"}", raw->port), 10000);
        cr_assert_eq(r.rc, 0, "plain %d: %s: %s", plain, r.err.code, r.err.message);
        json_t *h = at(r.out, "response.headers");
        cr_assert_str_eq(json_string_value(json_object_get(h, "X-RateLimit-Limit")), "100");
        cr_assert_str_eq(json_string_value(json_object_get(h, "Set-Cookie")), "a=1, b=2");
        cr_assert_null(json_object_get(h, "set-COOKIE"));
        cr_assert_str_eq(json_string_value(json_object_get(h, "Server")), "up ");
        cr_assert_str_eq(json_string_value(json_object_get(h, "X-Empty")), "");
        cr_assert_str_eq(json_string_value(at(r.out, "response.content_type")), "application/json");
        cr_assert(json_is_object(at(r.out, "response.content")), "Content-Type found whatever its case");
        cr_assert_eq(json_object_size(h), 6, "plain %d: %zu headers", plain, json_object_size(h));
        result_free(&r);
    }
    http_wire_enable(1);
    raw_stop(raw);
}

Test(http, header_get_is_case_insensitive)
{
    json_t *h = jsonf("{\"X-A\": \"1\", \"x-b\": \"2\"}");
    cr_assert_str_eq(json_string_value(http_header_get(h, "x-a")), "1");
    cr_assert_str_eq(json_string_value(http_header_get(h, "X-B")), "2");
    cr_assert_null(http_header_get(h, "x-c"));
    json_decref(h);
}

/* ======================================================================== RESTClientNode's metadata */

#include "../../src/nodes/rest_meta.h"

static char *meta_text(json_t *headers, json_t *content)
{
    json_t *m = json_object();
    cr_assert_eq(rest_meta_extract(m, headers, content), 0);
    char *s = json_dumps(m, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(m);
    return s;
}

/* What the SDK's _extract_metadata gives, case by case (outputs checked with the SDK 2.63). */
Test(http, rest_metadata_as_the_sdk_extracts_it)
{
    json_t *h = jsonf("{\"X-RateLimit-Limit\": \" 1_000 \", \"x-ratelimit-remaining\": \"abc\","
                      " \"X-Ratelimit-Reset\": \"5\", \"RateLimit-Limit\": \"7\","
                      " \"Link\": \"<https://a/p2>; rel=\\\"next\\\", </p0> ; rel='prev', nosemi, <x>; norel,"
                      " <u>; rel=\\\"last\\\"; title=\\\"t\\\"\"}");
    json_t *c = jsonf("{\"page\": 2, \"meta\": {\"total\": 9, \"pageCount\": 3}, \"per_page\": null,"
                      " \"_links\": {\"self\": {\"href\": \"/me\"}, \"up\": \"/up\", \"bad\": {\"x\": 1}, \"n\": 5},"
                      " \"links\": [{\"rel\": \"a\", \"url\": \"/a\"}, {\"href\": \"/rel\"}, {\"rel\": 3, \"href\": \"/3\"},"
                      " {\"rel\": [1], \"href\": \"/list\"}, {\"rel\": \"e\", \"href\": \"\"}, 7]}");
    char *s = meta_text(h, c);
    cr_assert_str_eq(s,
                     "{\"links\":{\"3\":\"/3\",\"a\":\"/a\",\"related\":\"/rel\",\"self\":\"/me\",\"up\":\"/up\"},"
                     "\"pagination\":{\"last\\\"; title=\\\"t\":\"u\",\"next\":\"https://a/p2\",\"page\":2,"
                     "\"per_page\":null,\"prev\":\"/p0> \",\"total\":9,\"total_pages\":3},"
                     "\"rate_limit\":{\"limit\":7,\"remaining\":\"abc\"}}");
    free(s);
    json_decref(h);
    json_decref(c);
    /* metadata (not meta) when meta is empty; nothing at all: no keys added */
    h = jsonf("{}");
    c = jsonf("{\"meta\": {}, \"metadata\": {\"has_more\": true}}");
    s = meta_text(h, c);
    cr_assert_str_eq(s, "{\"pagination\":{\"has_next\":true}}");
    free(s);
    json_decref(c);
    c = json_string("text body");
    s = meta_text(h, c);
    cr_assert_str_eq(s, "{}");
    free(s);
    json_decref(c);
    json_decref(h);
}

Test(http, rest_py_int_follows_python)
{
    long long v;
    cr_assert(rest_meta_py_int(" +42\t", &v) && v == 42);
    cr_assert(rest_meta_py_int("-1_0", &v) && v == -10);
    cr_assert(rest_meta_py_int("9223372036854775807", &v) && v == 9223372036854775807LL);
    cr_assert(rest_meta_py_int("-9223372036854775808", &v) && v == (-9223372036854775807LL - 1));
    cr_assert_not(rest_meta_py_int("9223372036854775808", &v));
    const char *bad[] = {"", " ", "1__0", "_1", "1_", "0x10", "1.5", "1e3", "--1", "\xc2\xa0", "1 2", NULL};
    for (int i = 0; bad[i]; i++)
        cr_assert_not(rest_meta_py_int(bad[i], &v), "%s", bad[i]);
    cr_assert(rest_meta_py_int("\xc2\xa0" "5\xc2\x85", &v) && v == 5);
}

/* Hostile answers: a Link header of thousands of entries, huge rels, odd bytes; a body with a huge
 * links map. Bounded, valid UTF-8, never a crash. */
Test(http, rest_metadata_is_bounded_on_hostile_values)
{
    buf b = {0};
    for (int i = 0; i < 5000; i++)
        buf_appendf(&b, "%s<\xc3\xa9/%d>; rel=\"r%d\"", i ? "," : "", i, i);
    buf_appendf(&b, ",<x>; rel=");
    for (int i = 0; i < REST_META_MAX_TEXT + 10; i++)
        buf_append(&b, "\xc3\xa9", 2);
    buf_appendf(&b, ",<\x01\x7f>; rel=\"\x01\",;;;,<<>>;=,=;<,\"\"\"");
    buf_terminate(&b);
    json_t *links = rest_meta_link_header(b.data);
    cr_assert(json_is_object(links));
    cr_assert_eq(json_object_size(links), REST_META_MAX_LINKS);
    cr_assert_str_eq(json_string_value(json_object_get(links, "r0")), "\xc3\xa9/0");
    char *dump = json_dumps(links, JSON_COMPACT);
    cr_assert_not_null(dump);
    free(dump);
    json_decref(links);
    links = rest_meta_link_header(";=,=;,;\"'=\"'");
    cr_assert(json_is_object(links));
    cr_assert_str_eq(json_string_value(json_object_get(links, "")), "");
    json_decref(links);

    json_t *h = json_object();
    json_object_set_new(h, "Link", json_stringn(b.data, b.len));
    json_object_set_new(h, "X-RateLimit-Limit", json_string("99999999999999999999999"));
    json_t *c = json_object(), *hal = json_object(), *arr = json_array();
    for (int i = 0; i < 1000; i++) {
        char k[16];
        snprintf(k, sizeof k, "k%d", i);
        json_object_set_new(hal, k, json_pack("{s:i}", "href", i));
        json_array_append_new(arr, json_pack("{s:s, s:s}", "rel", k, "url", "/u"));
    }
    json_object_set_new(c, "_links", hal);
    json_object_set_new(c, "links", arr);
    json_object_set_new(c, "meta", json_string("not an object"));
    json_t *m = json_object();
    cr_assert_eq(rest_meta_extract(m, h, c), 0);
    cr_assert_eq(json_object_size(at(m, "links")), REST_META_MAX_LINKS);
    cr_assert_eq(json_object_size(at(m, "pagination")), REST_META_MAX_LINKS);
    cr_assert_str_eq(json_string_value(at(m, "rate_limit.limit")), "99999999999999999999999");
    dump = json_dumps(m, JSON_COMPACT);
    cr_assert_not_null(dump);
    free(dump);
    json_decref(m);
    json_decref(c);
    json_decref(h);
    buf_free(&b);
}

/* The SDK's error text: error.message, error (a string), message, or "Unknown error"; a value that
 * is not a string as Python's str() prints it, bounded. */
Test(http, rest_error_text_as_the_sdk_writes_it)
{
    const char *cases[][2] = {
        {"{\"error\": {\"message\": \"no such thing\"}}", "no such thing (status: 404)"},
        {"{\"error\": \"exploded\", \"message\": \"m\"}", "exploded (status: 404)"},
        {"{\"error\": {\"message\": \"\"}, \"message\": \"gone\"}", "gone (status: 404)"},
        {"{\"error\": \"\"}", " (status: 404)"},
        {"{\"error\": \"Unknown error\", \"message\": \"m\"}", "m (status: 404)"},
        {"{\"error\": 5, \"message\": 0}", "Unknown error (status: 404)"},
        {"{\"message\": 1.5}", "1.5 (status: 404)"},
        {"{\"message\": 1e20}", "1e+20 (status: 404)"},
        {"{\"message\": 100.0}", "100.0 (status: 404)"},
        {"{\"message\": 0.0001}", "0.0001 (status: 404)"},
        {"{\"message\": 1e-05}", "1e-05 (status: 404)"},
        {"{\"message\": true}", "True (status: 404)"},
        {"{\"message\": [1, \"a'b\", null, {\"k\": \"v\\n\"}]}", "[1, \"a'b\", None, {'k': 'v\\n'}] (status: 404)"},
        {"[1]", "Unknown error (status: 404)"},
        {"\"text\"", "Unknown error (status: 404)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *c = json_loads(cases[i][0], JSON_DECODE_ANY, NULL);
        json_t *e = rest_meta_error(c, 404);
        cr_assert_str_eq(json_string_value(e), cases[i][1], "%s", cases[i][0]);
        json_decref(e);
        json_decref(c);
    }
    /* a huge nested message: bounded, valid JSON string */
    json_t *deep = json_array();
    for (int i = 0; i < 200; i++)
        deep = json_pack("[o, s]", deep, "\xc3\xa9xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    json_t *c = json_pack("{s:o}", "message", deep);
    json_t *e = rest_meta_error(c, 500);
    cr_assert(json_is_string(e));
    cr_assert_lt(json_string_length(e), (size_t)REST_META_MAX_REPR + 200);
    json_decref(e);
    json_decref(c);
    /* a long string inside the message is cut at a character, never inside one (a cut through
     * a two-byte character made invalid UTF-8, which jansson refuses: no error text at all) */
    buf long_text = {0};
    cr_assert_eq(buf_append(&long_text, "a", 1), 0);
    for (int i = 0; i < REST_META_MAX_REPR; i++)
        cr_assert_eq(buf_append(&long_text, "\xc3\xa9", 2), 0);
    c = json_pack("{s:[s#]}", "message", long_text.data, (int)long_text.len);
    buf_free(&long_text);
    cr_assert_not_null(c);
    e = rest_meta_error(c, 500);
    cr_assert(json_is_string(e), "a message cut inside a character gave no error text");
    cr_assert_lt(json_string_length(e), (size_t)REST_META_MAX_REPR + 200);
    json_decref(e);
    json_decref(c);
}

/* One header name repeated tens of thousands of times (within HTTP_MAX_HEADER_BYTES): each repeat
 * joins the first one's value, and joining must not copy the whole value again per repeat (that
 * was quadratic: seconds of the loop thread for a quarter MiB of header lines). */
Test(http, repeated_header_joins_in_linear_time)
{
    buf a = {0};
    enum { REPEATS = 50000 };
    const char *head = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n";
    cr_assert_eq(buf_append(&a, head, strlen(head)), 0);
    for (int i = 0; i < REPEATS; i++)
        cr_assert_eq(buf_append(&a, "A: \r\n", 5), 0);
    cr_assert_eq(buf_append(&a, "\r\n", 3), 0);
    raw_srv *raw = raw_start_with(RAW_FIXED, a.data);
    for (int plain = 0; plain < 2; plain++) {
        http_wire_enable(plain);
        result r = run_config(&node_http_request, jsonf("{\"url\": \"http://127.0.0.1:%d/\"}", raw->port), 10000);
        cr_assert_eq(r.rc, 0, "%s: %s: %s", plain ? "plain" : "libcurl", r.err.code, r.err.message);
        json_t *v = json_object_get(at(r.out, "response.headers"), "A");
        cr_assert_eq(json_string_length(v), (size_t)2 * (REPEATS - 1), "%zu", json_string_length(v));
        cr_assert_lt(r.elapsed_ms, 1000, "%s: %.0f ms", plain ? "plain" : "libcurl", r.elapsed_ms);
        result_free(&r);
    }
    http_wire_enable(1);
    raw_stop(raw);
    buf_free(&a);
}
