/* fuzz_loader: the workflow loader (workflow_load_json, src/workflow/loader.c) on fuzzed JSON text,
 * with every node type's compile, the gateway block, the graph checks and templates behind it.
 * data_dir is a fresh empty directory, so file nodes resolve paths without touching real files. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kailash/config.h"
#include "kailash/log.h"
#include "kailash/workflow.h"

static kconfig *fz_cfg;
static node_env fz_nenv;
static char fz_data_dir[] = "/tmp/kailash_fuzz_XXXXXX";

static void fz_init(void)
{
    char err[256];
    log_set_level(LOG_ERROR); /* load warnings would flood the fuzzer's output */
    if (config_load(NULL, &fz_cfg, err, sizeof err) != 0 || !mkdtemp(fz_data_dir))
        abort();
    fz_cfg->template_env = calloc(1, sizeof(char *)); /* templates may read env.REGION */
    if (!fz_cfg->template_env || !(fz_cfg->template_env[0] = strdup("REGION")))
        abort();
    fz_cfg->n_template_env = 1;
    fz_nenv = (node_env){fz_data_dir, 1 << 20, 1000, 1};
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!fz_cfg)
        fz_init();
    json_t *doc = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    if (!doc)
        return 0;
    wf_load_env env = {fz_cfg, &fz_nenv};
    workflow *wf = NULL;
    json_t *problems = json_array();
    if (workflow_load_json(doc, "fuzz.json", "fuzz", &env, &wf, problems) == 0)
        workflow_free(wf);
    json_decref(problems);
    json_decref(doc);
    return 0;
}
