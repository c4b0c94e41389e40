"""The Gantt: one lane per worker (DAG runs) or per task (suite runs), one bar per task span.

Built on Bokeh (one ``quad`` glyph over one ColumnDataSource, like Dask's task stream) and shown in
JupyterLab with jupyter_bokeh's ``BokehModel`` so that ``ColumnDataSource.stream`` reaches the browser as
binary patches while a graph runs. Past ``webgl_threshold`` bars the figure switches to WebGL.

* :class:`Gantt` takes the cascade trace (``trace.spans()`` / ``trace.events``) or live events through
  :meth:`Gantt.on_event` (pass it as ``cluster.run(graph, on_event=gantt.on_event)``).
* :class:`SuiteGantt` takes a suite server's record: its log lines, or the change deltas as they arrive,
  and draws each task's submitted → active → complete/aborted spans.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from bokeh.embed import file_html
from bokeh.models import ColumnDataSource, FactorRange, HoverTool
from bokeh.palettes import Category20
from bokeh.plotting import figure
from bokeh.resources import CDN, INLINE

from ecflow_lab.jupyter.tree import STATE_COLOURS

COLUMNS = ("left", "right", "lane", "name", "kind", "phase", "worker", "start_s", "end_s", "duration",
           "color", "alpha", "ok")

PHASE_COLOURS = {"transfer": "#d62728", "failed": "#000000"}


def _empty() -> dict[str, list[Any]]:
    return {c: [] for c in COLUMNS}


_BOKEHJS_LOADED = False


def load_bokehjs() -> None:
    """Load BokehJS into the notebook page once per kernel (inline: works without internet access).

    jupyter_bokeh's ``BokehModel`` view needs ``window.Bokeh``; without this it fails with
    "Cannot read properties of undefined (reading 'require')".
    """
    global _BOKEHJS_LOADED
    if _BOKEHJS_LOADED:
        return
    try:
        from IPython import get_ipython

        if get_ipython() is None:
            return
        from bokeh.io import output_notebook

        output_notebook(INLINE, hide_banner=True)
        _BOKEHJS_LOADED = True
    except Exception:  # no notebook frontend: the widget is only used from Python
        pass


class _GanttBase:
    """Shared figure, data source, colour map, throttled streaming and HTML export."""

    lane_title = "worker"

    def __init__(self, *, title: str = "", width: int = 900, height: int | None = None,
                 webgl_threshold: int = 10_000, interval: float = 0.1, rollover: int | None = None) -> None:
        self.source = ColumnDataSource({**_empty(), "top": [], "bottom": []})
        self.lanes: list[str] = []
        self._lane_set: set[str] = set()
        self.kind_colours: dict[str, str] = {}
        self.webgl_threshold = webgl_threshold
        self.rollover = rollover
        self.interval = interval
        self.t0: float | None = None
        self.n_bars = 0
        self._fixed_height = height
        self._lock = threading.Lock()
        self._pending = _empty()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._widget: Any = None
        self.figure = figure(title=title, width=width, height=height or 240, y_range=FactorRange(),
                             x_axis_label="seconds since start", tools="xpan,xwheel_zoom,box_zoom,reset,save",
                             active_scroll="xwheel_zoom", output_backend="canvas")
        self.figure.quad(left="left", right="right", top="top", bottom="bottom", source=self.source,
                         fill_color="color", fill_alpha="alpha", line_color=None)
        self.figure.add_tools(HoverTool(tooltips=[
            ("task", "@name"), (self.lane_title, "@lane"), ("kind", "@kind"), ("phase", "@phase"),
            ("start", "@start_s{0.000} s"), ("end", "@end_s{0.000} s"), ("duration", "@duration{0.000} s"),
        ]))
        self.figure.ygrid.grid_line_color = None

    # colours -------------------------------------------------------------------------------------------
    def colour_for(self, kind: str) -> str:
        """A stable colour per task kind (function name)."""
        c = self.kind_colours.get(kind)
        if c is None:
            palette = Category20[20]
            c = palette[(2 * len(self.kind_colours)) % 20 + (len(self.kind_colours) // 10) % 2]
            self.kind_colours[kind] = c
        return c

    # data ---------------------------------------------------------------------------------------------
    def _rows(self, spans: Iterable[dict[str, Any]]) -> dict[str, list[Any]]:
        raise NotImplementedError

    def add(self, spans: Iterable[dict[str, Any]]) -> int:
        """Add bars now (from the calling thread); returns how many."""
        data = self._rows(spans)
        n = len(data["left"])
        if n:
            self._apply(data)
        return n

    def _apply(self, data: dict[str, list[Any]]) -> None:
        new = [lane for lane in dict.fromkeys(data["lane"]) if lane not in self._lane_set]
        if new:
            self.lanes.extend(new)
            self._lane_set.update(new)
            self.figure.y_range.factors = list(self.lanes)
            if self._fixed_height is None:
                self.figure.height = max(200, min(1200, 60 + 22 * len(self.lanes)))
        # quads on a categorical axis: the lane's factor with a +-0.4 offset
        data = dict(data)
        data["top"] = [(lane, 0.4) for lane in data["lane"]]
        data["bottom"] = [(lane, -0.4) for lane in data["lane"]]
        self.n_bars += len(data["left"])
        if self.n_bars > self.webgl_threshold and self.figure.output_backend != "webgl":
            self.figure.output_backend = "webgl"
        if len(data["left"]) >= 10:  # numpy columns serialise as binary buffers
            for c in ("left", "right", "start_s", "end_s", "duration", "alpha"):
                data[c] = np.asarray(data[c], dtype=float)
        if self.source.data["left"] is None or len(self.source.data["left"]) == 0:
            self.source.data = data
        else:
            self.source.stream(data, self.rollover)

    # live streaming -----------------------------------------------------------------------------------
    def _queue(self, data: dict[str, list[Any]]) -> None:
        with self._lock:
            for c in COLUMNS:
                self._pending[c].extend(data[c])
        self._wake.set()
        if self._thread is None:
            self.start()

    def flush(self) -> int:
        """Stream queued bars to the figure now (the owned thread calls this ~10 times a second)."""
        with self._lock:
            data, self._pending = self._pending, _empty()
        n = len(data["left"])
        if n:
            self._apply(data)
        return n

    def start(self) -> None:
        """Start the streaming thread (owned; :meth:`close` stops it)."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="ecflow-gantt", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            self.flush()
            self._stop.wait(self.interval)
        self.flush()

    def close(self) -> None:
        """Stop the streaming thread after a last flush; the figure stays usable."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)
        self._thread = None
        self.flush()

    def __enter__(self) -> _GanttBase:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # output ------------------------------------------------------------------------------------------
    def widget(self) -> Any:
        """The live ipywidget (jupyter_bokeh ``BokehModel``) for JupyterLab; created once.

        BokehJS is loaded into the page first (inlined: works offline), once per kernel.
        """
        load_bokehjs()
        if self._widget is None:
            from jupyter_bokeh.widgets import BokehModel

            self._widget = BokehModel(self.figure)
        return self._widget

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget())

    def to_html(self, *, inline: bool = True) -> str:
        """Standalone HTML (Bokeh JS inlined by default, so it opens without network)."""
        return file_html(self.figure, INLINE if inline else CDN, title=self.figure.title.text or "Gantt")

    def save(self, path: str | Path, *, inline: bool = True) -> Path:
        """Write the Gantt as a standalone HTML file; returns the path."""
        path = Path(path)
        path.write_text(self.to_html(inline=inline), encoding="utf-8")
        return path


class Gantt(_GanttBase):
    """Gantt of a DAG run: one lane per worker, one bar per task, coloured by kind (transfers in red)."""

    lane_title = "worker"

    def __init__(self, trace: Any = None, **kwargs: Any) -> None:
        super().__init__(title=kwargs.pop("title", "DAG run"), **kwargs)
        self._started: dict[Any, dict[str, Any]] = {}
        if trace is not None:
            self.add_trace(trace)

    def add_trace(self, trace: Any) -> int:
        """Draw a finished run: ``trace.spans()`` (or a list of span dicts)."""
        spans = trace.spans() if hasattr(trace, "spans") else list(trace)
        if self.t0 is None and spans:
            starts = [s["start"] for s in spans if s.get("start") is not None]
            events = getattr(trace, "events", None) or []
            self.t0 = min([*starts, *(e["t"] for e in events if "t" in e)] or [0.0])
        return self.add(spans)

    def _rows(self, spans: Iterable[dict[str, Any]]) -> dict[str, list[Any]]:
        data = _empty()
        for s in spans:
            start, end = s.get("start"), s.get("end")
            if start is None or end is None:
                continue
            if self.t0 is None:
                self.t0 = start
            phase = s.get("phase", "compute")
            ok = bool(s.get("ok", True))
            kind = str(s.get("kind") or s.get("name") or "task")
            worker = str(s.get("worker") or "?")
            colour = PHASE_COLOURS["failed"] if not ok else PHASE_COLOURS.get(phase) or self.colour_for(kind)
            rel0, rel1 = start - self.t0, end - self.t0
            row = {"left": rel0, "right": max(rel1, rel0 + 1e-4), "lane": worker,
                   "name": str(s.get("name") or s.get("task")), "kind": kind, "phase": phase,
                   "worker": worker, "start_s": rel0, "end_s": rel1, "duration": end - start,
                   "color": colour, "alpha": 1.0 if phase == "compute" else 0.5, "ok": ok}
            for c in COLUMNS:
                data[c].append(row[c])
        return data

    def on_event(self, event: dict[str, Any]) -> None:
        """Live hook for ``cluster.run(graph, on_event=...)``: cheap, thread-safe; bars stream at ~10/s."""
        kind = event.get("kind")
        t = event.get("t", time.time())
        if self.t0 is None:
            self.t0 = t
        task = event.get("task")
        if kind in ("started", "transfer_start"):
            self._started[(task, kind)] = event
            return
        if kind in ("finished", "failed", "transfer_end"):
            begin = self._started.pop((task, "transfer_start" if kind == "transfer_end" else "started"), None)
            if begin is None:
                return
            span = {"task": task, "name": event.get("name") or begin.get("name"),
                    "worker": begin.get("worker") or event.get("worker"), "start": begin["t"], "end": t,
                    "kind": event.get("fn") or event.get("task_kind") or begin.get("fn")
                    or _kind_of(event.get("name") or begin.get("name")),
                    "phase": "transfer" if kind == "transfer_end" else "compute", "ok": kind != "failed"}
            self._queue(self._rows([span]))


def _kind_of(name: Any) -> str:
    """A task kind from its name: the function part of ``regrid-3`` / ``regrid:3`` / ``regrid[3]``."""
    return re.split(r"[-:\[(#/ ]", str(name or "task"), maxsplit=1)[0] or "task"


_LOG_RE = re.compile(
    r"\[(\d{1,2}:\d{2}:\d{2}(?:\.\d+)?)\s+(\d{1,2})\.(\d{1,2})\.(\d{4})\]\s+(?:chd:|--)?\s*"
    r"(submitted|active|complete|aborted|queued|init|abort)\b:?\s+(/\S+)")
#: child commands in the log stand for the state they set (``chd:init`` -> active, ``chd:abort`` -> aborted)
_LOG_STATE = {"init": "active", "abort": "aborted"}

_PHASE_STATES = ("submitted", "active")


class SuiteGantt(_GanttBase):
    """Gantt of a suite run: one lane per task, bars for its submitted and active spans.

    Feed it the server's log (:meth:`from_log`, ecFlow's ``LOG:[hh:mm:ss d.m.yyyy] state: /path`` lines)
    or live deltas (:meth:`on_delta`, a ``Client.subscribe`` callback); the bar colours are ecflow_ui's.
    """

    lane_title = "task"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(title=kwargs.pop("title", "suite run"), **kwargs)
        self._open: dict[str, tuple[str, float]] = {}
        self.tasks: set[str] | None = None  # when known, only these paths get lanes

    def record(self, path: str, state: str, t: float) -> None:
        """One state change of ``path`` at epoch ``t``: closes the open span and opens the next."""
        if self.tasks is not None and path not in self.tasks:
            return
        if self.t0 is None:
            self.t0 = t
        prev = self._open.pop(path, None)
        if prev is not None:
            pstate, pt = prev
            self._queue(self._rows([{"path": path, "state": pstate, "start": pt, "end": t, "next": state}]))
        if state in _PHASE_STATES:
            self._open[path] = (state, t)

    def _rows(self, spans: Iterable[dict[str, Any]]) -> dict[str, list[Any]]:
        data = _empty()
        for s in spans:
            start, end = s["start"], s["end"]
            rel0, rel1 = start - self.t0, end - self.t0
            state = s["state"]
            nxt = s.get("next", "")
            ok = nxt != "aborted"
            colour = STATE_COLOURS["aborted"] if (state == "active" and not ok) else STATE_COLOURS[state]
            row = {"left": rel0, "right": max(rel1, rel0 + 1e-3), "lane": s["path"],
                   "name": s["path"].rsplit("/", 1)[-1], "kind": "task", "phase": state, "worker": s["path"],
                   "start_s": rel0, "end_s": rel1, "duration": end - start, "color": colour,
                   "alpha": 1.0, "ok": ok}
            for c in COLUMNS:
                data[c].append(row[c])
        return data

    @classmethod
    def follow(cls, client: Any, *, history: int = 10_000, **kwargs: Any) -> SuiteGantt:
        """A Gantt of ``client``'s server: the spans in the last ``history`` lines of its log, then live
        from its deltas (a subscription owned by the Gantt; :meth:`close` stops it)."""
        gantt = cls(**kwargs)
        if history:
            gantt.add_log(client.get_log(history).splitlines())
        gantt.start()
        gantt._subscription = client.subscribe(gantt.on_delta)
        return gantt

    def close(self) -> None:
        """Stop following the server (if following), then the streaming thread."""
        sub, self._subscription = getattr(self, "_subscription", None), None
        if sub is not None:
            sub.close()
        super().close()

    def on_delta(self, msg: dict[str, Any]) -> None:
        """``Client.subscribe`` callback: record each state change with the time it arrived. A full
        snapshot (when following starts, and after a gap in the deltas) names the tasks that get lanes, and
        a task whose state differs from its open span changed during the gap: that span ends now."""
        t = float(msg.get("time", time.time()))
        if msg.get("full"):
            from ecflow_lab.jupyter.rows import KIND_CODE, STATES, node_state, walk_defs

            task = KIND_CODE["task"]
            states = {p: STATES[node_state(node)] for p, _parent, node, kind in walk_defs(msg["defs"]) if kind == task}
            for path in [p for p in self._open if p not in states]:  # deleted meanwhile
                self.record(path, "unknown", t)
            self.tasks = set(states)
            for path, state in states.items():
                open_state = self._open[path][0] if path in self._open else None
                if open_state != (state if state in _PHASE_STATES else None):
                    self.record(path, state, t)
            return
        for change in msg.get("changes", ()) or ():
            state = change.get("state")
            if state:
                self.record(change["path"], str(state), t)

    def add_log(self, lines: Iterable[str]) -> int:
        """Draw spans from ecFlow-format log lines; returns how many state lines were read."""
        n = 0
        for line in lines:
            m = _LOG_RE.search(line)
            if not m:
                continue
            hms, day, month, year, state, path = m.groups()
            state = _LOG_STATE.get(state, state)
            t = datetime.strptime(f"{year}-{month}-{day} {hms.split('.')[0]}", "%Y-%m-%d %H:%M:%S").timestamp()
            if "." in hms:
                t += float("0." + hms.split(".")[1])
            self.record(path, state, t)
            n += 1
        self.flush()
        return n

    @classmethod
    def from_log(cls, log: str | Path | Iterable[str], **kwargs: Any) -> SuiteGantt:
        """A suite Gantt from a log file path, the log text, or its lines."""
        gantt = cls(**kwargs)
        if isinstance(log, Path) or (isinstance(log, str) and "\n" not in log and Path(log).exists()):
            lines: Iterable[str] = Path(log).read_text(errors="replace").splitlines()
        elif isinstance(log, str):
            lines = log.splitlines()
        else:
            lines = log
        gantt.add_log(lines)
        gantt.close()
        return gantt
