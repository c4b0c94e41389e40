"""Start a master and its data movers as real subprocesses, with one owner that stops them.

``with TransferService(home, movers=2) as svc: svc.client().push(...)`` — used by tests, benchmarks, the
demo and notebooks. The processes are ordinary ``ecflow-lab transfer master|mover`` commands.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .client import TransferClient
from .wire import TransferError


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class TransferService:
    """A master (``home``/ecpds.db, ``home``/store) plus ``movers`` data movers, each its own process."""

    def __init__(self, home: str | Path, movers: int = 2, port: int | None = None, *,
                 mover_threads: int = 8, mover_timeout: float = 5.0, heartbeat: float = 0.5,
                 master_args: list[str] | None = None, log_dir: str | Path | None = None,
                 exit_with_parent: bool = True, ssl: bool | str | None = None,
                 keys: str | Path | None = None) -> None:
        self.home = Path(home).resolve()
        self.home.mkdir(mode=0o755, parents=True, exist_ok=True)  # explicit modes: never group/world-writable
        self.port = port or free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.n_movers = movers
        self.mover_threads = mover_threads
        self.mover_timeout = mover_timeout
        self.heartbeat = heartbeat
        self.master_args = master_args or []
        self.log_dir = Path(log_dir) if log_dir else self.home / "logs"
        self.log_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        #: children stop by themselves if this process dies without closing them (e.g. a killed kernel)
        self._owned = ["--exit-with-parent"] if exit_with_parent else []
        self.master: subprocess.Popen | None = None
        self.movers: list[subprocess.Popen] = []
        self._clients: list[TransferClient] = []
        #: encryption (ECF_SSL semantics; None follows the environment) and the key directory, handed to
        #: the children through ECF_SSL / ECFLOW_LAB_KEYS and to the clients made by :meth:`client`
        self.env = dict(os.environ)
        if keys is not None:
            self.env["ECFLOW_LAB_KEYS"] = str(keys)
        if ssl is not None:
            self.env["ECF_SSL"] = "1" if ssl is True else (str(ssl) if ssl else "")
        self.ssl: bool | str | None = ssl
        self.keys = keys

    # ------------------------------------------------------------------------------------------ processes

    def _spawn(self, args: list[str], log_name: str) -> subprocess.Popen:
        fd = os.open(self.log_dir / log_name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        log = os.fdopen(fd, "ab")  # handed to the child
        try:
            return subprocess.Popen([sys.executable, "-m", "ecflow_lab", "transfer", *args], stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env)
        finally:
            log.close()

    def start_master(self, timeout: float = 20.0) -> None:
        info = self.home / "master.json"
        info.unlink(missing_ok=True)
        self.master = self._spawn(["master", "--home", str(self.home), "--port", str(self.port),
                                   "--mover-timeout", str(self.mover_timeout), *self._owned, *self.master_args],
                                  "master.log")
        deadline = time.monotonic() + timeout
        while not info.exists():
            if self.master.poll() is not None:
                raise TransferError(f"master exited with {self.master.returncode}: "
                                    f"{(self.log_dir / 'master.log').read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise TransferError("master did not start in time")
            time.sleep(0.02)

    def start_mover(self, name: str | None = None) -> subprocess.Popen:
        name = name or f"mover{len(self.movers) + 1}"
        p = self._spawn(["mover", "--master", self.address, "--home", str(self.home), "--name", name,
                         "--threads", str(self.mover_threads), "--heartbeat", str(self.heartbeat), *self._owned],
                        f"{name}.log")
        self.movers.append(p)
        return p

    def wait_movers(self, n: int | None = None, timeout: float = 20.0) -> None:
        n = self.n_movers if n is None else n
        deadline = time.monotonic() + timeout
        with TransferClient(self.address, timeout=5, ssl=self.ssl, keys=self.keys) as c:
            while True:
                try:
                    if c.ping()["movers"] >= n:
                        return
                except TransferError:
                    pass
                if time.monotonic() > deadline:
                    raise TransferError(f"fewer than {n} movers registered after {timeout:g}s")
                time.sleep(0.05)

    def start(self) -> TransferService:
        self.start_master()
        for _ in range(self.n_movers):
            self.start_mover()
        self.wait_movers()
        return self

    def kill_master(self) -> None:
        """SIGKILL the master (fault injection)."""
        if self.master is not None:
            self.master.kill()
            self.master.wait()

    def client(self, **kwargs: Any) -> TransferClient:
        kwargs.setdefault("ssl", self.ssl)
        kwargs.setdefault("keys", self.keys)
        c = TransferClient(self.address, **kwargs)
        self._clients.append(c)
        return c

    def mover_names(self) -> list[str]:
        return [f"mover{i + 1}" for i in range(len(self.movers))]

    def close(self) -> None:
        for c in self._clients:
            c.close()
        procs = [p for p in [*self.movers, self.master] if p is not None]
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for p in procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.movers.clear()
        self.master = None

    def __enter__(self) -> TransferService:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def master_info(self) -> dict[str, Any]:
        return json.loads((self.home / "master.json").read_text())


def env_with_master(address: str) -> dict[str, str]:
    """Environment for child processes (job scripts) so a bare ``ecpds`` finds this master."""
    return {**os.environ, "ECPDS_MASTER": address}
