"""Cluster-secret authentication over ZeroMQ: no frame of a peer is unpickled before it proved the secret.

The DAG executor moves functions and results with cloudpickle, and unpickling runs code. So a controller
must know that a worker or host agent belongs to the cluster *before* it looks inside any of its frames,
and must keep checking every later frame. This module gives both, over any zmq socket:

1. A mutual HMAC-SHA256 challenge/response (both sides prove the secret, neither sends it)::

       peer  -> [b"ELS1-HELLO", client_nonce]
       gate  -> [b"ELS1-CHALLENGE", server_nonce, HMAC(secret, "server" | cn | sn)]
       peer  -> [b"ELS1-AUTH", HMAC(secret, "client" | sn | cn)]        (only if the server's proof holds)
       gate  -> [b"ELS1-WELCOME"]  or  [b"ELS1-DENIED", reason]

2. A :class:`Session` with one key per direction (derived from both nonces) that signs each later message
   with a sequence number: ``[b"ELS1-MSG", seq, HMAC(key, seq | frames), *frames]``. A frame that fails
   the check, is replayed, or comes from a peer that never authenticated is dropped *unread*.

Server side with a ROUTER socket: :class:`SecretGate` (``gate.handle(router, identity, frames)`` returns
the verified payload frames or None). Client side (DEALER, or either end of a PAIR): :func:`client_handshake`;
the other end of a PAIR/DEALER pair uses :func:`server_handshake`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import struct
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from .errors import AuthenticationError
from .files import ensure_private_dir, is_private, write_private

__all__ = [
    "Session",
    "SecretGate",
    "client_handshake",
    "server_handshake",
    "cluster_secret",
    "new_secret",
]

log = logging.getLogger(__name__)

HELLO = b"ELS1-HELLO"
CHALLENGE = b"ELS1-CHALLENGE"
AUTH = b"ELS1-AUTH"
WELCOME = b"ELS1-WELCOME"
DENIED = b"ELS1-DENIED"
MSG = b"ELS1-MSG"
_NONCE = 32
_DOMAIN = b"ecflow_lab/cluster-secret/v1|"
MIN_SECRET = 16

Frames = Sequence[bytes | zmq.Frame | memoryview]


def _b(frame: bytes | zmq.Frame | memoryview) -> bytes:
    if isinstance(frame, zmq.Frame):
        return frame.bytes
    return bytes(frame)


def _secret_bytes(secret: bytes | str) -> bytes:
    raw = secret.encode() if isinstance(secret, str) else bytes(secret)
    if len(raw) < MIN_SECRET:
        raise ValueError(f"a cluster secret must be at least {MIN_SECRET} bytes (use new_secret())")
    return raw


def _mac(key: bytes, label: bytes, *parts: bytes) -> bytes:
    return hmac.new(key, _DOMAIN + label + b"|" + b"".join(parts), hashlib.sha256).digest()


def new_secret() -> str:
    """A fresh random cluster secret (64 hex characters)."""
    return secrets.token_hex(32)


def cluster_secret(path: str | os.PathLike[str], *, create: bool = True) -> str:
    """Read the cluster secret from ``path`` (0600), creating it with a random value if missing.

    A file that others can read is refused: anyone who reads the secret can run code on the cluster.
    """
    p = Path(path).expanduser()
    if not p.exists():
        if not create:
            raise FileNotFoundError(f"no cluster secret at {p}")
        ensure_private_dir(p.parent)
        try:
            write_private(p, new_secret() + "\n", overwrite=False)
        except FileExistsError:
            pass  # another process created it first: use theirs
    if not is_private(p):
        raise PermissionError(f"cluster secret {p} is readable by other users; run chmod 600 {p}")
    value = p.read_text().strip()
    _secret_bytes(value)
    return value


# ---------------------------------------------------------------------- signed messages
class Session:
    """An authenticated channel: :meth:`seal` signs outgoing frames, :meth:`open` checks incoming ones."""

    def __init__(self, send_key: bytes, recv_key: bytes, peer: str = "") -> None:
        self._send_key = send_key
        self._recv_key = recv_key
        self._send_seq = 0
        self._recv_seq = -1
        self.peer = peer

    @staticmethod
    def _digest(key: bytes, seq: bytes, frames: Sequence[bytes]) -> bytes:
        h = hmac.new(key, _DOMAIN + b"msg|" + seq, hashlib.sha256)
        for f in frames:
            h.update(struct.pack("!Q", len(f)))
            h.update(f)
        return h.digest()

    def seal(self, frames: Frames) -> list[bytes]:
        """``[MSG, seq, mac, *frames]``: ``frames`` signed for the peer (who calls :meth:`open`)."""
        body = [_b(f) for f in frames]
        seq = struct.pack("!Q", self._send_seq)
        self._send_seq += 1
        return [MSG, seq, self._digest(self._send_key, seq, body), *body]

    def open(self, frames: Frames) -> list[bytes]:
        """The payload of a sealed message; raises :class:`AuthenticationError` without reading it if
        the signature is wrong, the message is replayed or out of order, or it is not a sealed message."""
        if len(frames) < 3 or _b(frames[0]) != MSG:
            raise AuthenticationError(f"unsigned message from {self.peer or 'peer'} dropped")
        seq, mac = _b(frames[1]), _b(frames[2])
        body = [_b(f) for f in frames[3:]]
        if len(seq) != 8 or not hmac.compare_digest(mac, self._digest(self._recv_key, seq, body)):
            raise AuthenticationError(f"message with a bad signature from {self.peer or 'peer'} dropped")
        n = struct.unpack("!Q", seq)[0]
        if n <= self._recv_seq:
            raise AuthenticationError(f"replayed message #{n} from {self.peer or 'peer'} dropped")
        self._recv_seq = n
        return body

    def dumps(self, obj: Any) -> list[bytes]:
        """cloudpickle ``obj`` and seal it (for executor traffic inside one cluster)."""
        import cloudpickle

        return self.seal([cloudpickle.dumps(obj)])

    def loads(self, frames: Frames) -> Any:
        """Check the signature, *then* unpickle the single payload frame."""
        import pickle

        body = self.open(frames)
        if len(body) != 1:
            raise AuthenticationError(f"expected one pickled frame, got {len(body)}")
        return pickle.loads(body[0])


def _session_keys(secret: bytes, cn: bytes, sn: bytes) -> tuple[bytes, bytes]:
    return _mac(secret, b"c2s", cn, sn), _mac(secret, b"s2c", cn, sn)


# ---------------------------------------------------------------------- server side (ROUTER)
@dataclass
class _Pending:
    client_nonce: bytes
    server_nonce: bytes
    started: float = field(default_factory=time.monotonic)


class SecretGate:
    """Admits peers of a ROUTER socket that prove the cluster secret; drops everything else unread.

    In the ROUTER loop::

        identity, *frames = router.recv_multipart()
        payload = gate.handle(router, identity, frames)   # replies to handshakes itself
        if payload is not None:
            obj = pickle.loads(payload[0])                 # safe: the peer proved the secret, MAC checked
        ...
        router.send_multipart([identity, *gate.seal(identity, [reply_bytes])])
    """

    def __init__(self, secret: bytes | str, *, logger: logging.Logger | None = None,
                 max_pending: int = 1024, handshake_timeout: float = 30.0,
                 on_refuse: Callable[[bytes, str], None] | None = None) -> None:
        self._secret = _secret_bytes(secret)
        self.log = logger or log
        self.max_pending = max_pending
        self.handshake_timeout = handshake_timeout
        self.on_refuse = on_refuse
        self._pending: OrderedDict[bytes, _Pending] = OrderedDict()
        self.sessions: dict[bytes, Session] = {}
        self.refused: list[tuple[bytes, str]] = []
        self.dropped = 0

    def is_authenticated(self, identity: bytes) -> bool:
        return identity in self.sessions

    def forget(self, identity: bytes) -> None:
        """Drop a peer's session (it left, or must authenticate again)."""
        self.sessions.pop(identity, None)
        self._pending.pop(identity, None)

    def seal(self, identity: bytes, frames: Frames) -> list[bytes]:
        """Sign ``frames`` for an authenticated peer (send them after its identity frame)."""
        try:
            return self.sessions[identity].seal(frames)
        except KeyError:
            raise AuthenticationError(f"peer {identity!r} is not authenticated") from None

    def send(self, router: zmq.Socket, identity: bytes, frames: Frames) -> None:
        """Sign and send ``frames`` to an authenticated peer through ``router``."""
        router.send_multipart([identity, *self.seal(identity, frames)])

    def _refuse(self, router: zmq.Socket, identity: bytes, reason: str) -> None:
        self._pending.pop(identity, None)
        self.refused.append((identity, reason))
        del self.refused[:-100]
        self.log.warning("cluster: refused peer %r: %s", identity, reason)
        if self.on_refuse is not None:
            self.on_refuse(identity, reason)
        router.send_multipart([identity, DENIED, reason.encode()])

    def handle(self, router: zmq.Socket, identity: bytes, frames: Frames) -> list[bytes] | None:
        """Process one message from ``identity``: handshake steps are answered here and return None;
        a correctly signed message from an authenticated peer returns its payload frames; anything
        else is dropped (None) without being read."""
        identity = _b(identity)
        kind = _b(frames[0]) if frames else b""
        if kind == HELLO:
            cn = _b(frames[1]) if len(frames) == 2 else b""
            if len(cn) != _NONCE:
                self._refuse(router, identity, "malformed HELLO")
                return None
            self.sessions.pop(identity, None)  # a new handshake replaces an old session
            sn = secrets.token_bytes(_NONCE)
            self._pending[identity] = _Pending(cn, sn)
            self._pending.move_to_end(identity)
            while len(self._pending) > self.max_pending:
                self._pending.popitem(last=False)
            router.send_multipart([identity, CHALLENGE, sn, _mac(self._secret, b"server", cn, sn)])
            return None
        if kind == AUTH:
            pending = self._pending.pop(identity, None)
            if pending is None or time.monotonic() - pending.started > self.handshake_timeout:
                self._refuse(router, identity, "AUTH without a recent HELLO")
                return None
            proof = _b(frames[1]) if len(frames) == 2 else b""
            expected = _mac(self._secret, b"client", pending.server_nonce, pending.client_nonce)
            if not hmac.compare_digest(proof, expected):
                self._refuse(router, identity, "wrong cluster secret")
                return None
            c2s, s2c = _session_keys(self._secret, pending.client_nonce, pending.server_nonce)
            self.sessions[identity] = Session(send_key=s2c, recv_key=c2s, peer=repr(identity))
            router.send_multipart([identity, WELCOME])
            self.log.info("cluster: peer %r authenticated", identity)
            return None
        session = self.sessions.get(identity)
        if session is None:
            self.dropped += 1
            self.log.warning("cluster: dropped a message from unauthenticated peer %r", identity)
            return None
        try:
            return session.open(frames)
        except AuthenticationError as exc:
            self.dropped += 1
            self.log.warning("cluster: %s", exc)
            return None


