/* llm_wire: LLMAgentNode's two wire formats and the SDK's output pieces built from an answer.
 *
 *   openai  POST {base_url}/v1/chat/completions: {"model", "messages", sampling values}; the answer's
 *           choices[0].message.content, .tool_calls, choices[0].finish_reason, usage.{prompt_tokens,
 *           completion_tokens, total_tokens}, model (the SDK's openai_chat wire);
 *   ollama  POST {base_url}/api/chat: {"model", "messages", "stream": false, "options": {temperature,
 *           top_p, num_predict (max_tokens), stop, seed}}; the answer's message.content,
 *           .tool_calls (arguments as JSON text, ids "call_<i>" when absent), done_reason,
 *           prompt_eval_count, eval_count, model (the SDK's ollama_native wire).
 * Both become the SDK's legacy response {content, finish_reason, model, usage, [tool_calls]}, with the
 * SDK's total_tokens coercion (a missing or zero total is prompt + completion).
 *
 * The parse is defensive as the SDK's is: a missing piece is "" or null, never a failure; only a
 * body that is not a JSON object fails (the SDK raises TypeError there). Nothing here quotes the
 * answer's text into a message. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kailash/util.h"
#include "llm.h"

/* ---- the request ---- */

/* gen's value for key, or NULL when absent or null. */
static json_t *wire_gen(json_t *gen, const char *key)
{
    json_t *v = json_object_get(gen, key);
    return v && !json_is_null(v) ? v : NULL;
}

/* Copies the sampling values of gen into dst, renaming max_tokens to max_name. */
static int wire_sampling(json_t *dst, json_t *gen, const char *max_name)
{
    static const char *const keys[] = {"temperature", "top_p", "max_tokens", "stop", "seed", NULL};
    for (int i = 0; keys[i]; i++) {
        json_t *v = wire_gen(gen, keys[i]);
        const char *name = strcmp(keys[i], "max_tokens") == 0 ? max_name : keys[i];
        if (v && json_object_set(dst, name, v) != 0)
            return -1;
    }
    return 0;
}

char *llm_wire_body(llm_provider p, const char *model, json_t *messages, json_t *gen)
{
    json_t *body = json_pack("{s:s, s:O}", "model", model, "messages", messages), *options = NULL;
    int rc = body ? 0 : -1;
    if (rc == 0 && p == LLM_OPENAI)
        rc = wire_sampling(body, gen, "max_tokens");
    if (rc == 0 && p == LLM_OLLAMA) {
        options = json_object();
        rc = options && json_object_set_new(body, "stream", json_false()) == 0 &&
                     wire_sampling(options, gen, "num_predict") == 0 &&
                     (json_object_size(options) == 0 || json_object_set(body, "options", options) == 0)
                 ? 0
                 : -1;
    }
    char *text = rc == 0 ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(options);
    json_decref(body);
    return text;
}

/* ---- the answer ---- */

/* Sets o[key] = v (taken); -1 when v is NULL or the set fails. */
static int wire_put(json_t *o, const char *key, json_t *v)
{
    return v && json_object_set_new(o, key, v) == 0 ? 0 : -1;
}

/* v, or JSON null when v is absent. New reference. */
static json_t *wire_or_null(json_t *v)
{
    return v ? json_incref(v) : json_null();
}

/* A tool call in the SDK's canonical shape; arguments that are an object or array become their JSON
 * text (Python's json.dumps separators). */
static json_t *wire_tool_call(json_t *tc, size_t index, int synth_id)
{
    json_t *fn = json_object_get(tc, "function");
    json_t *args = json_object_get(fn, "arguments"), *id = json_object_get(tc, "id");
    json_t *type = json_object_get(tc, "type");
    char buf_id[32];
    snprintf(buf_id, sizeof buf_id, "call_%zu", index);
    json_t *args_out = NULL;
    if (json_is_object(args) || json_is_array(args)) {
        char *t = json_dumps(args, JSON_ENSURE_ASCII);
        args_out = t ? json_string(t) : NULL;
        free(t);
        if (!args_out)
            return NULL;
    } else {
        args_out = wire_or_null(args);
    }
    json_t *id_out = id && !json_is_null(id) ? json_incref(id) : synth_id ? json_string(buf_id) : json_null();
    return json_pack("{s:o, s:o, s:{s:o, s:o}}", "id", id_out, "type",
                     !synth_id && type ? json_incref(type) : json_string("function"), "function", "name",
                     wire_or_null(json_object_get(fn, "name")), "arguments", args_out);
}

