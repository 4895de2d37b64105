/* mhd_park: a suspended libmicrohttpd connection keeps its place in the daemon's epoll set.
 *
 * libmicrohttpd 0.9.75 takes a connection out of its epoll set when it is suspended (EPOLL_CTL_DEL),
 * and after the resume marks it readable, answers, reads once more to find the socket empty, and
 * puts it back (EPOLL_CTL_ADD). A request that waits for an upstream paid those three system calls:
 * on this VM, where a system call costs several microseconds, about a sixth of kailashd's CPU per
 * proxied request (49 -> 41 us in an A/B).
 *
 * This file defines epoll_ctl, epoll_wait and recv for the process; the daemon, a shared library,
 * reaches them through the dynamic linker. On a loop thread that runs a daemon (mhd_park_enter),
 * for that daemon's epoll set and connections only:
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
 *    gets its DEL then (mhd_park_closed), as the daemon itself deletes before it closes;
 *  - the read after the resume gets EAGAIN without the kernel when the socket's last read found it
 *    empty and no event came since (see recv at the end);
 *  - the daemon's own epoll_wait is skipped while its set is quiet (see epoll_wait).
 * Every other call, on any other thread, epoll set or socket, goes straight to the kernel.
 *
 * The rules above follow libmicrohttpd 0.9.75's daemon.c and connection.c. mhd_park_init turns
 * parking on only for that version; any other gets the plain calls. daemons.c also leaves it off
 * when the operator says so (front_end.park, KAILASH_MHD_PARK=0) and for a TLS daemon, whose reads
 * go through GnuTLS and must not be answered EAGAIN on a guess.
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
#include "kailash/util.h"

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

mhd_park_counters mhd_park_counters_get(const mhd_park *p)
{
    return (mhd_park_counters){p->kept, p->hidden, p->spared, p->quiet_skips};
}

void mhd_park_free(mhd_park *p)
{
    free(p->set);
    free(p->fdst);
    memset(p, 0, sizeof *p);
    p->epfd = -1;
}

void mhd_park_enter(mhd_park *p)
{
    t_park = p;
}

void mhd_park_wake(mhd_park *p)
{
    p->quiet = 0;
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
        if (p->set[i].c == c)
            return i;
        if (!p->set[i].c)
            return SIZE_MAX;
    }
}

static void insert(mhd_park *p, mhd_parked e)
{
    size_t i = slot_of(p, e.c);
    while (p->set[i].c)
        i = (i + 1) & (p->cap - 1);
    p->set[i] = e;
    p->n++;
}

static int grow(mhd_park *p)
{
    size_t cap = p->cap ? p->cap * 2 : 64;
    mhd_parked *old = p->set;
    size_t ocap = p->cap;
    p->set = calloc(cap, sizeof *p->set);
    if (!p->set) {
        p->set = old;
        return -1;
    }
    p->cap = cap;
    p->n = 0;
    for (size_t i = 0; i < ocap; i++)
        if (old[i].c)
            insert(p, old[i]);
    free(old);
    return 0;
}

/* The state byte of socket fd, the table grown to hold it; NULL when out of memory. */
static unsigned char *fd_state(mhd_park *p, int fd)
{
    if (fd < 0)
        return NULL;
    if ((size_t)fd >= p->nfd) {
        unsigned char *t = util_grow_zeroed(p->fdst, &p->nfd, 1, (size_t)fd, 1024);
        if (!t)
            return NULL;
        p->fdst = t;
    }
    return &p->fdst[fd];
}

int mhd_park_add(mhd_park *p, const void *c, int fd)
{
    unsigned char *st = fd_state(p, fd);
    if (!st || ((p->n + 1) * 2 > p->cap && grow(p) != 0))
        return -1;
    if (find(p, c) == SIZE_MAX)
        insert(p, (mhd_parked){c, fd});
    *st |= FD_PARKED;
    return 0;
}

