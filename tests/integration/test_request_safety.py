"""What a request may and may not change (issue 9, items 2, 3 and 8; WORKFLOWS.md "Data flow").

- The keys that choose where and how a node reaches out come only from the workflow file: a request
  that sets one through `parameters.<node>`, top-level `inputs` or /execute's node-scoped inputs gets
  400 bad_request naming the node and key, and the upstream sees nothing, unless the workflow's
  `gateway.overridable` opens that key. Other keys keep the SDK's rule.
- Every upstream call carries X-Kailash-Hops; a request with more than upstream.max_hops is refused
  with 508 loop_detected, and a request carrying the header is never a loopback admin.
- A bad value that a request put in a node's inputs is a 400, not a 500."""
import time

import pytest

from conftest import assert_error
from wfs import http, node, wf

SECRET = "tok-7c1d0a"


def build(up):
    U = up.base
    return {
        "pinned": wf({"call": http(U + "/counter/pinned", auth_type="bearer", auth_token=SECRET,
                                   headers={"X-Fixed": "yes"})}),
        "open": wf({"call": http(U + "/echo/open", headers={"X-Fixed": "yes"})},
                   gateway={"overridable": {"call": ["headers"]}}),
        "echo": wf({"call": http(U + "/echo/hops")}),
        "params": wf({"call": http(U + "/echo/p")}),
        "rest": wf({"api": node("RESTClientNode", base_url=U + "/echo", resource="users/{id}",
                                path_params={"id": "{{ inputs.id }}"}, method="GET")}),
        "csv": wf({"read": node("CSVReaderNode", file_path="a.csv")}),
    }


@pytest.fixture(scope="module")
def d(module_daemons, upstream):
    return module_daemons.make(workflows=build(upstream), data={"a.csv": "k,v\n1,a\n", "b.csv": "k,v\n2,b\n"})


def refused(r, node_id, key):
    err = assert_error(r, 400, "bad_request")
    assert node_id in err["message"] and key in err["message"], err
    assert SECRET not in r.text
    return err


@pytest.mark.parametrize("key,value", [
    ("url", "http://127.0.0.1:1/admin/delete-everything"),
    ("method", "DELETE"),
    ("headers", {"Host": "evil.example", "Authorization": "Bearer forged"}),
    ("auth_token", "forged"),
    ("auth_type", "basic"),
    ("verify_ssl", False),
])
def test_parameters_may_not_set_pinned_keys(d, upstream, key, value):
    before = upstream.hits("counter/pinned")
    refused(d.run("pinned", body={"inputs": {}, "parameters": {"call": {key: value}}}), "call", key)
    assert upstream.hits("counter/pinned") == before


@pytest.mark.parametrize("key,value", [("url", "http://127.0.0.1:1/x"), ("method", "DELETE"),
                                       ("headers", {"X-Evil": "1"})])
def test_top_level_inputs_may_not_set_pinned_keys(d, upstream, key, value):
    """The SDK's rule lays a workflow-wide input over a node parameter of the same name: not these."""
    before = upstream.hits("counter/pinned")
    refused(d.run("pinned", {key: value}), "call", key)
    assert upstream.hits("counter/pinned") == before


def test_execute_scoped_inputs_may_not_set_pinned_keys(d, upstream):
    before = upstream.hits("counter/pinned")
    refused(d.execute("pinned", {"call": {"url": "http://127.0.0.1:1/x", "method": "DELETE"}}), "call", "")
    assert upstream.hits("counter/pinned") == before


def test_the_workflow_as_written_still_runs(d, upstream):
    before = upstream.hits("counter/pinned")
    r = d.run("pinned")
    assert r.status_code == 200, r.text
    assert upstream.hits("counter/pinned") == before + 1


def test_rest_client_base_url_and_resource_are_pinned(d):
    for key, value in (("base_url", "http://127.0.0.1:1"), ("resource", "admin"), ("version", "v9")):
        refused(d.run("rest", body={"inputs": {"id": 1}, "parameters": {"api": {key: value}}}), "api", key)


def test_file_path_is_pinned(d):
    refused(d.run("csv", {"file_path": "b.csv"}), "read", "file_path")
    refused(d.run("csv", body={"parameters": {"read": {"file_path": "b.csv"}}}), "read", "file_path")
    r = d.run("csv")
    assert r.status_code == 200, r.text
    assert "a" in r.text and "b.csv" not in r.text


def test_overridable_opens_a_key(d):
    r = d.run("open", body={"parameters": {"call": {"headers": {"X-Extra": "1"}}}})
    assert r.status_code == 200, r.text
    h = r.json()["outputs"]["call"]["response"]["content"]["headers"]
    assert h.get("x-extra") == "1"
    assert "x-fixed" not in h  # the request's headers replaced the node's, as the SDK's rule says
    # still only that key: the url stays pinned
    refused(d.run("open", body={"parameters": {"call": {"url": "http://127.0.0.1:1/"}}}), "call", "url")
    shown = d.get("/workflows/open").json()["gateway"]
    assert shown["overridable"] == {"call": ["headers"]}


def test_other_keys_keep_the_sdk_rule(d):
    r = d.run("params", body={"parameters": {"call": {"timeout": 5, "params": {"a": "1"}}}})
    assert r.status_code == 200, r.text
    assert r.json()["outputs"]["call"]["response"]["content"]["query"] == {"a": "1"}


