/* callback: callback_url (jobs.h), what is allowed and how it is signed. The delivery itself (the
 * POST on an I/O loop, retries, shutdown) is callback_send.c.
 *
 * What a receiver sees (API.md's style, for the README):
 *
 *   POST <callback_url>
 *   Content-Type: application/json
 *   User-Agent: kailashd/<version>
 *   X-Kailash-Run-ID: <run_id>
 *   X-Kailash-Signature: sha256=<lowercase hex HMAC-SHA256(key, body)>   (only with a key)
 *
 *   body: the run's final record, as GET /runs/{id} answers it. Any 2xx is delivered; anything
 *   else (connection error, timeout after jobs.callback_timeout_ms, another status) is tried again
 *   after a backoff with full jitter (a random delay in [0, min(60 s, 500 ms * 2^(try-1))]) up to
 *   jobs.callback_max_attempts tries, then given up with one warning in the log. Redirects are not
 *   followed; the answer's body is read and dropped (at most 64 KiB of it).
 *
 *   "jobs": {"callback_max_attempts": 8, "callback_timeout_ms": 10000,
 *            "callback_allow_hosts": [], "callback_secret_env": null}
 *
 *   callback_secret_env names the environment variable holding the HMAC key (at least 16 bytes; the
 *   daemon refuses to start when the variable is named but missing or shorter). Receivers verify
 *   the signature over the raw body bytes with a constant-time comparison.
 *
 * Which URLs: http:// or https://, no user name or password (it would be kept in run records), at
 * most 2048 characters; when callback_allow_hosts is not empty, only those hosts (case-insensitive,
 * exact). A loopback (127/8, ::1), link-local (169.254/16, fe80::/10) or unspecified (0/8, ::)
 * address, IPv4-mapped forms included, is refused unless listed: at accept when the URL names it
 * as a literal (libcurl's parser turns 2130706433 or 0x7f.1 into 127.0.0.1 first), and again at
 * connect time for whatever a name resolved to (DNS rebinding: the name may point elsewhere by
 * then). Private ranges (10/8, 192.168/16 ...) are the allow list's business.
 *
 * The configuration is one snapshot under a mutex, swapped whole by configure (start and reload);
 * a callback copies what it needs when it is sent, so a reload changes the callbacks sent after it.
 * The key is wiped when its snapshot goes and never printed. */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kailash/jobs.h"
#include "kailash/util.h"
#include "jobs_internal.h"

#define CB_KEY "callback_url"
#define CB_MAX_URL 2048
#define CB_MIN_SECRET 16
#define CB_DEFAULT_BACKOFF_MS 500.0


typedef struct cb_conf {
    int max_attempts;
    long timeout_ms;
    long connect_timeout_ms;
    double backoff_ms;
    int verify_tls;
    char **hosts;
    size_t nhosts;
    unsigned char *key; /* NULL: unsigned */
    size_t keylen;
} cb_conf;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static cb_conf *g_conf; /* under g_mu; NULL: the defaults */
static const cb_conf g_defaults = {.max_attempts = 8,
                                   .timeout_ms = 10000,
                                   .connect_timeout_ms = 2000,
                                   .backoff_ms = CB_DEFAULT_BACKOFF_MS,
                                   .verify_tls = 1};

/* ---- addresses ---- */

static int cb_v4_forbidden(const unsigned char *a)
{
    return a[0] == 127 || a[0] == 0 || (a[0] == 169 && a[1] == 254);
}

/* ::ffff:0:0/96 (mapped) and ::/96 (the old "compatible" form, :: and ::1 among them) carry an
 * IPv4 address in their last 4 bytes: judged as that address. */
static int cb_v6_forbidden(const unsigned char *a)
{
    static const unsigned char zero[12];
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(a, zero, 12) == 0 || memcmp(a, mapped, 12) == 0)
        return cb_v4_forbidden(a + 12);
    return a[0] == 0xfe && (a[1] & 0xc0) == 0x80;
}

/* The bytes of a textual address (a zone id after '%' ignored): 4, 16, or 0 when ip is not one. */
static int cb_ip_parse(const char *ip, unsigned char out[16])
{
    char t[64];
    size_t n = strcspn(ip, "%");
    if (n >= sizeof t)
        return 0;
    memcpy(t, ip, n);
    t[n] = '\0';
    if (inet_pton(AF_INET, t, out) == 1)
        return 4;
    return inet_pton(AF_INET6, t, out) == 1 ? 16 : 0;
}

/* 1 when ip is a loopback, link-local or unspecified address, 0 when it is another, -1 when it is
 * not an address. */
int jobs_cb_ip_forbidden(const char *ip)
{
    unsigned char a[16];
    int n = ip ? cb_ip_parse(ip, a) : 0;
    return n == 4 ? cb_v4_forbidden(a) : n == 16 ? cb_v6_forbidden(a) : -1;
}

