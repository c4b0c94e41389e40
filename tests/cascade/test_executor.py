"""The ZeroMQ executor on real processes: results, streaming, spreading, failures, dying workers, security."""

from __future__ import annotations

import os
import pickle
import signal
import threading
import time

import numpy as np
import pytest
import zmq

from ecflow_lab.cascade.executor import LocalCluster, RemoteTraceback, wire
from ecflow_lab.cascade.graph import Graph, GraphError, Requirements, mark


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(workers=2) as c:
        yield c


def one() -> int:
    return 1


def inc(x: int) -> int:
    return x + 1


def total(*xs: int) -> int:
    return sum(xs)


def test_fan_in_and_chains(cluster):
    g = Graph()
    srcs = [g.add_task(lambda i=i: i) for i in range(200)]
    s = g.add_task(total, *srcs, name="sum")
    ends = []
    for _c in range(4):
        h = g.add_task(one)
        for _ in range(30):
            h = g.add_task(inc, h)
        ends.append(h)
    g.set_outputs([s, *ends])
    res = cluster.run(g)
    assert res[s] == sum(range(200))
    assert [res[e] for e in ends] == [31] * 4
    spans = res.trace.spans()
    assert len([x for x in spans if x["phase"] == "compute"]) == len(g)
    assert all(x["end"] >= x["start"] for x in spans)


def test_nested_inputs_and_kwargs(cluster):
    g = Graph()
    a = g.add_task(one)
    b = g.add_task(inc, a)
    c = g.add_task(lambda xs, d, scale=1: (sum(xs) + d["k"]) * scale, [a, b, 10], {"k": b}, scale=3)
    assert cluster.run(g)[c] == (1 + 2 + 10 + 2) * 3


def test_independent_tasks_spread_over_all_workers(cluster):
    g = Graph()
    for _ in range(20):
        g.add_task(time.sleep, 0.05)
    t0 = time.perf_counter()
    res = cluster.run(g)
    wall = time.perf_counter() - t0
    per = res.trace.summary()["workers"]
    assert set(per) == {w["id"] for w in cluster.workers}
    assert min(d["tasks"] for d in per.values()) >= 7
    assert wall < 20 * 0.05 * 0.8  # ran in parallel, not one at a time


def _gen_waits(marker: str, n: int):
    """Yields output 0, then waits until a consumer of output 0 has written ``marker``."""
    yield 0
    deadline = time.time() + 20
    while not os.path.exists(marker):
        if time.time() > deadline:
            raise TimeoutError("the consumer of output 0 did not run while the generator was alive")
        time.sleep(0.01)
    for i in range(1, n):
        yield i * 10


def _touch(x, marker: str):
    with open(marker, "w") as f:
        f.write(str(x))
    return x + 1


def test_generator_feeds_consumers_before_it_finishes(cluster, tmp_path):
    marker = str(tmp_path / "consumed")
    g = Graph()
    gen = g.add_task(_gen_waits, marker, 3, num_outputs=3, requirements=Requirements(worker="w0"))
    c0 = g.add_task(_touch, gen[0], marker, requirements=Requirements(worker="w1"))
    c1 = g.add_task(inc, gen[1])
    c2 = g.add_task(inc, gen[2])
    res = cluster.run(g, retries=0)
    assert (res[c0], res[c1], res[c2]) == (1, 11, 21)
    ev = res.trace.events
    gen_end = next(e["t"] for e in ev if e["kind"] == "finished" and e["task"] == gen.task)
    c0_end = next(e["t"] for e in ev if e["kind"] == "finished" and e["task"] == c0.task)
    assert c0_end < gen_end


def _boom(x):
    return 1 / (x - x)


def test_raising_task_surfaces_exception_with_remote_traceback(cluster):
    g = Graph()
    a = g.add_task(one)
    g.add_task(_boom, a, name="divider")
    for _ in range(10):
        g.add_task(time.sleep, 0.01)
    with pytest.raises(ZeroDivisionError) as info:
        cluster.run(g)
    cause = info.value.__cause__
    assert isinstance(cause, RemoteTraceback)
    assert "_boom" in cause.tb and "ZeroDivisionError" in cause.tb
    assert info.value.task_id.startswith("divider")
    # the cluster is still usable afterwards
    g2 = Graph()
    h = g2.add_task(inc, 41)
    assert cluster.run(g2)[h] == 42


