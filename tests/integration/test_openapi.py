"""GET /openapi.json (API.md "Routes", issue 17): an OpenAPI 3.1 document of the API this build serves,
validated with a real validator (@apidevtools/swagger-parser from npm, installed by `make deps` into
tests/openapi/ from its committed lockfile); every route of the router's table with its methods; a
concrete /run and /execute path per loaded workflow carrying its inputs schema; rebuilt on reload;
security schemes only with authentication on; the one Error schema behind every error response;
hostile workflow text kept valid."""
import hashlib
import json
import os
import re
import shutil
import subprocess

import pytest

from conftest import REPO, assert_error
import wfs
from wfs import transform, wf

OPENAPI_DIR = os.path.join(REPO, "tests", "openapi")
VALIDATE = os.path.join(OPENAPI_DIR, "validate.js")
NODE = shutil.which("node")
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

HOSTILE_DESC = 'say "hi" \\ \' </script> \u00e9\u4e2d\U0001F600 \u2028 tab\t newline\n nul-free \x01 {name} $ref'
HOSTILE_SCHEMA = {
    "type": "object",
    "title": "T\u00edtulo \"quoted\"",
    "description": "the \\ inputs \U0001F680 \u202e",
    "required": ["q\"uote"],
    "properties": {
        "q\"uote": {"type": "string", "description": "a \"quoted\" name", "pattern": "^[a-z\"]+$"},
        "\u00fcn\u00efc\u00f6d\u00e9": {"type": "integer", "minimum": 0, "default": 3},
        "a/b~c": {"enum": ["x", "y\u00ff"]},
        "{name}": {"type": "boolean"},
    },
    "additionalProperties": False,
}

WORKFLOWS = {
    "hello": wfs.example("hello"),
    "nested": wf({"t": transform({"ok": True})}, gateway={"inputs": wfs.NESTED_SCHEMA},
                 description="nested inputs"),
    "plain": wf({"a": transform({}), "b": transform({})}, description=""),
    "we.ird-Name_1": wf({"t": transform({})}, gateway={"inputs": HOSTILE_SCHEMA}, description=HOSTILE_DESC,
                        version="v\"2\u00e9"),
}


def validate(doc):
    """Runs tests/openapi/validate.js on doc; (returncode, output)."""
    if not NODE:
        pytest.skip("node is not installed (make deps installs Debian's nodejs): cannot run swagger-parser")
    assert os.path.isdir(os.path.join(OPENAPI_DIR, "node_modules", "@apidevtools", "swagger-parser")), \
        "tests/openapi/node_modules is missing: run `make deps` (npm ci from the committed lockfile)"
    r = subprocess.run([NODE, VALIDATE, "-"], input=json.dumps(doc), capture_output=True, text=True, timeout=60)
    return r.returncode, r.stdout + r.stderr


def assert_valid(doc):
    rc, out = validate(doc)
    assert rc == 0, "swagger-parser refused the document:\n" + out[:4000]


def fetch(d):
    r = d.get("/openapi.json")
    assert r.status_code == 200, r.text[:500]
    assert r.headers["Content-Type"].startswith("application/json"), r.headers
    return r.json()


def operations(doc):
    """(path, method, operation) of every operation."""
    for path, item in doc["paths"].items():
        for m, op in item.items():
            if m in METHODS:
                yield path, m, op


def resolve(doc, obj):
    """obj, or what its local $ref points at (followed until it is not a $ref)."""
    while isinstance(obj, dict) and "$ref" in obj:
        ref = obj["$ref"]
        assert ref.startswith("#/"), ref
        obj = doc
        for part in ref[2:].split("/"):
            obj = obj[part.replace("~1", "/").replace("~0", "~")]
    return obj


def router_rows():
    """(method, pattern, auth) of each row of src/http/router.c's table."""
    with open(os.path.join(REPO, "src", "http", "router.c")) as f:
        text = f.read()
    table = text[text.index("routes[] = {"):]
    table = table[:table.index("};")]
    rows = re.findall(r'\{"([A-Z]+)",\s*"([^"]+)",\s*(HTTP_AUTH_[A-Z]+)', table)
    assert rows, "no rows found in router.c's table"
    return rows


def template_key(path):
    """A path with each {param} written {} (router.c says {name} where the document says {run_id})."""
    return re.sub(r"\{[^}/]*\}", "{}", path)


@pytest.fixture(scope="module")
def d(module_daemons):
    return module_daemons.make(workflows=WORKFLOWS)


@pytest.fixture(scope="module")
def doc(d):
    return fetch(d)


