/* Tests of key sets (src/middleware/jwk.c) and token verification (src/middleware/jwt.c). Keys are
 * made here with OpenSSL (RSA 2048, EC P-256), exported as PEM or as JWKS members, and tokens are
 * signed here too (HS256 with HMAC, RS256 and ES256 with EVP_DigestSign, ES256 turned from DER into
 * RFC 7518's raw r||s), so each test states the exact header and payload text it sends. */
#include <criterion/criterion.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/encoder.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jwk_make.h"
#include "kailash/auth.h"

#define NOW 1700000000.0
#define SECRET "0123456789abcdef0123456789abcdef" /* 32 bytes */

/* ---- keys and tokens made here ---- */

static EVP_PKEY *rsa_new(unsigned bits)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits);
    cr_assert_not_null(k);
    return k;
}

static EVP_PKEY *ec_new(const char *curve)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", curve);
    cr_assert_not_null(k);
    return k;
}

/* The public key as PEM, in the structure given ("SubjectPublicKeyInfo" or "type-specific", which for
 * RSA is PKCS#1's "RSA PUBLIC KEY"); or the private key when private is set. Caller frees. */
static char *pem_of(EVP_PKEY *k, const char *structure, int private)
{
    OSSL_ENCODER_CTX *ctx = OSSL_ENCODER_CTX_new_for_pkey(
        k, private ? OSSL_KEYMGMT_SELECT_KEYPAIR : OSSL_KEYMGMT_SELECT_PUBLIC_KEY, "PEM", structure, NULL);
    unsigned char *data = NULL;
    size_t len = 0;
    cr_assert_not_null(ctx);
    cr_assert_eq(OSSL_ENCODER_to_data(ctx, &data, &len), 1);
    OSSL_ENCODER_CTX_free(ctx);
    char *s = malloc(len + 1);
    memcpy(s, data, len);
    s[len] = '\0';
    OPENSSL_free(data);
    return s;
}

static char *pem_spki(EVP_PKEY *k)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *p;
    cr_assert_eq(PEM_write_bio_PUBKEY(b, k), 1);
    long n = BIO_get_mem_data(b, &p);
    char *s = strndup(p, (size_t)n);
    BIO_free(b);
    return s;
}

/* {"keys": [the keys given, stolen]} as text; caller frees. */
static char *jwks_doc(json_t *k1, json_t *k2, json_t *k3)
{
    json_t *keys = json_array(), *ks[] = {k1, k2, k3};
    for (int i = 0; i < 3; i++)
        if (ks[i])
            json_array_append_new(keys, ks[i]);
    json_t *doc = json_pack("{s:o}", "keys", keys);
    char *s = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    return s;
}

static int add_jwks(jwt_keyset *ks, const char *doc, char *err, size_t errlen)
{
    return jwt_keyset_add_jwks(ks, doc, strlen(doc), "test.jwks", err, errlen);
}

/* How a test token is signed. */
typedef struct signer {
    jwt_alg alg;
    const char *secret; /* HS256 */
    size_t secret_len;
    EVP_PKEY *pkey; /* RS256, ES256 */
    int es_der;     /* ES256: leave the signature in DER */
} signer;

static char *sign_input(const signer *s, const char *input)
{
    unsigned char sig[1024];
    size_t n = sizeof sig;
    if (s->alg == JWT_HS256) {
        unsigned int m = 0;
        cr_assert_not_null(
            HMAC(EVP_sha256(), s->secret, (int)s->secret_len, (const unsigned char *)input, strlen(input), sig, &m));
        return b64url(sig, m);
    }
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    cr_assert_eq(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, s->pkey), 1);
    cr_assert_eq(EVP_DigestSign(md, sig, &n, (const unsigned char *)input, strlen(input)), 1);
    EVP_MD_CTX_free(md);
    if (s->alg == JWT_ES256 && !s->es_der) {
        const unsigned char *p = sig;
        ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)n);
        unsigned char raw[64];
        cr_assert_not_null(es);
        cr_assert_eq(BN_bn2binpad(ECDSA_SIG_get0_r(es), raw, 32), 32);
        cr_assert_eq(BN_bn2binpad(ECDSA_SIG_get0_s(es), raw + 32, 32), 32);
        ECDSA_SIG_free(es);
        return b64url(raw, 64);
    }
    return b64url(sig, n);
}

/* header.payload.signature from the JSON texts given; caller frees. */
static char *token(const char *header, const char *payload, const signer *s)
{
    char *h = b64url_str(header), *p = b64url_str(payload);
    char *input = malloc(strlen(h) + strlen(p) + 2);
    sprintf(input, "%s.%s", h, p);
    char *sig = sign_input(s, input);
    char *t = malloc(strlen(input) + strlen(sig) + 2);
    sprintf(t, "%s.%s", input, sig);
    free(h);
    free(p);
    free(input);
    free(sig);
    return t;
}

static const signer HS = {.alg = JWT_HS256, .secret = SECRET, .secret_len = 32};

/* A payload good for an hour after NOW. */
#define CLAIMS "{\"sub\":\"alice\",\"exp\":1700003600,\"roles\":[\"orders:read\",\"admin\"]}"
#define HS_HEADER "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

static jwt_opts opts(void)
{
    jwt_opts o = {.leeway_s = 60, .now_s = NOW};
    return o;
}

static jwt_keyset *hs_set(void)
{
    jwt_keyset *ks = jwt_keyset_new();
    char err[256];
    cr_assert_eq(jwt_keyset_add_hs256(ks, SECRET, 32, err, sizeof err), 0, "%s", err);
    return ks;
}

/* Verifies tok against one set; *out (if given) gets the principal, else it is released. why is
 * checked to be a fixed phrase safe in a quoted-string. */
static jwt_err verify_o(const char *tok, const jwt_keyset *ks, const jwt_opts *o, auth_principal **out)
{
    auth_principal *p = NULL;
    double exp = -1;
    char why[128];
    const jwt_keyset *sets[] = {ks};
    jwt_err rc = jwt_verify(tok, strlen(tok), sets, 1, o, &p, &exp, why, sizeof why);
    cr_assert_eq(rc == JWT_OK, p != NULL);
    cr_assert(rc == JWT_OK || why[0] != '\0');
    cr_assert_null(strpbrk(why, "\"\\"), "%s", why);
    cr_assert_null(strstr(why, "alice"), "%s", why);
    if (rc == JWT_OK)
        cr_assert_eq(exp, 1700003600.0);
    if (out)
        *out = p;
    else
        auth_principal_release(p);
    return rc;
}

