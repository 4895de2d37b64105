/* jwt: verifying one compact JWS (RFC 7515, 7519) against key sets. A token passes through fixed
 * steps, each of which may end it: its size, its three segments, its header (a JSON object: the alg
 * one of HS256/RS256/ES256 with a key configured for it, no crit), the key (chosen by the header,
 * only among keys bound to that alg at load: see jwk.c), the signature, and only then the payload and
 * its claims. Nothing from the payload is read, or even parsed, before the signature holds.
 *
 * Strictness is the design: base64url has one spelling (b64url.c), JSON with a repeated member is
 * refused (two parsers could disagree on which one counts), an ES256 signature is the raw 64-byte
 * r||s of RFC 7518 and an RS256 one exactly the modulus' size. Headers that carry keys or point at
 * them (jwk, jku, x5c, x5u) are ignored: keys come only from the sets. A failure is a jwt_err and a
 * fixed phrase, never the token's text, a claim's value or key material. */
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/hmac.h>
#include <openssl/rsa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jwt_internal.h"
#include "kailash/util.h"

/* A token's segments and header. */
typedef struct jwt_token {
    const char *seg[3];
    size_t len[3];
    json_t *header;
    jwt_alg alg;
} jwt_token;

/* The key a token is checked with: the HS256 secret, or a public key. */
typedef struct jwt_key {
    const unsigned char *secret;
    size_t secret_len;
    EVP_PKEY *pkey;
} jwt_key;

static const char *jwt_why_text(jwt_err e)
{
    switch (e) {
    case JWT_OK:
        return "";
    case JWT_TOO_LARGE:
        return "the token is too large";
    case JWT_BAD_ALG:
        return "the token's algorithm is not accepted";
    case JWT_CRIT:
        return "the token has a crit header";
    case JWT_UNKNOWN_KID:
        return "the token's key id is unknown";
    case JWT_NO_KEY:
        return "no key fits the token";
    case JWT_BAD_SIGNATURE:
        return "the token's signature does not verify";
    case JWT_EXPIRED:
        return "the token has expired";
    case JWT_NOT_YET_VALID:
        return "the token is not valid yet";
    case JWT_BAD_ISSUER:
        return "the token's issuer is not accepted";
    case JWT_BAD_AUDIENCE:
        return "the token's audience is not accepted";
    case JWT_BAD_CLAIMS:
        return "the token's claims are incomplete";
    case JWT_NO_MEMORY:
        return "out of memory";
    default:
        return "the token is malformed";
    }
}

/* header.payload.signature: exactly two dots. */
static jwt_err jwt_split(const char *token, size_t len, jwt_token *t)
{
    const char *p = token, *end = token + len;
    for (int i = 0; i < 3; i++) {
        const char *dot = i < 2 ? memchr(p, '.', (size_t)(end - p)) : NULL;
        if (i < 2 && !dot)
            return JWT_MALFORMED;
        t->seg[i] = p;
        t->len[i] = (size_t)((dot ? dot : end) - p);
        p = dot ? dot + 1 : end;
    }
    return memchr(t->seg[2], '.', t->len[2]) ? JWT_MALFORMED : JWT_OK;
}

/* A segment holding a JSON object (members unique), as a new reference in *out. */
static jwt_err jwt_segment_json(const char *seg, size_t n, json_t **out)
{
    unsigned char *raw = malloc(B64URL_DECODED_MAX(n));
    size_t rawlen = 0;
    if (!raw)
        return JWT_NO_MEMORY;
    *out =
        b64url_decode(seg, n, raw, &rawlen) == 0 ? json_loadb((char *)raw, rawlen, JSON_REJECT_DUPLICATES, NULL) : NULL;
    free(raw);
    if (json_is_object(*out))
        return JWT_OK;
    json_decref(*out);
    *out = NULL;
    return JWT_MALFORMED;
}

/* Whether any set holds a key for alg. */
static int jwt_alg_configured(const jwt_keyset *const *sets, size_t nsets, jwt_alg alg)
{
    for (size_t s = 0; s < nsets; s++) {
        size_t n = jwt_keyset_count(sets[s]);
        if (alg == JWT_HS256 && jwt_keyset_has_hs256(sets[s]))
            return 1;
        for (size_t i = 0; alg != JWT_HS256 && i < n; i++) {
            jwt_alg a;
            const char *kid;
            (void)jwk_key_at(sets[s], i, &a, &kid);
            if (a == alg)
                return 1;
        }
    }
    return 0;
}

