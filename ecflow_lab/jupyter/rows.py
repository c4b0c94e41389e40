"""The node tree as a flat, columnar row table: what the tree widget keeps in Python and ships to the browser.

One row per node (suite, family, task, alias) in depth-first order; a row never moves, so a delta can name
rows by index. The table is built from a ``Defs`` snapshot (anything shaped like ecflow's Defs: suites with
``nodes``), then follows the suite server's change deltas (see the pinned delta interface). Encoding is
columnar binary: ``int32`` parents, ``uint8`` states/flags/kinds, names as one UTF-8 blob, and the sparse
attributes (events, meters, labels, repeat, tries) as one small JSON object keyed by row.
"""

from __future__ import annotations

import json
import struct
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

STATES: tuple[str, ...] = ("unknown", "complete", "queued", "aborted", "submitted", "active")
STATE_CODE: dict[str, int] = {s: i for i, s in enumerate(STATES)}
KINDS: tuple[str, ...] = ("suite", "family", "task", "alias")
KIND_CODE: dict[str, int] = {k: i for i, k in enumerate(KINDS)}

# flag bits (uint8)
SUSPENDED = 1
REMOVED = 2
FLAG_BITS: dict[str, int] = {"late": 4, "zombie": 8, "killed": 16, "rerun": 32, "message": 64, "archived": 128}

SNAPSHOT_MAGIC = 0x45434631  # "ECF1"
DELTA_MAGIC = 0x45434644  # "ECFD"


def state_code(value: Any) -> int:
    """Map any state spelling (``'complete'``, ``State.complete``, ``'NState::COMPLETE'``) to its code."""
    if value is None:
        return 0
    if isinstance(value, int) and not isinstance(value, bool):
        return value if 0 <= value < len(STATES) else 0
    text = str(getattr(value, "name", value)).lower()
    text = text.rsplit(".", 1)[-1].rsplit(":", 1)[-1]
    if text == "suspended":  # suspended is a flag; its own state is unknown here
        return 0
    return STATE_CODE.get(text, 0)


def _get(obj: Any, *names: str, default: Any = None) -> Any:
    """First present attribute among ``names``; called if it is a method (ecflow's ``name()`` style)."""
    for name in names:
        if hasattr(obj, name):
            value = getattr(obj, name)
            if callable(value) and not isinstance(value, type):
                try:
                    value = value()
                except TypeError:
                    continue
            return value
    return default


def _children(node: Any) -> list[Any]:
    kids = _get(node, "nodes", "children", "suites", default=None)
    if kids is None:
        return []
    if isinstance(kids, dict):
        kids = kids.values()
    return list(kids)


def _kind(node: Any) -> int:
    name = type(node).__name__.lower()
    for kind, code in KIND_CODE.items():
        if kind in name:
            return code
    return KIND_CODE["task"] if not _children(node) else KIND_CODE["family"]


def _value(attr: Any) -> Any:
    return _get(attr, "value", "new_value", default=None)


def node_attrs(node: Any) -> dict[str, Any]:
    """The attributes the tree shows for one node, in the compact form sent to the browser.

    ``e``: events {name: set}, ``m``: meters {name: [value, min, max]}, ``l``: labels {name: text},
    ``r``: [repeat name, value], ``t``: try number. Only non-empty keys are present.
    """
    out: dict[str, Any] = {}
    events = _get(node, "events", default=None) or []
    if events:
        ev = {}
        for e in events:
            name = str(_get(e, "name", default="") or _get(e, "number", default=""))
            ev[name] = bool(_get(e, "value", "set", default=False))
        out["e"] = ev
    meters = _get(node, "meters", default=None) or []
    if meters:
        out["m"] = {
            str(_get(m, "name")): [_value(m), _get(m, "min", default=0), _get(m, "max", default=100)]
            for m in meters
        }
    labels = _get(node, "labels", default=None) or []
    if labels:
        lab = {}
        for label in labels:
            text = _get(label, "new_value", default=None) or _get(label, "value", default="")
            lab[str(_get(label, "name"))] = str(text)
        out["l"] = lab
    repeat = _get(node, "repeat", "get_repeat", default=None)
    if repeat is not None and (_get(repeat, "empty", default=False) is not True):
        name = _get(repeat, "name", default=None)
        if name:
            out["r"] = [str(name), str(_get(repeat, "value", default=""))]
    return out


def find_node(defs: Any, path: str) -> Any:
    """The node at absolute ``path`` in a Defs-shaped object, or None."""
    node = defs
    for part in path.strip("/").split("/"):
        node = next((c for c in _children(node) if str(_get(c, "name")) == part), None)
        if node is None:
            return None
    return node


