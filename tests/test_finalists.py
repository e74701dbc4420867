"""--finalists: after a search of trained children, the K best that are not templates and the best
template are trained again for longer and the winner is chosen among them; their time is kept
inside --max-minutes; killed while they train and resumed, the result is the uninterrupted run's."""

import re
import signal
import sqlite3

from test_faults import cli

import edgenas

FLAGS = ["--budget", "150000", "-n", "6", "--per-update", "3", "--epochs", "1", "--finalists", "1",
         "--finalist-epochs", "3", "--device", "cpu", "--log-format", "plain"]  # fmt: skip


def _told(run_dir):
    """Each trial's first-rung reward, as the controller was told it (the search's own score)."""
    with sqlite3.connect(run_dir / "search.db") as db:
        return dict(db.execute("SELECT trial_id, MAX(reward) FROM samples GROUP BY trial_id").fetchall())


def test_the_best_child_and_the_best_template_train_longer_and_the_winner_is_one_of_them(tmp_path):
    ref = cli(["search", *FLAGS, "--runs-dir", str(tmp_path / "runs"), "--name", "ref"], tmp_path)
    assert ref.returncode == 0, ref.stderr
    run = edgenas.load_run(tmp_path / "runs" / "ref")
    templates = {t["key"] for t in run.manifest["templates"] if t["status"] == "ok"}
    assert templates and ref.stdout.count("\nfinalist trial") == 2, ref.stdout
    ok = run.trials("ok")
    told = _told(tmp_path / "runs" / "ref")
    finalists = [t for t in ok if t.rung == 1]
    child = [t for t in finalists if t.arch_key not in templates]
    template = [t for t in finalists if t.arch_key in templates]
    assert len(child) == 1 and len(template) == 1
    # the best by the search's own 1-epoch score, among the children and among the templates
    assert told[child[0].id] == max(told[t.id] for t in ok if t.arch_key not in templates)
    assert told[template[0].id] == max(told[t.id] for t in ok if t.arch_key in templates)
    with sqlite3.connect(tmp_path / "runs" / "ref" / "search.db") as db:
        assert dict(db.execute("SELECT trial_id, epochs FROM rungs WHERE rung = 1").fetchall()) == {
            t.id: 3 for t in finalists
        }
    # trained three epochs, not one: the finalists' accuracy is a new measurement
    assert all(len(t.curve or ()) == 3 or t.val_accuracy != told[t.id] for t in finalists)
    assert run.winner.trial_id in {t.id for t in finalists}
    assert run.winner.val_accuracy == max(t.val_accuracy for t in finalists)
    said = [ln for ln in ref.stdout.splitlines() if ln.startswith("finalists, trained again for 3 epochs: ")]
    assert len(said) == 1 and said[0].count("trial ") == 2 and f"trial {run.winner.trial_id}" in said[0], said
    assert "(the winner)" in said[0] and "after 3 epochs" in ref.stdout  # the template's line says which fidelity
    assert "<h2>Finalists</h2>" in (tmp_path / "runs" / "ref" / "report.html").read_text()

    # killed in the second finalist's training (its second epoch), then resumed
    trained = len(ok)
    cut = cli(["search", *FLAGS, "--runs-dir", str(tmp_path / "runs"), "--name", "cut"], tmp_path,
              fault=f"train:{trained + 3 + 2}")  # fmt: skip
    assert cut.returncode == -signal.SIGKILL, cut.stderr
    assert cut.stdout.count("\nfinalist trial") == 1
    done = cli(["search", "--resume", str(tmp_path / "runs" / "cut"), "--log-format", "plain"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\nfinalist trial") == 1 and "\nchild " not in done.stdout, done.stdout
    again = edgenas.load_run(tmp_path / "runs" / "cut")
    assert {t.arch_key: (t.rung, t.val_accuracy) for t in again.trials("ok")} == {
        t.arch_key: (t.rung, t.val_accuracy) for t in ok
    }
    assert again.winner.arch_key == run.winner.arch_key


def test_the_finalists_training_is_kept_inside_max_minutes(tmp_path):
    """A 0.3-minute limit with finalists that train forty times as long as a child: the search stops
    starting children early enough that the finalists end near the limit, not one finalist
    training past it."""
    limit_s = 18
    flags = ["--budget", "150000", "-n", "400", "--per-update", "4", "--epochs", "1", "--finalists", "1",
             "--finalist-epochs", "40", "--device", "cpu", "--log-format", "plain", "--max-minutes", str(limit_s / 60)]  # fmt: skip
    r = cli(["search", *flags, "--runs-dir", str(tmp_path / "runs"), "--name", "a"], tmp_path)
    assert r.returncode == 0, r.stderr
    run = edgenas.load_run(tmp_path / "runs" / "a")
    assert run.manifest["search"]["stopped_by"] == "max_minutes"
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith(("child ", "finalist "))]
    seconds = [_elapsed(ln) for ln in lines]
    last_child = max(s for ln, s in zip(lines, seconds) if ln.startswith("child "))
    finalists = [s for ln, s in zip(lines, seconds) if ln.startswith("finalist ")]
    assert len(finalists) == 2
    assert max(finalists) - last_child > 0.25 * limit_s  # the finalists took a real share of the limit
    assert max(finalists) < 1.25 * limit_s, lines[-4:]  # and ended near it: the search left them their time


def _elapsed(line: str) -> float:
    m = re.search(r"elapsed (?:(\d+)m)?(\d+)s", line)
    assert m, line
    return 60 * int(m.group(1) or 0) + int(m.group(2))


def test_the_photos_setups_finalists_give_way_to_asha_weight_sharing_and_tables():
    """The photos setup trains a finalist; asked for ASHA, weight sharing or a table instead (each
    picks its winner its own way), the search runs without one rather than refusing; --finalists
    given with them is still refused (docs/bad-input.md)."""
    from edgenas.api import make_pipeline

    assert make_pipeline(pipeline="photos").search.finalists == 1
    assert make_pipeline(pipeline="photos", executor="local").search.finalists == 1
    for other in ({"fidelity": "asha"}, {"executor": "supernet"}, {"table": "t.csv"}):
        assert make_pipeline(pipeline="photos", **other).search.finalists == 0, other
        assert make_pipeline(pipeline="photos", finalists=2, **other).search.finalists == 2, other
