"""PythonCodeNode / AsyncPythonCodeNode: the code runs in the daemon's Python worker processes
(src/python/, python/kailash_runner.py), black-box over HTTP with real workers.

Covered: outputs equal the SDK's for the same code and inputs (tests/compat/cases/python_*.json,
recorded by tests/compat/gen_python.py with the real SDK); a timeout and an infinite loop (the worker
is killed and replaced, the next run works); a memory bomb (RLIMIT_AS); `import socket` refused by
the import policy, and a socket reached through an allowed module refused by the seccomp filter; a
worker killed mid-call fails only that run; ctypes (a segfaulting extension) is outside the SDK's
allowed modules; a worker crash loop shows in /ready; 200 concurrent runs on 2 workers."""
import concurrent.futures
import json
import os
import signal
import time

import pytest

from conftest import wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
COMPAT = os.path.join(HERE, "..", "compat")
CASES_DIR = os.path.join(COMPAT, "cases")
FAIL_DIR = os.path.join(COMPAT, "python_failures")
PY_CASES = sorted(f[:-5] for f in os.listdir(CASES_DIR) if f.startswith("python_") and f.endswith(".json"))
PY_FAILS = sorted(f[:-5] for f in os.listdir(FAIL_DIR) if f.endswith(".json"))

CONFIG = {"python": {"workers": 2}}


def node(code, **config):
    return {"node_type": "PythonCodeNode", "config": dict(config, code=code)}


def wf(**nodes):
    return {"nodes": nodes, "connections": []}


def worker_pids(d):
    """The daemon's Python workers (its children running the runner)."""
    pids = []
    for task in os.listdir("/proc/%d/task" % d.pid):
        try:
            with open("/proc/%d/task/%s/children" % (d.pid, task)) as f:
                pids += [int(p) for p in f.read().split()]
        except OSError:
            pass
    out = []
    for p in pids:
        try:
            with open("/proc/%d/cmdline" % p, "rb") as f:
                if b"kailash_runner.py" in f.read():
                    out.append(p)
        except OSError:
            pass
    return sorted(out)


def run(d, name, params=None, timeout=30):
    return d.run(name, body={"inputs": {}, "parameters": params or {}}, timeout=timeout)


@pytest.fixture(scope="module")
def pyd(module_daemons):
    return module_daemons.make(config=CONFIG, workflows={
        "inc": wf(p=node("result = {'n': n + 1}")),
        "sleepy": wf(p=node("import time\ntime.sleep(s)\nresult = s", timeout=1)),
        "spin": wf(p=node("while True:\n    pass", timeout=1)),
        "bomb": wf(p=node("x = bytearray(2 ** 31)\nresult = len(x)")),
        "sock_import": wf(p=node("import socket\nresult = 1")),
        "sock_seccomp": wf(p=node("import logging.handlers\nsk = logging.handlers.socket\n"
                                  "s = sk.socket(sk.AF_INET, sk.SOCK_STREAM)\ns.connect(('127.0.0.1', port))\n"
                                  "result = 'connected'")),
        "unix_ok": wf(p=node("import logging.handlers\nsk = logging.handlers.socket\n"
                             "a, b = sk.socketpair()\na.send(b'x')\nresult = b.recv(1).decode()")),
        "ctypes": wf(p=node("import ctypes\nctypes.string_at(0)\nresult = 1")),
        "fork": wf(p=node("import pickle\nresult = pickle.loads(b'cos\\nfork\\n(tR.')")),
        "abort": wf(p=node("import pickle\nresult = pickle.loads(b'cos\\nabort\\n(tR.')")),
        "env": wf(p=node("import os\nresult = {'env': dict(os.environ), 'cwd': os.getcwd()}")),
        "peek": wf(p=node("result = open(path, 'rb').read(64).decode('latin-1')")),
        "own": wf(p=node("open('note.txt', 'w').write('mine')\nresult = open('note.txt').read()")),
        "async": {"nodes": {"a": {"node_type": "AsyncPythonCodeNode", "config": {
            "code": "import asyncio\nawait asyncio.sleep(0.01)\nresult = {'v': x * 2}", "timeout": 5}}},
            "connections": []},
    })


def test_a_call(pyd):
    r = run(pyd, "inc", {"p": {"n": 41}})
    assert r.status_code == 200, r.text
    assert r.json()["outputs"] == {"p": {"result": {"n": 42}}}
    r = pyd.get("/ready").json()
    assert r["checks"]["python"] == "ok", r


