/* notify: the service manager's notification protocol (systemd's sd_notify), written by hand: one
 * datagram of "KEY=value" lines to the AF_UNIX socket named by $NOTIFY_SOCKET ("/path", or "@name"
 * for an abstract name). No libsystemd: the protocol is a sendto(2), and a daemon started without
 * systemd (no NOTIFY_SOCKET) sends nothing.
 *
 * Nothing here blocks (MSG_DONTWAIT) and nothing fails the caller: a bad or absent socket is logged
 * once and the daemon serves on. The watchdog's pings come from the loops (watchdog.h), not from
 * here: this module only writes them.
 *
 * Threads: notify_init once, before other threads start; everything else is thread-safe. */
#ifndef KAILASH_NOTIFY_H
#define KAILASH_NOTIFY_H

#include <stddef.h>
#include <stdint.h>

/* Sends msg as one datagram to the AF_UNIX datagram socket addr: "/path" (a file name) or "@name"
 * (an abstract name, '@' standing for the leading NUL). Never blocks. 0, or a negative errno:
 * -EINVAL (empty or relative address), -ENAMETOOLONG (longer than sockaddr_un holds), or what
 * socket(2)/sendto(2) said (-ENOENT, -ECONNREFUSED, -EAGAIN when the receiver's queue is full). */
int notify_send_to(const char *addr, const char *msg);

/* Reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID from the environment (once, at start). */
void notify_init(void);

/* Sends msg to $NOTIFY_SOCKET. 0 when sent or when no socket is set; a negative errno otherwise
 * (the first failure is logged). */
int notify_send(const char *msg);

/* "READY=1" with "STATUS=serving N workflow(s)": at start once serving, and after every reload. */
int notify_ready(size_t workflows);

/* "RELOADING=1", "MONOTONIC_USEC=<CLOCK_MONOTONIC now, µs>" and "STATUS=reloading": before a reload. */
int notify_reloading(void);

/* "STOPPING=1" with "STATUS=stopping: N request(s) in flight": when the graceful stop begins. */
int notify_stopping(int inflight);

/* A "STATUS=..." line alone (printf format; the text is cut at 200 bytes, newlines become spaces). */
int notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The watchdog interval the service manager asked for, in µs: $WATCHDOG_USEC when it is a positive
 * number and $WATCHDOG_PID is unset or this process's pid; else 0 (no watchdog). */
uint64_t notify_watchdog_usec(void);

/* Sends "WATCHDOG=1"; ud is unused (the shape of watchdog_ping_fn). */
void notify_watchdog_ping(void *ud);

#endif
