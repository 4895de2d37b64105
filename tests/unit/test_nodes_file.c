/* Tests of the file node types and of node_file_resolve.
 *
 * Every test gets a fresh data_dir from mkdtemp (with symlinks resolved, as the config module hands
 * it over) and a second temporary directory outside it, for symlinks that try to escape. */
#include <criterion/criterion.h>
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
