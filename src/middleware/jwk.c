/* jwk: key sets, the keys a JWT may be signed with. A set holds at most one HS256 secret and any
 * number of public keys, each an EVP_PKEY made once here (from a PEM file or a JWKS document's n/e or
 * x/y) so that a request only ever verifies. Every key is bound to one algorithm when it is loaded,
 * RSA to RS256 and EC P-256 to ES256, and the secret to HS256: jwt.c never lets a token's alg pick
 * how a key is used, which is what algorithm confusion needs.
 *
 * What is loaded is checked as hard as OpenSSL allows (RSA of 2048 to 8192 bits, the named curve
 * P-256, EVP_PKEY_public_check), and a JWKS document is taken whole or not at all: a malformed key
 * among good ones refuses the document rather than leaving the set half-filled. Keys of kinds this
 * gateway does not verify with (kty "oct" or "OKP", another curve, use "enc") are skipped with a
 * warning, since identity providers publish them beside the signing keys. Messages name the source
 * and the key's index and kid, never key material. */
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jwt_internal.h"
#include "kailash/log.h"

#define JWK_MIN_SECRET 32
#define JWK_MIN_RSA_BITS 2048
#define JWK_MAX_RSA_BITS 8192 /* RSA keys get slower to check and verify with the square of their size */
#define JWK_MAX_PEM (64 * 1024)
#define JWKS_MAX_DOC (256 * 1024) /* 64 keys of 8192 bits fit with room to spare */
#define JWKS_MAX_KEYS 64

typedef struct jwk_key {
    EVP_PKEY *pkey;
    jwt_alg alg;
    char *kid; /* NULL: none */
} jwk_key;

struct jwt_keyset {
    atomic_int refs;
    unsigned char *secret; /* HS256; NULL: none */
    size_t secret_len;
    jwk_key *keys;
    size_t nkeys;
};

static void jwk_key_clear(jwk_key *k)
{
    EVP_PKEY_free(k->pkey);
    free(k->kid);
    k->pkey = NULL;
    k->kid = NULL;
}

jwt_keyset *jwt_keyset_new(void)
{
    jwt_keyset *ks = calloc(1, sizeof *ks);
    if (ks)
        atomic_init(&ks->refs, 1);
    return ks;
}

void jwt_keyset_retain(jwt_keyset *ks)
{
    if (ks)
        atomic_fetch_add_explicit(&ks->refs, 1, memory_order_relaxed);
}

void jwt_keyset_release(jwt_keyset *ks)
{
    if (!ks || atomic_fetch_sub_explicit(&ks->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < ks->nkeys; i++)
        jwk_key_clear(&ks->keys[i]);
    free(ks->keys);
    if (ks->secret)
        OPENSSL_cleanse(ks->secret, ks->secret_len);
    free(ks->secret);
    free(ks);
}

size_t jwt_keyset_count(const jwt_keyset *ks)
{
    return ks ? ks->nkeys : 0;
}

int jwt_keyset_has_hs256(const jwt_keyset *ks)
{
    return ks && ks->secret != NULL;
}

const unsigned char *jwk_hs256_secret(const jwt_keyset *ks, size_t *len)
{
    *len = ks ? ks->secret_len : 0;
    return ks ? ks->secret : NULL;
}

EVP_PKEY *jwk_key_at(const jwt_keyset *ks, size_t i, jwt_alg *alg, const char **kid)
{
    *alg = ks->keys[i].alg;
    *kid = ks->keys[i].kid;
    return ks->keys[i].pkey;
}

int jwt_keyset_add_hs256(jwt_keyset *ks, const void *secret, size_t len, char *err, size_t errlen)
{
    if (ks->secret) {
        snprintf(err, errlen, "a key set holds one HS256 secret");
        return -1;
    }
    if (len < JWK_MIN_SECRET) {
        snprintf(err, errlen, "the HS256 secret is shorter than %d bytes", JWK_MIN_SECRET);
        return -1;
    }
    ks->secret = malloc(len);
    if (!ks->secret) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    memcpy(ks->secret, secret, len);
    ks->secret_len = len;
    return 0;
}

/* Appends n keys (moved: the caller's array is left empty). 0, or -1 when out of memory. */
static int jwk_append(jwt_keyset *ks, jwk_key *keys, size_t n)
{
    jwk_key *grown = realloc(ks->keys, (ks->nkeys + n) * sizeof *grown);
    if (!grown)
        return -1;
    memcpy(grown + ks->nkeys, keys, n * sizeof *keys);
    memset(keys, 0, n * sizeof *keys);
    ks->keys = grown;
    ks->nkeys += n;
    return 0;
}

/* Runs OpenSSL's own check of a public key (RSA: an odd modulus without small factors and an odd
 * exponent over 2^16; EC: a point of the curve's group). */
static int jwk_public_check(EVP_PKEY *pkey)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    int ok = ctx && EVP_PKEY_public_check(ctx) == 1;
    EVP_PKEY_CTX_free(ctx);
    return ok;
}

