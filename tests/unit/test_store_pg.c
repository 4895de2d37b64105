/* store, Postgres backend (src/store/pg*.c), against a real server: tests/unit/run.sh starts one with
 * tests/pg.sh for the whole run and exports KAILASH_TEST_DATABASE_URL; each test creates its own
 * database, so tests are independent and may run in parallel. The outage test stops and starts a
 * server of its own (KAILASH_TEST_PG_SH names the script).
 *
 * Records go in through store.h (store_put) and are read back both through store.h and from the
 * backend itself (store_postgres.get/list, which only sees what is durable), and checked in the
 * table with libpq. */
#include <criterion/criterion.h>
#include <ctype.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../src/store/store_internal.h"
#include "kailash/log.h"
#include "kailash/util.h"

/* ---- the server and a database of the test's own ---- */

static char g_url[512]; /* the test's database */
static char g_dir[256]; /* data_dir (the spool) */
static kconfig g_cfg;

static const char *base_url(void)
{
    const char *u = getenv("KAILASH_TEST_DATABASE_URL");
    cr_assert(u && *u, "KAILASH_TEST_DATABASE_URL is not set: run through tests/unit/run.sh (which starts a "
                       "server with tests/pg.sh), or point it at a server where the tests may create databases");
    return u;
}

/* Runs sql on url; the first value of the first row (caller frees), or NULL for no rows. Fails the
 * test on an error. */
static char *sql1(const char *url, const char *sql)
{
    PGconn *c = PQconnectdb(url);
    cr_assert_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    cr_assert(st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK, "%s: %s", sql, PQresultErrorMessage(r));
    char *v = st == PGRES_TUPLES_OK && PQntuples(r) > 0 ? strdup(PQgetvalue(r, 0, 0)) : NULL;
    PQclear(r);
    PQfinish(c);
    return v;
}

static long sql_long(const char *url, const char *sql)
{
    char *v = sql1(url, sql);
    cr_assert_not_null(v, "%s: no rows", sql);
    long n = strtol(v, NULL, 10);
    free(v);
    return n;
}

/* A new database on the server at server (a URL ending in /dbname); its URL into out. */
static void fresh_db_on(const char *server, char *out, size_t outlen)
{
    char name[40], id[37], sql[80];
    util_uuid7(id);
    snprintf(name, sizeof name, "t_%.8s%.4s%.4s", id + 24, id + 9, id + 14);
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
    free(sql1(server, sql));
    const char *slash = strrchr(server, '/');
    cr_assert_not_null(slash);
    snprintf(out, outlen, "%.*s/%s", (int)(slash - server), server, name);
}

static void setup(void)
{
    log_set_level(LOG_WARN);
    fresh_db_on(base_url(), g_url, sizeof g_url);
    snprintf(g_dir, sizeof g_dir, "/tmp/kailash-test-pg-XXXXXX");
    cr_assert_not_null(mkdtemp(g_dir));
    g_cfg.store_enabled = 1;
    g_cfg.store_queue_max = 100000;
    g_cfg.store_batch_max = 64;
    g_cfg.data_dir = g_dir;
    g_cfg.database_url = g_url;
}

static void teardown(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    cr_expect_eq(system(cmd), 0);
}

TestSuite(store_pg, .init = setup, .fini = teardown, .timeout = 120);

/* ---- records ---- */

/* Run ids that sort in the order of n (UUIDv7-shaped). */
static void run_id(int n, char out[37])
{
    snprintf(out, 37, "0192f7c2-0000-7000-8000-%012x", n);
}

/* The record of API.md, compact, keys in its order: exactly what the backend reads back. */
static int record(char *out, size_t outlen, const char *id, const char *wf, const char *status, const char *who)
{
    return snprintf(out, outlen,
                    "{\"run_id\":\"%s\",\"workflow\":\"%s\",\"version\":\"3\",\"status\":\"%s\",\"inputs\":{\"n\":1},"
                    "\"outputs\":{\"ok\":true},\"error\":null,\"cache\":\"MISS\",\"principal\":\"%s\","
                    "\"request_id\":\"abc\",\"created_at\":\"2026-11-27T10:00:00.123Z\",\"started_at\":"
                    "\"2026-11-27T10:00:00.124Z\",\"finished_at\":\"2026-11-27T10:00:00.127Z\",\"duration_ms\":3.1}",
                    id, wf, status, who);
}

