"""Run events as Server-Sent Events (API.md "Events (SSE)"; /execute "mode": "stream").

GET /runs/{id}/events follows an async run from its start to its end (ids 1, 2, ... and API.md's
event names and data), resumes after Last-Event-ID, gives a late client the kept events then the
end, and, once the buffer is gone (its time passed, or the daemon restarted), one final event made
from the run record. Unknown and non-UUID ids are 404, as is another principal's run with auth on.
Heartbeat comments come at KAILASH_SSE_HEARTBEAT_MS. A client that never reads does not hold a run
back, and a graceful stop ends open streams. /execute with "mode": "stream" answers the SDK's
stream (start, node events, complete or error). With Redis, a run on one instance is followed from
another."""
import hashlib
import http.client as httpc
import json
import socket
import time
import uuid

import pytest

from conftest import assert_error, closed_port, wait_for
from wfs import conn, http, transform, wf

KEYS = {"alice": "alice-key-0123456789", "bob": "bob-key-0123456789", "root": "root-key-0123456789"}


def sha(s):
    return hashlib.sha256(s.encode()).hexdigest()


def slow_wf(upstream, ms=600):
    """first (transform) -> call (HTTP, ms long) -> last (transform)."""
    return wf({"first": transform({"n": "{{ inputs.name }}"}),
               "call": http(upstream.base + "/slow?ms=%d" % ms, timeout=30),
               "last": transform({"done": "{{ inputs.name }}"})},
              connections=[conn("first", "result", "call", "params"), conn("call", "status_code", "last", "data")])


HELLO = wf({"greet": transform({"greeting": "Hello, {{ inputs.name }}!"})})


def failing_wf(upstream):
    """Its HTTP node's upstream refuses connections: upstream_error."""
    return wf({"call": http("http://127.0.0.1:%d/" % closed_port(), timeout=5)})


class Stream:
    """One SSE answer read with http.client (which undoes the chunked framing)."""

    def __init__(self, d, path, headers=None, timeout=15):
        self.c = httpc.HTTPConnection("127.0.0.1", d.port, timeout=timeout)
        self.c.request("GET", path, headers=headers or {})
        self.resp = self.c.getresponse()
        self.status = self.resp.status
        self.headers = {k.lower(): v for k, v in self.resp.getheaders()}

    def events(self, limit=None):
        """Frames until the end of the stream (or limit frames): dicts with id, event, data (parsed)
        and comment."""
        out, cur = [], {}
        while limit is None or len(out) < limit:
            line = self.resp.readline()
            if not line:
                break
            line = line.decode().rstrip("\n")
            if line == "":
                if cur:
                    out.append(cur)
                cur = {}
            elif line.startswith(":"):
                cur["comment"] = line[1:].strip()
            else:
                k, _, v = line.partition(": ")
                cur[k] = json.loads(v) if k == "data" else v
        return out

    def close(self):
        self.c.close()


def named(frames):
    return [f for f in frames if "event" in f]


def accept(d, name, inputs, headers=None):
    r = d.post("/workflows/%s/run?mode=async" % name, json={"inputs": inputs}, headers=headers)
    assert r.status_code == 202, r.text
    assert r.json()["links"]["events"] == "/runs/%s/events" % r.json()["run_id"]
    return r.json()["run_id"]


def record(d, rid, headers=None):
    r = d.get("/runs/" + rid, headers=headers)
    return r.json() if r.status_code == 200 else None


def wait_done(d, rid, headers=None, timeout=20):
    assert wait_for(lambda: (record(d, rid, headers) or {}).get("status") in ("completed", "failed"), timeout)
    return record(d, rid, headers)


@pytest.fixture
def d(daemons, upstream):
    return daemons.make(workflows={"slow": slow_wf(upstream), "hello": HELLO, "bad": failing_wf(upstream)})


EXPECTED = ["run_started", "node_started", "node_completed", "node_started", "node_completed", "node_started",
            "node_completed", "run_completed"]