def test_params_are_always_encoded(d):
    """A value landing in the URL can't change its shape: no new path segment, query key or fragment."""
    hostile = "../../admin?x=1&y=2#frag"
    r = d.run("params", {"params": {"q": hostile}})
    assert r.status_code == 200, r.text
    c = r.json()["outputs"]["call"]["response"]["content"]
    assert c["path"] == "/echo/p"
    assert c["query"] == {"q": hostile}
    r = d.run("rest", {"id": "../../admin"})
    assert r.status_code == 200, r.text
    assert r.json()["outputs"]["api"]["data"]["path"] == "/echo/users/../../admin"
    assert "%2F" in r.json()["outputs"]["api"]["data"]["raw_target"]


@pytest.mark.parametrize("params,words", [
    ({"timeout": "soon"}, "timeout"),
    ({"timeout": -1}, "timeout"),
    ({"retry_count": 99}, "retry_count"),
    ({"params": "not-an-object"}, "params"),
])
def test_bad_values_from_a_request_are_400(d, params, words):
    err = assert_error(d.run("params", body={"parameters": {"call": params}}), 400, "bad_request")
    assert words in err["message"]


@pytest.mark.parametrize("headers,words", [
    ({"Bad Name": "x"}, "header name"),
    ({"X-Split": "a\r\nInjected: 1"}, "line break"),
    ({"X-Kailash-Hops": "0"}, "set by the node"),
])
def test_bad_headers_through_overridable_are_400(d, headers, words):
    err = assert_error(d.run("open", body={"parameters": {"call": {"headers": headers}}}), 400, "bad_request")
    assert words in err["message"]


def test_loader_refuses_bad_overridable(daemons, upstream):
    U = upstream.base
    d = daemons.make(workflows={
        "unknown_node": wf({"call": http(U + "/x")}, gateway={"overridable": {"nope": ["url"]}}),
        "unknown_key": wf({"call": http(U + "/x")}, gateway={"overridable": {"call": ["color"]}}),
        "not_array": wf({"call": http(U + "/x")}, gateway={"overridable": {"call": "url"}}),
    })
    errs = {e["file"].rsplit("/", 1)[-1]: e["message"] for e in d.get("/ready").json()["workflow_errors"]}
    assert "unknown node 'nope'" in errs["unknown_node.json"]
    assert "'color' is not a config key of HTTPRequestNode" in errs["unknown_key.json"]
    assert "expected an array" in errs["not_array.json"]


# ---- hops -----------------------------------------------------------------------------------------


def seen_hops(r):
    assert r.status_code == 200, r.text
    return r.json()["outputs"]["call"]["response"]["content"]["headers"].get("x-kailash-hops")


def test_every_call_out_carries_the_hop_count(d):
    assert seen_hops(d.run("echo")) == "1"
    assert seen_hops(d.run("echo", headers={"X-Kailash-Hops": "3"})) == "4"
    assert seen_hops(d.run("echo", headers={"X-Kailash-Hops": "8"})) == "9"


@pytest.mark.parametrize("value", ["9", "100", "99999999999999999999"])
def test_too_many_hops_is_508(d, value):
    assert_error(d.run("echo", headers={"X-Kailash-Hops": value}), 508, "loop_detected")
    assert_error(d.get("/workflows", headers={"X-Kailash-Hops": value}), 508, "loop_detected")


@pytest.mark.parametrize("value", ["-1", "abc", "1.5", "2 3", "0x3", "+1"])
def test_a_mangled_hop_count_is_400(d, value):
    assert_error(d.run("echo", headers={"X-Kailash-Hops": value}), 400, "bad_request")


def test_max_hops_is_configurable(daemons, upstream):
    d = daemons.make(config={"upstream": {"max_hops": 2}}, workflows={"echo": build(upstream)["echo"]})
    assert seen_hops(d.run("echo", headers={"X-Kailash-Hops": "2"})) == "3"
    assert_error(d.run("echo", headers={"X-Kailash-Hops": "3"}), 508, "loop_detected")


def test_a_workflow_calling_itself_stops_at_max_hops(daemons):
    """A node that calls its own workflow: each level answers, the tenth is refused, nothing waits on
    a timeout and the executor's slots are free afterwards (without the limit it recursed until
    every slot was taken by a run waiting on its child)."""
    d = daemons.make(start=False)
    d.write_workflow("loop", wf({"call": http("http://127.0.0.1:%d/workflows/loop/run" % d.port,
                                              method="POST", json_data={}, timeout=20)}))
    d.start()
    t0 = time.time()
    r = d.run("loop", timeout=30)
    assert time.time() - t0 < 10
    assert r.status_code == 200, r.text
    depth, c = 0, r.json()
    while c.get("status") == "completed":
        depth += 1
        c = c["outputs"]["call"]["response"]["content"]
    assert c["error"]["code"] == "loop_detected", c
    assert depth == 9  # hops 0..8 ran; the call carrying 9 was refused
    # nothing is left holding a slot: the next call goes the same way
    assert d.run("loop", timeout=30).status_code == 200


def test_admin_through_a_gateway_is_not_loopback(daemons):
    d = daemons.make(start=False)
    d.write_workflow("reload", wf({"call": http("http://127.0.0.1:%d/admin/reload" % d.port, method="POST")}))
    d.start()
    r = d.run("reload")
    assert r.status_code == 200, r.text
    out = r.json()["outputs"]["call"]
    assert out["status_code"] == 403 and out["response"]["content"]["error"]["code"] == "forbidden"
    assert_error(d.post("/admin/reload", headers={"X-Kailash-Hops": "0"}), 403, "forbidden")
    assert d.reload().status_code == 200
