/* schema: the JSON Schema subset of WORKFLOWS.md, compiled once at load and validated on the hot path.
 *
 * Compile walks the definition with a table of keywords (like an nginx directive table): each entry
 * parses one keyword's value into a field of a `struct schema` node, or is NULL for annotations that
 * are accepted and ignored. A keyword missing from the table is refused, never ignored, with the JSON
 * Pointer of the schema that holds it; a bad value is refused with the pointer of the keyword itself.
 * Everything a check needs is prepared here, so validation does no parsing: types become a bit mask
 * (plus its "expected ..." text), patterns become regex_t, limits become numbers with their printed
 * form, enum/const values are deep copies owned by the node, and properties are sorted for bsearch.
 *
 * A compiled tree is never written after schema_compile returns, so schema_validate may run on it
 * from any number of threads (glibc's regexec is MT-safe; it serialises briefly on the pattern's lock).
 *
 * Validation reports every violation. Paths are built lazily: each level keeps a stack-allocated
 * segment pointing at its parent, and a JSON Pointer string is only assembled when a violation is
 * recorded, so a valid instance costs no allocation. Recursion follows the schema, whose nesting is
 * capped at SCHEMA_MAX_DEPTH at compile time; deeper parts of an instance are never descended.
 * Messages name types and limits from the schema, never the offending value (it may be a secret).
 */
#include <ctype.h>
#include <math.h>
#include <regex.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kailash/schema.h"
#include "kailash/util.h"

#define SCHEMA_MAX_DEPTH 64

enum {
    T_OBJECT = 1u << 0,
    T_ARRAY = 1u << 1,
    T_STRING = 1u << 2,
    T_NUMBER = 1u << 3,
    T_INTEGER = 1u << 4,
    T_BOOLEAN = 1u << 5,
    T_NULL = 1u << 6,
};

/* Indexed by bit position of the T_* masks above. */
static const char *const schema_type_names[] = {"object", "array", "string", "number", "integer", "boolean", "null"};
#define SCHEMA_NTYPES (sizeof schema_type_names / sizeof schema_type_names[0])

typedef enum { FMT_NONE, FMT_EMAIL, FMT_UUID, FMT_DATE_TIME } schema_format;

/* A numeric limit. Integers are kept exact so int64 instances compare without rounding. */
typedef struct {
    bool set;
    bool is_int;
    json_int_t i;
    double d;
    char text[32]; /* printed once at compile, for messages */
} schema_num;

typedef struct {
    char *name; /* owned; may contain NUL, hence len */
    size_t len;
    schema *sub; /* owned */
} schema_prop;

typedef struct {
    char *name; /* owned */
    size_t len;
} schema_name;

struct schema {
    unsigned types;      /* T_* mask; 0 means any type */
    char types_text[96]; /* "string or null", for "expected ..." */
    schema_prop *props;  /* sorted by name (bsearch) */
    size_t nprops;
    schema_name *required; /* in definition order, so reports follow it */
    size_t nrequired;
    bool closed;    /* additionalProperties: false */
    schema *items;  /* owned, or NULL */
    json_t *enums;  /* owned deep copy, or NULL */
    json_t *constv; /* owned deep copy, or NULL (a JSON null const is json_null(), not NULL) */
    schema_num minimum, maximum, xminimum, xmaximum;
    long long min_len, max_len, min_items, max_items; /* -1 when unset */
    bool has_pattern;
    regex_t pattern;
    char *pattern_src; /* owned, for messages */
    schema_format format;
};

/* ---- compile ---------------------------------------------------------------------------------- */

/* Compile state: the JSON Pointer of where we are in the definition, and the caller's err buffer. */
typedef struct {
    buf path;
    char *err;
    size_t errlen;
} schema_cx;

typedef int (*schema_kw_fn)(schema *s, json_t *val, int depth, schema_cx *cx);

static int schema_build(json_t *def, int depth, schema_cx *cx, schema **out);

