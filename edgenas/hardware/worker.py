"""A separate process that times models: `python -m edgenas.hardware.worker`.

Protocol: one JSON request per line on stdin ({"id", "model_path", "settings", "timeout_s"}), one
JSON answer per line on stdout ({"id", "ok": true, "stats": {...}} or {"id", "ok": false, "kind",
"error"}). The client checks every answer's id against its request and replaces the worker on a
mismatch or on any failure between writing a request and reading its answer, so an answer can
never be read by the wrong request.
Before each measurement the process pins itself to the profile's `cpu_cores`. Timing in its own
process means a model that crashes onnxruntime, or hangs, takes down only the worker: the
client kills it at the deadline and starts a fresh one for the next model.

The worker imports only onnxruntime, numpy and the standard library.
"""

from __future__ import annotations

import json
import math
import os
import select
import shutil
import subprocess
import sys
import tempfile
from typing import Any

from edgenas.errors import MeasurementError, ModelFileError


def _serve() -> None:
    from edgenas.hardware.timing import time_model

    all_cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_setaffinity") else []
    for line in sys.stdin:
        req: dict[str, Any] = {}
        try:
            req = json.loads(line)
            wanted = req["settings"].get("cpu_cores") or all_cores
            cores = [c for c in wanted if c in all_cores]
            if wanted and not cores:
                raise MeasurementError(
                    f"profile '{req['settings'].get('name')}' pins timing to cores {wanted}, but this machine "
                    f"has cores {all_cores}; change cpu_cores in the profile"
                )
            if hasattr(os, "sched_setaffinity") and cores:
                os.sched_setaffinity(0, cores)
            stats = time_model(req["model_path"], req["settings"], req.get("timeout_s"), req.get("max_input_bytes"))
            answer: dict[str, Any] = {"ok": True, "stats": stats}
        except (MeasurementError, ModelFileError) as exc:
            answer = {"ok": False, "kind": type(exc).__name__, "error": str(exc)}
        except Exception as exc:  # report, keep serving
            answer = {"ok": False, "kind": "MeasurementError", "error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps({"id": req.get("id") if isinstance(req, dict) else None, **answer}) + "\n")
        sys.stdout.flush()


class TimingWorker:
    """Client side: owns one worker process, restarts it after a crash or a timeout.

    Not thread-safe; one per process is enough (timing must not overlap anyway)."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None
        self.restarts = 0
        self.requests = 0
        self._stderr = tempfile.TemporaryFile(mode="w+")

    def _start(self) -> subprocess.Popen[str]:
        if self.proc is None or self.proc.poll() is not None:
            if self.proc is not None:
                self.restarts += 1
            env = {**os.environ, "PYTHONUNBUFFERED": "1"}
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "edgenas.hardware.worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                text=True,
                env=env,
            )
        return self.proc

    def measure(
        self,
        model: bytes | str,
        settings: dict[str, Any],
        timeout_s: float | None = None,
        max_input_bytes: int | None = None,
    ) -> dict[str, Any]:
        """Time `model` (bytes, or a path) in the worker. Bytes are written alone into a fresh
        private directory, so an external-data reference in them finds no file to read."""
        tmp = None
        if isinstance(model, bytes):
            tmp = tempfile.mkdtemp(prefix="edgenas-model-")  # mode 0700, empty
            path = os.path.join(tmp, "model.onnx")
            with open(path, "wb") as fh:
                fh.write(model)
        else:
            path = os.path.abspath(model)
        if timeout_s is not None and not (math.isfinite(timeout_s) and timeout_s > 0):
            raise MeasurementError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
        self.requests += 1
        request_id = self.requests
        try:
            proc = self._start()
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(
                json.dumps(
                    {
                        "id": request_id,
                        "model_path": path,
                        "settings": settings,
                        "timeout_s": timeout_s,
                        "max_input_bytes": max_input_bytes,
                    }
                )
                + "\n"
            )
            proc.stdin.flush()
            # The worker enforces timeout_s between runs; the extra margin covers process start and
            # a single run that never returns, after which the worker is killed.
            limit = None if timeout_s is None else timeout_s + 30.0
            ready, _, _ = select.select([proc.stdout], [], [], limit)
            if not ready:
                self.kill()
                raise MeasurementError(f"timing did not finish within {timeout_s:g} s; the timing process was stopped")
            line = proc.stdout.readline()
            if not line:
                code = proc.wait()
                self.proc = None
                self.restarts += 1
                raise MeasurementError(f"the timing process died (exit code {code}) while running the model")
            answer = json.loads(line)
            if answer.get("id") != request_id:
                raise MeasurementError(
                    f"the timing process answered request {answer.get('id')} to request {request_id}; it was replaced"
                )
        except (BrokenPipeError, OSError) as exc:
            self.kill()
            raise MeasurementError(f"the timing process failed: {exc}") from exc
        except BaseException:
            self.kill()  # whatever went wrong, no answer may be left in the pipe for the next request
            raise
        finally:
            if tmp:
                shutil.rmtree(tmp, ignore_errors=True)
        if not answer["ok"]:
            cls = ModelFileError if answer["kind"] == "ModelFileError" else MeasurementError
            raise cls(answer["error"])
        return answer["stats"]

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None


if __name__ == "__main__":
    _serve()
