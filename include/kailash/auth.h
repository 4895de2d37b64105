/* auth: who is calling, and may they (API.md "Authentication and authorization"). The pieces live in
 * src/middleware/ beside the chain step that uses them:
 *
 *   principal.c   the caller: id ("key:ci", "jwt:<sub>", "anonymous"), roles, attributes
 *   jwk.c         key sets: an HS256 secret, PEM public keys, JWKS documents (RSA n/e, EC P-256 x/y),
 *                 parsed once into EVP_PKEYs when the config is loaded (reload re-reads them)
 *   jwt.c         verifying one compact JWS token against key sets: signature, alg, kid, claims
 *   jwks_fetch.c  auth.jwt.jwks_url: fetched at start and refreshed on a loop timer, never on a
 *                 request's path
 *   auth_ctx.c    the config's auth block compiled: API keys indexed by digest, the local key set,
 *                 the claim checks; the one that is current, swapped on reload
 *   auth.c        the chain step: authenticate, then the route's and the workflow's role checks
 *   access.c      a workflow's gateway.access conditions, checked once the inputs are parsed
 *
 * Secrets (keys, tokens, HS256 secrets) are never copied into a message, log line or answer: every
 * `why` text below is a fixed phrase. */
#ifndef KAILASH_AUTH_H
#define KAILASH_AUTH_H

#include <jansson.h>
#include <openssl/evp.h>
#include <stddef.h>

#include "kailash/config.h"

/* ---- the principal (principal.c) ----------------------------------------------------------------
 * Immutable once made; shared by reference (atomic count), so a principal may be read by any thread
 * that holds a reference. */

typedef enum auth_kind { AUTH_ANONYMOUS = 0, AUTH_KEY, AUTH_JWT, AUTH_FAILED } auth_kind;
typedef struct auth_principal auth_principal;

/* A new principal with one reference. id is copied; roles (array of strings) and attributes (object)
 * are stolen (NULL: [] and {}). NULL when out of memory (roles and attributes are released then). */
auth_principal *auth_principal_new(auth_kind kind, const char *id, json_t *roles, json_t *attributes);
void auth_principal_retain(auth_principal *p);
void auth_principal_release(auth_principal *p);
/* Borrowed, valid while a reference is held. */
const char *auth_principal_id(const auth_principal *p);
auth_kind auth_principal_kind(const auth_principal *p);
json_t *auth_principal_roles(const auth_principal *p);
json_t *auth_principal_attributes(const auth_principal *p);
/* Non-zero when p has role (exact match). */
int auth_principal_has_role(const auth_principal *p, const char *role);
/* "key", "jwt", "anonymous", "failed": the access log's auth field. */
const char *auth_kind_name(auth_kind k);

/* ---- key sets (jwk.c) ---------------------------------------------------------------------------
 * A key set is built once (single thread), then immutable and shared by reference (atomic count). */

typedef enum jwt_alg { JWT_HS256 = 0, JWT_RS256, JWT_ES256 } jwt_alg;
typedef struct jwt_keyset jwt_keyset;

jwt_keyset *jwt_keyset_new(void);
void jwt_keyset_retain(jwt_keyset *ks);
void jwt_keyset_release(jwt_keyset *ks);
/* The HS256 secret (copied; at most one per set). Under 32 bytes is refused. 0, or -1 with err. */
int jwt_keyset_add_hs256(jwt_keyset *ks, const void *secret, size_t len, char *err, size_t errlen);
/* A PEM public key (SubjectPublicKeyInfo "PUBLIC KEY", or PKCS#1 "RSA PUBLIC KEY"): RSA of at least
 * 2048 bits (RS256) or EC on P-256 (ES256); it has no kid. source names it in messages. 0, or -1. */
