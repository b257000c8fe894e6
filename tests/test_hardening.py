"""Issue 17, hardening round 2: one test per numbered item, each reproducing the defect it fixes."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from tracking.models import Mailbox

pytestmark = pytest.mark.django_db


def signed_in(user: User) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client


# -- 5. ids are parsed strictly ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "/decisions/?before=%C2%B2",
        "/decisions/?after=%C2%B2",
        "/decisions/?mailbox=%C2%B2",
        "/directory/?after=%C2%B2",
        "/settings/changes/?before=%C2%B2",
        "/what-if/?mailbox=%C2%B2",
        "/what-if/?mailbox=%EF%BC%91",  # a fullwidth digit one
        "/decisions/?before=99999999999999999999999999",
        "/directory/?after=99999999999999999999999999",
    ],
)
def test_odd_ids_are_no_server_error(url: str, admin: User, alice: Mailbox) -> None:
    response = signed_in(admin).get(url)
    assert response.status_code in (200, 400, 404), response.status_code


def test_odd_mailbox_id_in_explain_post_is_no_server_error(admin: User, alice: Mailbox) -> None:
    response = signed_in(admin).post(
        "/explain/", {"mailbox": "²", "folder": "inbox", "message": "From: a@b.c\r\n\r\nx"}
    )
    assert response.status_code in (200, 400, 404), response.status_code
