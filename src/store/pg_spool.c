/* pg_spool: <data_dir>/pg-spool.jsonl, where records wait while Postgres is down.
 *
 * One record per line, appended and fdatasync'd per batch (the directory is synced too when the file
 * is new), so a spooled record is as durable as a written one. A failed append is cut back to the
 * old size, so the file never holds a torn line of ours. Replay reads it in batches of batch_max
 * lines, in file order (later lines are newer), and truncates it only once every batch is in: a
 * replay interrupted by a crash or an outage starts over, which the upsert makes harmless. Lines that
 * are not a JSON object with a run_id (a torn tail left by a crash of the machine) are skipped and
 * counted in the log. Only the writer thread touches the file. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "kailash/log.h"
#include "pg_internal.h"

long long pg_spool_size(void)
{
    struct stat st;
    return stat(pg_g.spool, &st) == 0 ? (long long)st.st_size : 0;
}

static int spool_write_all(int fd, const pg_rec *recs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct iovec iov[2] = {{(void *)recs[i].json, recs[i].len}, {(void *)"\n", 1}};
        while (iov[1].iov_len) {
            ssize_t w = writev(fd, iov[0].iov_len ? iov : iov + 1, iov[0].iov_len ? 2 : 1);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                return -1;
            size_t left = (size_t)w;
            size_t a = left < iov[0].iov_len ? left : iov[0].iov_len;
            iov[0].iov_base = (char *)iov[0].iov_base + a;
            iov[0].iov_len -= a;
            left -= a;
            if (left)
                iov[1].iov_len = 0;
        }
    }
    return 0;
}

int pg_spool_append(const pg_rec *recs, size_t n, char *err, size_t errlen)
{
    int fd = open(pg_g.spool, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return util_err(err, errlen, "spool %s: %s", pg_g.spool, strerror(errno));
    struct stat st;
    off_t old = fstat(fd, &st) == 0 ? st.st_size : -1;
    if (old < 0 || spool_write_all(fd, recs, n) != 0 || fdatasync(fd) != 0) {
        int e = errno;
        if (old >= 0 && ftruncate(fd, old) == 0)
            fdatasync(fd);
        close(fd);
        return util_err(err, errlen, "spool %s: %s", pg_g.spool, strerror(e));
    }
    close(fd);
    if (old == 0) { /* maybe a new file: its directory entry must last too */
        int dfd = open(pg_g.data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
    }
    return 0;
}

/* The replay's current batch: the lines read and their run_ids. */
typedef struct spool_batch {
    size_t n;
    char **line;
    char (*id)[37];
    pg_rec *recs;
} spool_batch;

static void spool_batch_clear(spool_batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        free(b->line[i]);
    b->n = 0;
}

/* Takes line (len bytes, no newline) into b when it is a record; 0 taken, -1 skipped (not ours). */
static int spool_take(spool_batch *b, char *line, size_t len)
{
    json_t *j = json_loadb(line, len, JSON_ALLOW_NUL, NULL);
    json_t *id = json_object_get(j, "run_id");
    int ok = json_is_object(j) && json_is_string(id) && store_is_uuid(json_string_value(id));
    if (ok) {
        /* lowercased: the batch is deduplicated by this id, and Postgres refuses one row twice in
         * a statement (a hand-edited spool could spell one run in two cases) */
        for (int k = 0; k < 37; k++)
            b->id[b->n][k] = (char)tolower((unsigned char)json_string_value(id)[k]);
        b->line[b->n] = line;
        b->recs[b->n] = (pg_rec){b->id[b->n], line, len};
        b->n++;
    }
    json_decref(j);
    return ok ? 0 : -1;
}

int pg_spool_replay(PGconn *c, char *err, size_t errlen)
{
    FILE *f = fopen(pg_g.spool, "re");
    if (!f)
        return errno == ENOENT ? 0 : util_err(err, errlen, "spool %s: %s", pg_g.spool, strerror(errno));
    size_t cap = (size_t)pg_g.batch_max, skipped = 0, total = 0;
    spool_batch b = {0, malloc(cap * sizeof *b.line), malloc(cap * sizeof *b.id), malloc(cap * sizeof *b.recs)};
    int rc = b.line && b.id && b.recs ? 0 : util_err(err, errlen, "out of memory");
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    while (rc == 0 && (len = getline(&line, &lcap, f)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len == 0)
            continue;
        if (spool_take(&b, line, (size_t)len) != 0) {
            skipped++;
            continue;
        }
        line = NULL; /* the batch owns it now */
        lcap = 0;
        if (b.n == cap) {
            rc = pg_write_batch(c, b.recs, b.n, err, errlen);
            total += b.n;
            spool_batch_clear(&b);
        }
    }
    free(line);
    if (rc == 0 && ferror(f))
        rc = util_err(err, errlen, "spool %s: read error", pg_g.spool);
    if (rc == 0 && b.n) {
        rc = pg_write_batch(c, b.recs, b.n, err, errlen);
        total += b.n;
    }
    spool_batch_clear(&b);
    free(b.line);
    free(b.id);
    free(b.recs);
    fclose(f);
    if (rc != 0)
        return -1;
    int fd = open(pg_g.spool, O_WRONLY | O_TRUNC | O_CLOEXEC);
    if (fd < 0 || fdatasync(fd) != 0) {
        rc = util_err(err, errlen, "spool %s: cannot truncate it: %s", pg_g.spool, strerror(errno));
        if (fd >= 0)
            close(fd);
        return rc;
    }
    close(fd);
    if (skipped)
        log_msg(LOG_WARN, "store: postgres spool %s: %zu line(s) that are not records skipped", pg_g.spool, skipped);
    log_msg(LOG_INFO, "store: postgres spool: %zu record(s) replayed", total);
    return 0;
}