class Flaky:
    def __init__(self, path: str):
        self.path = path

    def __call__(self) -> str:
        n = int(open(self.path).read()) if os.path.exists(self.path) else 0
        with open(self.path, "w") as f:
            f.write(str(n + 1))
        if n < 2:
            raise RuntimeError(f"flaky attempt {n}")
        return "ok"


def test_retries(cluster, tmp_path):
    g = Graph()
    h = g.add_task(Flaky(str(tmp_path / "n")))
    res = cluster.run(g, retries=2)
    assert res[h] == "ok"
    assert sum(1 for e in res.trace.events if e["kind"] == "failed") == 2


def test_large_arrays_move_through_shared_memory(cluster):
    g = Graph()
    a = g.add_task(np.arange, 4_000_000, dtype=np.float64)  # 32 MB
    s = g.add_task(np.sum, a, requirements=Requirements(worker="w1"))
    b = g.add_task(np.multiply, a, 2.0, requirements=Requirements(worker="w0"))
    g.set_outputs([s, b, a])
    res = cluster.run(g)
    assert res[s] == pytest.approx(4_000_000 * 3_999_999 / 2)
    assert res[b][-1] == 2 * 3_999_999
    arr = res[a]
    arr[0] = 5  # outputs are writable (copy-on-write mapping)
    assert any(e["kind"] == "transfer_end" and e["bytes"] >= 32_000_000 for e in res.trace.events)
    # the run's shared-memory files are removed once it is over (the returned arrays stay valid)
    tag = "ecl-" + wire.mac(cluster.secret, [b"prefix"]).hex()[:8]
    deadline = time.time() + 10

    def left():  # spare segments (pre-allocated, never handed out) stay until the cluster closes
        return [f for f in os.listdir("/dev/shm") if f.startswith(tag) and "-spare-" not in f]

    while left() and time.time() < deadline:
        time.sleep(0.05)
    assert not left()
    assert res[b][-1] == 2 * 3_999_999 and arr[0] == 5


def filled(n: int, v: float) -> np.ndarray:
    return np.full(n, v)


def first_and_sum(a: np.ndarray) -> tuple:
    return float(a[0]), float(a.sum())


@pytest.fixture(scope="module")
def shm_cluster():
    """Workers that never hand out ("v", ...) descriptors: every large hand-off goes through a segment."""
    old = os.environ.get("ECFLOW_LAB_CASCADE_VMREAD")
    os.environ["ECFLOW_LAB_CASCADE_VMREAD"] = "0"
    try:
        c = LocalCluster(workers=2)  # its agent (and so every worker it starts) keeps this environment
    finally:
        if old is None:
            del os.environ["ECFLOW_LAB_CASCADE_VMREAD"]
        else:
            os.environ["ECFLOW_LAB_CASCADE_VMREAD"] = old
    with c:
        yield c


def test_freed_segments_are_reused_but_never_while_someone_maps_them(shm_cluster):
    """A large hand-off's segment comes back to its writer when the run ends, and its (allocated, mapped)
    pages carry the next large output; a segment still mapped by a reader (here: the caller's output) is
    never written again."""
    cluster = shm_cluster
    n = 4_000_000  # 32 MB, above the reuse threshold
    w0, w1 = (w["id"] for w in cluster.workers)

    def handoff(v: float, output_big: bool = False):
        g = Graph()
        a = g.add_task(filled, n, v, requirements=Requirements(worker=w0), name="produce")
        c = g.add_task(first_and_sum, a, requirements=Requirements(worker=w1), name="consume")
        g.set_outputs([c, a] if output_big else [c])
        res = cluster.run(g)
        assert res[c] == (v, v * n)
        via = [e["via"] for e in res.trace.events if e["kind"] == "transfer_end" and e["name"] == "produce"]
        return res, a, via[0]

    kept, a, _ = handoff(7.0, output_big=True)  # the caller maps this segment for as long as it keeps it
    vias = []
    for i in range(6):
        vias.append(handoff(float(i))[2])
        time.sleep(0.2)
    assert "shm-reused" in vias, vias  # freed segments do come back
    big = kept[a]
    assert big.shape == (n,) and float(big.min()) == float(big.max()) == 7.0  # and the kept one was never reused
    del big, kept


