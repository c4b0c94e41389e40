"""CurveZMQ encryption for our servers and clients, switched on with ecFlow's switches.

ecFlow turns SSL on with ``ECF_SSL`` (``1``: shared ``server.*`` files; ``<host>.<port>``: files of one
server), ``--ssl`` on the command line, or ``Client.enable_ssl()``. We keep those switches and use
CurveZMQ (Curve25519 + authenticated encryption) instead of TLS, with keys from
``ecflow-lab keys generate`` (see :mod:`ecflow_lab.security.keys`).

Server side: :class:`CurveServer` owns a ZAP authenticator thread (a ``zmq.auth.ThreadAuthenticator``)
and the zmq context it serves; every socket made with :meth:`CurveServer.socket` is Curve-secured and
only admits the allowed client keys. The user name bound to a key reaches the server as the
``User-Id`` property of each received frame (:func:`peer_user`).

Client side: :class:`ClientCurve` holds the on/off switch (``enable_ssl`` / ``disable_ssl``) and
:func:`connect_checked` connects while watching the handshake on a socket monitor, so a wrong key gives a
clear :class:`CurveHandshakeError` within seconds instead of a request that hangs.
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import zmq
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils.monitor import parse_monitor_message

from .errors import CurveHandshakeError, KeyFileError
from .keys import KeyPair, authorized_client_keys, keys_dir, load_keypair, load_public

__all__ = [
    "ssl_setting",
    "add_ssl_argument",
    "ssl_from_args",
    "CurveServer",
    "ClientCurve",
    "secure_server_socket",
    "secure_client_socket",
    "connect_checked",
    "peer_user",
]

log = logging.getLogger(__name__)

_OFF = {"", "0", "no", "off", "false"}
_SHARED = {"1", "yes", "on", "true"}


# ---------------------------------------------------------------------- switches
def ssl_setting(env: Mapping[str, str] | None = None) -> str | None:
    """The ``ECF_SSL`` setting: None when off, ``"1"`` for shared keys, or a ``<host>.<port>`` name.

    As in ecFlow any non-empty value switches encryption on; ``0``/``off``/``false``/``no`` also mean
    off, which is what people who write ``ECF_SSL=0`` expect.
    """
    env = os.environ if env is None else env
    value = (env.get("ECF_SSL") or "").strip()
    if value.lower() in _OFF:
        return None
    return "1" if value.lower() in _SHARED else value


def add_ssl_argument(parser: argparse.ArgumentParser) -> None:
    """Add ecFlow's ``--ssl`` flag (same as ``ECF_SSL=1``) to a command's parser."""
    parser.add_argument("--ssl", action="store_true",
                        help="encrypt traffic with CurveZMQ (same as ECF_SSL=1); keys from `ecflow-lab keys`")


def ssl_from_args(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> str | None:
    """``"1"`` when ``--ssl`` was given, else the ``ECF_SSL`` setting (None when off)."""
    return ssl_setting(env) or ("1" if getattr(args, "ssl", False) else None)


def _key_names(setting: str, host: str | None, port: int | str | None, role: str) -> list[str]:
    """Key names to try, ecFlow's order: ``ECF_SSL=1`` prefers the shared name, else the per-server one."""
    specific = f"{host}.{port}" if host and port else None
    names: list[str] = []
    if setting in _SHARED:
        names = [role] + ([specific] if specific else [])
    else:
        names = [setting, role]
    return list(dict.fromkeys(n for n in names if n))


def _find_keypair(names: list[str], directory: Path) -> KeyPair:
    for n in names:
        if (directory / f"{n}.key_secret").exists():
            return load_keypair(n, directory)
    looked = ", ".join(f"{n}.key_secret" for n in names)
    raise KeyFileError(directory, None,
                       f"one of {looked} (encryption is on: ECF_SSL / --ssl); "
                       f"create keys with `ecflow-lab keys generate --dir {directory}`", "none found")


# ---------------------------------------------------------------------- server side
class _KeyPolicy:
    """The ZAP credentials provider: the set of accepted client keys, replaceable at any time."""

    def __init__(self, allowed: Mapping[bytes, str], on_refuse: Any) -> None:
        self.allowed = dict(allowed)
        self.on_refuse = on_refuse

    def callback(self, domain: str, key: bytes) -> bool:
        ok = key in self.allowed
        if not ok:
            self.on_refuse(key)
        return ok


