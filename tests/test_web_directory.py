"""CRM directory: browsing with filters and keyset pages, and the admins' CSV import."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from tests.conftest import login
from tests.rq_helpers import burst
from tracking.actions import do_set_personal_options
from tracking.models import CrmRecord, PersonalOptions

URL = reverse("web-directory")
IMPORT = reverse("web-directory-import")


def names(body: str) -> list[str]:
    """Record names in table order."""
    if "<tbody>" not in body:
        return []
    rows = body.split("<tbody>")[1].split("</tbody>")[0].split('<tr id="record-')[1:]
    # each name links to its record page
    return [re.sub(r"<[^>]+>", "", row.split("<td>")[1].split("</td>")[0]) for row in rows]


def csv_file(text: str | bytes, name: str = "records.csv") -> SimpleUploadedFile:
    data = text.encode() if isinstance(text, str) else text
    return SimpleUploadedFile(name, data, content_type="text/csv")


@pytest.fixture
def records(alice_user: User) -> dict[str, CrmRecord]:
    make = CrmRecord.objects.create
    return {
        "contoso": make(kind="account", name="Contoso Ltd", email1="info@contoso-ltd.com", owner=alice_user),
        "fabrikam": make(kind="account", name="Fabrikam", email1="hello@fabrikam.com", active=False),
        "dana": make(kind="contact", name="Dana Smith", email1="dana@fabrikam.com", email2="ds@home.example"),
        "lee": make(kind="lead", name="Lee Park", email1="lee@northwind.example"),
        "rival": make(kind="other", other_kind="Competitor", name="Rival Corp", email1="sales@rival.example"),
    }


# --- permissions ------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [URL, IMPORT, IMPORT + "?sample=csv"])
def test_it_sends_anonymous_visitors_to_sign_in(client: Client, db: None, url: str) -> None:
    r = client.get(url)
    assert r.status_code == 302 and r["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("who", ["alice", "bob", "auditor", "admin"])
def test_every_signed_in_user_browses(
    client: Client, records: dict[str, CrmRecord], bob: object, auditor: User, admin: User, who: str
) -> None:
    user = {
        "alice": records["contoso"].owner,
        "bob": User.objects.get(username="bob"),
        "auditor": auditor,
        "admin": admin,
    }[who]
    assert isinstance(user, User)
    r = login(client, user).get(URL)
    assert r.status_code == 200
    assert sorted(names(r.content.decode())) == sorted(r.name for r in records.values())


@pytest.mark.parametrize("who", ["alice", "auditor"])
def test_only_admins_import(client: Client, alice_user: User, auditor: User, who: str) -> None:
    user = alice_user if who == "alice" else auditor
    login(client, user)
    assert client.get(IMPORT).status_code == 403
    assert client.get(IMPORT + "?sample=csv").status_code == 403
    r = client.post(IMPORT, {"kind": "contact", "file": csv_file("name,email\nEve,eve@example.com\n")})
    assert r.status_code == 403
    assert not CrmRecord.objects.exists()
    assert reverse("web-directory-import") not in client.get(URL).content.decode()


def test_admins_see_the_import_link(client: Client, admin: User) -> None:
    assert f'href="{IMPORT}"' in login(client, admin).get(URL).content.decode()


# --- browsing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("?kind=account", ["Contoso Ltd", "Fabrikam"]),
        ("?kind=contact", ["Dana Smith"]),
        ("?kind=lead", ["Lee Park"]),
        ("?kind=other", ["Rival Corp"]),
        ("?q=fabrikam", ["Dana Smith", "Fabrikam"]),  # name or address
        ("?q=PARK", ["Lee Park"]),
        ("?q=ds@HOME", ["Dana Smith"]),  # second address, any case
        ("?active=no", ["Fabrikam"]),
        ("?active=yes&kind=account", ["Contoso Ltd"]),
        ("?q=nothing-like-this", []),
    ],
)
def test_it_filters(
    client: Client, admin: User, records: dict[str, CrmRecord], query: str, expected: list[str]
) -> None:
    assert names(login(client, admin).get(URL + query).content.decode()) == expected


def test_it_filters_by_owner(client: Client, admin: User, records: dict[str, CrmRecord]) -> None:
    owner = records["contoso"].owner
    assert owner is not None
    assert names(login(client, admin).get(f"{URL}?owner={owner.pk}").content.decode()) == ["Contoso Ltd"]


def test_it_shows_kind_owner_addresses_and_status(
    client: Client, admin: User, records: dict[str, CrmRecord]
) -> None:
    body = login(client, admin).get(URL).content.decode()
    rival = body.split(f'id="record-{records["rival"].pk}"')[1].split("</tr>")[0]
    assert "<td>Competitor</td>" in rival
    dana = body.split(f'id="record-{records["dana"].pk}"')[1].split("</tr>")[0]
    assert "dana@fabrikam.com" in dana and "ds@home.example" in dana
    contoso = body.split(f'id="record-{records["contoso"].pk}"')[1].split("</tr>")[0]
    assert "alice" in contoso and "Active" in contoso
    assert "Inactive" in body.split(f'id="record-{records["fabrikam"].pk}"')[1].split("</tr>")[0]


def test_kind_tabs_keep_the_other_filters(client: Client, admin: User, records: dict[str, CrmRecord]) -> None:
    body = login(client, admin).get(URL + "?q=fab&kind=contact").content.decode()
    assert f'<a href="{URL}?q=fab&amp;kind=account" >' in body
    assert f'<a href="{URL}?q=fab&amp;kind=contact" aria-current="page">' in body
    assert f'<a href="{URL}?q=fab" >' in body


def test_an_invalid_filter_shows_a_message(
    client: Client, admin: User, records: dict[str, CrmRecord]
) -> None:
    r = login(client, admin).get(URL + "?kind=planet")
    assert r.status_code == 200
    assert "Some filters are not valid" in r.content.decode()
    assert names(r.content.decode()) == []


def test_htmx_gets_only_the_results(client: Client, admin: User, records: dict[str, CrmRecord]) -> None:
    r = login(client, admin).get(URL + "?kind=lead&q=park", headers={"HX-Request": "true"})
    body = r.content.decode()
    assert body.startswith('<div id="directory-results">')
    assert "<html" not in body and "<form" not in body
    assert names(body) == ["Lee Park"]
    # the kind tabs come along out of band, so that they keep the new filters
    tabs = body.split('id="directory-tabs"')[1].split("</nav>")[0]
    assert 'hx-swap-oob="true"' in tabs
    assert f'href="{URL}?q=park&amp;kind=account"' in tabs


def test_a_full_page_has_the_tabs_in_place(client: Client, admin: User) -> None:
    body = login(client, admin).get(URL).content.decode()
    assert 'id="directory-tabs"' in body and "hx-swap-oob" not in body


def test_it_pages_by_the_users_rows_per_page(client: Client, alice_user: User) -> None:
    CrmRecord.objects.bulk_create(
        [CrmRecord(kind="contact", name=f"Person {i:02d}", email1=f"p{i}@example.com") for i in range(23)]
        + [CrmRecord(kind="contact", name="Person 05", email1="twin@example.com")]  # a tie on the name
    )
    do_set_personal_options(alice_user, rows_per_page=10)
    login(client, alice_user)
    seen: list[str] = []
    url = URL + "?kind=contact"
    pages = 0
    while url:
        body = client.get(url).content.decode()
        page = names(body)
        assert len(page) <= 10
        seen += page
        pages += 1
        url = (
            body.split('rel="next"')[0].rsplit('href="', 1)[1].split('"')[0].replace("&amp;", "&")
            if ('rel="next"' in body)
            else ""
        )
        if pages > 1:
            assert "First page" in body
    assert pages == 3
    assert len(seen) == 24
    assert seen == sorted(seen)
    assert seen.count("Person 05") == 2


def test_a_user_without_personal_options_gets_the_default_page_and_nothing_is_written(
    client: Client, admin: User
) -> None:
    """Reading the page size is a read: a GET creates no Personal Options row."""
    CrmRecord.objects.bulk_create(
        [CrmRecord(kind="contact", name=f"Person {i:02d}", email1=f"p{i}@example.com") for i in range(51)]
    )
    assert not PersonalOptions.objects.filter(user=admin).exists()
    body = login(client, admin).get(URL).content.decode()
    assert len(names(body)) == 50 and 'rel="next"' in body
    assert not PersonalOptions.objects.filter(user=admin).exists()


def test_it_shows_empty_states(client: Client, admin: User, alice_user: User) -> None:
    assert "The CRM directory is empty." in login(client, admin).get(URL).content.decode()
    assert "Import records from a CSV file." in client.get(URL).content.decode()
    body = login(client, alice_user).get(URL).content.decode()
    assert "The CRM directory is empty." in body and "Import records from a CSV file." not in body
    assert "No records match these filters." in client.get(URL + "?q=zzz").content.decode()


# --- import -----------------------------------------------------------------------------------


def test_it_offers_a_sample_header(client: Client, admin: User) -> None:
    assert f'href="{IMPORT}?sample=csv"' in login(client, admin).get(IMPORT).content.decode()
    r = client.get(IMPORT + "?sample=csv")
    assert r.status_code == 200
    assert r["Content-Type"].startswith("text/csv")
    assert "attachment" in r["Content-Disposition"]
    assert r.content.decode().strip() == "name,email,email2,email3,owner,kind,active"


def test_it_imports_and_reports_every_rejected_row(
    client: Client, admin: User, alice_user: User, django_capture_on_commit_callbacks: Any
) -> None:
    CrmRecord.objects.create(kind="contact", name="Dana Smith", email1="dana@fabrikam.com", active=True)
    text = (
        "name,email,owner,active\n"
        "Dana Smith,dana@fabrikam.com,alice,false\n"  # line 2: updates the existing record
        "Eve Adams,eve@example.com,,\n"  # line 3: created
        ",nobody@example.com,,\n"  # line 4: no name
        "Frank,not-an-address,,\n"  # line 5
        "Gina,gina@example.com,mallory,\n"  # line 6: unknown owner
        "Hal,hal@example.com,,perhaps\n"  # line 7
    )
    with django_capture_on_commit_callbacks(execute=True):  # the job is sent when the request commits
        r = login(client, admin).post(IMPORT, {"kind": "contact", "file": csv_file(text)})
    assert r.status_code == 302
    assert "Importing" in client.get(r["Location"]).content.decode()  # queued: the page polls for progress
    burst()
    body = client.get(r["Location"]).content.decode()
    assert "hx-trigger" not in body  # finished: no more polling
    report = body.split('id="import-report"')[1].split("</section>")[0]
    assert '<div class="value">1</div><div class="label">created</div>' in report
    assert '<div class="value">1</div><div class="label">updated</div>' in report
    assert '<div class="value">4</div><div class="label">rejected</div>' in report
    rows = report.split("<tbody>")[1].split("</tbody>")[0]
    assert '<tr><td class="num">4</td><td>name is empty</td></tr>' in rows
    assert '<td class="num">5</td><td>email &#x27;not-an-address&#x27; is not an email address</td>' in rows
    assert '<td class="num">6</td><td>owner &#x27;mallory&#x27; is not a user</td>' in rows
    assert '<td class="num">7</td>' in rows
    dana = CrmRecord.objects.get(name="Dana Smith")
    assert dana.active is False and dana.owner == alice_user
    assert CrmRecord.objects.filter(kind="contact", name="Eve Adams", email1="eve@example.com").exists()
    assert CrmRecord.objects.count() == 2


def test_it_imports_other_records_with_their_kind(
    client: Client, admin: User, django_capture_on_commit_callbacks: Any
) -> None:
    text = "\ufeffname,email,kind\nRival Corp,sales@rival.example,Competitor\n"  # Excel's UTF-8 BOM
    with django_capture_on_commit_callbacks(execute=True):
        login(client, admin).post(IMPORT, {"kind": "other", "file": csv_file(text)})
    burst()
    record = CrmRecord.objects.get()
    assert (record.kind, record.other_kind, record.name) == ("other", "Competitor", "Rival Corp")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"kind": "contact"}, "Choose a CSV file to import."),
        ({"kind": "planet", "file": "name,email\nA,a@example.com\n"}, "Select a valid choice."),
        ({"kind": "contact", "file": "first,last\nA,B\n"}, "the CSV header must have name and email"),
        (
            {"kind": "contact", "file": "name,email,phone\nA,a@example.com,1\n"},
            "unknown CSV column(s): phone",
        ),
        (
            {"kind": "contact", "file": "name,email\nJürgen,j@example.de\n".encode("latin-1")},
            "not UTF-8 text",
        ),
        ({"kind": "contact", "file": b"PK\x03\x04\x00\x00binary"}, "not a CSV text file"),
        ({"kind": "contact", "file": b""}, "The file is empty."),
    ],
)
def test_it_refuses_bad_imports(client: Client, admin: User, data: dict[str, object], message: str) -> None:
    post = dict(data)
    if "file" in post:
        raw = post["file"]
        assert isinstance(raw, str | bytes)
        post["file"] = csv_file(raw)
    r = login(client, admin).post(IMPORT, post)
    assert r.status_code == 400
    body = r.content.decode().replace("&#x27;", "'")
    assert message in body
    assert "Nothing was imported" in body
    assert 'id="import-report"' not in body
    assert not CrmRecord.objects.exists()
