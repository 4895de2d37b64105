/* BatchReaderNode and BatchProcessorNode: a list of items cut into batches of `batch_size`.
 *
 * The items are `data_items` (any JSON list) or the records of the file `file_path` (inside data_dir,
 * resolved and read as the file nodes do, file.c, at most 64 MiB): by its name, a .csv file is read
 * as CSVReaderNode reads it with headers (the rows as objects; its own run() does the reading), a
 * .jsonl or .ndjson file holds one JSON value per non-blank line, and anything else is one JSON
 * document that must be a list. One of the two sources, not both. Both types may read a file, so
 * both run on the worker pool (may_block), never on an I/O loop.
 *
 * Outputs: `batches` (the list of batches, each a list, in order), `count` (the number of items),
 * and the ports of the SDK's BatchProcessorNode (kailash/nodes/enterprise/batch_processor.py,
 * operation "process_data" with its default pass-through processing): success, processed_items,
 * failed_items, total_batches, successful_batches, failed_batches, batch_size_used, results (the
 * items again, as the SDK's pass-through returns them). The SDK has no BatchReaderNode; kailashd's
 * is the same node without the SDK's adaptive sizing.
 *
 * BatchProcessorNode follows the SDK where its behaviour is data, not Python: with
 * adaptive_batch_size (the SDK's default, true) the batch size is capped by the SDK's formula
 * min(memory_limit_mb * 1024, rate * workers * clamp(60 / (rate * workers), 1, 10), items), at
 * least 1; an empty data_items is an error, as the SDK raises one. It does not sleep between
 * batches for rate_limit_per_second (a gateway does not pace a pass-through) and reports no
 * timings; processing_code, processing_function, progress_callback and the api/database operations
 * are Python callables or network features it lacks, accepted at their defaults only. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "file.h"
#include "kailash/node.h"
#include "kailash/util.h"

#define BATCH_MAX_SIZE 1000000
#define BATCH_DEFAULT_SIZE 100 /* the SDK's default */

extern const node_type node_csv_reader;

/* ======================================================================== config */

/* Is v set (present, not null) and, at load, literal? */
static int batch_given(json_t *v, int at_load)
{
    return v && !json_is_null(v) && !(at_load && tmpl_value_has_expr(v));
}

static int batch_check_size(json_t *v, const char *pfx, char *err, size_t errlen)
{
    if (json_is_integer(v) && json_integer_value(v) >= 1 && json_integer_value(v) <= BATCH_MAX_SIZE)
        return 0;
    return util_err(err, errlen, "%sbatch_size: expected an integer from 1 to %d", pfx, BATCH_MAX_SIZE);
}

/* A positive number key of BatchProcessorNode's sizing (rate_limit_per_second, parallel_workers,
 * memory_limit_mb). */
static int batch_check_positive(json_t *obj, const char *key, int integer, int at_load, char *err, size_t errlen)
{
    json_t *v = json_object_get(obj, key);
    if (!batch_given(v, at_load))
        return 0;
    if ((integer ? json_is_integer(v) : json_is_number(v)) && json_number_value(v) > 0 && json_number_value(v) <= 1e9)
        return 0;
    return util_err(err, errlen, "%s%s: expected a %s > 0", at_load ? "config." : "", key,
                    integer ? "integer" : "number");
}

/* The checks both node types share, on config (at_load) or on a run's inputs. */
static int batch_check(json_t *obj, int processor, int at_load, char *err, size_t errlen)
{
    const char *pfx = at_load ? "config." : "";
    json_t *items = json_object_get(obj, "data_items"), *path = json_object_get(obj, "file_path");
    json_t *size = json_object_get(obj, "batch_size");
    if (batch_given(items, at_load) && !json_is_array(items))
        return util_err(err, errlen, "%sdata_items: expected a list", pfx);
    if (batch_given(path, at_load) && !json_is_string(path))
        return util_err(err, errlen, "%sfile_path: expected a string", pfx);
    if (items && !json_is_null(items) && path && !json_is_null(path))
        return util_err(err, errlen, "%sfile_path and data_items: give one of them, not both", pfx);
    if (batch_given(size, at_load) && batch_check_size(size, pfx, err, errlen) != 0)
        return -1;
    if (!processor)
        return 0;
    json_t *op = json_object_get(obj, "operation"), *adaptive = json_object_get(obj, "adaptive_batch_size");
    if (batch_given(op, at_load) && !(json_is_string(op) && strcmp(json_string_value(op), "process_data") == 0))
        return util_err(err, errlen, "%soperation: only \"process_data\" is supported", pfx);
    if (batch_given(adaptive, at_load) && !json_is_boolean(adaptive))
        return util_err(err, errlen, "%sadaptive_batch_size: expected true or false", pfx);
    return batch_check_positive(obj, "rate_limit_per_second", 0, at_load, err, errlen) != 0 ||
                   batch_check_positive(obj, "parallel_workers", 1, at_load, err, errlen) != 0 ||
                   batch_check_positive(obj, "memory_limit_mb", 1, at_load, err, errlen) != 0
               ? -1
               : 0;
}

