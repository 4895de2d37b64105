"""SQLDatabaseNode and AsyncSQLDatabaseNode through the daemon, against the harness's real PostgreSQL
(pg_server): select, insert with parameters, an injection attempt stored as data, a slow query past
its timeout, the server restarted between runs, 50 concurrent runs on one loop, the password kept
out of every log line, error body and record, and the load refusals (a template in query, mysql).

Expected outputs follow the SDK's source (kailash.nodes.data.sql.SQLDatabaseNode.run and
kailash.nodes.data.async_sql.AsyncSQLDatabaseNode.async_run); its drivers (psycopg2, asyncpg) are
not installable here, so they could not be recorded."""
import concurrent.futures
import json
import os

import pytest

from conftest import assert_error
from test_cli import check_dir
from wfs import node, single, wf

PASSWORD = "s3cr3t-Pa55word"


def url_with_password(pg):
    # the harness's server trusts loopback, so any password is accepted: it only has to stay hidden
    return pg.url.replace("postgres@", "postgres:%s@" % PASSWORD)


def sql_node(query, **config):
    config.setdefault("connection_string", {"$env": "ORDERS_DB"})
    return node("SQLDatabaseNode", query=query, **config)


@pytest.fixture
def db(pg_server, daemons):
    pg_server.sql("CREATE TABLE t (id serial PRIMARY KEY, name text, qty int, price numeric, "
                  "meta jsonb, at timestamp)")
    d = daemons.make(
        config={"workers": 1},
        env={"ORDERS_DB": url_with_password(pg_server)},
        workflows={
            "insert": single(sql_node("INSERT INTO t (name, qty, price, meta, at) VALUES ($1, $2, $3, $4, $5)",
                                      parameters=["{{ inputs.name }}", 1, "2.50", {"k": [1]},
                                                  "2024-05-06 07:08:09"])),
            "insert_in": single(sql_node("INSERT INTO t (name, qty) VALUES ($1, $2) RETURNING id")),
            "select": single(sql_node("SELECT name, qty, price, meta, at FROM t WHERE name = $1 ORDER BY id")),
            "count": single(sql_node("SELECT count(*) AS n FROM t")),
            "slow": single(sql_node("SELECT pg_sleep($1) AS s", timeout=1)),
            "broken": single(sql_node("SELECT * FROM no_such_table")),
            "async": single(node("AsyncSQLDatabaseNode", database_type="postgresql",
                                 connection_string={"$env": "ORDERS_DB"},
                                 query="SELECT id, name FROM t WHERE qty >= $1 ORDER BY id")),
        })
    return d


def ok(r):
    assert r.status_code == 200, r.text
    return r.json()["outputs"]["call"]


def test_insert_with_parameters_then_select(db, pg_server):
    out = ok(db.execute("insert", inputs={"name": "ada"}))
    assert out["data"] == [] and out["row_count"] == 1 and out["columns"] == []
    assert isinstance(out["execution_time"], float)
    out = ok(db.execute("select", inputs={"call": {"parameters": ["ada"]}}))
    # SDK: Decimal -> float, datetime -> isoformat(), jsonb parsed (psycopg2)
    assert out["data"] == [{"name": "ada", "qty": 1, "price": 2.5, "meta": {"k": [1]},
                            "at": "2024-05-06T07:08:09"}]
    assert out["row_count"] == 1
    assert out["columns"] == ["name", "qty", "price", "meta", "at"]
    out = ok(db.execute("insert_in", inputs={"call": {"parameters": ["bob", 3]}}))
    assert out["columns"] == ["id"] and out["row_count"] == 1


def test_injection_through_inputs_is_stored_as_data(db, pg_server):
    evil = "x'); DROP TABLE t; --"
    ok(db.execute("insert", inputs={"name": evil}))
    assert pg_server.sql("SELECT name FROM t") == [evil]
    out = ok(db.execute("select", inputs={"call": {"parameters": [evil]}}))
    assert out["data"][0]["name"] == evil
    assert ok(db.execute("count"))["data"] == [{"n": 1}]


def test_query_is_pinned_against_requests(db):
    r = db.execute("count", inputs={"call": {"query": "DROP TABLE t"}})
    assert r.status_code == 400, r.text


