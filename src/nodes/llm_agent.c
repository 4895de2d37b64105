/* LLMAgentNode: one chat completion, as the Kailash SDK's node (kaizen.nodes.ai.llm_agent) makes it,
 * with its outputs: {success, response, conversation_id, usage, context, metadata}.
 *
 * Providers: "openai" (any OpenAI-compatible server: POST {base_url}/v1/chat/completions, or
 * {base_url}/chat/completions when base_url already ends in /v1; base_url defaults to
 * https://api.openai.com), "ollama" (POST {base_url}/api/chat with stream false; default
 * http://localhost:11434), and the SDK's "mock" (llm_mock.c: no network; its answer is posted to the
 * loop so done never runs inside start). The wire formats are llm_wire.c's.
 *
 * Where the call goes and with which key is the workflow file's alone: provider, base_url and
 * api_key_env are literal and pinned. The key is read from the environment variable api_key_env
 * names when the workflow loads (compile), kept in the compiled node (wiped when freed) and sent as
 * "Authorization: Bearer"; only the variable's name appears in messages. A variable that is not
 * set does not stop the load (the key may be deployed later with a reload) but fails every run that
 * would call out with a node error naming it. Names starting with KAILASH_ are refused: those are
 * the daemon's own settings (its database URL, among others), not keys a workflow may send away.
 *
 * The call is an exchange of the upstream module (src/upstream/exchange.c), as HTTP nodes make:
 * the node's `timeout`, the run's deadline, max_retries retries of transport errors and 502/503/504
 * with backoff, upstream.max_response_bytes, and cancel (the transfer leaves the loop at once).
 * How it ends: a transport error, the node's timeout, an oversize answer, or a 2xx body that is not
 * a JSON object fails the node with upstream_error (502), as HTTP nodes fail; any other status is an
 * answer with success false and the SDK's error ports (error, error_type, provider, model,
 * conversation_id, recovery_suggestions), as HTTP nodes answer a 404 and as the SDK reports a
 * provider error. The error text names the status and the answer's error code word, never the
 * answer's free text (an API may quote part of the key back).
 *
 * Token usage goes into the outputs (usage) and into kailash_llm_tokens_total{provider,kind}. */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "http_common.h"
#include "kailash/ioloop.h"
#include "kailash/metrics.h"
#include "kailash/util.h"
#include "llm.h"

#define LLM_DEFAULT_MODEL "gpt-4o-mini" /* the SDK's DEFAULT_OPENAI_MODEL */
#define LLM_DEFAULT_TIMEOUT_S 120.0     /* the SDK's default timeout */
#define LLM_DEFAULT_RETRIES 3           /* the SDK's default max_retries */
#define LLM_BACKOFF_MS 1000.0
#define LLM_MAX_TOKENS_LIMIT 10000000

static const char *const llm_provider_names[] = {"mock", "openai", "ollama", NULL}; /* llm_provider's order */

#define LLM_KEYS(X)                                                                                                    \
    X("provider", HTTP_K_ENUM, llm_provider_names, 1)                                                                  \
    X("base_url", HTTP_K_STRING, NULL, 1)                                                                              \
    X("api_key_env", HTTP_K_STRING, NULL, 1)                                                                           \
    X("model", HTTP_K_STRING, NULL, 0)                                                                                 \
    X("messages", HTTP_K_ANY, NULL, 0)                                                                                 \
    X("system_prompt", HTTP_K_STRING, NULL, 0)                                                                         \
    X("generation_config", HTTP_K_ANY, NULL, 0)                                                                        \
    X("temperature", HTTP_K_ANY, NULL, 0)                                                                              \
    X("max_tokens", HTTP_K_ANY, NULL, 0)                                                                               \
    X("timeout", HTTP_K_SECONDS, NULL, 0)                                                                              \
    X("max_retries", HTTP_K_RETRIES, NULL, 0)

static const http_key llm_keys[] = {LLM_KEYS(HTTP_KEY_ROW){NULL, 0, NULL, 0}};
static const char *const llm_key_names[] = {LLM_KEYS(HTTP_KEY_NAME) NULL};
static const char *const llm_pinned[] = {"provider", "base_url", "api_key_env", NULL};

