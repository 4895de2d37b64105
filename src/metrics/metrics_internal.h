/* metrics_internal: what series.c gives expo.c and hooks.c, not the rest of the daemon. */
#ifndef KAILASH_METRICS_INTERNAL_H
#define KAILASH_METRICS_INTERNAL_H

#include "kailash/metrics.h"

/* The i-th series made (creation order): its family, slot and label values (borrowed, alive for the
 * process's life). 0, or -1 past the last. */
int metrics_series_at(int i, const metrics_family **fam, int *slot, const char *const **values);

#endif
