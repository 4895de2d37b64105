/* The node types this build knows. Adding a type: one file in src/nodes/ that defines a
 * `const node_type node_<name>`, and one line here. A name that is not listed is refused by the
 * loader ("unknown node type"). */
#include <string.h>

#include "kailash/node.h"
#include "kailash/upstream.h"

extern const node_type node_transform, node_switch, node_merge;
extern const node_type node_json_reader, node_csv_reader, node_json_writer;
extern const node_type node_http_request, node_rest_client, node_load_balancer;
extern const node_type node_workflow;
extern const node_type node_filter;
extern const node_type node_encryption;
extern const node_type node_csv_writer, node_text_reader, node_text_writer;
extern const node_type node_cache, node_cache_memory, node_cache_redis, node_cache_intelligent;
extern const node_type node_data_validation;
extern const node_type node_llm_agent;
extern const node_type node_batch_reader, node_batch_processor;
extern const node_type node_python_code, node_python_code_async;
extern const node_type node_sql_database, node_async_sql_database;

static const node_type *const registry[] = {
    &node_transform,   &node_switch,       &node_merge,       &node_json_reader,   &node_csv_reader,
    &node_json_writer, &node_http_request, &node_rest_client, &node_load_balancer,
    &node_workflow,
    &node_filter,
    &node_encryption,
    &node_csv_writer, &node_text_reader, &node_text_writer,
    &node_cache, &node_cache_memory, &node_cache_redis, &node_cache_intelligent,
    &node_data_validation,
    &node_llm_agent,
    &node_batch_reader, &node_batch_processor,
    &node_python_code, &node_python_code_async,
    &node_sql_database, &node_async_sql_database,
};

/* The SDK's Async* variants of the nodes above: the same parameters and outputs, run the same way
 * here (every node that waits does so on the loop already). */
static const struct {
    const char *name;
    const node_type *type;
} aliases[] = {
    {"AsyncSwitchNode", &node_switch},
    {"AsyncMergeNode", &node_merge},
    {"AsyncHTTPRequestNode", &node_http_request},
    {"AsyncRESTClientNode", &node_rest_client},
};

const node_type *node_registry_find(const char *name)
{
    for (size_t i = 0; i < sizeof registry / sizeof registry[0]; i++)
        if (strcmp(registry[i]->name, name) == 0)
            return registry[i];
    for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
        if (strcmp(aliases[i].name, name) == 0)
            return aliases[i].type;
    return NULL;
}

/* Nothing is kept between runs any more: each easy handle goes with its attempt (src/upstream/easy.c). */
void node_registry_shutdown(void)
{
}

int node_registry_loop_start(struct ioloop *io, long max_connects, char *err, size_t errlen)
{
    return upstream_loop_start(io, max_connects, err, errlen);
}
