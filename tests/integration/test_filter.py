"""FilterNode through the daemon: the SDK's keys and filtered_data port, fed by request inputs, by a
connection and by a template; load refusals (--check) and run refusals with their status codes.

Expectations marked SDK were recorded with the Kailash SDK 2.63's FilterNode and LocalRuntime."""
import pytest

from conftest import assert_error
from test_cli import check_dir
from wfs import conn, node, transform, wf

ROWS = [{"name": "ada", "age": 36, "tags": ["x"]}, {"name": "bob", "age": "25"},
        {"name": "cy", "age": None}, {"name": "di"}, "loose", 41]


@pytest.fixture(scope="module")
def d(module_daemons):
    return module_daemons.make(workflows={
        "older": wf({"f": node("FilterNode", field="age", operator=">", value=30)}),
        "plain": wf({"f": node("FilterNode")}),
        "fed": wf({"t": transform([1, "2", 3.5, "x", None, True]),
                   "f": node("FilterNode", operator=">=", value="2")},
                  [conn("t", "result", "f", "data")]),
        "templated": wf({"f": node("FilterNode", field="name", operator="contains", value="{{ inputs.q }}")}),
        # what the SDK's to_json() writes when value is left to the request: "value": null
        "export": wf({"f": node("FilterNode", field="age", operator=">", value=None, data=None)}),
        "chain": wf({"f": node("FilterNode", field="age", operator="<", value=40),
                     "g": node("FilterNode", operator="contains", value="'bob'")},
                    [conn("f", "filtered_data", "g", "data")]),
    })


def test_rows_as_the_sdk(d):
    r = d.execute("older", inputs={"f": {"data": ROWS}})
    assert r.status_code == 200, r.text
    # SDK: "25" is read as 25.0; null and a missing age fail '>'; a non-object item is tested itself
    assert r.json()["outputs"] == {"f": {"filtered_data": [{"name": "ada", "age": 36, "tags": ["x"]}, 41]}}
    r = d.execute("older", inputs={"f": {"data": ROWS, "operator": "<="}})
    assert r.status_code == 200, r.text
    assert r.json()["outputs"]["f"]["filtered_data"] == [{"name": "bob", "age": "25"}]


def test_request_sets_operator_and_value(d):
    # SDK: operator and value are ordinary parameters; == is the default, value defaults to None
    r = d.execute("plain", inputs={"f": {"data": [1, None, 0, False]}})
    assert r.json()["outputs"]["f"]["filtered_data"] == [None]
    r = d.execute("plain", inputs={"f": {"data": [1, 1.0, True, "1", [1]], "value": 1}})
    assert r.json()["outputs"]["f"]["filtered_data"] == [1, 1.0, True]
    r = d.execute("plain", inputs={"f": {"data": [[1, 3], [1], [0, "x"], [1, "x"]], "operator": ">",
                                         "value": [1, 2]}})
    assert r.json()["outputs"]["f"]["filtered_data"] == [[1, 3]]


def test_connection_and_float_strings(d):
    r = d.execute("fed")
    assert r.status_code == 200, r.text
    # SDK: "2" on the value side is 2.0 for every item; "x" > "2"? the item "x" is no float, so the
    # SDK compares the strings "x" >= "2" (True); None fails; True is 1
    assert r.json()["outputs"]["f"] == {"filtered_data": ["2", 3.5, "x"]}


def test_template_value_and_contains(d):
    r = d.execute("templated", inputs={"q": "d", "f": {"data": ROWS[:4]}})
    assert r.status_code == 200, r.text
    assert r.json()["outputs"]["f"]["filtered_data"] == [{"name": "ada", "age": 36, "tags": ["x"]},
                                                         {"name": "di"}]


def test_chained_filters_contain_searches_str(d):
    r = d.execute("chain", inputs={"f": {"data": ROWS}})
    assert r.status_code == 200, r.text
    out = r.json()["outputs"]
    assert out["f"]["filtered_data"] == [{"name": "ada", "age": 36, "tags": ["x"]}, {"name": "bob", "age": "25"}]
    assert out["g"]["filtered_data"] == [{"name": "bob", "age": "25"}]  # str() of the dict holds 'bob'


def test_value_left_to_the_request(d):
    # SDK: the request's value fills the export's null (LocalRuntime parameters {"f": {"value": 30}})
    r = d.execute("export", inputs={"f": {"data": ROWS, "value": 30}})
    assert r.status_code == 200, r.text
    assert r.json()["outputs"]["f"]["filtered_data"] == [{"name": "ada", "age": 36, "tags": ["x"]}, 41]
    r = d.execute("export", inputs={"f": {"data": ROWS, "value": "\u0663\u0665", "operator": "<"}})
    assert r.status_code == 200, r.text
    # SDK: float("٣٥") is 35.0; "loose" is no float, so the two strings compare ('l' < '٣')
    assert r.json()["outputs"]["f"]["filtered_data"] == [{"name": "bob", "age": "25"}, "loose"]
    # the SDK answers [] when no value comes; kailashd says what is missing, as for data
    for inputs in ({"f": {"data": ROWS}}, {"f": {"data": ROWS, "value": None}}):
        r = d.execute("export", inputs=inputs)
        assert_error(r, 400, "bad_request")
        assert "input 'value' is missing (operator '>'" in r.json()["error"]["message"]


def test_run_refusals(d):
    r = d.execute("older")
    assert_error(r, 400, "bad_request")
    assert "input 'data' is missing" in r.json()["error"]["message"]
    for bad in ("abc", {"a": 1}, 5):
        r = d.execute("older", inputs={"f": {"data": bad}})
        assert_error(r, 500, "internal")
        assert "data: expected an array" in r.json()["error"]["message"]
    r = d.execute("older", inputs={"f": {"data": [1], "operator": "~"}})
    assert_error(r, 500, "internal")
    assert "operator" in r.json()["error"]["message"]
    r = d.execute("templated", inputs={"q": 5, "f": {"data": [1]}})
    assert r.status_code in (400, 500), r.text
    # the daemon still answers afterwards
    assert d.execute("older", inputs={"f": {"data": [31]}}).json()["outputs"]["f"]["filtered_data"] == [31]


@pytest.mark.parametrize("config, fragment", [
    ({"operator": "in"}, "config.operator"),
    ({"operator": 5}, "config.operator"),
    ({"field": 5}, "config.field"),
    ({"data": "abc"}, "config.data"),
    ({"operator": "contains", "value": 3}, "config.value"),
    ({"operator": ">", "value": {"a": 1}}, "config.value"),
    ({"operator": "contains", "value": ["x"]}, "config.value"),
    ({"colour": "red"}, "config.colour"),
])
def test_load_refusals(tmp_path, config, fragment):
    r = check_dir(tmp_path, {"bad": wf({"f": node("FilterNode", **config)})})
    assert r.returncode != 0
    assert fragment in r.stdout + r.stderr
    assert "node 'f'" in r.stdout + r.stderr


@pytest.mark.parametrize("config", [
    {"operator": "=="},  # what the SDK's to_json() writes for FilterNode with nothing set
    {"operator": ">", "value": None},  # ... with value=None: the request or a connection fills it
    {"field": None, "data": None, "operator": "contains", "value": None},
    {"field": "age", "operator": "<="},
])
def test_sdk_exports_load(tmp_path, config):
    r = check_dir(tmp_path, {"ok": wf({"f": node("FilterNode", **config)})})
    assert r.returncode == 0, r.stdout + r.stderr