/* host without IPv6 brackets and one trailing dot, into out. -1 when it does not fit. */
static int cb_host_norm(const char *host, char *out, size_t cap)
{
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']')
        host++, n -= 2;
    if (n > 1 && host[n - 1] == '.')
        n--;
    if (n >= cap)
        return -1;
    memcpy(out, host, n);
    out[n] = '\0';
    return 0;
}

/* Whether host (normalised) is one of the allow list's: the same name regardless of case, or the
 * same address however written (::1 and 0:0:0:0:0:0:0:1). */
static int cb_listed_locked(const cb_conf *c, const char *host)
{
    unsigned char a[16], b[16];
    int na = cb_ip_parse(host, a);
    for (size_t i = 0; i < c->nhosts; i++) {
        char e[256];
        if (cb_host_norm(c->hosts[i], e, sizeof e) != 0)
            continue;
        if (strcasecmp(e, host) == 0)
            return 1;
        if (na && cb_ip_parse(e, b) == na && memcmp(a, b, (size_t)na) == 0)
            return 1;
    }
    return 0;
}

/* ---- the URL ---- */

static int cb_has_part(CURLU *u, CURLUPart what)
{
    char *p = NULL;
    int has = curl_url_get(u, what, &p, 0) == CURLUE_OK && p;
    curl_free(p);
    return has;
}

/* url's host, normalised, into host; the rules of the top comment, judged against c. */
static int cb_url_judge_locked(const cb_conf *c, CURLU *u, char *host, size_t hostcap, char *err, size_t errlen)
{
    char *scheme = NULL, *h = NULL;
    int rc = -1;
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)) {
        util_err(err, errlen, "only http:// and https:// URLs are allowed");
        goto out;
    }
    if (cb_has_part(u, CURLUPART_USER) || cb_has_part(u, CURLUPART_PASSWORD) || cb_has_part(u, CURLUPART_OPTIONS)) {
        util_err(err, errlen, "a user name or password in the URL is not allowed");
        goto out;
    }
    if (curl_url_get(u, CURLUPART_HOST, &h, 0) != CURLUE_OK || !h[0] || cb_host_norm(h, host, hostcap) != 0) {
        util_err(err, errlen, "expected a URL with a host name of at most 253 characters");
        goto out;
    }
    int listed = cb_listed_locked(c, host);
    if (c->nhosts > 0 && !listed)
        util_err(err, errlen, "host '%.100s' is not in the allowed callback hosts", host);
    else if (!listed && jobs_cb_ip_forbidden(host) == 1)
        util_err(err, errlen, "host '%.100s' is a loopback, link-local or unspecified address", host);
    else
        rc = listed;
out:
    curl_free(scheme);
    curl_free(h);
    return rc;
}

/* 1 (host listed) or 0 when url may be called back under c, -1 with err. */
static int cb_url_check_locked(const cb_conf *c, const char *url, char *err, size_t errlen)
{
    if (!url || !url[0])
        return util_err(err, errlen, "expected an http:// or https:// URL");
    if (strlen(url) > CB_MAX_URL)
        return util_err(err, errlen, "longer than %d characters", CB_MAX_URL);
    CURLU *u = curl_url();
    if (!u)
        return util_err(err, errlen, "out of memory");
    char host[256];
    int rc;
    CURLUcode uc = curl_url_set(u, CURLUPART_URL, url, 0);
    if (uc == CURLUE_UNSUPPORTED_SCHEME)
        rc = util_err(err, errlen, "only http:// and https:// URLs are allowed");
    else if (uc != CURLUE_OK)
        rc = util_err(err, errlen, "not a URL (%s)", curl_url_strerror(uc));
    else
        rc = cb_url_judge_locked(c, u, host, sizeof host, err, errlen);
    curl_url_cleanup(u);
    return rc;
}

int jobs_callback_check(const char *url, char *err, size_t errlen)
{
    pthread_mutex_lock(&g_mu);
    int rc = cb_url_check_locked(g_conf ? g_conf : &g_defaults, url, err, errlen);
    pthread_mutex_unlock(&g_mu);
    return rc < 0 ? -1 : 0;
}

/* ---- the signature ---- */

/* "sha256=<hex HMAC-SHA256(key, body)>" into out. 0 or -1. */
static int cb_sign(const unsigned char *key, size_t keylen, const char *body, size_t len, char out[80])
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    if (!HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)(body ? body : ""), len, mac, &maclen) ||
        maclen != 32)
        return -1;
    static const char hex[] = "0123456789abcdef";
    memcpy(out, "sha256=", 7);
    for (unsigned i = 0; i < maclen; i++) {
        out[7 + 2 * i] = hex[mac[i] >> 4];
        out[8 + 2 * i] = hex[mac[i] & 15];
    }
    out[7 + 2 * maclen] = '\0';
    return 0;
}

