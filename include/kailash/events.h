/* events: what runs emit as they go (API.md "Events (SSE)"), kept per run for late clients and
 * streamed to GET /runs/{id}/events and /execute's stream mode (src/events/). */
#ifndef KAILASH_EVENTS_H
#define KAILASH_EVENTS_H

#include <stddef.h>

#include "kailash/config.h"

struct ioloop;

/* Sets the engine's listener and starts what events need (with redis_url, across instances).
 * Before the first run. 0, or -1 with err. */
int events_start(const kconfig *cfg, struct ioloop *const *loops, int nloops, char *err, size_t errlen);
void events_stop(void);

#endif
