"""Loopback capture: with Curve on, a secret value sent to a server is not readable on the wire; off, it is."""

from __future__ import annotations

import secrets

import pytest
import zmq

from ecflow_lab.security import ClientCurve, CurveServer
from ecflow_lab.security.capture import LoopbackCapture, capture_unavailable


def exchange(encrypted: bool, keydir, backend: str) -> tuple[bytes, LoopbackCapture]:
    """Send a suite-variable-like request with a fresh marker and get it echoed back, under capture."""
    marker = f"ECF_VAR_VALUE_{secrets.token_hex(8)}".encode()
    curve = CurveServer.from_setting("1" if encrypted else None, directory=keydir)
    ctx = curve.context if curve else zmq.Context()
    try:
        router = curve.socket(zmq.ROUTER) if curve else ctx.socket(zmq.ROUTER)
        port = router.bind_to_random_port("tcp://127.0.0.1")
        with LoopbackCapture(port, backend=backend) as cap:
            client = ctx.socket(zmq.DEALER)
            ClientCurve("1" if encrypted else None, directory=keydir).connect(client, "127.0.0.1", port)
            client.send(b'{"cmd": "alter", "path": "/s/t", "name": "SECRET", "value": "' + marker + b'"}')
            assert router.poll(5000)
            ident, body = router.recv_multipart()
            router.send_multipart([ident, body])  # the server answers with the value too
            assert client.poll(5000) and marker in client.recv()
            client.close(linger=0)
        router.close(linger=0)
    finally:
        if curve:
            curve.close()
        else:
            ctx.destroy(linger=0)
    assert cap.data, "the capture saw no traffic at all"
    return marker, cap



@pytest.mark.parametrize("backend", ["raw", "tshark"])
def test_marker_visible_without_curve_and_hidden_with_it(keydir, backend):
    reason = capture_unavailable(backend)
    if reason:
        pytest.skip(f"cannot capture loopback traffic with {backend}: {reason}")
    marker, plain = exchange(False, keydir, backend)
    assert marker in plain.data, "capture must see clear text when encryption is off (else the test proves nothing)"
    marker, secure = exchange(True, keydir, backend)
    assert marker not in secure.data
    assert marker[:14] not in secure.data  # not even the prefix: nothing of the request is readable
    assert b'"cmd": "alter"' not in secure.data


def publish(encrypted: bool, keydir) -> tuple[bytes, LoopbackCapture]:
    """A change delta with a marker value on a PUB socket (the server's delta stream), under capture."""
    marker = f"ECF_DELTA_VALUE_{secrets.token_hex(8)}".encode()
    curve = CurveServer.from_setting("1" if encrypted else None, directory=keydir)
    ctx = curve.context if curve else zmq.Context()
    try:
        pub = curve.socket(zmq.PUB) if curve else ctx.socket(zmq.PUB)
        port = pub.bind_to_random_port("tcp://127.0.0.1")
        with LoopbackCapture(port) as cap:
            sub = ctx.socket(zmq.SUB)
            sub.setsockopt(zmq.SUBSCRIBE, b"delta ")
            ClientCurve("1" if encrypted else None, directory=keydir).connect(sub, "127.0.0.1", port)
            got = None
            for _ in range(100):  # PUB drops messages until the subscription has arrived
                pub.send(b'delta {"changes": [{"path": "/s/t", "var": "' + marker + b'"}]}')
                if sub.poll(50):
                    got = sub.recv()
                    break
            assert got is not None and marker in got
            sub.close(linger=0)
        pub.close(linger=0)
    finally:
        if curve:
            curve.close()
        else:
            ctx.destroy(linger=0)
    return marker, cap


def test_delta_stream_hidden_with_curve(keydir):
    reason = capture_unavailable("raw")
    if reason:
        pytest.skip(f"cannot capture loopback traffic: {reason}")
    marker, plain = publish(False, keydir)
    assert marker in plain.data
    marker, secure = publish(True, keydir)
    assert marker not in secure.data and b"ECF_DELTA_VALUE_" not in secure.data