def node_state(node: Any) -> int:
    """The state code of a Defs-shaped node (ours or ecFlow's)."""
    return state_code(_get(node, "state", "get_state", default=None))


def walk_defs(defs: Any, root: str | None = None) -> Iterator[tuple[str, int, Any, int]]:
    """Depth-first ``(path, parent_row, node, kind)`` over a Defs-shaped object; rows numbered in order.

    With ``root`` (an absolute node path) only that node and its descendants are walked.
    """
    if root and root.strip("/"):
        node = find_node(defs, root)
        if node is None:
            return
        stack: list[tuple[Any, str, int]] = [(node, root.rstrip("/").rsplit("/", 1)[0], -1)]
    else:
        stack = [(s, "", -1) for s in reversed(_children(defs))]
    row = 0
    while stack:
        node, parent_path, parent = stack.pop()
        path = f"{parent_path}/{_get(node, 'name')}"
        yield path, parent, node, _kind(node)
        me = row
        row += 1
        for child in reversed(_children(node)):
            stack.append((child, path, me))


class RowTable:
    """Flat columnar table of a suite tree, thread-safe, with a dirty set for throttled deltas."""

    def __init__(self, root: str | None = None) -> None:
        #: show only this node and its descendants (``None``/``"/"``: everything); other paths are ignored
        self.root = root.rstrip("/") if root and root.strip("/") else None
        self.lock = threading.RLock()
        self.paths: list[str] = []
        self.index: dict[str, int] = {}
        self.names: list[str] = []
        self.parent = np.zeros(0, np.int32)
        self.state = np.zeros(0, np.uint8)
        self.flags = np.zeros(0, np.uint8)
        self.kind = np.zeros(0, np.uint8)
        self.attrs: dict[int, dict[str, Any]] = {}
        self.seq = -1
        self.server_state: str | None = None
        self._dirty: set[int] = set()
        self._attr_dirty: set[int] = set()
        self._new_from = 0  # rows >= this were added since the last delta
        self.generation = 0  # bumps on every full rebuild

    # -- building ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.paths)

    @classmethod
    def from_defs(cls, defs: Any, root: str | None = None) -> RowTable:
        """Build the table from a Defs snapshot (states, suspended flags and attributes included)."""
        table = cls(root)
        table.load_defs(defs)
        return table

    def load_defs(self, defs: Any) -> None:
        """Replace the whole table with ``defs`` (used on first paint and after a sequence gap)."""
        paths: list[str] = []
        names: list[str] = []
        parents: list[int] = []
        states: list[int] = []
        flags: list[int] = []
        kinds: list[int] = []
        attrs: dict[int, dict[str, Any]] = {}
        for row, (path, parent, node, kind) in enumerate(walk_defs(defs, self.root)):
            paths.append(path)
            names.append(path.rsplit("/", 1)[1])
            parents.append(parent)
            states.append(node_state(node))
            flags.append(self._node_flags(node))
            kinds.append(kind)
            a = node_attrs(node)
            if a:
                attrs[row] = a
        with self.lock:
            self.paths, self.names, self.attrs = paths, names, attrs
            self.index = {p: i for i, p in enumerate(paths)}
            self.parent = np.asarray(parents, np.int32)
            self.state = np.asarray(states, np.uint8)
            self.flags = np.asarray(flags, np.uint8)
            self.kind = np.asarray(kinds, np.uint8)
            self._dirty.clear()
            self._attr_dirty.clear()
            self._new_from = len(paths)
            self.generation += 1

    @staticmethod
    def _node_flags(node: Any) -> int:
        bits = SUSPENDED if _get(node, "suspended", "is_suspended", default=False) is True else 0
        if node_state(node) == 0:
            text = str(_get(node, "state", "get_state", default="")).lower()
            if text.endswith("suspended"):
                bits |= SUSPENDED
        for flag in _get(node, "flags", default=None) or []:
            bits |= FLAG_BITS.get(str(flag).lower(), 0)
        return bits

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, int, int]]) -> RowTable:
        """Build from ``(path, kind, state)`` tuples in depth-first order (benchmarks, other producers)."""
        table = cls()
        with table.lock:
            for path, kind, state in rows:
                table._append(path, kind, state, 0)
            table._new_from = len(table.paths)
            table.generation += 1
        return table

    def _append(self, path: str, kind: int, state: int, flags: int) -> int:
        parent_path = path.rsplit("/", 1)[0]
        parent = self.index.get(parent_path, -1) if parent_path else -1
        row = len(self.paths)
        self.paths.append(path)
        self.names.append(path.rsplit("/", 1)[1])
        self.index[path] = row
        if row >= len(self.parent):
            cap = max(16, 2 * row)
            self.parent = np.resize(self.parent, cap)
            self.state = np.resize(self.state, cap)
            self.flags = np.resize(self.flags, cap)
            self.kind = np.resize(self.kind, cap)
        self.parent[row] = parent
        self.state[row] = state
        self.flags[row] = flags
        self.kind[row] = kind
        return row

    def shows(self, path: str) -> bool:
        """Whether ``path`` belongs in this table (inside ``root``)."""
        return self.root is None or path == self.root or path.startswith(self.root + "/")

    def _columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        n = len(self.paths)
        return self.parent[:n], self.state[:n], self.flags[:n], self.kind[:n]

    # -- deltas in ------------------------------------------------------------------------------------
    def apply(self, msg: dict[str, Any]) -> list[str]:
        """Apply one server delta message; returns the paths added that need their details fetched.

        Unknown paths in ``changes`` are reported the same way (they arrived before the structure did).
        """
        need: list[str] = []
        with self.lock:
            if "seq" in msg:
                self.seq = int(msg["seq"])
            if "server_state" in msg:
                self.server_state = str(msg["server_state"])
            for path in msg.get("removed", ()) or ():
                self._remove(path)
            for path in msg.get("added", ()) or ():
                if not self.shows(path):
                    continue
                if path not in self.index or self.flags[self.index[path]] & REMOVED:
                    need.append(path)
            for change in msg.get("changes", ()) or ():
                path = change.get("path")
                row = self.index.get(path)
                if row is None:
                    if self.shows(path):
                        need.append(path)
                    continue
                self._apply_change(row, change)
        return need

    def _apply_change(self, row: int, change: dict[str, Any]) -> None:
        if "state" in change:
            self.state[row] = state_code(change["state"])
            self._dirty.add(row)
        if "suspended" in change or "flags" in change:
            bits = int(self.flags[row]) & REMOVED
            suspended = change.get("suspended", bool(self.flags[row] & SUSPENDED))
            if suspended:
                bits |= SUSPENDED
            flags = change["flags"] if "flags" in change else None
            if flags is None:  # keep the old named flags
                bits |= int(self.flags[row]) & ~(SUSPENDED | REMOVED)
            else:
                for flag in flags:
                    bits |= FLAG_BITS.get(str(flag).lower(), 0)
            self.flags[row] = bits
            self._dirty.add(row)
        a = None
        if "events" in change:
            a = self.attrs.setdefault(row, {})
            a.setdefault("e", {}).update({k: bool(v) for k, v in change["events"].items()})
        if "meters" in change:
            a = self.attrs.setdefault(row, {})
            meters = a.setdefault("m", {})
            for k, v in change["meters"].items():
                old = meters.get(k, [0, 0, 100])
                meters[k] = [v, old[1], old[2]]
        if "labels" in change:
            a = self.attrs.setdefault(row, {})
            a.setdefault("l", {}).update({k: str(v) for k, v in change["labels"].items()})
        if "repeat" in change and change["repeat"]:
            a = self.attrs.setdefault(row, {})
            a["r"] = [str(change["repeat"].get("name", "")), str(change["repeat"].get("value", ""))]
        if "tryno" in change:
            a = self.attrs.setdefault(row, {})
            a["t"] = int(change["tryno"])
        if a is not None:
            self._attr_dirty.add(row)
            self._dirty.add(row)

    def _remove(self, path: str) -> None:
        row = self.index.get(path)
        if row is None:
            return
        prefix = path + "/"
        for p, r in self.index.items():
            if r == row or p.startswith(prefix):
                self.flags[r] |= REMOVED
                self._dirty.add(r)

    def merge_defs(self, defs: Any) -> int:
        """Append rows for nodes of ``defs`` the table lacks (after ``added``); returns how many."""
        added = 0
        with self.lock:
            for path, _parent, node, kind in walk_defs(defs, self.root):
                row = self.index.get(path)
                state = node_state(node)
                if row is None:
                    row = self._append(path, kind, state, self._node_flags(node))
                    added += 1
                else:
                    self.flags[row] = self._node_flags(node)
                    self.state[row] = state
                a = node_attrs(node)
                if a:
                    self.attrs[row] = a
                    self._attr_dirty.add(row)
                self._dirty.add(row)
        return added

    # -- encoding out ---------------------------------------------------------------------------------
    @property
    def dirty(self) -> bool:
        return bool(self._dirty) or self._new_from < len(self.paths)

    def encode_snapshot(self) -> bytes:
        """The whole table as one binary blob (first paint, or a view that joins late)."""
        with self.lock:
            parent, state, flags, kind = self._columns()
            names = "\n".join(self.names).encode()
            attrs = json.dumps(self.attrs, separators=(",", ":")).encode() if self.attrs else b""
            head = struct.pack("<IIII", SNAPSHOT_MAGIC, len(self.paths), len(names), len(attrs))
            self._dirty.clear()
            self._attr_dirty.clear()
            self._new_from = len(self.paths)
            return b"".join((head, parent.tobytes(), state.tobytes(), flags.tobytes(), kind.tobytes(),
                             names, attrs))

    def take_delta(self) -> bytes | None:
        """The rows changed since the last call as one binary delta (None when nothing changed).

        Layout (little endian): header ``magic, n_changed, n_new, names_len, attrs_len`` (uint32), then
        ``rows[int32 n_changed]``, ``new_parent[int32 n_new]``, ``state[u8 n_changed]``, ``flags[u8]``,
        ``new_kind[u8 n_new]``, new rows' names (UTF-8, newline-separated), changed attributes (JSON).
        New rows are the last ``n_new`` entries of ``rows``.
        """
        with self.lock:
            n = len(self.paths)
            new = range(self._new_from, n)
            old = sorted(r for r in self._dirty if r < self._new_from)
            if not old and not len(new):
                return None
            rows = np.asarray(old + list(new), np.int32)
            new_parent = self.parent[self._new_from:n].astype(np.int32)
            new_kind = self.kind[self._new_from:n].astype(np.uint8)
            names = "\n".join(self.names[self._new_from:n]).encode() if len(new) else b""
            attr_rows = {r for r in self._attr_dirty if r < self._new_from} | {r for r in new if r in self.attrs}
            attrs = json.dumps({r: self.attrs[r] for r in sorted(attr_rows)}, separators=(",", ":")).encode() \
                if attr_rows else b""
            head = struct.pack("<IIIII", DELTA_MAGIC, len(rows), len(new), len(names), len(attrs))
            blob = b"".join((head, rows.tobytes(), new_parent.tobytes(), self.state[rows].tobytes(),
                             self.flags[rows].tobytes(), new_kind.tobytes(), names, attrs))
            self._dirty.clear()
            self._attr_dirty.clear()
            self._new_from = n
            return blob

    # -- queries (tests, why panels) ------------------------------------------------------------------
    def row(self, path: str) -> dict[str, Any]:
        """One row as a dict (state name, kind, flags, attributes)."""
        with self.lock:
            r = self.index[path]
            return {"path": path, "state": STATES[self.state[r]], "kind": KINDS[self.kind[r]],
                    "suspended": bool(self.flags[r] & SUSPENDED), "removed": bool(self.flags[r] & REMOVED),
                    "parent": int(self.parent[r]), "attrs": self.attrs.get(r, {})}


