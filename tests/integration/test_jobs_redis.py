"""Asynchronous runs on the Redis Streams queue (issue 16; src/jobs/jobs_redis*.c), black-box: two
daemons share the harness's Redis, each with its own run journal (a run's final record is in the
journal of the instance that ran it, so it is read there).

A job accepted on A runs on B when A has no consumer for it; a daemon killed with jobs in flight
leaves them pending, and another instance claims and finishes every one after jobs.claim_idle_ms; a
live instance's long run is never claimed; an orphan job of a workflow no live instance has goes to
the dead letters after jobs.max_deliveries, its record failed saying why; a cancel reaches the
instance running the job; with Redis stopped, async accepts still answer 202 (in-process queue)."""
import json
import time

import pytest

from conftest import wait_for
from wfs import http, transform, wf

HELLO = wf({"greet": transform({"greeting": "Hello, {{ inputs.name }}!"})})
PREFIX = "kailash:jobs:"
DEAD = "kailash:jobs:dead:letters"


def hold_wf(upstream, ms):
    return wf({"call": http(upstream.base + "/hold/{{ inputs.k }}?ms=%d" % ms, timeout=60)})


def slow_wf(upstream, ms):
    return wf({"call": http(upstream.base + "/slow?ms=%d" % ms, timeout=60)})


def rconf(redis_server, **jobs):
    j = {"claim_idle_ms": 1000, "max_deliveries": 3, "consumers": 2}
    j.update(jobs)
    return {"redis_url": redis_server.url, "redis_timeout_ms": 500, "jobs": j,
            "executor_defaults": {"max_concurrency": 4, "max_queue": 50}}


def record(d, run_id):
    r = d.get("/runs/" + run_id)
    return r.json() if r.status_code == 200 else None


def wait_status(d, run_id, statuses, timeout=30.0):
    got = {}

    def check():
        got["rec"] = record(d, run_id)
        return got["rec"] is not None and got["rec"]["status"] in statuses
    assert wait_for(check, timeout), "run %s on %s: %s" % (run_id, d.root, got.get("rec"))
    return got["rec"]


def accept(d, name, inputs):
    r = d.post("/workflows/%s/run?mode=async" % name, json={"inputs": inputs})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "queued"
    return body["run_id"]


def redis_int(redis_server, *args):
    out = redis_server.command(*args)
    assert out.startswith(":"), out
    return int(out[1:].split("\r\n")[0])


def stream_len(redis_server, wf_name):
    return redis_int(redis_server, "XLEN", PREFIX + wf_name)


def pending(redis_server, wf_name):
    out = redis_server.command("XPENDING", PREFIX + wf_name, "kailashd")  # [count, min, max, consumers]
    lines = out.split("\r\n")
    return int(lines[1][1:]) if out.startswith("*") and lines[1].startswith(":") else 0


def test_accepted_on_a_run_on_b_and_acknowledged(daemons, redis_server, upstream):
    b = daemons.make(config=rconf(redis_server), workflows={"hello": HELLO}, name="b")
    a = daemons.make(config=rconf(redis_server), workflows={"hello": HELLO}, name="a")
    ids = [accept(a, "hello", {"name": "n%d" % i}) for i in range(20)]
    ran = {"a": 0, "b": 0}
    for rid in ids:
        for name, d in (("a", a), ("b", b)):
            rec = record(d, rid)
            if rec and rec["status"] == "completed":
                ran[name] += 1
        # whichever ran it, one of the two has it completed
    for rid in ids:
        assert wait_for(lambda: any((record(d, rid) or {}).get("status") == "completed" for d in (a, b)), 20), rid
    # every entry acknowledged and deleted once its record was durable
    assert wait_for(lambda: stream_len(redis_server, "hello") == 0, 10), stream_len(redis_server, "hello")
    assert pending(redis_server, "hello") == 0


def test_a_job_accepted_where_no_consumer_can_run_it_is_run_by_the_other(daemons, redis_server, upstream):
    # A and B both serve "busy"; A's only slot is held by a long run, so the jobs accepted on A are
    # read by B (a consumer reads a stream only while its workflow has a free slot: never into a
    # local queue while another instance may be idle)
    cfg = rconf(redis_server)
    cfg["executor_defaults"] = {"max_concurrency": 1, "max_queue": 50}
    a = daemons.make(config=cfg, workflows={"busy": hold_wf(upstream, 6000)}, name="a")
    first = accept(a, "busy", {"k": "ab-first"})
    assert wait_for(lambda: (record(a, first) or {}).get("status") == "running", 10)
    b = daemons.make(config=cfg, workflows={"busy": slow_wf(upstream, 50)}, name="b")
    ids = [accept(a, "busy", {"k": "ab%d" % i}) for i in range(3)]
    for rid in ids:
        rec = wait_status(b, rid, {"completed"}, timeout=20)
        assert '"slept_ms": 50' in json.dumps(rec["outputs"]), rec  # B's version of the workflow
    wait_status(a, first, {"completed"}, timeout=20)


