"""Rate limiting (API.md "Rate limiting", issue 13): GCRA per client IP or principal, tiers, bursts,
per-workflow limits, the headers, 429, shared through a real Redis by two instances, and what happens
when Redis stops answering and comes back."""
import hashlib
import re
import time

import pytest

from conftest import UNLIMITED, assert_error, wait_for
from wfs import transform, wf

HELLO = wf({"t": transform({"ok": True})})
NARROW = wf({"t": transform({"ok": True})}, gateway={"rate_limit": {"requests_per_minute": 2}})
KEY = "rl-test-key-0123456789"


def limits(anonymous=UNLIMITED, authenticated=UNLIMITED, **extra):
    rl = {"anonymous": anonymous, "authenticated": authenticated}
    rl.update(extra)
    return {"rate_limiting": rl}


def statuses(d, n, name="hello", headers=None):
    return [d.run(name, {}, headers=headers).status_code for _ in range(n)]


def test_headers_on_the_first_requests(daemons):
    d = daemons.make(config=limits(anonymous=5), workflows={"hello": HELLO})
    r = d.run("hello", {})
    assert r.status_code == 200, r.text
    h = r.headers
    assert h["RateLimit-Policy"] == '"default";q=5;w=60'
    assert re.fullmatch(r'"default";r=4;t=\d+', h["RateLimit"]), h["RateLimit"]
    assert h["X-RateLimit-Limit"] == "5"
    assert h["X-RateLimit-Remaining"] == "4"
    t = int(h["RateLimit"].rsplit("t=", 1)[1])
    assert 1 <= t <= 60
    assert abs(int(h["X-RateLimit-Reset"]) - (time.time() + t)) <= 2
    assert "Retry-After" not in h
    r2 = d.run("hello", {})
    assert r2.headers["X-RateLimit-Remaining"] == "3"


def test_429_after_the_limit(daemons):
    d = daemons.make(config=limits(anonymous=3), workflows={"hello": HELLO})
    assert statuses(d, 3) == [200, 200, 200]
    r = d.run("hello", {})
    err = assert_error(r, 429, "rate_limited")
    assert "3 requests per minute" in err["message"]
    retry = int(r.headers["Retry-After"])
    assert 1 <= retry <= 20  # 60 s / 3: one request fits again within 20 s
    assert re.fullmatch(r'"default";r=0;t=%d' % retry, r.headers["RateLimit"]), r.headers
    assert r.headers["X-RateLimit-Remaining"] == "0"
    # the refused request did not cost anything more
    assert d.run("hello", {}).status_code == 429


def test_burst_refills_evenly(daemons):
    d = daemons.make(config=limits(anonymous=120, burst=2), workflows={"hello": HELLO})  # one every 0.5 s
    assert statuses(d, 3) == [200, 200, 429]
    time.sleep(0.6)
    assert statuses(d, 2) == [200, 429]


def test_sdk_requests_per_minute_shape(daemons):
    d = daemons.make(config={"rate_limiting": {"requests_per_minute": 2}}, workflows={"hello": HELLO})
    assert statuses(d, 3) == [200, 200, 429]
    assert d.run("hello", {}).headers["RateLimit-Policy"] == '"default";q=2;w=60'


def test_per_client_ip_with_trusted_proxy(daemons):
    d = daemons.make(config=dict(limits(anonymous=2), trusted_proxies=["127.0.0.1/32"]), workflows={"hello": HELLO})
    a = {"X-Forwarded-For": "198.51.100.1"}
    b = {"X-Forwarded-For": "198.51.100.2"}
    assert statuses(d, 3, headers=a) == [200, 200, 429]
    assert statuses(d, 2, headers=b) == [200, 200], "another client has its own bucket"


def test_untrusted_forwarded_for_is_ignored(daemons):
    d = daemons.make(config=limits(anonymous=2), workflows={"hello": HELLO})
    got = [d.run("hello", {}, headers={"X-Forwarded-For": "203.0.113.%d" % i}).status_code for i in range(3)]
    assert got == [200, 200, 429], "X-Forwarded-For from an untrusted peer must not make new buckets"


def test_per_workflow_limit(daemons):
    d = daemons.make(config=limits(anonymous=100), workflows={"hello": HELLO, "narrow": NARROW})
    r = d.run("narrow", {})
    assert r.headers["RateLimit-Policy"] == '"default";q=100;w=60, "workflow";q=2;w=60'
    assert re.fullmatch(r'"default";r=99;t=\d+, "workflow";r=1;t=\d+', r.headers["RateLimit"]), r.headers
    assert r.headers["X-RateLimit-Limit"] == "2", "the trio shows the policy with less remaining"
    assert r.headers["X-RateLimit-Remaining"] == "1"
    assert d.run("narrow", {}).status_code == 200
    r = d.run("narrow", {})
    assert_error(r, 429, "rate_limited")
    assert r.headers["X-RateLimit-Limit"] == "2"
    assert statuses(d, 3) == [200, 200, 200], "other workflows only count against the tier"
    # viewing the workflow is not running it: only the tier's policy applies there
    r = d.get("/workflows/narrow")
    assert r.status_code == 200 and r.headers["RateLimit-Policy"] == '"default";q=100;w=60', r.headers
    # the refused request charged neither policy: the tier shows 100 - 2 (narrow) - 3 (hello) - this one
    assert d.run("hello", {}).headers["X-RateLimit-Remaining"] == str(100 - 2 - 3 - 1 - 1)


