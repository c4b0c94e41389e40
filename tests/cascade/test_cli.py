"""Multi-host form: a controller process and a host agent started from the command line."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_host_joins_controller_with_the_secret(tmp_path):
    key = tmp_path / "secret.key"
    out = subprocess.run([sys.executable, "-m", "ecflow_lab.cli", "cascade", "secret"], capture_output=True,
                         text=True, check=True).stdout.strip()  # fmt: skip
    assert len(bytes.fromhex(out)) == 32
    key.write_text(out)
    port = _free_port()
    addr = f"tcp://127.0.0.1:{port}"
    ctl = subprocess.Popen([sys.executable, "-m", "ecflow_lab.cli", "cascade", "controller", "--bind", addr,
                            "--secret-file", str(key), "--workers", "2", "--timeout", "60"],
                           stdout=subprocess.PIPE, text=True)  # fmt: skip
    host = subprocess.Popen([sys.executable, "-m", "ecflow_lab.cli", "cascade", "host", "--controller", addr,
                             "--workers", "2", "--host-id", "nodeA", "--secret-file", str(key)])  # fmt: skip
    try:
        stdout, _ = ctl.communicate(timeout=90)
        assert ctl.returncode == 0, stdout
        assert "self-test passed" in stdout and "nodeA/w0" in stdout and "nodeA/w1" in stdout
        host.wait(timeout=20)  # the controller tells its hosts to stop when it closes
    finally:
        for p in (ctl, host):
            if p.poll() is None:
                p.kill()
                p.wait()


def test_host_without_secret_refuses_to_start():
    r = subprocess.run([sys.executable, "-m", "ecflow_lab.cli", "cascade", "host", "--controller",
                        "tcp://127.0.0.1:9"], capture_output=True, text=True,
                       env={"PATH": "/usr/bin:/bin"}, timeout=60)  # fmt: skip
    assert r.returncode != 0 and "secret" in (r.stderr + r.stdout)


@pytest.mark.parametrize("cmd", [["--help"], ["bogus"]])
def test_usage(cmd):
    r = subprocess.run([sys.executable, "-m", "ecflow_lab.cli", "cascade", *cmd], capture_output=True, text=True)
    assert "ecflow-lab cascade host" in r.stdout + r.stderr
