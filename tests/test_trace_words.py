"""A decision's trace in the reader's language (issue 18): stored in English words, translated on display.

Real traces from the engine (decided the way a scan decides them), read back in English — word for word
what is stored — and in German, where every check and result and the sentences of the details are German.
"""

from __future__ import annotations

from django.urls import reverse
from django.utils import translation

from syncadmin.web.trace_words import shown_trace, translate_detail
from tests.conftest import raw, scan, user_of
from tracking.actions import do_add_exclusion, do_set_personal_options
from tracking.models import CrmRecord, Decision, Mailbox


def traces(alice: Mailbox) -> list[Decision]:
    CrmRecord.objects.create(kind="contact", name="Ann Example", email1="ann@example.net")
    do_add_exclusion("@spam.example")
    first = scan(alice, raw("<t1@example.net>"), raw("<t2@spam.example>", frm="x@spam.example"))
    reply = scan(
        alice, raw("<t3@example.net>", subject="Re: Hello", extra="In-Reply-To: <t1@example.net>\r\n")
    )
    again = scan(alice, raw("<t1@example.net>"))  # the same message again: a duplicate
    unknown = scan(alice, raw("<t4@example.net>", frm="nobody@nowhere.example"))
    return [*first, *reply, *again, *unknown]


def test_in_english_the_trace_reads_as_stored(alice: Mailbox) -> None:
    with translation.override("en"):
        for decision in traces(alice):
            for stored, shown in zip(decision.trace, shown_trace(decision.trace), strict=True):
                assert shown.key == stored["check"]
                assert shown.detail == stored["detail"]
                assert (shown.check, shown.result) == (stored["check"], stored["result"])


def test_in_german_every_check_result_and_sentence_is_german(alice: Mailbox) -> None:
    untranslated = []
    made = traces(alice)  # decided in English, as the workers do
    with translation.override("de"):
        for decision in made:
            for stored, shown in zip(decision.trace, shown_trace(decision.trace), strict=True):
                if stored["check"] != "outcome":
                    assert shown.check != stored["check"], stored
                if not stored["result"].startswith(("ok", "tracked/", "not_tracked/", "already_tracked/")):
                    assert shown.result != stored["result"], stored
                for part in stored["detail"].split("; "):
                    if translate_detail(part) == part and not part.startswith(("Message-ID <", "alice@")):
                        untranslated.append((stored["check"], part))
    # what stays English is data (addresses, ids) or a sentence of the engine no pattern knows yet
    assert untranslated == [], untranslated


def test_a_german_reader_sees_the_trace_in_german_on_the_decision_page(client, alice: Mailbox) -> None:
    decision = traces(alice)[0]
    user = user_of(alice)
    do_set_personal_options(user, language="de")
    client.force_login(user)
    body = client.get(reverse("web-decision", args=[decision.pk])).content.decode()
    assert "Absender" in body and "keine nachverfolgte E-Mail hat diese Message-ID" in body
    assert "no tracked email has this Message-ID" not in body
    assert '<h2 id="message-title">Nachricht</h2>' in body


def test_a_new_sentence_of_the_engine_is_shown_as_stored() -> None:
    with translation.override("de"):
        assert translate_detail("a sentence nobody taught the page; no watermark set") == (
            "a sentence nobody taught the page; kein Wasserzeichen gesetzt"
        )
