"""The IMAP source against a real Dovecot on loopback (tests/dovecot.py), Maildirs built from Enron mail."""

from __future__ import annotations

import itertools
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme

from tests.conftest import CORPORA, make_mailbox
from tests.dovecot import Dovecot, MailUser, corpus_messages, date_of, make_message, message_id_of
from tests.rq_helpers import free_port
from tracking.actions import ProfileValues, check_add_profile
from tracking.choices import Outcome, ScanStatus
from tracking.messages import ParseFailure, RawItem
from tracking.models import Decision, FolderSyncState, TrackedEmail
from tracking.scanning import run_test_and_enable, scan_folder
from tracking.sources.base import ConnectionSettings, SourceError, SyncPage, SyncStateInvalid
from tracking.sources.imap import SENT_ITEMS_UNSUPPORTED, ImapSource, uid_set

ENRON_INBOX = CORPORA / "enron-mbox/allen-p/inbox.mbox"
_names = itertools.count(1)


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    try:
        server = Dovecot.start()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    with server:
        yield server


@pytest.fixture(scope="module")
def inbox_messages() -> list[bytes]:
    return corpus_messages(ENRON_INBOX)


@pytest.fixture
def phil(dovecot: Dovecot, inbox_messages: list[bytes]) -> MailUser:
    """A fresh user per test (one server per module) whose INBOX is Phillip Allen's 66 Enron messages."""
    return dovecot.add_user(f"phil{next(_names)}", messages=inbox_messages)


@pytest.fixture
def few(dovecot: Dovecot, inbox_messages: list[bytes]) -> MailUser:
    """A fresh user with five messages in INBOX and three in a Projects folder."""
    return dovecot.add_user(
        f"few{next(_names)}", messages=inbox_messages[:5], folders={"Projects": inbox_messages[5:8]}
    )


def settings(server: Dovecot, user: MailUser, **overrides: object) -> ConnectionSettings:
    values: dict[str, object] = {
        "kind": "imap",
        "mailbox": f"{user.name}@enron.com",
        "endpoint": server.imaps_url,
        "auth_method": "password",
        "username": user.name,
        "secret": user.password,
        "ca_bundle": str(server.ca_file),
        "timeout": 10.0,
    }
    values.update(overrides)
    return ConnectionSettings(**values)  # type: ignore[arg-type]


def source(server: Dovecot, user: MailUser, **overrides: object) -> ImapSource:
    return ImapSource(settings(server, user, **overrides))


def items_of(pages: list[SyncPage]) -> list[RawItem]:
    out = []
    for page in pages:
        for item in page.items:
            assert isinstance(item, RawItem)
            out.append(item)
    return out


def ids_of(pages: list[SyncPage]) -> list[str]:
    return [message_id_of(i.data) for i in items_of(pages)]


def sync_error(src: ImapSource, folder: str = "inbox", state: str = "") -> SourceError:
    with pytest.raises(SourceError) as info:
        list(src.sync(folder, state))
    return info.value


# -- full and incremental sync ----------------------------------------------------------------------


def test_it_syncs_the_whole_inbox(dovecot, phil, inbox_messages):
    pages = list(source(dovecot, phil).sync("inbox", ""))

    assert len(pages) == 1 and pages[0].more is False and pages[0].estimated_total == 66
    assert sorted(ids_of(pages)) == sorted(message_id_of(raw) for raw in inbox_messages)
    items = items_of(pages)
    validity = pages[0].state.split(":")[0]
    assert [i.provider_item_id for i in items] == [f"{validity}:{uid}" for uid in range(1, 67)]
    assert pages[-1].state == f"{validity}:66"
    by_id = {message_id_of(raw): raw for raw in inbox_messages}
    for item in items:
        # INTERNALDATE, which the fixture set from each message's Date: header.
        assert item.received_at == date_of(by_id[message_id_of(item.data)])
        assert item.data == by_id[message_id_of(item.data)].replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def test_it_pages_by_page_size_and_resumes_from_any_page(dovecot, phil):
    src = source(dovecot, phil, page_size=10)
    pages = list(src.sync("inbox", ""))

    assert [len(p.items) for p in pages] == [10, 10, 10, 10, 10, 10, 6]
    assert [p.more for p in pages] == [True] * 6 + [False]
    assert {p.estimated_total for p in pages} == {66}
    all_ids = ids_of(pages)
    assert len(set(all_ids)) == 66

    rest = list(src.sync("inbox", pages[2].state))
    assert ids_of(rest) == all_ids[30:]
    assert rest[-1].state == pages[-1].state


