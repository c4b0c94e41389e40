"""The transfer widget's Python side against a real master + mover: push, live progress, stop, requeue."""

from __future__ import annotations

import os
import time

import pytest

from ecflow_lab.jupyter.transfers import TransferWidget
from ecflow_lab.transfer import TransferService


@pytest.fixture
def tclient(tmp_path):
    with TransferService(tmp_path / "home", movers=1, heartbeat=0.2) as svc, svc.client(timeout=15) as c:
        yield c


def wait_for(pred, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_push_progress_stop_and_requeue(tclient, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    tclient.add_destination("arch", f"file://{out}")
    tclient.add_destination("slow", f"file://{out}", rate="1M")
    src = tmp_path / "small.grib"
    src.write_bytes(os.urandom(50_000))
    big = tmp_path / "big.grib"
    big.write_bytes(os.urandom(3_000_000))
    with TransferWidget(tclient) as widget:
        assert set(widget.destination.options) == {"arch", "slow"}
        widget.file.value = str(src)
        widget.destination.value = "arch"
        widget.push_button.click()  # the button's handler pushes
        assert "DataFileId=" in widget.message.value
        (tid,) = widget.rows
        wait_for(lambda: widget.status_of(tid) == "Done")
        row = widget.rows[tid]
        assert row.bar.value == row.bar.max == 50_000 and row.bar.bar_style == "success"
        assert (out / "small.grib").read_bytes() == src.read_bytes()

        dfid = widget.push(str(big), "slow")
        assert dfid is not None
        slow_id = max(widget.rows)
        wait_for(lambda: 0 < widget.rows[slow_id].bar.value < 3_000_000)  # progress arrives live
        widget.rows[slow_id].stop.click()
        wait_for(lambda: widget.status_of(slow_id) == "Stopped")
        assert widget.rows[slow_id].stop.disabled
        widget.rows[slow_id].requeue.click()
        assert "requeue" in widget.message.value
        wait_for(lambda: widget.status_of(slow_id) == "Done", timeout=60)
        assert (out / "big.grib").read_bytes() == big.read_bytes()

        widget.file.value = str(tmp_path / "missing.grib")
        assert widget.push() is None and "no such file" in widget.message.value
        watcher = widget._watcher
    assert widget._watcher is None and not watcher._thread.is_alive()
