"""The suite server process: sockets, the owner thread, the HTTP child-command endpoint.

Threads and their owners (all stopped by :meth:`SuiteServer.close`):

* **owner thread** — the only thread that touches the definition. It serves the ZMQ ROUTER (requests from
  clients, bound on TCP and on an in-process endpoint), runs the scheduler's traversals, reaps job
  commands, publishes change deltas on the PUB socket and hands checkpoint snapshots to the saver.
* **HTTP thread(s)** — ``http.server`` answering ``curl`` child commands; each request is forwarded to the
  owner thread through the in-process ROUTER endpoint, so there is one code path for every command.
* **checkpoint saver** — writes snapshots to disk (see :mod:`ecflow_lab.server.checkpoint`).

Requests arrive on the ZMQ ROUTER (``port``) and, for the Python Client, on a *direct* TCP channel
(``direct_port``, advertised by the ``info`` request) that the owner thread polls itself: the same protocol
frames, length-prefixed (:func:`ecflow_lab.protocol.pack_frames`). It exists for speed — a ZeroMQ round
trip goes through libzmq's I/O threads and measured 3-14k/s on the 2-core test machine against 30-60k/s for
a plain socket — and the Client falls back to ZeroMQ (and its wait-for-restart logic) whenever it fails.

HTTP form (for job scripts without ``ecflow-lab``)::

    curl -fsS http://$ECF_HOST:$ECF_HTTP_PORT/v1/child/event \\
         -d ECF_NAME=$ECF_NAME -d ECF_PASS=$ECF_PASS -d ECF_TRYNO=$ECF_TRYNO -d name=ev
    # init: -d rid=$$   meter/label: -d name=m -d value=5   abort: -d reason=...   wait: -d expr=...
    # queue: -d name=q -d action=active [-d step=..] [-d queue_path=..]
    # GET with a query string works too; user commands: GET /v1/ping, /v1/query?kind=state&path=/s/t

From bash jobs without starting a process per command: ``. ecf_http.sh`` (the server puts it on its jobs'
PATH, next to the ``ecflow_client`` shim), then ``ecf_child meter name=m value=5`` etc. (bash's /dev/tcp).

The reply is ``200 OK`` with the result as text, ``403`` when the server refuses (zombie, wrong password)
and ``400`` for a malformed request.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import socket
import threading
import time
import urllib.parse
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import zmq

import ecflow_lab.protocol as protocol
from ecflow_lab.security.curve import peer_user
from ecflow_lab.server.checkpoint import (
    DEFAULT_INTERVAL,
    SAVE_ALARM_S,
    CheckpointSaver,
    ServerLog,
    read_checkpoint,
)

SERVER_VERSION = f"ecflow_lab 0.1.0 (ecFlow 5.x compatible, protocol v{protocol.VERSION})"
DELTA_HISTORY = 2000
# Child commands make a traversal due (ecFlow: "within about 1 s"); user commands traverse at once.
TRAVERSE_EVERY = 0.02
# Deltas are batched: at most one PUB message per PUBLISH_EVERY seconds (sync/news/get_defs flush first).
PUBLISH_EVERY = 0.02


def free_port(host: str = "127.0.0.1") -> int:
    """A free TCP port on ``host`` (below 49152, like ecflow_server requires)."""
    import random

    for _ in range(1000):
        p = random.randint(20000, 49000)
        s = socket.socket()
        try:
            s.bind((host, p))
            return p
        except OSError:
            continue
        finally:
            s.close()
    raise RuntimeError("no free port found")


class SuiteServer:
    """One suite server: ``with SuiteServer(home) as srv: ...`` or ``start()`` / ``close()``.

    ``port=0`` picks a free port. ``clock`` (a callable returning Unix seconds) drives the suite calendars so
    tests can use a fake clock. ``state`` is the server state after start (ecflow_start.sh leaves a server
    RUNNING; pass ``"HALTED"`` to start the way a bare ecflow_server does).
    """

    def __init__(self, home: str | os.PathLike[str], port: int = 0, host: str = "127.0.0.1", *,
                 http_port: int | None = 0, pub_port: int = 0, state: str = "RUNNING",
                 clock: Any = None, checkpoint_mode: str = "ON_TIME",
                 checkpoint_interval: int = DEFAULT_INTERVAL, restore: bool = True,
                 interval: float = 60.0, ssl: str | None = None) -> None:
        self.home = Path(home).absolute()
        self.home.mkdir(parents=True, exist_ok=True)
        self.host = host
        self._want_port, self._want_http, self._want_pub = port, http_port, pub_port
        self.port = 0
        self.http_port = 0
        self.pub_port = 0
        self._initial_state = state.upper()
        self._clock = clock or time.time
        self.checkpoint_mode = checkpoint_mode
        self.checkpoint_interval = checkpoint_interval
        self._restore = restore
        self.interval = interval
        self.server_id = secrets.token_hex(6)
        self._ctx = zmq.Context.instance()
        self._inproc = f"inproc://ecflow-lab-{self.server_id}"
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._http: ThreadingHTTPServer | None = None
        self._http_thread: threading.Thread | None = None
        self._req_pool: queue.SimpleQueue[zmq.Socket] = queue.SimpleQueue()
        self._pool_all: list[zmq.Socket] = []
        self._pool_lock = threading.Lock()
        self.seq = int(time.time() * 1000)
        self._history: deque[dict[str, Any]] = deque(maxlen=DELTA_HISTORY)
        self.engine: Any = None
        self.log: ServerLog | None = None
        self.saver: CheckpointSaver | None = None
        self.startup_error: BaseException | None = None
        self.requests = 0
        self._pub: zmq.Socket | None = None
        self._direct: socket.socket | None = None
        self.direct_port = 0
        self.started_at = time.time()
        #: ECF_SSL setting (None: plain). With it, ROUTER and PUB are Curve servers (keys from
        #: ``ecflow-lab keys``) and the plain direct channel is not offered.
        self.ssl = ssl
        self.curve: Any = None
        #: white list and password files (ecFlow's), checked for every user request
        self.access: Any = None

    # ------------------------------------------------------------------ lifetime
    @property
    def hostname(self) -> str:
        return socket.gethostname()

    def file(self, suffix: str) -> Path:
        """``<home>/<host>.<port>.<suffix>`` (ecFlow's naming of the check/log files)."""
        return self.home / f"{self.hostname}.{self.port}.{suffix}"

    def start(self) -> SuiteServer:
        """Bind the sockets, restore the checkpoint, start the threads; returns self."""
        from ecflow_lab.security import CurveServer, SecurityFileError
        from ecflow_lab.server.engine import Engine

        if self.ssl and self.curve is None:
            try:
                self.curve = CurveServer.from_setting(self.ssl, self.hostname, self._want_port or None)
            except SecurityFileError as exc:
                raise RuntimeError(f"encryption is on (ECF_SSL / --ssl) but {exc}") from None
            self._ctx = self.curve.context   # inproc peers (HTTP thread) must share the router's context
        router = self._ctx.socket(zmq.ROUTER)
        if self.curve is not None:
            self.curve.secure(router)
        router.setsockopt(zmq.LINGER, 0)
        router.setsockopt(zmq.ROUTER_HANDOVER, 1)
        pub = self._ctx.socket(zmq.PUB)
        if self.curve is not None:
            self.curve.secure(pub)
        pub.setsockopt(zmq.LINGER, 0)
        pub.setsockopt(zmq.SNDHWM, 100000)
        try:
            if self._want_port:
                router.bind(f"tcp://{self.host}:{self._want_port}")
                self.port = self._want_port
            else:
                self.port = free_port(self.host)
                router.bind(f"tcp://{self.host}:{self.port}")
            router.bind(self._inproc)
            previous = self._previous_ports()
            if self._want_pub:
                pub.bind(f"tcp://{self.host}:{self._want_pub}")
                self.pub_port = self._want_pub
            else:
                try:   # after a restart, subscribers reconnect by themselves when the port is the same
                    if not previous.get("pub_port"):
                        raise zmq.ZMQError()
                    pub.bind(f"tcp://{self.host}:{previous['pub_port']}")
                    self.pub_port = int(previous["pub_port"])
                except zmq.ZMQError:
                    self.pub_port = pub.bind_to_random_port(f"tcp://{self.host}", 20000, 49000)
            if not self._want_http and previous.get("http_port"):
                # jobs still running from before a crash have ECF_HTTP_PORT baked in: keep it if we can
                self._want_http = int(previous["http_port"])
        except zmq.ZMQError as exc:
            router.close()
            pub.close()
            self._close_curve()
            raise RuntimeError(f"server cannot bind port {self._want_port or self.port} on {self.host}: "
                               f"{exc}") from None
        if self.curve is None:   # the direct channel is plain TCP: not offered when traffic must be encrypted
            self._direct = socket.socket()
            self._direct.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                self._direct.bind((self.host, int(previous.get("direct_port") or 0)))
            except OSError:
                self._direct.bind((self.host, 0))
            self._direct.listen(128)
            self._direct.setblocking(False)
            self.direct_port = self._direct.getsockname()[1]
        self.log = ServerLog(self.file("ecf.log"), self._clock)
        from ecflow_lab.security import ServerAccess

        try:
            self.access = ServerAccess(self.home, self.hostname, self.port, log=self.log.msg)
        except SecurityFileError as exc:
            self.log.err(str(exc))
            router.close(linger=0)
            pub.close(linger=0)
            if self._direct is not None:
                self._direct.close()
            self.log.close()
            self._close_curve()
            raise RuntimeError(f"cannot start: {exc}") from None
        self.engine = Engine(self, clock=self._clock)
        self.log.msg(f"--start ecflow_lab server on {self.host}:{self.port} home {self.home}")
        if self._restore:
            found = read_checkpoint(self.file("ecf.check"))
            if found:
                text, fname = found
                try:
                    self.engine.restore_text(text, fname)
                    self.log.msg(f"--restore_from_checkpt {fname}")
                except Exception as exc:   # a corrupt main file: try the backup
                    self.log.err(f"cannot restore {fname}: {exc}")
                    back = read_checkpoint(str(self.file("ecf.check")) + ".b")
                    if back and back[1] != fname:
                        self.engine.restore_text(back[0], back[1])
                        self.log.msg(f"--restore_from_checkpt {back[1]}")
        self.engine.set_server_state(self._initial_state)
        self.saver = CheckpointSaver(self.file("ecf.check"), on_error=self._checkpoint_error)
        if self._want_http is not None:
            self._start_http()
            self.engine.set_http_port(self.http_port)
        self._thread = threading.Thread(target=self._owner, args=(router, pub), name="ecflow-lab-server",
                                        daemon=True)
        self._thread.start()
        self._write_info()
        return self

    def _previous_ports(self) -> dict[str, Any]:
        """Ports of the previous server on this home and port (its info file), if any."""
        try:
            return json.loads((self.home / f"ecflow_lab.{self.port}.json").read_text())
        except (OSError, ValueError):
            return {}

    def _write_info(self, running: bool = True) -> None:
        """``HOME/ecflow_lab.PORT.json``: how to reach this server (ports, pid) and whether it runs."""
        if not self.port:
            return
        info = {"host": self.host, "port": self.port, "pub_port": self.pub_port, "http_port": self.http_port,
                "direct_port": self.direct_port, "pid": os.getpid(), "server_id": self.server_id,
                "running": running}
        p = self.home / f"ecflow_lab.{self.port}.json"
        try:
            tmp = p.with_suffix(".tmp")
            tmp.write_text(json.dumps(info))
            os.replace(tmp, p)
        except OSError:
            pass

    def __enter__(self) -> SuiteServer:
        return self.start() if self._thread is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request_stop(self) -> None:
        """Ask the owner thread to stop (from any thread)."""
        self._stopping.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the owner thread stopped (terminate request or close); True if it did."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def close(self) -> None:
        """Stop every thread, write a final checkpoint (unless mode NEVER), close files and sockets."""
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(30)
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._http_thread is not None:
            self._http_thread.join(5)
        with self._pool_lock:
            for s in self._pool_all:
                s.close(linger=0)
            self._pool_all.clear()
        if self.saver is not None:
            self.saver.close()
            self.saver = None
        if self.log is not None:
            self.log.close()
            self.log = None
        self._write_info(running=False)   # kept: a restart on this home and port reuses the ports
        self._close_curve()
        self._stopped.set()

    def _close_curve(self) -> None:
        if self.curve is not None:
            self.curve.close()
            self.curve = None

    # ------------------------------------------------------------------ owner thread
    def _owner(self, router: zmq.Socket, pub: zmq.Socket) -> None:
        engine = self.engine
        log = self.log
        assert engine is not None and log is not None
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        listener = self._direct
        conns: dict[int, tuple[socket.socket, bytearray]] = {}
        if listener is not None:
            poller.register(listener, zmq.POLLIN)
        next_tick = time.monotonic()
        last_ckpt = time.monotonic()
        last_trav = last_pub = 0.0
        self._pub = pub
        try:
            while not self._stopping.is_set():
                now_m = time.monotonic()
                wake = next_tick
                if engine.need_traversal:
                    wake = min(wake, now_m if engine.traverse_now else last_trav + TRAVERSE_EVERY)
                if engine.has_changes():
                    wake = min(wake, last_pub + PUBLISH_EVERY)
                timeout = max(0, int((wake - now_m) * 1000) + (0 if wake <= now_m else 1))
                ready = poller.poll(min(timeout, 200))
                if ready:
                    pending: list[list[bytes]] = []
                    direct: list[tuple[socket.socket, list[bytes]]] = []
                    router_ready = False
                    for sock, _ in ready:
                        if sock is router:
                            router_ready = True
                            continue
                        fd = sock if isinstance(sock, int) else sock.fileno()
                        if listener is not None and fd == listener.fileno():
                            self._accept(listener, poller, conns)
                        elif fd in conns:
                            self._read_direct(conns[fd][0], poller, conns, direct)
                    curve = self.curve is not None
                    for _ in range(2000 if router_ready else 0):  # no zmq.Again raised for nothing
                        try:
                            if curve:   # the key's user name travels as a property of the frames
                                raw = router.recv_multipart(zmq.NOBLOCK, copy=False)
                                peer = peer_user(raw[-1])
                                frames = [f.bytes for f in raw]
                            else:
                                frames = router.recv_multipart(zmq.NOBLOCK, copy=True)
                                peer = None
                        except zmq.Again:
                            break
                        pending.append(self._handle(frames, peer))
                        if self._stopping.is_set():
                            break
                    if self.checkpoint_mode == "ALWAYS" and engine.dirty_since_checkpoint:
                        # durable mode: what a reply acknowledges is on disk before the reply leaves
                        engine.traverse() if engine.need_traversal else None
                        self.checkpoint(wait=True)
                        last_ckpt = time.monotonic()
                    for reply in pending:
                        router.send_multipart(reply, copy=len(reply[-1]) < 65536)
                    for conn, reply in direct:
                        try:
                            conn.sendall(protocol.pack_frames(reply))
                        except OSError:
                            self._drop(conn, poller, conns)
                if self._stopping.is_set():
                    break
                engine.reap_jobs()
                now_m = time.monotonic()
                if now_m >= next_tick:
                    engine.tick()
                    next_tick = now_m + 1.0
                if engine.need_traversal and (engine.traverse_now or now_m - last_trav >= TRAVERSE_EVERY):
                    engine.traverse()
                    last_trav = now_m
                if now_m - last_pub >= PUBLISH_EVERY and engine.has_changes():
                    self._publish(pub)
                    last_pub = now_m
                if (self.checkpoint_mode == "ON_TIME" and engine.dirty_since_checkpoint
                        and engine.server_state != "HALTED" and now_m - last_ckpt >= self.checkpoint_interval):
                    self.checkpoint()
                    last_ckpt = now_m
                elif self.checkpoint_mode == "ALWAYS" and engine.dirty_since_checkpoint:
                    self.checkpoint()
                    last_ckpt = now_m
                log.flush()
        except BaseException as exc:  # pragma: no cover - logged, then the server stops
            log.err(f"owner thread failed: {exc!r}")
            import traceback

            log.err(traceback.format_exc().replace("\n", " | "))
            raise
        finally:
            try:
                self._publish(pub)
                if self.checkpoint_mode != "NEVER" and engine.server_state != "HALTED":
                    self.checkpoint()
                log.msg("--terminate server stopped")
                log.flush()
            finally:
                for conn, _ in list(conns.values()):
                    conn.close()
                if listener is not None:
                    listener.close()
                router.close(linger=1000)
                pub.close(linger=100)
                self._stopping.set()
                if self._http is not None:
                    threading.Thread(target=self._http.shutdown, daemon=True).start()

    # ------------------------------------------------------------------ direct TCP channel
    def _accept(self, listener: socket.socket, poller: zmq.Poller, conns: dict) -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.settimeout(60)          # reads happen only when poll says readable; sends may wait this long
        conns[conn.fileno()] = (conn, bytearray())
        poller.register(conn, zmq.POLLIN)

    def _drop(self, conn: socket.socket, poller: zmq.Poller, conns: dict) -> None:
        conns.pop(conn.fileno(), None)
        try:
            poller.unregister(conn)
        except KeyError:
            pass
        conn.close()

    def _read_direct(self, conn: Any, poller: zmq.Poller, conns: dict,
                     out: list[tuple[socket.socket, list[bytes]]]) -> None:
        entry = conns.get(conn.fileno())
        if entry is None:
            return
        sock, buf = entry
        try:
            data = sock.recv(1 << 20)
        except OSError:
            data = b""
        if not data:
            self._drop(sock, poller, conns)
            return
        buf += data
        while len(buf) >= 4:
            n = int.from_bytes(buf[:4], "big")
            if len(buf) < 4 + n:
                break
            record = bytes(buf[4:4 + n])
            del buf[:4 + n]
            try:
                frames = protocol.unpack_frames(record)
            except (protocol.ProtocolError, ValueError, IndexError) as exc:
                out.append((sock, protocol.encode_reply(error=f"protocol error: {exc}")))
                continue
            out.append((sock, self._handle([b"direct"] + frames)[1:]))

    def checkpoint(self, wait: bool = False) -> None:
        """Snapshot the definition (owner thread) and hand it to the saver thread."""
        if self.engine is None or self.saver is None:
            return
        self._checkpoint_report()
        text = self.engine.state_bytes()
        self.engine.dirty_since_checkpoint = False
        try:
            self.saver.submit(text, wait=wait)
        finally:
            if wait:
                self._checkpoint_report()

    def _checkpoint_report(self) -> None:
        """Owner thread: log the saver's last outcome once (ECF_CHECKPT_ERROR, slow-save warning)."""
        saver, eng = self.saver, self.engine
        if saver is None or eng is None or saver.saves == getattr(self, "_reported_saves", 0):
            return
        self._reported_saves = saver.saves
        if saver.last_error:
            eng.server_vars["ECF_CHECKPT_ERROR"] = saver.last_error
            if self.log is not None:
                self.log.err(saver.last_error)
        else:
            eng.server_vars.pop("ECF_CHECKPT_ERROR", None)
        if saver.last_save_s > SAVE_ALARM_S and self.log is not None:
            self.log.war(f"checkpoint save took {saver.last_save_s:.1f} s (> {SAVE_ALARM_S:.0f} s)")

    def _checkpoint_error(self, message: str) -> None:
        # called in the saver thread: only note it; the owner logs on the next checkpoint request
        self.last_checkpoint_error = message

    def _handle(self, frames: list[bytes], peer: str | None = None) -> list[bytes]:
        # ROUTER frames: [identity, (empty delimiter), header, payload?]
        ident = frames[0]
        body = frames[1:]
        envelope = [ident]
        if body and body[0] == b"":
            envelope.append(b"")
            body = body[1:]
        self.requests += 1
        try:
            cmd, args, payload, user = protocol.decode_request(body)
            auth = args.pop("__auth", None)
            if self.access is not None and cmd not in protocol.CHILD_COMMANDS:
                # user requests: password files, then the white list (job commands carry the job password)
                if peer:
                    user = peer   # a Curve key is an authenticated identity; a claimed name is not
                auth = auth if isinstance(auth, dict) else {}
                self.access.authorize_request(user, cmd, args, passwd=auth.get("passwd"),
                                              custom=bool(auth.get("custom")))
            result, out = self.engine.dispatch(cmd, args, payload, user)
            reply = protocol.encode_reply(result, out)
        except protocol.ProtocolError as exc:
            reply = protocol.encode_reply(error=f"protocol error: {exc}")
        except (RuntimeError, ValueError, KeyError, TypeError, OSError) as exc:
            msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            reply = protocol.encode_reply(error=str(msg))
        return envelope + reply

    def flush_deltas(self) -> None:
        """Publish pending changes now (owner thread): a sync right after a command must see it."""
        if self._pub is not None:
            self._publish(self._pub)

    def _publish(self, pub: zmq.Socket) -> None:
        msg = self.engine.take_delta()
        if msg is None:
            return
        self.seq += 1
        msg["v"] = protocol.VERSION
        msg["seq"] = self.seq
        self._history.append(msg)
        pub.send(protocol.encode_delta(msg))

    def deltas_since(self, seq: int, server_id: str) -> list[dict[str, Any]] | None:
        """Deltas after ``seq``, or None when the client must take a full copy."""
        if server_id != self.server_id:
            return None
        if seq >= self.seq:
            return []
        if not self._history or self._history[0]["seq"] > seq + 1:
            return None
        return [m for m in self._history if m["seq"] > seq]

    # ------------------------------------------------------------------ HTTP
    def _start_http(self) -> None:
        server = self
        port = self._want_http or 0
        try:
            httpd = ThreadingHTTPServer((self.host, port), _make_handler(server))
        except OSError:
            httpd = ThreadingHTTPServer((self.host, 0), _make_handler(server))
        httpd.daemon_threads = True
        self._http = httpd
        self.http_port = httpd.server_address[1]
        self._http_thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                             name="ecflow-lab-http", daemon=True)
        self._http_thread.start()

    def _borrow(self) -> zmq.Socket:
        try:
            return self._req_pool.get_nowait()
        except queue.Empty:
            s = self._ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            s.connect(self._inproc)
            with self._pool_lock:
                self._pool_all.append(s)
            return s

    def call_inproc(self, cmd: str, args: dict[str, Any], timeout: float = 600.0) -> tuple[Any, bytes | None]:
        """Send one request to the owner thread from another thread (used by the HTTP endpoint)."""
        if self._stopping.is_set():
            raise RuntimeError("server is stopping")
        s = self._borrow()
        try:
            s.send_multipart([b""] + protocol.encode_request(cmd, args, None, "http"))
            if not s.poll(int(timeout * 1000)):
                with self._pool_lock:
                    self._pool_all.remove(s)
                s.close(linger=0)
                s = None
                raise RuntimeError(f"no reply from the server to '{cmd}'")
            reply = s.recv_multipart()
            return protocol.decode_reply(reply[1:])
        finally:
            if s is not None:
                self._req_pool.put(s)


