"""ecFlow's white-list file (``<host>.<port>.ecf.lists`` or ``ECF_LISTS``): who may read or change what.

The format (ecFlow 4.4.5 onwards, ``#include`` since 5.16)::

    4.4.14                 # version: the first line that is not a comment
    uid1                   # read/write access to every suite
    -uid3                  # read-only access to every suite
    *                      # every user has read/write access
    -*                     # every user has read access
    user1 /a,/b            # read/write access to suites /a and /b (and everything below them)
    -user5 /a              # read access to /a only
    * /x,/y                # every user has read/write access to /x and /y
    #include <other.lists> # the users of another file (relative to this file's folder)

Semantics follow ecFlow's ``WhiteListFile``: a missing file, or one with only the version line, lets every
user read and write; a user with write access may also read; a request that names several paths must be
allowed on all of them; a path ``/a`` covers ``/a/b`` but not ``/ab``; a read request that names no path
only needs the user to be listed; a write request that names no path (``delete_all``, ``shutdown``...)
needs unrestricted write access. Repeated entries for one user add up.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import AccessDenied, SecurityFileError

__all__ = ["WhiteList", "whitelist_path"]

_INCLUDE = re.compile(r"^\s*#include\s*<([^>]*)>\s*(#.*)?$")
_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
_MIN_VERSION = (4, 4, 5)
ALL = None  # marker: no path restriction


def whitelist_path(home: str | os.PathLike[str], host: str, port: int | str,
                   env: Mapping[str, str] | None = None) -> Path:
    """Where a server on ``host:port`` with ``ECF_HOME=home`` finds its white list (ecFlow's rules).

    ``ECF_LISTS`` unset or ``ecf.lists`` gives ``<home>/<host>.<port>.ecf.lists``; another relative
    value is taken relative to ``home``; an absolute path is used as it is.
    """
    env = os.environ if env is None else env
    name = env.get("ECF_LISTS") or "ecf.lists"
    if name == "ecf.lists":
        name = f"{host}.{port}.ecf.lists"
    p = Path(name).expanduser()
    return p if p.is_absolute() else Path(home) / p


@dataclass
class _Rules:
    """The parsed content of a white list; replaced as a whole on reload."""

    all_read: bool = False
    all_write: bool = False
    # user (or "*") -> allowed path prefixes; None means every path
    read: dict[str, set[str] | None] = field(default_factory=dict)
    write: dict[str, set[str] | None] = field(default_factory=dict)

    @property
    def open(self) -> bool:
        return not (self.all_read or self.all_write or self.read or self.write)


def _add(table: dict[str, set[str] | None], user: str, paths: set[str] | None) -> None:
    if paths is None or table.get(user, set()) is None:
        table[user] = None
    else:
        table.setdefault(user, set()).update(paths)  # type: ignore[union-attr]


def _covered(path: str, allowed: set[str] | None) -> bool:
    if allowed is None:
        return True
    for prefix in allowed:
        if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
            return True
    return False


def _lookup(table: dict[str, set[str] | None], user: str, paths: Sequence[str] | None) -> bool:
    """True when ``user`` (or ``*``) has an entry in ``table`` covering every one of ``paths``."""
    for who in (user, "*"):
        if who not in table:
            continue
        allowed = table[who]
        if paths is None:
            if allowed is None:
                return True
            continue
        if paths and all(_covered(p, allowed) for p in paths):
            return True
    return False


class WhiteList:
    """An ecFlow white list: ``allows(user, path, write)`` answers, ``reload()`` re-reads the file.

    Build with :meth:`load` (a file; missing means everybody is allowed), :meth:`parse` (text) or
    :meth:`for_server` (ECF_LISTS resolution). ``server_user`` always keeps write access, as in ecFlow,
    so that the server's owner can never lock themselves out of ``reload_wl_file``.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, server_user: str | None = None) -> None:
        self.path: Path | None = Path(path) if path is not None else None
        self.server_user = server_user
        self._rules = _Rules()
        self._lock = threading.Lock()
        self.loaded_from_file = False

    # ------------------------------------------------------------------ construction
    @classmethod
    def load(cls, path: str | os.PathLike[str], *, server_user: str | None = None,
             missing_ok: bool = True) -> WhiteList:
        """Read ``path``. A missing file lets everybody in (ecFlow's start-up rule) unless ``missing_ok=False``."""
        wl = cls(path, server_user=server_user)
        if Path(path).exists() or not missing_ok:
            wl.reload()
        return wl

    @classmethod
    def parse(cls, text: str, source: str = "<string>", *, server_user: str | None = None,
              base_dir: str | os.PathLike[str] | None = None) -> WhiteList:
        """Parse white-list ``text``; ``source`` names it in errors, ``base_dir`` resolves ``#include``."""
        wl = cls(None, server_user=server_user)
        rules = _Parser(source, Path(base_dir) if base_dir else Path.cwd()).parse_text(text)
        wl._install(rules)
        return wl

    @classmethod
    def for_server(cls, home: str | os.PathLike[str], host: str, port: int | str, *,
                   env: Mapping[str, str] | None = None, server_user: str | None = None) -> WhiteList:
        """The white list of a server on ``host:port`` whose ``ECF_HOME`` is ``home`` (honours ECF_LISTS)."""
        return cls.load(whitelist_path(home, host, port, env), server_user=server_user)

    def reload(self) -> None:
        """Re-read the file (``reload_wl_file``). On any error the previous rules stay in force.

        Raises ``FileNotFoundError`` when the file does not exist (ecFlow refuses such a reload) and
        :class:`SecurityFileError` naming file and line when it cannot be parsed.
        """
        if self.path is None:
            raise FileNotFoundError("this white list was not read from a file, there is nothing to reload")
        if not self.path.exists():
            raise FileNotFoundError(f"The ECF_LISTS file {self.path} does not exist")
        rules = _Parser(str(self.path), self.path.parent).parse_file(self.path)
        self._install(rules)
        self.loaded_from_file = True

    def _install(self, rules: _Rules) -> None:
        if self.server_user and not rules.open and not rules.all_write:
            _add(rules.write, self.server_user, None)
        with self._lock:
            self._rules = rules

    # ------------------------------------------------------------------ queries
    @property
    def everybody_allowed(self) -> bool:
        """True when no user is restricted (no file, or a file with only its version line)."""
        return self._rules.open

    def allows(self, user: str, path: str | Iterable[str] | None = None, write: bool = False) -> bool:
        """May ``user`` read (or, with ``write=True``, change) ``path`` (one node path or several)?"""
        rules = self._rules
        if rules.open:
            return True
        paths: list[str] | None
        if path is None:
            paths = None
        elif isinstance(path, str):
            paths = [path]
        else:
            paths = list(path) or None  # an empty list names no path
        if write:
            if rules.all_write:
                return True
            return _lookup(rules.write, user, paths)
        if rules.all_read or rules.all_write:
            return True
        if paths is None:  # ecFlow: a read that names no path only needs the user to be listed
            return any(who in table for table in (rules.read, rules.write) for who in (user, "*"))
        return _lookup(rules.read, user, paths) or _lookup(rules.write, user, paths)

    def check(self, user: str, path: str | Iterable[str] | None = None, write: bool = False) -> None:
        """Raise :class:`AccessDenied` with a message a user can act on when :meth:`allows` says no."""
        if self.allows(user, path, write):
            return
        kind = "write" if write else "read"
        if path is None:
            target = "this server"
        elif isinstance(path, str):
            target = path
        else:
            target = ", ".join(path)
        source = f" (white list {self.path})" if self.path else ""
        raise AccessDenied(f"User {user} has no {kind} access to {target}{source}. Please see your administrator.")

    def users(self) -> dict[str, str]:
        """``{user: "read" | "write"}`` for every named user (``*`` included), for reports and tests."""
        rules = self._rules
        out = {u: "read" for u in rules.read}
        out.update({u: "write" for u in rules.write})
        return out

    def dump(self) -> str:
        """A readable summary like ecFlow's ``dump_valid_users`` (for ``server --stats`` and logs)."""
        rules = self._rules
        lines = [f"ECF_LISTS = '{self.path or '<none>'}'"]
        if rules.open:
            lines.append(" No users specified. Everyone has read/write access")
        if rules.all_read:
            lines.append(" All users have read access")
        if rules.all_write:
            lines.append(" All users have write access")
        for table, what in ((rules.read, "read"), (rules.write, "read/write")):
            for user in sorted(table):
                paths = table[user]
                where = "" if paths is None else " " + ",".join(sorted(paths))
                lines.append(f" User: {user}{where} has {what} access")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"WhiteList(path={str(self.path) if self.path else None!r}, users={self.users()!r})"


class _Parser:
    """Turns white-list text (with includes) into :class:`_Rules`, raising errors with file and line."""

    def __init__(self, source: str, base_dir: Path) -> None:
        self.source = source
        self.base_dir = base_dir
        self.rules = _Rules()
        self.version_seen = False
        self._stack: list[Path] = []

    def parse_file(self, path: Path) -> _Rules:
        self._lines_of(path, top=True)
        return self._finish()

    def parse_text(self, text: str) -> _Rules:
        self._feed(text.splitlines(), self.source, self.base_dir, top=True)
        return self._finish()

    def _finish(self) -> _Rules:
        return self.rules

    def _lines_of(self, path: Path, *, top: bool, origin: tuple[str, int] | None = None) -> None:
        real = path.resolve()
        if real in self._stack:
            chain = " -> ".join(str(p) for p in [*self._stack, real])
            assert origin is not None
            raise SecurityFileError(origin[0], origin[1], "no #include cycle", chain)
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            if origin is None:
                raise
            raise SecurityFileError(origin[0], origin[1], "a readable file to #include",
                                    f"{path} ({exc.strerror})") from None
        self._stack.append(real)
        try:
            self._feed(text.splitlines(), str(path), path.parent, top=top)
        finally:
            self._stack.pop()

    def _feed(self, lines: list[str], source: str, base: Path, *, top: bool) -> None:
        first_in_file = True
        for lineno, raw in enumerate(lines, start=1):
            m = _INCLUDE.match(raw)
            if m:
                target = Path(os.path.expandvars(m.group(1).strip())).expanduser()
                if not target.is_absolute():
                    target = base / target
                if not target.exists():
                    raise SecurityFileError(source, lineno, "an existing file to #include", str(target))
                self._lines_of(target, top=False, origin=(source, lineno))
                continue
            text = raw.split("#", 1)[0].strip()
            if not text:
                continue
            tokens = text.split()
            if not self.version_seen:
                self._version(tokens, source, lineno, raw)
                first_in_file = False
                continue
            if first_in_file and not top and len(tokens) == 1 and _VERSION.match(tokens[0]):
                first_in_file = False  # an included file may carry its own version line
                continue
            first_in_file = False
            self._user(tokens, source, lineno, raw)

    def _version(self, tokens: list[str], source: str, lineno: int, raw: str) -> None:
        m = _VERSION.match(tokens[0])
        if not m or len(tokens) != 1:
            raise SecurityFileError(source, lineno,
                                    "the version number (such as 4.4.14) before the first user",
                                    raw.strip())
        if tuple(int(g) for g in m.groups()) < _MIN_VERSION:
            raise SecurityFileError(source, lineno, "a white-list version of 4.4.5 or later", raw.strip())
        self.version_seen = True

    def _user(self, tokens: list[str], source: str, lineno: int, raw: str) -> None:
        rules = self.rules
        user: str | None = None
        read_only = False
        paths: set[str] = set()
        for tok in tokens:
            if tok.startswith("/"):
                for part in tok.split(","):
                    if not part:
                        continue
                    if not part.startswith("/"):
                        raise SecurityFileError(source, lineno, "suite paths that start with '/'", part)
                    paths.add(part if part == "/" else part.rstrip("/"))
                continue
            name = tok
            if name.startswith("-"):
                read_only = True
                name = name[1:]
                if not name:
                    raise SecurityFileError(source, lineno, "a user name after '-'", raw.strip())
            if name.startswith("/"):
                raise SecurityFileError(source, lineno, "a user name before the suite paths", raw.strip())
            if user is not None:
                raise SecurityFileError(source, lineno, "one user per line", f"{user} and {name}")
            if "," in name:
                raise SecurityFileError(source, lineno, "one user per line (paths start with '/')", name)
            user = name
        if user is None:
            raise SecurityFileError(source, lineno, "a user name before the suite paths", raw.strip())
        allowed: set[str] | None = None if (not paths or "/" in paths) else paths
        if user == "*" and allowed is None:
            if read_only:
                rules.all_read = True
                rules.read.clear()
            else:
                rules.all_read = rules.all_write = True
                rules.read.clear()
                rules.write.clear()
            return
        if read_only:
            if not rules.all_read:
                _add(rules.read, user, allowed)
        elif not rules.all_write:
            _add(rules.write, user, allowed)
