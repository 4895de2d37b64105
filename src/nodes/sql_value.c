/* sql_value: Postgres text values to the JSON the SDK's SQL nodes give, and the SDK's named
 * parameters (:name) to $n (sql_internal.h).
 *
 * Results come in text format (PQsendQueryParams resultFormat 0) with the session's DateStyle ISO
 * and IntervalStyle postgres (sql_target.c), and are converted by column type as the SDK's
 * _serialize_value converts its drivers' Python values: int and float as numbers, numeric as a
 * float (float(Decimal)), bool, date and timestamps in datetime.isoformat() (T between date and
 * time, microseconds as six digits when not zero, the offset as +HH:MM), interval as
 * timedelta.total_seconds() (a month counts 30 days, a year 12 months, as asyncpg's timedelta),
 * bytea in base64, json/jsonb parsed (psycopg2, SQLDatabaseNode) or as text (asyncpg,
 * AsyncSQLDatabaseNode). Everything else, arrays included, is its Postgres text; so are values
 * Python cannot hold (NaN, infinity dates) and whatever does not parse as expected. */
#include <ctype.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kailash/util.h"
#include "sql_internal.h"

enum {
    OID_BOOL = 16,
    OID_BYTEA = 17,
    OID_INT8 = 20,
    OID_INT2 = 21,
    OID_INT4 = 23,
    OID_OID = 26,
    OID_JSON = 114,
    OID_FLOAT4 = 700,
    OID_FLOAT8 = 701,
    OID_DATE = 1082,
    OID_TIMESTAMP = 1114,
    OID_TIMESTAMPTZ = 1184,
    OID_INTERVAL = 1186,
    OID_NUMERIC = 1700,
    OID_JSONB = 3802,
};

/* The length of the valid UTF-8 sequence at s (at most n bytes), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    size_t k = s[0] < 0x80 ? 1 : (s[0] & 0xE0) == 0xC0 && s[0] >= 0xC2 ? 2 : (s[0] & 0xF0) == 0xE0 ? 3
                             : (s[0] & 0xF8) == 0xF0 && s[0] <= 0xF4                         ? 4
                                                                                             : 0;
    if (k == 0 || k > n)
        return 0;
    for (size_t i = 1; i < k; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    if ((k == 3 && s[0] == 0xE0 && s[1] < 0xA0) || (k == 3 && s[0] == 0xED && s[1] >= 0xA0) ||
        (k == 4 && s[0] == 0xF0 && s[1] < 0x90) || (k == 4 && s[0] == 0xF4 && s[1] >= 0x90))
        return 0; /* overlong, surrogate, past U+10FFFF */
    return k;
}

/* Text as a JSON string; bytes that are not UTF-8 (a SQL_ASCII database can hold any) become
 * U+FFFD, as the SDK's drivers decode with errors replaced would not fail the run either. */
static json_t *sql_text(const char *s, int len)
{
    json_t *v = json_stringn(s, (size_t)len);
    if (v || len <= 0)
        return v;
    char *out = malloc((size_t)len * 3 + 1);
    size_t o = 0;
    for (size_t i = 0; out && i < (size_t)len;) {
        size_t k = utf8_seq((const unsigned char *)s + i, (size_t)len - i);
        if (k) {
            memcpy(out + o, s + i, k);
            o += k;
            i += k;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        }
    }
    v = out ? json_stringn(out, o) : NULL;
    free(out);
    return v;
}

static json_t *sql_int(const char *s, int len)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    return end == s + len && len > 0 ? json_integer(v) : sql_text(s, len);
}

/* float, float8 and numeric: a finite number, else the text ("NaN", "Infinity") */
static json_t *sql_real(const char *s, int len)
{
    char *end;
    double v = strtod(s, &end);
    if (end != s + len || len == 0 || v != v || v > 1.7976931348623157e308 || v < -1.7976931348623157e308)
        return sql_text(s, len);
    return json_real(v);
}

