"""Every state change of SyncAdmin: named, atomic, audited where DOMAIN asks for it.

`do_*` performs a change that its caller has validated; `check_*` validates as well and raises
ActionError (a message meant for the person who asked) without changing anything.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import Case, F, Model, Q, QuerySet, Value, When
from django.utils import timezone
from django.utils.translation import gettext

from tracking.bulk import bulk_insert
from tracking.choices import (
    AlertLevel,
    Approval,
    AuthMethod,
    Folder,
    IncomingMethod,
    MailboxStatus,
    Outcome,
    ProfileKind,
    RecordKind,
    ScanSource,
    ScanStatus,
    TrackOption,
)
from tracking.decisions import DecisionResult, OrgRules, format_tracking_token
from tracking.messages import ParsedMessage, message_snapshot, normalize_address
from tracking.models import (
    Alert,
    AuditEvent,
    CrmRecord,
    Decision,
    EmailHash,
    EmailServerProfile,
    ExclusionEntry,
    FolderSyncState,
    FolderTrackingRule,
    Mailbox,
    OrgSettings,
    PersonalOptions,
    Queue,
    ScanRun,
    TrackedEmail,
)
from tracking.orgsettings import SettingError, SettingValue, spec_for


class ActionError(Exception):
    """A request that cannot be carried out; the message says why, in words for the requester."""


def _too_long(model: type[Model], field: str, value: str) -> str | None:
    """Why a value cannot be stored in model.field, or None (SQLite would store it anyway)."""
    limit = getattr(model._meta.get_field(field), "max_length", None)
    if limit is not None and len(value) > limit:
        return f"{field.replace('_', ' ')} is longer than {limit} characters"
    return None


def _check_lengths(model: type[Model], values: dict[str, str]) -> None:
    for name, value in values.items():
        problem = _too_long(model, name, value)
        if problem:
            raise ActionError(problem)


def _actor_label(acting_user: User | None, actor_label: str) -> str:
    return acting_user.get_username() if acting_user is not None else actor_label


def _utc_text(value: datetime | None) -> str | None:
    """A date and time as the audit list stores it: ISO 8601 in UTC."""
    return value.astimezone(UTC).isoformat() if value is not None else None


def _audit(
    action: str, target: str, old: object, new: object, *, acting_user: User | None, actor_label: str
) -> None:
    AuditEvent.objects.create(
        actor=acting_user,
        actor_label=_actor_label(acting_user, actor_label),
        action=action,
        target=target,
        old_value="" if old is None else str(old),
        new_value="" if new is None else str(new),
    )


# ---------------------------------------------------------------------------------------------
# Org settings and personal options
# ---------------------------------------------------------------------------------------------


@transaction.atomic
def check_set_org_setting(
    name: str, raw_value: str, *, acting_user: User | None = None, actor_label: str = "cli"
) -> tuple[SettingValue, SettingValue]:
    """Validate and store one org setting; returns (old, new). Raises ActionError, changing nothing."""
    try:
        spec = spec_for(name)
        value = spec.parse(raw_value)
    except SettingError as exc:
        raise ActionError(str(exc)) from None
    if "\x00" in raw_value:  # PostgreSQL cannot store it; SQLite would, and the two must agree
        raise ActionError(f"{spec.name}: a value must not contain NUL characters")
    org = OrgSettings.objects.select_for_update().get_or_create(pk=1)[0]
    old: SettingValue = getattr(org, spec.field)
    if old != value:
        setattr(org, spec.field, value)
        org.save(update_fields=[spec.field])
        _audit(
            "orgsetting_changed",
            spec.name,
            spec.format(old),
            spec.format(value),
            acting_user=acting_user,
            actor_label=actor_label,
        )
    return old, value


def personal_options_of(user: User) -> PersonalOptions:
    return PersonalOptions.objects.get_or_create(user=user)[0]


@transaction.atomic
def do_set_personal_options(
    user: User,
    *,
    track: int | None = None,
    auto_create: str | None = None,
    allow_send_on_behalf: bool | None = None,
    time_zone: str | None = None,
    rows_per_page: int | None = None,
    language: str | None = None,
    acting_user: User | None = None,
    actor_label: str = "cli",
) -> PersonalOptions:
    options = PersonalOptions.objects.select_for_update().get_or_create(user=user)[0]
    changes: dict[str, object] = {
        "track": track,
        "auto_create": auto_create,
        "allow_send_on_behalf": allow_send_on_behalf,
        "time_zone": time_zone,
        "rows_per_page": rows_per_page,
        "language": language,
    }
    changed = []
    for attr, value in changes.items():
        if value is None or getattr(options, attr) == value:
            continue
        _audit(
            "personal_options_changed",
            f"{user.get_username()}.{attr}",
            getattr(options, attr),
            value,
            acting_user=acting_user,
            actor_label=actor_label,
        )
        setattr(options, attr, value)
        changed.append(attr)
    if changed:
        options.save(update_fields=changed)
    return options


@transaction.atomic
def do_reserve_tracking_token(user: User, rules: OrgRules) -> str:
    """The next tracking token of a user (for mail sent from SyncAdmin); the counter wraps to 0."""
    options = PersonalOptions.objects.select_for_update().get_or_create(user=user)[0]
    token = format_tracking_token(rules, user.pk, options.next_tracking_number)
    options.next_tracking_number = (options.next_tracking_number + 1) % (
        10**rules.tracking_token_counter_digits
    )
    options.save(update_fields=["next_tracking_number"])
    return token


# ---------------------------------------------------------------------------------------------
# Profiles, queues and mailboxes
# ---------------------------------------------------------------------------------------------


def _check_profile_values(
    *,
    name: str,
    kind: str,
    auth_method: str,
    max_concurrent_connections: int,
    **text: str,
) -> None:
    """What every server profile must satisfy, new or edited; raises ActionError."""
    if kind not in ProfileKind.values:
        raise ActionError(f"unknown profile kind {kind!r}; use one of {', '.join(ProfileKind.values)}")
    if auth_method not in AuthMethod.values:
        raise ActionError(f"unknown auth method {auth_method!r}; use one of {', '.join(AuthMethod.values)}")
    if not 1 <= max_concurrent_connections <= 300:
        raise ActionError("max concurrent connections must be from 1 to 300")
    if not name.strip():
        raise ActionError("a server profile needs a name")
    _check_lengths(EmailServerProfile, {"name": name, **text})
    _check_endpoint(kind, text.get("endpoint", "").strip())


# The URL schemes each kind of server connects with; an EWS endpoint may also be a bare host name.
ENDPOINT_SCHEMES = {
    ProfileKind.EXCHANGE_EWS: ("https", "http"),
    ProfileKind.EXCHANGE_GRAPH: ("https",),
    ProfileKind.IMAP: ("imaps", "imap"),
}


def _check_endpoint(kind: str, endpoint: str) -> None:
    """An endpoint, when given, must be a URL its kind can connect to; a local folder is checked when
    the mailbox is tested, since it may be made after the profile."""
    schemes = ENDPOINT_SCHEMES.get(ProfileKind(kind))
    if not endpoint or schemes is None:
        return
    if kind == ProfileKind.EXCHANGE_EWS and "://" not in endpoint:
        endpoint = "https://" + endpoint
    parts = urlsplit(endpoint)
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
    if parts.scheme.lower() not in schemes or not parts.hostname or not port_ok:
        wanted = " or ".join(f"{scheme}://host" for scheme in schemes)
        raise ActionError(f"the endpoint {endpoint!r} is not a {wanted} URL, which a {kind} profile needs")


@transaction.atomic
def check_add_profile(
    name: str,
    kind: str,
    *,
    endpoint: str = "",
    auth_method: str = AuthMethod.NONE,
    username: str = "",
    tenant_id: str = "",
    client_id: str = "",
    authority: str = "",
    secret: str = "",
    ca_bundle: str = "",
    use_impersonation: bool = False,
    process_emails_received_after: datetime | None = None,
    max_concurrent_connections: int = 10,
    acting_user: User | None = None,
    actor_label: str = "cli",
) -> EmailServerProfile:
    _check_profile_values(
        name=name,
        kind=kind,
        endpoint=endpoint,
        auth_method=auth_method,
        username=username,
        tenant_id=tenant_id,
        client_id=client_id,
        authority=authority,
        ca_bundle=ca_bundle,
        max_concurrent_connections=max_concurrent_connections,
    )
    if EmailServerProfile.objects.filter(name=name).exists():
        raise ActionError(f"a server profile named {name!r} already exists")
    profile = EmailServerProfile(
        name=name,
        kind=kind,
        endpoint=endpoint,
        auth_method=auth_method,
        username=username,
        tenant_id=tenant_id,
        client_id=client_id,
        authority=authority,
        ca_bundle=ca_bundle,
        use_impersonation=use_impersonation,
        process_emails_received_after=process_emails_received_after,
        max_concurrent_connections=max_concurrent_connections,
    )
    profile.set_secret(secret)
    profile.save()
    _audit("profile_added", name, None, kind, acting_user=acting_user, actor_label=actor_label)
    return profile


# The fields of a server profile the web form edits, in the order the audit lists their changes.
PROFILE_FIELDS = (
    "name",
    "kind",
    "endpoint",
    "auth_method",
    "username",
    "tenant_id",
    "client_id",
    "authority",
    "ca_bundle",
    "use_impersonation",
    "process_emails_received_after",
    "max_concurrent_connections",
)


@transaction.atomic
def check_update_profile(
    profile: EmailServerProfile,
    *,
    name: str,
    kind: str,
    endpoint: str = "",
    auth_method: str = AuthMethod.NONE,
    username: str = "",
    tenant_id: str = "",
    client_id: str = "",
    authority: str = "",
    ca_bundle: str = "",
    use_impersonation: bool = False,
    process_emails_received_after: datetime | None = None,
    max_concurrent_connections: int = 10,
    secret: str | None = None,
    clear_secret: bool = False,
    acting_user: User | None = None,
    actor_label: str = "cli",
) -> list[str]:
    """Change a server profile; returns the names of the fields that changed ("secret" among them).

    The secret is write-only: None (or "") keeps it, a new value replaces it, clear_secret removes
    it. Each changed field is audited with its old and new value, except the secret, whose audit
    row only says that it changed. Raises ActionError, changing nothing.
    """
    if secret and clear_secret:
        raise ActionError("enter a new secret or clear it, not both")
    _check_profile_values(
        name=name,
        kind=kind,
        endpoint=endpoint,
        auth_method=auth_method,
        username=username,
        tenant_id=tenant_id,
        client_id=client_id,
        authority=authority,
        ca_bundle=ca_bundle,
        max_concurrent_connections=max_concurrent_connections,
    )
    profile = EmailServerProfile.objects.select_for_update().get(pk=profile.pk)
    if name != profile.name and EmailServerProfile.objects.filter(name=name).exists():
        raise ActionError(f"a server profile named {name!r} already exists")
    if kind != profile.kind and profile.mailboxes.exists():
        # A mailbox's sync state is a token of one kind of server; it means nothing to another.
        raise ActionError("the kind of a server profile cannot change while mailboxes use it")
    new_values: dict[str, object] = {
        "name": name,
        "kind": kind,
        "endpoint": endpoint,
        "auth_method": auth_method,
        "username": username,
        "tenant_id": tenant_id,
        "client_id": client_id,
        "authority": authority,
        "ca_bundle": ca_bundle,
        "use_impersonation": use_impersonation,
        "process_emails_received_after": process_emails_received_after,
        "max_concurrent_connections": max_concurrent_connections,
    }
    old_name = profile.name
    changed = []
    for attr in PROFILE_FIELDS:
        old, new = getattr(profile, attr), new_values[attr]
        if old == new:
            continue
        _audit(
            "profile_changed",
            f"{old_name}.{attr}",
            _utc_text(old) if isinstance(old, datetime) else old,
            _utc_text(new) if isinstance(new, datetime) else new,
            acting_user=acting_user,
            actor_label=actor_label,
        )
        setattr(profile, attr, new)
        changed.append(attr)
    if secret or (clear_secret and profile.has_secret):
        had_secret = profile.has_secret
        profile.set_secret("" if clear_secret else (secret or ""))
        _audit(
            "profile_changed",
            f"{old_name}.secret",
            "set" if had_secret else "not set",
            "secret cleared" if clear_secret else "secret changed",
            acting_user=acting_user,
            actor_label=actor_label,
        )
        changed.append("secret_encrypted")
    if changed:
        profile.save(update_fields=changed)
    return ["secret" if f == "secret_encrypted" else f for f in changed]


@transaction.atomic
def check_add_mailbox(
    address: str,
    *,
    profile_name: str,
    username: str | None = None,
    create_user: bool = False,
    queue_name: str | None = None,
    approve: bool = False,
    track: int | None = None,
    acting_user: User | None = None,
    actor_label: str = "cli",
) -> Mailbox:
    email = normalize_address(address)
    if email is None:
        raise ActionError(f"{address!r} is not an email address")
    if (username is None) == (queue_name is None):
        raise ActionError("a mailbox belongs to exactly one user or one queue")
    _check_lengths(Mailbox, {"email_address": email})
    if username is not None:
        _check_lengths(get_user_model(), {"username": username})
    if queue_name is not None:
        _check_lengths(Queue, {"name": queue_name})
    if track is not None and track not in TrackOption.values:
        raise ActionError("track must be 0–4")
    profile = EmailServerProfile.objects.filter(name=profile_name).first()
    if profile is None:
        raise ActionError(f"no server profile named {profile_name!r}; add it with 'profile add'")
    if Mailbox.objects.filter(email_address=email).exists():
        raise ActionError(f"a mailbox for {email} already exists")
    mailbox = Mailbox(
        email_address=email, profile=profile, approval=Approval.APPROVED if approve else Approval.PENDING
    )
    if username is not None:
        User = get_user_model()
        user = User.objects.filter(username=username).first()
        if user is None:
            if not create_user:
                raise ActionError(f"no user named {username!r}; pass --create-user to create one")
            user = User.objects.create_user(username=username, email=email)
        elif Mailbox.objects.filter(user=user).exists():
            raise ActionError(f"user {username!r} already has a mailbox")
        if not user.email:
            user.email = email
            user.save(update_fields=["email"])
        mailbox.user = user
        if track is not None:
            do_set_personal_options(user, track=track, acting_user=acting_user, actor_label=actor_label)
    else:
        assert queue_name is not None
        queue, created = Queue.objects.get_or_create(name=queue_name, defaults={"email": email})
        if not created and Mailbox.objects.filter(queue=queue).exists():
            raise ActionError(f"queue {queue_name!r} already has a mailbox")
        if track is not None and queue.track != track:
            queue.track = track
            queue.save(update_fields=["track"])
        mailbox.queue = queue
    mailbox.save()
    _audit(
        "mailbox_added",
        email,
        None,
        f"profile={profile.name}",
        acting_user=acting_user,
        actor_label=actor_label,
    )
    if approve:
        _audit(
            "mailbox_approved",
            email,
            Approval.PENDING,
            Approval.APPROVED,
            acting_user=acting_user,
            actor_label=actor_label,
        )
    return mailbox


# ---------------------------------------------------------------------------------------------
# CRM directory import
# ---------------------------------------------------------------------------------------------


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)


_TRUE_WORDS = {"", "1", "true", "yes", "active"}
_FALSE_WORDS = {"0", "false", "no", "inactive"}


@transaction.atomic
def check_import_records(kind: str, text: str) -> ImportReport:
    """Create or update CRM records from CSV (header name,email[,email2,email3,owner,kind,active]).

    A row is matched to an existing record of the same kind by name and primary email; a bad row
    is rejected with its line number and reason, and the good rows are still imported.
    """
    if kind not in RecordKind.values:
        raise ActionError(f"unknown record kind {kind!r}; use one of {', '.join(RecordKind.values)}")
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    missing = {"name", "email"} - set(header)
    if missing:
        raise ActionError(f"the CSV header must have name and email (missing: {', '.join(sorted(missing))})")
    unknown = set(header) - {"name", "email", "email2", "email3", "owner", "kind", "active"}
    if unknown:
        raise ActionError(f"unknown CSV column(s): {', '.join(sorted(unknown))}")
    reader.fieldnames = header
    User = get_user_model()
    owners = {u.get_username(): u for u in User.objects.all()}
    report = ImportReport()
    for row in reader:
        line = reader.line_num
        values = {k: (v or "").strip() for k, v in row.items() if k is not None}
        if any("\x00" in v for v in values.values()):
            # PostgreSQL refuses NUL in text: an error mid-import, after the rows before it were saved
            report.rejected.append((line, "a value holds a NUL character"))
            continue
        name = values.get("name", "")
        if not name:
            report.rejected.append((line, "name is empty"))
            continue
        emails = []
        bad = None
        for col in ("email", "email2", "email3"):
            raw = values.get(col, "")
            if not raw:
                continue
            addr = normalize_address(raw)
            if addr is None:
                bad = f"{col} {raw!r} is not an email address"
                break
            emails.append(addr)
        if bad:
            report.rejected.append((line, bad))
            continue
        if not emails:
            report.rejected.append((line, "email is empty"))
            continue
        owner = None
        if values.get("owner"):
            owner = owners.get(values["owner"])
            if owner is None:
                report.rejected.append((line, f"owner {values['owner']!r} is not a user"))
                continue
        active_word = values.get("active", "").lower()
        if active_word not in _TRUE_WORDS | _FALSE_WORDS:
            report.rejected.append((line, f"active {values['active']!r} is not true/false"))
            continue
        other_kind = values.get("kind", "")
        if other_kind and kind != RecordKind.OTHER:
            report.rejected.append((line, "the kind column is only for 'other' records"))
            continue
        too_long = _too_long(CrmRecord, "name", name) or _too_long(CrmRecord, "other_kind", other_kind)
        if too_long:
            report.rejected.append((line, too_long.replace("other kind", "kind")))
            continue
        fields = {
            "email1": emails[0],
            "email2": emails[1] if len(emails) > 1 else "",
            "email3": emails[2] if len(emails) > 2 else "",
            "owner": owner,
            "active": active_word not in _FALSE_WORDS,
            "other_kind": other_kind,
        }
        existing = CrmRecord.objects.filter(kind=kind, name=name, email1=emails[0]).first()
        if existing is None:
            CrmRecord.objects.create(kind=kind, name=name, **fields)
            report.created += 1
        else:
            for attr, value in fields.items():
                setattr(existing, attr, value)
            existing.save(update_fields=list(fields))
            report.updated += 1
    return report


# ---------------------------------------------------------------------------------------------
# Scans: runs, page commits, watermark
# ---------------------------------------------------------------------------------------------


def do_start_scan_run(
    mailbox: Mailbox, folder: str, *, source: str = ScanSource.SCAN, now: datetime, job_id: str = ""
) -> ScanRun:
    # Scans of one mailbox never overlap, so a run still "running" now was cut short (its worker died).
    ScanRun.objects.filter(mailbox=mailbox, folder=folder, status=ScanStatus.RUNNING).update(
        status=ScanStatus.FAILED, finished_at=now, error="interrupted: the worker stopped during the scan"
    )
    return ScanRun.objects.create(
        mailbox=mailbox,
        folder=folder,
        source=source,
        status=ScanStatus.RUNNING,
        started_at=now,
        job_id=job_id,
    )


def do_record_skipped_scan(mailbox: Mailbox, folder: str, *, note: str, now: datetime) -> ScanRun:
    """A folder that is not scanned still leaves a row saying why (e.g. sent_items_unsupported_server)."""
    return ScanRun.objects.create(
        mailbox=mailbox, folder=folder, status=ScanStatus.SKIPPED, started_at=now, finished_at=now, note=note
    )


def do_set_scan_estimate(run: ScanRun, total: int) -> None:
    run.items_total = total
    run.save(update_fields=["items_total"])


def do_reset_sync_state(mailbox: Mailbox, folder: str) -> None:
    """Forget a folder's sync state: the next scan reads it from the start (nothing is duplicated)."""
    FolderSyncState.objects.filter(mailbox=mailbox, folder=folder).update(state="", pending_watermark=None)