int jwt_keyset_add_pem(jwt_keyset *ks, const char *pem, size_t len, const char *source, char *err, size_t errlen);
/* A JWKS document {"keys": [...]}: RSA keys (n, e; at least 2048 bits) and EC P-256 keys (x, y),
 * each with its optional kid; a key whose "use" is not "sig", or whose "alg" is given and is not
 * RS256/ES256 for its type, or whose kty/crv is of another kind, is skipped (logged once, at warn).
 * A malformed supported key, a duplicate kid, or no usable key at all is refused. 0, or -1. */
int jwt_keyset_add_jwks(jwt_keyset *ks, const char *json, size_t len, const char *source, char *err, size_t errlen);
/* Keys held: asymmetric ones, and whether there is an HS256 secret. */
size_t jwt_keyset_count(const jwt_keyset *ks);
int jwt_keyset_has_hs256(const jwt_keyset *ks);

/* ---- verifying a token (jwt.c) ------------------------------------------------------------------ */

#define JWT_MAX_TOKEN 8192

typedef enum jwt_err {
    JWT_OK = 0,
    JWT_MALFORMED,     /* segments, base64url, JSON, types of header fields or claims */
    JWT_TOO_LARGE,     /* over JWT_MAX_TOKEN bytes */
    JWT_BAD_ALG,       /* none, unknown, or no key of that algorithm is configured */
    JWT_CRIT,          /* a crit header: no extension is understood */
    JWT_UNKNOWN_KID,   /* no key has the token's kid (a JWKS URL may be refreshed) */
    JWT_NO_KEY,        /* no kid and several candidate keys, or the kid's key is for another algorithm */
    JWT_BAD_SIGNATURE, /* does not verify (ES256 in DER form included) */
    JWT_EXPIRED,       /* exp + leeway is past */
    JWT_NOT_YET_VALID, /* nbf - leeway is ahead */
    JWT_BAD_ISSUER,
    JWT_BAD_AUDIENCE,
    JWT_BAD_CLAIMS, /* no exp, no string sub, roles claim of the wrong type */
    JWT_NO_MEMORY,
} jwt_err;

typedef struct jwt_opts {
    const char *issuer;             /* NULL: iss not checked; else it must be equal */
    const char *const *audience;    /* naudience > 0: the token's aud (string or array) must hold one */
    size_t naudience;
    const char *roles_claim;        /* dotted path into the claims ("realm_access.roles"); NULL: "roles" */
    long leeway_s;                  /* for exp and nbf */
    double now_s;                   /* Unix time */
} jwt_opts;

/* Verifies a compact JWS (len bytes, not NUL-terminated) against the key sets (any may be NULL).
 * Key choice: HS256 uses the HS256 secret; RS256/ES256 with a kid use the key with that kid in any set
 * (its type must fit the alg), without a kid the kid-less PEM key of that type, else the one
 * asymmetric key if exactly one is held. Then exp (required), nbf, iss, aud. On JWT_OK *out is a new
 * principal "jwt:<sub>" (roles from the roles claim: an array of strings or a space-separated string;
 * absent: []; attributes: every claim) and *exp_s its exp. Otherwise why gets a short fixed phrase
 * ("the token has expired") fit for a message and a WWW-Authenticate error_description. */
jwt_err jwt_verify(const char *token, size_t len, const jwt_keyset *const *sets, size_t nsets, const jwt_opts *o,
                   auth_principal **out, double *exp_s, char *why, size_t whylen);

/* ---- the JWKS URL (jwks_fetch.c) ----------------------------------------------------------------
 * One per process. Fetched on an I/O loop through the upstream module's libcurl path (https://, or
 * http:// on a loopback address), refreshed after the answer's Cache-Control max-age (bounded),
 * retried with backoff after a failure; a failed refresh keeps the keys held. */

typedef struct jwks_remote_opts {
    const char *url;    /* NULL: none (a running fetcher stops and its keys are dropped) */
    int min_refresh_s;  /* an unknown kid asks for a refresh at most this often (default 60) */
    int verify_tls;     /* upstream.verify_tls */
    long connect_timeout_ms;
} jwks_remote_opts;

