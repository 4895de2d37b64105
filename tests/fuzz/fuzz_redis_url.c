/* fuzz_redis_url: redis_url_parse and redis_target_describe (src/redis/url.c) on hostile bytes.
 *
 * The input is the URL, except that each 0x01 byte stands for a secret, FZ_SECRET, so the fuzzer
 * can place a known password anywhere (userinfo, a password= query, the host...). Checked on every
 * input: the error message never holds the secret (messages are fixed phrases that never quote the
 * URL) and starts with "redis_url: "; a refused URL leaves no password behind. On success: every
 * field is terminated within its array, exactly one of host and path is set, the port is 1..65535,
 * the db is not negative, and the description never shows the secret unless it is part of the host
 * or path themselves. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kailash/redis.h"

#define FZ_SECRET "Zq9Xk7Wm"

static int fz_terminated(const char *s, size_t cap)
{
    return memchr(s, '\0', cap) != NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 2048)
        return 0;
    char *url = malloc(size * (sizeof FZ_SECRET - 1) + 1);
    size_t n = 0;
    for (size_t i = 0; i < size; i++) {
        if (data[i] == 0x01) {
            memcpy(url + n, FZ_SECRET, sizeof FZ_SECRET - 1);
            n += sizeof FZ_SECRET - 1;
        } else {
            url[n++] = (char)data[i];
        }
    }
    url[n] = '\0';

    redis_target t;
    char err[256] = "";
    int rc = redis_url_parse(url, &t, err, sizeof err);
    if (rc != 0) {
        if (rc != -1 || strncmp(err, "redis_url: ", 11) != 0 || strstr(err, FZ_SECRET) || t.password[0])
            abort();
    } else {
        if (!fz_terminated(t.host, sizeof t.host) || !fz_terminated(t.path, sizeof t.path) ||
            !fz_terminated(t.user, sizeof t.user) || !fz_terminated(t.password, sizeof t.password))
            abort();
        if ((t.host[0] != '\0') == (t.path[0] != '\0'))
            abort();
        if (t.port < 1 || t.port > 65535 || t.db < 0 || (t.path[0] && t.path[0] != '/'))
            abort();
        char d[512];
        redis_target_describe(&t, d, sizeof d);
        if (strstr(d, FZ_SECRET) && !strstr(t.host, FZ_SECRET) && !strstr(t.path, FZ_SECRET))
            abort();
        redis_target_describe(&t, d, 8); /* truncates, terminated */
        if (!fz_terminated(d, 8))
            abort();
    }
    free(url);
    return 0;
}
