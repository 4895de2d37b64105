/* template: compiler and renderer for the `{{ expression | filter }}` language (WORKFLOWS.md).
 *
 * tmpl_compile turns a JSON value into a tree that mirrors it, with four kinds of node:
 *   CONST           a subtree holding no expression: a private deep copy, rendered as json_incref;
 *   OBJECT / ARRAY  a container with at least one non-constant child, rendered into a new container;
 *   EXPR            a string that is exactly one `{{ }}`: renders to the expression's value, type kept;
 *   CONCAT          any other string with expressions: literal pieces and expressions, stringified.
 * An expression is parsed once into a root (an enum), a path of precompiled segments (key bytes, plus
 * the array index when the segment is numeric) and a list of filters (a function from the table at
 * the bottom plus its decoded argument). Rendering never parses text: it walks segments with
 * json_object_getn / json_array_get and calls filter functions.
 *
 * Values flow through filters as tmpl_val: a json_t that is either borrowed (from the scope or the
 * template) or held (a reference this render took, e.g. a string a filter made). Borrowing keeps the
 * common case - a path with no filter, or one that passes values through - free of allocation and of
 * atomic reference-count traffic; only the final value handed to the caller is json_incref'd.
 *
 * Stringification (concatenation and the `string`, `json` and `url` filters) uses the small compact
 * JSON writer below rather than json_dumps: reals come out shortest round-trip everywhere ("0.1",
 * "1.5", "2.0"), short output stays in a stack buffer, and the writer only reads values.
 *
 * Null: a missing path is null. Filters pass null through (so `| default(x)` may come last) except
 * default (replaces it), json ("null"), string (""), bool (false) and length (0).
 *
 * Threads: a compiled template is never modified after tmpl_compile, and rendering only reads the
 * template and the scope, so any number of threads may render one template at once (jansson's
 * reference counts are atomic). A rendered value may share subtrees with the template (constants,
 * default() arguments) and with the scope, so callers must not modify what is inside it; the
 * top-level object or array itself is always a new container the caller may add keys to. */
#include "kailash/template.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kailash/util.h"

/* ---- compiled form ---------------------------------------------------------------------------- */

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

static const tmpl_filter_def *tmpl_filter_find(const char *name, size_t len);

/* ---- freeing ---------------------------------------------------------------------------------- */

static void tmpl_expr_free(tmpl_expr *x)
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

/* ---- output buffer and compact JSON writer ---------------------------------------------------- */

/* A growable buffer that starts on the stack; out-of-memory is sticky and checked once at the end,
 * so writers need not test every append. Never copy a tmpl_sb (data may point into small). */
typedef struct tmpl_sb {
    char *data;
    size_t len, cap;
    int oom;
    char small[256];
} tmpl_sb;

static void tmpl_sb_init(tmpl_sb *b)
{
    b->data = b->small;
    b->len = 0;
    b->cap = sizeof b->small;
    b->oom = 0;
}

static void tmpl_sb_free(tmpl_sb *b)
{
    if (b->data != b->small)
        free(b->data);
}

static void tmpl_sb_put(tmpl_sb *b, const char *s, size_t n)
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

static void tmpl_sb_putc(tmpl_sb *b, char c)
{
    tmpl_sb_put(b, &c, 1);
}

/* Shortest "%.Ng" that reads back as d; a real always shows it is one ("2.0", as JSON writers do). */
static size_t tmpl_fmt_real(double d, char *t, size_t tlen)
{
    int n = 0;
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(t, tlen, "%.*g", prec, d);
        if (strtod(t, NULL) == d)
            break;
    }
    if (!strpbrk(t, ".eEn") && (size_t)n + 3 <= tlen) {
        memcpy(t + n, ".0", 3);
        n += 2;
    }
    return (size_t)n;
}

static void tmpl_put_int(tmpl_sb *b, json_int_t i)
{
    char t[32];
    int n = snprintf(t, sizeof t, "%" JSON_INTEGER_FORMAT, i);
    tmpl_sb_put(b, t, (size_t)n);
}

