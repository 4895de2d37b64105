/* file: where file nodes (JSONReaderNode, CSVReaderNode, TextReaderNode, JSONWriterNode,
 * CSVWriterNode, TextWriterNode) may read and write, and how they write.
 *
 * A file_path is resolved in two steps:
 *   1. lexically: a relative path is joined to data_dir, then "." and ".." are folded without
 *      touching the disk; the result must lie strictly inside data_dir. The folded path is what the
 *      node opens, so "a/link/../b" means data_dir/a/b whatever "link" points at.
 *   2. on disk: realpath() of the longest prefix that exists must still lie inside realpath(data_dir),
 *      so a symlink inside data_dir cannot lead out of it. A symlink to nothing is refused: where it
 *      leads cannot be checked, and a write through it would create its target (appends also create
 *      with O_EXCL, which never follows a link).
 * A check and the later open() are two system calls, so a process that can already write into
 * data_dir could swap a directory for a symlink in between; data_dir is the daemon's own directory,
 * and guarding against its other writers would need openat2(RESOLVE_BENEATH) on every path.
 *
 * Every message starts with "file_path " (compile() turns it into "config.file_path: ...") and shows
 * the path as given only when it is relative or lies inside data_dir: an absolute path outside it is
 * never echoed.
 *
 * The file nodes share the rest of their plumbing here too: compile (node_file_compile, whose compiled
 * state is just a copy of data_dir, after the load-time check of a literal config.file_path), the
 * run-time file_path input (node_file_path_input), the bounded read of that file (node_file_read)
 * and the one-port outputs (node_file_output), so the nodes give the same messages.
 *
 * Writers replace a file atomically (node_file_replace): the text goes to a temporary file in the
 * target's directory (same file system), is fsync()ed, and is rename()d over the target, so a reader
 * sees the old file or the new one, never a part, and two runs writing the same file leave one of
 * them whole. The directory itself is not fsync()ed: after a crash the rename may be lost, which
 * leaves the old, complete file. An append (node_file_append, TextWriterNode's append) cannot be
 * atomic that way; it is one O_APPEND write per piece, so concurrent appends do not overwrite each
 * other. New files get mode 0644 (the process umask cannot be read without changing it, which would
 * race with other threads). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kailash/node.h"
#include "kailash/util.h"

#include "file.h"

/* How much of a given path a message shows. */
#define FILE_SHOW_MAX 120

/* The largest file node_file_read reads; its message says "64 MiB". */
#define FILE_READ_MAX ((size_t)64 << 20)

/* Appends the components of path to out (an absolute folded path of *n bytes, at least "/"),
 * folding "." and ".." lexically; ".." at the root stays at the root. Returns -1 when out is full. */
static int file_fold(char *out, size_t *n, size_t cap, const char *path)
{
    const char *p = path;
    while (*p) {
        while (*p == '/')
            p++;
        const char *s = p;
        while (*p && *p != '/')
            p++;
        size_t len = (size_t)(p - s);
        if (len == 0 || (len == 1 && s[0] == '.'))
            continue;
        if (len == 2 && s[0] == '.' && s[1] == '.') {
            while (*n > 1 && out[*n - 1] != '/')
                (*n)--;
            if (*n > 1)
                (*n)--;
            out[*n] = '\0';
            continue;
        }
        size_t sep = *n > 1 ? 1 : 0;
        if (*n + sep + len + 1 > cap)
            return -1;
        if (sep)
            out[(*n)++] = '/';
        memcpy(out + *n, s, len);
        *n += len;
        out[*n] = '\0';
    }
    return 0;
}

/* Folds path (relative to base when not absolute) into out. Returns 0 or -1 when too long. */
static int file_fold_path(const char *base, const char *path, char *out, size_t cap)
{
    size_t n = 1;
    if (cap < 2)
        return -1;
    out[0] = '/';
    out[1] = '\0';
    if (path[0] != '/' && file_fold(out, &n, cap, base) != 0)
        return -1;
    return file_fold(out, &n, cap, path);
}

