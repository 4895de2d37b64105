"""WorkflowNode: a node that runs another loaded workflow (WORKFLOWS.md node catalog).

The SDK cases replay workflows/sdk_workflow_node.json (recorded by sdk_workflow_node_gen.py with the
Kailash SDK 2.63): the SDK's own exports (WorkflowNode with workflow_path, input_mapping,
output_mapping and the "workflow": null every export carries) load unchanged, and /execute answers
the SDK's LocalRuntime results, but for the differences kept on purpose (README)."""
import asyncio
import json
import threading
import time

import pytest

from conftest import assert_error, closed_port, holding, run_cli, wait_for, write_json
from wfs import conn, fixture, http, node, transform, wf

SDK = json.loads(fixture("sdk_workflow_node"))

INNER = wf({"sw": node("SwitchNode", condition_field="n", operator=">", value=1),
            "m": node("MergeNode", merge_type="concat")},
           [conn("sw", "true_output", "m", "data1")])


def sub(**config):
    config.setdefault("workflow_name", "inner")
    return node("WorkflowNode", **config)


def chain(n):
    """w0 calls w1 ... calls w{n-1}, which holds a TransformNode."""
    out = {"w%d" % i: wf({"call": sub(workflow_name="w%d" % (i + 1))}) for i in range(n - 1)}
    out["w%d" % (n - 1)] = wf({"t": transform({"leaf": True})})
    return out


@pytest.fixture(scope="module")
def d(module_daemons, upstream):
    U = upstream.base
    workflows = dict(SDK["inner"], **SDK["outer"])
    workflows.update({
        "by_name": wf({"sub": sub()}),
        "fetcher": wf({"get": http(upstream.url("/echo/inner"))}),
        "outer_http": wf({"sub": sub(workflow_name="fetcher")}),
        "bad_gateway": wf({"get": http("http://127.0.0.1:%d/x" % closed_port(), retry_count=0)}),
        "outer_bad_gateway": wf({"sub": sub(workflow_name="bad_gateway")}),
        "rid": wf({"t": transform({"rid": "{{ run.request_id }}", "inputs": "{{ inputs }}"})}),
        "outer_rid": wf({"sub": sub(workflow_name="rid")}),
        "holder": wf({"call": http(U + "/hold/{{ params.key }}?ms=8000", timeout=20)}),
        "outer_hold": wf({"sub": sub(workflow_name="holder")}),
        "outer_hold_short": wf({"sub": sub(workflow_name="holder")}, gateway={"timeout_ms": 300}),
        "one_at_a_time": wf({"get": http(upstream.url("/slow?ms=600"), timeout=10)},
                            gateway={"executor": {"max_concurrency": 1, "max_queue": 0}}),
        "outer_one": wf({"sub": sub(workflow_name="one_at_a_time")}),
        "failing": wf({"read": node("JSONReaderNode", file_path="missing.json")}),
        "outer_failing": wf({"sub": sub(workflow_name="failing")}),
        "soft_failing": wf({"sub": sub(workflow_name="failing", on_error="continue")}),
        "self": wf({"me": sub(workflow_name="self")}),
        "loop_a": wf({"to_b": sub(workflow_name="loop_b")}),
        "loop_b": wf({"to_a": sub(workflow_name="loop_a")}),
        "calls_loop": wf({"c": sub(workflow_name="loop_a")}),
        "dangling": wf({"c": sub(workflow_name="nowhere")}),
        "dangling_path": wf({"c": node("WorkflowNode", workflow_path="/home/someone/flows/nowhere.json")}),
        "via_dangling": wf({"v": sub(workflow_name="dangling")}),
        "by_path": wf({"sub": node("WorkflowNode", workflow_path="../anywhere/else/inner.json")}),
        "dict": wf({"s": node("WorkflowNode", workflow_dict=INNER)}),
        "tmpl": wf({"s": node("WorkflowNode", workflow_name="{{ inputs.w }}")}),
        "both": wf({"s": node("WorkflowNode", workflow_name="inner", workflow_path="inner.json")}),
        "yaml": wf({"s": node("WorkflowNode", workflow_path="inner.yaml")}),
    })
    workflows.update(chain(10))
    return module_daemons.make(workflows=workflows)


# ---- the SDK's outputs ---------------------------------------------------------------------------

# kailashd runs every workflow with skip_branches; the SDK's WorkflowNode runs its inner workflow with
# a default LocalRuntime (route_data) whatever the outer mode, so the untaken inner branch is run on
# None there and skipped here.
SKIPPED_INNER_BRANCH = {"sub": {"results": {"sw": {"true_output": None, "condition_result": False,
                                                   "false_output": {"n": 0}}}}}


