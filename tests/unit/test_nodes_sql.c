/* test_nodes_sql: SQLDatabaseNode and AsyncSQLDatabaseNode (src/nodes/sql*.c) against a real
 * PostgreSQL: the server in KAILASH_TEST_DATABASE_URL, or, when that is unset, a throwaway one
 * this binary starts with tests/pg.sh (KAILASH_TEST_PG_SH names the script) for the whole run. The
 * restart test has a server of its own. Calls go through an I/O loop as the engine makes them. */
#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kailash/ioloop.h"
#include "kailash/node.h"
#include "kailash/sql_pool.h"
#include "kailash/util.h"
#include "../../src/nodes/sql_internal.h"

static const node_env test_env = {"/tmp", 1 << 20, 2000, 1};
#include "node_harness.h"

extern const node_type node_sql_database, node_async_sql_database;

/* ---- the server ---- */

static char g_own_dir[64]; /* the run's server, when this binary started it */

static void pg_sh(const char *cmd, const char *dir, char *url, size_t urllen)
{
    const char *sh = getenv("KAILASH_TEST_PG_SH");
    char line[700];
    snprintf(line, sizeof line, "sh '%s' %s '%s'", sh && *sh ? sh : "tests/pg.sh", cmd, dir);
    FILE *p = popen(line, "r");
    char out[512] = "";
    if (!p || !fgets(out, sizeof out, p))
        out[0] = '\0';
    int rc = p ? pclose(p) : -1;
    out[strcspn(out, "\n")] = '\0';
    if (url)
        snprintf(url, urllen, "%s", rc == 0 ? out : "");
}

ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
    (void)set;
    const char *u = getenv("KAILASH_TEST_DATABASE_URL");
    if (u && *u)
        return;
    snprintf(g_own_dir, sizeof g_own_dir, "/tmp/kailash-test-sql-XXXXXX");
    if (!mkdtemp(g_own_dir))
        return;
    char url[512];
    pg_sh("up", g_own_dir, url, sizeof url);
    if (*url)
        setenv("KAILASH_TEST_DATABASE_URL", url, 1);
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
    (void)stats;
    if (*g_own_dir)
        pg_sh("clean", g_own_dir, NULL, 0);
}

static const char *base_url(void)
{
    const char *u = getenv("KAILASH_TEST_DATABASE_URL");
    cr_assert(u && *u, "no PostgreSQL: set KAILASH_TEST_DATABASE_URL or let tests/pg.sh start one");
    return u;
}

/* Runs sql on url with a plain blocking connection (the test's own checks); the first value or NULL. */
static char *psql1(const char *url, const char *sql)
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

/* ---- calling a node on a loop ---- */

typedef struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int calls;
    json_t *out;
    node_error err;
} waiter;

typedef struct sql_run {
    node_call call;
    waiter *w;
    json_t *inputs;
    const node_type *t;
    const void *compiled;
    int rc;
    node_error start_err;
} sql_run;

static void on_done(node_call *call, json_t *out, const node_error *err)
{
    sql_run *r = (sql_run *)call;
    pthread_mutex_lock(&r->w->mu);
    r->w->calls++;
    if (out) {
        json_decref(r->w->out);
        r->w->out = out;
    } else {
        r->w->err = *err;
    }
    pthread_cond_broadcast(&r->w->cv);
    pthread_mutex_unlock(&r->w->mu);
}

static void start_on_loop(void *ud)
{
    sql_run *r = ud;
    r->rc = r->t->start(r->compiled, &r->call, &r->start_err);
    if (r->rc != 0)
        on_done(&r->call, NULL, &r->start_err);
}

static void wait_calls(waiter *w, int n, int timeout_ms)
{
    double end = util_now_ms() + timeout_ms;
    pthread_mutex_lock(&w->mu);
    while (w->calls < n && util_now_ms() < end) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20 * 1000000L;
        if (ts.tv_nsec >= 1000000000L)
            ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&w->cv, &w->mu, &ts);
    }
    pthread_mutex_unlock(&w->mu);
}

