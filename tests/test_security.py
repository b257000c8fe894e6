"""Security (issue 7): sign-in throttling, the record's immutability, secrets kept out of every output,
a clean deployment check, CSRF on every POST, and objects of other users out of reach.

Everything goes through the real stack: the test client's HTTP pages (the product's and the Django
admin's), management commands, and scans against the Exchange simulator over loopback HTTPS.
"""

from __future__ import annotations

import base64
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from axes.models import AccessAttempt
from cryptography.fernet import Fernet
from django.conf import settings
from django.contrib.auth.hashers import get_hasher
from django.contrib.auth.models import User
from django.core.management.base import CommandError
from django.db.models import Model
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from syncadmin.devtools.simulators.faults import Fault
from syncadmin.devtools.simulators.server import Simulator
from syncadmin.devtools.simulators.store import MailStore
from tests import rq_helpers as h
from tests.conftest import CommandResult, run_command
from tests.test_web_urlconf import (
    KWARGS_OF,
    PK_OF,
    attachment_of,
    image_of,
    queue_item_of,
    round_of,
    routes,
)
from tracking.actions import (
    ProfileValues,
    check_add_folder_rule,
    check_add_profile,
    check_start_bulk,
    do_add_exclusion,
    do_approve_mailbox,
    do_set_personal_options,
)
from tracking.models import (
    Alert,
    AuditEvent,
    CrmRecord,
    Decision,
    EmailServerProfile,
    ExclusionEntry,
    FolderTrackingRule,
    ImportRun,
    Mailbox,
    PersonalOptions,
    Queue,
    ScanRun,
)
from tracking.models.activity import ImmutableRecordError
from tracking.scanning import run_scan_cycle

BASE_DIR = Path(settings.BASE_DIR)
LOGIN = reverse("login")
PASSWORD = "Right-pa55word!"
WRONG = "Wr0ng-guess-pa55"


def message(message_id: str, *, to: str = "alice@contoso.com", frm: str = "carla@fabrikam.example") -> bytes:
    msg = EmailMessage()
    msg["From"] = frm
    msg["To"] = to
    msg["Subject"] = f"About {message_id}"
    msg["Date"] = "Mon, 04 Mar 2024 10:00:00 +0000"
    msg["Message-ID"] = message_id
    msg.set_content("hello")
    return bytes(msg)


def ingest(tmp_path: Path, mailbox: str, message_id: str, *extra: str) -> Decision:
    path = tmp_path / f"{abs(hash(message_id))}.eml"
    path.write_bytes(message(message_id, to=mailbox))
    run_command("ingest", "--mailbox", mailbox, "--folder", "inbox", str(path), *extra)
    return Decision.objects.filter(message_id=message_id).order_by("id").first()  # type: ignore[return-value]


def superuser() -> User:
    return User.objects.create_superuser("root", "root@contoso.com", PASSWORD)


