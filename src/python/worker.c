/* worker: one Python worker process and its life on its I/O loop (python_internal.h).
 *
 *   down      no process; a timer brings the next start (backoff after a death)
 *   starting  forked and exec'd; waits for the runner's {"ready"} within PY_START_MS
 *   idle      waits for a call (the pool hands it the next queued one)
 *   busy      one call sent; its timer is the call's timeout
 *
 * Everything is a watch or a timer on the loop: the socket (EPOLLIN, EPOLLOUT while a frame is only
 * partly written), and after a death the old process's pidfd until it is reaped (waitpid WNOHANG, no
 * SIGCHLD handler). fork happens on the loop at start and restart; the child only sets up its sandbox
 * and execs (sandbox.c), so forking the multithreaded daemon is safe, and it costs the loop about a
 * millisecond per start.
 *
 * A death (the socket's EOF, a broken frame, the call's timeout, a failed start) kills the process
 * (SIGKILL), fails the running call (only that one: queued calls wait in the pool for the
 * replacement), removes the private directory and schedules the restart: at once after a worker
 * that had started, with doubling delays (PY_BACKOFF_MIN_MS..PY_BACKOFF_MAX_MS) after deaths before
 * the ready frame. PY_CRASH_LOOP such deaths in a row are a crash loop: logged once, reported to
 * /ready until a start succeeds. */

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kailash/log.h"
#include "kailash/util.h"
#include "python_internal.h"

#define PY_START_MS 15000.0
#define PY_BACKOFF_MIN_MS 100.0
#define PY_BACKOFF_MAX_MS 10000.0
#define PY_CRASH_LOOP 5
#define PY_QUICK_DEATH_MS 1000.0 /* a started worker dying sooner than this waits PY_BACKOFF_MIN_MS */

enum { W_DOWN, W_STARTING, W_IDLE, W_BUSY };

struct py_worker {
    py_pool *pool;
    ioloop *io;
    int index;
    int state;
    pid_t pid;
    int sock;
    io_watch sock_w;
    io_timer timer; /* start-up deadline, call timeout, or backoff */
    py_reader rd;
    char *out;
    size_t out_len, out_off, out_cap;
    py_call *call;
    int sent_code;   /* the running call's frame carried its code */
    uint64_t *codes; /* code ids this process compiled (a worker sees few nodes: a linear scan) */
    size_t ncodes, capcodes;
    char dir[PATH_MAX];
    int fails; /* deaths before the ready frame, in a row */
    int crash_loop;
    double started_ms;
    pid_t zpid; /* the last killed process, until reaped */
    int zpidfd;
    io_watch z_w;
};

static void worker_down(py_worker *w, const char *why, const char *code, const char *message);

/* ---- the private directory ---- */

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

