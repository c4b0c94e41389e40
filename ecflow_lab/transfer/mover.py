"""A data mover: receives pushed content, retrieves sources, keeps them in the data store, delivers them.

Sockets (all owned by the loop thread):

* a DEALER to the master (identity = mover name): heartbeats listing running jobs, job results, progress;
  the master sends ``fetch`` / ``deliver`` / ``cancel`` jobs and ``stored_ack``;
* a ROUTER that clients stream sync pushes to: ``{"op": "begin", ...}``, then ``[b"D", bytes]`` frames,
  then ``{"op": "end", "checksum": ...}``. Content is written to a temporary store file and checksummed while
  it arrives (hashing on a helper thread, so disk writes and hashing overlap); the mover tells the master,
  and answers the client only once the master has committed the data file;
* an inproc PULL where the worker threads (retrievals and deliveries) report.

Deliveries reuse connections to a destination (SFTP sessions are expensive) from a small pool.
"""

from __future__ import annotations

import hmac
import logging
import os
import queue
import signal
import socket
import stat
import tempfile
import threading
import time
import urllib.parse
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from ..security import ClientCurve, CurveServer
from . import wire
from .destinations import Cancelled, Connection, Destination, deliver, make_destination
from .fastcopy import CopyCancelled, copy_and_hash, copy_only, hash_file
from .master import upload_token
from .wire import CHUNK, Checksum, TransferError, decode, encode

log = logging.getLogger("ecflow_lab.transfer.mover")


@dataclass
class Upload:
    dfid: int
    size: int
    store_path: str
    tmp: Path
    fd: int
    hasher: Checksum
    hash_pool: ThreadPoolExecutor
    received: int = 0
    last: float = field(default_factory=time.monotonic)
    pending: Future | None = None
    error: str | None = None
    finished: bool = False


