"""Trigger and complete expressions: tokenizer, parser, compiler to closures, reference check.

The text is stored as written and parsed lazily on first use (``evaluate``, ``references``, ``check``):
loading a 200k-task suite must not build 200k syntax trees.  Parsing produces a small AST of tuples,
which is compiled once into nested Python closures — evaluation is then plain function calls with
node references resolved through a per-expression cache that is invalidated whenever the tree's
structure changes (``nodes.structure_version``).

Grammar (ecFlow's ``ExprParser.cpp``), lowest precedence first::

    or:   and ( ('or'|'OR'|'||') and )*
    and:  not ( ('and'|'AND'|'&&') not )*
    not:  ('not'|'!'|'~') not | cmp
    cmp:  sum ( ('=='|'eq'|'!='|'ne'|'<'|'lt'|'>'|'gt'|'<='|'le'|'>='|'ge') sum )?
    sum:  prod ( ('+'|'-') prod )*
    prod: unary ( ('*'|'/'|'%') unary )*
    unary: atom            (a comparison's right side may be negated: 'a:m > ! 2')
    atom: NUMBER | DATETIME | STATE | 'set' | 'clear' | '(' or ')'
        | path [':' name] | path '<flag>' flag | ':' name | 'cal::' func '(' or ')'

Paths are absolute (``/s/f/t``), relative to the parent (``t``, ``f/t``, ``./t``) or climb (``../t``).
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from .attributes import date_to_julian, julian_to_date
from .errors import DefsSyntaxError

if TYPE_CHECKING:  # pragma: no cover
    from .nodes import Node

__all__ = ["Expression", "Trigger", "Complete", "PartExpression", "Reference", "parse_expression",
           "ExpressionError"]

STATES = {"unknown": 0, "complete": 1, "queued": 2, "aborted": 3, "submitted": 4, "active": 5}
_CMP = {"==": "==", "eq": "==", "!=": "!=", "ne": "!=", "<": "<", "lt": "<", ">": ">", "gt": ">",
        "<=": "<=", "le": "<=", ">=": ">=", "ge": ">="}
_NAME = r"[A-Za-z0-9_][A-Za-z0-9_.]*"
_PATH_RE = re.compile(rf"(?:/{_NAME}(?:/{_NAME})*|(?:\./)?(?:\.\./)*{_NAME}(?:/{_NAME})*)\Z")
_AND = {"and", "AND", "&&"}
_OR = {"or", "OR", "||"}
_NOT = {"not", "!", "~"}  # ecFlow has no upper-case NOT
_PATH_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./")
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.")
_FUNCS = {"date_to_julian": date_to_julian, "julian_to_date": julian_to_date}
FLAG_REFS = ("late", "zombie", "archived", "killed", "aborted", "restored", "by_rule", "message",
             "task_aborted", "force_aborted", "user_edit", "edit_failed", "no_script", "queue_limit",
             "task_waiting", "locked", "threshold", "sigterm", "ecfcmd_failed", "killcmd_failed",
             "statuscmd_failed", "status", "no_reque", "log_error", "checkpt_error", "remote_error")


class ExpressionError(DefsSyntaxError):
    """A malformed expression (a :class:`DefsSyntaxError`, so callers catch one type)."""


class Reference(NamedTuple):
    """One thing an expression refers to: ``kind`` is 'node', 'attr', 'flag' or 'var' (``:VAR``)."""

    path: str
    attr: str | None
    kind: str


# ----------------------------------------------------------------------------------------------- tokenizer


def _tokenize(text: str) -> list[tuple[str, str, int]]:
    """-> [(kind, value, column)], kinds: num, dt, path, attr, flag, op, func, lp, rp, end."""
    toks: list[tuple[str, str, int]] = []
    i, n = 0, len(text)
    prev_operand = False
    while i < n:
        c = text[i]
        if c in " \t\r\n":
            i += 1
            continue
        start = i
        if c == "(":
            toks.append(("lp", c, i)); i += 1; prev_operand = False; continue  # noqa: E702
        if c == ")":
            toks.append(("rp", c, i)); i += 1; prev_operand = True; continue  # noqa: E702
        two = text[i:i + 2]
        if two in ("==", "!=", "<=", ">=", "&&", "||"):
            toks.append(("op", two, i)); i += 2; prev_operand = False; continue  # noqa: E702
        if c in "<>!~+-*%=":
            if c == "=":
                raise ExpressionError("expected '==' (a single '=' is not an operator)", column=i + 1,
                                      text=text, expected="==", got="=")
            toks.append(("op", c, i)); i += 1; prev_operand = False; continue  # noqa: E702
        if c == "/" and prev_operand:
            toks.append(("op", "/", i)); i += 1; prev_operand = False; continue  # noqa: E702
        if c == ":":
            if text.startswith("::", i):
                raise ExpressionError("unexpected '::'", column=i + 1, text=text, got="::")
            j = i + 1
            while j < n and text[j] in _NAME_CHARS:
                j += 1
            if j == i + 1:
                raise ExpressionError("expected a variable name after ':'", column=i + 1, text=text,
                                      expected="name", got=text[j:j + 1] or "end of expression")
            toks.append(("var", text[i + 1:j], i)); i = j; prev_operand = True; continue  # noqa: E702
        if c.isdecimal():
            j = i
            while j < n and text[j].isdecimal():
                j += 1
            if j < n and text[j] == "T" and j + 1 < n and text[j + 1].isdecimal():
                k = j + 1
                while k < n and text[k].isdecimal():
                    k += 1
                toks.append(("dt", text[i:k], i)); i = k; prev_operand = True; continue  # noqa: E702
            if j < n and text[j] == "." and j + 1 < n and text[j + 1].isdecimal() and \
                    not any(ch == "/" for ch in text[j:j + 20].split(" ")[0]):
                k = j + 1
                while k < n and text[k].isdecimal():
                    k += 1
                if k >= n or text[k] not in _PATH_CHARS:
                    toks.append(("num", text[i:k], i)); i = k; prev_operand = True; continue  # noqa: E702
            if j >= n or text[j] not in _PATH_CHARS:
                toks.append(("num", text[i:j], i)); i = j; prev_operand = True; continue  # noqa: E702
            # a name starting with digits (e.g. 0z): fall through to path scanning
        if c in _PATH_CHARS:
            j = i
            while j < n and text[j] in _PATH_CHARS:
                j += 1
            word = text[i:j]
            if word == "cal" and text.startswith("::", j):
                k = j + 2
                while k < n and text[k] in _NAME_CHARS:
                    k += 1
                fname = text[j + 2:k]
                if fname not in _FUNCS:
                    raise ExpressionError(f"unknown function cal::{fname}", column=i + 1, text=text,
                                          expected="cal::date_to_julian or cal::julian_to_date", got=fname)
                toks.append(("func", fname, i)); i = k; prev_operand = False; continue  # noqa: E702
            if "/" not in word and ":" != text[j:j + 1] and not text.startswith("<flag>", j):
                if word in _AND or word in _OR or word in _NOT or word in _CMP:
                    toks.append(("op", word, i)); i = j; prev_operand = False; continue  # noqa: E702
                if word in STATES:
                    toks.append(("state", word, i)); i = j; prev_operand = True; continue  # noqa: E702
                if word in ("set", "clear"):
                    toks.append(("num", "1" if word == "set" else "0", i)); i = j  # noqa: E702
                    prev_operand = True
                    continue
            if j < n and text[j] == ":" and not text.startswith("::", j):
                k = j + 1
                while k < n and text[k] in _NAME_CHARS:
                    k += 1
                if k == j + 1:
                    raise ExpressionError("expected an attribute name after ':'", column=j + 1, text=text,
                                          expected="name", got=text[k:k + 1] or "end of expression")
                toks.append(("attr", word + "\0" + text[j + 1:k], i)); i = k; prev_operand = True  # noqa: E702
                continue
            if text.startswith("<flag>", j):
                k = j + 6
                while k < n and text[k] in _NAME_CHARS:
                    k += 1
                flag = text[j + 6:k]
                if flag not in FLAG_REFS:
                    raise ExpressionError(f"unknown flag {flag!r}", column=j + 7, text=text,
                                          expected="late, zombie, archived, ...", got=flag)
                toks.append(("flag", word + "\0" + flag, i)); i = k; prev_operand = True  # noqa: E702
                continue
            toks.append(("path", word, i)); i = j; prev_operand = True  # noqa: E702
            continue
        raise ExpressionError(f"unexpected character {c!r}", column=start + 1, text=text,
                              expected="an operand or operator", got=c)
    toks.append(("end", "", n))
    return toks


# ----------------------------------------------------------------------------------------------- parser


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokenize(text)
        self.i = 0

    def peek(self) -> tuple[str, str, int]:
        return self.toks[self.i]

    def take(self) -> tuple[str, str, int]:
        t = self.toks[self.i]
        self.i += 1
        return t

    def fail(self, expected: str) -> ExpressionError:
        kind, val, col = self.peek()
        got = val if kind != "end" else "end of expression"
        if kind in ("attr", "flag"):
            got = val.replace("\0", ":" if kind == "attr" else "<flag>")
        return ExpressionError(f"expected {expected}, got {got!r}", column=col + 1, text=self.text,
                               expected=expected, got=got)

    def parse(self) -> tuple:
        if self.peek()[0] == "end":
            raise self.fail("an expression")
        node = self.p_or()
        if self.peek()[0] != "end":
            raise self.fail("an operator or end of expression")
        return node

    # 'and'/'or' chains become one n-ary node ("and", a, b, c, ...): a generated trigger with thousands
    # of terms must not nest thousands deep
    def p_or(self) -> tuple:
        items = [self.p_and()]
        while self.peek()[0] == "op" and self.peek()[1] in _OR:
            self.take()
            items.append(self.p_and())
        return items[0] if len(items) == 1 else ("or", *items)

    def p_and(self) -> tuple:
        items = [self.p_not()]
        while self.peek()[0] == "op" and self.peek()[1] in _AND:
            self.take()
            items.append(self.p_not())
        return items[0] if len(items) == 1 else ("and", *items)

    def _is_not(self) -> bool:
        k, v, _ = self.peek()
        return k == "op" and v in _NOT

    def p_not(self) -> tuple:
        if self._is_not():
            self.take()
            if self._is_not():
                raise self.fail("an operand (ecFlow does not allow a double negation)")
            return ("not", self.p_cmp())
        return self.p_cmp()

    def p_cmp(self) -> tuple:
        left = self.p_sum()
        k, v, _ = self.peek()
        if k == "op" and v in _CMP:
            self.take()
            if self._is_not():  # ecFlow accepts a negated right-hand side: 'a:m > ! 2'
                self.take()
                if self._is_not():
                    raise self.fail("an operand (ecFlow does not allow a double negation)")
                nk, _, ncol = self.peek()
                if nk == "state" or (nk == "num" and self.text.startswith(("set", "clear"), ncol)):
                    raise self.fail("a state (or set/clear) without negation")
                right = ("not", self.p_sum())
            else:
                right = self.p_sum()
            left = ("cmp", _CMP[v], left, right)
            k, v, _ = self.peek()
            if k == "op" and v in _CMP:
                raise self.fail("'and', 'or' or ')' (comparisons do not chain)")
        return left

    def p_sum(self) -> tuple:
        left = self.p_prod()
        while self.peek()[0] == "op" and self.peek()[1] in ("+", "-"):
            op = self.take()[1]
            left = ("arith", op, left, self.p_prod())
        return left

    def p_prod(self) -> tuple:
        left = self.p_unary()
        while self.peek()[0] == "op" and self.peek()[1] in ("*", "/", "%"):
            op = self.take()[1]
            left = ("arith", op, left, self.p_unary())
        return left

    def p_unary(self) -> tuple:
        return self.p_atom()  # ecFlow 5.9.2 has no unary minus

    def p_atom(self) -> tuple:
        kind, val, _ = self.peek()
        if kind == "num":
            self.take()
            return ("const", float(val) if "." in val else int(val))
        if kind == "dt":
            self.take()
            # seconds since the epoch, as a 'repeat datetime' value reads in an expression
            try:
                t = _dt.datetime.strptime(val, "%Y%m%dT%H%M%S").replace(tzinfo=_dt.timezone.utc)
            except ValueError:
                raise self.fail("a datetime yyyymmddTHHMMSS") from None
            return ("const", int(t.timestamp()))
        if kind == "state":
            self.take()
            return ("state", STATES[val])
        if kind == "lp":
            self.take()
            inner = self.p_or()
            if self.peek()[0] != "rp":
                raise self.fail("')'")
            self.take()
            return inner
        if kind == "path":
            self.take()
            return ("node", val)
        if kind == "attr":
            self.take()
            p, a = val.split("\0")
            return ("attr", p, a)
        if kind == "flag":
            self.take()
            p, f = val.split("\0")
            return ("flag", p, f)
        if kind == "var":
            self.take()
            return ("var", val)
        if kind == "func":
            self.take()
            if self.peek()[0] != "lp":
                raise self.fail("'(' after cal::" + val)
            self.take()
            arg = self.p_or()
            if self.peek()[0] != "rp":
                raise self.fail("')'")
            self.take()
            return ("func", val, arg)
        raise self.fail("a node path, state, number or '('")


_AST_CACHE: dict[str, tuple] = {}
_REFS_CACHE: dict[str, tuple[Reference, ...]] = {}


def parse_expression(text: str) -> tuple:
    """Parse expression text to its AST (nested tuples); raises :class:`ExpressionError`.

    ASTs are immutable tuples, cached by text: generated suites repeat the same trigger text
    thousands of times (each node still gets its own compiled closures and reference caches)."""
    ast = _AST_CACHE.get(text)
    if ast is not None:
        return ast
    ast = _Parser(text).parse()
    _validate(ast, text, boolean=True)
    if len(_AST_CACHE) < 100000:
        _AST_CACHE[text] = ast
    return ast


def _validate(ast: tuple, text: str, boolean: bool) -> None:
    """Reject what ecFlow's grammar rejects: a bare node path used as a condition, a state compared
    with anything but a node, a path with a trailing '/'."""
    kind = ast[0]
    if kind in ("and", "or"):
        for sub in ast[1:]:
            _validate(sub, text, True)
    elif kind == "not":
        _validate(ast[1], text, True)
    elif kind == "node":
        if boolean:
            raise ExpressionError(f"node path {ast[1]!r} needs a comparison (e.g. '{ast[1]} == complete')",
                                  text=text, expected="a comparison", got=ast[1])
    elif kind == "cmp":
        left, right = ast[2], ast[3]
        for a, b in ((left, right), (right, left)):
            if a[0] == "state" and b[0] not in ("node", "state"):
                raise ExpressionError("a state (complete, queued, ...) can only be compared with a node path",
                                      text=text, expected="a node path", got=str(b[1]) if len(b) > 1 else "")
        for sub in (left, right):
            _validate(sub, text, False)
    else:
        for sub in ast[1:]:
            if isinstance(sub, tuple):
                _validate(sub, text, False)
    if kind in ("node", "attr", "flag"):
        path = ast[1]
        if len(path) > 1 and path.endswith("/"):
            raise ExpressionError(f"path {path!r} ends with '/'", text=text, expected="a node name", got=path)
        if not (_PATH_RE.match(path) or (path == "/" and kind == "flag")):
            raise ExpressionError(f"invalid node path {path!r}: './' and '../' may only lead a relative path, "
                                  "which then names nodes", text=text, expected="[./][../..]name[/name...]",
                                  got=path)


# ----------------------------------------------------------------------------------------------- compiler

Fn = Callable[[Any], Any]


def _resolver(path: str) -> Callable[[Any], Any]:
    """A function owner -> referenced node (or None), cached until the tree structure changes."""
    from . import nodes as _nodes

    cache: list[Any] = [-1, None]

    def resolve(owner: Any) -> Any:
        if cache[0] == _nodes.structure_version[0]:
            return cache[1]
        found = owner.find_referenced_node(path)
        cache[0] = _nodes.structure_version[0]
        cache[1] = found
        return found

    return resolve


def _compile(ast: tuple) -> Fn:
    kind = ast[0]
    if kind == "const" or kind == "state":
        v = ast[1]
        return lambda owner: v
    if kind == "node":
        res = _resolver(ast[1])

        def node_state(owner: Any) -> int:
            n = res(owner)
            return int(n.state) if n is not None else 0
        return node_state
    if kind == "attr":
        res = _resolver(ast[1])
        name = ast[2]

        def attr_value(owner: Any) -> Any:
            n = res(owner)
            return n.expr_value(name) if n is not None else 0
        return attr_value
    if kind == "flag":
        res = _resolver(ast[1])
        flag = ast[2]

        def flag_value(owner: Any) -> int:
            n = res(owner)
            if n is None:
                return 0
            f = n.flags
            return 1 if f and flag in f else 0
        return flag_value
    if kind == "var":
        name = ast[1]
        return lambda owner: owner.expr_value_up(name)
    if kind == "not":
        f = _compile(ast[1])
        return lambda owner: not f(owner)
    if kind in ("and", "or"):
        fns = [_compile(sub) for sub in ast[1:]]
        if len(fns) == 2:
            a, b = fns
            if kind == "and":
                return lambda owner: bool(a(owner)) and bool(b(owner))
            return lambda owner: bool(a(owner)) or bool(b(owner))
        if kind == "and":
            return lambda owner: all(f(owner) for f in fns)
        return lambda owner: any(f(owner) for f in fns)
    if kind == "func":
        fn = _FUNCS[ast[1]]
        f = _compile(ast[2])

        def call(owner: Any) -> int:
            try:
                return fn(int(f(owner)))
            except (ValueError, OverflowError):
                return 0
        return call
    if kind == "cmp":
        a, b = _compile(ast[2]), _compile(ast[3])
        op = ast[1]
        if op == "==":
            return lambda owner: a(owner) == b(owner)
        if op == "!=":
            return lambda owner: a(owner) != b(owner)
        if op == "<":
            return lambda owner: a(owner) < b(owner)
        if op == ">":
            return lambda owner: a(owner) > b(owner)
        if op == "<=":
            return lambda owner: a(owner) <= b(owner)
        return lambda owner: a(owner) >= b(owner)
    if kind == "arith":
        op, left, right = ast[1], ast[2], ast[3]
        a, b = _compile(left), _compile(right)
        if op in ("+", "-") and left[0] == "attr":
            # date arithmetic: a repeat date/datelist value +/- N days (ecFlow does this)
            res = _resolver(left[1])
            name = left[2]
            sign = 1 if op == "+" else -1

            def date_arith(owner: Any) -> Any:
                n = res(owner)
                rep = n.repeat if n is not None else None
                if rep is not None and rep.name == name and rep.kind in ("date", "datelist"):
                    try:
                        return julian_to_date(date_to_julian(rep.value()) + sign * int(b(owner)))
                    except (ValueError, OverflowError):
                        return 0
                return a(owner) + sign * b(owner)
            return date_arith
        if op == "+":
            return lambda owner: a(owner) + b(owner)
        if op == "-":
            return lambda owner: a(owner) - b(owner)
        if op == "*":
            return lambda owner: a(owner) * b(owner)

        def div(owner: Any) -> Any:
            x, y = a(owner), b(owner)
            if y == 0:
                return 0
            return x / y if op == "/" else x % y
        return div
    raise AssertionError(f"unknown AST node {kind}")  # pragma: no cover


def _refs(ast: tuple, out: list[Reference]) -> None:
    kind = ast[0]
    if kind == "node":
        out.append(Reference(ast[1], None, "node"))
    elif kind == "attr":
        out.append(Reference(ast[1], ast[2], "attr"))
    elif kind == "flag":
        out.append(Reference(ast[1], ast[2], "flag"))
    elif kind == "var":
        out.append(Reference("", ast[1], "var"))
    else:
        for sub in ast[1:]:
            if isinstance(sub, tuple):
                _refs(sub, out)


# ----------------------------------------------------------------------------------------------- model


class PartExpression:
    """One line of a trigger/complete: text plus how it joins the previous ones ('' | 'and' | 'or')."""

    __slots__ = ("text", "join")

    def __init__(self, text: str, join: str = "") -> None:
        self.text = text
        self.join = join

    def get_expression(self) -> str:
        return self.text

    def and_expr(self) -> bool:
        return self.join == "and"

    def or_expr(self) -> bool:
        return self.join == "or"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PartExpression) and (self.text, self.join) == (other.text, other.join)

    def __repr__(self) -> str:
        return f"PartExpression({self.text!r}, {self.join!r})"


class Expression:
    """A trigger or complete expression attached to one node.

    Definition: ``text`` (first line) and ``parts`` (``None`` or the ``-a``/``-o`` continuation lines).
    Runtime: ``free`` — set when a user frees the dependency (``force trigger``); the server
    then ignores the expression until requeue.
    """

    __slots__ = ("text", "parts", "free", "_fn", "_ast")
    keyword = "trigger"

    def __init__(self, expr: str | list[Any] | PartExpression | Expression = "", *more: PartExpression) -> None:
        if isinstance(expr, Expression):
            self.text, self.parts = expr.text, list(expr.parts) if expr.parts else None
        else:
            if isinstance(expr, PartExpression):
                expr = expr.text
            elif isinstance(expr, list):
                # ecflow: Trigger(["a", "b"]) means all these nodes complete
                expr = " and ".join(
                    (x.get_abs_node_path() if hasattr(x, "get_abs_node_path") else str(x)) + " == complete"
                    for x in expr)
            self.text = str(expr).strip()
            self.parts: list[PartExpression] | None = list(more) if more else None
        self.free = False
        self._fn: Fn | None = None
        self._ast: tuple | None = None

    # --- text
    def add_part(self, text: str, join: str) -> None:
        """Append an ``-a`` (join='and') or ``-o`` (join='or') line."""
        if join not in ("and", "or"):
            raise ValueError("join must be 'and' or 'or'")
        if self.parts is None:
            self.parts = []
        self.parts.append(PartExpression(text.strip(), join))
        self._fn = self._ast = None

    @property
    def expression(self) -> str:
        """The full expression as evaluated (parts combined left to right)."""
        if not self.parts:
            return self.text
        out = self.text
        for p in self.parts:
            out = f"{out} {p.join} {p.text}" if out else p.text
        return out

    def get_expression(self) -> str:
        return self.expression

    def __str__(self) -> str:
        return self.expression

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.expression!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Expression):
            return NotImplemented
        return (type(self) is type(other) and self.text == other.text
                and (self.parts or None) == (other.parts or None) and self.free == other.free)

    __hash__ = None  # type: ignore[assignment]

    def write_lines(self, keyword: str) -> list[str]:
        """Definition lines: ``trigger text`` then ``trigger -a part`` ..."""
        lines = [f"{keyword} {self.text}"] if self.text else []
        for p in self.parts or ():
            flag = "-a" if p.join == "and" else "-o"
            lines.append(f"{keyword} {flag} {p.text}")
        return lines

    # --- compile/evaluate
    def ast(self) -> tuple:
        """The parsed AST (parsed on first call; raises :class:`ExpressionError`)."""
        if self._ast is None:
            try:
                if not self.parts:
                    self._ast = parse_expression(self.text)
                else:
                    ast = parse_expression(self.text) if self.text else None
                    for p in self.parts:
                        sub = parse_expression(p.text)
                        ast = sub if ast is None else (p.join, ast, sub)
                    self._ast = ast
            except ExpressionError as e:
                e.text = self.expression
                raise
            except RecursionError:
                raise ExpressionError("expression nested too deeply", text=self.expression,
                                      expected="fewer nested parentheses") from None
        return self._ast

    def compiled(self) -> Fn:
        if self._fn is None:
            try:
                self._fn = _compile(self.ast())
            except RecursionError:
                raise ExpressionError("expression nested too deeply", text=self.expression,
                                      expected="fewer nested parentheses") from None
        return self._fn

    def evaluate(self, owner: Node) -> bool:
        """Evaluate against the tree, with relative paths resolved from ``owner``."""
        return bool(self.compiled()(owner))

    def value(self, owner: Node) -> Any:
        """The raw value (a number or bool) — for ``why`` explanations."""
        return self.compiled()(owner)

    def references(self) -> list[Reference]:
        """Everything the expression refers to (nodes, attributes, flags, ``:VAR``)."""
        key = self.text if not self.parts else None
        if key is not None:
            hit = _REFS_CACHE.get(key)
            if hit is not None:
                return list(hit)
        out: list[Reference] = []
        _refs(self.ast(), out)
        if key is not None and len(_REFS_CACHE) < 100000:
            _REFS_CACHE[key] = tuple(out)
        return out

    def check(self, owner: Node, externs: set[str] | None = None) -> list[str]:
        """Error messages for references that do not resolve (externs excepted), like ecFlow's check."""
        try:
            refs = self.references()
        except ExpressionError as e:
            return [f"Error: {self.keyword} '{self.expression}' on {owner.get_abs_node_path()}: {e.message}"]
        errors = []
        ext = externs or set()
        for r in refs:
            if r.kind == "var":
                if not owner.has_expr_value_up(r.attr):
                    errors.append(f"Error: {self.keyword} '{self.expression}' on {owner.get_abs_node_path()}: "
                                  f"variable ':{r.attr}' is not defined on this node or any parent")
                continue
            target = owner.find_referenced_node(r.path)
            if target is None:
                abs_path = owner.normalise_path(r.path)
                if {r.path, abs_path} & ext or (r.attr and {f"{r.path}:{r.attr}", f"{abs_path}:{r.attr}"} & ext):
                    continue
                errors.append(f"Error: {self.keyword} '{self.expression}' on {owner.get_abs_node_path()}: "
                              f"could not find node '{r.path}'")
                continue
            if r.kind == "attr" and not target.has_expr_value(r.attr):
                abs_path = target.get_abs_node_path()
                if {f"{r.path}:{r.attr}", f"{abs_path}:{r.attr}"} & ext:
                    continue
                errors.append(f"Error: {self.keyword} '{self.expression}' on {owner.get_abs_node_path()}: "
                              f"node '{abs_path}' has no event, meter, variable, repeat, limit or queue "
                              f"called '{r.attr}'")
        return errors


class Trigger(Expression):
    """``trigger EXPR``: the node runs only when the expression holds."""

    __slots__ = ()
    keyword = "trigger"


class Complete(Expression):
    """``complete EXPR``: when true, the node is set complete without running (flag by_rule)."""

    __slots__ = ()
    keyword = "complete"
