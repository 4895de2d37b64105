/* sandbox: a Python worker's child between fork and exec (python_internal.h). Only system calls
 * here (async-signal-safe: the daemon is multithreaded, and the child of its fork may only exec):
 *
 *   fds       0 and 1 /dev/null, 2 the daemon's stderr (the runner's start-up errors; it moves 2 to
 *             /dev/null once started), 3 the socketpair; every other fd closed (close_range).
 *   limits    RLIMIT_AS python.memory_mb, RLIMIT_NOFILE 64, RLIMIT_CORE 0 (a crashing extension
 *             leaves no core), RLIMIT_FSIZE 64 MiB, RLIMIT_CPU a start-up budget whose soft limit the
 *             runner moves per call (a long-lived worker's total CPU time only grows; the hard limit
 *             stays open for that).
 *   privs     PR_SET_NO_NEW_PRIVS, a new session (no terminal signals), SIGKILL when the daemon dies.
 *   landlock  the filesystem beneath the interpreter, the runner and the system's libraries read-only,
 *             the private directory read-write, nothing else; no TCP (landlock.c).
 *   seccomp   a hand-written BPF filter (no libseccomp): the architecture must be the build's (else
 *             the process is killed; on x86_64 the x32 ABI too); socket() is refused with EPERM for
 *             every family but AF_UNIX (asyncio's self-pipe is a socketpair); fork and vfork, and
 *             clone without CLONE_THREAD, with EPERM (threads stay possible: numpy's); clone3 and
 *             io_uring_setup with ENOSYS (glibc then falls back to clone; io_uring could open sockets
 *             past the filter).
 *   exec      the interpreter with an empty environment, in the private working directory. */
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "python_internal.h"

#if defined(__x86_64__)
#define PY_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define PY_AUDIT_ARCH AUDIT_ARCH_AARCH64
#else
#error "the Python workers' seccomp filter knows x86_64 and aarch64"
#endif

#define LD(field) BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, field))
#define RET(v) BPF_STMT(BPF_RET | BPF_K, (v))
#define DENY(e) RET(SECCOMP_RET_ERRNO | ((e)&SECCOMP_RET_DATA))
/* syscall nr refused with errno e (two instructions; A holds nr before and after) */
#define REFUSE(nr, e) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1), DENY(e)

static const struct sock_filter py_filter[] = {
    LD(arch),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PY_AUDIT_ARCH, 1, 0),
    RET(SECCOMP_RET_KILL_PROCESS),
    LD(nr),
#ifdef __x86_64__
    BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000u /* __X32_SYSCALL_BIT */, 0, 1),
    RET(SECCOMP_RET_KILL_PROCESS),
#endif
    /* socket(domain, ...): AF_UNIX only */
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_socket, 0, 4),
    LD(args[0]),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_UNIX, 0, 1),
    RET(SECCOMP_RET_ALLOW),
    DENY(EPERM),
    /* clone(flags, ...): threads only */
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone, 0, 4),
    LD(args[0]),
    BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, CLONE_THREAD, 0, 1),
    RET(SECCOMP_RET_ALLOW),
    DENY(EPERM),
#ifdef __NR_fork
    REFUSE(__NR_fork, EPERM),
#endif
#ifdef __NR_vfork
    REFUSE(__NR_vfork, EPERM),
#endif
#ifdef __NR_clone3
    REFUSE(__NR_clone3, ENOSYS),
#endif
#ifdef __NR_io_uring_setup
    REFUSE(__NR_io_uring_setup, ENOSYS),
#endif
    RET(SECCOMP_RET_ALLOW),
};

static int set_limit(int res, rlim_t soft, rlim_t hard)
{
    struct rlimit rl = {soft, hard};
    return setrlimit(res, &rl);
}

static int sandbox_fds(const py_spawn *s)
{
    if (dup2(s->devnull, 0) < 0 || dup2(s->devnull, 1) < 0)
        return -1;
    if (s->sock == 3)
        return fcntl(3, F_SETFD, 0);
    if (dup2(s->sock, 3) < 0)
        return -1;
    return close_range(4, ~0u, 0) == 0 || errno == ENOSYS ? 0 : -1;
}

static int sandbox_limits(const py_spawn *s)
{
    return set_limit(RLIMIT_AS, (rlim_t)s->mem_bytes, (rlim_t)s->mem_bytes) | set_limit(RLIMIT_NOFILE, 64, 64) |
           set_limit(RLIMIT_CORE, 0, 0) | set_limit(RLIMIT_FSIZE, (rlim_t)64 << 20, (rlim_t)64 << 20) |
           set_limit(RLIMIT_CPU, 60, RLIM_INFINITY);
}

static int sandbox_seccomp(void)
{
    struct sock_fprog prog = {(unsigned short)(sizeof py_filter / sizeof py_filter[0]),
                              (struct sock_filter *)py_filter};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return -1;
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0);
}

void py_sandbox_exec(const py_spawn *s)
{
    static char *const empty_env[] = {NULL};
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL); /* the loop thread's mask blocks SIGTERM and friends */
    setsid();
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (sandbox_fds(s) != 0 || chdir(s->dir) != 0 || sandbox_limits(s) != 0 || py_sandbox_landlock(s) != 0 ||
        sandbox_seccomp() != 0)
        _exit(126);
    execve(s->exe, s->argv, empty_env);
    _exit(127);
}
