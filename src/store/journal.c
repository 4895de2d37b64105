/* journal: the run store's embedded backend (store_internal.h), the default without database_url.
 *
 * Records go to append-only JSON-lines segments under <data_dir>/runs/, "runs-<12 digits>.jsonl",
 * so names sort by age; a later line of a run supersedes an earlier one. One writer thread takes
 * everything queued (up to store.batch_max), writes it with pwritev, makes it durable with ONE
 * fdatasync, updates the index, and only then calls store_written: a record is always readable,
 * from store.c's pending set before that and from the index after it. enqueue only links the item
 * into a mutex-guarded list and signals, so no caller ever waits on the disk. Items stay linked in
 * the queue until written: the writer reads a batch's pointers, and unlinks them only once durable.
 *
 * Segments: every start opens a new one (never appending after a tail a crash may have torn); one
 * that passes store.segment_bytes after a batch is closed and the next opened. After each opening,
 * retention removes the oldest segments beyond store.retain_segments and those whose newest record
 * is older than store.retain_s (mtime for segments of an earlier run), oldest first and stopping at
 * the first one kept, so an older line of a run can never outlive a newer one; the segment being
 * written is never removed.
 *
 * Start-up scans every segment in order (journal_scan.c) to rebuild the index (journal_index.c).
 *
 * Failure never stops the daemon: when the directory cannot be made or read, or an open, a write or
 * the fdatasync fails, health says why (logged once, and once on recovery), the items stay queued
 * (and pending in store.c, which bounds them) and the writer retries every second. A batch that
 * failed part-way is cut off again with ftruncate before the retry, so no torn line is ever left in
 * the middle of a segment; when even that fails the segment is abandoned (its torn tail is what a
 * crash leaves, and the scanner skips it) and the retry opens a new one.
 *
 * Reads open the segment, pread the line and close it, outside the index's lock: segments are
 * immutable once indexed, and one removed by retention meanwhile reads as not found. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "journal_internal.h"
#include "kailash/log.h"
#include "store_internal.h"

#define JOURNAL_RETRY_MS 1000.0
/* Group commit: a batch starts at most this often unless batch_max records wait, so a busy daemon
 * pays one fdatasync (a disk flush) per few hundred records, not per few (measured: a batch per
 * wake-up made run records cost a third of the one-node workflow's throughput). Records are
 * write-behind: this delays only when a record is on disk, never an answer. */
#define JOURNAL_GATHER_MS 5.0
#define JOURNAL_READ_CHUNK ((size_t)1 << 20)

typedef struct jseg {
    uint64_t id;
    double newest_s; /* Unix time of its newest record (its mtime, for a segment found at start) */
} jseg;

static struct {
    /* Set by start; read-only while the thread runs. */
    char dir[PATH_MAX];
    size_t batch_max, segment_bytes;
    int retain_segments, retain_s;
    jidx ix;

    pthread_mutex_t mu; /* the queue, stop and health */
    pthread_cond_t cv;
    store_item *head, *tail;
    size_t nq;       /* items queued (head..tail) */
    int idle;        /* the writer waits for work: the next enqueue wakes it */
    int urgent;      /* a queued record is waited for (store_put_durable): no gathering */
    double next_ms;  /* no batch starts before this unless batch_max are queued (group commit) */
    int stopping, stop_tried;
    double deadline_ms, retry_at_ms;
    int up;
    char why[200];
    pthread_t thread;
    int running;

    /* The writer thread's own (start's, before the thread exists). */
    int loaded; /* the directory has been scanned */
    int fd;     /* the segment being written, or -1 */
    int lock_fd; /* runs/.lock, held (flock) while this process owns the directory; -1 before */
    uint64_t reuse_id, reuse_size; /* the last segment, whole (it ends with a newline) and not full:
                                    * written on after a restart instead of a new one (0: none) */
    uint64_t seg_id, seg_size, next_id;
    jseg *segs; /* known segments, oldest first; the last is the one being written */
    size_t nsegs;
    store_item **batch;
    char **fixed; /* per batch item: a copy with its newlines made blanks, or NULL */
    struct iovec *iov;
} J = {.ix = {.lock = PTHREAD_RWLOCK_INITIALIZER}, .mu = PTHREAD_MUTEX_INITIALIZER, .fd = -1, .lock_fd = -1};

/* ---- names, health -------------------------------------------------------------------------------- */