/* Writes "<pointer>: <message>" into the caller's buffer; the root reads "(root)". */
static int schema_fail(schema_cx *cx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int schema_fail(schema_cx *cx, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return util_err(cx->err, cx->errlen, "%s: %s", cx->path.len ? cx->path.data : "(root)", msg);
}

/* Appends "/" and the RFC 6901 escaped segment (~ as ~0, / as ~1). */
static int schema_ptr_append(buf *b, const char *seg, size_t n)
{
    if (buf_append(b, "/", 1) != 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        const char *esc = seg[i] == '~' ? "~0" : seg[i] == '/' ? "~1" : NULL;
        if (buf_append(b, esc ? esc : &seg[i], esc ? 2 : 1) != 0)
            return -1;
    }
    return 0;
}

/* Pushes a segment on the compile path; *mark receives the length to pop back to. */
static int schema_path_push(schema_cx *cx, const char *seg, size_t n, size_t *mark)
{
    *mark = cx->path.len;
    if (schema_ptr_append(&cx->path, seg, n) != 0) {
        cx->path.len = *mark;
        return util_err(cx->err, cx->errlen, "schema: out of memory");
    }
    return 0;
}

static void schema_path_pop(schema_cx *cx, size_t mark)
{
    cx->path.len = mark;
    if (cx->path.data)
        cx->path.data[mark] = '\0';
}

static char *schema_dupn(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static int schema_name_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    return c ? c : (alen > blen) - (alen < blen);
}

static int schema_prop_cmp(const void *a, const void *b)
{
    const schema_prop *pa = a, *pb = b;
    return schema_name_cmp(pa->name, pa->len, pb->name, pb->len);
}

/* Renders the mask as "a", "a or b", "a, b or c" in canonical order. */
static void schema_types_text(schema *s)
{
    size_t total = 0, seen = 0, off = 0;
    for (size_t i = 0; i < SCHEMA_NTYPES; i++)
        total += (s->types >> i) & 1u;
    for (size_t i = 0; i < SCHEMA_NTYPES; i++) {
        if (!((s->types >> i) & 1u))
            continue;
        const char *sep = seen == 0 ? "" : seen + 1 == total ? " or " : ", ";
        off += (size_t)snprintf(s->types_text + off, sizeof s->types_text - off, "%s%s", sep, schema_type_names[i]);
        seen++;
    }
}

static unsigned schema_type_bit(const char *name)
{
    for (size_t i = 0; i < SCHEMA_NTYPES; i++)
        if (strcmp(name, schema_type_names[i]) == 0)
            return 1u << i;
    return 0;
}

static int schema_kw_type_one(schema *s, json_t *name, schema_cx *cx)
{
    unsigned bit = schema_type_bit(json_string_value(name));
    if (!bit)
        return schema_fail(cx, "unknown type '%.64s'", json_string_value(name));
    if (s->types & bit)
        return schema_fail(cx, "duplicate type '%s'", json_string_value(name));
    s->types |= bit;
    return 0;
}

static int schema_kw_type(schema *s, json_t *val, int depth, schema_cx *cx)
{
    (void)depth;
    if (json_is_string(val)) {
        if (schema_kw_type_one(s, val, cx) != 0)
            return -1;
    } else if (json_is_array(val) && json_array_size(val) > 0) {
        size_t i;
        json_t *t;
        json_array_foreach(val, i, t)
        {
            if (!json_is_string(t))
                return schema_fail(cx, "expected a type name or a non-empty array of type names");
            if (schema_kw_type_one(s, t, cx) != 0)
                return -1;
        }
    } else {
        return schema_fail(cx, "expected a type name or a non-empty array of type names");
    }
    schema_types_text(s);
    return 0;
}

static int schema_kw_properties(schema *s, json_t *val, int depth, schema_cx *cx)
{
    if (!json_is_object(val))
        return schema_fail(cx, "expected an object mapping property names to schemas");
    size_t n = json_object_size(val);
    s->props = calloc(n ? n : 1, sizeof *s->props);
    if (!s->props)
        return schema_fail(cx, "out of memory");
    const char *key;
    size_t klen, mark;
    json_t *sub;
    json_object_keylen_foreach(val, key, klen, sub)
    {
        schema_prop *p = &s->props[s->nprops];
        if (!(p->name = schema_dupn(key, klen)))
            return schema_fail(cx, "out of memory");
        p->len = klen;
        s->nprops++; /* counted before building so schema_free releases a partial entry */
        if (schema_path_push(cx, key, klen, &mark) != 0)
            return -1;
        if (schema_build(sub, depth + 1, cx, &p->sub) != 0)
            return -1;
        schema_path_pop(cx, mark);
    }
    qsort(s->props, s->nprops, sizeof *s->props, schema_prop_cmp);
    return 0;
}

static bool schema_required_has(const schema *s, const char *name, size_t len)
{
    for (size_t i = 0; i < s->nrequired; i++)
        if (schema_name_cmp(s->required[i].name, s->required[i].len, name, len) == 0)
            return true;
    return false;
}

static int schema_kw_required(schema *s, json_t *val, int depth, schema_cx *cx)
{
    (void)depth;
    if (!json_is_array(val))
        return schema_fail(cx, "expected an array of unique property names");
    s->required = calloc(json_array_size(val) + 1, sizeof *s->required);
    if (!s->required)
        return schema_fail(cx, "out of memory");
    size_t i;
    json_t *name;
    json_array_foreach(val, i, name)
    {
        if (!json_is_string(name))
            return schema_fail(cx, "expected an array of unique property names");
        const char *str = json_string_value(name);
        size_t len = json_string_length(name);
        if (schema_required_has(s, str, len))
            return schema_fail(cx, "duplicate property name '%.64s'", str);
        if (!(s->required[s->nrequired].name = schema_dupn(str, len)))
            return schema_fail(cx, "out of memory");
        s->required[s->nrequired++].len = len;
    }
    return 0;
}

static int schema_kw_additional(schema *s, json_t *val, int depth, schema_cx *cx)
{
    (void)depth;
    if (!json_is_boolean(val))
        return schema_fail(cx, "expected a boolean (schemas are not supported here)");
    s->closed = json_is_false(val);
    return 0;
}

static int schema_kw_items(schema *s, json_t *val, int depth, schema_cx *cx)
{
    return schema_build(val, depth + 1, cx, &s->items);
}

/* enum and const values are deep-copied: the definition is borrowed and may change or go away. */
static int schema_kw_enum(schema *s, json_t *val, int depth, schema_cx *cx)
{
    (void)depth;
    if (!json_is_array(val) || json_array_size(val) == 0)
        return schema_fail(cx, "expected a non-empty array");
    if (!(s->enums = json_deep_copy(val)))
        return schema_fail(cx, "out of memory");
    return 0;
}

static int schema_kw_const(schema *s, json_t *val, int depth, schema_cx *cx)
{
    (void)depth;
    if (!(s->constv = json_deep_copy(val)))
        return schema_fail(cx, "out of memory");
    return 0;
}

/* Shortest "%g" text that reads back as the same double (15 digits is enough for most limits). */
static void schema_num_text(schema_num *n)
{
    if (n->is_int) {
        snprintf(n->text, sizeof n->text, "%" JSON_INTEGER_FORMAT, n->i);
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(n->text, sizeof n->text, "%.*g", prec, n->d);
        if (strtod(n->text, NULL) == n->d)
            return;
    }
}

static int schema_num_parse(schema_num *n, json_t *val, schema_cx *cx)
{
    if (!json_is_number(val))
        return schema_fail(cx, "expected a number");
    n->set = true;
    n->is_int = json_is_integer(val);
    n->i = n->is_int ? json_integer_value(val) : 0;
    n->d = n->is_int ? (double)n->i : json_real_value(val);
    schema_num_text(n);
    return 0;
}

static int schema_kw_minimum(schema *s, json_t *val, int depth, schema_cx *cx)
{
    (void)depth;
    return schema_num_parse(&s->minimum, val, cx);
}

static int schema_kw_maximum(schema *s, json_t *val, int depth, schema_cx *cx)
{
    (void)depth;
    return schema_num_parse(&s->maximum, val, cx);
}

static int schema_kw_xminimum(schema *s, json_t *val, int depth, schema_cx *cx)
{
    (void)depth;
    return schema_num_parse(&s->xminimum, val, cx);
}

static int schema_kw_xmaximum(schema *s, json_t *val, int depth, schema_cx *cx)
{
    (void)depth;
    return schema_num_parse(&s->xmaximum, val, cx);
}

/* JSON Schema counts 5.0 as an integer, so an integral real is accepted for counts too. */
static int schema_count_parse(long long *out, json_t *val, schema_cx *cx)
{
    if (json_is_integer(val) && json_integer_value(val) >= 0) {
        *out = (long long)json_integer_value(val);
        return 0;
    }
    double d = json_is_real(val) ? json_real_value(val) : -1.0;
    if (d >= 0 && d <= 9007199254740992.0 && d == (double)(long long)d) {
        *out = (long long)d;
        return 0;
    }
    return schema_fail(cx, "expected a non-negative integer");
}

static int schema_kw_min_len(schema *s, json_t *val, int depth, schema_cx *cx)
{
    (void)depth;
    return schema_count_parse(&s->min_len, val, cx);
}

static int schema_kw_max_len(schema *s, json_t *val, int depth, schema_cx *cx)
{
    (void)depth;
    return schema_count_parse(&s->max_len, val, cx);
}

static int schema_kw_min_items(schema *s, json_t *val, int depth, schema_cx *cx)
{
    (void)depth;
    return schema_count_parse(&s->min_items, val, cx);
}

static int schema_kw_max_items(schema *s, json_t *val, int depth, schema_cx *cx)
{
    (void)depth;
    return schema_count_parse(&s->max_items, val, cx);
}

/* Skips a bracket expression starting at p[i] == '['; returns the index just past its ']'. Inside a
 * bracket a backslash is literal, and a leading ']' (after an optional '^') is a member. */
static size_t schema_skip_bracket(const char *p, size_t n, size_t i)
{
    i++;
    if (i < n && p[i] == '^')
        i++;
    if (i < n && p[i] == ']')
        i++;
    while (i < n && p[i] != ']') {
        if (p[i] == '[' && i + 1 < n && strchr(":=.", p[i + 1])) {
            char delim = p[i + 1]; /* [:class:], [=equiv=], [.coll.] end at delim followed by ']' */
            for (i += 2; i + 1 < n && !(p[i] == delim && p[i + 1] == ']'); i++)
                ;
            i += 2;
        } else {
            i++;
        }
    }
    return i < n ? i + 1 : n;
}

/* glibc accepts back-references (\1..\9) in EREs as an extension; they make matching exponential
 * in the worst case, which a hot-path validator must not risk, so they are refused. */
static bool schema_has_backref(const char *p)
{
    size_t n = strlen(p);
    for (size_t i = 0; i < n;) {
        if (p[i] == '[') {
            i = schema_skip_bracket(p, n, i);
        } else if (p[i] == '\\' && i + 1 < n) {
            if (p[i + 1] >= '1' && p[i + 1] <= '9')
                return true;
            i += 2;
        } else {
            i++;
        }
    }
    return false;
}

/* glibc's regcomp expands a repeat by copying the repeated subtree: x{2,100} holds 100 copies, x+
 * two (x x*), and stacked or nested repeats multiply, so "a" followed by 28 '+' (found by fuzzing)
 * or "(a{0,1000}){0,1000}" takes gigabytes and seconds at load. Copies of a subtree that can match
 * the empty string cost far more: its epsilon closures are computed over every copy, so the time
 * grows with the square of the copies ("((((((((((a?)+)+)+)+)+)+)+)+)+)+": 0.4 s; "a????????++++++",
 * found by fuzzing: 10 s). schema_pattern_cost estimates the copies (atoms, each repeat multiplying
 * what it applies to: '+' by 2, {m,n} by n, {m,} by m + 1, while '?' and '*' add one node; a copying
 * repeat of an empty-matching subtree multiplies by its cost once more, and stacked '?' grow that
 * subtree: "a" with 35 '?' and "+++" took 0.7 s) and patterns above SCHEMA_PATTERN_MAX_COST are
 * refused; real patterns cost tens to hundreds. */
#define SCHEMA_PATTERN_MAX_COST 10000.0
#define SCHEMA_PATTERN_MAX_GROUPS 64

typedef struct schema_pc {
    double alts;     /* the finished alternatives of this group */
    double seq;      /* the current alternative */
    double last;     /* the last atom or group, which a repeat applies to */
    bool alts_empty; /* a finished alternative can match the empty string */
    bool seq_empty;  /* the current alternative can (so far) */
    bool last_empty; /* the last atom or group can */
    bool prev_empty; /* the current alternative before the last atom or group could */
} schema_pc;

static const schema_pc schema_pc_start = {0, 0, 0, false, true, false, true};

/* The multiplier of a repeat at p[i] ('*', '+', '?' or a well-formed {m}, {m,}, {m,n}), its least
 * count in *min and its end in *end; 0 when p[i] is not a repeat. */
static double schema_repeat_factor(const char *p, size_t i, size_t *end, double *min)
{
    if (p[i] == '*' || p[i] == '?' || p[i] == '+') {
        *end = i + 1;
        *min = p[i] == '+';
        return p[i] == '+' ? 2 : 1;
    }
    if (p[i] != '{' || !isdigit((unsigned char)p[i + 1]))
        return 0;
    char *e;
    double m = strtod(p + i + 1, &e), n = m;
    if (*e == ',')
        n = isdigit((unsigned char)e[1]) ? strtod(e + 1, &e) : m + 1;
    if (*e != '}')
        return 0;
    *end = (size_t)(e - p) + 1;
    *min = m;
    return n > 1 ? n : 1;
}

/* A repeat applied to f->last. */
static void schema_pc_repeat(schema_pc *f, double k, double min)
{
    double grown = k > 1 ? f->last * k : f->last + 1; /* '?' and '*' add a node of their own */
    if (f->last_empty && k > 1)
        grown *= f->last;
    f->seq += grown - f->last;
    f->last = grown;
    if (min == 0) {
        f->last_empty = true;
        f->seq_empty = f->prev_empty;
    }
}

/* An atom or a closed group of cost c appended to the current alternative. */
static void schema_pc_append(schema_pc *f, double c, bool empty)
{
    f->last = c > 1 ? c : 1;
    f->seq += f->last;
    f->last_empty = empty;
    f->prev_empty = f->seq_empty;
    f->seq_empty = f->seq_empty && empty;
}

static double schema_pattern_cost(const char *p)
{
    schema_pc st[SCHEMA_PATTERN_MAX_GROUPS] = {schema_pc_start};
    size_t d = 0, n = strlen(p), end;
    for (size_t i = 0; i < n;) {
        schema_pc *f = &st[d];
        double min, k = schema_repeat_factor(p, i, &end, &min);
        if (k > 0) {
            schema_pc_repeat(f, k, min);
            i = end;
        } else if (p[i] == '(') {
            if (++d == SCHEMA_PATTERN_MAX_GROUPS)
                return HUGE_VAL;
            st[d] = schema_pc_start;
            i++;
        } else if (p[i] == ')' && d > 0) {
            schema_pc *g = &st[d--];
            schema_pc_append(&st[d], g->alts + g->seq, g->alts_empty || g->seq_empty);
            i++;
        } else if (p[i] == '|') {
            f->alts += f->seq;
            f->alts_empty = f->alts_empty || f->seq_empty;
            f->seq = f->last = 0;
            f->seq_empty = f->prev_empty = true;
            f->last_empty = false;
            i++;
        } else {
            bool anchor = p[i] == '^' || p[i] == '$'; /* zero width */
            i = p[i] == '[' ? schema_skip_bracket(p, n, i) : i + (p[i] == '\\' && i + 1 < n ? 2 : 1);
            schema_pc_append(f, 1, anchor);
        }
        /* costs only grow: past the bound (or overflowed to inf and then NaN, which a later
         * "c > 1 ? c : 1" would launder into 1) the pattern is refused here */
        const schema_pc *g = &st[d];
        if (!(g->seq <= SCHEMA_PATTERN_MAX_COST && g->last <= SCHEMA_PATTERN_MAX_COST &&
              g->alts <= SCHEMA_PATTERN_MAX_COST))
            return HUGE_VAL;
    }
    while (d > 0) { /* an unclosed group: regcomp refuses it anyway */
        double g = st[d].alts + st[d].seq;
        st[--d].seq += g;
    }
    return st[0].alts + st[0].seq;
}

static int schema_kw_pattern(schema *s, json_t *val, int depth, schema_cx *cx)
{
    (void)depth;
    if (!json_is_string(val))
        return schema_fail(cx, "expected a string");
    const char *src = json_string_value(val);
    if (strlen(src) != json_string_length(val))
        return schema_fail(cx, "invalid regular expression (contains a NUL character)");
    if (schema_has_backref(src))
        return schema_fail(cx, "invalid regular expression (back-references are not supported)");
    if (!(schema_pattern_cost(src) <= SCHEMA_PATTERN_MAX_COST))
        return schema_fail(cx,
                           "regular expression too costly to compile (its repeats multiply past %.0f "
                           "copies; at most %d nested groups)",
                           SCHEMA_PATTERN_MAX_COST, SCHEMA_PATTERN_MAX_GROUPS);
    int rc = regcomp(&s->pattern, src, REG_EXTENDED | REG_NOSUB);
    if (rc != 0) {
        char why[128];
        regerror(rc, &s->pattern, why, sizeof why);
        return schema_fail(cx, "invalid regular expression (%s)", why);
    }
    s->has_pattern = true;
    if (!(s->pattern_src = schema_dupn(src, strlen(src))))
        return schema_fail(cx, "out of memory");
    return 0;
}

static int schema_kw_format(schema *s, json_t *val, int depth, schema_cx *cx)
{
    (void)depth;
    if (!json_is_string(val))
        return schema_fail(cx, "expected a string");
    const char *f = json_string_value(val);
    if (strcmp(f, "email") == 0)
        s->format = FMT_EMAIL;
    else if (strcmp(f, "uuid") == 0)
        s->format = FMT_UUID;
    else if (strcmp(f, "date-time") == 0)
        s->format = FMT_DATE_TIME;
    else
        return schema_fail(cx, "unsupported format '%.64s' (supported: email, uuid, date-time)", f);
    return 0;
}

/* The whole accepted vocabulary. A NULL handler marks an annotation: accepted, ignored. */
static const struct schema_keyword {
    const char *name;
    schema_kw_fn fn;
} schema_keywords[] = {
    {"type", schema_kw_type},
    {"properties", schema_kw_properties},
    {"required", schema_kw_required},
    {"additionalProperties", schema_kw_additional},
    {"items", schema_kw_items},
    {"enum", schema_kw_enum},
    {"const", schema_kw_const},
    {"minimum", schema_kw_minimum},
    {"maximum", schema_kw_maximum},
    {"exclusiveMinimum", schema_kw_xminimum},
    {"exclusiveMaximum", schema_kw_xmaximum},
    {"minLength", schema_kw_min_len},
    {"maxLength", schema_kw_max_len},
    {"pattern", schema_kw_pattern},
    {"minItems", schema_kw_min_items},
    {"maxItems", schema_kw_max_items},
    {"format", schema_kw_format},
    {"title", NULL},
    {"description", NULL},
    {"default", NULL},
    {"examples", NULL},
    {"$schema", NULL},
    {"$comment", NULL},
    {"$id", NULL},
};

static const struct schema_keyword *schema_keyword_find(const char *key, size_t klen)
{
    for (size_t i = 0; i < sizeof schema_keywords / sizeof schema_keywords[0]; i++)
        if (strlen(schema_keywords[i].name) == klen && memcmp(schema_keywords[i].name, key, klen) == 0)
            return &schema_keywords[i];
    return NULL;
}

static int schema_num_order(const schema_num *a, const schema_num *b)
{
    if (a->is_int && b->is_int)
        return (a->i > b->i) - (a->i < b->i);
    long double x = a->is_int ? (long double)a->i : (long double)a->d;
    long double y = b->is_int ? (long double)b->i : (long double)b->d;
    return (x > y) - (x < y);
}

/* A lower bound above its upper bound can never be met: almost surely a typo, so refused at load. */
static int schema_check_bounds(const schema *s, schema_cx *cx)
{
    if (s->min_len >= 0 && s->max_len >= 0 && s->min_len > s->max_len)
        return schema_fail(cx, "minLength is greater than maxLength");
    if (s->min_items >= 0 && s->max_items >= 0 && s->min_items > s->max_items)
        return schema_fail(cx, "minItems is greater than maxItems");
    if (s->minimum.set && s->maximum.set && schema_num_order(&s->minimum, &s->maximum) > 0)
        return schema_fail(cx, "minimum is greater than maximum");
    return 0;
}

static int schema_apply_keywords(schema *s, json_t *def, int depth, schema_cx *cx)
{
    const char *key;
    size_t klen, mark;
    json_t *val;
    json_object_keylen_foreach(def, key, klen, val)
    {
        const struct schema_keyword *kw = schema_keyword_find(key, klen);
        if (!kw)
            return schema_fail(cx, "unknown keyword '%.64s'", key);
        if (!kw->fn)
            continue;
        if (schema_path_push(cx, key, klen, &mark) != 0)
            return -1;
        if (kw->fn(s, val, depth, cx) != 0)
            return -1;
        schema_path_pop(cx, mark);
    }
    return schema_check_bounds(s, cx);
}

/* Builds one node; on failure *out stays NULL and everything built so far is freed. */
static int schema_build(json_t *def, int depth, schema_cx *cx, schema **out)
{
    *out = NULL;
    if (!json_is_object(def))
        return schema_fail(cx, "expected a schema object");
    if (depth > SCHEMA_MAX_DEPTH)
        return schema_fail(cx, "schema nested deeper than %d levels", SCHEMA_MAX_DEPTH);
    schema *s = calloc(1, sizeof *s);
    if (!s)
        return schema_fail(cx, "out of memory");
    s->min_len = s->max_len = s->min_items = s->max_items = -1;
    if (schema_apply_keywords(s, def, depth, cx) != 0) {
        schema_free(s);
        return -1;
    }
    *out = s;
    return 0;
}

int schema_compile(json_t *def, schema **out, char *err, size_t errlen)
{
    schema_cx cx = {.err = err, .errlen = errlen};
    int rc = schema_build(def, 0, &cx, out);
    buf_free(&cx.path);
    return rc;
}

void schema_free(schema *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nprops; i++) {
        free(s->props[i].name);
        schema_free(s->props[i].sub);
    }
    free(s->props);
    for (size_t i = 0; i < s->nrequired; i++)
        free(s->required[i].name);
    free(s->required);
    schema_free(s->items);
    json_decref(s->enums);  /* from json_deep_copy in schema_kw_enum */
    json_decref(s->constv); /* from json_deep_copy in schema_kw_const */
    if (s->has_pattern)
        regfree(&s->pattern);
    free(s->pattern_src);
    free(s);
}

