"""Multi-fidelity (ASHA over epochs): the schedule, promotions, pausing and resuming training,
a real search on digits, and kill -9 at a rung."""

import json
import signal
import sqlite3

import pytest
import torch

from edgenas.errors import ConfigError
from edgenas.loop.fidelity import Standing, promotions, rung_epochs
from edgenas.loop.run import prepare, run_search
from edgenas.settings.pipeline import load_pipeline


def test_rung_epochs():
    assert rung_epochs(9, 1, 3) == (1, 3, 9)
    assert rung_epochs(12, 1, 3) == (1, 4, 12)
    assert rung_epochs(4, 1, 2) == (1, 2, 4)
    assert rung_epochs(27, 3, 3) == (3, 9, 27)
    assert rung_epochs(2, 1, 3) == (2,)  # too short to halve: one rung


def test_promotions_take_exactly_the_top_share_of_each_rung():
    # rung 0: nine results, the top three (by reward, then fewer params) go on; two are already at rung 1
    rung0 = [Standing(i, 0, r, 100) for i, r in enumerate([0.1, 0.9, 0.5, 0.8, 0.2, 0.3, 0.8, 0.4, 0.0])]
    rung0[6] = Standing(6, 0, 0.8, 50)  # ties with trial 3 on reward, has fewer params: ranks above it
    rung1 = [Standing(1, 1, 0.95, 100), Standing(6, 1, 0.85, 50)]
    assert promotions(rung0 + rung1, rungs=3, reduction=3) == [(3, 0)]
    # with three results at rung 1, its best goes on to rung 2 (and comes first: highest rung first)
    rung1.append(Standing(3, 1, 0.7, 100))
    assert promotions(rung0 + rung1, rungs=3, reduction=3) == [(1, 1)]
    # nothing leaves the last rung
    assert promotions([Standing(i, 2, 0.5, 1) for i in range(9)], rungs=3, reduction=3) == []
    # fewer results than the reduction: nobody yet
    assert promotions(rung0[:2], rungs=3, reduction=3) == []


def test_paused_and_resumed_training_equals_training_straight_through(digits):
    from edgenas.spaces.mobile import MobileSpace
    from edgenas.training.trainer import TrainRecipe, train_child

    space = MobileSpace(digits.input_shape, digits.num_classes, stages=2, max_depth=1, widths=(8,))
    recipe = TrainRecipe(epochs=3, crop_padding=1, ema_decay=0.9, label_smoothing=0.1)
    args = (digits.x_train, digits.y_train, digits.x_val, digits.y_val, recipe, 5, torch.device("cpu"))
    torch.manual_seed(1)
    straight = space.build(space.smallest())
    full = train_child(straight, *args)
    assert full.state is None  # trained to the schedule's end: nothing to continue
    torch.manual_seed(1)
    paused = space.build(space.smallest())
    first = train_child(paused, *args, stop_epoch=1)
    assert first.epochs == 1 and first.state["epoch"] == 1
    torch.manual_seed(99)  # the resumed model's own initialisation is overwritten by the state
    resumed = space.build(space.smallest())
    second = train_child(resumed, *args, resume=first.state)
    assert second.val_accuracy == full.val_accuracy
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


ASHA = """
[search]
seed = 1
children = {children}
architectures_per_update = 4
device = "cpu"
runs_dir = "{runs}"
fidelity = "asha"
min_epochs = 1
reduction = 2
[space]
max_layers = 3
filters = [4, 8, 16]
kernels = [1, 3]
strides = [1, 2]
[training]
epochs = 4
"""


