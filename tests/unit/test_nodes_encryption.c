/* Tests of EncryptionNode (src/nodes/encryption.c): round trips, the envelope's shape, every way a
 * decrypt is refused, and the key checks at load (which name the variable, never its value). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kailash/node.h"

extern const node_type node_encryption;

static const node_env test_env = {.data_dir = "/tmp", .max_response_bytes = 1 << 20};

#include "node_harness.h"

#define KEY_HEX "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF"
#define KEY_B64 "q83vASNFZ4mrze8BI0VniavN7wEjRWeJq83vASNFZ4k=" /* the bytes ab cd ef 01 23 45 67 89, four times */
#define OTHER_HEX "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"

static void setup_keys(void)
{
    setenv("ENC_TEST_KEY", KEY_HEX, 1);
    setenv("ENC_TEST_KEY_B64", KEY_B64, 1);
    setenv("ENC_TEST_OTHER", OTHER_HEX, 1);
    unsetenv("ENC_TEST_UNSET");
}

TestSuite(encryption, .init = setup_keys);

/* A compiled node of operation op with the key in variable var; fails the test if load refuses. */
static void *enc_load(const char *op, const char *var)
{
    char text[256];
    snprintf(text, sizeof text, "{\"operation\": \"%s\", \"key_env\": \"%s\"}", op, var);
    json_t *cfg = parse(text);
    void *compiled = NULL;
    char err[256] = "";
    cr_assert_eq(node_encryption.compile(&test_env, cfg, &compiled, err, sizeof err), 0, "compile: %s", err);
    json_decref(cfg);
    return compiled;
}

/* Runs compiled on {"data": data} (data borrowed). */
static call_result enc_call(const void *compiled, json_t *data)
{
    json_t *cfg = json_object();
    json_object_set(cfg, "data", data);
    call_result r = run_compiled(&node_encryption, compiled, cfg, NULL);
    json_decref(cfg);
    return r;
}

/* The envelope of value (borrowed) encrypted by compiled: a new string. */
static char *enc_seal(const void *compiled, json_t *value)
{
    call_result r = enc_call(compiled, value);
    cr_assert_eq(r.rc, 0, "encrypt: %s", r.err.message);
    json_t *env = json_object_get(r.out, "result");
    cr_assert(json_is_string(env));
    cr_assert_eq(json_object_size(r.out), 1, "only result comes out");
    char *s = strdup(json_string_value(env));
    json_decref(r.out);
    return s;
}

/* Decrypts envelope with compiled and asserts it fails with code and a message containing want. */
static void enc_expect_refused(const void *compiled, const char *envelope, const char *code, const char *want)
{
    json_t *s = json_string(envelope);
    call_result r = enc_call(compiled, s);
    json_decref(s);
    cr_assert_eq(r.rc, -1, "decrypt of '%.80s' should fail", envelope);
    cr_assert_str_eq(r.err.code, code);
    cr_assert(strstr(r.err.message, want), "message '%s' should contain '%s'", r.err.message, want);
    cr_assert_null(strstr(r.err.message, KEY_HEX));
}

static void enc_round_trip(const char *text)
{
    void *e = enc_load("encrypt", "ENC_TEST_KEY"), *d = enc_load("decrypt", "ENC_TEST_KEY");
    json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    cr_assert_not_null(v, "bad test JSON %s", text);
    char *env = enc_seal(e, v);
    cr_assert_eq(strncmp(env, "kenc1:", 6), 0, "envelope %.40s", env);
    json_t *s = json_string(env);
    call_result r = enc_call(d, s);
    cr_assert_eq(r.rc, 0, "decrypt of %s: %s", text, r.err.message);
    cr_assert(json_equal(json_object_get(r.out, "result"), v), "round trip of %.200s", text);
    json_decref(r.out);
    json_decref(s);
    json_decref(v);
    free(env);
    node_encryption.free(e);
    node_encryption.free(d);
}

Test(encryption, round_trips_json_values)
{
    const char *values[] = {
        "0",
        "-12.5",
        "true",
        "false",
        "\"\"",
        "\"hello\"",
        "[]",
        "{}",
        "[1, \"two\", null, {\"x\": [3.25e-7]}]",
        "{\"b\": 1, \"a\": {\"nested\": [true, false, null]}}",
        "\"h\\u00e9llo \\u4e16\\u754c \\ud83d\\ude00\"",
        "{\"\\u00fcnic\\u00f6de\": \"\\u0000nul inside\"}",
        "9007199254740993",
        "1.0000000000000002",
    };
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++)
        enc_round_trip(values[i]);
}

