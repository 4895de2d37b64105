/* landlock: a Python worker's view of the filesystem and the network (python_internal.h), applied
 * in the child between fork and exec, after the limits and before the seccomp filter. System calls
 * only (async-signal-safe); every path was prepared by the parent.
 *
 * The worker may read and execute beneath its interpreter's prefix, the runner's directory, /usr,
 * /lib and /lib64 (and read /etc/ld.so.cache), and do anything in its private directory. Nothing
 * else: not /proc (another process's environment or memory), not data_dir (run records, the
 * journal), not /etc (the daemon's config, keys), not the daemon's TLS key or secrets files. With
 * Landlock ABI 4 or later TCP bind and connect are refused as well (a second wall behind seccomp's
 * socket rule), and with ABI 6 or later signals to processes outside the sandbox and abstract unix
 * sockets are too. A kernel without Landlock (ABI < 1) leaves the worker with seccomp and the limits
 * only; the pool logs that once (py_landlock_abi). */
#include <fcntl.h>
#include <linux/landlock.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "python_internal.h"

#define LL_FS_RO (LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR)
#define LL_FS_FILE (LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_READ_FILE)

/* The ruleset attribute as later kernels take it (the headers of Debian 12 know only the first
 * field); the kernel reads as many bytes as it is told. */
struct ll_ruleset {
    uint64_t fs, net, scoped;
};

struct ll_beneath {
    uint64_t allowed;
    int32_t parent_fd;
} __attribute__((packed));

int py_landlock_abi(void)
{
    long abi = syscall(__NR_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
    return abi < 0 ? 0 : (int)abi;
}

/* Every filesystem right the kernel's ABI knows (bit 13 REFER from 2, 14 TRUNCATE from 3, 15
 * IOCTL_DEV from 5). */
static uint64_t ll_fs_all(int abi)
{
    int bits = abi >= 5 ? 16 : abi >= 3 ? 15 : abi >= 2 ? 14 : 13;
    return (1ULL << bits) - 1;
}

static void ll_allow(int rs, const char *path, uint64_t access)
{
    int fd = open(path, O_PATH | O_CLOEXEC);
    if (fd < 0)
        return; /* not on this system (/lib64 on some): nothing to allow */
    struct ll_beneath b = {access, fd};
    syscall(__NR_landlock_add_rule, rs, LANDLOCK_RULE_PATH_BENEATH, &b, 0);
    close(fd);
}

int py_sandbox_landlock(const py_spawn *s)
{
    int abi = py_landlock_abi();
    if (abi < 1)
        return 0;
    struct ll_ruleset attr = {.fs = ll_fs_all(abi), .net = abi >= 4 ? 3 /* BIND_TCP | CONNECT_TCP */ : 0,
                              .scoped = abi >= 6 ? 3 /* ABSTRACT_UNIX_SOCKET | SIGNAL */ : 0};
    size_t size = abi >= 6 ? 24 : abi >= 4 ? 16 : 8;
    int rs = (int)syscall(__NR_landlock_create_ruleset, &attr, size, 0);
    if (rs < 0)
        return -1;
    for (int i = 0; i < PY_RO_PATHS && s->ro[i]; i++)
        ll_allow(rs, s->ro[i], LL_FS_RO);
    ll_allow(rs, "/etc/ld.so.cache", LL_FS_FILE);
    ll_allow(rs, "/dev/null", LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_WRITE_FILE);
    ll_allow(rs, "/dev/urandom", LANDLOCK_ACCESS_FS_READ_FILE);
    ll_allow(rs, s->dir, attr.fs);
    int rc = prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 ? (int)syscall(__NR_landlock_restrict_self, rs, 0) : -1;
    close(rs);
    return rc;
}
