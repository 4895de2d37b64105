/* wait_count.h: for unit tests whose callbacks count events under a lock (test_ioloop.c, test_h1.c).
 * Waits until *counter reaches n (mu held while reading it; cv signalled at each change), at most
 * timeout_ms. Returns the last value seen. */
#ifndef KAILASH_TEST_WAIT_COUNT_H
#define KAILASH_TEST_WAIT_COUNT_H

#include <pthread.h>
#include <time.h>

static inline int wait_count_on(pthread_mutex_t *mu, pthread_cond_t *cv, const int *counter, int n, int timeout_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(mu);
    while (*counter < n && pthread_cond_timedwait(cv, mu, &ts) == 0)
        ;
    int v = *counter;
    pthread_mutex_unlock(mu);
    return v;
}

#endif
