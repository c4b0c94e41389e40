"""The transfer master: catalogue (SQLite/WAL), Data File IDs, mover allocation, transfer scheduler.

One thread owns everything: a ZeroMQ ROUTER socket that clients (``ecpds``, :class:`TransferClient`) and data
movers talk to, and the SQLite catalogue. Each loop iteration reads a batch of messages, applies them, runs
the scheduler, commits, and only then sends the replies and mover jobs — an ID a client sees is on disk.

Movers are kept alive by heartbeats that list the jobs they are running; a mover that stops beating (killed,
host down) has its jobs marked Interrupted and re-queued on the other movers. After a master restart the
running jobs of reconnecting movers are adopted again; the rest are re-queued.

Authentication happens in one place, :meth:`Master._authenticate` (data users with hashed passwords and
per-destination permissions; open "legacy" mode while no user exists) and :meth:`Master._mover_ok` for movers
(the cluster secret in ``HOME/secret``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from ..security import CurveServer
from . import wire
from .db import open_db, row
from .destinations import make_destination
from .wire import (
    ARRIVING,
    DONE,
    FAILED,
    FETCHING,
    INTERRUPTED,
    PRESET,
    QUEUED,
    REQUEUED,
    STANDBY,
    STOPPED,
    TRANSFERRING,
    TransferError,
    decode,
    encode,
)

log = logging.getLogger("ecflow_lab.transfer.master")

PBKDF2_ROUNDS = 120_000


def hash_password(password: str, salt: bytes) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt, PBKDF2_ROUNDS)


def upload_token(secret: bytes, dfid: int, size: int, store_path: str) -> str:
    """Capability a mover checks before accepting pushed content (movers share the secret)."""
    return hmac.new(secret, f"{dfid}:{size}:{store_path}".encode(), "sha256").hexdigest()


def store_rel_path(dfid: int) -> str:
    return f"{dfid % 256:02x}/{dfid}"


def read_secret(home: Path) -> bytes:
    """The cluster secret shared by master and movers (created 0600 on first use)."""
    path = Path(home) / "secret"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return bytes.fromhex(path.read_text().strip())


class _Inc:
    """Marker for ``_set_status(column=_Inc())``: increment the column."""


class _Keep:
    """Marker for ``_set_status(column=_Keep())``: leave the column unchanged."""


@dataclass
class MoverState:
    name: str
    ident: bytes
    data_addr: str = ""
    data_ipc: str = ""
    data_fd: str = ""
    store: str = ""
    host: str = ""
    capacity: int = 8
    last_seen: float = field(default_factory=time.monotonic)
    jobs: set = field(default_factory=set)  # {(kind, id)}


@dataclass
class Inflight:
    mover: str
    attempt: int
    assigned: float  # monotonic
    destination: str = ""


class Master:
    """The ECPDS-like master. ``run()`` serves in the calling thread until ``stop()`` (or SIGTERM via CLI)."""

    def __init__(self, home: str | Path, port: int = 0, host: str = "127.0.0.1", *, checksum: str = "sha256",
                 max_retrievals: int = 60, mover_timeout: float = 5.0, fetch_retries: int = 3,
                 fetch_retry_delay: float = 5.0, store: str | Path | None = None,
                 housekeeping_interval: float = 30.0, exit_with_parent: bool = False,
                 ssl: str | None = None, keys: str | Path | None = None) -> None:
        self.home = Path(home).resolve()
        self.home.mkdir(parents=True, exist_ok=True)
        self.store = Path(store).resolve() if store else self.home / "store"
        self.store.mkdir(parents=True, exist_ok=True)
        wire.Checksum(checksum)  # validate
        self.checksum = checksum
        self.host, self.port = host, port
        self.max_retrievals = max_retrievals
        self.retrieval_timeout = 600.0
        self.housekeeping_interval = housekeeping_interval
        # owned by another process (a notebook kernel, `transfer up`): stop if that owner disappears
        self._parent = os.getppid() if exit_with_parent else None
        self.retrievals_paused = False
        self.mover_timeout = mover_timeout
        self.fetch_retries = fetch_retries
        self.fetch_retry_delay = fetch_retry_delay
        self.secret = read_secret(self.home)
        self.address = ""
        self._stop = threading.Event()
        self.ready = threading.Event()
        self.movers: dict[str, MoverState] = {}
        self.inflight: dict[tuple[str, int], Inflight] = {}
        self.progress: dict[tuple[str, int], int] = {}
        self.fetch_not_before: dict[int, float] = {}
        self.dests: dict[str, dict[str, Any]] = {}
        self._rr = 0
        self._out: list[list[bytes]] = []
        self._dirty = True
        self._auth_cache: dict[tuple[str, bytes], float] = {}
        self._changed: set[int] = set()
        self._users_exist: bool | None = None
        self._progressed: set[int] = set()
        self._event_seq = 0
        self.events_address = ""
        self._started = time.monotonic()
        self.db = None
        #: ECF_SSL setting (None: plain; "1" or "<host>.<port>": CurveZMQ with keys from ``keys``)
        self.ssl = ssl
        self.keys = keys
        self._curve: CurveServer | None = None

    # ------------------------------------------------------------------------------------------ lifetime

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        """Bind, recover state from the catalogue, and serve until :meth:`stop`."""
        # encryption on: both sockets are Curve servers in the CurveServer's context (its ZAP thread admits
        # only the authorized client keys); off: plain sockets as before
        self._curve = CurveServer.from_setting(self.ssl, self.host, self.port or None, directory=self.keys)
        ctx = self._curve.context if self._curve else zmq.Context.instance()
        sock = self._secure(ctx.socket(zmq.ROUTER))
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, 100000)
        sock.setsockopt(zmq.SNDHWM, 100000)
        if self.port:
            sock.bind(f"tcp://{self.host}:{self.port}")
        else:
            self.port = sock.bind_to_random_port(f"tcp://{self.host}")
        self.address = f"tcp://{self.host}:{self.port}"
        pub = self._secure(ctx.socket(zmq.PUB))
        pub.setsockopt(zmq.LINGER, 0)
        pub.setsockopt(zmq.SNDHWM, 100000)
        self.events_address = f"tcp://{self.host}:{pub.bind_to_random_port(f'tcp://{self.host}')}"
        self._pub = pub
        self.db = open_db(self.home / "ecpds.db")
        try:
            self._recover()
            info = {"address": self.address, "events": self.events_address, "pid": os.getpid(),
                    "home": str(self.home), "store": str(self.store), "ssl": self.ssl or ""}
            tmp = self.home / "master.json.tmp"
            tmp.write_text(json.dumps(info))
            os.replace(tmp, self.home / "master.json")
            self.ready.set()
            log.info("master listening on %s", self.address)
            self._loop(sock)
        finally:
            sock.close(0)
            pub.close(0)
            if self._curve is not None:
                self._curve.close()
                self._curve = None
            self.db.close()
            try:
                (self.home / "master.json").unlink()
            except FileNotFoundError:
                pass

    def _secure(self, sock: zmq.Socket) -> zmq.Socket:
        return self._curve.secure(sock) if self._curve is not None else sock

    def _recover(self) -> None:
        """Reload destinations and in-flight jobs; their movers get mover_timeout to come back and claim them."""
        for r in self.db.execute("SELECT * FROM destinations"):
            self.dests[r["name"]] = {"url": r["url"], "options": json.loads(r["options"]),
                                     "enabled": bool(r["enabled"])}
        # a checksum report lost with the previous master process must not hold deliveries back:
        # the delivering mover computes and records it instead
        self.db.execute("UPDATE data_files SET fetch_mover=NULL WHERE status='stored' AND checksum IS NULL")
        self.db.commit()
        now = time.monotonic()
        for r in self.db.execute("SELECT id, mover, attempt, destination FROM transfers WHERE status=?",
                                 (TRANSFERRING,)):
            self.inflight[("t", r["id"])] = Inflight(r["mover"] or "", r["attempt"], now, r["destination"])
        for r in self.db.execute("SELECT id, fetch_mover, fetch_attempt FROM data_files "
                                 "WHERE status='fetching' AND deleted=0"):
            self.inflight[("f", r["id"])] = Inflight(r["fetch_mover"] or "", r["fetch_attempt"], now)
        for key, inf in self.inflight.items():
            m = self.movers.setdefault(inf.mover, MoverState(inf.mover, inf.mover.encode(), last_seen=now))
            m.jobs.add(key)
        self._started = now

    def _loop(self, sock: zmq.Socket) -> None:
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        last_sched = 0.0
        last_housekeeping = time.monotonic()
        while not self._stop.is_set():
            events = dict(poller.poll(100 if not self._dirty else 0))
            batch: list[list[bytes]] = []
            if sock in events:
                while len(batch) < 2000:
                    try:
                        batch.append(sock.recv_multipart(zmq.NOBLOCK, copy=True))
                    except zmq.Again:
                        break
            for frames in batch:
                self._dispatch(frames)
            if batch:  # answer first (after the commit), then schedule: replies do not wait for the scheduler
                self._flush(sock)
            now = time.monotonic()
            if self._dirty or now - last_sched > 0.25:
                self._dirty = False
                last_sched = now
                if self._parent is not None and os.getppid() != self._parent:
                    log.warning("owner process %s is gone: stopping", self._parent)
                    self._stop.set()
                try:
                    self._check_movers()
                    self._timeout_retrievals()
                    if now - last_housekeeping > self.housekeeping_interval:
                        last_housekeeping = now
                        self._housekeeping()
                    self._schedule()
                except Exception:  # never let a scheduler bug stop the service; the batch is kept
                    log.exception("scheduler step failed")
                self._flush(sock)

    def _flush(self, sock: zmq.Socket) -> None:
        """Commit, publish change events, then send the queued replies and jobs (never before the commit)."""
        self.db.commit()
        self._publish()
        out, self._out = self._out, []
        for msg in out:
            try:
                sock.send_multipart(msg)
            except zmq.ZMQError as exc:  # peer vanished (EHOSTUNREACH): a mover is handled by heartbeats
                log.debug("cannot send to %r: %s", msg[0], exc)

    # ------------------------------------------------------------------------------------------ helpers

    def _publish(self) -> None:
        """After each commit: one message on the PUB socket (topic b"transfer") with the changed transfers.

        Messages carry a gap-free ``seq``; a subscriber that sees a gap re-reads with ``list``. Progress-only
        changes are sent at most once per commit (movers report them every 0.25 s).
        """
        ids = self._changed | self._progressed
        self._changed, self._progressed = set(), set()
        if not ids:
            return
        placeholders = ",".join("?" * len(ids))
        rows = self.db.execute(
            "SELECT t.id, t.data_file, t.destination, t.target, t.status, t.bytes_done, t.mover, t.error, "
            f"t.failures, d.size, d.groupby FROM transfers t JOIN data_files d ON d.id=t.data_file "
            f"WHERE t.id IN ({placeholders})", tuple(ids)).fetchall()
        events = []
        for r in rows:
            ev = row(r)
            key = ("t", ev["id"])
            if key in self.progress:
                ev["bytes_done"] = self.progress[key]
            elif ev["status"] == FETCHING:
                ev["bytes_done"] = self.progress.get(("f", ev["data_file"]), 0)
            ev["code"] = wire.STATUS_CODES.get(ev["status"], ev["status"])
            events.append(ev)
        self._event_seq += 1
        try:
            self._pub.send_multipart([b"transfer", encode({"seq": self._event_seq, "events": events})],
                                     zmq.NOBLOCK)
        except zmq.ZMQError:
            pass

    def _send(self, ident: bytes, header: dict[str, Any]) -> None:
        self._out.append([ident, encode(header)])

    def _history(self, tid: int, status: str, mover: str | None = None, message: str | None = None) -> None:
        self.db.execute("INSERT INTO history(transfer, time, status, mover, message) VALUES (?,?,?,?,?)",
                        (tid, time.time(), status, mover, message))

    def _set_status(self, tid: int, status: str, by: str | None = None, message: str | None = None,
                    **fields: Any) -> None:
        """Change a transfer's status and record it in the history (``_Inc()`` increments a column)."""
        sets, args = ["status=?"], [status]
        for k, v in fields.items():
            if isinstance(v, _Keep):
                continue
            if isinstance(v, _Inc):
                sets.append(f"{k}={k}+1")
            else:
                sets.append(f"{k}=?")
                args.append(v)
        self.db.execute(f"UPDATE transfers SET {', '.join(sets)} WHERE id=?", (*args, tid))
        self._history(tid, status, by, message)
        self._dirty = True
        self._changed.add(tid)

    def _file_transfers(self, dfid: int, pending_only: bool = False) -> list[int]:
        """Transfer ids of a data file; ``pending_only``: those still waiting for its content (a transfer
        the user stopped meanwhile is left alone)."""
        if pending_only:
            return [r[0] for r in self.db.execute("SELECT id FROM transfers WHERE data_file=? AND status IN (?,?,?)",
                                                  (dfid, ARRIVING, PRESET, FETCHING))]
        return [r[0] for r in self.db.execute("SELECT id FROM transfers WHERE data_file=?", (dfid,))]

    # ------------------------------------------------------------------------------------------ dispatch

    def _dispatch(self, frames: list[bytes]) -> None:
        """Handle one message inside its own savepoint: a refused or failed request changes nothing,
        and never undoes the other requests of the same batch."""
        ident = frames[0]
        self.db.execute("SAVEPOINT request")
        open_savepoint = True
        try:
            if len(frames) < 2:
                raise wire.ProtocolError("empty message")
            hdr = decode(frames[1])
            op = hdr.get("op")
            if not isinstance(op, str):
                raise wire.ProtocolError("message without op")
            mover_handler = getattr(self, f"_mover_{op}", None)
            if mover_handler is not None:
                if not self._mover_ok(hdr):
                    raise TransferError("mover not authenticated (wrong or missing cluster secret)")
                mover_handler(ident, hdr)
                open_savepoint = False
                self.db.execute("RELEASE request")
                return
            handler = getattr(self, f"_op_{op}", None)
            if handler is None:
                raise TransferError(f"unknown request {op!r}")
            user = self._authenticate(hdr, op)
            reply = handler(hdr, user) or {}
            reply.update(ok=True, rid=hdr.get("rid"))
            open_savepoint = False
            self.db.execute("RELEASE request")
            self._send(ident, reply)
        except Exception as exc:
            if open_savepoint:
                self.db.execute("ROLLBACK TO request")
                self.db.execute("RELEASE request")
            rid = None
            try:
                rid = decode(frames[1]).get("rid") if len(frames) > 1 else None
            except wire.ProtocolError:
                pass
            if isinstance(exc, TransferError):
                error = str(exc)
            elif isinstance(exc, (KeyError, TypeError, ValueError, AttributeError)):
                log.warning("malformed request: %r", exc)
                error = f"malformed request: {type(exc).__name__}: {exc}"
            else:  # a bug must not take the master down; the client sees the error
                log.exception("request failed")
                error = f"internal error: {type(exc).__name__}: {exc}"
            self._send(ident, {"ok": False, "rid": rid, "error": error})

    # ------------------------------------------------------------------------------------------ auth

    def _mover_ok(self, hdr: dict[str, Any]) -> bool:
        key = hdr.get("key")
        return isinstance(key, str) and hmac.compare_digest(key.encode(), self.secret.hex().encode())

    def _has_users(self) -> bool:
        if self._users_exist is None:  # cached; user_add resets it
            self._users_exist = self.db.execute("SELECT 1 FROM users LIMIT 1").fetchone() is not None
        return self._users_exist

    def _authenticate(self, hdr: dict[str, Any], op: str) -> dict[str, Any]:
        """Who sends this request, and may they? The one place requests are authenticated."""
        if not self._has_users():
            return {"name": str(hdr.get("unix_user") or "anonymous"), "admin": True, "destinations": ["*"]}
        name, password = hdr.get("user"), hdr.get("password")
        if op == "ping":
            return {"name": name or "anonymous", "admin": False, "destinations": []}
        if not name or not isinstance(password, str):
            raise TransferError("authentication required: use -user NAME -pass PASSWORD")
        r = self.db.execute("SELECT * FROM users WHERE name=?", (name,)).fetchone()
        if r is None:
            raise TransferError(f"authentication failed for user {name!r}")
        probe = hashlib.sha256(r["salt"] + password.encode()).digest()
        if (name, probe) not in self._auth_cache:
            if not hmac.compare_digest(hash_password(password, r["salt"]), r["hash"]):
                raise TransferError(f"authentication failed for user {name!r}")
            self._auth_cache[(name, probe)] = time.monotonic()
        return {"name": name, "admin": bool(r["admin"]), "destinations": json.loads(r["destinations"])}

    @staticmethod
    def _check_dest_perm(user: dict[str, Any], dest: str) -> None:
        allowed = user["destinations"]
        if "*" not in allowed and dest not in allowed:
            raise TransferError(f"user {user['name']!r} may not use destination {dest!r}")

    @staticmethod
    def _check_admin(user: dict[str, Any]) -> None:
        if not user["admin"]:
            raise TransferError(f"user {user['name']!r} is not an administrator")

    # ------------------------------------------------------------------------------------------ movers

    def _mover_hb(self, ident: bytes, hdr: dict[str, Any]) -> None:
        """Heartbeat (also the hello): registers the mover and reconciles its running jobs."""
        name = str(hdr.get("name"))
        now = time.monotonic()
        m = self.movers.get(name)
        if m is None:
            m = self.movers[name] = MoverState(name, ident)
            log.info("mover %s joined (%s)", name, hdr.get("data_addr"))
            self._dirty = True
        m.ident = ident
        m.data_addr = str(hdr.get("data_addr", ""))
        m.data_ipc = str(hdr.get("data_ipc", ""))
        m.data_fd = str(hdr.get("data_fd", ""))
        m.store = str(hdr.get("store", ""))
        m.host = str(hdr.get("host", ""))
        m.capacity = int(hdr.get("capacity", 8))
        m.last_seen = now
        running = {(k, int(i)): int(a) for k, i, a in hdr.get("active", [])}
        for key in list(m.jobs):
            inf = self.inflight.get(key)
            if inf is None or inf.mover != name:
                m.jobs.discard(key)
                continue
            if running.get(key) != inf.attempt and now - inf.assigned > self.mover_timeout:
                self._interrupt(key, f"mover {name} is no longer running it")
        for key, attempt in running.items():
            inf = self.inflight.get(key)
            if inf is None or inf.mover != name or inf.attempt != attempt:
                self._send(ident, {"op": "cancel", "kind": key[0], "id": key[1], "attempt": attempt})

    def _check_movers(self) -> None:
        now = time.monotonic()
        for name, m in list(self.movers.items()):
            if now - m.last_seen > self.mover_timeout:
                log.warning("mover %s lost (no heartbeat for %.1fs)", name, now - m.last_seen)
                del self.movers[name]
                for key in list(m.jobs):
                    self._interrupt(key, f"mover {name} lost")
                for (dfid,) in self.db.execute("SELECT id FROM data_files WHERE status='arriving' AND deleted=0 "
                                               "AND fetch_mover=?", (name,)).fetchall():
                    self._mover_upload_failed(b"", {"id": dfid, "name": name,
                                                    "error": f"data mover {name} lost during the push"})

    def _timeout_retrievals(self) -> None:
        """A retrieval running longer than ``retrieval_timeout`` (ecpds -scheduler -timeout) is cut off."""
        now = time.monotonic()
        for key, inf in list(self.inflight.items()):
            if key[0] == "f" and now - inf.assigned > self.retrieval_timeout:
                m = self.movers.get(inf.mover)
                if m:
                    self._send(m.ident, {"op": "cancel", "kind": "f", "id": key[1], "attempt": inf.attempt})
                self._mover_fetch_failed(b"", {"id": key[1], "attempt": inf.attempt,
                                               "error": f"retrieval timed out after {self.retrieval_timeout:g}s"})

    def _housekeeping(self) -> None:
        """Free store space of files whose transfers are all finished and whose lifetime is over."""
        now = time.time()
        rows = self.db.execute(
            "SELECT id, store_path, store_root FROM data_files d WHERE deleted=0 AND status='stored' AND "
            "noretrieval=0 AND NOT EXISTS (SELECT 1 FROM transfers t WHERE t.data_file=d.id AND "
            "(t.status NOT IN (?,?,?) OR t.expiry IS NULL OR t.expiry > ?)) LIMIT 1000",
            (DONE, FAILED, STOPPED, now)).fetchall()
        for r in rows:
            if r["store_path"] and r["store_root"] == str(self.store):
                try:
                    (self.store / r["store_path"]).unlink()
                except OSError:
                    pass
            self.db.execute("UPDATE data_files SET status='expired' WHERE id=?", (r["id"],))

    def _interrupt(self, key: tuple[str, int], reason: str) -> None:
        inf = self.inflight.pop(key, None)
        if inf is None:
            return
        m = self.movers.get(inf.mover)
        if m:
            m.jobs.discard(key)
        self.progress.pop(key, None)
        kind, ident = key
        if kind == "t":
            self._set_status(ident, INTERRUPTED, inf.mover, reason)
            self._set_status(ident, REQUEUED, None, "re-queued after interruption", retry_time=0,
                             requeues=_Inc(), mover=None)
        else:
            self.db.execute("UPDATE data_files SET status='preset', fetch_mover=NULL WHERE id=?", (ident,))
            for tid in self._file_transfers(ident, pending_only=True):
                self._set_status(tid, INTERRUPTED, inf.mover, reason)
                self._set_status(tid, PRESET, None, "retrieval re-queued after interruption")

    def _pick_mover(self, store_root: str | None = None) -> MoverState | None:
        """Least-loaded live mover (ties broken by rotation) with a free slot and, if given, that store."""
        best = None
        movers = list(self.movers.values())
        if not movers:
            return None
        self._rr = (self._rr + 1) % len(movers)
        movers = movers[self._rr:] + movers[:self._rr]
        now = time.monotonic()
        for m in movers:
            if not m.data_addr or now - m.last_seen > self.mover_timeout or len(m.jobs) >= m.capacity:
                continue
            if store_root and m.store != store_root:
                continue
            if best is None or len(m.jobs) < len(best.jobs):
                best = m
        return best

    def _mover_stored(self, ident: bytes, hdr: dict[str, Any]) -> None:
        """A sync push has been received and checksummed by a mover: commit, then let it answer the client."""
        dfid = int(hdr["id"])
        f = row(self.db.execute("SELECT * FROM data_files WHERE id=?", (dfid,)).fetchone())
        reply = {"op": "stored_ack", "id": dfid, "upload": hdr.get("upload")}
        if f is None or f["deleted"] or f["status"] != "arriving":
            reply.update(ok=False, error=f"data file {dfid} is no longer expected (purged or replaced)")
            self._send(ident, reply)
            return
        self.db.execute("UPDATE data_files SET status='stored', size=?, checksum=?, store_path=?, store_root=?, "
                        "arrived=?, fetch_mover=? WHERE id=?",
                        (int(hdr["size"]), hdr.get("checksum"), hdr["store_path"], hdr["store_root"], time.time(),
                         hdr.get("name"), dfid))
        n = self._release_file(f, f"received by {hdr.get('name')}")
        reply.update(ok=True, message=f"{n} DataTransfer(s) will start at: "
                     f"{self._start_text(dfid, f)} (DatafileId={dfid})")
        self._send(ident, reply)

    def _start_text(self, dfid: int, f: dict[str, Any]) -> str:
        if f["standby"]:
            return "standby mode"
        r = self.db.execute("SELECT MIN(at) FROM transfers WHERE data_file=?", (dfid,)).fetchone()
        return wire.fmt_time(max(r[0] or 0, time.time()))

    def _release_file(self, f: dict[str, Any], message: str) -> int:
        """Content is in the store: its transfers move on to Queued (or StandBy / ReQueued)."""
        tids = self._file_transfers(f["id"], pending_only=True)
        for tid in tids:
            t = self.db.execute("SELECT requeues FROM transfers WHERE id=?", (tid,)).fetchone()
            status = STANDBY if f["standby"] else (REQUEUED if t["requeues"] else QUEUED)
            self._set_status(tid, status, f.get("fetch_mover"), message)
        return len(tids)

    def _mover_upload_failed(self, ident: bytes, hdr: dict[str, Any]) -> None:
        dfid = int(hdr["id"])
        f = self.db.execute("SELECT status FROM data_files WHERE id=?", (dfid,)).fetchone()
        if f is None or f["status"] != "arriving":
            return
        self.db.execute("UPDATE data_files SET status='failed', deleted=1, error=? WHERE id=?",
                        (hdr.get("error"), dfid))
        for tid in self._file_transfers(dfid, pending_only=True):
            self._set_status(tid, FAILED, hdr.get("name"), f"push failed: {hdr.get('error')}", error=hdr.get("error"))

    def _mover_checksummed(self, ident: bytes, hdr: dict[str, Any]) -> None:
        """The checksum of a file handed over on the same host (computed right after the copy)."""
        dfid = int(hdr["id"])
        if hdr.get("checksum"):
            self.db.execute("UPDATE data_files SET checksum=? WHERE id=? AND checksum IS NULL",
                            (hdr["checksum"], dfid))
        else:  # could not checksum the store: deliveries compute and record it instead
            log.warning("no checksum for DataFileId=%s: %s", dfid, hdr.get("error"))
            self.db.execute("UPDATE data_files SET fetch_mover=NULL WHERE id=?", (dfid,))
        self._dirty = True

    def _mover_cancelled(self, ident: bytes, hdr: dict[str, Any]) -> None:
        """A mover confirms it dropped a job the master had already taken back: nothing to do."""

    def _mover_progress(self, ident: bytes, hdr: dict[str, Any]) -> None:
        key = (str(hdr["kind"]), int(hdr["id"]))
        inf = self.inflight.get(key)
        if inf and inf.attempt == hdr.get("attempt"):
            self.progress[key] = int(hdr["bytes"])
            if key[0] == "t":
                self._progressed.add(key[1])
            else:
                self._progressed.update(self._file_transfers(key[1]))

    def _finish_job(self, hdr: dict[str, Any], kind: str) -> Inflight | None:
        key = (kind, int(hdr["id"]))
        inf = self.inflight.get(key)
        if inf is None or inf.attempt != hdr.get("attempt"):
            return None  # a stale report (job re-queued after an interruption): ignore it
        del self.inflight[key]
        self.progress.pop(key, None)
        m = self.movers.get(inf.mover)
        if m:
            m.jobs.discard(key)
        self._dirty = True
        return inf

    def _mover_fetched(self, ident: bytes, hdr: dict[str, Any]) -> None:
        inf = self._finish_job(hdr, "f")
        if inf is None:
            return
        dfid = int(hdr["id"])
        self.db.execute("UPDATE data_files SET status='stored', size=?, checksum=?, store_path=?, store_root=?, "
                        "arrived=? WHERE id=?",
                        (int(hdr["size"]), hdr["checksum"], hdr["store_path"], hdr["store_root"], time.time(),
                         dfid))
        f = row(self.db.execute("SELECT * FROM data_files WHERE id=?", (dfid,)).fetchone())
        self._release_file(f, f"retrieved by {inf.mover} ({wire.fmt_size(hdr['size'])})")

    def _mover_fetch_failed(self, ident: bytes, hdr: dict[str, Any]) -> None:
        inf = self._finish_job(hdr, "f")
        if inf is None:
            return
        dfid, err = int(hdr["id"]), str(hdr.get("error"))
        r = self.db.execute("UPDATE data_files SET fetch_failures=fetch_failures+1, error=? WHERE id=? "
                            "RETURNING fetch_failures", (err, dfid)).fetchone()
        if hdr.get("fatal") or r[0] > self.fetch_retries:
            self.fetch_not_before.pop(dfid, None)
            self.db.execute("UPDATE data_files SET status='failed' WHERE id=?", (dfid,))
            for tid in self._file_transfers(dfid, pending_only=True):
                self._set_status(tid, FAILED, inf.mover, f"retrieval failed: {err}", error=err)
        else:
            self.db.execute("UPDATE data_files SET status='preset' WHERE id=?", (dfid,))
            self.fetch_not_before[dfid] = time.monotonic() + self.fetch_retry_delay
            for tid in self._file_transfers(dfid, pending_only=True):
                self._set_status(tid, PRESET, inf.mover, f"retrieval attempt {r[0]} failed: {err}")

    def _mover_delivered(self, ident: bytes, hdr: dict[str, Any]) -> None:
        inf = self._finish_job(hdr, "t")
        if inf is None:
            return
        tid = int(hdr["id"])
        if hdr.get("checksum"):
            self.db.execute("UPDATE data_files SET checksum=? WHERE checksum IS NULL AND "
                            "id=(SELECT data_file FROM transfers WHERE id=?)", (hdr["checksum"], tid))
        secs = max(float(hdr.get("seconds", 0)), 1e-6)
        rate = wire.fmt_size(int(hdr.get("bytes", 0)) / secs)
        self._set_status(tid, DONE, inf.mover, f"delivered to {hdr.get('path')} in {secs:.2f}s ({rate}/s)",
                         finished=time.time(), bytes_done=int(hdr.get("bytes", 0)), path=hdr.get("path"),
                         error=None)

    def _mover_deliver_failed(self, ident: bytes, hdr: dict[str, Any]) -> None:
        inf = self._finish_job(hdr, "t")
        if inf is None:
            return
        tid, err = int(hdr["id"]), str(hdr.get("error"))
        t = self.db.execute("SELECT failures, destination FROM transfers WHERE id=?", (tid,)).fetchone()
        opts = self.dests.get(t["destination"], {}).get("options", {})
        failures = t["failures"] + 1
        if failures > int(opts.get("retry_count", 3)):
            self._set_status(tid, FAILED, inf.mover, f"attempt {failures} failed, no retries left: {err}",
                             failures=failures, error=err, finished=time.time())
        else:
            delay = float(opts.get("retry_frequency", 60.0))
            self._set_status(tid, REQUEUED, inf.mover,
                             f"attempt {failures} failed: {err}; retry in {delay:g}s",
                             failures=failures, error=err, retry_time=time.time() + delay)

    # ------------------------------------------------------------------------------------------ scheduler

    def _schedule(self) -> None:
        now = time.time()
        if not self.retrievals_paused:
            self._schedule_fetches(now)
        for name, d in self.dests.items():
            if d["enabled"]:
                self._schedule_destination(name, d, now)

    def _schedule_fetches(self, now: float) -> None:
        free = self.max_retrievals - sum(1 for k in self.inflight if k[0] == "f")
        if free <= 0 or not self.movers:
            return
        mono = time.monotonic()
        rows = self.db.execute("SELECT id, source_host, source, size FROM data_files "
                               "WHERE status='preset' AND deleted=0 ORDER BY groupby, created, id LIMIT ?",
                               (free + len(self.fetch_not_before),)).fetchall()
        for r in rows:
            if free <= 0:
                break
            if self.fetch_not_before.get(r["id"], 0) > mono:
                continue
            self.fetch_not_before.pop(r["id"], None)
            m = self._pick_mover()
            if m is None:
                break
            dfid = r["id"]
            attempt = self.db.execute("UPDATE data_files SET status='fetching', fetch_attempt=fetch_attempt+1, "
                                      "fetch_mover=? WHERE id=? RETURNING fetch_attempt",
                                      (m.name, dfid)).fetchone()[0]
            for tid in self._file_transfers(dfid, pending_only=True):
                self._set_status(tid, FETCHING, m.name, f"retrieval by {m.name}")
            key = ("f", dfid)
            self.inflight[key] = Inflight(m.name, attempt, mono)
            m.jobs.add(key)
            free -= 1
            self._send(m.ident, {"op": "fetch", "id": dfid, "attempt": attempt, "source_host": r["source_host"],
                                 "source": r["source"], "size": r["size"], "store_path": store_rel_path(dfid),
                                 "checksum": self.checksum})

    def _schedule_destination(self, name: str, d: dict[str, Any], now: float) -> None:
        opts = d["options"]
        running = sum(1 for k, inf in self.inflight.items() if k[0] == "t" and inf.destination == name)
        free = int(opts.get("max_connections", 4)) - running
        if free <= 0 or not self.movers:
            return
        rows = self.db.execute(
            "SELECT t.id, t.target, t.expiry, t.attempt, d.store_path, d.store_root, d.size, d.checksum, "
            "d.noretrieval, d.fetch_mover "
            "FROM transfers t JOIN data_files d ON d.id = t.data_file "
            "WHERE t.destination=? AND t.status IN (?, ?) AND t.at<=? AND t.retry_time<=? AND d.status='stored' "
            "AND (t.asap=0 OR d.groupby IS NULL OR NOT EXISTS (SELECT 1 FROM data_files g WHERE "
            "g.groupby=d.groupby AND g.deleted=0 AND g.status IN ('preset','fetching','arriving'))) "
            "ORDER BY t.priority, t.queue_time, t.id LIMIT ?",
            (name, QUEUED, REQUEUED, now, now, free)).fetchall()
        for r in rows:
            if r["checksum"] is None and not r["noretrieval"] and r["fetch_mover"] in self.movers:
                continue  # its mover is still checksumming the stored bytes
            if r["expiry"] and r["expiry"] < now:
                self._set_status(r["id"], STOPPED, None, "lifetime expired before dispatch",
                                 error="expired", finished=now)
                continue
            m = self._pick_mover(r["store_root"] or None)
            if m is None:
                break
            attempt = r["attempt"] + 1
            self._set_status(r["id"], TRANSFERRING, m.name, f"to {name} by {m.name}", attempt=attempt,
                             mover=m.name, started=now, bytes_done=0)
            key = ("t", r["id"])
            self.inflight[key] = Inflight(m.name, attempt, time.monotonic(), name)
            m.jobs.add(key)
            self._send(m.ident, {"op": "deliver", "id": r["id"], "attempt": attempt, "target": r["target"],
                                 "destination": {"name": name, "url": d["url"], "options": opts},
                                 "store_path": r["store_path"], "store_root": r["store_root"],
                                 "size": r["size"], "checksum": r["checksum"]})

    def _cancel_running(self, tid: int) -> None:
        inf = self.inflight.pop(("t", tid), None)
        if inf:
            m = self.movers.get(inf.mover)
            if m:
                m.jobs.discard(("t", tid))
                self._send(m.ident, {"op": "cancel", "kind": "t", "id": tid, "attempt": inf.attempt})

    # ------------------------------------------------------------------------------------------ requests

    def _op_ping(self, hdr: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
        return {"version": wire.PROTOCOL, "movers": len(self.movers), "host": socket.gethostname(),
                "checksum": self.checksum, "events": self.events_address, "seq": self._event_seq}

    def _op_put(self, hdr: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
        """Register a data file (sync push: returns the mover to stream to; -groupby: queued for retrieval)."""
        dests = hdr.get("destination")
        dests = [dests] if isinstance(dests, str) else list(dests or [])
        if not dests:
            raise TransferError("-destination is required")
        for d in dests:
            if d not in self.dests:
                raise TransferError(f"unknown destination {d!r} (known: {', '.join(sorted(self.dests)) or 'none'})")
            self._check_dest_perm(user, d)
        files = hdr.get("files")
        groupby = hdr.get("groupby")
        if groupby is not None and (not isinstance(groupby, str) or not 0 < len(groupby) <= 64):
            raise TransferError("-groupby needs a name of 1 to 64 characters")
        if files is None:
            files = [{"target": hdr.get("target"), "size": hdr.get("size"), "source": hdr.get("source")}]
        if not isinstance(files, list) or not all(isinstance(f, dict) for f in files) or not files:
            raise TransferError("files must be a non-empty list of {source, size, target} objects")
        if not groupby and len(files) != 1:
            raise TransferError("several files (-index) need -groupby")
        for f in files:  # validate everything before changing anything
            wire.clean_target(str(f.get("target") or ""))
            if f.get("size") is not None and (not isinstance(f["size"], int) or f["size"] < 0):
                raise TransferError(f"bad size {f['size']!r} for {f.get('target')}")
        ids, messages = [], []
        for f in files:
            dfid, msg = self._register(hdr, f, dests, user)
            ids.append(dfid)
            messages.append(msg)
        reply: dict[str, Any] = {"id": ids[0], "ids": ids, "message": messages[0] if len(ids) == 1
                                 else f"{len(ids)} DataFile(s) initialized for group {groupby}"}
        if not groupby and not hdr.get("noretrieval"):
            m = self._pick_mover()
            if m is None:
                m = min(self.movers.values(), key=lambda m: len(m.jobs), default=None)
            if m is None or not m.data_addr:
                self._abandon(ids[0], "no data mover available")
                raise TransferError("no data mover available to receive the file")
            rel = store_rel_path(ids[0])
            self.db.execute("UPDATE data_files SET fetch_mover=? WHERE id=?", (m.name, ids[0]))
            reply.update(mover=m.data_addr, mover_ipc=m.data_ipc, mover_fd=m.data_fd, mover_host=m.host,
                         mover_name=m.name, store_path=rel, checksum=self.checksum,
                         token=upload_token(self.secret, ids[0], int(files[0]["size"]), rel))
        return reply

    def _abandon(self, dfid: int, reason: str) -> None:
        self.db.execute("UPDATE data_files SET status='failed', deleted=1, error=? WHERE id=?", (reason, dfid))
        for tid in self._file_transfers(dfid):
            self._set_status(tid, FAILED, None, reason, error=reason)

    def _register(self, hdr: dict[str, Any], f: dict[str, Any], dests: list[str],
                  user: dict[str, Any]) -> tuple[int, str]:
        now = time.time()
        target = wire.clean_target(str(f.get("target") or ""))
        groupby = hdr.get("groupby")
        noretrieval = bool(hdr.get("noretrieval"))
        size = f.get("size")
        if not groupby and not noretrieval and (not isinstance(size, int) or size < 0):
            raise TransferError("a push needs the file size")
        if (groupby or noretrieval) and not f.get("source"):
            raise TransferError("-groupby needs -source (the file the movers will retrieve)")
        if noretrieval and not os.path.isabs(str(f.get("source"))):
            raise TransferError("-noretrieval needs an absolute -source path")
        standby = bool(hdr.get("standby"))
        version = hdr.get("version")
        uniq = f"{int(standby)}|{','.join(dests)}|{target}|{version or ''}"
        old = self.db.execute("SELECT id FROM data_files WHERE uniq=? AND deleted=0", (uniq,)).fetchone()
        requeue = bool(hdr.get("requeue") or hdr.get("force"))
        if old is not None:
            if groupby and not requeue:
                return old[0], (f"DataFile already exists for target {target} in group {groupby} "
                                f"(DatafileId={old[0]})")
            if not requeue:
                raise TransferError(f"Duplicate DataFile found for target {target} on {','.join(dests)} "
                                    f"(DataFileId={old[0]}), please use the '-requeue/force/purge' option")
        # per-transfer schedule: defaults from the destination, then the request
        metadata = hdr.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise TransferError("-metadata must be key=value pairs")
        cur = self.db.execute(
            "INSERT INTO data_files(uniq, target, version, identity, source_host, source, size, store_path, "
            "store_root, groupby, metadata, caller, user, status, standby, noretrieval, created, checksum, arrived) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (uniq, target, version, hdr.get("identity") or target, hdr.get("source_host"), f.get("source"),
             size, f.get("source") if noretrieval else None, "" if noretrieval else None, groupby,
             json.dumps(metadata), hdr.get("caller"), user["name"],
             "stored" if noretrieval else ("preset" if groupby else "arriving"), int(standby), int(noretrieval),
             now, None, now if noretrieval else None))
        dfid = cur.lastrowid
        if noretrieval:
            self.db.execute("UPDATE data_files SET checksum=NULL WHERE id=?", (dfid,))
        if old is not None:
            self._supersede(old[0], dfid)
        first_at = None
        for d in dests:
            opts = self.dests[d]["options"]
            prio = hdr.get("priority")
            prio = opts.get("priority") if prio is None else prio
            prio = 99 if prio is None else int(prio)
            if not 0 <= prio <= 99:
                raise TransferError(f"-priority must be 0..99, got {prio}")
            at = hdr.get("at")
            if at is None and opts.get("at"):
                at = wire.next_time_of_day(opts["at"], now)
            at = float(at or now) + float(hdr.get("delay") or 0) + float(opts.get("delay") or 0)
            lifetime = hdr.get("lifetime")
            lifetime = opts.get("lifetime") if lifetime is None else lifetime
            lifetime = 2 * 86400.0 if lifetime is None else float(lifetime)
            expiry = at + lifetime
            if expiry < now:
                raise TransferError(f"transfer to {d} would expire before it starts ({wire.fmt_time(expiry)})")
            if hdr.get("asap"):
                at = now
            status = ARRIVING if not (groupby or noretrieval) else (
                PRESET if not noretrieval else (STANDBY if standby else QUEUED))
            cur = self.db.execute(
                "INSERT INTO transfers(data_file, destination, target, status, priority, queue_time, at, expiry, "
                "asap, requeues) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (dfid, d, target, status, prio, now, at, expiry, int(bool(hdr.get("asap"))),
                 int(old is not None)))
            self._history(cur.lastrowid, status, None,
                          f"submitted by {user['name']}" + (f" (replaces DataFileId={old[0]})" if old else ""))
            self._changed.add(cur.lastrowid)
            first_at = at if first_at is None else min(first_at, at)
        self._dirty = True
        when = "standby mode" if standby else wire.fmt_time(first_at)
        if groupby:
            return dfid, f"{len(dests)} DataTransfer(s) initialized for group {groupby}: {when} (DatafileId={dfid})"
        return dfid, f"{len(dests)} DataTransfer(s) will start at: {when} (DatafileId={dfid})"

    def _supersede(self, old: int, new: int) -> None:
        self.db.execute("UPDATE data_files SET deleted=1 WHERE id=?", (old,))
        for r in self.db.execute("SELECT id, status FROM transfers WHERE data_file=?", (old,)).fetchall():
            if r["status"] not in (DONE, FAILED, STOPPED):
                self._cancel_running(r["id"])
                self._set_status(r["id"], STOPPED, None, f"replaced by DataFileId={new}")
        self.inflight.pop(("f", old), None)

    def _op_purge(self, hdr: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
        """Delete data files (by ``id``, or by destination+target+version) with their transfers and content."""
        if hdr.get("id") is not None:
            ids = [int(hdr["id"])]
        else:
            dests = hdr.get("destination")
            dests = [dests] if isinstance(dests, str) else list(dests or [])
            target = wire.clean_target(str(hdr.get("target") or ""))
            ids = [r[0] for r in self.db.execute(
                "SELECT id FROM data_files WHERE deleted=0 AND target=? AND uniq LIKE ?",
                (target, f"%|{','.join(dests)}|{target}|{hdr.get('version') or ''}"))]
        if not ids:
            raise TransferError("no DataFile found to purge")
        n = 0
        for dfid in ids:
            f = row(self.db.execute("SELECT * FROM data_files WHERE id=?", (dfid,)).fetchone())
            if f is None:
                raise TransferError(f"unknown DataFileId {dfid}")
            for tid in self._file_transfers(dfid):
                t = self.db.execute("SELECT destination FROM transfers WHERE id=?", (tid,)).fetchone()
                self._check_dest_perm(user, t[0])
                self._cancel_running(tid)
                self.db.execute("DELETE FROM history WHERE transfer=?", (tid,))
                self.db.execute("DELETE FROM transfers WHERE id=?", (tid,))
                n += 1
            self.inflight.pop(("f", dfid), None)
            self.db.execute("UPDATE data_files SET deleted=1, status='purged' WHERE id=?", (dfid,))
            if f["store_path"] and f["store_root"] == str(self.store):
                try:
                    (self.store / f["store_path"]).unlink()
                except OSError:
                    pass
        return {"id": ids[0], "ids": ids,
                "message": f"Purge completed with {n} DataTransfer(s) deleted (DataFileId={ids[0]})"}

    def _transfer_dict(self, r: Any) -> dict[str, Any]:
        t = row(r)
        key = ("t", t["id"])
        if key in self.progress:
            t["bytes_done"] = self.progress[key]
        elif t["status"] == FETCHING:
            t["bytes_done"] = self.progress.get(("f", t["data_file"]), 0)
        t["code"] = wire.STATUS_CODES.get(t["status"], t["status"])
        return t

    def _op_status(self, hdr: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
        """One data file with its transfers and their history."""
        try:
            dfid = int(hdr["id"])
        except (KeyError, TypeError, ValueError):
            raise TransferError("status needs a numeric DataFileId") from None
        f = row(self.db.execute("SELECT * FROM data_files WHERE id=?", (dfid,)).fetchone())
        if f is None:
            raise TransferError(f"unknown DataFileId {dfid}")
        f["metadata"] = json.loads(f["metadata"] or "{}")
        transfers = []
        for r in self.db.execute("SELECT * FROM transfers WHERE data_file=? ORDER BY id", (dfid,)):
            t = self._transfer_dict(r)
            t["history"] = [row(h) for h in self.db.execute(
                "SELECT time, status, mover, message FROM history WHERE transfer=? ORDER BY id DESC LIMIT ?",
                (t["id"], int(hdr.get("history", 50))))][::-1]
            transfers.append(t)
        return {"data_file": f, "transfers": transfers}

    def _op_group(self, hdr: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
        """Counts per status for a -groupby group, and the unfinished files when few remain."""
        group = hdr.get("group")
        counts: dict[str, int] = {}
        for r in self.db.execute("SELECT t.status, COUNT(*) FROM transfers t JOIN data_files d ON d.id=t.data_file "
                                 "WHERE d.groupby=? AND d.deleted=0 GROUP BY t.status", (group,)):
            counts[r[0]] = r[1]
        files = self.db.execute("SELECT COUNT(*), SUM(status='stored'), SUM(status='failed') FROM data_files "
                                "WHERE groupby=? AND deleted=0", (group,)).fetchone()
        total = sum(counts.values())
        waiting = total - sum(counts.get(s, 0) for s in (DONE, FAILED, STOPPED, STANDBY))
        pending = []
        if 0 < waiting <= int(hdr.get("detail", 10)):
            for r in self.db.execute(
                    "SELECT t.*, d.size FROM transfers t JOIN data_files d ON d.id=t.data_file WHERE d.groupby=? AND "
                    "d.deleted=0 AND t.status NOT IN (?,?,?,?) ORDER BY t.id", (group, DONE, FAILED, STOPPED, STANDBY)):
                pending.append(self._transfer_dict(r))
        return {"group": group, "found": total > 0, "files": files[0], "retrieved": files[1] or 0,
                "failed_files": files[2] or 0, "transfers": total, "counts": counts, "remaining": waiting,
                "done": total > 0 and waiting == 0, "pending": pending}

    def _op_list(self, hdr: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
        """Transfers, newest first, filtered by destination / status / group / newer than ``since`` id."""
        where, args = ["d.deleted=0"], []
        for key, col in (("destination", "t.destination"), ("status", "t.status"), ("group", "d.groupby")):
            if hdr.get(key):
                where.append(f"{col}=?")
                args.append(hdr[key])
        if hdr.get("since"):
            where.append("t.id>?")
            args.append(int(hdr["since"]))
        rows = self.db.execute(
            "SELECT t.*, d.size, d.groupby, d.source FROM transfers t JOIN data_files d ON d.id=t.data_file "
            f"WHERE {' AND '.join(where)} ORDER BY t.id DESC LIMIT ?", (*args, int(hdr.get("limit", 100))))
        return {"transfers": [self._transfer_dict(r) for r in rows]}

    def _op_history(self, hdr: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
        rows = self.db.execute("SELECT * FROM history WHERE transfer=? ORDER BY id", (int(hdr["id"]),))
        return {"history": [row(r) for r in rows]}

    def _transfer_ids(self, hdr: dict[str, Any]) -> list[int]:
        if hdr.get("transfer") is not None:
            ids = [int(hdr["transfer"])]
        elif hdr.get("id") is not None:
            ids = self._file_transfers(int(hdr["id"]))
        elif hdr.get("group"):
            ids = [r[0] for r in self.db.execute(
                "SELECT t.id FROM transfers t JOIN data_files d ON d.id=t.data_file WHERE d.groupby=? "
                "AND d.deleted=0", (hdr["group"],))]
        else:
            raise TransferError("give a DataFileId (id), a transfer id (transfer) or a group")
        if not ids:
            raise TransferError("no such transfer")
        return ids

    def _op_requeue(self, hdr: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
        """Send again (or release from StandBy) — resets the retry counter; a failed retrieval is retried."""
        ids = self._transfer_ids(hdr)
        n = 0
        for tid in ids:
            t = self.db.execute("SELECT t.status, t.destination, d.id AS dfid, d.status AS fstatus, d.groupby, "
                                "d.deleted FROM transfers t "
                                "JOIN data_files d ON d.id=t.data_file WHERE t.id=?", (tid,)).fetchone()
            if t is None:
                raise TransferError(f"unknown transfer {tid}")
            self._check_dest_perm(user, t["destination"])
            if t["deleted"]:
                raise TransferError(f"DataFileId={t['dfid']} was replaced, purged or its push failed: push it again")
            if t["fstatus"] == "failed" and t["groupby"]:
                self.db.execute("UPDATE data_files SET status='preset', fetch_failures=0 WHERE id=?", (t["dfid"],))
                self._set_status(tid, PRESET, None, f"retrieval re-queued by {user['name']}", failures=0)
                n += 1
                continue
            if t["status"] in (ARRIVING, PRESET, FETCHING):
                continue
            if t["fstatus"] == "expired":
                raise TransferError(f"DataFileId={t['dfid']} has expired and its content was removed: push it again")
            self._cancel_running(tid)
            self._set_status(tid, REQUEUED, None, f"re-queued by {user['name']}", failures=0, retry_time=0,
                             requeues=_Inc(), error=None, at=time.time() if hdr.get("now") else _Keep())
            n += 1
        return {"requeued": n, "message": f"{n} DataTransfer(s) re-queued"}

    def _op_stop(self, hdr: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
        ids = self._transfer_ids(hdr)
        n = 0
        for tid in ids:
            t = self.db.execute("SELECT status, destination FROM transfers WHERE id=?", (tid,)).fetchone()
            self._check_dest_perm(user, t["destination"])
            if t["status"] in (DONE, STOPPED, FAILED):
                continue
            self._cancel_running(tid)
            self._set_status(tid, STOPPED, None, f"stopped by {user['name']}", finished=time.time())
            n += 1
        return {"stopped": n, "message": f"{n} DataTransfer(s) stopped"}

    def _op_destinations(self, hdr: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
        counts: dict[str, dict[str, int]] = {}
        for r in self.db.execute("SELECT t.destination, t.status, COUNT(*) FROM transfers t JOIN data_files d "
                                 "ON d.id=t.data_file WHERE d.deleted=0 GROUP BY 1, 2"):
            counts.setdefault(r[0], {})[r[1]] = r[2]
        out = []
        for name, d in sorted(self.dests.items()):
            opts = {k: v for k, v in d["options"].items() if k != "password"}
            out.append({"name": name, "url": d["url"], "options": opts, "enabled": d["enabled"],
                        "counts": counts.get(name, {})})
        return {"destinations": out}

    def _op_destination_add(self, hdr: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
        self._check_admin(user)
        name, url = str(hdr.get("name") or ""), str(hdr.get("url") or "")
        if not name or not all(c.isalnum() or c in "-_." for c in name):
            raise TransferError(f"bad destination name {name!r} (letters, digits, - _ .)")
        replace = bool(hdr.get("replace"))
        if name in self.dests and not replace:
            raise TransferError(f"destination {name!r} already exists (use --replace to change it)")
        dest = make_destination(name, url, hdr.get("options") or {})
        opts = dest.options
        self.db.execute("INSERT OR REPLACE INTO destinations(name, url, options, enabled, created) VALUES (?,?,?,?,?)",
                        (name, url, json.dumps(opts), 1, time.time()))
        self.dests[name] = {"url": url, "options": opts, "enabled": True}
        self._dirty = True
        return {"message": f"destination {name} {'updated' if replace else 'added'}: {url}", "options": opts}

    def _op_destination_remove(self, hdr: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
        self._check_admin(user)
        name = hdr.get("name")
        if name not in self.dests:
            raise TransferError(f"unknown destination {name!r}")
        busy = self.db.execute("SELECT COUNT(*) FROM transfers WHERE destination=? AND status NOT IN (?,?,?)",
                               (name, DONE, FAILED, STOPPED)).fetchone()[0]
        if busy and not hdr.get("force"):
            raise TransferError(f"destination {name} has {busy} unfinished transfer(s); stop them or use --force")
        for (tid,) in self.db.execute("SELECT id FROM transfers WHERE destination=? AND status NOT IN (?,?,?)",
                                      (name, DONE, FAILED, STOPPED)).fetchall():
            self._cancel_running(tid)
            self._set_status(tid, STOPPED, None, "destination removed")
        self.db.execute("DELETE FROM destinations WHERE name=?", (name,))
        del self.dests[name]
        return {"message": f"destination {name} removed"}

    def _op_scheduler(self, hdr: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
        """ecpds -scheduler -start|-stop|-check [-destination D] [-streams N -timeout D]."""
        action, dest = hdr.get("action"), hdr.get("destination")
        if action in ("start", "stop"):
            self._check_admin(user)
            if dest:
                if dest not in self.dests:
                    raise TransferError(f"unknown destination {dest!r}")
                self.dests[dest]["enabled"] = action == "start"
                self.db.execute("UPDATE destinations SET enabled=? WHERE name=?", (int(action == "start"), dest))
                self._dirty = True
                return {"message": f"Destination {dest} {'started' if action == 'start' else 'stopped'}"}
            self.retrievals_paused = action == "stop"
            self._dirty = True
        elif action != "check":
            raise TransferError("scheduler action must be start, stop or check")
        if hdr.get("streams") is not None:
            self._check_admin(user)
            self.max_retrievals = max(1, int(hdr["streams"]))
        if hdr.get("timeout") is not None:
            self.retrieval_timeout = float(hdr["timeout"])
        state = "stopped" if self.retrievals_paused else "started"
        return {"message": f"Scheduler {state} (streams={self.max_retrievals},timeout={self.retrieval_timeout:g}s)",
                "movers": [{"name": m.name, "address": m.data_addr, "jobs": len(m.jobs), "capacity": m.capacity}
                           for m in self.movers.values()]}

    def _op_user_add(self, hdr: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
        """Add or replace a data user (the first user added must be an administrator)."""
        self._check_admin(user)
        name, password = str(hdr.get("name") or ""), hdr.get("new_password")
        if not name or not isinstance(password, str) or len(password) < 4:
            raise TransferError("user_add needs a name and a password of at least 4 characters")
        admin = bool(hdr.get("admin"))
        if not self._has_users() and not admin:
            raise TransferError("the first data user must be an administrator (--admin)")
        salt = os.urandom(16)
        dests = list(hdr.get("destinations") or ["*"])
        self.db.execute("INSERT OR REPLACE INTO users(name, salt, hash, destinations, admin, created) "
                        "VALUES (?,?,?,?,?,?)", (name, salt, hash_password(password, salt), json.dumps(dests),
                                                 int(admin), time.time()))
        self._auth_cache = {k: v for k, v in self._auth_cache.items() if k[0] != name}
        self._users_exist = None
        return {"message": f"user {name} saved ({'admin, ' if admin else ''}destinations: {', '.join(dests)})"}


def serve(home: str | Path, port: int = 0, host: str = "127.0.0.1", **kwargs: Any) -> None:
    """Run a master in the foreground until SIGTERM/SIGINT."""
    master = Master(home, port, host, **kwargs)

    def _term(signum: int, frame: Any) -> None:
        master.stop()

    signal.signal(signal.SIGTERM, _term)
    signal.signal(signal.SIGINT, _term)
    master.run()
