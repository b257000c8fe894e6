"""The SQL cost of one page does not grow with the page size or with the CRM directory (context.py's promise).

A page of 10 and a page of 100 varied messages (distinct senders, several recipients, replies to tracked
emails via In-Reply-To, tracking tokens, Thread-Index children, senders that are CRM contacts, unresolved
senders that are auto-created) are processed against 10 and then 10,000 CRM records; every combination
must cost the same number of queries, and few.
"""

from __future__ import annotations

import base64
import email.utils
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.conftest import make_mailbox
from tracking import pipeline
from tracking.actions import (
    check_add_mailbox,
    check_set_org_setting,
    do_set_personal_options,
    do_start_scan_run,
)
from tracking.choices import Folder, Outcome, ScanSource
from tracking.context import load_scan_rules, mailbox_for_scan
from tracking.messages import RawItem
from tracking.models import CrmRecord, Decision, EmailServerProfile, QueueItem, TrackedEmail

# A page of the worst kind (auto-created senders, replies within the page, a folder's first page): 6 loads
# (8 with smart matching) and 9 writes between SAVEPOINT and RELEASE (BEGIN and COMMIT in a scan); the
# ninth is the parties of the new tracked emails (tracking-rules §6), one INSERT a page.
MAX_QUERIES = 18
PARENTS = 5
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def thread_index(n: int, *children: int) -> str:
    """Base64 Thread-Index: a 22-byte header for conversation n plus one 5-byte block per child."""
    raw = bytes([1]) + n.to_bytes(5, "big") + bytes(16)
    for c in children:
        raw += c.to_bytes(5, "big")
    return base64.b64encode(raw).decode()