void journal_seg_name(uint64_t id, char out[32])
{
    snprintf(out, 32, "runs-%012" PRIu64 ".jsonl", id);
}

uint64_t journal_seg_id(const char *name)
{
    if (strlen(name) != 23 || strncmp(name, "runs-", 5) != 0 || strcmp(name + 17, ".jsonl") != 0)
        return 0;
    uint64_t id = 0;
    for (int i = 5; i < 17; i++) {
        if (name[i] < '0' || name[i] > '9')
            return 0;
        id = id * 10 + (uint64_t)(name[i] - '0');
    }
    return id;
}

static void journal_path(uint64_t id, char *out, size_t cap)
{
    char name[32];
    journal_seg_name(id, name);
    snprintf(out, cap, "%s/%s", J.dir, name);
}

/* The writer (or start) failed: health says why; the transition is logged once. */
static void journal_down(const char *what, int err)
{
    pthread_mutex_lock(&J.mu);
    snprintf(J.why, sizeof J.why, "%s: %s", what, strerror(err));
    if (J.up)
        log_msg(LOG_ERROR, "run records: the journal cannot write (%s); records stay pending, retrying every second",
                J.why);
    J.up = 0;
    J.retry_at_ms = util_now_ms() + JOURNAL_RETRY_MS;
    pthread_mutex_unlock(&J.mu);
}

static void journal_up(void)
{
    pthread_mutex_lock(&J.mu);
    if (!J.up)
        log_msg(LOG_INFO, "run records: the journal writes again");
    J.up = 1;
    J.why[0] = '\0';
    pthread_mutex_unlock(&J.mu);
}

static void journal_health(store_health *h)
{
    h->check = "journal";
    pthread_mutex_lock(&J.mu);
    h->up = J.up;
    util_copy(h->why, sizeof h->why, J.why);
    pthread_mutex_unlock(&J.mu);
}

/* ---- start-up scan ---------------------------------------------------------------------------------- */

typedef struct scan_ctx {
    uint64_t seg;
} scan_ctx;

static int journal_index_line(void *ud, const journal_line *l)
{
    const scan_ctx *c = ud;
    jidx_wrlock(&J.ix);
    int rc = jidx_put_locked(&J.ix, l->run_id, l->workflow, l->status, l->principal, c->seg, l->off, l->len, 0);
    jidx_unlock(&J.ix);
    return rc;
}

/* Indexes one segment; 0, or -1 when memory ran out. An unreadable segment is logged and left out
 * (its records are missing until a restart can read it), never a reason to refuse the start. */
static int journal_scan_segment(uint64_t id, double *mtime, char *chunk)
{
    char path[PATH_MAX + 32];
    journal_path(id, path, sizeof path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        log_msg(LOG_ERROR, "run records: %s: %s (its records are left out)", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return 0;
    }
    *mtime = (double)st.st_mtim.tv_sec + st.st_mtim.tv_nsec / 1e9;
    scan_ctx c = {id};
    journal_scan s = {0};
    journal_scan_init(&s, JOURNAL_LINE_MAX, journal_index_line, &c);
    int rc = 0;
    ssize_t got;
    while (rc == 0 && (got = read(fd, chunk, JOURNAL_READ_CHUNK)) != 0) {
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            log_msg(LOG_ERROR, "run records: %s: %s (the rest of it is left out)", path, strerror(errno));
            break;
        }
        rc = journal_scan_feed(&s, chunk, (size_t)got);
    }
    journal_scan_finish(&s);
    if (s.skipped)
        log_msg(LOG_WARN, "run records: %s: %zu line(s) skipped, not records (a torn last line is what a crash leaves)",
                path, s.skipped);
    journal_scan_free(&s);
    close(fd);
    return rc;
}

static int journal_id_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The segment ids in the directory, oldest first, into *ids (caller frees). 0, or -1 with errno. */
static int journal_list_dir(uint64_t **ids, size_t *n)
{
    DIR *d = opendir(J.dir);
    if (!d)
        return -1;
    size_t cap = 0;
    *ids = NULL;
    *n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        uint64_t id = journal_seg_id(de->d_name);
        if (!id)
            continue;
        void *grown = *n == cap ? util_grow_zeroed(*ids, &cap, sizeof **ids, *n, 64) : *ids;
        if (!grown) {
            closedir(d);
            errno = ENOMEM;
            return -1;
        }
        *ids = grown;
        (*ids)[(*n)++] = id;
    }
    closedir(d);
    if (*n > 1) /* qsort's array may not be NULL, even for no elements */
        qsort(*ids, *n, sizeof **ids, journal_id_cmp);
    return 0;
}

