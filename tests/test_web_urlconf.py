"""Every named route of the product × every role → the expected status, from one table.

A new URL without an entry in EXPECTED (or an entry without a URL) fails the suite, so a view cannot be
added without saying who may open it. POSTs by a wrong role are refused and change nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from tests.conftest import run_command, user_of
from tracking.actions import check_add_folder_rule, check_start_bulk, do_add_exclusion
from tracking.models import (
    AuditEvent,
    BulkOperation,
    CrmRecord,
    Decision,
    EmailServerProfile,
    ExclusionEntry,
    FolderTrackingRule,
    ImportRun,
    Mailbox,
    OrgSettings,
    Queue,
    QueueItem,
    ReprocessRound,
    ScanRun,
    TrackedAttachment,
    TrackedEmail,
)

ROLES = ("anonymous", "user", "other_user", "auditor", "admin")
EXCLUDED_PREFIXES = ("admin/", "i18n/")
LOGIN = 302  # anonymous: to the sign-in page (checked to be /login/?next=...)


def row(anonymous: int, user: int, other_user: int, auditor: int, admin: int) -> dict[str, int]:
    return dict(zip(ROLES, (anonymous, user, other_user, auditor, admin), strict=True))


# GET of each named route. "user" is alice, who owns every object with an id below; "other_user" is bob.
EXPECTED: dict[str, dict[str, int]] = {
    "web-home": row(LOGIN, 302, 302, 302, 302),
    "login": row(200, 302, 302, 302, 302),
    "logout": row(405, 405, 405, 405, 405),
    "web-dashboard": row(LOGIN, 403, 403, 200, 200),
    "web-dashboard-scans": row(LOGIN, 403, 403, 200, 200),
    "web-mailboxes": row(LOGIN, 200, 200, 200, 200),
    "web-mailbox-create": row(LOGIN, 403, 403, 403, 200),
    "web-mailbox-bulk": row(LOGIN, 403, 403, 403, 405),
    "web-bulk-operation": row(LOGIN, 403, 403, 200, 200),
    "web-mailbox-edit": row(LOGIN, 403, 403, 403, 200),
    "web-mailbox-reject": row(LOGIN, 403, 403, 403, 405),
    "web-queue": row(LOGIN, 403, 403, 200, 200),
    "web-queue-item-done": row(LOGIN, 403, 403, 403, 405),
    "web-profile-test": row(LOGIN, 403, 403, 403, 405),
    "web-profile-test-mailboxes": row(LOGIN, 403, 403, 403, 405),
    "web-profile-default": row(LOGIN, 403, 403, 403, 405),
    "web-mailbox": row(LOGIN, 200, 404, 200, 200),
    "web-mailbox-status": row(LOGIN, 200, 404, 200, 200),
    "web-mailbox-approve": row(LOGIN, 403, 403, 403, 405),
    "web-mailbox-test": row(LOGIN, 403, 403, 403, 405),
    "web-mailbox-scan": row(LOGIN, 403, 403, 403, 405),
    "web-mailbox-disable": row(LOGIN, 403, 403, 403, 405),
    "web-mailbox-reset-sync": row(LOGIN, 403, 403, 403, 200),
    "web-mailbox-start-date": row(LOGIN, 403, 403, 403, 405),
    # reprocessing: users their own mailbox (bob has one too), auditors watch and start nothing
    "web-reprocess": row(LOGIN, 200, 200, 403, 200),
    "web-round": row(LOGIN, 200, 404, 200, 200),
    "web-round-cancel": row(LOGIN, 405, 405, 405, 405),
    "web-profiles": row(LOGIN, 403, 403, 200, 200),
    "web-profile-create": row(LOGIN, 403, 403, 403, 200),
    "web-profile-edit": row(LOGIN, 403, 403, 200, 200),
    "web-orgsettings": row(LOGIN, 403, 403, 200, 200),
    "web-orgsettings-changes": row(LOGIN, 403, 403, 200, 200),
    "web-personal-options": row(LOGIN, 200, 200, 200, 200),
    "web-folder-rules": row(LOGIN, 405, 405, 405, 405),
    "web-folder-rule-delete": row(LOGIN, 405, 405, 405, 405),
    "web-decisions": row(LOGIN, 200, 200, 200, 200),
    "web-decisions-export": row(LOGIN, 200, 200, 200, 200),
    "web-decision": row(LOGIN, 200, 404, 200, 200),
    "web-decision-track": row(LOGIN, 405, 405, 405, 405),
    "web-decision-regarding": row(LOGIN, 405, 405, 405, 405),
    "web-decision-untrack": row(LOGIN, 405, 405, 405, 405),
    "web-explain": row(LOGIN, 200, 200, 200, 200),
    "web-what-if": row(LOGIN, 200, 200, 200, 200),
    "web-directory": row(LOGIN, 200, 200, 200, 200),
    "web-directory-import": row(LOGIN, 403, 403, 403, 200),
    "web-directory-import-result": row(LOGIN, 403, 403, 403, 200),
    "web-exclusions": row(LOGIN, 200, 200, 200, 200),
    # OpenID Connect: off in the tests' settings (tests/test_oidc.py turns it on)
    "oidc_authentication_init": row(404, 404, 404, 404, 404),
    "oidc_authentication_callback": row(404, 404, 404, 404, 404),
    "web-oidc-refused": row(403, 403, 403, 403, 403),
    "password_reset": row(200, 200, 200, 200, 200),
    "password_reset_done": row(200, 200, 200, 200, 200),
    "password_reset_confirm": row(200, 200, 200, 200, 200),
    "password_reset_complete": row(200, 200, 200, 200, 200),
    "web-users": row(LOGIN, 403, 403, 403, 200),
    "web-user-invite": row(LOGIN, 403, 403, 403, 405),
    "web-user-role": row(LOGIN, 403, 403, 403, 405),
    "web-user-deactivate": row(LOGIN, 403, 403, 403, 405),
    "web-audit": row(LOGIN, 403, 403, 200, 200),
    "web-audit-export": row(LOGIN, 403, 403, 200, 200),
    "web-exclusion-delete": row(LOGIN, 405, 405, 405, 405),
    # whoever may see a decision of the attachment's email; anyone else 404 (tests/test_tracked_content_web)
    "web-tracked-attachment": row(LOGIN, 200, 404, 200, 200),
    # a tracked email: whoever may see it (tests/test_web_emails); record pages: every signed-in user
    "web-email": row(LOGIN, 200, 404, 200, 200),
    # its HTML body (a frame of its own) and a cid: image of it: as the email
    "web-email-body": row(LOGIN, 200, 404, 200, 200),
    "web-email-inline": row(LOGIN, 200, 404, 200, 200),
    "web-record": row(LOGIN, 200, 200, 200, 200),
    # Microsoft Graph change notifications: public (Graph signs in nowhere), POST only (tests/test_push_graph)
    "web-graph-notifications": row(405, 405, 405, 405, 405),
    "web-graph-lifecycle": row(405, 405, 405, 405, 405),
    # search: every signed-in user, over what each may see (tests/test_search_web.py)
    "web-search": row(LOGIN, 200, 200, 200, 200),
}

# Which fixture object fills <int:pk> of a route.
PK_OF = {
    "web-mailbox": "mailbox",
    "web-mailbox-status": "mailbox",
    "web-mailbox-approve": "mailbox",
    "web-mailbox-test": "mailbox",
    "web-mailbox-scan": "mailbox",
    "web-mailbox-disable": "mailbox",
    "web-mailbox-reset-sync": "mailbox",
    "web-mailbox-start-date": "mailbox",
    "web-profile-edit": "profile",
    "web-mailbox-edit": "mailbox",
    "web-mailbox-reject": "mailbox",
    "web-bulk-operation": "bulk",
    "web-round": "round",
    "web-round-cancel": "round",
    "web-queue": "queue",
    "web-queue-item-done": "queue_item",
    "web-profile-test": "profile",
    "web-profile-test-mailboxes": "profile",
    "web-profile-default": "profile",
    "web-folder-rule-delete": "folder_rule",
    "web-decision": "decision",
    "web-decision-track": "decision",
    "web-decision-regarding": "decision",
    "web-decision-untrack": "decision",
    "web-tracked-attachment": "attachment",
    "web-exclusion-delete": "exclusion",
    "web-user-role": "person",
    "web-user-deactivate": "person",
    "web-directory-import-result": "import_run",
    "web-email": "email",
    "web-email-body": "email",
    "web-email-inline": "image",
    "web-record": "record",
}
# Routes with other parameters, and what fills them (a link that is no longer valid).
KWARGS_OF: dict[str, dict[str, str]] = {
    "password_reset_confirm": {"uidb64": "MQ", "token": "c0ffee-0123456789abcdef"},
    "web-record": {"kind": "contact"},  # with the pk of PK_OF
}

# POSTs by a wrong role: refused with this status, nothing written. Only the refused roles are listed.
POST_REFUSED: dict[str, dict[str, int]] = {
    "web-mailbox-approve": {"user": 403, "other_user": 403, "auditor": 403},
    "web-mailbox-test": {"user": 403, "other_user": 403, "auditor": 403},
    "web-mailbox-scan": {"user": 403, "other_user": 403, "auditor": 403},
    "web-mailbox-disable": {"user": 403, "other_user": 403, "auditor": 403},
    "web-mailbox-reset-sync": {"user": 403, "other_user": 403, "auditor": 403},
    "web-mailbox-start-date": {"user": 403, "other_user": 403, "auditor": 403},
    "web-profile-create": {"user": 403, "other_user": 403, "auditor": 403},
    "web-mailbox-create": {"user": 403, "other_user": 403, "auditor": 403},
    "web-mailbox-bulk": {"user": 403, "other_user": 403, "auditor": 403},
    "web-mailbox-edit": {"user": 403, "other_user": 403, "auditor": 403},
    "web-mailbox-reject": {"user": 403, "other_user": 403, "auditor": 403},
    "web-queue": {"user": 403, "other_user": 403, "auditor": 403},
    "web-queue-item-done": {"user": 403, "other_user": 403, "auditor": 403},
    "web-profile-test": {"user": 403, "other_user": 403, "auditor": 403},
    "web-profile-test-mailboxes": {"user": 403, "other_user": 403, "auditor": 403},
    "web-profile-default": {"user": 403, "other_user": 403, "auditor": 403},
    "web-profile-edit": {"user": 403, "other_user": 403, "auditor": 403},
    "web-orgsettings": {"user": 403, "other_user": 403, "auditor": 403},
    "web-directory-import": {"user": 403, "other_user": 403, "auditor": 403},
    "web-user-invite": {"user": 403, "other_user": 403, "auditor": 403},
    "web-user-role": {"user": 403, "other_user": 403, "auditor": 403},
    "web-user-deactivate": {"user": 403, "other_user": 403, "auditor": 403},
    "web-directory-import-result": {"user": 403, "other_user": 403, "auditor": 403},
    # alice's own objects: anyone else gets 404 (ids cannot be probed); admins may track, not delete hers
    "web-folder-rule-delete": {"other_user": 404, "auditor": 404, "admin": 404},
    "web-exclusion-delete": {"other_user": 404, "auditor": 404, "admin": 404},
    "web-decision-track": {"other_user": 404, "auditor": 403},
    "web-decision-regarding": {"other_user": 404, "auditor": 403},
    "web-decision-untrack": {"other_user": 404, "auditor": 403},
    "web-reprocess": {"auditor": 403},
    "web-round-cancel": {"other_user": 404, "auditor": 403},
}

# Routes whose POST every signed-in user may make: the view keeps it to the user's own objects (other
# users' ids: POST_REFUSED above and tests/test_security.py).
POST_OPEN = {
    "login",
    "web-graph-notifications",
    "web-graph-lifecycle",
    "password_reset",
    "password_reset_confirm",
    "logout",
    "web-personal-options",
    "web-folder-rules",
    "web-folder-rule-delete",
    "web-decision-track",
    "web-decision-regarding",
    "web-decision-untrack",
    "web-explain",
    "web-exclusions",
    "web-exclusion-delete",
    "web-reprocess",
    "web-round-cancel",
}
# Routes that only read: a POST is answered like a GET (or refused) and writes nothing.
READ_ONLY = {
    "web-home",
    "web-dashboard",
    "web-dashboard-scans",
    "web-mailboxes",
    "web-mailbox",
    "web-mailbox-status",
    "web-bulk-operation",
    "web-round",
    "web-profiles",
    "web-orgsettings-changes",
    "web-decisions",
    "web-decisions-export",
    "web-decision",
    "web-tracked-attachment",
    "web-email",
    "web-email-body",
    "web-email-inline",
    "web-record",
    "web-search",
    "web-what-if",
    "web-directory",
    "web-audit",
    "web-audit-export",
    "password_reset_done",
    "password_reset_complete",
    "web-users",
    "oidc_authentication_init",
    "oidc_authentication_callback",
    "web-oidc-refused",
}

# What each refused POST sends (a plausible, valid-looking body, so that only the permission stops it).
POST_DATA: dict[str, dict[str, str]] = {
    "web-mailbox-reset-sync": {"folder": "", "confirm": "on"},
    "web-mailbox-start-date": {"process_emails_received_after": "2024-01-01T00:00"},
    "web-reprocess": {"since": "2024-01-01T00:00", "confirm": "1"},
    "web-profile-create": {"name": "sneaky", "kind": "local", "endpoint": "/tmp"},
    "web-profile-edit": {"name": "renamed", "kind": "exchange_ews", "endpoint": "https://evil.example/EWS"},
    "web-orgsettings": {"setting": "AutoTrackSentFolderItems", "AutoTrackSentFolderItems": ""},
    "web-user-invite": {"email": "mallory@contoso.com", "role": "admin"},
    "web-user-role": {"role": "admin"},
    "web-mailbox-create": {"email_address": "new@contoso.com", "owner_kind": "queue", "queue_name": "Sneaky"},
    "web-mailbox-bulk": {"action": "reject", "scope": "all", "query": ""},
    "web-mailbox-edit": {"incoming_method": "none"},
    "web-queue": {"track": "4"},
    "web-profile-test": {"address": "alice@contoso.com"},
}


def walk(patterns, prefix: str = "") -> list[tuple[str, str | None, URLPattern]]:
    found: list[tuple[str, str | None, URLPattern]] = []
    for entry in patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            if route.startswith(EXCLUDED_PREFIXES):
                continue
            found.extend(walk(entry.url_patterns, route))
        else:
            found.append((route, entry.name, entry))
    return found


def routes() -> list[tuple[str, str | None, URLPattern]]:
    return walk(get_resolver().url_patterns)


@dataclass
class World:
    clients: dict[str, Client]
    ids: dict[str, int]
    alice: Mailbox

    def url(self, name: str) -> str:
        if name in PK_OF:
            return reverse(name, kwargs={"pk": self.ids[PK_OF[name]], **KWARGS_OF.get(name, {})})
        if name in KWARGS_OF:
            return reverse(name, kwargs=KWARGS_OF[name])
        return reverse(name)


def ingest_one(tmp_path: Path) -> Decision:
    msg = EmailMessage()
    msg["From"] = "carla@fabrikam.example"
    msg["To"] = "alice@contoso.com"
    msg["Subject"] = "Permissions"
    msg["Date"] = "Mon, 04 Mar 2024 10:00:00 +0000"
    msg["Message-ID"] = "<urlconf-1@fabrikam.example>"
    msg.set_content("hello")
    path = tmp_path / "one.eml"
    path.write_bytes(bytes(msg))
    run_command("ingest", "--mailbox", "alice@contoso.com", "--folder", "inbox", str(path))
    return Decision.objects.get(message_id="<urlconf-1@fabrikam.example>")


def queue_item_of(queue: Queue) -> int:
    """An active item on the queue's work list."""
    email = TrackedEmail.objects.create(
        message_id=f"<queue-item-{queue.pk}@example.net>", direction="incoming"
    )
    return QueueItem.objects.create(queue=queue, tracked_email=email, created_at=timezone.now()).pk