static jwt_err verify(const char *tok, const jwt_keyset *ks)
{
    jwt_opts o = opts();
    return verify_o(tok, ks, &o, NULL);
}

/* An HS256 token for the payload given, verified with opts o. */
static jwt_err hs_claims(const char *payload, const jwt_opts *o, auth_principal **out)
{
    jwt_keyset *ks = hs_set();
    char *t = token(HS_HEADER, payload, &HS);
    jwt_err rc = verify_o(t, ks, o, out);
    free(t);
    jwt_keyset_release(ks);
    return rc;
}

/* ---- key sets ---- */

Test(jwk, hs256_secret_under_32_bytes_is_refused)
{
    jwt_keyset *ks = jwt_keyset_new();
    char err[256] = "";
    cr_assert_eq(jwt_keyset_add_hs256(ks, SECRET, 31, err, sizeof err), -1);
    cr_assert_not_null(strstr(err, "32 bytes"), "%s", err);
    cr_assert_not(jwt_keyset_has_hs256(ks));
    cr_assert_eq(jwt_keyset_add_hs256(ks, SECRET, 32, err, sizeof err), 0);
    cr_assert(jwt_keyset_has_hs256(ks));
    cr_assert_eq(jwt_keyset_count(ks), 0);
    cr_assert_eq(jwt_keyset_add_hs256(ks, SECRET, 32, err, sizeof err), -1, "a second secret");
    jwt_keyset_release(ks);
}

Test(jwk, references_are_counted)
{
    jwt_keyset *ks = hs_set();
    jwt_keyset_retain(ks);
    jwt_keyset_release(ks);
    cr_assert(jwt_keyset_has_hs256(ks)); /* still held: ASan would see a use after free */
    jwt_keyset_release(ks);
    jwt_keyset_release(NULL);
}

Test(jwk, pem_rsa_spki_and_pkcs1_and_ec_load)
{
    EVP_PKEY *rsa = rsa_new(2048), *ec = ec_new("P-256");
    char *spki = pem_spki(rsa), *pkcs1 = pem_of(rsa, "type-specific", 0), *ecpem = pem_spki(ec), err[256];
    cr_assert_not_null(strstr(pkcs1, "BEGIN RSA PUBLIC KEY"), "%s", pkcs1);
    jwt_keyset *ks = jwt_keyset_new();
    cr_assert_eq(jwt_keyset_add_pem(ks, spki, strlen(spki), "rsa.pem", err, sizeof err), 0, "%s", err);
    cr_assert_eq(jwt_keyset_add_pem(ks, pkcs1, strlen(pkcs1), "rsa1.pem", err, sizeof err), 0, "%s", err);
    cr_assert_eq(jwt_keyset_add_pem(ks, ecpem, strlen(ecpem), "ec.pem", err, sizeof err), 0, "%s", err);
    cr_assert_eq(jwt_keyset_count(ks), 3);
    cr_assert_not(jwt_keyset_has_hs256(ks));
    jwt_keyset_release(ks);
    free(spki);
    free(pkcs1);
    free(ecpem);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ec);
}

/* add_pem refuses text and names the source in err, never showing the PEM. */
static void pem_refused(const char *pem, const char *expect)
{
    jwt_keyset *ks = jwt_keyset_new();
    char err[256] = "";
    cr_assert_eq(jwt_keyset_add_pem(ks, pem, strlen(pem), "k.pem", err, sizeof err), -1);
    cr_assert_eq(strncmp(err, "k.pem: ", 7), 0, "%s", err);
    cr_assert_not_null(strstr(err, expect), "%s", err);
    cr_assert_null(strstr(err, "MII"), "%s", err);
    cr_assert_eq(jwt_keyset_count(ks), 0);
    jwt_keyset_release(ks);
}

Test(jwk, pem_small_rsa_other_curve_private_and_garbage_are_refused)
{
    EVP_PKEY *small = rsa_new(1024), *p384 = ec_new("P-384");
    char *a = pem_spki(small), *b = pem_spki(p384), *c = pem_of(p384, "PrivateKeyInfo", 1);
    pem_refused(a, "2048");
    pem_refused(b, "P-256");
    pem_refused(c, "not a PEM public key");
    pem_refused("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "not a PEM public key");
    pem_refused("hello", "not a PEM public key");
    free(a);
    free(b);
    free(c);
    EVP_PKEY_free(small);
    EVP_PKEY_free(p384);
}

Test(jwk, jwks_loads_rsa_and_ec_keys)
{
    EVP_PKEY *rsa = rsa_new(2048), *ec = ec_new("P-256");
    char *doc = jwks_doc(jwk_rsa_of(rsa, "r1"), jwk_ec_of(ec, "e1"), NULL), err[256];
    jwt_keyset *ks = jwt_keyset_new();
    cr_assert_eq(add_jwks(ks, doc, err, sizeof err), 0, "%s", err);
    cr_assert_eq(jwt_keyset_count(ks), 2);
    jwt_keyset_release(ks);
    free(doc);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ec);
}

Test(jwk, jwks_skips_unsupported_keys)
{
    EVP_PKEY *ec = ec_new("P-256");
    json_t *enc = jwk_ec_of(ec, "enc"), *wrong_alg = jwk_ec_of(ec, "wrong-alg");
    json_object_set_new(enc, "use", json_string("enc"));
    json_object_set_new(wrong_alg, "alg", json_string("RS256")); /* an EC key is for ES256 only */
    json_t *oct = json_pack("{s:s,s:s,s:s}", "kty", "oct", "kid", "h", "k", "c2VjcmV0");
    json_t *okp = json_pack("{s:s,s:s,s:s}", "kty", "OKP", "crv", "Ed25519", "x", "AAAA");
    json_t *p384 = json_pack("{s:s,s:s,s:s,s:s}", "kty", "EC", "crv", "P-384", "x", "AAAA", "y", "AAAA");
    json_t *good = jwk_ec_of(ec, "good");
    json_object_set_new(good, "use", json_string("sig"));
    json_object_set_new(good, "alg", json_string("ES256"));
    json_t *keys = json_pack("[o,o,o,o,o,o]", enc, wrong_alg, oct, okp, p384, good);
    json_t *doc = json_pack("{s:o}", "keys", keys);
    char *text = json_dumps(doc, 0), err[256];
    jwt_keyset *ks = jwt_keyset_new();
    cr_assert_eq(add_jwks(ks, text, err, sizeof err), 0, "%s", err);
    cr_assert_eq(jwt_keyset_count(ks), 1);
    jwt_keyset_release(ks);
    /* without the good key nothing is usable: refused */
    json_array_remove(keys, 5);
    free(text);
    text = json_dumps(doc, 0);
    ks = jwt_keyset_new();
    cr_assert_eq(add_jwks(ks, text, err, sizeof err), -1);
    cr_assert_not_null(strstr(err, "no usable key"), "%s", err);
    jwt_keyset_release(ks);
    free(text);
    json_decref(doc);
    EVP_PKEY_free(ec);
}