static void tmpl_put_real(tmpl_sb *b, double d)
{
    char t[48];
    tmpl_sb_put(b, t, tmpl_fmt_real(d, t, sizeof t));
}

/* A JSON string literal, escaped the way json_dumps does by default (UTF-8 kept as is). */
static void tmpl_put_jstring(tmpl_sb *b, const char *s, size_t n)
{
    size_t run = 0;
    tmpl_sb_putc(b, '"');
    for (size_t i = 0; i < n; i++) {
        char esc[6];
        size_t len = util_json_escape((unsigned char)s[i], esc);
        if (len == 0)
            continue;
        tmpl_sb_put(b, s + run, i - run);
        tmpl_sb_put(b, esc, len);
        run = i + 1;
    }
    tmpl_sb_put(b, s + run, n - run);
    tmpl_sb_putc(b, '"');
}

/* Compact JSON text of v (NULL writes null). Objects keep their key order. */
static void tmpl_put_json(tmpl_sb *b, json_t *v)
{
    const char *key;
    size_t key_len, i;
    json_t *item;
    int first = 1;
    switch (v ? json_typeof(v) : JSON_NULL) {
    case JSON_OBJECT:
        tmpl_sb_putc(b, '{');
        json_object_keylen_foreach(v, key, key_len, item)
        {
            if (!first)
                tmpl_sb_putc(b, ',');
            first = 0;
            tmpl_put_jstring(b, key, key_len);
            tmpl_sb_putc(b, ':');
            tmpl_put_json(b, item);
        }
        tmpl_sb_putc(b, '}');
        break;
    case JSON_ARRAY:
        tmpl_sb_putc(b, '[');
        json_array_foreach(v, i, item)
        {
            if (i)
                tmpl_sb_putc(b, ',');
            tmpl_put_json(b, item);
        }
        tmpl_sb_putc(b, ']');
        break;
    case JSON_STRING:
        tmpl_put_jstring(b, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        tmpl_put_int(b, json_integer_value(v));
        break;
    case JSON_REAL:
        tmpl_put_real(b, json_real_value(v));
        break;
    case JSON_TRUE:
        tmpl_sb_put(b, "true", 4);
        break;
    case JSON_FALSE:
        tmpl_sb_put(b, "false", 5);
        break;
    case JSON_NULL:
        tmpl_sb_put(b, "null", 4);
        break;
    }
}

/* Text of v inside a larger string: strings as is, null as nothing, containers as compact JSON. */
static void tmpl_put_text(tmpl_sb *b, json_t *v)
{
    if (!v || json_is_null(v))
        return;
    if (json_is_string(v))
        tmpl_sb_put(b, json_string_value(v), json_string_length(v));
    else
        tmpl_put_json(b, v);
}

/* ---- rendering: values and filters ------------------------------------------------------------ */

static void tmpl_val_release(tmpl_val *v)
{
    if (v->held)
        json_decref(v->v);
    v->v = NULL;
    v->held = 0;
}

/* v becomes a borrowed value (one the template or the scope keeps alive). */
static void tmpl_val_borrow(tmpl_val *v, json_t *j)
{
    tmpl_val_release(v);
    v->v = j;
}

/* v becomes j, a new reference (NULL: out of memory). */
static int tmpl_val_hold(tmpl_val *v, json_t *j, char *why, size_t whylen)
{
    if (!j)
        return util_err(why, whylen, "out of memory");
    tmpl_val_release(v);
    v->v = j;
    v->held = 1;
    return 0;
}

/* v becomes child, a value inside v: take a reference first when v itself is held (about to go). */
static void tmpl_val_child(tmpl_val *v, json_t *child)
{
    if (v->held) {
        json_incref(child);
        json_decref(v->v);
    }
    v->v = child;
}

/* v becomes a string made from the buffer; the buffer is freed. */
static int tmpl_val_from_sb(tmpl_val *v, tmpl_sb *b, char *why, size_t whylen)
{
    json_t *s = b->oom ? NULL : json_stringn(b->data, b->len);
    int bad_utf8 = !b->oom && !s;
    tmpl_sb_free(b);
    if (bad_utf8)
        return util_err(why, whylen, "the text is not valid UTF-8");
    return tmpl_val_hold(v, s, why, whylen);
}

static int tmpl_is_null(const tmpl_val *v)
{
    return !v->v || json_is_null(v->v);
}

static const char *tmpl_type_name(const json_t *v)
{
    switch (v ? json_typeof(v) : JSON_NULL) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a real number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        break;
    }
    return "null";
}

