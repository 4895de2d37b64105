"""Reload of config and workflows: POST /admin/reload and SIGHUP (API.md "Routes", admin/reload)."""
import json
import os
import signal
import threading
import time

import pytest

from conftest import assert_error, wait_for
import wfs
from wfs import http, node, transform, wf


def greeting_wf(word, version):
    w = wfs.example("hello")
    w["version"] = version
    w["nodes"]["greet"]["config"]["template"]["greeting"] = word + ", {{ inputs.name }}!"
    return w


def greet(d):
    r = d.run("hello", {"name": "Ada"})
    assert r.status_code == 200, r.text
    return r.json()["outputs"]["greeting"]


def names(d):
    return [w["name"] for w in d.get("/workflows").json()["workflows"]]


def test_reload_applies_changes(daemons):
    d = daemons.make(workflows={"hello": greeting_wf("Hello", "1"), "gone": wf({"t": transform({})})})
    assert greet(d) == "Hello, Ada!"
    d.write_workflow("hello", greeting_wf("Hi", "2"))
    d.write_workflow("extra", wf({"t": transform({"extra": True})}))
    d.remove_workflow("gone")
    r = d.reload()
    assert r.status_code == 200, r.text
    assert r.json() == {"reloaded": True, "workflows": 2, "errors": []}
    assert greet(d) == "Hi, Ada!"
    assert d.get("/workflows/hello").json()["version"] == "2"
    assert names(d) == ["extra", "hello"]
    assert d.run("extra").json()["outputs"] == {"t": {"result": {"extra": True}}}
    assert_error(d.run("gone"), 404, "not_found")


def test_reload_bad_workflow_keeps_previous_version(daemons):
    d = daemons.make(workflows={"hello": greeting_wf("Hello", "1"), "other": wf({"t": transform({"o": 1})})})
    d.write_workflow("hello", "{ broken")
    d.write_workflow("newbad", wf({"x": node("SharePointGraphReader", code="result = 1")}))
    d.write_workflow("other", wf({"t": transform({"o": 2})}))
    r = d.reload()
    assert r.status_code == 200, r.text
    b = r.json()
    assert b["reloaded"] is True
    files = sorted(os.path.basename(e["file"]) for e in b["errors"])
    assert files == ["hello.json", "newbad.json"], b
    assert all(isinstance(e["message"], str) and e["message"] for e in b["errors"])
    assert b["workflows"] == len(names(d)) == 2
    assert greet(d) == "Hello, Ada!"  # the old version still serves
    assert_error(d.run("newbad"), 404, "not_found")
    assert d.run("other").json()["outputs"] == {"t": {"result": {"o": 2}}}
    ready = json.dumps(d.get("/ready").json()["workflow_errors"])
    assert "hello.json" in ready and "newbad.json" in ready
    # fixing the file makes the next reload take it
    d.write_workflow("hello", greeting_wf("Hey", "3"))
    b = d.reload().json()
    assert [os.path.basename(e["file"]) for e in b["errors"]] == ["newbad.json"]
    assert greet(d) == "Hey, Ada!"


@pytest.mark.parametrize("bad", [{"prot": 1}, "{ nope", {"enable_auth": True}])
def test_reload_bad_config_422_keeps_serving(daemons, bad):
    d = daemons.make(workflows={"hello": greeting_wf("Hello", "1")})
    d.write_workflow("hello", greeting_wf("Changed", "2"))
    if isinstance(bad, dict):
        cfg = dict(d.config)
        cfg.update(bad)
        d.write_config(cfg)
    else:
        with open(d.config_path, "w") as f:
            f.write(bad)
    r = d.reload()
    assert_error(r, 422, "invalid_config")
    assert greet(d) == "Hello, Ada!", "a refused reload must change nothing"
    assert d.get("/health").status_code == 200
    d.write_config(d.config)
    r = d.reload()
    assert r.status_code == 200 and r.json()["errors"] == []
    assert greet(d) == "Changed, Ada!"


def test_sighup_reloads(daemons):
    d = daemons.make(workflows={"hello": greeting_wf("Hello", "1")})
    d.write_workflow("hello", greeting_wf("Howdy", "2"))
    d.write_workflow("added", wf({"t": transform({})}))
    d.signal(signal.SIGHUP)
    assert wait_for(lambda: greet(d) == "Howdy, Ada!"), "SIGHUP did not reload"
    assert wait_for(lambda: "added" in names(d))
    assert d.alive()


def test_sighup_bad_config_keeps_serving(daemons):
    d = daemons.make(workflows={"hello": greeting_wf("Hello", "1")})
    d.write_workflow("hello", greeting_wf("Nope", "2"))
    with open(d.config_path, "w") as f:
        f.write("{ broken")
    d.signal(signal.SIGHUP)
    time.sleep(0.7)
    assert d.alive()
    assert greet(d) == "Hello, Ada!"
    assert "kailashd.json" in d.stderr()


def test_reload_during_inflight_run(daemons, upstream):
    slow = wf({"call": http(upstream.base + "/slow?ms=1200")}, gateway={"outputs": {"code": "call.status_code"}})
    d = daemons.make(workflows={"slow": slow, "hello": greeting_wf("Hello", "1")})
    res = []
    t = threading.Thread(target=lambda: res.append(d.run("slow", timeout=10)))
    t.start()
    time.sleep(0.3)
    changed = wf({"t": transform({"new": True})})
    d.write_workflow("slow", changed)
    r = d.reload()
    assert r.status_code == 200
    t.join(10)
    assert res and res[0].status_code == 200, res and res[0].text
    assert res[0].json()["outputs"] == {"code": 200}, "the in-flight run must finish on its old definition"
    assert d.run("slow").json()["outputs"] == {"t": {"result": {"new": True}}}


def test_reload_applies_config_changes(daemons):
    d = daemons.make(config={"max_body_bytes": 4096}, workflows={"hello": greeting_wf("Hello", "1")})
    body = {"inputs": {"name": "x" * 60}}
    assert d.run("hello", body=body).status_code == 200
    cfg = dict(d.config)
    cfg["max_body_bytes"] = 40
    d.write_config(cfg)
    assert d.reload().status_code == 200
    assert_error(d.run("hello", body=body), 413, "payload_too_large")
    assert d.get("/health").status_code == 200


def test_reloads_with_inflight_runs_free_what_they_retire(daemons, upstream):
    """Five reloads while runs on each previous registry and config are still waiting on the
    upstream: every run finishes on its own definition, and at stop nothing is left (under `make
    asan`, LeakSanitizer would report the retired registries and configs, and the exit code fail)."""
    d = daemons.make(workflows={"slow": wf({"call": http(upstream.base + "/slow?ms=400")},
                                           gateway={"outputs": {"code": "call.status_code"}})})
    res = []
    threads = []
    for i in range(5):
        t = threading.Thread(target=lambda: res.append(d.run("slow", timeout=10)))
        t.start()
        threads.append(t)
        time.sleep(0.1)
        d.write_config(dict(d.config, max_body_bytes=4096 + i))
        assert d.reload().status_code == 200
    for t in threads:
        t.join(10)
    assert [r.status_code for r in res] == [200] * 5
    assert d.stop() == 0, d.stderr()[-3000:]
    assert "Sanitizer" not in d.stderr(), d.stderr()[-3000:]
