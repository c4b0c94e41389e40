"""The live node tree: an anywidget showing a whole suite definition with ecflow_ui's colours.

Python keeps a :class:`~ecflow_lab.jupyter.rows.RowTable`; the browser gets the table once as a binary
snapshot trait, then compact binary deltas (changed rows only) at most ~10 times a second from a flusher
thread that the widget owns. User actions from the context menu come back as custom messages and go through
the ``Client`` (never server internals); the answer is shown in the widget's status line.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from ecflow_lab.jupyter.rows import STATES, RowTable


def asset(name: str) -> Path:
    """A front-end file: ``js/NAME`` in a source checkout (the single source), else the copy that the wheel
    carries as ``ecflow_lab/static/NAME`` (pyproject's hatch ``force-include``)."""
    here = Path(__file__).resolve()
    source = here.parents[2] / "js" / name
    if source.is_file():
        return source
    installed = here.parents[1] / "static" / name
    if installed.is_file():
        return installed
    raise FileNotFoundError(f"widget front end {name} not found in {source.parent} or {installed.parent}")

#: ecflow_ui's default node state colours (share/ecflow/etc/ecflowview_nstate_conf.json)
STATE_COLOURS: dict[str, str] = {
    "unknown": "rgb(220,220,220)",
    "queued": "rgb(173,216,230)",
    "submitted": "rgb(64,224,208)",
    "active": "rgb(74,255,61)",
    "complete": "rgb(255,238,1)",
    "aborted": "rgb(255,59,53)",
    "suspended": "rgb(239,191,0)",
}

ACTIONS: tuple[str, ...] = ("suspend", "resume", "requeue", "force complete", "run", "kill", "why")


class NodeTree(anywidget.AnyWidget):
    """A collapsible, filterable, virtual-scrolling tree of a suite definition that follows the server.

    ``NodeTree(defs)`` shows a static snapshot; ``NodeTree.follow(client)`` subscribes to the server's
    deltas and keeps itself up to date until :meth:`close`. ``root="/suite/family"`` shows one subtree.
    """

    _esm = asset("tree.js")
    _css = asset("tree.css")

    snapshot = traitlets.Bytes(b"").tag(sync=True)
    generation = traitlets.Int(0).tag(sync=True)
    title = traitlets.Unicode("").tag(sync=True)
    height = traitlets.Int(420).tag(sync=True)
    expand_depth = traitlets.Int(2).tag(sync=True)
    server_state = traitlets.Unicode("").tag(sync=True)
    status = traitlets.Unicode("").tag(sync=True)
    colours = traitlets.Dict(STATE_COLOURS).tag(sync=True)
    actions = traitlets.List(list(ACTIONS)).tag(sync=True)

    def __init__(self, defs: Any = None, *, client: Any = None, table: RowTable | None = None,
                 root: str | None = None, interval: float = 0.1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.table = table if table is not None else RowTable(root)
        if defs is not None and table is None:
            self.table.load_defs(defs)
        self.client = client
        self.interval = interval
        self._subscription: Any = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        self._send_lock = threading.Lock()
        self.deltas_sent = 0
        self._deltas_since_snapshot = 0
        self.last_result: dict[str, Any] | None = None
        self._push_snapshot()
        self.on_msg(self._on_custom)

    def __repr__(self) -> str:
        return f"NodeTree({len(self.table)} nodes)"

    # -- lifetime ---------------------------------------------------------------------------------
    @classmethod
    def follow(cls, client: Any, *, own_client: bool = False, **kwargs: Any) -> NodeTree:
        """A tree that follows ``client``'s server through ``client.subscribe`` (deltas, full on gaps).

        ``own_client``: :meth:`close` closes ``client`` too (a client made just for this tree).
        """
        tree = cls(client=client, **kwargs)
        tree._owns_client = own_client
        tree.start()
        return tree

    def start(self) -> None:
        """Start the flusher thread and, with a client, the delta subscription."""
        if self._flusher is None:
            self._flusher = threading.Thread(target=self._flush_loop, name="ecflow-tree-flush", daemon=True)
            self._flusher.start()
        if self.client is not None and self._subscription is None:
            self._subscription = self.client.subscribe(self.on_delta)

    def close(self) -> None:
        """Stop the subscription and the flusher thread, then close the widget's comm."""
        self._stop.set()
        self._wake.set()
        sub, self._subscription = self._subscription, None
        if sub is not None:
            sub.close()
        if self._flusher is not None and self._flusher is not threading.current_thread():
            self._flusher.join(5)
        self._flusher = None
        if getattr(self, "_owns_client", False) and self.client is not None:
            self.client.close()
        super().close()

    def __enter__(self) -> NodeTree:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- data in ----------------------------------------------------------------------------------
    def load(self, defs: Any) -> None:
        """Show ``defs`` (replaces the whole tree: one snapshot message)."""
        self.table.load_defs(defs)
        self._push_snapshot()

    def on_delta(self, msg: dict[str, Any]) -> None:
        """Subscription callback: apply one server message; the flusher sends the browser its delta."""
        if msg.get("full"):
            self.table.load_defs(msg["defs"])
            self.table.seq = int(msg.get("seq", -1))
            self._push_snapshot()
            return
        need = self.table.apply(msg)
        if need and self.client is not None:
            try:
                self.client.sync_local()  # the client's own copy, brought up to date, has the new nodes
                self.table.merge_defs(self.client.get_defs())
            except Exception as exc:  # the next full snapshot repairs the tree
                self.status = f"could not fetch new nodes: {exc}"
        if "server_state" in msg:
            self.server_state = str(msg["server_state"])
        self._wake.set()

    def _push_snapshot(self) -> None:
        with self._send_lock:
            blob = self.table.encode_snapshot()
            self._deltas_since_snapshot = 0
            with self.hold_sync():
                self.snapshot = blob
                self.generation = self.table.generation
                if self.table.server_state:
                    self.server_state = self.table.server_state

    def flush(self) -> bool:
        """Send pending changes now (normally the flusher thread does this); True if a delta went out."""
        with self._send_lock:
            blob = self.table.take_delta()
            if blob is None:
                return False
            self.send({"type": "delta", "generation": self.table.generation, "seq": self.table.seq,
                       "sent": time.time() * 1000.0}, [blob])
            self.deltas_sent += 1
            self._deltas_since_snapshot += 1
            return True

    def _flush_loop(self) -> None:
        last = 0.0
        while not self._stop.is_set():
            self._wake.wait(1.0)
            if self._stop.is_set():
                break
            self._wake.clear()
            pause = self.interval - (time.monotonic() - last)
            if pause > 0:  # throttle: at most one delta per interval, changes coalesce meanwhile
                if self._stop.wait(pause):
                    break
            try:
                if self.flush():
                    last = time.monotonic()
            except Exception as exc:  # a closed comm: stop quietly
                self.status = f"tree update failed: {exc}"
                break

    # -- actions out ------------------------------------------------------------------------------
    def _on_custom(self, _widget: Any, content: dict[str, Any], _buffers: Any) -> None:
        kind = content.get("type")
        if kind == "action":
            self.do_action(str(content.get("action")), str(content.get("path")))
        elif kind == "hello":  # a view (re)rendered from the snapshot trait: make sure it is current
            if self._deltas_since_snapshot or int(content.get("generation", -1)) != self.table.generation:
                self._push_snapshot()

    def do_action(self, action: str, path: str) -> dict[str, Any]:
        """Run one context-menu action on ``path`` through the Client; the result is shown and returned."""
        result: dict[str, Any] = {"type": "result", "action": action, "path": path, "ok": True, "text": ""}
        try:
            if self.client is None:
                raise RuntimeError("this tree is not connected to a server (use NodeTree.follow(client))")
            result["text"] = run_action(self.client, action, path)
        except Exception as exc:
            result["ok"] = False
            result["text"] = str(exc) or type(exc).__name__
        self.last_result = result
        self.status = f"{action} {path}: " + ("ok" if result["ok"] else "failed: " + result["text"])
        self.send(result)
        return result

    # -- small queries ----------------------------------------------------------------------------
    def state_of(self, path: str) -> str:
        """The state the tree currently shows for ``path``."""
        return self.table.row(path)["state"]

    @property
    def state_counts(self) -> dict[str, int]:
        """How many nodes are in each state."""
        import numpy as np

        n = len(self.table)
        counts = np.bincount(self.table.state[:n], minlength=len(STATES))
        return {s: int(c) for s, c in zip(STATES, counts)}


def run_action(client: Any, action: str, path: str) -> str:
    """Map a tree action to the ecflow ``Client`` call; returns text to show (``why``) or ``''``."""
    if action == "suspend":
        client.suspend(path)
    elif action == "resume":
        client.resume(path)
    elif action == "requeue":
        client.requeue(path)
    elif action in ("force complete", "force_complete", "complete"):
        if hasattr(client, "force_state_recursive"):
            client.force_state_recursive(path, "complete")
        else:
            client.force_state(path, "complete")
    elif action == "run":
        client.run(path, True)
    elif action == "kill":
        client.kill(path)
    elif action == "why":
        if not hasattr(client, "why"):
            raise RuntimeError("this client has no why()")
        answer = client.why(path)
        if isinstance(answer, (list, tuple)):
            answer = "\n".join(map(str, answer))
        return str(answer) or "nothing holds this node"
    else:
        raise ValueError(f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}")
    return ""