def test_segment_reader_lock_tells_whether_anyone_maps_it(tmp_path):
    arr = np.arange(100_000, dtype=np.float64)
    desc = wire.publish(arr, f"ecl-test-{os.getpid()}-lock", "h")
    try:
        assert desc[0] == "s" and wire.unreferenced(desc[2])
        val = wire.load(desc)
        assert not wire.unreferenced(desc[2])  # a live mapping holds its reader lock
        assert float(val[-1]) == 99_999.0
        del val
        import gc

        gc.collect()
        assert wire.unreferenced(desc[2])  # ...and lets go with the mapping
    finally:
        wire.unlink_quiet(desc[2])
    assert not wire.unreferenced(desc[2])  # a missing file is never reported free


def test_on_event_streams_pinned_trace_shape(cluster):
    seen = []
    lock = threading.Lock()

    def cb(ev):
        with lock:
            seen.append(ev)

    g = Graph()
    a = g.add_task(one)
    g.add_task(inc, a)
    res = cluster.run(g, on_event=cb)
    kinds = {e["kind"] for e in seen}
    assert {"worker_joined", "planned", "started", "finished"} <= kinds
    for e in seen:
        assert set(e) >= {"t", "kind", "task", "name", "worker"}
        assert isinstance(e["t"], float)
    assert len(seen) == len(res.trace.events)
    span = res.trace.spans()[0]
    assert set(span) >= {"task", "name", "worker", "start", "end", "kind", "phase", "ok"}


def test_impossible_requirement_is_a_clear_error(cluster):
    g = Graph()
    g.add_task(mark.needs_gpu(lambda: 1), name="gputask")
    with pytest.raises(GraphError, match="gputask.*needs_gpu=True"):
        cluster.run(g)


def test_unauthenticated_messages_are_never_unpickled(cluster, tmp_path):
    """A peer without the secret sends a pickle that would create a file when unpickled."""
    evil = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(evil), "w"))

    before = cluster.controller.auth_failures
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(cluster.address)
    body = pickle.dumps(("hello", "evil/w0", "evil", 1, {}))
    s.send_multipart([wire.mac(b"wrong-secret" * 3, [body]), body])
    s.send_multipart([b"0" * 16, pickle.dumps(Evil())])
    deadline = time.time() + 5
    while cluster.controller.auth_failures < before + 2 and time.time() < deadline:
        time.sleep(0.02)
    s.close()
    ctx.term()
    assert cluster.controller.auth_failures >= before + 2
    assert not evil.exists()
    assert all(w["id"] != "evil/w0" for w in cluster.workers)


def _slow_square(x: int) -> int:
    time.sleep(0.1)
    return x * x


def test_killing_a_worker_mid_run_still_gives_correct_results():
    with LocalCluster(workers=2) as cl:
        g = Graph()
        squares = [g.add_task(_slow_square, i) for i in range(30)]
        # chains whose intermediate data lives only in worker memory
        ends = []
        for c in range(4):
            h = g.add_task(inc, c)
            for _ in range(5):
                h = g.add_task(_slow_square, h)
                h = g.add_task(inc, h)
            ends.append(h)
        s = g.add_task(total, *squares)
        g.set_outputs([s, *ends])
        victim = cl.workers[0]

        def kill():
            time.sleep(0.6)
            os.kill(victim["pid"], signal.SIGKILL)

        th = threading.Thread(target=kill)
        th.start()
        res = cl.run(g, timeout=60)
        th.join()
        expected_ends = []
        for c in range(4):
            x = c + 1
            for _ in range(5):
                x = x * x + 1
            expected_ends.append(x)
        assert res[s] == sum(i * i for i in range(30))
        assert [res[e] for e in ends] == expected_ends
        lost = [e for e in res.trace.events if e["kind"] == "worker_lost"]
        assert lost and lost[0]["worker"] == victim["id"]
        # a replacement joined and the cluster keeps working
        cl.wait_for_workers(2, timeout=20)
        g2 = Graph()
        h = g2.add_task(inc, 1)
        assert cl.run(g2)[h] == 2