/* 1 when path equals dir (if equal_ok) or lies below it; both absolute and folded. */
static int file_is_inside(const char *dir, const char *path, int equal_ok)
{
    size_t dl = strlen(dir);
    if (dl == 1) /* dir is "/" */
        return equal_ok || path[1] != '\0';
    if (strncmp(path, dir, dl) != 0)
        return 0;
    return path[dl] == '/' || (equal_ok && path[dl] == '\0');
}

/* realpath() of the longest existing prefix of path (absolute, folded) into real[PATH_MAX].
 * Returns 0, -1 with errno set, or -2 when a prefix exists but does not resolve: a dangling symlink.
 * Its target is unknown here and may lie outside data_dir, where a write through the link
 * (open with O_CREAT) would create it, so the caller refuses it rather than trusting the prefix. */
static int file_real_prefix(const char *path, char *real)
{
    char cur[PATH_MAX];
    struct stat st;
    snprintf(cur, sizeof cur, "%s", path);
    for (;;) {
        if (realpath(cur, real))
            return 0;
        if (errno != ENOENT && errno != ENOTDIR)
            return -1;
        if (lstat(cur, &st) == 0) /* cur exists, so its ENOENT is a link to nothing */
            return -2;
        char *slash = strrchr(cur, '/');
        if (!slash || slash == cur) {
            snprintf(cur, sizeof cur, "/");
            continue;
        }
        *slash = '\0';
    }
}

/* 0 when the directory holding path (absolute, folded, not "/") exists. */
static int file_dir_exists(const char *path)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        slash[1] = '\0';
    else
        *slash = '\0';
    struct stat st;
    return stat(dir, &st) == 0 && S_ISDIR(st.st_mode) ? 0 : -1;
}

/* Step 1: folds file_path against dir (data_dir, folded) into path[PATH_MAX], which must lie
 * strictly inside dir. */
static int file_resolve_lexical(const char *dir, const char *file_path, char *path, char *err, size_t errlen)
{
    if (file_fold_path(dir, file_path, path, PATH_MAX) != 0)
        return util_err(err, errlen, "file_path is longer than %d bytes", PATH_MAX - 1);
    if (file_is_inside(dir, path, 0))
        return 0;
    if (file_is_inside(dir, path, 1))
        return util_err(err, errlen, "file_path '%.*s' names data_dir itself, not a file in it", FILE_SHOW_MAX,
                        file_path);
    if (file_path[0] == '/')
        return util_err(err, errlen, "file_path: an absolute path outside data_dir is refused");
    return util_err(err, errlen, "file_path '%.*s' escapes data_dir", FILE_SHOW_MAX, file_path);
}

/* Step 2: the existing part of path (folded, inside dir) must not lead out of dir by a symlink;
 * for_write also needs path's directory to exist. */
static int file_resolve_disk(const char *dir, const char *path, const char *file_path, int for_write, char *err,
                             size_t errlen)
{
    char real_dir[PATH_MAX], real[PATH_MAX];
    if (!realpath(dir, real_dir))
        return util_err(err, errlen, "file_path '%.*s': data_dir cannot be resolved: %s", FILE_SHOW_MAX, file_path,
                        strerror(errno));
    int rc = file_real_prefix(path, real);
    if (rc == -2)
        return util_err(err, errlen, "file_path '%.*s' goes through a symlink whose target does not exist",
                        FILE_SHOW_MAX, file_path);
    if (rc != 0)
        return util_err(err, errlen, "file_path '%.*s' cannot be resolved: %s", FILE_SHOW_MAX, file_path,
                        strerror(errno));
    if (!file_is_inside(real_dir, real, 1))
        return util_err(err, errlen, "file_path '%.*s' escapes data_dir through a symlink", FILE_SHOW_MAX, file_path);
    if (for_write && file_dir_exists(path) != 0)
        return util_err(err, errlen, "file_path '%.*s': its directory does not exist", FILE_SHOW_MAX, file_path);
    return 0;
}

