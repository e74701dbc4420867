"""The history a controller reads: built from the run's store before each `propose` and `learn`,
so a controller keeps no copy and a resumed search has it back as it was."""

from __future__ import annotations

import json
from typing import Sequence

from edgenas import pareto
from edgenas.controllers.base import History
from edgenas.run.store import Store


def read_history(store: Store, before_update: int, objectives: Sequence[str] = ()) -> History:
    """What the controller was told in the updates before `before_update`: every sample's actions
    and told reward in order; the highest rung above the first that each network reached by then
    (multi-fidelity); each finished network's objective vector (`--objectives`)."""
    rows = store.told(before_update)
    reached: dict[int, tuple[int, float]] = {}
    for r in store.rung_results(before_update=before_update):  # by trial, then rung: the highest last
        if r.rung >= 1:
            reached[r.trial_id] = (r.rung, r.reward)
    vector_of: dict[int, tuple[float, ...] | None] = {}
    if objectives:
        for t in store.trials("ok"):
            vector_of[t.id] = pareto.goodness(objectives, pareto.trial_values(t))
    actions, rungs, vectors = [], {}, {}
    for row in rows:
        a = tuple(json.loads(row["actions"]))
        actions.append(a)
        if row["trial_id"] in reached:
            rungs[a] = reached[row["trial_id"]]
        if (v := vector_of.get(row["trial_id"])) is not None:
            vectors[a] = tuple(float(x) for x in v)
    return History(
        tuple(actions),
        tuple(float(row["told"]) for row in rows),
        tuple(int(row["update_index"]) for row in rows),
        rungs,
        vectors,
    )
