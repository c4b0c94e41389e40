"""``ecflow-lab transfer master|mover|destination|user|list`` — run and administer the transfer service."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from ..security import SecurityFileError, add_ssl_argument, ssl_from_args
from .wire import TransferError, fmt_size

EXAMPLES = """\
examples:
  ecflow-lab transfer up --home ~/ecpds --movers 2 --destination archive=file:///data/archive
  ecflow-lab transfer master --home ~/ecpds --port 2640
  ecflow-lab transfer mover --master tcp://127.0.0.1:2640 --home ~/ecpds
  ecflow-lab transfer destination add archive file:///data/archive --max-connections 2 --retry-count 5
  ecflow-lab transfer destination add remote sftp://me@host:22/incoming --key-file ~/.ssh/id_ed25519 --rate 10M
  ecflow-lab transfer destination list
  ecpds -destination archive -source out.grib        # push a file (see ecpds -help)
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ecflow-lab transfer", description="ECPDS-like transfer service.",
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    sub = p.add_subparsers(dest="cmd", required=True)

    m = sub.add_parser("master", help="run the master (catalogue, scheduler) in the foreground", allow_abbrev=False)
    add_ssl_argument(m)
    m.add_argument("--home", required=True, help="directory for ecpds.db, store/ and the cluster secret")
    m.add_argument("--port", type=int, default=2640, help="TCP port (0: any free port, see HOME/master.json)")
    m.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    m.add_argument("--checksum", default="sha256", help="sha256 (default), md5, sha1, blake2b, adler32, crc32")
    m.add_argument("--max-retrievals", type=int, default=60, help="parallel -groupby retrievals (default 60)")
    m.add_argument("--mover-timeout", type=float, default=5.0, help="seconds without heartbeat = mover lost")
    m.add_argument("--fetch-retries", type=int, default=3, help="retrieval retries before Failed")
    m.add_argument("--fetch-retry-delay", type=float, default=5.0, help="seconds between retrieval retries")
    m.add_argument("--store", help="data store directory (default HOME/store)")
    m.add_argument("--exit-with-parent", action="store_true", help="stop when the starting process exits")
    m.add_argument("--housekeeping-interval", type=float, default=30.0,
                   help="seconds between sweeps that free the store space of expired, finished files")

    up = sub.add_parser("up", help="run a master and its movers together in the foreground (Ctrl-C stops all)",
                        allow_abbrev=False)
    add_ssl_argument(up)
    up.add_argument("--home", required=True, help="master home (ecpds.db, store/, secret, logs/)")
    up.add_argument("--port", type=int, default=2640)
    up.add_argument("--movers", type=int, default=2)
    up.add_argument("--destination", action="append", default=[], metavar="NAME=URL",
                    help="add (or update) a destination at start, e.g. archive=file:///data/archive")

    mv = sub.add_parser("mover", help="run a data mover in the foreground", allow_abbrev=False)
    add_ssl_argument(mv)
    mv.add_argument("--master", required=True, help="master address, e.g. tcp://127.0.0.1:2640")
    mv.add_argument("--home", help="the master's home on this host (for its secret and store)")
    mv.add_argument("--secret-file", help="file with the cluster secret (default HOME/secret)")
    mv.add_argument("--store", help="data store directory (default HOME/store)")
    mv.add_argument("--name", help="mover name (default HOST-PID)")
    mv.add_argument("--host", default="127.0.0.1", help="address clients push to (default 127.0.0.1)")
    mv.add_argument("--threads", type=int, default=8, help="parallel retrievals + deliveries (default 8)")
    mv.add_argument("--heartbeat", type=float, default=0.5, help="heartbeat interval in seconds")
    mv.add_argument("--fsync", action="store_true", help="fsync pushed content before acknowledging it")
    mv.add_argument("--exit-with-parent", action="store_true", help="stop when the starting process exits")

    d = sub.add_parser("destination", help="add, remove or list destinations", allow_abbrev=False)
    add_ssl_argument(d)
    d.add_argument("--master", help="master address (default $ECPDS_MASTER or $ECHOST:$ECPORT)")
    d.add_argument("--user")
    d.add_argument("--password")
    dsub = d.add_subparsers(dest="action", required=True)
    add = dsub.add_parser("add", help="add a destination: NAME URL (file:///dir, sftp://user@host:port/dir)")
    add.add_argument("name")
    add.add_argument("url")
    add.add_argument("--replace", action="store_true", help="change an existing destination")
    add.add_argument("--max-connections", type=int)
    add.add_argument("--retry-count", type=int, help="retries after a failed attempt before Failed")
    add.add_argument("--retry-frequency", help="wait between retries (e.g. 30s, 5m)")
    add.add_argument("--priority", type=int, help="default priority 0..99 (0 first)")
    add.add_argument("--lifetime", help="default lifetime (e.g. 2d)")
    add.add_argument("--delay", help="added to every dispatch time")
    add.add_argument("--at", help="daily dispatch time HH:MM for pushes without -at")
    add.add_argument("--rate", help="bandwidth limit per transfer, bytes/s (e.g. 10M)")
    add.add_argument("--verify", choices=["stream", "reread"])
    add.add_argument("--timeout", help="connect timeout")
    add.add_argument("--key-file", help="sftp: private key file")
    add.add_argument("--known-hosts", help="sftp: known_hosts file (reject unknown host keys)")
    add.add_argument("--password-env", help="sftp: name of an environment variable holding the password")
    rm = dsub.add_parser("remove", help="remove a destination")
    rm.add_argument("name")
    rm.add_argument("--force", action="store_true", help="stop its unfinished transfers")
    dsub.add_parser("list", help="list destinations with transfer counts")

    u = sub.add_parser("user", help="add a data user (for ecpds -user/-pass)", allow_abbrev=False)
    add_ssl_argument(u)
    u.add_argument("--master")
    u.add_argument("--user")
    u.add_argument("--password")
    usub = u.add_subparsers(dest="action", required=True)
    ua = usub.add_parser("add")
    ua.add_argument("name")
    ua.add_argument("--new-password", required=True)
    ua.add_argument("--destinations", default="*", help="comma-separated destinations (default: all)")
    ua.add_argument("--admin", action="store_true")

    ls = sub.add_parser("list", help="recent transfers", allow_abbrev=False)
    add_ssl_argument(ls)
    ls.add_argument("--master")
    ls.add_argument("--destination")
    ls.add_argument("--status")
    ls.add_argument("--group")
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--json", action="store_true")
    return p


