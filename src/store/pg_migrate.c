/* pg_migrate: the schema, from db/migrations/NNN_name.sql embedded at build time (scripts/embed_sql.sh
 * writes pg_migrations.h), so the binary needs no files at run time.
 *
 * schema_migrations holds one row per applied file. Each missing file runs in its own transaction
 * together with its row, so a file is applied entirely or not at all. Instances starting together
 * on one empty database would race on CREATE TABLE, so the whole check-and-apply holds a session
 * advisory lock (pg_advisory_lock waits; the second instance then finds nothing to do). The lock is
 * released explicitly, and by the server anyway if the connection drops. */
#include <stdio.h>
#include <string.h>

#include "kailash/log.h"
#include "pg_internal.h"
#include "pg_migrations.h"

/* pg_advisory_lock's key: "kailashd" in ASCII, so another application's lock will not collide. */
#define PG_MIGRATE_LOCK "7737581549011560548"

/* Runs sql; 0, or -1 with err (*lost when the connection went with it). */
static int migrate_exec(PGconn *c, const char *sql, int n, const char *const *params, double deadline_ms, int *lost,
                        char *err, size_t errlen)
{
    PGresult *r = pg_exec(c, sql, n, params, deadline_ms, NULL, err, errlen);
    if (!r) {
        *lost = 1;
        return -1;
    }
    int ok = pg_ok(r);
    if (!ok) {
        pg_result_err(r, err, errlen);
        *lost = PQstatus(c) == CONNECTION_BAD;
    }
    PQclear(r);
    return ok ? 0 : -1;
}

/* The missing migrations, applied; under the lock. */
static int migrate_locked(PGconn *c, double deadline_ms, int *lost, char *err, size_t errlen)
{
    if (migrate_exec(c,
                     "CREATE TABLE IF NOT EXISTS schema_migrations (version int PRIMARY KEY, "
                     "applied_at timestamptz NOT NULL DEFAULT now())",
                     0, NULL, deadline_ms, lost, err, errlen) != 0)
        return -1;
    for (size_t i = 0; i < sizeof pg_migrations / sizeof pg_migrations[0]; i++) {
        const struct pg_migration *m = &pg_migrations[i];
        char version[16], e[300];
        snprintf(version, sizeof version, "%d", m->version);
        const char *p[1] = {version};
        PGresult *r =
            pg_exec(c, "SELECT 1 FROM schema_migrations WHERE version = $1::int", 1, p, deadline_ms, NULL, err, errlen);
        if (!r || !pg_ok(r)) {
            if (r)
                pg_result_err(r, err, errlen);
            *lost = !r || PQstatus(c) == CONNECTION_BAD;
            PQclear(r);
            return -1;
        }
        int applied = PQntuples(r) > 0;
        PQclear(r);
        if (applied)
            continue;
        if (migrate_exec(c, "BEGIN", 0, NULL, deadline_ms, lost, err, errlen) != 0)
            return -1;
        if (migrate_exec(c, m->sql, 0, NULL, deadline_ms, lost, e, sizeof e) != 0 ||
            migrate_exec(c, "INSERT INTO schema_migrations (version, applied_at) VALUES ($1::int, now())", 1, p,
                         deadline_ms, lost, e, sizeof e) != 0 ||
            migrate_exec(c, "COMMIT", 0, NULL, deadline_ms, lost, e, sizeof e) != 0) {
            if (!*lost) {
                char ignore[64];
                migrate_exec(c, "ROLLBACK", 0, NULL, deadline_ms, lost, ignore, sizeof ignore);
            }
            return util_err(err, errlen, "migration %s: %s", m->name, e);
        }
        log_msg(LOG_INFO, "store: postgres %s: applied migration %s", pg_g.describe, m->name);
    }
    return 0;
}

int pg_migrate(PGconn *c, int *fatal, char *err, size_t errlen)
{
    /* the lock may wait for another instance's migrations; the server's statement_timeout aside */
    double deadline_ms = util_now_ms() + PG_MIGRATE_TIMEOUT_MS;
    int lost = 0;
    *fatal = 0;
    if (migrate_exec(c, "SELECT pg_advisory_lock(" PG_MIGRATE_LOCK ")", 0, NULL, deadline_ms, &lost, err, errlen) != 0)
        return -1;
    int rc = migrate_locked(c, deadline_ms, &lost, err, errlen);
    if (!lost) {
        char e[300];
        if (migrate_exec(c, "SELECT pg_advisory_unlock(" PG_MIGRATE_LOCK ")", 0, NULL, deadline_ms, &lost, e,
                         sizeof e) != 0 &&
            rc == 0) {
            util_err(err, errlen, "%s", e);
            rc = -1;
        }
    }
    *fatal = rc != 0 && !lost;
    return rc;
}
