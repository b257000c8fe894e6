from __future__ import annotations

import sqlite3
from typing import Any

from django.apps import AppConfig
from django.db import connections
from django.db.backends.signals import connection_created
from django.db.models.signals import post_migrate

from tracking.search_index import repair_sqlite_index


def _lift_sqlite_parameter_limit(sender: Any, connection: Any, **kwargs: Any) -> None:
    """Let bulk inserts of a page go out as one statement on SQLite.

    Django assumes SQLite's old limit of 999 bound parameters and splits a page's bulk_create into
    several INSERTs; SQLite builds since 3.32 allow 32,766, which the connection itself reports.
    """
    if connection.vendor == "sqlite":
        connection.features.max_query_params = connection.connection.getlimit(
            sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER
        )


def _repair_search_index(sender: Any, using: str, **kwargs: Any) -> None:

    repair_sqlite_index(connections[using])


class TrackingConfig(AppConfig):
    name = "tracking"
    verbose_name = "Email tracking"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from tracking import checks  # noqa: F401  (registers the system checks)

        connection_created.connect(_lift_sqlite_parameter_limit, dispatch_uid="syncadmin-sqlite-params")
        # A migration that rebuilds the tracked email table on SQLite drops the search index's triggers.
        post_migrate.connect(_repair_search_index, sender=self, dispatch_uid="syncadmin-search-index")