static ioloop *g_io;

static void loop_up(void)
{
    char err[128];
    g_io = ioloop_create(err, sizeof err);
    cr_assert_not_null(g_io, "%s", err);
}

static void loop_down(void)
{
    ioloop_destroy(g_io);
}

TestSuite(sql, .init = loop_up, .fini = loop_down);

/* A config (JSON text with "@URL@" standing for the server's URL) compiled; caller frees with t->free. */
static void *compile_cfg(const node_type *t, const char *cfg_text, const char *url, json_t **cfg_out)
{
    char text[4096];
    const char *at = strstr(cfg_text, "@URL@");
    if (at)
        snprintf(text, sizeof text, "%.*s%s%s", (int)(at - cfg_text), cfg_text, url, at + 5);
    else
        snprintf(text, sizeof text, "%s", cfg_text);
    json_t *cfg = parse(text);
    void *compiled = NULL;
    char err[400] = "";
    cr_assert_eq(t->compile(&test_env, cfg, &compiled, err, sizeof err), 0, "compile: %s", err);
    *cfg_out = cfg;
    return compiled;
}

/* Runs one call (inputs: config overlaid with extra) on g_io and waits; out or err in *w. */
static void call_once(const node_type *t, const void *compiled, json_t *cfg, const char *extra, waiter *w,
                      double deadline_ms)
{
    sql_run r = {.w = w, .t = t, .compiled = compiled};
    r.inputs = json_deep_copy(cfg);
    if (extra) {
        json_t *x = parse(extra);
        json_object_update(r.inputs, x);
        json_decref(x);
    }
    r.call = (node_call){.node_id = "q", .inputs = r.inputs, .io = g_io, .done = on_done, .deadline_ms = deadline_ms};
    int before = w->calls;
    cr_assert_eq(ioloop_call(g_io, start_on_loop, &r), 0);
    wait_calls(w, before + 1, 30000);
    cr_assert_eq(w->calls, before + 1, "done was not called once");
    json_decref(r.inputs);
}

static json_t *run_ok(const node_type *t, const void *compiled, json_t *cfg, const char *extra)
{
    waiter w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, NULL, {{0}, {0}}};
    call_once(t, compiled, cfg, extra, &w, 0);
    cr_assert_not_null(w.out, "failed: %s %s", w.err.code, w.err.message);
    return w.out;
}

static node_error run_err(const node_type *t, const void *compiled, json_t *cfg, const char *extra, double deadline)
{
    waiter w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, NULL, {{0}, {0}}};
    call_once(t, compiled, cfg, extra, &w, deadline);
    cr_assert_null(w.out, "expected a failure");
    return w.err;
}

static void assert_json(json_t *got, const char *want_text)
{
    json_t *want = parse(want_text);
    char *g = json_dumps(got, JSON_ENCODE_ANY | JSON_SORT_KEYS | JSON_COMPACT);
    cr_assert(json_equal(got, want), "got %s, want %s", g, want_text);
    free(g);
    json_decref(want);
}

/* ---- load ---- */

