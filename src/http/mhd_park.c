/* mhd_park: a suspended libmicrohttpd connection keeps its place in the daemon's epoll set.
 *
 * libmicrohttpd 0.9.75 takes a connection out of its epoll set when it is suspended (EPOLL_CTL_DEL)
 * and puts it back once it is resumed, has answered and waits to read again (EPOLL_CTL_ADD). Every
 * request that waits for an upstream pays those two system calls, about a sixth of kailashd's CPU
 * per proxied request on this VM (where a system call costs several microseconds).
 *
 * This file defines epoll_ctl and epoll_wait for the process; the daemon, a shared library, reaches
 * them through the dynamic linker. On a loop thread that runs a daemon (mhd_park_enter), for that
 * daemon's epoll set only:
 *  - the DEL made by MHD_suspend_connection (called through mhd_park_suspend) is not made: the
 *    connection is "parked" and its registration (EPOLLIN|EPOLLOUT|EPOLLPRI|EPOLLET, the connection
 *    as data) stays in the kernel;
 *  - events of parked connections that are still suspended are taken out of what the daemon's
 *    epoll_wait returns. The daemon must not see a suspended connection (it would queue it as ready,
 *    and panic when it resumes it); it loses nothing, since it marks every resumed connection read-
 *    and write-ready and then reads and writes until the socket says EAGAIN or gives less than asked.
 *    Once resumed, a parked connection gets its events again;
 *  - the daemon's ADD of a parked connection, with that connection as data, is not made: the
 *    registration it asks for is there, edge-triggered, and every edge since the park is either
 *    still queued or was covered by the resume;
 *  - a parked connection that closes without that ADD (an answer with `Connection: close`, a stop)
 *    gets its DEL then (mhd_park_closed), as the daemon itself deletes before it closes.
 * Every other call, on any other thread or epoll set, goes straight to the kernel.
 *
 * The rules above follow libmicrohttpd 0.9.75's daemon.c and connection.c. mhd_park_init turns
 * parking on only for that version; any other gets the plain calls.
 */
#include <errno.h>
#include <microhttpd.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "http_internal.h"

typedef struct {
    const struct MHD_Connection *c; /* being suspended on this thread */
    int fd;
} suspending;

static _Thread_local mhd_park *t_park;
static _Thread_local suspending t_susp = {NULL, -1};

int mhd_park_version_ok(const char *version)
{
    return version && strcmp(version, "0.9.75") == 0;
}

void mhd_park_init(mhd_park *p, int epfd, int enable)
{
    memset(p, 0, sizeof *p);
    p->epfd = epfd;
    p->on = enable && mhd_park_version_ok(MHD_get_version());
}

void mhd_park_free(mhd_park *p)
{
    free(p->set);
    memset(p, 0, sizeof *p);
    p->epfd = -1;
}

void mhd_park_enter(mhd_park *p)
{
    t_park = p;
}

/* ---- the parked set: open addressing on the connection pointer, backward-shift deletion ---- */

static size_t slot_of(const mhd_park *p, const void *c)
{
    uintptr_t h = (uintptr_t)c;
    h ^= h >> 17;
    h *= (uintptr_t)0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 7) & (p->cap - 1);
}

static size_t find(const mhd_park *p, const void *c)
{
    if (!p->cap)
        return SIZE_MAX;
    for (size_t i = slot_of(p, c);; i = (i + 1) & (p->cap - 1)) {
        if (p->set[i] == c)
            return i;
        if (!p->set[i])
            return SIZE_MAX;
    }
}

static void insert(mhd_park *p, const void *c)
{
    size_t i = slot_of(p, c);
    while (p->set[i])
        i = (i + 1) & (p->cap - 1);
    p->set[i] = c;
    p->n++;
}

