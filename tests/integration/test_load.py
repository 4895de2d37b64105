"""The issue's proof: with `workers: 2`, 1,000 concurrent runs of a workflow whose upstream waits
500 ms all succeed, and the daemon's thread count stays under 16 throughout (DESIGN.md: "No thread
waits on an upstream HTTP call ... Thousands of concurrent upstream calls cost sockets, not threads").

The client is one asyncio loop with 1,000 raw sockets (no client threads to compete with)."""
import asyncio
import json
import threading
import time

from conftest import raise_nofile, read_answer
from wfs import http, wf

N = 1000
UPSTREAM_MS = 500
MAX_THREADS = 16


async def one_run(port, payload, timeout):
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    try:
        head = ("POST /workflows/fan/run HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                "Content-Length: %d\r\nConnection: close\r\n\r\n" % len(payload)).encode()
        writer.write(head + payload)
        await writer.drain()
        return await read_answer(reader, timeout)
    finally:
        writer.close()


async def many(port, n, timeout):
    payloads = [json.dumps({"inputs": {"i": i}}).encode() for i in range(n)]
    return await asyncio.gather(*(one_run(port, p, timeout) for p in payloads), return_exceptions=True)


class ThreadSampler(threading.Thread):
    def __init__(self, daemon):
        super().__init__(daemon=True)
        self.d = daemon
        self.max = 0
        self.samples = 0
        self.stop_flag = threading.Event()

    def run(self):
        while not self.stop_flag.is_set():
            try:
                self.max = max(self.max, self.d.threads())
                self.samples += 1
            except (OSError, AssertionError):
                pass
            time.sleep(0.01)


def test_thousand_concurrent_runs_few_threads(daemons, upstream):
    assert raise_nofile() >= 4 * N, "RLIMIT_NOFILE too low for the load test"
    fan = wf({"call": http(upstream.base + "/slow?ms=%d" % UPSTREAM_MS, timeout=30)},
             gateway={"executor": {"max_concurrency": N, "max_queue": N},
                      "outputs": {"slept": "call.response.content.slept_ms", "code": "call.response.status_code"}})
    d = daemons.make(config={"workers": 2}, workflows={"fan": fan})
    idle_threads = d.threads()
    assert idle_threads < MAX_THREADS, "already %d threads when idle" % idle_threads
    hits_before = upstream.hits("_all")

    sampler = ThreadSampler(d)
    sampler.start()
    t0 = time.time()
    try:
        results = asyncio.run(many(d.port, N, timeout=60))
    finally:
        sampler.stop_flag.set()
        sampler.join(2)
    took = time.time() - t0

    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, "%d of %d requests failed, e.g. %r" % (len(errors), N, errors[:3])
    statuses = {}
    for status, _ in results:
        statuses[status] = statuses.get(status, 0) + 1
    assert statuses == {200: N}, statuses
    for _, body in results:
        b = json.loads(body)
        assert b["status"] == "completed" and b["outputs"]["slept"] == UPSTREAM_MS, b
    assert upstream.hits("_all") - hits_before >= N
    assert sampler.samples > 10
    assert sampler.max < MAX_THREADS, "daemon reached %d threads under load" % sampler.max
    # 1,000 x 500 ms on 2 workers would take 250 s if a thread waited per upstream call
    assert took < 15, "1,000 concurrent 500 ms runs took %.1fs" % took
    assert d.alive() and d.get("/health").status_code == 200
