/* pycmp: Python's ==, ordering, float() and str() over JSON values (see pycmp.h).
 *
 * The SDK's nodes are plain Python, so their answers follow Python's rules, not JSON's or C's:
 * True == 1, an int and a float compare exactly (2**53 + 1 != 2.0**53), '<' between a str and an
 * int raises, lists order lexicographically, float(" 1_000 ") is 1000.0, str([1, 'a']) is
 * "[1, 'a']". One file keeps those rules in one place for every node that needs them.
 *
 * Recursion follows the values' nesting, which jansson's parser bounds (2048 levels). Equality,
 * ordering and str() are linear in the values' size. */
#include "pycmp.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int pycmp_num_of(json_t *v, pycmp_num *n)
{
    if (json_is_boolean(v)) {
        n->is_int = 1;
        n->i = json_is_true(v);
    } else if (json_is_integer(v)) {
        n->is_int = 1;
        n->i = json_integer_value(v);
    } else if (json_is_real(v)) {
        n->is_int = 0;
        n->d = json_real_value(v);
    } else {
        return 0;
    }
    return 1;
}

/* Orders int i against a non-NaN double d exactly: -1, 0 or 1. */
static int pycmp_int_float(json_int_t i, double d)
{
    if (d >= 9223372036854775808.0) /* 2**63: above every int64 */
        return -1;
    if (d < -9223372036854775808.0)
        return 1;
    double t = trunc(d); /* |t| < 2**63 here, so the cast is exact */
    json_int_t ti = (json_int_t)t;
    if (i != ti)
        return i < ti ? -1 : 1;
    double frac = d - t;
    return frac > 0 ? -1 : frac < 0 ? 1 : 0;
}

int pycmp_num_order(const pycmp_num *a, const pycmp_num *b, int *cmp)
{
    if (a->is_int && b->is_int) {
        *cmp = (a->i > b->i) - (a->i < b->i);
        return 0;
    }
    if ((!a->is_int && isnan(a->d)) || (!b->is_int && isnan(b->d)))
        return PYCMP_UNORDERED;
    if (a->is_int)
        *cmp = pycmp_int_float(a->i, b->d);
    else if (b->is_int)
        *cmp = -pycmp_int_float(b->i, a->d);
    else
        *cmp = (a->d > b->d) - (a->d < b->d);
    return 0;
}

int pycmp_equal(json_t *a, json_t *b)
{
    pycmp_num x, y;
    int c;
    if (pycmp_num_of(a, &x) && pycmp_num_of(b, &y))
        return pycmp_num_order(&x, &y, &c) == 0 && c == 0;
    if (json_is_array(a) && json_is_array(b)) {
        if (json_array_size(a) != json_array_size(b))
            return 0;
        for (size_t i = 0; i < json_array_size(a); i++)
            if (!pycmp_equal(json_array_get(a, i), json_array_get(b, i)))
                return 0;
        return 1;
    }
    if (json_is_object(a) && json_is_object(b)) {
        if (json_object_size(a) != json_object_size(b))
            return 0;
        const char *k;
        size_t klen;
        json_t *va;
        json_object_keylen_foreach(a, k, klen, va)
        {
            json_t *vb = json_object_getn(b, k, klen);
            if (!vb || !pycmp_equal(va, vb))
                return 0;
        }
        return 1;
    }
    return json_equal(a, b); /* strings bytewise, null == null; different kinds are unequal */
}

/* Python's ordering of a and b as items inside two lists being ordered: the first pair that is not
 * == decides, with the operator Python then applies to it. 0 with *cmp (0 exactly when pycmp_equal),
 * PYCMP_UNORDERED (a NaN decides: every ordering is False), or PYCMP_TYPE_ERROR (a pair that is not
 * equal and has no order). One pass, each item visited once: equality first and ordering after, as
 * Python spells it, re-walks the rest of the nesting at every level, which made a 1 MB list nested
 * 2000 deep cost seconds. */
static int pycmp_order_item(json_t *a, json_t *b, int *cmp)
{
    pycmp_num x, y;
    if (pycmp_num_of(a, &x) && pycmp_num_of(b, &y))
        return pycmp_num_order(&x, &y, cmp);
    if (json_is_string(a) && json_is_string(b)) {
        size_t la = json_string_length(a), lb = json_string_length(b);
        int c = memcmp(json_string_value(a), json_string_value(b), la < lb ? la : lb);
        *cmp = c ? (c > 0) - (c < 0) : (la > lb) - (la < lb);
        return 0;
    }
    if (json_is_array(a) && json_is_array(b)) {
        size_t na = json_array_size(a), nb = json_array_size(b);
        for (size_t i = 0; i < na && i < nb; i++) {
            int rc = pycmp_order_item(json_array_get(a, i), json_array_get(b, i), cmp);
            if (rc != 0 || *cmp != 0)
                return rc;
        }
        *cmp = (na > nb) - (na < nb);
        return 0;
    }
    *cmp = 0; /* equal dicts or Nones are skipped over; unequal ones (or kinds) raise TypeError */
    return pycmp_equal(a, b) ? 0 : PYCMP_TYPE_ERROR;
}