/* ---- formats ---------------------------------------------------------------------------------- */

static bool schema_is_alnum(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool schema_is_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Dot-atom local part of RFC 5321: atext runs separated by single dots. */
static bool schema_email_local(const char *s, size_t n)
{
    if (n == 0 || n > 64 || s[0] == '.' || s[n - 1] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.' && i + 1 < n && s[i + 1] == '.')
            return false;
        if (c != '.' && !schema_is_alnum(c) && !(c && strchr("!#$%&'*+-/=?^_`{|}~", c)))
            return false;
    }
    return true;
}

/* Host name: two or more LDH labels of 1..63 characters, none starting or ending with '-'. */
static bool schema_email_domain(const char *s, size_t n)
{
    size_t labels = 0, start = 0;
    if (n == 0 || n > 253)
        return false;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && s[i] != '.') {
            if (!schema_is_alnum((unsigned char)s[i]) && s[i] != '-')
                return false;
            continue;
        }
        size_t len = i - start;
        if (len == 0 || len > 63 || s[start] == '-' || s[i - 1] == '-')
            return false;
        labels++;
        start = i + 1;
    }
    return labels >= 2;
}

/* Unquoted addresses only: quoted local parts and IP literals are refused (rare in API inputs). */
static bool schema_is_email(const char *s, size_t n)
{
    const char *at = memchr(s, '@', n);
    if (!at || n > 254)
        return false;
    size_t local = (size_t)(at - s);
    return schema_email_local(s, local) && schema_email_domain(at + 1, n - local - 1);
}

