"""The ``ecpds`` command line (also ``ecflow-lab ecpds``), with OpenECPDS's single-dash flags.

Differences from the original C client, on purpose: a successful sync push prints its Data File ID and exits
0; ``-status ID`` shows one file's transfers and history; ``-waitfor`` exits 255 if a transfer of the group
Failed or was Stopped.
"""

from __future__ import annotations

import difflib
import json
import sys
import time
from typing import Any

from .client import TransferClient
from .wire import TransferError, fmt_size, fmt_time, parse_at, parse_duration, parse_size

EXIT_OK, EXIT_USAGE, EXIT_ERROR = 0, 1, 255

USAGE = """\
usage:
  ecpds -destination NAME [-source FILE|-] [-target PATH] [options]       submit a file (sync push)
  ecpds -destination NAME -source FILE -groupby GROUP [options]         register for retrieval (async)
  ecpds -waitfor GROUP                                                  follow a group until it is done
  ecpds -status ID [-json]                                              one data file's transfers + history
  ecpds -reqid ID -requeue | -stop | -purge                             re-send / stop / delete a file
  ecpds -scheduler -start|-stop|-check [-destination NAME] [-streams N -timeout D]

submission options:
  -destination NAME[,NAME]  destination(s) (required for a push)
  -source FILE|-            file to send; '-' or absent = stdin (then -target is required)
  -target PATH              name at the destination; ending with '/' appends the source name
  -priority 0..99           0 is served first (default 99, or the destination's default)
  -lifetime DUR             how long the transfer stays valid (default 2d); DUR: 30s 5m 2h 2d 1w, 500z,
                            ISO-8601 PT1H; a bare number is hours
  -delay DUR                postpone the dispatch
  -at TIME                  dispatch time in -format (default yyyyMMddHHmmss) or ISO-8601
  -format PATTERN           Java date pattern for -at
  -metadata k=v,k=v         metadata (stream, time, step, date, type, domain, application, ...)
  -groupby GROUP            asynchronous mode: a data mover retrieves -source later (max 64 chars)
  -index                    with -groupby: -source is a file listing one source file per line
  -noretrieval              with -groupby: deliver straight from -source, never copied to the store
  -standby | -dontsend      register only (StandBy) until re-queued
  -asap                     with -groupby: dispatch as soon as all files of the group are retrieved
  -remove                   delete the source after a successful push (not with -groupby)
  -requeue | -force         replace an existing file with the same destination/target/version
  -purge                    delete the existing file(s) for -destination/-target (or -reqid) and transfers
  -version V | -identity I  distinguish versions of the same target / name it
  -caller TEXT              caller recorded with the file (default $EC_job_stdout)
  -s SIZE | -M SIZE         the source must have exactly / at most SIZE bytes (k, m, g suffixes)

connection:
  -echost HOST -ecport PORT master address (default $ECPDS_MASTER, $ECHOST:$ECPORT, localhost:2640)
  -user NAME -pass PASSWORD authenticate as a data user
  -connectTimeoutSec N      seconds to wait for an answer (default 30)
  -json                     machine-readable output (-status, -waitfor, pushes)
  -v                        print the version        -help  this text

exit codes:
  0    success (push: the Data File ID is printed on stdout; -waitfor: every transfer Done)
  1    usage error (unknown flag, missing value, forbidden combination), -help, -v
  255  the request failed (error: ... on stderr), or -waitfor ended with Failed/Stopped transfers
"""

VALUE_FLAGS = {
    "destination", "source", "target", "priority", "lifetime", "delay", "at", "format", "metadata", "groupby",
    "waitfor", "echost", "ecport", "user", "pass", "status", "version", "identity", "caller", "reqid", "s", "M",
    "buffsize", "connectTimeoutSec", "tryCount", "tryDelaySec", "group", "streams", "timeout", "opts", "buffer",
}
BOOL_FLAGS = {
    "standby", "dontsend", "asap", "remove", "requeue", "force", "purge", "index", "noretrieval", "event",
    "verbose", "debug", "v", "help", "h", "scheduler", "start", "stop", "check", "json",
    "expected", "started", "completed", "reset",
}


