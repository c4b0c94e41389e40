"""SFTP deliveries to a real OpenSSH server started by the test on 127.0.0.1."""

from __future__ import annotations

import hashlib
import os
import time


def test_sftp_delivery_lands_on_real_sshd(service, client, sshd, tmp_path):
    remote = tmp_path / "remote"
    url = f"sftp://{sshd['user']}@127.0.0.1:{sshd['port']}{remote}"
    client.add_destination("ssh", url, key_file=sshd["key"], max_connections=2)
    payloads = {}
    for i in range(4):
        p = tmp_path / f"obs{i}.bufr"
        p.write_bytes(os.urandom(200_000 * (i + 1)))
        payloads[client.push(p, "ssh", f"incoming/obs{i}.bufr")] = p
    for dfid, p in payloads.items():
        st = client.wait(dfid, timeout=60)
        t = st["transfers"][0]
        assert t["status"] == "Done", t["history"]
        out = remote / "incoming" / p.name
        assert hashlib.sha256(out.read_bytes()).hexdigest() == hashlib.sha256(p.read_bytes()).hexdigest()
    assert not [q for q in (remote / "incoming").iterdir() if q.name.endswith(".part")]
    # the server really served it: sshd logged our key's logins
    assert "Accepted publickey" in (sshd["dir"] / "sshd.log").read_text()
    # the password / key options never come back to clients
    (d,) = client.destinations()
    assert "password" not in d["options"] and d["counts"] == {"Done": 4}


def test_sftp_unreachable_host_retries_then_fails(service, client, sshd, tmp_path):
    from ecflow_lab.transfer.service import free_port

    url = f"sftp://{sshd['user']}@127.0.0.1:{free_port()}/tmp/x"
    client.add_destination("down", url, key_file=sshd["key"], retry_count=1, retry_frequency="100z", timeout="2s")
    dfid = client.push(b"abc", "down", "x.bin")
    t0 = time.monotonic()
    t = client.wait(dfid, timeout=60)["transfers"][0]
    assert t["status"] == "Failed" and "sftp connect" in t["error"]
    assert time.monotonic() - t0 < 30
