/* python_internal.h: what src/python/'s files share (python.h is the module's public surface). */
#ifndef KAILASH_PYTHON_INTERNAL_H
#define KAILASH_PYTHON_INTERNAL_H

#include <limits.h>
#include <stdint.h>
#include <sys/types.h>

#include "kailash/ioloop.h"
#include "kailash/python.h"

/* ---- sandbox.c ---- */

#define PY_RO_PATHS 6

/* Everything the child needs, prepared before fork: the child only makes system calls. */
typedef struct py_spawn {
    const char *exe;    /* absolute path of the interpreter */
    char *const *argv;  /* exe, "-I", runner, NULL */
    int sock;           /* the worker's end of the socketpair: becomes fd 3 */
    int devnull;        /* an open /dev/null: fds 0 and 1 */
    const char *dir;    /* the private working directory */
    uint64_t mem_bytes; /* RLIMIT_AS */
    const char *ro[PY_RO_PATHS]; /* read and execute beneath these (NULL-terminated when fewer) */
} py_spawn;

/* landlock.c: the kernel's Landlock ABI (0: none), and the worker's filesystem and network rules
 * (in the child; 0, or -1 when the kernel has Landlock and refused the rules). */
int py_landlock_abi(void);
int py_sandbox_landlock(const py_spawn *s);

/* In the child between fork and exec: fds, limits, no new privileges, the seccomp filter, exec with
 * an empty environment. Never returns (_exit(127) when something fails). Async-signal-safe. */
void py_sandbox_exec(const py_spawn *s) __attribute__((noreturn));

/* ---- settings (pool.c) ---- */

typedef struct py_settings {
    int workers;                  /* python.workers: over all loops */
    int nloops;                   /* the engine's loops (0: not configured) */
    char exe[PATH_MAX];           /* python.executable, resolved on PATH */
    char runner[PATH_MAX];        /* python.runner, or found next to the binary */
    char tmp_base[PATH_MAX - 64]; /* where private directories are made */
    uint64_t mem_bytes;           /* python.memory_mb */
    char prefix[PATH_MAX];        /* the interpreter's prefix (its directory's parent): read-only */
    char runner_dir[PATH_MAX];    /* the runner's directory, absolute: read-only */
} py_settings;

const py_settings *py_settings_get(void);

/* ---- worker.c ---- */

typedef struct py_worker py_worker;
typedef struct py_pool py_pool;

/* A queued or running call (pool.c owns the queue, worker.c the running one). */
struct py_call {
    py_call *next;
    py_pool *pool;
    py_worker *worker; /* running on it, or NULL while queued */
    uint64_t id, code_id;
    char *code;  /* a copy, for a worker that has not compiled code_id */
    char *frame; /* the encoded request without "code" (sent to workers that know code_id) */
    size_t frame_len;
    char *frame_code; /* with "code" */
    size_t frame_code_len;
    double timeout_ms;
    py_done_fn done;
    void *ud;
    int cancelled;
};

py_worker *py_worker_new(py_pool *p, ioloop *io, int index);
void py_worker_free(py_worker *w);      /* kills the process */
int py_worker_idle(const py_worker *w); /* ready for a call */
void py_worker_start(py_worker *w);     /* spawns now if it is not running or waiting a backoff */
/* Sends c to an idle worker; 0, or -1 (c stays the caller's). */
int py_worker_take(py_worker *w, py_call *c);
int py_worker_pid(const py_worker *w); /* 0 when not running */
int py_worker_crash_looping(const py_worker *w);

/* ---- pool.c, for worker.c ---- */

/* A worker became idle: give it the next queued call. */
void py_pool_worker_idle(py_pool *p, py_worker *w);
/* Ends a call: done (unless cancelled), then frees it. reply borrowed or NULL with code/message. */
void py_call_finish(py_call *c, json_t *reply, const char *code, const char *message);
/* A worker's crash-loop state changed (for /ready), with the reason (no secrets: exit statuses). */
void py_pool_health_note(py_pool *p, int crash_looping, const char *why);

#endif