class UsageError(Exception):
    pass


def parse_args(argv: list[str]) -> dict[str, Any]:
    """ECPDS-style flags into a dict; UsageError naming the bad flag (with a suggestion)."""
    opts: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("-") or arg == "-":
            raise UsageError(f"unexpected argument {arg!r} (every value follows its flag, e.g. -source FILE)")
        name = arg.lstrip("-")
        if name in BOOL_FLAGS:
            opts[name] = True
            i += 1
        elif name in VALUE_FLAGS:
            if i + 1 >= len(argv):
                raise UsageError(f"option -{name} needs a value")
            value = argv[i + 1]
            if value.startswith("-") and value != "-" and value.lstrip("-") in VALUE_FLAGS | BOOL_FLAGS:
                raise UsageError(f"option -{name} needs a value, got the flag {value}")
            opts[name] = value
            i += 2
        else:
            known = sorted(VALUE_FLAGS | BOOL_FLAGS)
            close = [k for k in known if name and k.startswith(name)][:1] or \
                difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean -{close[0]}?)" if close else ""
            raise UsageError(f"illegal option {arg}{hint}")
    if opts.get("force") and opts.get("requeue"):
        raise UsageError("-force and -requeue cannot be used together")
    if opts.get("purge") and (opts.get("force") or opts.get("requeue")):
        raise UsageError("-purge cannot be combined with -force or -requeue")
    if opts.get("groupby") and opts.get("remove"):
        raise UsageError("-remove is not allowed with -groupby")
    for flag in ("index", "noretrieval", "asap"):
        if opts.get(flag) and not opts.get("groupby"):
            raise UsageError(f"-{flag} needs -groupby")
    if sum(bool(opts.get(k)) for k in ("start", "stop", "check")) > 1:
        raise UsageError("use only one of -start, -stop, -check")
    if (opts.get("start") or opts.get("check") or (opts.get("stop") and "reqid" not in opts)) \
            and not opts.get("scheduler"):
        raise UsageError("-start/-stop/-check go with -scheduler (or -stop with -reqid ID)")
    if "groupby" in opts and not 0 < len(opts["groupby"]) <= 64:
        raise UsageError("-groupby needs a name of 1 to 64 characters")
    if "priority" in opts:
        try:
            p = int(opts["priority"])
        except ValueError:
            raise UsageError(f"-priority must be a number 0..99, got {opts['priority']!r}") from None
        if not 0 <= p <= 99:
            raise UsageError(f"-priority must be 0..99, got {p}")
        opts["priority"] = p
    for key in ("lifetime", "delay", "timeout"):
        if key in opts:
            try:
                parse_duration(opts[key])
            except ValueError as exc:
                raise UsageError(f"-{key}: {exc}") from None
    if "at" in opts:
        try:
            parse_at(opts["at"], opts.get("format", "yyyyMMddHHmmss"))
        except ValueError as exc:
            raise UsageError(f"-at: {exc}") from None
    for key in ("s", "M"):
        if key in opts:
            try:
                opts[key] = parse_size(opts[key])
            except ValueError as exc:
                raise UsageError(f"-{key}: {exc}") from None
    for key in ("status", "reqid", "ecport", "streams", "connectTimeoutSec"):
        if key in opts:
            try:
                opts[key] = int(opts[key])
            except ValueError:
                raise UsageError(f"-{key} must be a number, got {opts[key]!r}") from None
    if "metadata" in opts:
        md = {}
        for pair in filter(None, (p.strip() for p in opts["metadata"].split(","))):
            k, sep, v = pair.partition("=")
            if not sep or not k:
                raise UsageError(f"-metadata expects key=value pairs, got {pair!r}")
            if len(k) > 25 or len(v) > 255:
                raise UsageError(f"-metadata {k}: names are at most 25 characters, values 255")
            md[k] = v
        opts["metadata"] = md
    return opts


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        opts = parse_args(argv)
    except UsageError as exc:
        print(f"ecpds: {exc}\n", file=sys.stderr)
        print(USAGE, file=sys.stderr)
        return EXIT_USAGE
    if opts.get("help") or opts.get("h"):
        print(USAGE)
        return EXIT_USAGE
    if opts.get("v"):
        from ecflow_lab import __version__

        print(f"ecpds (ecflow_lab) {__version__}")
        return EXIT_USAGE
    if any(opts.get(k) for k in ("expected", "started", "completed", "reset")):
        print("error: product-status notifications (-expected/-started/-completed/-reset) are not supported",
              file=sys.stderr)
        return EXIT_ERROR
    modes = [k for k in ("waitfor", "status", "scheduler") if k in opts]
    if len(modes) > 1:
        print(f"ecpds: use only one of {', '.join('-' + m for m in modes)}\n\n{USAGE}", file=sys.stderr)
        return EXIT_USAGE
    if not modes and "destination" not in opts and "reqid" not in opts:
        print(f"ecpds: -destination is required to submit a file\n\n{USAGE}", file=sys.stderr)
        return EXIT_USAGE
    timeout = float(opts.get("connectTimeoutSec", 30))
    try:
        with TransferClient(host=opts.get("echost"), port=opts.get("ecport"), user=opts.get("user"),
                            password=opts.get("pass"), timeout=timeout) as client:
            if "waitfor" in opts:
                return _waitfor(client, opts)
            if "status" in opts:
                return _status(client, opts["status"], opts.get("json", False))
            if "scheduler" in opts:
                action = "start" if opts.get("start") else "stop" if opts.get("stop") else "check"
                reply = client.scheduler(action, opts.get("destination"),
                                         int(opts["streams"]) if "streams" in opts else None, opts.get("timeout"))
                print(reply["message"])
                return EXIT_OK
            return _submit(client, opts)
    except TransferError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_ERROR