/* add_jwks refuses doc with a message naming the source and holding expect; the set is unchanged. */
static void jwks_refused(jwt_keyset *ks, const char *doc, const char *expect)
{
    size_t before = jwt_keyset_count(ks);
    char err[256] = "";
    cr_assert_eq(add_jwks(ks, doc, err, sizeof err), -1, "accepted: %s", doc);
    cr_assert_eq(strncmp(err, "test.jwks: ", 11), 0, "%s", err);
    cr_assert_not_null(strstr(err, expect), "%s (wanted %s)", err, expect);
    cr_assert_eq(jwt_keyset_count(ks), before);
}

Test(jwk, jwks_refuses_small_rsa)
{
    EVP_PKEY *small = rsa_new(1024), *ec = ec_new("P-256");
    char *doc = jwks_doc(jwk_ec_of(ec, "ok"), jwk_rsa_of(small, "small"), NULL);
    jwt_keyset *ks = jwt_keyset_new();
    jwks_refused(ks, doc, "key 1 (kid 'small'): the RSA key is shorter than 2048 bits");
    jwt_keyset_release(ks);
    free(doc);
    EVP_PKEY_free(small);
    EVP_PKEY_free(ec);
}

Test(jwk, jwks_refuses_duplicate_kid_in_the_document_and_in_the_set)
{
    EVP_PKEY *a = ec_new("P-256"), *b = ec_new("P-256");
    char *dup = jwks_doc(jwk_ec_of(a, "k"), jwk_ec_of(b, "k"), NULL), *one = jwks_doc(jwk_ec_of(a, "k"), NULL, NULL),
         *other = jwks_doc(jwk_ec_of(b, "k"), NULL, NULL), err[256];
    jwt_keyset *ks = jwt_keyset_new();
    jwks_refused(ks, dup, "key 1 (kid 'k'): another key has the same kid");
    cr_assert_eq(add_jwks(ks, one, err, sizeof err), 0, "%s", err);
    jwks_refused(ks, other, "same kid");
    cr_assert_eq(jwt_keyset_count(ks), 1);
    jwt_keyset_release(ks);
    free(dup);
    free(one);
    free(other);
    EVP_PKEY_free(a);
    EVP_PKEY_free(b);
}

Test(jwk, jwks_refuses_malformed_members)
{
    EVP_PKEY *rsa = rsa_new(2048), *ec = ec_new("P-256");
    jwt_keyset *ks = jwt_keyset_new();
    json_t *k;
    char *doc;
#define REFUSE_WITH(key, member, value, expect)                                                                        \
    k = (key);                                                                                                         \
    json_object_set_new(k, member, value);                                                                             \
    doc = jwks_doc(k, NULL, NULL);                                                                                     \
    jwks_refused(ks, doc, expect);                                                                                     \
    free(doc)
    REFUSE_WITH(jwk_rsa_of(rsa, "r"), "n", json_string("AQAB=="), "n and e");
    REFUSE_WITH(jwk_rsa_of(rsa, "r"), "n", json_string("a+b/"), "n and e");
    REFUSE_WITH(jwk_rsa_of(rsa, "r"), "n", json_integer(5), "n and e");
    REFUSE_WITH(jwk_rsa_of(rsa, "r"), "e", json_string(""), "n and e");
    REFUSE_WITH(jwk_rsa_of(rsa, "r"), "kid", json_integer(1), "expected an object");
    REFUSE_WITH(jwk_ec_of(ec, "e"), "x", json_string("AAAA"), "32 bytes");
    REFUSE_WITH(jwk_ec_of(ec, "e"), "crv", json_null(), "expected an object");
    REFUSE_WITH(jwk_ec_of(ec, "e"), "use", json_true(), "expected an object");
    REFUSE_WITH(jwk_ec_of(ec, "e"), "y", json_string("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), "not a point");
#undef REFUSE_WITH
    jwks_refused(ks, "{\"keys\":[1]}", "key 0: expected an object");
    jwks_refused(ks, "{\"keys\":[{\"n\":\"AQAB\"}]}", "expected an object with string kty");
    jwks_refused(ks, "{\"keys\":{}}", "\"keys\" array");
    jwks_refused(ks, "[]", "\"keys\" array");
    jwks_refused(ks, "{\"keys\":[],\"keys\":[]}", "not JSON");
    jwks_refused(ks, "{\"keys\":[]", "not JSON");
    jwks_refused(ks, "{\"keys\":[]}", "no usable key");
    jwt_keyset_release(ks);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ec);
}

Test(jwk, jwks_refuses_more_than_64_keys)
{
    size_t cap = 70 * 16 + 32, n = 0;
    char *doc = malloc(cap);
    n += (size_t)sprintf(doc, "{\"keys\":[");
    for (int i = 0; i < 65; i++)
        n += (size_t)sprintf(doc + n, "%s{\"kty\":\"oct\"}", i ? "," : "");
    sprintf(doc + n, "]}");
    jwt_keyset *ks = jwt_keyset_new();
    jwks_refused(ks, doc, "more than 64 keys");
    jwt_keyset_release(ks);
    free(doc);
}

/* ---- verifying: each algorithm ---- */

Test(jwt, hs256_valid_gives_the_principal)
{
    auth_principal *p = NULL;
    jwt_opts o = opts();
    cr_assert_eq(hs_claims(CLAIMS, &o, &p), JWT_OK);
    cr_assert_str_eq(auth_principal_id(p), "jwt:alice");
    cr_assert_eq(auth_principal_kind(p), AUTH_JWT);
    cr_assert(auth_principal_has_role(p, "orders:read") && auth_principal_has_role(p, "admin"));
    cr_assert_eq(json_array_size(auth_principal_roles(p)), 2);
    json_t *attrs = auth_principal_attributes(p);
    cr_assert_str_eq(json_string_value(json_object_get(attrs, "sub")), "alice");
    cr_assert_eq(json_integer_value(json_object_get(attrs, "exp")), 1700003600);
    auth_principal_release(p);
}

Test(jwt, rs256_valid_with_a_pem_key)
{
    EVP_PKEY *rsa = rsa_new(2048);
    char *pem = pem_spki(rsa), err[256];
    jwt_keyset *ks = jwt_keyset_new();
    cr_assert_eq(jwt_keyset_add_pem(ks, pem, strlen(pem), "rsa.pem", err, sizeof err), 0, "%s", err);
    signer s = {.alg = JWT_RS256, .pkey = rsa};
    char *t = token("{\"alg\":\"RS256\"}", CLAIMS, &s);
    cr_assert_eq(verify(t, ks), JWT_OK);
    free(t);
    jwt_keyset_release(ks);
    free(pem);
    EVP_PKEY_free(rsa);
}

Test(jwt, rs256_signature_must_have_the_modulus_size)
{
    EVP_PKEY *rsa = rsa_new(2048);
    char *pem = pem_spki(rsa), err[256], payload[128], input[512], tok[1024];
    jwt_keyset *ks = jwt_keyset_new();
    cr_assert_eq(jwt_keyset_add_pem(ks, pem, strlen(pem), "rsa.pem", err, sizeof err), 0, "%s", err);
    /* PKCS#1 v1.5 is deterministic: vary a claim until the signature starts with a zero byte, which a
     * lax verifier would also take without (as the number it is) */
    unsigned char sig[256];
    size_t n = 0;
    char *h = b64url_str("{\"alg\":\"RS256\"}");
    for (int i = 0; i < 20000; i++) {
        snprintf(payload, sizeof payload, "{\"sub\":\"alice\",\"exp\":1700003600,\"n\":%d}", i);
        char *p = b64url_str(payload);
        snprintf(input, sizeof input, "%s.%s", h, p);
        free(p);
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        n = sizeof sig;
        cr_assert_eq(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, rsa), 1);
        cr_assert_eq(EVP_DigestSign(md, sig, &n, (const unsigned char *)input, strlen(input)), 1);
        EVP_MD_CTX_free(md);
        if (sig[0] == 0)
            break;
    }
    cr_assert(n == 256 && sig[0] == 0);
    char *full = b64url(sig, 256), *short_ = b64url(sig + 1, 255);
    snprintf(tok, sizeof tok, "%s.%s", input, full);
    cr_assert_eq(verify(tok, ks), JWT_OK);
    snprintf(tok, sizeof tok, "%s.%s", input, short_);
    cr_assert_eq(verify(tok, ks), JWT_BAD_SIGNATURE);
    free(full);
    free(short_);
    free(h);
    jwt_keyset_release(ks);
    free(pem);
    EVP_PKEY_free(rsa);
}

