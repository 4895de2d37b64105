/* mhd_park: a suspended libmicrohttpd connection keeps its place in the daemon's epoll set.
 *
 * The server here is a real libmicrohttpd daemon in external epoll mode, run on the test's own
 * thread as daemons.c runs one on a loop: every request is suspended (through mhd_park_suspend) and
 * resumed by the test. Clients are raw non-blocking sockets on the same thread. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../src/http/http_internal.h"
#include "kailash/util.h"

typedef struct {
    struct MHD_Daemon *d;
    mhd_park park;
    int port;
    struct MHD_Connection *held[16]; /* suspended, not yet resumed */
    int nheld;
    int auto_resume; /* resume whatever is held on every turn */
    int closed;      /* connections closed */
} srv;

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *data, size_t *size, void **cc)
{
    (void)method, (void)version, (void)data;
    srv *s = cls;
    if (!*cc) { /* the head */
        *cc = (void *)1;
        return MHD_YES;
    }
    if (*size) {
        *size = 0;
        return MHD_YES;
    }
    if (*cc == (void *)1) { /* the whole request: wait for the test */
        *cc = (void *)2;
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        cr_assert(s->nheld < 16);
        s->held[s->nheld++] = c;
        mhd_park_suspend(c, ci->connect_fd);
        return MHD_YES;
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(url), (void *)url, MHD_RESPMEM_MUST_COPY);
    enum MHD_Result q = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return q;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **sc, enum MHD_ConnectionNotificationCode toe)
{
    (void)sc;
    srv *s = cls;
    if (toe != MHD_CONNECTION_NOTIFY_CLOSED)
        return;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    mhd_park_closed(&s->park, c, ci->connect_fd);
    s->closed++;
}

static void start(srv *s, int parking)
{
    memset(s, 0, sizeof *s);
    s->d = MHD_start_daemon(MHD_USE_EPOLL | MHD_USE_ITC | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_TURBO, 0, NULL, NULL,
                            on_request, s, MHD_OPTION_NOTIFY_CONNECTION, on_connection, s, MHD_OPTION_END);
    cr_assert_not_null(s->d);
    s->port = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT)->port;
    mhd_park_init(&s->park, MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_EPOLL_FD)->epoll_fd, parking);
    mhd_park_enter(&s->park);
}

static void stop(srv *s)
{
    mhd_park_enter(NULL);
    MHD_stop_daemon(s->d);
    mhd_park_free(&s->park);
}

static void resume_held(srv *s)
{
    for (int i = 0; i < s->nheld; i++)
        MHD_resume_connection(s->held[i]);
    s->nheld = 0;
}

/* One turn of the daemon, as daemons.c's loop gives it: wait (poll, which takes no event) up to
 * 2 ms for its epoll set, wake the park if the set is readable, then MHD_run. */
static void turn(srv *s)
{
    if (s->auto_resume)
        resume_held(s);
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_EPOLL_FD);
    struct pollfd p = {.fd = di->epoll_fd, .events = POLLIN};
    if (poll(&p, 1, 2) == 1)
        mhd_park_wake(&s->park);
    MHD_run(s->d);
}

static void turns(srv *s, int n)
{
    for (int i = 0; i < n; i++)
        turn(s);
}

static void until_held(srv *s, int n)
{
    for (int i = 0; i < 2000 && s->nheld < n; i++)
        turn(s);
    cr_assert_eq(s->nheld, n, "%d requests suspended, expected %d", s->nheld, n);
}

static int client(const srv *s)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), on = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on); /* a request while one is unanswered goes now */
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc = connect(fd, (struct sockaddr *)&a, sizeof a);
    cr_assert(rc == 0 || errno == EINPROGRESS);
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    cr_assert_eq(poll(&p, 1, 2000), 1);
    return fd;
}

static void say_as(int fd, const char *method, const char *path)
{
    char req[256];
    int n = strcmp(method, "POST") == 0
                ? snprintf(req, sizeof req, "POST %s HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}", path)
                : snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: t\r\n\r\n", method, path);
    cr_assert_eq(send(fd, req, (size_t)n, MSG_NOSIGNAL), n);
}

static void say(int fd, const char *path)
{
    say_as(fd, "GET", path);
}

/* Turns the daemon until the client has read `n` whole answers, then checks each is 200 with the
 * expected body. */
