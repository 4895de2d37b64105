/* calls: the check of WorkflowNode calls between loaded workflows (node_type.calls_workflow), run by
 * the registry once every file is compiled, since a call names another file's workflow.
 *
 * One depth-first walk per workflow, from it down its calls: a call to a workflow that is not loaded,
 * a call back to a workflow already on the walk's path (a loop: A -> A, A -> B -> A), or a chain that
 * puts a run more than ENGINE_MAX_DEPTH levels below the one a request started, fails the check with
 * a message that spells out the chain ("a (node 'x') -> b (node 'y') -> a"); so does a calling node
 * whose pinned keys gateway.overridable opens (a request would then seem to choose what runs). The
 * walk never goes deeper than ENGINE_MAX_DEPTH + 1, so a long chain costs no deep recursion. The
 * levels below a workflow already walked are remembered for the rest of that walk (a diamond costs
 * one walk of its shared part), which makes a check O(workflows + calls); a workflow without
 * WorkflowNodes costs one look at its nodes. */
#include <stdlib.h>
#include <string.h>

#include "engine_internal.h"
#include "kailash/util.h"

enum { CW_NEW, CW_ON_PATH, CW_DONE };

typedef struct calls_walk {
    const registry *r;
    unsigned char *state;      /* per workflow: CW_* */
    int *height;               /* CW_DONE: the levels of calls below it */
    long *below;               /* CW_DONE: the workflow its deepest call goes to, or -1 */
    const char **below_node;   /* CW_DONE: the node making that call */
    size_t path[ENGINE_MAX_DEPTH + 2];
    const char *path_node[ENGINE_MAX_DEPTH + 2];
    buf why;
    size_t culprit;
} calls_walk;