def test_tiers_with_auth(daemons):
    cfg = dict(limits(anonymous=1, authenticated=3))
    cfg.update({"enable_auth": True, "auth": {"api_keys": [
        {"id": "k", "sha256": hashlib.sha256(KEY.encode()).hexdigest()}]}})
    pub = wf({"t": transform({"ok": True})}, gateway={"access": {"public": True}})
    d = daemons.make(config=cfg, workflows={"hello": HELLO, "pub": pub})
    key = {"X-API-Key": KEY}
    assert statuses(d, 4, headers=key) == [200, 200, 200, 429]
    assert d.run("hello", {}, headers=key).headers["RateLimit-Policy"] == '"default";q=3;w=60'
    assert statuses(d, 2, name="pub") == [200, 429], "anonymous callers have their own tier"


def test_limiter_can_be_turned_off(daemons):
    d = daemons.make(config={"rate_limiting": {"enabled": False, "anonymous": 1}}, workflows={"hello": HELLO})
    got = [d.run("hello", {}) for _ in range(3)]
    assert [r.status_code for r in got] == [200, 200, 200]
    assert "RateLimit" not in got[0].headers


def test_what_is_never_limited(daemons):
    d = daemons.make(config=limits(anonymous=1), workflows={"hello": HELLO})
    assert d.run("hello", {}).status_code == 200
    for _ in range(5):
        for path in ("/health", "/ready"):
            r = d.get(path)
            assert r.status_code == 200 and "RateLimit" not in r.headers
    assert d.run("hello", {}).status_code == 429


def test_headers_only_on_answers_that_passed_the_limiter(daemons):
    d = daemons.make(config=limits(anonymous=10), workflows={"hello": HELLO})
    r = d.post("/workflows/hello/run", data=b"{bad", headers={"Content-Type": "application/json"})
    assert_error(r, 400, "bad_request")
    assert "RateLimit" in r.headers and r.headers["X-RateLimit-Remaining"] == "9"
    r = d.post("/workflows/nope/run", json={})
    assert_error(r, 404, "not_found")
    assert "RateLimit" not in r.headers and "X-RateLimit-Limit" not in r.headers


def test_access_log_has_the_decision(daemons):
    d = daemons.make(config=limits(anonymous=1), workflows={"hello": HELLO})
    d.run("hello", {}, headers={"X-Request-ID": "rl-a"})
    d.run("hello", {}, headers={"X-Request-ID": "rl-b"})
    d.get("/health", headers={"X-Request-ID": "rl-c"})
    assert wait_for(lambda: len([e for e in d.access_log() if e.get("request_id", "").startswith("rl-")]) == 3)
    got = {e["request_id"]: e for e in d.access_log() if e.get("request_id", "").startswith("rl-")}
    assert (got["rl-a"]["ratelimit"], got["rl-a"]["ratelimit_via"]) == ("allowed", "local")
    assert (got["rl-b"]["ratelimit"], got["rl-b"]["status"]) == ("refused", 429)
    assert got["rl-c"]["ratelimit"] is None


# --- Redis ---------------------------------------------------------------------------------------

def redis_cfg(redis, **kw):
    cfg = limits(**kw)
    cfg["redis_url"] = redis.url
    return cfg


def test_ready_shows_redis(daemons, redis_server):
    d = daemons.make(config=redis_cfg(redis_server), workflows={"hello": HELLO})
    assert wait_for(lambda: d.get("/ready").json()["checks"]["redis"] == "ok", timeout=5), d.get("/ready").text
    assert d.get("/ready").status_code == 200
    plain = daemons.make(workflows={"hello": HELLO})
    assert plain.get("/ready").json()["checks"]["redis"] == "disabled"


def test_two_instances_share_one_limit(daemons, redis_server):
    cfg = redis_cfg(redis_server, anonymous=10)
    a = daemons.make(config=cfg, workflows={"hello": HELLO})
    b = daemons.make(config=cfg, workflows={"hello": HELLO})
    for d in (a, b):
        assert wait_for(lambda: d.get("/ready").json()["checks"]["redis"] == "ok", timeout=5)
    got = []
    for i in range(30):
        got.append((a if i % 2 else b).run("hello", {}).status_code)
    assert got.count(200) == 10, got
    assert set(got) == {200, 429}
    # and the decisions were Redis's
    assert a.wait_log(lambda e: e.get("ratelimit_via") == "redis")


