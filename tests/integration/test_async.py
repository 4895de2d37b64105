"""Asynchronous runs on the in-process queue (issue 16; API.md "Running a workflow", DELETE /runs/{id}).

?mode=async and Prefer: respond-async answer 202 with Location and links once the job is durable;
the run completes in the background and its record says so; /execute "mode": "async" answers the
SDK's {"execution_id", "status": "pending"}. A full queue is a 503 with Retry-After. DELETE cancels a
queued or running run (its upstream call is aborted), a finished one is a 409. Jobs a stopped (or
killed) daemon accepted but did not finish run again at its next start."""
import json
import os
import signal
import time
import uuid

import pytest

from conftest import assert_error, holding, wait_for
from wfs import http, transform, wf

HELLO = wf({"greet": transform({"greeting": "Hello, {{ inputs.name }}!"})})


def hold_wf(upstream, ms=8000, **gw):
    return wf({"call": http(upstream.base + "/hold/{{ inputs.k }}?ms=%d" % ms, timeout=30)},
              gateway=gw or None)


def record(d, run_id):
    r = d.get("/runs/" + run_id)
    return r.json() if r.status_code == 200 else None


def wait_status(d, run_id, statuses, timeout=30.0):
    got = {}

    def check():
        rec = record(d, run_id)
        got["rec"] = rec
        return rec is not None and rec["status"] in statuses
    assert wait_for(check, timeout), "run %s: %s" % (run_id, got.get("rec"))
    return got["rec"]


def accept(d, name, inputs, **kw):
    r = d.post("/workflows/%s/run?mode=async" % name, json={"inputs": inputs, **kw})
    assert r.status_code == 202, r.text
    return r.json()["run_id"]


@pytest.fixture
def d(daemons, upstream):
    return daemons.make(config={"executor_defaults": {"max_concurrency": 1, "max_queue": 3}},
                        workflows={"hello": HELLO, "hold": hold_wf(upstream),
                                   "short": hold_wf(upstream, ms=300)})


def test_async_answers_202_with_location_and_links_then_completes(d):
    r = d.post("/workflows/hello/run?mode=async", json={"inputs": {"name": "Ada"}})
    assert r.status_code == 202, r.text
    body = r.json()
    rid = body["run_id"]
    uuid.UUID(rid)
    assert body == {"run_id": rid, "status": "queued",
                    "links": {"self": "/runs/" + rid, "events": "/runs/%s/events" % rid}}
    assert r.headers["Location"] == "/runs/" + rid
    assert r.headers["X-Run-ID"] == rid
    rec = wait_status(d, rid, {"completed"})
    assert rec["outputs"] == {"greet": {"result": {"greeting": "Hello, Ada!"}}} or \
        rec["outputs"]["greet"]["result"]["greeting"] == "Hello, Ada!", rec
    assert rec["inputs"] == {"name": "Ada"}
    assert rec["error"] is None and rec["started_at"] and rec["finished_at"]
    assert "job" not in rec  # the queued record's payload is never shown
    assert rec["request_id"] == r.headers["X-Request-ID"]


def test_prefer_respond_async_among_other_preferences(d):
    for prefer in ("respond-async", "wait=10, respond-async", "Respond-Async; foo=bar", "handling=lenient,respond-async"):
        r = d.post("/workflows/hello/run", json={"inputs": {"name": "B"}}, headers={"Prefer": prefer})
        assert r.status_code == 202, (prefer, r.text)
        wait_status(d, r.json()["run_id"], {"completed"})
    for prefer in ("respond-asynchronously", "wait=1", "", "x" * 5000, "respond-async-not"):
        r = d.post("/workflows/hello/run", json={"inputs": {"name": "B"}}, headers={"Prefer": prefer})
        assert r.status_code == 200, (prefer, r.text)


def test_explicit_sync_mode_wins_over_prefer(d):
    r = d.post("/workflows/hello/run?mode=sync", json={"inputs": {"name": "B"}}, headers={"Prefer": "respond-async"})
    assert r.status_code == 200 and r.json()["status"] == "completed"


