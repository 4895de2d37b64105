/* template_compile: JSON value to compiled template (see template.c for the form).
 *
 * Every string holding `{{` is split into literal pieces and expressions; an expression is parsed
 * once into a root, a path of segments and a list of filters with decoded arguments, and checked
 * against the context (known node ids, allowed env names). Arrays of segments, filters and pieces
 * grow by doubling: a template is operator input and may be long. Messages name where in the value
 * the problem is ("a.b[2]: unknown filter 'lowr' in '{{ ... }}'"). */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "template_internal.h"

/* ---- compiling: expressions ------------------------------------------------------------------- */

/* Compile state: the context and where in the value we are, for messages ("a.b[2]: ..."). */
typedef struct tmpl_cc {
    const tmpl_ctx *ctx;
    char path[256];
    char *err;
    size_t errlen;
} tmpl_cc;

__attribute__((format(printf, 2, 3))) static int tmpl_cc_fail(tmpl_cc *cc, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (cc->path[0])
        return util_err(cc->err, cc->errlen, "%s: %s", cc->path, msg);
    return util_err(cc->err, cc->errlen, "%s", msg);
}

static const char *tmpl_skip_ws(const char *p, const char *e)
{
    while (p < e && isspace((unsigned char)*p))
        p++;
    return p;
}

/* Path segment names: letters, digits, '_', '-', '$' and any non-ASCII (UTF-8) byte. */
static size_t tmpl_name_len(const char *p, const char *e)
{
    const char *q = p;
    while (q < e && (isalnum((unsigned char)*q) || *q == '_' || *q == '-' || *q == '$' || (unsigned char)*q >= 0x80))
        q++;
    return (size_t)(q - p);
}

/* Index of the `}}` closing an expression that starts at from, skipping quoted text and brackets
 * (so `default('}}')` and `default({})` work); -1 when there is none. */
static long tmpl_find_close(const char *s, size_t from, size_t len)
{
    char quote = 0;
    int depth = 0;
    for (size_t i = from; i < len; i++) {
        char c = s[i];
        if (quote) {
            if (c == '\\')
                i++;
            else if (c == quote)
                quote = 0;
        } else if (c == '"' || c == '\'') {
            quote = c;
        } else if (c == '}' && depth == 0 && i + 1 < len && s[i + 1] == '}') {
            return (long)i;
        } else if (c == '(' || c == '[' || c == '{') {
            depth++;
        } else if ((c == ')' || c == ']' || c == '}') && depth > 0) {
            depth--;
        }
    }
    return -1;
}

/* End of a quoted run starting at p (the quote), or NULL when it is not closed. */
static const char *tmpl_skip_quoted(const char *p, const char *e)
{
    char quote = *p++;
    for (; p < e; p++) {
        if (*p == '\\')
            p++;
        else if (*p == quote)
            return p + 1;
    }
    return NULL;
}

static int tmpl_seg_add(tmpl_cc *cc, tmpl_expr *x, const char *key, size_t n, int may_index)
{
    /* capacity doubles: growing by one element made a long path quadratic (realloc copies) */
    tmpl_seg *segs = util_grow_zeroed(x->segs, &x->cap_segs, sizeof *segs, x->n_segs, 4);
    if (!segs)
        return tmpl_cc_fail(cc, "out of memory");
    x->segs = segs;
    tmpl_seg *g = &segs[x->n_segs];
    if (!(g->key = strndup(key, n)))
        return tmpl_cc_fail(cc, "out of memory");
    x->n_segs++;
    g->key_len = n;
    g->is_index = may_index && n > 0 && n <= 18 && strspn(key, "0123456789") >= n;
    for (size_t i = 0; g->is_index && i < n; i++)
        g->index = g->index * 10 + (size_t)(key[i] - '0');
    return 0;
}

/* `["key"]` or `['key']`: the quoted text as a key (JSON escapes allowed in double quotes). */
static int tmpl_seg_add_quoted(tmpl_cc *cc, tmpl_expr *x, const char *q, const char *qe)
{
    json_t *key = NULL;
    if (*q == '"') {
        key = json_loadb(q, (size_t)(qe - q), JSON_DECODE_ANY, NULL);
    } else {
        key = json_stringn(q + 1, (size_t)(qe - q - 2));
    }
    if (!json_is_string(key)) {
        json_decref(key);
        return tmpl_cc_fail(cc, "bad quoted key in '{{ %s }}'", x->src);
    }
    int rc = tmpl_seg_add(cc, x, json_string_value(key), json_string_length(key), 0);
    json_decref(key);
    return rc;
}