def do_mark_scan_started(mailbox: Mailbox, *, now: datetime) -> None:
    Mailbox.objects.filter(pk=mailbox.pk).update(last_sync_started_at=now)


def do_mark_scan_succeeded(mailbox: Mailbox, *, now: datetime) -> None:
    Mailbox.objects.filter(pk=mailbox.pk).update(
        incoming_status=MailboxStatus.SUCCESS,
        last_sync_succeeded_at=now,
        last_error="",
        transient_failure_count=0,
    )


def do_mark_scan_failed(mailbox: Mailbox, *, error: str, now: datetime) -> None:
    Mailbox.objects.filter(pk=mailbox.pk).update(incoming_status=MailboxStatus.FAILURE, last_error=error)


@transaction.atomic
def do_record_test_result(
    mailbox: Mailbox,
    *,
    ok: bool,
    message: str,
    now: datetime,
    acting_user: User | None = None,
    actor_label: str = "cli",
) -> None:
    """Test & Enable's outcome: enable (or not), set the status, and leave an alert saying what happened."""
    mailbox = Mailbox.objects.select_for_update().get(pk=mailbox.pk)
    mailbox.enabled = ok
    mailbox.incoming_status = MailboxStatus.SUCCESS if ok else MailboxStatus.FAILURE
    mailbox.last_error = "" if ok else message
    mailbox.transient_failure_count = 0
    mailbox.next_run_at = now if ok else None
    mailbox.save(
        update_fields=["enabled", "incoming_status", "last_error", "transient_failure_count", "next_run_at"]
    )
    Alert.objects.create(
        mailbox=mailbox,
        level=AlertLevel.INFORMATION if ok else AlertLevel.ERROR,
        message=f"Test & Enable {'succeeded' if ok else 'failed'}: {message}",
    )
    outcome = "enabled" if ok else f"failed: {message}"
    _audit(
        "mailbox_tested",
        mailbox.email_address,
        None,
        outcome,
        acting_user=acting_user,
        actor_label=actor_label,
    )


