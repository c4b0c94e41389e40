"""Acceptance in a real browser: JupyterLab on loopback + Debian's Chromium driven by Playwright.

A notebook starts a suite server with ``%ecflow start``, loads and begins a suite with ``%%suite --begin``
and shows ``%ecflow tree``. The test watches rows change colour as real jobs complete, suspends a family
through the row's context menu, and checks the server's state through a ``Client``.
"""

from __future__ import annotations

import importlib.util
import time

import pytest

from ecflow_lab.jupyter.browser import LabSession, chromium_path, free_port, write_notebook
from ecflow_lab.jupyter.tree import STATE_COLOURS

pytestmark = [pytest.mark.browser, pytest.mark.slow]

if chromium_path() is None:
    pytest.skip("Debian's chromium (/usr/bin/chromium) is not installed", allow_module_level=True)
if importlib.util.find_spec("playwright") is None:
    pytest.skip("the playwright Python package is not installed", allow_module_level=True)

JOB = """#!/bin/bash
set -e
ecflow_client --init=$$
sleep {sleep}
ecflow_client --complete
"""

SUITE = """%%suite --begin
suite br
  edit ECF_HOME '{home}'
  family f1
    task a
    task b
      trigger a == complete
    task c
      trigger b == complete
  endfamily
  family f2
    task d
      trigger /br/f1 == complete
      time 23:59
  endfamily
endsuite
"""

ROWS_JS = """() => [...document.querySelectorAll('.ecfl-row:not([hidden])')].map(r => ({
  path: r.dataset.path, state: r.dataset.state, suspended: r.dataset.suspended,
  colour: getComputedStyle(r.querySelector('.ecfl-box')).backgroundColor}))"""


def _suspended(client, path: str) -> bool:
    from ecflow_lab.server import model as M

    client.get_server_defs()
    node = client.get_defs().find_abs_node(path)
    return bool(M.suspended(node))


def test_tree_in_jupyterlab_follows_a_running_suite(tmp_path):
    from ecflow_lab.client import Client

    home = tmp_path / "home"
    for task, sleep in (("a", 1), ("b", 1), ("c", 1)):
        (home / "br" / "f1").mkdir(parents=True, exist_ok=True)
        (home / "br" / "f1" / f"{task}.ecf").write_text(JOB.format(sleep=sleep))
    (home / "br" / "f2").mkdir(parents=True)
    (home / "br" / "f2" / "d.ecf").write_text(JOB.format(sleep=0))
    port = free_port()
    nb = write_notebook(tmp_path / "tree.ipynb", [
        f"%load_ext ecflow_lab\n%ecflow start --port {port} --home {home}",
        SUITE.format(home=home),
        "%ecflow tree",
    ])
    seen: dict[str, list[tuple[str, str]]] = {}
    with LabSession(tmp_path / "root", timeout=120) as lab:
        page = lab.open(nb)
        page.wait_for_selector(".ecfl-row[data-path='/br/f1/c']", timeout=120_000)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            for row in page.evaluate(ROWS_JS):
                hist = seen.setdefault(row["path"], [])
                if not hist or hist[-1] != (row["state"], row["colour"]):
                    hist.append((row["state"], row["colour"]))
            if seen.get("/br/f1/c", [("", "")])[-1][0] == "complete":
                break
            time.sleep(0.1)
        c_states = [s for s, _ in seen["/br/f1/c"]]
        assert c_states[-1] == "complete", seen
        assert len(c_states) >= 2, f"/br/f1/c never changed colour in the page: {seen['/br/f1/c']}"
        colours = {c for _, c in seen["/br/f1/c"]}
        assert len(colours) >= 2 and STATE_COLOURS["complete"].replace(",", ", ") in colours

        client = Client("127.0.0.1", port)
        try:
            assert not _suspended(client, "/br/f2")
            page.click(".ecfl-row[data-path='/br/f2'] .ecfl-name", button="right")
            page.click(".ecfl-menu:not([hidden]) .ecfl-menu-item[data-action='suspend']")
            page.wait_for_selector(".ecfl-row[data-path='/br/f2'][data-suspended='1']", timeout=30_000)
            assert _suspended(client, "/br/f2")  # the server holds it, not just the page
            page.wait_for_function("document.querySelector('.ecfl-status').textContent.includes('suspend /br/f2: ok')",
                                   timeout=30_000)
            # search by name keeps matches and their ancestors; a state filter likewise
            visible = "() => [...document.querySelectorAll('.ecfl-row:not([hidden])')].map(r => r.dataset.path)"
            page.fill(".ecfl-search", "d")
            page.wait_for_function(f"({visible})().length === 3", timeout=10_000)
            assert page.evaluate(visible) == ["/br", "/br/f2", "/br/f2/d"]
            page.fill(".ecfl-search", "")
            page.click(".ecfl-filter[data-state='complete']")
            page.wait_for_function(f"({visible})().length === 5", timeout=10_000)
            assert page.evaluate(visible) == ["/br", "/br/f1", "/br/f1/a", "/br/f1/b", "/br/f1/c"]
            page.click(".ecfl-filter[data-state='complete']")
            page.wait_for_function(f"({visible})().length === 7", timeout=10_000)
            # why, from the context menu, answered by the server in the widget's why panel
            page.click(".ecfl-row[data-path='/br/f2/d'] .ecfl-name", button="right")
            page.click(".ecfl-menu:not([hidden]) .ecfl-menu-item[data-action='why']")
            page.wait_for_selector(".ecfl-why:not([hidden])", timeout=30_000)
            assert page.inner_text(".ecfl-why").strip()
            page.locator(".ecfl-why").scroll_into_view_if_needed()
            page.screenshot(path=str(tmp_path / "tree.png"), full_page=True)
        finally:
            client.close()
    assert (tmp_path / "tree.png").stat().st_size > 10_000
