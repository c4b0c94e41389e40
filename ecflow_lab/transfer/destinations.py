"""Destination plugins: where data movers deliver files.

A plugin is a :class:`Destination` subclass registered for a URL scheme (``file``, ``sftp`` built in; others
through the ``ecflow_lab.transfer.destinations`` entry-point group or :func:`register`). A plugin only has to
provide file primitives on a :class:`Connection` (open for writing, rename, remove, size); :func:`deliver`
does the rest the same way for every plugin: write under a temporary name, throttle to the destination's
bandwidth limit, checksum while writing, optionally re-read and checksum again, then rename atomically.
A partial file is therefore never visible under its final name.
"""

from __future__ import annotations

import os
import posixpath
import time
import urllib.parse
from collections.abc import Callable
from typing import Any, BinaryIO, ClassVar

from .fastcopy import CopyCancelled, copy_and_hash
from .wire import CHUNK, Checksum, TransferError, algo_of, parse_duration, parse_size

#: Destination options with their defaults (``ecflow-lab transfer destination add NAME URL --option value``).
OPTION_DEFAULTS: dict[str, Any] = {
    "max_connections": 4,       # parallel transfers to this destination
    "retry_count": 3,           # retries after the first failed attempt, then Failed
    "retry_frequency": 60.0,    # seconds to wait before retrying a failed transfer
    "priority": None,           # default priority of transfers pushed without -priority (0 first, 99 last)
    "lifetime": None,           # default lifetime (seconds) of transfers pushed without -lifetime
    "delay": 0.0,               # seconds added to every transfer's dispatch time
    "at": None,                 # daily dispatch time HH:MM for transfers pushed without -at
    "rate": None,               # bandwidth limit in bytes/s per transfer (None: unlimited)
    "verify": "stream",         # "stream": checksum while writing; "reread": also re-read before rename
    "timeout": 30.0,            # connect timeout (seconds)
}


def normalise_options(opts: dict[str, Any]) -> dict[str, Any]:
    """Validate destination options and convert units; raise TransferError naming the bad one."""
    out = dict(OPTION_DEFAULTS)
    for key, value in opts.items():
        key = key.replace("-", "_")
        if key not in OPTION_DEFAULTS:
            raise TransferError(f"unknown destination option {key!r} (known: {', '.join(OPTION_DEFAULTS)})")
        if value is None:
            out[key] = None
            continue
        try:
            if key in ("max_connections", "retry_count", "priority"):
                value = int(value)
                if value < 0 or (key == "max_connections" and value < 1):
                    raise ValueError("must be positive")
                if key == "priority" and value > 99:
                    raise ValueError("must be 0..99")
            elif key in ("retry_frequency", "lifetime", "delay", "timeout"):
                value = parse_duration(value) if isinstance(value, str) else float(value)
            elif key == "rate":
                value = parse_size(value) if isinstance(value, str) else int(value)
                if value <= 0:
                    raise ValueError("must be > 0")
            elif key == "at":
                from .wire import next_time_of_day

                next_time_of_day(str(value), time.time())
                value = str(value)
            elif key == "verify" and value not in ("stream", "reread"):
                raise ValueError("expected stream or reread")
        except ValueError as exc:
            raise TransferError(f"bad value {value!r} for destination option {key}: {exc}") from None
        out[key] = value
    return out


class Connection:
    """An open session to a destination; one transfer at a time uses it."""

    def makedirs(self, path: str) -> None:
        raise NotImplementedError

    def open_write(self, path: str) -> BinaryIO:
        raise NotImplementedError

    def open_read(self, path: str) -> BinaryIO:
        raise NotImplementedError

    def rename(self, src: str, dst: str) -> None:
        """Atomically replace ``dst`` by ``src``."""
        raise NotImplementedError

    def remove(self, path: str) -> None:
        raise NotImplementedError

    def size(self, path: str) -> int:
        raise NotImplementedError

    def listdir(self, path: str) -> list[str]:
        raise NotImplementedError

    def alive(self) -> bool:
        return True

    def close(self) -> None:
        pass


class Destination:
    """A configured destination: its URL, options and how to connect."""

    scheme: ClassVar[str] = ""

    def __init__(self, name: str, url: str, options: dict[str, Any] | None = None) -> None:
        self.name = name
        self.url = url
        self.parsed = urllib.parse.urlsplit(url)
        self.options = normalise_options(options or {})
        self.root = urllib.parse.unquote(self.parsed.path) or "/"

    def connect(self) -> Connection:
        raise NotImplementedError

    def path_of(self, target: str) -> str:
        return posixpath.join(self.root, target)


# ---------------------------------------------------------------------------------------------- file://


class _LocalConnection(Connection):
    def makedirs(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)

    def open_write(self, path: str) -> BinaryIO:
        return open(path, "wb")  # noqa: SIM115 - closed by deliver()

    def open_read(self, path: str) -> BinaryIO:
        return open(path, "rb")  # noqa: SIM115

    def rename(self, src: str, dst: str) -> None:
        os.replace(src, dst)

    def remove(self, path: str) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

    def size(self, path: str) -> int:
        return os.stat(path).st_size

    def listdir(self, path: str) -> list[str]:
        try:
            return os.listdir(path)
        except FileNotFoundError:
            return []