int node_file_resolve(const char *data_dir, const char *file_path, int for_write, char *out, size_t outlen, char *err,
                      size_t errlen)
{
    char dir[PATH_MAX], path[PATH_MAX];
    if (!file_path || !*file_path)
        return util_err(err, errlen, "file_path must not be empty");
    if (!data_dir || data_dir[0] != '/' || file_fold_path("/", data_dir, dir, sizeof dir) != 0)
        return util_err(err, errlen, "file_path: data_dir is not an absolute path");
    if (file_resolve_lexical(dir, file_path, path, err, errlen) != 0 ||
        file_resolve_disk(dir, path, file_path, for_write, err, errlen) != 0)
        return -1;
    size_t len = strlen(path);
    if (len + 1 > outlen)
        return util_err(err, errlen, "file_path is longer than %zu bytes", outlen ? outlen - 1 : 0);
    memcpy(out, path, len + 1);
    return 0;
}

/* node_file_resolve's message without its leading "file_path" (and ':'), for "config.file_path: ...". */
static const char *file_reason(const char *why)
{
    if (strncmp(why, "file_path", 9) == 0)
        why += 9;
    return why + strspn(why, ": ");
}

int node_file_check_config(const char *data_dir, json_t *config, char *err, size_t errlen)
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
    /* A writer's directory may appear before its first run, so the load check never needs it. */
    if (node_file_resolve(data_dir, json_string_value(v), 0, path, sizeof path, why, sizeof why) != 0)
        return util_err(err, errlen, "config.file_path: %s", file_reason(why));
    return 0;
}

int node_file_compile(const node_env *env, json_t *config, void **compiled, char *err, size_t errlen)
{
    *compiled = NULL;
    if (node_file_check_config(env->data_dir, config, err, errlen) != 0)
        return -1;
    char *data_dir = strdup(env->data_dir);
    if (!data_dir)
        return util_err(err, errlen, "out of memory");
    *compiled = data_dir;
    return 0;
}

int node_file_path_input(const char *data_dir, json_t *inputs, int for_write, char *path, size_t len, json_t **given,
                         node_error *err)
{
    json_t *v = json_object_get(inputs, "file_path");
    char why[256];
    if (!json_is_string(v))
        return node_fail(err, "internal", "file_path: expected a string");
    if (json_string_length(v) != strlen(json_string_value(v)))
        return node_fail(err, "bad_request", "file_path must not contain NUL");
    if (node_file_resolve(data_dir, json_string_value(v), for_write, path, len, why, sizeof why) != 0)
        return node_fail(err, "bad_request", "%s", why);
    *given = v;
    return 0;
}

/* Reads the regular file at path (at most FILE_READ_MAX bytes); messages name it as given. Caller frees. */
static char *file_load(const char *path, const char *given, size_t *len, node_error *err)
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
    if ((size_t)st.st_size > FILE_READ_MAX) {
        node_fail(err, "internal", "file '%.120s' is larger than 64 MiB", given);
        return NULL;
    }
    /* util_read_file checks both again on the descriptor it opens without blocking (a FIFO swapped
     * in after this stat must not hang a worker; the file may have grown); its message names the
     * absolute path, so only the fact of the failure is passed on. */
    char *text = util_read_file(path, FILE_READ_MAX, len, why, sizeof why);
    if (!text)
        node_fail(err, "internal", "file '%.120s' could not be read", given);
    return text;
}

char *node_file_read(const char *data_dir, json_t *inputs, const char **given, size_t *len, node_error *err)
{
    char path[PATH_MAX];
    json_t *file = NULL; /* borrowed from the inputs */
    if (node_file_path_input(data_dir, inputs, 0, path, sizeof path, &file, err) != 0)
        return NULL;
    *given = json_string_value(file);
    return file_load(path, *given, len, err);
}

