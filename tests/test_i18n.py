"""German UI: the catalogue is complete, and a German user (or a German browser) gets German pages."""

from __future__ import annotations

import ast
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tracking.actions import do_set_personal_options
from tracking.context import mailbox_for_scan
from tracking.messages import RawItem
from tracking.models import Decision, Mailbox
from tracking.pipeline import process_page

PO_FILE = Path(settings.BASE_DIR) / "locale" / "de" / "LC_MESSAGES" / "django.po"
MO_FILE = PO_FILE.with_suffix(".mo")


def parse_po(path: Path) -> list[dict[str, Any]]:
    """A small .po reader: one dict per entry with flags, msgctxt, msgid, msgid_plural and msgstr forms."""
    entries: list[dict[str, Any]] = []
    entry: dict[str, Any] = {}
    field: tuple[str, int] | None = None

    def finish() -> None:
        nonlocal entry, field
        if "msgid" in entry:
            entries.append(entry)
        entry, field = {}, None

    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            finish()
            continue
        if line.startswith("#,"):
            entry.setdefault("flags", set()).update(f.strip() for f in line[2:].split(","))
            continue
        if line.startswith("#"):
            continue
        match = re.match(r'^(msgctxt|msgid_plural|msgid|msgstr)(?:\[(\d+)\])?\s+(".*")$', line)
        if match:
            keyword, index, text = match.group(1), int(match.group(2) or 0), ast.literal_eval(match.group(3))
            if keyword == "msgstr":
                entry.setdefault("msgstr", {})[index] = text
            else:
                entry[keyword] = text
            field = (keyword, index)
            continue
        assert line.startswith('"') and field is not None, f"unexpected line in {path.name}: {line!r}"
        keyword, index = field
        text = ast.literal_eval(line)
        if keyword == "msgstr":
            entry["msgstr"][index] += text
        else:
            entry[keyword] = entry[keyword] + text
    finish()
    return entries


def test_german_catalogue_is_complete() -> None:
    entries = parse_po(PO_FILE)
    header, messages = entries[0], entries[1:]
    assert header["msgid"] == ""
    assert "Plural-Forms: nplurals=2; plural=(n != 1);" in header["msgstr"][0]
    assert len(messages) > 500
    problems = []
    for entry in messages:
        if "fuzzy" in entry.get("flags", set()):
            problems.append(f"fuzzy: {entry['msgid']!r}")
        forms = entry["msgstr"]
        expected = 2 if "msgid_plural" in entry else 1
        if len(forms) != expected or not all(str(text).strip() for text in forms.values()):
            problems.append(f"untranslated: {entry['msgid']!r}")
    assert problems == []
    assert MO_FILE.exists() and MO_FILE.stat().st_mtime >= PO_FILE.stat().st_mtime - 1


def test_track_options_use_the_dynamics_wording() -> None:
    translated = {e["msgid"]: e["msgstr"][0] for e in parse_po(PO_FILE)[1:]}
    assert translated["All email messages"] == "Alle E-Mail-Nachrichten"
    assert translated["Email messages in response to SyncAdmin email"] == (
        "E-Mail-Nachrichten in Antwort auf SyncAdmin-E-Mail"
    )
    assert translated["Email messages from SyncAdmin Leads, Contacts, and Accounts"] == (
        "E-Mail-Nachrichten von SyncAdmin-Leads, -Kontakten und -Firmen"
    )
    assert translated["Email messages from SyncAdmin records that are email enabled"] == (
        "E-Mail-Nachrichten von SyncAdmin-Datensätzen, für die E-Mail aktiviert ist"
    )
    assert translated["No email messages"] == "Keine E-Mail-Nachrichten"
    assert translated["Set Personal Options"] == "Persönliche Optionen festlegen"


def german(user: User) -> Client:
    do_set_personal_options(user, language="de")
    client = Client()
    client.force_login(user)
    return client


def page(client: Client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, url
    return response.content.decode()


def assert_german(html: str, german_words: list[str], english_words: list[str]) -> None:
    assert '<html lang="de">' in html
    for word in german_words:
        assert word in html, word
    for word in english_words:
        assert word not in html, word


@pytest.fixture
def decision(alice: Mailbox) -> Decision:
    message = (
        b"From: Ann Example <ann@example.net>\r\nTo: alice@contoso.com\r\nSubject: Price list\r\n"
        b"Message-ID: <i18n-1@example.net>\r\nDate: Mon, 2 Mar 2026 09:00:00 +0000\r\n\r\nbody\r\n"
    )
    item = RawItem("item-i18n-1", message, received_at=datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    [processed] = process_page(mailbox_for_scan(alice.pk), "inbox", [item], scan_run=None, now=timezone.now())
    return processed.decision


def test_german_admin_sees_a_german_dashboard(admin: User, alice: Mailbox) -> None:
    html = page(german(admin), reverse("web-dashboard"))
    assert_german(
        html,
        ["Postfächer", "Entscheidungsprotokoll", "Persönliche Optionen", "Abmelden", "Auftragswarteschlange"],
        [">Mailboxes<", ">Decision log<", ">Sign out<", ">Job queue<"],
    )


def test_german_user_sees_german_personal_options(alice_user: User) -> None:
    client = german(alice_user)
    general = page(client, reverse("web-personal-options") + "?tab=general")
    assert_german(
        general, ["Persönliche Optionen festlegen", "Allgemein", "Zeitzone", "Sprache"], ["Time zone"]
    )
    email = page(client, reverse("web-personal-options") + "?tab=email")
    assert_german(
        email,
        [
            "Wählen Sie die E-Mail-Nachrichten aus, die in SyncAdmin nachverfolgt werden sollen",
            "E-Mail-Nachrichten in Antwort auf SyncAdmin-E-Mail",
            "Keine E-Mail-Nachrichten",
            "Speichern",
        ],
        ["Select the email messages to track", "Email messages in response to SyncAdmin email", ">Save<"],
    )


def test_german_user_sees_a_german_decision_log_and_decision(alice_user: User, decision: Decision) -> None:
    client = german(alice_user)
    log = page(client, reverse("web-decisions"))
    assert_german(
        log,
        ["Entscheidungsprotokoll", "Absender", "Betreff", "Ergebnis", "Posteingang", "Nicht nachverfolgt"],
        [">Sender<", ">Subject<", ">Outcome<", ">Inbox<", "Not tracked"],
    )
    detail = page(client, reverse("web-decision", args=[decision.pk]))
    assert_german(
        detail,
        [f"Entscheidung #{decision.pk}", "Durchgeführte Prüfungen", "Nachverfolgen / Bezug festlegen"],
        ["Checks made, in order", "Track / Set regarding", "Not tracked"],
    )


def test_sign_in_page_in_german_from_the_browser_language(db: None) -> None:
    html = page(Client(headers={"accept-language": "de-DE,de;q=0.9,en;q=0.5"}), reverse("login"))
    assert_german(
        html, ["Bei SyncAdmin anmelden", "Benutzername", "Kennwort", "Anmelden"], ["Sign in to SyncAdmin"]
    )


def test_sign_in_page_in_german_after_choosing_it(db: None) -> None:
    client = Client()
    assert "Sign in to SyncAdmin" in page(client, reverse("login"))
    response = client.post(reverse("set_language"), {"language": "de", "next": reverse("login")})
    assert response.status_code == 302
    html = page(client, reverse("login"))
    assert_german(html, ["Bei SyncAdmin anmelden", "Sprache"], ["Sign in to SyncAdmin", ">Password<"])
