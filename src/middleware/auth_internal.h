/* Shared by the auth module's files (auth_ctx.c, token_cache.c); not a public surface. */
#ifndef KAILASH_AUTH_INTERNAL_H
#define KAILASH_AUTH_INTERNAL_H

#include "kailash/auth.h"

/* token_cache.c: this thread's verdicts on tokens it verified, keyed by the token's SHA-256 and
 * valid for the ctx (its generation) and the remote key set they were made with, until exp + leeway. get returns a
 * new reference, or NULL on a miss; put takes none of its arguments' references (it makes its own). */
auth_principal *auth_token_cache_get(unsigned long long ctx_gen, const jwt_keyset *remote, const unsigned char digest[32],
                                     double now_s);
void auth_token_cache_put(unsigned long long ctx_gen, jwt_keyset *remote, const unsigned char digest[32], double until_s,
                          auth_principal *who);

#endif
