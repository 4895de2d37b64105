/* MergeNode: joins up to five inputs (data1..data5) into `merged_data` (the SDK's Merge).
 *
 * The present inputs are taken in order data1..data5; an absent one (its switch branch did not fire)
 * is simply missing, and a null one is dropped too, whatever skip_none says (the SDK's MergeNode
 * collects only inputs that are not None before it reads skip_none). No input gives null
 * and a single input passes through unchanged, whatever merge_type says. For two or more:
 *   concat      arrays only: concatenated; otherwise a list of the inputs themselves (an array
 *               among them stays one element, as in the SDK);
 *   zip         [[a0, b0, ...], [a1, b1, ...], ...] up to the shortest input (a non-array counts
 *               as a one-element array, as in the SDK);
 *   merge_dict  objects are merged left to right, later keys winning (shallow); with `key`, arrays of
 *               objects are joined on that key as the SDK joins them: data1 is kept as it is
 *               (duplicates and items without the key included); each later array's objects update
 *               the earlier objects with an equal key value (1, 1.0 and true are equal, as in
 *               Python), and its objects with a key value not seen before are appended; its items
 *               without the key are dropped.
 *
 * Inputs are shared with other threads, so nothing here is modified: results are new containers that
 * hold references to the input values, and a joined object is a new shallow copy. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kailash/node.h"
#include "kailash/util.h"

enum merge_kind { MERGE_CONCAT, MERGE_ZIP, MERGE_DICT };

#define MERGE_INPUTS 5
#define MERGE_TYPE_EXPECTED "expected one of concat zip merge_dict"

static const char *const merge_keys[] = {"data1",      "data2", "data3",     "data4", "data5",
                                         "merge_type", "key",   "skip_none", NULL};
static const char *const merge_ports[] = {"data1", "data2", "data3", "data4", "data5", NULL};

typedef struct merge_opts {
    int kind;
    const char *key; /* borrowed from the inputs; NULL without a key */
} merge_opts;

/* Reads merge_type, key and skip_none from src (config at load, inputs at run) into o; absent or
 * null means the default. at_load skips template strings. Returns 0 or -1 with "key: expected ...". */
static int merge_read_opts(json_t *src, int at_load, merge_opts *o, char *msg, size_t msglen)
{
    json_t *type = json_object_get(src, "merge_type");
    json_t *key = json_object_get(src, "key");
    json_t *skip = json_object_get(src, "skip_none");
    *o = (merge_opts){.kind = MERGE_CONCAT, .key = NULL};
    if (type && !json_is_null(type) && !(at_load && tmpl_value_has_expr(type))) {
        const char *t = json_is_string(type) ? json_string_value(type) : "";
        if (strcmp(t, "concat") == 0)
            o->kind = MERGE_CONCAT;
        else if (strcmp(t, "zip") == 0)
            o->kind = MERGE_ZIP;
        else if (strcmp(t, "merge_dict") == 0)
            o->kind = MERGE_DICT;
        else
            return util_err(msg, msglen, "merge_type: " MERGE_TYPE_EXPECTED);
    }
    if (key && !json_is_null(key)) {
        if (!json_is_string(key))
            return util_err(msg, msglen, "key: expected a string");
        o->key = json_string_value(key);
    }
    if (skip && !json_is_null(skip) && !(at_load && tmpl_value_has_expr(skip))) {
        if (!json_is_boolean(skip))
            return util_err(msg, msglen, "skip_none: expected a boolean");
    }
    return 0;
}

static int merge_compile(const node_env *env, json_t *config, void **compiled, char *err, size_t errlen)
{
    (void)env;
    *compiled = NULL;
    merge_opts o;
    char msg[200];
    if (merge_read_opts(config, 1, &o, msg, sizeof msg) != 0)
        return util_err(err, errlen, "config.%s", msg);
    return 0;
}

static int merge_has_output(const void *compiled, const char *port)
{
    (void)compiled;
    return strcmp(port, "merged_data") == 0;
}

