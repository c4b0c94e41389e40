"""``ecflow-lab server start|stop|status --home DIR --port N``.

``start`` runs the server in the foreground until ``--terminate``, SIGTERM or Ctrl-C; ``--background``
detaches it (its output goes to ``HOME/ecflow_lab.PORT.out``) and returns once it answers a ping.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

from ecflow_lab.client import DEFAULT_PORT, Client
from ecflow_lab.security.curve import add_ssl_argument, ssl_from_args


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="ecflow-lab server", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["start", "stop", "status"])
    ap.add_argument("--home", default=os.environ.get("ECF_HOME", "."), help="server home (ECF_HOME)")
    ap.add_argument("--port", type=int, default=int(os.environ.get("ECF_PORT", DEFAULT_PORT)),
                    help="request port (ECF_PORT; 0 = any free port)")
    ap.add_argument("--host", default="127.0.0.1", help="address to bind / to contact")
    ap.add_argument("--http-port", type=int, default=0, help="port of the HTTP child-command endpoint (0 = any)")
    ap.add_argument("--pub-port", type=int, default=0, help="port of the PUB delta socket (0 = any)")
    ap.add_argument("--background", action="store_true", help="detach and return once the server answers")
    ap.add_argument("--halted", action="store_true", help="start HALTED (as a bare ecflow_server)")
    ap.add_argument("--checkpoint-mode", choices=["NEVER", "ON_TIME", "ALWAYS"], default="ON_TIME")
    ap.add_argument("--checkpoint-interval", type=int, default=120, help="seconds between ON_TIME checkpoints")
    ap.add_argument("--interval", type=float, default=60.0, help="ECF_INTERVAL: seconds between time checks")
    ap.add_argument("--no-restore", action="store_true", help="ignore an existing checkpoint")
    add_ssl_argument(ap)
    return ap


def main(argv: list[str]) -> int:
    a = _parser().parse_args(argv)
    if a.action == "stop":
        try:
            Client(a.host, a.port).terminate_server()
        except RuntimeError as exc:
            print(f"Error: {exc}", file=sys.stderr)
            return 1
        print(f"server {a.host}:{a.port} terminated")
        return 0
    if a.action == "status":
        ci = Client(a.host, a.port)
        try:
            print(ci.stats(False))
        except RuntimeError as exc:
            print(f"Error: {exc}", file=sys.stderr)
            return 1
        finally:
            ci.close()
        return 0
    # what the server writes (checkpoint, log, job files) is never group/world-writable, whatever the umask
    os.umask(os.umask(0o022) | 0o022)
    home = os.path.abspath(a.home)
    os.makedirs(home, exist_ok=True)
    if a.background:
        return _background(a, home, argv)
    from ecflow_lab.server.app import SuiteServer

    srv = SuiteServer(home, a.port, a.host, http_port=a.http_port, pub_port=a.pub_port,
                      state="HALTED" if a.halted else "RUNNING", checkpoint_mode=a.checkpoint_mode,
                      checkpoint_interval=a.checkpoint_interval, restore=not a.no_restore, interval=a.interval,
                      ssl=ssl_from_args(a))
    try:
        srv.start()
    except RuntimeError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1

    def _stop(signum: int, frame: object) -> None:
        srv.request_stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(f"ecflow_lab server {a.host}:{srv.port} http {srv.http_port} pub {srv.pub_port} home {home} "
          f"pid {os.getpid()}", flush=True)
    try:
        while not srv._stopping.wait(0.5):
            pass
    finally:
        srv.close()
        import zmq

        zmq.Context.instance().term()   # waits (linger) until the last replies, e.g. to --terminate, are sent
    return 0


def _background(a: argparse.Namespace, home: str, argv: list[str]) -> int:
    args = [x for x in argv if x != "--background"]
    out = os.path.join(home, f"ecflow_lab.{a.port}.out")
    with open(out, "ab") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "ecflow_lab", "server", *args], stdout=fh, stderr=fh,
                                stdin=subprocess.DEVNULL, start_new_session=True, close_fds=True, cwd=home)
    ci = Client(a.host, a.port)
    try:
        end = time.monotonic() + 30
        while time.monotonic() < end:
            if proc.poll() is not None:
                print(f"Error: server exited with code {proc.returncode}; see {out}", file=sys.stderr)
                return 1
            try:
                ci._call("ping", timeout=1)
                print(f"ecflow_lab server started on {a.host}:{a.port} pid {proc.pid} (output {out})")
                return 0
            except RuntimeError:
                time.sleep(0.1)
        print(f"Error: server did not answer within 30 s; see {out}", file=sys.stderr)
        return 1
    finally:
        ci.close()
