"""Explain and What-if pages: the engine's answer for a message or a change, writing nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from syncadmin.web.forms.explain import MAX_MESSAGE_BYTES
from tests.conftest import T0, raw, scan, user_of
from tracking.actions import check_set_org_setting, do_set_personal_options
from tracking.models import (
    AuditEvent,
    CrmRecord,
    Decision,
    EmailHash,
    Mailbox,
    OrgSettings,
    PersonalOptions,
    ScanRun,
    TrackedEmail,
)

LOGIN = reverse("login")
EXPLAIN = reverse("web-explain")
WHAT_IF = reverse("web-what-if")
MODELS = (Decision, TrackedEmail, EmailHash, ScanRun, CrmRecord, AuditEvent, OrgSettings)


def counts() -> dict[str, int]:
    return {m.__name__: m.objects.count() for m in MODELS}


def assert_no_writes(queries) -> None:
    for q in queries:
        assert not q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")), q["sql"]


@pytest.fixture(autouse=True)
def org_row(db):
    """The settings row exists, as in any running installation (OrgSettings.load creates it once)."""
    OrgSettings.load()


# ---------------------------------------------------------------------------------------------
# Permissions
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [EXPLAIN, WHAT_IF])
def test_it_sends_anonymous_visitors_to_sign_in(client, url):
    r = client.get(url)
    assert r.status_code == 302 and r["Location"].startswith(LOGIN)


def test_it_refuses_an_anonymous_explain_post(client, alice):
    r = client.post(EXPLAIN, {"mailbox": alice.pk, "folder": "inbox", "raw": raw("<x@y>").decode()})
    assert r.status_code == 302 and r["Location"].startswith(LOGIN)


@pytest.mark.parametrize("url", [EXPLAIN, WHAT_IF])
def test_a_user_sees_only_their_own_mailbox(client, alice, bob, url):
    client.force_login(user_of(alice))
    r = client.get(url)
    assert r.status_code == 200
    assert list(r.context["form"].fields["mailbox"].queryset) == [alice]


def test_a_user_cannot_explain_for_another_mailbox(client, alice, bob):
    client.force_login(user_of(alice))
    r = client.post(EXPLAIN, {"mailbox": bob.pk, "folder": "inbox", "raw": raw("<x@y>").decode()})
    assert r.status_code == 404


def test_a_user_cannot_replay_another_mailbox(client, alice, bob):
    client.force_login(user_of(alice))
    assert client.get(WHAT_IF, {"mailbox": bob.pk, "n": 5, "change": "track", "track": 0}).status_code == 404
    assert client.get(WHAT_IF, {"mailbox": "abc", "n": 5}).status_code == 404


@pytest.mark.parametrize("url", [EXPLAIN, WHAT_IF])
def test_an_auditor_without_a_mailbox_gets_an_explanation(client, auditor, alice, url):
    client.force_login(auditor)
    r = client.get(url)
    assert r.status_code == 200 and r.context["has_mailboxes"] is False
    assert b"you have none" in r.content and b'<form method="post" enctype' not in r.content


def test_an_auditor_cannot_use_someone_elses_mailbox(client, auditor, alice):
    client.force_login(auditor)
    r = client.post(EXPLAIN, {"mailbox": alice.pk, "folder": "inbox", "raw": raw("<x@y>").decode()})
    assert r.status_code == 404
    assert (
        client.get(WHAT_IF, {"mailbox": alice.pk, "n": 5, "change": "track", "track": 0}).status_code == 404
    )


def test_an_admin_may_use_any_mailbox(client, admin, alice, bob):
    client.force_login(admin)
    r = client.get(EXPLAIN)
    assert set(r.context["form"].fields["mailbox"].queryset) == {alice, bob}
    r = client.post(
        EXPLAIN, {"mailbox": bob.pk, "folder": "inbox", "raw": raw("<x@y>", to="bob@contoso.com").decode()}
    )
    assert r.status_code == 200 and r.context["result"] is not None
    r = client.get(WHAT_IF, {"mailbox": bob.pk, "n": 5, "change": "track", "track": 0})
    assert r.status_code == 200 and r.context["report"] is not None


# ---------------------------------------------------------------------------------------------
# Explain
# ---------------------------------------------------------------------------------------------


def test_it_explains_a_pasted_message_and_writes_nothing(client, alice):
    do_set_personal_options(user_of(alice), track=0)
    client.force_login(user_of(alice))
    before = counts()
    with CaptureQueriesContext(connection) as ctx:
        r = client.post(
            EXPLAIN, {"mailbox": alice.pk, "folder": "inbox", "raw": raw("<p1@example.net>").decode()}
        )
    assert r.status_code == 200
    result = r.context["result"]
    assert (result.outcome, result.reason) == ("tracked", "accepted_all")
    body = r.content.decode()
    assert "Accepted: all email messages" in body and "&lt;p1@example.net&gt;" in body
    assert '<li class="outcome">' in body and '<span class="badge tracked">Tracked</span>' in body
    assert "Nothing was saved." in body
    assert counts() == before
    assert_no_writes(ctx.captured_queries)


def test_it_explains_an_uploaded_eml_file(client, alice):
    client.force_login(user_of(alice))
    upload = SimpleUploadedFile("m.eml", raw("<u1@example.net>"), content_type="message/rfc822")
    before = counts()
    r = client.post(EXPLAIN, {"mailbox": alice.pk, "folder": "inbox", "eml": upload})
    assert r.status_code == 200
    assert (r.context["result"].outcome, r.context["result"].reason) == ("not_tracked", "no_correlation")
    assert counts() == before


def test_it_explains_for_sent_items(client, alice):
    client.force_login(user_of(alice))
    r = client.post(
        EXPLAIN,
        {"mailbox": alice.pk, "folder": "sentitems", "raw": raw("<s1@x>", frm="alice@contoso.com").decode()},
    )
    assert (r.context["result"].outcome, r.context["result"].reason) == ("not_tracked", "sent_items_disabled")


def test_an_already_tracked_message_is_explained_as_such(client, alice):
    do_set_personal_options(user_of(alice), track=0)
    scan(alice, raw("<dup@example.net>"))
    client.force_login(user_of(alice))
    before = counts()
    r = client.post(
        EXPLAIN, {"mailbox": alice.pk, "folder": "inbox", "raw": raw("<dup@example.net>").decode()}
    )
    assert r.context["result"].outcome == "already_tracked"
    assert counts() == before


def test_an_unparseable_message_shows_a_failed_decision(client, alice):
    client.force_login(user_of(alice))
    r = client.post(EXPLAIN, {"mailbox": alice.pk, "folder": "inbox", "raw": "this is not an email at all"})
    assert r.status_code == 200
    assert (r.context["result"].outcome, r.context["result"].reason) == ("failed", "unparseable")
    assert b"Message could not be parsed" in r.content


@pytest.mark.parametrize(
    "data,error",
    [
        ({}, "Paste a message"),
        ({"raw": "   \n  "}, "Paste a message"),
        ({"raw": "From: a@b\n\nx", "both": True}, "not both"),
    ],
)
def test_it_refuses_bad_input_with_a_message(client, alice, data, error):
    client.force_login(user_of(alice))
    post = {"mailbox": alice.pk, "folder": "inbox", **data}
    if post.pop("both", False):
        post["eml"] = SimpleUploadedFile("m.eml", raw("<b@x>"))
    r = client.post(EXPLAIN, post)
    assert r.status_code == 400 and r.context["result"] is None
    assert error in r.content.decode()


def test_it_refuses_an_empty_file(client, alice):
    client.force_login(user_of(alice))
    r = client.post(
        EXPLAIN, {"mailbox": alice.pk, "folder": "inbox", "eml": SimpleUploadedFile("m.eml", b"")}
    )
    assert r.status_code == 400  # Django's own "The submitted file is empty."
    assert r.context["form"].errors["eml"]


def test_it_refuses_a_file_over_ten_megabytes(client, alice):
    client.force_login(user_of(alice))
    big = raw("<big@x>") + b"x" * MAX_MESSAGE_BYTES
    r = client.post(
        EXPLAIN, {"mailbox": alice.pk, "folder": "inbox", "eml": SimpleUploadedFile("big.eml", big)}
    )
    assert r.status_code == 400 and r.context["result"] is None
    assert "messages up to 10.0\xa0MB can be explained" in r.content.decode()


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=None)
def test_it_refuses_a_pasted_message_over_ten_megabytes(client, alice):
    client.force_login(user_of(alice))
    big = raw("<big@x>").decode() + "x" * MAX_MESSAGE_BYTES
    r = client.post(EXPLAIN, {"mailbox": alice.pk, "folder": "inbox", "raw": big})
    assert r.status_code == 400 and "larger than 10.0\xa0MB" in r.content.decode()


def test_it_refuses_an_unknown_folder(client, alice):
    client.force_login(user_of(alice))
    r = client.post(EXPLAIN, {"mailbox": alice.pk, "folder": "drafts", "raw": raw("<f@x>").decode()})
    assert r.status_code == 400 and r.context["form"].errors["folder"]


# ---------------------------------------------------------------------------------------------
# What-if
# ---------------------------------------------------------------------------------------------


def what_if(client, mailbox: Mailbox, **params):
    query = {"mailbox": mailbox.pk, "n": 50, **params}
    r = client.get(WHAT_IF, query)
    return r


def test_it_replays_a_track_change_from_all_to_none(client, alice):
    user = user_of(alice)
    do_set_personal_options(user, track=0)
    decisions = scan(alice, raw("<a1@x>"), raw("<a2@x>"), raw("<a3@x>"))
    assert {d.outcome for d in decisions} == {"tracked"}
    client.force_login(user)
    before = counts()
    with CaptureQueriesContext(connection) as ctx:
        r = what_if(client, alice, change="track", track=4)
    assert r.status_code == 200
    report = r.context["report"]
    # the message's own TrackedEmail is left out: "before" is what was recorded, not already_tracked
    assert [(row.before.outcome, row.before.reason) for row in report.rows] == [
        ("tracked", "accepted_all")
    ] * 3
    assert [(row.after.outcome, row.after.reason) for row in report.rows] == [
        ("not_tracked", "option_none")
    ] * 3
    assert [row.decision.pk for row in report.rows] == sorted((d.pk for d in decisions), reverse=True)
    assert [(t.before, t.after, t.count) for t in report.transitions] == [("tracked", "not_tracked", 3)]
    assert report.drifted == 0
    body = r.content.decode()
    assert "would change" in body and "Track option is &#x27;No email messages&#x27;" in body
    assert reverse("web-personal-options") in body  # make the change for real
    assert counts() == before
    assert_no_writes(ctx.captured_queries)
    assert PersonalOptions.objects.get(user=user).track == 0  # the option itself was not changed


def test_it_tells_a_reason_change_from_an_outcome_change(client, alice, admin):
    scan(alice, raw("<n1@x>"), raw("<n2@x>"))  # option 1: not tracked, no correlation
    client.force_login(admin)
    r = what_if(client, alice, change="track", track=2)
    report = r.context["report"]
    assert len(report.rows) == 2 and report.changed_rows == [] and report.transitions == []
    assert report.reason_only == 2 and r.context["rows"] == []
    assert {row.after.reason for row in report.rows} == {"no_crm_party"}
    assert b"same outcome, another reason" in r.content and b"only some reasons would" in r.content
    r = what_if(client, alice, change="track", track=2, show="differences")
    assert len(r.context["rows"]) == 2
    assert b"No lead, contact or account party" in r.content


def test_it_replays_a_track_change_that_changes_nothing(client, alice, admin):
    scan(alice, raw("<n1@x>"), raw("<n2@x>"))
    client.force_login(admin)
    r = what_if(client, alice, change="track", track=1)
    report = r.context["report"]
    assert len(report.rows) == 2 and report.differing_rows == [] and report.transitions == []
    assert b"No decision would differ." in r.content
    # admins get no personal-options link for someone else's mailbox
    assert reverse("web-personal-options").encode() not in r.content.split(b'id="whatif-result"')[1]
    all_rows = client.get(
        WHAT_IF, {"mailbox": alice.pk, "n": 50, "change": "track", "track": 1, "show": "all"}
    )
    assert len(all_rows.context["rows"]) == 2 and b"unchanged" in all_rows.content


def test_it_replays_an_org_setting_change(client, alice, bob, admin):
    """A reply correlated by In-Reply-To is no longer tracked when EmailCorrelationEnabled is false."""
    do_set_personal_options(user_of(bob), track=0)
    scan(bob, raw("<o1@contoso.com>", frm="alice@contoso.com", to="bob@contoso.com", subject="Offer"))
    reply, other = scan(
        alice,
        raw("<r1@northwind.example>", subject="Re: Offer", extra="In-Reply-To: <o1@contoso.com>\r\n"),
        raw("<r2@northwind.example>", subject="Unrelated"),
    )
    assert (reply.outcome, reply.reason, reply.correlation_method) == (
        "tracked",
        "accepted_correlated",
        "in_reply_to",
    )
    assert (other.outcome, other.reason) == ("not_tracked", "no_correlation")
    client.force_login(admin)
    before = counts()
    r = what_if(client, alice, change="setting", setting="EmailCorrelationEnabled", value="false")
    assert r.status_code == 200
    report = r.context["report"]
    changed = report.changed_rows
    assert [row.decision.pk for row in changed] == [reply.pk]
    assert (changed[0].before.outcome, changed[0].before.reason) == ("tracked", "accepted_correlated")
    assert (changed[0].after.outcome, changed[0].after.reason) == ("not_tracked", "no_correlation")
    assert [(t.before, t.after, t.count) for t in report.transitions] == [("tracked", "not_tracked", 1)]
    assert reverse("web-orgsettings").encode() in r.content
    assert OrgSettings.load().email_correlation_enabled is True and counts() == before


def test_a_replay_chains_messages_as_a_scan_would(client, alice):
    """A tracked message's reply, later in the same replay, correlates to it; with option 4 neither is."""
    user = user_of(alice)
    do_set_personal_options(user, track=0)
    first = scan(alice, raw("<c1@x>", subject="Start"))
    do_set_personal_options(user, track=1)
    reply = scan(
        alice,
        raw("<c2@x>", subject="Re: Start", extra="In-Reply-To: <c1@x>\r\n"),
        received=T0 + timedelta(hours=1),
    )
    assert (first[0].reason, reply[0].reason) == ("accepted_all", "accepted_correlated")
    client.force_login(user)
    # with the current option 1 the first message would not be tracked, so its reply would not be either
    report = what_if(client, alice, change="track", track=1).context["report"]
    by_id = {row.decision.pk: row for row in report.rows}
    assert (by_id[first[0].pk].before.reason, by_id[reply[0].pk].before.reason) == (
        "no_correlation",
        "no_correlation",
    )
    assert report.drifted == 2  # recorded under option 0, replayed under today's option 1
    # under option 0 both are tracked again, and the reply correlates to the replayed first message
    report = what_if(client, alice, change="track", track=0).context["report"]
    by_id = {row.decision.pk: row for row in report.rows}
    assert by_id[first[0].pk].after.reason == "accepted_all"
    assert by_id[reply[0].pk].after.reason == "accepted_all"
    correlated = by_id[reply[0].pk].after
    # correlated to the first message as the replay tracked it (a provisional key), not to its old row
    assert correlated.correlation_method == "in_reply_to" and correlated.correlated.key < 0


