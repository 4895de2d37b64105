/* easy: libcurl easy handles for outbound calls, one per attempt.
 *
 * A handle is never reused across transfers. libcurl 7.88.1 (what Debian 12 ships) keeps, on the easy
 * handle, a pointer to the last header it stored; a new transfer does not clear it, and an answer
 * whose first header line is folded (starts with a blank) is unfolded into that freed header: a
 * heap use-after-free and a double free that kill the daemon (curl issue 11101, fixed in 8.1.0). Any
 * upstream reached through libcurl could send such an answer, so every attempt gets a fresh handle
 * and cleans it up when it ends. Connections are not on the handle but in the I/O loop's multi
 * handle's connection cache, so they are still reused. The cost (a handle's allocations, its 16 KiB
 * receive buffer) is measured by `make bench`'s https load (README, "Performance"). */
#include "upstream_internal.h"

CURL *http_easy_get(void)
{
    return curl_easy_init();
}

void http_easy_put(CURL *e)
{
    if (e)
        curl_easy_cleanup(e);
}
