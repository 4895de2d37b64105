#!/usr/bin/env python3
"""Records workflows/sdk_workflow_node.json for test_workflow_node.py: inner and outer workflows built
with the Kailash SDK's WorkflowBuilder and exported with to_json() (the outer ones hold WorkflowNodes
with the SDK's workflow_path, input_mapping and output_mapping), and the SDK's LocalRuntime results
for each case in both conditional_execution modes. The test replays them through kailashd without the
SDK.

    PYTHONPATH=/path/to/kailash-py/src python3 tests/integration/sdk_workflow_node_gen.py

The inner workflows are written to INNER_DIR for the SDK to read; the outer exports keep that
directory in workflow_path, as an export made on another machine would."""
import json
import logging
import os
import sys
import warnings

sys.path.append("/usr/lib/python3/dist-packages")
warnings.simplefilter("ignore")
logging.disable(logging.CRITICAL)

import kailash  # noqa: E402
import kailash.nodes.data.readers  # noqa: E402,F401
import kailash.nodes.logic.workflow  # noqa: E402,F401
from kailash.runtime.local import LocalRuntime  # noqa: E402
from kailash.workflow.builder import WorkflowBuilder  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "workflows", "sdk_workflow_node.json")
INNER_DIR = "/tmp/kailash-sdk-workflow-node"


def build(name, nodes, conns=()):
    b = WorkflowBuilder()
    for ntype, nid, config in nodes:
        b.add_node(ntype, nid, config)
    for src, out, dst, inp in conns:
        b.add_connection(src, out, dst, inp)
    return b.build(name=name)


INNER = {
    # a switch on n > 1 whose true branch feeds a merge
    "inner": ([("SwitchNode", "sw", {"condition_field": "n", "operator": ">", "value": 1}),
               ("MergeNode", "m", {"merge_type": "concat"})],
              [("sw", "true_output", "m", "data1")]),
    # node ids that collide with WorkflowNode's own keys once split at '_'
    "inner_ids": ([("MergeNode", "workflow", {"merge_type": "concat"}),
                   ("MergeNode", "input", {"merge_type": "concat"})], []),
}


def sub(inner, **config):
    config["workflow_path"] = os.path.join(INNER_DIR, inner + ".json")
    return ("WorkflowNode", "sub", config)


OUTER = {
    "outer": ([sub("inner")], []),
    "mapped": ([sub("inner", input_mapping={"x": {"node": "sw", "parameter": "input_data"}},
                    output_mapping={"out": {"node": "m", "output": "merged_data"}})], []),
    "mapped_default": ([sub("inner", input_mapping={"x": {"node": "sw", "parameter": "input_data",
                                                          "default": {"n": 9}}})], []),
    "mapped_optional": ([sub("inner", input_mapping={"x": {"node": "sw", "parameter": "input_data",
                                                           "required": False}})], []),
    "mapped_partial_out": ([sub("inner", output_mapping={"o": {"node": "m", "output": "nope"},
                                                         "p": {"node": "zz"},
                                                         "merged_data": {"node": "m"}})], []),
    "chained": ([("SwitchNode", "pre", {"condition_field": "n", "operator": ">", "value": 0}),
                 sub("inner"), ("MergeNode", "after", {"merge_type": "concat"})],
                [("pre", "true_output", "sub", "sw_input_data"), ("sub", "m_merged_data", "after", "data1")]),
    "own_keys": ([sub("inner_ids", input_mapping={})], []),
}

# (outer workflow, parameters, what the case shows)
CASES = [
    ("outer", {"sub": {"inputs": {"sw": {"input_data": {"n": 2}}}}}, "inputs scoped by inner node id"),
    ("outer", {"sub": {"sw_input_data": {"n": 3}}}, "<node>_<param> auto-mapped"),
    ("outer", {"sub": {"sw_input_data": {"n": 3}, "inputs": {"sw": {"input_data": {"n": 4}}}}},
     "inputs wins over the auto-mapped input"),
    ("outer", {"sub": {"sw_input_data": {"n": 3}, "m_data2": [7], "sw_bogus": 1, "nobody_x": 1}},
     "only entry nodes' declared params are auto-mapped"),
    ("outer", {"sub": {"sw_input_data": {"n": 3}, "inputs": {"m": {"data2": [7]}, "zz": {"a": 1}}}},
     "inputs reaches any inner node; unknown ids are dropped"),
    ("outer", {"sub": {"sw_input_data": {"n": 0}}}, "an untaken inner branch"),
    ("outer", {"sub": {"inputs": [1]}}, "inputs that is not an object"),
    ("outer", {"sub": {"inputs": {"sw": 5}}}, "inputs for a node that is not an object"),
    ("mapped", {"sub": {"x": {"n": 5}}}, "input_mapping and output_mapping"),
    ("mapped", {"sub": {"x": {"n": 2}, "sw_input_data": {"n": 5}}}, "with input_mapping nothing is auto-mapped"),
    ("mapped", {"sub": {}}, "a mapped input is required"),
    ("mapped_default", {"sub": {}}, "a mapped input's default"),
    ("mapped_optional", {"sub": {"inputs": {"sw": {"input_data": {"n": 2}}}}}, "required: false"),
    ("mapped_partial_out", {"sub": {"sw_input_data": {"n": 2}}}, "output_mapping of missing ports"),
    ("chained", {"pre": {"input_data": {"n": 5}}}, "a connection into and out of the WorkflowNode"),
    ("own_keys", {"sub": {"workflow_data1": [1]}}, "inner ids that look like the node's own keys"),
]


def run(workflow, mode, params):
    try:
        with LocalRuntime(conditional_execution=mode) as rt:
            res, _ = rt.execute(workflow, parameters=json.loads(json.dumps(params)))
        return {"results": json.loads(json.dumps(res, default=str))}
    except Exception as e:  # the SDK's failure is the expectation
        return {"error": "%s: %s" % (type(e).__name__, str(e)[:300])}


def main():
    os.makedirs(INNER_DIR, exist_ok=True)
    doc = {"sdk": kailash.__version__, "inner": {}, "outer": {}, "cases": []}
    for name, (nodes, conns) in INNER.items():
        w = build(name, nodes, conns)
        with open(os.path.join(INNER_DIR, name + ".json"), "w") as f:
            f.write(w.to_json())
        doc["inner"][name] = json.loads(w.to_json())
    built = {}
    for name, (nodes, conns) in OUTER.items():
        built[name] = build(name, nodes, conns)
        doc["outer"][name] = json.loads(built[name].to_json())
    for name, params, about in CASES:
        doc["cases"].append({"workflow": name, "parameters": params, "about": about,
                             "route_data": run(built[name], "route_data", params),
                             "skip_branches": run(built[name], "skip_branches", params)})
    with open(OUT, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print("kailash %s: %d cases -> %s" % (kailash.__version__, len(CASES), OUT))


if __name__ == "__main__":
    main()
