"""The decision-log databases B5 and B8 share: N decisions (and a 10,000-decision one to compare with).

Each is a fresh database filled by `manage.py generate_load --mailboxes 50 --records 1000 --decisions N
--seed 1`, then ANALYZEd (as an operator would after a bulk load), with a superuser to sign in as.
`bench/run.py` makes them once for both benchmarks; a script run alone makes what it needs.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from bench import common

ADMIN = "bench-admin"
MAILBOXES = 50
RECORDS = 1000


def name_for(decisions: int) -> str:
    return f"{common.DB_PREFIX}_decisions_{decisions}"


def _marker(vendor: str, decisions: int) -> Path:
    return common.BUILD / "db" / f"{name_for(decisions)}-{vendor}.json"


def prepare(vendor: str, decisions: int, *, reuse: bool) -> tuple[str, dict[str, float]]:
    """(DATABASE_URL, {"seconds": generate_load's wall time, "rate": decisions/s}) of a filled database."""
    marker = _marker(vendor, decisions)
    name = name_for(decisions)
    if reuse and marker.exists():
        return common.db_url(vendor, name), json.loads(marker.read_text())
    url = common.create_db(vendor, name)
    common.log(f"generate_load: {decisions:,} decisions ({vendor})")
    started = time.perf_counter()
    out = common.manage(
        "generate_load",
        "--mailboxes",
        str(MAILBOXES),
        "--records",
        str(RECORDS),
        "--decisions",
        str(decisions),
        "--seed",
        "1",
        "--batch",
        "10000",
        database_url=url,
        timeout=3600,
    )
    seconds = time.perf_counter() - started
    found = re.search(r"added \d+ decisions in ([\d.]+) s", out)
    insert_seconds = float(found.group(1)) if found else seconds
    if vendor == "postgresql":
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("analyze")
    info = {"seconds": seconds, "insert_seconds": insert_seconds, "rate": decisions / insert_seconds}
    marker.write_text(json.dumps(info))
    common.log(f"generate_load: {decisions:,} decisions in {seconds:.0f} s ({info['rate']:,.0f}/s inserting)")
    return url, info


def drop(vendor: str, decisions: int) -> None:
    common.drop_db(vendor, name_for(decisions))
    _marker(vendor, decisions).unlink(missing_ok=True)


def signed_in_client() -> object:
    """A Django test Client signed in as a superuser (created on first use)."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    User = get_user_model()
    user = User.objects.filter(username=ADMIN).first()
    if user is None:
        user = User.objects.create_superuser(ADMIN, f"{ADMIN}@bench.example", "unused-Pa55")
    client = Client()
    client.force_login(user)
    return client
