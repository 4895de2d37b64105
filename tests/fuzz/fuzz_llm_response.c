/* fuzz_llm_response: LLMAgentNode's reading of an upstream's answer (src/nodes/llm_wire.c) on hostile
 * bytes. The first byte picks the provider (OpenAI-compatible or Ollama), the rest is the answer's
 * body. Checked on every input: a body that is not JSON never reaches the parser; a parsed one gives
 * either a response object whose content is a string and whose usage has the three counts, or NULL
 * with a message; the usage metrics of a response are an object; the error code, when one is
 * taken, is a short token of [A-Za-z0-9_.-] (never the error's free text, which may quote a key). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/nodes/llm.h"

static void check_response(json_t *resp, llm_provider p)
{
    if (!json_is_object(resp) || !json_is_string(json_object_get(resp, "content")))
        abort();
    json_t *usage = json_object_get(resp, "usage");
    if (!json_is_object(usage))
        abort();
    const char *keys[] = {"prompt_tokens", "completion_tokens", "total_tokens"};
    for (size_t i = 0; i < 3; i++) /* as the SDK passes them on: a count, null, or what the answer said */
        if (!json_object_get(usage, keys[i]))
            abort();
    json_t *m = llm_usage_metrics(resp, "m", p == LLM_OLLAMA ? "ollama" : "openai");
    if (!json_is_object(m))
        abort();
    json_int_t a, b;
    llm_usage_counts(json_object_get(resp, "usage"), &a, &b);
    json_decref(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 65536)
        return 0;
    llm_provider p = data[0] & 1 ? LLM_OLLAMA : LLM_OPENAI;
    json_t *answer = json_loadb((const char *)data + 1, size - 1, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (!answer)
        return 0;
    char err[200] = "";
    json_t *resp = llm_wire_parse(p, answer, err, sizeof err);
    if (resp)
        check_response(resp, p);
    else if (!err[0] || !memchr(err, '\0', sizeof err))
        abort();
    const char *code = llm_wire_error_code(answer);
    if (code) {
        size_t n = strlen(code);
        if (n == 0 || n > 64 || strspn(code, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") != n)
            abort();
    }
    json_decref(resp);
    json_decref(answer);
    return 0;
}