def sdk_cases():
    return [pytest.param(i, c, id="%d-%s" % (i, c["workflow"])) for i, c in enumerate(SDK["cases"])]


@pytest.mark.parametrize("i,case", sdk_cases())
def test_sdk_case(d, i, case):
    r = d.execute(case["workflow"], inputs=case["parameters"])
    sdk = case["skip_branches"]
    assert sdk == case["route_data"]  # the outer mode does not reach the SDK's inner run
    if "error" in sdk or sdk["results"]["sub"].get("failed"):
        # the SDK refuses the run (a required mapped input) or fails the node (inputs of the wrong
        # shape); kailashd answers what the caller sent with 400, naming the node
        err = assert_error(r, 400, "bad_request")
        assert err["details"]["node"] == "sub", err
        return
    assert r.status_code == 200, r.text
    got = r.json()["outputs"]
    if case["about"] == "an untaken inner branch":
        assert sdk["results"]["sub"]["m_merged_data"] is None  # the SDK ran m on None
        assert got == SKIPPED_INNER_BRANCH
        return
    assert got == sdk["results"], case["about"]


def test_sdk_exports_keep_their_directories_out(d):
    assert SDK["outer"]["outer"]["nodes"]["sub"]["config"]["workflow_path"].startswith("/tmp/")
    assert SDK["outer"]["outer"]["nodes"]["sub"]["config"]["workflow"] is None
    r = d.get("/workflows/outer")
    assert r.status_code == 200, r.text
    r = d.execute("by_path", inputs={"sub": {"sw_input_data": {"n": 2}}})
    assert r.status_code == 200, r.text
    assert r.json()["outputs"]["sub"]["m_merged_data"] == {"n": 2}


def test_by_name_and_by_run(d):
    r = d.run("by_name", body={"parameters": {"sub": {"sw_input_data": {"n": 2}}}})
    assert r.status_code == 200, r.text
    assert r.json()["outputs"] == {"sub": {"results": {"sw": {"true_output": {"n": 2}, "condition_result": True,
                                                              "false_output": None},
                                                       "m": {"merged_data": {"n": 2}}},
                                           "m_merged_data": {"n": 2}}}


def test_a_workflow_input_called_inputs_reaches_the_node(d):
    # the SDK routes a workflow-level parameter to every node that declares it; WorkflowNode declares
    # `inputs` (its <node>_<param> names depend on the inner workflow: give those per node)
    r = d.run("by_name", inputs={"inputs": {"sw": {"input_data": {"n": 6}}}, "sw_input_data": {"n": 1}})
    assert r.status_code == 200, r.text
    assert r.json()["outputs"]["sub"]["m_merged_data"] == {"n": 6}


def test_failed_inner_node_with_on_error_continue(d):
    r = d.run("soft_failing", params={"include": "results"})
    assert r.status_code == 200, r.text
    out = r.json()["results"]["sub"]
    assert out["failed"] is True and out["error"]["code"] == "internal", out
    assert "workflow 'failing' failed at node 'read'" in out["error"]["message"]


# ---- the inner run ---------------------------------------------------------------------------------

def test_inner_http_node_with_hops_and_request_id(d):
    r = d.run("outer_http", params={"include": "results"}, headers={"X-Kailash-Hops": "2"})
    assert r.status_code == 200, r.text
    res = r.json()["results"]["sub"]
    assert res["get_status_code"] == 200
    echo = res["get_response"]["content"]
    assert echo["path"] == "/echo/inner"
    hops = {k.lower(): v for k, v in echo["headers"].items()}["x-kailash-hops"]
    assert hops == "3", echo["headers"]  # the caller's hops + 1, as the outer run's own calls send
    r = d.run("outer_rid", headers={"X-Request-ID": "wfn-rid-1"}, body={"inputs": {"a": 1}})
    assert r.status_code == 200, r.text
    # the inner run carries the request's id and gets no workflow-level inputs (as the SDK's)
    assert r.json()["outputs"]["sub"]["t_result"] == {"rid": "wfn-rid-1", "inputs": {}}


def test_inner_pinned_keys_stay_pinned(d, canary):
    r = d.run("outer_http", body={"parameters": {"sub": {"inputs": {"get": {"url": canary.url("/x")}}}}})
    assert_error(r, 400, "bad_request")
    assert "url" in r.json()["error"]["message"]
    r = d.run("outer_http", body={"parameters": {"sub": {"get_url": canary.url("/x")}}})
    assert_error(r, 400, "bad_request")
    r = d.run("outer_http", body={"parameters": {"sub": {"inputs": {"get": {"method": "DELETE"}}}}})
    assert_error(r, 400, "bad_request")
    assert canary.hits("_all") == 0


