"""One search per run directory: a lock file holding the owner's PID and host.

A lock left by a process that no longer runs (on this host) is stale and is taken over.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from edgenas.errors import RunDirError

LOCK_NAME = "search.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self.took_over_from: int | None = None

    def acquire(self) -> "RunLock":
        me = {"pid": os.getpid(), "host": socket.gethostname()}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._read()
                if owner and owner.get("host") == me["host"] and _alive(int(owner.get("pid", -1))):
                    raise RunDirError(
                        f"another search (PID {owner['pid']}) is running in {self.path.parent}; "
                        "wait for it to finish or stop it first"
                    ) from None
                if owner and owner.get("host") != me["host"]:
                    raise RunDirError(
                        f"{self.path} is held by PID {owner.get('pid')} on host {owner.get('host')}; "
                        f"if that search is no longer running, delete {self.path}"
                    ) from None
                self.took_over_from = int(owner["pid"]) if owner and "pid" in owner else -1
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as fh:
                json.dump(me, fh)
            return self
        raise RunDirError(f"could not take the lock {self.path}; another process keeps creating it")

    def _read(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None  # half-written or unreadable: its writer died mid-write

    def release(self) -> None:
        owner = self._read()
        if owner and owner.get("pid") == os.getpid():
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