@transaction.atomic
def do_approve_mailbox(
    mailbox: Mailbox, *, approve: bool = True, acting_user: User | None = None, actor_label: str = "cli"
) -> None:
    new = Approval.APPROVED if approve else Approval.REJECTED
    if mailbox.approval == new:
        return
    old = mailbox.approval
    mailbox.approval = new
    mailbox.save(update_fields=["approval"])
    action = "mailbox_approved" if approve else "mailbox_rejected"
    _audit(action, mailbox.email_address, old, new, acting_user=acting_user, actor_label=actor_label)


# ---------------------------------------------------------------------------------------------
# Web UI (issue 5): admin actions on one mailbox (the mailbox page)
# ---------------------------------------------------------------------------------------------


@transaction.atomic
def do_disable_mailbox(
    mailbox: Mailbox, *, acting_user: User | None = None, actor_label: str = "cli"
) -> bool:
    """Stop scanning a mailbox until Test & Enable enables it again; False if it was not enabled."""
    mailbox = Mailbox.objects.select_for_update().get(pk=mailbox.pk)
    if not mailbox.enabled:
        return False
    mailbox.enabled = False
    mailbox.next_run_at = None
    mailbox.save(update_fields=["enabled", "next_run_at"])
    who = _actor_label(acting_user, actor_label)
    Alert.objects.create(
        mailbox=mailbox,
        level=AlertLevel.INFORMATION,
        message=f"Mailbox disabled by {who}. Run Test & Enable to scan it again.",
    )
    _audit(
        "mailbox_disabled",
        mailbox.email_address,
        "enabled",
        "disabled",
        acting_user=acting_user,
        actor_label=actor_label,
    )
    return True