static bool schema_is_uuid(const char *s, size_t n)
{
    if (n != 36)
        return false;
    for (size_t i = 0; i < n; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !schema_is_hex((unsigned char)s[i]))
            return false;
    }
    return true;
}

/* Reads exactly n digits at s[*pos]; returns the value or -1. */
static int schema_digits(const char *s, size_t len, size_t *pos, size_t n)
{
    int v = 0;
    if (*pos + n > len)
        return -1;
    for (size_t i = 0; i < n; i++) {
        char c = s[*pos + i];
        if (c < '0' || c > '9')
            return -1;
        v = v * 10 + (c - '0');
    }
    *pos += n;
    return v;
}

static bool schema_expect(const char *s, size_t len, size_t *pos, const char *one_of)
{
    if (*pos >= len || !s[*pos] || !strchr(one_of, s[*pos]))
        return false;
    (*pos)++;
    return true;
}

static int schema_days_in_month(int year, int month)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    return month == 2 && leap ? 29 : days[month - 1];
}

/* full-date "T" partial-time: returns false unless every field is in range. */
static bool schema_date_time_main(const char *s, size_t n, size_t *pos, int f[6])
{
    f[0] = schema_digits(s, n, pos, 4);
    if (f[0] < 0 || !schema_expect(s, n, pos, "-") || (f[1] = schema_digits(s, n, pos, 2)) < 1 || f[1] > 12 ||
        !schema_expect(s, n, pos, "-") || (f[2] = schema_digits(s, n, pos, 2)) < 1 ||
        f[2] > schema_days_in_month(f[0], f[1]) || !schema_expect(s, n, pos, "Tt"))
        return false;
    if ((f[3] = schema_digits(s, n, pos, 2)) < 0 || f[3] > 23 || !schema_expect(s, n, pos, ":") ||
        (f[4] = schema_digits(s, n, pos, 2)) < 0 || f[4] > 59 || !schema_expect(s, n, pos, ":") ||
        (f[5] = schema_digits(s, n, pos, 2)) < 0 || f[5] > 60)
        return false;
    if (*pos < n && s[*pos] == '.') {
        size_t start = ++*pos;
        while (*pos < n && s[*pos] >= '0' && s[*pos] <= '9')
            ++*pos;
        if (*pos == start)
            return false;
    }
    return true;
}