Test(jwt, es256_valid_with_a_jwks_key)
{
    EVP_PKEY *ec = ec_new("P-256");
    char *doc = jwks_doc(jwk_ec_of(ec, "e1"), NULL, NULL), err[256];
    jwt_keyset *ks = jwt_keyset_new();
    cr_assert_eq(add_jwks(ks, doc, err, sizeof err), 0, "%s", err);
    signer s = {.alg = JWT_ES256, .pkey = ec};
    char *t = token("{\"alg\":\"ES256\",\"kid\":\"e1\"}", CLAIMS, &s);
    cr_assert_eq(verify(t, ks), JWT_OK);
    free(t);
    jwt_keyset_release(ks);
    free(doc);
    EVP_PKEY_free(ec);
}

Test(jwt, es256_der_signature_is_refused)
{
    EVP_PKEY *ec = ec_new("P-256");
    char *pem = pem_spki(ec), err[256];
    jwt_keyset *ks = jwt_keyset_new();
    cr_assert_eq(jwt_keyset_add_pem(ks, pem, strlen(pem), "ec.pem", err, sizeof err), 0, "%s", err);
    signer s = {.alg = JWT_ES256, .pkey = ec, .es_der = 1};
    char *t = token("{\"alg\":\"ES256\"}", CLAIMS, &s);
    cr_assert_eq(verify(t, ks), JWT_BAD_SIGNATURE);
    free(t);
    s.es_der = 0;
    t = token("{\"alg\":\"ES256\"}", CLAIMS, &s);
    cr_assert_eq(verify(t, ks), JWT_OK, "the same key, raw r||s");
    free(t);
    jwt_keyset_release(ks);
    free(pem);
    EVP_PKEY_free(ec);
}

/* ---- verifying: algorithms refused ---- */

Test(jwt, alg_none_in_any_case_is_refused)
{
    jwt_keyset *ks = hs_set();
    const char *headers[] = {"{\"alg\":\"none\"}", "{\"alg\":\"None\"}", "{\"alg\":\"NONE\"}"};
    char *p = b64url_str(CLAIMS);
    for (size_t i = 0; i < 3; i++) {
        char *h = b64url_str(headers[i]), t[512];
        snprintf(t, sizeof t, "%s.%s.", h, p);
        cr_assert_eq(verify(t, ks), JWT_BAD_ALG, "%s", headers[i]);
        free(h);
    }
    free(p);
    jwt_keyset_release(ks);
}

Test(jwt, other_algs_and_types_are_refused)
{
    jwt_keyset *ks = hs_set();
    const char *bad_alg[] = {"{\"alg\":\"HS512\"}", "{\"alg\":\"hs256\"}", "{\"alg\":\"HS256 \"}",
                             "{\"alg\":\"PS256\"}"};
    for (size_t i = 0; i < 4; i++) {
        char *t = token(bad_alg[i], CLAIMS, &HS);
        cr_assert_eq(verify(t, ks), JWT_BAD_ALG, "%s", bad_alg[i]);
        free(t);
    }
    const char *malformed[] = {"{\"alg\":256}", "{\"typ\":\"JWT\"}", "{\"alg\":[\"HS256\"]}"};
    for (size_t i = 0; i < 3; i++) {
        char *t = token(malformed[i], CLAIMS, &HS);
        cr_assert_eq(verify(t, ks), JWT_MALFORMED, "%s", malformed[i]);
        free(t);
    }
    jwt_keyset_release(ks);
}

