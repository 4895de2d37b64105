"""CSVWriterNode, TextReaderNode and TextWriterNode through the daemon: the SDK's keys and ports,
the bytes they leave in data_dir (Python's csv module text: QUOTE_MINIMAL, "\\r\\n"), paths that try
to leave data_dir (templated, absolute, through a symlink), writing over a directory, bad rows and
cells, real appends across requests, and load refusals (--check).

Expectations marked SDK were recorded with the Kailash SDK 2.63's nodes and LocalRuntime."""
import csv
import io
import json
import os

import pytest
import requests

from conftest import assert_error
from test_cli import check_dir
from wfs import conn, node, transform, wf

OUTSIDE_MARK = "outside-data-dir-5151"


@pytest.fixture(scope="module")
def d(module_daemons):
    dm = module_daemons.make(start=False, workflows={
        # what the SDK's to_json() writes for these nodes
        "csv_out": wf({"w": node("CSVWriterNode", file_path="out.csv", delimiter=",")}),
        "csv_semi": wf({"w": node("CSVWriterNode", file_path="semi.csv", delimiter=";")}),
        "csv_any": wf({"w": node("CSVWriterNode", file_path="{{ inputs.f }}")}),
        "csv_dir": wf({"w": node("CSVWriterNode", file_path="adir")}),
        "csv_rt": wf({"t": transform([{"name": "a,b", "note": "say \"hi\"\nbye", "n": 3, "ok": True, "x": None}]),
                      "w": node("CSVWriterNode", file_path="rt.csv"),
                      "r": node("CSVReaderNode", file_path="rt.csv")},
                     [conn("t", "result", "w", "data"), conn("w", "file_path", "r", "file_path")]),
        "text_copy": wf({"r": node("TextReaderNode", file_path="in.txt", encoding="utf-8"),
                         "w": node("TextWriterNode", file_path="log.txt", encoding="utf-8", append=True)},
                        [conn("r", "text", "w", "text")]),
        "text_out": wf({"w": node("TextWriterNode", file_path="t.txt", encoding="utf-8", append=False)}),
        "text_latin": wf({"w": node("TextWriterNode", file_path="l.txt", encoding="latin-1", append=False)}),
        "text_any": wf({"w": node("TextWriterNode", file_path="{{ inputs.f }}", append=True)}),
        "read_any": wf({"r": node("TextReaderNode", file_path="{{ inputs.f }}")}),
    })
    os.makedirs(os.path.join(dm.data_dir, "adir"))
    with open(os.path.join(dm.root, "secret.txt"), "w") as f:
        f.write(OUTSIDE_MARK)
    os.symlink(os.path.join(dm.root, "secret.txt"), os.path.join(dm.data_dir, "link.txt"))
    os.symlink(dm.root, os.path.join(dm.data_dir, "up"))
    dm.write_data("in.txt", b"line one\r\nline two \xc3\xa9\rend")
    dm.start()
    return dm


def written(d, name):
    with open(os.path.join(d.data_dir, name), "rb") as f:
        return f.read()


def python_csv(rows, delimiter=","):
    """What Python's csv module writes for list rows (the SDK's csv.writer)."""
    b = io.StringIO()
    csv.writer(b, delimiter=delimiter).writerows(rows)
    return b.getvalue().encode()


def test_csv_dict_rows_as_the_sdk(d):
    rows = [{"name": "ada", "age": 36, "region": "eu"}, {"name": "bob", "age": 25, "region": "us"}]
    r = d.execute("csv_out", inputs={"w": {"data": rows}})
    assert r.status_code == 200, r.text
    assert r.json()["outputs"] == {"w": {"rows_written": 2, "file_path": "out.csv"}}  # SDK
    assert written(d, "out.csv") == b"name,age,region\r\nada,36,eu\r\nbob,25,us\r\n"  # SDK
    # SDK: DictWriter's restval "" for a missing column, str() of bools and reals
    r = d.execute("csv_out", inputs={"w": {"data": [{"a": True, "b": 1.0}, {"b": None}, {"a": "x\"y"}]}})
    assert r.status_code == 200, r.text
    assert written(d, "out.csv") == b'a,b\r\nTrue,1.0\r\n,\r\n"x""y",\r\n'


@pytest.mark.parametrize("rows", [
    [["a", "b"], [1, 2]],
    [["x,y", "q\"q", "line\nbreak", "cr\rhere", " pad ", ""], [""], [], [None], ["", ""]],
    [["\u00e9t\u00e9", "\u65e5\u672c", "tab\there", "semi;colon"]],
])
def test_csv_list_rows_match_python_csv(d, rows):
    r = d.execute("csv_out", inputs={"w": {"data": rows}})
    assert r.status_code == 200, r.text
    assert r.json()["outputs"]["w"] == {"rows_written": len(rows), "file_path": "out.csv"}
    assert written(d, "out.csv") == python_csv([["" if c is None else c for c in row] for row in rows])
    r = d.execute("csv_semi", inputs={"w": {"data": rows}})
    assert r.status_code == 200, r.text
    assert written(d, "semi.csv") == python_csv([["" if c is None else c for c in row] for row in rows], ";")