/* Usually empty (the code's scratch files): removed on the loop, bounded by RLIMIT_FSIZE per file. */
static void worker_rmdir(py_worker *w)
{
    if (w->dir[0])
        nftw(w->dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
    w->dir[0] = '\0';
}

/* ---- reaping ---- */

static void zombie_reaped(py_worker *w)
{
    if (w->zpidfd >= 0) {
        ioloop_watch_stop(w->io, &w->z_w);
        close(w->zpidfd);
    }
    w->zpidfd = -1;
    w->zpid = 0;
}

static void zombie_on_exit(io_watch *iw, uint32_t ev)
{
    (void)ev;
    py_worker *w = iw->ud;
    if (waitpid(w->zpid, NULL, WNOHANG) != 0)
        zombie_reaped(w);
}

/* pid was sent SIGKILL: reaped now, or when its pidfd says it exited (without a pidfd, at the next
 * death or shutdown: waitpid then returns at once, the process having long been killed). */
static void worker_reap(py_worker *w, pid_t pid)
{
    if (w->zpid) { /* a previous one still pending: SIGKILLed long ago */
        waitpid(w->zpid, NULL, 0);
        zombie_reaped(w);
    }
    if (waitpid(pid, NULL, WNOHANG) != 0)
        return;
    w->zpid = pid;
    w->zpidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (w->zpidfd >= 0) {
        ioloop_watch_init(&w->z_w, w->zpidfd, zombie_on_exit, w);
        if (ioloop_watch_start(w->io, &w->z_w, EPOLLIN) != 0) {
            close(w->zpidfd);
            w->zpidfd = -1;
        }
    }
}

/* ---- code ids ---- */

static int codes_has(const py_worker *w, uint64_t id)
{
    for (size_t i = 0; i < w->ncodes; i++)
        if (w->codes[i] == id)
            return 1;
    return 0;
}

static void codes_add(py_worker *w, uint64_t id)
{
    if (w->ncodes == w->capcodes) {
        size_t n = w->capcodes ? w->capcodes * 2 : 16;
        uint64_t *c = realloc(w->codes, n * sizeof *c);
        if (!c)
            return; /* the code is sent again next time */
        w->codes = c;
        w->capcodes = n;
    }
    w->codes[w->ncodes++] = id;
}

/* ---- writing ---- */

/* Writes what is pending; EPOLLOUT is watched while some is left. 0, or -1 when the socket broke. */
static int worker_flush(py_worker *w)
{
    while (w->out_off < w->out_len) {
        ssize_t n = write(w->sock, w->out + w->out_off, w->out_len - w->out_off);
        if (n > 0) {
            w->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return ioloop_watch_modify(w->io, &w->sock_w, EPOLLIN | EPOLLOUT);
        return -1;
    }
    w->out_off = w->out_len = 0;
    return ioloop_watch_modify(w->io, &w->sock_w, EPOLLIN);
}

static int worker_send(py_worker *w, const char *data, size_t len)
{
    if (w->out_len + len > w->out_cap) {
        size_t n = w->out_cap ? w->out_cap : 4096;
        while (n < w->out_len + len)
            n *= 2;
        char *b = realloc(w->out, n);
        if (!b)
            return -1;
        w->out = b;
        w->out_cap = n;
    }
    memcpy(w->out + w->out_len, data, len);
    w->out_len += len;
    return worker_flush(w);
}

/* ---- frames from the worker ---- */

static void worker_ready(py_worker *w)
{
    ioloop_timer_stop(w->io, &w->timer);
    w->state = W_IDLE;
    w->fails = 0;
    if (w->crash_loop) {
        w->crash_loop = 0;
        log_msg(LOG_INFO, "python worker %d started again after a crash loop", w->index);
        py_pool_health_note(w->pool, 0, NULL);
    }
    py_pool_worker_idle(w->pool, w);
}

static int worker_answer(py_worker *w, json_t *msg)
{
    py_call *c = w->call;
    if (json_integer_value(json_object_get(msg, "id")) != (json_int_t)c->id)
        return -1;
    if (json_is_true(json_object_get(msg, "unknown_code"))) { /* the runner's cache started over */
        w->ncodes = 0;
        w->sent_code = 1;
        return worker_send(w, c->frame_code, c->frame_code_len);
    }
    ioloop_timer_stop(w->io, &w->timer);
    if (w->sent_code)
        codes_add(w, c->code_id);
    w->call = NULL;
    c->worker = NULL;
    w->state = W_IDLE;
    py_call_finish(c, msg, NULL, NULL);
    if (w->state == W_IDLE)
        py_pool_worker_idle(w->pool, w);
    return 0;
}

/* One frame. 0, or -1 when it breaks the protocol. */
static int worker_frame(py_worker *w, json_t *msg)
{
    if (w->state == W_STARTING && json_is_true(json_object_get(msg, "ready"))) {
        worker_ready(w);
        return 0;
    }
    if (w->state == W_BUSY && w->call)
        return worker_answer(w, msg);
    return -1;
}

static void worker_readable(py_worker *w)
{
    char chunk[65536], err[160];
    for (;;) {
        ssize_t n = read(w->sock, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            worker_down(w, "its process ended", "internal",
                        "the Python worker died during the call (its process ended); it is restarted");
            return;
        }
        if (py_reader_feed(&w->rd, chunk, (size_t)n) != 0) {
            worker_down(w, "out of memory", "internal", "the Python worker's answer did not fit in memory");
            return;
        }
        json_t *msg;
        int rc;
        while ((rc = py_reader_next(&w->rd, &msg, err, sizeof err)) == 1) {
            int bad = worker_frame(w, msg);
            json_decref(msg);
            if (bad) {
                worker_down(w, "it broke the protocol", "internal", "the Python worker sent an unexpected frame");
                return;
            }
        }
        if (rc < 0) {
            worker_down(w, err, "internal", "the Python worker sent a broken frame");
            return;
        }
    }
}

static void worker_on_sock(io_watch *iw, uint32_t ev)
{
    py_worker *w = iw->ud;
    if ((ev & EPOLLOUT) && worker_flush(w) != 0) {
        worker_down(w, "its socket broke", "internal", "the Python worker's socket broke during the call");
        return;
    }
    if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP))
        worker_readable(w);
}