def decode_snapshot(blob: bytes) -> dict[str, Any]:
    """Inverse of :meth:`RowTable.encode_snapshot` (tests and tools; the browser has its own decoder)."""
    magic, n, nlen, alen = struct.unpack_from("<IIII", blob, 0)
    if magic != SNAPSHOT_MAGIC:
        raise ValueError("not a tree snapshot")
    off = 16
    parent = np.frombuffer(blob, np.int32, n, off)
    off += 4 * n
    state = np.frombuffer(blob, np.uint8, n, off)
    flags = np.frombuffer(blob, np.uint8, n, off + n)
    kind = np.frombuffer(blob, np.uint8, n, off + 2 * n)
    off += 3 * n
    names = blob[off:off + nlen].decode().split("\n") if n else []
    off += nlen
    attrs = {int(k): v for k, v in json.loads(blob[off:off + alen]).items()} if alen else {}
    return {"parent": parent, "state": state, "flags": flags, "kind": kind, "names": names, "attrs": attrs}


def decode_delta(blob: bytes) -> dict[str, Any]:
    """Inverse of :meth:`RowTable.take_delta`."""
    magic, n, nnew, nlen, alen = struct.unpack_from("<IIIII", blob, 0)
    if magic != DELTA_MAGIC:
        raise ValueError("not a tree delta")
    off = 20
    rows = np.frombuffer(blob, np.int32, n, off)
    off += 4 * n
    new_parent = np.frombuffer(blob, np.int32, nnew, off)
    off += 4 * nnew
    state = np.frombuffer(blob, np.uint8, n, off)
    flags = np.frombuffer(blob, np.uint8, n, off + n)
    off += 2 * n
    new_kind = np.frombuffer(blob, np.uint8, nnew, off)
    off += nnew
    names = blob[off:off + nlen].decode().split("\n") if nnew else []
    off += nlen
    attrs = {int(k): v for k, v in json.loads(blob[off:off + alen]).items()} if alen else {}
    return {"rows": rows, "state": state, "flags": flags, "new_parent": new_parent, "new_kind": new_kind,
            "names": names, "attrs": attrs}
