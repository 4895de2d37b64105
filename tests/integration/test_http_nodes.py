"""HTTP-type nodes against a real local upstream (upstream.py).

WORKFLOWS.md node catalog: "HTTP-type nodes fail the node (502 upstream_error) only on transport
errors ..., their own timeout, an answer over upstream.max_response_bytes, or a body that does not
parse when response_format is json. Any HTTP status is an answer ... retry_count retries transport
errors and 502/503/504"; "URL templates may change path and query only"; `{"$env": NAME}`."""
import json
import os
import subprocess
import sys
import time
import uuid

import pytest

from conftest import HERE, assert_error, closed_port
from wfs import conn, http, node, transform, wf

MAX_RESP = 100000
SECRET = "s3cr3t-" + uuid.uuid4().hex


def build(up, canary):
    U = up.base
    return {
        "fetch": wf({"fetch": http(U + "/echo/items/{{ inputs.id }}?q={{ inputs.q | url }}")}),
        "post": wf({"post": http(U + "/echo/post", method="POST",
                                 json_data={"id": "{{ inputs.id }}", "tags": ["x"], "name": "{{ inputs.name }}"})}),
        "trace": wf({"call": http(U + "/echo/trace", headers={"X-Trace": "{{ run.id }}", "X-Fixed": "yes"})}),
        "refused": wf({"call": http("http://127.0.0.1:%d/x" % closed_port())}),
        "garbage": wf({"call": http(U + "/garbage")}),
        "closer": wf({"call": http(U + "/close")}),
        "large": wf({"call": http(U + "/large?bytes={{ inputs.n }}")}),
        "notjson": wf({"call": http(U + "/text")}),
        "status": wf({"call": http(U + "/status/{{ inputs.code }}", retry_count=0)}),
        "retry": wf({"call": http(U + "/flaky/{{ inputs.key }}?fail={{ inputs.fail }}&code={{ inputs.code }}",
                                  retry_count=3)}),
        "slow_node": wf({"call": http(U + "/slow?ms=3000", timeout=1)}),
        "switch_on_status": wf({
            "fetch": http(U + "/status/{{ inputs.code }}"),
            "check": node("SwitchNode", condition_field="status_code", operator="==", value=200),
            "shape": transform({"found": True, "status": "{{ params.data.content.status }}"}),
            "missing": transform({"error": "not found"}),
            "out": node("MergeNode", merge_type="merge_dict"),
        }, [conn("fetch", "response", "check", "input_data"),
            conn("check", "true_output", "shape", "data"), conn("check", "false_output", "missing", "data"),
            conn("shape", "result", "out", "data1"), conn("missing", "result", "out", "data2")],
            gateway={"outputs": {"answer": "out.merged_data"}}),
        "chained": wf({
            "first": http(U + "/echo/one?v={{ inputs.v }}"),
            "mid": transform({"from_first": "{{ params.data.query.v }}"}),
            "second": http(U + "/echo/two", method="POST"),
        }, [conn("first", "response.content", "mid", "data"), conn("mid", "result", "second", "json_data")],
            gateway={"outputs": {"body": "second.response.content.body"}}),
        "parallel": wf({"a": http(U + "/slow?ms=600"), "b": http(U + "/slow?ms=600")},
                       gateway={"outputs": {"a": "a.status_code", "b": "b.status_code"}}),
        "rest": wf({"api": node("RESTClientNode", base_url=U + "/echo", resource="users/{id}",
                                path_params={"id": "{{ inputs.id }}"}, query_params={"v": "1"}, method="GET")}),
        "lb": wf({"lb": node("LoadBalancerNode", upstreams=[U + "/counter/lbA", U + "/counter/lbB"],
                             url="/{{ inputs.k }}", strategy="round_robin", method="GET",
                             response_format="json")}),
        "lb_failover": wf({"lb": node("LoadBalancerNode", upstreams=["http://127.0.0.1:%d" % closed_port(), U],
                                      url="/counter/lbf/{{ inputs.k }}", strategy="round_robin", method="GET",
                                      response_format="json")}),
        "secret": wf({"call": http(U + "/echo/secret", auth_type="bearer", auth_token={"$env": "KT_SECRET"})}),
        # host-safety: the expression sits where a host could be smuggled in
        "after_port": wf({"call": http("http://127.0.0.1:%d{{ inputs.p }}" % up.port)}),
        "whole_url": wf({"call": http("{{ inputs.base }}/counter/whole")}),
        "plain": wf({"call": http(U + "/echo/plain")}),
        # as the SDK exports them: every parameter's default, base_url and the token redacted
        "sdk_rest": wf({"api": node("RESTClientNode", base_url="***REDACTED***", resource="users/{id}",
                                    path_params={"id": "{{ inputs.id }}"}, query_params={}, headers={}, data=None,
                                    version=None, timeout=30, verify_ssl=True, paginate=False,
                                    pagination_params=None, retry_count=0, retry_backoff=0.5, method="GET",
                                    auth_type="bearer", auth_token="***REDACTED***", auth_username=None,
                                    auth_password=None, api_key_header="X-API-Key")},
                       gateway={"config_overrides": {"api": {"base_url": U + "/echo",
                                                             "auth_token": {"$env": "KT_SECRET"}}}}),
        "sdk_http": wf({"call": http(U + "/echo/sdk", rate_limit_delay=0, log_requests=False)}),
        "sdk_async": wf({"call": node("AsyncHTTPRequestNode", url=U + "/echo/async", method="GET",
                                      response_format="json"),
                         "pick": node("AsyncSwitchNode", condition_field="status_code", operator="==", value=200),
                         "out": node("AsyncMergeNode", merge_type="concat", chunk_size=1000)},
                        [conn("call", "response", "pick", "input_data"), conn("pick", "true_output", "out", "data1")],
                        gateway={"outputs": {"merged": "out.merged_data"}}),
        "by_name": wf({"call": http("http://localhost:%d/echo/named/{{ inputs.i }}" % up.port)}),
        "raw_meta": wf({"call": http(U + "/raw/meta")}),
        "rest_meta": wf({"api": node("RESTClientNode", base_url=U, resource="raw/{name}",
                                     path_params={"name": "meta"}, query_params={"q": "a b"})}),
        "rest_status": wf({"api": node("RESTClientNode", base_url=U, resource="status/{code}",
                                       path_params={"code": "{{ inputs.code }}"})}),
        "raw_auto": wf({"call": http(U + "/raw/{{ inputs.name }}", response_format="auto")}),
        "rest_raw": wf({"api": node("RESTClientNode", base_url=U, resource="raw/{name}",
                                    path_params={"name": "{{ inputs.name }}"})}),
        "rest_resource_query": wf({"api": node("RESTClientNode", base_url=U + "/echo", resource="items?x=1",
                                               query_params={"q": "a b"})}),
        "raw_body": wf({"call": http(U + "/echo/raw", method="POST", data="raw text")}),
    }


