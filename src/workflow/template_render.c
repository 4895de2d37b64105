/* template_render: a compiled template plus a scope gives a JSON value (see template.c).
 *
 * Rendering never parses text: it walks precompiled path segments with json_object_getn /
 * json_array_get and calls filter functions. Values are borrowed from the scope or the template
 * wherever they can be, so a plain path allocates nothing; only the value handed to the caller is
 * json_incref'd. Thread-safe: the template and the scope are only read. */
#include <string.h>

#include "template_internal.h"

static json_t *tmpl_walk(json_t *cur, const tmpl_seg *segs, size_t n)
{
    for (size_t i = 0; cur && i < n; i++) {
        if (json_is_object(cur))
            cur = json_object_getn(cur, segs[i].key, segs[i].key_len);
        else if (json_is_array(cur) && segs[i].is_index)
            cur = json_array_get(cur, segs[i].index);
        else
            return NULL;
    }
    return cur;
}

static int tmpl_root_is_text(tmpl_root r)
{
    return r == TMPL_ROOT_RUN_ID || r == TMPL_ROOT_REQUEST_ID || r == TMPL_ROOT_PRINCIPAL_ID;
}

/* The C string behind run.id, run.request_id or principal.id (NULL reads as null). */
static const char *tmpl_root_text(tmpl_root r, const tmpl_scope *s)
{
    if (r == TMPL_ROOT_RUN_ID)
        return s->run_id;
    if (r == TMPL_ROOT_REQUEST_ID)
        return s->request_id;
    return s->principal_id;
}

static json_t *tmpl_root_json(tmpl_root r, const tmpl_scope *s)
{
    switch (r) {
    case TMPL_ROOT_INPUTS:
        return s->inputs;
    case TMPL_ROOT_PARAMS:
        return s->params;
    case TMPL_ROOT_NODES:
        return s->nodes;
    case TMPL_ROOT_PRINCIPAL_ROLES:
        return s->principal_roles;
    case TMPL_ROOT_PRINCIPAL_ATTRIBUTES:
        return s->principal_attributes;
    case TMPL_ROOT_ENV:
        return s->env;
    default:
        return NULL;
    }
}

/* Evaluates x into *v (released by the caller). On error fills err, prefixed by the expression. */
static int tmpl_eval(const tmpl_expr *x, const tmpl_scope *s, tmpl_val *v, char *err, size_t errlen)
{
    char why[200];
    v->v = NULL;
    v->held = 0;
    if (tmpl_root_is_text(x->root)) {
        const char *text = tmpl_root_text(x->root, s);
        if (text && tmpl_val_hold(v, json_string(text), why, sizeof why) != 0)
            return util_err(err, errlen, "{{ %s }}: not valid UTF-8 (or out of memory)", x->src);
    } else {
        v->v = tmpl_walk(tmpl_root_json(x->root, s), x->segs, x->n_segs);
    }
    for (size_t i = 0; i < x->n_filters; i++) {
        const tmpl_filter *f = &x->filters[i];
        if (f->def->fn(f, v, why, sizeof why) != 0) {
            tmpl_val_release(v);
            return util_err(err, errlen, "{{ %s }}: %s", x->src, why);
        }
    }
    return 0;
}

static json_t *tmpl_render_expr(const tmpl_expr *x, const tmpl_scope *s, char *err, size_t errlen)
{
    tmpl_val v;
    if (tmpl_eval(x, s, &v, err, errlen) != 0)
        return NULL;
    if (!v.v)
        return json_null();
    return v.held ? v.v : json_incref(v.v);
}

static json_t *tmpl_render_concat(const tmpl *t, const tmpl_scope *s, char *err, size_t errlen)
{
    tmpl_sb b;
    tmpl_sb_init(&b);
    for (size_t i = 0; i < t->u.pieces.n; i++) {
        const tmpl_piece *p = &t->u.pieces.items[i];
        if (!p->expr) {
            tmpl_sb_put(&b, p->lit, p->lit_len);
        } else if (tmpl_root_is_text(p->expr->root) && p->expr->n_filters == 0) {
            /* run.id and friends need no json_t when nothing filters them */
            const char *text = tmpl_root_text(p->expr->root, s);
            if (text)
                tmpl_sb_put(&b, text, strlen(text));
        } else {
            tmpl_val v;
            if (tmpl_eval(p->expr, s, &v, err, errlen) != 0) {
                tmpl_sb_free(&b);
                return NULL;
            }
            tmpl_put_text(&b, v.v);
            tmpl_val_release(&v);
        }
    }
    json_t *out = b.oom ? NULL : json_stringn(b.data, b.len);
    if (!out)
        util_err(err, errlen, b.oom ? "out of memory" : "rendered text is not valid UTF-8");
    tmpl_sb_free(&b);
    return out;
}

static json_t *tmpl_render_node(const tmpl *t, const tmpl_scope *s, char *err, size_t errlen);

static json_t *tmpl_render_kids(const tmpl *t, const tmpl_scope *s, char *err, size_t errlen)
{
    json_t *out = t->kind == TMPL_OBJECT ? json_object() : json_array();
    if (!out)
        goto oom;
    for (size_t i = 0; i < t->u.kids.n; i++) {
        const tmpl_child *c = &t->u.kids.items[i];
        json_t *v = tmpl_render_node(c->t, s, err, errlen);
        if (!v) {
            json_decref(out);
            return NULL;
        }
        /* keys come from a parsed JSON object, so they are valid UTF-8 */
        int rc = c->key ? json_object_setn_new_nocheck(out, c->key, c->key_len, v) : json_array_append_new(out, v);
        if (rc != 0)
            goto oom;
    }
    return out;
oom:
    json_decref(out);
    util_err(err, errlen, "out of memory");
    return NULL;
}

static json_t *tmpl_render_node(const tmpl *t, const tmpl_scope *s, char *err, size_t errlen)
{
    switch (t->kind) {
    case TMPL_CONST:
        return json_incref(t->u.constant);
    case TMPL_EXPR:
        return tmpl_render_expr(t->u.expr, s, err, errlen);
    case TMPL_CONCAT:
        return tmpl_render_concat(t, s, err, errlen);
    case TMPL_OBJECT:
    case TMPL_ARRAY:
        return tmpl_render_kids(t, s, err, errlen);
    }
    return NULL;
}

json_t *tmpl_render(const tmpl *t, const tmpl_scope *scope, char *err, size_t errlen)
{
    static const tmpl_scope empty;
    if (!t) {
        util_err(err, errlen, "no template");
        return NULL;
    }
    json_t *out = tmpl_render_node(t, scope ? scope : &empty, err, errlen);
    if (!out || t->kind == TMPL_OBJECT || t->kind == TMPL_ARRAY)
        return out;
    if (json_is_object(out) || json_is_array(out)) {
        /* A constant or a scope value: give the caller its own top-level container (a shallow
         * copy) so that adding keys to it can never touch the template or the run's data. */
        json_t *own = json_copy(out);
        json_decref(out);
        if (!own)
            util_err(err, errlen, "out of memory");
        return own;
    }
    return out;
}