static void put_json(const char *id, const char *wf, const char *status, const char *who, const char *json)
{
    store_rec r = {id, wf, status, who, json, strlen(json)};
    cr_assert_eq(store_put(&r), 0);
}

static void put(int n, const char *wf, const char *status, const char *who)
{
    char id[37], json[1024];
    run_id(n, id);
    record(json, sizeof json, id, wf, status, who);
    put_json(id, wf, status, who, json);
}

static void start(void)
{
    char err[300] = "";
    cr_assert_eq(store_start(&g_cfg, err, sizeof err), 0, "%s", err);
    store_health h;
    store_health_get(&h);
    cr_assert_str_eq(h.check, "postgres");
}

static void wait_written(uint64_t n)
{
    store_counts c;
    double end = util_now_ms() + 30000;
    do {
        store_counts_get(&c);
        if (c.written >= n)
            break;
        usleep(10000);
    } while (util_now_ms() < end);
    cr_assert_eq(c.written, n, "written %llu of %llu", (unsigned long long)c.written, (unsigned long long)n);
    cr_assert_eq(c.pending, 0);
}

/* ---- read callbacks, which may run on a reader thread ---- */

typedef struct answer {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done, status, more;
    char json[8][2048];
    char ids[8][37];
    size_t n;
} answer;

static void answer_init(answer *a)
{
    memset(a, 0, sizeof *a);
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cv, NULL);
}

static void on_get(void *ud, int status, const char *json, size_t len)
{
    answer *a = ud;
    pthread_mutex_lock(&a->mu);
    a->status = status;
    if (status == STORE_OK) {
        cr_assert_lt(len, sizeof a->json[0]);
        memcpy(a->json[0], json, len);
        a->json[0][len] = '\0';
    }
    a->done = 1;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
}

static void on_list(void *ud, int status, const store_page *p)
{
    answer *a = ud;
    pthread_mutex_lock(&a->mu);
    a->status = status;
    if (status == STORE_OK) {
        cr_assert_leq(p->n, 8);
        a->n = p->n;
        a->more = p->more;
        for (size_t i = 0; i < p->n; i++) {
            cr_assert_lt(p->len[i], sizeof a->json[i]);
            memcpy(a->json[i], p->json[i], p->len[i]);
            a->json[i][p->len[i]] = '\0';
            util_copy(a->ids[i], sizeof a->ids[i], p->run_id[i]);
        }
    }
    a->done = 1;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
}

static void answer_wait(answer *a)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 30;
    pthread_mutex_lock(&a->mu);
    while (!a->done && pthread_cond_timedwait(&a->cv, &a->mu, &ts) == 0)
        ;
    int done = a->done;
    pthread_mutex_unlock(&a->mu);
    cr_assert(done, "no answer");
}

/* The backend's own answer (durable records only). */
static void be_get(const char *id, answer *a)
{
    answer_init(a);
    store_postgres.get(id, on_get, a);
    answer_wait(a);
}

static void be_list(const char *wf, const char *status, const char *who, const char *before, int limit, answer *a)
{
    answer_init(a);
    store_query q = {wf, status, who, before, limit};
    store_postgres.list(&q, on_list, a);
    answer_wait(a);
}

static void assert_id(const answer *a, size_t i, int n)
{
    char id[37];
    run_id(n, id);
    cr_assert_gt(a->n, i);
    cr_assert_str_eq(a->ids[i], id, "row %zu: %s, expected run %d", i, a->ids[i], n);
}

/* ---- migrations ---- */

