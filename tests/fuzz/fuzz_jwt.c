/* fuzz_jwt: token verification (src/middleware/jwt.c, b64url.c) and JWKS loading (jwk.c) on hostile
 * bytes.
 *
 * The first input byte picks the mode (its value % 3) and, in its upper bits, the checks configured
 * (an issuer, audiences, a dotted roles claim) and how mode 2 signs:
 *   0  the rest is a compact token, verified against two sets made once: an HS256 secret with a
 *      kid-less EC key, and a JWKS of an EC key "ec1" and an RSA key "rsa1";
 *   1  the rest is a JWKS document, loaded into a new set;
 *   2  the rest is "header\npayload" (JSON text, or anything), which the target encodes and signs
 *      itself (HS256 with the set's secret, or ES256 with "ec1"), so the claims code, which only a
 *      valid signature reaches, is fuzzed too.
 * Keys are generated at start: a crash in mode 0 or 1 does not depend on them, and mode 2 signs with
 * whatever they are. Every refusal must come with a fixed phrase fit for a quoted-string, and every
 * success with a principal "jwt:<sub>". */
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kailash/auth.h"
#include "kailash/log.h"

#define FZ_SECRET "fuzz-secret-of-at-least-32-bytes!"

static jwt_keyset *fz_local, *fz_jwks;
static EVP_PKEY *fz_ec;

static void fz_b64url(const unsigned char *p, size_t n, char *out)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for (size_t i = 0; i < n; i += 3) {
        unsigned long v =
            (unsigned long)p[i] << 16 | (i + 1 < n ? (unsigned long)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
        size_t chars = i + 2 < n ? 4 : i + 1 < n ? 3 : 2;
        for (size_t c = 0; c < chars; c++)
            *out++ = abc[(v >> (18 - 6 * c)) & 63];
    }
    *out = '\0';
}

static void fz_die(const char *what)
{
    fprintf(stderr, "fuzz_jwt: %s\n", what);
    abort(); /* the target would test nothing */
}

/* A JWKS member: the big-endian bytes of a key parameter, base64url. */
static void fz_member(EVP_PKEY *k, const char *param, int octets, char *out)
{
    unsigned char buf[512];
    size_t n = 0;
    BIGNUM *bn = NULL;
    if (octets) {
        if (EVP_PKEY_get_octet_string_param(k, param, buf, sizeof buf, &n) != 1 || n != 65)
            fz_die("no EC point");
        fz_b64url(buf + 1, 32, out);
        fz_b64url(buf + 33, 32, out + 44);
        return;
    }
    if (EVP_PKEY_get_bn_param(k, param, &bn) != 1)
        fz_die("no RSA parameter");
    n = (size_t)BN_bn2bin(bn, buf);
    BN_free(bn);
    fz_b64url(buf, n, out);
}

static void fz_init(void)
{
    char err[256], xy[96], n[400], e[16], doc[1024];
    BIO *bio = BIO_new(BIO_s_mem());
    EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    char *pem = NULL;
    log_set_level(LOG_ERROR); /* skipped JWKS keys are logged at warn */
    fz_ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (!bio || !rsa || !fz_ec || PEM_write_bio_PUBKEY(bio, fz_ec) != 1)
        fz_die("no keys");
    long pemlen = BIO_get_mem_data(bio, &pem);
    fz_member(fz_ec, OSSL_PKEY_PARAM_PUB_KEY, 1, xy);
    fz_member(rsa, OSSL_PKEY_PARAM_RSA_N, 0, n);
    fz_member(rsa, OSSL_PKEY_PARAM_RSA_E, 0, e);
    snprintf(doc, sizeof doc,
             "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"ec1\",\"x\":\"%.43s\",\"y\":\"%s\"},"
             "{\"kty\":\"RSA\",\"kid\":\"rsa1\",\"use\":\"sig\",\"n\":\"%s\",\"e\":\"%s\"}]}",
             xy, xy + 44, n, e);
    fz_local = jwt_keyset_new();
    fz_jwks = jwt_keyset_new();
    if (!fz_local || !fz_jwks || jwt_keyset_add_hs256(fz_local, FZ_SECRET, strlen(FZ_SECRET), err, sizeof err) ||
        jwt_keyset_add_pem(fz_local, pem, (size_t)pemlen, "fuzz.pem", err, sizeof err) ||
        jwt_keyset_add_jwks(fz_jwks, doc, strlen(doc), "fuzz.jwks", err, sizeof err))
        fz_die(err);
    BIO_free(bio);
    EVP_PKEY_free(rsa);
}