def test_async_alias(pyd):
    r = run(pyd, "async", {"a": {"x": 21}})
    assert r.status_code == 200, r.text
    assert r.json()["outputs"] == {"a": {"result": {"v": 42}}}


def test_the_workflow_shows_the_node(pyd):
    r = pyd.get("/workflows/inc")
    assert r.status_code == 200
    assert r.json()["nodes"][0]["type"] == "PythonCodeNode"


def test_a_timeout_kills_and_replaces_the_worker(pyd):
    before = worker_pids(pyd)
    t0 = time.time()
    r = run(pyd, "sleepy", {"p": {"s": 30}})
    assert r.status_code == 504, r.text
    assert r.json()["error"]["code"] == "timeout"
    assert "timeout" in r.json()["error"]["message"]
    assert time.time() - t0 < 5
    assert wait_for(lambda: len(worker_pids(pyd)) == 2 and worker_pids(pyd) != before, 5)
    r = run(pyd, "sleepy", {"p": {"s": 0}})
    assert r.status_code == 200, r.text
    assert r.json()["outputs"] == {"p": {"result": 0}}


def test_an_infinite_loop(pyd):
    r = run(pyd, "spin")
    assert r.status_code == 504, r.text
    assert r.json()["error"]["code"] == "timeout"
    assert run(pyd, "inc", {"p": {"n": 1}}).json()["outputs"] == {"p": {"result": {"n": 2}}}


def test_a_memory_bomb(pyd):
    r = run(pyd, "bomb")
    assert r.status_code == 500, r.text
    assert "MemoryError" in r.json()["error"]["message"]
    assert run(pyd, "inc", {"p": {"n": 1}}).status_code == 200


def test_import_socket_is_refused_by_the_import_policy(pyd):
    r = run(pyd, "sock_import")
    assert r.status_code == 500, r.text
    assert "Import of module 'socket' is not allowed" in r.json()["error"]["message"]


def test_a_socket_through_an_allowed_module_is_refused_by_seccomp(pyd):
    import socket
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(0.5)
    try:
        r = run(pyd, "sock_seccomp", {"p": {"port": srv.getsockname()[1]}})
        assert r.status_code == 500, r.text
        assert "PermissionError" in r.json()["error"]["message"], r.text
        with pytest.raises(socket.timeout):
            srv.accept()
    finally:
        srv.close()
    r = run(pyd, "unix_ok")  # AF_UNIX stays allowed (asyncio's self-pipe)
    assert r.json()["outputs"] == {"p": {"result": "x"}}, r.text


def test_ctypes_is_not_an_allowed_module(pyd):
    """The issue's segfaulting extension: ctypes is outside the SDK's allowed list, so the import
    is refused before anything runs; a crash is shown by killing the worker (next test)."""
    r = run(pyd, "ctypes")
    assert r.status_code == 500, r.text
    assert "Import of module 'ctypes' is not allowed" in r.json()["error"]["message"]


def test_fork_is_refused(pyd):
    """pickle is on the SDK's list and can call any function: os.fork is still refused (seccomp)."""
    r = run(pyd, "fork")
    assert r.status_code == 500, r.text
    assert "PermissionError" in r.json()["error"]["message"], r.text


def test_the_worker_has_an_empty_environment_and_a_private_directory(pyd):
    r = run(pyd, "env")
    out = r.json()["outputs"]["p"]["result"]
    out["env"].pop("LC_CTYPE", None)  # Python's own locale coercion (PEP 538) in an empty environment
    assert out["env"] == {}
    for p in worker_pids(pyd):  # what exec gave it
        with open("/proc/%d/environ" % p, "rb") as f:
            assert f.read() == b""
    assert os.path.basename(out["cwd"]).startswith("kailashd-py-")
    assert os.path.isdir(out["cwd"])


@pytest.mark.parametrize("what", ["daemon_environ", "config", "journal", "etc_passwd", "proc_self_mem_of_parent",
                                  "other_tmp"])
def test_the_filesystem_outside_the_sandbox_is_closed(pyd, what):
    """Landlock: only the interpreter, the runner, the system's libraries (read-only) and the private
    directory. A worker cannot read the daemon's environment (its secrets), config or run records."""
    pyd.run("inc", body={"inputs": {}, "parameters": {"p": {"n": 1}}})  # a record in the journal
    journal = [os.path.join(pyd.data_dir, "runs", f) for f in os.listdir(os.path.join(pyd.data_dir, "runs"))
               if f.endswith(".jsonl")]
    paths = {"daemon_environ": "/proc/%d/environ" % pyd.pid, "config": pyd.config_path,
             "journal": journal[0] if journal else os.path.join(pyd.data_dir, "runs"),
             "etc_passwd": "/etc/passwd", "proc_self_mem_of_parent": "/proc/%d/maps" % pyd.pid,
             "other_tmp": __file__}
    r = run(pyd, "peek", {"p": {"path": paths[what]}})
    assert r.status_code == 500, r.text
    assert "PermissionError" in r.json()["error"]["message"] or "IsADirectoryError" in r.json()["error"]["message"], r.text