static int tmpl_type_err(const tmpl_filter *f, const tmpl_val *v, char *why, size_t whylen)
{
    return util_err(why, whylen, "filter '%s' cannot apply to %s", f->def->name, tmpl_type_name(v->v));
}

/* Parses a numeric string (surrounding blanks allowed): an integer when it is one, else a finite
 * real. Returns 0, or -1 when the text is not a number. */
static int tmpl_parse_number(const char *s, size_t n, json_int_t *i, double *d, int *is_int)
{
    char t[64], *end;
    while (n && isspace((unsigned char)*s))
        s++, n--;
    while (n && isspace((unsigned char)s[n - 1]))
        n--;
    if (n == 0 || n >= sizeof t || strspn(s, "0123456789+-.eE") < n)
        return -1;
    memcpy(t, s, n);
    t[n] = '\0';
    errno = 0;
    long long ll = strtoll(t, &end, 10);
    if (*end == '\0' && errno == 0) {
        *i = (json_int_t)ll;
        *is_int = 1;
        return 0;
    }
    errno = 0;
    double x = strtod(t, &end);
    if (end == t || *end != '\0' || !isfinite(x))
        return -1;
    *d = x;
    *is_int = 0;
    return 0;
}

static int tmpl_int_from_real(const tmpl_filter *f, double d, tmpl_val *v, char *why, size_t whylen)
{
    if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0))
        return util_err(why, whylen, "filter '%s': the number is out of the integer range", f->def->name);
    return tmpl_val_hold(v, json_integer((json_int_t)d), why, whylen);
}

static int tmpl_f_default(const tmpl_filter *f, tmpl_val *v, char *why, size_t whylen)
{
    (void)why, (void)whylen;
    if (tmpl_is_null(v))
        tmpl_val_borrow(v, f->arg);
    return 0;
}

static int tmpl_f_json(const tmpl_filter *f, tmpl_val *v, char *why, size_t whylen)
{
    (void)f;
    tmpl_sb b;
    tmpl_sb_init(&b);
    tmpl_put_json(&b, v->v);
    return tmpl_val_from_sb(v, &b, why, whylen);
}

static int tmpl_f_string(const tmpl_filter *f, tmpl_val *v, char *why, size_t whylen)
{
    (void)f;
    if (v->v && json_is_string(v->v))
        return 0;
    tmpl_sb b;
    tmpl_sb_init(&b);
    tmpl_put_text(&b, v->v);
    return tmpl_val_from_sb(v, &b, why, whylen);
}

static int tmpl_f_int(const tmpl_filter *f, tmpl_val *v, char *why, size_t whylen)
{
    json_int_t i = 0;
    double d = 0;
    int is_int = 0;
    switch (v->v ? json_typeof(v->v) : JSON_NULL) {
    case JSON_NULL:
    case JSON_INTEGER:
        return 0;
    case JSON_REAL:
        return tmpl_int_from_real(f, json_real_value(v->v), v, why, whylen);
    case JSON_TRUE:
    case JSON_FALSE:
        return tmpl_val_hold(v, json_integer(json_is_true(v->v)), why, whylen);
    case JSON_STRING:
        if (tmpl_parse_number(json_string_value(v->v), json_string_length(v->v), &i, &d, &is_int) != 0)
            return util_err(why, whylen, "filter 'int' cannot convert a string that is not a number");
        if (!is_int)
            return tmpl_int_from_real(f, d, v, why, whylen);
        return tmpl_val_hold(v, json_integer(i), why, whylen);
    default:
        return tmpl_type_err(f, v, why, whylen);
    }
}

