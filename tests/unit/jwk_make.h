/* jwk_make.h: what the auth tests (test_jwt.c, test_jwks_fetch.c, test_auth.c) make their keys and
 * tokens with: base64url without padding, and JWKs of OpenSSL keys. Static inline, one copy each. */
#ifndef KAILASH_TEST_JWK_MAKE_H
#define KAILASH_TEST_JWK_MAKE_H

#include <criterion/criterion.h>
#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

/* base64url of p[0..n), no padding; caller frees. */
static inline char *b64url(const unsigned char *p, size_t n)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char *out = malloc(n / 3 * 4 + 5), *o = out;
    for (size_t i = 0; i < n; i += 3) {
        unsigned long v =
            (unsigned long)p[i] << 16 | (i + 1 < n ? (unsigned long)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
        size_t chars = i + 2 < n ? 4 : i + 1 < n ? 3 : 2;
        for (size_t c = 0; c < chars; c++)
            *o++ = abc[(v >> (18 - 6 * c)) & 63];
    }
    *o = '\0';
    return out;
}

static inline char *b64url_str(const char *s)
{
    return b64url((const unsigned char *)s, strlen(s));
}

static inline json_t *jwk_bn_member(EVP_PKEY *k, const char *param)
{
    BIGNUM *bn = NULL;
    cr_assert_eq(EVP_PKEY_get_bn_param(k, param, &bn), 1);
    unsigned char buf[1024];
    int n = BN_bn2bin(bn, buf);
    BN_free(bn);
    char *s = b64url(buf, (size_t)n);
    json_t *v = json_string(s);
    free(s);
    return v;
}

/* {"kty":"RSA","n":..,"e":..} (and "kid" when kid is not NULL). */
static inline json_t *jwk_rsa_of(EVP_PKEY *k, const char *kid)
{
    json_t *o = json_pack("{s:s,s:o,s:o}", "kty", "RSA", "n", jwk_bn_member(k, OSSL_PKEY_PARAM_RSA_N), "e",
                          jwk_bn_member(k, OSSL_PKEY_PARAM_RSA_E));
    if (kid)
        json_object_set_new(o, "kid", json_string(kid));
    return o;
}

/* {"kty":"EC","crv":"P-256","x":..,"y":..} (and "kid") from the uncompressed point. */
static inline json_t *jwk_ec_of(EVP_PKEY *k, const char *kid)
{
    unsigned char pt[133];
    size_t n = 0;
    cr_assert_eq(EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof pt, &n), 1);
    cr_assert(n == 65 && pt[0] == 0x04);
    char *x = b64url(pt + 1, 32), *y = b64url(pt + 33, 32);
    json_t *o = json_pack("{s:s,s:s,s:s,s:s}", "kty", "EC", "crv", "P-256", "x", x, "y", y);
    if (kid)
        json_object_set_new(o, "kid", json_string(kid));
    free(x);
    free(y);
    return o;
}

#endif