/* RFC 3339 date-time. Second 60 (leap second) is valid only when it falls at 23:59 UTC. */
static bool schema_is_date_time(const char *s, size_t n)
{
    size_t pos = 0;
    int f[6], offset = 0;
    if (!schema_date_time_main(s, n, &pos, f))
        return false;
    if (schema_expect(s, n, &pos, "Zz")) {
        offset = 0;
    } else {
        int sign = pos < n && s[pos] == '-' ? -1 : 1;
        if (!schema_expect(s, n, &pos, "+-"))
            return false;
        int oh = schema_digits(s, n, &pos, 2);
        if (oh < 0 || oh > 23 || !schema_expect(s, n, &pos, ":"))
            return false;
        int om = schema_digits(s, n, &pos, 2);
        if (om < 0 || om > 59)
            return false;
        offset = sign * (oh * 60 + om);
    }
    if (pos != n)
        return false;
    int utc_minute = ((f[3] * 60 + f[4] - offset) % 1440 + 1440) % 1440;
    return f[5] < 60 || utc_minute == 23 * 60 + 59;
}

/* ---- validate --------------------------------------------------------------------------------- */

/* One step of the instance path, on the validator's stack; key == NULL means an array index. */
typedef struct schema_seg {
    const struct schema_seg *up;
    const char *key;
    size_t len;
    size_t index;
} schema_seg;

