"""Run records in Postgres (issue 15) against a real server the harness starts: the migrations and
the table, records read through the API and seen in SQL, two instances starting together on one
empty database, records written by instance A read through instance B, Postgres stopped while 500
runs are served and then restarted (all 500 answered, all 500 records present once), SIGTERM right
after a burst, /ready, and hostile text stored as data."""
import concurrent.futures
import json
import os
import signal
import threading
import time

import pytest

from conftest import assert_error, wait_for
from wfs import transform, wf

ECHO = wf({"t": transform({"got": "{{ inputs.x }}"})}, version="2")


def pg_daemon(daemons, pg, **config):
    return daemons.make(config=dict({"database_url": pg.url}, **config), workflows={"echo": ECHO})


def count(pg, where="true"):
    return int(pg.sql("SELECT count(*) FROM runs WHERE %s" % where)[0])


def all_ids(d, **params):
    got, cursor = [], None
    while True:
        r = d.get("/runs", params=dict(params, limit=200, **({"cursor": cursor} if cursor else {})))
        assert r.status_code == 200, r.text
        got += [x["run_id"] for x in r.json()["runs"]]
        cursor = r.json()["next_cursor"]
        if not cursor:
            return got


def test_migrations_make_the_table_and_records_reach_it(daemons, pg_server):
    d = pg_daemon(daemons, pg_server)
    assert d.get("/ready").json()["checks"]["postgres"] == "ok"
    assert "journal" not in d.get("/ready").json()["checks"]
    r = d.run("echo", {"x": 5}, headers={"X-Request-ID": "pg-1"})
    rid, out = r.json()["run_id"], json.dumps(r.json()["outputs"], separators=(", ", ": "))
    assert wait_for(lambda: count(pg_server, "run_id = '%s'" % rid) == 1, timeout=10)
    row = pg_server.sql("SELECT workflow, version, status, inputs->>'x', outputs::text = '%s', cache, principal, request_id, "
                        "error IS NULL, finished_at >= created_at FROM runs WHERE run_id = '%s'" % (out, rid))[0]
    assert row.split("|") == ["echo", "2", "completed", "5", "t", "BYPASS", "anonymous", "pg-1", "t", "t"], row
    assert pg_server.sql("SELECT max(version) FROM schema_migrations") == ["2"]
    # read back through the API once written (not from memory): a second instance has no memory of it
    b = pg_daemon(daemons, pg_server)
    rec = b.get("/runs/" + rid).json()
    assert rec["run_id"] == rid and rec["inputs"] == {"x": 5} and rec["outputs"] == r.json()["outputs"]
    assert rec["request_id"] == "pg-1" and rec["error"] is None and rec["created_at"].endswith("Z")
    assert list(rec) == ["run_id", "workflow", "version", "status", "inputs", "outputs", "error", "cache",
                         "principal", "request_id", "created_at", "started_at", "finished_at", "duration_ms"]


def test_two_instances_starting_together_on_an_empty_database(daemons, pg_server):
    ds = [daemons.make(config={"database_url": pg_server.url}, workflows={"echo": ECHO}, start=False)
          for _ in range(3)]
    threads = [threading.Thread(target=d.start) for d in ds]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(d.alive() for d in ds), [d.stderr()[-500:] for d in ds]
    assert pg_server.sql("SELECT count(*) FROM schema_migrations") == ["2"]
    ids = [d.run("echo", {"x": i}).json()["run_id"] for i, d in enumerate(ds)]
    assert wait_for(lambda: count(pg_server) == 3, timeout=10)
    assert wait_for(lambda: all_ids(ds[0]) == ids[::-1], timeout=10)


def test_records_written_by_a_are_read_through_b_with_filters_and_paging(daemons, pg_server):
    a, b = pg_daemon(daemons, pg_server), pg_daemon(daemons, pg_server)
    ids = [a.run("echo", {"x": i}).json()["run_id"] for i in range(7)]
    assert wait_for(lambda: count(pg_server) == 7, timeout=10)
    assert all_ids(b) == ids[::-1]
    page = b.get("/runs", params={"limit": 3}).json()
    assert [x["run_id"] for x in page["runs"]] == ids[::-1][:3] and page["next_cursor"]
    page2 = b.get("/runs", params={"limit": 3, "cursor": page["next_cursor"]}).json()
    assert [x["run_id"] for x in page2["runs"]] == ids[::-1][3:6]
    assert b.get("/runs", params={"status": "failed"}).json()["runs"] == []
    assert b.get("/runs", params={"workflow": "x' OR '1'='1"}).json()["runs"] == []
    assert len(b.get("/runs", params={"workflow": "echo"}).json()["runs"]) == 7
    assert_error(b.get("/runs/0192f7c2-0000-7000-8000-000000000000"), 404, "not_found")