@pytest.mark.parametrize("key,value", [("workflow_name", "fetcher"), ("workflow_path", "fetcher.json"),
                                       ("workflow_dict", {"nodes": {}}), ("workflow", None),
                                       ("input_mapping", {"x": {"node": "get", "parameter": "url"}}),
                                       ("output_mapping", {})])
def test_a_request_cannot_choose_the_inner_workflow(d, key, value):
    r = d.run("by_name", body={"parameters": {"sub": {key: value}}})
    err = assert_error(r, 400, "bad_request")
    assert key in err["message"], err


def test_inner_failure_fails_the_node(d):
    r = d.run("outer_failing")
    err = assert_error(r, 500, "internal")
    assert err["details"]["node"] == "sub"
    assert "workflow 'failing' failed at node 'read'" in err["message"]
    r = d.run("outer_bad_gateway")
    err = assert_error(r, 502, "upstream_error")
    assert err["details"]["node"] == "sub"
    assert "workflow 'bad_gateway' failed at node 'get'" in err["message"]


def test_outer_timeout_stops_the_inner_call(d, upstream):
    key = "wfn-deadline-%d" % time.time_ns()
    t = time.time()
    r = d.run("outer_hold_short", body={"parameters": {"sub": {"inputs": {"call": {"key": key}}}}})
    err = assert_error(r, 504, "timeout")
    assert err["details"]["node"] == "sub", err
    assert time.time() - t < 2.5
    assert wait_for(lambda: holding(upstream, key) == 0, 2.0), "the inner call outlived the outer run"


