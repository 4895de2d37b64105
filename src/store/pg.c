/* pg: the Postgres run store backend (store_postgres), used when database_url is set.
 *
 * start checks the URL, connects once and applies the migrations: a URL that does not parse or a
 * migration the server refuses is a start error, a server that does not answer is not (the writer
 * spools and migrates when it first connects). Then two kinds of threads take over, each with its
 * own connections: the writer (pg_write.c: batches, spool, replay) and the readers (pg_read.c), so
 * no caller ever waits on the network. Health is the writer's view: it is the one that knows
 * whether records reach the database. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kailash/log.h"
#include "pg_internal.h"

pg_state pg_g;

static pthread_mutex_t g_health_mu = PTHREAD_MUTEX_INITIALIZER;
static int g_up;        /* under g_health_mu */
static char g_why[200]; /* under g_health_mu: the current reason when down */

void pg_health_set(int up, const char *why)
{
    pthread_mutex_lock(&g_health_mu);
    if (up) {
        if (!g_up)
            log_msg(LOG_INFO, "store: postgres %s is up", pg_g.describe);
        g_up = 1;
        g_why[0] = '\0';
    } else {
        util_copy(g_why, sizeof g_why, why && *why ? why : "unreachable");
        if (g_up) /* the transition only: a lasting outage is one line (and /ready says why) */
            log_msg(LOG_WARN, "store: postgres %s is down (%s); records go to %s until it is back", pg_g.describe,
                    g_why, pg_g.spool);
        g_up = 0;
    }
    pthread_mutex_unlock(&g_health_mu);
}

static void pg_health(store_health *h)
{
    h->check = "postgres";
    pthread_mutex_lock(&g_health_mu);
    h->up = g_up;
    util_copy(h->why, sizeof h->why, g_up ? "" : g_why);
    pthread_mutex_unlock(&g_health_mu);
}

static void pg_free_state(void)
{
    free(pg_g.url);
    free(pg_g.password);
    memset(&pg_g, 0, sizeof pg_g);
}

static int pg_start(const kconfig *cfg, char *err, size_t errlen)
{
    char e[300];
    pg_free_state();
    atomic_store(&pg_g.cut_ms, 1e300);
    if (pg_url_check(cfg->database_url, pg_g.describe, sizeof pg_g.describe, &pg_g.password, err, errlen) != 0)
        return -1;
    if (!(pg_g.url = strdup(cfg->database_url))) {
        pg_free_state();
        return util_err(err, errlen, "out of memory");
    }
    const char *dir = cfg->data_dir && *cfg->data_dir ? cfg->data_dir : ".";
    if (strlen(dir) >= sizeof pg_g.data_dir) {
        pg_free_state();
        return util_err(err, errlen, "data_dir: longer than %zu bytes", sizeof pg_g.data_dir - 1);
    }
    util_copy(pg_g.data_dir, sizeof pg_g.data_dir, dir);
    snprintf(pg_g.spool, sizeof pg_g.spool, "%s/pg-spool.jsonl", dir);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) /* not fatal: the spool is needed only while down */
        log_msg(LOG_WARN, "store: cannot create data_dir %s (%s): the postgres spool cannot be written", dir,
                strerror(errno));
    pg_g.batch_max = cfg->store_batch_max > 0 ? cfg->store_batch_max : 1024;
    g_up = 1; /* so that a first "down" is logged */

    PGconn *c = pg_connect(util_now_ms() + PG_CONNECT_TIMEOUT_MS, NULL, e, sizeof e);
    if (c) {
        int fatal = 0;
        if (pg_migrate(c, &fatal, e, sizeof e) != 0) {
            PQfinish(c);
            c = NULL;
            if (fatal) {
                util_err(err, errlen, "postgres %s: %s", pg_g.describe, e);
                pg_free_state();
                return -1;
            }
        }
    }
    if (c) {
        g_up = 0; /* logs "up" */
        pg_health_set(1, NULL);
    } else {
        pg_health_set(0, e);
    }
    if (pg_writer_start(c, err, errlen) != 0) {
        pg_free_state();
        return -1;
    }
    if (pg_reader_start(err, errlen) != 0) {
        pg_writer_stop(util_now_ms());
        pg_free_state();
        return -1;
    }
    return 0;
}

static void pg_stop(double deadline_ms)
{
    pg_writer_stop(deadline_ms);
    atomic_store(&pg_g.stopping, 1);
    pg_reader_stop();
    pg_free_state();
}

const store_backend store_postgres = {
    .check = "postgres",
    .start = pg_start,
    .enqueue = pg_writer_enqueue,
    .get = pg_reader_get,
    .list = pg_reader_list,
    .stop = pg_stop,
    .health = pg_health,
};

int store_check_config(const kconfig *cfg, char *err, size_t errlen)
{
    if (!cfg->store_enabled || !cfg->database_url)
        return 0;
    char describe[200], *password = NULL;
    int rc = pg_url_check(cfg->database_url, describe, sizeof describe, &password, err, errlen);
    if (password) {
        explicit_bzero(password, strlen(password));
        free(password);
    }
    return rc;
}