Test(encryption, round_trips_a_big_value)
{
    json_t *big = json_array();
    for (int i = 0; i < 20000; i++)
        json_array_append_new(big, json_pack("{s:i, s:s}", "i", i, "s", "some text \xc3\xa9\xe2\x82\xac"));
    char *text = json_dumps(big, JSON_COMPACT);
    cr_assert_gt(strlen(text), 500000);
    enc_round_trip(text);
    free(text);
    json_decref(big);
}

Test(encryption, the_two_key_forms_are_the_same_key_and_base64_keys_work)
{
    setenv("ENC_TEST_KEY_HEX2", "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789", 1);
    void *e = enc_load("encrypt", "ENC_TEST_KEY_HEX2"), *d = enc_load("decrypt", "ENC_TEST_KEY_B64");
    json_t *v = parse("{\"k\": [1, 2]}");
    char *env = enc_seal(e, v);
    json_t *s = json_string(env);
    call_result r = enc_call(d, s);
    cr_assert_eq(r.rc, 0, "%s", r.err.message);
    cr_assert(json_equal(json_object_get(r.out, "result"), v));
    json_decref(r.out);
    json_decref(s);
    json_decref(v);
    free(env);
    node_encryption.free(e);
    node_encryption.free(d);
}

Test(encryption, two_encryptions_of_one_value_differ)
{
    void *e = enc_load("encrypt", "ENC_TEST_KEY");
    json_t *v = parse("{\"same\": \"value\"}");
    char *a = enc_seal(e, v), *b = enc_seal(e, v);
    cr_assert_str_neq(a, b, "a random nonce makes each envelope new");
    cr_assert_neq(memcmp(a + 6, b + 6, 16), 0, "the nonces differ");
    /* 12 + 16 ("{"same":"value"}") + 16 bytes = 44 bytes: 60 base64 characters */
    cr_assert_eq(strlen(a), 6 + 60, "%s", a);
    free(a);
    free(b);
    json_decref(v);
    node_encryption.free(e);
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Decodes the envelope's base64 (valid, as enc_seal made it) into raw; returns the byte count. */
static size_t unb64(const char *s, unsigned char *raw)
{
    size_t n = strlen(s), o = 0;
    for (size_t i = 0; i < n; i += 4) {
        unsigned long w = 0;
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            const char *p = s[i + k] == '=' ? NULL : strchr(b64, s[i + k]);
            pad += p == NULL;
            w = w << 6 | (unsigned long)(p ? p - b64 : 0);
        }
        raw[o++] = (unsigned char)(w >> 16);
        if (pad < 2)
            raw[o++] = (unsigned char)(w >> 8);
        if (pad < 1)
            raw[o++] = (unsigned char)w;
    }
    return o;
}

/* "kenc1:" + base64 of raw (n bytes), into out. */
static void reb64(const unsigned char *raw, size_t n, char *out)
{
    char *p = out + sprintf(out, "kenc1:");
    for (size_t i = 0; i < n; i += 3) {
        unsigned long w = (unsigned long)raw[i] << 16 | (i + 1 < n ? (unsigned long)raw[i + 1] << 8 : 0) |
                          (i + 2 < n ? raw[i + 2] : 0);
        *p++ = b64[w >> 18 & 63];
        *p++ = b64[w >> 12 & 63];
        *p++ = i + 1 < n ? b64[w >> 6 & 63] : '=';
        *p++ = i + 2 < n ? b64[w & 63] : '=';
    }
    *p = '\0';
}

