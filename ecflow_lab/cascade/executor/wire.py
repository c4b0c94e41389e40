"""Wire format and data plane of the executor.

Every ZeroMQ message is ``[mac, body, *buffers]``: ``mac`` is a keyed BLAKE2b digest (the cluster secret is
the key) over all following frames. :func:`recv` checks the MAC *before* anything is unpickled, so a
process without the secret can neither join the cluster nor get a single byte of its input unpickled.

Values move as pickle protocol 5 with out-of-band buffers: small ones inline in messages, large ones
written once into a shared-memory file (``/dev/shm``) that same-host readers map zero-copy (copy-on-write)
and that the host agent serves to other hosts. Readers hold a shared lock while they map a segment; when a
run frees a large segment it goes back to the worker that wrote it, which reuses its pages (allocated and
mapped already) for its next large output once no lock is left, so repeated hand-offs copy at memory speed.

A large value with no such segment at hand (the first hand-off of its size) is not copied into shared memory
at all: its descriptor names the writer's process and the buffers' addresses, and a same-host reader copies
them straight into its own memory with ``process_vm_readv`` (fresh shared-memory pages cost a page fault
each, 4 kB at a time; private memory takes 2 MB transparent huge pages), see :func:`vm_setup`.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import hashlib
import hmac
import mmap
import os
import pickle
import secrets
import struct
import sys
import threading
from collections.abc import Callable
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


def publish(value: Any, shm_name: str | None, host: str, prealloc: Any = None, release: Any = None,
            serialized: tuple | None = None) -> tuple:
    """Serialize ``value`` into a location descriptor: ``("i", main, [bytes...], size)`` inline or
    ``("s", host, path, main_len, [(off, len)...], size)`` in shared memory.

    ``prealloc(size)`` may hand over a never-used segment as ``(path, mapping)`` whose pages are already
    allocated and mapped, so the one copy runs at memcpy speed instead of faulting in 250k fresh pages.
    ``release(path, mapping)`` takes the writer's mapping (to reuse the pages once the segment is freed, or
    at least to unmap later: unmapping 1 GB costs ~80 ms the consumer need not wait for); without it the
    mapping is closed here. ``serialized``: ``serialize(value)`` when the caller has it already."""
    main, bufs = serialized or serialize(value)
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
    total = max(off, 1)
    spare = prealloc(total) if prealloc is not None else None
    if spare is not None:
        spare_path, mm = spare
        os.rename(spare_path, path)
    else:
        fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o600)
        try:
            os.ftruncate(fd, total)
            mm = mmap.mmap(fd, total)
        finally:
            os.close(fd)
    try:
        mm[: len(main)] = main
        for (o, _n), b in zip(layout, bufs):
            copy_into(mm, o, b.raw())
    except BaseException:
        mm.close()
        unlink_quiet(path)
        raise
    if len(mm) > total:  # a spare bigger than needed: give the tail back (the mapping stays valid below it)
        os.truncate(path, total)
    if release is not None:
        release(path, mm)
    else:
        mm.close()
    return ("s", host, path, len(main), layout, size)


COPY_CHUNK = 32 << 20
RECYCLE_MIN = 16 << 20  # segments at least this big are handed back to their writer for reuse
COPY_THREADS = max(1, min(4, os.cpu_count() or 1))


def copy_into(mm: mmap.mmap, off: int, src: memoryview) -> None:
    """Copy ``src`` into ``mm`` at ``off``; big buffers in parallel slices (numpy releases the GIL while
    copying, and one core cannot saturate memory bandwidth or fault pages in as fast as several)."""
    n = src.nbytes
    if n < 2 * COPY_CHUNK or COPY_THREADS == 1:
        mm[off : off + n] = src  # PickleBuffer.raw() views are 1-D bytes already
        return
    import numpy as np

    dst = np.frombuffer(mm, dtype=np.uint8, count=n, offset=off)
    s = np.frombuffer(src, dtype=np.uint8)
    # (the views die with this call: none outlives the copy, the caller closes the mapping later)
    in_slices(n, COPY_THREADS, lambda a, b: np.copyto(dst[a:b], s[a:b]))


def in_slices(n: int, k: int, work: Any, align: int = 1) -> None:
    """``work(start, end)`` over ``[0, n)`` cut into ``k`` slices (boundaries multiples of ``align``), the
    first in this thread and the others in threads of their own, for calls that let go of the GIL. The
    first exception raised by any slice is raised here, after all have ended."""
    if n <= 0:
        return
    per = -(-n // k)  # ceil(n / k)
    step = -(-per // align) * align  # rounded up to a multiple of align
    cuts = list(range(0, n, step)) + [n]
    errors: list[BaseException] = []

    def run(a: int, b: int) -> None:
        try:
            work(a, b)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(cuts[i], cuts[i + 1])) for i in range(1, len(cuts) - 1)]
    for t in threads:
        t.start()
    run(cuts[0], cuts[1])
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def _round(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


def load(desc: tuple) -> Any:
    """Materialise a value from an inline or same-host shared-memory descriptor (zero-copy for shm)."""
    if desc[0] == "i":
        return pickle.loads(desc[1], buffers=desc[2])
    if desc[0] == "s":
        _, _host, path, main_len, layout, _size = desc
        mv = memoryview(map_segment(path, mmap.ACCESS_COPY))
        return pickle.loads(mv[:main_len], buffers=[mv[o : o + n] for o, n in layout])
    if desc[0] == "b":  # fetched bytes of a shm file: ("b", buffer, main_len, layout)
        _, buf, main_len, layout = desc
        mv = memoryview(buf)
        return pickle.loads(mv[:main_len], buffers=[mv[o : o + n] for o, n in layout])
    raise ValueError(f"unknown data descriptor {desc[0]!r}")


def read_file_buffer(path: str) -> memoryview:
    return memoryview(map_segment(path, mmap.ACCESS_READ))


# Readers of a segment hold a shared open-file-description lock for as long as their mapping lives (the
# mapping keeps the file description open, and OFD locks go with it), so the worker that wrote a segment can
# tell, with one non-blocking exclusive lock attempt, that nobody maps it any more and reuse its pages.
_OFD = sys.platform.startswith("linux") and hasattr(fcntl, "F_OFD_SETLK")


def _flock(kind: int) -> bytes:
    return struct.pack("@hhqqixxxx", kind, os.SEEK_SET, 0, 0, 0)


def map_segment(path: str, access: int) -> mmap.mmap | bytearray:
    """Map a published segment, holding a reader lock for the mapping's lifetime. Where the lock cannot be
    taken, a private copy is returned instead, so that a writer reusing the segment can never change it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if os.fstat(fd).st_size == 0:  # nothing to map (mmap refuses empty files)
            return bytearray()
        if _OFD:
            try:
                fcntl.fcntl(fd, fcntl.F_OFD_SETLKW, _flock(fcntl.F_RDLCK))
            except OSError:
                size = os.fstat(fd).st_size
                buf = bytearray(size)
                mv, off = memoryview(buf), 0
                while off < size:
                    n = os.preadv(fd, [mv[off:]], off)
                    if n <= 0:
                        raise OSError(f"short read of {path}") from None
                    off += n
                return buf
        return mmap.mmap(fd, 0, access=access)  # dups fd: the lock lives until the mapping is closed
    finally:
        os.close(fd)