/* The algorithm pkey may verify: 0 and *alg, or -1 and *why (a fixed phrase). */
static int jwk_fit(EVP_PKEY *pkey, jwt_alg *alg, const char **why)
{
    char group[32];
    size_t glen = 0;
    if (EVP_PKEY_is_a(pkey, "RSA")) {
        int bits = EVP_PKEY_get_bits(pkey);
        *why = bits < JWK_MIN_RSA_BITS   ? "the RSA key is shorter than 2048 bits"
               : bits > JWK_MAX_RSA_BITS ? "the RSA key is longer than 8192 bits"
                                         : NULL;
        *alg = JWT_RS256;
    } else if (EVP_PKEY_is_a(pkey, "EC")) {
        int named = EVP_PKEY_get_group_name(pkey, group, sizeof group, &glen) == 1;
        *why = named && strcmp(group, "prime256v1") == 0 ? NULL : "the EC key is not on the curve P-256";
        *alg = JWT_ES256;
    } else {
        *why = "the key is neither RSA nor EC";
    }
    if (!*why && !jwk_public_check(pkey))
        *why = "the key fails OpenSSL's public key check";
    ERR_clear_error();
    return *why ? -1 : 0;
}

/* The first PEM block of pem as a public key: "PUBLIC KEY" (SubjectPublicKeyInfo, any type) or
 * "RSA PUBLIC KEY" (PKCS#1). NULL for anything else, an encrypted block or trailing DER bytes. */
static EVP_PKEY *jwk_pem_decode(const char *pem, size_t len)
{
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    char *name = NULL, *header = NULL;
    unsigned char *der = NULL;
    long derlen = 0;
    EVP_PKEY *pkey = NULL;
    if (bio && PEM_read_bio(bio, &name, &header, &der, &derlen) == 1 && header[0] == '\0') {
        const unsigned char *p = der;
        if (strcmp(name, PEM_STRING_PUBLIC) == 0)
            pkey = d2i_PUBKEY(NULL, &p, derlen);
        else if (strcmp(name, PEM_STRING_RSA_PUBLIC) == 0)
            pkey = d2i_PublicKey(EVP_PKEY_RSA, NULL, &p, derlen);
        if (pkey && p != der + derlen) {
            EVP_PKEY_free(pkey);
            pkey = NULL;
        }
    }
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(der);
    BIO_free(bio);
    ERR_clear_error(); /* a failed parse leaves errors on this thread's queue */
    return pkey;
}

int jwt_keyset_add_pem(jwt_keyset *ks, const char *pem, size_t len, const char *source, char *err, size_t errlen)
{
    jwk_key k = {0};
    const char *why = NULL;
    if (len > JWK_MAX_PEM || !(k.pkey = jwk_pem_decode(pem, len))) {
        snprintf(err, errlen, "%s: not a PEM public key (\"PUBLIC KEY\" or \"RSA PUBLIC KEY\")", source);
        return -1;
    }
    if (jwk_fit(k.pkey, &k.alg, &why) != 0 || jwk_append(ks, &k, 1) != 0) {
        snprintf(err, errlen, "%s: %s", source, why ? why : "out of memory");
        jwk_key_clear(&k);
        return -1;
    }
    return 0;
}

/* ---- JWKS documents ---------------------------------------------------------------------------- */

/* "key 3" or "key 3 (kid 'sig-2024')": the kid only when it is short printable ASCII, since it is
 * the document's text and ends up in logs and messages. */
static void jwks_key_name(char *dst, size_t n, size_t idx, const char *kid)
{
    int printable = kid && strlen(kid) <= 64;
    for (const char *c = kid; printable && *c; c++)
        printable = *c >= 0x20 && *c < 0x7f && *c != '\'' && *c != '"' && *c != '\\';
    if (printable)
        snprintf(dst, n, "key %zu (kid '%s')", idx, kid);
    else
        snprintf(dst, n, "key %zu", idx);
}