def _submit(client: TransferClient, opts: dict[str, Any]) -> int:
    dest = opts.get("destination")
    dests: Any = dest.split(",") if dest and "," in dest else dest
    if opts.get("purge"):
        if "reqid" in opts:
            print(client.purge(opts["reqid"]))
        else:
            if "target" not in opts and opts.get("source") in (None, "-"):
                raise TransferError("-purge needs -target (or -source) or -reqid")
            target = opts.get("target") or opts["source"].rsplit("/", 1)[-1]
            print(client.purge(destination=dests, target=target, version=opts.get("version")))
        return EXIT_OK
    if "reqid" in opts and "source" not in opts:
        if not opts.get("requeue") and not opts.get("stop"):
            raise TransferError("-reqid needs -requeue, -purge or a new -source")
        n = client.requeue(opts["reqid"]) if opts.get("requeue") else client.stop(opts["reqid"])
        print(f"{n} DataTransfer(s) {'re-queued' if opts.get('requeue') else 'stopped'} (DataFileId={opts['reqid']})")
        return EXIT_OK
    common = dict(priority=opts.get("priority"), lifetime=opts.get("lifetime"), delay=opts.get("delay"),
                  at=opts.get("at"), at_format=opts.get("format", "yyyyMMddHHmmss"), metadata=opts.get("metadata"),
                  version=opts.get("version"), standby=bool(opts.get("standby") or opts.get("dontsend")),
                  requeue=bool(opts.get("requeue")), force=bool(opts.get("force")), caller=opts.get("caller"))
    if opts.get("group"):
        common["metadata"] = {**(common["metadata"] or {}), "transfergroup": opts["group"]}
    source = opts.get("source", "-")
    if source != "-":
        import os

        if not os.path.isfile(source):
            raise TransferError(f"-source {source}: no such file")
        if not opts.get("index"):
            size = os.path.getsize(source)
            if "s" in opts and size != opts["s"]:
                raise TransferError(f"-source {source} has {size} bytes, -s requires {opts['s']}")
            if "M" in opts and size > opts["M"]:
                raise TransferError(f"-source {source} has {size} bytes, more than -M {opts['M']}")
    if opts.get("groupby"):
        if source == "-":
            raise TransferError("-groupby needs -source FILE (stdin cannot be retrieved later)")
        if opts.get("index"):
            with open(source) as f:
                files = [line.strip() for line in f if line.strip() and not line.startswith("#")]
            target_dir = (opts.get("target") or "").rstrip("/")
            ids = client.push_group(files, dests, opts["groupby"], target_dir=target_dir,
                                    asap=bool(opts.get("asap")), **common)
            _print_ids(opts, ids, client.last_message)
            return EXIT_OK
        dfid = client.push(source, dests, opts.get("target"), groupby=opts["groupby"], asap=bool(opts.get("asap")),
                           noretrieval=bool(opts.get("noretrieval")), identity=opts.get("identity"), **common)
    else:
        src: Any = sys.stdin.buffer if source == "-" else source
        if source == "-" and "target" not in opts:
            raise TransferError("-target is required when the content comes from stdin")
        dfid = client.push(src, dests, opts.get("target"), remove=bool(opts.get("remove")),
                           identity=opts.get("identity"), **common)
    _print_ids(opts, [dfid], client.last_message)
    return EXIT_OK


