/* jwks_fetch: auth.jwt.jwks_url fetched on the engine's first I/O loop (src/middleware/jwks_fetch.c),
 * against a real HTTP server in the test: one thread on 127.0.0.1 (port chosen by the kernel) that
 * answers each connection with the canned answer set last and counts the requests. Its socket is
 * bound before it listens, so "the server is down" is a refused connection on the port it will
 * later serve. The key sets are real JWKS documents: EC P-256 and RSA keys made with OpenSSL. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "test_config_dir.h"
#include "wait_count.h"
#include "jwk_make.h"
#include "kailash/auth.h"
#include "kailash/engine.h"
#include "kailash/util.h"

/* ---- the server ---- */

typedef struct srv {
    int fd, port, wake[2];
    int listening;
    pthread_t thread;
    /* under g_mu */
    int requests;
    int status;
    char *body;
    size_t body_len;
    char cache_control[64]; /* "" : no Cache-Control header */
    int no_length;          /* close-delimited body, no Content-Length */
    int hang;               /* read the request, never answer */
} srv;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;

/* Waits for c to be readable: 1, or 0 when the server stops or ms pass. */
static int srv_wait(srv *s, int c, int ms)
{
    struct pollfd p[2] = {{.fd = c, .events = POLLIN}, {.fd = s->wake[0], .events = POLLIN}};
    int n = poll(p, 2, ms);
    return n > 0 && !p[1].revents && p[0].revents;
}

static void send_all(int c, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(c, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return; /* the client gave up (an over-size answer): fine */
        p += w;
        n -= (size_t)w;
    }
}

static void srv_serve(srv *s, int c)
{
    char req[8192];
    size_t n = 0;
    while (!memmem(req, n, "\r\n\r\n", 4)) {
        if (n == sizeof req || !srv_wait(s, c, 5000))
            return;
        ssize_t r = recv(c, req + n, sizeof req - n, 0);
        if (r <= 0)
            return;
        n += (size_t)r;
    }
    pthread_mutex_lock(&g_mu);
    s->requests++;
    pthread_cond_broadcast(&g_cv);
    int status = s->status, hang = s->hang, no_length = s->no_length;
    size_t len = s->body_len;
    char *body = malloc(len + 1);
    memcpy(body, s->body ? s->body : "", len);
    char cc[128] = "";
    if (s->cache_control[0])
        snprintf(cc, sizeof cc, "Cache-Control: %s\r\n", s->cache_control);
    pthread_mutex_unlock(&g_mu);
    if (hang) {
        srv_wait(s, c, 30000); /* until the client closes or the server stops */
    } else {
        char head[512], clen[64] = "";
        if (!no_length)
            snprintf(clen, sizeof clen, "Content-Length: %zu\r\n", len);
        int hn = snprintf(head, sizeof head, "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n%s%sConnection: close\r\n\r\n",
                          status, clen, cc);
        send_all(c, head, (size_t)hn);
        send_all(c, body, len);
    }
    free(body);
}

static void *srv_main(void *arg)
{
    srv *s = arg;
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
        srv_serve(s, c);
        close(c);
    }
    return NULL;
}

/* A server answering status with body (cache_control NULL: none). Bound at once; listening only if
 * listen_now (else srv_listen later). */
static srv *srv_new(int listen_now)
{
    srv *s = calloc(1, sizeof *s);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert(s->fd >= 0 && bind(s->fd, (struct sockaddr *)&a, sizeof a) == 0);
    cr_assert(getsockname(s->fd, (struct sockaddr *)&a, &alen) == 0);
    s->port = ntohs(a.sin_port);
    cr_assert(pipe(s->wake) == 0);
    s->status = 200;
    if (listen_now) {
        cr_assert(listen(s->fd, 16) == 0);
        cr_assert(pthread_create(&s->thread, NULL, srv_main, s) == 0);
        s->listening = 1;
    }
    return s;
}

static void srv_listen(srv *s)
{
    cr_assert(listen(s->fd, 16) == 0);
    cr_assert(pthread_create(&s->thread, NULL, srv_main, s) == 0);
    s->listening = 1;
}

