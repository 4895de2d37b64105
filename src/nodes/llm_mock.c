/* llm_mock: the Kailash SDK's mock LLM provider (LLMAgentNode._mock_llm_response), answer for
 * answer, so a workflow exported with provider "mock" gives the SDK's outputs without a network.
 *
 * The mock picks a canned answer by keywords: it reads the last user message (a string, or the
 * "text" parts of a list, where an "image" part selects the vision answer) and the first system
 * message (or the node's system_prompt), lower-cases them, and walks the SDK's branches in the
 * SDK's order (tool results, images, "analyze", "create"/"generate", chain of thought, maths, a
 * question, judgment, rebuttal, argument, chain of thought again, the default). Token counts are
 * the SDK's estimate: characters (code points, Python's len) divided by four, over the whole
 * conversation for the prompt and over the answer for the completion; total_tokens is 0 as the
 * SDK leaves it. Slices of the user's text ([:50], [:100]) count code points too.
 *
 * Deliberate differences (README, LLMAgentNode): the answer's "id" is "msg_" + a stable FNV-1a hash
 * of the user's text modulo 100000 (the SDK uses Python's per-process randomised hash(), so its ids
 * change from run to run); lower-casing is ASCII (Python's str.lower() also folds a few non-ASCII
 * letters such as the Kelvin sign into ASCII); a null or non-text content counts as "" (the SDK
 * raises on it); tools are not supported (the node refuses a non-empty `tools`), so tool_calls is
 * always []. */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kailash/util.h"
#include "llm.h"

static const char mock_cot[] = "{\"step1\": \"First, I identify and understand the problem components.\", \"step2\": \"Next, I analyze the relevant factors and constraints.\", \"step3\": \"Then, I develop a systematic approach to solve the problem.\", \"step4\": \"I apply the method and verify intermediate results.\", \"step5\": \"Finally, I synthesize the findings into a coherent answer.\", \"final_answer\": \"Based on the step-by-step analysis, the answer is derived systematically.\", \"confidence\": 0.85}";
static const char mock_judge[] = "{\"decision\": \"for\", \"winner\": \"proponent\", \"reasoning\": \"After careful analysis of both arguments, the proponent presented stronger evidence and more compelling logic.\", \"confidence\": 0.85}";
static const char mock_rebuttal[] = "{\"rebuttal\": \"This rebuttal addresses the key weaknesses in the opposing argument with focused counterpoints.\", \"counterpoints\": [\"Counter 1: Logical flaw in premise\", \"Counter 2: Missing evidence for claims\", \"Counter 3: Alternative interpretation\"], \"strength\": 0.75}";
static const char mock_argument[] = "{\"argument\": \"This is a well-reasoned argument supporting the given position with logical analysis and evidence-based conclusions.\", \"key_points\": [\"Point 1: Analysis of key factors\", \"Point 2: Supporting evidence and reasoning\", \"Point 3: Practical implications\"], \"evidence\": \"Research and analysis support this position based on established principles and documented outcomes.\"}";

static const char mock_tools_done[] = "Based on the tool execution results, I've completed the requested task. The "
                                      "tools have been successfully executed and the operation is complete.";
static const char mock_vision[] =
    "I can see the image(s) you've provided. Based on my analysis, [Mock vision response for testing]";
static const char mock_analyze[] =
    "Based on the provided data and context, I can see several key patterns: 1) Customer engagement has "
    "increased by 15% this quarter, 2) Product A shows the highest conversion rate, and 3) There are "
    "opportunities for improvement in the onboarding process.";
static const char mock_create[] = "I'll help you create that. Based on the requirements and available tools, I "
                                  "recommend a structured approach with the following steps...";
static const char mock_train[] =
    "Step 1: Calculate the train's speed\nFirst, I need to find the train's speed using the given "
    "information.\nGiven: Distance = 300 km, Time = 4 hours\nSpeed = Distance \xc3\xb7"
    " Time = 300 km \xc3\xb7"
    " 4 hours = 75 km/hour\n\nStep 2: Apply the speed to find time for new distance\nNow I can use this "
    "speed to find how long it takes to travel 450 km.\nGiven: Speed = 75 km/hour, Distance = 450 "
    "km\nTime = Distance \xc3\xb7"
    " Speed = 450 km \xc3\xb7"
    " 75 km/hour = 6 hours\n\nFinal Answer: 6 hours";
