/* TextReaderNode: reads one text file inside data_dir into `text`, as the SDK's
 * open(file_path, "r", encoding=encoding).read() does.
 *
 * The file (at most 64 MiB, node_file_read) is decoded strictly in `encoding` (default utf-8; the
 * ones text_codec.h lists, others refused at load, or at run when the value came in a request) and
 * read in Python's text mode: "\r\n" and a lone "\r" become "\n". utf-8 keeps a byte-order mark as
 * U+FEFF, utf-8-sig drops it, as Python does. Bytes that do not decode fail the node, naming the
 * first bad byte's offset, where Python raises UnicodeDecodeError.
 *
 * file_path is checked at load when literal and resolved again at every run (see file.c). */
#include <stdlib.h>
#include <string.h>

#include "kailash/node.h"
#include "kailash/util.h"

#include "file.h"
#include "text_codec.h"

static const char *const text_reader_keys[] = {"file_path", "encoding", NULL};
static const char *const text_reader_pinned[] = {"file_path", NULL};
static const char *const text_reader_ports[] = {"file_path", "encoding", NULL};

static int text_reader_compile(const node_env *env, json_t *config, void **compiled, char *err, size_t errlen)
{
    text_codec c;
    char msg[200];
    *compiled = NULL;
    if (text_codec_option(config, 1, &c, msg, sizeof msg) != 0)
        return util_err(err, errlen, "config.%s", msg);
    return node_file_compile(env, config, compiled, err, errlen);
}

static int text_reader_has_output(const void *compiled, const char *port)
{
    (void)compiled;
    return strcmp(port, "text") == 0;
}

static int text_reader_run(const void *compiled, node_call *call, json_t **outputs, node_error *err)
{
    const char *data_dir = compiled;
    const char *given = NULL; /* borrowed from the inputs */
    char msg[200];
    size_t len;
    text_codec c;
    if (text_codec_option(call->inputs, 0, &c, msg, sizeof msg) != 0)
        return node_fail(err, "internal", "%s", msg);
    char *raw = node_file_read(data_dir, call->inputs, &given, &len, err); /* owned, freed below */
    if (!raw)
        return -1;
    buf text = {0}; /* owned, freed below */
    int rc = text_codec_decode(c, raw, len, &text, msg, sizeof msg);
    free(raw);
    if (rc != 0) {
        buf_free(&text);
        return node_fail(err, "internal", "file '%.120s' is %s", given, msg);
    }
    json_t *v = json_stringn_nocheck(text.len ? text.data : "", text.len); /* valid UTF-8: decoded above */
    buf_free(&text);
    if (!v)
        return node_fail(err, "internal", "out of memory");
    return node_file_output("text", v, outputs, err); /* consumes v */
}

const node_type node_text_reader = {
    .name = "TextReaderNode",
    .config_keys = text_reader_keys,
    .pinned_keys = text_reader_pinned,
    .may_block = 1,
    .input_ports = text_reader_ports,
    .compile = text_reader_compile,
    .has_output = text_reader_has_output,
    .run = text_reader_run,
    .start = NULL,
    .free = free,
};