/* ---- start, death, restart ---- */

static int worker_fork(py_worker *w, const py_settings *st, int sv[2])
{
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull < 0)
        return -1;
    char *argv[] = {(char *)st->exe, "-I", (char *)st->runner, NULL};
    py_spawn sp = {st->exe, argv, sv[1], devnull, w->dir, st->mem_bytes,
                   {st->prefix, st->runner_dir, "/usr", "/lib", "/lib64", NULL}};
    pid_t pid = fork();
    if (pid == 0)
        py_sandbox_exec(&sp);
    close(devnull);
    if (pid < 0)
        return -1;
    w->pid = pid;
    return 0;
}

/* 0 with the process started (state starting), or -1 with why. */
static int worker_spawn(py_worker *w, char *why, size_t whylen)
{
    const py_settings *st = py_settings_get();
    int sv[2] = {-1, -1};
    snprintf(w->dir, sizeof w->dir, "%s/kailashd-py-XXXXXX", st->tmp_base);
    if (!mkdtemp(w->dir)) {
        w->dir[0] = '\0';
        return util_err(why, whylen, "cannot make a private directory in %s: %s", st->tmp_base, strerror(errno));
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0 || worker_fork(w, st, sv) != 0) {
        int e = errno;
        if (sv[0] >= 0)
            close(sv[0]), close(sv[1]);
        worker_rmdir(w);
        return util_err(why, whylen, "cannot start %s: %s", st->exe, strerror(e));
    }
    close(sv[1]);
    w->sock = sv[0];
    fcntl(w->sock, F_SETFL, fcntl(w->sock, F_GETFL) | O_NONBLOCK);
    ioloop_watch_init(&w->sock_w, w->sock, worker_on_sock, w);
    ioloop_watch_start(w->io, &w->sock_w, EPOLLIN);
    w->state = W_STARTING;
    w->started_ms = util_now_ms();
    ioloop_timer_start(w->io, &w->timer, PY_START_MS);
    return 0;
}

static double worker_backoff(py_worker *w, int started)
{
    if (started)
        return util_now_ms() - w->started_ms < PY_QUICK_DEATH_MS ? PY_BACKOFF_MIN_MS : 0;
    double d = PY_BACKOFF_MIN_MS;
    for (int i = 1; i < w->fails && d < PY_BACKOFF_MAX_MS; i++)
        d *= 2;
    return d < PY_BACKOFF_MAX_MS ? d : PY_BACKOFF_MAX_MS;
}

static void worker_count_failure(py_worker *w, const char *why)
{
    w->fails++;
    if (w->fails < PY_CRASH_LOOP || w->crash_loop)
        return;
    w->crash_loop = 1;
    const py_settings *st = py_settings_get();
    log_msg(LOG_ERROR,
            "python worker %d is in a crash loop (%d failed starts in a row, last: %s; %s %s); retrying "
            "every %.0f s",
            w->index, w->fails, why, st->exe, st->runner, PY_BACKOFF_MAX_MS / 1000);
    py_pool_health_note(w->pool, 1, why);
}

