"""Wire format and data plane of the executor.

Every ZeroMQ message is ``[mac, body, *buffers]``: ``mac`` is a keyed BLAKE2b digest (the cluster secret is
the key) over all following frames. :func:`recv` checks the MAC *before* anything is unpickled, so a
process without the secret can neither join the cluster nor get a single byte of its input unpickled.

Values move as pickle protocol 5 with out-of-band buffers: small ones inline in messages, large ones
written once into a shared-memory file (``/dev/shm``) that same-host readers map zero-copy (copy-on-write)
and that the host agent serves to other hosts.
"""

from __future__ import annotations

import hashlib
import hmac
import mmap
import os
import pickle
import secrets
from typing import Any

import zmq

SECRET_ENV = "ECFLOW_LAB_CASCADE_SECRET"
MAC_SIZE = 16
INLINE_MAX = 64 * 1024  # values whose pickle is at most this travel inside messages
_ALIGN = 64
SHM_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else None


class AuthError(Exception):
    """A message failed the secret check."""


def curve_setting(ssl: bool | str | None = None) -> str | None:
    """The encryption switch: ``ssl`` when given (True/"1": shared keys), else ``ECF_SSL``; None when off.

    With it on, every socket of the cluster is CurveZMQ (keys from ``ecflow-lab keys``, in
    ``$ECFLOW_LAB_KEYS`` or ``~/.ecflow_lab/keys``) on top of the MAC: nobody on the network reads values.
    """
    if ssl is not None:
        return "1" if ssl is True else (str(ssl) if ssl else None)
    if not os.environ.get("ECF_SSL"):
        return None
    from ...security import ssl_setting

    return ssl_setting()


def curve_server(ctx: zmq.Context, setting: str | None) -> Any:
    """A CurveServer (ZAP thread) for ``ctx`` when encryption is on, else None; ``close()`` it before
    terminating ``ctx``."""
    if not setting:
        return None
    from ...security import CurveServer

    return CurveServer.from_setting(setting, context=ctx)


def secure_client(sock: zmq.Socket, setting: str | None) -> zmq.Socket:
    """Make ``sock`` a Curve client of the cluster's server key when encryption is on (before connect)."""
    if setting:
        from ...security import ClientCurve

        ClientCurve(setting).secure(sock)
    return sock


def new_secret() -> bytes:
    return secrets.token_bytes(32)


def secret_from_env() -> bytes:
    val = os.environ.get(SECRET_ENV)
    if not val:
        raise SystemExit(f"the cluster secret is missing: set {SECRET_ENV} (hex) or pass --secret-file")
    return bytes.fromhex(val.strip())


def mac(key: bytes, frames: list) -> bytes:
    """Keyed digest of ``frames``; each frame's length is hashed before it, so that nobody can move bytes
    across frame boundaries (e.g. from a buffer into the pickled body) and keep the digest valid."""
    h = hashlib.blake2b(key=key[:64], digest_size=MAC_SIZE)
    for f in frames:
        h.update(memoryview(f).nbytes.to_bytes(8, "little"))
        h.update(f)
    return h.digest()


def dumps(obj: Any) -> bytes:
    """Pickle a control message (cloudpickle only for callables that plain pickle refuses)."""
    try:
        return pickle.dumps(obj, protocol=5)
    except (pickle.PicklingError, AttributeError, TypeError):
        import cloudpickle

        return cloudpickle.dumps(obj, protocol=5)


def send(sock: zmq.Socket, key: bytes, msg: Any, prefix: list | None = None, buffers: list | None = None) -> None:
    body = dumps(msg)
    frames = [body, *(buffers or [])]
    sock.send_multipart([*(prefix or []), mac(key, frames), *frames], copy=len(frames) == 1)


def recv(sock: zmq.Socket, key: bytes, n_prefix: int = 0) -> tuple[list, Any, list]:
    """Receive one message: (routing prefix, message, extra buffer frames). Raises AuthError before
    unpickling if the MAC does not match."""
    frames = sock.recv_multipart(copy=False)
    prefix = [f.bytes for f in frames[:n_prefix]]
    rest = frames[n_prefix:]
    if len(rest) < 2:
        raise AuthError("short message")
    bufs = [f.buffer for f in rest[1:]]
    if not hmac.compare_digest(rest[0].bytes, mac(key, bufs)):
        raise AuthError("bad MAC")
    return prefix, pickle.loads(bufs[0]), bufs[1:]


# --------------------------------------------------------------------------------------------------
# values


def serialize(value: Any) -> tuple[bytes, list[pickle.PickleBuffer]]:
    bufs: list[pickle.PickleBuffer] = []
    try:
        main = pickle.dumps(value, protocol=5, buffer_callback=bufs.append)
    except (pickle.PicklingError, AttributeError, TypeError):
        import cloudpickle

        bufs = []
        main = cloudpickle.dumps(value, protocol=5, buffer_callback=bufs.append)
    return main, bufs


def nbytes(main: bytes, bufs: list[pickle.PickleBuffer]) -> int:
    return len(main) + sum(b.raw().nbytes for b in bufs)


def publish(value: Any, shm_name: str | None, host: str, prealloc: Any = None) -> tuple:
    """Serialize ``value`` into a location descriptor: ``("i", main, [bytes...], size)`` inline or
    ``("s", host, path, main_len, [(off, len)...], size)`` in shared memory."""
    main, bufs = serialize(value)
    size = nbytes(main, bufs)
    if size <= INLINE_MAX or shm_name is None or SHM_DIR is None:
        return ("i", main, [b.raw().tobytes() for b in bufs], size)
    path = os.path.join(SHM_DIR, shm_name)
    layout = []
    off = _round(len(main))
    for b in bufs:
        n = b.raw().nbytes
        layout.append((off, n))
        off = _round(off + n)
    spare = prealloc(off) if prealloc is not None else None
    if spare is not None:  # a never-used, already allocated segment: the copy below then runs at memcpy speed
        os.rename(spare, path)
        fd = os.open(path, os.O_RDWR)
    else:
        fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o600)
    try:
        os.ftruncate(fd, max(off, 1))
        _pwrite_all(fd, memoryview(main), 0)
        for (o, _n), b in zip(layout, bufs):
            _pwrite_all(fd, b.raw(), o)
    finally:
        os.close(fd)
    return ("s", host, path, len(main), layout, size)


def _pwrite_all(fd: int, mv: memoryview, off: int) -> None:
    mv = mv.cast("B")
    while len(mv):
        n = os.pwrite(fd, mv[: 1 << 30], off)
        mv = mv[n:]
        off += n


def _round(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


def load(desc: tuple) -> Any:
    """Materialise a value from an inline or same-host shared-memory descriptor (zero-copy for shm)."""
    if desc[0] == "i":
        return pickle.loads(desc[1], buffers=desc[2])
    if desc[0] == "s":
        _, _host, path, main_len, layout, _size = desc
        with open(path, "rb") as f:
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        mv = memoryview(mm)
        return pickle.loads(mv[:main_len], buffers=[mv[o : o + n] for o, n in layout])
    if desc[0] == "b":  # fetched bytes of a shm file: ("b", buffer, main_len, layout)
        _, buf, main_len, layout = desc
        mv = memoryview(buf)
        return pickle.loads(mv[:main_len], buffers=[mv[o : o + n] for o, n in layout])
    raise ValueError(f"unknown data descriptor {desc[0]!r}")


def read_file_buffer(path: str) -> memoryview:
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return memoryview(b"")
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    return memoryview(mm)


def unlink_quiet(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