/* Makes the directory and indexes what it holds. Empty segments (a start that never wrote) are
 * removed, so restarts do not push records out through retain_segments. 0; -1 with the directory
 * unusable (health down; the writer calls it again); -2 out of memory. */
/* Two daemons must never share a journal (their segment names would collide): the directory is
 * taken with an flock on runs/.lock, held until stop. -3 when another process holds it. */
static int journal_lock(void)
{
    if (J.lock_fd >= 0)
        return 0;
    char path[PATH_MAX + 8];
    snprintf(path, sizeof path, "%s/.lock", J.dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0)
        return -1;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return e == EWOULDBLOCK ? -3 : -1;
    }
    J.lock_fd = fd;
    return 0;
}

/* A start writes on in the last segment when it ends with a whole line and has room: a daemon
 * restarted often (or `kailashd run` from cron) would otherwise fill retain_segments with segments
 * of a few records each. A torn tail gets a new segment (the scan skipped it; nothing is appended
 * to it). */
static void journal_reuse_check(uint64_t id)
{
    char path[PATH_MAX + 32], last = 0;
    journal_path(id, path, sizeof path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    J.reuse_id = 0;
    int young = J.retain_s <= 0 || fd < 0 || fstat(fd, &st) != 0 ||
                (double)st.st_mtim.tv_sec > util_now_unix_s() - J.retain_s; /* else retention takes it */
    if (fd >= 0 && young && fstat(fd, &st) == 0 && st.st_size > 0 && (uint64_t)st.st_size < J.segment_bytes &&
        pread(fd, &last, 1, st.st_size - 1) == 1 && last == '\n') {
        J.reuse_id = id;
        J.reuse_size = (uint64_t)st.st_size;
    }
    if (fd >= 0)
        close(fd);
}

static int journal_load(void)
{
    mkdir(J.dir, 0750); /* EEXIST is fine; any other trouble shows in opendir */
    int locked = journal_lock();
    if (locked != 0) {
        journal_down(locked == -3 ? "another kailashd writes this data_dir's journal" : J.dir, errno);
        return locked == -3 ? -3 : -1;
    }
    uint64_t *ids;
    size_t n;
    if (journal_list_dir(&ids, &n) != 0) {
        int e = errno;
        journal_down(J.dir, e);
        return e == ENOMEM ? -2 : -1;
    }
    char *chunk = malloc(JOURNAL_READ_CHUNK);
    jseg *segs = calloc(n + 1, sizeof *segs);
    int rc = chunk && segs ? 0 : -2;
    size_t kept = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        double mtime = util_now_unix_s();
        char path[PATH_MAX + 32];
        journal_path(ids[i], path, sizeof path);
        struct stat st;
        if (stat(path, &st) == 0 && st.st_size == 0) {
            unlink(path);
            continue;
        }
        if (journal_scan_segment(ids[i], &mtime, chunk) != 0)
            rc = -2;
        segs[kept++] = (jseg){ids[i], mtime};
    }
    J.next_id = n ? ids[n - 1] + 1 : 1;
    if (rc == 0 && kept)
        journal_reuse_check(segs[kept - 1].id);
    free(chunk);
    free(ids);
    if (rc != 0) {
        free(segs);
        return rc;
    }
    free(J.segs);
    J.segs = segs;
    J.nsegs = kept;
    J.loaded = 1;
    return 0;
}

/* ---- segments: open, rotate, retain ------------------------------------------------------------------ */

/* Removes the oldest segments retention no longer keeps (never the last: it is being written). */
static void journal_retain(void)
{
    double now = util_now_unix_s();
    size_t drop = 0;
    while (J.nsegs - drop > 1) {
        const jseg *s = &J.segs[drop];
        int too_many = J.retain_segments > 0 && J.nsegs - drop > (size_t)J.retain_segments;
        int too_old = J.retain_s > 0 && s->newest_s < now - J.retain_s;
        if (!too_many && !too_old)
            break;
        /* The index first: a reader then finds nothing rather than a file that is gone. */
        jidx_drop_segment(&J.ix, s->id);
        char path[PATH_MAX + 32];
        journal_path(s->id, path, sizeof path);
        if (unlink(path) != 0 && errno != ENOENT)
            log_msg(LOG_WARN, "run records: %s: %s (retention could not remove it)", path, strerror(errno));
        drop++;
    }
    memmove(J.segs, J.segs + drop, (J.nsegs - drop) * sizeof *J.segs);
    J.nsegs -= drop;
}