/* The answer from now on: status, body (copied; NULL: empty), Cache-Control (NULL: none). */
static void srv_set(srv *s, int status, const char *body, const char *cache_control)
{
    pthread_mutex_lock(&g_mu);
    free(s->body);
    s->body = body ? strdup(body) : NULL;
    s->body_len = body ? strlen(body) : 0;
    s->status = status;
    snprintf(s->cache_control, sizeof s->cache_control, "%s", cache_control ? cache_control : "");
    pthread_mutex_unlock(&g_mu);
}

static int srv_requests(srv *s)
{
    pthread_mutex_lock(&g_mu);
    int n = s->requests;
    pthread_mutex_unlock(&g_mu);
    return n;
}

static int srv_wait_requests(srv *s, int n, int ms)
{
    return wait_count_on(&g_mu, &g_cv, &s->requests, n, ms);
}

static void srv_free(srv *s)
{
    if (s->listening) {
        cr_assert(write(s->wake[1], "x", 1) == 1);
        pthread_join(s->thread, NULL);
    }
    close(s->fd);
    close(s->wake[0]);
    close(s->wake[1]);
    free(s->body);
    free(s);
}

static void srv_url(const srv *s, char *out, size_t n)
{
    snprintf(out, n, "http://127.0.0.1:%d/.well-known/jwks.json", s->port);
}

/* ---- JWKS documents ---- */

static json_t *jwk_ec(const char *kid)
{
    EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    cr_assert_not_null(pk);
    json_t *k = jwk_ec_of(pk, kid);
    json_object_set_new(k, "use", json_string("sig"));
    json_object_set_new(k, "alg", json_string("ES256"));
    EVP_PKEY_free(pk);
    return k;
}

static json_t *jwk_rsa(const char *kid)
{
    EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    cr_assert_not_null(pk);
    json_t *k = jwk_rsa_of(pk, kid);
    json_object_set_new(k, "alg", json_string("RS256"));
    EVP_PKEY_free(pk);
    return k;
}

/* {"keys": [...]} with n EC keys (kids "<prefix>1".."<prefix>n"), and one RSA key "<prefix>rsa" if
 * rsa. Caller frees. */
static char *jwks_doc(const char *prefix, int n, int rsa)
{
    json_t *keys = json_array();
    char kid[32];
    for (int i = 1; i <= n; i++) {
        snprintf(kid, sizeof kid, "%s%d", prefix, i);
        json_array_append_new(keys, jwk_ec(kid));
    }
    if (rsa) {
        snprintf(kid, sizeof kid, "%srsa", prefix);
        json_array_append_new(keys, jwk_rsa(kid));
    }
    json_t *doc = json_pack("{s:o}", "keys", keys);
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    return text;
}

static void srv_set_keys(srv *s, int n, const char *cache_control)
{
    char *doc = jwks_doc("k", n, 0);
    srv_set(s, 200, doc, cache_control);
    free(doc);
}

/* ---- the engine and the fetcher ---- */

static kconfig *cfg;
static char dir[64];
static int engine_up;

static void setup(void)
{
    cfg = test_config_dir(dir, "/tmp/kjwksXXXXXX");
    cfg->workers = 1;
    char err[256];
    cr_assert_eq(engine_start(cfg, err, sizeof err), 0, "%s", err);
    engine_up = 1;
}

static void teardown(void)
{
    jwks_remote_stop();
    if (engine_up)
        engine_stop();
    config_free(cfg);
}

TestSuite(jwks, .init = setup, .fini = teardown, .timeout = 60);

static void configure(const char *url, int min_refresh_s)
{
    jwks_remote_opts o = {.url = url, .min_refresh_s = min_refresh_s, .verify_tls = 1, .connect_timeout_ms = 2000};
    char err[256] = "";
    cr_assert_eq(jwks_remote_configure(&o, err, sizeof err), 0, "%s: %s", url ? url : "(null)", err);
}

static void configure_srv(const srv *s, int min_refresh_s)
{
    char url[128];
    srv_url(s, url, sizeof url);
    configure(url, min_refresh_s);
}

/* Keys held now (0 when none). */
static size_t keys_held(void)
{
    jwt_keyset *ks = jwks_remote_acquire();
    size_t n = ks ? jwt_keyset_count(ks) : 0;
    jwt_keyset_release(ks);
    return n;
}

