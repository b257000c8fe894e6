"""Password sign-in, switched off by LOCAL_LOGIN=0 for everyone but superusers (break-glass)."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import AnonymousUser, User


class LocalPasswordBackend(ModelBackend):
    def user_can_authenticate(self, user: User | AnonymousUser | None) -> bool:
        if not settings.LOCAL_LOGIN and not getattr(user, "is_superuser", False):
            return False
        return super().user_can_authenticate(user)
