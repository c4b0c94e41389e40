"""A worker process: runs batches of tasks sent by the controller, in order, in-process.

Tasks whose inputs are produced earlier in the same worker run straight after their producer without a
controller round-trip (fused chains). Results are sent back in batches; a generator's outputs are sent
as soon as they are yielded so consumers elsewhere can start. Started by the host agent:
``python -m ecflow_lab.cascade.executor.worker --controller tcp://... --id host/w0`` with the cluster
secret in the environment.
"""

from __future__ import annotations

import argparse
import errno
import glob
import mmap
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from collections import deque
from typing import Any

import zmq

from ..graph import Handle, substitute
from . import wire

FLUSH_EVERY = 64  # results per message at most while busy
FLUSH_AFTER_S = 0.005
# After a large output, an idle worker readies a shared-memory segment of that size (the "spare": pages
# allocated and mapped, since faulting in fresh pages costs as much as the copy itself), so that its next
# large output only copies; a freed segment it wrote becomes the spare again. Up to SPARE_MAX bytes (0: no
# spare); a spare no large output has needed for SPARE_IDLE_S seconds is given back.
RECYCLE_WAIT_S = 2.0  # how long a freed segment may stay mapped by a reader before it is given up
SPARE_MAX = int(os.environ.get("ECFLOW_LAB_CASCADE_SHM_SPARE_MB", "4096")) << 20
SPARE_SLACK = 4096
SPARE_IDLE_S = float(os.environ.get("ECFLOW_LAB_CASCADE_SHM_SPARE_IDLE_S", "30"))


class _Missing(Exception):
    pass


