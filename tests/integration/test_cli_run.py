"""`kailashd run WORKFLOW --input JSON|@FILE [--config FILE]` (issue 17's direct execution): the answer
/run would give on stdout, exit 0 completed, 1 failed, 2 usage/config/load/input problems; the run
gets its record as any other (read back through a daemon on the same data_dir); hostile inputs."""
import json
import os

import pytest

from conftest import closed_port, run_cli, write_json
from wfs import http, transform, wf

HELLO = wf({"t": transform({"greeting": "Hello, {{ inputs.name }}!"})},
           gateway={"inputs": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}})


def make_dir(tmp_path, workflows, config=None):
    cfg = {"workflows_dir": "workflows", "data_dir": "var"}
    cfg.update(config or {})
    for name, w in workflows.items():
        write_json(str(tmp_path / "workflows" / (name + ".json")), w)
    write_json(str(tmp_path / "k.json"), cfg)


def run(tmp_path, *args):
    return run_cli(["run"] + list(args) + ["--config", "k.json"], cwd=str(tmp_path), timeout=30)


def test_a_completed_run_prints_the_answer_and_keeps_a_record(tmp_path, daemons):
    make_dir(tmp_path, {"hello": HELLO})
    r = run(tmp_path, "hello", "--input", '{"name": "Ada"}')
    assert r.returncode == 0, r.stderr
    answer = json.loads(r.stdout)
    assert answer["status"] == "completed" and answer["outputs"] == {"t": {"result": {"greeting": "Hello, Ada!"}}}
    assert set(answer) == {"run_id", "workflow", "status", "outputs", "duration_ms"}
    # the record, read through a daemon serving the same data_dir afterwards
    d = daemons.make(config={"data_dir": str(tmp_path / "var")}, workflows={"hello": HELLO})
    rec = d.get("/runs/" + answer["run_id"]).json()
    assert rec["status"] == "completed" and rec["inputs"] == {"name": "Ada"} and rec["request_id"] is None
    assert rec["principal"] == "anonymous"


def test_input_from_a_file_and_stdin(tmp_path):
    make_dir(tmp_path, {"hello": HELLO})
    (tmp_path / "in.json").write_text('{"name": "Bo"}')
    r = run(tmp_path, "hello", "--input", "@in.json")
    assert r.returncode == 0 and "Hello, Bo!" in r.stdout, r.stdout + r.stderr


def test_a_failed_run_prints_the_error_shape_and_exits_1(tmp_path):
    make_dir(tmp_path, {"down": wf({"call": http("http://127.0.0.1:%d/" % closed_port())})})
    r = run(tmp_path, "down", "--input", "{}")
    assert r.returncode == 1, r.stdout + r.stderr
    err = json.loads(r.stdout)["error"]
    assert err["code"] == "upstream_error" and err["details"]["node"] == "call" and err["details"]["run_id"]


@pytest.mark.parametrize("args,why", [
    (["hello", "--input", '{"name": 5}'], "invalid_inputs"),
    (["hello", "--input", "{"], "not valid JSON"),
    (["hello", "--input", "[1]"], "expected a JSON object"),
    (["hello", "--input", '{"a":1,"a":2}'], "not valid JSON"),
    (["hello", "--input", "@missing.json"], "missing.json"),
    (["hello", "--input", "@/dev/zero"], "regular file"),
    (["nope", "--input", "{}"], "no workflow 'nope'"),
    (["hello"], "--input"),
    (["--input", "{}"], "workflow name"),
    (["hello", "--input", "{}", "--bogus"], "unexpected argument"),
])
def test_usage_config_and_input_problems_exit_2(tmp_path, args, why):
    make_dir(tmp_path, {"hello": HELLO})
    r = run(tmp_path, *args)
    assert r.returncode == 2, (args, r.returncode, r.stdout, r.stderr)
    assert why in r.stdout + r.stderr, (why, r.stdout, r.stderr)


def test_a_bad_config_exits_2(tmp_path):
    make_dir(tmp_path, {"hello": HELLO}, config={"port": "x"})
    r = run(tmp_path, "hello", "--input", '{"name": "A"}')
    assert r.returncode == 2 and "port" in r.stderr, r.stderr


def test_a_running_daemon_on_the_same_data_dir_leaves_the_run_without_a_record(tmp_path, daemons):
    make_dir(tmp_path, {"hello": HELLO})
    daemons.make(config={"data_dir": str(tmp_path / "var")}, workflows={"hello": HELLO})
    r = run(tmp_path, "hello", "--input", '{"name": "Cy"}')
    assert r.returncode == 0 and "Hello, Cy!" in r.stdout, r.stderr
    assert "keeps no record" in r.stderr


def test_check_is_an_alias_of_dash_dash_check(tmp_path):
    make_dir(tmp_path, {"hello": HELLO})
    r = run_cli(["check", "--config", "k.json"], cwd=str(tmp_path))
    assert r.returncode == 0 and "1 workflow(s) loaded, 0 problem(s)" in r.stdout, r.stdout + r.stderr
