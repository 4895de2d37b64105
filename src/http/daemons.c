/* daemons: one libmicrohttpd daemon per I/O loop (`workers` of them), each in external epoll mode on
 * its loop's thread, suspend/resume allowed. Each daemon has its own listening socket, all bound to
 * the same port with SO_REUSEPORT: the kernel spreads new connections over them, and a connection
 * wakes only the loop whose socket it came to (one socket shared by every daemon woke them all, and
 * all but one found nothing to accept). A request that calls an upstream therefore never changes
 * threads: the handler
 * starts the transfer on the loop it runs on, the transfer's end finishes the run there, and the
 * resumed connection is answered there too (DESIGN.md's MHD threads and I/O loop, folded together:
 * the two thread hand-offs per request were most of an upstream call's latency, 0.23 ms p50 against
 * 0.09 ms now at one connection on bench (b)).
 *
 * libmicrohttpd 0.9.75 (Debian 12) registers connections edge-triggered and treats a short read as
 * "drained": when a request's bytes and the client's FIN arrive together, it never reads the EOF,
 * and the connection would sit in CLOSE_WAIT until the idle timeout (found by the integration test
 * that sends a partial body and hangs up). So the loop also watches each client socket for EPOLLRDHUP
 * (edge-triggered: nothing per request), and after the next MHD_run re-arms the connection in the
 * daemon's epoll set (EPOLL_CTL_MOD with the events and pointer the daemon registered): the socket is
 * readable, so the daemon gets a fresh edge, reads the EOF and closes. After MHD_run, not at once: a
 * re-arm while the daemon's own edge for the same bytes is still unread merges into that edge. It is
 * done twice (the daemon may not have taken every event in one run), then dropped. A suspended
 * connection is not in the set (ENOENT: dropped); the daemon adds it back when it resumes, which
 * gives it its edge. The re-arm copies 0.9.75's own registration, so, like mhd_park, it is done for
 * that version only.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http_internal.h"
#include "kreq.h"
#include "kailash/ioloop.h"
#include "kailash/log.h"
#include "kailash/util.h"

struct worker;

/* An open connection, from the daemon's STARTED notice to its CLOSED one. */
typedef struct conn_slot {
    struct MHD_Connection *c;
    struct worker *w;
    io_watch hup; /* EPOLLRDHUP, edge-triggered (see the top of this file) */
    int rearm;    /* re-arms still to do */
    kreq *req;    /* the request in progress (from its first callback to its completion), or NULL */
} conn_slot;

/* One daemon and the loop it runs on. Everything but the daemon pointer is the loop thread's. */
typedef struct worker {
    struct MHD_Daemon *d;
    ioloop *io;
    int epfd;                 /* the daemon's epoll set, watched by the loop */
    io_watch ep;              /* that watch */
    io_hook sleep;            /* the daemon runs before the loop sleeps */
    int run_now;              /* the daemon has events: MHD_run after this round */
    double due_ms;            /* MHD_get_timeout's deadline, < 0 for none */
    struct conn_slot **by_fd; /* open connections by socket, for the EPOLLRDHUP re-arm */
    size_t n_by_fd;
    int *hup; /* sockets to re-arm after the next MHD_run */
    size_t n_hup, cap_hup;
    mhd_park park; /* suspended connections kept in the daemon's epoll set */
    int rearm_on;  /* the EPOLLRDHUP watch and re-arm (libmicrohttpd 0.9.75 only) */
    size_t accepted; /* connections the daemon took */
} worker;

static worker *g_workers;
static int g_nworkers;
static _Thread_local worker *t_worker; /* the worker whose daemon this thread is running */

void *http_daemon_current(void)
{
    return t_worker;
}

static void w_kick(void *ud)
{
    ((worker *)ud)->run_now = 1;
}

/* On the loop's own thread (a run finished by its upstream call) a flag read after this round; from
 * another thread a wake-up of that loop. */
void http_daemon_kick(void *srv)
{
    worker *w = srv;
    if (ioloop_current() == w->io)
        w->run_now = 1;
    else
        ioloop_post(w->io, w_kick, w); /* fails only when stopping: nothing to answer then */
}

static int conn_fd(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? ci->connect_fd : -1;
}

void http_daemon_busy(void *srv, struct MHD_Connection *c, kreq *r)
{
    worker *w = srv;
    int fd = conn_fd(c);
    if (w && fd >= 0 && (size_t)fd < w->n_by_fd && w->by_fd[fd] && w->by_fd[fd]->c == c)
        w->by_fd[fd]->req = r;
}

void http_daemon_suspend(struct MHD_Connection *c)
{
    mhd_park_suspend(c, conn_fd(c));
}

/* ---- the daemon as a client of its loop (loop thread) ---- */

