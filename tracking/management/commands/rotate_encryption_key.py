from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from tracking import crypto
from tracking.models import EmailServerProfile


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored server-profile secret with the first key of SYNCADMIN_ENCRYPTION_KEY. "
        "Rotate by putting the new key first (keeping the old one after it), running this, then removing "
        "the old key."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        profiles = list(EmailServerProfile.objects.exclude(secret_encrypted=""))
        try:
            with transaction.atomic():
                for profile in profiles:
                    profile.secret_encrypted = crypto.reencrypt(profile.secret_encrypted)
                    profile.save(update_fields=["secret_encrypted"])
        except crypto.SecretUnreadable:
            raise CommandError(
                f"the secret of profile {profile.name!r} cannot be decrypted with any configured key; "
                "nothing was changed (add the old key after the new one)"
            ) from None
        self.stdout.write(f"re-encrypted {len(profiles)} secret(s) with the newest key")