/* 1 when every input has type is_type. */
static int merge_all(json_t *const *in, size_t n, int (*is_type)(const json_t *))
{
    for (size_t i = 0; i < n; i++)
        if (!is_type(in[i]))
            return 0;
    return 1;
}

static int merge_is_object(const json_t *v)
{
    return json_is_object(v);
}
static int merge_is_array(const json_t *v)
{
    return json_is_array(v);
}

/* concat: arrays only: a new array of their elements; otherwise a new array of the inputs
 * themselves, arrays included as one element each (the SDK's rule). */
static json_t *merge_concat(json_t *const *in, size_t n)
{
    int flat = merge_all(in, n, merge_is_array);
    json_t *out = json_array();
    for (size_t i = 0; out && i < n; i++) {
        /* extend and append both take their own references. */
        int rc = flat ? json_array_extend(out, in[i]) : json_array_append(out, in[i]);
        if (rc != 0) {
            json_decref(out);
            out = NULL;
        }
    }
    return out;
}

/* Element j of input v for zip: a non-array is a one-element array. Borrowed. */
static json_t *merge_zip_at(json_t *v, size_t j)
{
    return json_is_array(v) ? json_array_get(v, j) : v;
}

/* zip: a new array of new arrays, as long as the shortest input. */
static json_t *merge_zip(json_t *const *in, size_t n)
{
    size_t len = (size_t)-1;
    for (size_t i = 0; i < n; i++) {
        size_t l = json_is_array(in[i]) ? json_array_size(in[i]) : 1;
        len = l < len ? l : len;
    }
    json_t *out = json_array();
    for (size_t j = 0; out && j < len; j++) {
        json_t *row = json_array();
        for (size_t i = 0; row && i < n; i++)
            if (json_array_append(row, merge_zip_at(in[i], j)) != 0) {
                json_decref(row);
                row = NULL;
            }
        if (!row || json_array_append_new(out, row) != 0) { /* append_new consumes row */
            json_decref(out);
            out = NULL;
        }
    }
    return out;
}

/* merge_dict of objects: a new object updated left to right (update takes its own references). */
static json_t *merge_objects(json_t *const *in, size_t n)
{
    json_t *out = json_object();
    for (size_t i = 0; out && i < n; i++)
        if (json_object_update(out, in[i]) != 0) {
            json_decref(out);
            out = NULL;
        }
    return out;
}

/* A new object: the keys of a, then those of b (b wins). Neither is modified. */
static json_t *merge_two_objects(json_t *a, json_t *b)
{
    json_t *both = json_object();
    if (both && (json_object_update(both, a) != 0 || json_object_update(both, b) != 0)) {
        json_decref(both);
        both = NULL;
    }
    return both;
}

/* The key string of item's key value (a missing key reads as null, as Python's item.get(key)), or
 * -1 when memory runs out. */
static int merge_item_key(json_t *item, const char *key, buf *ks)
{
    json_t *kv = json_object_get(item, key);
    ks->len = 0;
    return util_json_py_key(kv ? kv : json_null(), ks);
}

/* Objects of list by key string (the last one of equal keys wins), into index (new object). */
static json_t *merge_index(json_t *list, const char *key, buf *ks)
{
    json_t *index = json_object();
    size_t j;
    json_t *item;
    json_array_foreach(list, j, item)
    {
        if (!index || !json_is_object(item))
            continue;
        if (merge_item_key(item, key, ks) != 0 || json_object_setn(index, ks->data, ks->len, item) != 0) {
            json_decref(index);
            index = NULL;
        }
    }
    return index;
}

/* Joins list into out as the SDK does: each object of out that has the key takes the members of
 * list's object with an equal key value; then list's objects that have the key and whose value no
 * object of out had are appended (duplicates among them all). Other items of list are dropped. */