/* tool_calls of a message: a non-empty list of canonical calls, or NULL (none, or out of memory). */
static json_t *wire_tool_calls(json_t *raw, int synth_id)
{
    if (!json_is_array(raw) || json_array_size(raw) == 0)
        return NULL;
    json_t *list = json_array();
    size_t i;
    json_t *tc;
    json_array_foreach(raw, i, tc)
    {
        if (json_is_object(tc) && list && json_array_append_new(list, wire_tool_call(tc, i, synth_id)) != 0) {
            json_decref(list);
            return NULL;
        }
    }
    if (list && json_array_size(list) == 0) {
        json_decref(list);
        return NULL;
    }
    return list;
}

/* Python's truthiness of a JSON value. */
static int wire_truthy(json_t *v)
{
    if (!v || json_is_null(v) || json_is_false(v))
        return 0;
    if (json_is_integer(v))
        return json_integer_value(v) != 0;
    if (json_is_real(v))
        return json_real_value(v) != 0;
    if (json_is_string(v))
        return json_string_length(v) != 0;
    if (json_is_array(v))
        return json_array_size(v) != 0;
    return json_is_object(v) ? json_object_size(v) != 0 : 1;
}

/* The legacy usage: total missing -> (p or 0) + (c or 0); then the node's coercion: a falsy total
 * becomes the same sum. Non-integer counts count as 0 in the sum. */
static json_t *wire_usage(json_t *prompt, json_t *completion, json_t *total)
{
    json_int_t p = json_is_integer(prompt) ? json_integer_value(prompt) : 0;
    json_int_t c = json_is_integer(completion) ? json_integer_value(completion) : 0;
    json_t *t = wire_truthy(total) ? json_incref(total) : json_integer(p + c);
    return json_pack("{s:o, s:o, s:o}", "prompt_tokens", wire_or_null(prompt), "completion_tokens",
                     wire_or_null(completion), "total_tokens", t);
}

/* The legacy response from its parts (borrowed); tool_calls (taken) may be NULL. */
static json_t *wire_legacy(json_t *text, json_t *finish, json_t *model, json_t *usage, json_t *tool_calls)
{
    json_t *r = json_object();
    if (!r || wire_put(r, "content", json_is_string(text) ? json_incref(text) : json_string("")) != 0 ||
        wire_put(r, "finish_reason", wire_or_null(finish)) != 0 || wire_put(r, "model", wire_or_null(model)) != 0 ||
        wire_put(r, "usage", usage) != 0 || (tool_calls && wire_put(r, "tool_calls", tool_calls) != 0)) {
        json_decref(r);
        return NULL;
    }
    return r;
}

static json_t *wire_parse_openai(json_t *a)
{
    json_t *first = json_array_get(json_object_get(a, "choices"), 0);
    json_t *msg = json_object_get(first, "message");
    if (!json_is_object(msg))
        msg = json_object_get(first, "delta");
    json_t *usage = json_object_get(a, "usage");
    return wire_legacy(json_object_get(msg, "content"), json_object_get(first, "finish_reason"),
                       json_object_get(a, "model"),
                       wire_usage(json_object_get(usage, "prompt_tokens"), json_object_get(usage, "completion_tokens"),
                                  json_object_get(usage, "total_tokens")),
                       wire_tool_calls(json_object_get(msg, "tool_calls"), 0));
}

