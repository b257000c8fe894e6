"""Search across tracked emails (tracking/search.py): what it finds, in which order, for whom; on SQLite
(FTS5) and PostgreSQL (tsvector), whichever the suite runs on."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection
from django.utils import timezone

from tests.conftest import run_command, user_of
from tracking.models import CrmRecord, Mailbox, TrackedEmail
from tracking.search import BODY_CHARS, CANDIDATES, headlines, parse, search
from tracking.search_index import repair_sqlite_index

T0 = timezone.now() - timedelta(days=30)


def email(n: int, owner: User | None = None, **fields: object) -> TrackedEmail:
    values: dict[str, object] = {
        "message_id": f"<search-{n}@example.net>",
        "direction": "incoming",
        "subject": "Weekly update",
        "sender": "news@example.net",
        "sender_name": "News desk",
        "recipients": [["to", "team@contoso.com"]],
        "body_text": "Nothing new this week.",
        "timeline_at": T0 + timedelta(hours=n),
        "owner": owner,
    }
    values.update(fields)
    return TrackedEmail.objects.create(**values)


def found(user: User, text: str) -> list[str]:
    return [e.message_id for e in search(user, text)]


@pytest.fixture
def corpus(alice: Mailbox, bob: Mailbox) -> dict[str, TrackedEmail]:
    a, b = user_of(alice), user_of(bob)
    return {
        "subject": email(1, a, subject="Invoice for the turbine order"),
        "body": email(
            2, a, body_text="Please find the invoice attached. The turbine invoice is overdue, invoice 7."
        ),
        "sender": email(3, a, sender="carla@fabrikam.example", sender_name="Carla Diaz"),
        "recipient": email(4, a, recipients=[["to", "team@contoso.com"], ["cc", "dmitri@tailspin.example"]]),
        "bob": email(
            5, b, subject="Invoice for bob only", body_text="Strictly confidential turbine numbers."
        ),
        "german": email(6, a, subject="Rechnung für die Übergabe", body_text="Grüße aus Köln"),
    }


def test_finds_by_subject_body_sender_and_recipient_address(corpus, admin):
    assert found(admin, "turbine order") == [corpus["subject"].message_id]
    assert corpus["body"].message_id in found(admin, "overdue")
    assert found(admin, "carla@fabrikam.example") == [corpus["sender"].message_id]
    assert found(admin, "Carla") == [corpus["sender"].message_id]
    assert found(admin, "dmitri@tailspin.example") == [corpus["recipient"].message_id]
    assert found(admin, "Übergabe") == [corpus["german"].message_id]
    assert found(admin, "köln") == [corpus["german"].message_id]


def test_subject_matches_rank_before_body_matches(corpus, admin):
    # the body names "invoice" three times, the subject once: the subject still wins
    ranked = found(admin, "invoice")
    assert ranked.index(corpus["subject"].message_id) < ranked.index(corpus["body"].message_id)
    assert ranked[-1] == corpus["body"].message_id


def test_websearch_syntax_phrases_negation_and_or(corpus, admin):
    assert found(admin, '"turbine invoice"') == [corpus["body"].message_id]
    assert found(admin, "invoice -order -bob") == [corpus["body"].message_id]
    assert set(found(admin, "overdue or dmitri@tailspin.example")) == {
        corpus["body"].message_id,
        corpus["recipient"].message_id,
    }
    # nothing that must occur: no results rather than a scan of every row
    assert found(admin, "-invoice") == []
    assert found(admin, "   ") == []


def test_a_user_sees_only_their_own_emails_and_auditors_all(corpus, alice, bob, auditor):
    assert corpus["bob"].message_id not in found(user_of(alice), "invoice")
    assert found(user_of(bob), "invoice") == [corpus["bob"].message_id]
    assert found(user_of(bob), "turbine") == [corpus["bob"].message_id]
    assert set(found(auditor, "turbine")) == {
        corpus["subject"].message_id,
        corpus["body"].message_id,
        corpus["bob"].message_id,
    }


HOSTILE = [
    '"',
    '""',
    '"unterminated phrase',
    "*",
    "turbine*",
    "NEAR(turbine invoice)",
    "NEAR(",
    "subject:invoice",
    "{subject body}: invoice",
    ":",
    "^invoice",
    "invoice AND OR NOT",
    "AND",
    "NOT invoice",
    "(",
    ")",
    "'",
    "\\",
    "%",
    "_",
    "a & b | !c <-> d",
    "!!",
    "-",
    "--",
    "or or or",
    "x" * 5000,
    "invoice " * 200,
    "\x00",
    "é" * 3000,
    "💥 emoji",
    "; DROP TABLE tracking_trackedemail; --",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_query_text_never_raises(corpus, admin, text):
    emails = list(search(admin, text))
    headlines(emails, text)


def test_hostile_text_is_searched_as_words(corpus, admin):
    # FTS5 or tsquery syntax in the input is taken as the words it contains
    assert found(admin, "subject:turbine") == found(admin, "subject turbine")
    assert found(admin, "turbine*") == found(admin, "turbine")
    assert found(admin, "NEAR(turbine order)") == []  # "near" is a word the subject does not have


def test_the_headline_marks_the_words_and_escapes_the_rest(admin, alice):
    one = email(
        1, user_of(alice), body_text="Dear team, <script>alert(1)</script> the turbine & rotor are late."
    )
    marked = headlines([one], "turbine")[one.pk]
    assert "<mark>turbine</mark>" in marked
    assert "<script" not in marked  # escaped (SQLite) or dropped as markup (PostgreSQL's headline parser)
    assert "&amp;" in marked


def test_a_huge_body_is_tracked_and_its_start_searchable(admin, alice):
    rng = random.Random(7)
    words = [f"w{rng.getrandbits(40):x}" for _ in range(300_000)]  # ~3 MB of distinct words
    big = email(1, user_of(alice), body_text="needle " + " ".join(words) + " afterthebound")
    assert len(big.body_text) > 2 * BODY_CHARS
    assert found(admin, "needle") == [big.message_id]
    # PostgreSQL indexes the first BODY_CHARS characters (a tsvector has a 1 MB limit); FTS5 all of it
    assert found(admin, "afterthebound") == ([] if connection.vendor == "postgresql" else [big.message_id])


def test_edits_and_deletes_keep_the_index_in_step(admin, alice):
    one = email(1, user_of(alice), subject="Old title")
    one.subject = "Fresh title"
    one.save()
    assert found(admin, "fresh") == [one.message_id]
    assert found(admin, "old") == []
    one.delete()
    assert found(admin, "fresh") == []


def test_the_newest_candidates_are_ranked(admin, alice):
    owner = user_of(alice)
    TrackedEmail.objects.bulk_create(
        TrackedEmail(
            message_id=f"<many-{i}@example.net>",
            direction="incoming",
            body_text="common words here",
            timeline_at=T0 + timedelta(minutes=i),
            owner=owner,
        )
        for i in range(CANDIDATES + 5)
    )
    results = list(search(admin, "common"))
    assert len(results) == CANDIDATES
    assert "<many-0@example.net>" not in {e.message_id for e in results}  # the oldest is left out


def ingest(tmp_path: Path, subject: str, body: str) -> None:
    msg = EmailMessage()
    msg["From"] = "carla@fabrikam.example"
    msg["To"] = "alice@contoso.com"
    msg["Subject"] = subject
    msg["Date"] = "Mon, 04 Mar 2024 10:00:00 +0000"
    msg["Message-ID"] = "<search-ingest-1@fabrikam.example>"
    msg.set_content(body)
    path = tmp_path / "one.eml"
    path.write_bytes(bytes(msg))
    # tracked: set regarding a CRM record, as a person's Track does
    run_command(
        "ingest",
        "--mailbox",
        "alice@contoso.com",
        "--folder",
        "inbox",
        "--regarding",
        "contact:Carla",
        str(path),
    )


def test_an_email_tracked_by_the_pipeline_is_found(alice, tmp_path):
    CrmRecord.objects.create(kind="contact", name="Carla", email1="carla@fabrikam.example")
    ingest(tmp_path, "Quarterly figures", "The zeppelin budget is attached.")
    assert found(user_of(alice), "zeppelin") == ["<search-ingest-1@fabrikam.example>"]
    assert found(user_of(alice), "carla@fabrikam.example") == ["<search-ingest-1@fabrikam.example>"]


def test_parse_keeps_words_phrases_and_drops_what_has_no_letter():
    groups = parse('alpha "beta gamma" -delta or *** epsilon')
    assert [(g.must, g.must_not) for g in groups] == [(["alpha", "beta gamma"], ["delta"]), (["epsilon"], [])]


@pytest.mark.skipif(connection.vendor != "sqlite", reason="the FTS5 triggers are SQLite's")
def test_lost_sqlite_triggers_are_put_back_after_migrate(admin, alice):
    one = email(1, user_of(alice), subject="Lighthouse")
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER tracking_trackedemail_search_insert")
    two = email(2, user_of(alice), subject="Lighthouse keeper")
    assert found(admin, "lighthouse") == [one.message_id]
    assert repair_sqlite_index(connection)
    assert set(found(admin, "lighthouse")) == {one.message_id, two.message_id}
    assert not repair_sqlite_index(connection)


REBUILD_THEN_MIGRATE = """
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection, models
from tracking.models import TrackedEmail
from tracking.search import search

