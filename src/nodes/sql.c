/* SQLDatabaseNode and AsyncSQLDatabaseNode: one PostgreSQL statement per call, on the I/O loop's
 * pool (sql_pool.h), with the SDK's config keys and outputs.
 *
 *   SQLDatabaseNode       connection_string, query, parameters, result_format (dict, list, raw),
 *                         timeout (kailashd's own: seconds, default 60); outputs data, row_count,
 *                         columns, execution_time (seconds), as kailash.nodes.data.sql returns them.
 *   AsyncSQLDatabaseNode  database_type (postgresql only), connection_string, query, params,
 *                         fetch_mode (all, one, many), fetch_size, result_format (dict, list),
 *                         timeout (seconds, default 60), validate_queries, allow_admin; output
 *                         result {data, row_count, query, database_type, format[, columns]}, as
 *                         kailash.nodes.data.async_sql returns it.
 *
 * The statement is fixed at load: a template in query is refused (values go in parameters, bound
 * as $1..$n and never spliced into the text), and so is a query or connection string that arrives
 * at run time different from the workflow file's. Parameters may be a list ($1..$n), a dict (the
 * SDK's :name placeholders, numbered here by first use; sql_value.c) or one value. They are sent as
 * text: strings as they are, numbers and booleans in their SQL spelling, null as NULL, an array as
 * a Postgres array literal, an object as its JSON.
 *
 * connection_string falls back to kailashd's database_url (sql_pool_set_database_url) when the node
 * gives none; secrets come in by {"$env": NAME}. Other database types the SDK knows (mysql, sqlite)
 * are refused at load, by database_type or by the string's scheme.
 *
 * Failures: a statement the server refuses fails the node with its SQLSTATE and message; a server
 * that cannot be reached, a connection lost, and the node's timeout are upstream_error; the run's
 * deadline is timeout. Either timer closes the statement's connection (the server's
 * statement_timeout, the node's timeout too, ends the statement there). No message holds the
 * connection string or its password. */
#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kailash/ioloop.h"
#include "kailash/node.h"
#include "kailash/template.h"
#include "kailash/util.h"
#include "sql_internal.h"

#define SQL_MAX_PARAMS 1000
#define SQL_DEFAULT_TIMEOUT_S 60.0
#define SQL_MAX_TIMEOUT_S 86400.0
#define SQL_GRACE_MS 1000.0 /* the client's timer after the server's statement_timeout */

enum { SQL_FMT_DICT, SQL_FMT_LIST };
enum { SQL_FETCH_ALL, SQL_FETCH_ONE, SQL_FETCH_MANY };

typedef struct sql_node {
    int async_sdk; /* AsyncSQLDatabaseNode's keys and outputs */
    sql_target *target;
    char *query;
    char *conn_config; /* the config's connection_string (NULL: database_url), to refuse another */
    double timeout_ms;
} sql_node;

/* ======================================================================== database_url */

static pthread_mutex_t g_url_mu = PTHREAD_MUTEX_INITIALIZER;
static char *g_database_url;

void sql_pool_set_database_url(const char *url)
{
    char *copy = url && *url ? strdup(url) : NULL;
    pthread_mutex_lock(&g_url_mu);
    free(g_database_url);
    g_database_url = copy;
    pthread_mutex_unlock(&g_url_mu);
}

/* ======================================================================== load */

static const char *const sql_keys[] = {"connection_string", "query", "parameters", "result_format", "timeout", NULL};
static const char *const sql_inputs[] = {"parameters", "result_format", NULL};
static const char *const sql_pinned[] = {"connection_string", "query", "timeout", NULL};
static const node_sdk_default sql_sdk_defaults[] = {
    {"pool_size", "5"},           {"max_overflow", "10"},        {"pool_timeout", "30"},
    {"pool_recycle", "3600"},     {"pool_pre_ping", "true"},     {"echo", "false"},
    {"connect_args", "null"},     {"user_context", "null"},      {"optimistic_locking", "false"},
    {"version_field", "\"version\""}, {"expected_version", "null"}, {"conflict_resolution", "\"retry\""},
    {"max_retries", "3"},         {NULL, NULL},
};

static const char *const asql_keys[] = {"database_type", "connection_string", "query",         "params",
                                        "fetch_mode",    "fetch_size",        "result_format", "timeout",
                                        "validate_queries", "allow_admin",    NULL};
