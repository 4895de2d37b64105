/* auth: the compiled auth config (API keys by digest, fail closed, secrets from the environment),
 * authenticating credentials (keys, bearer tokens, schemes), the per-thread memory of verified
 * tokens, and a workflow's access roles and conditions. JWT verification itself is test_jwt.c's. */
#include <criterion/criterion.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jwk_make.h"
#include "kailash/auth.h"
#include "kailash/config.h"
#include "kailash/util.h"
#include "kailash/workflow.h"

#define SECRET "unit-test-hs256-secret-0123456789-abcdef"

static kconfig *cfg_with(const char *keys_json)
{
    kconfig *c;
    char err[256];
    cr_assert_eq(config_load(NULL, &c, err, sizeof err), 0, "%s", err);
    c->enable_auth = 1;
    json_decref(c->auth_api_keys);
    c->auth_api_keys = json_loads(keys_json, 0, NULL);
    cr_assert_not_null(c->auth_api_keys, "bad test JSON: %s", keys_json);
    return c;
}

static char *digest_of(const char *key)
{
    static char hex[65];
    auth_key_digest_hex(key, strlen(key), hex);
    return hex;
}

static auth_ctx *ctx_ok(kconfig *c)
{
    auth_ctx *a = NULL;
    char err[512];
    cr_assert_eq(auth_ctx_load(c, &a, err, sizeof err), 0, "%s", err);
    return a;
}

static void ctx_refused(kconfig *c, const char *needle)
{
    auth_ctx *a = NULL;
    char err[512] = "";
    cr_assert_eq(auth_ctx_load(c, &a, err, sizeof err), -1, "accepted; expected '%s'", needle);
    cr_assert_not_null(strstr(err, needle), "'%s' not in '%s'", needle, err);
    config_free(c);
}

static kconfig *cfg_one_key(const char *id, const char *key)
{
    char json[400];
    snprintf(json, sizeof json,
             "[{\"id\": \"%s\", \"sha256\": \"%s\", \"roles\": [\"r1\"], \"attributes\": {\"tenant\": \"acme\"}}]", id,
             digest_of(key));
    return cfg_with(json);
}

Test(auth, hash_key_digest_is_sha256_hex)
{
    char hex[65];
    auth_key_digest_hex("abc", 3, hex);
    cr_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

Test(auth, key_found_and_principal)
{
    kconfig *c = cfg_one_key("ci", "the-key");
    auth_ctx *a = ctx_ok(c);
    auth_result res;
    auth_authenticate(a, "the-key", NULL, &res);
    cr_assert_eq(res.kind, AUTH_KEY);
    cr_assert_str_eq(auth_principal_id(res.who), "key:ci");
    cr_assert(auth_principal_has_role(res.who, "r1"));
    cr_assert_str_eq(json_string_value(json_object_get(auth_principal_attributes(res.who), "tenant")), "acme");
    auth_principal_release(res.who);
    auth_ctx_free(a);
    config_free(c);
}

Test(auth, wrong_empty_and_huge_keys_refused)
{
    kconfig *c = cfg_one_key("ci", "the-key");
    auth_ctx *a = ctx_ok(c);
    static char huge[5000];
    memset(huge, 'k', sizeof huge - 1);
    const char *bad[] = {"the-key ", "the-ke", "", "THE-KEY", huge};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        auth_result res;
        auth_authenticate(a, bad[i], NULL, &res);
        cr_assert_eq(res.kind, AUTH_FAILED, "key %zu accepted", i);
        cr_assert_null(res.who);
        cr_assert_eq(res.bad_token, 0);
        cr_assert_null(strstr(res.why, "the-ke"), "the key is echoed: %s", res.why);
    }
    auth_ctx_free(a);
    config_free(c);
}

/* The index finds a slot by the digest's first bytes; the whole digest must still match. */
Test(auth, digest_differing_only_at_the_end_is_refused)
{
    char hex[65], json[300];
    auth_key_digest_hex("k", 1, hex);
    hex[63] = hex[63] == '0' ? '1' : '0';
    snprintf(json, sizeof json, "[{\"id\": \"x\", \"sha256\": \"%s\"}]", hex);
    kconfig *c = cfg_with(json);
    auth_ctx *a = ctx_ok(c);
    auth_result res;
    auth_authenticate(a, "k", NULL, &res);
    cr_assert_eq(res.kind, AUTH_FAILED);
    auth_ctx_free(a);
    config_free(c);
}