def test_execute_async_answers_the_sdk_shape(d):
    r = d.post("/workflows/hello/execute", json={"inputs": {"name": "C"}, "mode": "async"})
    assert r.status_code == 202, r.text
    body = r.json()
    assert set(body) == {"execution_id", "status"} and body["status"] == "pending"
    assert r.headers["Location"] == "/runs/" + body["execution_id"]
    assert wait_status(d, body["execution_id"], {"completed"})["workflow"] == "hello"


@pytest.mark.parametrize("path,body,msg", [
    ("/workflows/hello/run?mode=bogus", {"inputs": {"name": "x"}}, "mode"),
    ("/workflows/hello/run?mode=stream", {"inputs": {"name": "x"}}, "mode"),
    ("/workflows/hello/run?mode=", {"inputs": {"name": "x"}}, "mode"),
    ("/workflows/hello/run", {"inputs": {"name": "x"}, "callback_url": "http://example.com/x"}, "callback_url"),
    ("/workflows/hello/run?mode=async", {"inputs": {"name": "x"}, "callback_url": 5}, "callback_url"),
    ("/workflows/hello/run?mode=async", {"inputs": {"name": "x"}, "callback_url": "file:///etc/passwd"},
     "callback_url"),
    ("/workflows/hello/execute", {"inputs": {"name": "x"}, "mode": "later"}, "mode"),
    ("/workflows/hello/execute", {"inputs": {"name": "x"}, "mode": 1}, "mode"),
    ("/workflows/hello/execute", {"inputs": {"name": "x"}, "mode": "async", "callback_url": "http://a/"}, "callback_url"),
])
def test_bad_modes_and_callbacks_are_400(d, path, body, msg):
    r = d.post(path, json=body)
    assert_error(r, 400, "bad_request")
    assert msg in r.json()["error"]["message"]


def test_async_inputs_are_checked_before_accepting(d):
    r = d.post("/workflows/hello/run?mode=async", json={"inputs": {"nom": 1}})
    assert r.status_code == 202  # hello has no schema: anything goes
    r = d.post("/workflows/nope/run?mode=async", json={})
    assert_error(r, 404, "not_found")
    r = d.post("/workflows/hello/run?mode=async", json={"inputs": [1]})
    assert_error(r, 400, "bad_request")


def test_a_full_queue_answers_503_overloaded_and_keeps_no_record(d, upstream):
    key = "full-%d" % time.time_ns()
    ids = [accept(d, "hold", {"k": key})]  # runs (max_concurrency 1)
    assert wait_for(lambda: holding(upstream, key) == 1, 5)
    ids += [accept(d, "hold", {"k": key}) for _ in range(3)]  # max_queue 3
    r = d.post("/workflows/hold/run?mode=async", json={"inputs": {"k": key}})
    assert_error(r, 503, "overloaded")
    assert r.headers["Retry-After"] == "1"
    refused = r.headers.get("X-Run-ID")
    if refused:
        assert d.get("/runs/" + refused).status_code == 404
    for rid in ids[1:]:
        assert record(d, rid)["status"] == "queued"
    for rid in ids:
        assert d.request("DELETE", "/runs/" + rid).status_code == 202


def test_cancel_queued_running_and_finished(d, upstream):
    key = "cancel-%d" % time.time_ns()
    running = accept(d, "hold", {"k": key})
    assert wait_for(lambda: holding(upstream, key) == 1, 5)
    rec = record(d, running)
    assert rec["status"] == "running" and rec["started_at"] and rec["finished_at"] is None, rec
    queued = accept(d, "hold", {"k": key + "-q"})
    assert record(d, queued)["status"] == "queued"

    r = d.request("DELETE", "/runs/" + queued)
    assert r.status_code == 202, r.text
    assert r.json()["run_id"] == queued
    rec = wait_status(d, queued, {"cancelled"})
    assert rec["error"]["code"] == "cancelled"

    r = d.request("DELETE", "/runs/" + running)
    assert r.status_code == 202, r.text
    assert wait_for(lambda: holding(upstream, key) == 0, 3), "the running run's upstream call was not aborted"
    rec = wait_status(d, running, {"cancelled"})
    assert rec["error"]["code"] == "cancelled" and rec["finished_at"]
    assert upstream.hits("holding/" + key + "-q") == 0  # the queued one never started

    r = d.request("DELETE", "/runs/" + running)
    assert_error(r, 409, "conflict")
    done = accept(d, "hello", {"name": "z"})
    wait_status(d, done, {"completed"})
    assert_error(d.request("DELETE", "/runs/" + done), 409, "conflict")


