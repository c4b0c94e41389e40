"""Shared vocabulary of the transfer service: statuses, the JSON-over-ZeroMQ framing, durations, checksums.

Every message on the wire is a list of ZeroMQ frames whose first frame is a UTF-8 JSON object (the header);
file content travels in further raw byte frames. Nothing received from the network is ever unpickled.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import re
import zlib
from typing import Any

PROTOCOL = 1

#: Chunk size for streamed content (large frames keep per-message overhead negligible).
CHUNK = 8 << 20

# ECPDS data-transfer statuses: display name -> ECPDS code.
ARRIVING, PRESET, FETCHING, STANDBY, QUEUED = "Arriving", "Preset", "Fetching", "StandBy", "Queued"
TRANSFERRING, DONE, REQUEUED, STOPPED, FAILED, INTERRUPTED = (
    "Transferring", "Done", "ReQueued", "Stopped", "Failed", "Interrupted")
STATUS_CODES: dict[str, str] = {
    ARRIVING: "INIT", PRESET: "SCHE", FETCHING: "FETC", STANDBY: "HOLD", QUEUED: "WAIT",
    TRANSFERRING: "EXEC", DONE: "DONE", REQUEUED: "RETR", STOPPED: "STOP", FAILED: "FAIL",
    INTERRUPTED: "INTR",
}
#: Statuses after which nothing more happens without a user action.
FINAL = frozenset({DONE, STOPPED, FAILED})
#: Statuses the transfer scheduler may dispatch.
DISPATCHABLE = frozenset({QUEUED, REQUEUED})


class TransferError(Exception):
    """An error reported by the transfer service (bad request, unknown id, unreachable master, ...)."""


class ProtocolError(TransferError):
    """A malformed message was received."""


def encode(header: dict[str, Any]) -> bytes:
    return json.dumps(header, separators=(",", ":")).encode()


def decode(frame: bytes | memoryview) -> dict[str, Any]:
    try:
        obj = json.loads(bytes(frame))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"bad JSON header: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("header is not a JSON object")
    return obj


# ---------------------------------------------------------------------------------------------- checksums


class Checksum:
    """Incremental checksum named ``algo:hex``; sha256 (SHA-NI fast), md5, sha1, blake2b, adler32 or crc32."""

    def __init__(self, algo: str = "sha256") -> None:
        self.algo = algo
        if algo in ("adler32", "crc32"):
            self._fn = getattr(zlib, algo)
            self._value = 1 if algo == "adler32" else 0
            self._h = None
        else:
            try:
                self._h = hashlib.new(algo)
            except ValueError:
                raise TransferError(f"unknown checksum algorithm {algo!r}") from None

    def update(self, data: bytes | memoryview) -> None:
        if self._h is not None:
            self._h.update(data)
        else:
            self._value = self._fn(data, self._value)

    def hexdigest(self) -> str:
        if self._h is not None:
            return f"{self.algo}:{self._h.hexdigest()}"
        return f"{self.algo}:{self._value:08x}"


def algo_of(checksum: str) -> str:
    return checksum.split(":", 1)[0]


# ---------------------------------------------------------------------------------------------- durations

_UNITS = {"y": 365 * 86400.0, "w": 7 * 86400.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "z": 0.001}
_ISO = re.compile(
    r"^P(?:(?P<y>\d+(?:\.\d+)?)Y)?(?:(?P<mo>\d+(?:\.\d+)?)M)?(?:(?P<w>\d+(?:\.\d+)?)W)?(?:(?P<d>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<mi>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$",
    re.I,
)


def parse_duration(text: str | float | int) -> float:
    """Seconds in an ECPDS duration: ``2d``, ``1h30m``, ``500z`` (ms), ISO-8601 ``PT1H``; a bare number is hours."""
    if isinstance(text, (int, float)):
        return float(text)
    s = text.strip()
    if not s:
        raise ValueError("empty duration")
    if re.fullmatch(r"\d+(\.\d+)?", s):
        return float(s) * 3600.0
    m = _ISO.match(s)
    if m and s.upper() != "P":
        g = {k: float(v) for k, v in m.groupdict().items() if v}
        return (g.get("y", 0) * _UNITS["y"] + g.get("mo", 0) * 30 * 86400 + g.get("w", 0) * _UNITS["w"]
                + g.get("d", 0) * 86400 + g.get("h", 0) * 3600 + g.get("mi", 0) * 60 + g.get("s", 0))
    parts = re.findall(r"(\d+(?:\.\d+)?)([ywdhmsz])", s.lower())
    if not parts or "".join(n + u for n, u in parts) != s.lower():
        raise ValueError(f"bad duration {text!r} (expected e.g. 2d, 1h30m, 45s, 500z or ISO-8601 PT1H)")
    return sum(float(n) * _UNITS[u] for n, u in parts)


_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)$", re.I)


def parse_size(text: str | int) -> int:
    """Bytes in ``10``, ``64k``, ``4M``, ``1.5G`` (binary multiples)."""
    if isinstance(text, int):
        return text
    m = _SIZE.match(text.strip())
    if not m:
        raise ValueError(f"bad size {text!r} (expected e.g. 512, 64k, 4M, 1G)")
    mult = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[m.group(2).lower()]
    return int(float(m.group(1)) * mult)


_JAVA = [("yyyy", "%Y"), ("yy", "%y"), ("MM", "%m"), ("dd", "%d"), ("HH", "%H"), ("mm", "%M"), ("ss", "%S")]


def java_format_to_strftime(fmt: str) -> str:
    """Convert the Java date patterns ecpds' ``-format`` takes (``yyyyMMddHHmmss``) to strftime."""
    out, i = [], 0
    while i < len(fmt):
        for java, py in _JAVA:
            if fmt.startswith(java, i):
                out.append(py)
                i += len(java)
                break
        else:
            if fmt[i] == "'":
                j = fmt.find("'", i + 1)
                j = len(fmt) if j < 0 else j
                out.append(fmt[i + 1:j].replace("%", "%%"))
                i = j + 1
            else:
                out.append(fmt[i].replace("%", "%%"))
                i += 1
    return "".join(out)


def parse_at(text: str, fmt: str = "yyyyMMddHHmmss") -> float:
    """Epoch seconds (local time) for an ``-at`` value in the Java pattern ``fmt``; ISO-8601 also accepted."""
    try:
        return _dt.datetime.strptime(text, java_format_to_strftime(fmt)).timestamp()
    except ValueError:
        pass
    try:
        return _dt.datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise ValueError(f"bad -at time {text!r} (expected format {fmt} or ISO-8601)") from None


def next_time_of_day(hhmm: str, now: float) -> float:
    """The next local ``HH:MM[:SS]`` at or after ``now`` (a destination's daily dispatch time)."""
    parts = [int(p) for p in hhmm.split(":")]
    if not 2 <= len(parts) <= 3:
        raise ValueError(f"bad time of day {hhmm!r} (expected HH:MM)")
    h, m, s = (parts + [0])[:3]
    base = _dt.datetime.fromtimestamp(now)
    t = base.replace(hour=h, minute=m, second=s, microsecond=0)
    if t.timestamp() < now:
        t += _dt.timedelta(days=1)
    return t.timestamp()


def fmt_time(t: float | None) -> str:
    if not t:
        return "-"
    return _dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def fmt_size(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def clean_target(target: str) -> str:
    """Normalise a target path relative to a destination root; refuse absolute paths escaping it."""
    parts = [p for p in target.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise TransferError(f"bad target {target!r}: expected a relative path without '..'")
    return "/".join(parts)
