/* callback: callback_url checked (src/jobs/callback.c) and delivered on the engine's I/O loops
 * (src/jobs/callback_send.c), against a real HTTP receiver in the test: one thread on 127.0.0.1
 * (port chosen by the kernel) that reads each request whole, keeps it, and answers the next status
 * of its script (the last one repeats), or never answers when told to hang. Signatures are checked
 * with OpenSSL's EVP_MAC, not the HMAC() one-shot the daemon uses. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kailash/engine.h"
#include "kailash/jobs.h"
#include "kailash/util.h"
#include "test_config_dir.h"
#include "wait_count.h"

#define SECRET "0123456789abcdef-test-secret"
#define MAX_REQ 16

/* ---- the receiver ---- */

typedef struct rcv {
    int fd, port, wake[2];
    pthread_t thread;
    /* under g_mu */
    int requests;
    char *req[MAX_REQ]; /* each request as received, NUL-terminated */
    int script[8], nscript;
    int hang; /* read requests, never answer (their connections held until rcv_free) */
    int held[MAX_REQ];
    int nheld;
} rcv;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;

static int rcv_wait(rcv *s, int c, int ms)
{
    struct pollfd p[2] = {{.fd = c, .events = POLLIN}, {.fd = s->wake[0], .events = POLLIN}};
    int n = poll(p, 2, ms);
    return n > 0 && !p[1].revents && p[0].revents;
}

/* The request's whole bytes (headers and a Content-Length body) into b; 0, or -1. */
static int rcv_read(rcv *s, int c, buf *b)
{
    for (;;) {
        char *end = b->data ? memmem(b->data, b->len, "\r\n\r\n", 4) : NULL;
        if (end) {
            const char *cl = strcasestr(b->data, "\r\nContent-Length:");
            size_t want = (size_t)(end + 4 - b->data) + (cl && cl < end ? strtoul(cl + 17, NULL, 10) : 0);
            if (b->len >= want)
                return 0;
        }
        char chunk[4096];
        if (!rcv_wait(s, c, 5000))
            return -1;
        ssize_t r = recv(c, chunk, sizeof chunk, 0);
        if (r <= 0 || buf_append(b, chunk, (size_t)r) != 0 || buf_terminate(b) != 0)
            return -1;
    }
}

/* Answers c; 1 when c is kept open (hanging), 0 when the caller closes it. */
static int rcv_serve(rcv *s, int c)
{
    buf b = {0};
    if (rcv_read(s, c, &b) != 0) {
        buf_free(&b);
        return 0;
    }
    pthread_mutex_lock(&g_mu);
    int i = s->requests++;
    if (i < MAX_REQ)
        s->req[i] = b.data;
    else
        buf_free(&b);
    int status = s->script[i < s->nscript ? i : s->nscript - 1], hang = s->hang;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
    if (hang && s->nheld < MAX_REQ) {
        s->held[s->nheld++] = c;
        return 1;
    }
    char head[256];
    int n = snprintf(head, sizeof head, "HTTP/1.1 %d X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok", status);
    if (send(c, head, (size_t)n, MSG_NOSIGNAL) < 0)
        return 0;
    return 0;
}

static void *rcv_main(void *arg)
{
    rcv *s = arg;
    for (;;) {
        struct pollfd p[2] = {{.fd = s->fd, .events = POLLIN}, {.fd = s->wake[0], .events = POLLIN}};
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            break;
        if (p[1].revents)
            break;
        if (!(p[0].revents & POLLIN))
            continue;
        int c = accept(s->fd, NULL, NULL);
        if (c < 0)
            continue;
        if (!rcv_serve(s, c))
            close(c);
    }
    return NULL;
}

