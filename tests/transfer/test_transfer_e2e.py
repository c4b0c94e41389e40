"""End to end on real processes: a master and two movers, pushes through the API and the ecpds command."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest

from ecflow_lab.transfer import TransferError


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_sync_push_returns_id_and_bytes_arrive_intact(service, ecpds, client, outdir, tmp_path):
    client.add_destination("arch", f"file://{outdir}")
    src = tmp_path / "field.grib"
    src.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    dfid = client.push(src, "arch", "2026/field.grib", metadata={"stream": "oper"})
    assert isinstance(dfid, int) and dfid > 0
    st = client.wait(dfid, timeout=30)
    (t,) = st["transfers"]
    assert t["status"] == "Done", t
    out = outdir / "2026" / "field.grib"
    assert sha(out) == sha(src)
    assert st["data_file"]["checksum"] == "sha256:" + sha(src)
    assert st["data_file"]["metadata"] == {"stream": "oper"}
    assert [h["status"] for h in t["history"]] == ["Arriving", "Queued", "Transferring", "Done"]
    assert not [p for p in outdir.rglob("*") if p.name.endswith(".part")]


def test_ecpds_push_prints_id_and_status(service, ecpds, client, outdir, tmp_path):
    client.add_destination("arch", f"file://{outdir}")
    src = tmp_path / "a.txt"
    src.write_bytes(b"hello ecpds\n" * 1000)
    r = ecpds("-destination", "arch", "-source", str(src), "-target", "sub/")
    assert r.returncode == 0, r.stderr
    dfid = int(r.stdout.decode().strip())
    client.wait(dfid, timeout=30)
    assert (outdir / "sub" / "a.txt").read_bytes() == src.read_bytes()
    r = ecpds("-status", str(dfid))
    assert r.returncode == 0
    text = r.stdout.decode()
    assert f"DataFileId={dfid}" in text and "Done (DONE)" in text and "Transferring" in text
    # stdin needs -target; then it works
    r = ecpds("-destination", "arch", input=b"from stdin")
    assert r.returncode == 1 or r.returncode == 255
    assert b"-target" in r.stderr
    r = ecpds("-destination", "arch", "-target", "in.txt", "-source", "-", input=b"from stdin")
    assert r.returncode == 0, r.stderr
    client.wait(int(r.stdout), timeout=30)
    assert (outdir / "in.txt").read_bytes() == b"from stdin"


def test_duplicates_requeue_force_purge(service, ecpds, client, outdir, tmp_path):
    client.add_destination("arch", f"file://{outdir}")
    src = tmp_path / "x.bin"
    src.write_bytes(b"one")
    first = client.push(src, "arch")
    client.wait(first, timeout=30)
    src.write_bytes(b"two")
    r = ecpds("-destination", "arch", "-source", str(src))
    assert r.returncode == 255
    assert f"Duplicate DataFile found for target x.bin on arch (DataFileId={first})" in r.stderr.decode()
    second = client.push(src, "arch", force=True)
    assert second != first
    client.wait(second, timeout=30)
    assert (outdir / "x.bin").read_bytes() == b"two"
    assert client.status(first)["data_file"]["deleted"] == 1
    r = ecpds("-destination", "arch", "-target", "x.bin", "-purge")
    assert r.returncode == 0, r.stderr
    assert f"Purge completed with 1 DataTransfer(s) deleted (DataFileId={second})" in r.stdout.decode()
    with pytest.raises(TransferError, match="no DataFile found"):
        client.purge(destination="arch", target="x.bin")


def test_remove_standby_priority_and_requeue(service, ecpds, client, outdir, tmp_path):
    client.add_destination("arch", f"file://{outdir}", max_connections=1)
    src = tmp_path / "gone.bin"
    src.write_bytes(b"data")
    dfid = client.push(src, "arch", remove=True)
    assert not src.exists()
    client.wait(dfid, timeout=30)
    held = tmp_path / "held.bin"
    held.write_bytes(b"held")
    hid = client.push(held, "arch", standby=True)
    time.sleep(0.5)
    assert client.status(hid)["transfers"][0]["status"] == "StandBy"
    assert not (outdir / "held.bin").exists()
    assert client.requeue(hid) == 1
    st = client.wait(hid, timeout=30)
    assert st["transfers"][0]["status"] == "Done"
    assert [h["status"] for h in st["transfers"][0]["history"]][:2] == ["Arriving", "StandBy"]
    # a future -at keeps a transfer Queued
    later = client.push(b"later", "arch", "later.bin", at=time.time() + 3600)
    time.sleep(0.5)
    assert client.status(later)["transfers"][0]["status"] == "Queued"
    assert client.stop(later) == 1
    assert client.status(later)["transfers"][0]["status"] == "Stopped"
    with pytest.raises(TransferError, match="would expire"):
        client.push(b"x", "arch", "expired.bin", at=time.time() - 7200, lifetime="1h")


def test_priority_orders_dispatch(service, ecpds, client, outdir, tmp_path):
    client.add_destination("slow", f"file://{outdir}", max_connections=1)
    client.scheduler("stop", "slow")
    ids = {p: client.push(f"p{p}".encode(), "slow", f"p{p}.bin", priority=p) for p in (50, 0, 99, 10)}
    client.scheduler("start", "slow")
    for i in ids.values():
        client.wait(i, timeout=30)
    started = {p: client.status(i)["transfers"][0]["started"] for p, i in ids.items()}
    assert sorted(started, key=started.get) == [0, 10, 50, 99]


def test_async_group_of_200_files_two_movers_and_waitfor(service, ecpds, client, outdir, tmp_path):
    client.add_destination("arch", f"file://{outdir}", max_connections=8)
    src = tmp_path / "src"
    src.mkdir()
    files = []
    for i in range(200):
        p = src / f"f{i:03d}.dat"
        p.write_bytes(os.urandom(1000 + i))
        files.append(p)
    index = tmp_path / "index.txt"
    index.write_text("\n".join(map(str, files[:199])) + "\n")
    r = ecpds("-destination", "arch", "-groupby", "run42", "-index", "-source", str(index),
              "-target", "run42/")
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.split()) == 199
    r = ecpds("-destination", "arch", "-groupby", "run42", "-source", str(files[199]), "-target",
              "run42/")
    assert r.returncode == 0, r.stderr
    r = ecpds("-waitfor", "run42")
    assert r.returncode == 0, r.stderr
    assert "Group run42 completed" in r.stdout.decode()
    st = client.group_status("run42")
    assert st["counts"] == {"Done": 200} and st["retrieved"] == 200
    for p in files:
        assert (outdir / "run42" / p.name).read_bytes() == p.read_bytes()
    # the retrievals were spread over both movers (who fetched each file is in its history)
    fetchers = {}
    for t in client.transfers(group="run42", limit=300):
        (fetch,) = [h for h in client.history(t["id"]) if h["status"] == "Fetching"]
        fetchers[fetch["mover"]] = fetchers.get(fetch["mover"], 0) + 1
    assert set(fetchers) == {"mover1", "mover2"} and min(fetchers.values()) >= 20, fetchers
    # registering the same group member again just reports it exists (ECPDS -groupby behaviour)
    again = client.push(files[0], "arch", "run42/", groupby="run42")
    assert "already exists" in client.last_message and again > 0


def test_waitfor_unknown_group_and_failed_group(service, ecpds, client, tmp_path):
    start = time.monotonic()
    with pytest.raises(TransferError, match="Group nope not found"):
        client.waitfor("nope", not_found_after=0.5)
    assert time.monotonic() - start < 10
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    client.add_destination("bad", f"file://{blocker}/sub", retry_count=0)
    f = tmp_path / "g.dat"
    f.write_bytes(b"g")
    client.push(f, "bad", groupby="doomed")
    r = ecpds("-waitfor", "doomed")
    assert r.returncode == 255
    assert "Failed" in r.stdout.decode()


def test_missing_source_fails_retrieval_with_error(service, ecpds, client, outdir, tmp_path):
    client.add_destination("arch", f"file://{outdir}")
    f = tmp_path / "vanishing.dat"
    f.write_bytes(b"soon gone")
    dfid = client.push(f, "arch", groupby="gone")
    f.unlink()
    # the master retries the retrieval (fetch_retries, every fetch_retry_delay); requeue tests the path
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        st = client.status(dfid)
        if st["transfers"][0]["status"] == "Failed":
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"retrieval never Failed: {st}")
    t = st["transfers"][0]
    assert "No such file" in t["error"]
    assert any("retrieval attempt 1 failed" in (h["message"] or "") for h in t["history"])


@pytest.mark.parametrize("handoff, verify", [(True, False), (False, False), (False, True)])
def test_push_paths_hand_off_stream_and_verified_stream(service, outdir, tmp_path, handoff, verify):
    """Same-host descriptor hand-off, ZeroMQ streaming, and streaming with a client-side checksum all
    store exactly the source bytes under the same checksum."""
    from ecflow_lab.transfer import TransferClient

    src = tmp_path / "multi-chunk.bin"
    src.write_bytes(os.urandom(20 * 1024 * 1024 + 123))  # several 8 MiB frames / 64 MiB regions edge
    with TransferClient(service.address, timeout=30, local_handoff=handoff) as c:
        c.add_destination("arch", f"file://{outdir}", replace=True)
        seen = []
        dfid = c.push(src, "arch", progress=lambda n, total: seen.append((n, total)))
        st = c.wait(dfid, timeout=60)
    assert st["data_file"]["checksum"] == "sha256:" + sha(src)
    assert sha(outdir / src.name) == sha(src)
    assert seen[-1] == (src.stat().st_size, src.stat().st_size)
    store = service.home / "store"
    assert not list(store.rglob("*.part"))


def test_mover_refuses_forged_uploads(service, client, tmp_path):
    """Both upload paths check the master's token: a client cannot write into the store on its own."""
    import socket as pysocket

    import zmq

    info = client.request("scheduler", action="check")
    assert len(info["movers"]) == 2
    reply = client.request("ping")
    assert reply["ok"]
    f = tmp_path / "f.bin"
    f.write_bytes(b"x" * 10)
    # find a mover's endpoints from a real push reply, then replay it with a forged token
    client.add_destination("arch", f"file://{tmp_path}/out")
    put = client.request("put", destination="arch", files=[{"target": "forged.bin", "size": 10}])
    assert put["mover_fd"] and put["mover"]
    with pysocket.socket(pysocket.AF_UNIX, pysocket.SOCK_STREAM) as s, open(f, "rb") as src:
        s.connect(put["mover_fd"])
        hdr = {"op": "begin", "id": put["id"], "size": 10, "token": "0" * 64, "store_path": put["store_path"]}
        pysocket.send_fds(s, [json.dumps(hdr).encode() + b"\n"], [src.fileno()])
        answer = json.loads(s.makefile("rb").readline())
    assert not answer["ok"] and "bad token" in answer["error"]
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(put["mover"])
    sock.send(json.dumps({**hdr, "token": "f" * 64}).encode())
    assert sock.poll(10000)
    answer = json.loads(sock.recv())
    sock.close(0)
    assert not answer["ok"] and "bad token" in answer["error"]
    assert not (service.home / "store" / put["store_path"]).exists()


