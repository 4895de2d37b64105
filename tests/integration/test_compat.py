"""The Kailash compatibility corpus (tests/compat/): every case is a workflow exported by the real
SDK, run here through /execute and /run?include=results, node by node against the SDK's own
LocalRuntime results that tests/compat/gen.py recorded. The SDK is not needed to run this.

Which SDK result is the expectation: the `skip_branches` run (kailashd skips the branch a switch left
empty, as that mode does), node by node; where that mode has an SDK bug (a RecursionError in
SwitchNode's cases mode) the `route_data` run's node. A node the SDK failed on, or that kailashd runs
or skips otherwise, must be named in the case's `differences` with the reason (the README's
compatibility section lists each one); such a node is not compared. A run the SDK failed as a whole must fail here too. Timings
(response_time_ms) are not compared."""
import json
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
COMPAT = os.path.join(HERE, "..", "compat")
sys.path.insert(0, COMPAT)
import upstream as compat_upstream  # noqa: E402

CASES_DIR = os.path.join(COMPAT, "cases")
CASES = sorted(f[:-5] for f in os.listdir(CASES_DIR) if f.endswith(".json"))
TIMING = {"response_time_ms"}


@pytest.fixture(scope="module")
def compat_port():
    srv, port = compat_upstream.start()
    yield port
    srv.shutdown()


def load_case(name, port):
    with open(os.path.join(CASES_DIR, name + ".json")) as f:
        text = f.read()
    return json.loads(text.replace("__UPSTREAM__", "127.0.0.1:%d" % port))


def same(a, b, key=None):
    """Python equality as the SDK's results hold it, but a bool is not a number, and timings are
    not compared. A switch's grouped condition_result is the SDK's list(set(...)), whose order
    varies from one Python process to the next: compared as a multiset."""
    if key == "condition_result" and isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(sum(same(x, y) for y in b) == sum(same(x, y) for y in a) for x in a)
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        keys = (set(a) | set(b)) - TIMING
        return all(k in a and k in b and same(a[k], b[k], k) for k in keys)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def failed(out):
    return isinstance(out, dict) and out.get("failed") is True


def expected_nodes(run):
    """{node_id: expected output} and {node_id: SDK failure} for one recorded run."""
    skip, route = run["skip_branches"], run["route_data"]
    base = skip if "results" in skip else route
    if "results" not in base:
        return None, None
    want, sdk_failed = {}, {}
    for node, out in base["results"].items():
        if failed(out) and "RecursionError" in json.dumps(out):
            out = route.get("results", {}).get(node, out)
        if failed(out):
            sdk_failed[node] = out.get("error")
        elif out is not None:
            want[node] = out
    return want, sdk_failed


def split_inputs(workflow, inputs):
    """The SDK's parameters as /run takes them: node-id objects are parameters, the rest inputs."""
    ids = set(workflow["nodes"])
    params = {k: v for k, v in inputs.items() if k in ids and isinstance(v, dict)}
    rest = {k: v for k, v in inputs.items() if k not in params}
    return rest, params


def check_outputs(case, i, got, want, sdk_failed):
    diffs = []
    known = case.get("differences", {})
    for node, out in want.items():
        if node in known:
            continue
        if node not in got:
            diffs.append("%s: node absent (SDK: %s)" % (node, json.dumps(out)[:300]))
        elif not same(got[node], out):
            diffs.append("%s:\n   kailashd %s\n   SDK      %s" % (node, json.dumps(got[node])[:600],
                                                                json.dumps(out)[:600]))
    for node in sdk_failed:
        if node not in known:
            diffs.append("%s: the SDK failed it (%s) and the case names no difference" % (node, sdk_failed[node]))
    for node in set(got) - set(want) - set(sdk_failed) - set(known):
        diffs.append("%s: ran here, not in the SDK's results: %s" % (node, json.dumps(got[node])[:300]))
    assert not diffs, "%s run %d:\n  %s" % (case["name"], i, "\n  ".join(diffs))


def check_written(case, i, run, d):
    mode = run["skip_branches"] if "results" in run["skip_branches"] else run["route_data"]
    for name, text in mode.get("written", {}).items():
        with open(os.path.join(d.data_dir, name), newline="") as f:
            assert f.read() == text, "%s run %d: file %s differs from the SDK's" % (case["name"], i, name)


@pytest.mark.parametrize("name", CASES)
def test_compat_case(name, compat_port, daemons):
    case = load_case(name, compat_port)
    wf = dict(case["workflow"])
    if case.get("gateway"):
        wf["gateway"] = case["gateway"]
    d = daemons.make(workflows={name: wf}, data=case["files"])
    r = d.get("/workflows/" + name)
    assert r.status_code == 200, "the SDK's export does not load: %s\n%s" % (r.text, d.stderr()[-1500:])
    for i, run in enumerate(case["runs"]):
        want, sdk_failed = expected_nodes(run)
        r = d.execute(name, inputs=run["inputs"])
        if want is None:
            assert r.status_code != 200, "%s run %d: the SDK failed the run (%s), kailashd answered %s" % (
                name, i, run["skip_branches"].get("error"), r.text[:500])
            continue
        assert r.status_code == 200, "%s run %d: %s" % (name, i, r.text[:800])
        check_outputs(case, i, r.json()["outputs"], want, sdk_failed)
        check_written(case, i, run, d)
        inputs, params = split_inputs(case["workflow"], run["inputs"])
        r = d.run(name, body={"inputs": inputs, "parameters": params}, params={"include": "results"})
        assert r.status_code == 200, "%s run %d (/run): %s" % (name, i, r.text[:800])
        check_outputs(case, i, r.json()["results"], want, sdk_failed)


def test_corpus_is_there():
    """The corpus must not vanish silently (an empty directory would parametrize no case at all)."""
    assert len(CASES) >= 60, CASES
    for name in CASES:
        with open(os.path.join(CASES_DIR, name + ".json")) as f:
            case = json.load(f)
        assert case["runs"], name
        assert all("skip_branches" in r and "route_data" in r for r in case["runs"]), name