def test_two_hosts_fetch_data_directly():
    with LocalCluster(workers=1, hosts=2) as cl:
        hosts = sorted({w["host"] for w in cl.workers})
        assert len(hosts) == 2
        g = Graph()
        a = g.add_task(np.ones, 1_000_000, requirements=Requirements(worker=f"{hosts[0]}/w0"))
        b = g.add_task(np.sum, a, requirements=Requirements(worker=f"{hosts[1]}/w0"))
        g.set_outputs([b, a])
        res = cl.run(g)
        assert res[b] == 1_000_000
        assert res[a].shape == (1_000_000,)
        tag = "ecl-" + wire.mac(cl.secret, [b"prefix"]).hex()[:8]
    assert not [f for f in os.listdir("/dev/shm") if f.startswith(tag)]  # closing removes everything


def test_gpu_worker_is_chosen_for_gpu_tasks():
    """CUDA_VISIBLE_DEVICES binding and placement, checked without a GPU (the env is what matters)."""
    with LocalCluster(workers=2, gpus=["0"]) as cl:
        gpu_ids = [w["id"] for w in cl.workers if w["gpu"]]
        assert len(gpu_ids) == 1
        g = Graph()
        on_gpu = [g.add_task(mark.needs_gpu(lambda: os.environ["CUDA_VISIBLE_DEVICES"])) for _ in range(4)]
        on_any = [g.add_task(lambda: os.environ["CUDA_VISIBLE_DEVICES"]) for _ in range(2)]
        res = cl.run(g)
        assert {res[h] for h in on_gpu} == {"0"}
        spans = {s["task"]: s["worker"] for s in res.trace.spans()}
        assert {spans[h.task] for h in on_gpu} == set(gpu_ids)
        assert all(res[h] in ("", "0") for h in on_any)


def _torch_or_cupy_on_gpu():
    try:
        import torch

        x = torch.arange(1000, device="cuda", dtype=torch.float32)
        return float((x * 2).sum().item()), torch.cuda.get_device_name(0)
    except ImportError:
        import cupy

        x = cupy.arange(1000, dtype=cupy.float32)
        return float((x * 2).sum().get()), "cupy"


def _has_gpu() -> bool:
    from ecflow_lab.cascade.executor.agent import detect_gpus

    if not detect_gpus():
        return False
    import importlib.util

    return bool(importlib.util.find_spec("torch") or importlib.util.find_spec("cupy"))


@pytest.mark.gpu
@pytest.mark.skipif(not _has_gpu(), reason="no CUDA GPU (or neither torch nor cupy) on this machine")
def test_gpu_task_runs_on_the_gpu_worker():
    with LocalCluster(workers=2, gpus="auto") as cl:
        g = Graph()
        h = g.add_task(mark.needs_gpu(_torch_or_cupy_on_gpu))
        res = cl.run(g)
        total_, _name = res[h]
        assert total_ == 2 * sum(range(1000))
        worker = res.trace.spans()[0]["worker"]
        assert any(w["id"] == worker and w["gpu"] for w in cl.workers)


def _lock():
    return threading.Lock()


def test_unpicklable_output_needed_elsewhere_fails_cleanly(cluster):
    g = Graph()
    a = g.add_task(_lock, name="makelock")
    g.set_outputs([a])
    with pytest.raises(Exception, match="cannot serialize output 0"):
        cluster.run(g)
    # not needed outside its worker: fine
    g2 = Graph()
    b = g2.add_task(_lock)
    c = g2.add_task(lambda lk: lk.acquire(blocking=False), b)
    g2.set_outputs([c])
    assert cluster.run(g2)[c] is True