static int batch_compile_as(int processor, const node_env *env, json_t *config, void **compiled, char *err,
                            size_t errlen)
{
    if (batch_check(config, processor, 1, err, errlen) != 0)
        return -1;
    return node_file_compile(env, config, compiled, err, errlen); /* file_path inside data_dir; data_dir kept */
}

static int batch_reader_compile(const node_env *env, json_t *config, void **compiled, char *err, size_t errlen)
{
    return batch_compile_as(0, env, config, compiled, err, errlen);
}

static int batch_processor_compile(const node_env *env, json_t *config, void **compiled, char *err, size_t errlen)
{
    return batch_compile_as(1, env, config, compiled, err, errlen);
}

/* ======================================================================== reading the items */

static int batch_ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcasecmp(s + n - k, suffix) == 0;
}

/* One JSON value per non-blank line. */
static json_t *batch_parse_lines(const char *text, size_t len, const char *given, node_error *err)
{
    json_t *items = json_array();
    const char *p = text, *end = text + len;
    for (int line = 1; items && p < end; line++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *stop = nl ? nl : end, *q = p;
        while (q < stop && strchr(" \t\r", *q))
            q++;
        if (q < stop) {
            json_error_t jerr;
            json_t *v = json_loadb(p, (size_t)(stop - p), JSON_DECODE_ANY, &jerr);
            if (!v || json_array_append_new(items, v) != 0) {
                json_decref(items);
                node_fail(err, "internal", "file '%.120s': line %d is not JSON: %s", given, line, jerr.text);
                return NULL;
            }
        }
        p = stop + (nl != NULL);
    }
    if (!items)
        node_fail(err, "internal", "out of memory");
    return items;
}

/* The rows of a CSV file, as CSVReaderNode reads them (headers on). */
static json_t *batch_read_csv(const char *data_dir, const char *given, node_error *err)
{
    json_t *in = json_pack("{s:s, s:b}", "file_path", given, "headers", 1), *out = NULL;
    node_call sub = {.node_id = "batch", .inputs = in};
    if (!in) {
        node_fail(err, "internal", "out of memory");
        return NULL;
    }
    if (node_csv_reader.run(data_dir, &sub, &out, err) != 0) {
        json_decref(in);
        return NULL;
    }
    json_t *rows = json_incref(json_object_get(out, "data"));
    json_decref(out);
    json_decref(in);
    return rows;
}

/* The file's items: a list. */
static json_t *batch_read_file(const char *data_dir, json_t *inputs, node_error *err)
{
    const char *given = json_string_value(json_object_get(inputs, "file_path"));
    if (given && batch_ends_with(given, ".csv"))
        return batch_read_csv(data_dir, given, err);
    size_t len;
    char *text = node_file_read(data_dir, inputs, &given, &len, err); /* owned, freed below */
    if (!text)
        return NULL;
    json_t *items = NULL;
    if (batch_ends_with(given, ".jsonl") || batch_ends_with(given, ".ndjson")) {
        items = batch_parse_lines(text, len, given, err);
    } else {
        json_error_t jerr;
        items = json_loadb(text, len, JSON_DECODE_ANY, &jerr);
        if (!items)
            node_fail(err, "internal", "file '%.120s': invalid JSON at line %d column %d: %s", given, jerr.line,
                      jerr.column, jerr.text);
        else if (!json_is_array(items)) {
            json_decref(items);
            items = NULL;
            node_fail(err, "internal", "file '%.120s': expected a JSON list of items", given);
        }
    }
    free(text);
    return items;
}

/* The run's items (a new reference), from data_items or the file. */
static json_t *batch_items(const char *data_dir, json_t *inputs, node_error *err)
{
    json_t *items = json_object_get(inputs, "data_items"), *path = json_object_get(inputs, "file_path");
    if (items && !json_is_null(items))
        return json_incref(items);
    if (path && !json_is_null(path))
        return batch_read_file(data_dir, inputs, err);
    node_fail(err, "internal", "file_path or data_items: one of them is required");
    return NULL;
}

/* ======================================================================== batches */

/* The SDK's _calculate_optimal_batch_size, for adaptive_batch_size. */
static json_int_t batch_adaptive(json_t *in, json_int_t size, size_t total)
{
    json_t *rate = json_object_get(in, "rate_limit_per_second"), *workers = json_object_get(in, "parallel_workers");
    json_t *mem = json_object_get(in, "memory_limit_mb");
    double effective = (json_is_number(rate) ? json_number_value(rate) : 10.0) *
                       (double)(json_is_integer(workers) ? json_integer_value(workers) : 1);
    double by_memory = (double)(json_is_integer(mem) ? json_integer_value(mem) : 1024) * 1024 * 1024 / 1024;
    double target = fmin(10.0, fmax(1.0, 60.0 / effective));
    double optimal = fmax(1, fmin(fmin(by_memory, floor(effective * target)), (double)total));
    return optimal < (double)size ? (json_int_t)optimal : size;
}