int pycmp_order(json_t *a, json_t *b, int *cmp)
{
    pycmp_num x, y;
    int orderable = (pycmp_num_of(a, &x) && pycmp_num_of(b, &y)) || (json_is_string(a) && json_is_string(b)) ||
                    (json_is_array(a) && json_is_array(b));
    return orderable ? pycmp_order_item(a, b, cmp) : PYCMP_TYPE_ERROR; /* None < None raises too */
}

/* ---- float() ------------------------------------------------------------------------------------ */

/* The length of the whitespace character at p (as Python's str.isspace counts it), or 0. */
static size_t pycmp_space_len(const unsigned char *p, const unsigned char *end)
{
    size_t left = (size_t)(end - p);
    if (*p == ' ' || (*p >= '\t' && *p <= '\r') || (*p >= 0x1c && *p <= 0x1f))
        return 1;
    if (left >= 2 && p[0] == 0xc2 && (p[1] == 0x85 || p[1] == 0xa0))
        return 2;
    if (left < 3)
        return 0;
    if ((p[0] == 0xe1 && p[1] == 0x9a && p[2] == 0x80) ||                 /* U+1680 */
        (p[0] == 0xe2 && p[1] == 0x80 && p[2] >= 0x80 && p[2] <= 0x8a) || /* U+2000..U+200A */
        (p[0] == 0xe2 && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9 || p[2] == 0xaf)) ||
        (p[0] == 0xe2 && p[1] == 0x81 && p[2] == 0x9f) || (p[0] == 0xe3 && p[1] == 0x80 && p[2] == 0x80))
        return 3;
    return 0;
}

/* Copies digits (with '_' only between two digits) from *p to out; the number of digits, or -1. */
static long pycmp_digits(const char **p, const char *end, char *out, size_t *o)
{
    long n = 0;
    while (*p < end) {
        char c = **p;
        if (c >= '0' && c <= '9') {
            out[(*o)++] = c;
            n++;
            (*p)++;
        } else if (c == '_' && n > 0 && *p + 1 < end && (*p)[1] >= '0' && (*p)[1] <= '9') {
            (*p)++;
        } else {
            break;
        }
    }
    return n;
}

/* Python's float() of an already stripped, non-empty ASCII span. */
static int pycmp_float_body(const char *p, const char *end, double *d)
{
    size_t n = (size_t)(end - p), o = 0;
    char *out = malloc(n + 1);
    if (!out)
        return 0;
    if (*p == '+' || *p == '-')
        out[o++] = *p++;
    size_t word = (size_t)(end - p);
    static const char *const words[] = {"inf", "infinity", "nan"};
    for (size_t w = 0; w < 3; w++)
        if (word == strlen(words[w]) && strncasecmp(p, words[w], word) == 0) {
            *d = w == 2 ? NAN : (out[0] == '-' ? -INFINITY : INFINITY);
            free(out);
            return 1;
        }
    long whole = pycmp_digits(&p, end, out, &o), frac = 0;
    if (p < end && *p == '.') {
        out[o++] = *p++;
        frac = pycmp_digits(&p, end, out, &o);
    }
    int ok = whole + frac > 0;
    if (ok && p < end && (*p == 'e' || *p == 'E')) {
        out[o++] = *p++;
        if (p < end && (*p == '+' || *p == '-'))
            out[o++] = *p++;
        ok = pycmp_digits(&p, end, out, &o) > 0;
    }
    ok = ok && p == end;
    out[o] = '\0';
    if (ok)
        *d = strtod(out, NULL); /* overflow gives ±inf and underflow 0, as Python's float() */
    free(out);
    return ok;
}

/* The zero of each run of ten Unicode decimal digits (category Nd) above ASCII, from the Unicode 14
 * tables of the SDK's Python (3.11): float("\u0663") is 3.0, float("\uff11\uff12") 12.0. */