Test(encryption, a_flipped_bit_anywhere_is_tampering)
{
    void *e = enc_load("encrypt", "ENC_TEST_KEY"), *d = enc_load("decrypt", "ENC_TEST_KEY");
    json_t *v = parse("{\"amount\": 100, \"to\": \"ada\"}");
    char *env = enc_seal(e, v);
    unsigned char raw[256];
    char forged[512];
    size_t n = unb64(env + 6, raw);
    cr_assert_eq(n, 12 + strlen("{\"amount\":100,\"to\":\"ada\"}") + 16);
    reb64(raw, n, forged);
    cr_assert_str_eq(forged, env, "the test's base64 matches the node's");
    /* one bit of the nonce, of the first and last ciphertext byte, of the tag's first and last byte */
    size_t at[] = {0, 11, 12, n - 17, n - 16, n - 1};
    for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) {
        raw[at[i]] ^= 0x04;
        reb64(raw, n, forged);
        enc_expect_refused(d, forged, "internal", "tampered with or encrypted with another key");
        raw[at[i]] ^= 0x04;
    }
    /* a tag cut short by one byte, and one more byte appended */
    reb64(raw, n - 1, forged);
    enc_expect_refused(d, forged, "internal", "tampered with or encrypted with another key");
    raw[n] = 0;
    reb64(raw, n + 1, forged);
    enc_expect_refused(d, forged, "internal", "tampered with or encrypted with another key");
    free(env);
    json_decref(v);
    node_encryption.free(e);
    node_encryption.free(d);
}

Test(encryption, malformed_envelopes_are_refused_each_with_its_error)
{
    void *e = enc_load("encrypt", "ENC_TEST_KEY"), *d = enc_load("decrypt", "ENC_TEST_KEY");
    json_t *v = parse("[1, 2, 3]");
    char *env = enc_seal(e, v);
    char bad[512];
    /* wrong prefix or version */
    enc_expect_refused(d, env + 6, "internal", "the envelope is not kenc1");
    snprintf(bad, sizeof bad, "kenc2:%s", env + 6);
    enc_expect_refused(d, bad, "internal", "the envelope is not kenc1");
    snprintf(bad, sizeof bad, "KENC1:%s", env + 6);
    enc_expect_refused(d, bad, "internal", "the envelope is not kenc1");
    enc_expect_refused(d, "", "internal", "the envelope is not kenc1");
    /* bad base64: a character outside the alphabet, whitespace, a length not a multiple of 4, url-safe */
    snprintf(bad, sizeof bad, "%s", env);
    bad[10] = '*';
    enc_expect_refused(d, bad, "internal", "not valid base64");
    snprintf(bad, sizeof bad, "%s\n", env);
    enc_expect_refused(d, bad, "internal", "not valid base64");
    snprintf(bad, sizeof bad, "%.*s", (int)strlen(env) - 1, env);
    enc_expect_refused(d, bad, "internal", "not valid base64");
    enc_expect_refused(d, "kenc1:ab-_", "internal", "not valid base64");
    enc_expect_refused(d, "kenc1:a=bc", "internal", "not valid base64");
    /* truncated: too short to hold a nonce, a tag and any ciphertext */
    enc_expect_refused(d, "kenc1:", "internal", "too short");
    snprintf(bad, sizeof bad, "%.*s", 6 + 36, env); /* 27 bytes */
    enc_expect_refused(d, bad, "internal", "too short");
    /* truncated at a base64 boundary, longer than the minimum: the tag no longer matches */
    snprintf(bad, sizeof bad, "%.*s", (int)strlen(env) - 4, env);
    enc_expect_refused(d, bad, "internal", "tampered with or encrypted with another key");
    /* not a string */
    json_t *num = json_integer(5);
    call_result r = enc_call(d, num);
    cr_assert_eq(r.rc, -1);
    cr_assert(strstr(r.err.message, "expected a string"), "%s", r.err.message);
    json_decref(num);
    free(env);
    json_decref(v);
    node_encryption.free(e);
    node_encryption.free(d);
}

Test(encryption, another_key_is_refused)
{
    void *e = enc_load("encrypt", "ENC_TEST_KEY"), *d = enc_load("decrypt", "ENC_TEST_OTHER");
    json_t *v = parse("\"secret\"");
    char *env = enc_seal(e, v);
    enc_expect_refused(d, env, "internal", "tampered with or encrypted with another key");
    free(env);
    json_decref(v);
    node_encryption.free(e);
    node_encryption.free(d);
}

Test(encryption, missing_data_is_a_bad_request)
{
    void *e = enc_load("encrypt", "ENC_TEST_KEY");
    json_t *none = json_object(), *null_data = parse("{\"data\": null}");
    call_result r = run_compiled(&node_encryption, e, none, NULL);
    cr_assert_eq(r.rc, -1);
    cr_assert_str_eq(r.err.code, "bad_request");
    r = run_compiled(&node_encryption, e, null_data, NULL);
    json_decref(none);
    json_decref(null_data);
    cr_assert_eq(r.rc, -1);
    cr_assert_str_eq(r.err.code, "bad_request");
    cr_assert(strstr(r.err.message, "input 'data' is missing"), "%s", r.err.message);
    node_encryption.free(e);
}