def raw_message(headers: dict[str, str], body: str = "Hello.\n") -> bytes:
    lines = [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def parent_items() -> list[RawItem]:
    """Emails tracked before the measurement: each with a tracking token and a Thread-Index."""
    out = []
    for p in range(PARENTS):
        headers = {
            "From": f"Partner {p} <partner{p}@partners.example>",
            "To": "setup@contoso.com, contact-1@crm.example",
            "Subject": f"Quote number {p} CRM:0001{p:03d}",
            "Date": email.utils.format_datetime(T0 - timedelta(days=1, minutes=p)),
            "Message-ID": f"<parent-{p}@partners.example>",
            "Thread-Index": thread_index(p),
        }
        out.append(RawItem(f"parent-{p}", raw_message(headers)))
    return out


def page_items(tag: str, size: int, owner: str) -> list[RawItem]:
    """`size` varied messages; every kind of message occurs in a page of 10 already."""
    out = []
    for i in range(size):
        p = i % PARENTS
        if i % 3 == 0:
            sender = f"Contact {i % 10} <contact-{i % 10}@crm.example>"  # resolves to a CRM contact
        else:
            sender = f"Sender {tag} {i} <s{i}.{tag}@ext{i}.example>"  # unresolved: auto-created
        headers = {
            "From": sender,
            "To": f"{owner}, colleague{i}@contoso.com",
            "Cc": f"contact-{(i + 3) % 10}@crm.example, other{i}@elsewhere.example",
            "Subject": f"Project {tag} item {i}",
            "Date": email.utils.format_datetime(T0 + timedelta(minutes=i)),
            "Message-ID": f"<m{i}.{tag}@ext.example>",
        }
        if i % 4 == 1:
            headers["In-Reply-To"] = f"<parent-{p}@partners.example>"  # reply to an email tracked earlier
            headers["Subject"] = f"RE: Quote number {p}"
        if i % 4 == 2:
            headers["Subject"] = f"RE: Quote number {p} CRM:0001{p:03d}"  # tracking token
        if i % 4 == 3:
            headers["Thread-Index"] = thread_index(p, i)  # a child of a tracked conversation
        if i % 5 == 4:
            # a reply to a message earlier in this page
            headers["In-Reply-To"] = f"<m{i - 1}.{tag}@ext.example>"
        out.append(RawItem(f"{tag}-{i}", raw_message(headers)))
    return out


def add_contacts(start: int, stop: int) -> None:
    CrmRecord.objects.bulk_create(
        [
            CrmRecord(kind="contact", name=f"Contact {n}", email1=f"contact-{n}@crm.example")
            for n in range(start, stop)
        ]
    )


def measure(profile: EmailServerProfile, tag: str, size: int) -> int:
    """Process one page into a fresh mailbox (so every measurement starts from the same state)."""
    box = make_mailbox(f"{tag}@contoso.com", tag, profile, track=0)
    assert box.user is not None
    do_set_personal_options(box.user, auto_create="contact")
    box = mailbox_for_scan(box.pk)
    run = do_start_scan_run(box, Folder.INBOX, source=ScanSource.INGEST, now=T0)
    items = page_items(tag, size, box.email_address)
    rules = load_scan_rules()  # once per scan, as scan_folder does
    with CaptureQueriesContext(connection) as ctx:
        processed = pipeline.process_page(
            box, Folder.INBOX, items, scan_run=run, now=T0 + timedelta(days=1), rules=rules
        )
    # The page did real work: everything was tracked, with every correlation kind and auto-created senders.
    assert len(processed) == size
    assert all(p.new and p.decision.outcome == Outcome.TRACKED for p in processed)
    methods = {p.decision.correlation_method for p in processed}
    assert {"in_reply_to", "tracking_token", "conversation_index"} <= methods
    assert CrmRecord.objects.filter(email1__endswith=f".{tag}@ext1.example").exists()
    assert Decision.objects.filter(mailbox=box).count() == size
    return len(ctx.captured_queries)


def run_matrix(profile: EmailServerProfile, label: str) -> dict[tuple[int, int], int]:
    setup = mailbox_for_scan(make_mailbox("setup@contoso.com", "setup", profile, track=0).pk)
    add_contacts(0, 10)
    pipeline.process_page(setup, Folder.INBOX, parent_items(), scan_run=None, now=T0)
    assert TrackedEmail.objects.exclude(tracking_token="").count() == PARENTS

    counts: dict[tuple[int, int], int] = {}
    for size in (10, 100):
        counts[(10, size)] = measure(profile, f"{label}small{size}", size)
    add_contacts(10, 10_000)
    assert CrmRecord.objects.filter(kind="contact").count() >= 10_000
    for size in (10, 100):
        counts[(10_000, size)] = measure(profile, f"{label}large{size}", size)
    print(f"\nqueries per page ({connection.vendor}, {label}):")
    for (records, size), n in counts.items():
        print(f"  {size:>3} messages, {records:>6} CRM records: {n} queries")
    return counts


SMART = pytest.mark.parametrize("smart_matching", ["false", "true"], ids=["plain", "smart_matching"])


@SMART
def test_it_does_not_query_more_for_a_bigger_crm_directory(exchange_profile, smart_matching):
    check_set_org_setting("EnableSmartMatching", smart_matching)
    counts = run_matrix(exchange_profile, f"crm{smart_matching}")

    for size in (10, 100):
        assert counts[(10, size)] == counts[(10_000, size)], counts


@SMART
def test_it_does_not_query_more_for_a_bigger_page(exchange_profile, smart_matching):
    check_set_org_setting("EnableSmartMatching", smart_matching)
    counts = run_matrix(exchange_profile, f"page{smart_matching}")

    assert len(set(counts.values())) == 1, counts
    assert max(counts.values()) <= MAX_QUERIES, counts


def measure_queue(profile: EmailServerProfile, tag: str, size: int) -> int:
    """One page into a fresh queue mailbox whose queue takes everything: each message gets its queue item."""
    box = check_add_mailbox(f"{tag}@contoso.com", profile_name=profile.name, queue_name=tag, approve=True)
    box = mailbox_for_scan(box.pk)
    run = do_start_scan_run(box, Folder.INBOX, source=ScanSource.INGEST, now=T0)
    items = page_items(tag, size, box.email_address)
    rules = load_scan_rules()
    with CaptureQueriesContext(connection) as ctx:
        processed = pipeline.process_page(
            box, Folder.INBOX, items, scan_run=run, now=T0 + timedelta(days=1), rules=rules
        )
    assert all(p.new and p.decision.outcome == Outcome.TRACKED for p in processed)
    assert QueueItem.objects.filter(queue__name=tag).count() == size
    return len(ctx.captured_queries)


def test_queue_items_cost_one_insert_per_page(exchange_profile):
    """A queue mailbox's page writes its queue items (tracking-rules §2) in one statement, at any size."""
    setup = mailbox_for_scan(make_mailbox("setup@contoso.com", "setup", exchange_profile, track=0).pk)
    add_contacts(0, 10)
    pipeline.process_page(setup, Folder.INBOX, parent_items(), scan_run=None, now=T0)
    counts = {size: measure_queue(exchange_profile, f"queue{size}", size) for size in (10, 100)}
    print(f"\nqueries per queue mailbox page ({connection.vendor}): {counts}")
    assert counts[10] == counts[100], counts
    assert counts[10] <= MAX_QUERIES, counts


@pytest.fixture(autouse=True)
def _org_settings_row(db):
    # OrgSettings.load() creates the row on first use; create it up front so no measurement pays for that.
    check_set_org_setting("EnableSmartMatching", "false")