/* A receiver answering the statuses given (0-terminated; the last repeats). */
static rcv *rcv_new(const int *statuses)
{
    rcv *s = calloc(1, sizeof *s);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert(s->fd >= 0 && bind(s->fd, (struct sockaddr *)&a, sizeof a) == 0);
    cr_assert(getsockname(s->fd, (struct sockaddr *)&a, &alen) == 0);
    s->port = ntohs(a.sin_port);
    cr_assert(pipe(s->wake) == 0);
    for (; statuses[s->nscript]; s->nscript++)
        s->script[s->nscript] = statuses[s->nscript];
    cr_assert(listen(s->fd, 16) == 0);
    cr_assert(pthread_create(&s->thread, NULL, rcv_main, s) == 0);
    return s;
}

static int rcv_requests(rcv *s)
{
    pthread_mutex_lock(&g_mu);
    int n = s->requests;
    pthread_mutex_unlock(&g_mu);
    return n;
}

static void rcv_free(rcv *s)
{
    cr_assert(write(s->wake[1], "x", 1) == 1);
    pthread_join(s->thread, NULL);
    close(s->fd);
    close(s->wake[0]);
    close(s->wake[1]);
    for (int i = 0; i < s->nheld; i++)
        close(s->held[i]);
    for (int i = 0; i < MAX_REQ; i++)
        free(s->req[i]);
    free(s);
}

/* The value of header name in request text req (copied into out), or NULL. */
static const char *req_header(const char *req, const char *name, char *out, size_t cap)
{
    size_t n = strlen(name);
    const char *end = strstr(req, "\r\n\r\n");
    for (const char *p = strstr(req, "\r\n"); p && p < end; p = strstr(p + 2, "\r\n")) {
        if (strncasecmp(p + 2, name, n) != 0 || p[2 + n] != ':')
            continue;
        const char *v = p + 3 + n, *e = strstr(v, "\r\n");
        while (*v == ' ')
            v++;
        snprintf(out, cap, "%.*s", (int)(e - v), v);
        return out;
    }
    return NULL;
}

/* ---- the log (stderr, captured into a file) ---- */

static char g_logpath[64];

static void log_capture(void)
{
    snprintf(g_logpath, sizeof g_logpath, "/tmp/kcblogXXXXXX");
    int fd = mkstemp(g_logpath);
    cr_assert(fd >= 0 && dup2(fd, 2) == 2);
    close(fd);
}

/* What was logged so far (caller frees). */
static char *log_text(void)
{
    char err[128];
    size_t len;
    char *t = util_read_file(g_logpath, 1 << 20, &len, err, sizeof err);
    cr_assert_not_null(t, "%s", err);
    return t;
}

/* ---- the engine and the configuration ---- */

static kconfig *cfg;
static char dir[64];
static int engine_up;

static void start_engine(void)
{
    cfg = test_config_dir(dir, "/tmp/kcbXXXXXX");
    cfg->workers = 2;
    setenv("KAILASH_CALLBACK_BACKOFF_MS", "10", 1);
    char err[256];
    cr_assert_eq(engine_start(cfg, err, sizeof err), 0, "%s", err);
    engine_up = 1;
}

