"""DataValidationNode through the daemon: the request's inputs checked by template and by connection,
valid and invalid answers, fail_on_invalid as a 400, a SwitchNode routing on `valid`, the schema
pinned against requests, and load refusals (--check and /ready's workflow_errors)."""
import json

import pytest

from conftest import assert_error
from test_cli import check_dir
from wfs import conn, node, transform, wf

USER = {"type": "object", "required": ["user_id", "email"], "additionalProperties": False,
        "properties": {"user_id": {"type": "integer", "minimum": 1},
                       "email": {"type": "string", "format": "email"},
                       "tags": {"type": "array", "items": {"type": "string", "pattern": "^[a-z]+$"},
                                "maxItems": 3},
                       "a/b~c": {"type": "boolean"}}}

GOOD = {"user_id": 7, "email": "ada@example.com", "tags": ["x"]}


@pytest.fixture(scope="module")
def d(module_daemons):
    return module_daemons.make(workflows={
        "templated": wf({"v": node("DataValidationNode", schema=USER, data="{{ inputs.user }}")}),
        "fed": wf({"t": transform("{{ inputs.user }}"),
                   "v": node("DataValidationNode", schema=USER)},
                  [conn("t", "result", "v", "data")]),
        "strict": wf({"v": node("DataValidationNode", schema=USER, data="{{ inputs.user }}",
                                fail_on_invalid=True),
                      "ok": transform({"welcome": "{{ params.data.email }}"})},
                     [conn("v", "data", "ok", "data")]),
        "routed": wf({"v": node("DataValidationNode", schema=USER, data="{{ inputs.user }}"),
                      "s": node("SwitchNode", operator="==", value=True),
                      "accept": transform({"accepted": "{{ nodes.v.data.user_id }}"}),
                      "reject": transform({"rejected": "{{ nodes.v.errors }}"})},
                     [conn("v", "valid", "s", "input_data"),
                      conn("s", "true_output", "accept", "data"),
                      conn("s", "false_output", "reject", "data")]),
    })


def test_valid_by_template(d):
    r = d.execute("templated", inputs={"user": GOOD})
    assert r.status_code == 200, r.text
    assert r.json()["outputs"] == {"v": {"valid": True, "errors": [], "data": GOOD}}


def test_invalid_by_template_lists_pointers(d):
    bad = {"user_id": 0, "tags": ["ok", "No", "x", "y"], "a/b~c": "yes", "extra": 1}
    r = d.execute("templated", inputs={"user": bad})
    assert r.status_code == 200, r.text
    out = r.json()["outputs"]["v"]
    assert out["valid"] is False
    assert out["data"] == bad
    assert sorted((e["path"], e["message"]) for e in out["errors"]) == sorted([
        ("/email", "required property missing"),
        ("/user_id", "must be >= 1"),
        ("/tags", "must have at most 3 items"),
        ("/tags/1", "must match pattern '^[a-z]+$'"),
        ("/a~1b~0c", "expected boolean, got string"),
        ("/extra", "additional property not allowed"),
    ])


def test_by_connection(d):
    r = d.execute("fed", inputs={"user": GOOD})
    assert r.status_code == 200, r.text
    assert r.json()["outputs"]["v"] == {"valid": True, "errors": [], "data": GOOD}
    r = d.execute("fed", inputs={"user": "not an object"})
    assert r.status_code == 200, r.text
    assert r.json()["outputs"]["v"]["errors"] == [{"path": "", "message": "expected object, got string"}]


def test_request_parameters_fill_data(d):
    # parameters[node_id] win over the template (WORKFLOWS.md "Data flow")
    r = d.execute("templated", inputs={"user": GOOD, "v": {"data": {"user_id": 2}}})
    assert r.status_code == 200, r.text
    out = r.json()["outputs"]["v"]
    assert out["valid"] is False and out["data"] == {"user_id": 2}
    assert out["errors"] == [{"path": "/email", "message": "required property missing"}]


def test_fail_on_invalid_is_a_400(d):
    r = d.execute("strict", inputs={"user": GOOD})
    assert r.status_code == 200, r.text
    assert r.json()["outputs"]["ok"] == {"result": {"welcome": "ada@example.com"}}
    r = d.execute("strict", inputs={"user": {"user_id": "7"}})
    assert_error(r, 400, "bad_request")
    text = r.text
    assert "data is invalid (2 violations)" in text, text
    assert "/user_id: expected integer, got string" in text, text


def test_switch_routes_on_valid(d):
    r = d.execute("routed", inputs={"user": GOOD})
    assert r.status_code == 200, r.text
    out = r.json()["outputs"]
    assert out["accept"] == {"result": {"accepted": 7}} and "reject" not in out, out
    r = d.execute("routed", inputs={"user": {"user_id": 7}})
    assert r.status_code == 200, r.text
    out = r.json()["outputs"]
    assert out["reject"] == {"result": {"rejected": [
        {"path": "/email", "message": "required property missing"}]}} and "accept" not in out, out


def test_request_may_not_set_schema_or_flag(d):
    r = d.execute("templated", inputs={"user": GOOD, "v": {"schema": {}}})
    assert_error(r, 400, "bad_request")
    r = d.execute("strict", inputs={"user": {}, "v": {"fail_on_invalid": False}})
    assert_error(r, 400, "bad_request")


def test_huge_invalid_array_capped(d):
    r = d.execute("fed", inputs={"user": {"user_id": 1, "email": "a@b.co", "tags": [1] * 5000}})
    assert r.status_code == 200, r.text
    errs = r.json()["outputs"]["v"]["errors"]
    assert len(errs) == 100
    assert errs[0] == {"path": "/tags", "message": "must have at most 3 items"}
    assert errs[1] == {"path": "/tags/0", "message": "expected string, got integer"}


BROKEN = {
    "typo": wf({"v": node("DataValidationNode", schema={"properties": {"age": {"minimun": 1}}})}),
    "noschema": wf({"v": node("DataValidationNode", data=1)}),
    "costly": wf({"v": node("DataValidationNode", schema={"pattern": "(a{0,1000}){0,1000}"})}),
}


def test_check_lists_schema_refusals(tmp_path):
    r = check_dir(tmp_path, dict(BROKEN, fine=wf({"v": node("DataValidationNode", schema=USER)})))
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "config.schema: /properties/age: unknown keyword 'minimun'" in out, out
    assert "config.schema: required" in out, out
    assert "config.schema: /pattern: regular expression too costly" in out, out
    assert "fine.json" not in out, out


def test_ready_lists_schema_refusals(daemons):
    dm = daemons.make(workflows=dict(BROKEN, fine=wf({"v": node("DataValidationNode", schema=USER)})))
    b = dm.get("/ready").json()
    text = json.dumps(b["workflow_errors"])
    assert len(b["workflow_errors"]) == 3, text
    assert "typo.json" in text and "unknown keyword 'minimun'" in text, text
    assert "noschema.json" in text and "costly.json" in text, text
    r = dm.execute("fine", inputs={"v": {"data": GOOD}})
    assert r.status_code == 200, r.text
    assert r.json()["outputs"]["v"]["valid"] is True