static void expect_answers(srv *s, int fd, const char *const *bodies, int n)
{
    char in[8192];
    size_t len = 0;
    int got = 0;
    for (int i = 0; i < 4000 && got < n; i++) {
        turn(s);
        ssize_t r = recv(fd, in + len, sizeof in - 1 - len, 0);
        if (r > 0)
            len += (size_t)r;
        in[len] = '\0';
        got = 0;
        for (const char *p = in; (p = strstr(p, "HTTP/1.1 ")); p++)
            got++;
        if (got == n) { /* the last body may still be on its way */
            const char *last = strrchr(in, '\n');
            if (!last || strcmp(last + 1, bodies[n - 1]) != 0)
                got--;
        }
    }
    cr_assert_eq(got, n, "answers so far: %s", in);
    const char *p = in;
    for (int i = 0; i < n; i++) {
        cr_assert(strncmp(p, "HTTP/1.1 200", 12) == 0, "answer %d: %s", i, p);
        const char *body = strstr(p, "\r\n\r\n") + 4;
        cr_assert(strncmp(body, bodies[i], strlen(bodies[i])) == 0, "answer %d: %s", i, p);
        p = body + strlen(bodies[i]);
    }
}

/* One request on a kept-alive connection. The turns first let the daemon find that nothing more
 * came after the last answer (EAGAIN) and wait for the connection in its epoll set. */
static void keep_alive_round(srv *s, int fd, int i)
{
    char path[32];
    snprintf(path, sizeof path, "/r%d", i);
    turns(s, 3);
    say(fd, path);
    until_held(s, 1);
    resume_held(s);
    const char *want[] = {path};
    expect_answers(s, fd, want, 1);
}

/* A parking server and one client connection already through one request (so in the set). */
static int started_with_client(srv *s)
{
    start(s, 1);
    int fd = client(s);
    keep_alive_round(s, fd, 0);
    return fd;
}

/* Sends path once the daemon waits for the connection again, and turns it until it is suspended. */
static void send_and_hold(srv *s, int fd, const char *path)
{
    turns(s, 3);
    say(fd, path);
    until_held(s, 1);
}

Test(mhd_park, keep_alive_requests_keep_their_registration)
{
    srv s;
    start(&s, 1);
    cr_assert(s.park.on, "libmicrohttpd %s: parking is off", MHD_get_version());
    int fd = client(&s);
    for (int i = 0; i < 10; i++)
        keep_alive_round(&s, fd, i);
    turns(&s, 10); /* the read that finds nothing more, and the ADD after it */
    /* The connection went into the set (a real ADD) when the daemon first found it empty; from then
     * on each request keeps one DEL and one ADD. */
    cr_assert_eq(s.park.kept, 20, "kept %zu hidden %zu", s.park.kept, s.park.hidden);
    /* and the read after each answer, but the first (its socket was not known yet), is spared */
    cr_assert_eq(s.park.spared, 9, "%zu reads spared", s.park.spared);
    cr_assert_eq(mhd_park_count(&s.park), 0);
    close(fd);
    turns(&s, 10);
    cr_assert_eq(s.closed, 1);
    stop(&s);
}

/* The next request sent the moment the answer is read, before the daemon has looked again: the
 * daemon never finds the connection empty, so never ADDs it back, and it stays parked while its
 * events (those of a connection that is not suspended) reach the daemon. */
Test(mhd_park, request_right_after_an_answer)
{
    srv s;
    int fd = started_with_client(&s);
    for (int i = 1; i < 40; i++) {
        char path[32];
        snprintf(path, sizeof path, "/n%d", i);
        say_as(fd, "POST", path);
        until_held(&s, 1);
        resume_held(&s);
        const char *want[] = {path};
        expect_answers(&s, fd, want, 1);
    }
    cr_assert_eq(s.park.kept, 1, "one DEL kept, then no ADD asked for");
    cr_assert_eq(mhd_park_count(&s.park), 1);
    close(fd);
    stop(&s);
}

Test(mhd_park, without_parking_the_same_requests_are_answered)
{
    srv s;
    start(&s, 0);
    int fd = client(&s);
    for (int i = 0; i < 10; i++)
        keep_alive_round(&s, fd, i);
    cr_assert_eq(s.park.kept, 0);
    close(fd);
    stop(&s);
}

/* A request that comes while the one before it is suspended: its event is kept from the daemon
 * (it would queue a suspended connection), yet it is read and answered after the first. */
