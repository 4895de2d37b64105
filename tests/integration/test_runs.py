"""Run records on the embedded journal (API.md "Run records", issue 15): the record's shape for
completed, failed, timed-out and cached runs; none for refused requests; GET /runs order, limit,
cursor and filters, with hostile query values; unknown and malformed ids; records across a restart,
after a torn journal tail, and after a SIGTERM right behind a burst; who may read whose runs; an
unwritable journal (the daemon serves, /ready says so, records wait); and no secret in a record."""
import concurrent.futures
import glob
import hashlib
import os
import re
import signal
import time
import uuid

import pytest

from conftest import DaemonStartError, assert_error, closed_port, wait_for
from wfs import http, transform, wf

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
FIELDS = ["run_id", "workflow", "version", "status", "inputs", "outputs", "error", "cache", "principal",
          "request_id", "created_at", "started_at", "finished_at", "duration_ms"]

ECHO = wf({"t": transform({"got": "{{ inputs.x }}"})}, version="3")
SCHEMA = dict(ECHO, gateway={"inputs": {"type": "object", "required": ["x"], "properties": {"x": {"type": "integer"}}}})


def sha(s):
    return hashlib.sha256(s.encode()).hexdigest()


def record(d, run_id):
    """GET /runs/{id} (on the instance that answered the run it exists at once)."""
    r = d.get("/runs/" + run_id)
    assert r.status_code == 200, r.text
    return r.json()


def runs(d, **params):
    r = d.get("/runs", params=params)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"runs", "next_cursor"}, body
    return body


def segments(d):
    return sorted(glob.glob(os.path.join(d.data_dir, "runs", "*")))


# ---- the record ----------------------------------------------------------------------------------

def test_a_completed_run_has_a_record_of_the_documented_shape(daemons):
    d = daemons.make(workflows={"echo": ECHO})
    r = d.run("echo", {"x": 7}, headers={"X-Request-ID": "req-abc.1"})
    assert r.status_code == 200
    rec = record(d, r.json()["run_id"])
    assert list(rec) == FIELDS, "the record's keys, in the documented order"
    assert rec["run_id"] == r.json()["run_id"] == r.headers["X-Run-ID"]
    assert rec["workflow"] == "echo" and rec["version"] == "3" and rec["status"] == "completed"
    assert rec["inputs"] == {"x": 7} and rec["outputs"] == r.json()["outputs"] and rec["error"] is None
    assert rec["cache"] == "BYPASS" and rec["principal"] == "anonymous" and rec["request_id"] == "req-abc.1"
    for k in ("created_at", "started_at", "finished_at"):
        assert TS.match(rec[k]), rec[k]
    assert rec["created_at"] <= rec["started_at"] <= rec["finished_at"]
    assert isinstance(rec["duration_ms"], (int, float)) and rec["duration_ms"] >= 0
    # the run id is a UUIDv7 whose time is created_at
    ms = int(rec["run_id"].replace("-", "")[:12], 16)
    assert time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) == rec["created_at"][:19]


def test_the_execute_route_and_an_upper_case_id_reach_the_same_record(daemons):
    d = daemons.make(workflows={"echo": ECHO})
    r = d.execute("echo", {"x": 1})
    assert r.status_code == 200
    rec = record(d, r.json()["run_id"].upper())
    assert rec["run_id"] == r.json()["run_id"] and rec["status"] == "completed"


def test_a_failed_run_records_its_error_and_node(daemons):
    d = daemons.make(workflows={"down": wf({"call": http("http://127.0.0.1:%d/x" % closed_port())})})
    r = d.run("down", {})
    assert r.status_code == 502
    rec = record(d, r.headers["X-Run-ID"])
    assert rec["status"] == "failed" and rec["outputs"] is None
    assert rec["error"]["code"] == "upstream_error" and rec["error"]["node"] == "call"
    assert isinstance(rec["error"]["message"], str) and rec["error"]["message"]