class FileDestination(Destination):
    """``file:///absolute/dir``: a directory the mover can write to."""

    scheme = "file"

    def __init__(self, name: str, url: str, options: dict[str, Any] | None = None) -> None:
        super().__init__(name, url, options)
        if self.parsed.netloc not in ("", "localhost"):
            raise TransferError(f"destination {name}: file URL must be file:///absolute/dir, got {url!r}")

    def connect(self) -> Connection:
        return _LocalConnection()


# ---------------------------------------------------------------------------------------------- sftp://


class _SftpConnection(Connection):
    def __init__(self, client: Any, sftp: Any) -> None:
        self._client = client
        self._sftp = sftp

    def makedirs(self, path: str) -> None:
        parts = [p for p in path.split("/") if p]
        cur = "/" if path.startswith("/") else ""
        for p in parts:
            cur = posixpath.join(cur, p) if cur else p
            try:
                self._sftp.stat(cur)
            except OSError:
                try:
                    self._sftp.mkdir(cur)
                except OSError:
                    self._sftp.stat(cur)  # raced with another mover: fine if it exists now

    def open_write(self, path: str) -> BinaryIO:
        f = self._sftp.open(path, "wb", bufsize=CHUNK)
        f.set_pipelined(True)
        return f

    def open_read(self, path: str) -> BinaryIO:
        f = self._sftp.open(path, "rb")
        f.prefetch()
        return f

    def rename(self, src: str, dst: str) -> None:
        self._sftp.posix_rename(src, dst)

    def remove(self, path: str) -> None:
        try:
            self._sftp.remove(path)
        except FileNotFoundError:
            pass

    def size(self, path: str) -> int:
        return int(self._sftp.stat(path).st_size)

    def listdir(self, path: str) -> list[str]:
        try:
            return self._sftp.listdir(path)
        except FileNotFoundError:
            return []

    def alive(self) -> bool:
        transport = self._client.get_transport()
        return transport is not None and transport.is_active()

    def close(self) -> None:
        try:
            self._sftp.close()
        finally:
            self._client.close()


class SftpDestination(Destination):
    """``sftp://user@host:port/dir``: SFTP with paramiko; key from options ``key_file`` or the SSH agent/defaults.

    Extra options (stored with the destination): ``key_file``, ``password``, ``known_hosts`` (path; without
    it, unknown host keys are accepted and the key seen is logged by paramiko).
    """

    scheme = "sftp"
    extra = ("key_file", "password", "known_hosts")

    def __init__(self, name: str, url: str, options: dict[str, Any] | None = None) -> None:
        opts = dict(options or {})
        self.ssh = {k: opts.pop(k) for k in self.extra if k in opts}
        super().__init__(name, url, opts)
        self.options.update(self.ssh)
        if not self.parsed.hostname:
            raise TransferError(f"destination {name}: sftp URL needs a host: sftp://user@host:port/dir")
        self.root = urllib.parse.unquote(self.parsed.path) or "."

    def connect(self) -> Connection:
        import paramiko

        host, port = self.parsed.hostname, self.parsed.port or 22
        user = urllib.parse.unquote(self.parsed.username or "") or os.environ.get("USER") or "root"
        password = self.ssh.get("password") or (urllib.parse.unquote(self.parsed.password)
                                                  if self.parsed.password else None)
        client = paramiko.SSHClient()
        if self.ssh.get("known_hosts"):
            client.load_host_keys(self.ssh["known_hosts"])
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
        else:
            client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        try:
            client.connect(host, port=port, username=user, password=password,
                           key_filename=self.ssh.get("key_file"), timeout=self.options["timeout"],
                           banner_timeout=self.options["timeout"], auth_timeout=self.options["timeout"],
                           look_for_keys=not self.ssh.get("key_file"), allow_agent=False)
        except Exception as exc:
            client.close()
            raise TransferError(f"sftp connect to {user}@{host}:{port} failed: {exc}") from exc
        transport = client.get_transport()
        transport.set_keepalive(15)
        sftp = client.open_sftp()
        return _SftpConnection(client, sftp)


# ---------------------------------------------------------------------------------------------- registry

_REGISTRY: dict[str, type[Destination]] = {"file": FileDestination, "sftp": SftpDestination}
_entry_points_loaded = False


def register(cls: type[Destination]) -> type[Destination]:
    """Register a destination plugin class for its ``scheme`` (usable as a decorator)."""
    _REGISTRY[cls.scheme] = cls
    return cls