/* items cut into lists of size. New list or NULL. */
static json_t *batch_cut(json_t *items, json_int_t size)
{
    json_t *batches = json_array(), *cur = NULL;
    size_t i;
    json_t *v;
    json_array_foreach(items, i, v)
    {
        if (i % (size_t)size == 0 && (!batches || json_array_append_new(batches, cur = json_array()) != 0))
            break;
        if (!cur || json_array_append(cur, v) != 0) {
            cur = NULL;
            break;
        }
    }
    if (json_array_size(items) && !cur) {
        json_decref(batches);
        return NULL;
    }
    return batches;
}

static json_t *batch_outputs(json_t *items, json_t *batches, json_int_t size)
{
    size_t n = json_array_size(items), nb = json_array_size(batches);
    return json_pack("{s:O, s:I, s:b, s:I, s:i, s:I, s:I, s:i, s:I, s:O}", "batches", batches, "count", (json_int_t)n,
                     "success", 1, "processed_items", (json_int_t)n, "failed_items", 0, "total_batches",
                     (json_int_t)nb, "successful_batches", (json_int_t)nb, "failed_batches", 0, "batch_size_used",
                     size, "results", items);
}

static int batch_run_as(int processor, const void *compiled, node_call *call, json_t **outputs, node_error *err)
{
    char msg[sizeof err->message];
    if (batch_check(call->inputs, processor, 0, msg, sizeof msg) != 0)
        return node_fail(err, "internal", "%s", msg);
    json_t *items = batch_items(compiled, call->inputs, err);
    if (!items)
        return -1;
    if (processor && json_array_size(items) == 0) {
        json_decref(items);
        return node_fail(err, "internal", "data_items is required for process_data operation (the list is empty)");
    }
    json_t *bs = json_object_get(call->inputs, "batch_size"), *adaptive = json_object_get(call->inputs,
                                                                                            "adaptive_batch_size");
    json_int_t size = json_is_integer(bs) ? json_integer_value(bs) : BATCH_DEFAULT_SIZE;
    if (processor && !json_is_false(adaptive))
        size = batch_adaptive(call->inputs, size, json_array_size(items));
    json_t *batches = batch_cut(items, size);
    *outputs = batches ? batch_outputs(items, batches, size) : NULL;
    json_decref(batches);
    json_decref(items);
    return *outputs ? 0 : node_fail(err, "internal", "out of memory");
}

static int batch_reader_run(const void *compiled, node_call *call, json_t **outputs, node_error *err)
{
    return batch_run_as(0, compiled, call, outputs, err);
}

static int batch_processor_run(const void *compiled, node_call *call, json_t **outputs, node_error *err)
{
    return batch_run_as(1, compiled, call, outputs, err);
}

static int batch_has_output(const void *compiled, const char *port)
{
    (void)compiled;
    static const char *const ports[] = {"batches",      "count",          "success",
                                        "processed_items", "failed_items", "total_batches",
                                        "successful_batches", "failed_batches", "batch_size_used",
                                        "results",      NULL};
    for (int i = 0; ports[i]; i++)
        if (strcmp(port, ports[i]) == 0)
            return 1;
    return 0;
}

/* ======================================================================== the types */

static const char *const batch_reader_keys[] = {"file_path", "data_items", "batch_size", NULL};
static const char *const batch_processor_keys[] = {"file_path",           "data_items",       "batch_size",
                                                   "operation",           "adaptive_batch_size", "rate_limit_per_second",
                                                   "parallel_workers",    "memory_limit_mb",  NULL};
static const char *const batch_pinned[] = {"file_path", NULL};

/* The SDK's BatchProcessorNode parameters for features kailashd lacks (Python callables, retries of
 * Python code, the network operations). */
static const node_sdk_default batch_processor_sdk_defaults[] = {
    {"processing_function", "null"},
    {"processing_code", "null"},
    {"retry_failed_batches", "true"},
    {"max_retries", "3"},
    {"retry_delay", "1.0"},
    {"progress_callback", "null"},
    {"api_endpoint", "null"},
    {"api_headers", "{}"},
    {"database_config", "null"},
    {NULL, NULL},
};

const node_type node_batch_reader = {
    .name = "BatchReaderNode",
    .config_keys = batch_reader_keys,
    .input_ports = batch_reader_keys,
    .pinned_keys = batch_pinned,
    .may_block = 1,
    .compile = batch_reader_compile,
    .has_output = batch_has_output,
    .run = batch_reader_run,
    .free = free,
};

const node_type node_batch_processor = {
    .name = "BatchProcessorNode",
    .config_keys = batch_processor_keys,
    .sdk_defaults = batch_processor_sdk_defaults,
    .input_ports = batch_processor_keys,
    .pinned_keys = batch_pinned,
    .may_block = 1,
    .compile = batch_processor_compile,
    .has_output = batch_has_output,
    .run = batch_processor_run,
    .free = free,
};
