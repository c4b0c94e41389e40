"""``.def`` text -> model.  Line oriented, one dict dispatch per statement, fast paths for the
keywords that make up most of an operational suite (task, edit, trigger, event, meter, label).

Handles both forms: the definition form and the checkpoint/state form (``defs_state`` header, state
in trailing ``# ...`` comments, aliases, server variables).  Every problem is raised as
:class:`DefsSyntaxError` with file, line, column, the offending text and what was expected.
"""

from __future__ import annotations

import gc
import re
import sys
from collections.abc import Iterable
from typing import Any

from .attributes import (
    Autoarchive,
    Autocancel,
    Autorestore,
    Aviso,
    Clock,
    Cron,
    Date,
    Day,
    EndClock,
    Event,
    Generic,
    InLimit,
    Label,
    Late,
    Limit,
    Meter,
    Mirror,
    Queue,
    RepeatDate,
    RepeatDateList,
    RepeatDateTime,
    RepeatDay,
    RepeatEnumerated,
    RepeatInteger,
    RepeatString,
    Time,
    TimeSeries,
    Today,
    Variable,
    Verify,
    ZombieAttr,
    unescape_label,
)
from .errors import DefsSyntaxError
from .expression import Complete, Trigger
from .nodes import _NAME_RE, Alias, Defs, Family, Node, NodeContainer, Suite, Task, structure_version
from .state import DState, NState, SState

__all__ = ["parse_text", "parse_file", "parse_node_text"]

_intern = sys.intern
_RAW_KEYWORDS = frozenset({"edit", "label", "trigger", "complete"})
_GOOD_NAMES: set[str] = set()


def _good_name(name: str) -> bool:
    if name in _GOOD_NAMES:
        return True
    if _NAME_RE.match(name):
        if len(_GOOD_NAMES) < 100000:
            _GOOD_NAMES.add(name)
        return True
    return False


def parse_file(path: str, into: Defs | None = None) -> Defs:
    """Parse a ``.def`` or checkpoint file."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as fh:
            text = fh.read()
    except OSError as e:
        raise DefsSyntaxError(f"can not read file: {e.strerror}", file=str(path)) from None
    return parse_text(text, str(path), into=into)


def parse_text(text: str | Iterable[str], filename: str = "<string>", into: Defs | None = None) -> Defs:
    """Parse definition text; raises :class:`DefsSyntaxError` and nothing else. ``text`` may also be an
    iterable of consecutive pieces of it (read as they come, e.g. while the rest is still being
    decompressed); it is then read in task chunks whatever its size."""
    from . import nodes as _nodes

    saved = _nodes._BLOCKS[:]
    _nodes._BLOCKS.clear()  # the parser must not feed an enclosing ``with`` block
    p = _Parser(filename, into if into is not None else Defs())
    # The parser allocates millions of small acyclic objects; the cyclic GC would rescan the growing
    # heap again and again (a third of the parse time), so it is paused while parsing.
    gc_was_on = gc.isenabled()
    gc.disable()
    size = 0
    try:
        size = p.run(text) if isinstance(text, str) else p.run_pieces(text)
    except DefsSyntaxError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, RecursionError, AttributeError) as e:
        raise p.error(str(e) or type(e).__name__) from None
    finally:
        _nodes._BLOCKS[:] = saved
        p.h = p.memo = {}  # they hold bound methods of p: without this p would wait for the cyclic GC
        if gc_was_on:
            if size >= _PROMOTE_AFTER and gc.get_freeze_count() == 0:
                _promote_to_old_generation()
            gc.enable()
    structure_version[0] += 1
    return p.defs


# A big parse leaves a million or more new objects in the youngest GC generation; the next collections would
# walk all of them twice (generation 0, then 1) for nothing, a quarter of a second each at 200k tasks, at
# some unrelated later moment. Moving them straight to the oldest generation costs nothing (two list
# splices) and they stay collectable there. Skipped when the application uses gc.freeze() itself.
_PROMOTE_AFTER = 1 << 20  # characters of definition text


def _promote_to_old_generation() -> None:
    gc.freeze()
    gc.unfreeze()


def parse_node_text(text: str, filename: str = "<string>") -> Node:
    """Parse the text of ONE node — a suite, or a family/task outside any suite (as ``ecflow_client
    --replace`` and the server's node commands exchange them).  Returns the detached node."""
    from . import nodes as _nodes

    words = next((ln.split() for ln in text.split("\n") if ln.split() and not ln.lstrip().startswith("#")), [])
    if not words or words[0] not in ("suite", "family", "task"):
        raise DefsSyntaxError("expected 'suite', 'family' or 'task'", file=filename, line=1, column=1,
                              expected="suite, family or task", got=words[0] if words else "end of file")
    p = _Parser(filename, Defs())
    p.state_form = True  # node text comes from a server: keep its state comments
    holder = None
    if words[0] != "suite":
        holder = Suite._make("__holder__")
        p.stack.append(holder)
        p.node = holder
    saved = _nodes._BLOCKS[:]
    _nodes._BLOCKS.clear()
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        p.run(text)
    except DefsSyntaxError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, RecursionError, AttributeError) as e:
        raise p.error(str(e) or type(e).__name__) from None
    finally:
        _nodes._BLOCKS[:] = saved
        if gc_was_on:
            gc.enable()
    tops: list[Any] = holder.children if holder is not None else p.defs.suites
    if len(tops) != 1:
        raise DefsSyntaxError(f"expected one top-level node, got {len(tops)}", file=filename)
    node = tops[0]
    if holder is not None:
        holder.remove_child(node)
    else:
        p.defs.remove_suite(node)
    return node


def _strip_quotes(w: str) -> str:
    if len(w) >= 2 and w[0] in "'\"" and w[-1] == w[0]:
        return w[1:-1]
    return w


_CAL_ITEM = re.compile(r"([A-Za-z_]\w*):(.*?)(?=\s+[A-Za-z_]\w*:|\s*$)")
_NEXT_VALUED = re.compile(r";\s*(edit|label)\b")


def _closing(text: str, i: int, q: str) -> int:
    """Index of the quote closing the one at ``i`` (followed by a blank, ';' or the end), else -1:
    an unbalanced quote is an ordinary character."""
    n = len(text)
    j = text.find(q, i + 1)
    while j >= 0 and j + 1 < n and text[j + 1] not in " \t\r;":
        j = text.find(q, j + 1)
    return j


def _scan_one(text: str) -> tuple[str, str | None, str | None]:
    """First statement of ``text`` -> (statement, comment, rest after ';'), respecting quotes."""
    i, n = 0, len(text)
    prev = " "
    while i < n:
        ch = text[i]
        if ch in "'\"" and prev in " \t":
            j = _closing(text, i, ch)
            if j > 0:
                i, prev = j + 1, ch
                continue
        elif ch == ";":
            return text[:i], None, text[i + 1:]
        elif ch == "#":
            return text[:i], text[i + 1:], None
        prev = ch
        i += 1
    return text, None, None


