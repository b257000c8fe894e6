"""Constraints that make duplicates impossible, the settings registry, and secrets at rest."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.db import IntegrityError, models, transaction
from django.test import override_settings
from django.utils import timezone

from tracking import crypto
from tracking.choices import Direction, Outcome, Reason
from tracking.models import Decision, Mailbox, OrgSettings, Queue, TrackedEmail
from tracking.orgsettings import ORG_SETTINGS


def test_it_keeps_the_registry_and_the_model_in_step():
    for spec in ORG_SETTINGS:
        field = OrgSettings._meta.get_field(spec.field)
        assert isinstance(field, models.Field), spec.name
        assert field.default == spec.default, spec.name
    assert len(ORG_SETTINGS) == 35


@pytest.mark.django_db
def test_it_stores_one_row_of_org_settings():
    assert OrgSettings.load().pk == 1
    with pytest.raises(IntegrityError), transaction.atomic():
        OrgSettings.objects.create(pk=2)


@pytest.mark.django_db
def test_it_allows_one_tracked_email_per_message_id_and_direction():
    TrackedEmail.objects.create(message_id="<a@x>", direction=Direction.INCOMING)
    TrackedEmail.objects.create(message_id="<a@x>", direction=Direction.OUTGOING)
    with pytest.raises(IntegrityError), transaction.atomic():
        TrackedEmail.objects.create(message_id="<a@x>", direction=Direction.INCOMING)


def _decision(mailbox: Mailbox, folder: str) -> Decision:
    return Decision.objects.create(
        mailbox=mailbox,
        folder=folder,
        message_id="<a@x>",
        direction=Direction.INCOMING,
        outcome=Outcome.NOT_TRACKED,
        reason=Reason.NO_CORRELATION,
        decided_at=timezone.now(),
    )


def test_it_allows_one_decision_per_mailbox_folder_and_message_id(alice, bob):
    _decision(alice, "inbox")
    _decision(alice, "sentitems")
    _decision(bob, "inbox")
    with pytest.raises(IntegrityError), transaction.atomic():
        _decision(alice, "inbox")


def test_it_gives_a_mailbox_exactly_one_owner(alice, exchange_profile):
    queue = Queue.objects.create(name="Support", email="support@contoso.com")
    with pytest.raises(IntegrityError), transaction.atomic():
        Mailbox.objects.create(email_address="x@contoso.com", profile=exchange_profile, user=None, queue=None)
    with pytest.raises(IntegrityError), transaction.atomic():
        Mailbox.objects.create(
            email_address="y@contoso.com", profile=exchange_profile, user=alice.user, queue=queue
        )


def test_it_encrypts_profile_secrets_at_rest(exchange_profile):
    exchange_profile.set_secret("hunter2")
    exchange_profile.save()
    exchange_profile.refresh_from_db()
    assert "hunter2" not in exchange_profile.secret_encrypted
    assert exchange_profile.get_secret() == "hunter2"
    assert exchange_profile.has_secret


def test_it_decrypts_with_an_older_key_after_rotation(settings):
    old_key = settings.SYNCADMIN_ENCRYPTION_KEY
    token = crypto.encrypt("s3cret")
    new_key = Fernet.generate_key().decode()
    with override_settings(SYNCADMIN_ENCRYPTION_KEY=f"{new_key},{old_key}"):
        assert crypto.decrypt(token) == "s3cret"
        rotated = crypto.reencrypt(token)
    with override_settings(SYNCADMIN_ENCRYPTION_KEY=new_key):
        assert crypto.decrypt(rotated) == "s3cret"
        with pytest.raises(crypto.SecretUnreadable):
            crypto.decrypt(token)