def test_watch_streams_status_and_progress_events(service, client, outdir, tmp_path):
    client.add_destination("slow", f"file://{outdir}", rate="2M")
    events: list[dict] = []
    with client.watch(events.append, destination="slow"):
        time.sleep(0.3)  # let the subscription reach the master
        dfid = client.push(os.urandom(1_500_000), "slow", "w.bin")
        client.wait(dfid, timeout=30)
        time.sleep(0.3)
    mine = [e for e in events if e.get("data_file") == dfid]
    statuses = [e["status"] for e in mine]
    assert statuses[0] == "Arriving" and statuses[-1] == "Done"
    assert "Transferring" in statuses  # states within one master batch are coalesced (history has them all)
    progress = [e["bytes_done"] for e in mine if e["status"] == "Transferring"]
    assert any(0 < b < 1_500_000 for b in progress)  # live progress, not just start and end
    assert [e["seq"] for e in mine] == sorted(e["seq"] for e in mine)
    assert not [e for e in events if e.get("type") == "resync"]


def test_failed_retrieval_requeued_after_the_source_returns(service, client, outdir, tmp_path):
    client.add_destination("arch", f"file://{outdir}")
    f = tmp_path / "late.dat"
    f.write_bytes(b"late data")
    client.scheduler("stop")
    dfid = client.push(f, "arch", groupby="late")
    f.rename(tmp_path / "hidden.dat")
    client.scheduler("start")
    deadline = time.monotonic() + 30
    while client.status(dfid)["transfers"][0]["status"] != "Failed":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    (tmp_path / "hidden.dat").rename(f)
    assert client.requeue(dfid) == 1
    st = client.wait(dfid, timeout=30)
    assert st["transfers"][0]["status"] == "Done" and (outdir / "late.dat").read_bytes() == b"late data"
    # a data file replaced by -force cannot be re-queued: its successor can
    newer = client.push(f, "arch", "late.dat", force=True)
    with pytest.raises(TransferError, match="push it again"):
        client.requeue(dfid)
    assert client.wait(newer, timeout=30)["transfers"][0]["status"] == "Done"
