"""Scanning a mailbox folder through its source, and Test & Enable.

The network is touched here and in tracking.sources only; every state change is an action. A scan
commits page by page (decisions, TrackedEmails and the folder's sync state together), so a crash
loses at most the page in flight and the next scan resumes after the last committed page.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from django.contrib.auth.models import User
from django.db import OperationalError, connection
from django.utils import timezone

from tracking.actions import (
    do_finish_cycle,
    do_finish_scan_run,
    do_mark_scan_failed,
    do_mark_scan_started,
    do_mark_scan_succeeded,
    do_record_cycle_failure,
    do_record_skipped_scan,
    do_record_test_result,
    do_reset_sync_state,
    do_set_scan_estimate,
    do_start_scan_run,
)
from tracking.choices import ErrorKind, Folder, IncomingMethod, ProfileKind, Reason
from tracking.context import ScanRules, load_rules, load_scan_rules, mailbox_for_scan
from tracking.crypto import SecretUnreadable
from tracking.decisions import OrgRules
from tracking.folders import folder_tracking_on, folders_after_hierarchy_sync, is_well_known, mapped_folders
from tracking.models import EmailServerProfile, FolderSyncState, Mailbox, ScanRun
from tracking.pipeline import process_page
from tracking.sources.base import (
    ConnectionSettings,
    MailSource,
    SourceError,
    SyncStateInvalid,
    attachment_fetcher,
)
from tracking.sources.fetchahead import synced_pages

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
NO_FOLDER_RULE = "no_active_folder_rule"  # a ScanRun note: the folder is neither well-known nor mapped


def connection_settings(mailbox: Mailbox) -> ConnectionSettings:
    return profile_connection_settings(mailbox.profile, mailbox.email_address)


def profile_connection_settings(profile: EmailServerProfile, address: str) -> ConnectionSettings:
    """How to reach `address` through `profile` (the address need not have a Mailbox row)."""
    try:
        secret = profile.get_secret()
    except SecretUnreadable:
        raise SourceError(
            f"the secret of server profile {profile.name!r} cannot be decrypted with the configured "
            "SYNCADMIN_ENCRYPTION_KEY; enter it again",
            kind=ErrorKind.CREDENTIALS,
            permanent=True,
        ) from None
    return ConnectionSettings(
        kind=profile.kind,
        mailbox=address,
        endpoint=profile.endpoint,
        auth_method=profile.auth_method,
        username=profile.username,
        secret=secret,
        tenant_id=profile.tenant_id,
        client_id=profile.client_id,
        authority=profile.authority,
        ca_bundle=profile.ca_bundle,
        use_impersonation=profile.use_impersonation,
        max_connections=profile.max_concurrent_connections,
    )


def source_for(mailbox: Mailbox, *, timeout: float | None = None) -> MailSource:
    """The source that reads this mailbox, by its profile's kind (`timeout`: a web page's shorter wait)."""
    settings = connection_settings(mailbox)
    if timeout is not None:
        settings = dataclasses.replace(settings, timeout=timeout)
    return source_of(settings)


def source_of(settings: ConnectionSettings) -> MailSource:
    """The source for these connection settings, by their kind."""
    kind = settings.kind
    if kind == ProfileKind.LOCAL:
        from tracking.sources.local import LocalSource

        return LocalSource(Path(settings.endpoint), settings.mailbox, settings.page_size)
    if kind == ProfileKind.EXCHANGE_EWS:
        from tracking.sources.ews import EwsSource

        return EwsSource(settings)
    if kind == ProfileKind.EXCHANGE_GRAPH:
        from tracking.sources.graph import GraphSource

        return GraphSource(settings)
    from tracking.sources.imap import ImapSource

    return ImapSource(settings)


def sent_items_refusal(mailbox: Mailbox, rules: OrgRules) -> Reason | None:
    """Why Sent Items of this mailbox are not scanned (tracking-rules §3.2), or None when they are."""
    if not rules.auto_track_sent_folder_items:
        return Reason.SENT_ITEMS_DISABLED
    if not mailbox.profile.is_exchange:
        return Reason.SENT_ITEMS_UNSUPPORTED_SERVER
    return None


def folders_to_scan(mailbox: Mailbox, rules: OrgRules) -> list[str]:
    folders = [Folder.INBOX.value]
    if sent_items_refusal(mailbox, rules) is None:
        folders.append(Folder.SENT_ITEMS.value)
    return folders


def scan_folder(
    mailbox_id: int,
    folder: str,
    *,
    source: MailSource | None = None,
    clock: Clock = timezone.now,
    on_page: Callable[[ScanRun], None] | None = None,
    job_id: str = "",
) -> ScanRun:
    """Scan one folder from its saved sync state to the end; raises SourceError after recording it."""
    mailbox = mailbox_for_scan(mailbox_id)
    rules = load_rules()
    if folder == Folder.SENT_ITEMS:
        refusal = sent_items_refusal(mailbox, rules)
        if refusal is not None:
            return do_record_skipped_scan(mailbox, folder, note=refusal.value, now=clock())
    source_folder = folder
    if not is_well_known(folder):
        # A mapped folder (§3.4): scanned under its display path, read from the server by its id.
        rule = next((r for r in mapped_folders(mailbox) if r.folder.lower() == folder.lower()), None)
        if rule is None or not folder_tracking_on(mailbox, rules):
            return do_record_skipped_scan(mailbox, folder, note=NO_FOLDER_RULE, now=clock())
        folder, source_folder = rule.folder, rule.source_folder
    run = do_start_scan_run(mailbox, folder, now=clock(), job_id=job_id)
    do_mark_scan_started(mailbox, now=run.started_at or clock())
    started = time.monotonic()
    try:
        source = source or source_for(mailbox)
        _sync(mailbox, folder, run, source, clock, on_page, load_scan_rules(rules), source_folder)
    except SourceError as exc:
        do_finish_scan_run(run, now=clock(), error=str(exc), error_kind=exc.kind)
        do_mark_scan_failed(mailbox, error=str(exc), kind=exc.kind, now=clock())
        log.warning(
            "scan failed mailbox=%s folder=%s kind=%s permanent=%s error=%s",
            mailbox,
            folder,
            exc.kind,
            exc.permanent,
            exc,
        )
        raise
    except Exception as exc:
        reconnect_if_lost()
        kind = ErrorKind.INTERNAL
        do_finish_scan_run(run, now=clock(), error=f"{type(exc).__name__}: {exc}", error_kind=kind)
        do_mark_scan_failed(
            mailbox, error=f"internal error: {type(exc).__name__}: {exc}", kind=kind, now=clock()
        )
        raise
    do_finish_scan_run(run, now=clock())
    do_mark_scan_succeeded(mailbox, now=clock())
    run.refresh_from_db()
    log.info(
        "scan mailbox=%s folder=%s tracked=%d already_tracked=%d not_tracked=%d failed=%d seconds=%.2f",
        mailbox,
        folder,
        run.tracked,
        run.already_tracked,
        run.not_tracked,
        run.failed,
        time.monotonic() - started,
    )
    return run


def run_push_scan(mailbox_id: int, folder: str, *, clock: Clock = timezone.now, job_id: str = "") -> str:
    """Scan one folder because the server said it changed (push): from its saved state, like a poll.

    The mailbox's schedule is left alone, so the safety-net poll still comes; a failure is recorded on the
    run and the mailbox as any scan's, and the next poll cycle retries or disables as its rules say.
    """
    mailbox = mailbox_for_scan(mailbox_id)
    rules = load_rules()
    if not mailbox.enabled or mailbox.incoming_method != IncomingMethod.SERVER_SIDE_SYNC:
        return "skipped: the mailbox is not enabled for server-side synchronization"
    if mailbox.needs_approval(rules):
        return "skipped: the mailbox's email address is not approved"
    try:
        run = scan_folder(mailbox_id, folder, clock=clock, job_id=job_id)
    except SourceError as exc:
        return f"failed: {exc}"
    return f"scanned {folder}: {run.tracked} tracked, {run.not_tracked} not tracked"


def reconnect_if_lost() -> None:
    """Drop a connection the database has closed, so that the next query opens a new one.

    Django does that only at the start and end of a web request; a job has neither, and recording why a
    scan failed must not fail in turn on the connection that failed it.
    """
    if connection.connection is not None and not connection.is_usable():
        connection.close()


def _sync(
    mailbox: Mailbox,
    folder: str,
    run: ScanRun,
    source: MailSource,
    clock: Clock,
    on_page: Callable[[ScanRun], None] | None,
    rules: ScanRules,
    source_folder: str,
) -> None:
    # The start date and rules a scan started with hold for all its pages (see process_page).
    start_date = mailbox.configured_start_date()
    for attempt in (1, 2):
        state = (
            FolderSyncState.objects.filter(mailbox=mailbox, folder=folder)
            .values_list("state", flat=True)
            .first()
        )
        try:
            with synced_pages(source, source_folder, state or "") as pages:
                for page in pages:
                    if page.estimated_total is not None and run.items_total is None:
                        do_set_scan_estimate(run, page.estimated_total)
                    process_page(
                        mailbox,
                        folder,
                        page.items,
                        scan_run=run,
                        now=clock(),
                        sync_state=page.state,
                        start_date=start_date,
                        rules=rules,
                        fetcher=attachment_fetcher(source),
                    )
                    if on_page is not None:
                        run.refresh_from_db()
                        on_page(run)
            return
        except SyncStateInvalid:
            # Also when the scan began without a state: its first pages saved one, which the server refused.
            if attempt == 2:
                raise
            # Decisions and TrackedEmails are unique per message, so replaying the whole folder is harmless.
            log.info("sync state of %s/%s refused by the server; full resync", mailbox, folder)
            do_reset_sync_state(mailbox, folder)


def run_test_and_enable(
    mailbox_id: int,
    *,
    source: MailSource | None = None,
    clock: Clock = timezone.now,
    acting_user: User | None = None,
) -> tuple[bool, str]:
    """Connect, check the folders to scan can be read, and enable the mailbox; (ok, words for the admin)."""
    mailbox = mailbox_for_scan(mailbox_id)
    rules = load_rules()
    folders = folders_to_scan(mailbox, rules)
    kind: ErrorKind | None = None
    if mailbox.needs_approval(rules):
        ok, message = False, "the mailbox's email address is not approved; an admin must approve it first"
        kind = ErrorKind.NOT_APPROVED
    else:
        try:
            (source or source_for(mailbox)).test_connection(folders)
        except SourceError as exc:
            ok, message, kind = False, str(exc), exc.kind
        else:
            ok, message = True, f"connected; {' and '.join(folders)} can be read"
    do_record_test_result(mailbox, ok=ok, message=message, kind=kind, now=clock(), acting_user=acting_user)
    return ok, message


def test_profile_connection(profile: EmailServerProfile, address: str) -> tuple[bool, str]:
    """Sign in through the profile and read one folder of `address`: (ok, words for the admin).

    Test connection on the profile page: nothing is stored, no Mailbox row is needed.
    """
    try:
        source_of(profile_connection_settings(profile, address)).test_connection([Folder.INBOX.value])
    except SourceError as exc:
        return False, str(exc)
    return True, f"connected; the inbox of {address} can be read"


def run_scan_cycle(
    mailbox_id: int,
    *,
    folder: str | None = None,
    clock: Clock = timezone.now,
    job_id: str = "",
    on_page: Callable[[ScanRun], None] | None = None,
    reschedule: bool = True,
) -> str:
    """One scan cycle of a mailbox (its folders in turn, or just `folder`), then its next run (tracking-rules
    §9); a push scan (`reschedule` False) leaves the next run as it is.

    Returns what happened, in words, for the job's result and the logs.
    """
    mailbox = mailbox_for_scan(mailbox_id)
    rules = load_rules()
    # The mailbox may have changed since the scan was queued (tracking-rules §3.1, §9).
    if not mailbox.enabled or mailbox.incoming_method != IncomingMethod.SERVER_SIDE_SYNC:
        return "skipped: the mailbox is not enabled for server-side synchronization"
    if mailbox.needs_approval(rules):
        return do_record_cycle_failure(
            mailbox_id,
            rules,
            error="the mailbox's email address is no longer approved",
            kind=ErrorKind.NOT_APPROVED,
            permanent=True,
            retry_after=None,
            now=clock(),
        )
    folders = [folder] if folder else folders_to_scan(mailbox, rules)
    try:
        source = source_for(mailbox)
        if folder is None:
            folders += folders_after_hierarchy_sync(mailbox, rules, now=clock(), source=source)
        for name in folders:
            scan_folder(mailbox_id, name, source=source, clock=clock, job_id=job_id, on_page=on_page)
    except SourceError as exc:
        return do_record_cycle_failure(
            mailbox_id,
            rules,
            error=str(exc),
            kind=exc.kind,
            permanent=exc.permanent,
            retry_after=exc.retry_after,
            now=clock(),
        )
    except OperationalError as exc:
        # The database went away under the scan (a restart, a failover, a cut connection): the committed
        # pages stay and the page in flight was rolled back whole, so this is a transient failure, retried
        # after TransientFailureRetryMinutes rather than when the claim's lease runs out an hour later.
        reconnect_if_lost()
        first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
        return do_record_cycle_failure(
            mailbox_id,
            rules,
            error=f"the database connection failed: {first_line}",
            kind=ErrorKind.INTERNAL,
            permanent=False,
            retry_after=None,
            now=clock(),
        )
    if reschedule:
        do_finish_cycle(mailbox_id, rules, now=clock())
    return f"scanned {', '.join(folders)}"
