"""The product with Django's psycopg connection pool on (DATABASE_POOL_MAX_SIZE, docs/deployment.md):
a worker's scans and the web application's pages, each a process of its own on this test's PostgreSQL
database, and the connections they hold."""

from __future__ import annotations

import http.client
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.urls import reverse

from tests import rq_helpers as h
from tracking.choices import ScanStatus
from tracking.jobs import dispatch_due_mailboxes
from tracking.models import Decision, ScanRun

POOL = {"DATABASE_POOL_MAX_SIZE": "2", "DATABASE_POOL_MIN_SIZE": "1", "DATABASE_CONN_MAX_AGE": "0"}

pytestmark = pytest.mark.workers


def database_connections() -> int:
    """Connections to the test database other than this process's own."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return int(cursor.fetchone()[0])


def get(port: int, path: str, session: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", path, headers={"Cookie": f"sessionid={session}"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_the_settings_refuse_a_pool_they_cannot_have() -> None:
    def settings_with(**env: str) -> subprocess.CompletedProcess[str]:
        code = "import django; django.setup()"
        return subprocess.run(
            [sys.executable, "-c", code],
            env=h.subprocess_env(**env),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    problems = {
        "not an integer": {"DATABASE_POOL_MAX_SIZE": "four"},
        "needs PostgreSQL": {"DATABASE_POOL_MAX_SIZE": "4", "DATABASE_URL": "sqlite:///x.sqlite3"},
        "exclude each other": {"DATABASE_POOL_MAX_SIZE": "4", "DATABASE_CONN_MAX_AGE": "60"},
        "is above": {"DATABASE_POOL_MAX_SIZE": "2", "DATABASE_POOL_MIN_SIZE": "3"},
        "below its minimum": {"DATABASE_POOL_TIMEOUT": "0"},  # read whether the pool is on or not
    }
    for words, env in problems.items():
        result = settings_with(**env)
        assert result.returncode != 0 and "ImproperlyConfigured" in result.stderr, env
        assert words in result.stderr, (words, result.stderr[-500:])


def test_a_worker_and_the_web_application_work_with_the_pool(sim, ews, tmp_path) -> None:
    if not h.is_postgres():
        pytest.skip("the connection pool is PostgreSQL's")
    boxes = []
    for n, user in enumerate(("allen-p", "arnold-j", "grigsby-m")):
        address = f"pooled{n}@contoso.example"
        h.fill(sim, address, user, count=30)
        boxes.append(h.add_enabled_mailbox(address, ews, track=2))
    assert dispatch_due_mailboxes() == 3
    worker = h.worker_process("--burst", log_dir=tmp_path, env=POOL)
    assert worker.wait(120) == 0, worker.output
    for box in boxes:
        runs = ScanRun.objects.filter(mailbox=box)
        assert {r.status for r in runs} == {ScanStatus.SUCCEEDED}, worker.output
        assert Decision.objects.filter(mailbox=box).count() == 30

    admin = User.objects.create_superuser("pool-admin", "pool-admin@contoso.example")
    client = Client()
    client.force_login(admin)
    session = client.cookies["sessionid"].value
    port = h.free_port()
    web = h.BackgroundProcess("runserver", f"127.0.0.1:{port}", "--noreload", log_dir=tmp_path, env=POOL)
    try:
        h.wait_for(lambda: listening(port), 60, "the web server")
        pages = [
            reverse("web-dashboard"),
            reverse("web-mailboxes"),
            reverse("web-mailbox", args=[boxes[0].pk]),
            reverse("web-decisions"),
            reverse("web-decisions-export"),
        ]
        seen: list[int] = []
        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(get, port, page, session) for page in pages * 8]
            while not all(f.done() for f in futures):
                seen.append(database_connections())
                time.sleep(0.02)
        assert [f.result() for f in futures] == [200] * len(futures), web.output
        # eight requests at once in a threaded server, two connections: each waited for one of the pool's
        assert 1 <= max(seen) <= 2, seen
    finally:
        web.stop()
