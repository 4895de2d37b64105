/* CSVReaderNode: reads one CSV file inside data_dir into `data`.
 *
 * The parser follows RFC 4180 and reads the whole file (at most 64 MiB) in one pass:
 *   - fields are split by `delimiter` (one byte, default ','), records by CRLF, LF or a lone CR;
 *   - a field that starts with '"' is quoted: it may hold the delimiter and line breaks (kept as
 *     they are), "" stands for one '"', and after the closing quote only a delimiter or the end of
 *     the record may follow (anything else is an error with its line, rather than a guess);
 *   - a '"' inside an unquoted field is an ordinary character; an empty line is an empty record;
 *     a UTF-8 byte-order mark at the start is dropped.
 * Values stay strings (no number guessing). With `headers` (default true) the first record names
 * the columns and every later record becomes an object as the SDK builds it, dict(zip(header,
 * row)): a short record has only its own columns, a long one loses the fields past the header, an
 * empty line is {}, and a repeated column name keeps the value of its last column. Without headers
 * every record is an array of strings ([] for an empty line).
 *
 * file_path is checked at load when literal and resolved again at every run (see json_reader.c). */
#include <stdlib.h>
#include <string.h>

#include "kailash/node.h"
#include "kailash/util.h"

#include "file.h"

static const char *const csv_reader_keys[] = {"file_path", "headers", "delimiter", NULL};
static const char *const csv_reader_pinned[] = {"file_path", NULL};
static const char *const csv_reader_ports[] = {"file_path", NULL};

typedef struct csv_opts {
    int headers;
    char delim;
} csv_opts;

typedef struct csv_parser {
    const char *p, *end;
    char delim;
    int line;  /* line of p, from 1, for messages */
    buf field; /* the field being read; owned, freed by the caller of csv_parse */
} csv_parser;

/* Reads headers and delimiter from src (config at load, inputs at run); absent or null means the
 * default, at_load skips templates. Returns 0 or -1 with "delimiter: expected ..." in msg. */
static int csv_read_opts(json_t *src, int at_load, csv_opts *o, char *msg, size_t msglen)
{
    json_t *headers = json_object_get(src, "headers");
    json_t *delim = json_object_get(src, "delimiter");
    *o = (csv_opts){.headers = 1, .delim = ','};
    if (headers && !json_is_null(headers) && !(at_load && tmpl_value_has_expr(headers))) {
        if (!json_is_boolean(headers))
            return util_err(msg, msglen, "headers: expected a boolean");
        o->headers = json_is_true(headers);
    }
    if (delim && !json_is_null(delim) && !(at_load && tmpl_value_has_expr(delim))) {
        const char *d = json_is_string(delim) ? json_string_value(delim) : "";
        if (!json_is_string(delim) || json_string_length(delim) != 1 || strchr("\"\r\n", d[0]))
            return util_err(msg, msglen, "delimiter: expected one character other than a quote or a line break");
        o->delim = d[0];
    }
    return 0;
}

static int csv_reader_compile(const node_env *env, json_t *config, void **compiled, char *err, size_t errlen)
{
    csv_opts o;
    char msg[200];
    *compiled = NULL;
    if (csv_read_opts(config, 1, &o, msg, sizeof msg) != 0)
        return util_err(err, errlen, "config.%s", msg);
    return node_file_compile(env, config, compiled, err, errlen);
}

static int csv_reader_has_output(const void *compiled, const char *port)
{
    (void)compiled;
    return strcmp(port, "data") == 0;
}

/* Consumes one line break (CRLF, LF or CR) at cp->p, if any. */
static void csv_eol(csv_parser *cp)
{
    if (cp->p < cp->end && *cp->p == '\r')
        cp->p++;
    if (cp->p < cp->end && *cp->p == '\n')
        cp->p++;
    cp->line++;
}

/* 1 when cp->p is at the end of a record (line break or end of input). */
static int csv_at_eol(const csv_parser *cp)
{
    return cp->p == cp->end || *cp->p == '\r' || *cp->p == '\n';
}

/* Reads a quoted field (cp->p just past the opening quote) into cp->field. */
static int csv_quoted(csv_parser *cp, char *msg, size_t msglen)
{
    int start = cp->line;
    for (;;) {
        const char *q = memchr(cp->p, '"', (size_t)(cp->end - cp->p));
        if (!q)
            return util_err(msg, msglen, "line %d: quoted field is not closed", start);
        for (const char *c = cp->p; c < q; c++)
            cp->line += *c == '\n' || (*c == '\r' && c[1] != '\n'); /* c[1] <= *q */
        if (buf_append(&cp->field, cp->p, (size_t)(q - cp->p) + (q + 1 < cp->end && q[1] == '"')) != 0)
            return util_err(msg, msglen, "out of memory");
        cp->p = q + 1;
        if (cp->p < cp->end && *cp->p == '"') { /* "" is one quote, appended above */
            cp->p++;
            continue;
        }
        if (!csv_at_eol(cp) && *cp->p != cp->delim)
            return util_err(msg, msglen, "line %d: unexpected character after a closing quote", cp->line);
        return 0;
    }
}

