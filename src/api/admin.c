/* admin: POST /admin/reload. Who may call it is the auth step's (src/middleware/auth.c): the admin
 * role with authentication on, loopback clients only with it off (API.md). The reload itself is main.c's (api_admin_set_reload); it
 * reads and compiles every workflow file, so it runs on the worker pool, not on the I/O loop that
 * received the request (that loop's upstream calls go on meanwhile). */
#include <stddef.h>

#include "kailash/api.h"
#include "kailash/engine.h"

static api_reload_fn g_reload;

void api_admin_set_reload(api_reload_fn fn)
{
    g_reload = fn;
}

static void reload_reply(kreq *r)
{
    json_t *result = NULL;
    char err[1024];
    if (!g_reload || g_reload(&result, err, sizeof err) != 0)
        http_reply_error(r, 422, "invalid_config", g_reload ? err : "reload is not available", NULL);
    else
        http_reply_json(r, 200, result);
}

static void reload_job(void *arg)
{
    kreq *r = arg;
    reload_reply(r);
    http_complete(r);
}

int api_admin_reload(kreq *r)
{
    if (engine_submit(reload_job, r) == 0)
        return HTTP_PENDING;
    reload_reply(r); /* no pool (stopping): do it here */
    return HTTP_DONE;
}
