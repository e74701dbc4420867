"""The run-directory lock under real concurrency: many processes starting at once never get two
owners, and a killed owner's lock is taken over."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from edgenas.errors import RunDirError
from edgenas.run.lock import RunLock

STARTER = """
import json, os, sys, time
from edgenas.errors import RunDirError
from edgenas.run.lock import RunLock
run, start, log = sys.argv[1], float(sys.argv[2]), sys.argv[3]
while time.time() < start:
    pass
try:
    with RunLock(run):
        t0 = time.time()
        time.sleep(0.15)
        t1 = time.time()
    with open(log, "a") as fh:
        fh.write(json.dumps({"pid": os.getpid(), "from": t0, "to": t1}) + "\\n")
except RunDirError:
    pass
"""


@pytest.mark.parametrize("round_", range(4))
def test_concurrent_starters_never_get_two_owners(tmp_path, round_):
    run = tmp_path / "run"
    run.mkdir()
    log = tmp_path / "owners.jsonl"
    start = time.time() + 1.5  # every starter spins until the same instant
    procs = [subprocess.Popen([sys.executable, "-c", STARTER, str(run), str(start), str(log)]) for _ in range(12)]
    for p in procs:
        assert p.wait(timeout=60) == 0
    owners = sorted((json.loads(line) for line in log.read_text().splitlines()), key=lambda o: o["from"])
    assert owners, "nobody got the lock"
    for a, b in zip(owners, owners[1:]):
        assert a["to"] <= b["from"], f"two owners at once: {a} and {b}"
    assert not (run / "search.lock").exists()  # the last owner removed it


def test_a_killed_owner_is_taken_over_and_a_live_one_refused(tmp_path):
    hold = "import sys, time\nfrom edgenas.run.lock import RunLock\nRunLock(sys.argv[1]).acquire()\nprint('held', flush=True)\ntime.sleep(60)\n"
    owner = subprocess.Popen([sys.executable, "-c", hold, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout.readline().strip() == "held"
        with pytest.raises(RunDirError, match=f"another search \\(PID {owner.pid}\\)"):
            RunLock(tmp_path).acquire()
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    lock = RunLock(tmp_path).acquire()
    try:
        assert lock.took_over_from == owner.pid
        assert json.loads((tmp_path / "search.lock").read_text())["pid"] == os.getpid()
    finally:
        lock.release()