static void stop_engine(void)
{
    jobs_callback_stop();
    if (engine_up)
        engine_stop();
    engine_up = 0;
    config_free(cfg);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

/* cfg's allow list is hosts (NULL-terminated), its secret env name secret_env. */
static void configure(const char *const *hosts, const char *secret_env)
{
    for (size_t i = 0; i < cfg->n_jobs_callback_allow_hosts; i++)
        free(cfg->jobs_callback_allow_hosts[i]);
    free(cfg->jobs_callback_allow_hosts);
    size_t n = 0;
    while (hosts && hosts[n])
        n++;
    cfg->jobs_callback_allow_hosts = calloc(n + 1, sizeof(char *));
    for (size_t i = 0; i < n; i++)
        cfg->jobs_callback_allow_hosts[i] = strdup(hosts[i]);
    cfg->n_jobs_callback_allow_hosts = n;
    free(cfg->jobs_callback_secret_env);
    cfg->jobs_callback_secret_env = secret_env ? strdup(secret_env) : NULL;
    char err[256];
    cr_assert_eq(jobs_callback_configure(cfg, err, sizeof err), 0, "%s", err);
}

static int inflight_zero_within(int ms)
{
    for (int i = 0; i < ms / 5; i++) {
        if (jobs_callback_inflight() == 0)
            return 1;
        usleep(5000);
    }
    return jobs_callback_inflight() == 0;
}

/* ---- check ---- */

TestSuite(callback_check, .init = start_engine, .fini = stop_engine);

static const char *const hostile[] = {
    "file:///etc/passwd",
    "gopher://example.com/",
    "ftp://example.com/x",
    "example.com/hook",
    "",
    "http://user:pass@example.com/hook",
    "http://user@example.com/hook",
    "http://127.0.0.1/hook",
    "http://127.9.8.7:8080/hook",
    "http://[::1]/hook",
    "http://0.0.0.0/hook",
    "http://0/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://169.254.169.254./latest/meta-data/",
    "http://[fe80::1]/hook",
    "http://[fe80::1%25eth0]/hook",
    "http://[febf::1]/hook",
    "http://[::]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://[::ffff:169.254.1.1]/hook",
    "http://[0:0:0:0:0:ffff:7f00:1]/hook",
    "http://2130706433/hook", /* libcurl's parser makes these 127.0.0.1 */
    "http://0x7f.1/hook",
    "http://017700000001/hook",
    "http://127.1/hook",
    "http://a b/",
    "http://example.com:99999/",
};

Test(callback_check, refuses_hostile_urls)
{
    configure(NULL, NULL);
    char err[256];
    for (size_t i = 0; i < sizeof hostile / sizeof *hostile; i++) {
        err[0] = '\0';
        cr_expect_eq(jobs_callback_check(hostile[i], err, sizeof err), -1, "accepted %s", hostile[i]);
        cr_expect(err[0] && strlen(err) < 200, "%s: %s", hostile[i], err);
    }
    cr_expect_eq(jobs_callback_check(NULL, err, sizeof err), -1);
    cr_expect(strstr(hostile[5], "pass") && !strstr(err, "pass"));
    jobs_callback_check("http://user:pass@example.com/hook", err, sizeof err);
    cr_expect(strstr(err, "user name or password") && !strstr(err, "pass@"), "%s", err);
}

Test(callback_check, accepts_public_urls)
{
    configure(NULL, NULL);
    static const char *const ok[] = {
        "http://example.com/hook",   "https://hooks.example.com:8443/a/b?token=x#f",
        "HTTPS://Example.COM/",      "http://10.0.0.1/hook",
        "http://[2001:db8::1]/hook", "http://localhost:8080/hook" /* a name: judged at connect time */};
    char err[256];
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
        cr_expect_eq(jobs_callback_check(ok[i], err, sizeof err), 0, "%s: %s", ok[i], err);
}

Test(callback_check, overlong_and_messages_are_short)
{
    configure(NULL, NULL);
    char url[2200], err[512];
    memcpy(url, "https://example.com/", 20);
    memset(url + 20, 'a', sizeof url - 21);
    url[2048] = '\0';
    cr_expect_eq(jobs_callback_check(url, err, sizeof err), 0, "%s", err);
    url[2048] = 'a';
    url[2049] = '\0';
    cr_expect_eq(jobs_callback_check(url, err, sizeof err), -1);
    cr_expect(strstr(err, "2048"), "%s", err);
    cr_expect(strlen(err) < 200, "%s", err);
    /* a long host, not listed: the message quotes at most 100 characters of it */
    const char *list[] = {"hooks.example.com", NULL};
    configure(list, NULL);
    char host[250];
    memset(host, 'h', sizeof host - 1);
    host[sizeof host - 1] = '\0';
    snprintf(url, sizeof url, "https://%s.example.com/path?secret=s3cr3t", host);
    cr_expect_eq(jobs_callback_check(url, err, sizeof err), -1);
    cr_expect(strlen(err) < 200, "%zu: %s", strlen(err), err);
    cr_expect(!strstr(err, "s3cr3t"), "%s", err);
}

Test(callback_check, allow_list)
{
    const char *list[] = {"hooks.example.com", "127.0.0.1", "::1", "localhost", NULL};
    configure(list, NULL);
    char err[256];
    static const char *const ok[] = {"https://hooks.example.com/a",  "http://HOOKS.Example.com:81/a",
                                     "https://hooks.example.com./a", "http://127.0.0.1:9/hook",
                                     "http://[::1]:9/hook",          "http://[0:0:0:0:0:0:0:1]/hook",
                                     "http://localhost/hook"};
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
        cr_expect_eq(jobs_callback_check(ok[i], err, sizeof err), 0, "%s: %s", ok[i], err);
    static const char *const no[] = {
        "https://example.com/a", "https://evil.hooks.example.com/a", "https://hooks.example.com.evil.net/a",
        "http://127.0.0.2/hook", "http://2130706434/hook",           "http://169.254.169.254/"};
    for (size_t i = 0; i < sizeof no / sizeof *no; i++) {
        cr_expect_eq(jobs_callback_check(no[i], err, sizeof err), -1, "accepted %s", no[i]);
        cr_expect(strstr(err, "not in the allowed callback hosts"), "%s: %s", no[i], err);
    }
    /* the listed loopback in its other spellings (libcurl normalises them) */
    cr_expect_eq(jobs_callback_check("http://2130706433:9/hook", err, sizeof err), 0, "%s", err);
    cr_expect_eq(jobs_callback_check("http://user:pw@127.0.0.1:9/hook", err, sizeof err), -1);
}

Test(callback_check, secret_from_the_environment)
{
    char err[256];
    unsetenv("KCB_TEST_MISSING");
    cfg->jobs_callback_secret_env = strdup("KCB_TEST_MISSING");
    cr_expect_eq(jobs_callback_configure(cfg, err, sizeof err), -1);
    cr_expect(strstr(err, "KCB_TEST_MISSING") && strstr(err, "not set"), "%s", err);
    setenv("KCB_TEST_SHORT", "tooshort-15byte", 1);
    free(cfg->jobs_callback_secret_env);
    cfg->jobs_callback_secret_env = strdup("KCB_TEST_SHORT");
    cr_expect_eq(jobs_callback_configure(cfg, err, sizeof err), -1);
    cr_expect(strstr(err, "KCB_TEST_SHORT") && strstr(err, "16") && !strstr(err, "tooshort"), "%s", err);
    setenv("KCB_TEST_OK", SECRET, 1);
    free(cfg->jobs_callback_secret_env);
    cfg->jobs_callback_secret_env = strdup("KCB_TEST_OK");
    cr_expect_eq(jobs_callback_configure(cfg, err, sizeof err), 0, "%s", err);
}

/* ---- send ---- */

TestSuite(callback_send, .init = start_engine, .fini = stop_engine, .timeout = 30);

static void rcv_url(const rcv *s, const char *host, char *out, size_t n)
{
    snprintf(out, n, "http://%s:%d/hooks/kailash?token=abc", host, s->port);
}

/* lowercase hex HMAC-SHA256(key, body) through EVP_MAC */
static void hmac_hex(const char *key, const char *body, char out[65])
{
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(mac);
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
                           OSSL_PARAM_construct_end()};
    unsigned char md[32];
    size_t mdlen = 0;
    cr_assert(EVP_MAC_init(ctx, (const unsigned char *)key, strlen(key), params) == 1);
    cr_assert(EVP_MAC_update(ctx, (const unsigned char *)body, strlen(body)) == 1);
    cr_assert(EVP_MAC_final(ctx, md, &mdlen, sizeof md) == 1 && mdlen == 32);
    for (int i = 0; i < 32; i++)
        sprintf(out + 2 * i, "%02x", md[i]);
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
}