@pytest.mark.parametrize("rid", [str(uuid.uuid4()), "not-a-uuid", "0" * 36, "%00", "a%2Fb", "x" * 200])
def test_cancel_unknown_is_404(d, rid):
    r = d.request("DELETE", "/runs/" + rid)
    assert r.status_code == 404, r.text


def test_cancel_a_sync_runs_record_is_409(d):
    r = d.run("hello", {"name": "s"})
    assert r.status_code == 200
    assert_error(d.request("DELETE", "/runs/" + r.json()["run_id"]), 409, "conflict")


def test_many_async_runs_each_get_one_record(daemons):
    d = daemons.make(config={"executor_defaults": {"max_concurrency": 4, "max_queue": 500}},
                     workflows={"hello": HELLO})
    ids = [accept(d, "hello", {"name": "n%d" % i}) for i in range(200)]
    assert len(set(ids)) == 200
    for rid in ids:
        wait_status(d, rid, {"completed"})
    page = d.get("/runs?workflow=hello&limit=200").json()["runs"]
    assert {p["run_id"] for p in page} == set(ids)


def test_restart_finishes_jobs_a_stopped_daemon_left(daemons, upstream):
    key = "restart-%d" % time.time_ns()
    d = daemons.make(config={"executor_defaults": {"max_concurrency": 1, "max_queue": 10},
                             "shutdown_grace_ms": 300},
                     workflows={"hold": hold_wf(upstream, ms=20000), "hello": HELLO})
    first = accept(d, "hold", {"k": key})
    assert wait_for(lambda: holding(upstream, key) == 1, 5)
    queued = [accept(d, "hold", {"k": "%s-q%d" % (key, i)}) for i in range(4)]
    assert all(record(d, rid)["status"] == "queued" for rid in queued)
    assert d.stop() == 0  # the running job is cut at the grace's end, to run again
    assert wait_for(lambda: holding(upstream, key) == 0, 10)
    d.write_workflow("hold", hold_wf(upstream, ms=50))  # the next start's copy answers fast
    d.start()
    for rid in queued + [first]:
        assert wait_status(d, rid, {"completed"})["status"] == "completed"
    assert "5 run(s) an earlier process accepted" in d.stderr() + d.stdout()


def test_kill_9_right_after_202_loses_nothing(daemons):
    d = daemons.make(config={"executor_defaults": {"max_concurrency": 1, "max_queue": 100}},
                     workflows={"slow": wf({"a": transform({"x": "{{ inputs.i }}"})}, gateway=None)})
    # stop the executor from running anything: SIGSTOP would freeze the writer too, so instead accept
    # and kill at once; whatever was answered 202 must have a record after the restart
    ids = [accept(d, "slow", {"i": i}) for i in range(30)]
    d.signal(signal.SIGKILL)
    d.proc.wait()
    d.start()
    for rid in ids:
        assert wait_status(d, rid, {"completed"})["status"] == "completed"


def test_async_with_records_off_is_503(daemons):
    d = daemons.make(config={"store": {"enabled": False}}, workflows={"hello": HELLO})
    r = d.post("/workflows/hello/run?mode=async", json={"inputs": {"name": "x"}})
    assert_error(r, 503, "unavailable")
    assert "store.enabled" in r.json()["error"]["message"]
    assert d.run("hello", {"name": "x"}).status_code == 200