Test(sql, load_refuses_templates_other_databases_and_bad_keys)
{
    char err[400];
    const node_type *t = &node_sql_database, *a = &node_async_sql_database;
    cr_assert_eq(compile_only(t, "{\"connection_string\":\"postgresql://u:pw@127.0.0.1/db\",\"query\":\"SELECT * FROM "
                                 "t WHERE name = '{{ name }}'\"}",
                              err, sizeof err),
                 -1);
    cr_assert(strstr(err, "templates are not allowed in SQL text"), "%s", err);
    cr_assert_eq(compile_only(a, "{\"database_type\":\"mysql\",\"connection_string\":\"mysql://u:pw@h/db\",\"query\":"
                                 "\"SELECT 1\"}",
                              err, sizeof err),
                 -1);
    cr_assert(strstr(err, "database_type: MySQL databases are not supported"), "%s", err);
    cr_assert_eq(compile_only(t, "{\"connection_string\":\"sqlite:///x.db\",\"query\":\"SELECT 1\"}", err, sizeof err),
                 -1);
    cr_assert(strstr(err, "SQLite databases are not supported"), "%s", err);
    cr_assert_eq(compile_only(a, "{\"connection_string\":\"/var/x.db\",\"query\":\"SELECT 1\"}", err, sizeof err), -1);
    cr_assert_eq(compile_only(t, "{\"connection_string\":\"postgresql://u:secretpw@127.0.0.1:99999/db\",\"query\":"
                                 "\"SELECT 1\"}",
                              err, sizeof err),
                 -1);
    cr_assert(strstr(err, "port") && !strstr(err, "secretpw"), "%s", err);
    cr_assert_eq(compile_only(t, "{\"connection_string\":\"postgresql://u:pw@h/db\",\"query\":\"SELECT 1\","
                                 "\"timeout\":\"{{ t }}\"}",
                              err, sizeof err),
                 -1);
    cr_assert_eq(compile_only(t, "{\"connection_string\":\"postgresql://u:pw@h/db\",\"query\":\"SELECT 1\","
                                 "\"result_format\":\"xml\"}",
                              err, sizeof err),
                 -1);
    /* the SDK's QueryValidator is on by default for AsyncSQLDatabaseNode */
    cr_assert_eq(compile_only(a, "{\"connection_string\":\"postgresql://h/db\",\"query\":\"SELECT pg_sleep(1)\"}", err,
                              sizeof err),
                 -1);
    cr_assert(strstr(err, "validate_queries"), "%s", err);
    cr_assert_eq(compile_only(a, "{\"connection_string\":\"postgresql://h/db\",\"query\":\"DROP TABLE t\"}", err,
                              sizeof err),
                 -1);
    cr_assert_eq(compile_only(a, "{\"connection_string\":\"postgresql://h/db\",\"query\":\"DROP TABLE t\","
                                 "\"allow_admin\":true}",
                              err, sizeof err),
                 0, "%s", err);
    cr_assert_eq(compile_only(a, "{\"connection_string\":\"postgresql://h/db\",\"query\":\"SELECT 1\","
                                 "\"fetch_mode\":\"many\"}",
                              err, sizeof err),
                 -1);
    cr_assert(strstr(err, "fetch_size"), "%s", err);
}

Test(sql, connection_string_falls_back_to_database_url)
{
    char err[400];
    sql_pool_set_database_url(NULL);
    cr_assert_eq(compile_only(&node_sql_database, "{\"query\":\"SELECT 1\"}", err, sizeof err), -1);
    cr_assert(strstr(err, "database_url"), "%s", err);
    sql_pool_set_database_url(base_url());
    json_t *cfg;
    void *c = compile_cfg(&node_sql_database, "{\"query\":\"SELECT 41 + 1 AS n\"}", "", &cfg);
    json_t *out = run_ok(&node_sql_database, c, cfg, NULL);
    assert_json(json_object_get(out, "data"), "[{\"n\": 42}]");
    json_decref(out);
    node_sql_database.free(c);
    json_decref(cfg);
    sql_pool_set_database_url(NULL);
}

/* ---- values ---- */

static void value_is(Oid type, const char *text, int mode, const char *want)
{
    json_t *v = sql_value_json(type, text, (int)strlen(text), mode);
    cr_assert_not_null(v);
    assert_json(v, want);
    json_decref(v);
}

