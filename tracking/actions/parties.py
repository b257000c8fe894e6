"""The parties of tracked emails written before EmailParty existed (tracking-rules §6)."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction

from tracking.actions.scans import PARTY_FIELD
from tracking.bulk import bulk_insert
from tracking.choices import PartyRole
from tracking.context import load_entities
from tracking.models import EmailParty, TrackedEmail

BACKFILL_BATCH = 500


def do_backfill_parties(*, batch_size: int = BACKFILL_BATCH) -> int:
    """Give every tracked email without parties its parties, resolved by address as the directory stands
    now; returns how many emails got them.

    Simpler than a scan's resolution: every user, queue and record with the address (any case) is a party,
    none is preferred. Emails that have parties are left alone, so it may run again, and beside scans.
    One transaction per batch of emails, in id order.
    """
    done = 0
    after = 0
    while True:
        batch = list(
            TrackedEmail.objects.filter(pk__gt=after)
            .order_by("pk")
            .values_list("pk", "sender", "recipients", "timeline_at")[:batch_size]
        )
        if not batch:
            return done
        after = batch[-1][0]
        have = set(
            EmailParty.objects.filter(tracked_email_id__in=[row[0] for row in batch]).values_list(
                "tracked_email_id", flat=True
            )
        )
        todo = [row for row in batch if row[0] not in have]
        wanted: list[tuple[int, str, str, datetime]] = []
        for pk, sender, recipients, timeline_at in todo:
            seen: set[tuple[str, str]] = set()
            pairs = [(PartyRole.FROM.value, sender)] if sender else []
            pairs += [
                (str(pair[0]), str(pair[1]))
                for pair in recipients or []
                if isinstance(pair, list) and len(pair) == 2 and pair[0] in PartyRole.values
            ]
            for role, address in pairs:
                key = (role, address.strip().lower())
                if key[1] and key not in seen:
                    seen.add(key)
                    wanted.append((pk, role, key[1], timeline_at))
        entities = load_entities({address for _, _, address, _ in wanted})
        rows: list[EmailParty] = []
        for pk, role, address, timeline_at in wanted:
            matches = entities.get(address, [])
            fields = [{PARTY_FIELD.get(e.kind, "record_id"): e.id} for e in matches] or [{}]
            rows.extend(
                EmailParty(
                    tracked_email_id=pk, role=role, address=address[:320], timeline_at=timeline_at, **f
                )
                for f in fields
            )
        with transaction.atomic():
            bulk_insert(rows)
        done += len(todo)
