/* workflow_node.h: what WorkflowNode's two files share (src/nodes/ only): its compiled config, and the
 * SDK's mapping of the node's inputs into the inner run and of the inner run's results into its
 * outputs (workflow_map.c). */
#ifndef KAILASH_NODES_WORKFLOW_NODE_H
#define KAILASH_NODES_WORKFLOW_NODE_H

#include <jansson.h>

#include "kailash/node.h"
#include "kailash/workflow.h"

typedef struct wfn_conf {
    char *target;           /* a workflow's name, or (by_file) the name of the file it was loaded from */
    int by_file;            /* the config gave workflow_path */
    json_t *input_mapping;  /* {param: {"node", "parameter", "required", "default"}} or NULL */
    json_t *output_mapping; /* {name: {"node", "output"}} or NULL */
} wfn_conf;

/* WorkflowNode's config keys, NULL-terminated: they are never mapped into the inner run. */
extern const char *const wfn_keys[];

/* The inner run's parameters ({node_id: {param: value}}, new reference) from the node's inputs, as the
 * SDK's WorkflowNode.run maps them; NULL with err filled (bad_request: what the caller sent decides
 * it) when a required mapped input is missing or `inputs` has the wrong shape. */
json_t *wfn_map_inputs(const wfn_conf *c, const workflow *inner, const node_call *call, node_error *err);

/* The node's outputs (new reference) from the inner run's results (borrowed): `results`, then the
 * output_mapping names, or <exit node>_<port> for every port of every exit node that ran. */
json_t *wfn_map_outputs(const wfn_conf *c, const workflow *inner, json_t *results);

#endif
