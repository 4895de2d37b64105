/* log: JSON lines. Daemon messages go to stderr, the access log to stdout, each line in one write(2)
 * so lines from many threads never interleave. */
#include "kailash/log.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "kailash/util.h"

static int g_level = LOG_INFO;
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
    g_level = level;
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
    if (level < g_level || level < 0 || level > LOG_ERROR)
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

void log_access_line(const char *text, unsigned long len)
{
    write_all(1, text, len);
}
