"""Cache nodes (WORKFLOWS.md catalog: CacheNode, InMemoryCacheNode, RedisCacheNode,
IntelligentCacheNode) through the daemon: the memory backend shared across runs and workflows, the
redis backend against a real redis-server (its keys, TTLs and values as Redis holds them), the SDK's
output shapes, pinned keys, bounds, and a Redis that is absent or stops."""
import json

from conftest import assert_error, wait_for
from wfs import conn, node, transform, wf

NS = "it"


def cache(op, node_type="CacheNode", **config):
    return node(node_type, operation=op, namespace=NS, **config)


SET = wf({"c": cache("set", key="{{ inputs.k }}", value="{{ inputs.v }}", ttl="{{ inputs.ttl | default(3600) }}")})
GET = wf({"c": cache("get", key="{{ inputs.k }}")})
DELETE = wf({"c": cache("delete", key="{{ inputs.k }}")})
EXISTS = wf({"c": cache("exists", key="{{ inputs.k }}")})
CAS = wf({"c": cache("set", key="{{ inputs.k }}", value="{{ inputs.v }}", expected_version="{{ inputs.ev }}")})


def redis_wfs(node_type="CacheNode", **extra):
    if node_type == "CacheNode":
        extra.setdefault("backend", "redis")
    return {
        "rset": wf({"c": cache("set", node_type, key="{{ inputs.k }}", value="{{ inputs.v }}",
                               ttl="{{ inputs.ttl | default(3600) }}", **extra)}),
        "rget": wf({"c": cache("get", node_type, key="{{ inputs.k }}", **extra)}),
        "rdel": wf({"c": cache("delete", node_type, key="{{ inputs.k }}", **extra)}),
        "rexists": wf({"c": cache("exists", node_type, key="{{ inputs.k }}", **extra)}),
    }


def out(r):
    assert r.status_code == 200, r.text
    o = r.json()["outputs"]["c"]
    t = o.pop("operation_time")
    assert isinstance(t, float) and 0 <= t < 5, t
    return o


def test_memory_set_in_one_run_get_in_the_next(daemons):
    d = daemons.make(workflows={"set": SET, "get": GET, "delete": DELETE, "exists": EXISTS})
    # the SDK's shapes, key order included (LocalRuntime's)
    o = out(d.run("get", {"k": "a"}))
    assert list(o.items()) == [("success", True), ("hit", False), ("key", "it:a"), ("backend_used", "memory"),
                               ("value", None), ("version", None)]
    o = out(d.run("set", {"k": "a", "v": {"n": [1, 2.5, "x", None, True]}}))
    assert list(o.items()) == [("success", True), ("key", "it:a"), ("ttl_remaining", 3600),
                               ("backend_used", "memory"), ("version", 1)]
    o = out(d.run("get", {"k": "a"}))
    assert list(o.items()) == [("success", True), ("value", {"n": [1, 2.5, "x", None, True]}), ("hit", True),
                               ("key", "it:a"), ("backend_used", "memory"), ("version", 1)]
    assert out(d.run("exists", {"k": "a"})) == {"success": True, "key": "it:a", "backend_used": "memory",
                                                "exists": True}
    assert out(d.run("delete", {"k": "a"}))["deleted"] is True
    assert out(d.run("delete", {"k": "a"}))["deleted"] is False
    assert out(d.run("exists", {"k": "a"}))["exists"] is False
    assert out(d.run("get", {"k": "a"}))["hit"] is False


def test_memory_ttl_expires(daemons):
    d = daemons.make(workflows={"set": SET, "get": GET})
    assert out(d.run("set", {"k": "t", "v": 1, "ttl": 1}))["ttl_remaining"] == 1
    assert out(d.run("get", {"k": "t"}))["hit"] is True
    assert wait_for(lambda: out(d.run("get", {"k": "t"}))["hit"] is False, timeout=3)
    assert out(d.run("set", {"k": "forever", "v": 1, "ttl": 0}))["ttl_remaining"] == -1


def test_memory_store_is_shared_by_nodes_of_one_run_and_node_types(daemons):
    # g runs after s (a connection into an input get ignores); the SDK's per-node dict would miss here
    both = wf({"s": cache("set", "InMemoryCacheNode", key="k", value="{{ inputs.v }}"),
               "g": cache("get", "IntelligentCacheNode", key="k")},
              [conn("s", "success", "g", "value")])
    d = daemons.make(workflows={"both": both, "get": GET})
    r = d.run("both", {"v": "shared"})
    assert r.status_code == 200, r.text
    assert r.json()["outputs"]["g"]["value"] == "shared"
    assert out(d.run("get", {"k": "k"}))["value"] == "shared"