static const char *const asql_inputs[] = {"params", "fetch_mode", "fetch_size", "result_format", NULL};
static const char *const asql_pinned[] = {"database_type", "connection_string", "query", "timeout",
                                          "validate_queries", "allow_admin", NULL};
static const node_sdk_default asql_sdk_defaults[] = {
    {"connection_name", "null"},
    {"config_file", "null"},
    {"host", "null"},
    {"port", "null"},
    {"database", "null"},
    {"user", "null"},
    {"password", "null"},
    {"pool_size", "10"},
    {"max_pool_size", "20"},
    {"user_context", "null"},
    {"transaction_mode", "\"auto\""},
    {"share_pool", "true"},
    {"enable_analytics", "true"},
    {"enable_adaptive_sizing", "true"},
    {"health_check_interval", "30"},
    {"min_pool_size", "5"},
    {"circuit_breaker_enabled", "true"},
    {"parameter_types", "null"},
    {"retry_config", "null"},
    {"max_retries", "3"},
    {"retry_delay", "1.0"},
    {"enable_optimistic_locking", "false"},
    {"version_field", "\"version\""},
    {"conflict_resolution", "\"fail_fast\""},
    {"version_retry_attempts", "3"},
    {NULL, NULL},
};

static void sql_node_free(void *p)
{
    sql_node *n = p;
    if (!n)
        return;
    sql_target_free(n->target);
    free(n->query);
    if (n->conn_config) {
        memset(n->conn_config, 0, strlen(n->conn_config));
        free(n->conn_config);
    }
    free(n);
}

/* A database the SDK knows and kailashd does not, by name or by the connection string's form. */
static int sql_refuse_other(const char *what, const char *key, char *err, size_t errlen)
{
    return util_err(err, errlen,
                    "config.%s: %s databases are not supported by kailashd's SQL nodes; only PostgreSQL "
                    "(database_type postgresql, a postgresql:// connection string)",
                    key, what);
}

/* The SDK's own detection (AsyncSQLDatabaseNode._validate_config): mysql... and sqlite forms. */
static const char *sql_string_kind(const char *s)
{
    size_t n = strlen(s);
    if (strncasecmp(s, "mysql", 5) == 0 || strncasecmp(s, "mariadb", 7) == 0)
        return "MySQL";
    if (strncasecmp(s, "sqlite", 6) == 0 || strcmp(s, ":memory:") == 0 || (n > 3 && !strcasecmp(s + n - 3, ".db")) ||
        (n > 7 && !strcasecmp(s + n - 7, ".sqlite")) || (n > 8 && !strcasecmp(s + n - 8, ".sqlite3")))
        return "SQLite";
    if (strstr(s, "://") && strncasecmp(s, "postgres", 8) != 0)
        return "non-PostgreSQL";
    return NULL;
}

/* The SDK's QueryValidator (validate_queries, allow_admin), as POSIX patterns. */
static int sql_validate_query(const char *q, int allow_admin, char *err, size_t errlen)
{
    static const char *const dangerous[] = {
        ";[[:space:]]*(SELECT|INSERT|UPDATE|DELETE|DROP|CREATE|ALTER|GRANT|REVOKE)",
        "--.*$",
        "/\\*.*\\*/",
        "\\bUNION\\b.*\\bSELECT\\b",
        "\\b(SLEEP|WAITFOR|PG_SLEEP)\\b",
        "\\b(LOAD_FILE|INTO[[:space:]]+OUTFILE|INTO[[:space:]]+DUMPFILE)\\b",
        "\\b(XP_CMDSHELL|EXEC[[:space:]]+MASTER)",
        NULL};
    static const char *const admin[] = {
        "\\b(CREATE|ALTER|DROP)[[:space:]]+([[:alnum:]_]+[[:space:]]+)*(TABLE|INDEX|VIEW|PROCEDURE|FUNCTION|TRIGGER)",
        "\\b(GRANT|REVOKE)\\b", "\\bTRUNCATE\\b", NULL};
    for (int set = 0; set < 2; set++) {
        for (const char *const *p = set ? admin : dangerous; *p && !(set && allow_admin); p++) {
            regex_t re;
            if (regcomp(&re, *p, REG_EXTENDED | REG_ICASE | REG_NEWLINE | REG_NOSUB) != 0)
                return util_err(err, errlen, "config.query: the query check could not be prepared");
            int hit = regexec(&re, q, 0, NULL, 0) == 0;
            regfree(&re);
            if (hit)
                return util_err(err, errlen,
                                "config.query: the SDK's query validation refuses it (%s %s); set "
                                "validate_queries to false%s to run it",
                                set ? "an administrative command:" : "a potentially dangerous pattern:", *p,
                                set ? " or allow_admin to true" : "");
        }
    }
    return 0;
}