def test_follows_an_async_run_from_start_to_end(d):
    rid = accept(d, "slow", {"name": "Ada"})
    s = Stream(d, "/runs/%s/events" % rid)
    assert s.status == 200
    assert s.headers["content-type"] == "text/event-stream"
    assert s.headers["cache-control"] == "no-cache"
    assert s.headers.get("x-request-id") and "total;dur=" in s.headers.get("server-timing", "")
    t0 = time.time()
    frames = named(s.events())
    assert time.time() - t0 < 10
    assert [f["event"] for f in frames] == EXPECTED, frames
    assert [f["id"] for f in frames] == [str(i) for i in range(1, 9)]
    for f in frames:
        assert f["data"]["run_id"] == rid and f["data"]["workflow"] == "slow"
        assert f["data"]["ts"].endswith("Z") and "T" in f["data"]["ts"]
    nodes = [(f["data"]["node"], f["data"]["type"]) for f in frames if f["event"].startswith("node_")]
    assert nodes == [("first", "TransformNode")] * 2 + [("call", "HTTPRequestNode")] * 2 + [("last", "TransformNode")] * 2
    assert frames[2]["data"]["outputs"] == {"result": {"n": "Ada"}}
    assert frames[-1]["data"]["status"] == "completed"
    assert frames[-1]["data"]["outputs"]["last"]["result"] == {"done": "Ada"}
    s.close()
    # the access log has the stream's line with its status
    assert d.wait_log(lambda e: e.get("path") == "/runs/%s/events" % rid and e.get("status") == 200)


def test_last_event_id_resumes_after_that_event(d):
    rid = accept(d, "slow", {"name": "Bo"})
    wait_done(d, rid)
    for last, first in (("3", 4), ("0", 1), ("7", 8)):
        s = Stream(d, "/runs/%s/events" % rid, headers={"Last-Event-ID": last})
        frames = named(s.events())
        assert [int(f["id"]) for f in frames] == list(range(first, 9)), (last, frames)
        s.close()
    s = Stream(d, "/runs/%s/events" % rid, headers={"Last-Event-ID": "8"})
    assert named(s.events()) == []  # nothing after the end: the stream just ends
    s.close()


@pytest.mark.parametrize("hostile", ["-1", "abc", "+3", "3,4", "1e3", "99999999999999999999999", "3.0", "0x3", ""])
def test_last_event_id_that_is_not_a_number_starts_from_the_first(d, hostile):
    rid = accept(d, "hello", {"name": "X"})
    wait_done(d, rid)
    s = Stream(d, "/runs/%s/events" % rid, headers={"Last-Event-ID": hostile})
    frames = named(s.events())
    assert [f["event"] for f in frames] == ["run_started", "node_started", "node_completed", "run_completed"]
    s.close()


def test_late_client_gets_the_kept_events_then_the_end(d):
    rid = accept(d, "slow", {"name": "Late"})
    wait_done(d, rid)
    time.sleep(0.2)
    s = Stream(d, "/runs/%s/events" % rid)
    t0 = time.time()
    frames = named(s.events())
    assert time.time() - t0 < 3
    assert [f["event"] for f in frames] == EXPECTED
    s.close()


def test_a_client_during_the_run_gets_the_earlier_events_too(d):
    rid = accept(d, "slow", {"name": "Mid"})
    time.sleep(0.3)  # the HTTP node is waiting
    s = Stream(d, "/runs/%s/events" % rid)
    frames = named(s.events())
    assert [f["event"] for f in frames] == EXPECTED
    s.close()


def test_failed_run_ends_with_run_failed_and_its_error(d):
    rid = accept(d, "bad", {})
    s = Stream(d, "/runs/%s/events" % rid)
    frames = named(s.events())
    names = [f["event"] for f in frames]
    assert names[0] == "run_started" and names[-1] == "run_failed", names
    assert "node_failed" in names
    nf = frames[names.index("node_failed")]["data"]
    assert nf["node"] == "call" and nf["error"]["code"] == "upstream_error" and nf["error"]["message"]
    end = frames[-1]["data"]
    assert end["status"] == "failed" and end["error"]["code"] == "upstream_error" and end["error"]["node"] == "call"
    s.close()


@pytest.mark.parametrize("rid", ["not-a-uuid", str(uuid.uuid4()), "0" * 36, "%00", "x" * 100,
                                 "01900000-0000-7000-8000-00000000000g"])
def test_unknown_or_malformed_id_is_404(d, rid):
    r = d.get("/runs/%s/events" % rid)
    assert_error(r, 404, "not_found")


def test_other_routes_on_events_path(d):
    r = d.request("POST", "/runs/%s/events" % uuid.uuid4())
    assert r.status_code == 405 and "GET" in r.headers["Allow"]


