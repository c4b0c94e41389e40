"""``Defs.check()``: the consistency checks ecFlow runs after parsing.

Returns '' or the error text (one ``Error: ...`` line per problem), never raises.  Checked:
trigger/complete syntax and references (externs excepted), constant division by zero, inlimit
references, autorestore references, clock/endclock order.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from .errors import DefsSyntaxError
from .expression import Expression
from .nodes import Defs, Family, Node, Suite

__all__ = ["check_defs", "check_node"]


_DIV0_CACHE: dict[str, bool] = {}


def _div_by_zero(ast: Any) -> bool:
    if not isinstance(ast, tuple):
        return False
    if ast[0] == "arith" and ast[1] in ("/", "%") and ast[3][0] == "const" and ast[3][1] == 0:
        return True
    return any(_div_by_zero(sub) for sub in ast[1:] if isinstance(sub, tuple))


def _check_expr(node: Node, expr: Expression, externs: set[str], errors: list[str]) -> None:
    try:
        ast = expr.ast()
    except DefsSyntaxError as e:
        errors.append(f"Error: {expr.keyword} on {node.get_abs_node_path()}: {e.message}: {expr.expression}")
        return
    key = expr.expression
    bad = _DIV0_CACHE.get(key)
    if bad is None:
        bad = _div_by_zero(ast)
        if len(_DIV0_CACHE) < 100000:
            _DIV0_CACHE[key] = bad
    if bad:
        errors.append(f"Error: {expr.keyword} on {node.get_abs_node_path()}: division by zero in "
                      f"'{expr.expression}'")
    errors.extend(expr.check(node, externs))


def _find_limit_up(node: Node, name: str) -> bool:
    n: Any = node
    while n is not None and not isinstance(n, Defs):
        if n.find_limit(name) is not None:
            return True
        n = n.parent
    return False


def _clock_key(c: Any) -> tuple[int, int]:
    d = _dt.date(c.year, c.month, c.day).toordinal() if c.day else 0
    return d, c.gain


def check_node(node: Node, externs: set[str], errors: list[str]) -> None:
    """Append the errors of one node (not its children) to ``errors``."""
    if node.trigger is not None:
        _check_expr(node, node.trigger, externs, errors)
    if node.complete is not None:
        _check_expr(node, node.complete, externs, errors)
    for il in node.inlimits or ():
        if il.path:
            target = node.find_referenced_node(il.path)
            if target is None:
                if il.path.startswith("/") and (f"{il.path}:{il.name}" in externs or il.path in externs):
                    continue
                errors.append(f"Error: inlimit {il.path}:{il.name} on {node.get_abs_node_path()}: "
                              f"could not find node '{il.path}'")
            elif target.find_limit(il.name) is None:
                if f"{target.get_abs_node_path()}:{il.name}" in externs:
                    continue
                errors.append(f"Error: inlimit {il.path}:{il.name} on {node.get_abs_node_path()}: "
                              f"node '{target.get_abs_node_path()}' has no limit '{il.name}'")
        elif not _find_limit_up(node, il.name):
            errors.append(f"Error: inlimit {il.name} on {node.get_abs_node_path()}: no limit '{il.name}' "
                          f"on this node or any parent")
    if node.autorestore is not None:
        seen: set[str] = set()
        for p in node.autorestore.paths:
            target = node.find_referenced_node(p)
            if target is None:
                if p in externs:
                    continue
                errors.append(f"Error: autorestore on {node.get_abs_node_path()}: could not find '{p}'")
                continue
            if not isinstance(target, (Suite, Family)):
                errors.append(f"Error: autorestore on {node.get_abs_node_path()}: '{p}' is a "
                              f"{target.kind}; only suites and families can be restored")
            ap = target.get_abs_node_path()
            if ap in seen:
                errors.append(f"Error: autorestore on {node.get_abs_node_path()}: '{ap}' is listed twice")
            seen.add(ap)
    if isinstance(node, Suite) and node.clock is not None and node.endclock is not None:
        if _clock_key(node.endclock) < _clock_key(node.clock):
            errors.append(f"Error: suite {node.name}: endclock must be after the clock start")


def check_defs(defs: Defs) -> str:
    """'' when consistent, else the error lines joined by newlines."""
    externs = set(defs.externs)
    errors: list[str] = []
    for node in defs.walk():
        check_node(node, externs, errors)
    return "\n".join(errors) + ("\n" if errors else "")