static json_t *sql_bytea(const char *s, int len)
{
    if (len < 2 || s[0] != '\\' || s[1] != 'x' || len % 2)
        return sql_text(s, len);
    size_t n = (size_t)(len - 2) / 2;
    unsigned char *bin = malloc(n + 1), *b64 = malloc(4 * (n / 3 + 1) + 1);
    json_t *out = NULL;
    for (size_t i = 0; bin && b64 && i < n; i++) {
        unsigned hi, lo;
        if (sscanf(s + 2 + 2 * i, "%1x%1x", &hi, &lo) != 2)
            goto done;
        bin[i] = (unsigned char)(hi << 4 | lo);
    }
    if (bin && b64) {
        int m = EVP_EncodeBlock(b64, bin, (int)n);
        out = json_stringn((const char *)b64, (size_t)m);
    }
done:
    free(bin);
    free(b64);
    return out ? out : sql_text(s, len);
}

/* "YYYY-MM-DD HH:MM:SS[.f][+HH[:MM[:SS]]]" as Python's isoformat; the text when it is not that. */
static json_t *sql_timestamp(const char *s, int len)
{
    char out[64];
    if (len < 19 || len > 40 || s[10] != ' ' || s[4] != '-' || s[13] != ':' || !isdigit((unsigned char)s[18]))
        return sql_text(s, len);
    memcpy(out, s, 19);
    out[10] = 'T';
    int o = 19, i = 19;
    if (i < len && s[i] == '.') {
        int digits = 0;
        out[o++] = s[i++];
        while (i < len && isdigit((unsigned char)s[i]) && digits < 6)
            out[o++] = s[i++], digits++;
        while (digits++ < 6)
            out[o++] = '0';
    }
    if (i < len && (s[i] == '+' || s[i] == '-')) {
        int rest = len - i;
        if (rest != 3 && rest != 6 && rest != 9)
            return sql_text(s, len);
        memcpy(out + o, s + i, (size_t)rest);
        o += rest;
        i = len;
        if (rest == 3)
            memcpy(out + o, ":00", 3), o += 3;
    }
    if (i != len)
        return sql_text(s, len);
    return sql_text(out, (int)o);
}

/* IntervalStyle postgres: "[N year[s]] [N mon[s]] [N day[s]] [[+-]HH:MM:SS[.f]]" to seconds. */
static json_t *sql_interval(const char *s, int len)
{
    double total = 0;
    const char *p = s, *end = s + len;
    while (p < end) {
        while (p < end && *p == ' ')
            p++;
        if (p >= end)
            break;
        char *q;
        double v = strtod(p, &q);
        if (q == p || q > end)
            return sql_text(s, len);
        if (q < end && *q == ':') { /* the time part: sign and hours were read as v */
            int neg = *p == '-';
            unsigned mm = 0;
            double ss = 0;
            int used = 0;
            if (sscanf(q, ":%2u:%lf%n", &mm, &ss, &used) != 2 || q + used != end)
                return sql_text(s, len);
            double t = (neg ? -v : v) * 3600 + mm * 60 + ss;
            total += neg ? -t : t;
            p = end;
            break;
        }
        while (q < end && *q == ' ')
            q++;
        const char *unit = q;
        while (q < end && isalpha((unsigned char)*q))
            q++;
        size_t ul = (size_t)(q - unit);
        if (ul >= 4 && strncmp(unit, "year", 4) == 0)
            total += v * 12 * 30 * 86400;
        else if (ul >= 3 && strncmp(unit, "mon", 3) == 0)
            total += v * 30 * 86400;
        else if (ul >= 3 && strncmp(unit, "day", 3) == 0)
            total += v * 86400;
        else
            return sql_text(s, len);
        p = q;
    }
    return json_real(total);
}