def test_the_private_directory_is_writable(pyd):
    r = run(pyd, "own")
    assert r.status_code == 200, r.text
    assert r.json()["outputs"] == {"p": {"result": "mine"}}


def test_a_worker_killed_mid_call_fails_only_that_run(pyd):
    pids = worker_pids(pyd)
    assert len(pids) == 2
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        slow = ex.submit(run, pyd, "sleepy", {"p": {"s": 0.8}})
        time.sleep(0.3)
        # the busy worker sleeps in time.sleep; the idle one waits in read() on its socket
        sleeping = [p for p in worker_pids(pyd) if "sleep" in open("/proc/%d/wchan" % p).read()]
        assert len(sleeping) == 1, [open("/proc/%d/wchan" % p).read() for p in worker_pids(pyd)]
        victim = sleeping[0]
        others = [ex.submit(run, pyd, "inc", {"p": {"n": i}}) for i in range(20)]
        os.kill(victim, signal.SIGSEGV)
        r = slow.result()
        assert r.status_code == 500, r.text
        assert "died during the call" in r.json()["error"]["message"], r.text
        for i, f in enumerate(others):
            assert f.result().json()["outputs"] == {"p": {"result": {"n": i + 1}}}
    assert wait_for(lambda: len(worker_pids(pyd)) == 2 and victim not in worker_pids(pyd), 5)
    assert pyd.alive()
    assert wait_for(lambda: "its process ended" in pyd.stderr(), 3)


def test_code_that_crashes_its_worker_fails_only_that_run(pyd):
    """A crash from inside the code (os.abort through pickle, an allowed module: what a segfaulting
    extension does to the process) fails that run; the worker is replaced, its directory removed."""
    dirs = {p: os.readlink("/proc/%d/cwd" % p) for p in worker_pids(pyd)}
    r = run(pyd, "abort")
    assert r.status_code == 500, r.text
    assert "died during the call" in r.json()["error"]["message"], r.text
    assert wait_for(lambda: len(worker_pids(pyd)) == 2, 5)
    gone = [p for p in dirs if p not in worker_pids(pyd)]
    assert len(gone) == 1
    assert not os.path.exists(dirs[gone[0]]), "the dead worker's private directory stays"
    assert wait_for(lambda: "its process ended" in pyd.stderr(), 3)  # with "(killed by signal 6)" when it was reaped at once
    assert run(pyd, "inc", {"p": {"n": 1}}).json()["outputs"] == {"p": {"result": {"n": 2}}}


def test_200_concurrent_runs_on_2_workers(pyd):
    assert len(worker_pids(pyd)) == 2

    def one(i):
        return i, run(pyd, "inc", {"p": {"n": i}})

    with concurrent.futures.ThreadPoolExecutor(50) as ex:
        results = list(ex.map(one, range(200)))
    for i, r in results:
        assert r.status_code == 200, r.text
        assert r.json()["outputs"] == {"p": {"result": {"n": i + 1}}}
    assert len(worker_pids(pyd)) == 2


def test_a_request_cannot_set_the_code(pyd):
    r = pyd.run("inc", body={"inputs": {}, "parameters": {"p": {"n": 1, "code": "result = 'pwned'"}}})
    assert r.status_code == 400, r.text


def test_load_refusals(daemons):
    d = daemons.make(config=CONFIG, workflows={
        "nocode": wf(p={"node_type": "PythonCodeNode", "config": {}}),
        "fn": wf(p=node("result = 1", function="f")),
        "trusted": wf(p=node("result = 1", sandbox_mode="trusted")),
        "tmpl": wf(p=node("result = '{{ inputs.x }}'")),
        "unknown": wf(p=node("result = 1", bogus=1)),
    })
    errs = {os.path.basename(e["file"]): e["message"] for e in d.get("/ready").json()["workflow_errors"]}
    assert "config.code: required" in errs["nocode.json"]
    assert "config.function" in errs["fn.json"]
    assert "config.sandbox_mode" in errs["trusted.json"]
    assert "config.code: a template is not allowed" in errs["tmpl.json"]
    assert "config.bogus: unknown key for PythonCodeNode" in errs["unknown.json"]


