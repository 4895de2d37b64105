/* TransformNode: shapes data with a template (WORKFLOWS.md "Templates").
 *
 * All the work happens before run(): the loader compiles `template` like every config value and the
 * engine renders it against the run's scope (`params` are this node's inputs, so a connection into
 * any input name, e.g. "data", is readable as {{ params.data... }}). run() only hands the rendered
 * value on as `result`, sharing it by reference instead of copying it. */
#include <string.h>

#include "kailash/node.h"
#include "kailash/util.h"

static const char *const transform_keys[] = {"template", NULL};

static int transform_compile(const node_env *env, json_t *config, void **compiled, char *err, size_t errlen)
{
    (void)env;
    *compiled = NULL;
    if (!json_object_get(config, "template"))
        return util_err(err, errlen, "config.template: required");
    return 0;
}

static int transform_has_output(const void *compiled, const char *port)
{
    (void)compiled;
    return strcmp(port, "result") == 0;
}

static int transform_run(const void *compiled, node_call *call, json_t **outputs, node_error *err)
{
    (void)compiled;
    json_t *rendered = json_object_get(call->inputs, "template"); /* borrowed */
    if (!rendered)
        return node_fail(err, "internal", "input 'template' is missing");
    /* "O" takes a new reference on rendered for the outputs object. */
    *outputs = json_pack("{sO}", "result", rendered);
    if (!*outputs)
        return node_fail(err, "internal", "out of memory");
    return 0;
}

const node_type node_transform = {
    .name = "TransformNode",
    .config_keys = transform_keys,
    .input_ports = NULL,
    .compile = transform_compile,
    .has_output = transform_has_output,
    .run = transform_run,
    .start = NULL,
    .free = NULL,
};
