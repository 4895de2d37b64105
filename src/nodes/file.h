/* file: the plumbing the file nodes share (JSONReaderNode, CSVReaderNode, TextReaderNode,
 * JSONWriterNode, CSVWriterNode, TextWriterNode; see
 * src/nodes/file.c for how a file_path is resolved). Private to src/nodes. Every function is
 * thread-safe: none keeps state. */
#ifndef KAILASH_NODES_FILE_H
#define KAILASH_NODES_FILE_H

#include <jansson.h>
#include <stddef.h>

#include "kailash/node.h"

/* Resolves a file_path for a file node: relative paths are taken against data_dir, absolute ones must
 * lie inside it; ".." that escapes, and symlinks that lead out of data_dir, are refused.
 * for_write: the file may not exist yet (its directory must). Writes the absolute path into out.
 * Returns 0, or -1 with err such as "file_path '../x' escapes data_dir". */
int node_file_resolve(const char *data_dir, const char *file_path, int for_write, char *out, size_t outlen, char *err,
                      size_t errlen);

/* Load-time check of a file node's config.file_path (borrowed config): absent or a template passes,
 * a literal must resolve inside data_dir. Returns 0, or -1 with err "config.file_path: ...". */
int node_file_check_config(const char *data_dir, json_t *config, char *err, size_t errlen);

/* A file node's compile(): node_file_check_config, then *compiled = a copy of env->data_dir (a char *,
 * freed with free(), so a file node's .free is free). Returns 0, or -1 with err. */
int node_file_compile(const node_env *env, json_t *config, void **compiled, char *err, size_t errlen);

/* The run's file_path input resolved by node_file_resolve into path (len bytes); *given borrows the
 * input string from inputs. Returns 0, or -1 with err ("internal": not a string; "bad_request"). */
int node_file_path_input(const char *data_dir, json_t *inputs, int for_write, char *path, size_t len, json_t **given,
                         node_error *err);

/* Reads the regular file that the run's file_path input names (node_file_path_input, at most 64 MiB)
 * into a new NUL-terminated string of *len bytes (caller frees); *given borrows file_path from inputs
 * for messages. NULL with err on failure. */
char *node_file_read(const char *data_dir, json_t *inputs, const char **given, size_t *len, node_error *err);

/* The most a file node writes at once: 64 MiB, the most node_file_read reads back. */
#define NODE_FILE_WRITE_MAX ((size_t)64 << 20)

/* Replaces the file at path (absolute, resolved by node_file_resolve) with the len bytes at text,
 * atomically: a temporary file in the same directory, fsync()ed, then rename()d over path. A reader
 * sees the old file or the new one, never a part. New files get mode 0644. Returns 0, or -1 with
 * errno set (EFBIG over NODE_FILE_WRITE_MAX, EISDIR when path is a directory). */
int node_file_replace(const char *path, const char *text, size_t len);

/* Appends the len bytes at text to the regular file at path (absolute, resolved), creating it (0644)
 * when absent, through O_APPEND, then fsync()s it. lead (lead_len bytes, may be 0) goes first only
 * when the file is empty (a byte-order mark). Returns 0, or -1 with errno set (EFBIG, EISDIR,
 * EINVAL when path is not a regular file, e.g. a FIFO: never waited on). */
int node_file_append(const char *path, const char *text, size_t len, const char *lead, size_t lead_len);

/* *outputs = a new object {port: value}; value is stolen, even on failure. 0, or -1 with err. */
int node_file_output(const char *port, json_t *value, json_t **outputs, node_error *err);

#endif
