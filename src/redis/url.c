/* url: redis_url into a redis_target (redis.h). Two forms:
 *
 *   redis://[user:password@]host[:port][/db]   parsed by libcurl's URL API (curl_url), which knows
 *                                              IPv6 literals, ports and percent-encoding better than
 *                                              a hand-written split would; user and password are
 *                                              percent-decoded ("p%40ss" is "p@ss").
 *   unix:/path or unix:///path[?db=N]          by hand (curl has no unix: scheme); user= and
 *                                              password= are taken in the query too, percent-decoded.
 *
 * rediss:// is refused with what to do instead: hiredis 0.14 has no TLS. Error messages are fixed
 * phrases that never quote the URL, so a password cannot leak through one; redis_target_describe
 * leaves user and password out. */
#include <curl/curl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "kailash/util.h"
#include "redis_internal.h"

#define URL_FORMS "expected redis://[user:password@]host[:port][/db] or unix:/path[?db=N]"

/* "N" with N in 0..INT_MAX, digits only: the number, or -1. */
static int url_db(const char *s, size_t n)
{
    if (n == 0 || n > 10)
        return -1;
    long long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v <= INT_MAX ? (int)v : -1;
}

static int url_hex(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* Percent-decodes s[0..n) into out (cap bytes with the NUL). 0, or -1 when it does not fit, holds a
 * NUL byte, or a '%' is not followed by two hex digits. */
static int url_decode(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            int hi = i + 2 < n ? url_hex(s[i + 1]) : -1, lo = i + 2 < n ? url_hex(s[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi | lo) == 0)
                return -1;
            c = (char)(hi << 4 | lo);
            i += 2;
        }
        if (o + 1 >= cap)
            return -1;
        out[o++] = c;
    }
    out[o] = '\0';
    return 0;
}

/* unix:/path[?db=N&user=U&password=P] */
static int url_parse_unix(const char *s, redis_target *t, char *err, size_t errlen)
{
    if (strncmp(s, "//", 2) == 0) /* unix:///path: an empty authority */
        s += 2;
    if (s[0] != '/')
        return util_err(err, errlen, "redis_url: unix: wants an absolute path (unix:/path or unix:///path)");
    const char *q = strchr(s, '?');
    size_t plen = q ? (size_t)(q - s) : strlen(s);
    if (plen >= sizeof t->path)
        return util_err(err, errlen, "redis_url: the socket path is too long (at most %zu bytes)", sizeof t->path - 1);
    memcpy(t->path, s, plen);
    t->path[plen] = '\0';
    if (memchr(t->path, '#', plen))
        return util_err(err, errlen, "redis_url: a fragment (#) is not taken in a unix: URL");
    while (q && *q) {
        const char *k = q + 1, *end = strchr(k, '&');
        size_t n = end ? (size_t)(end - k) : strlen(k);
        const char *eq = memchr(k, '=', n);
        size_t kn = eq ? (size_t)(eq - k) : n, vn = eq ? n - kn - 1 : 0;
        const char *v = eq ? eq + 1 : "";
        if (kn == 2 && memcmp(k, "db", 2) == 0) {
            if ((t->db = url_db(v, vn)) < 0)
                return util_err(err, errlen, "redis_url: db= must be a number 0..%d", INT_MAX);
        } else if (kn == 4 && memcmp(k, "user", 4) == 0) {
            if (url_decode(v, vn, t->user, sizeof t->user) != 0)
                return util_err(err, errlen, "redis_url: user= is too long or not well percent-encoded");
        } else if (kn == 8 && memcmp(k, "password", 8) == 0) {
            if (url_decode(v, vn, t->password, sizeof t->password) != 0)
                return util_err(err, errlen, "redis_url: password= is too long or not well percent-encoded");
        } else if (n > 0) {
            return util_err(err, errlen, "redis_url: unix: takes db=N, user= and password= after the ?");
        }
        q = end;
    }
    return 0;
}

/* One part of h into out (cap bytes): 0, 1 when h has none (out is ""), -1 when it does not fit or
 * does not decode. */
static int url_part(CURLU *h, CURLUPart what, unsigned flags, char *out, size_t cap)
{
    char *v = NULL;
    CURLUcode rc = curl_url_get(h, what, &v, flags);
    out[0] = '\0';
    if (rc == CURLUE_NO_HOST || rc == CURLUE_NO_PORT || rc == CURLUE_NO_USER || rc == CURLUE_NO_PASSWORD ||
        rc == CURLUE_NO_QUERY || rc == CURLUE_NO_FRAGMENT || rc == CURLUE_NO_ZONEID)
        return 1;
    if (rc != CURLUE_OK)
        return -1;
    size_t n = strlen(v);
    int ok = n < cap;
    if (ok)
        memcpy(out, v, n + 1);
    curl_free(v);
    return ok ? 0 : -1;
}