class _NamedAuthenticator(ThreadAuthenticator):
    """A ThreadAuthenticator whose User-Id for a Curve client is the name its key was registered under."""

    policy: _KeyPolicy

    def curve_user_id(self, client_public_key: bytes) -> str:
        z = zmq.utils.z85.encode(client_public_key)
        return self.policy.allowed.get(z, z.decode())


def secure_server_socket(sock: zmq.Socket, keypair: KeyPair, zap_domain: str = "ecflow_lab") -> zmq.Socket:
    """Make ``sock`` a Curve server with ``keypair`` (call before bind). Clients are checked by ZAP."""
    sock.curve_secretkey = keypair.secret
    sock.curve_publickey = keypair.public
    sock.curve_server = True
    sock.zap_domain = zap_domain.encode()
    return sock


class CurveServer:
    """Owns what a Curve-secured server needs: its keypair, a zmq context and the ZAP thread.

    ``allowed_clients`` maps client public keys (z85 bytes) to user names, or is an iterable of keys;
    None reads them from the key directory (own ``client.key`` + ``authorized_clients/``). Use
    :meth:`socket` for every socket of the service (they share the context, whose single ZAP handler
    this object runs), and :meth:`close` (or ``with``) to stop it. One CurveServer per service.
    """

    def __init__(self, keypair: KeyPair, allowed_clients: Mapping[bytes, str] | Iterable[bytes] | None = None,
                 *, context: zmq.Context | None = None, directory: str | os.PathLike[str] | None = None,
                 logger: logging.Logger | None = None, zap_domain: str = "ecflow_lab") -> None:
        self.keypair = keypair
        self.directory = keys_dir(directory)
        self.zap_domain = zap_domain
        self.log = logger or log
        self._own_context = context is None
        self.context: zmq.Context = context if context is not None else zmq.Context()
        self.refused: list[bytes] = []  # keys refused so far (most recent last), for status and tests
        self._lock = threading.Lock()
        self._policy = _KeyPolicy(self._normalise(allowed_clients), self._on_refuse)
        self._auth = _NamedAuthenticator(self.context, log=logging.getLogger(f"{__name__}.zap"))
        self._auth.policy = self._policy
        try:
            self._auth.start()
        except zmq.ZMQError as exc:
            if self._own_context:
                self.context.destroy(linger=0)
            raise RuntimeError("a ZAP authenticator already runs in this zmq context; use one CurveServer per "
                               "context (leave context=None and make sockets with CurveServer.socket)") from exc
        for domain in ("*", zap_domain):
            self._auth.configure_curve_callback(domain=domain, credentials_provider=self._policy)
        self._closed = False

    @classmethod
    def from_setting(cls, setting: str | None, host: str | None = None, port: int | str | None = None, *,
                     directory: str | os.PathLike[str] | None = None, **kwargs: Any) -> CurveServer | None:
        """The CurveServer for an ``ECF_SSL``/``--ssl`` setting, or None when encryption is off.

        Looks for ``server.key_secret`` (``ECF_SSL=1``) or ``<host>.<port>.key_secret`` and admits the
        keys of :func:`~ecflow_lab.security.keys.authorized_client_keys`.
        """
        if not setting:
            return None
        d = keys_dir(directory)
        keypair = _find_keypair(_key_names(setting, host, port, "server"), d)
        return cls(keypair, None, directory=d, **kwargs)

    def _normalise(self, allowed: Mapping[bytes, str] | Iterable[bytes] | None) -> dict[bytes, str]:
        if allowed is None:
            return authorized_client_keys(self.directory)
        if isinstance(allowed, Mapping):
            return {bytes(k): str(v) for k, v in allowed.items()}
        return {bytes(k): bytes(k).decode()[:8] for k in allowed}

    def _on_refuse(self, key: bytes) -> None:
        with self._lock:
            self.refused.append(key)
            del self.refused[:-100]
        self.log.warning("Curve: refused a client whose public key %s is not authorized "
                         "(add it with `ecflow-lab keys authorize`)", key.decode(errors="replace"))

    def set_allowed(self, allowed: Mapping[bytes, str] | Iterable[bytes] | None = None) -> None:
        """Replace the accepted client keys (None: re-read the key directory); takes effect at once."""
        self._policy.allowed = self._normalise(allowed)

    @property
    def allowed(self) -> dict[bytes, str]:
        return dict(self._policy.allowed)

    @property
    def public_key(self) -> bytes:
        return self.keypair.public

    def secure(self, sock: zmq.Socket) -> zmq.Socket:
        """Make an existing socket of :attr:`context` a Curve server (before bind)."""
        if sock.context is not self.context:
            raise ValueError("secure a socket made from CurveServer.context: ZAP runs per context")
        return secure_server_socket(sock, self.keypair, self.zap_domain)

    def socket(self, socket_type: int) -> zmq.Socket:
        """A new Curve-secured server socket of ``socket_type`` in this server's context."""
        return self.secure(self.context.socket(socket_type))

    def close(self) -> None:
        """Stop the ZAP thread; terminate the context if this object created it (closing its sockets)."""
        if self._closed:
            return
        self._closed = True
        self._auth.stop()
        if self._own_context:
            self.context.destroy(linger=0)

    def __enter__(self) -> CurveServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def peer_user(frame: zmq.Frame) -> str | None:
    """The user name ZAP bound to the sender of ``frame`` (received with ``copy=False``), or None."""
    try:
        value = frame.get("User-Id")
    except (zmq.ZMQError, AttributeError):
        return None
    return value or None


