from __future__ import annotations

from django.http import HttpRequest

from syncadmin.web.permissions import is_admin, is_auditor
from tracking.models import Mailbox


def navigation(request: HttpRequest) -> dict[str, object]:
    """Role flags the base template's navigation reads, and the links that depend on one's own mailbox."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"nav_admin": False, "nav_auditor": False, "nav_reader": False}
    admin, auditor = is_admin(user), is_auditor(user)
    own = list(Mailbox.objects.filter(user_id=user.pk).order_by("pk").values_list("pk", flat=True)[:2])
    return {
        "nav_admin": admin,
        "nav_auditor": auditor,
        "nav_reader": admin or auditor,
        # Explain works on an admin's every mailbox, anyone else's own (Mailbox.objects.explainable_by):
        # an auditor or user without a mailbox would only find a page that cannot be used.
        "nav_explain": admin or bool(own),
        # "My mailbox" opens the mailbox itself when there is exactly one
        "nav_my_mailbox": own[0] if len(own) == 1 else None,
        "nav_has_mailbox": bool(own),
    }