/* Segments after the root: `.name`, `[digits]`, `["key"]`. */
static int tmpl_parse_path(tmpl_cc *cc, tmpl_expr *x, const char **pp, const char *e)
{
    const char *p = *pp;
    while (p < e && (*p == '.' || *p == '[')) {
        if (*p == '.') {
            size_t n = tmpl_name_len(p + 1, e);
            if (n == 0)
                return tmpl_cc_fail(cc, "expected a name after '.' in '{{ %s }}'", x->src);
            if (tmpl_seg_add(cc, x, p + 1, n, 1) != 0)
                return -1;
            p += 1 + n;
            continue;
        }
        const char *q = p + 1, *qe;
        if (q < e && (*q == '"' || *q == '\'')) {
            if (!(qe = tmpl_skip_quoted(q, e)) || qe >= e || *qe != ']')
                return tmpl_cc_fail(cc, "unterminated '[' in '{{ %s }}'", x->src);
            if (tmpl_seg_add_quoted(cc, x, q, qe) != 0)
                return -1;
        } else {
            for (qe = q; qe < e && *qe >= '0' && *qe <= '9';)
                qe++;
            if (qe == q || qe >= e || *qe != ']')
                return tmpl_cc_fail(cc, "expected [<number>] or [\"key\"] in '{{ %s }}'", x->src);
            if (tmpl_seg_add(cc, x, q, (size_t)(qe - q), 1) != 0)
                return -1;
        }
        p = qe + 1;
    }
    *pp = p;
    return 0;
}

static void tmpl_seg_shift(tmpl_expr *x)
{
    free(x->segs[0].key);
    memmove(x->segs, x->segs + 1, (x->n_segs - 1) * sizeof *x->segs);
    x->n_segs--;
}

static int tmpl_env_allowed(const tmpl_ctx *ctx, const char *name)
{
    for (size_t i = 0; i < ctx->n_env_allowed; i++)
        if (ctx->env_allowed[i] && strcmp(ctx->env_allowed[i], name) == 0)
            return 1;
    return 0;
}

static int tmpl_bind_principal(tmpl_cc *cc, tmpl_expr *x)
{
    const char *f = x->n_segs ? x->segs[0].key : "";
    if (strcmp(f, "id") == 0 && x->n_segs == 1)
        x->root = TMPL_ROOT_PRINCIPAL_ID;
    else if (strcmp(f, "roles") == 0)
        x->root = TMPL_ROOT_PRINCIPAL_ROLES;
    else if (strcmp(f, "attributes") == 0)
        x->root = TMPL_ROOT_PRINCIPAL_ATTRIBUTES;
    else
        return tmpl_cc_fail(cc,
                            "'{{ %s }}': principal has only principal.id, principal.roles "
                            "and principal.attributes",
                            x->src);
    tmpl_seg_shift(x);
    return 0;
}

/* Turns the root name plus parsed segments into a root, checking what the context allows. */
static int tmpl_bind_root(tmpl_cc *cc, tmpl_expr *x, const char *name, size_t n)
{
#define TMPL_IS(lit) (n == sizeof lit - 1 && memcmp(name, lit, n) == 0)
    const char *first = x->n_segs ? x->segs[0].key : "";
    if (TMPL_IS("inputs")) {
        x->root = TMPL_ROOT_INPUTS;
    } else if (TMPL_IS("params")) {
        x->root = TMPL_ROOT_PARAMS;
    } else if (TMPL_IS("nodes")) {
        x->root = TMPL_ROOT_NODES;
        if (x->n_segs == 0)
            return tmpl_cc_fail(cc, "'{{ %s }}': expected nodes.<id>...", x->src);
        if (cc->ctx->on_node_ref && cc->ctx->on_node_ref(cc->ctx->ud, first) != 0)
            return tmpl_cc_fail(cc, "unknown node '%s' in '{{ %s }}'", first, x->src);
    } else if (TMPL_IS("run")) {
        if (x->n_segs != 1 || (strcmp(first, "id") != 0 && strcmp(first, "request_id") != 0))
            return tmpl_cc_fail(cc, "'{{ %s }}': run has only run.id and run.request_id", x->src);
        x->root = strcmp(first, "id") == 0 ? TMPL_ROOT_RUN_ID : TMPL_ROOT_REQUEST_ID;
        tmpl_seg_shift(x);
    } else if (TMPL_IS("principal")) {
        return tmpl_bind_principal(cc, x);
    } else if (TMPL_IS("env")) {
        x->root = TMPL_ROOT_ENV;
        if (x->n_segs != 1)
            return tmpl_cc_fail(cc, "'{{ %s }}': expected env.NAME", x->src);
        if (!tmpl_env_allowed(cc->ctx, first))
            return tmpl_cc_fail(cc, "env.%s is not listed in template_env", first);
    } else {
        return tmpl_cc_fail(cc,
                            "unknown root '%.*s' in '{{ %s }}' (expected inputs, params, nodes, "
                            "run, principal or env)",
                            (int)n, name, x->src);
    }
    return 0;
#undef TMPL_IS
}