/* A new file's name is durable only once its directory is synced. */
static int journal_sync_dir(void)
{
    int dfd = open(J.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -1;
    int rc = fsync(dfd);
    int e = errno;
    close(dfd);
    errno = e;
    return rc;
}

/* Opens the next segment and applies retention; 0, or -1 with health down. */
static int journal_open_next(void)
{
    if (!J.loaded) {
        int rc = journal_load();
        if (rc == -2)
            journal_down(J.dir, ENOMEM);
        if (rc != 0)
            return -1;
    }
    jseg *segs = realloc(J.segs, (J.nsegs + 1) * sizeof *segs);
    if (!segs) {
        journal_down(J.dir, ENOMEM);
        return -1;
    }
    J.segs = segs;
    char path[PATH_MAX + 32];
    if (J.reuse_id) {
        uint64_t id = J.reuse_id;
        J.reuse_id = 0;
        journal_path(id, path, sizeof path);
        int fd = open(path, O_RDWR | O_CLOEXEC);
        if (fd >= 0) {
            J.fd = fd;
            J.seg_id = id;
            J.seg_size = J.reuse_size; /* batches are written at this offset on: pwritev */
            return 0;
        }
    }
    journal_path(J.next_id, path, sizeof path);
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (fd < 0 || journal_sync_dir() != 0) {
        int e = errno;
        if (fd >= 0) {
            close(fd);
            unlink(path);
        }
        journal_down(fd < 0 ? path : J.dir, e);
        return -1;
    }
    J.fd = fd;
    J.seg_id = J.next_id++;
    J.seg_size = 0;
    J.segs[J.nsegs++] = (jseg){J.seg_id, util_now_unix_s()};
    journal_retain();
    return 0;
}

static void journal_close_segment(void)
{
    if (J.fd >= 0)
        close(J.fd);
    J.fd = -1;
}

/* ---- writing a batch -------------------------------------------------------------------------------- */

/* Writes every byte of iov[0..cnt) at off, resuming after short writes. 0, or -1 with errno. */
static int journal_pwrite_all(struct iovec *iov, size_t cnt, uint64_t off)
{
    while (cnt > 0) {
        int part = cnt > IOV_MAX ? IOV_MAX : (int)cnt;
        ssize_t w = pwritev(J.fd, iov, part, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        if (w == 0) {
            errno = EIO;
            return -1;
        }
        off += (uint64_t)w;
        size_t done = (size_t)w;
        while (cnt > 0 && done >= iov->iov_len) {
            done -= iov->iov_len;
            iov++;
            cnt--;
        }
        if (cnt > 0 && done > 0) {
            iov->iov_base = (char *)iov->iov_base + done;
            iov->iov_len -= done;
        }
    }
    return 0;
}

/* A record is one line: compact JSON has no raw newline, but should one come, it can only stand
 * between tokens (a raw newline inside a JSON string is invalid), where a blank means the same. */
static const char *journal_line_bytes(size_t i)
{
    const store_item *it = J.batch[i];
    if (!memchr(it->json, '\n', it->len))
        return it->json;
    if (!(J.fixed[i] = malloc(it->len)))
        return NULL;
    for (size_t k = 0; k < it->len; k++)
        J.fixed[i][k] = it->json[k] == '\n' ? ' ' : it->json[k];
    return J.fixed[i];
}

static void journal_free_fixed(size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(J.fixed[i]);
        J.fixed[i] = NULL;
    }
}

/* Cuts a failed batch off again; a segment that cannot be cut is abandoned (the retry opens a new
 * one). */
static void journal_rollback(uint64_t start)
{
    if (ftruncate(J.fd, (off_t)start) != 0) {
        log_msg(LOG_ERROR,
                "run records: segment %" PRIu64 " cannot be cut back after a failed write (%s); "
                "starting a new one",
                J.seg_id, strerror(errno));
        journal_close_segment();
    }
}

/* Writes J.batch[0..n) at the segment's end and syncs it once. 0, or -1 with health down. */
static int journal_write_batch(size_t n)
{
    static const char nl[] = "\n";
    uint64_t start = J.seg_size, total = 0;
    for (size_t i = 0; i < n; i++) {
        const char *bytes = journal_line_bytes(i);
        if (!bytes) {
            journal_free_fixed(n);
            journal_down(J.dir, ENOMEM);
            return -1;
        }
        J.iov[2 * i] = (struct iovec){(void *)bytes, J.batch[i]->len};
        J.iov[2 * i + 1] = (struct iovec){(void *)nl, 1};
        total += J.batch[i]->len + 1;
    }
    int rc = journal_pwrite_all(J.iov, 2 * n, start);
    if (rc == 0)
        rc = fdatasync(J.fd);
    int e = errno;
    journal_free_fixed(n);
    if (rc != 0) {
        char path[PATH_MAX + 32];
        journal_path(J.seg_id, path, sizeof path);
        journal_rollback(start);
        journal_down(path, e);
        return -1;
    }
    J.seg_size = start + total;
    J.segs[J.nsegs - 1].newest_s = util_now_unix_s();
    return 0;
}

/* The batch is durable: index it (from the offsets it was written at), then let it go. */
static void journal_index_batch(size_t n, uint64_t start)
{
    jidx_wrlock(&J.ix);
    for (size_t i = 0; i < n; i++) {
        const store_item *it = J.batch[i];
        if (jidx_put_locked(&J.ix, it->run_id, it->workflow, it->status, it->principal, J.seg_id, start, it->len,
                            it->seq) != 0)
            log_msg(LOG_ERROR, "run records: out of memory indexing run %s (written; readable after a restart)",
                    it->run_id);
        start += it->len + 1;
    }
    jidx_unlock(&J.ix);
    pthread_mutex_lock(&J.mu);
    J.head = J.batch[n - 1]->next;
    if (!J.head)
        J.tail = NULL;
    J.nq -= n;
    pthread_mutex_unlock(&J.mu);
    store_written(J.batch, n);
}

/* ---- the writer thread ----------------------------------------------------------------------------- */

static void journal_wait(double until_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double ms = until_ms - util_now_ms();
    if (ms < 0)
        ms = 0;
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)((ms - (double)(time_t)(ms / 1000) * 1000) * 1e6);
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&J.cv, &J.mu, &ts);
}

