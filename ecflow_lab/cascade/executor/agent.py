"""The host agent: one per machine. Starts and watches the worker processes, reports a dying worker to
the controller at once (and starts a replacement), serves this host's shared-memory datasets to other
hosts, and removes them when the controller says they are no longer needed or when it stops.

Run by :class:`LocalCluster` or by ``ecflow-lab cascade host --controller tcp://HOST:PORT``.
"""

from __future__ import annotations

import argparse
import atexit
import glob
import os
import signal
import socket
import subprocess
import sys
import time
from urllib.parse import urlparse

import zmq

from . import wire

HEARTBEAT_S = 1.0
# Fork the first workers from the agent (which has imported what they need and has no thread yet) instead
# of starting a new interpreter for each: a cluster starts in about half the time. "0" turns it off.
FORK = os.environ.get("ECFLOW_LAB_CASCADE_FORK", "1") != "0"


class _Forked:
    """A worker forked from the agent, with the part of ``subprocess.Popen`` the agent uses."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere: gone, exit status unknown
                self.returncode = -1
            else:
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"worker pid {self.pid}", timeout or 0)
            time.sleep(0.005)
        return self.returncode  # type: ignore[return-value]

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:  # never signal a pid that was reaped (and may be reused)
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def _os_threads() -> int:
    """This process's threads as the kernel counts them (native ones too); 0 when unknown."""
    try:
        with open("/proc/self/status") as f:
            return next((int(line.split()[1]) for line in f if line.startswith("Threads:")), 0)
    except OSError:
        return 0


def _fork_worker(argv: list[str], env: dict[str, str]) -> _Forked:
    """Fork a worker running ``worker.main(argv)``; the child never returns into the agent's code."""
    from . import worker  # imported here, before the fork, so that the child has it already

    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return _Forked(pid)
    code = 1
    try:
        atexit._clear()  # the agent's exit handlers are not the worker's
        os.environ.clear()
        os.environ.update(env)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        code = worker.main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - reported, then the child ends like a failed interpreter
        import traceback

        traceback.print_exc()
    finally:
        try:
            atexit._run_exitfuncs()  # what an interpreter would run at exit (task libraries' handlers)
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _local_ip_towards(controller: str) -> str:
    host = urlparse(controller).hostname or "127.0.0.1"
    if host in ("127.0.0.1", "localhost", "::1"):
        return "127.0.0.1"
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect((host, 9))
        return s.getsockname()[0]
    except OSError:
        return "127.0.0.1"
    finally:
        s.close()