Test(store_pg, migrations_create_the_schema_and_a_second_start_applies_nothing)
{
    char err[300] = "";
    cr_assert_eq(store_postgres.start(&g_cfg, err, sizeof err), 0, "%s", err);
    store_postgres.stop(util_now_ms() + 10000);
    cr_assert_eq(sql_long(g_url, "SELECT count(*) FROM schema_migrations"), 2);
    cr_assert_eq(sql_long(g_url, "SELECT max(version) FROM schema_migrations"), 2);
    cr_assert_eq(sql_long(g_url, "SELECT count(*) FROM pg_indexes WHERE tablename = 'runs' AND indexdef LIKE "
                                 "'%(workflow, run_id)%' OR indexdef LIKE '%(status, run_id)%' OR indexdef LIKE "
                                 "'%(principal, run_id)%'"),
                 3);
    char *applied = sql1(g_url, "SELECT applied_at::text FROM schema_migrations WHERE version = 1");
    cr_assert_eq(store_postgres.start(&g_cfg, err, sizeof err), 0, "%s", err);
    store_postgres.stop(util_now_ms() + 10000);
    cr_assert_eq(sql_long(g_url, "SELECT count(*) FROM schema_migrations"), 2);
    char *again = sql1(g_url, "SELECT applied_at::text FROM schema_migrations WHERE version = 1");
    cr_assert_str_eq(again, applied, "migration 1 was applied again");
    free(applied);
    free(again);
}

/* A child process: starts and stops the backend on url when the parent writes to go; exits 0 when
 * start succeeded. */
static pid_t start_child(int go_fd)
{
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        char c, err[300] = "";
        if (read(go_fd, &c, 1) != 1)
            _exit(3);
        int rc = store_postgres.start(&g_cfg, err, sizeof err);
        if (rc == 0)
            store_postgres.stop(util_now_ms() + 10000);
        else
            fprintf(stderr, "child: %s\n", err);
        _exit(rc == 0 ? 0 : 1);
    }
    return pid;
}

Test(store_pg, instances_migrating_one_empty_database_together_all_succeed)
{
    for (int round = 0; round < 4; round++) {
        if (round)
            fresh_db_on(base_url(), g_url, sizeof g_url);
        int p[2];
        cr_assert_eq(pipe(p), 0);
        pid_t kids[4];
        for (int i = 0; i < 4; i++)
            kids[i] = start_child(p[0]);
        cr_assert_eq(write(p[1], "gggg", 4), 4); /* all at once */
        for (int i = 0; i < 4; i++) {
            int st;
            cr_assert_eq(waitpid(kids[i], &st, 0), kids[i]);
            cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "instance %d of round %d failed to start", i, round);
        }
        close(p[0]);
        close(p[1]);
        cr_assert_eq(sql_long(g_url, "SELECT count(*) FROM schema_migrations"), 2);
    }
}

Test(store_pg, migrations_wait_for_the_advisory_lock)
{
    /* hold the lock migrations take, start an instance: it must wait (seen in pg_locks, this
     * database's only: other tests migrate their own at the same time) and have created nothing;
     * released, it finishes */
    PGconn *holder = PQconnectdb(g_url);
    cr_assert_eq(PQstatus(holder), CONNECTION_OK);
    PQclear(PQexec(holder, "SELECT pg_advisory_lock(7737581549011560548)"));
    int p[2];
    cr_assert_eq(pipe(p), 0);
    pid_t kid = start_child(p[0]);
    cr_assert_eq(write(p[1], "g", 1), 1);
    long waiting = 0;
    for (int i = 0; i < 3000 && !waiting; i++) {
        waiting =
            sql_long(g_url, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND database = "
                            "(SELECT oid FROM pg_database WHERE datname = current_database())");
        if (!waiting)
            usleep(10000);
    }
    cr_assert_eq(waiting, 1, "the starting instance does not wait for the lock");
    cr_assert_eq(sql_long(g_url, "SELECT count(*) FROM pg_tables WHERE tablename = 'schema_migrations'"), 0);
    PQclear(PQexec(holder, "SELECT pg_advisory_unlock(7737581549011560548)"));
    int st;
    cr_assert_eq(waitpid(kid, &st, 0), kid);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    cr_assert_eq(sql_long(g_url, "SELECT count(*) FROM schema_migrations"), 2);
    PQfinish(holder);
}

