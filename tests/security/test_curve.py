"""CurveZMQ: a right-key client talks, a wrong-key client gets a clear error fast; ECF_SSL switches."""

from __future__ import annotations

import argparse
import getpass
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zmq

from ecflow_lab.security import (
    ClientCurve,
    CurveHandshakeError,
    CurveServer,
    KeyFileError,
    add_ssl_argument,
    authorize_client,
    connect_checked,
    generate_keypair,
    peer_user,
    secure_client_socket,
    ssl_from_args,
    ssl_setting,
)

ECHO = Path(__file__).with_name("echo_server.py")



@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    c.destroy(linger=0)


def request(sock: zmq.Socket, payload: bytes, timeout: float = 5.0) -> list[bytes]:
    sock.send(payload)
    assert sock.poll(int(timeout * 1000)), "no reply"
    return sock.recv_multipart()


@pytest.fixture
def echo_server(keydir):
    """A real server process with ECF_SSL=1 and the keys of ``keydir``; yields its port."""
    env = dict(os.environ, ECF_SSL="1", ECFLOW_LAB_KEYS=str(keydir))
    proc = subprocess.Popen([sys.executable, str(ECHO)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert line.strip().isdigit(), f"server did not start: {line!r}"
        yield int(line)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def test_right_key_client_talks_to_a_curve_server_process(echo_server, keydir, ctx):
    client = ClientCurve("1", directory=keydir)
    sock = ctx.socket(zmq.DEALER)
    client.connect(sock, "127.0.0.1", echo_server, timeout=10)
    assert request(sock, b"hello") == [b"echo", getpass.getuser().encode(), b"hello"]  # name bound to the key


def test_wrong_client_key_gets_clear_error_quickly(echo_server, tmp_path, keydir, ctx):
    stranger = tmp_path / "stranger"
    generate_keypair("client", stranger)
    # the stranger knows the right server public key but its own key is not authorized
    (stranger / "server.key").write_bytes((keydir / "server.key").read_bytes())
    sock = ctx.socket(zmq.DEALER)
    t0 = time.monotonic()
    with pytest.raises(CurveHandshakeError) as info:
        ClientCurve("1", directory=stranger).connect(sock, "127.0.0.1", echo_server, timeout=10)
    assert time.monotonic() - t0 < 5
    msg = str(info.value)
    assert msg.startswith(f"Curve handshake with tcp://127.0.0.1:{echo_server} failed:")
    assert "does not accept this client's key" in msg and str(stranger) in msg


def test_wrong_server_key_and_plain_client_are_refused(echo_server, tmp_path, keydir, ctx):
    other = generate_keypair("other", tmp_path / "o")
    mine = generate_keypair("client", tmp_path / "o")
    s1 = ctx.socket(zmq.DEALER)
    secure_client_socket(s1, other.public, mine)
    with pytest.raises(CurveHandshakeError, match="server public key this client used does not match"):
        connect_checked(s1, f"tcp://127.0.0.1:{echo_server}", timeout=5)
    s2 = ctx.socket(zmq.DEALER)
    with pytest.raises(CurveHandshakeError, match="requires Curve encryption: set ECF_SSL=1"):
        ClientCurve(None, directory=keydir).connect(s2, "127.0.0.1", echo_server, timeout=5)


def test_curve_client_meeting_plain_server_and_nobody(ctx, keydir):
    router = ctx.socket(zmq.ROUTER)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    sock = ctx.socket(zmq.DEALER)
    with pytest.raises(CurveHandshakeError, match="does not use Curve encryption"):
        ClientCurve("1", directory=keydir).connect(sock, "127.0.0.1", port, timeout=5)
    plain = ctx.socket(zmq.DEALER)
    ClientCurve(None).connect(plain, "127.0.0.1", port, timeout=5)  # plain to plain works
    router.close()
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    nobody = ctx.socket(zmq.DEALER)
    t0 = time.monotonic()
    with pytest.raises(CurveHandshakeError, match="no server answered within 1s"):
        connect_checked(nobody, f"tcp://127.0.0.1:{free}", timeout=1)
    assert time.monotonic() - t0 < 3


def test_allowed_keys_change_at_runtime_and_refusals_are_logged(tmp_path, keydir, ctx, caplog):
    server_kp = generate_keypair("server", tmp_path / "srv")
    alice = generate_keypair("client", tmp_path / "alice")
    with CurveServer(server_kp, {}, directory=tmp_path / "srv") as cs:
        router = cs.socket(zmq.ROUTER)
        port = router.bind_to_random_port("tcp://127.0.0.1")
        s = ctx.socket(zmq.DEALER)
        secure_client_socket(s, server_kp.public, alice)
        with caplog.at_level("WARNING"), pytest.raises(CurveHandshakeError):
            connect_checked(s, f"tcp://127.0.0.1:{port}", timeout=5)
        assert cs.refused[-1] == alice.public
        assert any(alice.public.decode() in r.getMessage() for r in caplog.records)
        s.close(linger=0)
        authorize_client(alice.public_file, tmp_path / "srv", name="alice")
        cs.set_allowed(None)  # re-read the key directory
        s = ctx.socket(zmq.DEALER)
        secure_client_socket(s, server_kp.public, alice)
        connect_checked(s, f"tcp://127.0.0.1:{port}", timeout=5)
        s.send(b"x")
        assert router.poll(5000)
        frames = router.recv_multipart(copy=False)
        assert peer_user(frames[-1]) == "alice"
        router.close(linger=0)
        s.close(linger=0)


def test_ssl_switches(monkeypatch, keydir):
    assert ssl_setting({}) is None
    assert ssl_setting({"ECF_SSL": ""}) is None
    assert ssl_setting({"ECF_SSL": "1"}) == "1"
    assert ssl_setting({"ECF_SSL": "yes"}) == "1"
    assert ssl_setting({"ECF_SSL": "0"}) is None
    assert ssl_setting({"ECF_SSL": "myhost.3141"}) == "myhost.3141"
    p = argparse.ArgumentParser()
    add_ssl_argument(p)
    assert ssl_from_args(p.parse_args(["--ssl"]), env={}) == "1"
    assert ssl_from_args(p.parse_args([]), env={}) is None
    assert ssl_from_args(p.parse_args([]), env={"ECF_SSL": "h.1"}) == "h.1"
    monkeypatch.setenv("ECF_SSL", "1")
    c = ClientCurve(directory=keydir)
    assert c.enabled
    c.disable_ssl()
    assert not c.enabled
    c.enable_ssl()
    assert c.enabled and c.setting == "1"
    assert CurveServer.from_setting(None) is None


def test_per_server_keys_and_missing_keys(tmp_path, ctx):
    d = tmp_path / "k"
    generate_keypair("h.4141", d)  # only a per-server keypair: ECF_SSL=h.4141
    generate_keypair("client", d)
    with CurveServer.from_setting("h.4141", "h", 4141, directory=d) as cs:
        assert cs.keypair.name == "h.4141"
        router = cs.socket(zmq.ROUTER)
        port = router.bind_to_random_port("tcp://127.0.0.1")
        sock = ctx.socket(zmq.DEALER)
        # ECF_SSL=1 falls back to the <host>.<port> files when no shared server.* exists
        ClientCurve("1", directory=d).connect(sock, "h", 4141, endpoint=f"tcp://127.0.0.1:{port}")
        router.close(linger=0)
    with pytest.raises(KeyFileError, match="ecflow-lab keys generate"):
        CurveServer.from_setting("1", "x", 1, directory=tmp_path / "empty")
    with pytest.raises(KeyFileError, match="server's public key"):
        ClientCurve("1", directory=tmp_path / "empty").keys("x", 1)


def test_one_curve_server_per_context(tmp_path):
    kp = generate_keypair("server", tmp_path)
    with CurveServer(kp, {}) as first:
        with pytest.raises(RuntimeError, match="one CurveServer per context"):
            CurveServer(kp, {}, context=first.context)
        with CurveServer(kp, {}) as second:  # its own context: fine beside the first
            assert second.context is not first.context