int mhd_park_remove(mhd_park *p, const void *c)
{
    size_t i = find(p, c);
    if (i == SIZE_MAX)
        return 0;
    p->fdst[p->set[i].fd] &= (unsigned char)~FD_PARKED;
    size_t mask = p->cap - 1;
    for (size_t j = (i + 1) & mask; p->set[j].c; j = (j + 1) & mask) {
        size_t home = slot_of(p, p->set[j].c);
        if (((j - home) & mask) >= ((j - i) & mask)) { /* j's entry may move back into the hole */
            p->set[i] = p->set[j];
            i = j;
        }
    }
    p->set[i] = (mhd_parked){NULL, -1};
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

void mhd_park_hup(mhd_park *p, int fd)
{
    unsigned char *st = fd_state(p, fd);
    if (st)
        *st |= FD_HUP;
}

void mhd_park_closed(mhd_park *p, const struct MHD_Connection *c, int fd)
{
    if (p->n && mhd_park_remove(p, c))
        syscall(SYS_epoll_ctl, p->epfd, EPOLL_CTL_DEL, fd, NULL);
    if (fd >= 0 && (size_t)fd < p->nfd)
        p->fdst[fd] = 0; /* the number may come back as another socket */
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
        if ((op == EPOLL_CTL_DEL && t_susp.c && fd == t_susp.fd && mhd_park_add(p, t_susp.c, fd) == 0) ||
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
static int hidden(mhd_park *p, const struct epoll_event *ev)
{
    size_t i = find(p, ev->data.ptr);
    if (i == SIZE_MAX)
        return 0;
    if (ev->events & (EPOLLIN | EPOLLPRI | EPOLLERR | EPOLLHUP | EPOLLRDHUP)) /* something to read */
        p->fdst[p->set[i].fd] &= (unsigned char)~FD_EMPTY;
    void *ptr = ev->data.ptr;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info((struct MHD_Connection *)ptr, MHD_CONNECTION_INFO_CONNECTION_SUSPENDED);
    return !ci || ci->suspended == MHD_YES;
}

static int drop_hidden(mhd_park *p, struct epoll_event *ev, int n)
{
    int k = 0;
    for (int i = 0; i < n; i++)
        if (!hidden(p, &ev[i]))
            ev[k++] = ev[i];
    p->hidden += (size_t)(n - k);
    return k;
}

/* The daemon's own wait (timeout 0 in external mode) is skipped while its set is quiet: it gave
 * fewer events than asked last time, and the loop, which watches the set, has not seen it readable
 * since (mhd_park_wake). Events that come meanwhile make the set readable to the loop, whose next
 * turn wakes it and runs the daemon again. Saves a system call on most turns that only answer a
 * resumed connection. */
int epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout)
{
    mhd_park *p = parking_on(epfd);
    if (p && p->quiet && timeout == 0) {
        p->quiet_skips++;
        return 0;
    }
    for (;;) {
        int n = epoll_pwait(epfd, ev, max, timeout, NULL);
        if (!p)
            return n;
        if (n >= 0 && n < max)
            p->quiet = 1;
        if (n <= 0 || !p->n)
            return n;
        n = drop_hidden(p, ev, n);
        if (n > 0 || timeout == 0)
            return n;
    }
}

/* A parked connection whose last read found its socket empty, with no event since, and whose client
 * has not shut its side (mhd_park_hup: a FIN that came in the same edge as the request's bytes gives
 * the daemon no event of its own, so the loop's EPOLLRDHUP watch says it), is still empty:
 * the daemon's read after a resume (which marks the connection readable whatever it is) gets EAGAIN
 * without asking the kernel. Nothing is lost if bytes came meanwhile: the connection's registration
 * is in the set, so their event is queued there and the daemon reads them when it comes. Every other
 * read is the kernel's, and leaves the socket's state for the next. */
ssize_t recv(int fd, void *b, size_t len, int flags)
{
    mhd_park *p = t_park;
    unsigned char *st = p && p->on && fd >= 0 && (size_t)fd < p->nfd ? &p->fdst[fd] : NULL;
    if (st && flags == 0 && (*st & (FD_PARKED | FD_EMPTY | FD_HUP)) == (FD_PARKED | FD_EMPTY)) {
        p->spared++;
        errno = EAGAIN;
        return -1;
    }
    ssize_t r = syscall(SYS_recvfrom, fd, b, len, flags, NULL, NULL);
    if (st && flags == 0) {
        int empty = r < 0 ? errno == EAGAIN || errno == EWOULDBLOCK : r > 0 && (size_t)r < len;
        *st = (unsigned char)(empty ? *st | FD_EMPTY : *st & ~FD_EMPTY);
    } else if (st && r > 0) {
        *st &= (unsigned char)~FD_EMPTY;
    }
    return r;
}
