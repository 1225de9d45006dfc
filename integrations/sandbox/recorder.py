"""A catch-all receiver: answers every request and records it.

Tests use it as the destination of what the sandboxes post (RingRx callbacks, inbound SMS
webhooks, Zoho click-to-call) when no portal is running; failure injection works on it as
on any sandbox.
"""

from __future__ import annotations

from typing import ClassVar

from integrations.sandbox.base import SandboxRequest, SandboxResponse, SandboxServer, json_response


class RecorderSandbox(SandboxServer):
    """Answers ``status`` (200 by default) with ``{"ok": true}`` to any method and path."""

    name: ClassVar[str] = "recorder"
    description: ClassVar[str] = "catch-all receiver that records every request"
    tunables: ClassVar[tuple[str, ...]] = ("status",)

    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 0, verbose: bool = False, status: int = 200
    ) -> None:
        """``status`` is the answer to every request."""
        self.status = status
        super().__init__(host=host, port=port, verbose=verbose)

    def _dispatch(self, request: SandboxRequest) -> SandboxResponse:
        if request.path == "/_sandbox" or request.path.startswith("/_sandbox/"):
            return super()._dispatch(request)
        return json_response({"ok": True}, self.status)