admin = User.objects.create_superuser("root", "root@example.net", "x")
TrackedEmail.objects.create(message_id="<1@x>", direction="incoming", subject="Lighthouse one")
field = models.CharField(max_length=10, default="x")
field.set_attributes_from_name("extra")
with connection.schema_editor() as editor:
    editor.add_field(TrackedEmail, field)  # NOT NULL with a default: SQLite gets a rebuilt table
call_command("migrate", verbosity=0)  # as after any migration: the index is repaired
with connection.cursor() as cursor:
    cursor.execute("UPDATE tracking_trackedemail SET subject = 'Lighthouse two' WHERE message_id = '<1@x>'")
print(sorted(e.subject for e in search(admin, "lighthouse")))
"""


@pytest.mark.skipif(connection.vendor != "sqlite", reason="Django rebuilds tables on SQLite only")
def test_a_migration_that_rebuilds_the_table_on_sqlite_keeps_search_working(tmp_path):
    # A database of its own: the rebuild is a schema change the test database must not see.
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'rebuilt.sqlite3'}"}
    manage = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=env, check=True, cwd=settings.BASE_DIR)
    done = subprocess.run(
        [*manage, "shell", "-c", REBUILD_THEN_MIGRATE],
        env=env,
        check=True,
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
    )
    assert done.stdout.strip().splitlines()[-1] == "['Lighthouse two']"
