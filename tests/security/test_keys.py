"""CurveZMQ keys: ``ecflow-lab keys`` CLI, file permissions, loading, refusing to overwrite."""

from __future__ import annotations

import getpass
import os
import stat
import subprocess
import sys

import pytest
import zmq.auth

from ecflow_lab.security import (
    KeyFileError,
    authorize_client,
    authorized_client_keys,
    generate_keypair,
    keys_dir,
    load_keypair,
    load_public,
)
from ecflow_lab.security.keys import main


def mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def test_cli_generate_makes_private_files(tmp_path, capsys):
    d = tmp_path / "home" / "keys"
    assert main(["generate", "--dir", str(d)]) == 0
    assert mode(d) == 0o700
    for name in ("server", "client"):
        assert mode(d / f"{name}.key_secret") == 0o600
        assert (d / f"{name}.key").exists()
        pub, sec = zmq.auth.load_certificate(d / f"{name}.key_secret")  # ZeroMQ's own reader agrees
        assert pub == load_public(name, d) and sec == load_keypair(name, d).secret
    out = capsys.readouterr().out
    assert "0600" in out and load_public("server", d).decode() in out


def test_cli_never_overwrites_without_force(tmp_path, capsys):
    d = tmp_path / "k"
    assert main(["generate", "--dir", str(d), "--name", "server"]) == 0
    before = (d / "server.key_secret").read_bytes()
    assert main(["generate", "--dir", str(d), "--name", "server"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert (d / "server.key_secret").read_bytes() == before
    assert main(["generate", "--dir", str(d), "--name", "server", "--force"]) == 0
    assert (d / "server.key_secret").read_bytes() != before
    assert mode(d / "server.key_secret") == 0o600


def test_directory_from_env_and_tightened_permissions(tmp_path, monkeypatch):
    d = tmp_path / "envkeys"
    d.mkdir(mode=0o755)
    os.chmod(d, 0o755)
    monkeypatch.setenv("ECFLOW_LAB_KEYS", str(d))
    assert keys_dir() == d
    kp = generate_keypair("client")
    assert kp.secret_file == d / "client.key_secret"
    assert mode(d) == 0o700  # a pre-existing open directory is closed
    monkeypatch.delenv("ECFLOW_LAB_KEYS")
    assert keys_dir() == keys_dir("~/.ecflow_lab/keys")


def test_console_command(tmp_path):
    d = tmp_path / "viacli"
    res = subprocess.run([sys.executable, "-m", "ecflow_lab", "keys", "generate", "--dir", str(d), "--name", "h.3141"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert mode(d / "h.3141.key_secret") == 0o600


def test_loading_refuses_open_secret_files_and_bad_content(tmp_path):
    kp = generate_keypair("server", tmp_path)
    assert repr(kp).count(kp.secret.decode()) == 0  # never in logs
    os.chmod(kp.secret_file, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_keypair("server", tmp_path)
    os.chmod(kp.secret_file, 0o600)
    assert load_keypair("server", tmp_path).public == kp.public
    with pytest.raises(KeyFileError, match="ecflow-lab keys generate"):
        load_keypair("nothere", tmp_path)
    bad = tmp_path / "broken.key"
    bad.write_text('curve\n    public-key = "tooshort"\n')
    with pytest.raises(KeyFileError) as info:
        load_public(bad)
    assert info.value.line == 2 and "40-character" in str(info.value)
    with pytest.raises(ValueError):
        generate_keypair("../escape", tmp_path)


def test_authorized_clients(tmp_path):
    mine = tmp_path / "mine"
    alice_dir = tmp_path / "alice"
    generate_keypair("client", mine)
    alice = generate_keypair("client", alice_dir)
    keys = authorized_client_keys(mine)
    assert list(keys.values()) == [getpass.getuser()]  # own key: the login name
    dest = authorize_client(alice.public_file, mine, name="alice")
    assert dest.parent.name == "authorized_clients"
    keys = authorized_client_keys(mine)
    assert keys[alice.public] == "alice" and len(keys) == 2
    with pytest.raises(KeyFileError, match="public key file"):
        authorize_client(alice.secret_file, mine)