/* Polls until n keys are held, at most ms. Returns the last count. */
static size_t wait_keys(size_t n, int ms)
{
    double end = util_now_ms() + ms;
    size_t have;
    while ((have = keys_held()) != n && util_now_ms() < end)
        usleep(20 * 1000);
    return have;
}

/* Polls until the state is 0 with a failure (not "not fetched yet"), at most ms; why gets it. */
static int wait_failure(char *why, size_t whylen, int ms)
{
    double end = util_now_ms() + ms;
    int st;
    while (((st = jwks_remote_state(why, whylen)) != 0 || strncmp(why, "fetch failed", 12) != 0) &&
           util_now_ms() < end)
        usleep(20 * 1000);
    return st;
}

/* ---- configure ---- */

static void refused(const char *url, const char *want)
{
    jwks_remote_opts o = {.url = url, .min_refresh_s = 60, .verify_tls = 1, .connect_timeout_ms = 2000};
    char err[256] = "";
    cr_assert_eq(jwks_remote_configure(&o, err, sizeof err), -1, "%s was accepted", url);
    cr_assert(strstr(err, want), "%s: %s", url, err);
    cr_assert_eq(jwks_remote_state(NULL, 0), -1, "%s: a refused URL configures nothing", url);
}

Test(jwks, configure_refuses_urls_of_the_wrong_kind)
{
    const char *kind = "auth.jwt.jwks_url: expected an https:// URL, or http:// on a loopback address";
    refused("http://keys.example.com/jwks.json", kind);
    refused("http://127.0.0.1.example.com/jwks.json", kind);
    refused("http://localhost.example.com/jwks.json", kind);
    refused("http://10.0.0.1/jwks.json", kind);
    refused("ftp://127.0.0.1/jwks.json", kind);
    refused("file:///etc/passwd", kind);
    refused("keys.example.com/jwks.json", kind);
    refused("not a url at all", kind);
    refused("", kind);
    refused("https://user:secret@keys.example.com/jwks.json", "a user name or password in the URL is not allowed");
    refused("https://user@keys.example.com/jwks.json", "a user name or password");
    refused("http://user:secret@127.0.0.1/jwks.json", "a user name or password");
}

Test(jwks, configure_accepts_https_and_loopback_http)
{
    /* nothing listens on port 1: these fail to fetch, which is not what is tested here */
    const char *ok[] = {"https://127.0.0.1:1/jwks.json", "http://127.0.0.1:1/jwks.json", "http://127.9.8.7:1/",
                        "http://[::1]:1/jwks.json", "http://localhost:1/jwks.json", "HTTP://LOCALHOST:1/x"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        configure(ok[i], 60);
        cr_assert_eq(jwks_remote_state(NULL, 0), 0, "%s", ok[i]);
    }
}

Test(jwks, configure_without_loops_fails)
{
    engine_stop();
    engine_up = 0;
    jwks_remote_opts o = {.url = "https://127.0.0.1:1/jwks.json", .min_refresh_s = 60, .verify_tls = 1};
    char err[256] = "";
    cr_assert_eq(jwks_remote_configure(&o, err, sizeof err), -1);
    cr_assert(strstr(err, "I/O loops"), "%s", err);
}

Test(jwks, not_configured_is_minus_one)
{
    char why[128] = "x";
    cr_assert_eq(jwks_remote_state(why, sizeof why), -1);
    cr_assert_null(jwks_remote_acquire());
    jwks_remote_poke(); /* nothing to poke: must not crash */
}

/* ---- fetching ---- */

Test(jwks, first_fetch_gives_keys)
{
    srv *s = srv_new(1);
    char *doc = jwks_doc("k", 1, 1); /* one EC key and one RSA key */
    srv_set(s, 200, doc, "max-age=3600");
    free(doc);
    char why[256];
    configure_srv(s, 60);
    cr_assert_eq(wait_keys(2, 10000), 2);
    cr_assert_eq(jwks_remote_state(why, sizeof why), 1);
    cr_assert_eq(srv_requests(s), 1);
    jwt_keyset *a = jwks_remote_acquire(), *b = jwks_remote_acquire();
    cr_assert(a && a == b, "the same set, one reference each");
    jwt_keyset_release(a);
    jwt_keyset_release(b);
    jwks_remote_stop();
    cr_assert_eq(jwks_remote_state(why, sizeof why), -1);
    cr_assert_null(jwks_remote_acquire());
    srv_free(s);
}