Test(store_pg, a_failing_migration_is_a_start_error_and_applies_nothing)
{
    free(sql1(g_url, "CREATE TABLE runs (x int)")); /* 001_runs.sql's CREATE TABLE runs fails */
    char err[300] = "";
    cr_assert_eq(store_postgres.start(&g_cfg, err, sizeof err), -1);
    cr_assert_not_null(strstr(err, "001_runs.sql"), "%s", err);
    cr_assert_not_null(strstr(err, "42P07"), "%s", err);
    cr_assert_eq(sql_long(g_url, "SELECT count(*) FROM schema_migrations"), 0);
    cr_assert_eq(sql_long(g_url, "SELECT count(*) FROM pg_indexes WHERE tablename = 'runs'"), 0);
}

Test(store_pg, a_url_that_does_not_parse_is_a_start_error_without_its_password)
{
    char err[300] = "";
    g_cfg.database_url = "postgresql://kailash:s3cretpw@127.0.0.1:5432/db?no_such_param=1";
    cr_assert_eq(store_postgres.start(&g_cfg, err, sizeof err), -1);
    cr_assert_not_null(strstr(err, "database_url"), "%s", err);
    cr_assert_null(strstr(err, "s3cretpw"), "%s", err);
}

/* ---- writing and reading ---- */

Test(store_pg, put_then_get_and_list_round_trip_the_record_exactly)
{
    start();
    char id[37], json[1024];
    run_id(1, id);
    record(json, sizeof json, id, "orders", "completed", "key:ci");
    put_json(id, "orders", "completed", "key:ci", json);
    wait_written(1);
    answer a;
    be_get(id, &a);
    cr_assert_eq(a.status, STORE_OK);
    cr_assert_str_eq(a.json[0], json);
    answer_init(&a);
    store_get(id, on_get, &a);
    answer_wait(&a);
    cr_assert_eq(a.status, STORE_OK);
    cr_assert_str_eq(a.json[0], json);
    be_list(NULL, NULL, NULL, NULL, 10, &a);
    cr_assert_eq(a.status, STORE_OK);
    cr_assert_eq(a.n, 1);
    cr_assert_str_eq(a.json[0], json);
    cr_assert_str_eq(a.ids[0], id);
    cr_assert_eq(a.more, 0);
    run_id(2, id);
    be_get(id, &a);
    cr_assert_eq(a.status, STORE_NOT_FOUND);
    cr_assert_eq(sql_long(g_url, "SELECT count(*) FROM runs"), 1);
    store_stop(util_now_ms() + 10000);
}