def attachment_of(decision: Decision) -> int:
    """An attachment with content on the decision's tracked email (one made for it if it has none)."""
    email = decision.tracked_email
    if email is None:
        email = TrackedEmail.objects.create(message_id=decision.message_id, direction=decision.direction)
        Decision.objects.filter(pk=decision.pk).update(tracked_email=email)
    return TrackedAttachment.objects.create(
        tracked_email=email, name="notes.txt", content_type="text/plain", size=5, content=b"hello"
    ).pk


def image_of(decision: Decision) -> int:
    """A cid: image (a PNG with a Content-ID) on the decision's tracked email."""
    assert decision.tracked_email_id is not None
    return TrackedAttachment.objects.create(
        tracked_email_id=decision.tracked_email_id,
        name="logo.png",
        content_type="image/png",
        size=8,
        content=b"\x89PNG\r\n\x1a\n",
        content_id="logo@urlconf",
    ).pk


def round_of(mailbox: Mailbox) -> int:
    """A queued reprocessing round of the mailbox, requested by its owner."""
    round = ReprocessRound.objects.create(
        requested_by=mailbox.user, requested_via="web", since=timezone.now() - timedelta(days=1)
    )
    ScanRun.objects.create(mailbox=mailbox, folder="inbox", source="reprocess", round=round)
    return round.pk


