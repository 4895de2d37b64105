#!/usr/bin/env python3
"""Records the PythonCodeNode / AsyncPythonCodeNode part of the compatibility corpus
(tests/compat/cases/python_*.json) with the Kailash SDK, the way gen.py records the rest: each case is
built with WorkflowBuilder, exported with to_json(), and run by LocalRuntime in both
conditional_execution modes (gen.py's record()). It rewrites only the python_* cases, so the rest of
the corpus stays as gen.py left it. tests/integration/test_python.py and test_compat.py replay them
through kailashd. Needs only the SDK's core (pydantic, networkx), not its HTTP nodes' aiohttp: gen.py's
imports of those are stood in for.

    PYTHONPATH=/path/to/kailash-py/src python3 tests/compat/gen_python.py"""
import json
import os
import sys
import types

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
for _m in ("kailash.nodes.api", "kailash.nodes.api.http", "kailash.nodes.api.rest"):  # not needed here
    sys.modules.setdefault(_m, types.ModuleType(_m))
import kailash.nodes.code  # noqa: E402,F401
import gen  # noqa: E402
import upstream  # noqa: E402
from cases_def import case  # noqa: E402

ROWS = [{"name": "ada", "age": 36}, {"name": "bob", "age": 25}]

PYTHON = [
    case("python_result_dict", [("PythonCodeNode", "p", {"code": "result = {'n': n + 1}"})],
         [{"p": {"n": 41}}, {"p": {"n": -1.5}}], about="the bench's node: a dict result"),
    case("python_result_scalar", [("PythonCodeNode", "p", {"code": "result = x * 2"})],
         [{"p": {"x": 21}}, {"p": {"x": "ab"}}, {"p": {"x": [1]}}]),
    case("python_no_result", [("PythonCodeNode", "p", {"code": "a = x * 2\nb = [i for i in range(3)]\n_hidden = 1\nimport math"})],
         [{"p": {"x": 3}}],
         about="without `result` every variable not starting with _ that is not a module is an output, "
               "the node's config and inputs included"),
    case("python_modules_bound", [("PythonCodeNode", "p", {"code": "result = {'r': math.sqrt(x), 'j': json.dumps(sorted(d)), "
                                                         "'s': statistics.mean([1, 2, 3, 4])}"})],
         [{"p": {"x": 16, "d": {"b": 1, "a": 2}}}], about="allowed modules are bound by name without an import"),
    case("python_imports", [("PythonCodeNode", "p", {"code": "import datetime\nfrom collections import Counter\n"
                                                   "import re\nresult = {'d': datetime.date(2024, 1, 2).isoformat(), "
                                                   "'c': Counter(words).most_common(1), 'm': re.findall(r'\\d+', t)}"})],
         [{"p": {"words": ["a", "b", "a"], "t": "x1y22"}}]),
    case("python_chain", [("PythonCodeNode", "a", {"code": "result = [r for r in rows if r['age'] > 30]"}),
                          ("PythonCodeNode", "b", {"code": "result = {'names': [r['name'] for r in data], 'count': len(data)}"})],
         [{"a": {"rows": ROWS}}], connections=[("a", "result", "b", "data")]),
    case("python_raises", [("PythonCodeNode", "p", {"code": "result = 1 / x"})], [{"p": {"x": 0}}],
         about="an exception fails the node (the SDK fails the run)"),
    case("python_import_refused", [("PythonCodeNode", "p", {"code": "import subprocess\nresult = 1"})], [{"p": {}}],
         about="a module outside the SDK's allowed list"),
    case("python_not_json", [("PythonCodeNode", "p", {"code": "result = {1, 2}"})], [{"p": {}}],
         about="outputs must be JSON-serializable"),
    case("python_async", [("AsyncPythonCodeNode", "a", {"code": "import asyncio\nawait asyncio.sleep(0)\nresult = {'v': x + 1}"})],
         [{"a": {"x": 1}}]),
    case("python_timeout_key", [("PythonCodeNode", "p", {"code": "result = {'t': timeout, 'n': n}", "timeout": 5})],
         [{"p": {"n": 1}}], about="config keys are variables too"),
]


def sdk_failed(doc):
    """A run where the SDK failed a node: LocalRuntime keeps going with {"failed": true} for it, while
    kailashd fails the run with the node's error (its rule for every node without on_error
    "continue"); test_compat.py's replay expects whole outputs, so these cases live apart, in
    python_failures/, replayed by test_python.py."""
    return any(isinstance(o, dict) and o.get("failed")
               for r in doc["runs"] for o in r["skip_branches"].get("results", {}).values())


def main():
    dirs = [os.path.join(HERE, "cases"), os.path.join(HERE, "python_failures")]
    os.makedirs(dirs[1], exist_ok=True)
    for d in dirs:
        for f in os.listdir(d):
            if f.startswith("python_") and f.endswith(".json"):
                os.remove(os.path.join(d, f))
    srv, port = upstream.start()
    for c in PYTHON:
        doc = gen.record(c, port)
        with open(os.path.join(dirs[sdk_failed(doc)], c["name"] + ".json"), "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
        print("%-40s %d run(s)" % (c["name"], len(doc["runs"])))
    srv.shutdown()


if __name__ == "__main__":
    main()