/* The header's alg (exactly one of the three, and configured) and no crit. */
static jwt_err jwt_header_check(jwt_token *t, const jwt_keyset *const *sets, size_t nsets)
{
    static const char *const names[] = {[JWT_HS256] = "HS256", [JWT_RS256] = "RS256", [JWT_ES256] = "ES256"};
    const char *alg = json_string_value(json_object_get(t->header, "alg"));
    size_t i = 0;
    if (!alg)
        return JWT_MALFORMED;
    while (i < 3 && strcmp(alg, names[i]) != 0)
        i++;
    if (i == 3 || !jwt_alg_configured(sets, nsets, (jwt_alg)i))
        return JWT_BAD_ALG;
    t->alg = (jwt_alg)i;
    return json_object_get(t->header, "crit") ? JWT_CRIT : JWT_OK;
}

/* The public key for alg with kid in any set: JWT_UNKNOWN_KID when none has it, JWT_NO_KEY when the
 * keys that have it are for another alg. */
static jwt_err jwt_choose_by_kid(const jwt_keyset *const *sets, size_t nsets, jwt_alg alg, const char *kid, jwt_key *k)
{
    jwt_err rc = JWT_UNKNOWN_KID;
    for (size_t s = 0; s < nsets; s++)
        for (size_t i = 0; i < jwt_keyset_count(sets[s]); i++) {
            jwt_alg a;
            const char *id;
            EVP_PKEY *pkey = jwk_key_at(sets[s], i, &a, &id);
            if (!id || strcmp(id, kid) != 0)
                continue;
            if (a == alg) {
                k->pkey = pkey;
                return JWT_OK;
            }
            rc = JWT_NO_KEY;
        }
    return rc;
}

/* Without a kid: the one kid-less key for alg, else the one key held if it is for alg. */
static jwt_err jwt_choose_kidless(const jwt_keyset *const *sets, size_t nsets, jwt_alg alg, jwt_key *k)
{
    size_t kidless = 0, total = 0;
    EVP_PKEY *only_kidless = NULL, *only = NULL;
    int only_fits = 0;
    for (size_t s = 0; s < nsets; s++)
        for (size_t i = 0; i < jwt_keyset_count(sets[s]); i++) {
            jwt_alg a;
            const char *id;
            EVP_PKEY *pkey = jwk_key_at(sets[s], i, &a, &id);
            if (!id && a == alg) {
                kidless++;
                only_kidless = pkey;
            }
            total++;
            only = pkey;
            only_fits = a == alg;
        }
    k->pkey = kidless == 1 ? only_kidless : kidless == 0 && total == 1 && only_fits ? only : NULL;
    return k->pkey ? JWT_OK : JWT_NO_KEY;
}

/* The key the token is checked with (jwt_verify's comment in auth.h). */
static jwt_err jwt_choose(const jwt_token *t, const jwt_keyset *const *sets, size_t nsets, jwt_key *k)
{
    json_t *kid = json_object_get(t->header, "kid");
    memset(k, 0, sizeof *k);
    if (kid && !json_is_string(kid))
        return JWT_MALFORMED;
    if (t->alg == JWT_HS256) {
        for (size_t s = 0; s < nsets && !k->secret; s++)
            k->secret = jwk_hs256_secret(sets[s], &k->secret_len);
        return k->secret ? JWT_OK : JWT_BAD_ALG;
    }
    return kid ? jwt_choose_by_kid(sets, nsets, t->alg, json_string_value(kid), k)
               : jwt_choose_kidless(sets, nsets, t->alg, k);
}

static int jwt_hs256_ok(const jwt_key *k, const char *input, size_t n, const unsigned char *sig, size_t siglen)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    if (!HMAC(EVP_sha256(), k->secret, (int)k->secret_len, (const unsigned char *)input, n, mac, &maclen))
        return 0;
    return siglen == maclen && CRYPTO_memcmp(mac, sig, maclen) == 0;
}

/* RFC 7518's r||s (32 bytes each) as the DER ECDSA-Sig-Value OpenSSL verifies; caller frees with
 * OPENSSL_free. NULL when out of memory. */
