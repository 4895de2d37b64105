/* key: the response cache's key (cache.h). A key is a SHA-256 over the fields that make two runs
 * the same run: the workflow's name, its definition's hash, its purge generation, the scope's part,
 * and the canonical JSON of the inputs and the parameters. Each field goes in behind its length (8
 * bytes, little-endian), so ("ab", "c") and ("a", "bc") are different keys.
 *
 * The canonical JSON is the project's JSON writer (src/util/json_write.c) with keys sorted by their
 * bytes (jansson's JSON_SORT_KEYS order), reals in their shortest round-trip form, and integral
 * reals as integers, so numbers compare by value (1.0 and 1 give "1", -0.0 gives "0"); strings and
 * keys are written by their length (a jansson string may hold a NUL), escaped as jansson's compact
 * dump escapes them. */
#include <openssl/evp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kailash/cache.h"

int cache_canonical_json(json_t *v, buf *out)
{
    if (!v)
        return buf_append(out, "null", 4);
    if (buf_append_json_as(out, v, BUF_JSON_SORT_KEYS | BUF_JSON_REAL_SHORTEST | BUF_JSON_REAL_INTEGRAL) == 0)
        return 0;
    if (out->data) /* the writer took back what it wrote; the text ends where it did */
        out->data[out->len] = '\0';
    return -1;
}

/* ---- hashing ---- */

/* SHA-256 fetched once: OpenSSL 3's EVP_sha256() looks the algorithm up again on every digest. */
static EVP_MD *g_sha256;
static pthread_once_t g_sha256_once = PTHREAD_ONCE_INIT;

static void key_sha256_fetch(void)
{
    g_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static int key_sha256(const void *data, size_t n, unsigned char out[32])
{
    pthread_once(&g_sha256_once, key_sha256_fetch);
    unsigned int len = 0;
    return g_sha256 && EVP_Digest(data, n, out, &len, g_sha256, NULL) == 1 && len == 32 ? 0 : -1;
}

/* Appends the 8-byte little-endian length of a field to come. */
static int key_len_prefix(buf *b, size_t n)
{
    unsigned char le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (unsigned char)((uint64_t)n >> (8 * i));
    return buf_append(b, le, sizeof le);
}

static int key_field(buf *b, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    return key_len_prefix(b, n) != 0 || buf_append(b, s ? s : "", n) != 0 ? -1 : 0;
}

/* A JSON field: its length is only known once written, so the prefix is reserved and filled after. */
static int key_json_field(buf *b, json_t *v)
{
    size_t at = b->len;
    if (key_len_prefix(b, 0) != 0 || cache_canonical_json(v, b) != 0)
        return -1;
    uint64_t n = b->len - at - 8;
    for (int i = 0; i < 8; i++)
        b->data[at + (size_t)i] = (char)(unsigned char)(n >> (8 * i));
    return 0;
}

int cache_key_make(const char *name, const char *def_hash, unsigned long long gen, const char *scope, json_t *inputs,
                   json_t *params, cache_key *out)
{
    char g[24];
    snprintf(g, sizeof g, "%llu", gen);
    buf b = {0};
    int rc = buf_reserve(&b, 512) != 0 || key_field(&b, name) != 0 || key_field(&b, def_hash) != 0 ||
                     key_field(&b, g) != 0 || key_field(&b, scope) != 0 || key_json_field(&b, inputs) != 0 ||
                     key_json_field(&b, params) != 0 || key_sha256(b.data, b.len, out->d) != 0
                 ? -1
                 : 0;
    buf_free(&b);
    return rc;
}

void cache_key_hex(const cache_key *k, char out[65])
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[k->d[i] >> 4];
        out[2 * i + 1] = hex[k->d[i] & 15];
    }
    out[64] = '\0';
}

int cache_def_hash(json_t *normalized, char out[33])
{
    buf b = {0};
    cache_key k;
    int rc = cache_canonical_json(normalized, &b) != 0 || key_sha256(b.data ? b.data : "", b.len, k.d) != 0 ? -1 : 0;
    buf_free(&b);
    if (rc == 0) {
        char hex[65];
        cache_key_hex(&k, hex);
        memcpy(out, hex, 32);
        out[32] = '\0';
    }
    return rc;
}