/* The base64url member key of e, decoded into a new buffer (caller frees). NULL when it is missing,
 * not a string, empty or not base64url. */
static unsigned char *jwks_member(json_t *e, const char *key, size_t *n)
{
    json_t *v = json_object_get(e, key);
    size_t len = json_string_length(v);
    unsigned char *out = json_is_string(v) && len > 0 ? malloc(B64URL_DECODED_MAX(len)) : NULL;
    if (out && b64url_decode(json_string_value(v), len, out, n) != 0) {
        free(out);
        out = NULL;
    }
    return out;
}

/* A public key from the parameters in bld. NULL when OpenSSL refuses them. */
static EVP_PKEY *jwk_fromdata(const char *type, OSSL_PARAM_BLD *bld)
{
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = params ? EVP_PKEY_CTX_new_from_name(NULL, type, NULL) : NULL;
    EVP_PKEY *pkey = NULL;
    if (ctx && EVP_PKEY_fromdata_init(ctx) == 1 && EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
        pkey = NULL;
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    ERR_clear_error();
    return pkey;
}

/* An RSA key from a JWK's n and e. NULL with why. */
static EVP_PKEY *jwks_rsa(json_t *e, const char **why)
{
    size_t nlen = 0, elen = 0;
    unsigned char *n = jwks_member(e, "n", &nlen), *x = jwks_member(e, "e", &elen);
    BIGNUM *bn = n ? BN_bin2bn(n, (int)nlen, NULL) : NULL, *be = x ? BN_bin2bn(x, (int)elen, NULL) : NULL;
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    EVP_PKEY *pkey = NULL;
    *why = "its n and e are not base64url numbers";
    if (bn && be && BN_num_bits(bn) > JWK_MAX_RSA_BITS)
        *why = "the RSA key is longer than 8192 bits"; /* refused before OpenSSL checks it, slowly */
    else if (bn && be && bld && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) &&
             OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be))
        pkey = jwk_fromdata("RSA", bld);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn);
    BN_free(be);
    free(n);
    free(x);
    return pkey;
}

/* A P-256 key from a JWK's x and y (32 bytes each): the uncompressed point 04 || x || y. */
static EVP_PKEY *jwks_ec(json_t *e, const char **why)
{
    size_t xlen = 0, ylen = 0;
    unsigned char *x = jwks_member(e, "x", &xlen), *y = jwks_member(e, "y", &ylen), point[65];
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    EVP_PKEY *pkey = NULL;
    *why = "its x and y are not base64url strings of 32 bytes";
    if (x && y && xlen == 32 && ylen == 32 && bld) {
        point[0] = 0x04;
        memcpy(point + 1, x, 32);
        memcpy(point + 33, y, 32);
        if (OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) &&
            OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof point))
            pkey = jwk_fromdata("EC", bld);
        *why = "its x and y are not a point on P-256";
    }
    OSSL_PARAM_BLD_free(bld);
    free(x);
    free(y);
    return pkey;
}

/* Member key of e: NULL when absent, else *s is its text (NULL when it is not a string). */
static int jwks_str(json_t *e, const char *key, const char **s)
{
    json_t *v = json_object_get(e, key);
    *s = json_string_value(v);
    return v != NULL;
}

/* Why the JWK e is skipped (a fixed phrase), or NULL when it is a supported signing key; *bad is set
 * when a member it has is of the wrong type. */
static const char *jwks_skip_reason(json_t *e, int *bad)
{
    const char *kty = json_string_value(json_object_get(e, "kty")), *crv = json_string_value(json_object_get(e, "crv"));
    const char *use, *alg;
    int has_use = jwks_str(e, "use", &use), has_alg = jwks_str(e, "alg", &alg);
    int is_ec = kty && strcmp(kty, "EC") == 0;
    *bad = !kty || (has_use && !use) || (has_alg && !alg) || (is_ec && !crv);
    if (*bad)
        return NULL;
    if (!is_ec && strcmp(kty, "RSA") != 0)
        return "its kty is neither RSA nor EC";
    if (is_ec && strcmp(crv, "P-256") != 0)
        return "its crv is not P-256";
    if (has_use && strcmp(use, "sig") != 0)
        return "its use is not sig";
    if (has_alg && strcmp(alg, is_ec ? "ES256" : "RS256") != 0)
        return "its alg is not the one for its kty";
    return NULL;
}