@pytest.fixture(scope="module", params=["plain", "libcurl"])
def d(request, module_daemons, upstream, canary):
    """Every test runs twice: with the I/O loop's own HTTP/1.1 client (what http:// upstreams at
    127.0.0.1 get), and with KAILASH_UPSTREAM_CLIENT=libcurl (everything through libcurl)."""
    env = {"KT_SECRET": SECRET}
    if request.param == "libcurl":
        env["KAILASH_UPSTREAM_CLIENT"] = "libcurl"
    return module_daemons.make(config={"upstream": {"max_response_bytes": MAX_RESP, "connect_timeout_ms": 1000}},
                               workflows=build(upstream, canary), env=env)


def ok(r):
    assert r.status_code == 200, r.text[:1000]
    return r.json()


def test_all_loaded(d):
    """Every workflow of this module loads (the two host-safety ones may be refused at load)."""
    errs = json.dumps(d.get("/ready").json()["workflow_errors"])
    for name in ("fetch", "post", "trace", "retry", "switch_on_status", "chained", "parallel", "rest", "lb",
                 "lb_failover", "secret", "plain", "large", "status"):
        assert name + ".json" not in errs, errs


def test_get_with_templated_path_and_query(d):
    b = ok(d.run("fetch", {"id": 7, "q": "a b&c=d"}))
    out = b["outputs"]["fetch"]
    assert out["success"] is True and out["status_code"] == 200
    resp = out["response"]
    assert resp["status_code"] == 200
    assert resp["content"]["path"] == "/echo/items/7"
    assert resp["content"]["query"] == {"q": "a b&c=d"}
    assert resp["content"]["method"] == "GET"
    assert isinstance(resp["response_time_ms"], (int, float))
    assert resp["url"].startswith("http://127.0.0.1:") and "/echo/items/7" in resp["url"]
    assert "Content-Type" in resp["headers"]  # the upstream's case, as the SDK keeps it
    assert resp["url"].endswith("?q=a%20b%26c%3Dd")  # the template's url filter, as written


