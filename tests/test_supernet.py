"""The weight-sharing evaluator: a supernet of the mobile space whose subnetworks, written into
their stand-alone networks, compute what the supernet computes; trained once, resumable after
kill -9 with the same result, reused by a later search with another profile."""

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edgenas import spaces
from edgenas.controllers.base import complete_uniformly
from edgenas.spaces.mobile_supernet import ElasticMobileNet, extract


@pytest.mark.parametrize("heads", [(0,), (0, 32)])
def test_an_extracted_subnetwork_computes_what_the_supernet_computes(heads):
    space = spaces.create("mobile", input_shape=(3, 16, 16), num_classes=10, widths=(8, 16, 24), heads=heads)
    torch.manual_seed(0)
    net = ElasticMobileNet(space).eval()
    for m in net.modules():  # BatchNorm statistics away from the identity, so a wrong slice shows
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
    x = torch.randn(2, 3, 16, 16)
    rng = np.random.default_rng(0)
    outputs = []
    for _ in range(12):
        arch = space.decode(complete_uniformly(space, [], rng))
        with torch.no_grad():
            a, b = net(x, arch), extract(net, arch).eval()(x)
        assert torch.allclose(a, b, atol=1e-5), arch
        outputs.append(a)
    assert any(not torch.allclose(outputs[0], o) for o in outputs[1:])  # the subnetworks differ


TINY = """
[search]
children = 6
architectures_per_update = 3
executor = "supernet"
supernet_epochs = 3
retrain_top = {retrain}
device = "cpu"
runs_dir = "{runs}"
[training]
epochs = 2
[space]
name = "mobile"
stages = 2
max_depth = 2
widths = [8, 16]
kernels = [3, 5]
expansions = [1, 3]
stem = 8
"""


