/* store_journal: the embedded run store through store.h (store_start with a data_dir and no
 * database_url), plus the scanner and the index through journal_internal.h. Segments are read and
 * damaged by hand to check what a restart makes of them. Waiting for the writer polls the written
 * count (bounded only so that a hang fails instead of running forever). */
#include <criterion/criterion.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "../../src/store/journal_internal.h"
#include "../../src/store/store_internal.h"
#include "kailash/config.h"
#include "kailash/util.h"

/* ---- harness ---------------------------------------------------------------------------------- */

static char dir[64];
static kconfig *cfg;

static void setup_cfg(void)
{
    char err[256];
    snprintf(dir, sizeof dir, "/tmp/kjrnXXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    cr_assert_eq(config_load(NULL, &cfg, err, sizeof err), 0, "%s", err);
    free(cfg->data_dir);
    cfg->data_dir = strdup(dir);
    free(cfg->database_url);
    cfg->database_url = NULL;
    cfg->store_enabled = 1;
}

static void start(void)
{
    char err[256] = "";
    cr_assert_eq(store_start(cfg, err, sizeof err), 0, "%s", err);
    cr_assert(store_enabled());
}

static void stop(void)
{
    store_stop(util_now_ms() + 30000);
}

static const char *id(int i)
{
    static char ids[8][37];
    static int next;
    char *out = ids[next++ % 8];
    snprintf(out, 37, "0190a000-0000-7000-8000-%012d", i);
    return out;
}

/* pad: extra bytes in the record, to fill segments quickly. */
static void put_rec(int i, const char *wf, const char *status, const char *who, int pad)
{
    char json[8192];
    char fill[4096];
    memset(fill, 'x', (size_t)pad);
    fill[pad] = '\0';
    int n = snprintf(json, sizeof json,
                     "{\"run_id\":\"%s\",\"workflow\":\"%s\",\"status\":\"%s\",\"principal\":\"%s\",\"pad\":\"%s\"}",
                     id(i), wf, status, who, fill);
    store_rec r = {id(i), wf, status, who, json, (size_t)n};
    cr_assert_eq(store_put(&r), 0);
}

static void put(int i)
{
    put_rec(i, "orders", "completed", "key:ci", 0);
}

static void wait_written(uint64_t n)
{
    store_counts c;
    for (int tries = 0; tries < 30000; tries++) {
        store_counts_get(&c);
        if (c.written >= n)
            return;
        usleep(1000);
    }
    cr_assert_fail("only %llu of %llu records written", (unsigned long long)c.written, (unsigned long long)n);
}

static int health_up(void)
{
    store_health h;
    store_health_get(&h);
    cr_assert_str_eq(h.check, "journal");
    return h.up;
}

typedef struct got {
    int status;
    char *json;
    size_t len;
} got;

static void got_cb(void *ud, int status, const char *json, size_t len)
{
    got *g = ud;
    g->status = status;
    g->len = len;
    g->json = NULL;
    if (status == STORE_OK) {
        g->json = malloc(len + 1);
        memcpy(g->json, json, len);
        g->json[len] = '\0';
    }
}

/* The status of a get (the record's bytes into json when asked for). */
static int get(const char *run_id, char **json)
{
    got g = {-1, NULL, 0};
    store_get(run_id, got_cb, &g);
    cr_assert_neq(g.status, -1, "the callback did not run");
    if (json)
        *json = g.json;
    else
        free(g.json);
    return g.status;
}

typedef struct listed {
    int status;
    size_t n;
    char ids[STORE_LIST_MAX][37];
    int more;
} listed;

static void list_cb(void *ud, int status, const store_page *p)
{
    listed *l = ud;
    l->status = status;
    if (status != STORE_OK)
        return;
    l->n = p->n;
    l->more = p->more;
    for (size_t i = 0; i < p->n; i++) {
        util_copy(l->ids[i], 37, p->run_id[i]);
        /* every line served is the record of the run it is listed under */
        cr_assert(p->len[i] > 40 && memcmp(p->json[i], "{\"run_id\":\"", 11) == 0);
        cr_assert(strncasecmp(p->json[i] + 11, p->run_id[i], 36) == 0);
    }
}

static listed *list(const char *wf, const char *status, const char *who, const char *before, int limit)
{
    static listed l;
    memset(&l, 0, sizeof l);
    l.status = -1;
    store_query q = {wf, status, who, before, limit};
    store_list(&q, list_cb, &l);
    cr_assert_eq(l.status, STORE_OK);
    return &l;
}

static void seg_path(uint64_t seg, char *out, size_t cap)
{
    char name[32];
    journal_seg_name(seg, name);
    snprintf(out, cap, "%s/runs/%s", dir, name);
}

/* Segment files in data_dir/runs, and the newest's id. */
static int count_segments(uint64_t *newest)
{
    char path[128];
    snprintf(path, sizeof path, "%s/runs", dir);
    DIR *d = opendir(path);
    cr_assert_not_null(d);
    int n = 0;
    struct dirent *de;
    if (newest)
        *newest = 0;
    while ((de = readdir(d))) {
        uint64_t s = journal_seg_id(de->d_name);
        if (!s)
            continue;
        n++;
        if (newest && s > *newest)
            *newest = s;
    }
    closedir(d);
    return n;
}

static void append_file(const char *path, const char *text, size_t len)
{
    FILE *f = fopen(path, "ab");
    cr_assert_not_null(f, "%s", path);
    cr_assert_eq(fwrite(text, 1, len, f), len);
    fclose(f);
}

/* ---- writing and reading ---------------------------------------------------------------------- */

Test(store_journal, put_then_get_from_the_segment)
{
    setup_cfg();
    start();
    cr_assert(health_up());
    put(1);
    wait_written(1);
    char *json;
    cr_assert_eq(get(id(1), &json), STORE_OK);
    cr_assert(strstr(json, id(1)) && strstr(json, "\"status\":\"completed\""), "%s", json);
    cr_assert_eq(get(id(2), NULL), STORE_NOT_FOUND);

    /* the segment holds exactly the record's bytes and a newline */
    uint64_t newest;
    cr_assert_eq(count_segments(&newest), 1);
    char path[128], err[128];
    seg_path(newest, path, sizeof path);
    size_t len;
    char *text = util_read_file(path, 1 << 20, &len, err, sizeof err);
    cr_assert_not_null(text, "%s", err);
    cr_assert_eq(len, strlen(json) + 1);
    cr_assert(memcmp(text, json, len - 1) == 0 && text[len - 1] == '\n');
    free(text);
    free(json);
    stop();
}

Test(store_journal, list_order_filters_limit_before_more)
{
    setup_cfg();
    start();
    static const char *wf[] = {"orders", "billing"};
    static const char *st[] = {"completed", "failed", "timeout"};
    static const char *who[] = {"key:ci", "jwt:alice"};
    for (int i = 0; i < 12; i++) /* put out of order: the index sorts */
        put_rec((i * 5) % 12, wf[((i * 5) % 12) % 2], st[((i * 5) % 12) % 3], who[((i * 5) % 12) / 6], 0);
    wait_written(12);

    listed *l = list(NULL, NULL, NULL, NULL, 200);
    cr_assert_eq(l->n, 12);
    cr_assert_not(l->more);
    for (int i = 0; i < 12; i++)
        cr_assert_str_eq(l->ids[i], id(11 - i));

    l = list(NULL, NULL, NULL, NULL, 5);
    cr_assert_eq(l->n, 5);
    cr_assert(l->more);
    cr_assert_str_eq(l->ids[4], id(7));

    l = list(NULL, NULL, NULL, id(7), 5); /* the next page */
    cr_assert_eq(l->n, 5);
    cr_assert(l->more);
    cr_assert_str_eq(l->ids[0], id(6));
    l = list(NULL, NULL, NULL, id(2), 5); /* the last page */
    cr_assert_eq(l->n, 2);
    cr_assert_not(l->more);
    cr_assert_str_eq(l->ids[1], id(0));

    l = list("billing", NULL, NULL, NULL, 200); /* odd ones */
    cr_assert_eq(l->n, 6);
    cr_assert_str_eq(l->ids[0], id(11));
    cr_assert_str_eq(l->ids[5], id(1));

    l = list("orders", "completed", NULL, NULL, 200); /* i % 6 == 0 */
    cr_assert_eq(l->n, 2);
    cr_assert_str_eq(l->ids[0], id(6));
    cr_assert_str_eq(l->ids[1], id(0));

    l = list(NULL, "failed", "jwt:alice", NULL, 1); /* i in 7, 10 */
    cr_assert_eq(l->n, 1);
    cr_assert(l->more);
    cr_assert_str_eq(l->ids[0], id(10));
    l = list(NULL, "failed", "jwt:alice", id(10), 1);
    cr_assert_eq(l->n, 1);
    cr_assert_not(l->more);
    cr_assert_str_eq(l->ids[0], id(7));

    l = list("nope", NULL, NULL, NULL, 200);
    cr_assert_eq(l->n, 0);
    cr_assert_not(l->more);
    stop();
}

Test(store_journal, supersede_same_run)
{
    setup_cfg();
    start();
    put_rec(3, "orders", "running", "key:ci", 0);
    put_rec(3, "orders", "completed", "key:ci", 0);
    wait_written(2);
    char *json;
    cr_assert_eq(get(id(3), &json), STORE_OK);
    cr_assert(strstr(json, "\"completed\""), "%s", json);
    free(json);
    cr_assert_eq(list(NULL, "running", NULL, NULL, 200)->n, 0);
    cr_assert_eq(list(NULL, "completed", NULL, NULL, 200)->n, 1);
    cr_assert_eq(list(NULL, NULL, NULL, NULL, 200)->n, 1);
    stop();

    start(); /* the scan keeps the later line */
    cr_assert_eq(get(id(3), &json), STORE_OK);
    cr_assert(strstr(json, "\"completed\""), "%s", json);
    free(json);
    cr_assert_eq(list(NULL, "running", NULL, NULL, 200)->n, 0);
    cr_assert_eq(list(NULL, NULL, NULL, NULL, 200)->n, 1);
    stop();
}

Test(store_journal, records_survive_a_restart_and_the_last_segment_is_written_on)
{
    setup_cfg();
    start();
    for (int i = 0; i < 20; i++)
        put(i);
    wait_written(20);
    stop();
    cr_assert_eq(count_segments(NULL), 1);

    start();
    for (int i = 0; i < 20; i++)
        cr_assert_eq(get(id(i), NULL), STORE_OK, "run %d", i);
    listed *l = list(NULL, NULL, NULL, NULL, 200);
    cr_assert_eq(l->n, 20);
    cr_assert_str_eq(l->ids[0], id(19));
    put(20);
    wait_written(21);
    cr_assert_eq(count_segments(NULL), 1); /* a whole last segment is written on, not a new one each start */
    stop();
    start();
    cr_assert_eq(get(id(20), NULL), STORE_OK);
    cr_assert_eq(list(NULL, NULL, NULL, NULL, 200)->n, 21);
    stop();
}

/* JSON allows \u0000 in a string and an upstream's text can carry one into outputs: such a record is
 * written, so the restart's scan must index it too, not skip it as "not a record". */
Test(store_journal, record_with_an_escaped_nul_survives_a_restart)
{
    setup_cfg();
    start();
    char json[256];
    int n = snprintf(json, sizeof json,
                     "{\"run_id\":\"%s\",\"workflow\":\"orders\",\"status\":\"completed\",\"principal\":\"key:ci\","
                     "\"outputs\":{\"body\":\"a\\u0000b\"}}",
                     id(7));
    store_rec r = {id(7), "orders", "completed", "key:ci", json, (size_t)n};
    cr_assert_eq(store_put(&r), 0);
    wait_written(1);
    stop();
    start();
    char *back = NULL;
    cr_assert_eq(get(id(7), &back), STORE_OK);
    cr_assert_str_eq(back, json);
    free(back);
    cr_assert_eq(list("orders", NULL, NULL, NULL, 200)->n, 1);
    stop();
}

Test(store_journal, stop_writes_out_everything_queued)
{
    setup_cfg();
    cfg->store_batch_max = 7;
    start();
    for (int i = 0; i < 500; i++)
        put(i);
    stop(); /* no waiting: stop itself must write them */
    store_counts c;
    store_counts_get(&c);
    cr_assert_eq(c.pending, 0);
    start();
    for (int i = 0; i < 500; i++)
        cr_assert_eq(get(id(i), NULL), STORE_OK, "run %d", i);
    stop();
}

/* ---- what start-up makes of damaged segments ----------------------------------------------------- */

Test(store_journal, torn_last_line_is_skipped)
{
    setup_cfg();
    start();
    for (int i = 0; i < 3; i++)
        put(i);
    wait_written(3);
    stop();
    uint64_t newest;
    count_segments(&newest);
    char path[128], torn[100];
    seg_path(newest, path, sizeof path);
    int n = snprintf(torn, sizeof torn, "{\"run_id\":\"%s\",\"workflow\":\"or", id(4));
    append_file(path, torn, (size_t)n);

    start();
    cr_assert(health_up());
    for (int i = 0; i < 3; i++)
        cr_assert_eq(get(id(i), NULL), STORE_OK);
    cr_assert_eq(get(id(4), NULL), STORE_NOT_FOUND);
    put(5); /* goes to a new segment, not after the torn bytes */
    wait_written(4);
    stop();
    start();
    cr_assert_eq(get(id(5), NULL), STORE_OK);
    cr_assert_eq(list(NULL, NULL, NULL, NULL, 200)->n, 4);
    stop();
}

Test(store_journal, garbage_and_overlong_lines_are_skipped)
{
    setup_cfg();
    char path[128];
    snprintf(path, sizeof path, "%s/runs", dir);
    cr_assert_eq(mkdir(path, 0750), 0);
    seg_path(1, path, sizeof path);
    char line[300];
    int n = snprintf(line, sizeof line, "{\"run_id\":\"%s\",\"status\":\"completed\"}\n", id(1));
    append_file(path, line, (size_t)n);
    static const char junk[] = "not json\n{}\n{\"run_id\":\"nope\"}\n{\"run_id\":7}\n[1,2]\n\n\"x\"\n"
                               "{\"run_id\":\"0190a000-0000-7000-8000-00000000000g\"}\n{\"a\":1} trailing\n";
    append_file(path, junk, sizeof junk - 1);

    /* a record over the 16 MiB cap: refused even though it parses */
    size_t big = JOURNAL_LINE_MAX + 100;
    char *huge = malloc(big + 1);
    n = snprintf(huge, big, "{\"run_id\":\"%s\",\"pad\":\"", id(9));
    memset(huge + n, 'y', big - (size_t)n - 2);
    memcpy(huge + big - 2, "\"}", 2);
    huge[big] = '\n';
    append_file(path, huge, big + 1);
    free(huge);

    /* an upper-case id is indexed lower-case; the last line wins */
    n = snprintf(line, sizeof line, "{\"run_id\":\"0190A000-0000-7000-8000-00000000000%d\",\"status\":\"failed\"}\n",
                 2);
    append_file(path, line, (size_t)n);
    n = snprintf(line, sizeof line, "{\"run_id\":\"%s\",\"status\":\"timeout\"}\n", id(1));
    append_file(path, line, (size_t)n);

    start();
    cr_assert(health_up());
    char *json;
    cr_assert_eq(get(id(1), &json), STORE_OK);
    cr_assert(strstr(json, "timeout"), "%s", json);
    free(json);
    cr_assert_eq(get(id(2), &json), STORE_OK);
    cr_assert(strstr(json, "failed"), "%s", json);
    free(json);
    cr_assert_eq(get(id(9), NULL), STORE_NOT_FOUND);
    cr_assert_eq(list(NULL, NULL, NULL, NULL, 200)->n, 2);
    stop();
}

/* ---- rotation and retention --------------------------------------------------------------------- */

Test(store_journal, rotation_and_retention_by_count)
{
    setup_cfg();
    cfg->store_segment_bytes = 4096;
    cfg->store_batch_max = 1; /* one record per batch: rotation at a known record */
    cfg->store_retain_segments = 3;
    start();
    for (int i = 0; i < 40; i++)
        put_rec(i, "orders", "completed", "key:ci", 500);
    wait_written(40);
    /* ~620 bytes a record: a segment takes 7, so 40 made 6 or more; 3 are kept */
    cr_assert_eq(get(id(0), NULL), STORE_NOT_FOUND);
    cr_assert_eq(get(id(39), NULL), STORE_OK);
    listed *l = list(NULL, NULL, NULL, NULL, 200);
    cr_assert(l->n > 0 && l->n < 40, "%zu", l->n);
    cr_assert_str_eq(l->ids[0], id(39));
    cr_assert_str_eq(l->ids[l->n - 1], id(40 - (int)l->n)); /* the newest, without a gap */
    cr_assert_eq(get(id(40 - (int)l->n - 1), NULL), STORE_NOT_FOUND);
    stop();
    cr_assert_eq(count_segments(NULL), 3);

    start();
    cr_assert_eq(get(id(0), NULL), STORE_NOT_FOUND);
    cr_assert_eq(get(id(39), NULL), STORE_OK);
    stop();
}

Test(store_journal, retention_by_age)
{
    setup_cfg();
    cfg->store_retain_s = 3600;
    start();
    put(1);
    wait_written(1);
    stop();
    /* the first segment's newest record is two hours old: the next start neither writes on in it
     * nor keeps it */
    char path[128];
    seg_path(1, path, sizeof path);
    struct timeval old[2] = {{time(NULL) - 7200, 0}, {time(NULL) - 7200, 0}};
    cr_assert_eq(utimes(path, old), 0);

    start();
    cr_assert_eq(get(id(1), NULL), STORE_NOT_FOUND);
    cr_assert_eq(access(path, F_OK), -1);
    put(2);
    wait_written(2); /* the count runs on across starts */
    stop();
    start();
    cr_assert_eq(get(id(2), NULL), STORE_OK);
    stop();
}

/* ---- failure ---------------------------------------------------------------------------------- */

Test(store_journal, unwritable_directory_then_recovers)
{
    setup_cfg();
    char path[128];
    snprintf(path, sizeof path, "%s/runs", dir);
    append_file(path, "in the way\n", 11); /* a file where the directory goes: fails for root too */
    start();
    store_health h;
    store_health_get(&h);
    cr_assert_eq(h.up, 0);
    cr_assert(strstr(h.why, "runs"), "%s", h.why);
    /* 600 records wait, then go in one batch: 1200 iovecs, more than one pwritev takes (IOV_MAX) */
    for (int i = 0; i < 600; i++)
        put(i);
    cr_assert_eq(get(id(1), NULL), STORE_OK); /* from the pending set */
    store_counts c;
    store_counts_get(&c);
    cr_assert_eq(c.written, 0);
    cr_assert_eq(c.pending, 600);

    cr_assert_eq(unlink(path), 0);
    wait_written(600);
    cr_assert(health_up());
    stop();
    start();
    for (int i = 0; i < 600; i++)
        cr_assert_eq(get(id(i), NULL), STORE_OK, "run %d", i);
    stop();
}

static int all_lines_are_records(void *ud, const journal_line *l)
{
    (void)l;
    ++*(int *)ud;
    return 0;
}

Test(store_journal, failed_write_is_cut_back_and_retried)
{
    setup_cfg();
    signal(SIGXFSZ, SIG_IGN); /* a write past RLIMIT_FSIZE then fails with EFBIG */
    start();
    put(0);
    wait_written(1);
    uint64_t seg;
    count_segments(&seg);
    char path[128];
    seg_path(seg, path, sizeof path);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    struct rlimit lim = {(rlim_t)st.st_size + 100, RLIM_INFINITY};
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);

    for (int i = 1; i < 4; i++) /* each longer than the 100 bytes left: the batch fails part-way */
        put_rec(i, "orders", "completed", "key:ci", 300);
    for (int tries = 0; tries < 30000 && health_up(); tries++)
        usleep(1000);
    store_health h;
    store_health_get(&h);
    cr_assert_eq(h.up, 0);
    cr_assert(strstr(h.why, "File too large"), "%s", h.why);
    struct stat now;
    cr_assert_eq(stat(path, &now), 0);
    cr_assert_eq(now.st_size, st.st_size, "the torn batch was not cut off: %lld", (long long)now.st_size);

    lim.rlim_cur = RLIM_INFINITY;
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
    wait_written(4);
    cr_assert(health_up());
    stop();

    /* every line of the segment is a whole record */
    char err[128];
    size_t len;
    char *text = util_read_file(path, 1 << 20, &len, err, sizeof err);
    cr_assert_not_null(text, "%s", err);
    int records = 0;
    journal_scan s = {0};
    journal_scan_init(&s, JOURNAL_LINE_MAX, all_lines_are_records, &records);
    cr_assert_eq(journal_scan_feed(&s, text, len), 0);
    journal_scan_finish(&s);
    cr_assert_eq(s.skipped, 0);
    cr_assert_eq(records, 4);
    journal_scan_free(&s);
    free(text);
}

