"""The server's command layer: every request of the protocol, on top of :class:`Scheduler`.

``Engine.dispatch(cmd, args, payload, user)`` returns ``(result, payload)``; errors are raised as
RuntimeError with a message meant for the user (the Client re-raises it as ecflow does).
"""

from __future__ import annotations

import gzip
import os
import shlex
import socket
import sys
import threading
import time
import zlib
from collections import deque
from pathlib import Path
from typing import Any

import ecflow_lab.protocol as protocol
from ecflow_lab.defs.state import NState
from ecflow_lab.server import model as M
from ecflow_lab.server.jobs import PreprocessError, locate_script, preprocess
from ecflow_lab.server.scheduler import SERVER_DEFAULTS, A, C, Q, R, S, Scheduler

VERSION = "ecflow_lab 0.1.0 (ecFlow 5.x compatible)"


def _release_memory() -> None:
    """Give the parser's garbage back to the OS (glibc keeps freed arenas otherwise)."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _gz(data: bytes | memoryview, tail: bytes = b"") -> bytes:
    """One gzip member (members concatenate: gzip.decompress of the join is the joined text)."""
    c = zlib.compressobj(1, zlib.DEFLATED, 31)
    return c.compress(data) + c.compress(tail) + c.flush()


class Engine(Scheduler):
    """Scheduler + request dispatch + checkpoints + client handles, for one :class:`SuiteServer`."""

    def __init__(self, server: Any, clock: Any = None) -> None:
        super().__init__(None, clock=clock, home=str(server.home), log=server.log)
        self.server = server
        self.server_vars.update({"ECF_HOST": server.host if server.host not in ("0.0.0.0", "") else
                                 socket.gethostname(), "ECF_PORT": str(server.port),
                                 "ECF_LOG": str(server.file("ecf.log")),
                                 "ECF_CHECK": str(server.file("ecf.check")),
                                 "ECF_CHECKOLD": str(server.file("ecf.check")) + ".b"})
        self.server_state = "HALTED"
        self.handles: dict[int, dict[str, Any]] = {}
        self._next_handle = 1
        self.debug = False
        self.request_times: deque[float] = deque(maxlen=10000)
        self.commands = {name[4:]: getattr(self, name) for name in dir(self) if name.startswith("cmd_")}
        self._install_client_shim()

    def _install_client_shim(self) -> None:
        """Jobs of this server find an ``ecflow_client`` that talks to it: ``HOME/.ecflow_lab/bin`` comes
        first on the jobs' PATH, and ECF_CLIENT_EXE_PATH (used by ecFlow's own head.h) points there too, so
        existing scripts calling ``ecflow_client --init=$$`` run unchanged."""
        shim_dir = self.server.home / ".ecflow_lab" / "bin"
        try:
            shim_dir.mkdir(parents=True, exist_ok=True)
            body = f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m ecflow_lab client "$@"\n'
            exe = shim_dir / "ecflow_client"
            _write_if_changed(exe, body, 0o755)
            # and ecf_http.sh (`. ecf_http.sh; ecf_child meter name=m value=5`): child commands in bash alone
            _write_if_changed(shim_dir / "ecf_http.sh", Path(__file__).with_name("ecf_http.sh").read_text(), 0o644)
        except OSError as exc:
            self._err(f"cannot install the ecflow_client shim in {shim_dir}: {exc}")
            return
        self.job_env["PATH"] = f"{shim_dir}{os.pathsep}{os.environ.get('PATH', '')}"
        if getattr(self.server, "direct_port", 0):
            self.job_env["ECF_LAB_DIRECT_PORT"] = str(self.server.direct_port)
        if getattr(self.server, "ssl", None):   # the jobs' ecflow_client must encrypt as well
            self.job_env["ECF_SSL"] = str(self.server.ssl)
        self.server_vars.setdefault("ECF_CLIENT_EXE_PATH", str(exe))

    def set_http_port(self, port: int) -> None:
        self.server_vars["ECF_HTTP_PORT"] = str(port)

    # ------------------------------------------------------------------ dispatch
    def dispatch(self, cmd: str, args: dict[str, Any], payload: bytes | None, user: str) -> tuple[Any, Any]:
        if cmd in protocol.CHILD_COMMANDS:
            return self.child(cmd, args), None
        fn = self.commands.get(cmd)
        if fn is None:
            raise RuntimeError(f"unknown request {cmd!r}")
        self.user_cmds += 1
        self._cmd_context = True     # ecFlow's command context: a node completed by a user command
        out = fn(args, payload, user)
        if self.need_traversal:
            self.traverse_now = True
        if isinstance(out, tuple):
            return out
        return out, None

    def _node(self, path: str) -> Any:
        n = M.find_abs(self.defs, path)
        if n is None:
            raise RuntimeError(f"node {path} not found in the server definition")
        return n

    def _nodes(self, args: dict[str, Any]) -> list[Any]:
        paths = args.get("paths") or []
        if not paths:
            raise RuntimeError("no node path given")
        return [self._node(p) for p in paths]

    def _user_log(self, user: str, text: str) -> None:
        self._msg(f"{text}  :{user or 'user'}")

    # ------------------------------------------------------------------ server
    def cmd_ping(self, a, p, u):
        return None

    def cmd_info(self, a, p, u):
        s = self.server
        return {"host": s.host, "port": s.port, "pub_port": s.pub_port, "http_port": s.http_port,
                "direct_port": s.direct_port,
                "server_id": s.server_id, "home": str(s.home), "state": self.server_state, "seq": s.seq}

    def cmd_server_version(self, a, p, u):
        return VERSION

    def cmd_server_state(self, a, p, u):
        state = str(a.get("state", "")).upper()
        self.set_server_state(state)
        self._user_log(u, {"RUNNING": "--restart", "HALTED": "--halt", "SHUTDOWN": "--shutdown"}[state])
        return None

    def cmd_terminate(self, a, p, u):
        self._user_log(u, "--terminate")
        self.server.request_stop()
        return None

    def cmd_stats(self, a, p, u):
        s = self.server
        n_tasks = sum(1 for s_ in M.suites(self.defs) for n in M.walk(s_) if M.is_task(n))
        lines = [
            "Server statistics",
            f"   Version                         {VERSION}",
            f"   Status                          {self.server_state}",
            f"   Host                            {s.host}",
            f"   Port                            {s.port}",
            f"   HTTP port (child commands)      {s.http_port}",
            f"   PUB port (deltas)               {s.pub_port}",
            f"   Up since                        {time.ctime(s.started_at)}",
            f"   ECF_HOME                        {s.home}",
            f"   Check pt mode                   {s.checkpoint_mode}",
            f"   Check pt interval               {s.checkpoint_interval}",
            f"   Check pt save time              {getattr(s.saver, 'last_save_s', 0):.3f}",
            f"   Suites                          {len(M.suites(self.defs))}",
            f"   Tasks                           {n_tasks}",
            f"   Jobs submitted                  {self.submitted_jobs}",
            f"   Requests                        {s.requests}",
            f"   Child commands                  {self.child_cmds}",
            f"   User commands                   {self.user_cmds}",
            f"   Zombies                         {len(self.zombies)}",
            f"   Delta sequence                  {s.seq}",
        ]
        return "\n".join(lines) + "\n"

    def cmd_stats_reset(self, a, p, u):
        self.child_cmds = self.user_cmds = 0
        self.server.requests = 0
        return None

    def cmd_debug_server(self, a, p, u):
        self.debug = bool(a.get("on"))
        return None

    def cmd_reload(self, a, p, u):
        """reload_wl_file / reload_passwd_file / reload_custom_passwd_file: a bad file is refused with its
        name and line, and the rules in force stay."""
        what = a.get("what", "")
        access = getattr(self.server, "access", None)
        if access is None:
            self._user_log(u, f"--reload {what}: no {what} file in use (every user may connect)")
            return None
        path = access.reload(what)
        self._user_log(u, f"--reload {what} {path}")
        curve = getattr(self.server, "curve", None)
        if curve is not None and what in ("white_list", "wl"):
            curve.set_allowed()   # keys authorized since the start (`ecflow-lab keys authorize`) count now
            self._user_log(u, f"--reload {what}: {len(curve.allowed)} Curve client key(s) accepted")
        return None

    def cmd_log(self, a, p, u):
        log = self.server.log
        action = a.get("action", "get")
        if action == "get":
            return log.tail(int(a.get("lines", 100)))
        if action == "clear":
            log.clear()
        elif action == "flush":
            log.flush()
        elif action == "new":
            log.new_log(a.get("path") or None)
        elif action == "msg":
            log.msg(f"--msg {a.get('msg', '')}  :{u}")
        else:
            raise RuntimeError(f"log: unknown action {action!r}")
        return None

    def cmd_checkpt(self, a, p, u):
        mode = str(a.get("mode") or "UNDEFINED").upper().replace("CHECK_", "")
        interval = int(a.get("interval") or 0)
        s = self.server
        if mode in ("NEVER", "ON_TIME", "ALWAYS"):
            s.checkpoint_mode = mode
        elif mode != "UNDEFINED":
            raise RuntimeError(f"checkpt: mode must be NEVER, ON_TIME or ALWAYS, got {mode!r}")
        if interval > 0:
            s.checkpoint_interval = interval
        if mode == "UNDEFINED" and interval == 0:
            s.checkpoint(wait=True)
            self._user_log(u, "--check_pt")
        return None

    def cmd_restore_from_checkpt(self, a, p, u):
        if self.server_state != "HALTED":
            raise RuntimeError("restore_from_checkpt: the server must be HALTED")
        if M.suites(self.defs):
            raise RuntimeError("restore_from_checkpt: the server already has suites; delete them first")
        from ecflow_lab.server.checkpoint import read_checkpoint

        found = read_checkpoint(self.server.file("ecf.check"))
        if not found:
            raise RuntimeError(f"restore_from_checkpt: no checkpoint file {self.server.file('ecf.check')}")
        self.restore_text(found[0], found[1])
        self._user_log(u, f"--restore_from_checkpt {found[1]}")
        return None

    def restore_text(self, text: str, fname: str) -> None:
        """Replace the definition by a checkpoint (state form); calendars continue, jobs keep running."""
        defs = M.parse_state(text, fname)
        old = [M.path(s) for s in M.suites(self.defs)]
        self.defs = defs
        self._calendars.clear()
        for s in M.suites(defs):
            if M.begun(s):
                self.calendar(s)
        self._structure_changed(added=[M.path(s) for s in M.suites(defs)], removed=old)

    # ------------------------------------------------------------------ definitions
    def cmd_load(self, a, payload, u):
        raw = payload or b""
        text = raw.decode()
        name = a.get("name") or "<load>"
        # the per-suite source text is compressed in a helper thread while this one parses (zlib releases
        # the GIL); the thread is joined before this request returns
        segments = M.split_suites_bytes(raw)
        packed: dict[str, bytes] = {}
        helper = None
        if segments:
            def pack(segs: list[tuple[str, memoryview]]) -> None:
                for seg_name, seg in segs:
                    packed[seg_name] = _gz(seg, b"\n")

            helper = threading.Thread(target=pack, args=(segments,), name="ecflow-lab-load-gzip", daemon=True)
            helper.start()
        try:
            new = M.parse_defs(text, name)
            problems = M.check(new)
        finally:
            if helper is not None:
                helper.join()
        force = bool(a.get("force"))
        if problems:
            raise RuntimeError(f"load: {name}: {problems}")
        existing = {M.name(s) for s in M.suites(self.defs)}
        clash = [M.name(s) for s in M.suites(new) if M.name(s) in existing]
        if clash and not force:
            raise RuntimeError(f"load: suite(s) {', '.join(clash)} already loaded; use force to overwrite")
        if segments is not None and [n for n, _ in segments] != [M.name(s) for s in M.suites(new)]:
            packed.clear()
        added = []
        for s in list(M.suites(new)):
            old = M.find_suite(self.defs, M.name(s))
            if old is not None:
                self._check_no_running(old, "load", force=True)
                M.remove_node(self.defs, old)
            M.remove_node(new, s)
            M.add_suite(self.defs, s)
            added.append(M.path(s))
            self._auto_add_handles(M.name(s))
        for k, v in M.server_user_vars(new).items():
            M.set_server_user_var(self.defs, k, v)
        self._structure_changed(added=added)
        self._suite_src.update(packed)
        segments = None      # release the memoryviews before the payload goes
        del text, raw, new
        _release_memory()
        self._user_log(u, f"--load {name}")
        return None

    def _check_no_running(self, node: Any, what: str, force: bool) -> None:
        if force:
            return
        running = [M.path(t) for t in M.walk(node) if M.is_task(t) and M.state(t) in (S, R)]
        if running:
            raise RuntimeError(f"{what}: {M.path(node)} has submitted/active tasks "
                               f"({', '.join(running[:5])}); use force")

    def cmd_replace(self, a, payload, u):
        path = a["path"]
        new_defs = M.parse_defs((payload or b"").decode(), "<replace>")
        new = M.find_abs(new_defs, path)
        if new is None:
            raise RuntimeError(f"replace: {path} is not in the given definition")
        old = M.find_abs(self.defs, path)
        if old is not None:
            self._check_no_running(old, "replace", bool(a.get("force")))
            parent = M.parent(old)
            M.replace_node(self.defs, old, new)
        else:
            if not a.get("parent", True):
                raise RuntimeError(f"replace: {path} does not exist in the server (use parent=True to add it)")
            M.add_node_path(self.defs, new_defs, path)
            parent = M.parent(M.find_abs(self.defs, path))
        node = M.find_abs(self.defs, path)
        s = M.suite_of(node)
        if s is not None and M.begun(s):
            self._requeue_tree(node, reset_repeats=True, user=True)
            self._apply_defstatus(node)
            self._recompute(node)
        elif parent is not None:
            pass
        self._structure_changed(added=[path], removed=[path] if old is not None else [])
        self._user_log(u, f"--replace {path}")
        return None

    def _visible_suites(self, handle: int) -> set[str] | None:
        if not handle:
            return None
        h = self.handles.get(int(handle))
        if h is None:
            raise RuntimeError(f"client handle {handle} is not registered")
        return set(h["suites"])

    def _suite_plain(self, s: Any) -> bytes:
        name = M.name(s)
        t = self._suite_cache.get(name)
        if t is None:
            src = self._suite_src.get(name)
            t = gzip.decompress(src) if src is not None else M.write_suite_state(s).encode()
            self._suite_cache[name] = t
        return t

    def _suite_gzip(self, s: Any) -> bytes:
        name = M.name(s)
        g = self._suite_src.get(name) or self._suite_gz.get(name)
        if g is None:
            g = self._suite_gz[name] = _gz(self._suite_plain(s))
        return g

    def state_bytes(self, handle: int = 0) -> bytes:
        """The definition with its state, in ecFlow's checkpoint form (UTF-8).

        Built per suite and cached until that suite changes; a suite untouched since it was loaded is
        served from the text it was loaded from (kept gzip-compressed), so a big definition is never
        re-written just to be downloaded or checkpointed."""
        names = self._visible_suites(handle) if handle else None
        if names is None and self._text_cache is not None:
            return self._text_cache
        M.update_defs_state(self.defs)
        parts = [M.state_header(self.defs).encode()]
        parts += [self._suite_plain(s) for s in M.suites(self.defs) if names is None or M.name(s) in names]
        parts.append(M.STATE_FOOTER.encode())
        data = b"".join(parts)
        if names is None:
            self._text_cache = data
        return data

    def state_text(self, handle: int = 0) -> str:
        """:meth:`state_bytes` as text."""
        return self.state_bytes(handle).decode()

    def state_gzip(self, handle: int = 0) -> bytes:
        """The same text as :meth:`state_text`, as concatenated gzip members (cheap to assemble)."""
        names = self._visible_suites(handle) if handle else None
        M.update_defs_state(self.defs)
        parts = [_gz(M.state_header(self.defs).encode())]
        parts += [self._suite_gzip(s) for s in M.suites(self.defs) if names is None or M.name(s) in names]
        parts.append(_gz(M.STATE_FOOTER.encode()))
        return b"".join(parts)

    def cmd_get_defs(self, a, p, u):
        self.server.flush_deltas()
        data = self.state_gzip(int(a.get("handle") or 0))
        return {"seq": self.server.seq, "server_id": self.server.server_id, "encoding": "gzip"}, data

    def cmd_news(self, a, p, u):
        self.server.flush_deltas()
        d = self.server.deltas_since(int(a.get("seq", -1)), str(a.get("server_id", "")))
        return {"news": d is None or bool(d), "seq": self.server.seq}

    def cmd_sync(self, a, p, u):
        self.server.flush_deltas()
        d = self.server.deltas_since(int(a.get("seq", -1)), str(a.get("server_id", "")))
        if d is None:
            return {"full": True, "seq": self.server.seq}
        return {"deltas": d, "seq": self.server.seq}

    def cmd_suites(self, a, p, u):
        return [M.name(s) for s in M.suites(self.defs)]

    def cmd_check(self, a, p, u):
        return M.check(self.defs) or ""

    # ------------------------------------------------------------------ handles
    def _auto_add_handles(self, suite: str) -> None:
        for h in self.handles.values():
            if h["auto_add"] and suite not in h["suites"]:
                h["suites"].append(suite)

    def cmd_ch(self, a, p, u):
        action = a.get("action")
        if action == "register":
            h = self._next_handle
            self._next_handle += 1
            names = {M.name(s) for s in M.suites(self.defs)}
            self.handles[h] = {"user": u, "auto_add": bool(a.get("auto_add")),
                               "suites": [s for s in a.get("suites", []) if s in names]}
            return h
        if action == "drop_user":
            owner = a.get("owner") or u
            for k in [k for k, h in self.handles.items() if h["user"] == owner]:
                del self.handles[k]
            return None
        if action == "suites":
            return "\n".join(f"{k} {' '.join(h['suites'])}" for k, h in self.handles.items())
        handle = int(a.get("handle") or 0)
        h = self.handles.get(handle)
        if h is None:
            raise RuntimeError(f"client handle {handle} is not registered")
        if action == "drop":
            del self.handles[handle]
        elif action == "add":
            h["suites"].extend(s for s in a.get("suites", []) if s not in h["suites"])
        elif action == "remove":
            h["suites"] = [s for s in h["suites"] if s not in a.get("suites", [])]
        elif action == "auto_add":
            h["auto_add"] = bool(a.get("auto_add"))
        else:
            raise RuntimeError(f"ch: unknown action {action!r}")
        return None

    # ------------------------------------------------------------------ node commands
    def cmd_begin(self, a, p, u):
        self.begin(a.get("suites") or None, bool(a.get("force")))
        return None

    def cmd_delete(self, a, p, u):
        force = bool(a.get("force"))
        nodes = list(M.suites(self.defs)) if a.get("all") else self._nodes(a)
        for n in nodes:
            self._check_no_running(n, "delete", force)
        removed = []
        for n in nodes:
            parent = M.parent(n)
            for t in M.walk(n):
                if M.is_task(t):
                    self._release_limits(t)
            removed.append(M.path(n))
            M.remove_node(self.defs, n)
            if parent is not None and not M.is_defs(parent):
                self._recompute(parent)
        self._structure_changed(removed=removed)
        self._user_log(u, f"--delete {' '.join(removed)}")
        return None

    def cmd_suspend(self, a, p, u):
        for n in self._nodes(a):
            self._set_suspended(n, True)
            self._user_log(u, f"--suspend {M.path(n)}")
        return None

    def cmd_resume(self, a, p, u):
        for n in self._nodes(a):
            self._set_suspended(n, False)
            self._user_log(u, f"--resume {M.path(n)}")
        self.need_traversal = True
        return None

    def cmd_requeue(self, a, p, u):
        option = a.get("option", "")
        for n in self._nodes(a):
            if option == "abort":
                for t in M.walk(n):
                    if M.is_task(t) and M.state(t) == A:
                        self._requeue_tree(t, reset_repeats=False, user=True)
                        self._propagate(M.parent(t))
            else:
                if option != "force":
                    self._check_no_running(n, "requeue", False)
                rep = M.repeat(n)
                if rep is not None:
                    rep.reset()
                    self._touch(n, "repeat", {"name": rep.name, "value": rep.value_as_string(), "index": rep.index})
                self._requeue_tree(n, reset_repeats=True, user=True)
                self._apply_defstatus(n) if M.defstatus(n) not in (None, "queued") else None
                self._propagate(M.parent(n))
            self._user_log(u, f"--requeue {option} {M.path(n)}")
        return None

    def cmd_force_state(self, a, p, u):
        name = str(a.get("state", ""))
        try:
            st = NState[name]
        except KeyError:
            raise RuntimeError(f"force: {name!r} is not a state; expected unknown, complete, queued, "
                               f"aborted, submitted or active") from None
        for n in self._nodes(a):
            targets = list(M.walk(n)) if a.get("recursive") else [n]
            for t in targets:
                if M.is_task(t) and st not in (S, R) and M.state(t) in (S, R):
                    self._release_limits(t)
                if st == Q:
                    if M.is_task(t):
                        M.set_tryno(t, 0)
                if st == A and M.is_task(t):
                    M.add_flag(t, "force_aborted")
                    self._touch(t, "flags", sorted(M.flags(t)))
                if st == C and M.is_task(t):
                    # through the scheduler: a task with more time slots is re-queued for the next one
                    self.miss_next_time_slot(t)
                    self.set_state(t, st, propagate=False)
                elif M.state(t) != st:
                    M.set_state(t, st)
                    self._touch(t, "state", st.name)
            self._propagate(M.parent(n))
            self._user_log(u, f"--force={name} {'recursive ' if a.get('recursive') else ''}{M.path(n)}")
        self.need_traversal = True
        return None

    def cmd_force_event(self, a, p, u):
        value = str(a.get("value", "set"))
        if value not in ("set", "clear"):
            raise RuntimeError(f"force_event: value must be 'set' or 'clear', got {value!r}")
        for ref in a.get("paths") or []:
            path, _, name = ref.rpartition(":")
            n = self._node(path)
            ev = M.find_event(n, name)
            if ev is None:
                raise RuntimeError(f"force_event: {path} has no event {name!r}")
            ev.value = value == "set"
            self._touch(n, "events", {ev.ident: ev.value})
            self._user_log(u, f"--force={value} {ref}")
        self.need_traversal = True
        return None

    def cmd_run(self, a, p, u):
        force = bool(a.get("force"))
        for n in self._nodes(a):
            tasks = [t for t in M.walk(n) if M.is_task(t)]
            for t in tasks:
                if M.state(t) in (S, R) and not force:
                    raise RuntimeError(f"run: {M.path(t)} is already {M.state(t).name}; use force")
            for t in tasks:
                if M.state(t) in (S, R):
                    self._release_limits(t)
                self.before_user_run(t)      # a single time dependency must not run again (seed 001)
                self.submit(t)
            self._user_log(u, f"--run {M.path(n)}")
        return None

    def cmd_kill(self, a, p, u):
        for n in self._nodes(a):
            for t in M.walk(n):
                if M.is_task(t) and M.state(t) in (S, R):
                    if not M.rid(t):
                        raise RuntimeError(f"kill: {M.path(t)} has no process id yet (ECF_RID is set by --init)")
                    self._run_cmd(t, "ECF_KILL_CMD", "kill")
                    M.add_flag(t, "killed")
                    self._touch(t, "flags", sorted(M.flags(t)))
            self._user_log(u, f"--kill {M.path(n)}")
        return None

    def cmd_status_cmd(self, a, p, u):
        for n in self._nodes(a):
            for t in M.walk(n):
                if M.is_task(t) and M.state(t) in (S, R):
                    self._run_cmd(t, "ECF_STATUS_CMD", "status")
                    M.add_flag(t, "status")
                    self._touch(t, "flags", sorted(M.flags(t)))
            self._user_log(u, f"--status {M.path(n)}")
        return None

    def cmd_job_generation(self, a, p, u):
        if a.get("path"):
            n = self._node(a["path"])
            for t in M.walk(n):
                if M.is_task(t) and M.state(t) == Q:
                    self._resolve_single(t)
        else:
            self.traverse()
        return None

    def _resolve_single(self, task: Any) -> None:
        if self.server_state == "RUNNING" and self.why_list(task) == []:
            self.submit(task)

    def cmd_free_dep(self, a, p, u):
        kinds = set(a.get("kinds") or ["trigger"])
        for n in self._nodes(a):
            if "trigger" in kinds:
                M.free_trigger(n)
            if "time" in kinds:
                self.free_time_deps(n)
            if "date" in kinds:
                self.free_date_deps(n)
            self._touch(n)
            self._user_log(u, f"--free-dep {','.join(sorted(kinds))} {M.path(n)}")
        self.need_traversal = True
        return None

    def cmd_alter(self, a, p, u):
        alter_type, attr_type = a.get("alter_type", ""), a.get("attr_type", "")
        name, value = str(a.get("name", "")), str(a.get("value", ""))
        for n in self._nodes(a):
            changed = M.alter(n, alter_type, attr_type, name, value, self)
            for k, v in (changed or {}).items():
                self._touch(n, k, v)
            self._touch(n)
            self._user_log(u, f"--alter {alter_type} {attr_type} {name} {value} {M.path(n)}")
        self.need_traversal = True
        return None

    def cmd_sort_attributes(self, a, p, u):
        for n in self._nodes(a):
            M.sort_attributes(n, a.get("attr", "all"), bool(a.get("recursive", True)))
            self._structure_changed()
        return None

    def cmd_order(self, a, p, u):
        n = self._node(a["path"])
        M.order(n, a.get("how", ""))
        self._structure_changed(added=[M.path(n)], removed=[M.path(n)])
        self._user_log(u, f"--order {M.path(n)} {a.get('how')}")
        return None

    def cmd_archive(self, a, p, u):
        for n in self._nodes(a):
            self.archive_node(n)
            self._user_log(u, f"--archive {M.path(n)}")
        return None

    def cmd_restore(self, a, p, u):
        for n in self._nodes(a):
            self.restore_node(n)
            self._user_log(u, f"--restore {M.path(n)}")
        self.need_traversal = True
        return None

    def cmd_plug(self, a, p, u):
        raise RuntimeError("plug (moving nodes between servers) is not supported by ecflow_lab")

    def cmd_query(self, a, p, u):
        kind, path, attr = a.get("kind", ""), a.get("path", ""), a.get("attr", "")
        n = self._node(path)
        if kind == "state":
            return M.state(n).name
        if kind == "dstate":
            return "suspended" if M.suspended(n) else M.state(n).name
        if kind == "event":
            ev = M.find_event(n, attr)
            if ev is None:
                raise RuntimeError(f"query: {path} has no event {attr!r}")
            return "set" if ev.value else "clear"
        if kind == "meter":
            me = M.find_meter(n, attr)
            if me is None:
                raise RuntimeError(f"query: {path} has no meter {attr!r}")
            return str(me.value)
        if kind == "label":
            lb = M.find_label(n, attr)
            if lb is None:
                raise RuntimeError(f"query: {path} has no label {attr!r}")
            return lb.current
        if kind == "variable":
            v = self.lookup(n, attr)
            if v is None:
                raise RuntimeError(f"query: no variable {attr!r} on {path} or its parents")
            return v
        if kind in ("limit", "limit_max"):
            lim = M.find_limit_on(n, attr)
            if lim is None:
                raise RuntimeError(f"query: {path} has no limit {attr!r}")
            return str(lim.value if kind == "limit" else lim.limit)
        if kind == "repeat":
            rep = M.repeat(n)
            if rep is None:
                raise RuntimeError(f"query: {path} has no repeat")
            return rep.value_as_string()
        if kind == "trigger":
            try:
                return "true" if M.evaluate_text(attr, n) else "false"
            except Exception as exc:
                raise RuntimeError(f"query trigger: {exc}") from None
        raise RuntimeError(f"query: unknown kind {kind!r}; expected state, dstate, event, meter, label, "
                           f"variable, limit, limit_max, repeat or trigger")

    # ------------------------------------------------------------------ why
    def cmd_why(self, a, p, u):
        n = self._node(a.get("path", ""))
        reasons = self.why_list(n)
        if not reasons:
            st = M.state(n)
            if st == Q:
                return f"{M.path(n)} is queued and free to run: it will be submitted at the next traversal"
            return f"{M.path(n)} is {st.name}: nothing holds it"
        return "\n".join(reasons)

    # ------------------------------------------------------------------ files
    def cmd_get_file(self, a, p, u):
        n = self._node(a.get("path", ""))
        kind = a.get("type", "script")
        lookup = self.lookup_fn(n)
        max_lines = int(a.get("max_lines") or 10000)
        if kind == "script":
            try:
                f = str(locate_script(M.path(n), lookup))
            except PreprocessError as exc:
                raise RuntimeError(str(exc)) from None
        elif kind == "job":
            f = lookup("ECF_JOB") or ""
        elif kind == "jobout":
            f = lookup("ECF_JOBOUT") or ""
        elif kind == "manual":
            try:
                f = str(locate_script(M.path(n), lookup))
                return None, preprocess(f, lookup).manual
            except PreprocessError:
                man = os.path.join(lookup("ECF_HOME") or self.home, M.path(n).lstrip("/") + ".man")
                f = man
        elif kind == "kill":
            f = (lookup("ECF_JOB") or "") + ".kill"
        elif kind == "stat":
            f = (lookup("ECF_JOB") or "") + ".stat"
        else:
            raise RuntimeError(f"get_file: type must be script, job, jobout, manual, kill or stat, got {kind!r}")
        try:
            with open(f, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            raise RuntimeError(f"get_file: cannot read {kind} file {f} of {M.path(n)}: {exc.strerror}") from None
        lines = data.split(b"\n")
        if len(lines) > max_lines + 1:
            data = b"\n".join(lines[-max_lines - 1:])
        return None, data

    def cmd_edit_script(self, a, p, u):
        n = self._node(a.get("path", ""))
        mode = a.get("mode", "edit")
        lookup = self.lookup_fn(n, a.get("variables") or None)
        try:
            script = locate_script(M.path(n), lookup) if mode != "submit" or not a.get("lines") else None
            if mode == "edit":
                return script.read_text() if script else ""
            if mode == "preprocess":
                return preprocess(script, lookup).job
        except PreprocessError as exc:
            raise RuntimeError(str(exc)) from None
        if mode == "submit":
            if M.state(n) in (S, R):
                raise RuntimeError(f"edit_script submit: {M.path(n)} is {M.state(n).name}")
            text = "\n".join(a.get("lines") or [])
            for k, v in (a.get("variables") or {}).items():
                if M.user_var(n, k) is not None or k not in SERVER_DEFAULTS:
                    M.set_user_var(n, k, v)
            if a.get("run", True):
                self.submit(n, user_edit=text, variables=a.get("variables") or None)
            return None
        raise RuntimeError(f"edit_script: mode must be edit, preprocess or submit, got {mode!r}")

    # ------------------------------------------------------------------ zombies
    def cmd_zombie(self, a, p, u):
        action = a.get("action", "get")
        if action == "get":
            return [z.as_dict() for z in self.zombies.values()]
        paths = set(a.get("paths") or [])
        found = [z for z in self.zombies.values() if z.path in paths]
        if not found:
            raise RuntimeError(f"zombie_{action}: no zombie for {', '.join(sorted(paths))}")
        for z in found:
            if action == "remove":
                del self.zombies[(z.path, z.passwd, z.pid)]
                t = M.find_abs(self.defs, z.path)
                if t is not None and not any(o.path == z.path for o in self.zombies.values()):
                    M.discard_flag(t, "zombie")
                    self._touch(t, "flags", sorted(M.flags(t)))
            elif action in ("fob", "fail", "block", "adopt", "kill"):
                z.action = action
                if action == "kill":
                    t = M.find_abs(self.defs, z.path)
                    if t is not None and z.pid:
                        lookup = self.lookup_fn(t, {"ECF_RID": z.pid})
                        from ecflow_lab.server.jobs import substitute

                        self.jobs.start(substitute(lookup("ECF_KILL_CMD") or "", lookup), z.path, "kill",
                                        cwd=self.home)
            else:
                raise RuntimeError(f"zombie: unknown action {action!r}")
            self._user_log(u, f"--zombie_{action} {z.path}")
        return None


def _write_if_changed(path: Path, text: str, mode: int) -> None:
    """Write ``text`` to ``path`` atomically (another server on the same home may be reading it)."""
    if path.exists() and path.read_text() == text:
        return
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(text)
    tmp.chmod(mode)
    os.replace(tmp, path)