Test(jwks, server_down_at_first_then_up)
{
    srv *s = srv_new(0); /* bound, not listening: connections are refused */
    srv_set_keys(s, 2, "max-age=3600");
    char why[256] = "";
    configure_srv(s, 60);
    cr_assert_eq(wait_failure(why, sizeof why, 10000), 0, "state 0 with a failure; why: %s", why);
    cr_assert(strstr(why, "could not connect"), "%s", why);
    cr_assert_null(jwks_remote_acquire());
    srv_listen(s);
    cr_assert_eq(wait_keys(2, 15000), 2, "keys after the backoff");
    cr_assert_eq(jwks_remote_state(why, sizeof why), 1);
    srv_free(s);
}

Test(jwks, not_fetched_yet_before_the_first_answer)
{
    srv *s = srv_new(1);
    pthread_mutex_lock(&g_mu);
    s->hang = 1;
    pthread_mutex_unlock(&g_mu);
    char why[256] = "";
    configure_srv(s, 60);
    cr_assert_eq(srv_wait_requests(s, 1, 10000), 1);
    cr_assert_eq(jwks_remote_state(why, sizeof why), 0);
    cr_assert_str_eq(why, "not fetched yet");
    jwks_remote_stop(); /* cancels the transfer in flight */
    cr_assert_eq(jwks_remote_state(why, sizeof why), -1);
    srv_free(s);
}

Test(jwks, max_age_is_honoured)
{
    srv *s = srv_new(1);
    srv_set_keys(s, 1, "public, max-age=1, must-revalidate");
    configure_srv(s, 1);
    cr_assert_eq(srv_wait_requests(s, 3, 10000), 3, "refreshed after max-age=1");
    srv_set_keys(s, 3, "max-age=1");
    cr_assert_eq(wait_keys(3, 10000), 3, "the refreshed keys replace the old ones");
    srv_free(s);
}

Test(jwks, max_age_under_min_refresh_is_raised_to_it)
{
    srv *s = srv_new(1);
    srv_set_keys(s, 1, "max-age=0");
    configure_srv(s, 60);
    cr_assert_eq(wait_keys(1, 10000), 1);
    usleep(2500 * 1000);
    cr_assert_eq(srv_requests(s), 1, "max-age=0 waits min_refresh_s");
    srv_free(s);
}

Test(jwks, failed_refresh_keeps_the_keys)
{
    srv *s = srv_new(1);
    srv_set_keys(s, 2, "max-age=1");
    configure_srv(s, 1);
    cr_assert_eq(wait_keys(2, 10000), 2);
    jwt_keyset *before = jwks_remote_acquire();
    int n = srv_requests(s);
    srv_set(s, 500, "{\"error\": \"down\"}", NULL);
    cr_assert_geq(srv_wait_requests(s, n + 2, 10000), n + 2, "retried after a failure");
    char why[256];
    cr_assert_eq(jwks_remote_state(why, sizeof why), 1, "keys still held");
    jwt_keyset *now = jwks_remote_acquire();
    cr_assert_eq(now, before, "the same set as before the failures");
    cr_assert_eq(jwt_keyset_count(now), 2);
    jwt_keyset_release(now);
    jwt_keyset_release(before);
    srv_set_keys(s, 3, "max-age=3600");
    cr_assert_eq(wait_keys(3, 10000), 3, "recovers with the next answer");
    srv_free(s);
}

Test(jwks, poke_waits_for_min_refresh)
{
    srv *s = srv_new(1);
    srv_set_keys(s, 1, "max-age=3600");
    configure_srv(s, 2);
    cr_assert_eq(wait_keys(1, 10000), 1);
    srv_set_keys(s, 2, "max-age=3600");
    jwks_remote_poke();
    jwks_remote_poke();
    usleep(500 * 1000);
    cr_assert_eq(srv_requests(s), 1, "a poke within min_refresh_s does nothing");
    double end = util_now_ms() + 10000;
    while (srv_requests(s) < 2 && util_now_ms() < end) {
        jwks_remote_poke();
        usleep(50 * 1000);
    }
    cr_assert_eq(wait_keys(2, 5000), 2, "a poke after min_refresh_s fetches");
    usleep(300 * 1000);
    cr_assert_eq(srv_requests(s), 2, "one fetch for many pokes");
    srv_free(s);
}

