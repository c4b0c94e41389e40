"""User-facing clusters: :class:`LocalCluster` (controller + one host agent + N workers on this machine)
and :class:`Cluster` (a controller that host agents on other machines join with
``ecflow-lab cascade host --controller tcp://...``).

    with LocalCluster(workers=4) as cluster:
        result = cluster.run(graph)            # or a fluent action
        result.outputs, result.trace.spans()
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from ..graph import Graph
from ..trace import Trace
from . import wire
from .controller import Controller, RunResult


def _as_graph(obj: Any) -> Graph:
    if isinstance(obj, Graph):
        return obj
    make = getattr(obj, "graph", None)
    if callable(make):
        g = make()
        if isinstance(g, Graph):
            return g
    raise TypeError(f"expected a Graph or a fluent Action, got {type(obj).__name__}")


class Cluster:
    """A controller listening on ``bind``; workers join through host agents that know ``secret``.

    ``secret`` (bytes) is generated when not given; hand it to the hosts via a file
    (``--secret-file``) or the ``ECFLOW_LAB_CASCADE_SECRET`` environment variable (hex)."""

    def __init__(self, bind: str = "tcp://127.0.0.1:0", secret: bytes | None = None,
                 ssl: bool | str | None = None) -> None:
        self.secret = secret or wire.new_secret()
        #: CurveZMQ setting (ECF_SSL semantics; None follows the environment); hosts need ECF_SSL too
        self.ssl = wire.curve_setting(ssl)
        self.controller = Controller(self.secret, bind, self.ssl)
        self.controller.start()
        self._closed = False

    @property
    def address(self) -> str:
        return self.controller.address

    @property
    def workers(self) -> list[dict[str, Any]]:
        """The live workers: id, host, pid, gpu, cpus, memory_mb."""
        return [
            {"id": w.id, "host": w.spec.host, "pid": w.pid, "gpu": w.spec.gpu, "cpus": w.spec.cpus,
             "memory_mb": w.spec.memory_mb}
            for w in self.controller.alive_workers()
        ]  # fmt: skip

    def wait_for_workers(self, n: int, timeout: float = 60.0) -> None:
        self.controller.wait_for_workers(n, timeout)

    def submit(
        self, graph: Any, on_event: Callable[[dict], Any] | None = None, retries: int = 0
    ) -> Future:
        """Start ``graph`` (a Graph or fluent action); the future resolves to a :class:`RunResult`."""
        if self._closed:
            raise RuntimeError("cluster is closed")
        g = _as_graph(graph)
        t0 = time.perf_counter()
        job = self.controller.submit(g, on_event=on_event, retries=retries)
        out: Future = Future()
        layout = getattr(g, "layout", None)

        def done(f: Future) -> None:
            exc = f.exception()
            if exc is not None:
                out.set_exception(exc)
            else:
                out.set_result(RunResult(f.result(), Trace(job.events), time.perf_counter() - t0, layout))

        job.future.add_done_callback(done)
        out.job = job  # type: ignore[attr-defined]
        return out

    def run(
        self,
        graph: Any,
        on_event: Callable[[dict], Any] | None = None,
        retries: int = 0,
        timeout: float | None = None,
    ) -> RunResult:
        """Run ``graph`` to completion. A failing task raises its own exception (with the remote
        traceback as ``__cause__``) unless ``retries`` allows it to run again."""
        fut = self.submit(graph, on_event=on_event, retries=retries)
        try:
            return fut.result(timeout)
        except FutureTimeout:
            self.controller.cancel(fut.job, f"graph did not finish in {timeout}s")  # type: ignore[attr-defined]
            raise TimeoutError(f"graph did not finish in {timeout}s") from None

    def kill_worker(self, worker_id: str) -> None:
        """SIGKILL one worker through its host agent (for failure drills)."""
        host = worker_id.split("/")[0]
        self.controller.send_to_agent(host, ("kill_worker", worker_id))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.controller.stop()
        self.controller.join(10)

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # last resort; use close()/with
        try:
            if not self._closed:
                self.close()
        except Exception:  # noqa: BLE001
            pass


class LocalCluster(Cluster):
    """Controller in this process, ``hosts`` host agents (normally 1) each with ``workers`` worker
    processes on this machine. ``gpus``: number of GPU workers, a list of GPU ids, or ``"auto"``; GPU
    worker *i* sees only its GPU through ``CUDA_VISIBLE_DEVICES``. ``memory_mb`` per worker defaults to
    this machine's memory shared by the workers; tasks asking for more are refused up front."""

    def __init__(
        self,
        workers: int = 2,
        gpus: int | list[int | str] | str | None = None,
        hosts: int = 1,
        cpus_per_worker: int = 1,
        memory_mb: int | None = None,
        restart: bool = True,
        start_timeout: float = 60.0,
        ssl: bool | str | None = None,
    ) -> None:
        super().__init__("tcp://127.0.0.1:0", ssl=ssl)
        from .agent import detect_gpus

        if gpus is None or gpus == 0:
            gpu_ids: list[str] = []
        elif gpus == "auto":
            gpu_ids = detect_gpus()[:workers]
        elif isinstance(gpus, int):
            gpu_ids = [str(i) for i in range(gpus)]
        else:
            gpu_ids = [str(g) for g in gpus]
        self.gpu_ids = gpu_ids
        if memory_mb is None:
            import psutil

            memory_mb = int(psutil.virtual_memory().total // max(1, workers * hosts) // 2**20)
        self.agents: list[subprocess.Popen] = []
        env = dict(os.environ)
        env[wire.SECRET_ENV] = self.secret.hex()
        env["ECF_SSL"] = self.ssl or ""   # the agents and their workers encrypt exactly when we do
        # workers import what the caller can import (notebook folder, test folders, ...)
        env["PYTHONPATH"] = os.pathsep.join(p for p in [os.getcwd(), *sys.path] if p)
        name = socket.gethostname()
        try:
            for h in range(hosts):
                host_id = name if hosts == 1 else f"{name}-{h}"
                cmd = [
                    sys.executable, "-m", "ecflow_lab.cascade.executor.agent",
                    "--controller", self.address, "--workers", str(workers),
                    "--gpus", ",".join(gpu_ids), "--host-id", host_id,
                    "--cpus-per-worker", str(cpus_per_worker), "--memory-mb", str(memory_mb),
                    "--exit-with-parent",
                ]  # fmt: skip
                if not restart:
                    cmd.append("--no-restart")
                self.agents.append(subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL))
            self.wait_for_workers(workers * hosts, start_timeout)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._closed:
            return
        super().close()
        deadline = time.monotonic() + 10
        for p in self.agents:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.terminate()
                try:
                    p.wait(3)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
