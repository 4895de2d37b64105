"""WorkflowNode: a node that runs another loaded workflow by name (WORKFLOWS.md node catalog).

Expectations marked SDK were recorded with the Kailash SDK 2.63's WorkflowNode (workflow_dict of the
same inner workflow) and LocalRuntime."""
import threading
import time

import pytest

from conftest import assert_error
from wfs import conn, http, node, transform, wf

INNER = wf({"sw": node("SwitchNode", condition_field="n", operator=">", value=1),
            "m": node("MergeNode", merge_type="concat")},
           [conn("sw", "true_output", "m", "data1")])


def sub(**config):
    config.setdefault("workflow_name", "inner")
    return node("WorkflowNode", **config)


def outer(**config):
    return wf({"sub": sub(**config)})


def chain(n):
    """w0 calls w1 ... calls w{n-1}, which holds a TransformNode."""
    out = {"w%d" % i: wf({"call": sub(workflow_name="w%d" % (i + 1))}) for i in range(n - 1)}
    out["w%d" % (n - 1)] = wf({"t": transform({"leaf": True})})
    return out


@pytest.fixture(scope="module")
def d(module_daemons, upstream):
    workflows = {
        "inner": INNER,
        "outer": outer(),
        "mapped": outer(input_mapping={"x": {"node": "sw", "parameter": "input_data"}},
                        output_mapping={"out": {"node": "m", "output": "merged_data"}}),
        "fetcher": wf({"get": http(upstream.url("/echo/inner"))}),
        "outer_http": wf({"sub": sub(workflow_name="fetcher")}),
        "slow": wf({"get": http(upstream.url("/slow?ms=3000"), timeout=10)},
                   gateway={"executor": {"max_concurrency": 1, "max_queue": 0}}),
        "outer_slow": wf({"sub": sub(workflow_name="slow")}, gateway={"timeout_ms": 300}),
        "one_at_a_time": wf({"get": http(upstream.url("/slow?ms=600"), timeout=10)},
                            gateway={"executor": {"max_concurrency": 1, "max_queue": 0}}),
        "outer_one": wf({"sub": sub(workflow_name="one_at_a_time")}),
        "failing": wf({"read": node("JSONReaderNode", file_path="missing.json")}),
        "outer_failing": wf({"sub": sub(workflow_name="failing")}),
        "self": wf({"me": sub(workflow_name="self")}),
        "loop_a": wf({"to_b": sub(workflow_name="loop_b")}),
        "loop_b": wf({"to_a": sub(workflow_name="loop_a")}),
        "calls_loop": wf({"c": sub(workflow_name="loop_a")}),
        "dangling": wf({"c": sub(workflow_name="nowhere")}),
    }
    workflows.update(chain(10))
    return module_daemons.make(workflows=workflows)


def test_outputs_as_the_sdk(d):
    # SDK: {"sub": {"inputs": {"sw": {"input_data": {"n": 2}}}}}
    r = d.execute("outer", inputs={"sub": {"inputs": {"sw": {"input_data": {"n": 2}}}}})
    assert r.status_code == 200, r.text
    assert r.json()["outputs"]["sub"] == {
        "results": {"sw": {"true_output": {"n": 2}, "condition_result": True, "false_output": None},
                    "m": {"merged_data": {"n": 2}}},
        "m_merged_data": {"n": 2}}
    # SDK: auto-mapped <node>_<param>
    r = d.execute("outer", inputs={"sub": {"sw_input_data": {"n": 3}}})
    assert r.json()["outputs"]["sub"]["m_merged_data"] == {"n": 3}
    # SDK: input_mapping and output_mapping
    r = d.execute("mapped", inputs={"sub": {"x": {"n": 5}}})
    assert r.json()["outputs"]["sub"] == {
        "results": {"sw": {"true_output": {"n": 5}, "condition_result": True, "false_output": None},
                    "m": {"merged_data": {"n": 5}}},
        "out": {"n": 5}}


