"""Reprocessing rounds (tracking-rules §3.6): rounds from a date, superseding decisions, idempotence,
cancelling, the `reprocess` command and its refusals, on a local (mbox) profile."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.core.management.base import CommandError
from django.utils import timezone

from tests.conftest import CORPORA
from tracking.actions import (
    ActionError,
    ProfileValues,
    check_add_mailbox,
    check_add_profile,
    do_cancel_round,
    do_set_personal_options,
    do_start_round,
)
from tracking.choices import ScanStatus, TrackOption
from tracking.models import Decision, Mailbox, ReprocessRound, ScanRun, TrackedEmail
from tracking.reprocessing import check_round, run_round_folder
from tracking.scanning import scan_folder

ENRON_INBOX = CORPORA / "enron-mbox/allen-p/inbox.mbox"
ADDRESS = "phil@contoso.com"
COUNT = 66  # messages in that mbox
LONG_AGO = datetime(1990, 1, 1, tzinfo=UTC)


@pytest.fixture
def phil(db: None, tmp_path: Path) -> Mailbox:
    root = tmp_path / "mail"
    (root / ADDRESS).mkdir(parents=True)
    shutil.copy(ENRON_INBOX, root / ADDRESS / "inbox.mbox")
    check_add_profile(ProfileValues("files", "local", endpoint=str(root)))
    mailbox = check_add_mailbox(
        ADDRESS, profile_name="files", username="phil", create_user=True, approve=True
    )
    Mailbox.objects.filter(pk=mailbox.pk).update(enabled=True)
    mailbox.refresh_from_db()
    assert mailbox.user is not None
    do_set_personal_options(mailbox.user, track=TrackOption.NONE)
    return mailbox


def start_round(
    mailbox: Mailbox, since: datetime = LONG_AGO, folders: tuple[str, ...] = ()
) -> ReprocessRound:
    request = check_round([mailbox], since, folders, now=timezone.now())
    return do_start_round(request, acting_user=None, via="test")


def run_all(round: ReprocessRound) -> None:
    for run in ScanRun.objects.filter(round=round).order_by("pk"):
        run_round_folder(run.pk)


def test_a_round_after_a_track_option_change_tracks_and_names_the_decisions_it_supersedes(phil):
    scan_folder(phil.pk, "inbox")
    first = {d.message_id: d.pk for d in Decision.objects.filter(mailbox=phil)}
    assert len(first) == COUNT and not TrackedEmail.objects.exists()
    assert phil.user is not None
    do_set_personal_options(phil.user, track=TrackOption.ALL)

    round = start_round(phil)
    run_all(round)

    (run,) = ScanRun.objects.filter(round=round)
    assert (run.status, run.source, run.items_done, run.tracked) == (
        ScanStatus.SUCCEEDED,
        "reprocess",
        COUNT,
        COUNT,
    )
    again = Decision.objects.filter(round=round)
    assert {d.message_id: d.supersedes_id for d in again} == first
    assert {(d.outcome, d.reason) for d in again} == {("tracked", "accepted_all")}
    assert TrackedEmail.objects.count() == COUNT
    # the current decision per message is the round's; the scan's stay in the log, superseded
    current = Decision.objects.filter(mailbox=phil, superseded_by__isnull=True)
    assert set(current.values_list("round", flat=True)) == {round.pk}
    assert Decision.objects.filter(mailbox=phil).count() == 2 * COUNT


def test_a_second_round_tracks_nothing_twice_and_untracks_nothing(phil):
    assert phil.user is not None
    do_set_personal_options(phil.user, track=TrackOption.ALL)
    scan_folder(phil.pk, "inbox")
    assert TrackedEmail.objects.count() == COUNT
    do_set_personal_options(phil.user, track=TrackOption.NONE)

    round = start_round(phil)
    run_all(round)

    again = Decision.objects.filter(round=round)
    assert again.count() == COUNT
    assert {(d.outcome, d.reason) for d in again} == {("already_tracked", "duplicate_message_id")}
    assert TrackedEmail.objects.count() == COUNT
    second = start_round(phil)
    run_all(second)
    assert TrackedEmail.objects.count() == COUNT
    # each round supersedes the current decision: the chain runs scan → round 1 → round 2
    assert set(Decision.objects.filter(round=second).values_list("supersedes__round", flat=True)) == {
        round.pk
    }


def test_a_round_reads_only_mail_received_after_its_date(phil):
    scan_folder(phil.pk, "inbox")
    received = sorted(
        d for d in Decision.objects.filter(mailbox=phil).values_list("received_at", flat=True) if d
    )
    since = received[len(received) // 2]
    round = start_round(phil, since)
    run_all(round)
    assert Decision.objects.filter(round=round).count() == len([r for r in received if r > since])
    assert not Decision.objects.filter(round=round, reason="before_watermark").exists()


def test_a_resumed_round_decides_each_message_once(phil):
    scan_folder(phil.pk, "inbox")
    round = start_round(phil)
    (run,) = ScanRun.objects.filter(round=round)
    run_round_folder(run.pk)
    # the job runs again (RQ's retry of a job whose worker died after the last page)
    ScanRun.objects.filter(pk=run.pk).update(status=ScanStatus.RUNNING, round_state="")
    run_round_folder(run.pk)
    assert Decision.objects.filter(round=round).count() == COUNT


def test_a_cancelled_round_stops_and_its_queued_runs_never_start(phil):
    scan_folder(phil.pk, "inbox")
    round = start_round(phil)
    assert do_cancel_round(round, now=timezone.now(), acting_user=None) == 1
    (run,) = ScanRun.objects.filter(round=round)
    assert run.status == ScanStatus.CANCELLED
    run_round_folder(run.pk)
    assert not Decision.objects.filter(round=round).exists()
    assert do_cancel_round(round, now=timezone.now(), acting_user=None) == 0


def test_a_second_round_of_the_same_folder_is_refused_while_one_is_pending(phil):
    start_round(phil)
    with pytest.raises(ActionError, match="still running"):
        start_round(phil)


@pytest.mark.parametrize(
    ("since", "folders", "message"),
    [
        (timezone.now() + timedelta(days=2), (), "in the future"),
        (LONG_AGO, ("sentitems",), "does not scan the folder sentitems"),
        (LONG_AGO, ("Inbox/Nowhere",), "does not scan the folder Inbox/Nowhere"),
    ],
)
def test_it_refuses_a_bad_request_and_starts_nothing(phil, since, folders, message):
    with pytest.raises(ActionError, match=message):
        start_round(phil, since, folders)
    assert not ReprocessRound.objects.exists()


def test_a_user_may_go_back_only_as_far_as_the_org_allows(phil):
    now = timezone.now()
    with pytest.raises(ActionError, match="last 30 days"):
        check_round([phil], now - timedelta(days=31), now=now, max_days_back=30)
    assert check_round([phil], now - timedelta(days=29), now=now, max_days_back=30).since < now


# -- the command -----------------------------------------------------------------------------------------


def test_the_command_prints_decision_json_with_what_each_supersedes(phil, cmd):
    scan_folder(phil.pk, "inbox")
    first = {d.message_id: d.pk for d in Decision.objects.filter(mailbox=phil)}
    rows = cmd("reprocess", ADDRESS, "--since", "1990-01-01", "--json").json_lines()
    assert len(rows) == COUNT
    round = ReprocessRound.objects.get()
    assert {r["message_id"]: r["supersedes"] for r in rows} == first
    assert {r["round"] for r in rows} == {round.pk}
    assert all(isinstance(r["decision_id"], int) for r in rows)


def test_the_command_summarises_a_round_without_json(phil, cmd):
    out = cmd("reprocess", ADDRESS, "--since", "1990-01-01T00:00+01:00", "--folder", "inbox").out
    assert f"{COUNT} message(s) decided again" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nobody@contoso.com", "--since", "2020-01-01"], "no mailbox 'nobody@contoso.com'"),
        ([ADDRESS, "--since", "yesterday"], "is not an ISO date"),
        ([ADDRESS, "--since", "2999-01-01"], "in the future"),
        ([ADDRESS, "--since", "2020-01-01", "--folder", "sentitems"], "does not scan the folder sentitems"),
    ],
)
def test_the_command_refuses_bad_input_in_one_line(phil, cmd, args, message):
    with pytest.raises(CommandError, match=message):
        cmd("reprocess", *args)
    assert not ReprocessRound.objects.exists()


def test_ingest_json_names_the_decision_and_its_round(phil, cmd, tmp_path):
    path = tmp_path / "one.eml"
    path.write_bytes(b"From: a@fabrikam.com\nTo: phil@contoso.com\nMessage-ID: <one@x>\nSubject: s\n\nhi\n")
    (row,) = cmd("ingest", "--mailbox", ADDRESS, "--folder", "inbox", "--json", str(path)).json_lines()
    assert row["decision_id"] == Decision.objects.get().pk
    assert (row["supersedes"], row["round"]) == (None, None)
    assert json.dumps(row)
