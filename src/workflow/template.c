/* template: compiler and renderer for the `{{ expression | filter }}` language (WORKFLOWS.md).
 *
 * Four files along the seams: this one (the compiled form's life cycle and the text buffer the
 * others write into), template_compile.c (text to compiled form), template_render.c (compiled form
 * plus scope to JSON) and template_filters.c (the filter table); template_internal.h holds the
 * compiled form they share.
 *
 * tmpl_compile turns a JSON value into a tree that mirrors it, with four kinds of node:
 *   CONST           a subtree holding no expression: a private deep copy, rendered as json_incref;
 *   OBJECT / ARRAY  a container with at least one non-constant child, rendered into a new container;
 *   EXPR            a string that is exactly one `{{ }}`: renders to the expression's value, type kept;
 *   CONCAT          any other string with expressions: literal pieces and expressions, stringified.
 * An expression is parsed once into a root (an enum), a path of precompiled segments (key bytes, plus
 * the array index when the segment is numeric) and a list of filters (a function from the table in
 * template_filters.c plus its decoded argument). Rendering never parses text: it walks segments with
 * json_object_getn / json_array_get and calls filter functions.
 *
 * Values flow through filters as tmpl_val: a json_t that is either borrowed (from the scope or the
 * template) or held (a reference this render took, e.g. a string a filter made). Borrowing keeps the
 * common case - a path with no filter, or one that passes values through - free of allocation and of
 * atomic reference-count traffic; only the final value handed to the caller is json_incref'd.
 *
 * Stringification (concatenation and the `string`, `json` and `url` filters) uses the project's
 * compact JSON writer (src/util/json_write.c) rather than json_dumps: reals come out shortest
 * round-trip everywhere ("0.1", "1.5", "2.0"), and the writer only reads values. Text is gathered in
 * a buffer that starts on the stack, so a string made of strings allocates nothing but the result.
 *
 * Null: a missing path is null. Filters pass null through (so `| default(x)` may come last) except
 * default (replaces it), json ("null"), string (""), bool (false) and length (0).
 *
 * Threads: a compiled template is never modified after tmpl_compile, and rendering only reads the
 * template and the scope, so any number of threads may render one template at once (jansson's
 * reference counts are atomic). A rendered value may share subtrees with the template (constants,
 * default() arguments) and with the scope, so callers must not modify what is inside it; the
 * top-level object or array itself is always a new container the caller may add keys to. */
#include <stdlib.h>
#include <string.h>

#include "template_internal.h"

/* ---- freeing ---------------------------------------------------------------------------------- */

void tmpl_expr_free(tmpl_expr *x)
{
    if (!x)
        return;
    for (size_t i = 0; i < x->n_segs; i++)
        free(x->segs[i].key);
    for (size_t i = 0; i < x->n_filters; i++)
        json_decref(x->filters[i].arg);
    free(x->segs);
    free(x->filters);
    free(x->src);
    free(x);
}

static void tmpl_pieces_free(tmpl_piece *items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(items[i].lit);
        tmpl_expr_free(items[i].expr);
    }
    free(items);
}

static void tmpl_kids_free(tmpl_child *items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(items[i].key);
        tmpl_free(items[i].t);
    }
    free(items);
}

void tmpl_free(tmpl *t)
{
    if (!t)
        return;
    switch (t->kind) {
    case TMPL_CONST:
        json_decref(t->u.constant);
        break;
    case TMPL_EXPR:
        tmpl_expr_free(t->u.expr);
        break;
    case TMPL_CONCAT:
        tmpl_pieces_free(t->u.pieces.items, t->u.pieces.n);
        break;
    case TMPL_OBJECT:
    case TMPL_ARRAY:
        tmpl_kids_free(t->u.kids.items, t->u.kids.n);
        break;
    }
    free(t);
}

int tmpl_is_constant(const tmpl *t)
{
    return t && t->kind == TMPL_CONST;
}

int tmpl_string_has_expr(const char *s)
{
    const char *open = s ? strstr(s, "{{") : NULL;
    return open && strstr(open + 2, "}}") != NULL;
}

int tmpl_value_has_expr(json_t *v)
{
    return json_is_string(v) && tmpl_string_has_expr(json_string_value(v));
}

/* ---- the text buffer ------------------------------------------------------------------------- */

void tmpl_sb_init(tmpl_sb *b)
{
    b->data = b->small;
    b->len = 0;
    b->cap = sizeof b->small;
    b->oom = 0;
}

void tmpl_sb_free(tmpl_sb *b)
{
    if (b->data != b->small)
        free(b->data);
}

void tmpl_sb_put(tmpl_sb *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (n > b->cap - b->len) {
        size_t cap = b->cap * 2;
        while (cap - b->len < n)
            cap *= 2;
        char *d = b->data == b->small ? malloc(cap) : realloc(b->data, cap);
        if (!d) {
            b->oom = 1;
            return;
        }
        if (b->data == b->small)
            memcpy(d, b->small, b->len);
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
}

void tmpl_sb_putc(tmpl_sb *b, char c)
{
    tmpl_sb_put(b, &c, 1);
}

/* The writer grows a heap buf, so JSON text passes through one. A number, boolean or null is at
 * most 48 bytes: its buf starts in a stack array large enough that the writer never grows it (a
 * path like "/orders/{{ inputs.id }}" then allocates nothing more than it did). Strings, the usual
 * piece of a larger string, never come here (tmpl_put_text). */
void tmpl_put_json(tmpl_sb *b, json_t *v)
{
    if (b->oom)
        return;
    if (!v) {
        tmpl_sb_put(b, "null", 4);
        return;
    }
    if (json_is_number(v) || json_is_boolean(v) || json_is_null(v)) {
        char tmp[64];
        buf small = {tmp, 0, sizeof tmp}; /* never freed: buf_reserve only reallocs past cap */
        if (buf_append_json_as(&small, v, BUF_JSON_REAL_SHORTEST) != 0)
            b->oom = 1;
        else
            tmpl_sb_put(b, tmp, small.len);
        return;
    }
    buf j = {0};
    if (buf_append_json_as(&j, v, BUF_JSON_REAL_SHORTEST) != 0)
        b->oom = 1; /* out of memory, or nested past the writer's 4096 levels */
    else
        tmpl_sb_put(b, j.data, j.len);
    buf_free(&j);
}

void tmpl_put_text(tmpl_sb *b, json_t *v)
{
    if (!v || json_is_null(v))
        return;
    if (json_is_string(v))
        tmpl_sb_put(b, json_string_value(v), json_string_length(v));
    else
        tmpl_put_json(b, v);
}