def main(argv: list[str]) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        ssl = ssl_from_args(args)
        if args.cmd in ("master", "mover", "up"):
            # what the services write (catalogue, store, logs, master.json) is never group/world-writable,
            # whatever umask they were started with
            os.umask(os.umask(0o022) | 0o022)
        if args.cmd == "master":
            from .master import serve

            serve(args.home, args.port, args.host, checksum=args.checksum, max_retrievals=args.max_retrievals,
                  mover_timeout=args.mover_timeout, fetch_retries=args.fetch_retries,
                  fetch_retry_delay=args.fetch_retry_delay, store=args.store,
                  housekeeping_interval=args.housekeeping_interval, exit_with_parent=args.exit_with_parent,
                  ssl=ssl)
            return 0
        if args.cmd == "mover":
            from .mover import serve as serve_mover

            secret_file = args.secret_file or (os.path.join(args.home, "secret") if args.home else None)
            secret_env = os.environ.get("ECFLOW_LAB_TRANSFER_SECRET")
            if secret_file:
                secret = bytes.fromhex(Path(secret_file).read_text().strip())
            elif secret_env:
                secret = bytes.fromhex(secret_env)
            else:
                print("ecflow-lab transfer mover: give --home, --secret-file or $ECFLOW_LAB_TRANSFER_SECRET",
                      file=sys.stderr)
                return 2
            store = args.store or (os.path.join(args.home, "store") if args.home else None)
            if not store:
                print("ecflow-lab transfer mover: give --store or --home", file=sys.stderr)
                return 2
            from .client import normalise_address

            serve_mover(normalise_address(args.master), secret, store, name=args.name, host=args.host, threads=args.threads,
                        heartbeat=args.heartbeat, fsync=args.fsync, exit_with_parent=args.exit_with_parent,
                        ssl=ssl)
            return 0
        if args.cmd == "up":
            return _up(args)
        return _admin(args)
    except (TransferError, SecurityFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 255
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 255


def _up(args: argparse.Namespace) -> int:
    """Master + movers as child processes, owned here; SIGINT/SIGTERM stop them all."""
    import signal
    import threading

    from .service import TransferService

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    dests = []
    for spec in args.destination:
        name, sep, url = spec.partition("=")
        if not sep:
            print(f"error: --destination expects NAME=URL, got {spec!r}", file=sys.stderr)
            return 2
        dests.append((name, url))
    with TransferService(args.home, movers=args.movers, port=args.port, ssl=ssl_from_args(args)) as svc:
        with svc.client(timeout=10) as c:
            for name, url in dests:
                c.add_destination(name, url, replace=True)
        print(f"transfer service on {svc.address} with {args.movers} mover(s); logs in {svc.log_dir}")
        print(f"  export ECPDS_MASTER={svc.address}", flush=True)
        while not stop.wait(0.5):
            if svc.master is not None and svc.master.poll() is not None:
                print(f"error: master exited with {svc.master.returncode}", file=sys.stderr)
                return 255
    return 0


def _admin(args: argparse.Namespace) -> int:
    from .client import TransferClient

    with TransferClient(args.master, user=getattr(args, "user", None),
                        password=getattr(args, "password", None), timeout=10, ssl=ssl_from_args(args) or False) as c:
        if args.cmd == "destination":
            if args.action == "add":
                opts = {k: getattr(args, k) for k in ("max_connections", "retry_count", "retry_frequency",
                                                      "priority", "lifetime", "delay", "at", "rate", "verify",
                                                      "timeout", "key_file", "known_hosts")
                        if getattr(args, k) is not None}
                if args.password_env:
                    opts["password"] = os.environ[args.password_env]
                print(c.add_destination(args.name, args.url, replace=args.replace, **opts)["message"])
            elif args.action == "remove":
                print(c.remove_destination(args.name, force=args.force))
            else:
                for d in c.destinations():
                    counts = ", ".join(f"{k} {v}" for k, v in sorted(d["counts"].items())) or "no transfers"
                    state = "" if d["enabled"] else " [stopped]"
                    print(f"{d['name']:<16} {d['url']}{state}  ({counts})")
                    o = d["options"]
                    print(f"{'':<16} max_connections={o['max_connections']} retry_count={o['retry_count']} "
                          f"retry_frequency={o['retry_frequency']:g}s rate={o['rate'] or '-'}")
            return 0
        if args.cmd == "user":
            dests = [s.strip() for s in args.destinations.split(",") if s.strip()]
            print(c.add_user(args.name, args.new_password, dests, admin=args.admin))
            return 0
        if args.cmd == "list":
            rows = c.transfers(args.destination, args.status, args.group, args.limit)
            if args.json:
                print(json.dumps(rows, indent=1))
                return 0
            for t in rows:
                print(f"{t['id']:>6} df={t['data_file']:<6} {t['destination']:<12} {t['status']:<12} "
                      f"{fmt_size(t['size'] or 0):>10} {t['target']}" + (f"  [{t['error']}]" if t['error'] else ""))
            return 0
    return 2