Test(store_pg, list_filters_pages_with_before_and_says_more)
{
    start();
    const char *wf[] = {"orders", "billing", "orders", "orders", "billing", "orders", "orders"};
    const char *st[] = {"completed", "failed", "failed", "completed", "completed", "completed", "timeout"};
    const char *who[] = {"key:ci", "key:ci", "jwt:alice", "key:ci", "jwt:alice", "jwt:alice", "key:ci"};
    for (int i = 0; i < 7; i++)
        put(i + 1, wf[i], st[i], who[i]);
    wait_written(7);
    char id[37];
    answer a;
    be_list(NULL, NULL, NULL, NULL, 3, &a); /* newest first: 7, 6, 5 */
    cr_assert_eq(a.n, 3);
    assert_id(&a, 0, 7);
    assert_id(&a, 2, 5);
    cr_assert_eq(a.more, 1);
    run_id(5, id);
    be_list(NULL, NULL, NULL, id, 3, &a); /* before 5: 4, 3, 2 */
    cr_assert_eq(a.n, 3);
    assert_id(&a, 0, 4);
    assert_id(&a, 2, 2);
    cr_assert_eq(a.more, 1);
    run_id(2, id);
    be_list(NULL, NULL, NULL, id, 3, &a); /* before 2: 1, and no more */
    cr_assert_eq(a.n, 1);
    cr_assert_eq(a.more, 0);
    be_list("orders", NULL, NULL, NULL, 8, &a); /* 7 6 4 3 1 */
    cr_assert_eq(a.n, 5);
    cr_assert_eq(a.more, 0);
    assert_id(&a, 3, 3);
    be_list("orders", "completed", NULL, NULL, 8, &a); /* 6 4 1 */
    cr_assert_eq(a.n, 3);
    assert_id(&a, 0, 6);
    be_list("orders", "completed", "key:ci", NULL, 8, &a); /* 4 1 */
    cr_assert_eq(a.n, 2);
    assert_id(&a, 0, 4);
    be_list(NULL, "failed", NULL, NULL, 1, &a); /* 3 (and 2 beyond) */
    cr_assert_eq(a.n, 1);
    cr_assert_eq(a.more, 1);
    assert_id(&a, 0, 3);
    be_list(NULL, NULL, "jwt:alice", NULL, 3, &a); /* exactly 6 5 3: more is 0 */
    cr_assert_eq(a.n, 3);
    cr_assert_eq(a.more, 0);
    be_list("nope", NULL, NULL, NULL, 3, &a);
    cr_assert_eq(a.status, STORE_OK);
    cr_assert_eq(a.n, 0);
    /* through store.h: the same pages */
    answer_init(&a);
    store_query q = {"billing", NULL, NULL, NULL, 5};
    store_list(&q, on_list, &a);
    answer_wait(&a);
    cr_assert_eq(a.n, 2);
    assert_id(&a, 0, 5);
    store_stop(util_now_ms() + 10000);
}

Test(store_pg, a_later_put_of_a_run_wins_and_the_run_is_one_row)
{
    start();
    for (int i = 0; i < 50; i++) { /* many in one batch, and some across batches */
        put(i % 5 + 1, "orders", "running", "key:ci");
        put(i % 5 + 1, "orders", i >= 45 ? "completed" : "running", "key:ci");
    }
    wait_written(100);
    cr_assert_eq(sql_long(g_url, "SELECT count(*) FROM runs"), 5);
    cr_assert_eq(sql_long(g_url, "SELECT count(*) FROM runs WHERE status = 'completed'"), 5);
    store_stop(util_now_ms() + 10000);
}

Test(store_pg, a_finished_run_never_goes_back_to_queued_or_running)
{
    start();
    put(7, "orders", "completed", "key:ci");
    wait_written(1);
    put(7, "orders", "queued", "key:ci"); /* late writes, as another instance's write-behind could be */
    wait_written(2);
    put(7, "orders", "running", "key:ci");
    put(8, "orders", "queued", "key:ci");
    wait_written(4);
    put(8, "orders", "running", "key:ci");
    wait_written(5);
    cr_assert_eq(sql_long(g_url, "SELECT count(*) FROM runs WHERE status = 'completed'"), 1);
    cr_assert_eq(sql_long(g_url, "SELECT count(*) FROM runs WHERE status = 'running'"), 1);
    put(8, "orders", "queued", "key:ci");
    wait_written(6);
    cr_assert_eq(sql_long(g_url, "SELECT count(*) FROM runs WHERE status = 'running'"), 1);
    store_stop(util_now_ms() + 10000);
}

static void on_unfinished(void *ud, const char *json, size_t len)
{
    buf *b = ud;
    buf_append(b, json, len);
    buf_append(b, "\n", 1);
}

