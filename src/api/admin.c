/* admin: POST /admin/reload. With authentication off (the only mode this build has), admin routes
 * answer loopback clients only (API.md). The reload itself is main.c's (api_set_reload). */
#include <stddef.h>

#include "kailash/api.h"

static api_reload_fn g_reload;

void api_set_reload(api_reload_fn fn)
{
    g_reload = fn;
}

int api_admin_prepare(kreq *r)
{
    if (r->client_loopback)
        return HTTP_CONTINUE;
    http_reply_error(r, 403, "forbidden", "admin routes answer only loopback clients while authentication is off",
                     NULL);
    return HTTP_DONE;
}

int api_admin_reload(kreq *r)
{
    json_t *result = NULL;
    char err[1024];
    if (!g_reload || g_reload(&result, err, sizeof err) != 0) {
        http_reply_error(r, 422, "invalid_config", g_reload ? err : "reload is not available", NULL);
        return HTTP_DONE;
    }
    http_reply_json(r, 200, result);
    return HTTP_DONE;
}
