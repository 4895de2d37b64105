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
  /raw/NAME                   the bytes RAW[NAME] as they are (malformed answers), then the connection
                              goes on being served
  /extra?mode=M               200 {"first": true} with a whole second answer ({"stray": true}) past it:
                              M=same in the same write (what a Content-Length shorter than the body
                              looks like too), late 200 ms later, chunked after a chunked body's end
  /hugelen                    Content-Length over any max_response_bytes, then 5 s of silence

--tls-cert CERT --tls-key KEY serve HTTPS instead.
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

META_BODY = b'{"items": [1], "page": 2, "meta": {"total_pages": 4}, "_links": {"self": {"href": "/me"}}}'
JSON_200 = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
# answers no upstream should send; the plain client refuses them (502)
RAW = {
    "folded_first": JSON_200.replace(b"OK\r\n", b"OK\r\n\tX-Folded: x\r\n") + b"Content-Length: 11\r\n\r\n{\"ok\":true}",
    "folded": JSON_200 + b"X-A: a\r\n  more\r\nContent-Length: 11\r\n\r\n{\"ok\":true}",
    "space_colon": JSON_200 + b"Transfer-Encoding : chunked\r\n\r\nb\r\n{\"ok\":true}\r\n0\r\n\r\n",
    "no_colon": JSON_200 + b"X-No-Colon\r\nContent-Length: 11\r\n\r\n{\"ok\":true}",
    "nul_value": JSON_200 + b"X-Nul: a\x00b\r\nContent-Length: 11\r\n\r\n{\"ok\":true}",
    "two_te": JSON_200 + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"b\r\n{\"ok\":true}\r\n0\r\n\r\n",
    # a name that is not UTF-8: dropped (libcurl) or refused (plain), never a 500
    "latin1_name": JSON_200 + b"X-\xe9t\xe9: v\r\nContent-Length: 11\r\n\r\n{\"ok\":true}",
    # an answer as a REST API sends one: names in mixed case (one repeated in another case), a value
    # with trailing blanks, rate limits, a Link header, pagination and HAL links in the body
    "meta": (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-RateLimit-Limit: 100\r\n"
             b"x-ratelimit-remaining: 7\r\nX-Trail: v  \r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\n"
             b"Link: </raw/meta?page=3>; rel=\"next\", </raw/meta?page=1>; rel=\"prev\"\r\n"
             b"Content-Length: %d\r\n\r\n%s" % (len(META_BODY), META_BODY)),
    # bodies as the SDK reads them: by their charset, JSON whatever the type (RESTClientNode), text
    # when JSON fails
    "latin1_text": b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=ISO-8859-1\r\nContent-Length: 5\r\n\r\ncaf\xe9!",
    "cp1252_text": b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=windows-1252\r\nContent-Length: 4\r\n\r\n"
                   b"\x80\x93x\x94",
    "json_as_text": b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 8\r\n\r\n{\"k\": 1}",
    "empty_json": JSON_200 + b"Content-Length: 0\r\n\r\n",
    "bad_utf8_json": JSON_200 + b"Content-Length: 12\r\n\r\n{\"k\": \"a\xffb\"}",
    "teapot": b"HTTP/1.1 418 I'm a teapot\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{broken",
}
STRAY_BODY = b'{"stray":true}'
STRAY = JSON_200 + b"Content-Length: %d\r\n\r\n" % len(STRAY_BODY) + STRAY_BODY
FIRST_BODY = b'{"first":true}'


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
    if head == "slowcount" and len(seg) > 1:  # counts, then answers after ms (single-flight tests)
        key = "/".join(seg[1:])
        n = count("slowcount/" + key)
        await asyncio.sleep(int(q.get("ms", "200")) / 1000.0)
        return response(200, {"key": key, "hits": n})
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
    if head == "raw" and len(seg) > 1 and seg[1] in RAW:
        return RAW[seg[1]]
    if head == "extra":
        return await extra(q.get("mode", "same"), writer)
    if head == "hugelen":
        writer.write(JSON_200 + b"Content-Length: 999999999999\r\n\r\n{")
        await writer.drain()
        await asyncio.sleep(5)
        raise Close()
    if head == "text":
        return response(200, ctype="text/plain", raw=b"this is not json {")
    return response(404, {"error": "no such endpoint", "path": path})


async def late(writer, data):
    await asyncio.sleep(0.2)
    try:
        writer.write(data)
        await writer.drain()
    except (ConnectionError, RuntimeError):
        pass


async def extra(mode, writer):
    """A whole answer, then a second one nobody asked for on the same connection."""
    framed = JSON_200 + b"Content-Length: %d\r\n\r\n" % len(FIRST_BODY) + FIRST_BODY
    if mode == "late":
        asyncio.get_running_loop().create_task(late(writer, STRAY))
        return framed
    if mode == "chunked":
        return (JSON_200 + b"Transfer-Encoding: chunked\r\n\r\n%x\r\n" % len(FIRST_BODY) + FIRST_BODY +
                b"\r\n0\r\n\r\n" + STRAY)
    return framed + STRAY


async def hold(reader, target):
    """/hold/KEY?ms=N: answers after N ms unless the caller goes away first. While it waits,
    /_hits/holding/KEY counts it, so a test can see whether a gateway still holds the call open."""
    u = urlsplit(target)
    key = "holding/" + unquote(u.path)[len("/hold/"):]
    ms = int(dict(parse_qsl(u.query)).get("ms", "5000"))
    hits[key] += 1
    peer = asyncio.ensure_future(reader.read(1))
    try:
        done, _ = await asyncio.wait({peer}, timeout=ms / 1000.0)
        if done:  # the caller closed (or sent bytes it should not have): stop holding
            raise Close()
        return response(200, {"held_ms": ms})
    finally:
        peer.cancel()
        hits[key] -= 1


async def serve_conn(reader, writer):
    try:
        while True:
            req = await read_request(reader)
            if req is None:
                break
            method, target, version, headers, body = req
            if target.startswith("/hold/"):
                out = await hold(reader, target)
            else:
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


async def main(host, port, cert=None, key=None):
    ctx = None
    if cert:
        import ssl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
    server = await asyncio.start_server(serve_conn, host, port, backlog=4096, reuse_address=True, ssl=ctx)
    print("PORT %d" % server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    a = ap.parse_args()
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass
    try:
        asyncio.run(main(a.host, a.port, a.tls_cert, a.tls_key))
    except KeyboardInterrupt:
        sys.exit(0)
