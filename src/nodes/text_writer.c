/* TextWriterNode: writes its `text` input to a file inside data_dir, as the SDK's
 * open(file_path, "a" if append else "w", encoding=encoding).write(text) does, and answers
 * {file_path, bytes_written} with bytes_written = len(text.encode(encoding)).
 *
 * The text is encoded strictly in `encoding` (default utf-8; the ones text_codec.h lists, others
 * refused); a character the encoding lacks fails the node before anything is written, where Python
 * raises UnicodeEncodeError. Line ends are written as given (Python's text mode writes "\n" as "\n"
 * on POSIX). Without `append` the file is replaced atomically (node_file_replace: a reader never sees
 * a part); with append: true the bytes go to its end through O_APPEND, the file created when absent,
 * and utf-8-sig's byte-order mark is written only into an empty file, as Python's encoder does. The
 * SDK counts the mark in bytes_written even then; so does this node.
 *
 * `text` must be a string: the SDK writes str(value) of anything else ("None" for null), which is
 * never what a workflow means, so a non-string fails the node, and null is a missing input (400). Text over 64 MiB fails it too.
 * file_path is checked at load when literal and resolved again at every run (see file.c); its
 * directory must exist. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "kailash/node.h"
#include "kailash/util.h"

#include "file.h"
#include "text_codec.h"

static const char *const text_writer_keys[] = {"file_path", "text", "encoding", "append", NULL};
static const char *const text_writer_pinned[] = {"file_path", NULL};
static const char *const text_writer_ports[] = {"text", "file_path", "encoding", "append", NULL};

typedef struct text_writer_opts {
    text_codec codec;
    int append;
} text_writer_opts;

/* encoding and append from src (config at load, inputs at run); at_load skips templates. */
static int text_writer_options(json_t *src, int at_load, text_writer_opts *o, char *msg, size_t msglen)
{
    json_t *append = json_object_get(src, "append");
    o->append = 0;
    if (text_codec_option(src, at_load, &o->codec, msg, msglen) != 0)
        return -1;
    if (!append || json_is_null(append) || (at_load && tmpl_value_has_expr(append)))
        return 0;
    if (!json_is_boolean(append))
        return util_err(msg, msglen, "append: expected a boolean");
    o->append = json_is_true(append);
    return 0;
}

static int text_writer_compile(const node_env *env, json_t *config, void **compiled, char *err, size_t errlen)
{
    text_writer_opts o;
    char msg[200];
    *compiled = NULL;
    if (text_writer_options(config, 1, &o, msg, sizeof msg) != 0)
        return util_err(err, errlen, "config.%s", msg);
    return node_file_compile(env, config, compiled, err, errlen);
}

static int text_writer_has_output(const void *compiled, const char *port)
{
    (void)compiled;
    return strcmp(port, "file_path") == 0 || strcmp(port, "bytes_written") == 0;
}

/* The `text` input, borrowed; NULL with err when missing or not a string. */
static json_t *text_writer_text(json_t *inputs, node_error *err)
{
    json_t *text = json_object_get(inputs, "text");
    if (!text || json_is_null(text))
        node_fail(err, "bad_request", "input 'text' is missing (give it in inputs, or in parameters for this node)");
    else if (!json_is_string(text))
        node_fail(err, "internal", "text: expected a string, got %s",
                  json_is_number(text) || json_is_boolean(text) ? "a scalar" : "a container");
    else if (json_string_length(text) > NODE_FILE_WRITE_MAX)
        node_fail(err, "internal", "text: longer than 64 MiB");
    else
        return text;
    return NULL;
}

/* Writes bytes to path as o says; 0 or -1 with errno set. */
static int text_writer_put(const char *path, const text_writer_opts *o, const buf *bytes)
{
    size_t bom_len;
    const char *bom = text_codec_bom(o->codec, &bom_len);
    const char *data = bytes->len ? bytes->data : "";
    if (o->append)
        return node_file_append(path, data, bytes->len, bom, bom_len);
    buf whole = {0}; /* owned, freed below */
    if (buf_append(&whole, bom, bom_len) != 0 || buf_append(&whole, data, bytes->len) != 0) {
        buf_free(&whole);
        errno = ENOMEM;
        return -1;
    }
    int rc = node_file_replace(path, whole.len ? whole.data : "", whole.len);
    int e = errno;
    buf_free(&whole);
    errno = e;
    return rc;
}

/* {file_path, bytes_written} into *outputs; file_path is borrowed (incref'd here). */
static int text_writer_outputs(json_t *file_path, size_t written, json_t **outputs, node_error *err)
{
    json_t *out = json_pack("{sOsI}", "file_path", file_path, "bytes_written", (json_int_t)written);
    if (!out)
        return node_fail(err, "internal", "out of memory");
    *outputs = out;
    return 0;
}

static int text_writer_run(const void *compiled, node_call *call, json_t **outputs, node_error *err)
{
    const char *data_dir = compiled;
    char path[PATH_MAX], msg[200];
    json_t *given = NULL; /* borrowed from the inputs */
    text_writer_opts o;
    json_t *text = text_writer_text(call->inputs, err); /* borrowed */
    if (!text)
        return -1;
    if (text_writer_options(call->inputs, 0, &o, msg, sizeof msg) != 0)
        return node_fail(err, "internal", "%s", msg);
    if (node_file_path_input(data_dir, call->inputs, 1, path, sizeof path, &given, err) != 0)
        return -1;
    buf bytes = {0}; /* owned, freed below */
    if (text_codec_encode(o.codec, json_string_value(text), json_string_length(text), &bytes, msg, sizeof msg) != 0) {
        buf_free(&bytes);
        return node_fail(err, "internal", "text: %s", msg);
    }
    size_t bom_len;
    text_codec_bom(o.codec, &bom_len);
    size_t written = bytes.len + bom_len;
    int rc = text_writer_put(path, &o, &bytes);
    int e = errno;
    buf_free(&bytes);
    if (rc != 0)
        return node_fail(err, "internal", "file '%.120s' could not be written: %s", json_string_value(given),
                         e == EINVAL || e == ENXIO ? "not a regular file" : strerror(e));
    return text_writer_outputs(given, written, outputs, err);
}

const node_type node_text_writer = {
    .name = "TextWriterNode",
    .config_keys = text_writer_keys,
    .pinned_keys = text_writer_pinned,
    .may_block = 1,
    .input_ports = text_writer_ports,
    .compile = text_writer_compile,
    .has_output = text_writer_has_output,
    .run = text_writer_run,
    .start = NULL,
    .free = free,
};