def test_a_timed_out_run_says_timeout(daemons, upstream):
    d = daemons.make(workflows={"slow": wf({"call": http(upstream.url("/slow?ms=3000"), timeout=10)},
                                           gateway={"timeout_ms": 300})})
    r = d.run("slow", {})
    assert r.status_code == 504
    rec = record(d, r.headers["X-Run-ID"])
    assert rec["status"] == "timeout" and rec["error"]["code"] == "timeout"
    assert list(rec["error"]) == ["code", "message", "node"], "API.md's error shape, node null or a node id"


def test_cache_misses_and_hits_have_records(daemons):
    d = daemons.make(workflows={"c": dict(ECHO, gateway={"cache": {"ttl_s": 60}})})
    r1, r2 = d.run("c", {"x": 1}), d.run("c", {"x": 1})
    assert r2.headers["X-Cache"] == "HIT-L1"
    m, h = record(d, r1.json()["run_id"]), record(d, r2.json()["run_id"])
    assert m["cache"] == "MISS" and h["cache"] == "HIT-L1"
    assert h["status"] == "completed" and h["outputs"] == r1.json()["outputs"] and h["inputs"] == {"x": 1}
    assert h["run_id"] != m["run_id"]


def test_requests_refused_before_a_run_have_no_record(daemons):
    d = daemons.make(workflows={"s": SCHEMA})
    assert d.run("s", {"x": "no"}).status_code == 400
    assert d.post("/workflows/s/run", data=b"{", headers={"Content-Type": "application/json"}).status_code == 400
    assert d.run("nope", {}).status_code == 404
    assert runs(d)["runs"] == []


# ---- reading ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shared(module_daemons):
    return module_daemons.make(workflows={"echo": ECHO})


@pytest.mark.parametrize("rid", ["0192f7c2-0000-7000-8000-000000000000", "not-a-uuid", "..%2F..%2Fetc%2Fpasswd",
                                 "0192f7c2-0000-7000-8000-0000000000001", "%00", "0192f7c2-0000-7000-8000-00000000000g"])
def test_unknown_and_malformed_ids_are_404(shared, rid):
    d = shared
    assert_error(d.get("/runs/" + rid), 404, "not_found")