/* Reads one field into cp->field, leaving cp->p at the delimiter or the end of the record. */
static int csv_field(csv_parser *cp, char *msg, size_t msglen)
{
    cp->field.len = 0;
    if (cp->p < cp->end && *cp->p == '"') {
        cp->p++;
        return csv_quoted(cp, msg, msglen);
    }
    const char *s = cp->p;
    while (!csv_at_eol(cp) && *cp->p != cp->delim)
        cp->p++;
    if (buf_append(&cp->field, s, (size_t)(cp->p - s)) != 0)
        return util_err(msg, msglen, "out of memory");
    return 0;
}

/* Reads the next record into *row (a new array of strings; an empty line is an empty array).
 * Returns 1 with a row, 0 at the end of input, -1 with msg filled. */
static int csv_record(csv_parser *cp, json_t **row, char *msg, size_t msglen)
{
    if (cp->p == cp->end)
        return 0;
    if (!(*row = json_array()))
        return util_err(msg, msglen, "out of memory");
    if (*cp->p == '\r' || *cp->p == '\n') { /* an empty line */
        csv_eol(cp);
        return 1;
    }
    for (;;) {
        if (csv_field(cp, msg, msglen) != 0)
            goto fail;
        json_t *s = json_stringn(cp->field.len ? cp->field.data : "", cp->field.len);
        if (!s || json_array_append_new(*row, s) != 0) { /* append_new consumes s */
            util_err(msg, msglen, "line %d: a field is not valid UTF-8", cp->line);
            goto fail;
        }
        if (csv_at_eol(cp))
            break;
        cp->p++; /* the delimiter */
    }
    if (cp->p < cp->end)
        csv_eol(cp);
    return 1;
fail:
    json_decref(*row);
    *row = NULL;
    return -1;
}

/* A new object pairing header names with the fields of row as the SDK's dict(zip(header, row)): as
 * many members as the shorter of the two has, a repeated name keeping its last value. */
static json_t *csv_row_object(json_t *header, json_t *row, char *msg, size_t msglen)
{
    size_t nh = json_array_size(header), nr = json_array_size(row);
    json_t *obj = json_object();
    for (size_t i = 0; obj && i < nh && i < nr; i++) {
        json_t *name = json_array_get(header, i);
        /* setn takes its own reference; header names may hold NUL, hence the length */
        if (json_object_setn(obj, json_string_value(name), json_string_length(name), json_array_get(row, i)) != 0) {
            json_decref(obj);
            obj = NULL;
        }
    }
    if (!obj)
        util_err(msg, msglen, "out of memory");
    return obj;
}

/* Parses text into a new array of rows (objects with headers, else arrays), or NULL with msg. */
static json_t *csv_parse(const char *text, size_t len, const csv_opts *o, char *msg, size_t msglen)
{
    csv_parser cp = {.p = text, .end = text + len, .delim = o->delim, .line = 1, .field = {0}};
    json_t *rows = json_array(), *header = NULL, *row = NULL;
    if (!rows) {
        util_err(msg, msglen, "out of memory");
        return NULL;
    }
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
        cp.p += 3;
    int rc;
    while ((rc = csv_record(&cp, &row, msg, msglen)) == 1) {
        if (o->headers && !header) {
            header = row; /* owned, freed below */
        } else {
            json_t *item = o->headers ? csv_row_object(header, row, msg, msglen) : json_incref(row);
            json_decref(row);
            if (!item || json_array_append_new(rows, item) != 0) { /* append_new consumes item */
                rc = -1;
                break;
            }
        }
    }
    json_decref(header);
    buf_free(&cp.field);
    if (rc < 0) {
        json_decref(rows);
        return NULL;
    }
    return rows;
}

static int csv_reader_run(const void *compiled, node_call *call, json_t **outputs, node_error *err)
{
    const char *data_dir = compiled;
    char msg[200];
    const char *given = NULL; /* borrowed from the inputs */
    size_t len;
    csv_opts o;
    if (csv_read_opts(call->inputs, 0, &o, msg, sizeof msg) != 0)
        return node_fail(err, "internal", "%s", msg);
    char *text = node_file_read(data_dir, call->inputs, &given, &len, err); /* owned, freed below */
    if (!text)
        return -1;
    json_t *data = csv_parse(text, len, &o, msg, sizeof msg);
    free(text);
    if (!data)
        return node_fail(err, "internal", "file '%.120s': %s", given, msg);
    return node_file_output("data", data, outputs, err); /* consumes data */
}

/* The SDK's CSVReaderNode index_column (rows keyed by a column), which kailashd does not have. */
static const node_sdk_default csv_reader_sdk_defaults[] = {
    {"index_column", "null"},
    {NULL, NULL},
};

const node_type node_csv_reader = {
    .name = "CSVReaderNode",
    .config_keys = csv_reader_keys,
    .sdk_defaults = csv_reader_sdk_defaults,
    .pinned_keys = csv_reader_pinned,
    .may_block = 1,
    .input_ports = csv_reader_ports,
    .compile = csv_reader_compile,
    .has_output = csv_reader_has_output,
    .run = csv_reader_run,
    .start = NULL,
    .free = free,
};
