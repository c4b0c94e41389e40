"""Issue 8 on the real suite server: white list, password files, job passwords, CurveZMQ, loopback capture.

Every test runs ``ecflow-lab server start`` as a child process and talks to it with the real Client (or
plain HTTP for job commands), over real sockets.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from ecflow_lab.client import Client
from ecflow_lab.security import generate_keypair
from ecflow_lab.security.capture import LoopbackCapture, capture_unavailable
from ecflow_lab.server.app import free_port

SUITE = """suite sec
  edit SECRET_VALUE '{marker}'
  family f
    task t
  endfamily
endsuite
"""


class Server:
    """``ecflow-lab server start`` in a child process (stopped by :meth:`stop`)."""

    def __init__(self, home: Path, *extra: str, env: dict[str, str] | None = None,
                 files: dict[str, str] | None = None) -> None:
        self.home = home
        self.home.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.host = socket.gethostname()
        for suffix, text in (files or {}).items():  # ecf.lists, ecf.passwd, ecf.custom_passwd
            p = self.home / f"{self.host}.{self.port}.{suffix}"
            p.write_text(text)
            os.chmod(p, 0o600)
        self.env = {**os.environ, **(env or {})}
        with open(self.home / "server.out", "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "ecflow_lab", "server", "start", "--home",
                                          str(home), "--port", str(self.port), *extra], stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL, env=self.env)
        deadline = time.monotonic() + 30
        while not (self.home / f"ecflow_lab.{self.port}.json").exists() or not self._answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server did not start: {(self.home / 'server.out').read_text()[-3000:]}")
            time.sleep(0.1)

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def log_text(self) -> str:
        p = self.home / f"{self.host}.{self.port}.ecf.log"
        return p.read_text() if p.exists() else ""

    def wait_log(self, needle: str, timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        while needle not in self.log_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.log_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def servers():
    started: list[Server] = []

    def start(home: Path, *extra: str, **kw) -> Server:
        s = Server(home, *extra, **kw)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()



def _load(ci: Client, tmp_path: Path, marker: str = "x") -> None:
    f = tmp_path / f"sec-{secrets.token_hex(3)}.def"
    f.write_text(SUITE.format(marker=marker))
    ci.load(str(f))


# ---------------------------------------------------------------------------------------------- white list
def test_read_only_user_can_get_but_not_change(servers, tmp_path):
    srv = servers(tmp_path / "home", files={"ecf.lists": "4.4.14\nalice\n-bob\n"})
    owner = Client("127.0.0.1", srv.port)
    _load(owner, tmp_path)          # the user running the server keeps write access
    owner.close()

    bob = Client("127.0.0.1", srv.port)
    bob.set_user_name("bob")
    bob.sync_local()
    defs = bob.get_defs()
    assert defs is not None and "sec" in str(defs)
    for change in (lambda: bob.alter("/sec/f/t", "add", "variable", "V", "1"),
                   lambda: bob.delete("/sec", force=True),
                   lambda: bob.suspend("/sec"),
                   lambda: bob.shutdown_server()):
        with pytest.raises(RuntimeError, match="bob"):
            change()
    bob.close()
    assert "bob" in srv.wait_log("bob")

    alice = Client("127.0.0.1", srv.port)
    alice.set_user_name("alice")
    alice.alter("/sec/f/t", "add", "variable", "V", "1")
    alice.close()

    mallory = Client("127.0.0.1", srv.port)
    mallory.set_user_name("mallory")
    with pytest.raises(RuntimeError, match="mallory"):
        mallory.sync_local()
    with pytest.raises(RuntimeError, match="mallory"):
        mallory.delete("/sec", force=True)
    mallory.close()
    assert "mallory" in srv.wait_log("mallory")
    check = Client("127.0.0.1", srv.port)
    check.sync_local()
    assert "sec" in str(check.get_defs())  # nothing was deleted
    check.close()


def test_reload_white_list_takes_effect(servers, tmp_path):
    srv = servers(tmp_path / "home", files={"ecf.lists": "4.4.14\n-bob\n"})
    bob = Client("127.0.0.1", srv.port)
    bob.set_user_name("bob")
    with pytest.raises(RuntimeError, match="bob"):
        _load(bob, tmp_path)
    (srv.home / f"{srv.host}.{srv.port}.ecf.lists").write_text("4.4.14\nbob\n")
    owner = Client("127.0.0.1", srv.port)
    owner.reload_wl_file()
    owner.close()
    _load(bob, tmp_path)
    # a broken file is refused with its name and line, and the rules in force stay
    (srv.home / f"{srv.host}.{srv.port}.ecf.lists").write_text("not-a-version\n")
    owner = Client("127.0.0.1", srv.port)
    with pytest.raises(RuntimeError, match="ecf.lists"):
        owner.reload_wl_file()
    owner.close()
    bob.alter("/sec/f/t", "add", "variable", "W", "2")
    bob.close()


def test_password_file_refuses_wrong_password(servers, tmp_path, monkeypatch):
    import getpass

    srv = servers(tmp_path / "home")
    user = getpass.getuser()
    host = socket.gethostname()
    pw = srv.home / f"{srv.host}.{srv.port}.ecf.passwd"
    pw.write_text(f"4.5.0\n{user} {host} {srv.port} goodpw\n")
    os.chmod(pw, 0o600)
    client_pw = tmp_path / "client.passwd"
    client_pw.write_text(f"4.5.0\n{user} 127.0.0.1 {srv.port} goodpw\n")
    os.chmod(client_pw, 0o600)
    ci = Client("127.0.0.1", srv.port)
    ci.reload_passwd_file()   # no file was in force yet: accepted; from now on passwords are checked
    with pytest.raises(RuntimeError, match="[Aa]uthentication"):
        ci.ping()             # no password sent
    monkeypatch.setenv("ECF_PASSWD", str(client_pw))
    ci.ping()                 # sends goodpw
    ci.close()
    client_pw.write_text(f"4.5.0\n{user} 127.0.0.1 {srv.port} badpw\n")
    bad = Client("127.0.0.1", srv.port)
    with pytest.raises(RuntimeError, match="[Aa]uthentication"):
        bad.sync_local()
    bad.close()
    monkeypatch.delenv("ECF_PASSWD")
    none = Client("127.0.0.1", srv.port)  # no password at all
    with pytest.raises(RuntimeError, match="[Aa]uthentication"):
        none.sync_local()
    none.close()
    assert "Authentication" in srv.wait_log("Authentication")


# ---------------------------------------------------------------------------------------------- job password
def test_wrong_job_password_is_refused_and_a_zombie(servers, tmp_path):
    srv = servers(tmp_path / "home")
    ci = Client("127.0.0.1", srv.port)
    _load(ci, tmp_path)
    ci.begin_suite("sec")
    info = ci._call("info")[0]
    http = info["http_port"]
    data = urllib.parse.urlencode({"ECF_NAME": "/sec/f/t", "ECF_PASS": "wrongpw", "ECF_TRYNO": "1",
                                   "ECF_RID": "4242", "ECF_DENIED": "1"}).encode()
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"http://127.0.0.1:{http}/v1/child/init", data=data, timeout=20)
    assert err.value.code == 403
    log = srv.wait_log("zombie")
    assert "zombie" in log and "/sec/f/t" in log
    zombies = ci.zombie_get()
    assert any(z["path"] == "/sec/f/t" for z in zombies)
    ci.close()


# ---------------------------------------------------------------------------------------------- Curve
def test_ssl_server_accepts_the_right_key_only(servers, tmp_path, keydir, monkeypatch):
    env = {"ECFLOW_LAB_KEYS": str(keydir)}
    srv = servers(tmp_path / "home", "--ssl", env=env)
    monkeypatch.setenv("ECFLOW_LAB_KEYS", str(keydir))
    monkeypatch.delenv("ECF_SSL", raising=False)
    ci = Client("127.0.0.1", srv.port)
    ci.enable_ssl()
    _load(ci, tmp_path, "v")
    ci.sync_local()
    assert "sec" in str(ci.get_defs())
    ci.close()

    # ECF_SSL=1 does the same as enable_ssl()
    monkeypatch.setenv("ECF_SSL", "1")
    ci = Client("127.0.0.1", srv.port)
    ci.ping()
    ci.close()

    # a client with another key is refused with a clear message, quickly
    stranger = tmp_path / "stranger"
    generate_keypair("client", stranger)
    shutil.copy(keydir / "server.key", stranger / "server.key")
    monkeypatch.setenv("ECFLOW_LAB_KEYS", str(stranger))
    bad = Client("127.0.0.1", srv.port)
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="does not accept this client's key"):
        bad.ping()
    assert time.monotonic() - t0 < 15
    bad.close()

    # a plain client is told that the server wants encryption
    monkeypatch.setenv("ECFLOW_LAB_KEYS", str(keydir))
    monkeypatch.delenv("ECF_SSL")
    plain = Client("127.0.0.1", srv.port)
    plain.disable_ssl()
    with pytest.raises(RuntimeError):
        plain.ping()
    plain.close()


def _marker_exchange(servers, tmp_path: Path, keydir: Path, ssl: bool, backend: str,
                     monkeypatch) -> tuple[bytes, bytes]:
    marker = f"SUITE_VAR_{secrets.token_hex(6)}"
    extra = ("--ssl",) if ssl else ()
    srv = servers(tmp_path / f"home-{ssl}-{backend}", *extra, env={"ECFLOW_LAB_KEYS": str(keydir)})
    monkeypatch.setenv("ECFLOW_LAB_KEYS", str(keydir))
    monkeypatch.setenv("ECF_SSL", "1" if ssl else "0")
    ci = Client("127.0.0.1", srv.port)
    info = ci._call("info")[0]
    ports = {srv.port, info["pub_port"]} | ({info["direct_port"]} if info.get("direct_port") else set())
    caps = [LoopbackCapture(p, backend=backend).start() for p in sorted(ports)]
    try:
        _load(ci, tmp_path, marker)
        ci.sync_local()
        assert marker in str(ci.get_defs())
        ci.alter("/sec", "change", "variable", "SECRET_VALUE", marker + "_2")
        ci.sync_local()
        ci.close()
        time.sleep(0.3)
    finally:
        for c in caps:
            c.stop()
    return marker.encode(), b"".join(c.data for c in caps)


@pytest.mark.parametrize("backend", ["raw", "tshark"])
def test_capture_shows_no_variable_value_with_ssl(servers, tmp_path, keydir, monkeypatch, backend):
    reason = capture_unavailable(backend)
    if reason:
        pytest.skip(f"cannot capture loopback traffic with {backend}: {reason}")
    marker, plain = _marker_exchange(servers, tmp_path, keydir, False, backend, monkeypatch)
    assert marker in plain, "with encryption off the value must be visible (else the test proves nothing)"
    marker, secure = _marker_exchange(servers, tmp_path, keydir, True, backend, monkeypatch)
    assert secure, "the capture saw no traffic at all"
    assert marker not in secure and marker[:12] not in secure


def test_wrong_job_password_over_zmq_and_http_user_commands_under_white_list(servers, tmp_path, monkeypatch):
    srv = servers(tmp_path / "home", files={"ecf.lists": "4.4.14\n-bob\n"})
    ci = Client("127.0.0.1", srv.port)
    _load(ci, tmp_path)
    ci.begin_suite("sec")
    http = ci._call("info")[0]["http_port"]
    monkeypatch.setenv("ECF_DENIED", "1")   # a refused job command fails at once instead of blocking
    job = Client("127.0.0.1", srv.port)
    job.set_child_path("/sec/f/t")
    job.set_child_password("notthejobpw")
    job.set_child_pid("777")
    job.set_child_timeout(20)
    with pytest.raises(RuntimeError):
        job.child_init()
    job.close()
    assert "/sec/f/t" in srv.wait_log("zombie") and "zombie" in srv.log_text()
    assert any(z["path"] == "/sec/f/t" and z["pid"] == "777" for z in ci.zombie_get())
    # user commands over HTTP are user requests too: the white list does not name them, so they are refused
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"http://127.0.0.1:{http}/v1/query?kind=state&path=/sec", timeout=20)
    assert err.value.code in (400, 403) and b"http" in err.value.read()
    ci.close()


def test_command_line_client_ssl_and_user(servers, tmp_path, keydir):
    from ecflow_lab.security import authorize_client

    # bob has his own client key, authorized on the server under his name; he trusts the server's key
    bobkeys = tmp_path / "bobkeys"
    generate_keypair("client", bobkeys)
    shutil.copy(keydir / "server.key", bobkeys / "server.key")
    authorize_client(bobkeys / "client.key", keydir, name="bob")
    srv = servers(tmp_path / "home", "--ssl", env={"ECFLOW_LAB_KEYS": str(keydir)},
                  files={"ecf.lists": "4.4.14\n-bob\n"})

    def client(*args: str, keys: Path = keydir) -> subprocess.CompletedProcess:
        env = {**os.environ, "ECFLOW_LAB_KEYS": str(keys)}
        env.pop("ECF_SSL", None)
        return subprocess.run([sys.executable, "-m", "ecflow_lab", "client", f"--port={srv.port}",
                               "--host=127.0.0.1", *args], capture_output=True, text=True, env=env, timeout=60)

    r = client("--ssl", "--ping")
    assert r.returncode == 0, r.stderr
    f = tmp_path / "s.def"
    f.write_text(SUITE.format(marker="m"))
    r = client("--ssl", "--load", str(f))   # the owner's key: the server's user, read-write
    assert r.returncode == 0, r.stderr
    r = client("--ssl", "--suspend", "/sec", keys=bobkeys)
    assert r.returncode != 0 and "bob" in r.stderr   # bob's key is read-only in the white list...
    r = client("--ssl", "--user", "alice", "--suspend", "/sec", keys=bobkeys)
    assert r.returncode != 0 and "bob" in r.stderr   # ...and a claimed name does not change who he is
    r = client("--ssl", "--get", keys=bobkeys)
    assert r.returncode == 0 and "suite sec" in r.stdout, r.stderr
    # a key authorized while the server runs is accepted after reload_wl_file
    carolkeys = tmp_path / "carolkeys"
    generate_keypair("client", carolkeys)
    shutil.copy(keydir / "server.key", carolkeys / "server.key")
    r = client("--ssl", "--ping", keys=carolkeys)
    assert r.returncode != 0 and "does not accept this client's key" in r.stderr
    authorize_client(carolkeys / "client.key", keydir, name="carol")
    r = client("--ssl", "--reloadwsfile")
    assert r.returncode == 0, r.stderr
    r = client("--ssl", "--ping", keys=carolkeys)
    assert r.returncode != 0 and "carol" in r.stderr   # in now, but not in the white list
    r = client("--ping")   # no --ssl, no ECF_SSL: refused with a message that says why
    assert r.returncode != 0 and "Curve" in r.stderr
    # the plain-text HTTP endpoint carries job commands only while encryption is on
    info = json.loads((srv.home / f"ecflow_lab.{srv.port}.json").read_text())
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"http://127.0.0.1:{info['http_port']}/v1/query?kind=state&path=/sec", timeout=20)
    assert err.value.code == 403 and b"encryption is on" in err.value.read()
    data = urllib.parse.urlencode({"ECF_NAME": "/sec/f/t", "ECF_PASS": "bad", "ECF_RID": "1",
                                   "ECF_DENIED": "1"}).encode()
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"http://127.0.0.1:{info['http_port']}/v1/child/init", data=data, timeout=20)
    assert err.value.code == 403 and b"password" in err.value.read()


def test_server_writes_no_world_writable_files(servers, tmp_path):
    old = os.umask(0)   # a careless umask in the starting shell
    try:
        srv = servers(tmp_path / "home")
    finally:
        os.umask(old)
    ci = Client("127.0.0.1", srv.port)
    _load(ci, tmp_path)
    ci.checkpt()
    ci.close()
    srv.stop()
    written = [p for p in srv.home.rglob("*") if p.name != "server.out"]   # server.out: made by this test
    assert any(p.name.endswith(".ecf.check") for p in written) and any(p.name.endswith(".ecf.log") for p in written)
    loose = [f"{p} {stat.S_IMODE(p.stat().st_mode):04o}" for p in written if p.stat().st_mode & stat.S_IWOTH]
    assert loose == []


def test_server_binds_loopback_by_default(servers, tmp_path):
    srv = servers(tmp_path / "home")
    ci = Client("127.0.0.1", srv.port)
    info = ci._call("info")[0]
    ci.close()
    import psutil

    ports = {srv.port, info["pub_port"], info["http_port"], info["direct_port"]}
    listening = {c.laddr.port: c.laddr.ip for c in psutil.Process(srv.proc.pid).net_connections("tcp")
                 if c.status == psutil.CONN_LISTEN}
    assert ports <= set(listening) and {listening[p] for p in ports} == {"127.0.0.1"}


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_real_jobs_complete_on_an_encrypted_server(servers, tmp_path, keydir, monkeypatch):
    """Jobs' ecflow_client commands go encrypted (the server hands ECF_SSL to its jobs); curl jobs still work."""
    home = tmp_path / "home"
    home.mkdir()
    client = f"{sys.executable} -m ecflow_lab client"
    (home / "s" / "f").mkdir(parents=True)
    (home / "s" / "f" / "a.ecf").write_text(f"""#!/bin/bash
set -e
{client} --init=$$
{client} --event=ev
{client} --label=info "secret-label"
{client} --complete
""")
    (home / "s" / "f" / "b.ecf").write_text("""#!/bin/bash
set -e
URL=http://127.0.0.1:%ECF_HTTP_PORT%/v1/child
AUTH="-d ECF_NAME=%ECF_NAME% -d ECF_PASS=%ECF_PASS% -d ECF_TRYNO=%ECF_TRYNO%"
curl -fsS $URL/init $AUTH -d rid=$$
curl -fsS $URL/complete $AUTH
""")
    srv = servers(home, "--ssl", env={"ECFLOW_LAB_KEYS": str(keydir)})
    monkeypatch.setenv("ECFLOW_LAB_KEYS", str(keydir))
    monkeypatch.setenv("ECF_SSL", "1")
    defs = tmp_path / "s.def"
    defs.write_text(f"""suite s
  edit ECF_HOME '{home}'
  family f
    task a
      event ev
      label info ""
    task b
      trigger a == complete
  endfamily
endsuite
""")
    ci = Client("127.0.0.1", srv.port)
    ci.load(str(defs))
    ci.begin_suite("s")
    deadline = time.monotonic() + 90
    while ci.query("state", "/s") not in ("complete", "aborted") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ci.query("state", "/s") == "complete", ci.get_log(50)
    ci.sync_local()
    a = ci.get_defs().find_abs_node("/s/f/a")
    assert a.find_event("ev").value and a.find_label("info").new_value == "secret-label"
    ci.close()