Test(store_pg, a_queued_records_job_payload_is_kept_for_recovery_and_never_shown)
{
    start();
    char id[37], json[2048];
    run_id(9, id);
    snprintf(json, sizeof json, "{\"job\":{\"v\":1,\"run_id\":\"%s\",\"note\":\"a \\\"quoted\\\" }\"},%s", id,
             "\"run_id\":\"0192f7c2-0000-7000-8000-000000000009\",\"workflow\":\"orders\",\"version\":\"3\","
             "\"status\":\"queued\",\"inputs\":{},\"outputs\":null,\"error\":null,\"cache\":\"BYPASS\","
             "\"principal\":\"anonymous\",\"request_id\":\"r\",\"created_at\":\"2026-11-27T10:00:00.123Z\","
             "\"started_at\":null,\"finished_at\":null,\"duration_ms\":null}");
    put_json(id, "orders", "queued", "anonymous", json);
    wait_written(1);
    cr_assert_eq(sql_long(g_url, "SELECT count(*) FROM runs WHERE job->>'note' = 'a \"quoted\" }'"), 1);
    answer a;
    answer_init(&a);
    store_get(id, on_get, &a);
    answer_wait(&a);
    cr_assert_eq(a.status, STORE_OK);
    cr_assert(strncmp(a.json[0], "{\"run_id\":", 10) == 0, "%s", a.json[0]);
    cr_assert_null(strstr(a.json[0], "quoted"));
    buf b = {0};
    cr_assert_eq(store_unfinished(on_unfinished, &b), 0);
    cr_assert_not_null(b.data);
    cr_assert(strncmp(b.data, "{\"job\":", 7) == 0, "%.*s", (int)b.len, b.data);
    json_t *rec = json_loadb(b.data, b.len - 1, 0, NULL);
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(rec, "job"), "note")), "a \"quoted\" }");
    cr_assert_str_eq(json_string_value(json_object_get(rec, "status")), "queued");
    json_decref(rec);
    buf_free(&b);
    store_stop(util_now_ms() + 10000);
}

Test(store_pg, a_record_postgres_refuses_is_let_go_and_its_batch_is_written)
{
    start();
    put(1, "orders", "completed", "key:ci");
    put_json("0192f7c2-0000-7000-8000-0000000000ff", "orders", "completed", "key:ci",
             "{\"run_id\":\"not-a-uuid\",\"workflow\":\"orders\"}");
    put(2, "orders", "completed", "key:ci");
    wait_written(3);
    cr_assert_eq(sql_long(g_url, "SELECT count(*) FROM runs"), 2);
    struct stat sb;
    cr_assert(stat(g_dir, &sb) == 0);
    char spool[300];
    snprintf(spool, sizeof spool, "%s/pg-spool.jsonl", g_dir);
    cr_assert(stat(spool, &sb) != 0 || sb.st_size == 0, "the batch went to the spool");
    store_stop(util_now_ms() + 10000);
}

/* Postgres's text and jsonb cannot hold NUL: a record whose strings carry \u0000 (an upstream's
 * text can) is kept with U+FFFD in its place, and an escaped backslash before "u0000" is text. */
Test(store_pg, a_nul_in_a_record_is_kept_as_the_replacement_character)
{
    start();
    char id[37], json[1024], want[1024];
    run_id(21, id);
    const char *fmt = "{\"run_id\":\"%s\",\"workflow\":\"w\",\"version\":\"1\",\"status\":\"completed\",\"inputs\":"
                      "{\"a\":\"x%sy\",\"b\":\"\\\\u0000\"},\"outputs\":{\"%s\":1},\"error\":null,\"cache\":\"MISS\","
                      "\"principal\":\"anonymous\",\"request_id\":null,\"created_at\":\"2026-11-27T10:00:00.123Z\","
                      "\"started_at\":null,\"finished_at\":null,\"duration_ms\":1.5}";
    snprintf(json, sizeof json, fmt, id, "\\u0000", "k\\u0000");
    snprintf(want, sizeof want, fmt, id, "\xef\xbf\xbd", "k\xef\xbf\xbd");
    put_json(id, "w", "completed", "anonymous", json);
    put(22, "w", "completed", "anonymous"); /* in the same batch: written as ever */
    wait_written(2);
    cr_assert_eq(sql_long(g_url, "SELECT count(*) FROM runs"), 2);
    answer a;
    be_get(id, &a);
    cr_assert_eq(a.status, STORE_OK);
    cr_assert_str_eq(a.json[0], want);
    store_stop(util_now_ms() + 10000);
}

