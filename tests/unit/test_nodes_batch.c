/* Tests of BatchReaderNode and BatchProcessorNode: batches of data_items and of files in data_dir
 * (JSON list, JSON lines, CSV), the paths the file nodes refuse, batch_size bounds, and the SDK
 * BatchProcessorNode's adaptive batch size. Every suite run gets a fresh data_dir from mkdtemp. */
#include <criterion/criterion.h>
#include <ftw.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kailash/node.h"

extern const node_type node_batch_reader, node_batch_processor;

static char data_dir[PATH_MAX];
static char outside[PATH_MAX];
static node_env test_env;

#include "node_harness.h"

static void write_text(const char *dir, const char *rel, const char *text)
{
    char path[PATH_MAX * 2];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "cannot create %s", path);
    fwrite(text, 1, strlen(text), f);
    fclose(f);
}

static void make_dirs(void)
{
    char d1[] = "/tmp/kailash_batch_XXXXXX", d2[] = "/tmp/kailash_batch_out_XXXXXX";
    cr_assert_not_null(mkdtemp(d1));
    cr_assert_not_null(mkdtemp(d2));
    cr_assert_not_null(realpath(d1, data_dir));
    cr_assert_not_null(realpath(d2, outside));
    test_env = (node_env){.data_dir = data_dir};
    write_text(data_dir, "items.json", "[1, 2, 3, 4, 5]");
    write_text(data_dir, "items.jsonl", "{\"a\": 1}\n\n{\"a\": 2}\r\n\"x\"\n");
    write_text(data_dir, "rows.csv", "id,name\n1,ann\n2,bob\n3,cy\n");
    write_text(data_dir, "object.json", "{\"not\": \"a list\"}");
    write_text(data_dir, "bad.jsonl", "{\"a\": 1}\n{oops\n");
    write_text(outside, "secret.json", "[\"secret\"]");
    char link[PATH_MAX * 2], target[PATH_MAX * 2];
    snprintf(link, sizeof link, "%s/escape.json", data_dir);
    snprintf(target, sizeof target, "%s/secret.json", outside);
    cr_assert_eq(symlink(target, link), 0);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void remove_dirs(void)
{
    nftw(data_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    nftw(outside, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(batch, .init = make_dirs, .fini = remove_dirs);

Test(batch, data_items_of_any_type_are_cut_in_order)
{
    call_result r = run_node(&node_batch_reader, "{\"data_items\": [1, \"b\", null, {\"k\": [1]}, [2], true, 3.5],"
                                                 "\"batch_size\": 3}", NULL);
    cr_assert_eq(r.rc, 0, "%s", r.err.message);
    assert_port(r.out, "batches", "[[1, \"b\", null], [{\"k\": [1]}, [2], true], [3.5]]");
    assert_port(r.out, "count", "7");
    assert_port(r.out, "total_batches", "3");
    assert_port(r.out, "batch_size_used", "3");
    assert_port(r.out, "results", "[1, \"b\", null, {\"k\": [1]}, [2], true, 3.5]");
    json_decref(r.out);
}

Test(batch, empty_items_give_no_batches_for_the_reader)
{
    call_result r = run_node(&node_batch_reader, "{\"data_items\": []}", NULL);
    cr_assert_eq(r.rc, 0);
    assert_port(r.out, "batches", "[]");
    assert_port(r.out, "count", "0");
    json_decref(r.out);
    r = run_node(&node_batch_processor, "{\"data_items\": []}", NULL);
    cr_assert_eq(r.rc, -1, "the SDK refuses an empty data_items");
}

Test(batch, files_in_data_dir_json_lines_and_csv)
{
    call_result r = run_node(&node_batch_reader, "{\"file_path\": \"items.json\", \"batch_size\": 2}", NULL);
    cr_assert_eq(r.rc, 0, "%s", r.err.message);
    assert_port(r.out, "batches", "[[1, 2], [3, 4], [5]]");
    json_decref(r.out);
    r = run_node(&node_batch_reader, "{\"file_path\": \"items.jsonl\", \"batch_size\": 2}", NULL);
    cr_assert_eq(r.rc, 0, "%s", r.err.message);
    assert_port(r.out, "batches", "[[{\"a\": 1}, {\"a\": 2}], [\"x\"]]");
    json_decref(r.out);
    r = run_node(&node_batch_reader, "{\"file_path\": \"rows.csv\", \"batch_size\": 2}", NULL);
    cr_assert_eq(r.rc, 0, "%s", r.err.message);
    assert_port(r.out, "batches",
                "[[{\"id\": \"1\", \"name\": \"ann\"}, {\"id\": \"2\", \"name\": \"bob\"}], [{\"id\": \"3\", "
                "\"name\": \"cy\"}]]");
    json_decref(r.out);
}

Test(batch, bad_files_fail_with_their_name)
{
    call_result r = run_node(&node_batch_reader, "{\"file_path\": \"object.json\"}", NULL);
    cr_assert_eq(r.rc, -1);
    cr_assert(strstr(r.err.message, "object.json"), "%s", r.err.message);
    r = run_node(&node_batch_reader, "{\"file_path\": \"bad.jsonl\"}", NULL);
    cr_assert_eq(r.rc, -1);
    cr_assert(strstr(r.err.message, "line 2"), "%s", r.err.message);
    r = run_node(&node_batch_reader, "{\"file_path\": \"missing.json\"}", NULL);
    cr_assert_eq(r.rc, -1);
}

Test(batch, paths_out_of_data_dir_are_refused)
{
    char err[256];
    cr_assert_neq(compile_only(&node_batch_reader, "{\"file_path\": \"../x.json\"}", err, sizeof err), 0);
    cr_assert_neq(compile_only(&node_batch_reader, "{\"file_path\": \"/etc/passwd\"}", err, sizeof err), 0);
    cr_assert_neq(compile_only(&node_batch_processor, "{\"file_path\": \"escape.json\"}", err, sizeof err), 0);
    /* and at run, when a template or parameter supplies it */
    call_result r = run_node(&node_batch_reader, "{\"batch_size\": 1}", "{\"file_path\": \"escape.json\"}");
    cr_assert_eq(r.rc, -1);
    cr_assert_str_eq(r.err.code, "bad_request", "%s", r.err.message);
    r = run_node(&node_batch_reader, "{}", "{\"file_path\": \"../../etc/passwd\"}");
    cr_assert_eq(r.rc, -1);
}

Test(batch, batch_size_and_sources_are_checked_at_load)
{
    char err[256];
    const char *bad[] = {"{\"data_items\": [1], \"batch_size\": 0}", "{\"data_items\": [1], \"batch_size\": -3}",
                         "{\"data_items\": [1], \"batch_size\": 1000001}", "{\"data_items\": [1], \"batch_size\": 2.5}",
                         "{\"data_items\": [1], \"batch_size\": \"10\"}", "{\"data_items\": {\"a\": 1}}",
                         "{\"data_items\": [1], \"file_path\": \"items.json\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_neq(compile_only(&node_batch_reader, bad[i], err, sizeof err), 0, "accepted %s", bad[i]);
        cr_assert_neq(compile_only(&node_batch_processor, bad[i], err, sizeof err), 0, "accepted %s", bad[i]);
    }
    cr_assert_neq(compile_only(&node_batch_processor, "{\"operation\": \"api_batch_calls\"}", err, sizeof err), 0);
    call_result r = run_node(&node_batch_reader, "{}", "{\"data_items\": [1], \"batch_size\": 0}");
    cr_assert_eq(r.rc, -1, "a run-time batch_size is checked too");
}

Test(batch, processor_sizes_batches_as_the_sdk)
{
    /* the SDK's adaptive size with its defaults: min(100, 10 * 6, items) = 60 */
    json_t *items = json_array();
    for (int i = 0; i < 130; i++)
        json_array_append_new(items, json_integer(i));
    json_t *cfg = json_pack("{s:o}", "data_items", items);
    call_result r = run_json(&node_batch_processor, cfg, NULL);
    cr_assert_eq(r.rc, 0, "%s", r.err.message);
    assert_port(r.out, "batch_size_used", "60");
    assert_port(r.out, "total_batches", "3");
    assert_port(r.out, "success", "true");
    json_decref(r.out);
    json_object_set_new(cfg, "adaptive_batch_size", json_false());
    r = run_json(&node_batch_processor, cfg, NULL);
    assert_port(r.out, "batch_size_used", "100");
    assert_port(r.out, "total_batches", "2");
    json_decref(r.out);
    json_decref(cfg);
}