typedef struct llm_node {
    http_base base;
    llm_provider provider;
    char *url;         /* owned: the endpoint's URL (NULL for mock) */
    http_origin origin;
    char env_name[129]; /* api_key_env, "" when none */
    char *key;          /* owned, wiped when freed: the key, NULL when none or not set */
} llm_node;

static void llm_free(void *compiled)
{
    llm_node *n = compiled;
    if (!n)
        return;
    http_base_clear(&n->base);
    free(n->url);
    if (n->key) {
        OPENSSL_cleanse(n->key, strlen(n->key));
        free(n->key);
    }
    free(n);
}

/* ======================================================================== value checks */

/* messages: a list of objects with a string role; content a string, a list of parts, or null. */
static int llm_check_messages(json_t *v, int at_load, char *err, size_t errlen)
{
    const char *pfx = at_load ? "config." : "";
    if (!json_is_array(v))
        return util_err(err, errlen, "%smessages: expected a list of messages", pfx);
    size_t i;
    json_t *m;
    json_array_foreach(v, i, m)
    {
        if (at_load && http_value_deferred(m))
            continue;
        json_t *role = json_object_get(m, "role"), *content = json_object_get(m, "content");
        if (!json_is_object(m) || !json_is_string(role))
            return util_err(err, errlen, "%smessages[%zu]: expected an object with a string role", pfx, i);
        if (content && !json_is_string(content) && !json_is_array(content) && !json_is_null(content))
            return util_err(err, errlen, "%smessages[%zu].content: expected a string or a list of parts", pfx, i);
    }
    return 0;
}

static int llm_check_number(const char *pfx, const char *key, json_t *v, int integer, char *err, size_t errlen)
{
    if (integer ? json_is_integer(v) && json_integer_value(v) >= 1 && json_integer_value(v) <= LLM_MAX_TOKENS_LIMIT
                : json_is_number(v))
        return 0;
    return util_err(err, errlen, "%s%s: expected %s", pfx, key, integer ? "an integer >= 1" : "a number");
}

/* generation_config: the SDK's sampling keys (temperature, top_p, max_tokens, stop, seed). */
static int llm_check_gen(json_t *g, int at_load, char *err, size_t errlen)
{
    const char *pfx = at_load ? "config.generation_config." : "generation_config.";
    if (!json_is_object(g))
        return util_err(err, errlen, "%sgeneration_config: expected an object", at_load ? "config." : "");
    const char *k;
    json_t *v;
    json_object_foreach(g, k, v)
    {
        if (json_is_null(v) || (at_load && http_value_deferred(v)))
            continue;
        int rc = 0;
        if (strcmp(k, "temperature") == 0 || strcmp(k, "top_p") == 0)
            rc = llm_check_number(pfx, k, v, 0, err, errlen);
        else if (strcmp(k, "max_tokens") == 0)
            rc = llm_check_number(pfx, k, v, 1, err, errlen);
        else if (strcmp(k, "seed") == 0)
            rc = json_is_integer(v) ? 0 : util_err(err, errlen, "%sseed: expected an integer", pfx);
        else if (strcmp(k, "stop") == 0)
            rc = json_is_string(v) || json_is_array(v)
                     ? 0
                     : util_err(err, errlen, "%sstop: expected a string or a list of strings", pfx);
        else
            rc = util_err(err, errlen, "%s%s: not supported (temperature, top_p, max_tokens, stop, seed are)", pfx,
                          k);
        if (rc != 0)
            return -1;
    }
    return 0;
}

/* The checks http_keys_check can't make: messages, generation_config, temperature, max_tokens. */
static int llm_check_values(json_t *obj, int at_load, char *err, size_t errlen)
{
    const char *pfx = at_load ? "config." : "";
    json_t *v;
#define LLM_GIVEN(key) ((v = json_object_get(obj, key)) && !json_is_null(v) && !(at_load && http_value_deferred(v)))
    if (LLM_GIVEN("messages") && llm_check_messages(v, at_load, err, errlen) != 0)
        return -1;
    if (LLM_GIVEN("generation_config") && llm_check_gen(v, at_load, err, errlen) != 0)
        return -1;
    if (LLM_GIVEN("temperature") && llm_check_number(pfx, "temperature", v, 0, err, errlen) != 0)
        return -1;
    if (LLM_GIVEN("max_tokens") && llm_check_number(pfx, "max_tokens", v, 1, err, errlen) != 0)
        return -1;
#undef LLM_GIVEN
    return 0;
}