/* compile of config must fail with a message containing want and none of the refused texts. */
static void enc_load_refused(const char *config, const char *want, const char *secret)
{
    char err[256];
    cr_assert_eq(compile_only(&node_encryption, config, err, sizeof err), -1, "%s should be refused", config);
    cr_assert(strstr(err, want), "'%s' should contain '%s'", err, want);
    if (secret)
        cr_assert_null(strstr(err, secret), "'%s' shows the key", err);
}

Test(encryption, bad_config_is_refused_at_load)
{
    enc_load_refused("{\"key_env\": \"ENC_TEST_KEY\"}", "config.operation: expected encrypt or decrypt", NULL);
    enc_load_refused("{\"operation\": \"Encrypt\", \"key_env\": \"ENC_TEST_KEY\"}", "config.operation", NULL);
    enc_load_refused("{\"operation\": \"{{ inputs.op }}\", \"key_env\": \"ENC_TEST_KEY\"}", "config.operation", NULL);
    enc_load_refused("{\"operation\": \"encrypt\"}", "config.key_env: expected the name", NULL);
    enc_load_refused("{\"operation\": \"encrypt\", \"key_env\": 5}", "config.key_env: expected the name", NULL);
    enc_load_refused("{\"operation\": \"encrypt\", \"key_env\": \"{{ inputs.k }}\"}", "config.key_env", NULL);
    enc_load_refused("{\"operation\": \"encrypt\", \"key_env\": \"A=B\"}", "is not an environment variable name", NULL);
    enc_load_refused("{\"operation\": \"decrypt\", \"key_env\": \"ENC_TEST_KEY\", \"data\": [1]}",
                     "config.data: expected a string", NULL);
}

Test(encryption, a_missing_or_bad_key_is_refused_at_load_naming_the_variable_only)
{
    enc_load_refused("{\"operation\": \"encrypt\", \"key_env\": \"ENC_TEST_UNSET\"}",
                     "environment variable ENC_TEST_UNSET is not set", NULL);
    struct {
        const char *value, *what;
    } bad[] = {
        {"00112233445566778899aabbccddeeff00112233445566778899aabbccddee", "62 hex characters"},
        {"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff00", "66 hex characters"},
        {"zz112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", "64 characters, not hex"},
        {"q83vASNFZ4mrze8BI0VniavN7wEjRWeJq83vASNFZw==", "base64 of 31 bytes"},
        {"q83vASNFZ4mrze8BI0VniavN7wEjRWeJq83vASNFZ4mr", "base64 of 33 bytes"},
        {"q83vASNFZ4mrze8BI0VniavN7wEjRWeJq83vASNFZ4k", "base64 unpadded"},
        {"q83vASNFZ4mrze8BI0VniavN7wEjRWeJq83vASNFZ4k=\n", "a trailing newline"},
        {"hunter2-not-a-key", "a password"},
        {"", "empty"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        setenv("ENC_TEST_BAD", bad[i].value, 1);
        char err[256];
        cr_assert_eq(compile_only(&node_encryption, "{\"operation\": \"decrypt\", \"key_env\": \"ENC_TEST_BAD\"}", err,
                                  sizeof err),
                     -1, "%s should be refused", bad[i].what);
        cr_assert(strstr(err, "environment variable ENC_TEST_BAD does not hold a 32-byte key"), "%s: %s", bad[i].what,
                  err);
        if (bad[i].value[0])
            cr_assert_null(strstr(err, bad[i].value), "%s: the message shows the value: %s", bad[i].what, err);
        cr_assert_null(strstr(err, "q83v"), "%s: %s", bad[i].what, err);
        cr_assert_null(strstr(err, "hunter2"), "%s: %s", bad[i].what, err);
        cr_assert_null(strstr(err, "0011223344"), "%s: %s", bad[i].what, err);
    }
}

Test(encryption, ports)
{
    void *e = enc_load("encrypt", "ENC_TEST_KEY");
    cr_assert(node_encryption.has_output(e, "result"));
    cr_assert_not(node_encryption.has_output(e, "data"));
    node_encryption.free(e);
    cr_assert_not_null(node_registry_find("EncryptionNode"));
}