def test_csv_empty_data_writes_nothing(d):
    r = d.execute("csv_any", inputs={"f": "never.csv", "w": {"data": []}})
    assert r.status_code == 200, r.text
    assert r.json()["outputs"] == {"w": {"rows_written": 0}}  # SDK: its early return
    assert not os.path.exists(os.path.join(d.data_dir, "never.csv"))


def test_csv_round_trip_through_the_reader(d):
    r = d.execute("csv_rt")
    assert r.status_code == 200, r.text
    assert r.json()["outputs"]["r"]["data"] == [{"name": "a,b", "note": "say \"hi\"\nbye", "n": "3", "ok": "True",
                                                 "x": ""}]
    assert written(d, "rt.csv") == b'name,note,n,ok,x\r\n"a,b","say ""hi""\nbye",3,True,\r\n'


@pytest.mark.parametrize("data, fragment", [
    ([[1, [2, 3]]], "data[0][1]: a list or object cannot be a CSV cell"),
    ([{"a": {"b": 1}}], "data[0].a: a list or object cannot be a CSV cell"),
    ([{"a": 1}, {"a": 2, "z": 3}], "data[1]: key 'z' is not one of the columns"),
    ([{"a": 1}, [1]], "data[1]: expected an object like the first row"),
    ([[1], "abc"], "data[1]: expected a list like the first row"),
    ([5], "data[0]: expected an object or a list"),
    ("abc", "data: expected a list of rows"),
    ({"a": 1}, "data: expected a list of rows"),
])
def test_csv_bad_rows_fail_the_node_and_write_nothing(d, data, fragment):
    r = d.execute("csv_any", inputs={"f": "bad.csv", "w": {"data": data}})
    err = assert_error(r, 500, "internal")
    assert fragment in err["message"], err
    assert not os.path.exists(os.path.join(d.data_dir, "bad.csv"))


def test_missing_or_null_data_is_400(d):
    assert_error(d.execute("csv_out"), 400, "bad_request")
    assert_error(d.execute("csv_out", inputs={"w": {"data": None}}), 400, "bad_request")
    assert_error(d.execute("text_out", inputs={"w": {"text": None}}), 400, "bad_request")


@pytest.mark.parametrize("wf_name, data", [("csv_any", {"data": [[1]]}), ("text_any", {"text": "x"})])
@pytest.mark.parametrize("f", ["../escape.txt", "sub/../../escape.txt", "/etc/kailash_escape.txt", "up/escape.txt",
                               "link.txt"])
def test_writers_cannot_leave_data_dir(d, wf_name, data, f):
    r = d.execute(wf_name, inputs={"f": f, "w": data})
    err = assert_error(r, 400, "bad_request")
    assert err["details"]["node"] == "w"
    assert "escapes data_dir" in err["message"] or "outside data_dir" in err["message"], err
    assert "/etc" not in err["message"]
    assert not os.path.exists(os.path.join(d.root, "escape.txt"))
    assert not os.path.exists("/etc/kailash_escape.txt")
    with open(os.path.join(d.root, "secret.txt")) as fh:
        assert fh.read() == OUTSIDE_MARK


def test_reader_cannot_follow_a_symlink_out(d):
    r = d.execute("read_any", inputs={"f": "link.txt"})
    assert_error(r, 400, "bad_request")
    assert OUTSIDE_MARK not in r.text


@pytest.mark.parametrize("wf_name, data", [("csv_any", {"data": [[1]]}), ("text_any", {"text": "x"})])
def test_writers_do_not_create_through_a_dangling_symlink(d, wf_name, data):
    """A link inside data_dir to a missing file outside it: open(O_CREAT) through the link would
    create that file (text_any appends). Refused as a request's path, and nothing is created."""
    target = os.path.join(d.root, "created_by_%s.txt" % wf_name)
    link = os.path.join(d.data_dir, "dangle_%s.txt" % wf_name)
    os.symlink(target, link)
    r = d.execute(wf_name, inputs={"f": os.path.basename(link), "w": data})
    err = assert_error(r, 400, "bad_request")
    assert "goes through a symlink whose target does not exist" in err["message"], err
    assert d.root not in err["message"]
    assert not os.path.lexists(target)
    assert os.path.islink(link)


def test_request_may_not_set_file_path(d):
    r = d.execute("csv_out", inputs={"w": {"data": [[1]], "file_path": "other.csv"}})
    assert_error(r, 400, "bad_request")
    assert not os.path.exists(os.path.join(d.data_dir, "other.csv"))


def test_writing_over_a_directory_fails_and_keeps_it(d):
    r = d.execute("csv_dir", inputs={"w": {"data": [[1]]}})
    err = assert_error(r, 500, "internal")
    assert "Is a directory" in err["message"]
    r = d.execute("text_any", inputs={"f": "adir", "w": {"text": "x"}})
    assert "Is a directory" in assert_error(r, 500, "internal")["message"]
    assert os.path.isdir(os.path.join(d.data_dir, "adir"))