/* ======================================================================== compile */

/* The endpoint of provider p at base (a literal http(s) URL). 0 or -1 with err. */
static int llm_endpoint(llm_node *n, const char *base, char *err, size_t errlen)
{
    if (http_origin_from_config("base_url", base, &n->origin, err, errlen) != 0)
        return -1;
    size_t len = strlen(base);
    while (len && base[len - 1] == '/')
        len--;
    const char *tail = n->provider == LLM_OLLAMA                        ? "/api/chat"
                       : len >= 3 && strncmp(base + len - 3, "/v1", 3) == 0 ? "/chat/completions"
                                                                            : "/v1/chat/completions";
    buf b = {0};
    if (buf_append(&b, base, len) != 0 || buf_appendf(&b, "%s", tail) != 0) {
        buf_free(&b);
        return util_err(err, errlen, "out of memory");
    }
    n->url = b.data;
    return 0;
}

/* An environment variable's name: [A-Za-z_][A-Za-z0-9_]*, at most 128 bytes. */
static int llm_env_name_ok(const char *s, size_t len)
{
    if (len == 0 || len > 128 || strlen(s) != len || (s[0] >= '0' && s[0] <= '9'))
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') ||
              s[i] == '_'))
            return 0;
    return 1;
}

/* api_key_env: the name checked, and the key read once (it may be unset: runs then fail). */
static int llm_read_key(llm_node *n, json_t *name, char *err, size_t errlen)
{
    if (!name || json_is_null(name))
        return 0;
    const char *s = json_string_value(name);
    if (!llm_env_name_ok(s, json_string_length(name)))
        return util_err(err, errlen, "config.api_key_env: expected the name of an environment variable (letters, "
                                     "digits, _)");
    if (strncmp(s, "KAILASH_", 8) == 0)
        return util_err(err, errlen, "config.api_key_env: %s is one of the daemon's own settings, not an API key", s);
    util_copy(n->env_name, sizeof n->env_name, s);
    const char *key = getenv(s); /* at load only: getenv is not safe against a concurrent setenv */
    if (key && *key && !(n->key = strdup(key)))
        return util_err(err, errlen, "out of memory");
    return 0;
}

static int llm_compile_into(llm_node *n, const node_env *env, json_t *config, char *err, size_t errlen)
{
    json_t *provider = json_object_get(config, "provider"), *base = json_object_get(config, "base_url");
    if (!json_is_string(provider))
        return util_err(err, errlen, "config.provider: required, one of mock openai ollama");
    n->provider = (llm_provider)http_choice_index(llm_provider_names, json_string_value(provider));
    if (http_base_init(&n->base, llm_keys, env, config, err, errlen) != 0)
        return -1;
    if (llm_read_key(n, json_object_get(config, "api_key_env"), err, errlen) != 0)
        return -1;
    if (n->provider == LLM_MOCK)
        return 0;
    const char *dflt = n->provider == LLM_OLLAMA ? "http://localhost:11434" : "https://api.openai.com";
    return llm_endpoint(n, json_is_string(base) ? json_string_value(base) : dflt, err, errlen);
}

static int llm_compile(const node_env *env, json_t *config, void **compiled, char *err, size_t errlen)
{
    if (http_keys_check(llm_keys, config, 1, err, errlen) != 0 || llm_check_values(config, 1, err, errlen) != 0)
        return -1;
    llm_node *n = calloc(1, sizeof *n);
    if (!n)
        return util_err(err, errlen, "out of memory");
    if (llm_compile_into(n, env, config, err, errlen) != 0) {
        llm_free(n);
        return -1;
    }
    *compiled = n;
    return 0;
}

/* ======================================================================== one call */

/* A call in flight: what the outputs need, and the exchange for cancel. Owned by the node from
 * start to done. */
