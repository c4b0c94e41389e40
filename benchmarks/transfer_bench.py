"""Transfer service benchmark: sync push throughput against ``cp``, and files/s for an async group.

    python benchmarks/transfer_bench.py                 # 1 GiB push x3 vs cp x3, 2,000-file group
    python benchmarks/transfer_bench.py --size-mb 128 --files 200 --reps 1     # quick

Anchor for the push: ``cp`` of the same file on the same disk (target: push >= 60% of cp's throughput).
Each timed run starts after ``sync`` so neither side pays for the other's dirty pages; runs are interleaved
and the medians compared. The push is timed until its Data File ID is returned (content in the store,
committed by the master). Same-host pushes hand the open file to the mover (kernel copy, like cp) and the
checksum of the stored bytes follows; ZeroMQ streaming (remote movers) checksums while receiving. The time
until the checksum is known and the delivery to the destination are reported separately.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ecflow_lab.transfer import TransferService  # noqa: E402


def make_file(path: Path, size: int) -> None:
    block = os.urandom(8 << 20)
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(left, len(block))
            f.write(block[:n])
            left -= n


VARIANTS = [
    # (label, master args, client options)
    ("push, same-host hand-off (default)", [], {}),
    ("push, streamed over ZeroMQ (remote movers, stdin)", [], {"local_handoff": False}),
]


def bench_push(work: Path, size_mb: int, reps: int) -> dict[str, float]:
    size = size_mb << 20
    src = work / "source.bin"
    make_file(src, size)
    os.sync()
    with open(src, "rb") as f:  # warm the page cache for both contestants
        while f.read(8 << 20):
            pass
    out = work / "out"
    out.mkdir()
    mb = size / 1e6
    cp_times: list[float] = []
    results: dict[str, list[float]] = {}
    deliver_times: list[float] = []
    checksum_times: list[float] = []
    services = []
    try:
        for i, (label, margs, copts) in enumerate(VARIANTS):
            svc = TransferService(work / f"home{i}", movers=1, master_args=margs).start()
            services.append(svc)
            c = svc.client(timeout=120, **copts)
            c.add_destination("bench", f"file://{out}", max_connections=1)
            c.scheduler("stop", "bench")  # time the push alone; delivery is timed separately
            results[label] = []
        for rep in range(reps):
            os.sync()
            t = time.perf_counter()
            subprocess.run(["cp", str(src), str(work / "cp.bin")], check=True)
            cp_times.append(time.perf_counter() - t)
            (work / "cp.bin").unlink()
            for i, (label, _, _opts) in enumerate(VARIANTS):
                svc = services[i]
                c = svc._clients[0]
                os.sync()
                t = time.perf_counter()
                dfid = c.push(src, "bench", f"push{i}-{rep}.bin")
                results[label].append(time.perf_counter() - t)
                if i == 0:
                    while not c.status(dfid, history=0)["data_file"]["checksum"]:
                        time.sleep(0.005)
                    checksum_times.append(time.perf_counter() - t)
                    os.sync()
                    t = time.perf_counter()
                    c.scheduler("start", "bench")
                    st = c.wait(dfid, timeout=600, poll=0.02)
                    deliver_times.append(time.perf_counter() - t)
                    c.scheduler("stop", "bench")
                    assert st["transfers"][0]["status"] == "Done", st["transfers"][0]
                    assert (out / f"push{i}-{rep}.bin").stat().st_size == size
                    (out / f"push{i}-{rep}.bin").unlink()
                c.purge(dfid)
    finally:
        for svc in services:
            svc.close()
    cp_med = statistics.median(cp_times)
    print(f"sync push of {size_mb} MiB, {reps} interleaved run(s) each, same disk ({work}); "
          f"timed until the Data File ID is returned (content in the store, committed by the master):")
    print(f"  {'cp (anchor)':<58} median {mb / cp_med:6.0f} MB/s  best {mb / min(cp_times):6.0f} MB/s  "
          f"runs {', '.join(f'{t:.2f}s' for t in cp_times)}")
    ratios = {}
    for label, times in results.items():
        med = statistics.median(times)
        ratios[label] = cp_med / med
        print(f"  {label:<58} median {mb / med:6.0f} MB/s  best {mb / min(times):6.0f} MB/s  "
              f"runs {', '.join(f'{t:.2f}s' for t in times)}")
    for label, ratio in ratios.items():
        print(f"  ratio push/cp (medians)  {label:<58} {ratio:.2f}  "
              f"(target >= 0.60: {'met' if ratio >= 0.6 else 'NOT met'})")
    ck_med = statistics.median(checksum_times)
    print(f"  hand-off: sha256 of the stored bytes known after (push + checksum) median {ck_med:.2f}s = "
          f"{mb / ck_med:.0f} MB/s, ratio to cp {cp_med / ck_med:.2f} (no delivery starts before it)")
    del_med = statistics.median(deliver_times)
    print(f"  delivery store -> directory destination (checksum verified, temp name + rename): "
          f"median {mb / del_med:.0f} MB/s")
    print(f"  load average during the run: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPU(s)")
    return ratios


def bench_group(work: Path, n: int, file_size: int) -> dict[str, float]:
    src = work / "group"
    src.mkdir()
    files = []
    for i in range(n):
        p = src / f"f{i:05d}.dat"
        p.write_bytes(os.urandom(file_size))
        files.append(p)
    out = work / "gout"
    with TransferService(work / "ghome", movers=2) as svc, svc.client(timeout=60) as c:
        c.add_destination("bench", f"file://{out}", max_connections=16)
        t0 = time.perf_counter()
        for p in files:  # one request per file, as ecpds -groupby calls from job scripts would do
            c.push(p, "bench", "g/", groupby="bench-group")
        t_reg = time.perf_counter() - t0
        st = c.waitfor("bench-group", poll=0.05)
        t_all = time.perf_counter() - t0
        assert st["counts"] == {"Done": n}, st["counts"]
        t1 = time.perf_counter()
        c.push_group(files, "bench", "bench-index", target_dir="i")  # ecpds -index: one request
        t_idx = time.perf_counter() - t1
        c.waitfor("bench-index", poll=0.05)
        t_idx_all = time.perf_counter() - t1
    print(f"async group of {n} files x {file_size} B, 2 movers:")
    print(f"  registration, one request per file   {n / t_reg:8.0f} files/s   ({t_reg:.2f}s)")
    print(f"  registered -> all Done (retrieved, stored, delivered)  {n / t_all:8.0f} files/s   ({t_all:.2f}s)")
    print(f"  same group with -index (one request) {n / t_idx:8.0f} files/s registered, "
          f"{n / t_idx_all:.0f} files/s all Done ({t_idx_all:.2f}s)")
    return {"files_per_s": n / t_all}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--file-size", type=int, default=4096)
    ap.add_argument("--dir", help="work directory (default: a temporary one next to this checkout)")
    args = ap.parse_args()
    base = Path(args.dir) if args.dir else Path(__file__).resolve().parents[1]
    work = Path(tempfile.mkdtemp(prefix=".transfer-bench-", dir=base))
    try:
        bench_push(work, args.size_mb, args.reps)
        bench_group(work, args.files, args.file_size)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