def test_text_copy_reads_in_text_mode_and_appends(d):
    try:
        os.remove(os.path.join(d.data_dir, "log.txt"))
    except FileNotFoundError:
        pass
    for n in (1, 2):
        r = d.execute("text_copy")
        assert r.status_code == 200, r.text
        out = r.json()["outputs"]
        # SDK: universal newlines on read; bytes_written is len(text.encode("utf-8"))
        assert out["r"] == {"text": "line one\nline two \u00e9\nend"}
        assert out["w"] == {"file_path": "log.txt", "bytes_written": 24}
        assert written(d, "log.txt") == b"line one\nline two \xc3\xa9\nend" * n


def test_text_writer_encodings(d):
    r = d.execute("text_out", inputs={"w": {"text": "hello\nworld"}})
    assert r.json()["outputs"] == {"w": {"file_path": "t.txt", "bytes_written": 11}}  # SDK
    r = d.execute("text_out", inputs={"w": {"text": ""}})
    assert r.json()["outputs"] == {"w": {"file_path": "t.txt", "bytes_written": 0}}  # SDK
    assert written(d, "t.txt") == b""
    r = d.execute("text_latin", inputs={"w": {"text": "caf\u00e9"}})
    assert r.json()["outputs"] == {"w": {"file_path": "l.txt", "bytes_written": 4}}
    assert written(d, "l.txt") == b"caf\xe9"
    r = d.execute("text_latin", inputs={"w": {"text": "\u20ac"}})
    assert "cannot be encoded in latin-1" in assert_error(r, 500, "internal")["message"]
    assert written(d, "l.txt") == b"caf\xe9"  # untouched


@pytest.mark.parametrize("text", [5, ["a"], {"a": 1}, True])
def test_text_writer_refuses_non_strings(d, text):
    r = d.execute("text_out", inputs={"w": {"text": text}})
    assert "text: expected a string" in assert_error(r, 500, "internal")["message"]


def test_text_reader_refuses_bad_bytes(d):
    d.write_data("bad.txt", b"ok\xffno")
    r = d.execute("read_any", inputs={"f": "bad.txt"})
    assert "not valid utf-8: byte 0xff at offset 2" in assert_error(r, 500, "internal")["message"]
    r = d.execute("read_any", inputs={"f": "missing.txt"})
    assert "not found" in assert_error(r, 500, "internal")["message"]


def test_huge_text_is_refused_and_the_daemon_lives(d):
    # the request body limit (an answer, or the connection closed before the whole body was sent) or
    # the node's own 64 MiB limit: never a crash; the file is whole or absent
    try:
        r = d.execute("text_any", inputs={"f": "huge.txt", "w": {"text": "\u00e9" * (2 << 20)}})
        assert r.status_code in (200, 400, 413, 500), r.text[:200]
    except requests.ConnectionError:
        pass
    path = os.path.join(d.data_dir, "huge.txt")
    assert not os.path.exists(path) or os.path.getsize(path) == 4 << 20
    assert d.execute("text_out", inputs={"w": {"text": "alive"}}).status_code == 200


@pytest.mark.parametrize("node_type, config, fragment", [
    ("CSVWriterNode", {"file_path": "o.csv", "headers": True}, "config.headers"),
    ("CSVWriterNode", {"file_path": "o.csv", "delimiter": "ab"}, "config.delimiter"),
    ("CSVWriterNode", {"file_path": "o.csv", "encoding": "utf-8"}, "config.encoding"),
    ("CSVWriterNode", {"file_path": "../o.csv"}, "config.file_path"),
    ("TextReaderNode", {"file_path": "t.txt", "encoding": "utf-16"}, "config.encoding"),
    ("TextReaderNode", {"file_path": "/etc/passwd"}, "config.file_path"),
    ("TextWriterNode", {"file_path": "t.txt", "append": "yes"}, "config.append"),
    ("TextWriterNode", {"file_path": "t.txt", "encoding": "cp1252"}, "config.encoding"),
])
def test_load_refusals(tmp_path, node_type, config, fragment):
    r = check_dir(tmp_path, {"bad": wf({"n": node(node_type, **config)})})
    assert r.returncode != 0
    assert fragment in r.stdout + r.stderr
    assert "node 'n'" in r.stdout + r.stderr


@pytest.mark.parametrize("node_type, config", [
    ("CSVWriterNode", {"file_path": "o.csv", "delimiter": ","}),
    ("CSVWriterNode", {"file_path": "o.csv", "delimiter": ",", "headers": None, "data": None}),
    ("CSVWriterNode", {"file_path": "o.csv", "headers": ["a", "b"]}),
    ("TextReaderNode", {"file_path": "t.txt", "encoding": "utf-8"}),
    ("TextReaderNode", {"file_path": "t.txt", "encoding": "UTF8"}),
    ("TextWriterNode", {"file_path": "t.txt", "encoding": "utf-8", "append": False}),
    ("TextWriterNode", {"file_path": "t.txt", "encoding": "iso-8859-1", "append": True}),
])
def test_sdk_exports_load(tmp_path, node_type, config):
    r = check_dir(tmp_path, {"ok": wf({"n": node(node_type, **config)})})
    assert r.returncode == 0, r.stdout + r.stderr