@transaction.atomic
def do_set_mailbox_watermark(
    mailbox: Mailbox, value: datetime | None, *, acting_user: User | None = None, actor_label: str = "cli"
) -> None:
    """Set (or clear, with None) the mailbox's "process emails received after"."""
    mailbox = Mailbox.objects.select_for_update().get(pk=mailbox.pk)
    old = mailbox.process_emails_received_after
    if old == value:
        return
    mailbox.process_emails_received_after = value
    mailbox.save(update_fields=["process_emails_received_after"])
    _audit(
        "mailbox_watermark_changed",
        mailbox.email_address,
        _utc_text(old),
        _utc_text(value),
        acting_user=acting_user,
        actor_label=actor_label,
    )


@transaction.atomic
def do_reset_mailbox_sync_state(
    mailbox: Mailbox, folder: str | None = None, *, acting_user: User | None = None, actor_label: str = "cli"
) -> list[str]:
    """An admin's reset of one folder's sync state (or every folder's, folder None); audited per folder.

    Returns the folders whose state was reset (those that had one).
    """
    states = FolderSyncState.objects.filter(mailbox=mailbox).order_by("folder")
    if folder is not None:
        states = states.filter(folder=folder)
    folders = list(states.values_list("folder", flat=True))
    for name in folders:
        do_reset_sync_state(mailbox, name)
        _audit(
            "mailbox_sync_state_reset",
            f"{mailbox.email_address}/{name}",
            None,
            "reset",
            acting_user=acting_user,
            actor_label=actor_label,
        )
    return folders