@pytest.fixture
def world(db: None, alice: Mailbox, bob: Mailbox, admin: User, auditor: User, tmp_path: Path) -> World:
    decision = ingest_one(tmp_path)
    queue = Queue.objects.create(name="Support", email="support@contoso.com")
    bulk = check_start_bulk("approve", [alice.pk])
    rule = check_add_folder_rule(alice, "Inbox/Projects", folder_id="f-Projects")
    exclusion = do_add_exclusion("friend@example.org", user=alice.user)
    clients = {}
    for role, user in [
        ("anonymous", None),
        ("user", alice.user),
        ("other_user", bob.user),
        ("auditor", auditor),
        ("admin", admin),
    ]:
        client = Client()
        if user is not None:
            client.force_login(user)
        clients[role] = client
    ids = {
        "mailbox": alice.pk,
        "profile": alice.profile_id,
        "decision": decision.pk,
        "folder_rule": rule.pk,
        "exclusion": exclusion.pk,
        "person": user_of(alice).pk,
        "queue": queue.pk,
        "queue_item": queue_item_of(queue),
        "bulk": bulk.pk,
        "import_run": ImportRun.objects.create(kind="contact", text="name,email\n").pk,
        "round": round_of(alice),
        "attachment": attachment_of(decision),
        "image": image_of(Decision.objects.get(pk=decision.pk)),
        "email": Decision.objects.values_list("tracked_email_id", flat=True).get(pk=decision.pk),
        "record": CrmRecord.objects.create(kind="contact", name="Carla", email1="carla@fabrikam.example").pk,
    }
    return World(clients=clients, ids=ids, alice=alice)


