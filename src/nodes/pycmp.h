/* pycmp: Python's comparison, float() and str() over JSON values, for the nodes that must answer as
 * the SDK's Python code does (SwitchNode, FilterNode).
 *
 * JSON maps onto Python as json.loads does: null None, true/false bool (an int: True == 1), integer
 * int, real float, string str, array list, object dict. All functions are pure and thread-safe;
 * every json_t argument is borrowed. */
#ifndef KAILASH_NODES_PYCMP_H
#define KAILASH_NODES_PYCMP_H

#include <jansson.h>
#include <stddef.h>

#include "kailash/util.h"

/* A Python number: an int (bools are ints) kept exactly, or a float. */
typedef struct pycmp_num {
    int is_int;
    json_int_t i;
    double d;
} pycmp_num;

/* pycmp_order's results besides 0 (ordered, *cmp set). */
#define PYCMP_TYPE_ERROR (-1) /* Python raises TypeError ('<' between str and int, dicts, None) */
#define PYCMP_UNORDERED 1     /* a NaN is involved: every ordering is False */

/* v as a Python number into *n (bool, integer, real); 0 when v is something else. */
int pycmp_num_of(json_t *v, pycmp_num *n);
/* Orders two numbers exactly as Python does (an int and a float compare exactly, not through a
 * double): 0 with *cmp in {-1, 0, 1}, or PYCMP_UNORDERED. */
int pycmp_num_order(const pycmp_num *a, const pycmp_num *b, int *cmp);
/* Python's a == b, deep: 1, 1.0 and True are equal; a dict equals a dict with equal items. */
int pycmp_equal(json_t *a, json_t *b);
/* Python's ordering of a and b: numbers numerically, str by code point (= UTF-8 bytes), lists
 * lexicographically (the first unequal pair decides, then the length); anything else is
 * PYCMP_TYPE_ERROR. 0 with *cmp in {-1, 0, 1}, or PYCMP_TYPE_ERROR / PYCMP_UNORDERED. */
int pycmp_order(json_t *a, json_t *b, int *cmp);
/* Python's float(s) of the n bytes at s: surrounding whitespace, a sign, '_' between digits,
 * "inf"/"infinity"/"nan" in any case, any Unicode decimal digit ("\u0663" is 3); no hex (strtod's).
 * 1 with *d, or 0 where Python raises ValueError. */
int pycmp_float_parse(const char *s, size_t n, double *d);
/* Python's repr() of a finite double into out ("2.0", "1e+20", "1.5e-07"). */
void pycmp_real_repr(double d, char *out, size_t outlen);
/* Appends Python's str(v) to b: a str as is, containers with repr()'d items ("{'a': [1, None]}").
 * 0, or -1 when memory runs out. */
int pycmp_str_append(buf *b, json_t *v);

#endif
