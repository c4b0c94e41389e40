// ecflow_lab node tree: an anywidget front-end module (plain ESM, no build step).
//
// The Python side sends the whole table once (trait `snapshot`, binary) and then compact binary deltas
// (custom messages with one buffer). Rows are kept in typed arrays; only the rows inside the viewport are
// in the DOM (virtual scrolling), so 100,000 nodes cost about as much to show as 30.

const ROW_H = 22;
const OVERSCAN = 8;
const STATES = ["unknown", "complete", "queued", "aborted", "submitted", "active"];
const KINDS = ["suite", "family", "task", "alias"];
const SUSPENDED = 1;
const REMOVED = 2;
const SNAPSHOT_MAGIC = 0x45434631;
const DELTA_MAGIC = 0x45434644;
const decoder = new TextDecoder();

function dvOf(buf) {
  if (buf instanceof DataView) return buf;
  if (buf instanceof ArrayBuffer) return new DataView(buf);
  if (ArrayBuffer.isView(buf)) return new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  return null;
}

// copy a section out so typed arrays are aligned whatever the buffer's offset
function section(dv, off, bytes) {
  return dv.buffer.slice(dv.byteOffset + off, dv.byteOffset + off + bytes);
}

function splitNames(dv, off, len, n) {
  if (n === 0) return [];
  return decoder.decode(new Uint8Array(dv.buffer, dv.byteOffset + off, len)).split("\n");
}

function parseAttrs(dv, off, len) {
  if (!len) return {};
  return JSON.parse(decoder.decode(new Uint8Array(dv.buffer, dv.byteOffset + off, len)));
}

export function decodeSnapshot(buf) {
  const dv = dvOf(buf);
  if (!dv || dv.byteLength < 16) return null;
  const le = true;
  if (dv.getUint32(0, le) !== SNAPSHOT_MAGIC) throw new Error("ecflow tree: bad snapshot");
  const n = dv.getUint32(4, le), nlen = dv.getUint32(8, le), alen = dv.getUint32(12, le);
  let off = 16;
  const parent = new Int32Array(section(dv, off, 4 * n)); off += 4 * n;
  const state = new Uint8Array(section(dv, off, n)); off += n;
  const flags = new Uint8Array(section(dv, off, n)); off += n;
  const kind = new Uint8Array(section(dv, off, n)); off += n;
  const names = splitNames(dv, off, nlen, n); off += nlen;
  const attrs = parseAttrs(dv, off, alen);
  return { n, parent, state, flags, kind, names, attrs };
}

export function decodeDelta(buf) {
  const dv = dvOf(buf);
  const le = true;
  if (dv.getUint32(0, le) !== DELTA_MAGIC) throw new Error("ecflow tree: bad delta");
  const n = dv.getUint32(4, le), nnew = dv.getUint32(8, le);
  const nlen = dv.getUint32(12, le), alen = dv.getUint32(16, le);
  let off = 20;
  const rows = new Int32Array(section(dv, off, 4 * n)); off += 4 * n;
  const newParent = new Int32Array(section(dv, off, 4 * nnew)); off += 4 * nnew;
  const state = new Uint8Array(section(dv, off, n)); off += n;
  const flags = new Uint8Array(section(dv, off, n)); off += n;
  const newKind = new Uint8Array(section(dv, off, nnew)); off += nnew;
  const names = splitNames(dv, off, nlen, nnew); off += nlen;
  const attrs = parseAttrs(dv, off, alen);
  return { rows, state, flags, newParent, newKind, names, attrs };
}

function grow(arr, cap) {
  const out = new arr.constructor(cap);
  out.set(arr);
  return out;
}

