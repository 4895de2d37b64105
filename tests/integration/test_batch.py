"""BatchReaderNode and BatchProcessorNode through the daemon: files inside data_dir (JSON list, JSON
lines, CSV), paths that leave data_dir refused (../, absolute, a symlink out) at load or as a 400 at
run, batch_size 0, negative or huge refused at load, and data_items of every JSON type."""
import os

import pytest

from conftest import assert_error, run_cli
from wfs import node, wf

DATA = {"items.json": "[1, 2, 3, 4, 5]", "rows.csv": "id,name\n1,ann\n2,bob\n3,cy\n",
        "lines.jsonl": "{\"a\": 1}\n{\"a\": 2}\n"}


@pytest.fixture(scope="module")
def d(module_daemons):
    workflows = {
        "json": wf({"b": node("BatchReaderNode", file_path="items.json", batch_size=2)}),
        "csv": wf({"b": node("BatchReaderNode", file_path="rows.csv", batch_size=2)}),
        "lines": wf({"b": node("BatchReaderNode", file_path="lines.jsonl", batch_size=5)}),
        "items": wf({"b": node("BatchProcessorNode", data_items="{{inputs.items}}", batch_size=2)}),
        "path": wf({"b": node("BatchReaderNode", file_path="{{inputs.p}}")}),
    }
    dm = module_daemons.make(workflows=workflows, data=DATA)
    return dm


def test_files_inside_data_dir(d):
    r = d.execute("json")
    assert r.status_code == 200, r.text
    assert r.json()["outputs"]["b"]["batches"] == [[1, 2], [3, 4], [5]]
    assert r.json()["outputs"]["b"]["count"] == 5
    r = d.execute("csv")
    assert r.json()["outputs"]["b"]["batches"] == [[{"id": "1", "name": "ann"}, {"id": "2", "name": "bob"}],
                                                   [{"id": "3", "name": "cy"}]]
    r = d.execute("lines")
    assert r.json()["outputs"]["b"]["batches"] == [[{"a": 1}, {"a": 2}]]


def test_data_items_of_various_types(d):
    items = [1, "two", None, True, 2.5, {"k": [1]}, [3]]
    r = d.execute("items", inputs={"items": items})
    assert r.status_code == 200, r.text
    out = r.json()["outputs"]["b"]
    assert out["batches"] == [items[0:2], items[2:4], items[4:6], items[6:]]
    assert out["results"] == items and out["success"] is True and out["total_batches"] == 4


def test_paths_out_of_data_dir_are_refused_at_run(d):
    os.symlink("/etc/hostname", os.path.join(d.data_dir, "link.json"))
    for p in ("../x.json", "/etc/passwd", "link.json"):
        r = d.execute("path", inputs={"p": p})
        assert r.status_code == 400, (p, r.text)


def test_bad_config_is_refused_at_load(daemons):
    bad = {
        "zero": wf({"b": node("BatchReaderNode", data_items=[1], batch_size=0)}),
        "negative": wf({"b": node("BatchProcessorNode", data_items=[1], batch_size=-1)}),
        "huge": wf({"b": node("BatchReaderNode", data_items=[1], batch_size=10 ** 9)}),
        "escape": wf({"b": node("BatchReaderNode", file_path="../secret.json")}),
        "absolute": wf({"b": node("BatchReaderNode", file_path="/etc/passwd")}),
    }
    dm = daemons.make(workflows=bad, start=False)
    r = run_cli(["--check", "--config", dm.config_path], cwd=dm.root)
    assert r.returncode != 0
    text = r.stdout + r.stderr
    for name in bad:
        assert name in text, text
    assert "batch_size" in text and "file_path" in text
