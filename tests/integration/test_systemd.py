"""systemd integration (issue 17): the notify protocol spoken to a NOTIFY_SOCKET this test binds
(READY=1 once serving, RELOADING=1 + MONOTONIC_USEC then READY=1 around a reload, STOPPING=1 at
SIGTERM, STATUS= lines, WATCHDOG=1 pings with WATCHDOG_USEC), a bad NOTIFY_SOCKET that changes
nothing, and `systemd-analyze verify` on the unit. A hung loop stopping the pings is tested in
tests/unit/test_watchdog.c: nothing reachable from outside can hang one loop alone."""
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import BIN, REPO
import wfs

UNIT = os.path.join(REPO, "systemd", "kailashd.service")


class Listener:
    """An AF_UNIX datagram socket standing in for systemd: every message it gets, in order."""

    def __init__(self, address):
        self.address = address  # as NOTIFY_SOCKET names it
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.settimeout(0.1)
        self.messages = []
        self.lock = threading.Lock()
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while self.running:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.messages.append(data.decode())

    def all(self):
        with self.lock:
            return list(self.messages)

    def states(self):
        """The messages other than watchdog pings."""
        return [m for m in self.all() if m != "WATCHDOG=1"]

    def wait(self, pred, timeout=10.0, start=0):
        """The first message from index `start` on for which pred is true, waiting up to timeout."""
        deadline = time.time() + timeout
        while True:
            for m in self.all()[start:]:
                if pred(m):
                    return m
            if time.time() > deadline:
                return None
            time.sleep(0.02)

    def close(self):
        self.running = False
        self.thread.join(2)
        self.sock.close()


def fields(msg):
    return dict(line.split("=", 1) for line in msg.split("\n") if "=" in line)


@pytest.fixture
def listener(tmp_path):
    lst = Listener("@kailashd-test-%d-%s" % (os.getpid(), os.urandom(4).hex()))
    yield lst
    lst.close()


@pytest.fixture
def path_listener(tmp_path):
    lst = Listener(str(tmp_path / "notify.sock"))
    yield lst
    lst.close()


def hello_named(name):
    w = wfs.example("hello")
    w["name"] = name
    return w


def hello_workflows(n=1):
    names = ["hello"] + ["hello%d" % i for i in range(1, n)]
    return {name: hello_named(name) for name in names}


def test_ready_once_serving(daemons, listener):
    d = daemons.make(workflows=hello_workflows(2), env={"NOTIFY_SOCKET": listener.address})
    # start() returned: /health answered. READY=1 comes right after the front end starts.
    ready = listener.wait(lambda m: "READY=1" in m.split("\n"))
    assert ready is not None, "no READY=1; got %r" % listener.all()
    assert fields(ready)["STATUS"] == "serving 2 workflow(s)"
    assert listener.states()[0] == ready, "READY=1 must be the first state sent: %r" % listener.states()
    assert d.get("/health").status_code == 200


def test_path_socket_and_stopping(daemons, path_listener):
    d = daemons.make(workflows=hello_workflows(), env={"NOTIFY_SOCKET": path_listener.address})
    assert path_listener.wait(lambda m: m.startswith("READY=1")) is not None, path_listener.all()
    assert d.stop() == 0
    stopping = path_listener.wait(lambda m: "STOPPING=1" in m.split("\n"), timeout=5)
    assert stopping is not None, "no STOPPING=1 at SIGTERM: %r" % path_listener.all()
    # the count is the daemon's at SIGTERM: the start-up's /health poll may still be finishing (seen
    # under ASan), so the number is not pinned, only the form
    assert re.fullmatch(r"stopping: \d+ request\(s\) in flight", fields(stopping)["STATUS"]), fields(stopping)
    assert path_listener.states()[-1] == stopping, "nothing after STOPPING=1: %r" % path_listener.states()


def check_reload_messages(listener, start, before_us, workflows, refused=False):
    reloading = listener.wait(lambda m: m.startswith("RELOADING=1"), start=start)
    assert reloading is not None, "no RELOADING=1: %r" % listener.all()[start:]
    f = fields(reloading)
    assert f["STATUS"] == "reloading"
    assert re.fullmatch(r"\d+", f["MONOTONIC_USEC"]), f
    after_us = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert before_us <= int(f["MONOTONIC_USEC"]) <= after_us, "MONOTONIC_USEC is not CLOCK_MONOTONIC now"
    i = listener.all().index(reloading, start)
    ready = listener.wait(lambda m: m.startswith("READY=1"), start=i + 1)
    assert ready is not None, "no READY=1 after RELOADING=1: %r" % listener.all()[start:]
    assert fields(ready)["STATUS"] == "serving %d workflow(s)" % workflows
    if refused:
        status = listener.wait(lambda m: "reload was refused" in m, start=i + 1)
        assert status is not None and status.startswith("STATUS="), listener.all()[start:]