/* ---- the scanner and the index directly --------------------------------------------------------- */

typedef struct seen {
    int n;
    uint64_t off[16];
    size_t len[16];
    char ids[16][37];
    char wf[16][16];
} seen;

static int seen_cb(void *ud, const journal_line *l)
{
    seen *s = ud;
    cr_assert_lt(s->n, 16);
    s->off[s->n] = l->off;
    s->len[s->n] = l->len;
    util_copy(s->ids[s->n], 37, l->run_id);
    util_copy(s->wf[s->n], 16, l->workflow ? l->workflow : "-");
    s->n++;
    return 0;
}

Test(store_journal, scanner_same_answer_whatever_the_pieces)
{
    static const char text[] = "{\"run_id\":\"0190a000-0000-7000-8000-000000000001\",\"workflow\":\"a\"}\n"
                               "garbage\n"
                               "{\"run_id\":\"0190a000-0000-7000-8000-000000000002\",\"workflow\":7,\"pad\":"
                               "\"zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz\"}\n"
                               "{\"run_id\":\"0190a000-0000-7000-8000-000000000003\"}\n"
                               "{\"run_id\":\"0190a000-0000-7000-8000-000000000004\",\"tor";
    size_t len = sizeof text - 1;
    seen whole = {0};
    journal_scan s = {0};
    journal_scan_init(&s, 100, seen_cb, &whole);
    cr_assert_eq(journal_scan_feed(&s, text, len), 0);
    journal_scan_finish(&s);
    /* 1 and 3 are records; garbage, the 2nd (over the 100-byte cap) and the torn tail are not */
    cr_assert_eq(whole.n, 2);
    cr_assert_eq(s.records, 2);
    cr_assert_eq(s.skipped, 3);
    cr_assert_str_eq(whole.ids[1], "0190a000-0000-7000-8000-000000000003");
    cr_assert_str_eq(whole.wf[0], "a");
    cr_assert_str_eq(whole.wf[1], "-");
    cr_assert(memcmp(text + whole.off[1], "{\"run_id\":\"0190a000-0000-7000-8000-000000000003\"}", whole.len[1]) == 0);
    cr_assert_eq(text[whole.off[1] + whole.len[1]], '\n');
    journal_scan_free(&s);

    for (size_t piece = 1; piece < 70; piece += 3) {
        seen bits = {0};
        journal_scan_init(&s, 100, seen_cb, &bits);
        for (size_t at = 0; at < len; at += piece)
            cr_assert_eq(journal_scan_feed(&s, text + at, at + piece > len ? len - at : piece), 0);
        journal_scan_finish(&s);
        cr_assert_eq(s.skipped, 3, "pieces of %zu", piece);
        cr_assert_eq(bits.n, whole.n);
        for (int i = 0; i < whole.n; i++) {
            cr_assert_eq(bits.off[i], whole.off[i]);
            cr_assert_eq(bits.len[i], whole.len[i]);
            cr_assert_str_eq(bits.ids[i], whole.ids[i]);
        }
        journal_scan_free(&s);
    }
}

