"""TransferClient: the Python API of the transfer service (what ``ecpds`` and the notebook widget use)."""

from __future__ import annotations

import datetime as _dt
import getpass
import io
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO

import zmq

from ..security import ClientCurve, CurveHandshakeError, KeyFileError, connect_checked
from .wire import CHUNK, Checksum, TransferError, decode, encode, parse_at, parse_duration

DEFAULT_PORT = 2640


def default_master(host: str | None = None, port: int | str | None = None) -> str:
    """The master address from arguments, ``$ECPDS_MASTER``, or ``$ECHOST``/``$ECPORT`` (localhost:2640)."""
    if host is None and port is None and os.environ.get("ECPDS_MASTER"):
        return normalise_address(os.environ["ECPDS_MASTER"])
    host = host or os.environ.get("ECHOST") or "127.0.0.1"
    host = host.split(",")[0].strip()
    if host.startswith("tcp://"):
        return host
    port = port or os.environ.get("ECPORT") or DEFAULT_PORT
    return f"tcp://{host}:{int(port)}"


def normalise_address(address: str) -> str:
    """``host:port`` or ``tcp://host:port`` -> ``tcp://host:port`` (ZeroMQ needs the scheme)."""
    address = address.strip()
    if "://" in address:
        return address
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise TransferError(f"bad master address {address!r} (expected tcp://HOST:PORT or HOST:PORT)")
    return f"tcp://{host or '127.0.0.1'}:{port}"


