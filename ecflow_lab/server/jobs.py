"""Job creation: locate a task's ``.ecf`` script, pre-process it as ecFlow does, run the job commands.

Pre-processing follows ``EcfFile.cpp``: directives start at column 0 with the micro character (default
``%``): ``%include <f>`` / ``"f"`` / ``/abs`` / ``%VAR%``, ``%includeonce``, ``%includenopp``,
``%manual``..``%end`` (dropped from the job, kept as the manual), ``%comment``..``%end`` (dropped),
``%nopp``..``%end`` (copied verbatim), ``%ecfmicro X``. Variables: ``%VAR%``, ``%VAR:default%`` and ``%%``
for a literal micro character. An undefined variable or a missing include raises :class:`PreprocessError`
naming the file and line, and the caller aborts the task instead of submitting it.

Nothing here knows about the definition tree: variables come through a ``lookup(name) -> str | None``
callable, so the same code serves the server, ``edit_script`` and tests.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

Lookup = Callable[[str], "str | None"]

MAX_INCLUDES_OF_ONE_FILE = 100
MAX_SUBSTITUTION_DEPTH = 1000


class PreprocessError(RuntimeError):
    """A script that cannot become a job: names the file, the line and what was expected."""

    def __init__(self, file: str, line: int, message: str) -> None:
        self.file, self.line, self.message = file, line, message
        super().__init__(f"{file}:{line}: {message}")


class ScriptNotFound(PreprocessError):
    """No ``.ecf`` file for a task in any of the places ecFlow looks."""


@dataclass
class Preprocessed:
    """The result of pre-processing: job text, manual text and every file read (for diagnostics)."""

    job: str
    manual: str
    files: list[str] = field(default_factory=list)


def locate_script(node_path: str, lookup: Lookup) -> Path:
    """The ``.ecf`` file of a task, searched in ecFlow's order.

    1. ``ECF_SCRIPT`` (by default ECF_HOME + path + ECF_EXTN);
    2. ``ECF_FILES``, stripping leading path components (``/o/12/fc/t.ecf``, ``12/fc/t.ecf``, ``fc/t.ecf``,
       ``t.ecf``), or the reverse order with ``ECF_FILES_LOOKUP prune_leaf``;
    3. ``ECF_HOME`` with the same pruning.
    """
    extn = lookup("ECF_EXTN") or ".ecf"
    tried: list[str] = []
    script = lookup("ECF_SCRIPT")
    if script:
        tried.append(script)
        if os.path.isfile(script):
            return Path(script)
    parts = [p for p in node_path.split("/") if p]
    candidates = ["/".join(parts[i:]) for i in range(len(parts))]
    for var in ("ECF_FILES", "ECF_HOME"):
        root = lookup(var)
        if not root:
            continue
        if var == "ECF_FILES" and not os.path.isdir(root):
            root = _node_vars(root, lookup)  # as ecFlow: tried again with its variables replaced
        order = candidates
        if var == "ECF_FILES" and (lookup("ECF_FILES_LOOKUP") or "") == "prune_leaf":
            order = ["/".join(parts[: len(parts) - i]) for i in range(len(parts))]
        for rel in order:
            p = os.path.join(root, rel + extn)
            tried.append(p)
            if os.path.isfile(p):
                return Path(p)
    raise ScriptNotFound(node_path, 0, "no script found; looked for " + ", ".join(tried))


class _State:
    def __init__(self, lookup: Lookup, micro: str, script: Path) -> None:
        self.lookup = lookup
        self.micro = micro
        self.script = script
        self.job: list[str] = []
        self.manual: list[str] = []
        self.counts: dict[str, int] = {}
        self.files: list[str] = []


def substitute(text: str, lookup: Lookup, micro: str = "%", where: tuple[str, int] = ("<text>", 0)) -> str:
    """Replace ``%VAR%`` / ``%VAR:default%`` / ``%%`` in one line, recursively as ecFlow does."""
    if micro not in text:
        return text
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        j = text.find(micro, i)
        if j < 0:
            out.append(text[i:])
            break
        out.append(text[i:j])
        if j + 1 < n and text[j + 1] == micro:
            out.append(micro)
            i = j + 2
            continue
        k = text.find(micro, j + 1)
        if k < 0:   # a lone micro character (e.g. in a comment) is kept, as ecFlow does
            out.append(text[j:])
            break
        token = text[j + 1:k]
        name, sep, default = token.partition(":")
        value = lookup(name) if name else None
        if value is None:
            if sep:
                value = default
            else:
                raise PreprocessError(where[0], where[1], f"undefined variable {micro}{name}{micro}: expected a "
                                      f"variable of the task, its parents or the server, or {micro}{name}:default{micro}")
        if micro in value and value != text:
            depth = getattr(lookup, "_depth", 0)
            if depth > MAX_SUBSTITUTION_DEPTH:
                raise PreprocessError(where[0], where[1], f"variable {name} refers to itself")
            value = _substitute_nested(value, lookup, micro, where, depth + 1)
        out.append(value)
        i = k + 1
    return "".join(out)


def _substitute_nested(value: str, lookup: Lookup, micro: str, where: tuple[str, int], depth: int) -> str:
    def inner(name: str) -> str | None:
        return lookup(name)

    inner._depth = depth  # type: ignore[attr-defined]
    if depth > 50:
        raise PreprocessError(where[0], where[1], "variable substitution does not terminate (recursive variables)")
    return substitute(value, inner, micro, where)


_DOLLAR_VAR = re.compile(r"\$(?:\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))")


def _include_dir(d: str, st: _State) -> str:
    """One ECF_INCLUDE directory with its variables replaced, as ecFlow does: ``$VAR``/``${VAR}`` once, then
    ``%VAR%`` (``edit ECF_INCLUDE $ECF_HOME/include`` or ``%ECF_HOME%/include``); an unknown one is left."""
    if "$" in d:
        d = _DOLLAR_VAR.sub(lambda m: st.lookup(m.group(1) or m.group(2)) or m.group(0), d)
    return _node_vars(d, st.lookup)


def _node_vars(value: str, lookup: Lookup) -> str:
    """``%VAR%`` in a path variable replaced with the node's ECF_MICRO (not a script's %ecfmicro); left as it
    is when a variable is unknown, as ecFlow's variableSubstitution does."""
    micro = lookup("ECF_MICRO") or "%"
    if micro not in value:
        return value
    try:
        return substitute(value, lookup, micro, (value, 0))
    except PreprocessError:
        return value


