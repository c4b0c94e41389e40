"""Errors of the security layer: each one says what went wrong and what the user can do about it."""

from __future__ import annotations

from pathlib import Path


class SecurityFileError(ValueError):
    """A white-list, password or key file could not be read: names the file, the line and what was expected."""

    def __init__(self, file: str | Path, line: int | None, expected: str, got: str | None = None) -> None:
        self.file = str(file)
        self.line = line
        self.expected = expected
        self.got = got
        where = f"{self.file}:{line}" if line is not None else self.file
        text = f"{where}: expected {expected}"
        if got is not None:
            text += f", got {got!r}"
        super().__init__(text)


class AccessDenied(PermissionError):
    """A user is not allowed to do what was asked (white list or password check)."""


class AuthenticationError(ConnectionError):
    """A peer could not prove who it is (wrong cluster secret, bad message signature)."""


class CurveHandshakeError(ConnectionError):
    """The CurveZMQ handshake with a server failed, or no Curve server answered in time."""

    def __init__(self, endpoint: str, reason: str) -> None:
        self.endpoint = endpoint
        self.reason = reason
        super().__init__(f"Curve handshake with {endpoint} failed: {reason}")


class KeyFileError(SecurityFileError):
    """A CurveZMQ key file is missing, unreadable or malformed."""