static const char mock_math[] =
    "Step 1: I'll analyze the mathematical problem and identify the key variables and relationships. Step 2: "
    "I'll set up the appropriate equations or calculations needed to solve this problem. Final Answer: The "
    "solution can be determined using mathematical principles and calculations.";

size_t llm_codepoints(const char *s, size_t n)
{
    size_t count = 0;
    for (size_t i = 0; i < n; i++)
        count += ((unsigned char)s[i] & 0xC0) != 0x80;
    return count;
}

/* Bytes of the first `cp` code points of s (Python's s[:cp]). */
static size_t mock_prefix(const char *s, size_t cp)
{
    size_t i = 0;
    for (; s[i]; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80 && cp-- == 0)
            break;
    return i;
}

/* True when any of the NULL-terminated words occurs in text. */
static int mock_any(const char *text, const char *const *words)
{
    for (; *words; words++)
        if (strstr(text, *words))
            return 1;
    return 0;
}

static const char *mock_role(json_t *msg)
{
    const char *r = json_string_value(json_object_get(msg, "role"));
    return r ? r : "";
}

/* A message's text as the SDK's token estimate reads it: a string, or the "text" parts of a list
 * joined with " ". Appended to b. */
static int mock_text(buf *b, json_t *content, int *has_images)
{
    if (json_is_string(content))
        return buf_append(b, json_string_value(content), json_string_length(content));
    size_t i, n = 0;
    json_t *item;
    json_array_foreach(content, i, item)
    {
        const char *type = json_string_value(json_object_get(item, "type"));
        if (type && strcmp(type, "image") == 0 && has_images)
            *has_images = 1;
        if (!type || strcmp(type, "text") != 0)
            continue;
        json_t *text = json_object_get(item, "text");
        if ((n++ && buf_append(b, " ", 1) != 0) ||
            (json_is_string(text) && buf_append(b, json_string_value(text), json_string_length(text)) != 0))
            return -1;
    }
    return 0;
}

/* What the mock reads from the conversation. */
typedef struct mock_view {
    buf user;     /* the last user message's text */
    buf combined; /* user + " " + system, lower-cased (ASCII) */
    int has_tool_results, has_images;
} mock_view;

static int mock_read(json_t *messages, const char *system_prompt, mock_view *v)
{
    size_t i;
    json_t *m;
    const char *system = NULL;
    json_array_foreach(messages, i, m)
    {
        v->has_tool_results |= strcmp(mock_role(m), "tool") == 0;
        if (!system && strcmp(mock_role(m), "system") == 0) {
            system = json_string_value(json_object_get(m, "content"));
            system = system ? system : "";
        }
    }
    if ((!system || !*system) && system_prompt)
        system = system_prompt;
    for (i = json_array_size(messages); i-- > 0;) {
        m = json_array_get(messages, i);
        if (strcmp(mock_role(m), "user") == 0) {
            if (mock_text(&v->user, json_object_get(m, "content"), &v->has_images) != 0)
                return -1;
            break;
        }
    }
    if (buf_append(&v->user, "", 0) != 0 || buf_terminate(&v->user) != 0 ||
        buf_appendf(&v->combined, "%s %s", v->user.data, system ? system : "") != 0)
        return -1;
    for (size_t k = 0; k < v->combined.len; k++)
        if ((unsigned char)v->combined.data[k] < 0x80)
            v->combined.data[k] = (char)tolower((unsigned char)v->combined.data[k]);
    return 0;
}

/* The SDK's branches, in its order, after the first four. owned: set to a new string when the
 * answer quotes the user's text (caller frees). */
