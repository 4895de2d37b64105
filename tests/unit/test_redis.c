/* redis: the per-loop connections, deadlines, breaker, handshake and scripts (src/redis/) against a
 * real redis-server (Debian's /usr/bin/redis-server) that each test starts itself on a free loopback
 * port (or a unix socket) and kills by PID at the end; SIGSTOP makes it a server that accepts but
 * never answers. Loops come from engine_start; commands are sent from a loop thread through
 * ioloop_call, and the test thread waits for their callbacks on a condition variable. Timing bounds
 * are generous deadlines only. Log lines are read from a file that stderr is sent to. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../src/redis/redis_internal.h"
#include "kailash/engine.h"
#include "kailash/ioloop.h"
#include "kailash/redis.h"
#include "kailash/util.h"
#include "test_config_dir.h"

/* ---- the server ---- */

typedef struct rsrv {
    pid_t pid;
    int port;       /* 0: unix socket only */
    char sock[108]; /* "" : TCP */
} rsrv;

static rsrv g_srv;

/* A port nothing listens on; with held, the socket bound to it stays open (not listening: a
 * connection to it is refused) so that no other test's server takes it meanwhile. */
static int free_port_held(int *held)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
    cr_assert(getsockname(fd, (struct sockaddr *)&a, &alen) == 0);
    if (held)
        *held = fd;
    else
        close(fd);
    return ntohs(a.sin_port);
}

static int free_port(void)
{
    return free_port_held(NULL);
}