/* Starts (or, on reload, re-aims) the fetcher; a changed URL drops the keys held. Any thread; the
 * fetches run on the first of engine_loops() (after engine_start). 0, or -1 with err (a URL of the wrong kind). */
int jwks_remote_configure(const jwks_remote_opts *o, char *err, size_t errlen);
/* The keys fetched last (a new reference), or NULL before the first fetch succeeded. Thread-safe. */
jwt_keyset *jwks_remote_acquire(void);
/* A token named a kid no key has: refresh now unless the last fetch began less than min_refresh_s
 * ago. Thread-safe, never waits. */
void jwks_remote_poke(void);
/* For /ready: -1 not configured, 1 keys held, 0 none yet (why gets the last failure, or "not
 * fetched yet"). Thread-safe. */
int jwks_remote_state(char *why, size_t whylen);
/* Stops the fetcher (at exit). */
void jwks_remote_stop(void);

/* ---- the compiled auth config (auth_ctx.c) ------------------------------------------------------ */

typedef struct auth_ctx auth_ctx;

/* Compiles cfg's enable_auth, auth.api_keys and auth.jwt: reads the HS256 secret from its
 * environment variable and the key files. Refuses (-1 with err naming the file and key) what does
 * not hold: a bad digest or duplicate key, a short secret, an unreadable or unfit key file, and
 * enable_auth with no key and no JWT source (fail closed). */
int auth_ctx_load(const kconfig *cfg, auth_ctx **out, char *err, size_t errlen);
void auth_ctx_free(auth_ctx *c);
/* Makes c the one requests see and returns the previous one (or NULL). Requests read the current
 * ctx within one turn of their loop, so the caller frees the previous one once every loop has
 * finished the turn it was in (http_server_sync). Thread-safe. */
auth_ctx *auth_ctx_publish(auth_ctx *c);
/* The current one (NULL before the first publish: everyone is anonymous). Thread-safe. */
const auth_ctx *auth_ctx_current(void);
int auth_ctx_enabled(const auth_ctx *c);
/* The credentials c accepts with authentication on (a mask of AUTH_METHOD_*), for the OpenAPI
 * document's security schemes; 0 when c is NULL or authentication is off. */
enum { AUTH_METHOD_KEY = 1, AUTH_METHOD_JWT = 2 };
int auth_ctx_methods(const auth_ctx *c);

/* The outcome of authenticating one request's credentials. */
typedef struct auth_result {
    auth_kind kind;         /* AUTH_FAILED: refused */
    auth_principal *who;    /* a new reference (NULL when failed or anonymous) */
    int bad_token;          /* failed on a Bearer token: the challenge carries error="invalid_token" */
    char why[96];           /* failed: a fixed phrase */
} auth_result;

/* Authenticates: X-API-Key first (api_key non-NULL), else an Authorization header (authorization
 * non-NULL; only the Bearer scheme), else anonymous. On the calling thread; a JWT verified before is
 * answered from this thread's cache of verified tokens until its exp. */
void auth_authenticate(const auth_ctx *c, const char *api_key, const char *authorization, auth_result *res);

/* ---- access (access.c) ------------------------------------------------------------------------ */

struct workflow;
/* A workflow's gateway.access roles for p (NULL: anonymous): 0 allowed, -1 refused with msg. admin
 * passes; a public workflow lets anonymous callers in. */
int auth_access_roles(const struct workflow *wf, const auth_principal *p, char *msg, size_t msglen);
/* Its conditions against the run's inputs: 0 allowed, -1 refused with msg (naming the attribute,
 * never its value). admin passes. */
int auth_access_conditions(const struct workflow *wf, const auth_principal *p, json_t *inputs, char *msg,
                           size_t msglen);

/* ---- kailashd hash-key ------------------------------------------------------------------------ */

/* SHA-256 of key as 64 lowercase hex digits and a NUL. */
void auth_key_digest_hex(const void *key, size_t len, char out[65]);

#endif