def _print_ids(opts: dict[str, Any], ids: list[int], message: str) -> None:
    if opts.get("json"):
        print(json.dumps({"ids": ids, "message": message}))
    elif opts.get("verbose"):
        print(message)
    else:
        print(ids[0] if len(ids) == 1 else " ".join(map(str, ids)))


def _waitfor(client: TransferClient, opts: dict[str, Any]) -> int:
    group = opts["waitfor"]
    last_print = [0.0, ""]

    def show(st: dict[str, Any]) -> None:
        if opts.get("json"):
            return
        line = f"Still {st['remaining']} DataTransfer(s) to process for group {group}"
        counts = ", ".join(f"{k} {v}" for k, v in sorted(st["counts"].items()))
        if counts:
            line += f" ({counts})"
        now = time.monotonic()
        if line == last_print[1] and now - last_print[0] < 15:
            return
        if st["remaining"] and now - last_print[0] < 1.0 and st["pending"] == []:
            return
        last_print[:] = [now, line]
        if st["found"] and not st["done"]:
            print(line, flush=True)
            for t in st["pending"]:
                pct = ""
                if t.get("bytes_done") and t.get("size"):
                    pct = f" - {100 * t['bytes_done'] / t['size']:.0f}%"
                print(f"  {t['target']} -> {t['destination']}: {t['status']}{pct}"
                      + (f" on {t['mover']}" if t.get("mover") and t["status"] in ("Transferring", "Fetching")
                         else ""), flush=True)

    st = client.waitfor(group, show, timeout=float(parse_duration(opts["timeout"])) if "timeout" in opts else None)
    bad = st["counts"].get("Failed", 0) + st["counts"].get("Stopped", 0)
    if opts.get("json"):
        print(json.dumps(st))
    elif bad:
        print(f"Group {group} completed with {bad} DataTransfer(s) Failed or Stopped "
              f"({', '.join(f'{k} {v}' for k, v in sorted(st['counts'].items()))})")
    else:
        print(f"Group {group} completed")
    return EXIT_ERROR if bad else EXIT_OK


def _status(client: TransferClient, dfid: int, as_json: bool) -> int:
    st = client.status(dfid)
    if as_json:
        print(json.dumps(st, indent=1))
        return EXIT_OK
    f = st["data_file"]
    print(f"DataFileId={f['id']} target={f['target']} size={fmt_size(f['size'])} status={f['status']}"
          + (" [deleted]" if f["deleted"] else ""))
    print(f"  checksum={f['checksum'] or '-'} group={f['groupby'] or '-'} source={f['source_host'] or '-'}:"
          f"{f['source'] or '-'} user={f['user']} submitted={fmt_time(f['created'])}")
    for t in st["transfers"]:
        pct = f" {100 * t['bytes_done'] / f['size']:.0f}%" if f["size"] and t["bytes_done"] else ""
        print(f"  transfer {t['id']} -> {t['destination']}:{t['target']}  {t['status']} ({t['code']}){pct}  "
              f"priority={t['priority']} failures={t['failures']}" + (f"  error: {t['error']}" if t["error"] else ""))
        for h in t["history"]:
            print(f"    {fmt_time(h['time'])}  {h['status']:<12} {h['mover'] or '':<10} {h['message'] or ''}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