json_t *sql_value_json(Oid type, const char *text, int len, int json_mode)
{
    switch (type) {
    case OID_BOOL:
        return len == 1 && (text[0] == 't' || text[0] == 'f') ? json_boolean(text[0] == 't') : sql_text(text, len);
    case OID_INT2:
    case OID_INT4:
    case OID_INT8:
    case OID_OID:
        return sql_int(text, len);
    case OID_FLOAT4:
    case OID_FLOAT8:
    case OID_NUMERIC:
        return sql_real(text, len);
    case OID_BYTEA:
        return sql_bytea(text, len);
    case OID_TIMESTAMP:
    case OID_TIMESTAMPTZ:
        return sql_timestamp(text, len);
    case OID_INTERVAL:
        return sql_interval(text, len);
    case OID_JSON:
    case OID_JSONB:
        if (json_mode == SQL_JSON_PARSED) {
            json_t *v = json_loadb(text, (size_t)len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
            if (v)
                return v;
        }
        return sql_text(text, len);
    default: /* text, varchar, uuid, date (ISO already), time, arrays, ... */
        return sql_text(text, len);
    }
}

/* ======================================================================== named parameters */

/* Where the quoted or commented stretch starting at p ends (the byte after it), or p when none
 * starts there. */
static const char *sql_skip(const char *sql, const char *p)
{
    if (*p == '\'' || *p == '"') {
        char qc = *p;
        int backslash = qc == '\'' && p > sql && (p[-1] == 'E' || p[-1] == 'e');
        for (p++; *p; p++) {
            if (backslash && *p == '\\' && p[1])
                p++;
            else if (*p == qc && p[1] == qc)
                p++;
            else if (*p == qc)
                return p + 1;
        }
        return p;
    }
    if (p[0] == '-' && p[1] == '-') {
        while (*p && *p != '\n')
            p++;
        return p;
    }
    if (p[0] == '/' && p[1] == '*') {
        const char *e = strstr(p + 2, "*/");
        return e ? e + 2 : p + strlen(p);
    }
    if (*p == '$' && !isdigit((unsigned char)p[1])) { /* $tag$ ... $tag$ */
        const char *t = p + 1;
        while (isalnum((unsigned char)*t) || *t == '_')
            t++;
        if (*t != '$' || (t > p + 1 && isdigit((unsigned char)p[1])))
            return p;
        size_t tl = (size_t)(t - p + 1);
        char tag[72];
        if (tl >= sizeof tag)
            return p;
        memcpy(tag, p, tl);
        tag[tl] = '\0';
        const char *e = strstr(t + 1, tag);
        return e ? e + tl : p + strlen(p);
    }
    return p;
}

static int sql_name_index(const char **names, int n, const char *name, size_t len)
{
    for (int i = 0; i < n; i++)
        if (strlen(names[i]) == len && strncmp(names[i], name, len) == 0)
            return i;
    return -1;
}

/* The dict's key spelled name (len bytes), or NULL. */
static const char *sql_dict_key(json_t *params, const char *name, size_t len)
{
    const char *k;
    json_t *v;
    json_object_foreach(params, k, v)
    {
        if (strlen(k) == len && strncmp(k, name, len) == 0)
            return k;
    }
    return NULL;
}

char *sql_named_to_positional(const char *sql, json_t *params, const char **names, int max, int *n, char *err,
                              size_t errlen)
{
    buf out = {0};
    *n = 0;
    for (const char *p = sql; *p;) {
        const char *e = sql_skip(sql, p);
        if (e != p) {
            buf_append(&out, p, (size_t)(e - p));
            p = e;
            continue;
        }
        if (p[0] == ':' && p[1] == ':') {
            buf_append(&out, p, 2);
            p += 2;
            continue;
        }
        if (p[0] != ':' || !(isalpha((unsigned char)p[1]) || p[1] == '_')) {
            buf_append(&out, p, 1);
            p++;
            continue;
        }
        const char *name = p + 1, *q = name;
        while (isalnum((unsigned char)*q) || *q == '_')
            q++;
        size_t len = (size_t)(q - name);
        int i = sql_name_index(names, *n, name, len);
        if (i < 0) {
            const char *key = sql_dict_key(params, name, len);
            if (!key || *n >= max) {
                if (!key)
                    util_err(err, errlen, "parameters: the query uses :%.*s, which the dict does not hold", (int)len,
                             name);
                else
                    util_err(err, errlen, "parameters: more than %d names", max);
                buf_free(&out);
                return NULL;
            }
            names[i = (*n)++] = key;
        }
        char ph[16];
        int pl = snprintf(ph, sizeof ph, "$%d", i + 1);
        buf_append(&out, ph, (size_t)pl);
        p = q;
    }
    if (buf_append(&out, "", 1) != 0) {
        buf_free(&out);
        util_err(err, errlen, "out of memory");
        return NULL;
    }
    return out.data;
}
