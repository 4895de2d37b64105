/* pg_conn: database_url, and libpq connections driven with deadlines.
 *
 * libpq's blocking calls wait as long as the kernel lets them: a server that stops answering (paused,
 * or behind a dropped route) would hang the writer past store_stop's deadline. So connecting and
 * running a statement use the asynchronous calls (PQconnectStartParams/PQconnectPoll,
 * PQsendQueryParams/PQconsumeInput) and poll() in slices of at most 100 ms, checking the deadline and
 * the caller's abort flag between slices. Only these threads' own connections go through here.
 *
 * The URL holds a password. libpq's parse errors may quote pieces of it, so they are replaced by a
 * fixed phrase; server and connection messages pass through pg_scrub, which masks the password if
 * it ever appears, and logs name the server by host:port/dbname only. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg_internal.h"

#define URL_FORMS                                                                                                      \
    "expected postgresql://[user[:password]@]host[:port]/dbname[?param=value] or a key=value conninfo string"

int pg_url_check(const char *url, char *describe, size_t dlen, char **password, char *err, size_t errlen)
{
    *password = NULL;
    if (!url || !*url)
        return util_err(err, errlen, "database_url: empty (%s)", URL_FORMS);
    char *msg = NULL;
    PQconninfoOption *opts = PQconninfoParse(url, &msg);
    PQfreemem(msg); /* may quote the URL: never shown */
    if (!opts)
        return util_err(err, errlen, "database_url: does not parse (%s)", URL_FORMS);
    const char *host = NULL, *hostaddr = NULL, *port = NULL, *db = NULL, *user = NULL;
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val || !*o->val)
            continue;
        if (!strcmp(o->keyword, "host"))
            host = o->val;
        else if (!strcmp(o->keyword, "hostaddr"))
            hostaddr = o->val;
        else if (!strcmp(o->keyword, "port"))
            port = o->val;
        else if (!strcmp(o->keyword, "dbname"))
            db = o->val;
        else if (!strcmp(o->keyword, "user"))
            user = o->val;
        else if (!strcmp(o->keyword, "password") && !(*password = strdup(o->val))) {
            PQconninfoFree(opts);
            return util_err(err, errlen, "database_url: out of memory");
        }
    }
    snprintf(describe, dlen, "%s:%s/%s",
             host       ? host
             : hostaddr ? hostaddr
                        : "localhost",
             port ? port : "5432",
             db     ? db
             : user ? user
                    : "(default)");
    PQconninfoFree(opts);
    return 0;
}

