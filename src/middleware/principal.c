/* principal: the caller a request runs as. Made by the auth step (an API key's entry, a verified
 * token's claims) and shared by reference: the request holds one, its run another, a thread's cache
 * of verified tokens a third. The count is atomic because a run may end on a worker thread. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "kailash/auth.h"

struct auth_principal {
    atomic_int refs;
    auth_kind kind;
    char *id;
    json_t *roles;
    json_t *attributes;
};

auth_principal *auth_principal_new(auth_kind kind, const char *id, json_t *roles, json_t *attributes)
{
    auth_principal *p = calloc(1, sizeof *p);
    if (p)
        p->id = strdup(id ? id : "");
    if (!roles)
        roles = json_array();
    if (!attributes)
        attributes = json_object();
    if (!p || !p->id || !roles || !attributes) {
        if (p)
            free(p->id);
        free(p);
        json_decref(roles);
        json_decref(attributes);
        return NULL;
    }
    atomic_init(&p->refs, 1);
    p->kind = kind;
    p->roles = roles;
    p->attributes = attributes;
    return p;
}

void auth_principal_retain(auth_principal *p)
{
    if (p)
        atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
}

void auth_principal_release(auth_principal *p)
{
    if (!p || atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) != 1)
        return;
    free(p->id);
    json_decref(p->roles);
    json_decref(p->attributes);
    free(p);
}

const char *auth_principal_id(const auth_principal *p)
{
    return p ? p->id : "anonymous";
}

auth_kind auth_principal_kind(const auth_principal *p)
{
    return p ? p->kind : AUTH_ANONYMOUS;
}

json_t *auth_principal_roles(const auth_principal *p)
{
    return p ? p->roles : NULL;
}

json_t *auth_principal_attributes(const auth_principal *p)
{
    return p ? p->attributes : NULL;
}

int auth_principal_has_role(const auth_principal *p, const char *role)
{
    size_t i;
    json_t *r;
    if (!p)
        return 0;
    json_array_foreach(p->roles, i, r) if (json_is_string(r) && strcmp(json_string_value(r), role) == 0) return 1;
    return 0;
}

const char *auth_kind_name(auth_kind k)
{
    switch (k) {
    case AUTH_KEY:
        return "key";
    case AUTH_JWT:
        return "jwt";
    case AUTH_FAILED:
        return "failed";
    default:
        return "anonymous";
    }
}
