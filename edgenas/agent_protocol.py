"""What the on-device agent and its clients share: request signing and the token file.

Standard library only (the board runs the agent without torch). Every request carries
X-Edgenas-Timestamp (unix seconds) and X-Edgenas-Signature = hex(HMAC-SHA256(secret, timestamp +
"\\n" + method + "\\n" + path + "\\n" + body)); requests more than MAX_SKEW_S away from the
agent's clock are refused.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from edgenas.errors import ProfileError

MAX_SKEW_S = 300


def sign(secret: bytes, timestamp: str, method: str, path: str, body: bytes) -> str:
    msg = f"{timestamp}\n{method}\n{path}\n".encode() + body
    return hmac.new(secret, msg, hashlib.sha256).hexdigest()


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
