"""Routes, headers, errors and runs of API.md against one daemon (no upstream needed).

Sections of API.md checked: "Routes", "Running a workflow", "Kailash-compatible route", "Errors";
WORKFLOWS.md: "Accepted shapes", "Data flow", node catalog for the offline nodes."""
import http.client
import json
import os
import re
import socket
import time
import uuid

import pytest

from conftest import REQUEST_ID_RE, assert_error, run_cli
import wfs
from wfs import NESTED_SCHEMA, conn, node, transform, wf

MAX_BODY = 4096
EXEC_DEFAULTS = {"max_concurrency": 16, "max_queue": 64}
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
TIMING_RE = re.compile(r"(?:^|[,\s])total;dur=(\d+(?:\.\d+)?)")

ROUTE2 = wf({
    "check": node("SwitchNode", input_data={"amount": "{{ inputs.amount }}"}, condition_field="amount",
                  operator=">=", value=100),
    "big": transform({"size": "big", "amount": "{{ params.data.amount }}"}),
    "small": transform({"size": "small", "amount": "{{ params.data.amount }}"}),
    "audit": transform({"audited": "{{ params.data.size }}"}),
    "out": node("MergeNode", merge_type="merge_dict"),
}, [conn("check", "true_output", "big", "data"), conn("check", "false_output", "small", "data"),
    conn("small", "result", "audit", "data"),
    conn("big", "result", "out", "data1"), conn("small", "result", "out", "data2")],
    gateway={"outputs": {"decision": "out.merged_data"}})

WORKFLOWS = {
    "hello": wfs.example("hello"),
    "route": wfs.example("route"),
    "csv_lookup": wfs.example("csv_lookup"),
    "sdk_export": wfs.example("sdk_export"),
    "list_shape": wfs.fixture("list_shape"),
    "params_shape": wfs.fixture("params_shape"),
    "route2": ROUTE2,
    "nested": wf({"t": transform({"ok": True})}, gateway={"inputs": NESTED_SCHEMA}),
    "scoped": wf({"t": transform({"v": "{{ params.data.x }}", "w": "{{ inputs.w }}"})}),
    "chain": wf({"a": transform({"n": "{{ inputs.n }}"}), "b": transform({"m": "{{ params.data.n }}"})},
                [conn("a", "result", "b", "data")]),
    "fail_read": wf({"read": node("JSONReaderNode", file_path="missing.json")}),
    "reader": wf({"read": node("JSONReaderNode", file_path="items.json")},
                 gateway={"outputs": {"items": "read.data"}}),
    "csvread": wf({"read": node("CSVReaderNode", file_path="people.csv", headers=True)},
                  gateway={"outputs": {"rows": "read.data"}}),
    "writer": wf({"src": transform({"name": "{{ inputs.name }}", "n": 3}),
                  "write": node("JSONWriterNode", file_path="written.json")},
                 [conn("src", "result", "write", "data")]),
    "escape_read": wf({"read": node("JSONReaderNode", file_path="{{ inputs.f }}")}),
    "switch_alone": wf({"s": node("SwitchNode", condition_field="x", operator="==", value=1)},
                       gateway={"outputs": {"hit": "s.condition_result"}}),
    "switch_alias_conn": wf({"src": transform({"x": "{{ inputs.x }}"}),
                             "s": node("SwitchNode", condition_field="x", operator="==", value=1)},
                            [conn("src", "result", "s", "data")]),
    "by_file": {"nodes": {"t": {"node_type": "TransformNode", "config": {"template": {"named": "by file"}}}},
                "connections": []},
    "v2.orders": wf({"t": transform({"dotted": True})}),
    "scope_roots": wf({"t": transform({"env": "{{ env.KT_ALLOWED }}", "rid": "{{ run.request_id }}",
                                       "run": "{{ run.id }}", "who": "{{ principal.id }}"})}),
    "filters": wf({"t": transform({
        "dflt": "{{ inputs.missing | default(7) }}", "json": "{{ inputs.obj | json }}",
        "str": "{{ inputs.n | string }}", "int": "{{ inputs.s | int }}", "float": "{{ inputs.s | float }}",
        "lower": "{{ inputs.word | lower }}", "upper": "{{ inputs.word | upper }}",
        "len": "{{ inputs.list | length }}", "first": "{{ inputs.list | first }}",
        "last": "{{ inputs.list | last }}", "keys": "{{ inputs.obj2 | keys }}", "concat": "n={{ inputs.n }}!",
        "chain": "{{ inputs.missing | default(\"AbC\") | lower }}", "idx": "{{ inputs.list.1 }}"})}),
    "guarded": wf({"t": transform({"ok": True})}, gateway={"access": {"roles": ["orders:read"]}}),
    "broken": wf({"code": node("SharePointGraphReader", code="result = 1")}),
    "not_json": wfs.fixture("not_json"),
}
GOOD = sorted(n for n in WORKFLOWS if n not in ("broken", "not_json"))


@pytest.fixture(scope="module")
def d(module_daemons):
    data = wfs.example_data()
    data["items.json"] = json.dumps([{"id": 1, "name": "one"}, {"id": 2, "name": "two"}])
    data["people.csv"] = "name,age\nada,36\nalan,41\n"
    dm = module_daemons.make(config={"max_body_bytes": MAX_BODY, "executor_defaults": EXEC_DEFAULTS,
                                     "template_env": ["KT_ALLOWED"]},
                             workflows=WORKFLOWS, data=data, start=False,
                             env={"KT_ALLOWED": "from-env", "KT_NOT_ALLOWED": "hidden"})
    with open(os.path.join(dm.root, "secret.json"), "w") as f:
        json.dump({"secret": "outside-data-dir-4242"}, f)
    return dm.start()