/* The daemon's epoll set has events. */
static void w_on_epfd(io_watch *iw, uint32_t events)
{
    (void)events;
    worker *w = iw->ud;
    w->run_now = 1;
    mhd_park_wake(&w->park);
}

/* A client shut its side: its reads are the kernel's from now on (mhd_park.c), and the connection is
 * re-armed after the next MHD_run (see the top of this file). */
static void w_on_hup(io_watch *iw, uint32_t events)
{
    (void)events;
    conn_slot *sl = iw->ud;
    worker *w = sl->w;
    int fd = iw->fd;
    if (sl->req)
        http_server_client_left(sl->req); /* a request waiting on its run: the run is cancelled */
    if (!w->rearm_on)
        return;
    w->run_now = 1;
    mhd_park_hup(&w->park, fd);
    if (sl->rearm == 0) {
        int *h = util_grow_zeroed(w->hup, &w->cap_hup, sizeof *h, w->n_hup, 64);
        if (!h)
            return;
        w->hup = h;
        h[w->n_hup++] = fd;
    }
    sl->rearm = 2;
}

static void w_rearm(worker *w)
{
    size_t keep = 0;
    for (size_t i = 0; i < w->n_hup; i++) {
        int fd = w->hup[i];
        conn_slot *sl = (size_t)fd < w->n_by_fd ? w->by_fd[fd] : NULL;
        if (!sl || !sl->c || sl->rearm <= 0)
            continue;
        if (mhd_park_has(&w->park, sl->c)) { /* suspended: its resume reads the EOF */
            sl->rearm = 0;
            continue;
        }
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLPRI | EPOLLET, .data.ptr = sl->c};
        if (epoll_ctl(w->epfd, EPOLL_CTL_MOD, fd, &ev) != 0) { /* not in the set: dropped */
            sl->rearm = 0;
            continue;
        }
        w->run_now = 1;
        if (--sl->rearm > 0)
            w->hup[keep++] = fd;
    }
    w->n_hup = keep;
}

/* How long the loop may sleep for the daemon's sake: 0 when it has work, -1 for no bound. */
static int w_wait_ms(worker *w)
{
    MHD_UNSIGNED_LONG_LONG t;
    if (w->run_now) /* a connection resumed after this round's MHD_run */
        return 0;
    if (MHD_get_timeout(w->d, &t) != MHD_YES) {
        w->due_ms = -1.0;
        return -1;
    }
    w->due_ms = util_now_ms() + (double)t;
    return t > INT_MAX ? INT_MAX : (int)t;
}

/* Before the loop sleeps: the daemon runs when it has events or its timeout passed, then says how
 * long the loop may sleep. */
static int w_before_sleep(io_hook *h)
{
    worker *w = h->ud;
    if (w->run_now || (w->due_ms >= 0 && util_now_ms() >= w->due_ms)) {
        w->run_now = 0;
        w->due_ms = -1.0;
        t_worker = w;
        mhd_park_enter(&w->park);
        MHD_run(w->d);
        if (w->n_hup)
            w_rearm(w);
    }
    return w_wait_ms(w);
}

/* A slot for fd's new connection, its EPOLLRDHUP watched: for the re-arm (rearm_on), and to learn
 * that a client left while its request waits (any version). */
static int w_track(worker *w, int fd, struct MHD_Connection *c)
{
    conn_slot **t = util_grow_zeroed(w->by_fd, &w->n_by_fd, sizeof *t, (size_t)fd, 1024);
    if (!t)
        return -1;
    w->by_fd = t;
    conn_slot *sl = calloc(1, sizeof *sl);
    if (!sl)
        return -1;
    sl->c = c;
    sl->w = w;
    ioloop_watch_init(&sl->hup, fd, w_on_hup, sl);
    ioloop_watch_start(w->io, &sl->hup, EPOLLRDHUP | EPOLLET);
    free(t[fd]); /* a slot whose CLOSED notice never came */
    t[fd] = sl;
    return 0;
}

/* MHD_OPTION_NOTIFY_CONNECTION: on the loop thread, except at MHD_stop_daemon (the loop has let go). */
static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    (void)socket_context;
    worker *w = cls;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci || ci->connect_fd < 0)
        return;
    int fd = ci->connect_fd;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        w->accepted++;
        w_track(w, fd, c);
    } else if ((size_t)fd < w->n_by_fd) {
        conn_slot *sl = w->by_fd[fd];
        if (sl) /* after w_detach (MHD_stop_daemon) its watch is stopped already */
            ioloop_watch_stop(w->io, &sl->hup);
        free(sl);
        w->by_fd[fd] = NULL;
        mhd_park_closed(&w->park, c, fd);
    }
}

static void w_attach(void *ud)
{
    worker *w = ud;
    ioloop_watch_init(&w->ep, w->epfd, w_on_epfd, w);
    ioloop_watch_start(w->io, &w->ep, EPOLLIN);
    ioloop_before_sleep(w->io, &w->sleep, w_before_sleep, w);
    w->run_now = 1;
}

