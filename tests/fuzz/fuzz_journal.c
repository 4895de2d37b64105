/* fuzz_journal: the journal's segment scanner (src/store/journal_scan.c) on hostile bytes, as
 * start-up meets them in a damaged or planted segment file.
 *
 * The first input byte sets the line cap (1..1021 bytes, so the over-long path is reached), the
 * second where the bytes are cut into pieces; the rest is the segment. Checked on every input: the
 * scan never fails; every record it reports is a whole line of the input (starts at the input's
 * start or after a '\n', ends right before a '\n', no longer than the cap) whose run_id is 36
 * lowercase UUID characters; records + skipped is the number of lines (an unterminated tail counts
 * as one); and feeding the same bytes whole, in two pieces or in small pieces gives exactly the same
 * records (offsets, lengths, ids and fields). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/store/journal_internal.h"

typedef struct fz_rec {
    uint64_t off;
    size_t len;
    char run_id[37];
    char *f[3]; /* workflow, status, principal copies (NULL when absent) */
} fz_rec;

typedef struct fz_out {
    fz_rec *r;
    size_t n, cap;
} fz_out;

static char *fz_dup(const char *s)
{
    return s ? strdup(s) : NULL;
}

static int fz_cb(void *ud, const journal_line *l)
{
    fz_out *o = ud;
    if (o->n == o->cap) {
        o->cap = o->cap ? o->cap * 2 : 16;
        o->r = realloc(o->r, o->cap * sizeof *o->r);
        if (!o->r)
            abort();
    }
    fz_rec *r = &o->r[o->n++];
    r->off = l->off;
    r->len = l->len;
    memcpy(r->run_id, l->run_id, sizeof r->run_id);
    r->f[0] = fz_dup(l->workflow);
    r->f[1] = fz_dup(l->status);
    r->f[2] = fz_dup(l->principal);
    return 0;
}

static void fz_free(fz_out *o)
{
    for (size_t i = 0; i < o->n; i++)
        for (int k = 0; k < 3; k++)
            free(o->r[i].f[k]);
    free(o->r);
}

/* Scans text in pieces of `piece` bytes (0: whole, after a first piece of `first`). */
static size_t fz_scan(const char *text, size_t len, size_t cap, size_t first, size_t piece, fz_out *o)
{
    journal_scan s = {0};
    journal_scan_init(&s, cap, fz_cb, o);
    size_t at;
    if (first > len)
        first = len;
    if (journal_scan_feed(&s, text, first) != 0)
        abort();
    for (at = first; at < len;) {
        size_t n = piece && len - at > piece ? piece : len - at;
        if (journal_scan_feed(&s, text + at, n) != 0)
            abort();
        at += n;
    }
    journal_scan_finish(&s);
    if (s.records != o->n)
        abort();
    size_t skipped = s.skipped;
    journal_scan_free(&s);
    return skipped;
}

static int fz_same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void fz_same(const fz_out *a, const fz_out *b)
{
    if (a->n != b->n)
        abort();
    for (size_t i = 0; i < a->n; i++) {
        const fz_rec *x = &a->r[i], *y = &b->r[i];
        if (x->off != y->off || x->len != y->len || strcmp(x->run_id, y->run_id) != 0)
            abort();
        for (int k = 0; k < 3; k++)
            if (!fz_same_str(x->f[k], y->f[k]))
                abort();
    }
}

static void fz_check(const char *text, size_t len, size_t cap, const fz_out *o, size_t skipped)
{
    size_t lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';
    if (len && text[len - 1] != '\n')
        lines++;
    if (o->n + skipped != lines)
        abort();
    for (size_t i = 0; i < o->n; i++) {
        const fz_rec *r = &o->r[i];
        if (r->len == 0 || r->len > cap || r->off + r->len >= len || text[r->off + r->len] != '\n')
            abort();
        if (r->off > 0 && text[r->off - 1] != '\n')
            abort();
        if (memchr(text + r->off, '\n', r->len) || (i > 0 && r->off <= o->r[i - 1].off))
            abort();
        if (strlen(r->run_id) != 36 || !journal_is_uuid(r->run_id, 36))
            abort();
        for (int k = 0; k < 36; k++)
            if (r->run_id[k] >= 'A' && r->run_id[k] <= 'F')
                abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2 || size > (1 << 20))
        return 0;
    size_t cap = 1 + (size_t)data[0] * 4;
    size_t cut = data[1];
    const char *text = (const char *)data + 2;
    size_t len = size - 2;

    fz_out whole = {0}, two = {0}, small = {0};
    size_t skipped = fz_scan(text, len, cap, len, 0, &whole);
    fz_check(text, len, cap, &whole, skipped);
    if (fz_scan(text, len, cap, cut, 0, &two) != skipped)
        abort();
    fz_same(&whole, &two);
    if (fz_scan(text, len, cap, 0, 1 + cut % 7, &small) != skipped)
        abort();
    fz_same(&whole, &small);
    fz_free(&whole);
    fz_free(&two);
    fz_free(&small);
    return 0;
}