def client_of(user: User, **kwargs: Any) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def record() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every Decision and AuditEvent as stored, for "nothing changed" comparisons (additions allowed)."""
    return (
        [dict(row) for row in Decision.objects.order_by("pk").values()],
        [dict(row) for row in AuditEvent.objects.order_by("pk").values()],
    )


def assert_unchanged(before: tuple[list[dict[str, Any]], list[dict[str, Any]]]) -> None:
    """The rows that existed before are all still there, exactly as they were."""
    decisions, audits = record()
    now_d = {row["id"]: row for row in decisions}
    now_a = {row["id"]: row for row in audits}
    for row in before[0]:
        assert now_d.get(row["id"]) == row, f"decision {row['id']} changed or vanished"
    for row in before[1]:
        assert now_a.get(row["id"]) == row, f"audit event {row['id']} changed or vanished"


# =========================================================================================================
# 1. Sign-in throttling (django-axes)
# =========================================================================================================


@pytest.fixture
def people(db: None) -> dict[str, User]:
    return {
        name: User.objects.create_user(name, f"{name}@contoso.com", PASSWORD) for name in ("alice", "bob")
    }


def sign_in(client: Client, username: str, password: str, ip: str = "10.0.0.1", path: str = LOGIN) -> Any:
    return client.post(path, {"username": username, "password": password}, REMOTE_ADDR=ip)


def signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def test_the_limit_and_cool_off_come_from_the_environment() -> None:
    assert int(os.environ.get("AXES_FAILURE_LIMIT", "5")) == settings.AXES_FAILURE_LIMIT
    assert timedelta(minutes=int(os.environ.get("AXES_COOLOFF_MINUTES", "15"))) == settings.AXES_COOLOFF_TIME
    assert settings.AXES_LOCKOUT_PARAMETERS == [["username", "ip_address"]]
    assert settings.AXES_RESET_ON_SUCCESS is True


def test_wrong_passwords_lock_the_user_name_out_even_for_the_right_password(people) -> None:
    limit = settings.AXES_FAILURE_LIMIT
    client = Client()
    for _ in range(limit - 1):
        response = sign_in(client, "alice", WRONG)
        assert response.status_code == 200 and response.context["form"].errors
    locked = sign_in(client, "alice", WRONG)
    assert locked.status_code == 429
    assert "registration/locked_out.html" in [t.name for t in locked.templates]
    page = locked.content.decode()
    assert "Sign-in locked" in page and f"{limit} wrong passwords in a row" in page
    assert "15 minutes after the last failed attempt" in page
    # The right password is refused as well, and nobody is signed in.
    right = sign_in(client, "alice", PASSWORD)
    assert right.status_code == 429 and not signed_in(client)
    # The Django admin's sign-in is the same lock.
    assert sign_in(Client(), "alice", PASSWORD, path="/admin/login/").status_code == 429


def lock_out(username: str, ip: str = "10.0.0.1") -> None:
    for _ in range(settings.AXES_FAILURE_LIMIT):
        sign_in(Client(), username, WRONG, ip)
    assert sign_in(Client(), username, PASSWORD, ip).status_code == 429


def test_other_user_names_and_other_addresses_are_not_locked(people) -> None:
    lock_out("alice", ip="10.0.0.1")
    bob = Client()
    assert sign_in(bob, "bob", PASSWORD, ip="10.0.0.1").status_code == 302 and signed_in(bob)
    elsewhere = Client()
    assert sign_in(elsewhere, "alice", PASSWORD, ip="10.0.0.2").status_code == 302 and signed_in(elsewhere)
    # ... and alice's lock from the first address is still in place.
    assert sign_in(Client(), "alice", PASSWORD, ip="10.0.0.1").status_code == 429


def test_the_lock_ends_after_the_cool_off(people) -> None:
    lock_out("alice")
    # The cool-off has passed: the failures are older than AXES_COOLOFF_TIME.
    AccessAttempt.objects.update(
        attempt_time=timezone.now() - settings.AXES_COOLOFF_TIME - timedelta(seconds=1)
    )
    client = Client()
    assert sign_in(client, "alice", PASSWORD).status_code == 302 and signed_in(client)


def test_a_success_resets_the_count(people) -> None:
    limit = settings.AXES_FAILURE_LIMIT
    for _ in range(limit - 1):
        sign_in(Client(), "alice", WRONG)
    assert sign_in(Client(), "alice", PASSWORD).status_code == 302
    for _ in range(limit - 1):
        sign_in(Client(), "alice", WRONG)
    client = Client()
    assert sign_in(client, "alice", PASSWORD).status_code == 302 and signed_in(client)


def test_axes_reset_lifts_every_lock(people, cmd) -> None:
    lock_out("alice")
    cmd("axes_reset")
    client = Client()
    assert sign_in(client, "alice", PASSWORD).status_code == 302 and signed_in(client)


def test_the_wrong_passwords_are_not_stored(people) -> None:
    lock_out("alice")
    stored = " ".join(f"{a.get_data} {a.post_data}" for a in AccessAttempt.objects.all())
    assert WRONG not in stored and PASSWORD not in stored


# =========================================================================================================
# 2. Decisions and audit events cannot be changed or deleted: web, Django admin, model, command line
# =========================================================================================================


@pytest.fixture
def history(alice: Mailbox, bob: Mailbox, tmp_path: Path) -> dict[str, Any]:
    """A decision (with a regarding record and a manual sibling) and an audit event for alice."""
    CrmRecord.objects.create(kind="contact", name="Carla", email1="carla@fabrikam.example")
    decision = ingest(tmp_path, "alice@contoso.com", "<hist-1@fabrikam.example>")
    manual = ingest(
        tmp_path, "alice@contoso.com", "<hist-2@fabrikam.example>", "--regarding", "contact:Carla"
    )
    do_approve_mailbox(alice, approve=False, actor_label="test")
    do_approve_mailbox(alice, approve=True, actor_label="test")
    audit = AuditEvent.objects.order_by("pk").first()
    assert audit is not None and manual.regarding is not None
    return {"decision": decision, "manual": manual, "audit": audit, "tmp_path": tmp_path}


def test_a_decision_and_an_audit_event_refuse_save_and_delete(history) -> None:
    decision = Decision.objects.get(pk=history["decision"].pk)
    decision.outcome = "tracked"
    with pytest.raises(ImmutableRecordError):
        decision.save()
    with pytest.raises(ImmutableRecordError):
        decision.delete()
    audit = AuditEvent.objects.get(pk=history["audit"].pk)
    audit.new_value = "forged"
    with pytest.raises(ImmutableRecordError):
        audit.save(update_fields=["new_value"])
    with pytest.raises(ImmutableRecordError):
        audit.delete()
    assert Decision.objects.get(pk=decision.pk).outcome == history["decision"].outcome
    assert AuditEvent.objects.get(pk=audit.pk).new_value == history["audit"].new_value


def admin_url(model: type[Model], view: str, pk: int | None = None) -> str:
    name = f"admin:tracking_{model._meta.model_name}_{view}"
    return reverse(name, args=[pk] if pk is not None else [])


@pytest.mark.parametrize("model", [Decision, AuditEvent], ids=["decision", "audit"])
def test_the_django_admin_shows_but_never_changes_them_even_for_a_superuser(history, model) -> None:
    root = client_of(superuser())
    obj = history["decision"] if model is Decision else history["audit"]
    before = record()
    assert root.get(admin_url(model, "changelist")).status_code == 200
    page = root.get(admin_url(model, "change", obj.pk))
    assert page.status_code == 200  # the read-only view
    assert 'name="_save"' not in page.content.decode() and "deletelink" not in page.content.decode()
    assert root.get(admin_url(model, "add")).status_code == 403
    assert root.post(admin_url(model, "add"), {"outcome": "tracked"}).status_code == 403
    assert (
        root.post(admin_url(model, "change", obj.pk), {"outcome": "tracked", "_save": "1"}).status_code == 403
    )
    assert root.get(admin_url(model, "delete", obj.pk)).status_code == 403
    assert root.post(admin_url(model, "delete", obj.pk), {"post": "yes"}).status_code == 403
    # No bulk delete action on the list either.
    listing = root.post(
        admin_url(model, "changelist"),
        {"action": "delete_selected", "_selected_action": [obj.pk], "post": "yes"},
    )
    assert listing.status_code == 200 and "delete_selected" not in listing.content.decode()
    assert_unchanged(before)


@pytest.mark.parametrize("what", ["mailbox", "user", "record"])
def test_the_django_admin_refuses_deletions_that_would_take_decisions_with_them(history, alice, what) -> None:
    """Deleting a mailbox or its user would delete its decisions; a record, blank their regarding."""
    root = client_of(superuser())
    target = {"mailbox": alice, "user": alice.user, "record": history["manual"].regarding}[what]
    url = {
        "mailbox": admin_url(Mailbox, "delete", alice.pk),
        "user": reverse("admin:auth_user_delete", args=[target.pk]),
        "record": admin_url(CrmRecord, "delete", target.pk),
    }[what]
    before = record()
    assert root.post(url, {"post": "yes"}).status_code == 403
    assert type(target).objects.filter(pk=target.pk).exists()
    assert_unchanged(before)


def test_no_web_post_changes_a_decision_or_an_audit_event(history, admin, alice) -> None:
    """Every route of the URL conf, POSTed by an admin and by the decision's owner with a decision's or an
    audit event's id wherever a route takes an id: existing rows stay exactly as they were."""
    ids = [history["decision"].pk, history["manual"].pk, history["audit"].pk]
    before = record()
    tried = 0
    for _route, name, _ in routes():
        assert name is not None
        for user in (admin, alice.user):
            for pk in ids if name in PK_OF else [None]:
                url = reverse(
                    name,
                    kwargs={"pk": pk, **KWARGS_OF.get(name, {})} if pk is not None else KWARGS_OF.get(name),
                )
                client_of(user).post(url, {"regarding": "", "confirm": "on", "folder": "inbox"})
                tried += 1
    assert tried >= len(routes()) * 2
    assert_unchanged(before)


