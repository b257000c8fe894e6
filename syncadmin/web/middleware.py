from __future__ import annotations

import zoneinfo
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils import timezone, translation

from tracking.models import PersonalOptions


class PersonalPreferencesMiddleware:
    """Speak the signed-in user's language and show times in their time zone (Personal Options, General)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.user.is_authenticated:
            options = (
                PersonalOptions.objects.filter(user_id=request.user.pk).only("language", "time_zone").first()
            )
            if options is not None:
                translation.activate(options.language)
                request.LANGUAGE_CODE = options.language
                try:
                    timezone.activate(zoneinfo.ZoneInfo(options.time_zone))
                except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                    timezone.deactivate()
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()