/* timeout in seconds (a number, as the SDK's float) into *ms; v may be NULL (the default). */
static int sql_timeout_read(json_t *v, double *ms, char *msg, size_t msglen)
{
    if (!v || json_is_null(v)) {
        *ms = SQL_DEFAULT_TIMEOUT_S * 1000;
        return 0;
    }
    if (!json_is_number(v) || json_number_value(v) <= 0 || json_number_value(v) > SQL_MAX_TIMEOUT_S)
        return util_err(msg, msglen, "timeout: expected a number of seconds, more than 0 and at most %.0f",
                        SQL_MAX_TIMEOUT_S);
    *ms = json_number_value(v) * 1000;
    return 0;
}

static int sql_fmt_read(json_t *v, int async_sdk, int *fmt, char *msg, size_t msglen)
{
    const char *s = json_is_string(v) ? json_string_value(v) : v && !json_is_null(v) ? "" : "dict";
    if (!strcmp(s, "dict"))
        return *fmt = SQL_FMT_DICT, 0;
    if (!strcmp(s, "list") || (!async_sdk && !strcmp(s, "raw")))
        return *fmt = SQL_FMT_LIST, 0;
    if (async_sdk && !strcmp(s, "dataframe"))
        return util_err(msg, msglen, "result_format: 'dataframe' (pandas) is not in kailashd; expected dict or list");
    return util_err(msg, msglen, "result_format: expected %s", async_sdk ? "dict or list" : "dict, list or raw");
}

static int sql_fetch_read(json_t *mode, json_t *size, int *fetch, long *n, char *msg, size_t msglen)
{
    const char *s = json_is_string(mode) ? json_string_value(mode) : mode && !json_is_null(mode) ? "" : "all";
    *fetch = !strcasecmp(s, "all") ? SQL_FETCH_ALL : !strcasecmp(s, "one") ? SQL_FETCH_ONE
             : !strcasecmp(s, "many")                                       ? SQL_FETCH_MANY
                                                                            : -1;
    if (*fetch < 0)
        return util_err(msg, msglen, "fetch_mode: expected all, one or many");
    *n = 0;
    if (size && !json_is_null(size)) {
        if (!json_is_integer(size) || json_integer_value(size) < 0)
            return util_err(msg, msglen, "fetch_size: expected a whole number");
        *n = (long)json_integer_value(size);
    }
    if (*fetch == SQL_FETCH_MANY && *n == 0)
        return util_err(msg, msglen, "fetch_size: required for fetch_mode many");
    return 0;
}

/* Checks the keys whose literal values can be checked at load (templates are checked at run). */
static int sql_check_literals(json_t *config, int async_sdk, char *err, size_t errlen)
{
    char msg[200];
    json_t *fmt = json_object_get(config, "result_format");
    int f;
    if (fmt && !tmpl_value_has_expr(fmt) && sql_fmt_read(fmt, async_sdk, &f, msg, sizeof msg) != 0)
        return util_err(err, errlen, "config.%s", msg);
    if (!async_sdk)
        return 0;
    json_t *mode = json_object_get(config, "fetch_mode"), *size = json_object_get(config, "fetch_size");
    long n;
    if (!(mode && tmpl_value_has_expr(mode)) && !(size && tmpl_value_has_expr(size)) &&
        sql_fetch_read(mode, size, &f, &n, msg, sizeof msg) != 0)
        return util_err(err, errlen, "config.%s", msg);
    json_t *vq = json_object_get(config, "validate_queries"), *aa = json_object_get(config, "allow_admin");
    if ((vq && !json_is_boolean(vq)) || (aa && !json_is_boolean(aa)))
        return util_err(err, errlen, "config.%s: expected true or false", vq && !json_is_boolean(vq) ? "validate_queries" : "allow_admin");
    if (!vq || json_is_true(vq))
        return sql_validate_query(json_string_value(json_object_get(config, "query")), json_is_true(aa), err, errlen);
    return 0;
}