static const char *mock_pick_text(const mock_view *v, char **owned)
{
    const char *c = v->combined.data;
    static const char *const cot[] = {"step1", "step2", "step3", "final_answer", NULL};
    static const char *const cot2[] = {"step1", "step2", "step3", "final_answer", "confidence", NULL};
    static const char *const maths[] = {"travels", "speed", "distance", "calculate", "math", "km", NULL};
    static const char *const debate[] = {"argument",        "debate",      "rebuttal",     "topic to argue",
                                         "for or against", "key_points", "counterpoint", NULL};
    static const char *const judging[] = {"judgment", "decision", "winner", "judge", "verdict", NULL};
    static const char *const sides[] = {"for argument", "against argument", "proponent", "opponent", NULL};
    static const char *const rebut[] = {"rebuttal", "counterpoint", "counter argument", "rebut", NULL};
    static const char *const argue[] = {"argument",     "debate",         "position",    "for or against",
                                        "key_points",   "evidence",       "argue about", "topic to argue",
                                        "topic:",       NULL};
    if (mock_any(c, cot) && strstr(c, "produce"))
        return mock_cot;
    if (mock_any(c, maths) && !mock_any(c, debate))
        return strstr(c, "train") && strstr(c, "travels") ? mock_train : mock_math;
    buf b = {0};
    if (strchr(v->user.data, '?')) {
        size_t n = mock_prefix(v->user.data, 50);
        buf_appendf(&b, "Regarding your question about '%.*s...', here's what I found from the available context "
                        "and resources...", (int)n, v->user.data);
        return *owned = b.data;
    }
    if (mock_any(c, judging) && mock_any(c, sides))
        return mock_judge;
    if (mock_any(c, rebut))
        return mock_rebuttal;
    if (mock_any(c, argue) || (strstr(c, "topic") && (strstr(c, "for") || strstr(c, "against"))))
        return mock_argument;
    if (mock_any(c, cot2))
        return mock_cot;
    size_t n = mock_prefix(v->user.data, 100);
    buf_appendf(&b, "I understand you want me to work with: '%.*s...'. Based on the context provided, I can help "
                    "you achieve this goal.", (int)n, v->user.data);
    return *owned = b.data;
}

static const char *mock_pick(const mock_view *v, char **owned)
{
    if (v->has_tool_results)
        return mock_tools_done;
    if (v->has_images)
        return mock_vision;
    char *lower = strdup(v->user.data);
    if (!lower)
        return NULL;
    for (char *p = lower; *p; p++)
        if ((unsigned char)*p < 0x80)
            *p = (char)tolower((unsigned char)*p);
    const char *text = strstr(lower, "analyze")                                ? mock_analyze
                       : strstr(lower, "create") || strstr(lower, "generate") ? mock_create
                                                                               : mock_pick_text(v, owned);
    free(lower);
    return text;
}

/* The SDK's prompt estimate: every message's text joined with " ", in code points, over 4. */
static json_int_t mock_prompt_tokens(json_t *messages)
{
    size_t i, cps = 0;
    json_t *m;
    json_array_foreach(messages, i, m)
    {
        buf b = {0};
        if (mock_text(&b, json_object_get(m, "content"), NULL) == 0)
            cps += llm_codepoints(b.data ? b.data : "", b.len);
        buf_free(&b);
        cps += i > 0; /* the joining space */
    }
    return (json_int_t)(cps / 4);
}

/* Stable 32-bit FNV-1a, standing in for Python's randomised str hash. */
static uint32_t mock_hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static json_t *mock_build(json_t *messages, const mock_view *v, const char *text)
{
    char id[32];
    snprintf(id, sizeof id, "msg_%u", (unsigned)(mock_hash(v->user.data) % 100000u));
    json_int_t completion = (json_int_t)(llm_codepoints(text, strlen(text)) / 4);
    return json_pack("{s:s, s:s, s:s, s:s, s:i, s:[], s:s, s:{s:I, s:I, s:i}}", "id", id, "content", text, "role",
                     "assistant", "model", "mock-model", "created", 1701234567, "tool_calls", "finish_reason", "stop",
                     "usage", "prompt_tokens", mock_prompt_tokens(messages), "completion_tokens", completion,
                     "total_tokens", 0);
}

json_t *llm_mock_response(json_t *messages, const char *system_prompt)
{
    mock_view v = {0};
    char *owned = NULL;
    json_t *out = NULL;
    if (mock_read(messages, system_prompt, &v) == 0) {
        const char *text = mock_pick(&v, &owned);
        if (text)
            out = mock_build(messages, &v, text);
    }
    free(owned);
    buf_free(&v.user);
    buf_free(&v.combined);
    return out;
}