static int tmpl_f_float(const tmpl_filter *f, tmpl_val *v, char *why, size_t whylen)
{
    json_int_t i = 0;
    double d = 0;
    int is_int = 0;
    switch (v->v ? json_typeof(v->v) : JSON_NULL) {
    case JSON_NULL:
    case JSON_REAL:
        return 0;
    case JSON_INTEGER:
        return tmpl_val_hold(v, json_real((double)json_integer_value(v->v)), why, whylen);
    case JSON_TRUE:
    case JSON_FALSE:
        return tmpl_val_hold(v, json_real(json_is_true(v->v) ? 1.0 : 0.0), why, whylen);
    case JSON_STRING:
        if (tmpl_parse_number(json_string_value(v->v), json_string_length(v->v), &i, &d, &is_int) != 0)
            return util_err(why, whylen, "filter 'float' cannot convert a string that is not a number");
        return tmpl_val_hold(v, json_real(is_int ? (double)i : d), why, whylen);
    default:
        return tmpl_type_err(f, v, why, whylen);
    }
}

/* JSON truthiness, plus the strings "false" (any case) and "0" are false. */
static int tmpl_truthy(json_t *v)
{
    const char *s;
    switch (v ? json_typeof(v) : JSON_NULL) {
    case JSON_TRUE:
        return 1;
    case JSON_INTEGER:
        return json_integer_value(v) != 0;
    case JSON_REAL:
        return json_real_value(v) != 0.0;
    case JSON_ARRAY:
        return json_array_size(v) > 0;
    case JSON_OBJECT:
        return json_object_size(v) > 0;
    case JSON_STRING:
        s = json_string_value(v);
        return json_string_length(v) > 0 && strcasecmp(s, "false") != 0 && strcmp(s, "0") != 0;
    case JSON_FALSE:
    case JSON_NULL:
        break;
    }
    return 0;
}

static int tmpl_f_bool(const tmpl_filter *f, tmpl_val *v, char *why, size_t whylen)
{
    (void)f, (void)why, (void)whylen;
    /* json_true()/json_false() are static singletons: borrowing them is always safe. */
    tmpl_val_borrow(v, json_boolean(tmpl_truthy(v->v)));
    return 0;
}

/* ASCII case mapping, whatever the locale: bytes >= 0x80 are left alone, so UTF-8 stays valid. */
static int tmpl_map_case(const tmpl_filter *f, tmpl_val *v, int upper, char *why, size_t whylen)
{
    if (tmpl_is_null(v))
        return 0;
    if (!json_is_string(v->v))
        return tmpl_type_err(f, v, why, whylen);
    const char *s = json_string_value(v->v);
    size_t n = json_string_length(v->v);
    char *t = malloc(n ? n : 1);
    if (!t)
        return util_err(why, whylen, "out of memory");
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (upper && c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        else if (!upper && c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        t[i] = c;
    }
    json_t *out = json_stringn_nocheck(t, n);
    free(t);
    return tmpl_val_hold(v, out, why, whylen);
}

static int tmpl_f_lower(const tmpl_filter *f, tmpl_val *v, char *why, size_t whylen)
{
    return tmpl_map_case(f, v, 0, why, whylen);
}

static int tmpl_f_upper(const tmpl_filter *f, tmpl_val *v, char *why, size_t whylen)
{
    return tmpl_map_case(f, v, 1, why, whylen);
}

static int tmpl_f_length(const tmpl_filter *f, tmpl_val *v, char *why, size_t whylen)
{
    size_t n = 0;
    switch (v->v ? json_typeof(v->v) : JSON_NULL) {
    case JSON_NULL:
        break;
    case JSON_STRING: {
        /* characters, not bytes: count every byte that does not continue a UTF-8 sequence */
        const unsigned char *s = (const unsigned char *)json_string_value(v->v);
        for (size_t i = 0, len = json_string_length(v->v); i < len; i++)
            n += (s[i] & 0xC0) != 0x80;
        break;
    }
    case JSON_ARRAY:
        n = json_array_size(v->v);
        break;
    case JSON_OBJECT:
        n = json_object_size(v->v);
        break;
    default:
        return tmpl_type_err(f, v, why, whylen);
    }
    return tmpl_val_hold(v, json_integer((json_int_t)n), why, whylen);
}

/* Percent-encodes everything but RFC 3986 unreserved characters (ALPHA DIGIT - . _ ~). */
static int tmpl_f_url(const tmpl_filter *f, tmpl_val *v, char *why, size_t whylen)
{
    static const char hex[] = "0123456789ABCDEF";
    if (tmpl_is_null(v))
        return 0;
    if (json_is_object(v->v) || json_is_array(v->v))
        return tmpl_type_err(f, v, why, whylen);
    tmpl_sb raw, out;
    tmpl_sb_init(&raw);
    tmpl_sb_init(&out);
    tmpl_put_text(&raw, v->v);
    for (size_t i = 0; i < raw.len; i++) {
        unsigned char c = (unsigned char)raw.data[i];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
            c == '_' || c == '~') {
            tmpl_sb_putc(&out, (char)c);
        } else {
            char pct[3] = {'%', hex[c >> 4], hex[c & 15]};
            tmpl_sb_put(&out, pct, 3);
        }
    }
    out.oom |= raw.oom;
    tmpl_sb_free(&raw);
    return tmpl_val_from_sb(v, &out, why, whylen);
}

