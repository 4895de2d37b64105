"""The compatibility corpus's HTTP upstream: deterministic answers (fixed Server and Date headers,
fixed bodies) so the SDK's recorded outputs and kailashd's can be compared byte for byte. Used by
gen.py when recording and by tests/integration/test_compat.py when replaying. Pure standard library."""
import http.server
import json
import threading
from urllib.parse import urlsplit, parse_qsl


def _json(status, obj, extra=None):
    return status, "application/json", json.dumps(obj).encode(), extra or {}


ROUTES = {
    "/users/7": lambda q, body: _json(200, {"id": 7, "name": "Ada", "query": q}),
    "/users": lambda q, body: _json(200, {"items": [{"id": 1}, {"id": 2}], "page": 1, "per_page": 2,
                                          "total": 9, "meta": {"total_pages": 5},
                                          "_links": {"next": {"href": "/users?page=2"}}}),
    "/limited": lambda q, body: _json(200, {"ok": True}, {"X-RateLimit-Limit": "100",
                                                          "X-RateLimit-Remaining": "99",
                                                          "Link": '</limited?page=2>; rel="next"'}),
    "/text": lambda q, body: (200, "text/plain", b"plain words\n", {}),
    "/missing": lambda q, body: _json(404, {"error": {"message": "no such thing"}}),
    "/gone": lambda q, body: _json(410, {"message": "gone for good"}),
    "/boom": lambda q, body: _json(500, {"error": "exploded"}),
    "/busy": lambda q, body: (503, "text/plain", b"try later", {}),
    "/echo": lambda q, body: _json(200, {"query": q, "body": body}),
    "/created": lambda q, body: _json(201, {"created": body}),
}


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "compat-upstream"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    def date_time_string(self, timestamp=None):
        return "Thu, 01 Jan 2026 00:00:00 GMT"

    def log_message(self, *args):
        pass

    def _answer(self):
        parts = urlsplit(self.path)
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        route = ROUTES.get(parts.path)
        if route is None:
            status, ctype, data, extra = _json(404, {"error": "no route " + parts.path})
        else:
            status, ctype, data, extra = route(dict(parse_qsl(parts.query)), body)
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        for k, v in extra.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _answer


def start():
    """Starts the upstream on a free loopback port; returns (server, port)."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, srv.server_address[1]