def test_asha_search_promotes_the_best_and_picks_the_winner_at_the_top_rung(tmp_path):
    path = tmp_path / "asha.toml"
    path.write_text(ASHA.format(children=12, runs=tmp_path / "runs"))
    result = run_search(load_pipeline(path), run_name="asha")
    db = sqlite3.connect(result.run_dir / "search.db")
    rows = db.execute("SELECT trial_id, rung, epochs, reward, update_index FROM rungs ORDER BY update_index").fetchall()
    by_rung = {}
    for trial_id, rung, epochs, reward, update in rows:
        assert epochs == (1, 2, 4)[rung]
        by_rung.setdefault(rung, []).append((trial_id, reward, update))
    ok = db.execute("SELECT COUNT(*) FROM trials WHERE status = 'ok'").fetchone()[0]
    assert len(by_rung[0]) == ok and 2 in by_rung, by_rung.keys()
    # every promotion was earned: at the update that promoted it, the child was in the top half
    # of the results its rung had from earlier updates (ties: fewer parameters, then earlier trial)
    params = dict(db.execute("SELECT id, params FROM trials"))
    for rung in (1, 2):
        for trial_id, _, update in by_rung[rung]:
            earlier = sorted(
                ((r, t) for t, r, u in by_rung[rung - 1] if u < update),
                key=lambda item: (-item[0], params[item[1]], item[1]),
            )
            mine = next(r for t, r, _ in by_rung[rung - 1] if t == trial_id)
            rank = [t for _, t in earlier].index(trial_id)
            assert rank < len(earlier) // 2, (rung, trial_id, mine, earlier)
    # the trial row carries its highest rung's result; the winner comes from the top rung
    for trial_id, rung, reward in db.execute("SELECT id, rung, reward FROM trials WHERE status = 'ok'"):
        top = max(r for r, rows_ in by_rung.items() if any(t == trial_id for t, _, _ in rows_))
        assert rung == top
        assert reward == pytest.approx(next(rw for t, rw, _ in by_rung[top] if t == trial_id))
    winner = result.manifest["winner"]
    best_top = max(by_rung[2], key=lambda item: item[1])
    assert db.execute("SELECT arch_key FROM trials WHERE id = ?", (best_top[0],)).fetchone()[0] == winner["arch_key"]
    # the controller learned from the first rung (one fidelity per batch): the samples say so
    for trial_id, reward in db.execute("SELECT trial_id, reward FROM samples"):
        assert reward == pytest.approx(next(rw for t, rw, _ in by_rung.get(0, []) if t == trial_id))
    # states of children that went on were removed; the last rung keeps none
    states = {p.name for p in (result.run_dir / "children").glob("*.state.pt")}
    assert db.execute("SELECT COUNT(*) FROM rungs WHERE rung = 2 AND state_path IS NOT NULL").fetchone()[0] == 0
    assert (
        len(states)
        == db.execute(
            "SELECT COUNT(*) FROM rungs r WHERE state_path IS NOT NULL AND NOT EXISTS "
            "(SELECT 1 FROM rungs s WHERE s.trial_id = r.trial_id AND s.rung = r.rung + 1)"
        ).fetchone()[0]
    )


def test_asha_settings_that_cannot_work_are_refused(tmp_path):
    path = tmp_path / "asha.toml"
    path.write_text(ASHA.format(children=4, runs=tmp_path / "runs").replace("epochs = 4", "epochs = 1"))
    with pytest.raises(ConfigError, match="two rungs"):
        prepare(load_pipeline(path))
    path.write_text(ASHA.format(children=4, runs=tmp_path / "runs"))
    with pytest.raises(ConfigError, match="early_stopping"):
        load_pipeline(path).override("search", early_stopping="median")


@pytest.mark.slow
def test_kill_at_a_rung_then_resume_makes_the_same_decisions(tmp_path):
    from test_faults import cli

    path = tmp_path / "asha.toml"
    path.write_text(ASHA.format(children=8, runs=tmp_path / "runs"))
    base = ["search", "--pipeline", str(path)]
    ref = cli([*base, "--name", "ref"], tmp_path)
    assert ref.returncode == 0, ref.stderr
    run = tmp_path / "runs" / "crash"
    # train:N counts epochs: 8 first-rung epochs, then promoted children continue; 11 is inside a promotion
    first = cli([*base, "--name", "crash"], tmp_path, fault="train:11")
    assert first.returncode == -signal.SIGKILL, first.stderr
    for fault in ("db-write:2", "train:3"):
        res = cli(["search", "--resume", str(run)], tmp_path, fault=fault)
        assert res.returncode == -signal.SIGKILL, (fault, res.stderr)
    done = cli(["search", "--resume", str(run)], tmp_path)
    assert done.returncode == 0, done.stderr

    def snapshot(run_dir):
        db = sqlite3.connect(run_dir / "search.db")
        trials = db.execute(
            "SELECT id, arch_key, status, rung, val_accuracy, reward FROM trials ORDER BY id"
        ).fetchall()
        rungs = db.execute(
            "SELECT trial_id, rung, epochs, val_accuracy, reward, update_index FROM rungs ORDER BY trial_id, rung"
        ).fetchall()
        samples = db.execute("SELECT update_index, position, arch_key, reward FROM samples ORDER BY 1, 2").fetchall()
        winner = json.loads((run_dir / "manifest.json").read_text())["winner"]
        return trials, rungs, samples, winner["arch_key"], winner["test_accuracy"]

    crashed, reference = snapshot(run), snapshot(tmp_path / "runs" / "ref")
    assert crashed == reference
    assert any(r[1] == 2 for r in reference[1])  # the top rung was reached
