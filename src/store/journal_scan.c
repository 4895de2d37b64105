/* journal_scan: a segment's bytes -> its record lines (journal_internal.h).
 *
 * Start-up rebuilds the index by feeding every segment through here, so this is the one place a
 * damaged or hostile file meets the daemon. It never fails on content: a line that is not a record
 * is counted and skipped, whatever it holds. The cost of a line is bounded by max_line: a longer one
 * is never copied (its bytes are dropped as they stream past until its '\n'), so a segment of any
 * size is scanned in memory bounded by max_line plus the caller's read buffer.
 *
 * A line that arrives whole inside one piece is parsed where it lies; only a line split across two
 * pieces is copied into part. Either way the callback sees the same offsets and values, which the
 * fuzz target checks by feeding the same bytes whole and split. */
#include <ctype.h>
#include <string.h>

#include "journal_internal.h"

void journal_scan_init(journal_scan *s, size_t max_line, journal_line_cb cb, void *ud)
{
    buf_free(&s->part);
    memset(s, 0, sizeof *s);
    s->cb = cb;
    s->ud = ud;
    s->max_line = max_line;
}

void journal_scan_free(journal_scan *s)
{
    buf_free(&s->part);
}

int journal_is_uuid(const char *s, size_t n)
{
    if (n != 36)
        return 0;
    for (size_t i = 0; i < 36; i++) {
        int dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
            return 0;
    }
    return 1;
}

static const char *scan_str(json_t *rec, const char *key)
{
    return json_string_value(json_object_get(rec, key));
}

/* One complete line (without its '\n'): the callback's answer when it is a record, else 0 with
 * the line counted as skipped. jansson refuses raw NUL bytes and anything after the value but
 * blanks; a \u0000 escape is valid JSON (an upstream's text can carry one into outputs), and a
 * record holding one must be indexed like any other: hence JSON_ALLOW_NUL. */
static int scan_line(journal_scan *s, const char *line, size_t n, uint64_t off)
{
    json_t *rec = n > 0 && n <= s->max_line ? json_loadb(line, n, JSON_ALLOW_NUL, NULL) : NULL;
    json_t *id = json_object_get(rec, "run_id");
    if (!json_is_object(rec) || !json_is_string(id) ||
        !journal_is_uuid(json_string_value(id), json_string_length(id))) {
        json_decref(rec);
        s->skipped++;
        return 0;
    }
    journal_line l = {.off = off, .len = n};
    const char *v = json_string_value(id);
    for (size_t i = 0; i < 36; i++)
        l.run_id[i] = (char)tolower((unsigned char)v[i]);
    l.workflow = scan_str(rec, "workflow");
    l.status = scan_str(rec, "status");
    l.principal = scan_str(rec, "principal");
    int rc = s->cb(s->ud, &l);
    json_decref(rec);
    s->records++;
    return rc;
}

/* Bytes of a line whose '\n' has not come yet: carried in part, or dropped once past max_line. */
static int scan_carry(journal_scan *s, const char *p, size_t n)
{
    if (s->overlong)
        return 0;
    if (s->part.len + n > s->max_line) {
        s->overlong = 1;
        s->part.len = 0;
        return 0;
    }
    return buf_append(&s->part, p, n);
}

/* The '\n' ending the current line has come, with n more bytes of it before it at p. */
static int scan_end_line(journal_scan *s, const char *p, size_t n)
{
    int rc = 0;
    if (s->overlong) {
        s->overlong = 0;
        s->skipped++;
    } else if (s->part.len == 0) {
        rc = scan_line(s, p, n, s->line_off);
    } else if (s->part.len + n > s->max_line) {
        s->skipped++;
    } else if (buf_append(&s->part, p, n) != 0) {
        rc = -1;
    } else {
        rc = scan_line(s, s->part.data, s->part.len, s->line_off);
    }
    s->part.len = 0;
    return rc;
}

int journal_scan_feed(journal_scan *s, const char *data, size_t len)
{
    const char *p = data, *end = data + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) {
            if (scan_carry(s, p, (size_t)(end - p)) != 0)
                return -1;
            s->off += (uint64_t)(end - p);
            return 0;
        }
        size_t n = (size_t)(nl - p);
        if (scan_end_line(s, p, n) != 0)
            return -1;
        s->off += n + 1;
        s->line_off = s->off;
        p = nl + 1;
    }
    return 0;
}

void journal_scan_finish(journal_scan *s)
{
    if (s->overlong || s->part.len > 0 || s->off > s->line_off)
        s->skipped++;
    s->overlong = 0;
    s->part.len = 0;
    s->line_off = s->off;
}