/* database_type (AsyncSQLDatabaseNode) and the string's form: PostgreSQL or a clear refusal. */
static int sql_check_database(json_t *config, const char *url, int async_sdk, char *err, size_t errlen)
{
    json_t *dt = json_object_get(config, "database_type");
    if (async_sdk && dt && !json_is_null(dt)) {
        const char *s = json_is_string(dt) ? json_string_value(dt) : "";
        if (!strcasecmp(s, "mysql") || !strcasecmp(s, "sqlite"))
            return sql_refuse_other(!strcasecmp(s, "mysql") ? "MySQL" : "SQLite", "database_type", err, errlen);
        if (strcasecmp(s, "postgresql") != 0)
            return util_err(err, errlen, "config.database_type: expected postgresql (the SDK's mysql and sqlite are "
                                         "not supported by kailashd)");
    }
    const char *kind = url ? sql_string_kind(url) : NULL;
    return kind ? sql_refuse_other(kind, "connection_string", err, errlen) : 0;
}

/* The connection string: the config's (no template), or kailashd's database_url; caller frees. */
static char *sql_conn_string(json_t *config, char *err, size_t errlen)
{
    json_t *cs = json_object_get(config, "connection_string");
    if (cs && !json_is_null(cs)) {
        if (!json_is_string(cs) || tmpl_string_has_expr(json_string_value(cs))) {
            util_err(err, errlen, "config.connection_string: expected a string written out in the workflow file or "
                                  "{\"$env\": \"NAME\"} (not a template)");
            return NULL;
        }
        return strdup(json_string_value(cs));
    }
    pthread_mutex_lock(&g_url_mu);
    char *url = g_database_url ? strdup(g_database_url) : NULL;
    pthread_mutex_unlock(&g_url_mu);
    if (!url)
        util_err(err, errlen, "config.connection_string: required (kailashd has no database_url to fall back on)");
    return url;
}

static int sql_query_check(json_t *config, char *err, size_t errlen)
{
    json_t *q = json_object_get(config, "query");
    if (!json_is_string(q) || !*json_string_value(q))
        return util_err(err, errlen, "config.query: required, the SQL statement ($1..$n for parameters)");
    if (tmpl_string_has_expr(json_string_value(q)))
        return util_err(err, errlen,
                        "config.query: templates are not allowed in SQL text (they would splice values into the "
                        "statement); write $1..$n and give the values in %s",
                        "parameters");
    return 0;
}

static int sql_compile_as(int async_sdk, const node_env *env, json_t *config, void **compiled, char *err,
                          size_t errlen)
{
    *compiled = NULL;
    char msg[200];
    double timeout_ms = 0;
    json_t *to = json_object_get(config, "timeout");
    if (to && tmpl_value_has_expr(to))
        return util_err(err, errlen, "config.timeout: must be written out in the workflow file, not a template");
    if (sql_query_check(config, err, errlen) != 0)
        return -1;
    char *url = sql_conn_string(config, err, errlen);
    if (!url)
        return -1;
    sql_node *n = calloc(1, sizeof *n);
    if (!n) {
        free(url);
        return util_err(err, errlen, "out of memory");
    }
    n->async_sdk = async_sdk;
    if (sql_timeout_read(to, &timeout_ms, msg, sizeof msg) != 0) {
        util_err(err, errlen, "config.%s", msg);
        goto fail;
    }
    n->timeout_ms = timeout_ms;
    if (sql_check_database(config, url, async_sdk, err, errlen) != 0 ||
        sql_check_literals(config, async_sdk, err, errlen) != 0)
        goto fail;
    n->target = sql_target_new(url, (int)timeout_ms, env ? env->connect_timeout_ms : 0, err, errlen);
    n->query = strdup(json_string_value(json_object_get(config, "query")));
    if (json_is_string(json_object_get(config, "connection_string")))
        n->conn_config = strdup(url);
    if (!n->target || !n->query)
        goto fail;
    memset(url, 0, strlen(url));
    free(url);
    *compiled = n;
    return 0;
fail:
    memset(url, 0, strlen(url));
    free(url);
    sql_node_free(n);
    return -1;
}

static int sql_compile(const node_env *env, json_t *config, void **compiled, char *err, size_t errlen)
{
    return sql_compile_as(0, env, config, compiled, err, errlen);
}

