"""A small, fast HTTP/1.1 upstream for the integration tests (asyncio, one process, keep-alive).

It runs as its own process so that the test process's client threads never slow it down, and it
holds thousands of concurrent connections cheaply (the 1,000-run load test parks every one of them
in /slow for 500 ms). Started by conftest.py: `python3 upstream.py [--host H] [--port P]`; it prints
`PORT <n>` on stdout once it listens.

Endpoints (any method unless noted):
  /echo[/...]                 200 {"method","path","query","headers","body"} (body parsed as JSON if it is)
  /slow?ms=N                  sleeps N ms, then 200 {"slept_ms": N}
  /status/N                   answers status N with {"status": N}
  /flaky/KEY?fail=N&code=C    the first N hits of KEY answer C, later ones 200 {"key","hits"}
  /counter/KEY[/...]         counts a hit of KEY (the rest of the path), 200 {"key","hits"}
  /_hits/KEY                  200 {"key","hits"} without counting ("_all" = every request served)
  /garbage                    writes bytes that are not HTTP, then closes
  /close                      closes the connection without answering
  /large?bytes=N              200 {"data": "xxx..."} with N x's
  /text                       200 text/plain that is not JSON
"""
import argparse
import asyncio
import json
import sys
from collections import defaultdict
from urllib.parse import parse_qsl, unquote, urlsplit

REASONS = {200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request", 401: "Unauthorized",
           403: "Forbidden", 404: "Not Found", 418: "I'm a teapot", 429: "Too Many Requests",
           500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
           504: "Gateway Timeout"}

hits = defaultdict(int)


def count(key):
    hits[key] += 1
    return hits[key]


class Close(Exception):
    """Raised by a handler to drop the connection without (further) answering."""


async def read_request(reader):
    line = await reader.readline()
    if not line:
        return None
    while line in (b"\r\n", b"\n"):
        line = await reader.readline()
        if not line:
            return None
    parts = line.decode("latin-1").rstrip("\r\n").split(" ")
    if len(parts) != 3:
        raise Close()
    method, target, version = parts
    headers = {}
    while True:
        h = await reader.readline()
        if not h:
            return None
        if h in (b"\r\n", b"\n"):
            break
        k, _, v = h.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()
    body = b""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
                break
            body += await reader.readexactly(size)
            await reader.readline()
    elif "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    return method, target, version, headers, body


def response(status, obj=None, ctype="application/json", raw=None, keep_alive=True):
    if raw is None:
        raw = json.dumps(obj).encode() if obj is not None else b""
    head = "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n" % (
        status, REASONS.get(status, "Status"), ctype, len(raw),
        "" if keep_alive else "Connection: close\r\n")
    return head.encode() + raw


async def handle(method, target, headers, body, writer):
    u = urlsplit(target)
    path = unquote(u.path)
    q = dict(parse_qsl(u.query, keep_blank_values=True))
    if not path.startswith("/_hits/"):
        count("_all")
    seg = path.strip("/").split("/")
    head = seg[0] if seg else ""
    if head == "echo":
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = body.decode("utf-8", "replace")
        return response(200, {"method": method, "path": path, "query": q, "headers": headers,
                              "body": parsed, "raw_target": target})
    if head == "slow":
        ms = int(q.get("ms", "100"))
        await asyncio.sleep(ms / 1000.0)
        return response(200, {"slept_ms": ms})
    if head == "status" and len(seg) > 1:
        code = int(seg[1])
        return response(code, {"status": code})
    if head == "flaky" and len(seg) > 1:
        n = count("flaky/" + seg[1])
        if n <= int(q.get("fail", "1")):
            code = int(q.get("code", "503"))
            return response(code, {"status": code, "hits": n})
        return response(200, {"key": seg[1], "hits": n})
    if head == "counter" and len(seg) > 1:
        key = "/".join(seg[1:])
        return response(200, {"key": key, "hits": count("counter/" + key)})
    if head == "_hits" and len(seg) > 1:
        key = "/".join(seg[1:])
        return response(200, {"key": key, "hits": hits.get(key, 0)})
    if head == "garbage":
        writer.write(b"\x00\xff\xfeNOT-HTTP garbage \x01\x02\x03\r\n\r\n\x7f" * 8)
        await writer.drain()
        raise Close()
    if head == "close":
        raise Close()
    if head == "large":
        n = int(q.get("bytes", "1000"))
        return response(200, raw=b'{"data":"' + b"x" * n + b'"}')
    if head == "text":
        return response(200, ctype="text/plain", raw=b"this is not json {")
    return response(404, {"error": "no such endpoint", "path": path})


async def serve_conn(reader, writer):
    try:
        while True:
            req = await read_request(reader)
            if req is None:
                break
            method, target, version, headers, body = req
            out = await handle(method, target, headers, body, writer)
            close = headers.get("connection", "").lower() == "close" or version == "HTTP/1.0"
            writer.write(out)
            await writer.drain()
            if close:
                break
    except (Close, ConnectionError, asyncio.IncompleteReadError, ValueError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def main(host, port):
    server = await asyncio.start_server(serve_conn, host, port, backlog=4096, reuse_address=True)
    print("PORT %d" % server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    a = ap.parse_args()
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass
    try:
        asyncio.run(main(a.host, a.port))
    except KeyboardInterrupt:
        sys.exit(0)