def test_host_names_work_before_and_after_they_are_resolved(d):
    """A name waits for the resolver's thread on its first call, then goes the plain path every time
    (README, "How a call goes out"): every call answers the same."""
    for i in range(6):
        out = ok(d.run("by_name", {"i": i}))["outputs"]["call"]
        assert out["status_code"] == 200
        assert out["response"]["content"]["path"] == "/echo/named/%d" % i
        assert out["response"]["url"].startswith("http://localhost:")
        time.sleep(0.05)


def test_post_json_data(d):
    c = ok(d.run("post", {"id": 5, "name": "Ada"}))["outputs"]["post"]["response"]["content"]
    assert c["method"] == "POST"
    assert c["body"] == {"id": 5, "tags": ["x"], "name": "Ada"}
    assert c["headers"]["content-type"].startswith("application/json")


def test_header_template_sees_run_id(d):
    r = d.run("trace")
    b = ok(r)
    h = b["outputs"]["call"]["response"]["content"]["headers"]
    assert h["x-trace"] == b["run_id"] == r.headers["X-Run-ID"]
    assert h["x-fixed"] == "yes"


def test_response_port_path_connection(d):
    b = ok(d.run("chained", {"v": "abc"}))
    assert b["outputs"] == {"body": {"from_first": "abc"}}


@pytest.mark.parametrize("name", ["refused", "garbage", "closer", "notjson"])
def test_transport_failures_are_502(d, name):
    t0 = time.time()
    r = d.run(name)
    err = assert_error(r, 502, "upstream_error")
    assert err["details"]["node"] == "call"
    assert r.headers.get("X-Run-ID")
    assert time.time() - t0 < 5


def test_upstream_client_switch_takes_effect(d):
    """The two ways out word a garbage answer differently: the plain path's message shows only when
    KAILASH_UPSTREAM_CLIENT is not libcurl, so this fails if the switch is ignored (or stuck)."""
    err = assert_error(d.run("garbage"), 502, "upstream_error")
    plain_words = "did not answer with an HTTP/1.x status line" in err["message"]
    assert plain_words == (d.env.get("KAILASH_UPSTREAM_CLIENT") != "libcurl"), err["message"]


