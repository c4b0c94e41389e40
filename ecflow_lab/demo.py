"""``ecflow-lab demo``: the whole product end to end on a temporary home, in well under a minute.

1. starts a real suite server process, loads and begins a sample suite (families, triggers, an event, a
   meter, a label, a limit and a repeat) whose tasks are real ``.ecf`` jobs sending child commands, and waits
   for it to complete;
2. runs a map-reduce DAG on a local cascade cluster (worker processes);
3. starts a transfer service (master + movers), pushes a file to a directory destination and checks the
   bytes that arrived;
4. prints a summary and writes both Gantt charts (suite run and DAG run) into one standalone HTML file.

Everything it starts is stopped on the way out — on success, on a failed step, on Ctrl-C or SIGTERM. A
failed step exits non-zero with a message naming the step.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HTML_NAME = "ecflow-lab-demo.html"
SUITE = "demo"


class DemoError(RuntimeError):
    """A demo step failed; the message says which and why."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"step '{step}' failed: {message}")
        self.step = step


class _Terminated(BaseException):
    """Raised from the SIGTERM handler so that ``finally`` blocks stop what was started."""


# --------------------------------------------------------------------------------------------- the suite

HEAD = """#!/bin/bash
set -e
export ECF_TIMEOUT=%ECF_TIMEOUT%   # child commands give up on a server gone for this long
%ECF_CLIENT% --init=$$
trap '%ECF_CLIENT% --abort="trapped error"' ERR
"""
TAIL = "%ECF_CLIENT% --complete\n"

SCRIPTS: dict[str, str] = {
    "obs/fetch": """%include <head.h>
echo "fetching observations for %ECF_NAME%"
%ECF_CLIENT% --meter=progress 50
%ECF_CLIENT% --event=data_ready
%ECF_CLIENT% --label=info "12345 observations"
%include <tail.h>
""",
    "obs/qc": """%include <head.h>
echo "quality control after the data_ready event"
%include <tail.h>
""",
    "forecast/model": """%include <head.h>
echo "model run for step %STEP%"
%ECF_CLIENT% --meter=step %STEP%
%include <tail.h>
""",
    "products/plot": """%include <head.h>
echo "plotting"
%include <tail.h>
""",
    "products/archive": """%include <head.h>
echo "archiving"
%include <tail.h>
""",
}


def suite_text(home: Path, client: str) -> str:
    """The sample definition: two families sharing a limit, a repeat, a trigger on an event."""
    return f"""# ecflow-lab demo suite
suite {SUITE}
  edit ECF_HOME '{home}'
  edit ECF_INCLUDE '{home}/include'
  edit ECF_CLIENT '{client}'
  edit ECF_TIMEOUT 30
  limit cpu 2
  family obs
    inlimit cpu
    task fetch
      event data_ready
      meter progress 0 100
      label info ""
    task qc
      trigger fetch:data_ready
  endfamily
  family forecast
    trigger obs == complete
    inlimit cpu
    repeat integer STEP 0 12 6
    task model
      meter step 0 12
  endfamily
  family products
    trigger forecast == complete
    task plot
    task archive
      trigger plot == complete
  endfamily
endsuite
"""


def write_scripts(home: Path) -> None:
    """The include files and one ``.ecf`` script per task under ``home``."""
    inc = home / "include"
    inc.mkdir(parents=True, exist_ok=True)
    (inc / "head.h").write_text(HEAD)
    (inc / "tail.h").write_text(TAIL)
    for rel, text in SCRIPTS.items():
        p = home / SUITE / f"{rel}.ecf"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