def test_it_returns_only_a_message_appended_since_the_last_sync(dovecot, phil):
    src = source(dovecot, phil)
    state = list(src.sync("inbox", ""))[-1].state
    uid = dovecot.append(phil, make_message("Gas prices", "<appended-1@fabrikam.com>"))

    pages = list(src.sync("inbox", state))

    assert ids_of(pages) == ["<appended-1@fabrikam.com>"]
    assert pages[-1].state == f"{state.split(':')[0]}:{uid}" and pages[-1].more is False
    assert items_of(pages)[0].received_at is not None  # APPEND time, from INTERNALDATE
    assert items_of(list(src.sync("inbox", pages[-1].state))) == []


def test_it_fetches_each_message_body_once_and_only_new_ones_later(dovecot, phil):
    src = source(dovecot, phil, page_size=25)

    def bodies_fetched_by(sync: Callable[[], object]) -> list[str]:
        """Message bodies the server sent, per session, while `sync` ran (Dovecot's own count)."""
        before = len(dovecot.sessions(phil))
        sync()
        return [s["body_count"] for s in dovecot.sessions(phil, at_least=before + 1)[before:]]

    state = ""

    def run() -> None:
        nonlocal state
        state = list(src.sync("inbox", state))[-1].state

    assert bodies_fetched_by(run) == ["66"]  # one session, every body once
    dovecot.append(phil, make_message("Gas prices", "<appended-2@fabrikam.com>"))
    assert bodies_fetched_by(run) == ["1"]
    assert bodies_fetched_by(run) == ["0"]


def test_it_returns_no_items_for_an_unchanged_folder(dovecot, phil):
    src = source(dovecot, phil)
    state = list(src.sync("inbox", ""))[-1].state

    pages = list(src.sync("inbox", state))

    assert pages == [SyncPage(items=[], state=state, more=False, estimated_total=0)]


def test_it_gives_an_empty_folder_a_state_to_resume_from(dovecot):
    empty = dovecot.add_user(f"empty{next(_names)}")
    src = source(dovecot, empty)

    [page] = list(src.sync("inbox", ""))
    assert page.items == [] and page.more is False and page.state.endswith(":0")

    dovecot.append(empty, make_message("First", "<first@fabrikam.com>"))
    assert ids_of(list(src.sync("inbox", page.state))) == ["<first@fabrikam.com>"]


def test_it_marks_nothing_seen(dovecot, few):
    list(source(dovecot, few, page_size=2).sync("inbox", ""))
    source(dovecot, few).test_connection(["inbox"])

    flags = dovecot.flags(few)
    assert len(flags) == 5
    assert not any("\\Seen" in f for f in flags.values())


def test_it_reads_a_sub_folder_by_name(dovecot, few, inbox_messages):
    pages = list(source(dovecot, few).sync("Projects", ""))

    assert ids_of(pages) == [message_id_of(raw) for raw in inbox_messages[5:8]]


def test_it_logs_in_with_starttls_on_an_imap_endpoint(dovecot, few):
    pages = list(source(dovecot, few, endpoint=dovecot.imap_url).sync("inbox", ""))

    assert len(items_of(pages)) == 5
    dovecot.sessions(few, at_least=1)  # the log is written asynchronously
    logins = [line for line in dovecot.log().splitlines() if f"Login: user=<{few.name}>" in line]
    assert logins and all(", TLS," in line for line in logins)


