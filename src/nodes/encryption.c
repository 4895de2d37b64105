/* EncryptionNode: AES-256-GCM encryption of a JSON value into a versioned envelope, and back.
 *
 * Config: `operation` ("encrypt" or "decrypt"), `key_env` (the NAME of an environment variable that
 * holds the key: 64 hex characters, or standard base64 of exactly 32 bytes) and `data` (encrypt: any
 * JSON value; decrypt: the envelope string). The one output port is `result`: the envelope for
 * encrypt, the value that was encrypted for decrypt.
 *
 * The envelope is the string "kenc1:" + standard padded base64 of nonce (12 random bytes from
 * RAND_bytes) || ciphertext || tag (16 bytes), with "kenc1:" as the GCM additional data, so an
 * envelope can't be relabelled as another version. The plaintext is the value's compact JSON (key
 * order kept); decrypt parses it back, so a round trip gives an equal value.
 *
 * The key is read once, at load (compile), and kept in the compiled node, wiped when it is freed; it
 * never appears in an error, an output or a log line (load errors name the variable, not its value).
 * `operation` and `key_env` are literal and pinned: a template, a connection or a request can't turn
 * an encrypting node into a decryption oracle or point it at another variable. `data` arrives as
 * other nodes' inputs do (config, template, connection, request). Plaintext buffers are wiped
 * before they are freed; jansson's own copies of a decrypted value are not (they are the output).
 *
 * Every decrypt failure is a 500 `internal` node error with a fixed message: the envelope may come
 * from a connection as well as a request, and the message says which check failed, never more. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "kailash/node.h"
#include "kailash/util.h"

#define ENC_PREFIX "kenc1:"
#define ENC_PREFIX_LEN (sizeof ENC_PREFIX - 1)
#define ENC_KEY_LEN 32
#define ENC_NONCE_LEN 12
#define ENC_TAG_LEN 16
#define ENC_KEY_EXPECTED "64 hex characters, or base64 of exactly 32 bytes"

static const char *const enc_keys[] = {"operation", "data", "key_env", NULL};
static const char *const enc_ports[] = {"data", NULL};
static const char *const enc_pinned[] = {"operation", "key_env", NULL};

typedef struct enc_node {
    int decrypt;
    unsigned char key[ENC_KEY_LEN];
} enc_node;

static const char enc_b64_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* The 6-bit value of base64 character c, or -1. */
static int enc_b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* Decodes n characters of strict standard base64 (padded, no whitespace, unused bits zero) into
 * out, which holds at least n / 4 * 3 bytes; *outlen is the byte count. 0 or -1. */
static int enc_b64_decode(const char *in, size_t n, unsigned char *out, size_t *outlen)
{
    size_t o = 0;
    if (n % 4 != 0)
        return -1;
    for (size_t i = 0; i < n; i += 4) {
        int v[4], pad = 0;
        for (int k = 0; k < 4; k++) {
            if (in[i + k] == '=' && i + 4 == n && k >= 2) {
                v[k] = 0;
                pad++;
                continue;
            }
            if (pad || (v[k] = enc_b64_value((unsigned char)in[i + k])) < 0)
                return -1; /* a bad character, or a character after padding */
        }
        unsigned long w =
            (unsigned long)v[0] << 18 | (unsigned long)v[1] << 12 | (unsigned long)v[2] << 6 | (unsigned long)v[3];
        if ((pad == 1 && (w & 0xFF)) || (pad == 2 && (w & 0xFFFF)))
            return -1; /* non-canonical: bits that decode to nothing are set */
        out[o++] = (unsigned char)(w >> 16);
        if (pad < 2)
            out[o++] = (unsigned char)(w >> 8);
        if (pad < 1)
            out[o++] = (unsigned char)w;
    }
    *outlen = o;
    return 0;
}

