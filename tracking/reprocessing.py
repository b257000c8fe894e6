"""Reprocessing rounds (tracking-rules §3.6): which mailbox folders a round reads, and reading one of them.

A round reads each folder afresh from the server (a full sync with a sync state of its own, kept on its
run so that a killed worker's retry resumes after the last committed page), decides every message after
its `since` again under today's settings and options, and appends one decision per message naming the
one it supersedes. Cancelling takes effect between pages.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from django.utils import timezone
from django.utils.translation import gettext as _

from tracking.actions import (
    ActionError,
    RoundRequest,
    do_begin_round_run,
    do_finish_round_run,
    do_reset_round_state,
)
from tracking.actions.reprocessing import ACTIVE
from tracking.choices import IncomingMethod, ScanStatus
from tracking.context import load_rules, load_scan_rules, mailbox_for_scan
from tracking.decisions import OrgRules
from tracking.folders import folder_tracking_on, is_well_known, mapped_folders
from tracking.models import Mailbox, ReprocessRound, ScanRun
from tracking.pipeline import process_round_page
from tracking.scanning import Clock, folders_to_scan, reconnect_if_lost, source_for
from tracking.sources.base import MailSource, SourceError, SyncStateInvalid, attachment_fetcher
from tracking.sources.fetchahead import synced_pages

log = logging.getLogger(__name__)


def round_folders(mailbox: Mailbox, rules: OrgRules) -> list[str]:
    """The folders a round of this mailbox may read: those its scans read now."""
    folders = folders_to_scan(mailbox, rules)
    if folder_tracking_on(mailbox, rules):
        folders += [rule.folder for rule in mapped_folders(mailbox)]
    return folders


def check_round(
    mailboxes: Sequence[Mailbox],
    since: datetime,
    folders: Sequence[str] = (),
    *,
    now: datetime,
    max_days_back: int | None = None,
) -> RoundRequest:
    """Check a request for a round and say which folders of which mailboxes it reads; raises ActionError.

    `max_days_back` is a user's limit on their own mailbox (UserReprocessMaxDays); admins have none.
    """
    if not mailboxes:
        raise ActionError(_("Choose at least one mailbox to reprocess."))
    if since > now:
        raise ActionError(_("The date to reprocess from is in the future."))
    if max_days_back is not None and since < now - timedelta(days=max_days_back):
        raise ActionError(
            _("You can reprocess your mail of the last %(days)d days at most.") % {"days": max_days_back}
        )
    rules = load_rules()
    plan: list[tuple[Mailbox, list[str]]] = []
    for mailbox in mailboxes:
        if not mailbox.enabled or mailbox.incoming_method != IncomingMethod.SERVER_SIDE_SYNC:
            raise ActionError(
                _("%(mailbox)s is not enabled for server-side synchronization; Test & Enable it first.")
                % {"mailbox": mailbox.email_address}
            )
        scanned = round_folders(mailbox, rules)
        by_key = {f.lower(): f for f in scanned}
        chosen = []
        for folder in folders or scanned:
            found = by_key.get(folder.lower())
            if found is None:
                raise ActionError(
                    _("%(mailbox)s does not scan the folder %(folder)s (it scans: %(scanned)s).")
                    % {"mailbox": mailbox.email_address, "folder": folder, "scanned": ", ".join(scanned)}
                )
            if found not in chosen:
                chosen.append(found)
        busy = (
            ScanRun.objects.filter(mailbox=mailbox, folder__in=chosen, status__in=ACTIVE)
            .exclude(round=None)
            .values_list("folder", flat=True)
            .first()
        )
        if busy is not None:
            raise ActionError(
                _("A reprocessing round of %(mailbox)s / %(folder)s is still running; wait or cancel it.")
                % {"mailbox": mailbox.email_address, "folder": busy}
            )
        plan.append((mailbox, chosen))
    return RoundRequest(since=since, folders_by_mailbox=plan, folders_asked=list(folders))


def run_round_folder(
    run_id: int, *, source: MailSource | None = None, clock: Clock = timezone.now, job_id: str = ""
) -> ScanRun:
    """Read one folder of a round to the end (or resume it); raises SourceError after recording it."""
    run = ScanRun.objects.select_related("round").get(pk=run_id)
    round = run.round
    assert round is not None
    if run.status not in ACTIVE:
        return run  # finished, failed or cancelled before this (re)try of its job
    if _cancelled(round):
        do_finish_round_run(run, now=clock(), status=ScanStatus.CANCELLED)
        return _fresh(run)
    mailbox = mailbox_for_scan(run.mailbox_id)
    do_begin_round_run(run, now=clock(), job_id=job_id)
    source_folder = run.folder
    if not is_well_known(run.folder):
        rule = next((r for r in mapped_folders(mailbox) if r.folder.lower() == run.folder.lower()), None)
        if rule is None:
            do_finish_round_run(
                run, now=clock(), status=ScanStatus.FAILED, error="the folder tracking rule is gone"
            )
            return _fresh(run)
        source_folder = rule.source_folder
    rules = load_scan_rules(load_rules())
    try:
        source = source or source_for(mailbox)
        for attempt in (1, 2):
            try:
                # a whole folder read again: its pages after the first fetched ahead, as a first scan's are
                with synced_pages(source, source_folder, run.round_state) as pages:
                    for page in pages:
                        if _cancelled(round):
                            do_finish_round_run(run, now=clock(), status=ScanStatus.CANCELLED)
                            return _fresh(run)
                        process_round_page(
                            mailbox,
                            run.folder,
                            page.items,
                            run=run,
                            since=round.since,
                            now=clock(),
                            round_state=page.state,
                            rules=rules,
                            fetcher=attachment_fetcher(source),
                        )
                        run.round_state = page.state or run.round_state
                break
            except SyncStateInvalid:
                if attempt == 2:
                    raise
                do_reset_round_state(run)
    except SourceError as exc:
        do_finish_round_run(run, now=clock(), status=ScanStatus.FAILED, error=str(exc))
        log.warning("round %s failed mailbox=%s folder=%s error=%s", round.pk, mailbox, run.folder, exc)
        raise
    except Exception as exc:
        reconnect_if_lost()
        do_finish_round_run(run, now=clock(), status=ScanStatus.FAILED, error=f"{type(exc).__name__}: {exc}")
        raise
    do_finish_round_run(run, now=clock(), status=ScanStatus.SUCCEEDED)
    run = _fresh(run)
    log.info(
        "round %s mailbox=%s folder=%s tracked=%d already_tracked=%d not_tracked=%d failed=%d",
        round.pk,
        mailbox,
        run.folder,
        run.tracked,
        run.already_tracked,
        run.not_tracked,
        run.failed,
    )
    return run


def _cancelled(round: ReprocessRound) -> bool:
    return ReprocessRound.objects.filter(pk=round.pk, cancelled_at__isnull=False).exists()


def _fresh(run: ScanRun) -> ScanRun:
    run.refresh_from_db()
    return run
