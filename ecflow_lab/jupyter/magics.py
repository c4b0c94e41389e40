"""IPython magics: ``%ecflow``, ``%%suite``, ``%cascade`` and ``%ecpds`` — ecflow_lab from notebook cells.

``%load_ext ecflow_lab`` registers them. Everything they start (a suite server process, a cascade cluster, a
transfer service, live trees and Gantts) is owned by one :class:`LabState` per shell and stopped by
``%ecflow stop`` / ``%cascade stop`` / ``%ecpds stop``, by ``%unload_ext ecflow_lab`` and at kernel exit.
Errors are shown as one readable line (IPython's ``UsageError``), never as a traceback of our internals.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import display

from ecflow_lab.defs import DefsSyntaxError, parse_text

ECFLOW_ACTIONS = ("start", "connect", "stop", "status", "begin", "requeue", "suspend", "resume", "why", "tree",
                  "gantt")


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the kernel dies, even by SIGKILL (Linux prctl)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except Exception:  # not Linux: atexit and unload still stop it
        pass


def _free_port() -> int:
    from ecflow_lab.server.app import free_port

    return free_port()


class LabState:
    """What the magics started in one shell; :meth:`close` stops all of it (idempotent)."""

    def __init__(self) -> None:
        self.server: subprocess.Popen[bytes] | None = None
        self.server_home: Path | None = None
        self._tmp_home: str | None = None
        self.client: Any = None
        self.trees: list[Any] = []  # live trees and suite Gantts (follow the server)
        self.widgets: list[Any] = []  # transfer widgets (follow the transfer master)
        self.cluster: Any = None
        self.transfer_service: Any = None
        self.transfer_client: Any = None
        self.transfer_master: str | None = None
        self._saved_master: str | None = None

    # -- suite server ---------------------------------------------------------------------------------
    def start_server(self, port: int | None, home: str | None, timeout: float = 30.0) -> Any:
        from ecflow_lab.client import Client

        if self.server is not None and self.server.poll() is None:
            raise UsageError(f"a server is already running on port {self.client.get_port()}; %ecflow stop first")
        if home is None:
            self._tmp_home = tempfile.mkdtemp(prefix="ecflow-lab-home-")
            home = self._tmp_home
        self.server_home = Path(home).resolve()
        self.server_home.mkdir(parents=True, exist_ok=True)
        port = port or _free_port()
        log = open(self.server_home / "server.out", "ab")  # noqa: SIM115 - handed to the process
        self.server = subprocess.Popen(
            [sys.executable, "-m", "ecflow_lab", "server", "start", "--home", str(self.server_home),
             "--port", str(port), "--host", "127.0.0.1"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)  # noqa: PLW1509
        log.close()
        client = Client("127.0.0.1", port)
        deadline = time.monotonic() + timeout
        while not client.wait_for_server_reply(1):
            if self.server.poll() is not None or time.monotonic() > deadline:
                tail = (self.server_home / "server.out").read_text(errors="replace")[-800:]
                self.stop_server()
                raise UsageError(f"the server did not start on port {port}:\n{tail}")
        self._set_client(client)
        return client

    def _set_client(self, client: Any) -> None:
        if self.client is not None:
            self.client.close()
        self.client = client

    def connect(self, address: str) -> Any:
        from ecflow_lab.client import Client

        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise UsageError(f"connect: expected HOST:PORT, got {address!r}")
        client = Client(host, int(port))
        if not client.wait_for_server_reply(5):
            client.close()
            raise UsageError(f"connect: no ecflow_lab server answers at {host}:{port}")
        self._set_client(client)
        return client

    def need_client(self) -> Any:
        if self.client is None:
            raise UsageError("no server: use %ecflow start [--port N] [--home DIR] or %ecflow connect HOST:PORT")
        return self.client

    def stop_server(self) -> bool:
        """Stop the live trees, then the server this shell started (a connected one is only disconnected)."""
        for tree in self.trees:
            tree.close()
        self.trees.clear()
        proc, self.server = self.server, None
        stopped = False
        if proc is not None and proc.poll() is None:
            try:
                if self.client is not None:
                    self.client.terminate_server()
                proc.wait(20)
            except Exception:
                proc.kill()
                proc.wait(10)
            stopped = True
        if self.client is not None:
            self.client.close()
            self.client = None
        if self._tmp_home is not None:
            shutil.rmtree(self._tmp_home, ignore_errors=True)
            self._tmp_home = None
        return stopped

    # -- cascade ----------------------------------------------------------------------------------
    def stop_cluster(self) -> bool:
        cluster, self.cluster = self.cluster, None
        if cluster is None:
            return False
        cluster.close()
        return True

    # -- transfers --------------------------------------------------------------------------------
    def transfers(self) -> Any:
        if self.transfer_client is None:
            from ecflow_lab.transfer.client import TransferClient, default_master

            self.transfer_master = self.transfer_master or default_master()
            self.transfer_client = TransferClient(self.transfer_master, timeout=15)
        return self.transfer_client

    def stop_transfers(self) -> bool:
        for w in self.widgets:
            w.close()
        self.widgets.clear()
        if self.transfer_client is not None:
            self.transfer_client.close()
            self.transfer_client = None
        svc, self.transfer_service = self.transfer_service, None
        if svc is None:
            return False
        svc.close()
        if os.environ.get("ECPDS_MASTER") == svc.address:  # %ecpds start set it for `!ecpds ...`
            if self._saved_master is None:
                os.environ.pop("ECPDS_MASTER", None)
            else:
                os.environ["ECPDS_MASTER"] = self._saved_master
        self.transfer_master = None
        return True

    def close(self) -> None:
        """Stop everything (kernel exit, ``%unload_ext``)."""
        for step in (self.stop_server, self.stop_cluster, self.stop_transfers):
            try:
                step()
            except Exception:  # keep stopping the rest
                pass


def _split_paths(paths: list[str] | None, what: str) -> list[str]:
    if not paths:
        raise UsageError(f"%ecflow {what}: give one or more node paths, e.g. %ecflow {what} /suite/family")
    return list(paths)


class _Base(Magics):
    def __init__(self, shell: Any, state: LabState) -> None:
        super().__init__(shell)
        self.state = state


@magics_class
class EcflowMagics(_Base):
    """``%ecflow`` and ``%%suite``."""

    @magic_arguments()
    @argument("action", choices=ECFLOW_ACTIONS, help="what to do")
    @argument("args", nargs="*", help="node paths (begin/requeue/suspend/resume/why/tree) or HOST:PORT (connect)")
    @argument("--port", type=int, default=None, help="start: port to serve on (default: a free one)")
    @argument("--home", default=None, help="start: server home / ECF_HOME (default: a temporary directory)")
    @argument("--force", action="store_true", help="begin: begin even if already begun")
    @line_magic
    def ecflow(self, line: str) -> Any:
        """Drive a suite server from the notebook.

        %ecflow start [--port N] [--home DIR]   start a server owned by this kernel
        %ecflow connect HOST:PORT               use a server that runs elsewhere
        %ecflow stop | status
        %ecflow begin [SUITE ...] | requeue PATH.. | suspend PATH.. | resume PATH.. | why PATH
        %ecflow tree [PATH]                     the live node tree (returns the widget)
        %ecflow gantt                           a live Gantt of task spans from the server's deltas
        """
        a = parse_argstring(self.ecflow, line)
        st = self.state
        try:
            if a.action == "start":
                client = st.start_server(a.port, a.home)
                print(f"ecflow_lab server on 127.0.0.1:{client.get_port()}, home {st.server_home}")
                return None
            if a.action == "connect":
                if len(a.args) != 1:
                    raise UsageError("%ecflow connect HOST:PORT")
                client = st.connect(a.args[0])
                print(f"connected to {client.get_host()}:{client.get_port()}")
                return None
            if a.action == "stop":
                print("server stopped" if st.stop_server() else "disconnected")
                return None
            client = st.need_client()
            if a.action == "status":
                return self._status(client)
            if a.action == "begin":
                if a.args:
                    for suite in a.args:
                        client.begin_suite(suite, a.force)
                else:
                    client.begin_all_suites(a.force)
                return None
            if a.action in ("requeue", "suspend", "resume"):
                getattr(client, a.action)(_split_paths(a.args, a.action))
                return None
            if a.action == "why":
                for path in _split_paths(a.args, "why"):
                    print(f"{path}: {client.why(path) or 'nothing holds this node'}")
                return None
            if a.action == "tree":
                from ecflow_lab.client import Client
                from ecflow_lab.jupyter.tree import NodeTree

                root = a.args[0] if a.args else None
                tree = NodeTree.follow(Client(client.get_host(), client.get_port()), own_client=True, root=root,
                                       title=f"{client.get_host()}:{client.get_port()}{root or ''}")
                st.trees.append(tree)
                return tree
            if a.action == "gantt":
                from ecflow_lab.jupyter.gantt import SuiteGantt

                g = SuiteGantt.follow(client)
                st.trees.append(g)
                return g
        except UsageError:
            raise
        except Exception as exc:  # server refusals and connection errors: one readable line
            raise UsageError(f"%ecflow {a.action}: {exc}") from None
        return None

    @staticmethod
    def _status(client: Any) -> dict[str, Any]:
        from ecflow_lab.server import model as M

        client.sync_local()
        defs = client.get_defs()
        suites = {}
        for suite in getattr(defs, "suites", []):
            state = M.state(suite).name + (" (suspended)" if M.suspended(suite) else "")
            suites[f"/{suite.name}"] = state
        server_state = str(getattr(getattr(defs, "server_state", ""), "name", ""))
        out = {"server": f"{client.get_host()}:{client.get_port()}", "server_state": server_state,
               "suites": suites}
        print(f"server {out['server']} {server_state}".rstrip())
        for path, state in suites.items():
            print(f"  {path:30s} {state}")
        return out

    @magic_arguments()
    @argument("--load", action="store_true", help="load the suites into the server")
    @argument("--begin", action="store_true", help="begin the suites (implies --load)")
    @argument("--replace", action="store_true", help="replace suites that the server already has")
    @argument("--name", default="defs", help="user-namespace variable for the parsed Defs (default: defs)")
    @cell_magic
    def suite(self, line: str, cell: str) -> Any:
        """The cell is ``.def`` text: parse it (errors point at the cell's line), put the Defs in ``--name``.

        %%suite [--load] [--begin] [--replace] [--name VAR]
        """
        a = parse_argstring(self.suite, line)
        if not a.name.isidentifier():
            raise UsageError(f"%%suite --name: {a.name!r} is not a Python identifier")
        try:
            defs = parse_text(cell, "<cell>")
        except DefsSyntaxError as exc:
            raise UsageError(f"%%suite: syntax error at cell line {exc.line}, column {exc.column}: "
                             f"{exc.message}" + (f"\n    {exc.text.strip()}" if exc.text else "")) from None
        self.shell.user_ns[a.name] = defs
        suites = [s.name for s in defs.suites]
        if not (a.load or a.begin or a.replace):
            return None
        client = self.state.need_client()
        try:
            if a.replace:
                for name in suites:
                    client.replace(f"/{name}", defs, True, True)
            else:
                client.load(defs)
            if a.begin:
                for name in suites:
                    client.begin_suite(name, True)
        except Exception as exc:
            raise UsageError(f"%%suite: the server refused the definition: {exc}"
                             + ("" if a.replace else " (use --replace to overwrite existing suites)")) from None
        done = "loaded and begun" if a.begin else "loaded"
        print(f"{done}: {', '.join('/' + s for s in suites)}")
        return None


@magics_class
class CascadeMagics(_Base):
    """``%cascade``: a local DAG cluster owned by the kernel."""

    @magic_arguments()
    @argument("action", choices=("start", "run", "stop", "status"))
    @argument("graph", nargs="?", help="run: a Graph / Action expression from the user namespace")
    @argument("--workers", type=int, default=2, help="start: worker processes")
    @argument("--gpus", default=None, help="start: GPU workers (a number, a comma list of ids, or auto)")
    @argument("--retries", type=int, default=0, help="run: times a failed task may run again")
    @argument("--no-gantt", action="store_true", help="run: do not show the live Gantt")
    @line_magic
    def cascade(self, line: str) -> Any:
        """Run DAGs on a local cluster from the notebook.

        %cascade start --workers N [--gpus G]
        %cascade run GRAPH        (returns the RunResult; shows a live Gantt while it runs)
        %cascade status | stop
        """
        a = parse_argstring(self.cascade, line)
        st = self.state
        if a.action == "start":
            if st.cluster is not None:
                raise UsageError("a cascade cluster is already running; %cascade stop first")
            if a.workers < 1:
                raise UsageError("%cascade start: --workers must be at least 1")
            gpus: Any = a.gpus
            if gpus is not None and gpus != "auto":
                gpus = int(gpus) if gpus.isdigit() else [g.strip() for g in gpus.split(",") if g.strip()]
            from ecflow_lab.cascade import LocalCluster

            try:
                st.cluster = LocalCluster(workers=a.workers, gpus=gpus)
            except Exception as exc:
                raise UsageError(f"%cascade start: {exc}") from None
            print(f"cascade cluster: {len(st.cluster.workers)} workers")
            return None
        if a.action == "stop":
            print("cascade cluster stopped" if st.stop_cluster() else "no cascade cluster")
            return None
        if st.cluster is None:
            raise UsageError("no cascade cluster: %cascade start --workers N")
        if a.action == "status":
            return list(st.cluster.workers)
        if not a.graph:
            raise UsageError("%cascade run GRAPH: name a Graph or Action from the notebook")
        try:
            graph = eval(a.graph, self.shell.user_ns)  # noqa: S307 - the user's own expression, in their kernel
        except Exception as exc:
            raise UsageError(f"%cascade run: cannot evaluate {a.graph!r}: {exc}") from None
        gantt = None
        if not a.no_gantt:
            from ecflow_lab.jupyter.gantt import Gantt

            gantt = Gantt(title=f"cascade run: {a.graph}")
            display(gantt)
        try:
            result = st.cluster.run(graph, on_event=gantt.on_event if gantt else None, retries=a.retries)
        except Exception as exc:
            raise UsageError(f"%cascade run {a.graph}: {type(exc).__name__}: {exc}") from None
        finally:
            if gantt is not None:
                gantt.close()
        self.shell.user_ns["cascade_gantt"] = gantt
        return result


@magics_class
class EcpdsMagics(_Base):
    """``%ecpds``: transfers through an ECPDS-like master (started here or reached by address)."""

    @magic_arguments()
    @argument("action", choices=("start", "connect", "stop", "destination", "push", "status", "waitfor",
                                 "widget"))
    @argument("args", nargs="*", help="push: FILE; status: ID; waitfor: GROUP; connect: ADDRESS; "
                                      "destination: NAME URL")
    @argument("-destination", "--destination", dest="destination", default=None, help="push: destination name")
    @argument("-groupby", "--groupby", dest="groupby", default=None, help="push: group name (for waitfor)")
    @argument("-target", "--target", dest="target", default=None, help="push: target file name")
    @argument("-force", "--force", dest="force", action="store_true", help="push: send again an existing target")
    @argument("--movers", type=int, default=2, help="start: mover processes")
    @argument("--home", default=None, help="start: service home (default: a temporary directory)")
    @argument("--timeout", type=float, default=None, help="waitfor: give up after this many seconds")
    @line_magic
    def ecpds(self, line: str) -> Any:
        """Transfers from the notebook.

        %ecpds start [--movers N] [--home DIR]  | %ecpds connect tcp://HOST:PORT | %ecpds stop
        %ecpds destination NAME URL
        %ecpds push FILE -destination D [-groupby G] [-target T] [-force]   (returns the Data File ID)
        %ecpds status ID | %ecpds waitfor G (progress bar) | %ecpds widget
        """
        a = parse_argstring(self.ecpds, line)
        st = self.state
        try:
            if a.action == "start":
                return self._start(a)
            if a.action == "connect":
                if len(a.args) != 1:
                    raise UsageError("%ecpds connect ADDRESS (tcp://host:port or host:port)")
                from ecflow_lab.transfer.client import normalise_address

                st.stop_transfers()
                st.transfer_master = normalise_address(a.args[0])
                st.transfers().ping()
                print(f"transfer master {st.transfer_master}")
                return None
            if a.action == "stop":
                print("transfer service stopped" if st.stop_transfers() else "disconnected")
                return None
            tc = st.transfers()
            if a.action == "destination":
                if len(a.args) != 2:
                    raise UsageError("%ecpds destination NAME URL")
                tc.add_destination(a.args[0], a.args[1], replace=True)
                return None
            if a.action == "push":
                if len(a.args) != 1 or not a.destination:
                    raise UsageError("%ecpds push FILE -destination D [-groupby G]")
                path = Path(os.path.expanduser(a.args[0]))
                if not path.is_file():
                    raise UsageError(f"%ecpds push: no such file {path}")
                dfid = tc.push(str(path), a.destination, a.target, groupby=a.groupby, force=a.force)
                print(f"DataFileId={dfid}")
                return dfid
            if a.action == "status":
                if len(a.args) != 1 or not a.args[0].isdigit():
                    raise UsageError("%ecpds status ID (a Data File ID, as push printed)")
                return self._status(tc, int(a.args[0]))
            if a.action == "waitfor":
                if len(a.args) != 1:
                    raise UsageError("%ecpds waitfor GROUP")
                return self._waitfor(tc, a.args[0], a.timeout)
            if a.action == "widget":
                from ecflow_lab.jupyter.transfers import TransferWidget

                w = TransferWidget(tc)
                st.widgets.append(w)  # closed with the rest
                return w
        except UsageError:
            raise
        except Exception as exc:
            raise UsageError(f"%ecpds {a.action}: {exc}") from None
        return None

    def _start(self, a: Any) -> None:
        from ecflow_lab.transfer import TransferService

        st = self.state
        if st.transfer_service is not None:
            raise UsageError("a transfer service is already running; %ecpds stop first")
        home = Path(a.home) if a.home else Path(tempfile.mkdtemp(prefix="ecpds-home-"))
        svc = TransferService(home, movers=a.movers)
        svc.start()
        st.stop_transfers()
        st.transfer_service = svc
        st.transfer_master = svc.address
        st._saved_master = os.environ.get("ECPDS_MASTER")
        os.environ["ECPDS_MASTER"] = svc.address  # so `!ecpds ...` in the notebook finds it too
        print(f"transfer master {svc.address} with {a.movers} movers, home {home}")

    @staticmethod
    def _status(tc: Any, dfid: int) -> dict[str, Any]:
        st = tc.status(dfid, history=0)
        df = st.get("data_file", {})
        print(f"DataFileId={dfid} {df.get('source', df.get('name', ''))}".rstrip())
        for t in st.get("transfers", []):
            size = t.get("size") or 0
            pct = f"{100 * (t.get('bytes_done') or 0) / size:5.1f}%" if size else ""
            print(f"  {t.get('id')}: {t.get('destination')} {t.get('status')} {pct} {t.get('error') or ''}".rstrip())
        return st

    @staticmethod
    def _waitfor(tc: Any, group: str, timeout: float | None) -> dict[str, Any]:
        import ipywidgets as w

        bar = w.IntProgress(value=0, min=0, max=1, description=group, bar_style="info")
        text = w.Label("")
        display(w.HBox([bar, text]))

        def progress(gs: dict[str, Any]) -> None:
            counts = gs.get("counts", {})
            total = max(1, sum(counts.values()))
            finished = sum(counts.get(k, 0) for k in ("Done", "Failed", "Stopped"))
            bar.max, bar.value = total, finished
            text.value = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))

        final = tc.waitfor(group, callback=progress, timeout=timeout)
        progress(final)
        failed = final.get("counts", {}).get("Failed", 0)
        bar.bar_style = "danger" if failed else "success"
        return final


_STATE: LabState | None = None


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext ecflow_lab``: register the magics; their processes stop at unload or kernel exit."""
    global _STATE
    if _STATE is None:
        _STATE = LabState()
        atexit.register(_STATE.close)
    for cls in (EcflowMagics, CascadeMagics, EcpdsMagics):
        ipython.register_magics(cls(ipython, _STATE))


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext ecflow_lab``: stop what the magics started."""
    global _STATE
    state, _STATE = _STATE, None
    if state is not None:
        state.close()
        atexit.unregister(state.close)


def state() -> LabState | None:
    """The current shell's :class:`LabState` (tests, advanced use)."""
    return _STATE


__all__ = ["CascadeMagics", "EcflowMagics", "EcpdsMagics", "LabState", "load_ipython_extension",
           "unload_ipython_extension"]
