/* journal_index: the journal's in-memory index (journal_internal.h): run_id -> the segment, offset
 * and length of the run's newest line, plus what list() filters on.
 *
 * Two views of the same entries: a chained hash map for get, and an array ordered by run_id for
 * list. Run ids are UUIDv7, so new runs sort last and an insert is nearly always an append; the
 * binary search + memmove of an insert in the middle (a restart's older segments, a late put) is
 * O(n) in the worst case, which a daemon's write rate never approaches. An entry is one allocation
 * holding its strings.
 *
 * list walks the array down from `before` and filters as it goes: a page is O(limit) when the
 * filters match often and O(n) for a filter that matches nothing. That is the price of keeping no
 * per-filter index; the journal is the single-machine default, Postgres the answer at scale.
 *
 * One rwlock: readers (loop threads) share it, the writer thread takes it once per batch. Nothing
 * here does I/O, so the lock is never held across a disk read. */
#include <stdlib.h>
#include <string.h>

#include "journal_internal.h"

struct jidx_entry {
    jidx_entry *hnext;
    uint64_t seg, off, seq;
    size_t len;
    char run_id[37];
    const char *workflow, *status, *principal; /* into data, or NULL */
    char data[];
};

#define JIDX_MIN_BUCKETS 1024

static uint64_t jidx_hash(const char *run_id)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a; the tail of a UUIDv7 is random */
    for (size_t i = 0; i < 36; i++)
        h = (h ^ (unsigned char)run_id[i]) * 1099511628211ull;
    return h;
}

void jidx_init(jidx *ix)
{
    ix->buckets = NULL;
    ix->sorted = NULL;
    ix->nbuckets = ix->n = ix->cap = 0;
}

void jidx_clear(jidx *ix)
{
    pthread_rwlock_wrlock(&ix->lock);
    for (size_t i = 0; i < ix->n; i++)
        free(ix->sorted[i]);
    free(ix->sorted);
    free(ix->buckets);
    jidx_init(ix);
    pthread_rwlock_unlock(&ix->lock);
}

void jidx_wrlock(jidx *ix)
{
    pthread_rwlock_wrlock(&ix->lock);
}

void jidx_unlock(jidx *ix)
{
    pthread_rwlock_unlock(&ix->lock);
}

size_t jidx_count(jidx *ix)
{
    pthread_rwlock_rdlock(&ix->lock);
    size_t n = ix->n;
    pthread_rwlock_unlock(&ix->lock);
    return n;
}

/* The chain link that points at run_id's entry (or at the NULL ending its chain). */
static jidx_entry **jidx_slot(jidx *ix, const char *run_id)
{
    jidx_entry **pp = &ix->buckets[jidx_hash(run_id) & (ix->nbuckets - 1)];
    while (*pp && memcmp((*pp)->run_id, run_id, 36) != 0)
        pp = &(*pp)->hnext;
    return pp;
}