void pg_scrub(const char *msg, char *out, size_t outlen)
{
    const char *pw = pg_g.password;
    size_t pwlen = pw ? strlen(pw) : 0, o = 0;
    if (!outlen)
        return;
    for (const char *s = msg ? msg : ""; *s && o + 1 < outlen;) {
        if (pwlen >= 3 && !strncmp(s, pw, pwlen)) { /* shorter ones would mask ordinary words */
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

/* Waits until c's socket is readable (or writable with wr) for at most 100 ms. 1 ready, 0 not yet,
 * -1 past the deadline or aborted. */
static int pg_wait(PGconn *c, int wr, double deadline_ms, const atomic_int *abort)
{
    if (abort && atomic_load(abort))
        return -1;
    double cut = atomic_load(&pg_g.cut_ms);
    double left = (deadline_ms < cut ? deadline_ms : cut) - util_now_ms();
    if (left <= 0)
        return -1;
    struct pollfd p = {.fd = PQsocket(c), .events = (short)(wr ? POLLOUT : POLLIN)};
    if (p.fd < 0)
        return -1;
    int rc = poll(&p, 1, left > 100 ? 100 : (int)left + 1);
    return rc > 0 ? 1 : rc == 0 ? 0 : (errno == EINTR ? 0 : -1);
}

/* libpq prints server notices ("relation ... already exists, skipping") on stderr; the daemon's
 * stderr is its JSON log, so they are dropped. */
static void pg_notice_quiet(void *arg, const char *msg)
{
    (void)arg, (void)msg;
}

PGconn *pg_connect(double deadline_ms, const atomic_int *abort, char *err, size_t errlen)
{
    /* expand_dbname: the URL (or conninfo) fills in everything; the name is a fallback only */
    const char *const kw[] = {"dbname", "fallback_application_name", NULL};
    const char *const val[] = {pg_g.url, "kailashd", NULL};
    PGconn *c = PQconnectStartParams(kw, val, 1);
    if (!c) {
        util_err(err, errlen, "out of memory");
        return NULL;
    }
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    while (PQstatus(c) != CONNECTION_BAD && st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED) {
        int rc = pg_wait(c, st == PGRES_POLLING_WRITING, deadline_ms, abort);
        if (rc < 0) {
            util_err(err, errlen, "connection timed out");
            PQfinish(c);
            return NULL;
        }
        if (rc > 0)
            st = PQconnectPoll(c);
    }
    if (PQstatus(c) != CONNECTION_OK) {
        char msg[300];
        pg_scrub(PQerrorMessage(c), msg, sizeof msg);
        util_err(err, errlen, "%s", *msg ? msg : "connection failed");
        PQfinish(c);
        return NULL;
    }
    PQsetNoticeProcessor(c, pg_notice_quiet, NULL);
    if (PQsetnonblocking(c, 1) != 0) {
        util_err(err, errlen, "cannot make the connection non-blocking");
        PQfinish(c);
        return NULL;
    }
    return c;
}

static PGresult *pg_fail(PGconn *c, PGresult *last, const char *why, char *err, size_t errlen)
{
    char msg[300];
    pg_scrub(why ? why : PQerrorMessage(c), msg, sizeof msg);
    util_err(err, errlen, "%s", *msg ? msg : "connection lost");
    PQclear(last);
    return NULL;
}

PGresult *pg_exec(PGconn *c, const char *sql, int n, const char *const *params, double deadline_ms,
                  const atomic_int *abort, char *err, size_t errlen)
{
    int sent = params || n ? PQsendQueryParams(c, sql, n, NULL, params, NULL, NULL, 0) : PQsendQuery(c, sql);
    if (!sent)
        return pg_fail(c, NULL, NULL, err, errlen);
    int fl;
    while ((fl = PQflush(c)) == 1) { /* a large batch: the socket takes it in pieces */
        int rc = pg_wait(c, 1, deadline_ms, abort);
        if (rc < 0)
            return pg_fail(c, NULL, "timed out sending a statement", err, errlen);
        if (!PQconsumeInput(c)) /* the server may have answered (an error) while we wrote */
            return pg_fail(c, NULL, NULL, err, errlen);
    }
    if (fl < 0)
        return pg_fail(c, NULL, NULL, err, errlen);
    PGresult *last = NULL;
    for (;;) {
        while (PQisBusy(c)) {
            int rc = pg_wait(c, 0, deadline_ms, abort);
            if (rc < 0)
                return pg_fail(c, last, "timed out waiting for the server", err, errlen);
            if (rc > 0 && !PQconsumeInput(c))
                return pg_fail(c, last, NULL, err, errlen);
        }
        PGresult *r = PQgetResult(c);
        if (!r)
            break;
        PQclear(last);
        last = r;
    }
    if (!last || PQstatus(c) == CONNECTION_BAD)
        return pg_fail(c, last, NULL, err, errlen);
    return last;
}

int pg_ok(const PGresult *r)
{
    ExecStatusType st = PQresultStatus(r);
    return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
}

void pg_result_err(const PGresult *r, char *err, size_t errlen)
{
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    char clean[300];
    pg_scrub(msg ? msg : PQresultErrorMessage(r), clean, sizeof clean);
    if (state)
        util_err(err, errlen, "%s %s", state, clean);
    else
        util_err(err, errlen, "%s", *clean ? clean : "failed");
}
