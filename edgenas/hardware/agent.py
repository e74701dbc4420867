"""`edgenas agent`: runs on the target board and times models sent by a search or `bench`.

Imports only onnxruntime, numpy and the standard library (through edgenas.hardware.timing and
edgenas.hardware.worker), so a board needs neither torch nor the rest of edgenas' dependencies:

    pip install --no-deps edgenas && pip install onnxruntime numpy
    edgenas agent --listen 127.0.0.1:8765 --token-file ~/.config/edgenas/agent.token

Protocol (HTTP/1.1, JSON):
  GET  /info     -> {"agent": "edgenas", "version", "identity", "machine"}
  POST /measure  {"settings": <profile settings>, "model_b64": <ONNX bytes>, "timeout_s"}
                 -> {"ok": true, "stats": {...raw timings, machine info...}} or {"ok": false, "error"}
Every request is signed (edgenas.agent_protocol): timestamp, a one-time nonce and an HMAC-SHA256
of both with the method, path and body, compared in constant time. Before a byte of the body is
read, the signature headers must be there and well formed, the timestamp within 5 minutes and the
nonce unseen; the declared length at most --max-mb; at most MAX_UPLOADS bodies are read at once.
A nonce that was served is refused for the whole window (no replays). Each model is timed in a
separate worker process, one at a time, so a malformed or hostile model gets an error answer and
never takes the agent down.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import hmac
import json
import math
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from edgenas.errors import EdgenasError, MeasurementError, ModelFileError, ProfileError
from edgenas.hardware.agent_protocol import MAX_SKEW_S, read_token, sign
from edgenas.version import __version__

MAX_UPLOADS = 2  # request bodies read at the same time


class Agent:
    def __init__(self, token: bytes, max_bytes: int, timeout_s: float, max_input_bytes: int = 256 * 2**20) -> None:
        from edgenas.hardware.timing import machine_info
        from edgenas.hardware.worker import TimingWorker

        self.token = token
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.max_input_bytes = max_input_bytes
        self.worker = TimingWorker()
        self.lock = threading.Lock()  # one measurement at a time: timings must not overlap
        self.machine = machine_info()
        self.identity = hashlib.sha256(json.dumps(self.machine, sort_keys=True).encode()).hexdigest()[:16]
        self.served = 0
        self.uploads = threading.BoundedSemaphore(MAX_UPLOADS)  # bodies read at once: memory <= MAX_UPLOADS x max_bytes
        self._nonces: dict[str, float] = {}
        self._nonce_lock = threading.Lock()

    def seen(self, nonce: str) -> bool:
        with self._nonce_lock:
            now = time.time()
            for old in [n for n, t in self._nonces.items() if now - t > 2 * MAX_SKEW_S]:
                del self._nonces[old]
            return nonce in self._nonces

    def remember(self, nonce: str) -> None:
        """A served nonce is refused for the whole window in which its timestamp is accepted."""
        with self._nonce_lock:
            self._nonces[nonce] = time.time()

    def measure(self, request: dict[str, Any]) -> dict[str, Any]:
        from edgenas.hardware.profiles import parse_profile

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
            return self.worker.measure(model, profile.settings(), timeout, self.max_input_bytes)


class AgentHandler(BaseHTTPRequestHandler):
    """The agent's HTTP endpoints (GET /info, POST /measure), each request signed with the shared
    token; `make_handler` binds it to one `Agent`."""

    agent: Agent
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

    def _refuse(self, why: str) -> bool:
        self._reply(401, {"ok": False, "error": f"unauthorised: {why}"})
        self.close_connection = True
        return False

    def _headers_ok(self) -> bool:
        """What can be checked before reading a byte of the body: the signature headers are
        there and well formed, the timestamp is fresh and the nonce is new."""
        ts = self.headers.get("X-Edgenas-Timestamp", "")
        sig = self.headers.get("X-Edgenas-Signature", "")
        nonce = self.headers.get("X-Edgenas-Nonce", "")
        if len(sig) != 64 or not all(c in "0123456789abcdef" for c in sig) or not 16 <= len(nonce) <= 64:
            return self._refuse("missing or malformed signature headers (X-Edgenas-Timestamp, -Nonce, -Signature)")
        try:
            fresh = abs(time.time() - float(ts)) <= MAX_SKEW_S
        except ValueError:
            fresh = False
        if not fresh:
            return self._refuse("wrong token, or clocks more than 5 minutes apart")
        if self.agent.seen(nonce):
            return self._refuse("this request was already served (a replay); sign each request anew")
        return True

    def _authorised(self, body: bytes) -> bool:
        ts = self.headers.get("X-Edgenas-Timestamp", "")
        nonce = self.headers.get("X-Edgenas-Nonce", "")
        expected = sign(self.agent.token, ts, self.command, self.path, body, nonce)
        if not hmac.compare_digest(expected.encode(), self.headers.get("X-Edgenas-Signature", "").encode()):
            return self._refuse("wrong token, or clocks more than 5 minutes apart")
        self.agent.remember(nonce)
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
        if n < 0 or n > self.agent.max_bytes:
            self._reply(
                413, {"ok": False, "error": f"request of {n} bytes is over the agent's limit of {self.agent.max_bytes}"}
            )
            self.close_connection = True
            return None
        if not self.agent.uploads.acquire(blocking=False):
            self._reply(503, {"ok": False, "error": "the agent is receiving other requests; try again"})
            self.close_connection = True
            return None
        try:
            return self.rfile.read(n)
        finally:
            self.agent.uploads.release()

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path != "/info":
            self._reply(404, {"ok": False, "error": "unknown path; use GET /info or POST /measure"})
            return
        if self._headers_ok() and self._authorised(b""):
            self._reply(
                200,
                {
                    "ok": True,
                    "agent": "edgenas",
                    "version": __version__,
                    "identity": self.agent.identity,
                    "machine": self.agent.machine,
                    "served": self.agent.served,
                },
            )

    def do_POST(self) -> None:  # noqa: N802
        if self.path != "/measure":
            self._reply(404, {"ok": False, "error": "unknown path; use GET /info or POST /measure"})
            return
        if not self._headers_ok():
            return
        body = self._body()
        if body is None or not self._authorised(body):
            return
        try:
            request = json.loads(body)
            stats = self.agent.measure(request)
        except (ValueError, UnicodeDecodeError) as exc:
            self._reply(400, {"ok": False, "error": f"the body is not JSON: {exc}"})
            return
        except EdgenasError as exc:
            self._reply(422, {"ok": False, "kind": type(exc).__name__, "error": str(exc)})
            return
        except Exception as exc:  # never let one request take the agent down
            self._reply(500, {"ok": False, "error": f"{type(exc).__name__}: {exc}"})
            return
        self.agent.served += 1
        self._reply(200, {"ok": True, "stats": stats})


def make_handler(agent: Agent) -> type[AgentHandler]:
    """The request handler class of an HTTP server serving `agent`."""
    return type("Handler", (AgentHandler,), {"agent": agent})


def parse_listen(listen: str) -> tuple[str, int]:
    """HOST:PORT, with IPv6 hosts in brackets ([::1]:8765)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or (":" in host and not host.startswith("[")):
        raise ProfileError(f"--listen '{listen}' must be HOST:PORT, e.g. 127.0.0.1:8765 or [::1]:8765")
    return host.strip("[]") or "127.0.0.1", int(port)


