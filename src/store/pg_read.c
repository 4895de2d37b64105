/* pg_read: get and list, served by a small pool of reader threads (PG_READERS), each with its own
 * connection, taking jobs from one mutex+condvar queue; the callback runs on the reader thread.
 *
 * No caller waits on the network: get and list only queue a job. While the server is down they
 * answer STORE_UNAVAILABLE at once, on the caller's thread: the first failure (connect, timeout, a
 * lost connection) marks it down for PG_READ_RETRY_MS, so a dead server costs one connect timeout a
 * second, not one per request. Reader connections carry a statement_timeout, and each query a
 * client-side deadline too (a server that stops answering altogether).
 *
 * Records come back as the API's JSON object, keys in API.md's order, compact like the ones written:
 * text columns as JSON strings, jsonb columns re-encoded compactly (jsonb's own text has spaces and
 * its own key order), timestamps as RFC 3339 UTC with milliseconds (to_char in the query), and
 * duration_ms as the project's writer writes a real. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kailash/log.h"
#include "pg_internal.h"

#define PG_READERS 2
#define PG_READ_QUEUE_MAX 4096 /* jobs waiting at most; more are answered unavailable */

#define TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
#define PG_SELECT                                                                                                      \
    "SELECT run_id::text, workflow, version, status, inputs::text, outputs::text, error::text, cache, "                \
    "principal, request_id, " TS("created_at") ", " TS("started_at") ", " TS("finished_at") ", duration_ms, job::text "           \
                                                                                            "FROM runs "
static const char PG_GET[] = PG_SELECT "WHERE run_id = $1::uuid";
/* Each filter folds away when its parameter is NULL (an unnamed statement is planned with its
 * values), leaving an index scan on (filter, run_id) or the primary key, newest first. */
static const char PG_LIST[] =
    PG_SELECT "WHERE ($1::text IS NULL OR workflow = $1) AND ($2::text IS NULL OR status = $2) "
              "AND ($3::text IS NULL OR principal = $3) AND ($4::uuid IS NULL OR run_id < $4) "
              "ORDER BY run_id DESC LIMIT $5::int";
/* The columns above, as JSON: S a string, J JSON text, N a number. */
static const struct {
    const char *key;
    char kind;
} pg_cols[] = {
    {"run_id", 'S'},     {"workflow", 'S'},   {"version", 'S'},     {"status", 'S'},      {"inputs", 'J'},
    {"outputs", 'J'},    {"error", 'J'},      {"cache", 'S'},       {"principal", 'S'},   {"request_id", 'S'},
    {"created_at", 'S'}, {"started_at", 'S'}, {"finished_at", 'S'}, {"duration_ms", 'N'},
};
#define PG_NCOLS (sizeof pg_cols / sizeof pg_cols[0])

typedef struct pg_job {
    struct pg_job *next;
    store_get_cb get_cb; /* one of the two */
    store_list_cb list_cb;
    void *ud;
    char run_id[37];
    int limit;
    const char *p[4]; /* list: workflow, status, principal, before (NULL or into text) */
    char text[];
} pg_job;

static pthread_mutex_t r_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t r_cv = PTHREAD_COND_INITIALIZER;
static pg_job *r_head, *r_tail; /* under r_mu */
static size_t r_len;            /* under r_mu */
static int r_stop;              /* under r_mu: the threads leave */
static int r_open;              /* under r_mu: jobs are taken */
static pthread_t r_threads[PG_READERS];
static int r_nthreads;
static _Atomic double r_down_until; /* util_now_ms before which the server counts as down */

static int r_is_down(void)
{
    return util_now_ms() < atomic_load(&r_down_until);
}

static void r_fail(pg_job *j)
{
    if (j->get_cb)
        j->get_cb(j->ud, STORE_UNAVAILABLE, NULL, 0);
    else
        j->list_cb(j->ud, STORE_UNAVAILABLE, NULL);
    free(j);
}

static void r_submit(pg_job *j)
{
    pthread_mutex_lock(&r_mu);
    if (!r_open || r_len >= PG_READ_QUEUE_MAX) {
        pthread_mutex_unlock(&r_mu);
        r_fail(j);
        return;
    }
    j->next = NULL;
    if (r_tail)
        r_tail->next = j;
    else
        r_head = j;
    r_tail = j;
    r_len++;
    pthread_cond_signal(&r_cv);
    pthread_mutex_unlock(&r_mu);
}

void pg_reader_get(const char *run_id, store_get_cb cb, void *ud)
{
    pg_job *j = r_is_down() ? NULL : calloc(1, sizeof *j);
    if (!j) {
        cb(ud, STORE_UNAVAILABLE, NULL, 0);
        return;
    }
    j->get_cb = cb;
    j->ud = ud;
    util_copy(j->run_id, sizeof j->run_id, run_id);
    r_submit(j);
}

