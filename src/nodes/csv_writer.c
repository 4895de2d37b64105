/* CSVWriterNode: writes its `data` input (a list of rows) as CSV to a file inside data_dir, as the
 * SDK's csv.DictWriter / csv.writer do, and answers {rows_written, file_path}.
 *
 * The text is what Python's csv module writes with its defaults (QUOTE_MINIMAL, '"' doubled inside
 * quotes, "\r\n" after every record): a field is quoted when it holds the delimiter, '"', CR or LF,
 * and a record of one empty field is written '""' so that it reads back as a field. Cells are
 * Python's str() of the value: a string as is, null "", true/false "True"/"False", an integer in
 * decimal, a real as repr() ("2.0", "1e+20").
 *
 * The first row decides the shape, as in the SDK:
 *   - an object: the columns are `headers` when given, else the first row's keys in order; a header
 *     record comes first; a later row lacking a column gets "" there (DictWriter's restval), a row
 *     with a key that is not a column fails the node (DictWriter's extrasaction="raise");
 *   - a list: every row is a list of cells, after a header record of `headers` when given.
 * An empty list writes nothing and answers {rows_written: 0} only, as the SDK's early return does.
 *
 * Deliberate differences, where the SDK writes something no one meant: a cell that is a list or an
 * object fails the node (the SDK writes its Python repr, "[1, 'x']"); a row of another kind than
 * the first fails it (the SDK writes a dict's keys or a string's characters as cells); data that is
 * not a list fails it (the SDK writes a dict's keys, one per row); null data is a missing input, 400
 * (the SDK's `if not data` answers {rows_written: 0} and hides the caller's mistake). `headers` is a list of column
 * names, as the SDK's run() uses it (its declared type is bool, so any list turns into True there and
 * every non-default value fails): true is refused naming the key. The CSV text may not pass 64 MiB.
 * The file is replaced atomically (node_file_replace); file_path is checked at load when literal and
 * resolved again at every run (see file.c); its directory must exist. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "kailash/node.h"
#include "kailash/util.h"

#include "file.h"
#include "pycmp.h"

static const char *const csv_writer_keys[] = {"file_path", "data", "headers", "delimiter", NULL};
static const char *const csv_writer_pinned[] = {"file_path", NULL};
static const char *const csv_writer_ports[] = {"data", "file_path", "headers", "delimiter", NULL};

/* What one run writes with. delim borrows from the inputs (or is ","). */
typedef struct csv_out {
    const char *delim; /* one UTF-8 character */
    size_t delim_len;
    json_t *headers; /* borrowed array of strings, or NULL */
    buf text;        /* the CSV text; owned */
    char msg[200];   /* why it failed */
} csv_out;

/* Length of the one UTF-8 character s is made of, or 0 when s is not exactly one character. */
static size_t csv_one_char(const char *s, size_t len)
{
    unsigned char b = (unsigned char)s[0];
    size_t n = b < 0x80 ? 1 : b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 0;
    return len == n ? n : 0;
}

/* delimiter from src into o (absent or null: ","); at_load skips templates. */
static int csv_writer_delim(json_t *src, int at_load, csv_out *o, char *msg, size_t msglen)
{
    json_t *v = json_object_get(src, "delimiter");
    o->delim = ",";
    o->delim_len = 1;
    if (!v || json_is_null(v) || (at_load && tmpl_value_has_expr(v)))
        return 0;
    const char *d = json_is_string(v) ? json_string_value(v) : "";
    size_t n = json_is_string(v) ? csv_one_char(d, json_string_length(v)) : 0;
    if (n == 0 || strchr("\"\r\n", d[0]) || d[0] == '\0')
        return util_err(msg, msglen, "delimiter: expected one character other than a quote or a line break");
    o->delim = d;
    o->delim_len = n;
    return 0;
}

/* headers from src into o (absent, null or false: none); at_load skips templates. */
static int csv_writer_headers(json_t *src, int at_load, csv_out *o, char *msg, size_t msglen)
{
    json_t *v = json_object_get(src, "headers");
    size_t i;
    json_t *name;
    o->headers = NULL;
    if (!v || json_is_null(v) || json_is_false(v) || (at_load && tmpl_value_has_expr(v)))
        return 0;
    if (json_is_true(v))
        return util_err(msg, msglen, "headers: true is not supported (the SDK fails on it too): give the column "
                                     "names as a list of strings, or leave it null to take them from the first row");
    if (!json_is_array(v))
        return util_err(msg, msglen, "headers: expected a list of column names");
    json_array_foreach(v, i, name)
    {
        if (!json_is_string(name))
            return util_err(msg, msglen, "headers[%zu]: expected a string", i);
    }
    o->headers = v;
    return 0;
}

static int csv_writer_compile(const node_env *env, json_t *config, void **compiled, char *err, size_t errlen)
{
    csv_out o;
    char msg[200];
    *compiled = NULL;
    if (csv_writer_delim(config, 1, &o, msg, sizeof msg) != 0 || csv_writer_headers(config, 1, &o, msg, sizeof msg) != 0)
        return util_err(err, errlen, "config.%s", msg);
    return node_file_compile(env, config, compiled, err, errlen);
}

