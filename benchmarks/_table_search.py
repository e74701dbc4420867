"""Searches on a table of results, as the controller benchmarks run them: a scratch directory
removed at exit, a profile that times nothing, and the pipeline of a tabular search.

Shared by benchmarks/sample_efficiency.py, pareto_nb201.py, paper_arora_krone.py and
paper_zoph_le.py."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any

from edgenas.reward import RewardConfig
from edgenas.settings.pipeline import Pipeline, SearchSettings, SpaceSettings

UNTIMED = "untimed.toml"


def scratch(prefix: str) -> Path:
    """A temporary directory (removed when the process exits) holding `untimed.toml`, a profile
    under which nothing is exported or timed."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, work, True)
    (work / UNTIMED).write_text('name = "untimed"\ntiming = false\n')
    return work


def table_pipeline(
    prefix: str,
    table: str,
    space: str,
    metric: str,
    test_metric: str,
    reward: RewardConfig | None = None,
    **search: Any,
) -> Pipeline:
    """The pipeline of a search whose results come from `table` (its `metric` column the reward's
    accuracy, `test_metric` kept for the report), on the CPU, untimed, runs in a scratch
    directory; `search` sets further [search] settings; no budget unless `reward` says."""
    work = scratch(prefix)
    return Pipeline(
        search=SearchSettings(
            profile=str(work / UNTIMED),
            device="cpu",
            runs_dir=str(work / "runs"),
            table=table,
            table_metric=metric,
            table_test_metric=test_metric,
            **search,
        ),
        space=SpaceSettings(name=space),
        reward=reward if reward is not None else RewardConfig(budget_params=None),
    )