def test_sighup_reload_brackets(daemons, listener):
    d = daemons.make(workflows=hello_workflows(), env={"NOTIFY_SOCKET": listener.address})
    assert listener.wait(lambda m: m.startswith("READY=1")) is not None
    start = len(listener.all())
    d.write_workflow("second", hello_named("second"))
    before_us = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    d.signal(signal.SIGHUP)
    check_reload_messages(listener, start, before_us, workflows=2)


def test_admin_reload_brackets_and_refused_reload(daemons, listener):
    d = daemons.make(workflows=hello_workflows(), env={"NOTIFY_SOCKET": listener.address})
    assert listener.wait(lambda m: m.startswith("READY=1")) is not None
    start = len(listener.all())
    before_us = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert d.reload().status_code == 200
    check_reload_messages(listener, start, before_us, workflows=1)

    # a refused reload still ends in READY=1 (the previous config serves on), with a STATUS saying so
    good = open(d.config_path).read()
    with open(d.config_path, "w") as f:
        f.write("{ not json")
    start = len(listener.all())
    before_us = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    d.signal(signal.SIGHUP)
    check_reload_messages(listener, start, before_us, workflows=1, refused=True)
    with open(d.config_path, "w") as f:
        f.write(good)


def test_watchdog_pings(daemons, listener):
    d = daemons.make(workflows=hello_workflows(),
                     env={"NOTIFY_SOCKET": listener.address, "WATCHDOG_USEC": "400000"})
    deadline = time.time() + 10
    while time.time() < deadline and listener.all().count("WATCHDOG=1") < 5:
        time.sleep(0.05)
    assert listener.all().count("WATCHDOG=1") >= 5, "pings: %r" % listener.all()
    # pings go on while requests are served
    n = listener.all().count("WATCHDOG=1")
    for _ in range(20):
        assert d.run("hello", {"name": "Ada"}).status_code == 200
    assert listener.wait(lambda m: m == "WATCHDOG=1", start=len(listener.all())) is not None
    assert listener.all().count("WATCHDOG=1") > n
    assert d.stop() == 0
    # after the loops are gone, no more pings
    time.sleep(0.3)
    n = len(listener.all())
    time.sleep(0.6)
    assert len(listener.all()) == n, "pings after exit: %r" % listener.all()[n:]


@pytest.mark.parametrize("env", [{}, {"WATCHDOG_USEC": "400000", "WATCHDOG_PID": "1"}],
                         ids=["no-watchdog-usec", "watchdog-pid-of-another"])
def test_no_watchdog_pings_unless_asked(daemons, listener, env):
    env = dict(env, NOTIFY_SOCKET=listener.address)
    daemons.make(workflows=hello_workflows(), env=env)
    assert listener.wait(lambda m: m.startswith("READY=1")) is not None
    time.sleep(1.0)  # five ping periods of a 400 ms watchdog
    assert "WATCHDOG=1" not in listener.all(), listener.all()


@pytest.mark.parametrize("addr", ["relative/notify.sock", "/nonexistent-dir/notify.sock", "@" + "x" * 200, "@"],
                         ids=["relative", "missing", "too-long", "bare-at"])
def test_bad_notify_socket_changes_nothing(daemons, addr):
    d = daemons.make(workflows=hello_workflows(), env={"NOTIFY_SOCKET": addr, "WATCHDOG_USEC": "400000"})
    assert d.run("hello", {"name": "Ada"}).status_code == 200
    d.signal(signal.SIGHUP)
    time.sleep(0.3)
    assert d.alive()
    assert d.get("/health").status_code == 200
    assert d.stop() == 0


def verify(unit_dir, exec_path):
    os.makedirs(unit_dir, exist_ok=True)
    text = open(UNIT).read().replace("/usr/local/bin/kailashd", exec_path)
    path = os.path.join(unit_dir, "kailashd.service")
    with open(path, "w") as f:
        f.write(text)
    return subprocess.run(["systemd-analyze", "verify", path], capture_output=True, text=True, timeout=60)


def test_unit_is_notify_and_keeps_hardening():
    text = open(UNIT).read()
    directives = [l.strip() for l in text.splitlines() if l.strip() and not l.startswith("#")]
    for want in ("Type=notify", "NotifyAccess=main", "NoNewPrivileges=yes", "ProtectSystem=strict",
                 "DynamicUser=yes", "SystemCallFilter=@system-service", "MemoryDenyWriteExecute=yes",
                 "CapabilityBoundingSet=", "ExecReload=/bin/kill -HUP $MAINPID"):
        assert want in directives, want
    assert "Type=simple" not in directives


def test_systemd_analyze_verify(tmp_path):
    if shutil.which("systemd-analyze") is None:
        print("systemd-analyze is not installed: the unit is not verified")
        pytest.skip("systemd-analyze is not installed")
    r = verify(str(tmp_path / "ok"), BIN)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "kailashd.service" not in out, "systemd-analyze complained:\n" + out
    # the check has teeth: a unit whose binary is missing is refused
    r = verify(str(tmp_path / "bad"), str(tmp_path / "no-such-kailashd"))
    assert r.returncode != 0, r.stdout + r.stderr