def test_compare_and_set(daemons):
    d = daemons.make(workflows={"cas": CAS, "set": SET})
    o = out(d.run("cas", {"k": "c", "v": 1, "ev": 7}))
    assert o == {"success": False, "key": "it:c", "backend_used": "memory", "cas_failed": True,
                 "expected_version": 7, "actual_version": None,
                 "error": "CAS conflict: expected version 7, actual None"}
    assert out(d.run("set", {"k": "c", "v": 1}))["version"] == 1
    assert out(d.run("cas", {"k": "c", "v": 2, "ev": 1}))["version"] == 2
    assert out(d.run("cas", {"k": "c", "v": 3, "ev": 1}))["actual_version"] == 2


def test_namespace_is_pinned(daemons):
    d = daemons.make(workflows={"get": GET})
    r = d.run("get", body={"inputs": {"k": "a"}, "parameters": {"c": {"namespace": "other"}}})
    err = assert_error(r, 400, "bad_request")
    assert "namespace" in err["message"]


def test_value_over_one_mib_is_refused(daemons):
    d = daemons.make(config={"max_body_bytes": 4 << 20}, workflows={"set": SET})
    r = d.run("set", {"k": "big", "v": "x" * (1 << 20)})
    err = assert_error(r, 400, "bad_request")
    assert "value: 1048578 bytes of JSON" in err["message"], err
    assert out(d.run("set", {"k": "ok", "v": "x" * ((1 << 20) - 2)}))["success"] is True


def test_key_over_one_kib_fails_the_node(daemons):
    d = daemons.make(workflows={"get": GET})
    r = d.run("get", {"k": "k" * 1100})
    err = assert_error(r, 500, "internal")
    assert "longer than 1024 bytes" in err["message"], err


def test_unsupported_sdk_features_are_refused_at_load(daemons):
    bad = {
        "compressed": wf({"c": cache("set", key="k", value=1, compression=True)}),
        "hybrid": wf({"c": cache("get", key="k", backend="hybrid")}),
        "clear": wf({"c": cache("clear")}),
        "own_redis": wf({"c": cache("get", key="k", redis_url="redis://10.1.2.3:6379")}),
    }
    d = daemons.make(workflows=dict(bad, get=GET))
    ready = d.get("/ready").json()
    text = json.dumps(ready)
    for key in ("config.compression", "config.backend", "config.operation", "config.redis_url"):
        assert key in text, (key, text)
    assert d.run("get", {"k": "a"}).status_code == 200


# ---------------------------------------------------------------------------------------------- redis


def test_redis_round_trip_and_keys_in_redis(daemons, redis_server):
    d = daemons.make(config={"redis_url": redis_server.url}, workflows=redis_wfs())
    o = out(d.run("rget", {"k": "a"}))
    assert list(o.items()) == [("success", True), ("hit", False), ("key", "it:a"), ("backend_used", "redis"),
                               ("value", None), ("version", None)]
    o = out(d.run("rset", {"k": "a", "v": {"x": [1, "é"]}, "ttl": 120}))
    assert list(o.items()) == [("success", True), ("key", "it:a"), ("ttl_remaining", 120),
                               ("backend_used", "redis"), ("version", None)]
    # kailashd's prefix, the SDK's key and its JSON
    raw = redis_server.command("GET", "kailash:node:it:a")
    assert json.loads(raw.split("\r\n")[1]) == {"x": [1, "é"]}, raw
    ttl = int(redis_server.command("TTL", "kailash:node:it:a").strip()[1:])
    assert 110 <= ttl <= 120
    o = out(d.run("rget", {"k": "a"}))
    assert o["hit"] is True and o["value"] == {"x": [1, "é"]}
    assert out(d.run("rexists", {"k": "a"})) == {"success": True, "key": "it:a", "backend_used": "redis",
                                                 "exists": True}
    assert out(d.run("rdel", {"k": "a"})) == {"success": True, "key": "it:a", "backend_used": "redis",
                                              "deleted": True}
    assert out(d.run("rdel", {"k": "a"}))["deleted"] is False
    assert out(d.run("rexists", {"k": "a"}))["exists"] is False
    # no ttl: no expiry in Redis
    assert out(d.run("rset", {"k": "p", "v": 1, "ttl": 0}))["ttl_remaining"] == -1
    assert redis_server.command("TTL", "kailash:node:it:p").strip() == ":-1"


