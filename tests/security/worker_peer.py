"""A cluster peer run as a real child process by the secret tests.

usage: worker_peer.py ENDPOINT SECRET MARKER_FILE

Tries the cluster handshake. Whatever the outcome it then sends a pickle whose *unpickling* creates
MARKER_FILE: sealed with the session when admitted, else raw and with a forged signature (an attacker's
best tries). Prints ``admitted`` or ``refused: <reason>``.
"""

from __future__ import annotations

import pickle
import sys
import time
from pathlib import Path

import zmq

from ecflow_lab.security import AuthenticationError, client_handshake
from ecflow_lab.security.secret import AUTH, HELLO, MSG, _mac


class Touch:
    """Unpickling this creates a file: the proof that a frame was unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def main() -> int:
    endpoint, secret, marker = sys.argv[1:4]
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 2000
    sock.connect(endpoint)
    payload = pickle.dumps(Touch(marker))
    try:
        session = client_handshake(sock, secret, timeout=10, endpoint=endpoint)
    except AuthenticationError as exc:
        # an attacker ignores the failed server proof and answers the challenge anyway
        sock.send_multipart([HELLO, b"c" * 32])
        _, sn, _proof = sock.recv_multipart()
        sock.send_multipart([AUTH, _mac(secret.encode(), b"client", sn, b"c" * 32)])
        verdict = sock.recv_multipart()
        print(f"refused: {exc} / server said {b' '.join(verdict).decode()}", flush=True)
        sock.send_multipart([payload])                                  # unsigned
        sock.send_multipart([MSG, (0).to_bytes(8, "big"), b"\0" * 32, payload])  # forged signature
        sock.send_multipart([b"DONE"])
    else:
        print("admitted", flush=True)
        sock.send_multipart(session.seal([payload]))
        sock.send_multipart(session.seal([b"DONE"]))
    time.sleep(0.2)
    sock.close()
    ctx.term()
    return 0


if __name__ == "__main__":
    sys.exit(main())