Test(sql, values_convert_as_the_sdk_serializes_them)
{
    value_is(23, "42", 0, "42");
    value_is(20, "-9007199254740993", 0, "-9007199254740993");
    value_is(701, "1.5", 0, "1.5");
    value_is(701, "NaN", 0, "\"NaN\"");
    value_is(1700, "12.50", 0, "12.5");
    value_is(16, "t", 0, "true");
    value_is(1114, "2024-01-02 03:04:05", 0, "\"2024-01-02T03:04:05\"");
    value_is(1114, "2024-01-02 03:04:05.12", 0, "\"2024-01-02T03:04:05.120000\"");
    value_is(1184, "2024-01-02 03:04:05+00", 0, "\"2024-01-02T03:04:05+00:00\"");
    value_is(1184, "2024-01-02 03:04:05.5+05:30", 0, "\"2024-01-02T03:04:05.500000+05:30\"");
    value_is(1114, "infinity", 0, "\"infinity\"");
    value_is(1082, "2024-01-02", 0, "\"2024-01-02\"");
    value_is(1186, "1 day 02:00:00.5", 0, "93600.5");
    value_is(1186, "-00:00:01", 0, "-1.0");
    value_is(1186, "1 mon -2 days", 0, "2419200.0");
    value_is(17, "\\x68656c6c6f", 0, "\"aGVsbG8=\"");
    value_is(3802, "{\"a\": [1, 2]}", SQL_JSON_PARSED, "{\"a\":[1,2]}");
    value_is(3802, "{\"a\": [1, 2]}", SQL_JSON_TEXT, "\"{\\\"a\\\": [1, 2]}\"");
    value_is(25, "plain", 0, "\"plain\"");
}

Test(sql, named_parameters_become_positional_outside_quotes_and_casts)
{
    json_t *p = parse("{\"id\": 1, \"name\": \"x\", \"unused\": 3}");
    const char *names[8];
    int n;
    char err[200];
    char *q = sql_named_to_positional(
        "SELECT ':id', \":id\", x::int, $$ :id $$ FROM t WHERE id = :id AND name = :name OR id = :id -- :nope",
        p, names, 8, &n, err, sizeof err);
    cr_assert_not_null(q, "%s", err);
    cr_assert_str_eq(q, "SELECT ':id', \":id\", x::int, $$ :id $$ FROM t WHERE id = $1 AND name = $2 OR id = $1 -- "
                        ":nope");
    cr_assert_eq(n, 2);
    cr_assert_str_eq(names[0], "id");
    cr_assert_str_eq(names[1], "name");
    free(q);
    cr_assert_null(sql_named_to_positional("SELECT :missing", p, names, 8, &n, err, sizeof err));
    cr_assert(strstr(err, ":missing"), "%s", err);
    json_decref(p);
}

/* ---- against the server ---- */

#define CFG_SYNC(q) "{\"connection_string\":\"@URL@\",\"query\":\"" q "\"}"

Test(sql, select_gives_the_sdk_outputs)
{
    json_t *cfg;
    void *c = compile_cfg(&node_sql_database,
                          CFG_SYNC("SELECT 1::int AS i, 2.5::numeric AS n, true AS b, 'x'::text AS s, NULL::int AS z, "
                                   "'{\\\"k\\\": 1}'::jsonb AS j, '2024-05-06 07:08:09'::timestamp AS ts"),
                          base_url(), &cfg);
    json_t *out = run_ok(&node_sql_database, c, cfg, NULL);
    assert_json(json_object_get(out, "data"),
                "[{\"i\":1,\"n\":2.5,\"b\":true,\"s\":\"x\",\"z\":null,\"j\":{\"k\":1},\"ts\":\"2024-05-06T07:08:09\"}]");
    assert_json(json_object_get(out, "row_count"), "1");
    assert_json(json_object_get(out, "columns"), "[\"i\",\"n\",\"b\",\"s\",\"z\",\"j\",\"ts\"]");
    cr_assert(json_is_real(json_object_get(out, "execution_time")));
    json_decref(out);
    out = run_ok(&node_sql_database, c, cfg, "{\"result_format\":\"list\"}");
    assert_json(json_object_get(out, "data"), "[[1,2.5,true,\"x\",null,{\"k\":1},\"2024-05-06T07:08:09\"]]");
    json_decref(out);
    node_sql_database.free(c);
    json_decref(cfg);
}

