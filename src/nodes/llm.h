/* llm: what LLMAgentNode's files share (llm_agent.c the node type, llm_mock.c the SDK's mock
 * provider, llm_wire.c the two wire formats). Private to src/nodes/.
 *
 * Every function here is pure and thread-safe: no I/O, no global state. json_t arguments are
 * borrowed unless a comment says otherwise; returned values are new references (caller decrefs). */
#ifndef KAILASH_NODES_LLM_H
#define KAILASH_NODES_LLM_H

#include <jansson.h>
#include <stddef.h>

typedef enum llm_provider { LLM_MOCK, LLM_OPENAI, LLM_OLLAMA } llm_provider;

/* ---- llm_mock.c ---- */

/* The SDK's _mock_llm_response for the conversation `messages` (system prompt already first):
 * {id, content, role, model, created, tool_calls: [], finish_reason, usage}. NULL when out of
 * memory. */
json_t *llm_mock_response(json_t *messages, const char *system_prompt);

/* Code points in the n UTF-8 bytes at s (Python's len of the str). */
size_t llm_codepoints(const char *s, size_t n);

/* ---- llm_wire.c ---- */

/* The request body for provider p (openai: /chat/completions, ollama: /api/chat, stream false):
 * model, messages, and the sampling values of gen (an object of temperature, max_tokens, top_p,
 * stop, seed; may be NULL). New compact JSON text (caller frees), NULL when out of memory. */
char *llm_wire_body(llm_provider p, const char *model, json_t *messages, json_t *gen);

/* The SDK's legacy response of a 2xx answer's parsed body: {content, finish_reason, model, usage:
 * {prompt_tokens, completion_tokens, total_tokens}, [tool_calls]}. NULL with a short message in
 * err (which never quotes the answer) when the body is not a JSON object or out of memory. */
json_t *llm_wire_parse(llm_provider p, json_t *answer, char *err, size_t errlen);

/* An error answer's identifying token for messages: OpenAI's error.code or error.type when it is
 * a short word ([A-Za-z0-9_.-], at most 64), else NULL. Never the error's free text, which may
 * quote part of a key. Borrowed from answer. */
const char *llm_wire_error_code(json_t *answer);

/* ---- outputs (llm_wire.c) ---- */

/* The SDK's usage metrics of response: {prompt_tokens, completion_tokens, total_tokens,
 * estimated_cost_usd, model, provider, efficiency_score}. */
json_t *llm_usage_metrics(json_t *response, const char *model, const char *provider);

/* The token counts of usage metrics (missing or not integers: 0). */
void llm_usage_counts(json_t *usage, json_int_t *prompt, json_int_t *completion);

#endif