/* A filter argument: a JSON literal, or a 'single-quoted' string (\' escapes a quote). */
static json_t *tmpl_decode_literal(const char *a, size_t n)
{
    if (n == 0 || *a != '\'')
        return json_loadb(a, n, JSON_DECODE_ANY, NULL);
    tmpl_sb b;
    tmpl_sb_init(&b);
    tmpl_sb_putc(&b, '"');
    size_t end = n;
    while (end > 1 && isspace((unsigned char)a[end - 1]))
        end--;
    for (size_t i = 1; i + 1 < end; i++) {
        if (a[i] == '\\' && a[i + 1] == '\'') {
            tmpl_sb_putc(&b, '\'');
            i++;
        } else if (a[i] == '\\' && i + 2 < end) {
            tmpl_sb_put(&b, a + i, 2);
            i++;
        } else if (a[i] == '"') {
            tmpl_sb_put(&b, "\\\"", 2);
        } else {
            tmpl_sb_putc(&b, a[i]);
        }
    }
    tmpl_sb_putc(&b, '"');
    json_t *v = b.oom || end < 2 || a[end - 1] != '\'' ? NULL : json_loadb(b.data, b.len, JSON_DECODE_ANY, NULL);
    tmpl_sb_free(&b);
    return v;
}

/* End of one argument starting at p: a quoted string, or text up to a ',' or ')' outside quotes
 * and brackets. NULL when a quote is not closed. */
static const char *tmpl_scan_arg(const char *p, const char *e)
{
    if (p < e && (*p == '"' || *p == '\''))
        return tmpl_skip_quoted(p, e);
    int depth = 0;
    while (p < e) {
        if (*p == '"' || *p == '\'') {
            if (!(p = tmpl_skip_quoted(p, e)))
                return NULL;
            continue;
        }
        if (depth == 0 && (*p == ',' || *p == ')'))
            break;
        if (*p == '[' || *p == '{')
            depth++;
        else if ((*p == ']' || *p == '}') && depth > 0)
            depth--;
        p++;
    }
    return p;
}

/* `(arg, ...)` after a filter name; keeps the first argument in f->arg and counts them all. */
static int tmpl_parse_args(tmpl_cc *cc, tmpl_expr *x, tmpl_filter *f, const char **pp, const char *e, int *count)
{
    const char *p = tmpl_skip_ws(*pp + 1, e);
    *count = 0;
    if (p < e && *p == ')') {
        *pp = p + 1;
        return 0;
    }
    for (;;) {
        const char *a = p;
        if (!(p = tmpl_scan_arg(a, e)))
            return tmpl_cc_fail(cc, "unterminated quote in '{{ %s }}'", x->src);
        json_t *v = tmpl_decode_literal(a, (size_t)(p - a));
        if (!v)
            return tmpl_cc_fail(cc,
                                "filter '%s': argument %d is not a JSON literal (a number, "
                                "\"string\", 'string', true, false or null) in '{{ %s }}'",
                                f->def->name, *count + 1, x->src);
        if (*count == 0)
            f->arg = v;
        else
            json_decref(v);
        ++*count;
        p = tmpl_skip_ws(p, e);
        if (p < e && *p == ',') {
            p = tmpl_skip_ws(p + 1, e);
            continue;
        }
        if (p < e && *p == ')')
            break;
        return tmpl_cc_fail(cc, "filter '%s': expected ',' or ')' in '{{ %s }}'", f->def->name, x->src);
    }
    *pp = p + 1;
    return 0;
}