/* Standard padded base64 of n bytes, appended to out. 0 or -1. */
static int enc_b64_encode(const unsigned char *in, size_t n, buf *out)
{
    if (buf_reserve(out, (n + 2) / 3 * 4 + 1) != 0)
        return -1;
    for (size_t i = 0; i < n; i += 3) {
        unsigned long w =
            (unsigned long)in[i] << 16 | (i + 1 < n ? (unsigned long)in[i + 1] << 8 : 0) | (i + 2 < n ? in[i + 2] : 0);
        char q[4] = {enc_b64_chars[w >> 18 & 63], enc_b64_chars[w >> 12 & 63],
                     i + 1 < n ? enc_b64_chars[w >> 6 & 63] : '=', i + 2 < n ? enc_b64_chars[w & 63] : '='};
        if (buf_append(out, q, 4) != 0)
            return -1;
    }
    return buf_terminate(out);
}

static int enc_hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Reads the key text s (64 hex characters, or base64 of 32 bytes) into key. 0 or -1; nothing of s
 * is reported, and scratch copies are wiped. */
static int enc_key_parse(const char *s, unsigned char key[ENC_KEY_LEN])
{
    size_t n = strlen(s);
    if (n == 2 * ENC_KEY_LEN) {
        int ok = 1;
        for (size_t i = 0; i < ENC_KEY_LEN; i++) {
            int hi = enc_hex_value((unsigned char)s[2 * i]), lo = enc_hex_value((unsigned char)s[2 * i + 1]);
            ok &= hi >= 0 && lo >= 0;
            key[i] = (unsigned char)((hi & 15) << 4 | (lo & 15));
        }
        if (ok)
            return 0;
        OPENSSL_cleanse(key, ENC_KEY_LEN); /* 64 characters that aren't hex: try base64 (that is 48 bytes) */
    }
    unsigned char tmp[48]; /* 44 characters of base64 decode to at most 33 bytes */
    size_t len = 0;
    int rc = n == 44 && enc_b64_decode(s, n, tmp, &len) == 0 && len == ENC_KEY_LEN ? 0 : -1;
    if (rc == 0)
        memcpy(key, tmp, ENC_KEY_LEN);
    OPENSSL_cleanse(tmp, sizeof tmp);
    return rc;
}

