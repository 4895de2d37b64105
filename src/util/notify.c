/* notify: systemd's notification protocol without libsystemd (notify.h).
 *
 * A message is one datagram of newline-separated "KEY=value" lines on an AF_UNIX SOCK_DGRAM socket.
 * Each send opens a socket, sends and closes it: three system calls a few times a minute (the
 * watchdog's pings are the most frequent), against a long-lived fd that would need a lock and a
 * reconnect when the manager restarts. The address is read once, at start: getenv is not safe
 * while other threads may change the environment. */
#include "kailash/notify.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "kailash/log.h"

#define NOTIFY_MSG_MAX 512
#define NOTIFY_STATUS_MAX 200

static char g_addr[sizeof(((struct sockaddr_un *)0)->sun_path) + 2]; /* "" when unset or unusable */
static uint64_t g_watchdog_usec;
static atomic_int g_failed_logged;

/* Fills sa from "/path" or "@abstract"; the address length, or a negative errno. */
static int notify_addr(const char *addr, struct sockaddr_un *sa)
{
    size_t n = addr ? strlen(addr) : 0;
    if (n == 0 || (addr[0] != '/' && addr[0] != '@'))
        return -EINVAL;
    if (n > sizeof sa->sun_path - (addr[0] == '/')) /* a path keeps room for its NUL */
        return -ENAMETOOLONG;
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    memcpy(sa->sun_path, addr, n);
    if (addr[0] == '@')
        sa->sun_path[0] = '\0';
    return (int)(offsetof(struct sockaddr_un, sun_path) + n + (addr[0] == '/'));
}

int notify_send_to(const char *addr, const char *msg)
{
    struct sockaddr_un sa;
    int len = notify_addr(addr, &sa);
    if (len < 0)
        return len;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    ssize_t n = sendto(fd, msg, strlen(msg), MSG_DONTWAIT | MSG_NOSIGNAL, (struct sockaddr *)&sa, (socklen_t)len);
    int rc = n < 0 ? -errno : 0;
    close(fd);
    return rc;
}

static uint64_t notify_parse_u64(const char *s)
{
    if (!s || *s < '0' || *s > '9')
        return 0;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    return errno || *end ? 0 : (uint64_t)v;
}

void notify_init(void)
{
    const char *addr = getenv("NOTIFY_SOCKET");
    g_addr[0] = '\0';
    if (addr && *addr) {
        struct sockaddr_un sa;
        if (notify_addr(addr, &sa) < 0) {
            log_msg(LOG_WARN, "NOTIFY_SOCKET is not a usable AF_UNIX address: no service notifications");
        } else {
            snprintf(g_addr, sizeof g_addr, "%s", addr);
        }
    }
    const char *pid = getenv("WATCHDOG_PID");
    g_watchdog_usec = notify_parse_u64(getenv("WATCHDOG_USEC"));
    if (pid && *pid && notify_parse_u64(pid) != (uint64_t)getpid())
        g_watchdog_usec = 0; /* meant for another process (a wrapper that exec'd us would pass its own) */
}

int notify_send(const char *msg)
{
    if (!g_addr[0])
        return 0;
    int rc = notify_send_to(g_addr, msg);
    if (rc < 0 && atomic_exchange(&g_failed_logged, 1) == 0)
        log_msg(LOG_WARN, "service notification to NOTIFY_SOCKET failed: %s (logged once)", strerror(-rc));
    return rc;
}

/* Sends lines built from fmt; a message that does not fit is cut, never split. */
static int notify_sendv(const char *fmt, va_list ap)
{
    char msg[NOTIFY_MSG_MAX];
    vsnprintf(msg, sizeof msg, fmt, ap);
    return notify_send(msg);
}

static int notify_sendf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int notify_sendf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = notify_sendv(fmt, ap);
    va_end(ap);
    return rc;
}

int notify_ready(size_t workflows)
{
    return notify_sendf("READY=1\nSTATUS=serving %zu workflow(s)", workflows);
}

int notify_reloading(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    unsigned long long us = (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000ULL;
    return notify_sendf("RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading", us);
}

int notify_stopping(int inflight)
{
    return notify_sendf("STOPPING=1\nSTATUS=stopping: %d request(s) in flight", inflight);
}

int notify_status(const char *fmt, ...)
{
    char text[NOTIFY_STATUS_MAX + 1];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    for (char *p = text; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' '; /* a newline would start another KEY=value line */
    return notify_sendf("STATUS=%s", text);
}

uint64_t notify_watchdog_usec(void)
{
    return g_addr[0] ? g_watchdog_usec : 0;
}

void notify_watchdog_ping(void *ud)
{
    (void)ud;
    notify_send("WATCHDOG=1");
}
