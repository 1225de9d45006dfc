from typing import Any

from django.http import HttpRequest

from tenants.selectors import user_is_reseller_admin


def membership(request: HttpRequest) -> dict[str, Any]:
    """Expose `is_reseller_admin` to templates (menus show what the user may do)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"is_reseller_admin": False}
    return {"is_reseller_admin": user_is_reseller_admin(user=user)}