Test(auth, many_keys_each_found)
{
    json_t *keys = json_array();
    char key[32], id[32];
    for (int i = 0; i < 2000; i++) {
        snprintf(key, sizeof key, "key-%d", i);
        snprintf(id, sizeof id, "id%d", i);
        json_array_append_new(keys, json_pack("{s:s,s:s}", "id", id, "sha256", digest_of(key)));
    }
    char *text = json_dumps(keys, 0);
    kconfig *c = cfg_with(text);
    free(text);
    json_decref(keys);
    auth_ctx *a = ctx_ok(c);
    for (int i = 0; i < 2000; i += 7) {
        auth_result res;
        snprintf(key, sizeof key, "key-%d", i);
        snprintf(id, sizeof id, "key:id%d", i);
        auth_authenticate(a, key, NULL, &res);
        cr_assert_eq(res.kind, AUTH_KEY, "%s", key);
        cr_assert_str_eq(auth_principal_id(res.who), id);
        auth_principal_release(res.who);
    }
    auth_ctx_free(a);
    config_free(c);
}

Test(auth, key_entries_refused)
{
    ctx_refused(cfg_with("[{\"id\": \"a\", \"sha256\": \"abc\"}]"), "api_keys[0].sha256");
    ctx_refused(cfg_with("[{\"id\": \"a\", \"sha256\": \"zz7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"}]"),
                "api_keys[0].sha256");
    ctx_refused(cfg_with("[{\"sha256\": \"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"}]"),
                "required");
    ctx_refused(cfg_with("[{\"id\": \"a b\", \"sha256\": \"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"}]"),
                "api_keys[0].id");
    ctx_refused(cfg_with("[{\"id\": \"a\", \"sha256\": \"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\", "
                         "\"secret\": 1}]"),
                "api_keys[0].secret");
    ctx_refused(cfg_with("[{\"id\": \"a\", \"sha256\": \"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\", "
                         "\"roles\": [1]}]"),
                "api_keys[0].roles");
    ctx_refused(cfg_with("[5]"), "api_keys[0]");
    ctx_refused(cfg_with("[{\"id\": \"a\", \"sha256\": \"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"},"
                         " {\"id\": \"a\", \"sha256\": \"ca7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"}]"),
                "used twice");
    ctx_refused(cfg_with("[{\"id\": \"a\", \"sha256\": \"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"},"
                         " {\"id\": \"b\", \"sha256\": \"BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD\"}]"),
                "same digest");
}

Test(auth, fail_closed_without_any_credential)
{
    ctx_refused(cfg_with("[]"), "enable_auth");
    kconfig *c = cfg_with("[]");
    c->enable_auth = 0; /* off: nothing needed, everyone anonymous */
    auth_ctx *a = ctx_ok(c);
    auth_result res;
    auth_authenticate(a, "whatever", "Bearer x.y.z", &res);
    cr_assert_eq(res.kind, AUTH_ANONYMOUS);
    cr_assert_null(res.who);
    auth_ctx_free(a);
    config_free(c);
}

Test(auth, hs256_secret_from_environment)
{
    kconfig *c = cfg_with("[]");
    c->jwt_hs256_secret_env = strdup("KAILASH_UNIT_HS");
    unsetenv("KAILASH_UNIT_HS");
    ctx_refused(c, "KAILASH_UNIT_HS is not set");
    c = cfg_with("[]");
    c->jwt_hs256_secret_env = strdup("KAILASH_UNIT_HS");
    setenv("KAILASH_UNIT_HS", "short-secret", 1);
    auth_ctx *a = NULL;
    char err[512];
    cr_assert_eq(auth_ctx_load(c, &a, err, sizeof err), -1);
    cr_assert_null(strstr(err, "short-secret"), "the secret is in the message: %s", err);
    config_free(c);
}

Test(auth, missing_key_file_refused)
{
    kconfig *c = cfg_with("[]");
    c->jwt_public_key_file = strdup("/nonexistent/key.pem");
    ctx_refused(c, "auth.jwt.public_key_file");
}

/* ---- bearer tokens ---- */

