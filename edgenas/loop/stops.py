"""Rules that end a search before every child is sampled, and the one that aborts it.

A stop rule is asked before each update (`reason(store)`: None to go on, else the name the
manifest records as `stopped_by`). `FailureHandler` is asked after every recorded result and
raises `SearchAborted` when most children fail.
"""

from __future__ import annotations

import time
from typing import Callable

from edgenas.errors import SearchAborted
from edgenas.run.store import Store
from edgenas.settings.pipeline import SearchSettings


class StopRule:
    """Contract: `reason` reads the store and the clock, nothing else; it changes nothing."""

    name = ""

    def reason(self, store: Store) -> str | None:
        raise NotImplementedError


class MaxMinutes(StopRule):
    """`--max-minutes`: no update starts after the deadline (the executor also starts no training
    job after it: wall-clock time, which a worker process or a Ray task elsewhere can compare).
    The deadline is asked each time: with --finalists it comes earlier as their estimated
    training time grows."""

    name = "max_minutes"

    def __init__(self, deadline: Callable[[], float]) -> None:
        self.deadline = deadline

    def reason(self, store: Store) -> str | None:
        return self.name if time.time() > self.deadline() else None


class MaxEvaluated(StopRule):
    """`--max-evaluated`: no new batch once this many children were trained (or looked up)."""

    name = "max_evaluated"

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def reason(self, store: Store) -> str | None:
        counts = store.status_counts()
        return self.name if counts["ok"] + counts["stopped"] >= self.limit else None


def stop_rules(cfg: SearchSettings, deadline: Callable[[], float] | None) -> list[StopRule]:
    """The search's stop rules, in the order they are asked (`deadline`: --max-minutes' time.time())."""
    rules: list[StopRule] = []
    if deadline is not None:
        rules.append(MaxMinutes(deadline))
    if cfg.max_evaluated is not None:
        rules.append(MaxEvaluated(cfg.max_evaluated))
    return rules


class FailureHandler:
    """Stop the search when most children fail: something is wrong that retrying will not fix.
    Failed children are otherwise recorded and the search goes on."""

    def __init__(self, min_evaluated: int, failed_fraction: float) -> None:
        self.min_evaluated, self.failed_fraction = min_evaluated, failed_fraction

    def check(self, store: Store) -> None:
        counts = store.status_counts()
        evaluated = counts["ok"] + counts["failed"]
        if evaluated < self.min_evaluated or counts["failed"] <= self.failed_fraction * evaluated:
            return
        error, n = store.most_common_error()
        raise SearchAborted(
            f"{counts['failed']} of {evaluated} evaluated children failed (more than "
            f"{self.failed_fraction:.0%}); the most common error ({n}x) was: {error}. "
            "Finished trials are saved in search.db; fix the cause, then resume with --resume"
        )