def test_list_is_newest_first_paged_by_cursor_and_filtered(daemons, upstream):
    d = daemons.make(workflows={"a": ECHO, "b": ECHO,
                                "bad": wf({"call": http("http://127.0.0.1:%d/" % closed_port())})})
    ids = []
    for i in range(7):
        ids.append(d.run("a" if i % 2 == 0 else "b", {"x": i}).json()["run_id"])
    failed = d.run("bad", {}).headers["X-Run-ID"]
    everything = runs(d, limit=200)["runs"]
    assert [x["run_id"] for x in everything] == [failed] + ids[::-1]
    seen, cursor, pages = [], None, 0
    while True:
        page = runs(d, limit=3, **({"cursor": cursor} if cursor else {}))
        pages += 1
        seen += [x["run_id"] for x in page["runs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert isinstance(cursor, str) and len(page["runs"]) == 3
    assert seen == [failed] + ids[::-1] and pages == 3
    assert [x["run_id"] for x in runs(d, workflow="a")["runs"]] == ids[::2][::-1]
    assert [x["run_id"] for x in runs(d, status="failed")["runs"]] == [failed]
    assert runs(d, workflow="b", status="failed")["runs"] == []
    assert runs(d, workflow="x'; DROP TABLE runs; --")["runs"] == []
    assert len(runs(d, limit=100000)["runs"]) == 8, "limit is clamped, not refused"
    assert len(runs(d)["runs"]) == 8


@pytest.mark.parametrize("params", [{"limit": "0"}, {"limit": "-1"}, {"limit": "abc"}, {"limit": "1.5"},
                                    {"limit": ""}, {"status": "done"}, {"status": "COMPLETED"},
                                    {"cursor": "x"}, {"cursor": "AAAAAAAAAAAAAAAAAAAA=="},
                                    {"cursor": "' OR 1=1 --"}, {"workflow": "w" * 129}, {"workflow": ""}])
def test_hostile_query_values_are_400(shared, params):
    d = shared
    assert_error(d.get("/runs", params=params), 400, "bad_request")


def test_the_default_page_is_50_and_the_most_is_200(daemons):
    d = daemons.make(workflows={"echo": ECHO})
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        codes = list(ex.map(lambda i: d.run("echo", {"x": i}).status_code, range(210)))
    assert codes == [200] * 210
    assert len(runs(d)["runs"]) == 50 and runs(d)["next_cursor"]
    page = runs(d, limit=500)
    assert len(page["runs"]) == 200 and page["next_cursor"]
    assert len(runs(d, limit=200, cursor=page["next_cursor"])["runs"]) == 10


# ---- durability ------------------------------------------------------------------------------------------

def test_records_survive_a_restart(daemons):
    d = daemons.make(workflows={"echo": ECHO})
    ids = [d.run("echo", {"x": i}).json()["run_id"] for i in range(5)]
    assert d.stop() == 0
    d.start()
    assert [x["run_id"] for x in runs(d)["runs"]] == ids[::-1]
    assert record(d, ids[2])["inputs"] == {"x": 2}


def test_a_torn_journal_tail_is_skipped_with_a_log_line(daemons):
    d = daemons.make(workflows={"echo": ECHO})
    ids = [d.run("echo", {"x": i}).json()["run_id"] for i in range(3)]
    assert d.stop() == 0
    last = segments(d)[-1]
    with open(last, "ab") as f:  # a crash in the middle of a line
        f.write(b'{"run_id":"%s","workflow":"echo","sta' % str(uuid.uuid4()).encode())
    d.start()
    assert [x["run_id"] for x in runs(d)["runs"]] == ids[::-1]
    assert wait_for(lambda: "skipped" in d.stderr())
    # and the journal goes on: a new run after the torn line is kept across another restart
    new = d.run("echo", {"x": 9}).json()["run_id"]
    assert d.stop() == 0
    d.start()
    assert record(d, new)["inputs"] == {"x": 9}


def test_sigterm_right_after_a_burst_loses_nothing(daemons):
    d = daemons.make(workflows={"echo": ECHO})
    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        answers = list(ex.map(lambda i: d.run("echo", {"x": i}), range(400)))
    assert [a.status_code for a in answers] == [200] * 400
    d.signal(signal.SIGTERM)  # at once: records may still be pending
    assert d.proc.wait(20) == 0
    d.start()
    got, cursor = set(), None
    while True:
        page = runs(d, limit=200, **({"cursor": cursor} if cursor else {}))
        got |= {x["run_id"] for x in page["runs"]}
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert got == {a.json()["run_id"] for a in answers}


# ---- who sees what -----------------------------------------------------------------------------------------

KEYS = {"admin": "runs-admin-key-0123456789", "a": "runs-a-key-0123456789", "b": "runs-b-key-0123456789"}
AUTH = {"enable_auth": True, "auth": {"api_keys": [
    {"id": "admin", "sha256": sha(KEYS["admin"]), "roles": ["admin"]},
    {"id": "a", "sha256": sha(KEYS["a"])}, {"id": "b", "sha256": sha(KEYS["b"])}]}}


def as_(who):
    return {"X-API-Key": KEYS[who]}


def test_a_caller_sees_only_its_own_runs_and_an_admin_sees_all(daemons):
    d = daemons.make(config=AUTH, workflows={"echo": ECHO})
    ra = d.run("echo", {"x": 1}, headers=as_("a")).json()["run_id"]
    rb = d.run("echo", {"x": 2}, headers=as_("b")).json()["run_id"]
    assert d.get("/runs/" + ra, headers=as_("a")).json()["principal"] == "key:a"
    assert_error(d.get("/runs/" + ra, headers=as_("b")), 404, "not_found")
    assert_error(d.get("/runs/" + ra), 401, "unauthorized")
    assert [x["run_id"] for x in d.get("/runs", headers=as_("b")).json()["runs"]] == [rb]
    assert [x["run_id"] for x in d.get("/runs", headers=as_("admin")).json()["runs"]] == [rb, ra]
    assert d.get("/runs/" + rb, headers=as_("admin")).status_code == 200


def test_a_caller_reads_its_own_run_whose_outputs_carry_a_nul(daemons, upstream):
    """JSON allows \\u0000 and an upstream's text can carry one into outputs: the owner's read must
    still find its own principal in the record (not a 404), before and after a restart."""
    d = daemons.make(config=AUTH, workflows={"nul": wf({"call": http(upstream.url("/echo?x=a%00b"))})})
    r = d.run("nul", {}, headers=as_("a"))
    assert r.status_code == 200, r.text
    rid = r.headers["X-Run-ID"]
    got = d.get("/runs/" + rid, headers=as_("a"))
    assert got.status_code == 200, got.text
    assert "a\\u0000b" in got.text
    assert [x["run_id"] for x in d.get("/runs", headers=as_("a")).json()["runs"]] == [rid]
    d.stop()
    d.start()
    assert d.get("/runs/" + rid, headers=as_("a")).status_code == 200
    assert_error(d.get("/runs/" + rid, headers=as_("b")), 404, "not_found")


def test_no_secret_reaches_a_record_or_the_journal(daemons):
    d = daemons.make(config=AUTH, workflows={"echo": ECHO})
    rid = d.run("echo", {"x": 1}, headers=as_("a")).json()["run_id"]
    rec = d.get("/runs/" + rid, headers=as_("a")).text
    assert KEYS["a"] not in rec and sha(KEYS["a"]) not in rec
    assert d.stop() == 0
    for seg in segments(d):
        with open(seg, "rb") as f:
            text = f.read().decode()
        assert KEYS["a"] not in text and sha(KEYS["a"]) not in text
        assert rid in text


# ---- the journal in trouble, and records off ------------------------------------------------------------------

def test_an_unwritable_journal_keeps_serving_and_ready_says_why(daemons):
    d = daemons.make(workflows={"echo": ECHO}, start=False)
    with open(os.path.join(d.data_dir, "runs"), "w") as f:  # a file where the directory should be (root too)
        f.write("in the way")
    d.start()
    r = d.get("/ready")
    assert r.status_code == 503 and r.json()["status"] == "degraded", r.text
    assert r.json()["checks"]["journal"] == "down" and r.json()["reasons"]["journal"]
    rid = d.run("echo", {"x": 1}).json()["run_id"]
    assert record(d, rid)["status"] == "completed", "a record waiting to be written is read from memory"
    os.remove(os.path.join(d.data_dir, "runs"))  # the obstacle goes: the waiting record is written
    assert wait_for(lambda: d.get("/ready").status_code == 200, timeout=10), d.get("/ready").text
    assert wait_for(lambda: any(rid in open(p).read() for p in segments(d)), timeout=10)


def test_ready_reports_the_journal(daemons):
    d = daemons.make(workflows={"echo": ECHO})
    body = d.get("/ready").json()
    assert body["checks"]["journal"] == "ok" and body["checks"]["postgres"] == "disabled"


def test_records_off_answers_503_and_runs_still_serve(daemons):
    d = daemons.make(config={"store": {"enabled": False}}, workflows={"echo": ECHO})
    rid = d.run("echo", {"x": 1}).json()["run_id"]
    assert_error(d.get("/runs/" + rid), 503, "unavailable")
    assert_error(d.get("/runs"), 503, "unavailable")
    assert "journal" not in d.get("/ready").json()["checks"]
    assert not os.path.exists(os.path.join(d.data_dir, "runs"))


def test_two_daemons_never_share_one_journal(daemons):
    a = daemons.make(workflows={"echo": ECHO})
    b = daemons.make(workflows={"echo": ECHO}, config={"data_dir": a.data_dir}, start=False)
    with pytest.raises(DaemonStartError) as e:
        b.start()
    assert "another kailashd writes run records there" in str(e.value)
    assert a.run("echo", {"x": 1}).status_code == 200
    assert a.stop() == 0
    b.start()  # the first has let go
    assert len(runs(b)["runs"]) == 1