def _resolve_include(arg: str, st: _State, file: str, lineno: int) -> Path:
    arg = arg.strip()
    if not arg:
        raise PreprocessError(file, lineno, "expected a file name after include")
    if st.micro in arg:
        arg = substitute(arg, st.lookup, st.micro, (file, lineno))
    home = st.lookup("ECF_HOME") or "."
    cands: list[str] = []
    if arg.startswith("<") and arg.endswith(">"):
        name = arg[1:-1]
        for d in (st.lookup("ECF_INCLUDE") or "").split(":"):
            if d:
                cands.append(os.path.join(_include_dir(d, st), name))
        cands.append(os.path.join(home, name))
    elif arg.startswith('"') and arg.endswith('"'):
        name = arg[1:-1]
        if name.startswith("./") or name.startswith("../"):
            cands.append(os.path.join(os.path.dirname(file), name))
        else:
            suite, family = st.lookup("SUITE") or "", st.lookup("FAMILY") or ""
            cands.append(os.path.join(home, suite, family, name))
            cands.append(os.path.join(os.path.dirname(file), name))
            cands.append(os.path.join(home, name))
    elif arg.startswith("/"):
        cands.append(arg)
    else:
        cands.append(os.path.join(os.path.dirname(file), arg))
        cands.append(os.path.join(home, arg))
    for c in cands:
        if os.path.isfile(c):
            return Path(c)
    raise PreprocessError(file, lineno, f"include {arg} not found; looked in " + ", ".join(cands))


