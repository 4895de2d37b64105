/* util: time, ids, strings, files and JSON paths shared by every module (buffers are buf.c's,
 * addresses net.c's, the JSON writer json_write.c's). Nothing here keeps state, so every
 * function is thread-safe. */
#include "kailash/util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

double util_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

double util_now_unix_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

char *util_copy(char *dst, size_t cap, const char *src)
{
    size_t n = strnlen(src, cap - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
    return dst;
}

size_t util_fmt_uint(char *out, unsigned v)
{
    char tmp[16];
    size_t n = 0;
    do
        tmp[sizeof tmp - ++n] = (char)('0' + v % 10);
    while (v /= 10);
    memcpy(out, tmp + sizeof tmp - n, n);
    out[n] = '\0';
    return n;
}

/* The "YYYY-MM-DDTHH:MM:SS" part is formatted once a second per thread (every access-log line asks). */
size_t util_fmt_ms(char *out, double ms)
{
    /* Under 1e9 ms the product below is off by far less than 1e-3, so only a value whose fourth
     * decimal sits near a half needs printf's exact rounding; so do negative, huge and NaN values. */
    double scaled = ms * 1000.0;
    uint64_t m = (ms >= 0 && ms < 1e9) ? (uint64_t)scaled : 0;
    double frac = scaled - (double)m;
    if (!(ms >= 0 && ms < 1e9) || fabs(frac - 0.5) < 1e-3)
        return (size_t)snprintf(out, 32, "%.3f", ms);
    if (frac > 0.5)
        m++;
    char tmp[32];
    size_t n = 0;
    for (int i = 0; i < 3; i++, m /= 10)
        tmp[n++] = (char)('0' + m % 10);
    tmp[n++] = '.';
    do {
        tmp[n++] = (char)('0' + m % 10);
        m /= 10;
    } while (m);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    out[n] = '\0';
    return n;
}

void util_rfc3339_now(char *out, size_t outlen)
{
    static _Thread_local time_t last = -1;
    static _Thread_local char day[24];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (ts.tv_sec != last) {
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
        last = ts.tv_sec;
    }
    long ms = ts.tv_nsec / 1000000L;
    char tail[6] = {'.', (char)('0' + ms / 100), (char)('0' + ms / 10 % 10), (char)('0' + ms % 10), 'Z', '\0'};
    char full[sizeof day + sizeof tail];
    size_t dn = strnlen(day, sizeof day - 1);
    memcpy(full, day, dn);
    memcpy(full + dn, tail, sizeof tail);
    util_copy(out, outlen, full); /* as much as fits, as snprintf did */
}

/* Random bytes for ids come from getrandom(2) in 4 KiB batches per thread: one syscall per ~400 ids
 * instead of a library call (and its fork check) per id. Same kernel CSPRNG. */
static void random_bytes(unsigned char *out, size_t n)
{
    static _Thread_local unsigned char pool[4096];
    static _Thread_local size_t left;
    if (left < n) {
        size_t got = 0;
        while (got < sizeof pool) {
            ssize_t r = getrandom(pool + got, sizeof pool - got, 0);
            if (r <= 0)
                abort(); /* no kernel randomness: ids would be guessable */
            got += (size_t)r;
        }
        left = sizeof pool;
    }
    memcpy(out, pool + sizeof pool - left, n);
    memset(pool + sizeof pool - left, 0, n);
    left -= n;
}

/* The time and a 12-bit counter (RFC 9562, 6.2 method 1) as one number that only grows within the
 * process: ids made in one millisecond still sort in the order they were made (GET /runs lists
 * newest first by id); 4096 in one ms borrow the next ms. */
static uint64_t uuid7_tick(void)
{
    static _Atomic uint64_t last;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t now = ((uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u) << 12;
    uint64_t prev = atomic_load_explicit(&last, memory_order_relaxed), next;
    do
        next = now > prev ? now : prev + 1;
    while (!atomic_compare_exchange_weak_explicit(&last, &prev, next, memory_order_relaxed, memory_order_relaxed));
    return next;
}

void util_uuid7(char out[37])
{
    unsigned char b[16];
    uint64_t t = uuid7_tick(), ms = t >> 12;
    random_bytes(b + 8, 8);
    for (int i = 0; i < 6; i++)
        b[i] = (unsigned char)(ms >> (40 - 8 * i));
    b[6] = (unsigned char)(0x70 | ((t >> 8) & 0x0f));
    b[7] = (unsigned char)(t & 0xff);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    static const char hex[] = "0123456789abcdef";
    char *p = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *p++ = '-';
        *p++ = hex[b[i] >> 4];
        *p++ = hex[b[i] & 15];
    }
    *p = '\0';
}

void *util_grow_zeroed(void *arr, size_t *n, size_t elem, size_t idx, size_t min)
{
    if (idx < *n)
        return arr;
    size_t cap = *n > min ? *n : (min ? min : 1);
    while (cap <= idx) {
        if (cap > SIZE_MAX / 2 / elem)
            return NULL;
        cap *= 2;
    }
    char *t = realloc(arr, cap * elem);
    if (!t)
        return NULL;
    memset(t + *n * elem, 0, (cap - *n) * elem);
    *n = cap;
    return t;
}

/* One path segment: digits index an array, anything else names an object key. */
static json_t *json_step(json_t *cur, const char *seg, size_t n)
{
    if (json_is_object(cur)) {
        char key[256];
        if (n >= sizeof key)
            return NULL;
        memcpy(key, seg, n);
        key[n] = '\0';
        return json_object_get(cur, key);
    }
    if (json_is_array(cur) && n > 0 && n < 10) {
        size_t idx = 0;
        for (size_t i = 0; i < n; i++) {
            if (!isdigit((unsigned char)seg[i]))
                return NULL;
            idx = idx * 10 + (size_t)(seg[i] - '0');
        }
        return json_array_get(cur, idx);
    }
    return NULL;
}

json_t *util_json_pathn(json_t *root, const char *path, size_t n)
{
    json_t *cur = root;
    size_t i = 0;
    while (cur && i < n) {
        size_t j = i;
        while (j < n && path[j] != '.' && path[j] != '[' && path[j] != ']')
            j++;
        if (j > i)
            cur = json_step(cur, path + i, j - i);
        i = j + 1;
    }
    return cur;
}

json_t *util_json_path(json_t *root, const char *path)
{
    return util_json_pathn(root, path, strlen(path));
}

int util_json_py_key(json_t *v, buf *b)
{
    if (json_is_boolean(v)) /* Python's True == 1, False == 0 */
        return buf_appendf(b, "i%d", json_is_true(v) ? 1 : 0);
    if (json_is_integer(v))
        return buf_appendf(b, "i%" JSON_INTEGER_FORMAT, json_integer_value(v));
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (d > -9.2e18 && d < 9.2e18 && d == (double)(json_int_t)d)
            return buf_appendf(b, "i%" JSON_INTEGER_FORMAT, (json_int_t)d);
    }
    if (json_is_string(v))
        return buf_append(b, "s", 1) != 0 ? -1 : buf_append(b, json_string_value(v), json_string_length(v));
    char *dump = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(17));
    int rc = dump ? buf_appendf(b, "j%s", dump) : -1;
    free(dump);
    return rc;
}

