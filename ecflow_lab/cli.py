"""The ``ecflow-lab`` command: one entry point, one sub-command per subsystem.

Each sub-command lives in its subsystem and is imported only when used, so ``ecflow-lab client --event=e``
from a job script starts fast. A sub-command module exposes ``main(argv: list[str]) -> int``.
"""

from __future__ import annotations

import importlib
import sys

# sub-command -> (module with main(argv), one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "server": ("ecflow_lab.server.cli", "start, stop or query a suite server"),
    "client": ("ecflow_lab.client.cli", "ecflow_client-style user and child commands"),
    "simulate": ("ecflow_lab.server.simulate", "run a definition in virtual time and report"),
    "cascade": ("ecflow_lab.cascade.cli", "DAG executor hosts and workers"),
    "transfer": ("ecflow_lab.transfer.cli", "transfer master, data movers and destinations"),
    "ecpds": ("ecflow_lab.transfer.ecpds", "the ecpds command line"),
    "keys": ("ecflow_lab.security.keys", "generate CurveZMQ keys"),
    "demo": ("ecflow_lab.demo", "run the end-to-end demo on a temporary home"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: ecflow-lab COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "ecflow-lab COMMAND --help for the options of one command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``ecflow-lab COMMAND ...`` to the sub-command's ``main``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if args[0] in ("-V", "--version"):
        from ecflow_lab import __version__

        print(__version__)
        return 0
    entry = COMMANDS.get(args[0])
    if entry is None:
        print(f"ecflow-lab: unknown command {args[0]!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(entry[0])
    except ModuleNotFoundError as exc:
        if exc.name and entry[0].startswith(exc.name):
            print(f"ecflow-lab {args[0]}: not available in this build ({exc.name} missing)", file=sys.stderr)
            return 2
        raise
    return int(module.main(args[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