# ---------------------------------------------------------------------- handshakes on one socket
def _recv(sock: zmq.Socket, deadline: float, what: str, endpoint: str) -> list[bytes]:
    left = deadline - time.monotonic()
    if left <= 0 or not sock.poll(int(left * 1000) + 1):
        raise AuthenticationError(f"no {what} from {endpoint} in time: is it an ecflow_lab cluster peer?")
    return sock.recv_multipart()


def client_handshake(sock: zmq.Socket, secret: bytes | str, *, timeout: float = 5.0,
                     endpoint: str = "the server") -> Session:
    """Prove the secret to the peer at the other end of ``sock`` (a connected DEALER or PAIR).

    Checks the server's proof first, so nothing is sent to a server that does not know the secret.
    Raises :class:`AuthenticationError` when either side's proof fails or nobody answers in time.
    """
    key = _secret_bytes(secret)
    deadline = time.monotonic() + timeout
    cn = secrets.token_bytes(_NONCE)
    sock.send_multipart([HELLO, cn])
    reply = _recv(sock, deadline, "challenge", endpoint)
    if reply[0] == DENIED:
        reason = reply[1].decode(errors="replace") if len(reply) > 1 else "refused"
        raise AuthenticationError(f"{endpoint} refused the handshake: {reason}")
    if reply[0] != CHALLENGE or len(reply) != 3 or len(reply[1]) != _NONCE:
        raise AuthenticationError(f"{endpoint} answered with something that is not a cluster challenge")
    sn, server_proof = reply[1], reply[2]
    if not hmac.compare_digest(server_proof, _mac(key, b"server", cn, sn)):
        raise AuthenticationError(f"{endpoint} could not prove it knows the cluster secret; not joining it")
    sock.send_multipart([AUTH, _mac(key, b"client", sn, cn)])
    reply = _recv(sock, deadline, "welcome", endpoint)
    if reply[0] == DENIED:
        reason = reply[1].decode(errors="replace") if len(reply) > 1 else "refused"
        raise AuthenticationError(f"{endpoint} refused this peer: {reason}")
    if reply[0] != WELCOME:
        raise AuthenticationError(f"{endpoint} answered with something that is not a cluster welcome")
    c2s, s2c = _session_keys(key, cn, sn)
    return Session(send_key=c2s, recv_key=s2c, peer=endpoint)


