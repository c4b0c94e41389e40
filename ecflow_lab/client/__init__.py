"""``ecflow_lab.Client``: the ``ecflow.Client`` API (seed 001) over the lab's ZeroMQ protocol.

Method names and argument forms follow ecflow's Python client, so existing scripts carry over::

    ci = Client("localhost:3141")
    ci.load("suite.def"); ci.begin_suite("s")
    ci.sync_local(); print(ci.get_defs())

Errors raise ``RuntimeError`` with the server's message, as ecflow does. The connection is persistent (one
DEALER socket per Client) so a loop of child commands pays one round trip per call, not one TCP handshake.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import ecflow_lab.protocol as protocol

if TYPE_CHECKING:  # pragma: no cover
    import zmq

__all__ = ["Client", "Subscription", "CheckPt", "DEFAULT_PORT"]

DEFAULT_PORT = 3141
CLIENT_VERSION = f"ecflow_lab 0.1.0 (protocol v{protocol.VERSION})"


class CheckPt:
    """Checkpoint modes, as ``ecflow.CheckPt``."""

    UNDEFINED = "UNDEFINED"
    NEVER = "NEVER"
    ON_TIME = "ON_TIME"
    ALWAYS = "ALWAYS"


def _paths(p: str | Iterable[str]) -> list[str]:
    return [p] if isinstance(p, str) else list(p)


def _state_name(s: Any) -> str:
    return s if isinstance(s, str) else getattr(s, "name", str(s))


class Client:
    """A connection to one suite server: user commands, child commands and incremental sync."""

    def __init__(self, host: str | None = None, port: int | str | None = None) -> None:
        if host is not None and port is None and (":" in host or "@" in host):
            host, _, port = host.replace("@", ":").rpartition(":")
        self._host = host or os.environ.get("ECF_HOST") or "localhost"
        self._port = str(port or os.environ.get("ECF_PORT") or DEFAULT_PORT)
        self._sock: zmq.Socket | None = None   # ZeroMQ is imported on first use: job commands rarely need it
        self._lock = threading.Lock()
        # the server's direct TCP channel (fewer thread hops than ZeroMQ); ECF_LAB_ZMQ_ONLY disables it
        self._direct: socket.socket | None = None
        self._direct_port: int | None = None
        self._direct_timeout: float | None = None
        env_direct = os.environ.get("ECF_LAB_DIRECT_PORT", "")
        if env_direct.isdigit() and str(os.environ.get("ECF_PORT", "")) == self._port:
            self._direct_port = int(env_direct)    # set by the server in its jobs' environment
        self._direct_ok = "ECF_LAB_ZMQ_ONLY" not in os.environ
        self._user = os.environ.get("ECF_USER") or _login()
        # ECF_USER / set_user_name: a "custom" user, whose password is in the custom password file
        self._custom_user = bool(os.environ.get("ECF_USER"))
        self._passwd_cache: tuple[tuple[Any, ...], str | None, float] | None = None
        # encryption (ECF_SSL, enable_ssl/disable_ssl); the security layer is imported only when it is on
        self._ssl: str | None = _ssl_setting()
        # child command context (ECF_NAME, ECF_PASS, ECF_TRYNO, ECF_RID, timeouts) from the environment
        self._child_path = os.environ.get("ECF_NAME", "")
        self._child_pass = os.environ.get("ECF_PASS", "")
        self._child_tryno = int(os.environ.get("ECF_TRYNO", "1") or 1)
        self._child_pid = os.environ.get("ECF_RID", "")
        self._child_timeout = float(os.environ.get("ECF_TIMEOUT", 24 * 3600))
        self._zombie_timeout = float(os.environ.get("ECF_ZOMBIE_TIMEOUT", 12 * 3600))
        self._denied_fails = "ECF_DENIED" in os.environ
        self._init_add_vars: dict[str, str] = {}
        self._complete_del_vars: list[str] = []
        self._connect_attempts = 2
        self._retry_period = 1.0
        self._user_timeout = 3600.0
        # local definition for get_server_defs / sync_local
        self._defs: Any = None
        self._defs_text: str | None = None
        self._defs_raw: tuple[bytes, str] = (b"", "")
        self._seq = -1
        self._server_id = ""
        self._in_sync = False
        self._changed: list[str] = []
        self._handle = 0
        self._auto_sync = False
        self._debug = False

    # ------------------------------------------------------------------ transport
    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle:
            try:
                self.ch_drop()
            except RuntimeError:
                pass
        self.close()

    def close(self) -> None:
        """Close the connection (a later call reconnects)."""
        with self._lock:
            if self._sock is not None:
                self._sock.close(linger=0)
                self._sock = None
            if self._direct is not None:
                self._direct.close()
                self._direct = None

    def __del__(self) -> None:
        try:
            if self._sock is not None:
                self._sock.close(linger=0)
        except Exception:
            pass

    def _reachable(self) -> bool:
        try:
            with socket.create_connection((self._host, int(self._port)), timeout=2):
                return True
        except OSError:
            return False

    def _open(self) -> zmq.Socket:
        import zmq

        s = zmq.Context.instance().socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.IMMEDIATE, 1)
        self._connect_checked(s, self._port)
        return s

    def _connect_checked(self, s: Any, port: int | str) -> None:
        """Connect ``s`` (Curve-secured when SSL is on) and wait for the handshake, so that a refused key or
        a plain/encrypted mismatch is a clear RuntimeError instead of a request that waits forever."""
        from ecflow_lab.security import ClientCurve, CurveHandshakeError, SecurityFileError

        try:
            ClientCurve(self._ssl or "").connect(s, self._host, self._port, timeout=10.0,
                                                 endpoint=f"tcp://{self._host}:{port}")
        except (CurveHandshakeError, SecurityFileError) as exc:
            s.close(linger=0)
            raise RuntimeError(f"cannot connect to ecflow_lab server {self._host}:{self._port}: {exc}") from None

    def _auth(self) -> dict[str, Any] | None:
        """The password to send with user commands, found as ecFlow's client finds it (ECF_PASSWD /
        ECF_CUSTOM_PASSWD, else ``<host>.<port>.ecf.(custom_)passwd`` in the current folder). Looked up
        at most once a second (a stat; the file is read again only when it changed): a loop of user
        commands does not pay for it. None when there is nothing to send."""
        custom = self._custom_user
        now = time.monotonic()
        cache = self._passwd_cache
        default = "ecf.custom_passwd" if custom else "ecf.passwd"
        name = os.environ.get("ECF_CUSTOM_PASSWD" if custom else "ECF_PASSWD") or default
        if cache is not None and now - cache[2] < 1.0 and cache[0][:3] == (self._user, custom, name):
            pw = cache[1]
        else:
            setting = name
            if name == default:
                name = f"{self._host}.{self._port}.{default}"
            path = os.path.abspath(os.path.expanduser(name))
            try:
                mtime: int | None = os.stat(path).st_mtime_ns
            except OSError:
                mtime = None
            key = (self._user, custom, setting, path, mtime)
            if cache is not None and cache[0] == key:
                pw = cache[1]
            else:
                pw = None
                if mtime is not None:
                    from ecflow_lab.security import PasswdFile, SecurityFileError

                    try:
                        pw = PasswdFile.load(path).password_for(self._user, self._host, self._port)
                    except SecurityFileError as exc:
                        raise RuntimeError(str(exc)) from None
            self._passwd_cache = (key, pw, now)
        if pw is None and not custom:
            return None
        return {"passwd": pw, "custom": custom}

    def _with_auth(self, args: dict[str, Any] | None) -> dict[str, Any] | None:
        auth = self._auth()
        return args if auth is None else {**(args or {}), "__auth": auth}

    def _call(self, cmd: str, args: dict[str, Any] | None = None, payload: str | bytes | None = None,
              *, child: bool = False, timeout: float | None = None) -> tuple[Any, bytes | None]:
        """One request/reply. User commands fail fast when the server is down; child commands retry
        until ECF_TIMEOUT (the server may be restarting from its checkpoint)."""
        if not child and cmd not in protocol.CHILD_COMMANDS:
            args = self._with_auth(args)
        body = protocol.encode_request(cmd, args, payload, self._user)
        deadline = time.monotonic() + (timeout if timeout is not None else
                                       (self._child_timeout if child else self._user_timeout))
        with self._lock:
            if self._direct_ok and not self._ssl:   # the direct channel is plain TCP
                out = self._direct_call(body, deadline)
                if out is not None:
                    return out
            return self._zmq_call(cmd, [b""] + body, child, deadline)

    def _direct_call(self, body: list[bytes], deadline: float) -> tuple[Any, bytes | None] | None:
        """The request over the server's direct TCP channel; None when it is not available (the caller then
        uses ZeroMQ, which also handles waiting for a restarting server)."""
        if self._direct is None:
            try:
                if self._direct_port is None:
                    info, _ = self._zmq_call("info", [b""] + protocol.encode_request("info", self._with_auth(None), None, self._user),
                                             False,
                                             time.monotonic() + 10)
                    self._direct_port = int(info.get("direct_port") or 0)
                if not self._direct_port:
                    self._direct_ok = False
                    return None
                s = socket.create_connection((self._host, self._direct_port), timeout=5)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.settimeout(None)
                self._direct = s
                self._direct_timeout = None
            except (OSError, RuntimeError):
                self._direct_port = None
                return None
        s = self._direct
        try:
            left = deadline - time.monotonic()
            if left < 3600:               # a syscall each time: only when the deadline is near
                s.settimeout(max(1.0, left))
                self._direct_timeout = left
            elif self._direct_timeout is not None:
                s.settimeout(None)
                self._direct_timeout = None
            s.sendall(protocol.pack_frames(body))
            first = s.recv(65536)
            if len(first) < 4:
                first += _recv_exact(s, 4 - len(first))
            n = int.from_bytes(first[:4], "big")
            rest = first[4:]
            if len(rest) < n:
                rest += _recv_exact(s, n - len(rest))
            frames = protocol.unpack_frames(rest)
        except (OSError, protocol.ProtocolError):
            s.close()
            self._direct, self._direct_port = None, None
            return None
        return protocol.decode_reply(frames)

    def _zmq_call(self, cmd: str, frames: list[bytes], child: bool, deadline: float
                  ) -> tuple[Any, bytes | None]:
        import zmq  # already loaded by _open(); kept out of module import for job-side start-up

        while True:
            if self._sock is None:
                if not self._reachable():
                    if child and time.monotonic() < deadline:
                        time.sleep(min(self._retry_period * 2, 5.0))
                        continue
                    raise RuntimeError(f"cannot connect to ecflow_lab server {self._host}:{self._port}: "
                                       "connection refused (is the server running?)")
                self._sock = self._open()
            sock = self._sock
            # IMMEDIATE: with no live connection (server killed) a send would block for ever; wait for a
            # connection with a deadline, then reconnect (child commands) or report it (user commands)
            if not sock.poll(2000, zmq.POLLOUT):
                self._sock.close(linger=0)
                self._sock = None
                if time.monotonic() > deadline or (not child and not self._reachable()):
                    raise RuntimeError(f"cannot reach ecflow_lab server {self._host}:{self._port}: no connection "
                                       f"for '{cmd}' (is the server running?)")
                continue
            sock.send_multipart(frames, copy=len(frames[-1]) < 65536)
            while True:
                if sock.poll(1000 if child else 500):
                    reply = sock.recv_multipart()
                    if reply and reply[0] == b"":
                        reply = reply[1:]
                    return protocol.decode_reply(reply)
                if time.monotonic() > deadline:
                    self._sock.close(linger=0)
                    self._sock = None
                    raise RuntimeError(f"no reply from {self._host}:{self._port} to '{cmd}' in time")
                if not self._reachable():   # server died: reconnect and resend (child) or fail (user)
                    self._sock.close(linger=0)
                    self._sock = None
                    if not child:
                        raise RuntimeError(f"connection to ecflow_lab server {self._host}:{self._port} "
                                           f"lost while waiting for the reply to '{cmd}'")
                    break

    def _user_cmd(self, cmd: str, **args: Any) -> Any:
        return self._call(cmd, args)[0]

    # ------------------------------------------------------------------ connection settings
    def get_host(self) -> str:
        return self._host

    def get_port(self) -> str:
        return self._port

    def set_host_port(self, host: str, port: str | int | None = None) -> None:
        """Point the client at another server (``host, port`` or ``"host:port"``)."""
        if port is None:
            host, _, port = host.replace("@", ":").rpartition(":")
        self.close()
        self._host, self._port = host, str(port)
        self._direct_port = None
        self._defs, self._defs_text, self._seq = None, None, -1

    def set_connection_attempts(self, n: int) -> None:
        self._connect_attempts = int(n)

    def set_retry_connection_period(self, seconds: int) -> None:
        self._retry_period = float(seconds)

    def set_user_name(self, name: str) -> None:
        """Act as ``name`` (ecFlow: a custom user, checked against the custom password file)."""
        self._user = name
        self._custom_user = True

    def debug(self, flag: bool) -> None:
        self._debug = bool(flag)

    def enable_ssl(self) -> None:
        """Encrypt with CurveZMQ from the next request on (as ``ECF_SSL=1``; keys from ``ecflow-lab keys``,
        in ``$ECFLOW_LAB_KEYS`` or ``~/.ecflow_lab/keys``). ``ECF_SSL=<host>.<port>`` picks per-server keys."""
        self.close()
        self._ssl = _ssl_setting() or "1"

    def disable_ssl(self) -> None:
        """Talk in clear from the next request on."""
        self.close()
        self._ssl = None

    def version(self) -> str:
        return CLIENT_VERSION

    def server_version(self) -> str:
        return self._user_cmd("server_version")

    # ------------------------------------------------------------------ server control
    def ping(self) -> int:
        self._call("ping", timeout=10)
        return 0

    def wait_for_server_reply(self, time_out: int = 60) -> bool:
        """True when the server answers a ping within ``time_out`` seconds."""
        end = time.monotonic() + time_out
        while time.monotonic() < end:
            try:
                self._call("ping", timeout=max(1.0, end - time.monotonic()))
                return True
            except RuntimeError:
                time.sleep(0.1)
        return False

    def restart_server(self) -> int:
        self._user_cmd("server_state", state="RUNNING")
        return 0

    def halt_server(self) -> int:
        self._user_cmd("server_state", state="HALTED")
        return 0

    def shutdown_server(self) -> int:
        self._user_cmd("server_state", state="SHUTDOWN")
        return 0

    def terminate_server(self) -> int:
        try:
            self._user_cmd("terminate")
        except RuntimeError as exc:
            if "lost while waiting" not in str(exc):    # it went away: that is what we asked for
                raise
        self.close()
        return 0

    def stats(self, to_stdout: bool = True) -> str:
        text = self._user_cmd("stats")
        if to_stdout:
            print(text)
        return text

    def stats_reset(self) -> None:
        self._user_cmd("stats_reset")

    def debug_server_on(self) -> int:
        self._user_cmd("debug_server", on=True)
        return 0

    def debug_server_off(self) -> int:
        self._user_cmd("debug_server", on=False)
        return 0

    def reload_wl_file(self) -> int:
        self._user_cmd("reload", what="white_list")
        return 0

    def reload_passwd_file(self) -> int:
        self._user_cmd("reload", what="passwd")
        return 0

    def reload_custom_passwd_file(self) -> int:
        self._user_cmd("reload", what="custom_passwd")
        return 0

    def checkpt(self, mode: Any = CheckPt.UNDEFINED, check_pt_interval: int = 0,
                check_pt_save_alarm_time: int = 0) -> int:
        """Save a checkpoint now, or (with a mode / interval) change the checkpoint policy."""
        self._user_cmd("checkpt", mode=_state_name(mode), interval=int(check_pt_interval),
                       alarm=int(check_pt_save_alarm_time))
        return 0

    def restore_from_checkpt(self) -> int:
        """Replace the (empty) server definition by its checkpoint file; server must be halted."""
        self._user_cmd("restore_from_checkpt")
        return 0

    # ------------------------------------------------------------------ logs
    def get_log(self, lines: int = 100) -> str:
        return self._user_cmd("log", action="get", lines=int(lines))

    def clear_log(self) -> int:
        self._user_cmd("log", action="clear")
        return 0

    def flush_log(self) -> int:
        self._user_cmd("log", action="flush")
        return 0

    def new_log(self, path: str = "") -> int:
        self._user_cmd("log", action="new", path=path)
        return 0

    def log_msg(self, msg: str) -> int:
        self._user_cmd("log", action="msg", msg=msg)
        return 0

    # ------------------------------------------------------------------ definitions
    def load(self, path_to_defs: Any, force: bool = False, check_only: bool = False, print: bool = False,
             stats: bool = False) -> int:
        """Load a definition (a file path or a Defs) into the server; ``force`` overwrites existing suites."""
        if isinstance(path_to_defs, (str, os.PathLike)):
            try:
                with open(path_to_defs, "rb") as fh:
                    text = fh.read()
            except OSError as exc:
                raise RuntimeError(f"load: cannot open definition file {path_to_defs}: {exc.strerror}") from None
            name = os.fspath(path_to_defs)
        else:
            text, name = str(path_to_defs).encode(), "<Defs>"
        if check_only or print or stats:
            import builtins

            from ecflow_lab import defs as _defs

            try:
                d = _defs.Defs.from_string(text.decode(), name)
            except Exception as exc:
                raise RuntimeError(str(exc)) from None
            if print:
                builtins.print(d)
            if stats:
                builtins.print(f"{name}: {sum(1 for _ in _walk(d))} nodes")
            if check_only:
                return 0
        self._call("load", {"force": bool(force), "name": name}, text)
        return 0

    def replace(self, path: str, defs: Any, parent: bool = True, force: bool = False) -> int:
        """Replace (or add, with ``parent``) the node ``path`` by the one in ``defs`` (a file or a Defs)."""
        if isinstance(defs, (str, os.PathLike)):
            try:
                text = open(defs, "rb").read()
            except OSError as exc:
                raise RuntimeError(f"replace: cannot open {defs}: {exc.strerror}") from None
        else:
            text = str(defs).encode()
        self._call("replace", {"path": path, "parent": bool(parent), "force": bool(force)}, text)
        return 0

    def get_server_defs(self) -> int:
        """Fetch the whole definition with its state; ``get_defs()`` then returns it."""
        self._fetch_full()
        return 0

    def get_defs(self) -> Any:
        """The definition held by this client (after get_server_defs / sync_local), or None.

        The server's text is parsed here, on first access, so a script that only needs to know the
        download happened (or a sync that finds nothing new) never pays for building the model."""
        if self._defs_text is not None:
            from ecflow_lab import defs as _defs
            from ecflow_lab.defs.parser import parse_text

            raw, encoding = self._defs_raw
            self._defs_text, self._defs_raw = None, (b"", "")
            name = f"<server {self._host}:{self._port}>"
            if encoding == "gzip" and len(raw) >= _STREAM_MIN:
                # a big one is read while a thread still decompresses the rest (zlib lets go of the GIL)
                with _Gunzip(raw) as pieces:
                    self._defs = parse_text(pieces, name)
            else:
                if encoding == "gzip":
                    import gzip

                    raw = gzip.decompress(raw)
                self._defs = _defs.Defs.from_string(raw.decode(), name)
        return self._defs

    def _fetch_full(self) -> None:
        result, payload = self._call("get_defs", {"handle": self._handle})
        self._defs_raw = (payload or b"", result.get("encoding", ""))
        self._defs_text = ""
        self._defs = None
        self._seq = result["seq"]
        self._server_id = result.get("server_id", "")
        self._in_sync = True
        self._changed = []

    def news_local(self) -> bool:
        """True when the server changed since this client's last sync (always True before the first)."""
        if self._defs is None and self._defs_text is None:
            return True
        result, _ = self._call("news", {"seq": self._seq, "server_id": self._server_id})
        return bool(result["news"])

    def sync_local(self, sync_suite_clock: bool = False) -> int:
        """Bring the local definition up to date: full the first time, then the server's deltas."""
        if self._defs is None and self._defs_text is None:
            self._fetch_full()
            self._changed = []
            return 0
        result, _ = self._call("sync", {"seq": self._seq, "server_id": self._server_id})
        if result.get("full"):
            self._fetch_full()
            return 0
        from ecflow_lab.client.deltas import apply_delta

        changed: list[str] = []
        self._in_sync = False
        for msg in result["deltas"]:
            if msg.get("added") or msg.get("removed"):
                self._fetch_full()      # structure changed: cheapest correct answer is a fresh copy
                return 0
            changed.extend(apply_delta(self.get_defs(), msg))
            self._seq = msg["seq"]
        self._seq = max(self._seq, result.get("seq", self._seq))
        self._changed = changed
        self._in_sync = True
        return 0

    def in_sync(self) -> bool:
        return self._in_sync

    def changed_node_paths(self) -> list[str]:
        """Paths changed by the last sync_local (ecflow's ``changed_node_paths``)."""
        return list(self._changed)

    def set_auto_sync(self, flag: bool) -> None:
        self._auto_sync = bool(flag)

    def is_auto_sync_enabled(self) -> bool:
        return self._auto_sync

    def _after(self) -> None:
        if self._auto_sync:
            self.sync_local()

    def suites(self) -> list[str]:
        return self._user_cmd("suites")

    def check(self, path: str = "") -> str:
        """Check trigger expressions and limits of the server definition; returns the problems found."""
        return self._user_cmd("check", paths=_paths(path) if path else [])

    # ------------------------------------------------------------------ client handles
    def ch_register(self, auto_add_new_suites: bool, suites: list[str]) -> None:
        self._handle = self._user_cmd("ch", action="register", auto_add=bool(auto_add_new_suites),
                                      suites=list(suites))
        self._defs, self._defs_text, self._seq = None, None, -1

    def ch_handle(self) -> int:
        return self._handle

    def ch_drop(self, handle: int | None = None) -> int:
        h = self._handle if handle is None else handle
        self._user_cmd("ch", action="drop", handle=h)
        if h == self._handle:
            self._handle = 0
        return 0

    def ch_drop_user(self, user: str = "") -> int:
        self._user_cmd("ch", action="drop_user", owner=user or self._user)
        self._handle = 0
        return 0

    def ch_add(self, handle: int | list[str], suites: list[str] | None = None) -> None:
        if suites is None:
            handle, suites = self._handle, handle  # type: ignore[assignment]
        self._user_cmd("ch", action="add", handle=handle, suites=list(suites))

    def ch_remove(self, handle: int | list[str], suites: list[str] | None = None) -> None:
        if suites is None:
            handle, suites = self._handle, handle  # type: ignore[assignment]
        self._user_cmd("ch", action="remove", handle=handle, suites=list(suites))

    def ch_auto_add(self, handle: int | bool, flag: bool | None = None) -> int:
        if flag is None:
            handle, flag = self._handle, bool(handle)
        self._user_cmd("ch", action="auto_add", handle=handle, auto_add=bool(flag))
        return 0

    def ch_suites(self) -> None:
        print(self._user_cmd("ch", action="suites"))

    # ------------------------------------------------------------------ node commands
    def begin_suite(self, suite_name: str, force: bool = False) -> int:
        self._user_cmd("begin", suites=[suite_name.lstrip("/")], force=bool(force))
        self._after()
        return 0

    def begin_all_suites(self, force: bool = False) -> int:
        self._user_cmd("begin", suites=[], force=bool(force))
        self._after()
        return 0

    def delete(self, abs_node_path: str | list[str], force: bool = False) -> int:
        self._user_cmd("delete", paths=_paths(abs_node_path), force=bool(force))
        return 0

    def delete_all(self, force: bool = False) -> int:
        self._user_cmd("delete", paths=[], all=True, force=bool(force))
        return 0

    def suspend(self, paths: str | list[str]) -> None:
        self._user_cmd("suspend", paths=_paths(paths))

    def resume(self, paths: str | list[str]) -> None:
        self._user_cmd("resume", paths=_paths(paths))

    def requeue(self, paths: str | list[str], option: str = "") -> None:
        if option not in ("", "abort", "force"):
            raise RuntimeError(f"requeue: option must be '', 'abort' or 'force', got {option!r}")
        self._user_cmd("requeue", paths=_paths(paths), option=option)

    def force_state(self, paths: str | list[str], state: Any) -> None:
        self._user_cmd("force_state", paths=_paths(paths), state=_state_name(state), recursive=False)

    def force_state_recursive(self, paths: str | list[str], state: Any) -> None:
        self._user_cmd("force_state", paths=_paths(paths), state=_state_name(state), recursive=True)

    def force_event(self, paths: str | list[str], value: str) -> None:
        """``paths`` are ``/path:event_name``; value ``set`` or ``clear``."""
        self._user_cmd("force_event", paths=_paths(paths), value=value)

    def run(self, paths: str | list[str], force: bool = False) -> None:
        self._user_cmd("run", paths=_paths(paths), force=bool(force))

    def kill(self, paths: str | list[str]) -> None:
        self._user_cmd("kill", paths=_paths(paths))

    def status(self, paths: str | list[str]) -> None:
        self._user_cmd("status_cmd", paths=_paths(paths))

    def job_generation(self, path: str = "") -> int:
        self._user_cmd("job_generation", path=path)
        return 0

    def free_trigger_dep(self, paths: str | list[str]) -> None:
        self._user_cmd("free_dep", paths=_paths(paths), kinds=["trigger"])

    def free_date_dep(self, paths: str | list[str]) -> None:
        self._user_cmd("free_dep", paths=_paths(paths), kinds=["date"])

    def free_time_dep(self, paths: str | list[str]) -> None:
        self._user_cmd("free_dep", paths=_paths(paths), kinds=["time"])

    def free_all_dep(self, paths: str | list[str]) -> None:
        self._user_cmd("free_dep", paths=_paths(paths), kinds=["trigger", "date", "time"])

    def alter(self, paths: str | list[str], alter_type: str, attribute_type: str, name: str = "",
              value: str = "") -> None:
        """ecflow's alter: add / change / delete an attribute, set_flag / clear_flag, sort."""
        self._user_cmd("alter", paths=_paths(paths), alter_type=alter_type, attr_type=attribute_type,
                       name=name, value=value)

    def sort_attributes(self, abs_node_path: str | list[str], attribute_name: str, recursive: bool = True) -> None:
        self._user_cmd("sort_attributes", paths=_paths(abs_node_path), attr=attribute_name,
                       recursive=bool(recursive))

    def order(self, path: str, order_type: str) -> None:
        self._user_cmd("order", path=path, how=order_type)

    def archive(self, paths: str | list[str]) -> None:
        self._user_cmd("archive", paths=_paths(paths))

    def restore(self, paths: str | list[str]) -> None:
        self._user_cmd("restore", paths=_paths(paths))

    def plug(self, source: str, dest: str) -> int:
        self._user_cmd("plug", source=source, dest=dest)
        return 0

    def query(self, query_type: str, path: str, attribute: str = "") -> str:
        return self._user_cmd("query", kind=query_type, path=path, attr=attribute)

    def why(self, path: str) -> str:
        """Why a node does not run, in words (the ecflow_ui 'Why?' panel)."""
        return self._user_cmd("why", path=path)

    def get_file(self, task: str, type: str = "script", max_lines: str = "10000", as_bytes: bool = False) -> Any:
        """A task's script, job, jobout, manual, kill or stat output."""
        _, payload = self._call("get_file", {"path": task, "type": type, "max_lines": int(max_lines)})
        data = payload or b""
        return data if as_bytes else data.decode(errors="replace")

    def file(self, task: str, type: str = "script", max_lines: str = "10000") -> str:
        return self.get_file(task, type, max_lines)

    def edit_script_edit(self, path: str) -> str:
        """The task's script with includes expanded but variables unsubstituted."""
        return self._user_cmd("edit_script", path=path, mode="edit")

    def edit_script_preprocess(self, path: str) -> str:
        """The task's script fully pre-processed, as the job would be."""
        return self._user_cmd("edit_script", path=path, mode="preprocess")

    def edit_script_submit(self, path: str, used_variables: list[str] | dict[str, str], file_contents: list[str],
                           alias: bool = False, run: bool = True) -> int:
        """Submit a user-edited script (lines) with the given ``NAME=value`` variables."""
        if isinstance(used_variables, dict):
            variables = dict(used_variables)
        else:
            variables = dict(v.split("=", 1) for v in used_variables if "=" in v)
        self._user_cmd("edit_script", path=path, mode="submit", variables=variables,
                       lines=list(file_contents), alias=bool(alias), run=bool(run))
        return 0

    def group(self, commands: str) -> int:
        """Run several ';'-separated commands in one request (subset: any ecflow_client user flag)."""
        from ecflow_lab.client.cli import run_group

        run_group(self, commands)
        return 0

    def reset(self) -> None:
        """Forget the local definition and handles (ecflow's Client.reset)."""
        self._defs, self._defs_text, self._seq, self._handle, self._changed = None, None, -1, 0, []

    # ------------------------------------------------------------------ zombies
    def zombie_get(self) -> list[dict[str, Any]]:
        return self._user_cmd("zombie", action="get")

    def _zombie(self, action: str, paths: str | list[str]) -> int:
        self._user_cmd("zombie", action=action, paths=_paths(paths))
        return 0

    def zombie_fob(self, paths: str | list[str]) -> int:
        return self._zombie("fob", paths)

    def zombie_fail(self, paths: str | list[str]) -> int:
        return self._zombie("fail", paths)

    def zombie_adopt(self, paths: str | list[str]) -> int:
        return self._zombie("adopt", paths)

    def zombie_block(self, paths: str | list[str]) -> int:
        return self._zombie("block", paths)

    def zombie_remove(self, paths: str | list[str]) -> int:
        return self._zombie("remove", paths)

    def zombie_kill(self, paths: str | list[str]) -> int:
        return self._zombie("kill", paths)

    # ------------------------------------------------------------------ child commands
    def set_child_path(self, path: str) -> None:
        self._child_path = path

    def set_child_password(self, password: str) -> None:
        self._child_pass = password

    def set_child_pid(self, pid: str | int) -> None:
        self._child_pid = str(pid)

    def set_child_try_no(self, try_no: int) -> None:
        self._child_tryno = int(try_no)

    def set_child_timeout(self, seconds: int) -> None:
        self._child_timeout = float(seconds)

    def set_zombie_child_timeout(self, seconds: int) -> None:
        self._zombie_timeout = float(seconds)

    def set_child_init_add_vars(self, variables: dict[str, str] | list[Any]) -> None:
        if isinstance(variables, dict):
            self._init_add_vars = {str(k): str(v) for k, v in variables.items()}
        else:
            self._init_add_vars = {str(getattr(v, "name", v[0] if isinstance(v, (tuple, list)) else v)):
                                   str(getattr(v, "value", v[1] if isinstance(v, (tuple, list)) else ""))
                                   for v in variables}

    def set_child_complete_del_vars(self, names: list[str]) -> None:
        self._complete_del_vars = [str(getattr(n, "name", n)) for n in names]

    def _child(self, cmd: str, **args: Any) -> Any:
        args.update(path=self._child_path, passwd=self._child_pass, tryno=self._child_tryno,
                    rid=self._child_pid)
        deadline = time.monotonic() + self._child_timeout
        while True:
            result, _ = self._call(cmd, args, child=True, timeout=max(1.0, deadline - time.monotonic()))
            if isinstance(result, dict) and result.get("block"):
                # refused for now (zombie 'block', wait expression false, server halted): retry later
                if self._denied_fails and result.get("denied"):
                    raise RuntimeError(result.get("reason", f"{cmd} denied by the server"))
                if time.monotonic() > deadline:
                    raise RuntimeError(f"child command '{cmd}' for {self._child_path} still blocked after "
                                       f"ECF_TIMEOUT: {result.get('reason', '')}")
                time.sleep(float(result.get("retry", 2.0)))
                continue
            if isinstance(result, dict) and result.get("fail"):
                raise RuntimeError(result.get("reason", f"{cmd} refused"))
            return result

    def child_init(self) -> None:
        self._child("init", vars=self._init_add_vars)

    def child_event(self, event_name: str, value: bool | str = True) -> None:
        if isinstance(value, str):
            value = value.lower() not in ("clear", "0", "false")
        self._child("event", name=event_name, value=bool(value))

    def child_meter(self, meter_name: str, value: int) -> None:
        self._child("meter", name=meter_name, value=int(value))

    def child_label(self, label_name: str, value: str) -> None:
        self._child("label", name=label_name, value=str(value))

    def child_complete(self) -> None:
        self._child("complete", remove=self._complete_del_vars)

    def child_abort(self, reason: str = "") -> None:
        self._child("abort", reason=reason)

    def child_wait(self, expression: str) -> None:
        self._child("wait", expr=expression)

    def child_queue(self, queue_name: str, action: str, step: str = "", path_to_node_with_queue: str = "") -> str:
        res = self._child("queue", name=queue_name, action=action, step=step, queue_path=path_to_node_with_queue)
        return "" if res is None else str(res)

    # ------------------------------------------------------------------ deltas
    def subscribe(self, callback: Callable[[dict[str, Any]], None]) -> Subscription:
        """Start a SUB thread (owned by the returned Subscription) that calls ``callback`` per delta."""
        return Subscription(self, callback)