static const unsigned pycmp_digit_zeros[] = {
    0x660,   0x6f0,   0x7c0,   0x966,   0x9e6,   0xa66,   0xae6,   0xb66,   0xbe6,   0xc66,   0xce6,
    0xd66,   0xde6,   0xe50,   0xed0,   0xf20,   0x1040,  0x1090,  0x17e0,  0x1810,  0x1946,  0x19d0,
    0x1a80,  0x1a90,  0x1b50,  0x1bb0,  0x1c40,  0x1c50,  0xa620,  0xa8d0,  0xa900,  0xa9d0,  0xa9f0,
    0xaa50,  0xabf0,  0xff10,  0x104a0, 0x10d30, 0x11066, 0x110f0, 0x11136, 0x111d0, 0x112f0, 0x11450,
    0x114d0, 0x11650, 0x116c0, 0x11730, 0x118e0, 0x11950, 0x11c50, 0x11d50, 0x11da0, 0x16a60, 0x16ac0,
    0x16b50, 0x1d7ce, 0x1d7d8, 0x1d7e2, 0x1d7ec, 0x1d7f6, 0x1e140, 0x1e2f0, 0x1e950, 0x1fbf0,
};

static size_t pycmp_utf8(const unsigned char *p, size_t left, unsigned *cp);

/* Python's float() of a stripped span holding non-ASCII characters: as Python does, each Unicode
 * decimal digit reads as its ASCII digit, and any other non-ASCII character makes it no number. */
static int pycmp_float_unicode(const unsigned char *p, size_t n, double *d)
{
    char *ascii = malloc(n + 1);
    size_t o = 0, i = 0;
    int ok = ascii != NULL;
    while (ok && i < n) {
        unsigned c;
        i += pycmp_utf8(p + i, n - i, &c);
        size_t z = 0, nz = sizeof pycmp_digit_zeros / sizeof pycmp_digit_zeros[0];
        while (c >= 0x80 && z < nz && !(c >= pycmp_digit_zeros[z] && c <= pycmp_digit_zeros[z] + 9))
            z++;
        ok = c < 0x80 || z < nz;
        if (ok)
            ascii[o++] = c < 0x80 ? (char)c : (char)('0' + (c - pycmp_digit_zeros[z]));
    }
    ok = ok && pycmp_float_body(ascii, ascii + o, d);
    free(ascii);
    return ok;
}

int pycmp_float_parse(const char *s, size_t n, double *d)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + n, *last = p;
    size_t sp;
    while (p < end && (sp = pycmp_space_len(p, end)) > 0)
        p += sp;
    const unsigned char *start = p;
    while (p < end) { /* the end of the last character that is not whitespace */
        sp = pycmp_space_len(p, end);
        p += sp ? sp : 1;
        if (!sp)
            last = p;
    }
    if (last <= start)
        return 0;
    int ascii = 1;
    for (const unsigned char *q = start; q < last; q++) {
        if (*q == 0) /* NUL is never valid */
            return 0;
        ascii &= *q < 0x80;
    }
    if (ascii)
        return pycmp_float_body((const char *)start, (const char *)last, d);
    return pycmp_float_unicode(start, (size_t)(last - start), d);
}

/* ---- str() and repr() ----------------------------------------------------------------------------- */

void pycmp_real_repr(double d, char *out, size_t outlen)
{
    char e[48], digits[24] = {0}, s[64];
    for (int prec = 0; prec < DBL_DECIMAL_DIG; prec++) {
        snprintf(e, sizeof e, "%.*e", prec, d);
        if (strtod(e, NULL) == d)
            break;
    }
    /* e is "[-]D[.DDD]e[+-]XX": the shortest digits that read back as d. */
    size_t nd = 0, n = 0;
    const char *p = e;
    if (*p == '-')
        s[n++] = *p++;
    for (; *p != 'e'; p++)
        if (*p != '.')
            digits[nd++] = *p;
    int exp = atoi(p + 1);
    if (exp < -4 || exp >= 16) {
        s[n++] = digits[0];
        if (nd > 1)
            s[n++] = '.';
        for (size_t i = 1; i < nd; i++)
            s[n++] = digits[i];
        snprintf(s + n, sizeof s - n, "e%c%02d", exp < 0 ? '-' : '+', abs(exp));
    } else if (exp < 0) {
        s[n++] = '0';
        s[n++] = '.';
        for (int i = -1; i > exp; i--)
            s[n++] = '0';
        for (size_t i = 0; i < nd; i++)
            s[n++] = digits[i];
        s[n] = '\0';
    } else {
        for (size_t i = 0; i <= (size_t)exp; i++)
            s[n++] = i < nd ? digits[i] : '0';
        s[n++] = '.';
        for (size_t i = (size_t)exp + 1; i < nd; i++)
            s[n++] = digits[i];
        if ((size_t)exp + 1 >= nd)
            s[n++] = '0';
        s[n] = '\0';
    }
    snprintf(out, outlen, "%s", s);
}

