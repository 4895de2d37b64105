/* events: placeholder until the event bus lands (the events helper replaces this file). */
#include "kailash/events.h"

int events_start(const kconfig *cfg, struct ioloop *const *loops, int nloops, char *err, size_t errlen)
{
    (void)cfg, (void)loops, (void)nloops, (void)err, (void)errlen;
    return 0;
}

void events_stop(void)
{
}
