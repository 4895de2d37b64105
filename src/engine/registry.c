/* registry: the loaded workflows, one executor each, sorted by name.
 *
 * Reload builds a whole new registry beside the serving one and swaps it in; requests take a counted
 * reference, so a run keeps the registry (and the executor and workflow) it started with until it
 * ends. A file that fails to load keeps the executor the previous registry had for the same file, so
 * a bad edit never takes a working workflow offline.
 *
 * registry_acquire takes no lock (every request calls it, on every loop). The classic race of a
 * swapped, counted pointer is between loading it and incrementing its count: the publisher may swap
 * and drop the last reference in between. A split reference count closes it with one atomic step:
 * the current registry is named by one 64-bit word, its slot number in the high bits and an
 * "acquired" count in the low ones. An acquire is a single fetch_add on that word: it learns which
 * registry is current and counts itself against it at once. Releases go to the registry's own count.
 * The publisher swaps the word (exchange) and adds the acquisitions it took out of it to the old
 * registry's own count, which then holds exactly the references still out. While a registry is
 * current its own count carries a bias, so releases that run ahead of that transfer never make it
 * reach zero. Chosen over hazard pointers or an epoch scheme because it needs no per-thread
 * registration and costs readers one RMW, as the mutex's lock did (without its unlock and without
 * ever making a reader wait). The cost is the slot table: a registry is named by a slot, and at most
 * REG_SLOTS - 1 can be alive at once (current plus retired ones that runs still hold); a publish that
 * finds none free waits for one. */
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine_internal.h"
#include "kailash/log.h"
#include "kailash/util.h"

struct registry {
    atomic_llong refs; /* its own count (see the top of the file), with REG_BIAS while current */
    int slot;          /* its slot while published or held after that; 0 before */
    executor **ex;
    size_t n;
    json_t *errors;   /* [{file, message}] */
    json_t *problems; /* ["FILE: ..."] */
    int sorted;       /* ex is in name order (set once loading is complete) */
};

#define REG_SLOTS 4096          /* slot 0 is "none published" */
#define REG_COUNT_BITS 52       /* the word: slot << 52 | acquisitions (2^52: ~140 years at 1M/s) */
#define REG_BIAS (1LL << 60)    /* more than acquisitions can ever be */
static _Atomic(registry *) g_slots[REG_SLOTS];
static _Atomic uint64_t g_word; /* slot of the current registry, acquisitions since it was published */
static pthread_mutex_t g_pub_mu = PTHREAD_MUTEX_INITIALIZER; /* publishers only, never readers */

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

/* ---- WorkflowNode calls (node_type.calls_workflow) ------------------------------------------- */

/* Index of the workflow called name in r (sorted), or -1. */
static long index_of(const registry *r, const char *name)
{
    executor *ex = registry_find(r, name);
    for (size_t i = 0; ex && i < r->n; i++)
        if (r->ex[i] == ex)
            return (long)i;
    return -1;
}

/* Depth-first over the calls of workflow i: the levels of calls below it (0: it calls none), or -1
 * with why filled. color: 0 not seen, 1 on the current path, 2 done (its height in height[]). */
static int calls_height(const registry *r, size_t i, unsigned char *color, int *height, char *why, size_t whylen)
{
    const workflow *wf = exec_workflow(r->ex[i]);
    color[i] = 1;
    height[i] = 0;
    for (size_t k = 0; k < wf->nnodes; k++) {
        const wf_node *n = &wf->nodes[k];
        const char *t = n->type->calls_workflow ? n->type->calls_workflow(n->compiled) : NULL;
        if (!t)
            continue;
        long j = index_of(r, t);
        if (j < 0)
            return snprintf(why, whylen, "node '%s': workflow_name '%.64s' is not a loaded workflow", n->id, t), -1;
        if (color[j] == 1)
            return snprintf(why, whylen, "node '%s': calling '%.64s' loops back (a workflow may not call itself, "
                                         "directly or through others)", n->id, t), -1;
        if (color[j] == 0 && calls_height(r, (size_t)j, color, height, why, whylen) < 0) {
            char inner[400];
            util_copy(inner, sizeof inner, why);
            return snprintf(why, whylen, "node '%.64s' calls '%.64s': %.250s", n->id, t, inner), -1;
        }
        if (height[j] + 1 > height[i])
            height[i] = height[j] + 1;
        if (height[i] > ENGINE_MAX_DEPTH)
            return snprintf(why, whylen, "node '%s': calls nest deeper than %d levels", n->id, ENGINE_MAX_DEPTH), -1;
    }
    color[i] = 2;
    return height[i];
}

