/* direct: `kailashd run WORKFLOW --input JSON|@FILE [--config FILE]`, the direct-execution interface
 * for cron jobs and scripts: the same config, registry, executor and sinks as the daemon (a run gets
 * its record as any other, when the store can be opened), no HTTP and no middleware. The caller is the
 * operator: no authentication, no access conditions, no rate limit; the inputs schema is checked.
 *
 * Output is what POST /workflows/{name}/run would answer: the answer of a completed run, or the error
 * shape for a failed one (without a request id), one line on out. Exit status: 0 completed, 1 failed
 * or timed out, 2 for a usage, config, load or input problem (said on stderr). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kailash/log.h"
#include "kailash/schema.h"
#include "kailash/store.h"
#include "runs_internal.h"

#define DIRECT_INPUT_MAX ((size_t)64 << 20) /* an @FILE's bytes at most */
#define DIRECT_OOM "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\",\"details\":{}}}"

typedef struct direct_wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
} direct_wait;

static void direct_done(run *rn, void *ud)
{
    (void)rn;
    direct_wait *w = ud;
    pthread_mutex_lock(&w->mu);
    w->done = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* The inputs object from JSON text, or @FILE (@- is stdin); NULL with a message on stderr. */
static json_t *direct_inputs(const char *input)
{
    json_error_t je;
    json_t *v;
    if (input[0] == '@') {
        FILE *f = strcmp(input, "@-") == 0 ? stdin : fopen(input + 1, "rb");
        if (!f) {
            fprintf(stderr, "kailashd run: --input %s: %s\n", input, strerror(errno));
            return NULL;
        }
        struct stat st;
        if (f != stdin && (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > DIRECT_INPUT_MAX)) {
            fprintf(stderr, "kailashd run: --input %s: not a regular file of at most 64 MiB\n", input);
            fclose(f);
            return NULL;
        }
        v = json_loadf(f, JSON_REJECT_DUPLICATES, &je);
        if (f != stdin)
            fclose(f);
    } else
        v = json_loads(input, JSON_REJECT_DUPLICATES, &je);
    if (!v)
        fprintf(stderr, "kailashd run: --input is not valid JSON: %s (line %d, column %d)\n", je.text, je.line,
                je.column);
    else if (!json_is_object(v)) {
        fprintf(stderr, "kailashd run: --input: expected a JSON object of the workflow's inputs\n");
        json_decref(v);
        v = NULL;
    }
    return v;
}

static void direct_print_error(FILE *out, const char *code, const char *msg, json_t *details)
{
    json_t *body = json_pack("{s:{s:s,s:s,s:o}}", "error", "code", code, "message", msg, "details",
                             details ? details : json_object());
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    fprintf(out, "%s\n", text ? text : DIRECT_OOM);
    free(text);
    json_decref(body);
}

/* Prints rn's answer; the exit status. */
static int direct_answer(run *rn, FILE *out)
{
    if (run_get_status(rn) == RUN_COMPLETED) {
        buf b = {0};
        int ok = runs_body_completed(&b, rn, 0) == 0;
        fprintf(out, "%s\n", ok ? b.data : DIRECT_OOM);
        buf_free(&b);
        return ok ? 0 : 1;
    }
    const char *code = run_get_status(rn) == RUN_CANCELLED ? "cancelled" : run_error_code(rn);
    const char *node = run_error_node(rn);
    char msg[600]; /* a node id (at most 131 bytes) and its message (255): never cut inside a character */
    snprintf(msg, sizeof msg, "%s%s%s%s", node[0] ? "node '" : "", node, node[0] ? "': " : "", run_error_message(rn));
    json_t *details = json_pack("{s:s,s:s}", "run_id", run_id(rn), "status", run_status_name(run_get_status(rn)));
    if (node[0])
        json_object_set_new(details, "node", json_string(node));
    direct_print_error(out, code, msg, details);
    return 1;
}

/* Runs ex's workflow with inputs and waits for its end; the exit status. */
static int direct_execute(executor *ex, json_t *inputs, FILE *out)
{
    const workflow *wf = exec_workflow(ex);
    json_t *violations = json_array();
    if (wf->inputs_schema && schema_validate(wf->inputs_schema, inputs, violations) > 0) {
        direct_print_error(out, "invalid_inputs", "inputs do not match the workflow's schema",
                           json_pack("{s:o}", "violations", violations));
        return 2;
    }
    json_decref(violations);
    direct_wait w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    run_opts o = {.inputs = inputs, .cache = "BYPASS", .done = direct_done, .ud = &w};
    run *rn = run_create(ex, &o);
    if (!rn) {
        fprintf(stderr, "kailashd run: out of memory\n");
        return 2;
    }
    run_retain(rn); /* one for exec_submit, one for the answer */
    if (exec_submit(ex, rn, 0) == EXEC_OVERLOADED) {
        run_release(rn);
        run_release(rn);
        fprintf(stderr, "kailashd run: workflow '%s' is at capacity\n", wf->name);
        return 1;
    }
    pthread_mutex_lock(&w.mu);
    while (!w.done)
        pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
    int rc = direct_answer(rn, out);
    run_release(rn);
    return rc;
}

/* Loads the workflows and runs the one named; the exit status. */
static int direct_load_and_run(const kconfig *cfg, const char *name, json_t *inputs, FILE *out)
{
    registry *reg = registry_load(cfg, engine_node_env(), NULL);
    if (!reg) {
        fprintf(stderr, "kailashd run: out of memory\n");
        return 2;
    }
    registry_publish(reg); /* WorkflowNode finds the workflows it calls there */
    registry *cur = registry_acquire();
    executor *ex = registry_find(cur, name);
    int rc = 2;
    if (ex)
        rc = direct_execute(ex, inputs, out);
    else {
        char *errs = json_dumps(registry_errors(cur), JSON_COMPACT);
        fprintf(stderr, "kailashd run: no workflow '%s' in %s (files that failed to load: %s)\n", name,
                cfg->workflows_dir, errs ? errs : "?");
        free(errs);
    }
    registry_release(cur);
    registry_publish(NULL);
    return rc;
}

int api_direct_run(const char *config_path, const char *wf_name, const char *input, FILE *out)
{
    kconfig *cfg;
    char err[1024];
    if (config_load(config_path, &cfg, err, sizeof err) != 0) {
        fprintf(stderr, "kailashd run: %s\n", err);
        return 2;
    }
    /* stdout is the answer; stderr gets warnings and errors, not the daemon's start-up lines */
    log_set_level(cfg->log_level > LOG_WARN ? cfg->log_level : LOG_WARN);
    json_t *inputs = direct_inputs(input);
    int rc = 2;
    if (inputs && engine_start(cfg, err, sizeof err) != 0)
        fprintf(stderr, "kailashd run: %s\n", err);
    else if (inputs) {
        int records = store_start(cfg, err, sizeof err) == 0;
        if (!records)
            fprintf(stderr, "kailashd run: the run keeps no record: %s\n", err);
        rc = direct_load_and_run(cfg, wf_name, inputs, out);
        engine_stop();
        if (records)
            store_stop(util_now_ms() + (cfg->shutdown_grace_ms > 1000 ? cfg->shutdown_grace_ms : 1000));
    }
    json_decref(inputs);
    config_free(cfg);
    fflush(out);
    return rc;
}
