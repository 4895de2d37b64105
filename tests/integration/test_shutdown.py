"""Graceful stop: SIGTERM stops accepting, closes idle kept-alive connections, lets in-flight runs
finish within shutdown_grace_ms (their answers carry Connection: close) and exits 0 as soon as they
have; when the grace runs out, cancels the runs still going (their clients get 503 unavailable) and
exits 1 with a log line counting them."""
import json
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
    assert rc == 1, d.stderr()[-2000:]  # runs had to be cancelled: not a clean stop
    assert took < 3, "exit took %.2fs with shutdown_grace_ms 500" % took
    cut = [json.loads(line) for line in d.stderr().splitlines() if "shutdown_grace_ms" in line]
    assert cut and "ran out: 1 request(s) in flight, 1 run(s) cancelled" in cut[-1]["msg"], d.stderr()[-2000:]
    t.join(15)
    # the run was cancelled, not cut: its client got an answer saying so
    assert res and not isinstance(res[0], Exception), res
    assert res[0].status_code == 503 and res[0].json()["error"]["code"] == "unavailable", res[0].text
    assert res[0].json()["error"]["details"]["status"] == "cancelled"


def _try(f):
    try:
        return f()
    except Exception as e:
        return e


def raw_get(s, path="/health"):
    """One GET on kept-alive socket s: (status, lower-cased head)."""
    s.sendall(("GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path).encode())
    f = s.makefile("rb")
    status = int(f.readline().split()[1])
    head = b""
    while True:
        line = f.readline()
        if line in (b"\r\n", b""):
            break
        head += line.lower()
    length = int(head.split(b"content-length:")[1].split(b"\r\n")[0])
    f.read(length)
    return status, head


def test_sigterm_closes_idle_kept_alive_connection_at_once(daemons, upstream):
    """An idle kept-alive connection is closed at SIGTERM, not when the last in-flight run (1 s on
    the upstream) ends and the process exits."""
    d = daemons.make(config={"shutdown_grace_ms": 10000}, workflows={"slow": slow_wf(upstream, 1000)})
    idle = socket.create_connection(("127.0.0.1", d.port), timeout=5)
    assert raw_get(idle)[0] == 200
    res = []
    t = threading.Thread(target=lambda: res.append(d.run("slow", timeout=15)))
    t.start()
    time.sleep(0.3)
    t0 = time.time()
    d.signal(signal.SIGTERM)
    assert idle.recv(1) == b""  # EOF, not a timeout
    assert time.time() - t0 < 0.5, "the idle connection closed only after %.2fs" % (time.time() - t0)
    assert not res, "the in-flight run ended before the idle connection was closed"
    t.join(10)
    assert res and res[0].status_code == 200
    assert d.proc.wait(10) == 0
    idle.close()


def test_sigterm_inflight_answer_says_close_and_exit_follows(daemons, upstream):
    """The answer to a request in flight at SIGTERM carries Connection: close, the connection then
    ends, and the process exits 0 right after it, far inside shutdown_grace_ms."""
    d = daemons.make(config={"shutdown_grace_ms": 20000}, workflows={"slow": slow_wf(upstream, 1000)})
    s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
    body = b'{"inputs": {}}'
    s.sendall(b"POST /workflows/slow/run HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    time.sleep(0.3)
    d.signal(signal.SIGTERM)
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    t_answer = time.time()
    s.close()
    head, _, payload = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), data
    assert b"\r\nconnection: close" in head.lower(), head
    assert json.loads(payload)["outputs"] == {"slept": 1000}
    assert d.proc.wait(10) == 0, d.stderr()[-2000:]
    assert time.time() - t_answer < 0.5, "exit %.2fs after the last answer" % (time.time() - t_answer)


def test_sigterm_busy_kept_alive_client_gets_close(daemons, upstream):
    """A client sending request after request on one connection while a 1 s run keeps the daemon
    draining: from SIGTERM on, at most the request in progress is answered (with Connection: close),
    then the connection ends (it used to be served for the whole drain)."""
    d = daemons.make(config={"shutdown_grace_ms": 10000}, workflows={"slow": slow_wf(upstream, 1000)})
    slow = threading.Thread(target=lambda: d.run("slow", timeout=15))
    slow.start()
    s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
    heads = []
    stop = threading.Event()

    def client():
        try:
            while not stop.is_set():
                heads.append((time.time(), raw_get(s)[1]))
        except (OSError, IndexError, ValueError):
            pass  # the daemon closed the connection

    t = threading.Thread(target=client)
    t.start()
    time.sleep(0.3)
    t_term = time.time()
    d.signal(signal.SIGTERM)
    t.join(5)
    stop.set()
    assert not t.is_alive(), "the connection was still served 5 s after SIGTERM"
    closing = [h for _, h in heads if b"connection: close" in h]
    assert len(closing) <= 1 and (not closing or closing[0] == heads[-1][1]), heads[-3:]
    late = [h for at, h in heads if at > t_term + 0.2]
    assert not late, "%d answers more than 200 ms after SIGTERM" % len(late)
    slow.join(10)
    assert d.proc.wait(10) == 0
    s.close()
