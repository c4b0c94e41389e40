"""``ecflow-lab client``: ecflow_client's flags, for job scripts and the shell.

Child commands (in ``.ecf`` jobs; context from ECF_HOST, ECF_PORT, ECF_NAME, ECF_PASS, ECF_TRYNO, ECF_RID,
ECF_TIMEOUT, ECF_DENIED; with NO_ECF set they do nothing and succeed)::

    ecflow-lab client --init=$$ [--add NAME=VALUE ...]
    ecflow-lab client --event=ev [set|clear]      --meter=m 5      --label=info "some text"
    ecflow-lab client --complete [--remove NAME ...]    --abort="reason"
    ecflow-lab client --wait="/s/t == complete"   --queue=q active|complete|aborted|no_of_aborted|reset [step] [path]

User commands (``--host``/``--port`` or ECF_HOST/ECF_PORT)::

    --ping  --load=file.def [force]  --begin[=suite] [--force]  --get[=/path]  --get_state[=/path]  --suites
    --delete=/path|_all [force]  --suspend=/p  --resume=/p  --requeue=[abort|force] /p  --force=STATE [recursive] /p
    --run=[force] /p  --kill=/p  --status=/p  --free-dep=[all|trigger|date|time] /p  --order=/p top|bottom|...
    --alter=add|change|delete|set_flag|clear_flag TYPE [NAME] [VALUE] /p ...  --replace=/p file [parent] [force]
    --restart  --halt  --shutdown  --terminate  --check_pt[=NEVER|ON_TIME|ALWAYS|interval]  --restore_from_checkpt
    --stats  --log=get|clear|flush|new [N|path]  --msg=text  --query=state|dstate|event|meter|variable|trigger /p [attr]
    --why=/p  --file=/p [script|job|jobout|manual|kill|stat] [max_lines]  --zombie_get  --zombie_fob=/p ...
    --server_version  --version  --news  --sync  --check[=/p]  --group="cmd1; cmd2"
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from ecflow_lab.client import Client

CHILD = {"init", "event", "meter", "label", "complete", "abort", "wait", "queue"}


def _split(argv: list[str]) -> tuple[list[tuple[str, list[str]]], dict[str, str]]:
    """``[(command, values)]`` and global options (host, port, user) from ecflow_client-style argv."""
    cmds: list[tuple[str, list[str]]] = []
    opts: dict[str, str] = {}
    for arg in argv:
        if arg.startswith("--") and len(arg) > 2:
            name, eq, value = arg[2:].partition("=")
            name = name.replace("-", "_") if name not in ("free-dep",) else "free_dep"
            if name in ("host", "port", "user", "rid", "password"):
                opts[name] = value
                cmds.append(("__opt", [name]))
                continue
            cmds.append((name, [value] if eq else []))
        elif arg.startswith("-") and len(arg) == 2 and arg[1] in "hv":
            cmds.append(({"h": "help", "v": "version"}[arg[1]], []))
        else:
            if not cmds:
                raise SystemExit(f"ecflow-lab client: expected an option starting with '--', got {arg!r}")
            name, values = cmds[-1]
            if name == "__opt":
                opts[values[0]] = arg
                cmds.pop()
                continue
            values.append(arg)
    cmds = [c for c in cmds if c[0] != "__opt"]
    return cmds, opts


def _flags(values: list[str], *words: str) -> tuple[set[str], list[str]]:
    found = {v for v in values if v in words}
    return found, [v for v in values if v not in words]


def _need(values: list[str], n: int, usage: str) -> None:
    if len(values) < n:
        raise RuntimeError(f"expected {usage}")


def _out(text: Any) -> None:
    if text is None:
        return
    s = str(text)
    sys.stdout.write(s if s.endswith("\n") or not s else s + "\n")


def _get(ci: Client, values: list[str], state: bool) -> None:
    ci.get_server_defs()
    d = ci.get_defs()
    if values and values[0]:
        node = d.find_abs_node(values[0]) if hasattr(d, "find_abs_node") else None
        if node is None:
            raise RuntimeError(f"no node {values[0]}")
        _out(node.state_text() if state and hasattr(node, "state_text") else str(node))
        return
    from ecflow_lab.defs import write_state

    _out(write_state(d) if state else str(d))


def _alter(ci: Client, v: list[str]) -> None:
    _need(v, 3, "--alter=add|change|delete|set_flag|clear_flag TYPE [NAME] [VALUE] /path ...")
    paths = [x for x in v[2:] if x.startswith("/")]
    rest = [x for x in v[2:] if not x.startswith("/")]
    name = rest[0] if rest else ""
    value = " ".join(rest[1:]) if len(rest) > 1 else ""
    ci.alter(paths, v[0], v[1], name, value)


COMMANDS: dict[str, Callable[[Client, list[str], dict[str, Any]], None]] = {
    # child commands
    "init": lambda ci, v, o: (ci.set_child_pid(v[0] if v else os.getpid()),
                              ci.set_child_init_add_vars(o.get("add", {})), ci.child_init()),
    "event": lambda ci, v, o: ci.child_event(v[0], v[1] if len(v) > 1 else True),
    "meter": lambda ci, v, o: (_need(v, 2, "--meter=NAME VALUE"), ci.child_meter(v[0], int(v[1]))),
    "label": lambda ci, v, o: (_need(v, 1, "--label=NAME TEXT"), ci.child_label(v[0], " ".join(v[1:]))),
    "complete": lambda ci, v, o: (ci.set_child_complete_del_vars(o.get("remove", [])), ci.child_complete()),
    "abort": lambda ci, v, o: ci.child_abort(" ".join(v)),
    "wait": lambda ci, v, o: (_need(v, 1, "--wait=EXPRESSION"), ci.child_wait(" ".join(v))),
    "queue": lambda ci, v, o: (_need(v, 2, "--queue=NAME ACTION [STEP] [PATH]"),
                               _out(ci.child_queue(v[0], v[1], v[2] if len(v) > 2 else "",
                                                   v[3] if len(v) > 3 else ""))),
    # user commands
    "ping": lambda ci, v, o: (ci.ping(), _out(f"ping server({ci.get_host()}:{ci.get_port()}) succeeded")),
    "load": lambda ci, v, o: (_need(v, 1, "--load=FILE [force] [check_only]"),
                              ci.load(v[0], "force" in v, "check_only" in v)),
    "begin": lambda ci, v, o: (ci.begin_suite(v[0], "force" in v or "force" in o) if v and v[0] not in ("", "force")
                               else ci.begin_all_suites("force" in v or "force" in o)),
    "get": lambda ci, v, o: _get(ci, v, False),
    "get_state": lambda ci, v, o: _get(ci, v, True),
    "migrate": lambda ci, v, o: _get(ci, v, True),
    "suites": lambda ci, v, o: _out("\n".join(ci.suites())),
    "delete": lambda ci, v, o: (ci.delete_all("force" in v) if "_all" in v else
                                ci.delete([x for x in v if x.startswith("/")], "force" in v)),
    "suspend": lambda ci, v, o: ci.suspend(v),
    "resume": lambda ci, v, o: ci.resume(v),
    "requeue": lambda ci, v, o: ci.requeue([x for x in v if x.startswith("/")],
                                           next((x for x in v if x in ("abort", "force")), "")),
    "force": lambda ci, v, o: (_need(v, 2, "--force=STATE [recursive] /path ..."),
                               (ci.force_state_recursive if "recursive" in v else ci.force_state)(
                                   [x for x in v[1:] if x.startswith("/")], v[0])
                               if ":" not in "".join(x for x in v[1:] if x.startswith("/")) or v[0] not in ("set", "clear")
                               else ci.force_event([x for x in v[1:] if x.startswith("/")], v[0])),
    "run": lambda ci, v, o: ci.run([x for x in v if x.startswith("/")], "force" in v),
    "kill": lambda ci, v, o: ci.kill(v),
    "status": lambda ci, v, o: ci.status(v),
    "free_dep": lambda ci, v, o: {
        "trigger": ci.free_trigger_dep, "date": ci.free_date_dep, "time": ci.free_time_dep,
    }.get(next((x for x in v if not x.startswith("/")), "trigger"), ci.free_all_dep)(
        [x for x in v if x.startswith("/")]) if "all" not in v else ci.free_all_dep([x for x in v if x.startswith("/")]),
    "order": lambda ci, v, o: (_need(v, 2, "--order=/path top|bottom|alpha|order|up|down"), ci.order(v[0], v[1])),
    "alter": lambda ci, v, o: _alter(ci, v),
    "replace": lambda ci, v, o: (_need(v, 2, "--replace=/path FILE [parent] [force]"),
                                 ci.replace(v[0], v[1], "parent" in v, "force" in v)),
    "restart": lambda ci, v, o: ci.restart_server(),
    "halt": lambda ci, v, o: ci.halt_server(),
    "shutdown": lambda ci, v, o: ci.shutdown_server(),
    "terminate": lambda ci, v, o: ci.terminate_server(),
    "check_pt": lambda ci, v, o: (ci.checkpt(v[0]) if v and v[0] in ("NEVER", "ON_TIME", "ALWAYS", "CHECK_NEVER",
                                                                       "CHECK_ON_TIME", "CHECK_ALWAYS")
                                  else ci.checkpt("UNDEFINED", int(v[0])) if v and v[0].isdigit() else ci.checkpt()),
    "restore_from_checkpt": lambda ci, v, o: ci.restore_from_checkpt(),
    "stats": lambda ci, v, o: ci.stats(True),
    "stats_reset": lambda ci, v, o: ci.stats_reset(),
    "log": lambda ci, v, o: _log(ci, v),
    "msg": lambda ci, v, o: ci.log_msg(" ".join(v)),
    "query": lambda ci, v, o: (_need(v, 2, "--query=KIND /path [attribute]"),
                               _out(ci.query(v[0], v[1].split(":")[0] if ":" in v[1] and len(v) == 2 else v[1],
                                             " ".join(v[2:]) if len(v) > 2 else
                                             (v[1].split(":", 1)[1] if ":" in v[1] else "")))),
    "why": lambda ci, v, o: (_need(v, 1, "--why=/path"), _out(ci.why(v[0]))),
    "file": lambda ci, v, o: (_need(v, 1, "--file=/path [type] [max_lines]"),
                              _out(ci.get_file(v[0], v[1] if len(v) > 1 else "script", v[2] if len(v) > 2 else "10000"))),
    "zombie_get": lambda ci, v, o: _out("\n".join(_zfmt(z) for z in ci.zombie_get())),
    "zombie_fob": lambda ci, v, o: ci.zombie_fob(v),
    "zombie_fail": lambda ci, v, o: ci.zombie_fail(v),
    "zombie_adopt": lambda ci, v, o: ci.zombie_adopt(v),
    "zombie_block": lambda ci, v, o: ci.zombie_block(v),
    "zombie_remove": lambda ci, v, o: ci.zombie_remove(v),
    "zombie_kill": lambda ci, v, o: ci.zombie_kill(v),
    "server_version": lambda ci, v, o: _out(ci.server_version()),
    "version": lambda ci, v, o: _out(ci.version()),
    "news": lambda ci, v, o: _out("news" if ci.news_local() else "no news"),
    "sync": lambda ci, v, o: (ci.sync_local(), _out(f"synced {len(ci.changed_node_paths())} changed nodes")),
    "check": lambda ci, v, o: _out(ci.check(v[0] if v and v[0] else "")),
    "edit_script": lambda ci, v, o: (_need(v, 2, "--edit_script=/path edit|pre_process"),
                                     _out(ci.edit_script_edit(v[0]) if v[1] == "edit" else ci.edit_script_preprocess(v[0]))),
    "reloadwsfile": lambda ci, v, o: ci.reload_wl_file(),
    "reloadpasswdfile": lambda ci, v, o: ci.reload_passwd_file(),
    "reloadcustompasswdfile": lambda ci, v, o: ci.reload_custom_passwd_file(),
    "debug_server_on": lambda ci, v, o: ci.debug_server_on(),
    "debug_server_off": lambda ci, v, o: ci.debug_server_off(),
    "group": lambda ci, v, o: run_group(ci, " ".join(v)),
    "help": lambda ci, v, o: _out(__doc__),
}


def _zfmt(z: dict[str, Any]) -> str:
    return " ".join(f"{k}:{v}" for k, v in z.items())


def _log(ci: Client, v: list[str]) -> None:
    action = v[0] if v else "get"
    if action == "get":
        _out(ci.get_log(int(v[1]) if len(v) > 1 else 100))
    elif action == "clear":
        ci.clear_log()
    elif action == "flush":
        ci.flush_log()
    elif action == "new":
        ci.new_log(v[1] if len(v) > 1 else "")
    else:
        raise RuntimeError(f"--log: expected get|clear|flush|new, got {action!r}")


def run_group(ci: Client, text: str) -> None:
    """``--group="cmd1; cmd2 args"``: run several commands with one client."""
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        words = part.split()
        argv = [("--" + words[0]) if not words[0].startswith("--") else words[0], *words[1:]]
        cmds, _ = _split(argv)
        for name, values in cmds:
            if name not in COMMANDS:
                raise RuntimeError(f"--group: unknown command {name!r}")
            COMMANDS[name](ci, values, {})


def main(argv: list[str]) -> int:
    """Run ecflow_client-style commands; exit 1 with ``Error: ...`` on stderr when the server refuses."""
    try:
        cmds, opts = _split(argv)
    except SystemExit as exc:
        print(str(exc), file=sys.stderr)
        return 2
    if not cmds:
        print(__doc__)
        return 2
    extra: dict[str, Any] = {}
    main_cmds = []
    for name, values in cmds:
        if name == "add":
            extra["add"] = dict(x.split("=", 1) for x in values if "=" in x)
        elif name == "remove":
            extra["remove"] = values
        elif name == "ssl":   # ecflow_client --ssl: same as ECF_SSL=1
            extra["ssl"] = True
        elif name == "force":
            if values:
                main_cmds.append((name, values))
            else:
                extra["force"] = True
        else:
            main_cmds.append((name, values))
    if any(n in CHILD for n, _ in main_cmds) and os.environ.get("NO_ECF") is not None:
        return 0
    ci = Client(opts.get("host") or None, opts.get("port") or None)
    if opts.get("user"):
        ci.set_user_name(opts["user"])
    if extra.get("ssl"):
        ci.enable_ssl()
    if opts.get("rid"):
        ci.set_child_pid(opts["rid"])
    if opts.get("password"):
        ci.set_child_password(opts["password"])
    try:
        for name, values in main_cmds:
            fn = COMMANDS.get(name)
            if fn is None:
                print(f"ecflow-lab client: unknown option --{name}; see ecflow-lab client --help", file=sys.stderr)
                return 2
            fn(ci, values, extra)
    except (RuntimeError, ValueError, IndexError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    finally:
        ci.close()
    return 0
