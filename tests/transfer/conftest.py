"""Fixtures for the transfer tests: a real master + two real movers, and a real OpenSSH server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ecflow_lab.transfer import TransferService
from ecflow_lab.transfer.service import free_port


@pytest.fixture
def service(tmp_path: Path):
    """Master + 2 movers as subprocesses (fast heartbeats so fault tests are quick)."""
    svc = TransferService(tmp_path / "home", movers=2, mover_timeout=1.5, heartbeat=0.2,
                          master_args=["--fetch-retry-delay", "0.3", "--housekeeping-interval", "0.5"])
    with svc:
        yield svc


@pytest.fixture
def client(service: TransferService):
    with service.client(timeout=15) as c:
        yield c


@pytest.fixture
def outdir(tmp_path: Path) -> Path:
    d = tmp_path / "out"
    d.mkdir()
    return d


@pytest.fixture
def ecpds(service: TransferService):
    """``ecpds(*args, input=None)``: run the real ``ecpds`` command line against ``service``."""

    def run(*args: str, input: bytes | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        env = {**os.environ, "ECPDS_MASTER": service.address}
        return subprocess.run([sys.executable, "-m", "ecflow_lab", "ecpds", *args], input=input,
                              capture_output=True, env=env, timeout=timeout)

    return run


@pytest.fixture
def sshd(tmp_path: Path):
    """A real /usr/sbin/sshd on 127.0.0.1 with its own host key, config and a generated authorized key."""
    sshd_bin = shutil.which("sshd") or "/usr/sbin/sshd"
    if not os.path.exists(sshd_bin) or not shutil.which("ssh-keygen"):
        pytest.skip("OpenSSH server (sshd, ssh-keygen) not installed")
    d = tmp_path / "sshd"
    d.mkdir()
    for name in ("host_key", "user_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True)
    (d / "authorized_keys").write_text((d / "user_key.pub").read_text())
    os.chmod(d / "authorized_keys", 0o600)
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege-separation dir sshd needs as root
    port = free_port()
    config = d / "sshd_config"
    config.write_text(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {d / 'host_key'}
PidFile {d / 'sshd.pid'}
AuthorizedKeysFile {d / 'authorized_keys'}
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
Subsystem sftp internal-sftp
LogLevel VERBOSE
""")
    log = open(d / "sshd.log", "wb")
    proc = subprocess.Popen([sshd_bin, "-f", str(config), "-D", "-e"], stdout=log, stderr=subprocess.STDOUT)
    try:
        import socket

        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {(d / 'sshd.log').read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        import getpass

        yield {"port": port, "user": getpass.getuser(), "key": str(d / "user_key"), "dir": d}
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
