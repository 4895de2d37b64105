"""callback_url through the real daemon (issue 16; API.md "Running a workflow", src/jobs/callback*.c).

An async run with a callback_url POSTs its final record there: Content-Type application/json,
X-Kailash-Run-ID, and X-Kailash-Signature "sha256=<hex HMAC-SHA256(key, body)>" with the key from
the environment variable jobs.callback_secret_env. The receiver here is a Python http.server on
127.0.0.1 (listed in jobs.callback_allow_hosts) whose answers follow a script: a 500 is retried
after a backoff (KAILASH_CALLBACK_BACKOFF_MS makes it short), a 2xx ends it, max attempts of
failures end it with one warning in the log. At accept, a URL the rules refuse is a 400, and so is
a callback_url in a synchronous request. The daemon refuses to start without its secret."""
import hashlib
import hmac
import http.server
import json
import threading

import pytest

from conftest import DaemonStartError, assert_error, wait_for
from wfs import transform, wf

SECRET = "kcb-integration-secret-0123456789"
HELLO = wf({"greet": transform({"greeting": "Hello, {{ inputs.name }}!"})})


class Receiver:
    """A local HTTP receiver: keeps every POST (path, headers, body) and answers the next status of
    its script (the last one repeats)."""

    def __init__(self, script):
        self.script = list(script)
        self.got = []
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                with outer.lock:
                    i = len(outer.got)
                    outer.got.append((self.path, dict(self.headers.items()), body))
                    status = outer.script[min(i, len(outer.script) - 1)]
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path="/hook?token=t0k3n"):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def count(self):
        with self.lock:
            return len(self.got)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver_500_then_200():
    r = Receiver([500, 200])
    yield r
    r.close()


@pytest.fixture
def receiver_always_500():
    r = Receiver([500])
    yield r
    r.close()


def make_daemon(daemons, **jobs):
    cfg = {"callback_allow_hosts": ["127.0.0.1"], "callback_secret_env": "KCB_SECRET",
           "callback_max_attempts": 3, "callback_timeout_ms": 2000}
    cfg.update(jobs)
    return daemons.make(config={"jobs": cfg}, workflows={"hello": HELLO},
                        env={"KCB_SECRET": SECRET, "KAILASH_CALLBACK_BACKOFF_MS": "50"})


def accept(d, callback_url, name="Ada"):
    r = d.post("/workflows/hello/run?mode=async", json={"inputs": {"name": name}, "callback_url": callback_url})
    assert r.status_code == 202, r.text
    return r.json()["run_id"]


def test_callback_delivered_after_a_500_and_signed(daemons, receiver_500_then_200):
    rcv = receiver_500_then_200
    d = make_daemon(daemons)
    rid = accept(d, rcv.url())
    assert wait_for(lambda: rcv.count() >= 2, 15), rcv.got
    assert not wait_for(lambda: rcv.count() > 2, 0.5), "delivered, yet tried again: %d" % rcv.count()
    first, second = rcv.got
    assert first[2] == second[2]  # the same bytes each try
    path, headers, body = second
    assert path == "/hook?token=t0k3n"
    h = {k.lower(): v for k, v in headers.items()}
    assert h["content-type"] == "application/json"
    assert h["user-agent"].startswith("kailashd")
    assert h["x-kailash-run-id"] == rid
    want = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(h["x-kailash-signature"], want), (h["x-kailash-signature"], want)
    rec = json.loads(body)
    assert rec["run_id"] == rid and rec["status"] == "completed", rec
    assert rec["outputs"]["greet"]["result"]["greeting"] == "Hello, Ada!", rec
    assert SECRET not in d.stderr() and SECRET not in d.stdout()


def test_callback_gives_up_after_max_attempts_with_one_warning(daemons, receiver_always_500):
    rcv = receiver_always_500
    d = make_daemon(daemons, callback_max_attempts=2)
    rid = accept(d, rcv.url())
    assert wait_for(lambda: rcv.count() >= 2, 15)

    def warned():
        return [l for l in d.stderr().splitlines() if "callback for run %s" % rid in l]
    assert wait_for(lambda: warned(), 5), d.stderr()[-2000:]
    assert not wait_for(lambda: rcv.count() > 2, 0.5)
    lines = warned()
    assert len(lines) == 1, lines
    line = json.loads(lines[0])
    assert line["level"] == "warn" and "after 2 attempts: HTTP 500" in line["msg"], line
    assert "t0k3n" not in d.stderr() and SECRET not in d.stderr() and "Hello, Ada" not in d.stderr()


@pytest.mark.parametrize("url", [
    "http://127.0.0.2:9/hook",          # loopback, not the listed 127.0.0.1
    "http://[::1]:9/hook",
    "http://localhost:9/hook",          # not listed
    "http://169.254.169.254/latest/meta-data/",
    "http://hooks.example.com/hook",    # not listed
    "file:///etc/passwd",
    "gopher://127.0.0.1/",
    "http://user:pa55@127.0.0.1:9/hook",
    "http://127.0.0.1/" + "a" * 2100,
])
def test_refused_callback_url_is_400_at_accept(daemons, url):
    d = make_daemon(daemons)
    r = d.post("/workflows/hello/run?mode=async", json={"inputs": {"name": "x"}, "callback_url": url})
    err = assert_error(r, 400, "bad_request")
    assert "callback_url" in err["message"], err
    assert "pa55" not in err["message"] and len(err["message"]) < 300, err


def test_loopback_refused_without_an_allow_list(daemons):
    d = daemons.make(workflows={"hello": HELLO})
    for url in ("http://127.0.0.1:9/hook", "http://2130706433:9/hook", "http://[::ffff:127.0.0.1]/", "http://0.0.0.0/"):
        r = d.post("/workflows/hello/run?mode=async", json={"inputs": {"name": "x"}, "callback_url": url})
        assert_error(r, 400, "bad_request")


def test_callback_url_in_a_sync_request_is_400(daemons, receiver_500_then_200):
    d = make_daemon(daemons)
    r = d.post("/workflows/hello/run", json={"inputs": {"name": "x"}, "callback_url": receiver_500_then_200.url()})
    err = assert_error(r, 400, "bad_request")
    assert "callback_url" in err["message"]
    assert receiver_500_then_200.count() == 0


@pytest.mark.parametrize("value, why", [(None, "not set"), ("short-15-bytes!", "16")])
def test_daemon_refuses_to_start_without_its_secret(daemons, value, why):
    env = {"KAILASH_CALLBACK_BACKOFF_MS": "50"}
    if value is not None:
        env["KCB_SECRET"] = value
    d = daemons.make(config={"jobs": {"callback_secret_env": "KCB_SECRET"}}, workflows={"hello": HELLO},
                     env=env, start=False)
    with pytest.raises(DaemonStartError) as e:
        d.start()
    assert "KCB_SECRET" in str(e.value) and why in str(e.value), str(e.value)
    if value is not None:
        assert value not in str(e.value)