Test(sql, insert_with_parameters_stores_an_injection_attempt_as_data)
{
    free(psql1(base_url(), "DROP TABLE IF EXISTS t_inj; CREATE TABLE t_inj (id int, name text)"));
    json_t *cfg;
    void *c = compile_cfg(&node_sql_database, CFG_SYNC("INSERT INTO t_inj (id, name) VALUES ($1, $2)"), base_url(),
                          &cfg);
    const char *evil = "x'); DROP TABLE t_inj; --";
    json_t *out = run_ok(&node_sql_database, c, cfg, "{\"parameters\": [7, \"x'); DROP TABLE t_inj; --\"]}");
    assert_json(json_object_get(out, "row_count"), "1");
    assert_json(json_object_get(out, "data"), "[]");
    json_decref(out);
    char *name = psql1(base_url(), "SELECT name FROM t_inj WHERE id = 7");
    cr_assert_str_eq(name, evil);
    free(name);
    node_sql_database.free(c);
    json_decref(cfg);
    /* the dict form (the SDK's :name) binds the same way */
    c = compile_cfg(&node_sql_database, CFG_SYNC("SELECT count(*) AS n FROM t_inj WHERE name = :name"), base_url(),
                    &cfg);
    out = run_ok(&node_sql_database, c, cfg, "{\"parameters\": {\"name\": \"x'); DROP TABLE t_inj; --\"}}");
    assert_json(json_object_get(out, "data"), "[{\"n\": 1}]");
    json_decref(out);
    node_sql_database.free(c);
    json_decref(cfg);
}

Test(sql, async_node_gives_the_sdk_result_shape)
{
    free(psql1(base_url(), "DROP TABLE IF EXISTS t_async; CREATE TABLE t_async (id int, name text);"
                           "INSERT INTO t_async VALUES (1, 'a'), (2, 'b'), (3, 'c')"));
    json_t *cfg;
    void *c = compile_cfg(&node_async_sql_database,
                          "{\"connection_string\":\"@URL@\",\"query\":\"SELECT id, name FROM t_async WHERE id >= $1 "
                          "ORDER BY id\"}",
                          base_url(), &cfg);
    json_t *out = run_ok(&node_async_sql_database, c, cfg, "{\"params\": [2]}");
    assert_json(out, "{\"result\":{\"data\":[{\"id\":2,\"name\":\"b\"},{\"id\":3,\"name\":\"c\"}],\"row_count\":2,"
                     "\"query\":\"SELECT id, name FROM t_async WHERE id >= :p0 ORDER BY id\","
                     "\"database_type\":\"postgresql\",\"format\":\"dict\"}}");
    json_decref(out);
    out = run_ok(&node_async_sql_database, c, cfg, "{\"params\": [1], \"fetch_mode\": \"one\"}");
    assert_json(json_object_get(json_object_get(out, "result"), "data"), "{\"id\":1,\"name\":\"a\"}");
    json_decref(out);
    out = run_ok(&node_async_sql_database, c, cfg, "{\"params\": [1], \"result_format\": \"list\"}");
    assert_json(json_object_get(json_object_get(out, "result"), "columns"), "[\"id\",\"name\"]");
    assert_json(json_object_get(json_object_get(out, "result"), "data"), "[[1,\"a\"],[2,\"b\"],[3,\"c\"]]");
    json_decref(out);
    node_async_sql_database.free(c);
    json_decref(cfg);
    c = compile_cfg(&node_async_sql_database,
                    "{\"connection_string\":\"@URL@\",\"query\":\"UPDATE t_async SET name = $1 WHERE id < 3\"}",
                    base_url(), &cfg);
    out = run_ok(&node_async_sql_database, c, cfg, "{\"params\": [\"z\"]}");
    assert_json(json_object_get(json_object_get(out, "result"), "data"), "[{\"rows_affected\": 2}]");
    json_decref(out);
    node_async_sql_database.free(c);
    json_decref(cfg);
}