/* Writes all of text to fd; 0 or -1 with errno set. */
static int file_write_all(int fd, const char *text, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, text, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        text += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Closes fd (and unlinks tmp when given) keeping errno; returns -1. */
static int file_abandon(int fd, const char *tmp)
{
    int e = errno;
    if (fd >= 0)
        close(fd);
    if (tmp)
        unlink(tmp);
    errno = e;
    return -1;
}

int node_file_replace(const char *path, const char *text, size_t len)
{
    struct stat st;
    if (len > NODE_FILE_WRITE_MAX) {
        errno = EFBIG;
        return -1;
    }
    /* rename() of a file over an empty directory fails with EISDIR too; saying so first spares the
     * temporary file. */
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        errno = EISDIR;
        return -1;
    }
    /* The temporary file is ".<name>.XXXXXX" beside the target, with <name> cut to 200 bytes: the
     * whole name adds 8 bytes, which a name of 248..255 bytes (allowed, NAME_MAX) would not fit. */
    const char *slash = strrchr(path, '/');
    char tmp[PATH_MAX];
    int n = snprintf(tmp, sizeof tmp, "%.*s/.%.200s.XXXXXX", (int)(slash - path), path, slash + 1);
    if (n < 0 || (size_t)n >= sizeof tmp) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return -1;
    if (file_write_all(fd, text, len) != 0 || fchmod(fd, 0644) != 0 || fsync(fd) != 0)
        return file_abandon(fd, tmp);
    if (close(fd) != 0 || rename(tmp, path) != 0)
        return file_abandon(-1, tmp);
    return 0;
}

/* Opens path for appending, creating it (0644) when absent. The creation is O_CREAT|O_EXCL, which
 * never follows a symlink: a dangling link made after node_file_resolve looked (it refuses one it
 * sees) cannot have its target, maybe outside data_dir, created through it. EEXIST means another
 * run created the file in between (open it again) or path is such a link (ELOOP after a few rounds).
 * O_NONBLOCK: a FIFO swapped in must not hang a worker (node_file_append refuses it). */
static int file_open_append(const char *path)
{
    int flags = O_WRONLY | O_APPEND | O_CLOEXEC | O_NONBLOCK | O_NOCTTY;
    for (int round = 0; round < 3; round++) {
        int fd = open(path, flags);
        if (fd >= 0 || errno != ENOENT)
            return fd;
        fd = open(path, flags | O_CREAT | O_EXCL, 0644);
        if (fd >= 0 || errno != EEXIST)
            return fd;
    }
    errno = ELOOP;
    return -1;
}

int node_file_append(const char *path, const char *text, size_t len, const char *lead, size_t lead_len)
{
    struct stat st;
    if (len > NODE_FILE_WRITE_MAX || lead_len > NODE_FILE_WRITE_MAX - len) {
        errno = EFBIG;
        return -1;
    }
    int fd = file_open_append(path);
    if (fd < 0)
        return -1;
    if (fstat(fd, &st) != 0)
        return file_abandon(fd, NULL);
    if (!S_ISREG(st.st_mode)) {
        errno = EINVAL;
        return file_abandon(fd, NULL);
    }
    if ((st.st_size == 0 && file_write_all(fd, lead, lead_len) != 0) || file_write_all(fd, text, len) != 0 ||
        fsync(fd) != 0)
        return file_abandon(fd, NULL);
    return close(fd);
}

int node_file_output(const char *port, json_t *value, json_t **outputs, node_error *err)
{
    json_t *out = json_object();
    if (!out) {
        json_decref(value);
        return node_fail(err, "internal", "out of memory");
    }
    if (json_object_set_new(out, port, value) != 0) { /* consumes value even on failure */
        json_decref(out);
        return node_fail(err, "internal", "out of memory");
    }
    *outputs = out;
    return 0;
}