def test_no_command_changes_a_decision_or_an_audit_event(history, cmd, tmp_path) -> None:
    """The commands that write, on their every path that could touch the record: re-ingesting,
    tracking by hand what is decided, approvals, options, settings, imports, key rotation, a dry purge."""
    before = record()
    first = tmp_path / "again.eml"
    first.write_bytes(message("<hist-1@fabrikam.example>"))
    cmd("ingest", "--mailbox", "alice@contoso.com", "--folder", "inbox", str(first))
    cmd(
        "ingest",
        "--mailbox",
        "alice@contoso.com",
        "--folder",
        "inbox",
        str(first),
        "--regarding",
        "contact:Carla",
    )
    cmd("explain", "--mailbox", "alice@contoso.com", "--folder", "inbox", str(first))
    cmd("mailbox", "reject", "alice@contoso.com")
    cmd("mailbox", "approve", "alice@contoso.com")
    cmd("personaloptions", "alice", "--track", "all")
    cmd("orgsettings", "set", "AutoTrackSentFolderItems", "true")
    records = tmp_path / "records.csv"
    records.write_text("name,email\nCarla,carla@fabrikam.example\n")
    cmd("import_records", "contact", str(records))
    cmd("rotate_encryption_key")
    cmd("purge_decisions", "--older-than", "1", "--dry-run")
    cmd("purge_decisions", "--older-than", "1")  # nothing is a day old: deletes none
    assert_unchanged(before)


