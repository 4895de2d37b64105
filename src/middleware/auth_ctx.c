/* auth_ctx: the config's auth block compiled once (at start and on each reload), then read by every
 * loop without a lock.
 *
 * API keys: the config holds SHA-256 digests only. A presented key is hashed and its digest looked
 * up in an open-addressing table indexed by the digest's first bytes (no scan of all keys, and the
 * probe position depends on a hash the caller cannot steer to a chosen key); the candidate is then
 * compared in full with CRYPTO_memcmp. JWT: the HS256 secret, the PEM key and the JWKS file form
 * one local key set; the JWKS URL's set (jwks_fetch.c) is asked for per token. A ctx borrows its
 * claim settings from the config it was made from and is replaced with it on reload; requests keep
 * their own reference to an API key's principal. */
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth_internal.h"
#include "kailash/log.h"
#include "kailash/util.h"

#define KEY_MAX_PRESENTED 1024 /* a longer X-API-Key is refused unhashed */
#define KEY_FILE_MAX ((size_t)1 << 20)

typedef struct key_entry {
    unsigned char digest[SHA256_DIGEST_LENGTH];
    auth_principal *who;
} key_entry;

struct auth_ctx {
    int enabled;
    key_entry *keys;
    size_t nkeys;
    uint32_t *slots; /* index + 1 into keys, 0: empty; nslots a power of two >= 2 * nkeys */
    size_t nslots;
    jwt_keyset *local; /* NULL: no local JWT source */
    int remote;        /* auth.jwt.jwks_url is set */
    jwt_opts opts;     /* issuer, audience and roles_claim borrowed from the config */
    unsigned long long gen;
};

static _Atomic(const auth_ctx *) g_current;
static atomic_ullong g_generation; /* each ctx's own number: what the token cache compares */

static size_t slot_of(const unsigned char *d, size_t nslots)
{
    uint64_t h;
    memcpy(&h, d, sizeof h);
    return (size_t)h & (nslots - 1);
}

static const key_entry *key_find(const auth_ctx *c, const unsigned char *d)
{
    if (!c->nslots)
        return NULL;
    for (size_t i = slot_of(d, c->nslots);; i = (i + 1) & (c->nslots - 1)) {
        uint32_t k = c->slots[i];
        if (k == 0)
            return NULL;
        if (CRYPTO_memcmp(c->keys[k - 1].digest, d, SHA256_DIGEST_LENGTH) == 0)
            return &c->keys[k - 1];
    }
}

void auth_key_digest_hex(const void *key, size_t len, char out[65])
{
    unsigned char d[SHA256_DIGEST_LENGTH];
    SHA256(key, len, d);
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static int hex_digest(const char *s, unsigned char *out)
{
    if (!s || strlen(s) != 2 * SHA256_DIGEST_LENGTH)
        return -1;
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++) {
        unsigned v;
        if (!strchr("0123456789abcdefABCDEF", s[2 * i]) || !s[2 * i] || !strchr("0123456789abcdefABCDEF", s[2 * i + 1]) ||
            sscanf(s + 2 * i, "%2x", &v) != 1)
            return -1;
        out[i] = (unsigned char)v;
    }
    return 0;
}

/* An id shows in principals and logs: printable, short. */
static int key_id_valid(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > 64)
        return 0;
    for (const char *p = id; *p; p++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:@-", *p))
            return 0;
    return 1;
}

static int entry_shape(const kconfig *cfg, size_t i, json_t *e, char *err, size_t errlen)
{
    const char *k;
    json_t *v;
    if (!json_is_object(e))
        return util_err(err, errlen, "%s: key 'auth.api_keys[%zu]': expected an object {id, sha256, roles, attributes}",
                        cfg->file, i);
    json_object_foreach(e, k, v)
    {
        int ok = (strcmp(k, "id") == 0 && json_is_string(v) && key_id_valid(json_string_value(v))) ||
                 (strcmp(k, "sha256") == 0 && json_is_string(v)) || (strcmp(k, "attributes") == 0 && json_is_object(v));
        if (strcmp(k, "roles") == 0 && json_is_array(v)) {
            size_t j;
            json_t *r;
            ok = 1;
            json_array_foreach(v, j, r) ok &= json_is_string(r);
        }
        if (!ok)
            return util_err(err, errlen,
                            "%s: key 'auth.api_keys[%zu].%s': expected id (1-64 of [A-Za-z0-9._:@-]), sha256 (64 hex "
                            "digits), roles (strings) or attributes (object)",
                            cfg->file, i, k);
    }
    if (!json_object_get(e, "id") || !json_object_get(e, "sha256"))
        return util_err(err, errlen, "%s: key 'auth.api_keys[%zu]': id and sha256 are required", cfg->file, i);
    return 0;
}

