/* store: the run store's interface over its backend (store_internal.h says who owns what).
 *
 * The pending set holds every record from store_put until its backend made it durable: a hash on
 * run_id for reads (the instance that answered a run reads its record at once) and a count that
 * bounds it (store.queue_max: a put beyond it is dropped, counted and logged, never silently). Reads
 * look in the pending set, then ask the backend; a list merges both, newest first, so a page shows
 * what was just answered as well as what is written. */
#include <ctype.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "kailash/log.h"
#include "kailash/util.h"
#include "store_internal.h"

#define PENDING_BUCKETS 16384 /* a power of two; the set holds at most queue_max items */
#define PENDING_STRIPES 64    /* locks, each over every 64th bucket: loops putting records and the
                               * writer letting a batch go rarely meet on one */

/* NULL: no store (store.enabled false, not started, or stopping); read by every thread that puts or reads */
static _Atomic(const store_backend *) g_be;
static pthread_mutex_t g_stripe[PENDING_STRIPES];
static pthread_once_t g_stripes_once = PTHREAD_ONCE_INIT;
static store_item *g_bucket[PENDING_BUCKETS]; /* each under its stripe's lock */
static atomic_size_t g_pending;
static size_t g_queue_max;
static atomic_uint_fast64_t g_seq;
static atomic_uint_fast64_t g_put, g_written, g_dropped;
static _Atomic double g_drop_logged_ms;

int store_record_sink_add(void); /* record.c */
static int store_put_item(const store_rec *rec, store_durable_fn cb, void *ud);

static size_t bucket_of(const char *run_id)
{
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = run_id; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    return (size_t)(h & (PENDING_BUCKETS - 1));
}

static void stripes_init(void)
{
    for (size_t i = 0; i < PENDING_STRIPES; i++)
        pthread_mutex_init(&g_stripe[i], NULL);
}

static pthread_mutex_t *stripe_of(size_t bucket)
{
    return &g_stripe[bucket & (PENDING_STRIPES - 1)];
}

static void lower_id(const char *in, char out[37])
{
    size_t i = 0;
    for (; in[i] && i < 36; i++)
        out[i] = (char)tolower((unsigned char)in[i]);
    out[i] = '\0';
}

/* ---- start and stop ---------------------------------------------------------------------------- */

int store_start(const kconfig *cfg, char *err, size_t errlen)
{
    if (!cfg->store_enabled)
        return 0;
    const store_backend *be = cfg->database_url ? &store_postgres : &store_journal;
    return store_start_backend(be, cfg, err, errlen);
}

int store_start_backend(const store_backend *be, const kconfig *cfg, char *err, size_t errlen)
{
    pthread_once(&g_stripes_once, stripes_init);
    g_queue_max = (size_t)cfg->store_queue_max;
    if (be->start(cfg, err, errlen) != 0)
        return -1;
    atomic_store(&g_be, be);
    if (store_record_sink_add() != 0)
        return util_err(err, errlen, "too many engine sinks");
    log_msg(LOG_INFO, "run records: %s", be->check);
    return 0;
}

void store_stop(double deadline_ms)
{
    /* off first: a put from now on is refused (every run has ended by now; only a run cut at the
     * grace's end could still try), so nothing is queued behind the backend's last write */
    const store_backend *be = atomic_exchange(&g_be, NULL);
    if (!be)
        return;
    be->stop(deadline_ms);
    size_t left = atomic_load(&g_pending);
    if (left)
        log_msg(LOG_ERROR, "run records: %zu record(s) could not be written before the deadline and are lost", left);
}

int store_enabled(void)
{
    return atomic_load(&g_be) != NULL;
}

/* ---- writing ------------------------------------------------------------------------------------- */

static store_item *item_make(const store_rec *rec)
{
    size_t wl = strlen(rec->workflow) + 1, pl = strlen(rec->principal) + 1;
    store_item *it = malloc(sizeof *it + wl + pl + rec->len + 1);
    if (!it)
        return NULL;
    memset(it, 0, sizeof *it);
    lower_id(rec->run_id, it->run_id);
    util_copy(it->status, sizeof it->status, rec->status);
    char *p = it->data;
    memcpy(p, rec->workflow, wl);
    it->workflow = p;
    memcpy(p += wl, rec->principal, pl);
    it->principal = p;
    memcpy(p += pl, rec->json, rec->len);
    p[rec->len] = '\0';
    it->json = p;
    it->len = rec->len;
    return it;
}

