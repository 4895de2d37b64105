"""make install / make uninstall with DESTDIR and PREFIX (issue 17): the binary, the systemd unit
(its ExecStart naming the installed binary), the config (written once, never over an existing one,
removed at uninstall only while unedited), the example workflows and the man page. make runs with
BUILD set to the directory of the binary under test and `-o` on it: the test installs that binary,
never builds one."""
import glob
import json
import os
import shutil
import subprocess

import pytest

from conftest import BIN, REPO

PREFIX = "/usr"


def make(target, destdir, prefix=PREFIX):
    build = os.path.dirname(BIN)
    argv = ["make", "-s", "-C", REPO, "BUILD=" + build, "-o", os.path.join(build, "kailashd"), target,
            "DESTDIR=" + str(destdir)] + (["PREFIX=" + prefix] if prefix else [])
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, "%s failed:\n%s%s" % (" ".join(argv), r.stdout, r.stderr)
    return r.stdout


def examples():
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(REPO, "workflows", "*.json")))


def installed(destdir, prefix=PREFIX):
    d = str(destdir)
    files = [prefix + "/bin/kailashd", prefix + "/lib/systemd/system/kailashd.service",
             prefix + "/share/man/man1/kailashd.1", "/etc/kailashd/kailashd.json"]
    files += [prefix + "/share/kailashd/workflows/" + name for name in examples()]
    return [d + f for f in files]


@pytest.fixture
def destdir(tmp_path):
    return tmp_path / "root"


def test_install_then_uninstall(destdir):
    assert examples(), "no example workflows to install"
    make("install", destdir)
    for path in installed(destdir):
        assert os.path.isfile(path), "not installed: " + path
    d = str(destdir)
    binary = d + "/usr/bin/kailashd"
    assert os.access(binary, os.X_OK)
    with open(binary, "rb") as a, open(BIN, "rb") as b:
        assert a.read() == b.read(), "the installed binary is not the one under test"
    assert subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.startswith("kailashd ")

    unit = open(d + "/usr/lib/systemd/system/kailashd.service").read()
    assert "ExecStart=/usr/bin/kailashd --config /etc/kailashd/kailashd.json" in unit
    assert "/usr/local/bin" not in unit
    assert "Type=notify" in unit and "NotifyAccess=main" in unit

    cfg = json.load(open(d + "/etc/kailashd/kailashd.json"))
    assert cfg["workflows_dir"] == "/usr/share/kailashd/workflows"
    assert cfg["data_dir"] == "/var/lib/kailashd"
    for name in examples():
        with open(os.path.join(REPO, "workflows", name)) as a, open(d + "/usr/share/kailashd/workflows/" + name) as b:
            assert a.read() == b.read()

    man = open(d + "/usr/share/man/man1/kailashd.1").read()
    assert man.startswith(".TH KAILASHD 1")
    for word in ("--check", "hash-key", "run", "SIGHUP", "NOTIFY_SOCKET"):
        assert word.replace("-", "\\-") in man or word in man, word

    make("uninstall", destdir)
    for path in installed(destdir):
        assert not os.path.exists(path), "left behind: " + path
    assert not os.path.exists(d + "/usr/share/kailashd"), "the empty share dir stays"
    assert not os.path.exists(d + "/etc/kailashd"), "the unedited config's dir stays"


def test_install_keeps_an_existing_config_and_uninstall_an_edited_one(destdir):
    conf = str(destdir) + "/etc/kailashd/kailashd.json"
    os.makedirs(os.path.dirname(conf))
    with open(conf, "w") as f:
        f.write('{"port": 9999}\n')
    out = make("install", destdir)
    assert open(conf).read() == '{"port": 9999}\n', "install overwrote the config"
    assert "kept" in out
    make("uninstall", destdir)
    assert open(conf).read() == '{"port": 9999}\n', "uninstall removed an edited config"
    assert not os.path.exists(str(destdir) + "/usr/bin/kailashd")

    # installed fresh, then edited: kept at uninstall as well
    os.remove(conf)
    make("install", destdir)
    with open(conf, "a") as f:
        f.write(" ")
    out = make("uninstall", destdir)
    assert os.path.exists(conf) and "edited" in out


def test_default_prefix_is_usr_local(destdir):
    make("install", destdir, prefix=None)
    d = str(destdir)
    assert os.path.isfile(d + "/usr/local/bin/kailashd")
    unit = open(d + "/usr/local/lib/systemd/system/kailashd.service").read()
    assert "ExecStart=/usr/local/bin/kailashd " in unit
    assert json.load(open(d + "/etc/kailashd/kailashd.json"))["workflows_dir"] == "/usr/local/share/kailashd/workflows"
    make("uninstall", destdir, prefix=None)
    assert not os.path.exists(d + "/usr/local/bin/kailashd")


def test_man_page_renders():
    if shutil.which("groff") is None:
        print("groff is not installed: the man page is not rendered")
        pytest.skip("groff is not installed")
    r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", os.path.join(REPO, "docs", "kailashd.1")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stderr == "", r.stderr
