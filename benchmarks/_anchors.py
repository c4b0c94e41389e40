"""Anchor figures from real ecFlow, run by Debian's /usr/bin/python3 (which imports ecflow).

    /usr/bin/python3 benchmarks/_anchors.py defs PATH [REPEATS]
prints one JSON object: parse_s (best of REPEATS, CPU seconds), write_s, rss_delta_kb (RSS growth of one parse).
"""

import json
import sys
import time


def rss_kb():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def defs(path, repeats=3):
    import ecflow

    before = rss_kb()
    best = None
    keep = None
    for _ in range(repeats):
        keep = None
        t = time.process_time()
        keep = ecflow.Defs(path)
        dt = time.process_time() - t
        best = dt if best is None else min(best, dt)
    grown = rss_kb() - before
    t = time.process_time()
    str(keep)
    write_s = time.process_time() - t
    return {"parse_s": best, "write_s": write_s, "rss_delta_kb": grown,
            "tasks": len(keep.get_all_tasks())}


if __name__ == "__main__":
    if sys.argv[1] == "defs":
        print(json.dumps(defs(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 3)))
