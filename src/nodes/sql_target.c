/* sql_target: a SQL node's connection string, compiled once at load (sql_pool.h).
 *
 * libpq parses it (PQconninfoParse): a postgresql:// URL or a key=value conninfo string. The SDK's
 * SQLAlchemy-style driver suffixes ("postgresql+asyncpg://", "postgresql+psycopg2://") are dropped
 * first, so an SDK export's string works unchanged. What the pool needs is kept apart: the host to
 * resolve (a name goes through the project's resolver; an address, a socket directory or an
 * explicit hostaddr does not), its port, and the "options" the connections send, which add kailashd's
 * session settings to the string's own: statement_timeout (the node's timeout, so the server ends a
 * statement the node gave up on even when the client's close goes unnoticed, e.g. in pg_sleep),
 * DateStyle ISO and IntervalStyle postgres (the text forms sql_value converts).
 *
 * The string holds a password: parse errors (libpq's may quote it) become a fixed phrase, messages
 * name the server as host:port/dbname, and sql_target_scrub masks the password wherever it appears. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kailash/sql_pool.h"
#include "kailash/util.h"
#include "sql_internal.h"

#define SQL_URL_FORMS "expected postgresql://[user[:password]@]host[:port]/dbname[?param=value] or key=value pairs"

/* url without a "+driver" after its scheme; caller frees. */
static char *sql_url_plain(const char *url)
{
    static const char *const schemes[] = {"postgresql+", "postgres+"};
    for (int i = 0; i < 2; i++) {
        size_t n = strlen(schemes[i]);
        const char *rest = strncmp(url, schemes[i], n) == 0 ? strstr(url, "://") : NULL;
        if (!rest)
            continue;
        char *out = malloc(n + strlen(rest) + 1);
        if (out)
            sprintf(out, "%.*s%s", (int)(n - 1), schemes[i], rest);
        return out;
    }
    return strdup(url);
}

static int sql_numeric(const char *host)
{
    unsigned char bin[16];
    return inet_pton(AF_INET, host, bin) == 1 || inet_pton(AF_INET6, host, bin) == 1;
}

/* The string's parsed values kailashd looks at (borrowed from libpq's option array). */
typedef struct sql_parts {
    const char *host, *hostaddr, *port, *db, *user, *password, *options;
} sql_parts;

static void sql_parts_read(PQconninfoOption *opts, sql_parts *p)
{
    memset(p, 0, sizeof *p);
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        const char *v = o->val && *o->val ? o->val : NULL;
        if (!strcmp(o->keyword, "host"))
            p->host = v;
        else if (!strcmp(o->keyword, "hostaddr"))
            p->hostaddr = v;
        else if (!strcmp(o->keyword, "port"))
            p->port = v;
        else if (!strcmp(o->keyword, "dbname"))
            p->db = v;
        else if (!strcmp(o->keyword, "user"))
            p->user = v;
        else if (!strcmp(o->keyword, "password"))
            p->password = v;
        else if (!strcmp(o->keyword, "options"))
            p->options = v;
    }
}

