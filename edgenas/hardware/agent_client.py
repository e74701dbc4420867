"""The search's side of the on-device agent: signed requests over HTTP (standard library only)."""

from __future__ import annotations

import base64
import json
import os
import socket
import urllib.error
import urllib.request
from typing import Any

from edgenas.errors import MeasurementError, ProfileError
from edgenas.hardware.agent_protocol import read_token, request_headers
from edgenas.hardware.profiles import Profile


class AgentClient:
    def __init__(self, url: str, token: bytes, connect_timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.connect_timeout_s = connect_timeout_s
        self._info: dict[str, Any] | None = None

    @classmethod
    def for_profile(cls, profile: Profile) -> "AgentClient":
        if profile.token_file:
            token = read_token(profile.token_file)
        elif os.environ.get("EDGENAS_AGENT_TOKEN"):
            token = os.environ["EDGENAS_AGENT_TOKEN"].encode()
        else:
            raise ProfileError(
                f"profile '{profile.name}' measures on an agent but names no token_file, and "
                "EDGENAS_AGENT_TOKEN is not set; give the agent's shared secret one of these ways"
            )
        return cls(profile.agent_url, token)

    def _call(self, method: str, path: str, body: bytes, timeout_s: float) -> dict[str, Any]:
        req = urllib.request.Request(self.url + path, data=body if method == "POST" else None, method=method)
        for name, value in request_headers(self.token, method, path, body).items():
            req.add_header(name, value)
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            try:
                detail = json.loads(exc.read()).get("error", "")
            except ValueError:
                detail = exc.reason
            if exc.code == 401:
                raise MeasurementError(
                    f"the agent at {self.url} refused the request: {detail}; check the token file"
                ) from None
            raise MeasurementError(f"the agent at {self.url} answered {exc.code}: {detail}") from None
        except (socket.timeout, TimeoutError) as exc:
            raise MeasurementError(f"the agent at {self.url} did not answer within {timeout_s:g} s") from exc
        except urllib.error.URLError as exc:
            raise MeasurementError(
                f"cannot reach the agent at {self.url} ({exc.reason}); is `edgenas agent` running there, "
                "and is the address in the profile right?"
            ) from None

    def info(self) -> dict[str, Any]:
        if self._info is None:
            self._info = self._call("GET", "/info", b"", self.connect_timeout_s)
        return self._info

    def identity(self) -> str:
        return str(self.info()["identity"])

    def measure(self, model: bytes, settings: dict[str, Any], timeout_s: float | None = None) -> dict[str, Any]:
        body = json.dumps(
            {"settings": settings, "model_b64": base64.b64encode(model).decode(), "timeout_s": timeout_s}
        ).encode()
        answer = self._call("POST", "/measure", body, (timeout_s or 120) + 30)
        if not answer.get("ok"):
            raise MeasurementError(f"the agent at {self.url} could not time the model: {answer.get('error')}")
        return answer["stats"]
