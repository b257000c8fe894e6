"""Typed readers for settings that come from environment variables.

Each helper fails loudly (ImproperlyConfigured) on a value it cannot use, so a typo in a
deployment stops the process at start-up instead of surfacing later as odd behaviour.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def envstr(name: str, default: str) -> str:
    return os.environ.get(name, default)


def envbool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use true/false, 1/0, yes/no, on/off)")


def envint(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={raw!r} is below its minimum of {minimum}")
    return value


def envsecret(name: str) -> str | None:
    """Read a secret from NAME, or from the file named by NAME_FILE (Docker/systemd credentials)."""
    value = os.environ.get(name)
    path = os.environ.get(f"{name}_FILE")
    if value and path:
        raise ImproperlyConfigured(f"set {name} or {name}_FILE, not both")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={path!r} cannot be read: {exc}") from None
    return value or None


def envurl(name: str, default: str) -> str:
    """An http(s) URL without a trailing slash, e.g. the public address links in mails point to."""
    raw = os.environ.get(name, default).strip()
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an http:// or https:// URL")
    return raw.rstrip("/")


def is_loopback_host(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def envpublicurl(name: str, *, allow_http: bool) -> str | None:
    """The public https:// address services on the internet call back (Microsoft Graph's change
    notifications), without a trailing slash; None when NAME is not set or is plain http.

    http:// gives None unless `allow_http` (development) or the host is loopback (the tests' simulator):
    Microsoft Graph posts only to https, and a callback over plain http would carry its secrets in clear.
    The same variable makes the links of alert mail, which may stay http on an intranet: push is then off
    (the dashboard says why) rather than the process refusing to start. Anything but an http(s) URL stops it.
    """
    if not os.environ.get(name, "").strip():
        return None
    url = envurl(name, "")
    host = urlsplit(url).hostname or ""
    if url.lower().startswith("http://") and not (allow_http or is_loopback_host(host)):
        return None
    return url


def envport(name: str, default: int) -> int:
    value = envint(name, default, minimum=1)
    if value > 65535:
        raise ImproperlyConfigured(f"{name}={value} is not a TCP port (1–65535)")
    return value