Test(jwks, over_size_answer_is_refused)
{
    srv *s = srv_new(1);
    size_t n = 1024 * 1024 + 1;
    char *big = malloc(n + 1);
    memset(big, ' ', n);
    big[n] = '\0';
    srv_set(s, 200, big, NULL);
    char why[256] = "";
    configure_srv(s, 60);
    cr_assert_eq(wait_failure(why, sizeof why, 10000), 0, "%s", why);
    cr_assert(strstr(why, "larger than 1 MiB"), "announced length: %s", why);
    pthread_mutex_lock(&g_mu);
    s->no_length = 1; /* now the body callback must hold the limit */
    pthread_mutex_unlock(&g_mu);
    int seen = srv_requests(s);
    jwks_remote_configure(&(jwks_remote_opts){.url = NULL}, NULL, 0);
    configure_srv(s, 60);
    cr_assert_eq(srv_wait_requests(s, seen + 1, 10000), seen + 1);
    cr_assert_eq(wait_failure(why, sizeof why, 10000), 0, "%s", why);
    cr_assert(strstr(why, "larger than 1 MiB"), "close-delimited: %s", why);
    cr_assert_null(jwks_remote_acquire());
    free(big);
    srv_free(s);
}

Test(jwks, non_200_is_refused)
{
    srv *s = srv_new(1);
    char *doc = jwks_doc("k", 1, 0);
    srv_set(s, 404, doc, NULL); /* a key set, but not with 200 */
    free(doc);
    char why[256] = "";
    configure_srv(s, 60);
    cr_assert_eq(wait_failure(why, sizeof why, 10000), 0, "%s", why);
    cr_assert(strstr(why, "404"), "%s", why);
    cr_assert_null(jwks_remote_acquire());
    srv_free(s);
}

Test(jwks, a_bad_document_is_refused_without_quoting_it)
{
    srv *s = srv_new(1);
    srv_set(s, 200, "{\"keys\": [SECRET-LOOKING-BODY", NULL);
    char why[256] = "";
    configure_srv(s, 60);
    cr_assert_eq(wait_failure(why, sizeof why, 10000), 0, "%s", why);
    cr_assert(strstr(why, "not JSON"), "%s", why);
    cr_assert_null(strstr(why, "SECRET"), "the body is not quoted: %s", why);
    srv_set(s, 200, "{\"keys\": [{\"kty\": \"EC\", \"kid\": \"SECRET-KID\"}]}", NULL);
    double end = util_now_ms() + 10000;
    while (!strstr(why, "JWKS") && util_now_ms() < end) { /* the retry after 1 s */
        usleep(20 * 1000);
        jwks_remote_state(why, sizeof why);
    }
    cr_assert(strstr(why, "not a usable JWKS document"), "%s", why);
    cr_assert_null(strstr(why, "SECRET"), "the body is not quoted: %s", why);
    cr_assert_eq(jwks_remote_state(NULL, 0), 0);
    srv_free(s);
}

/* stderr (the daemon's log) into a pipe until log_end, which returns what was written (caller frees). */
static int log_pipe[2], log_saved = -1;

static void log_begin(void)
{
    cr_assert(pipe(log_pipe) == 0);
    log_saved = dup(2);
    cr_assert(dup2(log_pipe[1], 2) == 2);
    close(log_pipe[1]);
}

static char *log_end(void)
{
    dup2(log_saved, 2); /* the pipe's last writer goes: reading ends at its end */
    close(log_saved);
    buf b = {0};
    char chunk[4096];
    ssize_t n;
    while ((n = read(log_pipe[0], chunk, sizeof chunk)) > 0)
        buf_append(&b, chunk, (size_t)n);
    close(log_pipe[0]);
    buf_terminate(&b);
    return b.data ? b.data : strdup("");
}