typedef struct llm_call {
    node_call *call;
    llm_provider provider;
    char *model;        /* owned */
    json_t *gen;        /* owned: the generation_config the metadata reports */
    json_t *response;   /* owned: the mock's answer (mock only) */
    http_exchange *ex;  /* the exchange while it runs */
} llm_call;

static void llm_call_free(llm_call *c)
{
    free(c->model);
    json_decref(c->gen);
    json_decref(c->response);
    free(c);
}

static int llm_put(json_t *o, const char *key, json_t *v)
{
    return v && json_object_set_new(o, key, v) == 0 ? 0 : -1;
}

/* The SDK's success outputs for response (borrowed). */
static json_t *llm_outputs(const llm_call *c, json_t *response)
{
    const char *provider = llm_provider_names[c->provider];
    json_t *out = json_object();
    if (!out || llm_put(out, "success", json_true()) != 0 || llm_put(out, "response", json_incref(response)) != 0 ||
        llm_put(out, "conversation_id", json_null()) != 0 ||
        llm_put(out, "usage", llm_usage_metrics(response, c->model, provider)) != 0 ||
        llm_put(out, "context",
                json_pack("{s:i, s:i, s:i, s:i, s:i}", "mcp_resources_used", 0, "rag_documents_retrieved", 0,
                          "tools_available", 0, "tools_executed", 0, "memory_tokens", 0)) != 0 ||
        llm_put(out, "metadata",
                json_pack("{s:s, s:s, s:b, s:b, s:O}", "provider", provider, "model", c->model, "langchain_used", 0,
                          "streaming", 0, "generation_config", c->gen)) != 0) {
        json_decref(out);
        return NULL;
    }
    json_int_t p, k;
    llm_usage_counts(json_object_get(response, "usage"), &p, &k);
    metrics_llm_tokens(provider, (uint64_t)p, (uint64_t)k);
    return out;
}

/* The SDK's error outputs for an answer that is not 2xx. */
static json_t *llm_error_outputs(const llm_call *c, long status, json_t *answer)
{
    const char *code = llm_wire_error_code(answer);
    char text[160];
    snprintf(text, sizeof text, "%s: the upstream answered HTTP %ld%s%s", llm_provider_names[c->provider], status,
             code ? ": " : "", code ? code : "");
    return json_pack("{s:b, s:s, s:s, s:s, s:s, s:n, s:[s,s,s,s], s:i}", "success", 0, "error", text, "error_type",
                     "RuntimeError", "provider", llm_provider_names[c->provider], "model", c->model, "conversation_id",
                     "recovery_suggestions", "Check API credentials and model availability",
                     "Verify MCP server connections", "Reduce message length if hitting token limits",
                     "Check tool definitions for syntax errors", "status_code", (int)status);
}

/* The exchange's outputs hook: the status and the parsed body, for llm_on_done to judge. */
static json_t *llm_answer(http_exchange *ex, const http_answer *a)
{
    (void)ex;
    return json_pack("{s:I, s:O}", "status", (json_int_t)a->status_code, "content", a->content);
}

static const http_hooks llm_hooks = {.outputs = llm_answer};

/* Ends the call: the engine's again once done runs. */
static void llm_finish(llm_call *c, json_t *outputs, const node_error *err)
{
    node_call *call = c->call;
    call->cancel = NULL;
    call->node_data = NULL;
    llm_call_free(c);
    call->done(call, outputs, err);
}

static void llm_on_done(void *ud, json_t *answer, const node_error *err)
{
    llm_call *c = ud;
    c->ex = NULL;
    if (err) {
        llm_finish(c, NULL, err);
        return;
    }
    long status = (long)json_integer_value(json_object_get(answer, "status"));
    json_t *content = json_object_get(answer, "content"), *out = NULL, *response = NULL;
    node_error e = {"internal", "out of memory building the outputs"};
    char msg[128];
    if (status < 200 || status >= 300) {
        out = llm_error_outputs(c, status, content);
    } else if (!(response = llm_wire_parse(c->provider, content, msg, sizeof msg))) {
        node_fail(&e, json_is_object(content) ? "internal" : "upstream_error", "%s: %s", llm_provider_names[c->provider],
                  msg);
    } else {
        out = llm_outputs(c, response);
    }
    json_decref(response);
    json_decref(answer);
    llm_finish(c, out, out ? NULL : &e);
}

