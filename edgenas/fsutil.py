"""Atomic file writes: a reader (or a resumed search) sees the old file or the new one, never half."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def cache_dir() -> Path:
    """Where edgenas keeps caches (decoded datasets, latencies): $EDGENAS_CACHE_DIR or ~/.cache/edgenas."""
    return Path(os.environ.get("EDGENAS_CACHE_DIR") or Path.home() / ".cache" / "edgenas")


def atomic_write_bytes(path: Path, data: bytes, fault_point: str | None = None) -> None:
    """Write to a temporary file in the same directory, fsync, then rename over `path`.

    `fault_point` names a fault-injection point passed half-way through the write."""
    from edgenas import faults

    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as fh:
            half = len(data) // 2
            fh.write(data[:half])
            if fault_point:
                fh.flush()
                faults.point(fault_point)
            fh.write(data[half:])
            fh.flush()
            os.fsync(fh.fileno())
    except OSError:  # e.g. the disk is full: the old file stays, the partial copy goes
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2) + "\n").encode("utf-8"))