static void count_drop(void)
{
    uint64_t n = atomic_fetch_add(&g_dropped, 1) + 1;
    double now = util_now_ms();
    double last = atomic_load(&g_drop_logged_ms);
    if (now - last >= 1000.0 && atomic_compare_exchange_strong(&g_drop_logged_ms, &last, now)) {
        log_msg(LOG_ERROR, "run records: the pending queue is full (store.queue_max %zu): %llu record(s) dropped so far",
                g_queue_max, (unsigned long long)n);
    }
}

/* Links it into the set, in place of an older item of the same run (which stays queued, and is
 * freed when written). Under the bucket's stripe lock, which also orders seq among a run's items. */
static void pending_insert(store_item *it, size_t bucket)
{
    it->seq = atomic_fetch_add(&g_seq, 1) + 1;
    store_item **p = &g_bucket[bucket];
    for (; *p; p = &(*p)->hnext)
        if (strcmp((*p)->run_id, it->run_id) == 0) {
            it->hnext = (*p)->hnext;
            (*p)->hnext = NULL;
            *p = it;
            return;
        }
    it->hnext = NULL;
    *p = it;
}

int store_put(const store_rec *rec)
{
    return store_put_item(rec, NULL, NULL);
}

void store_put_durable(const store_rec *rec, store_durable_fn cb, void *ud)
{
    if (store_put_item(rec, cb, ud) != 0)
        cb(ud, 0);
}

static int store_put_item(const store_rec *rec, store_durable_fn cb, void *ud)
{
    const store_backend *be = atomic_load(&g_be);
    if (!be)
        return -1;
    store_item *it = item_make(rec);
    if (it) {
        it->durable = cb;
        it->durable_ud = ud;
    }
    if (!it || atomic_fetch_add(&g_pending, 1) >= g_queue_max) {
        if (it)
            atomic_fetch_sub(&g_pending, 1);
        free(it);
        count_drop();
        return -1;
    }
    size_t b = bucket_of(it->run_id);
    pthread_mutex_lock(stripe_of(b));
    pending_insert(it, b);
    pthread_mutex_unlock(stripe_of(b));
    atomic_fetch_add(&g_put, 1);
    be->enqueue(it);
    return 0;
}

void store_written(store_item *const *items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        size_t b = bucket_of(items[i]->run_id);
        pthread_mutex_lock(stripe_of(b));
        for (store_item **p = &g_bucket[b]; *p; p = &(*p)->hnext)
            if (*p == items[i]) {
                *p = items[i]->hnext;
                break;
            }
        pthread_mutex_unlock(stripe_of(b));
    }
    atomic_fetch_sub(&g_pending, n);
    atomic_fetch_add(&g_written, n);
    for (size_t i = 0; i < n; i++) {
        if (items[i]->durable)
            items[i]->durable(items[i]->durable_ud, 1);
        free(items[i]);
    }
}

/* ---- reading one ------------------------------------------------------------------------------------ */

/* ---- a queued record's "job" member, never shown -------------------------------------------------- */

/* The end of the JSON value at p (at most end), or NULL when it does not end there: strings with
 * their escapes, nesting by brackets. Only records this daemon wrote get here. */
static const char *value_end(const char *p, const char *end)
{
    int depth = 0;
    if (p >= end || *p == ',' || *p == '}' || *p == ']')
        return NULL; /* no value at all */
    while (p < end) {
        char c = *p++;
        if (c == '"') {
            while (p < end && *p != '"') {
                if (*p == '\\' && end - p < 2)
                    return NULL; /* an escape cut by the end */
                p += *p == '\\' ? 2 : 1;
            }
            if (p >= end)
                return NULL;
            p++;
        } else if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            if (--depth < 0)
                return NULL;
        } else if (c == ',' && depth == 0) {
            return p - 1;
        }
        if (depth == 0 && (c == '}' || c == ']' || c == '"'))
            return p;
    }
    return NULL;
}

