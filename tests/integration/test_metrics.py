"""GET /metrics (issue 17): the Prometheus text exposition 0.0.4 read with the real parser of Debian's
python3-prometheus-client; every family of the issue with its type; counters that rise as requests
are served (runs completed and failed, a 404, a cache hit, a rate-limited request, an upstream call);
/runs/<id> never makes a label per id; metrics_auth (401, 403, the metrics role, admin);
enable_monitoring false (404, nothing counted)."""
import hashlib
import time
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import assert_error, closed_port
from wfs import http, transform, wf

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# (family name as the parser gives it, type): the parser drops a counter's _total.
FAMILIES = [
    ("kailash_http_requests", "counter"),
    ("kailash_http_request_duration_seconds", "histogram"),
    ("kailash_workflow_runs", "counter"),
    ("kailash_workflow_run_duration_seconds", "histogram"),
    ("kailash_node_duration_seconds", "histogram"),
    ("kailash_executor_inflight", "gauge"),
    ("kailash_executor_queue_depth", "gauge"),
    ("kailash_upstream_requests", "counter"),
    ("kailash_cache_requests", "counter"),
    ("kailash_ratelimit_decisions", "counter"),
    ("kailash_dependency_up", "gauge"),
    ("kailash_store_pending_records", "gauge"),
    ("kailash_store_dropped_records", "counter"),
    ("kailash_build_info", "gauge"),
    ("process_resident_memory_bytes", "gauge"),
    ("process_open_fds", "gauge"),
    ("process_cpu_seconds", "counter"),
    ("process_start_time_seconds", "gauge"),
]

RUN_ROUTE = "/workflows/{name}/run"


def sha(s):
    return hashlib.sha256(s.encode()).hexdigest()


class Scrape:
    """One /metrics answer, parsed."""

    def __init__(self, resp):
        assert resp.status_code == 200, resp.text
        assert resp.headers["Content-Type"] == CONTENT_TYPE
        self.text = resp.text
        self.families = {f.name: f for f in text_string_to_metric_families(resp.text)}

    def samples(self, name):
        """Every (sample name, labels, value) whose sample name is name."""
        return [s for f in self.families.values() for s in f.samples if s.name == name]

    def value(self, metric, /, **labels):
        """The sample's value, 0 when it is not there (a series appears at its first count)."""
        found = [s.value for s in self.samples(metric) if s.labels == labels]
        assert len(found) <= 1, (metric, labels, found)
        return found[0] if found else 0.0


def scrape(d, **kw):
    return Scrape(d.get("/metrics", **kw))


def diff(after, before, metric, /, **labels):
    return after.value(metric, **labels) - before.value(metric, **labels)


WORKFLOWS_PLAIN = {
    "ok": wf({"t": transform({"a": 1})}),
    "cached": wf({"t": transform({"got": "{{ inputs.x }}"})}, gateway={"cache": {"ttl_s": 60}}),
}


def failing():
    """A run that fails: its HTTP node's upstream refuses the connection."""
    return wf({"call": http("http://127.0.0.1:%d/x" % closed_port())})


def test_exposition_has_every_family_with_its_type(daemons):
    d = daemons.make(workflows=WORKFLOWS_PLAIN)
    assert d.run("ok", {}).status_code == 200
    s = scrape(d)
    for name, kind in FAMILIES:
        assert name in s.families, "%s missing from:\n%s" % (name, s.text)
        assert s.families[name].type == kind, (name, s.families[name].type)
        assert s.families[name].documentation, "%s has no HELP" % name
    # the raw text: HELP and TYPE lines, counters named _total, histograms in _seconds
    assert "# TYPE kailash_http_requests_total counter\n" in s.text
    assert "# HELP kailash_workflow_runs_total " in s.text
    # gauges per loaded workflow, from the registry
    for wname in WORKFLOWS_PLAIN:
        assert s.value("kailash_executor_inflight", workflow=wname) == 0
        assert s.value("kailash_executor_queue_depth", workflow=wname) == 0
        assert any(x.labels == {"workflow": wname} for x in s.samples("kailash_executor_inflight"))
    assert s.value("kailash_dependency_up", name="journal") == 1
    assert not [x for x in s.samples("kailash_dependency_up") if x.labels["name"] in ("redis", "postgres")], \
        "unconfigured dependencies are not listed"
    assert s.value("kailash_store_dropped_records_total") == 0
    version = d.get("/health").json()["version"]
    assert s.value("kailash_build_info", version=version) == 1
    assert s.value("process_resident_memory_bytes") > 0
    assert s.value("process_open_fds") > 0
    start = s.value("process_start_time_seconds")
    assert 0 < start <= time.time()
    assert s.value("process_cpu_seconds_total") >= 0


