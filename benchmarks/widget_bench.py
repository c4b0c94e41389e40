"""Widget benchmark in a real JupyterLab + Chromium: node tree first paint, 1,000-change update, Gantt.

    python benchmarks/widget_bench.py [--nodes 100000] [--changes 1000] [--bars 10000]

Prints, in ms:
* tree first paint: browser time from the view's render() to the frame after the rows are in the DOM
  (decode of the binary snapshot + child links + visible list + rows), and the end-to-end time from the
  cell starting to the rows being visible;
* tree update: one throttled binary delta with N state changes, browser receipt -> painted frame, and
  Python send -> painted frame (same machine clock);
* Gantt of N tasks: Python build time, time from the cell to the first Bokeh canvas (BokehJS itself is
  loaded once per kernel, in the first cell), and the standalone HTML export.
Targets (issue 7): first paint < 1000 ms, update < 100 ms.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ecflow_lab.jupyter.browser import LabSession, chromium_path, write_notebook  # noqa: E402

SETUP = '''
import time, random
from ecflow_lab.jupyter.gantt import load_bokehjs
load_bokehjs()  # once per kernel (inline BokehJS, ~1.3 MB): not part of the Gantt's own time
from ecflow_lab.jupyter.rows import RowTable
from ecflow_lab.jupyter.tree import NodeTree
N = {nodes}
rows = []
per_family = 100
n_fam = max(1, N // (per_family + 1) // 10)
for s in range(10):
    rows.append((f"/s{{s}}", 0, 2))
    for f in range(n_fam):
        rows.append((f"/s{{s}}/f{{f}}", 1, 2))
        for t in range(per_family):
            rows.append((f"/s{{s}}/f{{f}}/t{{t}}", 2, 2))
table = RowTable.from_rows(rows)
tree = NodeTree(table=table, title=f"{{len(table)}} nodes", expand_depth=3)
print("NODES", len(table))
'''

SHOW_TREE = '''
print("T_TREE", time.time() * 1000)
tree
'''

UPDATE = '''
time.sleep(2.0)  # let the first paint settle
random.seed(1)
for r in random.sample(range(len(table)), {changes}):
    table.apply({{"changes": [{{"path": table.paths[r], "state": "complete"}}]}})
print("T_DELTA", time.time() * 1000)
tree.flush()
'''

GANTT = '''
time.sleep(2.0)  # the bench scrolls this cell into view meanwhile
from ecflow_lab.jupyter.gantt import Gantt
t0 = time.perf_counter()
spans = [{{"task": i, "name": f"fn{{i % 7}}-{{i}}", "worker": f"host/w{{i % 8}}", "start": 1000.0 + (i // 8) * 0.01,
          "end": 1000.0 + (i // 8) * 0.01 + 0.008, "kind": f"fn{{i % 7}}", "phase": "compute", "ok": True}}
         for i in range({bars})]
g = Gantt(spans, title="{bars} tasks")
print("GANTT_BUILD_MS", (time.perf_counter() - t0) * 1000, "backend", g.figure.output_backend)
t0 = time.perf_counter(); html = g.to_html(); print("GANTT_HTML_MS", (time.perf_counter() - t0) * 1000, len(html))
print("T_GANTT", time.time() * 1000)
g.widget()
'''

OBSERVER = '''
() => {
  window.__ecfl = {};
  // Bokeh draws inside shadow roots: look through them for the Gantt's canvas
  const deepCanvas = (root) => {
    for (const e of root.querySelectorAll('*')) {
      if (e.tagName === 'CANVAS') return true;
      if (e.shadowRoot && deepCanvas(e.shadowRoot)) return true;
    }
    return false;
  };
  const obs = new MutationObserver(() => {
    if (!window.__ecfl.rows && document.querySelector('.ecfl-row')) window.__ecfl.rows = Date.now();
  });
  obs.observe(document.body, {childList: true, subtree: true});
  const poll = setInterval(() => {
    const outs = [...document.querySelectorAll('.jp-OutputArea-output')].filter(o => !o.querySelector('.ecfl-tree'));
    if (outs.some(o => deepCanvas(o))) { window.__ecfl.canvas = Date.now(); clearInterval(poll); }
  }, 10);
}
'''


def output_value(page, key: str, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = page.inner_text(".jp-Notebook")
        for line in text.splitlines():
            if line.startswith(key + " "):
                return line.split(" ", 1)[1]
        errors = page.query_selector_all(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
        if errors:
            raise RuntimeError("notebook error: " + errors[0].inner_text()[:2000])
        time.sleep(0.1)
    raise TimeoutError(f"no {key} in the notebook output")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=100_000)
    ap.add_argument("--changes", type=int, default=1000)
    ap.add_argument("--bars", type=int, default=10_000)
    ap.add_argument("--shot", default=None, help="save a screenshot here")
    a = ap.parse_args(argv)
    if chromium_path() is None:
        print("widget_bench: no Chromium (/usr/bin/chromium); nothing measured")
        return 1
    work = Path(tempfile.mkdtemp(prefix="ecfl-bench-"))
    nb = write_notebook(work / "widget_bench.ipynb", [
        SETUP.format(nodes=a.nodes), SHOW_TREE, UPDATE.format(changes=a.changes), GANTT.format(bars=a.bars)])
    with LabSession(work) as lab:
        page = lab.open(nb, run_all=False)
        page.evaluate(OBSERVER)
        lab.run_all()
        nodes = int(output_value(page, "NODES"))
        t_tree = float(output_value(page, "T_TREE"))
        page.wait_for_selector(".ecfl-tree[data-first-paint-ms]", timeout=60000)
        first_paint = float(page.get_attribute(".ecfl-tree", "data-first-paint-ms"))
        rows_at = page.evaluate("window.__ecfl.rows")
        output_value(page, "T_DELTA")
        page.wait_for_selector(".ecfl-tree[data-last-update-ms]", timeout=60000)
        page.wait_for_selector(".ecfl-tree[data-last-latency-ms]", timeout=60000)
        update = float(page.get_attribute(".ecfl-tree", "data-last-update-ms"))
        latency = float(page.get_attribute(".ecfl-tree", "data-last-latency-ms"))
        n_dom = page.evaluate("document.querySelectorAll('.ecfl-row:not([hidden])').length")
        n_complete = page.evaluate("document.querySelectorAll('.ecfl-row[data-state=complete]').length")
        page.evaluate("""() => { const s = document.querySelector('.jp-WindowedPanel-outer') ||
                                   document.querySelector('.jp-Notebook'); s.scrollTop = s.scrollHeight; }""")
        build = output_value(page, "GANTT_BUILD_MS").split()
        html_ms = output_value(page, "GANTT_HTML_MS").split()
        t_gantt = float(output_value(page, "T_GANTT"))
        deadline = time.monotonic() + 60
        canvas_at = None
        while time.monotonic() < deadline and not canvas_at:
            if lab.find_canvas():
                canvas_at = time.time() * 1000
            else:
                time.sleep(0.03)
        if a.shot:
            page.screenshot(path=a.shot)
    print(f"tree: {nodes} nodes, {n_dom} rows in the DOM (virtual scrolling), {n_complete} visible rows complete")
    print(f"tree first paint (browser, render -> painted frame):      {first_paint:8.1f} ms   target < 1000 ms"
          f"  {first_paint / 1000:.3f}x of target  {'OK' if first_paint < 1000 else 'MISSED'}")
    if rows_at:
        print(f"tree first paint (end to end, cell -> rows visible):      {rows_at - t_tree:8.1f} ms")
    print(f"tree update, {a.changes} changes (browser, receipt -> frame):  {update:8.1f} ms   target < 100 ms"
          f"  {update / 100:.3f}x of target  {'OK' if update < 100 else 'MISSED'}")
    print(f"tree update, {a.changes} changes (Python send -> frame):      {latency:8.1f} ms")
    print(f"gantt {a.bars} tasks: build {float(build[0]):.1f} ms (backend {build[2]}), "
          f"standalone HTML {float(html_ms[0]):.1f} ms ({int(html_ms[1]) // 1024} KiB), "
          + (f"cell -> first canvas {canvas_at - t_gantt:.1f} ms" if canvas_at else "no canvas seen"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
