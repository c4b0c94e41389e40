"""Differential check: our WhiteList answers like a real ecflow_server (Debian's 5.9.2) for the same files.

One real ecflow_server runs with ECF_LISTS and ECF_CUSTOM_PASSWD; for each white-list text the file is
rewritten and reloaded (``reload_wl_file``), then a set of users tries path-less reads (``stats``, and ``query``, which
ecflow_server checks without its path), reads of one node (``get_file``), writes to one suite (``suspend``/``resume``) and a path-less write
(``restart_server``). Every verdict must match :meth:`WhiteList.allows`.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import textwrap
import time

import pytest

from ecflow_lab.security import WhiteList

pytestmark = [pytest.mark.ecflow, pytest.mark.slow]

PY3 = "/usr/bin/python3"
USERS = ["ops", "viewer", "bill", "mallory", "joe", "ann", "fred"]
CASES = [
    "4.4.14\nops\n-viewer\nbill /s1\n",
    "4.4.14\nops  # comment\n-viewer\nbill /s1,/s2\n-fred /s1\n* /s2\n",
    "4.4.14\n-*\nops\n",
    "4.4.14\n*\n-viewer\n",
    "# nobody listed\n4.4.14\n",
    "4.4.14\n-* /s1\nops /s2\n",
    "4.4.14\njoe /\n-ann /,/s1\n",
    "4.4.14\nbill /s1\nbill /s2\n-bill\n-viewer /s2\n",
    "4.4.14\n-fred /s1\nfred /s2\n",
]
# (label, path or None, write)
# ecflow_server checks --query like a path-less read; --file checks read access to its node's path
PROBES = [("stats", None, False), ("query", "/s1/t", False), ("file", "/s1/t", False), ("file", "/s2/t", False),
          ("suspend", "/s1/t", True), ("suspend", "/s2/t", True), ("restart", None, True)]

DRIVER = textwrap.dedent("""
    import ecflow, json, sys
    port, lists, cases, users, probes = sys.argv[1], sys.argv[2], *map(json.loads, sys.argv[3:6])
    admin = ecflow.Client("localhost", port)
    d = ecflow.Defs()
    for s in ("s1", "s2"):
        d.add_suite(s).add_task("t")
    admin.load(d)
    out = []
    for text in cases:
        with open(lists, "w") as f:
            f.write(text)
        admin.reload_wl_file()
        row = {}
        for user in users:
            c = ecflow.Client("localhost", port)
            c.set_user_name(user)
            c.set_connection_attempts(1)
            for label, path, write in probes:
                try:
                    if label == "stats":
                        c.stats()
                    elif label == "query":
                        c.query("state", path)
                    elif label == "file":
                        try:
                            c.get_file(path, "script")
                        except RuntimeError as exc:  # no script: the request got past authentication
                            if "authentication failed" in str(exc):
                                raise
                    elif label == "suspend":
                        c.suspend(path)
                        c.resume(path)
                    elif label == "restart":
                        c.restart_server()
                    ok = True
                except RuntimeError as exc:
                    ok = False
                    if "authentication failed" not in str(exc):
                        raise
                row[f"{user} {label} {path}"] = ok
        out.append(row)
    print(json.dumps(out))
""")


def free_port() -> int:
    for _ in range(200):
        port = random.randint(20000, 40000)
        with socket.socket() as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-40000")


@pytest.fixture
def ecflow_server(tmp_path):
    if not (os.path.exists(PY3) and shutil.which("ecflow_server")):
        pytest.skip("Debian's ecflow-server and python3-ecflow are not installed")
    if subprocess.run([PY3, "-c", "import ecflow"], capture_output=True).returncode != 0:
        pytest.skip("python3-ecflow cannot be imported by /usr/bin/python3")
    port = free_port()
    custom = tmp_path / "custom_passwd"
    lines = ["4.5.0"]
    for host in sorted({"localhost", socket.gethostname()}):
        lines += [f"{u} {host} {port} pw_{u}" for u in USERS]
    custom.write_text("\n".join(lines) + "\n")
    custom.chmod(0o600)
    lists = tmp_path / "ecf.lists"
    lists.write_text("4.4.14\n")
    env = dict(os.environ, ECF_HOME=str(tmp_path), ECF_PORT=str(port), ECF_LISTS=str(lists),
               ECF_CUSTOM_PASSWD=str(custom))
    env.pop("ECF_SSL", None)
    proc = subprocess.Popen(["ecflow_server"], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None:
                pytest.fail(f"ecflow_server exited with {proc.returncode}")
            time.sleep(0.1)
        yield port, lists, env
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_whitelist_agrees_with_ecflow_server(ecflow_server):
    port, lists, env = ecflow_server
    res = subprocess.run([PY3, "-c", DRIVER, str(port), str(lists), json.dumps(CASES), json.dumps(USERS),
                          json.dumps(PROBES)], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    upstream = json.loads(res.stdout.strip().splitlines()[-1])
    mismatches = []
    for text, row in zip(CASES, upstream):
        ours = WhiteList.parse(text, server_user="root")
        for user in USERS:
            for label, path, write in PROBES:
                expected = row[f"{user} {label} {path}"]
                if ours.allows(user, None if label == "query" else path, write=write) != expected:
                    mismatches.append(f"{text!r}: {user} {label} {path} ecflow={expected}")
    assert not mismatches, "\n".join(mismatches)
    assert any(not v for row in upstream for v in row.values())  # the server really refused some
