"""The master's SQLite catalogue (WAL mode): destinations, data files, transfers, history, users.

Only the master's loop thread opens it for writing. Each batch of requests is committed before any reply
leaves the master, so an ID a client has seen is always on disk.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS destinations(
    name TEXT PRIMARY KEY, url TEXT NOT NULL, options TEXT NOT NULL, enabled INTEGER NOT NULL DEFAULT 1,
    created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS data_files(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    uniq TEXT NOT NULL, target TEXT NOT NULL, version TEXT, identity TEXT,
    source_host TEXT, source TEXT, size INTEGER, checksum TEXT,
    store_path TEXT, store_root TEXT, groupby TEXT, metadata TEXT, caller TEXT, user TEXT,
    status TEXT NOT NULL, standby INTEGER NOT NULL DEFAULT 0, noretrieval INTEGER NOT NULL DEFAULT 0,
    fetch_attempt INTEGER NOT NULL DEFAULT 0, fetch_failures INTEGER NOT NULL DEFAULT 0, fetch_mover TEXT,
    error TEXT, created REAL NOT NULL, arrived REAL, deleted INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS data_files_uniq ON data_files(uniq) WHERE deleted = 0;
CREATE INDEX IF NOT EXISTS data_files_group ON data_files(groupby) WHERE groupby IS NOT NULL;
CREATE INDEX IF NOT EXISTS data_files_status ON data_files(status) WHERE deleted = 0;
CREATE TABLE IF NOT EXISTS transfers(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    data_file INTEGER NOT NULL REFERENCES data_files(id), destination TEXT NOT NULL, target TEXT NOT NULL,
    status TEXT NOT NULL, priority INTEGER NOT NULL, queue_time REAL NOT NULL, at REAL NOT NULL,
    expiry REAL, retry_time REAL NOT NULL DEFAULT 0, failures INTEGER NOT NULL DEFAULT 0,
    requeues INTEGER NOT NULL DEFAULT 0, attempt INTEGER NOT NULL DEFAULT 0, mover TEXT,
    bytes_done INTEGER NOT NULL DEFAULT 0, started REAL, finished REAL, error TEXT, asap INTEGER DEFAULT 0,
    path TEXT);
CREATE INDEX IF NOT EXISTS transfers_status ON transfers(status, destination, priority, queue_time);
CREATE INDEX IF NOT EXISTS transfers_file ON transfers(data_file);
CREATE TABLE IF NOT EXISTS history(
    id INTEGER PRIMARY KEY AUTOINCREMENT, transfer INTEGER NOT NULL, time REAL NOT NULL,
    status TEXT NOT NULL, mover TEXT, message TEXT);
CREATE INDEX IF NOT EXISTS history_transfer ON history(transfer);
CREATE TABLE IF NOT EXISTS users(
    name TEXT PRIMARY KEY, salt BLOB NOT NULL, hash BLOB NOT NULL, destinations TEXT NOT NULL,
    admin INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL);
"""


def open_db(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the catalogue with WAL journaling and the schema applied."""
    conn = sqlite3.connect(str(path), isolation_level="DEFERRED", check_same_thread=True)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.executescript(SCHEMA)
    conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('created', ?)", (str(time.time()),))
    conn.commit()
    return conn


def row(r: sqlite3.Row | None) -> dict[str, Any] | None:
    return None if r is None else {k: r[k] for k in r.keys()}