/* Waits until there is something to do, then copies up to batch_max queued pointers into J.batch
 * (the items stay queued). Returns how many (0: no items, but the segment is to be opened again), or
 * -1 when the thread is to end: stopping, and the queue empty or the deadline passed after a try. */
static long journal_next_batch(void)
{
    pthread_mutex_lock(&J.mu);
    for (;;) {
        double now = util_now_ms();
        /* Past the deadline one try is still made, unless the last one failed a moment ago. */
        int late = now >= J.deadline_ms && (J.stop_tried || now < J.retry_at_ms);
        if (J.stopping && (!J.head || late)) {
            pthread_mutex_unlock(&J.mu);
            return -1;
        }
        int due = J.stopping || J.urgent || J.nq >= J.batch_max || now >= J.next_ms;
        if ((J.head || J.fd < 0) && now >= J.retry_at_ms && (due || !J.head))
            break;
        if (J.head && !due && now >= J.retry_at_ms)
            journal_wait(J.next_ms); /* gathering: one fdatasync for what comes meanwhile */
        else if (J.head || J.fd < 0)
            journal_wait(J.stopping && J.deadline_ms < J.retry_at_ms ? J.deadline_ms : J.retry_at_ms);
        else {
            J.idle = 1;
            pthread_cond_wait(&J.cv, &J.mu);
            J.idle = 0;
        }
    }
    J.next_ms = util_now_ms() + JOURNAL_GATHER_MS;
    J.stop_tried = J.stopping;
    J.urgent = 0;
    size_t n = 0;
    for (store_item *it = J.head; it && n < J.batch_max; it = it->next)
        J.batch[n++] = it;
    pthread_mutex_unlock(&J.mu);
    return (long)n;
}