def test_histograms_have_cumulative_buckets_inf_sum_and_count(daemons):
    d = daemons.make(workflows=WORKFLOWS_PLAIN)
    for _ in range(3):
        assert d.run("ok", {}).status_code == 200
    s = scrape(d)
    for fam, labels in [("kailash_http_request_duration_seconds", {"route": RUN_ROUTE}),
                        ("kailash_workflow_run_duration_seconds", {"workflow": "ok"}),
                        ("kailash_node_duration_seconds", {"workflow": "ok", "node_type": "TransformNode"})]:
        buckets = [x for x in s.samples(fam + "_bucket") if {k: v for k, v in x.labels.items() if k != "le"} == labels]
        assert buckets, (fam, s.text)
        les = [float(b.labels["le"]) for b in buckets]
        assert les == sorted(les) and les[-1] == float("inf"), les
        counts = [b.value for b in buckets]
        assert counts == sorted(counts), "cumulative: %s" % counts
        assert s.value(fam + "_count", **labels) == counts[-1] == 3
        assert s.value(fam + "_sum", **labels) > 0


def test_counters_rise_as_requests_are_served(daemons, upstream):
    # an upstream answering 500 is a completed node (the SDK's success: false), not a failed one
    d = daemons.make(workflows=dict(WORKFLOWS_PLAIN, bad=failing(), calls=wf({"call": http(upstream.url("/status/500"))})))
    before = scrape(d)
    for _ in range(2):
        assert d.run("ok", {}).status_code == 200
    assert d.run("calls", {}).status_code == 200
    r = d.run("bad", {})
    assert r.status_code == 502, r.text
    assert d.get("/no/such/route").status_code == 404
    assert d.request("BREW", "/no/such/route").status_code == 404
    assert d.run("cached", {"x": 1}).headers["X-Cache"] == "MISS"
    assert d.run("cached", {"x": 1}).headers["X-Cache"] == "HIT-L1"
    after = scrape(d)

    req = "kailash_http_requests_total"
    assert diff(after, before, req, route=RUN_ROUTE, method="POST", status="200") == 5
    assert diff(after, before, req, route=RUN_ROUTE, method="POST", status="502") == 1
    assert diff(after, before, req, route="unmatched", method="GET", status="404") == 1
    assert diff(after, before, req, route="unmatched", method="other", status="404") == 1
    assert after.value(req, route="/metrics", method="GET", status="200") >= 1, "the first scrape is counted"
    assert diff(after, before, "kailash_http_request_duration_seconds_count", route=RUN_ROUTE) == 6

    runs = "kailash_workflow_runs_total"
    assert diff(after, before, runs, workflow="ok", status="completed") == 2
    assert diff(after, before, runs, workflow="bad", status="failed") == 1
    assert diff(after, before, runs, workflow="cached", status="completed") == 1, "a hit runs nothing"
    assert diff(after, before, "kailash_workflow_run_duration_seconds_count", workflow="ok") == 2

    up = [x for x in after.samples("kailash_upstream_requests_total") if x.labels["workflow"] == "bad"]
    assert len(up) == 1 and up[0].labels["node"] == "call" and up[0].labels["outcome"] != "ok", up
    assert up[0].value == 1
    assert diff(after, before, "kailash_upstream_requests_total", workflow="calls", node="call", outcome="ok") == 1
    assert diff(after, before, "kailash_node_duration_seconds_count", workflow="bad", node_type="HTTPRequestNode") == 1
    assert not [x for x in after.samples("kailash_upstream_requests_total") if x.labels["workflow"] == "ok"], \
        "a TransformNode is not an upstream call"

    cache = "kailash_cache_requests_total"
    assert diff(after, before, cache, layer="l1", result="hit") == 1
    assert diff(after, before, cache, layer="none", result="miss") == 1
    assert diff(after, before, cache, layer="none", result="bypass") == 4, "ok twice, calls and bad: no cache block"
    assert diff(after, before, "kailash_ratelimit_decisions_total", tier="anonymous", decision="allowed") == 6