/* One entry of "keys": 1 and *k filled (a usable key), 0 when it is skipped (logged), -1 with err. */
static int jwks_entry(json_t *e, size_t idx, const char *source, jwk_key *k, char *err, size_t errlen)
{
    char name[96];
    const char *kid = NULL, *why = NULL;
    int bad = 0, has_kid = jwks_str(e, "kid", &kid);
    jwks_key_name(name, sizeof name, idx, kid);
    const char *skip = json_is_object(e) ? jwks_skip_reason(e, &bad) : NULL;
    if (!json_is_object(e) || bad || (has_kid && !kid)) {
        snprintf(err, errlen, "%s: %s: expected an object with string kty, kid, use, alg and crv", source, name);
        return -1;
    }
    if (skip) {
        log_msg(LOG_WARN, "%s: %s: skipped: %s", source, name, skip);
        return 0;
    }
    int is_ec = strcmp(json_string_value(json_object_get(e, "kty")), "EC") == 0;
    k->pkey = is_ec ? jwks_ec(e, &why) : jwks_rsa(e, &why);
    if (!k->pkey || jwk_fit(k->pkey, &k->alg, &why) != 0 || (kid && !(k->kid = strdup(kid)))) {
        snprintf(err, errlen, "%s: %s: %s", source, name, k->pkey ? (why ? why : "out of memory") : why);
        jwk_key_clear(k);
        return -1;
    }
    return 1;
}

/* Whether kid is held by one of n keys. */
static int jwks_kid_taken(const jwk_key *keys, size_t n, const char *kid)
{
    for (size_t i = 0; kid && i < n; i++)
        if (keys[i].kid && strcmp(keys[i].kid, kid) == 0)
            return 1;
    return 0;
}

/* The document's "keys" array, or NULL with err. */
static json_t *jwks_keys(json_t *doc, const json_error_t *jerr, const char *source, char *err, size_t errlen)
{
    json_t *keys = json_object_get(doc, "keys");
    if (!doc)
        snprintf(err, errlen, "%s: not JSON (line %d: %s)", source, jerr->line, jerr->text);
    else if (!json_is_array(keys))
        snprintf(err, errlen, "%s: expected an object with a \"keys\" array", source);
    else if (json_array_size(keys) > JWKS_MAX_KEYS)
        snprintf(err, errlen, "%s: more than %d keys", source, JWKS_MAX_KEYS);
    else
        return keys;
    return NULL;
}

/* Fills out (JWKS_MAX_KEYS entries) with the usable keys of the array keys; -1 with err. */
static int jwks_collect(const jwt_keyset *ks, json_t *keys, const char *source, jwk_key *out, size_t *n, char *err,
                        size_t errlen)
{
    size_t i;
    json_t *e;
    json_array_foreach(keys, i, e)
    {
        int rc = jwks_entry(e, i, source, &out[*n], err, errlen);
        if (rc < 0)
            return -1;
        if (rc == 0)
            continue;
        const char *kid = out[*n].kid;
        (*n)++;
        if (jwks_kid_taken(ks->keys, ks->nkeys, kid) || jwks_kid_taken(out, *n - 1, kid)) {
            char name[96];
            jwks_key_name(name, sizeof name, i, kid);
            snprintf(err, errlen, "%s: %s: another key has the same kid", source, name);
            return -1;
        }
    }
    if (*n == 0)
        snprintf(err, errlen, "%s: no usable key (RSA or EC P-256, for signatures)", source);
    return *n ? 0 : -1;
}

int jwt_keyset_add_jwks(jwt_keyset *ks, const char *json, size_t len, const char *source, char *err, size_t errlen)
{
    if (len > JWKS_MAX_DOC) {
        snprintf(err, errlen, "%s: larger than %d bytes", source, JWKS_MAX_DOC);
        return -1;
    }
    json_error_t jerr;
    json_t *doc = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr), *keys;
    jwk_key got[JWKS_MAX_KEYS];
    size_t n = 0;
    int rc = -1;
    memset(got, 0, sizeof got);
    if ((keys = jwks_keys(doc, &jerr, source, err, errlen)) &&
        jwks_collect(ks, keys, source, got, &n, err, errlen) == 0) {
        rc = jwk_append(ks, got, n);
        if (rc != 0)
            snprintf(err, errlen, "%s: out of memory", source);
    }
    for (size_t i = 0; i < n; i++)
        jwk_key_clear(&got[i]);
    json_decref(doc);
    return rc;
}