static void llm_cancel(node_call *call)
{
    llm_call *c = call->node_data;
    if (c && c->ex)
        http_exchange_abort(c->ex); /* calls llm_on_done with "cancelled" */
}

/* The request: URL, body, headers (the key as a bearer token), timeout and retries. */
static int llm_build(const llm_node *n, llm_call *c, json_t *messages, double timeout_s, int retries,
                     http_request *r, node_error *err)
{
    if (http_url_parse("base_url", n->url, &n->origin, &r->url, err) != 0)
        return -1;
    util_copy(r->method, sizeof r->method, "POST");
    r->format = HTTP_FMT_JSON_OR_TEXT;
    r->timeout_ms = timeout_s * 1000.0;
    r->retry_count = retries;
    r->backoff_ms = LLM_BACKOFF_MS;
    if (!(r->body = llm_wire_body(n->provider, c->model, messages, c->gen)))
        return node_fail(err, "internal", "out of memory building the request");
    r->body_len = strlen(r->body);
    r->body_type = "application/json";
    json_t *auth = n->key ? json_pack("{s:s, s:s}", "auth_type", "bearer", "auth_token", n->key) : json_object();
    int rc = auth ? http_request_headers(r, auth, "application/json", err)
                  : node_fail(err, "internal", "out of memory building headers");
    json_decref(auth); /* jansson does not wipe the copy: it lived as long as this call, as HTTP nodes' do */
    return rc;
}

static int llm_call_out(const llm_node *n, node_call *call, llm_call *c, json_t *messages, node_error *err)
{
    json_t *t = json_object_get(call->inputs, "timeout"), *m = json_object_get(call->inputs, "max_retries");
    double timeout_s = json_is_number(t) ? json_number_value(t) : LLM_DEFAULT_TIMEOUT_S;
    int retries = json_is_integer(m) ? (int)json_integer_value(m) : LLM_DEFAULT_RETRIES;
    http_exchange *ex = http_exchange_new(call->io, call->deadline_ms, &n->base.lim, &llm_hooks, NULL);
    if (!ex)
        return node_fail(err, "internal", "out of memory");
    if (llm_build(n, c, messages, timeout_s, retries, http_exchange_request(ex), err) != 0 ||
        http_request_add_hops(http_exchange_request(ex), call->hops, err) != 0) {
        http_exchange_free(ex);
        return -1;
    }
    c->ex = ex;
    call->node_data = c;
    call->cancel = llm_cancel;
    if (http_exchange_start(ex, llm_on_done, c, err) != 0) {
        call->node_data = NULL;
        call->cancel = NULL;
        return -1;
    }
    return 0;
}

/* The mock's answer, on the loop after start returned. */
static void llm_mock_done(void *ud)
{
    llm_call *c = ud;
    json_t *out = llm_outputs(c, c->response);
    llm_finish(c, out, out ? NULL : &(node_error){"internal", "out of memory building the outputs"});
}

/* ======================================================================== start */

/* generation_config with the node's own temperature and max_tokens over it. New object or NULL. */
static json_t *llm_gen(json_t *in)
{
    json_t *g = json_object_get(in, "generation_config");
    json_t *gen = json_is_object(g) ? json_deep_copy(g) : json_object();
    static const char *const own[] = {"temperature", "max_tokens"};
    for (size_t i = 0; gen && i < 2; i++) {
        json_t *v = json_object_get(in, own[i]);
        if (v && !json_is_null(v) && json_object_set(gen, own[i], v) != 0) {
            json_decref(gen);
            return NULL;
        }
    }
    return gen;
}

/* The SDK's conversation: the system prompt first (when not empty), then messages. */
static json_t *llm_conversation(json_t *in)
{
    json_t *messages = json_object_get(in, "messages"), *sp = json_object_get(in, "system_prompt");
    json_t *conv = json_array();
    if (conv && json_string_length(sp) > 0 &&
        json_array_append_new(conv, json_pack("{s:s, s:O}", "role", "system", "content", sp)) != 0) {
        json_decref(conv);
        return NULL;
    }
    if (conv && json_is_array(messages) && json_array_extend(conv, messages) != 0) {
        json_decref(conv);
        return NULL;
    }
    return conv;
}

