"""Simulator benchmark: ``Defs.simulate`` wall time next to real ecFlow 5.9.2's simulator.

    python benchmarks/simulate_bench.py [--families 50] [--no-ecflow]

Workloads
  * ../shared/bench/metabuilder.def (4,559 tasks, crons: a simulated year at minute resolution);
  * a synthetic time-heavy suite: --families families, each with a ``repeat date`` of 10 days, a task on a
    time series, a cron task, a today task and a trigger chain (verify counts included).
Each side runs in a fresh subprocess; both must find the same verdict ('' or a report). The ratio is
ecFlow's time over ours (> 1 means we are faster).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared"
METABUILDER = SHARED / "bench" / "metabuilder.def"
ECFLOW_PY = "/usr/bin/python3"

OURS = """
import json, sys, time
from ecflow_lab.defs import Defs
from ecflow_lab.server import simulate
t = time.perf_counter(); d = Defs.from_string(open(sys.argv[1]).read(), sys.argv[1]); parse = time.perf_counter() - t
res = simulate.run(d, copy=False)
print(json.dumps({"seconds": res.seconds, "parse_s": parse, "steps": res.steps, "jobs": res.jobs,
                  "ok": res.ok, "report_head": res.report[:300]}))
"""

ECFLOW = """
import json, sys, time, ecflow
d = ecflow.Defs(sys.argv[1])
t = time.perf_counter(); r = d.simulate(); dt = time.perf_counter() - t
print(json.dumps({"seconds": dt, "ok": r == "", "report_head": r[:300]}))
"""


def synthetic(families: int, path: Path) -> int:
    lines = ["suite syn", "  clock real 6.5.2024"]
    tasks = 0
    for f in range(families):
        lines += [f"  family f{f}", "    repeat date YMD 20240506 20240515",
                  "    task series", "      time 06:00 09:00 01:00", "      verify complete:40",
                  "    task chained", "      trigger series == complete", "      verify complete:10",
                  "    task when", "      today 10:30", "      verify complete:10",
                  "  endfamily"]
        lines += [f"  task cron{f}", f"    cron -w 1,3,5 {f % 24:02d}:{(f * 7) % 60:02d}"]
        tasks += 4
    lines.append("endsuite")
    path.write_text("\n".join(lines) + "\n")
    return tasks


def run(py: str, code: str, path: Path, timeout: float) -> dict:
    t = time.perf_counter()
    try:
        r = subprocess.run([py, "-c", code, str(path)], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if r.returncode:
        return {"error": r.stderr.strip()[-400:]}
    out = json.loads(r.stdout)
    out["wall_s"] = time.perf_counter() - t
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", type=int, default=50)
    ap.add_argument("--no-ecflow", action="store_true", help="skip the ecFlow anchor (it takes minutes)")
    ap.add_argument("--timeout", type=float, default=900)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="simbench_"))
    work = []
    if METABUILDER.exists():
        work.append(("metabuilder", METABUILDER, 4559))
    syn = tmp / "synthetic.def"
    work.append((f"synthetic_{a.families}f", syn, synthetic(a.families, syn)))
    for name, path, ntasks in work:
        ours = run(sys.executable, OURS, path, a.timeout)
        print(f"{name}: {ntasks} tasks")
        if "error" in ours:
            print(f"  ours   ERROR {ours['error']}")
            continue
        print(f"  ours   simulate_s {ours['seconds']:.2f} s  ({ours['steps']} steps, {ours['jobs']} jobs, "
              f"parse {ours['parse_s']:.2f} s)  verdict {'OK' if ours['ok'] else 'report'}")
        if a.no_ecflow:
            continue
        ref = run(ECFLOW_PY, ECFLOW, path, a.timeout)
        if "error" in ref:
            print(f"  ecflow ERROR {ref['error']}")
            continue
        print(f"  ecflow simulate_s {ref['seconds']:.2f} s  verdict {'OK' if ref['ok'] else 'report'}")
        print(f"  ratio  ecflow/ours {ref['seconds'] / max(ours['seconds'], 1e-9):.1f}x  "
              f"same verdict: {ours['ok'] == ref['ok']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
