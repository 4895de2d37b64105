"""The middleware chain that can wait (issue 10, item 5; DESIGN.md "Waiting inside the loop").

A step may park a request (its connection suspended, the body unread) and continue the chain later
from a callback on the same loop, as the rate-limit and cache steps will on Redis. The test-only step
`test_wait` (active with KAILASH_TEST_CHAIN_WAIT=1) parks a request carrying `X-Test-Wait-Ms` on a
loop timer; `X-Test-Wait-Answer` makes it answer 503 after the wait instead of going on."""
import asyncio
import json
import socket
import time

import pytest

from conftest import assert_error, read_answer
import wfs


@pytest.fixture(scope="module")
def d(module_daemons):
    return module_daemons.make(config={"workers": 1, "max_body_bytes": 4096},
                               env={"KAILASH_TEST_CHAIN_WAIT": "1"},
                               workflows={"hello": wfs.example("hello")})


def run_bytes(name, inputs, wait_ms=None, extra=""):
    body = json.dumps({"inputs": inputs}).encode()
    head = "POST /workflows/%s/run HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" \
           "Content-Length: %d\r\n%s%s\r\n" % (name, len(body), "X-Test-Wait-Ms: %d\r\n" % wait_ms if wait_ms else "",
                                               extra)
    return head.encode(), body


def test_a_parked_request_goes_on_after_its_wait(d):
    t0 = time.monotonic()
    r = d.run("hello", {"name": "Ada"}, headers={"X-Test-Wait-Ms": "300"})
    took = time.monotonic() - t0
    assert r.status_code == 200, r.text
    assert r.json()["outputs"] == {"greeting": "Hello, Ada!"}
    assert took >= 0.29
    assert r.headers["X-Request-ID"] and r.headers["X-Run-ID"]


def test_a_parked_step_may_answer(d):
    r = d.run("hello", {"name": "Ada"}, headers={"X-Test-Wait-Ms": "50", "X-Test-Wait-Answer": "1"})
    err = assert_error(r, 503, "unavailable")
    assert "test_wait" in err["message"]
    assert "X-Run-ID" not in r.headers  # nothing ran


def test_route_errors_come_before_a_wait(d):
    t0 = time.monotonic()
    assert_error(d.run("nope", {}, headers={"X-Test-Wait-Ms": "2000"}), 404, "not_found")
    assert_error(d.get("/workflows/hello/run", headers={"X-Test-Wait-Ms": "2000"}), 405, "method_not_allowed")
    assert time.monotonic() - t0 < 1.5


def test_the_body_is_read_after_the_wait(d):
    """The wait comes before the body is read: a body sent in two parts around the wait arrives
    whole, and a Content-Length over max_body_bytes is refused after the wait without the body."""
    async def go():
        reader, writer = await asyncio.open_connection("127.0.0.1", d.port)
        head, body = run_bytes("hello", {"name": "Grace"}, wait_ms=200)
        writer.write(head + body[:5])
        await writer.drain()
        await asyncio.sleep(0.3)
        writer.write(body[5:])
        await writer.drain()
        status, got = await read_answer(reader, 5)
        # a body too large: answered 413 after the wait, with nothing of the body sent
        writer.write(b"POST /workflows/hello/run HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"X-Test-Wait-Ms: 100\r\nContent-Length: 999999\r\n\r\n")
        await writer.drain()
        status2, got2 = await read_answer(reader, 5)
        writer.close()
        return status, json.loads(got), status2, json.loads(got2)
    status, got, status2, got2 = asyncio.run(go())
    assert status == 200 and got["outputs"] == {"greeting": "Hello, Grace!"}, got
    assert status2 == 413 and got2["error"]["code"] == "payload_too_large"


def test_waits_do_not_hold_the_loop(d):
    """One loop, 200 requests each parked 300 ms at once over 50 kept-alive connections: they all
    answer in about one wait, not 200 waits (a wait costs a timer, not the loop)."""
    async def conn(c):
        reader, writer = await asyncio.open_connection("127.0.0.1", d.port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        out = []
        for i in range(4):
            head, body = run_bytes("hello", {"name": "c%d-%d" % (c, i)}, wait_ms=300)
            writer.write(head + body)
            await writer.drain()
            status, got = await read_answer(reader, 10)
            out.append((status, json.loads(got)["outputs"]["greeting"]))
        writer.close()
        return out

    async def all_of_them():
        return await asyncio.gather(*(conn(c) for c in range(50)))
    t0 = time.monotonic()
    results = asyncio.run(all_of_them())
    took = time.monotonic() - t0
    for c, out in enumerate(results):
        assert out == [(200, "Hello, c%d-%d!" % (c, i)) for i in range(4)]
    assert took < 4 * 0.3 * 4, took  # four rounds of one wait each, with room for a slow host


def test_clients_leaving_mid_wait(d):
    """Half the clients leave while parked: the others are answered, the leavers are logged as 499,
    and the daemon goes on serving (under `make asan`, nothing leaks or is used after free)."""
    async def one(i, leave):
        reader, writer = await asyncio.open_connection("127.0.0.1", d.port)
        head, body = run_bytes("hello", {"name": "x%d" % i}, wait_ms=400, extra="X-Request-ID: leave-%d-%d\r\n"
                               % (i, leave))
        writer.write(head + (b"" if leave else body))
        await writer.drain()
        if leave:
            await asyncio.sleep(0.05)
            writer.transport.abort()
            return None
        status, _ = await read_answer(reader, 5)
        writer.close()
        return status

    async def all_of_them():
        return await asyncio.gather(*(one(i, i % 2) for i in range(60)))
    got = asyncio.run(all_of_them())
    assert [s for s in got if s is not None] == [200] * 30
    assert d.get("/health").status_code == 200
    assert d.run("hello", {"name": "after"}).status_code == 200
    deadline = time.time() + 5
    while True:
        lines = [x for x in d.access_log() if x.get("request_id", "").startswith("leave-")]
        if len(lines) >= 60 or time.time() > deadline:
            break
        time.sleep(0.05)
    leavers = [x for x in lines if x.get("request_id", "").endswith("-1")]
    assert len(leavers) == 30 and all(x["status"] == 499 for x in leavers), leavers[:3]


def test_without_the_switch_nothing_waits(daemons):
    d = daemons.make(workflows={"hello": wfs.example("hello")})
    t0 = time.monotonic()
    for _ in range(5):
        assert d.run("hello", {"name": "x"}, headers={"X-Test-Wait-Ms": "1000"}).status_code == 200
    assert time.monotonic() - t0 < 3