static const char *const listed_loopback[] = {"127.0.0.1", NULL};

Test(callback_send, delivered_once_signed)
{
    setenv("KCB_TEST_KEY", SECRET, 1);
    configure(listed_loopback, "KCB_TEST_KEY");
    rcv *s = rcv_new((int[]){204, 0});
    char url[128], v[256], want[80];
    rcv_url(s, "127.0.0.1", url, sizeof url);
    const char *body = "{\"run_id\":\"r-1\",\"status\":\"completed\",\"outputs\":{\"x\":\"\\u00e9\"}}";
    char err[256];
    cr_assert_eq(jobs_callback_check(url, err, sizeof err), 0, "%s", err);
    jobs_callback_send(url, "0192f7c2-0000-7000-8000-000000000001", body, strlen(body));
    cr_assert(wait_count_on(&g_mu, &g_cv, &s->requests, 1, 5000) >= 1);
    cr_assert(inflight_zero_within(5000));
    usleep(100000);
    cr_expect_eq(rcv_requests(s), 1);
    const char *req = s->req[0];
    cr_expect(strncmp(req, "POST /hooks/kailash?token=abc HTTP/1.1\r\n", 40) == 0, "%.60s", req);
    cr_expect_str_eq(req_header(req, "Content-Type", v, sizeof v), "application/json");
    cr_expect(strncmp(req_header(req, "User-Agent", v, sizeof v), "kailashd", 8) == 0, "%s", v);
    cr_expect_str_eq(req_header(req, "X-Kailash-Run-ID", v, sizeof v), "0192f7c2-0000-7000-8000-000000000001");
    memcpy(want, "sha256=", 7);
    hmac_hex(SECRET, body, want + 7);
    cr_expect_str_eq(req_header(req, "X-Kailash-Signature", v, sizeof v), want);
    cr_expect_str_eq(strstr(req, "\r\n\r\n") + 4, body);
    cr_expect_null(req_header(req, "Expect", v, sizeof v));
    rcv_free(s);
}