size_t store_job_prefix(const char *json, size_t len)
{
    static const char head[] = "{\"job\":";
    if (len < sizeof head || memcmp(json, head, sizeof head - 1) != 0)
        return 0;
    const char *end = json + len, *v = value_end(json + sizeof head - 1, end);
    if (!v || v >= end || *v != ',')
        return 0;
    return (size_t)(v - json); /* the record without it: "{" then what follows the comma */
}

/* The record as shown: without its "job" member (a new buffer in *shown), or json itself. */
static const char *record_shown(const char *json, size_t *len, char **shown)
{
    size_t cut = store_job_prefix(json, *len);
    *shown = NULL;
    if (!cut)
        return json;
    size_t n = *len - cut; /* "{" + the rest after the comma: 1 + (len - cut - 1) */
    if (!(*shown = malloc(n + 1)))
        return json;
    (*shown)[0] = '{';
    memcpy(*shown + 1, json + cut + 1, n - 1);
    (*shown)[n] = '\0';
    *len = n;
    return *shown;
}

typedef struct get_ctx {
    store_get_cb cb;
    void *ud;
} get_ctx;

static void get_shown(void *ud, int status, const char *json, size_t len)
{
    get_ctx *g = ud;
    char *shown = NULL;
    if (status == STORE_OK)
        json = record_shown(json, &len, &shown);
    g->cb(g->ud, status, json, len);
    free(shown);
    free(g);
}

void store_get(const char *run_id, store_get_cb cb, void *ud)
{
    const store_backend *be = atomic_load(&g_be);
    get_ctx *g = be ? malloc(sizeof *g) : NULL;
    if (!g) {
        cb(ud, STORE_UNAVAILABLE, NULL, 0);
        return;
    }
    *g = (get_ctx){cb, ud};
    cb = get_shown;
    ud = g;
    char id[37];
    lower_id(run_id, id);
    char *copy = NULL;
    size_t len = 0;
    size_t b = bucket_of(id);
    pthread_mutex_lock(stripe_of(b));
    for (store_item *it = g_bucket[b]; it; it = it->hnext)
        if (strcmp(it->run_id, id) == 0) {
            len = it->len;
            copy = malloc(len + 1);
            if (copy)
                memcpy(copy, it->json, len);
            break;
        }
    pthread_mutex_unlock(stripe_of(b));
    if (copy) {
        cb(ud, STORE_OK, copy, len);
        free(copy);
        return;
    }
    be->get(id, cb, ud);
}

/* ---- reading a page ------------------------------------------------------------------------------- */

typedef struct rec_copy {
    char run_id[37];
    char *json;
    size_t len;
} rec_copy;

typedef struct list_ctx {
    store_list_cb cb;
    void *ud;
    int limit;
    rec_copy *pend; /* matching pending records, newest first */
    size_t npend;
    int more_pending; /* more matched than were copied */
} list_ctx;

static int item_matches(const store_item *it, const store_query *q)
{
    return (!q->workflow || strcmp(it->workflow, q->workflow) == 0) &&
           (!q->status || strcmp(it->status, q->status) == 0) &&
           (!q->principal || strcmp(it->principal, q->principal) == 0) &&
           (!q->before || strcmp(it->run_id, q->before) < 0);
}

static int item_newest_first(const void *a, const void *b)
{
    return -strcmp((*(store_item *const *)a)->run_id, (*(store_item *const *)b)->run_id);
}

static void stripes_lock(int lock)
{
    for (size_t i = 0; i < PENDING_STRIPES; i++)
        (lock ? pthread_mutex_lock : pthread_mutex_unlock)(&g_stripe[i]);
}

/* Copies the newest limit pending records q matches (a page needs no more), holding every stripe
 * while it looks: a list is rare, a put or a write never waits long. */
