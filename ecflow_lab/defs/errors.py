"""The one exception the definition parser and checker raise."""

from __future__ import annotations


class DefsSyntaxError(RuntimeError):
    """Malformed definition text: where it is and what was expected.

    A ``RuntimeError`` subclass because ecFlow's python module raises ``RuntimeError`` — scripts that
    catch that keep working.  ``str()`` reads ``big.def:12:5: expected 'endfamily', got 'endsuite'``.
    """

    def __init__(self, message: str, file: str = "<string>", line: int = 0, column: int = 0,
                 text: str = "", expected: str = "", got: str = "") -> None:
        self.message = message
        self.file = file
        self.line = line
        self.column = column
        self.text = text
        self.expected = expected
        self.got = got
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}" if self.line else self.file
        out = f"{where}: {self.message}"
        if self.text:
            out += f"\n    {self.text.rstrip()}"
        return out