Test(callback_send, unsigned_without_a_key)
{
    configure(listed_loopback, NULL);
    rcv *s = rcv_new((int[]){200, 0});
    char url[128], v[256];
    rcv_url(s, "127.0.0.1", url, sizeof url);
    jobs_callback_send(url, "r-2", "{}", 2);
    cr_assert(wait_count_on(&g_mu, &g_cv, &s->requests, 1, 5000) >= 1);
    cr_assert(inflight_zero_within(5000));
    cr_expect_null(req_header(s->req[0], "X-Kailash-Signature", v, sizeof v));
    cr_expect_str_eq(req_header(s->req[0], "X-Kailash-Run-ID", v, sizeof v), "r-2");
    rcv_free(s);
}

Test(callback_send, retried_after_500s_then_delivered)
{
    configure(listed_loopback, NULL);
    rcv *s = rcv_new((int[]){500, 500, 200, 0});
    char url[128];
    rcv_url(s, "127.0.0.1", url, sizeof url);
    jobs_callback_send(url, "r-3", "{\"a\":1}", 7);
    cr_assert(wait_count_on(&g_mu, &g_cv, &s->requests, 3, 10000) >= 3);
    cr_assert(inflight_zero_within(5000));
    usleep(300000);
    cr_expect_eq(rcv_requests(s), 3);
    for (int i = 0; i < 3; i++)
        cr_expect_str_eq(strstr(s->req[i], "\r\n\r\n") + 4, "{\"a\":1}");
    rcv_free(s);
}