Test(sql, a_refused_statement_fails_with_its_sqlstate_and_no_password)
{
    char url[700];
    snprintf(url, sizeof url, "%s%spassword=hunter2secret", base_url(), strchr(base_url(), '?') ? "&" : "?");
    json_t *cfg;
    void *c = compile_cfg(&node_sql_database, CFG_SYNC("SELECT * FROM no_such_table"), url, &cfg);
    node_error e = run_err(&node_sql_database, c, cfg, NULL, 0);
    cr_assert_str_eq(e.code, "upstream_error");
    cr_assert(strstr(e.message, "42P01") && strstr(e.message, "no_such_table"), "%s", e.message);
    cr_assert(!strstr(e.message, "hunter2secret") && !strstr(e.message, "postgresql://"), "%s", e.message);
    node_sql_database.free(c);
    json_decref(cfg);
}

Test(sql, a_server_that_is_down_is_an_upstream_error)
{
    json_t *cfg;
    void *c = compile_cfg(&node_sql_database, CFG_SYNC("SELECT 1"), "postgresql://u:hunter2secret@127.0.0.1:1/db",
                          &cfg);
    node_error e = run_err(&node_sql_database, c, cfg, NULL, 0);
    cr_assert_str_eq(e.code, "upstream_error");
    cr_assert(strstr(e.message, "127.0.0.1:1/db") && !strstr(e.message, "hunter2secret"), "%s", e.message);
    node_sql_database.free(c);
    json_decref(cfg);
}

Test(sql, a_slow_query_past_its_timeout_fails_and_the_pool_goes_on)
{
    json_t *cfg;
    void *c = compile_cfg(&node_sql_database,
                          "{\"connection_string\":\"@URL@\",\"query\":\"SELECT pg_sleep($1)\",\"timeout\":0.5}",
                          base_url(), &cfg);
    double t0 = util_now_ms();
    node_error e = run_err(&node_sql_database, c, cfg, "{\"parameters\":[30]}", 0);
    cr_assert_str_eq(e.code, "upstream_error");
    cr_assert(strstr(e.message, "timeout"), "%s", e.message);
    cr_assert_lt(util_now_ms() - t0, 5000);
    json_t *out = run_ok(&node_sql_database, c, cfg, "{\"parameters\":[0]}");
    json_decref(out);
    /* the run's deadline first: "timeout" */
    e = run_err(&node_sql_database, c, cfg, "{\"parameters\":[30]}", util_now_ms() + 200);
    cr_assert_str_eq(e.code, "timeout");
    node_sql_database.free(c);
    json_decref(cfg);
}

static void count_open(void *ud)
{
    void **a = ud;
    *(int *)a[1] = sql_pool_open_count(g_io, a[0]);
}

Test(sql, fifty_concurrent_calls_share_one_loop_pool_of_at_most_four)
{
    json_t *cfg;
    void *c = compile_cfg(&node_sql_database, CFG_SYNC("SELECT $1::int AS v, pg_sleep(0.02)"), base_url(), &cfg);
    waiter w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, NULL, {{0}, {0}}};
    enum { N = 50 };
    sql_run *runs = calloc(N, sizeof *runs);
    for (int i = 0; i < N; i++) {
        char extra[64];
        snprintf(extra, sizeof extra, "{\"parameters\": [%d]}", i);
        runs[i] = (sql_run){.w = &w, .t = &node_sql_database, .compiled = c};
        runs[i].inputs = json_deep_copy(cfg);
        json_t *x = parse(extra);
        json_object_update(runs[i].inputs, x);
        json_decref(x);
        runs[i].call = (node_call){.node_id = "q", .inputs = runs[i].inputs, .io = g_io, .done = on_done};
        /* half start on the loop, half from this thread (the node posts itself there) */
        if (i % 2)
            cr_assert_eq(ioloop_post(g_io, start_on_loop, &runs[i]), 0);
        else
            cr_assert_eq(node_sql_database.start(c, &runs[i].call, &runs[i].start_err), 0);
    }
    wait_calls(&w, N, 30000);
    cr_assert_eq(w.calls, N, "%d of %d answered (%s)", w.calls, N, w.err.message);
    cr_assert_eq(w.err.code[0], '\0', "a call failed: %s", w.err.message);
    int open = -1;
    char err[200];
    sql_target *t = sql_target_new(base_url(), 60000, 2000, err, sizeof err); /* the node's: same key */
    void *args[2] = {t, &open};
    ioloop_call(g_io, count_open, args);
    sql_target_free(t);
    cr_assert(open >= 1 && open <= SQL_POOL_MAX, "%d connections", open);
    for (int i = 0; i < N; i++)
        json_decref(runs[i].inputs);
    free(runs);
    json_decref(w.out);
    node_sql_database.free(c);
    json_decref(cfg);
}

