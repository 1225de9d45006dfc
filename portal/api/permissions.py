from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rest_framework.permissions import SAFE_METHODS, BasePermission

if TYPE_CHECKING:
    from rest_framework.request import Request


class IsPortalMemberWithScope(BasePermission):
    """An authenticated portal user; an OAuth2 token needs `read` to read and `write` to write.

    Which rows the user reaches is decided by the tenant selectors, not here.
    """

    message = "Authentication required."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated and user.is_active):
            return False
        token = request.auth
        if token is not None and hasattr(token, "is_valid"):
            needed = ["read"] if request.method in SAFE_METHODS else ["write"]
            if not token.is_valid(needed):
                self.message = f"This token lacks the '{needed[0]}' scope."
                return False
        return True