static int srv_accepts(const rsrv *s)
{
    int fd, ok;
    if (s->sock[0]) {
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        snprintf(a.sun_path, sizeof a.sun_path, "%s", s->sock);
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    } else {
        struct sockaddr_in a = {
            .sin_family = AF_INET, .sin_port = htons((uint16_t)s->port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        fd = socket(AF_INET, SOCK_STREAM, 0);
        ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    }
    close(fd);
    return ok;
}

/* Starts redis-server on s->port (or s->sock) with extra args (NULL-terminated), and waits until
 * it accepts connections. */
static void srv_start(rsrv *s, ...)
{
    const char *argv[32];
    int n = 0;
    char port[16];
    snprintf(port, sizeof port, "%d", s->port);
    argv[n++] = "redis-server";
    argv[n++] = "--port";
    argv[n++] = port;
    argv[n++] = "--bind";
    argv[n++] = "127.0.0.1";
    argv[n++] = "--save";
    argv[n++] = "";
    argv[n++] = "--appendonly";
    argv[n++] = "no";
    argv[n++] = "--daemonize";
    argv[n++] = "no";
    if (s->sock[0]) {
        argv[n++] = "--unixsocket";
        argv[n++] = s->sock;
    }
    va_list ap;
    va_start(ap, s);
    const char *a;
    while ((a = va_arg(ap, const char *)) && n < 30)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlives a test that crashed */
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
        execv("/usr/bin/redis-server", (char *const *)argv);
        _exit(127);
    }
    s->pid = pid;
    double end = util_now_ms() + 10000;
    while (!srv_accepts(s)) {
        cr_assert(util_now_ms() < end, "redis-server did not start");
        usleep(20 * 1000);
    }
}

static void srv_kill(rsrv *s)
{
    if (s->pid <= 0)
        return;
    kill(s->pid, SIGCONT);
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    s->pid = 0;
}

/* ---- the engine, and stderr into a file ---- */

static kconfig *cfg;
static char dir[64], g_log[96];
static int engine_up;

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    cfg = test_config_dir(dir, "/tmp/kredisXXXXXX");
    cfg->workers = 2;
    snprintf(g_log, sizeof g_log, "%s/stderr.log", dir);
    int fd = open(g_log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
    cr_assert(fd >= 0);
    dup2(fd, 2);
    close(fd);
    char err[256];
    cr_assert_eq(engine_start(cfg, err, sizeof err), 0, "%s", err);
    engine_up = 1;
}

static void teardown(void)
{
    redis_stop();
    if (engine_up)
        engine_stop();
    redis_stop(); /* after the loops are gone: nothing left to do, nothing touched */
    srv_kill(&g_srv);
    config_free(cfg);
}

TestSuite(redis, .init = setup, .fini = teardown, .timeout = 90);

static ioloop *loop_at(int i)
{
    int n;
    ioloop *const *loops = engine_loops(&n);
    cr_assert(i < n);
    return loops[i];
}

static void start_url(const char *url, int timeout_ms)
{
    int n;
    ioloop *const *loops = engine_loops(&n);
    char err[256] = "";
    cr_assert_eq(redis_start(url, timeout_ms, loops, n, err, sizeof err), 0, "%s", err);
}

static void start_tcp(int timeout_ms, const char *userinfo, int db)
{
    char url[256];
    snprintf(url, sizeof url, "redis://%s%s127.0.0.1:%d/%d", userinfo ? userinfo : "", userinfo ? "@" : "", g_srv.port,
             db);
    start_url(url, timeout_ms);
}

static char *log_text(void)
{
    char err[128];
    size_t len;
    char *t = util_read_file(g_log, 1 << 20, &len, err, sizeof err);
    return t ? t : strdup("");
}

static int wait_log(const char *needle, int ms)
{
    double end = util_now_ms() + ms;
    for (;;) {
        char *t = log_text();
        int found = strstr(t, needle) != NULL;
        free(t);
        if (found || util_now_ms() >= end)
            return found;
        usleep(20 * 1000);
    }
}

static int wait_state(int want, int ms)
{
    double end = util_now_ms() + ms;
    int st;
    while ((st = redis_state()) != want && util_now_ms() < end)
        usleep(20 * 1000);
    return st;
}

/* ---- one command from a loop, waited for ---- */

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;

typedef struct call {
    ioloop *io;
    int argc;
    const char *argv[16];
    int rc;   /* redis_command's */
    int done; /* under g_mu */
    int null, type, on_loop;
    long long integer;
    size_t len, elements;
    char str[512];
    double sent_ms, done_ms;
} call;

static void copy_reply(call *c, const redisReply *r)
{
    c->null = r == NULL;
    if (r) {
        c->type = r->type;
        c->integer = r->integer;
        c->len = r->str ? r->len : 0;
        c->elements = r->elements;
        snprintf(c->str, sizeof c->str, "%.*s", r->str ? (int)r->len : 0, r->str ? r->str : "");
        if (r->type == REDIS_REPLY_ARRAY && r->elements > 0 && r->element[0]->type == REDIS_REPLY_INTEGER)
            c->integer = r->element[0]->integer;
    }
}

static void call_done(redisReply *r, void *ud)
{
    call *c = ud;
    pthread_mutex_lock(&g_mu);
    copy_reply(c, r);
    c->on_loop = ioloop_current() == c->io;
    c->done_ms = util_now_ms();
    c->done = 1;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

static void call_send(void *ud)
{
    call *c = ud;
    c->sent_ms = util_now_ms();
    c->rc = redis_command(c->argc, c->argv, NULL, call_done, c);
}

static int call_wait(call *c, int ms)
{
    double end = util_now_ms() + ms;
    pthread_mutex_lock(&g_mu);
    while (!c->done && util_now_ms() < end) {
        pthread_mutex_unlock(&g_mu);
        usleep(2000);
        pthread_mutex_lock(&g_mu);
    }
    int done = c->done;
    pthread_mutex_unlock(&g_mu);
    return done;
}

/* Sends the command (NULL-terminated words) from loop i; waits for its answer unless refused. The
 * record is leaked when the answer never comes (a late callback must find it). */
static call *cmd(int loop, const char *w, ...)
{
    call *c = calloc(1, sizeof *c);
    c->io = loop_at(loop);
    va_list ap;
    va_start(ap, w);
    for (const char *a = w; a && c->argc < 16; a = va_arg(ap, const char *))
        c->argv[c->argc++] = a;
    va_end(ap);
    cr_assert_eq(ioloop_call(c->io, call_send, c), 0);
    if (c->rc == 0)
        cr_assert(call_wait(c, 30000), "%s: no answer", w);
    return c;
}

/* The command answered with a reply (not NULL, not refused). */
static call *cmd_ok(int loop, const char *w, ...)
{
    call *c = calloc(1, sizeof *c);
    c->io = loop_at(loop);
    va_list ap;
    va_start(ap, w);
    for (const char *a = w; a && c->argc < 16; a = va_arg(ap, const char *))
        c->argv[c->argc++] = a;
    va_end(ap);
    cr_assert_eq(ioloop_call(c->io, call_send, c), 0);
    cr_assert_eq(c->rc, 0, "%s refused", w);
    cr_assert(call_wait(c, 30000), "%s: no answer", w);
    cr_assert(!c->null, "%s answered NULL", w);
    return c;
}

/* Polls PING from loop i until it is answered with PONG, at most ms. */
static int wait_ping(int loop, int ms)
{
    double end = util_now_ms() + ms;
    while (util_now_ms() < end) {
        call *c = cmd(loop, "PING", NULL);
        int ok = c->rc == 0 && !c->null && strcmp(c->str, "PONG") == 0;
        free(c);
        if (ok)
            return 1;
        usleep(50 * 1000);
    }
    return 0;
}

/* Both loops' connections up. */
static void wait_ready(void)
{
    cr_assert_eq(wait_state(1, 10000), 1);
    cr_assert(wait_ping(0, 10000) && wait_ping(1, 10000));
}

static void start_server(const char *extra, ...)
{
    g_srv.port = free_port();
    if (extra)
        srv_start(&g_srv, "--requirepass", extra, NULL);
    else
        srv_start(&g_srv, NULL);
}

/* ---- URLs ---- */

static void url_good(const char *url, const char *host, int port, const char *path, int db, const char *user,
                     const char *password, const char *describe)
{
    redis_target t;
    char err[256] = "", d[512];
    cr_assert_eq(redis_url_parse(url, &t, err, sizeof err), 0, "%s: %s", url, err);
    cr_assert_str_eq(t.host, host, "%s", url);
    cr_assert_eq(t.port, port, "%s", url);
    cr_assert_str_eq(t.path, path, "%s", url);
    cr_assert_eq(t.db, db, "%s", url);
    cr_assert_str_eq(t.user, user, "%s", url);
    cr_assert_str_eq(t.password, password, "%s", url);
    redis_target_describe(&t, d, sizeof d);
    cr_assert_str_eq(d, describe, "%s", url);
}

static void url_bad(const char *url, const char *want)
{
    redis_target t;
    char err[256] = "";
    cr_assert_eq(redis_url_parse(url, &t, err, sizeof err), -1, "%s was accepted", url);
    cr_assert(strstr(err, want), "%s: %s", url, err);
    cr_assert(!strstr(err, "hunter2x"), "%s: the password is in the message: %s", url, err);
    cr_assert_eq(t.password[0], '\0', "%s: a refused URL keeps no password", url);
}

Test(redis, url_forms)
{
    url_good("redis://localhost", "localhost", 6379, "", 0, "", "", "redis://localhost:6379/0");
    url_good("redis://127.0.0.1:6380/3", "127.0.0.1", 6380, "", 3, "", "", "redis://127.0.0.1:6380/3");
    url_good("redis://cache.internal/", "cache.internal", 6379, "", 0, "", "", "redis://cache.internal:6379/0");
    url_good("redis://:hunter2x@h:1/2", "h", 1, "", 2, "", "hunter2x", "redis://h:1/2");
    url_good("redis://app:p%40ss%3Aw0rd@h/15", "h", 6379, "", 15, "app", "p@ss:w0rd", "redis://h:6379/15");
    url_good("REDIS://h/2147483647", "h", 6379, "", 2147483647, "", "", "redis://h:6379/2147483647");
    url_good("redis://[::1]:7000/1", "::1", 7000, "", 1, "", "", "redis://[::1]:7000/1");
    url_good("unix:/run/redis.sock", "", 6379, "/run/redis.sock", 0, "", "", "unix:/run/redis.sock?db=0");
    url_good("unix:///run/redis.sock?db=4", "", 6379, "/run/redis.sock", 4, "", "", "unix:/run/redis.sock?db=4");
    url_good("unix:/r.sock?db=1&password=hunter2x%21", "", 6379, "/r.sock", 1, "", "hunter2x!", "unix:/r.sock?db=1");

    url_bad("", "empty");
    url_bad(NULL, "empty");
    url_bad("rediss://:hunter2x@h:6380/0", "TLS to Redis is not built; use redis:// on a private network or unix:");
    url_bad("http://h/", "expected redis://[user:password@]host[:port][/db]");
    url_bad("h:6379", "expected redis://");
    url_bad("redis://", "redis_url");
    url_bad("redis://:hunter2x@h:0/1", "the port must be 1..65535");
    url_bad("redis://:hunter2x@h:70000/1", "redis_url");
    url_bad("redis://:hunter2x@h/x", "the database must be a number");
    url_bad("redis://:hunter2x@h/-1", "the database must be a number");
    url_bad("redis://:hunter2x@h/2147483648", "the database must be a number");
    url_bad("redis://:hunter2x@h/1/2", "the database must be a number");
    url_bad("redis://:hunter2x@h/1?db=2", "no query or fragment");
    url_bad("redis://:hunter2x@h/1#x", "no query or fragment");
    url_bad("redis://app@h/1", "a user without a password");
    url_bad("unix:run/redis.sock", "absolute path");
    url_bad("unix:/r.sock?db=x&password=hunter2x", "db= must be a number");
    url_bad("unix:/r.sock?password=hunter2x&nope=1", "takes db=N, user= and password=");
    url_bad("unix:/r.sock?password=hunter2x%2", "password= is too long or not well percent-encoded");
    char long_path[300];
    snprintf(long_path, sizeof long_path, "unix:/%0200d", 0);
    url_bad(long_path, "the socket path is too long");
    char long_pass[600];
    snprintf(long_pass, sizeof long_pass, "redis://:hunter2x%0300d@h/1", 0);
    url_bad(long_pass, "the password is too long");
}

Test(redis, start_refuses_a_bad_url_and_describe_hides_the_password)
{
    char err[256] = "";
    int n;
    ioloop *const *loops = engine_loops(&n);
    cr_assert_eq(redis_state(), -1);
    cr_assert_str_eq(redis_describe(), "");
    cr_assert_eq(redis_start("rediss://:hunter2x@h/0", 100, loops, n, err, sizeof err), -1);
    cr_assert(strstr(err, "TLS to Redis is not built"), "%s", err);
    cr_assert(!strstr(err, "hunter2x"), "%s", err);
    cr_assert_eq(redis_state(), -1);

    int port = free_port(); /* nothing listens: a Redis down at start is not an error */
    char url[128];
    snprintf(url, sizeof url, "redis://app:hunter2x@127.0.0.1:%d/3", port);
    cr_assert_eq(redis_start(url, 100, loops, n, err, sizeof err), 0, "%s", err);
    char want[64];
    snprintf(want, sizeof want, "redis://127.0.0.1:%d/3", port);
    cr_assert_str_eq(redis_describe(), want);
    cr_assert_eq(redis_state(), 0, "never connected: down");
    cr_assert_eq(redis_start(url, 100, loops, n, err, sizeof err), -1, "started twice");
    cr_assert(strstr(err, "already started"), "%s", err);

    /* not a loop thread: refused at once */
    cr_assert_eq(redis_command(1, (const char *[]){"PING"}, NULL, call_done, NULL), -1);
    redis_stop();
    cr_assert_eq(redis_state(), -1);
    char *log = log_text();
    cr_assert(!strstr(log, "hunter2x"), "the password was logged: %s", log);
    free(log);
}

/* ---- the breaker alone ---- */

Test(redis, breaker_opens_probes_once_and_closes)
{
    redis_breaker_reset(1, "redis://b:1/0");
    cr_assert_eq(redis_state(), 0, "never connected");
    redis_breaker_connected();
    cr_assert_eq(redis_state(), 1);
    for (int i = 0; i < REDIS_BREAKER_FAILURES - 1; i++)
        redis_breaker_failure(0, "boom");
    redis_breaker_success(0); /* an answer: the count starts again */
    for (int i = 0; i < REDIS_BREAKER_FAILURES - 1; i++)
        redis_breaker_failure(0, "boom");
    cr_assert_eq(redis_breaker_allow(), RB_GO, "4 failures in a row: still closed");
    cr_assert_eq(redis_state(), 1);
    redis_breaker_failure(0, "no reply within 50 ms");
    cr_assert_eq(redis_state(), 0);
    cr_assert_eq(redis_breaker_allow(), RB_REFUSE, "open: refused");
    redis_breaker_failure(0, "more");
    cr_assert(redis_breaker_reopen_ms() > util_now_ms());

    usleep((REDIS_BREAKER_OPEN_MS + 100) * 1000);
    cr_assert_eq(redis_breaker_allow(), RB_PROBE, "after the open period: one probe");
    cr_assert_eq(redis_breaker_allow(), RB_REFUSE, "only one");
    cr_assert_eq(redis_state(), 0);
    redis_breaker_failure(1, "probe failed");
    cr_assert_eq(redis_breaker_allow(), RB_REFUSE, "a failed probe re-opens");

    usleep((REDIS_BREAKER_OPEN_MS + 100) * 1000);
    cr_assert_eq(redis_breaker_allow(), RB_PROBE);
    redis_breaker_release(); /* not sent: the next one may probe */
    cr_assert_eq(redis_breaker_allow(), RB_PROBE);
    redis_breaker_success(0); /* a late answer to an older command closes nothing */
    cr_assert_eq(redis_state(), 0);
    redis_breaker_success(1);
    cr_assert_eq(redis_state(), 1);
    cr_assert_eq(redis_breaker_allow(), RB_GO);

    char *log = log_text();
    const char *down = strstr(log, "redis: down (5 failures in a row): no reply within 50 ms");
    cr_assert(down, "%s", log);
    cr_assert(!strstr(down + 1, "redis: down"), "logged once: %s", log);
    const char *back = strstr(log, "redis: back");
    cr_assert(back && !strstr(back + 1, "redis: back"), "%s", log);
    free(log);
}

/* ---- commands ---- */

Test(redis, set_get_round_trip)
{
    start_server(NULL);
    start_tcp(2000, NULL, 0);
    wait_ready();
    redis_stats before, st;
    redis_get_stats(&before);
    call *c = cmd_ok(0, "SET", "greeting", "hello there", NULL);
    cr_assert_eq(c->type, REDIS_REPLY_STATUS);
    cr_assert_str_eq(c->str, "OK");
    cr_assert(c->on_loop, "answered on the loop that sent it");
    free(c);
    c = cmd_ok(1, "GET", "greeting", NULL);
    cr_assert_eq(c->type, REDIS_REPLY_STRING);
    cr_assert_str_eq(c->str, "hello there");
    free(c);
    c = cmd_ok(0, "HSET", NULL);
    cr_assert_eq(c->type, REDIS_REPLY_ERROR, "an error reply is a reply");
    free(c);
    redis_get_stats(&st);
    cr_assert_eq(st.sent - before.sent, 3);
    cr_assert_eq(st.failed, 0);
    cr_assert_eq(redis_state(), 1, "an error reply is no failure");
}

typedef struct batch {
    ioloop *io;
    int n, sent, answered, nulls, in_order;
    long long last;
    size_t value_len;
    char *value;
} batch;

static void batch_done(redisReply *r, void *ud)
{
    batch *b = ud;
    pthread_mutex_lock(&g_mu);
    if (!r)
        b->nulls++;
    else if (r->type == REDIS_REPLY_INTEGER) {
        if (r->integer != b->last + 1)
            b->in_order = 0;
        b->last = r->integer;
    } else if (r->type != REDIS_REPLY_STATUS) {
        b->in_order = 0;
    }
    b->answered++;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

static void batch_incr(void *ud)
{
    batch *b = ud;
    for (int i = 0; i < b->n; i++)
        if (redis_command(2, (const char *[]){"INCR", "counter"}, NULL, batch_done, b) == 0)
            b->sent++;
}

static void batch_set(void *ud)
{
    batch *b = ud;
    for (int i = 0; i < b->n; i++) {
        char key[32];
        snprintf(key, sizeof key, "big:%d", i);
        const char *argv[] = {"SET", key, b->value};
        size_t lens[] = {3, strlen(key), b->value_len};
        if (redis_command(3, argv, lens, batch_done, b) == 0)
            b->sent++;
    }
}

Test(redis, a_host_name_goes_through_the_resolver)
{
    start_server(NULL);
    char url[128];
    snprintf(url, sizeof url, "redis://localhost:%d/1", g_srv.port);
    start_url(url, 2000); /* localhost may give ::1 first: the next attempt takes the next address */
    cr_assert_eq(wait_state(1, 30000), 1);
    cr_assert(wait_ping(0, 30000) && wait_ping(1, 30000));
    call *c = cmd_ok(0, "CLIENT", "INFO", NULL);
    cr_assert(strstr(c->str, " db=1 "), "%s", c->str);
    free(c);
}

Test(redis, a_thousand_commands_pipelined_from_one_loop_answered_in_order)
{
    start_server(NULL);
    start_tcp(5000, NULL, 0);
    wait_ready();
    batch *b = calloc(1, sizeof *b);
    b->n = 1000;
    b->in_order = 1;
    cr_assert_eq(ioloop_call(loop_at(0), batch_incr, b), 0);
    cr_assert_eq(b->sent, 1000);
    pthread_mutex_lock(&g_mu);
    pthread_mutex_unlock(&g_mu);
    double end = util_now_ms() + 30000;
    while (util_now_ms() < end) {
        pthread_mutex_lock(&g_mu);
        int n = b->answered;
        pthread_mutex_unlock(&g_mu);
        if (n == 1000)
            break;
        usleep(5000);
    }
    cr_assert_eq(b->answered, 1000);
    cr_assert_eq(b->nulls, 0);
    cr_assert(b->in_order, "INCR answers 1..1000 in the order sent");
    cr_assert_eq(b->last, 1000);
    free(b);
}

Test(redis, a_large_batch_waits_for_write_interest_and_still_arrives)
{
    start_server(NULL);
    start_tcp(20000, NULL, 0);
    wait_ready();
    batch *b = calloc(1, sizeof *b);
    b->n = 64;
    b->in_order = 1;
    b->value_len = 512 * 1024; /* 32 MB in one round: far more than a socket buffer takes at once */
    b->value = malloc(b->value_len + 1);
    for (size_t i = 0; i < b->value_len; i++)
        b->value[i] = (char)('a' + i % 26);
    b->value[b->value_len] = '\0';
    cr_assert_eq(ioloop_call(loop_at(0), batch_set, b), 0);
    cr_assert_eq(b->sent, 64);
    double end = util_now_ms() + 60000;
    while (util_now_ms() < end) {
        pthread_mutex_lock(&g_mu);
        int n = b->answered;
        pthread_mutex_unlock(&g_mu);
        if (n == b->n)
            break;
        usleep(5000);
    }
    cr_assert_eq(b->answered, 64);
    cr_assert_eq(b->nulls, 0);
    cr_assert(b->in_order);
    call *c = cmd_ok(0, "STRLEN", "big:63", NULL);
    cr_assert_eq(c->integer, (long long)b->value_len);
    free(c);
    c = cmd_ok(0, "PING", NULL); /* and the connection is back to read interest only, still working */
    cr_assert_str_eq(c->str, "PONG");
    free(c);
    free(b->value);
    free(b);
}

Test(redis, a_stopped_server_fails_by_deadline_opens_the_breaker_and_a_probe_closes_it)
{
    start_server(NULL);
    start_tcp(200, NULL, 0);
    wait_ready();
    free(cmd_ok(0, "SET", "k", "v", NULL));

    kill(g_srv.pid, SIGSTOP);
    call *c = cmd(0, "GET", "k", NULL);
    cr_assert_eq(c->rc, 0);
    cr_assert(c->null, "past its deadline: answered NULL");
    cr_assert(c->on_loop);
    double took = c->done_ms - c->sent_ms;
    cr_assert(took >= 150 && took < 3000, "answered after %.0f ms (deadline 200 ms)", took);
    free(c);

    cr_assert_eq(wait_state(0, 30000), 0, "the breaker opens after failures in a row");
    cr_assert(wait_log("redis: down (5 failures in a row)", 5000));
    c = cmd(0, "GET", "k", NULL);
    cr_assert_eq(c->rc, -1, "open: refused at once, done never called");
    cr_assert(!c->done);
    free(c);
    redis_stats st;
    redis_get_stats(&st);
    cr_assert(st.failed >= 1 && st.refused >= 1 && st.reconnects >= 1, "failed %llu refused %llu reconnects %llu",
              st.failed, st.refused, st.reconnects);

    kill(g_srv.pid, SIGCONT);
    cr_assert_eq(wait_state(1, 30000), 1, "back after the open period: a probe closed it");
    cr_assert(wait_log("redis: back", 5000));
    cr_assert(wait_ping(0, 30000), "loop 0 reconnected (its backoff may be longer)");
    c = cmd_ok(0, "GET", "k", NULL);
    cr_assert_str_eq(c->str, "v");
    free(c);
    char *log = log_text();
    const char *down = strstr(log, "redis: down");
    cr_assert(!strstr(down + 1, "redis: down"), "the transition is logged once: %s", log);
    free(log);
}

Test(redis, commands_past_their_deadline_open_the_breaker_though_connecting_works)
{
    start_server(NULL);
    start_tcp(200, NULL, 0);
    wait_ready();
    /* BLPOP holds its answer for 2 s: each one passes its deadline and the connection is dropped;
     * the next one goes once the handshake (PING) of the new connection is answered. Nothing else
     * is sent, so nothing answered comes between the failures. */
    int failed = 0;
    double end = util_now_ms() + 30000;
    while (redis_state() == 1 && util_now_ms() < end) {
        call *c = cmd(0, "BLPOP", "nothing-here", "2", NULL);
        cr_assert(c->rc == -1 || c->null);
        failed += c->rc == 0;
        free(c);
        usleep(20 * 1000);
    }
    cr_assert(failed >= 1 && failed <= REDIS_BREAKER_FAILURES, "%d", failed);
    cr_assert_eq(wait_state(0, 5000), 0);
    cr_assert(wait_log("redis: down (5 failures in a row): no reply within 200 ms", 1000));
}

Test(redis, idle_connections_the_server_closes_are_no_failures)
{
    start_server(NULL);
    start_tcp(2000, NULL, 0);
    wait_ready();
    free(cmd_ok(0, "CONFIG", "SET", "timeout", "1", NULL)); /* idle clients closed after 1 s */
    redis_stats st;
    double end = util_now_ms() + 30000;
    do {
        usleep(100 * 1000);
        redis_get_stats(&st);
    } while (st.reconnects < REDIS_BREAKER_FAILURES + 1 && util_now_ms() < end);
    cr_assert(st.reconnects >= REDIS_BREAKER_FAILURES + 1, "%llu reconnects", st.reconnects);
    cr_assert_eq(redis_state(), 1);
    char *log = log_text();
    cr_assert(!strstr(log, "redis: down"), "%s", log);
    free(log);
    free(cmd_ok(0, "PING", NULL));
}

Test(redis, a_restarted_server_is_reconnected)
{
    start_server(NULL);
    start_tcp(1000, NULL, 0);
    wait_ready();
    free(cmd_ok(0, "SET", "k", "v", NULL));
    free(cmd_ok(1, "SET", "k2", "v", NULL));
    srv_kill(&g_srv);
    call *c = cmd(0, "GET", "k", NULL);
    cr_assert(c->rc == -1 || c->null, "a dead server: refused or failed");
    free(c);
    usleep(300 * 1000);
    srv_start(&g_srv, NULL); /* the same port */
    cr_assert(wait_ping(0, 30000), "loop 0 reconnected");
    cr_assert(wait_ping(1, 30000), "loop 1 reconnected");
    cr_assert_eq(wait_state(1, 30000), 1);
    redis_stats st;
    redis_get_stats(&st);
    cr_assert(st.reconnects >= 2, "%llu", st.reconnects);
    c = cmd_ok(0, "GET", "k", NULL);
    cr_assert_eq(c->type, REDIS_REPLY_NIL, "a new, empty server");
    free(c);
}

Test(redis, down_at_start_then_up_without_traffic)
{
    int held;
    g_srv.port = free_port_held(&held);
    start_tcp(200, NULL, 0);
    cr_assert_eq(redis_state(), 0);
    cr_assert(wait_log("redis: down (5 failures in a row)", 30000), "a Redis down at start opens the breaker");
    call *c = cmd(0, "PING", NULL);
    cr_assert_eq(c->rc, -1);
    free(c);
    close(held);
    srv_start(&g_srv, NULL);
    /* nothing is sent: the connection's own probe finds it back */
    cr_assert_eq(wait_state(1, 30000), 1);
    cr_assert(wait_log("redis: connected to redis://127.0.0.1:", 1000));
    free(cmd_ok(0, "PING", NULL));
}

/* ---- the handshake ---- */

Test(redis, auth_with_the_right_password)
{
    start_server("s3cret-pw");
    start_tcp(2000, ":s3cret-pw", 0);
    wait_ready();
    call *c = cmd_ok(0, "SET", "a", "1", NULL);
    cr_assert_str_eq(c->str, "OK");
    free(c);
    redis_stop();
    start_tcp(2000, "default:s3cret-pw", 0); /* AUTH user password (ACL) */
    wait_ready();
    c = cmd_ok(1, "GET", "a", NULL);
    cr_assert_str_eq(c->str, "1");
    free(c);
    char *log = log_text();
    cr_assert(!strstr(log, "s3cret-pw"), "%s", log);
    free(log);
}

Test(redis, auth_with_a_wrong_password_fails_and_is_not_logged)
{
    start_server("s3cret-pw");
    start_tcp(2000, ":Wr0ng-Secret", 0);
    cr_assert(wait_log("redis: down (5 failures in a row): AUTH refused: WRONGPASS", 30000));
    cr_assert_eq(redis_state(), 0);
    call *c = cmd(0, "PING", NULL);
    cr_assert_eq(c->rc, -1, "never ready: refused");
    free(c);
    char *log = log_text();
    cr_assert(!strstr(log, "Wr0ng-Secret"), "the password was logged: %s", log);
    cr_assert(!strstr(log, "s3cret-pw"), "%s", log);
    free(log);
    cr_assert(!strstr(redis_describe(), "Wr0ng"));
}

Test(redis, select_db)
{
    start_server(NULL);
    start_tcp(2000, NULL, 5);
    wait_ready();
    for (int loop = 0; loop < 2; loop++) {
        call *c = cmd_ok(loop, "CLIENT", "INFO", NULL);
        cr_assert(strstr(c->str, " db=5 "), "%s", c->str);
        free(c);
    }
    free(cmd_ok(0, "SET", "in5", "x", NULL));
    redis_stop();
    start_tcp(2000, NULL, 0);
    wait_ready();
    call *c = cmd_ok(0, "EXISTS", "in5", NULL);
    cr_assert_eq(c->integer, 0, "db 0 does not have db 5's key");
    free(c);
}

Test(redis, unix_socket_with_db)
{
    snprintf(g_srv.sock, sizeof g_srv.sock, "%s/r.sock", dir);
    g_srv.port = 0;
    srv_start(&g_srv, NULL);
    char url[160];
    snprintf(url, sizeof url, "unix://%s?db=2", g_srv.sock);
    start_url(url, 2000);
    wait_ready();
    call *c = cmd_ok(0, "CLIENT", "INFO", NULL);
    cr_assert(strstr(c->str, " db=2 "), "%s", c->str);
    free(c);
}

/* ---- scripts ---- */

typedef struct scall {
    redis_script *s;
    call c;
} scall;

static void script_send(void *ud)
{
    scall *k = ud;
    const char *args[] = {"key-a", "arg-1"};
    k->c.sent_ms = util_now_ms();
    k->c.rc = redis_script_call(k->s, 1, 2, args, NULL, call_done, &k->c);
}

static call *script_run(redis_script *s)
{
    scall *k = calloc(1, sizeof *k);
    k->s = s;
    k->c.io = loop_at(0);
    cr_assert_eq(ioloop_call(k->c.io, script_send, k), 0);
    cr_assert_eq(k->c.rc, 0);
    cr_assert(call_wait(&k->c, 30000));
    call *c = malloc(sizeof *c);
    *c = k->c;
    free(k);
    return c;
}

Test(redis, scripts_by_evalsha_with_noscript_fallback)
{
    const char *lua = "return ARGV[1] .. ':' .. KEYS[1]";
    redis_script *s = redis_script_new(lua);
    cr_assert_not_null(s);
    unsigned char md[20];
    unsigned mdlen;
    EVP_Digest(lua, strlen(lua), md, &mdlen, EVP_sha1(), NULL);
    char sha[41];
    for (int i = 0; i < 20; i++)
        snprintf(sha + 2 * i, 3, "%02x", md[i]);

    start_server(NULL);
    start_tcp(2000, NULL, 0);
    wait_ready();
    call *c = cmd_ok(0, "SCRIPT", "EXISTS", sha, NULL);
    cr_assert_eq(c->integer, 0, "not loaded yet");
    free(c);

    c = script_run(s); /* NOSCRIPT, then EVAL: one reply */
    cr_assert(!c->null);
    cr_assert_eq(c->type, REDIS_REPLY_STRING, "%d %s", c->type, c->str);
    cr_assert_str_eq(c->str, "arg-1:key-a");
    cr_assert(c->on_loop);
    free(c);
    c = cmd_ok(0, "SCRIPT", "EXISTS", sha, NULL);
    cr_assert_eq(c->integer, 1, "EVAL loaded it under our SHA-1");
    free(c);

    redis_stats before, after;
    redis_get_stats(&before);
    c = script_run(s); /* EVALSHA alone */
    cr_assert_str_eq(c->str, "arg-1:key-a");
    free(c);
    redis_get_stats(&after);
    cr_assert_eq(after.sent - before.sent, 1, "a loaded script costs one command");

    free(cmd_ok(0, "SCRIPT", "FLUSH", NULL));
    redis_get_stats(&before);
    c = script_run(s);
    cr_assert_str_eq(c->str, "arg-1:key-a");
    free(c);
    redis_get_stats(&after);
    cr_assert_eq(after.sent - before.sent, 2, "after SCRIPT FLUSH: EVALSHA, then EVAL");

    redis_script *bad = redis_script_new("return redis.call('NOPE')");
    c = script_run(bad);
    cr_assert(!c->null);
    cr_assert_eq(c->type, REDIS_REPLY_ERROR, "a script's own error is the caller's reply");
    free(c);
    redis_script_free(bad);
    redis_script_free(s);
}

/* ---- stopping ---- */

typedef struct inflight {
    ioloop *io;
    int n, sent, nulls, off_loop, answered;
} inflight;

static void inflight_done(redisReply *r, void *ud)
{
    inflight *f = ud;
    pthread_mutex_lock(&g_mu);
    f->answered++;
    f->nulls += r == NULL;
    f->off_loop += ioloop_current() != f->io;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

static void inflight_send(void *ud)
{
    inflight *f = ud;
    for (int i = 0; i < f->n; i++)
        if (redis_command(1, (const char *[]){"PING"}, NULL, inflight_done, f) == 0)
            f->sent++;
}

Test(redis, stop_answers_commands_in_flight_null_on_their_loop)
{
    start_server(NULL);
    start_tcp(20000, NULL, 0);
    wait_ready();
    kill(g_srv.pid, SIGSTOP); /* nothing will be answered */
    inflight *f = calloc(1, sizeof *f);
    f->io = loop_at(1);
    f->n = 10;
    cr_assert_eq(ioloop_call(f->io, inflight_send, f), 0);
    cr_assert_eq(f->sent, 10);
    usleep(100 * 1000);
    double t0 = util_now_ms();
    redis_stop();
    cr_assert(util_now_ms() - t0 < 5000, "no deadline waited");
    cr_assert_eq(f->answered, 10, "answered before redis_stop returned");
    cr_assert_eq(f->nulls, 10);
    cr_assert_eq(f->off_loop, 0, "on their loop");
    cr_assert_eq(redis_state(), -1);
    call *c = cmd(1, "PING", NULL);
    cr_assert_eq(c->rc, -1, "stopped: refused");
    free(c);
    free(f);
}

Test(redis, engine_stopping_first_ends_the_connections)
{
    start_server(NULL);
    start_tcp(20000, NULL, 0);
    wait_ready();
    kill(g_srv.pid, SIGSTOP);
    inflight *f = calloc(1, sizeof *f);
    f->io = loop_at(0);
    f->n = 5;
    cr_assert_eq(ioloop_call(f->io, inflight_send, f), 0);
    engine_stop(); /* the loops' stop hooks end the connections */
    engine_up = 0;
    cr_assert_eq(f->answered, 5);
    cr_assert_eq(f->nulls, 5);
    redis_stop();
    cr_assert_eq(redis_state(), -1);
    free(f);
}
