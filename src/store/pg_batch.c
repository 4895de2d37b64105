/* pg_batch: one batch of records as one parameterised upsert.
 *
 * A record's keys are the runs table's column names, so Postgres itself turns the batch into rows:
 * $1 is "[" + the records' JSON joined by "," + "]" and json_populate_recordset maps keys to columns
 * (unknown keys are ignored, missing ones are NULL). C never parses a record and SQL is never built
 * from record text. ON CONFLICT makes a replay harmless, but it cannot touch one row twice in a
 * statement, so a batch keeps only the newest record of each run.
 *
 * A batch the server refuses as data (SQLSTATE class 22, data exception, or 23, integrity: a record
 * that is not JSON, a run_id that is not a UUID, a NUL in text) would otherwise be retried forever,
 * holding back every record behind it; so its records are then written one by one and the ones
 * refused are logged (run_id and reason) and let go, after one more try with every \u0000 escape
 * made \ufffd (U+FFFD): Postgres's text and jsonb cannot hold NUL, and a run whose inputs carry one
 * (JSON allows it) must still have its record. Any other failure is the server's or the
 * connection's: the caller keeps the batch (spool). */
#include <stdlib.h>
#include <string.h>

#include "kailash/log.h"
#include "pg_internal.h"

static const char PG_UPSERT[] =
    "INSERT INTO runs SELECT * FROM json_populate_recordset(NULL::runs, $1::json) "
    "ON CONFLICT (run_id) DO UPDATE SET workflow = EXCLUDED.workflow, version = EXCLUDED.version, "
    "status = EXCLUDED.status, inputs = EXCLUDED.inputs, outputs = EXCLUDED.outputs, error = EXCLUDED.error, "
    "cache = EXCLUDED.cache, principal = EXCLUDED.principal, request_id = EXCLUDED.request_id, "
    "created_at = EXCLUDED.created_at, started_at = EXCLUDED.started_at, finished_at = EXCLUDED.finished_at, "
    "duration_ms = EXCLUDED.duration_ms, job = EXCLUDED.job "
    /* a run's states only go forward: a queued or running record written late (by the instance that
     * accepted a job another instance already finished) never replaces a later state */
    "WHERE NOT ((EXCLUDED.status = 'queued' AND runs.status <> 'queued') OR "
    "(EXCLUDED.status = 'running' AND runs.status NOT IN ('queued', 'running')))";

enum { B_OK, B_DATA, B_FAIL }; /* written; refused as data; server or connection failed */

static int pg_upsert(PGconn *c, const pg_rec *const *recs, size_t n, char *err, size_t errlen)
{
    buf b = {0};
    int bad = buf_append(&b, "[", 1);
    for (size_t i = 0; i < n && !bad; i++)
        bad = (i && buf_append(&b, ",", 1)) || buf_append(&b, recs[i]->json, recs[i]->len);
    if (bad || buf_append(&b, "]", 1) || buf_terminate(&b)) {
        buf_free(&b);
        util_err(err, errlen, "out of memory");
        return B_FAIL;
    }
    const char *p[1] = {b.data};
    PGresult *r = pg_exec(c, PG_UPSERT, 1, p, util_now_ms() + PG_WRITE_TIMEOUT_MS, NULL, err, errlen);
    buf_free(&b);
    if (!r)
        return B_FAIL;
    int rc = B_OK;
    if (!pg_ok(r)) {
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        pg_result_err(r, err, errlen);
        rc = PQstatus(c) == CONNECTION_OK && state && (!strncmp(state, "22", 2) || !strncmp(state, "23", 2)) ? B_DATA
                                                                                                             : B_FAIL;
    }
    PQclear(r);
    return rc;
}

/* A copy of json (NUL-terminated) with each \u0000 escape made \ufffd (the same length), or NULL
 * when it has none or memory is short. An escaped backslash before "u0000" is not an escape of NUL:
 * the character after a backslash is skipped. Escapes occur only inside strings. */
static char *pg_without_nul(const char *json, size_t len)
{
    char *out = NULL;
    for (size_t i = 0; i + 5 < len; i++) {
        if (json[i] != '\\')
            continue;
        if (memcmp(json + i + 1, "u0000", 5) == 0) {
            if (!out) { /* the first one: copy the whole text once */
                if (!(out = malloc(len + 1)))
                    return NULL;
                memcpy(out, json, len);
                out[len] = '\0';
            }
            memcpy(out + i + 1, "ufffd", 5);
        }
        i++; /* the escaped character never starts an escape */
    }
    return out;
}

/* One record Postgres refused as data: tried again without NULs, else logged and let go. */
static int pg_upsert_one(PGconn *c, const pg_rec *rec, char *err, size_t errlen)
{
    char e[300];
    char *clean = pg_without_nul(rec->json, rec->len);
    int rc = B_DATA;
    if (clean) {
        pg_rec fixed = {rec->run_id, clean, rec->len};
        const pg_rec *one = &fixed;
        rc = pg_upsert(c, &one, 1, e, sizeof e);
        free(clean);
    }
    if (rc == B_DATA) /* still refused (or had no NUL): its own error says why */
        rc = pg_upsert(c, &rec, 1, e, sizeof e);
    if (rc == B_FAIL)
        util_err(err, errlen, "%s", e);
    else if (rc == B_DATA)
        log_msg(LOG_ERROR, "store: postgres refused the record of run %.36s (%s); it is not kept", rec->run_id, e);
    return rc;
}

/* By run_id, then newest (the later in the batch) first. */
static int pg_by_run_newest(const void *a, const void *b)
{
    const pg_rec *x = *(const pg_rec *const *)a, *y = *(const pg_rec *const *)b;
    int c = strcmp(x->run_id, y->run_id);
    return c ? c : (x < y) - (x > y);
}

int pg_write_batch(PGconn *c, const pg_rec *recs, size_t n, char *err, size_t errlen)
{
    if (n == 0)
        return 0;
    const pg_rec **v = malloc(n * sizeof *v);
    if (!v)
        return util_err(err, errlen, "out of memory");
    for (size_t i = 0; i < n; i++)
        v[i] = &recs[i];
    qsort(v, n, sizeof *v, pg_by_run_newest);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (k == 0 || strcmp(v[k - 1]->run_id, v[i]->run_id) != 0)
            v[k++] = v[i];
    int rc = pg_upsert(c, v, k, err, errlen);
    for (size_t i = 0; rc == B_DATA && i < k; i++) { /* find the records it refuses */
        if (pg_upsert_one(c, v[i], err, errlen) == B_FAIL)
            break;
        if (i + 1 == k)
            rc = B_OK;
    }
    free(v);
    return rc == B_OK ? 0 : -1;
}
