"""Run by Debian's /usr/bin/python3: print real ecFlow's view of .def files as JSON.

stdin: JSON list of paths.  stdout: JSON {path: {"ok": bool, "text": printout or error, "check": text}};
with --lines, one JSON line [path, result] per file as it goes.
"""

import json
import sys

import ecflow  # noqa: F401  (Debian's python3-ecflow)


def one(path):
    try:
        d = ecflow.Defs(path)
        return {"ok": True, "text": str(d), "check": d.check()}
    except Exception as e:  # ecFlow raises RuntimeError for bad input
        return {"ok": False, "text": str(e)}


paths = json.load(sys.stdin)
if sys.argv[1:] == ["--lines"]:
    # one JSON line per file, flushed: a caller can tell where ecFlow itself crashed (it aborts on some input)
    for path in paths:
        sys.stdout.write(json.dumps([path, one(path)]) + "\n")
        sys.stdout.flush()
else:
    json.dump({path: one(path) for path in paths}, sys.stdout)
