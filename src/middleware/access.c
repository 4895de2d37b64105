/* access: a workflow's gateway.access (compiled by src/workflow/access.c) against a principal.
 * Roles are checked by the auth step, before the body is read; conditions read the inputs, so the
 * run handler checks them once the body is parsed. The admin role passes both. Messages name the
 * role list's owner or the attribute, never a value: a refused caller learns what it lacks, not
 * what someone else holds. */
#include <stdio.h>
#include <string.h>

#include "kailash/auth.h"
#include "kailash/util.h"
#include "kailash/workflow.h"

int auth_access_roles(const workflow *wf, const auth_principal *p, char *msg, size_t msglen)
{
    const wf_access *a = &wf->access;
    if (a->is_public) /* a caller who authenticated must not get less than one who did not */
        return 0;
    if (!p)
        return util_err(msg, msglen, "credentials are missing");
    if (!a->roles || auth_principal_has_role(p, "admin"))
        return 0;
    for (char **r = a->roles; *r; r++)
        if (auth_principal_has_role(p, *r))
            return 0;
    return util_err(msg, msglen, "workflow '%s' needs one of its access roles, which the caller does not have",
                    wf->name);
}

static json_t *inputs_at(json_t *inputs, char **path)
{
    json_t *v = inputs;
    for (; v && *path; path++)
        v = json_is_object(v) ? json_object_get(v, *path) : NULL;
    return v;
}

int auth_access_conditions(const workflow *wf, const auth_principal *p, json_t *inputs, char *msg, size_t msglen)
{
    const wf_access *a = &wf->access;
    if (a->nconds == 0 || (p && auth_principal_has_role(p, "admin")))
        return 0;
    for (size_t i = 0; i < a->nconds; i++) {
        const wf_condition *c = &a->conds[i];
        json_t *have = p ? json_object_get(auth_principal_attributes(p), c->attribute) : NULL;
        json_t *want = c->value ? c->value : inputs_at(inputs, c->path);
        /* a missing attribute never matches, not even a missing input (null == null would let anyone in) */
        if (!have || !want || json_is_null(have) || !json_equal(have, want))
            return util_err(msg, msglen, "workflow '%s': the caller's attribute '%.64s' does not allow this run",
                            wf->name, c->attribute);
    }
    return 0;
}