def test_only_purge_decisions_deletes_decisions(history, cmd) -> None:
    Decision.objects.filter(pk=history["decision"].pk).update(decided_at=timezone.now() - timedelta(days=9))
    before = Decision.objects.count()
    cmd("purge_decisions", "--older-than", "8")
    assert Decision.objects.count() == before - 1
    assert not Decision.objects.filter(pk=history["decision"].pk).exists()


# =========================================================================================================
# 3. Secrets: never in logs, stored errors, alerts, exports, JSON output, the admin or the forms
# =========================================================================================================


SECRET = h.SIM_SECRET
WRONG_SECRET = "N0t-the-Secr3t-xyz"


def secret_forms(*secrets: str) -> list[str]:
    """A secret as it could leak: plain, in a Basic header, and its stored ciphertext's distinctive part."""
    forms: list[str] = []
    for secret in secrets:
        forms += [secret, base64.b64encode(f"{h.SIM_USER}:{secret}".encode()).decode()]
    forms += [p.secret_encrypted[-40:] for p in EmailServerProfile.objects.exclude(secret_encrypted="")]
    return forms


def leaks(text: str, *secrets: str) -> list[str]:
    return [form for form in secret_forms(*secrets) if form in text]


class Everything(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))  # format() appends a traceback, when there is one


@pytest.fixture
def all_logs() -> Iterator[Everything]:
    """Every log record of every logger at DEBUG, for the duration of the test."""
    handler = Everything()
    root = logging.getLogger()
    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)]
    levels = [(lg, lg.level, lg.disabled) for lg in [root, *loggers]]
    for lg in loggers:
        lg.setLevel(logging.NOTSET)
        lg.disabled = False
    root.setLevel(logging.DEBUG)
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)
    for lg, level, disabled in levels:
        lg.setLevel(level)
        lg.disabled = disabled


@pytest.fixture
def sim(db: None, tmp_path: Path) -> Iterator[Simulator]:
    with Simulator(MailStore(), cert_dir=tmp_path / "sim", credentials=h.SIM_CREDENTIALS) as simulator:
        yield simulator


def scanned(sim: Simulator, kind: str, secret: str, address: str, fault: Fault | None = None) -> Mailbox:
    profile = h.add_sim_profile(sim, f"{kind}-{address}", kind, secret=secret)
    h.fill(sim, address, count=3)
    mailbox = h.add_enabled_mailbox(address, profile)
    if fault is not None:
        sim.faults.add(fault)
    run_scan_cycle(mailbox.pk)
    mailbox.refresh_from_db()
    return mailbox