def test_it_uses_the_mailbox_address_when_the_profile_has_no_username(dovecot, few):
    src = source(dovecot, few, mailbox=few.name, username="")

    assert len(items_of(list(src.sync("inbox", "")))) == 5


def test_it_logs_in_with_a_non_ascii_password(dovecot, inbox_messages):
    user = dovecot.add_user(f"intl{next(_names)}", password="pässwörd-€", messages=inbox_messages[:2])

    assert len(items_of(list(source(dovecot, user).sync("inbox", "")))) == 2


# -- sync state --------------------------------------------------------------------------------------


def test_it_refuses_a_state_from_before_the_folder_was_recreated(dovecot, phil, inbox_messages):
    src = source(dovecot, phil)
    state = list(src.sync("inbox", ""))[-1].state
    dovecot.recreate_inbox(phil)

    with pytest.raises(SyncStateInvalid, match="UIDVALIDITY"):
        list(src.sync("inbox", state))

    pages = list(src.sync("inbox", ""))
    assert sorted(ids_of(pages)) == sorted(message_id_of(raw) for raw in inbox_messages)
    assert pages[-1].state.split(":")[0] != state.split(":")[0]


@pytest.mark.parametrize("state", ["garbage", "12", "12:x"])
def test_it_refuses_a_state_it_did_not_write(dovecot, few, state):
    with pytest.raises(SyncStateInvalid):
        list(source(dovecot, few).sync("inbox", state))


# -- errors ------------------------------------------------------------------------------------------


def test_it_reports_a_wrong_password_as_permanent(dovecot, few):
    src = source(dovecot, few, secret="not-the-password")

    exc = sync_error(src)
    assert exc.permanent is True
    assert str(exc).startswith("the server refused the credentials")
    assert "not-the-password" not in str(exc)

    with pytest.raises(SourceError, match="refused the credentials") as info:
        src.test_connection(["inbox"])
    assert info.value.permanent is True


@pytest.mark.parametrize("method", ["oauth2", "ntlm"])
def test_it_refuses_exchange_only_auth_methods(dovecot, few, method):
    exc = sync_error(source(dovecot, few, auth_method=method))

    assert exc.permanent is True
    assert f"{method} authentication is not supported for IMAP" in str(exc)


def test_it_reports_a_closed_port_as_transient(dovecot, few):
    port = free_port()  # bound and released: nothing listens there

    exc = sync_error(source(dovecot, few, endpoint=f"imaps://127.0.0.1:{port}"))

    assert exc.permanent is False
    assert str(exc) == f"cannot reach imaps://127.0.0.1:{port}: connection refused"


def test_it_reports_a_server_that_never_answers_as_transient(dovecot, few):
    with socket.socket() as silent:  # accepts connections (backlog) but never greets
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]

        exc = sync_error(source(dovecot, few, endpoint=f"imaps://127.0.0.1:{port}", timeout=0.5))

    assert exc.permanent is False
    assert str(exc).startswith(f"cannot reach imaps://127.0.0.1:{port}: ")


@pytest.mark.parametrize("endpoint", ["imaps", "imap"])
def test_it_explains_a_certificate_from_an_untrusted_ca(dovecot, few, tmp_path, endpoint):
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    url = dovecot.imaps_url if endpoint == "imaps" else dovecot.imap_url

    exc = sync_error(source(dovecot, few, endpoint=url, ca_bundle=str(other_ca)))

    assert exc.permanent is True
    assert str(exc).startswith(f"cannot reach {url}: the server's certificate is not trusted")
    assert "CA bundle" in str(exc)


def test_it_does_not_trust_a_private_ca_without_the_ca_bundle(dovecot, few):
    exc = sync_error(source(dovecot, few, ca_bundle=""))

    assert "certificate is not trusted" in str(exc)


def test_it_reports_an_unreadable_ca_bundle_as_permanent(dovecot, few, tmp_path):
    exc = sync_error(source(dovecot, few, ca_bundle=str(tmp_path / "missing.pem")))

    assert exc.permanent is True
    assert "cannot read the CA bundle" in str(exc)