def cli(args, cwd, fault=None):
    env = {k: v for k, v in os.environ.items() if k != "EDGENAS_FAULT"}
    if fault:
        env["EDGENAS_FAULT"] = fault
    env["EDGENAS_CACHE_DIR"] = str(Path(cwd) / "latency-cache")
    return subprocess.run([sys.executable, "-m", "edgenas", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=900)  # fmt: skip


def test_progressive_shrinking_opens_the_space_a_fifth_of_the_epochs_at_a_time():
    from edgenas.evaluators.supernet import PHASES, _sample_part, phase

    assert [phase(e, 10) for e in range(10)] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert [phase(e, 3) for e in range(3)] == [1, 3, 4]  # short runs still end on the whole space
    assert phase(0, 1) == len(PHASES) - 1  # one epoch: the sandwich rule
    space = spaces.create("mobile", input_shape=(3, 16, 16), num_classes=10, widths=(8, 16, 24), heads=(0, 32))
    largest = ElasticMobileNet(space).largest()
    rng = np.random.default_rng(0)
    assert _sample_part(space, rng, ()) == largest  # the first phase: the largest alone
    for elastic in PHASES[1:4]:
        archs = [_sample_part(space, rng, elastic) for _ in range(40)]
        for a in archs:
            assert space.decode(space.encode(a)) == a  # a network of the space
            assert a.head == largest.head and all(s.width == 24 for s in a.stages)
            blocks = [b for s in a.stages for b in s.blocks]
            assert ("depth" in elastic) or all(len(s.blocks) == space.max_depth for s in a.stages)
            assert ("expansion" in elastic) or all(b.expansion == 6 for b in blocks)
        seen = {(b.kernel, b.se) for a in archs for s in a.stages for b in s.blocks}
        assert {k for k, _ in seen} == {3, 5, 7} and {se for _, se in seen} == {False, True}  # elastic, varied
        if "depth" in elastic:
            assert {len(s.blocks) for a in archs for s in a.stages} == {1, 2, 3}
        if "expansion" in elastic:
            assert {b.expansion for a in archs for s in a.stages for b in s.blocks} == {1, 3, 6}


@pytest.mark.slow
def test_the_supernet_trains_once_survives_kill_9_and_serves_another_profile(tmp_path):
    for runs in ("a", "b"):
        (tmp_path / f"{runs}.toml").write_text(TINY.format(runs=tmp_path / runs, retrain=0))
    # uninterrupted
    ref = cli(["search", "--pipeline", str(tmp_path / "a.toml"), "--name", "ref"], tmp_path)
    assert ref.returncode == 0, ref.stderr
    assert ref.stderr.count("supernet: epoch") == 3
    # killed while writing the second epoch's checkpoint, then resumed: the same supernet and trials
    first = cli(["search", "--pipeline", str(tmp_path / "b.toml"), "--name", "cut"], tmp_path, fault="supernet-epoch:2")
    assert first.returncode == -signal.SIGKILL, first.stderr
    done = cli(["search", "--resume", str(tmp_path / "b" / "cut")], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("supernet: epoch") == 2  # epochs 2 and 3; epoch 1 was kept
    assert (
        "supernet: training 3 epochs (sandwich rule) on 1,167 images, from epoch 2 (the earlier epochs were kept)"
        in done.stderr
    )
    (a,) = (tmp_path / "a" / ".supernets").glob("*.pt")
    (b,) = (tmp_path / "b" / ".supernets").glob("*.pt")
    sa, sb = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    import edgenas

    va = {t.arch_key: t.val_accuracy for t in edgenas.load_run(tmp_path / "a" / "ref").trials("ok")}
    vb = {t.arch_key: t.val_accuracy for t in edgenas.load_run(tmp_path / "b" / "cut").trials("ok")}
    assert va == vb and len(va) >= 4
    # another device: the trained supernet is reused, nothing trains again
    other = cli(["search", "--pipeline", str(tmp_path / "a.toml"), "--name", "x86", "--profile", "cpu-x86"], tmp_path)
    assert other.returncode == 0, other.stderr
    assert "supernet: epoch" not in other.stderr
    # a specialisation killed mid-way (the fourth child's measurement), then resumed: the same result
    cut = cli(["search", "--pipeline", str(tmp_path / "a.toml"), "--name", "x86-cut", "--profile", "cpu-x86"],
              tmp_path, fault="measure:4")  # fmt: skip
    assert cut.returncode == -signal.SIGKILL, cut.stderr
    done = cli(["search", "--resume", str(tmp_path / "a" / "x86-cut")], tmp_path)
    assert done.returncode == 0 and "supernet: epoch" not in done.stderr, done.stderr
    vx = {t.arch_key: t.val_accuracy for t in edgenas.load_run(tmp_path / "a" / "x86").trials("ok")}
    assert {t.arch_key: t.val_accuracy for t in edgenas.load_run(tmp_path / "a" / "x86-cut").trials("ok")} == vx
    assert (
        edgenas.load_run(tmp_path / "a" / "x86-cut").winner.arch_key
        == edgenas.load_run(tmp_path / "a" / "x86").winner.arch_key
    )
    # resumed with another dataset or space: one message, exit 2, nothing trained or lost
    for flags in (["--dataset", "mnist"], ["--space", "layerwise"], ["--profile", "cpu-x86"]):
        bad = cli(["search", "--resume", str(tmp_path / "b" / "cut"), *flags], tmp_path)
        said = " ".join(bad.stderr.split())
        assert bad.returncode == 2 and "contradict the ones" in said and "Traceback" not in said
        assert "reuses this run's trained supernet" in said  # how to search it for another device
    assert {t.arch_key: t.val_accuracy for t in edgenas.load_run(tmp_path / "b" / "cut").trials("ok")} == vb
    # a target no subnetwork fits: refused before anything trains (the trained supernet is not even loaded)
    tight = cli(["search", "--pipeline", str(tmp_path / "a.toml"), "--name", "tight", "--profile", "stm32f746",
                 "--max-ram-kb", "1"], tmp_path)  # fmt: skip
    assert tight.returncode == 2 and "no network of the 'mobile' space fits" in tight.stderr
    assert not (tmp_path / "a" / "tight").exists()


@pytest.mark.slow
def test_the_best_inherited_candidates_are_trained_stand_alone_and_one_of_them_wins(tmp_path):
    """retrain_top = 2: after the search the two best candidates by inherited score, and the
    templates that fit, are trained stand-alone ([training], 2 epochs) and recorded as rung 1; the
    winner is the best of them, so never worse than the best template. Killed during the second
    of those trainings and resumed: only the ones not done train, and the result is the
    uninterrupted run's."""
    import edgenas

    (tmp_path / "p.toml").write_text(TINY.format(runs=tmp_path / "runs", retrain=2))
    ref = cli(["search", "--pipeline", str(tmp_path / "p.toml"), "--name", "ref", "--log-format", "plain"], tmp_path)
    assert ref.returncode == 0, ref.stderr
    run = edgenas.load_run(tmp_path / "runs" / "ref")
    templates = {t["key"] for t in run.manifest["templates"] if t["status"] == "ok"}
    assert templates and ref.stdout.count("trained stand-alone") == 2 + len(templates)
    ok = run.trials("ok")
    retrained = [t for t in ok if t.rung == 1]
    best = [t for t in retrained if t.arch_key not in templates]
    inherited = [t for t in ok if not t.rung]
    assert len(best) == 2 and {t.arch_key for t in retrained} == {t.arch_key for t in best} | templates
    # the two were the best by inherited score: every other candidate scored at most as well
    with sqlite3.connect(tmp_path / "runs" / "ref" / "search.db") as db:
        told = dict(db.execute("SELECT trial_id, MAX(reward) FROM samples GROUP BY trial_id").fetchall())
    assert min(told[t.id] for t in best) >= max((told[t.id] for t in inherited), default=0.0)
    assert run.winner.trial_id in {t.id for t in retrained}
    assert run.winner.val_accuracy == max(t.val_accuracy for t in retrained)
    # killed in the second stand-alone training, then resumed
    cut = cli(
        ["search", "--pipeline", str(tmp_path / "p.toml"), "--name", "cut", "--log-format", "plain"],
        tmp_path,
        fault="train:3",
    )  # train:3 = epoch 1 of the second stand-alone training (2 epochs each)
    assert cut.returncode == -signal.SIGKILL, cut.stderr
    assert cut.stdout.count("trained stand-alone") == 1
    done = cli(["search", "--resume", str(tmp_path / "runs" / "cut"), "--log-format", "plain"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("trained stand-alone") == 1 + len(templates), done.stdout
    assert "supernet: epoch" not in done.stderr and "supernet: trained by an earlier search" in done.stderr
    again = edgenas.load_run(tmp_path / "runs" / "cut")
    assert {t.arch_key: (t.rung, t.val_accuracy) for t in again.trials("ok")} == {
        t.arch_key: (t.rung, t.val_accuracy) for t in ok
    }


@pytest.mark.slow
def test_a_supernet_that_outlasts_max_minutes_leaves_the_search_its_minutes(tmp_path):
    """The supernet trains before the search's clock starts: a limit shorter than its training
    still scores the templates and candidates, then trains the finalists stand-alone (not cut by
    the limit), and the winner is at least as good as the best template, measured alike. (Trained
    by progressive shrinking, whose 20 epochs pass through all five phases; the other tests use the
    sandwich rule.)"""
    import edgenas

    toml = TINY.format(runs=tmp_path / "runs", retrain=1).replace("supernet_epochs = 3", "supernet_epochs = 20")
    (tmp_path / "p.toml").write_text(toml)
    r = cli(["search", "--pipeline", str(tmp_path / "p.toml"), "--name", "a", "--max-minutes", "0.1",
             "--log-format", "plain", "--supernet-rule", "progressive"], tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "supernet: training 20 epochs (progressive shrinking) on 1,167 images" in r.stderr
    assert r.stderr.count("supernet: epoch") == 20
    run = edgenas.load_run(tmp_path / "runs" / "a")
    assert run.manifest["search"]["warm_up_seconds"] > 0.1 * 60  # the supernet alone outlasted the limit
    assert "of it the supernet's training, before the search's clock" in " ".join(r.stdout.split())
    templates = run.manifest["templates"]
    assert templates and all(t["status"] == "ok" for t in templates)
    retrained = {t.arch_key for t in run.trials("ok") if t.rung == 1}
    assert len(retrained) == 1 + len(templates) and retrained >= {t["key"] for t in templates}
    assert run.winner.val_accuracy >= max(t["val_accuracy"] for t in templates)
