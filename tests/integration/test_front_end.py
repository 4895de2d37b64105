"""The front end with requests that wait on an upstream, on kept-alive client connections.

A request that calls an upstream suspends its connection until the run ends. kailashd keeps a
suspended connection in libmicrohttpd's epoll set and hides its events until it resumes
(src/http/mhd_park.c, README "How a request comes in"): an event lost there shows up here as a
connection that never gets its next answer. So these tests push many kept-alive connections,
pipelined requests and clients that leave mid-wait through workflows whose node calls a real upstream."""
import asyncio
import json
import re
import socket
import time

import pytest

from conftest import read_answer
from wfs import http, wf

CONNS = 16
PER_CONN = 150


@pytest.fixture(scope="module")
def d(module_daemons, upstream):
    U = upstream.base
    return module_daemons.make(workflows={
        "echo": wf({"call": http(U + "/echo/k/{{ inputs.c }}/{{ inputs.i }}")},
                   gateway={"outputs": {"path": "call.response.content.path"}}),
        "slow": wf({"call": http(U + "/slow?ms={{ inputs.ms }}")},
                   gateway={"outputs": {"slept": "call.response.content.slept_ms"}}),
    })


def request_bytes(name, inputs, close=False):
    body = json.dumps({"inputs": inputs}).encode()
    head = ("POST /workflows/%s/run HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            "Content-Length: %d\r\n%s\r\n" % (name, len(body), "Connection: close\r\n" if close else ""))
    return head.encode() + body


async def read_json_answer(reader, timeout):
    status, body = await read_answer(reader, timeout)
    return status, json.loads(body)


async def one_connection(port, c, n, timeout):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    got = []
    try:
        for i in range(n):
            writer.write(request_bytes("echo", {"c": c, "i": i}))
            await writer.drain()
            status, body = await read_json_answer(reader, timeout)
            got.append((status, body["outputs"]["path"] if status == 200 else body))
    finally:
        writer.close()
    return got


def test_many_kept_alive_connections_each_get_every_answer(d):
    """16 connections, each sending its next request the moment the last answer is read: 2,400 runs
    whose connections are suspended and resumed while others come and go on the same loops."""
    async def all_of_them():
        return await asyncio.gather(*(one_connection(d.port, c, PER_CONN, 10) for c in range(CONNS)))
    t0 = time.monotonic()
    results = asyncio.run(all_of_them())
    for c, got in enumerate(results):
        assert got == [(200, "/echo/k/%d/%d" % (c, i)) for i in range(PER_CONN)], "connection %d" % c
    assert time.monotonic() - t0 < 60


def test_pipelined_requests_are_answered_in_order(d):
    """Three requests in one write, each waiting 50 ms on the upstream: the second and third arrive
    while the first is suspended, and are answered after it, in order."""
    s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
    try:
        s.sendall(b"".join(request_bytes("slow", {"ms": 50 + i}) for i in range(3)))
        f = s.makefile("rb")
        for i in range(3):
            status = int(f.readline().split()[1])
            length = 0
            while True:
                line = f.readline()
                if line in (b"\r\n", b""):
                    break
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            body = json.loads(f.read(length))
            assert status == 200 and body["outputs"]["slept"] == 50 + i
    finally:
        s.close()


def test_request_sent_while_the_previous_waits(d):
    """The next request comes 100 ms into a 300 ms wait (no pipelining in one write): it is held
    back until the first is answered, then answered itself."""
    s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        s.sendall(request_bytes("slow", {"ms": 300}))
        time.sleep(0.1)
        s.sendall(request_bytes("slow", {"ms": 10}))
        data = b""
        deadline = time.monotonic() + 10
        while data.count(b"HTTP/1.1 200") < 2 and time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        assert data.count(b"HTTP/1.1 200") == 2, data
        assert data.index(b'"slept":300') < data.index(b'"slept":10')
    finally:
        s.close()


def test_clients_leaving_mid_wait_do_not_disturb_the_rest(d):
    """40 clients send a 200 ms run and hang up at once; `Connection: close` runs and kept-alive ones
    go on meanwhile and after, on the socket numbers the leavers freed."""
    leavers = []
    for i in range(40):
        s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
        s.sendall(request_bytes("slow", {"ms": 200}))
        leavers.append(s)
    for s in leavers:
        s.close()

    async def mixed():
        closing = [one_closing(d.port, i) for i in range(10)]
        kept = [one_connection(d.port, 100 + c, 20, 10) for c in range(4)]
        return await asyncio.gather(*closing), await asyncio.gather(*kept)

    async def one_closing(port, i):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request_bytes("echo", {"c": "close", "i": i}, close=True))
        await writer.drain()
        status, body = await read_json_answer(reader, 10)
        rest = await asyncio.wait_for(reader.read(), 10)  # the daemon closes after the answer
        writer.close()
        return status, body["outputs"]["path"], rest

    for _ in range(2):  # during the leavers' runs, then after them
        closing, kept = asyncio.run(mixed())
        assert closing == [(200, "/echo/k/close/%d" % i, b"") for i in range(10)]
        for c, got in enumerate(kept):
            assert got == [(200, "/echo/k/%d/%d" % (100 + c, i)) for i in range(20)]
        time.sleep(0.3)
    assert d.get("/health").status_code == 200


