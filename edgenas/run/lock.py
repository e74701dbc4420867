"""One search per run directory: an exclusive `flock` on `search.lock`, which also names the owner.

The kernel holds the lock for as long as the owning process lives and drops it when the process
dies, however it dies, so acquisition is atomic and a dead owner's lock is free at once: no
window in which a half-written file or a take-over can give two owners. The file's content (PID
and host) is only for messages and for the "took over" note. A lock that names a live process on
this host is refused even when no flock is held (a search started by an older edgenas), and one
that names another host is refused with what to do.
"""

from __future__ import annotations

import fcntl
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


def _owner(data: bytes) -> dict | None:
    try:
        owner = json.loads(data)
    except ValueError:
        return None  # empty or half-written: its writer died mid-write
    return owner if isinstance(owner, dict) else None


class RunLock:
    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self.took_over_from: int | None = None
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        me = {"pid": os.getpid(), "host": socket.gethostname()}
        for _ in range(20):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                owner = self._read() or {}
                raise RunDirError(
                    f"another search (PID {owner.get('pid', '?')}) is running in {self.path.parent}; "
                    "wait for it to finish or stop it first"
                ) from None
            try:
                if os.fstat(fd).st_ino != os.stat(self.path).st_ino:
                    os.close(fd)  # the owner we waited behind removed the file: lock the new one
                    continue
            except FileNotFoundError:
                os.close(fd)
                continue
            owner = _owner(os.pread(fd, 4096, 0))
            if owner and owner.get("host") != me["host"]:
                os.close(fd)
                raise RunDirError(
                    f"{self.path} is held by PID {owner.get('pid')} on host {owner.get('host')}; "
                    f"if that search is no longer running, delete {self.path}"
                )
            pid = owner.get("pid") if owner else None
            if isinstance(pid, int) and _alive(pid):
                os.close(fd)
                raise RunDirError(
                    f"another search (PID {pid}) is running in {self.path.parent}; wait for it to finish or stop it first"
                )
            self.took_over_from = pid if isinstance(pid, int) else None
            data = json.dumps(me).encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
            os.fsync(fd)
            self._fd = fd
            return self
        raise RunDirError(f"could not take the lock {self.path}; another process keeps replacing it")

    def _read(self) -> dict | None:
        try:
            return _owner(self.path.read_bytes())
        except OSError:
            return None

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # still ours: we hold the flock on this very file
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