def do_note_mailbox_job(
    mailbox: Mailbox, job: str, *, acting_user: User | None = None, actor_label: str = "cli"
) -> None:
    """Audit that someone queued a job for a mailbox ("test" for Test & Enable, "scan" for Scan now).

    The job records its own result; this row says who asked for it.
    """
    _audit(
        f"mailbox_{job}_queued",
        mailbox.email_address,
        None,
        "queued",
        acting_user=acting_user,
        actor_label=actor_label,
    )


@transaction.atomic
def do_finish_scan_run(run: ScanRun, *, now: datetime, error: str = "") -> None:
    """Close a run; a successful run makes the folder's pending watermark its watermark."""
    run.status = ScanStatus.FAILED if error else ScanStatus.SUCCEEDED
    run.finished_at = now
    run.error = error
    run.save(update_fields=["status", "finished_at", "error"])
    if error:
        return
    state = (
        FolderSyncState.objects.select_for_update()
        .filter(mailbox_id=run.mailbox_id, folder=run.folder)
        .first()
    )
    if state is None or state.pending_watermark is None:
        return
    if state.watermark is None or state.pending_watermark > state.watermark:
        state.watermark = state.pending_watermark
    state.pending_watermark = None
    state.save(update_fields=["watermark", "pending_watermark", "updated_at"])


def _accepting_fields(res: DecisionResult) -> dict[str, object]:
    a = res.accepting
    if a is None:
        return {"accepting_kind": "", "accepting_id": None, "accepting_name": "", "accepting_email": ""}
    return {
        "accepting_kind": a.kind,
        "accepting_id": a.id,
        "accepting_name": a.name,
        "accepting_email": a.email,
    }