def unreferenced(path: str) -> bool:
    """True when no process maps the segment at ``path`` (no reader lock); always False where unknown."""
    if not _OFD:
        return False
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _flock(fcntl.F_WRLCK))
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # drops the test lock


# --------------------------------------------------------------------------------------------------
# same-host reads of another worker's memory


class VmReadError(OSError):
    """A value could not be read from its writer's memory (no permission, or the writer is gone)."""


VM_MIN = RECYCLE_MIN  # values at least this big may be handed over as ("v", ...) descriptors
VM_CHUNK = 64 << 20
VM_THREADS = COPY_THREADS  # readers faulting in fresh pages in parallel (more than the cores measured no faster)
_PR_SET_PTRACER = 0x59616D61
_libc: Any = None
_vm_mode = os.environ.get("ECFLOW_LAB_CASCADE_VMREAD", "1")  # "0": never; "refuse": readers fail (tests)


@functools.cache
def _iovec_type() -> Any:
    import ctypes

    class IOVec(ctypes.Structure):
        _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]

    return IOVec


def vm_setup(agent_pid: int) -> bool:
    """Prepare this worker for same-host memory reads; True when the writer side may hand out ("v", ...)
    descriptors. Under Yama's ``ptrace_scope`` 1 it names the host agent as its ptracer, which lets the
    agent's other children (its sibling workers, nobody else) read it; scope 2 or 3, a seccomp filter
    without ``process_vm_readv``, or ``ECFLOW_LAB_CASCADE_VMREAD=0`` leave it off."""
    global _libc
    if _vm_mode == "0" or not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        readv = libc.process_vm_readv
    except (OSError, AttributeError):
        return False
    readv.restype = ctypes.c_ssize_t
    readv.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
    try:
        with open("/proc/sys/kernel/yama/ptrace_scope") as f:
            scope = int(f.read().strip() or 0)
    except (OSError, ValueError):
        scope = 0
    if scope >= 2:
        return False
    if scope == 1:
        libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
        if libc.prctl(_PR_SET_PTRACER, agent_pid, 0, 0, 0) != 0:
            return False
    # probe: read 8 bytes of our own memory (a seccomp filter refusing the call shows here)
    src, dst = ctypes.c_uint64(0x5EED), ctypes.c_uint64(0)
    iov = _iovec_type()
    loc, rem = iov(ctypes.addressof(dst), 8), iov(ctypes.addressof(src), 8)
    if readv(os.getpid(), ctypes.byref(loc), 1, ctypes.byref(rem), 1, 0) != 8 or dst.value != 0x5EED:
        return False
    _libc = libc
    return True


