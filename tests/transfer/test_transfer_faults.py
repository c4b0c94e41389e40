"""Faults on real processes: a mover killed mid-transfer, the master killed and restarted, a failing
destination, bad command lines."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ecflow_lab.transfer import TransferClient


def wait_until(pred, timeout: float = 30.0, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout}s")


def test_killed_mover_transfer_is_requeued_and_completes_on_the_other(service, client, outdir, tmp_path):
    # a bandwidth limit makes the delivery last ~3 s, so the kill lands mid-transfer
    client.add_destination("slow", f"file://{outdir}", rate="1M")
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(3 * 1024 * 1024))
    dfid = client.push(src, "slow")

    def running():
        t = client.status(dfid)["transfers"][0]
        return t if t["status"] == "Transferring" and t["bytes_done"] > 0 else None

    t = wait_until(running)
    victim = t["mover"]
    proc = service.movers[int(victim.removeprefix("mover")) - 1]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # a partial temporary file is there, never the final name
    assert not (outdir / "big.bin").exists()
    st = client.wait(dfid, timeout=60)
    t = st["transfers"][0]
    assert t["status"] == "Done"
    statuses = [(h["status"], h["mover"]) for h in t["history"]]
    assert ("Interrupted", victim) in statuses
    assert "ReQueued" in [s for s, _ in statuses]
    other = {"mover1": "mover2", "mover2": "mover1"}[victim]
    assert statuses[-1] == ("Done", other)
    assert hashlib.sha256((outdir / "big.bin").read_bytes()).digest() == hashlib.sha256(src.read_bytes()).digest()
    assert not [p.name for p in outdir.iterdir() if p.name.endswith(".part")]


def test_master_killed_and_restarted_loses_nothing(service, client, outdir, tmp_path):
    client.add_destination("arch", f"file://{outdir}", rate="1M", max_connections=2)
    files = {}
    for i in range(6):
        p = tmp_path / f"s{i}.bin"
        p.write_bytes(os.urandom(300_000))
        files[client.push(p, "arch")] = p
    group = []
    for i in range(30):
        p = tmp_path / f"g{i}.bin"
        p.write_bytes(os.urandom(2000))
        group.append(p)
    ids = client.push_group(group, "arch", "restart-group", target_dir="grp")
    for i, p in zip(ids, group):
        files[i] = outdir / "grp" / p.name, p
    service.kill_master()
    client.close()
    service.start_master()
    service.wait_movers(2)
    with TransferClient(service.address, timeout=15) as c:
        for dfid in files:
            assert c.status(dfid)["data_file"]["id"] == dfid  # every ID handed out survived
        c.waitfor("restart-group", timeout=60)
        for dfid, entry in files.items():
            st = c.wait(dfid, timeout=60)
            assert st["transfers"][0]["status"] == "Done", st
            out, src = entry if isinstance(entry, tuple) else (outdir / entry.name, entry)
            assert out.read_bytes() == src.read_bytes()


def test_failing_destination_retries_then_failed_with_error_in_history(service, client, tmp_path, ecpds):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    client.add_destination("broken", f"file://{blocker}/inbox", retry_count=2, retry_frequency="200z")
    dfid = client.push(b"payload", "broken", "x.bin")
    st = client.wait(dfid, timeout=30)
    t = st["transfers"][0]
    assert t["status"] == "Failed"
    assert t["failures"] == 3
    assert "NotADirectoryError" in t["error"]
    hist = [h for h in t["history"] if h["status"] in ("ReQueued", "Failed")]
    assert [h["status"] for h in hist] == ["ReQueued", "ReQueued", "Failed"]
    assert all("NotADirectoryError" in h["message"] for h in hist)
    assert sum(h["status"] == "Transferring" for h in t["history"]) == 3
    r = ecpds("-status", str(dfid))
    assert "Failed (FAIL)" in r.stdout.decode() and "no retries left" in r.stdout.decode()
    # fixing the destination and re-queueing delivers it
    blocker.unlink()
    blocker.mkdir()
    assert client.requeue(dfid) == 1
    assert client.wait(dfid, timeout=30)["transfers"][0]["status"] == "Done"
    assert (blocker / "inbox" / "x.bin").read_bytes() == b"payload"


def test_bad_command_lines_give_usage_errors(service, ecpds):
    r = ecpds("-dest", "x", "-source", "f")
    assert r.returncode == 1
    err = r.stderr.decode()
    assert "illegal option -dest (did you mean -destination?)" in err and "exit codes:" in err
    r = ecpds("-destination", "x", "-force", "-requeue")
    assert r.returncode == 1 and "-force and -requeue" in r.stderr.decode()
    r = ecpds("-help")
    assert r.returncode == 1 and "255" in r.stdout.decode()
    r = ecpds("-destination", "nowhere", "-source", sys.executable)
    assert r.returncode == 255 and "unknown destination 'nowhere'" in r.stderr.decode()
    r = ecpds("-destination", "nowhere", "-source", "/no/such/file")
    assert r.returncode == 255 and "/no/such/file: no such file" in r.stderr.decode()
    r = subprocess.run([sys.executable, "-m", "ecflow_lab", "transfer", "destination", "--master", service.address,
                        "add", "d1", "ftp://x/y"], capture_output=True)
    assert r.returncode == 255 and "unsupported URL scheme 'ftp'" in r.stderr.decode()
    r = subprocess.run([sys.executable, "-m", "ecflow_lab", "transfer", "destination", "--master", service.address,
                        "add", "d1", "file:///tmp/x", "--colour", "red"], capture_output=True)
    assert r.returncode == 2 and "--colour" in r.stderr.decode()


def test_unreachable_master_is_a_clear_error(tmp_path: Path):
    from ecflow_lab.transfer.service import free_port

    env = {**os.environ, "ECPDS_MASTER": f"tcp://127.0.0.1:{free_port()}"}
    r = subprocess.run([sys.executable, "-m", "ecflow_lab", "ecpds", "-destination", "d", "-source", sys.executable,
                        "-connectTimeoutSec", "1"], capture_output=True, env=env, timeout=60)
    assert r.returncode == 255 and "no answer from the transfer master" in r.stderr.decode()


def test_mover_killed_during_a_streamed_push_fails_it_clearly(service, client, outdir, tmp_path):
    from ecflow_lab.transfer import TransferError

    client.add_destination("arch", f"file://{outdir}")
    src = tmp_path / "stream.bin"
    src.write_bytes(os.urandom(40 * 1024 * 1024))
    killed = []

    def slow_progress(sent: int, total: int) -> None:
        if not killed:  # first chunk is on its way: kill the mover receiving it
            with TransferClient(service.address, timeout=10) as c:
                rows = c.transfers(destination="arch", status="Arriving")
                dfid = rows[0]["data_file"]
                mover = c.status(dfid)["data_file"]["fetch_mover"]
            proc = service.movers[int(mover.removeprefix("mover")) - 1]
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            killed.append(dfid)
        time.sleep(0.2)

    with TransferClient(service.address, timeout=10, local_handoff=False) as c:
        t0 = time.monotonic()
        try:
            c.push(src, "arch", progress=slow_progress)
        except TransferError as exc:
            message = str(exc)
        else:  # pragma: no cover
            raise AssertionError("push to a killed mover succeeded")
    assert time.monotonic() - t0 < 30
    assert "lost during the push" in message and f"DataFileId={killed[0]}" in message
    st = client.status(killed[0])
    assert st["data_file"]["deleted"] == 1 and st["transfers"][0]["status"] == "Failed"
    # the surviving mover takes the next push
    assert client.wait(client.push(src, "arch", "again.bin"), timeout=60)["transfers"][0]["status"] == "Done"


def test_service_processes_exit_when_their_owner_dies(tmp_path):
    """A kernel that dies without closing its TransferService leaves no master or mover behind."""
    import psutil

    script = (
        "import os, sys\n"
        "from ecflow_lab.transfer import TransferService\n"
        f"svc = TransferService({str(tmp_path / 'h')!r}, movers=2).start()\n"
        "print(svc.master.pid, *[m.pid for m in svc.movers], flush=True)\n"
        "os._exit(0)\n"
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    pids = [int(p) for p in r.stdout.split()]
    assert len(pids) == 3

    def alive(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    try:
        wait_until(lambda: not any(alive(p) for p in pids), timeout=15)
    finally:
        for p in pids:
            if alive(p):
                os.kill(p, signal.SIGKILL)
