"""Issue 8 on the real transfer service: CurveZMQ (ECF_SSL / --ssl), data-user permissions, file modes.

Every test runs a real master and real movers as subprocesses (``TransferService``) talking over real
sockets; the capture test reads loopback traffic with a raw socket (or tshark).
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ecflow_lab.security import generate_keypair
from ecflow_lab.security.capture import LoopbackCapture, capture_unavailable
from ecflow_lab.transfer import TransferClient, TransferError, TransferService


@pytest.fixture
def stranger_keys(tmp_path: Path, keydir: Path) -> Path:
    """Someone who knows the server's public key but whose own client key was never authorized."""
    d = tmp_path / "stranger"
    generate_keypair("client", d)
    shutil.copy(keydir / "server.key", d / "server.key")
    return d


@pytest.fixture
def secure_service(tmp_path: Path, keydir: Path):
    svc = TransferService(tmp_path / "home", movers=1, mover_timeout=1.5, heartbeat=0.2, ssl=True, keys=keydir)
    with svc:
        yield svc


def _wait_done(c: TransferClient, dfid: int) -> dict:
    st = c.wait(dfid, timeout=60)
    assert [t["status"] for t in st["transfers"]] == ["Done"], st
    return st


def test_encrypted_service_pushes_streams_and_watches(secure_service, tmp_path):
    assert secure_service.master_info()["ssl"] == "1"
    out = tmp_path / "out"
    events: list[dict] = []
    with secure_service.client(timeout=20) as c:
        assert c.ssl
        c.add_destination("archive", f"file://{out}")
        with c.watch(events.append):
            time.sleep(0.3)  # let the subscription reach the PUB socket (a Curve handshake first)
            payload = os.urandom(300_000)
            # streamed over the mover's encrypted data socket (no descriptor handoff)
            streaming = TransferClient(secure_service.address, ssl=True, keys=secure_service.keys,
                                       local_handoff=False, timeout=20)
            with streaming:
                dfid = streaming.push(payload, "archive", "streamed.bin")
                _wait_done(streaming, dfid)
            src = tmp_path / "src.bin"
            src.write_bytes(b"handoff" * 1000)
            _wait_done(c, c.push(src, "archive", "handed.bin"))
            deadline = time.monotonic() + 10
            while not any(e.get("status") == "Done" for e in events) and time.monotonic() < deadline:
                time.sleep(0.05)
    assert (out / "streamed.bin").read_bytes() == payload
    assert (out / "handed.bin").read_bytes() == b"handoff" * 1000
    assert any(e.get("status") == "Done" and e.get("target") for e in events), events[-5:]


def test_client_with_wrong_key_gets_clear_error(secure_service, stranger_keys, tmp_path):
    with TransferClient(secure_service.address, ssl=True, keys=stranger_keys, timeout=5) as c:
        t0 = time.monotonic()
        with pytest.raises(TransferError, match="does not accept this client's key"):
            c.ping()
        assert time.monotonic() - t0 < 8
    # a wrong *server* key (the client trusts another server) is named as such
    other = tmp_path / "other"
    generate_keypair("server", other)
    shutil.copy(secure_service.keys / "client.key", other / "client.key")
    shutil.copy(secure_service.keys / "client.key_secret", other / "client.key_secret")
    with TransferClient(secure_service.address, ssl=True, keys=other, timeout=5) as c:
        with pytest.raises(TransferError, match="server public key"):
            c.ping()
    # missing keys: the error names the key directory and the command that creates them
    with TransferClient(secure_service.address, ssl=True, keys=tmp_path / "nokeys", timeout=5) as c:
        with pytest.raises(TransferError, match="ecflow-lab keys generate"):
            c.ping()
    # the refusal is logged by the master
    deadline = time.monotonic() + 5
    log = secure_service.log_dir / "master.log"
    while "refused a client" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "refused a client" in log.read_text()


