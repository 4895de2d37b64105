/* workflow_map: WorkflowNode's data in and out, as the SDK's WorkflowNode.run does it (kailash 2.63,
 * nodes/logic/workflow.py), recorded against the SDK's LocalRuntime.
 *
 * In: with input_mapping {param: {"node", "parameter"}} each mapped input goes to that inner node's
 * parameter (named param when "parameter" is left out); a mapped input that is missing takes the
 * mapping's "default", and without one fails the node unless the mapping says "required": false (the
 * SDK declares mapped inputs required, so its validation refuses the run). Without input_mapping, an
 * input `<node>_<param>` goes to inner node <node>'s param, split at the first '_' as the SDK splits,
 * and only for the params the SDK declares: those of entry nodes (no connection into them) that the
 * node type takes; anything else is dropped, as the SDK's parameter filtering drops it. In both cases
 * `inputs` {node_id: {param: value}} goes last and wins. WorkflowNode's own config keys are never
 * mapped: its `workflow_name` would otherwise become param `name` of an inner node called `workflow`.
 *
 * Out: `results` (every inner node that ran, by id), then either the output_mapping names ({name:
 * {"node", "output"}}, each present only when that node ran and has that port) or, for every exit
 * node (no connection out of it) that ran, `<node>_<port>` for each of its ports. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "workflow_node.h"

static void map_put(json_t *params, const char *node, const char *param, json_t *v)
{
    json_t *p = json_object_get(params, node);
    if (!p)
        json_object_set_new(params, node, p = json_object());
    json_object_set(p, param, v);
}

static int list_has(const char *const *list, const char *key)
{
    for (; list && *list; list++)
        if (strcmp(*list, key) == 0)
            return 1;
    return 0;
}

/* The SDK declares `<node>_<param>` for the params of entry nodes only, by their own names (no
 * aliases). A type taking any input name (input_ports NULL: TransformNode, WorkflowNode) takes it. */
static int map_declared(const wf_node *n, const char *param)
{
    if (n->nin != 0)
        return 0;
    return list_has(n->type->config_keys, param) || !n->type->input_ports || list_has(n->type->input_ports, param);
}

static void map_auto(const workflow *wf, json_t *inputs, json_t *params)
{
    const char *k;
    json_t *v;
    json_object_foreach(inputs, k, v)
    {
        const char *us = strchr(k, '_');
        char node[160];
        if (!us || us == k || !us[1] || (size_t)(us - k) >= sizeof node || list_has(wfn_keys, k))
            continue;
        memcpy(node, k, (size_t)(us - k));
        node[us - k] = '\0';
        long i = workflow_node_index(wf, node);
        if (i >= 0 && map_declared(&wf->nodes[i], us + 1))
            map_put(params, node, us + 1, v);
    }
}

static int map_mapped(const wfn_conf *c, const node_call *call, json_t *params, node_error *err)
{
    const char *k;
    json_t *m;
    json_object_foreach(c->input_mapping, k, m)
    {
        json_t *v = json_object_get(call->inputs, k), *p = json_object_get(m, "parameter");
        if (!v && !json_is_null(json_object_get(m, "default")))
            v = json_object_get(m, "default");
        if (!v && !json_is_false(json_object_get(m, "required")))
            return node_fail(err, "bad_request",
                             "input '%.64s' is missing: input_mapping makes it required (give it by a connection or "
                             "as parameters.%.64s.%.64s, or give the mapping a \"default\" or \"required\": false)",
                             k, call->node_id, k);
        if (v)
            map_put(params, json_string_value(json_object_get(m, "node")), p ? json_string_value(p) : k, v);
    }
    return 0;
}

static int map_scoped(const workflow *wf, json_t *scoped, json_t *params, node_error *err)
{
    const char *k;
    json_t *v;
    if (!scoped || json_is_null(scoped))
        return 0;
    if (!json_is_object(scoped))
        return node_fail(err, "bad_request", "input 'inputs': expected an object {\"node_id\": {\"param\": value}}");
    json_object_foreach(scoped, k, v)
    {
        if (workflow_node_index(wf, k) < 0)
            continue; /* the SDK skips node ids its workflow does not have */
        if (!json_is_object(v))
            return node_fail(err, "bad_request", "input 'inputs.%.64s': expected an object {\"param\": value}", k);
        const char *pk;
        json_t *pv;
        json_object_foreach(v, pk, pv) map_put(params, k, pk, pv);
    }
    return 0;
}

json_t *wfn_map_inputs(const wfn_conf *c, const workflow *inner, const node_call *call, node_error *err)
{
    json_t *params = json_object();
    int rc = 0;
    if (c->input_mapping)
        rc = map_mapped(c, call, params, err);
    else
        map_auto(inner, call->inputs, params);
    if (rc == 0)
        rc = map_scoped(inner, json_object_get(call->inputs, "inputs"), params, err);
    if (rc != 0) {
        json_decref(params);
        return NULL;
    }
    return params;
}

static void map_exit_ports(const workflow *wf, json_t *results, json_t *out)
{
    for (size_t i = 0; i < wf->nnodes; i++) {
        json_t *node_out = json_object_get(results, wf->nodes[i].id);
        const char *k;
        json_t *v;
        if (wf->nodes[i].has_out || !json_is_object(node_out))
            continue;
        json_object_foreach(node_out, k, v)
        {
            /* sized to fit: nested WorkflowNodes stack their prefixes (call_call_..._port) */
            size_t len = strlen(wf->nodes[i].id) + strlen(k) + 2;
            char *name = malloc(len);
            if (!name)
                continue;
            snprintf(name, len, "%s_%s", wf->nodes[i].id, k);
            json_object_set(out, name, v);
            free(name);
        }
    }
}

json_t *wfn_map_outputs(const wfn_conf *c, const workflow *inner, json_t *results)
{
    json_t *out = json_pack("{s:O}", "results", results);
    const char *k;
    json_t *m;
    if (!out || !c->output_mapping) {
        if (out)
            map_exit_ports(inner, results, out);
        return out;
    }
    json_object_foreach(c->output_mapping, k, m)
    {
        json_t *o = json_object_get(m, "output");
        json_t *node_out = json_object_get(results, json_string_value(json_object_get(m, "node")));
        json_t *port = json_object_get(node_out, o ? json_string_value(o) : k);
        if (port)
            json_object_set(out, k, port);
    }
    return out;
}