class _Server:
    """A real ``ecflow-lab server start`` child process on a free port; :meth:`stop` always ends it."""

    def __init__(self, home: Path) -> None:
        from ecflow_lab.client import Client
        from ecflow_lab.server.app import free_port

        self.home = home
        self.port = free_port()
        self.out = home / "server.out"
        with open(self.out, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ecflow_lab", "server", "start", "--home", str(home), "--port",
                 str(self.port), "--checkpoint-mode", "NEVER"],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        ci = Client("127.0.0.1", self.port)
        try:
            if not ci.wait_for_server_reply(30) or self.proc.poll() is not None:
                self.stop()
                raise DemoError("server", f"server did not start; see {self.out}:\n{self._tail()}")
        finally:
            ci.close()

    def _tail(self) -> str:
        try:
            return self.out.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def client(self) -> Any:
        from ecflow_lab.client import Client

        return Client("127.0.0.1", self.port)

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(Exception):
            ci = self.client()
            ci.set_connection_attempts(1)
            ci.terminate_server()
            ci.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def reap_jobs(home: Path, timeout: float = 3.0) -> int:
    """Stop job processes still running from ``home`` (after a failed or interrupted run); returns how many.

    Jobs are detached from the server, so stopping the server does not stop them, and a job's child
    command would keep retrying a dead server. Every job's command line names its job file,
    ``home/demo/<family>/<task>.job<N>``, which belongs to this demo alone; only such processes of this
    user are stopped, with their children (child commands).
    """
    import re

    import psutil

    me, uid = os.getpid(), os.getuid()
    job_file = re.compile(re.escape(str(home / SUITE)) + r"/\S+\.job\d+\b")
    victims: list[psutil.Process] = []
    for p in psutil.process_iter(["pid", "cmdline", "uids"]):
        try:
            if p.info["pid"] == me or (p.info["uids"] and p.info["uids"].real != uid):
                continue
            if any(job_file.search(arg) for arg in (p.info["cmdline"] or ())):
                victims += [p, *p.children(recursive=True)]
        except psutil.Error:
            continue
    for p in victims:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    _, alive = psutil.wait_procs(victims, timeout=timeout)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    return len(victims)


class _Recorder:
    """Subscription callback feeding the suite Gantt; also takes full snapshots, which a subscriber gets
    after a gap in the delta sequence (e.g. a slow joiner on a loaded machine), so no state change is lost."""

    def __init__(self, gantt: Any) -> None:
        import threading

        self.gantt = gantt
        self.last: dict[str, str] = {}
        self.loaded = threading.Event()

    def __call__(self, msg: dict[str, Any]) -> None:
        if msg.get("full"):
            t = time.time()
            for node in msg["defs"].get_all_tasks():
                path, state = node.get_abs_node_path(), node.state.name
                if path in (self.gantt.tasks or ()):
                    self.loaded.set()
                    if self.last.get(path) != state:
                        self.last[path] = state
                        self.gantt.record(path, state, t)
            return
        if any(p == f"/{SUITE}" for p in msg.get("added", ()) or ()):
            self.loaded.set()
        for change in msg.get("changes", ()) or ():
            if change.get("state"):
                self.last[change["path"]] = str(change["state"])
            if change["path"].startswith(f"/{SUITE}"):
                self.loaded.set()
        self.gantt.on_delta(msg)


def _task_timings(gantt: Any) -> dict[str, dict[str, float]]:
    """Per task, from the suite Gantt's spans: first submission, end, time active and number of runs."""
    d = gantt.source.data
    out: dict[str, dict[str, float]] = {}
    for lane, phase, s0, s1 in zip(d["lane"], d["phase"], d["start_s"], d["end_s"]):
        t = out.setdefault(str(lane), {"start": float(s0), "end": float(s1), "active": 0.0, "runs": 0})
        t["start"], t["end"] = min(t["start"], float(s0)), max(t["end"], float(s1))
        if phase == "active":
            t["active"] += float(s1) - float(s0)
            t["runs"] += 1
    return out