@transaction.atomic
def do_commit_page(
    mailbox: Mailbox,
    folder: str,
    results: Sequence[DecisionResult],
    *,
    scan_run: ScanRun | None,
    now: datetime,
    sync_state: str | None = None,
    manual: bool = False,
) -> list[Decision]:
    """Write one page: auto-created records, TrackedEmails, hashes, Decisions, counts, sync state.

    One transaction, so a crash loses at most the page in flight; the unique constraints on
    Decision and TrackedEmail turn a replayed page into an IntegrityError, never a duplicate.
    """
    # Auto-created senders, one per address even if several messages asked.
    wanted = {r.auto_create.address: r.auto_create for r in results if r.auto_create is not None}
    if wanted:
        CrmRecord.objects.bulk_create(
            [
                CrmRecord(kind=a.kind, name=a.name[:300], email1=a.address, owner_id=a.owner_user_id)
                for a in wanted.values()
            ]
        )

    # TrackedEmails; provisional keys (negative, in-batch) map to the ids just created.
    positions = [
        pos
        for pos, r in enumerate(results)
        if r.outcome == Outcome.TRACKED and isinstance(r.message, ParsedMessage)
    ]
    tracked_results = [results[pos] for pos in positions]
    emails: list[TrackedEmail] = []
    for res in tracked_results:
        msg = res.message
        assert isinstance(msg, ParsedMessage)
        parent = res.correlated
        emails.append(
            TrackedEmail(
                message_id=msg.message_id,
                direction=res.direction,
                subject=msg.subject,
                sender=msg.sender.address if msg.sender else "",
                sender_name=(msg.sender.name if msg.sender else "")[:300],
                recipients=[[h, a.address] for h, a in msg.recipients],
                sent_at=msg.sent_at,
                in_reply_to=" ".join(msg.in_reply_to),
                references=" ".join(msg.references),
                conversation_index=msg.conversation_index,
                tracking_token=res.tracking_token or "",
                regarding_id=res.regarding.id if res.regarding else None,
                owner_id=res.owner_user_id,
                receiving_mailbox=mailbox,
                correlation_method=res.correlation_method or "",
                correlated_email_id=parent.key if parent is not None and parent.key > 0 else None,
                **_accepting_fields(res),
            )
        )
    bulk_insert(emails)
    by_position = {-(pos + 1): e for pos, e in zip(positions, emails, strict=True)}
    late_links = []
    for res, email in zip(tracked_results, emails, strict=True):
        if res.correlated is not None and res.correlated.key < 0:
            email.correlated_email_id = by_position[res.correlated.key].pk
            late_links.append(email)
    if late_links:
        TrackedEmail.objects.bulk_update(late_links, ["correlated_email"])
    bulk_insert(
        [
            EmailHash(tracked_email=email, kind=kind, value=value)
            for res, email in zip(tracked_results, emails, strict=True)
            for kind, values in (
                (EmailHash.SUBJECT, res.subject_hashes),
                (EmailHash.ADDRESS, res.address_hashes),
            )
            for value in values
        ]
    )

    decisions = []
    for pos, res in enumerate(results):
        msg = res.message
        linked: TrackedEmail | None = by_position.get(-(pos + 1))
        linked_id = (
            linked.pk
            if linked is not None
            else (res.existing.key if res.existing and res.existing.key > 0 else None)
        )
        if linked is None and res.existing is not None and res.existing.key < 0:
            linked_id = by_position[res.existing.key].pk
        sender = (
            msg.sender.address
            if isinstance(msg, ParsedMessage) and msg.sender
            else getattr(msg, "sender", "")
        )
        decisions.append(
            Decision(
                mailbox=mailbox,
                folder=folder,
                scan_run=scan_run,
                provider_item_id=msg.provider_item_id[:500],
                message_id=msg.message_id,
                message_id_synthetic=isinstance(msg, ParsedMessage) and msg.message_id_synthetic,
                subject=msg.subject,
                sender=str(sender)[:320],
                received_at=msg.received_at,
                direction=res.direction,
                outcome=res.outcome,
                reason=res.reason,
                correlation_method=res.correlation_method or "",
                correlated_message_id=res.correlated.message_id if res.correlated else "",
                regarding_id=res.regarding.id if res.regarding else None,
                tracked_email_id=linked_id,
                trace=[s.as_json() for s in res.trace],
                message_snapshot=message_snapshot(msg) if isinstance(msg, ParsedMessage) else {},
                manual=manual,
                decided_at=now,
                **_accepting_fields(res),
            )
        )
    bulk_insert(decisions)

    if scan_run is not None:
        counts = {o.value: 0 for o in Outcome}
        for res in results:
            counts[res.outcome] += 1
        ScanRun.objects.filter(pk=scan_run.pk).update(
            tracked=F("tracked") + counts[Outcome.TRACKED],
            already_tracked=F("already_tracked") + counts[Outcome.ALREADY_TRACKED],
            not_tracked=F("not_tracked") + counts[Outcome.NOT_TRACKED],
            failed=F("failed") + counts[Outcome.FAILED],
            items_done=F("items_done") + len(results),
        )

    # Manual tracking reaches back into old mail on purpose; it must not move the scan's watermark.
    received = [] if manual else [r.message.received_at for r in results if r.message.received_at is not None]
    if received or sync_state is not None:
        _advance_sync_state(mailbox, folder, latest=max(received, default=None), sync_state=sync_state)
    return decisions