Test(jwt, alg_without_a_configured_key_is_refused)
{
    EVP_PKEY *ec = ec_new("P-256");
    jwt_keyset *ks = hs_set();
    signer s = {.alg = JWT_ES256, .pkey = ec};
    char *t = token("{\"alg\":\"ES256\"}", CLAIMS, &s);
    cr_assert_eq(verify(t, ks), JWT_BAD_ALG);
    free(t);
    jwt_keyset_release(ks);
    EVP_PKEY_free(ec);
}

Test(jwt, hs256_signed_with_the_rsa_pem_as_secret_is_refused)
{
    EVP_PKEY *rsa = rsa_new(2048);
    char *pem = pem_spki(rsa), err[256];
    jwt_keyset *ks = jwt_keyset_new();
    cr_assert_eq(jwt_keyset_add_pem(ks, pem, strlen(pem), "rsa.pem", err, sizeof err), 0, "%s", err);
    signer s = {.alg = JWT_HS256, .secret = pem, .secret_len = strlen(pem)};
    char *t = token("{\"alg\":\"HS256\"}", CLAIMS, &s);
    cr_assert_eq(verify(t, ks), JWT_BAD_ALG, "no HS256 secret: the RSA key is not one");
    /* with an (other) HS256 secret configured too, the RSA key still never serves as one */
    cr_assert_eq(jwt_keyset_add_hs256(ks, SECRET, 32, err, sizeof err), 0);
    cr_assert_eq(verify(t, ks), JWT_BAD_SIGNATURE);
    free(t);
    jwt_keyset_release(ks);
    free(pem);
    EVP_PKEY_free(rsa);
}

Test(jwt, a_kid_naming_a_key_of_another_type_fits_no_key)
{
    EVP_PKEY *rsa = rsa_new(2048), *ec = ec_new("P-256");
    char *doc = jwks_doc(jwk_rsa_of(rsa, "r1"), jwk_ec_of(ec, "e1"), NULL), err[256];
    jwt_keyset *ks = jwt_keyset_new();
    cr_assert_eq(add_jwks(ks, doc, err, sizeof err), 0, "%s", err);
    signer s = {.alg = JWT_ES256, .pkey = ec};
    char *t = token("{\"alg\":\"ES256\",\"kid\":\"r1\"}", CLAIMS, &s);
    cr_assert_eq(verify(t, ks), JWT_NO_KEY);
    free(t);
    jwt_keyset_release(ks);
    free(doc);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ec);
}

/* ---- verifying: key choice ---- */

/* A set of two EC keys with kids "a" and "b"; *ka and *kb get the private keys. */
static jwt_keyset *two_ec_set(EVP_PKEY **ka, EVP_PKEY **kb)
{
    *ka = ec_new("P-256");
    *kb = ec_new("P-256");
    char *doc = jwks_doc(jwk_ec_of(*ka, "a"), jwk_ec_of(*kb, "b"), NULL), err[256];
    jwt_keyset *ks = jwt_keyset_new();
    cr_assert_eq(add_jwks(ks, doc, err, sizeof err), 0, "%s", err);
    free(doc);
    return ks;
}

Test(jwt, jwks_key_is_chosen_by_kid)
{
    EVP_PKEY *a, *b;
    jwt_keyset *ks = two_ec_set(&a, &b);
    signer sb = {.alg = JWT_ES256, .pkey = b};
    char *t = token("{\"alg\":\"ES256\",\"kid\":\"b\"}", CLAIMS, &sb),
         *wrong = token("{\"alg\":\"ES256\",\"kid\":\"a\"}", CLAIMS, &sb);
    cr_assert_eq(verify(t, ks), JWT_OK);
    cr_assert_eq(verify(wrong, ks), JWT_BAD_SIGNATURE, "signed with b, names a");
    free(t);
    free(wrong);
    jwt_keyset_release(ks);
    EVP_PKEY_free(a);
    EVP_PKEY_free(b);
}

Test(jwt, unknown_kid_is_refused)
{
    EVP_PKEY *a, *b;
    jwt_keyset *ks = two_ec_set(&a, &b);
    signer s = {.alg = JWT_ES256, .pkey = a};
    char *t = token("{\"alg\":\"ES256\",\"kid\":\"c\"}", CLAIMS, &s);
    cr_assert_eq(verify(t, ks), JWT_UNKNOWN_KID);
    free(t);
    t = token("{\"alg\":\"ES256\",\"kid\":7}", CLAIMS, &s);
    cr_assert_eq(verify(t, ks), JWT_MALFORMED, "a kid that is not a string");
    free(t);
    jwt_keyset_release(ks);
    EVP_PKEY_free(a);
    EVP_PKEY_free(b);
}

Test(jwt, no_kid_with_two_keys_fits_no_key)
{
    EVP_PKEY *a, *b;
    jwt_keyset *ks = two_ec_set(&a, &b);
    signer s = {.alg = JWT_ES256, .pkey = a};
    char *t = token("{\"alg\":\"ES256\"}", CLAIMS, &s);
    cr_assert_eq(verify(t, ks), JWT_NO_KEY);
    free(t);
    jwt_keyset_release(ks);
    EVP_PKEY_free(a);
    EVP_PKEY_free(b);
}

Test(jwt, no_kid_with_a_single_key_uses_it)
{
    EVP_PKEY *ec = ec_new("P-256");
    char *with_kid = jwks_doc(jwk_ec_of(ec, "only"), NULL, NULL), *without = jwks_doc(jwk_ec_of(ec, NULL), NULL, NULL),
         err[256];
    signer s = {.alg = JWT_ES256, .pkey = ec};
    char *t = token("{\"alg\":\"ES256\"}", CLAIMS, &s);
    const char *docs[] = {with_kid, without};
    for (int i = 0; i < 2; i++) {
        jwt_keyset *ks = jwt_keyset_new();
        cr_assert_eq(add_jwks(ks, docs[i], err, sizeof err), 0, "%s", err);
        cr_assert_eq(verify(t, ks), JWT_OK, "%s", docs[i]);
        jwt_keyset_release(ks);
    }
    free(t);
    free(with_kid);
    free(without);
    EVP_PKEY_free(ec);
}