_MADV_POPULATE_WRITE = 23  # Linux 5.14+
POPULATE_CHUNK = 32 << 20
FRESH_MIN = 4 << 20  # read buffers at least this big are mappings of their own, faulted in ahead of the copy


@functools.cache
def _madvise() -> Any:
    import ctypes

    try:
        f = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    f.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return f


def _populate_write(addr: int, n: int) -> int:
    """Fault in ``n`` bytes of writable memory at ``addr`` (MADV_POPULATE_WRITE); 0, or the errno
    (EINVAL: the kernel cannot)."""
    import ctypes

    madvise = _madvise()
    if madvise is None:
        return errno.EINVAL
    return 0 if madvise(addr, n, _MADV_POPULATE_WRITE) == 0 else ctypes.get_errno()


def populate(mm: mmap.mmap, stop: Callable[[], bool] | None = None) -> bool:
    """Fault in every page of a writable shared mapping before a copy into it, a chunk at a time, with the
    GIL free (ctypes). One populate of a whole large mapping (``MAP_POPULATE``) holds the process's
    memory-map lock throughout: the worker's main thread could not even allocate meanwhile (measured: a
    0.7 s stall for 1 GiB). False where the kernel cannot (the copy then faults the pages in itself) or
    when ``stop()`` says to give up (checked between chunks)."""
    n = len(mm)
    if not n:
        return False
    with memoryview(mm) as mv:
        base = buffer_address(mv)
    for off in range(0, n, POPULATE_CHUNK):
        if stop is not None and stop():
            return False
        err = _populate_write(base + off, min(POPULATE_CHUNK, n - off))
        if err == errno.EINVAL:
            return False
        if err:
            raise OSError(err, os.strerror(err))
    return True


def buffer_address(buf: memoryview) -> int:
    """The address of a contiguous buffer's first byte (read-only buffers too)."""
    import numpy as np

    return int(np.frombuffer(buf, dtype=np.uint8).ctypes.data) if buf.nbytes else 0


def _start_time(pid: int) -> int:
    """The process's start time (clock ticks since boot): with the pid it names one process for ever."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return -1


_MY_START: tuple[int, int] | None = None


def vm_descriptor(main: bytes, bufs: list[pickle.PickleBuffer], host: str, wid: str, size: int) -> tuple:
    """``("v", host, worker id, pid, start time, main, [(address, length)...], size)``: the value stays
    where it is, in the writer's memory."""
    global _MY_START
    pid = os.getpid()
    if _MY_START is None or _MY_START[0] != pid:
        _MY_START = (pid, _start_time(pid))
    spans = [(buffer_address(b.raw()), b.raw().nbytes) for b in bufs]
    return ("v", host, wid, pid, _MY_START[1], main, spans, size)


def vm_read(desc: tuple) -> Any:
    """Copy a ("v", ...) value out of its writer's memory (chunked, big buffers in parallel slices, since
    faulting in fresh pages is per-core work). Raises :class:`VmReadError` when the read is refused or the
    writer is gone."""
    import ctypes

    import numpy as np

    _, _host, _wid, pid, start, main, spans, _size = desc
    if _libc is None or _vm_mode == "refuse":
        raise VmReadError(errno.EPERM, "process_vm_readv is not available here")
    if _start_time(pid) != start:
        raise VmReadError(errno.ESRCH, f"worker pid {pid} is gone")
    iov = _iovec_type()
    readv = _libc.process_vm_readv
    out = []
    for addr, n in spans:
        if n >= FRESH_MIN:
            # a mapping of our own, not numpy's buffer: numpy asks for transparent huge pages, which made
            # faulting in fresh pages here 2-3x slower on the VMs measured; this leaves the system's policy
            dst = np.frombuffer(mmap.mmap(-1, n, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS), dtype=np.uint8)
        else:
            dst = np.empty(n, dtype=np.uint8)
        base = int(dst.ctypes.data)

        def copy(a: int, b: int, base: int = base, addr: int = addr, fault_in: bool = n >= FRESH_MIN) -> None:
            while a < b:
                k = min(VM_CHUNK, b - a)
                if fault_in and _populate_write(base + a, k):
                    fault_in = False  # the kernel cannot: the copy faults the pages in itself
                loc, rem = iov(base + a, k), iov(addr + a, k)
                got = readv(pid, ctypes.byref(loc), 1, ctypes.byref(rem), 1, 0)
                if got <= 0:
                    err = ctypes.get_errno()
                    raise VmReadError(err, f"cannot read worker pid {pid}'s memory: {os.strerror(err)}")
                a += got

        in_slices(n, max(1, min(VM_THREADS, n // VM_CHUNK)), copy, align=2 << 20)  # whole huge pages
        out.append(dst)
    if _start_time(pid) != start:  # the pid was reused while we read: what we copied is not the value
        raise VmReadError(errno.ESRCH, f"worker pid {pid} is gone")
    return pickle.loads(main, buffers=out)


def unlink_quiet(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