Test(store_pg, hostile_text_round_trips_as_data)
{
    start();
    const char *wf = "'; DROP TABLE runs; --";
    const char *who = "key:o'brien\\\"x";
    char id[37], json[2048], wfj[64], whoj[64];
    run_id(9, id);
    /* the record's JSON escapes them; a string field and inputs with quotes, backslashes, unicode */
    snprintf(wfj, sizeof wfj, "'; DROP TABLE runs; --");
    snprintf(whoj, sizeof whoj, "key:o'brien\\\\\\\"x");
    snprintf(json, sizeof json,
             "{\"run_id\":\"%s\",\"workflow\":\"%s\",\"version\":\"$1\",\"status\":\"failed\",\"inputs\":{\"q\":"
             "\"a'b\\\"c\\\\d\\n\\u0001 \xc3\xa9\xe2\x98\x83\xf0\x9f\x98\x80\"},\"outputs\":null,\"error\":{\"code\":"
             "\"x\",\"message\":\"it's \\\"bad\\\"\",\"node\":\"n\"},\"cache\":\"MISS\",\"principal\":\"%s\","
             "\"request_id\":\"r\\\\1\",\"created_at\":\"2026-11-27T10:00:00.123Z\",\"started_at\":null,"
             "\"finished_at\":\"2026-11-27T10:00:01.000Z\",\"duration_ms\":0.5}",
             id, wfj, whoj);
    put_json(id, wf, "failed", who, json);
    wait_written(1);
    answer a;
    be_get(id, &a);
    cr_assert_eq(a.status, STORE_OK);
    cr_assert_str_eq(a.json[0], json);
    be_list(wf, NULL, who, NULL, 5, &a);
    cr_assert_eq(a.n, 1);
    cr_assert_str_eq(a.json[0], json);
    cr_assert_eq(sql_long(g_url, "SELECT count(*) FROM runs WHERE workflow = '''; DROP TABLE runs; --'"), 1);
    store_stop(util_now_ms() + 10000);
}

Test(store_pg, stop_writes_everything_queued)
{
    start();
    for (int i = 0; i < 2000; i++)
        put(i + 1, "orders", "completed", "key:ci");
    store_stop(util_now_ms() + 20000);
    cr_assert_eq(sql_long(g_url, "SELECT count(*) FROM runs"), 2000);
}

/* ---- outages ---- */

static long long file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (long long)sb.st_size : -1;
}

