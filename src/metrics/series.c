/* series: the per-thread counting blocks and the table of series (metrics.h says why so).
 *
 * The table maps (family, label values) to a slot with open addressing over METRICS_TABLE entries,
 * twice the series it may hold, so probes stay short. An entry, once published (a release store of
 * its pointer), never changes or moves: a reader follows the probe sequence with acquire loads and
 * no lock, and a writer takes g_add_mu, probes again (another may have just added it) and publishes.
 * The list by creation order (g_series, g_nseries) is what a scrape walks.
 *
 * A block's cells are written only by the thread that holds it, with relaxed atomic loads and
 * stores (a plain load and store on x86-64 and arm64, no lock prefix); a scrape reads them relaxed,
 * so a sum may miss a count that is in flight, never tear one. A histogram keeps per-bucket counts
 * (cumulated when written out) and its sum in whole nanoseconds (exact, 584 years before it wraps). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kailash/log.h"
#include "kailash/metrics.h"
#include "metrics_internal.h"

#define METRICS_TABLE 16384           /* a power of two, above twice the series of both kinds */
#define HCELLS (METRICS_NBUCKETS + 2) /* the buckets, the one above the last bound, the sum */

const double metrics_bucket_le[METRICS_NBUCKETS] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                    0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};

typedef struct metrics_block {
    _Alignas(64) _Atomic uint64_t counters[METRICS_MAX_COUNTERS];
    _Atomic uint64_t hist[METRICS_MAX_HISTOGRAMS][HCELLS];
    atomic_int idle; /* its thread ended: the next thread to need a block takes it */
    struct metrics_block *next;
} metrics_block;

typedef struct series {
    const metrics_family *fam;
    uint32_t hash;
    int slot;
    char *values[METRICS_MAX_LABELS];
} series;

static _Atomic(series *) g_table[METRICS_TABLE];
static series *g_series[METRICS_MAX_COUNTERS + METRICS_MAX_HISTOGRAMS];
static atomic_int g_nseries;
static int g_ncounters, g_nhistograms; /* under g_add_mu */
static pthread_mutex_t g_add_mu = PTHREAD_MUTEX_INITIALIZER;

static _Atomic(metrics_block *) g_blocks; /* pushed under g_block_mu, read without it */
static atomic_int g_nblocks;
static pthread_mutex_t g_block_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_key_t g_block_key;
static pthread_once_t g_key_once = PTHREAD_ONCE_INIT;
static _Thread_local metrics_block *tl_block;

/* ---- blocks --------------------------------------------------------------------------------------- */

static void block_let_go(void *p)
{
    atomic_store_explicit(&((metrics_block *)p)->idle, 1, memory_order_release);
}

static void block_key_make(void)
{
    pthread_key_create(&g_block_key, block_let_go);
}

/* An idle block to take over, or a new one. NULL when out of memory (this thread does not count). */
static metrics_block *block_claim(void)
{
    pthread_once(&g_key_once, block_key_make);
    pthread_mutex_lock(&g_block_mu);
    metrics_block *b = atomic_load_explicit(&g_blocks, memory_order_relaxed);
    for (; b; b = b->next) {
        int one = 1;
        if (atomic_compare_exchange_strong(&b->idle, &one, 0))
            break;
    }
    void *raw = b ? NULL : calloc(1, sizeof *b + 63); /* calloc: large, so fresh zero pages, touched as used */
    if (raw) {
        b = (metrics_block *)(((uintptr_t)raw + 63) & ~(uintptr_t)63); /* never freed: blocks outlive threads */
        b->next = atomic_load_explicit(&g_blocks, memory_order_relaxed);
        atomic_store_explicit(&g_blocks, b, memory_order_release);
        atomic_fetch_add(&g_nblocks, 1);
    }
    pthread_mutex_unlock(&g_block_mu);
    if (b)
        pthread_setspecific(g_block_key, b);
    return b;
}

static inline metrics_block *block_mine(void)
{
    return tl_block ? tl_block : (tl_block = block_claim());
}

static inline void cell_add(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n, memory_order_relaxed);
}

int metrics_blocks(void)
{
    return atomic_load(&g_nblocks);
}

/* ---- the table of series -------------------------------------------------------------------------- */

/* Eight bytes a step (a multiply-xorshift mix of each word, the length closing each value so
 * ("a","bc") and ("ab","c") differ): every count hashes its label values, so this is the hot part. */
static uint32_t series_hash(const metrics_family *fam, const char *const *values)
{
    uint64_t h = 0x9e3779b97f4a7c15ull ^ (uint64_t)(uintptr_t)fam;
    for (int i = 0; i < fam->nlabels; i++) {
        size_t n = strlen(values[i]);
        const char *p = values[i];
        for (; n >= 8; n -= 8, p += 8) {
            uint64_t w;
            memcpy(&w, p, 8);
            h = (h ^ w) * 0xff51afd7ed558ccdull;
            h ^= h >> 32;
        }
        uint64_t w = 0; /* the tail in a register (a memcpy of n bytes went through memory and stalled) */
        for (size_t k = 0; k < n; k++)
            w |= (uint64_t)(unsigned char)p[k] << (8 * k);
        h = (h ^ w ^ ((uint64_t)n << 56)) * 0xc4ceb9fe1a85ec53ull;
        h ^= h >> 29;
    }
    return (uint32_t)(h ^ (h >> 32));
}

