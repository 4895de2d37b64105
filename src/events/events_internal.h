/* events_internal: what the files of src/events share (kailash/events.h is the module's surface). */
#ifndef KAILASH_EVENTS_INTERNAL_H
#define KAILASH_EVENTS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "kailash/engine.h"
#include "kailash/events.h"
#include "kailash/util.h"

/* events.c: the settings, read once (the environment may shorten them for tests). */
double events_heartbeat_ms(void);
double events_keep_ms(void);

/* sub.c: the subscriber's link in its run's list (buffer.c walks it under the run's stripe lock). */
events_sub *events_sub_next(events_sub *s);
void events_sub_set_next(events_sub *s, events_sub *next);
/* sub.c: an event of the run s follows: queued as s's format says (SDK: node events only); backlog:
 * one of the kept events a new subscriber gets at once (queued whatever max_bytes says). */
void events_sub_deliver(events_sub *s, uint64_t id, const char *name, const char *data, size_t len, int final,
                        int backlog);
/* sub.c: s was created by events_subscribe for a buffer (unlinked with events_unlink when closed). */
void events_sub_bind(events_sub *s, const char *run_id);
/* buffer.c: takes s out of run_id's subscriber list (its close). */
void events_unlink(const char *run_id, events_sub *s);

/* frame.c: the data object of engine event e (compact JSON) appended to b; 0, or -1 out of memory. */
int events_data_of(const engine_event *e, buf *b);
/* frame.c: API.md's name of an event kind ("node_started"). */
const char *events_name_of(engine_event_kind k);
/* frame.c: whether name is a run's last event (run_completed, run_failed). */
int events_name_final(const char *name);

/* remote.c: starts and stops publishing (loops for the XADDs: a run's events go through one of
 * them, chosen by its id, so they stay in order). */
int events_remote_start(const kconfig *cfg, struct ioloop *const *loops, int nloops);
void events_remote_stop(void);
/* remote.c: publishes one event of a local run (any thread: posted to its loop). */
void events_remote_publish(const char *run_id, const char *principal, uint64_t id, const char *name,
                           const char *data, size_t len, int final);

#endif
