"""The controller: one thread that owns the ROUTER socket every agent and worker talks to, tracks where
each dataset lives, places ready tasks on workers in batches and collects results and trace events.

Only messages that pass the MAC check (see :mod:`.wire`) are unpickled.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import pickle
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import cloudpickle
import zmq

from ..graph import Graph, GraphError, Handle, substitute
from ..schedule import HOST_BANDWIDTH, NET_BANDWIDTH, Compiled, WorkerSpec, check_feasible, compile_graph
from ..trace import Trace
from . import wire

WAITING, READY, ASSIGNED, DONE, PUBWAIT = range(5)
BUDGET_S = 0.05  # estimated seconds of work queued per worker before we hold tasks back
MIN_INFLIGHT = 2
AGENT_TIMEOUT_S = 10.0
FOLLOW_MAX_INPUTS = 16  # speculative (fused) dispatch only checks consumers with this few inputs
UNKNOWN_SIZE = 1 << 20
NO_WORKERS_TIMEOUT_S = 30.0
AGENT_GRACE_S = 3.0  # on close, how long to wait for the hello of an agent whose workers were heard from
MAX_KILLS = 3  # a task on a worker that dies this many times fails the run (like Dask's KilledWorker)
# A large output read by at most this many other workers may stay in its writer's memory, each reader
# copying it out (("v", ...) descriptors); more readers share one shared-memory segment instead.
VM_MAX_READERS = 2
PUB_ANY, PUB_SHM = 1, 2  # publish modes sent with each task's outputs (0: keep in the worker)
# When a graph starts, each worker is sent the functions it may run (when they pickle to at most this in
# all) so that it loads them, importing their modules, while it waits for its first ready task.
FUNCS_AHEAD_MAX = 1 << 20


def _holder(loc: tuple) -> str | None:
    """The worker whose memory holds a dataset at ``loc`` (("w", wid) or ("v", host, wid, ...)), else None."""
    kind = loc[0]
    return loc[1] if kind == "w" else loc[2] if kind == "v" else None


class RemoteTraceback(Exception):
    """The traceback of a task that failed in a worker process (attached as ``__cause__``)."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return f'\n"""\n{self.tb}"""'


class TaskFailed(RuntimeError):
    """A task raised an exception that could not be carried back as itself."""


@dataclass(eq=False)
class WorkerState:
    id: str
    ident: bytes
    spec: WorkerSpec
    pid: int
    joined: float
    alive: bool = True
    load: float = 0.0
    inflight: int = 0
    funcs_sent: set = field(default_factory=set)
    out: dict = field(default_factory=dict)  # job id -> [task idx]
    data_out: dict = field(default_factory=dict)  # job id -> {ds: desc}
    ctl: list = field(default_factory=list)  # other control messages to send after this round


@dataclass(eq=False)
class AgentState:
    host: str
    ident: bytes
    data_addr: str
    pid: int
    last_seen: float


class Job:
    def __init__(self, jid: int, graph: Graph, c: Compiled, on_event: Callable | None, retries: int):
        self.id = jid
        self.graph = graph
        self.c = c
        n = len(c.tasks)
        self.n = n
        self.on_event = on_event
        self.events: list[dict] = []
        self.future: Future = Future()
        self.status = [WAITING] * n
        self.worker: list[str | None] = [None] * n
        self.missing = [len(ins) for ins in c.inputs]
        self.remaining = {ds: len(cs) for ds, cs in c.consumers.items()}
        self.location: dict[tuple, tuple] = {}
        self.sizes: dict[tuple, int] = {}
        self.retries = [retries] * n
        self.outputs = set(c.outputs)
        self.sent: dict[str, set] = {}
        self.pub_requested: set = set()
        self.waiting_pub: dict[tuple, list] = {}
        # ds -> {worker id: needs a segment} for readers whose ("v", ...) descriptor failed: refused (they
        # need a shared-memory segment) or stale (its writer died; any new location will do)
        self.repub: dict[tuple, dict[str, bool]] = {}
        self.npub = [0] * n
        self.kills = [0] * n
        self.heap: list = []
        self.done = 0
        self.failed: BaseException | None = None
        self.t0 = time.time()
        # functions: one pickle per distinct callable
        self.fids: list[str] = []
        self.blobs: dict[str, bytes] = {}
        by_obj: dict[int, str] = {}
        self.est: dict[str, float] = {}
        self.wire_args: list[tuple] = []
        idx = c.index
        for t in c.tasks:
            fid = by_obj.get(id(t.func))
            if fid is None:
                blob = cloudpickle.dumps(t.func, protocol=5)
                fid = hashlib.blake2b(blob, digest_size=12).hexdigest()
                by_obj[id(t.func)] = fid
                self.blobs[fid] = blob
            self.fids.append(fid)
            if t.inputs:

                def lk(h: Handle) -> Handle:
                    return Handle(idx[h.task], h.output)  # type: ignore[arg-type]

                args = substitute(t.args, lk)
                kwargs = substitute(t.kwargs, lk) if t.kwargs else t.kwargs
            else:
                args, kwargs = t.args, t.kwargs
            self.wire_args.append((args, kwargs))
        for i in range(n):
            if self.missing[i] == 0:
                self.status[i] = READY
                heapq.heappush(self.heap, (-c.priority[i], i))

    def emit(self, ev: dict) -> None:
        self.events.append(ev)
        if self.on_event is not None:
            try:
                self.on_event(ev)
            except Exception:  # noqa: BLE001 - a broken callback must not stop the run
                self.on_event = None

    def est_of(self, i: int) -> float:
        t = self.c.tasks[i]
        if t.duration is not None:
            return t.duration
        return self.est.get(self.fids[i], 5e-4)


class RunResult:
    """Outputs of a run (mapping ``Handle -> value``, also via ``.outputs``) and its :class:`Trace`."""

    def __init__(self, outputs: dict[Handle, Any], trace: Trace, wall: float, layout: Any = None):
        self.outputs = outputs
        self.trace = trace
        self.wall = wall
        self._layout = layout

    def __getitem__(self, key: Handle | str) -> Any:
        if isinstance(key, str):
            key = Handle(key, 0)
        return self.outputs[key]

    def __iter__(self):
        return iter(self.outputs)

    def __len__(self) -> int:
        return len(self.outputs)

    def __contains__(self, key: object) -> bool:
        return key in self.outputs

    def keys(self):
        return self.outputs.keys()

    def values(self):
        return self.outputs.values()

    def items(self):
        return self.outputs.items()

    def get(self, key: Handle, default: Any = None) -> Any:
        return self.outputs.get(key, default)

    @property
    def value(self) -> Any:
        """The single output's value (ValueError if there is not exactly one)."""
        if len(self.outputs) != 1:
            raise ValueError(f"run has {len(self.outputs)} outputs; index it by Handle instead")
        return next(iter(self.outputs.values()))

    @property
    def array(self) -> Any:
        """For a fluent action: the values in the action's shape (a labelled array, see fluent.Result)."""
        if self._layout is None:
            raise ValueError("this result was not produced from a fluent action")
        return self._layout(self.outputs)

    def __repr__(self) -> str:
        return f"<RunResult {len(self.outputs)} outputs in {self.wall:.3f}s>"


