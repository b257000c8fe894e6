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