_ALIASES = {"ECF_NAME": "path", "ECF_PASS": "passwd", "ECF_TRYNO": "tryno", "ECF_RID": "rid",
            "event": "name", "meter": "name", "label": "name"}


def _make_handler(server: SuiteServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "ecflow_lab"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
            pass

        def setup(self) -> None:
            super().setup()
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def _reply(self, code: int, text: str) -> None:
            # one write for status, headers and body: no Nagle/delayed-ACK stall between them
            data = text.encode()
            reason = {200: "OK", 400: "Bad Request", 403: "Forbidden"}.get(code, "")
            head = (f"HTTP/1.1 {code} {reason}\r\nServer: ecflow_lab\r\n"
                    f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(data)}\r\n\r\n")
            self.wfile.write(head.encode() + data)
            self.wfile.flush()

        def _params(self) -> tuple[str, dict[str, Any]]:
            url = urllib.parse.urlsplit(self.path)
            params: dict[str, Any] = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
            n = int(self.headers.get("Content-Length") or 0)
            if n:
                body = self.rfile.read(n)
                ctype = self.headers.get("Content-Type", "")
                if "json" in ctype or body[:1] == b"{":
                    data = json.loads(body)
                    if not isinstance(data, dict):
                        raise ValueError("JSON body must be an object")
                    params.update(data)
                else:
                    params.update({k: v[-1] for k, v in urllib.parse.parse_qs(body.decode()).items()})
            return url.path, params

        def _serve(self) -> None:
            try:
                path, params = self._params()
            except (ValueError, UnicodeDecodeError) as exc:
                self._reply(400, f"bad request: {exc}\n")
                return
            parts = [p for p in path.split("/") if p]
            if len(parts) < 2 or parts[0] != "v1":
                self._reply(400, "expected /v1/child/<init|event|meter|label|complete|abort|wait|queue> "
                                 "or /v1/<user command>\n")
                return
            child = parts[1] == "child"
            cmd = parts[2] if child and len(parts) > 2 else parts[1]
            if not child and server.curve is not None:
                # HTTP is plain text: with encryption on it only carries job commands (job password checked)
                self._reply(403, "user commands over HTTP are refused while encryption is on (ECF_SSL / --ssl); "
                                 "use the Client\n")
                return
            args = {_ALIASES.get(k, k): v for k, v in params.items()}
            if child:
                if cmd not in protocol.CHILD_COMMANDS:
                    self._reply(400, f"unknown child command {cmd!r}; expected one of "
                                     f"{', '.join(sorted(protocol.CHILD_COMMANDS))}\n")
                    return
                if "value" in args and cmd == "meter":
                    args["value"] = int(args["value"])
                if cmd == "event" and "value" in args:
                    args["value"] = str(args["value"]).lower() not in ("clear", "0", "false")
                args.setdefault("tryno", 1)
            deadline = time.monotonic() + float(params.get("ECF_TIMEOUT", 24 * 3600))
            while True:
                try:
                    result, payload = server.call_inproc(cmd, args)
                except RuntimeError as exc:
                    self._reply(403 if child else 400, f"{exc}\n")
                    return
                if child and isinstance(result, dict) and result.get("block"):
                    if "ECF_DENIED" in params or time.monotonic() > deadline:
                        self._reply(403, f"{result.get('reason', 'blocked')}\n")
                        return
                    time.sleep(float(result.get("retry", 2.0)))
                    continue
                if child and isinstance(result, dict) and result.get("fail"):
                    self._reply(403, f"{result.get('reason', 'refused')}\n")
                    return
                break
            if payload is not None:
                text = payload.decode(errors="replace")
            elif result is None:
                text = "OK\n"
            elif isinstance(result, str):
                text = result if result.endswith("\n") else result + "\n"
            else:
                text = json.dumps(result) + "\n"
            self._reply(200, text)

        do_GET = _serve
        do_POST = _serve

    return Handler
