"""Data users: hashed passwords, per-destination permission, -user/-pass on the command line."""

from __future__ import annotations

import sqlite3

import pytest

from ecflow_lab.transfer import TransferClient, TransferError


def test_users_passwords_and_destination_permissions(service, client, outdir, tmp_path, ecpds):
    client.add_destination("public", f"file://{outdir}/public")
    client.add_destination("secret", f"file://{outdir}/secret")
    with pytest.raises(TransferError, match="first data user must be an administrator"):
        client.add_user("bob", "bobpass", ["public"])
    client.add_user("admin", "s3cret!", admin=True)
    # from now on anonymous requests are refused
    with pytest.raises(TransferError, match="authentication required"):
        client.push(b"x", "public", "x.bin")
    with TransferClient(service.address, user="admin", password="s3cret!", timeout=10) as admin:
        admin.add_user("bob", "bobpass", ["public"])
    with TransferClient(service.address, user="bob", password="wrong", timeout=10) as bad:
        with pytest.raises(TransferError, match="authentication failed for user 'bob'"):
            bad.destinations()
    with TransferClient(service.address, user="bob", password="bobpass", timeout=10) as bob:
        dfid = bob.push(b"hello", "public", "h.txt")
        assert bob.wait(dfid, timeout=30)["data_file"]["user"] == "bob"
        with pytest.raises(TransferError, match="may not use destination 'secret'"):
            bob.push(b"no", "secret", "n.txt")
        with pytest.raises(TransferError, match="not an administrator"):
            bob.add_destination("mine", f"file://{outdir}/mine")
    r = ecpds("-user", "bob", "-pass", "bobpass", "-destination", "public", "-target", "cli.txt", input=b"cli")
    assert r.returncode == 0, r.stderr
    r = ecpds("-user", "bob", "-pass", "nope", "-destination", "public", "-target", "cli2.txt", input=b"cli")
    assert r.returncode == 255 and "authentication failed" in r.stderr.decode()
    # passwords are stored salted and hashed, never in clear
    db = sqlite3.connect(service.home / "ecpds.db")
    rows = db.execute("SELECT name, salt, hash FROM users").fetchall()
    db.close()
    assert {r[0] for r in rows} == {"admin", "bob"}
    assert all(b"bobpass" not in r[2] and len(r[1]) == 16 for r in rows)