def run_ok(r):
    assert r.status_code == 200, r.text[:1000]
    return r.json()


# --- /health, /ready, /workflows ----------------------------------------------------------------

def test_health(d):
    r = d.get("/health")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    b = r.json()
    assert b["status"] == "ok"
    assert re.fullmatch(r"\d+\.\d+\.\d+", b["version"]), b
    assert isinstance(b["uptime_s"], (int, float)) and 0 <= b["uptime_s"] < 3600
    v = run_cli(["--version"], cwd=d.root)
    assert b["version"] in v.stdout + v.stderr


def test_ready_lists_broken_files_but_stays_ready(d):
    r = d.get("/ready")
    assert r.status_code == 200, r.text
    b = r.json()
    assert b["status"] == "ready"
    assert b["checks"] == {"redis": "disabled", "postgres": "disabled", "journal": "ok"}
    errs = b["workflow_errors"]
    assert isinstance(errs, list) and len(errs) == 2, errs
    text = json.dumps(errs)
    assert "broken.json" in text and "not_json.json" in text
    assert "hello.json" not in text


def test_workflows_list_sorted(d):
    r = d.get("/workflows")
    assert r.status_code == 200
    lst = r.json()["workflows"]
    names = [w["name"] for w in lst]
    assert names == GOOD, names
    for w in lst:
        assert {"name", "version", "description", "inputs", "cache_ttl_s", "nodes"} <= set(w), w
        assert w["cache_ttl_s"] in (None, 0), w
    by = {w["name"]: w for w in lst}
    assert by["hello"]["nodes"] == 1 and by["csv_lookup"]["nodes"] == 5 and by["route"]["nodes"] == 4
    assert by["hello"]["inputs"] == wfs.example("hello")["gateway"]["inputs"]
    assert by["hello"]["version"] == "1.0.0"
    assert by["list_shape"]["version"] == "2"
    assert by["hello"]["description"] == wfs.example("hello")["description"]


def test_workflow_definition_normalised(d):
    r = d.get("/workflows/hello")
    assert r.status_code == 200
    b = r.json()
    src = wfs.example("hello")
    assert b["name"] == "hello" and b["version"] == "1.0.0" and b["description"] == src["description"]
    assert b["nodes"] == [{"id": "greet", "type": "TransformNode", "config": src["nodes"]["greet"]["config"]}]
    assert b["connections"] == []
    g = b["gateway"]
    assert g["inputs"] == src["gateway"]["inputs"]
    assert g["outputs"] == src["gateway"]["outputs"]
    assert g["executor"] == EXEC_DEFAULTS, g
    assert isinstance(g["timeout_ms"], int) and g["timeout_ms"] > 0, g
    assert g.get("cache") in (False, None), g


def test_workflow_definition_list_shape_normalised(d):
    b = d.get("/workflows/list_shape").json()
    assert {n["id"]: n["type"] for n in b["nodes"]} == {"first": "TransformNode", "second": "TransformNode"}
    for n in b["nodes"]:
        assert set(n) == {"id", "type", "config"}, n
    assert b["connections"] == [{"source_node": "first", "source_output": "result",
                                 "target_node": "second", "target_input": "data"}]
    assert b["gateway"]["executor"] == EXEC_DEFAULTS


def test_workflow_definition_sdk_bookkeeping_dropped(d):
    b = d.get("/workflows/sdk_export").json()
    assert b["name"] == "sdk_export"
    ids = sorted(n["id"] for n in b["nodes"])
    assert ids == ["collect", "is_urgent"]
    for n in b["nodes"]:
        assert set(n) == {"id", "type", "config"}, n
        assert "position" not in n["config"] and "node_id" not in n["config"]


def test_name_defaults_to_file_name(d):
    assert d.get("/workflows/by_file").status_code == 200
    b = run_ok(d.run("by_file"))
    assert b["workflow"] == "by_file"
    assert b["outputs"] == {"t": {"result": {"named": "by file"}}}
    b = run_ok(d.run("v2.orders"))
    assert b["workflow"] == "v2.orders" and b["outputs"] == {"t": {"result": {"dotted": True}}}


# --- routing errors ------------------------------------------------------------------------------

@pytest.mark.parametrize("method,path", [
    ("GET", "/nope"), ("GET", "/workflows/nope"), ("POST", "/workflows/nope/run"),
    ("POST", "/workflows/nope/execute"), ("GET", "/workflows/hello/nope"), ("POST", "/workflows/broken/run"),
    ("GET", "/workflows/broken"),
])
def test_404(d, method, path):
    r = d.request(method, path, json={} if method == "POST" else None)
    assert_error(r, 404, "not_found")


@pytest.mark.parametrize("method,path,allowed", [
    ("GET", "/workflows/hello/run", "POST"), ("PUT", "/workflows/hello/run", "POST"),
    ("GET", "/workflows/hello/execute", "POST"), ("POST", "/health", "GET"), ("DELETE", "/ready", "GET"),
    ("POST", "/workflows", "GET"), ("DELETE", "/workflows/hello", "GET"), ("GET", "/admin/reload", "POST"),
])
def test_405_with_allow(d, method, path, allowed):
    r = d.request(method, path)
    assert_error(r, 405, "method_not_allowed")
    allow = [m.strip() for m in r.headers.get("Allow", "").split(",")]
    assert allowed in allow, r.headers
    assert method not in allow


def test_unknown_workflow_beats_media_type(d):
    """Order of checks: route (404) before media type (415)."""
    r = d.post("/workflows/nope/run", data=b"hello", headers={"Content-Type": "text/plain"})
    assert_error(r, 404, "not_found")


# --- request ids and headers ---------------------------------------------------------------------