static int pending_collect(const store_query *q, list_ctx *c)
{
    if (atomic_load(&g_pending) == 0)
        return 0;
    stripes_lock(1); /* every linked item is counted in g_pending (counted before it is linked) */
    size_t n = 0, cap = atomic_load(&g_pending);
    store_item **hit = malloc((cap ? cap : 1) * sizeof *hit);
    if (!hit) {
        stripes_lock(0);
        return -1;
    }
    for (size_t b = 0; b < PENDING_BUCKETS; b++)
        for (store_item *it = g_bucket[b]; it && n < cap; it = it->hnext)
            if (item_matches(it, q))
                hit[n++] = it;
    qsort(hit, n, sizeof *hit, item_newest_first);
    size_t keep = n < (size_t)c->limit ? n : (size_t)c->limit;
    int rc = (c->pend = calloc(keep ? keep : 1, sizeof *c->pend)) ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < keep; i++, c->npend++) {
        rec_copy *r = &c->pend[i];
        memcpy(r->run_id, hit[i]->run_id, sizeof r->run_id);
        r->len = hit[i]->len;
        if (!(r->json = malloc(hit[i]->len + 1)))
            rc = -1;
        else
            memcpy(r->json, hit[i]->json, hit[i]->len);
    }
    stripes_lock(0);
    free(hit);
    c->more_pending = n > keep;
    return rc;
}

static void list_ctx_free(list_ctx *c)
{
    for (size_t i = 0; i < c->npend; i++)
        free(c->pend[i].json);
    free(c->pend);
    free(c);
}

/* The backend's page merged with the pending records: newest first, a run once (pending wins: it is
 * the newer state), at most limit. */
static void list_merged(void *ud, int status, const store_page *bp)
{
    list_ctx *c = ud;
    if (status != STORE_OK) {
        c->cb(c->ud, status, NULL);
        list_ctx_free(c);
        return;
    }
    size_t cap = (size_t)c->limit, n = 0, i = 0, j = 0;
    const char *json[STORE_LIST_MAX], *ids[STORE_LIST_MAX];
    size_t len[STORE_LIST_MAX];
    while (n < cap && (i < c->npend || j < bp->n)) {
        int cmp = i >= c->npend ? 1 : j >= bp->n ? -1 : -strcmp(c->pend[i].run_id, bp->run_id[j]);
        if (cmp <= 0) {
            json[n] = c->pend[i].json, len[n] = c->pend[i].len, ids[n++] = c->pend[i].run_id;
            j += cmp == 0; /* the same run written and still pending */
            i++;
        } else {
            json[n] = bp->json[j], len[n] = bp->len[j], ids[n++] = bp->run_id[j];
            j++;
        }
    }
    char *shown[STORE_LIST_MAX];
    for (size_t k = 0; k < n; k++)
        json[k] = record_shown(json[k], &len[k], &shown[k]);
    store_page page = {n, json, len, ids, bp->more || c->more_pending || i < c->npend || j < bp->n};
    c->cb(c->ud, STORE_OK, &page);
    for (size_t k = 0; k < n; k++)
        free(shown[k]);
    list_ctx_free(c);
}

void store_list(const store_query *q, store_list_cb cb, void *ud)
{
    const store_backend *be = atomic_load(&g_be);
    list_ctx *c = be ? calloc(1, sizeof *c) : NULL;
    if (!c) {
        cb(ud, STORE_UNAVAILABLE, NULL);
        return;
    }
    c->cb = cb;
    c->ud = ud;
    c->limit = q->limit < 1 ? 1 : q->limit > STORE_LIST_MAX ? STORE_LIST_MAX : q->limit;
    store_query bq = *q;
    bq.limit = c->limit;
    char before[37];
    if (q->before) {
        lower_id(q->before, before);
        bq.before = before;
    }
    if (pending_collect(&bq, c) != 0) {
        cb(ud, STORE_UNAVAILABLE, NULL);
        list_ctx_free(c);
        return;
    }
    be->list(&bq, list_merged, c);
}

/* ---- unfinished async jobs ------------------------------------------------------------------------- */

typedef struct each_ctx {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done, status;
    store_each_fn cb;
    void *ud;
    char last[37];
    size_t n;
    int more;
} each_ctx;

