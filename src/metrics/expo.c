/* expo: the Prometheus text exposition format 0.0.4. A family is a "# HELP" line (help escaped for
 * backslash and newline), a "# TYPE" line, then its samples: "name{label="value",...} number". Label
 * values escape backslash, double quote and newline. A histogram's samples are its cumulative
 * name_bucket{...,le="bound"} lines ending in le="+Inf", then name_sum and name_count (count equals the
 * +Inf bucket). Sums are written from whole nanoseconds as an exact decimal, counts as integers. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kailash/metrics.h"
#include "metrics_internal.h"

#define LIT(b, s) buf_append((b), (s), sizeof(s) - 1)

static const char *const kind_names[] = {"counter", "gauge", "histogram"};

/* The le="..." text of each bound, as written once (no float formatting per scrape). */
static const char *const bucket_le_text[METRICS_NBUCKETS] = {"0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005",
                                                             "0.01",   "0.025",   "0.05",   "0.1",   "0.25",   "0.5",
                                                             "1",      "2.5",     "5",      "10"};

int metrics_escape(buf *out, const char *s)
{
    const char *run = s;
    for (; *s; s++) {
        const char *rep = *s == '\\' ? "\\\\" : *s == '"' ? "\\\"" : *s == '\n' ? "\\n" : NULL;
        if (!rep)
            continue;
        if (buf_append(out, run, (size_t)(s - run)) != 0 || buf_append(out, rep, 2) != 0)
            return -1;
        run = s + 1;
    }
    return buf_append(out, run, (size_t)(s - run));
}

/* HELP text: backslash and newline escaped (a quote is plain there). */
static int escape_help(buf *out, const char *s)
{
    for (; *s; s++) {
        int rc = *s == '\\' ? LIT(out, "\\\\") : *s == '\n' ? LIT(out, "\\n") : buf_append(out, s, 1);
        if (rc != 0)
            return -1;
    }
    return 0;
}

int metrics_write_head(buf *out, const metrics_family *fam)
{
    return buf_appendf(out, "# HELP %s ", fam->name) != 0 || escape_help(out, fam->help) != 0 ||
                   buf_appendf(out, "\n# TYPE %s %s\n", fam->name, kind_names[fam->kind]) != 0
               ? -1
               : 0;
}

/* name + suffix, then {labels} (and le when not NULL; no braces when there is no label at all). */
static int write_name(buf *out, const metrics_family *fam, const char *suffix, const char *const *values,
                      const char *le)
{
    if (buf_appendf(out, "%s%s", fam->name, suffix) != 0)
        return -1;
    if (fam->nlabels == 0 && !le)
        return 0;
    if (LIT(out, "{") != 0)
        return -1;
    for (int i = 0; i < fam->nlabels; i++)
        if (buf_appendf(out, "%s%s=\"", i ? "," : "", fam->labels[i]) != 0 || metrics_escape(out, values[i]) != 0 ||
            LIT(out, "\"") != 0)
            return -1;
    if (le && buf_appendf(out, "%sle=\"%s\"", fam->nlabels ? "," : "", le) != 0)
        return -1;
    return LIT(out, "}");
}

static int write_number(buf *out, double v)
{
    if (isnan(v))
        return LIT(out, " NaN\n");
    if (isinf(v))
        return v > 0 ? LIT(out, " +Inf\n") : LIT(out, " -Inf\n");
    if (v == floor(v) && fabs(v) < 1e15)
        return buf_appendf(out, " %.0f\n", v);
    return buf_appendf(out, " %.17g\n", v);
}

int metrics_write_value(buf *out, const metrics_family *fam, const char *const *values, double v)
{
    return write_name(out, fam, "", values, NULL) != 0 ? -1 : write_number(out, v);
}

static int write_counter(buf *out, const metrics_family *fam, int slot, const char *const *values)
{
    return write_name(out, fam, "", values, NULL) != 0
               ? -1
               : buf_appendf(out, " %llu\n", (unsigned long long)metrics_counter_value(slot));
}

static int write_histogram(buf *out, const metrics_family *fam, int slot, const char *const *values)
{
    uint64_t b[METRICS_NBUCKETS + 1], sum_ns, cum = 0;
    metrics_histogram_value(slot, b, &sum_ns);
    for (int i = 0; i <= METRICS_NBUCKETS; i++) {
        cum += b[i];
        if (write_name(out, fam, "_bucket", values, i < METRICS_NBUCKETS ? bucket_le_text[i] : "+Inf") != 0 ||
            buf_appendf(out, " %llu\n", (unsigned long long)cum) != 0)
            return -1;
    }
    return write_name(out, fam, "_sum", values, NULL) != 0 ||
                   buf_appendf(out, " %llu.%09llu\n", (unsigned long long)(sum_ns / 1000000000u),
                               (unsigned long long)(sum_ns % 1000000000u)) != 0 ||
                   write_name(out, fam, "_count", values, NULL) != 0 ||
                   buf_appendf(out, " %llu\n", (unsigned long long)cum) != 0
               ? -1
               : 0;
}

int metrics_write_family(buf *out, const metrics_family *fam)
{
    if (metrics_write_head(out, fam) != 0)
        return -1;
    const metrics_family *f;
    const char *const *values;
    int slot;
    for (int i = 0; metrics_series_at(i, &f, &slot, &values) == 0; i++) {
        if (f != fam)
            continue;
        int rc = fam->kind == METRICS_HISTOGRAM ? write_histogram(out, fam, slot, values)
                                                : write_counter(out, fam, slot, values);
        if (rc != 0)
            return -1;
    }
    return 0;
}
