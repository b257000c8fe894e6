"""Encryption at rest for server-profile secrets (Fernet, keys from SYNCADMIN_ENCRYPTION_KEY).

The setting holds comma-separated keys, newest first: new secrets are encrypted with the first,
and every listed key still decrypts, which is what makes key rotation possible.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.views.decorators.debug import sensitive_variables


def key_problem(value: str) -> str | None:
    """Why SYNCADMIN_ENCRYPTION_KEY cannot encrypt secrets (missing, or a key that is no Fernet key), or None.

    Checked at start-up and by `check --deploy`, so that a bad key stops the process instead of
    failing the first time a secret is saved or read.
    """
    keys = [k.strip() for k in value.split(",") if k.strip()]
    if not keys:
        return "SYNCADMIN_ENCRYPTION_KEY is not set; generate one with " + _GENERATE
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key.encode())
        except (ValueError, TypeError):
            return f"SYNCADMIN_ENCRYPTION_KEY: key {position} is not a Fernet key (32 url-safe base64 bytes)"
    return None


_GENERATE = "'python -c \"from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())\"'"


class SecretUnreadable(Exception):
    """A stored secret that none of the configured keys can decrypt."""


def _keys() -> list[bytes]:
    configured = [k.strip() for k in settings.SYNCADMIN_ENCRYPTION_KEY.split(",") if k.strip()]
    if configured:
        return [k.encode() for k in configured]
    if settings.DEBUG:
        # A development checkout works without set-up; production must name its own key.
        return [base64.urlsafe_b64encode(hashlib.sha256(settings.SECRET_KEY.encode()).digest())]
    raise ImproperlyConfigured(
        "SYNCADMIN_ENCRYPTION_KEY is not set; generate one with "
        "'python -c \"from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())\"'"
    )


def _fernet() -> MultiFernet:
    try:
        return MultiFernet([Fernet(k) for k in _keys()])
    except ValueError as exc:
        raise ImproperlyConfigured(f"SYNCADMIN_ENCRYPTION_KEY holds an invalid Fernet key: {exc}") from None


@sensitive_variables("plaintext")
def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretUnreadable("the stored secret cannot be decrypted with the configured keys") from None


def reencrypt(token: str) -> str:
    """Re-encrypt with the newest key (used by key rotation)."""
    try:
        return _fernet().rotate(token.encode()).decode()
    except InvalidToken:
        raise SecretUnreadable("the stored secret cannot be decrypted with the configured keys") from None
