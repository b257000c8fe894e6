"""The tracked email page (/emails/<pk>/, tracking-rules §2): who may open it, what it shows and links to;
its body frame (CSP, remote images on request) and the body's cid: images."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tests.conftest import login, scan
from tracking.actions import do_purge_content, do_set_personal_options
from tracking.models import CrmRecord, Decision, Mailbox, Queue, QueueItem, TrackedAttachment, TrackedEmail

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


def related(mid: str, html: str) -> bytes:
    return (
        "From: Ann Example <ann@example.net>\r\nTo: alice@contoso.com\r\nCc: carla@fabrikam.example\r\n"
        f"Subject: Logo\r\nDate: Mon, 2 Mar 2026 09:00:00 +0000\r\nMessage-ID: {mid}\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/related; boundary="R"\r\n\r\n'
        f"--R\r\nContent-Type: text/html\r\n\r\n{html}\r\n"
        "--R\r\nContent-Type: image/png\r\nContent-ID: <logo@x>\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        "iVBORw0KGgoAAAAAAAAAAAAAAAAAAAAAAAA=\r\n"
        "--R\r\nContent-Type: image/svg+xml\r\nContent-ID: <vector@x>\r\n\r\n"
        "<svg><script>1</script></svg>\r\n"
        "--R--\r\n"
    ).encode()


@pytest.fixture
def tracked(alice: Mailbox) -> Decision:
    assert alice.user is not None
    do_set_personal_options(alice.user, track=0)
    CrmRecord.objects.create(kind="contact", name="Ann", email1="ann@example.net")
    html = (
        '<p>Hi</p><img alt="logo" src="cid:logo@x"><img alt="vector" src="cid:vector@x">'
        '<img alt="remote" src="https://images.example/banner.png">'
    )
    (decision,) = scan(alice, related("<page@example.net>", html))
    assert decision.tracked_email_id is not None
    return decision


def page(client: Client, decision: Decision, query: str = "") -> str:
    response = client.get(reverse("web-email", args=[decision.tracked_email_id]) + query)
    assert response.status_code == 200
    return response.content.decode()


def test_the_owner_and_auditors_and_admins_see_it_others_get_404(client, tracked, alice, bob, auditor, admin):
    url = reverse("web-email", args=[tracked.tracked_email_id])
    assert login(client, alice.user).get(url).status_code == 200
    assert login(Client(), bob.user).get(url).status_code == 404
    assert login(Client(), auditor).get(url).status_code == 200
    assert login(Client(), admin).get(url).status_code == 200
    assert Client().get(url).status_code == 302
    body_url = reverse("web-email-body", args=[tracked.tracked_email_id])
    assert login(Client(), bob.user).get(body_url).status_code == 404
    assert login(Client(), auditor).get(body_url).status_code == 200


def test_it_shows_headers_parties_linked_to_their_records_regarding_owner_queue_items_and_decisions(
    client, tracked, alice
):
    email = TrackedEmail.objects.get(pk=tracked.tracked_email_id)
    account = CrmRecord.objects.create(kind="account", name="Fabrikam", email1="x@fabrikam.example")
    TrackedEmail.objects.filter(pk=email.pk).update(regarding=account)
    queue = Queue.objects.create(name="Support", email="support@contoso.com")
    QueueItem.objects.create(queue=queue, tracked_email=email, created_at=timezone.now())
    body = page(login(client, alice.user), tracked)
    assert "<code>&lt;page@example.net&gt;</code>" in body
    assert "carla@fabrikam.example" in body and "Incoming" in body
    ann = CrmRecord.objects.get(name="Ann")
    assert f'<a href="{reverse("web-record", args=["contact", ann.pk])}">Ann</a>' in body
    assert f'<a href="{reverse("web-record", args=["user", alice.user.pk])}">' in body
    assert re.search(
        r"<td class=\"break\">carla@fabrikam.example</td>\s*<td><span class=\"muted\">unresolved", body
    )
    assert f'<a href="{reverse("web-record", args=["account", account.pk])}">' in body
    assert f'<a href="{reverse("web-queue", args=[queue.pk])}">Support</a>' in body
    assert f'<a href="{reverse("web-decision", args=[tracked.pk])}">' in body
    assert "image/png, 26\xa0bytes" in body  # the attachments, by name, type and size


def test_the_decision_page_and_the_log_link_to_the_email_page(client, tracked, alice):
    login(client, alice.user)
    email_url = reverse("web-email", args=[tracked.tracked_email_id])
    detail = client.get(reverse("web-decision", args=[tracked.pk])).content.decode()
    assert f'href="{email_url}"' in detail and "<iframe" not in detail
    assert f'href="{email_url}"' in client.get(reverse("web-decisions")).content.decode()


def test_the_frame_points_cid_images_at_signed_urls_and_keeps_remote_images_parked(client, tracked, alice):
    login(client, alice.user)
    framed = client.get(reverse("web-email-body", args=[tracked.tracked_email_id]))
    html = framed.content.decode()
    logo = TrackedAttachment.objects.get(tracked_email_id=tracked.tracked_email_id, content_id="logo@x")
    found = re.search(r'<img alt="logo" src="([^"]+)">', html)
    assert found is not None and found.group(1).startswith(
        reverse("web-email-inline", args=[logo.pk]) + "?t="
    )
    assert '<img alt="vector">' in html  # an SVG is never an inline image
    assert '<img alt="remote" data-remote-src="https://images.example/banner.png">' in html
    assert "img-src 'self' data:;" in framed["Content-Security-Policy"]

    # without a session (the sandboxed frame sends none), the token alone lets this image through
    anonymous = Client().get(found.group(1).replace("&amp;", "&"))
    assert anonymous.status_code == 200 and anonymous.content == logo.content
    assert anonymous["Content-Type"] == "image/png" and anonymous["X-Content-Type-Options"] == "nosniff"
    assert anonymous["Content-Disposition"].startswith("inline")


def test_a_token_is_for_one_attachment_and_one_reader_who_may_see_it(client, tracked, alice, bob):
    from syncadmin.web.views.emails import inline_token

    logo = TrackedAttachment.objects.get(tracked_email_id=tracked.tracked_email_id, content_id="logo@x")
    other = TrackedAttachment.objects.create(
        tracked_email_id=tracked.tracked_email_id,
        name="b.png",
        content_type="image/png",
        size=1,
        content=b"x",
    )
    url = reverse("web-email-inline", args=[logo.pk])
    assert Client().get(f"{url}?t={inline_token(alice.user, other.pk)}").status_code == 404
    assert Client().get(f"{url}?t={inline_token(bob.user, logo.pk)}").status_code == 404  # bob may not
    assert Client().get(f"{url}?t=forged").status_code == 404
    assert Client().get(url).status_code == 302  # no token, no session: sign in
    assert login(Client(), bob.user).get(url).status_code == 404
    assert login(Client(), alice.user).get(url).status_code == 200


def test_remote_images_come_back_only_when_asked(client, tracked, alice):
    login(client, alice.user)
    body = page(client, tracked)
    assert "Remote images are blocked." in body and 'id="show-remote-images"' in body
    shown = page(client, tracked, "?remote_images=1")
    body_url = reverse("web-email-body", args=[tracked.tracked_email_id])
    assert f'src="{body_url}?remote_images=1"' in shown and "Block remote images" in shown
    framed = client.get(f"{body_url}?remote_images=1")
    assert "img-src 'self' data: https:;" in framed["Content-Security-Policy"]
    assert 'data-remote-src="https://images.example/banner.png" src="https://images.example/banner.png"' in (
        framed.content.decode()
    )


def test_an_email_whose_content_was_purged_says_so(client, tracked, alice):
    do_purge_content(timezone.now() + timedelta(days=1), now=timezone.now(), actor_label="cli")
    body = page(login(client, alice.user), tracked)
    assert "removed by the retention policy" in body and "<iframe" not in body
    assert "content removed by the retention policy" in body


def test_in_german(client, tracked, alice):
    do_set_personal_options(alice.user, language="de")
    body = page(login(client, alice.user), tracked)
    for words in ("Beteiligte", "Aufgelöst zu", "Externe Bilder sind blockiert.", "Externe Bilder anzeigen"):
        assert words in body
    assert "Entscheidungen, die dazu führten" in body and "Im CRM" in body
