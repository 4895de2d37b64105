"""Cancelling runs (issue 10, item 3; DESIGN.md "A run has a home loop, and can be cancelled").

A client that leaves before its answer cancels its run: the transfers in flight are aborted (the
upstream sees its connection close), no further node starts, the access log says 499. A run that
ends for another reason (its timeout, a failing node) stops what it still has in flight too. The
upstream's /hold/KEY endpoint counts the calls it is holding open (/_hits/holding/KEY)."""
import asyncio
import json
import time

import pytest

from conftest import assert_error, closed_port, holding, wait_for
from wfs import conn, http, transform, wf


@pytest.fixture(scope="module", params=["plain", "libcurl"])
def d(request, module_daemons, upstream):
    U = upstream.base
    env = {"KAILASH_UPSTREAM_CLIENT": "libcurl"} if request.param == "libcurl" else {}
    return module_daemons.make(env=env, workflows={
        "hold": wf({"call": http(U + "/hold/{{ inputs.k }}?ms=8000", timeout=20)}),
        "hold_then": wf({"call": http(U + "/hold/{{ inputs.k }}?ms=8000", timeout=20),
                         "after": http(U + "/counter/after-{{ inputs.k }}")},
                        [conn("call", "status_code", "after", "params")]),
        "deadline": wf({"call": http(U + "/hold/{{ inputs.k }}?ms=8000", timeout=20)},
                       gateway={"timeout_ms": 300}),
        "sibling": wf({"call": http(U + "/hold/{{ inputs.k }}?ms=8000", timeout=20),
                       "bad": http("http://127.0.0.1:%d/x" % closed_port(), retry_count=0),
                       "out": transform({"a": "{{ nodes.call.status_code }}"})},
                      [conn("call", "status_code", "out", "data"), conn("bad", "status_code", "out", "b")]),
    })


def leave_after_sending(port, name, inputs, up, key, rid):
    """Sends one run, waits until the upstream holds its call, then closes the connection."""
    async def go():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        body = json.dumps({"inputs": inputs}).encode()
        writer.write(b"POST /workflows/%s/run HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"X-Request-ID: %s\r\nContent-Length: %d\r\n\r\n" % (name.encode(), rid.encode(), len(body))
                     + body)
        await writer.drain()
        for _ in range(200):
            if holding(up, key) == 1:
                break
            await asyncio.sleep(0.02)
        writer.close()
    asyncio.run(go())


def test_a_client_leaving_cancels_its_run(d, upstream):
    key = "leave-%s-%d" % (d.env.get("KAILASH_UPSTREAM_CLIENT", "plain"), time.time_ns())
    leave_after_sending(d.port, "hold_then", {"k": key}, upstream, key, "rid-" + key)
    assert wait_for(lambda: holding(upstream, key) == 0, 2.0), "the upstream call outlived its client"
    entries = d.wait_log(lambda e: e.get("request_id") == "rid-" + key)
    assert entries and entries[0]["status"] == 499, entries
    time.sleep(0.2)
    assert upstream.hits("counter/after-" + key) == 0  # no node started after the cancel
    assert d.get("/health").status_code == 200


def test_a_run_past_its_deadline_stops_its_calls(d, upstream):
    key = "deadline-%s-%d" % (d.env.get("KAILASH_UPSTREAM_CLIENT", "plain"), time.time_ns())
    t0 = time.time()
    assert_error(d.run("deadline", {"k": key}), 504, "timeout")
    assert time.time() - t0 < 3
    assert wait_for(lambda: holding(upstream, key) == 0, 2.0), "the call went on after the run's 504"


def test_a_failed_run_stops_its_other_calls(d, upstream):
    key = "sibling-%s-%d" % (d.env.get("KAILASH_UPSTREAM_CLIENT", "plain"), time.time_ns())
    err = assert_error(d.run("sibling", {"k": key}), 502, "upstream_error")
    assert err["details"]["node"] == "bad"
    assert wait_for(lambda: holding(upstream, key) == 0, 2.0), "the sibling call went on after the run failed"
