"""``ecflow-lab cascade ...``: start host agents and controllers of the DAG executor from the shell.

    ecflow-lab cascade controller --bind tcp://0.0.0.0:5555 --secret-file s.key   # prints the address
    ecflow-lab cascade host --controller tcp://node1:5555 --workers 8 --gpus auto --secret-file s.key
    ecflow-lab cascade secret > s.key                                               # a new cluster secret

The controller normally lives in the user's Python process (``Cluster(bind=..., secret=...)``); the
``controller`` sub-command is for a quick multi-host check: it waits for N workers and runs a test graph.
"""

from __future__ import annotations

import argparse
import sys


def _controller(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="ecflow-lab cascade controller")
    p.add_argument("--bind", default="tcp://0.0.0.0:5555")
    p.add_argument("--secret-file", required=True)
    p.add_argument("--workers", type=int, default=1, help="wait for this many workers, then run a self-test")
    p.add_argument("--timeout", type=float, default=120)
    a = p.parse_args(argv)
    from .executor import Cluster
    from .graph import Graph

    with open(a.secret_file) as f:
        secret = bytes.fromhex(f.read().strip())
    with Cluster(bind=a.bind, secret=secret) as cluster:
        print(f"controller listening on {cluster.address}; waiting for {a.workers} worker(s)", flush=True)
        cluster.wait_for_workers(a.workers, a.timeout)
        g = Graph()
        hs = [g.add_task(pow, i, 2) for i in range(100)]
        g.add_task(lambda *xs: sum(xs), *hs, name="total")
        res = cluster.run(g)
        ok = res.value == sum(i * i for i in range(100))
        for w in cluster.workers:
            print(f"  {w['id']} pid={w['pid']} gpu={w['gpu']}")
        print(f"self-test {'passed' if ok else 'FAILED'} in {res.wall:.3f}s on {len(cluster.workers)} workers")
        return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    cmd, rest = args[0], args[1:]
    if cmd == "host":
        from .executor.agent import main as agent_main

        return agent_main(rest)
    if cmd == "worker":
        from .executor.worker import main as worker_main

        return worker_main(rest)
    if cmd == "controller":
        return _controller(rest)
    if cmd == "secret":
        from .executor.wire import new_secret

        print(new_secret().hex())
        return 0
    print(f"ecflow-lab cascade: unknown command {cmd!r}\n{__doc__}", file=sys.stderr)
    return 2
