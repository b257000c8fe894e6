from __future__ import annotations

from django.apps import AppConfig


class WebConfig(AppConfig):
    name = "syncadmin.web"
    label = "web"

    def ready(self) -> None:
        from syncadmin.web import signins

        signins.connect()
