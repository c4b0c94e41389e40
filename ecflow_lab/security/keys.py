"""CurveZMQ keys in a per-user directory, and the ``ecflow-lab keys`` command.

Layout of the key directory (default ``~/.ecflow_lab/keys``, or ``$ECFLOW_LAB_KEYS``; mode 0700)::

    server.key            public key of this user's servers   (give it to clients)
    server.key_secret     secret key of the servers           (0600, never share)
    client.key            public key of this user's clients
    client.key_secret     secret key of the clients           (0600)
    <host>.<port>.key*    keys of one particular server (``ECF_SSL=<host>.<port>``)
    authorized_clients/   public keys (``*.key``) of other users' clients this user's servers accept

Files use ZeroMQ's certificate format, so ``zmq.auth.load_certificate`` reads them too. A server accepts
this user's own ``client.key`` (seen by the server as this user's login name) plus every key in
``authorized_clients/`` (the file name is the user name the server sees for that key).

Usage::

    ecflow-lab keys generate                 # server + client keypairs, refuses to overwrite
    ecflow-lab keys generate --name host1.3141 --force
    ecflow-lab keys show [--name client]     # print a public key
    ecflow-lab keys authorize alice.key      # accept alice's client key on this user's servers
    ecflow-lab keys list
"""

from __future__ import annotations

import argparse
import datetime
import getpass
import os
import pwd
import re
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import zmq

from .errors import KeyFileError
from .files import ensure_private_dir, write_private

__all__ = [
    "KeyPair",
    "keys_dir",
    "generate_keypair",
    "load_keypair",
    "load_public",
    "authorized_client_keys",
    "authorize_client",
    "main",
]

AUTHORIZED = "authorized_clients"
_NAME = re.compile(r"^[A-Za-z0-9_.@+-]+$")
_Z85 = re.compile(rb"^[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}$")


@dataclass(frozen=True)
class KeyPair:
    """A Curve keypair (z85-encoded bytes) and the files it came from."""

    public: bytes
    secret: bytes
    name: str = ""
    public_file: Path | None = None
    secret_file: Path | None = None

    def __repr__(self) -> str:  # the secret key never appears in logs
        return f"KeyPair(name={self.name!r}, public={self.public.decode()!r})"


def keys_dir(directory: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> Path:
    """The key directory: ``directory``, else ``$ECFLOW_LAB_KEYS``, else ``~/.ecflow_lab/keys``."""
    if directory is not None:
        return Path(directory).expanduser()
    env = os.environ if env is None else env
    return Path(env.get("ECFLOW_LAB_KEYS") or "~/.ecflow_lab/keys").expanduser()


def _check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"key name {name!r} may only contain letters, digits and . _ - @ +")
    return name


def _cert_text(public: bytes, secret: bytes | None, name: str) -> str:
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    kind = "**Secret** Certificate" if secret else "Public Certificate"
    lines = [
        f"#   ****  Generated on {now} by ecflow-lab keys  ****",
        f"#   ZeroMQ CURVE {kind} ({name})",
        "#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions." if secret
        else "#   Give this file to the peers that must recognise this key.",
        "",
        "metadata",
        f"    name = \"{name}\"",
        "curve",
        f"    public-key = \"{public.decode()}\"",
    ]
    if secret:
        lines.append(f"    secret-key = \"{secret.decode()}\"")
    return "\n".join(lines) + "\n"


def generate_keypair(name: str = "server", directory: str | os.PathLike[str] | None = None, *,
                     force: bool = False) -> KeyPair:
    """Create ``<name>.key`` and ``<name>.key_secret`` (0600) in the key directory (made 0700).

    Refuses to replace an existing keypair unless ``force`` (``FileExistsError``), because peers that
    hold the old public key would stop connecting.
    """
    _check_name(name)
    d = ensure_private_dir(keys_dir(directory))
    pub_file, sec_file = d / f"{name}.key", d / f"{name}.key_secret"
    if not force:
        for f in (pub_file, sec_file):
            if f.exists():
                raise FileExistsError(f"{f} already exists; use --force (force=True) to replace it "
                                      f"(peers holding the old public key will then be refused)")
    public, secret = zmq.curve_keypair()
    # secret first: a public key without its secret is useless, the opposite would be confusing
    write_private(sec_file, _cert_text(public, secret, name), mode=0o600)
    write_private(pub_file, _cert_text(public, None, name), mode=0o644)
    return KeyPair(public, secret, name, pub_file, sec_file)


def _read_cert(path: Path) -> tuple[bytes, bytes | None]:
    public = secret = None
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        raise KeyFileError(path, None, "a key file (create it with `ecflow-lab keys generate`)", "no such file") \
            from None
    for lineno, raw in enumerate(lines, start=1):
        line = raw.strip()
        for field_name in (b"public-key", b"secret-key"):
            if line.startswith(field_name):
                value = line.split(b"=", 1)[1].strip(b" \t'\"") if b"=" in line else b""
                if not _Z85.match(value):
                    raise KeyFileError(path, lineno, f"a 40-character z85 {field_name.decode()}",
                                       f"{len(value)} characters")
                if field_name == b"public-key":
                    public = value
                else:
                    secret = value
    if public is None:
        raise KeyFileError(path, None, "a 'public-key = \"...\"' line (ZeroMQ certificate format)")
    return public, secret


