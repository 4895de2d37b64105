/* graph: the order nodes run in. Kahn's algorithm over the dependency lists the loader built
 * (connections and `nodes.<id>` template references); nodes left over are on a cycle, and the
 * message names them. O(nodes + edges). */
#include <stdlib.h>
#include <string.h>

#include "kailash/util.h"
#include "kailash/workflow.h"

static int succ_add(wf_node *n, size_t s)
{
    size_t *ns = realloc(n->succ, (n->nsucc + 1) * sizeof *ns);
    if (!ns)
        return -1;
    n->succ = ns;
    n->succ[n->nsucc++] = s;
    return 0;
}

static void cycle_problem(const workflow *wf, const size_t *indeg, json_t *problems)
{
    buf b = {0};
    buf_appendf(&b, "%s: cycle through nodes", wf->file);
    const char *sep = " ";
    for (size_t i = 0; i < wf->nnodes; i++) {
        if (indeg[i] == 0)
            continue;
        buf_appendf(&b, "%s'%s'", sep, wf->nodes[i].id);
        sep = ", ";
    }
    json_array_append_new(problems, json_string(b.data ? b.data : "cycle"));
    buf_free(&b);
}

int workflow_graph_build(workflow *wf, json_t *problems)
{
    size_t n = wf->nnodes, head = 0, tail = 0;
    size_t *indeg = calloc(n + 1, sizeof *indeg);
    wf->order = calloc(n + 1, sizeof *wf->order);
    if (!indeg || !wf->order) {
        free(indeg);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        indeg[i] = wf->nodes[i].ndeps;
        for (size_t d = 0; d < wf->nodes[i].ndeps; d++)
            if (succ_add(&wf->nodes[wf->nodes[i].deps[d]], i) != 0)
                goto oom;
    }
    for (size_t i = 0; i < n; i++)
        if (indeg[i] == 0)
            wf->order[tail++] = i;
    while (head < tail) {
        wf_node *cur = &wf->nodes[wf->order[head++]];
        for (size_t s = 0; s < cur->nsucc; s++)
            if (--indeg[cur->succ[s]] == 0)
                wf->order[tail++] = cur->succ[s];
    }
    if (tail != n) {
        cycle_problem(wf, indeg, problems);
        free(indeg);
        return -1;
    }
    free(indeg);
    return 0;
oom:
    free(indeg);
    return -1;
}
