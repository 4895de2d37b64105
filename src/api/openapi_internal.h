/* Shared by the OpenAPI document's files (openapi.c, openapi_paths.c, openapi_components.c); not a
 * public surface. Every function returns a new reference, or NULL when memory runs out. */
#ifndef KAILASH_OPENAPI_INTERNAL_H
#define KAILASH_OPENAPI_INTERNAL_H

#include <jansson.h>

#include "kailash/engine.h"

/* What the document depends on besides the registry: the credentials accepted (a mask of
 * AUTH_METHOD_*, kailash/auth.h; 0 with authentication off), and /metrics' config: whether it
 * answers (enable_monitoring) and needs a role (metrics_auth, while monitoring is on). */
typedef struct oa_ctx {
    int auth_methods;
    int monitoring;
    int metrics_auth;
} oa_ctx;

/* openapi_components.c: {"schemas", "responses", "parameters", "headers"}. */
json_t *openapi_components(void);
/* openapi_paths.c: the paths object: every route this build's router serves, then one
 * /workflows/<name>/run and /execute per workflow of reg (NULL: none). */
json_t *openapi_paths(const registry *reg, const oa_ctx *c);
/* openapi_paths.c: components/securitySchemes for c (an empty object with authentication off). */
json_t *openapi_security_schemes(const oa_ctx *c);

#endif