class Worker:
    def __init__(self, controller: str, wid: str, host: str, key: bytes, resources: dict, shm_prefix: str):
        self.wid, self.host, self.key = wid, host, key
        self.resources = resources
        self.shm_prefix = shm_prefix
        self.ctx = zmq.Context()
        self.ssl = wire.curve_setting()   # ECF_SSL (inherited from the agent): Curve client sockets
        self.sock = wire.secure_client(self.ctx.socket(zmq.DEALER), self.ssl)
        self.sock.setsockopt(zmq.IDENTITY, wid.encode())
        self.sock.setsockopt(zmq.LINGER, 2000)
        self.sock.connect(controller)
        self.funcs: dict[str, Any] = {}
        self.store: dict[int, dict] = {}  # job -> {(task, out): value}
        self.data: dict[int, dict] = {}  # job -> {(task, out): descriptor}
        self.queue: deque = deque()
        self.cancelled: set[int] = set()
        self.outbox: dict[int, list] = {}
        self.first_unflushed = 0.0
        self.remote: dict[str, zmq.Socket] = {}
        self.parent = os.getppid()
        self.running = True
        # (path, size, mapping, origin) of a pre-allocated, already mapped, never used segment
        self.spare: tuple[str, int, mmap.mmap, str] | None = None
        # inode -> (path, mapping) of large segments this worker wrote; the agent hands each back when
        # freed (renamed -free-PID-...), and its pages become the next spare if no reader maps it any more
        self.published: dict[int, tuple[str, mmap.mmap]] = {}
        self.freed_at: dict[int, float] = {}  # inode -> when it came back still mapped by a reader
        self.unmap: list[mmap.mmap] = []  # writer mappings of small segments, closed when idle
        self.want_spare = 0  # size of the largest large output lately published: the spare must hold it
        self.spare_target = 0  # size of the segment the spare thread is allocating
        self.n_spare = 0
        self.spare_lock = threading.Lock()
        self.spare_hit: str | bool = False  # where the last publish's segment came from
        self.spare_thread: threading.Thread | None = None
        # large values handed out as ("v", ...) descriptors: readers on this host copy them out of our
        # memory, so their buffers stay referenced here until the dataset is purged or its job ends
        self.vm_ok = wire.vm_setup(self.parent)
        self.vm_live: dict[int, dict] = {}
        self.large_at = 0.0  # when this worker last published a large value
        self.xin: list | None = None  # input reads of the task being prepared: (ds, start, end, bytes)
        self.durations: dict[str, float] = {}  # function id -> smoothed run time (decides when to flush)

    # -- messaging --------------------------------------------------------------------------------
    def send(self, msg: Any) -> None:
        wire.send(self.sock, self.key, msg)

    def hello(self) -> None:
        self.send(("hello", self.wid, self.host, os.getpid(), self.resources))

    def flush(self) -> None:
        for job, items in self.outbox.items():
            if items:
                self.send(("done", job, items))
        self.outbox = {}

    def load_funcs(self, funcs: dict[str, bytes]) -> None:
        for fid, blob in funcs.items():
            if fid not in self.funcs:
                try:
                    self.funcs[fid] = _loads_func(blob)
                except Exception as exc:  # noqa: BLE001 - reported when a task uses it
                    self.funcs[fid] = _Unloadable(exc)

    def handle(self, msg: tuple) -> None:
        kind = msg[0]
        if kind == "run":
            _, job, funcs, data, tasks = msg
            if job in self.cancelled:
                return
            self.load_funcs(funcs)
            self.data.setdefault(job, {}).update(data)
            self.store.setdefault(job, {})
            self.queue.extend((job, *t) for t in tasks)
        elif kind == "funcs":  # sent ahead, when a graph starts
            self.load_funcs(msg[1])
        elif kind == "publish":
            _, job, dss, mode = msg
            store = self.store.get(job, {})
            out = []
            for ds in dss:
                if ds in store:
                    if mode == 2 and ds in self.vm_live.get(job, ()):
                        self.vm_ok = False  # a reader could not read our memory: hand out segments from now on
                    try:
                        out.append((ds, self.publish(job, ds, store[ds], mode)))
                    except Exception as exc:  # noqa: BLE001 - e.g. unpicklable: the run cannot go on
                        self.send(("publish_failed", job, ds, f"cannot serialize {type(store[ds]).__name__}: {exc}"))
            self.send(("published", job, out))
        elif kind == "purge":
            _, job, dss = msg
            store, data, live = self.store.get(job, {}), self.data.get(job, {}), self.vm_live.get(job, {})
            for ds in dss:
                store.pop(ds, None)
                data.pop(ds, None)
                live.pop(ds, None)
            self.tend_spare()  # nobody may read our memory any more: a spare can be made now, busy or not
        elif kind == "data":  # a new descriptor for an input whose first one could not be read
            self.data.setdefault(msg[1], {}).update(msg[2])
        elif kind == "end" or kind == "cancel":
            job = msg[1]
            if kind == "cancel":
                self.cancelled.add(job)
            self.store.pop(job, None)
            self.data.pop(job, None)
            self.vm_live.pop(job, None)
            self.outbox.pop(job, None)
            self.queue = deque(t for t in self.queue if t[0] != job)
            self.tend_spare()
        elif kind == "who":
            self.hello()
        elif kind == "stop":
            self.running = False

    def drain(self, timeout_ms: int) -> None:
        if self.sock.poll(timeout_ms):
            while True:
                try:
                    _, msg, _ = wire.recv(self.sock, self.key)
                except wire.AuthError:
                    pass
                else:
                    self.handle(msg)
                if not self.sock.poll(0):
                    break

    # -- data ---------------------------------------------------------------------------------------
    def publish(self, job: int, ds: tuple, value: Any, mode: int = 1) -> tuple:
        """Make ``value`` readable by other processes; ``mode`` 2 asks for a shared-memory segment (for
        the caller, other hosts or several readers), 1 also allows a ("v", ...) descriptor."""
        serialized = None
        if mode == 1 and self.vm_ok:
            serialized = main, bufs = wire.serialize(value)
            size = wire.nbytes(main, bufs)
            if size >= wire.VM_MIN and len(main) <= wire.INLINE_MAX and not self._spare_ready(size):
                # no allocated segment to copy into: readers copy from here instead (one copy, not two)
                self._large(size)
                self.vm_live.setdefault(job, {})[ds] = bufs
                return wire.vm_descriptor(main, bufs, self.host, self.wid, size)
        name = f"{self.shm_prefix}-{job}-{ds[0]}-{ds[1]}-{os.getpid()}"
        desc = wire.publish(value, name, self.host, self._take_spare, self._keep_mapping, serialized)
        if desc[0] == "s" and desc[5] >= wire.RECYCLE_MIN:
            self._large(desc[5])
        return desc

    def _large(self, size: int) -> None:
        """A large output was published: have a segment ready for the next (ensembles, time steps, a
        notebook cell run again), and keep it while they keep coming."""
        self.large_at = time.monotonic()
        if size <= SPARE_MAX:
            self.want_spare = max(self.want_spare, size)

    def _keep_mapping(self, path: str, mm: mmap.mmap) -> None:
        if len(mm) >= wire.RECYCLE_MIN and len(mm) <= SPARE_MAX:
            try:
                self.published[os.stat(path).st_ino] = (path, mm)
                return
            except OSError:
                pass
        self.unmap.append(mm)

    def reclaim(self) -> None:
        """Take back freed segments this worker wrote: the biggest one nobody maps becomes the spare (its
        pages are allocated and mapped already); the others are deleted and unmapped."""
        if not self.published or wire.SHM_DIR is None:
            return
        free_prefix = os.path.join(wire.SHM_DIR, f"{self.shm_prefix}-free-{os.getpid()}-")
        now = time.monotonic()
        for free in glob.glob(free_prefix + "*"):
            try:
                st = os.stat(free)
            except OSError:
                continue
            if st.st_ino not in self.published:
                wire.unlink_quiet(free)
            elif not self._adopt(free, st.st_ino, st.st_size):
                # still mapped by a reader (which lets go when its job ends, moments later): wait a little
                first = self.freed_at.setdefault(st.st_ino, now)
                if not self._wanted(st.st_size) or now - first > RECYCLE_WAIT_S:
                    wire.unlink_quiet(free)
                    self._forget(st.st_ino)
        for ino, (path, _mm) in list(self.published.items()):
            if not os.path.exists(path) and not os.path.exists(free_prefix + os.path.basename(path)):
                self._forget(ino)  # deleted by someone else: only our mapping keeps the pages

    def _spare_ready(self, size: int) -> bool:
        """Is there (or will there shortly be) a pre-allocated segment for a ``size``-byte value?"""
        self.reclaim()
        th = self.spare_thread
        if th is not None and th.is_alive() and size <= self.spare_target:
            return True
        sp = self.spare
        return sp is not None and size <= sp[1] <= 2 * size + (64 << 20)

    def _wanted(self, size: int) -> bool:
        """Would a freed segment of ``size`` bytes be a better spare than what this worker has?"""
        busy = self.spare_thread is not None and self.spare_thread.is_alive()
        return size <= SPARE_MAX and (self.spare is None or self.spare[1] < size) and not busy

    def _adopt(self, free: str, ino: int, size: int) -> bool:
        """Make the freed segment at ``free`` the spare if it is wanted and nobody maps it."""
        with self.spare_lock:
            if not self._wanted(size) or not wire.unreferenced(free):
                return False
            self.n_spare += 1
            path = os.path.join(wire.SHM_DIR or "", f"{self.shm_prefix}-spare-{os.getpid()}-{self.n_spare}")
            try:
                os.rename(free, path)
            except OSError:
                return False
            self._drop_spare()
            self.spare = (path, size, self.published.pop(ino)[1], "reused")
            self.freed_at.pop(ino, None)
            self.want_spare = max(self.want_spare, size)
            return True

    def _forget(self, ino: int) -> None:
        self.published.pop(ino)[1].close()
        self.freed_at.pop(ino, None)

    def _take_spare(self, size: int) -> tuple[str, mmap.mmap] | None:
        self.reclaim()
        th = self.spare_thread
        if th is not None and th.is_alive() and size <= self.spare_target:
            th.join()  # the segment being allocated fits: finishing it is never slower than starting afresh
        with self.spare_lock:
            sp = self.spare
            if sp is None or sp[1] < size or sp[1] > 2 * size + (64 << 20):
                return None
            self.spare = None
            self.spare_hit = sp[3]
            return sp[0], sp[2]

    def tend_spare(self) -> None:
        """Idle time: give back a spare unused for SPARE_IDLE_S; else ready one if a large output may come
        and none of ours is being read from this worker's memory (the two would compete for the same
        cores and page allocator, and that read is on the graph's critical path)."""
        if self.want_spare and time.monotonic() - self.large_at > SPARE_IDLE_S:
            busy = self.spare_thread is not None and self.spare_thread.is_alive()
            if not busy:
                with self.spare_lock:
                    self._drop_spare()
                self.want_spare = 0
            return
        if self.want_spare and not self.published and not any(self.vm_live.values()):
            self.make_spare()

    def make_spare(self) -> None:
        """Pre-allocate a segment for the next large publish unless the spare at hand is big enough, in a
        thread (fallocate and the populate release the GIL) so the worker keeps answering."""
        want = self.want_spare
        if not want or wire.SHM_DIR is None or (self.spare_thread and self.spare_thread.is_alive()):
            return
        with self.spare_lock:
            if self.spare is not None:
                if self.spare[1] >= want:  # a freed segment taken back meanwhile is big enough
                    return
                self._drop_spare()
        # the wanted size is the largest large output seen (a reused segment is exactly that big); a new
        # segment gets a little slack for a slightly larger next one
        size = self.spare_target = want + SPARE_SLACK
        self.n_spare += 1
        path = os.path.join(wire.SHM_DIR, f"{self.shm_prefix}-spare-{os.getpid()}-{self.n_spare}")
        self.spare_thread = threading.Thread(target=self._allocate, args=(path, size), daemon=True)
        self.spare_thread.start()

    def _allocate(self, path: str, size: int) -> None:
        """Allocate the segment's pages and map them populated: the copy of the next large output then
        touches no fresh page and runs at memory bandwidth. Done a chunk at a time, so that a worker told
        to stop (``running`` false) gives up within one chunk instead of finishing a gigabyte."""
        fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o600)
        mm = None
        try:
            for off in range(0, size, wire.POPULATE_CHUNK):
                if not self.running:
                    break
                os.posix_fallocate(fd, off, min(wire.POPULATE_CHUNK, size - off))
            else:
                mm = mmap.mmap(fd, size, flags=mmap.MAP_SHARED)
                wire.populate(mm, stop=lambda: not self.running)
        except OSError:  # no room in /dev/shm: stop trying (a half-populated mapping is no spare)
            self.want_spare = 0
            if mm is not None:
                mm.close()
                mm = None
        finally:
            os.close(fd)
        if mm is None or not self.running:
            if mm is not None:
                mm.close()
            wire.unlink_quiet(path)
            return
        with self.spare_lock:
            self.spare = (path, size, mm, "preallocated")

    def _drop_spare(self) -> None:
        """Release the spare segment (caller holds spare_lock or owns the worker at shutdown)."""
        if self.spare is not None:
            self.spare[2].close()
            wire.unlink_quiet(self.spare[0])
            self.spare = None

    def release_mappings(self) -> None:
        """Unmap the segments this worker wrote (readers have their own mappings; the files stay)."""
        while self.unmap:
            self.unmap.pop().close()

    def value(self, job: int, ds: tuple) -> Any:
        store = self.store[job]
        try:
            return store[ds]
        except KeyError:
            pass
        desc = self.data.get(job, {}).get(ds)
        if desc is None:
            raise _Missing(ds)
        if desc[0] == "r":
            val = self.fetch(desc)
        elif desc[0] == "v":
            t0 = time.time()
            try:
                val = wire.vm_read(desc)
            except wire.VmReadError as exc:
                # ask for another descriptor (a segment, or the new location of a value whose writer
                # died); the task waits for it
                del self.data[job][ds]
                self.send(("republish", job, ds, "gone" if exc.errno == errno.ESRCH else "refused"))
                raise _Missing(ds) from None
            if self.xin is not None:
                self.xin.append((ds, t0, time.time(), desc[-1]))
        else:
            val = wire.load(desc)
        store[ds] = val
        return val

    def fetch(self, desc: tuple) -> Any:
        """Fetch a shared-memory dataset from another host's agent."""
        _, addr, path, main_len, layout, _size = desc
        sock = self.remote.get(addr)
        if sock is None:
            sock = wire.secure_client(self.ctx.socket(zmq.DEALER), self.ssl)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(addr)
            self.remote[addr] = sock
        wire.send(sock, self.key, ("get", path))
        if not sock.poll(120_000):
            raise RuntimeError(f"timed out fetching {path} from {addr}")
        _, msg, bufs = wire.recv(sock, self.key)
        if msg[0] != "data":
            raise RuntimeError(f"cannot fetch {path} from {addr}: {msg[1]}")
        return wire.load(("b", bufs[0], main_len, layout))

    def runnable(self, t: tuple) -> bool:
        job, inputs = t[0], t[9]
        store, data = self.store[job], self.data.get(job, {})
        for ds in inputs:
            if ds not in store and ds not in data:
                return False
        return True

    # -- execution ----------------------------------------------------------------------------------
    def run_task(self, t: tuple) -> None:
        job, idx, fid, args, kwargs, nout, gen, pub, name, inputs = t
        xin = None
        if inputs:  # copy inputs held in other workers' memory first: that is transfer, not compute
            data, store = self.data.get(job), self.store[job]
            if data:
                for ds in inputs:
                    d = data.get(ds)
                    if d is not None and d[0] == "v" and ds not in store:
                        self.xin = xin = xin or []
                        try:
                            self.value(job, ds)
                        finally:
                            self.xin = None
        t0 = time.time()
        outs: list = []
        try:
            func = self.funcs[fid]
            if type(func) is _Unloadable:
                raise func.error
            if inputs:
                lookup = self._lookup(job)
                args = substitute(args, lookup)
                kwargs = substitute(kwargs, lookup) if kwargs else kwargs
            result = func(*args, **kwargs) if kwargs else func(*args)
            if gen:
                store = self.store[job]
                k = -1
                for k, val in enumerate(result):
                    if k >= nout:
                        raise ValueError(f"generator yielded more than its {nout} declared output(s)")
                    store[(idx, k)] = val
                    desc = self._pub(job, (idx, k), val, pub[k])
                    self.flush()
                    self.send(("yield", job, idx, k, desc, time.time()))
                if k + 1 != nout:
                    raise ValueError(f"generator yielded {k + 1} output(s), {nout} declared")
            elif nout == 1:
                outs = [result]
            else:
                outs = list(result)
                if len(outs) != nout:
                    raise ValueError(f"returned {len(outs)} values, {nout} outputs declared")
        except BaseException as exc:  # noqa: BLE001 - reported to the controller
            if isinstance(exc, _Missing):
                raise
            t1 = time.time()
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            try:
                blob = pickle.dumps(exc)
                pickle.loads(blob)
            except Exception:  # noqa: BLE001 - unpicklable exception: send text only
                blob = None
            self.flush()
            self.send(("fail", job, idx, blob, f"{type(exc).__name__}: {exc}", tb, t0, t1, self.wid))
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            return
        t1 = time.time()
        descs = None
        xfer = None
        if outs:
            store = self.store[job]
            descs = []
            for k, val in enumerate(outs):
                store[(idx, k)] = val
                if pub[k]:
                    p0 = time.time()
                    try:
                        d = self._pub(job, (idx, k), val, pub[k])
                    except Exception as exc:  # noqa: BLE001 - e.g. an unpicklable result
                        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
                        msg = f"cannot serialize output {k} ({type(val).__name__}): {type(exc).__name__}: {exc}"
                        self.flush()
                        self.send(("fail", job, idx, None, msg, tb, t0, time.time(), self.wid))
                        return
                    if d[0] == "s":
                        xfer = (p0, time.time(), d[5], self.spare_hit)
                        self.spare_hit = False
                    descs.append(d)
                else:
                    descs.append(None)
        box = self.outbox.setdefault(job, [])
        if not box and not any(self.outbox.values()):
            self.first_unflushed = t1
        box.append((idx, t0, t1, descs, xfer, xin))

    def _pub(self, job: int, ds: tuple, val: Any, pub: int) -> tuple | None:
        return self.publish(job, ds, val, pub) if pub else None

    def _lookup(self, job: int):
        value = self.value

        def lookup(h: Handle) -> Any:
            return value(job, (h.task, h.output))

        return lookup

    def loop(self) -> None:
        self.hello()
        if PRELOAD:  # import the usual task libraries while waiting for the first batch
            threading.Thread(target=_preload, daemon=True).start()
        last_parent_check = time.monotonic()
        while self.running:
            t = self._next_runnable()
            if t is None:
                self.flush()
                self.release_mappings()
                self.reclaim()
                self.tend_spare()
                self.drain(1000)
                now = time.monotonic()
                if now - last_parent_check > 1.0:
                    last_parent_check = now
                    if os.getppid() != self.parent:
                        break
                continue
            fid = t[2]
            if self.outbox and self.durations.get(fid, FLUSH_AFTER_S) >= FLUSH_AFTER_S and any(self.outbox.values()):
                self.flush()  # results held back for batching must not wait for a task that may take long
            r0 = time.perf_counter()
            try:
                self.run_task(t)
            except _Missing:
                self.queue.append(t)
            else:
                d = time.perf_counter() - r0
                self.durations[fid] = d if fid not in self.durations else 0.7 * self.durations[fid] + 0.3 * d
            pending = sum(len(v) for v in self.outbox.values())
            if pending >= FLUSH_EVERY or (pending and time.time() - self.first_unflushed > FLUSH_AFTER_S):
                self.flush()
            self.drain(0)
        self.flush()

    def _has_runnable(self) -> bool:
        return any(t[0] not in self.cancelled and self.runnable(t) for t in self.queue)

    def _next_runnable(self) -> tuple | None:
        q = self.queue
        for _ in range(len(q)):
            t = q.popleft()
            if t[0] in self.cancelled:
                continue
            if self.runnable(t):
                return t
            q.append(t)
        return None

    def close(self) -> None:
        self.running = False  # also stops a spare segment's population (between chunks)
        if self.spare_thread is not None:
            self.spare_thread.join()
        self._drop_spare()
        self.release_mappings()
        for _path, mm in self.published.values():
            mm.close()
        self.published.clear()
        for s in self.remote.values():
            s.close(0)
        self.sock.close()
        self.ctx.term()