def test_run_headers(d):
    r = d.run("hello", {"name": "Ada"})
    b = run_ok(r)
    assert r.headers["Content-Type"] == "application/json; charset=utf-8"
    assert r.headers["X-Run-ID"] == b["run_id"]
    assert UUID_RE.match(b["run_id"]), b["run_id"]
    assert r.headers["X-Cache"] == "BYPASS"
    m = TIMING_RE.search(r.headers.get("Server-Timing", ""))
    assert m, r.headers.get("Server-Timing")
    assert 0 <= float(m.group(1)) < 5000
    assert REQUEST_ID_RE.match(r.headers["X-Request-ID"])


def test_request_id_echoed_when_valid(d):
    for rid in ("abc-DEF_1.2:3", "x", "A" * 128):
        r = d.run("hello", {"name": "Ada"}, headers={"X-Request-ID": rid})
        assert r.status_code == 200
        assert r.headers["X-Request-ID"] == rid


@pytest.mark.parametrize("rid", ["has space", "A" * 129, "semi;colon", "ünï", "a/b"])
def test_request_id_replaced_when_invalid(d, rid):
    r = d.run("hello", {"name": "Ada"}, headers={"X-Request-ID": rid.encode("utf-8")})
    assert r.status_code == 200
    new = r.headers["X-Request-ID"]
    assert new != rid and REQUEST_ID_RE.match(new), new


def test_generated_request_ids_are_unique(d):
    ids = {d.get("/health").headers.get("X-Request-ID") for _ in range(10)} | \
          {d.run("hello", {"name": "u"}).headers["X-Request-ID"] for _ in range(10)}
    assert None not in ids and len(ids) == 20


def test_request_id_in_error_body(d):
    r = d.post("/workflows/nope/run", json={}, headers={"X-Request-ID": "req-404-check"})
    err = assert_error(r, 404, "not_found")
    assert err["request_id"] == "req-404-check"


def test_run_ids_are_unique(d):
    ids = {d.run("hello", {"name": "x"}).json()["run_id"] for _ in range(20)}
    assert len(ids) == 20


def test_keep_alive(d):
    c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10)
    first_sock = None
    try:
        for i in range(3):
            c.request("POST", "/workflows/hello/run", body=json.dumps({"inputs": {"name": "k%d" % i}}),
                      headers={"Content-Type": "application/json"})
            r = c.getresponse()
            body = json.loads(r.read())
            assert r.status == 200 and body["outputs"] == {"greeting": "Hello, k%d!" % i}
            assert (r.getheader("Connection") or "").lower() != "close"
            first_sock = first_sock or c.sock
            assert c.sock is not None and c.sock is first_sock, "connection was not kept alive"
    finally:
        c.close()


# --- access log ---------------------------------------------------------------------------------

LOG_KEYS = {"time", "request_id", "method", "path", "status", "duration_ms", "workflow", "run_id"}


def test_access_log_line_per_request(d):
    tag = "log-%s" % uuid.uuid4().hex[:10]
    r = d.run("hello", {"name": "Log"}, headers={"X-Request-ID": tag})
    assert r.status_code == 200
    lines = d.wait_log(lambda e: e.get("request_id") == tag)
    assert len(lines) == 1, lines
    e = lines[0]
    assert LOG_KEYS <= set(e), e
    assert e["method"] == "POST" and e["path"] == "/workflows/hello/run"
    assert e["status"] == 200 and e["workflow"] == "hello" and e["run_id"] == r.headers["X-Run-ID"]
    assert isinstance(e["duration_ms"], (int, float)) and e["duration_ms"] >= 0
    assert isinstance(e["time"], str) and re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", e["time"])


def test_access_log_errors_and_counts(d):
    tag = "cnt-%s-" % uuid.uuid4().hex[:8]
    for i in range(5):
        d.get("/health", headers={"X-Request-ID": tag + str(i)})
    d.get("/no/such/route", headers={"X-Request-ID": tag + "404"})
    d.post("/workflows/hello/run", data=b"x", headers={"X-Request-ID": tag + "415", "Content-Type": "text/plain"})
    want = {tag + str(i) for i in range(5)} | {tag + "404", tag + "415"}
    deadline = time.time() + 3
    while time.time() < deadline:
        got = [e for e in d.access_log() if str(e.get("request_id", "")).startswith(tag)]
        if len(got) >= len(want):
            break
        time.sleep(0.05)
    assert sorted(e["request_id"] for e in got) == sorted(want), got
    by = {e["request_id"]: e for e in got}
    for e in got:
        assert LOG_KEYS <= set(e), e
    assert by[tag + "0"]["path"] == "/health" and by[tag + "0"]["run_id"] in (None, "")
    assert by[tag + "404"]["status"] == 404 and by[tag + "404"]["path"] == "/no/such/route"
    assert by[tag + "415"]["status"] == 415 and by[tag + "415"]["method"] == "POST"
    assert by[tag + "0"]["status"] == 200 and by[tag + "0"]["method"] == "GET"