def _advance_sync_state(
    mailbox: Mailbox, folder: str, *, latest: datetime | None, sync_state: str | None
) -> None:
    """Move the folder's pending watermark forward (never back) and save its sync token, in one UPDATE.

    The row is created on the folder's first page only; a writer that created it in between makes
    the INSERT fail, which rolls the page back for process_page to retry.
    """
    changes: dict[str, object] = {"updated_at": timezone.now()}
    if latest is not None:
        changes["pending_watermark"] = Case(
            When(Q(pending_watermark__isnull=True) | Q(pending_watermark__lt=latest), then=Value(latest)),
            default=F("pending_watermark"),
        )
    if sync_state is not None:
        changes["state"] = sync_state
    if not FolderSyncState.objects.filter(mailbox=mailbox, folder=folder).update(**changes):
        FolderSyncState.objects.create(
            mailbox=mailbox, folder=folder, state=sync_state or "", pending_watermark=latest
        )


def check_folder(folder: str) -> str:
    if folder not in Folder.values:
        raise ActionError(f"unknown folder {folder!r}; use one of {', '.join(Folder.values)}")
    return folder


# ---------------------------------------------------------------------------------------------
# Scheduling and the mailbox lifecycle (DOMAIN §9)
# ---------------------------------------------------------------------------------------------


def due_mailboxes(rules: OrgRules, now: datetime) -> QuerySet[Mailbox]:
    """Mailboxes that may be scanned (§3.1) and whose next run has come."""
    approved = Q(approval=Approval.APPROVED)
    users = Q(user__isnull=False) & (approved if rules.require_approval_user else Q())
    queues = Q(queue__isnull=False) & (approved if rules.require_approval_queue else Q())
    return Mailbox.objects.filter(
        users | queues,
        Q(next_run_at__isnull=True) | Q(next_run_at__lte=now),
        enabled=True,
        incoming_method=IncomingMethod.SERVER_SIDE_SYNC,
    )


def do_claim_due_mailboxes(rules: OrgRules, *, now: datetime, lease: timedelta) -> list[int]:
    """Claim every due mailbox for one scan: its next run moves to now + lease until the scan ends.

    One conditional UPDATE marks the claimed rows with this call's token, so two dispatchers running
    at once claim disjoint sets; a scan lost with its worker makes the mailbox due again after the lease.
    """
    token = uuid.uuid4().hex
    ids = list(due_mailboxes(rules, now).values_list("pk", flat=True))
    if not ids:
        return []
    due_mailboxes(rules, now).filter(pk__in=ids).update(next_run_at=now + lease, dispatch_token=token)
    return list(Mailbox.objects.filter(pk__in=ids, dispatch_token=token).values_list("pk", flat=True))


def do_postpone_scan(mailbox_id: int, *, until: datetime) -> None:
    Mailbox.objects.filter(pk=mailbox_id).update(next_run_at=until)


def do_finish_cycle(mailbox_id: int, rules: OrgRules, *, now: datetime) -> None:
    """A scan cycle that succeeded: next run is the end of this cycle + MailboxPollIntervalMinutes."""
    Mailbox.objects.filter(pk=mailbox_id).update(
        next_run_at=now + timedelta(minutes=rules.poll_interval_minutes), transient_failure_count=0
    )


@transaction.atomic
def do_record_cycle_failure(
    mailbox_id: int,
    rules: OrgRules,
    *,
    error: str,
    permanent: bool,
    retry_after: float | None,
    now: datetime,
) -> str:
    """Retry a transient failure later (the server's back-off if longer), or disable the mailbox.

    Returns what happened in words: "retry at …" or "disabled".
    """
    mailbox = Mailbox.objects.select_for_update().get(pk=mailbox_id)
    mailbox.last_error = error
    mailbox.incoming_status = MailboxStatus.FAILURE
    fields = ["last_error", "incoming_status", "transient_failure_count", "next_run_at", "enabled"]
    if not permanent:
        mailbox.transient_failure_count += 1
    if permanent or mailbox.transient_failure_count > rules.transient_retry_limit:
        mailbox.enabled = False
        mailbox.next_run_at = None
        mailbox.save(update_fields=fields)
        why = "a permanent error" if permanent else f"{mailbox.transient_failure_count - 1} retries"
        Alert.objects.create(
            mailbox=mailbox,
            level=AlertLevel.ERROR,
            message=f"Mailbox disabled after {why}: {error}. Fix the cause, then run Test & Enable.",
        )
        _audit(
            "mailbox_disabled",
            mailbox.email_address,
            "enabled",
            f"disabled: {error}",
            acting_user=None,
            actor_label="system",
        )
        return "disabled"
    wait = max(timedelta(minutes=rules.transient_retry_minutes), timedelta(seconds=retry_after or 0))
    mailbox.next_run_at = now + wait
    mailbox.save(update_fields=fields)
    Alert.objects.create(
        mailbox=mailbox,
        level=AlertLevel.WARNING,
        message=(
            f"Scan failed (retry {mailbox.transient_failure_count} of {rules.transient_retry_limit}): "
            f"{error}. Next try at {mailbox.next_run_at:%Y-%m-%d %H:%M} UTC."
        ),
    )
    return f"retry at {mailbox.next_run_at.isoformat()}"


# ---------------------------------------------------------------------------------------------
# Web UI (issue 5): exclusion list (DOMAIN §10) and folder tracking rules (Personal Options)
# ---------------------------------------------------------------------------------------------

RESERVED_RULE_FOLDERS = frozenset([*Folder.values, "sent items"])
FOLDER_NAME_MAX = 255


