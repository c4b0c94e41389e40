"""Issue 8 on the real DAG executor: only holders of the cluster secret join; nothing else is unpickled.

A real LocalCluster (controller thread + host agent + worker processes); intruders are real processes or
real sockets that send pickles whose unpickling would create a file.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zmq

from ecflow_lab.cascade.executor import LocalCluster, wire
from ecflow_lab.cascade.graph import Graph


class _Evil:
    """Unpickling this creates the file ``path``: proof that somebody unpickled it."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(workers=1) as c:
        yield c


def _dealer(ctx: zmq.Context, address: str) -> zmq.Socket:
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(address)
    return s


def _double(x: int) -> int:
    return 2 * x


def _still_works(cluster: LocalCluster) -> None:
    g = Graph()
    t = g.add_task(_double, 21)
    g.set_outputs([t])
    assert cluster.run(g)[t] == 42


def test_agent_and_worker_without_the_secret_are_refused(cluster, tmp_path):
    before = cluster.controller.auth_failures
    secret_file = tmp_path / "wrong.secret"
    secret_file.write_text(wire.new_secret().hex())
    os.chmod(secret_file, 0o600)
    env = {k: v for k, v in os.environ.items() if k != wire.SECRET_ENV}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    agent = subprocess.Popen([sys.executable, "-m", "ecflow_lab.cascade.executor.agent", "--controller",
                              cluster.address, "--workers", "1", "--host-id", "intruder",
                              "--secret-file", str(secret_file), "--no-restart"],
                             env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        # the agent says hello at once and beats; its worker says hello once it has started
        while cluster.controller.auth_failures < before + 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert agent.poll() is None
        assert cluster.controller.auth_failures >= before + 3
        assert len(cluster.workers) == 1
        assert "intruder" not in {w["host"] for w in cluster.workers}
        assert "intruder" not in cluster.controller.agents
    finally:
        agent.terminate()
        agent.wait(15)
    _still_works(cluster)


def test_controller_never_unpickles_unauthenticated_input(cluster, tmp_path):
    evil = tmp_path / "pwned-controller"
    before = cluster.controller.auth_failures
    ctx = zmq.Context()
    try:
        s = _dealer(ctx, cluster.address)
        body = pickle.dumps(_Evil(evil))
        s.send_multipart([b"\0" * wire.MAC_SIZE, body])  # a made-up MAC
        s.send_multipart([wire.mac(b"not the secret", [body]), body])  # a MAC with another key
        s.send_multipart([body])  # no MAC at all
        s.send_multipart([wire.mac(cluster.secret, [b"x"]), body])  # a real MAC of other content (replayed)
        deadline = time.monotonic() + 10
        while cluster.controller.auth_failures < before + 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        s.close()
    finally:
        ctx.term()
    assert cluster.controller.auth_failures >= before + 4
    assert not evil.exists()
    _still_works(cluster)


def test_host_agent_data_port_never_unpickles_unauthenticated_input(cluster, tmp_path):
    """The agent's data port (serving shared-memory values to other hosts) checks the MAC first too."""
    evil = tmp_path / "pwned-agent"
    (agent,) = cluster.controller.agents.values()
    assert agent.data_addr.startswith("tcp://127.0.0.1:")  # a local cluster listens on loopback only
    ctx = zmq.Context()
    try:
        s = _dealer(ctx, agent.data_addr)
        body = pickle.dumps(_Evil(evil))
        s.send_multipart([wire.mac(b"not the secret", [body]), body])
        s.send_multipart([b"\0" * wire.MAC_SIZE, body, b"extra"])
        # then a genuine request: its answer proves the agent has read (and dropped) the messages before it
        wire.send(s, cluster.secret, ("get", "/dev/shm/not-a-dataset"))
        assert s.poll(10_000), "the agent did not answer a genuine request"
        _, reply, _ = wire.recv(s, cluster.secret)
        assert reply[0] == "error" and "no such dataset" in reply[1]
        s.close()
    finally:
        ctx.term()
    assert not evil.exists()


def test_frames_cannot_be_reshaped_under_a_valid_mac(tmp_path):
    """Moving bytes between frames keeps their concatenation: the MAC must still reject the message."""
    key = wire.new_secret()
    ctx = zmq.Context()
    try:
        a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
        a.bind("inproc://reshape")
        b.connect("inproc://reshape")
        body, buf = pickle.dumps(("data", "x")), b"0123456789" * 10
        good = [wire.mac(key, [body, buf]), body, buf]
        a.send_multipart(good)
        _, msg, bufs = wire.recv(b, key)
        assert msg == ("data", "x") and bytes(bufs[0]) == buf
        for reshaped in ([good[0], body + buf[:5], buf[5:]], [good[0], body[:-1], body[-1:] + buf],
                         [good[0], body + buf]):
            a.send_multipart(reshaped)
            with pytest.raises(wire.AuthError):
                wire.recv(b, key)
        a.close(0)
        b.close(0)
    finally:
        ctx.term()


def _echo(text: str) -> str:
    return text + "!"


@pytest.fixture
def keydir(keydir: Path, monkeypatch) -> Path:
    monkeypatch.setenv("ECFLOW_LAB_KEYS", str(keydir))   # the agents and workers inherit it
    return keydir


@pytest.mark.parametrize("backend", ["raw"])
def test_encrypted_cluster_runs_and_shows_no_values_on_the_wire(keydir, backend):
    import secrets

    from ecflow_lab.security.capture import LoopbackCapture, capture_unavailable

    reason = capture_unavailable(backend)
    if reason:
        pytest.skip(f"cannot capture loopback traffic: {reason}")
    seen = {}
    for ssl in (False, True):
        marker = f"TASK_ARG_{secrets.token_hex(6)}"
        with LocalCluster(workers=1, ssl=ssl) as cl:
            port = int(cl.address.rsplit(":", 1)[1])
            with LoopbackCapture(port, backend=backend) as cap:
                g = Graph()
                t = g.add_task(_echo, marker)
                g.set_outputs([t])
                assert cl.run(g)[t] == marker + "!"
        seen[ssl] = (marker.encode(), cap.data)
    marker, plain = seen[False]
    assert marker in plain, "with encryption off the argument must be visible (else the test proves nothing)"
    marker, secure = seen[True]
    assert secure and marker not in secure and marker[:10] not in secure


def test_encrypted_cluster_refuses_a_host_with_the_secret_but_a_wrong_key(keydir, tmp_path):
    import shutil

    from ecflow_lab.security import generate_keypair

    stranger = tmp_path / "stranger"
    generate_keypair("server", stranger)   # a complete key directory of its own...
    generate_keypair("client", stranger)
    shutil.copy(keydir / "server.key", stranger / "server.key")   # ...that trusts the real controller
    with LocalCluster(workers=1, ssl=True) as cl:
        env = {**os.environ, wire.SECRET_ENV: cl.secret.hex(), "ECF_SSL": "1", "ECFLOW_LAB_KEYS": str(stranger),
               "PYTHONPATH": os.pathsep.join(sys.path)}
        agent = subprocess.Popen([sys.executable, "-m", "ecflow_lab.cascade.executor.agent", "--controller",
                                  cl.address, "--workers", "1", "--host-id", "intruder", "--no-restart"],
                                 env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True)
        try:
            _, err = agent.communicate(timeout=40)   # it stops at once, saying why
        finally:
            if agent.poll() is None:
                agent.kill()
                agent.wait()
        assert agent.returncode == 1 and "does not accept this client's key" in err
        assert "intruder" not in cl.controller.agents and len(cl.workers) == 1
        assert cl.controller._curve.refused   # the controller saw its key and said no
        _still_works(cl)
