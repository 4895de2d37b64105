/* The run store's backend interface (DESIGN.md: a run store implements put, get, list, flush).
 *
 * store.c owns every record from store_put until it is durable: it keeps it in the pending set (for
 * reads) and hands it to the backend's queue with enqueue. The backend's own thread writes queued
 * items in batches and, once they are durable (written and synced, or spooled while Postgres is
 * down), calls store_written; store.c then drops them from the pending set and frees them. A backend
 * never frees an item itself, and never holds one after store_written. */
#ifndef KAILASH_STORE_INTERNAL_H
#define KAILASH_STORE_INTERNAL_H

#include "kailash/store.h"

typedef struct store_item store_item;
struct store_item {
    store_item *next;  /* the backend's queue link (the backend's to use) */
    store_item *hnext; /* the pending set's chain (store.c's) */
    uint64_t seq;      /* put order: of two items of one run, the higher seq is the newer */
    char run_id[37];
    char status[12];
    const char *workflow, *principal; /* point into data */
    const char *json;                 /* the record, len bytes, NUL-terminated; points into data */
    size_t len;
    void (*durable)(void *ud, int ok); /* store_put_durable's, told by store_written */
    void *durable_ud;
    char data[];
};

typedef struct store_backend {
    const char *check; /* the /ready check's name: "journal", "postgres" */
    /* Opens what it needs and starts its thread(s). A target that is down is not an error (it
     * retries, and health says so); a bad setting is. */
    int (*start)(const kconfig *cfg, char *err, size_t errlen);
    /* Queues it for writing (never blocks on I/O). The item stays store.c's. */
    void (*enqueue)(store_item *it);
    /* Durable records only (store.c has looked in the pending set already). run_id is lowercase. */
    void (*get)(const char *run_id, store_get_cb cb, void *ud);
    /* Up to q->limit durable records matching q, newest first; page->more when more exist. */
    void (*list)(const store_query *q, store_list_cb cb, void *ud);
    /* Makes everything queued durable by deadline_ms (util_now_ms clock), then stops its threads.
     * Items it could not write stay pending; store.c counts and logs them. */
    void (*stop)(double deadline_ms);
    void (*health)(store_health *h);
} store_backend;

extern const store_backend store_journal;
extern const store_backend store_postgres;

/* store_start with be (tests use a backend of their own). */
int store_start_backend(const store_backend *be, const kconfig *cfg, char *err, size_t errlen);

/* record.c: "2026-11-27T10:00:00.123Z" (24 characters, no NUL) for a Unix time in ms. */
void store_rfc3339_ms(double unix_ms, char out[24]);

/* store.c: where a queued record's leading "job" member ends (the offset of the comma after it), or
 * 0 when json has none. */
size_t store_job_prefix(const char *json, size_t len);

/* From the backend's thread: these items are durable. Lets them go (and frees them). */
void store_written(store_item *const *items, size_t n);

#endif