static int tmpl_array_end(const tmpl_filter *f, tmpl_val *v, int last, char *why, size_t whylen)
{
    if (tmpl_is_null(v))
        return 0;
    if (!json_is_array(v->v))
        return tmpl_type_err(f, v, why, whylen);
    size_t n = json_array_size(v->v);
    tmpl_val_child(v, n ? json_array_get(v->v, last ? n - 1 : 0) : json_null());
    return 0;
}

static int tmpl_f_first(const tmpl_filter *f, tmpl_val *v, char *why, size_t whylen)
{
    return tmpl_array_end(f, v, 0, why, whylen);
}

static int tmpl_f_last(const tmpl_filter *f, tmpl_val *v, char *why, size_t whylen)
{
    return tmpl_array_end(f, v, 1, why, whylen);
}

static int tmpl_f_keys(const tmpl_filter *f, tmpl_val *v, char *why, size_t whylen)
{
    const char *key;
    size_t key_len;
    json_t *item;
    if (tmpl_is_null(v))
        return 0;
    if (!json_is_object(v->v))
        return tmpl_type_err(f, v, why, whylen);
    json_t *keys = json_array();
    if (!keys)
        return util_err(why, whylen, "out of memory");
    json_object_keylen_foreach(v->v, key, key_len, item)
    {
        if (json_array_append_new(keys, json_stringn_nocheck(key, key_len)) != 0) {
            json_decref(keys);
            return util_err(why, whylen, "out of memory");
        }
    }
    return tmpl_val_hold(v, keys, why, whylen);
}

/* ---- rendering: expressions and trees --------------------------------------------------------- */

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

/* ---- the filter table ------------------------------------------------------------------------- */

static const tmpl_filter_def tmpl_filters[] = {
    {"default", 1, tmpl_f_default}, {"json", 0, tmpl_f_json}, {"string", 0, tmpl_f_string}, {"int", 0, tmpl_f_int},
    {"float", 0, tmpl_f_float},     {"bool", 0, tmpl_f_bool}, {"lower", 0, tmpl_f_lower},   {"upper", 0, tmpl_f_upper},
    {"length", 0, tmpl_f_length},   {"url", 0, tmpl_f_url},   {"first", 0, tmpl_f_first},   {"last", 0, tmpl_f_last},
    {"keys", 0, tmpl_f_keys},
};

static const tmpl_filter_def *tmpl_filter_find(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof tmpl_filters / sizeof tmpl_filters[0]; i++)
        if (strlen(tmpl_filters[i].name) == len && memcmp(tmpl_filters[i].name, name, len) == 0)
            return &tmpl_filters[i];
    return NULL;
}
