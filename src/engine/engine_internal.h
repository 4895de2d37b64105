/* Shared inside src/engine/ only. */
#ifndef KAILASH_ENGINE_INTERNAL_H
#define KAILASH_ENGINE_INTERNAL_H

#include "kailash/engine.h"
#include "kailash/ioloop.h"
#include "kailash/pool.h"

/* The process-wide pieces engine_start made (NULL before). */
pool *engine_pool(void);
ioloop *engine_io(void);
/* Object of template_env names -> values (borrowed). */
json_t *engine_template_env(void);

/* engine.c: reports r's end to every sink (run.c, once per run, before its done callback). */
void engine_sinks_run_end(const run *r);

/* hooks.c: hands e to the listener, if one is set. */
void engine_emit(const engine_event *e);
/* hooks.c: the table of async runs engine_async_find reads (add at create, remove at end). */
void engine_async_add(run *r);
void engine_async_remove(run *r);
/* engine.c: tells the sinks that want it that async run r begins. */
void engine_sinks_run_start(const run *r);

/* run.c: the request id r was started with ("" for none; borrowed while r is held). */
/* run.c: the executor r belongs to (borrowed while r is held). */
executor *run_executor(const run *r);
/* run.c: the I/O loop r's I/O nodes start on (the loop it was created on). */
ioloop *run_home(const run *r);
/* run.c: r's index in its executor's array of active runs (the executor's, under its lock). */
size_t run_slot_index(const run *r);
void run_set_slot_index(run *r, size_t i);
/* run.c: r now holds an executor slot (given back when it ends). */
void run_take_slot(run *r);
/* run.c: begin executing r (it has a slot) on the calling thread. */
void run_begin(run *r);
/* run.c: end r as timed out without running it (its deadline passed while queued). */
int run_expired(const run *r);
double run_deadline_ms(const run *r);
void run_end_timeout(run *r);

/* calls.c: checks the WorkflowNode calls of r's i-th workflow (r sorted by name): 0 when each chain
 * of calls from it reaches loaded workflows only, never loops back, and nests at most
 * ENGINE_MAX_DEPTH levels; else -1 with *why (caller frees) spelling out the failing chain and
 * *culprit the index of the workflow whose own node makes the failing call. */
int registry_calls_check(const registry *r, size_t i, char **why, size_t *culprit);

/* executor.c: takes r out of ex's queue if it waits there; 1 when it did (the queue's reference
 * to r moves to the caller), 0 when r is not queued (it has begun, or is on its way to a slot). */
int exec_unqueue(executor *ex, run *r);
/* executor.c: r (which held a slot) has ended; hand the slot to the next queued run. */
void exec_slot_release(executor *ex, run *r);
void exec_retain(executor *ex);
void exec_release(executor *ex);
/* executor.c: a new executor owning wf. */
executor *exec_create(workflow *wf);

#endif
