from __future__ import annotations

from django.http import HttpRequest

from syncadmin.web.permissions import is_admin, is_auditor


def navigation(request: HttpRequest) -> dict[str, object]:
    """Role flags the base template's navigation reads."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"nav_admin": False, "nav_auditor": False, "nav_reader": False}
    admin, auditor = is_admin(user), is_auditor(user)
    return {"nav_admin": admin, "nav_auditor": auditor, "nav_reader": admin or auditor}