// The tree model in the browser: typed columns + child links + expansion state.
class Table {
  constructor(snap, expandDepth) {
    this.n = snap.n;
    this.cap = Math.max(16, snap.n);
    this.parent = snap.parent;
    this.state = snap.state;
    this.flags = snap.flags;
    this.kind = snap.kind;
    this.names = snap.names;
    this.attrs = snap.attrs;
    this.paths = new Array(this.n);
    this.depth = new Uint16Array(this.cap);
    this.expanded = new Uint8Array(this.cap);
    this.link();
    for (let i = 0; i < this.n; i++) if (this.depth[i] < expandDepth) this.expanded[i] = 1;
  }
  link() {
    const cap = this.cap;
    this.firstChild = new Int32Array(cap).fill(-1);
    this.lastChild = new Int32Array(cap).fill(-1);
    this.nextSibling = new Int32Array(cap).fill(-1);
    this.roots = [];
    for (let i = 0; i < this.n; i++) this.attach(i);
  }
  attach(i) {
    const p = this.parent[i];
    if (p < 0) { this.roots.push(i); this.depth[i] = 0; return; }
    this.depth[i] = this.depth[p] + 1;
    if (this.firstChild[p] < 0) this.firstChild[p] = i; else this.nextSibling[this.lastChild[p]] = i;
    this.lastChild[p] = i;
  }
  ensure(cap) {
    if (cap <= this.cap) return;
    const c = Math.max(cap, this.cap * 2);
    for (const k of ["parent", "state", "flags", "kind", "depth", "expanded", "firstChild", "lastChild", "nextSibling"]) {
      const old = this[k];
      this[k] = grow(old, c);
      if (k === "firstChild" || k === "lastChild" || k === "nextSibling") this[k].fill(-1, old.length);
    }
    this.cap = c;
  }
  path(i) {
    let p = this.paths[i];
    if (p === undefined) {
      const par = this.parent[i];
      p = (par < 0 ? "" : this.path(par)) + "/" + this.names[i];
      this.paths[i] = p;
    }
    return p;
  }
  // apply a decoded delta; returns true when the set of rows changed (structure or removal)
  apply(d, expandDepth) {
    let structural = false;
    const nnew = d.newParent.length;
    if (nnew) {
      this.ensure(this.n + nnew);
      const base = this.n;
      for (let j = 0; j < nnew; j++) {
        const i = base + j;
        this.parent[i] = d.newParent[j];
        this.kind[i] = d.newKind[j];
        this.names[i] = d.names[j];
        this.n = i + 1;
        this.attach(i);
        if (this.depth[i] < expandDepth) this.expanded[i] = 1;
      }
      structural = true;
    }
    const rows = d.rows;
    for (let j = 0; j < rows.length; j++) {
      const r = rows[j];
      if ((this.flags[r] ^ d.flags[j]) & REMOVED) structural = true;
      this.state[r] = d.state[j];
      this.flags[r] = d.flags[j];
    }
    for (const k in d.attrs) this.attrs[k] = d.attrs[k];
    return structural;
  }
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function attrChips(a) {
  const out = [];
  if (!a) return out;
  if (a.e) for (const k in a.e) {
    const c = el("span", "ecfl-chip ecfl-event" + (a.e[k] ? " ecfl-set" : ""), (a.e[k] ? "\u25cf " : "\u25cb ") + k);
    c.title = `event ${k}: ${a.e[k] ? "set" : "clear"}`;
    out.push(c);
  }
  if (a.m) for (const k in a.m) {
    const [v, lo, hi] = a.m[k];
    const c = el("span", "ecfl-chip ecfl-meter");
    const bar = el("span", "ecfl-meter-bar");
    const frac = hi > lo ? Math.max(0, Math.min(1, (v - lo) / (hi - lo))) : 0;
    bar.style.width = `${Math.round(frac * 40)}px`;
    c.append(el("span", "", `${k} `), bar, el("span", "", ` ${v}`));
    c.title = `meter ${k}: ${v} (${lo}..${hi})`;
    out.push(c);
  }
  if (a.l) for (const k in a.l) {
    const c = el("span", "ecfl-chip ecfl-label", `${k}: ${a.l[k]}`);
    c.title = `label ${k}`;
    out.push(c);
  }
  if (a.r) out.push(el("span", "ecfl-chip ecfl-repeat", `${a.r[0]}=${a.r[1]}`));
  if (a.t && a.t > 1) out.push(el("span", "ecfl-chip ecfl-try", `try ${a.t}`));
  return out;
}

function render({ model, el: host }) {
  const t0 = performance.now();
  const colours = () => model.get("colours") || {};
  const root = el("div", "ecfl-tree");
  root.setAttribute("tabindex", "0");
  const bar = el("div", "ecfl-toolbar");
  const title = el("span", "ecfl-title", model.get("title") || "");
  const srv = el("span", "ecfl-server");
  const search = el("input", "ecfl-search");
  search.type = "search";
  search.placeholder = "search name or path";
  const chips = el("span", "ecfl-filters");
  const filter = new Set();
  const filterNames = [...STATES, "suspended"];
  const chipEls = {};
  for (const s of filterNames) {
    const c = el("button", "ecfl-filter", s);
    c.dataset.state = s;
    c.title = `show only ${s} nodes (click again to clear)`;
    c.onclick = () => {
      if (filter.has(s)) filter.delete(s); else filter.add(s);
      c.classList.toggle("ecfl-on", filter.has(s));
      rebuild(); paint();
    };
    chipEls[s] = c;
    chips.append(c);
  }
  const expandAll = el("button", "ecfl-btn", "expand all");
  const collapseAll = el("button", "ecfl-btn", "collapse");
  const count = el("span", "ecfl-count");
  bar.append(title, srv, search, chips, expandAll, collapseAll, count);
  const viewport = el("div", "ecfl-viewport");
  const spacer = el("div", "ecfl-spacer");
  const layer = el("div", "ecfl-layer");
  viewport.append(spacer, layer);
  const status = el("div", "ecfl-status");
  const why = el("pre", "ecfl-why");
  why.hidden = true;
  const menu = el("div", "ecfl-menu");
  menu.hidden = true;
  root.append(bar, viewport, status, why, menu);
  host.append(root);

  let T = null;
  let visible = new Int32Array(0);
  let nvis = 0;
  let selected = -1;
  let pending = false;
  const pool = [];

  function load() {
    const snap = decodeSnapshot(model.get("snapshot"));
    T = snap ? new Table(snap, model.get("expand_depth")) : null;
    rebuild();
  }

  // visible rows in display order: depth-first over expanded nodes, or matches + ancestors when filtering
  function rebuild() {
    if (!T) { visible = new Int32Array(0); nvis = 0; return; }
    const q = search.value.trim().toLowerCase();
    const filtering = filter.size > 0 || q.length > 0;
    let keep = null;
    if (filtering) {
      keep = new Uint8Array(T.n);
      const want = new Uint8Array(STATES.length);
      for (const s of filter) { const k = STATES.indexOf(s); if (k >= 0) want[k] = 1; }
      const wantSusp = filter.has("suspended");
      const anyState = filter.size === 0;
      const byPath = q.includes("/");
      for (let i = 0; i < T.n; i++) {
        if (T.flags[i] & REMOVED) continue;
        let ok = anyState || want[T.state[i]] || (wantSusp && (T.flags[i] & SUSPENDED));
        if (ok && q) ok = (byPath ? T.path(i) : T.names[i]).toLowerCase().includes(q);
        if (ok) for (let p = i; p >= 0 && !keep[p]; p = T.parent[p]) keep[p] = 1;
      }
    }
    const out = new Int32Array(T.n);
    let k = 0;
    const stack = [];
    for (let j = T.roots.length - 1; j >= 0; j--) stack.push(T.roots[j]);
    while (stack.length) {
      const i = stack.pop();
      if (T.flags[i] & REMOVED) continue;
      if (keep && !keep[i]) continue;
      out[k++] = i;
      if (keep || T.expanded[i]) {
        const kids = [];
        for (let c = T.firstChild[i]; c >= 0; c = T.nextSibling[c]) kids.push(c);
        for (let j = kids.length - 1; j >= 0; j--) stack.push(kids[j]);
      }
    }
    visible = out;
    nvis = k;
    spacer.style.height = `${nvis * ROW_H}px`;
  }

  function counts() {
    if (!T) return "";
    const c = new Array(STATES.length).fill(0);
    let live = 0;
    for (let i = 0; i < T.n; i++) if (!(T.flags[i] & REMOVED)) { c[T.state[i]]++; live++; }
    const parts = [`${live} nodes`];
    for (let s = 0; s < STATES.length; s++) if (c[s] && s !== 0) parts.push(`${STATES[s]} ${c[s]}`);
    return parts.join(" \u00b7 ");
  }

  function makeRow() {
    const r = el("div", "ecfl-row");
    r._tog = el("span", "ecfl-tog");
    r._box = el("span", "ecfl-box");
    r._name = el("span", "ecfl-name");
    r._susp = el("span", "ecfl-susp", "S");
    r._susp.title = "suspended";
    r._attrs = el("span", "ecfl-attrs");
    r.append(r._tog, r._box, r._name, r._susp, r._attrs);
    layer.append(r);
    return r;
  }

  function paint() {
    pending = false;
    const h = model.get("height");
    viewport.style.height = `${h}px`;
    const top = viewport.scrollTop;
    const first = Math.max(0, Math.floor(top / ROW_H) - OVERSCAN);
    const last = Math.min(nvis, Math.ceil((top + h) / ROW_H) + OVERSCAN);
    const need = last - first;
    while (pool.length < need) pool.push(makeRow());
    const col = colours();
    for (let j = 0; j < pool.length; j++) {
      const r = pool[j];
      if (j >= need) { if (!r.hidden) r.hidden = true; continue; }
      const v = first + j;
      const i = visible[v];
      r.hidden = false;
      r.style.transform = `translateY(${v * ROW_H}px)`;
      const st = STATES[T.state[i]];
      const susp = (T.flags[i] & SUSPENDED) !== 0;
      if (r._row !== i) {
        r._row = i;
        r.dataset.row = i;
        r.dataset.path = T.path(i);
        r.dataset.kind = KINDS[T.kind[i]];
        r._name.textContent = T.names[i];
        r.style.paddingLeft = `${4 + 16 * T.depth[i]}px`;
      }
      r.dataset.state = st;
      r.dataset.suspended = susp ? "1" : "0";
      r._box.style.background = col[st] || "#ddd";
      r._box.style.outline = susp ? `2px solid ${col.suspended || "orange"}` : "";
      r._susp.hidden = !susp;
      const hasKids = T.firstChild[i] >= 0;
      r._tog.textContent = hasKids ? (T.expanded[i] ? "\u25be" : "\u25b8") : "";
      r.classList.toggle("ecfl-selected", i === selected);
      const a = T.attrs[i];
      if (r._attrsOf !== a || r._attrsRow !== i) {
        r._attrsOf = a; r._attrsRow = i;
        r._attrs.replaceChildren(...attrChips(a));
      }
    }
    count.textContent = counts();
  }

  function schedule() {
    if (!pending) { pending = true; requestAnimationFrame(paint); }
  }

  function afterPaint(key, start) {
    requestAnimationFrame(() => {
      root.dataset[key] = (performance.now() - start).toFixed(1);
      root.dataset.updates = String((+root.dataset.updates || 0) + (key === "lastUpdateMs" ? 1 : 0));
    });
  }

  function rowAt(ev) {
    const r = ev.target.closest(".ecfl-row");
    return r && r._row !== undefined ? r._row : -1;
  }

  viewport.addEventListener("scroll", schedule, { passive: true });
  layer.addEventListener("click", (ev) => {
    const i = rowAt(ev);
    if (i < 0) return;
    if (ev.target.classList.contains("ecfl-tog") && T.firstChild[i] >= 0) {
      T.expanded[i] ^= 1;
      rebuild();
    }
    selected = i;
    paint();
  });
  layer.addEventListener("contextmenu", (ev) => {
    const i = rowAt(ev);
    if (i < 0) return;
    ev.preventDefault();
    selected = i;
    openMenu(i, ev.clientX, ev.clientY);
    paint();
  });
  search.addEventListener("input", () => { rebuild(); viewport.scrollTop = 0; paint(); });
  expandAll.onclick = () => { if (T) { T.expanded.fill(1); rebuild(); paint(); } };
  collapseAll.onclick = () => { if (T) { T.expanded.fill(0); rebuild(); paint(); } };

  function openMenu(i, x, y) {
    const path = T.path(i);
    menu.replaceChildren(el("div", "ecfl-menu-title", path));
    for (const action of model.get("actions")) {
      const item = el("div", "ecfl-menu-item", action);
      item.dataset.action = action;
      item.onclick = (e) => {
        e.stopPropagation();
        menu.hidden = true;
        status.textContent = `${action} ${path} \u2026`;
        model.send({ type: "action", action, path });
      };
      menu.append(item);
    }
    const rect = root.getBoundingClientRect();
    menu.style.left = `${x - rect.left}px`;
    menu.style.top = `${y - rect.top}px`;
    menu.hidden = false;
  }
  const closeMenu = (ev) => { if (!menu.contains(ev.target)) menu.hidden = true; };
  document.addEventListener("click", closeMenu);

  function onMsg(msg, buffers) {
    if (msg.type === "delta") {
      const start = performance.now();
      if (!T || msg.generation !== model.get("generation")) return; // a snapshot is on its way
      const d = decodeDelta(buffers[0]);
      const structural = T.apply(d, model.get("expand_depth"));
      if (structural || filter.size || search.value) rebuild();
      paint();
      afterPaint("lastUpdateMs", start);
      if (msg.sent) requestAnimationFrame(() => { root.dataset.lastLatencyMs = (Date.now() - msg.sent).toFixed(1); });
    } else if (msg.type === "result") {
      status.textContent = `${msg.action} ${msg.path}: ${msg.ok ? "ok" : "failed: " + msg.text}`;
      status.classList.toggle("ecfl-error", !msg.ok);
      if (msg.action === "why" || !msg.ok) {
        why.textContent = msg.text;
        why.hidden = !msg.text;
      }
    }
  }
  model.on("msg:custom", onMsg);
  const onSnap = () => { const s = performance.now(); load(); paint(); afterPaint("lastSnapshotMs", s); };
  model.on("change:snapshot", onSnap);
  const onTitle = () => { title.textContent = model.get("title"); };
  model.on("change:title", onTitle);
  const onServer = () => {
    const s = model.get("server_state");
    srv.textContent = s;
    srv.dataset.state = s;
    srv.hidden = !s;
  };
  model.on("change:server_state", onServer);
  const onStatus = () => { status.textContent = model.get("status"); };
  model.on("change:status", onStatus);
  const onHeight = () => schedule();
  model.on("change:height", onHeight);

  onServer();
  load();
  paint();
  afterPaint("firstPaintMs", t0);
  model.send({ type: "hello", generation: model.get("generation") });

  return () => {
    document.removeEventListener("click", closeMenu);
    model.off("msg:custom", onMsg);
    model.off("change:snapshot", onSnap);
    model.off("change:title", onTitle);
    model.off("change:server_state", onServer);
    model.off("change:status", onStatus);
    model.off("change:height", onHeight);
  };
}

export default { render };
