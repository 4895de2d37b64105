/* JSONWriterNode: writes its `data` input as JSON to a file inside data_dir.
 *
 * The write is atomic (node_file_replace in file.c: a temporary file, fsync, rename), so a reader
 * sees the old file or the new one, never a part.
 *
 * The text is what the SDK's json.dump(data, f, indent=indent, ensure_ascii=False) writes: `indent`
 * 1..8 pretty-prints with that many spaces, 0 puts every item on its own line without indentation
 * (Python's indent=0), and no newline ends the file.
 * The output is file_path as the workflow gave it (relative paths stay relative), never the absolute
 * path. file_path is checked at load when literal and resolved again at every run (see
 * json_reader.c); at run its directory must exist. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "kailash/node.h"
#include "kailash/util.h"

#include "file.h"

static const char *const json_writer_keys[] = {"file_path", "data", "indent", NULL};
static const char *const json_writer_pinned[] = {"file_path", NULL};
static const char *const json_writer_ports[] = {"data", "file_path", NULL};

/* indent from src (absent or null: 2) into *indent; at_load skips a template. */
static int json_writer_indent(json_t *src, int at_load, int *indent, char *msg, size_t msglen)
{
    json_t *v = json_object_get(src, "indent");
    *indent = 2;
    if (!v || json_is_null(v) || (at_load && tmpl_value_has_expr(v)))
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 8)
        return util_err(msg, msglen, "indent: expected an integer from 0 to 8");
    *indent = (int)json_integer_value(v);
    return 0;
}

static int json_writer_compile(const node_env *env, json_t *config, void **compiled, char *err, size_t errlen)
{
    int indent;
    char msg[200];
    *compiled = NULL;
    if (json_writer_indent(config, 1, &indent, msg, sizeof msg) != 0)
        return util_err(err, errlen, "config.%s", msg);
    return node_file_compile(env, config, compiled, err, errlen);
}

static int json_writer_has_output(const void *compiled, const char *port)
{
    (void)compiled;
    return strcmp(port, "file_path") == 0;
}

/* json_dump_callback sink: appends to a buf. */
static int json_writer_collect(const char *text, size_t len, void *data)
{
    return buf_append(data, text, len);
}

/* Python's indent=0 from jansson's indent 1: every line loses its leading spaces, which are all
 * indentation (a JSON string holds no raw newline). */
static void json_writer_unindent(buf *b)
{
    size_t w = 0;
    for (size_t r = 0; r < b->len; r++) {
        if (b->data[r] == ' ' && (w == 0 || b->data[w - 1] == '\n'))
            continue;
        b->data[w++] = b->data[r];
    }
    b->len = w;
}

/* The text to write: data as the SDK's json.dump writes it, into b (caller frees). */
static int json_writer_text(json_t *data, int indent, buf *b)
{
    size_t flags = JSON_ENCODE_ANY | JSON_INDENT(indent ? indent : 1);
    if (json_dump_callback(data, json_writer_collect, b, flags) != 0) {
        buf_free(b);
        return -1;
    }
    if (!indent)
        json_writer_unindent(b);
    return 0;
}

static int json_writer_run(const void *compiled, node_call *call, json_t **outputs, node_error *err)
{
    const char *data_dir = compiled;
    char path[PATH_MAX], msg[200];
    json_t *given = NULL; /* borrowed from the inputs */
    int indent;
    json_t *data = json_object_get(call->inputs, "data"); /* borrowed */
    if (!data)
        return node_fail(err, "bad_request", /* what the caller sent (or left out) decides it */
                         "input 'data' is missing (give it in inputs, or in parameters for this node)");
    if (json_writer_indent(call->inputs, 0, &indent, msg, sizeof msg) != 0)
        return node_fail(err, "internal", "%s", msg);
    if (node_file_path_input(data_dir, call->inputs, 1, path, sizeof path, &given, err) != 0)
        return -1;
    buf text = {0}; /* owned, freed below */
    if (json_writer_text(data, indent, &text) != 0)
        return node_fail(err, "internal", "out of memory");
    int rc = node_file_replace(path, text.data, text.len);
    int e = errno;
    buf_free(&text);
    if (rc != 0)
        return node_fail(err, "internal", "file '%.120s' could not be written: %s", json_string_value(given),
                         strerror(e));
    return node_file_output("file_path", json_incref(given), outputs, err); /* consumes the incref */
}

const node_type node_json_writer = {
    .name = "JSONWriterNode",
    .config_keys = json_writer_keys,
    .pinned_keys = json_writer_pinned,
    .may_block = 1,
    .input_ports = json_writer_ports,
    .compile = json_writer_compile,
    .has_output = json_writer_has_output,
    .run = json_writer_run,
    .start = NULL,
    .free = free,
};