def _seconds(value: str | float | int | _dt.timedelta | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise TransferError(str(exc)) from None


def _epoch(value: str | float | int | _dt.datetime | None, fmt: str = "yyyyMMddHHmmss") -> float | None:
    if value is None:
        return None
    if isinstance(value, _dt.datetime):
        return value.timestamp()
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return parse_at(value, fmt)
    except ValueError as exc:
        raise TransferError(str(exc)) from None


class TransferClient:
    """Talk to a transfer master: push files, follow them, manage destinations.

    Thread-safe (one request at a time per client); use as a context manager or call :meth:`close`.
    """

    def __init__(self, master: str | None = None, *, host: str | None = None, port: int | None = None,
                 user: str | None = None, password: str | None = None, timeout: float = 30.0,
                 local_handoff: bool = True, ssl: bool | str | None = None,
                 keys: str | os.PathLike | None = None) -> None:
        self.master = normalise_address(master) if master else default_master(host, port)
        #: encryption switch (ecFlow's): None follows ``ECF_SSL``; True/"1" shared keys, "<host>.<port>" one
        #: server's keys, False off. Keys (``server.key``, own ``client`` keypair) come from ``keys``.
        setting = None if ssl is None else ("" if ssl is False else ("1" if ssl is True else str(ssl)))
        self._curve = ClientCurve(setting, directory=keys)
        self._mhost, _, self._mport = self.master.rpartition("/")[2].rpartition(":")
        #: same-host pushes of a file hand its open descriptor to the mover (kernel copy) instead of
        #: streaming the bytes over ZeroMQ; False forces streaming
        self.local_handoff = local_handoff
        self.user, self.password = user, password
        self.timeout = timeout
        self._ctx = zmq.Context.instance()
        self._lock = threading.RLock()
        self._sock: zmq.Socket | None = None
        self._rid = 0
        try:
            self._unix_user = getpass.getuser()
        except Exception:
            self._unix_user = str(os.getuid())

    def __enter__(self) -> TransferClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close(0)
                self._sock = None

    # ------------------------------------------------------------------------------------------ requests

    def request(self, op: str, timeout: float | None = None, **fields: Any) -> dict[str, Any]:
        """Send one request and return the reply; TransferError on a refusal or no answer in time."""
        timeout = self.timeout if timeout is None else timeout
        with self._lock:
            if self._sock is None:
                self._sock = self._connect(zmq.DEALER, self.master, min(timeout, 10.0), check=True)
            self._rid += 1
            hdr = {"op": op, "rid": self._rid, "unix_user": self._unix_user, **fields}
            if self.user:
                hdr.update(user=self.user, password=self.password)
            self._sock.send(encode(hdr))
            deadline = time.monotonic() + timeout
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not self._sock.poll(int(left * 1000) + 1):
                    self._sock.close(0)
                    self._sock = None
                    raise TransferError(f"no answer from the transfer master at {self.master} within {timeout:g}s")
                reply = decode(self._sock.recv())
                if reply.get("rid") == self._rid:
                    break
            if not reply.get("ok"):
                raise TransferError(reply.get("error") or "request refused")
            return reply

    def enable_ssl(self, setting: str = "1") -> None:
        """Encrypt the following connections with CurveZMQ (as ``ECF_SSL``; keys from ``ecflow-lab keys``)."""
        self.close()
        self._curve.enable_ssl(setting)

    def disable_ssl(self) -> None:
        """Talk in clear from the next connection on."""
        self.close()
        self._curve.disable_ssl()

    @property
    def ssl(self) -> bool:
        return self._curve.enabled

    def _connect(self, kind: int, endpoint: str, timeout: float = 10.0, *, check: bool = False) -> zmq.Socket:
        """A new socket connected to ``endpoint`` (a master or mover address).

        With encryption on it is a Curve client of the master's keys, and the handshake is awaited so that a
        refused key gives a clear TransferError at once instead of a request that hangs. A plain connection
        with ``check`` is watched too, so that a master that requires encryption says so at once.
        """
        sock = self._ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        if not self._curve.enabled:
            if check:
                try:
                    connect_checked(sock, endpoint, timeout=min(timeout, 3.0))
                except CurveHandshakeError as exc:
                    sock.close(0)
                    if "requires Curve" in exc.reason:
                        raise TransferError(f"the transfer master at {endpoint} refused a plain connection: "
                                            f"{exc.reason}") from None
                    sock = self._ctx.socket(kind)   # nobody answered yet: keep trying, as a plain client does
                    sock.setsockopt(zmq.LINGER, 0)
                    sock.connect(endpoint)
            else:
                sock.connect(endpoint)
            return sock
        try:
            self._curve.secure(sock, self._mhost, self._mport)
            connect_checked(sock, endpoint, timeout=timeout, hint=f"keys in {self._curve.directory}")
        except (CurveHandshakeError, KeyFileError) as exc:
            sock.close(0)
            raise TransferError(f"encrypted connection to {endpoint} refused: {exc}") from exc
        return sock

    def ping(self) -> dict[str, Any]:
        return self.request("ping")

    # ------------------------------------------------------------------------------------------ pushes

    def _options(self, destination: str | list[str], *, priority: int | None, lifetime: Any, delay: Any, at: Any,
                 at_format: str, metadata: dict[str, Any] | None, version: str | None, identity: str | None,
                 standby: bool, asap: bool, requeue: bool, force: bool, caller: str | None) -> dict[str, Any]:
        return {"destination": destination, "priority": priority, "lifetime": _seconds(lifetime),
                "delay": _seconds(delay), "at": _epoch(at, at_format), "metadata": metadata or {},
                "version": version, "identity": identity, "standby": standby, "asap": asap, "requeue": requeue,
                "force": force, "caller": caller or os.environ.get("EC_job_stdout") or os.environ.get("ECF_JOBOUT"),
                "source_host": socket.gethostname()}

    def push(self, source: str | os.PathLike | bytes | BinaryIO, destination: str | list[str],
             target: str | None = None, *, groupby: str | None = None, priority: int | None = None,
             lifetime: str | float | None = None, delay: str | float | None = None,
             at: str | float | _dt.datetime | None = None, at_format: str = "yyyyMMddHHmmss",
             metadata: dict[str, Any] | None = None, version: str | None = None, identity: str | None = None,
             standby: bool = False, asap: bool = False, requeue: bool = False, force: bool = False,
             remove: bool = False, noretrieval: bool = False, caller: str | None = None,
             progress: Callable[[int, int], None] | None = None, verify: bool = False) -> int:
        """Submit one file and return its Data File ID.

        Without ``groupby`` the content is streamed now to a data mover (sync push) and the ID is returned once
        it is stored and committed. With ``groupby`` only the metadata is registered and a mover retrieves
        ``source`` (a path on this host) later. ``source`` may also be bytes or a binary file object (then
        ``target`` is required). ``remove`` deletes the source after a successful sync push. ``verify`` also
        checksums the source here, so the mover proves it stored exactly those bytes (costs one more pass).
        """
        if requeue and force:
            raise TransferError("-force and -requeue cannot be used together")
        if groupby and remove:
            raise TransferError("-remove is not allowed with -groupby")
        if noretrieval and not groupby:
            raise TransferError("-noretrieval needs -groupby")
        opts = self._options(destination, priority=priority, lifetime=lifetime, delay=delay, at=at,
                             at_format=at_format, metadata=metadata, version=version, identity=identity,
                             standby=standby, asap=asap, requeue=requeue, force=force, caller=caller)
        path: Path | None = None
        if isinstance(source, (str, os.PathLike)):
            path = Path(source).absolute()
            if not path.is_file():
                raise TransferError(f"-source {path}: no such file")
        elif target is None:
            raise TransferError("-target is required when the content comes from stdin or memory")
        target = _target_for(target, path)
        if groupby:
            if path is None:
                raise TransferError("-groupby needs a -source file the movers can retrieve")
            reply = self.request("put", groupby=groupby, noretrieval=noretrieval, files=[
                {"source": str(path), "size": path.stat().st_size, "target": target}], **opts)
            self.last_message = reply.get("message", "")
            return int(reply["id"])
        if isinstance(source, (bytes, bytearray, memoryview)):
            stream: BinaryIO = io.BytesIO(source)
            size = len(source)
        elif path is not None:
            stream = open(path, "rb")  # noqa: SIM115 - closed below
            size = os.fstat(stream.fileno()).st_size
        else:
            stream, size = _spool(source)
        try:
            reply = self.request("put", files=[{"target": target, "size": size, "source": str(path or "-")}],
                                 **opts)
            fd_path = reply.get("mover_fd") or ""
            if (self.local_handoff and path is not None and not verify and fd_path
                    and reply.get("mover_host") == socket.gethostname() and os.path.exists(fd_path)):
                result = self._handoff(reply, stream, size, fd_path)
                if progress:
                    progress(size, size)
            else:
                result = self._stream(reply, stream, size, progress, verify)
        finally:
            stream.close()
        self.last_message = result.get("message", "")
        if remove and path is not None:
            path.unlink()
        return int(result["id"])

    def _check_push_alive(self, reply: dict[str, Any]) -> None:
        """The mover stopped taking data or answering: has the master given up on this push?"""
        f = self.status(reply["id"], history=0)["data_file"]
        if f["deleted"] or f["status"] == "failed":
            raise TransferError(f"push failed: {f['error'] or 'data file removed'} (DataFileId={reply['id']})")

    def _send_data(self, sock: zmq.Socket, reply: dict[str, Any], data: Any, track: bool,
                   frames: list[Any] | None = None) -> Any:
        deadline = time.monotonic() + max(self.timeout, 60)
        while True:
            try:
                return sock.send_multipart(frames or [b"D", data], copy=False, track=track)
            except zmq.Again:
                self._check_push_alive(reply)
                if time.monotonic() > deadline:
                    raise TransferError(f"data mover {reply.get('mover_name')} stopped taking data "
                                        f"(DataFileId={reply['id']} not confirmed)") from None

    def _handoff(self, reply: dict[str, Any], stream: BinaryIO, size: int, fd_path: str) -> dict[str, Any]:
        """Same host: pass the open file to the mover over a Unix socket; it copies in the kernel and
        checksums the stored bytes. The mover can read only this file, which we opened ourselves."""
        hdr = encode({"op": "begin", "id": reply["id"], "size": size, "token": reply["token"],
                      "store_path": reply["store_path"], "algo": reply.get("checksum") or "sha256"}) + b"\n"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(max(self.timeout, 60) + size / 50e6)
            try:
                s.connect(fd_path)
                socket.send_fds(s, [hdr], [stream.fileno()])
                buf = b""
                while not buf.endswith(b"\n"):
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
            except OSError as exc:
                raise TransferError(f"hand-off to data mover {reply.get('mover_name')} failed: {exc} "
                                    f"(DataFileId={reply['id']} not confirmed)") from None
        if not buf:
            raise TransferError(f"data mover {reply.get('mover_name')} closed the connection "
                                f"(DataFileId={reply['id']} not confirmed)")
        result = decode(buf.strip())
        if not result.get("ok"):
            raise TransferError(result.get("error") or "push failed")
        return result

    def _stream(self, reply: dict[str, Any], stream: BinaryIO, size: int,
                progress: Callable[[int, int], None] | None, verify: bool) -> dict[str, Any]:
        """Stream content to the mover the master chose in big zero-copy frames.

        The mover checksums what it stores (that checksum is verified again at every delivery); with
        ``verify`` the client also checksums the source on a helper thread and the mover compares.
        """
        ipc = reply.get("mover_ipc") or ""
        if ipc and reply.get("mover_host") == socket.gethostname() and os.path.exists(ipc[len("ipc://"):]):
            endpoint = ipc  # same host: a Unix socket costs far less CPU than loopback TCP
        else:
            endpoint = reply["mover"]
        sock = self._connect(zmq.DEALER, endpoint, self.timeout)
        sock.setsockopt(zmq.SNDHWM, 4)
        sock.setsockopt(zmq.SNDBUF, 4 << 20)
        sock.setsockopt(zmq.SNDTIMEO, 2000)
        hasher = Checksum(reply.get("checksum") or "sha256") if verify else None
        pool = ThreadPoolExecutor(1, thread_name_prefix="ecpds-hash")
        try:
            self._send_data(sock, reply, None, False, [encode({
                "op": "begin", "id": reply["id"], "size": size, "token": reply["token"],
                "store_path": reply["store_path"], "algo": reply.get("checksum") or "sha256"})])
            sent, pending = 0, None
            readinto = getattr(stream, "readinto", None)
            # a ring of reused buffers: zmq sends them without copying; a tracker says when one is free again
            ring: list[tuple[bytearray, Any]] = []
            slot = 0
            while True:
                if readinto is not None:
                    if len(ring) < 8 and slot == len(ring):
                        ring.append((bytearray(min(CHUNK, max(size, 1))), None))
                    buf, tracker = ring[slot]
                    if tracker is not None:
                        tracker.wait()
                    n = readinto(buf)
                    data = memoryview(buf)[:n] if n else b""
                else:
                    data = stream.read(CHUNK)
                    n = len(data)
                if not n:
                    break
                if hasher is not None:
                    if pending is not None:
                        pending.result()
                    pending = pool.submit(hasher.update, data)
                tracker = self._send_data(sock, reply, data, readinto is not None)
                if readinto is not None:
                    ring[slot] = (buf, tracker)
                    slot = (slot + 1) % 8
                sent += n
                if progress:
                    progress(sent, size)
                if sock.poll(0):  # the mover refused early (bad token, disk full, ...)
                    early = decode(sock.recv())
                    raise TransferError(early.get("error") or "mover refused the upload")
            if pending is not None:
                pending.result()
            if sent != size:
                raise TransferError(f"source changed while sending: read {sent} bytes, expected {size}")
            self._send_data(sock, reply, None, False,
                            [encode({"op": "end", "checksum": hasher.hexdigest() if hasher else None})])
            deadline = time.monotonic() + max(self.timeout, 60) + size / 50e6
            while not sock.poll(2000):
                self._check_push_alive(reply)  # the mover may have died: the master then fails the push
                if time.monotonic() > deadline:
                    raise TransferError(f"no acknowledgement from data mover {reply.get('mover_name')} "
                                        f"(DataFileId={reply['id']} not confirmed)")
            result = decode(sock.recv())
            if not result.get("ok"):
                raise TransferError(result.get("error") or "push failed")
            return result
        finally:
            pool.shutdown(wait=True)
            sock.close(0)

    def push_group(self, sources: Iterable[str | os.PathLike], destination: str | list[str], groupby: str,
                   target_dir: str = "", **options: Any) -> list[int]:
        """Register many files of a ``groupby`` group in one request (``ecpds -index``); returns their IDs."""
        files = []
        for s in sources:
            p = Path(s).absolute()
            if not p.is_file():
                raise TransferError(f"-index entry {p}: no such file")
            files.append({"source": str(p), "size": p.stat().st_size,
                          "target": _target_for(target_dir + "/" if target_dir else None, p)})
        if not files:
            raise TransferError("no source files given")
        opts = self._options(destination, priority=options.pop("priority", None),
                             lifetime=options.pop("lifetime", None), delay=options.pop("delay", None),
                             at=options.pop("at", None), at_format=options.pop("at_format", "yyyyMMddHHmmss"),
                             metadata=options.pop("metadata", None), version=options.pop("version", None),
                             identity=None, standby=options.pop("standby", False), asap=options.pop("asap", False),
                             requeue=options.pop("requeue", False), force=options.pop("force", False),
                             caller=options.pop("caller", None))
        if options:
            raise TypeError(f"unknown options {sorted(options)}")
        reply = self.request("put", groupby=groupby, files=files, **opts)
        self.last_message = reply.get("message", "")
        return [int(i) for i in reply["ids"]]

    # ------------------------------------------------------------------------------------------ tracking

    def status(self, data_file_id: int, history: int = 50) -> dict[str, Any]:
        """``{"data_file": {...}, "transfers": [{status, code, bytes_done, history: [...]}, ...]}``."""
        return self.request("status", id=int(data_file_id), history=history)

    def group_status(self, group: str) -> dict[str, Any]:
        """Counts per status for a -groupby group; ``done`` is true when nothing is left to do."""
        return self.request("group", group=group)

    def waitfor(self, group: str, callback: Callable[[dict[str, Any]], None] | None = None,
                timeout: float | None = None, poll: float = 0.25, not_found_after: float = 25.0) -> dict[str, Any]:
        """Block until every transfer of ``group`` is Done, Failed or Stopped (StandBy ones are not waited for).

        ``callback(group_status)`` is called whenever the counts change. Returns the final group status.
        """
        t0 = time.monotonic()
        last = None
        while True:
            st = self.group_status(group)
            key = (st["counts"], st["remaining"], [(p["id"], p["status"], p["bytes_done"]) for p in st["pending"]])
            if callback and key != last:
                callback(st)
            last = key
            if st["done"]:
                return st
            if not st["found"] and time.monotonic() - t0 > not_found_after:
                raise TransferError(f"Group {group} not found")
            if timeout is not None and time.monotonic() - t0 > timeout:
                raise TransferError(f"group {group} not done after {timeout:g}s "
                                    f"({st['remaining']} transfer(s) left)")
            time.sleep(poll)

    def wait(self, data_file_id: int, timeout: float | None = None, poll: float = 0.1) -> dict[str, Any]:
        """Block until every transfer of one data file is Done, Failed or Stopped; returns :meth:`status`."""
        t0 = time.monotonic()
        while True:
            st = self.status(data_file_id, history=0)
            if st["transfers"] and all(t["status"] in ("Done", "Failed", "Stopped") for t in st["transfers"]):
                return self.status(data_file_id)
            if timeout is not None and time.monotonic() - t0 > timeout:
                raise TransferError(f"DataFileId={data_file_id} not finished after {timeout:g}s: "
                                    + ", ".join(f"{t['destination']} {t['status']}" for t in st["transfers"]))
            time.sleep(poll)

    def watch(self, callback: Callable[[dict[str, Any]], None], *, group: str | None = None,
              destination: str | None = None) -> Watcher:
        """Call ``callback(event)`` from a background thread for every transfer change (status, progress).

        An event is a transfer row (id, data_file, destination, target, status, code, bytes_done, size,
        groupby, mover, error, seq) in its state after each master commit — steps within one commit are
        coalesced (:meth:`history` has every step). After missed events (``seq`` gap) ``callback({"type": "resync"})`` is
        called: re-read with :meth:`transfers`. Returns the :class:`Watcher`; ``close()`` it (or use
        ``with``) to stop the thread.
        """
        return Watcher(self.ping()["events"], callback, group=group, destination=destination,
                       connect=self._connect)

    def transfers(self, destination: str | None = None, status: str | None = None, group: str | None = None,
                  limit: int = 100, since: int | None = None) -> list[dict[str, Any]]:
        """Recent transfers (newest first), optionally filtered; ``since`` = only ids above it."""
        return self.request("list", destination=destination, status=status, group=group, limit=limit,
                            since=since)["transfers"]

    def history(self, transfer_id: int) -> list[dict[str, Any]]:
        return self.request("history", id=int(transfer_id))["history"]

    # ------------------------------------------------------------------------------------------ control

    def requeue(self, data_file_id: int | None = None, *, transfer: int | None = None, group: str | None = None,
                now: bool = False) -> int:
        """Re-queue transfers (of a data file, one transfer, or a group); releases StandBy. Returns how many."""
        return self.request("requeue", id=data_file_id, transfer=transfer, group=group, now=now)["requeued"]

    def stop(self, data_file_id: int | None = None, *, transfer: int | None = None, group: str | None = None) -> int:
        """Stop transfers (a running one is cancelled on its mover). Returns how many."""
        return self.request("stop", id=data_file_id, transfer=transfer, group=group)["stopped"]

    def purge(self, data_file_id: int | None = None, *, destination: str | None = None, target: str | None = None,
              version: str | None = None) -> str:
        """Delete a data file with its transfers and stored content; returns the master's message."""
        return self.request("purge", id=data_file_id, destination=destination, target=target,
                            version=version)["message"]

    def destinations(self) -> list[dict[str, Any]]:
        """``[{name, url, options, enabled, counts: {status: n}}]``."""
        return self.request("destinations")["destinations"]

    def add_destination(self, name: str, url: str, *, replace: bool = False, **options: Any) -> dict[str, Any]:
        """Add (or with ``replace`` change) a destination, e.g. ``add_destination("arch", "file:///data/arch",
        max_connections=2, retry_count=5, retry_frequency="30s", rate="10M")``."""
        return self.request("destination_add", name=name, url=url, options=options, replace=replace)

    def remove_destination(self, name: str, force: bool = False) -> str:
        return self.request("destination_remove", name=name, force=force)["message"]

    def scheduler(self, action: str = "check", destination: str | None = None, streams: int | None = None,
                  timeout: str | float | None = None) -> dict[str, Any]:
        """Pause (``stop``) / resume (``start``) retrievals or one destination; ``check`` reports."""
        return self.request("scheduler", action=action, destination=destination, streams=streams,
                            timeout=_seconds(timeout))

    def add_user(self, name: str, password: str, destinations: list[str] | None = None,
                 admin: bool = False) -> str:
        """Add a data user (password stored as PBKDF2); once a user exists, every request must authenticate."""
        return self.request("user_add", name=name, new_password=password, destinations=destinations or ["*"],
                            admin=admin)["message"]


class Watcher:
    """Owns a SUB socket and the thread reading it; :meth:`close` stops both."""

    def __init__(self, address: str, callback: Callable[[dict[str, Any]], None], *, group: str | None = None,
                 destination: str | None = None,
                 connect: Callable[[int, str], zmq.Socket] | None = None) -> None:
        self.address = address
        self._connect = connect
        self._callback = callback
        self._group, self._destination = group, destination
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ecpds-watch", daemon=True)
        self._thread.start()
        self._ready.wait(5)

    def _run(self) -> None:
        try:
            if self._connect is not None:  # the client's (encrypted, if on) connection
                sock = self._connect(zmq.SUB, self.address)
            else:
                sock = zmq.Context.instance().socket(zmq.SUB)
                sock.setsockopt(zmq.LINGER, 0)
                sock.connect(self.address)
        except TransferError:
            logging.getLogger("ecflow_lab.transfer.client").exception("watch: cannot connect")
            self._ready.set()
            return
        sock.setsockopt(zmq.SUBSCRIBE, b"transfer")
        self._ready.set()
        last = None
        try:
            while not self._stop.is_set():
                if not sock.poll(100):
                    continue
                _, payload = sock.recv_multipart()
                msg = decode(payload)
                if last is not None and msg.get("seq", 0) != last + 1:
                    self._callback({"type": "resync", "seq": msg.get("seq")})
                last = msg.get("seq", 0)
                for ev in msg.get("events", []):
                    if self._group is not None and ev.get("groupby") != self._group:
                        continue
                    if self._destination is not None and ev.get("destination") != self._destination:
                        continue
                    ev["type"] = "transfer"
                    ev["seq"] = last
                    try:
                        self._callback(ev)
                    except Exception:  # a failing callback must not kill the watcher
                        logging.getLogger("ecflow_lab.transfer.client").exception("watch callback failed")
        finally:
            sock.close(0)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def __enter__(self) -> Watcher:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _target_for(target: str | None, path: Path | None) -> str:
    if target is None:
        if path is None:
            raise TransferError("-target is required")
        return path.name
    if target.endswith("/"):
        if path is None:
            raise TransferError("-target ending with / needs a -source file name to append")
        return target + path.name
    return target


def _spool(stream: BinaryIO) -> tuple[BinaryIO, int]:
    """Copy a non-seekable stream (stdin) to a temporary file so its size is known before the push."""
    tmp = tempfile.TemporaryFile(prefix="ecpds-")
    shutil.copyfileobj(stream, tmp, CHUNK)
    size = tmp.tell()
    tmp.seek(0)
    return tmp, size