static unsigned char *jwt_es256_der(const unsigned char *sig, int *derlen)
{
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
    unsigned char *der = NULL;
    if (es && r && s && ECDSA_SIG_set0(es, r, s) == 1) {
        r = s = NULL; /* es owns them */
        *derlen = i2d_ECDSA_SIG(es, &der);
    }
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    return der && *derlen > 0 ? der : NULL;
}

/* RS256 (SHA-256, PKCS#1 v1.5, a signature of exactly the modulus' size: OpenSSL 3.0 checks that
 * too, but the rule should not hang on a version) or ES256 (raw r||s). */
static int jwt_pkey_ok(EVP_PKEY *pkey, jwt_alg alg, const char *input, size_t n, const unsigned char *sig,
                       size_t siglen)
{
    unsigned char *der = NULL;
    int derlen = 0, ok = 0;
    if (alg == JWT_ES256 && (siglen != 64 || !(der = jwt_es256_der(sig, &derlen))))
        return 0;
    if (alg == JWT_RS256 && siglen != (size_t)EVP_PKEY_get_size(pkey))
        return 0;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    ok = md && EVP_DigestVerifyInit(md, &pctx, EVP_sha256(), NULL, pkey) == 1 &&
         (alg != JWT_RS256 || EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) == 1) &&
         EVP_DigestVerify(md, der ? der : sig, der ? (size_t)derlen : siglen, (const unsigned char *)input, n) == 1;
    EVP_MD_CTX_free(md);
    OPENSSL_free(der);
    ERR_clear_error();
    return ok;
}

/* The signature segment over "header.payload". */
static jwt_err jwt_signature_check(const jwt_token *t, const jwt_key *k)
{
    unsigned char *sig = malloc(B64URL_DECODED_MAX(t->len[2]));
    size_t siglen = 0, n = t->len[0] + 1 + t->len[1];
    jwt_err rc = JWT_MALFORMED;
    if (!sig)
        return JWT_NO_MEMORY;
    if (b64url_decode(t->seg[2], t->len[2], sig, &siglen) == 0) {
        int ok = k->secret ? jwt_hs256_ok(k, t->seg[0], n, sig, siglen)
                           : jwt_pkey_ok(k->pkey, t->alg, t->seg[0], n, sig, siglen);
        rc = ok ? JWT_OK : JWT_BAD_SIGNATURE;
    }
    free(sig);
    return rc;
}

/* ---- claims ------------------------------------------------------------------------------------ */

/* exp (required) and nbf, both numbers, with the leeway. */
static jwt_err jwt_claims_time(json_t *c, const jwt_opts *o, double *exp)
{
    json_t *e = json_object_get(c, "exp"), *nbf = json_object_get(c, "nbf");
    if (!json_is_number(e) || (nbf && !json_is_number(nbf)))
        return JWT_BAD_CLAIMS;
    *exp = json_number_value(e);
    if (o->now_s >= *exp + (double)o->leeway_s)
        return JWT_EXPIRED;
    if (nbf && o->now_s + (double)o->leeway_s < json_number_value(nbf))
        return JWT_NOT_YET_VALID;
    return JWT_OK;
}

static int jwt_audience_listed(const jwt_opts *o, json_t *v)
{
    for (size_t i = 0; json_is_string(v) && i < o->naudience; i++)
        if (o->audience[i] && strcmp(json_string_value(v), o->audience[i]) == 0)
            return 1;
    return 0;
}

/* iss when an issuer is configured; aud (a string, or an array of strings) when audiences are. */
static jwt_err jwt_claims_iss_aud(json_t *c, const jwt_opts *o)
{
    const char *iss = json_string_value(json_object_get(c, "iss"));
    json_t *aud = json_object_get(c, "aud"), *v;
    size_t i;
    int listed = 0;
    if (o->issuer && (!iss || strcmp(iss, o->issuer) != 0))
        return JWT_BAD_ISSUER;
    if (o->naudience == 0)
        return JWT_OK;
    if (json_is_string(aud))
        return jwt_audience_listed(o, aud) ? JWT_OK : JWT_BAD_AUDIENCE;
    json_array_foreach(aud, i, v)
    {
        if (!json_is_string(v))
            return JWT_BAD_AUDIENCE;
        listed |= jwt_audience_listed(o, v);
    }
    return listed ? JWT_OK : JWT_BAD_AUDIENCE;
}

