"""Fault injection for the crash-safety tests: real faults at named points of a real search.

Set EDGENAS_FAULT to `POINT[:N][:ACTION]` to act on the N-th time (default 1) the search passes
POINT. ACTION is `kill` (SIGKILL this process, the default), `interrupt` (SIGINT), `term`
(SIGTERM) or `error`
(raise InjectedFault, which the search records as a failed child). Points: train, export,
measure, db-write, checkpoint-write, after-update. Without the variable, `point()` costs one
dictionary lookup.
"""

from __future__ import annotations

import os
import signal

_counts: dict[str, int] = {}


class InjectedFault(RuntimeError):
    """Raised at a fault point whose action is `error`."""


def _spec() -> tuple[str, int, str] | None:
    raw = os.environ.get("EDGENAS_FAULT")
    if not raw:
        return None
    parts = raw.split(":")
    name = parts[0]
    nth = int(parts[1]) if len(parts) > 1 and parts[1] else 1
    action = parts[2] if len(parts) > 2 else "kill"
    return name, nth, action


def point(name: str) -> None:
    spec = _spec()
    if spec is None or spec[0] != name:
        return
    _counts[name] = _counts.get(name, 0) + 1
    if _counts[name] != spec[1]:
        return
    if spec[2] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif spec[2] == "interrupt":
        os.kill(os.getpid(), signal.SIGINT)
    elif spec[2] == "term":
        os.kill(os.getpid(), signal.SIGTERM)
    elif spec[2] == "error":
        raise InjectedFault(f"injected fault at '{name}'")