def state() -> tuple[object, ...]:
    """What a refused POST must leave untouched."""
    alice = Mailbox.objects.get(email_address="alice@contoso.com")
    return (
        AuditEvent.objects.count(),
        alice.approval,
        alice.enabled,
        alice.process_emails_received_after,
        FolderTrackingRule.objects.count(),
        ExclusionEntry.objects.count(),
        Decision.objects.filter(outcome="tracked").count(),
        OrgSettings.load().auto_track_sent_folder_items,
        User.objects.filter(is_active=True).count(),
        User.objects.count(),
        User.groups.through.objects.count(),
        alice.incoming_method,
        alice.profile_id,
        BulkOperation.objects.count(),
        ReprocessRound.objects.count(),
        ReprocessRound.objects.filter(cancelled_at__isnull=False).count(),
        Mailbox.objects.count(),
        list(Queue.objects.values_list("track", "owner_id")),
        list(EmailServerProfile.objects.filter(is_default=True).values_list("pk", flat=True)),
        list(QueueItem.objects.values_list("state", "done_at")),
    )


# -- the table and the URL conf agree ---------------------------------------------------------------------


def test_every_route_is_named_and_in_the_table() -> None:
    found = routes()
    unnamed = [route for route, name, _ in found if not name]
    assert not unnamed, f"routes without a name: {unnamed}"
    names = {name for _, name, _ in found}
    assert names - EXPECTED.keys() == set(), "routes without a permission row in EXPECTED"
    assert EXPECTED.keys() - names == set(), "rows in EXPECTED without a route"


