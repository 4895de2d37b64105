/* template: the `{{ expression | filter }}` language of WORKFLOWS.md, compiled at load.
 *
 * A compiled template (tmpl) mirrors a JSON value: objects and arrays are walked, and every string
 * holding `{{ ... }}` is parsed once into literal pieces and expressions. Rendering only walks the
 * compiled form. A string that is exactly one expression keeps the value's JSON type; otherwise the
 * pieces are stringified and concatenated.
 *
 * Compiled templates are immutable: tmpl_render may be called from many threads at once. */
#ifndef KAILASH_TEMPLATE_H
#define KAILASH_TEMPLATE_H

#include <jansson.h>
#include <stddef.h>

typedef struct tmpl tmpl;

/* What the compiler needs to check references at load. */
typedef struct tmpl_ctx {
    const char *const *env_allowed; /* names templates may read as env.NAME (config template_env) */
    size_t n_env_allowed;
    /* Called for every `nodes.<id>...` reference (may be NULL). Return non-zero to refuse the id
     * (the compiler then fails with "unknown node '<id>'"). */
    int (*on_node_ref)(void *ud, const char *node_id);
    void *ud;
} tmpl_ctx;

/* What an expression may read at run time. Every member is borrowed; any may be NULL (reads as null). */
typedef struct tmpl_scope {
    json_t *inputs; /* the run's inputs */
    json_t *params; /* this node's resolved inputs */
    json_t *nodes;  /* object: node id -> that node's output object */
    const char *run_id;
    const char *request_id;
    const char *principal_id;
    json_t *principal_roles;      /* array */
    json_t *principal_attributes; /* object */
    json_t *env;                  /* object: allowed env names -> string values */
} tmpl_scope;

/* True when s contains a `{{` ... `}}` expression. */
int tmpl_string_has_expr(const char *s);
/* True when v is a JSON string holding an expression: a config value only known at run time, which a
 * node's compile must not type-check. */
int tmpl_value_has_expr(json_t *v);

/* Compiles value (borrowed; not kept). On error returns -1 with a message such as
 * "unknown filter 'lowr'" or "env.SECRET is not listed in template_env" in err. */
int tmpl_compile(json_t *value, const tmpl_ctx *ctx, tmpl **out, char *err, size_t errlen);

/* True when the template holds no expression at all (rendering returns the stored constant). */
int tmpl_is_constant(const tmpl *t);

/* Renders t against scope. Returns a new reference (caller decrefs), or NULL with err filled when a
 * filter cannot apply (e.g. `int` of "abc"). A missing path is null, not an error. The top-level
 * container of the result is the caller's to change; anything nested inside it may be shared with the
 * template or the scope and must never be modified. */
json_t *tmpl_render(const tmpl *t, const tmpl_scope *scope, char *err, size_t errlen);

void tmpl_free(tmpl *t);

#endif