static int csv_writer_has_output(const void *compiled, const char *port)
{
    (void)compiled;
    return strcmp(port, "rows_written") == 0 || strcmp(port, "file_path") == 0;
}

/* Appends one field (the n bytes at s) to o->text, quoted when it must be. */
static int csv_put_field(csv_out *o, const char *s, size_t n)
{
    int quote = 0;
    for (size_t i = 0; i < n && !quote; i++)
        quote = s[i] == '"' || s[i] == '\r' || s[i] == '\n' ||
                (s[i] == o->delim[0] && n - i >= o->delim_len && memcmp(s + i, o->delim, o->delim_len) == 0);
    if (!quote)
        return buf_append(&o->text, s, n);
    if (buf_append(&o->text, "\"", 1) != 0)
        return -1;
    for (const char *q; (q = memchr(s, '"', n)); n -= (size_t)(q + 1 - s), s = q + 1)
        if (buf_append(&o->text, s, (size_t)(q + 1 - s)) != 0 || buf_append(&o->text, "\"", 1) != 0)
            return -1;
    return buf_append(&o->text, s, n) != 0 ? -1 : buf_append(&o->text, "\"", 1);
}

/* Appends cell v (Python's str(v)) as one field; where names it for messages. */
static int csv_put_cell(csv_out *o, json_t *v, const char *where)
{
    if (json_is_array(v) || json_is_object(v))
        return util_err(o->msg, sizeof o->msg, "%s: a list or object cannot be a CSV cell", where);
    if (json_is_string(v))
        return csv_put_field(o, json_string_value(v), json_string_length(v)) == 0
                   ? 0
                   : util_err(o->msg, sizeof o->msg, "out of memory");
    buf s = {0}; /* owned, freed below */
    int rc = v && !json_is_null(v) ? pycmp_str_append(&s, v) : 0;
    if (rc == 0)
        rc = csv_put_field(o, s.len ? s.data : "", s.len);
    buf_free(&s);
    return rc == 0 ? 0 : util_err(o->msg, sizeof o->msg, "out of memory");
}

/* Ends a record of nfields fields that began at offset start. */
static int csv_end_record(csv_out *o, size_t start, size_t nfields)
{
    if (nfields == 1 && o->text.len == start && buf_append(&o->text, "\"\"", 2) != 0)
        return util_err(o->msg, sizeof o->msg, "out of memory");
    if (buf_append(&o->text, "\r\n", 2) != 0)
        return util_err(o->msg, sizeof o->msg, "out of memory");
    if (o->text.len > NODE_FILE_WRITE_MAX)
        return util_err(o->msg, sizeof o->msg, "the CSV text would be larger than 64 MiB");
    return 0;
}

/* Appends the list row (cells) as one record; label names the row for messages ("data[3]"). */
static int csv_put_list(csv_out *o, json_t *row, const char *label)
{
    size_t start = o->text.len, i;
    json_t *cell;
    char where[64];
    json_array_foreach(row, i, cell)
    {
        if (i > 0 && buf_append(&o->text, o->delim, o->delim_len) != 0)
            return util_err(o->msg, sizeof o->msg, "out of memory");
        snprintf(where, sizeof where, "%s[%zu]", label, i);
        if (csv_put_cell(o, cell, where) != 0)
            return -1;
    }
    return csv_end_record(o, start, json_array_size(row));
}

/* Appends the object row under columns (strings) as DictWriter does: "" for a missing column, and
 * a key that is not a column (not in colset, the columns as object keys) fails. */
static int csv_put_dict(csv_out *o, json_t *columns, json_t *colset, json_t *row, size_t r)
{
    const char *key;
    json_t *v, *col;
    size_t start = o->text.len, i;
    char where[200];
    json_object_foreach(row, key, v)
    {
        if (!json_object_get(colset, key))
            return util_err(o->msg, sizeof o->msg, "data[%zu]: key '%.60s' is not one of the columns", r, key);
    }
    json_array_foreach(columns, i, col)
    {
        if (i > 0 && buf_append(&o->text, o->delim, o->delim_len) != 0)
            return util_err(o->msg, sizeof o->msg, "out of memory");
        snprintf(where, sizeof where, "data[%zu].%.60s", r, json_string_value(col));
        if (csv_put_cell(o, json_object_get(row, json_string_value(col)), where) != 0)
            return -1;
    }
    return csv_end_record(o, start, json_array_size(columns));
}

/* A new array of the first row's keys, or NULL when memory runs out. */
static json_t *csv_keys_of(json_t *row)
{
    json_t *keys = json_array();
    const char *key;
    json_t *v;
    json_object_foreach(row, key, v)
    {
        /* append_new consumes the new string even on failure */
        if (!keys || json_array_append_new(keys, json_string(key)) != 0) {
            json_decref(keys);
            return NULL;
        }
    }
    return keys;
}

/* A new object whose keys are the names in columns, or NULL when memory runs out. DictWriter's
 * "key not in fieldnames" check is then one hash lookup per key: a scan of the columns per key made
 * a wide row quadratic (one 780 KB row of 60,000 keys held a worker for 45 s). */
