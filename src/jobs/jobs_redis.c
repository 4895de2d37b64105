/* jobs_redis: placeholder until the Redis Streams queue lands (the Redis helper replaces this file):
 * with it absent, async runs use the in-process queue. */
#include "jobs_internal.h"

int jobs_redis_start(const kconfig *cfg, char *err, size_t errlen)
{
    (void)cfg, (void)err, (void)errlen;
    return 0;
}

void jobs_redis_stop(void)
{
}

int jobs_redis_up(void)
{
    return 0;
}

void jobs_redis_enqueue(const job *j, void (*cb)(void *ud, int ok), void *ud)
{
    (void)j;
    cb(ud, 0);
}

void jobs_redis_ack(const job *j)
{
    (void)j;
}

void jobs_redis_cancel(const char *run_id)
{
    (void)run_id;
}
