/* registry: the loaded workflows, one executor each, sorted by name.
 *
 * Reload builds a whole new registry beside the serving one and swaps a single pointer under a mutex;
 * requests take a counted reference, so a run keeps the registry (and the executor and workflow) it
 * started with until it ends. A file that fails to load keeps the executor the previous registry had
 * for the same file, so a bad edit never takes a working workflow offline. */
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_internal.h"
#include "kailash/log.h"
#include "kailash/util.h"

struct registry {
    atomic_int refs;
    executor **ex;
    size_t n;
    json_t *errors;   /* [{file, message}] */
    json_t *problems; /* ["FILE: ..."] */
    int sorted;       /* ex is in name order (set once loading is complete) */
};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static registry *g_current;

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_exec(const void *a, const void *b)
{
    return strcmp(exec_workflow(*(executor *const *)a)->name, exec_workflow(*(executor *const *)b)->name);
}

/* Sorted *.json names in dir; NULL with *n = 0 when the directory cannot be read. */
static char **list_json(const char *dir, size_t *n)
{
    DIR *d = opendir(dir);
    char **names = NULL;
    *n = 0;
    if (!d)
        return NULL;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (e->d_name[0] == '.' || len < 6 || strcmp(e->d_name + len - 5, ".json") != 0)
            continue;
        char **nn = realloc(names, (*n + 1) * sizeof *nn);
        if (!nn)
            break;
        names = nn;
        names[(*n)++] = strdup(e->d_name);
    }
    closedir(d);
    if (*n > 1)
        qsort(names, *n, sizeof *names, cmp_str);
    return names;
}

static executor *find_by_file(const registry *r, const char *file)
{
    for (size_t i = 0; r && i < r->n; i++)
        if (strcmp(exec_workflow(r->ex[i])->file, file) == 0)
            return r->ex[i];
    return NULL;
}

static void add_error(registry *r, const char *file, json_t *problems, size_t from)
{
    buf b = {0};
    for (size_t i = from; i < json_array_size(problems); i++)
        buf_appendf(&b, "%s%s", i > from ? "; " : "", json_string_value(json_array_get(problems, i)));
    json_array_append_new(r->errors, json_pack("{s:s,s:s}", "file", file, "message", b.data ? b.data : "failed"));
    buf_free(&b);
}

static void add_exec(registry *r, executor *ex)
{
    executor **nx = realloc(r->ex, (r->n + 1) * sizeof *nx);
    if (!nx) {
        exec_release(ex);
        return;
    }
    r->ex = nx;
    r->ex[r->n++] = ex;
}

static void load_one(registry *r, const char *path, const wf_load_env *env, registry *prev)
{
    size_t from = json_array_size(r->problems);
    workflow *wf = NULL;
    if (workflow_load_file(path, env, &wf, r->problems) == 0 && registry_find(r, wf->name)) {
        json_array_append_new(r->problems,
                              json_sprintf("%s: workflow name '%s' is already used by another file", path, wf->name));
        workflow_free(wf);
        wf = NULL;
    }
    if (wf) {
        executor *ex = exec_create(wf);
        if (ex)
            add_exec(r, ex);
        else
            workflow_free(wf);
        return;
    }
    add_error(r, path, r->problems, from);
    log_msg(LOG_ERROR, "%s: not loaded: %s", path,
            json_string_value(json_object_get(json_array_get(r->errors, json_array_size(r->errors) - 1), "message")));
    executor *old = find_by_file(prev, path);
    if (old && !registry_find(r, exec_workflow(old)->name)) {
        exec_retain(old);
        add_exec(r, old);
        log_msg(LOG_WARN, "%s: keeps serving its previous version", path);
    }
}

registry *registry_load(const kconfig *cfg, const node_env *nenv, registry *prev)
{
    registry *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    atomic_init(&r->refs, 1);
    r->errors = json_array();
    r->problems = json_array();
    wf_load_env env = {cfg, nenv};
    size_t n;
    char **names = list_json(cfg->workflows_dir, &n);
    if (!names && n == 0) {
        DIR *d = opendir(cfg->workflows_dir);
        if (!d)
            json_array_append_new(r->problems,
                                  json_sprintf("%s: cannot read the workflows directory", cfg->workflows_dir));
        else
            closedir(d);
    }
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", cfg->workflows_dir, names[i]);
        load_one(r, path, &env, prev);
        free(names[i]);
    }
    free(names);
    if (r->n > 1)
        qsort(r->ex, r->n, sizeof *r->ex, cmp_exec);
    r->sorted = 1;
    return r;
}

json_t *registry_errors(const registry *r)
{
    return r->errors;
}
json_t *registry_problems(const registry *r)
{
    return r->problems;
}
size_t registry_count(const registry *r)
{
    return r->n;
}

executor *registry_at(const registry *r, size_t i)
{
    return i < r->n ? r->ex[i] : NULL;
}

executor *registry_find(const registry *r, const char *name)
{
    size_t lo = 0, hi = r->n;
    if (!r->sorted) {
        for (size_t j = 0; j < r->n; j++)
            if (strcmp(exec_workflow(r->ex[j])->name, name) == 0)
                return r->ex[j];
        return NULL;
    }
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(exec_workflow(r->ex[mid])->name, name);
        if (c == 0)
            return r->ex[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

void registry_publish(registry *r)
{
    pthread_mutex_lock(&g_mu);
    registry *old = g_current;
    g_current = r;
    pthread_mutex_unlock(&g_mu);
    registry_release(old);
}

registry *registry_acquire(void)
{
    pthread_mutex_lock(&g_mu);
    registry *r = g_current;
    if (r)
        atomic_fetch_add(&r->refs, 1);
    pthread_mutex_unlock(&g_mu);
    return r;
}

void registry_release(registry *r)
{
    if (!r || atomic_fetch_sub(&r->refs, 1) != 1)
        return;
    for (size_t i = 0; i < r->n; i++)
        exec_release(r->ex[i]);
    free(r->ex);
    json_decref(r->errors);
    json_decref(r->problems);
    free(r);
}