static int url_parse_redis(const char *url, redis_target *t, char *err, size_t errlen)
{
    CURLU *h = curl_url();
    if (!h)
        return util_err(err, errlen, "redis_url: out of memory");
    int rc = -1, part;
    char txt[512];
    CURLUcode uc = curl_url_set(h, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME);
    if (uc != CURLUE_OK) {
        util_err(err, errlen, "redis_url: not a valid URL (%s)", curl_url_strerror(uc));
        goto out;
    }
    if (url_part(h, CURLUPART_QUERY, 0, txt, sizeof txt) != 1 ||
        url_part(h, CURLUPART_FRAGMENT, 0, txt, sizeof txt) != 1) {
        util_err(err, errlen, "redis_url: no query or fragment after redis://host:port/db");
        goto out;
    }
    if (url_part(h, CURLUPART_ZONEID, 0, txt, sizeof txt) != 1) { /* hiredis 0.14 cannot connect to one */
        util_err(err, errlen, "redis_url: an IPv6 zone id is not taken");
        goto out;
    }
    if ((part = url_part(h, CURLUPART_HOST, 0, txt, sizeof txt)) < 0) {
        util_err(err, errlen, "redis_url: the host name is too long (at most %zu bytes)", sizeof t->host - 1);
        goto out;
    }
    if (part == 1 || !txt[0]) {
        util_err(err, errlen, "redis_url: no host (%s)", URL_FORMS);
        goto out;
    }
    size_t hn = strlen(txt);
    const char *host = txt;
    if (txt[0] == '[' && hn > 2 && txt[hn - 1] == ']') { /* an IPv6 literal: connect wants it bare */
        host = txt + 1;
        txt[--hn] = '\0';
        hn--;
    }
    if (hn >= sizeof t->host) {
        util_err(err, errlen, "redis_url: the host name is too long (at most %zu bytes)", sizeof t->host - 1);
        goto out;
    }
    memcpy(t->host, host, hn + 1);
    if ((part = url_part(h, CURLUPART_PORT, 0, txt, sizeof txt)) < 0) {
        util_err(err, errlen, "redis_url: the port must be 1..65535");
        goto out;
    }
    if (part == 0) {
        int port = url_db(txt, strlen(txt));
        if (port < 1 || port > 65535) {
            util_err(err, errlen, "redis_url: the port must be 1..65535");
            goto out;
        }
        t->port = port;
    }
    if (url_part(h, CURLUPART_USER, CURLU_URLDECODE, t->user, sizeof t->user) < 0) {
        util_err(err, errlen, "redis_url: the user name is too long (at most %zu bytes) or does not decode",
                 sizeof t->user - 1);
        goto out;
    }
    if (url_part(h, CURLUPART_PASSWORD, CURLU_URLDECODE, t->password, sizeof t->password) < 0) {
        util_err(err, errlen, "redis_url: the password is too long (at most %zu bytes) or does not decode",
                 sizeof t->password - 1);
        goto out;
    }
    if (t->user[0] && !t->password[0]) {
        util_err(err, errlen, "redis_url: a user without a password (redis://user:password@host)");
        goto out;
    }
    if (url_part(h, CURLUPART_PATH, 0, txt, sizeof txt) < 0) {
        util_err(err, errlen, "redis_url: the database must be a number 0..%d after the /", INT_MAX);
        goto out;
    }
    if (txt[0] == '/' && txt[1] && (t->db = url_db(txt + 1, strlen(txt + 1))) < 0) {
        util_err(err, errlen, "redis_url: the database must be a number 0..%d after the /", INT_MAX);
        goto out;
    }
    rc = 0;
out:
    curl_url_cleanup(h);
    return rc;
}

int redis_url_parse(const char *url, redis_target *t, char *err, size_t errlen)
{
    memset(t, 0, sizeof *t);
    t->port = 6379;
    int rc;
    if (!url || !url[0])
        rc = util_err(err, errlen, "redis_url: empty (%s)", URL_FORMS);
    else if (strncasecmp(url, "rediss:", 7) == 0)
        rc = util_err(err, errlen, "redis_url: TLS to Redis is not built; use redis:// on a private network or unix:");
    else if (strncasecmp(url, "unix:", 5) == 0)
        rc = url_parse_unix(url + 5, t, err, errlen);
    else if (strncasecmp(url, "redis://", 8) == 0)
        rc = url_parse_redis(url, t, err, errlen);
    else
        rc = util_err(err, errlen, "redis_url: %s", URL_FORMS);
    if (rc != 0) /* nothing half-parsed (a password above all) stays behind */
        memset(t, 0, sizeof *t);
    return rc;
}

void redis_target_describe(const redis_target *t, char *out, size_t outlen)
{
    if (!outlen)
        return;
    if (t->path[0])
        snprintf(out, outlen, "unix:%s?db=%d", t->path, t->db);
    else if (strchr(t->host, ':'))
        snprintf(out, outlen, "redis://[%s]:%d/%d", t->host, t->port, t->db);
    else
        snprintf(out, outlen, "redis://%s:%d/%d", t->host, t->port, t->db);
}