def load_keypair(name: str = "server", directory: str | os.PathLike[str] | None = None) -> KeyPair:
    """Read ``<name>.key_secret``; refuses a secret file that group or others can read (like ssh)."""
    _check_name(name)
    d = keys_dir(directory)
    sec_file = d / f"{name}.key_secret"
    if sec_file.exists():
        mode = stat.S_IMODE(sec_file.stat().st_mode)
        if mode & 0o077:
            raise KeyFileError(sec_file, None, "a secret key readable only by its owner",
                               f"permissions {mode:04o}; run chmod 600 {sec_file}")
    public, secret = _read_cert(sec_file)
    if secret is None:
        raise KeyFileError(sec_file, None, "a 'secret-key = \"...\"' line")
    pub_file = d / f"{name}.key"
    return KeyPair(public, secret, name, pub_file if pub_file.exists() else None, sec_file)


def load_public(name_or_path: str | os.PathLike[str] = "server",
                directory: str | os.PathLike[str] | None = None) -> bytes:
    """A public key: from a file path (``.key`` or ``.key_secret``), or ``<name>.key`` in the key directory."""
    p = Path(name_or_path)
    if p.suffix not in (".key", ".key_secret") or not (p.exists() or p.is_absolute() or len(p.parts) > 1):
        p = keys_dir(directory) / f"{_check_name(str(name_or_path))}.key"
    return _read_cert(p.expanduser())[0]


def authorized_client_keys(directory: str | os.PathLike[str] | None = None,
                           own_client: str | None = "client") -> dict[bytes, str]:
    """``{public key: user name}`` accepted by this user's servers: own client key + ``authorized_clients/``.

    The own client key maps to the login name of the key directory's owner, each authorized key to its
    file name; a server sees that name as the ``User-Id`` of the connection (an authenticated identity,
    unlike the user name a request merely claims).
    """
    d = keys_dir(directory)
    found: dict[bytes, str] = {}
    if own_client and (d / f"{own_client}.key").exists():
        found[_read_cert(d / f"{own_client}.key")[0]] = _owner(d)
    auth = d / AUTHORIZED
    if auth.is_dir():
        for f in sorted(auth.glob("*.key")):
            found[_read_cert(f)[0]] = f.stem
    return found


def _owner(path: Path) -> str:
    try:
        return pwd.getpwuid(path.stat().st_uid).pw_name
    except (KeyError, OSError):
        return getpass.getuser()


def authorize_client(public_file: str | os.PathLike[str], directory: str | os.PathLike[str] | None = None,
                     name: str | None = None) -> Path:
    """Copy a client's public key file into ``authorized_clients/`` (checked first)."""
    src = Path(public_file).expanduser()
    public, secret = _read_cert(src)
    if secret is not None:
        raise KeyFileError(src, None, "a public key file (.key), not a secret one",
                           "a file containing a secret-key")
    dest_dir = ensure_private_dir(keys_dir(directory) / AUTHORIZED)
    dest = dest_dir / f"{_check_name(name or src.stem)}.key"
    write_private(dest, _cert_text(public, None, dest.stem), mode=0o644)
    return dest


# ---------------------------------------------------------------------- command line
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ecflow-lab keys", description="Manage CurveZMQ keys (ECF_SSL).")
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate", help="create keypairs (default: server and client)")
    g.add_argument("--dir", help="key directory (default $ECFLOW_LAB_KEYS or ~/.ecflow_lab/keys)")
    g.add_argument("--name", action="append",
                   help="keypair name, repeatable (default: server and client); <host>.<port> for one server")
    g.add_argument("--force", action="store_true", help="replace existing keypairs")
    s = sub.add_parser("show", help="print a public key")
    s.add_argument("--dir")
    s.add_argument("--name", default="server")
    a = sub.add_parser("authorize", help="accept another user's client public key on this user's servers")
    a.add_argument("file", help="the client's .key file")
    a.add_argument("--dir")
    a.add_argument("--name", help="user name for that key (default: the file name)")
    ls = sub.add_parser("list", help="list keypairs and authorized client keys")
    ls.add_argument("--dir")
    return p


def main(argv: list[str] | None = None) -> int:
    """``ecflow-lab keys generate|show|authorize|list``; returns a process exit status."""
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.cmd == "generate":
            names = args.name or ["server", "client"]
            d = keys_dir(args.dir)
            if not args.force:  # all or nothing: check every name before writing any
                for n in names:
                    for f in (d / f"{_check_name(n)}.key", d / f"{n}.key_secret"):
                        if f.exists():
                            raise FileExistsError(f"{f} already exists; use --force to replace it "
                                                  f"(peers holding the old public key will then be refused)")
            for n in names:
                kp = generate_keypair(n, d, force=args.force)
                print(f"{n}: public {kp.public_file}  secret {kp.secret_file} (0600)")
                print(f"    public key {kp.public.decode()}")
            print(f"key directory {d} (0700); enable with ECF_SSL=1 or --ssl")
        elif args.cmd == "show":
            print(load_public(args.name, args.dir).decode())
        elif args.cmd == "authorize":
            dest = authorize_client(args.file, args.dir, args.name)
            print(f"authorized {dest.stem}: {dest}")
        elif args.cmd == "list":
            d = keys_dir(args.dir)
            if not d.is_dir():
                print(f"no key directory at {d}; run `ecflow-lab keys generate`")
                return 1
            for f in sorted(d.glob("*.key")):
                has_secret = (d / f"{f.stem}.key_secret").exists()
                print(f"{f.stem:24s} {_read_cert(f)[0].decode()}{'  (+secret)' if has_secret else ''}")
            for key, user in authorized_client_keys(d, own_client=None).items():
                print(f"authorized client {user:14s} {key.decode()}")
    except (FileExistsError, KeyFileError, ValueError, OSError) as exc:
        print(f"ecflow-lab keys: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
