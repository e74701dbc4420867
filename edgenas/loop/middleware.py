"""What happens to each proposal of a batch before anything trains (NNI's `Deduplication` and
`Filter`, as plain calls): each piece either answers the proposal (records or reuses a trial) or
passes it on; the last piece queues it for training.

Contract: a piece is called as `piece(session, batch, position, actions, arch)` and returns True
when it dealt with the proposal. Pieces run in the search's own process, one proposal at a time,
never while a child trains.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

from edgenas.evaluate import ChildResult, child_seed, prepare_child

if TYPE_CHECKING:
    from edgenas.loop.session import Batch, SearchSession

Middleware = Callable[["SearchSession", "Batch", int, Sequence[int], Any], bool]


def deduplicate(session: SearchSession, batch: Batch, position: int, actions: Sequence[int], arch: Any) -> bool:
    """A network is evaluated once per run (two action sequences that build it share its key):
    one the store holds is answered from it (a reuse, unless this very sample asked for it before
    a crash); a repeat within the batch waits for the first's result."""
    key = arch.key()
    trial = session.store.trial_by_key(key)
    if trial is not None:
        reused = (trial.origin_update, trial.origin_position) != (batch.update_index, position)
        session.store.add_sample(
            batch.update_index, position, list(actions), key, trial.id, session.first_rung_reward(trial), reused
        )
        session.answer(batch, position, trial, reused)
        return True
    if key in batch.pending:
        batch.pending[key][1].append(position)
        return True
    return False


def gate(session: SearchSession, batch: Batch, position: int, actions: Sequence[int], arch: Any) -> bool:
    """The cheap checks before training (`Constraints`: parameters, model bytes, RAM / flash,
    latency on the untrained graph): a child over a hard limit, or one that cannot be exported or
    timed, is recorded as rejected / failed; the others wait for training."""
    p, cfg = session.prepared, session.pipeline.search
    key = arch.key()
    pre = prepare_child(
        batch.space,
        arch,
        p.data,
        p.profile,
        p.constraints,
        session.pipeline.reward,
        child_seed(cfg.seed, key),
        cfg.measure_timeout_s,
        session.measurer,
        lookup=not session.evaluator.trains,
    )
    if isinstance(pre, ChildResult):
        session.record_new(batch, position, arch, pre)
    else:
        batch.pending[key] = (pre, [position])
    return True


DEFAULT: tuple[Middleware, ...] = (deduplicate, gate)