static void each_page(void *ud, int status, const store_page *p)
{
    each_ctx *c = ud;
    c->n = 0;
    c->more = 0;
    if (status == STORE_OK) {
        for (size_t i = 0; i < p->n; i++)
            c->cb(c->ud, p->json[i], p->len[i]);
        c->n = p->n;
        c->more = p->more;
        if (p->n)
            util_copy(c->last, sizeof c->last, p->run_id[p->n - 1]);
    }
    pthread_mutex_lock(&c->mu);
    c->status = status;
    c->done = 1;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

/* Every durable record of one status, page by page from the backend (not the pending set: at start
 * it is empty), waiting for each page (a backend may answer on its own thread). */
static int each_status(const store_backend *be, const char *status, each_ctx *c)
{
    c->last[0] = '\0';
    do {
        store_query q = {.status = status, .before = c->last[0] ? c->last : NULL, .limit = STORE_LIST_MAX};
        c->done = 0;
        be->list(&q, each_page, c);
        pthread_mutex_lock(&c->mu);
        while (!c->done)
            pthread_cond_wait(&c->cv, &c->mu);
        pthread_mutex_unlock(&c->mu);
        if (c->status != STORE_OK)
            return -1;
    } while (c->more && c->n);
    return 0;
}

int store_unfinished(store_each_fn cb, void *ud)
{
    const store_backend *be = atomic_load(&g_be);
    if (!be)
        return -1;
    each_ctx c = {.cb = cb, .ud = ud};
    pthread_mutex_init(&c.mu, NULL);
    pthread_cond_init(&c.cv, NULL);
    int rc = each_status(be, "queued", &c) == 0 && each_status(be, "running", &c) == 0 ? 0 : -1;
    pthread_cond_destroy(&c.cv);
    pthread_mutex_destroy(&c.mu);
    return rc;
}

/* ---- health and counters ------------------------------------------------------------------------------ */

void store_health_get(store_health *h)
{
    memset(h, 0, sizeof *h);
    const store_backend *be = atomic_load(&g_be);
    if (be)
        be->health(h);
}

void store_counts_get(store_counts *c)
{
    c->put = atomic_load(&g_put);
    c->written = atomic_load(&g_written);
    c->dropped = atomic_load(&g_dropped);
    c->pending = atomic_load(&g_pending);
}

/* ---- ids and cursors ------------------------------------------------------------------------------------ */

int store_is_uuid(const char *s)
{
    for (int i = 0; i < 36; i++) {
        int dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
            return 0;
    }
    return s[36] == '\0';
}

static const char b64u[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* The cursor is the run id's 16 bytes in base64url (22 characters): opaque to clients, and checked
 * on the way back (a cursor we did not make is a 400, never a query). */
void store_cursor_encode(const char *run_id, char out[33])
{
    unsigned char b[18] = {0};
    for (int i = 0, k = 0; run_id[i] && k < 32; i++) {
        if (run_id[i] == '-')
            continue;
        int v = isdigit((unsigned char)run_id[i]) ? run_id[i] - '0' : (tolower((unsigned char)run_id[i]) - 'a' + 10);
        b[k / 2] = (unsigned char)(b[k / 2] | (v << (k % 2 ? 0 : 4)));
        k++;
    }
    int o = 0;
    for (int i = 0; i < 18; i += 3) {
        unsigned v = (unsigned)b[i] << 16 | (unsigned)b[i + 1] << 8 | b[i + 2];
        for (int s = 18; s >= 0 && o < 22; s -= 6)
            out[o++] = b64u[(v >> s) & 63];
    }
    out[o] = '\0';
}

int store_cursor_decode(const char *cursor, char run_id[37])
{
    if (strlen(cursor) != 22)
        return -1;
    unsigned char b[18] = {0};
    for (int i = 0; i < 22; i++) {
        const char *p = strchr(b64u, cursor[i]);
        if (!p || !cursor[i])
            return -1;
        unsigned v = (unsigned)(p - b64u);
        int bit = i * 6;
        for (int k = 5; k >= 0; k--, bit++)
            if (v >> k & 1)
                b[bit / 8] |= (unsigned char)(0x80 >> (bit % 8));
    }
    static const char hex[] = "0123456789abcdef";
    char *p = run_id;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *p++ = '-';
        *p++ = hex[b[i] >> 4];
        *p++ = hex[b[i] & 15];
    }
    *p = '\0';
    char back[33];
    store_cursor_encode(run_id, back);
    return strcmp(back, cursor) == 0 ? 0 : -1;
}
