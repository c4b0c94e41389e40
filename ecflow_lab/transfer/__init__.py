"""ECPDS-like transfers: a master (SQLite catalogue + scheduler), data movers, a data store, ``ecpds``.

Run it::

    ecflow-lab transfer master --home ~/ecpds --port 2640          # catalogue, scheduler
    ecflow-lab transfer mover --master tcp://127.0.0.1:2640 --home ~/ecpds   # one or more movers
    ecflow-lab transfer destination add archive file:///data/archive --retry-count 5
    ecpds -destination archive -source out.grib                    # prints the Data File ID

or from Python, with processes owned by a context manager::

    with TransferService(home, movers=2) as svc:
        client = svc.client()

The Python API, :class:`TransferClient` (what ``ecpds`` and the notebook transfer widget use):

- ``push(path_or_bytes, destination, target=None, *, groupby=None, priority=None, lifetime=None, delay=None,
  at=None, metadata=None, standby=False, asap=False, requeue=False, force=False, remove=False,
  progress=None) -> int`` — sync push (content streamed to a mover, ID returned once stored and committed)
  or, with ``groupby``, registration for asynchronous retrieval;
- ``push_group(paths, destination, groupby) -> list[int]`` — many files of a group in one request;
- ``status(id) -> {"data_file": {...}, "transfers": [{id, destination, status, code, bytes_done, failures,
  error, history: [...]}]}``; ``wait(id, timeout)`` until its transfers are final;
- ``group_status(group) -> {files, retrieved, counts: {status: n}, remaining, done, pending: [...]}``;
  ``waitfor(group, callback=None, timeout=None)`` calls ``callback(group_status)`` on each change;
- ``transfers(destination=None, status=None, group=None, limit=100, since=None)``, ``history(transfer_id)``;
- ``watch(callback, group=None, destination=None) -> Watcher`` — change events pushed by the master
  (ZeroMQ PUB, one per changed transfer after each commit, gap-free ``seq``; ``{"type": "resync"}`` after a
  gap); the Watcher owns its thread: ``close()`` it or use ``with``;
- ``requeue(id | transfer= | group=)``, ``stop(...)``, ``purge(id | destination=, target=)``;
- ``destinations()``, ``add_destination(name, url, **options)``, ``remove_destination(name)``;
- ``scheduler("start"|"stop"|"check", destination=None)``, ``add_user(name, password, destinations, admin)``.

Statuses are ECPDS's: Arriving, Preset, Fetching, StandBy, Queued, Transferring, Done, ReQueued, Stopped,
Failed, Interrupted (``STATUS_CODES`` maps them to INIT, SCHE, ...). Wire: ZeroMQ, JSON headers plus raw
byte frames; nothing from the network is unpickled.
"""

from __future__ import annotations

from .client import TransferClient
from .destinations import Destination, register
from .service import TransferService
from .wire import FINAL, STATUS_CODES, TransferError

__all__ = ["TransferClient", "TransferService", "TransferError", "Destination", "register", "STATUS_CODES",
           "FINAL"]