static int asql_compile(const node_env *env, json_t *config, void **compiled, char *err, size_t errlen)
{
    return sql_compile_as(1, env, config, compiled, err, errlen);
}

static int sql_has_output(const void *compiled, const char *port)
{
    (void)compiled;
    return !strcmp(port, "data") || !strcmp(port, "row_count") || !strcmp(port, "columns") ||
           !strcmp(port, "execution_time");
}

static int asql_has_output(const void *compiled, const char *port)
{
    (void)compiled;
    return !strcmp(port, "result");
}

/* ======================================================================== one call */

typedef struct sql_call {
    node_call *call;
    const sql_node *n;
    ioloop *io;
    sql_query *q;
    io_timer timer;
    int timer_is_deadline; /* the timer is the run's deadline, not the node's timeout */
    char *sql;             /* what is sent */
    char *echo;            /* AsyncSQLDatabaseNode's result.query */
    char **values;
    int nvalues;
    int fmt, fetch;
    long fetch_size;
    double t0;
} sql_call;

static void sql_call_free(sql_call *c)
{
    for (int i = 0; i < c->nvalues; i++)
        free(c->values[i]);
    free(c->values);
    free(c->sql);
    free(c->echo);
    free(c);
}

/* Appends v as an element of a Postgres array literal. */
static int sql_array_elem(buf *b, json_t *v);

static int sql_array_literal(buf *b, json_t *a)
{
    size_t i;
    json_t *e;
    if (buf_append(b, "{", 1) != 0)
        return -1;
    json_array_foreach(a, i, e)
    {
        if ((i && buf_append(b, ",", 1) != 0) || sql_array_elem(b, e) != 0)
            return -1;
    }
    return buf_append(b, "}", 1);
}

static int sql_array_elem(buf *b, json_t *v)
{
    char num[32];
    if (json_is_null(v))
        return buf_append(b, "NULL", 4);
    if (json_is_array(v))
        return sql_array_literal(b, v);
    if (json_is_integer(v) || json_is_real(v) || json_is_boolean(v)) {
        int n = json_is_integer(v) ? snprintf(num, sizeof num, "%lld", (long long)json_integer_value(v))
                : json_is_real(v)  ? snprintf(num, sizeof num, "%.17g", json_real_value(v))
                                   : snprintf(num, sizeof num, "%s", json_is_true(v) ? "true" : "false");
        return buf_append(b, num, (size_t)n);
    }
    char *s = json_is_string(v) ? strdup(json_string_value(v)) : json_dumps(v, JSON_COMPACT);
    int rc = s ? buf_append(b, "\"", 1) : -1;
    for (const char *p = s; rc == 0 && *p; p++)
        rc = (*p == '"' || *p == '\\' ? buf_append(b, "\\", 1) : 0) || buf_append(b, p, 1);
    rc = rc == 0 ? buf_append(b, "\"", 1) : -1;
    free(s);
    return rc;
}

/* One parameter's text (NULL for SQL NULL in *out); -1 with err. */
static int sql_param_text(json_t *v, int i, char **out, node_error *err)
{
    char num[32];
    *out = NULL;
    if (json_is_null(v))
        return 0;
    if (json_is_string(v)) {
        if (strlen(json_string_value(v)) != json_string_length(v))
            return node_fail(err, "bad_request", "parameters[%d]: a NUL character cannot be sent to PostgreSQL", i);
        *out = strdup(json_string_value(v));
    } else if (json_is_integer(v)) {
        snprintf(num, sizeof num, "%lld", (long long)json_integer_value(v));
        *out = strdup(num);
    } else if (json_is_real(v)) {
        snprintf(num, sizeof num, "%.17g", json_real_value(v));
        *out = strdup(num);
    } else if (json_is_boolean(v)) {
        *out = strdup(json_is_true(v) ? "true" : "false");
    } else if (json_is_array(v)) {
        buf b = {0};
        if (sql_array_literal(&b, v) != 0 || buf_append(&b, "", 1) != 0) {
            buf_free(&b);
            return node_fail(err, "internal", "out of memory");
        }
        *out = b.data;
    } else {
        *out = json_dumps(v, JSON_COMPACT);
    }
    return *out ? 0 : node_fail(err, "internal", "out of memory");
}

