"""The latency cache: SQLite, keyed by (ONNX graph hash, profile fingerprint).

Lives in $EDGENAS_CACHE_DIR (default ~/.cache/edgenas)/latency.db and is shared by searches and
`edgenas bench`. A fingerprint covers the profile's settings, the onnxruntime version and who
measured (this host or an agent), so a change to any of them measures again. Measurements
flagged unstable are not cached.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from edgenas.fsutil import cache_dir


class LatencyCache:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(str(path), timeout=30, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS latency (graph_hash TEXT NOT NULL, fingerprint TEXT NOT NULL, "
            "stats TEXT NOT NULL, created_at REAL NOT NULL, PRIMARY KEY (graph_hash, fingerprint))"
        )

    @classmethod
    def default(cls) -> "LatencyCache | None":
        try:
            return cls(cache_dir() / "latency.db")
        except (OSError, sqlite3.Error):
            return None  # an unwritable cache only costs re-measurement

    def get(self, graph_hash: str, fingerprint: str) -> dict[str, Any] | None:
        row = self.conn.execute(
            "SELECT stats FROM latency WHERE graph_hash = ? AND fingerprint = ?", (graph_hash, fingerprint)
        ).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, graph_hash: str, fingerprint: str, stats: dict[str, Any]) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO latency VALUES (?, ?, ?, ?)",
            (graph_hash, fingerprint, json.dumps(stats), time.time()),
        )

    def count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM latency").fetchone()[0])

    def close(self) -> None:
        self.conn.close()