def leave_after_sending(port, body, up, key, rid):
    """Sends one run of outer_hold, waits until the upstream holds its call, then closes."""
    async def go():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        data = json.dumps(body).encode()
        writer.write(b"POST /workflows/outer_hold/run HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"X-Request-ID: %s\r\nContent-Length: %d\r\n\r\n" % (rid.encode(), len(data)) + data)
        await writer.drain()
        for _ in range(200):
            if holding(up, key) == 1:
                break
            await asyncio.sleep(0.02)
        writer.close()
    asyncio.run(go())


def test_a_client_leaving_cancels_the_inner_run(d, upstream):
    key = "wfn-leave-%d" % time.time_ns()
    body = {"parameters": {"sub": {"inputs": {"call": {"key": key}}}}}
    t = time.time()
    leave_after_sending(d.port, body, upstream, key, "rid-" + key)
    assert upstream.hits("holding/" + key) in (0, 1)
    assert wait_for(lambda: holding(upstream, key) == 0, 2.0), "the inner call outlived its client"
    assert time.time() - t < 4
    entries = d.wait_log(lambda e: e.get("request_id") == "rid-" + key)
    assert entries and entries[0]["status"] == 499, entries
    # the inner workflow's slot came back: a run of it still works
    key2 = key + "-again"
    r = d.run("outer_hold_short", body={"parameters": {"sub": {"inputs": {"call": {"key": key2}}}}})
    assert_error(r, 504, "timeout")


def test_inner_executor_full_is_503_with_retry_after(d):
    first = {}
    t = threading.Thread(target=lambda: first.setdefault("r", d.run("outer_one")))
    t.start()
    time.sleep(0.2)
    r = d.run("outer_one")
    t.join()
    assert first["r"].status_code == 200, first["r"].text
    assert_error(r, 503, "overloaded")
    assert r.headers["Retry-After"] == "1"
    assert r.json()["error"]["details"]["node"] == "sub"


def test_depth_limit_allows_eight_levels(d):
    r = d.run("w1", params={"include": "results"})  # w1 -> ... -> w9: 8 levels of calls
    assert r.status_code == 200, r.text
    # each level's exit ports are its inner exit node's, prefixed: call_call_..._t_result
    assert r.json()["outputs"]["call"]["call_" * 7 + "t_result"] == {"leaf": True}
    assert d.get("/workflows/w0").status_code == 404


# ---- refused at load -------------------------------------------------------------------------------

@pytest.mark.parametrize("name,fragment", [
    ("self", "WorkflowNode calls loop back: self (node 'me') -> self (a workflow may not call itself"),
    ("loop_a", "loop back: loop_a (node 'to_b') -> loop_b (node 'to_a') -> loop_a"),
    ("loop_b", "loop back: loop_b (node 'to_a') -> loop_a (node 'to_b') -> loop_b"),
    ("calls_loop", "loop back: calls_loop (node 'c') -> loop_a (node 'to_b') -> loop_b (node 'to_a') -> loop_a"),
    ("dangling", "not loaded: dangling (node 'c') -> workflow_name 'nowhere': no loaded workflow has that name"),
    ("dangling_path", "dangling_path (node 'c') -> workflow_path 'nowhere.json': no workflow was loaded from a "
                      "file of workflows_dir called 'nowhere.json'"),
    ("via_dangling", "via_dangling (node 'v') -> dangling (node 'c') -> workflow_name 'nowhere'"),
    ("w0", "calls nest deeper than 8 levels: w0 (node 'call') -> w1 (node 'call') -> "),
    ("dict", "config.workflow_dict: kailashd runs only workflows it loaded: save the inner workflow as a file"),
    ("tmpl", "config.workflow_name: expected the literal name of a loaded workflow"),
    ("both", "config: set one of workflow_name"),
    ("yaml", "config.workflow_path: 'inner.yaml': kailashd loads workflows from .json files"),
])
def test_refused_at_load(d, name, fragment):
    assert d.get("/workflows/" + name).status_code == 404
    r = d.reload()
    errors = {e["file"].rsplit("/", 1)[-1]: e["message"] for e in r.json()["errors"]}
    assert fragment in errors[name + ".json"], errors
    if name == "w0":
        assert errors["w0.json"].endswith("w8 (node 'call') -> w9"), errors["w0.json"]


def test_check_lists_the_chains(d):
    r = d.reload()
    problems = " ".join(e["message"] for e in r.json()["errors"])
    assert problems.count("WorkflowNode calls") >= 7


def test_check_exits_non_zero_naming_the_chain(tmp_path):
    write_json(str(tmp_path / "k.json"), {"workflows_dir": "wf", "data_dir": "var"})
    (tmp_path / "var").mkdir()
    write_json(str(tmp_path / "wf" / "a.json"), wf({"x": sub(workflow_name="b")}))
    write_json(str(tmp_path / "wf" / "b.json"), wf({"y": sub(workflow_name="a")}))
    write_json(str(tmp_path / "wf" / "ok.json"), SDK["inner"]["inner"])
    r = run_cli(["--check", "--config", "k.json"], cwd=str(tmp_path))
    assert r.returncode != 0, r.stdout
    assert "wf/a.json: WorkflowNode calls loop back: a (node 'x') -> b (node 'y') -> a" in r.stdout, r.stdout
    assert "1 workflow(s) loaded, 2 problem(s)" in r.stdout, r.stdout


# ---- reload ------------------------------------------------------------------------------------------

def leaf(v):
    return wf({"t": transform({"v": v})})


def test_reload_changes_and_removes_the_inner_workflow(daemons):
    dd = daemons.make(workflows={"leaf": leaf(1), "top": wf({"sub": sub(workflow_name="leaf")})})
    assert dd.run("top").json()["outputs"]["sub"]["t_result"] == {"v": 1}
    dd.write_workflow("leaf", leaf(2))
    assert dd.reload().json()["errors"] == []
    assert dd.run("top").json()["outputs"]["sub"]["t_result"] == {"v": 2}, "the next run sees the new version"
    dd.remove_workflow("leaf")
    errors = dd.reload().json()["errors"]
    assert [e["file"].rsplit("/", 1)[-1] for e in errors] == ["top.json"], errors
    assert "top (node 'sub') -> workflow_name 'leaf'" in errors[0]["message"]
    assert dd.get("/workflows/top").status_code == 404


def test_a_bad_edit_of_the_inner_workflow_keeps_both_serving(daemons):
    dd = daemons.make(workflows={"leaf": leaf(1), "top": wf({"sub": sub(workflow_name="leaf")})})
    dd.write_workflow("leaf", wf({"c": sub(workflow_name="nowhere")}))
    errors = dd.reload().json()["errors"]
    assert [e["file"].rsplit("/", 1)[-1] for e in errors] == ["leaf.json"], errors
    assert "leaf (node 'c') -> workflow_name 'nowhere'" in errors[0]["message"]
    # the previous leaf serves, so top (unchanged) still loads and calls it
    r = dd.run("top")
    assert r.status_code == 200, r.text
    assert r.json()["outputs"]["sub"]["t_result"] == {"v": 1}
    # an edit that makes a loop is refused the same way; the edited caller keeps its previous version
    dd.write_workflow("leaf", leaf(3))
    dd.write_workflow("top", wf({"sub": sub(workflow_name="top")}))
    errors = dd.reload().json()["errors"]
    assert [e["file"].rsplit("/", 1)[-1] for e in errors] == ["top.json"], errors
    assert dd.run("top").json()["outputs"]["sub"]["t_result"] == {"v": 3}