/* The SDK's result.query for list parameters: $N rewritten to :p<N-1> (_convert_to_named_parameters). */
static char *sql_sdk_echo(const char *q, int positional)
{
    buf b = {0};
    for (const char *p = q; *p;) {
        if (positional && p[0] == '$' && p[1] >= '0' && p[1] <= '9') {
            char *end;
            long v = strtol(p + 1, &end, 10);
            char ph[24];
            int n = snprintf(ph, sizeof ph, ":p%ld", v - 1);
            buf_append(&b, ph, (size_t)n);
            p = end;
        } else {
            buf_append(&b, p++, 1);
        }
    }
    buf_append(&b, "", 1);
    return b.data;
}

/* The statement and its values from the parameters input (a list, a dict, one value, or none). */
static int sql_call_params(sql_call *c, json_t *params, node_error *err)
{
    const char *names[SQL_MAX_PARAMS];
    json_t *list = NULL;
    int n = 0, named = 0;
    c->echo = sql_sdk_echo(c->n->query, params && !json_is_null(params) && !json_is_object(params));
    if (json_is_object(params) && json_object_size(params) > 0) {
        char msg[200];
        c->sql = sql_named_to_positional(c->n->query, params, names, SQL_MAX_PARAMS, &n, msg, sizeof msg);
        if (!c->sql)
            return node_fail(err, "bad_request", "%s", msg);
        named = 1;
    } else {
        c->sql = strdup(c->n->query);
        if (json_is_array(params))
            list = params;
        n = json_is_array(params) ? (int)json_array_size(params)
            : params && !json_is_null(params) && !json_is_object(params) ? 1
                                                                          : 0;
    }
    if (!c->sql || !c->echo)
        return node_fail(err, "internal", "out of memory");
    if (n > SQL_MAX_PARAMS)
        return node_fail(err, "bad_request", "parameters: more than %d values", SQL_MAX_PARAMS);
    c->values = calloc((size_t)n + 1, sizeof *c->values);
    if (!c->values)
        return node_fail(err, "internal", "out of memory");
    for (int i = 0; i < n; i++, c->nvalues++) {
        json_t *v = list ? json_array_get(list, (size_t)i) : named ? json_object_get(params, names[i]) : params;
        if (sql_param_text(v, i, &c->values[i], err) != 0)
            return -1;
    }
    return 0;
}

/* A key fixed at load that arrives changed (a connection into it): refused. */
static int sql_fixed(json_t *in, const char *key, const char *fixed, node_error *err)
{
    json_t *v = json_object_get(in, key);
    if (!v || json_is_null(v) || (fixed && json_is_string(v) && strcmp(json_string_value(v), fixed) == 0))
        return 0;
    return node_fail(err, "bad_request", "%s: fixed by the workflow file", key);
}

static int sql_call_read(sql_call *c, json_t *in, node_error *err)
{
    const sql_node *n = c->n;
    char msg[200];
    if (sql_fixed(in, "query", n->query, err) != 0 || sql_fixed(in, "connection_string", n->conn_config, err) != 0)
        return -1;
    if (sql_fmt_read(json_object_get(in, "result_format"), n->async_sdk, &c->fmt, msg, sizeof msg) != 0 ||
        (n->async_sdk && sql_fetch_read(json_object_get(in, "fetch_mode"), json_object_get(in, "fetch_size"),
                                        &c->fetch, &c->fetch_size, msg, sizeof msg) != 0))
        return node_fail(err, "internal", "%s", msg);
    return sql_call_params(c, json_object_get(in, n->async_sdk ? "params" : "parameters"), err);
}

/* ---- outputs ---- */

static json_t *sql_row(const PGresult *r, int row, int fmt, int json_mode)
{
    int nf = PQnfields(r);
    json_t *o = fmt == SQL_FMT_DICT ? json_object() : json_array();
    for (int f = 0; o && f < nf; f++) {
        json_t *v = PQgetisnull(r, row, f) ? json_null()
                                           : sql_value_json(PQftype(r, f), PQgetvalue(r, row, f),
                                                            PQgetlength(r, row, f), json_mode);
        if (!v || (fmt == SQL_FMT_DICT ? json_object_set_new(o, PQfname(r, f), v) : json_array_append_new(o, v))) {
            json_decref(o);
            return NULL;
        }
    }
    return o;
}

