/* Tests of LLMAgentNode against a real local upstream (libmicrohttpd on 127.0.0.1) that answers as
 * an OpenAI-compatible server (/v1/chat/completions) and as Ollama (/api/chat). A path prefix of
 * base_url picks a behaviour: /s500 and /s429 (error statuses), /garbage (a 200 that is not JSON),
 * /huge (over max_response_bytes), /slow (no answer for 2 s). The server keeps the last request's
 * Authorization header and body. The SDK's mock provider runs without it. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kailash/ioloop.h"
#include "kailash/node.h"
#include "kailash/upstream.h"
#include "kailash/util.h"

extern const node_type node_llm_agent;

#define SECRET "sk-test-0123456789-secret"

/* ======================================================================== the upstream */

static struct MHD_Daemon *d;
static int port;
static pthread_mutex_t seen_m = PTHREAD_MUTEX_INITIALIZER;
static char seen_auth[256];
static char seen_body[4096];
static char seen_url[256];
static atomic_int stopping;

static enum MHD_Result send_text(struct MHD_Connection *c, unsigned status, const char *body, size_t len)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result route(struct MHD_Connection *c, const char *url)
{
    if (strncmp(url, "/s500/", 6) == 0) {
        static const char b[] = "{\"error\":{\"message\":\"boom " SECRET "\",\"type\":\"server_error\"}}";
        return send_text(c, 500, b, sizeof b - 1);
    }
    if (strncmp(url, "/s429/", 6) == 0) {
        static const char b[] = "{\"error\":{\"message\":\"Incorrect key " SECRET "\",\"code\":\"rate_limit_exceeded\"}}";
        return send_text(c, 429, b, sizeof b - 1);
    }
    if (strncmp(url, "/garbage/", 9) == 0)
        return send_text(c, 200, "{not json", 9);
    if (strncmp(url, "/huge/", 6) == 0) {
        size_t n = 3u << 20;
        char *big = malloc(n);
        memset(big, ' ', n);
        enum MHD_Result ret = send_text(c, 200, big, n);
        free(big);
        return ret;
    }
    if (strncmp(url, "/slow/", 6) == 0)
        for (int i = 0; i < 200 && !atomic_load(&stopping); i++)
            usleep(10000);
    if (strstr(url, "/api/chat")) {
        static const char b[] = "{\"model\":\"llama3\",\"message\":{\"role\":\"assistant\",\"content\":\"hi from "
                                "ollama\"},\"done\":true,\"done_reason\":\"stop\",\"prompt_eval_count\":7,"
                                "\"eval_count\":3}";
        return send_text(c, 200, b, sizeof b - 1);
    }
    static const char b[] = "{\"id\":\"x\",\"model\":\"gpt-4\",\"choices\":[{\"index\":0,\"message\":{\"role\":"
                            "\"assistant\",\"content\":\"hello there\"},\"finish_reason\":\"stop\"}],\"usage\":"
                            "{\"prompt_tokens\":12,\"completion_tokens\":5,\"total_tokens\":17}}";
    return send_text(c, 200, b, sizeof b - 1);
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                               const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
    (void)cls;
    (void)method;
    (void)version;
    buf *body = *con_cls;
    if (!body) {
        *con_cls = calloc(1, sizeof(buf));
        return MHD_YES;
    }
    if (*upload_size) {
        buf_append(body, upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    pthread_mutex_lock(&seen_m);
    snprintf(seen_auth, sizeof seen_auth, "%s", auth ? auth : "");
    snprintf(seen_body, sizeof seen_body, "%.*s", (int)body->len, body->data ? body->data : "");
    snprintf(seen_url, sizeof seen_url, "%s", url);
    pthread_mutex_unlock(&seen_m);
    return route(c, url);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode t)
{
    (void)cls;
    (void)c;
    (void)t;
    buf *b = *con_cls;
    if (b) {
        buf_free(b);
        free(b);
    }
    *con_cls = NULL;
}

/* ======================================================================== driving the node */

static ioloop *io;
static node_env env;

typedef struct waiter {
    pthread_mutex_t m;
    pthread_cond_t c;
    int calls;
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

typedef struct result {
    int rc;
    int sync_fail;
    json_t *out;
    node_error err;
} result;

/* Compiles config, starts it with config as inputs, waits for done; consumes config. */
static result run_config(json_t *config)
{
    char err[256];
    void *compiled = NULL;
    cr_assert_eq(node_llm_agent.compile(&env, config, &compiled, err, sizeof err), 0, "compile: %s", err);
    waiter w = {.m = PTHREAD_MUTEX_INITIALIZER, .c = PTHREAD_COND_INITIALIZER};
    result r = {0};
    node_call call = {.node_id = "n", .inputs = config, .deadline_ms = util_now_ms() + 20000, .io = io,
                      .done = on_done, .engine_data = &w};
    if (node_llm_agent.start(compiled, &call, &r.err) != 0) {
        r.rc = -1;
        r.sync_fail = 1;
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 20;
        pthread_mutex_lock(&w.m);
        while (!w.calls && pthread_cond_timedwait(&w.c, &w.m, &ts) == 0)
            ;
        pthread_mutex_unlock(&w.m);
        cr_assert_eq(w.calls, 1, "done was not called once");
        r.rc = w.failed ? -1 : 0;
        r.out = w.out;
        r.err = w.err;
    }
    node_llm_agent.free(compiled);
    json_decref(config);
    return r;
}

static int compile_fails(const char *config, const char *want)
{
    char err[256] = "";
    void *compiled = NULL;
    json_t *cfg = jsonf("%s", config);
    int rc = node_llm_agent.compile(&env, cfg, &compiled, err, sizeof err);
    if (rc == 0)
        node_llm_agent.free(compiled);
    json_decref(cfg);
    cr_assert_neq(rc, 0, "compile accepted %s", config);
    cr_assert(strstr(err, want), "message '%s' lacks '%s'", err, want);
    return 1;
}

static void setup_suite(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    setenv("KLLM_TEST_KEY", SECRET, 1);
    unsetenv("KLLM_UNSET_KEY");
    env = (node_env){.data_dir = "/tmp", .max_response_bytes = 1 << 20, .connect_timeout_ms = 2000, .verify_tls = 1};
    char err[128];
    io = ioloop_create(err, sizeof err);
    cr_assert_not_null(io, "%s", err);
    cr_assert_eq(upstream_loop_start(io, 16, err, sizeof err), 0, "%s", err);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    d = MHD_start_daemon(MHD_USE_AUTO | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0, NULL, NULL,
                         handler, NULL, MHD_OPTION_SOCK_ADDR, &sin, MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
                         MHD_OPTION_END);
    cr_assert_not_null(d);
    port = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT)->port;
}

static void teardown_suite(void)
{
    atomic_store(&stopping, 1);
    MHD_stop_daemon(d);
    ioloop_destroy(io);
    curl_global_cleanup();
}

TestSuite(llm, .init = setup_suite, .fini = teardown_suite, .timeout = 60);

static void assert_no_secret(json_t *out, const node_error *err)
{
    char *text = out ? json_dumps(out, 0) : NULL;
    cr_assert(!text || !strstr(text, "sk-test"), "the key is in the outputs: %s", text);
    free(text);
    cr_assert(!strstr(err->message, "sk-test"), "the key is in the error: %s", err->message);
}

/* ======================================================================== tests */

Test(llm, mock_answers_as_the_sdk)
{
    result r = run_config(jsonf("{\"provider\": \"mock\", \"model\": \"gpt-4\", \"system_prompt\": \"Be brief\","
                                "\"messages\": [{\"role\": \"user\", \"content\": \"What is 2+2?\"}]}"));
    cr_assert_eq(r.rc, 0, "%s", r.err.message);
    json_t *want = jsonf(
        "{\"success\": true, \"response\": {\"content\": \"Regarding your question about 'What is 2+2?...', "
        "here's what I found from the available context and resources...\", \"role\": \"assistant\", \"model\": "
        "\"mock-model\", \"created\": 1701234567, \"tool_calls\": [], \"finish_reason\": \"stop\", \"usage\": "
        "{\"prompt_tokens\": 5, \"completion_tokens\": 28, \"total_tokens\": 0}}, \"conversation_id\": null, "
        "\"usage\": {\"prompt_tokens\": 5, \"completion_tokens\": 28, \"total_tokens\": 0, \"estimated_cost_usd\": "
        "0.00183, \"model\": \"gpt-4\", \"provider\": \"mock\", \"efficiency_score\": 0.0}, \"context\": "
        "{\"mcp_resources_used\": 0, \"rag_documents_retrieved\": 0, \"tools_available\": 0, \"tools_executed\": 0, "
        "\"memory_tokens\": 0}, \"metadata\": {\"provider\": \"mock\", \"model\": \"gpt-4\", \"langchain_used\": "
        "false, \"streaming\": false, \"generation_config\": {}}}");
    json_object_del(json_object_get(r.out, "response"), "id"); /* the SDK's is a random hash */
    char *got = json_dumps(r.out, JSON_SORT_KEYS);
    cr_assert(json_equal(r.out, want), "got %s", got);
    free(got);
    json_decref(want);
    json_decref(r.out);
}

Test(llm, mock_picks_the_sdk_branches)
{
    static const char *const cases[][2] = {
        {"please analyze this", "Based on the provided data and context"},
        {"generate a plan", "I'll help you create that."},
        {"A train travels 300 km in 4 hours", "Step 1: Calculate the train's speed"},
        {"tell me a rebuttal", "{\"rebuttal\": "},
        {"hello", "I understand you want me to work with: 'hello...'."},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        result r = run_config(
            jsonf("{\"provider\": \"mock\", \"messages\": [{\"role\": \"user\", \"content\": \"%s\"}]}", cases[i][0]));
        cr_assert_eq(r.rc, 0);
        const char *content = json_string_value(json_object_get(json_object_get(r.out, "response"), "content"));
        cr_assert(strstr(content, cases[i][1]) == content, "%s: %s", cases[i][0], content);
        json_decref(r.out);
    }
}

Test(llm, openai_call_sends_the_key_as_bearer_and_gives_the_sdk_shape)
{
    result r = run_config(jsonf("{\"provider\": \"openai\", \"base_url\": \"http://127.0.0.1:%d\", \"model\": "
                                "\"gpt-4\", \"api_key_env\": \"KLLM_TEST_KEY\", \"temperature\": 0.5, "
                                "\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"max_retries\": 0}",
                                port));
    cr_assert_eq(r.rc, 0, "%s", r.err.message);
    pthread_mutex_lock(&seen_m);
    cr_assert_str_eq(seen_auth, "Bearer " SECRET);
    cr_assert_str_eq(seen_url, "/v1/chat/completions");
    json_t *body = jsonf("%s", seen_body);
    pthread_mutex_unlock(&seen_m);
    cr_assert_str_eq(json_string_value(json_object_get(body, "model")), "gpt-4");
    cr_assert(json_real_value(json_object_get(body, "temperature")) == 0.5);
    json_decref(body);
    json_t *resp = json_object_get(r.out, "response");
    cr_assert_str_eq(json_string_value(json_object_get(resp, "content")), "hello there");
    json_t *usage = json_object_get(r.out, "usage");
    cr_assert_eq(json_integer_value(json_object_get(usage, "prompt_tokens")), 12);
    cr_assert_eq(json_integer_value(json_object_get(usage, "total_tokens")), 17);
    cr_assert(json_is_true(json_object_get(r.out, "success")));
    assert_no_secret(r.out, &r.err);
    json_decref(r.out);
}

Test(llm, base_url_ending_in_v1_is_not_doubled)
{
    result r = run_config(jsonf("{\"provider\": \"openai\", \"base_url\": \"http://127.0.0.1:%d/v1/\", "
                                "\"messages\": [], \"max_retries\": 0}",
                                port));
    cr_assert_eq(r.rc, 0, "%s", r.err.message);
    pthread_mutex_lock(&seen_m);
    cr_assert_str_eq(seen_url, "/v1/chat/completions");
    cr_assert_str_eq(seen_auth, "", "no api_key_env, no Authorization");
    pthread_mutex_unlock(&seen_m);
    json_decref(r.out);
}

Test(llm, ollama_call_uses_api_chat_without_streaming)
{
    result r = run_config(jsonf("{\"provider\": \"ollama\", \"base_url\": \"http://127.0.0.1:%d\", \"model\": "
                                "\"llama3\", \"max_tokens\": 20, \"messages\": [{\"role\": \"user\", \"content\": "
                                "\"hi\"}]}",
                                port));
    cr_assert_eq(r.rc, 0, "%s", r.err.message);
    pthread_mutex_lock(&seen_m);
    cr_assert_str_eq(seen_url, "/api/chat");
    json_t *body = jsonf("%s", seen_body);
    pthread_mutex_unlock(&seen_m);
    cr_assert(json_is_false(json_object_get(body, "stream")));
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(body, "options"), "num_predict")), 20);
    json_decref(body);
    json_t *usage = json_object_get(r.out, "usage");
    cr_assert_eq(json_integer_value(json_object_get(usage, "prompt_tokens")), 7);
    cr_assert_eq(json_integer_value(json_object_get(usage, "completion_tokens")), 3);
    cr_assert_eq(json_integer_value(json_object_get(usage, "total_tokens")), 10);
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(r.out, "response"), "content")),
                     "hi from ollama");
    json_decref(r.out);
}