/* Decodes the UTF-8 character at p (jansson keeps strings valid UTF-8) into *cp; its length. */
static size_t pycmp_utf8(const unsigned char *p, size_t left, unsigned *cp)
{
    size_t len = *p < 0x80 ? 1 : *p < 0xe0 ? 2 : *p < 0xf0 ? 3 : 4;
    if (len > left)
        len = left;
    unsigned v = len == 1 ? *p : len == 2 ? *p & 0x1fu : len == 3 ? *p & 0x0fu : *p & 0x07u;
    for (size_t i = 1; i < len; i++)
        v = (v << 6) | (p[i] & 0x3fu);
    *cp = v;
    return len;
}

/* Whether repr() escapes a non-ASCII code point: Python escapes what is not printable (controls,
 * format characters, separators but ' ', private use). This covers those blocks; code points
 * unassigned in Python's Unicode tables are shown as they are. */
static int pycmp_unprintable(unsigned c)
{
    static const unsigned ranges[][2] = {
        {0x80, 0xa0},       {0xad, 0xad},       {0x600, 0x605},     {0x61c, 0x61c},   {0x6dd, 0x6dd},
        {0x70f, 0x70f},     {0x180e, 0x180e},   {0x1680, 0x1680},   {0x2000, 0x200f}, {0x2028, 0x202f},
        {0x205f, 0x2064},   {0x2066, 0x206f},   {0x3000, 0x3000},   {0xd800, 0xf8ff}, {0xfeff, 0xfeff},
        {0xfff9, 0xfffb},   {0xfffe, 0xffff},   {0xe0001, 0xe0001}, {0xe0020, 0xe007f},
        {0xf0000, 0x10ffff},
    };
    for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++)
        if (c >= ranges[i][0] && c <= ranges[i][1])
            return 1;
    return 0;
}

/* Appends Python's repr() of the n bytes of UTF-8 at s. */
static int pycmp_repr_str(buf *b, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    int has_single = memchr(s, '\'', n) != NULL, has_double = memchr(s, '"', n) != NULL;
    char q = has_single && !has_double ? '"' : '\'';
    if (buf_append(b, &q, 1) != 0)
        return -1;
    for (size_t i = 0; i < n;) {
        unsigned c;
        size_t len = pycmp_utf8(p + i, n - i, &c);
        int rc;
        if (c == (unsigned)q || c == '\\')
            rc = buf_appendf(b, "\\%c", (char)c);
        else if (c == '\t' || c == '\n' || c == '\r')
            rc = buf_appendf(b, "\\%c", c == '\t' ? 't' : c == '\n' ? 'n' : 'r');
        else if (c < 0x20 || c == 0x7f || (c >= 0x80 && c <= 0xff && pycmp_unprintable(c)))
            rc = buf_appendf(b, "\\x%02x", c);
        else if (c > 0xff && c <= 0xffff && pycmp_unprintable(c))
            rc = buf_appendf(b, "\\u%04x", c);
        else if (c > 0xffff && pycmp_unprintable(c))
            rc = buf_appendf(b, "\\U%08x", c);
        else
            rc = buf_append(b, p + i, len);
        if (rc != 0)
            return -1;
        i += len;
    }
    return buf_append(b, &q, 1);
}

/* Appends repr(v) (as str() shows the items of a container). */
static int pycmp_repr_append(buf *b, json_t *v)
{
    if (json_is_string(v))
        return pycmp_repr_str(b, json_string_value(v), json_string_length(v));
    return pycmp_str_append(b, v);
}

int pycmp_str_append(buf *b, json_t *v)
{
    if (json_is_string(v))
        return buf_append(b, json_string_value(v), json_string_length(v));
    if (json_is_null(v))
        return buf_append(b, "None", 4);
    if (json_is_boolean(v))
        return json_is_true(v) ? buf_append(b, "True", 4) : buf_append(b, "False", 5);
    if (json_is_integer(v))
        return buf_appendf(b, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    if (json_is_real(v)) {
        char r[64];
        pycmp_real_repr(json_real_value(v), r, sizeof r);
        return buf_append(b, r, strlen(r));
    }
    if (json_is_array(v)) {
        size_t i;
        json_t *e;
        if (buf_append(b, "[", 1) != 0)
            return -1;
        json_array_foreach(v, i, e)
        {
            if ((i > 0 && buf_append(b, ", ", 2) != 0) || pycmp_repr_append(b, e) != 0)
                return -1;
        }
        return buf_append(b, "]", 1);
    }
    const char *k;
    size_t klen;
    json_t *e;
    int first = 1;
    if (buf_append(b, "{", 1) != 0)
        return -1;
    json_object_keylen_foreach(v, k, klen, e)
    {
        if ((!first && buf_append(b, ", ", 2) != 0) || pycmp_repr_str(b, k, klen) != 0 ||
            buf_append(b, ": ", 2) != 0 || pycmp_repr_append(b, e) != 0)
            return -1;
        first = 0;
    }
    return buf_append(b, "}", 1);
}
