"""The CLI's view of the management API: HTTP calls, errors made readable."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from flops.errors import AuthError, FlopsError, ServiceUnavailableError

DEFAULT_API_PORT = 8470


def flops_home() -> Path:
    return Path(os.environ.get("FLOPS_HOME") or Path.home() / ".flops")


def api_url() -> str:
    port = os.environ.get("FLOPS_API_PORT", str(DEFAULT_API_PORT))
    return os.environ.get("FLOPS_API_URL") or f"http://127.0.0.1:{port}"


def api_token() -> str:
    token = os.environ.get("FLOPS_TOKEN")
    if token:
        return token
    path = flops_home() / "token"
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise AuthError(
            f"No API token: {path} does not exist and FLOPS_TOKEN is not set.",
            hint="Run `flops up` (it creates the local token), or set FLOPS_TOKEN.",
        ) from None


class ApiError(FlopsError):
    """An error the API returned, with its HTTP status."""

    def __init__(
        self, status: int, message: str, hint: str | None, project_id: str | None = None
    ) -> None:
        self.status = status
        super().__init__(message, hint=hint)
        if project_id:
            self.detail["project_id"] = project_id


class ApiClient:
    def __init__(self, base_url: str | None = None, token: str | None = None) -> None:
        self.base_url = (base_url or api_url()).rstrip("/")
        self._token = token

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token or api_token()}"}

    def _unreachable(self, err: Exception) -> ServiceUnavailableError:
        return ServiceUnavailableError(
            f"The FLOps management API at {self.base_url} is not reachable ({err}).",
            hint="Start it with `flops up`, or point FLOPS_API_URL at it.",
        )

    @staticmethod
    def _raise_for(response: httpx.Response) -> None:
        if response.is_success:
            return
        try:
            error = response.json()["error"]
            message, hint = str(error["message"]), error.get("hint")
            project_id = error.get("project_id")
        except (ValueError, KeyError, TypeError):
            message, hint = f"HTTP {response.status_code}: {response.text[:500]}", None
            project_id = None
        raise ApiError(response.status_code, message, hint, project_id)

    def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> Any:
        try:
            response = httpx.request(
                method,
                f"{self.base_url}{path}",
                headers={**self._headers(), **(headers or {})},
                timeout=120,
                **kwargs,
            )
        except httpx.TransportError as err:
            raise self._unreachable(err) from err
        self._raise_for(response)
        return response.json()

    def submit(self, config: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.request("POST", "/api/projects", json=config)
        return result

    def project(self, project_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", f"/api/projects/{project_id}")
        return result

    def projects(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.request("GET", "/api/projects")
        return result

    def cancel(self, project_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "POST", f"/api/projects/{project_id}/cancel"
        )
        return result

    def stop_server(self, project_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "DELETE", f"/api/projects/{project_id}/server"
        )
        return result

    def enrol(self, project_id: str, learners: int) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "POST",
            f"/api/projects/{project_id}/enrolments",
            json={"learners": learners},
        )
        return result

    def learners(self, project_id: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.request(
            "GET", f"/api/projects/{project_id}/learners"
        )
        return result

    def revoke(self, project_id: str, learner: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "DELETE", f"/api/projects/{project_id}/learners/{learner}"
        )
        return result

    def push_data(self, path: Path, tag: str, partitions: int) -> dict[str, Any]:
        with path.open("rb") as handle:
            result: dict[str, Any] = self.request(
                "PUT",
                f"/api/data/{tag}",
                params={"partitions": partitions},
                content=handle,
                headers={"Content-Type": "application/octet-stream"},
            )
        return result

    def datasets(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.request("GET", "/api/data")
        return result

    def create_token(self, tenant: str, name: str, admin: bool) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "POST", "/api/tokens", json={"tenant": tenant, "name": name, "admin": admin}
        )
        return result

    def follow(
        self, project_id: str, after: int = 0
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Server-sent events of a project until it ends: (event type, payload)."""
        url = f"{self.base_url}/api/projects/{project_id}/events"
        params: dict[str, Any] = {"follow": "true", "after": after}
        try:
            with httpx.stream(
                "GET",
                url,
                params=params,
                headers=self._headers(),
                timeout=httpx.Timeout(60, read=None),
            ) as response:
                if not response.is_success:
                    response.read()
                    self._raise_for(response)
                kind, data = "message", ""
                for line in response.iter_lines():
                    if line.startswith("event:"):
                        kind = line[6:].strip()
                    elif line.startswith("data:"):
                        data += line[5:].strip()
                    elif not line and data:
                        yield kind, json.loads(data)
                        kind, data = "message", ""
        except httpx.TransportError as err:
            raise self._unreachable(err) from err