static char *hs_token(const char *payload_json)
{
    const char *hdr = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    char *h = b64url_str(hdr), *p = b64url_str(payload_json);
    char si[2048];
    snprintf(si, sizeof si, "%s.%s", h, p);
    unsigned char mac[32];
    unsigned int maclen = 0;
    HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), (const unsigned char *)si, strlen(si), mac, &maclen);
    char *s = b64url(mac, maclen);
    char *tok = malloc(strlen(si) + strlen(s) + 2);
    sprintf(tok, "%s.%s", si, s);
    free(h);
    free(p);
    free(s);
    return tok;
}

static auth_ctx *hs_ctx(kconfig **c)
{
    *c = cfg_with("[]");
    (*c)->jwt_hs256_secret_env = strdup("KAILASH_UNIT_HS");
    setenv("KAILASH_UNIT_HS", SECRET, 1);
    return ctx_ok(*c);
}

static auth_result bearer(const auth_ctx *a, const char *tok)
{
    char hdr[4096];
    snprintf(hdr, sizeof hdr, "Bearer %s", tok);
    auth_result res;
    auth_authenticate(a, NULL, hdr, &res);
    return res;
}

Test(auth, bearer_token_and_the_verdict_memory)
{
    kconfig *c;
    auth_ctx *a = hs_ctx(&c);
    char payload[200];
    snprintf(payload, sizeof payload, "{\"sub\":\"alice\",\"exp\":%ld,\"roles\":[\"x\"]}", (long)util_now_unix_s() + 600);
    char *tok = hs_token(payload);
    auth_result r1 = bearer(a, tok), r2 = bearer(a, tok);
    cr_assert_eq(r1.kind, AUTH_JWT, "%s", r1.why);
    cr_assert_str_eq(auth_principal_id(r1.who), "jwt:alice");
    cr_assert_eq(r2.kind, AUTH_JWT);
    cr_assert_eq(r1.who, r2.who, "the second time should come from this thread's memory");
    /* a new ctx (a reload) forgets every verdict */
    kconfig *c2;
    auth_ctx *a2 = hs_ctx(&c2);
    auth_result r3 = bearer(a2, tok);
    cr_assert_eq(r3.kind, AUTH_JWT);
    cr_assert_neq(r3.who, r1.who);
    auth_principal_release(r1.who);
    auth_principal_release(r2.who);
    auth_principal_release(r3.who);
    free(tok);
    auth_ctx_free(a);
    auth_ctx_free(a2);
    config_free(c);
    config_free(c2);
}

Test(auth, remembered_token_still_expires)
{
    kconfig *c;
    auth_ctx *a = hs_ctx(&c);
    char payload[200];
    /* the leeway (60 s) ends in about 1 s */
    snprintf(payload, sizeof payload, "{\"sub\":\"alice\",\"exp\":%ld}", (long)util_now_unix_s() - 59);
    char *tok = hs_token(payload);
    auth_result r1 = bearer(a, tok);
    cr_assert_eq(r1.kind, AUTH_JWT, "%s", r1.why);
    auth_principal_release(r1.who);
    usleep(1600 * 1000);
    auth_result r2 = bearer(a, tok);
    cr_assert_eq(r2.kind, AUTH_FAILED);
    cr_assert(r2.bad_token);
    cr_assert_not_null(strstr(r2.why, "expired"), "%s", r2.why);
    free(tok);
    auth_ctx_free(a);
    config_free(c);
}

Test(auth, refused_tokens_and_schemes)
{
    kconfig *c;
    auth_ctx *a = hs_ctx(&c);
    auth_result r = bearer(a, "not.a.token");
    cr_assert_eq(r.kind, AUTH_FAILED);
    cr_assert(r.bad_token);
    auth_authenticate(a, NULL, "Basic dXNlcjpwYXNz", &r);
    cr_assert_eq(r.kind, AUTH_FAILED);
    cr_assert_eq(r.bad_token, 0);
    cr_assert_null(strstr(r.why, "dXNl"));
    auth_authenticate(a, NULL, "Bearer", &r);
    cr_assert_eq(r.kind, AUTH_FAILED);
    auth_ctx_free(a);
    config_free(c);
    /* keys only: a bearer token cannot pass */
    c = cfg_one_key("ci", "k");
    a = ctx_ok(c);
    r = bearer(a, "a.b.c");
    cr_assert_eq(r.kind, AUTH_FAILED);
    cr_assert(r.bad_token);
    auth_ctx_free(a);
    config_free(c);
}