/* 1 when name looks like an environment variable's name (a letter or _, then letters, digits, _). */
static int enc_env_name_ok(const char *name)
{
    if (!name[0] || (name[0] >= '0' && name[0] <= '9'))
        return 0;
    for (const char *p = name; *p; p++)
        if (!(*p == '_' || (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
            return 0;
    return 1;
}

static void enc_free(void *compiled)
{
    if (!compiled)
        return;
    OPENSSL_cleanse(compiled, sizeof(enc_node));
    free(compiled);
}

static int enc_compile(const node_env *env, json_t *config, void **compiled, char *err, size_t errlen)
{
    (void)env;
    *compiled = NULL;
    json_t *op = json_object_get(config, "operation"), *key_env = json_object_get(config, "key_env");
    json_t *data = json_object_get(config, "data");
    const char *o = json_is_string(op) ? json_string_value(op) : "";
    if (strcmp(o, "encrypt") != 0 && strcmp(o, "decrypt") != 0)
        return util_err(err, errlen,
                        "config.operation: expected encrypt or decrypt (a literal string; it is required)");
    int decrypt = o[0] == 'd';
    if (!json_is_string(key_env) || json_string_length(key_env) == 0 || tmpl_value_has_expr(key_env))
        return util_err(err, errlen,
                        "config.key_env: expected the name of the environment variable holding the key (a literal "
                        "string; it is required)");
    const char *name = json_string_value(key_env);
    if (json_string_length(key_env) != strlen(name) || json_string_length(key_env) > 128 || !enc_env_name_ok(name))
        return util_err(err, errlen,
                        "config.key_env: '%.128s' is not an environment variable name (letters, digits, _)", name);
    if (decrypt && data && !json_is_null(data) && !json_is_string(data) && !tmpl_value_has_expr(data))
        return util_err(err, errlen, "config.data: expected a string (a kenc1 envelope) to decrypt");
    const char *text = getenv(name);
    if (!text)
        return util_err(
            err, errlen,
            "config.key_env: environment variable %s is not set (it must hold the key: " ENC_KEY_EXPECTED ")", name);
    enc_node *n = calloc(1, sizeof *n);
    if (!n)
        return util_err(err, errlen, "out of memory");
    n->decrypt = decrypt;
    if (enc_key_parse(text, n->key) != 0) {
        enc_free(n);
        return util_err(
            err, errlen,
            "config.key_env: environment variable %s does not hold a 32-byte key (expected " ENC_KEY_EXPECTED ")",
            name);
    }
    *compiled = n;
    return 0;
}

static int enc_has_output(const void *compiled, const char *port)
{
    (void)compiled;
    return strcmp(port, "result") == 0;
}

/* {"result": v}, consuming v. */
static int enc_output(json_t *v, json_t **outputs, node_error *err)
{
    json_t *out = v ? json_object() : NULL;
    if (!out || json_object_set_new(out, "result", v) != 0) { /* set_new consumes v, even on failure */
        if (!out)
            json_decref(v);
        json_decref(out);
        return node_fail(err, "internal", "out of memory");
    }
    *outputs = out;
    return 0;
}

/* Encrypts plain (n bytes) into the envelope text, appended to env. 0 or -1 with err. */
static int enc_seal(const enc_node *k, const unsigned char *plain, size_t n, buf *env, node_error *err)
{
    if (n > INT_MAX - ENC_NONCE_LEN - ENC_TAG_LEN)
        return node_fail(err, "internal", "data: too large to encrypt (over 2 GiB of JSON)");
    size_t raw_len = ENC_NONCE_LEN + n + ENC_TAG_LEN;
    unsigned char *raw = malloc(raw_len); /* nonce || ciphertext || tag */
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int len = 0, fin = 0, rc = -1;
    if (!raw || !ctx) {
        node_fail(err, "internal", "out of memory");
        goto done;
    }
    if (RAND_bytes(raw, ENC_NONCE_LEN) != 1) {
        node_fail(err, "internal", "no random nonce could be drawn (the system's random source failed)");
        goto done;
    }
    if (EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, k->key, raw) != 1 ||
        EVP_EncryptUpdate(ctx, NULL, &len, (const unsigned char *)ENC_PREFIX, (int)ENC_PREFIX_LEN) != 1 ||
        EVP_EncryptUpdate(ctx, raw + ENC_NONCE_LEN, &len, plain, (int)n) != 1 ||
        EVP_EncryptFinal_ex(ctx, raw + ENC_NONCE_LEN + len, &fin) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, ENC_TAG_LEN, raw + ENC_NONCE_LEN + n) != 1) {
        node_fail(err, "internal", "encryption failed (OpenSSL's AES-256-GCM)");
        goto done;
    }
    if (buf_append(env, ENC_PREFIX, ENC_PREFIX_LEN) != 0 || enc_b64_encode(raw, raw_len, env) != 0) {
        node_fail(err, "internal", "out of memory");
        goto done;
    }
    rc = 0;
done:
    EVP_CIPHER_CTX_free(ctx);
    free(raw); /* nonce, ciphertext and tag: nothing secret */
    return rc;
}

static int enc_encrypt(const enc_node *k, json_t *data, json_t **outputs, node_error *err)
{
    char *plain = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY); /* owned, wiped and freed below */
    if (!plain)
        return node_fail(err, "internal", "out of memory");
    size_t n = strlen(plain);
    buf env = {0};
    int rc = enc_seal(k, (const unsigned char *)plain, n, &env, err);
    OPENSSL_cleanse(plain, n);
    free(plain);
    json_t *v = rc == 0 ? json_stringn_nocheck(env.data, env.len) : NULL; /* ASCII */
    buf_free(&env);
    if (rc != 0)
        return -1;
    return enc_output(v, outputs, err);
}