void pg_reader_list(const store_query *q, store_list_cb cb, void *ud)
{
    const char *in[4] = {q->workflow, q->status, q->principal, q->before};
    size_t n = 0;
    for (int i = 0; i < 4; i++)
        n += in[i] ? strlen(in[i]) + 1 : 0;
    pg_job *j = r_is_down() ? NULL : calloc(1, sizeof *j + n);
    if (!j) {
        cb(ud, STORE_UNAVAILABLE, NULL);
        return;
    }
    j->list_cb = cb;
    j->ud = ud;
    j->limit = q->limit < 1 ? 1 : q->limit > STORE_LIST_MAX ? STORE_LIST_MAX : q->limit;
    char *t = j->text;
    for (int i = 0; i < 4; i++)
        if (in[i]) {
            size_t l = strlen(in[i]) + 1;
            memcpy(t, in[i], l);
            j->p[i] = t;
            t += l;
        }
    r_submit(j);
}

/* jsonb keeps object keys sorted by length, then bytes; the error object's keys are API.md's, so
 * they go back in its order (code, message, node), any others after. Takes j; returns the object to
 * write (NULL: out of memory). Inputs and outputs are the caller's data: they keep jsonb's order. */
static json_t *r_error_in_api_order(json_t *j)
{
    static const char *const order[] = {"code", "message", "node"};
    json_t *o = json_is_object(j) ? json_object() : NULL;
    if (!o)
        return j;
    for (size_t i = 0; i < 3; i++) {
        json_t *v = json_object_get(j, order[i]);
        if (v)
            json_object_set(o, order[i], v);
    }
    const char *k;
    json_t *v;
    json_object_foreach(j, k, v)
    {
        if (!json_object_get(o, k))
            json_object_set(o, k, v);
    }
    json_decref(j);
    return o;
}

/* Row i of r as the record's JSON into b, led by {"job": ...} when the row has a job's payload (the
 * store never shows it; the in-process queue's recovery reads it). 0 or -1 (out of memory). */