_STREAM_MIN = 1 << 16  # compressed definitions at least this big are parsed while being decompressed


class _Gunzip:
    """Concatenated gzip members decompressed by a thread of its own, handed over as text pieces.

    Iterate it (inside ``with``) for the pieces; an error in the data is raised there. Leaving the ``with``
    stops the thread and waits for it."""

    PIECE = 1 << 21

    def __init__(self, raw: bytes) -> None:
        import queue

        self._raw = raw
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = False
        self._thread = threading.Thread(target=self._work, name="ecflow-lab-gunzip", daemon=True)

    def __enter__(self) -> _Gunzip:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        self._thread.join()

    def _work(self) -> None:
        import codecs
        import zlib

        try:
            dec = codecs.getincrementaldecoder("utf-8")()
            data = self._raw
            while data and not self._stop:
                z = zlib.decompressobj(wbits=31)
                buf = data
                while not z.eof and not self._stop:
                    out = z.decompress(buf, self.PIECE)
                    buf = z.unconsumed_tail
                    if out:
                        self._q.put(dec.decode(out))
                    elif not buf:
                        raise EOFError("the server's definition text is cut short (incomplete gzip data)")
                data = z.unused_data
            self._q.put(dec.decode(b"", final=True))
            self._q.put(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the reader
            self._q.put(exc)

    def __iter__(self) -> Any:
        while True:
            item = self._q.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item


def _recv_exact(s: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise ConnectionResetError("server closed the connection")
        buf += chunk
    return bytes(buf)


def _walk(d: Any) -> Iterable[Any]:
    stack = list(getattr(d, "suites", []))
    while stack:
        n = stack.pop()
        yield n
        stack.extend(getattr(n, "nodes", getattr(n, "children", [])))


def _login() -> str:
    try:
        import getpass

        return getpass.getuser()
    except Exception:
        return "unknown"


def _ssl_setting() -> str | None:
    """``ECF_SSL`` as the security layer reads it (None: off), without importing it when unset."""
    if not os.environ.get("ECF_SSL"):
        return None
    from ecflow_lab.security import ssl_setting

    return ssl_setting()


class Subscription:
    """A background SUB thread delivering the server's change deltas; stop it with ``close()``.

    On start, and whenever it sees a gap in ``seq``, it fetches a full snapshot and delivers
    ``{"v": 1, "seq": n, "full": True, "defs": Defs}`` before resuming deltas.
    """

    def __init__(self, client: Client, callback: Callable[[dict[str, Any]], None]) -> None:
        self._callback = callback
        self._host, self._port = client.get_host(), client.get_port()
        self._ssl = client._ssl
        self._user = (client._user, client._custom_user)
        info = client._user_cmd("info")
        self._pub = f"tcp://{self._host}:{info['pub_port']}"
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ecflow-lab-subscription", daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _snapshot(self, client: Client) -> int:
        client._fetch_full()
        self._callback({"v": protocol.VERSION, "seq": client._seq, "full": True, "defs": client.get_defs()})
        return client._seq

    def _run(self) -> None:
        import zmq

        ctx = zmq.Context.instance()
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SUBSCRIBE, protocol.DELTA_TOPIC)
        client = Client(self._host, self._port)
        client._ssl = self._ssl
        client._user, client._custom_user = self._user
        if self._ssl:
            client._connect_checked(sub, self._pub.rpartition(":")[2])
        else:
            sub.connect(self._pub)
        try:
            time.sleep(0.05)   # let the subscription reach the publisher before the snapshot
            seq = self._snapshot(client)
            self._ready.set()
            while not self._stop.is_set():
                if not sub.poll(200):
                    continue
                msg = protocol.decode_delta(sub.recv())
                if msg["seq"] <= seq:
                    continue
                if msg["seq"] != seq + 1:
                    seq = self._snapshot(client)
                    if msg["seq"] <= seq:
                        continue
                self._callback(msg)
                seq = msg["seq"]
        except Exception:
            if not self._stop.is_set():
                raise
        finally:
            self._ready.set()
            client.close()
            sub.close(linger=0)

    def close(self) -> None:
        """Stop the thread and close its sockets."""
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(5)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
