/* http: the route table (404, 405 with Allow, the {name} segment), the request's accessors that do
 * more than read a field (on detached requests), and the server: daemons on I/O loops that answer,
 * stop accepting when quiesced, and stop. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kailash/api.h"
#include "kailash/config.h"
#include "kailash/http.h"
#include "kailash/ioloop.h"

static const http_route *find(const char *method, const char *path, char *param, int *status, char *allow)
{
    *status = 0;
    return http_route_find(method, path, param, 132, status, allow, 64);
}

Test(router, routes_and_names)
{
    char param[132], allow[64];
    int st;
    const http_route *r = find("POST", "/workflows/orders/run", param, &st, allow);
    cr_assert_not_null(r);
    cr_assert_eq(r->handle, api_run);
    cr_assert_eq(r->prepare, api_run_prepare);
    cr_assert_str_eq(param, "orders");
    r = find("POST", "/workflows/orders/execute", param, &st, allow);
    cr_assert_eq(r->handle, api_execute);
    r = find("GET", "/workflows/a.b-c_1", param, &st, allow);
    cr_assert_eq(r->handle, api_workflows_get);
    cr_assert_str_eq(param, "a.b-c_1");
    cr_assert_eq(find("GET", "/workflows", param, &st, allow)->handle, api_workflows_list);
    cr_assert_eq(find("GET", "/health", param, &st, allow)->handle, api_health);
    cr_assert_eq(find("GET", "/ready", param, &st, allow)->handle, api_ready);
    cr_assert_eq(find("POST", "/admin/reload", param, &st, allow)->handle, api_admin_reload);
}

Test(router, unknown_paths_are_404)
{
    char param[132], allow[64];
    int st;
    const char *paths[] = {"/",        "/nope",    "/workflows/",       "/workflows//run", "/workflows/a/run/x",
                           "/healthz", "/health/", "/workflows/a/b/run"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        cr_assert_null(find("GET", paths[i], param, &st, allow), "%s", paths[i]);
        cr_assert_eq(st, 404, "%s", paths[i]);
    }
}

Test(router, wrong_method_is_405_with_allow)
{
    char param[132], allow[64];
    int st;
    cr_assert_null(find("GET", "/workflows/x/run", param, &st, allow));
    cr_assert_eq(st, 405);
    cr_assert_str_eq(allow, "POST");
    cr_assert_null(find("DELETE", "/health", param, &st, allow));
    cr_assert_eq(st, 405);
    cr_assert_str_eq(allow, "GET");
    cr_assert_null(find("GET", "/admin/reload", param, &st, allow));
    cr_assert_str_eq(allow, "POST");
}

Test(router, overlong_name_is_404)
{
    char param[132], allow[64], path[400];
    int st;
    memset(path, 'a', sizeof path);
    memcpy(path, "/workflows/", 11);
    strcpy(path + 300, "/run");
    cr_assert_null(find("POST", path, param, &st, allow));
    cr_assert_eq(st, 404);
}

/* ---- the server: one daemon per I/O loop ---- */

/* ---- the request's accessors ---------------------------------------------------------------- */

Test(req, detached_request_has_its_body_and_no_connection)
{
    kreq *r = http_req_new_detached("{\"inputs\":{}}", 13);
    cr_assert_not_null(r);
    cr_assert_eq(http_req_content_length(r), 13);
    cr_assert_eq(http_req_body(r)->len, 13);
    cr_assert_eq(memcmp(http_req_body(r)->data, "{\"inputs\":{}}", 13), 0);
    cr_assert_str_eq(http_req_method(r), "POST");
    cr_assert_str_eq(http_req_param(r), "");
    cr_assert_str_eq(http_req_request_id(r), "");
    cr_assert_null(http_req_route(r));
    cr_assert_null(http_req_header(r, "Content-Type"));
    cr_assert_null(http_req_query(r, "mode"));
    cr_assert_not(http_req_framing_ambiguous(r));
    cr_assert_eq(http_req_answer_status(r), 0);
    http_req_free_detached(r);
    r = http_req_new_detached(NULL, 0);
    cr_assert_eq(http_req_body(r)->len, 0);
    http_req_free_detached(r);
}