def _split_valued(text: str) -> tuple[str, str | None, str | None]:
    """``edit NAME value`` / ``label NAME value`` where the value may hold ';', '#' and even its own quote
    character (``'$(awk '/x/ {print}' f)'``).  A quoted value ends at the first quote followed by
    ``; edit``/``; label``; else (edit) at a quote that ends the line or (label) at the first quote
    followed by a ``#`` comment; else at the other of the two (as ecFlow reads such lines)."""
    parts = text.split(None, 2)
    if len(parts) < 3:
        return _scan_one(text)
    pos = text.index(parts[1], text.index(parts[0]) + len(parts[0])) + len(parts[1])
    while pos < len(text) and text[pos] in " \t":
        pos += 1
    val = text[pos:]
    if val[0] in "'\"":
        q = val[0]
        j = val.find(q, 1)
        hash_at = end_at = -1
        while j > 0:
            after = val[j + 1:].lstrip()
            if _NEXT_VALUED.match(after):
                return text[:pos + j + 1], None, after[1:]
            if not after:
                end_at = j
            elif after[0] == "#" and hash_at < 0:
                hash_at = j
            j = val.find(q, j + 1)
        # edit: a value ending the line wins ('$(grep -v '#' x)'); label: a comment wins, as checkpoints
        # carry the label's new value there ('label l "x" # "new"')
        order = (hash_at, end_at) if parts[0] == "label" else (end_at, hash_at)
        for k in order:
            if k == end_at and k > 0:
                return text[:pos + k + 1], None, None
            if k == hash_at and k > 0:
                after = val[k + 1:].lstrip()
                return text[:pos + k + 1], after[1:], None
        return text, None, None
    # unquoted: a label runs to the comment (ecFlow keeps ';' in labels), an edit also stops at ';'
    cut = [k for k in (val.find("#"), -1 if parts[0] == "label" else val.find(";")) if k >= 0]
    if not cut:
        return text, None, None
    k = min(cut)
    if val[k] == "#":
        return text[:pos + k], val[k + 1:], None
    return text[:pos + k], None, val[k + 1:]


def _words(stmt: str) -> list[str]:
    """Whitespace split that keeps quoted strings (with their quotes) as one word."""
    if "'" not in stmt and '"' not in stmt:
        return stmt.split()
    out: list[str] = []
    i, n = 0, len(stmt)
    while i < n:
        while i < n and stmt[i] in " \t\r":
            i += 1
        if i >= n:
            break
        j = _closing(stmt, i, stmt[i]) if stmt[i] in "'\"" else -1
        if j > 0:
            out.append(stmt[i:j + 1])
            i = j + 1
        else:
            j = i
            while j < n and stmt[j] not in " \t\r":
                j += 1
            out.append(stmt[i:j])
            i = j
    return out


MEMO_MAX = 200_000  # distinct statements remembered per parse
CHUNK_MIN = 256 * 1024  # texts at least this long are read in task chunks (see _Parser._chunks)
_CHUNK_SPLIT = re.compile(r"\n(?=[ \t]*task[ \t])")
_CHUNK_BATCH = 1 << 20


def _split_chunks(text: str) -> Any:
    """``_CHUNK_SPLIT.split(text)``, a megabyte of text at a time (the chunks of one batch are freed before
    the next is cut, so they never take fresh memory)."""
    n = len(text)
    if not n:
        yield text
    a = 0
    while a < n:
        m = _CHUNK_SPLIT.search(text, a + _CHUNK_BATCH) if a + _CHUNK_BATCH < n else None
        if m is None:
            yield from _CHUNK_SPLIT.split(text[a:] if a else text)
            return
        e = m.start()
        yield from _CHUNK_SPLIT.split(text[a:e])
        a = e + 1


_new = object.__new__


# The attribute objects the attach steps (and the chunk replay) make: words already checked, no validation.
def _new_variable(name: str, value: str) -> Variable:
    var = _new(Variable)
    var.name = name
    var.value = value
    return var


def _new_expr(cls: type, text: str) -> Any:
    e = _new(cls)
    e.text = text
    e.parts = None
    e.free = False
    e._fn = None
    e._ast = None
    return e


def _new_event(number: int | None, name: str, initial: bool) -> Event:
    ev = _new(Event)
    ev.number = number
    ev.name = name
    ev.initial = initial
    ev.value = initial
    return ev


def _new_meter(name: str, mn: int, mx: int, cc: int) -> Meter:
    m = _new(Meter)
    m.name = name
    m.min = mn
    m.max = mx
    m.color_change = cc
    m.value = mn
    return m


def _fill(t: Any, variables: tuple, exprs: tuple, events: tuple, meters: tuple, labels: tuple) -> None:
    """Attach a replayed task chunk's attributes to its new task ``t``. The objects are made inline, not with
    the _new_* functions above: a call per object made the 200k-task parse ~15-20% slower (measured)."""
    if variables:
        vl = []
        for name, value in variables:
            var = _new(Variable)
            var.name = name
            var.value = value
            vl.append(var)
        t.variables = vl
    for cls, slot, text in exprs:
        e = _new(cls)
        e.text = text
        e.parts = None
        e.free = False
        e._fn = None
        e._ast = None
        setattr(t, slot, e)
    if events:
        el = []
        for number, name, initial in events:
            ev = _new(Event)
            ev.number = number
            ev.name = name
            ev.initial = initial
            ev.value = initial
            el.append(ev)
        t.events = el
    if meters:
        ml = []
        for name, mn, mx, cc in meters:
            m = _new(Meter)
            m.name = name
            m.min = mn
            m.max = mx
            m.color_change = cc
            m.value = mn
            ml.append(m)
        t.meters = ml
    if labels:
        ll = []
        for name, value in labels:
            lb = _new(Label)
            lb.name = name
            lb.value = value
            lb.new_value = ""
            ll.append(lb)
        t.labels = ll


def _new_label(name: str, value: str) -> Label:
    lb = _new(Label)
    lb.name = name
    lb.value = value
    lb.new_value = ""
    return lb


def _compile_chunk(steps: list) -> tuple:
    """``(fast, steps)`` for a chunk's attach steps. ``fast`` builds the usual shape at once: a new task
    followed by its edits, trigger/complete, events, meters and labels (names all different, as they were
    the first time), then the remaining steps (``tail``) one by one; None when the chunk has another shape."""
    if not steps or getattr(steps[0][0], "__func__", None) is not _Parser._task:
        return (None, steps)
    variables: list = []
    events: list = []
    meters: list = []
    labels: list = []
    trig = comp = None
    k = 1
    for fn, args, _i in steps[1:]:
        f = getattr(fn, "__func__", None)
        if f is _Parser._edit:
            variables.append(args)
        elif f is _Parser._set_expr:
            if args[0] == "trigger" and trig is None:
                trig = args[1]
            elif args[0] == "complete" and comp is None:
                comp = args[1]
            else:
                return (None, steps)
        elif f is _Parser._event:
            events.append(args)
        elif f is _Parser._meter:
            meters.append(args)
        elif f is _Parser._label:
            labels.append(args)
        else:
            break
        k += 1
    if len({n for n, _v in variables}) != len(variables):
        return (None, steps)  # a repeated edit replaces the earlier one: leave it to the steps
    exprs = tuple((cls, slot, text) for cls, slot, text in ((Trigger, "trigger", trig), (Complete, "complete", comp))
                  if text is not None)  # fmt: skip
    fast = (steps[0][1][0], tuple(variables), exprs, tuple(events), tuple(meters), tuple(labels), tuple(steps[k:]))
    return (fast, steps)