/* Ends the process (if any), fails the running call with code/message, schedules the restart. */
static void worker_down(py_worker *w, const char *why, const char *code, const char *message)
{
    int started = w->state == W_IDLE || w->state == W_BUSY;
    if (w->sock >= 0) {
        ioloop_watch_stop(w->io, &w->sock_w);
        close(w->sock);
        w->sock = -1;
    }
    char status[96] = "";
    if (w->pid > 0) {
        int st;
        if (waitpid(w->pid, &st, WNOHANG) == w->pid) /* it ended by itself: say how */
            snprintf(status, sizeof status, WIFSIGNALED(st) ? " (killed by signal %d)" : " (exit status %d)",
                     WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
        else {
            kill(w->pid, SIGKILL);
            worker_reap(w, w->pid);
        }
        w->pid = 0;
    }
    char whyst[300];
    snprintf(whyst, sizeof whyst, "%s%s", why, status);
    why = whyst;
    py_reader_free(&w->rd);
    w->out_len = w->out_off = 0;
    w->ncodes = 0;
    worker_rmdir(w);
    if (!started)
        worker_count_failure(w, why);
    else
        log_msg(LOG_WARN, "python worker %d ended: %s; starting a new one", w->index, why);
    w->state = W_DOWN;
    ioloop_timer_start(w->io, &w->timer, worker_backoff(w, started));
    py_call *c = w->call;
    w->call = NULL;
    if (c) {
        c->worker = NULL;
        py_call_finish(c, NULL, code, message); /* last: done may queue another call */
    }
}

static void worker_on_timer(io_timer *t)
{
    py_worker *w = t->ud;
    char why[200], msg[200];
    switch (w->state) {
    case W_DOWN:
        if (worker_spawn(w, why, sizeof why) != 0) {
            worker_count_failure(w, why);
            ioloop_timer_start(w->io, &w->timer, worker_backoff(w, 0));
        }
        return;
    case W_STARTING:
        snprintf(why, sizeof why, "it did not start within %.0f s", PY_START_MS / 1000);
        worker_down(w, why, "internal", "the Python worker did not start");
        return;
    case W_BUSY:
        snprintf(msg, sizeof msg,
                 "the code ran longer than its timeout (%g s): its Python worker was killed and replaced",
                 w->call ? w->call->timeout_ms / 1000 : 0);
        worker_down(w, "a call passed its timeout", "timeout", msg);
        return;
    default:
        return;
    }
}

py_worker *py_worker_new(py_pool *p, ioloop *io, int index)
{
    py_worker *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->pool = p;
    w->io = io;
    w->index = index;
    w->sock = -1;
    w->zpidfd = -1;
    py_reader_init(&w->rd);
    ioloop_timer_init(&w->timer, worker_on_timer, w);
    return w;
}

void py_worker_start(py_worker *w)
{
    if (w->state == W_DOWN && !ioloop_timer_pending(&w->timer))
        ioloop_timer_start(w->io, &w->timer, 0);
}

int py_worker_idle(const py_worker *w)
{
    return w->state == W_IDLE;
}

int py_worker_pid(const py_worker *w)
{
    return w->state == W_IDLE || w->state == W_BUSY ? (int)w->pid : 0;
}

int py_worker_crash_looping(const py_worker *w)
{
    return w->crash_loop;
}

int py_worker_take(py_worker *w, py_call *c)
{
    if (w->state != W_IDLE)
        return -1;
    int known = codes_has(w, c->code_id);
    w->call = c;
    c->worker = w;
    w->sent_code = !known;
    w->state = W_BUSY;
    ioloop_timer_start(w->io, &w->timer, c->timeout_ms);
    /* A socket that broke: the process is killed, and its EOF ends the call on the next round. */
    if (worker_send(w, known ? c->frame : c->frame_code, known ? c->frame_len : c->frame_code_len) != 0)
        kill(w->pid, SIGKILL);
    return 0;
}

void py_worker_free(py_worker *w)
{
    if (!w)
        return;
    ioloop_timer_stop(w->io, &w->timer);
    if (w->sock >= 0) {
        ioloop_watch_stop(w->io, &w->sock_w);
        close(w->sock);
    }
    if (w->pid > 0) {
        kill(w->pid, SIGKILL);
        waitpid(w->pid, NULL, 0);
    }
    if (w->zpid) {
        waitpid(w->zpid, NULL, 0);
        zombie_reaped(w);
    }
    worker_rmdir(w);
    if (w->call) {
        w->call->worker = NULL;
        py_call_finish(w->call, NULL, "internal", "the server is stopping");
    }
    py_reader_free(&w->rd);
    free(w->out);
    free(w->codes);
    free(w);
}