/* Leaves out every workflow whose WorkflowNode calls don't resolve, each with its error. Each is
 * checked against the whole set, so a workflow that calls a refused one is refused in the same pass
 * (its message shows the chain), and what is left calls only what is left. */
static void check_calls(registry *r)
{
    unsigned char *color = calloc(r->n + 1, 1), *bad = calloc(r->n + 1, 1);
    int *height = calloc(r->n + 1, sizeof *height);
    for (size_t i = 0; color && bad && height && i < r->n; i++) {
        char why[400];
        memset(color, 0, r->n);
        if (calls_height(r, i, color, height, why, sizeof why) >= 0)
            continue;
        const char *file = exec_workflow(r->ex[i])->file;
        size_t from = json_array_size(r->problems);
        json_array_append_new(r->problems, json_sprintf("%s: %s", file, why));
        add_error(r, file, r->problems, from);
        log_msg(LOG_ERROR, "%s: not loaded: %s", file, why);
        bad[i] = 1;
    }
    size_t kept = 0;
    for (size_t i = 0; bad && i < r->n; i++) {
        if (bad[i])
            exec_release(r->ex[i]);
        else
            r->ex[kept++] = r->ex[i];
    }
    if (bad)
        r->n = kept;
    free(color);
    free(bad);
    free(height);
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
    check_calls(r);
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

/* A free slot for r (publisher lock held); waits while every slot is held by retired registries. */
static int slot_take(registry *r)
{
    static int next = 1;
    for (;;) {
        for (int n = 1; n < REG_SLOTS; n++) {
            int i = next;
            next = next + 1 < REG_SLOTS ? next + 1 : 1;
            registry *none = NULL;
            if (atomic_compare_exchange_strong(&g_slots[i], &none, r))
                return i;
        }
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

static void registry_free(registry *r)
{
    for (size_t i = 0; i < r->n; i++)
        exec_release(r->ex[i]);
    free(r->ex);
    json_decref(r->errors);
    json_decref(r->problems);
    if (r->slot)
        atomic_store(&g_slots[r->slot], NULL); /* no acquire can name it any more: it is not current */
    free(r);
}

/* Drops delta from r's own count; frees r at zero. */
static void refs_drop(registry *r, long long delta)
{
    if (atomic_fetch_sub_explicit(&r->refs, delta, memory_order_acq_rel) == delta)
        registry_free(r);
}

void registry_publish(registry *r)
{
    pthread_mutex_lock(&g_pub_mu);
    uint64_t w = 0;
    if (r) {
        if (!r->slot)
            r->slot = slot_take(r);
        atomic_fetch_add(&r->refs, REG_BIAS - 1); /* the caller's reference becomes "current" */
        w = (uint64_t)r->slot << REG_COUNT_BITS;
    }
    uint64_t old = atomic_exchange_explicit(&g_word, w, memory_order_acq_rel);
    pthread_mutex_unlock(&g_pub_mu);
    registry *prev = atomic_load(&g_slots[old >> REG_COUNT_BITS]);
    if (prev) /* its acquisitions become its own count, and "current" goes */
        refs_drop(prev, REG_BIAS - (long long)(old & ((1ULL << REG_COUNT_BITS) - 1)));
}

registry *registry_acquire(void)
{
    uint64_t w = atomic_fetch_add_explicit(&g_word, 1, memory_order_acquire);
    return atomic_load_explicit(&g_slots[w >> REG_COUNT_BITS], memory_order_acquire);
}

void registry_release(registry *r)
{
    if (r)
        refs_drop(r, 1);
}
