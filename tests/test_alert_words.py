"""Mailbox alerts in the reader's language (issue 18): stored in English words by the actions, translated
on the pages (the dashboard's recent alerts, the mailbox page) in the reader's language and time zone."""

from __future__ import annotations

from datetime import UTC, datetime

from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone, translation

from syncadmin.web.alert_words import alert_text
from tracking.actions import do_disable_mailbox, do_record_test_result, do_set_personal_options
from tracking.actions.schedule import do_record_cycle_failure
from tracking.choices import ErrorKind
from tracking.context import load_rules
from tracking.models import Alert, Mailbox

NOW = datetime(2026, 12, 3, 19, 54, tzinfo=UTC)


def raise_every_kind(mailbox: Mailbox, admin: User) -> list[str]:
    do_record_test_result(mailbox, ok=True, message="connected; inbox and sentitems can be read", now=NOW)
    do_disable_mailbox(mailbox, acting_user=admin)
    do_record_test_result(
        mailbox,
        ok=False,
        message="the mailbox's email address is not approved; an admin must approve it first",
        kind=ErrorKind.NOT_APPROVED,
        now=NOW,
    )
    do_record_test_result(mailbox, ok=True, message="connected; inbox can be read", now=NOW)
    rules = load_rules()
    for _ in range(rules.transient_retry_limit + 1):
        do_record_cycle_failure(
            mailbox.pk,
            rules,
            error="mail.example.com:443 answered 503",
            kind=ErrorKind.SERVER_ERROR,
            permanent=False,
            retry_after=None,
            now=NOW,
        )
    return list(Alert.objects.filter(mailbox=mailbox).order_by("id").values_list("message", flat=True))


def test_every_alert_syncadmin_writes_reads_in_german(alice: Mailbox, admin: User) -> None:
    stored = raise_every_kind(alice, admin)
    assert any(m.startswith("Scan failed (retry 1 of") for m in stored)
    assert any(m.startswith("Mailbox disabled after") for m in stored)
    with translation.override("de"):
        shown = [alert_text(m) for m in stored]
    for english, german in zip(stored, shown, strict=True):
        assert german != english, english
        assert "Test & Enable" not in german and "Mailbox disabled" not in german
    assert "Testen und aktivieren erfolgreich: verbunden; Posteingang und Gesendete Elemente lesbar" in shown
    # the server's own words stay as they were said
    assert any("mail.example.com:443 answered 503" in g for g in shown)


def test_in_english_alerts_read_as_stored_but_times_in_the_readers_zone(alice: Mailbox, admin: User) -> None:
    stored = raise_every_kind(alice, admin)
    with translation.override("en"), timezone.override("Europe/Berlin"):
        shown = [alert_text(m) for m in stored]
    for english, text in zip(stored, shown, strict=True):
        if " UTC." in english:
            assert (
                "Next try at 3 Dec 2026, 2" in text and "UTC" not in text
            )  # 19:54 UTC + the wait, in Berlin
        else:  # folders in words, the rest as stored
            assert text == english.replace("inbox", "Inbox").replace("sentitems", "Sent Items")


def test_an_unknown_alert_is_shown_as_stored() -> None:
    with translation.override("de"):
        assert alert_text("Something new happened") == "Something new happened"


def test_the_mailbox_page_and_dashboard_show_alerts_in_the_readers_language(
    client: Client, alice: Mailbox, admin: User
) -> None:
    raise_every_kind(alice, admin)
    do_set_personal_options(admin, language="de", time_zone="Europe/Berlin")
    client.force_login(admin)
    for url in (reverse("web-mailbox", args=[alice.pk]), reverse("web-dashboard")):
        body = client.get(url).content.decode()
        assert "Postfach deaktiviert nach 10 Wiederholungen" in body, url  # the newest alert
        assert "Mailbox disabled" not in body and "Scan failed" not in body, url