def test_postgres_down_while_500_runs_are_served_then_back(daemons, pg_server):
    d = pg_daemon(daemons, pg_server)
    ids, lock = [], threading.Lock()

    def one(i):
        r = d.run("echo", {"x": i})
        with lock:
            ids.append((r.status_code, r.json().get("run_id")))

    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        list(ex.map(one, range(100)))
        pg_server.stop()
        list(ex.map(one, range(100, 400)))
        assert wait_for(lambda: d.get("/ready").json()["checks"]["postgres"] == "down", timeout=10)
        r = d.get("/ready")
        assert r.status_code == 503 and r.json()["status"] == "degraded"
        assert "postgres" in r.json().get("reasons", {}) and "@" not in r.json()["reasons"]["postgres"]
        list(ex.map(one, range(400, 500)))
    assert [c for c, _ in ids] == [200] * 500
    pg_server.start()
    assert wait_for(lambda: d.get("/ready").json()["checks"]["postgres"] == "ok", timeout=20), d.get("/ready").text
    assert wait_for(lambda: count(pg_server) == 500, timeout=20), count(pg_server)
    assert pg_server.sql("SELECT count(DISTINCT run_id) FROM runs") == ["500"]
    assert set(all_ids(d)) == {i for _, i in ids}


def test_sigterm_right_after_a_burst_loses_nothing(daemons, pg_server):
    d = pg_daemon(daemons, pg_server)
    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        answers = list(ex.map(lambda i: d.run("echo", {"x": i}), range(400)))
    assert [a.status_code for a in answers] == [200] * 400
    d.signal(signal.SIGTERM)
    assert d.proc.wait(30) == 0
    assert count(pg_server) == 400, "every record written before the exit"


def test_sigterm_while_postgres_is_down_spools_and_the_next_start_replays(daemons, pg_server):
    d = pg_daemon(daemons, pg_server)
    pg_server.stop()
    ids = [d.run("echo", {"x": i}).json()["run_id"] for i in range(50)]
    assert d.stop() == 0
    assert os.path.getsize(os.path.join(d.data_dir, "pg-spool.jsonl")) > 0
    pg_server.start()
    d.start()
    assert wait_for(lambda: count(pg_server) == 50, timeout=20)
    assert set(all_ids(d)) == set(ids)


def test_hostile_text_is_stored_as_data(daemons, pg_server):
    d = pg_daemon(daemons, pg_server)
    evil = "'); DROP TABLE runs; -- \\ \" \u2603 \u0000"
    r = d.run("echo", {"x": evil.replace("\u0000", "")})
    rid = r.json()["run_id"]
    assert wait_for(lambda: count(pg_server, "run_id = '%s'" % rid) == 1, timeout=10)
    b = pg_daemon(daemons, pg_server)
    assert b.get("/runs/" + rid).json()["inputs"] == {"x": evil.replace("\u0000", "")}
    assert count(pg_server) == 1


def test_postgres_down_at_start_is_not_a_start_error(daemons, pg_server):
    pg_server.stop()
    d = pg_daemon(daemons, pg_server)
    assert d.get("/ready").status_code == 503
    assert_error(d.get("/runs"), 503, "unavailable")
    rid = d.run("echo", {"x": 1}).json()["run_id"]
    # its own record is read from memory until the writer spools it; spooled, it waits for Postgres
    assert d.get("/runs/" + rid).status_code in (200, 503)
    pg_server.start()
    assert wait_for(lambda: d.get("/ready").status_code == 200, timeout=20)
    assert wait_for(lambda: count(pg_server) == 1, timeout=20)


def test_a_bad_database_url_stops_start_up_without_echoing_the_password(daemons):
    d = daemons.make(config={"database_url": "mysql://u:s3cret-pw@h/db"}, workflows={"echo": ECHO}, start=False)
    with pytest.raises(Exception) as e:
        d.start()
    assert "database_url" in str(e.value) and "s3cret-pw" not in str(e.value)