def test_oversize_answer_is_502(d):
    err = assert_error(d.run("large", {"n": MAX_RESP * 3}), 502, "upstream_error")
    assert err["details"]["node"] == "call"
    b = ok(d.run("large", {"n": MAX_RESP // 2}))
    assert len(b["outputs"]["call"]["response"]["content"]["data"]) == MAX_RESP // 2


def test_node_timeout_is_502(d):
    t0 = time.time()
    err = assert_error(d.run("slow_node"), 502, "upstream_error")
    assert err["details"]["node"] == "call"
    assert time.time() - t0 < 2.8


@pytest.mark.parametrize("code", [404, 500, 418])
def test_http_status_is_an_answer(d, code):
    out = ok(d.run("status", {"code": code}))["outputs"]["call"]
    assert out["success"] is False
    assert out["status_code"] == code
    assert out["response"]["content"] == {"status": code}
    assert out["response"]["content_type"] == out["response"]["headers"]["Content-Type"]
    # the SDK's recovery_suggestions, word for word (kailash/nodes/api/http.py)
    first = {404: "Verify the URL path is correct", 500: "Server error - retry after a delay",
             418: "Check API documentation for this status code"}[code]
    assert len(out["recovery_suggestions"]) == 3 and out["recovery_suggestions"][0] == first


def test_http_success_has_no_recovery_suggestions(d):
    out = ok(d.run("status", {"code": 200}))["outputs"]["call"]
    assert out["success"] is True and "recovery_suggestions" not in out
    assert out["response"]["content_type"].startswith("application/json")


def test_switch_routes_on_status(d):
    assert ok(d.run("switch_on_status", {"code": 200}))["outputs"] == {"answer": {"found": True, "status": 200}}
    assert ok(d.run("switch_on_status", {"code": 404}))["outputs"] == {"answer": {"error": "not found"}}


def test_retries_on_503_then_succeeds(d, upstream):
    key = uuid.uuid4().hex
    out = ok(d.run("retry", {"key": key, "fail": 2, "code": 503}))["outputs"]["call"]
    assert out["success"] is True and out["status_code"] == 200
    assert upstream.hits("flaky/" + key) == 3


def test_retries_exhausted_gives_last_answer(d, upstream):
    key = uuid.uuid4().hex
    out = ok(d.run("retry", {"key": key, "fail": 10, "code": 502}))["outputs"]["call"]
    assert out["success"] is False and out["status_code"] == 502
    assert upstream.hits("flaky/" + key) == 4  # 1 try + retry_count 3


def test_no_retry_on_404(d, upstream):
    key = uuid.uuid4().hex
    out = ok(d.run("retry", {"key": key, "fail": 5, "code": 404}))["outputs"]["call"]
    assert out["status_code"] == 404
    assert upstream.hits("flaky/" + key) == 1


def test_parallel_branches_overlap(d):
    t0 = time.time()
    b = ok(d.run("parallel"))
    took = time.time() - t0
    assert b["outputs"] == {"a": 200, "b": 200}
    assert took < 1.1, "two 600 ms branches took %.2fs: not run in parallel" % took


def test_rest_client(d):
    out = ok(d.run("rest", {"id": 42}))["outputs"]["api"]
    assert out["success"] is True and out["status_code"] == 200
    assert out["data"]["path"] == "/echo/users/42"
    assert out["data"]["query"] == {"v": "1"}
    assert out["metadata"]["url"].endswith("/echo/users/42")  # the SDK's: without query_params
    assert out["metadata"]["method"] == "GET" and "Content-Type" in out["metadata"]["headers"]


def test_answer_headers_keep_their_case(d):
    """Names as the upstream wrote them (the SDK keeps them so); a repeat in another case joins the
    first one's value under the first one's name; trailing blanks of a value stay."""
    resp = ok(d.run("raw_meta"))["outputs"]["call"]["response"]
    h = resp["headers"]
    assert h["X-RateLimit-Limit"] == "100" and h["x-ratelimit-remaining"] == "7"
    assert h["Set-Cookie"] == "a=1, b=2" and "set-cookie" not in h
    assert h["X-Trail"] == "v  "
    assert resp["content_type"] == "application/json" and resp["content"]["page"] == 2


def test_rest_metadata_as_the_sdk_extracts_it(d):
    out = ok(d.run("rest_meta"))["outputs"]["api"]
    assert out["success"] is True and out["data"]["items"] == [1]
    m = out["metadata"]
    assert m["url"].endswith("/raw/meta") and "?" not in m["url"]
    assert m["rate_limit"] == {"limit": 100, "remaining": 7}
    assert m["pagination"] == {"next": "/raw/meta?page=3", "prev": "/raw/meta?page=1", "page": 2, "total_pages": 4}
    assert m["links"] == {"self": "/me"}


@pytest.mark.parametrize("code", [404, 503])
def test_rest_error_answer_as_the_sdk(d, code):
    out = ok(d.run("rest_status", {"code": code}))["outputs"]["api"]
    assert out == {"data": None, "status_code": code, "success": False,
                   "error": "Unknown error (status: %d)" % code, "error_type": "APIError", "metadata": {},
                   "recovery_suggestions": out["recovery_suggestions"]}
    assert len(out["recovery_suggestions"]) == 3


# The SDK's outputs (kailash 2.63, LocalRuntime with content-aware detection off) for upstream.py's
# RAW answers, response_time_ms left out: bodies read by their charset, JSON parsed from the decoded
# text (a bad byte is U+FFFD), an empty JSON body is "", and RESTClientNode parses JSON whatever the
# Content-Type (its response_format "json", falling back to the text).
SDK_BODIES = {
    ("raw_auto", "latin1_text"): {"response": {"status_code": 200, "headers": {"Content-Type": "text/plain; charset=ISO-8859-1", "Content-Length": "5"}, "content_type": "text/plain; charset=ISO-8859-1", "content": "caf\u00e9!", "url": "{U}/raw/latin1_text"}, "status_code": 200, "success": True},
    ("raw_auto", "cp1252_text"): {"response": {"status_code": 200, "headers": {"Content-Type": "text/html; charset=windows-1252", "Content-Length": "4"}, "content_type": "text/html; charset=windows-1252", "content": "\u20ac\u201cx\u201d", "url": "{U}/raw/cp1252_text"}, "status_code": 200, "success": True},
    ("raw_auto", "json_as_text"): {"response": {"status_code": 200, "headers": {"Content-Type": "text/plain", "Content-Length": "8"}, "content_type": "text/plain", "content": "{\"k\": 1}", "url": "{U}/raw/json_as_text"}, "status_code": 200, "success": True},
    ("raw_auto", "empty_json"): {"response": {"status_code": 200, "headers": {"Content-Type": "application/json", "Content-Length": "0"}, "content_type": "application/json", "content": "", "url": "{U}/raw/empty_json"}, "status_code": 200, "success": True},
    ("raw_auto", "bad_utf8_json"): {"response": {"status_code": 200, "headers": {"Content-Type": "application/json", "Content-Length": "12"}, "content_type": "application/json", "content": {"k": "a\ufffdb"}, "url": "{U}/raw/bad_utf8_json"}, "status_code": 200, "success": True},
    ("rest_raw", "latin1_text"): {"data": "caf\u00e9!", "status_code": 200, "success": True, "metadata": {"url": "{U}/raw/latin1_text", "method": "GET", "headers": {"Content-Type": "text/plain; charset=ISO-8859-1", "Content-Length": "5"}}},
    ("rest_raw", "cp1252_text"): {"data": "\u20ac\u201cx\u201d", "status_code": 200, "success": True, "metadata": {"url": "{U}/raw/cp1252_text", "method": "GET", "headers": {"Content-Type": "text/html; charset=windows-1252", "Content-Length": "4"}}},
    ("rest_raw", "json_as_text"): {"data": {"k": 1}, "status_code": 200, "success": True, "metadata": {"url": "{U}/raw/json_as_text", "method": "GET", "headers": {"Content-Type": "text/plain", "Content-Length": "8"}}},
    ("rest_raw", "empty_json"): {"data": "", "status_code": 200, "success": True, "metadata": {"url": "{U}/raw/empty_json", "method": "GET", "headers": {"Content-Type": "application/json", "Content-Length": "0"}}},
    ("rest_raw", "bad_utf8_json"): {"data": {"k": "a\ufffdb"}, "status_code": 200, "success": True, "metadata": {"url": "{U}/raw/bad_utf8_json", "method": "GET", "headers": {"Content-Type": "application/json", "Content-Length": "12"}}},
    ("rest_raw", "teapot"): {"data": None, "status_code": 418, "success": False, "metadata": {}, "error": "Unknown error (status: 418)", "error_type": "APIError", "recovery_suggestions": ["Check API documentation for this status code", "Verify request format and parameters", "Review response body for error details"]},
}


def _without_timing(out):
    for part in ("response", "metadata"):
        if isinstance(out.get(part), dict):
            out[part].pop("response_time_ms", None)
    return out


@pytest.mark.parametrize("wf_name,name", sorted(SDK_BODIES))
def test_bodies_are_read_as_the_sdk_reads_them(d, upstream, wf_name, name):
    out = ok(d.run(wf_name, {"name": name}))["outputs"]
    got = _without_timing(out["call" if wf_name == "raw_auto" else "api"])
    want = json.loads(json.dumps(SDK_BODIES[(wf_name, name)]).replace("{U}", upstream.base))
    assert got == want
    assert list(got) == list(want)  # the SDK's key order too


def test_rest_metadata_url_keeps_a_query_written_in_the_resource(d, upstream):
    """The SDK's metadata.url is the URL it built: a query in the resource stays, query_params don't."""
    out = ok(d.run("rest_resource_query"))["outputs"]["api"]
    assert out["metadata"]["url"] == upstream.base + "/echo/items?x=1"
    assert out["data"]["query"] == {"x": "1", "q": "a b"}


def test_raw_string_body_goes_without_content_type(d):
    """requests sends a str body without Content-Type (libcurl would call it a form)."""
    seen = ok(d.run("raw_body"))["outputs"]["call"]["response"]["content"]
    assert seen["body"] == "raw text" and seen["headers"]["content-length"] == "8"
    assert "content-type" not in seen["headers"]


def test_sdk_export_defaults_and_redacted_values_from_config_overrides(d):
    out = ok(d.run("sdk_rest", {"id": 7}))["outputs"]["api"]
    assert out["status_code"] == 200 and out["data"]["path"] == "/echo/users/7"
    assert out["data"]["headers"]["authorization"] == "Bearer " + SECRET
    r = d.get("/workflows/sdk_rest")
    assert r.status_code == 200 and SECRET not in r.text
    assert r.json()["gateway"]["config_overrides"]["api"]["auth_token"] == {"$env": "KT_SECRET"}
    assert SECRET not in d.stdout() and SECRET not in d.stderr()
    assert ok(d.run("sdk_http"))["outputs"]["call"]["response"]["content"]["path"] == "/echo/sdk"


def test_sdk_async_node_names_run_as_their_nodes(d):
    merged = ok(d.run("sdk_async"))["outputs"]["merged"]
    assert merged["status_code"] == 200 and merged["content"]["path"] == "/echo/async"


def test_load_balancer_round_robin(d, upstream):
    k = uuid.uuid4().hex[:8]
    for _ in range(4):
        out = ok(d.run("lb", {"k": k}))["outputs"]["lb"]
        assert out["success"] is True
    assert upstream.hits("counter/lbA/" + k) == 2
    assert upstream.hits("counter/lbB/" + k) == 2


def test_load_balancer_fails_over(d, upstream):
    k = uuid.uuid4().hex[:8]
    for _ in range(4):
        out = ok(d.run("lb_failover", {"k": k}))["outputs"]["lb"]
        assert out["success"] is True and out["response"]["content"]["key"] == "lbf/" + k
    assert upstream.hits("counter/lbf/" + k) == 4


def test_env_secret_used_but_never_shown(d):
    c = ok(d.run("secret"))["outputs"]["call"]["response"]["content"]
    assert c["headers"]["authorization"] == "Bearer " + SECRET
    r = d.get("/workflows/secret")
    assert r.status_code == 200
    assert SECRET not in r.text
    cfg = r.json()["nodes"][0]["config"]
    assert cfg["auth_token"] == {"$env": "KT_SECRET"}
    assert SECRET not in d.stdout() and SECRET not in d.stderr()


# --- inputs can't redirect a node to another server -----------------------------------------------

def test_url_template_cannot_change_host(d, canary):
    before = canary.hits("_all")
    for p in ("@127.0.0.1:%d/counter/smuggled" % canary.port, ":%d/counter/smuggled" % canary.port,
              "@localhost:%d/" % canary.port):
        r = d.run("after_port", {"p": p})
        assert r.status_code in (200, 400, 404, 500, 502), r.text
        assert canary.hits("_all") == before, "inputs.p %r sent a request to another host" % p
    r = d.run("whole_url", {"base": canary.base})
    assert canary.hits("_all") == before, "a URL template sent a request to another host"
    assert r.status_code != 200 or canary.base not in r.text


def test_inputs_cannot_override_url(d, canary, upstream):
    """Workflow-wide inputs fill a node's parameters by name (SDK rule), but never its url's host."""
    before = canary.hits("_all")
    r = d.run("plain", {"url": canary.url("/counter/by-inputs")})
    assert canary.hits("_all") == before, "inputs.url redirected the node to another server"
    if r.status_code == 200:
        assert r.json()["outputs"]["call"]["response"]["content"]["path"] == "/echo/plain"


def test_parameters_cannot_override_url_host(d, canary):
    before = canary.hits("_all")
    r = d.run("plain", body={"inputs": {}, "parameters": {"call": {"url": canary.url("/counter/by-params")}}})
    assert canary.hits("_all") == before, "parameters.call.url redirected the node to another server"
    assert r.status_code in (200, 400), r.text


# --- hostile upstreams (issue 9): each daemon here is fresh, so its calls share one connection ----

def edge_workflows(base):
    return {
        "folded": wf({"call": http(base + "/raw/folded_first", verify_ssl=False)}),
        "raw": wf({"call": http(base + "/raw/{{ inputs.name }}", verify_ssl=False)}),
        "extra": wf({"call": http(base + "/extra?mode={{ inputs.mode }}", verify_ssl=False)}),
        "after": wf({"call": http(base + "/echo/after", verify_ssl=False)}),
        "hugelen": wf({"call": http(base + "/hugelen", verify_ssl=False, timeout=10)}),
    }


@pytest.fixture(scope="module")
def tls_upstream(tmp_path_factory):
    """upstream.py over TLS, with a self-signed certificate made here (nodes set verify_ssl false)."""
    t = tmp_path_factory.mktemp("tls")
    cert, key = str(t / "cert.pem"), str(t / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=127.0.0.1", "-keyout", key, "-out", cert], check=True, capture_output=True)
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "upstream.py"), "--tls-cert", cert,
                             "--tls-key", key], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.startswith("PORT "), (line, proc.stderr.read())
    yield "https://127.0.0.1:%d" % int(line.split()[1])
    proc.terminate()
    proc.wait(5)


WAYS = {"plain": {}, "libcurl": {"KAILASH_UPSTREAM_CLIENT": "libcurl"}, "https": {}}


def edge_daemon(daemons, way, upstream, tls_upstream):
    base = tls_upstream if way == "https" else upstream.base
    return daemons.make(config={"upstream": {"max_response_bytes": MAX_RESP, "connect_timeout_ms": 1000}},
                        workflows=edge_workflows(base), env=WAYS[way])


@pytest.mark.parametrize("way", ["libcurl", "https"])
def test_folded_first_header_line_does_not_crash_libcurl(daemons, upstream, tls_upstream, way):
    """libcurl 7.88.1 unfolds a folded first header line into the last header of the easy handle's
    previous transfer, long freed (curl issue 11101): with handles reused, the daemon died of a double
    free. So each folded answer here follows an ordinary one."""
    d = edge_daemon(daemons, way, upstream, tls_upstream)
    for _ in range(4):
        assert ok(d.run("after"))["outputs"]["call"]["status_code"] == 200
        r = d.run("folded")
        assert r.status_code in (200, 502), r.text
    assert d.alive()
    assert ok(d.run("after"))["outputs"]["call"]["response"]["content"]["path"] == "/echo/after"


@pytest.mark.parametrize("name", ["folded_first", "folded"])
def test_plain_client_refuses_folded_lines(daemons, upstream, tls_upstream, name):
    d = edge_daemon(daemons, "plain", upstream, tls_upstream)
    err = assert_error(d.run("raw", {"name": name}), 502, "upstream_error")
    assert "fold" in err["message"], err["message"]


@pytest.mark.parametrize("mode", ["same", "late", "chunked"])
@pytest.mark.parametrize("way", ["plain", "libcurl", "https"])
def test_bytes_past_an_answer_never_answer_the_next_call(daemons, upstream, tls_upstream, way, mode):
    """The upstream sends a whole second answer nobody asked for, with its answer or 200 ms later,
    on a connection the next call would reuse: that call must get its own answer."""
    d = edge_daemon(daemons, way, upstream, tls_upstream)
    for _ in range(3):
        first = ok(d.run("extra", {"mode": mode}))["outputs"]["call"]["response"]["content"]
        assert first == {"first": True}
        if mode == "late":
            time.sleep(0.4)
        after = ok(d.run("after"))["outputs"]["call"]["response"]["content"]
        assert after != {"stray": True}, "bytes past the last answer served as this call's answer"
        assert after["path"] == "/echo/after"


@pytest.mark.parametrize("name", ["space_colon", "no_colon", "nul_value", "two_te", "latin1_name"])
def test_plain_client_refuses_malformed_headers(daemons, upstream, tls_upstream, name):
    d = edge_daemon(daemons, "plain", upstream, tls_upstream)
    assert_error(d.run("raw", {"name": name}), 502, "upstream_error")
    assert ok(d.run("after"))["outputs"]["call"]["response"]["content"]["path"] == "/echo/after"


@pytest.mark.parametrize("way", ["libcurl", "https"])
def test_non_utf8_header_name_is_never_a_500(daemons, upstream, tls_upstream, way):
    """A header name that is not UTF-8 cannot be a JSON key: the header is dropped, not the run."""
    d = edge_daemon(daemons, way, upstream, tls_upstream)
    out = ok(d.run("raw", {"name": "latin1_name"}))["outputs"]["call"]
    assert out["response"]["content"] == {"ok": True}
    assert not any(k.startswith("x-") and k != "x-folded" for k in out["response"]["headers"])


@pytest.mark.parametrize("way", ["plain", "libcurl", "https"])
def test_content_length_over_the_limit_fails_at_once(daemons, upstream, tls_upstream, way):
    """/hugelen announces more than max_response_bytes, then stalls: no need to wait for the node's
    10 s timeout to know the answer cannot be taken."""
    d = edge_daemon(daemons, way, upstream, tls_upstream)
    t0 = time.time()
    err = assert_error(d.run("hugelen"), 502, "upstream_error")
    assert time.time() - t0 < 2, "took %.1f s" % (time.time() - t0)
    assert "max_response_bytes" in err["message"], err["message"]


class _CountingProxy:
    """A local HTTP server that counts every request it gets and answers 599: any call routed to it
    through a proxy setting shows as a hit (and as a wrong status)."""

    def __init__(self):
        import http.server
        import threading
        hits = self.hits = []

        class H(http.server.BaseHTTPRequestHandler):
            def _any(self):
                hits.append(self.path)
                self.send_response(599)
                self.send_header("Content-Length", "0")
                self.end_headers()
            do_GET = do_POST = do_CONNECT = _any

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = "http://127.0.0.1:%d" % self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


@pytest.mark.parametrize("mode", ["plain", "libcurl"])
def test_proxy_environment_is_ignored_on_both_paths(daemons, upstream, mode):
    """README, "How a call goes out": no proxy, whatever http_proxy/HTTP_PROXY/all_proxy say, on both
    paths, for a numeric host and for a host name before and after the resolver has it."""
    proxy = _CountingProxy()
    try:
        env = {"http_proxy": proxy.url, "HTTP_PROXY": proxy.url, "all_proxy": proxy.url, "ALL_PROXY": proxy.url}
        if mode == "libcurl":
            env["KAILASH_UPSTREAM_CLIENT"] = "libcurl"
        d = daemons.make(workflows={
            "by_ip": wf({"call": http(upstream.base + "/echo/ip")}),
            "by_name": wf({"call": http("http://localhost:%d/echo/named/{{ inputs.i }}" % upstream.port)}),
        }, env=env)
        for i in range(4):
            out = ok(d.run("by_name", {"i": i}))["outputs"]["call"]
            assert out["status_code"] == 200
            assert out["response"]["content"]["path"] == "/echo/named/%d" % i
            assert ok(d.run("by_ip"))["outputs"]["call"]["status_code"] == 200
            time.sleep(0.05)
        assert proxy.hits == []
    finally:
        proxy.stop()