def test_plain_client_cannot_talk_to_encrypted_master(secure_service):
    with TransferClient(secure_service.address, ssl=False, timeout=30) as c:
        t0 = time.monotonic()
        with pytest.raises(TransferError, match="requires Curve encryption"):
            c.ping()
        assert time.monotonic() - t0 < 10   # said at once, not after the request timeout


def test_mover_without_authorized_key_cannot_join(secure_service, stranger_keys):
    # a complete key directory of its own (it can serve its data socket), trusting the real master's key
    generate_keypair("server", stranger_keys / "own")
    for suffix in (".key", ".key_secret"):
        shutil.copy(stranger_keys / "own" / f"server{suffix}", stranger_keys / f"server{suffix}")
    shutil.copy(secure_service.keys / "server.key", stranger_keys / "server.key")
    env = {**secure_service.env, "ECFLOW_LAB_KEYS": str(stranger_keys), "ECF_SSL": "1"}
    p = subprocess.Popen([sys.executable, "-m", "ecflow_lab", "transfer", "mover", "--master",
                          secure_service.address, "--home", str(secure_service.home), "--name", "intruder",
                          "--heartbeat", "0.2"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(3)
        assert p.poll() is None  # it keeps trying, as a mover does when its master is away...
        with secure_service.client(timeout=10) as c:
            movers = [m["name"] for m in c.scheduler()["movers"]]
        assert movers == ["mover1"]  # ...but never gets in, though it holds the cluster secret
        assert "refused a client" in (secure_service.log_dir / "master.log").read_text()
    finally:
        p.terminate()
        p.wait(10)


def test_cli_and_ecpds_follow_ecf_ssl(secure_service, tmp_path):
    env = {**os.environ, "ECFLOW_LAB_KEYS": str(secure_service.keys), "ECPDS_MASTER": secure_service.address}
    env.pop("ECF_SSL", None)
    out = tmp_path / "out"

    def run(*args: str, input: bytes | None = None, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "ecflow_lab", *args], capture_output=True, input=input,
                              env={**env, **extra}, timeout=120)

    r = run("transfer", "destination", "--master", secure_service.address, "--ssl", "add", "d1", f"file://{out}")
    assert r.returncode == 0, r.stderr
    r = run("ecpds", "-destination", "d1", "-target", "e.txt", input=b"via ecpds", ECF_SSL="1")
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 30
    while not (out / "e.txt").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert (out / "e.txt").read_bytes() == b"via ecpds"


def test_data_user_without_permission_cannot_push_over_ssl(secure_service, tmp_path):
    out = tmp_path / "out"
    with secure_service.client(timeout=20) as c:
        c.add_destination("public", f"file://{out}/public")
        c.add_destination("restricted", f"file://{out}/restricted")
        c.add_user("root", "rootpass", admin=True)
    with secure_service.client(user="root", password="rootpass", timeout=20) as admin:
        admin.add_user("alice", "alicepass", ["public"])
        admin.add_user("carol", "carolpass", ["restricted"])
    with secure_service.client(user="alice", password="alicepass", timeout=20) as alice:
        _wait_done(alice, alice.push(b"ok", "public", "a.txt"))
        with pytest.raises(TransferError, match="may not use destination 'restricted'"):
            alice.push(b"no", "restricted", "b.txt")
        # a multi-destination push naming a forbidden destination is refused as a whole
        with pytest.raises(TransferError, match="may not use destination 'restricted'"):
            alice.push(b"no", ["public", "restricted"], "c.txt")
    with secure_service.client(user="carol", password="carolpass", timeout=20) as carol:
        kept = carol.push(b"carol's", "restricted", "k.txt")
        _wait_done(carol, kept)
    with secure_service.client(user="alice", password="alicepass", timeout=20) as alice:
        # nor can she purge (-purge needs the delete permission there), and nothing is lost by trying
        with pytest.raises(TransferError, match="may not use destination 'restricted'"):
            alice.purge(kept)
        with pytest.raises(TransferError, match="may not use destination 'restricted'"):
            alice.purge(destination="restricted", target="k.txt")
    with secure_service.client(user="carol", password="carolpass", timeout=20) as carol:
        assert [t["status"] for t in carol.status(kept)["transfers"]] == ["Done"]
    env = {**os.environ, "ECFLOW_LAB_KEYS": str(secure_service.keys), "ECPDS_MASTER": secure_service.address,
           "ECF_SSL": "1"}
    r = subprocess.run([sys.executable, "-m", "ecflow_lab", "ecpds", "-user", "alice", "-pass", "alicepass",
                        "-destination", "restricted", "-target", "cli.txt"], input=b"x", capture_output=True,
                       env=env, timeout=120)
    assert r.returncode != 0 and "may not use destination 'restricted'" in r.stderr.decode()
    assert sorted(p.name for p in (out / "restricted").iterdir()) == ["k.txt"]
    assert (out / "public" / "a.txt").read_bytes() == b"ok"


def test_services_write_no_world_writable_files(tmp_path, keydir):
    old = os.umask(0)  # the children inherit a careless umask; the services must not rely on it
    try:
        svc = TransferService(tmp_path / "home", movers=1, heartbeat=0.2, ssl=False)
        svc.start()
    finally:
        os.umask(old)
    out = tmp_path / "out"
    out.mkdir(mode=0o755)
    try:
        with svc.client(timeout=20) as c:
            c.add_destination("d", f"file://{out}/sub")
            src = tmp_path / "f.bin"
            src.write_bytes(b"data")
            _wait_done(c, c.push(src, "d", "deep/f.bin"))
            _wait_done(c, TransferClient(svc.address, local_handoff=False, timeout=20).push(b"zz", "d", "g.bin"))
        written = [p for root in (svc.home, out) for p in root.rglob("*")]
        assert any(p.name == "ecpds.db" for p in written) and any(p.name == "f.bin" for p in written)
        loose = [f"{p} {stat.S_IMODE(p.stat().st_mode):04o}" for p in written
                 if not p.is_symlink() and p.exists() and p.stat().st_mode & stat.S_IWOTH]
        assert loose == []
        assert stat.S_IMODE((svc.home / "secret").stat().st_mode) == 0o600
    finally:
        svc.close()


def test_services_bind_loopback_by_default(tmp_path):
    with TransferService(tmp_path / "home", movers=1, heartbeat=0.2, ssl=False) as svc:
        info = svc.master_info()
        assert info["address"].startswith("tcp://127.0.0.1:") and info["events"].startswith("tcp://127.0.0.1:")
        with svc.client(timeout=10) as c:
            assert all(m["address"].startswith("tcp://127.0.0.1:") for m in c.scheduler()["movers"])


@pytest.mark.parametrize("backend", ["raw", "tshark"])
def test_capture_shows_no_metadata_when_encrypted(tmp_path, keydir, backend):
    reason = capture_unavailable(backend)
    if reason:
        pytest.skip(f"cannot capture loopback traffic with {backend}: {reason}")

    def exchange(ssl: bool) -> tuple[bytes, bytes]:
        marker = f"SECRET_TARGET_{secrets.token_hex(6)}".encode()
        home = tmp_path / f"home-{ssl}-{backend}"
        with TransferService(home, movers=1, heartbeat=0.2, ssl=ssl, keys=keydir) as svc:
            with svc.client(timeout=20) as c:
                c.add_destination("d", f"file://{tmp_path}/out-{ssl}-{backend}")
                with LoopbackCapture(svc.port, backend=backend) as cap:
                    dfid = c.push(b"payload", "d", marker.decode() + ".txt",
                                  metadata={"password_hint": marker.decode()})
                    c.wait(dfid, timeout=30)
                    c.status(dfid)
        return marker, cap.data

    marker, plain = exchange(False)
    assert marker in plain, "with encryption off the capture must show the target (else the test proves nothing)"
    marker, secure = exchange(True)
    assert secure, "the capture saw no traffic at all"
    assert marker not in secure and marker[:14] not in secure
