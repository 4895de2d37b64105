"""TLS (issue 17): tls.cert_file / tls.key_file serve HTTPS through libmicrohttpd's GnuTLS, with
certificates made here by openssl: runs over HTTPS with the certificate checked; plain HTTP to the
port gets nothing; a reload (SIGHUP) renews the certificate for new handshakes, and a broken one is
refused with the old one serving on; a key that is not the certificate's, or a missing file, stops
start-up; the key's bytes never reach a log."""
import os
import signal
import ssl
import subprocess
import time

import pytest
import requests

from conftest import Daemon, DaemonStartError, session, wait_for
from wfs import transform, wf

ECHO = wf({"t": transform({"got": "{{ inputs.x }}"})})


def make_cert(d, name, cn="127.0.0.1"):
    key, crt = os.path.join(d, name + ".key"), os.path.join(d, name + ".crt")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=" + cn,
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", crt],
                   check=True, capture_output=True)
    return crt, key


def der(crt):
    with open(crt) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def served_der(port):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    import socket
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname="127.0.0.1") as t:
            return t.getpeercert(binary_form=True)


class TlsDaemon(Daemon):
    def __init__(self, root, cafile, **kw):
        super().__init__(root, **kw)
        self.http = session()
        self.http.verify = cafile

    def url(self, path):
        return "https://127.0.0.1:%d%s" % (self.port, path)


@pytest.fixture
def tls(tmp_path):
    made = []

    def make(cert_name="a", config=None, start=True):
        crt, key = make_cert(str(tmp_path), cert_name)
        cfg = {"tls": {"cert_file": crt, "key_file": key}}
        cfg.update(config or {})
        d = TlsDaemon(str(tmp_path / ("d%d" % len(made))), crt, config=cfg, workflows={"echo": ECHO})
        made.append(d)
        if start:
            d.start()
        return d, crt, key

    yield make
    for d in made:
        if d.alive():
            assert d.stop() == 0


def test_runs_are_served_over_https_with_the_configured_certificate(tls):
    d, crt, _ = tls()
    r = d.run("echo", {"x": 1})
    assert r.status_code == 200 and r.json()["outputs"] == {"t": {"result": {"got": 1}}}
    assert served_der(d.port) == der(crt)
    assert d.get("/health").json()["status"] == "ok"


def test_plain_http_to_the_tls_port_gets_no_answer(tls):
    d, _, _ = tls()
    with pytest.raises(requests.RequestException):
        r = session().get("http://127.0.0.1:%d/health" % d.port, timeout=5)
        assert r.status_code != 200  # should it answer at all, it is not a served page
        raise requests.RequestException("answered %d" % r.status_code)


def test_a_reload_renews_the_certificate_and_a_broken_one_is_refused(tls, tmp_path):
    d, crt, key = tls()
    new_crt, new_key = make_cert(str(tmp_path), "renewed", cn="renewed")
    os.replace(new_key, key)
    os.replace(new_crt, crt)
    d.signal(signal.SIGHUP)
    assert wait_for(lambda: served_der(d.port) == der(crt), timeout=10), "new handshakes get the renewed certificate"
    # a broken certificate: the reload is refused (422 through the admin route) and the current one serves on
    with open(crt, "r+") as f:
        good = f.read()
        f.seek(0)
        f.write("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
        f.truncate()
    d.http.verify = False
    r = d.request("POST", "/admin/reload")
    assert r.status_code == 422 and "tls.cert_file" in r.json()["error"]["message"], r.text
    assert served_der(d.port) == ssl.PEM_cert_to_DER_cert(good)
    with open(key) as f:
        key_text = f.read()
    body = "".join(key_text.splitlines()[1:-1])
    logs = d.stderr() + d.stdout()
    assert body[:40] not in logs and "PRIVATE KEY" not in logs


def test_a_key_that_is_not_the_certificates_stops_start_up_without_showing_it(tls, tmp_path):
    d, crt, key = tls(start=False)
    _, other_key = make_cert(str(tmp_path), "other")
    os.replace(other_key, key)
    with pytest.raises(DaemonStartError) as e:
        d.start()
    assert "is not the key of tls.cert_file" in str(e.value)
    with open(key) as f:
        assert "".join(f.read().splitlines()[1:2])[:30] not in str(e.value)


@pytest.mark.parametrize("which,what", [("cert_file", "tls.cert_file"), ("key_file", "tls.key_file")])
def test_a_missing_or_unreadable_file_stops_start_up(tls, tmp_path, which, what):
    d, crt, key = tls(start=False)
    os.remove(crt if which == "cert_file" else key)
    d.http.verify = False  # the CA file the client would check against is gone too
    with pytest.raises(DaemonStartError) as e:
        d.start()
    assert what in str(e.value)


def test_a_key_in_the_certificates_place_is_refused(tls):
    d, crt, key = tls(start=False)
    with open(key) as f, open(crt, "w") as g:
        g.write(f.read())
    with pytest.raises(DaemonStartError) as e:
        d.start()
    assert "tls.cert_file" in str(e.value) and "PRIVATE KEY" not in str(e.value)


def test_check_loads_the_certificate_and_key(tls, tmp_path):
    d, crt, key = tls(start=False)
    from conftest import run_cli
    r = run_cli(["--check", "--config", d.config_path], cwd=d.root)
    assert r.returncode == 0, r.stdout + r.stderr
    _, other_key = make_cert(str(tmp_path), "other")
    os.replace(other_key, key)
    r = run_cli(["--check", "--config", d.config_path], cwd=d.root)
    assert r.returncode == 1 and "is not the key of tls.cert_file" in r.stderr, r.stderr
    assert "PRIVATE KEY" not in r.stdout + r.stderr