typedef struct {
    json_t *out; /* borrowed violations array, or NULL to count only */
    int count;
    size_t max; /* at most this many are described in out; the rest are only counted */
} schema_report;

static int schema_seg_write(buf *b, const schema_seg *at)
{
    if (!at)
        return 0;
    if (schema_seg_write(b, at->up) != 0)
        return -1;
    if (at->key)
        return schema_ptr_append(b, at->key, at->len);
    return buf_appendf(b, "/%zu", at->index);
}

/* vsnprintf may cut a long message (a long pattern) inside a UTF-8 sequence, which json_string
 * would refuse; drop the incomplete tail. */
static void schema_utf8_trim(char *s)
{
    size_t n = strlen(s), lead = n;
    while (lead > 0 && ((unsigned char)s[lead - 1] & 0xC0) == 0x80)
        lead--;
    if (lead == 0 || ((unsigned char)s[lead - 1] & 0x80) == 0)
        return;
    unsigned char c = (unsigned char)s[lead - 1];
    size_t want = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
    if (n - (lead - 1) < want)
        s[lead - 1] = '\0';
}

/* Records one violation. Under memory pressure the violation is still counted, just not described. */
static void schema_report_add(schema_report *r, const schema_seg *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void schema_report_add(schema_report *r, const schema_seg *at, const char *fmt, ...)
{
    r->count++;
    if (!r->out || (size_t)r->count > r->max)
        return;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    schema_utf8_trim(msg);
    buf path = {0};
    json_t *v = json_object(); /* ours until json_array_append_new takes it */
    if (v && schema_seg_write(&path, at) == 0 &&
        json_object_set_new(v, "path", json_stringn(path.data ? path.data : "", path.len)) == 0 &&
        json_object_set_new(v, "message", json_string(msg)) == 0) {
        json_array_append_new(r->out, v);
        v = NULL;
    }
    json_decref(v);
    buf_free(&path);
}

static bool schema_real_is_integral(double d)
{
    if (d >= 9007199254740992.0 || d <= -9007199254740992.0)
        return true; /* every double this large is a whole number */
    return d == (double)(long long)d;
}

/* The T_* bits an instance satisfies: an integer is also a number, an integral real also an integer. */
static unsigned schema_type_of(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return T_OBJECT;
    case JSON_ARRAY:
        return T_ARRAY;
    case JSON_STRING:
        return T_STRING;
    case JSON_INTEGER:
        return T_INTEGER | T_NUMBER;
    case JSON_REAL:
        return T_NUMBER | (schema_real_is_integral(json_real_value(v)) ? T_INTEGER : 0);
    case JSON_TRUE:
    case JSON_FALSE:
        return T_BOOLEAN;
    case JSON_NULL:
        return T_NULL;
    }
    return 0;
}

