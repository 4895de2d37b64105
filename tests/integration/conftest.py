"""Fixtures for the black-box tests: a kailashd daemon in a temp dir, and a real local upstream.

A daemon gets its own temp dir (config, workflows/, var/), cwd = that dir, a free port on
127.0.0.1, stdout (the JSON access log) and stderr captured to files. It is ready when GET /health
answers; it is stopped with SIGTERM and must then exit 0 (checked at teardown).

The upstream (upstream.py) runs as its own process for the whole session.
"""
import asyncio
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest
import requests

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
BIN = os.path.abspath(os.environ.get("KAILASHD_BIN", os.path.join(REPO, "build", "kailashd")))

# Environment variables that would change the daemon's or libcurl's behaviour behind our back.
_SCRUB = ("KAILASH_CONFIG", "KAILASH_HOST", "KAILASH_PORT", "KAILASH_WORKERS", "KAILASH_REDIS_URL",
          "KAILASH_DATABASE_URL", "KAILASH_LOG_LEVEL", "http_proxy", "https_proxy", "HTTP_PROXY",
          "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY")


def raise_nofile():
    """Raise this process's RLIMIT_NOFILE soft limit to the hard limit (daemons inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


raise_nofile()


async def read_answer(reader, timeout):
    """One HTTP answer from an asyncio stream: (status, body bytes). The body is Content-Length long,
    or runs to the end of the stream when there is none."""
    status = int((await asyncio.wait_for(reader.readline(), timeout)).split()[1])
    length = None
    while True:
        line = await asyncio.wait_for(reader.readline(), timeout)
        if line in (b"\r\n", b""):
            break
        k, _, v = line.decode("latin-1").partition(":")
        if k.strip().lower() == "content-length":
            length = int(v.strip())
    body = await asyncio.wait_for(reader.readexactly(length) if length is not None else reader.read(), timeout)
    return status, body


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def closed_port():
    """A port on 127.0.0.1 where nothing listens (connections are refused)."""
    return free_port()


def session():
    s = requests.Session()
    s.trust_env = False  # never go through a proxy for 127.0.0.1
    return s


def base_env(extra=None):
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    env.update(extra or {})
    return env


def deep_merge(a, b):
    out = dict(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        if isinstance(obj, (str, bytes)):
            f.write(obj if isinstance(obj, str) else obj.decode())
        else:
            json.dump(obj, f, indent=2)


def run_cli(args, cwd, env=None, timeout=20):
    """Runs kailashd with args (no server expected); returns CompletedProcess with text output."""
    return subprocess.run([BIN] + list(args), cwd=cwd, env=base_env(env), capture_output=True,
                          text=True, timeout=timeout)


# ---------------------------------------------------------------------------------------------
# upstream


class Upstream:
    def __init__(self, host="127.0.0.1"):
        self.host = host
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "upstream.py"), "--host", host],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=base_env())
        line = self.proc.stdout.readline()
        m = re.match(r"PORT (\d+)", line or "")
        if not m:
            self.proc.kill()
            raise RuntimeError("upstream did not start: %r %s" % (line, self.proc.stderr.read()))
        self.port = int(m.group(1))
        self.http = session()

    @property
    def base(self):
        return "http://%s:%d" % (self.host, self.port)

    def url(self, path):
        return self.base + path

    def hits(self, key):
        return self.http.get(self.url("/_hits/" + key), timeout=5).json()["hits"]

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="session")
def upstream():
    u = Upstream()
    yield u
    u.stop()


@pytest.fixture(scope="session")
def canary():
    """A second upstream that no workflow names: any hit on it means a node was redirected."""
    u = Upstream()
    yield u
    u.stop()


# ---------------------------------------------------------------------------------------------
# redis


class RedisServer:
    """A real redis-server on a free loopback port in its own temp dir (no persistence). stop() and
    start() again keep the port; pause()/resume() freeze it with SIGSTOP/SIGCONT."""

    def __init__(self, root, password=None):
        self.root = str(root)
        os.makedirs(self.root, exist_ok=True)
        self.port = free_port()
        self.password = password
        self.proc = None
        self.start()

    @property
    def url(self):
        auth = ":%s@" % self.password if self.password else ""
        return "redis://%s127.0.0.1:%d/0" % (auth, self.port)

    def start(self, timeout=10):
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", self.root, "--daemonize", "no", "--loglevel", "warning"]
        if self.password:
            argv += ["--requirepass", self.password]
        self.log = open(os.path.join(self.root, "redis.log"), "ab")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=self.log, env=base_env())
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.ping():
                return self
            if self.proc.poll() is not None:
                raise RuntimeError("redis-server exited with %s" % self.proc.returncode)
            time.sleep(0.05)
        raise RuntimeError("redis-server did not answer PING")

    def command(self, *args, timeout=2.0):
        """One command in RESP over a plain socket; the reply line(s) as text."""
        cmd = "*%d\r\n" % len(args) + "".join("$%d\r\n%s\r\n" % (len(str(a).encode()), a) for a in args)
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as c:
            if self.password:
                c.sendall(("*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(self.password), self.password)).encode())
                c.recv(100)
            c.sendall(cmd.encode())
            return c.recv(65536).decode(errors="replace")

    def ping(self):
        try:
            return "PONG" in self.command("PING", timeout=0.5)
        except OSError:
            return False

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)


@pytest.fixture
def redis_server(tmp_path):
    r = RedisServer(tmp_path / "redis")
    yield r
    if r.proc.poll() is None:
        r.resume()
    r.stop()


# ---------------------------------------------------------------------------------------------
# postgres


class PgServer:
    """A throwaway PostgreSQL server (tests/pg.sh: initdb in a temp dir, trust auth on loopback, a free
    port), one per session. stop() and start() again keep the port and the data. new_database()
    creates an empty database and makes it the one `url` names; sql() runs a query with psql."""

    SCRIPT = os.path.join(REPO, "tests", "pg.sh")

    def __init__(self):
        # under /tmp itself: as root the server runs as user postgres, which must reach the dir
        self.root = tempfile.mkdtemp(prefix="kailash-pg-")
        self.db = "postgres"
        self.port = None
        self.start()

    @property
    def url(self):
        return "postgresql://postgres@127.0.0.1:%d/%s" % (self.port, self.db)

    def url_for(self, db):
        return "postgresql://postgres@127.0.0.1:%d/%s" % (self.port, db)

    def _sh(self, cmd, timeout=60):
        r = subprocess.run(["sh", self.SCRIPT, cmd, self.root], capture_output=True, text=True,
                           timeout=timeout, env=base_env())
        if r.returncode != 0:
            raise RuntimeError("tests/pg.sh %s failed: %s%s" % (cmd, r.stdout, r.stderr))
        return r.stdout.strip()

    def start(self):
        url = self._sh("up")
        self.port = int(re.search(r":(\d+)/", url).group(1))
        return self

    def stop(self):
        self._sh("down")

    def running(self):
        return subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(self.port)],
                              timeout=10).returncode == 0

    def sql(self, query, db=None, timeout=30):
        """Runs query (psql -At); its output rows as a list of strings ('|' between columns)."""
        r = subprocess.run(["psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-d", self.url_for(db or self.db),
                            "-c", query], capture_output=True, text=True, timeout=timeout, env=base_env())
        if r.returncode != 0:
            raise RuntimeError("psql: %s" % r.stderr.strip())
        return [line for line in r.stdout.split("\n") if line]

    def new_database(self):
        """A new empty database (t_<random>), now the one `url` names; returns that URL."""
        name = "t_" + os.urandom(8).hex()
        self.sql("CREATE DATABASE %s" % name, db="postgres")
        self.db = name
        return self.url

    def close(self):
        self._sh("clean")


@pytest.fixture(scope="session")
def _pg_session():
    pg = PgServer()
    yield pg
    pg.close()


@pytest.fixture
def pg_server(_pg_session):
    """The session's PostgreSQL server with a fresh database for this test: pg_server.url (give it to
    a daemon as database_url or KAILASH_DATABASE_URL), pg_server.sql("SELECT ..."), stop()/start() to
    take it down and back (restarted after the test if it was left down)."""
    if not _pg_session.running():
        _pg_session.start()
    _pg_session.new_database()
    yield _pg_session
    if not _pg_session.running():
        _pg_session.start()


# ---------------------------------------------------------------------------------------------
# daemon

UNLIMITED = 1000000000


class DaemonStartError(Exception):
    pass


class Daemon:
    """One kailashd process in its own directory."""

    def __init__(self, root, config=None, workflows=None, data=None, env=None):
        self.root = str(root)
        os.makedirs(self.root, exist_ok=True)
        self.port = free_port()
        base = {"host": "127.0.0.1", "port": self.port, "workers": 2, "workflows_dir": "workflows",
                "data_dir": "var"}
        if "rate_limiting" not in (config or {}):  # tests about other things make many requests
            base["rate_limiting"] = {"authenticated": UNLIMITED, "anonymous": UNLIMITED}
        self.config = deep_merge(base, config or {})
        self.env = dict(env or {})
        self.proc = None
        self.http = session()
        os.makedirs(self.wf_dir, exist_ok=True)
        os.makedirs(self.data_dir, exist_ok=True)
        self.write_config(self.config)
        for name, wf in (workflows or {}).items():
            self.write_workflow(name, wf)
        for name, content in (data or {}).items():
            self.write_data(name, content)

    # files
    @property
    def config_path(self):
        return os.path.join(self.root, "kailashd.json")

    @property
    def wf_dir(self):
        return os.path.join(self.root, self.config.get("workflows_dir", "workflows"))

    @property
    def data_dir(self):
        return os.path.join(self.root, self.config.get("data_dir", "var"))

    @property
    def stdout_path(self):
        return os.path.join(self.root, "stdout.log")

    @property
    def stderr_path(self):
        return os.path.join(self.root, "stderr.log")

    def write_config(self, cfg):
        write_json(self.config_path, cfg)

    def write_workflow(self, name, wf):
        fname = name if name.endswith(".json") else name + ".json"
        write_json(os.path.join(self.wf_dir, fname), wf)

    def remove_workflow(self, name):
        fname = name if name.endswith(".json") else name + ".json"
        os.remove(os.path.join(self.wf_dir, fname))

    def write_data(self, name, content):
        path = os.path.join(self.data_dir, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        mode = "wb" if isinstance(content, bytes) else "w"
        with open(path, mode) as f:
            f.write(content if isinstance(content, (str, bytes)) else json.dumps(content))

    # process
    def start(self, args=None, timeout=15):
        self._out = open(self.stdout_path, "ab")
        self._err = open(self.stderr_path, "ab")
        argv = [BIN] + (args if args is not None else ["--config", self.config_path])
        self.proc = subprocess.Popen(argv, cwd=self.root, stdout=self._out, stderr=self._err,
                                     env=base_env(self.env))
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise DaemonStartError("kailashd exited with %s before answering /health:\n%s"
                                       % (self.proc.returncode, self.stderr()[-4000:]))
            try:
                r = self.http.get(self.url("/health"), timeout=0.5)
                if r.status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.05)
        self.proc.kill()
        raise DaemonStartError("kailashd did not answer /health within %ss:\n%s"
                               % (timeout, self.stderr()[-4000:]))

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=20):
        """SIGTERM, wait; returns the exit code (kills and returns None on timeout)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self._close_files()
                return None
        self._close_files()
        return self.proc.returncode

    def _close_files(self):
        for f in (getattr(self, "_out", None), getattr(self, "_err", None)):
            if f and not f.closed:
                f.close()

    def threads(self):
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
        raise AssertionError("no Threads: line")

    # output
    def stderr(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def stdout(self):
        try:
            with open(self.stdout_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def access_log(self):
        """Every JSON object line of stdout."""
        out = []
        for line in self.stdout().splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                if isinstance(obj, dict):
                    out.append(obj)
        return out

    def wait_log(self, pred, timeout=3.0):
        """The access-log entries matching pred, waiting up to timeout for at least one."""
        deadline = time.time() + timeout
        while True:
            found = [e for e in self.access_log() if pred(e)]
            if found or time.time() > deadline:
                return found
            time.sleep(0.05)

    # http
    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def get(self, path, **kw):
        kw.setdefault("timeout", 15)
        return self.http.get(self.url(path), **kw)

    def post(self, path, **kw):
        kw.setdefault("timeout", 15)
        return self.http.post(self.url(path), **kw)

    def request(self, method, path, **kw):
        kw.setdefault("timeout", 15)
        return self.http.request(method, self.url(path), **kw)

    def run(self, name, inputs=None, body=None, params=None, headers=None, timeout=15, route="run"):
        """POST /workflows/{name}/run with {"inputs": inputs} (or body as given)."""
        if body is None:
            body = {"inputs": inputs or {}}
        return self.http.post(self.url("/workflows/%s/%s" % (name, route)), json=body,
                              params=params, headers=headers, timeout=timeout)

    def execute(self, name, inputs=None, body=None, **kw):
        return self.run(name, inputs=inputs, body=body, route="execute", **kw)

    def reload(self):
        return self.http.post(self.url("/admin/reload"), timeout=15)


class DaemonPool:
    """Makes daemons under one base dir; close() stops them all and checks each exited 0."""

    def __init__(self, base):
        self.base = str(base)
        self.daemons = []

    def make(self, config=None, workflows=None, data=None, env=None, start=True, name=None):
        root = os.path.join(self.base, name or "d%d" % len(self.daemons))
        d = Daemon(root, config=config, workflows=workflows, data=data, env=env)
        self.daemons.append(d)
        if start:
            d.start()
        return d

    def close(self):
        problems = []
        for d in self.daemons:
            if d.proc is None:
                continue
            was_running = d.alive()
            rc = d.stop()
            if was_running and rc != 0:
                problems.append("%s: exit code %s after SIGTERM; stderr tail:\n%s"
                                % (d.root, rc, d.stderr()[-2000:]))
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def daemons(tmp_path):
    pool = DaemonPool(tmp_path)
    yield pool
    pool.close()


@pytest.fixture(scope="module")
def module_daemons(tmp_path_factory, request):
    pool = DaemonPool(tmp_path_factory.mktemp(request.module.__name__.split(".")[-1]))
    yield pool
    pool.close()


# ---------------------------------------------------------------------------------------------
# assertion helpers

TCP_STATES = {"01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1", "05": "FIN_WAIT2",
              "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT", "09": "LAST_ACK", "0A": "LISTEN",
              "0B": "CLOSING"}


def tcp_sockets(local_port=None, remote_port=None):
    """States of the IPv4/IPv6 TCP sockets on this machine with that local and/or remote port."""
    out = []
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            lport = int(parts[1].rsplit(":", 1)[1], 16)
            rport = int(parts[2].rsplit(":", 1)[1], 16)
            if local_port is not None and lport != local_port:
                continue
            if remote_port is not None and rport != remote_port:
                continue
            out.append(TCP_STATES.get(parts[3], parts[3]))
    return out


REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def wait_for(pred, timeout=5.0):
    """Polls pred every 20 ms until it holds or timeout seconds pass; returns its last answer."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return bool(pred())


def holding(up, key):
    """How many requests the upstream's /hold/KEY holds open right now."""
    return up.hits("holding/" + key)


def assert_error(r, status, code):
    """r is an error answer of the documented shape with this status and code; returns error obj."""
    assert r.status_code == status, "expected %d %s, got %d: %s" % (status, code, r.status_code, r.text[:500])
    assert r.headers.get("Content-Type", "").startswith("application/json"), r.headers
    body = r.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert err["code"] == code, err
    assert isinstance(err["message"], str) and err["message"], err
    assert isinstance(err.get("request_id"), str) and err["request_id"], err
    if "X-Request-ID" in r.headers:
        assert err["request_id"] == r.headers["X-Request-ID"]
    return err
