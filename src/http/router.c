/* router: the route table. A route is one row: method, path pattern, and the api/ handlers. Matching
 * walks the rows (there are few); a path that some row matches with another method gives 405 and the
 * Allow list, a path no row matches gives 404. */
#include <stdio.h>
#include <string.h>

#include "kailash/api.h"
#include "kailash/http.h"

static const http_route routes[] = {
    /* method, pattern, auth, runs, resolve (before the chain), prepare (before the body), handle */
    {"GET", "/health", HTTP_AUTH_NONE, 0, NULL, NULL, api_health},
    {"GET", "/ready", HTTP_AUTH_NONE, 0, NULL, NULL, api_ready},
    {"GET", "/metrics", HTTP_AUTH_METRICS, 0, NULL, NULL, api_metrics},
    {"GET", "/workflows", HTTP_AUTH_USER, 0, NULL, NULL, api_workflows_list},
    {"GET", "/workflows/{name}", HTTP_AUTH_USER, 0, api_run_resolve, NULL, api_workflows_get},
    {"POST", "/workflows/{name}/run", HTTP_AUTH_USER, 1, api_run_resolve, api_run_prepare, api_run},
    {"POST", "/workflows/{name}/execute", HTTP_AUTH_USER, 1, api_run_resolve, api_run_prepare, api_execute},
    {"GET", "/runs", HTTP_AUTH_USER, 0, NULL, NULL, api_runs_list},
    {"GET", "/runs/{name}", HTTP_AUTH_USER, 0, NULL, NULL, api_runs_get},
    {"GET", "/runs/{name}/events", HTTP_AUTH_USER, 0, NULL, NULL, api_run_events},
    {"DELETE", "/runs/{name}", HTTP_AUTH_USER, 0, NULL, NULL, api_runs_cancel},
    {"POST", "/admin/reload", HTTP_AUTH_ADMIN, 0, NULL, NULL, api_admin_reload},
    {"DELETE", "/cache/{name}", HTTP_AUTH_ADMIN, 0, api_run_resolve, NULL, api_cache_purge},
    {"GET", "/openapi.json", HTTP_AUTH_NONE, 0, NULL, NULL, api_openapi},
};

/* Matches pattern against path; on success copies the {name} segment into param. */
static int match(const char *pat, const char *path, char *param, size_t paramlen)
{
    while (*pat && *path) {
        if (strncmp(pat, "{name}", 6) == 0) {
            const char *end = strchr(path, '/');
            size_t n = end ? (size_t)(end - path) : strlen(path);
            if (n == 0 || n >= paramlen)
                return 0;
            memcpy(param, path, n);
            param[n] = '\0';
            pat += 6;
            path += n;
            continue;
        }
        if (*pat++ != *path++)
            return 0;
    }
    return *pat == '\0' && *path == '\0';
}

const http_route *http_route_find(const char *method, const char *path, char *param, size_t paramlen, int *status,
                                  char *allow, size_t allowlen)
{
    size_t alen = 0;
    allow[0] = '\0';
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        char p[132];
        if (!match(routes[i].pattern, path, p, sizeof p))
            continue;
        if (strcmp(routes[i].method, method) == 0) {
            util_copy(param, paramlen, p);
            return &routes[i];
        }
        if (!strstr(allow, routes[i].method))
            alen += (size_t)snprintf(allow + alen, alen < allowlen ? allowlen - alen : 0, "%s%s", alen ? ", " : "",
                                     routes[i].method);
    }
    *status = alen ? 405 : 404;
    return NULL;
}