/* OAuth's scope style: "a b  c" is ["a", "b", "c"]. A new reference, NULL when out of memory. */
static json_t *jwt_roles_split(const char *s)
{
    json_t *roles = json_array();
    while (roles && *s) {
        size_t n = strcspn(s, " ");
        if (n && json_array_append_new(roles, json_stringn(s, n)) != 0) {
            json_decref(roles);
            return NULL;
        }
        s += n + (s[n] == ' ');
    }
    return roles;
}

/* The roles claim at a dotted path: an array of strings (copied), a space-separated string (split)
 * or absent ([]). A new reference in *roles. */
static jwt_err jwt_claims_roles(json_t *c, const char *path, json_t **roles)
{
    json_t *v = util_json_path(c, path ? path : "roles"), *r;
    size_t i;
    if (json_is_string(v))
        *roles = jwt_roles_split(json_string_value(v));
    else if (!v)
        *roles = json_array();
    else if (!json_is_array(v))
        return JWT_BAD_CLAIMS;
    else {
        json_array_foreach(v, i, r)
        {
            if (!json_is_string(r))
                return JWT_BAD_CLAIMS;
        }
        *roles = json_copy(v); /* shallow: the strings are shared with the claims, both immutable */
    }
    return *roles ? JWT_OK : JWT_NO_MEMORY;
}

/* The principal "jwt:<sub>" holding the roles and, as its attributes, the claims (both stolen). */
static jwt_err jwt_principal(json_t *claims, json_t *roles, auth_principal **out)
{
    const char *sub = json_string_value(json_object_get(claims, "sub"));
    size_t n = strlen(sub) + sizeof "jwt:";
    char *id = malloc(n);
    if (id)
        snprintf(id, n, "jwt:%s", sub);
    *out = id ? auth_principal_new(AUTH_JWT, id, roles, claims) : NULL;
    if (!id) {
        json_decref(roles);
        json_decref(claims);
    }
    free(id);
    return *out ? JWT_OK : JWT_NO_MEMORY;
}

/* The payload, once the signature holds: its claims checked, then the principal. */
static jwt_err jwt_claims(const jwt_token *t, const jwt_opts *o, auth_principal **out, double *exp_s)
{
    json_t *claims = NULL, *roles = NULL;
    const char *sub;
    double exp = 0;
    jwt_err rc = jwt_segment_json(t->seg[1], t->len[1], &claims);
    if (rc == JWT_OK)
        rc = jwt_claims_time(claims, o, &exp);
    if (rc == JWT_OK)
        rc = jwt_claims_iss_aud(claims, o);
    if (rc == JWT_OK && (!(sub = json_string_value(json_object_get(claims, "sub"))) || !*sub))
        rc = JWT_BAD_CLAIMS;
    if (rc == JWT_OK)
        rc = jwt_claims_roles(claims, o->roles_claim, &roles);
    if (rc != JWT_OK) {
        json_decref(claims);
        return rc;
    }
    if (exp_s)
        *exp_s = exp;
    return jwt_principal(claims, roles, out);
}

/* The steps in order; t->header is left for the caller to release. */
static jwt_err jwt_check(const char *token, size_t len, const jwt_keyset *const *sets, size_t nsets, const jwt_opts *o,
                         jwt_token *t, auth_principal **out, double *exp_s)
{
    jwt_key k;
    jwt_err rc;
    if (len > JWT_MAX_TOKEN)
        return JWT_TOO_LARGE;
    if (!token || jwt_split(token, len, t) != JWT_OK)
        return JWT_MALFORMED;
    if ((rc = jwt_segment_json(t->seg[0], t->len[0], &t->header)) != JWT_OK ||
        (rc = jwt_header_check(t, sets, nsets)) != JWT_OK || (rc = jwt_choose(t, sets, nsets, &k)) != JWT_OK ||
        (rc = jwt_signature_check(t, &k)) != JWT_OK)
        return rc;
    return jwt_claims(t, o, out, exp_s);
}

jwt_err jwt_verify(const char *token, size_t len, const jwt_keyset *const *sets, size_t nsets, const jwt_opts *o,
                   auth_principal **out, double *exp_s, char *why, size_t whylen)
{
    jwt_token t;
    auth_principal *p = NULL;
    memset(&t, 0, sizeof t);
    jwt_err rc = jwt_check(token, len, sets, nsets, o, &t, &p, exp_s);
    json_decref(t.header);
    if (out)
        *out = p;
    else
        auth_principal_release(p);
    if (why && whylen)
        snprintf(why, whylen, "%s", jwt_why_text(rc));
    return rc;
}
