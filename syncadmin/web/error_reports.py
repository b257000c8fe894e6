"""Django's error reports, with sensitive variables and POST parameters hidden with DEBUG on as well.

Django's own filter hides what `sensitive_variables` / `sensitive_post_parameters` mark only when DEBUG
is off ("with DEBUG on your site is not safe anyway"); but a development or staging server with DEBUG on
still holds real mail-server secrets typed into the profile form, and its error page must not show them.
"""

from __future__ import annotations

from django.http import HttpRequest
from django.views.debug import SafeExceptionReporterFilter


class SafeAlsoInDebugFilter(SafeExceptionReporterFilter):
    def is_active(self, request: HttpRequest | None) -> bool:
        return True