static int file_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    int n = 0, c;
    if (!f)
        return -1;
    while ((c = fgetc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

Test(store_pg, a_server_down_at_start_is_no_error_and_records_spool)
{
    char err[300] = "";
    /* a port where nothing listens (the server's own port, plus one... is not sure to be free: port 1) */
    g_cfg.database_url = "postgresql://kailash:s3cretpw@127.0.0.1:1/db?connect_timeout=2";
    cr_assert_eq(store_start(&g_cfg, err, sizeof err), 0, "%s", err);
    store_health h;
    store_health_get(&h);
    cr_assert_str_eq(h.check, "postgres");
    cr_assert_eq(h.up, 0);
    cr_assert_neq(h.why[0], '\0');
    cr_assert_null(strstr(h.why, "s3cretpw"), "%s", h.why);
    put(1, "orders", "completed", "key:ci");
    put(2, "orders", "completed", "key:ci");
    wait_written(2);
    char spool[300];
    snprintf(spool, sizeof spool, "%s/pg-spool.jsonl", g_dir);
    cr_assert_eq(file_lines(spool), 2);
    answer a;
    be_get("0192f7c2-0000-7000-8000-000000000001", &a);
    cr_assert_eq(a.status, STORE_UNAVAILABLE);
    be_list(NULL, NULL, NULL, NULL, 3, &a);
    cr_assert_eq(a.status, STORE_UNAVAILABLE);
    store_stop(util_now_ms() + 5000);
    cr_assert_eq(file_lines(spool), 2, "the spool is kept for the next start");
}

static void pg_sh(const char *cmd, const char *dir, char *url, size_t urllen)
{
    const char *sh = getenv("KAILASH_TEST_PG_SH");
    char line[700];
    snprintf(line, sizeof line, "sh '%s' %s '%s'", sh && *sh ? sh : "tests/pg.sh", cmd, dir);
    FILE *p = popen(line, "r");
    cr_assert_not_null(p);
    char out[512] = "";
    if (!fgets(out, sizeof out, p))
        out[0] = '\0';
    cr_assert_eq(pclose(p), 0, "%s failed", line);
    out[strcspn(out, "\n")] = '\0';
    if (url)
        util_copy(url, urllen, out);
}

Test(store_pg, server_stopped_records_spool_and_are_replayed_once_when_it_is_back)
{
    char server[512], dir[64] = "/tmp/kailash-test-pgsrv-XXXXXX"; /* pg.sh gives it to the server's user */
    cr_assert_not_null(mkdtemp(dir));
    pg_sh("up", dir, server, sizeof server);
    fresh_db_on(server, g_url, sizeof g_url);
    start();
    put(1, "orders", "completed", "key:ci");
    wait_written(1);

    pg_sh("down", dir, NULL, 0);
    put(2, "orders", "running", "key:ci");
    put(3, "orders", "completed", "key:ci");
    put(2, "orders", "completed", "key:ci"); /* run 2 again, newer */
    wait_written(4);
    char spool[300];
    snprintf(spool, sizeof spool, "%s/pg-spool.jsonl", g_dir);
    cr_assert_eq(file_lines(spool), 3);
    store_health h;
    store_health_get(&h);
    cr_assert_eq(h.up, 0);

    pg_sh("up", dir, NULL, 0);
    double end = util_now_ms() + 30000;
    while (file_size(spool) != 0 && util_now_ms() < end)
        usleep(20000);
    cr_assert_eq(file_size(spool), 0, "the spool was not replayed");
    cr_assert_eq(sql_long(g_url, "SELECT count(*) FROM runs"), 3);
    cr_assert_eq(sql_long(g_url, "SELECT count(*) FROM runs WHERE status = 'completed'"), 3);
    store_health_get(&h);
    cr_assert_eq(h.up, 1, "%s", h.why);
    put(4, "orders", "completed", "key:ci"); /* and writes go straight to the table again */
    wait_written(5);
    cr_assert_eq(file_size(spool), 0);
    store_stop(util_now_ms() + 10000);
    cr_assert_eq(sql_long(g_url, "SELECT count(*) FROM runs"), 4);
    pg_sh("clean", dir, NULL, 0);
}

Test(store_pg, a_spool_left_by_an_earlier_process_is_replayed_at_start_without_duplicates)
{
    char spool[300], a1[1024], a2[1024], b[1024];
    snprintf(spool, sizeof spool, "%s/pg-spool.jsonl", g_dir);
    char id1[37], id2[37];
    run_id(1, id1);
    run_id(2, id2);
    record(a1, sizeof a1, id1, "orders", "running", "key:ci");
    record(a2, sizeof a2, id1, "orders", "completed", "key:ci");
    record(b, sizeof b, id2, "orders", "completed", "key:ci");
    char id2_upper[37], b_upper[1024];
    for (int k = 0; k < 37; k++)
        id2_upper[k] = (char)toupper((unsigned char)id2[k]);
    record(b_upper, sizeof b_upper, id2_upper, "orders", "completed", "key:ci");
    FILE *f = fopen(spool, "w");
    cr_assert_not_null(f);
    /* run 1 twice (the later line wins), run 2 three times (a replay of a replay, once spelled in upper
     * case: one row all the same, not a statement Postgres refuses), and a torn last line */
    fprintf(f, "%s\n%s\n%s\n%s\n%s\n%s\n{\"run_id\":\"0192", a1, b, a2, b, b_upper, b);
    fclose(f);
    start();
    double end = util_now_ms() + 30000;
    while (file_size(spool) != 0 && util_now_ms() < end)
        usleep(20000);
    cr_assert_eq(file_size(spool), 0);
    cr_assert_eq(sql_long(g_url, "SELECT count(*) FROM runs"), 2);
    answer a;
    be_get(id1, &a);
    cr_assert_eq(a.status, STORE_OK);
    cr_assert_str_eq(a.json[0], a2);
    store_stop(util_now_ms() + 10000);
}
