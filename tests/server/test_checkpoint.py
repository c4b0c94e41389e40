"""Checkpoint files: atomic replace with a backup, the saver thread, fallback to the backup, the log."""

from __future__ import annotations

import os
import re

import pytest

from ecflow_lab.server.checkpoint import CheckpointSaver, ServerLog, atomic_write, read_checkpoint


def test_atomic_write_keeps_previous_as_backup(tmp_path):
    p = tmp_path / "h.1.ecf.check"
    atomic_write(p, b"one")
    atomic_write(p, b"two")
    assert p.read_bytes() == b"two" and (tmp_path / "h.1.ecf.check.b").read_bytes() == b"one"
    assert not (tmp_path / "h.1.ecf.check.tmp").exists()


def test_read_falls_back_to_backup(tmp_path):
    p = tmp_path / "x.ecf.check"
    assert read_checkpoint(p) is None
    atomic_write(p, b"first")
    atomic_write(p, b"second")
    os.unlink(p)                       # e.g. a crash between the two renames
    text, used = read_checkpoint(p)
    assert text == "first" and used.endswith(".b")


def test_saver_writes_latest_and_reports_errors(tmp_path):
    p = tmp_path / "s.ecf.check"
    saver = CheckpointSaver(p)
    try:
        for i in range(20):
            saver.submit(f"v{i}")
        saver.submit("final", wait=True)
        assert p.read_text() == "final" and saver.last_error is None
    finally:
        saver.close()
    bad = CheckpointSaver(tmp_path / "no" / "such" / "dir" / "c.check")
    try:
        with pytest.raises(RuntimeError, match="failed"):
            bad.submit("x", wait=True)
    finally:
        bad.close()


def test_log_lines_have_ecflow_format(tmp_path):
    log = ServerLog(tmp_path / "h.1.ecf.log", clock=lambda: 1_700_000_000)
    log.msg("--begin /s  :user")
    log.log(" submitted: /s/t job_size:10")
    log.err("oops")
    log.flush()
    lines = (tmp_path / "h.1.ecf.log").read_text().splitlines()
    assert all(re.match(r"^(MSG|LOG|ERR):\[\d\d:\d\d:\d\d \d{1,2}\.\d{1,2}\.\d{4}\] ", x) for x in lines)
    assert log.tail(2).splitlines()[-1].endswith("oops")
    log.clear()
    assert (tmp_path / "h.1.ecf.log").read_text() == ""
    log.close()