def _process(path: Path, st: _State, in_manual: bool = False) -> None:
    key = str(path)
    st.counts[key] = st.counts.get(key, 0) + 1
    if st.counts[key] > MAX_INCLUDES_OF_ONE_FILE:
        raise PreprocessError(key, 0, f"included more than {MAX_INCLUDES_OF_ONE_FILE} times (recursive include?)")
    st.files.append(key)
    try:
        lines = path.read_text(errors="replace").split("\n")
    except OSError as exc:
        raise PreprocessError(key, 0, f"cannot read: {exc.strerror}") from None
    if lines and lines[-1] == "":
        lines.pop()
    mode = "manual" if in_manual else "job"   # job | manual | comment | nopp
    saved_mode = mode
    for lineno, line in enumerate(lines, 1):
        m = st.micro
        if line.startswith(m) and len(line) > 1 and line[1] != m:
            word, _, rest = line[1:].partition(" ")
            word = word.rstrip()
            if mode == "nopp":
                if word == "end":
                    mode = saved_mode
                else:
                    (st.manual if saved_mode == "manual" else st.job).append(line)
                continue
            if mode == "comment":
                if word == "end":
                    mode = saved_mode
                continue
            if word == "end":
                if mode == "manual" and not in_manual:
                    mode = "job"
                    continue
                if mode == "manual":   # an %end closing a manual opened by an includer: ignore
                    continue
                raise PreprocessError(key, lineno, f"{m}end without {m}manual, {m}comment or {m}nopp")
            if word == "manual":
                mode = "manual"
                continue
            if word == "comment":
                saved_mode, mode = mode, "comment"
                continue
            if word == "nopp":
                saved_mode, mode = mode, "nopp"
                continue
            if word == "ecfmicro":
                new = rest.strip()
                if not new:
                    raise PreprocessError(key, lineno, f"{m}ecfmicro needs a character")
                st.micro = new[0]
                continue
            if word in ("include", "includeonce", "includenopp"):
                inc = _resolve_include(rest, st, key, lineno)
                if word == "includeonce" and str(inc) in st.counts:
                    continue
                if word == "includenopp":
                    st.counts[str(inc)] = st.counts.get(str(inc), 0) + 1
                    text = inc.read_text(errors="replace").split("\n")
                    if text and text[-1] == "":
                        text.pop()
                    (st.manual if mode == "manual" else st.job).extend(text)
                    continue
                _process(inc, st, in_manual=(mode == "manual"))
                continue
            if word in ("ecfmicro", "end"):
                continue
            # any other micro-prefixed line (e.g. %VAR% at column 0) is ordinary text
        if mode == "comment":
            continue
        if mode == "nopp":
            (st.manual if saved_mode == "manual" else st.job).append(line)
            continue
        if mode == "manual":
            st.manual.append(line)
            continue
        st.job.append(substitute(line, st.lookup, st.micro, (key, lineno)) if st.micro in line else line)
    if mode in ("comment", "nopp") or (mode == "manual" and not in_manual):
        raise PreprocessError(key, len(lines), f"{st.micro}{mode} is not closed: expected {st.micro}end")


def preprocess(script: str | os.PathLike[str], lookup: Lookup, micro: str | None = None) -> Preprocessed:
    """Pre-process ``script`` into job text; raises :class:`PreprocessError` naming file and line."""
    path = Path(script)
    st = _State(lookup, micro or lookup("ECF_MICRO") or "%", path)
    _process(path, st)
    return Preprocessed("\n".join(st.job) + "\n", "\n".join(st.manual) + ("\n" if st.manual else ""), st.files)


def write_job(path: str, text: str) -> None:
    """Write a job file (creating its folder) and make it executable."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o755)
    os.replace(tmp, path)


def spawn(cmd: str, env: Mapping[str, str] | None = None, cwd: str | None = None) -> subprocess.Popen[bytes]:
    """Start ECF_JOB_CMD / ECF_KILL_CMD / ECF_STATUS_CMD through the shell, detached from the server.

    The job runs in its own session so that it survives a server restart (its child commands wait for the
    server to come back, as with ecFlow).
    """
    return subprocess.Popen(["/bin/sh", "-c", cmd], env=dict(env) if env is not None else None, cwd=cwd,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, close_fds=True)


class JobProcesses:
    """The job commands the server started and has not yet reaped; owned by the server's owner thread."""

    def __init__(self) -> None:
        self._procs: dict[int, tuple[subprocess.Popen[bytes], str, str]] = {}

    def start(self, cmd: str, node_path: str, kind: str, env: Mapping[str, str] | None = None,
              cwd: str | None = None) -> subprocess.Popen[bytes]:
        p = spawn(cmd, env, cwd)
        self._procs[p.pid] = (p, node_path, kind)
        return p

    def reap(self) -> list[tuple[str, str, int]]:
        """``(node_path, kind, returncode)`` of every command that finished since the last call."""
        done = []
        for pid, (p, path, kind) in list(self._procs.items()):
            rc = p.poll()
            if rc is not None:
                del self._procs[pid]
                done.append((path, kind, rc))
        return done

    def __len__(self) -> int:
        return len(self._procs)

    def wait_all(self, timeout: float = 5.0) -> None:
        """Wait for the job *commands* (not the jobs they detached) to return; used when closing."""
        for p, _, _ in list(self._procs.values()):
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.reap()


def quote(s: str) -> str:
    """Shell-quote one word."""
    return shlex.quote(s)
