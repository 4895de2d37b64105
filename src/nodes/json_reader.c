/* JSONReaderNode: parses one JSON file inside data_dir into `data`.
 *
 * file_path is resolved by node_file_resolve twice: at load when it is literal (a bad path fails the
 * workflow file, not the first request), and at every run, because templates, workflow inputs and
 * request parameters may all change it. The file is read whole, up to 64 MiB (a bigger one is an
 * error, not a truncation); any JSON value is accepted at the top level. Messages name the file as
 * the workflow gave it, never by its absolute path. The checks and the read are file.c's
 * (node_file_compile, node_file_read, node_file_output), shared by every file node. */
#include <stdlib.h>
#include <string.h>

#include "kailash/node.h"

#include "file.h"

static const char *const json_reader_keys[] = {"file_path", NULL};
static const char *const json_reader_pinned[] = {"file_path", NULL};
static const char *const json_reader_ports[] = {"file_path", NULL};

static int json_reader_has_output(const void *compiled, const char *port)
{
    (void)compiled;
    return strcmp(port, "data") == 0;
}

static int json_reader_run(const void *compiled, node_call *call, json_t **outputs, node_error *err)
{
    const char *data_dir = compiled;
    const char *given = NULL; /* borrowed from the inputs */
    size_t len;
    char *text = node_file_read(data_dir, call->inputs, &given, &len, err); /* owned, freed below */
    if (!text)
        return -1;
    json_error_t jerr;
    json_t *data = json_loadb(text, len, JSON_DECODE_ANY, &jerr);
    free(text);
    if (!data)
        return node_fail(err, "internal", "file '%.120s': invalid JSON at line %d column %d: %s", given, jerr.line,
                         jerr.column, jerr.text);
    return node_file_output("data", data, outputs, err); /* consumes data */
}

const node_type node_json_reader = {
    .name = "JSONReaderNode",
    .config_keys = json_reader_keys,
    .pinned_keys = json_reader_pinned,
    .may_block = 1,
    .input_ports = json_reader_ports,
    .compile = node_file_compile,
    .has_output = json_reader_has_output,
    .run = json_reader_run,
    .start = NULL,
    .free = free,
};
