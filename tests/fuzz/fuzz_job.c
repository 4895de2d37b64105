/* fuzz_job: job_from_json (src/jobs/job.c) on hostile payloads, as a Redis entry or a queued record
 * in the journal or Postgres (parsed with JSON_ALLOW_NUL, as those readers do) brings them back.
 *
 * Checked on every payload it accepts: the job's payload (job_to_json) keeps every field the input
 * gave as given (nothing cut short or changed on the way in), it is accepted again, through its text
 * too, giving the same job; and the queued record made with that text lets store_job_prefix find
 * the payload's exact end. Leaks and bad reads are ASan's. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/store/store_internal.h"
#include "kailash/jobs.h"
#include "kailash/util.h"

static int same_str(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

static int same_json(json_t *a, json_t *b)
{
    return a == b || (a && b && json_equal(a, b));
}

static int same_job(const job *a, const job *b)
{
    return strcmp(a->run_id, b->run_id) == 0 && same_str(a->workflow, b->workflow) &&
           same_str(a->request_id, b->request_id) && same_str(a->principal, b->principal) &&
           same_str(a->callback_url, b->callback_url) && same_json(a->roles, b->roles) &&
           same_json(a->attributes, b->attributes) && same_json(a->inputs, b->inputs) &&
           same_json(a->parameters, b->parameters) && a->hops == b->hops && a->execute == b->execute;
}

/* Every key of out that in gives (not null) has in's value: the job kept what it was given. */
static void kept_as_given(json_t *in, json_t *out)
{
    const char *k;
    json_t *v;
    json_object_foreach(out, k, v)
    {
        json_t *given = json_object_get(in, k);
        if (given && !json_is_null(given) && !json_equal(given, v))
            abort();
    }
}

/* j's payload as text, accepted again; the queued record with it gives its end. */
static void through_text(const job *j, json_t *payload)
{
    char *text = json_dumps(payload, JSON_COMPACT);
    if (!text)
        return;
    json_t *back = json_loads(text, JSON_ALLOW_NUL, NULL);
    char err[200];
    job *again = back ? job_from_json(back, err, sizeof err) : NULL;
    if (!again || !same_job(j, again))
        abort();
    store_queued q = {j->run_id, j->workflow, "1", j->principal, j->request_id, j->inputs, text, strlen(text)};
    buf b = {0};
    if (store_record_queued(&q, &b) == 0 && store_job_prefix(b.data, b.len) != 7 + strlen(text))
        abort();
    buf_free(&b);
    job_free(again);
    json_decref(back);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1 << 16)
        return 0;
    json_t *in = json_loadb((const char *)data, size, JSON_ALLOW_NUL | JSON_DECODE_ANY, NULL);
    char err[200];
    job *j = in ? job_from_json(in, err, sizeof err) : NULL;
    if (!j) {
        json_decref(in);
        return 0;
    }
    json_t *out = job_to_json(j);
    if (!out)
        abort();
    kept_as_given(in, out);
    job *again = job_from_json(out, err, sizeof err);
    if (!again || !same_job(j, again))
        abort();
    through_text(j, out);
    job_free(again);
    json_decref(out);
    job_free(j);
    json_decref(in);
    return 0;
}