static int grow(mhd_park *p)
{
    size_t cap = p->cap ? p->cap * 2 : 64;
    const void **old = p->set;
    size_t ocap = p->cap;
    p->set = calloc(cap, sizeof *p->set);
    if (!p->set) {
        p->set = old;
        return -1;
    }
    p->cap = cap;
    p->n = 0;
    for (size_t i = 0; i < ocap; i++)
        if (old[i])
            insert(p, old[i]);
    free(old);
    return 0;
}

int mhd_park_add(mhd_park *p, const void *c)
{
    if ((p->n + 1) * 2 > p->cap && grow(p) != 0)
        return -1;
    if (find(p, c) == SIZE_MAX)
        insert(p, c);
    return 0;
}

int mhd_park_remove(mhd_park *p, const void *c)
{
    size_t i = find(p, c);
    if (i == SIZE_MAX)
        return 0;
    size_t mask = p->cap - 1;
    for (size_t j = (i + 1) & mask; p->set[j]; j = (j + 1) & mask) {
        size_t home = slot_of(p, p->set[j]);
        if (((j - home) & mask) >= ((j - i) & mask)) { /* j's entry may move back into the hole */
            p->set[i] = p->set[j];
            i = j;
        }
    }
    p->set[i] = NULL;
    p->n--;
    return 1;
}

int mhd_park_has(const mhd_park *p, const void *c)
{
    return find(p, c) != SIZE_MAX;
}

size_t mhd_park_count(const mhd_park *p)
{
    return p->n;
}

/* ---- what server.c and daemons.c call ---- */

void mhd_park_suspend(struct MHD_Connection *c, int fd)
{
    t_susp = (suspending){c, fd};
    MHD_suspend_connection(c);
    t_susp = (suspending){NULL, -1};
}

void mhd_park_closed(mhd_park *p, const struct MHD_Connection *c, int fd)
{
    if (p->n && mhd_park_remove(p, c))
        syscall(SYS_epoll_ctl, p->epfd, EPOLL_CTL_DEL, fd, NULL);
}

/* ---- the two calls as the process sees them ---- */

static mhd_park *parking_on(int epfd)
{
    mhd_park *p = t_park;
    return p && p->on && p->epfd == epfd ? p : NULL;
}

int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
    mhd_park *p = parking_on(epfd);
    if (p) {
        if ((op == EPOLL_CTL_DEL && t_susp.c && fd == t_susp.fd && mhd_park_add(p, t_susp.c) == 0) ||
            (op == EPOLL_CTL_ADD && ev && p->n && mhd_park_remove(p, ev->data.ptr))) {
            p->kept++;
            return 0;
        }
    }
    return (int)syscall(SYS_epoll_ctl, epfd, op, fd, ev);
}

/* Whether the daemon must not see this event: its connection is parked and still suspended. A parked
 * connection that has resumed (it stays parked until the daemon's ADD) sees its events as usual: the
 * daemon may have read up to EAGAIN before it answered, and then only the event tells it that the
 * next request came. `suspended` is the daemon's own flag, set and cleared on this thread. */
static int hidden(const mhd_park *p, void *ptr)
{
    if (find(p, ptr) == SIZE_MAX)
        return 0;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info((struct MHD_Connection *)ptr, MHD_CONNECTION_INFO_CONNECTION_SUSPENDED);
    return !ci || ci->suspended == MHD_YES;
}

static int drop_hidden(mhd_park *p, struct epoll_event *ev, int n)
{
    int k = 0;
    for (int i = 0; i < n; i++)
        if (!hidden(p, ev[i].data.ptr))
            ev[k++] = ev[i];
    p->hidden += (size_t)(n - k);
    return k;
}

int epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout)
{
    for (;;) {
        int n = epoll_pwait(epfd, ev, max, timeout, NULL);
        mhd_park *p = n > 0 ? parking_on(epfd) : NULL;
        if (!p || !p->n)
            return n;
        n = drop_hidden(p, ev, n);
        if (n > 0 || timeout == 0)
            return n;
    }
}