static void *journal_main(void *arg)
{
    (void)arg;
    long n;
    while ((n = journal_next_batch()) >= 0) {
        if (J.fd < 0 && journal_open_next() != 0)
            continue;
        if (n == 0) {
            journal_up();
            continue;
        }
        uint64_t start = J.seg_size;
        if (journal_write_batch((size_t)n) != 0)
            continue;
        journal_up();
        journal_index_batch((size_t)n, start);
        if (J.seg_size >= J.segment_bytes) {
            journal_close_segment();
            journal_open_next();
        }
    }
    return NULL;
}

/* ---- the backend's functions ---------------------------------------------------------------------- */

static void journal_release(void)
{
    journal_close_segment();
    if (J.lock_fd >= 0)
        close(J.lock_fd); /* and with it the flock */
    J.lock_fd = -1;
    jidx_clear(&J.ix);
    free(J.segs);
    free(J.batch);
    free(J.fixed);
    free(J.iov);
    J.segs = NULL;
    J.batch = NULL;
    J.fixed = NULL;
    J.iov = NULL;
    J.nsegs = 0;
    J.head = J.tail = NULL; /* what was not written stays store.c's */
    J.nq = 0;
}

static int journal_init_cv(void)
{
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0)
        return -1;
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&J.cv, &ca);
    pthread_condattr_destroy(&ca);
    return rc;
}

static int journal_start(const kconfig *cfg, char *err, size_t errlen)
{
    if (J.running)
        return util_err(err, errlen, "run records: the journal is already started");
    int len = snprintf(J.dir, sizeof J.dir, "%s/runs", cfg->data_dir);
    if (len < 0 || (size_t)len + 32 >= sizeof J.dir)
        return util_err(err, errlen, "data_dir: too long for the journal's files");
    J.batch_max = cfg->store_batch_max > 0 ? (size_t)cfg->store_batch_max : 1;
    J.segment_bytes = cfg->store_segment_bytes;
    J.retain_segments = cfg->store_retain_segments;
    J.retain_s = cfg->store_retain_s;
    J.head = J.tail = NULL;
    J.nq = 0;
    J.stopping = J.stop_tried = 0;
    J.retry_at_ms = 0;
    J.up = 1;
    J.why[0] = '\0';
    J.loaded = 0;
    J.reuse_id = 0;
    J.fd = -1;
    jidx_init(&J.ix);
    J.batch = calloc(J.batch_max, sizeof *J.batch);
    J.fixed = calloc(J.batch_max, sizeof *J.fixed);
    J.iov = calloc(2 * J.batch_max, sizeof *J.iov);
    if (!J.batch || !J.fixed || !J.iov || journal_init_cv() != 0) {
        journal_release();
        return util_err(err, errlen, "run records: out of memory");
    }
    /* A directory that cannot be used is health's business, not the start's: the writer retries. */
    int rc = journal_load();
    if (rc == -3) {
        pthread_cond_destroy(&J.cv);
        journal_release();
        return util_err(err, errlen, "data_dir '%s': another kailashd writes run records there (give each instance "
                        "its own data_dir, or share a database_url)", cfg->data_dir);
    }
    if (rc == -2) {
        pthread_cond_destroy(&J.cv);
        journal_release();
        return util_err(err, errlen, "run records: out of memory scanning %s", J.dir);
    }
    if (rc == 0)
        journal_open_next();
    if (pthread_create(&J.thread, NULL, journal_main, NULL) != 0) {
        pthread_cond_destroy(&J.cv);
        journal_release();
        return util_err(err, errlen, "run records: cannot start the journal's thread");
    }
    J.running = 1;
    return 0;
}

static void journal_enqueue(store_item *it)
{
    it->next = NULL;
    pthread_mutex_lock(&J.mu);
    if (J.tail)
        J.tail->next = it;
    else
        J.head = it;
    J.tail = it;
    /* A writer that is gathering or writing takes it with its next batch: no wake-up per record. A
     * record someone waits for (an async accept's) ends the gathering: the batch goes as soon as the
     * writer is free, and what comes while it syncs shares the next one. */
    J.nq++;
    int wake = J.idle || J.nq >= J.batch_max || (it->durable && !J.urgent);
    if (it->durable)
        J.urgent = 1;
    if (wake)
        pthread_cond_signal(&J.cv);
    pthread_mutex_unlock(&J.mu);
}