/* The loop lets go of the daemon: its watches stop here, on the loop thread, so the daemon's CLOSED
 * notices at MHD_stop_daemon (on another thread) touch no loop state. */
static void w_detach(void *ud)
{
    worker *w = ud;
    ioloop_watch_stop(w->io, &w->ep);
    for (size_t fd = 0; fd < w->n_by_fd; fd++)
        if (w->by_fd[fd])
            ioloop_watch_stop(w->io, &w->by_fd[fd]->hup);
    ioloop_hook_remove(w->io, &w->sleep);
    mhd_park_enter(NULL); /* this thread's epoll calls are its own again */
}

/* Draining: the listening socket closes, and so does every connection without a request in
 * progress (a kept-alive client between requests), as nginx does on a graceful stop. libmicrohttpd
 * has no call to close one connection, so its socket is shut down: the daemon reads the EOF on its
 * next run and closes it as a client's. A request whose first bytes are in but not yet its headers
 * is cut with it; the client sees a kept-alive connection closed under it and retries, as HTTP
 * clients must. Busy connections close after their answer (http_server_drain); a streamed answer
 * (Server-Sent Events) would not end by itself, so it ends now, after what its producer has ready. */
static void w_quiesce(void *ud)
{
    worker *w = ud;
    MHD_socket s = MHD_quiesce_daemon(w->d);
    if (s != MHD_INVALID_SOCKET)
        close(s);
    for (size_t fd = 0; fd < w->n_by_fd; fd++) {
        conn_slot *sl = w->by_fd[fd];
        if (sl && sl->c && !sl->req)
            shutdown((int)fd, SHUT_RDWR);
        else if (sl && sl->req)
            http_stream_quiesce(sl->req); /* an open stream (SSE) ends after what is ready */
    }
    w->run_now = 1;
}

/* ---- start and stop ---- */

/* A listening socket on cfg's host and port (port 0: any), in the SO_REUSEPORT group of the others. */
static int listen_socket(const kconfig *cfg, int port, int *ipv6, char *err, size_t errlen)
{
    struct sockaddr_storage ss = {0};
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    socklen_t len = sizeof *a4;
    *ipv6 = 0;
    a4->sin_family = AF_INET;
    a4->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, cfg->host, &a4->sin_addr) != 1) {
        memset(&ss, 0, sizeof ss);
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, cfg->host, &a6->sin6_addr) != 1)
            return util_err(err, errlen, "host '%s': expected an IPv4 or IPv6 address", cfg->host);
        len = sizeof *a6;
        *ipv6 = 1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return util_err(err, errlen, "cannot create a socket: %s", strerror(errno));
    int on = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) != 0) {
        int e = errno;
        close(fd);
        return util_err(err, errlen, "SO_REUSEPORT: %s", strerror(e));
    }
    if (*ipv6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on);
    if (bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, 4096) != 0) {
        int e = errno;
        close(fd);
        return util_err(err, errlen, "cannot listen on %s:%d: %s", cfg->host, cfg->port, strerror(e));
    }
    return fd;
}

static int bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return -1;
    return ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                          : ((struct sockaddr_in *)&ss)->sin_port);
}

/* Why mhd_park is off, or NULL when it is on. A TLS daemon's reads are GnuTLS's (see mhd_park.c). */
static const char *park_off_reason(const kconfig *cfg, unsigned mhd_flags)
{
    if (!cfg->front_end_park)
        return "front_end.park is false (or KAILASH_MHD_PARK=0)";
    if (mhd_flags & MHD_USE_TLS)
        return "TLS is on";
    if (!mhd_park_version_ok(MHD_get_version()))
        return "it follows libmicrohttpd 0.9.75 only";
    return NULL;
}

static unsigned daemon_flags(const kconfig *cfg, int ipv6)
{
    unsigned flags = MHD_USE_EPOLL | MHD_USE_ITC | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG | MHD_USE_TURBO;
    if (http_tls_configured(cfg))
        flags |= MHD_USE_TLS;
    return ipv6 ? flags | MHD_USE_IPv6 : flags;
}