def test_async_node_result_shape(db, pg_server):
    pg_server.sql("INSERT INTO t (name, qty) VALUES ('a', 1), ('b', 5)")
    out = ok(db.execute("async", inputs={"call": {"params": [2]}}))
    assert out == {"result": {"data": [{"id": 2, "name": "b"}], "row_count": 1,
                              "query": "SELECT id, name FROM t WHERE qty >= :p0 ORDER BY id",
                              "database_type": "postgresql", "format": "dict"}}


def test_query_error_has_its_sqlstate(db):
    err = assert_error(db.execute("broken"), 502, "upstream_error")
    assert "42P01" in err["message"] and "no_such_table" in err["message"]
    assert PASSWORD not in json.dumps(err)


def test_slow_query_times_out_and_the_daemon_goes_on(db):
    r = db.execute("slow", inputs={"call": {"parameters": [30]}}, timeout=20)
    err = assert_error(r, 502, "upstream_error")
    assert "timeout" in err["message"]
    assert ok(db.execute("slow", inputs={"call": {"parameters": [0]}}))["row_count"] == 1
    assert ok(db.execute("count"))["row_count"] == 1


def test_postgres_restarted_between_runs(db, pg_server):
    assert ok(db.execute("count"))["data"] == [{"n": 0}]
    pg_server.stop()
    err = assert_error(db.execute("count"), 502, "upstream_error")
    assert "unavailable" in err["message"] and PASSWORD not in err["message"]
    pg_server.start()
    assert ok(db.execute("count"))["data"] == [{"n": 0}]
    pg_server.stop()
    pg_server.start()  # the pool's idle connection is gone now
    assert ok(db.execute("count"))["data"] == [{"n": 0}]


def test_fifty_concurrent_runs_on_one_loop(db, pg_server):
    def one(i):
        return db.execute("insert_in", inputs={"call": {"parameters": ["n%d" % i, i]}}, timeout=30)
    with concurrent.futures.ThreadPoolExecutor(50) as ex:
        rs = list(ex.map(one, range(50)))
    assert [r.status_code for r in rs] == [200] * 50, [r.text for r in rs if r.status_code != 200][:3]
    assert pg_server.sql("SELECT count(*) FROM t") == ["50"]
    # one loop, at most 4 connections to this server from the daemon
    n = pg_server.sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'kailashd'")
    assert 1 <= int(n[0]) <= 4, n


def test_password_in_no_log_error_or_record(db, pg_server):
    ok(db.execute("insert", inputs={"name": "x"}))
    assert_error(db.execute("broken"), 502, "upstream_error")
    pg_server.stop()
    r = db.execute("count")
    pg_server.start()
    assert PASSWORD not in r.text
    runs = db.http.get(db.url("/runs"), timeout=10)
    assert PASSWORD not in runs.text
    for run in runs.json().get("runs", runs.json().get("items", [])):
        rid = run.get("run_id")
        if rid:
            assert PASSWORD not in db.http.get(db.url("/runs/%s" % rid), timeout=10).text
    db.stop()
    assert PASSWORD not in db.stdout() and PASSWORD not in db.stderr()


def test_load_refusals(tmp_path):
    cs = "postgresql://u:%s@127.0.0.1/db" % PASSWORD
    r = check_dir(tmp_path, {
        "templ": single(node("SQLDatabaseNode", connection_string=cs,
                             query="SELECT * FROM t WHERE name = '{{ inputs.name }}'")),
        "mysql": single(node("AsyncSQLDatabaseNode", database_type="mysql", connection_string="mysql://u@h/db",
                             query="SELECT 1")),
        "mysql_url": single(node("SQLDatabaseNode", connection_string="mysql+pymysql://u@h/db", query="SELECT 1")),
        "sleepy": single(node("AsyncSQLDatabaseNode", connection_string=cs, query="SELECT pg_sleep(1)")),
    })
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "templates are not allowed in SQL text" in out, out
    assert "MySQL databases are not supported" in out, out
    assert "validate_queries" in out, out
    assert PASSWORD not in out


def test_a_node_without_a_connection_string_uses_the_daemons_database_url(pg_server, daemons):
    d = daemons.make(config={"database_url": url_with_password(pg_server)},
                     workflows={"one": single(node("SQLDatabaseNode", query="SELECT 41 + $1::int AS n"))})
    r = d.run("one", body={"inputs": {}, "parameters": {"call": {"parameters": [1]}}})
    assert r.status_code == 200, r.text
    assert r.json()["outputs"]["call"]["data"] == [{"n": 42}], r.text