class _Pool:
    """Idle connections per destination, reused across deliveries and closed after ``idle`` seconds."""

    def __init__(self, idle: float = 30.0) -> None:
        self.idle = idle
        self._lock = threading.Lock()
        self._free: dict[str, list[tuple[Connection, float]]] = {}

    def acquire(self, dest: Destination) -> Connection:
        with self._lock:
            free = self._free.get(dest.url, [])
            while free:
                conn, _ = free.pop()
                if conn.alive():
                    return conn
                conn.close()
        return dest.connect()

    def release(self, dest: Destination, conn: Connection) -> None:
        with self._lock:
            self._free.setdefault(dest.url, []).append((conn, time.monotonic()))

    def sweep(self, everything: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            for key, free in self._free.items():
                keep = []
                for conn, t in free:
                    if everything or now - t > self.idle:
                        try:
                            conn.close()
                        except Exception:
                            pass
                    else:
                        keep.append((conn, t))
                self._free[key] = keep


class Mover:
    """One data mover. ``run()`` serves in the calling thread until :meth:`stop`."""

    def __init__(self, master: str, secret: bytes, store: str | Path, *, name: str | None = None,
                 host: str = "127.0.0.1", threads: int = 8, heartbeat: float = 0.5,
                 upload_timeout: float = 120.0, fsync: bool = False, exit_with_parent: bool = False,
                 ssl: str | None = None, keys: str | Path | None = None) -> None:
        self.master = master
        #: ECF_SSL setting: the master connection is a Curve client and the data socket (pushes from
        #: clients) a Curve server with the master's keypair, both from the key directory ``keys``
        self.ssl = ssl
        self.keys = keys
        self.secret = secret
        self.store = Path(store).resolve()
        self.store.mkdir(parents=True, exist_ok=True)
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.host = host
        self.threads = threads
        self.heartbeat = heartbeat
        self.upload_timeout = upload_timeout
        self.fsync = fsync
        self._parent = os.getppid() if exit_with_parent else None
        self.data_addr = ""
        self.data_ipc = ""
        self.data_fd = ""
        self._fd_listener: socket.socket | None = None
        self._fd_path: Path | None = None
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._active: dict[tuple[str, int], tuple[int, threading.Event]] = {}
        self._uploads: dict[bytes, Upload] = {}
        self._waiting_ack: dict[str, bytes] = {}
        self._uploads_done: dict[str, str] = {}
        self._results: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self._pool = _Pool()
        self._dests: dict[str, Destination] = {}
        self._wake_addr = f"inproc://mover-wake-{uuid.uuid4().hex}"
        self._wake_lock = threading.Lock()
        self._wake_sock: zmq.Socket | None = None
        self._writer: queue.Queue = queue.Queue(maxsize=16)
        self._data_paused = False

    def stop(self) -> None:
        self._stop.set()

    # ------------------------------------------------------------------------------------------ loop

    def run(self) -> None:
        ctx = zmq.Context.instance()
        mhost, _, mport = self.master.rpartition("/")[2].rpartition(":")
        curve = CurveServer.from_setting(self.ssl, mhost, mport, directory=self.keys) if self.ssl else None
        try:
            self._run(ctx, curve, mhost, mport)
        finally:
            if curve is not None:
                curve.close()

    def _run(self, ctx: zmq.Context, curve: CurveServer | None, mhost: str, mport: str) -> None:
        ctl = ctx.socket(zmq.DEALER)
        ctl.setsockopt(zmq.IDENTITY, self.name.encode())
        ctl.setsockopt(zmq.LINGER, 0)
        ctl.setsockopt(zmq.RECONNECT_IVL, 100)
        ctl.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
        if self.ssl:  # keeps reconnecting like a plain mover (the master may restart); a refusal is logged there
            ClientCurve(self.ssl, directory=self.keys).secure(ctl, mhost, mport)
        ctl.connect(self.master)
        data = curve.socket(zmq.ROUTER) if curve is not None else ctx.socket(zmq.ROUTER)
        data.setsockopt(zmq.LINGER, 0)
        data.setsockopt(zmq.RCVHWM, 8)
        data.setsockopt(zmq.RCVBUF, 4 << 20)
        port = data.bind_to_random_port(f"tcp://{self.host}")
        self.data_addr = f"tcp://{self.host}:{port}"
        self.data_ipc = ""
        if hasattr(socket, "AF_UNIX"):  # same-host clients push over a Unix socket: ~1.5x less CPU than TCP
            path = Path(tempfile.gettempdir()) / f"ecpds-mover-{uuid.uuid4().hex[:12]}.sock"
            data.bind(f"ipc://{path}")
            self.data_ipc = f"ipc://{path}"
            self._fd_path = path.with_suffix(".fd")
            self._fd_listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._fd_listener.bind(str(self._fd_path))
            self._fd_listener.listen(64)
            self._fd_listener.setblocking(False)
            self.data_fd = str(self._fd_path)
        wake = ctx.socket(zmq.PULL)
        wake.bind(self._wake_addr)
        self._wake_sock = ctx.socket(zmq.PUSH)
        self._wake_sock.connect(self._wake_addr)
        workers = ThreadPoolExecutor(self.threads, thread_name_prefix=f"mover-{self.name}")
        # pushes get their own threads: a job script's push never waits behind slow deliveries
        uploads = ThreadPoolExecutor(max(2, self.threads // 2), thread_name_prefix=f"push-{self.name}")
        poller = zmq.Poller()
        for s in (ctl, data, wake):
            poller.register(s, zmq.POLLIN)
        if self._fd_listener is not None:
            poller.register(self._fd_listener.fileno(), zmq.POLLIN)
        writer = threading.Thread(target=self._write_loop, name=f"store-writer-{self.name}", daemon=True)
        writer.start()
        data_polled = True
        outbox: list[dict[str, Any]] = []
        last_hb = 0.0
        last_sweep = time.monotonic()
        self.ready.set()
        log.info("mover %s: data on %s, master %s", self.name, self.data_addr, self.master)
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if now - last_hb >= self.heartbeat:
                    last_hb = now
                    self._send_master(ctl, self._hb(), drop=True)
                events = dict(poller.poll(max(1, int(1000 * (self.heartbeat - (time.monotonic() - last_hb))))))
                if data in events:
                    for _ in range(64):
                        if self._writer.full():
                            break
                        try:
                            frames = data.recv_multipart(zmq.NOBLOCK, copy=False)
                        except zmq.Again:
                            break
                        self._on_data(data, ctl, frames)
                # flow control: while the writer is behind, leave pushed data in the socket (back-pressure)
                if self._writer.full() == data_polled:
                    data_polled = not data_polled
                    self._data_paused = not data_polled
                    poller.modify(data, zmq.POLLIN if data_polled else 0)
                if ctl in events:
                    while True:
                        try:
                            frames = ctl.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        self._on_master(ctl, data, workers, frames)
                if self._fd_listener is not None and self._fd_listener.fileno() in events:
                    self._accept_fd_push(uploads)
                if wake in events:
                    while True:
                        try:
                            wake.recv(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                while True:
                    try:
                        res = self._results.get_nowait()
                    except queue.Empty:
                        break
                    if res["op"] == "fd_stored":
                        self._waiting_ack[res["upload"]] = res.pop("conn")
                        res["op"] = "stored"
                    elif res["op"] == "stream_stored":
                        key = uuid.uuid4().hex
                        self._waiting_ack[key] = res.pop("ident")
                        self._uploads_done[key] = res["store_path"]
                        res.update(op="stored", upload=key)
                    elif res["op"] == "stream_failed":
                        data.send_multipart([res.pop("ident"), encode({"ok": False, "error": res["error"]})])
                        res["op"] = "upload_failed"
                    elif res["op"] in ("upload_failed", "checksummed"):
                        pass
                    elif res["op"] != "progress":
                        self._active.pop((res["kind"], res["id"]), None)
                    outbox.append(res)
                while outbox and self._send_master(ctl, outbox[0]):
                    outbox.pop(0)
                if self._parent is not None and os.getppid() != self._parent:
                    log.warning("owner process %s is gone: stopping", self._parent)
                    break
                if time.monotonic() - last_sweep > 5:
                    last_sweep = time.monotonic()
                    self._pool.sweep()
                    self._expire_uploads(ctl)
        finally:
            for _, ev in self._active.values():
                ev.set()
            workers.shutdown(wait=True, cancel_futures=True)
            uploads.shutdown(wait=True, cancel_futures=True)
            for up in list(self._uploads.values()):
                self._writer.put(("abort", up))
            self._writer.put(None)
            writer.join()
            self._pool.sweep(everything=True)
            for s in (ctl, data, wake, self._wake_sock):
                s.close(0)
            if self.data_ipc:
                Path(self.data_ipc[len("ipc://"):]).unlink(missing_ok=True)
            if self._fd_listener is not None:
                self._fd_listener.close()
                self._fd_path.unlink(missing_ok=True)
            for pending in self._waiting_ack.values():
                if isinstance(pending, socket.socket):
                    pending.close()

    def _hb(self) -> dict[str, Any]:
        return {"op": "hb", "name": self.name, "data_addr": self.data_addr, "data_ipc": self.data_ipc,
                "data_fd": self.data_fd,
                "store": str(self.store),
                "host": socket.gethostname(), "capacity": self.threads,
                "active": [[k, i, a] for (k, i), (a, _) in list(self._active.items())]}

    def _send_master(self, ctl: zmq.Socket, msg: dict[str, Any], drop: bool = False) -> bool:
        msg = dict(msg, key=self.secret.hex(), name=self.name)
        try:
            ctl.send(encode(msg), zmq.NOBLOCK)
            return True
        except zmq.Again:
            return drop

    def _report(self, msg: dict[str, Any]) -> None:
        """Called from worker threads: queue a result and wake the loop."""
        self._results.put(msg)
        self._wake()

    def _wake(self) -> None:
        with self._wake_lock:
            if self._wake_sock is not None and not self._wake_sock.closed:
                self._wake_sock.send(b"", zmq.NOBLOCK)

    # ------------------------------------------------------------------------------------------ jobs

    def _on_master(self, ctl: zmq.Socket, data: zmq.Socket, workers: ThreadPoolExecutor,
                   frames: list[bytes]) -> None:
        try:
            msg = decode(frames[0])
        except wire.ProtocolError as exc:
            log.error("bad message from master: %s", exc)
            return
        op = msg.get("op")
        if op in ("fetch", "deliver"):
            kind = "f" if op == "fetch" else "t"
            key = (kind, int(msg["id"]))
            old = self._active.get(key)
            if old:
                old[1].set()
            ev = threading.Event()
            self._active[key] = (int(msg["attempt"]), ev)
            workers.submit(self._do_fetch if op == "fetch" else self._do_deliver, msg, ev)
        elif op == "cancel":
            key = (str(msg["kind"]), int(msg["id"]))
            cur = self._active.get(key)
            if cur and cur[0] == msg.get("attempt"):
                cur[1].set()
                del self._active[key]
        elif op == "stored_ack":
            ident = self._waiting_ack.pop(str(msg.get("upload")), None)
            if ident is not None:
                if msg.get("ok"):
                    reply = {"ok": True, "id": msg["id"], "message": msg.get("message")}
                else:
                    reply = {"ok": False, "error": msg.get("error")}
                    self._remove_store_file(str(self._uploads_done.pop(str(msg.get("upload")), "")))
                if isinstance(ident, socket.socket):
                    _answer_fd_client(ident, reply)
                else:
                    data.send_multipart([ident, encode(reply)])
            self._uploads_done.pop(str(msg.get("upload")), None)
        elif not msg.get("ok", True):
            log.error("master refused: %s", msg.get("error"))

    def _remove_store_file(self, rel: str) -> None:
        if rel:
            try:
                (self.store / rel).unlink()
            except OSError:
                pass

    def _progress_cb(self, kind: str, msg: dict[str, Any]):
        def cb(n: int) -> None:
            self._report({"op": "progress", "kind": kind, "id": msg["id"], "attempt": msg["attempt"], "bytes": n})
        return cb

    def _do_fetch(self, msg: dict[str, Any], cancel: threading.Event) -> None:
        """Retrieve a -groupby source into the store (checksummed), then report."""
        base = {"kind": "f", "id": msg["id"], "attempt": msg["attempt"]}
        t0 = time.monotonic()
        rel = str(msg["store_path"])
        final = self.store / rel
        tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.part")
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            algo = msg.get("checksum") or "sha256"
            progress = self._progress_cb("f", msg)
            src_path = str(msg["source"])
            if not src_path.startswith("sftp://"):
                if not stat.S_ISREG(os.stat(src_path).st_mode):
                    raise TransferError(f"source {src_path} is not a regular file")
                with open(src_path, "rb") as src:
                    n = os.fstat(src.fileno()).st_size
                    checksum = _copy_and_hash(src.fileno(), tmp, n, algo, self.fsync, progress=progress,
                                              cancelled=cancel.is_set)
            else:
                hasher = Checksum(algo)
                n, last = 0, time.monotonic()
                with self._open_source(msg) as src, open(tmp, "wb") as out:
                    while True:
                        if cancel.is_set():
                            raise Cancelled()
                        buf = src.read(CHUNK)
                        if not buf:
                            break
                        out.write(buf)
                        hasher.update(buf)
                        n += len(buf)
                        if time.monotonic() - last > 0.25:
                            last = time.monotonic()
                            progress(n)
                checksum = hasher.hexdigest()
            if msg.get("size") is not None and n != int(msg["size"]):
                raise TransferError(f"source {msg['source']} has {n} bytes, {msg['size']} were registered")
            os.replace(tmp, final)
            self._report({**base, "op": "fetched", "size": n, "checksum": checksum, "store_path": rel,
                          "store_root": str(self.store), "seconds": time.monotonic() - t0})
        except (Cancelled, CopyCancelled):
            tmp.unlink(missing_ok=True)
            self._report({**base, "op": "cancelled"})
        except Exception as exc:
            tmp.unlink(missing_ok=True)
            self._report({**base, "op": "fetch_failed", "error": _err(exc)})

    def _open_source(self, msg: dict[str, Any]):
        src = str(msg["source"])
        if src.startswith("sftp://"):
            u = urllib.parse.urlsplit(src)
            dest = self._dest({"name": f"source-{u.netloc}", "url": urllib.parse.urlunsplit(u._replace(path="/")),
                               "options": {}})
            conn = dest.connect()
            f = conn.open_read(urllib.parse.unquote(u.path))
            return _ClosingBoth(f, conn)
        return open(src, "rb")

    def _dest(self, d: dict[str, Any]) -> Destination:
        key = f"{d['name']}|{d['url']}|{sorted((d.get('options') or {}).items())!r}"
        dest = self._dests.get(key)
        if dest is None:
            dest = self._dests[key] = make_destination(d["name"], d["url"], d.get("options") or {})
        return dest

    def _do_deliver(self, msg: dict[str, Any], cancel: threading.Event) -> None:
        """Copy a stored file to its destination (temporary name, checksum, rename), then report."""
        base = {"kind": "t", "id": msg["id"], "attempt": msg["attempt"]}
        t0 = time.monotonic()
        try:
            dest = self._dest(msg["destination"])
            root = msg.get("store_root")
            path = Path(root) / msg["store_path"] if root else Path(msg["store_path"])
            conn = self._pool.acquire(dest)
            ok = False
            try:
                with open(path, "rb") as src:
                    final, got = deliver(conn, dest, src, msg["target"], msg.get("size"), msg.get("checksum"),
                                         tag=f"{msg['id']}-{msg['attempt']}",
                                         progress=self._progress_cb("t", msg), cancelled=cancel.is_set)
                ok = True
            finally:
                if ok:
                    self._pool.release(dest, conn)
                else:
                    try:
                        conn.close()
                    except Exception:
                        pass
            self._report({**base, "op": "delivered", "path": final, "checksum": got,
                          "bytes": int(msg.get("size") or 0) if msg.get("size") is not None else os.path.getsize(path),
                          "seconds": time.monotonic() - t0})
        except (Cancelled, CopyCancelled):
            self._report({**base, "op": "cancelled"})
        except Exception as exc:
            self._report({**base, "op": "deliver_failed", "error": _err(exc)})

    # ------------------------------------------------------------------------------------------ uploads

    def _on_data(self, data: zmq.Socket, ctl: zmq.Socket, frames: list[zmq.Frame]) -> None:
        """Streamed pushes: the loop only enqueues; the writer thread writes and checksums."""
        ident = frames[0].bytes
        if len(frames) == 3 and frames[1].bytes == b"D":
            up = self._uploads.get(ident)
            if up is not None:
                up.last = time.monotonic()
                self._writer.put(("data", up, frames[2]))
            return
        try:
            msg = decode(frames[1].bytes)
        except (wire.ProtocolError, IndexError) as exc:
            data.send_multipart([ident, encode({"ok": False, "error": str(exc)})])
            return
        op = msg.get("op")
        if op == "begin":
            self._begin_upload(data, ident, msg)
        elif op == "end":
            up = self._uploads.pop(ident, None)
            if up is None:
                data.send_multipart([ident, encode({"ok": False, "error": "no upload in progress"})])
            else:
                self._writer.put(("end", up, ident, msg.get("checksum")))
        elif op == "ping":
            data.send_multipart([ident, encode({"ok": True, "name": self.name})])
        else:
            data.send_multipart([ident, encode({"ok": False, "error": f"unknown op {op!r}"})])

    def _begin_upload(self, data: zmq.Socket, ident: bytes, msg: dict[str, Any]) -> None:
        old = self._uploads.pop(ident, None)
        if old:
            self._writer.put(("abort", old))
        try:
            dfid, size, rel = int(msg["id"]), int(msg["size"]), str(msg["store_path"])
            expect = upload_token(self.secret, dfid, size, rel)
            if not hmac.compare_digest(expect, str(msg.get("token"))):
                raise TransferError("upload refused: bad token (this mover does not belong to that master)")
            final = self.store / rel
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.part")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            st = os.statvfs(self.store)
            if size > st.f_bavail * st.f_frsize:
                os.close(fd)
                tmp.unlink(missing_ok=True)
                raise TransferError(f"data store {self.store} has no room for {size} bytes")
            self._uploads[ident] = Upload(dfid, size, rel, tmp, fd, Checksum(msg.get("algo") or "sha256"),
                                          ThreadPoolExecutor(1, thread_name_prefix="hash"))
        except (TransferError, KeyError, ValueError, OSError) as exc:
            data.send_multipart([ident, encode({"ok": False, "error": _err(exc)})])

    def _write_loop(self) -> None:
        """Writer thread: store writes and checksums of streamed pushes, in arrival order."""
        while True:
            item = self._writer.get()
            if self._data_paused:  # the loop stopped reading pushed data because we were behind
                self._data_paused = False
                self._wake()
            if item is None:
                return
            kind, up = item[0], item[1]
            if kind == "data":
                if up.error:
                    continue
                buf = item[2].buffer
                try:
                    _write_all(up.fd, buf)
                except OSError as exc:
                    up.error = f"store write failed: {exc}"
                    continue
                if up.pending is not None:
                    up.pending.result()
                up.pending = up.hash_pool.submit(up.hasher.update, buf)
                up.received += len(buf)
            elif kind == "abort":
                _discard_upload(up)
            elif kind == "end":
                ident, client_checksum = item[2], item[3]
                try:
                    if up.pending is not None:
                        up.pending.result()
                    up.hash_pool.shutdown(wait=True)
                    if up.error:
                        raise TransferError(up.error)
                    if up.received != up.size:
                        raise TransferError(f"received {up.received} bytes, {up.size} announced")
                    got = up.hasher.hexdigest()
                    if client_checksum and client_checksum != got:
                        raise TransferError(f"checksum mismatch: client sent {client_checksum}, mover computed {got}")
                    if self.fsync:
                        os.fsync(up.fd)
                    os.close(up.fd)
                    up.fd = -1
                    os.replace(up.tmp, self.store / up.store_path)
                except Exception as exc:
                    _discard_upload(up)
                    self._report({"op": "stream_failed", "ident": ident, "id": up.dfid, "error": _err(exc)})
                    continue
                self._report({"op": "stream_stored", "ident": ident, "id": up.dfid, "size": up.received,
                              "checksum": got, "store_path": up.store_path, "store_root": str(self.store)})

    # ------------------------------------------------------------------------------------------ same-host push

    def _accept_fd_push(self, workers: ThreadPoolExecutor) -> None:
        """A same-host client hands over an open descriptor of its file instead of streaming the bytes."""
        while True:
            try:
                conn, _ = self._fd_listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            conn.setblocking(True)
            conn.settimeout(30)
            workers.submit(self._do_fd_push, conn)

    def _do_fd_push(self, conn: socket.socket) -> None:
        """Copy the client's file into the store in the kernel (copy_file_range) while a second thread
        checksums the stored bytes right behind the copy; then ask the master to commit."""
        src_fd = -1
        try:
            msg, fds, _, _ = socket.recv_fds(conn, 65536, 1)
            src_fd = fds[0] if fds else -1
            hdr = decode(msg.split(b"\n", 1)[0])
            dfid, size, rel = int(hdr["id"]), int(hdr["size"]), str(hdr["store_path"])
            if not hmac.compare_digest(upload_token(self.secret, dfid, size, rel), str(hdr.get("token"))):
                raise TransferError("upload refused: bad token (this mover does not belong to that master)")
            if src_fd < 0:
                raise TransferError("no file descriptor received")
            st = os.fstat(src_fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size != size:
                raise TransferError(f"source is not a regular file of {size} bytes")
            final = self.store / rel
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.part")
            dst_fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                copy_only(src_fd, dst_fd, size)
                if os.fstat(dst_fd).st_size != size:
                    raise TransferError(f"stored {os.fstat(dst_fd).st_size} bytes, {size} announced")
                if self.fsync:
                    os.fsync(dst_fd)
                os.replace(tmp, final)
            except BaseException:
                os.close(dst_fd)
                tmp.unlink(missing_ok=True)
                raise
        except Exception as exc:
            _answer_fd_client(conn, {"ok": False, "error": _err(exc)})
            if "dfid" in locals():
                self._report({"op": "upload_failed", "id": dfid, "error": _err(exc)})
            return
        finally:
            if src_fd >= 0:
                os.close(src_fd)
        # the client gets its ID as soon as the bytes are in the store and committed (cp-like latency);
        # the checksum of the stored bytes follows at once and no delivery starts before it is known
        key = uuid.uuid4().hex
        self._uploads_done[key] = rel
        self._report({"op": "fd_stored", "conn": conn, "upload": key, "id": dfid, "size": size,
                      "checksum": None, "store_path": rel, "store_root": str(self.store)})
        try:
            checksum = hash_file(dst_fd, size, hdr.get("algo") or "sha256")
            self._report({"op": "checksummed", "id": dfid, "checksum": checksum})
        except Exception as exc:
            self._report({"op": "checksummed", "id": dfid, "checksum": None, "error": _err(exc)})
        finally:
            os.close(dst_fd)

    def _expire_uploads(self, ctl: zmq.Socket) -> None:
        now = time.monotonic()
        for ident, up in list(self._uploads.items()):
            if now - up.last > self.upload_timeout:
                del self._uploads[ident]
                self._writer.put(("abort", up))
                self._send_master(ctl, {"op": "upload_failed", "id": up.dfid,
                                        "error": f"client sent nothing for {self.upload_timeout:g}s"})


class _ClosingBoth:
    def __init__(self, f: Any, conn: Connection) -> None:
        self.f, self.conn = f, conn

    def __enter__(self) -> Any:
        return self.f

    def __exit__(self, *exc: Any) -> None:
        try:
            self.f.close()
        finally:
            self.conn.close()


def _discard_upload(up: Upload) -> None:
    if up.pending is not None:
        try:
            up.pending.result()
        except Exception:
            pass
    up.hash_pool.shutdown(wait=True)
    if up.fd >= 0:
        try:
            os.close(up.fd)
        except OSError:
            pass
        up.fd = -1
    up.tmp.unlink(missing_ok=True)


def _answer_fd_client(conn: socket.socket, reply: dict[str, Any]) -> None:
    try:
        conn.sendall(encode(reply) + b"\n")
    except OSError:
        pass
    finally:
        conn.close()


def _copy_and_hash(src_fd: int, dst: Path, size: int, algo: str, fsync: bool, **kw: Any) -> str:
    """Kernel copy of ``src_fd`` into a new file ``dst``, checksummed from the stored bytes."""
    dst_fd = os.open(dst, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        checksum = copy_and_hash(src_fd, dst_fd, size, algo, **kw)
        if fsync:
            os.fsync(dst_fd)
    finally:
        os.close(dst_fd)
    return checksum


def _write_all(fd: int, buf: memoryview) -> None:
    view = memoryview(buf)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _err(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, TransferError) else f"{type(exc).__name__}: {exc}"


def serve(master: str, secret: bytes, store: str | Path, **kwargs: Any) -> None:
    """Run a mover in the foreground until SIGTERM/SIGINT."""
    mover = Mover(master, secret, store, **kwargs)

    def _term(signum: int, frame: Any) -> None:
        mover.stop()

    signal.signal(signal.SIGTERM, _term)
    signal.signal(signal.SIGINT, _term)
    mover.run()
