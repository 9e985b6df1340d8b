"""A client of Oakestra's root orchestrator API, as its source implements it.

The routes and their quirks, from `root_orchestrator/system-manager-python`
(oakestra/oakestra v0.4.410, alpha-v0.4.411):

- `POST /api/auth/login` answers `{"token", "refresh_token"}`; the token is a
  Bearer token that lives 10 minutes, so the client logs in again when a call
  is refused with 401 (or when the token is older than `TOKEN_TTL_S`).
- Collection routes end in "/" (`/api/application/`, `/api/service/`); without
  it the server answers a redirect.
- Several answers are JSON encoded twice (a JSON string holding JSON:
  oakestra/oakestra#461): decoded until they are not a string.
- `POST /api/application/` answers every application of the user: the new one
  is found by its name and namespace. `POST /api/service/` answers
  `{"job_id", "failed_services"}` with status 200 even when the service failed.
- Instance statuses are Oakestra's own (`oakestra_utils.types.statuses`).

Every failure is a FlopsError naming the root orchestrator's URL, the call and
Oakestra's reason; an unreachable root is a ServiceUnavailableError.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from flops.errors import FlopsError, ServiceUnavailableError

TOKEN_TTL_S = 300.0  # Oakestra's tokens live 10 minutes: renew well before


class OakestraError(FlopsError):
    """Oakestra's root orchestrator refused a call."""


def decode(body: str) -> Any:
    """A response body, decoded as often as Oakestra encoded it."""
    value: Any = json.loads(body) if body else None
    while isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            break
    return value


class OakestraAPI:
    def __init__(
        self,
        url: str,
        username: str,
        password: str,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._username = username
        self._password = password
        self._http = httpx.Client(
            base_url=self.url, timeout=timeout, transport=transport
        )
        self._token: str | None = None
        self._token_at = 0.0

    def close(self) -> None:
        self._http.close()

    def _send(
        self, method: str, path: str, body: Any = None, token: str | None = None
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            return self._http.request(method, path, json=body, headers=headers)
        except httpx.HTTPError as err:
            raise ServiceUnavailableError(
                f"Oakestra's root orchestrator at {self.url} is unreachable "
                f"({method} {path}: {type(err).__name__}: {err}).",
                hint="Check FLOPS_OAKESTRA_URL and that the root orchestrator "
                "runs (its API listens on port 10000).",
            ) from err

    def _refused(
        self, method: str, path: str, response: httpx.Response
    ) -> OakestraError:
        try:
            payload = decode(response.text)
        except json.JSONDecodeError:
            payload = response.text[:500]
        reason = (
            payload.get("message") or payload.get("status") or payload
            if isinstance(payload, dict)
            else payload
        )
        return OakestraError(
            f"Oakestra's root orchestrator at {self.url} refused {method} {path} "
            f"(HTTP {response.status_code}): {reason}"
        )

    def login(self) -> None:
        path = "/api/auth/login"
        response = self._send(
            "POST", path, {"username": self._username, "password": self._password}
        )
        if response.status_code != 200:
            error = self._refused("POST", path, response)
            error.hint = "Check FLOPS_OAKESTRA_USERNAME and FLOPS_OAKESTRA_PASSWORD."
            raise error
        self._token = str(decode(response.text)["token"])
        self._token_at = time.monotonic()

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """One authenticated call; its decoded answer."""
        if self._token is None or time.monotonic() - self._token_at > TOKEN_TTL_S:
            self.login()
        response = self._send(method, path, body, self._token)
        if response.status_code == 401:  # expired: once more, freshly logged in
            self.login()
            response = self._send(method, path, body, self._token)
        if response.status_code >= 300:
            raise self._refused(method, path, response)
        return decode(response.text)

    # -- applications and services ------------------------------------------------

    def create_application(self, sla: dict[str, Any]) -> str:
        """The new application's id (Oakestra answers with all of the user's)."""
        wanted = sla["applications"][0]
        answer = self.call("POST", "/api/application/", sla)
        for app in answer or []:
            if (
                app.get("application_name") == wanted["application_name"]
                and app.get("application_namespace") == wanted["application_namespace"]
            ):
                return str(app["applicationID"])
        raise OakestraError(
            f"Oakestra's root orchestrator at {self.url} did not list the "
            f"application {wanted['application_name']} it was asked to create."
        )

    def add_service(self, sla: dict[str, Any]) -> str:
        """Add the SLA's one microservice to its application; the service's id."""
        (service,) = sla["applications"][0]["microservices"]
        answer = self.call("POST", "/api/service/", sla)
        failed = answer.get("failed_services") or []
        if failed or not answer.get("job_id"):
            why = "; ".join(str(f.get("message", f)) for f in failed) or "no id given"
            raise OakestraError(
                f"Oakestra's root orchestrator at {self.url} did not create service "
                f"{service['microservice_name']}: {why}"
            )
        return str(answer["job_id"])

    def deploy(self, service_id: str) -> None:
        self.call("POST", f"/api/service/{service_id}/instance")

    def service(self, service_id: str) -> dict[str, Any]:
        found = self.call("GET", f"/api/service/{service_id}")
        return dict(found or {})

    def undeploy(self, service_id: str, instance: int) -> None:
        self.call("DELETE", f"/api/service/{service_id}/instance/{instance}")

    def delete_service(self, service_id: str) -> None:
        self.call("DELETE", f"/api/service/{service_id}")

    def delete_application(self, application_id: str) -> None:
        self.call("DELETE", f"/api/application/{application_id}")

    def application_services(self, application_id: str) -> list[dict[str, Any]]:
        """The application's services (`GET /api/application/<id>` answers
        null: Oakestra's bug; this route lists them)."""
        return list(self.call("GET", f"/api/services/{application_id}") or [])

    def applications(self) -> list[dict[str, Any]]:
        """Every application (the Admin role's view), to find a job's by name."""
        return list(self.call("GET", "/api/applications/") or [])
