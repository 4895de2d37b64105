/* fuzz_run_body: the body checks of POST /workflows/{name}/run and /execute (src/api/runs.c).
 *
 * runs.c keeps its body parse private (body_parse) and another change is under way there, so rather
 * than cut a seam into it this target compiles runs.c into itself and calls body_parse directly,
 * then validates the accepted inputs against the workflow's schema as run_handle does. The request
 * is a detached one (http_req_new_detached): no libmicrohttpd connection, so header and query
 * lookups read as absent, and an answer is kept in it (as the server keeps it until it queues it)
 * and freed with it. The library's own
 * runs.o is not linked in: this file defines everything it would have provided.
 *
 * Input: the first byte picks /run or /execute; the rest is the body. */
#include "../../src/api/runs.c"

#include <stdint.h>

#include "kailash/config.h"
#include "kailash/log.h"
#include "kailash/schema.h"

static const char fz_workflow[] =
    "{\"name\":\"fz\",\"nodes\":{"
    "\"a\":{\"node_type\":\"TransformNode\",\"config\":{\"template\":{\"x\":\"{{ inputs.name }}\"}}},"
    "\"b\":{\"node_type\":\"TransformNode\",\"config\":{\"template\":{\"y\":\"{{ params.data }}\"}}}},"
    "\"connections\":[{\"from_node\":\"a\",\"from_output\":\"result\",\"to_node\":\"b\",\"to_input\":\"data\"}],"
    "\"gateway\":{\"inputs\":{\"type\":\"object\",\"required\":[\"name\"],\"additionalProperties\":false,"
    "\"properties\":{\"name\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":64},"
    "\"n\":{\"type\":\"integer\",\"minimum\":0},\"a\":{\"type\":\"object\"}}}}}";

static workflow *fz_wf;

static void fz_init(void)
{
    char err[256];
    kconfig *cfg;
    log_set_level(LOG_ERROR);
    if (config_load(NULL, &cfg, err, sizeof err) != 0)
        abort();
    node_env nenv = {"/tmp", 1 << 20, 1000, 1};
    wf_load_env env = {cfg, &nenv};
    json_t *doc = json_loads(fz_workflow, 0, NULL), *problems = json_array();
    if (!doc || workflow_load_json(doc, "fz.json", "fz", &env, &fz_wf, problems) != 0)
        abort(); /* the fixed workflow must load */
    json_decref(doc);
    json_decref(problems);
    config_free(cfg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (!fz_wf)
        fz_init();
    kreq *r = http_req_new_detached(data + 1, size - 1); /* an exact-size copy of the body */
    if (!r)
        abort();
    json_t *inputs = NULL, *params = NULL;
    int mode = 0;
    char *callback_url = NULL;
    if (body_parse(r, fz_wf, data[0] & 1, &inputs, &params, &mode, &callback_url) == 0) {
        json_t *violations = json_array();
        schema_validate(fz_wf->inputs_schema, inputs, violations);
        json_decref(violations);
        json_decref(inputs);
        json_decref(params);
    }
    free(callback_url);
    http_req_free_detached(r); /* with the answer it kept, if body_parse answered */
    return 0;
}
