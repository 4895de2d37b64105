/* test_config_dir.h: for unit tests that load workflows from disk (test_engine.c, test_registry.c,
 * test_nodes_workflow.c). test_config_dir makes a fresh directory from pattern ("/tmp/kxxxXXXXXX", at
 * most 63 bytes) into dir with wf/ and data/ in it, and a config of the embedded defaults whose
 * workflows_dir and data_dir are those two. test_config_put writes dir/wf/NAME.json. */
#ifndef KAILASH_TEST_CONFIG_DIR_H
#define KAILASH_TEST_CONFIG_DIR_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kailash/config.h"

static inline kconfig *test_config_dir(char dir[64], const char *pattern)
{
    char err[256], path[128];
    kconfig *cfg = NULL;
    snprintf(dir, 64, "%s", pattern);
    cr_assert_not_null(mkdtemp(dir));
    cr_assert_eq(config_load(NULL, &cfg, err, sizeof err), 0, "%s", err);
    snprintf(path, sizeof path, "%s/wf", dir);
    mkdir(path, 0700);
    free(cfg->workflows_dir);
    cfg->workflows_dir = strdup(path);
    snprintf(path, sizeof path, "%s/data", dir);
    mkdir(path, 0700);
    free(cfg->data_dir);
    cfg->data_dir = strdup(path);
    return cfg;
}

static inline void test_config_put(const char *dir, const char *name, const char *text)
{
    char path[256];
    snprintf(path, sizeof path, "%s/wf/%s.json", dir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    fputs(text, f);
    fclose(f);
}

#endif
