/* config: defaults, every kind of key, refusals naming file and key, environment overrides. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kailash/config.h"
#include "kailash/log.h"

static char path[64];

static void write_cfg(const char *text)
{
    strcpy(path, "/tmp/kcfgXXXXXX");
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs(text, f);
    fclose(f);
}

static int load(const char *text, kconfig **c, char *err)
{
    write_cfg(text);
    int rc = config_load(path, c, err, 512);
    unlink(path);
    return rc;
}

static void refused(const char *text, const char *expect)
{
    kconfig *c = NULL;
    char err[512] = "";
    cr_assert_eq(load(text, &c, err), -1, "accepted: %s", text);
    cr_assert(strstr(err, expect), "message '%s' lacks '%s'", err, expect);
    cr_assert(strstr(err, "/tmp/kcfg"), "message '%s' lacks the file", err);
}

Test(config, defaults_without_file)
{
    kconfig *c;
    char err[256];
    unsetenv("KAILASH_PORT");
    cr_assert_eq(config_load(NULL, &c, err, sizeof err), 0);
    cr_assert_str_eq(c->host, "0.0.0.0");
    cr_assert_eq(c->port, 8000);
    cr_assert_eq(c->workers, 4);
    cr_assert_eq(c->max_body_bytes, 1048576);
    cr_assert_eq(c->exec_max_concurrency, 64);
    cr_assert_eq(c->exec_max_queue, 1024);
    cr_assert_eq(c->upstream_max_response_bytes, 10485760);
    cr_assert_eq(c->upstream_verify_tls, 1);
    cr_assert_eq(c->log_level, LOG_INFO);
    config_free(c);
}

Test(config, every_built_key)
{
    kconfig *c;
    char err[512];
    cr_assert_eq(load("{\"host\":\"127.0.0.1\",\"port\":9000,\"workers\":2,\"workflows_dir\":\"w\",\"data_dir\":\"d\","
                      "\"max_body_bytes\":10,\"request_timeout_ms\":5,\"shutdown_grace_ms\":0,"
                      "\"trusted_proxies\":[\"10.0.0.0/8\",\"::1\"],\"executor_defaults\":{\"max_concurrency\":3,"
                      "\"max_queue\":0},\"template_env\":[\"A\",\"B\"],\"enable_auth\":false,"
                      "\"upstream\":{\"max_response_bytes\":100,\"connect_timeout_ms\":7,\"verify_tls\":false},"
                      "\"redis_url\":null,\"database_url\":null,\"log\":{\"level\":\"debug\",\"format\":\"json\"}}",
                      &c, err),
                 0, "%s", err);
    cr_assert_str_eq(c->host, "127.0.0.1");
    cr_assert_eq(c->port, 9000);
    cr_assert_eq(c->workers, 2);
    cr_assert_str_eq(c->workflows_dir, "w");
    cr_assert_eq(c->n_trusted_proxies, 2);
    cr_assert_eq(c->exec_max_queue, 0);
    cr_assert_eq(c->n_template_env, 2);
    cr_assert_str_eq(c->template_env[1], "B");
    cr_assert_eq(c->upstream_verify_tls, 0);
    cr_assert_eq(c->upstream_connect_timeout_ms, 7);
    cr_assert_eq(c->log_level, LOG_DEBUG);
    config_free(c);
}

Test(config, refusals)
{
    refused("{\"prot\": 1}", "unknown key 'prot'");
    refused("{\"upstream\": {\"verify\": true}}", "unknown key 'upstream.verify'");
    refused("{\"port\": \"80\"}", "key 'port': expected an integer");
    refused("{\"port\": 70000}", "key 'port'");
    refused("{\"workers\": 0}", "key 'workers'");
    refused("{\"host\": 5}", "key 'host': expected a non-empty string");
    refused("{\"upstream\": {\"verify_tls\": 1}}", "key 'upstream.verify_tls': expected true or false");
    refused("{\"trusted_proxies\": [\"10.0.0.0/33\"]}", "trusted_proxies[0]");
    refused("{\"trusted_proxies\": \"10.0.0.0/8\"}", "expected an array");
    refused("{\"template_env\": [1]}", "template_env[0]");
    refused("{\"log\": {\"level\": \"loud\"}}", "log.level");
    refused("{\"executor_defaults\": 5}", "expected an object");
    refused("[1]", "expected a JSON object");
    refused("{\"port\": ", "line");
    refused("{\"port\": 1, \"port\": 2}", "duplicate");
}

Test(config, store_keys)
{
    kconfig *c;
    char err[512];
    cr_assert_eq(load("{\"database_url\": \"postgres://u@h/db\", \"store\": {\"queue_max\": 7, \"batch_max\": 3, "
                          "\"segment_bytes\": 8192, \"retain_segments\": 2, \"retain_s\": 60, \"enabled\": false}}",
                          &c, err),
                 0, "%s", err);
    cr_assert_str_eq(c->database_url, "postgres://u@h/db");
    cr_assert_eq(c->store_queue_max, 7);
    cr_assert_eq(c->store_batch_max, 3);
    cr_assert_eq(c->store_segment_bytes, 8192);
    cr_assert_eq(c->store_retain_segments, 2);
    cr_assert_eq(c->store_retain_s, 60);
    cr_assert_eq(c->store_enabled, 0);
    config_free(c);
    refused("{\"store\": {\"queue_max\": 0}}", "store.queue_max");
    refused("{\"store\": {\"segment_bytes\": 100}}", "store.segment_bytes");
    refused("{\"store\": {\"enabled\": 1}}", "store.enabled");
}

Test(config, jobs_keys)
{
    kconfig *c;
    char err[512];
    cr_assert_eq(load("{}", &c, err), 0, "%s", err);
    cr_assert_eq(c->jobs_claim_idle_ms, 30000);
    cr_assert_eq(c->jobs_callback_max_attempts, 8);
    cr_assert_eq(c->n_jobs_callback_allow_hosts, 0);
    cr_assert_null(c->jobs_callback_secret_env);
    config_free(c);
    cr_assert_eq(load("{\"jobs\": {\"claim_idle_ms\": 500, \"max_deliveries\": 3, \"consumers\": 4, "
                      "\"callback_max_attempts\": 2, \"callback_timeout_ms\": 700, \"callback_allow_hosts\": "
                      "[\"hooks.example.com\", \"127.0.0.1\", \"::1\"], \"callback_secret_env\": \"CB_KEY\"}}",
                      &c, err),
                 0, "%s", err);
    cr_assert_eq(c->jobs_claim_idle_ms, 500);
    cr_assert_eq(c->jobs_max_deliveries, 3);
    cr_assert_eq(c->jobs_consumers, 4);
    cr_assert_eq(c->jobs_callback_max_attempts, 2);
    cr_assert_eq(c->jobs_callback_timeout_ms, 700);
    cr_assert_eq(c->n_jobs_callback_allow_hosts, 3);
    cr_assert_str_eq(c->jobs_callback_allow_hosts[2], "::1");
    cr_assert_str_eq(c->jobs_callback_secret_env, "CB_KEY");
    config_free(c);
    refused("{\"jobs\": {\"claim_idle_ms\": 5}}", "jobs.claim_idle_ms");
    refused("{\"jobs\": {\"consumers\": 0}}", "jobs.consumers");
    refused("{\"jobs\": {\"callback_max_attempts\": 0}}", "jobs.callback_max_attempts");
    refused("{\"jobs\": {\"callback_allow_hosts\": \"a.com\"}}", "jobs.callback_allow_hosts");
    refused("{\"jobs\": {\"callback_allow_hosts\": [\"http://a.com/\"]}}", "jobs.callback_allow_hosts[0]");
    refused("{\"jobs\": {\"callback_allow_hosts\": [\"a.com\", \"\"]}}", "jobs.callback_allow_hosts[1]");
    refused("{\"jobs\": {\"callback_allow_hosts\": [\"a b\"]}}", "host name");
    refused("{\"jobs\": {\"callback_allow_hosts\": [5]}}", "jobs.callback_allow_hosts[0]");
    refused("{\"jobs\": {\"callback_secret_env\": 5}}", "jobs.callback_secret_env");
    refused("{\"jobs\": {\"nope\": 1}}", "jobs.nope");
}

Test(config, unbuilt_features_refused_unless_default)
{
    refused("{\"log\": {\"format\": \"text\"}}", "json");
    refused("{\"tls\": {\"cert_file\": \"/x.pem\"}}", "go together");
    refused("{\"tls\": {\"key_file\": \"/x.pem\"}}", "tls.cert_file");
    refused("{\"cache\": {\"default_ttl_s\": 0}}", "cache.default_ttl_s");
    refused("{\"cache\": {\"l1_max_bytes\": 1000}}", "cache.l1_max_bytes");
    refused("{\"log\": {\"format\": \"text\"}}", "json");
    kconfig *c;
    char err[512];
    cr_assert_eq(load("{\"rate_limiting\": {\"anonymous\": 100}, \"auth\": {\"api_keys\": []}}", &c, err), 0, "%s",
                 err);
    config_free(c);
}

Test(config, auth_keys)
{
    kconfig *c;
    char err[512];
    cr_assert_eq(load("{\"enable_auth\": true, \"auth\": {\"api_keys\": [{\"id\": \"ci\"}], \"jwt\": "
                      "{\"issuer\": \"https://idp\", \"audience\": \"api\", \"leeway_s\": 5, \"jwks_file\": null}}}",
                      &c, err),
                 0, "%s", err);
    cr_assert(c->enable_auth);
    cr_assert_eq(json_array_size(c->auth_api_keys), 1);
    cr_assert_str_eq(c->jwt_issuer, "https://idp");
    cr_assert_eq(c->n_jwt_audience, 1);
    cr_assert_str_eq(c->jwt_audience[0], "api");
    cr_assert_eq(c->jwt_leeway_s, 5);
    cr_assert_null(c->jwt_jwks_file);
    cr_assert_str_eq(c->jwt_roles_claim, "roles");
    config_free(c);
    cr_assert_eq(load("{\"auth\": {\"jwt\": {\"audience\": [\"a\", \"b\"]}}}", &c, err), 0, "%s", err);
    cr_assert_eq(c->n_jwt_audience, 2);
    cr_assert_str_eq(c->jwt_audience[1], "b");
    config_free(c);
    refused("{\"auth\": {\"jwt\": {\"audience\": [1]}}}", "auth.jwt.audience[0]");
    refused("{\"auth\": {\"jwt\": {\"audience\": 5}}}", "auth.jwt.audience");
    refused("{\"auth\": {\"jwt\": {\"issuer\": \"\"}}}", "auth.jwt.issuer");
    refused("{\"auth\": {\"jwt\": {\"leeway_s\": -1}}}", "auth.jwt.leeway_s");
    refused("{\"auth\": {\"api_keys\": {}}}", "auth.api_keys");
    refused("{\"auth\": {\"jwt\": {\"secret\": \"x\"}}}", "unknown key 'auth.jwt.secret'");
    refused("{\"enable_auth\": 1}", "enable_auth");
}

Test(config, rate_limits)
{
    kconfig *c;
    char err[512];
    cr_assert_eq(load("{}", &c, err), 0, "%s", err);
    cr_assert_eq(c->rl_authenticated, 1000);
    cr_assert_eq(c->rl_anonymous, 100);
    cr_assert_eq(c->rl_burst, 0);
    cr_assert(c->rl_enabled);
    cr_assert_null(c->redis_url);
    cr_assert_eq(c->redis_timeout_ms, 20);
    config_free(c);
    /* the SDK's shape sets both tiers unless they are given */
    cr_assert_eq(load("{\"rate_limiting\": {\"requests_per_minute\": 7}}", &c, err), 0, "%s", err);
    cr_assert_eq(c->rl_authenticated, 7);
    cr_assert_eq(c->rl_anonymous, 7);
    config_free(c);
    cr_assert_eq(load("{\"rate_limiting\": {\"requests_per_minute\": 7, \"anonymous\": 3, \"burst\": 9}}", &c, err), 0,
                 "%s", err);
    cr_assert_eq(c->rl_authenticated, 7);
    cr_assert_eq(c->rl_anonymous, 3);
    cr_assert_eq(c->rl_burst, 9);
    config_free(c);
    cr_assert_eq(load("{\"rate_limiting\": {\"burst\": null}, \"redis_url\": \"redis://h:1/2\", "
                      "\"redis_timeout_ms\": 50}",
                      &c, err),
                 0, "%s", err);
    cr_assert_eq(c->rl_burst, 0);
    cr_assert_str_eq(c->redis_url, "redis://h:1/2");
    cr_assert_eq(c->redis_timeout_ms, 50);
    config_free(c);
    refused("{\"rate_limiting\": {\"anonymous\": 0}}", "rate_limiting.anonymous");
    refused("{\"rate_limiting\": {\"burst\": \"5\"}}", "rate_limiting.burst");
    refused("{\"rate_limiting\": {\"per_hour\": 5}}", "unknown key 'rate_limiting.per_hour'");
    refused("{\"redis_timeout_ms\": 0}", "redis_timeout_ms");
    refused("{\"redis_url\": 5}", "redis_url");
}