def stored_errors() -> str:
    return "\n".join(
        [
            *ScanRun.objects.values_list("error", flat=True),
            *Mailbox.objects.values_list("last_error", flat=True),
            *Alert.objects.values_list("message", flat=True),
            *AuditEvent.objects.values_list("old_value", flat=True),
            *AuditEvent.objects.values_list("new_value", flat=True),
        ]
    )


CASES = [
    ("exchange_ews", SECRET, None, True),
    ("exchange_graph", SECRET, None, True),
    ("exchange_ews", WRONG_SECRET, None, False),
    ("exchange_graph", WRONG_SECRET, None, False),
    ("exchange_ews", SECRET, Fault("malformed", protocol="ews", operation="SyncFolderItems"), False),
    ("exchange_graph", SECRET, Fault("malformed", protocol="token"), False),
    ("exchange_graph", SECRET, Fault("http_status", protocol="graph", status=500, times=-1), False),
]


@pytest.mark.parametrize(
    ("kind", "secret", "fault", "succeeds"),
    CASES,
    ids=[
        "ews",
        "graph",
        "ews-wrong-secret",
        "graph-wrong-secret",
        "ews-malformed",
        "token-malformed",
        "graph-500",
    ],
)
def test_a_scan_at_debug_level_logs_and_stores_no_secret(
    sim, all_logs, kind, secret, fault, succeeds
) -> None:
    mailbox = scanned(sim, kind, secret, f"{kind.replace('_', '-')}@contoso.example", fault)
    assert (mailbox.incoming_status == "success") is succeeds, mailbox.last_error
    logged = "\n".join(all_logs.lines)
    assert any(line.startswith("DEBUG urllib3") for line in all_logs.lines)  # DEBUG really was on
    assert not leaks(logged, secret), "a secret reached the log"
    assert not leaks(stored_errors(), secret), "a secret reached a stored error or alert"
    if not succeeds:
        assert mailbox.last_error  # there was an error text to look at
    # The JSON of the same scan from the command line, and health's.
    try:
        out = run_command("scan_mailbox", mailbox.email_address, "--folder", "inbox", "--json")
    except CommandError as exc:  # a failing scan exits non-zero with the error on stderr
        out = CommandResult("", str(exc))
    assert not leaks(out.out + out.err, secret)


def test_json_and_text_output_of_the_commands_holds_no_secret(sim, cmd) -> None:
    scanned(sim, "exchange_ews", SECRET, "json@contoso.example")
    outputs = [
        cmd("profile", "list").out,
        cmd("mailbox", "list").out,
        cmd("orgsettings", "list", "--json").out,
        cmd("scan_mailbox", "json@contoso.example", "--json").out,
        cmd("purge_decisions", "--older-than", "1", "--json", "--dry-run").out,
    ]
    assert "secret set" in outputs[0]
    assert not leaks("\n".join(outputs), SECRET)


def test_the_decision_log_export_holds_no_secret(sim, admin) -> None:
    scanned(sim, "exchange_ews", SECRET, "export@contoso.example")
    response = client_of(admin).get(reverse("web-decisions-export"))
    body = b"".join(response.streaming_content).decode()  # type: ignore[attr-defined]
    assert body.count("\n") > 3  # the scan's decisions are in it
    assert not leaks(body, SECRET)


@pytest.fixture
def secret_profile(db: None) -> EmailServerProfile:
    return check_add_profile(
        ProfileValues(
            "Contoso EWS",
            "exchange_ews",
            endpoint="https://mail.contoso.com/EWS/Exchange.asmx",
            auth_method="basic",
            username=h.SIM_USER,
        ),
        secret=SECRET,
        actor_label="test",
    )


def test_the_django_admin_never_shows_the_secret_or_its_ciphertext(secret_profile) -> None:
    root = client_of(superuser())
    ciphertext = EmailServerProfile.objects.get().secret_encrypted
    pages = [
        root.get(admin_url(EmailServerProfile, "changelist")),
        root.get(admin_url(EmailServerProfile, "change", secret_profile.pk)),
        root.get(admin_url(EmailServerProfile, "history", secret_profile.pk)),
        # a POST with an error re-renders the form: the secret typed in is not sent back
        root.post(
            admin_url(EmailServerProfile, "change", secret_profile.pk),
            {"name": "", "kind": "exchange_ews", "secret": WRONG_SECRET, "max_concurrent_connections": "10"},
        ),
    ]
    for page in pages:
        assert page.status_code in (
            200,
            403,
        )  # the POST: the admin is read-only (tests/test_admin_readonly.py)
        text = page.content.decode()
        assert SECRET not in text and WRONG_SECRET not in text and ciphertext not in text
        assert ciphertext[:20] not in text


