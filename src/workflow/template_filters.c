/* template_filters: the filters of the template language (WORKFLOWS.md) and their table.
 *
 * A filter rewrites a tmpl_val in place: borrowed values pass through untouched, new ones are held
 * (see template_internal.h). Null passes through every filter except default (replaces it), json
 * ("null"), string (""), bool (false) and length (0). Messages name the filter and the value's type,
 * never the value. Adding a filter: write tmpl_f_NAME and add a row to tmpl_filters. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "template_internal.h"

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

/* ---- the filter table ------------------------------------------------------------------------- */

static const tmpl_filter_def tmpl_filters[] = {
    {"default", 1, tmpl_f_default}, {"json", 0, tmpl_f_json}, {"string", 0, tmpl_f_string}, {"int", 0, tmpl_f_int},
    {"float", 0, tmpl_f_float},     {"bool", 0, tmpl_f_bool}, {"lower", 0, tmpl_f_lower},   {"upper", 0, tmpl_f_upper},
    {"length", 0, tmpl_f_length},   {"url", 0, tmpl_f_url},   {"first", 0, tmpl_f_first},   {"last", 0, tmpl_f_last},
    {"keys", 0, tmpl_f_keys},
};

const tmpl_filter_def *tmpl_filter_find(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof tmpl_filters / sizeof tmpl_filters[0]; i++)
        if (strlen(tmpl_filters[i].name) == len && memcmp(tmpl_filters[i].name, name, len) == 0)
            return &tmpl_filters[i];
    return NULL;
}