@transaction.atomic
def do_add_exclusion(
    pattern: str, *, user: User | None = None, acting_user: User | None = None, actor_label: str = "cli"
) -> ExclusionEntry:
    """Add a validated, lower-case address or @domain, org-wide (user None) or for one user.

    Raises ActionError if the list already holds it (the unique constraints decide, so a race
    between two requests still ends with one row).
    """
    scope = "organisation" if user is None else f"user {user.get_username()}"
    try:
        with transaction.atomic():
            entry = ExclusionEntry.objects.create(pattern=pattern, user=user)
    except IntegrityError:
        raise ActionError(
            gettext("%(pattern)s is already on the exclusion list.") % {"pattern": pattern}
        ) from None
    _audit("exclusion_added", pattern, None, scope, acting_user=acting_user, actor_label=actor_label)
    return entry


@transaction.atomic
def do_delete_exclusion(
    entry: ExclusionEntry, *, acting_user: User | None = None, actor_label: str = "cli"
) -> None:
    scope = "organisation" if entry.user is None else f"user {entry.user.get_username()}"
    _audit("exclusion_deleted", entry.pattern, scope, None, acting_user=acting_user, actor_label=actor_label)
    entry.delete()


@transaction.atomic
def check_add_folder_rule(
    mailbox: Mailbox,
    folder: str,
    *,
    regarding: CrmRecord | None = None,
    acting_user: User | None = None,
    actor_label: str = "cli",
) -> FolderTrackingRule:
    """Map a folder of a user's Exchange mailbox to tracking (with an optional regarding record).

    Refused (ActionError, nothing changed) for queue or non-Exchange mailboxes, when the org turned
    folder tracking off (IsFolderBasedTrackingEnabled), for Inbox/Sent Items themselves, for a folder
    that already has a rule, and past MaxFolderBasedTrackingMappings.
    """
    org = OrgSettings.load()
    # Lock the mailbox so that two requests cannot both pass the count check.
    mailbox = Mailbox.objects.select_for_update().select_related("profile").get(pk=mailbox.pk)
    folder = folder.strip()
    if mailbox.user_id is None:
        raise ActionError(gettext("Folder tracking rules are for user mailboxes, not queues."))
    if not mailbox.profile.is_exchange:
        raise ActionError(gettext("Folder tracking rules need an Exchange mailbox."))
    if not org.folder_tracking_enabled:
        raise ActionError(gettext("Folder-based tracking is turned off for the organisation."))
    if not folder:
        raise ActionError(gettext("A folder tracking rule needs a folder name."))
    if folder.lower() in RESERVED_RULE_FOLDERS:
        raise ActionError(
            gettext("%(folder)s is scanned anyway; choose a folder under the Inbox.") % {"folder": folder}
        )
    if len(folder) > FOLDER_NAME_MAX:
        raise ActionError(gettext("A folder name has at most %(max)d characters.") % {"max": FOLDER_NAME_MAX})
    rules = FolderTrackingRule.objects.filter(mailbox=mailbox)
    if rules.filter(folder__iexact=folder).exists():
        raise ActionError(gettext("The folder %(folder)s already has a rule.") % {"folder": folder})
    if rules.count() >= org.max_folder_mappings:
        raise ActionError(
            gettext("You already have %(max)d folder tracking rules, the most the organisation allows.")
            % {"max": org.max_folder_mappings}
        )
    rule = FolderTrackingRule.objects.create(mailbox=mailbox, folder=folder, regarding=regarding)
    _audit(
        "folder_rule_added",
        f"{mailbox.email_address}/{folder}",
        None,
        str(regarding) if regarding is not None else "(no regarding record)",
        acting_user=acting_user,
        actor_label=actor_label,
    )
    return rule


@transaction.atomic
def do_delete_folder_rule(
    rule: FolderTrackingRule, *, acting_user: User | None = None, actor_label: str = "cli"
) -> None:
    _audit(
        "folder_rule_deleted",
        f"{rule.mailbox.email_address}/{rule.folder}",
        str(rule.regarding) if rule.regarding is not None else "(no regarding record)",
        None,
        acting_user=acting_user,
        actor_label=actor_label,
    )
    rule.delete()


# ---------------------------------------------------------------------------------------------
# Retention (issue 7): purge_decisions is the only way a Decision is ever deleted
# ---------------------------------------------------------------------------------------------


def purgeable_decisions(cutoff: datetime, mailbox: Mailbox | None = None) -> QuerySet[Decision]:
    """The decisions made before cutoff (of one mailbox, or of all): what a purge would delete."""
    decisions = Decision.objects.filter(decided_at__lt=cutoff)
    return decisions if mailbox is None else decisions.filter(mailbox=mailbox)


@transaction.atomic
def do_purge_decisions(
    cutoff: datetime, *, mailbox: Mailbox | None = None, acting_user: User | None = None, actor_label: str
) -> int:
    """Delete the decisions made before cutoff and audit who did it; returns how many were deleted.

    Only Decisions go: their TrackedEmails are CRM data and their ScanRuns keep the counts.
    """
    _, per_model = purgeable_decisions(cutoff, mailbox).delete()
    deleted = per_model.get(Decision._meta.label, 0)
    _audit(
        "decisions_purged",
        mailbox.email_address if mailbox is not None else "all mailboxes",
        f"decided before {_utc_text(cutoff)}",
        f"{deleted} deleted",
        acting_user=acting_user,
        actor_label=actor_label,
    )
    return deleted