def test_access_log_client_gone_before_answer(d):
    """A request whose client hangs up before the answer still gets its one access-log line, with
    nginx's 499 (client closed request)."""
    import socket
    tag = "gone-%s" % uuid.uuid4().hex[:10]
    s = socket.create_connection(("127.0.0.1", d.port))
    s.sendall(b"POST /workflows/hello/run HTTP/1.1\r\nHost: t\r\nX-Request-ID: " + tag.encode() +
              b"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"inp")
    time.sleep(0.2)
    s.close()
    lines = d.wait_log(lambda e: e.get("request_id") == tag)
    assert len(lines) == 1, lines
    assert lines[0]["status"] == 499 and lines[0]["path"] == "/workflows/hello/run"


# --- /run ------------------------------------------------------------------------------------------

def test_run_hello(d):
    b = run_ok(d.run("hello", {"name": "Ada"}))
    assert set(b) >= {"run_id", "workflow", "status", "outputs", "duration_ms"}
    assert "results" not in b
    assert b["workflow"] == "hello" and b["status"] == "completed"
    assert b["outputs"] == {"greeting": "Hello, Ada!"}
    assert isinstance(b["duration_ms"], (int, float)) and 0 <= b["duration_ms"] < 5000


def test_run_include_results(d):
    b = run_ok(d.run("hello", {"name": "Ada"}, params={"include": "results"}))
    assert b["results"] == {"greet": {"result": {"greeting": "Hello, Ada!", "name": "Ada"}}}
    assert b.get("skipped", []) == []


def test_run_without_gateway_outputs_gives_sink_nodes(d):
    b = run_ok(d.run("chain", {"n": 5}))
    assert b["outputs"] == {"b": {"result": {"m": 5}}}
    # workflows/sdk_export.json is a real SDK export; its switch takes the workflow input "data"
    # (the SDK's alias of input_data), and the sink's output is what the SDK's runtime gave
    ticket = {"ticket": 7, "priority": "high"}
    b = run_ok(d.run("sdk_export", {"data": ticket}))
    assert b["outputs"] == {"collect": {"merged_data": ticket}}
    b = run_ok(d.run("sdk_export", {"data": {"ticket": 8, "priority": "low"}}, params={"include": "results"}))
    assert b["results"]["is_urgent"] == {"true_output": None, "false_output": {"ticket": 8, "priority": "low"},
                                         "condition_result": False}
    assert b["outputs"] == {"collect": {"merged_data": {"ticket": 8, "priority": "low"}}}


def test_template_roots(d):
    r = d.run("scope_roots", headers={"X-Request-ID": "rid-roots-1"})
    res = run_ok(r)["outputs"]["t"]["result"]
    assert res == {"env": "from-env", "rid": "rid-roots-1", "run": r.headers["X-Run-ID"], "who": "anonymous"}


def test_template_filters(d):
    b = run_ok(d.run("filters", {"obj": {"a": 1}, "n": 5, "s": "42", "word": "MiXed", "list": [1, 2, 3],
                                 "obj2": {"b": 1, "a": 2}}))
    res = b["outputs"]["t"]["result"]
    keys = res.pop("keys")
    assert sorted(keys) == ["a", "b"]
    assert res == {"dflt": 7, "json": '{"a":1}', "str": "5", "int": 42, "float": 42.0, "lower": "mixed",
                   "upper": "MIXED", "len": 3, "first": 1, "last": 3, "concat": "n=5!", "chain": "abc",
                   "idx": 2}
    assert isinstance(res["int"], int)


def test_workflow_inputs_fill_matching_params(d):
    """WORKFLOWS.md data flow: a workflow input whose key is one of a node's parameters (and that no
    connection fills) is that node's input: here SwitchNode `value` (config 100) becomes 10."""
    b = run_ok(d.run("route2", {"amount": 50}))
    assert b["outputs"]["decision"]["size"] == "small"
    b = run_ok(d.run("route2", {"amount": 50, "value": 10}))
    assert b["outputs"]["decision"]["size"] == "big"


def test_template_keeps_json_types(d):
    b = run_ok(d.run("chain", {"n": {"deep": [1, 2.5, None, True]}}))
    assert b["outputs"] == {"b": {"result": {"m": {"deep": [1, 2.5, None, True]}}}}


def test_empty_body_is_empty_object(d):
    r = d.post("/workflows/scoped/run", data=b"")
    b = run_ok(r)
    assert b["outputs"] == {"t": {"result": {"v": None, "w": None}}}
    r = d.post("/workflows/scoped/run", data=b"", headers={"Content-Type": "application/json"})
    run_ok(r)
    # hello needs a name: an empty body is {} and so fails validation
    err = assert_error(d.post("/workflows/hello/run", data=b""), 400, "invalid_inputs")
    assert [v["path"] for v in err["details"]["violations"]] == ["/name"]


def test_charset_content_type_accepted(d):
    r = d.post("/workflows/hello/run", data=json.dumps({"inputs": {"name": "Ü"}}).encode(),
               headers={"Content-Type": "application/json; charset=utf-8"})
    assert run_ok(r)["outputs"] == {"greeting": "Hello, Ü!"}


def test_parameters_override_node_inputs(d):
    b = run_ok(d.run("scoped", body={"inputs": {"w": "ww"}, "parameters": {"t": {"data": {"x": 41}}}}))
    assert b["outputs"] == {"t": {"result": {"v": 41, "w": "ww"}}}


def test_parameters_win_over_connections(d):
    b = run_ok(d.run("chain", body={"inputs": {"n": 1}, "parameters": {"b": {"data": {"n": 99}}}}))
    assert b["outputs"] == {"b": {"result": {"m": 99}}}


def test_switch_skips_branch_and_dependents(d):
    b = run_ok(d.run("route2", {"amount": 150}, params={"include": "results"}))
    assert b["outputs"] == {"decision": {"size": "big", "amount": 150}}
    assert set(b["results"]) == {"check", "big", "out"}, b["results"]
    assert sorted(b["skipped"]) == ["audit", "small"]
    assert b["results"]["check"]["true_output"] == {"amount": 150}
    assert b["results"]["check"]["condition_result"] is True

    b = run_ok(d.run("route2", {"amount": 5}, params={"include": "results"}))
    assert b["outputs"] == {"decision": {"size": "small", "amount": 5}}
    assert set(b["results"]) == {"check", "small", "audit", "out"}
    assert b["results"]["audit"] == {"result": {"audited": "small"}}
    assert sorted(b["skipped"]) == ["big"]


def test_example_route(d):
    b = run_ok(d.run("route", {"order_id": 7, "amount": 2500}))
    assert b["outputs"] == {"decision": {"order_id": 7, "amount": 2500, "route": "manual_review"}}
    b = run_ok(d.run("route", {"order_id": 8, "amount": 10.5}, params={"include": "results"}))
    assert b["outputs"] == {"decision": {"order_id": 8, "amount": 10.5, "route": "auto_approve"}}
    assert b["skipped"] == ["review"]


def test_example_csv_lookup(d):
    b = run_ok(d.run("csv_lookup", {"sku": "G-100"}))
    assert b["outputs"] == {"product": {"sku": "G-100", "name": "Garden hose 20m", "price": "29.00", "stock": "0"}}
    b = run_ok(d.run("csv_lookup", {"sku": "K-100"}, params={"include": "results"}))
    assert b["outputs"]["product"]["name"] == "Chef's knife"
    assert b["skipped"] == []
    assert set(b["results"]) == {"read", "row1", "row2", "row3", "found"}
    b = run_ok(d.run("csv_lookup", {"sku": "Z-999"}, params={"include": "results"}))
    assert b["outputs"] == {"product": None}
    assert b["skipped"] == ["found"]
    assert_error(d.run("csv_lookup", {"sku": "nope"}), 400, "invalid_inputs")


def test_accepted_shapes_run(d):
    b = run_ok(d.run("list_shape", {"n": 3}))
    assert b["outputs"] == {"second": {"result": {"seen": 3, "tag": "second"}}}
    b = run_ok(d.run("params_shape", {"n": 4}))
    assert b["outputs"] == {"only": {"result": {"ok": True, "n": 4}}}
    b = run_ok(d.run("params_shape"))
    assert b["outputs"] == {"only": {"result": {"ok": True, "n": 0}}}


def test_access_block_ignored_with_auth_off(d):
    b = run_ok(d.run("guarded"))
    assert b["outputs"] == {"t": {"result": {"ok": True}}}
    logs = d.stderr() + d.stdout()
    assert any("guarded" in line and "access" in line.lower() for line in logs.splitlines()), \
        "no warning about the ignored access block of guarded.json"


# --- file nodes ----------------------------------------------------------------------------------

def test_json_reader(d):
    b = run_ok(d.run("reader"))
    assert b["outputs"] == {"items": [{"id": 1, "name": "one"}, {"id": 2, "name": "two"}]}


def test_csv_reader(d):
    b = run_ok(d.run("csvread"))
    assert b["outputs"] == {"rows": [{"name": "ada", "age": "36"}, {"name": "alan", "age": "41"}]}


def test_missing_node_input_left_out_by_the_caller_is_400(d):
    """The caller's inputs feed the switch's input_data; leaving it out is the caller's mistake."""
    err = assert_error(d.run("switch_alone"), 400, "bad_request")
    assert "input 'input_data' is missing" in err["message"], err
    assert run_ok(d.run("switch_alone", {"input_data": {"x": 1}}))["outputs"] == {"hit": True}
    body = {"inputs": {}, "parameters": {"s": {"input_data": {"x": 2}}}}
    assert run_ok(d.run("switch_alone", body=body))["outputs"] == {"hit": False}


def test_json_writer(d):
    b = run_ok(d.run("writer", {"name": "zed"}))
    path = os.path.join(d.data_dir, "written.json")
    with open(path) as f:
        assert json.load(f) == {"name": "zed", "n": 3}
    assert "written.json" in json.dumps(b["outputs"])


@pytest.mark.parametrize("f", ["../secret.json", "/etc/passwd", "sub/../../secret.json"])
def test_reader_cannot_leave_data_dir(d, f):
    r = d.run("escape_read", {"f": f})
    assert "outside-data-dir-4242" not in r.text and "root:" not in r.text
    # the daemon answers 400 bad_request (the inputs named a bad path); a node failure 500 would do too
    err = assert_error(r, r.status_code, "bad_request" if r.status_code == 400 else "internal")
    assert r.status_code in (400, 500)
    assert err["details"]["node"] == "read"


def test_reader_refuses_symlink_out_of_data_dir(daemons):
    """A symlink inside data_dir that leads out of it: refused at load (listed in /ready) or at run (500)."""
    dm = daemons.make(workflows={"link_read": wf({"read": node("JSONReaderNode", file_path="link.json")})},
                      start=False)
    with open(os.path.join(dm.root, "secret.json"), "w") as f:
        json.dump({"secret": "outside-data-dir-4242"}, f)
    os.symlink(os.path.join(dm.root, "secret.json"), os.path.join(dm.data_dir, "link.json"))
    dm.start()
    r = dm.run("link_read")
    assert r.status_code in (404, 500), r.text
    assert "outside-data-dir-4242" not in r.text
    if r.status_code == 404:
        assert "link_read.json" in json.dumps(dm.get("/ready").json()["workflow_errors"])
    else:
        assert_error(r, 500, "internal")


def test_node_failure_is_500_internal(d):
    r = d.run("fail_read")
    err = assert_error(r, 500, "internal")
    assert err["details"]["node"] == "read"
    assert r.headers.get("X-Run-ID")
    assert "Traceback" not in r.text


def test_on_error_continue(daemons):
    """WORKFLOWS.md: with "on_error": "continue" a failing node does not fail the run; its output is
    {"error": {...}, "failed": true}, and nodes fed from its normal ports are skipped."""
    w = wf({"read": node("JSONReaderNode", file_path="missing.json", on_error="continue"),
            "use": transform({"items": "{{ params.data }}"}),
            "other": transform({"ran": True, "seen": "{{ nodes.read.failed }}"})},
           [conn("read", "data", "use", "data")])
    dm = daemons.make(workflows={"continue_read": w})
    assert dm.get("/ready").json()["workflow_errors"] == []
    b = run_ok(dm.run("continue_read", params={"include": "results"}))
    assert b["status"] == "completed"
    read = b["results"]["read"]
    assert read["failed"] is True and isinstance(read["error"], dict) and read["error"].get("message"), read
    assert b["outputs"] == {"other": {"result": {"ran": True, "seen": True}}}
    assert b["skipped"] == ["use"]


def test_on_error_continue_ports_connectable(daemons):
    """The {"error", "failed"} output of an on_error "continue" node can feed a connection."""
    w = wf({"read": node("JSONReaderNode", file_path="missing.json", on_error="continue"),
            "after": transform({"failed": "{{ params.flag }}", "ran": True})},
           [conn("read", "failed", "after", "flag")])
    dm = daemons.make(workflows={"continue_read": w})
    assert dm.get("/ready").json()["workflow_errors"] == []
    b = run_ok(dm.run("continue_read", params={"include": "results"}))
    assert b["status"] == "completed"
    assert b["outputs"] == {"after": {"result": {"failed": True, "ran": True}}}
    read = b["results"]["read"]
    assert read["failed"] is True and isinstance(read["error"], dict), read


# --- /execute (Kailash WorkflowAPI shape) --------------------------------------------------------

def test_execute_shape(d):
    r = d.execute("hello", {"name": "Ada"})
    b = run_ok(r)
    assert set(b) >= {"outputs", "execution_time", "workflow_id", "version", "run_id"}
    assert b["outputs"] == {"greet": {"result": {"greeting": "Hello, Ada!", "name": "Ada"}}}
    assert b["workflow_id"] == "hello" and b["version"] == "1.0.0"
    assert isinstance(b["execution_time"], (int, float)) and 0 <= b["execution_time"] < 5
    assert b["run_id"] == r.headers["X-Run-ID"]
    assert r.headers["X-Cache"] == "BYPASS" and TIMING_RE.search(r.headers.get("Server-Timing", ""))


def test_execute_mode_sync_and_all_nodes(d):
    b = run_ok(d.execute("chain", body={"inputs": {"n": 2}, "mode": "sync"}))
    assert b["outputs"] == {"a": {"result": {"n": 2}}, "b": {"result": {"m": 2}}}


def test_execute_input_key_scoped_to_node(d):
    b = run_ok(d.execute("scoped", {"t": {"data": {"x": 7}}, "w": "global"}))
    assert b["outputs"] == {"t": {"result": {"v": 7, "w": "global"}}}


def test_execute_skipped_absent(d):
    b = run_ok(d.execute("route2", {"amount": 1}))
    assert set(b["outputs"]) == {"check", "small", "audit", "out"}


def test_execute_errors_same_as_run(d):
    err = assert_error(d.execute("hello", {}), 400, "invalid_inputs")
    assert err["details"]["violations"][0]["path"] == "/name"
    assert_error(d.execute("hello", body={"inputs": {"name": "a"}, "bogus": 1}), 400, "bad_request")
    assert_error(d.post("/workflows/hello/execute", data=b"x", headers={"Content-Type": "text/plain"}),
                 415, "unsupported_media_type")
    err = assert_error(d.execute("fail_read"), 500, "internal")
    assert err["details"]["node"] == "read"


# --- 400 bad_request / invalid_inputs ------------------------------------------------------------

@pytest.mark.parametrize("raw", [
    b"{not json", b"[1, 2]", b"null", b"\"text\"", b"42",
    b'{"inputs": {}, "foo": 1}', b'{"inputs": []}', b'{"inputs": "x"}', b'{"inputs": null, "x": 1}',
    b'{"parameters": []}', b'{"parameters": {"nope": {}}}', b'{"parameters": {"t": 5}}',
    b'{"callback_url": "http://127.0.0.1:9/cb"}', b'{"inputs": {}} trailing',
])
def test_bad_request(d, raw):
    r = d.post("/workflows/scoped/run", data=raw, headers={"Content-Type": "application/json"})
    assert_error(r, 400, "bad_request")


def test_invalid_inputs_violations(d):
    cases = [
        ({"user": {"id": 0}}, ["/user/id"]),
        ({"user": {}}, ["/user/id"]),
        ({"user": {"id": "7"}}, ["/user/id"]),
        ({"user": {"id": 1, "email": "not-an-email"}}, ["/user/email"]),
        ({"tags": ["a", 3]}, ["/tags/1"]),
        ({"tags": ["a", "b", "c", "d"]}, ["/tags"]),
        ({"a/b": 5}, ["/a~1b"]),
        ({"mode": "medium"}, ["/mode"]),
        ({"user": {"id": 0}, "tags": [1]}, ["/tags/0", "/user/id"]),
    ]
    for inputs, paths in cases:
        r = d.run("nested", inputs)
        err = assert_error(r, 400, "invalid_inputs")
        v = err["details"]["violations"]
        assert sorted(x["path"] for x in v) == paths, (inputs, v)
        assert all(isinstance(x["message"], str) and x["message"] for x in v)
    run_ok(d.run("nested", {"user": {"id": 3, "email": "a@example.com"}, "tags": ["x"], "a/b": "s",
                            "mode": "fast"}))


def test_hello_schema(d):
    for inputs, path in [({}, "/name"), ({"name": 5}, "/name"), ({"name": ""}, "/name"),
                         ({"name": "x" * 65}, "/name"), ({"name": "ok", "extra": 1}, "/extra")]:
        err = assert_error(d.run("hello", inputs), 400, "invalid_inputs")
        assert [v["path"] for v in err["details"]["violations"]] == [path], (inputs, err)


# --- 413 / 415 ------------------------------------------------------------------------------------

def raw_request(port, head, body=b"", timeout=5):
    """Sends head (+ body) on a fresh socket and returns (status, headers_text, body_bytes)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(head + body)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        hdr, _, rest = data.partition(b"\r\n\r\n")
        m = re.search(rb"content-length:\s*(\d+)", hdr, re.I)
        if m:
            n = int(m.group(1))
            while len(rest) < n:
                chunk = s.recv(65536)
                if not chunk:
                    break
                rest += chunk
        status = int(hdr.split(b" ", 2)[1]) if hdr.startswith(b"HTTP/") else None
        return status, hdr.decode("latin-1"), rest
    finally:
        s.close()


def test_413_from_content_length_before_body(d):
    head = (b"POST /workflows/hello/run HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000000\r\n\r\n")
    t0 = time.time()
    status, hdr, body = raw_request(d.port, head)  # no body sent at all
    assert status == 413, hdr
    assert time.time() - t0 < 3
    assert json.loads(body)["error"]["code"] == "payload_too_large"


def test_413_real_body_and_limit_edge(d):
    big = {"inputs": {"w": "x" * (MAX_BODY + 10)}}
    assert_error(d.run("scoped", body=big), 413, "payload_too_large")
    body = json.dumps({"inputs": {"w": ""}})
    pad = MAX_BODY - len(body)
    exact = json.dumps({"inputs": {"w": "y" * pad}}).encode()
    assert len(exact) == MAX_BODY
    r = d.post("/workflows/scoped/run", data=exact, headers={"Content-Type": "application/json"})
    assert run_ok(r)["outputs"]["t"]["result"]["w"] == "y" * pad


def test_413_before_415(d):
    r = d.post("/workflows/hello/run", data=b"z" * (MAX_BODY + 1), headers={"Content-Type": "text/plain"})
    assert_error(r, 413, "payload_too_large")


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                                   "application/xml", None])
def test_415(d, ctype):
    headers = {"Content-Type": ctype} if ctype else {}
    r = d.post("/workflows/hello/run", data=b'{"inputs": {"name": "Ada"}}', headers=headers)
    assert_error(r, 415, "unsupported_media_type")


def test_415_before_400(d):
    r = d.post("/workflows/hello/run", data=b"{garbage", headers={"Content-Type": "text/plain"})
    assert_error(r, 415, "unsupported_media_type")


# --- robustness -------------------------------------------------------------------------------------

def test_garbage_and_half_requests_do_not_hurt(d):
    for junk in (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n",
                 b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Long: " + b"a" * 20000 + b"\r\n\r\n",
                 b"POST /workflows/hello/run HTTP/1.1\r\nContent-Length: 50\r\nContent-Type: application/json\r\n\r\n{\"in",
                 b"NOTAMETHOD /x HTTP/9.9\r\n\r\n"):
        s = socket.create_connection(("127.0.0.1", d.port), timeout=3)
        try:
            s.sendall(junk)
            s.shutdown(socket.SHUT_WR)
            try:
                s.recv(65536)
            except OSError:
                pass
        finally:
            s.close()
    assert d.alive()
    assert d.get("/health").status_code == 200
    assert run_ok(d.run("hello", {"name": "still"}))["outputs"] == {"greeting": "Hello, still!"}


# --- more edges -------------------------------------------------------------------------------------

def test_refused_requests_have_no_run(d):
    """API.md: requests refused before a run starts (4xx, 503) have no run record, so no X-Run-ID."""
    for r in (d.post("/workflows/scoped/run", data=b"[1]", headers={"Content-Type": "application/json"}),
              d.run("hello", {}),
              d.post("/workflows/hello/run", data=b"x", headers={"Content-Type": "text/plain"}),
              d.run("scoped", body={"inputs": {"w": "x" * (MAX_BODY + 1)}}),
              d.run("nope")):
        assert r.status_code in (400, 404, 413, 415), r.text
        assert "X-Run-ID" not in r.headers, (r.status_code, r.headers)


def test_failed_run_carries_run_headers(d):
    r = d.run("fail_read")
    assert r.status_code == 500
    assert UUID_RE.match(r.headers["X-Run-ID"])
    assert r.json()["error"]["details"].get("run_id", r.headers["X-Run-ID"]) == r.headers["X-Run-ID"]
    assert TIMING_RE.search(r.headers.get("Server-Timing", "")), r.headers
    assert r.headers.get("X-Cache") == "BYPASS"


def test_media_type_is_case_insensitive(d):
    r = d.post("/workflows/hello/run", data=json.dumps({"inputs": {"name": "Cy"}}).encode(),
               headers={"Content-Type": "Application/JSON; Charset=UTF-8"})
    assert run_ok(r)["outputs"] == {"greeting": "Hello, Cy!"}


def test_413_chunked_body_over_limit(d):
    chunk = b"x" * 1000
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(MAX_BODY // 1000 + 2)) + b"0\r\n\r\n"
    head = (b"POST /workflows/scoped/run HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
    status, hdr, resp = raw_request(d.port, head, body)
    assert status == 413, hdr
    assert json.loads(resp)["error"]["code"] == "payload_too_large"
    assert d.get("/health").status_code == 200


def test_413_with_expect_continue(d):
    head = (b"POST /workflows/hello/run HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Expect: 100-continue\r\nContent-Length: 5000000\r\n\r\n")
    status, hdr, body = raw_request(d.port, head)
    assert status == 413, "first answer must be 413, not an invitation to send the body: " + hdr


def test_deeply_nested_inputs(d):
    depth = 1800
    w = "[" * depth + "]" * depth
    raw = ('{"inputs": {"w": %s}}' % w).encode()
    assert len(raw) <= MAX_BODY
    r = d.post("/workflows/scoped/run", data=raw, headers={"Content-Type": "application/json"})
    assert r.status_code in (200, 400), r.text[:300]
    if r.status_code == 400:
        assert r.json()["error"]["code"] == "bad_request"
    assert d.alive() and d.get("/health").status_code == 200


def test_admin_reload_from_loopback_ignores_untrusted_forwarded_for(d):
    r = d.post("/admin/reload", headers={"X-Forwarded-For": "203.0.113.9"})
    assert r.status_code == 200, r.text
    b = r.json()
    assert b["reloaded"] is True and b["workflows"] == len(GOOD)
    assert sorted(os.path.basename(e["file"]) for e in b["errors"]) == ["broken.json", "not_json.json"]


def test_admin_reload_refused_for_forwarded_client_via_trusted_proxy(daemons):
    """trusted_proxies: a loopback proxy's X-Forwarded-For names the client; admin routes then refuse a
    non-loopback client (API.md: "the admin routes answer only clients on loopback addresses")."""
    dm = daemons.make(config={"trusted_proxies": ["127.0.0.0/8"]}, workflows={"hello": wfs.example("hello")})
    assert_error(dm.post("/admin/reload", headers={"X-Forwarded-For": "203.0.113.9"}), 403, "forbidden")
    assert dm.post("/admin/reload", headers={"X-Forwarded-For": "127.0.0.1"}).status_code == 200
    assert dm.post("/admin/reload").status_code == 200


def test_forwarded_for_hostile_values(daemons):
    """The client is the right-most X-Forwarded-For entry that is not a trusted proxy: entries to its
    left are the client's own words. Garbage keeps the socket address; nothing crashes."""
    dm = daemons.make(config={"trusted_proxies": ["127.0.0.0/8"]}, workflows={"hello": wfs.example("hello")})
    # a forged loopback entry on the left does not help
    assert_error(dm.post("/admin/reload", headers={"X-Forwarded-For": "127.0.0.1, 203.0.113.9"}), 403, "forbidden")
    # trusted hops on the right are skipped until an untrusted one
    assert_error(dm.post("/admin/reload", headers={"X-Forwarded-For": "203.0.113.9, 127.0.0.2"}), 403, "forbidden")
    for junk in ("not-an-ip", "", ",", "1.2.3.4,,5.6.7.8", "1.2.3.4.5", "::ffff:999.1.1.1", "x" * 4000):
        r = dm.post("/admin/reload", headers={"X-Forwarded-For": junk})
        assert r.status_code in (200, 403), (junk[:20], r.status_code)
    tag = "xff-%s" % uuid.uuid4().hex[:8]
    dm.get("/health", headers={"X-Forwarded-For": "198.51.100.7", "X-Request-ID": tag})
    lines = dm.wait_log(lambda e: e.get("request_id") == tag)
    assert lines and lines[0]["client"] == "198.51.100.7", lines
    assert dm.alive() and dm.get("/health").status_code == 200


def _non_loopback_ipv4():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("192.0.2.1", 9))  # no packet is sent for UDP connect
        ip = s.getsockname()[0]
    except OSError:
        ip = None
    finally:
        s.close()
    return ip if ip and not ip.startswith("127.") else None