static int series_is(const series *s, const metrics_family *fam, uint32_t h, const char *const *values)
{
    if (s->fam != fam || s->hash != h)
        return 0;
    for (int i = 0; i < fam->nlabels; i++)
        if (strcmp(s->values[i], values[i]) != 0)
            return 0;
    return 1;
}

static void series_free(series *s)
{
    for (int i = 0; i < METRICS_MAX_LABELS; i++)
        free(s->values[i]);
    free(s);
}

/* Under g_add_mu, with entry i of the table found empty: makes the series there. -1 when full. */
static int series_add_locked(size_t i, const metrics_family *fam, uint32_t h, const char *const *values)
{
    static int warned;
    int hist = fam->kind == METRICS_HISTOGRAM;
    int *n = hist ? &g_nhistograms : &g_ncounters;
    if (*n >= (hist ? METRICS_MAX_HISTOGRAMS : METRICS_MAX_COUNTERS)) {
        if (!warned++)
            log_msg(LOG_WARN, "metrics: too many series (at %s): new ones are not counted", fam->name);
        return -1;
    }
    series *s = calloc(1, sizeof *s);
    if (!s)
        return -1;
    *s = (series){.fam = fam, .hash = h, .slot = *n};
    for (int k = 0; k < fam->nlabels; k++)
        if (!(s->values[k] = strdup(values[k]))) {
            series_free(s);
            return -1;
        }
    (*n)++;
    int id = atomic_load_explicit(&g_nseries, memory_order_relaxed);
    g_series[id] = s;
    atomic_store_explicit(&g_nseries, id + 1, memory_order_release);
    atomic_store_explicit(&g_table[i], s, memory_order_release);
    return s->slot;
}

int metrics_series(const metrics_family *fam, const char *const *values)
{
    uint32_t h = series_hash(fam, values);
    size_t i = h & (METRICS_TABLE - 1);
    for (;; i = (i + 1) & (METRICS_TABLE - 1)) {
        series *s = atomic_load_explicit(&g_table[i], memory_order_acquire);
        if (!s)
            break;
        if (series_is(s, fam, h, values))
            return s->slot;
    }
    /* Not there: add it, unless another thread did meanwhile (it would be at i or after it). */
    pthread_mutex_lock(&g_add_mu);
    int slot = -1;
    for (;; i = (i + 1) & (METRICS_TABLE - 1)) {
        series *s = atomic_load_explicit(&g_table[i], memory_order_relaxed);
        if (!s) {
            slot = series_add_locked(i, fam, h, values);
            break;
        }
        if (series_is(s, fam, h, values)) {
            slot = s->slot;
            break;
        }
    }
    pthread_mutex_unlock(&g_add_mu);
    return slot;
}

/* ---- counting and summing ------------------------------------------------------------------------- */

void metrics_count(int slot, uint64_t n)
{
    metrics_block *b;
    if (slot < 0 || slot >= METRICS_MAX_COUNTERS || !(b = block_mine()))
        return;
    cell_add(&b->counters[slot], n);
}

static int bucket_of(double seconds)
{
    int i = 0;
    while (i < METRICS_NBUCKETS && seconds > metrics_bucket_le[i])
        i++;
    return i;
}

void metrics_observe(int slot, double seconds)
{
    metrics_block *b;
    if (slot < 0 || slot >= METRICS_MAX_HISTOGRAMS || !(b = block_mine()))
        return;
    if (!(seconds > 0)) /* negative, zero, NaN */
        seconds = 0;
    _Atomic uint64_t *h = b->hist[slot];
    cell_add(&h[bucket_of(seconds)], 1);
    cell_add(&h[HCELLS - 1], seconds < 1.8e10 ? (uint64_t)(seconds * 1e9 + 0.5) : UINT64_MAX / 2);
}

uint64_t metrics_counter_value(int slot)
{
    uint64_t v = 0;
    if (slot < 0 || slot >= METRICS_MAX_COUNTERS)
        return 0;
    for (metrics_block *b = atomic_load_explicit(&g_blocks, memory_order_acquire); b; b = b->next)
        v += atomic_load_explicit(&b->counters[slot], memory_order_relaxed);
    return v;
}

void metrics_histogram_value(int slot, uint64_t buckets[METRICS_NBUCKETS + 1], uint64_t *sum_ns)
{
    memset(buckets, 0, sizeof(uint64_t) * (METRICS_NBUCKETS + 1));
    *sum_ns = 0;
    if (slot < 0 || slot >= METRICS_MAX_HISTOGRAMS)
        return;
    for (metrics_block *b = atomic_load_explicit(&g_blocks, memory_order_acquire); b; b = b->next) {
        for (int i = 0; i <= METRICS_NBUCKETS; i++)
            buckets[i] += atomic_load_explicit(&b->hist[slot][i], memory_order_relaxed);
        *sum_ns += atomic_load_explicit(&b->hist[slot][HCELLS - 1], memory_order_relaxed);
    }
}

/* ---- walking the series, for expo.c --------------------------------------------------------------- */

int metrics_series_at(int i, const metrics_family **fam, int *slot, const char *const **values)
{
    if (i < 0 || i >= atomic_load_explicit(&g_nseries, memory_order_acquire))
        return -1;
    const series *s = g_series[i];
    *fam = s->fam;
    *slot = s->slot;
    *values = (const char *const *)s->values;
    return 0;
}
