/* pinned: which of a node's keys a request may set.
 *
 * A node's inputs are layered (WORKFLOWS.md "Data flow"): config, then workflow-wide inputs whose key
 * the node takes and no connection fills, then connections, then the request's parameters[node_id].
 * That is the SDK's rule, and for a gateway it is an open door: a caller could point an HTTP node
 * elsewhere, swap its method and headers while it carries the node's own credentials, or aim a file
 * node at another file. So the keys a node type lists in pinned_keys come only from the workflow
 * file (its config, templates and connections, all written by its author); a request that tries to
 * set one is refused before the run starts, unless gateway.overridable opens that key for that node.
 * The engine also leaves such keys out when it layers a run's inputs, so no caller that skips the
 * check can get past it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loader_internal.h"

static int list_has(const char *const *list, const char *key)
{
    for (; list && *list; list++)
        if (strcmp(*list, key) == 0)
            return 1;
    return 0;
}

const char *wf_node_input_name(const wf_node *n, const char *key)
{
    for (const node_alias *a = n->type->input_aliases; a && a->from; a++)
        if (strcmp(a->from, key) == 0)
            return a->to;
    return key;
}

int wf_node_takes(const wf_node *n, const char *key)
{
    key = wf_node_input_name(n, key);
    return list_has(n->type->config_keys, key) || list_has(n->type->input_ports, key);
}

int wf_node_conn_fills(const workflow *wf, const wf_node *n, const char *key)
{
    key = wf_node_input_name(n, key);
    for (size_t c = 0; c < n->nin; c++)
        if (strcmp(wf->conns[n->in[c]].dst_input, key) == 0)
            return 1;
    return 0;
}

int wf_node_key_open(const wf_node *n, const char *key)
{
    key = wf_node_input_name(n, key);
    return !list_has(n->type->pinned_keys, key) || list_has((const char *const *)n->open_keys, key);
}

/* A workflow-wide input reaches node n's key when n takes it and no connection fills it. */
static int input_refused(const workflow *wf, const char *key, char *err, size_t errlen)
{
    for (size_t i = 0; i < wf->nnodes; i++) {
        const wf_node *n = &wf->nodes[i];
        if (wf_node_takes(n, key) && !wf_node_conn_fills(wf, n, key) && !wf_node_key_open(n, key)) {
            snprintf(err, errlen,
                     "inputs.%.64s: would set key '%s' of node '%s', which only the workflow file sets "
                     "(gateway.overridable can open it)",
                     key, key, n->id);
            return 1;
        }
    }
    return 0;
}

static int params_refused(const workflow *wf, const char *id, json_t *over, char *err, size_t errlen)
{
    long idx = workflow_node_index(wf, id);
    const char *k;
    json_t *v;
    if (idx < 0)
        return 0; /* the caller refuses unknown node ids with its own message */
    json_object_foreach(over, k, v)
    {
        if (!wf_node_key_open(&wf->nodes[idx], k)) {
            snprintf(err, errlen,
                     "parameters.%.64s.%.64s: node '%.64s' key '%.64s' is set only by the workflow file "
                     "(gateway.overridable can open it)",
                     id, k, id, k);
            return 1;
        }
    }
    return 0;
}

int workflow_check_request(const workflow *wf, json_t *inputs, json_t *parameters, char *err, size_t errlen)
{
    const char *k;
    json_t *v;
    json_object_foreach(inputs, k, v) if (input_refused(wf, k, err, errlen)) return -1;
    json_object_foreach(parameters, k, v) if (json_is_object(v) && params_refused(wf, k, v, err, errlen)) return -1;
    return 0;
}

/* ---- gateway.overridable at load --------------------------------------------------------------- */

static int overridable_keys(ld *l, wf_node *n, json_t *keys)
{
    size_t i, nkeys = json_array_size(keys);
    json_t *k;
    n->open_keys = calloc(nkeys + 1, sizeof *n->open_keys);
    if (!n->open_keys)
        return ld_problem(l, NULL, "out of memory"), -1;
    json_array_foreach(keys, i, k)
    {
        const char *s = json_string_value(k);
        if (!s) {
            ld_problem(l, NULL, "gateway.overridable.%s: expected an array of key names", n->id);
            return -1;
        }
        if (!list_has(n->type->config_keys, s)) {
            ld_problem(l, NULL, "gateway.overridable.%s: '%.64s' is not a config key of %s", n->id, s, n->type->name);
            return -1;
        }
        n->open_keys[i] = strdup(s);
    }
    return 0;
}

void ld_load_overridable(ld *l, json_t *ov)
{
    const char *id;
    json_t *keys;
    if (!json_is_object(ov)) {
        ld_problem(l, NULL, "gateway.overridable: expected an object {\"node_id\": [\"key\", ...]}");
        return;
    }
    json_object_foreach(ov, id, keys)
    {
        long idx = workflow_node_index(l->wf, id);
        if (idx < 0) {
            ld_problem(l, NULL, "gateway.overridable: unknown node '%.64s'", id);
            return;
        }
        if (!json_is_array(keys)) {
            ld_problem(l, NULL, "gateway.overridable.%s: expected an array of key names", id);
            return;
        }
        if (l->wf->nodes[idx].open_keys || overridable_keys(l, &l->wf->nodes[idx], keys) != 0)
            return;
    }
}

void wf_node_open_keys_free(wf_node *n)
{
    for (char **k = n->open_keys; k && *k; k++)
        free(*k);
    free(n->open_keys);
    n->open_keys = NULL;
}