# ---------------------------------------------------------------------- client side
def secure_client_socket(sock: zmq.Socket, server_public: bytes, client_keypair: KeyPair) -> zmq.Socket:
    """Make ``sock`` a Curve client of the server with public key ``server_public`` (before connect)."""
    sock.curve_serverkey = server_public
    sock.curve_publickey = client_keypair.public
    sock.curve_secretkey = client_keypair.secret
    return sock


_FAIL_EVENTS = (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                | zmq.EVENT_HANDSHAKE_FAILED_AUTH)
_WATCH = (zmq.EVENT_CONNECTED | zmq.EVENT_CONNECT_RETRIED | zmq.EVENT_DISCONNECTED | zmq.EVENT_CLOSED
          | zmq.EVENT_HANDSHAKE_SUCCEEDED | _FAIL_EVENTS)


def _is_curve(sock: zmq.Socket) -> bool:
    try:
        return sock.getsockopt(zmq.MECHANISM) == zmq.CURVE
    except zmq.ZMQError:
        return False


def connect_checked(sock: zmq.Socket, endpoint: str, *, timeout: float = 5.0, hint: str = "") -> None:
    """Connect ``sock`` to ``endpoint`` and wait for the security handshake to succeed.

    Raises :class:`CurveHandshakeError` naming the endpoint and the likely cause when the server refuses
    this client's key, the server key is wrong, only one side encrypts, or nobody answers within
    ``timeout`` seconds; the socket is then disconnected so it stops retrying. Works for plain
    (unencrypted) sockets too. ``hint`` (e.g. the key directory) is appended to the messages.
    """
    curve = _is_curve(sock)
    suffix = f" ({hint})" if hint else ""
    mon = sock.get_monitor_socket(_WATCH)
    connected = False
    reason: str | None = None
    try:
        sock.connect(endpoint)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                if connected:
                    reason = f"the handshake did not complete within {timeout:g}s"
                else:
                    reason = f"no server answered within {timeout:g}s (is it running on that port?)"
                break
            if not mon.poll(int(left * 1000) + 1):
                continue
            evt = parse_monitor_message(mon.recv_multipart())
            event, value = evt["event"], evt["value"]
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                return
            if event == zmq.EVENT_CONNECTED:
                connected = True
            elif event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                reason = ("the server does not accept this client's key (status "
                          f"{value}); ask the server's owner to run `ecflow-lab keys authorize` "
                          f"with your client.key, or check ECF_SSL keys{suffix}")
                break
            elif event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
                if value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
                    reason = ("the server does not use Curve encryption but this client does "
                              "(unset ECF_SSL / --ssl, or start the server with --ssl)" if curve else
                              "the server requires Curve encryption: set ECF_SSL=1, pass --ssl or call "
                              f"enable_ssl(){suffix}")
                else:
                    reason = (f"protocol error {value:#x} during the handshake: the server public key "
                              f"used by this client is probably wrong{suffix}")
                break
            elif event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
                # libzmq reports a Curve HELLO the server cannot open, and a plain client meeting a Curve
                # server, without detail: name the likely cause for each side
                reason = ("the server could not decrypt this client's greeting: the server public key "
                          f"this client used does not match the server's key{suffix}" if curve else
                          "the server requires Curve encryption: set ECF_SSL=1, pass --ssl or call "
                          f"enable_ssl(){suffix}")
                break
            elif event == zmq.EVENT_DISCONNECTED and connected:
                reason = ("the server closed the connection during the handshake: the server public key "
                          f"this client used does not match the server's key{suffix}" if curve else
                          f"the server closed the connection during the handshake{suffix}")
                break
        try:
            sock.disconnect(endpoint)
        except zmq.ZMQError:
            pass
        raise CurveHandshakeError(endpoint, reason or "unknown failure")
    finally:
        sock.disable_monitor()
        mon.close(linger=0)