def test_document_validates_with_swagger_parser(doc):
    assert_valid(doc)


def test_validator_refuses_a_broken_document(doc):
    """The validator really validates: a path parameter that is not declared, a response without a
    description and a dangling $ref are refused."""
    broken = json.loads(json.dumps(doc))
    broken["paths"]["/workflows/{name}"]["get"].pop("parameters")
    rc, out = validate(broken)
    assert rc != 0, out
    broken = json.loads(json.dumps(doc))
    del broken["paths"]["/health"]["get"]["responses"]["200"]["description"]
    rc, out = validate(broken)
    assert rc != 0 and "description" in out, out
    broken = json.loads(json.dumps(doc))
    broken["paths"]["/runs"]["get"]["responses"]["400"] = {"$ref": "#/components/responses/Nope"}
    rc, out = validate(broken)
    assert rc != 0, out


def test_header_and_info(d, doc):
    assert doc["openapi"] == "3.1.0"
    assert doc["info"]["version"] == d.get("/health").json()["version"]
    assert doc["info"]["title"] == "kailashd"
    ids = [op["operationId"] for _, _, op in operations(doc)]
    assert len(ids) == len(set(ids)), "operationIds must be unique"


def test_every_router_route_is_documented_with_its_methods(doc):
    documented = {}
    for path, m, _ in operations(doc):
        documented.setdefault(template_key(path), set()).add(m.upper())
    for method, pattern, _ in router_rows():
        key = template_key(pattern)
        assert key in documented, "router.c serves %s %s; the document has no such path" % (method, pattern)
        assert method in documented[key], "%s %s is not documented (have %s)" % (method, pattern,
                                                                                documented[key])
    # and nothing the router does not serve (concrete workflow paths aside)
    served = {(template_key(p), m) for m, p, _ in router_rows()}
    for path, m, _ in operations(doc):
        if path.startswith("/workflows/") and "{" not in path:
            continue
        assert (template_key(path), m.upper()) in served, "%s %s is documented but not served" % (m, path)


def test_route_parameters_and_bodies(doc):
    def params(path, m):
        return {resolve(doc, p)["name"]: resolve(doc, p) for p in doc["paths"][path][m].get("parameters", [])}

    run = params("/workflows/{name}/run", "post")
    assert run["name"]["in"] == "path" and run["name"]["required"] is True
    assert run["include"]["in"] == "query" and run["mode"]["in"] == "query"
    runs = params("/runs", "get")
    assert set(runs) == {"workflow", "status", "limit", "cursor"}
    assert set(runs["status"]["schema"]["enum"]) == {"queued", "running", "completed", "failed", "timeout",
                                                     "cancelled"}
    assert params("/runs/{run_id}", "get")["run_id"]["in"] == "path"
    assert params("/cache/{name}", "delete")["name"]["in"] == "path"
    body = resolve(doc, doc["paths"]["/workflows/{name}/run"]["post"]["requestBody"]["content"]
                   ["application/json"]["schema"])
    assert {"inputs", "parameters"} <= set(body["properties"])
    body = resolve(doc, doc["paths"]["/workflows/{name}/execute"]["post"]["requestBody"]["content"]
                   ["application/json"]["schema"])
    assert {"inputs", "parameters", "mode"} <= set(body["properties"])
    for path, m, op in operations(doc):
        ok = op["responses"].get("200") or op["responses"]["202"]  # a cancel answers 202 only
        assert ok["description"] and ok["content"], (path, m)


def test_each_workflow_has_concrete_paths_with_its_input_schema(d, doc):
    listed = d.get("/workflows").json()["workflows"]
    assert sorted(w["name"] for w in listed) == sorted(WORKFLOWS)
    for w in listed:
        for verb in ("run", "execute"):
            path = "/workflows/%s/%s" % (w["name"], verb)
            assert path in doc["paths"], path
            op = doc["paths"][path]["post"]
            assert "{" not in path and not any(resolve(doc, p)["in"] == "path" for p in op.get("parameters", []))
            schema = op["requestBody"]["content"]["application/json"]["schema"]
            assert schema["properties"]["inputs"] == w["inputs"], path
            nodes = sorted(WORKFLOWS[w["name"]]["nodes"])
            assert sorted(schema["properties"]["parameters"]["propertyNames"]["enum"]) == nodes
            assert op.get("description", "") == w["description"]
    # the inputs schema exactly as the file wrote it
    assert doc["paths"]["/workflows/nested/run"]["post"]["requestBody"]["content"]["application/json"][
        "schema"]["properties"]["inputs"] == wfs.NESTED_SCHEMA
    assert doc["paths"]["/workflows/we.ird-Name_1/execute"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]["properties"]["inputs"] == HOSTILE_SCHEMA