static json_t *csv_column_set(json_t *columns)
{
    json_t *set = json_object(), *col;
    size_t i;
    json_array_foreach(columns, i, col)
    {
        if (!set || json_object_set_new(set, json_string_value(col), json_true()) != 0) {
            json_decref(set);
            return NULL;
        }
    }
    return set;
}

/* Writes the rows of data after the header record: objects under columns, or lists. */
static int csv_put_rows(csv_out *o, json_t *data, json_t *columns, int dicts)
{
    json_t *colset = dicts ? csv_column_set(columns) : NULL; /* owned, freed below */
    int rc = dicts && !colset ? util_err(o->msg, sizeof o->msg, "out of memory") : 0;
    char label[48];
    for (size_t r = 0; rc == 0 && r < json_array_size(data); r++) {
        json_t *row = json_array_get(data, r);
        snprintf(label, sizeof label, "data[%zu]", r);
        if (dicts ? !json_is_object(row) : !json_is_array(row))
            rc = util_err(o->msg, sizeof o->msg, "data[%zu]: expected %s like the first row", r,
                          dicts ? "an object" : "a list");
        else
            rc = dicts ? csv_put_dict(o, columns, colset, row, r) : csv_put_list(o, row, label);
    }
    json_decref(colset);
    return rc;
}

/* Writes the CSV text of data (a non-empty array) into o->text. 0, or -1 with o->msg. */
static int csv_writer_text(csv_out *o, json_t *data)
{
    int dicts = json_is_object(json_array_get(data, 0));
    json_t *columns = dicts && !o->headers ? csv_keys_of(json_array_get(data, 0)) : json_incref(o->headers);
    int rc = dicts && !columns ? util_err(o->msg, sizeof o->msg, "out of memory") : 0;
    if (rc == 0 && columns)
        rc = csv_put_list(o, columns, "headers");
    if (rc == 0)
        rc = csv_put_rows(o, data, columns, dicts);
    json_decref(columns);
    return rc;
}

/* The `data` input, borrowed: NULL with err when missing or not a list of objects or lists. */
static json_t *csv_writer_data(json_t *inputs, node_error *err)
{
    json_t *data = json_object_get(inputs, "data");
    json_t *first = json_array_get(data, 0);
    if (!data || json_is_null(data)) /* what the caller sent (or left out) decides it */
        node_fail(err, "bad_request", "input 'data' is missing (give it in inputs, or in parameters for this node)");
    else if (!json_is_array(data))
        node_fail(err, "internal", "data: expected a list of rows (objects or lists)");
    else if (first && !json_is_object(first) && !json_is_array(first))
        node_fail(err, "internal", "data[0]: expected an object or a list");
    else
        return data;
    return NULL;
}

/* Writes o->text to the run's file_path; *outputs = {rows_written, file_path}. */
static int csv_writer_save(const char *data_dir, json_t *inputs, csv_out *o, size_t rows, json_t **outputs,
                           node_error *err)
{
    char path[PATH_MAX];
    json_t *given = NULL; /* borrowed from the inputs */
    if (node_file_path_input(data_dir, inputs, 1, path, sizeof path, &given, err) != 0)
        return -1;
    if (node_file_replace(path, o->text.len ? o->text.data : "", o->text.len) != 0)
        return node_fail(err, "internal", "file '%.120s' could not be written: %s", json_string_value(given),
                         strerror(errno));
    json_t *out = json_pack("{sIsO}", "rows_written", (json_int_t)rows, "file_path", given);
    if (!out)
        return node_fail(err, "internal", "out of memory");
    *outputs = out;
    return 0;
}

static int csv_writer_run(const void *compiled, node_call *call, json_t **outputs, node_error *err)
{
    csv_out o = {0};
    json_t *data = csv_writer_data(call->inputs, err); /* borrowed */
    if (!data)
        return -1;
    if (csv_writer_delim(call->inputs, 0, &o, o.msg, sizeof o.msg) != 0 ||
        csv_writer_headers(call->inputs, 0, &o, o.msg, sizeof o.msg) != 0)
        return node_fail(err, "internal", "%s", o.msg);
    if (json_array_size(data) == 0) { /* the SDK's `if not data: return {"rows_written": 0}` */
        *outputs = json_pack("{si}", "rows_written", 0);
        return *outputs ? 0 : node_fail(err, "internal", "out of memory");
    }
    int rc = csv_writer_text(&o, data);
    if (rc != 0)
        node_fail(err, "internal", "%s", o.msg);
    else
        rc = csv_writer_save(compiled, call->inputs, &o, json_array_size(data), outputs, err);
    buf_free(&o.text);
    return rc;
}

const node_type node_csv_writer = {
    .name = "CSVWriterNode",
    .config_keys = csv_writer_keys,
    .pinned_keys = csv_writer_pinned,
    .may_block = 1,
    .input_ports = csv_writer_ports,
    .compile = csv_writer_compile,
    .has_output = csv_writer_has_output,
    .run = csv_writer_run,
    .start = NULL,
    .free = free,
};