def test_it_skips_failed_decisions_and_limits_n(client, alice):
    user = user_of(alice)
    scan(alice, b"no headers here\n")
    scan(alice, *(raw(f"<m{i}@x>") for i in range(5)), received=T0 + timedelta(hours=1))
    client.force_login(user)
    report = what_if(client, alice, n=3, change="track", track=0).context["report"]
    assert len(report.rows) == 3 and report.skipped_failed == 0
    report = what_if(client, alice, n=6, change="track", track=0).context["report"]
    assert len(report.rows) == 5 and report.skipped_failed == 1
    assert len(report.changed_rows) == 5


def test_it_leaves_manual_decisions_out(client, alice, admin):
    [decision] = scan(alice, raw("<man@x>"))
    client.force_login(admin)
    client.post(reverse("web-decision-track", args=[decision.pk]))
    report = what_if(client, alice, change="track", track=0).context["report"]
    [row] = report.rows
    assert row.decision.pk == decision.pk
    # the manual decision's TrackedEmail is this mailbox's own: the replay does not see it as a duplicate
    assert (row.before.outcome, row.after.outcome) == ("not_tracked", "tracked")


@pytest.mark.parametrize(
    "params,field",
    [
        ({"change": "track"}, "track"),
        ({"change": "setting", "value": "true"}, "setting"),
        ({"change": "setting", "setting": "EmailCorrelationEnabled", "value": "maybe"}, "value"),
        ({"change": "setting", "setting": "HashMaxCount", "value": "1000"}, "value"),
        ({"change": "setting", "setting": "MailboxPollIntervalMinutes", "value": "10"}, "setting"),
        ({"change": "track", "track": 0, "n": 501}, "n"),
        ({"change": "track", "track": 0, "n": 0}, "n"),
        ({"change": "track", "track": 9}, "track"),
        ({"change": "sideways"}, "change"),
    ],
)
def test_it_validates_the_what_if_form(client, alice, params, field):
    client.force_login(user_of(alice))
    query = {"mailbox": alice.pk, "n": 50, **params}
    r = client.get(WHAT_IF, query)
    assert r.status_code == 400 and r.context["report"] is None
    assert field in r.context["form"].errors