static int r_row_json(const PGresult *r, int i, buf *b)
{
    int jc = (int)PG_NCOLS, bad;
    if (PQnfields(r) > jc && !PQgetisnull(r, i, jc))
        bad = buf_append(b, "{\"job\":", 7) || buf_append(b, PQgetvalue(r, i, jc), (size_t)PQgetlength(r, i, jc)) ||
              buf_append(b, ",", 1);
    else
        bad = buf_append(b, "{", 1);
    for (size_t c = 0; c < PG_NCOLS && !bad; c++) {
        bad = (c && buf_append(b, ",", 1)) || buf_append_json_str(b, pg_cols[c].key) || buf_append(b, ":", 1);
        if (bad)
            break;
        const char *v = PQgetvalue(r, i, (int)c);
        size_t vl = (size_t)PQgetlength(r, i, (int)c);
        if (PQgetisnull(r, i, (int)c)) {
            bad = buf_append(b, "null", 4);
        } else if (pg_cols[c].kind == 'S') {
            bad = buf_append_json_strn(b, v, vl);
        } else if (pg_cols[c].kind == 'N') {
            char *end;
            double d = strtod(v, &end);
            bad = *end || d != d || d - d != 0 ? buf_append(b, "null", 4) : buf_append_json_real(b, d);
        } else {
            json_t *j = json_loadb(v, vl, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
            if (j && !strcmp(pg_cols[c].key, "error"))
                j = r_error_in_api_order(j);
            /* a value jansson cannot hold (an integer past 64 bits) goes out as Postgres wrote it */
            bad = j ? buf_append_json(b, j) : buf_append(b, v, vl);
            json_decref(j);
        }
    }
    return bad || buf_append(b, "}", 1) ? -1 : 0;
}

static PGresult *r_query_once(PGconn **c, pg_job *j, int *not_found);

/* Runs the job's query on *c (connecting first if need be); the result, or NULL when the server is
 * unavailable (then *c is closed and the server marked down). A connection that was open before
 * and is found broken (the server restarted since) gets one fresh try before the server counts as
 * down. */
static PGresult *r_query(PGconn **c, pg_job *j, int *not_found)
{
    int had = *c != NULL;
    PGresult *r = r_query_once(c, j, not_found);
    if (r || !had || *not_found || *c)
        return r;
    atomic_store(&r_down_until, 0.0);
    return r_query_once(c, j, not_found);
}

static PGresult *r_query_once(PGconn **c, pg_job *j, int *not_found)
{
    char e[300], lim[16];
    if (!*c) {
        if (r_is_down())
            return NULL;
        *c = pg_connect(util_now_ms() + PG_CONNECT_TIMEOUT_MS, &pg_g.stopping, e, sizeof e);
        PGresult *r = *c ? pg_exec(*c, "SET statement_timeout = 5000", 0, NULL, util_now_ms() + PG_CONNECT_TIMEOUT_MS,
                                   &pg_g.stopping, e, sizeof e)
                         : NULL;
        if (!r || !pg_ok(r)) {
            PQclear(r);
            goto down;
        }
        PQclear(r);
    }
    PGresult *r;
    double deadline = util_now_ms() + PG_READ_TIMEOUT_MS + 1000;
    if (j->get_cb) {
        const char *p[1] = {j->run_id};
        r = pg_exec(*c, PG_GET, 1, p, deadline, &pg_g.stopping, e, sizeof e);
    } else {
        snprintf(lim, sizeof lim, "%d", j->limit + 1);
        const char *p[5] = {j->p[0], j->p[1], j->p[2], j->p[3], lim};
        r = pg_exec(*c, PG_LIST, 5, p, deadline, &pg_g.stopping, e, sizeof e);
    }
    if (!r)
        goto down;
    if (!pg_ok(r)) {
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        *not_found = state && !strcmp(state, "22P02"); /* not a UUID: no such run */
        if (!*not_found) {
            pg_result_err(r, e, sizeof e);
            log_msg(LOG_WARN, "store: postgres %s: a read failed: %s", pg_g.describe, e);
        }
        if (PQstatus(*c) != CONNECTION_OK) {
            PQclear(r);
            goto down;
        }
        PQclear(r);
        return NULL;
    }
    return r;
down:
    if (*c)
        PQfinish(*c);
    *c = NULL;
    atomic_store(&r_down_until, util_now_ms() + PG_READ_RETRY_MS);
    return NULL;
}

static void r_answer(pg_job *j, PGresult *r, int not_found)
{
    if (j->get_cb) {
        buf b = {0};
        if (!r)
            j->get_cb(j->ud, not_found ? STORE_NOT_FOUND : STORE_UNAVAILABLE, NULL, 0);
        else if (PQntuples(r) == 0)
            j->get_cb(j->ud, STORE_NOT_FOUND, NULL, 0);
        else if (r_row_json(r, 0, &b) != 0)
            j->get_cb(j->ud, STORE_UNAVAILABLE, NULL, 0);
        else
            j->get_cb(j->ud, STORE_OK, b.data, b.len);
        buf_free(&b);
        return;
    }
    if (!r) {
        if (not_found) { /* a before that is not a UUID: nothing older */
            store_page page = {0, NULL, NULL, NULL, 0};
            j->list_cb(j->ud, STORE_OK, &page);
        } else {
            j->list_cb(j->ud, STORE_UNAVAILABLE, NULL);
        }
        return;
    }
    int rows = PQntuples(r);
    size_t n = rows > j->limit ? (size_t)j->limit : (size_t)rows;
    buf b = {0};
    size_t off[STORE_LIST_MAX + 1], len[STORE_LIST_MAX];
    const char *json[STORE_LIST_MAX], *ids[STORE_LIST_MAX];
    int bad = 0;
    for (size_t i = 0; i < n && !bad; i++) {
        off[i] = b.len;
        bad = r_row_json(r, (int)i, &b);
        len[i] = b.len - off[i];
    }
    if (bad) {
        buf_free(&b);
        j->list_cb(j->ud, STORE_UNAVAILABLE, NULL);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        json[i] = b.data + off[i];
        ids[i] = PQgetvalue(r, (int)i, 0);
    }
    store_page page = {n, json, len, ids, rows > j->limit};
    j->list_cb(j->ud, STORE_OK, &page);
    buf_free(&b);
}

static void *r_main(void *arg)
{
    (void)arg;
    PGconn *c = NULL;
    pthread_mutex_lock(&r_mu);
    for (;;) {
        while (!r_head && !r_stop)
            pthread_cond_wait(&r_cv, &r_mu);
        pg_job *j = r_head;
        if (!j)
            break;
        r_head = j->next;
        if (!r_head)
            r_tail = NULL;
        r_len--;
        int stop = r_stop;
        pthread_mutex_unlock(&r_mu);
        if (stop) {
            r_fail(j);
        } else {
            int not_found = 0;
            PGresult *r = r_query(&c, j, &not_found);
            r_answer(j, r, not_found);
            PQclear(r);
            free(j);
        }
        pthread_mutex_lock(&r_mu);
    }
    pthread_mutex_unlock(&r_mu);
    if (c)
        PQfinish(c);
    return NULL;
}

int pg_reader_start(char *err, size_t errlen)
{
    atomic_store(&r_down_until, 0.0);
    pthread_mutex_lock(&r_mu);
    r_stop = 0;
    pthread_mutex_unlock(&r_mu);
    for (r_nthreads = 0; r_nthreads < PG_READERS; r_nthreads++)
        if (pthread_create(&r_threads[r_nthreads], NULL, r_main, NULL) != 0) {
            pg_reader_stop();
            return util_err(err, errlen, "store: cannot start the postgres reader threads");
        }
    pthread_mutex_lock(&r_mu);
    r_open = 1;
    pthread_mutex_unlock(&r_mu);
    return 0;
}

void pg_reader_stop(void)
{
    pthread_mutex_lock(&r_mu);
    r_stop = 1;
    r_open = 0;
    pthread_cond_broadcast(&r_cv);
    pthread_mutex_unlock(&r_mu);
    for (int i = 0; i < r_nthreads; i++)
        pthread_join(r_threads[i], NULL);
    r_nthreads = 0;
}