def test_another_principals_run_is_404_with_auth_on(daemons, upstream):
    keys = [{"id": "alice", "sha256": sha(KEYS["alice"])}, {"id": "bob", "sha256": sha(KEYS["bob"])},
            {"id": "root", "sha256": sha(KEYS["root"]), "roles": ["admin"]}]
    d = daemons.make(config={"enable_auth": True, "auth": {"api_keys": keys}}, workflows={"slow": slow_wf(upstream)})
    alice, bob, root = ({"X-API-Key": KEYS[k]} for k in ("alice", "bob", "root"))
    rid = accept(d, "slow", {"name": "A"}, headers=alice)
    r = d.get("/runs/%s/events" % rid)
    assert_error(r, 401, "unauthorized")
    # live (buffer) and after the end: bob never sees alice's run
    assert_error(d.get("/runs/%s/events" % rid, headers=bob), 404, "not_found")
    s = Stream(d, "/runs/%s/events" % rid, headers=alice)
    assert [f["event"] for f in named(s.events())] == EXPECTED
    s.close()
    assert_error(d.get("/runs/%s/events" % rid, headers=bob), 404, "not_found")
    s = Stream(d, "/runs/%s/events" % rid, headers=root)  # admin sees every run
    assert [f["event"] for f in named(s.events())] == EXPECTED
    s.close()


def test_heartbeat_comments_while_the_run_waits(daemons, upstream):
    d = daemons.make(workflows={"slow": slow_wf(upstream, ms=1200)}, env={"KAILASH_SSE_HEARTBEAT_MS": "100"})
    rid = accept(d, "slow", {"name": "H"})
    s = Stream(d, "/runs/%s/events" % rid)
    frames = s.events()
    beats = [f for f in frames if f.get("comment") == "keepalive"]
    assert len(beats) >= 4, frames
    assert [f["event"] for f in named(frames)] == EXPECTED
    s.close()


def test_buffer_gone_gives_final_event_from_the_record(daemons, upstream):
    d = daemons.make(workflows={"hello": HELLO, "bad": failing_wf(upstream)}, env={"KAILASH_EVENTS_KEEP_MS": "200"})
    ok = accept(d, "hello", {"name": "Old"})
    bad = accept(d, "bad", {})
    wait_done(d, ok)
    wait_done(d, bad)
    time.sleep(1.0)  # the buffers' life (200 ms) and a sweep (at most 100 ms later) have passed
    s = Stream(d, "/runs/%s/events" % ok)
    frames = named(s.events())
    assert len(frames) == 1 and frames[0]["event"] == "run_completed" and "id" not in frames[0], frames
    assert frames[0]["data"]["status"] == "completed" and frames[0]["data"]["run_id"] == ok
    assert frames[0]["data"]["outputs"]["greet"]["result"]["greeting"] == "Hello, Old!"
    s.close()
    s = Stream(d, "/runs/%s/events" % bad, headers={"Last-Event-ID": "2"})
    frames = named(s.events())
    assert [f["event"] for f in frames] == ["run_failed"]
    assert frames[0]["data"]["status"] == "failed" and frames[0]["data"]["error"]["code"] == "upstream_error"
    s.close()


def test_after_a_restart_the_record_gives_the_final_event(daemons):
    d = daemons.make(workflows={"hello": HELLO})
    rid = accept(d, "hello", {"name": "R"})
    wait_done(d, rid)
    assert d.stop() == 0
    d.start()
    s = Stream(d, "/runs/%s/events" % rid)
    frames = named(s.events())
    assert [f["event"] for f in frames] == ["run_completed"]
    s.close()


def test_a_client_that_never_reads_does_not_hold_the_run(daemons, upstream):
    big = wf({"a": http(upstream.base + "/large?bytes=60000", timeout=10),
              "b": http(upstream.base + "/large?bytes=60000", timeout=10),
              "c": http(upstream.base + "/slow?ms=300", timeout=10)})
    d = daemons.make(workflows={"big": big, "hello": HELLO})
    rid = accept(d, "big", {})
    stuck = []
    for _ in range(3):  # clients with tiny receive windows that never read a byte
        c = socket.socket()
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        c.connect(("127.0.0.1", d.port))
        c.sendall(("GET /runs/%s/events HTTP/1.1\r\nHost: x\r\n\r\n" % rid).encode())
        stuck.append(c)
    t0 = time.time()
    rec = wait_done(d, rid)
    assert rec["status"] == "completed" and time.time() - t0 < 10
    # the daemon goes on serving, other streams included
    rid2 = accept(d, "hello", {"name": "other"})
    s = Stream(d, "/runs/%s/events" % rid2)
    assert named(s.events())[-1]["event"] == "run_completed"
    s.close()
    for c in stuck:
        c.close()


