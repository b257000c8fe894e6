"""OpenID Connect sign-in against a real provider: panva/oidc-provider (Node, OpenID Certified, from npm)
started on loopback HTTPS with a test CA, and Chromium (Playwright) walking the whole authorization-code
flow — the provider's own sign-in and consent pages, state, nonce and PKCE, the ID token checked against
the provider's keys — through syncadmin/oidc.py.

Needs `node` and `npm ci --prefix tests/oidc_provider` (.ci/services does both).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import trustme
from django.contrib.auth.models import User

from syncadmin.oidc import forget_discovery
from tracking.actions import role_of
from tracking.choices import Role
from tracking.models import AuditEvent, Mailbox

playwright_sync = pytest.importorskip("playwright.sync_api")
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.browser]

PROVIDER_DIR = Path(__file__).parent / "oidc_provider"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
CLIENT_ID, CLIENT_SECRET = "syncadmin-test", "a-test-client-secret-of-32-chars!"
TIMEOUT_MS = 15_000

if shutil.which("node") is None or not (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
    pytest.skip(
        "the test OpenID provider needs node and `npm ci --prefix tests/oidc_provider` (.ci/services)",
        allow_module_level=True,
    )
if not Path(CHROMIUM).exists():  # pragma: no cover
    pytest.skip("Debian chromium is not installed", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Provider:
    issuer: str
    ca_file: Path
    accounts_file: Path
    config_file: Path
    process: subprocess.Popen[bytes] | None = None

    def set_accounts(self, accounts: Mapping[str, Mapping[str, object]]) -> None:
        self.accounts_file.write_text(json.dumps(accounts))

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["node", str(PROVIDER_DIR / "server.js"), str(self.config_file)],
            cwd=PROVIDER_DIR,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"{self.issuer}/.well-known/openid-configuration"
        for _ in range(100):
            try:
                if requests.get(url, verify=str(self.ca_file), timeout=2).ok:
                    return
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError("the test OpenID provider did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture(scope="module")
def provider(live_server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    work = tmp_path_factory.mktemp("oidc")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca.cert_pem.write_to_path(str(work / "ca.pem"))
    cert.private_key_pem.write_to_path(str(work / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(work / "cert.pem"))
    port = free_port()
    issuer = f"https://127.0.0.1:{port}"
    config = {
        "port": port,
        "issuer": issuer,
        "key": str(work / "key.pem"),
        "cert": str(work / "cert.pem"),
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "redirect_uri": f"{live_server.url}/oidc/callback/",
        "accounts": str(work / "accounts.json"),
    }
    (work / "config.json").write_text(json.dumps(config))
    running = Provider(issuer, work / "ca.pem", work / "accounts.json", work / "config.json")
    running.set_accounts({})
    running.start()
    yield running
    running.stop()


@pytest.fixture
def oidc(provider: Provider, settings) -> Provider:
    settings.OIDC_ENABLED = True
    settings.OIDC_ISSUER = provider.issuer
    settings.OIDC_RP_CLIENT_ID = CLIENT_ID
    settings.OIDC_RP_CLIENT_SECRET = CLIENT_SECRET
    settings.OIDC_VERIFY_SSL = str(provider.ca_file)
    settings.OIDC_PROVIDER_NAME = "Microsoft"
    settings.OIDC_CREATE_USERS = False
    settings.AUTHENTICATION_BACKENDS = [
        "axes.backends.AxesStandaloneBackend",
        "syncadmin.oidc.ProviderBackend",
        "syncadmin.web.backends.LocalPasswordBackend",
    ]
    forget_discovery()
    if provider.process is None:
        provider.start()
    return provider


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with playwright_sync.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, live_server):
    # The browser is not told about the test CA; SyncAdmin's server side is, and checks it strictly.
    context = browser.new_context(base_url=live_server.url, ignore_https_errors=True)
    context.set_default_timeout(TIMEOUT_MS)
    yield context.new_page()
    context.close()


@pytest.fixture
def people(transactional_db, admin: User, auditor: User, alice: Mailbox) -> dict[str, object]:
    return {"ada": admin, "audrey": auditor, "alice": alice}


def sign_in_with_provider(page, live_url: str, account: str) -> None:
    """From SyncAdmin's sign-in page through the provider's sign-in and consent pages, and back."""
    page.goto("/login/")
    page.get_by_role("link", name="Sign in with Microsoft").click()
    page.wait_for_load_state()
    for _ in range(4):
        if page.url.startswith(live_url):
            return
        if page.locator('input[name="login"]').count():
            page.fill('input[name="login"]', account)
            page.fill('input[name="password"]', "any")
        page.locator('button[type="submit"]').first.click()
        page.wait_for_load_state()
    assert page.url.startswith(live_url), page.url


def status_of(page, path: str) -> int:
    response = page.goto(path)
    assert response is not None
    return int(response.status)


ACCOUNTS = {
    "ada-oid": {"email": "ADA@contoso.com", "roles": ["SyncAdmin.Admin"]},
    "audrey-oid": {"email": "audrey@contoso.com", "roles": ["SyncAdmin.Auditor"]},
    "alice-oid": {"preferred_username": "Alice@Contoso.com", "roles": []},
    "stranger-oid": {"email": "stranger@fabrikam.example", "roles": ["SyncAdmin.Admin"]},
}


def test_an_admin_role_opens_the_admin_pages(oidc: Provider, people, page, live_server) -> None:
    oidc.set_accounts(ACCOUNTS)
    sign_in_with_provider(page, live_server.url, "ada-oid")
    assert status_of(page, "/users/") == 200
    event = AuditEvent.objects.filter(action="signed_in", target="ada").get()
    assert event.new_value == "Microsoft"


def test_an_auditor_role_reads_and_changes_nothing(oidc: Provider, people, page, live_server) -> None:
    oidc.set_accounts(ACCOUNTS)
    sign_in_with_provider(page, live_server.url, "audrey-oid")
    assert status_of(page, "/audit/") == 200
    assert status_of(page, "/users/") == 403


def test_a_mailbox_owner_is_matched_without_a_duplicate_user(
    oidc: Provider, people, page, live_server
) -> None:
    oidc.set_accounts(ACCOUNTS)
    users = User.objects.count()
    sign_in_with_provider(page, live_server.url, "alice-oid")
    assert status_of(page, "/mailboxes/") == 200
    assert User.objects.count() == users
    assert AuditEvent.objects.filter(action="signed_in", target="alice").exists()


def test_an_unknown_person_is_refused_with_a_clear_page(oidc: Provider, people, page, live_server) -> None:
    oidc.set_accounts(ACCOUNTS)
    users = User.objects.count()
    sign_in_with_provider(page, live_server.url, "stranger-oid")
    assert "/oidc/refused/" in page.url
    assert "no user with your email address" in page.content()
    assert User.objects.count() == users
    assert status_of(page, "/dashboard/") == 200 and "/login/" in page.url  # not signed in


def test_a_role_removed_in_the_provider_is_removed_at_the_next_sign_in(
    oidc: Provider, people, page, browser, live_server
) -> None:
    oidc.set_accounts({"alice-oid": {"email": "alice@contoso.com", "roles": ["SyncAdmin.Admin"]}})
    sign_in_with_provider(page, live_server.url, "alice-oid")
    alice = people["alice"].user
    assert role_of(User.objects.get(pk=alice.pk)) == Role.ADMIN
    oidc.set_accounts({"alice-oid": {"email": "alice@contoso.com", "roles": []}})
    fresh = browser.new_context(base_url=live_server.url, ignore_https_errors=True)
    again = fresh.new_page()
    sign_in_with_provider(again, live_server.url, "alice-oid")
    assert role_of(User.objects.get(pk=alice.pk)) == Role.USER
    assert status_of(again, "/users/") == 403
    fresh.close()


def test_provider_down_is_a_clear_page_and_local_sign_in_still_works(
    oidc: Provider, people, page, live_server
) -> None:
    oidc.stop()
    forget_discovery()
    page.goto("/login/")
    page.get_by_role("link", name="Sign in with Microsoft").click()
    page.wait_for_load_state()
    assert "Microsoft cannot be reached" in page.content()
    page.get_by_role("link", name="Sign in with a password instead").click()
    page.fill('input[name="username"]', "ada")
    page.fill('input[name="password"]', "pw-ada-123")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()
    assert "/login/" not in page.url