Test(llm, error_statuses_are_answers_without_the_body_text)
{
    const char *paths[] = {"s500", "s429"};
    for (int i = 0; i < 2; i++) {
        result r = run_config(jsonf("{\"provider\": \"openai\", \"base_url\": \"http://127.0.0.1:%d/%s\", "
                                    "\"api_key_env\": \"KLLM_TEST_KEY\", \"max_retries\": 0}",
                                    port, paths[i]));
        cr_assert_eq(r.rc, 0, "%s", r.err.message);
        cr_assert(json_is_false(json_object_get(r.out, "success")));
        const char *e = json_string_value(json_object_get(r.out, "error"));
        cr_assert(strstr(e, i == 0 ? "HTTP 500: server_error" : "HTTP 429: rate_limit_exceeded"), "%s", e);
        assert_no_secret(r.out, &r.err);
        json_decref(r.out);
    }
}

Test(llm, transport_garbage_and_oversize_are_upstream_errors)
{
    const char *paths[] = {"garbage", "huge"};
    for (int i = 0; i < 2; i++) {
        result r = run_config(jsonf("{\"provider\": \"openai\", \"base_url\": \"http://127.0.0.1:%d/%s\", "
                                    "\"max_retries\": 0}",
                                    port, paths[i]));
        cr_assert_eq(r.rc, -1);
        cr_assert_str_eq(r.err.code, "upstream_error", "%s: %s", paths[i], r.err.message);
    }
    result r = run_config(jsonf("{\"provider\": \"openai\", \"base_url\": \"http://127.0.0.1:1\", "
                                "\"max_retries\": 0}"));
    cr_assert_eq(r.rc, -1);
    cr_assert_str_eq(r.err.code, "upstream_error", "%s", r.err.message);
}

