"""Drive a real JupyterLab in headless Chromium: the harness behind the browser tests and widget_bench.

``with LabSession() as lab: page = lab.open(notebook_path)`` starts JupyterLab on 127.0.0.1 (free port, no
token, its own root dir and config dirs), launches Debian's Chromium through Playwright's
``executable_path`` with the flags this sandbox needs, and stops both on exit (kernels included).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--disable-crash-reporter", "--disable-breakpad"]


def chromium_path() -> str | None:
    """Debian's Chromium (or ``$CHROMIUM``) if present."""
    for cand in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                 shutil.which("chromium-browser")):
        if cand and os.path.exists(cand):
            return cand
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_notebook(path: Path, cells: Sequence[str]) -> Path:
    """A minimal nbformat-4 notebook with one code cell per string (python3 kernel)."""
    nb = {"nbformat": 4, "nbformat_minor": 5,
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
          "cells": [{"cell_type": "code", "id": f"c{i}", "metadata": {}, "execution_count": None, "outputs": [],
                     "source": src} for i, src in enumerate(cells)]}
    path.write_text(json.dumps(nb, indent=1))
    return path


_FIND_CANVAS = """() => {
  const seen = (root) => {
    if (root.querySelector('canvas')) return true;
    for (const e of root.querySelectorAll('*')) if (e.shadowRoot && seen(e.shadowRoot)) return true;
    return false;
  };
  return [...document.querySelectorAll('.jp-OutputArea-output')].some(seen);
}"""


class LabSession:
    """JupyterLab + Chromium, owned: ``close()`` (or the ``with`` block) stops both and the kernels."""

    def __init__(self, root: str | Path | None = None, *, timeout: float = 90.0,
                 viewport: tuple[int, int] = (1400, 1000)) -> None:
        self._tmp = tempfile.mkdtemp(prefix="ecfl-lab-")
        self.root = Path(root) if root else Path(self._tmp) / "root"
        self.root.mkdir(parents=True, exist_ok=True)
        self.timeout = timeout
        self.viewport = viewport
        self.port = free_port()
        self.lab: subprocess.Popen[bytes] | None = None
        self._pw: Any = None
        self.browser: Any = None
        self.page: Any = None
        self.log_path = Path(self._tmp) / "lab.log"

    def __enter__(self) -> LabSession:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def start(self) -> None:
        exe = chromium_path()
        if exe is None:
            raise RuntimeError("no Chromium found (install Debian's chromium or set $CHROMIUM)")
        env = dict(os.environ)
        for var, sub in (("JUPYTER_CONFIG_DIR", "cfg"), ("JUPYTER_RUNTIME_DIR", "rt"),
                         ("JUPYTERLAB_SETTINGS_DIR", "settings"), ("JUPYTERLAB_WORKSPACES_DIR", "ws")):
            env[var] = str(Path(self._tmp) / sub)
        news = Path(env["JUPYTERLAB_SETTINGS_DIR"]) / "@jupyterlab" / "apputils-extension"
        news.mkdir(parents=True, exist_ok=True)
        (news / "notification.jupyterlab-settings").write_text('{"fetchNews": "false", "checkForUpdates": false}')
        env.setdefault("PYTHONPATH", str(Path(__file__).resolve().parents[2]))
        settings = Path(env["JUPYTERLAB_SETTINGS_DIR"])
        for plugin, value in (("@jupyterlab/docmanager-extension/plugin", {"autoStartDefaultKernel": True}),
                              ("@jupyterlab/apputils-extension/notification", {"fetchNews": "false",
                                                                              "checkForUpdates": False}),
                              ("@jupyterlab/notebook-extension/tracker", {"windowingMode": "none"})):
            f = settings / f"{plugin}.jupyterlab-settings"  # no kernel dialog, no news toast; every cell rendered
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(json.dumps(value))
        self.lab = subprocess.Popen(
            [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={self.port}",
             "--ServerApp.token=", "--ServerApp.password=", "--ServerApp.ip=127.0.0.1",
             f"--ServerApp.root_dir={self.root}", "--LabApp.news_url=", "--allow-root",
             "--ServerApp.port_retries=0", "--ServerApp.iopub_msg_rate_limit=100000",
             "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
            stdout=subprocess.DEVNULL, stderr=open(self.log_path, "wb"), env=env, cwd=self.root)
        deadline = time.monotonic() + self.timeout
        while True:
            if self.lab.poll() is not None:
                raise RuntimeError(f"JupyterLab exited: {self.log_path.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("JupyterLab did not start") from None
                time.sleep(0.1)
        from playwright.sync_api import sync_playwright

        self._pw = sync_playwright().start()
        self.browser = self._pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        self.page = self.browser.new_page(viewport={"width": self.viewport[0], "height": self.viewport[1]})

    def open(self, notebook: str | Path, *, run_all: bool = True) -> Any:
        """Open a notebook (copied into the root if it lives elsewhere); optionally Run All Cells."""
        notebook = Path(notebook)
        if notebook.parent.resolve() != self.root.resolve():
            shutil.copy(notebook, self.root / notebook.name)
        page = self.page
        ms = self.timeout * 1000
        page.goto(f"http://127.0.0.1:{self.port}/lab/tree/{notebook.name}", timeout=ms)
        page.wait_for_selector(".jp-Notebook", timeout=ms)
        try:  # older settings or a kernel name that does not match: accept the proposed kernel
            page.click(".jp-Dialog button.jp-mod-accept", timeout=3000)
        except Exception:
            pass
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=ms)
        if run_all:
            self.run_all()
        return page

    def run_all(self) -> None:
        self.page.click("text=Run", timeout=10000)
        self.page.click("text=Run All Cells", timeout=10000)

    def find_canvas(self) -> bool:
        """True when a ``<canvas>`` exists in a notebook output, looking inside shadow roots (Bokeh 3)."""
        return bool(self.page.evaluate(_FIND_CANVAS))

    def close(self) -> None:
        """Stop the browser, then JupyterLab (which shuts its kernels down), then remove temp dirs."""
        for step in (lambda: self.browser and self.browser.close(), lambda: self._pw and self._pw.stop()):
            try:
                step()
            except Exception:
                pass
        self.browser = self._pw = self.page = None
        if self.lab is not None:
            self._stop_lab()
            self.lab = None
        shutil.rmtree(self._tmp, ignore_errors=True)

    def _stop_lab(self) -> None:
        import psutil

        assert self.lab is not None
        try:
            kids = psutil.Process(self.lab.pid).children(recursive=True)
        except psutil.Error:
            kids = []
        self.lab.terminate()
        try:
            self.lab.wait(15)
        except subprocess.TimeoutExpired:
            self.lab.kill()
            self.lab.wait(5)
        for k in kids:  # kernels, and anything a kernel started that outlived it
            try:
                k.terminate()
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(kids, timeout=5)
        for k in alive:
            try:
                k.kill()
            except psutil.Error:
                pass
