"""ecFlow's password files, and salted password hashes for the transfer service's data users.

``<host>.<port>.ecf.passwd`` (``ECF_PASSWD``) and ``<host>.<port>.ecf.custom_passwd``
(``ECF_CUSTOM_PASSWD``, for names set with ``ECF_USER`` / ``--user`` / ``set_user_name``) share one
format::

    4.5.0                          # version: the first line that is not a comment
    # user  host      port  passwd
    fred    machine1  3141  xxyyzz # comment
    fred    localhost 3141  xxyyzz

The client looks up the password to send for (user, host, port); the server checks the one it receives
with ecFlow's rules (:meth:`PasswdFile.authenticate`), comparing in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import SecurityFileError
from .files import is_private, write_private

__all__ = [
    "PasswdEntry",
    "PasswdFile",
    "passwd_path",
    "client_password",
    "hash_password",
    "verify_password",
    "generate_password",
    "job_password_ok",
]

_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
FILE_VERSION = "4.5.0"


def passwd_path(home: str | os.PathLike[str], host: str, port: int | str, *, custom: bool = False,
                env: Mapping[str, str] | None = None) -> Path:
    """Where a server finds ``ecf.passwd`` (or ``ecf.custom_passwd`` with ``custom=True``), ecFlow's rules.

    ``ECF_PASSWD`` / ``ECF_CUSTOM_PASSWD`` unset or equal to the default name give
    ``<home>/<host>.<port>.ecf.passwd``; another relative value is relative to ``home``.
    """
    env = os.environ if env is None else env
    default = "ecf.custom_passwd" if custom else "ecf.passwd"
    name = env.get("ECF_CUSTOM_PASSWD" if custom else "ECF_PASSWD") or default
    if name == default:
        name = f"{host}.{port}.{default}"
    p = Path(name).expanduser()
    return p if p.is_absolute() else Path(home) / p


@dataclass(frozen=True)
class PasswdEntry:
    """One ``user host port passwd`` line."""

    user: str
    host: str
    port: str
    passwd: str
    line: int = 0

    def __repr__(self) -> str:  # never show the password in logs or tracebacks
        return f"PasswdEntry(user={self.user!r}, host={self.host!r}, port={self.port!r}, line={self.line})"


class PasswdFile:
    """The entries of an ecFlow password file; ``authenticate`` for servers, ``password_for`` for clients."""

    def __init__(self, path: str | os.PathLike[str] | None = None,
                 entries: Iterable[PasswdEntry] = ()) -> None:
        self.path: Path | None = Path(path) if path is not None else None
        self._entries: tuple[PasswdEntry, ...] = tuple(entries)
        self._lock = threading.Lock()
        self.insecure_permissions = False

    # ------------------------------------------------------------------ construction
    @classmethod
    def load(cls, path: str | os.PathLike[str], *, missing_ok: bool = False) -> PasswdFile:
        """Read ``path``; with ``missing_ok`` a missing file gives an empty one (no password checks)."""
        pf = cls(path)
        if Path(path).exists() or not missing_ok:
            pf.reload()
        return pf

    @classmethod
    def parse(cls, text: str, source: str = "<string>") -> PasswdFile:
        """Parse password-file ``text``; ``source`` names it in errors."""
        return cls(None, _parse(text, source))

    @classmethod
    def for_server(cls, home: str | os.PathLike[str], host: str, port: int | str, *, custom: bool = False,
                   env: Mapping[str, str] | None = None) -> PasswdFile:
        """The (custom) password file of a server; a missing file means no password is required."""
        return cls.load(passwd_path(home, host, port, custom=custom, env=env), missing_ok=True)

    def reload(self) -> None:
        """Re-read the file (``reload_passwd_file``); on error the previous entries stay in force."""
        if self.path is None:
            raise FileNotFoundError("this password file was not read from a file, there is nothing to reload")
        if not self.path.exists():
            raise FileNotFoundError(f"The password file {self.path} does not exist")
        entries = _parse(self.path.read_text(encoding="utf-8", errors="replace"), str(self.path))
        with self._lock:
            self._entries = entries
            self.insecure_permissions = not is_private(self.path)

    def write(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write the entries (0600, atomically) to ``path`` or to the file they came from."""
        target = Path(path) if path is not None else self.path
        if target is None:
            raise ValueError("no path to write the password file to")
        lines = [FILE_VERSION]
        lines += [f"{e.user} {e.host} {e.port} {e.passwd}" for e in self._entries]
        write_private(target, "\n".join(lines) + "\n")
        if self.path is None:
            self.path = target
        return target

    def add(self, user: str, host: str, port: int | str, passwd: str) -> None:
        """Add or replace the entry of ``user`` on ``host:port`` (call :meth:`write` to save it)."""
        for value, what in ((user, "user"), (host, "host"), (str(port), "port"), (passwd, "password")):
            if not value or any(c.isspace() for c in value) or "#" in value:
                raise ValueError(f"a {what} in a password file may not be empty or contain spaces or '#'")
        if not str(port).isdigit():
            raise ValueError(f"port must be an integer, got {port!r}")
        kept = [e for e in self._entries if not (e.user == user and e.host == host and e.port == str(port))]
        with self._lock:
            self._entries = (*kept, PasswdEntry(user, host, str(port), passwd))

    # ------------------------------------------------------------------ queries
    @property
    def entries(self) -> tuple[PasswdEntry, ...]:
        return self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def password_for(self, user: str, host: str, port: int | str) -> str | None:
        """The password a client should send as ``user`` to ``host:port``, or None when there is none.

        ``localhost``, ``127.0.0.1`` and ``::1`` stand for each other, since a server started on this
        machine is reached under any of them.
        """
        hosts = _host_aliases(host)
        for e in self._entries:
            if e.user == user and e.port == str(port) and e.host in hosts:
                return e.passwd
        return None

    def has_host_port(self, host: str, port: int | str) -> bool:
        """True when at least one entry is for ``host:port`` (ecFlow refuses to start otherwise)."""
        hosts = _host_aliases(host)
        return any(e.port == str(port) and e.host in hosts for e in self._entries)

    def authenticate(self, user: str, passwd: str | None, port: int | str | None = None) -> bool:
        """ecFlow's server-side check of the password sent by ``user``.

        - an empty user is refused;
        - a user listed in the file must send its password (constant-time comparison);
        - a user not listed passes only when it sends no password and the file has no entries at all.

        With ``port`` given, only the entries for that port count (a file may serve several servers).
        """
        if not user:
            return False
        sent = passwd or ""
        entries = [e for e in self._entries if port is None or e.port == str(port)]
        if not sent and not entries:
            return True
        for e in entries:
            if e.user == user:
                return hmac.compare_digest(e.passwd.encode(), sent.encode())
        return False