class ClientCurve:
    """A client's encryption switch and keys: what ``Client.enable_ssl()`` / ``disable_ssl()`` drive.

    Starts from ``ECF_SSL``. :meth:`connect` secures a socket when encryption is on (server public key
    ``server.key`` or ``<host>.<port>.key``, own keypair ``client``) and connects with
    :func:`connect_checked`.
    """

    def __init__(self, setting: str | None = None, *, directory: str | os.PathLike[str] | None = None,
                 client_name: str = "client", env: Mapping[str, str] | None = None) -> None:
        self.setting = setting if setting is not None else ssl_setting(env)
        self.directory = keys_dir(directory, env)
        self.client_name = client_name

    @property
    def enabled(self) -> bool:
        return bool(self.setting)

    def enable_ssl(self, setting: str = "1") -> None:
        """Switch encryption on (``"1"``: shared keys; ``"<host>.<port>"``: that server's keys)."""
        self.setting = setting or "1"

    def disable_ssl(self) -> None:
        """Switch encryption off for the following connections."""
        self.setting = None

    def keys(self, host: str | None = None, port: int | str | None = None) -> tuple[bytes, KeyPair]:
        """``(server public key, client keypair)`` for ``host:port``; clear error when a file is missing."""
        if not self.setting:
            raise RuntimeError("encryption is off; call enable_ssl() or set ECF_SSL first")
        names = _key_names(self.setting, host, port, "server")
        server_public: bytes | None = None
        for n in names:
            if (self.directory / f"{n}.key").exists() or (self.directory / f"{n}.key_secret").exists():
                f = self.directory / f"{n}.key"
                server_public = load_public(f if f.exists() else self.directory / f"{n}.key_secret")
                break
        if server_public is None:
            looked = ", ".join(f"{n}.key" for n in names)
            raise KeyFileError(self.directory, None,
                               f"the server's public key as one of {looked} (copy it from the server's "
                               f"key directory, or run `ecflow-lab keys generate`)", "none found")
        return server_public, load_keypair(self.client_name, self.directory)

    def secure(self, sock: zmq.Socket, host: str | None = None, port: int | str | None = None) -> zmq.Socket:
        """Curve-secure ``sock`` when encryption is on; leave it plain when off."""
        if self.enabled:
            server_public, mine = self.keys(host, port)
            secure_client_socket(sock, server_public, mine)
        return sock

    def connect(self, sock: zmq.Socket, host: str, port: int | str, *, timeout: float = 5.0,
                endpoint: str | None = None) -> None:
        """Secure (if on) and connect ``sock`` to ``tcp://host:port``, raising a clear error on failure."""
        self.secure(sock, host, port)
        connect_checked(sock, endpoint or f"tcp://{host}:{port}", timeout=timeout,
                        hint=f"keys in {self.directory}" if self.enabled else "")
