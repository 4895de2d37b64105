/* watchdog: the service manager's watchdog, fed by the I/O loops' liveness (src/engine/watchdog.c).
 *
 * Every loop runs a heartbeat timer that stamps the time of its last turn; a ping timer on the first
 * loop calls ping every half interval, but only while every loop's stamp is recent. A loop that hangs
 * (a callback that never returns, a deadlock) stops stamping, the pings stop, and systemd restarts
 * the service: a timer thread of its own would go on pinging while the loops hang.
 *
 * Threads: watchdog_start and watchdog_free from one thread (the main one); watchdog_stale_loops is
 * thread-safe. Memory: the watchdog is the caller's; free it only after its loops were destroyed
 * (each loop's stop hook ends its timers). */
#ifndef KAILASH_WATCHDOG_H
#define KAILASH_WATCHDOG_H

#include <stddef.h>
#include <stdint.h>

struct ioloop;
typedef struct watchdog watchdog;
/* Called on the first loop's thread; must not block (notify_watchdog_ping). */
typedef void (*watchdog_ping_fn)(void *ud);

/* Starts heartbeats on the n loops (n >= 1) and pings every interval_us / 2 while each loop has
 * turned within interval_us / 2. NULL on error (err filled). */
watchdog *watchdog_start(struct ioloop *const *loops, int n, uint64_t interval_us, watchdog_ping_fn ping, void *ud,
                         char *err, size_t errlen);

/* How many loops have not turned for longer than max_age_ms. */
int watchdog_stale_loops(const watchdog *wd, double max_age_ms);

/* Frees wd; its loops must be destroyed already (NULL: nothing). */
void watchdog_free(watchdog *wd);

#endif