def test_kill_9_with_jobs_in_flight_another_instance_finishes_every_one(daemons, redis_server, upstream):
    cfg = rconf(redis_server, claim_idle_ms=1500)
    a = daemons.make(config=cfg, workflows={"work": hold_wf(upstream, 30000)}, name="a")
    ids = [accept(a, "work", {"k": "kill%d" % i}) for i in range(6)]
    # A took as many as it has slots (4): pending under its consumers; the others wait in the stream
    assert wait_for(lambda: pending(redis_server, "work") >= 4, 10), pending(redis_server, "work")
    assert wait_for(lambda: upstream.hits("holding/kill0") + upstream.hits("holding/kill3") >= 1, 10)
    a.proc.kill()
    a.proc.wait()
    b = daemons.make(config=cfg, workflows={"work": slow_wf(upstream, 100)}, name="b")
    for rid in ids:
        wait_status(b, rid, {"completed"}, timeout=30)
    assert wait_for(lambda: stream_len(redis_server, "work") == 0, 10)
    assert pending(redis_server, "work") == 0


def test_a_live_instances_long_run_is_not_claimed(daemons, redis_server, upstream):
    cfg = rconf(redis_server, claim_idle_ms=600)
    a = daemons.make(config=cfg, workflows={"long": hold_wf(upstream, 4000)}, name="a")
    b = daemons.make(config=cfg, workflows={"long": slow_wf(upstream, 10)}, name="b")
    rid = None
    for i in range(10):  # the job must be A's: accept until A's consumers take one
        rid = accept(a, "long", {"k": "live%d" % i})
        if wait_for(lambda: (record(a, rid) or {}).get("status") == "running", 3):
            break
        rid = None
    assert rid, "A never ran a job"
    time.sleep(2.5)  # four claim_idle_ms: B would have claimed it by now
    assert record(b, rid) is None, record(b, rid)
    rec = wait_status(a, rid, {"completed"}, timeout=20)
    assert rec["status"] == "completed"


def test_orphan_of_a_workflow_no_live_instance_has_goes_to_the_dead_letters(daemons, redis_server, upstream):
    cfg = rconf(redis_server, claim_idle_ms=400, max_deliveries=2, consumers=1)
    a = daemons.make(config=cfg, workflows={"gone": hold_wf(upstream, 30000)}, name="a")
    rid = accept(a, "gone", {"k": "dead1"})
    assert wait_for(lambda: pending(redis_server, "gone") == 1, 10)
    a.proc.kill()
    a.proc.wait()
    b = daemons.make(config=cfg, workflows={"hello": HELLO}, name="b")
    rec = wait_status(b, rid, {"failed"}, timeout=30)
    assert rec["error"]["code"] == "internal", rec
    assert "dead-lettered after 2 deliveries" in rec["error"]["message"], rec
    assert "'gone' is not loaded" in rec["error"]["message"], rec
    assert wait_for(lambda: redis_int(redis_server, "XLEN", DEAD) == 1, 5)
    dead = redis_server.command("XRANGE", DEAD, "-", "+")
    assert rid in dead and "gone" in dead and "dead-lettered" in dead, dead
    assert stream_len(redis_server, "gone") == 0 and pending(redis_server, "gone") == 0


def test_a_cancel_on_one_instance_stops_the_run_on_the_other(daemons, redis_server, pg_server, upstream):
    # records in one Postgres: B sees the run's record say running, and tells A through Redis
    cfg = dict(rconf(redis_server), database_url=pg_server.url)
    cfg["executor_defaults"] = {"max_concurrency": 1, "max_queue": 50}
    a = daemons.make(config=cfg, workflows={"long": hold_wf(upstream, 20000)}, name="a")
    rid = accept(a, "long", {"k": "cancel-x"})
    assert wait_for(lambda: (record(a, rid) or {}).get("status") == "running", 10)
    # a second job A has no room for yet: cancelled before anyone took it
    waiting = accept(a, "long", {"k": "cancel-y"})
    b = daemons.make(config=cfg, workflows={"other": HELLO}, name="b")
    for run_id in (waiting, rid):  # the waiting one first: A's slot stays busy meanwhile
        r = b.request("DELETE", "/runs/" + run_id)
        assert r.status_code == 202, r.text
    rec = wait_status(b, rid, {"cancelled"}, timeout=10)
    rec = wait_status(b, waiting, {"cancelled"}, timeout=10)
    assert rec["started_at"] is None, rec
    assert redis_server.command("EXISTS", "kailash:jobs:cancelled:" + waiting).startswith(":1")
    assert wait_for(lambda: stream_len(redis_server, "long") == 0, 10)
    assert pending(redis_server, "long") == 0


def test_redis_stopped_async_accepts_fall_back_in_process(daemons, redis_server, upstream):
    a = daemons.make(config=rconf(redis_server), workflows={"hello": HELLO}, name="a")
    rid = accept(a, "hello", {"name": "up"})
    wait_status(a, rid, {"completed"})
    redis_server.stop()
    # the breaker opens after a few failed commands; accepts answer 202 throughout
    ids = [accept(a, "hello", {"name": "down%d" % i}) for i in range(8)]
    time.sleep(1.5)
    ids += [accept(a, "hello", {"name": "later%d" % i}) for i in range(3)]
    for rid in ids:
        wait_status(a, rid, {"completed"}, timeout=20)
    assert wait_for(lambda: "Redis" in a.stderr() and "unreachable" in a.stderr(), 10), a.stderr()[-2000:]
    # and back: the consumers reconnect, new jobs go through the stream again
    redis_server.start()
    assert wait_for(lambda: "consuming the Redis job streams" in a.stderr().split("unreachable")[-1], 20), \
        a.stderr()[-2000:]
    assert wait_for(lambda: a.get("/ready").status_code == 200, 10)
    rid = accept(a, "hello", {"name": "back"})
    wait_status(a, rid, {"completed"})
    assert wait_for(lambda: redis_server.command("EXISTS", PREFIX + "hello").startswith(":1"), 5)