def run_suite(home: Path, stack: contextlib.ExitStack, timeout: float) -> dict[str, Any]:
    """Start the server, load and begin the sample suite, wait for it; returns states, timings and log."""
    from ecflow_lab.defs import Defs

    write_scripts(home)
    client_cmd = f"{sys.executable} -m ecflow_lab client"
    defs = Defs.from_string(suite_text(home, client_cmd), str(home / f"{SUITE}.def"))
    stack.callback(reap_jobs, home)   # runs after the server has stopped (callbacks unwind in reverse)
    server = _Server(home)
    stack.callback(server.stop)
    ci = server.client()
    stack.callback(ci.close)
    from ecflow_lab.jupyter.gantt import SuiteGantt

    # the server's record, live: every state change arrives as a delta and becomes a Gantt span
    gantt = SuiteGantt(title=f"suite /{SUITE}: submitted and active spans per task")
    gantt.tasks = {n.get_abs_node_path() for n in defs.get_all_tasks()}
    stack.callback(gantt.close)
    recorder = _Recorder(gantt)
    sub = ci.subscribe(recorder)
    stack.callback(sub.close)
    t0 = time.monotonic()
    ci.load(defs)
    recorder.loaded.wait(10)   # the subscriber sees the suite before it begins: no early change is missed
    ci.begin_suite(SUITE)
    state = ""
    while time.monotonic() - t0 < timeout:
        if server.proc.poll() is not None:   # checked first: a request to a dead server can block
            raise DemoError("suite", f"the server exited with {server.proc.returncode}:\n{server._tail()}")
        state = ci.query("state", f"/{SUITE}")
        if state in ("complete", "aborted"):
            break
        time.sleep(0.1)
    wall = time.monotonic() - t0
    time.sleep(0.3)   # the last deltas reach the subscriber
    sub.close()
    gantt.close()
    ci.sync_local()
    d = ci.get_defs()
    states = {n.get_abs_node_path(): n.state.name for n in d.get_all_nodes()}
    log = ci.get_log(2000)
    if state != "complete":
        bad = {p: s for p, s in states.items() if s != "complete"}
        raise DemoError("suite", f"/{SUITE} is {state or 'unknown'} after {wall:.1f} s; not complete: {bad}\n"
                                 f"server log (last lines):\n" + "\n".join(log.splitlines()[-20:]))
    fetch = d.find_abs_node(f"/{SUITE}/obs/fetch")
    attrs = {
        "event data_ready": str(bool(fetch.find_event("data_ready").value)).lower(),
        "meter progress": str(fetch.find_meter("progress").value),
        "label info": fetch.find_label("info").new_value,
        "repeat STEP": str(d.find_abs_node(f"/{SUITE}/forecast").repeat.value()),
        "limit cpu in use": str(d.find_abs_node(f"/{SUITE}").find_limit("cpu").value),
    }
    tasks = [n.get_abs_node_path() for n in d.get_all_tasks()]
    return {"states": states, "tasks": tasks, "timings": _task_timings(gantt), "wall": wall, "log": log,
            "attrs": attrs, "port": server.port, "gantt": gantt}


# ------------------------------------------------------------------------------------------------ the DAG

def member(i: int, n: int = 200_000) -> Any:
    """One ensemble member: a reproducible field (seeded), with a little work so the Gantt has bars."""
    import numpy as np

    rng = np.random.default_rng(i)
    return rng.standard_normal(n) + i


def anomaly(x: Any) -> Any:
    """Map step: the member's anomaly against its own mean, squared."""
    return (x - x.mean()) ** 2


def run_dag(members: int, workers: int, stack: contextlib.ExitStack) -> dict[str, Any]:
    """Map-reduce on a LocalCluster: ``members`` sources → anomaly → mean over members; checked locally."""
    import numpy as np

    from ecflow_lab.cascade import LocalCluster, from_source

    action = (from_source([functools.partial(member, i) for i in range(members)], dims=["member"])
              .map(anomaly).mean("member"))
    t0 = time.monotonic()
    cluster = stack.enter_context(LocalCluster(workers=workers))
    t_up = time.monotonic() - t0
    t1 = time.monotonic()
    res = cluster.run(action)
    t_run = time.monotonic() - t1
    value = np.asarray(res.value)
    expected = np.mean([anomaly(member(i)) for i in range(members)], axis=0)
    if value.shape != expected.shape or not np.allclose(value, expected):
        raise DemoError("dag", "the cluster's result differs from the same computation done locally")
    spans = [s for s in res.trace.spans() if s.get("phase", "compute") == "compute"]
    return {"value": float(value.mean()), "shape": value.shape, "tasks": len(spans), "startup": t_up,
            "wall": t_run, "trace": res.trace, "workers": len({s.get("worker") for s in spans})}


