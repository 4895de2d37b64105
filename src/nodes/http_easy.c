/* http_easy: a cache of idle libcurl easy handles. A handle costs several allocations (its state and
 * a 16 KiB receive buffer); under load the HTTP nodes would make and free one per request. Handles
 * are reset (curl_easy_reset) before they go back, so no option, header list or URL of one request
 * survives into the next; connections are not kept here but in the I/O loop's multi handle. */
#include <pthread.h>

#include "http_common.h"

#define HTTP_EASY_CACHE 256

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static CURL *g_idle[HTTP_EASY_CACHE];
static size_t g_nidle;

CURL *http_easy_get(void)
{
    CURL *e = NULL;
    pthread_mutex_lock(&g_mu);
    if (g_nidle > 0)
        e = g_idle[--g_nidle];
    pthread_mutex_unlock(&g_mu);
    return e ? e : curl_easy_init();
}

void http_easy_put(CURL *e)
{
    if (!e)
        return;
    curl_easy_reset(e);
    pthread_mutex_lock(&g_mu);
    if (g_nidle < HTTP_EASY_CACHE) {
        g_idle[g_nidle++] = e;
        e = NULL;
    }
    pthread_mutex_unlock(&g_mu);
    if (e)
        curl_easy_cleanup(e);
}

void http_easy_drain(void)
{
    pthread_mutex_lock(&g_mu);
    while (g_nidle > 0)
        curl_easy_cleanup(g_idle[--g_nidle]);
    pthread_mutex_unlock(&g_mu);
}

void node_registry_shutdown(void)
{
    http_easy_drain();
}