static const char *schema_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
        return "integer";
    case JSON_REAL:
        return "number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "boolean";
    case JSON_NULL:
        return "null";
    }
    return "unknown";
}

static bool schema_equal(json_t *a, json_t *b);

static bool schema_equal_object(json_t *a, json_t *b)
{
    const char *key;
    size_t klen;
    json_t *va;
    if (json_object_size(a) != json_object_size(b))
        return false;
    json_object_keylen_foreach(a, key, klen, va)
    {
        json_t *vb = json_object_getn(b, key, klen);
        if (!vb || !schema_equal(va, vb))
            return false;
    }
    return true;
}

/* json_equal, except that numbers compare by value (JSON Schema: 1 and 1.0 are the same). The
 * recursion stops at the shallower of the two, and the schema side comes from a parsed file. */
static bool schema_equal(json_t *a, json_t *b)
{
    if (json_is_number(a) && json_is_number(b)) {
        if (json_is_integer(a) && json_is_integer(b))
            return json_integer_value(a) == json_integer_value(b);
        return json_number_value(a) == json_number_value(b);
    }
    if (json_is_array(a) && json_is_array(b)) {
        if (json_array_size(a) != json_array_size(b))
            return false;
        for (size_t i = 0; i < json_array_size(a); i++)
            if (!schema_equal(json_array_get(a, i), json_array_get(b, i)))
                return false;
        return true;
    }
    if (json_is_object(a) && json_is_object(b))
        return schema_equal_object(a, b);
    return json_equal(a, b) != 0;
}

static bool schema_enum_has(const schema *s, json_t *v)
{
    for (size_t i = 0; i < json_array_size(s->enums); i++)
        if (schema_equal(json_array_get(s->enums, i), v))
            return true;
    return false;
}

static int schema_num_cmp(json_t *v, const schema_num *limit)
{
    schema_num n = {.is_int = json_is_integer(v)};
    n.i = n.is_int ? json_integer_value(v) : 0;
    n.d = n.is_int ? 0 : json_real_value(v);
    return schema_num_order(&n, limit);
}

static void schema_check_number(const schema *s, json_t *v, const schema_seg *at, schema_report *r)
{
    if (s->minimum.set && schema_num_cmp(v, &s->minimum) < 0)
        schema_report_add(r, at, "must be >= %s", s->minimum.text);
    if (s->maximum.set && schema_num_cmp(v, &s->maximum) > 0)
        schema_report_add(r, at, "must be <= %s", s->maximum.text);
    if (s->xminimum.set && schema_num_cmp(v, &s->xminimum) <= 0)
        schema_report_add(r, at, "must be > %s", s->xminimum.text);
    if (s->xmaximum.set && schema_num_cmp(v, &s->xmaximum) >= 0)
        schema_report_add(r, at, "must be < %s", s->xmaximum.text);
}

static const char *schema_plural(long long n)
{
    return n == 1 ? "" : "s";
}

