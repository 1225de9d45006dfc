"""The engine's two error types.

* `SpecError` — a mistake in a spec or in how it is configured (an unknown placeholder, a
  missing URL value). It lists every problem with its JSON pointer. It is never swallowed:
  retrying cannot fix it.
* `IntegrationError` — the one error for a failed call to a third party. It carries the HTTP
  status (if any), the spec method name, the URL with secrets redacted, whether retrying could
  help (`permanent`), how long the third party asked us to wait (`retry_after`), and a message
  safe to show a reseller ("429 from CRM: rate limited, retry in 30 s").
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One problem in a spec: where it is (an RFC 6901 JSON pointer) and what is wrong."""

    pointer: str
    message: str

    def __str__(self) -> str:
        return f"{self.pointer or '/'}: {self.message}"


class SpecError(Exception):
    """A spec (or its configuration) is wrong. `problems` lists every problem found."""

    def __init__(self, problems: list[Problem] | Problem | str) -> None:
        if isinstance(problems, str):
            problems = [Problem("", problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        super().__init__("; ".join(str(p) for p in self.problems))


class IntegrationError(Exception):
    """A call to a third party failed.

    `permanent` is False when the same call may succeed later (connection errors, timeouts,
    5xx, 429); `retry_after` is the delay in seconds the third party asked for, if any.
    `message` never contains a secret.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        method: str | None = None,
        url: str | None = None,
        permanent: bool = True,
        retry_after: float | None = None,
        auth_failed: bool = False,
        response_body: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.method = method
        self.url = url
        self.permanent = permanent
        self.retry_after = retry_after
        # True when credentials were rejected even after a refresh: the installation
        # needs to be reconnected by a person.
        self.auth_failed = auth_failed
        self.response_body = response_body

    def __str__(self) -> str:
        return self.message
