/* access: a workflow's gateway.access block compiled at load (API.md "Authentication and
 * authorization"): roles (any one suffices), conditions (a principal attribute equal to a path into
 * the run's inputs, or to a literal), public. Checking it is the auth module's (src/middleware/access.c)
 * and happens only while enable_auth is on; with it off the block is kept, shown, and a warning says
 * it is not enforced. */
#include <stdlib.h>
#include <string.h>

#include "kailash/log.h"
#include "kailash/util.h"
#include "loader_internal.h"

#define ACCESS_MAX_ITEMS 64

static char **strings_dup(json_t *a)
{
    size_t i, n = json_array_size(a);
    json_t *e;
    char **out = calloc(n + 1, sizeof *out);
    if (!out)
        return NULL;
    json_array_foreach(a, i, e)
    {
        if (!(out[i] = strdup(json_string_value(e)))) {
            util_strv_free(out);
            return NULL;
        }
    }
    return out;
}

static int load_roles(ld *l, wf_access *a, json_t *v)
{
    size_t i, n = json_array_size(v);
    json_t *e;
    int ok = json_is_array(v) && n > 0 && n <= ACCESS_MAX_ITEMS;
    json_array_foreach(v, i, e) ok &= json_is_string(e) && json_string_length(e) > 0;
    if (!ok) {
        ld_problem(l, NULL, "gateway.access.roles: expected 1..%d role names (leave roles out to let any "
                            "authenticated caller in)", ACCESS_MAX_ITEMS);
        return -1;
    }
    a->roles = strings_dup(v);
    return a->roles ? 0 : -1;
}

/* "inputs.a.b" -> {"a", "b", NULL}; NULL when it does not start with "inputs." or has an empty segment. */
static char **path_split(const char *p)
{
    if (strncmp(p, "inputs.", 7) != 0)
        return NULL;
    return util_strv_split(p + 7, '.');
}

static int load_condition(ld *l, wf_condition *c, size_t i, json_t *v)
{
    json_t *attr = json_object_get(v, "attribute"), *eq = json_object_get(v, "equals");
    json_t *lit = json_object_get(v, "value");
    if (!json_is_object(v) || json_object_size(v) != 2 || !json_is_string(attr) || json_string_length(attr) == 0 ||
        (eq == NULL) == (lit == NULL)) {
        ld_problem(l, NULL, "gateway.access.conditions[%zu]: expected {\"attribute\": NAME, \"equals\": "
                            "\"inputs.PATH\"} or {\"attribute\": NAME, \"value\": LITERAL}", i);
        return -1;
    }
    c->attribute = strdup(json_string_value(attr));
    if (lit) {
        c->value = json_incref(lit);
        return c->attribute ? 0 : -1;
    }
    c->path = json_is_string(eq) ? path_split(json_string_value(eq)) : NULL;
    if (!c->path) {
        ld_problem(l, NULL, "gateway.access.conditions[%zu].equals: expected a path into the inputs such as "
                            "\"inputs.tenant\"", i);
        return -1;
    }
    return c->attribute ? 0 : -1;
}

static int load_conditions(ld *l, wf_access *a, json_t *v)
{
    size_t i, n = json_array_size(v);
    json_t *e;
    if (!json_is_array(v) || n > ACCESS_MAX_ITEMS) {
        ld_problem(l, NULL, "gateway.access.conditions: expected an array of at most %d conditions",
                   ACCESS_MAX_ITEMS);
        return -1;
    }
    if (n && !(a->conds = calloc(n, sizeof *a->conds)))
        return -1;
    json_array_foreach(v, i, e)
    {
        a->nconds = i + 1;
        if (load_condition(l, &a->conds[i], i, e) != 0)
            return -1;
    }
    return 0;
}

void ld_load_access(ld *l, json_t *acc)
{
    wf_access *a = &l->wf->access;
    const char *k;
    json_t *v;
    if (!json_is_object(acc)) {
        ld_problem(l, NULL, "gateway.access: expected an object");
        return;
    }
    a->present = 1;
    json_object_foreach(acc, k, v)
    {
        int rc = 0;
        if (strcmp(k, "roles") == 0)
            rc = load_roles(l, a, v);
        else if (strcmp(k, "conditions") == 0)
            rc = load_conditions(l, a, v);
        else if (strcmp(k, "public") == 0 && json_is_boolean(v))
            a->is_public = json_is_true(v);
        else
            ld_problem(l, NULL, "gateway.access: unknown key or wrong type '%s' (expected roles: [strings], "
                                "conditions: [{attribute, equals|value}], public: bool)", k);
        if (rc != 0)
            return;
    }
    if (!l->env->cfg->enable_auth)
        log_msg(LOG_WARN, "%s: gateway.access is not enforced: authentication is off (enable_auth is false)",
                l->file);
}

void wf_access_free(wf_access *a)
{
    util_strv_free(a->roles);
    for (size_t i = 0; i < a->nconds; i++) {
        free(a->conds[i].attribute);
        util_strv_free(a->conds[i].path);
        json_decref(a->conds[i].value);
    }
    free(a->conds);
    memset(a, 0, sizeof *a);
}
