"""The transfer widget: pick a file and a destination, push, and watch each transfer's progress and status.

Built from plain ipywidgets. Progress comes from ``TransferClient.watch`` (the master's event stream, read by a
thread the widget owns); pushes, requeues and stops go through the same ``TransferClient`` calls a script uses.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import ipywidgets as w

BAR_STYLE = {"Done": "success", "Failed": "danger", "Stopped": "warning"}


class TransferRow:
    """One transfer's line: name, progress bar, status text, requeue and stop buttons."""

    def __init__(self, owner: TransferWidget, transfer_id: int) -> None:
        self.id = transfer_id
        self.label = w.Label(f"#{transfer_id}", layout=w.Layout(width="34%"))
        self.bar = w.IntProgress(value=0, min=0, max=1, layout=w.Layout(width="30%"))
        self.status = w.Label("", layout=w.Layout(width="18%"))
        self.requeue = w.Button(description="requeue", icon="redo", layout=w.Layout(width="90px"))
        self.stop = w.Button(description="stop", icon="stop", layout=w.Layout(width="80px"))
        self.requeue.on_click(lambda _b: owner.requeue(self.id))
        self.stop.on_click(lambda _b: owner.stop(self.id))
        self.box = w.HBox([self.label, self.bar, self.status, self.requeue, self.stop])
        self.state: dict[str, Any] = {}

    def update(self, t: dict[str, Any]) -> None:
        """Show one transfer record (a watch event or a row of ``status``/``transfers``)."""
        self.state.update({k: v for k, v in t.items() if v is not None})
        s = self.state
        self.label.value = f"#{self.id} {s.get('target') or ''} → {s.get('destination') or ''}"
        size = int(s.get("size") or 0)
        done = int(s.get("bytes_done") or 0)
        self.bar.max = max(1, size)
        self.bar.value = min(done, self.bar.max) if size else (1 if s.get("status") == "Done" else 0)
        status = str(s.get("status") or "")
        self.bar.bar_style = BAR_STYLE.get(status, "info")
        self.status.value = status + (f": {s['error']}" if s.get("error") and status != "Done" else "")
        self.stop.disabled = status in ("Done", "Failed", "Stopped")


class TransferWidget(w.VBox):
    """Push files and follow transfers live; :meth:`close` stops the watcher thread.

    ``TransferWidget(client, group=None)``: ``client`` is a :class:`~ecflow_lab.transfer.client.TransferClient`;
    with ``group`` only transfers of that -groupby group are shown.
    """

    def __init__(self, client: Any, *, group: str | None = None, **kwargs: Any) -> None:
        self.client = client
        self.group = group
        self.rows: dict[int, TransferRow] = {}
        self._lock = threading.Lock()
        self.file = w.Text(placeholder="path of the file to send", description="file")
        self.upload = w.FileUpload(description="or upload", multiple=False)
        self.destination = w.Dropdown(description="destination", options=[])
        self.target = w.Text(placeholder="(file name)", description="target")
        self.groupby = w.Text(value=group or "", description="group")
        self.push_button = w.Button(description="push", button_style="primary", icon="upload")
        self.push_button.on_click(lambda _b: self.push())
        self.message = w.HTML("")
        self.list = w.VBox([])
        self.refresh_destinations()
        form = w.VBox([w.HBox([self.file, self.upload]), w.HBox([self.destination, self.target]),
                       w.HBox([self.groupby, self.push_button])])
        super().__init__([form, self.message, self.list], **kwargs)
        self._watcher = client.watch(self._on_event, group=group)

    # -- lifetime ---------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the watcher thread, then close the widgets."""
        watcher, self._watcher = getattr(self, "_watcher", None), None
        if watcher is not None:
            watcher.close()
        super().close()

    def __enter__(self) -> TransferWidget:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- actions ----------------------------------------------------------------------------------
    def refresh_destinations(self) -> None:
        """Reload the destination list from the master."""
        names = [d["name"] for d in self.client.destinations()]
        self.destination.options = names
        if names and self.destination.value not in names:
            self.destination.value = names[0]

    def _say(self, text: str, error: bool = False) -> None:
        colour = "#c00" if error else "#444"
        from html import escape

        self.message.value = f"<span style='color:{colour}'>{escape(text)}</span>"

    def push(self, path: str | None = None, destination: str | None = None) -> int | None:
        """Push the chosen file (or ``path``) to the chosen destination; returns the Data File ID."""
        dest = destination or self.destination.value
        target = self.target.value.strip() or None
        group = self.groupby.value.strip() or None
        try:
            if not dest:
                raise ValueError("choose a destination (none is defined on the master)")
            uploaded = list(self.upload.value or ())
            if path is None and not self.file.value.strip() and uploaded:
                item = uploaded[0]
                source: Any = bytes(item["content"])
                target = target or item["name"]
            else:
                p = Path(path or self.file.value.strip()).expanduser()
                if not str(p) or not p.is_file():
                    raise ValueError(f"no such file: {p}")
                source = str(p)
            dfid = int(self.client.push(source, dest, target, groupby=group))
        except Exception as exc:
            self._say(f"push failed: {exc}", error=True)
            return None
        self._say(f"DataFileId={dfid} queued for {dest}")
        for t in self.client.status(dfid, history=0).get("transfers", []):
            self._show(t)
        return dfid

    def requeue(self, transfer_id: int) -> int:
        """Requeue one transfer (the row's button)."""
        return self._control("requeue", transfer_id)

    def stop(self, transfer_id: int) -> int:
        """Stop one transfer (the row's button)."""
        return self._control("stop", transfer_id)

    def _control(self, action: str, transfer_id: int) -> int:
        try:
            n = int(getattr(self.client, action)(transfer=transfer_id))
        except Exception as exc:
            self._say(f"{action} #{transfer_id} failed: {exc}", error=True)
            return 0
        self._say(f"{action} #{transfer_id}: {n} transfer(s)")
        return n

    # -- events in ----------------------------------------------------------------------------------
    def _on_event(self, event: dict[str, Any]) -> None:
        if event.get("type") == "resync":
            for t in self.client.transfers(group=self.group, limit=200):
                self._show(t)
            return
        self._show(event)

    def _show(self, t: dict[str, Any]) -> None:
        tid = t.get("id")
        if tid is None:
            return
        with self._lock:
            row = self.rows.get(int(tid))
            if row is None:
                row = self.rows[int(tid)] = TransferRow(self, int(tid))
                self.list.children = (row.box, *self.list.children)  # newest first
            row.update(t)

    def status_of(self, transfer_id: int) -> str:
        """The status the widget shows for one transfer."""
        return str(self.rows[transfer_id].state.get("status", ""))