# ------------------------------------------------------------------------------------------- the transfer

def run_transfer(home: Path, stack: contextlib.ExitStack, size: int, timeout: float) -> dict[str, Any]:
    """A master and two movers; push one file to a ``file://`` destination and verify what arrived."""
    from ecflow_lab.transfer import TransferService

    src = home / "outgoing" / "forecast.grib"
    src.parent.mkdir(parents=True, exist_ok=True)
    data = os.urandom(size)
    src.write_bytes(data)
    dest = home / "archive"
    dest.mkdir(exist_ok=True)
    t0 = time.monotonic()
    svc = stack.enter_context(TransferService(home / "transfer", movers=2))
    client = svc.client(timeout=15)
    client.add_destination("archive", f"file://{dest}", replace=True)
    t1 = time.monotonic()
    # force: a second demo on the same --home sends the same target again (ECPDS would refuse a duplicate)
    dfid = client.push(src, "archive", "2026/forecast.grib", metadata={"stream": "oper"}, force=True)
    st = client.wait(dfid, timeout=timeout)
    wall = time.monotonic() - t1
    statuses = [t["status"] for t in st["transfers"]]
    if statuses != ["Done"]:
        raise DemoError("transfer", f"DataFileId={dfid} ended {statuses}: {st['transfers']}")
    out = dest / "2026" / "forecast.grib"
    if not out.exists():
        raise DemoError("transfer", f"{out} was not written")
    got = hashlib.sha256(out.read_bytes()).hexdigest()
    want = hashlib.sha256(data).hexdigest()
    checksum = st["data_file"].get("checksum", "")
    if got != want or checksum != f"sha256:{want}":
        raise DemoError("transfer", f"bytes differ: sent sha256:{want}, arrived sha256:{got}, "
                                    f"service recorded {checksum}")
    return {"id": dfid, "checksum": checksum, "bytes": size, "path": out, "wall": wall,
            "startup": t1 - t0, "history": [h["status"] for h in st["transfers"][0].get("history", [])]}


# ------------------------------------------------------------------------------------------- output

def write_html(path: Path, suite_gantt: Any, trace: Any) -> Path:
    """Both Gantts (suite run above, DAG run below) as one standalone HTML file (Bokeh JS inlined)."""
    from bokeh.embed import file_html
    from bokeh.layouts import column
    from bokeh.resources import INLINE

    from ecflow_lab.jupyter.gantt import Gantt

    dg = Gantt(trace, title="DAG: one lane per worker, one bar per task")
    dg.close()
    path.write_text(file_html(column(suite_gantt.figure, dg.figure), INLINE, title="ecflow-lab demo"), encoding="utf-8")
    return path


def _print_summary(suite: dict[str, Any], dag: dict[str, Any], xfer: dict[str, Any], html: Path,
                   total: float) -> None:
    print(f"\n== suite /{SUITE}: {suite['states'][f'/{SUITE}']} in {suite['wall']:.1f} s "
          f"(server 127.0.0.1:{suite['port']})")
    print(f"   {'task':<28} {'state':<10} {'runs':>4} {'start s':>8} {'active s':>9}")
    for path in suite["tasks"]:
        t = suite["timings"].get(path, {})
        print(f"   {path:<28} {suite['states'][path]:<10} {int(t.get('runs', 0)):>4} "
              f"{t.get('start', 0.0):>8.2f} {t.get('active', 0.0):>9.2f}")
    print("   " + ", ".join(f"{k} = {v}" for k, v in suite["attrs"].items()))
    print(f"\n== DAG: {dag['tasks']} tasks on {dag['workers']} worker(s) in {dag['wall']:.2f} s "
          f"(cluster start {dag['startup']:.1f} s)")
    print(f"   mean of squared anomalies over members: {dag['value']:.4f} (shape {dag['shape']}), "
          f"verified against a local computation")
    print(f"\n== transfer: DataFileId={xfer['id']} Done in {xfer['wall']:.2f} s "
          f"({xfer['bytes']} bytes; {' → '.join(xfer['history'])})")
    print(f"   checksum {xfer['checksum']} verified at {xfer['path']}")
    print(f"\nGantt (HTML): {html}")
    print(f"demo complete in {total:.1f} s")