static int worker_start(worker *w, int lfd, int ipv6, unsigned conn_limit, char *err, size_t errlen)
{
    unsigned flags = daemon_flags(http_server_config(), ipv6);
    w->epfd = -1;
    w->due_ms = -1.0;
    /* with TLS, the certificate comes from tls.c for each handshake (a reload renews it) */
    struct MHD_OptionItem tls[] = {{MHD_OPTION_HTTPS_CERT_CALLBACK, 0, http_tls_callback()}, {MHD_OPTION_END, 0, NULL}};
    w->d = MHD_start_daemon(flags, 0, NULL, NULL, http_on_request, NULL, MHD_OPTION_LISTEN_SOCKET, lfd,
                            MHD_OPTION_NOTIFY_COMPLETED, http_on_completed, NULL, MHD_OPTION_NOTIFY_CONNECTION,
                            on_connection, w, MHD_OPTION_CONNECTION_LIMIT, conn_limit, MHD_OPTION_CONNECTION_TIMEOUT,
                            (unsigned)120, MHD_OPTION_EXTERNAL_LOGGER, http_on_mhd_log, NULL, MHD_OPTION_ARRAY,
                            (flags & MHD_USE_TLS) ? tls : tls + 1, MHD_OPTION_END);
    if (!w->d) {
        close(lfd);
        return util_err(err, errlen, "libmicrohttpd could not start on the listening socket");
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(w->d, MHD_DAEMON_INFO_EPOLL_FD);
    w->epfd = di ? di->epoll_fd : -1;
    mhd_park_init(&w->park, w->epfd, park_off_reason(http_server_config(), flags) == NULL);
    w->rearm_on = mhd_park_version_ok(MHD_get_version());
    if (w->epfd < 0 || ioloop_call(w->io, w_attach, w) != 0)
        return util_err(err, errlen, "libmicrohttpd: no epoll set to attach to the I/O loop");
    return 0;
}

int http_server_start(const kconfig *cfg, ioloop *const *loops, int nloops, char *err, size_t errlen)
{
    http_server_set_config(cfg);
    if (nloops < 1)
        return util_err(err, errlen, "no I/O loop to run the HTTP front end on");
    if (http_tls_load(cfg, err, errlen) != 0)
        return -1;
    g_workers = calloc((size_t)nloops, sizeof *g_workers);
    if (!g_workers)
        return util_err(err, errlen, "out of memory");
    g_nworkers = nloops;
    unsigned limit = 60000u / (unsigned)nloops;
    int port = cfg->port, ipv6;
    for (int i = 0; i < nloops; i++) {
        int fd = listen_socket(cfg, port, &ipv6, err, errlen);
        if (fd < 0)
            return -1;
        port = bound_port(fd); /* the others join the first one's port (cfg->port 0: the one it got) */
        g_workers[i].io = loops[i];
        if (worker_start(&g_workers[i], fd, ipv6, limit, err, errlen) != 0)
            return -1;
    }
    const char *why = park_off_reason(cfg, daemon_flags(cfg, ipv6));
    if (why)
        log_msg(LOG_WARN, "front end: mhd_park is off (%s): two more epoll_ctl and a read per suspended request", why);
    return 0;
}

static void w_stats(void *ud)
{
    void **a = ud;
    worker *w = a[0];
    http_loop_stats *out = a[1];
    mhd_park_counters pc = mhd_park_counters_get(&w->park);
    *out = (http_loop_stats){w->accepted, w->park.on, pc.kept, pc.hidden, pc.spared, pc.quiet_skips};
}

int http_server_loop_stats(int i, http_loop_stats *out)
{
    if (i < 0 || i >= g_nworkers || !g_workers[i].d)
        return -1;
    void *a[2] = {&g_workers[i], out};
    return ioloop_call(g_workers[i].io, w_stats, a);
}

int http_server_loops(void)
{
    return g_nworkers;
}

static void w_nothing(void *ud)
{
    (void)ud;
}

void http_server_sync(void)
{
    for (int i = 0; i < g_nworkers; i++)
        ioloop_call(g_workers[i].io, w_nothing, NULL);
}

void http_server_quiesce(void)
{
    http_server_drain();
    for (int i = 0; i < g_nworkers; i++)
        if (g_workers[i].d && ioloop_call(g_workers[i].io, w_quiesce, &g_workers[i]) != 0)
            w_quiesce(&g_workers[i]); /* the loop is gone: nobody else runs the daemon */
}

void http_server_stop(void)
{
    for (int i = 0; i < g_nworkers; i++) {
        worker *w = &g_workers[i];
        if (!w->d)
            continue;
        ioloop_call(w->io, w_detach, w); /* from here on only this thread touches the daemon */
        mhd_park_counters pc = mhd_park_counters_get(&w->park);
        log_msg(LOG_DEBUG, "front end loop %d: %zu connection(s) accepted; park %s: kept %zu, hidden %zu, spared %zu, "
                "quiet_skips %zu", i, w->accepted, w->park.on ? "on" : "off", pc.kept, pc.hidden, pc.spared,
                pc.quiet_skips);
        MHD_stop_daemon(w->d);
        mhd_park_free(&w->park);
        for (size_t fd = 0; fd < w->n_by_fd; fd++)
            free(w->by_fd[fd]);
        free(w->by_fd);
        free(w->hup);
    }
    free(g_workers);
    g_workers = NULL;
    g_nworkers = 0;
    http_tls_free(); /* no session is left to point at a certificate */
}
