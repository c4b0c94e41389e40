"""A tiny ROUTER echo server run as a real child process by the Curve tests.

Encryption follows ECF_SSL (keys from ECFLOW_LAB_KEYS); prints its port, then answers each request
``[payload]`` with ``[b"echo", user-id, payload]`` until it receives ``b"STOP"`` or SIGTERM.
"""

from __future__ import annotations

import signal
import sys

import zmq

from ecflow_lab.security import CurveServer, peer_user, ssl_setting


def main() -> int:
    curve = CurveServer.from_setting(ssl_setting(), "127.0.0.1", 0)
    ctx = curve.context if curve else zmq.Context()
    router = curve.socket(zmq.ROUTER) if curve else ctx.socket(zmq.ROUTER)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    print(port, flush=True)
    running = True

    def stop(*_: object) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    try:
        while running:
            if not router.poll(100):
                continue
            ident, *frames = router.recv_multipart(copy=False)
            user = (peer_user(frames[0]) or "").encode()
            payload = frames[-1].bytes
            router.send_multipart([ident.bytes, b"echo", user, payload])
            if payload == b"STOP":
                break
    finally:
        router.close(linger=0)
        if curve:
            curve.close()
        else:
            ctx.term()
    return 0


if __name__ == "__main__":
    sys.exit(main())
