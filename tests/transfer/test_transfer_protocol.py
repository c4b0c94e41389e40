"""Malformed and hostile messages get clear errors; nothing stored is lost; the master keeps serving."""

from __future__ import annotations

import json
import time

import pytest
import zmq

from ecflow_lab.transfer import TransferError


@pytest.fixture
def raw(service):
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(service.address)

    def ask(*frames: bytes) -> dict:
        sock.send_multipart(list(frames))
        assert sock.poll(10000), "master did not answer"
        return json.loads(sock.recv())

    yield ask
    sock.close(0)


def test_malformed_messages_get_errors(service, client, raw, outdir):
    client.add_destination("arch", f"file://{outdir}")
    kept = client.push(b"keep me", "arch", "keep.bin")
    assert "bad JSON header" in raw(b"\x80not json")["error"]
    assert "not a JSON object" in raw(b"[1,2]")["error"]
    assert "message without op" in raw(b'{"rid": 1}')["error"]
    assert "unknown request 'explode'" in raw(b'{"op": "explode"}')["error"]
    assert "mover not authenticated" in raw(b'{"op": "hb", "name": "evil"}')["error"]
    assert "mover not authenticated" in raw(b'{"op": "delivered", "id": 1, "key": "00"}')["error"]
    r = raw(json.dumps({"op": "put", "destination": "arch", "files": "abc"}).encode())
    assert "non-empty list" in r["error"]
    r = raw(json.dumps({"op": "put", "destination": "arch", "groupby": "g", "files": [
        {"source": "/etc/hostname", "size": 3, "target": "ok.bin"},
        {"source": "/etc/hostname", "size": 3, "target": "../escape"}]}).encode())
    assert "bad target '../escape'" in r["error"]
    r = raw(json.dumps({"op": "status", "id": "seven"}).encode())
    assert "numeric DataFileId" in r["error"]
    r = raw(json.dumps({"op": "put", "destination": "arch", "files": [{"target": "t", "size": -5}]}).encode())
    assert "bad size -5" in r["error"]
    # nothing half-registered, the earlier file intact, the master still serving
    assert client.group_status("g")["found"] is False
    assert client.wait(kept, timeout=30)["transfers"][0]["status"] == "Done"
    assert (outdir / "keep.bin").read_bytes() == b"keep me"
    with pytest.raises(TransferError, match="unknown DataFileId 999999"):
        client.status(999999)


def test_streamed_push_with_wrong_checksum_or_size_is_refused(service, client, outdir):
    client.add_destination("arch", f"file://{outdir}")
    for payload, size, checksum, expected in [
        (b"abcdef", 6, "sha256:" + "0" * 64, "checksum mismatch"),
        (b"abc", 6, None, "received 3 bytes, 6 announced"),
    ]:
        put = client.request("put", destination="arch", files=[{"target": f"{expected[:5]}.bin", "size": size}])
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(put["mover"])
        sock.send(json.dumps({"op": "begin", "id": put["id"], "size": size, "token": put["token"],
                              "store_path": put["store_path"]}).encode())
        sock.send_multipart([b"D", payload])
        sock.send(json.dumps({"op": "end", "checksum": checksum}).encode())
        assert sock.poll(10000)
        answer = json.loads(sock.recv())
        sock.close(0)
        assert not answer["ok"] and expected in answer["error"]
        for _ in range(100):  # the mover tells the master right after answering the client
            st = client.status(put["id"])
            if st["data_file"]["deleted"]:
                break
            time.sleep(0.05)
        assert st["data_file"]["deleted"] == 1 and st["transfers"][0]["status"] == "Failed"
        assert expected in st["transfers"][0]["error"]
    assert not list((service.home / "store").rglob("*.part"))
    assert not [p for p in outdir.rglob("*") if p.is_file()]