static int tmpl_parse_filter(tmpl_cc *cc, tmpl_expr *x, const char **pp, const char *e)
{
    const char *p = *pp;
    size_t n = tmpl_name_len(p, e);
    if (n == 0)
        return tmpl_cc_fail(cc, "expected a filter name after '|' in '{{ %s }}'", x->src);
    const tmpl_filter_def *def = tmpl_filter_find(p, n);
    if (!def)
        return tmpl_cc_fail(cc, "unknown filter '%.*s' in '{{ %s }}'", (int)n, p, x->src);
    /* capacity doubles: growing by one made 100,000 filters take a minute under ASan */
    tmpl_filter *fs = util_grow_zeroed(x->filters, &x->cap_filters, sizeof *fs, x->n_filters, 4);
    if (!fs)
        return tmpl_cc_fail(cc, "out of memory");
    x->filters = fs;
    tmpl_filter *f = &fs[x->n_filters++];
    f->def = def;
    f->arg = NULL;
    p = tmpl_skip_ws(p + n, e);
    int count = 0;
    if (p < e && *p == '(' && tmpl_parse_args(cc, x, f, &p, e, &count) != 0)
        return -1;
    if (count != def->n_args)
        return tmpl_cc_fail(cc, "filter '%s' takes %d argument%s, got %d, in '{{ %s }}'", def->name, def->n_args,
                            def->n_args == 1 ? "" : "s", count, x->src);
    *pp = p;
    return 0;
}

/* Parses the text between `{{` and `}}`: root, path, then `| filter` steps. */
static tmpl_expr *tmpl_parse_expr(tmpl_cc *cc, const char *s, size_t n)
{
    const char *p = tmpl_skip_ws(s, s + n), *e = s + n;
    while (e > p && isspace((unsigned char)e[-1]))
        e--;
    if (p == e) {
        tmpl_cc_fail(cc, "empty expression '{{ }}'");
        return NULL;
    }
    tmpl_expr *x = calloc(1, sizeof *x);
    if (!x || !(x->src = strndup(p, (size_t)(e - p)))) {
        free(x);
        tmpl_cc_fail(cc, "out of memory");
        return NULL;
    }
    const char *root = p;
    size_t root_len = tmpl_name_len(p, e);
    p += root_len;
    if (root_len == 0) {
        tmpl_cc_fail(cc, "'{{ %s }}': expected a path such as inputs.name", x->src);
        goto fail;
    }
    if (tmpl_parse_path(cc, x, &p, e) != 0 || tmpl_bind_root(cc, x, root, root_len) != 0)
        goto fail;
    for (p = tmpl_skip_ws(p, e); p < e && *p == '|'; p = tmpl_skip_ws(p, e)) {
        p = tmpl_skip_ws(p + 1, e);
        if (tmpl_parse_filter(cc, x, &p, e) != 0)
            goto fail;
    }
    if (p < e) {
        tmpl_cc_fail(cc, "unexpected '%.*s' in '{{ %s }}'", (int)(e - p > 16 ? 16 : e - p), p, x->src);
        goto fail;
    }
    return x;
fail:
    tmpl_expr_free(x);
    return NULL;
}

/* ---- compiling: values ------------------------------------------------------------------------ */

static tmpl *tmpl_new(tmpl_cc *cc, tmpl_kind kind)
{
    tmpl *t = calloc(1, sizeof *t);
    if (!t)
        tmpl_cc_fail(cc, "out of memory");
    else
        t->kind = kind;
    return t;
}

/* A constant node owns a deep copy: value is only borrowed, and the caller may change it later. */
static tmpl *tmpl_new_const(tmpl_cc *cc, json_t *value)
{
    tmpl *t = tmpl_new(cc, TMPL_CONST);
    if (t && !(t->u.constant = json_deep_copy(value))) {
        free(t);
        tmpl_cc_fail(cc, "out of memory");
        return NULL;
    }
    return t;
}

static int tmpl_piece_add(tmpl_cc *cc, tmpl *t, const char *lit, size_t n, tmpl_expr *x)
{
    tmpl_piece *ps = util_grow_zeroed(t->u.pieces.items, &t->u.pieces.cap, sizeof *ps, t->u.pieces.n, 4);
    if (!ps) { /* capacity doubles, as for segments and filters */
        tmpl_expr_free(x);
        return tmpl_cc_fail(cc, "out of memory");
    }
    t->u.pieces.items = ps;
    tmpl_piece *p = &ps[t->u.pieces.n];
    p->expr = x;
    p->lit_len = n;
    p->lit = NULL;
    if (lit && !(p->lit = malloc(n ? n : 1)))
        return tmpl_cc_fail(cc, "out of memory");
    if (lit)
        memcpy(p->lit, lit, n);
    t->u.pieces.n++;
    return 0;
}

