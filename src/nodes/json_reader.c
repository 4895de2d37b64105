/* JSONReaderNode: parses one JSON file inside data_dir into `data`.
 *
 * file_path is resolved by node_file_resolve twice: at load when it is literal (a bad path fails the
 * workflow file, not the first request), and at every run, because templates, workflow inputs and
 * request parameters may all change it. The file is read whole, up to 64 MiB (a bigger one is an
 * error, not a truncation); any JSON value is accepted at the top level. Messages name the file as
 * the workflow gave it, never by its absolute path. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kailash/node.h"
#include "kailash/util.h"

#define JSON_READER_MAX ((size_t)64 << 20)

static const char *const json_reader_keys[] = {"file_path", NULL};
static const char *const json_reader_ports[] = {"file_path", NULL};

typedef struct json_reader {
    char *data_dir; /* owned copy of env->data_dir */
} json_reader;

static void json_reader_free(void *compiled)
{
    json_reader *jr = compiled;
    if (jr)
        free(jr->data_dir);
    free(jr);
}

/* node_file_resolve's message without its leading "file_path" (and ':'), for "config.file_path: ...". */
static const char *json_reader_reason(const char *why)
{
    if (strncmp(why, "file_path", 9) == 0)
        why += 9;
    return why + strspn(why, ": ");
}

/* A literal file_path must resolve inside data_dir; a template is checked at run. */
static int json_reader_check_path(const char *data_dir, json_t *config, char *err, size_t errlen)
{
    json_t *v = json_object_get(config, "file_path");
    char path[PATH_MAX], why[256];
    if (!v) /* may come from workflow inputs or a connection */
        return 0;
    if (!json_is_string(v))
        return util_err(err, errlen, "config.file_path: expected a string");
    if (tmpl_string_has_expr(json_string_value(v)))
        return 0;
    if (json_string_length(v) != strlen(json_string_value(v)))
        return util_err(err, errlen, "config.file_path: must not contain NUL");
    if (node_file_resolve(data_dir, json_string_value(v), 0, path, sizeof path, why, sizeof why) != 0)
        return util_err(err, errlen, "config.file_path: %s", json_reader_reason(why));
    return 0;
}

static int json_reader_compile(const node_env *env, json_t *config, void **compiled, char *err,
                               size_t errlen)
{
    *compiled = NULL;
    if (json_reader_check_path(env->data_dir, config, err, errlen) != 0)
        return -1;
    json_reader *jr = calloc(1, sizeof *jr);
    if (!jr || !(jr->data_dir = strdup(env->data_dir))) {
        json_reader_free(jr);
        return util_err(err, errlen, "out of memory");
    }
    *compiled = jr;
    return 0;
}

static int json_reader_has_output(const void *compiled, const char *port)
{
    (void)compiled;
    return strcmp(port, "data") == 0;
}

/* Resolves the run's file_path into path; *given borrows the string from the inputs. */
static int json_reader_path(const json_reader *jr, json_t *inputs, char *path, size_t len,
                            const char **given, node_error *err)
{
    json_t *v = json_object_get(inputs, "file_path");
    char why[256];
    if (!json_is_string(v))
        return node_fail(err, "internal", "file_path: expected a string");
    if (json_string_length(v) != strlen(json_string_value(v)))
        return node_fail(err, "bad_request", "file_path must not contain NUL");
    *given = json_string_value(v);
    if (node_file_resolve(jr->data_dir, *given, 0, path, len, why, sizeof why) != 0)
        return node_fail(err, "bad_request", "%s", why);
    return 0;
}

/* Reads the regular file at path (at most JSON_READER_MAX bytes); caller frees. */
static char *json_reader_load(const char *path, const char *given, size_t *len, node_error *err)
{
    struct stat st;
    char why[256];
    if (stat(path, &st) != 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            node_fail(err, "internal", "file '%.120s' not found", given);
        else
            node_fail(err, "internal", "file '%.120s': %s", given, strerror(errno));
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        node_fail(err, "internal", "file '%.120s' is not a regular file", given);
        return NULL;
    }
    if ((size_t)st.st_size > JSON_READER_MAX) {
        node_fail(err, "internal", "file '%.120s' is larger than 64 MiB", given);
        return NULL;
    }
    /* util_read_file enforces the limit again if the file grew; its message names the absolute
     * path, so only the fact of the failure is passed on. */
    char *text = util_read_file(path, JSON_READER_MAX, len, why, sizeof why);
    if (!text)
        node_fail(err, "internal", "file '%.120s' could not be read", given);
    return text;
}

static int json_reader_run(const void *compiled, node_call *call, json_t **outputs, node_error *err)
{
    const json_reader *jr = compiled;
    char path[PATH_MAX];
    const char *given = NULL;
    size_t len;
    if (json_reader_path(jr, call->inputs, path, sizeof path, &given, err) != 0)
        return -1;
    char *text = json_reader_load(path, given, &len, err); /* owned, freed below */
    if (!text)
        return -1;
    json_error_t jerr;
    json_t *data = json_loadb(text, len, JSON_DECODE_ANY, &jerr);
    free(text);
    if (!data)
        return node_fail(err, "internal", "file '%.120s': invalid JSON at line %d column %d: %s", given,
                         jerr.line, jerr.column, jerr.text);
    json_t *out = json_object();
    if (!out) {
        json_decref(data);
        return node_fail(err, "internal", "out of memory");
    }
    if (json_object_set_new(out, "data", data) != 0) { /* consumes data even on failure */
        json_decref(out);
        return node_fail(err, "internal", "out of memory");
    }
    *outputs = out;
    return 0;
}

const node_type node_json_reader = {
    .name = "JSONReaderNode",
    .config_keys = json_reader_keys,
    .input_ports = json_reader_ports,
    .compile = json_reader_compile,
    .has_output = json_reader_has_output,
    .run = json_reader_run,
    .start = NULL,
    .free = json_reader_free,
};
