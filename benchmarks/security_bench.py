"""What encryption and access checks cost on the real services (issue 8): plain vs ECF_SSL (CurveZMQ).

    python benchmarks/security_bench.py                 # defaults below
    python benchmarks/security_bench.py --calls 500 --files 50 --size-mb 16    # quick

Prints one ``name plain ssl ratio`` line per figure, each the best of ``--reps`` interleaved rounds:

- ``server_user_cmds_per_s``: Client user commands (``ping``) per second against ``ecflow-lab server``
  (plain: the direct TCP channel; ssl: Curve-encrypted ZeroMQ, the direct channel being plain is off);
- ``server_user_cmds_wl_passwd_per_s``: the same with a white list and a password file in force (plain);
- ``transfer_small_files_per_s``: ``TransferClient.push`` of small files (master round trips);
- ``transfer_stream_mb_per_s``: a streamed push (``local_handoff=False``: bytes over the mover's data
  socket, as from another host) — the bulk cost of Curve.

There is no anchor in ../shared/bench for this: the ratio ssl/plain is the figure of interest (issue 8
sets no speed target; encryption is expected to cost on bulk data, little on control traffic).
"""

from __future__ import annotations

import argparse
import getpass
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ecflow_lab.client import Client  # noqa: E402
from ecflow_lab.security import generate_keypair  # noqa: E402
from ecflow_lab.server.app import free_port  # noqa: E402
from ecflow_lab.transfer import TransferClient, TransferService  # noqa: E402


def _server(home: Path, ssl: bool, keys: Path, files: dict[str, str] | None = None) -> tuple[subprocess.Popen, int]:
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    for suffix, text in (files or {}).items():
        p = home / f"{socket.gethostname()}.{port}.{suffix}"
        p.write_text(text)
        os.chmod(p, 0o600)
    env = {**os.environ, "ECFLOW_LAB_KEYS": str(keys)}
    env.pop("ECF_SSL", None)
    proc = subprocess.Popen([sys.executable, "-m", "ecflow_lab", "server", "start", "--home", str(home),
                             "--port", str(port), "--checkpoint-mode", "NEVER", *(["--ssl"] if ssl else [])],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not (home / f"ecflow_lab.{port}.json").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        time.sleep(0.05)
    return proc, port


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _pings(port: int, ssl: bool, calls: int) -> float:
    ci = Client("127.0.0.1", port)
    if ssl:
        ci.enable_ssl()
    else:
        ci.disable_ssl()
    ci.ping()
    t = time.perf_counter()
    for _ in range(calls):
        ci.ping()
    rate = calls / (time.perf_counter() - t)
    ci.close()
    return rate


def bench_server(work: Path, keys: Path, calls: int, reps: int) -> list[tuple]:
    os.environ["ECFLOW_LAB_KEYS"] = str(keys)
    user = getpass.getuser()
    plain, pport = _server(work / "srv-plain", False, keys)
    sec, sport = _server(work / "srv-ssl", True, keys)
    host = socket.gethostname()
    guarded, gport = _server(work / "srv-wl", False, keys, {"ecf.lists": f"4.4.14\n{user}\n-bob\n"})
    pw = work / "client.passwd"
    (work / "srv-wl" / f"{host}.{gport}.ecf.passwd").write_text(f"4.5.0\n{user} {host} {gport} pw\n")
    pw.write_text(f"4.5.0\n{user} 127.0.0.1 {gport} pw\n")
    os.chmod(pw, 0o600)
    try:
        ci = Client("127.0.0.1", gport)
        ci.reload_passwd_file()
        ci.close()
        best = {"plain": 0.0, "ssl": 0.0, "wl": 0.0}
        for _ in range(reps):
            best["plain"] = max(best["plain"], _pings(pport, False, calls))
            best["ssl"] = max(best["ssl"], _pings(sport, True, calls))
            os.environ["ECF_PASSWD"] = str(pw)
            try:
                best["wl"] = max(best["wl"], _pings(gport, False, calls))
            finally:
                del os.environ["ECF_PASSWD"]
    finally:
        for p in (plain, sec, guarded):
            _stop(p)
    return [("server_user_cmds_per_s", best["plain"], best["ssl"]),
            ("server_user_cmds_wl_passwd_per_s", best["wl"], None, best["wl"] / best["plain"])]


def bench_transfer(work: Path, keys: Path, files: int, size_mb: int, reps: int) -> list[tuple]:
    out: dict[str, dict[str, float]] = {"plain": {}, "ssl": {}}
    svcs = {mode: TransferService(work / f"tr-{mode}", movers=1, ssl=(mode == "ssl"), keys=keys)
            for mode in ("plain", "ssl")}
    payload = os.urandom(size_mb << 20)
    try:
        for mode, svc in svcs.items():
            svc.start()
            with svc.client(timeout=60) as c:
                c.add_destination("d", f"file://{work}/dest-{mode}")
        for rep in range(reps):
            for mode, svc in svcs.items():
                with TransferClient(svc.address, ssl=(mode == "ssl"), keys=keys, timeout=120,
                                    local_handoff=False) as c:
                    c.ping()
                    t = time.perf_counter()
                    for i in range(files):
                        c.push(b"x" * 1024, "d", f"small/{rep}-{i}.bin")
                    rate = files / (time.perf_counter() - t)
                    out[mode]["small"] = max(out[mode].get("small", 0.0), rate)
                    t = time.perf_counter()
                    c.push(payload, "d", f"big{rep}.bin")
                    mbs = size_mb / (time.perf_counter() - t)
                    out[mode]["stream"] = max(out[mode].get("stream", 0.0), mbs)
    finally:
        for svc in svcs.values():
            svc.close()
    return [("transfer_small_files_per_s", out["plain"]["small"], out["ssl"]["small"]),
            ("transfer_stream_mb_per_s", out["plain"]["stream"], out["ssl"]["stream"])]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=3000, help="user commands per round")
    ap.add_argument("--files", type=int, default=300, help="small pushes per round")
    ap.add_argument("--size-mb", type=int, default=128, help="size of the streamed push")
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="security-bench-") as tmp:
        work = Path(tmp)
        keys = work / "keys"
        generate_keypair("server", keys)
        generate_keypair("client", keys)
        rows = bench_server(work, keys, a.calls, a.reps) + bench_transfer(work, keys, a.files, a.size_mb, a.reps)
    print(f"{'name':34s} {'plain':>12s} {'ssl':>12s} {'ratio':>8s}")
    for name, plain, ssl, *rest in rows:
        if ssl is not None:
            print(f"{name:34s} {plain:12,.1f} {ssl:12,.1f} {ssl / plain:8.2f}   (ssl/plain)")
        else:
            print(f"{name:34s} {plain:12,.1f} {'-':>12s} {rest[0]:8.2f}   (checked/unchecked, plain)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