static json_t *sql_rows(const PGresult *r, int fmt, int json_mode, int limit)
{
    json_t *rows = json_array();
    int nt = PQntuples(r);
    for (int i = 0; rows && i < nt && (limit <= 0 || i < limit); i++)
        if (json_array_append_new(rows, sql_row(r, i, fmt, json_mode)) != 0) {
            json_decref(rows);
            return NULL;
        }
    return rows;
}

static json_t *sql_columns(const PGresult *r)
{
    json_t *cols = json_array();
    for (int f = 0; cols && f < PQnfields(r); f++)
        json_array_append_new(cols, json_string(PQfname(r, f)));
    return cols;
}

static long long sql_affected(const PGresult *r)
{
    const char *s = PQcmdTuples((PGresult *)r);
    return *s ? atoll(s) : 0;
}

/* SQLDatabaseNode's outputs. */
static json_t *sql_outputs(const sql_call *c, const PGresult *r)
{
    int tuples = PQresultStatus(r) == PGRES_TUPLES_OK;
    json_t *data = tuples ? sql_rows(r, c->fmt, SQL_JSON_PARSED, 0) : json_array();
    json_t *cols = tuples ? sql_columns(r) : json_array();
    return json_pack("{s:o*,s:I,s:o*,s:f}", "data", data, "row_count",
                     (json_int_t)(tuples ? PQntuples(r) : sql_affected(r)), "columns", cols, "execution_time",
                     (util_now_ms() - c->t0) / 1000.0);
}

/* The SDK's PostgreSQLAdapter.execute: a statement that names INSERT, UPDATE or DELETE and neither
 * SELECT nor RETURNING is run for its count. */
static int asql_is_dml(const char *q)
{
    char *up = strdup(q);
    if (!up)
        return 0;
    for (char *p = up; *p; p++)
        *p = (char)((*p >= 'a' && *p <= 'z') ? *p - 32 : *p);
    int dml = (strstr(up, "UPDATE") || strstr(up, "DELETE") || strstr(up, "INSERT")) && !strstr(up, "SELECT") &&
              !strstr(up, "RETURNING");
    free(up);
    return dml;
}

/* AsyncSQLDatabaseNode's data and row_count, by fetch mode. */
static json_t *asql_data(const sql_call *c, const PGresult *r, json_int_t *count)
{
    if (c->fetch == SQL_FETCH_ALL && asql_is_dml(c->n->query)) {
        *count = 1;
        return json_pack("[{s:I}]", "rows_affected", (json_int_t)sql_affected(r));
    }
    int nt = PQresultStatus(r) == PGRES_TUPLES_OK ? PQntuples(r) : 0;
    if (c->fetch == SQL_FETCH_ONE) {
        *count = nt > 0;
        return nt > 0 ? sql_row(r, 0, c->fmt, SQL_JSON_TEXT) : json_array();
    }
    json_t *rows = nt > 0 ? sql_rows(r, c->fmt, SQL_JSON_TEXT, c->fetch == SQL_FETCH_MANY ? (int)c->fetch_size : 0)
                          : json_array();
    *count = rows ? (json_int_t)json_array_size(rows) : 0;
    return rows;
}

static json_t *asql_outputs(const sql_call *c, const PGresult *r)
{
    json_int_t count = 0;
    json_t *data = asql_data(c, r, &count);
    json_t *res = json_pack("{s:o*,s:I,s:s,s:s,s:s}", "data", data, "row_count", count, "query", c->echo,
                            "database_type", "postgresql", "format", c->fmt == SQL_FMT_LIST ? "list" : "dict");
    if (res && c->fmt == SQL_FMT_LIST && count > 0 && PQresultStatus(r) == PGRES_TUPLES_OK &&
        !(c->fetch == SQL_FETCH_ALL && asql_is_dml(c->n->query)))
        json_object_set_new(res, "columns", sql_columns(r));
    return res ? json_pack("{s:o}", "result", res) : NULL;
}

/* ---- completion ---- */

static void sql_call_finish(sql_call *c, json_t *out, const node_error *err)
{
    ioloop_timer_stop(c->io, &c->timer);
    c->call->cancel = NULL;
    c->call->node_data = NULL;
    node_call *call = c->call;
    sql_call_free(c);
    node_error oom;
    if (!out && !err)
        node_fail(&oom, "internal", "out of memory");
    call->done(call, out, out ? NULL : err ? err : &oom);
}