def test_memory_requirement_is_checked_against_worker_memory(cluster):
    per_worker = cluster.workers[0]["memory_mb"]
    assert per_worker > 0
    g = Graph()
    ok = g.add_task(one, requirements=Requirements(memory_mb=per_worker // 2))
    assert cluster.run(g)[ok] == 1
    g.add_task(one, name="hog", requirements=Requirements(memory_mb=per_worker * 4))
    with pytest.raises(GraphError, match="hog"):
        cluster.run(g)


def test_segment_without_reader_lock_is_read_as_a_private_copy(monkeypatch):
    """Where the reader lock cannot be taken, the reader gets a copy: a writer reusing the segment later
    cannot change what it holds."""
    import fcntl

    real = fcntl.fcntl

    def no_ofd_locks(fd, cmd, arg=0):
        if cmd == fcntl.F_OFD_SETLKW:
            raise OSError(22, "locks not supported here")
        return real(fd, cmd, arg)

    arr = np.arange(100_000, dtype=np.float64)
    desc = wire.publish(arr, f"ecl-test-{os.getpid()}-copy", "h")
    try:
        monkeypatch.setattr(wire.fcntl, "fcntl", no_ofd_locks)
        val = wire.load(desc)
        monkeypatch.undo()
        assert wire.unreferenced(desc[2])  # nobody maps it: the writer may reuse it...
        with open(desc[2], "r+b") as f:  # ...and does
            f.write(b"\xff" * (desc[3] + 4096))
        assert float(val[0]) == 0.0 and float(val[-1]) == 99_999.0  # the reader's copy is untouched
    finally:
        wire.unlink_quiet(desc[2])


def _big_handoff(cl, n: int = 4_000_000, v: float = 3.0, on_event=None):
    w0, w1 = (w["id"] for w in cl.workers[:2])
    g = Graph()
    a = g.add_task(filled, n, v, requirements=Requirements(worker=w0), name="produce")
    c = g.add_task(first_and_sum, a, requirements=Requirements(worker=w1), name="consume")
    res = cl.run(g, on_event=on_event, timeout=60)
    assert res[c] == (v, v * n)
    return res, [e["via"] for e in res.trace.events if e["kind"] == "transfer_end" and e["name"] == "produce"]


def test_first_large_handoff_is_copied_straight_from_the_writers_memory():
    """With no allocated segment at hand (a new cluster), the reader copies the value out of the writer's
    memory (process_vm_readv): one copy instead of two, and no shared-memory file at all (not even the
    writer's spare segment, which is only made once nobody reads from its memory). Later large outputs go
    through the segment the writer readies meanwhile."""
    if not _vm_capable():
        pytest.skip("process_vm_readv is refused on this machine")
    with LocalCluster(workers=2) as cluster:
        tag = "ecl-" + wire.mac(cluster.secret, [b"prefix"]).hex()[:8]
        seen: list[str] = []

        def on_event(ev):  # while the consumer runs, its input is not in /dev/shm
            if ev["kind"] == "transfer_end":
                seen.extend(f for f in os.listdir("/dev/shm") if f.startswith(tag))

        res, vias = _big_handoff(cluster, v=11.0, on_event=on_event)
        assert vias == ["vm-read"], vias
        span = next(s for s in res.trace.spans() if s["phase"] == "transfer")
        assert span["bytes"] >= 32_000_000 and span["worker"] == cluster.workers[1]["id"]  # the reader copies
        assert not seen
        time.sleep(0.3)
        later = []
        for v in range(3):
            later += _big_handoff(cluster, v=float(v))[1]
            time.sleep(0.3)
        assert later == ["shm-preallocated", "shm-reused", "shm-reused"], later


def test_an_unused_spare_segment_is_given_back(monkeypatch):
    if not _vm_capable():
        pytest.skip("process_vm_readv is refused on this machine")
    monkeypatch.setenv("ECFLOW_LAB_CASCADE_SHM_SPARE_IDLE_S", "1.5")  # the agent and its workers inherit it
    with LocalCluster(workers=2) as cluster:
        tag = "ecl-" + wire.mac(cluster.secret, [b"prefix"]).hex()[:8]

        def spares() -> list[str]:
            return [f for f in os.listdir("/dev/shm") if f.startswith(tag) and "-spare-" in f]

        _big_handoff(cluster)
        deadline = time.monotonic() + 1.2
        while not spares():
            assert time.monotonic() < deadline, "no spare segment was readied after a large output"
            time.sleep(0.02)
        deadline = time.monotonic() + 5
        while spares():
            assert time.monotonic() < deadline, "the unused spare segment was kept"
            time.sleep(0.05)
        assert _big_handoff(cluster)[1] == ["vm-read"]  # and the next large output starts over


def test_refused_memory_reads_fall_back_to_a_segment(monkeypatch):
    """Where reading another process's memory is refused (seccomp, Yama, LSM), the reader asks for the
    value in shared memory and the run goes on; the writer hands out segments from then on."""
    monkeypatch.setenv("ECFLOW_LAB_CASCADE_VMREAD", "refuse")
    with LocalCluster(workers=2) as cl:
        _res, vias = _big_handoff(cl, v=5.0)
        assert "vm-read" not in vias
        _res, vias = _big_handoff(cl, v=6.0)
        assert vias and vias[0].startswith("shm"), vias


def _slow_value(x: float) -> float:
    time.sleep(1.5)
    return x


def _first_plus(a: np.ndarray, x: float) -> float:
    return float(a[0]) + x


def test_writer_dying_before_its_value_is_read_is_recomputed():
    """A reader holding a ("v", ...) descriptor of a worker that died meanwhile asks again; the value is
    computed anew elsewhere and the run gives the right result."""
    if not _vm_capable():
        pytest.skip("process_vm_readv is refused on this machine")
    with LocalCluster(workers=3) as cl:
        w2 = cl.workers[2]["id"]
        pids = {w["id"]: w["pid"] for w in cl.workers}
        killed: list[str] = []

        def on_event(ev):  # kill the producer as soon as it has finished (the reader is still busy)
            if ev["kind"] == "finished" and ev["name"] == "produce" and ev["worker"] != w2 and not killed:
                killed.append(ev["worker"])
                os.kill(pids[ev["worker"]], signal.SIGKILL)

        g = Graph()
        a = g.add_task(filled, 4_000_000, 2.0, name="produce")
        g.add_task(_slow_value, 1.0, requirements=Requirements(worker=w2), name="slow")  # keeps w2 busy...
        # ...so this one, sent with a's descriptor, reads it only after a's writer was killed
        r = g.add_task(_first_plus, a, 40.0, requirements=Requirements(worker=w2), name="consume")
        res = cl.run(g, on_event=on_event, timeout=60)
        assert res[r] == 42.0
        if not killed:
            pytest.skip("the producer ran on the reader's worker: nothing to kill")
        assert sum(1 for e in res.trace.events if e["kind"] == "finished" and e["name"] == "produce") == 2
        assert any(e["kind"] == "worker_lost" and e["worker"] == killed[0] for e in res.trace.events)


def _vm_capable() -> bool:
    return os.environ.get("ECFLOW_LAB_CASCADE_VMREAD", "1") != "0" and wire.vm_setup(os.getppid())


def test_a_quick_result_is_not_held_back_behind_a_slow_task(cluster):
    """Results are batched for throughput, but a finished task's output reaches its consumers on other
    workers without waiting for the slow task its worker runs next."""
    w0, w1 = (w["id"] for w in cluster.workers)
    g = Graph()
    a = g.add_task(one, requirements=Requirements(worker=w0), name="quick")
    g.add_task(_slow_value, a, requirements=Requirements(worker=w0), name="slow")  # runs right after it
    c = g.add_task(inc, a, requirements=Requirements(worker=w1), name="consumer")
    res = cluster.run(g, timeout=60)
    assert res[c] == 2
    t = {(e["kind"], e["name"]): e["t"] for e in res.trace.events}
    assert t[("started", "slow")] >= t[("finished", "quick")]
    assert t[("started", "consumer")] < t[("finished", "slow")] - 0.5


def test_large_value_for_another_host_goes_through_its_agent():
    """A large value read on another host is put in a segment (not handed out as a memory address) and
    fetched from its host's agent."""
    with LocalCluster(workers=1, hosts=2) as cl:
        hosts = sorted({w["host"] for w in cl.workers})
        g = Graph()
        a = g.add_task(filled, 4_000_000, 1.5, requirements=Requirements(worker=f"{hosts[0]}/w0"), name="produce")
        s = g.add_task(first_and_sum, a, requirements=Requirements(worker=f"{hosts[1]}/w0"), name="consume")
        res = cl.run(g, timeout=60)
        assert res[s] == (1.5, 1.5 * 4_000_000)
        assert "vm-read" not in [e.get("via") for e in res.trace.events]


def _bump_in_place(a: np.ndarray) -> float:
    a += 1.0  # a task that (wrongly) changes its input
    return float(a[0])


def test_value_also_used_in_its_own_worker_is_copied_out_before_readers_come():
    """A large value that tasks of its own worker also use goes to a segment at once; a reader on another
    worker gets it as it was produced, whatever those tasks do to it afterwards."""
    with LocalCluster(workers=2) as cl:
        w0, w1 = (w["id"] for w in cl.workers)
        g = Graph()
        a = g.add_task(filled, 4_000_000, 1.0, requirements=Requirements(worker=w0), name="produce")
        g.add_task(_bump_in_place, a, requirements=Requirements(worker=w0), name="local")
        r = g.add_task(first_and_sum, a, requirements=Requirements(worker=w1), name="remote")
        res = cl.run(g, timeout=60)
        assert res[r] == (1.0, 4_000_000.0)


@pytest.mark.parametrize("n, k, align", [(100, 3, 1), (10 << 20, 2, 2 << 20), (5, 4, 1), (7, 1, 1), (0, 2, 1)])
def test_in_slices_covers_the_range_once_and_raises_a_slice_error(n, k, align):
    seen: list = []
    lock = threading.Lock()

    def work(a, b):
        with lock:
            seen.append((a, b))

    wire.in_slices(n, k, work, align=align)
    if n == 0:
        assert seen == []  # nothing to do (an empty buffer)
        return
    seen.sort()
    assert len(seen) <= max(k, 1) and [b - a for a, b in seen if b > a]
    assert seen[0][0] == 0 and seen[-1][1] == n and all(x[1] == y[0] for x, y in zip(seen, seen[1:]))
    assert all(a % align == 0 for a, _b in seen)
    if n > 1 and k > 1:
        with pytest.raises(ZeroDivisionError):
            wire.in_slices(n, k, lambda a, b: 1 / 0 if a else None, align=align)


def _process_facts(path: str = "") -> dict:
    if path:  # an exit handler registered by a task runs when the worker ends, as in any interpreter
        import atexit

        atexit.register(lambda: open(path, "w").write("ran"))
    with open("/proc/self/cmdline", "rb") as f:
        cmd = f.read()
    return {"ppid": os.getppid(), "stdin": os.path.realpath("/proc/self/fd/0"), "cmd": cmd,
            "omp": os.environ.get("OMP_NUM_THREADS"), "cuda": os.environ.get("CUDA_VISIBLE_DEVICES")}  # fmt: skip


def test_first_workers_are_forked_from_the_agent_and_replacements_start_afresh(tmp_path):
    with LocalCluster(workers=2, gpus=["7"]) as cl:
        agent = cl.agents[0].pid
        g = Graph()
        hs = {w["id"]: g.add_task(_process_facts, str(tmp_path / w["id"].replace("/", "_")),
                                  requirements=Requirements(worker=w["id"])) for w in cl.workers}  # fmt: skip
        res = cl.run(g)
        facts = {wid: res[h] for wid, h in hs.items()}
        assert sorted(f["cuda"] for f in facts.values()) == ["", "7"]
        for f in facts.values():
            assert f["ppid"] == agent and f["stdin"] == os.devnull and f["omp"] == "1"
            assert b"executor.agent" in f["cmd"]  # a fork of the agent: no interpreter start, no imports
        victim = sorted(facts)[0]
        cl.kill_worker(victim)
        deadline = time.monotonic() + 20
        while victim in {w["id"] for w in cl.workers} or len(cl.workers) < 2:
            assert time.monotonic() < deadline, "no replacement worker"
            time.sleep(0.05)
        new = next(w["id"] for w in cl.workers if w["id"] not in facts)
        g2 = Graph()
        h = g2.add_task(_process_facts, requirements=Requirements(worker=new))
        f = cl.run(g2)[h]
        assert f["ppid"] == agent and b"executor.worker" in f["cmd"]  # the agent has threads now: a new process
    survivor = next(wid for wid in facts if wid != victim)
    assert (tmp_path / survivor.replace("/", "_")).read_text() == "ran"


def _note_load(path: str) -> _LoadNoted:
    with open(path, "a") as f:
        f.write(f"{os.getpid()} {time.time()}\n")
    return _LoadNoted(path)


class _LoadNoted:
    """A task function that notes which process unpickled it, and when."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (_note_load, (self.path,))

    def __call__(self, *xs: int) -> int:
        return len(xs)


def _sleep_then(x: int) -> int:
    time.sleep(0.8)
    return x


def test_workers_load_the_functions_they_may_run_when_the_graph_starts(tmp_path):
    with LocalCluster(workers=3, gpus=["5"]) as cl:
        gpu = next(w for w in cl.workers if w["gpu"])
        cpu = sorted(w["id"] for w in cl.workers if not w["gpu"])
        g = Graph()
        slow = g.add_task(_sleep_then, 1, requirements=Requirements(worker=cpu[0]))
        late = g.add_task(_LoadNoted(str(tmp_path / "late")), slow, requirements=Requirements(worker=cpu[1]))
        on_gpu = g.add_task(mark.needs_gpu(_LoadNoted(str(tmp_path / "gpu"))), 1, 2)
        res = cl.run(g)
        assert res[late] == 1 and res[on_gpu] == 2
        slow_end = next(e["t"] for e in res.trace.events if e["kind"] == "finished" and e["task"] == slow.task)
        pids = {w["id"]: w["pid"] for w in cl.workers}
    loads = [line.split() for line in (tmp_path / "late").read_text().splitlines()]
    # cpu[1], the only worker its task may run on, loaded the function once, while cpu[0] was still busy
    # (not when its task became ready)
    assert [int(pid) for pid, _ in loads] == [pids[cpu[1]]] and float(loads[0][1]) < slow_end
    # a GPU task's function goes to the GPU worker only (it may import CUDA libraries)
    assert {int(line.split()[0]) for line in (tmp_path / "gpu").read_text().splitlines()} == {gpu["pid"]}


def test_memory_read_into_fresh_pages_with_or_without_kernel_populate(monkeypatch):
    """Large reads land in a mapping of the reader's own, faulted in ahead of each chunk where the kernel
    can (MADV_POPULATE_WRITE), by the copy itself where it cannot; the spare segment's populate says
    which happened."""
    if not _vm_capable():
        pytest.skip("process_vm_readv is refused on this machine")
    import mmap

    arr = np.arange(1_500_000, dtype=np.float64)  # 12 MB: above FRESH_MIN
    assert arr.nbytes >= wire.FRESH_MIN
    main, bufs = wire.serialize(arr)
    desc = wire.vm_descriptor(main, bufs, "h", "w", arr.nbytes)
    for advice, populated in ((wire._MADV_POPULATE_WRITE, True), (0x7FFF, False)):  # 0x7FFF: EINVAL
        monkeypatch.setattr(wire, "_MADV_POPULATE_WRITE", advice)
        out = wire.vm_read(desc)
        assert np.array_equal(out, arr) and out.flags.writeable
        out[0] = -1.0
        assert arr[0] == 0.0  # a copy, not a view of the writer's memory
        seg = mmap.mmap(-1, 8 << 20)
        assert wire.populate(seg) is populated
        seg.close()
    monkeypatch.undo()
    calls = []
    seg = mmap.mmap(-1, 3 * wire.POPULATE_CHUNK)
    assert wire.populate(seg, stop=lambda: len(calls) == 2 or bool(calls.append(1))) is False  # gives up
    assert len(calls) == 2  # between chunks, when told to
    seg.close()


def test_workers_start_afresh_when_a_preloaded_library_runs_threads(monkeypatch):
    """Forking a process with native threads (OpenBLAS started with OMP_NUM_THREADS=2) risks deadlocks:
    the agent then starts its workers as new interpreters."""
    import subprocess
    import sys

    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")  # a Dask nanny run earlier in this process set it to 1
    probe = "import numpy; from ecflow_lab.cascade.executor.agent import _os_threads; print(_os_threads())"
    if subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.strip() == "1":
        pytest.skip("this numpy's BLAS starts no thread of its own")
    with LocalCluster(workers=2) as cl:
        g = Graph()
        hs = [g.add_task(_process_facts, requirements=Requirements(worker=w["id"])) for w in cl.workers]
        res = cl.run(g)
    for h in hs:
        assert b"executor.worker" in res[h]["cmd"] and res[h]["omp"] == "2"
