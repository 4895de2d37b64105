"""Per-workflow executors (bulkheads), overload and run deadlines.

API.md "Errors": 503 overloaded "the workflow's executor queue is full (with Retry-After)",
504 timeout "the run passed its timeout_ms"; WORKFLOWS.md `gateway.executor`, `gateway.timeout_ms`;
DESIGN.md "executor of that workflow (bounded concurrency + bounded queue = bulkhead)"."""
import threading
import time

import pytest

from conftest import assert_error, tcp_sockets
import wfs
from wfs import http, transform, wf


@pytest.fixture(scope="module")
def d(module_daemons, upstream):
    U = upstream.base
    return module_daemons.make(workflows={
        "one": wf({"call": http(U + "/slow?ms={{ inputs.ms | default(1500) }}")},
                  gateway={"executor": {"max_concurrency": 1, "max_queue": 0}}),
        "pool": wf({"call": http(U + "/slow?ms=1500")},
                   gateway={"executor": {"max_concurrency": 2, "max_queue": 2}}),
        "deadline": wf({"call": http(U + "/slow?ms=3000", timeout=10)}, gateway={"timeout_ms": 400}),
        "hello": wfs.example("hello"),
    })


def fire(d, name, results, inputs=None):
    def go():
        t0 = time.time()
        try:
            r = d.run(name, inputs or {}, timeout=20)
            results.append((r.status_code, time.time() - t0, r))
        except Exception as e:  # recorded, asserted on by the caller
            results.append((None, time.time() - t0, e))
    t = threading.Thread(target=go)
    t.start()
    return t


def test_overloaded_503_with_retry_after(d):
    first = []
    t = fire(d, "one", first)
    time.sleep(0.4)
    t0 = time.time()
    r = d.run("one")
    assert time.time() - t0 < 0.5, "the refusal must not wait for the running run"
    assert_error(r, 503, "overloaded")
    ra = r.headers.get("Retry-After", "")
    assert ra.isdigit() and int(ra) >= 1, r.headers
    t.join(10)
    assert first[0][0] == 200, first
    assert first[0][2].json()["outputs"]["call"]["status_code"] == 200
    # once the slot is free the workflow runs again
    assert d.run("one", {"ms": 10}).status_code == 200


def test_bulkhead_isolates_workflows(d):
    running = []
    threads = [fire(d, "pool", running) for _ in range(4)]  # 2 running + 2 queued
    time.sleep(0.5)
    t0 = time.time()
    r = d.run("pool")
    assert time.time() - t0 < 0.5
    assert_error(r, 503, "overloaded")
    assert int(r.headers["Retry-After"]) >= 1
    # another workflow is not behind pool's queue
    for _ in range(5):
        t0 = time.time()
        h = d.run("hello", {"name": "Ada"})
        assert h.status_code == 200, h.text
        assert time.time() - t0 < 0.3, "hello waited %.2fs behind a saturated workflow" % (time.time() - t0)
    for t in threads:
        t.join(15)
    codes = sorted(c for c, _, _ in running)
    assert codes == [200, 200, 200, 200], running
    took = sorted(dt for _, dt, _ in running)
    assert took[1] < 2.6 and took[3] > 2.6, "expected two runs at once, then the two queued: %s" % took


def test_timeout_504(d):
    t0 = time.time()
    r = d.run("deadline")
    took = time.time() - t0
    err = assert_error(r, 504, "timeout")
    assert r.headers.get("X-Run-ID")
    assert err["details"].get("status", "timeout") == "timeout", err
    assert took < 1.5, "504 came after %.2fs for timeout_ms 400" % took
    assert d.get("/health").status_code == 200


def fd_count(pid):
    import os
    return len(os.listdir("/proc/%d/fd" % pid))