/* The index of the workflow called name in r (sorted by name), or -1. */
static long calls_index_of_name(const registry *r, const char *name)
{
    size_t lo = 0, hi = registry_count(r);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(exec_workflow(registry_at(r, mid))->name, name);
        if (c == 0)
            return (long)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

/* The workflow node n calls: its index, -1 when n calls none, -2 when the target is not loaded. */
static long calls_target(const registry *r, const wf_node *n, const char **target, int *by_file)
{
    *by_file = 0;
    *target = n->type->calls_workflow ? n->type->calls_workflow(n->compiled, by_file) : NULL;
    if (!*target)
        return -1;
    executor *ex = *by_file ? registry_find_file(r, *target) : NULL;
    long j = *by_file ? -1 : calls_index_of_name(r, *target);
    for (size_t i = 0; ex && i < registry_count(r) && j < 0; i++) /* by file: rare, and linear anyway */
        if (registry_at(r, i) == ex)
            j = (long)i;
    return j < 0 ? -2 : j;
}

static int calls_any(const workflow *wf)
{
    int by_file;
    for (size_t k = 0; k < wf->nnodes; k++)
        if (wf->nodes[k].type->calls_workflow && wf->nodes[k].type->calls_workflow(wf->nodes[k].compiled, &by_file))
            return 1;
    return 0;
}

static const char *calls_name(const calls_walk *w, size_t i)
{
    return exec_workflow(registry_at(w->r, i))->name;
}

/* "a (node 'x') -> b (node 'y') -> " for the walk's path down to level d (the call made there). */
static void calls_put_path(calls_walk *w, size_t d)
{
    for (size_t k = 0; k <= d; k++)
        buf_appendf(&w->why, "%s (node '%s') -> ", calls_name(w, w->path[k]), w->path_node[k]);
}

/* "b (node 'y') -> c" down the deepest calls below workflow j, as remembered. */
static void calls_put_below(calls_walk *w, long j)
{
    for (; j >= 0 && w->below[j] >= 0; j = w->below[j])
        buf_appendf(&w->why, "%s (node '%s') -> ", calls_name(w, (size_t)j), w->below_node[j]);
    buf_appendf(&w->why, "%s", calls_name(w, (size_t)j));
}

static int calls_fail_missing(calls_walk *w, size_t d, const char *target, int by_file)
{
    buf_appendf(&w->why, "WorkflowNode calls a workflow that is not loaded: ");
    calls_put_path(w, d);
    if (by_file)
        buf_appendf(&w->why, "workflow_path '%.200s': no workflow was loaded from a file of workflows_dir called '%.200s'",
                    target, target);
    else
        buf_appendf(&w->why, "workflow_name '%.200s': no loaded workflow has that name", target);
    w->culprit = w->path[d];
    return -1;
}

static int calls_fail_loop(calls_walk *w, size_t d, size_t j)
{
    buf_appendf(&w->why, "WorkflowNode calls loop back: ");
    calls_put_path(w, d);
    buf_appendf(&w->why, "%s (a workflow may not call itself, directly or through others)", calls_name(w, j));
    w->culprit = w->path[d];
    return -1;
}

static int calls_fail_deep(calls_walk *w, size_t d, long j)
{
    buf_appendf(&w->why, "WorkflowNode calls nest deeper than %d levels: ", ENGINE_MAX_DEPTH);
    calls_put_path(w, d);
    calls_put_below(w, j);
    w->culprit = w->path[d];
    return -1;
}

/* A pinned key of a calling node that gateway.overridable opens: a request could then set the
 * workflow it runs (or its mappings), which the compiled call ignores; refused, not ignored. */
static const char *calls_opened_key(const wf_node *n)
{
    for (char **k = n->open_keys; k && *k; k++)
        for (const char *const *p = n->type->pinned_keys; p && *p; p++)
            if (strcmp(*p, *k) == 0)
                return *k;
    return NULL;
}

static int calls_fail_opened(calls_walk *w, size_t d, const char *key)
{
    buf_appendf(&w->why, "gateway.overridable may not open a WorkflowNode's '%s' (the workflow file chooses the "
                         "workflow it runs, never a request): ",
                key);
    for (size_t k = 0; k < d; k++)
        buf_appendf(&w->why, "%s (node '%s') -> ", calls_name(w, w->path[k]), w->path_node[k]);
    buf_appendf(&w->why, "%s (node '%s')", calls_name(w, w->path[d]), w->path_node[d]);
    w->culprit = w->path[d];
    return -1;
}

/* Walks workflow i, at level d of the path (d calls below the workflow the check started from). */
static int calls_walk_from(calls_walk *w, size_t i, size_t d)
{
    const workflow *wf = exec_workflow(registry_at(w->r, i));
    w->state[i] = CW_ON_PATH;
    w->path[d] = i;
    w->height[i] = 0;
    for (size_t k = 0; k < wf->nnodes; k++) {
        const char *target;
        int by_file;
        long j = calls_target(w->r, &wf->nodes[k], &target, &by_file);
        if (j == -1)
            continue;
        w->path_node[d] = wf->nodes[k].id;
        const char *opened = calls_opened_key(&wf->nodes[k]);
        if (opened)
            return calls_fail_opened(w, d, opened);
        if (j == -2)
            return calls_fail_missing(w, d, target, by_file);
        if (w->state[j] == CW_ON_PATH)
            return calls_fail_loop(w, d, (size_t)j);
        if (w->state[j] == CW_NEW && d + 1 > ENGINE_MAX_DEPTH)
            return calls_fail_deep(w, d, j);
        if (w->state[j] == CW_NEW && calls_walk_from(w, (size_t)j, d + 1) != 0)
            return -1;
        if ((int)d + 1 + w->height[j] > ENGINE_MAX_DEPTH)
            return calls_fail_deep(w, d, j);
        if (w->height[j] + 1 > w->height[i]) {
            w->height[i] = w->height[j] + 1;
            w->below[i] = j;
            w->below_node[i] = wf->nodes[k].id;
        }
    }
    w->state[i] = CW_DONE;
    return 0;
}

int registry_calls_check(const registry *r, size_t i, char **why, size_t *culprit)
{
    *why = NULL;
    *culprit = i;
    if (!calls_any(exec_workflow(registry_at(r, i))))
        return 0; /* most workflows: no walk, no per-workflow arrays */
    size_t n = registry_count(r);
    calls_walk w = {.r = r,
                    .state = calloc(n, 1),
                    .height = calloc(n, sizeof *w.height),
                    .below = calloc(n, sizeof *w.below),
                    .below_node = calloc(n, sizeof *w.below_node)};
    int rc = 0;
    for (size_t k = 0; w.below && k < n; k++)
        w.below[k] = -1; /* a workflow not walked yet has nothing below it to show */
    if (!w.state || !w.height || !w.below || !w.below_node) {
        *why = strdup("out of memory while checking WorkflowNode calls");
        rc = -1;
    } else if (calls_walk_from(&w, i, 0) != 0) {
        *why = w.why.data ? w.why.data : strdup("out of memory while checking WorkflowNode calls");
        w.why.data = NULL;
        *culprit = w.culprit;
        rc = -1;
    }
    buf_free(&w.why);
    free(w.state);
    free(w.height);
    free(w.below);
    free(w.below_node);
    return rc;
}
