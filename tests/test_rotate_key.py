"""Key rotation: new key first, rotate, drop the old key; a secret no key can read changes nothing."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.core.management.base import CommandError
from django.test import override_settings

from tracking.crypto import SecretUnreadable
from tracking.models import EmailServerProfile


def test_it_reencrypts_every_secret_with_the_new_key(exchange_profile, cmd, settings):
    old = settings.SYNCADMIN_ENCRYPTION_KEY
    exchange_profile.set_secret("s3cret")
    exchange_profile.save()
    new = Fernet.generate_key().decode()
    with override_settings(SYNCADMIN_ENCRYPTION_KEY=f"{new},{old}"):
        assert "re-encrypted 1 secret" in cmd("rotate_encryption_key").out
    with override_settings(SYNCADMIN_ENCRYPTION_KEY=new):
        assert EmailServerProfile.objects.get().get_secret() == "s3cret"
    # The stored token really is the new key's: the old key alone no longer reads it.
    with override_settings(SYNCADMIN_ENCRYPTION_KEY=old), pytest.raises(SecretUnreadable):
        EmailServerProfile.objects.get().get_secret()


def test_it_reencrypts_every_profile_and_says_how_many(exchange_profile, imap_profile, cmd, settings):
    old = settings.SYNCADMIN_ENCRYPTION_KEY
    for profile, secret in ((exchange_profile, "one"), (imap_profile, "two")):
        profile.set_secret(secret)
        profile.save()
    new = Fernet.generate_key().decode()
    with override_settings(SYNCADMIN_ENCRYPTION_KEY=f"{new},{old}"):
        assert "re-encrypted 2 secret(s)" in cmd("rotate_encryption_key").out
    with override_settings(SYNCADMIN_ENCRYPTION_KEY=new):
        assert {p.name: p.get_secret() for p in EmailServerProfile.objects.all()} == {
            "exchange": "one",
            "imap": "two",
        }


def test_it_changes_nothing_when_a_secret_cannot_be_read(exchange_profile, cmd):
    exchange_profile.set_secret("s3cret")
    exchange_profile.save()
    before = EmailServerProfile.objects.get().secret_encrypted
    with (
        override_settings(SYNCADMIN_ENCRYPTION_KEY=Fernet.generate_key().decode()),
        pytest.raises(CommandError),
    ):
        cmd("rotate_encryption_key")
    assert EmailServerProfile.objects.get().secret_encrypted == before