def _rest(stmt: str, nwords: int) -> str:
    """The raw text after the first ``nwords`` words."""
    parts = stmt.split(None, nwords)
    return parts[nwords].strip() if len(parts) > nwords else ""


class _Parser:
    def __init__(self, filename: str, defs: Defs) -> None:
        self.file = filename
        self.defs = defs
        self.stack: list[NodeContainer] = []
        self.node: Node | None = None
        self.task_of_alias: Task | None = None
        self.lineno = 0
        self.line = ""
        self.stmt = ""
        self.comment: str | None = None
        self.state_form = False
        self._vnode: Node | None = None
        self._vindex: dict[str, int] = {}
        # statement text -> (attach function, parsed arguments) for plain statements (no comment, no ';')
        # already parsed once: big suites repeat the same event/meter/label/edit/trigger lines thousands of
        # times, and the attach step keeps every check that depends on the node (placement, duplicates)
        self.memo: dict[str, tuple[Any, tuple]] = {}
        self.h = {
            "task": self.k_task, "edit": self.k_edit, "trigger": self.k_trigger, "complete": self.k_complete,
            "event": self.k_event, "meter": self.k_meter, "label": self.k_label, "family": self.k_family,
            "endfamily": self.k_endfamily, "suite": self.k_suite, "endsuite": self.k_endsuite,
            "endtask": self.k_endtask, "inlimit": self.k_inlimit, "limit": self.k_limit, "repeat": self.k_repeat,
            "time": self.k_time, "today": self.k_today, "date": self.k_date, "day": self.k_day, "cron": self.k_cron,
            "late": self.k_late, "defstatus": self.k_defstatus, "clock": self.k_clock, "endclock": self.k_endclock,
            "autocancel": self.k_autocancel, "autoarchive": self.k_autoarchive, "autorestore": self.k_autorestore,
            "verify": self.k_verify, "zombie": self.k_zombie, "queue": self.k_queue, "generic": self.k_generic,
            "extern": self.k_extern, "aviso": self.k_aviso, "mirror": self.k_mirror, "alias": self.k_alias,
            "endalias": self.k_endalias, "defs_state": self.k_defs_state, "calendar": self.k_calendar,
            "history": self.k_history,
        }

    # ----------------------------------------------------------------- errors
    def error(self, message: str, got: str = "", expected: str = "") -> DefsSyntaxError:
        col = 1
        line = self.line
        if got and got in line:
            col = line.index(got) + 1
        elif self.stmt and self.stmt.strip() in line:
            col = line.index(self.stmt.strip()) + 1
        else:
            col = len(line) - len(line.lstrip()) + 1
        if expected and not message:
            message = f"expected {expected}, got {got!r}"
        return DefsSyntaxError(message, file=self.file, line=self.lineno, column=col, text=line,
                               expected=expected, got=got)

    def expect(self, expected: str, got: str) -> DefsSyntaxError:
        return self.error(f"expected {expected}, got {got!r}" if got else f"expected {expected}",
                          got=got, expected=expected)

    # ----------------------------------------------------------------- main loop
    def run(self, text: str) -> int:
        """Parse ``text``; returns its length."""
        if text.startswith("\ufeff"):  # a byte order mark left by some editors
            text = text[1:]
        if len(text) < CHUNK_MIN:
            lines = text.split("\n")
            self._lines(lines, 0)
            self.lineno, self.line = len(lines), lines[-1]
        else:
            self.lineno, self.line = self._chunks(_split_chunks(text))
        self.after_parse()
        return len(text)

    def run_pieces(self, pieces: Iterable[str]) -> int:
        """Parse the text made of ``pieces`` as they come; returns its length."""
        total = 0

        def chunks() -> Any:
            nonlocal total
            rest = ""
            first = True
            for piece in pieces:
                if first and piece:
                    first = False
                    if piece.startswith("\ufeff"):
                        piece = piece[1:]
                total += len(piece)
                parts = _CHUNK_SPLIT.split(rest + piece if rest else piece)
                rest = parts.pop()  # may continue in the next piece
                yield from parts
            yield rest

        self.lineno, self.line = self._chunks(chunks())
        self.after_parse()
        return total

    def _lines(self, lines: list[str], base: int) -> list | None:
        """Parse ``lines`` (the first is line ``base + 1``). Returns the attach steps ``(fn, args, index)``
        of its statements when every one of them was a plain, remembered one (else None)."""
        n = len(lines)
        i = 0
        h = self.h
        raw_kw = _RAW_KEYWORDS
        memo = self.memo
        steps: list | None = []
        while i < n:
            line = lines[i]
            i += 1
            hit = memo.get(line)
            if hit is not None:  # a statement seen before: its words are known good, only attach it
                try:
                    hit[0](*hit[1])
                except DefsSyntaxError:  # attach steps check before they change anything: again, placed
                    self.lineno = base + i
                    self.line = self.stmt = line
                    self.comment = None
                    hit[0](*hit[1])
                if steps is not None:
                    steps.append((hit[0], hit[1], i - 1))
                continue
            # edit/label/trigger/complete only need their first two words; long values are not split
            words = line.split(None, 2)
            if not words:
                continue
            kw = words[0]
            if kw[0] == "#":
                continue
            self.lineno = base + i
            if "#" in line or ";" in line or "\\" in line:
                if kw in ("trigger", "complete") and line.rstrip().endswith("\\"):  # only these continue
                    while line.rstrip().endswith("\\") and i < n:
                        line = line.rstrip()[:-1].rstrip() + " " + lines[i].strip()
                        i += 1
                self.line = line
                self._slow(line)
                self.comment = None
                steps = None
                continue
            self.line = line
            self.stmt = line
            fn = h.get(kw)
            if fn is None:
                if self._ignorable():
                    steps = None
                    continue
                raise self.unknown(kw)
            if kw not in raw_kw and len(words) == 3:
                words = _words(line) if ("'" in line or '"' in line) else line.split()
            fn(words, line)
            if steps is not None:
                hit = memo.get(line)
                if hit is None:
                    steps = None
                else:
                    steps.append((hit[0], hit[1], i - 1))
        return steps

    def _chunks(self, chunks: Iterable[str]) -> tuple[int, str]:
        """A big text in chunks of one task each (its line and the lines up to the next task). Big suites
        repeat the same task text over and over (only the place differs): a chunk seen before is built
        again straight from its remembered steps, without looking at its lines. Returns the number of
        lines and the last one."""
        cmemo: dict[str, Any] = {}
        seen: dict[str, list] = {}
        base = 0
        carry = ""
        last = ""
        rec = None
        for chunk in chunks:
            if carry:
                chunk, carry = carry + chunk, ""
            rec = cmemo.get(chunk)
            if rec is not None:
                self._replay(rec, chunk, base)
                base += rec[0]
                continue
            lines = chunk.split("\n")
            if lines[-1].rstrip().endswith("\\"):  # a continued trigger line: keep it with what follows
                carry = chunk + "\n"
                continue
            steps = self._lines(lines, base)
            last = lines[-1]
            base += len(lines)
            if steps is not None and len(cmemo) < MEMO_MAX:
                first = seen.get(chunk)
                if first is None:  # remember it on its second occurrence: most chunks of a suite repeat
                    seen[chunk] = steps
                else:
                    del seen[chunk]
                    cmemo[chunk] = (len(lines), _compile_chunk(steps))
        if carry:
            lines = carry[:-1].split("\n")
            self._lines(lines, base)
            base += len(lines)
            last = lines[-1]
        elif rec is not None:
            last = chunk.rsplit("\n", 1)[-1]
        return base, last

    def _replay(self, rec: tuple, chunk: str, base: int) -> None:
        """Build a remembered chunk again. On an error (its checks depend on where it is), the failing
        step runs once more with its own line number and text, so the error names them."""
        self.comment = None
        spec = rec[1]
        done = -1
        try:
            fast = spec[0]
            if fast is not None:
                name, variables, exprs, events, meters, labels, tail = fast
                done = 0
                self._task(name)
                t = self.node
                _fill(t, variables, exprs, events, meters, labels)
            else:
                tail = spec[1]
            for fn, args, k in tail:
                done = k
                fn(*args)
        except DefsSyntaxError:
            lines = chunk.split("\n")
            steps = spec[1]
            for fn, args, k in steps:
                if k == done:
                    self.lineno = base + k + 1
                    self.line = self.stmt = lines[k]
                    fn(*args)
            raise

    def _dispatch(self, stmt: str, comment: str | None) -> None:
        words = _words(stmt)
        if not words:
            return
        self.stmt = stmt
        self.comment = comment
        fn = self.h.get(words[0])
        if fn is None:
            if self._ignorable():
                return
            raise self.unknown(words[0])
        fn(words, stmt)

    def _slow(self, text: str) -> None:
        """A line with ';', '#' or quotes: split statements and the trailing comment."""
        while True:
            first = text.split(None, 1)
            if not first or first[0].startswith("#"):
                return
            if first[0] in ("edit", "label"):
                stmt, comment, rest = _split_valued(text)
            else:
                stmt, comment, rest = _scan_one(text)
            self._dispatch(stmt, comment)
            if rest is None:
                return
            text = rest

    def _ignorable(self) -> bool:
        """ecFlow ignores unknown keywords inside an alias and, in state files, outside suites."""
        return isinstance(self.node, Alias) or (self.state_form and self.node is None and not self.stack)

    def unknown(self, word: str) -> DefsSyntaxError:
        where = f" in {self.node.kind} {self.node.get_abs_node_path()}" if self.node is not None else ""
        return self.error(f"unexpected keyword {word!r}{where}", got=word,
                          expected="a definition keyword (suite, family, task, edit, trigger, ...)")

    def after_parse(self) -> None:
        pass

    # ----------------------------------------------------------------- helpers
    def remember(self, fn: Any, args: tuple) -> None:
        """Let later occurrences of the current (plain) statement skip straight to ``fn(*args)``."""
        if self.comment is None and self.stmt is self.line and len(self.memo) < MEMO_MAX:
            self.memo[self.line] = (fn, args)

    def target(self, keyword: str) -> Node:
        n = self.node
        if n is None:
            raise self.error(f"'{keyword}' outside of a suite", got=keyword, expected="'suite' or 'extern'")
        if keyword in n._not_allowed:
            raise self.error(f"'{keyword}' is not allowed on a {n.kind} ({n.get_abs_node_path()})", got=keyword)
        return n

    def name(self, words: list[str], i: int, what: str) -> str:
        if len(words) <= i:
            raise self.expect(f"a {what} name", "")
        name = words[i]
        if name not in _GOOD_NAMES and not _good_name(name):
            raise self.error(f"invalid {what} name {name!r}: expected [A-Za-z0-9_][A-Za-z0-9_.]*", got=name,
                             expected=f"a {what} name")
        return name

    def integer(self, words: list[str], i: int, what: str) -> int:
        if len(words) <= i:
            raise self.expect(what, "")
        w = words[i]
        try:
            return int(w)
        except ValueError:
            raise self.expect(what, w) from None

    def no_more(self, words: list[str], count: int) -> None:
        if len(words) > count:
            raise self.error(f"unexpected {words[count]!r} after '{' '.join(words[:count])}'", got=words[count],
                             expected="end of statement")

    def attr(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except (ValueError, TypeError, KeyError) as e:
            raise self.error(str(e), got=self.stmt.strip()) from None

    def node_state(self, node: Node) -> None:
        """Apply a node line's trailing state comment (checkpoint form)."""
        c = self.comment
        if not c or not self.state_form:
            return
        if "abort<:" in c:
            a, _, rest = c.partition("abort<:")
            reason, _, after = rest.partition(">abort")
            if isinstance(node, Task):
                node.abort_reason = reason
            c = a + " " + after
        for item in c.split():
            key, sep, val = item.partition(":")
            if not sep:
                continue
            if key == "state" and val:
                node.state = NState[val]
            elif key == "suspended":
                node.suspended = val == "1"
            elif key == "flag":
                node.flags = {f for f in val.split(",") if f} or None
            elif key == "sc":
                node.state_change = int(val)
            elif key == "begun" and isinstance(node, Suite):
                node.begun = val == "1"
            elif isinstance(node, Task):
                if key == "try":
                    node.try_no = int(val)
                elif key == "passwd":
                    node.password = val
                elif key == "rid":
                    node.rid = val
                elif key == "alias_no":
                    node.alias_no = int(val)

    def attr_state(self, a: Any) -> None:
        c = self.comment
        if not c or not self.state_form:
            return
        c = c.strip()
        if not c:
            return
        try:
            _apply_attr_state(a, c)
        except (ValueError, KeyError, IndexError) as e:
            raise self.error(f"bad state comment {c!r}: {e}", got=c) from None

    # ----------------------------------------------------------------- structure
    def k_suite(self, words: list[str], stmt: str) -> None:
        if self.stack:
            top = self.stack[-1]
            raise self.expect("'endfamily'" if isinstance(top, Family) else "'endsuite'", "suite")
        name = self.name(words, 1, "suite")
        s = Suite._make(name)  # words after the name are ignored, as ecFlow does
        if name in self.defs._index:
            raise self.error(f"duplicate suite {name!r}", got=name)
        self.defs.add_suite(s)
        self.stack.append(s)
        self.node = s
        self.task_of_alias = None
        self.node_state(s)

    def k_family(self, words: list[str], stmt: str) -> None:
        if not self.stack:
            raise self.error("'family' outside of a suite", got="family", expected="'suite'")
        name = _intern(self.name(words, 1, "family"))  # words after the name are ignored, as ecFlow does
        self.remember(self._family, (name,))
        self._family(name)

    def _family(self, name: str) -> None:
        if not self.stack:
            raise self.error("'family' outside of a suite", got="family", expected="'suite'")
        c = self.stack[-1]
        if c.find_child(name) is not None:
            raise self.error(f"duplicate node {name!r} in {c.get_abs_node_path()}", got=name)
        f = Family._make(name)
        f.parent = c
        c.children.append(f)
        if c._index is not None:
            c._index[name] = f
        self.stack.append(f)
        self.node = f
        self.task_of_alias = None
        self.node_state(f)

    def k_task(self, words: list[str], stmt: str) -> None:
        stack = self.stack
        if not stack:
            raise self.error("'task' outside of a suite", got="task", expected="'suite'")
        if len(words) < 2:  # words after the name are ignored, as ecFlow does
            raise self.expect("a task name", "")
        name = words[1]
        if name not in _GOOD_NAMES and not _good_name(name):
            self.name(words, 1, "task")
        self.remember(self._task, (name,))
        self._task(name)

    def _task(self, name: str) -> None:
        stack = self.stack
        if not stack:
            raise self.error("'task' outside of a suite", got="task", expected="'suite'")
        c = stack[-1]
        idx = c._index
        if idx is None:  # find_child's name index, made at once: big families add a task per statement
            idx = c._index = {ch.name: ch for ch in c.children}
        if name in idx:
            raise self.error(f"duplicate node {name!r} in {c.get_abs_node_path()}", got=name)
        t = _new(Task)
        t._init(name)
        t.parent = c
        c.children.append(t)
        idx[name] = t
        self.node = t
        self.task_of_alias = None
        if self.comment:
            self.node_state(t)

    def k_endtask(self, words: list[str], stmt: str) -> None:
        if not isinstance(self.node, Task) or isinstance(self.node, Alias):
            raise self.error("'endtask' without a task", got="endtask", expected="a definition keyword")
        self.node = self.stack[-1] if self.stack else None

    def k_endfamily(self, words: list[str], stmt: str) -> None:
        self.remember(self._endfamily, ())
        self._endfamily()

    def _endfamily(self) -> None:
        if not self.stack or not isinstance(self.stack[-1], Family):
            exp = "'endsuite'" if self.stack else "'suite'"
            raise self.expect(exp, "endfamily")
        self.stack.pop()
        self.node = self.stack[-1]
        self.task_of_alias = None

    def k_endsuite(self, words: list[str], stmt: str) -> None:
        if not self.stack:
            raise self.expect("'suite'", "endsuite")
        # ecFlow accepts 'endsuite' with families still open: it closes them all
        self.stack.clear()
        self.node = None
        self.task_of_alias = None

    def k_alias(self, words: list[str], stmt: str) -> None:
        owner = self.task_of_alias or self.node
        if not isinstance(owner, Task) or isinstance(owner, Alias):
            raise self.error("'alias' must follow a task", got="alias")
        name = self.name(words, 1, "alias")
        a = Alias._make(name)
        owner.add_alias(a)
        self.task_of_alias = owner
        self.node = a
        self.node_state(a)

    def k_endalias(self, words: list[str], stmt: str) -> None:
        if isinstance(self.node, Alias):
            self.node = self.task_of_alias
        elif not self._ignorable() and not (self.state_form and isinstance(self.node, Task)):
            raise self.error("'endalias' without an alias", got="endalias")

    def k_extern(self, words: list[str], stmt: str) -> None:
        if self.stack or self.node is not None:
            raise self.error("'extern' is only allowed at the top of the file, outside suites", got="extern",
                             expected="a definition keyword of " + (self.node.kind if self.node else "the suite"))
        if len(words) < 2:
            raise self.expect("a path after 'extern'", "")
        self.defs.add_extern(words[1])

    def k_defs_state(self, words: list[str], stmt: str) -> None:
        if self.stack or self.node is not None:
            raise self.error("'defs_state' is only allowed outside suites", got="defs_state")
        if len(words) < 2:
            raise self.expect("'defs_state STATE|MIGRATE|DEFS ...'", "defs_state")
        self.state_form = True
        for item in words[1:]:
            key, sep, val = item.partition(":")
            if not sep:
                continue
            if key in ("state", "state>") and val:
                self.defs.state = NState[val]
            elif key == "server_state" and val:
                self.defs.server_state = SState[val]
            elif key == "flag":
                self.defs.flags = {f for f in val.split(",") if f} or None
            elif key == "state_change" and val:
                self.defs.state_change = int(val)
            elif key == "modify_change" and val:
                self.defs.modify_change = int(val)

    def k_history(self, words: list[str], stmt: str) -> None:
        if self.node is not None:
            raise self.unknown("history")

    def k_calendar(self, words: list[str], stmt: str) -> None:
        n = self.node
        if not isinstance(n, Suite):
            raise self.error("'calendar' is only allowed on a suite", got="calendar")
        if len(words) < 2:
            raise self.expect("'calendar key:value ...'", "calendar")
        # values may hold spaces ('initTime:2026-Nov-22 03:56:07'): keys are words starting with a letter
        body = stmt.split(None, 1)[1] if len(stmt.split(None, 1)) > 1 else ""
        cal = {m.group(1): m.group(2).strip() for m in _CAL_ITEM.finditer(body)}
        n.calendar = cal

    # ----------------------------------------------------------------- variables and expressions
    def k_edit(self, words: list[str], stmt: str) -> None:
        if len(words) < 3:
            raise self.expect("'edit NAME value'", stmt.strip())
        name = words[1]
        if len(words) == 3:  # [edit, NAME, the rest of the line]
            value = words[2].rstrip()
            if value[0] in "'\"":
                value = _strip_quotes(value)
        else:
            value = _strip_quotes(_rest(stmt, 2))
        if len(value) < 32:
            value = _intern(value)
        node = self.node
        if node is None:
            if self.stack:
                raise self.error("internal: no current node")
            var = Variable(_intern(name), value)
            if self.comment is not None and self.comment.strip() == "server":
                sv = self.defs.server_variables
                if sv is None:
                    sv = self.defs.server_variables = []
                sv.append(var)
            else:
                self.defs.add_variable(name, value)
            return
        if not _good_name(name) and not isinstance(node, Alias):
            raise self.error(f"invalid variable name {name!r}", got=name, expected="a variable name")
        name = _intern(name)
        if _good_name(name):
            self.remember(self._edit, (name, value))
        self._add_variable(node, name, value)

    def _edit(self, name: str, value: str) -> None:
        node = self.node
        if node is None:  # the same text at the top level: a definition (or server) variable
            self.k_edit(self.stmt.split(None, 2), self.stmt)
        else:
            self._add_variable(node, name, value)

    def _add_variable(self, node: Node, name: str, value: str) -> None:
        var = _new_variable(name, value)  # name interned by k_edit
        vs = node.variables
        if vs is None:
            node.variables = [var]
            return
        # duplicate check through a name -> index map of the node being filled (suites with hundreds of
        # variables would otherwise cost O(n^2))
        if self._vnode is not node:
            self._vnode = node
            self._vindex = {v.name: k for k, v in enumerate(vs)}
        k = self._vindex.get(name)
        if k is not None and k < len(vs) and vs[k].name == name:
            vs[k] = var  # ecFlow: a duplicate replaces the earlier value
            return
        self._vindex[var.name] = len(vs)
        vs.append(var)

    def _expr(self, words: list[str], stmt: str, keyword: str) -> None:
        node = self.target(keyword)
        text = _rest(stmt, 1)
        if "  " in text or "\t" in text:
            text = " ".join(text.split())  # as ecFlow prints it; expressions have no string literals
        if not text:
            raise self.expect(f"an expression after '{keyword}'", "")
        if "\\" in text:  # joined continuations have lost theirs: this one is followed by more (a comment)
            raise self.error(f"a '\\' in a {keyword} may only end the line, to continue the expression on the "
                             "next one", got=text, expected=f"a {keyword} expression")
        cur = node.trigger if keyword == "trigger" else node.complete
        if words[1] in ("-a", "-o"):
            part = " ".join(_rest(stmt, 2).split())
            if not part:
                raise self.expect(f"an expression after '{keyword} {words[1]}'", "")
            join = "and" if words[1] == "-a" else "or"
            if cur is None:
                raise self.error(f"'{keyword} {words[1]}' needs a '{keyword}' before it (the first expression "
                                 f"has no -a/-o)", got=words[1], expected=f"'{keyword} EXPRESSION'")
            cur.add_part(part, join)
            return
        text = _intern(text)
        if self.comment is None:
            self.remember(self._set_expr, (keyword, text))
        self._set_expr(keyword, text, node)

    def _set_expr(self, keyword: str, text: str, node: Node | None = None) -> None:
        if node is None:
            node = self.target(keyword)
        cls = Trigger if keyword == "trigger" else Complete
        if (node.trigger if keyword == "trigger" else node.complete) is not None:
            raise self.error(f"{node.get_abs_node_path()} already has a {keyword}; add parts with "
                             f"'{keyword} -a' or '{keyword} -o'", got=keyword)
        e = _new_expr(cls, text)  # text interned by _expr
        if keyword == "trigger":
            node.trigger = e
        else:
            node.complete = e
        if self.comment and self.state_form and self.comment.strip() == "free":
            e.free = True

    def k_trigger(self, words: list[str], stmt: str) -> None:
        self._expr(words, stmt, "trigger")

    def k_complete(self, words: list[str], stmt: str) -> None:
        self._expr(words, stmt, "complete")

    # ----------------------------------------------------------------- event / meter / label
    def k_event(self, words: list[str], stmt: str) -> None:
        node = self.target("event")
        # event NUMBER [NAME] [set|clear] | event NAME [set|clear]; ecFlow ignores anything after that
        toks = words[1:]
        if not toks:
            raise self.expect("'event [number] [name] [set|clear]'", stmt.strip())
        number: int | None = None
        name = ""
        k = 1
        if toks[0].isdecimal():
            number = int(toks[0])
            if len(toks) > 1 and toks[1] not in ("set", "clear"):
                name = toks[1]
                k = 2
        else:
            name = toks[0]
        initial = len(toks) > k and toks[k] == "set"
        if name and not _good_name(name):
            raise self.error(f"invalid event name {name!r}", got=name, expected="an event name")
        name = _intern(name)
        self.remember(self._event, (number, name, initial))
        self._event(number, name, initial, node)

    def _event(self, number: int | None, name: str, initial: bool, node: Node | None = None) -> None:
        if node is None:
            node = self.target("event")
        ev = _new_event(number, name, initial)  # name interned by k_event
        for e in node.events or ():
            # as ecFlow: named events clash by name, unnamed ones by number ('event 1' + 'event 1 x' is fine)
            if (name and e.name == name) or (not name and not e.name and e.number == number):
                raise self.error(f"duplicate event {ev.ident!r} on {node.get_abs_node_path()}", got=ev.ident)
        if node.events is None:
            node.events = [ev]
        else:
            node.events.append(ev)
        if self.comment:
            self.attr_state(ev)

    def k_meter(self, words: list[str], stmt: str) -> None:
        node = self.target("meter")
        if len(words) < 4:  # words after the colour change are ignored, as ecFlow does
            raise self.expect("'meter NAME min max [colour_change]'", stmt.strip())
        name = self.name(words, 1, "meter")
        try:
            mn = int(words[2])
            mx = int(words[3])
            cc = int(words[4]) if len(words) > 4 else mx
        except ValueError:
            bad = next((w for w in words[2:] if not w.lstrip("-").isdecimal()), words[2])
            raise self.expect("integers 'meter NAME min max [colour_change]'", bad) from None
        if mn > mx:
            raise self.error(f"meter {name}: min {mn} is greater than max {mx}", got=words[2])
        if not mn <= cc <= mx:
            raise self.error(f"meter {name}: colour change {cc} is outside {mn}..{mx}", got=words[4])
        name = _intern(name)
        self.remember(self._meter, (name, mn, mx, cc))
        self._meter(name, mn, mx, cc, node)

    def _meter(self, name: str, mn: int, mx: int, cc: int, node: Node | None = None) -> None:
        if node is None:
            node = self.target("meter")
        for m in node.meters or ():
            if m.name == name:
                raise self.error(f"duplicate meter {name!r} on {node.get_abs_node_path()}", got=name)
        m = _new_meter(name, mn, mx, cc)  # name interned by k_meter
        if node.meters is None:
            node.meters = [m]
        else:
            node.meters.append(m)
        if self.comment:
            self.attr_state(m)

    def k_label(self, words: list[str], stmt: str) -> None:
        node = self.target("label")
        if len(words) < 2:
            raise self.expect("'label NAME \"value\"'", stmt.strip())
        name = self.name(words, 1, "label")
        value = _rest(stmt, 2)
        if not value:
            raise self.expect(f"a value after 'label {name}' (\"\" for empty)", "")
        if value and value[0] in "'\"":
            q = value[0]
            end = value.rfind(q)
            value = value[1:end] if end > 0 else value[1:]
        value = unescape_label(value) if "\\" in value else _intern(value) if len(value) < 32 else value
        name = _intern(name)
        self.remember(self._label, (name, value))
        self._label(name, value, node)

    def _label(self, name: str, value: str, node: Node | None = None) -> None:
        if node is None:
            node = self.target("label")
        for lb in node.labels or ():
            if lb.name == name:
                raise self.error(f"duplicate label {name!r} on {node.get_abs_node_path()}", got=name)
        lb = _new_label(name, value)  # name interned by k_label
        if node.labels is None:
            node.labels = [lb]
        else:
            node.labels.append(lb)
        if self.comment and self.state_form:
            c = self.comment.strip()
            if len(c) >= 2 and c[0] == '"' and c[-1] == '"':
                lb.new_value = unescape_label(c[1:-1])

    # ----------------------------------------------------------------- limits
    def k_limit(self, words: list[str], stmt: str) -> None:
        node = self.target("limit")
        if len(words) < 3:  # words after the size are ignored, as ecFlow does
            raise self.expect("'limit NAME integer'", stmt.strip())
        name = self.name(words, 1, "limit")
        lim = self.integer(words, 2, "the limit size (an integer)")
        if node.find_limit(name) is not None:
            raise self.error(f"duplicate limit {name!r} on {node.get_abs_node_path()}", got=name)
        lm = Limit(_intern(name), lim)
        node._append("limits", lm)
        self.attr_state(lm)

    def k_inlimit(self, words: list[str], stmt: str) -> None:
        node = self.target("inlimit")
        toks = words[1:]
        only = sub = False
        while toks and toks[0] in ("-n", "-s"):
            if toks.pop(0) == "-n":
                only = True
            else:
                sub = True
        if only and sub:
            raise self.error("inlimit: -n and -s can not be used together", got="-s")
        if not toks:
            raise self.expect("'inlimit [-n] [-s] [path:]NAME [tokens]'", stmt.strip())
        ref = toks[0]
        path, _, name = ref.rpartition(":")
        if not name or not _NAME_RE.match(name):
            raise self.error(f"invalid limit name {name!r}", got=ref, expected="[path:]limit name")
        tokens = 1
        if len(toks) >= 2:  # words after the tokens are ignored, as ecFlow does
            try:
                tokens = int(toks[1])
                if not -2**31 <= tokens < 2**31:
                    raise ValueError
            except ValueError:
                raise self.expect("the number of tokens (an integer)", toks[1]) from None
        name, path = _intern(name), _intern(path)
        self.remember(self._inlimit, (name, path, tokens, only, sub))
        self._inlimit(name, path, tokens, only, sub, node)

    def _inlimit(self, name: str, path: str, tokens: int, only: bool, sub: bool, node: Node | None = None) -> None:
        if node is None:
            node = self.target("inlimit")
        for il in node.inlimits or ():
            if il.name == name and il.path == path:
                ref = f"{path}:{name}" if path else name
                raise self.error(f"duplicate inlimit {ref!r} on {node.get_abs_node_path()}", got=ref)
        il = InLimit.__new__(InLimit)
        il.name, il.path, il.tokens = name, path, tokens
        il.limit_this_node_only, il.limit_submission, il.incremented = only, sub, False
        node._append("inlimits", il)
        if self.comment:
            self.attr_state(il)

    # ----------------------------------------------------------------- repeat
    def k_repeat(self, words: list[str], stmt: str) -> None:
        node = self.target("repeat")
        if len(words) < 2:
            raise self.expect("a repeat kind (date, datelist, integer, enumerated, string, day, datetime)", "")
        kind = words[1]
        if node.repeat is not None:
            raise self.error(f"{node.get_abs_node_path()} already has a repeat", got="repeat")
        if node.crons:
            raise self.error("a node can not have both a cron and a repeat", got="repeat")
        args = words[2:]
        if kind == "day":
            self.no_more(words, 3)
            r: Any = self.attr(RepeatDay, self.integer(words, 2, "the day step (an integer)"))
        elif kind in ("integer", "date", "datetime"):
            if len(args) not in (3, 4):
                raise self.expect(f"'repeat {kind} NAME start end [step]'", stmt.strip())
            name = self.name(words, 2, "repeat")
            if kind == "datetime":
                r = self.attr(RepeatDateTime, name, args[1], args[2], *(args[3:]))
            else:
                nums = [self.integer(words, k, f"an integer for repeat {kind}") for k in range(3, len(words))]
                r = self.attr(RepeatInteger if kind == "integer" else RepeatDate, name, *nums)
        elif kind in ("enumerated", "string", "datelist"):
            name = self.name(words, 2, "repeat")
            vals = [_strip_quotes(w) for w in args[1:]]
            if not vals:
                raise self.expect(f"at least one value for repeat {kind} {name}", "")
            cls = {"enumerated": RepeatEnumerated, "string": RepeatString, "datelist": RepeatDateList}[kind]
            r = self.attr(cls, name, vals)
        elif kind == "file":
            return  # accepted and ignored, as ecFlow does
        else:
            raise self.expect("a repeat kind (date, datelist, integer, enumerated, string, day, datetime)", kind)
        node.repeat = r
        if self.comment and self.state_form:
            c = self.comment.strip()
            if c:
                self.attr(r.set_value_from_state, c)

    # ----------------------------------------------------------------- time dependencies
    def _series(self, words: list[str], stmt: str, kw: str) -> TimeSeries:
        args = words[1:]
        if len(args) > 3 and all(":" in a for a in args[:3]):
            args = args[:3]  # ecFlow ignores what follows a complete start/finish/increment series
        if len(args) not in (1, 3):
            raise self.expect(f"'{kw} [+]HH:MM' or '{kw} [+]HH:MM HH:MM HH:MM'", stmt.strip())
        ts = self.attr(TimeSeries, " ".join(args))
        if ts.finish is not None and ts.incr.minutes() > ts.finish.minutes() - ts.start.minutes() \
                and ts.finish != ts.start:
            raise self.error(f"{kw}: increment {ts.incr} is longer than {ts.start}..{ts.finish}", got=args[2])
        return ts

    def k_time(self, words: list[str], stmt: str) -> None:
        node = self.target("time")
        t = Time(self._series(words, stmt, "time"))
        node._append("times", t)
        self.attr_state(t)

    def k_today(self, words: list[str], stmt: str) -> None:
        node = self.target("today")
        t = Today(self._series(words, stmt, "today"))
        node._append("todays", t)
        self.attr_state(t)

    def k_date(self, words: list[str], stmt: str) -> None:
        node = self.target("date")
        if len(words) < 2:
            raise self.expect("'date DD.MM.YYYY' (* for any)", stmt.strip())
        d = self.attr(Date, words[1])
        node._append("dates", d)
        self.attr_state(d)

    def k_day(self, words: list[str], stmt: str) -> None:
        node = self.target("day")
        if len(words) < 2:
            raise self.expect("'day sunday|monday|...'", stmt.strip())
        d = self.attr(Day, words[1])
        node._append("days", d)
        self.attr_state(d)

    def k_cron(self, words: list[str], stmt: str) -> None:
        node = self.target("cron")
        if node.repeat is not None:
            raise self.error("a node can not have both a repeat and a cron", got="cron")
        c = self.attr(Cron.parse, words[1:])
        node._append("crons", c)
        self.attr_state(c)

    def k_late(self, words: list[str], stmt: str) -> None:
        node = self.target("late")
        if node.late is not None:
            raise self.error(f"{node.get_abs_node_path()} already has a late attribute", got="late")
        opts: dict[str, str] = {}
        toks = words[1:]
        if not toks or len(toks) % 2:
            raise self.expect("'late [-s +HH:MM] [-a HH:MM] [-c [+]HH:MM]'", stmt.strip())
        for k in range(0, len(toks), 2):
            flag, val = toks[k], toks[k + 1]
            if flag not in ("-s", "-a", "-c") or flag in opts:
                raise self.expect("-s, -a or -c (each once)", flag)
            opts[flag] = val
        lt = self.attr(Late, opts.get("-s"), opts.get("-a"), opts.get("-c"))
        node.late = lt
        self.attr_state(lt)

    def k_defstatus(self, words: list[str], stmt: str) -> None:
        node = self.target("defstatus")
        if len(words) != 2 or words[1] not in DState.__members__:
            raise self.expect("a state (complete, unknown, queued, aborted, submitted, active, suspended)",
                              words[1] if len(words) > 1 else "")
        if getattr(self, "_defstatus_seen", None) is node:
            raise self.error(f"{node.get_abs_node_path()} already has a defstatus", got="defstatus")
        self._defstatus_seen = node
        node.defstatus = DState[words[1]]

    def k_clock(self, words: list[str], stmt: str) -> None:
        node = self.target("clock")
        if not isinstance(node, Suite):
            raise self.error(f"'clock' is only allowed on a suite, not on {node.kind} {node.get_abs_node_path()}",
                             got="clock")
        if node.clock is not None:
            raise self.error(f"suite {node.name} already has a clock", got="clock")
        node.clock = self.attr(Clock.parse, words[1:])

    def k_endclock(self, words: list[str], stmt: str) -> None:
        node = self.target("endclock")
        if not isinstance(node, Suite):
            raise self.error("'endclock' is only allowed on a suite", got="endclock")
        if node.endclock is not None:
            raise self.error(f"suite {node.name} already has an endclock", got="endclock")
        c = self.attr(Clock.parse, words[1:], True)
        node.endclock = EndClock(False, c.day, c.month, c.year, c.gain, c.positive_gain, c.start_stop_with_server)

    def k_autocancel(self, words: list[str], stmt: str) -> None:
        node = self.target("autocancel")
        if len(words) < 2:  # words after the time are ignored, as ecFlow does
            raise self.expect("'autocancel [+]HH:MM' or 'autocancel DAYS'", stmt.strip())
        if node.autoarchive is not None or node.autocancel is not None:
            raise self.error("a node can have only one of autocancel / autoarchive", got="autocancel")
        node.autocancel = self.attr(Autocancel, words[1])

    def k_autoarchive(self, words: list[str], stmt: str) -> None:
        node = self.target("autoarchive")
        if len(words) < 2:  # words other than -i after the time are ignored, as ecFlow does
            raise self.expect("'autoarchive [+]HH:MM|DAYS [-i]'", stmt.strip())
        if node.autoarchive is not None or node.autocancel is not None:
            raise self.error("a node can have only one of autocancel / autoarchive", got="autoarchive")
        node.autoarchive = self.attr(Autoarchive, words[1], True, len(words) > 2 and words[2] == "-i")

    def k_autorestore(self, words: list[str], stmt: str) -> None:
        node = self.target("autorestore")
        if node.autorestore is not None:
            raise self.error(f"{node.get_abs_node_path()} already has an autorestore", got="autorestore")
        if len(words) < 2:
            raise self.expect("at least one path after 'autorestore'", "")
        node.autorestore = Autorestore(words[1:])

    def k_verify(self, words: list[str], stmt: str) -> None:
        node = self.target("verify")
        if len(words) < 2 or ":" not in words[1]:
            raise self.expect("'verify STATE:COUNT'", stmt.strip())
        st, _, cnt = words[1].partition(":")
        if not cnt.isdecimal():
            raise self.expect("an integer count after 'verify STATE:'", cnt)
        if any(v.state_name == st for v in node.verifies or ()):
            raise self.error(f"duplicate verify for state {st!r}", got=words[1])
        v = self.attr(Verify, st, int(cnt))
        node._append("verifies", v)
        self.attr_state(v)

    def k_zombie(self, words: list[str], stmt: str) -> None:
        node = self.target("zombie")
        if len(words) < 2 or words[1].count(":") != 3:
            raise self.expect("'zombie TYPE:ACTION:CHILD_CMDS:LIFETIME'", stmt.strip())
        z = self.attr(ZombieAttr, words[1])
        if any(x.zombie_type == z.zombie_type for x in node.zombies or ()):
            raise self.error(f"duplicate zombie type {z.zombie_type!r}", got=words[1])
        node._append("zombies", z)

    def k_queue(self, words: list[str], stmt: str) -> None:
        node = self.target("queue")
        name = self.name(words, 1, "queue")
        if len(words) < 3:
            raise self.expect(f"at least one value for queue {name}", "")
        if node.find_queue(name) is not None:
            raise self.error(f"duplicate queue {name!r}", got=name)
        q = Queue(name, [_strip_quotes(w) for w in words[2:]])
        node._append("queues", q)
        self.attr_state(q)

    def k_generic(self, words: list[str], stmt: str) -> None:
        node = self.target("generic")
        name = self.name(words, 1, "generic")
        if node.find_generic(name) is not None:
            raise self.error(f"duplicate generic {name!r}", got=name)
        node._append("generics", Generic(name, words[2:]))

    def _options(self, words: list[str], stmt: str, kw: str, cls: type) -> None:
        node = self.target(kw)
        toks = words[1:]
        if "--name" not in toks or toks.index("--name") + 1 >= len(toks):
            raise self.expect(f"'{kw} --name NAME ...'", stmt.strip())
        k = toks.index("--name")
        name = toks[k + 1]
        opts = toks[:k] + toks[k + 2:]
        node._append(kw + "s", cls(name, opts))

    def k_aviso(self, words: list[str], stmt: str) -> None:
        self._options(words, stmt, "aviso", Aviso)

    def k_mirror(self, words: list[str], stmt: str) -> None:
        self._options(words, stmt, "mirror", Mirror)


def _apply_attr_state(a: Any, c: str) -> None:
    if isinstance(a, Event):
        a.value = c == "set" if c in ("set", "clear") else a.value
    elif isinstance(a, Meter):
        a.value = int(c)
    elif isinstance(a, Limit):
        bits = c.split()
        a.value = int(bits[0])
        a.paths = bits[1:] or None
    elif isinstance(a, InLimit):
        a.incremented = c == "incremented:1"
    elif isinstance(a, Queue):
        bits = c.split()
        a.index = int(bits[0])
        a.states = bits[1:] or None
    elif isinstance(a, Verify):
        a.actual = int(c.split()[0])
    elif isinstance(a, Late):
        a.is_late = c == "late"
    elif isinstance(a, (Time, Today, Cron, Date, Day)):
        for item in c.split():
            if item == "free":
                a.free = True
            elif item == "expired" and hasattr(a, "expired"):
                a.expired = True
            elif item.startswith("next:") and hasattr(a, "next_slot"):
                a.next_slot = int(item[5:])