char **util_strv_split(const char *s, char sep)
{
    size_t n = 1;
    for (const char *p = s; *p; p++)
        n += *p == sep;
    char **v = calloc(n + 1, sizeof *v);
    for (size_t i = 0; v && i < n; i++) {
        const char *end = strchr(s, sep);
        size_t len = end ? (size_t)(end - s) : strlen(s);
        if (len == 0 || !(v[i] = strndup(s, len))) {
            util_strv_free(v);
            return NULL;
        }
        s += len + 1;
    }
    return v;
}

void util_strv_free(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

int util_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* What fstat says a non-regular file is, for "…: not a regular file (a FIFO)". */
static const char *util_file_kind(mode_t m)
{
    if (S_ISDIR(m))
        return "a directory";
    if (S_ISFIFO(m))
        return "a FIFO";
    if (S_ISSOCK(m))
        return "a socket";
    if (S_ISCHR(m) || S_ISBLK(m))
        return "a device";
    return "not a plain file";
}

/* Opens path for reading only when it is a regular file. O_NONBLOCK makes opening a FIFO return at
 * once instead of waiting for a writer (which hung --check and every reload); the type is then
 * checked on the opened descriptor, so a file swapped in between cannot slip past. Symlinks are
 * followed: operators (and Kubernetes ConfigMaps) link config and workflow files into place. */
static int util_open_regular(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return util_err(err, errlen, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0)
        util_err(err, errlen, "%s: %s", path, strerror(errno));
    else if (!S_ISREG(st.st_mode))
        util_err(err, errlen, "%s: not a regular file (%s)", path, util_file_kind(st.st_mode));
    else
        return fd;
    close(fd);
    return -1;
}

char *util_read_file(const char *path, size_t max, size_t *len, char *err, size_t errlen)
{
    int fd = util_open_regular(path, err, errlen);
    if (fd < 0)
        return NULL;
    buf b = {0};
    char chunk[16384];
    ssize_t n;
    while ((n = read(fd, chunk, sizeof chunk)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            util_err(err, errlen, "%s: read error: %s", path, strerror(errno));
            goto fail;
        }
        if (b.len + (size_t)n > max) {
            util_err(err, errlen, "%s: larger than %zu bytes", path, max);
            goto fail;
        }
        if (buf_append(&b, chunk, (size_t)n) != 0) {
            util_err(err, errlen, "%s: out of memory", path);
            goto fail;
        }
    }
    close(fd);
    if (buf_terminate(&b) != 0) {
        buf_free(&b);
        util_err(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    if (len)
        *len = b.len;
    return b.data;
fail:
    close(fd);
    buf_free(&b);
    return NULL;
}
