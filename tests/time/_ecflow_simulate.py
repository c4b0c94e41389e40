"""Run by Debian's /usr/bin/python3 (imports ecflow 5.9.2): stdin JSON {name: def text}, stdout JSON
{name: {path: times complete}} read from the failures of ``verify complete:999`` on every task/family."""

import json
import os
import re
import sys
import tempfile

import ecflow

cases = json.load(sys.stdin)
out = {}
os.chdir(tempfile.mkdtemp())
for name, text in cases.items():
    fn = name + ".def"
    with open(fn, "w") as fh:
        fh.write(text)
    try:
        report = ecflow.Defs(fn).simulate()
    except RuntimeError as exc:
        out[name] = {"error": str(exc)}
        continue
    pat = r"(?:TASK|FAMILY|SUITE):(\S+) expected 999 complete but found (\d+)"
    res = {m.group(1): int(m.group(2)) for m in re.finditer(pat, report)}
    res["not completed"] = sorted(re.findall(r"suite '(/\S+)' has not completed", report))
    out[name] = res
print(json.dumps(out))