Test(callback_send, gives_up_after_max_attempts)
{
    cfg->jobs_callback_max_attempts = 4;
    setenv("KCB_TEST_KEY", SECRET, 1);
    configure(listed_loopback, "KCB_TEST_KEY");
    log_capture();
    rcv *s = rcv_new((int[]){500, 0});
    char url[128];
    rcv_url(s, "127.0.0.1", url, sizeof url);
    jobs_callback_send(url, "r-4", "{\"secret_output\":1}", 19);
    cr_assert(wait_count_on(&g_mu, &g_cv, &s->requests, 4, 10000) >= 4);
    cr_assert(inflight_zero_within(5000));
    usleep(500000);
    cr_expect_eq(rcv_requests(s), 4);
    rcv_free(s);
    char *log = log_text();
    const char *line = strstr(log, "callback for run r-4 ");
    cr_expect(line && strstr(line, "after 4 attempts: HTTP 500"), "%s", log);
    cr_expect(line && !strstr(line + 1, "callback for run r-4 "), "more than one line: %s", log);
    cr_expect(!strstr(log, "secret_output") && !strstr(log, SECRET) && !strstr(log, "token=abc") &&
                  !strstr(log, "sha256="),
              "%s", log);
    free(log);
    unlink(g_logpath);
}

Test(callback_send, non_2xx_is_a_failure)
{
    cfg->jobs_callback_max_attempts = 2;
    configure(listed_loopback, NULL);
    rcv *s = rcv_new((int[]){302, 404, 200, 0}); /* a redirect is not followed, a 404 is retried */
    char url[128];
    rcv_url(s, "127.0.0.1", url, sizeof url);
    jobs_callback_send(url, "r-5", "{}", 2);
    cr_assert(wait_count_on(&g_mu, &g_cv, &s->requests, 2, 10000) >= 2);
    cr_assert(inflight_zero_within(5000));
    usleep(300000);
    cr_expect_eq(rcv_requests(s), 2);
    rcv_free(s);
}

Test(callback_send, connection_refused_is_retried)
{
    cfg->jobs_callback_max_attempts = 3;
    configure(listed_loopback, NULL);
    rcv *s = rcv_new((int[]){200, 0});
    char url[128];
    rcv_url(s, "127.0.0.1", url, sizeof url);
    rcv_free(s); /* nobody listens there now */
    jobs_callback_send(url, "r-6", "{}", 2);
    cr_expect(inflight_zero_within(5000));
}

Test(callback_send, timeout_is_retried)
{
    cfg->jobs_callback_max_attempts = 2;
    cfg->jobs_callback_timeout_ms = 200;
    configure(listed_loopback, NULL);
    rcv *s = rcv_new((int[]){200, 0});
    s->hang = 1;
    char url[128];
    rcv_url(s, "127.0.0.1", url, sizeof url);
    jobs_callback_send(url, "r-7", "{}", 2);
    cr_assert(wait_count_on(&g_mu, &g_cv, &s->requests, 2, 5000) >= 2);
    cr_expect(inflight_zero_within(3000));
    rcv_free(s);
}

/* A name that resolves to loopback, not listed: accepted (a name), refused at connect time. */
Test(callback_send, rebinding_name_refused_at_connect)
{
    configure(NULL, NULL);
    log_capture();
    rcv *s = rcv_new((int[]){200, 0});
    char url[128], err[256];
    rcv_url(s, "localhost", url, sizeof url);
    cr_assert_eq(jobs_callback_check(url, err, sizeof err), 0, "%s", err);
    jobs_callback_send(url, "r-8", "{}", 2);
    cr_expect(inflight_zero_within(5000)); /* final at once: no retries */
    usleep(200000);
    cr_expect_eq(rcv_requests(s), 0);
    rcv_free(s);
    char *log = log_text();
    cr_expect(strstr(log, "r-8") && strstr(log, "after 1 attempt: the host's address is a loopback"), "%s", log);
    free(log);
    unlink(g_logpath);
}