def test_a_rate_limited_request_is_counted(daemons):
    d = daemons.make(config={"rate_limiting": {"anonymous": 1, "authenticated": 1}}, workflows=WORKFLOWS_PLAIN)
    before = scrape(d)
    assert d.run("ok", {}).status_code == 200
    assert_error(d.run("ok", {}), 429, "rate_limited")
    after = scrape(d)  # /metrics itself is never limited
    assert diff(after, before, "kailash_ratelimit_decisions_total", tier="anonymous", decision="refused") == 1
    assert diff(after, before, "kailash_ratelimit_decisions_total", tier="anonymous", decision="allowed") == 1
    assert diff(after, before, "kailash_http_requests_total", route=RUN_ROUTE, method="POST", status="429") == 1
    assert diff(after, before, "kailash_workflow_runs_total", workflow="ok", status="completed") == 1


def test_run_ids_never_become_labels(daemons):
    d = daemons.make(workflows=WORKFLOWS_PLAIN)
    ids = [d.run("ok", {}).json()["run_id"] for _ in range(3)] + [str(uuid.uuid4()) for _ in range(20)]
    before = scrape(d)
    for rid in ids:
        assert d.get("/runs/" + rid).status_code in (200, 404)
    after = scrape(d)
    for rid in ids:
        assert rid not in after.text
    runs_get = [x for x in after.samples("kailash_http_requests_total") if x.labels["route"] == "/runs/{name}"]
    assert {x.labels["status"] for x in runs_get} <= {"200", "404"}
    assert sum(x.value for x in runs_get) == len(ids)
    assert len(after.samples("kailash_http_requests_total")) - len(before.samples("kailash_http_requests_total")) <= 3


KEYS = {"admin": "metrics-admin-key-0123456789", "reader": "metrics-reader-key-0123456789",
        "prom": "metrics-prom-key-0123456789"}


def auth_config(metrics_auth):
    return {"enable_auth": True, "metrics_auth": metrics_auth, "auth": {"api_keys": [
        {"id": "admin", "sha256": sha(KEYS["admin"]), "roles": ["admin"]},
        {"id": "reader", "sha256": sha(KEYS["reader"]), "roles": ["orders:read"]},
        {"id": "prom", "sha256": sha(KEYS["prom"]), "roles": ["metrics"]}]}}


def key(name):
    return {"X-API-Key": KEYS[name]}


def test_metrics_auth_asks_for_the_admin_or_metrics_role(daemons):
    d = daemons.make(config=auth_config(True), workflows=WORKFLOWS_PLAIN)
    r = d.get("/metrics")
    assert_error(r, 401, "unauthorized")
    assert "WWW-Authenticate" in r.headers
    assert_error(d.get("/metrics", headers={"X-API-Key": "not-a-key"}), 401, "unauthorized")
    assert_error(d.get("/metrics", headers=key("reader")), 403, "forbidden")
    s = scrape(d, headers=key("prom"))
    assert "kailash_http_requests" in s.families
    # the refusals were counted like any answer
    assert s.value("kailash_http_requests_total", route="/metrics", method="GET", status="401") == 2
    assert s.value("kailash_http_requests_total", route="/metrics", method="GET", status="403") == 1
    assert "kailash_build_info" in scrape(d, headers=key("admin")).families


def test_without_metrics_auth_metrics_are_open_while_auth_is_on(daemons):
    d = daemons.make(config=auth_config(False), workflows=WORKFLOWS_PLAIN)
    assert_error(d.run("ok", {}), 401, "unauthorized")
    s = scrape(d)
    assert s.value("kailash_http_requests_total", route=RUN_ROUTE, method="POST", status="401") == 1


def test_enable_monitoring_false_answers_404_and_counts_nothing(daemons):
    d = daemons.make(config={"enable_monitoring": False}, workflows=WORKFLOWS_PLAIN)
    assert_error(d.get("/metrics"), 404, "not_found")
    for _ in range(3):
        assert d.run("ok", {}).status_code == 200
    # turned on by a reload: what happened while it was off was not counted
    d.config["enable_monitoring"] = True
    d.write_config(d.config)
    assert d.reload().status_code == 200
    s = scrape(d)
    assert s.value("kailash_workflow_runs_total", workflow="ok", status="completed") == 0
    assert s.value("kailash_http_requests_total", route=RUN_ROUTE, method="POST", status="200") == 0
    assert d.run("ok", {}).status_code == 200
    s = scrape(d)
    assert s.value("kailash_workflow_runs_total", workflow="ok", status="completed") == 1
    # and off again
    d.config["enable_monitoring"] = False
    d.write_config(d.config)
    assert d.reload().status_code == 200
    assert_error(d.get("/metrics"), 404, "not_found")


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_the_keys_take_booleans_only(daemons, value):
    for k in ("enable_monitoring", "metrics_auth"):
        d = daemons.make(config={k: value}, start=False)
        with pytest.raises(Exception) as e:
            d.start(timeout=5)
        assert k in str(e.value)