static json_t *wire_parse_ollama(json_t *a)
{
    json_t *msg = json_object_get(a, "message");
    return wire_legacy(json_object_get(msg, "content"), json_object_get(a, "done_reason"), json_object_get(a, "model"),
                       wire_usage(json_object_get(a, "prompt_eval_count"), json_object_get(a, "eval_count"), NULL),
                       wire_tool_calls(json_object_get(msg, "tool_calls"), 1));
}

json_t *llm_wire_parse(llm_provider p, json_t *answer, char *err, size_t errlen)
{
    if (!json_is_object(answer)) {
        util_err(err, errlen, "the answer is not a JSON object");
        return NULL;
    }
    json_t *r = p == LLM_OLLAMA ? wire_parse_ollama(answer) : wire_parse_openai(answer);
    if (!r)
        util_err(err, errlen, "out of memory reading the answer");
    return r;
}

/* A short identifier: [A-Za-z0-9_.-]{1,64}. */
static int wire_word(const char *s)
{
    size_t n = 0;
    for (; s && s[n]; n++)
        if (!(isalnum((unsigned char)s[n]) || strchr("_.-", s[n])) || n >= 64)
            return 0;
    return n > 0;
}

const char *llm_wire_error_code(json_t *answer)
{
    json_t *e = json_object_get(answer, "error");
    const char *code = json_string_value(json_object_get(e, "code"));
    const char *type = json_string_value(json_object_get(e, "type"));
    return wire_word(code) ? code : wire_word(type) ? type : NULL;
}

/* ---- usage metrics ---- */

/* Python's `x or 0` over a token count: an integer or a real as it is, anything falsy or of
 * another type 0. */
static double wire_count(json_t *v, json_t **as_json)
{
    if (wire_truthy(v) && json_is_number(v)) {
        *as_json = json_incref(v);
        return json_number_value(v);
    }
    *as_json = json_integer(0);
    return 0;
}

/* Python's round(x, 6). */
static double wire_round6(double x)
{
    char text[64];
    snprintf(text, sizeof text, "%.6f", x);
    return strtod(text, NULL);
}

json_t *llm_usage_metrics(json_t *response, const char *model, const char *provider)
{
    static const struct {
        const char *model;
        double in, out;
    } costs[] = {{"gpt-4", 0.03, 0.06},
                 {"gpt-3.5-turbo", 0.001, 0.002},
                 {"claude-3-sonnet", 0.003, 0.015},
                 {"claude-3-haiku", 0.00025, 0.00125}};
    json_t *usage = json_object_get(response, "usage"), *pj, *cj, *tj;
    double p = wire_count(json_object_get(usage, "prompt_tokens"), &pj);
    double c = wire_count(json_object_get(usage, "completion_tokens"), &cj);
    json_t *total = json_object_get(usage, "total_tokens");
    double t = total && !json_is_null(total) ? json_number_value(total) : p + c;
    tj = total && !json_is_null(total) ? json_incref(total)
         : json_is_integer(pj) && json_is_integer(cj)
             ? json_integer(json_integer_value(pj) + json_integer_value(cj))
             : json_real(t);
    double in = 0.001, out = 0.002;
    for (size_t i = 0; i < sizeof costs / sizeof costs[0]; i++)
        if (strcmp(model, costs[i].model) == 0)
            in = costs[i].in, out = costs[i].out;
    double cost = (p / 1000) * in + (c / 1000) * out;
    return json_pack("{s:o, s:o, s:o, s:f, s:s, s:s, s:f}", "prompt_tokens", pj, "completion_tokens", cj,
                     "total_tokens", tj, "estimated_cost_usd", wire_round6(cost), "model", model, "provider",
                     provider, "efficiency_score", t != 0 ? c / t : 0.0);
}

void llm_usage_counts(json_t *usage, json_int_t *prompt, json_int_t *completion)
{
    json_t *p = json_object_get(usage, "prompt_tokens"), *c = json_object_get(usage, "completion_tokens");
    *prompt = json_is_integer(p) && json_integer_value(p) > 0 ? json_integer_value(p) : 0;
    *completion = json_is_integer(c) && json_integer_value(c) > 0 ? json_integer_value(c) : 0;
}
