"""Run by Debian's /usr/bin/python3: print real ecFlow's view of .def files as JSON.

stdin: JSON list of paths.  stdout: JSON {path: {"ok": bool, "text": printout or error, "check": text}}.
"""

import json
import sys

import ecflow  # noqa: F401  (Debian's python3-ecflow)

out = {}
for path in json.load(sys.stdin):
    try:
        d = ecflow.Defs(path)
        out[path] = {"ok": True, "text": str(d), "check": d.check()}
    except Exception as e:  # ecFlow raises RuntimeError for bad input
        out[path] = {"ok": False, "text": str(e)}
json.dump(out, sys.stdout)