Test(jwt, no_kid_prefers_the_kidless_key_of_its_type)
{
    EVP_PKEY *rsa = rsa_new(2048), *ec = ec_new("P-256"), *other = ec_new("P-256");
    char *pem = pem_spki(ec), *doc = jwks_doc(jwk_rsa_of(rsa, "r"), jwk_ec_of(other, "o"), NULL), err[256];
    jwt_keyset *ks = jwt_keyset_new(), *remote = jwt_keyset_new();
    cr_assert_eq(jwt_keyset_add_pem(ks, pem, strlen(pem), "ec.pem", err, sizeof err), 0, "%s", err);
    cr_assert_eq(add_jwks(remote, doc, err, sizeof err), 0, "%s", err);
    signer s = {.alg = JWT_ES256, .pkey = ec}, so = {.alg = JWT_ES256, .pkey = other};
    char *t = token("{\"alg\":\"ES256\"}", CLAIMS, &s), *to = token("{\"alg\":\"ES256\",\"kid\":\"o\"}", CLAIMS, &so);
    const jwt_keyset *sets[] = {NULL, remote, ks};
    jwt_opts o = opts();
    auth_principal *p = NULL;
    cr_assert_eq(jwt_verify(t, strlen(t), sets, 3, &o, &p, NULL, NULL, 0), JWT_OK);
    auth_principal_release(p);
    cr_assert_eq(jwt_verify(to, strlen(to), sets, 3, &o, &p, NULL, NULL, 0), JWT_OK, "kid found in the 2nd set");
    auth_principal_release(p);
    free(t);
    free(to);
    jwt_keyset_release(ks);
    jwt_keyset_release(remote);
    free(pem);
    free(doc);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ec);
    EVP_PKEY_free(other);
}

/* ---- verifying: the token's form ---- */

Test(jwt, segment_count_other_than_three_is_malformed)
{
    jwt_keyset *ks = hs_set();
    char *t = token(HS_HEADER, CLAIMS, &HS);
    char buf[1024];
    cr_assert_eq(verify(t, ks), JWT_OK);
    snprintf(buf, sizeof buf, "%s.", t);
    cr_assert_eq(verify(buf, ks), JWT_MALFORMED, "four segments");
    snprintf(buf, sizeof buf, "%s.abc", t);
    cr_assert_eq(verify(buf, ks), JWT_MALFORMED, "four segments");
    *strrchr(t, '.') = '\0';
    cr_assert_eq(verify(t, ks), JWT_MALFORMED, "two segments");
    cr_assert_eq(verify("abc", ks), JWT_MALFORMED);
    cr_assert_eq(verify("", ks), JWT_MALFORMED);
    cr_assert_eq(verify("..", ks), JWT_MALFORMED);
    free(t);
    jwt_keyset_release(ks);
}

/* The token t with its segment seg (0..2) replaced by text. */
static char *with_segment(const char *t, int seg, const char *text)
{
    const char *d1 = strchr(t, '.'), *d2 = strchr(d1 + 1, '.');
    const char *start = seg == 0 ? t : seg == 1 ? d1 + 1 : d2 + 1, *end = seg == 0 ? d1 : seg == 1 ? d2 : t + strlen(t);
    char *out = malloc(strlen(t) + strlen(text) + 1);
    sprintf(out, "%.*s%s%s", (int)(start - t), t, text, end);
    return out;
}

Test(jwt, bad_base64url_is_malformed)
{
    /* 16 bytes of header: its encoding ends in a group of 2 characters, "fQ" for the last '}' */
    const char *header = "{\"alg\":\"HS256\" }";
    jwt_keyset *ks = hs_set();
    char *t = token(header, CLAIMS, &HS), *h = b64url_str(header), *sig = strdup(strrchr(t, '.') + 1);
    size_t hl = strlen(h);
    cr_assert(hl % 4 == 2 && strcmp(h + hl - 2, "fQ") == 0, "%s", h);
    cr_assert_eq(verify(t, ks), JWT_OK);
    char buf[6][512];
    snprintf(buf[0], 512, "%s==", h);               /* padding */
    snprintf(buf[1], 512, "+%s", h + 1);            /* the standard alphabet's + */
    snprintf(buf[2], 512, "%sA", h);                /* decodes to a NUL byte after the JSON */
    snprintf(buf[3], 512, "%.*sR", (int)hl - 1, h); /* "fR": '}' with a non-zero trailing bit */
    snprintf(buf[4], 512, "/%s", sig + 1);          /* the standard alphabet's / in the signature */
    snprintf(buf[5], 512, "%sAA", sig);             /* 45 characters: length % 4 == 1 */
    for (int i = 0; i < 6; i++) {
        char *bad = with_segment(t, i < 4 ? 0 : 2, buf[i]);
        cr_assert_eq(verify(bad, ks), JWT_MALFORMED, "case %d: %s", i, bad);
        free(bad);
    }
    free(h);
    free(sig);
    free(t);
    jwt_keyset_release(ks);
}

Test(jwt, header_not_a_json_object_is_malformed)
{
    jwt_keyset *ks = hs_set();
    const char *headers[] = {"not json", "[\"HS256\"]", "\"HS256\"", "{\"alg\":\"HS256\"} x", ""};
    for (size_t i = 0; i < 5; i++) {
        char *t = token(headers[i], CLAIMS, &HS);
        cr_assert_eq(verify(t, ks), JWT_MALFORMED, "%s", headers[i]);
        free(t);
    }
    jwt_keyset_release(ks);
}

Test(jwt, payload_not_a_json_object_is_malformed)
{
    jwt_keyset *ks = hs_set();
    const char *payloads[] = {"[1]", "\"alice\"", "42", "{\"sub\":\"alice\",", ""};
    for (size_t i = 0; i < 5; i++) {
        char *t = token(HS_HEADER, payloads[i], &HS);
        cr_assert_eq(verify(t, ks), JWT_MALFORMED, "%s", payloads[i]);
        free(t);
    }
    jwt_keyset_release(ks);
}

Test(jwt, duplicate_members_are_malformed)
{
    jwt_keyset *ks = hs_set();
    char *t = token("{\"alg\":\"HS256\",\"alg\":\"none\"}", CLAIMS, &HS);
    cr_assert_eq(verify(t, ks), JWT_MALFORMED, "header");
    free(t);
    t = token(HS_HEADER, "{\"sub\":\"alice\",\"exp\":1700003600,\"sub\":\"root\"}", &HS);
    cr_assert_eq(verify(t, ks), JWT_MALFORMED, "payload");
    free(t);
    jwt_keyset_release(ks);
}