/* The URL judged and the options copied under the lock; the key too, so that a large body is
 * signed outside it (accepts call check() under the same lock). */
int jobs_cb_prepare(const char *url, const char *body, size_t len, jobs_cb_opts *o, char *err, size_t errlen)
{
    unsigned char *key = NULL;
    size_t keylen = 0;
    pthread_mutex_lock(&g_mu);
    const cb_conf *c = g_conf ? g_conf : &g_defaults;
    int listed = cb_url_check_locked(c, url, err, errlen);
    int rc = listed < 0 ? -1 : 0;
    if (rc == 0) {
        *o = (jobs_cb_opts){.max_attempts = c->max_attempts,
                            .timeout_ms = c->timeout_ms,
                            .connect_timeout_ms = c->connect_timeout_ms,
                            .backoff_ms = c->backoff_ms,
                            .verify_tls = c->verify_tls,
                            .listed = listed};
        if (c->key && (key = malloc(c->keylen)) != NULL) {
            memcpy(key, c->key, c->keylen);
            keylen = c->keylen;
        } else if (c->key)
            rc = util_err(err, errlen, "out of memory");
    }
    pthread_mutex_unlock(&g_mu);
    if (rc == 0 && key && cb_sign(key, keylen, body, len, o->signature) != 0)
        rc = util_err(err, errlen, "the signature could not be computed");
    if (key) {
        OPENSSL_cleanse(key, keylen);
        free(key);
    }
    return rc;
}

/* ---- configure ---- */

static void cb_conf_free(cb_conf *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->nhosts; i++)
        free(c->hosts[i]);
    free(c->hosts);
    if (c->key)
        OPENSSL_cleanse(c->key, c->keylen);
    free(c->key);
    free(c);
}

/* The key from the environment variable cfg names (none when it names none). */
static int cb_conf_key(cb_conf *c, const char *name, char *err, size_t errlen)
{
    if (!name || !name[0])
        return 0;
    const char *v = getenv(name);
    if (!v)
        return util_err(err, errlen, "jobs.callback_secret_env: the environment variable %.64s is not set", name);
    size_t n = strlen(v);
    if (n < CB_MIN_SECRET)
        return util_err(err, errlen,
                        "jobs.callback_secret_env: the environment variable %.64s holds fewer than %d bytes", name,
                        CB_MIN_SECRET);
    if (!(c->key = malloc(n)))
        return util_err(err, errlen, "jobs.callback_secret_env: out of memory");
    memcpy(c->key, v, n);
    c->keylen = n;
    return 0;
}

/* KAILASH_CALLBACK_BACKOFF_MS (tests): the first retry's bound, in ms (1..60000). */
static double cb_conf_backoff(void)
{
    const char *v = getenv("KAILASH_CALLBACK_BACKOFF_MS");
    char *end;
    long ms = v && *v ? strtol(v, &end, 10) : 0;
    return v && *v && !*end && ms >= 1 && ms <= 60000 ? (double)ms : CB_DEFAULT_BACKOFF_MS;
}

static cb_conf *cb_conf_new(const kconfig *cfg, char *err, size_t errlen)
{
    cb_conf *c = calloc(1, sizeof *c);
    if (!c ||
        (cfg->n_jobs_callback_allow_hosts && !(c->hosts = calloc(cfg->n_jobs_callback_allow_hosts, sizeof *c->hosts))))
        goto oom;
    c->max_attempts = cfg->jobs_callback_max_attempts > 0 ? cfg->jobs_callback_max_attempts : 1;
    c->timeout_ms = cfg->jobs_callback_timeout_ms > 0 ? cfg->jobs_callback_timeout_ms : 10000;
    c->connect_timeout_ms = cfg->upstream_connect_timeout_ms > 0 ? cfg->upstream_connect_timeout_ms : 2000;
    c->verify_tls = cfg->upstream_verify_tls;
    c->backoff_ms = cb_conf_backoff();
    for (; c->nhosts < cfg->n_jobs_callback_allow_hosts; c->nhosts++)
        if (!(c->hosts[c->nhosts] = strdup(cfg->jobs_callback_allow_hosts[c->nhosts])))
            goto oom;
    if (cb_conf_key(c, cfg->jobs_callback_secret_env, err, errlen) != 0)
        goto fail;
    return c;
oom:
    util_err(err, errlen, "jobs.callback: out of memory");
fail:
    cb_conf_free(c);
    return NULL;
}

int jobs_callback_configure(const kconfig *cfg, char *err, size_t errlen)
{
    cb_conf *c = cb_conf_new(cfg, err, errlen);
    if (!c)
        return -1;
    pthread_mutex_lock(&g_mu);
    cb_conf *old = g_conf;
    g_conf = c;
    pthread_mutex_unlock(&g_mu);
    cb_conf_free(old);
    jobs_cb_started();
    return 0;
}
