/* metrics: the counters and histograms behind GET /metrics (src/metrics/), and the Prometheus text
 * exposition format 0.0.4 they are written in.
 *
 * Counting is per thread: each thread that counts owns a block of plain 64-bit cells (cache-line
 * aligned, its own allocation), claims it once, and adds to it with relaxed loads and stores, no
 * lock and no read-modify-write shared with another thread. A scrape sums the cells of every block.
 * A block outlives its thread (its counts stay in the sums) and is taken over by the next thread
 * that needs one, so blocks are bounded by the threads alive at once.
 *
 * A series is a family and one value per label. Its cell index (a "slot") is found by hashing the
 * label values into a table that is read without a lock; a new series takes a mutex once. Label
 * values come from bounded sets only (route patterns, the loaded workflows and their nodes, node
 * types, status numbers, fixed words); the table's bound (METRICS_MAX_COUNTERS / _HISTOGRAMS series)
 * is a backstop: a series past it is not counted, and that is logged once.
 *
 * Thread safety: everything here is thread-safe. */
#ifndef KAILASH_METRICS_H
#define KAILASH_METRICS_H

#include <stdint.h>

#include "kailash/util.h"

/* ---- families and series (src/metrics/series.c) ----------------------------------------------- */

typedef enum metrics_kind { METRICS_COUNTER, METRICS_GAUGE, METRICS_HISTOGRAM } metrics_kind;

#define METRICS_MAX_LABELS 3
#define METRICS_MAX_COUNTERS 4096
#define METRICS_MAX_HISTOGRAMS 512
/* Histogram bucket upper bounds, in seconds (METRICS_NBUCKETS of them, then +Inf). */
#define METRICS_NBUCKETS 16
extern const double metrics_bucket_le[METRICS_NBUCKETS];

/* A metric family: static, borrowed for the process's life. name carries its unit and, for a
 * counter, _total. */
typedef struct metrics_family {
    const char *name;
    const char *help;
    metrics_kind kind;
    int nlabels;
    const char *labels[METRICS_MAX_LABELS];
} metrics_family;

/* The slot of fam's series with these label values (fam->nlabels of them; copied when new): found,
 * or made. -1 when the table is full or out of memory. fam is a counter or a histogram. */
int metrics_series(const metrics_family *fam, const char *const *values);
/* Adds n to a counter slot, or one observation (seconds, negative taken as 0) to a histogram slot,
 * in the calling thread's block. A slot of -1 is ignored. */
void metrics_count(int slot, uint64_t n);
void metrics_observe(int slot, double seconds);
/* Sums over every thread's block: a counter's value; a histogram's per-bucket counts (not
 * cumulative; buckets[METRICS_NBUCKETS] is above the last bound) and its sum in nanoseconds. */
uint64_t metrics_counter_value(int slot);
void metrics_histogram_value(int slot, uint64_t buckets[METRICS_NBUCKETS + 1], uint64_t *sum_ns);
/* Blocks claimed so far (for tests). */
int metrics_blocks(void);

/* ---- the exposition (src/metrics/expo.c) -------------------------------------------------------
 * Each returns 0, or -1 when out of memory (out may then hold part of the text). */

/* Appends s as a label value: backslash, double quote and newline escaped. */
int metrics_escape(buf *out, const char *s);
/* "# HELP name help\n# TYPE name kind\n". */
int metrics_write_head(buf *out, const metrics_family *fam);
/* One sample line of a gauge or counter: "name{l="v",...} value\n" (values: fam->nlabels of them). */
int metrics_write_value(buf *out, const metrics_family *fam, const char *const *values, double v);
/* The head, then every series made with metrics_series for fam, summed over threads. */
int metrics_write_family(buf *out, const metrics_family *fam);

/* ---- the daemon's metrics (src/metrics/hooks.c) ------------------------------------------------
 * One call at each place where the event is known; each is a no-op while counting is off. Strings
 * are borrowed for the call. */

/* Counting on (enable_monitoring) or off; off at start. */
void metrics_set_enabled(int on);
int metrics_enabled(void);
/* util_now_ms() while counting is on, else 0: a start time for metrics_node_end. */
double metrics_clock(void);
/* An answered request: route is the route's pattern (NULL: no route matched, "unmatched"); a method
 * outside the standard ones is counted as "other". */
void metrics_http_request(const char *route, const char *method, int status, double seconds);
/* An ended run (status: run_status_name). */
void metrics_run_end(const char *workflow, const char *status, double seconds);
/* A node's result, started_ms from metrics_clock() (0: not timed). upstream: the node calls out (an
 * I/O node that is not a WorkflowNode); outcome "ok" or its error code. */
void metrics_node_end(const char *workflow, const char *node_type, const char *node_id, int upstream,
                      const char *outcome, double started_ms);
/* A run route's answer as its X-Cache says: HIT-L1, HIT-L2, MISS or BYPASS. */
void metrics_cache_answer(const char *x_cache);
/* A rate-limit decision for a caller of tier "authenticated" or "anonymous". */
void metrics_ratelimit(const char *tier, int refused);
/* Tokens an LLMAgentNode call used (provider: a fixed word, "openai", "ollama" or "mock"). */
void metrics_llm_tokens(const char *provider, uint64_t prompt, uint64_t completion);
/* Appends the families counted here (HELP, TYPE and their series). */
int metrics_write_counted(buf *out);

#endif