def test_the_profile_form_is_write_only(secret_profile, admin) -> None:
    ciphertext = EmailServerProfile.objects.get().secret_encrypted
    client = client_of(admin)
    url = reverse("web-profile-edit", args=[secret_profile.pk])
    refused = client.post(
        url, {"name": "", "kind": "exchange_ews", "secret": WRONG_SECRET, "max_concurrent_connections": "10"}
    )
    for page in (client.get(url), refused, client.get(reverse("web-profiles"))):
        text = page.content.decode()
        assert SECRET not in text and WRONG_SECRET not in text and ciphertext[:20] not in text
    assert refused.status_code == 400 and refused.context["form"].errors
    # Changing the secret leaves no trace of either value in the audit list.
    client.post(
        url,
        {
            "name": "Contoso EWS",
            "kind": "exchange_ews",
            "endpoint": "https://mail.contoso.com/EWS/Exchange.asmx",
            "auth_method": "basic",
            "username": h.SIM_USER,
            "secret": WRONG_SECRET,
            "max_concurrent_connections": "10",
        },
    )
    assert EmailServerProfile.objects.get().get_secret() == WRONG_SECRET
    audits = " ".join(f"{a.old_value} {a.new_value}" for a in AuditEvent.objects.all())
    assert SECRET not in audits and WRONG_SECRET not in audits and ciphertext[:20] not in audits


# =========================================================================================================
# 4. Deployment: check --deploy, the password hasher, CSRF on every POST
# =========================================================================================================


def production_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SECURE_", "DJANGO_", "DEBUG"))}
    env.update(
        DJANGO_SETTINGS_MODULE="syncadmin.settings",
        DEBUG="0",
        SECRET_KEY="pr0duction-like-" + base64.urlsafe_b64encode(os.urandom(48)).decode(),
        SYNCADMIN_ENCRYPTION_KEY=Fernet.generate_key().decode(),
        ALLOWED_HOSTS="syncadmin.example.com",
        CSRF_TRUSTED_ORIGINS="https://syncadmin.example.com",
        DATABASE_URL=f"sqlite:///{tmp_path / 'deploy.sqlite3'}",
    )
    return env