def test_a_refused_setting_value_says_what_it_accepts(client, alice):
    client.force_login(user_of(alice))
    r = what_if(client, alice, change="setting", setting="HashMaxCount", value="1000")
    assert (
        "HashMaxCount: &#x27;1000&#x27; is not valid; it accepts an integer from 1 to 100"
        in r.content.decode()
    )


def test_the_setting_choices_show_current_values(client, alice):
    check_set_org_setting("EnableSmartMatching", "true")
    client.force_login(user_of(alice))
    r = client.get(WHAT_IF)
    labels = dict(r.context["form"].fields["setting"].choices)
    assert labels["EnableSmartMatching"] == "EnableSmartMatching (now true)"
    assert "MailboxPollIntervalMinutes" not in labels


def test_a_forced_filtering_method_is_pointed_out(client, alice):
    check_set_org_setting("SSSForceFilteringMethodForUserMailboxes", "0")
    client.force_login(user_of(alice))
    r = client.get(WHAT_IF)
    assert r.context["forced"] is True and b"SSSForceFilteringMethodForUserMailboxes is set" in r.content


def test_the_help_text_explains_the_replay(client, alice):
    client.force_login(user_of(alice))
    body = client.get(WHAT_IF).content.decode()
    assert "as if it had not been tracked yet" in body and "Nothing is saved." in body