static int key_insert(auth_ctx *c, size_t idx, const kconfig *cfg, char *err, size_t errlen)
{
    const key_entry *k = &c->keys[idx];
    size_t i = slot_of(k->digest, c->nslots);
    for (; c->slots[i]; i = (i + 1) & (c->nslots - 1))
        if (memcmp(c->keys[c->slots[i] - 1].digest, k->digest, SHA256_DIGEST_LENGTH) == 0)
            return util_err(err, errlen, "%s: key 'auth.api_keys[%zu].sha256': the same digest as another key",
                            cfg->file, idx);
    c->slots[i] = (uint32_t)idx + 1;
    return 0;
}

static int key_load(auth_ctx *c, size_t i, json_t *e, const kconfig *cfg, char *err, size_t errlen)
{
    if (entry_shape(cfg, i, e, err, errlen) != 0)
        return -1;
    if (hex_digest(json_string_value(json_object_get(e, "sha256")), c->keys[i].digest) != 0)
        return util_err(err, errlen, "%s: key 'auth.api_keys[%zu].sha256': expected 64 hex digits (kailashd hash-key)",
                        cfg->file, i);
    const char *id = json_string_value(json_object_get(e, "id"));
    for (size_t j = 0; j < i; j++)
        if (strcmp(auth_principal_id(c->keys[j].who) + 4, id) == 0)
            return util_err(err, errlen, "%s: key 'auth.api_keys[%zu].id': '%s' is used twice", cfg->file, i, id);
    char pid[80];
    snprintf(pid, sizeof pid, "key:%s", id);
    json_t *roles = json_object_get(e, "roles"), *attrs = json_object_get(e, "attributes");
    c->keys[i].who = auth_principal_new(AUTH_KEY, pid, roles ? json_deep_copy(roles) : NULL,
                                        attrs ? json_deep_copy(attrs) : NULL);
    c->nkeys = i + 1;
    if (!c->keys[i].who)
        return util_err(err, errlen, "out of memory");
    return key_insert(c, i, cfg, err, errlen);
}

static int keys_load(auth_ctx *c, const kconfig *cfg, char *err, size_t errlen)
{
    size_t n = json_array_size(cfg->auth_api_keys);
    if (n == 0)
        return 0;
    if (n > 100000)
        return util_err(err, errlen, "%s: key 'auth.api_keys': at most 100000 keys", cfg->file);
    for (c->nslots = 4; c->nslots < 2 * n; c->nslots *= 2)
        ;
    c->keys = calloc(n, sizeof *c->keys);
    c->slots = calloc(c->nslots, sizeof *c->slots);
    if (!c->keys || !c->slots)
        return util_err(err, errlen, "out of memory");
    for (size_t i = 0; i < n; i++)
        if (key_load(c, i, json_array_get(cfg->auth_api_keys, i), cfg, err, errlen) != 0)
            return -1;
    return 0;
}

static int file_into(jwt_keyset *ks, const char *path, int jwks, const kconfig *cfg, char *err, size_t errlen)
{
    char e2[400];
    size_t len;
    char *text = util_read_file(path, KEY_FILE_MAX, &len, e2, sizeof e2);
    if (!text)
        return util_err(err, errlen, "%s: key 'auth.jwt.%s': %s", cfg->file, jwks ? "jwks_file" : "public_key_file",
                        e2);
    int rc = jwks ? jwt_keyset_add_jwks(ks, text, len, path, e2, sizeof e2)
                  : jwt_keyset_add_pem(ks, text, len, path, e2, sizeof e2);
    OPENSSL_cleanse(text, len);
    free(text);
    if (rc != 0)
        return util_err(err, errlen, "%s: key 'auth.jwt.%s': %s", cfg->file, jwks ? "jwks_file" : "public_key_file",
                        e2);
    return 0;
}

static int secret_into(jwt_keyset *ks, const kconfig *cfg, char *err, size_t errlen)
{
    const char *var = cfg->jwt_hs256_secret_env, *secret = getenv(var);
    char e2[200];
    if (!secret || !*secret)
        return util_err(err, errlen, "%s: key 'auth.jwt.hs256_secret_env': the environment variable %s is not set",
                        cfg->file, var);
    if (jwt_keyset_add_hs256(ks, secret, strlen(secret), e2, sizeof e2) != 0)
        return util_err(err, errlen, "%s: key 'auth.jwt.hs256_secret_env': %s: %s", cfg->file, var, e2);
    return 0;
}

static int jwt_load(auth_ctx *c, const kconfig *cfg, char *err, size_t errlen)
{
    c->remote = cfg->jwt_jwks_url != NULL;
    c->opts = (jwt_opts){.issuer = cfg->jwt_issuer,
                         .audience = (const char *const *)cfg->jwt_audience,
                         .naudience = cfg->n_jwt_audience,
                         .roles_claim = cfg->jwt_roles_claim,
                         .leeway_s = cfg->jwt_leeway_s};
    if (!cfg->jwt_hs256_secret_env && !cfg->jwt_public_key_file && !cfg->jwt_jwks_file)
        return 0;
    if (!(c->local = jwt_keyset_new()))
        return util_err(err, errlen, "out of memory");
    if (cfg->jwt_hs256_secret_env && secret_into(c->local, cfg, err, errlen) != 0)
        return -1;
    if (cfg->jwt_public_key_file && file_into(c->local, cfg->jwt_public_key_file, 0, cfg, err, errlen) != 0)
        return -1;
    if (cfg->jwt_jwks_file && file_into(c->local, cfg->jwt_jwks_file, 1, cfg, err, errlen) != 0)
        return -1;
    return 0;
}

