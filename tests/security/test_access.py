"""A suite server's user checks: password files, then white list, with reload and log lines."""

from __future__ import annotations

import pytest

from ecflow_lab.security import AccessDenied, ServerAccess, is_write_request, request_paths


@pytest.fixture
def home(tmp_path):
    (tmp_path / "h.3141.ecf.lists").write_text("4.4.14\nops\n-viewer\nbill /s1\n")
    return tmp_path


def test_read_only_user_can_get_but_not_alter_or_delete(home):
    lines: list[str] = []
    acc = ServerAccess(home, "h", 3141, env={}, server_user="owner", log=lines.append)
    assert acc.authorize_request("viewer", "get_defs", {}) is False
    acc.authorize_request("viewer", "query", {"path": "/s1/t"})
    with pytest.raises(AccessDenied, match="viewer has no write access to /s1/t"):
        acc.authorize_request("viewer", "alter", {"paths": ["/s1/t"], "name": "X", "value": "1"})
    with pytest.raises(AccessDenied):
        acc.authorize_request("viewer", "delete", {"paths": ["/s1"]})
    with pytest.raises(AccessDenied):
        acc.authorize_request("viewer", "delete", {"all": True})
    assert lines[-1].startswith("ERR: User viewer has no write access")
    assert acc.authorize_request("ops", "delete", {"all": True}) is True
    acc.authorize_request("owner", "terminate", {})  # the server's own user always keeps write access


def test_unlisted_user_is_refused_everything(home):
    acc = ServerAccess(home, "h", 3141, env={}, server_user="owner")
    for cmd, args in (("get_defs", {}), ("news", {}), ("suspend", {"paths": ["/s1"]})):
        with pytest.raises(AccessDenied, match="mallory"):
            acc.authorize_request("mallory", cmd, args)


def test_per_suite_user(home):
    acc = ServerAccess(home, "h", 3141, env={}, server_user="owner")
    acc.authorize_request("bill", "requeue", {"paths": ["/s1/f/t"]})
    with pytest.raises(AccessDenied):
        acc.authorize_request("bill", "requeue", {"paths": ["/s1/f/t", "/s2"]})
    with pytest.raises(AccessDenied):
        acc.authorize_request("bill", "server_state", {"state": "HALTED"})


def test_passwords_then_whitelist_and_reload(home):
    (home / "h.3141.ecf.passwd").write_text("4.5.0\nops h 3141 opsPW\n")
    (home / "h.3141.ecf.custom_passwd").write_text("4.5.0\nrobot h 3141 robotPW\n")
    lines: list[str] = []
    acc = ServerAccess(home, "h", 3141, env={}, server_user="owner", log=lines.append)
    acc.authorize_request("ops", "delete", {"all": True}, passwd="opsPW")
    with pytest.raises(AccessDenied, match="Authentication .* failed for user ops"):
        acc.authorize_request("ops", "get_defs", {}, passwd="nope")
    with pytest.raises(AccessDenied, match="custom password file"):
        acc.authorize_request("robot", "get_defs", {}, passwd="bad", custom=True)
    # robot proves its password but is not on the white list
    with pytest.raises(AccessDenied, match="User robot has no read access"):
        acc.authorize_request("robot", "get_defs", {}, passwd="robotPW", custom=True)
    (home / "h.3141.ecf.lists").write_text("4.4.14\nops\n-robot\n")
    acc.reload("white_list")
    acc.authorize_request("robot", "get_defs", {}, passwd="robotPW", custom=True)
    (home / "h.3141.ecf.passwd").write_text("4.5.0\nops h 3141 newPW\n")
    acc.reload("passwd")
    with pytest.raises(AccessDenied):
        acc.authorize_request("ops", "get_defs", {}, passwd="opsPW")
    assert any(line.startswith("MSG: reloaded passwd file") for line in lines)
    with pytest.raises(ValueError):
        acc.reload("nonsense")


def test_no_files_means_everybody(tmp_path):
    acc = ServerAccess(tmp_path, "h", 1, env={}, server_user="owner")
    acc.authorize_request("anyone", "delete", {"all": True})
    with pytest.raises(FileNotFoundError):
        acc.reload("white_list")  # ecFlow: reloading a file that does not exist is an error


def test_request_classification():
    assert not is_write_request("get_defs")
    assert not is_write_request("log", {"action": "get"})
    assert is_write_request("log", {"action": "clear"})
    assert not is_write_request("zombie", {"action": "get"})
    assert is_write_request("zombie", {"action": "fob"})
    assert not is_write_request("edit_script", {"mode": "edit"})
    assert is_write_request("edit_script", {"mode": "submit"})
    assert is_write_request("some_new_command")  # unknown requests are protected
    assert request_paths({"paths": ["/a", "/b"]}) == ["/a", "/b"]
    assert request_paths({"path": "/a/b"}) == ["/a/b"]
    assert request_paths({"all": True}) is None
