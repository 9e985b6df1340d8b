"""The one error hierarchy of FLOps.

Every error FLOps raises on purpose is a `FlopsError`: its message says what was
wrong and what to do about it. The CLI and the API translate these into exit codes
and HTTP statuses at their edges (`FlopsError.http_status`); nothing in between
catches and rewords them.
"""

from __future__ import annotations


class FlopsError(Exception):
    """Base class: a failure the user can act on."""

    http_status = 500

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        # Machine-readable context for API clients (e.g. the project it concerns).
        self.detail: dict[str, str] = {}
        super().__init__(self.__str__())

    def __str__(self) -> str:
        return f"{self.message}\n{self.hint}" if self.hint else self.message


class ConfigError(FlopsError):
    """The project configuration is invalid (flags, flops.toml, API body)."""

    http_status = 422


class ContractError(FlopsError):
    """The ML repository breaks the FLOps repo contract; one line per problem."""

    http_status = 422

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"- {problem}" for problem in problems)
        super().__init__(
            f"The repository does not follow the FLOps ML-repo contract:\n{lines}",
            hint="`flops init DIR` writes a repo that follows it.",
        )


class SourceError(FlopsError):
    """The repository cannot be fetched: bad URL, not a git repo, unknown ref."""

    http_status = 422


class NotFoundError(FlopsError):
    """A project, data tag or other resource does not exist (for this tenant)."""

    http_status = 404


class AuthError(FlopsError):
    """Missing or invalid credentials."""

    http_status = 401


class ForbiddenError(FlopsError):
    """Valid credentials without the right to do this."""

    http_status = 403


class ConflictError(FlopsError):
    """The request conflicts with the current state (e.g. cancel a finished job)."""

    http_status = 409


class LimitError(FlopsError):
    """A request goes over one of the service's limits (learners, jobs, sizes);
    the message names the limit and the setting that raises it."""

    http_status = 422


class PayloadTooLargeError(LimitError):
    """A request body or upload is larger than the service accepts."""

    http_status = 413


class ServiceUnavailableError(FlopsError):
    """A service FLOps depends on (MLflow, the management API) does not answer."""

    http_status = 503


class CommandError(FlopsError):
    """An external command failed; carries the command and the tail of its output."""

    def __init__(
        self, args: list[str], returncode: int | None, output: str, *, hint: str = ""
    ) -> None:
        self.args_list = args
        self.returncode = returncode
        self.output = output
        tail = "\n".join(output.rstrip().splitlines()[-25:])
        status = "timed out" if returncode is None else f"exited with {returncode}"
        super().__init__(
            f"Command {status}: {' '.join(args)}\n{tail}".rstrip(),
            hint=hint or None,
        )


class EnvironmentBuildError(FlopsError):
    """The project's runtime environment could not be built from its dependencies."""

    http_status = 422


class TrainingError(FlopsError):
    """Federated training failed: learners failed, too few replies, a crash."""


class JobCancelledError(FlopsError):
    """The job was cancelled by the user."""

    http_status = 409


class ServiceStoppedError(FlopsError):
    """The management service stopped under a running job: the job failed (it was
    not the user's choice), and may be submitted again."""

    http_status = 503