static llm_call *llm_call_new(const llm_node *n, node_call *call, node_error *err)
{
    json_t *model = json_object_get(call->inputs, "model");
    llm_call *c = calloc(1, sizeof *c);
    if (c) {
        c->call = call;
        c->provider = n->provider;
        c->model = strdup(json_is_string(model) ? json_string_value(model) : LLM_DEFAULT_MODEL);
        c->gen = llm_gen(call->inputs);
    }
    if (!c || !c->model || !c->gen) {
        if (c)
            llm_call_free(c);
        node_fail(err, "internal", "out of memory");
        return NULL;
    }
    return c;
}

static int llm_start(const void *compiled, node_call *call, node_error *err)
{
    const llm_node *n = compiled;
    char msg[sizeof err->message];
    if (http_base_check_inputs(&n->base, call->inputs, err) != 0)
        return -1;
    if (llm_check_values(call->inputs, 0, msg, sizeof msg) != 0)
        return node_fail(err, "bad_request", "%s", msg);
    if (n->env_name[0] && !n->key && n->provider != LLM_MOCK)
        return node_fail(err, "internal", "api_key_env: environment variable %s is not set (it must hold the API key)",
                         n->env_name);
    llm_call *c = llm_call_new(n, call, err);
    json_t *conv = c ? llm_conversation(call->inputs) : NULL;
    int rc = -1;
    if (c && !conv) {
        node_fail(err, "internal", "out of memory");
    } else if (c && n->provider == LLM_MOCK) {
        c->response = llm_mock_response(conv, json_string_value(json_object_get(call->inputs, "system_prompt")));
        rc = c->response && ioloop_post(call->io, llm_mock_done, c) == 0
                 ? 0
                 : node_fail(err, "internal", "the I/O loop did not take the call");
    } else if (c) {
        rc = llm_call_out(n, call, c, conv, err);
        c = rc == 0 ? NULL : c; /* the exchange's now */
    }
    if (rc != 0 && c)
        llm_call_free(c);
    json_decref(conv);
    return rc;
}

static int llm_has_output(const void *compiled, const char *port)
{
    (void)compiled;
    static const char *const ports[] = {"success", "response", "conversation_id", "usage", "context", "metadata",
                                        "error", "error_type", "provider", "model", "recovery_suggestions",
                                        "status_code", NULL};
    for (int i = 0; ports[i]; i++)
        if (strcmp(port, ports[i]) == 0)
            return 1;
    return 0;
}

/* The SDK's parameters for what kailashd's LLMAgentNode does not do (tools, memory, MCP, RAG,
 * streaming, budgets, per-request keys): accepted at their defaults only. */
static const node_sdk_default llm_sdk_defaults[] = {
    {"tools", "[]"},
    {"conversation_id", "null"},
    {"memory_config", "{}"},
    {"mcp_servers", "[]"},
    {"mcp_context", "[]"},
    {"auto_discover_tools", "false"},
    {"rag_config", "{}"},
    {"streaming", "false"},
    {"ungoverned", "false"},
    {"enable_monitoring", "false"},
    {"budget_limit", "null"},
    {"alert_threshold", "0.8"},
    {"track_history", "true"},
    {"custom_pricing", "null"},
    {"auto_execute_tools", "true"},
    {"tool_execution_config", "{}"},
    {"use_real_mcp", "true"},
    {"response_format", "{}"},
    {"provider_config", "{}"},
    {"api_key", "null"},
    {"credential_ref", "null"},
    {NULL, NULL},
};

const node_type node_llm_agent = {
    .name = "LLMAgentNode",
    .config_keys = llm_key_names,
    .sdk_defaults = llm_sdk_defaults,
    .input_ports = llm_key_names,
    .pinned_keys = llm_pinned,
    .compile = llm_compile,
    .has_output = llm_has_output,
    .run = NULL,
    .start = llm_start,
    .free = llm_free,
};