def test_graceful_stop_ends_open_streams(daemons, upstream):
    d = daemons.make(workflows={"slow": slow_wf(upstream, ms=1500)})
    rid = accept(d, "slow", {"name": "S"})
    s = Stream(d, "/runs/%s/events" % rid, timeout=20)
    first = s.events(limit=1)
    assert first[0]["event"] == "run_started"
    t0 = time.time()
    d.signal(15)
    s.events()  # ends at the stop, not at the run's end
    assert time.time() - t0 < 1.2
    s.close()
    assert d.proc.wait(20) == 0


# ---- /execute "mode": "stream" ----------------------------------------------------------------


def execute_stream(d, name, inputs):
    c = httpc.HTTPConnection("127.0.0.1", d.port, timeout=15)
    c.request("POST", "/workflows/%s/execute" % name, body=json.dumps({"inputs": inputs, "mode": "stream"}),
              headers={"Content-Type": "application/json"})
    resp = c.getresponse()
    s = Stream.__new__(Stream)
    s.c, s.resp, s.status = c, resp, resp.status
    s.headers = {k.lower(): v for k, v in resp.getheaders()}
    return s


def test_execute_stream_ends_in_complete(d):
    s = execute_stream(d, "slow", {"name": "Sdk"})
    assert s.status == 200 and s.headers["content-type"] == "text/event-stream"
    rid = s.headers["x-run-id"]
    frames = s.events()
    names = [f["event"] for f in named(frames)]
    assert names == ["start", "node_started", "node_completed", "node_started", "node_completed", "node_started",
                     "node_completed", "complete"], names
    ev = named(frames)
    assert [f["id"] for f in ev] == [str(i) for i in range(1, 9)]
    assert ev[0]["data"]["workflow_id"] == "slow" and ev[0]["data"]["version"] == "1.0.0"
    assert isinstance(ev[0]["data"]["timestamp"], float)
    res = ev[-1]["data"]["result"]
    assert set(res) == {"outputs", "execution_time", "workflow_id", "version", "run_id"}
    assert res["run_id"] == rid and res["outputs"]["last"] == {"result": {"done": "Sdk"}}
    assert frames[-1].get("comment") == "keepalive"
    s.close()
    assert wait_done(d, rid)["status"] == "completed"


def test_execute_stream_ends_in_error(d):
    s = execute_stream(d, "bad", {})
    assert s.status == 200
    ev = named(s.events())
    assert ev[0]["event"] == "start" and ev[-1]["event"] == "error", ev
    err = ev[-1]["data"]["error"]
    assert err["code"] == "upstream_error" and err["message"] and err["request_id"] == s.headers["x-request-id"]
    assert err["details"]["node"] == "call" and err["details"]["status"] == "failed"
    s.close()


def test_execute_stream_bad_inputs_answer_before_any_stream(d):
    r = d.execute("hello", body={"inputs": [], "mode": "stream"})
    assert_error(r, 400, "bad_request")
    r = d.execute("nosuch", body={"inputs": {}, "mode": "stream"})
    assert_error(r, 404, "not_found")


# ---- across instances ---------------------------------------------------------------------------


def test_run_on_one_instance_followed_from_another(daemons, upstream, redis_server):
    cfg = {"redis_url": redis_server.url}
    a = daemons.make(config=cfg, workflows={"slow": slow_wf(upstream, ms=800)})
    b = daemons.make(config=cfg, workflows={"slow": slow_wf(upstream, ms=800)})
    rid = accept(a, "slow", {"name": "Far"})
    time.sleep(0.2)
    s = Stream(b, "/runs/%s/events" % rid)
    assert s.status == 200
    frames = named(s.events())
    assert [f["event"] for f in frames] == EXPECTED
    assert [f["id"] for f in frames] == [str(i) for i in range(1, 9)]
    s.close()
    # resumption and a late client on the other instance
    s = Stream(b, "/runs/%s/events" % rid, headers={"Last-Event-ID": "5"})
    assert [int(f["id"]) for f in named(s.events())] == [6, 7, 8]
    s.close()
    assert_error(b.get("/runs/%s/events" % uuid.uuid4()), 404, "not_found")
