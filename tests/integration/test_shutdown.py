"""Graceful stop: SIGTERM stops accepting, lets in-flight runs finish within shutdown_grace_ms, exits 0."""
import signal
import socket
import threading
import time

import requests

from conftest import session
from wfs import http, wf


def slow_wf(upstream, ms):
    return wf({"call": http(upstream.base + "/slow?ms=%d" % ms, timeout=30)},
              gateway={"outputs": {"slept": "call.response.content.slept_ms"}})


def test_sigterm_lets_inflight_run_finish(daemons, upstream):
    d = daemons.make(config={"shutdown_grace_ms": 5000}, workflows={"slow": slow_wf(upstream, 1500)})
    res = []
    t = threading.Thread(target=lambda: res.append(d.run("slow", timeout=15)))
    t.start()
    time.sleep(0.4)
    t_term = time.time()
    d.signal(signal.SIGTERM)
    time.sleep(0.3)
    # new work is not taken any more
    refused = False
    try:
        r = session().get(d.url("/health"), timeout=1)
        refused = r.status_code != 200
    except requests.RequestException:
        refused = True
    assert refused, "a new request was served after SIGTERM"
    t.join(10)
    assert res, "in-flight request got no answer"
    assert res[0].status_code == 200, res[0].text
    assert res[0].json()["outputs"] == {"slept": 1500}
    rc = d.proc.wait(10)
    assert rc == 0, d.stderr()[-2000:]
    assert time.time() - t_term < 4


def test_sigterm_idle_exits_promptly(daemons):
    d = daemons.make(workflows={"t": wf({"t": {"node_type": "TransformNode", "config": {"template": {}}}})})
    t0 = time.time()
    d.signal(signal.SIGTERM)
    assert d.proc.wait(10) == 0
    assert time.time() - t0 < 2
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", d.port)) != 0


def test_sigterm_grace_expires(daemons, upstream):
    d = daemons.make(config={"shutdown_grace_ms": 500}, workflows={"slow": slow_wf(upstream, 10000)})
    res = []
    t = threading.Thread(target=lambda: res.append(_try(lambda: d.run("slow", timeout=15))))
    t.start()
    time.sleep(0.3)
    t0 = time.time()
    d.signal(signal.SIGTERM)
    rc = d.proc.wait(10)
    took = time.time() - t0
    assert rc == 0, d.stderr()[-2000:]
    assert took < 3, "exit took %.2fs with shutdown_grace_ms 500" % took
    t.join(15)
    assert res and (isinstance(res[0], Exception) or res[0].status_code != 200)


def _try(f):
    try:
        return f()
    except Exception as e:
        return e