Test(mhd_park, request_sent_during_suspension_is_answered_next)
{
    srv s;
    int fd = started_with_client(&s);
    send_and_hold(&s, fd, "/a");
    cr_assert(mhd_park_has(&s.park, s.held[0]));
    say(fd, "/b");
    turns(&s, 20);
    cr_assert_geq(s.park.hidden, 1, "the second request's event reached the daemon");
    cr_assert_eq(s.nheld, 1, "a suspended connection read its next request");
    s.auto_resume = 1;
    const char *want[] = {"/a", "/b"};
    expect_answers(&s, fd, want, 2);
    close(fd);
    stop(&s);
}

Test(mhd_park, pipelined_requests_are_answered_in_order)
{
    srv s;
    int fd = started_with_client(&s);
    s.auto_resume = 1;
    const char two[] = "GET /x HTTP/1.1\r\nHost: t\r\n\r\nGET /y HTTP/1.1\r\nHost: t\r\n\r\n";
    cr_assert_eq(send(fd, two, sizeof two - 1, MSG_NOSIGNAL), (ssize_t)sizeof two - 1);
    const char *want[] = {"/x", "/y"};
    expect_answers(&s, fd, want, 2);
    close(fd);
    stop(&s);
}

/* A client that hangs up while suspended: the resume finds the end, the connection closes and
 * leaves the parked set (and with it the epoll set). */
Test(mhd_park, client_gone_during_suspension_leaves_the_set)
{
    srv s;
    int fd = started_with_client(&s);
    send_and_hold(&s, fd, "/gone");
    cr_assert_eq(mhd_park_count(&s.park), 1);
    close(fd);
    turns(&s, 10);
    cr_assert_eq(s.closed, 0);
    resume_held(&s);
    for (int i = 0; i < 500 && s.closed == 0; i++)
        turn(&s);
    cr_assert_eq(s.closed, 1);
    cr_assert_eq(mhd_park_count(&s.park), 0);
    int again = client(&s); /* may well get the same socket number */
    keep_alive_round(&s, again, 1);
    keep_alive_round(&s, again, 2);
    close(again);
    stop(&s);
}

/* libmicrohttpd stops only with no connection suspended: resumed ones still parked close at stop
 * and leave the set then (as daemons.c stops, after the runs have answered). */
Test(mhd_park, stop_with_parked_connections)
{
    srv s;
    start(&s, 1);
    int fds[3];
    for (int i = 0; i < 3; i++) {
        fds[i] = client(&s);
        keep_alive_round(&s, fds[i], i);
    }
    turns(&s, 3);
    for (int i = 0; i < 3; i++)
        say(fds[i], "/held");
    until_held(&s, 3);
    cr_assert_eq(mhd_park_count(&s.park), 3);
    resume_held(&s);
    mhd_park_enter(NULL);
    MHD_stop_daemon(s.d);
    cr_assert_eq(s.closed, 3);
    cr_assert_eq(mhd_park_count(&s.park), 0, "a closed connection stayed parked");
    mhd_park_free(&s.park);
    for (int i = 0; i < 3; i++)
        close(fds[i]);
}

Test(mhd_park, only_the_version_it_follows)
{
    cr_assert(mhd_park_version_ok("0.9.75"));
    cr_assert_not(mhd_park_version_ok("0.9.76"));
    cr_assert_not(mhd_park_version_ok("1.0.1"));
    cr_assert_not(mhd_park_version_ok("0.9.7"));
    cr_assert_not(mhd_park_version_ok(NULL));
}

/* The parked set against a plain array, through growth and removals in random order. */
Test(mhd_park, set_matches_a_reference)
{
    mhd_park p;
    mhd_park_init(&p, -1, 1);
    enum { N = 5000 };
    static char objs[N];
    static int in[N];
    srand(7);
    size_t count = 0;
    for (int step = 0; step < 100000; step++) {
        int i = rand() % N;
        if (in[i]) {
            cr_assert_eq(mhd_park_remove(&p, &objs[i]), 1);
            in[i] = 0;
            count--;
        } else if (rand() % 3) {
            cr_assert_eq(mhd_park_add(&p, &objs[i], i), 0);
            in[i] = 1;
            count++;
        } else {
            cr_assert_eq(mhd_park_remove(&p, &objs[i]), 0);
        }
        if (step % 997 == 0)
            for (int k = 0; k < N; k++)
                cr_assert_eq(mhd_park_has(&p, (const void *)&objs[k]), in[k], "object %d at step %d", k, step);
        cr_assert_eq(mhd_park_count(&p), count);
    }
    mhd_park_free(&p);
}