static void sql_on_result(void *ud, PGresult *res, const sql_failure *f)
{
    sql_call *c = ud;
    c->q = NULL;
    node_error e;
    if (res) {
        json_t *out = c->n->async_sdk ? asql_outputs(c, res) : sql_outputs(c, res);
        PQclear(res);
        sql_call_finish(c, out, NULL);
        return;
    }
    if (f->kind == SQL_FAIL_QUERY && !strcmp(f->sqlstate, "57014"))
        node_fail(&e, "upstream_error", "the query ran past the node's timeout of %g s (SQLSTATE 57014: %s)",
                  c->n->timeout_ms / 1000, f->message);
    else if (f->kind == SQL_FAIL_QUERY)
        node_fail(&e, "upstream_error", "Database error: SQLSTATE %s: %s", f->sqlstate[0] ? f->sqlstate : "?????",
                  f->message);
    else
        node_fail(&e, f->kind == SQL_FAIL_STOP ? "internal" : "upstream_error", "%s", f->message);
    sql_call_finish(c, NULL, &e);
}

static void sql_on_timer(io_timer *t)
{
    sql_call *c = t->ud;
    if (c->q)
        sql_pool_cancel(c->q);
    c->q = NULL;
    node_error e;
    if (c->timer_is_deadline)
        node_fail(&e, "timeout", "the run's deadline passed while waiting for PostgreSQL");
    else
        node_fail(&e, "upstream_error", "the query ran past the node's timeout of %g s", c->n->timeout_ms / 1000);
    sql_call_finish(c, NULL, &e);
}

static void sql_on_cancel(node_call *call)
{
    sql_call *c = call->node_data;
    if (c->q)
        sql_pool_cancel(c->q);
    c->q = NULL;
    node_error e;
    node_fail(&e, "cancelled", "cancelled");
    sql_call_finish(c, NULL, &e);
}

/* On c->io: the statement goes to the pool, the timer starts. */
static int sql_call_submit(sql_call *c, node_error *err)
{
    c->q = sql_pool_query(c->io, c->n->target, c->sql, c->nvalues, (const char *const *)c->values, sql_on_result, c);
    if (!c->q)
        return node_fail(err, "internal", "out of memory");
    double now = util_now_ms(), due = now + c->n->timeout_ms + SQL_GRACE_MS;
    c->timer_is_deadline = c->call->deadline_ms > 0 && c->call->deadline_ms < due;
    if (c->timer_is_deadline)
        due = c->call->deadline_ms;
    ioloop_timer_start(c->io, &c->timer, due - now);
    c->call->node_data = c;
    c->call->cancel = sql_on_cancel;
    return 0;
}

static void sql_call_posted(void *ud)
{
    sql_call *c = ud;
    node_error e;
    if (sql_call_submit(c, &e) != 0)
        sql_call_finish(c, NULL, &e);
}

static int sql_start(const void *compiled, node_call *call, node_error *err)
{
    if (!call->io)
        return node_fail(err, "internal", "SQL nodes run on an I/O loop");
    sql_call *c = calloc(1, sizeof *c);
    if (!c)
        return node_fail(err, "internal", "out of memory");
    c->call = call;
    c->n = compiled;
    c->io = call->io;
    c->t0 = util_now_ms();
    ioloop_timer_init(&c->timer, sql_on_timer, c);
    if (sql_call_read(c, call->inputs, err) != 0)
        goto fail;
    if (ioloop_current() == call->io) {
        if (sql_call_submit(c, err) != 0)
            goto fail;
        return 0;
    }
    if (ioloop_post(call->io, sql_call_posted, c) == 0)
        return 0;
    node_fail(err, "internal", "the I/O loop is stopping");
fail:
    sql_call_free(c);
    return -1;
}

const node_type node_sql_database = {
    .name = "SQLDatabaseNode",
    .config_keys = sql_keys,
    .sdk_defaults = sql_sdk_defaults,
    .input_ports = sql_inputs,
    .pinned_keys = sql_pinned,
    .compile = sql_compile,
    .has_output = sql_has_output,
    .start = sql_start,
    .free = sql_node_free,
};

const node_type node_async_sql_database = {
    .name = "AsyncSQLDatabaseNode",
    .config_keys = asql_keys,
    .sdk_defaults = asql_sdk_defaults,
    .input_ports = asql_inputs,
    .pinned_keys = asql_pinned,
    .compile = asql_compile,
    .has_output = asql_has_output,
    .start = sql_start,
    .free = sql_node_free,
};
