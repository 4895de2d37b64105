/* job: one accepted async run, and its payload (jobs.h says the shape). The payload is what another
 * process reads back (a Redis entry, a queued journal record after a restart), so reading it checks
 * every field as hostile input. */
#include <stdlib.h>
#include <string.h>

#include "kailash/jobs.h"
#include "kailash/store.h"
#include "kailash/util.h"

#define JOB_TEXT_MAX 1024 /* workflow names, request ids, principals, callback URLs */

job *job_new(const char *workflow)
{
    job *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    j->workflow = strdup(workflow);
    j->request_id = strdup("");
    j->inputs = json_object();
    if (!j->workflow || !j->request_id || !j->inputs) {
        job_free(j);
        return NULL;
    }
    return j;
}

void job_free(job *j)
{
    if (!j)
        return;
    free(j->workflow);
    free(j->request_id);
    free(j->principal);
    free(j->callback_url);
    json_decref(j->roles);
    json_decref(j->attributes);
    json_decref(j->inputs);
    json_decref(j->parameters);
    free(j);
}

static json_t *str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

static json_t *json_or_null(json_t *v)
{
    return v ? json_incref(v) : json_null();
}

json_t *job_to_json(const job *j)
{
    return json_pack("{s:i,s:s,s:s,s:s,s:o,s:o,s:o,s:O,s:o,s:o,s:i,s:b}", "v", 1, "run_id", j->run_id, "workflow",
                     j->workflow, "request_id", j->request_id, "principal", str_or_null(j->principal), "roles",
                     json_or_null(j->roles), "attributes", json_or_null(j->attributes), "inputs", j->inputs,
                     "parameters", json_or_null(j->parameters), "callback_url", str_or_null(j->callback_url), "hops",
                     j->hops, "execute", j->execute);
}

/* A string field: 0 with a copy in *out (NULL for null when nullable), else -1. */
static int take_str(json_t *p, const char *key, int nullable, char **out, char *err, size_t errlen)
{
    json_t *v = json_object_get(p, key);
    if (nullable && (!v || json_is_null(v)))
        return 0;
    if (!json_is_string(v) || json_string_length(v) > JOB_TEXT_MAX || strlen(json_string_value(v)) != json_string_length(v))
        return util_err(err, errlen, "job: '%s' is not a string of at most %d bytes", key, JOB_TEXT_MAX);
    free(*out);
    *out = strdup(json_string_value(v));
    return *out ? 0 : util_err(err, errlen, "job: out of memory");
}

/* An object or array field (kind 'o' or 'a'), or null/absent when nullable: a new reference in *out. */
static int take_json(json_t *p, const char *key, char kind, int nullable, json_t **out, char *err, size_t errlen)
{
    json_t *v = json_object_get(p, key);
    if (nullable && (!v || json_is_null(v)))
        return 0;
    if (kind == 'o' ? !json_is_object(v) : !json_is_array(v))
        return util_err(err, errlen, "job: '%s' is not an %s", key, kind == 'o' ? "object" : "array");
    json_decref(*out);
    *out = json_incref(v);
    return 0;
}

job *job_from_json(json_t *p, char *err, size_t errlen)
{
    json_t *v = json_object_get(p, "v"), *id = json_object_get(p, "run_id"), *wf = json_object_get(p, "workflow");
    if (!json_is_object(p) || json_integer_value(v) != 1 || !json_is_integer(v)) {
        util_err(err, errlen, "job: not a version 1 job payload");
        return NULL;
    }
    if (!json_is_string(id) || json_string_length(id) != 36 || !store_is_uuid(json_string_value(id))) {
        util_err(err, errlen, "job: 'run_id' is not a UUID");
        return NULL;
    }
    if (!json_is_string(wf) || json_string_length(wf) == 0 || json_string_length(wf) > 128 ||
        strlen(json_string_value(wf)) != json_string_length(wf)) { /* no NUL: the name is what runs */
        util_err(err, errlen, "job: 'workflow' is not a workflow name");
        return NULL;
    }
    job *j = job_new(json_string_value(wf));
    if (!j) {
        util_err(err, errlen, "job: out of memory");
        return NULL;
    }
    util_copy(j->run_id, sizeof j->run_id, json_string_value(id));
    json_t *hops = json_object_get(p, "hops"), *ex = json_object_get(p, "execute");
    if (take_str(p, "request_id", 0, &j->request_id, err, errlen) || take_str(p, "principal", 1, &j->principal, err, errlen) ||
        take_str(p, "callback_url", 1, &j->callback_url, err, errlen) ||
        take_json(p, "roles", 'a', 1, &j->roles, err, errlen) || take_json(p, "attributes", 'o', 1, &j->attributes, err, errlen) ||
        take_json(p, "inputs", 'o', 0, &j->inputs, err, errlen) ||
        take_json(p, "parameters", 'o', 1, &j->parameters, err, errlen)) {
        job_free(j);
        return NULL;
    }
    if (!json_is_integer(hops) || json_integer_value(hops) < 0 || json_integer_value(hops) > 255 ||
        (ex && !json_is_boolean(ex))) {
        util_err(err, errlen, "job: 'hops' or 'execute' is out of range");
        job_free(j);
        return NULL;
    }
    j->hops = (int)json_integer_value(hops);
    j->execute = json_is_true(ex);
    return j;
}