def test_cancel_needs_the_runs_caller(daemons, upstream):
    import hashlib
    keys = {"alice": "alice-key-0123456789", "bob": "bob-key-0123456789", "root": "root-key-0123456789"}
    api_keys = [{"id": k, "sha256": hashlib.sha256(v.encode()).hexdigest(), "roles": ["admin"] if k == "root" else []}
                for k, v in keys.items()]
    d = daemons.make(config={"enable_auth": True, "auth": {"api_keys": api_keys},
                             "executor_defaults": {"max_concurrency": 1, "max_queue": 5}},
                     workflows={"hold": hold_wf(upstream)})
    key = "auth-%d" % time.time_ns()
    r = d.post("/workflows/hold/run?mode=async", json={"inputs": {"k": key}}, headers={"X-API-Key": keys["alice"]})
    assert r.status_code == 202, r.text
    rid = r.json()["run_id"]
    assert wait_for(lambda: holding(upstream, key) == 1, 5)
    assert record(d, rid) is None  # anonymous: 401
    r = d.request("DELETE", "/runs/" + rid, headers={"X-API-Key": keys["bob"]})
    assert_error(r, 404, "not_found")
    r = d.request("DELETE", "/runs/" + rid)
    assert r.status_code == 401
    r = d.request("DELETE", "/runs/" + rid, headers={"X-API-Key": keys["alice"]})
    assert r.status_code == 202, r.text
    assert wait_for(lambda: holding(upstream, key) == 0, 10)
    rec = d.get("/runs/" + rid, headers={"X-API-Key": keys["root"]}).json()
    assert wait_for(lambda: d.get("/runs/" + rid, headers={"X-API-Key": keys["root"]}).json()["status"] == "cancelled", 5)
    assert rec["principal"] == "key:alice"


def test_async_on_postgres_durable_before_202_and_recovered_after_a_restart(daemons, pg_server, upstream):
    key = "pg-%d" % time.time_ns()
    d = daemons.make(config={"database_url": pg_server.url, "shutdown_grace_ms": 300,
                             "executor_defaults": {"max_concurrency": 1, "max_queue": 10}},
                     workflows={"hold": hold_wf(upstream, ms=20000)})
    first = accept(d, "hold", {"k": key})
    assert wait_for(lambda: holding(upstream, key) == 1, 5)
    queued = [accept(d, "hold", {"k": "%s-q%d" % (key, i)}) for i in range(3)]
    for rid in queued:  # committed before its 202 was sent
        assert pg_server.sql("SELECT status, job->>'run_id' FROM runs WHERE run_id = '%s'" % rid) == ["queued|" + rid]
    assert "job" not in record(d, queued[0])
    assert "job" not in json.dumps(d.get("/runs?status=queued").json())
    assert d.stop() == 0
    d.write_workflow("hold", hold_wf(upstream, ms=50))
    d.start()
    for rid in queued + [first]:
        assert wait_status(d, rid, {"completed"})["status"] == "completed"
    assert pg_server.sql("SELECT count(*) FROM runs WHERE job IS NOT NULL") == ["0"]



def test_an_unwritable_journal_refuses_async_accepts_until_it_is_back(daemons):
    d = daemons.make(workflows={"hello": HELLO}, start=False)
    with open(os.path.join(d.data_dir, "runs"), "w") as f:  # a file where the directory should be
        f.write("in the way")
    d.start()
    r = d.post("/workflows/hello/run?mode=async", json={"inputs": {"name": "x"}})
    assert_error(r, 503, "unavailable")
    assert "journal" in r.json()["error"]["message"]
    assert d.run("hello", {"name": "x"}).status_code == 200  # sync runs go on (their records wait)
    os.remove(os.path.join(d.data_dir, "runs"))
    assert wait_for(lambda: d.get("/ready").status_code == 200, timeout=10)
    rid = accept(d, "hello", {"name": "y"})
    assert wait_status(d, rid, {"completed"})


def test_prefer_respond_async_is_said_applied(d):
    r = d.post("/workflows/hello/run", json={"inputs": {"name": "B"}}, headers={"Prefer": "respond-async"})
    assert r.status_code == 202 and r.headers["Preference-Applied"] == "respond-async"
    r = d.post("/workflows/hello/run?mode=async", json={"inputs": {"name": "B"}})
    assert r.status_code == 202 and "Preference-Applied" not in r.headers