def test_skipped_inner_branch_and_unmapped_inputs(d):
    r = d.execute("outer", inputs={"sub": {"sw_input_data": {"n": 0}, "nobody_x": 1, "inputs": {"zz": {"a": 1}}}})
    assert r.status_code == 200, r.text
    out = r.json()["outputs"]["sub"]
    # the SDK's route_data runs m on None ({"merged_data": null}); kailashd skips it, as skip_branches
    assert out == {"results": {"sw": {"true_output": None, "condition_result": False, "false_output": {"n": 0}}}}


def test_inner_http_node(d):
    r = d.run("outer_http", params={"include": "results"})
    assert r.status_code == 200, r.text
    res = r.json()["results"]["sub"]
    assert res["get_status_code"] == 200
    assert res["get_response"]["content"]["path"] == "/echo/inner"


def test_inner_pinned_keys_stay_pinned(d, canary):
    r = d.run("outer_http", body={"parameters": {"sub": {"inputs": {"get": {"url": canary.url("/x")}}}}})
    assert_error(r, 400, "bad_request")
    assert "url" in r.json()["error"]["message"]
    r = d.run("outer_http", body={"parameters": {"sub": {"get_url": canary.url("/x")}}})
    assert_error(r, 400, "bad_request")
    assert canary.hits("_all") == 0


def test_inner_failure_fails_the_node(d):
    r = d.run("outer_failing")
    assert r.status_code == 500, r.text
    err = r.json()["error"]
    assert err["details"]["node"] == "sub"
    assert "workflow 'failing' failed at node 'read'" in err["message"]


def test_outer_timeout_cancels_the_inner_run(d):
    t = time.time()
    r = d.run("outer_slow")
    assert_error(r, 504, "timeout")
    assert time.time() - t < 2.5
    # "slow" runs one at a time with no queue: had the inner run gone on, the next call would find
    # its only slot taken (503 overloaded); it was cancelled with the outer run, so this times out too
    r = d.run("outer_slow")
    assert_error(r, 504, "timeout")
    assert time.time() - t < 2.5


@pytest.mark.parametrize("name,fragment", [
    ("self", "calling 'self' loops back"),
    ("loop_a", "loops back"),
    ("loop_b", "loops back"),
    ("calls_loop", "node 'c' calls 'loop_a'"),
    ("dangling", "workflow_name 'nowhere' is not a loaded workflow"),
    ("w0", "calls nest deeper than 8 levels"),
])
def test_refused_at_load(d, name, fragment):
    assert d.get("/workflows/" + name).status_code == 404
    r = d.reload()
    errors = {e["file"].rsplit("/", 1)[-1]: e["message"] for e in r.json()["errors"]}
    assert fragment in errors[name + ".json"], errors


def test_depth_limit_allows_eight_levels(d):
    r = d.run("w1", params={"include": "results"})  # w1 -> ... -> w9: 8 levels of calls
    assert r.status_code == 200, r.text
    assert d.get("/workflows/w0").status_code == 404


def test_sdk_sources_refused_with_a_way_out(daemons):
    dd = daemons.make(workflows={"inner": INNER, "dict": wf({"s": node("WorkflowNode", workflow_dict=INNER)}),
                                 "tmpl": wf({"s": node("WorkflowNode", workflow_name="{{ inputs.w }}")})})
    errors = {e["file"].rsplit("/", 1)[-1]: e["message"] for e in dd.reload().json()["errors"]}
    assert "config.workflow_dict: kailashd runs a loaded workflow by name" in errors["dict.json"]
    assert "config.workflow_name: required, the literal name" in errors["tmpl.json"]


def test_a_request_cannot_choose_the_inner_workflow(d):
    r = d.run("outer", body={"parameters": {"sub": {"workflow_name": "fetcher"}}})
    assert_error(r, 400, "bad_request")


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