/* ---- access ---- */

static char *roles_a[] = {"orders:read", "orders:write", NULL};

static workflow *wf_with(char **roles, int is_public)
{
    static workflow wf;
    memset(&wf, 0, sizeof wf);
    wf.name = "w";
    wf.access.present = 1;
    wf.access.roles = roles;
    wf.access.is_public = is_public;
    return &wf;
}

static auth_principal *who(const char *id, const char *roles_json, const char *attrs_json)
{
    return auth_principal_new(AUTH_KEY, id, json_loads(roles_json, 0, NULL), json_loads(attrs_json, 0, NULL));
}

Test(auth, access_roles)
{
    char msg[200];
    workflow *wf = wf_with(roles_a, 0);
    auth_principal *reader = who("key:r", "[\"orders:write\"]", "{}");
    auth_principal *other = who("key:o", "[\"x\"]", "{}");
    auth_principal *admin = who("key:a", "[\"admin\"]", "{}");
    cr_assert_eq(auth_access_roles(wf, reader, msg, sizeof msg), 0);
    cr_assert_eq(auth_access_roles(wf, other, msg, sizeof msg), -1);
    cr_assert_eq(auth_access_roles(wf, admin, msg, sizeof msg), 0);
    cr_assert_eq(auth_access_roles(wf, NULL, msg, sizeof msg), -1);
    wf = wf_with(roles_a, 1);
    cr_assert_eq(auth_access_roles(wf, NULL, msg, sizeof msg), 0, "public lets anonymous in");
    cr_assert_eq(auth_access_roles(wf, other, msg, sizeof msg), 0, "and the authenticated too");
    wf = wf_with(NULL, 0);
    cr_assert_eq(auth_access_roles(wf, other, msg, sizeof msg), 0, "no roles: any authenticated caller");
    auth_principal_release(reader);
    auth_principal_release(other);
    auth_principal_release(admin);
}

Test(auth, access_conditions)
{
    char msg[200];
    char *path[] = {"org", "tenant", NULL};
    wf_condition conds[2] = {{.attribute = "tenant", .path = path}, {.attribute = "tier", .value = json_string("gold")}};
    workflow *wf = wf_with(NULL, 0);
    wf->access.conds = conds;
    wf->access.nconds = 2;
    auth_principal *acme = who("key:a", "[]", "{\"tenant\": \"acme\", \"tier\": \"gold\"}");
    auth_principal *silver = who("key:s", "[]", "{\"tenant\": \"acme\", \"tier\": \"silver\"}");
    auth_principal *none = who("key:n", "[]", "{\"tenant\": null, \"tier\": \"gold\"}");
    auth_principal *admin = who("key:x", "[\"admin\"]", "{}");
    json_t *in_acme = json_loads("{\"org\": {\"tenant\": \"acme\"}}", 0, NULL);
    json_t *in_other = json_loads("{\"org\": {\"tenant\": \"globex\"}}", 0, NULL);
    json_t *in_null = json_loads("{\"org\": {\"tenant\": null}}", 0, NULL);
    json_t *in_none = json_loads("{}", 0, NULL);
    cr_assert_eq(auth_access_conditions(wf, acme, in_acme, msg, sizeof msg), 0);
    cr_assert_eq(auth_access_conditions(wf, acme, in_other, msg, sizeof msg), -1);
    cr_assert_null(strstr(msg, "globex"), "a value in the message: %s", msg);
    cr_assert_null(strstr(msg, "acme"), "a value in the message: %s", msg);
    cr_assert_eq(auth_access_conditions(wf, acme, in_none, msg, sizeof msg), -1);
    cr_assert_eq(auth_access_conditions(wf, silver, in_acme, msg, sizeof msg), -1, "the literal condition");
    cr_assert_eq(auth_access_conditions(wf, none, in_null, msg, sizeof msg), -1, "null never matches null");
    cr_assert_eq(auth_access_conditions(wf, NULL, in_acme, msg, sizeof msg), -1);
    cr_assert_eq(auth_access_conditions(wf, admin, in_other, msg, sizeof msg), 0);
    json_decref(in_acme);
    json_decref(in_other);
    json_decref(in_null);
    json_decref(in_none);
    json_decref(conds[1].value);
    auth_principal_release(acme);
    auth_principal_release(silver);
    auth_principal_release(none);
    auth_principal_release(admin);
}
