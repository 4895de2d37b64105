/* callback: placeholder until callbacks land (the callbacks helper replaces this file). */
#include <stdio.h>

#include "kailash/jobs.h"
#include "kailash/util.h"

int jobs_callback_configure(const kconfig *cfg, char *err, size_t errlen)
{
    (void)cfg, (void)err, (void)errlen;
    return 0;
}

int jobs_callback_check(const char *url, char *err, size_t errlen)
{
    (void)url;
    snprintf(err, errlen, "callback_url is not supported yet");
    return -1;
}

void jobs_callback_send(const char *url, const char *run_id, const char *body, size_t len)
{
    (void)url, (void)run_id, (void)body, (void)len;
}

int jobs_callback_inflight(void)
{
    return 0;
}

void jobs_callback_stop(void)
{
}
