/* Tests of the service-manager notifications (src/util/notify.c): the datagram writer against a
 * socket the test binds (a path, an abstract name), addresses it must refuse, a receiver that reads
 * nothing (the writer never blocks), and the messages built from NOTIFY_SOCKET / WATCHDOG_USEC.
 * Criterion runs each test in its own process, so each may set the environment it needs. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "kailash/notify.h"

/* A datagram socket bound at addr ("/path" or "@abstract"), with a receive timeout. */
static int bind_dgram(const char *addr)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n = strlen(addr);
    cr_assert_leq(n, sizeof sa.sun_path);
    memcpy(sa.sun_path, addr, n);
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    if (addr[0] == '@')
        sa.sun_path[0] = '\0';
    else
        len++;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, len), 0, "bind %s: %s", addr, strerror(errno));
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

/* One datagram as a string ("" when none came within the timeout). */
static const char *recv_msg(int fd, char *buf, size_t len)
{
    ssize_t n = recv(fd, buf, len - 1, 0);
    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

static char tmp_dir[64];

static const char *temp_path(const char *name, char *out, size_t len)
{
    if (!tmp_dir[0]) {
        snprintf(tmp_dir, sizeof tmp_dir, "/tmp/kailash-notify-XXXXXX");
        cr_assert_not_null(mkdtemp(tmp_dir));
    }
    snprintf(out, len, "%s/%s", tmp_dir, name);
    return out;
}

/* Each test runs in its own process: its temp dir goes with it. */
static void tmp_remove(void)
{
    char path[128];
    if (!tmp_dir[0])
        return;
    unlink(temp_path("notify.sock", path, sizeof path));
    rmdir(tmp_dir);
}

TestSuite(notify, .fini = tmp_remove);

static const char *abstract_name(char *out, size_t len)
{
    snprintf(out, len, "@kailash-notify-test-%d-%ld", (int)getpid(), (long)time(NULL));
    return out;
}

Test(notify, sends_to_a_path)
{
    char path[128], buf[256];
    int fd = bind_dgram(temp_path("notify.sock", path, sizeof path));
    cr_assert_eq(notify_send_to(path, "READY=1"), 0);
    cr_assert_str_eq(recv_msg(fd, buf, sizeof buf), "READY=1");
    close(fd);
}

Test(notify, sends_to_an_abstract_name)
{
    char name[108], buf[256];
    int fd = bind_dgram(abstract_name(name, sizeof name));
    cr_assert_eq(notify_send_to(name, "STATUS=x\nWATCHDOG=1"), 0);
    cr_assert_str_eq(recv_msg(fd, buf, sizeof buf), "STATUS=x\nWATCHDOG=1");
    close(fd);
}

Test(notify, an_abstract_name_may_fill_sun_path)
{
    struct sockaddr_un sa;
    char name[sizeof sa.sun_path + 1], buf[64];
    memset(name, 'k', sizeof sa.sun_path); /* '@' + 107: every byte of sun_path, no NUL */
    name[0] = '@';
    name[sizeof sa.sun_path] = '\0';
    snprintf(name + 1, 20, "%d-", (int)getpid());
    name[strlen(name)] = 'k';
    int fd = bind_dgram(name);
    cr_assert_eq(notify_send_to(name, "READY=1"), 0);
    cr_assert_str_eq(recv_msg(fd, buf, sizeof buf), "READY=1");
    close(fd);
}

Test(notify, refuses_a_path_too_long)
{
    struct sockaddr_un sa;
    char path[300];
    memset(path, 'a', sizeof path - 1);
    path[0] = '/';
    path[sizeof path - 1] = '\0';
    cr_assert_eq(notify_send_to(path, "READY=1"), -ENAMETOOLONG);
    path[sizeof sa.sun_path] = '\0'; /* 108 bytes: no room for the path's NUL */
    cr_assert_eq(notify_send_to(path, "READY=1"), -ENAMETOOLONG);
    path[0] = '@';
    path[sizeof sa.sun_path] = 'a';
    path[sizeof sa.sun_path + 1] = '\0'; /* abstract, 109 bytes with the '@': one too many */
    cr_assert_eq(notify_send_to(path, "READY=1"), -ENAMETOOLONG);
}

Test(notify, refuses_empty_and_relative_addresses)
{
    cr_assert_eq(notify_send_to(NULL, "READY=1"), -EINVAL);
    cr_assert_eq(notify_send_to("", "READY=1"), -EINVAL);
    cr_assert_eq(notify_send_to("run/notify.sock", "READY=1"), -EINVAL);
}

Test(notify, reports_a_socket_nobody_listens_on)
{
    char path[128], name[108];
    cr_assert_eq(notify_send_to(temp_path("nobody.sock", path, sizeof path), "READY=1"), -ENOENT);
    cr_assert_eq(notify_send_to(abstract_name(name, sizeof name), "READY=1"), -ECONNREFUSED);
}

/* A receiver that never reads: the writer gets EAGAIN instead of blocking the loop that pings. */
Test(notify, never_blocks_on_a_full_receiver, .timeout = 20)
{
    char name[108];
    int fd = bind_dgram(abstract_name(name, sizeof name));
    int sent = 0, again = 0;
    for (int i = 0; i < 100000 && !again; i++) {
        int rc = notify_send_to(name, "WATCHDOG=1");
        if (rc == 0)
            sent++;
        else if (rc == -EAGAIN)
            again = 1;
        else
            cr_assert_fail("unexpected %s", strerror(-rc));
    }
    cr_assert(again, "the receiver's queue never filled (%d sent)", sent);
    cr_assert_gt(sent, 0);
    close(fd);
}

Test(notify, without_notify_socket_nothing_is_sent)
{
    unsetenv("NOTIFY_SOCKET");
    setenv("WATCHDOG_USEC", "400000", 1);
    notify_init();
    cr_assert_eq(notify_send("READY=1"), 0);
    cr_assert_eq(notify_ready(2), 0);
    cr_assert_eq(notify_watchdog_usec(), 0, "a watchdog without a socket to ping");
}

Test(notify, a_bad_notify_socket_is_ignored)
{
    setenv("NOTIFY_SOCKET", "not/absolute", 1);
    notify_init();
    cr_assert_eq(notify_send("READY=1"), 0);
    cr_assert_eq(notify_stopping(1), 0);
}

Test(notify, a_vanished_notify_socket_fails_softly)
{
    char path[128];
    setenv("NOTIFY_SOCKET", temp_path("gone.sock", path, sizeof path), 1);
    notify_init();
    cr_assert_eq(notify_send("READY=1"), -ENOENT);
    cr_assert_eq(notify_send("READY=1"), -ENOENT); /* again: logged once, still no crash */
}

Test(notify, messages_of_the_protocol)
{
    char name[108], buf[600];
    int fd = bind_dgram(abstract_name(name, sizeof name));
    setenv("NOTIFY_SOCKET", name, 1);
    notify_init();

    cr_assert_eq(notify_ready(3), 0);
    cr_assert_str_eq(recv_msg(fd, buf, sizeof buf), "READY=1\nSTATUS=serving 3 workflow(s)");

    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    unsigned long long before = (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000;
    cr_assert_eq(notify_reloading(), 0);
    clock_gettime(CLOCK_MONOTONIC, &ts);
    unsigned long long after = (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000;
    unsigned long long us = 0;
    recv_msg(fd, buf, sizeof buf);
    cr_assert_eq(sscanf(buf, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading", &us), 1, "%s", buf);
    cr_assert(us >= before && us <= after, "MONOTONIC_USEC %llu not in [%llu, %llu]", us, before, after);

    cr_assert_eq(notify_stopping(4), 0);
    cr_assert_str_eq(recv_msg(fd, buf, sizeof buf), "STOPPING=1\nSTATUS=stopping: 4 request(s) in flight");

    cr_assert_eq(notify_status("two\nlines\r%d", 7), 0);
    cr_assert_str_eq(recv_msg(fd, buf, sizeof buf), "STATUS=two lines 7");

    notify_watchdog_ping(NULL);
    cr_assert_str_eq(recv_msg(fd, buf, sizeof buf), "WATCHDOG=1");
    close(fd);
}

Test(notify, a_long_status_is_cut_not_split)
{
    char name[108], buf[2048], text[1000];
    int fd = bind_dgram(abstract_name(name, sizeof name));
    setenv("NOTIFY_SOCKET", name, 1);
    notify_init();
    memset(text, 'x', sizeof text - 1);
    text[sizeof text - 1] = '\0';
    cr_assert_eq(notify_status("%s", text), 0);
    recv_msg(fd, buf, sizeof buf);
    cr_assert_eq(strncmp(buf, "STATUS=xxx", 10), 0);
    cr_assert_eq(strlen(buf), strlen("STATUS=") + 200);
    cr_assert_null(strchr(buf, '\n'));
    close(fd);
}

Test(notify, watchdog_interval_from_the_environment)
{
    char name[108], pid[32];
    setenv("NOTIFY_SOCKET", abstract_name(name, sizeof name), 1);
    setenv("WATCHDOG_USEC", "400000", 1);
    unsetenv("WATCHDOG_PID");
    notify_init();
    cr_assert_eq(notify_watchdog_usec(), 400000);

    snprintf(pid, sizeof pid, "%d", (int)getpid());
    setenv("WATCHDOG_PID", pid, 1);
    notify_init();
    cr_assert_eq(notify_watchdog_usec(), 400000, "WATCHDOG_PID is ours");

    snprintf(pid, sizeof pid, "%d", (int)getpid() + 1);
    setenv("WATCHDOG_PID", pid, 1);
    notify_init();
    cr_assert_eq(notify_watchdog_usec(), 0, "WATCHDOG_PID names another process");

    unsetenv("WATCHDOG_PID");
    const char *bad[] = {"", "abc", "-5", "12x", "99999999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        setenv("WATCHDOG_USEC", bad[i], 1);
        notify_init();
        cr_assert_eq(notify_watchdog_usec(), 0, "WATCHDOG_USEC='%s'", bad[i]);
    }
}
