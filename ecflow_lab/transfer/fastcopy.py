"""Kernel-side file copy with the checksum taken from the copied bytes, overlapped with the copy.

One thread copies with ``os.copy_file_range`` (no user-space copy; falls back to pread/pwrite where the
kernel cannot), the calling thread checksums each finished region of the *destination* through ``mmap``.
The checksum therefore describes exactly the bytes written, even if the source changes meanwhile.
"""

from __future__ import annotations

import mmap
import os
import threading
from collections.abc import Callable

from .wire import CHUNK, Checksum, TransferError

REGION = 64 << 20


class CopyCancelled(Exception):
    """``cancelled()`` returned true between two regions."""


def copy_and_hash(src_fd: int, dst_fd: int, size: int, algo: str, *,
                  progress: Callable[[int], None] | None = None,
                  cancelled: Callable[[], bool] | None = None) -> str:
    """Copy ``size`` bytes from ``src_fd`` to ``dst_fd`` (both at offset 0); return ``algo:hex`` of them."""
    hasher = Checksum(algo)
    if size <= REGION:  # small files: no helper thread, copy then checksum the written bytes
        if cancelled is not None and cancelled():
            raise CopyCancelled()
        copy_only(src_fd, dst_fd, size)
        checksum = hash_file(dst_fd, size, algo)
        if progress is not None:
            progress(size)
        return checksum
    done = 0
    cond = threading.Condition()
    failed: list[BaseException] = []

    def copier() -> None:
        nonlocal done
        try:
            off = 0
            while off < size:
                if cancelled is not None and cancelled():
                    raise CopyCancelled()
                want = min(REGION, size - off)
                got = 0
                while got < want:
                    try:
                        n = os.copy_file_range(src_fd, dst_fd, want - got, off + got, off + got)
                    except OSError:  # EXDEV/ENOSYS/EINVAL on some kernels and file systems
                        data = os.pread(src_fd, min(want - got, CHUNK), off + got)
                        n = os.pwrite(dst_fd, data, off + got) if data else 0
                    if n == 0:
                        raise TransferError(f"source shrank while copying (at {off + got} of {size} bytes)")
                    got += n
                off += want
                with cond:
                    done = off
                    cond.notify()
        except BaseException as exc:
            with cond:
                failed.append(exc)
                cond.notify()

    thread = threading.Thread(target=copier, name="fastcopy", daemon=True)
    thread.start()
    try:
        hashed = 0
        while hashed < size:
            with cond:
                while done <= hashed and not failed:
                    cond.wait()
                if failed:
                    break
                end = done
            with mmap.mmap(dst_fd, end - hashed, prot=mmap.PROT_READ, offset=hashed) as m:
                view = memoryview(m)
                try:
                    for i in range(0, end - hashed, CHUNK):
                        hasher.update(view[i:i + CHUNK])
                finally:
                    view.release()
            hashed = end
            if progress is not None:
                progress(hashed)
    finally:
        thread.join()
    if failed:
        raise failed[0]
    return hasher.hexdigest()


def copy_only(src_fd: int, dst_fd: int, size: int) -> None:
    """Kernel-side copy of ``size`` bytes (offset 0 to offset 0), like ``cp``."""
    off = 0
    while off < size:
        try:
            n = os.copy_file_range(src_fd, dst_fd, min(REGION, size - off), off, off)
        except OSError:
            data = os.pread(src_fd, min(CHUNK, size - off), off)
            n = os.pwrite(dst_fd, data, off) if data else 0
        if n == 0:
            raise TransferError(f"source shrank while copying (at {off} of {size} bytes)")
        off += n


def hash_file(fd: int, size: int, algo: str) -> str:
    """``algo:hex`` of an open file's first ``size`` bytes, read through mmap (no copies)."""
    hasher = Checksum(algo)
    if size:
        with mmap.mmap(fd, size, prot=mmap.PROT_READ) as m:
            view = memoryview(m)
            try:
                for i in range(0, size, CHUNK):
                    hasher.update(view[i:i + CHUNK])
            finally:
                view.release()
    return hasher.hexdigest()