/* Code points of valid UTF-8 (jansson guarantees validity): every byte that is not a continuation. */
static size_t schema_utf8_len(const char *s, size_t n)
{
    size_t cps = 0;
    for (size_t i = 0; i < n; i++)
        cps += ((unsigned char)s[i] & 0xC0) != 0x80;
    return cps;
}

static bool schema_format_ok(schema_format f, const char *str, size_t n)
{
    switch (f) {
    case FMT_EMAIL:
        return schema_is_email(str, n);
    case FMT_UUID:
        return schema_is_uuid(str, n);
    case FMT_DATE_TIME:
        return schema_is_date_time(str, n);
    case FMT_NONE:
        return true;
    }
    return true;
}

static const char *const schema_format_text[] = {
    [FMT_EMAIL] = "must be a valid email address",
    [FMT_UUID] = "must be a valid UUID",
    [FMT_DATE_TIME] = "must be a valid RFC 3339 date-time",
};

static void schema_check_string(const schema *s, json_t *v, const schema_seg *at, schema_report *r)
{
    const char *str = json_string_value(v);
    size_t n = json_string_length(v);
    if (s->min_len >= 0 || s->max_len >= 0) {
        long long cps = (long long)schema_utf8_len(str, n);
        if (s->min_len >= 0 && cps < s->min_len)
            schema_report_add(r, at, "must be at least %lld character%s long", s->min_len, schema_plural(s->min_len));
        if (s->max_len >= 0 && cps > s->max_len)
            schema_report_add(r, at, "must be at most %lld character%s long", s->max_len, schema_plural(s->max_len));
    }
    /* regexec stops at NUL; a string with an embedded NUL fails rather than match a prefix. */
    if (s->has_pattern && (strlen(str) != n || regexec(&s->pattern, str, 0, NULL, 0) != 0))
        schema_report_add(r, at, "must match pattern '%s'", s->pattern_src);
    if (s->format != FMT_NONE && !schema_format_ok(s->format, str, n))
        schema_report_add(r, at, "%s", schema_format_text[s->format]);
}

static void schema_check(const schema *s, json_t *v, const schema_seg *at, schema_report *r);

static void schema_check_array(const schema *s, json_t *v, const schema_seg *at, schema_report *r)
{
    size_t n = json_array_size(v);
    if (s->min_items >= 0 && (long long)n < s->min_items)
        schema_report_add(r, at, "must have at least %lld item%s", s->min_items, schema_plural(s->min_items));
    if (s->max_items >= 0 && (long long)n > s->max_items)
        schema_report_add(r, at, "must have at most %lld item%s", s->max_items, schema_plural(s->max_items));
    if (!s->items)
        return;
    for (size_t i = 0; i < n; i++) {
        schema_seg seg = {.up = at, .index = i};
        schema_check(s->items, json_array_get(v, i), &seg, r);
    }
}

static const schema_prop *schema_prop_find(const schema *s, const char *key, size_t klen)
{
    schema_prop probe = {.name = (char *)key, .len = klen};
    return s->nprops ? bsearch(&probe, s->props, s->nprops, sizeof *s->props, schema_prop_cmp) : NULL;
}

/* Missing required properties first (in definition order), then each present property in
 * document order: checked against its schema, or refused when additionalProperties is false. */
static void schema_check_object(const schema *s, json_t *v, const schema_seg *at, schema_report *r)
{
    for (size_t i = 0; i < s->nrequired; i++) {
        if (json_object_getn(v, s->required[i].name, s->required[i].len))
            continue;
        schema_seg seg = {.up = at, .key = s->required[i].name, .len = s->required[i].len};
        schema_report_add(r, &seg, "required property missing");
    }
    if (!s->nprops && !s->closed)
        return;
    const char *key;
    size_t klen;
    json_t *child;
    json_object_keylen_foreach(v, key, klen, child)
    {
        schema_seg seg = {.up = at, .key = key, .len = klen};
        const schema_prop *p = schema_prop_find(s, key, klen);
        if (p)
            schema_check(p->sub, child, &seg, r);
        else if (s->closed)
            schema_report_add(r, &seg, "additional property not allowed");
    }
}

/* A wrong type ends the checks for that value: its other keywords would not apply anyway. */
static void schema_check(const schema *s, json_t *v, const schema_seg *at, schema_report *r)
{
    if (s->types && !(s->types & schema_type_of(v))) {
        schema_report_add(r, at, "expected %s, got %s", s->types_text, schema_type_name(v));
        return;
    }
    if (s->constv && !schema_equal(s->constv, v))
        schema_report_add(r, at, "must equal the constant value");
    if (s->enums && !schema_enum_has(s, v))
        schema_report_add(r, at, "must be one of the allowed values");
    if (json_is_object(v))
        schema_check_object(s, v, at, r);
    else if (json_is_array(v))
        schema_check_array(s, v, at, r);
    else if (json_is_string(v))
        schema_check_string(s, v, at, r);
    else if (json_is_number(v))
        schema_check_number(s, v, at, r);
}

int schema_validate(const schema *s, json_t *instance, json_t *violations)
{
    return schema_validate_max(s, instance, violations, SIZE_MAX);
}

int schema_validate_max(const schema *s, json_t *instance, json_t *violations, size_t max)
{
    schema_report r = {.out = json_is_array(violations) ? violations : NULL, .max = max};
    schema_check(s, instance ? instance : json_null(), NULL, &r);
    return r.count;
}
