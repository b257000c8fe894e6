"""Data only: stored traces in English (tracking-rules §8).

Until issue 14 the engine wrote two kinds of words through the active language: an entity's kind in a
party's label ("Benutzer 'Bob' <bob@…> (#2)") and a Track option's label ("option 4 'Keine
E-Mail-Nachrichten'"), so a decision made while a German-speaking user was signed in (manual tracking,
or an ingest run in German) stored German words where every other decision has English ones. This puts
those words back into English; the pages translate them again when they show a trace.

The words are frozen here as the German catalogue had them, not read from it, so the migration means the
same whatever the catalogue says later.
"""

import re

from django.db import migrations
from django.db.models import Q

GERMAN_KINDS = {
    "Benutzer": "User",
    "Warteschlange": "Queue",
    "Kontakt": "Contact",
    "Firma": "Account",
    "Anderer Datensatz, für den E-Mail aktiviert ist": "Other email-enabled record",
}
GERMAN_OPTIONS = {
    "Alle E-Mail-Nachrichten": "All email messages",
    "E-Mail-Nachrichten in Antwort auf SyncAdmin-E-Mail": "Email messages in response to SyncAdmin email",
    "E-Mail-Nachrichten von SyncAdmin-Leads, -Kontakten und -Firmen": (
        "Email messages from SyncAdmin Leads, Contacts, and Accounts"
    ),
    "E-Mail-Nachrichten von SyncAdmin-Datensätzen, für die E-Mail aktiviert ist": (
        "Email messages from SyncAdmin records that are email enabled"
    ),
    "Keine E-Mail-Nachrichten": "No email messages",
}
_KINDS = "|".join(re.escape(k) for k in sorted(GERMAN_KINDS, key=len, reverse=True))
_OPTIONS = "|".join(re.escape(o) for o in sorted(GERMAN_OPTIONS, key=len, reverse=True))
# A kind as the engine wrote it: before a party's quoted name, or after "new " before an address.
PATTERN = re.compile(
    rf"(?<![\w-])(?P<kind>{_KINDS})(?= ['\"])|(?<=new )(?P<new>{_KINDS})(?= <)|'(?P<option>{_OPTIONS})'"
)
BATCH = 500


def english_detail(detail):
    def swap(m):
        if m.group("option") is not None:
            return f"'{GERMAN_OPTIONS[m.group('option')]}'"
        return GERMAN_KINDS[m.group("kind") or m.group("new")]

    return PATTERN.sub(swap, detail) if isinstance(detail, str) else detail


def english_trace(trace):
    """The trace with its German words in English; the same list object when nothing changed."""
    if not isinstance(trace, list):
        return trace
    out, changed = [], False
    for step in trace:
        if isinstance(step, dict) and isinstance(step.get("detail"), str):
            detail = english_detail(step["detail"])
            if detail != step["detail"]:
                step, changed = {**step, "detail": detail}, True
        out.append(step)
    return out if changed else trace


def forwards(apps, schema_editor):
    Decision = apps.get_model("tracking", "Decision")
    # Only rows that may hold a German word are read at all (umlauts in JSON text may be escaped, and
    # every German option label has "E-Mail-Nachrichten" in it, every kind label one of these words).
    maybe = Q()
    for word in ("Benutzer", "Warteschlange", "Kontakt", "Firma", "Anderer Datensatz", "E-Mail-Nachrichten"):
        maybe |= Q(trace__icontains=word)
    pending = []
    for decision in Decision.objects.filter(maybe).only("pk", "trace").iterator(chunk_size=BATCH):
        trace = english_trace(decision.trace)
        if trace is not decision.trace:
            decision.trace = trace
            pending.append(decision)
        if len(pending) >= BATCH:
            Decision.objects.bulk_update(pending, ["trace"])
            pending = []
    if pending:
        Decision.objects.bulk_update(pending, ["trace"])


class Migration(migrations.Migration):
    dependencies = [
        ("tracking", "0010_reprocessing_rounds"),
    ]

    # Nothing to undo: English traces are what every later version reads.
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop, elidable=True)]
