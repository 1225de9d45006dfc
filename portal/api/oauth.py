"""OAuth2 for API clients of a reseller (django-oauth-toolkit).

A reseller registers an Application (client credentials grant) and its scripts obtain tokens
from `/o/token/`. Such a token has no user of its own (RFC 6749 §4.4: the client acts on its
own behalf), but every tenant read starts from a user (`for_user`). The client acts as the
user who owns the Application: it sees exactly what that user sees, and loses access when
that user is deactivated or loses the membership.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.contrib.django_oauth_toolkit import DjangoOAuthToolkitScheme
from oauth2_provider.oauth2_validators import OAuth2Validator
from rest_framework.permissions import SAFE_METHODS


class ApplicationOwnerOAuth2Validator(OAuth2Validator):
    """Validator that lets a user-less token (client credentials) act as its Application's owner.

    Set as `OAUTH2_PROVIDER["OAUTH2_VALIDATOR_CLASS"]`. Tokens issued to a user (authorization
    code grant) keep their own user.
    """

    def validate_bearer_token(self, token: str, scopes: list[str], request: Any) -> bool:
        """Valid when the token is, and the user it acts as exists and is active.

        A token of an Application without an owner, or whose user was deactivated, is
        refused like an expired one (401), so revoking a person revokes their scripts.
        """
        if not super().validate_bearer_token(token, scopes, request):
            return False
        if request.user is None:
            request.user = getattr(getattr(request, "client", None), "user", None)
        if request.user is None or not request.user.is_active:
            request.user = None
            request.oauth2_error = {
                "error": "invalid_token",
                "error_description": "The token's user is missing or inactive.",
            }
            return False
        return True


class PortalOAuth2Scheme(DjangoOAuthToolkitScheme):
    """OpenAPI security for OAuth2 tokens: `read` for safe methods, `write` otherwise,
    as `portal.api.permissions.IsPortalMemberWithScope` enforces."""

    priority = 1

    def get_security_requirement(self, auto_schema: Any) -> dict[str, list[str]]:
        scope = "read" if auto_schema.method.upper() in SAFE_METHODS else "write"
        return {self.name: [scope]}
