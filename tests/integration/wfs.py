"""Builders for the workflow files the tests load (WORKFLOWS.md shapes), and the repo's examples."""
import copy
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
EXAMPLES_DIR = os.path.join(REPO, "workflows")
EXAMPLE_DATA_DIR = os.path.join(REPO, "examples", "data")
FIXTURES_DIR = os.path.join(HERE, "workflows")


def example(name):
    """The repo's workflows/<name>.json, parsed."""
    with open(os.path.join(EXAMPLES_DIR, name + ".json")) as f:
        return json.load(f)


def example_data():
    """{file name: text} of examples/data/*."""
    out = {}
    for n in sorted(os.listdir(EXAMPLE_DATA_DIR)):
        with open(os.path.join(EXAMPLE_DATA_DIR, n)) as f:
            out[n] = f.read()
    return out


def fixture(name):
    """tests/integration/workflows/<name>.json as text (some are deliberately broken)."""
    with open(os.path.join(FIXTURES_DIR, name + ".json")) as f:
        return f.read()


def node(node_type, **config):
    return {"node_type": node_type, "config": config}


def transform(template, **extra):
    return node("TransformNode", template=template, **extra)


def http(url, **config):
    config.setdefault("method", "GET")
    config.setdefault("response_format", "json")
    return node("HTTPRequestNode", url=url, **config)


def conn(src, out, dst, inp):
    return {"source_node": src, "source_output": out, "target_node": dst, "target_input": inp}


def wf(nodes, connections=(), gateway=None, name=None, version="1.0.0", description="test workflow"):
    d = {"version": version, "description": description, "nodes": copy.deepcopy(nodes),
         "connections": list(connections)}
    if name:
        d["name"] = name
    if gateway is not None:
        d["gateway"] = copy.deepcopy(gateway)
    return d


def single(n, gateway=None, node_id="call", **kw):
    """A one-node workflow."""
    return wf({node_id: n}, gateway=gateway, **kw)


NESTED_SCHEMA = {
    "type": "object",
    "properties": {
        "user": {"type": "object", "required": ["id"],
                 "properties": {"id": {"type": "integer", "minimum": 1},
                                "email": {"type": "string", "format": "email"}}},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
        "a/b": {"type": "string"},
        "mode": {"enum": ["fast", "slow"]},
    },
}