Test(jwt, crit_header_is_refused)
{
    jwt_keyset *ks = hs_set();
    char *t = token("{\"alg\":\"HS256\",\"crit\":[\"exp\"]}", CLAIMS, &HS);
    cr_assert_eq(verify(t, ks), JWT_CRIT);
    free(t);
    t = token("{\"alg\":\"HS256\",\"crit\":[]}", CLAIMS, &HS);
    cr_assert_eq(verify(t, ks), JWT_CRIT, "even an empty one");
    free(t);
    jwt_keyset_release(ks);
}

Test(jwt, oversize_token_is_refused_first)
{
    jwt_keyset *ks = hs_set();
    char *big = malloc(JWT_MAX_TOKEN + 2);
    memset(big, '.', JWT_MAX_TOKEN + 1);
    big[JWT_MAX_TOKEN + 1] = '\0';
    cr_assert_eq(verify(big, ks), JWT_TOO_LARGE);
    big[JWT_MAX_TOKEN] = '\0';
    cr_assert_eq(verify(big, ks), JWT_MALFORMED, "8192 bytes is not too large");
    /* a well-formed token padded to 8193 bytes by a long claim */
    char payload[JWT_MAX_TOKEN];
    snprintf(payload, sizeof payload, "{\"sub\":\"alice\",\"exp\":1700003600,\"pad\":\"%0*d\"}", 6200, 0);
    char *t = token(HS_HEADER, payload, &HS);
    cr_assert_gt(strlen(t), JWT_MAX_TOKEN);
    cr_assert_eq(verify(t, ks), JWT_TOO_LARGE);
    free(t);
    free(big);
    jwt_keyset_release(ks);
}

/* ---- verifying: signatures ---- */

Test(jwt, tampered_payload_fails_the_signature)
{
    jwt_keyset *ks = hs_set();
    char *t = token(HS_HEADER, CLAIMS, &HS);
    char *root = b64url_str("{\"sub\":\"root\",\"exp\":1700003600,\"roles\":[\"admin\"]}");
    char *bad = with_segment(t, 1, root);
    cr_assert_eq(verify(bad, ks), JWT_BAD_SIGNATURE);
    free(bad);
    free(root);
    free(t);
    jwt_keyset_release(ks);
}

Test(jwt, wrong_key_fails_the_signature)
{
    EVP_PKEY *ec = ec_new("P-256"), *other = ec_new("P-256");
    char *pem = pem_spki(ec), err[256];
    jwt_keyset *ks = hs_set();
    cr_assert_eq(jwt_keyset_add_pem(ks, pem, strlen(pem), "ec.pem", err, sizeof err), 0, "%s", err);
    signer s = {.alg = JWT_ES256, .pkey = other};
    signer hs = {.alg = JWT_HS256, .secret = "fedcba9876543210fedcba9876543210", .secret_len = 32};
    char *t = token("{\"alg\":\"ES256\"}", CLAIMS, &s), *th = token(HS_HEADER, CLAIMS, &hs);
    cr_assert_eq(verify(t, ks), JWT_BAD_SIGNATURE);
    cr_assert_eq(verify(th, ks), JWT_BAD_SIGNATURE);
    free(t);
    free(th);
    jwt_keyset_release(ks);
    free(pem);
    EVP_PKEY_free(ec);
    EVP_PKEY_free(other);
}

Test(jwt, claims_are_not_looked_at_before_the_signature)
{
    jwt_keyset *ks = hs_set();
    signer hs = {.alg = JWT_HS256, .secret = "fedcba9876543210fedcba9876543210", .secret_len = 32};
    const char *payloads[] = {"{\"sub\":\"alice\",\"exp\":1}", "[]", "{\"exp\":1700003600}"};
    for (size_t i = 0; i < 3; i++) {
        char *t = token(HS_HEADER, payloads[i], &hs);
        cr_assert_eq(verify(t, ks), JWT_BAD_SIGNATURE, "%s", payloads[i]);
        free(t);
    }
    jwt_keyset_release(ks);
}

/* ---- verifying: claims ---- */

Test(jwt, exp_is_required_and_a_number)
{
    jwt_opts o = opts();
    cr_assert_eq(hs_claims("{\"sub\":\"alice\"}", &o, NULL), JWT_BAD_CLAIMS);
    cr_assert_eq(hs_claims("{\"sub\":\"alice\",\"exp\":\"1700003600\"}", &o, NULL), JWT_BAD_CLAIMS);
    cr_assert_eq(hs_claims("{\"sub\":\"alice\",\"exp\":null}", &o, NULL), JWT_BAD_CLAIMS);
    auth_principal *p = NULL;
    cr_assert_eq(hs_claims("{\"sub\":\"alice\",\"exp\":1700003600.0}", &o, &p), JWT_OK, "a real");
    auth_principal_release(p);
}

Test(jwt, exp_leeway_edges)
{
    jwt_opts o = opts();
    o.now_s = 1700003600.0 + 60; /* exactly exp + leeway */
    cr_assert_eq(hs_claims(CLAIMS, &o, NULL), JWT_EXPIRED);
    o.now_s -= 1;
    cr_assert_eq(hs_claims(CLAIMS, &o, NULL), JWT_OK);
    o.leeway_s = 0;
    o.now_s = 1700003600.0;
    cr_assert_eq(hs_claims(CLAIMS, &o, NULL), JWT_EXPIRED);
}

Test(jwt, nbf_leeway_edges)
{
    const char *claims = "{\"sub\":\"alice\",\"exp\":1700003600,\"nbf\":1700001000}";
    jwt_opts o = opts();
    o.now_s = 1700001000.0 - 60; /* now + leeway == nbf: valid */
    cr_assert_eq(hs_claims(claims, &o, NULL), JWT_OK);
    o.now_s -= 1;
    cr_assert_eq(hs_claims(claims, &o, NULL), JWT_NOT_YET_VALID);
    o.now_s = NOW;
    cr_assert_eq(hs_claims("{\"sub\":\"alice\",\"exp\":1700003600,\"nbf\":\"0\"}", &o, NULL), JWT_BAD_CLAIMS);
}