/* Opens the envelope text s (n bytes) into *plain (caller wipes and frees, *plain_len bytes). */
static int enc_open(const enc_node *k, const char *s, size_t n, unsigned char **plain, size_t *plain_len,
                    node_error *err)
{
    *plain = NULL;
    if (n < ENC_PREFIX_LEN || memcmp(s, ENC_PREFIX, ENC_PREFIX_LEN) != 0)
        return node_fail(err, "internal", "data: the envelope is not kenc1 (expected a string starting with 'kenc1:')");
    s += ENC_PREFIX_LEN, n -= ENC_PREFIX_LEN;
    if (n / 4 * 3 > (size_t)INT_MAX)
        return node_fail(err, "internal", "data: the envelope is too large");
    unsigned char *raw = malloc(n / 4 * 3 + 1);
    size_t raw_len = 0;
    if (!raw)
        return node_fail(err, "internal", "out of memory");
    if (enc_b64_decode(s, n, raw, &raw_len) != 0) {
        free(raw);
        return node_fail(err, "internal", "data: the envelope is not valid base64 (standard alphabet, padded)");
    }
    if (raw_len <= ENC_NONCE_LEN + ENC_TAG_LEN) {
        free(raw);
        return node_fail(err, "internal", "data: the envelope is too short (truncated: it holds no ciphertext)");
    }
    size_t ct_len = raw_len - ENC_NONCE_LEN - ENC_TAG_LEN;
    unsigned char *out = malloc(ct_len + 1);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int len = 0, fin = 0, rc = -1;
    if (!out || !ctx) {
        node_fail(err, "internal", "out of memory");
        goto done;
    }
    if (EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, k->key, raw) != 1 ||
        EVP_DecryptUpdate(ctx, NULL, &len, (const unsigned char *)ENC_PREFIX, (int)ENC_PREFIX_LEN) != 1 ||
        EVP_DecryptUpdate(ctx, out, &len, raw + ENC_NONCE_LEN, (int)ct_len) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, ENC_TAG_LEN, raw + ENC_NONCE_LEN + ct_len) != 1) {
        node_fail(err, "internal", "decryption failed (OpenSSL's AES-256-GCM)");
        goto done;
    }
    if (EVP_DecryptFinal_ex(ctx, out + len, &fin) != 1) {
        node_fail(err, "internal", "data: the envelope was tampered with or encrypted with another key");
        goto done;
    }
    *plain = out;
    *plain_len = (size_t)len + (size_t)fin;
    out = NULL;
    rc = 0;
done:
    EVP_CIPHER_CTX_free(ctx);
    if (out) {
        OPENSSL_cleanse(out, ct_len + 1); /* unauthenticated plaintext: never handed on */
        free(out);
    }
    free(raw);
    return rc;
}

static int enc_decrypt(const enc_node *k, json_t *data, json_t **outputs, node_error *err)
{
    if (!json_is_string(data))
        return node_fail(err, "internal", "data: expected a string (a kenc1 envelope), got %s",
                         json_is_object(data)  ? "an object"
                         : json_is_array(data) ? "an array"
                                               : "a scalar");
    unsigned char *plain = NULL;
    size_t n = 0;
    if (enc_open(k, json_string_value(data), json_string_length(data), &plain, &n, err) != 0)
        return -1;
    json_error_t je;
    json_t *v = json_loadb((const char *)plain, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    OPENSSL_cleanse(plain, n);
    free(plain);
    OPENSSL_cleanse(&je, sizeof je); /* its text may quote the plaintext */
    if (!v)
        return node_fail(err, "internal", "data: the decrypted plaintext is not JSON");
    return enc_output(v, outputs, err);
}

static int enc_run(const void *compiled, node_call *call, json_t **outputs, node_error *err)
{
    const enc_node *k = compiled;
    json_t *data = json_object_get(call->inputs, "data"); /* borrowed */
    if (!data || json_is_null(data))
        return node_fail(err, "bad_request", /* what the caller sent (or left out) decides it */
                         "input 'data' is missing (connect it, or give it in inputs or parameters)");
    return k->decrypt ? enc_decrypt(k, data, outputs, err) : enc_encrypt(k, data, outputs, err);
}

const node_type node_encryption = {
    .name = "EncryptionNode",
    .config_keys = enc_keys,
    .sdk_defaults = NULL,
    .input_ports = enc_ports,
    .input_aliases = NULL,
    .pinned_keys = enc_pinned,
    .compile = enc_compile,
    .has_output = enc_has_output,
    .run = enc_run,
    .start = NULL,
    .free = enc_free,
};
