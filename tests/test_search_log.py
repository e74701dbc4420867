"""What a user reads while a search runs without a terminal: a line per finished child and per
controller update, flushed as they happen, the same lines in RUN_DIR/search.log, whole tables at
the end; `--quiet` prints only the summary."""

import os
import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from edgenas.cli import app

CHILD = re.compile(r"^child (\d+)/(\d+) trial (\d+) (ok|rejected|failed|stopped) ")
UPDATE = re.compile(r"^update (\d+): trained (\d+), ")


def test_plain_lines_on_output_and_in_search_log(tiny_pipeline, tmp_path):
    res = CliRunner().invoke(app, ["search", "--pipeline", tiny_pipeline(children=6), "--name", "p"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    children = [m for m in map(CHILD.match, lines) if m]
    updates = [m for m in map(UPDATE.match, lines) if m]
    assert [int(m.group(1)) for m in children] == [1, 2, 3, 4, 5, 6]
    assert all(m.group(2) == "6" for m in children)
    assert [int(m.group(1)) for m in updates] == [1, 2]  # 3 children per update
    # every event line is in the run's own log, in the same order
    log = (tmp_path / "runs" / "p" / "search.log").read_text().splitlines()
    assert log == [line for line in lines if CHILD.match(line) or UPDATE.match(line)]
    # the summary's table is whole: no cell cut with an ellipsis
    assert "…" not in res.output and "top candidates" in res.output

    quiet = CliRunner().invoke(app, ["search", "--pipeline", tiny_pipeline(children=6), "--name", "q", "--quiet"])
    assert quiet.exit_code == 0, quiet.output
    assert not any(CHILD.match(line) or UPDATE.match(line) for line in quiet.output.splitlines())
    assert "winner trial" in quiet.output
    assert len((tmp_path / "runs" / "q" / "search.log").read_text().splitlines()) == 8
    bad = CliRunner().invoke(app, ["search", "--log-format", "fancy"])
    assert bad.exit_code == 2 and "--log-format 'fancy' is unknown; use auto, rich or plain" in bad.output


@pytest.mark.slow
def test_a_child_line_arrives_through_a_pipe_while_the_search_runs(tiny_pipeline, tmp_path):
    """A real search with its output on a pipe (as under nohup or a job scheduler): the first
    child's line can be read while the search is still running (its manifest, written last, is
    not there yet), not only when the process ends and its buffers are flushed."""
    manifest = tmp_path / "runs" / "pipe" / "manifest.json"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # a pipe is block-buffered
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgenas", "search", "--pipeline", tiny_pipeline(children=6), "--name", "pipe"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        first = None
        for line in proc.stdout:  # type: ignore[union-attr]
            if CHILD.match(line):
                first = (line, manifest.exists())
                break
        assert first is not None, "no child line before the output ended"
        assert not first[1], "the search had already finished: the line was not flushed as it happened"
        rest = proc.stdout.read()  # type: ignore[union-attr]
        assert proc.wait(timeout=300) == 0, rest
    finally:
        proc.kill()
    assert first[0].startswith("child 1/6 ")
    assert len([line for line in rest.splitlines() if CHILD.match(line)]) == 5


def test_the_eta_is_the_time_limit_when_that_comes_first():
    """A 60-minute search of 160 children at 4 minutes a child once said `eta 9h45m`; the search
    stops at its --max-minutes, so the line says the time left to it instead."""
    import dataclasses

    from edgenas.loop.log import child_line, eta
    from edgenas.loop.session import Progress
    from edgenas.run.store import Trial

    def snapshot(seconds_left):
        return Progress(3, 160, 3, 0, 0, 0, 0, 0.7, 0.7, 75_938, 0.6, "ok", 672.0, seconds_left=seconds_left)

    assert eta(snapshot(None)) == "eta 9h46m08s"  # 224 s a child, 157 to go
    assert eta(snapshot(2928.0)) == "eta 48m48s (--max-minutes)"
    assert eta(snapshot(36_000.0)) == "eta 9h46m08s"  # the limit is further away than the pace
    done = Progress(160, 160, 160, 0, 0, 0, 0, 0.7, 0.7, 1, 0.6, "ok", 60.0, seconds_left=10.0)
    assert eta(done) is None
    unset = dict.fromkeys(("reason", "macs", "flops", "latency_median_ms", "latency_p90_ms", "latency_runs",
                           "latency_label", "latency", "train_seconds", "export_seconds", "measure_seconds",
                           "onnx_path", "weights_path", "error", "curve"))  # fmt: skip
    trial = Trial(id=3, arch_key="mobile|k", actions=[0], arch={}, status="ok", params=20_572, val_accuracy=0.6,
                  reward=0.6, reward_terms={}, seed=0, total_seconds=60.0, origin_update=0, origin_position=2,
                  finished_at=0.0, **unset)  # fmt: skip
    line = child_line(dataclasses.replace(snapshot(2928.0), trial=trial, epochs=12))
    assert line.startswith("child 3/160 trial 3 ok 12 epochs val 60.00 %")
    assert line.endswith("elapsed 11m12s eta 48m48s (--max-minutes)")
