#!/usr/bin/env python3
"""Records the compatibility corpus: every case is a workflow built with the Kailash SDK's own
WorkflowBuilder and exported with to_json(), the inputs it is run with, the data files it reads, and
the SDK's LocalRuntime results in both conditional_execution modes. tests/integration/test_compat.py
replays every case through kailashd without needing the SDK.

Needs the SDK (kailash-py's src/ on PYTHONPATH; its core needs pydantic, networkx and friends, and
its HTTP nodes aiohttp and requests: Debian's python3-aiohttp is found through dist-packages):

    PYTHONPATH=/path/to/kailash-py/src python3 tests/compat/gen.py

It rewrites tests/compat/cases/ from scratch."""
import json
import os
import shutil
import sys
import tempfile
import warnings

sys.path.append("/usr/lib/python3/dist-packages")
warnings.simplefilter("ignore")
import logging  # noqa: E402

logging.disable(logging.CRITICAL)

import kailash  # noqa: E402
import kailash.nodes.api.http  # noqa: E402,F401
import kailash.nodes.api.rest  # noqa: E402,F401
import kailash.nodes.data.readers  # noqa: E402,F401
import kailash.nodes.data.writers  # noqa: E402,F401
import kailash.nodes.transform.processors  # noqa: E402,F401
from kailash.runtime.local import LocalRuntime  # noqa: E402
from kailash.workflow.builder import WorkflowBuilder  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import upstream  # noqa: E402
from cases_def import CASES  # noqa: E402

PLACEHOLDER = "__UPSTREAM__"


def build(case, port):
    wb = WorkflowBuilder()
    for ntype, nid, config in case["nodes"]:
        cfg = json.loads(json.dumps(config).replace(PLACEHOLDER, "127.0.0.1:%d" % port))
        wb.add_node(ntype, nid, cfg)
    for src, out, dst, inp in case.get("connections", []):
        wb.add_connection(src, out, dst, inp)
    return wb.build(name=case["name"])


def run(workflow, mode, params, files, content_aware=True):
    """The SDK's results (or its error) and the files the run left in its directory."""
    cwd = os.getcwd()
    tmp = tempfile.mkdtemp(prefix="kls-compat-")
    try:
        for name, text in files.items():
            with open(os.path.join(tmp, name), "w", newline="") as f:
                f.write(text)
        os.chdir(tmp)
        try:
            with LocalRuntime(conditional_execution=mode, content_aware_success_detection=content_aware) as rt:
                res, _ = rt.execute(workflow, parameters=json.loads(json.dumps(params)))
            out = {"results": json.loads(json.dumps(res, default=str))}
        except Exception as e:  # the SDK's failure is the expectation
            out = {"error": "%s: %s" % (type(e).__name__, str(e)[:300])}
        written = {}
        for name in sorted(os.listdir(tmp)):
            if name not in files and os.path.isfile(name):
                with open(name, newline="") as f:
                    written[name] = f.read()
        if written:
            out["written"] = written
        return out
    finally:
        os.chdir(cwd)
        shutil.rmtree(tmp, ignore_errors=True)


def record(case, port):
    wf = build(case, port)
    export = json.loads(wf.to_json())
    doc = {
        "name": case["name"],
        "about": case.get("about", ""),
        "node_types": sorted({n[0] for n in case["nodes"]}),
        "workflow": export,
        "files": case.get("files", {}),
        "gateway": case.get("gateway"),
        "differences": case.get("differences", {}),
        "runs": [],
    }
    for params in case["inputs"]:
        entry = {"inputs": params}
        for mode in ("route_data", "skip_branches"):
            entry[mode] = run(wf, mode, params, doc["files"])
            if "Content-aware failure" in entry[mode].get("error", ""):
                # The runtime's content-aware detection fails a run whose node answered success: false
                # (an HTTP 404); kailashd returns that answer for a switch to route on (WORKFLOWS.md),
                # so the node's own output is recorded with the detection off.
                entry[mode] = run(wf, mode, params, doc["files"], content_aware=False)
                entry[mode]["content_aware_off"] = True
        doc["runs"].append(entry)
    text = json.dumps(doc, indent=1, sort_keys=False)
    return json.loads(text.replace("127.0.0.1:%d" % port, PLACEHOLDER))


def main():
    out_dir = os.path.join(HERE, "cases")
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    srv, port = upstream.start()
    names = set()
    for case in CASES:
        assert case["name"] not in names, case["name"]
        names.add(case["name"])
        doc = record(case, port)
        with open(os.path.join(out_dir, case["name"] + ".json"), "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
        print("%-40s %d run(s)" % (case["name"], len(doc["runs"])))
    srv.shutdown()
    print("kailash %s: %d cases" % (kailash.__version__, len(CASES)))


if __name__ == "__main__":
    main()