class Controller(threading.Thread):
    """Owns the ROUTER socket; runs jobs submitted through :meth:`submit` (thread-safe)."""

    def __init__(self, key: bytes, bind: str = "tcp://127.0.0.1:0", ssl: bool | str | None = None) -> None:
        super().__init__(name="cascade-controller", daemon=True)
        self.key = key
        self.ssl = wire.curve_setting(ssl)
        self.ctx = zmq.Context()
        self._curve = wire.curve_server(self.ctx, self.ssl)
        self.sock = self.ctx.socket(zmq.ROUTER)
        if self._curve is not None:
            self._curve.secure(self.sock)
        self.sock.setsockopt(zmq.LINGER, 500)
        self.sock.setsockopt(zmq.ROUTER_MANDATORY, 0)
        if bind.endswith(":0"):
            port = self.sock.bind_to_random_port(bind[: bind.rfind(":")])
            self.address = f"{bind[: bind.rfind(':')]}:{port}"
        else:
            self.sock.bind(bind)
            self.address = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._wake_addr = f"inproc://cascade-wake-{id(self)}"
        self._wake_r = self.ctx.socket(zmq.PULL)
        self._wake_r.bind(self._wake_addr)
        self._wake_w = self.ctx.socket(zmq.PUSH)
        self._wake_w.connect(self._wake_addr)
        self._wake_lock = threading.Lock()
        self.commands: queue.Queue = queue.Queue()
        self.workers: dict[str, WorkerState] = {}
        self.agents: dict[str, AgentState] = {}
        self.jobs: dict[int, Job] = {}
        self.ids = itertools.count(1)
        self.changed = threading.Condition()
        self.running = True
        self.auth_failures = 0
        self.lost_workers: list[str] = []
        self._no_workers_since: float | None = None

    # -- thread-safe API ------------------------------------------------------------------------------
    def _call(self, cmd: tuple) -> None:
        self.commands.put(cmd)
        with self._wake_lock:
            self._wake_w.send(b"", zmq.NOBLOCK)

    def submit(self, graph: Graph, on_event: Callable | None = None, retries: int = 0) -> Job:
        c = compile_graph(graph)
        job = Job(next(self.ids), graph, c, on_event, retries)
        self._call(("submit", job))
        return job

    def cancel(self, job: Job, reason: str = "cancelled") -> None:
        self._call(("cancel", job, reason))

    def send_to_agent(self, host: str, msg: tuple) -> None:
        self._call(("agent", host, msg))

    def stop(self) -> None:
        self._call(("stop",))

    def alive_workers(self) -> list[WorkerState]:
        return [w for w in list(self.workers.values()) if w.alive]

    def wait_for_workers(self, n: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        with self.changed:
            while len(self.alive_workers()) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"only {len(self.alive_workers())} of {n} workers joined in {timeout:.0f}s")
                self.changed.wait(min(left, 0.2))

    # -- thread body ---------------------------------------------------------------------------------
    def run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        last_check = time.monotonic()
        try:
            while self.running:
                events = dict(poller.poll(100))
                if self._wake_r in events:
                    while self._wake_r.poll(0):
                        self._wake_r.recv()
                self._commands()
                try:
                    if self.sock in events:
                        n = 0
                        while n < 5000 and self.sock.poll(0):
                            n += 1
                            try:
                                prefix, msg, bufs = wire.recv(self.sock, self.key, n_prefix=1)
                            except wire.AuthError:
                                self.auth_failures += 1
                                continue
                            except Exception:  # noqa: BLE001 - undecodable message from an authenticated peer
                                continue
                            self._handle(prefix[0], msg)
                    for job in list(self.jobs.values()):
                        if job.heap:
                            self._schedule(job)
                    self._flush()
                    now = time.monotonic()
                    if now - last_check > 1.0:
                        last_check = now
                        self._check_agents(now)
                except Exception as exc:  # noqa: BLE001 - never leave callers waiting on a dead thread
                    import traceback

                    err = RuntimeError(f"internal error in the cascade controller: {exc!r}\n{traceback.format_exc()}")
                    for job in list(self.jobs.values()):
                        self._fail_job(job, err)
        finally:
            for job in list(self.jobs.values()):
                if not job.future.done():
                    job.future.set_exception(RuntimeError("cluster closed while the graph was running"))
            # every agent is told to stop. An agent that connected before we listened retries its connection
            # (its hello queued meanwhile) and may not have been heard from yet, though its workers were:
            # wait a little for it, so that no host is left running
            missing = {w.spec.host for w in self.workers.values()} - set(self.agents)
            deadline = time.monotonic() + AGENT_GRACE_S
            while missing and time.monotonic() < deadline:
                if not self.sock.poll(20):
                    continue
                try:
                    prefix, msg, _ = wire.recv(self.sock, self.key, n_prefix=1)
                except Exception:  # noqa: BLE001 - a bad or undecodable message: keep waiting
                    continue
                if msg[0] == "agent":
                    self._handle(prefix[0], msg)
                    missing.discard(msg[1])
            for a in self.agents.values():
                self._send(a.ident, ("stop",))
            self.sock.close()
            self._wake_r.close()
            with self._wake_lock:
                self._wake_w.close()
            if self._curve is not None:
                self._curve.close()
            self.ctx.term()

    def _send(self, ident: bytes, msg: tuple) -> None:
        wire.send(self.sock, self.key, msg, prefix=[ident])

    def _commands(self) -> None:
        while True:
            try:
                cmd = self.commands.get_nowait()
            except queue.Empty:
                return
            kind = cmd[0]
            if kind == "submit":
                self._start_job(cmd[1])
            elif kind == "cancel":
                job = cmd[1]
                if job.id in self.jobs:
                    self._fail_job(job, TimeoutError(cmd[2]))
            elif kind == "agent":
                a = self.agents.get(cmd[1])
                if a:
                    self._send(a.ident, cmd[2])
            elif kind == "stop":
                self.running = False

    # -- membership ------------------------------------------------------------------------------------
    def _handle(self, ident: bytes, msg: tuple) -> None:
        kind = msg[0]
        if kind == "done":
            w = self.workers.get(ident.decode())
            job = self.jobs.get(msg[1])
            if w is None:
                self._send(ident, ("who",))
            elif job is not None:
                self._done(job, w, msg[2])
        elif kind == "yield":
            job = self.jobs.get(msg[1])
            w = self.workers.get(ident.decode())
            if job is not None and w is not None:
                _, _, idx, k, desc, _t = msg
                if job.status[idx] == ASSIGNED and job.worker[idx] == w.id:
                    self._available(job, (idx, k), desc if desc is not None else ("w", w.id))
        elif kind == "fail":
            job = self.jobs.get(msg[1])
            w = self.workers.get(ident.decode())
            if job is not None and w is not None:
                self._failed(job, w, msg)
        elif kind == "published":
            job = self.jobs.get(msg[1])
            if job is not None:
                for ds, desc in msg[2]:
                    self._published(job, ds, desc)
        elif kind == "republish":
            job = self.jobs.get(msg[1])
            w = self.workers.get(ident.decode())
            if job is not None and w is not None:
                job.repub.setdefault(msg[2], {})[w.id] = msg[3] != "gone"
                self._serve_repub(job, msg[2])
        elif kind == "publish_failed":
            job = self.jobs.get(msg[1])
            if job is not None:
                tid = job.c.ids[msg[2][0]]
                self._fail_job(job, TaskFailed(f"output {msg[2][1]} of task {tid!r} is needed on another worker "
                                               f"but {msg[3]}"))  # fmt: skip
        elif kind == "hello":
            _, wid, host, pid, res = msg
            spec = WorkerSpec(wid, host, res.get("cpus", 1), res.get("memory_mb", 0), bool(res.get("gpu")))
            old = self.workers.get(wid)
            if old is not None and old.alive:
                return
            w = WorkerState(wid, ident, spec, pid, time.time())
            self.workers[wid] = w
            for job in self.jobs.values():
                job.emit(self._ev("worker_joined", None, "", wid, pid=pid, host=host, gpu=spec.gpu))
            with self.changed:
                self.changed.notify_all()
        elif kind == "agent":
            _, host, data_addr, pid, _workers = msg
            self.agents[host] = AgentState(host, ident, data_addr, pid, time.monotonic())
        elif kind == "hb":
            a = self.agents.get(msg[1])
            if a is None:
                self._send(ident, ("who",))
            else:
                a.last_seen = time.monotonic()
        elif kind == "worker_lost":
            self._worker_lost(msg[1], f"exit code {msg[2]}")

    def _check_agents(self, now: float) -> None:
        if self.jobs and not self.alive_workers():
            if self._no_workers_since is None:
                self._no_workers_since = now
            elif now - self._no_workers_since > NO_WORKERS_TIMEOUT_S:
                for job in list(self.jobs.values()):
                    self._fail_job(job, RuntimeError(f"no workers left in the cluster for {NO_WORKERS_TIMEOUT_S:.0f}s"))
        else:
            self._no_workers_since = None
        for host, a in list(self.agents.items()):
            if now - a.last_seen > AGENT_TIMEOUT_S:
                del self.agents[host]
                for w in list(self.workers.values()):
                    if w.alive and w.spec.host == host:
                        self._worker_lost(w.id, "host agent silent")

    def _worker_lost(self, wid: str, why: str) -> None:
        w = self.workers.get(wid)
        if w is None or not w.alive:
            return
        w.alive = False
        w.load, w.inflight = 0.0, 0
        w.out.clear()
        w.data_out.clear()
        self.lost_workers.append(wid)
        for job in list(self.jobs.values()):
            job.emit(self._ev("worker_lost", None, "", wid, reason=why))
            job.sent.pop(wid, None)
            self._recover(job, wid)
        with self.changed:
            self.changed.notify_all()

    # -- jobs -----------------------------------------------------------------------------------------
    def _ev(self, kind: str, task: str | None, name: str, worker: str | None, t: float | None = None, **kw) -> dict:
        ev = {"t": time.time() if t is None else t, "kind": kind, "task": task, "name": name, "worker": worker}
        if kw:
            ev.update(kw)
        return ev

    def _start_job(self, job: Job) -> None:
        specs = [w.spec for w in self.alive_workers()]
        try:
            if not specs:
                raise RuntimeError("no workers in the cluster")
            check_feasible(job.c, specs)
        except Exception as exc:  # noqa: BLE001 - reported to the caller
            job.future.set_exception(exc)
            return
        self.jobs[job.id] = job
        for w in self.alive_workers():
            job.emit(self._ev("worker_joined", None, "", w.id, t=w.joined, pid=w.pid, host=w.spec.host, gpu=w.spec.gpu))
        if job.n == 0:
            self._finish(job)
        else:
            self._funcs_ahead(job)

    def _funcs_ahead(self, job: Job) -> None:
        """Send each worker the functions of the tasks it could run (not a GPU task's to a CPU worker)."""
        if sum(map(len, job.blobs.values())) > FUNCS_AHEAD_MAX:
            return
        uses = set(zip(job.fids, (t.requirements for t in job.c.tasks)))
        for w in self.alive_workers():
            funcs = {fid: job.blobs[fid] for fid, req in uses if fid not in w.funcs_sent and w.spec.fits(req)}
            if funcs:
                w.funcs_sent.update(funcs)
                w.ctl.append(("funcs", funcs))

    def _schedule(self, job: Job) -> None:
        alive = [w for w in self.workers.values() if w.alive]
        if not alive:
            return
        c = job.c
        heap = job.heap
        deferred = []
        while heap:
            cands = [(w.spec, w.load) for w in alive if w.load < BUDGET_S or w.inflight < MIN_INFLIGHT]
            if not cands:
                break
            _, i = heapq.heappop(heap)
            if job.status[i] != READY:
                continue
            req = c.tasks[i].requirements
            cost = self._input_cost(job, i, alive) if c.inputs[i] else None
            best = None
            best_cost = float("inf")
            for spec, load in cands:
                if not spec.fits(req):
                    continue
                v = load + (cost.get(spec.id, 0.0) if cost else 0.0) + (1e-6 if spec.gpu and not req.needs_gpu else 0)
                if v < best_cost:
                    best, best_cost = spec, v
            if best is None:
                deferred.append(i)
                continue
            self._assign(job, i, self.workers[best.id])
        for i in deferred:
            heapq.heappush(heap, (-c.priority[i], i))

    def _input_cost(self, job: Job, i: int, alive: list[WorkerState]) -> dict[str, float]:
        cost: dict[str, float] = {}
        for ds in job.c.inputs[i]:
            loc = job.location.get(ds)
            if loc is None or loc[0] == "i":
                continue
            size = job.sizes.get(ds) or job.c.tasks[ds[0]].size or UNKNOWN_SIZE
            owner = _holder(loc)
            if owner is not None:
                src = self.workers.get(owner)
                for w in alive:
                    if w.id != owner:
                        same = src is not None and src.spec.host == w.spec.host
                        cost[w.id] = cost.get(w.id, 0.0) + size / (HOST_BANDWIDTH if same else NET_BANDWIDTH)
            elif loc[0] == "s":
                for w in alive:
                    if w.spec.host != loc[1]:
                        cost[w.id] = cost.get(w.id, 0.0) + size / NET_BANDWIDTH
        return cost

    def _assign(self, job: Job, i: int, w: WorkerState) -> None:
        """Send task i to w, then (depth-first) the consumers whose missing inputs all come from w."""
        stack = [i]
        c = job.c
        now = time.time()
        while stack:
            i = stack.pop()
            job.status[i] = ASSIGNED
            job.worker[i] = w.id
            w.load += job.est_of(i)
            w.inflight += 1
            t = c.tasks[i]
            job.emit(self._ev("planned", t.id, t.name, w.id, t=now))
            sent = job.sent.setdefault(w.id, set())
            data = w.data_out.setdefault(job.id, {})
            for ds in c.inputs[i]:
                loc = job.location.get(ds)
                if loc is None:
                    continue  # produced earlier in w's queue (fused)
                owner = _holder(loc)
                if loc[0] == "w" or (owner is not None and (owner == w.id or loc[1] != w.spec.host)):
                    if owner == w.id:
                        continue
                    # in another worker's memory: have it published (a segment when another host reads it)
                    job.waiting_pub.setdefault(ds, []).append((i, w.id))
                    job.npub[i] += 1
                    if ds not in job.pub_requested:
                        job.pub_requested.add(ds)
                        src = self.workers[owner]
                        mode = PUB_SHM if loc[0] == "v" or src.spec.host != w.spec.host else PUB_ANY
                        src.ctl.append(("publish", job.id, [ds], mode))
                elif ds not in sent:
                    sent.add(ds)
                    data[ds] = self._desc_for(loc, w)
            if job.npub[i]:
                job.status[i] = PUBWAIT
            else:
                w.out.setdefault(job.id, []).append(i)
            # fused followers
            for k in range(t.num_outputs):
                for j in c.consumers.get((i, k), ()):
                    if job.status[j] == WAITING and len(c.inputs[j]) <= FOLLOW_MAX_INPUTS and self._follows(job, j, w):
                        job.status[j] = ASSIGNED  # reserve; finalised when popped
                        job.worker[j] = w.id
                        stack.append(j)

    def _follows(self, job: Job, j: int, w: WorkerState) -> bool:
        if not w.spec.fits(job.c.tasks[j].requirements):
            return False
        for ds in job.c.inputs[j]:
            loc = job.location.get(ds)
            if loc is None:
                p = ds[0]
                if not (job.status[p] == ASSIGNED and job.worker[p] == w.id):
                    return False
            elif loc[0] == "w" and loc[1] != w.id:
                return False
        return True

    def _desc_for(self, loc: tuple, w: WorkerState) -> tuple:
        if loc[0] == "s" and loc[1] != w.spec.host:
            a = self.agents.get(loc[1])
            if a is None:
                raise RuntimeError(f"data on host {loc[1]} but its agent is gone")
            return ("r", a.data_addr, *loc[2:])
        return loc

    def _flush(self) -> None:
        for w in self.workers.values():
            if not w.alive:
                w.out.clear()
                w.ctl.clear()
                continue
            for msg in w.ctl:
                self._send(w.ident, msg)
            w.ctl.clear()
            if not w.out:
                continue
            for jid, idxs in w.out.items():
                job = self.jobs.get(jid)
                if job is None or not idxs:
                    continue
                funcs = {}
                tasks = []
                c = job.c
                for i in idxs:
                    fid = job.fids[i]
                    if fid not in w.funcs_sent:
                        w.funcs_sent.add(fid)
                        funcs[fid] = job.blobs[fid]
                    t = c.tasks[i]
                    pub = []
                    for k in range(t.num_outputs):
                        ds = (i, k)
                        if ds in job.outputs:
                            p = PUB_SHM  # the caller maps it
                        else:
                            cons = c.consumers.get(ds, ())
                            here = sum(1 for j in cons if job.worker[j] == w.id and job.status[j] in (ASSIGNED, PUBWAIT))
                            if here == len(cons):
                                p = 0  # every consumer runs in this worker
                            elif here or len(cons) > VM_MAX_READERS:
                                # several readers share one segment; and a value that tasks of its own worker
                                # also use is copied out now, not read later while they may be using it
                                p = PUB_SHM
                            else:
                                p = PUB_ANY
                        pub.append(p)
                    args, kwargs = job.wire_args[i]
                    tasks.append((i, fid, args, kwargs, t.num_outputs, t.generator, pub, t.name, c.inputs[i]))
                data = w.data_out.pop(jid, {})
                self._send(w.ident, ("run", jid, funcs, data, tasks))
            w.out.clear()

    # -- results --------------------------------------------------------------------------------------
    def _available(self, job: Job, ds: tuple, loc: tuple) -> None:
        new = ds not in job.location
        job.location[ds] = loc
        if loc[0] != "w":
            job.sizes[ds] = loc[-1]
        if job.repub and ds in job.repub:
            self._serve_repub(job, ds)
        if not new:
            return
        status, missing, heap, prio = job.status, job.missing, job.heap, job.c.priority
        for j in job.c.consumers.get(ds, ()):
            if status[j] == WAITING:
                missing[j] -= 1
                if missing[j] <= 0:
                    status[j] = READY
                    heapq.heappush(heap, (-prio[j], j))

    def _done(self, job: Job, w: WorkerState, items: list) -> None:
        c = job.c
        emit = job.emit
        for idx, t0, t1, descs, xfer, xin in items:
            if job.status[idx] != ASSIGNED or job.worker[idx] != w.id:
                continue
            job.status[idx] = DONE
            est = job.est_of(idx)
            w.inflight -= 1
            w.load = max(0.0, w.load - est) if w.inflight > 0 else 0.0
            fid = job.fids[idx]
            job.est[fid] = 0.7 * job.est.get(fid, t1 - t0) + 0.3 * (t1 - t0)
            t = c.tasks[idx]
            emit({"t": t0, "kind": "started", "task": t.id, "name": t.name, "worker": w.id})
            emit({"t": t1, "kind": "finished", "task": t.id, "name": t.name, "worker": w.id, "func": t.name})
            if xfer is not None:
                via = f"shm-{xfer[3]}" if xfer[3] else "shm"
                emit({"t": xfer[0], "kind": "transfer_start", "task": t.id, "name": t.name, "worker": w.id,
                      "bytes": xfer[2], "via": via})  # fmt: skip
                emit({"t": xfer[1], "kind": "transfer_end", "task": t.id, "name": t.name, "worker": w.id,
                      "bytes": xfer[2], "via": via})  # fmt: skip
            if xin is not None:  # inputs copied out of other workers' memory before the task ran
                for ds, r0, r1, nb in xin:
                    p = c.tasks[ds[0]]
                    ev = {"task": p.id, "name": p.name, "worker": w.id, "bytes": nb, "via": "vm-read", "dataset": ds}
                    emit({"t": r0, "kind": "transfer_start", **ev})
                    emit({"t": r1, "kind": "transfer_end", **ev})
            if descs is not None:
                for k, d in enumerate(descs):
                    self._available(job, (idx, k), d if d is not None else ("w", w.id))
            job.done += 1
            for ds in c.inputs[idx]:
                r = job.remaining[ds] - 1
                job.remaining[ds] = r
                if r == 0 and ds not in job.outputs:
                    self._free(job, ds)
        if job.done == job.n and job.id in self.jobs:
            self._finish(job)

    def _free(self, job: Job, ds: tuple) -> None:
        loc = job.location.pop(ds, None)
        if loc is None:
            return
        if loc[0] == "s":
            a = self.agents.get(loc[1])
            if a is not None:
                self._send(a.ident, ("unlink", [loc[2]]))
        if loc[0] != "i":
            owner = _holder(loc)
            for wid, sent in job.sent.items():
                if ds in sent or owner == wid:
                    sent.discard(ds)
                    w = self.workers.get(wid)
                    if w is not None and w.alive:
                        w.ctl.append(("purge", job.id, [ds]))
            if owner is not None:
                w = self.workers.get(owner)
                if w is not None and w.alive and owner not in job.sent:
                    w.ctl.append(("purge", job.id, [ds]))

    def _serve_repub(self, job: Job, ds: tuple) -> None:
        """Give the workers whose ("v", ...) descriptor of ``ds`` failed one they can use: the same data in
        a shared-memory segment (asked of its writer once) when the read was refused, any live location when
        the writer had died (recomputing it first if needed)."""
        waiting = job.repub.get(ds)
        if not waiting:
            return
        loc = job.location.get(ds)
        if loc is None:  # lost with its worker: compute it again; _available calls back here
            p = ds[0]
            if job.status[p] == DONE:
                self._reset_done(job, p, set())
                self._recompute(job, p)
            return
        owner = _holder(loc)
        waiting.pop(owner, None)
        ask = 0
        for wid, need_shm in list(waiting.items()):
            w = self.workers.get(wid)
            if w is None or not w.alive:
                del waiting[wid]
            elif loc[0] == "w" or (loc[0] == "v" and (need_shm or loc[1] != w.spec.host)):
                far = need_shm or loc[0] == "v" or self.workers[owner].spec.host != w.spec.host
                ask = max(ask, PUB_SHM if far else PUB_ANY)
            else:
                del waiting[wid]
                job.sent.setdefault(wid, set()).add(ds)
                w.ctl.append(("data", job.id, {ds: self._desc_for(loc, w)}))
        if ask and ds not in job.pub_requested:
            job.pub_requested.add(ds)
            self.workers[owner].ctl.append(("publish", job.id, [ds], ask))
        if not waiting:
            del job.repub[ds]

    def _published(self, job: Job, ds: tuple, desc: tuple) -> None:
        job.pub_requested.discard(ds)
        job.location[ds] = desc
        job.sizes[ds] = desc[-1]
        if ds in job.repub:
            self._serve_repub(job, ds)
        for i, wid in job.waiting_pub.pop(ds, []):
            w = self.workers.get(wid)
            if w is None or not w.alive or job.status[i] != PUBWAIT or job.worker[i] != wid:
                continue
            sent = job.sent.setdefault(wid, set())
            if ds not in sent:
                sent.add(ds)
                w.data_out.setdefault(job.id, {})[ds] = self._desc_for(desc, w)
            job.npub[i] -= 1
            if job.npub[i] == 0:
                job.status[i] = ASSIGNED
                w.out.setdefault(job.id, []).append(i)

    def _failed(self, job: Job, w: WorkerState, msg: tuple) -> None:
        _, _, idx, blob, text, tb, t0, t1, _wid = msg
        if job.status[idx] != ASSIGNED or job.worker[idx] != w.id:
            return
        t = job.c.tasks[idx]
        job.emit({"t": t0, "kind": "started", "task": t.id, "name": t.name, "worker": w.id})
        job.emit({"t": t1, "kind": "failed", "task": t.id, "name": t.name, "worker": w.id, "error": text,
                  "attempts_left": job.retries[idx]})  # fmt: skip
        if job.retries[idx] > 0:
            job.retries[idx] -= 1
            w.out.setdefault(job.id, []).append(idx)  # again, on the same worker (its followers wait there)
            return
        exc: BaseException | None = None
        if blob is not None:
            try:
                exc = pickle.loads(blob)  # from an authenticated worker of this cluster
            except Exception:  # noqa: BLE001
                exc = None
        if not isinstance(exc, BaseException):
            exc = TaskFailed(text)
        exc.__cause__ = RemoteTraceback(tb)
        if hasattr(exc, "add_note"):
            exc.add_note(f"in cascade task {t.id!r} ({t.name}) on worker {w.id}")
        try:
            exc.task_id, exc.worker, exc.remote_traceback = t.id, w.id, tb  # type: ignore[union-attr]
        except AttributeError:
            pass
        self._fail_job(job, exc)

    def _fail_job(self, job: Job, exc: BaseException) -> None:
        self.jobs.pop(job.id, None)
        for w in self.workers.values():
            w.out.pop(job.id, None)
            w.data_out.pop(job.id, None)
            if w.alive:
                i_n = sum(1 for i in range(job.n) if job.worker[i] == w.id and job.status[i] in (ASSIGNED, PUBWAIT))
                w.inflight = max(0, w.inflight - i_n)
                w.load = 0.0 if w.inflight == 0 else w.load
                self._send(w.ident, ("cancel", job.id))
        for a in self.agents.values():
            self._send(a.ident, ("unlink_job", job.id))
        if not job.future.done():
            job.future.set_exception(exc)

    def _finish(self, job: Job) -> None:
        self.jobs.pop(job.id, None)
        outputs: dict[Handle, Any] = {}
        try:
            for ds in job.c.outputs:
                loc = job.location[ds]
                h = Handle(job.c.ids[ds[0]], ds[1])
                outputs[h] = self._load(loc)
        except Exception as exc:  # noqa: BLE001
            job.future.set_exception(exc)
            return
        finally:
            for w in self.workers.values():
                if w.alive:
                    self._send(w.ident, ("end", job.id))
            for a in self.agents.values():
                self._send(a.ident, ("unlink_job", job.id))
        job.future.set_result(outputs)

    def _load(self, loc: tuple) -> Any:
        if loc[0] == "s":
            import os

            if not os.path.exists(loc[2]):
                a = self.agents.get(loc[1])
                if a is None:
                    raise RuntimeError(f"output on host {loc[1]} whose agent is gone")
                return _fetch(self.ctx, self.key, ("r", a.data_addr, *loc[2:]), self.ssl)
        return wire.load(loc)

    # -- failure recovery -----------------------------------------------------------------------------
    def _recover(self, job: Job, wid: str) -> None:
        lost = [ds for ds, loc in job.location.items() if _holder(loc) == wid]
        for ds in lost:
            del job.location[ds]
            job.pub_requested.discard(ds)
        requeue = [i for i in range(job.n) if job.worker[i] == wid and job.status[i] in (ASSIGNED, PUBWAIT)]
        for ds in list(job.waiting_pub):
            if ds in lost:
                for i, _w in job.waiting_pub.pop(ds):
                    if job.status[i] == PUBWAIT:
                        requeue.append(i)
        for i in requeue:
            if job.worker[i] == wid:
                job.kills[i] += 1
                if job.kills[i] > MAX_KILLS:
                    t = job.c.tasks[i]
                    self._fail_job(job, TaskFailed(
                        f"task {t.id!r} ({t.name}) was running on a worker that died {job.kills[i]} times; giving up"))
                    return
            job.status[i] = WAITING
            job.worker[i] = None
            job.npub[i] = 0
        touched = set(requeue)
        for ds in lost:
            for j in job.c.consumers.get(ds, ()):
                if job.status[j] in (WAITING, READY):
                    touched.add(j)
            if ds in job.outputs:
                self._reset_done(job, ds[0], touched)
        for i in sorted(touched):
            self._recompute(job, i)

    def _reset_done(self, job: Job, p: int, touched: set) -> None:
        if job.status[p] != DONE:
            return
        job.status[p] = WAITING
        job.worker[p] = None
        job.done -= 1
        for ds in job.c.inputs[p]:
            job.remaining[ds] = job.remaining.get(ds, 0) + 1
        touched.add(p)

    def _recompute(self, job: Job, i: int) -> None:
        if job.status[i] not in (WAITING, READY):
            return
        job.status[i] = WAITING
        miss = 0
        for ds in job.c.inputs[i]:
            if ds not in job.location:
                miss += 1
                p = ds[0]
                if job.status[p] == DONE:
                    t: set = set()
                    self._reset_done(job, p, t)
                    self._recompute(job, p)
        job.missing[i] = miss
        if miss == 0:
            job.status[i] = READY
            heapq.heappush(job.heap, (-job.c.priority[i], i))


def _fetch(ctx: zmq.Context, key: bytes, desc: tuple, ssl: str | None = None) -> Any:
    _, addr, path, main_len, layout, _size = desc
    s = wire.secure_client(ctx.socket(zmq.DEALER), ssl)
    s.setsockopt(zmq.LINGER, 0)
    try:
        s.connect(addr)
        wire.send(s, key, ("get", path))
        if not s.poll(120_000):
            raise RuntimeError(f"timed out fetching {path} from {addr}")
        _, msg, bufs = wire.recv(s, key)
        if msg[0] != "data":
            raise RuntimeError(f"cannot fetch {path}: {msg[1]}")
        return wire.load(("b", bufs[0], main_len, layout))
    finally:
        s.close()


__all__ = ["Controller", "RemoteTraceback", "RunResult", "TaskFailed", "GraphError"]
