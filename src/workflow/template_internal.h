/* template_internal: the compiled form of a template and what its four files share (private to
 * src/workflow). template.c holds the compiled form's life cycle and the text buffer;
 * template_compile.c builds the form, template_render.c walks it, template_filters.c is the filter
 * table. See template.c for the design. */
#ifndef KAILASH_WORKFLOW_TEMPLATE_INTERNAL_H
#define KAILASH_WORKFLOW_TEMPLATE_INTERNAL_H

#include <jansson.h>
#include <stddef.h>

#include "kailash/template.h"
#include "kailash/util.h"

typedef enum { TMPL_CONST, TMPL_OBJECT, TMPL_ARRAY, TMPL_EXPR, TMPL_CONCAT } tmpl_kind;

typedef enum {
    TMPL_ROOT_INPUTS,
    TMPL_ROOT_PARAMS,
    TMPL_ROOT_NODES, /* path starts with the node id */
    TMPL_ROOT_RUN_ID,
    TMPL_ROOT_REQUEST_ID,
    TMPL_ROOT_PRINCIPAL_ID,
    TMPL_ROOT_PRINCIPAL_ROLES,
    TMPL_ROOT_PRINCIPAL_ATTRIBUTES,
    TMPL_ROOT_ENV /* path is exactly the variable name */
} tmpl_root;

/* One path step: an object key, and when the key is all digits also the array index it names. */
typedef struct tmpl_seg {
    char *key; /* owned, NUL-terminated */
    size_t key_len;
    size_t index;
    int is_index;
} tmpl_seg;

/* A value during rendering: v is NULL for a missing path (read as null). held: this render owns one
 * reference to v and must release it; otherwise v is borrowed from the scope or the template. */
typedef struct tmpl_val {
    json_t *v;
    int held;
} tmpl_val;

struct tmpl_filter;
/* A filter rewrites *v in place; on failure it writes why (naming the filter and the value's type,
 * never the value) and returns -1. */
typedef int (*tmpl_filter_fn)(const struct tmpl_filter *f, tmpl_val *v, char *why, size_t whylen);

typedef struct tmpl_filter_def {
    const char *name;
    int n_args;
    tmpl_filter_fn fn;
} tmpl_filter_def;

typedef struct tmpl_filter {
    const tmpl_filter_def *def;
    json_t *arg; /* owned; the one argument of default(), else NULL */
} tmpl_filter;

typedef struct tmpl_expr {
    char *src; /* owned; the expression text, for messages */
    tmpl_root root;
    tmpl_seg *segs; /* owned */
    size_t n_segs, cap_segs;
    tmpl_filter *filters; /* owned */
    size_t n_filters, cap_filters;
} tmpl_expr;

/* A CONCAT piece: literal text (lit, lit_len) or, when expr is set, an expression. */
typedef struct tmpl_piece {
    char *lit;
    size_t lit_len;
    tmpl_expr *expr;
} tmpl_piece;

/* An OBJECT member (key set) or ARRAY element (key NULL). */
typedef struct tmpl_child {
    char *key;
    size_t key_len;
    tmpl *t;
} tmpl_child;

struct tmpl {
    tmpl_kind kind;
    union {
        json_t *constant; /* CONST: owned deep copy */
        tmpl_expr *expr;  /* EXPR */
        struct {
            tmpl_piece *items;
            size_t n, cap;
        } pieces; /* CONCAT */
        struct {
            tmpl_child *items;
            size_t n;
        } kids; /* OBJECT, ARRAY */
    } u;
};

/* The filter called name (len bytes), or NULL (template_filters.c). */
const tmpl_filter_def *tmpl_filter_find(const char *name, size_t len);

/* Frees an expression and all it owns (NULL is fine). */
void tmpl_expr_free(tmpl_expr *x);

/* ---- values during rendering ---- */

static inline void tmpl_val_release(tmpl_val *v)
{
    if (v->held)
        json_decref(v->v);
    v->v = NULL;
    v->held = 0;
}

/* v becomes a borrowed value (one the template or the scope keeps alive). */
static inline void tmpl_val_borrow(tmpl_val *v, json_t *j)
{
    tmpl_val_release(v);
    v->v = j;
}

/* v becomes j, a new reference (NULL: out of memory). */
static inline int tmpl_val_hold(tmpl_val *v, json_t *j, char *why, size_t whylen)
{
    if (!j)
        return util_err(why, whylen, "out of memory");
    tmpl_val_release(v);
    v->v = j;
    v->held = 1;
    return 0;
}

/* v becomes child, a value inside v: take a reference first when v itself is held (about to go). */
static inline void tmpl_val_child(tmpl_val *v, json_t *child)
{
    if (v->held) {
        json_incref(child);
        json_decref(v->v);
    }
    v->v = child;
}

/* ---- the text buffer (template.c) ---- */

/* A growable buffer that starts on the stack, so the common short text costs no allocation;
 * out-of-memory is sticky and checked once at the end, so writers need not test every append.
 * Never copy a tmpl_sb (data may point into small). */
typedef struct tmpl_sb {
    char *data;
    size_t len, cap;
    int oom;
    char small[256];
} tmpl_sb;

void tmpl_sb_init(tmpl_sb *b);
void tmpl_sb_free(tmpl_sb *b);
void tmpl_sb_put(tmpl_sb *b, const char *s, size_t n);
void tmpl_sb_putc(tmpl_sb *b, char c);
/* Compact JSON text of v (NULL writes null), keys in their order, reals in their shortest form: the
 * project's writer (buf_append_json_as with BUF_JSON_REAL_SHORTEST). */
void tmpl_put_json(tmpl_sb *b, json_t *v);
/* Text of v inside a larger string: strings as is, null as nothing, the rest as compact JSON. */
void tmpl_put_text(tmpl_sb *b, json_t *v);

#endif