def server_handshake(sock: zmq.Socket, secret: bytes | str, *, timeout: float = 5.0,
                     endpoint: str = "the peer") -> Session:
    """The accepting side of :func:`client_handshake` on a one-peer socket (PAIR, DEALER-DEALER)."""
    key = _secret_bytes(secret)
    deadline = time.monotonic() + timeout
    hello = _recv(sock, deadline, "HELLO", endpoint)
    if hello[0] != HELLO or len(hello) != 2 or len(hello[1]) != _NONCE:
        sock.send_multipart([DENIED, b"expected HELLO"])
        raise AuthenticationError(f"{endpoint} did not start a cluster handshake; dropped its message unread")
    cn, sn = hello[1], secrets.token_bytes(_NONCE)
    sock.send_multipart([CHALLENGE, sn, _mac(key, b"server", cn, sn)])
    auth = _recv(sock, deadline, "AUTH", endpoint)
    if auth[0] != AUTH or len(auth) != 2 or not hmac.compare_digest(auth[1], _mac(key, b"client", sn, cn)):
        sock.send_multipart([DENIED, b"wrong cluster secret"])
        raise AuthenticationError(f"{endpoint} does not know the cluster secret: refused")
    sock.send_multipart([WELCOME])
    c2s, s2c = _session_keys(key, cn, sn)
    return Session(send_key=s2c, recv_key=c2s, peer=endpoint)
