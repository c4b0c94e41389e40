"""ecFlow password files (ecf.passwd / ecf.custom_passwd) and the scrypt hashes of data users."""

from __future__ import annotations

import stat

import pytest

from ecflow_lab.security import (
    PasswdFile,
    SecurityFileError,
    client_password,
    generate_password,
    hash_password,
    job_password_ok,
    passwd_path,
    verify_password,
)

TEXT = """\
# ecFlow password file
4.5.0
# user host      port passwd
fred   machine1  3141 fredpw1   # comment
fred   localhost 3141 fredpw1
bill   machine1  3141 billpw
fred   machine1  4000 other4000
"""


@pytest.fixture
def pf(tmp_path):
    f = tmp_path / "machine1.3141.ecf.passwd"
    f.write_text(TEXT)
    f.chmod(0o600)
    return PasswdFile.load(f)


def test_client_lookup(pf):
    assert pf.password_for("fred", "machine1", 3141) == "fredpw1"
    assert pf.password_for("fred", "machine1", "4000") == "other4000"
    assert pf.password_for("bill", "machine1", 3141) == "billpw"
    assert pf.password_for("bill", "machine2", 3141) is None
    assert pf.password_for("nobody", "machine1", 3141) is None
    # localhost and 127.0.0.1 name the same machine
    assert pf.password_for("fred", "127.0.0.1", 3141) == "fredpw1"
    assert pf.has_host_port("machine1", 3141) and not pf.has_host_port("machine9", 3141)


def test_server_authenticate_follows_ecflow(pf):
    assert pf.authenticate("fred", "fredpw1")
    assert not pf.authenticate("fred", "wrong")
    assert not pf.authenticate("fred", "")  # listed users must send their password
    assert not pf.authenticate("fred", "fredpw")  # a prefix is not the password
    assert not pf.authenticate("", "fredpw1")
    assert not pf.authenticate("stranger", "")  # not listed, file not empty: refused
    assert not pf.authenticate("stranger", "guess")
    # per port: fred's password on port 4000 differs
    assert pf.authenticate("fred", "other4000", port=4000)
    assert not pf.authenticate("fred", "fredpw1", port=4000)


def test_empty_file_lets_users_without_password_in():
    empty = PasswdFile.parse("4.5.0\n")
    assert empty.authenticate("anyone", "")
    assert not empty.authenticate("anyone", "something")
    assert not empty.authenticate("", "")


@pytest.mark.parametrize(
    ("text", "line", "expected"),
    [
        ("fred machine1 3141 pw\n", 1, "version number"),
        ("4.5.0\nfred machine1 3141\n", 2, "<user> <host> <port> <passwd>"),
        ("4.5.0\nfred machine1 31x1 pw\n", 2, "integer port"),
        ("4.5.0\nfred m 3141 a\nfred m 3141 b\n", 3, "only once for m:3141 (first at line 2)"),
        ("4.4.0\nfred m 1 a\n", 1, "4.5.0 or later"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path, text, line, expected):
    f = tmp_path / "bad.ecf.passwd"
    f.write_text(text)
    with pytest.raises(SecurityFileError) as info:
        PasswdFile.load(f)
    assert info.value.file == str(f) and info.value.line == line
    assert expected in str(info.value)
    assert str(info.value).startswith(f"{f}:{line}: expected")


def test_errors_never_echo_passwords(tmp_path):
    f = tmp_path / "p"
    f.write_text("4.5.0\nfred machine1 3141 s3cr3tpw extra\n")
    with pytest.raises(SecurityFileError) as info:
        PasswdFile.load(f)
    assert "s3cr3tpw" not in str(info.value)
    pf = PasswdFile.parse("4.5.0\nfred m 1 s3cr3tpw\n")
    assert "s3cr3tpw" not in repr(pf.entries)


def test_reload_and_write(tmp_path):
    f = tmp_path / "h.1.ecf.custom_passwd"
    pf = PasswdFile(f)
    pf.add("ops", "h", 1, "first")
    pf.write()
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert f.read_text().splitlines()[0] == "4.5.0"
    loaded = PasswdFile.load(f)
    assert loaded.authenticate("ops", "first") and not loaded.insecure_permissions
    pf.add("ops", "h", 1, "second")  # replaces
    pf.write()
    loaded.reload()
    assert loaded.authenticate("ops", "second") and not loaded.authenticate("ops", "first")
    f.write_text("4.5.0\nops h\n")
    with pytest.raises(SecurityFileError):
        loaded.reload()
    assert loaded.authenticate("ops", "second")  # previous entries kept on error
    f.chmod(0o644)
    f.write_text("4.5.0\nops h 1 third\n")
    loaded.reload()
    assert loaded.insecure_permissions  # the server should log a warning for such a file
    with pytest.raises(ValueError):
        pf.add("bad user", "h", 1, "x")


def test_paths_and_client_lookup(tmp_path):
    assert passwd_path(tmp_path, "h", 2, env={}) == tmp_path / "h.2.ecf.passwd"
    assert passwd_path(tmp_path, "h", 2, custom=True, env={}) == tmp_path / "h.2.ecf.custom_passwd"
    assert passwd_path(tmp_path, "h", 2, env={"ECF_PASSWD": "/x/p"}).as_posix() == "/x/p"
    custom = tmp_path / "mine.custom"
    custom.write_text("4.5.0\nscientist localhost 3141 sciPW\n")
    env = {"ECF_CUSTOM_PASSWD": str(custom)}
    assert client_password("scientist", "localhost", 3141, custom=True, env=env) == "sciPW"
    assert client_password("scientist", "localhost", 3141, custom=False, env=env, home=tmp_path) is None
    missing = PasswdFile.for_server(tmp_path, "h", 9, env={})
    assert len(missing) == 0 and missing.authenticate("anyone", "")


def test_hash_and_verify_password():
    stored = hash_password("correct horse")
    assert stored.startswith("scrypt$n=16384,r=8,p=1$")
    assert "correct horse" not in stored
    assert verify_password("correct horse", stored)
    assert not verify_password("correct hors", stored)
    assert not verify_password("", stored)
    assert hash_password("correct horse") != stored  # salted
    cheap = hash_password("pw", n=2**10)
    assert verify_password("pw", cheap) and cheap.startswith("scrypt$n=1024,")
    with pytest.raises(ValueError, match="not an ecflow_lab scrypt hash"):
        verify_password("pw", "plaintext-from-an-old-db")


def test_generate_password():
    a, b = generate_password(), generate_password()
    assert len(a) == 8 and a.isalnum() and a != b


def test_job_password_check():
    assert job_password_ok("Ab3dEf7h", "Ab3dEf7h")
    assert not job_password_ok("Ab3dEf7h", "Ab3dEf7")
    assert not job_password_ok("Ab3dEf7h", None)
    assert job_password_ok("FREE", "anything")  # ECF_PASS=FREE on the task bypasses the check
    assert not job_password_ok("", "")  # a task never submitted has no valid password
