"""Scheduling behaviour on real processes: connection limits, -asap, -delay, -version, lifetime expiry,
concurrent pushes, and the administration command line."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from ecflow_lab.transfer import TransferClient, TransferError, TransferService


def test_max_connections_is_respected(service, client, outdir, tmp_path):
    client.add_destination("narrow", f"file://{outdir}", max_connections=2, rate="1M")
    ids = [client.push(os.urandom(150_000), "narrow", f"n{i}.bin") for i in range(6)]
    peak = 0
    while True:
        rows = client.transfers(destination="narrow")
        running = sum(t["status"] == "Transferring" for t in rows)
        assert running <= 2
        peak = max(peak, running)
        if all(t["status"] == "Done" for t in rows):
            break
        time.sleep(0.02)
    assert peak == 2
    assert len(ids) == len(set(ids)) == 6


def test_asap_waits_until_the_whole_group_is_retrieved(tmp_path):
    out = tmp_path / "out"
    with TransferService(tmp_path / "home", movers=1, master_args=["--fetch-retry-delay", "1.5"]) as svc, \
            svc.client(timeout=15) as c:
        c.add_destination("arch", f"file://{out}")
        c.scheduler("stop")  # pause retrievals while the group is registered
        a, b = tmp_path / "a.dat", tmp_path / "b.dat"
        a.write_bytes(b"A" * 100)
        b.write_bytes(b"B" * 100)
        ida = c.push(a, "arch", groupby="g", asap=True)
        idb = c.push(b, "arch", groupby="g", asap=True)
        b.unlink()  # b's first retrieval fails; it is retried 1.5 s later
        c.scheduler("start")
        deadline = time.monotonic() + 10
        while c.status(ida)["data_file"]["status"] != "stored":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.3)
        assert c.status(ida)["transfers"][0]["status"] == "Queued"  # held: the group is not complete
        assert not (out / "a.dat").exists()
        b.write_bytes(b"B" * 100)
        c.waitfor("g", timeout=30)
        assert c.status(idb)["transfers"][0]["status"] == "Done"
        assert (out / "a.dat").read_bytes() == b"A" * 100


def test_ecpds_connection_flags_delay_and_versions(service, client, outdir, tmp_path):
    client.add_destination("arch", f"file://{outdir}")
    src = tmp_path / "v.txt"
    src.write_text("v1")
    port = service.address.rsplit(":", 1)[1]
    env = {k: v for k, v in os.environ.items() if k not in ("ECPDS_MASTER", "ECHOST", "ECPORT")}

    def run(*args):
        return subprocess.run([sys.executable, "-m", "ecflow_lab", "ecpds", "-echost", "127.0.0.1", "-ecport", port,
                               *args], capture_output=True, env=env, timeout=60)

    r = run("-destination", "arch", "-source", str(src), "-delay", "1h", "-metadata", "stream=oper,step=12")
    assert r.returncode == 0, r.stderr
    delayed = int(r.stdout)
    t = client.status(delayed)["transfers"][0]
    assert t["status"] == "Queued" and t["at"] > time.time() + 3500
    assert t["expiry"] == pytest.approx(t["at"] + 2 * 86400, abs=5)
    # same target, another -version: a distinct data file; same version: a duplicate
    r = run("-destination", "arch", "-source", str(src), "-version", "2")
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) != delayed
    r = run("-destination", "arch", "-source", str(src), "-version", "2")
    assert r.returncode == 255 and "Duplicate DataFile" in r.stderr.decode()
    r = run("-destination", "arch", "-source", str(src), "-version", "3", "-verbose")
    assert r.returncode == 0 and "DataTransfer(s) will start at" in r.stdout.decode()


def test_lifetime_expiry_frees_the_store(service, client, outdir):
    client.add_destination("arch", f"file://{outdir}")
    dfid = client.push(b"short-lived", "arch", "s.bin", lifetime="1s")
    st = client.wait(dfid, timeout=30)
    stored = service.home / "store" / st["data_file"]["store_path"]
    assert st["transfers"][0]["status"] == "Done" and stored.exists()
    deadline = time.monotonic() + 15
    while client.status(dfid)["data_file"]["status"] != "expired":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert not stored.exists()
    assert (outdir / "s.bin").read_bytes() == b"short-lived"  # delivered copies are not touched
    with pytest.raises(TransferError, match="expired"):
        client.requeue(dfid)


@pytest.mark.parametrize("handoff", [True, False])
def test_concurrent_pushes(service, outdir, tmp_path, handoff):
    with TransferClient(service.address) as c:
        c.add_destination("arch", f"file://{outdir}", max_connections=8)
    results: dict[int, bytes] = {}
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        data = os.urandom(100_000 + i * 7919)
        p = tmp_path / f"c{i}.bin"
        p.write_bytes(data)
        try:
            with TransferClient(service.address, timeout=60, local_handoff=handoff) as c:
                results[c.push(p, "arch")] = data
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 12
    with TransferClient(service.address) as c:
        for dfid in results:
            assert c.wait(dfid, timeout=60)["transfers"][0]["status"] == "Done"
    for i in range(12):
        assert (outdir / f"c{i}.bin").read_bytes() == (tmp_path / f"c{i}.bin").read_bytes()


def test_admin_command_line(service, outdir):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "ecflow_lab", "transfer", *args], capture_output=True,
                              timeout=60, env={**os.environ, "ECPDS_MASTER": service.address})

    r = run("destination", "add", "arch", f"file://{outdir}", "--max-connections", "3", "--retry-count", "7",
            "--retry-frequency", "30s", "--rate", "10M")
    assert r.returncode == 0, r.stderr
    r = run("destination", "add", "arch", f"file://{outdir}")
    assert r.returncode == 255 and "already exists" in r.stderr.decode()
    r = run("destination", "list")
    text = r.stdout.decode()
    assert "arch" in text and "max_connections=3 retry_count=7 retry_frequency=30s rate=10485760" in text
    with TransferClient(service.address) as c:
        dfid = c.push(b"x", "arch", "x.bin")
        c.wait(dfid, timeout=30)
    r = run("list", "--destination", "arch")
    assert r.returncode == 0 and "Done" in r.stdout.decode() and "x.bin" in r.stdout.decode()
    r = run("destination", "remove", "arch")
    assert r.returncode == 0 and "removed" in r.stdout.decode()
    r = run("destination", "list")
    assert "arch" not in r.stdout.decode()


def test_several_destinations_noretrieval_and_size_checks(service, client, outdir, tmp_path, ecpds):
    client.add_destination("a", f"file://{outdir}/a")
    client.add_destination("b", f"file://{outdir}/b")
    src = tmp_path / "multi.bin"
    src.write_bytes(os.urandom(50_000))
    r = ecpds("-destination", "a,b", "-source", str(src), "-verbose")
    assert r.returncode == 0, r.stderr
    assert "2 DataTransfer(s) will start at" in r.stdout.decode()
    dfid = int(r.stdout.decode().rsplit("DatafileId=", 1)[1].rstrip(")\n"))
    st = client.wait(dfid, timeout=30)
    assert sorted(t["destination"] for t in st["transfers"]) == ["a", "b"]
    assert (outdir / "a" / "multi.bin").read_bytes() == (outdir / "b" / "multi.bin").read_bytes() == src.read_bytes()
    # -noretrieval: delivered straight from the source, nothing copied into the store
    nr = tmp_path / "inplace.bin"
    nr.write_bytes(b"in place")
    r = ecpds("-destination", "a", "-source", str(nr), "-groupby", "nr", "-noretrieval")
    assert r.returncode == 0, r.stderr
    st = client.wait(int(r.stdout), timeout=30)
    assert st["transfers"][0]["status"] == "Done" and st["data_file"]["store_path"] == str(nr)
    assert st["data_file"]["checksum"] and (outdir / "a" / "inplace.bin").read_bytes() == b"in place"
    # -s / -M size guards
    r = ecpds("-destination", "a", "-source", str(src), "-target", "s.bin", "-s", "10")
    assert r.returncode == 255 and "-s requires 10" in r.stderr.decode()
    r = ecpds("-destination", "a", "-source", str(src), "-target", "m.bin", "-M", "1k")
    assert r.returncode == 255 and "more than -M 1024" in r.stderr.decode()


def test_transfer_up_runs_master_and_movers_until_sigterm(tmp_path):
    import signal as sig

    from ecflow_lab.transfer.service import free_port

    port = free_port()
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "ecflow_lab", "transfer", "up", "--home", str(tmp_path / "h"),
                             "--port", str(port), "--movers", "2", "--destination", f"arch=file://{out}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        line = proc.stdout.readline().decode()
        assert f"transfer service on tcp://127.0.0.1:{port} with 2 mover(s)" in line
        with TransferClient(f"tcp://127.0.0.1:{port}", timeout=15) as c:
            assert c.ping()["movers"] == 2
            dfid = c.push(b"up!", "arch", "u.txt")
            c.wait(dfid, timeout=30)
        assert (out / "u.txt").read_bytes() == b"up!"
    finally:
        proc.send_signal(sig.SIGTERM)
        assert proc.wait(20) == 0
        proc.stdout.close()


def test_stopped_before_retrieval_stays_stopped(service, client, outdir, tmp_path):
    client.add_destination("arch", f"file://{outdir}")
    client.scheduler("stop")  # retrievals paused
    f = tmp_path / "s.dat"
    f.write_bytes(b"s")
    dfid = client.push(f, "arch", groupby="gs")
    assert client.status(dfid)["transfers"][0]["status"] == "Preset"
    assert client.stop(dfid) == 1
    client.scheduler("start")
    deadline = time.monotonic() + 10
    while client.status(dfid)["data_file"]["status"] != "stored":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.3)
    assert client.status(dfid)["transfers"][0]["status"] == "Stopped"
    assert not (outdir / "s.dat").exists()
    assert client.requeue(dfid) == 1  # and a re-queue sends it
    assert client.wait(dfid, timeout=30)["transfers"][0]["status"] == "Done"


def test_pushes_are_not_delayed_by_slow_deliveries(tmp_path):
    """Every delivery thread of the only mover is busy on a throttled destination: pushes still return."""
    with TransferService(tmp_path / "h", movers=1, mover_threads=2) as svc, svc.client(timeout=15) as c:
        c.add_destination("slow", f"file://{tmp_path}/out", rate="200k", max_connections=2)
        for i in range(2):
            c.push(os.urandom(400_000), "slow", f"big{i}.bin")
        deadline = time.monotonic() + 10
        while sum(t["status"] == "Transferring" for t in c.transfers(destination="slow")) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        f = tmp_path / "quick.bin"
        f.write_bytes(b"q" * 1000)
        t0 = time.monotonic()
        dfid = c.push(f, "slow", "quick.bin")
        assert time.monotonic() - t0 < 1.5
        assert c.status(dfid)["transfers"][0]["status"] == "Queued"


def test_dispatch_times_from_at_format_and_destination_daily_time(service, client, outdir, tmp_path, ecpds):
    import datetime as dt

    client.add_destination("arch", f"file://{outdir}")
    src = tmp_path / "at.txt"
    src.write_text("at")
    r = ecpds("-destination", "arch", "-source", str(src), "-at", "2031-05-06T07:08", "-format", "yyyy-MM-dd'T'HH:mm")
    assert r.returncode == 0, r.stderr
    t = client.status(int(r.stdout))["transfers"][0]
    assert t["status"] == "Queued" and t["at"] == dt.datetime(2031, 5, 6, 7, 8).timestamp()
    r = ecpds("-destination", "arch", "-source", str(src), "-target", "bad.txt", "-at", "tomorrow")
    assert r.returncode == 1 and "-at: bad -at time 'tomorrow'" in r.stderr.decode()
    with pytest.raises(TransferError, match="bad duration"):
        client.push(b"x", "arch", "x.bin", lifetime="forever")
    # a destination with a daily dispatch time holds pushes without -at until then
    soon = dt.datetime.now() + dt.timedelta(hours=2)
    client.add_destination("nightly", f"file://{outdir}/n", at=soon.strftime("%H:%M"), priority=5)
    dfid = client.push(b"n", "nightly", "n.bin")
    t = client.status(dfid)["transfers"][0]
    expected = soon.replace(second=0, microsecond=0).timestamp()
    assert t["status"] == "Queued" and abs(t["at"] - expected) < 1 and t["priority"] == 5
