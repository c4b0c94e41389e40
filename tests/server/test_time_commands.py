"""User commands that interact with time and archiving, through the Client on a live server driven by a
fake clock: force complete and run miss the next time slot, free_time_dep, archive and restore."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from _support import CLIENT, wait_for

from ecflow_lab.client import Client
from ecflow_lab.defs import Defs
from ecflow_lab.server.app import SuiteServer
from ecflow_lab.server.calendar import FakeClock


@pytest.fixture
def live(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "quick.ecf").write_text(f"#!/bin/bash\n{CLIENT} --init=$$\n{CLIENT} --complete\n")
    (tmp_path / "s" / "slots.ecf").write_text("#!/bin/bash\nexit 0\n")
    (tmp_path / "s" / "f").mkdir()
    for t in ("a", "b"):
        (tmp_path / "s" / "f" / f"{t}.ecf").write_text("#!/bin/bash\nexit 0\n")
    text = """
suite s
  task quick
    time 10:00
  task slots
    time 10:00 12:00 01:00
  family f
    defstatus complete
    task a
    task b
  endfamily
endsuite
"""
    clock = FakeClock(dt.datetime(2024, 3, 4, 9, 0))
    with SuiteServer(tmp_path, checkpoint_mode="NEVER", clock=clock) as srv:
        ci = Client("127.0.0.1", srv.port)
        ci.load(Defs.from_string(text, "s.def"))
        ci.begin_suite("s")
        srv.fake_clock = clock
        yield srv, ci, tmp_path
        ci.close()
        srv.engine.jobs.wait_all(20)


def test_force_complete_requeues_for_the_slot_after_next(live):
    srv, ci, home = live
    assert ci.query("state", "/s/slots") == "queued"
    ci.force_state("/s/slots", "complete")
    # more slots remain (11:00, 12:00): the task goes back to queued, its 10:00 slot used up
    assert wait_for(lambda: ci.query("state", "/s/slots") == "queued", 10)
    clock = srv.fake_clock
    clock.set(dt.datetime(2024, 3, 4, 10, 30))        # the 10:00 slot was used up by the forced complete
    time.sleep(2.5)                                    # a few server polls
    assert ci.query("state", "/s/slots") == "queued"
    clock.set(dt.datetime(2024, 3, 4, 11, 0))
    assert wait_for(lambda: ci.query("state", "/s/slots") in ("submitted", "active", "aborted"), 20)


def test_run_with_a_single_time_dependency_does_not_run_again(live):
    srv, ci, home = live
    ci.run("/s/quick")
    assert wait_for(lambda: ci.query("state", "/s/quick") == "complete", 60)
    # its only slot (10:00) was consumed by the manual run: it stays complete
    time.sleep(0.5)
    assert ci.query("state", "/s/quick") == "complete"
    assert not (home / "s" / "quick.job2").exists()


def test_free_time_dep_releases_the_task_now(live):
    srv, ci, home = live
    assert "10:00" in ci.why("/s/quick")
    ci.free_time_dep("/s/quick")
    assert wait_for(lambda: ci.query("state", "/s/quick") == "complete", 60)


def test_archive_and_restore_a_family(live):
    srv, ci, home = live
    ci.archive("/s/f")
    ci.sync_local()
    f = ci.get_defs().find_abs_node("/s/f")
    assert list(f.children) == []
    assert "archived" in (f.flags or ())
    ci.restore("/s/f")
    ci.sync_local()
    f = ci.get_defs().find_abs_node("/s/f")
    assert [c.name for c in f.children] == ["a", "b"]
    assert ci.query("state", "/s/f/b") == "complete"       # state kept through the archive
    with pytest.raises(RuntimeError, match="not archived"):
        ci.restore("/s/f")
    with pytest.raises(RuntimeError, match="is a task"):
        ci.archive("/s/f/a")