int auth_ctx_load(const kconfig *cfg, auth_ctx **out, char *err, size_t errlen)
{
    auth_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return util_err(err, errlen, "out of memory");
    c->enabled = cfg->enable_auth;
    c->gen = atomic_fetch_add(&g_generation, 1) + 1;
    if (keys_load(c, cfg, err, errlen) != 0 || jwt_load(c, cfg, err, errlen) != 0)
        goto fail;
    if (c->enabled && c->nkeys == 0 && !c->local && !c->remote) {
        util_err(err, errlen,
                 "%s: key 'enable_auth': authentication is on but no credential can pass: configure auth.api_keys "
                 "or an auth.jwt key source",
                 cfg->file);
        goto fail;
    }
    *out = c;
    return 0;
fail:
    auth_ctx_free(c);
    return -1;
}

void auth_ctx_free(auth_ctx *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->nkeys; i++)
        auth_principal_release(c->keys[i].who);
    free(c->keys);
    free(c->slots);
    if (c->local)
        jwt_keyset_release(c->local);
    free(c);
}

auth_ctx *auth_ctx_publish(auth_ctx *c)
{
    return (auth_ctx *)atomic_exchange_explicit(&g_current, c, memory_order_acq_rel);
}

const auth_ctx *auth_ctx_current(void)
{
    return atomic_load_explicit(&g_current, memory_order_acquire);
}

int auth_ctx_enabled(const auth_ctx *c)
{
    return c && c->enabled;
}

int auth_ctx_methods(const auth_ctx *c)
{
    if (!auth_ctx_enabled(c))
        return 0;
    return (c->nkeys ? AUTH_METHOD_KEY : 0) | (c->local || c->remote ? AUTH_METHOD_JWT : 0);
}

/* ---- authenticating one request ---------------------------------------------------------------- */

static void fail(auth_result *res, int bad_token, const char *why)
{
    res->kind = AUTH_FAILED;
    res->bad_token = bad_token;
    util_copy(res->why, sizeof res->why, why);
}

static void by_key(const auth_ctx *c, const char *key, auth_result *res)
{
    size_t n = strlen(key);
    unsigned char d[SHA256_DIGEST_LENGTH];
    const key_entry *k = NULL;
    if (n > 0 && n <= KEY_MAX_PRESENTED) {
        SHA256((const unsigned char *)key, n, d);
        k = key_find(c, d);
    }
    if (!k)
        return fail(res, 0, "the API key is not valid");
    auth_principal_retain(k->who);
    res->kind = AUTH_KEY;
    res->who = k->who;
}

static void by_token(const auth_ctx *c, const char *tok, size_t len, auth_result *res)
{
    jwt_keyset *remote = c->remote ? jwks_remote_acquire() : NULL;
    const jwt_keyset *sets[2] = {c->local, remote};
    unsigned char d[SHA256_DIGEST_LENGTH];
    jwt_opts o = c->opts;
    o.now_s = util_now_unix_s();
    if (len <= JWT_MAX_TOKEN) {
        SHA256((const unsigned char *)tok, len, d);
        if ((res->who = auth_token_cache_get(c->gen, remote, d, o.now_s))) {
            res->kind = AUTH_JWT;
            if (remote)
                jwt_keyset_release(remote);
            return;
        }
    }
    double exp = 0;
    jwt_err e = jwt_verify(tok, len, sets, 2, &o, &res->who, &exp, res->why, sizeof res->why);
    if (e == JWT_OK) {
        res->kind = AUTH_JWT;
        auth_token_cache_put(c->gen, remote, d, exp + (double)o.leeway_s, res->who);
    } else {
        fail(res, 1, res->why);
        if (e == JWT_UNKNOWN_KID && c->remote)
            jwks_remote_poke();
    }
    if (remote)
        jwt_keyset_release(remote);
}

void auth_authenticate(const auth_ctx *c, const char *api_key, const char *authorization, auth_result *res)
{
    memset(res, 0, sizeof *res);
    if (!auth_ctx_enabled(c) || (!api_key && !authorization))
        return; /* anonymous */
    if (api_key)
        return by_key(c, api_key, res);
    if (strncasecmp(authorization, "Bearer ", 7) != 0)
        return fail(res, 0, "only X-API-Key and Authorization: Bearer credentials are accepted");
    const char *tok = authorization + 7;
    while (*tok == ' ')
        tok++;
    size_t len = strlen(tok);
    while (len && tok[len - 1] == ' ')
        len--;
    if (!c->local && !c->remote)
        return fail(res, 1, "bearer tokens are not accepted: no JWT key is configured");
    by_token(c, tok, len, res);
}