/* A string with at least one `{{`: split into literal pieces and expressions. */
static tmpl *tmpl_compile_string(tmpl_cc *cc, const char *s, size_t len)
{
    tmpl *t = tmpl_new(cc, TMPL_CONCAT);
    size_t pos = 0;
    if (!t)
        return NULL;
    while (pos < len) {
        const char *open = memmem(s + pos, len - pos, "{{", 2);
        size_t start = open ? (size_t)(open - s) : len;
        if (start > pos && tmpl_piece_add(cc, t, s + pos, start - pos, NULL) != 0)
            goto fail;
        if (!open)
            break;
        long close = tmpl_find_close(s, start + 2, len);
        if (close < 0) {
            tmpl_cc_fail(cc, "unterminated '{{' (no '}}' after it, or an unclosed quote or bracket "
                             "inside)");
            goto fail;
        }
        tmpl_expr *x = tmpl_parse_expr(cc, s + start + 2, (size_t)close - start - 2);
        if (!x || tmpl_piece_add(cc, t, NULL, 0, x) != 0)
            goto fail;
        pos = (size_t)close + 2;
    }
    if (t->u.pieces.n == 1 && t->u.pieces.items[0].expr) {
        /* exactly one expression: keep the value's type */
        tmpl_expr *x = t->u.pieces.items[0].expr;
        free(t->u.pieces.items);
        t->kind = TMPL_EXPR;
        t->u.expr = x;
    }
    return t;
fail:
    tmpl_free(t);
    return NULL;
}

static tmpl *tmpl_compile_node(tmpl_cc *cc, json_t *value);

/* Extends cc->path with ".key" or "[i]" for messages; returns the old length to restore. */
static size_t tmpl_cc_push(tmpl_cc *cc, const char *key, size_t i)
{
    size_t old = strlen(cc->path), room = sizeof cc->path - old;
    if (key)
        snprintf(cc->path + old, room, "%s%s", old ? "." : "", key);
    else
        snprintf(cc->path + old, room, "[%zu]", i);
    return old;
}

/* Objects and arrays: compile every child; when all are constant the subtree is one constant. */
static tmpl *tmpl_compile_kids(tmpl_cc *cc, json_t *value)
{
    int is_obj = json_is_object(value), all_const = 1;
    size_t n = is_obj ? json_object_size(value) : json_array_size(value);
    void *it = is_obj ? json_object_iter(value) : NULL;
    tmpl *t = tmpl_new(cc, is_obj ? TMPL_OBJECT : TMPL_ARRAY);
    if (!t)
        return NULL;
    if (n && !(t->u.kids.items = calloc(n, sizeof *t->u.kids.items)))
        goto oom;
    for (size_t k = 0; k < n; k++) {
        tmpl_child *c = &t->u.kids.items[k];
        json_t *item = is_obj ? json_object_iter_value(it) : json_array_get(value, k);
        t->u.kids.n = k + 1; /* from here tmpl_free releases this child */
        if (is_obj) {
            c->key_len = json_object_iter_key_len(it);
            if (!(c->key = malloc(c->key_len + 1)))
                goto oom;
            memcpy(c->key, json_object_iter_key(it), c->key_len + 1);
            it = json_object_iter_next(value, it);
        }
        size_t mark = tmpl_cc_push(cc, c->key, k);
        c->t = tmpl_compile_node(cc, item);
        cc->path[mark] = '\0';
        if (!c->t)
            goto fail;
        all_const &= c->t->kind == TMPL_CONST;
    }
    if (!all_const)
        return t;
    tmpl_free(t);
    return tmpl_new_const(cc, value);
oom:
    tmpl_cc_fail(cc, "out of memory");
fail:
    tmpl_free(t);
    return NULL;
}

static tmpl *tmpl_compile_node(tmpl_cc *cc, json_t *value)
{
    if (json_is_object(value) || json_is_array(value))
        return tmpl_compile_kids(cc, value);
    if (json_is_string(value)) {
        const char *s = json_string_value(value);
        size_t n = json_string_length(value);
        if (memmem(s, n, "{{", 2))
            return tmpl_compile_string(cc, s, n);
    }
    return tmpl_new_const(cc, value);
}

int tmpl_compile(json_t *value, const tmpl_ctx *ctx, tmpl **out, char *err, size_t errlen)
{
    static const tmpl_ctx no_ctx;
    tmpl_cc cc = {.ctx = ctx ? ctx : &no_ctx, .err = err, .errlen = errlen};
    *out = NULL;
    if (!value)
        return util_err(err, errlen, "no value to compile");
    tmpl *t = tmpl_compile_node(&cc, value);
    if (!t)
        return -1;
    *out = t;
    return 0;
}
