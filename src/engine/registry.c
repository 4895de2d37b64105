/* registry: the loaded workflows, one executor each, sorted by name.
 *
 * Reload builds a whole new registry beside the serving one and swaps it in; requests take a counted
 * reference, so a run keeps the registry (and the executor and workflow) it started with until it
 * ends. A file that fails to load keeps the executor the previous registry had for the same file, so
 * a bad edit never takes a working workflow offline. Once every file is compiled, the WorkflowNode
 * calls between them are checked (calls.c); a workflow whose calls fail is treated the same way.
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

/* ---- WorkflowNode calls (node_type.calls_workflow; the walk is in calls.c) --------------------- */

executor *registry_find_file(const registry *r, const char *file_name)
{
    for (size_t i = 0; i < r->n; i++) {
        const char *f = exec_workflow(r->ex[i])->file, *slash = strrchr(f, '/');
        if (strcmp(slash ? slash + 1 : f, file_name) == 0)
            return r->ex[i];
    }
    return NULL;
}

/* Reports a failing call once per file: when a previous version put back fails too, its file already
 * has the new version's error. */
static void calls_report(registry *r, const char *file, const char *why)
{
    size_t i;
    json_t *e;
    json_array_foreach(r->errors, i, e) if (strcmp(json_string_value(json_object_get(e, "file")), file) == 0)
    {
        log_msg(LOG_ERROR, "%s: its previous version is left out too: %s", file, why);
        return;
    }
    size_t from = json_array_size(r->problems);
    json_array_append_new(r->problems, json_sprintf("%s: %s", file, why));
    add_error(r, file, r->problems, from);
    log_msg(LOG_ERROR, "%s: not loaded: %s", file, why);
}

static long exec_index(const registry *r, const executor *ex)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->ex[i] == ex)
            return (long)i;
    return -1;
}

/* A workflow whose calls fail keeps serving the version prev had from its file, as a file that fails
 * to compile does: 1 when that version took its place (one whose name no other workflow of r uses). */
static int calls_keep_previous(registry *r, executor *ex, registry *prev, const char *why)
{
    long i = exec_index(r, ex);
    if (i < 0) /* put back already, for another workflow's failing call */
        return 0;
    const workflow *wf = exec_workflow(ex);
    executor *old = find_by_file(prev, wf->file);
    executor *same_name = old ? registry_find(r, exec_workflow(old)->name) : NULL;
    if (!old || old == ex || (same_name && same_name != ex))
        return 0;
    calls_report(r, wf->file, why);
    log_msg(LOG_WARN, "%s: keeps serving its previous version", wf->file);
    exec_retain(old);
    r->ex[i] = old;
    exec_release(ex);
    qsort(r->ex, r->n, sizeof *r->ex, cmp_exec);
    return 1;
}

/* Puts back previous versions: first of the workflows whose own nodes make the failing calls (which
 * may be enough for those calling them), else of any failing one. 1 when one was put back. */
static int calls_repair(registry *r, registry *prev, char **why, const size_t *culprit)
{
    size_t n = r->n;
    executor **blamed = calloc(n + 1, sizeof *blamed), **failing = calloc(n + 1, sizeof *failing);
    int changed = 0;
    for (size_t i = 0; blamed && failing && i < n; i++) {
        blamed[i] = why[i] && why[culprit[i]] ? r->ex[culprit[i]] : NULL;
        failing[i] = why[i] ? r->ex[i] : NULL;
    }
    for (int pass = 0; blamed && failing && pass < 2 && !changed; pass++) {
        executor **set = pass == 0 ? blamed : failing;
        for (size_t i = 0; i < n; i++)
            if (set[i] && calls_keep_previous(r, set[i], prev, why[pass == 0 ? culprit[i] : i]))
                changed = 1;
    }
    free(blamed);
    free(failing);
    return changed;
}

/* Leaves out every workflow whose WorkflowNode calls fail (a missing target, a loop, too deep), each
 * with its error, unless its previous version serves. Each workflow is checked against the whole set,
 * so one calling a left-out workflow is left out in the same pass, and what stays calls only what
 * stays. Repairs change the set, so the check runs again after each; a version is put back at most
 * once, which bounds the rounds by the number of workflows. */
static void check_calls(registry *r, registry *prev)
{
    for (;;) {
        size_t n = r->n, nbad = 0;
        char **why = calloc(n + 1, sizeof *why);
        size_t *culprit = calloc(n + 1, sizeof *culprit);
        for (size_t i = 0; why && culprit && i < n; i++)
            nbad += registry_calls_check(r, i, &why[i], &culprit[i]) != 0;
        int again = nbad && prev && calls_repair(r, prev, why, culprit);
        if (nbad && !again && why) {
            size_t kept = 0;
            for (size_t i = 0; i < n; i++) {
                if (why[i]) {
                    calls_report(r, exec_workflow(r->ex[i])->file, why[i]);
                    exec_release(r->ex[i]);
                } else {
                    r->ex[kept++] = r->ex[i];
                }
            }
            r->n = kept;
        }
        for (size_t i = 0; why && i < n; i++)
            free(why[i]);
        free(why);
        free(culprit);
        if (!again)
            return;
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
    check_calls(r, prev);
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
