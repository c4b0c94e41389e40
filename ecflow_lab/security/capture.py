"""Capture loopback TCP traffic of one port, to prove what an eavesdropper on the machine could read.

Used by the tests that check encryption: with Curve on, a secret value sent to a server must not appear in
the capture; with it off it must (so the test can fail). Two backends:

- ``raw``: an ``AF_PACKET`` socket on ``lo`` read by a thread this object owns (needs CAP_NET_RAW);
- ``tshark``: a ``tshark -i lo -f "tcp port N" -w FILE`` child process this object owns and stops.

::

    with LoopbackCapture(port) as cap:
        ... traffic ...
    assert marker not in cap.data
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path

__all__ = ["LoopbackCapture", "capture_unavailable"]

_ETH_P_ALL = 0x0003
_PACKET_OUTGOING = 4


def capture_unavailable(backend: str = "raw") -> str | None:
    """None when ``backend`` can capture on ``lo`` here, else the reason why not (for ``pytest.skip``)."""
    if backend == "raw":
        if not hasattr(socket, "AF_PACKET"):
            return "AF_PACKET sockets need Linux"
        try:
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_ALL))
        except PermissionError:
            return "a raw AF_PACKET socket needs root or CAP_NET_RAW"
        except OSError as exc:
            return f"cannot open an AF_PACKET socket: {exc}"
        try:
            s.bind(("lo", 0))
        except OSError as exc:
            return f"cannot bind a raw socket to lo: {exc}"
        finally:
            s.close()
        return None
    if backend == "tshark":
        if shutil.which("tshark") is None:
            return "tshark is not installed"
        if os.geteuid() != 0 and capture_unavailable("raw") is not None:
            return "tshark needs root or the wireshark group to capture on lo"
        return None
    return f"unknown capture backend {backend!r}"


class LoopbackCapture:
    """Records the TCP traffic of ``port`` on the loopback interface; :attr:`data` holds what was seen."""

    def __init__(self, port: int, backend: str = "raw") -> None:
        self.port = int(port)
        self.backend = backend
        self._buf = bytearray()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._pcap: Path | None = None
        self.packets = 0

    # ------------------------------------------------------------------ lifetime
    def start(self) -> LoopbackCapture:
        """Start capturing; returns once packets of the port will be recorded."""
        if self.backend == "raw":
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_ALL))
            s.bind(("lo", 0))
            s.settimeout(0.05)
            self._sock = s
            self._thread = threading.Thread(target=self._run_raw, name=f"capture-lo-{self.port}", daemon=True)
            self._thread.start()
        elif self.backend == "tshark":
            self._tmp = tempfile.TemporaryDirectory(prefix="ecflow_lab_capture_")
            os.chmod(self._tmp.name, 0o755)  # dumpcap may drop privileges before writing
            self._pcap = Path(self._tmp.name) / "lo.pcapng"
            self._proc = subprocess.Popen(
                ["tshark", "-i", "lo", "-f", f"tcp port {self.port}", "-w", str(self._pcap), "-q"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            self._wait_tshark_ready()
        else:
            raise ValueError(f"unknown capture backend {self.backend!r}")
        return self

    def _wait_tshark_ready(self, timeout: float = 20.0) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        deadline = time.monotonic() + timeout
        seen = b""
        os.set_blocking(self._proc.stderr.fileno(), False)
        while time.monotonic() < deadline:
            chunk = self._proc.stderr.read() or b""
            seen += chunk
            if b"Capturing on" in seen:
                time.sleep(0.2)
                return
            if self._proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"tshark did not start capturing: {seen.decode(errors='replace')[-500:]}")

    def stop(self) -> None:
        """Stop capturing (waits briefly so the last packets are in); safe to call twice."""
        if self._thread is not None:
            time.sleep(0.1)
            self._stop.set()
            self._thread.join(timeout=5)
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._proc is not None:
            time.sleep(0.3)
            if self._proc.poll() is None:
                self._proc.send_signal(signal.SIGINT)
                try:
                    self._proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait(timeout=5)
            if self._proc.stderr is not None:
                self._proc.stderr.close()
            self._proc = None
            if self._pcap is not None and self._pcap.exists():
                self._buf += self._pcap.read_bytes()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> LoopbackCapture:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ results
    @property
    def data(self) -> bytes:
        """TCP payload bytes seen (raw backend) or the whole capture file (tshark backend)."""
        return bytes(self._buf)

    def __contains__(self, needle: bytes) -> bool:
        return needle in self._buf

    def _run_raw(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                frame, addr = self._sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            if addr[2] == _PACKET_OUTGOING:  # lo shows every packet twice: keep the incoming copy
                continue
            payload = self._tcp_payload(frame)
            if payload is not None:
                self.packets += 1
                self._buf += payload

    def _tcp_payload(self, frame: bytes) -> bytes | None:
        if len(frame) < 14:
            return None
        ethertype = struct.unpack("!H", frame[12:14])[0]
        ip = frame[14:]
        if ethertype == 0x0800 and len(ip) >= 20:
            ihl = (ip[0] & 0x0F) * 4
            if ip[9] != 6:
                return None
            total = struct.unpack("!H", ip[2:4])[0]
            tcp, end = ip[ihl:total], total - ihl
        elif ethertype == 0x86DD and len(ip) >= 40:
            if ip[6] != 6:
                return None
            plen = struct.unpack("!H", ip[4:6])[0]
            tcp, end = ip[40:40 + plen], plen
        else:
            return None
        if len(tcp) < 20:
            return None
        sport, dport = struct.unpack("!HH", tcp[:4])
        if self.port not in (sport, dport):
            return None
        offset = (tcp[12] >> 4) * 4
        return bytes(tcp[offset:end])