def test_check_deploy_is_clean_with_production_settings(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR,
        env=production_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues" in done.stdout
    assert "WARNINGS" not in done.stdout + done.stderr


def test_production_hashes_passwords_with_djangos_default(tmp_path: Path) -> None:
    script = (
        "import django; django.setup(); from django.conf import settings; "
        "from django.contrib.auth.hashers import get_hasher; "
        "print(settings.is_overridden('PASSWORD_HASHERS'), get_hasher().algorithm)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=BASE_DIR,
        env=production_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout.split() == ["False", "pbkdf2_sha256"], done.stderr
    # The test settings' fast hasher is the tests' alone.
    assert get_hasher().algorithm == "md5"


CSRF_ROLES = ("anonymous", "user", "auditor", "admin")


@pytest.fixture
def csrf_world(alice: Mailbox, bob: Mailbox, admin: User, auditor: User, tmp_path: Path) -> dict[str, Any]:
    decision = ingest(tmp_path, "alice@contoso.com", "<csrf-1@fabrikam.example>")
    ids = {
        "mailbox": alice.pk,
        "profile": alice.profile_id,
        "decision": decision.pk,
        "folder_rule": check_add_folder_rule(alice, "Inbox/Projects", folder_id="f-Projects").pk,
        "exclusion": do_add_exclusion("friend@example.org", user=alice.user).pk,
        "person": bob.user_id,
        "queue": (queue := Queue.objects.create(name="Support", email="support@contoso.com")).pk,
        "queue_item": queue_item_of(queue),
        "bulk": check_start_bulk("approve", [alice.pk]).pk,
        "import_run": ImportRun.objects.create(kind="contact", text="name,email\n").pk,
        "round": round_of(alice),
        "attachment": attachment_of(decision),
        "image": image_of(Decision.objects.get(pk=decision.pk)),
        "email": Decision.objects.values_list("tracked_email_id", flat=True).get(pk=decision.pk),
        "record": CrmRecord.objects.create(kind="contact", name="Carla", email1="carla@fabrikam.example").pk,
    }
    users = {"anonymous": None, "user": alice.user, "auditor": auditor, "admin": admin}
    return {"ids": ids, "users": users}


# Machine endpoints Microsoft Graph posts to, without cookies or a CSRF token: each notification is checked
# against its subscription's clientState instead, and can only queue a scan (tests/test_push_graph.py).
CSRF_EXEMPT = {"web-graph-notifications", "web-graph-lifecycle"}


def test_every_post_without_a_csrf_token_is_refused(csrf_world) -> None:
    """Every route of the URL conf, POSTed by every role with a plausible body but no CSRF token."""
    before = record()
    state = (Mailbox.objects.values().order_by("pk").first(), ExclusionEntry.objects.count())
    refused = 0
    exempt = {name for _, name, pattern in routes() if getattr(pattern.callback, "csrf_exempt", False)}
    assert exempt == CSRF_EXEMPT
    for route, name, _ in routes():
        assert name is not None
        if name in CSRF_EXEMPT:
            response = Client(enforce_csrf_checks=True).post(reverse(name), {"confirm": "on"})
            assert response.status_code == 202, route  # not JSON: ignored
            continue
        kwargs = (
            {"pk": csrf_world["ids"][PK_OF[name]], **KWARGS_OF.get(name, {})}
            if name in PK_OF
            else KWARGS_OF.get(name)
        )
        url = reverse(name, kwargs=kwargs)
        for role in CSRF_ROLES:
            client = Client(enforce_csrf_checks=True)
            if csrf_world["users"][role] is not None:
                client.force_login(csrf_world["users"][role])
            data = {"username": "alice", "password": "x", "pattern": "@evil.example", "confirm": "on"}
            response = client.post(url, data)
            assert response.status_code == 403, (route, role, response.status_code)
            assert b"CSRF" in response.content, (route, role)
            refused += 1
    assert refused == (len(routes()) - len(CSRF_EXEMPT)) * len(CSRF_ROLES)
    assert_unchanged(before)
    assert (Mailbox.objects.values().order_by("pk").first(), ExclusionEntry.objects.count()) == state


# =========================================================================================================
# 5. Another user's objects, by guessing ids (what test_web_urlconf.py and test_web_*.py leave out)
# =========================================================================================================


@pytest.fixture
def bobs(bob: Mailbox, alice: Mailbox, tmp_path: Path) -> dict[str, Any]:
    """bob's decision, folder rule, personal exclusion and options; alice is the one guessing."""
    decision = ingest(tmp_path, "bob@contoso.com", "<bob-secret-subject@fabrikam.example>")
    assert bob.user is not None
    do_set_personal_options(bob.user, track=3)
    return {
        "mailbox": bob,
        "decision": decision,
        "rule": check_add_folder_rule(bob, "Inbox/BobsFolder", folder_id="f-BobsFolder"),
        "exclusion": do_add_exclusion("bobs-friend@example.org", user=bob.user),
    }


def bob_state() -> tuple[object, ...]:
    bob = Mailbox.objects.get(email_address="bob@contoso.com")
    assert bob.user_id is not None
    return (
        tuple(Mailbox.objects.filter(pk=bob.pk).values_list()),
        tuple(PersonalOptions.objects.filter(user_id=bob.user_id).values_list()),
        tuple(FolderTrackingRule.objects.filter(mailbox=bob).values_list()),
        tuple(ExclusionEntry.objects.filter(user_id=bob.user_id).values_list()),
        Decision.objects.filter(mailbox=bob).count(),
    )


# (what, method, url maker, data maker, htmx target or None, statuses alice may get)
Probe = tuple[
    str, str, Callable[[dict[str, Any]], str], Callable[[dict[str, Any]], dict[str, str]], str | None
]
PROBES: list[Probe] = [
    (
        "decision detail",
        "get",
        lambda b: reverse("web-decision", args=[b["decision"].pk]),
        lambda b: {},
        None,
    ),
    (
        "decision trace fragment",
        "get",
        lambda b: reverse("web-decision", args=[b["decision"].pk]),
        lambda b: {},
        "track-form",
    ),
    ("track", "post", lambda b: reverse("web-decision-track", args=[b["decision"].pk]), lambda b: {}, None),
    (
        "set regarding",
        "post",
        lambda b: reverse("web-decision-track", args=[b["decision"].pk]),
        lambda b: {"regarding": str(CrmRecord.objects.get(name="Carla").pk)},
        None,
    ),
    ("mailbox page", "get", lambda b: reverse("web-mailbox", args=[b["mailbox"].pk]), lambda b: {}, None),
    (
        "mailbox status fragment",
        "get",
        lambda b: reverse("web-mailbox-status", args=[b["mailbox"].pk]),
        lambda b: {},
        "mailbox-status",
    ),
    (
        "delete folder rule",
        "post",
        lambda b: reverse("web-folder-rule-delete", args=[b["rule"].pk]),
        lambda b: {},
        None,
    ),
    (
        "delete exclusion",
        "post",
        lambda b: reverse("web-exclusion-delete", args=[b["exclusion"].pk]),
        lambda b: {},
        None,
    ),
    (
        "explain in bob's mailbox",
        "post",
        lambda b: reverse("web-explain"),
        lambda b: {"mailbox": str(b["mailbox"].pk), "folder": "inbox", "content": message("<x@y>").decode()},
        None,
    ),
    (
        "what-if of bob's mailbox",
        "get",
        lambda b: reverse("web-what-if"),
        lambda b: {"mailbox": str(b["mailbox"].pk)},
        None,
    ),
]


@pytest.mark.parametrize("probe", PROBES, ids=[p[0] for p in PROBES])
def test_a_user_cannot_reach_another_users_object_by_its_id(bobs, alice, probe: Probe) -> None:
    CrmRecord.objects.get_or_create(kind="contact", name="Carla", email1="carla@fabrikam.example")
    _, method, url, data, target = probe
    before = bob_state()
    headers = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": target} if target else {}
    client = client_of(alice.user)  # signing in is an audit event of its own
    audits = AuditEvent.objects.count()
    response = getattr(client, method)(url(bobs), data(bobs), **headers)
    assert response.status_code == 404
    assert b"bob-secret-subject" not in response.content
    assert bob_state() == before and AuditEvent.objects.count() == audits


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("web-decisions", {"mailbox": "bob"}),
        ("web-decisions-export", {"mailbox": "bob"}),
        ("web-decisions", {"q": "About"}),
        ("web-decisions-export", {"q": "About"}),
        ("web-exclusions", {"user": "bob"}),
        ("web-personal-options", {"user": "bob"}),
        ("web-mailboxes", {"q": "bob"}),
    ],
)
def test_filters_and_query_parameters_never_widen_what_a_user_sees(bobs, alice, name, params) -> None:
    values = {
        k: (
            str(bobs["mailbox"].pk)
            if k == "mailbox"
            else str(bobs["mailbox"].user_id)
            if v == "bob" and k == "user"
            else v
        )
        for k, v in params.items()
    }
    response = client_of(alice.user).get(reverse(name), values)
    assert response.status_code in (200, 400)
    content = (
        b"".join(response.streaming_content) if response.streaming else response.content  # type: ignore[attr-defined]
    )
    assert b"bob-secret-subject" not in content
    assert b"bobs-friend@example.org" not in content
    if name == "web-personal-options":
        assert response.context["options"].user_id == alice.user.pk


def test_a_users_personal_options_post_changes_only_their_own(bobs, alice) -> None:
    before = bob_state()
    client = client_of(alice.user)
    client.post(
        reverse("web-personal-options"), {"tab": "email", "track": "0", "user": str(bobs["mailbox"].user_id)}
    )
    client.post(reverse("web-folder-rules"), {"folder": "Stolen", "mailbox": str(bobs["mailbox"].pk)})
    client.post(reverse("web-exclusions"), {"pattern": "@x.example", "user": str(bobs["mailbox"].user_id)})
    assert bob_state() == before


def test_the_decision_log_names_only_the_users_own_folders(bobs, alice) -> None:
    check_add_folder_rule(alice, "Inbox/AlicesFolder", folder_id="f-AlicesFolder")
    response = client_of(alice.user).get(reverse("web-decisions"))
    assert b"BobsFolder" not in response.content
    assert b"AlicesFolder" in response.content