def test_error_responses_reference_the_error_schema(doc):
    err = doc["components"]["schemas"]["Error"]
    assert err["required"] == ["error"]
    assert set(err["properties"]["error"]["required"]) == {"code", "message", "request_id", "details"}
    seen = set()
    for path, m, op in operations(doc):
        for status, resp in op["responses"].items():
            if int(status) < 400:
                continue
            seen.add(int(status))
            if path == "/ready" and status == "503":  # degraded: the Ready shape, as API.md says
                assert resolve(doc, resp)["content"]["application/json"]["schema"] == \
                    {"$ref": "#/components/schemas/Ready"}
                continue
            schema = resolve(doc, resp)["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/Error"}, (path, m, status)
    # with auth off: no 401, and the run routes carry the whole list
    assert 401 not in seen
    run = set(doc["paths"]["/workflows/{name}/run"]["post"]["responses"])
    assert {"400", "404", "413", "415", "429", "500", "502", "503", "504", "508"} <= run
    assert "403" in doc["paths"]["/admin/reload"]["post"]["responses"]  # loopback only with auth off
    assert resolve(doc, doc["components"]["responses"]["MethodNotAllowed"])["content"]["application/json"][
        "schema"] == {"$ref": "#/components/schemas/Error"}
    assert set(doc["paths"]["/health"]["get"]["responses"]) <= {"200", "400", "500", "508"}


def test_documented_errors_match_answers(d, doc):
    """A few answers checked against what the document says they are."""
    assert_error(d.run("nope"), 404, "not_found")
    assert "404" in doc["paths"]["/workflows/{name}/run"]["post"]["responses"]
    assert_error(d.post("/workflows/hello/run", data=b"x", headers={"Content-Type": "text/plain"}), 415,
                 "unsupported_media_type")
    r = d.post("/openapi.json")
    assert_error(r, 405, "method_not_allowed")
    assert r.headers["Allow"] == "GET"


def test_auth_off_has_no_security(doc):
    assert "securitySchemes" not in doc["components"]
    assert "security" not in doc
    assert not [p for p, _, op in operations(doc) if "security" in op]


def test_hostile_names_and_descriptions_stay_valid(d, doc):
    r = d.get("/openapi.json")
    json.loads(r.content.decode("utf-8"))  # strict UTF-8 JSON
    op = doc["paths"]["/workflows/we.ird-Name_1/run"]["post"]
    assert op["description"] == HOSTILE_DESC
    assert '"2\u00e9' in op["summary"]
    assert_valid(doc)


def test_not_rate_limited_and_no_credentials_needed(daemons):
    dm = daemons.make(config={"rate_limiting": {"anonymous": 1, "authenticated": 1},
                              "enable_auth": True,
                              "auth": {"api_keys": [{"id": "ci", "sha256": "0" * 64}]}},
                      workflows={"hello": WORKFLOWS["hello"]})
    for _ in range(5):
        r = dm.get("/openapi.json")
        assert r.status_code == 200
        assert "RateLimit" not in r.headers and "X-RateLimit-Limit" not in r.headers


def api_key_entry(key, roles=("admin",)):
    return {"id": "k", "sha256": hashlib.sha256(key.encode()).hexdigest(), "roles": list(roles)}