def test_client_that_half_closes_is_closed_at_once(d):
    """A client sends a whole request and shuts its sending side at once, so the request and its FIN
    arrive together, and the run waits on the upstream. libmicrohttpd 0.9.75 ends a connection when it
    reads the FIN (as nginx's proxy takes a client's FIN for an abort, 499): the client gets the answer
    only if it was sent before that read. Either way the daemon must then close, not keep the
    connection until its idle timeout (120 s): a resumed connection whose FIN was never read (its read
    spared as "empty") would stay open."""
    for _ in range(10):
        s = socket.create_connection(("127.0.0.1", d.port), timeout=8)
        try:
            s.sendall(request_bytes("slow", {"ms": 50}))
            s.shutdown(socket.SHUT_WR)
            t0 = time.monotonic()
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            assert time.monotonic() - t0 < 4
            assert data == b"" or (data.startswith(b"HTTP/1.1 200") and b'"slept":50' in data), data
        finally:
            s.close()


# ---- request framing (issue 9.7): a request whose length is ambiguous is refused, and its connection
# closed, so bytes meant as its body are never taken for a request of their own (request smuggling).

SMUGGLED = b"GET /health?smuggled HTTP/1.1\r\nHost: t\r\n\r\n"


def exchange(port, data, timeout=5):
    """Sends data on a fresh connection and reads until the daemon closes it (or timeout)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    got = b""
    closed = False
    try:
        s.sendall(data)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                closed = True
                break
            got += chunk
    finally:
        s.close()
    return got, closed


def assert_refused_alone(got, closed):
    assert got.count(b"HTTP/1.1 ") == 1, got  # the smuggled request got no answer
    assert got.startswith(b"HTTP/1.1 400"), got
    head, _, body = got.partition(b"\r\n\r\n")
    assert b"\r\nconnection: close" in head.lower(), head
    err = json.loads(body)["error"]
    assert err["code"] == "bad_request" and err["message"] and err["request_id"], err
    assert closed, "the connection stayed open"


@pytest.mark.parametrize("lengths", [(0, len(SMUGGLED)), (len(SMUGGLED), 0), (0, 0)])
def test_two_content_lengths_are_refused_and_closed(d, lengths):
    head = ("GET /health HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\nContent-Length: %d\r\n\r\n" % lengths)
    assert_refused_alone(*exchange(d.port, head.encode() + SMUGGLED))


def test_content_length_with_transfer_encoding_is_refused_and_closed(d):
    body = b"0\r\n\r\n" + SMUGGLED
    head = ("POST /workflows/echo/run HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert_refused_alone(*exchange(d.port, head.encode() + body))
    # only ambiguous framing is refused: one Content-Length, and the next request on that
    # connection, are both answered
    got, _ = exchange(d.port, b"GET /health HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n" + SMUGGLED, timeout=1)
    assert got.count(b"HTTP/1.1 200") == 2, got


# ---- one listening socket per loop (issue 10.6)

def loop_lines(d):
    """{loop: (accepted, park)} from the debug lines the daemon writes at stop."""
    out = {}
    for line in d.stderr().splitlines():
        m = re.search(r"front end loop (\d+): (\d+) connection\(s\) accepted; park (on|off)", line)
        if m:
            out[int(m.group(1))] = (int(m.group(2)), m.group(3))
    return out


def test_each_loop_listens_on_its_own_socket_and_takes_a_share(daemons):
    """workers: 4 gives four SO_REUSEPORT listening sockets on the port (one shared socket before),
    a storm of 3,000 connects is answered in full, and every loop accepted some of them."""
    from conftest import tcp_sockets
    d = daemons.make(config={"workers": 4, "log": {"level": "debug"}})
    assert tcp_sockets(local_port=d.port).count("LISTEN") == 4

    async def one(port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        status, _ = await read_answer(reader, 20)
        writer.close()
        return status

    async def storm():
        sem = asyncio.Semaphore(500)

        async def limited():
            async with sem:
                return await one(d.port)
        return await asyncio.gather(*(limited() for _ in range(3000)), return_exceptions=True)

    got = asyncio.run(storm())
    failed = [g for g in got if g != 200]
    assert not failed, "%d of 3000 connects failed: %r" % (len(failed), failed[:3])
    assert d.stop() == 0
    loops = loop_lines(d)
    assert sorted(loops) == [0, 1, 2, 3], d.stderr()[-2000:]
    assert sum(a for a, _ in loops.values()) >= 3000
    assert all(a > 0 for a, _ in loops.values()), loops


@pytest.mark.parametrize("how", ["env", "config"])
def test_park_can_be_switched_off(daemons, upstream, how):
    """KAILASH_MHD_PARK=0 or front_end.park false: parking is off (said once at start, and in the
    loops' counters), and kept-alive requests through an upstream are answered as before."""
    cfg = {"log": {"level": "debug"}}
    env = {}
    if how == "env":
        env["KAILASH_MHD_PARK"] = "0"
    else:
        cfg["front_end"] = {"park": False}
    d = daemons.make(config=cfg, env=env, workflows={
        "echo": wf({"call": http(upstream.base + "/echo/k/{{ inputs.c }}/{{ inputs.i }}")},
                   gateway={"outputs": {"path": "call.response.content.path"}})})
    got = asyncio.run(one_connection(d.port, 7, 30, 10))
    assert got == [(200, "/echo/k/7/%d" % i) for i in range(30)]
    assert d.stop() == 0
    assert "mhd_park is off (front_end.park is false" in d.stderr()
    assert {p for _, p in loop_lines(d).values()} == {"off"}


def test_park_on_by_default_and_bad_switch_refused(daemons, tmp_path):
    from conftest import DaemonStartError, Daemon
    d = daemons.make(config={"log": {"level": "debug"}})
    assert d.stop() == 0
    assert "mhd_park is off" not in d.stderr()
    assert {p for _, p in loop_lines(d).values()} == {"on"}
    bad = Daemon(tmp_path / "bad", env={"KAILASH_MHD_PARK": "yes"})
    with pytest.raises(DaemonStartError, match="KAILASH_MHD_PARK: expected 0 or 1"):
        bad.start(timeout=5)
