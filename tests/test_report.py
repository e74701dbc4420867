import re
import sqlite3

import pytest
from typer.testing import CliRunner

from edgenas.cli import app
from edgenas.loop.run import run_search
from edgenas.run.report import pareto_front, report_data
from edgenas.settings.pipeline import load_pipeline


def test_pareto_front():
    pts = [(1.0, 0.5, 1), (2.0, 0.9, 2), (2.0, 0.8, 3), (3.0, 0.85, 4), (0.5, 0.4, 5), (4.0, 0.95, 6)]
    assert pareto_front(pts) == [5, 1, 2, 6]
    assert pareto_front([]) == []


def test_report_written_by_every_search_and_reproducible(tiny_pipeline):
    result = run_search(load_pipeline(tiny_pipeline(children=6, budget=900)), run_name="r")
    run = result.run_dir
    page = (run / "report.html").read_text()
    imgs = re.findall(r"<img alt='([^']+)' src='data:image/png;base64,([A-Za-z0-9+/=]{1000,})'>", page)
    assert [a for a, _ in imgs] == [
        "Reward and accuracy vs children",
        "Pareto front: accuracy vs latency",
        "Pareto front: accuracy vs parameters",
        "Controller entropy over time",
    ]
    assert "http" not in page.replace("http-equiv", "")  # self-contained: nothing fetched
    winner = result.manifest["winner"]["trial_id"]
    assert f"Winner: trial {winner}" in page
    assert "Top candidates" in page and "Rejected and failed children" in page
    assert f"edgenas search --pipeline {run / 'pipeline.toml'}" in page
    d = report_data(run)
    assert winner in d["pareto_params"]  # the winner has the best accuracy: it is on every front's top
    assert sum(d["counts"].values()) + d["reused"] == 6

    # the reproduce command repeats the search exactly
    again = CliRunner().invoke(app, ["search", "--pipeline", str(run / "pipeline.toml"), "--name", "again"])
    assert again.exit_code == 0, again.output
    q = "SELECT arch_key, status, val_accuracy FROM trials ORDER BY id"
    assert (
        sqlite3.connect(run / "search.db").execute(q).fetchall()
        == sqlite3.connect(run.parent / "again" / "search.db").execute(q).fetchall()
    )

    res = CliRunner().invoke(app, ["report", str(run)])
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())
    assert "Pareto front, accuracy vs latency: trial" in out and "report:" in out


def test_report_bad_input(tmp_path):
    res = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 2 and "not an edgenas run directory" in res.output


def test_an_asha_report_never_compares_across_rungs(tiny_pipeline, tmp_path):
    """A real ASHA run's report data: fronts only among the highest rung's children, the reward and
    accuracy series at one fidelity (the first rung, what the controller was told), and each
    higher rung's best-so-far line made of that rung's results alone."""
    import dataclasses

    from edgenas.run.store import Store

    pipe = load_pipeline(tiny_pipeline(children=6))
    pipe = pipe.override("search", fidelity="asha", min_epochs=1, reduction=2)
    pipe = dataclasses.replace(pipe, training=dataclasses.replace(pipe.training, epochs=4))
    run = run_search(pipe, run_name="asha").run_dir
    d = report_data(run)
    with Store(run / "search.db", readonly=True) as store:
        results = store.rung_results()
    assert {r.rung for r in results} == {0, 1, 2}
    top = max(r.rung for r in results)
    assert d["front_rung"] == top
    for front in (d["pareto_latency"], d["pareto_params"]):
        assert front and all((d["trials"][i].rung or 0) == top for i in front)
    first = {r.trial_id: r for r in results if r.rung == 0}
    best = None
    with Store(run / "search.db", readonly=True) as store:
        samples = list(store.samples())
    assert len(samples) == len(d["samples"]) == 6
    for s, sample in zip(d["samples"], samples):
        if s["status"] == "ok":
            r0 = first[sample["trial_id"]]
            assert s["val_accuracy"] == r0.val_accuracy and s["reward"] == r0.reward
            best = s["reward"] if best is None else max(best, s["reward"])
        assert s["best_reward"] == best
    assert set(d["rung_best"]) == {1, 2}
    for rung, steps in d["rung_best"].items():
        own = {r.reward for r in results if r.rung == rung and r.val_accuracy is not None}
        values = [b for _, b in steps]
        assert values and set(values) <= own, f"rung {rung}'s line uses another rung's rewards"
        assert values == sorted(values) and values[-1] == max(own)
    page = (run / "report.html").read_text()
    assert "Multi-fidelity rungs" in page


@pytest.mark.slow
def test_the_predictor_report_shows_its_surrogates_record(tiny_pipeline):
    """A real search with the predictor: from the update where its surrogate chooses (after
    `initial` results), each update keeps how many networks it predicted and how they ranked;
    the report draws that record."""
    import dataclasses

    from edgenas.settings.pipeline import ControllerSettings

    pipe = load_pipeline(tiny_pipeline(children=15))
    pipe = dataclasses.replace(pipe, controller=ControllerSettings("predictor", {"initial": 6}))
    run = run_search(pipe, run_name="pred").run_dir
    d = report_data(run)
    stats = [u["stats"] for u in d["updates"]]
    assert len(stats) == 5
    assert all("surrogate_predicted" not in s for s in stats[:2])  # 6 results before the surrogate chooses
    assert all(s.get("surrogate_predicted") == 3 and s.get("candidates", 0) > 3 for s in stats[2:])
    rhos = [s["surrogate_spearman"] for s in stats[2:] if "surrogate_spearman" in s]
    assert rhos and all(-1 <= r <= 1 for r in rhos)
    assert "The predictor&#x27;s surrogate: predicted against what it got" in (run / "report.html").read_text()