def test_every_route_with_an_id_has_an_object() -> None:
    with_pk = {name for route, name, _ in routes() if "<int:pk>" in route}
    assert with_pk == PK_OF.keys()
    other = [
        route for route, name, _ in routes() if "<" in route.replace("<int:pk>", "") and name not in KWARGS_OF
    ]
    assert not other, f"routes with parameters the table cannot fill: {other}"


def test_every_post_table_entry_is_a_route() -> None:
    assert POST_REFUSED.keys() <= EXPECTED.keys()
    assert all(set(refused) <= set(ROLES) - {"anonymous"} for refused in POST_REFUSED.values())


def test_every_route_says_who_may_post_to_it() -> None:
    """A new route needs a POST row too: roles refused (POST_REFUSED), open to all (POST_OPEN), READ_ONLY."""
    names = {name for _, name, _ in routes()}
    assert READ_ONLY.isdisjoint(POST_OPEN | POST_REFUSED.keys())
    assert names - (READ_ONLY | POST_OPEN | POST_REFUSED.keys()) == set(), "routes without a POST row"
    assert (READ_ONLY | POST_OPEN) - names == set(), "POST rows without a route"


# -- GET: each route × each role ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_get_gives_each_role_the_expected_status(world: World, name: str) -> None:
    url = world.url(name)
    got = {role: world.clients[role].get(url).status_code for role in ROLES}
    assert got == EXPECTED[name], url


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_htmx_fragments_give_each_role_the_same_status(world: World, name: str) -> None:
    """The htmx variant of a page (HX-Request, and an HX-Target the views answer with a fragment) is
    guarded exactly like the page."""
    url = world.url(name)
    for target in ("", "track-form"):
        headers = {"HX-Request": "true", "HX-Target": target}
        got = {role: world.clients[role].get(url, headers=headers).status_code for role in ROLES}
        assert got == EXPECTED[name], (url, target)