Test(callback_send, listed_name_may_be_loopback)
{
    const char *list[] = {"localhost", NULL};
    configure(list, NULL);
    rcv *s = rcv_new((int[]){200, 0});
    char url[128];
    rcv_url(s, "localhost", url, sizeof url);
    jobs_callback_send(url, "r-9", "{}", 2);
    cr_expect(wait_count_on(&g_mu, &g_cv, &s->requests, 1, 5000) >= 1);
    cr_expect(inflight_zero_within(5000));
    rcv_free(s);
}

/* Sent with one allow list, which a reload changed before delivery: judged again at send. */
Test(callback_send, refused_at_send_when_no_longer_allowed)
{
    configure(NULL, NULL);
    rcv *s = rcv_new((int[]){200, 0});
    char url[128];
    rcv_url(s, "127.0.0.1", url, sizeof url);
    jobs_callback_send(url, "r-10", "{}", 2);
    cr_expect_eq(jobs_callback_inflight(), 0);
    usleep(100000);
    cr_expect_eq(rcv_requests(s), 0);
    rcv_free(s);
}

Test(callback_send, stop_cancels_pending_retries_and_transfers)
{
    setenv("KAILASH_CALLBACK_BACKOFF_MS", "60000", 1);
    configure(listed_loopback, NULL);
    rcv *fail = rcv_new((int[]){500, 0});
    rcv *hang = rcv_new((int[]){200, 0});
    hang->hang = 1;
    char url[128];
    for (int i = 0; i < 4; i++) {
        rcv_url(i % 2 ? hang : fail, "127.0.0.1", url, sizeof url);
        jobs_callback_send(url, "r-11", "{}", 2);
    }
    cr_assert(wait_count_on(&g_mu, &g_cv, &fail->requests, 2, 5000) >= 2);
    cr_assert(wait_count_on(&g_mu, &g_cv, &hang->requests, 2, 5000) >= 2);
    usleep(50000);
    cr_expect_eq(jobs_callback_inflight(), 4);
    jobs_callback_stop();
    cr_expect_eq(jobs_callback_inflight(), 0);
    jobs_callback_send(url, "r-12", "{}", 2); /* refused after stop */
    cr_expect_eq(jobs_callback_inflight(), 0);
    rcv_free(fail);
    rcv_free(hang);
}

/* The loops stop first (no jobs_callback_stop): their stop hooks end what is left. */
Test(callback_send, loop_stop_ends_callbacks)
{
    setenv("KAILASH_CALLBACK_BACKOFF_MS", "60000", 1);
    configure(listed_loopback, NULL);
    rcv *fail = rcv_new((int[]){500, 0});
    rcv *hang = rcv_new((int[]){200, 0});
    hang->hang = 1;
    char url[128];
    rcv_url(fail, "127.0.0.1", url, sizeof url);
    jobs_callback_send(url, "r-13", "{}", 2);
    rcv_url(hang, "127.0.0.1", url, sizeof url);
    jobs_callback_send(url, "r-14", "{}", 2);
    cr_assert(wait_count_on(&g_mu, &g_cv, &fail->requests, 1, 5000) >= 1);
    cr_assert(wait_count_on(&g_mu, &g_cv, &hang->requests, 1, 5000) >= 1);
    engine_stop();
    engine_up = 0;
    cr_expect_eq(jobs_callback_inflight(), 0);
    jobs_callback_send(url, "r-15", "{}", 2); /* no loops: dropped with a log line */
    cr_expect_eq(jobs_callback_inflight(), 0);
    rcv_free(fail);
    rcv_free(hang);
}

Test(callback_send, many_at_once)
{
    configure(listed_loopback, NULL);
    rcv *s = rcv_new((int[]){200, 0});
    char url[128];
    rcv_url(s, "127.0.0.1", url, sizeof url);
    for (int i = 0; i < 12; i++)
        jobs_callback_send(url, "r-16", "{}", 2);
    cr_expect(wait_count_on(&g_mu, &g_cv, &s->requests, 12, 10000) >= 12);
    cr_expect(inflight_zero_within(5000));
    rcv_free(s);
}