@pytest.mark.parametrize("kind", ["keys", "jwt", "both"])
def test_auth_on_security_schemes(daemons, kind):
    auth = {}
    if kind in ("keys", "both"):
        auth["api_keys"] = [api_key_entry("secret-key-0123456789")]
    if kind in ("jwt", "both"):
        auth["jwt"] = {"hs256_secret_env": "KAILASH_TEST_HS"}
    workflows = {"hello": WORKFLOWS["hello"],
                 "open": wf({"t": transform({})}, gateway={"access": {"public": True}}),
                 "guarded": wf({"t": transform({})}, gateway={"access": {"roles": ["orders:read"]}})}
    dm = daemons.make(config={"enable_auth": True, "auth": auth}, workflows=workflows,
                      env={"KAILASH_TEST_HS": "x" * 40})
    doc = fetch(dm)
    assert_valid(doc)
    want = {"keys": {"ApiKey"}, "jwt": {"BearerAuth"}, "both": {"ApiKey", "BearerAuth"}}[kind]
    schemes = doc["components"]["securitySchemes"]
    assert set(schemes) == want
    if "ApiKey" in schemes:
        assert schemes["ApiKey"] == {**schemes["ApiKey"], "type": "apiKey", "in": "header", "name": "X-API-Key"}
    if "BearerAuth" in schemes:
        assert schemes["BearerAuth"]["type"] == "http" and schemes["BearerAuth"]["scheme"] == "bearer"
        assert schemes["BearerAuth"]["bearerFormat"] == "JWT"
    need = [{n: []} for n in sorted(want)]
    for method, pattern, auth_col in router_rows():
        for path, m, op in operations(doc):
            if template_key(path) != template_key(pattern) or m.upper() != method:
                continue
            if auth_col in ("HTTP_AUTH_USER", "HTTP_AUTH_ADMIN"):
                assert sorted(op["security"], key=json.dumps) == need, (path, m)
                assert "401" in op["responses"], (path, m)
                assert "429" in op["responses"], (path, m)
            elif auth_col == "HTTP_AUTH_NONE":
                assert "security" not in op and "401" not in op["responses"], (path, m)
    # concrete paths: a public workflow's security is optional; access roles may refuse (403)
    open_run = doc["paths"]["/workflows/open/run"]["post"]
    assert {} in open_run["security"]
    assert {} not in doc["paths"]["/workflows/hello/run"]["post"]["security"]
    assert "403" in doc["paths"]["/workflows/guarded/run"]["post"]["responses"]
    assert "403" in doc["paths"]["/workflows/{name}/run"]["post"]["responses"]
    assert "403" not in doc["paths"]["/workflows/hello/run"]["post"]["responses"]  # no access block


