"""`edgenas agent`: runs on the target board and times models sent by a search or `bench`.

Imports only onnxruntime, numpy and the standard library (through edgenas.measure.timing and
edgenas.measure.worker), so a board needs neither torch nor the rest of edgenas' dependencies:

    pip install --no-deps edgenas && pip install onnxruntime numpy
    edgenas agent --listen 127.0.0.1:8765 --token-file ~/.config/edgenas/agent.token

Protocol (HTTP/1.1, JSON):
  GET  /info     -> {"agent": "edgenas", "version", "identity", "machine"}
  POST /measure  {"settings": <profile settings>, "model_b64": <ONNX bytes>, "timeout_s"}
                 -> {"ok": true, "stats": {...raw timings, machine info...}} or {"ok": false, "error"}
Every request is signed: X-Edgenas-Timestamp (unix seconds) and X-Edgenas-Signature =
hex(HMAC-SHA256(secret, timestamp + "\\n" + method + "\\n" + path + "\\n" + body)), compared in
constant time; requests older or newer than 5 minutes are refused. Bodies over --max-mb are
refused before they are read. Each model is timed in a separate worker process, one at a time,
so a malformed or hostile model gets an error answer and never takes the agent down.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import hmac
import json
import math
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from edgenas import __version__
from edgenas.agent_protocol import MAX_SKEW_S, read_token, sign  # noqa: F401  (sign: re-exported for clients)
from edgenas.errors import EdgenasError, MeasurementError, ModelFileError, ProfileError


class Agent:
    def __init__(self, token: bytes, max_bytes: int, timeout_s: float) -> None:
        from edgenas.measure.timing import machine_info
        from edgenas.measure.worker import TimingWorker

        self.token = token
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.worker = TimingWorker()
        self.lock = threading.Lock()  # one measurement at a time: timings must not overlap
        self.machine = machine_info()
        self.identity = hashlib.sha256(json.dumps(self.machine, sort_keys=True).encode()).hexdigest()[:16]
        self.served = 0

    def measure(self, request: dict[str, Any]) -> dict[str, Any]:
        from edgenas.profiles import parse_profile

        if not isinstance(request, dict) or "settings" not in request or "model_b64" not in request:
            raise MeasurementError("the request needs 'settings' and 'model_b64'")
        if not isinstance(request["settings"], dict) or not isinstance(request["model_b64"], str):
            raise MeasurementError("'settings' must be a JSON object and 'model_b64' a string")
        profile = parse_profile(dict(request["settings"]), "request settings")
        try:
            model = base64.b64decode(request["model_b64"], validate=True)
        except (binascii.Error, TypeError, ValueError) as exc:
            raise ModelFileError(f"model_b64 is not valid base64: {exc}") from exc
        asked = request.get("timeout_s")
        if asked is not None and not (
            isinstance(asked, (int, float)) and not isinstance(asked, bool) and math.isfinite(asked) and asked > 0
        ):
            raise MeasurementError(f"timeout_s must be a positive number of seconds, got {asked!r}")
        timeout = min(float(asked or self.timeout_s), self.timeout_s)
        with self.lock:
            return self.worker.measure(model, profile.settings(), timeout)


def make_handler(agent: Agent):
    class Handler(BaseHTTPRequestHandler):
        server_version = f"edgenas-agent/{__version__}"
        timeout = 60  # seconds a client may take to send its request

        def log_message(self, fmt: str, *args: Any) -> None:
            sys.stderr.write(f"agent: {self.address_string()} {fmt % args}\n")

        def _reply(self, status: int, payload: dict[str, Any]) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _authorised(self, body: bytes) -> bool:
            ts = self.headers.get("X-Edgenas-Timestamp", "")
            sig = self.headers.get("X-Edgenas-Signature", "")
            try:
                fresh = abs(time.time() - float(ts)) <= MAX_SKEW_S
            except ValueError:
                fresh = False
            expected = sign(agent.token, ts, self.command, self.path, body)
            ok = hmac.compare_digest(expected.encode(), sig.encode())
            if not (ok and fresh):
                self._reply(
                    401, {"ok": False, "error": "unauthorised: wrong token, or clocks more than 5 minutes apart"}
                )
                return False
            return True

        def _body(self) -> bytes | None:
            length = self.headers.get("Content-Length")
            if length is None:
                self._reply(411, {"ok": False, "error": "Content-Length is required"})
                return None
            try:
                n = int(length)
            except ValueError:
                self._reply(400, {"ok": False, "error": "bad Content-Length"})
                return None
            if n < 0 or n > agent.max_bytes:
                self._reply(
                    413, {"ok": False, "error": f"request of {n} bytes is over the agent's limit of {agent.max_bytes}"}
                )
                self.close_connection = True
                return None
            return self.rfile.read(n)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path != "/info":
                self._reply(404, {"ok": False, "error": "unknown path; use GET /info or POST /measure"})
                return
            if self._authorised(b""):
                self._reply(
                    200,
                    {
                        "ok": True,
                        "agent": "edgenas",
                        "version": __version__,
                        "identity": agent.identity,
                        "machine": agent.machine,
                        "served": agent.served,
                    },
                )

        def do_POST(self) -> None:  # noqa: N802
            if self.path != "/measure":
                self._reply(404, {"ok": False, "error": "unknown path; use GET /info or POST /measure"})
                return
            body = self._body()
            if body is None or not self._authorised(body):
                return
            try:
                request = json.loads(body)
                stats = agent.measure(request)
            except (ValueError, UnicodeDecodeError) as exc:
                self._reply(400, {"ok": False, "error": f"the body is not JSON: {exc}"})
                return
            except EdgenasError as exc:
                self._reply(422, {"ok": False, "kind": type(exc).__name__, "error": str(exc)})
                return
            except Exception as exc:  # never let one request take the agent down
                self._reply(500, {"ok": False, "error": f"{type(exc).__name__}: {exc}"})
                return
            agent.served += 1
            self._reply(200, {"ok": True, "stats": stats})

    return Handler


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ProfileError(f"--listen '{listen}' must be HOST:PORT, e.g. 127.0.0.1:8765")
    return host or "127.0.0.1", int(port)


def serve(listen: str, token_file: str, max_mb: float = 64, timeout_s: float = 120, ready=None) -> None:
    host, port = parse_listen(listen)
    agent = Agent(read_token(token_file), int(max_mb * 1024 * 1024), timeout_s)
    try:
        server = ThreadingHTTPServer((host, port), make_handler(agent))
    except OSError as exc:
        raise ProfileError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    where = "loopback only" if host in ("127.0.0.1", "::1", "localhost") else "reachable from the network"
    print(
        f"edgenas agent {__version__} listening on http://{host}:{server.server_address[1]} ({where}); "
        f"identity {agent.identity}",
        flush=True,
    )
    if ready is not None:
        ready(server)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        agent.worker.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="edgenas agent",
        description="Run on the target board: time ONNX models sent by an edgenas search or bench. "
        "Needs only onnxruntime and numpy.",
    )
    parser.add_argument("--listen", default="127.0.0.1:8765", help="HOST:PORT to listen on (default: loopback only)")
    parser.add_argument("--token-file", required=True, help="file holding the shared secret (16+ bytes)")
    parser.add_argument("--max-mb", type=float, default=64, help="largest request accepted, in MiB (default 64)")
    parser.add_argument("--timeout-s", type=float, default=120, help="longest measurement allowed (default 120 s)")
    args = parser.parse_args(argv)
    try:
        serve(args.listen, args.token_file, args.max_mb, args.timeout_s)
    except EdgenasError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
