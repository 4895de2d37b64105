/* jwt_internal: what jwk.c, jwt.c and b64url.c share and nobody else needs: the base64url decoder
 * (token segments and JWK members alike) and read access to a key set's keys, so that jwt.c can
 * choose a key while the set's layout stays private to jwk.c. */
#ifndef KAILASH_JWT_INTERNAL_H
#define KAILASH_JWT_INTERNAL_H

#include <stddef.h>

#include "kailash/auth.h"

/* Bytes that decoding n base64url characters yields at most: out must hold this many. */
#define B64URL_DECODED_MAX(n) ((n) / 4 * 3 + 2)

/* Decodes n characters of unpadded base64url (RFC 7515 section 2) into out, *outlen bytes. Refuses
 * '=', characters outside [A-Za-z0-9_-], n % 4 == 1 and non-zero trailing bits (so a value has one
 * spelling). 0, or -1. */
int b64url_decode(const char *in, size_t n, unsigned char *out, size_t *outlen);

/* The HS256 secret (borrowed) and its length, or NULL. */
const unsigned char *jwk_hs256_secret(const jwt_keyset *ks, size_t *len);
/* The i-th asymmetric key (i < jwt_keyset_count), borrowed: its algorithm and its kid (NULL: none).
 * The EVP_PKEY is only read (verifying from several threads at once is safe). */
EVP_PKEY *jwk_key_at(const jwt_keyset *ks, size_t i, jwt_alg *alg, const char **kid);

#endif
