"""Fixtures: a real suite server process on a free port, always stopped."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ecflow_lab.client import Client
from ecflow_lab.server.app import free_port


class ServerProcess:
    """``ecflow-lab server start`` as a child process; ``restart()`` after a ``kill9()`` reuses home and port."""

    def __init__(self, home: Path, *extra: str) -> None:
        self.home = home
        self.port = free_port()
        self.extra = list(extra)
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        log = open(self.home / "server.out", "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen([sys.executable, "-m", "ecflow_lab", "server", "start", "--home",
                                      str(self.home), "--port", str(self.port), *self.extra],
                                     stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        if not Client("127.0.0.1", self.port).wait_for_server_reply(30):
            self.stop()
            raise RuntimeError(f"server did not start; see {self.home / 'server.out'}")

    def client(self) -> Client:
        return Client("127.0.0.1", self.port)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            ci = self.client()
            ci.terminate_server()
            ci.close()
            self.proc.wait(20)
        except (RuntimeError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def server_home(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    return home


@pytest.fixture
def start_server(server_home):
    started: list[ServerProcess] = []

    def start(*extra: str) -> ServerProcess:
        sp = ServerProcess(server_home, *extra)
        started.append(sp)
        return sp

    yield start
    for sp in started:
        sp.stop()