Test(jwt, issuer_is_checked_when_configured)
{
    jwt_opts o = opts();
    const char *ok = "{\"sub\":\"alice\",\"exp\":1700003600,\"iss\":\"https://idp.example\"}";
    cr_assert_eq(hs_claims(ok, &o, NULL), JWT_OK, "not configured");
    cr_assert_eq(hs_claims(CLAIMS, &o, NULL), JWT_OK, "not configured, missing");
    o.issuer = "https://idp.example";
    cr_assert_eq(hs_claims(ok, &o, NULL), JWT_OK);
    cr_assert_eq(hs_claims("{\"sub\":\"alice\",\"exp\":1700003600,\"iss\":\"https://evil.example\"}", &o, NULL),
                 JWT_BAD_ISSUER);
    cr_assert_eq(hs_claims(CLAIMS, &o, NULL), JWT_BAD_ISSUER, "missing");
    cr_assert_eq(hs_claims("{\"sub\":\"alice\",\"exp\":1700003600,\"iss\":[\"https://idp.example\"]}", &o, NULL),
                 JWT_BAD_ISSUER, "not a string");
}

Test(jwt, audience_is_checked_when_configured)
{
    const char *auds[] = {"orders", "billing"};
    jwt_opts o = opts();
    o.audience = auds;
    o.naudience = 2;
    cr_assert_eq(hs_claims("{\"sub\":\"a\",\"exp\":1700003600,\"aud\":\"billing\"}", &o, NULL), JWT_OK);
    cr_assert_eq(hs_claims("{\"sub\":\"a\",\"exp\":1700003600,\"aud\":[\"x\",\"orders\"]}", &o, NULL), JWT_OK);
    cr_assert_eq(hs_claims("{\"sub\":\"a\",\"exp\":1700003600,\"aud\":\"x\"}", &o, NULL), JWT_BAD_AUDIENCE);
    cr_assert_eq(hs_claims("{\"sub\":\"a\",\"exp\":1700003600,\"aud\":[\"x\",\"y\"]}", &o, NULL), JWT_BAD_AUDIENCE);
    cr_assert_eq(hs_claims("{\"sub\":\"a\",\"exp\":1700003600,\"aud\":[]}", &o, NULL), JWT_BAD_AUDIENCE);
    cr_assert_eq(hs_claims("{\"sub\":\"a\",\"exp\":1700003600,\"aud\":[\"orders\",1]}", &o, NULL), JWT_BAD_AUDIENCE);
    cr_assert_eq(hs_claims("{\"sub\":\"a\",\"exp\":1700003600}", &o, NULL), JWT_BAD_AUDIENCE, "missing");
    o.naudience = 0;
    cr_assert_eq(hs_claims("{\"sub\":\"a\",\"exp\":1700003600,\"aud\":\"x\"}", &o, NULL), JWT_OK, "not configured");
}

Test(jwt, sub_must_be_a_non_empty_string)
{
    jwt_opts o = opts();
    cr_assert_eq(hs_claims("{\"exp\":1700003600}", &o, NULL), JWT_BAD_CLAIMS);
    cr_assert_eq(hs_claims("{\"sub\":\"\",\"exp\":1700003600}", &o, NULL), JWT_BAD_CLAIMS);
    cr_assert_eq(hs_claims("{\"sub\":42,\"exp\":1700003600}", &o, NULL), JWT_BAD_CLAIMS);
}

/* The roles of an HS256 token with payload, from the claim at path, as compact JSON; NULL if refused. */
static char *roles_of(const char *payload, const char *path, jwt_err *rc)
{
    jwt_opts o = opts();
    o.roles_claim = path;
    auth_principal *p = NULL;
    *rc = hs_claims(payload, &o, &p);
    char *s = p ? json_dumps(auth_principal_roles(p), JSON_COMPACT) : NULL;
    auth_principal_release(p);
    return s;
}

Test(jwt, roles_from_an_array_a_space_string_or_a_dotted_path)
{
    jwt_err rc;
    char *s = roles_of(CLAIMS, NULL, &rc);
    cr_assert_str_eq(s, "[\"orders:read\",\"admin\"]");
    free(s);
    s = roles_of("{\"sub\":\"a\",\"exp\":1700003600,\"scope\":\" read  write admin \"}", "scope", &rc);
    cr_assert_str_eq(s, "[\"read\",\"write\",\"admin\"]");
    free(s);
    s = roles_of("{\"sub\":\"a\",\"exp\":1700003600,\"realm_access\":{\"roles\":[\"x\"]}}", "realm_access.roles", &rc);
    cr_assert_str_eq(s, "[\"x\"]");
    free(s);
    s = roles_of("{\"sub\":\"a\",\"exp\":1700003600}", NULL, &rc);
    cr_assert_str_eq(s, "[]", "absent");
    free(s);
    s = roles_of("{\"sub\":\"a\",\"exp\":1700003600,\"realm_access\":{}}", "realm_access.roles", &rc);
    cr_assert_str_eq(s, "[]", "absent at the end of the path");
    free(s);
}

Test(jwt, roles_of_the_wrong_type_are_refused)
{
    const char *payloads[] = {"{\"sub\":\"a\",\"exp\":1700003600,\"roles\":[\"x\",1]}",
                              "{\"sub\":\"a\",\"exp\":1700003600,\"roles\":7}",
                              "{\"sub\":\"a\",\"exp\":1700003600,\"roles\":{\"admin\":true}}",
                              "{\"sub\":\"a\",\"exp\":1700003600,\"roles\":null}"};
    for (size_t i = 0; i < 4; i++) {
        jwt_err rc;
        char *s = roles_of(payloads[i], NULL, &rc);
        cr_assert_null(s);
        cr_assert_eq(rc, JWT_BAD_CLAIMS, "%s", payloads[i]);
    }
}

Test(jwt, why_is_a_fixed_phrase)
{
    jwt_keyset *ks = hs_set();
    const jwt_keyset *sets[] = {ks};
    jwt_opts o = opts();
    char why[128];
    auth_principal *p = (auth_principal *)1;
    const char *t = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.";
    cr_assert_eq(jwt_verify(t, strlen(t), sets, 1, &o, &p, NULL, why, sizeof why), JWT_BAD_ALG);
    cr_assert_null(p);
    cr_assert_str_eq(why, "the token's algorithm is not accepted");
    o.now_s = 1800000000.0;
    char *good = token(HS_HEADER, CLAIMS, &HS);
    cr_assert_eq(jwt_verify(good, strlen(good), sets, 1, &o, &p, NULL, why, sizeof why), JWT_EXPIRED);
    cr_assert_str_eq(why, "the token has expired");
    cr_assert_eq(jwt_verify(good, strlen(good), NULL, 0, &o, &p, NULL, why, sizeof why), JWT_BAD_ALG, "no sets");
    free(good);
    jwt_keyset_release(ks);
}