def test_a_crash_loop_shows_in_ready(daemons, tmp_path):
    bad = tmp_path / "bad_runner.py"
    bad.write_text("import sys\nsys.exit(3)\n")
    d = daemons.make(config={"python": {"workers": 1, "runner": str(bad)}, "workers": 1},
                     workflows={"inc": wf(p=node("result = 1"))})
    assert wait_for(lambda: d.get("/ready").json()["checks"].get("python") == "down", 10)
    r = d.get("/ready")
    assert r.status_code == 503
    assert "crash loop" in r.json()["reasons"]["python"]
    r = run(d, "inc")
    assert r.status_code == 500
    assert "no Python worker is running" in r.json()["error"]["message"]
    assert "crash loop" in d.stderr()


def load_case(d, name):
    with open(os.path.join(d, name + ".json")) as f:
        return json.load(f)


@pytest.mark.parametrize("name", PY_CASES)
def test_outputs_equal_the_sdks(name, daemons):
    """Node by node, equal to the SDK's LocalRuntime results (skip_branches mode; route_data gives the
    same for these one-path workflows)."""
    case = load_case(CASES_DIR, name)
    d = daemons.make(config=CONFIG, workflows={name: case["workflow"]})
    for i, entry in enumerate(case["runs"]):
        want = entry["skip_branches"]["results"]
        assert want == entry["route_data"]["results"]
        r = d.run(name, body={"inputs": {}, "parameters": entry["inputs"]}, params={"include": "results"})
        assert r.status_code == 200, "%s run %d: %s" % (name, i, r.text[:800])
        got = r.json()["results"]
        assert got == want, "%s run %d:\n kailashd %s\n SDK      %s" % (name, i, json.dumps(got), json.dumps(want))


# What of the SDK's error each failure's message carries.
FAIL_TEXT = {"python_raises": "division by zero", "python_import_refused": "Import of module 'subprocess' is not allowed",
             "python_not_json": "not JSON-serializable"}


@pytest.mark.parametrize("name", PY_FAILS)
def test_failures_as_the_sdks(name, daemons):
    """Where the SDK failed the node, kailashd fails the run with the node's error (the SDK's runtime
    records {"failed": true} and goes on: kailashd's rule for a failing node is the run's failure)."""
    case = load_case(FAIL_DIR, name)
    d = daemons.make(config=CONFIG, workflows={name: case["workflow"]})
    for i, entry in enumerate(case["runs"]):
        sdk = entry["skip_branches"]["results"]["p"]
        assert sdk.get("failed") is True
        r = d.run(name, body={"inputs": {}, "parameters": entry["inputs"]})
        assert r.status_code == 500, r.text
        err = r.json()["error"]
        assert err["code"] == "internal" and err["details"]["node"] == "p"
        assert FAIL_TEXT[name] in err["message"], err
        assert FAIL_TEXT[name].split()[-1] in sdk["error"]


def test_the_compat_records_are_there():
    assert len(PY_CASES) >= 6, PY_CASES
    assert set(PY_FAILS) == set(FAIL_TEXT), PY_FAILS


def test_an_installed_binary_finds_its_runner(tmp_path, daemons):
    """make install puts the runner in share/kailashd/, where an installed bin/kailashd looks for it
    (`kailashd run`: in-process, the same worker pool)."""
    import subprocess
    from conftest import BIN, REPO
    dest = tmp_path / "root"
    build = os.path.dirname(BIN)

    def make(target):
        r = subprocess.run(["make", "-s", "-C", REPO, "BUILD=" + build, "-o", os.path.join(build, "kailashd"),
                            target, "DESTDIR=" + str(dest), "PREFIX=/usr"], capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, r.stderr

    make("install")
    runner = dest / "usr/share/kailashd/kailash_runner.py"
    with open(os.path.join(REPO, "python", "kailash_runner.py")) as f:
        assert runner.read_text() == f.read()
    d = daemons.make(config=CONFIG, workflows={"hello": wf(p=node("result = {'from': 'python'}"))}, start=False)
    proc = subprocess.run([str(dest / "usr/bin/kailashd"), "run", "hello", "--input", "{}", "--config",
                           d.config_path], capture_output=True, text=True, timeout=60, cwd=d.root)
    make("uninstall")
    assert not runner.exists()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert '"python"' in proc.stdout, proc.stdout