def test_admin_reload_refused_for_non_loopback_client(daemons):
    ip = _non_loopback_ipv4()
    assert ip, "this test needs a non-loopback IPv4 address on the machine"
    dm = daemons.make(config={"host": "0.0.0.0"}, workflows={"hello": wfs.example("hello")})
    import requests as rq
    s = rq.Session()
    s.trust_env = False
    r = s.post("http://%s:%d/admin/reload" % (ip, dm.port), timeout=5)
    assert_error(r, 403, "forbidden")
    assert s.get("http://%s:%d/health" % (ip, dm.port), timeout=5).status_code == 200
    assert dm.reload().status_code == 200


def test_empty_workflows_dir(daemons):
    dm = daemons.make(workflows={})
    assert dm.get("/workflows").json() == {"workflows": []}
    r = dm.get("/ready")
    assert r.status_code == 200 and r.json()["workflow_errors"] == []
    assert_error(dm.run("hello", {"name": "x"}), 404, "not_found")


# The SDK's SwitchNode takes input_data also as "data", "input" or "items" (workflow_alias and
# auto_map_from, in that order); its own name wins, and an alias is no way around anything.
@pytest.mark.parametrize("inputs,taken", [
    ({"data": {"x": 1}}, True),
    ({"items": {"x": 2}}, False),
    ({"input_data": {"x": 2}, "data": {"x": 1}}, False),
    ({"items": {"x": 2}, "input": {"x": 1}}, True),
    ({"data": {"x": 1}, "input": {"x": 2}, "items": {"x": 2}}, True),
])
def test_switch_input_aliases(d, inputs, taken):
    b = run_ok(d.run("switch_alone", inputs))
    assert b["outputs"] == {"hit": taken}
    b = run_ok(d.run("switch_alone", body={"parameters": {"s": inputs}}))
    assert b["outputs"] == {"hit": taken}


def test_switch_alias_as_connection_target_and_hostile_values(d):
    b = run_ok(d.run("switch_alias_conn", {"x": 1}, params={"include": "results"}))
    assert b["results"]["s"] == {"true_output": {"x": 1}, "false_output": None, "condition_result": True}
    # the connection fills input_data: a caller's "data" does not replace it
    b = run_ok(d.run("switch_alias_conn", {"x": 2, "data": {"x": 1}}, params={"include": "results"}))
    assert b["results"]["s"]["condition_result"] is False
    b = d.get("/workflows/switch_alias_conn").json()
    assert b["connections"][0]["target_input"] == "data"  # shown as written
    for hostile in (None, [], "x" * 3000, {"x": {"x": {"x": 1}}}, [1, {"x": 1}]):
        r = d.run("switch_alone", {"data": hostile})
        assert r.status_code == 200, r.text
        assert r.json()["outputs"]["hit"] in (False, [])