def test_it_reports_a_missing_folder_as_permanent(dovecot, few):
    src = source(dovecot, few)

    exc = sync_error(src, "Archive 2001")
    assert exc.permanent is True
    assert str(exc).startswith("mailbox folder Archive 2001 not found")

    with pytest.raises(SourceError, match="not found") as info:
        src.test_connection(["inbox", "Archive 2001"])
    assert info.value.permanent is True


@pytest.mark.parametrize("endpoint", ["https://mail.example.com", "imaps://", "imap://host:notaport"])
def test_it_reports_a_malformed_endpoint_as_permanent(dovecot, few, endpoint):
    exc = sync_error(source(dovecot, few, endpoint=endpoint))

    assert exc.permanent is True
    assert "imaps://host:993" in str(exc)


def test_it_never_reads_sent_items(dovecot, few):
    # A closed port proves the refusal comes before any connection.
    src = source(dovecot, few, endpoint=f"imaps://127.0.0.1:{free_port()}")

    exc = sync_error(src, "sentitems")
    assert exc.permanent is True and str(exc) == SENT_ITEMS_UNSUPPORTED

    with pytest.raises(SourceError, match=SENT_ITEMS_UNSUPPORTED) as info:
        src.test_connection(["inbox", "sentitems"])
    assert info.value.permanent is True


def test_it_reports_a_server_hanging_up_mid_sync_as_transient(dovecot, phil):
    pages = source(dovecot, phil, page_size=10).sync("inbox", "")
    first = next(pages)
    assert len(first.items) == 10 and first.more

    dovecot.kick(phil)  # Dovecot ends the session with "* BYE Server shutting down."
    with pytest.raises(SourceError) as info:
        next(pages)

    assert info.value.permanent is False
    assert str(info.value).startswith(f"lost the connection to {dovecot.imaps_url}: ")


def test_it_keeps_the_pages_before_a_message_the_server_cannot_read(dovecot, few):
    [broken] = sorted((few.maildir / "cur").iterdir())[2:3]
    broken.chmod(0)  # Dovecot's mail process (never root) cannot open it
    pages = source(dovecot, few, page_size=1).sync("inbox", "")

    done = [next(pages), next(pages)]
    # Dovecot answers a FETCH it cannot complete with BYE ("FETCH failed: Internal error occurred"):
    # transient, with the server's words, and the next scan resumes right after the pages already taken.
    with pytest.raises(SourceError, match="FETCH failed") as info:
        next(pages)
    assert info.value.permanent is False
    assert done[-1].state.endswith(":2")

    broken.chmod(0o600)
    assert len(items_of(list(source(dovecot, few).sync("inbox", done[-1].state)))) == 3


@pytest.fixture
def no_after_dovecot() -> Iterator[Dovecot]:
    """A Dovecot that answers a failed FETCH with a tagged NO after the rest (as other servers do)."""
    with Dovecot.start(extra_conf="imap_fetch_failure = no-after\n") as server:
        yield server


def test_it_turns_a_message_the_server_answers_no_for_into_a_fetch_failure(no_after_dovecot, inbox_messages):
    server = no_after_dovecot
    user = server.add_user("nina", messages=inbox_messages[:5])
    [broken] = sorted((user.maildir / "cur").iterdir())[2:3]
    broken.chmod(0)
    src = source(server, user)

    pages = list(src.sync("inbox", ""))

    items = [i for p in pages for i in p.items]
    # Dovecot numbers new maildir files in the order it reads the folder, not by name: which UID the
    # unreadable file got is read from the failure itself.
    assert sorted(type(i).__name__ for i in items) == [
        "ParseFailure",
        "RawItem",
        "RawItem",
        "RawItem",
        "RawItem",
    ]
    (failure,) = [i for i in items if isinstance(i, ParseFailure)]
    assert failure.fetch_failed
    uid = failure.provider_item_id.rsplit(":", 1)[1]
    assert failure.provider_item_id == pages[-1].state.split(":")[0] + f":{uid}"
    assert failure.message_id.endswith("@fetch-error.synthetic.syncadmin.invalid>")
    assert f"could not deliver UID {uid}" in failure.error
    assert pages[-1].state.endswith(":5") and pages[-1].more is False
    # Stable: the next full sync names it the same, so its decision is not repeated.
    again = [i for p in src.sync("inbox", "") for i in p.items if isinstance(i, ParseFailure)]
    assert [f.message_id for f in again] == [failure.message_id]


