"""EncryptionNode through the daemon: an encrypt -> decrypt round trip over a connection, a tampered
envelope from the request (500 internal naming the node), load refusals of a missing or malformed key
(naming the variable, never its value), and the key never showing in the daemon's output, the
workflow's description, the answer or the run record."""
import base64
import os

import pytest

from conftest import assert_error, run_cli, write_json
from wfs import conn, node, wf

KEY_HEX = "5f2b0c9a7e11d4438a6cf0e2b97d1a3c8e04f6a2d1b9c7e5f3a1028476b5c3d9"
KEY_B64 = base64.b64encode(bytes.fromhex(KEY_HEX)).decode()
OTHER_HEX = "00" * 32
ENV = {"ENC_KEY": KEY_HEX, "ENC_KEY_B64": KEY_B64, "ENC_OTHER": OTHER_HEX}

VALUE = {"card": "4111 1111 1111 1111", "amount": 12.5, "tags": ["a", "é", "世界"], "ok": True, "none": None}

WORKFLOWS = {
    "roundtrip": wf({"e": node("EncryptionNode", operation="encrypt", key_env="ENC_KEY"),
                     "d": node("EncryptionNode", operation="decrypt", key_env="ENC_KEY_B64")},
                    [conn("e", "result", "d", "data")]),
    "seal": wf({"e": node("EncryptionNode", operation="encrypt", key_env="ENC_KEY")}),
    "open": wf({"d": node("EncryptionNode", operation="decrypt", key_env="ENC_KEY")}),
    "open_other": wf({"d": node("EncryptionNode", operation="decrypt", key_env="ENC_OTHER")}),
}


@pytest.fixture(scope="module")
def d(module_daemons):
    return module_daemons.make(workflows=WORKFLOWS, env=ENV)


def key_absent(text):
    assert KEY_HEX not in text and KEY_HEX.upper() not in text
    assert KEY_B64 not in text and KEY_B64[:20] not in text and KEY_HEX[:16] not in text


def test_round_trip_over_a_connection(d):
    r = d.execute("roundtrip", inputs={"e": {"data": VALUE}})
    assert r.status_code == 200, r.text
    out = r.json()["outputs"]
    assert out["d"] == {"result": VALUE}
    assert out["e"]["result"].startswith("kenc1:")
    raw = base64.b64decode(out["e"]["result"][6:], validate=True)
    assert len(raw) > 12 + 16
    key_absent(r.text)


def test_each_envelope_is_new_and_opens(d):
    a = d.execute("seal", inputs={"e": {"data": VALUE}}).json()["outputs"]["e"]["result"]
    b = d.execute("seal", inputs={"e": {"data": VALUE}}).json()["outputs"]["e"]["result"]
    assert a != b
    for env in (a, b):
        r = d.execute("open", inputs={"d": {"data": env}})
        assert r.status_code == 200, r.text
        assert r.json()["outputs"]["d"]["result"] == VALUE


def flip(envelope, at):
    raw = bytearray(base64.b64decode(envelope[6:]))
    raw[at] ^= 1
    return "kenc1:" + base64.b64encode(bytes(raw)).decode()


def test_tampered_envelope_from_the_request_is_refused(d):
    env = d.execute("seal", inputs={"e": {"data": VALUE}}).json()["outputs"]["e"]["result"]
    for bad in (flip(env, 0), flip(env, 20), flip(env, -1)):
        r = d.execute("open", inputs={"d": {"data": bad}})
        err = assert_error(r, 500, "internal")
        assert "tampered with or encrypted with another key" in err["message"], err
        assert err["details"]["node"] == "d", err
        key_absent(r.text)
    err = assert_error(d.execute("open_other", inputs={"d": {"data": env}}), 500, "internal")
    assert "tampered with or encrypted with another key" in err["message"], err
    err = assert_error(d.execute("open", inputs={"d": {"data": "kenc0:" + env[6:]}}), 500, "internal")
    assert "the envelope is not kenc1" in err["message"], err
    err = assert_error(d.execute("open", inputs={"d": {"data": env[:-3] + "!!!"}}), 500, "internal")
    assert "not valid base64" in err["message"], err
    err = assert_error(d.execute("open", inputs={"d": {"data": env[:30]}}), 500, "internal")
    assert "too short" in err["message"], err
    err = assert_error(d.execute("open"), 400, "bad_request")
    assert "input 'data' is missing" in err["message"], err


def test_a_request_may_not_choose_the_key_or_the_operation(d):
    env = d.execute("seal", inputs={"e": {"data": VALUE}}).json()["outputs"]["e"]["result"]
    for extra in ({"key_env": "ENC_OTHER"}, {"operation": "decrypt"}):
        r = d.execute("seal", inputs={"e": dict({"data": env}, **extra)})
        err = assert_error(r, 400, "bad_request")
        assert "is set only by the workflow file" in err["message"], err


def test_the_key_shows_nowhere(d):
    r = d.execute("roundtrip", inputs={"e": {"data": VALUE}})
    assert r.status_code == 200, r.text
    rec = d.get("/runs/" + r.json()["run_id"])
    assert rec.status_code == 200, rec.text
    assert rec.json()["outputs"]["d"] == {"result": VALUE}
    key_absent(rec.text)
    for name in WORKFLOWS:
        desc = d.get("/workflows/" + name)
        assert desc.status_code == 200, desc.text
        key_absent(desc.text)
    assert "ENC_KEY" in d.get("/workflows/roundtrip").text  # the name is shown, as written
    key_absent(d.stdout())
    key_absent(d.stderr())


def check(tmp_path, key_env, env):
    os.makedirs(tmp_path / "var", exist_ok=True)
    write_json(str(tmp_path / "workflows" / "w.json"),
               wf({"e": node("EncryptionNode", operation="encrypt", key_env=key_env)}))
    write_json(str(tmp_path / "kailashd.json"), {"workflows_dir": "workflows", "data_dir": "var"})
    return run_cli(["--check", "--config", "kailashd.json"], cwd=str(tmp_path), env=env)


@pytest.mark.parametrize("value", [None, KEY_HEX[:-2], KEY_HEX + "00", "g" + KEY_HEX[1:], KEY_B64[:-4],
                                   "correct horse battery staple"])
def test_a_missing_or_bad_key_is_refused_at_load(tmp_path, value):
    env = {"ENC_BAD": value} if value is not None else {}
    r = check(tmp_path, "ENC_BAD", env)
    text = r.stdout + r.stderr
    assert r.returncode != 0, text
    assert "node 'e'" in text and "ENC_BAD" in text, text
    assert ("is not set" if value is None else "does not hold a 32-byte key") in text, text
    if value:
        assert value not in text and value[:12] not in text, text


def test_a_good_key_loads(tmp_path):
    r = check(tmp_path, "ENC_GOOD", {"ENC_GOOD": KEY_B64})
    assert r.returncode == 0, r.stdout + r.stderr
    key_absent(r.stdout + r.stderr)