/* Verifies and checks what jwt_verify promises about its answer. */
static void fz_verify(const char *tok, size_t len, unsigned flags)
{
    static const char *const auds[] = {"orders", "billing"};
    const jwt_keyset *sets[] = {fz_local, NULL, fz_jwks};
    jwt_opts o = {.issuer = flags & 1 ? "https://idp.example" : NULL,
                  .audience = auds,
                  .naudience = flags & 2 ? 2 : 0,
                  .roles_claim = flags & 4 ? "realm_access.roles" : NULL,
                  .leeway_s = 60,
                  .now_s = 1700000000.0};
    auth_principal *p = NULL;
    double exp = 0;
    char why[96];
    jwt_err rc = jwt_verify(tok, len, sets, 3, &o, &p, &exp, why, sizeof why);
    if ((rc == JWT_OK) != (p != NULL) || (rc != JWT_OK && (!why[0] || strpbrk(why, "\"\\"))))
        abort();
    if (p && (strncmp(auth_principal_id(p), "jwt:", 4) != 0 || !json_is_array(auth_principal_roles(p)) ||
              !(exp > o.now_s - 60)))
        abort();
    auth_principal_release(p);
}

/* Mode 2: header and payload encoded and signed here. */
static void fz_sign_and_verify(const char *in, size_t n, unsigned flags)
{
    const char *nl = memchr(in, '\n', n);
    const char *hdr = nl ? in : (flags & 8 ? "{\"alg\":\"ES256\",\"kid\":\"ec1\"}" : "{\"alg\":\"HS256\"}");
    size_t hlen = nl ? (size_t)(nl - in) : strlen(hdr), plen = nl ? n - hlen - 1 : n;
    const char *pay = nl ? nl + 1 : in;
    char *tok = malloc((hlen + plen) / 3 * 4 + 8 + 128);
    unsigned char sig[128], raw[64];
    size_t siglen = sizeof sig;
    fz_b64url((const unsigned char *)hdr, hlen, tok);
    size_t at = strlen(tok);
    tok[at++] = '.';
    fz_b64url((const unsigned char *)pay, plen, tok + at);
    at += strlen(tok + at);
    if (flags & 8) {
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        const unsigned char *p = sig;
        if (!md || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, fz_ec) != 1 ||
            EVP_DigestSign(md, sig, &siglen, (unsigned char *)tok, at) != 1)
            abort();
        EVP_MD_CTX_free(md);
        ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)siglen);
        if (!es || BN_bn2binpad(ECDSA_SIG_get0_r(es), raw, 32) != 32 ||
            BN_bn2binpad(ECDSA_SIG_get0_s(es), raw + 32, 32) != 32)
            abort();
        ECDSA_SIG_free(es);
        memcpy(sig, raw, 64);
        siglen = 64;
    } else {
        unsigned int m = 0;
        HMAC(EVP_sha256(), FZ_SECRET, (int)strlen(FZ_SECRET), (unsigned char *)tok, at, sig, &m);
        siglen = m;
    }
    tok[at++] = '.';
    fz_b64url(sig, siglen, tok + at);
    fz_verify(tok, strlen(tok), flags);
    free(tok);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!fz_local)
        fz_init();
    if (size < 1)
        return 0;
    unsigned mode = data[0] % 3, flags = data[0] >> 2;
    size_t n = size - 1;
    char *copy = malloc(n ? n : 1); /* exactly n bytes so overreads are caught */
    if (!copy)
        return 0;
    memcpy(copy, data + 1, n);
    if (mode == 0) {
        fz_verify(copy, n, flags);
    } else if (mode == 1) {
        char err[256];
        jwt_keyset *ks = jwt_keyset_new();
        int rc = jwt_keyset_add_jwks(ks, copy, n, "fuzz", err, sizeof err);
        if ((rc == 0) != (jwt_keyset_count(ks) > 0))
            abort();
        jwt_keyset_release(ks);
    } else {
        fz_sign_and_verify(copy, n, flags);
    }
    free(copy);
    return 0;
}