/* The first position whose run_id is not below run_id. */
static size_t jidx_lower(const jidx *ix, const char *run_id)
{
    size_t lo = 0, hi = ix->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(ix->sorted[mid]->run_id, run_id) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Room for one more entry in both views; the map doubles at one entry per bucket. */
static int jidx_reserve(jidx *ix)
{
    if (ix->n == ix->cap) {
        size_t cap = ix->cap ? ix->cap * 2 : 1024;
        jidx_entry **s = realloc(ix->sorted, cap * sizeof *s);
        if (!s)
            return -1;
        ix->sorted = s;
        ix->cap = cap;
    }
    if (ix->n < ix->nbuckets)
        return 0;
    size_t nb = ix->nbuckets ? ix->nbuckets * 2 : JIDX_MIN_BUCKETS;
    jidx_entry **b = calloc(nb, sizeof *b);
    if (!b)
        return -1;
    for (size_t i = 0; i < ix->n; i++) {
        jidx_entry *e = ix->sorted[i];
        size_t h = jidx_hash(e->run_id) & (nb - 1);
        e->hnext = b[h];
        b[h] = e;
    }
    free(ix->buckets);
    ix->buckets = b;
    ix->nbuckets = nb;
    return 0;
}

static const char *jidx_copy_str(char **p, const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    memcpy(*p, s, n);
    *p += n;
    return *p - n;
}

static jidx_entry *jidx_entry_new(const char *run_id, const char *workflow, const char *status, const char *principal)
{
    size_t need = (workflow ? strlen(workflow) + 1 : 0) + (status ? strlen(status) + 1 : 0) +
                  (principal ? strlen(principal) + 1 : 0);
    jidx_entry *e = malloc(sizeof *e + need);
    if (!e)
        return NULL;
    memcpy(e->run_id, run_id, 36);
    e->run_id[36] = '\0';
    char *p = e->data;
    e->workflow = jidx_copy_str(&p, workflow);
    e->status = jidx_copy_str(&p, status);
    e->principal = jidx_copy_str(&p, principal);
    return e;
}

int jidx_put_locked(jidx *ix, const char *run_id, const char *workflow, const char *status, const char *principal,
                    uint64_t seg, uint64_t off, size_t len, uint64_t seq)
{
    if (jidx_reserve(ix) != 0)
        return -1;
    jidx_entry **slot = jidx_slot(ix, run_id);
    if (*slot && (*slot)->seq > seq)
        return 0;
    jidx_entry *e = jidx_entry_new(run_id, workflow, status, principal);
    if (!e)
        return -1;
    e->seg = seg;
    e->off = off;
    e->len = len;
    e->seq = seq;
    /* ids grow: a new run is nearly always the last, and then needs no search */
    size_t pos = ix->n && strcmp(ix->sorted[ix->n - 1]->run_id, e->run_id) < 0 ? ix->n : jidx_lower(ix, e->run_id);
    jidx_entry *old = *slot;
    if (old) {
        e->hnext = old->hnext;
        ix->sorted[pos] = e;
        free(old);
    } else {
        e->hnext = NULL;
        memmove(ix->sorted + pos + 1, ix->sorted + pos, (ix->n - pos) * sizeof *ix->sorted);
        ix->sorted[pos] = e;
        ix->n++;
    }
    *slot = e;
    return 0;
}

void jidx_drop_segment(jidx *ix, uint64_t seg)
{
    pthread_rwlock_wrlock(&ix->lock);
    size_t keep = 0;
    for (size_t i = 0; i < ix->n; i++) {
        jidx_entry *e = ix->sorted[i];
        if (e->seg != seg) {
            ix->sorted[keep++] = e;
            continue;
        }
        jidx_entry **slot = jidx_slot(ix, e->run_id);
        *slot = e->hnext;
        free(e);
    }
    ix->n = keep;
    pthread_rwlock_unlock(&ix->lock);
}

static void jidx_loc_of(const jidx_entry *e, jidx_loc *loc)
{
    memcpy(loc->run_id, e->run_id, sizeof loc->run_id);
    loc->seg = e->seg;
    loc->off = e->off;
    loc->len = e->len;
}

int jidx_find(jidx *ix, const char *run_id, jidx_loc *loc)
{
    if (strlen(run_id) != 36)
        return 0;
    pthread_rwlock_rdlock(&ix->lock);
    jidx_entry *e = ix->nbuckets ? *jidx_slot(ix, run_id) : NULL;
    if (e)
        jidx_loc_of(e, loc);
    pthread_rwlock_unlock(&ix->lock);
    return e != NULL;
}

/* NULL in the query matches anything; a record without the field matches only NULL. */
static int jidx_field_ok(const char *want, const char *have)
{
    return !want || (have && strcmp(want, have) == 0);
}

static int jidx_match(const jidx_entry *e, const store_query *q)
{
    return jidx_field_ok(q->workflow, e->workflow) && jidx_field_ok(q->status, e->status) &&
           jidx_field_ok(q->principal, e->principal);
}

size_t jidx_select(jidx *ix, const store_query *q, jidx_loc *out, int *more)
{
    size_t n = 0, limit = q->limit > 0 ? (size_t)q->limit : 0;
    *more = 0;
    pthread_rwlock_rdlock(&ix->lock);
    size_t i = q->before ? jidx_lower(ix, q->before) : ix->n;
    while (i-- > 0) {
        const jidx_entry *e = ix->sorted[i];
        if (!jidx_match(e, q))
            continue;
        if (n == limit) {
            *more = 1;
            break;
        }
        jidx_loc_of(e, &out[n++]);
    }
    pthread_rwlock_unlock(&ix->lock);
    return n;
}
