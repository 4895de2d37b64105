/* log: JSON lines. Daemon messages go to stderr, each in one write(2). The access log goes to stdout
 * through one buffer per thread: a line is appended to the calling thread's buffer (its own lock, so
 * never contended on the hot path) and buffers are written out whole when full and by
 * log_access_flush, which the main thread calls every 100 ms and at exit. Lines never interleave and
 * a write(2) per request is saved; the price is that a line may reach stdout up to 100 ms late. */
#include "kailash/log.h"

#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kailash/util.h"

static atomic_int g_level = LOG_INFO; /* set by reloads while other threads log */
static const char *const names[] = {"debug", "info", "warn", "error"};

int log_level_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

void log_set_level(int level)
{
    atomic_store(&g_level, level);
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

void log_msg(int level, const char *fmt, ...)
{
    if (level < atomic_load(&g_level) || level < 0 || level > LOG_ERROR)
        return;
    char msg[1024], ts[40];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    util_rfc3339_now(ts, sizeof ts);
    json_t *o = json_pack("{s:s,s:s,s:s}", "time", ts, "level", names[level], "msg", msg);
    char *line = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    if (line) {
        size_t n = strlen(line);
        line[n] = '\n';
        write_all(2, line, n + 1);
        line[n] = '\0';
    }
    free(line);
    json_decref(o);
}

#define LOG_BUF_SIZE 16384

typedef struct log_buf {
    pthread_mutex_t mu;
    size_t len;
    struct log_buf *next;
    char data[LOG_BUF_SIZE];
} log_buf;

static pthread_mutex_t g_bufs_mu = PTHREAD_MUTEX_INITIALIZER;
static log_buf *g_bufs;
static _Thread_local log_buf *t_buf;

static log_buf *log_buf_mine(void)
{
    if (t_buf)
        return t_buf;
    log_buf *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    pthread_mutex_init(&b->mu, NULL);
    pthread_mutex_lock(&g_bufs_mu);
    b->next = g_bufs;
    g_bufs = b;
    pthread_mutex_unlock(&g_bufs_mu);
    return t_buf = b;
}

void log_access_line(const char *text, unsigned long len)
{
    log_buf *b = log_buf_mine();
    if (!b || len > LOG_BUF_SIZE) {
        write_all(1, text, len);
        return;
    }
    pthread_mutex_lock(&b->mu);
    if (b->len + len > LOG_BUF_SIZE) {
        write_all(1, b->data, b->len);
        b->len = 0;
    }
    memcpy(b->data + b->len, text, len);
    b->len += len;
    pthread_mutex_unlock(&b->mu);
}

void log_access_flush(void)
{
    pthread_mutex_lock(&g_bufs_mu);
    for (log_buf *b = g_bufs; b; b = b->next) {
        pthread_mutex_lock(&b->mu);
        write_all(1, b->data, b->len);
        b->len = 0;
        pthread_mutex_unlock(&b->mu);
    }
    pthread_mutex_unlock(&g_bufs_mu);
}

void log_shutdown(void)
{
    log_access_flush();
    pthread_mutex_lock(&g_bufs_mu);
    while (g_bufs) {
        log_buf *b = g_bufs;
        g_bufs = b->next;
        pthread_mutex_destroy(&b->mu);
        free(b);
    }
    pthread_mutex_unlock(&g_bufs_mu);
    t_buf = NULL;
}
