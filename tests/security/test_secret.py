"""Cluster secret: a peer without it is refused and nothing it sent is ever unpickled."""

from __future__ import annotations

import os
import pickle
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import zmq

from ecflow_lab.security import (
    AuthenticationError,
    SecretGate,
    Session,
    client_handshake,
    cluster_secret,
    new_secret,
    server_handshake,
)
from ecflow_lab.security.secret import CHALLENGE, HELLO

PEER = Path(__file__).with_name("worker_peer.py")
SECRET = new_secret()


class GateServer:
    """A ROUTER controller loop (in a thread this object owns) that unpickles only verified payloads."""

    def __init__(self, secret: str) -> None:
        self.ctx = zmq.Context()
        self.router = self.ctx.socket(zmq.ROUTER)
        self.port = self.router.bind_to_random_port("tcp://127.0.0.1")
        self.gate = SecretGate(secret)
        self.unpickled: list[object] = []
        self.done = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.router.poll(50):
                continue
            ident, *frames = self.router.recv_multipart()
            if frames == [b"DONE"]:  # an unsigned end marker from a refused peer: its frames are all in
                self.done.set()
                continue
            payload = self.gate.handle(self.router, ident, frames)
            if payload is None:
                continue
            if payload == [b"DONE"]:
                self.done.set()
                continue
            self.unpickled.append(pickle.loads(payload[0]))  # the only place anything is unpickled

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.router.close(linger=0)
        self.ctx.term()


@pytest.fixture
def controller():
    srv = GateServer(SECRET)
    yield srv
    srv.close()


def run_peer(port: int, secret: str, marker: Path) -> str:
    res = subprocess.run([sys.executable, str(PEER), f"tcp://127.0.0.1:{port}", secret, str(marker)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def test_peer_with_the_secret_is_admitted_and_its_pickles_are_used(controller, tmp_path):
    marker = tmp_path / "unpickled.flag"
    out = run_peer(controller.port, SECRET, marker)
    assert out == "admitted"
    assert controller.done.wait(10)
    assert marker.exists()  # positive control: this payload does create the file when unpickled
    assert len(controller.unpickled) == 1


def test_peer_without_the_secret_is_refused_and_nothing_is_unpickled(controller, tmp_path):
    marker = tmp_path / "unpickled.flag"
    out = run_peer(controller.port, new_secret(), marker)
    assert out.startswith("refused: ") and "could not prove it knows the cluster secret" in out
    assert out.endswith("server said ELS1-DENIED wrong cluster secret")
    assert controller.done.wait(10)
    assert not marker.exists()
    assert controller.unpickled == []
    assert controller.gate.dropped == 2  # the raw pickle and the forged one, both dropped unread
    assert [reason for _, reason in controller.gate.refused] == ["wrong cluster secret"]
    assert not controller.gate.sessions


def test_client_does_not_talk_to_a_server_without_the_secret(tmp_path):
    ctx = zmq.Context()
    try:
        impostor = ctx.socket(zmq.ROUTER)
        port = impostor.bind_to_random_port("tcp://127.0.0.1")
        client = ctx.socket(zmq.DEALER)
        client.connect(f"tcp://127.0.0.1:{port}")
        result: dict[str, BaseException] = {}

        def attempt() -> None:
            try:
                client_handshake(client, SECRET, timeout=5)
            except AuthenticationError as exc:
                result["error"] = exc

        t = threading.Thread(target=attempt)
        t.start()
        assert impostor.poll(5000)
        ident, kind, nonce = impostor.recv_multipart()
        assert kind == HELLO and len(nonce) == 32
        impostor.send_multipart([ident, CHALLENGE, b"n" * 32, b"\0" * 32])  # cannot compute the proof
        t.join(10)
        assert "could not prove it knows the cluster secret" in str(result["error"])
        assert not impostor.poll(300)  # the client sent nothing more (no AUTH, no payload)
    finally:
        ctx.destroy(linger=0)


def test_pair_handshake_and_signed_messages():
    ctx = zmq.Context()
    try:
        a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
        port = a.bind_to_random_port("tcp://127.0.0.1")
        b.connect(f"tcp://127.0.0.1:{port}")
        out: dict[str, Session] = {}
        t = threading.Thread(target=lambda: out.setdefault("server", server_handshake(a, SECRET)))
        t.start()
        client = client_handshake(b, SECRET)
        t.join(10)
        server = out["server"]
        b.send_multipart(client.dumps(lambda x: x * 2))  # cloudpickle inside one cluster
        assert server.loads(a.recv_multipart())(21) == 42
        sealed = server.seal([b"reply", b"two"])
        assert client.open(sealed) == [b"reply", b"two"]
        with pytest.raises(AuthenticationError, match="replayed"):
            client.open(sealed)
        forged = server.seal([b"pay"])
        forged[-1] = b"paz"
        with pytest.raises(AuthenticationError, match="bad signature"):
            client.open(forged)
        with pytest.raises(AuthenticationError, match="unsigned"):
            client.open([b"raw pickle"])
        own = client.seal([b"x"])  # a message reflected back to its sender does not verify
        with pytest.raises(AuthenticationError):
            client.open(own)
    finally:
        ctx.destroy(linger=0)


def test_pair_handshake_with_wrong_secret_fails_on_both_sides():
    ctx = zmq.Context()
    try:
        a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
        port = a.bind_to_random_port("tcp://127.0.0.1")
        b.connect(f"tcp://127.0.0.1:{port}")
        errors: list[BaseException] = []

        def serve() -> None:
            try:
                server_handshake(a, SECRET)
            except AuthenticationError as exc:
                errors.append(exc)

        t = threading.Thread(target=serve)
        t.start()
        with pytest.raises(AuthenticationError, match="could not prove"):
            client_handshake(b, new_secret())
        b.send_multipart([b"AUTH-less junk"])
        t.join(10)
        assert errors and "refused" in str(errors[0])
    finally:
        ctx.destroy(linger=0)


def test_cluster_secret_file(tmp_path):
    f = tmp_path / "cluster" / "secret"
    value = cluster_secret(f)
    assert len(value) == 64 and stat.S_IMODE(f.stat().st_mode) == 0o600
    assert cluster_secret(f) == value
    os.chmod(f, 0o644)
    with pytest.raises(PermissionError, match="chmod 600"):
        cluster_secret(f)
    with pytest.raises(FileNotFoundError):
        cluster_secret(tmp_path / "none", create=False)
    with pytest.raises(ValueError, match="at least 16 bytes"):
        SecretGate("short")
