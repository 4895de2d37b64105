"""Command line: --version, --help, --check (load refusals of WORKFLOWS.md), config errors, env overrides.

API.md "Command line" and "Configuration"; WORKFLOWS.md "Accepted shapes" (the refusal list)."""
import json
import os
import re
import signal
import socket
import subprocess
import time

import pytest

from conftest import BIN, REPO, base_env, free_port, run_cli, session, write_json
import wfs
from wfs import conn, node, transform, wf

OK_WF = wf({"t": transform({"ok": True})})


def check_dir(tmp_path, workflows, config=None, data=None):
    """Writes a config + workflows dir under tmp_path and runs `kailashd --check --config ...`."""
    cfg = {"workflows_dir": "workflows", "data_dir": "var"}
    cfg.update(config or {})
    os.makedirs(tmp_path / "var", exist_ok=True)
    for name, w in workflows.items():
        write_json(str(tmp_path / "workflows" / (name + ".json")), w)
    for name, content in (data or {}).items():
        (tmp_path / "var" / name).write_text(content)
    write_json(str(tmp_path / "kailashd.json"), cfg)
    return run_cli(["--check", "--config", "kailashd.json"], cwd=str(tmp_path))


def test_version_and_help():
    r = run_cli(["--version"], cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert re.search(r"\b\d+\.\d+\.\d+\b", r.stdout + r.stderr)
    h = run_cli(["--help"], cwd=REPO)
    assert h.returncode == 0, h.stderr
    text = h.stdout + h.stderr
    assert "--config" in text and "--check" in text


def test_check_accepts_the_repo_examples(tmp_path):
    """The shipped workflows/ and examples/data/ load cleanly (what `make run` serves)."""
    cfg = {"workflows_dir": os.path.join(REPO, "workflows"),
           "data_dir": os.path.join(REPO, "examples", "data")}
    write_json(str(tmp_path / "k.json"), cfg)
    r = run_cli(["--check", "--config", "k.json"], cwd=str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr


def test_check_accepts_all_shapes_and_access_block(tmp_path):
    access = wf({"t": transform({"ok": True})}, gateway={"access": {"roles": ["orders:read"]}})
    r = check_dir(tmp_path, {"ok": OK_WF, "access": access,
                             "list_shape": json.loads(wfs.fixture("list_shape")),
                             "params_shape": json.loads(wfs.fixture("params_shape")),
                             "sdk_export": wfs.example("sdk_export")})
    assert r.returncode == 0, r.stdout + r.stderr


def _bad(name, workflow, *fragments):
    return pytest.param(workflow, fragments, id=name)


READER_ESCAPE = wf({"read": node("JSONReaderNode", file_path="../outside.json")})
READER_ABS = wf({"read": node("JSONReaderNode", file_path="/etc/passwd")})
WRITER_ESCAPE = wf({"src": transform({"a": 1}), "write": node("JSONWriterNode", file_path="../../evil.json")},
                   [conn("src", "result", "write", "data")])

REFUSALS = [
    _bad("unknown_node_type", wf({"code": node("SharePointGraphReader", code="result = 1")}), "SharePointGraphReader", "code"),
    _bad("unknown_node_type_event", wf({"db": node("EventPublishNode", topic="t")}), "EventPublishNode", "db"),
    _bad("unknown_config_key", wf({"shape": transform({"a": 1}, tempalte={"b": 2})}), "shape", "tempalte"),
    _bad("wrong_config_type", wf({"sw": node("SwitchNode", condition_field=5, operator="==", value=1)}),
         "sw", "condition_field"),
    _bad("bad_operator", wf({"sw": node("SwitchNode", condition_field="a", operator="~=", value=1)}),
         "sw", "operator"),
    _bad("cycle", wf({"a": transform({"x": 1}), "b": transform({"y": 1})},
                     [conn("a", "result", "b", "data"), conn("b", "result", "a", "data")]), "cycle"),
    _bad("self_loop", wf({"a": transform({"x": 1})}, [conn("a", "result", "a", "data")]), "cycle"),
    _bad("duplicate_id", {"nodes": [{"id": "twin", "type": "TransformNode", "config": {"template": {}}},
                                    {"id": "twin", "type": "TransformNode", "config": {"template": {}}}],
                          "connections": []}, "twin", "duplicate"),
    _bad("unknown_output_port", wf({"a": transform({"x": 1}), "b": transform({"y": 1})},
                                   [conn("a", "nosuchport", "b", "data")]), "nosuchport"),
    _bad("unknown_switch_port", wf({"s": node("SwitchNode", condition_field="a", operator="==", value=1),
                                    "b": transform({"y": 1})},
                                   [conn("s", "case_x", "b", "data")]), "case_x"),
    _bad("connection_to_unknown_node", wf({"a": transform({"x": 1})}, [conn("a", "result", "ghost", "data")]),
         "ghost"),
    _bad("connection_from_unknown_node", wf({"a": transform({"x": 1})}, [conn("phantom", "result", "a", "data")]),
         "phantom"),
    _bad("template_unknown_filter", wf({"t": transform({"x": "{{ inputs.name | lowr }}"})}), "t", "lowr"),
    _bad("template_unclosed", wf({"t": transform({"x": "{{ inputs.name "})}), "t", "template"),
    _bad("template_unknown_root", wf({"t": transform({"x": "{{ secrets.key }}"})}), "t", "secrets"),
    _bad("template_env_not_listed", wf({"t": transform({"x": "{{ env.HOME }}"})}), "t", "HOME"),
    _bad("template_unknown_node_ref", wf({"t": transform({"x": "{{ nodes.nobody.result }}"})}), "nobody"),
    _bad("redacted_secret", wf({"call": node("HTTPRequestNode", url="http://127.0.0.1:9/x", method="GET",
                                             auth_type="bearer", auth_token="***REDACTED***")}),
         "call", "auth_token", "$env"),
    _bad("reader_path_escapes_data_dir", READER_ESCAPE, "read", "file_path"),
    _bad("reader_absolute_path_outside", READER_ABS, "read", "file_path"),
    _bad("writer_path_escapes_data_dir", WRITER_ESCAPE, "write", "file_path"),
    _bad("gateway_cache_malformed", wf({"t": transform({})}, gateway={"cache": {"ttl_s": -1}}), "cache"),
    _bad("gateway_rate_limit_malformed", wf({"t": transform({})}, gateway={"rate_limit": {"requests_per_minute": 0}}),
         "rate_limit"),
    _bad("gateway_trigger_refused", wf({"t": transform({})}, gateway={"trigger": {"schedule": "*/5 * * * *"}}),
         "trigger"),
    _bad("schema_unknown_keyword", wf({"t": transform({})}, gateway={"inputs": {"type": "object",
                                                                               "properties": {"a": {"minimun": 1}}}}),
         "minimun"),
    _bad("outputs_unknown_node", wf({"t": transform({})}, gateway={"outputs": {"x": "ghostnode.result"}}),
         "ghostnode"),
    _bad("env_secret_unset", wf({"call": node("HTTPRequestNode", url="http://127.0.0.1:9/x", method="GET",
                                              auth_type="bearer", auth_token={"$env": "KT_UNSET_VAR_XYZ"})}),
         "call", "KT_UNSET_VAR_XYZ"),
    _bad("gateway_unknown_key", wf({"t": transform({})}, gateway={"outptus": {}}), "outptus"),
    _bad("executor_zero_concurrency", wf({"t": transform({})}, gateway={"executor": {"max_concurrency": 0}}),
         "max_concurrency"),
    _bad("negative_timeout", wf({"t": transform({})}, gateway={"timeout_ms": -5}), "timeout_ms"),
    _bad("schema_bad_pattern", wf({"t": transform({})}, gateway={"inputs": {"type": "object", "properties": {
        "a": {"type": "string", "pattern": "([a-z"}}}}), "pattern"),
    _bad("not_json", wfs.fixture("not_json")),
    _bad("nodes_not_object_or_list", {"nodes": "TransformNode", "connections": []}, "nodes"),
    _bad("bad_name", {"name": "bad name!", "nodes": {"t": {"node_type": "TransformNode", "config": {"template": {}}}},
                      "connections": []}, "name"),
]


@pytest.mark.parametrize("workflow,fragments", REFUSALS)
def test_check_refuses(tmp_path, workflow, fragments):
    r = check_dir(tmp_path, {"good": OK_WF, "bad": workflow})
    out = r.stdout + r.stderr
    assert r.returncode == 1, "expected exit 1, got %s:\n%s" % (r.returncode, out)
    assert "bad.json" in out, out
    low = out.lower()
    for frag in fragments:
        assert frag.lower() in low, "%r not in --check output:\n%s" % (frag, out)


def test_check_lists_every_bad_file(tmp_path):
    r = check_dir(tmp_path, {"good": OK_WF,
                             "bad_one": wf({"x": node("NoSuchNode")}),
                             "bad_two": wf({"a": transform({})}, [conn("a", "result", "zz", "data")])})
    out = r.stdout + r.stderr
    assert r.returncode == 1
    assert "bad_one.json" in out and "bad_two.json" in out, out


def test_check_reports_access_block_accepted_and_env_secret(tmp_path):
    """{"$env": NAME} is accepted (and read at load); an access block is accepted with auth off."""
    w = wf({"call": node("HTTPRequestNode", url="http://127.0.0.1:9/x", method="GET", auth_type="bearer",
                         auth_token={"$env": "KT_CHECK_SECRET"})}, gateway={"access": {"roles": ["r"]}})
    write_json(str(tmp_path / "workflows" / "w.json"), w)
    write_json(str(tmp_path / "k.json"), {"workflows_dir": "workflows", "data_dir": "var"})
    os.makedirs(tmp_path / "var")
    r = run_cli(["--check", "--config", "k.json"], cwd=str(tmp_path), env={"KT_CHECK_SECRET": "abc"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "abc" not in r.stdout + r.stderr


def test_check_with_a_fifo_in_workflows_dir_returns(tmp_path):
    """A FIFO named *.json in workflows_dir is one file's problem, reported at once: opening it used to
    wait for a writer forever, so --check (and every reload) hung. run_cli's timeout fails a hang."""
    os.makedirs(tmp_path / "workflows")
    os.mkfifo(str(tmp_path / "workflows" / "pipe.json"))
    r = check_dir(tmp_path, {"ok": OK_WF})
    assert r.returncode == 1, r.stdout + r.stderr
    assert "pipe.json: not a regular file (a FIFO)" in r.stdout, r.stdout + r.stderr
    assert "1 workflow(s) loaded, 1 problem(s)" in r.stdout, r.stdout


def test_check_with_a_fifo_as_config_returns(tmp_path):
    """The config file is read the same way: a FIFO (or a directory) is refused, not waited on."""
    os.mkfifo(str(tmp_path / "k.json"))
    r = run_cli(["--check", "--config", "k.json"], cwd=str(tmp_path), timeout=10)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "k.json: not a regular file (a FIFO)" in r.stderr, r.stderr


def test_check_refuses_a_database_url_that_does_not_parse_without_its_password(tmp_path):
    with open(str(tmp_path / "k.json"), "w") as f:
        json.dump({"database_url": "mysql://u:pw-7f3a9@db.example/x"}, f)
    r = run_cli(["--check", "--config", "k.json"], cwd=str(tmp_path), timeout=10)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "database_url" in r.stderr and "does not parse" in r.stderr, r.stderr
    assert "pw-7f3a9" not in r.stdout + r.stderr
    with open(str(tmp_path / "k.json"), "w") as f:  # one that parses is not dialled by --check
        json.dump({"database_url": "postgresql://u:pw-7f3a9@127.0.0.1:1/x"}, f)
    r = run_cli(["--check", "--config", "k.json"], cwd=str(tmp_path), timeout=10)
    assert "database_url" not in r.stderr and "pw-7f3a9" not in r.stdout + r.stderr, r.stderr


# --- configuration errors ---------------------------------------------------------------------

CONFIG_ERRORS = [
    pytest.param({"prot": 8000}, "prot", id="unknown_key"),
    pytest.param({"upstream": {"verify": True}}, "verify", id="unknown_nested_key"),
    pytest.param({"port": "8000"}, "port", id="port_wrong_type"),
    pytest.param({"port": 70000}, "port", id="port_out_of_range"),
    pytest.param({"workers": 0}, "workers", id="workers_zero"),
    pytest.param({"max_body_bytes": "big"}, "max_body_bytes", id="max_body_wrong_type"),
    pytest.param({"executor_defaults": {"max_concurrency": -1}}, "max_concurrency", id="negative_concurrency"),
    pytest.param({"log": {"level": "loud"}}, "level", id="bad_log_level"),
    pytest.param({"trusted_proxies": ["not-a-cidr"]}, "trusted_proxies", id="bad_cidr"),
    pytest.param({"enable_auth": True}, "enable_auth", id="auth_without_any_credential"),
    pytest.param({"redis_url": "rediss://127.0.0.1:6379/0"}, "redis_url", id="redis_tls_not_built"),
    pytest.param({"database_url": 5}, "database_url", id="database_url_not_a_string"),
    pytest.param({"store": {"queue_max": 0}}, "store.queue_max", id="store_queue_max_zero"),
    pytest.param({"store": {"segment_bytes": 10}}, "store.segment_bytes", id="store_segment_too_small"),
    pytest.param({"store": {"journal": True}}, "store.journal", id="store_unknown_key"),
    pytest.param({"tls": {"cert_file": "cert.pem"}}, "go together", id="tls_cert_without_key"),
    pytest.param({"tls": {"cert_file": 5, "key_file": "key.pem"}}, "cert_file", id="tls_cert_not_a_string"),
    pytest.param("{ \"port\": 8000, ", "kailashd.json", id="not_json"),
    pytest.param("[1, 2]", "kailashd.json", id="not_an_object"),
]


@pytest.mark.parametrize("cfg,key", CONFIG_ERRORS)
def test_config_error_stops_startup(tmp_path, cfg, key):
    base = {"host": "127.0.0.1", "port": free_port(), "workflows_dir": "workflows", "data_dir": "var"}
    os.makedirs(tmp_path / "workflows")
    os.makedirs(tmp_path / "var")
    write_json(str(tmp_path / "workflows" / "ok.json"), OK_WF)
    if isinstance(cfg, dict):
        merged = dict(base)
        merged.update(cfg)
        write_json(str(tmp_path / "kailashd.json"), merged)
    else:
        (tmp_path / "kailashd.json").write_text(cfg)
    p = subprocess.run([BIN, "--config", "kailashd.json"], cwd=str(tmp_path), env=base_env(),
                       capture_output=True, text=True, timeout=15)
    assert p.returncode != 0, "daemon accepted a bad config: %r" % (cfg,)
    assert key in p.stderr, "stderr does not name %r:\n%s" % (key, p.stderr)
    assert "kailashd.json" in p.stderr, p.stderr
    c = subprocess.run([BIN, "--check", "--config", "kailashd.json"], cwd=str(tmp_path), env=base_env(),
                       capture_output=True, text=True, timeout=15)
    assert c.returncode == 1, c.stdout + c.stderr
    assert key in c.stdout + c.stderr


def test_missing_config_file_is_an_error(tmp_path):
    p = run_cli(["--config", "nope.json"], cwd=str(tmp_path))
    assert p.returncode != 0
    assert "nope.json" in p.stderr


# --- environment overrides and config lookup ----------------------------------------------------

def _serve_until_health(argv, cwd, env, port, timeout=10):
    proc = subprocess.Popen(argv, cwd=cwd, env=base_env(env), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    http = session()
    deadline = time.time() + timeout
    ok = None
    try:
        while time.time() < deadline and proc.poll() is None:
            try:
                r = http.get("http://127.0.0.1:%d/health" % port, timeout=0.5)
                ok = r
                break
            except Exception:
                time.sleep(0.05)
        return proc, ok
    except Exception:
        proc.kill()
        raise


def _stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        rc = None
    return rc


def test_env_port_overrides_config(tmp_path):
    cfg_port, env_port = free_port(), free_port()
    os.makedirs(tmp_path / "workflows")
    os.makedirs(tmp_path / "var")
    write_json(str(tmp_path / "k.json"), {"host": "127.0.0.1", "port": cfg_port, "workflows_dir": "workflows",
                                          "data_dir": "var"})
    proc, r = _serve_until_health([BIN, "--config", "k.json"], str(tmp_path), {"KAILASH_PORT": str(env_port)},
                                  env_port)
    try:
        assert r is not None and r.status_code == 200, proc.stderr.read() if proc.poll() is not None else ""
        with pytest.raises(Exception):
            session().get("http://127.0.0.1:%d/health" % cfg_port, timeout=0.5)
    finally:
        assert _stop(proc) == 0


def test_kailash_config_env_and_default_path(tmp_path):
    """No --config: KAILASH_CONFIG names the file; without it, conf/kailashd.json under the cwd."""
    for how in ("env", "default"):
        d = tmp_path / how
        os.makedirs(d / "workflows")
        os.makedirs(d / "var")
        port = free_port()
        write_json(str(d / "workflows" / "hello.json"), wfs.example("hello"))
        cfg = {"host": "127.0.0.1", "port": port, "workflows_dir": "workflows", "data_dir": "var"}
        if how == "env":
            write_json(str(d / "elsewhere.json"), cfg)
            env = {"KAILASH_CONFIG": "elsewhere.json"}
        else:
            write_json(str(d / "conf" / "kailashd.json"), cfg)
            env = {}
        proc, r = _serve_until_health([BIN], str(d), env, port)
        try:
            assert r is not None and r.status_code == 200, how
            wl = session().get("http://127.0.0.1:%d/workflows" % port, timeout=5).json()
            assert [w["name"] for w in wl["workflows"]] == ["hello"], (how, wl)
        finally:
            assert _stop(proc) == 0, how


def test_env_host_workers_and_log_level(tmp_path):
    """KAILASH_HOST and KAILASH_WORKERS override the file; KAILASH_LOG_LEVEL=error silences info lines."""
    os.makedirs(tmp_path / "workflows")
    os.makedirs(tmp_path / "var")
    port = free_port()
    write_json(str(tmp_path / "k.json"), {"host": "203.0.113.1", "port": port, "workers": 1,
                                          "workflows_dir": "workflows", "data_dir": "var"})
    threads = {}
    for workers in ("1", "6"):
        proc, r = _serve_until_health([BIN, "--config", "k.json"], str(tmp_path),
                                      {"KAILASH_HOST": "127.0.0.1", "KAILASH_WORKERS": workers,
                                       "KAILASH_LOG_LEVEL": "error"}, port)
        try:
            assert r is not None and r.status_code == 200, "KAILASH_HOST did not override host"
            with open("/proc/%d/status" % proc.pid) as f:
                threads[workers] = int([ln for ln in f if ln.startswith("Threads:")][0].split()[1])
        finally:
            assert _stop(proc) == 0
        err = proc.stderr.read()
        assert '"info"' not in err and "listening" not in err, err
    assert threads["6"] > threads["1"], threads


def _ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="this machine has no IPv6 loopback")
def test_ipv6_host_serves_and_runs(tmp_path):
    """host "::1": the listening socket is IPv6 only (127.0.0.1 gets nothing) and runs answer."""
    os.makedirs(tmp_path / "workflows")
    os.makedirs(tmp_path / "var")
    port = free_port()
    write_json(str(tmp_path / "workflows" / "hello.json"), wfs.example("hello"))
    write_json(str(tmp_path / "k.json"), {"host": "::1", "port": port, "workflows_dir": "workflows",
                                          "data_dir": "var"})
    proc = subprocess.Popen([BIN, "--config", "k.json"], cwd=str(tmp_path), env=base_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        http = session()
        deadline = time.time() + 10
        r = None
        while r is None and time.time() < deadline and proc.poll() is None:
            try:
                r = http.post("http://[::1]:%d/workflows/hello/run" % port, json={"inputs": {"name": "six"}},
                              timeout=2)
            except Exception:
                time.sleep(0.05)
        assert r is not None and r.status_code == 200, proc.stderr.read() if proc.poll() is not None else ""
        assert r.json()["outputs"] == {"greeting": "Hello, six!"}
        with pytest.raises(Exception):
            session().get("http://127.0.0.1:%d/health" % port, timeout=0.5)
    finally:
        assert _stop(proc) == 0


def test_port_in_use_is_refused(tmp_path):
    """A second daemon on a port that is taken stops at once with a clear message (no silent sharing)."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    os.makedirs(tmp_path / "workflows")
    os.makedirs(tmp_path / "var")
    write_json(str(tmp_path / "k.json"), {"host": "127.0.0.1", "port": port, "workflows_dir": "workflows",
                                          "data_dir": "var"})
    try:
        p = subprocess.run([BIN, "--config", "k.json"], cwd=str(tmp_path), env=base_env(), capture_output=True,
                           text=True, timeout=10)
    finally:
        taken.close()
    assert p.returncode != 0
    assert "cannot listen on 127.0.0.1:%d" % port in p.stderr, p.stderr
