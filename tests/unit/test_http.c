/* http: the route table (404, 405 with Allow, the {name} segment). */
#include <criterion/criterion.h>
#include <string.h>

#include "kailash/api.h"
#include "kailash/http.h"

static const http_route *find(const char *method, const char *path, char *param, int *status, char *allow)
{
    *status = 0;
    return http_route_find(method, path, param, 132, status, allow, 64);
}

Test(router, routes_and_names)
{
    char param[132], allow[64];
    int st;
    const http_route *r = find("POST", "/workflows/orders/run", param, &st, allow);
    cr_assert_not_null(r);
    cr_assert_eq(r->handle, api_run);
    cr_assert_eq(r->prepare, api_run_prepare);
    cr_assert_str_eq(param, "orders");
    r = find("POST", "/workflows/orders/execute", param, &st, allow);
    cr_assert_eq(r->handle, api_execute);
    r = find("GET", "/workflows/a.b-c_1", param, &st, allow);
    cr_assert_eq(r->handle, api_workflows_get);
    cr_assert_str_eq(param, "a.b-c_1");
    cr_assert_eq(find("GET", "/workflows", param, &st, allow)->handle, api_workflows_list);
    cr_assert_eq(find("GET", "/health", param, &st, allow)->handle, api_health);
    cr_assert_eq(find("GET", "/ready", param, &st, allow)->handle, api_ready);
    cr_assert_eq(find("POST", "/admin/reload", param, &st, allow)->handle, api_admin_reload);
}

Test(router, unknown_paths_are_404)
{
    char param[132], allow[64];
    int st;
    const char *paths[] = {"/",        "/nope",    "/workflows/",       "/workflows//run", "/workflows/a/run/x",
                           "/healthz", "/health/", "/workflows/a/b/run"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        cr_assert_null(find("GET", paths[i], param, &st, allow), "%s", paths[i]);
        cr_assert_eq(st, 404, "%s", paths[i]);
    }
}

Test(router, wrong_method_is_405_with_allow)
{
    char param[132], allow[64];
    int st;
    cr_assert_null(find("GET", "/workflows/x/run", param, &st, allow));
    cr_assert_eq(st, 405);
    cr_assert_str_eq(allow, "POST");
    cr_assert_null(find("DELETE", "/health", param, &st, allow));
    cr_assert_eq(st, 405);
    cr_assert_str_eq(allow, "GET");
    cr_assert_null(find("GET", "/admin/reload", param, &st, allow));
    cr_assert_str_eq(allow, "POST");
}

Test(router, overlong_name_is_404)
{
    char param[132], allow[64], path[400];
    int st;
    memset(path, 'a', sizeof path);
    memcpy(path, "/workflows/", 11);
    strcpy(path + 300, "/run");
    cr_assert_null(find("POST", path, param, &st, allow));
    cr_assert_eq(st, 404);
}