def test_it_retries_later_when_the_server_can_read_no_message_of_a_page(no_after_dovecot, inbox_messages):
    server = no_after_dovecot
    user = server.add_user("olga", messages=inbox_messages[:3])
    for path in (user.maildir / "cur").iterdir():
        path.chmod(0)

    exc = sync_error(source(server, user))

    assert exc.permanent is False
    assert "UID FETCH failed for every message" in str(exc)


def test_it_passes_test_connection_for_the_inbox(dovecot, few):
    source(dovecot, few).test_connection(["inbox", "Projects"])


def test_it_writes_uid_sets_with_ranges():
    assert uid_set([1, 2, 3, 5, 7, 8]) == "1:3,5,7:8"
    assert uid_set([4]) == "4"


# -- end to end: profile → scan → decisions ----------------------------------------------------------


@pytest.fixture
def imap_mailbox(db, dovecot, phil):
    profile = check_add_profile(
        ProfileValues(
            "dovecot",
            "imap",
            endpoint=dovecot.imaps_url,
            auth_method="password",
            username=phil.name,
            ca_bundle=str(dovecot.ca_file),
        ),
        secret=phil.password,
    )
    return make_mailbox("phillip.allen@enron.com", "pallen", profile, track=0)


def test_it_scans_an_imap_mailbox_into_decisions(imap_mailbox, dovecot, phil, inbox_messages):
    assert run_test_and_enable(imap_mailbox.pk) == (True, "connected; inbox can be read")

    run = scan_folder(imap_mailbox.pk, "inbox")

    assert run.status == ScanStatus.SUCCEEDED
    assert (run.items_done, run.tracked) == (66, 66)
    decisions = Decision.objects.filter(mailbox=imap_mailbox, folder="inbox")
    assert {d.message_id for d in decisions} == {message_id_of(raw) for raw in inbox_messages}
    state = FolderSyncState.objects.get(mailbox=imap_mailbox, folder="inbox").state
    validity = state.split(":")[0]
    assert state == f"{validity}:66"
    assert {d.provider_item_id for d in decisions} == {f"{validity}:{uid}" for uid in range(1, 67)}

    dovecot.append(phil, make_message("Re: Gas prices", "<reply-1@fabrikam.com>"))
    run = scan_folder(imap_mailbox.pk, "inbox")
    assert (run.items_done, run.tracked) == (1, 1)
    assert Decision.objects.get(message_id="<reply-1@fabrikam.com>").outcome == Outcome.TRACKED

    # The server renumbers the folder: the scan resyncs it all and nothing is decided twice.
    dovecot.recreate_inbox(phil)
    run = scan_folder(imap_mailbox.pk, "inbox")
    assert run.status == ScanStatus.SUCCEEDED
    assert Decision.objects.filter(mailbox=imap_mailbox).count() == 67
    assert TrackedEmail.objects.count() == 67
    assert FolderSyncState.objects.get(mailbox=imap_mailbox, folder="inbox").state.split(":")[0] != validity


def test_it_never_writes_into_the_maildir_it_reads(dovecot, few):
    before = sorted(p.name for p in (few.maildir / "cur").iterdir())
    list(source(dovecot, few).sync("inbox", ""))
    assert sorted(p.name for p in (few.maildir / "cur").iterdir()) == before
    assert not any(Path(few.maildir / "new").iterdir())
