/* python: the pool of Python worker processes that runs PythonCodeNode's code (src/python/), never
 * inside the daemon (DESIGN.md "Waiting inside the loop").
 *
 *   frame.c    the wire: a 4-byte big-endian length, then compact JSON; an incremental reader.
 *   sandbox.c  what a worker's child does between fork and exec: rlimits, no new privileges, a
 *              seccomp filter that refuses sockets other than AF_UNIX, an empty environment.
 *   worker.c   one worker process: spawn, its socket watched by the loop, one call at a time, the
 *              call's timeout (SIGKILL), death and restart with backoff.
 *   pool.c     the settings (python.*), one pool per I/O loop with its share of the workers and a
 *              FIFO of calls, and the health /ready reports.
 *
 * Each I/O loop owns its workers: a call made on loop L goes to a worker of L, so a call costs a
 * socket write and a callback, never a thread or a cross-thread hand-off. The runner script
 * (python/kailash_runner.py) speaks the other end; its header comment is the protocol. */
#ifndef KAILASH_PYTHON_H
#define KAILASH_PYTHON_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "kailash/config.h"

struct ioloop;

/* ---- frames ---- */

#define PY_FRAME_MAX ((size_t)64 << 20) /* one frame's JSON at most */

/* Encodes msg (borrowed, an object) as one frame appended to *out (grown with realloc; *len and
 * *cap updated). 0, or -1 when msg cannot be encoded or is larger than PY_FRAME_MAX. */
int py_frame_encode(json_t *msg, char **out, size_t *len, size_t *cap);

/* An incremental reader of frames: bytes in, whole messages out. */
typedef struct py_reader {
    char *buf;
    size_t len, cap;
} py_reader;

void py_reader_init(py_reader *r);
void py_reader_free(py_reader *r);
/* Appends n bytes. 0, or -1 when out of memory. */
int py_reader_feed(py_reader *r, const void *data, size_t n);
/* The next whole message: 1 with *msg (caller decrefs, always an object), 0 when more bytes are
 * needed, -1 with err when the stream is broken (length 0 or over PY_FRAME_MAX, bad JSON, not an
 * object): the worker is then killed, never read on. */
int py_reader_next(py_reader *r, json_t **msg, char *err, size_t errlen);

/* ---- the pool ---- */

/* Settings from cfg (python.*; data_dir for the workers' private directories) for loops loops[0..n-1]
 * (borrowed: the engine's, valid until they stop). Call once after the loops start, before any call;
 * without it, calls use the defaults (python3, one worker per loop that calls). Not thread-safe. */
void python_pool_configure(const kconfig *cfg, struct ioloop *const *loops, int nloops);

/* Starts the workers of every configured loop now (a PythonCodeNode was loaded), not at the first
 * call. Idempotent; thread-safe. */
void python_pool_warm(void);

/* /ready's "python" check: -1 when no worker was ever started ("disabled"), 1 when every loop has a
 * worker that started, 0 when some loop's workers are in a crash loop, with why filled. Thread-safe. */
int python_pool_state(char *why, size_t whylen);

/* A unique id for one node's code, for the workers' compile cache. Thread-safe. */
uint64_t python_code_id(void);

typedef struct py_call py_call;

/* The end of a call (on its loop): reply is the runner's answer (borrowed: {"ok": true, "outputs":
 * {...}} or {"ok": false, "kind", "error"}), or NULL with code ("timeout", "internal") and message
 * when the worker could not answer (killed at the timeout, died, would not start). */
typedef void (*py_done_fn)(void *ud, json_t *reply, const char *code, const char *message);

typedef struct py_request {
    uint64_t code_id;
    const char *code;  /* borrowed, valid until done or cancel */
    json_t *inputs;    /* borrowed until the call returns (encoded at once) */
    double timeout_ms; /* the code's run time at most, from the moment a worker takes it */
    int asynchronous;  /* AsyncPythonCodeNode: top-level await, the SDK's async module list */
} py_request;

/* Queues a call on io's pool (loop thread only; the pool is created on first use). Returns the call,
 * whose done runs later on io exactly once unless python_call_cancel comes first; NULL with message
 * filled when it cannot be queued (out of memory, or every worker of the loop in a crash loop). */
py_call *python_call(struct ioloop *io, const py_request *rq, py_done_fn done, void *ud, char *message, size_t msglen);

/* Withdraws a call (loop thread): done will not run. A call already running finishes in its worker
 * and its answer is dropped (the timeout still bounds it). */
void python_call_cancel(py_call *c);

/* Worker processes of io's pool (alive right now), and their pids into pids[0..max-1]. For tests. */
int python_pool_pids(struct ioloop *io, int *pids, int max);

#endif