/* Fills t from p; -1 with err for what kailashd refuses. */
static int sql_target_fill(sql_target *t, const sql_parts *p, char *err, size_t errlen)
{
    if ((p->host && strchr(p->host, ',')) || (p->hostaddr && strchr(p->hostaddr, ',')) ||
        (p->port && strchr(p->port, ',')))
        return util_err(err, errlen, "connection_string: several hosts are not supported; name one server");
    char *end = NULL;
    long port = p->port ? strtol(p->port, &end, 10) : 5432;
    if ((p->port && *end) || port < 1 || port > 65535)
        return util_err(err, errlen, "connection_string: the port must be a number from 1 to 65535");
    if (p->host && strlen(p->host) >= sizeof t->host)
        return util_err(err, errlen, "connection_string: the host name is too long");
    snprintf(t->host, sizeof t->host, "%s", p->host ? p->host : "");
    t->port = port;
    t->resolve = p->host && p->host[0] != '/' && p->host[0] != '@' && !p->hostaddr && !sql_numeric(p->host);
    snprintf(t->describe, sizeof t->describe, "%.200s:%ld/%.64s",
             p->host       ? p->host
             : p->hostaddr ? p->hostaddr
                           : "localhost",
             port,
             p->db     ? p->db
             : p->user ? p->user
                       : "(default)");
    t->password = p->password ? strdup(p->password) : NULL;
    char opts[1024];
    int n = snprintf(opts, sizeof opts, "%s%s-c statement_timeout=%d -c DateStyle=ISO,MDY -c IntervalStyle=postgres",
                     p->options ? p->options : "", p->options ? " " : "", t->timeout_ms);
    if (n < 0 || (size_t)n >= sizeof opts)
        return util_err(err, errlen, "connection_string: its options are too long");
    t->options = strdup(opts);
    if ((p->password && !t->password) || !t->options)
        return util_err(err, errlen, "out of memory");
    return 0;
}

sql_target *sql_target_new(const char *url, int timeout_ms, int connect_timeout_ms, char *err, size_t errlen)
{
    if (!url || !*url) {
        util_err(err, errlen, "connection_string: empty (%s)", SQL_URL_FORMS);
        return NULL;
    }
    sql_target *t = calloc(1, sizeof *t);
    if (!t || !(t->url = sql_url_plain(url))) {
        util_err(err, errlen, "out of memory");
        sql_target_free(t);
        return NULL;
    }
    t->timeout_ms = timeout_ms > 0 ? timeout_ms : 0;
    t->connect_timeout_ms = connect_timeout_ms > 0 ? connect_timeout_ms : 10000;
    char *msg = NULL;
    PQconninfoOption *opts = PQconninfoParse(t->url, &msg);
    PQfreemem(msg); /* may quote the string: never shown */
    if (!opts) {
        util_err(err, errlen, "connection_string: does not parse (%s)", SQL_URL_FORMS);
        sql_target_free(t);
        return NULL;
    }
    sql_parts p;
    sql_parts_read(opts, &p);
    int rc = sql_target_fill(t, &p, err, errlen);
    PQconninfoFree(opts);
    if (rc == 0 && asprintf(&t->key, "%d\n%s", t->timeout_ms, t->url) < 0)
        rc = util_err(err, errlen, "out of memory"), t->key = NULL;
    if (rc != 0) {
        sql_target_free(t);
        return NULL;
    }
    return t;
}

sql_target *sql_target_dup(const sql_target *t)
{
    char err[64];
    return sql_target_new(t->url, t->timeout_ms, t->connect_timeout_ms, err, sizeof err);
}

void sql_target_free(sql_target *t)
{
    if (!t)
        return;
    free(t->url);
    free(t->options);
    free(t->key);
    if (t->password) {
        memset(t->password, 0, strlen(t->password));
        free(t->password);
    }
    free(t);
}

const char *sql_target_describe(const sql_target *t)
{
    return t->describe;
}

void sql_target_scrub(const sql_target *t, const char *msg, char *out, size_t outlen)
{
    const char *pw = t ? t->password : NULL;
    size_t pwlen = pw ? strlen(pw) : 0, o = 0;
    if (!outlen)
        return;
    for (const char *s = msg ? msg : ""; *s && o + 1 < outlen;) {
        if (pwlen && !strncmp(s, pw, pwlen)) {
            for (const char *m = "***"; *m && o + 1 < outlen; m++)
                out[o++] = *m;
            s += pwlen;
            continue;
        }
        char ch = (*s == '\n' || *s == '\r' || *s == '\t') ? ' ' : *s;
        s++;
        if (ch != ' ' || (o > 0 && out[o - 1] != ' ')) /* libpq's messages span lines: one line here */
            out[o++] = ch;
    }
    while (o > 0 && out[o - 1] == ' ')
        o--;
    out[o] = '\0';
}
