"""The Django admin does not bypass the product: every product model is read-only there, superusers
included, so no change escapes the product's validation and audit trail (issue 15, part 5)."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from tracking.models import AuditEvent, Mailbox, OrgSettings


@pytest.fixture
def root(db: None) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root", "root@contoso.com", "pw-root-123"))
    return client


def change_url(obj: object) -> str:
    meta = obj._meta  # type: ignore[attr-defined]
    return reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk])  # type: ignore[attr-defined]


def test_every_product_model_is_read_only_in_the_admin(rf) -> None:
    request = rf.get("/admin/")
    request.user = User(is_superuser=True, is_staff=True, is_active=True)
    for model in apps.get_app_config("tracking").get_models():
        model_admin = admin.site._registry.get(model)
        if model_admin is None:
            continue
        name = model.__name__
        assert not model_admin.has_add_permission(request), name
        assert not model_admin.has_change_permission(request), name
        assert not model_admin.has_delete_permission(request), name


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("hash_filter_keywords", "(unclosed"),
        ("tracking_token_id_digits", "0"),
        ("tracking_token_counter_digits", "0"),
    ],
)
def test_a_superuser_cannot_save_an_invalid_org_setting_there(root: Client, field: str, bad: str) -> None:
    org = OrgSettings.load()
    before = getattr(org, field)
    response = root.post(change_url(org), {field: bad, "_save": "1"})
    assert response.status_code == 403
    assert getattr(OrgSettings.load(), field) == before
    assert not AuditEvent.objects.exclude(action="signed_in").exists()
    assert root.get(change_url(org)).status_code == 200  # still readable


def test_a_superuser_cannot_set_a_poll_interval_of_zero_there(root: Client, alice: Mailbox) -> None:
    org = OrgSettings.load()
    audits = AuditEvent.objects.count()
    response = root.post(change_url(org), {"poll_interval_minutes": "0", "_save": "1"})
    assert response.status_code == 403
    assert OrgSettings.load().poll_interval_minutes > 0
    mailbox_page = root.post(change_url(alice), {"email_address": "x@evil.example", "_save": "1"})
    assert mailbox_page.status_code == 403
    assert Mailbox.objects.get(pk=alice.pk).email_address == "alice@contoso.com"
    assert AuditEvent.objects.count() == audits