@pytest.mark.parametrize("name", sorted(n for n, row_ in EXPECTED.items() if row_["anonymous"] == LOGIN))
def test_anonymous_visitors_are_sent_to_sign_in(world: World, name: str) -> None:
    url = world.url(name)
    response = world.clients["anonymous"].get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")


# -- every view says which methods it answers (require_http_methods, require_POST, require_safe)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_route_refuses_a_method_it_does_not_serve(world: World, name: str) -> None:
    """A view without a method decorator would answer PUT like GET; 405 with an Allow header means one
    guards it. Asked by a role that may open the route (the sign-in page: anonymous; the rest: admin)."""
    role = "anonymous" if name in {"login", "logout"} else "admin"
    for method in ("PUT", "DELETE", "PATCH"):
        response = world.clients[role].generic(method, world.url(name))
        assert response.status_code == 405, (name, method)
        assert response.has_header("Allow"), (name, method)
        assert method not in response["Allow"], (name, method)


# -- POST: a wrong role is refused and nothing changes -----------------------------------------------------


@pytest.mark.parametrize(
    ("name", "role"), sorted((name, role) for name, refused in POST_REFUSED.items() for role in refused)
)
def test_a_post_by_a_wrong_role_is_refused_and_changes_nothing(world: World, name: str, role: str) -> None:
    before = state()
    response = world.clients[role].post(world.url(name), POST_DATA.get(name, {}))
    assert response.status_code == POST_REFUSED[name][role]
    assert state() == before


@pytest.mark.parametrize("name", sorted(POST_REFUSED))
def test_an_anonymous_post_is_sent_to_sign_in_and_changes_nothing(world: World, name: str) -> None:
    before = state()
    response = world.clients["anonymous"].post(world.url(name), POST_DATA.get(name, {}))
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")
    assert state() == before


@pytest.mark.parametrize("name", sorted(READ_ONLY))
def test_a_post_to_a_read_only_route_writes_nothing(world: World, name: str) -> None:
    before = state()
    for role in ROLES:
        world.clients[role].post(world.url(name), {"confirm": "on", "folder": "inbox"})
    assert state() == before


def test_a_user_cannot_add_an_org_wide_exclusion(world: World) -> None:
    before = state()
    response = world.clients["user"].post(
        reverse("web-exclusions"), {"scope": "org", "pattern": "@x.example"}
    )
    assert response.status_code == 403
    assert state() == before


def test_a_user_cannot_delete_an_org_wide_exclusion(world: World) -> None:
    entry = do_add_exclusion("@org.example")
    before = state()
    response = world.clients["user"].post(reverse("web-exclusion-delete", kwargs={"pk": entry.pk}))
    assert response.status_code == 403
    assert state() == before


def test_the_refusals_are_real_for_the_right_role(world: World) -> None:
    """The same POST by an admin does change something, so that "nothing changed" above means something."""
    before = AuditEvent.objects.count()
    response = world.clients["admin"].post(
        world.url("web-mailbox-start-date"), POST_DATA["web-mailbox-start-date"]
    )
    assert response.status_code == 302
    assert AuditEvent.objects.count() > before
