"""What the on-device agent and its clients share: request signing and the token file.

Standard library only (the board runs the agent without torch). Every request carries
X-Edgenas-Timestamp (unix seconds), X-Edgenas-Nonce (a fresh random id) and X-Edgenas-Signature =
hex(HMAC-SHA256(secret, timestamp + "\\n" + nonce + "\\n" + method + "\\n" + path + "\\n" +
body)); requests more than MAX_SKEW_S away from the agent's clock are refused, and so is a nonce
the agent has already seen within that window (a captured request cannot be replayed).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time

from edgenas.errors import ProfileError

MAX_SKEW_S = 300


def sign(secret: bytes, timestamp: str, method: str, path: str, body: bytes, nonce: str = "") -> str:
    """HMAC-SHA256 over the timestamp, the request's one-time nonce, method, path and body."""
    msg = f"{timestamp}\n{nonce}\n{method}\n{path}\n".encode() + body
    return hmac.new(secret, msg, hashlib.sha256).hexdigest()


def new_nonce() -> str:
    """A fresh one-time request id (the agent refuses a nonce it has seen within MAX_SKEW_S)."""
    return secrets.token_hex(16)


def request_headers(secret: bytes, method: str, path: str, body: bytes) -> dict[str, str]:
    """The headers that authenticate one request."""
    ts, nonce = str(int(time.time())), new_nonce()
    return {
        "X-Edgenas-Timestamp": ts,
        "X-Edgenas-Nonce": nonce,
        "X-Edgenas-Signature": sign(secret, ts, method, path, body, nonce),
    }


def read_token(path: str) -> bytes:
    path = os.path.expanduser(path)
    try:
        with open(path, "rb") as fh:
            token = fh.read().strip()
    except OSError as exc:
        raise ProfileError(f"cannot read the agent token file {path}: {exc.strerror or exc}") from exc
    if len(token) < 16:
        raise ProfileError(
            f"the agent token in {path} is shorter than 16 bytes; use a long random secret "
            '(python -c "import secrets; print(secrets.token_hex(32))")'
        )
    return token