Test(llm, node_timeout_is_an_upstream_error)
{
    double t0 = util_now_ms();
    result r = run_config(jsonf("{\"provider\": \"openai\", \"base_url\": \"http://127.0.0.1:%d/slow\", "
                                "\"timeout\": 0.3, \"max_retries\": 0}",
                                port));
    cr_assert_eq(r.rc, -1);
    cr_assert_str_eq(r.err.code, "upstream_error", "%s", r.err.message);
    cr_assert_lt(util_now_ms() - t0, 1500);
}

Test(llm, missing_env_var_fails_the_run_naming_it)
{
    result r = run_config(jsonf("{\"provider\": \"openai\", \"base_url\": \"http://127.0.0.1:%d\", "
                                "\"api_key_env\": \"KLLM_UNSET_KEY\"}",
                                port));
    cr_assert_eq(r.rc, -1);
    cr_assert(r.sync_fail);
    cr_assert(strstr(r.err.message, "KLLM_UNSET_KEY is not set"), "%s", r.err.message);
}

Test(llm, config_is_checked_at_load)
{
    compile_fails("{\"provider\": \"anthropic\"}", "config.provider");
    compile_fails("{}", "config.provider: required");
    compile_fails("{\"provider\": \"openai\", \"base_url\": \"ftp://x\"}", "base_url");
    compile_fails("{\"provider\": \"openai\", \"base_url\": \"http://{{inputs.h}}/\"}", "base_url");
    compile_fails("{\"provider\": \"openai\", \"api_key_env\": \"KAILASH_DATABASE_URL\"}", "daemon's own");
    compile_fails("{\"provider\": \"openai\", \"api_key_env\": \"A-B\"}", "api_key_env");
    compile_fails("{\"provider\": \"mock\", \"messages\": [{\"content\": \"x\"}]}", "messages[0]");
    compile_fails("{\"provider\": \"mock\", \"max_tokens\": 0}", "max_tokens");
    compile_fails("{\"provider\": \"mock\", \"generation_config\": {\"logit_bias\": {}}}", "logit_bias");
    compile_fails("{\"provider\": \"mock\", \"timeout\": -1}", "timeout");
}

