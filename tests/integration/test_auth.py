"""Authentication and authorization (API.md "Authentication and authorization", issue 12): API keys,
JWT HS256/RS256/ES256 from a secret, a PEM file, a JWKS file and a JWKS URL, roles, attribute
conditions, public workflows, admin routes, the access log's principal, and that no credential
ever shows in anything the daemon wrote or answered."""
import base64
import hashlib
import http.server
import json
import os
import re
import subprocess
import threading
import time

import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from conftest import BIN, assert_error, base_env, wait_for
from wfs import transform, wf

HS_SECRET = "hs-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
ISSUER = "https://idp.test"
KEYS = {"admin": "adm-9f8e7d6c5b4a-secret-key", "reader": "rdr-1a2b3c4d5e6f-secret-key",
        "acme": "acm-77aa88bb99cc-secret-key"}


def sha(s):
    return hashlib.sha256(s.encode()).hexdigest()


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def int_b64u(n):
    return b64u(n.to_bytes((n.bit_length() + 7) // 8, "big"))


def rsa_jwk(key, kid):
    pub = key.public_key().public_numbers()
    return {"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": int_b64u(pub.n), "e": int_b64u(pub.e)}


def ec_jwk(key, kid):
    pub = key.public_key().public_numbers()
    return {"kty": "EC", "kid": kid, "crv": "P-256", "x": b64u(pub.x.to_bytes(32, "big")),
            "y": b64u(pub.y.to_bytes(32, "big"))}


def pem_public(key):
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def claims(**kw):
    c = {"sub": "alice", "iss": ISSUER, "aud": "api", "exp": int(time.time()) + 600,
         "roles": ["orders:read"], "tenant": "acme"}
    c.update(kw)
    return {k: v for k, v in c.items() if v is not None}


def hs(**kw):
    return jwt.encode(claims(**kw), HS_SECRET, algorithm="HS256")


def rs(kid="rsa1", key=RSA_KEY, **kw):
    return jwt.encode(claims(**kw), key, algorithm="RS256", headers={"kid": kid} if kid else None)


def es(kid="ec1", **kw):
    return jwt.encode(claims(**kw), EC_KEY, algorithm="ES256", headers={"kid": kid} if kid else None)


def forge(header, payload, sign):
    """A token from raw parts: sign(signing_input) gives the signature bytes."""
    si = b64u(json.dumps(header).encode()) + "." + b64u(json.dumps(payload).encode())
    return si + "." + b64u(sign(si.encode()))


def bearer(tok):
    return {"Authorization": "Bearer " + tok}


def key(name):
    return {"X-API-Key": KEYS[name]}


WHO = transform({"who": "{{ principal.id }}", "roles": "{{ principal.roles }}",
                 "tenant": "{{ principal.attributes.tenant }}"})

WORKFLOWS = {
    "hello": wf({"t": WHO}),
    "guarded": wf({"t": WHO}, gateway={"access": {"roles": ["orders:read"]}}),
    "tenant": wf({"t": WHO}, gateway={"access": {"conditions": [{"attribute": "tenant",
                                                                  "equals": "inputs.tenant"}]}}),
    "gold": wf({"t": WHO}, gateway={"access": {"conditions": [{"attribute": "tier", "value": "gold"}]}}),
    "open": wf({"t": WHO}, gateway={"access": {"public": True}}),
}


def auth_config(root, **jwt_extra):
    jwks = os.path.join(root, "jwks.json")
    with open(jwks, "w") as f:
        json.dump({"keys": [rsa_jwk(RSA_KEY, "rsa1"), ec_jwk(EC_KEY, "ec1")]}, f)
    j = {"hs256_secret_env": "KAILASH_TEST_HS_SECRET", "jwks_file": jwks, "issuer": ISSUER,
         "audience": ["api", "other-api"]}
    j.update(jwt_extra)
    return {"enable_auth": True,
            "auth": {"api_keys": [
                {"id": "admin", "sha256": sha(KEYS["admin"]), "roles": ["admin"]},
                {"id": "reader", "sha256": sha(KEYS["reader"]), "roles": ["orders:read"]},
                {"id": "acme", "sha256": sha(KEYS["acme"]).upper(), "attributes": {"tenant": "acme"}}],
                "jwt": j}}


@pytest.fixture(scope="module")
def d(module_daemons, tmp_path_factory):
    root = str(tmp_path_factory.mktemp("authkeys"))
    dm = module_daemons.make(config=auth_config(root), workflows=WORKFLOWS,
                             env={"KAILASH_TEST_HS_SECRET": HS_SECRET})
    return dm


def ok(r, who):
    """A completed run of a WHO workflow (/run or /execute) as principal who; its result."""
    assert r.status_code == 200, r.text
    out = r.json()["outputs"]
    res = out["t"]["result"] if "t" in out else out["result"]
    assert res["who"] == who, r.json()
    return res


def unauthorized(r, invalid_token=False):
    err = assert_error(r, 401, "unauthorized")
    ch = r.headers.get("WWW-Authenticate", "")
    assert "Bearer" in ch and "ApiKey" in ch, ch
    assert ('error="invalid_token"' in ch) == invalid_token, ch
    return err


# --- API keys ------------------------------------------------------------------------------------

def test_no_credentials_401_with_challenges(d):
    err = unauthorized(d.run("hello", {}))
    assert "missing" in err["message"]
    unauthorized(d.get("/workflows"))
    unauthorized(d.get("/workflows/hello"))


def test_wrong_api_key_401_never_echoed(d):
    r = d.run("hello", {}, headers={"X-API-Key": "not-a-key-XYZZY"})
    err = unauthorized(r)
    assert "XYZZY" not in r.text and "XYZZY" not in str(r.headers)
    assert "invalid" in err["message"] or "not valid" in err["message"]
    unauthorized(d.run("hello", {}, headers={"X-API-Key": ""}))
    unauthorized(d.run("hello", {}, headers={"X-API-Key": "k" * 5000}))


def test_right_api_key_runs_as_its_principal(d):
    out = ok(d.run("hello", {}, headers=key("reader")), "key:reader")
    assert out["roles"] == ["orders:read"]
    out = ok(d.run("hello", {}, headers=key("acme")), "key:acme")  # digest written in upper case
    assert out["tenant"] == "acme"


def test_unknown_scheme_401(d):
    r = d.run("hello", {}, headers={"Authorization": "Basic dXNlcjpwYXNz"})
    err = unauthorized(r)
    assert "dXNlcjpwYXNz" not in r.text


# --- JWT -------------------------------------------------------------------------------------------

def test_each_jwt_algorithm(d):
    ok(d.run("hello", {}, headers=bearer(hs())), "jwt:alice")
    ok(d.run("hello", {}, headers=bearer(rs())), "jwt:alice")
    ok(d.run("hello", {}, headers=bearer(es())), "jwt:alice")
    ok(d.run("hello", {}, headers={"Authorization": "bearer " + hs(sub="bob")}), "jwt:bob")  # scheme any case


def test_jwt_claims_are_attributes_and_roles(d):
    out = ok(d.run("hello", {}, headers=bearer(rs(roles=["a", "b"], tenant="t1"))), "jwt:alice")
    assert out["roles"] == ["a", "b"] and out["tenant"] == "t1"


def test_expired_and_leeway(d):
    now = int(time.time())
    err = unauthorized(d.run("hello", {}, headers=bearer(hs(exp=now - 120))), invalid_token=True)
    assert "expired" in err["message"]
    ok(d.run("hello", {}, headers=bearer(hs(exp=now - 20))), "jwt:alice")  # within the 60 s leeway
    err = unauthorized(d.run("hello", {}, headers=bearer(hs(nbf=now + 300))), invalid_token=True)
    ok(d.run("hello", {}, headers=bearer(hs(nbf=now + 20))), "jwt:alice")
    unauthorized(d.run("hello", {}, headers=bearer(hs(exp=None))), invalid_token=True)  # exp is required


def test_issuer_and_audience(d):
    unauthorized(d.run("hello", {}, headers=bearer(rs(iss="https://evil.test"))), invalid_token=True)
    unauthorized(d.run("hello", {}, headers=bearer(rs(iss=None))), invalid_token=True)
    unauthorized(d.run("hello", {}, headers=bearer(rs(aud="someone-else"))), invalid_token=True)
    unauthorized(d.run("hello", {}, headers=bearer(rs(aud=None))), invalid_token=True)
    ok(d.run("hello", {}, headers=bearer(rs(aud=["x", "other-api"]))), "jwt:alice")


def test_alg_none_refused(d):
    for alg in ("none", "None", "NONE"):
        tok = forge({"alg": alg, "typ": "JWT"}, claims(), lambda si: b"")
        unauthorized(d.run("hello", {}, headers=bearer(tok)), invalid_token=True)
        # and with a signature made with the HS secret, as if none meant "any"
        tok = forge({"alg": alg}, claims(), lambda si: __import__("hmac").new(HS_SECRET.encode(), si, "sha256").digest())
        unauthorized(d.run("hello", {}, headers=bearer(tok)), invalid_token=True)


def test_hs_rs_confusion_refused(d):
    """HS256 signed with the RSA public key's PEM as the secret: the classic algorithm confusion."""
    import hmac
    pem = pem_public(RSA_KEY)
    tok = forge({"alg": "HS256", "kid": "rsa1"}, claims(),
                lambda si: hmac.new(pem, si, hashlib.sha256).digest())
    unauthorized(d.run("hello", {}, headers=bearer(tok)), invalid_token=True)
    # and RS256 claimed with an HMAC signature
    tok = forge({"alg": "RS256", "kid": "rsa1"}, claims(),
                lambda si: hmac.new(HS_SECRET.encode(), si, hashlib.sha256).digest())
    unauthorized(d.run("hello", {}, headers=bearer(tok)), invalid_token=True)


def test_token_shape_refusals(d):
    good = rs()
    h, p, s = good.split(".")
    cases = {
        "two segments": h + "." + p,
        "four segments": good + ".x",
        "padding": h + "=." + p + "." + s,
        "bad alphabet": h + "." + p + "!." + s,
        "header not json": b64u(b"{nope") + "." + p + "." + s,
        "payload not object": h + "." + b64u(b"[1]") + "." + s,
        "tampered payload": h + "." + b64u(json.dumps(claims(sub="mallory")).encode()) + "." + s,
        "unknown kid": rs(kid="nope"),
        "no kid, several keys": rs(kid=None),
        "wrong key": rs(key=OTHER_RSA),
        "oversize": rs(pad="x" * 9000),
        "crit": jwt.encode(claims(), RSA_KEY, algorithm="RS256", headers={"kid": "rsa1", "crit": ["exp"]}),
    }
    for name, tok in cases.items():
        r = d.run("hello", {}, headers=bearer(tok))
        assert r.status_code == 401, (name, r.text)
        unauthorized(r, invalid_token=True)
        assert tok[-20:] not in r.text, name


def test_es256_der_signature_refused(d):
    def sign_der(si):
        return EC_KEY.sign(si, ec.ECDSA(hashes.SHA256()))  # DER, as OpenSSL makes it
    tok = forge({"alg": "ES256", "kid": "ec1"}, claims(), sign_der)
    unauthorized(d.run("hello", {}, headers=bearer(tok)), invalid_token=True)


def test_rs256_forged_with_raw_pkcs1_ok(d):
    """A token signed by hand (not pyjwt) verifies: the check is the algorithm's, not a library's."""
    tok = forge({"alg": "RS256", "kid": "rsa1"}, claims(sub="hand"),
                lambda si: RSA_KEY.sign(si, padding.PKCS1v15(), hashes.SHA256()))
    ok(d.run("hello", {}, headers=bearer(tok)), "jwt:hand")


def test_same_token_again_uses_verdict_but_expiry_still_applies(d):
    tok = hs(exp=int(time.time()) - 58)  # leeway ends in 2 s
    ok(d.run("hello", {}, headers=bearer(tok)), "jwt:alice")
    ok(d.run("hello", {}, headers=bearer(tok)), "jwt:alice")
    time.sleep(2.5)
    unauthorized(d.run("hello", {}, headers=bearer(tok)), invalid_token=True)


# --- authorization ---------------------------------------------------------------------------------

def test_roles_granted_and_refused(d):
    ok(d.run("guarded", {}, headers=key("reader")), "key:reader")
    assert_error(d.run("guarded", {}, headers=key("acme")), 403, "forbidden")
    ok(d.run("guarded", {}, headers=key("admin")), "key:admin")
    ok(d.run("guarded", {}, headers=bearer(rs())), "jwt:alice")
    assert_error(d.run("guarded", {}, headers=bearer(rs(roles=["other"]))), 403, "forbidden")
    unauthorized(d.run("guarded", {}))
    assert_error(d.get("/workflows/guarded", headers=key("acme")), 403, "forbidden")
    assert d.get("/workflows/guarded", headers=key("reader")).status_code == 200


def test_workflow_list_shows_what_the_caller_may_reach(d):
    names = lambda h: [w["name"] for w in d.get("/workflows", headers=h).json()["workflows"]]
    assert "guarded" in names(key("reader"))
    assert "guarded" not in names(key("acme"))
    assert set(names(key("admin"))) == set(WORKFLOWS)


def test_attribute_condition(d):
    ok(d.run("tenant", {"tenant": "acme"}, headers=key("acme")), "key:acme")
    err = assert_error(d.run("tenant", {"tenant": "globex"}, headers=key("acme")), 403, "forbidden")
    assert "globex" not in err["message"] and "acme" not in err["message"]
    assert_error(d.run("tenant", {}, headers=key("acme")), 403, "forbidden")
    assert_error(d.run("tenant", {"tenant": "acme"}, headers=key("reader")), 403, "forbidden")  # no attribute
    ok(d.run("tenant", {"tenant": "acme"}, headers=bearer(es())), "jwt:alice")  # claims are attributes
    assert_error(d.run("tenant", {"tenant": "acme"}, headers=bearer(es(tenant="globex"))), 403, "forbidden")
    ok(d.run("tenant", {"tenant": "anything"}, headers=key("admin")), "key:admin")
    # the body is checked before the conditions only as far as parsing goes
    assert_error(d.post("/workflows/tenant/run", data=b"{bad", headers=dict(key("acme"), **{
        "Content-Type": "application/json"})), 400, "bad_request")


def test_literal_condition(d):
    assert_error(d.run("gold", {}, headers=key("acme")), 403, "forbidden")
    ok(d.run("gold", {}, headers=bearer(hs(tier="gold"))), "jwt:alice")


def test_public_workflow(d):
    ok(d.run("open", {}), "anonymous")
    ok(d.run("open", {}, headers=key("acme")), "key:acme")
    unauthorized(d.run("open", {}, headers={"X-API-Key": "wrong"}))  # bad credentials are never ignored


def test_admin_routes(d):
    unauthorized(d.post("/admin/reload"))
    assert_error(d.post("/admin/reload", headers=key("reader")), 403, "forbidden")
    r = d.post("/admin/reload", headers=key("admin"))
    assert r.status_code == 200, r.text
    r = d.post("/admin/reload", headers=bearer(rs(roles=["admin"])))
    assert r.status_code == 200, r.text


def test_health_and_ready_need_nothing(d):
    assert d.get("/health").status_code == 200
    r = d.get("/ready")
    assert r.status_code == 200 and r.json()["status"] == "ready"


def test_order_401_before_413_and_415(d):
    # Content-Length over max_body_bytes and no body sent: the 401 comes first, before anything is read
    # (a real 2 MB body would race the early answer's close and end in a reset)
    import socket
    s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
    try:
        s.sendall(b"POST /workflows/hello/run HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 2000000\r\n\r\n")
        head = s.recv(65536).split(b"\r\n\r\n")[0].decode("latin-1")
    finally:
        s.close()
    assert head.startswith("HTTP/1.1 401"), head
    assert "WWW-Authenticate: Bearer" in head, head
    unauthorized(d.post("/workflows/hello/run", data=b"x", headers={"Content-Type": "text/plain"}))
    assert_error(d.post("/workflows/nope/run", headers=key("reader")), 404, "not_found")


def test_execute_route_needs_auth_too(d):
    unauthorized(d.execute("hello", {}))
    r = d.execute("hello", {}, headers=key("reader"))
    assert r.status_code == 200, r.text


# --- logs and secrets ------------------------------------------------------------------------------

def test_access_log_principal_and_auth(d):
    tag = "authlog-%d" % time.time_ns()
    d.run("hello", {}, headers=dict(key("reader"), **{"X-Request-ID": tag + "-k"}))
    d.run("hello", {}, headers=dict(bearer(rs()), **{"X-Request-ID": tag + "-j"}))
    d.run("hello", {}, headers={"X-API-Key": "bad", "X-Request-ID": tag + "-f"})
    d.run("open", {}, headers={"X-Request-ID": tag + "-a"})
    wait_for(lambda: len([e for e in d.access_log() if str(e.get("request_id", "")).startswith(tag)]) == 4)
    got = {e["request_id"][len(tag) + 1:]: e for e in d.access_log() if str(e.get("request_id", "")).startswith(tag)}
    assert (got["k"]["principal"], got["k"]["auth"]) == ("key:reader", "key")
    assert (got["j"]["principal"], got["j"]["auth"]) == ("jwt:alice", "jwt")
    assert (got["f"]["principal"], got["f"]["auth"], got["f"]["status"]) == (None, "failed", 401)
    assert (got["a"]["principal"], got["a"]["auth"]) == ("anonymous", "anonymous")


def test_no_secret_anywhere(d):
    """Everything the daemon wrote (stdout, stderr) and answered during this module's runs holds no
    key, token, or secret, whatever was sent."""
    toks = [hs(), rs(), es(), hs(exp=1)]
    bodies = []
    for t in toks:
        for wfn in ("hello", "guarded", "tenant", "nope"):
            r = d.run(wfn, {"tenant": "x"}, headers=bearer(t))
            bodies.append(r.text + str(r.headers))
    for k in KEYS.values():
        r = d.run("hello", {}, headers={"X-API-Key": k + "x"})
        bodies.append(r.text + str(r.headers))
        r = d.run("hello", {}, headers={"X-API-Key": k})
        bodies.append(r.text + str(r.headers))
    r = d.get("/workflows/hello", headers=key("admin"))
    bodies.append(r.text)
    time.sleep(0.3)
    written = d.stdout() + d.stderr() + "".join(bodies)
    for s in list(KEYS.values()) + [HS_SECRET] + toks:
        assert s not in written
    for t in toks:
        for part in t.split("."):
            if len(part) > 16:
                assert part not in written


# --- start-up and config ---------------------------------------------------------------------------

def start_fails(daemons, cfg, env=None):
    dm = daemons.make(config=cfg, workflows={"hello": WORKFLOWS["hello"]}, env=env, start=False)
    p = subprocess.run([BIN, "--config", dm.config_path], cwd=dm.root, env=base_env(env),
                       capture_output=True, text=True, timeout=15)
    assert p.returncode != 0
    return p.stderr


def test_fail_closed_without_any_credential(daemons):
    err = start_fails(daemons, {"enable_auth": True})
    assert "enable_auth" in err


def test_short_hs_secret_refused(daemons):
    err = start_fails(daemons, {"enable_auth": True, "auth": {"jwt": {"hs256_secret_env": "S"}}},
                      env={"S": "too-short"})
    assert "32" in err and "too-short" not in err
    err = start_fails(daemons, {"enable_auth": True, "auth": {"jwt": {"hs256_secret_env": "UNSET_VAR_X"}}})
    assert "UNSET_VAR_X" in err


def test_bad_key_entries_refused(daemons):
    for entry, word in [({"id": "a", "sha256": "abc"}, "sha256"), ({"sha256": sha("k")}, "id"),
                        ({"id": "a b", "sha256": sha("k")}, "id"), ({"id": "a", "sha256": sha("k"), "x": 1}, "x")]:
        err = start_fails(daemons, {"enable_auth": True, "auth": {"api_keys": [entry]}})
        assert word in err, err
    err = start_fails(daemons, {"enable_auth": True, "auth": {"api_keys": [
        {"id": "a", "sha256": sha("k")}, {"id": "b", "sha256": sha("k")}]}})
    assert "same digest" in err


def test_small_rsa_key_file_refused(daemons, tmp_path):
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    p = tmp_path / "small.pem"
    p.write_bytes(pem_public(small))
    err = start_fails(daemons, {"enable_auth": True, "auth": {"jwt": {"public_key_file": str(p)}}})
    assert "public_key_file" in err


def test_pem_public_key_file(daemons, tmp_path):
    p = tmp_path / "ec.pem"
    p.write_bytes(pem_public(EC_KEY))
    dm = daemons.make(config={"enable_auth": True, "auth": {"jwt": {"public_key_file": str(p)}}},
                      workflows={"hello": WORKFLOWS["hello"]})
    ok(dm.run("hello", {}, headers=bearer(es(kid=None))), "jwt:alice")
    unauthorized(dm.run("hello", {}, headers=bearer(rs())), invalid_token=True)  # no RSA key
    unauthorized(dm.run("hello", {}, headers=bearer(hs())), invalid_token=True)  # no HS secret


def test_reload_rereads_keys(daemons):
    cfg = {"enable_auth": True, "auth": {"api_keys": [
        {"id": "admin", "sha256": sha(KEYS["admin"]), "roles": ["admin"]},
        {"id": "reader", "sha256": sha(KEYS["reader"])}]}}
    dm = daemons.make(config=cfg, workflows={"hello": WORKFLOWS["hello"]})
    ok(dm.run("hello", {}, headers=key("reader")), "key:reader")
    cfg["auth"]["api_keys"].pop()
    new = dict(dm.config)
    new.update(cfg)
    dm.write_config(new)
    r = dm.post("/admin/reload", headers=key("admin"))
    assert r.status_code == 200, r.text
    unauthorized(dm.run("hello", {}, headers=key("reader")))


def test_auth_off_ignores_credentials_and_access(daemons):
    dm = daemons.make(workflows={"guarded": WORKFLOWS["guarded"]})
    ok(dm.run("guarded", {}), "anonymous")
    ok(dm.run("guarded", {}, headers={"X-API-Key": "whatever", "Authorization": "Bearer x.y.z"}), "anonymous")


def test_hash_key_cli():
    p = subprocess.run([BIN, "hash-key"], input="s3cret-key\n", capture_output=True, text=True, timeout=10)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == sha("s3cret-key")
    assert "s3cret-key" not in p.stdout + p.stderr
    p = subprocess.run([BIN, "hash-key"], input="", capture_output=True, text=True, timeout=10)
    assert p.returncode == 2
    p = subprocess.run([BIN, "hash-key"], input="two\nlines\n", capture_output=True, text=True, timeout=10)
    assert p.stdout.strip() == sha("two\nlines")  # only one trailing newline is dropped


# --- JWKS URL ------------------------------------------------------------------------------------

class JwksServer:
    """A local identity provider's JWKS endpoint: serves self.doc, counts fetches."""

    def __init__(self, port=0, max_age=None):
        self.doc = {"keys": [rsa_jwk(RSA_KEY, "rsa1")]}
        self.fetches = 0
        self.max_age = max_age
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.fetches += 1
                body = json.dumps(outer.doc).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                if outer.max_age is not None:
                    self.send_header("Cache-Control", "public, max-age=%d" % outer.max_age)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def jwks_url_daemon(daemons, port, **extra):
    j = {"jwks_url": "http://127.0.0.1:%d/jwks" % port, "jwks_min_refresh_s": 1}
    j.update(extra)
    return daemons.make(config={"enable_auth": True, "auth": {"jwt": j}}, workflows={"hello": WORKFLOWS["hello"]})


def test_jwks_url_not_reachable_then_reachable(daemons):
    port = free_port()
    dm = jwks_url_daemon(daemons, port)
    r = dm.get("/ready")
    assert r.status_code == 503, r.text
    assert r.json()["status"] == "degraded" and r.json()["checks"]["jwks"] == "down"
    assert r.json()["reasons"]["jwks"]
    unauthorized(dm.run("hello", {}, headers=bearer(rs())), invalid_token=True)
    srv = JwksServer(port=port)
    try:
        assert wait_for(lambda: dm.get("/ready").status_code == 200, timeout=15), dm.get("/ready").text
        assert dm.get("/ready").json()["checks"]["jwks"] == "ok"
        ok(dm.run("hello", {}, headers=bearer(rs())), "jwt:alice")
    finally:
        srv.stop()


def test_jwks_url_unknown_kid_refreshes_and_rotation(daemons):
    srv = JwksServer(max_age=3600)
    try:
        dm = jwks_url_daemon(daemons, srv.port)
        assert wait_for(lambda: dm.get("/ready").status_code == 200, timeout=10)
        ok(dm.run("hello", {}, headers=bearer(rs())), "jwt:alice")
        fetched = srv.fetches
        srv.doc = {"keys": [rsa_jwk(RSA_KEY, "rsa1"), rsa_jwk(OTHER_RSA, "rsa2")]}
        tok = rs(kid="rsa2", key=OTHER_RSA)
        # the first one is refused (no fetch on a request's path) and asks for a refresh
        assert wait_for(lambda: dm.run("hello", {}, headers=bearer(tok)).status_code == 200, timeout=10)
        assert srv.fetches > fetched
        # unknown kids do not make it fetch on every request
        before = srv.fetches
        for _ in range(20):
            unauthorized(dm.run("hello", {}, headers=bearer(rs(kid="never"))), invalid_token=True)
        assert srv.fetches - before <= 2, (before, srv.fetches)
    finally:
        srv.stop()


def test_jwks_url_must_be_https_or_loopback(daemons):
    err = start_fails(daemons, {"enable_auth": True, "auth": {"jwt": {"jwks_url": "http://idp.example.com/jwks"}}})
    assert "jwks_url" in err