static int count_of(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

Test(jwks, a_failure_streak_is_logged_once_without_the_body)
{
    srv *s = srv_new(1);
    srv_set(s, 500, "{\"error\": \"SECRET-BODY\"}", NULL);
    log_begin();
    configure_srv(s, 1);
    int got = srv_wait_requests(s, 3, 10000); /* the first try, then after 1 s and 2 s */
    srv_set_keys(s, 1, "max-age=3600");
    size_t held = wait_keys(1, 10000);
    char *log = log_end();
    cr_assert_eq(got, 3);
    cr_assert_eq(held, 1);
    cr_assert_eq(count_of(log, "fetch failed"), 1, "one warning for the streak: %s", log);
    cr_assert(strstr(log, "auth.jwt.jwks_url: fetch failed: the server answered HTTP 500; no keys yet"), "%s", log);
    cr_assert_eq(count_of(log, "1 key fetched"), 1, "%s", log);
    cr_assert_null(strstr(log, "SECRET"), "%s", log);
    free(log);
    srv_free(s);
}

/* ---- reconfiguring and stopping ---- */

Test(jwks, reconfigure_same_url_keeps_keys_other_url_drops_them)
{
    srv *a = srv_new(1), *b = srv_new(1);
    srv_set_keys(a, 1, "max-age=3600");
    srv_set_keys(b, 2, "max-age=3600");
    configure_srv(a, 60);
    cr_assert_eq(wait_keys(1, 10000), 1);
    jwt_keyset *ks = jwks_remote_acquire();
    configure_srv(a, 30); /* reload, same URL */
    jwt_keyset *same = jwks_remote_acquire();
    cr_assert_eq(same, ks, "the same URL keeps the keys");
    usleep(300 * 1000);
    cr_assert_eq(srv_requests(a), 1, "and fetches nothing");
    jwt_keyset_release(same);
    configure_srv(b, 60);
    jwt_keyset *now = jwks_remote_acquire();
    cr_assert(now != ks, "another URL drops the keys at once");
    jwt_keyset_release(now);
    cr_assert_eq(wait_keys(2, 10000), 2, "and fetches the new one");
    cr_assert_eq(srv_requests(b), 1);
    cr_assert_eq(jwt_keyset_count(ks), 1, "a reference taken before stays valid");
    jwt_keyset_release(ks);
    configure(NULL, 60);
    cr_assert_eq(jwks_remote_state(NULL, 0), -1, "no URL: not configured");
    cr_assert_null(jwks_remote_acquire());
    srv_free(a);
    srv_free(b);
}

Test(jwks, engine_stops_first_with_a_transfer_in_flight)
{
    srv *s = srv_new(1);
    pthread_mutex_lock(&g_mu);
    s->hang = 1;
    pthread_mutex_unlock(&g_mu);
    configure_srv(s, 60);
    cr_assert_eq(srv_wait_requests(s, 1, 10000), 1);
    engine_stop(); /* the transfer ends with UP_STOPPING, then the fetcher detaches */
    engine_up = 0;
    cr_assert_eq(jwks_remote_state(NULL, 0), 0);
    jwks_remote_poke(); /* no loop: nothing */
    jwks_remote_stop();
    cr_assert_eq(jwks_remote_state(NULL, 0), -1);
    srv_free(s);
}

Test(jwks, engine_stops_first_with_the_timer_pending_then_restarts)
{
    srv *s = srv_new(1);
    srv_set_keys(s, 1, "max-age=3600");
    configure_srv(s, 60);
    cr_assert_eq(wait_keys(1, 10000), 1);
    engine_stop(); /* the refresh timer fires early during the loop's destroy: it must not fetch */
    engine_up = 0;
    cr_assert_eq(jwks_remote_state(NULL, 0), 1, "keys held while stopped");
    cr_assert_eq(srv_requests(s), 1);
    char err[256];
    cr_assert_eq(engine_start(cfg, err, sizeof err), 0, "%s", err);
    engine_up = 1;
    srv_set_keys(s, 2, "max-age=3600");
    configure_srv(s, 60); /* the same URL on a new loop: fetched again */
    cr_assert_eq(wait_keys(2, 10000), 2);
    srv_free(s);
}