Test(config, environment_overrides)
{
    kconfig *c;
    char err[512];
    setenv("KAILASH_PORT", "9100", 1);
    setenv("KAILASH_WORKERS", "3", 1);
    setenv("KAILASH_HOST", "::1", 1);
    setenv("KAILASH_LOG_LEVEL", "warn", 1);
    cr_assert_eq(load("{\"port\": 9000}", &c, err), 0, "%s", err);
    cr_assert_eq(c->port, 9100);
    cr_assert_eq(c->workers, 3);
    cr_assert_str_eq(c->host, "::1");
    cr_assert_eq(c->log_level, LOG_WARN);
    config_free(c);
    setenv("KAILASH_PORT", "eighty", 1);
    cr_assert_eq(load("{}", &c, err), -1);
    cr_assert(strstr(err, "KAILASH_PORT"), "%s", err);
    unsetenv("KAILASH_PORT");
    setenv("KAILASH_REDIS_URL", "redis://x:6379/1", 1);
    cr_assert_eq(load("{}", &c, err), 0, "%s", err);
    cr_assert_str_eq(c->redis_url, "redis://x:6379/1");
    config_free(c);
    unsetenv("KAILASH_REDIS_URL");
    const char *ok[] = {"auto", "libcurl", ""};
    for (size_t i = 0; i < 3; i++) {
        setenv("KAILASH_UPSTREAM_CLIENT", ok[i], 1);
        cr_assert_eq(load("{}", &c, err), 0, "%s: %s", ok[i], err);
        config_free(c);
    }
    setenv("KAILASH_UPSTREAM_CLIENT", "curl", 1);
    cr_assert_eq(load("{}", &c, err), -1, "a misspelt client was accepted");
    cr_assert(strstr(err, "KAILASH_UPSTREAM_CLIENT"), "%s", err);
    unsetenv("KAILASH_UPSTREAM_CLIENT");
}