def test_reload_shows_a_new_workflow_and_drops_a_removed_one(daemons):
    dm = daemons.make(workflows={"hello": WORKFLOWS["hello"], "gone": wf({"t": transform({})})})
    before = fetch(dm)
    assert "/workflows/gone/run" in before["paths"] and "/workflows/added/run" not in before["paths"]
    assert fetch(dm) == before  # cached: the same document
    schema = {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer", "maximum": 9}}}
    dm.write_workflow("added", wf({"t": transform({})}, gateway={"inputs": schema}, description="new one"))
    dm.remove_workflow("gone")
    assert dm.reload().status_code == 200
    after = fetch(dm)
    assert "/workflows/gone/run" not in after["paths"]
    op = after["paths"]["/workflows/added/execute"]["post"]
    assert op["requestBody"]["content"]["application/json"]["schema"]["properties"]["inputs"] == schema
    assert op["description"] == "new one"
    # an edited workflow (same name) shows its new schema too
    schema["properties"]["n"]["maximum"] = 99
    dm.write_workflow("added", wf({"t": transform({})}, gateway={"inputs": schema}, description="new one"))
    assert dm.reload().status_code == 200
    again = fetch(dm)
    assert again["paths"]["/workflows/added/run"]["post"]["requestBody"]["content"]["application/json"][
        "schema"]["properties"]["inputs"]["properties"]["n"]["maximum"] == 99
    assert_valid(again)


def test_reload_turning_auth_on_adds_security(daemons):
    dm = daemons.make(workflows={"hello": WORKFLOWS["hello"]})
    assert "securitySchemes" not in fetch(dm)["components"]
    cfg = dict(dm.config, enable_auth=True, auth={"api_keys": [api_key_entry("k-0123456789abcdef")]})
    dm.write_config(cfg)
    r = dm.post("/admin/reload", headers={"X-API-Key": "k-0123456789abcdef"})
    assert r.status_code == 200, r.text
    doc = fetch(dm)
    assert set(doc["components"]["securitySchemes"]) == {"ApiKey"}
    assert doc["paths"]["/workflows/hello/run"]["post"]["security"] == [{"ApiKey": []}]


def test_lockfile_downloads_only_from_the_npm_registry():
    with open(os.path.join(OPENAPI_DIR, "package-lock.json")) as f:
        lock = json.load(f)
    assert lock["lockfileVersion"] >= 2
    pkgs = {k: v for k, v in lock["packages"].items() if k}
    assert "node_modules/@apidevtools/swagger-parser" in pkgs
    for name, p in pkgs.items():
        assert p.get("integrity", "").startswith("sha512-"), name
        resolved = p.get("resolved")
        assert resolved is None or resolved.startswith("https://registry.npmjs.org/"), (name, resolved)


def test_metrics_auth_puts_metrics_behind_a_role(daemons):
    key = "m-0123456789abcdef"
    dm = daemons.make(config={"metrics_auth": True, "enable_auth": True,
                              "auth": {"api_keys": [api_key_entry(key, roles=("metrics",))]}})
    doc = fetch(dm)
    assert_valid(doc)
    op = doc["paths"]["/metrics"]["get"]
    assert op["security"] == [{"ApiKey": []}]
    assert {"401", "403"} <= set(op["responses"]) and "429" not in op["responses"]
    assert "text/plain" in op["responses"]["200"]["content"]
    assert dm.get("/metrics").status_code == 401
    assert dm.get("/metrics", headers={"X-API-Key": key}).status_code == 200


def body_schema(doc, op):
    return resolve(doc, op["requestBody"]["content"]["application/json"]["schema"])


def answer(doc, op, status, ctype="application/json"):
    return resolve(doc, resolve(doc, op["responses"][status])["content"][ctype]["schema"])


def test_async_runs_are_described(doc):
    """API.md "Running a workflow": ?mode=async or Prefer: respond-async answers 202 with Location and
    {run_id, status: queued, links}; /execute's mode async answers {execution_id, status: pending},
    stream an SSE stream; callback_url is a URI."""
    for path in ("/workflows/{name}/run", "/workflows/hello/run"):
        op = doc["paths"][path]["post"]
        params = {resolve(doc, p)["name"]: resolve(doc, p) for p in op.get("parameters", [])}
        assert set(params["mode"]["schema"]["enum"]) == {"sync", "async"}, path
        assert params["Prefer"]["in"] == "header", path
        assert body_schema(doc, op)["properties"]["callback_url"]["format"] == "uri", path
        acc = answer(doc, op, "202")
        assert acc["properties"]["status"]["const"] == "queued"
        assert set(acc["required"]) == {"run_id", "status", "links"}
        assert set(acc["properties"]["links"]["required"]) == {"self", "events"}
        assert {"Location", "Preference-Applied"} <= set(op["responses"]["202"]["headers"]), path
        assert {"200", "503"} <= set(op["responses"]), path
    for path in ("/workflows/{name}/execute", "/workflows/hello/execute"):
        op = doc["paths"][path]["post"]
        assert set(body_schema(doc, op)["properties"]["mode"]["enum"]) == {"sync", "async", "stream"}, path
        acc = answer(doc, op, "202")
        assert acc["properties"]["status"]["const"] == "pending" and "execution_id" in acc["required"]
        assert set(op["responses"]["200"]["content"]) == {"application/json", "text/event-stream"}, path
    rec = doc["components"]["schemas"]["RunRecord"]
    assert {"queued", "running"} <= set(rec["properties"]["status"]["enum"])
    for k in ("started_at", "finished_at", "duration_ms"):
        assert "null" in rec["properties"][k]["type"], k


def test_cancel_and_events_are_described(doc):
    op = doc["paths"]["/runs/{run_id}"]["delete"]
    assert op["operationId"] == "cancelRun"
    assert "200" not in op["responses"]
    assert {"202", "404", "409", "503"} <= set(op["responses"])
    acc = answer(doc, op, "202")
    assert acc["properties"]["cancel"]["const"] == "accepted"
    assert "conflict" in resolve(doc, op["responses"]["409"])["description"]
    assert resolve(doc, doc["components"]["responses"]["Conflict"])["content"]["application/json"]["schema"] == \
        {"$ref": "#/components/schemas/Error"}
    served = {(template_key(p), m) for m, p, _ in router_rows()}
    assert ("/runs/{}/events", "GET") in served
    ev = doc["paths"]["/runs/{run_id}/events"]["get"]
    assert ev["operationId"] == "getRunEvents"
    assert set(ev["responses"]["200"]["content"]) == {"text/event-stream"}
    assert {"404", "503"} <= set(ev["responses"])


def test_answers_match_the_async_descriptions(d, doc):
    """What the daemon answers has the documented shapes (the journal store is on by default)."""
    r = d.run("hello", {"name": "Ada"}, params={"mode": "async"})
    assert r.status_code == 202, r.text
    body = r.json()
    acc = answer(doc, doc["paths"]["/workflows/hello/run"]["post"], "202")
    assert set(acc["required"]) <= set(body) and body["status"] == "queued"
    assert r.headers["Location"] == body["links"]["self"] == "/runs/" + body["run_id"]
    r = d.run("hello", {"name": "Ada"}, headers={"Prefer": "respond-async"})
    assert r.status_code == 202 and r.headers.get("Preference-Applied") == "respond-async", r.headers
    r = d.execute("hello", body={"inputs": {"name": "Ada"}, "mode": "async"})
    assert r.status_code == 202, r.text
    assert set(r.json()) == {"execution_id", "status"} and r.json()["status"] == "pending"
    assert_error(d.request("DELETE", "/runs/00000000-0000-7000-8000-000000000000"), 404, "not_found")