Test(req, copied_strings_are_bounded_and_clearable)
{
    kreq *r = http_req_new_detached(NULL, 0);
    char longer[300];
    memset(longer, 'x', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    http_req_set_request_id(r, longer);
    cr_assert_eq(strlen(http_req_request_id(r)), 131);
    http_req_set_workflow_name(r, longer);
    cr_assert_eq(strlen(http_req_workflow_name(r)), 131);
    http_req_set_run_id(r, "0190aaaa-bbbb-7ccc-8ddd-eeeeffff0000");
    cr_assert_str_eq(http_req_run_id(r), "0190aaaa-bbbb-7ccc-8ddd-eeeeffff0000");
    http_req_set_run_id(r, "");
    cr_assert_str_eq(http_req_run_id(r), "");
    http_req_free_detached(r);
}

static int g_freed;
static void count_free(void *p)
{
    g_freed++;
    free(p);
}

Test(req, state_is_owned_and_replaced_state_is_freed)
{
    kreq *r = http_req_new_detached(NULL, 0);
    g_freed = 0;
    void *a = malloc(8), *b = malloc(8);
    http_req_set_state(r, a, count_free);
    cr_assert_eq(http_req_state(r), a);
    http_req_set_state(r, a, count_free); /* the same state again: kept */
    cr_assert_eq(g_freed, 0);
    http_req_set_state(r, b, count_free);
    cr_assert_eq(g_freed, 1);
    cr_assert_eq(http_req_state(r), b);
    http_req_free_detached(r);
    cr_assert_eq(g_freed, 2);
}

Test(req, answer_is_readable_until_queued)
{
    kreq *r = http_req_new_detached(NULL, 0);
    http_req_set_request_id(r, "abc");
    http_reply_header(r, "X-Before", "1"); /* no answer yet: dropped */
    cr_assert_null(http_req_answer_header(r, "X-Before"));
    http_reply_error(r, 404, "not_found", "no such route", NULL);
    http_reply_header(r, "X-Run-ID", "r1");
    http_reply_header(r, "Allow", "GET, POST");
    cr_assert_eq(http_req_answer_status(r), 404);
    cr_assert_str_eq(http_req_answer_header(r, "allow"), "GET, POST");
    cr_assert_str_eq(http_req_answer_header(r, "X-RUN-ID"), "r1");
    cr_assert_null(http_req_answer_header(r, "X-Cache"));
    cr_assert_not_null(strstr(http_req_answer_body(r)->data, "\"request_id\":\"abc\""));
    http_reply_json(r, 200, json_pack("{s:i}", "ok", 1)); /* a new answer replaces headers too */
    cr_assert_eq(http_req_answer_status(r), 200);
    cr_assert_null(http_req_answer_header(r, "Allow"));
    cr_assert_str_eq(http_req_answer_body(r)->data, "{\"ok\":1}");
    http_req_free_detached(r);
}

static size_t keep_body(char *p, size_t size, size_t n, void *ud)
{
    size_t len = strlen(ud);
    size_t take = size * n < 255 - len ? size * n : 255 - len;
    memcpy((char *)ud + len, p, take);
    ((char *)ud)[len + take] = '\0';
    return size * n;
}

/* GET path on a fresh connection: the status, body (up to 255 bytes) in body. -1: no answer. */
static long get(int port, const char *path, char body[256])
{
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    body[0] = '\0';
    CURL *e = curl_easy_init();
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, keep_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, body);
    long status = -1;
    if (curl_easy_perform(e) == CURLE_OK)
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(e);
    return status;
}

static int free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    cr_assert_eq(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    getsockname(s, (struct sockaddr *)&a, &len);
    close(s);
    return ntohs(a.sin_port);
}

Test(server, daemons_on_loops_answer_then_quiesce_and_stop)
{
    char err[512], path[] = "/tmp/kailashd-test-http-XXXXXX", body[256];
    int fd = mkstemp(path), port = free_port();
    cr_assert_geq(fd, 0);
    dprintf(fd, "{\"host\": \"127.0.0.1\", \"port\": %d}", port);
    close(fd);
    kconfig *cfg = NULL;
    cr_assert_eq(config_load(path, &cfg, err, sizeof err), 0, "%s", err);
    unlink(path);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    ioloop *loops[2] = {ioloop_create(err, sizeof err), ioloop_create(err, sizeof err)};
    cr_assert(loops[0] && loops[1], "%s", err);
    cr_assert_eq(http_server_start(cfg, loops, 2, err, sizeof err), 0, "%s", err);
    for (int i = 0; i < 20; i++) { /* new connections, accepted by either loop's daemon */
        cr_assert_eq(get(port, "/health", body), 200, "request %d", i);
        cr_assert(strstr(body, "\"status\":\"ok\""), "%s", body);
    }
    cr_assert_eq(get(port, "/nope", body), 404);
    cr_assert(strstr(body, "\"not_found\""), "%s", body);
    for (int i = 0; i < 200 && http_server_inflight() > 0; i++) /* freed just after the answer is sent */
        usleep(10 * 1000);
    cr_assert_eq(http_server_inflight(), 0);
    http_server_quiesce();
    cr_assert_eq(get(port, "/health", body), -1, "a quiesced server still accepted a connection");
    http_server_stop();
    ioloop_destroy(loops[0]);
    ioloop_destroy(loops[1]);
    curl_global_cleanup();
    config_free(cfg);
}
