"""Checkpoint files and the server log, in ecFlow's formats.

Checkpoint (``<host>.<port>.ecf.check``): the definition in state form. The owner thread only takes a text
snapshot; :class:`CheckpointSaver` writes it in its own thread — temp file, fsync, the current file renamed
to ``.b``, the temp file renamed into place, the folder fsynced — so scheduling never waits on the disk and a
crash at any moment leaves a complete checkpoint (the new one or the backup).

Log (``<host>.<port>.ecf.log``): ``XXX:[HH:MM:SS D.M.YYYY] text`` lines, ``XXX`` one of MSG LOG ERR WAR DBG,
as ecflow_ui's timeline parser expects.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

MODES = ("NEVER", "ON_TIME", "ALWAYS")
DEFAULT_INTERVAL = 120
SAVE_ALARM_S = 20.0


def atomic_write(path: str | os.PathLike[str], data: bytes, keep_backup: bool = True) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old or the new file, never a torn one."""
    path = os.fspath(path)
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)
    if keep_backup and os.path.exists(path):
        os.replace(path, path + ".b")
    os.replace(tmp, path)
    try:
        dfd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[str, str] | None:
    """``(text, file)`` of the newest readable checkpoint (the file, else its ``.b`` backup), or None."""
    for p in (os.fspath(path), os.fspath(path) + ".b"):
        try:
            with open(p, encoding="utf-8") as fh:
                return fh.read(), p
        except FileNotFoundError:
            continue
    return None


class CheckpointSaver:
    """Writes checkpoint snapshots in a background thread; the latest snapshot wins.

    ``submit(text)`` returns at once; ``submit(text, wait=True)`` returns when that snapshot is on disk (used
    by an explicit ``checkpt`` request). ``close()`` writes any pending snapshot and stops the thread.
    """

    def __init__(self, path: str | os.PathLike[str], on_error: Callable[[str], None] | None = None) -> None:
        self.path = Path(path)
        self._cond = threading.Condition()
        self._pending: bytes | None = None
        self._submitted = 0
        self._written = 0
        self._closing = False
        self.last_error: str | None = None
        self.last_save_s = 0.0
        self.saves = 0
        self._on_error = on_error
        self._thread = threading.Thread(target=self._run, name="ecflow-lab-checkpoint", daemon=True)
        self._thread.start()

    def submit(self, text: str | bytes, wait: bool = False, timeout: float = 120.0) -> None:
        data = text.encode() if isinstance(text, str) else text
        with self._cond:
            self._pending = data
            self._submitted += 1
            ticket = self._submitted
            self._cond.notify_all()
            if wait:
                end = time.monotonic() + timeout
                while self._written < ticket and self._thread.is_alive():
                    left = end - time.monotonic()
                    if left <= 0:
                        raise RuntimeError(f"checkpoint {self.path} not written after {timeout:.0f} s")
                    self._cond.wait(left)
                if self.last_error:
                    raise RuntimeError(self.last_error)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._closing:
                    self._cond.wait()
                if self._pending is None and self._closing:
                    return
                data, self._pending, ticket = self._pending, None, self._submitted
            t0 = time.perf_counter()
            try:
                atomic_write(self.path, data)
                err = None
            except OSError as exc:
                err = f"checkpoint save to {self.path} failed: {exc}"
            dt = time.perf_counter() - t0
            with self._cond:
                self.last_error = err
                self.last_save_s = dt
                self.saves += 1
                self._written = ticket
                self._cond.notify_all()
            if err and self._on_error:
                self._on_error(err)

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(60)


class ServerLog:
    """The ecFlow-format log file; written by the owner thread, flushed once per loop iteration."""

    def __init__(self, path: str | os.PathLike[str], clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._clock = clock
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the server
        self._recent: deque[str] = deque(maxlen=5000)
        self._stamp_t = -1
        self._stamp = ""

    def _prefix(self) -> str:
        now = int(self._clock())
        if now != self._stamp_t:
            tm = time.localtime(now)
            self._stamp = f"[{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d} {tm.tm_mday}.{tm.tm_mon}.{tm.tm_year}]"
            self._stamp_t = now
        return self._stamp

    def write(self, kind: str, text: str) -> None:
        line = f"{kind}:{self._prefix()} {text}"
        self._recent.append(line)
        self._fh.write(line + "\n")

    def msg(self, text: str) -> None:
        self.write("MSG", text)

    def log(self, text: str) -> None:
        self.write("LOG", text)

    def err(self, text: str) -> None:
        self.write("ERR", text)

    def war(self, text: str) -> None:
        self.write("WAR", text)

    def flush(self) -> None:
        self._fh.flush()

    def tail(self, n: int) -> str:
        """The last ``n`` lines (from memory when possible, else from the file)."""
        self.flush()
        if n <= len(self._recent):
            return "\n".join(list(self._recent)[-n:]) + "\n"
        with open(self.path, encoding="utf-8", errors="replace") as fh:
            lines = deque(fh, maxlen=n)
        return "".join(lines)

    def clear(self) -> None:
        self._fh.close()
        self._fh = open(self.path, "w", encoding="utf-8")  # noqa: SIM115
        self._recent.clear()

    def new_log(self, path: str | os.PathLike[str] | None = None) -> None:
        self._fh.close()
        if path:
            self.path = Path(path)
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115

    def close(self) -> None:
        self._fh.close()
