"""The real-mail corpora (tests/data/corpora) through the real `ingest` command.

Every file of every corpus goes through `manage.py ingest --json`: no crash, one JSON line per
message, only outcomes and reasons of tracking-rules §8, exact outcome counts, and a re-run that creates
nothing. The Pony Mail test checks In-Reply-To correlation (tracking-rules §5.1) against thread sets
computed here from the mbox headers with the standard library only.

The notmuch corpus is GPL-3.0-or-later and is not in this repository: its test reads it from the
folder named by NOTMUCH_CORPUS and is skipped when that is not set (see tests/data/corpora/README.md).

How the counts were measured: each test was run once with the assertions disabled, printing
Counter((outcome, reason, accepting)) of the JSON lines of every ingest; the numbers were pasted
here and then checked unchanged on SQLite and PostgreSQL (DATABASE_URL=postgres://...). Nothing
in them depends on the clock, the database or the order of rows in a query.
"""

from __future__ import annotations

import csv
import mailbox
import os
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from email.parser import BytesHeaderParser
from email.utils import getaddresses
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from tests.conftest import CORPORA, CommandResult
from tracking.choices import REASONS_BY_OUTCOME, CorrelationMethod, Outcome
from tracking.decisions import ManualTracking, RecordRef
from tracking.messages import RawItem
from tracking.models import CrmRecord, Decision, Mailbox, ScanRun, TrackedEmail
from tracking.pipeline import process_page

pytestmark = pytest.mark.corpus

Cmd = Callable[..., CommandResult]
Row = dict[str, Any]

ENRON = CORPORA / "enron-mbox"
PONYMAIL = CORPORA / "ponymail-asf-mbox"
NOTMUCH_ENV = "NOTMUCH_CORPUS"
NOTMUCH = Path(os.environ[NOTMUCH_ENV]) if os.environ.get(NOTMUCH_ENV) else None
CPYTHON = CORPORA / "cpython-test-email"
MAVEN_NOV = PONYMAIL / "maven-dev-2017-11-mboxvm.mbox"
MAVEN_DEC = PONYMAIL / "maven-dev-2017-12-mboxvm.mbox"

_ID_RE = re.compile(r"<([^<>\s]+)>")


# ---------------------------------------------------------------------------------------------
# Reading the corpora with the standard library only (independent of tracking.sources.local)
# ---------------------------------------------------------------------------------------------