PRELOAD = [m for m in os.environ.get("ECFLOW_LAB_CASCADE_PRELOAD", "numpy").split(",") if m]


def _preload() -> None:
    import importlib

    for mod in PRELOAD:
        try:
            importlib.import_module(mod)
        except Exception:  # noqa: BLE001 - only a speed-up
            pass


class _Unloadable:
    def __init__(self, exc: Exception) -> None:
        self.error = RuntimeError(
            f"cannot load the task function in the worker ({type(exc).__name__}: {exc}); "
            "is its module importable there (PYTHONPATH)?"
        )


def _loads_func(blob: bytes) -> Any:
    import cloudpickle  # noqa: F401 - registers reducers cloudpickle-made blobs need

    return pickle.loads(blob)


def _exit_on_term(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ecflow-lab cascade worker")
    p.add_argument("--controller", required=True)
    p.add_argument("--id", required=True)
    p.add_argument("--host", required=True)
    p.add_argument("--cpus", type=int, default=1)
    p.add_argument("--memory-mb", type=int, default=0)
    p.add_argument("--gpu", default="")
    p.add_argument("--shm-prefix", required=True)
    a = p.parse_args(argv)
    key = wire.secret_from_env()
    resources = {"cpus": a.cpus, "memory_mb": a.memory_mb, "gpu": a.gpu != "", "gpu_id": a.gpu}
    w = Worker(a.controller, a.id, a.host, key, resources, a.shm_prefix)
    # the agent stops its workers with SIGTERM: end like an interpreter asked to exit (sockets closed, the
    # exit handlers that task libraries registered run), not killed on the spot
    signal.signal(signal.SIGTERM, _exit_on_term)
    try:
        w.loop()
    except KeyboardInterrupt:
        pass
    finally:
        w.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
