/* Shared between the loader's files (loader.c: nodes and connections; gateway.c: the gateway block
 * and the normalised views). Not a public surface. */
#ifndef KAILASH_LOADER_INTERNAL_H
#define KAILASH_LOADER_INTERNAL_H

#include "kailash/workflow.h"

#define WF_MAX_NODES 1024

typedef struct ld {
    const char *file;
    const wf_load_env *env;
    json_t *problems;
    workflow *wf;
    size_t cur; /* node being compiled, for template node references */
    json_t *overrides; /* gateway.config_overrides (borrowed), or NULL */
    int failed;
} ld;

/* access.c: gateway.access into l->wf->access; wf_access_free frees it. */
void ld_load_access(ld *l, json_t *acc);
void wf_access_free(wf_access *a);
/* Appends "FILE: node 'ID': message" (or "FILE: message" when node is NULL) and marks l failed. */
void ld_problem(ld *l, const char *node, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Names and ids: [A-Za-z0-9_.-]{1,128}. */
int ld_name_valid(const char *s);
/* Reads gateway (may be NULL): inputs schema, outputs, executor, timeout_ms, refusals. */
void ld_load_gateway(ld *l, json_t *gateway);
/* Reads gateway.overridable into the nodes' open_keys (pinned.c). */
void ld_load_overridable(ld *l, json_t *ov);
/* Frees n->open_keys. */
void wf_node_open_keys_free(wf_node *n);
/* Builds wf->normalized and wf->summary from the normalised nodes and connections. */
void ld_build_views(ld *l, json_t *nodes, json_t *conns, json_t *gateway);

#endif