def files_under(path: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(root) / name


def raw_messages(path: Path) -> list[bytes]:
    """Every message of a file or folder: an mbox holds many, any other file is one message."""
    out: list[bytes] = []
    for file in files_under(path) if path.is_dir() else [path]:
        if file.suffix == ".mbox":
            box = mailbox.mbox(file, create=False)
            out += [box.get_bytes(key) for key in box.iterkeys()]
            box.close()
        else:
            out.append(file.read_bytes())
    return out


def header_id(value: object) -> str | None:
    ids = _ID_RE.findall(str(value or ""))
    return f"<{ids[0]}>" if ids else None


# ---------------------------------------------------------------------------------------------
# Running ingest
# ---------------------------------------------------------------------------------------------


def ingest(cmd: Cmd, address: str, folder: str, *paths: Path, regarding: str | None = None) -> list[Row]:
    args = ["ingest", "--mailbox", address, "--folder", folder, *map(str, paths), "--json"]
    if regarding:
        args += ["--regarding", regarding]
    rows = cmd(*args).json_lines()
    expected_direction = "outgoing" if folder == "sentitems" else "incoming"
    for row in rows:
        outcome = Outcome(row["outcome"])
        assert row["reason"] in REASONS_BY_OUTCOME[outcome], row
        assert row["correlation_method"] is None or row["correlation_method"] in CorrelationMethod.values
        assert row["folder"] == folder
        assert row["direction"] == expected_direction
        assert row["trace"], row
    return rows


def outcome_counts(rows: list[Row]) -> dict[tuple[str, str], int]:
    return dict(Counter((r["outcome"], r["reason"]) for r in rows))


def store_sizes() -> tuple[int, int, int]:
    return Decision.objects.count(), TrackedEmail.objects.count(), CrmRecord.objects.count()


Run = tuple[tuple[Any, ...], str | None, list[Row]]  # ingest arguments, --regarding, the JSON lines


def assert_rerun_creates_nothing(cmd: Cmd, runs: list[Run]) -> None:
    """tracking-rules §7: re-running any ingest gives the same decisions again, none of them new."""
    before = store_sizes()
    for args, regarding, first in runs:
        again = ingest(cmd, *args, regarding=regarding)
        assert [r["new"] for r in again] == [False] * len(first)
        assert [(r["message_id"], r["outcome"], r["reason"]) for r in again] == [
            (r["message_id"], r["outcome"], r["reason"]) for r in first
        ]
    assert store_sizes() == before
    # Every run, first or again, finished normally.
    assert set(ScanRun.objects.values_list("source", "status", "error")) == {("ingest", "succeeded", "")}


def add_user_mailbox(cmd: Cmd, address: str, username: str, profile: str, *, track: int) -> None:
    cmd("mailbox", "add", address, "--user", username, "--create-user", "--profile", profile, "--approve",
        "--track", str(track))  # fmt: skip


def write_csv(path: Path, rows: Sequence[tuple[str, ...]], header: tuple[str, ...]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


# ---------------------------------------------------------------------------------------------
# Enron: seven users, Inbox and Sent Items, a mix of Track options, a small CRM directory
# ---------------------------------------------------------------------------------------------

# The address each owner was mailed at in the 2001 Outlook Inbox (most frequent To address).
ENRON_USERS: dict[str, tuple[str, int]] = {
    "allen-p": ("k..allen@enron.com", 2),
    "arnold-j": ("john.arnold@enron.com", 0),  # also auto-creates contacts for unresolved senders
    "grigsby-m": ("mike.grigsby@enron.com", 3),
    "kuykendall-t": ("tori.kuykendall@enron.com", 1),
    "lavorato-j": ("john.lavorato@enron.com", 2),
    "shively-h": ("s..shively@enron.com", 4),
    "tholt-j": ("m..tholt@enron.com", 3),
}
# Frequent correspondents of the owners (from their sent folders and Inbox senders).
ENRON_CONTACTS = [
    ("John Smith", "jsmith@austintx.com", "", "allen-p"),
    ("Stagecoach Mama", "stagecoachmama@hotmail.com", "", "allen-p"),
    ("Jacques Craig", "jacquestc@aol.com", "", "allen-p"),
    ("Keith Holst", "keith.holst@enron.com", "", ""),
    ("Ina Rangel", "ina.rangel@enron.com", "", ""),
    ("Steve LaFontaine", "slafontaine@globalp.com", "steve.lafontaine@bankofamerica.com", "arnold-j"),
    ("Jennifer Fraser", "jennifer.fraser@enron.com", "", "arnold-j"),
    ("Louise Kitchen", "louise.kitchen@enron.com", "", "lavorato-j"),
    ("David Delainey", "david.delainey@enron.com", "", "lavorato-j"),
    ("Chris Gaskill", "chris.gaskill@enron.com", "", "shively-h"),
    ("Phyllis Kuykendall", "pkuykendall@wm.com", "", "kuykendall-t"),
    ("Jim Malisz", "jmalisz@qwest.com", "", "tholt-j"),
]
ENRON_ACCOUNTS = [
    ("Accenture", "mery.l.brown@accenture.com", "monica.l.brown@accenture.com", ""),
    ("Intelligence Press", "subscriptions@intelligencepress.com", "", ""),
    ("California Energy Commission", "fnamjou@energy.state.ca.us", "newsreleases@energy.ca.gov", "tholt-j"),
]
ENRON_LEADS = [("Kudlow & Co", "svarga@kudlow.com", "", "lavorato-j")]
ENRON_OTHER = [("Continental Airlines", "continental_airlines_inc@coair.rsc01.com", "", "", "Vendor")]

# Measured (see the module docstring): (outcome, reason, accepting entity's name) per ingest.
NT, TR = "not_tracked", "tracked"
ENRON_EXPECTED: dict[tuple[str, str], dict[tuple[str, str, str | None], int]] = {
    ("allen-p", "inbox"): {(NT, "no_crm_party", None): 54, (TR, "accepted_crm_party", "allen-p"): 12},
    ("allen-p", "sentitems"): {(NT, "no_crm_party", None): 1069, (TR, "accepted_crm_party", "allen-p"): 440},
    ("arnold-j", "inbox"): {(TR, "accepted_all", "arnold-j"): 142},
    ("arnold-j", "sentitems"): {(TR, "accepted_all", "arnold-j"): 1539},
    ("grigsby-m", "inbox"): {
        (NT, "no_email_enabled_party", None): 66,
        (TR, "accepted_email_enabled_party", "grigsby-m"): 11,
    },
    ("grigsby-m", "sentitems"): {
        (NT, "no_email_enabled_party", None): 398,
        (TR, "accepted_email_enabled_party", "grigsby-m"): 177,
    },
    # Option 1 and no reply headers: only a recipient with a mailbox (tholt-j, option 3) accepts.
    ("kuykendall-t", "inbox"): {
        (NT, "no_correlation", None): 46,
        (TR, "accepted_email_enabled_party", "tholt-j"): 5,
    },
    ("kuykendall-t", "sentitems"): {(NT, "no_correlation", None): 313},
    # Contacts auto-created by arnold-j's Inbox (scanned earlier) make more of these senders CRM parties.
    ("lavorato-j", "inbox"): {
        (NT, "no_crm_party", None): 194,
        (TR, "accepted_crm_party", "lavorato-j"): 78,
        (TR, "accepted_all", "arnold-j"): 5,
    },
    ("lavorato-j", "sentitems"): {
        (NT, "no_crm_party", None): 1147,
        (TR, "accepted_crm_party", "lavorato-j"): 177,
    },
    # Option 4 for the owner; other recipients with mailboxes still accept under their own option.
    ("shively-h", "inbox"): {
        (NT, "option_none", None): 130,
        (TR, "accepted_crm_party", "lavorato-j"): 5,
        (TR, "accepted_crm_party", "allen-p"): 3,
        (TR, "accepted_email_enabled_party", "grigsby-m"): 2,
        (TR, "accepted_all", "arnold-j"): 3,
    },
    ("shively-h", "sentitems"): {(NT, "option_none", None): 401},
    ("tholt-j", "inbox"): {
        (NT, "no_email_enabled_party", None): 58,
        (TR, "accepted_email_enabled_party", "tholt-j"): 27,
    },
    ("tholt-j", "sentitems"): {
        (NT, "no_email_enabled_party", None): 405,
        (TR, "accepted_email_enabled_party", "tholt-j"): 61,
    },
}
ENRON_AUTO_CREATED = 83  # contacts created for arnold-j's unresolved senders (tracking-rules §6)


def enron_counts(rows: list[Row]) -> dict[tuple[str, str, str | None], int]:
    return dict(Counter((r["outcome"], r["reason"], (r["accepting_entity"] or {}).get("name")) for r in rows))


@pytest.fixture
def enron_directory(exchange_profile, cmd: Cmd, tmp_path: Path) -> None:
    cmd("orgsettings", "set", "AutoTrackSentFolderItems", "true")
    for username, (address, track) in ENRON_USERS.items():
        add_user_mailbox(cmd, address, username, exchange_profile.name, track=track)
    # As after Test & Enable: a recipient is a candidate only while its mailbox syncs (tracking-rules §4).
    Mailbox.objects.update(enabled=True)
    cmd("personaloptions", "arnold-j", "--auto-create", "contact")
    header = ("name", "email", "email2", "owner")
    imports = [
        ("contact", write_csv(tmp_path / "contacts.csv", ENRON_CONTACTS, header)),
        ("account", write_csv(tmp_path / "accounts.csv", ENRON_ACCOUNTS, header)),
        ("lead", write_csv(tmp_path / "leads.csv", ENRON_LEADS, header)),
        ("other", write_csv(tmp_path / "other.csv", ENRON_OTHER, (*header, "kind"))),
    ]
    for kind, path in imports:
        result = cmd("import_records", kind, str(path))
        assert result.out.strip().endswith("rejected 0"), result.out + result.err


def addresses(msg: Any, *fields: str) -> list[str]:
    found = getaddresses([str(v) for f in fields for v in msg.get_all(f, [])])
    return list(dict.fromkeys(a.lower() for _, a in found if a))


class EnronOracle:
    """tracking-rules §4 and §6 restated for this corpus, message by message, from the headers alone.

    Enron has no reply headers and no tracking tokens, so option 1 never accepts; a user is
    known by its mailbox address only; contacts are auto-created for arnold-j's unresolved senders.
    """

    def __init__(self) -> None:
        self.users = {address: (username, track) for username, (address, track) in ENRON_USERS.items()}
        self.crm_parties = {
            a for r in CrmRecord.objects.exclude(kind="other") for a in (r.email1, r.email2, r.email3) if a
        }
        self.others = {a for r in CrmRecord.objects.filter(kind="other") for a in (r.email1, r.email2) if a}

    def accepts(self, track: int, party_addresses: list[str]) -> bool:
        if track == 0:
            return True
        if track == 2:
            return any(a in self.crm_parties for a in party_addresses)
        if track == 3:
            return any(a in self.crm_parties | self.others | set(self.users) for a in party_addresses)
        return False  # 1: nothing correlates; 4: no email messages

    def decide(self, owner: str, folder: str, msg: Any) -> str | None:
        """The accepting user's name, or None when the message is not tracked."""
        recipients = addresses(msg, "To", "Cc", "Bcc")
        sender = addresses(msg, "From")[:1]
        if folder == "sentitems":
            return owner if self.accepts(ENRON_USERS[owner][1], recipients) else None
        candidates = [owner] + [self.users[a][0] for a in recipients if a in self.users]
        for username in dict.fromkeys(candidates):
            if self.accepts(ENRON_USERS[username][1], sender):
                known = self.crm_parties | self.others | set(self.users)
                if username == "arnold-j" and sender and sender[0] not in known:
                    self.crm_parties.add(sender[0])  # auto-created contact
                return username
        return None


def test_it_ingests_every_enron_folder(enron_directory, cmd: Cmd):
    last_imported = CrmRecord.objects.order_by("-pk").values_list("pk", flat=True).first()
    oracle = EnronOracle()
    runs: list[Run] = []
    counts = {}
    for username, (address, _) in ENRON_USERS.items():
        folder_dir = ENRON / username
        inbox = [folder_dir / "inbox.mbox"]
        # Outlook "Sent Items" of 2001 and the Lotus Notes sent folders of 2000, as one Sent Items scan.
        sent = sorted(p for p in folder_dir.glob("*.mbox") if p.name != "inbox.mbox")
        for folder, paths in (("inbox", inbox), ("sentitems", sent)):
            rows = ingest(cmd, address, folder, *paths)
            messages = [BytesHeaderParser().parsebytes(raw) for p in paths for raw in raw_messages(p)]
            assert len(rows) == len(messages)
            assert [r["message_id"] for r in rows] == [header_id(m["Message-ID"]) for m in messages]
            assert all(r["new"] for r in rows)  # Enron Message-IDs are unique per file and mailbox
            counts[username, folder] = enron_counts(rows)
            runs.append(((address, folder, *paths), None, rows))
            got = [(r["accepting_entity"] or {}).get("name") for r in rows]
            assert got == [oracle.decide(username, folder, m) for m in messages], (username, folder)

    assert counts == ENRON_EXPECTED
    assert Decision.objects.count() == 6968
    assert TrackedEmail.objects.count() == sum(
        n for c in counts.values() for (outcome, *_), n in c.items() if outcome == "tracked"
    )
    assert set(TrackedEmail.objects.values_list("direction", flat=True)) == {"incoming", "outgoing"}

    # tracking-rules §6: contacts created for arnold-j's unresolved senders; a sender known by an imported
    # contact's second address resolved to it and was not created again.
    created = CrmRecord.objects.filter(pk__gt=last_imported)
    assert created.count() == ENRON_AUTO_CREATED
    assert set(created.values_list("kind", "owner__username")) == {("contact", "arnold-j")}
    assert "steve.lafontaine@bankofamerica.com" not in set(created.values_list("email1", flat=True))

    assert_rerun_creates_nothing(cmd, runs)


# ---------------------------------------------------------------------------------------------
# Pony Mail, notmuch and CPython: every file, then the same list archive in a second mailbox
# ---------------------------------------------------------------------------------------------

# Measured (see the module docstring). "new" counts decisions created: a Message-ID seen again in
# the same mailbox folder (notmuch lkml/ and duplicate/, the cross-posted Pony Mail message, the
# CPython messages that repeat one) gets the earlier decision back, not a second one.
OTHER_EXPECTED: dict[str, dict[tuple[str, str], int]] = {
    # Queue mailbox, option 0. The one failure is no_date.mbox, a List-Id header and a body.
    "ponymail": {("tracked", "accepted_all"): 677, ("failed", "unparseable"): 1},
    # The failure is the corpus README, which is not a message.
    "notmuch": {("tracked", "accepted_all"): 288, ("failed", "unparseable"): 1},
    # Failures: msg_18, 19, 37, 38, 39, 40 have no From, To, Subject, Date or Message-ID at all.
    "cpython": {("tracked", "accepted_all"): 42, ("failed", "unparseable"): 6},
    "ponymail again": {("already_tracked", "duplicate_message_id"): 677, ("failed", "unparseable"): 1},
}
OTHER_NEW = {"ponymail": 673, "notmuch": 248, "cpython": 34, "ponymail again": 673}
# Messages without a Message-ID get a synthetic one (tracking-rules §7) from sender, date, subject and
# recipients (unparseable ones one from their bytes). In CPython msg_07/13/17, msg_08/09/10/12/12a
# and msg_23/28/30/31 share all four, and msg_01/03/14/20/29 and msg_04/44 share a real Message-ID:
# 48 files = 6 failures + 28 distinct tracked messages + 14 repeats.
OTHER_SYNTHETIC = {"ponymail": 2, "notmuch": 1, "cpython": 32, "ponymail again": 2}


def ingest_corpora(cmd: Cmd, plan: list[tuple[str, str, Path]]) -> list[Run]:
    """Ingest each (name, mailbox, path) of the plan into the Inbox and check the measured figures."""
    runs: list[Run] = []
    counts, new, synthetic = {}, {}, {}
    for name, address, path in plan:
        rows = ingest(cmd, address, "inbox", path)
        messages = raw_messages(path)
        assert len(rows) == len(messages)
        for row, raw in zip(rows, messages, strict=True):
            expected_id = header_id(BytesHeaderParser().parsebytes(raw)["Message-ID"])
            if expected_id and row["outcome"] != "failed":
                assert row["message_id"] == expected_id
        counts[name] = outcome_counts(rows)
        new[name] = sum(r["new"] for r in rows)
        synthetic[name] = sum(r["message_id"].endswith(".syncadmin.invalid>") for r in rows)
        runs.append(((address, "inbox", path), None, rows))
        if name != "cpython":  # no two different messages share a made-up Message-ID here
            ids = [header_id(BytesHeaderParser().parsebytes(raw)["Message-ID"]) for raw in messages]
            assert new[name] == len(set(ids) - {None}) + ids.count(None)

    names = [name for name, _, _ in plan]
    assert counts == {name: OTHER_EXPECTED[name] for name in names}
    assert new == {name: OTHER_NEW[name] for name in names}
    assert synthetic == {name: OTHER_SYNTHETIC[name] for name in names}
    assert Decision.objects.count() == sum(new.values())
    return runs


def test_it_ingests_every_other_corpus(exchange_profile, cmd: Cmd):
    profile = exchange_profile.name
    cmd("mailbox", "add", "lists@example.org", "--queue", "Lists", "--profile", profile, "--approve")
    add_user_mailbox(cmd, "python@example.org", "py", profile, track=0)
    add_user_mailbox(cmd, "archive@example.org", "archive", profile, track=0)

    runs = ingest_corpora(
        cmd,
        [
            ("ponymail", "lists@example.org", PONYMAIL),
            ("cpython", "python@example.org", CPYTHON),
            # The same archive in another mailbox: one TrackedEmail per Message-ID (tracking-rules §7).
            ("ponymail again", "archive@example.org", PONYMAIL),
        ],
    )
    # One TrackedEmail per Message-ID (new decisions less failures); the second mailbox's copies link
    # to the first's.
    assert TrackedEmail.objects.count() == (673 - 1) + (34 - 6)
    again = Decision.objects.filter(mailbox__email_address="archive@example.org", outcome="already_tracked")
    assert again.filter(tracked_email__receiving_mailbox__email_address="lists@example.org").count() == 672

    assert_rerun_creates_nothing(cmd, runs)


@pytest.mark.skipif(
    NOTMUCH is None,
    reason=f"the notmuch corpus (GPL-3.0-or-later) is not in this repository; set {NOTMUCH_ENV} to its "
    "folder to run this test (tests/data/corpora/README.md)",
)
def test_it_ingests_the_notmuch_corpus(exchange_profile, cmd: Cmd):
    assert NOTMUCH is not None
    add_user_mailbox(cmd, "dev@example.org", "dev", exchange_profile.name, track=0)

    runs = ingest_corpora(cmd, [("notmuch", "dev@example.org", NOTMUCH)])
    assert TrackedEmail.objects.count() == 248 - 1

    assert_rerun_creates_nothing(cmd, runs)


# ---------------------------------------------------------------------------------------------
# Pony Mail threads: replies to a tracked message are tracked, transitively (tracking-rules §4 option 1, §5)
# ---------------------------------------------------------------------------------------------

# Thread starters in maven-dev-2017-11 (mbox position, subject) and the record each is tracked regarding.
MAVEN_ROOTS = {
    16: "account:Apache Maven",  # "Maven 4.0.0", 35 replies, all in November; tracked with ingest --regarding
    79: "other:Maven Resolver",  # "Maven resolver branch consolidation", 27 replies, one in December
    266: "other:Maven Indexer",  # "[VOTE] Release Maven Indexer 6.0.0", 8 replies, 3 in December
}


def test_it_tracks_replies_to_a_manually_tracked_maven_thread(exchange_profile, cmd: Cmd, tmp_path: Path):
    add_user_mailbox(cmd, "watcher@example.org", "watcher", exchange_profile.name, track=1)
    header = ("name", "email", "kind")
    accounts = [("Apache Maven", "dev@maven.apache.org", "")]
    cmd("import_records", "account", str(write_csv(tmp_path / "a.csv", accounts, header)))
    projects = [
        ("Maven Resolver", "resolver@example.org", "Project"),
        ("Maven Indexer", "indexer@example.org", "Project"),
    ]
    cmd("import_records", "other", str(write_csv(tmp_path / "o.csv", projects, header)))

    nov, dec = raw_messages(MAVEN_NOV), raw_messages(MAVEN_DEC)
    headers = [BytesHeaderParser().parsebytes(raw) for raw in nov + dec]
    ids = [header_id(h["Message-ID"]) for h in headers]
    assert ids.count(None) == 1  # one GitBox notification has no Message-ID; SyncAdmin makes one up

    # Track the three thread starters by hand: the first through the CLI, the others as the
    # "Track" button does, through process_page with ManualTracking.
    runs: list[Run] = []
    regarding_of: dict[str | None, dict[str, str]] = {}
    for position, regarding in MAVEN_ROOTS.items():
        kind, _, name = regarding.partition(":")
        regarding_of[ids[position]] = {"kind": kind, "name": name}
        if position == 16:
            path = tmp_path / "maven-4.0.0.eml"  # Apache-2.0 list archive: may be copied
            path.write_bytes(nov[position])
            rows = ingest(cmd, "watcher@example.org", "inbox", path, regarding=regarding)
            runs.append((("watcher@example.org", "inbox", path), regarding, rows))
        else:
            record = CrmRecord.objects.get(kind=kind, name=name)
            processed = process_page(
                Mailbox.objects.get(email_address="watcher@example.org"),
                "inbox",
                [RawItem(f"{MAVEN_NOV}#{position}", nov[position])],
                scan_run=None,
                now=timezone.now(),
                manual=ManualTracking(RecordRef(record.pk, kind, name)),
            )
            rows = [
                {"outcome": p.decision.outcome, "reason": p.decision.reason, "new": p.new} for p in processed
            ]
        assert [(r["outcome"], r["reason"], r["new"]) for r in rows] == [("tracked", "manual", True)]
    roots = set(regarding_of)

    # What tracking-rules §3.5, §5.1 and §7 expect of the scan, from the headers alone, in file order:
    # - with no start date set, every message is evaluated, whatever manual tracking did before;
    # - the three starters are tracked already: already_tracked/duplicate_message_id;
    # - a message whose In-Reply-To is a tracked message is tracked (accepted_correlated, in_reply_to)
    #   regarding what its parent is regarding, so replies to replies are tracked too;
    # - any other message is not_tracked/no_correlation (Track option 1).
    expected: list[tuple[str, str, str | None, str | None]] = []
    for h, message_id in zip(headers, ids, strict=True):
        parents = [f"<{i}>" for i in _ID_RE.findall(str(h["In-Reply-To"] or ""))]
        parent = next((p for p in parents if p in regarding_of), None)
        if message_id in roots:
            expected.append(("already_tracked", "duplicate_message_id", None, None))
        elif parent is not None:
            regarding_of[message_id] = regarding_of[parent]
            expected.append(("tracked", "accepted_correlated", "in_reply_to", parent))
        else:
            expected.append(("not_tracked", "no_correlation", None, None))

    rows = ingest(cmd, "watcher@example.org", "inbox", MAVEN_NOV, MAVEN_DEC)
    runs.append((("watcher@example.org", "inbox", MAVEN_NOV, MAVEN_DEC), None, rows))
    assert len(rows) == len(ids)
    assert all(r["new"] for r in rows)  # manual decisions are kept apart from the scan's
    made_up = rows[ids.index(None)]["message_id"]
    assert [r["message_id"] for r in rows] == [i or made_up for i in ids]
    got = [(r["outcome"], r["reason"], r["correlation_method"], r["correlated_message_id"]) for r in rows]
    assert got == expected
    assert outcome_counts(rows) == {
        ("already_tracked", "duplicate_message_id"): 3,
        ("tracked", "accepted_correlated"): 74,
        ("not_tracked", "no_correlation"): 461,
    }

    # The thread sets, as sets: each starter and every message reachable from it through
    # In-Reply-To (in either month), however deep, is tracked regarding the starter's record,
    # and nothing else is tracked.
    children: dict[str, set[str]] = {}
    for h, message_id in zip(headers, ids, strict=True):
        for parent in _ID_RE.findall(str(h["In-Reply-To"] or "")):
            children.setdefault(f"<{parent}>", set()).add(message_id or made_up)
    threads: dict[str, set[str]] = {}
    for position, regarding in MAVEN_ROOTS.items():
        members: set[str] = set()
        todo = [ids[position] or ""]
        while todo:
            member = todo.pop()
            members.add(member)
            todo += sorted(children.get(member, set()) - members)
        threads[regarding.partition(":")[2]] = members
    assert {name: len(members) for name, members in threads.items()} == {
        "Apache Maven": 36,  # 1 + 35 replies
        "Maven Resolver": 29,  # 1 + 27 replies in November + 1 in December
        "Maven Indexer": 12,  # 1 + 8 + 3
    }
    stored: dict[str, set[str]] = {}
    for message_id, name in TrackedEmail.objects.values_list("message_id", "regarding__name"):
        stored.setdefault(name, set()).add(message_id)
    assert stored == threads
    assert {r["message_id"]: r["regarding"] for r in rows if r["outcome"] == "tracked"} == {
        k: v for k, v in regarding_of.items() if k not in roots
    }
    replies = TrackedEmail.objects.exclude(correlated_email=None).values_list(
        "in_reply_to", "correlated_email__message_id", "correlation_method"
    )
    assert len(replies) == 74
    assert all(parent == linked and method == "in_reply_to" for parent, linked, method in replies)

    assert_rerun_creates_nothing(cmd, runs)
    again = process_page(
        Mailbox.objects.get(email_address="watcher@example.org"),
        "inbox",
        [RawItem(f"{MAVEN_NOV}#79", nov[79])],
        scan_run=None,
        now=timezone.now(),
        manual=ManualTracking(None),
    )
    assert [(p.decision.outcome, p.decision.reason, p.new) for p in again] == [("tracked", "manual", False)]
    assert TrackedEmail.objects.count() == 3 + 74