def test_client_gone_mid_run_and_bad_requests_leak_nothing(daemons, upstream):
    """API.md: "The process never exits or leaks on a bad request" - nor when a client hangs up while
    its run is in flight (the run finishes into a closed connection)."""
    import json
    import socket
    slow = wf({"call": http(upstream.base + "/slow?ms=400")})
    d = daemons.make(config={"max_body_bytes": 2048}, workflows={"slow": slow, "hello": wfs.example("hello")})
    d.get("/health")
    base = fd_count(d.pid)
    payload = json.dumps({"inputs": {}}).encode()
    socks = []
    for _ in range(50):  # runs whose clients leave before the answer
        s = socket.create_connection(("127.0.0.1", d.port))
        s.sendall(b"POST /workflows/slow/run HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload))
        socks.append(s)
    time.sleep(0.1)
    for s in socks:
        s.close()
    for i in range(100):  # refused requests of every kind, on fresh connections
        kind = i % 5
        if kind == 0:
            d.post("/workflows/hello/run", data=b"{bad", headers={"Content-Type": "application/json"})
        elif kind == 1:
            d.post("/workflows/hello/run", data=b"x" * 3000, headers={"Content-Type": "application/json"})
        elif kind == 2:
            d.post("/workflows/hello/run", data=b"x", headers={"Content-Type": "text/plain"})
        elif kind == 3:
            d.get("/nope/%d" % i)
        else:
            s = socket.create_connection(("127.0.0.1", d.port))
            s.sendall(b"POST /workflows/hello/run HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 100\r\n\r\n{\"inp")
            s.close()
    d.http.close()
    time.sleep(1.0)  # the abandoned runs end after 400 ms
    assert d.alive()
    assert d.run("hello", {"name": "after"}).status_code == 200
    d.http.close()
    upstream.http.close()

    def extra():
        # idle keep-alive connections the daemon holds to the upstream are a pool, not a leak
        pooled = tcp_sockets(remote_port=upstream.port).count("ESTABLISHED")
        return fd_count(d.pid) - pooled - base

    deadline = time.time() + 3
    while (extra() > 4 or tcp_sockets(local_port=d.port) != ["LISTEN"]) and time.time() < deadline:
        time.sleep(0.1)
    served = [st for st in tcp_sockets(local_port=d.port) if st not in ("LISTEN", "TIME_WAIT", "FIN_WAIT2")]
    assert served == [], "client connections the daemon still holds: %s" % served
    assert extra() <= 4, "fds: %d before, %d after (%d pooled upstream)" % (
        base, fd_count(d.pid), tcp_sockets(remote_port=upstream.port).count("ESTABLISHED"))


def test_request_and_fin_together_never_linger(daemons, upstream):
    """A client that sends part of a request (or a whole one) and shuts its side at once must not leave
    the daemon holding the connection in CLOSE_WAIT until the idle timeout: the bytes and the FIN often
    arrive as one event, which an edge-triggered front end can read as "drained" and never revisit.
    Spaced out, so each one meets an idle loop (the case that slipped through once)."""
    import socket
    slow = wf({"call": http(upstream.base + "/slow?ms=100")})
    d = daemons.make(workflows={"hello": wfs.example("hello"), "slow": slow})
    requests = (b"POST /workflows/hello/run HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100\r\n\r\n{\"inp",
                b"POST /workflows/slow/run HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                b"Content-Length: 13\r\n\r\n{\"inputs\":{}}",
                b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
    for i in range(30):
        s = socket.create_connection(("127.0.0.1", d.port))
        s.sendall(requests[i % len(requests)])
        s.shutdown(socket.SHUT_WR) if i % 2 else None
        s.close()
        time.sleep(0.03)
    deadline = time.time() + 3
    while "CLOSE_WAIT" in tcp_sockets(local_port=d.port) and time.time() < deadline:
        time.sleep(0.05)
    assert "CLOSE_WAIT" not in tcp_sockets(local_port=d.port), tcp_sockets(local_port=d.port)
    assert d.run("hello", {"name": "after"}).status_code == 200


@pytest.mark.parametrize("shape", ["one_call", "call_then_transform", "transform_only"])
def test_keep_alive_runs_answer_promptly(daemons, upstream, shape):
    """One keep-alive connection, runs back to back: each answer must come at once, whichever thread
    finished the run (the I/O loop for a lone upstream call, the worker pool when a node follows it,
    the front end itself for CPU nodes). A resumed connection that nobody wakes would only be answered
    when other traffic came by, so this client waits alone: such a stall shows as the socket's
    timeout, not as a slow answer (no timing threshold here)."""
    import socket
    flows = {
        "one_call": wf({"call": http(upstream.base + "/echo")}),
        "call_then_transform": wf({"call": http(upstream.base + "/echo"),
                                   "shape": transform({"method": "{{ params.data.content.method }}"})},
                                  [wfs.conn("call", "response", "shape", "data")]),
        "transform_only": wf({"t": transform({"ok": True})}),
    }
    d = daemons.make(workflows={"w": flows[shape]})
    payload = b'{"inputs":{}}'
    req = (b"POST /workflows/w/run HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload))
    s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
    try:
        for i in range(25):
            s.sendall(req)
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(65536)
                assert chunk, "connection closed before answer %d" % i
                buf += chunk
            head, _, body = buf.partition(b"\r\n\r\n")
            length = int([h.split(b":")[1] for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")][0])
            while len(body) < length:
                body += s.recv(65536)
            assert head.startswith(b"HTTP/1.1 200"), head
    finally:
        s.close()


def test_blocking_nodes_never_stall_the_loop(daemons):
    """File nodes may block (a 64 MiB read, an fsync), so their workflows run on the worker pool: with
    one I/O loop, a short workflow's requests keep answering while a large JSON file is read, parsed
    and written. Before, the file workflow ran inline on the loop and every request waited for it."""
    big = "[" + ",".join(str(i * 7919 % 1000003) for i in range(4_000_000)) + "]"
    d = daemons.make(config={"workers": 1}, data={"big.json": big}, workflows={
        "copy": wf({"read": wfs.node("JSONReaderNode", file_path="big.json"),
                    "write": wfs.node("JSONWriterNode", file_path="copy.json")},
                   [wfs.conn("read", "data", "write", "data")]),
        "hello": wfs.example("hello"),
    })
    t0 = time.time()
    assert d.run("copy", timeout=60).status_code == 200
    alone = time.time() - t0
    results = []
    t = fire(d, "copy", results)
    time.sleep(0.05)
    worst = 0.0
    while t.is_alive():
        s = time.time()
        r = d.run("hello", {"name": "x"})
        assert r.status_code == 200
        worst = max(worst, time.time() - s)
    t.join()
    assert results[0][0] == 200
    # the copy took `alone` seconds by itself; a stalled loop would make one hello wait most of that
    assert worst < alone / 2, (worst, alone)