def _host_aliases(host: str) -> set[str]:
    local = {"localhost", "127.0.0.1", "::1", "localhost.localdomain"}
    return local | {host} if host in local else {host}


def _parse(text: str, source: str) -> tuple[PasswdEntry, ...]:
    entries: list[PasswdEntry] = []
    seen: dict[tuple[str, str, str], int] = {}
    version_seen = False
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        tokens = line.split()
        if not version_seen:
            m = _VERSION.match(tokens[0])
            if not m or len(tokens) != 1:
                raise SecurityFileError(source, lineno,
                                        "the version number (such as 4.5.0) before the first user", raw.strip())
            if tuple(int(g) for g in m.groups()) < (4, 5, 0):
                raise SecurityFileError(source, lineno, "a password-file version of 4.5.0 or later", raw.strip())
            version_seen = True
            continue
        if len(tokens) != 4:
            # never echo a line that may hold a password: show only the field count
            raise SecurityFileError(source, lineno, "<user> <host> <port> <passwd>",
                                    f"{len(tokens)} field(s)")
        user, host, port, passwd = tokens
        if not port.isdigit():
            raise SecurityFileError(source, lineno, "an integer port number in the third field", port)
        key = (user, host, port)
        if key in seen:
            raise SecurityFileError(source, lineno,
                                    f"user {user} only once for {host}:{port} (first at line {seen[key]})")
        seen[key] = lineno
        entries.append(PasswdEntry(user, host, port, passwd, lineno))
    return tuple(entries)


def client_password(user: str, host: str, port: int | str, *, custom: bool = False,
                    env: Mapping[str, str] | None = None, home: str | os.PathLike[str] | None = None) -> str | None:
    """The password the client should send, found as ecFlow's client finds it, or None.

    The file is ``ECF_CUSTOM_PASSWD`` (custom user names) or ``ECF_PASSWD`` when set; otherwise
    ``<host>.<port>.ecf.(custom_)passwd`` in ``home`` (default: the current folder). A missing file
    means no password; a malformed one raises :class:`SecurityFileError`.
    """
    env = os.environ if env is None else env
    path = passwd_path(home if home is not None else Path.cwd(), host, port, custom=custom, env=env)
    if not path.exists():
        return None
    return PasswdFile.load(path).password_for(user, host, port)


# ---------------------------------------------------------------------- hashed passwords (data users)
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
_HASH_RE = re.compile(r"^scrypt\$n=(\d+),r=(\d+),p=(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$")


def hash_password(password: str, *, n: int = _SCRYPT["n"], r: int = _SCRYPT["r"], p: int = _SCRYPT["p"]) -> str:
    """A salted scrypt hash of ``password`` as one self-describing string, safe to store in SQLite.

    Format: ``scrypt$n=16384,r=8,p=1$<salt base64>$<hash base64>``.
    """
    if not isinstance(password, str):
        raise TypeError("password must be a str")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32, maxmem=2**26)
    b64 = base64.b64encode
    return f"scrypt$n={n},r={r},p={p}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches ``stored`` (from :func:`hash_password`); constant-time.

    A ``stored`` value that is not such a hash raises ``ValueError`` (a corrupted database must not
    look like a wrong password).
    """
    m = _HASH_RE.match(stored or "")
    if not m:
        raise ValueError("stored password is not an ecflow_lab scrypt hash (scrypt$n=..,r=..,p=..$salt$hash)")
    n, r, p = (int(g) for g in m.groups()[:3])
    salt = base64.b64decode(m.group(4))
    expected = base64.b64decode(m.group(5))
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=len(expected), maxmem=2**26)
    return hmac.compare_digest(digest, expected)


def job_password_ok(expected: str | None, sent: str | None) -> bool:
    """ecFlow's job-password check for child commands (``ECF_PASS``), in constant time.

    ``expected == "FREE"`` (``ECF_PASS`` set to FREE on the task) bypasses the check; an empty expected
    password (never submitted) accepts nothing.
    """
    if expected == "FREE":
        return True
    if not expected:
        return False
    return hmac.compare_digest(expected.encode(), (sent or "").encode())


def generate_password(length: int = 8) -> str:
    """A random password of letters and digits (ecFlow's job passwords are 8 characters)."""
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"
    return "".join(secrets.choice(alphabet) for _ in range(length))