class Agent:
    def __init__(
        self,
        controller: str,
        host: str,
        workers: int,
        gpus: list[str],
        key: bytes,
        cpus: int = 1,
        memory_mb: int = 0,
        exit_with_parent: bool = False,
        restart: bool = True,
        advertise: str | None = None,
    ):
        self.controller, self.host, self.key = controller, host, key
        self.gpus, self.cpus, self.memory_mb = gpus, cpus, memory_mb
        self.restart = restart
        self.exit_with_parent = exit_with_parent
        self.parent = os.getppid()
        self.cluster_tag = wire.mac(key, [b"prefix"]).hex()[:8]
        self.shm_prefix = f"ecl-{self.cluster_tag}-{os.getpid()}"
        self.procs: dict[str, tuple[subprocess.Popen | _Forked, str]] = {}
        self.next_index = 0
        first = [gpus[i] if i < len(gpus) else "" for i in range(workers)]  # each first worker's GPU
        forked = FORK and sys.platform.startswith("linux")
        if forked:
            from .worker import _preload

            # the modules workers preload (numpy, ...) are imported once here and shared by every fork, with
            # the thread count the workers are given (numerical libraries read it when they load)
            os.environ.setdefault("OMP_NUM_THREADS", str(cpus))
            _preload()
            # forking is only safe while this process has no other thread, native ones included (a BLAS
            # may start some; ZeroMQ starts its own below)
            forked = _os_threads() == 1
        for gpu in first if forked else ():
            self.spawn(gpu, fork=True)
        try:
            self._connect(advertise)
        except BaseException:
            for proc, _ in self.procs.values():
                proc.kill()
                proc.wait()
            raise
        self.running = True
        self.hello()  # the controller learns whom to tell to stop (it waits a little for a late hello)
        for gpu in () if forked else first:
            self.spawn(gpu)

    def _connect(self, advertise: str | None) -> None:
        """The controller link and the data port other hosts fetch this host's datasets from."""
        controller = self.controller
        self.ctx = zmq.Context()
        self.ssl = wire.curve_setting()   # ECF_SSL: Curve on the controller link and the data port
        self._curve = wire.curve_server(self.ctx, self.ssl)
        self.ctl = wire.secure_client(self.ctx.socket(zmq.DEALER), self.ssl)
        self.ctl.setsockopt(zmq.IDENTITY, f"agent:{self.host}".encode())
        self.ctl.setsockopt(zmq.LINGER, 1000)
        if self.ssl:
            # a refused key leaves no connection to send on (a send would block for ever): say so and stop
            from ...security import CurveHandshakeError, connect_checked

            try:
                connect_checked(self.ctl, controller, timeout=30.0)
            except CurveHandshakeError:
                self.ctl.close(0)
                if self._curve is not None:
                    self._curve.close()
                self.ctx.term()
                raise
        else:
            self.ctl.connect(controller)
        self.data = self.ctx.socket(zmq.ROUTER)
        if self._curve is not None:
            self._curve.secure(self.data)
        self.data.setsockopt(zmq.LINGER, 0)
        ip = advertise or _local_ip_towards(controller)
        port = self.data.bind_to_random_port(f"tcp://{ip if advertise is None else '*'}")
        self.data_addr = f"tcp://{ip}:{port}"

    def spawn(self, gpu: str, fork: bool = False) -> str:
        """Start worker ``host/wN``: forked from this agent while it has no thread (its first workers),
        else a new interpreter (replacements, or ``ECFLOW_LAB_CASCADE_FORK=0``)."""
        wid = f"{self.host}/w{self.next_index}"
        self.next_index += 1
        env = dict(os.environ)
        env[wire.SECRET_ENV] = self.key.hex()
        env["CUDA_VISIBLE_DEVICES"] = gpu
        env.setdefault("OMP_NUM_THREADS", str(self.cpus))
        args = [
            "--controller", self.controller, "--id", wid, "--host", self.host,
            "--cpus", str(self.cpus), "--memory-mb", str(self.memory_mb),
            "--gpu", gpu, "--shm-prefix", self.shm_prefix,
        ]  # fmt: skip
        if fork:
            proc: subprocess.Popen | _Forked = _fork_worker(args, env)
        else:
            cmd = [sys.executable, "-m", "ecflow_lab.cascade.executor.worker", *args]
            proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL)
        self.procs[wid] = (proc, gpu)
        return wid

    def send(self, msg: tuple) -> None:
        wire.send(self.ctl, self.key, msg)

    def release(self, path: str) -> None:
        """A dataset nobody needs any more. A large segment of a live worker goes back to that worker
        (renamed ``-free-PID-``; it reuses the pages, already allocated and mapped, for its next large
        output when no reader maps it any more); anything else is deleted."""
        pid = path.rsplit("-", 1)[-1]
        if pid.isdecimal() and int(pid) in self.live_pids():
            try:
                big = os.stat(path).st_size >= wire.RECYCLE_MIN
            except OSError:
                return
            if big:
                free = os.path.join(os.path.dirname(path), f"{self.shm_prefix}-free-{pid}-{os.path.basename(path)}")
                try:
                    os.rename(path, free)
                    return
                except OSError:
                    pass
        wire.unlink_quiet(path)

    def live_pids(self) -> set[int]:
        return {p.pid for p, _ in self.procs.values() if p.poll() is None}

    def hello(self) -> None:
        workers = {wid: p.pid for wid, (p, _) in self.procs.items()}
        self.send(("agent", self.host, self.data_addr, os.getpid(), workers))

    def check_workers(self) -> None:
        for wid, (p, gpu) in list(self.procs.items()):
            rc = p.poll()
            if rc is None:
                continue
            del self.procs[wid]
            for kind in ("free", "spare"):  # its pages for reuse: nobody else would ever take them
                for path in glob.glob(os.path.join(wire.SHM_DIR or "/nonexistent", f"{self.shm_prefix}-{kind}-{p.pid}-*")):
                    wire.unlink_quiet(path)
            self.send(("worker_lost", wid, rc))
            if self.running and self.restart:
                self.spawn(gpu)

    def serve_data(self) -> None:
        while self.data.poll(0):
            try:
                prefix, msg, _ = wire.recv(self.data, self.key, n_prefix=1)
            except wire.AuthError:
                continue
            if msg[0] == "get":
                path = msg[1]
                real = os.path.realpath(path)
                if (not os.path.basename(real).startswith(self.shm_prefix) or wire.SHM_DIR is None
                        or os.path.dirname(real) != os.path.realpath(wire.SHM_DIR) or not os.path.isfile(real)):
                    wire.send(self.data, self.key, ("error", f"no such dataset {path}"), prefix=prefix)
                    continue
                buf = wire.read_file_buffer(path)
                wire.send(self.data, self.key, ("data", path), prefix=prefix, buffers=[buf])

    def handle(self, msg: tuple) -> None:
        kind = msg[0]
        if kind == "unlink":
            for path in msg[1]:
                if os.path.basename(path).startswith(self.shm_prefix):
                    self.release(path)
        elif kind == "unlink_job":
            for path in glob.glob(os.path.join(wire.SHM_DIR or "/nonexistent", f"{self.shm_prefix}-{msg[1]}-*")):
                self.release(path)
        elif kind == "kill_worker":  # used by tests and operators: SIGKILL one worker
            entry = self.procs.get(msg[1])
            if entry:
                entry[0].kill()
        elif kind == "who":
            self.hello()
        elif kind == "stop":
            self.running = False

    def loop(self) -> None:
        self.hello()
        poller = zmq.Poller()
        poller.register(self.ctl, zmq.POLLIN)
        poller.register(self.data, zmq.POLLIN)
        last_hb = time.monotonic()
        while self.running:
            events = dict(poller.poll(50))
            if self.ctl in events:
                while self.ctl.poll(0):
                    try:
                        _, msg, _ = wire.recv(self.ctl, self.key)
                    except wire.AuthError:
                        continue
                    self.handle(msg)
            if self.data in events:
                self.serve_data()
            self.check_workers()
            now = time.monotonic()
            if now - last_hb > HEARTBEAT_S:
                last_hb = now
                self.send(("hb", self.host))
                if self.exit_with_parent and os.getppid() != self.parent:
                    break

    def close(self) -> None:
        self.running = False
        for p, _ in self.procs.values():
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + 3
        for p, _ in self.procs.values():
            try:
                p.wait(max(0.01, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs.clear()
        if wire.SHM_DIR:
            for path in glob.glob(os.path.join(wire.SHM_DIR, f"{self.shm_prefix}-*")):
                wire.unlink_quiet(path)
        self.ctl.close()
        self.data.close()
        if self._curve is not None:
            self._curve.close()
        self.ctx.term()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ecflow-lab cascade host", description=__doc__)
    p.add_argument("--controller", required=True, help="controller address, e.g. tcp://node1:5555")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--gpus", default="", help="comma-separated GPU ids, one GPU worker each ('auto': all)")
    p.add_argument("--host-id", default=socket.gethostname())
    p.add_argument("--cpus-per-worker", type=int, default=1)
    p.add_argument("--memory-mb", type=int, default=0, help="memory per worker (0: unknown)")
    p.add_argument("--secret-file", help=f"file holding the cluster secret (hex); else ${wire.SECRET_ENV}")
    p.add_argument("--advertise", help="address other hosts use to fetch data from this one")
    p.add_argument("--no-restart", action="store_true", help="do not replace workers that die")
    p.add_argument("--exit-with-parent", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.secret_file:
        with open(a.secret_file) as f:
            key = bytes.fromhex(f.read().strip())
    else:
        key = wire.secret_from_env()
    gpus = detect_gpus() if a.gpus == "auto" else [g for g in a.gpus.split(",") if g]
    try:
        agent = Agent(
            a.controller, a.host_id, a.workers, gpus, key, a.cpus_per_worker, a.memory_mb,
            exit_with_parent=a.exit_with_parent, restart=not a.no_restart, advertise=a.advertise,
        )  # fmt: skip
    except (ConnectionError, ValueError) as exc:   # Curve refused, key files missing or malformed
        print(f"ecflow-lab cascade host: {exc}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, lambda *_: setattr(agent, "running", False))
    try:
        agent.loop()
    except KeyboardInterrupt:
        pass
    finally:
        agent.close()
    return 0


def detect_gpus() -> list[str]:
    """GPU ids from ``nvidia-smi -L`` (empty where there is none)."""
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


if __name__ == "__main__":
    # everything the agent holds is released by now; skipping the interpreter's teardown of the modules
    # it loaded (numpy among them) takes 50 ms off every LocalCluster close
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
