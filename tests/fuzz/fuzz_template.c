/* fuzz_template: the template compiler (src/workflow/template*.c) and the renderer of what compiles.
 *
 * Input: when it parses as a JSON object or array, that value is the template (a tree, as a node's
 * config is); otherwise the bytes, if valid UTF-8, are one template string. Whatever compiles is
 * rendered against a fixed scope that has every root, so every filter meets every JSON type. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>

#include "kailash/template.h"

static const char *const fz_env_allowed[] = {"REGION", "UNSET"};

/* Refuses node ids other than "fetch", as the loader refuses unknown nodes. */
static int fz_on_node_ref(void *ud, const char *id)
{
    (void)ud;
    return id[0] == 'f' && id[1] == 'e' && id[2] == 't' && id[3] == 'c' && id[4] == 'h' && !id[5] ? 0 : 1;
}

static const tmpl_ctx fz_ctx = {fz_env_allowed, 2, fz_on_node_ref, NULL};
static tmpl_scope fz_scope;

static json_t *fz_json(const char *text)
{
    return json_loads(text, JSON_DECODE_ANY, NULL);
}

static void fz_scope_init(void)
{
    fz_scope.inputs = fz_json("{\"s\":\"Ab c/\\u00e9\",\"n\":3.5,\"i\":-7,\"big\":1e300,\"t\":true,\"z\":null,"
                              "\"a\":[1,\"2\",[3],{\"k\":4}],\"o\":{\"b\":1,\"a\":[true,null]},\"num\":\" 12 \","
                              "\"e\":[],\"eo\":{},\"0\":\"zero\",\"q\":\"\\\"\\n\\u0001\"}");
    fz_scope.params = fz_json("{\"data\":{\"x\":[1,2,3]},\"name\":\"p\"}");
    fz_scope.nodes = fz_json("{\"fetch\":{\"response\":{\"status_code\":200,\"content\":{\"items\":[{\"id\":1}]}}}}");
    fz_scope.run_id = "run-1";
    fz_scope.request_id = "req-1";
    fz_scope.principal_id = "user-1";
    fz_scope.principal_roles = fz_json("[\"admin\"]");
    fz_scope.principal_attributes = fz_json("{\"dept\":\"eng\"}");
    fz_scope.env = fz_json("{\"REGION\":\"eu\"}");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!fz_scope.inputs)
        fz_scope_init();
    json_t *v = json_loadb((const char *)data, size, 0, NULL); /* objects and arrays only */
    if (!v)
        v = json_stringn((const char *)data, size); /* NULL when not UTF-8 or holding NUL */
    if (!v)
        return 0;
    tmpl *t = NULL;
    char err[512];
    if (tmpl_compile(v, &fz_ctx, &t, err, sizeof err) == 0) {
        (void)tmpl_is_constant(t);
        json_t *out = tmpl_render(t, &fz_scope, err, sizeof err);
        json_decref(out);
        tmpl_free(t);
    }
    json_decref(v);
    return 0;
}