def make_destination(name: str, url: str, options: dict[str, Any] | None = None) -> Destination:
    """Build the plugin for ``url``'s scheme; TransferError if unknown or malformed."""
    global _entry_points_loaded
    if not _entry_points_loaded:
        _entry_points_loaded = True
        try:
            from importlib.metadata import entry_points

            for ep in entry_points(group="ecflow_lab.transfer.destinations"):
                register(ep.load())
        except Exception:  # a broken third-party plugin must not break the built-in ones
            pass
    scheme = urllib.parse.urlsplit(url).scheme
    cls = _REGISTRY.get(scheme)
    if cls is None:
        raise TransferError(f"destination {name}: unsupported URL scheme {scheme!r} in {url!r} "
                            f"(supported: {', '.join(sorted(_REGISTRY))})")
    return cls(name, url, options)


# ---------------------------------------------------------------------------------------------- delivery


class Cancelled(Exception):
    """The master asked the mover to stop this transfer."""


class Throttle:
    """Keeps a byte stream under ``rate`` bytes/s (a destination's bandwidth limit)."""

    def __init__(self, rate: int | None) -> None:
        self.rate = rate
        self.t0 = time.monotonic()
        self.sent = 0

    def chunk(self, default: int) -> int:
        return default if not self.rate else max(4096, min(default, self.rate // 10))

    def account(self, n: int, cancelled: Callable[[], bool] | None = None) -> None:
        if not self.rate:
            return
        self.sent += n
        wait = self.sent / self.rate - (time.monotonic() - self.t0)
        while wait > 0:
            if cancelled and cancelled():
                raise Cancelled()
            time.sleep(min(wait, 0.1))
            wait = self.sent / self.rate - (time.monotonic() - self.t0)


def temp_name(final: str, tag: str) -> str:
    d, base = posixpath.split(final)
    return posixpath.join(d, f".{base}.{tag}.part")


def _stream_copy(conn: Connection, src: BinaryIO, tmp: str, hasher: Checksum, throttle: Throttle,
                 progress: Callable[[int], None] | None, cancelled: Callable[[], bool] | None) -> int:
    """Chunked copy through the plugin's file object (remote destinations, bandwidth limits)."""
    written = 0
    last = time.monotonic()
    with conn.open_write(tmp) as out:
        step = throttle.chunk(CHUNK)
        while True:
            if cancelled and cancelled():
                raise Cancelled()
            buf = src.read(step)
            if not buf:
                break
            out.write(buf)
            hasher.update(buf)
            written += len(buf)
            throttle.account(len(buf), cancelled)
            if progress and time.monotonic() - last > 0.25:
                last = time.monotonic()
                progress(written)
    return written


def deliver(conn: Connection, dest: Destination, src: BinaryIO, target: str, size: int | None,
            checksum: str | None, *, tag: str, algo: str = "sha256",
            progress: Callable[[int], None] | None = None,
            cancelled: Callable[[], bool] | None = None) -> tuple[str, str]:
    """Copy ``src`` to ``dest``/``target`` through a temporary name; verify size and checksum; rename.

    Returns ``(final path, checksum)``. Raises TransferError (after removing the temporary file) on any
    mismatch. ``checksum``/``size`` None (a -noretrieval file read in place) skip the comparison.
    """
    final = dest.path_of(target)
    directory = posixpath.dirname(final)
    if directory:
        conn.makedirs(directory)
    # earlier attempts of this transfer (a killed mover) may have left their temporary files: remove them
    # by name (no directory listing, which would cost O(files in the directory) per delivery)
    tid, _, attempt = tag.partition("-")
    if attempt.isdigit():
        for k in range(max(1, int(attempt) - 20), int(attempt)):
            conn.remove(temp_name(final, f"{tid}-{k}"))
    tmp = temp_name(final, tag)
    throttle = Throttle(dest.options.get("rate"))
    algo = algo_of(checksum) if checksum else algo
    try:
        fileno = getattr(src, "fileno", None)
        if isinstance(conn, _LocalConnection) and not throttle.rate and fileno is not None:
            # local directory: kernel copy; the checksum is of the bytes as written at the destination
            written = os.fstat(fileno()).st_size
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                got = copy_and_hash(fileno(), fd, written, algo, progress=progress, cancelled=cancelled)
            except CopyCancelled:
                raise Cancelled() from None
            finally:
                os.close(fd)
        else:
            hasher = Checksum(algo)
            written = _stream_copy(conn, src, tmp, hasher, throttle, progress, cancelled)
            got = hasher.hexdigest()
        if size is not None and written != size:
            raise TransferError(f"size mismatch delivering {target}: wrote {written} bytes, expected {size}")
        if checksum and got != checksum:
            raise TransferError(f"checksum mismatch delivering {target}: {got} != {checksum}")
        remote = conn.size(tmp)
        if remote != written:
            raise TransferError(f"size mismatch at destination for {target}: {remote} != {written}")
        if dest.options.get("verify") == "reread":
            again = Checksum(algo)
            with conn.open_read(tmp) as f:
                while buf := f.read(CHUNK):
                    again.update(buf)
            if again.hexdigest() != got:
                raise TransferError(f"checksum mismatch re-reading {target} at the destination")
        conn.rename(tmp, final)
    except BaseException:
        try:
            conn.remove(tmp)
        except Exception:
            pass
        raise
    if progress:
        progress(written)
    return final, got
