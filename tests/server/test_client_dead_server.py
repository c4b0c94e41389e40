"""A Client whose server was killed answers with a clear error instead of hanging."""

from __future__ import annotations

import time

import pytest


@pytest.mark.parametrize("zmq_only", [False, True], ids=["direct", "zmq"])
def test_user_command_after_server_sigkill_fails_fast(start_server, monkeypatch, zmq_only):
    if zmq_only:
        monkeypatch.setenv("ECF_LAB_ZMQ_ONLY", "1")
    srv = start_server()
    ci = srv.client()
    ci.ping()
    srv.kill9()
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="ecflow_lab server"):
        ci.ping()
    assert time.monotonic() - t0 < 15
    # the same client works again once the server is back on its port
    srv.start()
    ci.ping()
    ci.close()