def _check_limits(max_mb: float, timeout_s: float, max_input_mb: float = 256) -> None:
    if not (math.isfinite(max_mb) and max_mb > 0):
        raise ProfileError(f"--max-mb must be a positive number of MiB, got {max_mb}")
    if not (math.isfinite(max_input_mb) and max_input_mb > 0):
        raise ProfileError(f"--max-input-mb must be a positive number of MiB, got {max_input_mb}")
    if not (math.isfinite(timeout_s) and timeout_s > 0):
        raise ProfileError(f"--timeout-s must be a positive number of seconds, got {timeout_s}")


def serve(
    listen: str, token_file: str, max_mb: float = 64, timeout_s: float = 120, ready=None, max_input_mb: float = 256
) -> None:
    import socket

    _check_limits(max_mb, timeout_s, max_input_mb)
    host, port = parse_listen(listen)
    agent = Agent(read_token(token_file), int(max_mb * 1024 * 1024), timeout_s, int(max_input_mb * 2**20))
    mode = os.stat(os.path.expanduser(token_file)).st_mode
    if mode & 0o077:
        print(
            f"warning: the token file {token_file} can be read by other users (mode {mode & 0o777:o}); "
            f"chmod 600 {token_file}",
            file=sys.stderr,
            flush=True,
        )

    class Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        daemon_threads = True

    try:
        server = Server((host, port), make_handler(agent))
    except OSError as exc:
        raise ProfileError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    where = "loopback only" if host in ("127.0.0.1", "::1", "localhost") else "reachable from the network"
    shown = f"[{host}]" if ":" in host else host
    print(
        f"edgenas agent {__version__} listening on http://{shown}:{server.server_address[1]} ({where}); "
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
    parser.add_argument(
        "--max-input-mb",
        type=float,
        default=256,
        help="largest input tensor a model may declare, in MiB (default 256); refused before a session is created",
    )
    args = parser.parse_args(argv)
    try:
        serve(args.listen, args.token_file, args.max_mb, args.timeout_s, max_input_mb=args.max_input_mb)
    except EdgenasError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
