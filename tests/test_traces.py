"""Traces are stored in English and translated when shown (tracking-rules §8), old German rows included:
the data migration 0011_english_traces puts the German words stored before issue 14 back into English.
"""

from __future__ import annotations

import importlib

from django.apps import apps as django_apps
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone, translation

from tests.conftest import make_decisions
from tracking.actions import do_set_personal_options
from tracking.models import Decision, Mailbox

migration = importlib.import_module("tracking.migrations.0011_english_traces")

ENGLISH = [
    {
        "check": "sender",
        "result": "resolved",
        "detail": "ann@example.net → Contact 'Ann' <ann@example.net> (#7) (only match)",
    },
    {
        "check": "recipients",
        "result": "2 of 2 resolved",
        "detail": 'bob@contoso.com → User "Bob O\'Neil" <bob@contoso.com> (#2); '
        "support@contoso.com → Queue 'Support' <support@contoso.com> (#3)",
    },
    {
        "check": "candidate: user alice",
        "result": "declines",
        "detail": "mailbox owner; option 4 'No email messages': accepts no message",
    },
    {
        "check": "candidate: queue Support",
        "result": "accepts",
        "detail": "recipient with a mailbox; option 0 'All email messages': accepts every message",
    },
    {
        "check": "auto-create",
        "result": "contact",
        "detail": "ann2@example.net → new Contact <ann2@example.net>; Account 'Firma GmbH' <x@y.z> (#9)",
    },
    {"check": "outcome", "result": "tracked/accepted_all", "detail": "accepted by queue Support"},
]
GERMAN = [
    {
        "check": "sender",
        "result": "resolved",
        "detail": "ann@example.net → Kontakt 'Ann' <ann@example.net> (#7) (only match)",
    },
    {
        "check": "recipients",
        "result": "2 of 2 resolved",
        "detail": 'bob@contoso.com → Benutzer "Bob O\'Neil" <bob@contoso.com> (#2); '
        "support@contoso.com → Warteschlange 'Support' <support@contoso.com> (#3)",
    },
    {
        "check": "candidate: user alice",
        "result": "declines",
        "detail": "mailbox owner; option 4 'Keine E-Mail-Nachrichten': accepts no message",
    },
    {
        "check": "candidate: queue Support",
        "result": "accepts",
        "detail": "recipient with a mailbox; option 0 'Alle E-Mail-Nachrichten': accepts every message",
    },
    {
        "check": "auto-create",
        "result": "contact",
        "detail": "ann2@example.net → new Kontakt <ann2@example.net>; Firma 'Firma GmbH' <x@y.z> (#9)",
    },
    {"check": "outcome", "result": "tracked/accepted_all", "detail": "accepted by queue Support"},
]


def test_the_migration_puts_german_words_back_into_english():
    assert migration.english_trace(GERMAN) == ENGLISH


def test_the_migration_leaves_english_traces_alone():
    assert migration.english_trace(ENGLISH) is ENGLISH


def test_every_option_and_kind_of_the_catalogue_is_known_to_the_migration():
    from tracking.choices import EntityKind, TrackOption

    with translation.override("de"):
        kinds = {str(k.label) for k in EntityKind} - {"Lead"}
        options = {str(o.label) for o in TrackOption}
    assert kinds == set(migration.GERMAN_KINDS)
    assert options == set(migration.GERMAN_OPTIONS)


def test_the_migration_rewrites_stored_german_rows_only(alice: Mailbox):
    german, english = make_decisions(alice, 2)
    Decision.objects.filter(pk=german.pk).update(trace=GERMAN)
    Decision.objects.filter(pk=english.pk).update(trace=ENGLISH)

    migration.forwards(django_apps, None)

    assert Decision.objects.get(pk=german.pk).trace == ENGLISH
    assert Decision.objects.get(pk=english.pk).trace == ENGLISH


def test_a_german_reader_sees_a_stored_english_trace_in_german(alice: Mailbox, alice_user: User):
    [decision] = make_decisions(alice, 1, trace=ENGLISH)
    do_set_personal_options(alice_user, language="de")
    client = Client()
    client.force_login(alice_user)
    html = client.get(reverse("web-decision", args=[decision.pk])).content.decode()
    assert "Warteschlange &#x27;Support&#x27;" in html
    assert "Keine E-Mail-Nachrichten" in html  # the option's label, in the sentence translated around it
    assert "Queue &#x27;Support&#x27;" not in html


def test_migrating_to_english_traces_rewrites_the_german_rows(transactional_db: None, alice: Mailbox):
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before, after = ("tracking", "0010_reprocessing_rounds"), ("tracking", "0011_english_traces")
    executor = MigrationExecutor(connection)
    leaves = executor.loader.graph.leaf_nodes()
    executor.migrate([before])
    # rows as they were then, through the models of that state (later migrations add columns)
    old = executor.loader.project_state(before).apps.get_model("tracking", "Decision")
    german = old.objects.create(
        mailbox_id=alice.pk,
        folder="inbox",
        message_id="<german@x>",
        direction="incoming",
        outcome="not_tracked",
        reason="option_none",
        trace=GERMAN,
        decided_at=timezone.now(),
    )
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([after])
    migrated = executor.loader.project_state(after).apps.get_model("tracking", "Decision")
    try:
        assert migrated.objects.get(pk=german.pk).trace == ENGLISH
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(leaves)