def test_shared_burst_never_passes_more_than_the_limit(daemons, redis_server):
    """Concurrent requests to two instances at once: together they never pass more than the bucket."""
    import concurrent.futures
    cfg = redis_cfg(redis_server, anonymous=20)
    a = daemons.make(config=cfg, workflows={"hello": HELLO})
    b = daemons.make(config=cfg, workflows={"hello": HELLO})
    for d in (a, b):
        assert wait_for(lambda: d.get("/ready").json()["checks"]["redis"] == "ok", timeout=5)

    def one(i):
        import requests
        d = a if i % 2 else b
        return requests.post(d.url("/workflows/hello/run"), json={}, timeout=10).status_code
    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        got = list(ex.map(one, range(80)))
    assert got.count(200) <= 21, got  # 20, plus at most one refilled during the burst (3 s per request)
    assert got.count(200) >= 20, got
    assert 500 not in got and 503 not in got


def test_redis_down_then_back(daemons, redis_server):
    cfg = redis_cfg(redis_server, anonymous=1000)
    d = daemons.make(config=cfg, workflows={"hello": HELLO, "narrow": NARROW})
    assert wait_for(lambda: d.get("/ready").json()["checks"]["redis"] == "ok", timeout=5)
    assert d.run("hello", {}).status_code == 200
    redis_server.stop()
    got = [d.run("hello", {}).status_code for _ in range(20)]
    assert all(s == 200 for s in got), got  # no 5xx: limits go on locally
    assert wait_for(lambda: d.get("/ready").status_code == 503, timeout=5)
    r = d.get("/ready")
    assert r.json()["status"] == "degraded" and r.json()["checks"]["redis"] == "down"
    # still limited, locally
    got = [d.run("narrow", {}).status_code for _ in range(3)]
    assert got == [200, 200, 429], got
    assert d.wait_log(lambda e: e.get("ratelimit_via") == "local")
    redis_server.start()
    assert wait_for(lambda: d.get("/ready").status_code == 200, timeout=15), d.get("/ready").text
    assert d.get("/ready").json()["checks"]["redis"] == "ok"
    tag = "back-%d" % time.time_ns()
    for _ in range(5):
        assert d.run("hello", {}, headers={"X-Request-ID": tag}).status_code == 200
    assert d.wait_log(lambda e: e.get("request_id") == tag and e.get("ratelimit_via") == "redis", timeout=3)


def test_redis_frozen_costs_no_errors(daemons, redis_server):
    """A Redis that stops answering (SIGSTOP): a command waits at most redis_timeout_ms, failures open
    the breaker, and requests go on, limited locally, without errors or long waits."""
    d = daemons.make(config=redis_cfg(redis_server, anonymous=1000), workflows={"hello": HELLO})
    assert wait_for(lambda: d.get("/ready").json()["checks"]["redis"] == "ok", timeout=5)
    redis_server.pause()
    slowest = [0.0]

    def one_ok():
        t0 = time.time()
        r = d.run("hello", {})
        slowest[0] = max(slowest[0], time.time() - t0)
        assert r.status_code == 200, r.text
        return d.get("/ready").json()["checks"]["redis"] == "down"
    try:
        assert wait_for(one_ok, timeout=15), "the breaker never opened"
        assert d.get("/ready").status_code == 503
        for _ in range(20):
            one_ok()
        assert slowest[0] < 1.0, slowest  # 20 ms deadlines, not a hang
    finally:
        redis_server.resume()
    assert wait_for(lambda: d.get("/ready").json()["checks"]["redis"] == "ok", timeout=15)


def test_redis_password_never_shown(daemons, tmp_path):
    from conftest import RedisServer
    secret = "s3cr3t-redis-pass-XYZ"
    rs = RedisServer(tmp_path / "redis-auth", password=secret)
    try:
        d = daemons.make(config=redis_cfg(rs, anonymous=2), workflows={"hello": HELLO})
        assert wait_for(lambda: d.get("/ready").json()["checks"]["redis"] == "ok", timeout=5), d.stderr()
        assert statuses(d, 3) == [200, 200, 429]
        assert d.wait_log(lambda e: e.get("ratelimit_via") == "redis")
        rs.stop()
        wait_for(lambda: d.get("/ready").status_code == 503, timeout=5)
        text = d.stdout() + d.stderr() + d.get("/ready").text
        assert secret not in text
    finally:
        rs.stop()


def test_redis_url_refusals(daemons):
    from conftest import BIN, base_env
    import subprocess
    for url, word in [("rediss://127.0.0.1:6379", "TLS"), ("http://x", "redis_url"),
                      ("redis://:pw-not-shown@127.0.0.1:notaport", "redis_url")]:
        dm = daemons.make(config={"redis_url": url}, workflows={"hello": HELLO}, start=False)
        p = subprocess.run([BIN, "--config", dm.config_path], cwd=dm.root, env=base_env(), capture_output=True,
                           text=True, timeout=15)
        assert p.returncode != 0, url
        assert word in p.stderr, (url, p.stderr)
        assert "pw-not-shown" not in p.stderr