# ------------------------------------------------------------------------------------------------ main

def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="ecflow-lab demo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=None,
                    help=f"directory for {HTML_NAME} (default: the current directory)")
    ap.add_argument("--home", type=Path, default=None,
                    help="use and keep this home directory (default: a temporary one, removed at the end)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary home (job outputs, logs)")
    ap.add_argument("--workers", type=int, default=2, help="DAG workers (default 2)")
    ap.add_argument("--members", type=int, default=8, help="DAG ensemble members (default 8)")
    ap.add_argument("--bytes", type=int, default=4 * 1024 * 1024, help="size of the transferred file")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds allowed for the suite")
    return ap


@contextlib.contextmanager
def _sigterm_as_exception() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C so every ``finally`` runs (main thread only)."""

    def handler(signum: int, frame: object) -> None:
        raise _Terminated()

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def main(argv: list[str] | None = None) -> int:
    """Run the demo; 0 on success, 1 when a step fails, 130 on Ctrl-C / SIGTERM."""
    ap = _parser()
    a = ap.parse_args(sys.argv[1:] if argv is None else argv)
    for name, value in (("--workers", a.workers), ("--members", a.members), ("--bytes", a.bytes),
                        ("--timeout", a.timeout)):
        if value <= 0:
            ap.error(f"{name} must be positive, got {value}")
    out_dir = (a.out or Path.cwd()).resolve()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"ecflow-lab demo: cannot create --out {out_dir}: {exc}", file=sys.stderr)
        return 2
    if a.home is not None:
        home = a.home.resolve()
        home.mkdir(parents=True, exist_ok=True)
        remove_home = False
    else:
        home = Path(tempfile.mkdtemp(prefix="ecflow-lab-demo-"))
        remove_home = not a.keep
    t0 = time.monotonic()
    step = "setup"
    try:
        with _sigterm_as_exception(), contextlib.ExitStack() as stack:
            print(f"ecflow-lab demo: home {home}", flush=True)
            step = "suite"
            print("[1/4] suite server: load and begin /demo (real .ecf jobs) ...", flush=True)
            suite = run_suite(home, stack, a.timeout)
            step = "dag"
            print(f"[2/4] DAG: map-reduce over {a.members} members on {a.workers} workers ...", flush=True)
            dag = run_dag(a.members, a.workers, stack)
            step = "transfer"
            print("[3/4] transfer: push a file to a directory destination ...", flush=True)
            xfer = run_transfer(home, stack, a.bytes, 60.0)
            step = "gantt"
            print("[4/4] Gantt charts ...", flush=True)
            html = write_html(out_dir / HTML_NAME, suite["gantt"], dag["trace"])
            step = "stop"
        _print_summary(suite, dag, xfer, html, time.monotonic() - t0)
        return 0
    except DemoError as exc:
        print(f"ecflow-lab demo: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, _Terminated):
        print(f"\necflow-lab demo: interrupted during step '{step}'; everything started was stopped",
              file=sys.stderr)
        return 130
    except Exception as exc:  # a subsystem error: say which step, keep the traceback short
        print(f"ecflow-lab demo: step '{step}' failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        if remove_home:
            shutil.rmtree(home, ignore_errors=True)
            print(f"temporary home {home} removed (--keep keeps it)")
        elif a.home is None:
            print(f"home kept: {home}")


if __name__ == "__main__":
    sys.exit(main())
