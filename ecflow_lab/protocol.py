"""The versioned wire protocol between the suite server and its clients.

One request is a ZeroMQ multipart message ``[header, payload?]``: ``header`` is a JSON object
``{"v": 1, "cmd": NAME, "args": {...}, "user": NAME}`` and the optional ``payload`` frame carries bulk text
(a ``.def`` file, a checkpoint, a script) as raw UTF-8 so that 60 MB of definition never goes through a JSON
encoder. A reply is ``[header, payload?]`` with ``{"v": 1, "ok": true, "result": ...}`` or
``{"v": 1, "ok": false, "error": "message"}``.

Change deltas travel on the PUB socket as one frame ``b"delta " + JSON`` (see DELTA_TOPIC); their shape is
pinned in the project brief: ``{"v": 1, "seq": n, "changes": [...], "added": [...], "removed": [...],
"server_state": "RUNNING"}``.

Nothing received from the network is ever unpickled: JSON and text only.
"""

from __future__ import annotations

import json
import struct
from typing import Any

VERSION = 1
DELTA_TOPIC = b"delta "

# Child (task) commands: sent by jobs, authenticated with the job password.
CHILD_COMMANDS = frozenset({"init", "event", "meter", "label", "complete", "abort", "wait", "queue"})


class ProtocolError(RuntimeError):
    """A message that is not a well-formed request or reply of this protocol version."""


_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_loads = json.loads


def encode_request(cmd: str, args: dict[str, Any] | None = None, payload: str | bytes | None = None,
                   user: str = "") -> list[bytes]:
    """Frames of one request: a JSON header and an optional raw payload."""
    head = {"v": VERSION, "cmd": cmd, "args": args or {}}
    if user:
        head["user"] = user
    frames = [_dumps(head).encode()]
    if payload is not None:
        frames.append(payload.encode() if isinstance(payload, str) else payload)
    return frames


def decode_request(frames: list[bytes]) -> tuple[str, dict[str, Any], bytes | None, str]:
    """``(cmd, args, payload, user)`` of a request; ProtocolError says what is wrong with a bad one."""
    if not frames:
        raise ProtocolError("empty request")
    try:
        head = _loads(frames[0])
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"request header is not JSON: {exc}") from None
    if not isinstance(head, dict):
        raise ProtocolError("request header must be a JSON object")
    if head.get("v") != VERSION:
        raise ProtocolError(f"protocol version mismatch: server speaks v{VERSION}, request is v{head.get('v')}")
    cmd = head.get("cmd")
    args = head.get("args", {})
    if not isinstance(cmd, str) or not isinstance(args, dict):
        raise ProtocolError("request needs a string 'cmd' and an object 'args'")
    payload = frames[1] if len(frames) > 1 else None
    return cmd, args, payload, str(head.get("user", ""))


def encode_reply(result: Any = None, payload: str | bytes | None = None, error: str | None = None) -> list[bytes]:
    """Frames of one reply: ok with a JSON ``result`` (+ raw payload), or an error message."""
    head: dict[str, Any] = {"v": VERSION, "ok": error is None}
    if error is not None:
        head["error"] = error
    elif result is not None:
        head["result"] = result
    frames = [_dumps(head).encode()]
    if payload is not None:
        frames.append(payload.encode() if isinstance(payload, str) else payload)
    return frames


def decode_reply(frames: list[bytes]) -> tuple[Any, bytes | None]:
    """``(result, payload)`` of a reply; an error reply raises RuntimeError with the server's message."""
    try:
        head = _loads(frames[0])
    except (ValueError, UnicodeDecodeError, IndexError) as exc:
        raise ProtocolError(f"reply is not a protocol message: {exc}") from None
    if not isinstance(head, dict) or head.get("v") != VERSION:
        raise ProtocolError(f"protocol version mismatch: client speaks v{VERSION}")
    if not head.get("ok"):
        raise RuntimeError(head.get("error", "unknown server error"))
    return head.get("result"), (frames[1] if len(frames) > 1 else None)


_U32 = struct.Struct("!I")


def pack_frames(frames: list[bytes]) -> bytes:
    """Frames as one length-prefixed record for the direct TCP channel:
    ``u32 total | u32 count | (u32 len | bytes) * count`` (big endian)."""
    body = [_U32.pack(len(frames))]
    for f in frames:
        body.append(_U32.pack(len(f)))
        body.append(f)
    data = b"".join(body)
    return _U32.pack(len(data)) + data


def unpack_frames(data: bytes | memoryview) -> list[bytes]:
    """Inverse of :func:`pack_frames` for one record body (without the total length)."""
    view = memoryview(data)
    (n,) = _U32.unpack_from(view, 0)
    pos, out = 4, []
    for _ in range(n):
        (ln,) = _U32.unpack_from(view, pos)
        pos += 4
        out.append(bytes(view[pos:pos + ln]))
        pos += ln
    if pos != len(view):
        raise ProtocolError("malformed record on the direct channel")
    return out


def encode_delta(msg: dict[str, Any]) -> bytes:
    """One PUB frame for a delta message."""
    return DELTA_TOPIC + _dumps(msg).encode()


def decode_delta(frame: bytes) -> dict[str, Any]:
    """The delta message carried by one PUB frame."""
    if not frame.startswith(DELTA_TOPIC):
        raise ProtocolError("not a delta frame")
    msg = _loads(frame[len(DELTA_TOPIC):])
    if msg.get("v") != VERSION:
        raise ProtocolError(f"delta version mismatch: client speaks v{VERSION}")
    return msg