static int merge_join_list(json_t *out, json_t *list, const char *key)
{
    buf ks = {0};
    json_t *index = merge_index(list, key, &ks), *seen = json_object();
    int rc = index && seen ? 0 : -1;
    size_t j;
    json_t *item;
    json_array_foreach(out, j, item)
    {
        if (rc != 0 || !json_is_object(item) || !json_object_get(item, key))
            continue;
        if ((rc = merge_item_key(item, key, &ks)) != 0 || (rc = json_object_setn(seen, ks.data, ks.len, json_null())))
            break;
        json_t *other = json_object_getn(index, ks.data, ks.len);
        /* A new copy: the earlier object may be an input's, which must stay untouched. */
        json_t *joined = other ? merge_two_objects(item, other) : NULL;
        if (other)
            rc = joined ? json_array_set_new(out, j, joined) : -1; /* set_new consumes joined */
    }
    json_array_foreach(list, j, item)
    {
        if (rc != 0 || !json_is_object(item) || !json_object_get(item, key))
            continue;
        if ((rc = merge_item_key(item, key, &ks)) == 0 && !json_object_getn(seen, ks.data, ks.len))
            rc = json_array_append(out, item);
    }
    json_decref(index);
    json_decref(seen);
    buf_free(&ks);
    return rc;
}

/* merge_dict with key over arrays: the first array as it is, the others joined into it in turn. */
static json_t *merge_join(json_t *const *in, size_t n, const char *key)
{
    json_t *out = json_array();
    int rc = out ? json_array_extend(out, in[0]) : -1;
    for (size_t i = 1; rc == 0 && i < n; i++)
        rc = merge_join_list(out, in[i], key);
    if (rc != 0) {
        json_decref(out);
        return NULL;
    }
    return out;
}

/* merged_data for two or more inputs (new reference), or NULL with err filled. */
static json_t *merge_many(const merge_opts *o, json_t *const *in, size_t n, node_error *err)
{
    json_t *out;
    if (o->kind == MERGE_CONCAT)
        out = merge_concat(in, n);
    else if (o->kind == MERGE_ZIP)
        out = merge_zip(in, n);
    else if (merge_all(in, n, merge_is_object))
        out = merge_objects(in, n);
    else if (o->key && merge_all(in, n, merge_is_array))
        out = merge_join(in, n, o->key);
    else {
        node_fail(err, "internal", "merge_dict: expected objects, or arrays of objects with a key");
        return NULL;
    }
    if (!out)
        node_fail(err, "internal", "out of memory");
    return out;
}

static int merge_run(const void *compiled, node_call *call, json_t **outputs, node_error *err)
{
    (void)compiled;
    merge_opts o;
    char msg[200];
    if (merge_read_opts(call->inputs, 0, &o, msg, sizeof msg) != 0)
        return node_fail(err, "internal", "%s", msg);
    json_t *in[MERGE_INPUTS]; /* borrowed from the inputs */
    size_t n = 0;
    for (int i = 0; i < MERGE_INPUTS; i++) {
        json_t *v = json_object_get(call->inputs, merge_ports[i]);
        if (v && !json_is_null(v))
            in[n++] = v;
    }
    json_t *merged = n == 0 ? json_null() : n == 1 ? json_incref(in[0]) : merge_many(&o, in, n, err);
    if (!merged)
        return -1;
    json_t *out = json_object();
    if (!out) {
        json_decref(merged);
        return node_fail(err, "internal", "out of memory");
    }
    if (json_object_set_new(out, "merged_data", merged) != 0) { /* consumes merged even on failure */
        json_decref(out);
        return node_fail(err, "internal", "out of memory");
    }
    *outputs = out;
    return 0;
}

/* AsyncMergeNode's chunk size (the registry's alias for this node shares its keys). */
static const node_sdk_default merge_sdk_defaults[] = {
    {"chunk_size", "1000"},
    {NULL, NULL},
};

const node_type node_merge = {
    .name = "MergeNode",
    .config_keys = merge_keys,
    .sdk_defaults = merge_sdk_defaults,
    .input_ports = merge_ports,
    .compile = merge_compile,
    .has_output = merge_has_output,
    .run = merge_run,
    .start = NULL,
    .free = NULL,
};