/* ======================================================================== cancel */

typedef struct cancel_case {
    void *compiled;
    json_t *inputs;
    node_call call;
    waiter w;
    int start_rc, had_cancel;
} cancel_case;

static void cancel_start(void *ud)
{
    cancel_case *c = ud;
    node_error err;
    c->call = (node_call){.node_id = "n", .inputs = c->inputs, .deadline_ms = util_now_ms() + 30000, .io = io,
                          .done = on_done, .engine_data = &c->w};
    c->start_rc = node_llm_agent.start(c->compiled, &c->call, &err);
}

static void cancel_now(void *ud)
{
    cancel_case *c = ud;
    c->had_cancel = c->call.cancel != NULL;
    if (c->call.cancel)
        c->call.cancel(&c->call);
}

Test(llm, cancel_aborts_the_call_in_flight)
{
    cancel_case c = {.w = {.m = PTHREAD_MUTEX_INITIALIZER, .c = PTHREAD_COND_INITIALIZER}};
    char err[256];
    c.inputs = jsonf("{\"provider\": \"openai\", \"base_url\": \"http://127.0.0.1:%d/slow\", \"max_retries\": 0}",
                     port);
    cr_assert_eq(node_llm_agent.compile(&env, c.inputs, &c.compiled, err, sizeof err), 0, "%s", err);
    cr_assert_eq(ioloop_call(io, cancel_start, &c), 0);
    cr_assert_eq(c.start_rc, 0);
    usleep(200 * 1000);
    cr_assert_eq(c.w.calls, 0);
    cr_assert_eq(ioloop_call(io, cancel_now, &c), 0);
    cr_assert(c.had_cancel);
    cr_assert_eq(c.w.calls, 1);
    cr_assert_str_eq(c.w.err.code, "cancelled");
    cr_assert_null(c.call.cancel);
    cr_assert_eq(upstream_inflight(io), 0);
    node_llm_agent.free(c.compiled);
    json_decref(c.inputs);
}