static void journal_stop(double deadline_ms)
{
    if (!J.running)
        return;
    pthread_mutex_lock(&J.mu);
    J.stopping = 1;
    J.deadline_ms = deadline_ms;
    pthread_cond_signal(&J.cv);
    pthread_mutex_unlock(&J.mu);
    pthread_join(J.thread, NULL);
    J.running = 0;
    pthread_cond_destroy(&J.cv);
    journal_release();
}

/* ---- reads ---------------------------------------------------------------------------------------- */

/* Reads loc's line into out (loc->len bytes), reusing *fd while it is open on segment *fd_seg.
 * 0; 1 when the segment or the line is gone (retention removed it meanwhile); -1 on an I/O error. */
static int journal_read(const jidx_loc *loc, int *fd, uint64_t *fd_seg, char *out)
{
    if (*fd < 0 || *fd_seg != loc->seg) {
        if (*fd >= 0)
            close(*fd);
        char path[PATH_MAX + 32];
        journal_path(loc->seg, path, sizeof path);
        *fd = open(path, O_RDONLY | O_CLOEXEC);
        *fd_seg = loc->seg;
        if (*fd < 0)
            return errno == ENOENT ? 1 : -1;
    }
    size_t done = 0;
    while (done < loc->len) {
        ssize_t r = pread(*fd, out + done, loc->len - done, (off_t)(loc->off + done));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return r == 0 ? 1 : -1;
        done += (size_t)r;
    }
    return 0;
}

static void journal_get(const char *run_id, store_get_cb cb, void *ud)
{
    jidx_loc loc;
    if (!jidx_find(&J.ix, run_id, &loc)) {
        cb(ud, STORE_NOT_FOUND, NULL, 0);
        return;
    }
    char *b = malloc(loc.len + 1);
    int fd = -1, rc = -1;
    uint64_t fd_seg = 0;
    if (b)
        rc = journal_read(&loc, &fd, &fd_seg, b);
    if (fd >= 0)
        close(fd);
    if (rc == 0)
        cb(ud, STORE_OK, b, loc.len);
    else
        cb(ud, rc == 1 ? STORE_NOT_FOUND : STORE_UNAVAILABLE, NULL, 0);
    free(b);
}

typedef struct journal_page {
    jidx_loc *loc;
    char **json;
    size_t *len;
    const char **ids;
    size_t n;
} journal_page;

static void journal_page_free(journal_page *p, size_t cap)
{
    for (size_t i = 0; p->json && i < cap; i++)
        free(p->json[i]);
    free(p->loc);
    free(p->json);
    free(p->len);
    free(p->ids);
}

/* Reads the selected lines; one gone meanwhile leaves the page. 0, or -1 (I/O error, no memory). */
static int journal_page_read(journal_page *p, size_t n)
{
    int fd = -1, rc = 0;
    uint64_t fd_seg = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        char *b = malloc(p->loc[i].len + 1);
        int r = b ? journal_read(&p->loc[i], &fd, &fd_seg, b) : -1;
        if (r == 0) {
            p->json[p->n] = b;
            p->len[p->n] = p->loc[i].len;
            p->ids[p->n] = p->loc[i].run_id;
            p->n++;
            continue;
        }
        free(b);
        rc = r < 0 ? -1 : 0;
    }
    if (fd >= 0)
        close(fd);
    return rc;
}

static void journal_list(const store_query *q, store_list_cb cb, void *ud)
{
    store_query bq = *q;
    bq.limit = q->limit < 0 ? 0 : q->limit > STORE_LIST_MAX ? STORE_LIST_MAX : q->limit;
    size_t cap = (size_t)bq.limit + 1;
    journal_page p = {calloc(cap, sizeof *p.loc), calloc(cap, sizeof *p.json), calloc(cap, sizeof *p.len),
                      calloc(cap, sizeof *p.ids), 0};
    int more = 0;
    int rc = p.loc && p.json && p.len && p.ids ? 0 : -1;
    if (rc == 0)
        rc = journal_page_read(&p, jidx_select(&J.ix, &bq, p.loc, &more));
    if (rc == 0) {
        store_page page = {p.n, (const char *const *)p.json, p.len, p.ids, more};
        cb(ud, STORE_OK, &page);
    } else {
        cb(ud, STORE_UNAVAILABLE, NULL);
    }
    journal_page_free(&p, cap);
}

const store_backend store_journal = {"journal",    journal_start, journal_enqueue, journal_get,
                                     journal_list, journal_stop,  journal_health};