def test_redis_shared_by_two_instances_and_redis_cache_node(daemons, redis_server):
    a = daemons.make(config={"redis_url": redis_server.url}, workflows=redis_wfs())
    b = daemons.make(config={"redis_url": redis_server.url}, workflows=redis_wfs("RedisCacheNode"))
    assert out(a.run("rset", {"k": "s", "v": [1, 2]}))["success"] is True
    o = out(b.run("rget", {"k": "s"}))
    assert o["hit"] is True and o["value"] == [1, 2] and o["backend_used"] == "redis"


def test_redis_value_written_by_the_sdk_is_read(daemons, redis_server):
    d = daemons.make(config={"redis_url": redis_server.url}, workflows=redis_wfs())
    # what the SDK's json.dumps writes (spaces), and something that is not JSON: a miss, as in the SDK
    redis_server.command("SET", "kailash:node:it:py", '{"a": 1, "b": [true, null]}')
    redis_server.command("SET", "kailash:node:it:junk", "not json")
    assert out(d.run("rget", {"k": "py"}))["value"] == {"a": 1, "b": [True, None]}
    o = out(d.run("rget", {"k": "junk"}))
    assert o["hit"] is False and o["value"] is None


def test_redis_expiry(daemons, redis_server):
    d = daemons.make(config={"redis_url": redis_server.url}, workflows=redis_wfs())
    assert out(d.run("rset", {"k": "e", "v": 1, "ttl": 1}))["success"] is True
    assert out(d.run("rget", {"k": "e"}))["hit"] is True
    assert wait_for(lambda: out(d.run("rget", {"k": "e"}))["hit"] is False, timeout=4)


def test_redis_compare_and_set_fails_as_the_sdk(daemons, redis_server):
    w = {"rcas": wf({"c": cache("set", backend="redis", key="{{ inputs.k }}", value=1, expected_version=1)})}
    d = daemons.make(config={"redis_url": redis_server.url}, workflows=w)
    o = out(d.run("rcas", {"k": "z"}))
    assert o["success"] is False and o["cas_failed"] is True and o["key"] == "z", o
    assert "only supported with backend='memory'" in o["error"]


def test_redis_not_configured_fails_the_node(daemons):
    d = daemons.make(workflows=redis_wfs())
    err = assert_error(d.run("rget", {"k": "a"}), 502, "upstream_error")
    assert "no Redis is configured" in err["message"], err


def test_redis_stopped_then_back(daemons, redis_server):
    d = daemons.make(config={"redis_url": redis_server.url}, workflows=redis_wfs())
    assert out(d.run("rset", {"k": "b", "v": 1}))["success"] is True
    redis_server.stop()
    # a failed connection fails the node (502), as the SDK's does; never a hang
    r = d.run("rget", {"k": "b"}, timeout=10)
    if r.status_code == 200:  # sent before the loss was seen: the SDK's answer to a failed GET, a miss
        assert out(r)["hit"] is False
    else:
        assert_error(r, 502, "upstream_error")
    assert wait_for(lambda: d.run("rget", {"k": "b"}).status_code == 502, timeout=5)
    redis_server.start()
    assert wait_for(lambda: d.run("rget", {"k": "b"}).status_code == 200, timeout=10)
    assert out(d.run("rget", {"k": "b"}))["hit"] is False  # a fresh redis-server, no persistence


def test_redis_frozen_past_the_deadline_then_back(daemons, redis_server):
    # the run's deadline passes with GET in flight: the node is cancelled, its late reply is dropped
    w = redis_wfs()
    w["rget"]["gateway"] = {"timeout_ms": 300}
    # no rate limiter (it would ask the frozen Redis first), and commands outliving the run's deadline
    d = daemons.make(config={"redis_url": redis_server.url, "redis_timeout_ms": 5000,
                             "rate_limiting": {"enabled": False}}, workflows=w)
    assert out(d.run("rset", {"k": "f", "v": "frozen"}))["success"] is True
    redis_server.pause()
    try:
        assert_error(d.run("rget", {"k": "f"}), 504, "timeout")
    finally:
        redis_server.resume()
    assert wait_for(lambda: d.run("rget", {"k": "f"}).status_code == 200, timeout=10)
    assert out(d.run("rget", {"k": "f"}))["value"] == "frozen"
    assert d.alive()