Test(store_journal, index_keeps_the_higher_seq)
{
    static jidx ix = {.lock = PTHREAD_RWLOCK_INITIALIZER};
    jidx_init(&ix);
    jidx_wrlock(&ix);
    cr_assert_eq(jidx_put_locked(&ix, id(1), "w", "completed", "p", 1, 0, 10, 5), 0);
    cr_assert_eq(jidx_put_locked(&ix, id(1), "w", "running", "p", 1, 20, 10, 3), 0); /* older: ignored */
    cr_assert_eq(jidx_put_locked(&ix, id(2), NULL, NULL, NULL, 2, 0, 10, 0), 0);
    jidx_unlock(&ix);
    jidx_loc loc;
    cr_assert(jidx_find(&ix, id(1), &loc));
    cr_assert_eq(loc.off, 0);
    store_query q = {NULL, "running", NULL, NULL, 10};
    jidx_loc out[10];
    int more;
    cr_assert_eq(jidx_select(&ix, &q, out, &more), 0);
    q.status = NULL;
    q.workflow = "w"; /* a record without a workflow matches no workflow filter */
    cr_assert_eq(jidx_select(&ix, &q, out, &more), 1);
    jidx_drop_segment(&ix, 1);
    cr_assert_not(jidx_find(&ix, id(1), &loc));
    cr_assert(jidx_find(&ix, id(2), &loc));
    cr_assert_eq(jidx_count(&ix), 1);
    jidx_clear(&ix);
    cr_assert_eq(jidx_count(&ix), 0);
}
