/* Tests of the file node types and of node_file_resolve.
 *
 * Every test gets a fresh data_dir from mkdtemp (with symlinks resolved, as the config module hands
 * it over) and a second temporary directory outside it, for symlinks that try to escape. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../src/nodes/file.h"
#include "kailash/node.h"

extern const node_type node_json_reader, node_csv_reader, node_json_writer;
extern const node_type node_csv_writer, node_text_reader, node_text_writer;

static char data_dir[PATH_MAX];
static char outside[PATH_MAX];
static node_env test_env;

#include "node_harness.h"

static void write_text(const char *rel, const char *text)
{
    char path[PATH_MAX * 2];
    snprintf(path, sizeof path, "%s/%s", data_dir, rel);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "cannot create %s", path);
    fwrite(text, 1, strlen(text), f);
    fclose(f);
}

/* Reads data_dir/rel whole into a static buffer. */
static const char *read_text(const char *rel)
{
    static char text[4096];
    char path[PATH_MAX * 2];
    snprintf(path, sizeof path, "%s/%s", data_dir, rel);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    fclose(f);
    return text;
}

static void make_dirs(void)
{
    char dir1[] = "/tmp/kailash_nodes_XXXXXX", dir2[] = "/tmp/kailash_outside_XXXXXX";
    cr_assert_not_null(mkdtemp(dir1));
    cr_assert_not_null(mkdtemp(dir2));
    cr_assert_not_null(realpath(dir1, data_dir));
    cr_assert_not_null(realpath(dir2, outside));
    test_env = (node_env){.data_dir = data_dir};
    char p[PATH_MAX * 2];
    snprintf(p, sizeof p, "%s/sub", data_dir);
    cr_assert_eq(mkdir(p, 0755), 0);
    snprintf(p, sizeof p, "%s/secret.json", outside);
    FILE *f = fopen(p, "w");
    fputs("{\"secret\": true}", f);
    fclose(f);
    /* out -> the outside dir, outfile -> a file in it, inlink -> sub (stays inside). */
    snprintf(p, sizeof p, "%s/out", data_dir);
    cr_assert_eq(symlink(outside, p), 0);
    char target[PATH_MAX * 2];
    snprintf(target, sizeof target, "%s/secret.json", outside);
    snprintf(p, sizeof p, "%s/outfile", data_dir);
    cr_assert_eq(symlink(target, p), 0);
    snprintf(p, sizeof p, "%s/inlink", data_dir);
    cr_assert_eq(symlink("sub", p), 0);
    write_text("sub/a.json", "{\"a\": [1, 2]}");
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

TestSuite(file_resolve, .init = make_dirs, .fini = remove_dirs);
TestSuite(csv, .init = make_dirs, .fini = remove_dirs);
TestSuite(json_file, .init = make_dirs, .fini = remove_dirs);
TestSuite(csv_writer, .init = make_dirs, .fini = remove_dirs);
TestSuite(text_file, .init = make_dirs, .fini = remove_dirs);

/* ---- node_file_resolve ---- */

/* Resolves file_path and asserts success with data_dir/expect_rel as the result. */
static void resolve_ok(const char *file_path, int for_write, const char *expect_rel)
{
    char out[PATH_MAX], err[256] = "", want[PATH_MAX * 2];
    int rc = node_file_resolve(data_dir, file_path, for_write, out, sizeof out, err, sizeof err);
    cr_assert_eq(rc, 0, "'%s': %s", file_path, err);
    snprintf(want, sizeof want, "%s/%s", data_dir, expect_rel);
    cr_assert_str_eq(out, want);
}

/* Resolves file_path and asserts failure with exactly message expect. */
static void resolve_fails(const char *file_path, int for_write, const char *expect)
{
    char out[PATH_MAX] = "", err[256] = "";
    int rc = node_file_resolve(data_dir, file_path, for_write, out, sizeof out, err, sizeof err);
    cr_assert_eq(rc, -1, "'%s' resolved to %s", file_path, out);
    cr_assert_str_eq(err, expect);
    cr_assert_null(strstr(err, outside), "message shows the outside path: %s", err);
}

Test(file_resolve, relative_paths_are_folded_inside_data_dir)
{
    resolve_ok("sub/a.json", 0, "sub/a.json");
    resolve_ok("./sub//../sub/./a.json", 0, "sub/a.json");
    resolve_ok("new.json", 1, "new.json");
    resolve_ok("sub/new.json", 1, "sub/new.json");
    resolve_ok("missing/dir/x.json", 0, "missing/dir/x.json");
}

Test(file_resolve, absolute_path_inside)
{
    char abs[PATH_MAX * 2];
    snprintf(abs, sizeof abs, "%s/sub/a.json", data_dir);
    resolve_ok(abs, 0, "sub/a.json");
    snprintf(abs, sizeof abs, "%s/sub/../new.json", data_dir);
    resolve_ok(abs, 1, "new.json");
}

Test(file_resolve, dotdot_escape_is_refused)
{
    resolve_fails("../x", 0, "file_path '../x' escapes data_dir");
    resolve_fails("sub/../../x.json", 1, "file_path 'sub/../../x.json' escapes data_dir");
    resolve_fails(".", 0, "file_path '.' names data_dir itself, not a file in it");
    resolve_fails("", 0, "file_path must not be empty");
}

Test(file_resolve, absolute_path_outside_is_refused_without_echo)
{
    resolve_fails("/etc/passwd", 0, "file_path: an absolute path outside data_dir is refused");
    char abs[PATH_MAX * 2];
    snprintf(abs, sizeof abs, "%s/secret.json", outside);
    resolve_fails(abs, 0, "file_path: an absolute path outside data_dir is refused");
    snprintf(abs, sizeof abs, "%s/../x", data_dir);
    resolve_fails(abs, 1, "file_path: an absolute path outside data_dir is refused");
}

Test(file_resolve, symlinks_leading_outside_are_refused)
{
    resolve_fails("out/secret.json", 0, "file_path 'out/secret.json' escapes data_dir through a symlink");
    resolve_fails("out/new.json", 1, "file_path 'out/new.json' escapes data_dir through a symlink");
    resolve_fails("out/a/b/c", 0, "file_path 'out/a/b/c' escapes data_dir through a symlink");
    resolve_fails("outfile", 0, "file_path 'outfile' escapes data_dir through a symlink");
    resolve_ok("inlink/a.json", 0, "inlink/a.json");
}

/* Makes data_dir/rel a symlink to target (absolute, or relative to data_dir). */
static void make_link(const char *target, const char *rel)
{
    char p[PATH_MAX * 2];
    snprintf(p, sizeof p, "%s/%s", data_dir, rel);
    cr_assert_eq(symlink(target, p), 0, "symlink %s: %s", p, strerror(errno));
}

/* data_dir/dangle.txt -> outside/made.txt and data_dir/dangle_dir -> outside/nodir, both missing:
 * a write through either would create something outside data_dir. */
static void make_dangling_links(void)
{
    char target[PATH_MAX * 2];
    snprintf(target, sizeof target, "%s/made.txt", outside);
    make_link(target, "dangle.txt");
    snprintf(target, sizeof target, "%s/nodir", outside);
    make_link(target, "dangle_dir");
}

/* 1 when outside/rel exists (something escaped data_dir). */
static int exists_outside(const char *rel)
{
    char p[PATH_MAX * 2];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", outside, rel);
    return lstat(p, &st) == 0;
}

Test(file_resolve, dangling_symlinks_are_refused)
{
    make_dangling_links();
    make_link("sub/none.txt", "dangle_in.txt"); /* to nothing inside: still where it leads is unchecked */
    const char *why = "file_path 'dangle.txt' goes through a symlink whose target does not exist";
    resolve_fails("dangle.txt", 0, why);
    resolve_fails("dangle.txt", 1, why);
    resolve_fails("sub/../dangle.txt", 1, "file_path 'sub/../dangle.txt' goes through a symlink whose target does not exist");
    resolve_fails("dangle_in.txt", 1, "file_path 'dangle_in.txt' goes through a symlink whose target does not exist");
    resolve_fails("dangle_dir/x.txt", 1,
                  "file_path 'dangle_dir/x.txt' goes through a symlink whose target does not exist");
    resolve_fails("dangle_dir/a/b", 0, "file_path 'dangle_dir/a/b' goes through a symlink whose target does not exist");
    /* a missing file under a real directory is still fine, for reading (reported later) and writing */
    resolve_ok("sub/none.txt", 1, "sub/none.txt");
    resolve_ok("inlink/none.txt", 0, "inlink/none.txt");
}

Test(file_resolve, write_needs_an_existing_directory)
{
    resolve_fails("nodir/x.json", 1, "file_path 'nodir/x.json': its directory does not exist");
    resolve_fails("sub/a.json/x", 1, "file_path 'sub/a.json/x': its directory does not exist");
}

/* ---- calling the file nodes ---- */

/* Runs a CSV reader on data_dir/t.csv holding text, with extra config (JSON members or ""). */
static call_result csv_read(const char *text, const char *config_members)
{
    char cfg[512];
    write_text("t.csv", text);
    snprintf(cfg, sizeof cfg, "{\"file_path\": \"t.csv\"%s%s}", *config_members ? ", " : "", config_members);
    return run_node(&node_csv_reader, cfg, NULL);
}

static void csv_expect(const char *text, const char *config_members, const char *expected)
{
    call_result r = csv_read(text, config_members);
    cr_assert_eq(r.rc, 0, "%s", r.err.message);
    assert_port(r.out, "data", expected);
    json_decref(r.out);
}

static void csv_expect_error(const char *text, const char *config_members, const char *message)
{
    call_result r = csv_read(text, config_members);
    cr_assert_eq(r.rc, -1);
    cr_assert_str_eq(r.err.code, "internal");
    cr_assert_str_eq(r.err.message, message);
}

/* ---- CSVReaderNode ---- */

Test(csv, header_rows_become_objects_of_strings)
{
    csv_expect("id,name,total\n1,Ann,9.50\n2,Bob,\n", "",
               "[{\"id\": \"1\", \"name\": \"Ann\", \"total\": \"9.50\"}, {\"id\": \"2\", \"name\": \"Bob\", "
               "\"total\": \"\"}]");
}

Test(csv, rfc4180_quoting)
{
    csv_expect("name,note\r\n\"Smith, J\",\"He said \"\"hi\"\"\"\r\n\"two\r\nlines\",\"\"\r\n", "",
               "[{\"name\": \"Smith, J\", \"note\": \"He said \\\"hi\\\"\"},"
               " {\"name\": \"two\\r\\nlines\", \"note\": \"\"}]");
    csv_expect("a,b\nx\"y,\"q\"\n", "", "[{\"a\": \"x\\\"y\", \"b\": \"q\"}]");
}

Test(csv, headers_false_gives_arrays)
{
    csv_expect("1,2,3\n\"a\nb\",,\n", "\"headers\": false", "[[\"1\", \"2\", \"3\"], [\"a\\nb\", \"\", \"\"]]");
}

Test(csv, custom_delimiters)
{
    csv_expect("a;b\n\"1;2\";3\n", "\"delimiter\": \";\"", "[{\"a\": \"1;2\", \"b\": \"3\"}]");
    csv_expect("a\tb\nx,y\tz\n", "\"delimiter\": \"\\t\"", "[{\"a\": \"x,y\", \"b\": \"z\"}]");
}

/* Expectations from the SDK's own code (csv.reader with universal newlines, dict(zip(header, row))). */
Test(csv, blank_lines_bom_and_missing_final_newline)
{
    csv_expect("\xEF\xBB\xBFk,v\n\n1,2\r\n\r\n3,4", "",
               "[{}, {\"k\": \"1\", \"v\": \"2\"}, {}, {\"k\": \"3\", \"v\": \"4\"}]");
    csv_expect("", "", "[]");
    csv_expect("only,header\n", "", "[]");
    csv_expect("a\n\n\n", "", "[{}, {}]");
    csv_expect("a,b\rc,d\r", "\"headers\": false", "[[\"a\", \"b\"], [\"c\", \"d\"]]");
    csv_expect("\n\na,b\n", "\"headers\": false", "[[], [], [\"a\", \"b\"]]");
    csv_expect("a,b\n\"\"\n", "", "[{\"a\": \"\"}]");
    csv_expect("x\n \n", "", "[{\"x\": \" \"}]");
}

Test(csv, rows_pair_with_the_header_as_dict_zip)
{
    csv_expect("a,b,c\n1\n", "", "[{\"a\": \"1\"}]");
    csv_expect("a,b\n1,2\n\n1,2,3\n", "", "[{\"a\": \"1\", \"b\": \"2\"}, {}, {\"a\": \"1\", \"b\": \"2\"}]");
    csv_expect("a,a,b\n1,2,3\n", "", "[{\"a\": \"2\", \"b\": \"3\"}]");
    csv_expect("\na,b\n1,2\n", "", "[{}, {}]"); /* an empty first line is an empty header */
}

Test(csv, malformed_quotes_fail_with_their_line)
{
    csv_expect_error("a,b\n1,\"open\nstill open\n", "", "file 't.csv': line 2: quoted field is not closed");
    csv_expect_error("a,b\n\"x\"y,2\n", "", "file 't.csv': line 2: unexpected character after a closing quote");
    csv_expect_error("a\n\"multi\nline\"\n\"bad\"!\n", "",
                     "file 't.csv': line 4: unexpected character after a closing quote");
}

Test(csv, options_checked_at_load_and_run)
{
    char err[256];
    cr_assert_eq(compile_only(&node_csv_reader, "{\"file_path\": \"t.csv\", \"delimiter\": \";;\"}", err, sizeof err),
                 -1);
    cr_assert_str_eq(err, "config.delimiter: expected one character other than a quote or a line break");
    cr_assert_eq(compile_only(&node_csv_reader, "{\"file_path\": \"t.csv\", \"delimiter\": \"\\\"\"}", err, sizeof err),
                 -1);
    cr_assert_eq(compile_only(&node_csv_reader, "{\"file_path\": \"t.csv\", \"headers\": \"yes\"}", err, sizeof err),
                 -1);
    cr_assert_str_eq(err, "config.headers: expected a boolean");
    cr_assert_eq(compile_only(&node_csv_reader, "{\"file_path\": \"../t.csv\"}", err, sizeof err), -1);
    cr_assert_str_eq(err, "config.file_path: '../t.csv' escapes data_dir");
    cr_assert_eq(compile_only(&node_csv_reader, "{\"file_path\": \"{{inputs.f}}\", \"headers\": \"{{inputs.h}}\"}", err,
                              sizeof err),
                 0);
    write_text("t.csv", "a\n1\n");
    call_result r = run_node(&node_csv_reader, "{\"file_path\": \"{{inputs.f}}\", \"headers\": \"{{inputs.h}}\"}",
                             "{\"file_path\": \"t.csv\", \"headers\": \"no\"}");
    cr_assert_eq(r.rc, -1);
    cr_assert_str_eq(r.err.message, "headers: expected a boolean");
    cr_assert(node_csv_reader.has_output(NULL, "data"));
    cr_assert_not(node_csv_reader.has_output(NULL, "rows"));
}

/* ---- JSONReaderNode and JSONWriterNode ---- */

Test(json_file, writer_then_reader_round_trip)
{
    const char *doc = "{\"order\": {\"id\": 7, \"total\": 12.5, \"items\": [\"a\", \"\\u00e9\"], \"paid\": null}}";
    char extra[512];
    snprintf(extra, sizeof extra, "{\"data\": %s}", doc);
    call_result w = run_node(&node_json_writer, "{\"file_path\": \"sub/out.json\"}", extra);
    cr_assert_eq(w.rc, 0, "%s", w.err.message);
    assert_port(w.out, "file_path", "\"sub/out.json\"");
    cr_assert_eq(json_object_size(w.out), 1);
    json_decref(w.out);
    cr_assert_str_eq(read_text("sub/out.json"),
                     "{\n  \"order\": {\n    \"id\": 7,\n    \"total\": 12.5,\n    \"items\": [\n      \"a\",\n"
                     "      \"\xC3\xA9\"\n    ],\n    \"paid\": null\n  }\n}");
    call_result r = run_node(&node_json_reader, "{\"file_path\": \"sub/out.json\"}", NULL);
    cr_assert_eq(r.rc, 0, "%s", r.err.message);
    assert_port(r.out, "data", doc);
    json_decref(r.out);
}

Test(json_file, writer_indent0_replaces_and_leaves_no_temp_files)
{
    call_result w = run_node(&node_json_writer, "{\"file_path\": \"x.json\", \"indent\": 0, \"data\": [1]}", NULL);
    cr_assert_eq(w.rc, 0, "%s", w.err.message);
    json_decref(w.out);
    w = run_node(&node_json_writer, "{\"file_path\": \"x.json\", \"indent\": 0}", "{\"data\": {\"b\": [true, \"s\"]}}");
    cr_assert_eq(w.rc, 0);
    json_decref(w.out);
    cr_assert_str_eq(read_text("x.json"), "{\n\"b\": [\ntrue,\n\"s\"\n]\n}"); /* Python's indent=0 */
    char p[PATH_MAX * 2];
    snprintf(p, sizeof p, "%s/x.json", data_dir);
    struct stat st;
    cr_assert_eq(stat(p, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0644);
    int entries = 0;
    FILE *ls;
    snprintf(p, sizeof p, "ls -A '%s' | grep -c '^\\.' || true", data_dir);
    ls = popen(p, "r");
    cr_assert_eq(fscanf(ls, "%d", &entries), 1);
    pclose(ls);
    cr_assert_eq(entries, 0, "temporary files left behind");
}

Test(json_file, writer_scalar_and_templated_path)
{
    call_result w = run_node(&node_json_writer, "{\"file_path\": \"{{inputs.name}}\"}",
                             "{\"file_path\": \"sub/s.json\", \"data\": \"text\"}");
    cr_assert_eq(w.rc, 0, "%s", w.err.message);
    assert_port(w.out, "file_path", "\"sub/s.json\"");
    json_decref(w.out);
    cr_assert_str_eq(read_text("sub/s.json"), "\"text\"");
}

Test(json_file, run_time_escapes_are_bad_requests)
{
    call_result w = run_node(&node_json_writer, "{\"file_path\": \"{{inputs.name}}\"}",
                             "{\"file_path\": \"../evil.json\", \"data\": 1}");
    cr_assert_eq(w.rc, -1);
    cr_assert_str_eq(w.err.code, "bad_request");
    cr_assert_str_eq(w.err.message, "file_path '../evil.json' escapes data_dir");
    w = run_node(&node_json_writer, "{\"file_path\": \"{{inputs.name}}\"}",
                 "{\"file_path\": \"out/x.json\", \"data\": 1}");
    cr_assert_eq(w.rc, -1);
    cr_assert_str_eq(w.err.code, "bad_request");
    cr_assert_str_eq(w.err.message, "file_path 'out/x.json' escapes data_dir through a symlink");
    char p[PATH_MAX * 2];
    snprintf(p, sizeof p, "%s/x.json", outside);
    cr_assert_neq(access(p, F_OK), 0, "the writer wrote outside data_dir");
    call_result r = run_node(&node_json_reader, "{\"file_path\": \"{{inputs.f}}\"}", "{\"file_path\": \"outfile\"}");
    cr_assert_eq(r.rc, -1);
    cr_assert_str_eq(r.err.code, "bad_request");
    w = run_node(&node_json_writer, "{\"file_path\": \"nodir/x.json\"}", "{\"data\": 1}");
    cr_assert_eq(w.rc, -1);
    cr_assert_str_eq(w.err.message, "file_path 'nodir/x.json': its directory does not exist");
}

Test(json_file, reader_errors)
{
    call_result r = run_node(&node_json_reader, "{\"file_path\": \"nope.json\"}", NULL);
    cr_assert_eq(r.rc, -1);
    cr_assert_str_eq(r.err.code, "internal");
    cr_assert_str_eq(r.err.message, "file 'nope.json' not found");
    write_text("bad.json", "{\"a\": 1,\n \"b\": }");
    r = run_node(&node_json_reader, "{\"file_path\": \"bad.json\"}", NULL);
    cr_assert_eq(r.rc, -1);
    cr_assert_str_eq(r.err.code, "internal");
    cr_assert(strncmp(r.err.message, "file 'bad.json': invalid JSON at line 2", 39) == 0, "%s", r.err.message);
    r = run_node(&node_json_reader, "{\"file_path\": \"sub\"}", NULL);
    cr_assert_eq(r.rc, -1);
    cr_assert_str_eq(r.err.message, "file 'sub' is not a regular file");
    r = run_node(&node_json_reader, "{\"file_path\": \"{{inputs.f}}\"}", "{\"file_path\": 5}");
    cr_assert_eq(r.rc, -1);
    cr_assert_str_eq(r.err.message, "file_path: expected a string");
}

/* A FIFO in data_dir fails the run at once instead of holding a worker until someone writes to it. */
Test(json_file, reader_refuses_a_fifo_without_blocking, .timeout = 10)
{
    char p[PATH_MAX * 2];
    snprintf(p, sizeof p, "%s/pipe.json", data_dir);
    cr_assert_eq(mkfifo(p, 0600), 0);
    call_result r = run_node(&node_json_reader, "{\"file_path\": \"pipe.json\"}", NULL);
    cr_assert_eq(r.rc, -1);
    cr_assert_str_eq(r.err.message, "file 'pipe.json' is not a regular file");
    r = run_node(&node_csv_reader, "{\"file_path\": \"pipe.json\"}", NULL);
    cr_assert_eq(r.rc, -1);
    cr_assert_str_eq(r.err.message, "file 'pipe.json' is not a regular file");
}

Test(json_file, reader_refuses_files_over_64_mib)
{
    char p[PATH_MAX * 2];
    snprintf(p, sizeof p, "%s/big.json", data_dir);
    int fd = open(p, O_CREAT | O_WRONLY, 0644);
    cr_assert_geq(fd, 0);
    cr_assert_eq(ftruncate(fd, ((off_t)64 << 20) + 1), 0); /* sparse: costs no disk */
    close(fd);
    call_result r = run_node(&node_json_reader, "{\"file_path\": \"big.json\"}", NULL);
    cr_assert_eq(r.rc, -1);
    cr_assert_str_eq(r.err.message, "file 'big.json' is larger than 64 MiB");
}

Test(json_file, reader_scalar_top_level_and_absolute_path)
{
    write_text("n.json", "  42 \n");
    char cfg[PATH_MAX * 2 + 32];
    snprintf(cfg, sizeof cfg, "{\"file_path\": \"%s/n.json\"}", data_dir);
    call_result r = run_node(&node_json_reader, cfg, NULL);
    cr_assert_eq(r.rc, 0, "%s", r.err.message);
    assert_port(r.out, "data", "42");
    json_decref(r.out);
}

Test(json_file, compile_checks)
{
    char err[256];
    cr_assert_eq(compile_only(&node_json_reader, "{\"file_path\": \"../x\"}", err, sizeof err), -1);
    cr_assert_str_eq(err, "config.file_path: '../x' escapes data_dir");
    cr_assert_eq(compile_only(&node_json_reader, "{\"file_path\": \"/etc/passwd\"}", err, sizeof err), -1);
    cr_assert_str_eq(err, "config.file_path: an absolute path outside data_dir is refused");
    cr_assert_eq(compile_only(&node_json_reader, "{\"file_path\": 3}", err, sizeof err), -1);
    cr_assert_str_eq(err, "config.file_path: expected a string");
    cr_assert_eq(compile_only(&node_json_writer, "{\"file_path\": \"out/x.json\"}", err, sizeof err), -1);
    cr_assert_str_eq(err, "config.file_path: 'out/x.json' escapes data_dir through a symlink");
    cr_assert_eq(compile_only(&node_json_writer, "{\"file_path\": \"later/x.json\"}", err, sizeof err), 0);
    cr_assert_eq(compile_only(&node_json_writer, "{\"file_path\": \"x.json\", \"indent\": 9}", err, sizeof err), -1);
    cr_assert_str_eq(err, "config.indent: expected an integer from 0 to 8");
    cr_assert_eq(
        compile_only(&node_json_writer, "{\"file_path\": \"x.json\", \"indent\": \"{{inputs.i}}\"}", err, sizeof err),
        0);
    cr_assert(node_json_writer.has_output(NULL, "file_path"));
    cr_assert(node_json_reader.has_output(NULL, "data"));
    cr_assert_not(node_json_reader.has_output(NULL, "file_path"));
}

/* ---- CSVWriterNode, TextReaderNode, TextWriterNode ---- */

/* 1 when data_dir/rel exists. */
static int exists(const char *rel)
{
    char path[PATH_MAX * 2];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", data_dir, rel);
    return lstat(path, &st) == 0;
}

/* Runs node with config and extra, asserts failure with code and exactly message. */
static void run_fails(const node_type *t, const char *config, const char *extra, const char *code, const char *message)
{
    call_result r = run_node(t, config, extra);
    cr_assert_eq(r.rc, -1, "%s + %s succeeded", config, extra ? extra : "");
    cr_assert_null(r.out);
    cr_assert_str_eq(r.err.code, code, "%s: %s", r.err.code, r.err.message);
    cr_assert_str_eq(r.err.message, message);
    cr_assert_null(strstr(r.err.message, outside), "message shows the outside path: %s", r.err.message);
}

/* CSVWriterNode writes out.csv from data (JSON text) with the extra config (JSON members or "");
 * asserts success, rows_written and the exact file text. */
static void csv_writes(const char *cfg_extra, const char *data, int rows, const char *text)
{
    char cfg[512], extra[2048];
    snprintf(cfg, sizeof cfg, "{\"file_path\": \"out.csv\"%s}", cfg_extra);
    snprintf(extra, sizeof extra, "{\"data\": %s}", data);
    call_result r = run_node(&node_csv_writer, cfg, extra);
    cr_assert_eq(r.rc, 0, "%s: %s", data, r.err.message);
    char want[64];
    snprintf(want, sizeof want, "%d", rows);
    assert_port(r.out, "rows_written", want);
    assert_port(r.out, "file_path", "\"out.csv\"");
    cr_assert_str_eq(read_text("out.csv"), text, "%s", data);
    json_decref(r.out);
}

Test(csv_writer, dict_rows_as_python_dictwriter)
{
    csv_writes("", "[{\"name\": \"ada\", \"age\": 36}, {\"name\": \"bob\", \"age\": 25}]", 2,
               "name,age\r\nada,36\r\nbob,25\r\n");
    /* a missing column is "", null is "" */
    csv_writes("", "[{\"a\": 1, \"b\": 2}, {\"a\": null}, {\"b\": 3}]", 3, "a,b\r\n1,2\r\n,\r\n,3\r\n");
    /* headers choose and order the columns */
    csv_writes(", \"headers\": [\"b\", \"a\"]", "[{\"a\": 1, \"b\": 2}]", 1, "b,a\r\n2,1\r\n");
    /* an empty key is a header of one empty field, written "" */
    csv_writes("", "[{\"\": 1}]", 1, "\"\"\r\n1\r\n");
}

Test(csv_writer, cells_as_python_str_and_quote_minimal)
{
    csv_writes("", "[[true, false, null, 1.5, 2.0, 1e20, 1e-05, -7, 0.1]]", 1,
               "True,False,,1.5,2.0,1e+20,1e-05,-7,0.1\r\n");
    csv_writes("", "[[\"x,y\", \"q\\\"q\", \"a\\nb\", \"c\\rd\", \" sp \", \"it's\", \"\"]]", 1,
               "\"x,y\",\"q\"\"q\",\"a\nb\",\"c\rd\", sp ,it's,\r\n");
    /* one empty field is written "", an empty row is an empty line */
    csv_writes("", "[[\"\"], [], [null], [\"\", \"\"]]", 4, "\"\"\r\n\r\n\"\"\r\n,\r\n");
    csv_writes(", \"headers\": [\"h1\", \"h,2\"]", "[[1, 2]]", 1, "h1,\"h,2\"\r\n1,2\r\n");
}

Test(csv_writer, delimiters_including_multibyte)
{
    csv_writes(", \"delimiter\": \";\"", "[{\"a\": \"1;2\", \"b\": \"x,y\"}]", 1, "a;b\r\n\"1;2\";x,y\r\n");
    csv_writes(", \"delimiter\": \"\\t\"", "[[\"a\\tb\", \"c\"]]", 1, "\"a\tb\"\tc\r\n");
    csv_writes(", \"delimiter\": \"\\u00a7\"", "[[\"a\\u00a7b\", \"c\\u00a8\"]]", 1,
               "\"a\xc2\xa7" "b\"\xc2\xa7" "c\xc2\xa8\r\n");
    char err[256];
    cr_assert_eq(compile_only(&node_csv_writer, "{\"file_path\": \"o.csv\", \"delimiter\": \"ab\"}", err, sizeof err),
                 -1);
    cr_assert_str_eq(err, "config.delimiter: expected one character other than a quote or a line break");
    cr_assert_eq(compile_only(&node_csv_writer, "{\"delimiter\": \"\\\"\"}", err, sizeof err), -1);
    cr_assert_eq(compile_only(&node_csv_writer, "{\"delimiter\": \"\\n\"}", err, sizeof err), -1);
    cr_assert_eq(compile_only(&node_csv_writer, "{\"delimiter\": 44}", err, sizeof err), -1);
    cr_assert_eq(compile_only(&node_csv_writer, "{\"delimiter\": \"{{inputs.d}}\"}", err, sizeof err), 0);
    run_fails(&node_csv_writer, "{\"file_path\": \"o.csv\"}", "{\"data\": [[1]], \"delimiter\": \"::\"}", "internal",
              "delimiter: expected one character other than a quote or a line break");
    cr_assert_not(exists("o.csv"));
}

Test(csv_writer, bad_data_fails_and_writes_nothing)
{
    const char *cfg = "{\"file_path\": \"o.csv\"}";
    run_fails(&node_csv_writer, cfg, "{\"data\": [[1, [2]]]}", "internal",
              "data[0][1]: a list or object cannot be a CSV cell");
    run_fails(&node_csv_writer, cfg, "{\"data\": [{\"a\": {\"b\": 1}}]}", "internal",
              "data[0].a: a list or object cannot be a CSV cell");
    run_fails(&node_csv_writer, cfg, "{\"data\": [{\"a\": 1}, {\"a\": 2, \"b\": 3}]}", "internal",
              "data[1]: key 'b' is not one of the columns");
    run_fails(&node_csv_writer, cfg, "{\"data\": [{\"a\": 1}, [1]]}", "internal",
              "data[1]: expected an object like the first row");
    run_fails(&node_csv_writer, cfg, "{\"data\": [[1], \"abc\"]}", "internal",
              "data[1]: expected a list like the first row");
    run_fails(&node_csv_writer, cfg, "{\"data\": [\"abc\"]}", "internal", "data[0]: expected an object or a list");
    run_fails(&node_csv_writer, cfg, "{\"data\": {\"a\": 1}}", "internal",
              "data: expected a list of rows (objects or lists)");
    run_fails(&node_csv_writer, cfg, "{\"data\": \"abc\"}", "internal",
              "data: expected a list of rows (objects or lists)");
    run_fails(&node_csv_writer, cfg, NULL, "bad_request",
              "input 'data' is missing (give it in inputs, or in parameters for this node)");
    run_fails(&node_csv_writer, "{\"file_path\": \"o.csv\", \"data\": null}", NULL, "bad_request",
              "input 'data' is missing (give it in inputs, or in parameters for this node)");
    run_fails(&node_csv_writer, cfg, "{\"data\": [[1]], \"headers\": [1]}", "internal",
              "headers[0]: expected a string");
    cr_assert_not(exists("o.csv"));
}

Test(csv_writer, empty_data_answers_zero_rows_and_writes_nothing)
{
    call_result r = run_node(&node_csv_writer, "{\"file_path\": \"o.csv\"}", "{\"data\": []}");
    cr_assert_eq(r.rc, 0, "%s", r.err.message);
    assert_port(r.out, "rows_written", "0");
    cr_assert_null(json_object_get(r.out, "file_path"), "the SDK's early return has no file_path");
    cr_assert_eq(json_object_size(r.out), 1);
    json_decref(r.out);
    cr_assert_not(exists("o.csv"));
}

Test(csv_writer, headers_true_is_refused_naming_the_key)
{
    char err[256];
    cr_assert_eq(compile_only(&node_csv_writer, "{\"file_path\": \"o.csv\", \"headers\": true}", err, sizeof err), -1);
    cr_assert_not_null(strstr(err, "config.headers: true is not supported"), "%s", err);
    cr_assert_eq(compile_only(&node_csv_writer, "{\"file_path\": \"o.csv\", \"headers\": \"a,b\"}", err, sizeof err),
                 -1);
    cr_assert_str_eq(err, "config.headers: expected a list of column names");
    cr_assert_eq(compile_only(&node_csv_writer, "{\"file_path\": \"o.csv\", \"headers\": false}", err, sizeof err), 0);
    cr_assert_eq(compile_only(&node_csv_writer, "{\"file_path\": \"o.csv\", \"headers\": null}", err, sizeof err), 0);
}

Test(csv_writer, path_escapes_and_directories_are_refused)
{
    const char *data = "{\"data\": [[1]]}";
    char cfg[PATH_MAX * 2 + 64], err[256];
    cr_assert_eq(compile_only(&node_csv_writer, "{\"file_path\": \"../x.csv\"}", err, sizeof err), -1);
    cr_assert_str_eq(err, "config.file_path: '../x.csv' escapes data_dir");
    /* at run (a templated or request-given path): bad_request, and nothing written outside */
    run_fails(&node_csv_writer, "{}", "{\"data\": [[1]], \"file_path\": \"../x.csv\"}", "bad_request",
              "file_path '../x.csv' escapes data_dir");
    snprintf(cfg, sizeof cfg, "{\"data\": [[1]], \"file_path\": \"%s/x.csv\"}", outside);
    run_fails(&node_csv_writer, "{}", cfg, "bad_request", "file_path: an absolute path outside data_dir is refused");
    run_fails(&node_csv_writer, "{}", "{\"data\": [[1]], \"file_path\": \"out/x.csv\"}", "bad_request",
              "file_path 'out/x.csv' escapes data_dir through a symlink");
    run_fails(&node_csv_writer, "{}", "{\"data\": [[1]], \"file_path\": \"outfile\"}", "bad_request",
              "file_path 'outfile' escapes data_dir through a symlink");
    run_fails(&node_csv_writer, "{\"file_path\": \"sub\"}", data, "internal",
              "file 'sub' could not be written: Is a directory");
    run_fails(&node_csv_writer, "{\"file_path\": \"nodir/x.csv\"}", data, "bad_request",
              "file_path 'nodir/x.csv': its directory does not exist");
    char p[PATH_MAX * 2];
    snprintf(p, sizeof p, "%s/x.csv", outside);
    cr_assert_neq(access(p, F_OK), 0, "a file was written outside data_dir");
    snprintf(p, sizeof p, "%s/secret.json", outside);
    FILE *f = fopen(p, "r");
    char buf[64] = "";
    cr_assert_not_null(fgets(buf, sizeof buf, f));
    fclose(f);
    cr_assert_str_eq(buf, "{\"secret\": true}");
    struct stat st;
    snprintf(p, sizeof p, "%s/sub", data_dir);
    cr_assert(stat(p, &st) == 0 && S_ISDIR(st.st_mode), "the directory was replaced");
}

Test(csv_writer, round_trip_through_csv_reader)
{
    const char *rows = "[{\"name\": \"a,b\", \"note\": \"say \\\"hi\\\"\\r\\nbye\", \"city\": \"Z\\u00fcrich\"},"
                       " {\"name\": \"\", \"note\": \"\\n\", \"city\": \" x \"}]";
    char extra[1024];
    snprintf(extra, sizeof extra, "{\"data\": %s}", rows);
    call_result w = run_node(&node_csv_writer, "{\"file_path\": \"sub/rt.csv\"}", extra);
    cr_assert_eq(w.rc, 0, "%s", w.err.message);
    json_decref(w.out);
    call_result r = run_node(&node_csv_reader, "{\"file_path\": \"sub/rt.csv\"}", NULL);
    cr_assert_eq(r.rc, 0, "%s", r.err.message);
    assert_port(r.out, "data", rows);
    json_decref(r.out);
    /* lists, with a multibyte delimiter, read back with headers false (ASCII delimiter only there) */
    w = run_node(&node_csv_writer, "{\"file_path\": \"rt2.csv\", \"delimiter\": \";\"}",
                 "{\"data\": [[\"1;2\", \"\"], [\"q\\\"\", \"\"]]}");
    cr_assert_eq(w.rc, 0, "%s", w.err.message);
    json_decref(w.out);
    r = run_node(&node_csv_reader, "{\"file_path\": \"rt2.csv\", \"delimiter\": \";\", \"headers\": false}", NULL);
    cr_assert_eq(r.rc, 0, "%s", r.err.message);
    assert_port(r.out, "data", "[[\"1;2\", \"\"], [\"q\\\"\", \"\"]]");
    json_decref(r.out);
}

/* A wide object row costs one lookup per key: the column check used to scan every column for every
 * key, and one row of 40,000 keys (under 1 MiB of request) held a worker for about 20 s. */
Test(csv_writer, wide_rows_are_linear, .timeout = 10)
{
    enum { KEYS = 40000 };
    json_t *row = json_object(), *row2 = json_object();
    char key[16];
    for (int i = 0; i < KEYS; i++) {
        snprintf(key, sizeof key, "k%05d", i);
        json_object_set_new(row, key, json_integer(i));
        json_object_set_new(row2, key, json_integer(-i));
    }
    json_t *cfg = json_pack("{s:s, s:[O, O]}", "file_path", "wide.csv", "data", row, row2);
    void *compiled = NULL;
    char err[256];
    cr_assert_eq(node_csv_writer.compile(&test_env, cfg, &compiled, err, sizeof err), 0, "%s", err);
    call_result r = run_compiled(&node_csv_writer, compiled, cfg, NULL);
    cr_assert_eq(r.rc, 0, "%s", r.err.message);
    assert_port(r.out, "rows_written", "2");
    json_decref(r.out);
    /* the lookup really decides: a key that is not a column still fails, naming it */
    json_object_set_new(row2, "stray", json_true()); /* row2 is data[1] */
    r = run_compiled(&node_csv_writer, compiled, cfg, NULL);
    cr_assert_eq(r.rc, -1);
    cr_assert_str_eq(r.err.message, "data[1]: key 'stray' is not one of the columns");
    free(compiled);
    json_decref(cfg);
    json_decref(row);
    json_decref(row2);
}

Test(csv_writer, text_over_64_mib_fails_without_writing)
{
    size_t n = ((size_t)40 << 20);
    char *big = malloc(n);
    cr_assert_not_null(big);
    memset(big, 'x', n);
    json_t *cfg = json_pack("{s:s, s:[[s%], [s%]]}", "file_path", "big.csv", "data", big, n, big, n);
    free(big);
    cr_assert_not_null(cfg);
    call_result r = run_json(&node_csv_writer, cfg, NULL);
    json_decref(cfg);
    cr_assert_eq(r.rc, -1);
    cr_assert_str_eq(r.err.message, "the CSV text would be larger than 64 MiB");
    cr_assert_not(exists("big.csv"));
}

Test(csv_writer, file_replace_and_append_refuse_what_they_must)
{
    char p[PATH_MAX * 2];
    snprintf(p, sizeof p, "%s/sub", data_dir);
    errno = 0;
    cr_assert_eq(node_file_replace(p, "x", 1), -1);
    cr_assert_eq(errno, EISDIR);
    cr_assert_eq(node_file_append(p, "x", 1, "", 0), -1);
    cr_assert_eq(errno, EISDIR);
    snprintf(p, sizeof p, "%s/r.txt", data_dir);
    cr_assert_eq(node_file_replace(p, "x", NODE_FILE_WRITE_MAX + 1), -1);
    cr_assert_eq(errno, EFBIG);
    cr_assert_eq(node_file_append(p, "x", NODE_FILE_WRITE_MAX, "abc", 3), -1);
    cr_assert_eq(errno, EFBIG);
    cr_assert_not(exists("r.txt"));
    cr_assert_eq(node_file_replace(p, "one", 3), 0);
    cr_assert_eq(node_file_replace(p, "", 0), 0);
    cr_assert_str_eq(read_text("r.txt"), "");
    cr_assert_eq(node_file_append(p, "b", 1, "L", 1), 0); /* empty file: the lead goes first */
    cr_assert_eq(node_file_append(p, "c", 1, "L", 1), 0);
    cr_assert_str_eq(read_text("r.txt"), "Lbc");
    struct stat st;
    cr_assert_eq(stat(p, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0644);
    /* no temporary file (".r.txt.XXXXXX") is left behind */
    DIR *d = opendir(data_dir);
    cr_assert_not_null(d);
    struct dirent *e;
    while ((e = readdir(d)))
        cr_assert_neq(strncmp(e->d_name, ".r.txt.", 7), 0, "left behind: %s", e->d_name);
    closedir(d);
}

/* A name of up to NAME_MAX (255) bytes can be written: the temporary file's name, 8 bytes longer,
 * is cut to fit (it used to fail with ENAMETOOLONG from 248 bytes on, where Python's open works). */
Test(csv_writer, file_replace_takes_names_up_to_name_max)
{
    char name[256], p[PATH_MAX * 2];
    memset(name, 'n', 255);
    name[255] = '\0';
    memcpy(name + 251, ".txt", 4);
    snprintf(p, sizeof p, "%s/%s", data_dir, name);
    cr_assert_eq(node_file_replace(p, "one", 3), 0, "%s", strerror(errno));
    cr_assert_eq(node_file_replace(p, "two", 3), 0, "%s", strerror(errno));
    cr_assert_str_eq(read_text(name), "two");
    DIR *d = opendir(data_dir); /* only the file itself, no temporary one left behind */
    cr_assert_not_null(d);
    struct dirent *e;
    int files = 0;
    while ((e = readdir(d)))
        files += e->d_name[0] == '.' && e->d_name[1] && strcmp(e->d_name, "..") != 0;
    closedir(d);
    cr_assert_eq(files, 0, "a temporary file was left behind");
}

/* ---- TextReaderNode ---- */

/* Writes len bytes to data_dir/rel. */
static void write_bytes(const char *rel, const char *bytes, size_t len)
{
    char path[PATH_MAX * 2];
    snprintf(path, sizeof path, "%s/%s", data_dir, rel);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(bytes, 1, len, f), len);
    fclose(f);
}

/* TextReaderNode on t.txt holding bytes, with encoding (or NULL); asserts its text is want (JSON). */
static void text_reads(const char *bytes, size_t len, const char *encoding, const char *want)
{
    char cfg[128];
    write_bytes("t.txt", bytes, len);
    if (encoding)
        snprintf(cfg, sizeof cfg, "{\"file_path\": \"t.txt\", \"encoding\": \"%s\"}", encoding);
    else
        snprintf(cfg, sizeof cfg, "{\"file_path\": \"t.txt\"}");
    call_result r = run_node(&node_text_reader, cfg, NULL);
    cr_assert_eq(r.rc, 0, "%s", r.err.message);
    assert_port(r.out, "text", want);
    cr_assert_eq(json_object_size(r.out), 1);
    json_decref(r.out);
}

Test(text_file, reader_decodes_as_python_text_mode)
{
    text_reads("line one\nline two \xc3\xa9\n", 21, NULL, "\"line one\\nline two \\u00e9\\n\"");
    text_reads("a\r\nb\rc\n\r\r\n", 10, "utf-8", "\"a\\nb\\nc\\n\\n\\n\"");
    text_reads("\xef\xbb\xbfhi", 5, "UTF8", "\"\\ufeffhi\"");
    text_reads("\xef\xbb\xbfhi", 5, "utf-8-sig", "\"hi\"");
    text_reads("hi", 2, "utf_8_sig", "\"hi\"");
    text_reads("\xff\x01\xe9", 3, "ISO-8859-1", "\"\\u00ff\\u0001\\u00e9\"");
    text_reads("\r", 1, "latin-1", "\"\\n\"");
    text_reads("plain", 5, "us-ascii", "\"plain\"");
    text_reads("", 0, NULL, "\"\"");
    text_reads("\xf0\x9f\x98\x80", 4, NULL, "\"\\ud83d\\ude00\"");
}

Test(text_file, reader_refuses_bytes_that_do_not_decode)
{
    const char *cfg = "{\"file_path\": \"t.txt\"}";
    write_bytes("t.txt", "ok\xff", 3);
    run_fails(&node_text_reader, cfg, NULL, "internal", "file 't.txt' is not valid utf-8: byte 0xff at offset 2");
    write_bytes("t.txt", "\xed\xa0\x80", 3); /* a surrogate */
    run_fails(&node_text_reader, cfg, NULL, "internal", "file 't.txt' is not valid utf-8: byte 0xed at offset 0");
    write_bytes("t.txt", "\xc0\xaf", 2); /* overlong '/' */
    run_fails(&node_text_reader, cfg, NULL, "internal", "file 't.txt' is not valid utf-8: byte 0xc0 at offset 0");
    write_bytes("t.txt", "ab\xe2\x82", 4); /* cut short */
    run_fails(&node_text_reader, cfg, NULL, "internal", "file 't.txt' is not valid utf-8: byte 0xe2 at offset 2");
    write_bytes("t.txt", "\xf4\x90\x80\x80", 4); /* past U+10FFFF */
    run_fails(&node_text_reader, cfg, NULL, "internal", "file 't.txt' is not valid utf-8: byte 0xf4 at offset 0");
    write_bytes("t.txt", "caf\xc3\xa9", 5);
    run_fails(&node_text_reader, "{\"file_path\": \"t.txt\", \"encoding\": \"ascii\"}", NULL, "internal",
              "file 't.txt' is not valid ascii: byte 0xc3 at offset 3");
    run_fails(&node_text_reader, "{\"file_path\": \"none.txt\"}", NULL, "internal", "file 'none.txt' not found");
    run_fails(&node_text_reader, "{\"file_path\": \"sub\"}", NULL, "internal", "file 'sub' is not a regular file");
}

Test(text_file, reader_paths_and_encodings_are_checked)
{
    char err[256], cfg[PATH_MAX * 2 + 64];
    cr_assert_eq(compile_only(&node_text_reader, "{\"file_path\": \"t.txt\", \"encoding\": \"utf-16\"}", err, sizeof err),
                 -1);
    cr_assert_str_eq(err, "config.encoding: 'utf-16' is not supported (kailashd reads and writes utf-8, utf-8-sig, "
                          "ascii and latin-1)");
    cr_assert_eq(compile_only(&node_text_reader, "{\"file_path\": \"t.txt\", \"encoding\": 8}", err, sizeof err), -1);
    cr_assert_str_eq(err, "config.encoding: expected a string");
    cr_assert_eq(compile_only(&node_text_reader, "{\"encoding\": \"{{inputs.e}}\"}", err, sizeof err), 0);
    cr_assert_eq(compile_only(&node_text_reader, "{\"file_path\": \"../etc/passwd\"}", err, sizeof err), -1);
    cr_assert_str_eq(err, "config.file_path: '../etc/passwd' escapes data_dir");
    run_fails(&node_text_reader, "{}", "{\"file_path\": \"outfile\"}", "bad_request",
              "file_path 'outfile' escapes data_dir through a symlink");
    run_fails(&node_text_reader, "{}", "{\"file_path\": \"../../etc/passwd\"}", "bad_request",
              "file_path '../../etc/passwd' escapes data_dir");
    snprintf(cfg, sizeof cfg, "{\"file_path\": \"%s/secret.json\"}", outside);
    run_fails(&node_text_reader, "{}", cfg, "bad_request", "file_path: an absolute path outside data_dir is refused");
    write_text("t.txt", "x");
    run_fails(&node_text_reader, "{\"file_path\": \"t.txt\"}", "{\"encoding\": \"cp1252\"}", "internal",
              "encoding: 'cp1252' is not supported (kailashd reads and writes utf-8, utf-8-sig, ascii and latin-1)");
    cr_assert(node_text_reader.has_output(NULL, "text"));
    cr_assert_not(node_text_reader.has_output(NULL, "data"));
}

/* ---- TextWriterNode ---- */

/* TextWriterNode with config cfg and extra; asserts success with bytes_written. */
static void text_writes(const char *cfg, const char *extra, long bytes)
{
    call_result r = run_node(&node_text_writer, cfg, extra);
    cr_assert_eq(r.rc, 0, "%s: %s", extra, r.err.message);
    char want[32];
    snprintf(want, sizeof want, "%ld", bytes);
    assert_port(r.out, "bytes_written", want);
    cr_assert(json_is_string(json_object_get(r.out, "file_path")));
    json_decref(r.out);
}

Test(text_file, writer_replaces_and_counts_encoded_bytes)
{
    text_writes("{\"file_path\": \"w.txt\"}", "{\"text\": \"hello\\nworld\"}", 11);
    cr_assert_str_eq(read_text("w.txt"), "hello\nworld");
    text_writes("{\"file_path\": \"w.txt\", \"append\": false}", "{\"text\": \"a\\r\\n\\u00e9\"}", 5);
    cr_assert_str_eq(read_text("w.txt"), "a\r\n\xc3\xa9");
    text_writes("{\"file_path\": \"w.txt\", \"encoding\": \"latin1\"}", "{\"text\": \"\\u00e9\\u00ff\"}", 2);
    cr_assert_str_eq(read_text("w.txt"), "\xe9\xff");
    text_writes("{\"file_path\": \"w.txt\", \"encoding\": \"utf-8-sig\"}", "{\"text\": \"\\u00e9\"}", 5);
    cr_assert_str_eq(read_text("w.txt"), "\xef\xbb\xbf\xc3\xa9");
    text_writes("{\"file_path\": \"w.txt\"}", "{\"text\": \"\"}", 0);
    cr_assert_str_eq(read_text("w.txt"), "");
}

Test(text_file, writer_fails_before_writing_what_cannot_be_encoded)
{
    write_text("w.txt", "before");
    run_fails(&node_text_writer, "{\"file_path\": \"w.txt\", \"encoding\": \"ascii\"}", "{\"text\": \"ok \\u00e9\"}",
              "internal", "text: character U+00E9 at position 3 cannot be encoded in ascii");
    run_fails(&node_text_writer, "{\"file_path\": \"w.txt\", \"encoding\": \"latin-1\"}",
              "{\"text\": \"\\u20ac\", \"append\": true}", "internal",
              "text: character U+20AC at position 0 cannot be encoded in latin-1");
    cr_assert_str_eq(read_text("w.txt"), "before");
    run_fails(&node_text_writer, "{\"file_path\": \"w.txt\"}", "{\"text\": 5}", "internal",
              "text: expected a string, got a scalar");
    run_fails(&node_text_writer, "{\"file_path\": \"w.txt\"}", "{\"text\": null}", "bad_request",
              "input 'text' is missing (give it in inputs, or in parameters for this node)");
    run_fails(&node_text_writer, "{\"file_path\": \"w.txt\"}", "{\"text\": [\"a\"]}", "internal",
              "text: expected a string, got a container");
    run_fails(&node_text_writer, "{\"file_path\": \"w.txt\"}", NULL, "bad_request",
              "input 'text' is missing (give it in inputs, or in parameters for this node)");
    run_fails(&node_text_writer, "{\"file_path\": \"w.txt\"}", "{\"text\": \"x\", \"append\": \"yes\"}", "internal",
              "append: expected a boolean");
    cr_assert_str_eq(read_text("w.txt"), "before");
    char err[256];
    cr_assert_eq(compile_only(&node_text_writer, "{\"file_path\": \"w.txt\", \"append\": 1}", err, sizeof err), -1);
    cr_assert_str_eq(err, "config.append: expected a boolean");
    cr_assert_eq(compile_only(&node_text_writer, "{\"file_path\": \"w.txt\", \"encoding\": \"bogus\"}", err, sizeof err),
                 -1);
    cr_assert_str_eq(err, "config.encoding: 'bogus' is not supported (kailashd reads and writes utf-8, utf-8-sig, "
                          "ascii and latin-1)");
}

Test(text_file, writer_appends_for_real)
{
    const char *cfg = "{\"file_path\": \"log.txt\", \"append\": true}";
    text_writes(cfg, "{\"text\": \"one\\n\"}", 4); /* created */
    text_writes(cfg, "{\"text\": \"two \\u00e9\\n\"}", 7);
    text_writes(cfg, "{\"text\": \"\"}", 0);
    cr_assert_str_eq(read_text("log.txt"), "one\ntwo \xc3\xa9\n");
    /* utf-8-sig: the mark only into an empty file, but counted each time (as the SDK does) */
    const char *sig = "{\"file_path\": \"sig.txt\", \"append\": true, \"encoding\": \"utf-8-sig\"}";
    text_writes(sig, "{\"text\": \"a\"}", 4);
    text_writes(sig, "{\"text\": \"b\"}", 4);
    cr_assert_str_eq(read_text("sig.txt"), "\xef\xbb\xbf" "ab");
    /* append through the request: a non-default value given at run */
    text_writes("{\"file_path\": \"log.txt\"}", "{\"text\": \"3\", \"append\": true}", 1);
    cr_assert_str_eq(read_text("log.txt"), "one\ntwo \xc3\xa9\n3");
}

Test(text_file, writer_append_refuses_a_fifo_a_directory_and_escapes, .timeout = 10)
{
    char p[PATH_MAX * 2];
    snprintf(p, sizeof p, "%s/pipe.txt", data_dir);
    cr_assert_eq(mkfifo(p, 0644), 0);
    run_fails(&node_text_writer, "{\"file_path\": \"pipe.txt\", \"append\": true}", "{\"text\": \"x\"}", "internal",
              "file 'pipe.txt' could not be written: not a regular file");
    run_fails(&node_text_writer, "{\"file_path\": \"sub\", \"append\": true}", "{\"text\": \"x\"}", "internal",
              "file 'sub' could not be written: Is a directory");
    run_fails(&node_text_writer, "{\"file_path\": \"sub\"}", "{\"text\": \"x\"}", "internal",
              "file 'sub' could not be written: Is a directory");
    run_fails(&node_text_writer, "{\"append\": true}", "{\"text\": \"x\", \"file_path\": \"outfile\"}", "bad_request",
              "file_path 'outfile' escapes data_dir through a symlink");
    run_fails(&node_text_writer, "{\"append\": true}", "{\"text\": \"x\", \"file_path\": \"sub/../../x.txt\"}",
              "bad_request", "file_path 'sub/../../x.txt' escapes data_dir");
    snprintf(p, sizeof p, "{\"text\": \"x\", \"file_path\": \"%s/x.txt\"}", outside);
    run_fails(&node_text_writer, "{}", p, "bad_request", "file_path: an absolute path outside data_dir is refused");
    snprintf(p, sizeof p, "%s/secret.json", outside);
    FILE *f = fopen(p, "r");
    char buf[64] = "";
    cr_assert_not_null(fgets(buf, sizeof buf, f));
    fclose(f);
    cr_assert_str_eq(buf, "{\"secret\": true}");
}

Test(text_file, writer_refuses_text_over_64_mib)
{
    size_t n = NODE_FILE_WRITE_MAX + 1;
    char *big = malloc(n);
    cr_assert_not_null(big);
    memset(big, 'y', n);
    json_t *cfg = json_pack("{s:s, s:s%}", "file_path", "big.txt", "text", big, n);
    free(big);
    call_result r = run_json(&node_text_writer, cfg, NULL);
    json_decref(cfg);
    cr_assert_eq(r.rc, -1);
    cr_assert_str_eq(r.err.message, "text: longer than 64 MiB");
    cr_assert_not(exists("big.txt"));
}

Test(text_file, copy_round_trip_keeps_text)
{
    write_bytes("in.txt", "caf\xc3\xa9\n\ttab\x00nul\n", 15);
    call_result r = run_node(&node_text_reader, "{\"file_path\": \"in.txt\"}", NULL);
    cr_assert_eq(r.rc, 0, "%s", r.err.message);
    json_t *text = json_object_get(r.out, "text");
    cr_assert_eq(json_string_length(text), 15);
    json_t *cfg = json_pack("{s:s, s:O}", "file_path", "sub/out.txt", "text", text);
    json_decref(r.out);
    call_result w = run_json(&node_text_writer, cfg, NULL);
    json_decref(cfg);
    cr_assert_eq(w.rc, 0, "%s", w.err.message);
    assert_port(w.out, "bytes_written", "15");
    assert_port(w.out, "file_path", "\"sub/out.txt\"");
    json_decref(w.out);
    char p[PATH_MAX * 2], got[32];
    snprintf(p, sizeof p, "%s/sub/out.txt", data_dir);
    FILE *f = fopen(p, "rb");
    cr_assert_eq(fread(got, 1, sizeof got, f), 15);
    fclose(f);
    cr_assert_eq(memcmp(got, "caf\xc3\xa9\n\ttab\x00nul\n", 15), 0);
}

/* A dangling link's target would be created by open(O_CREAT): every writer refuses the link at run
 * (a request-given path) and at load (a literal one), and nothing appears outside data_dir. */
Test(text_file, writers_refuse_dangling_symlinks, .timeout = 10)
{
    const char *why = "file_path 'dangle.txt' goes through a symlink whose target does not exist";
    char err[256];
    make_dangling_links();
    run_fails(&node_text_writer, "{\"append\": true}", "{\"text\": \"x\", \"file_path\": \"dangle.txt\"}",
              "bad_request", why);
    run_fails(&node_text_writer, "{}", "{\"text\": \"x\", \"file_path\": \"dangle.txt\"}", "bad_request", why);
    run_fails(&node_csv_writer, "{}", "{\"data\": [[1]], \"file_path\": \"dangle.txt\"}", "bad_request", why);
    run_fails(&node_json_writer, "{}", "{\"data\": 1, \"file_path\": \"dangle.txt\"}", "bad_request", why);
    run_fails(&node_text_reader, "{}", "{\"file_path\": \"dangle.txt\"}", "bad_request", why);
    run_fails(&node_text_writer, "{\"append\": true}", "{\"text\": \"x\", \"file_path\": \"dangle_dir/x.txt\"}",
              "bad_request", "file_path 'dangle_dir/x.txt' goes through a symlink whose target does not exist");
    cr_assert_eq(
        compile_only(&node_text_writer, "{\"file_path\": \"dangle.txt\", \"append\": true}", err, sizeof err), -1);
    cr_assert_str_eq(err, "config.file_path: 'dangle.txt' goes through a symlink whose target does not exist");
    cr_assert_not(exists_outside("made.txt"), "a write created a file outside data_dir");
    cr_assert_not(exists_outside("nodir"));
    cr_assert(exists("dangle.txt"), "the link itself is left alone");
}

/* node_file_append creates with O_EXCL, which does not follow a link: a dangling link that appears
 * after the path was resolved is not written through either. */
Test(text_file, append_never_creates_through_a_symlink)
{
    char p[PATH_MAX * 2];
    make_dangling_links();
    snprintf(p, sizeof p, "%s/dangle.txt", data_dir);
    errno = 0;
    cr_assert_eq(node_file_append(p, "x", 1, "", 0), -1);
    cr_assert_eq(errno, ELOOP, "%s", strerror(errno));
    cr_assert_not(exists_outside("made.txt"), "the append created the link's target outside data_dir");
    /* a link to an existing file inside is appended through, as Python's open(path, "a") does */
    write_text("sub/log.txt", "a");
    make_link("sub/log.txt", "loglink.txt");
    snprintf(p, sizeof p, "%s/loglink.txt", data_dir);
    cr_assert_eq(node_file_append(p, "b", 1, "", 0), 0, "%s", strerror(errno));
    cr_assert_str_eq(read_text("sub/log.txt"), "ab");
}