Test(sql, a_restarted_server_is_reconnected_to)
{
    char server[512], dir[64] = "/tmp/kailash-test-sqlsrv-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    pg_sh("up", dir, server, sizeof server);
    cr_assert(*server, "pg.sh up failed");
    json_t *cfg;
    void *c = compile_cfg(&node_sql_database, CFG_SYNC("SELECT 7 AS n"), server, &cfg);
    json_decref(run_ok(&node_sql_database, c, cfg, NULL));
    pg_sh("down", dir, NULL, 0);
    node_error e = run_err(&node_sql_database, c, cfg, NULL, 0);
    cr_assert_str_eq(e.code, "upstream_error");
    pg_sh("up", dir, server, sizeof server);
    json_t *out = run_ok(&node_sql_database, c, cfg, NULL);
    assert_json(json_object_get(out, "data"), "[{\"n\": 7}]");
    json_decref(out);
    /* and a restart while a connection sits idle in the pool */
    pg_sh("down", dir, NULL, 0);
    pg_sh("up", dir, server, sizeof server);
    out = run_ok(&node_sql_database, c, cfg, NULL);
    json_decref(out);
    node_sql_database.free(c);
    json_decref(cfg);
    pg_sh("clean", dir, NULL, 0);
}

static void cancel_on_loop(void *ud)
{
    sql_run *r = ud;
    cr_assert_not_null(r->call.cancel);
    r->call.cancel(&r->call);
}

Test(sql, cancel_aborts_a_running_statement)
{
    json_t *cfg;
    void *c = compile_cfg(&node_sql_database, CFG_SYNC("SELECT pg_sleep(30)"), base_url(), &cfg);
    waiter w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, NULL, {{0}, {0}}};
    sql_run r = {.w = &w, .t = &node_sql_database, .compiled = c};
    r.inputs = json_deep_copy(cfg);
    r.call = (node_call){.node_id = "q", .inputs = r.inputs, .io = g_io, .done = on_done};
    ioloop_call(g_io, start_on_loop, &r);
    usleep(200 * 1000);
    ioloop_call(g_io, cancel_on_loop, &r);
    cr_assert_eq(w.calls, 1);
    cr_assert_str_eq(w.err.code, "cancelled");
    node_error e = run_err(&node_sql_database, c, cfg, "{\"query\": \"SELECT 1\"}", 0);
    cr_assert_str_eq(e.code, "bad_request", "a query changed at run time: %s", e.message);
    json_decref(r.inputs);
    node_sql_database.free(c);
    json_decref(cfg);
}

/* fuzz_sql_text: bytes that are not UTF-8 (a SQL_ASCII database holds any) once made a value NULL,
 * which failed the whole run as out of memory; they become U+FFFD */
Test(sql, text_that_is_not_utf8_becomes_replacement_characters)
{
    static const char bad[] = "a\xff" "b\xc0\x80" "c";
    json_t *v = sql_value_json(25, bad, (int)sizeof bad - 1, 0);
    cr_assert_not_null(v);
    cr_assert_str_eq(json_string_value(v), "a\xef\xbf\xbd" "b\xef\xbf\xbd\xef\xbf\xbd" "c");
    json_decref(v);
    v = sql_value_json(1114, "2026-12-04 11\x01\xff", 15, 0);
    cr_assert_not_null(v, "a timestamp that does not parse stays text, made valid");
    json_decref(v);
}
