"""One object for a suite server's user authorisation: white list + password files, reload, log lines.

ecFlow checks every *user* request in this order (``ServerEnvironment::authenticateReadAccess`` and
``authenticateWriteAccess``): the password (``ecf.passwd`` for login names, ``ecf.custom_passwd`` for names
set with ``ECF_USER`` / ``--user`` / ``set_user_name``), then the white list for read access, then for a
changing request the white list for write access on the paths it names. Child (job) commands are not
checked here: they carry the job password, which the scheduler checks and turns into zombies.

::

    access = ServerAccess(home, host, port, server_user=getpass.getuser(), log=server_log.msg)
    ...
    access.authorize_request(user, cmd, args, passwd=sent_pw, custom=sent_custom)  # raises AccessDenied
    access.reload("white_list")   # reload_wl_file; also "passwd", "custom_passwd"
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from .errors import AccessDenied
from .passwd import PasswdFile
from .whitelist import WhiteList, whitelist_path

__all__ = ["ServerAccess", "READ_COMMANDS", "is_write_request", "request_paths"]

# Requests of the suite server protocol that only read. Anything else counts as a change, so a new
# command is protected until someone decides otherwise.
READ_COMMANDS = frozenset({
    "ping", "info", "server_version", "stats", "news", "sync", "get_defs", "suites", "check", "query",
    "why", "get_file", "ch", "status_cmd_output", "server_load", "version",
})
_READ_ACTIONS = {"log": {"get"}, "zombie": {"get", "list"}, "edit_script": {"edit", "pre_process", "preprocess"}}


def is_write_request(cmd: str, args: Mapping[str, Any] | None = None) -> bool:
    """True when request ``cmd`` (with ``args``) changes the server, as ecFlow classifies user commands."""
    if cmd in READ_COMMANDS:
        return False
    actions = _READ_ACTIONS.get(cmd)
    if actions is not None:
        a = args or {}
        action = a.get("action", a.get("mode", "get" if cmd != "edit_script" else "edit"))
        return str(action) not in actions
    return True


def request_paths(args: Mapping[str, Any] | None) -> list[str] | None:
    """The node paths a request names (``paths`` list or ``path``), or None when it names none."""
    if not args:
        return None
    found: list[str] = []
    for key in ("paths", "path"):
        value = args.get(key)
        if isinstance(value, str) and value:
            found.append(value)
        elif isinstance(value, (list, tuple)):
            found += [str(v) for v in value if v]
    return [p for p in found if p.startswith("/")] or None


class ServerAccess:
    """White list and password files of one server (``<home>/<host>.<port>.ecf.*`` or ECF_* paths).

    Missing files mean "no restriction", as when ecFlow starts. ``server_user`` (default: the login name
    of the server process) always keeps write access. ``log`` receives one line per refusal and reload.
    """

    def __init__(self, home: str | os.PathLike[str], host: str, port: int | str, *,
                 env: Mapping[str, str] | None = None, server_user: str | None = None,
                 log: Callable[[str], Any] | None = None) -> None:
        self.home = Path(home)
        self.host, self.port = host, str(port)
        self.server_user = server_user if server_user is not None else getpass.getuser()
        self.log = log or (lambda _msg: None)
        self.whitelist = WhiteList.load(whitelist_path(home, host, port, env), server_user=self.server_user)
        self.passwd = PasswdFile.for_server(home, host, port, env=env)
        self.custom_passwd = PasswdFile.for_server(home, host, port, custom=True, env=env)
        for pf in (self.passwd, self.custom_passwd):
            if pf.insecure_permissions:
                self.log(f"WAR: password file {pf.path} can be read by other users; chmod 600 it")

    def authenticate(self, user: str, passwd: str | None = None, custom: bool = False) -> None:
        """The password check of a user request; raises :class:`AccessDenied` (and logs) on failure."""
        pf = self.custom_passwd if custom else self.passwd
        port = self.port if any(e.port == self.port for e in pf.entries) else None
        if not pf.authenticate(user, passwd, port=port):
            which = "custom password file" if custom else "password file"
            self._deny(f"Authentication (user/password) failed for user {user or '<none>'} "
                       f"({which} {pf.path or '<none>'}). Please see your administrator.")

    def authorize(self, user: str, *, passwd: str | None = None, custom: bool = False,
                  paths: str | Iterable[str] | None = None, write: bool = False) -> None:
        """Password, then white-list read access, then (``write=True``) write access on ``paths``."""
        self.authenticate(user, passwd, custom)
        if isinstance(paths, str):
            paths = [paths]
        paths = list(paths) if paths is not None else None
        # write access to the paths implies read access to them (ecFlow checks both; one suffices)
        if not self.whitelist.allows(user, paths, write=write):
            self._deny_wl(user, paths, write=write)

    def authorize_request(self, user: str, cmd: str, args: Mapping[str, Any] | None = None, *,
                          passwd: str | None = None, custom: bool = False) -> bool:
        """:meth:`authorize` for a protocol request; returns whether it was treated as a write."""
        write = is_write_request(cmd, args)
        self.authorize(user, passwd=passwd, custom=custom, paths=request_paths(args), write=write)
        return write

    def reload(self, what: str) -> str:
        """``reload_wl_file`` (``"white_list"``), ``reload_passwd_file`` (``"passwd"``) or
        ``reload_custom_passwd_file`` (``"custom_passwd"``). Errors propagate; old rules stay in force."""
        target = {"white_list": self.whitelist, "wl": self.whitelist, "passwd": self.passwd,
                  "custom_passwd": self.custom_passwd}.get(what)
        if target is None:
            raise ValueError(f"reload: expected white_list, passwd or custom_passwd, got {what!r}")
        target.reload()
        self.log(f"MSG: reloaded {what} file {target.path}")
        return str(target.path)

    def _deny_wl(self, user: str, paths: list[str] | None, write: bool) -> None:
        try:
            self.whitelist.check(user, paths, write=write)
        except AccessDenied as exc:
            self._deny(str(exc))

    def _deny(self, message: str) -> None:
        self.log(f"ERR: {message}")
        raise AccessDenied(message)