/* README.md's "Configuration reference" lists exactly the loader's keys, and says "not built yet" for
 * exactly the ones accepted only with their default. */
static char *readme_reference(void)
{
    FILE *f = fopen("README.md", "r");
    cr_assert(f, "README.md (tests run from the repository's root)");
    static char text[1 << 20];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    char *start = strstr(text, "### Configuration reference");
    cr_assert(start, "README.md has no Configuration reference");
    char *end = strstr(start + 4, "\n## ");
    if (end)
        *end = '\0';
    return start;
}

/* The README row of key ("| `key` | ..."), or NULL. */
static const char *readme_row(const char *ref, const char *key)
{
    char head[160];
    snprintf(head, sizeof head, "\n| `%s` |", key);
    return strstr(ref, head);
}

Test(config, the_readme_reference_lists_exactly_the_loaders_keys)
{
    const char *ref = readme_reference();
    int built, rows_in_readme = 0, keys = 0;
    for (const char *p = ref; (p = strstr(p, "\n| `")); p++)
        rows_in_readme++;
    for (size_t i = 0; config_key_at(i, &built); i++, keys++) {
        const char *key = config_key_at(i, &built);
        const char *row = readme_row(ref, key);
        cr_assert(row, "the loader's key '%s' is not in README.md's Configuration reference", key);
        const char *eol = strchr(row + 1, '\n');
        int says_unbuilt = eol ? (memmem(row, (size_t)(eol - row), "not built yet", 13) != NULL) : 0;
        cr_assert_eq(says_unbuilt, !built, "README.md's row of '%s' %s 'not built yet'", key,
                     built ? "says" : "does not say");
    }
    cr_assert_eq(rows_in_readme, keys, "README.md's reference has %d rows, the loader %d keys", rows_in_readme, keys);
}
