"""The admin CLI: orgsettings, profile, mailbox, personaloptions, import_records and explain.

Every command runs through call_command (the `cmd` fixture); errors must be CommandError with a
message an admin can act on, and a refused command changes nothing.
"""

from __future__ import annotations

import base64
import getpass
import json
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management.base import CommandError
from django.db import connection
from django.forms.models import model_to_dict
from django.test.utils import CaptureQueriesContext

from tests.conftest import make_mailbox
from tracking.actions import do_set_personal_options
from tracking.actions.audit import cli_label
from tracking.choices import Approval, TrackOption
from tracking.models import (
    AuditEvent,
    CrmRecord,
    Decision,
    EmailServerProfile,
    FolderSyncState,
    Mailbox,
    OrgSettings,
    PersonalOptions,
    Queue,
    ScanRun,
    TrackedEmail,
)
from tracking.orgsettings import DB_INT_MAX, ORG_SETTINGS, SettingSpec

# tracking-rules §11, copied by hand: name -> (type, default, lowest, highest). The registry must agree.
DOMAIN_SETTINGS: dict[str, tuple[str, object, int | None, int | None]] = {
    "AutoTrackSentFolderItems": ("bool", False, None, None),
    "SSSForceFilteringMethodForUserMailboxes": ("int", -1, -1, 4),
    "UseFilteringMethodOfSyncingMailboxOnlyForCorrelation": ("bool", False, None, None),
    "EmailCorrelationEnabled": ("bool", True, None, None),
    "IgnoreConversationIndexAndInReplyToForCorrelation": ("bool", False, None, None),
    "DoNotCorrelateForwardedEmailsAsReplies": ("bool", False, None, None),
    "UseTrackingTokens": ("bool", True, None, None),
    "TrackingPrefix": ("text", "CRM", 1, 20),
    "TrackingTokenIdBase": ("int", 0, 0, DB_INT_MAX),
    "TrackingTokenIdDigits": ("int", 3, 1, 9),
    "TrackingTokenCounterDigits": ("int", 3, 1, 9),
    "EnableSmartMatching": ("bool", False, None, None),
    "HashFilterKeywords": ("regex", r"^[\s]*([\w]+\s?:[\s]*)+", None, None),
    "HashMaxCount": ("int", 20, 1, 100),
    "HashDeltaSubjectCount": ("int", 0, 0, DB_INT_MAX),
    "HashMinAddressCount": ("int", 2, 1, DB_INT_MAX),
    "TrackEmailsBetweenUsersAsTwoActivities": ("bool", True, None, None),
    "AutoCreateContactOnPromote": ("bool", True, None, None),
    "UnresolveSenderInCaseOfMultipleMatch": ("bool", False, None, None),
    "UnresolveEmailAddressIfMultipleMatch": ("bool", False, None, None),
    "ResolveForInactiveEntities": ("bool", False, None, None),
    "HideTrackAllOption": ("bool", False, None, None),
    "HideEmailAutoTrackOptions": ("bool", False, None, None),
    "RequireApprovalForUserEmail": ("bool", True, None, None),
    "RequireApprovalForQueueEmail": ("bool", True, None, None),
    "IsFolderBasedTrackingEnabled": ("bool", True, None, None),
    "MaxFolderBasedTrackingMappings": ("int", 25, 1, 100),
    "MailboxPollIntervalMinutes": ("int", 5, 1, 1440),
    "PushSafetyNetPollMinutes": ("int", 60, 1, 1440),
    "UserReprocessMaxDays": ("int", 30, 0, 3650),
    "TransientFailureRetryLimit": ("int", 10, 0, 100),
    "TransientFailureRetryMinutes": ("int", 5, 1, 1440),
    "MaximumSubjectLengthOnMailServer": ("int", 255, 255, 400),
    "CreateQueueItemForSynchronizingMailbox": ("bool", True, None, None),
    "MaxTrackedAttachmentMB": ("int", 5, 0, 100),
}
SPEC_IDS = [s.name for s in ORG_SETTINGS]


def non_default(spec: SettingSpec) -> tuple[str, str]:
    """A valid value other than the default: (what to type, what `get` prints back)."""
    if spec.type == "bool":
        return ("false", "false") if spec.default else ("true", "true")
    if spec.type == "int":
        assert isinstance(spec.default, int)
        value = spec.default + 1 if spec.maximum is None or spec.default < spec.maximum else spec.default - 1
        return str(value), str(value)
    if spec.type == "text":
        return "TRK", "TRK"
    return r"^\s*((RE|FW|AW|WG)\s*:\s*)+", r"^\s*((RE|FW|AW|WG)\s*:\s*)+"


def invalid_values(spec: SettingSpec) -> list[str]:
    if spec.type == "bool":
        return ["maybe", "2", "", "tru"]
    if spec.type == "int":
        assert spec.minimum is not None
        values = ["abc", "1.5", "", str(spec.minimum - 1)]
        if spec.maximum is not None:
            values.append(str(spec.maximum + 1))
        return values
    if spec.type == "text":
        assert spec.maximum is not None
        return ["x" * (spec.maximum + 1), ""]
    return ["([", "*oops", "(?P<x", "[z-a]"]


def org_state() -> dict[str, object]:
    return model_to_dict(OrgSettings.load())


def audit_count(action: str) -> int:
    return AuditEvent.objects.filter(action=action).count()


# ---------------------------------------------------------------------------------------------
# orgsettings
# ---------------------------------------------------------------------------------------------


class TestOrgSettingsList:
    def test_the_registry_matches_the_domain_table(self):
        registry = {s.name: (s.type, s.default, s.minimum, s.maximum) for s in ORG_SETTINGS}
        assert registry == DOMAIN_SETTINGS

    def test_it_lists_every_setting_as_text(self, db, cmd):
        lines = cmd("orgsettings", "list").out.splitlines()
        assert len(lines) == 35
        for spec, line in zip(ORG_SETTINGS, lines, strict=True):
            name, value = line.split()[:2]
            assert name == spec.name
            assert value == spec.format(spec.default)
            assert "(default" not in line

    def test_it_marks_a_changed_setting_in_the_text_list(self, db, cmd):
        cmd("orgsettings", "set", "HashMaxCount", "30")
        line = next(x for x in cmd("orgsettings", "list").out.splitlines() if x.startswith("HashMaxCount "))
        assert line.split()[1] == "30"
        assert "(default 20)" in line

    def test_it_lists_every_setting_as_json(self, db, cmd):
        rows = json.loads(cmd("orgsettings", "list", "--json").out)
        assert len(rows) == 35
        assert [r["name"] for r in rows] == list(DOMAIN_SETTINGS)
        for row in rows:
            assert set(row) == {"name", "value", "type", "default", "accepts", "description"}
            kind, default, _, _ = DOMAIN_SETTINGS[row["name"]]
            assert row["type"] == kind
            assert row["default"] == default
            assert row["value"] == default
            assert row["accepts"]
            assert row["description"]

    def test_its_json_shows_a_changed_value_with_its_type(self, db, cmd):
        cmd("orgsettings", "set", "AutoTrackSentFolderItems", "yes")
        cmd("orgsettings", "set", "TrackingPrefix", "TKT")
        cmd("orgsettings", "set", "MailboxPollIntervalMinutes", "15")
        rows = {r["name"]: r for r in json.loads(cmd("orgsettings", "list", "--json").out)}
        assert rows["AutoTrackSentFolderItems"]["value"] is True
        assert rows["TrackingPrefix"]["value"] == "TKT"
        assert rows["MailboxPollIntervalMinutes"]["value"] == 15
        assert rows["MailboxPollIntervalMinutes"]["default"] == 5


class TestOrgSettingsSet:
    @pytest.mark.parametrize("spec", ORG_SETTINGS, ids=SPEC_IDS)
    def test_it_sets_and_gets_every_setting(self, db, cmd, spec):
        typed, shown = non_default(spec)
        assert cmd("orgsettings", "get", spec.name).out.strip() == spec.format(spec.default)
        before = org_state()
        result = cmd("orgsettings", "set", spec.name, typed)
        assert result.out.strip() == f"{spec.name}: {spec.format(spec.default)} -> {shown}"
        assert cmd("orgsettings", "get", spec.name).out.strip() == shown
        after = org_state()
        assert {k for k in before if before[k] != after[k]} == {spec.field}
        event = AuditEvent.objects.get(action="orgsetting_changed")
        assert event.target == spec.name
        assert event.old_value == spec.format(spec.default)
        assert event.new_value == shown
        assert event.actor_label == cli_label()  # cli:<the operating-system user>
        assert event.actor_label == f"cli:{getpass.getuser()}"

    @pytest.mark.parametrize("spec", ORG_SETTINGS, ids=SPEC_IDS)
    def test_it_refuses_invalid_values(self, db, cmd, spec):
        before = org_state()
        for raw in invalid_values(spec):
            with pytest.raises(CommandError) as exc:
                cmd("orgsettings", "set", spec.name, raw)
            assert spec.name in str(exc.value), raw
            assert spec.accepts() in str(exc.value), raw
        assert org_state() == before
        assert audit_count("orgsetting_changed") == 0
        assert cmd("orgsettings", "get", spec.name).out.strip() == spec.format(spec.default)

    @pytest.mark.parametrize("name", [n for n, (t, *_) in DOMAIN_SETTINGS.items() if t == "int"])
    def test_it_accepts_the_ends_of_each_range(self, db, cmd, name):
        _, _, lowest, highest = DOMAIN_SETTINGS[name]
        for value in (lowest, highest):
            if value is not None:
                cmd("orgsettings", "set", name, str(value))
                assert cmd("orgsettings", "get", name).out.strip() == str(value)

    @pytest.mark.parametrize("prefix", ["C", "TWENTYCHARSPREFIX123"])
    def test_it_accepts_a_tracking_prefix_of_1_to_20_characters(self, db, cmd, prefix):
        assert len(prefix) in (1, 20)
        cmd("orgsettings", "set", "TrackingPrefix", prefix)
        assert cmd("orgsettings", "get", "TrackingPrefix").out.strip() == prefix

    @pytest.mark.parametrize("name", ["TrackingTokenIdBase", "HashDeltaSubjectCount", "HashMinAddressCount"])
    def test_it_refuses_a_number_too_large_to_store(self, db, cmd, name):
        with pytest.raises(CommandError) as exc:
            cmd("orgsettings", "set", name, "1" + "0" * 20)
        assert name in str(exc.value)

    def test_it_accepts_every_boolean_word_in_any_case(self, db, cmd):
        words = {"true": "true", "TRUE": "true", "True": "true", "1": "true", "yes": "true", "YES": "true",
                 "Yes": "true", "false": "false", "FALSE": "false", "False": "false", "0": "false",
                 "no": "false", "NO": "false", "No": "false"}  # fmt: skip
        for word, shown in words.items():
            cmd("orgsettings", "set", "AutoTrackSentFolderItems", "true" if shown == "false" else "false")
            cmd("orgsettings", "set", "AutoTrackSentFolderItems", word)
            assert cmd("orgsettings", "get", "AutoTrackSentFolderItems").out.strip() == shown, word

    def test_it_reads_names_in_any_case(self, db, cmd):
        cmd("orgsettings", "set", "autotracksentfolderitems", "TRUE")
        assert cmd("orgsettings", "get", "AUTOTRACKSENTFOLDERITEMS").out.strip() == "true"
        cmd("orgsettings", "set", "hashmaxcount", "42")
        assert cmd("orgsettings", "get", "HashMaxCount").out.strip() == "42"
        assert set(AuditEvent.objects.values_list("target", flat=True)) == {
            "AutoTrackSentFolderItems",
            "HashMaxCount",
        }

    @pytest.mark.parametrize("args", [("set", "NoSuchSetting", "true"), ("get", "NoSuchSetting")])
    def test_it_refuses_an_unknown_name(self, db, cmd, args):
        before = org_state()
        with pytest.raises(CommandError) as exc:
            cmd("orgsettings", *args)
        assert "NoSuchSetting" in str(exc.value)
        assert org_state() == before
        assert AuditEvent.objects.count() == 0

    def test_it_refuses_a_misspelt_name(self, db, cmd):
        with pytest.raises(CommandError):
            cmd("orgsettings", "set", "AutoTrackSentFolderItem", "true")
        assert cmd("orgsettings", "get", "AutoTrackSentFolderItems").out.strip() == "false"

    def test_it_keeps_the_value_a_refused_set_came_after(self, db, cmd):
        cmd("orgsettings", "set", "MailboxPollIntervalMinutes", "30")
        with pytest.raises(CommandError):
            cmd("orgsettings", "set", "MailboxPollIntervalMinutes", "0")
        assert cmd("orgsettings", "get", "MailboxPollIntervalMinutes").out.strip() == "30"
        assert audit_count("orgsetting_changed") == 1


# ---------------------------------------------------------------------------------------------
# profile
# ---------------------------------------------------------------------------------------------


class TestProfileAdd:
    @pytest.mark.parametrize(
        ("kind", "endpoint"),
        [
            ("exchange_ews", "https://mail.example.com/EWS/Exchange.asmx"),
            ("exchange_ews", "https://mail.example.com"),
            ("exchange_graph", "https://graph.microsoft.com"),
            ("imap", "imaps://mail.example.com:993"),
            ("local", "/srv/mail"),
        ],
    )
    def test_it_adds_a_profile_of_each_kind(self, db, cmd, kind, endpoint):
        result = cmd("profile", "add", f"p-{kind}", "--kind", kind, "--endpoint", endpoint)
        assert f"p-{kind}" in result.out
        profile = EmailServerProfile.objects.get(name=f"p-{kind}")
        assert profile.kind == kind
        assert profile.endpoint == endpoint
        assert profile.is_exchange == (kind in {"exchange_graph", "exchange_ews"})

    @pytest.mark.parametrize(
        ("kind", "endpoint"),
        [
            ("imap", "ftp://mail.example.com"),
            ("imap", "https://mail.example.com"),
            ("imap", "imaps://mail.example.com:99999"),
            ("exchange_graph", "http://graph.example.com"),
            ("exchange_ews", "ldap://mail.example.com"),
            ("exchange_ews", "https://"),
            # The web form's rule, which the command shares: the EWS URL in full, over https.
            ("exchange_ews", "mail.example.com"),
            ("exchange_ews", "http://mail.example.com/EWS/Exchange.asmx"),
        ],
    )
    def test_it_refuses_an_endpoint_the_kind_cannot_connect_to(self, db, cmd, kind, endpoint):
        with pytest.raises(CommandError, match="endpoint"):
            cmd("profile", "add", "p", "--kind", kind, "--endpoint", endpoint)
        assert not EmailServerProfile.objects.exists()

    def test_it_adds_a_profile_without_credentials(self, db, cmd):
        cmd("profile", "add", "files", "--kind", "local")
        profile = EmailServerProfile.objects.get(name="files")
        assert profile.auth_method == "none"
        assert profile.username == ""
        assert profile.has_secret is False
        assert profile.get_secret() == ""
        assert "secret not set" in cmd("profile", "list").out

    def test_it_stores_a_secret_from_the_environment_encrypted(self, db, cmd, monkeypatch):
        plaintext = "s3cr3t-Pässwörd!"
        monkeypatch.setenv("SYNCADMIN_TEST_SECRET", plaintext)
        cmd(
            "profile", "add", "graph", "--kind", "exchange_graph", "--auth", "oauth2",
            "--tenant-id", "contoso.onmicrosoft.com", "--client-id", "app-1",
            "--secret-env", "SYNCADMIN_TEST_SECRET",
        )  # fmt: skip
        profile = EmailServerProfile.objects.get(name="graph")
        assert profile.secret_encrypted
        assert profile.secret_encrypted != plaintext
        assert plaintext not in profile.secret_encrypted
        assert profile.get_secret() == plaintext
        assert EmailServerProfile.objects.get(pk=profile.pk).get_secret() == plaintext
        listing = cmd("profile", "list").out
        assert "secret set" in listing
        assert plaintext not in listing
        assert profile.secret_encrypted not in listing

    def test_it_refuses_a_secret_variable_that_is_not_set(self, db, cmd, monkeypatch):
        monkeypatch.delenv("SYNCADMIN_TEST_MISSING", raising=False)
        with pytest.raises(CommandError) as exc:
            cmd("profile", "add", "ews", "--kind", "exchange_ews", "--secret-env", "SYNCADMIN_TEST_MISSING")
        assert "SYNCADMIN_TEST_MISSING" in str(exc.value)
        assert not EmailServerProfile.objects.exists()

    def test_it_refuses_a_duplicate_name(self, db, cmd):
        cmd("profile", "add", "exchange", "--kind", "exchange_ews")
        with pytest.raises(CommandError) as exc:
            cmd("profile", "add", "exchange", "--kind", "imap")
        assert "exchange" in str(exc.value)
        assert EmailServerProfile.objects.get().kind == "exchange_ews"

    @pytest.mark.parametrize("value", ["0", "301", "-1", "many", "2.5"])
    def test_it_refuses_bad_max_connections(self, db, cmd, value):
        with pytest.raises(CommandError):
            cmd("profile", "add", "imap", "--kind", "imap", "--max-connections", value)
        assert not EmailServerProfile.objects.exists()

    @pytest.mark.parametrize("value", [1, 300])
    def test_it_accepts_max_connections_from_1_to_300(self, db, cmd, value):
        cmd("profile", "add", "imap", "--kind", "imap", "--max-connections", str(value))
        assert EmailServerProfile.objects.get().max_concurrent_connections == value

    def test_it_refuses_an_unknown_kind(self, db, cmd):
        with pytest.raises(CommandError):
            cmd("profile", "add", "pop", "--kind", "pop3")
        assert not EmailServerProfile.objects.exists()

    def test_it_reads_process_after(self, db, cmd):
        cmd("profile", "add", "imap", "--kind", "imap", "--process-after", "2026-01-31T08:00+01:00")
        when = EmailServerProfile.objects.get().process_emails_received_after
        assert when is not None
        assert when.isoformat() in {"2026-01-31T07:00:00+00:00", "2026-01-31T08:00:00+01:00"}

    def test_it_refuses_a_bad_process_after(self, db, cmd):
        with pytest.raises(CommandError):
            cmd("profile", "add", "imap", "--kind", "imap", "--process-after", "last tuesday")
        assert not EmailServerProfile.objects.exists()

    def test_it_refuses_a_name_too_long_to_store(self, db, cmd):
        with pytest.raises(CommandError):
            cmd("profile", "add", "p" * 101, "--kind", "imap")
        assert not EmailServerProfile.objects.exists()


class TestProfileDefaultAndPollInterval:
    """Issue 16: the default profile of new mailboxes and a profile's minimum poll interval, from the CLI."""

    def test_add_sets_the_minimum_poll_interval_and_the_default(self, db, cmd):
        out = cmd("profile", "add", "files", "--kind", "local", "--min-poll-minutes", "30", "--default").out
        assert "the default profile of new mailboxes" in out
        profile = EmailServerProfile.objects.get()
        assert (profile.minimum_poll_interval_minutes, profile.is_default) == (30, True)
        assert "min_poll=30\tdefault=yes" in cmd("profile", "list").out
        assert audit_count("profile_default_set") == 1
        # a mailbox added without --profile gets it
        cmd("mailbox", "add", "help@contoso.com", "--queue", "Help")
        assert Mailbox.objects.get().profile == profile

    @pytest.mark.parametrize("value", ["0", "1441", "-5", "soon"])
    def test_add_refuses_a_minimum_poll_interval_out_of_range(self, db, cmd, value):
        with pytest.raises(CommandError):
            cmd("profile", "add", "files", "--kind", "local", "--min-poll-minutes", value, "--default")
        assert not EmailServerProfile.objects.exists()
        assert audit_count("profile_default_set") == 0

    def test_update_changes_and_removes_the_minimum_poll_interval(self, db, cmd):
        cmd("profile", "add", "files", "--kind", "local")
        assert "min_poll=-\tdefault=no" in cmd("profile", "list").out
        out = cmd("profile", "update", "files", "--min-poll-minutes", "15").out
        assert out.strip() == "updated profile files: changed minimum_poll_interval_minutes"
        assert EmailServerProfile.objects.get().minimum_poll_interval_minutes == 15
        cmd("profile", "update", "files", "--no-min-poll")
        assert EmailServerProfile.objects.get().minimum_poll_interval_minutes is None
        changes = AuditEvent.objects.filter(target="files.minimum_poll_interval_minutes").order_by("id")
        assert [(e.old_value, e.new_value) for e in changes] == [("", "15"), ("15", "")]
        with pytest.raises(CommandError):
            cmd("profile", "update", "files", "--min-poll-minutes", "2000")
        with pytest.raises(CommandError):
            cmd("profile", "update", "files", "--min-poll-minutes", "5", "--no-min-poll")

    def test_default_moves_the_default_to_another_profile(self, db, cmd):
        cmd("profile", "add", "a", "--kind", "local", "--default")
        cmd("profile", "add", "b", "--kind", "local")
        assert cmd("profile", "default", "b").out.strip() == "b is now the default profile of new mailboxes"
        assert EmailServerProfile.objects.get(is_default=True).name == "b"
        assert "already the default" in cmd("profile", "default", "b").out
        event = AuditEvent.objects.filter(action="profile_default_set").latest("id")
        assert (event.old_value, event.new_value) == ("a", "b")
        assert event.actor_label.startswith("cli")
        with pytest.raises(CommandError, match="no server profile named 'c'"):
            cmd("profile", "default", "c")


# ---------------------------------------------------------------------------------------------
# mailbox
# ---------------------------------------------------------------------------------------------


class TestMailboxAdd:
    def test_it_adds_a_user_mailbox_creating_the_user(self, cmd, exchange_profile):
        result = cmd(
            "mailbox", "add", "Carol@Contoso.com", "--user", "carol", "--create-user", "--profile", "exchange"
        )
        mailbox = Mailbox.objects.get()
        assert mailbox.email_address == "carol@contoso.com"
        assert mailbox.user is not None and mailbox.user.username == "carol"
        assert mailbox.user.email == "carol@contoso.com"
        assert mailbox.queue is None
        assert mailbox.profile == exchange_profile
        assert mailbox.approval == Approval.PENDING
        assert "carol@contoso.com" in result.out

    def test_it_adds_a_mailbox_for_an_existing_user(self, cmd, exchange_profile):
        dave = User.objects.create_user("dave", email="dave@contoso.com")
        cmd("mailbox", "add", "dave@contoso.com", "--user", "dave", "--profile", "exchange")
        assert Mailbox.objects.get().user == dave
        assert User.objects.count() == 1

    def test_it_refuses_an_unknown_user_without_create_user(self, cmd, exchange_profile):
        with pytest.raises(CommandError) as exc:
            cmd("mailbox", "add", "erin@contoso.com", "--user", "erin", "--profile", "exchange")
        assert "--create-user" in str(exc.value)
        assert not Mailbox.objects.exists()
        assert not User.objects.exists()

    def test_it_refuses_a_second_mailbox_for_a_user(self, cmd, exchange_profile):
        cmd(
            "mailbox", "add", "carol@contoso.com", "--user", "carol", "--create-user", "--profile", "exchange"
        )
        with pytest.raises(CommandError):
            cmd("mailbox", "add", "carol2@contoso.com", "--user", "carol", "--profile", "exchange")
        assert Mailbox.objects.count() == 1

    def test_it_adds_a_queue_mailbox_creating_the_queue(self, cmd, exchange_profile):
        cmd("mailbox", "add", "Support@Contoso.com", "--queue", "Support", "--profile", "exchange")
        queue = Queue.objects.get()
        assert queue.name == "Support"
        assert queue.track == TrackOption.ALL
        mailbox = Mailbox.objects.get()
        assert mailbox.queue == queue
        assert mailbox.user is None
        assert mailbox.email_address == "support@contoso.com"
        assert mailbox.approval == Approval.PENDING
        assert not User.objects.exists()

    def test_it_sets_a_queue_track_option(self, cmd, exchange_profile):
        cmd(
            "mailbox", "add", "sales@contoso.com", "--queue", "Sales", "--profile", "exchange", "--track", "2"
        )
        assert Queue.objects.get().track == TrackOption.CRM_PARTIES

    def test_it_approves_when_asked(self, cmd, exchange_profile):
        cmd(
            "mailbox",
            "add",
            "carol@contoso.com",
            "--user",
            "carol",
            "--create-user",
            "--profile",
            "exchange",
            "--approve",
        )
        cmd(
            "mailbox",
            "add",
            "support@contoso.com",
            "--queue",
            "Support",
            "--profile",
            "exchange",
            "--approve",
        )
        assert set(Mailbox.objects.values_list("approval", flat=True)) == {Approval.APPROVED}

    @pytest.mark.parametrize("track", ["0", "1", "2", "3", "4"])
    def test_it_sets_the_users_track_option(self, cmd, exchange_profile, track):
        cmd(
            "mailbox",
            "add",
            "carol@contoso.com",
            "--user",
            "carol",
            "--create-user",
            "--profile",
            "exchange",
            "--track",
            track,
        )
        assert PersonalOptions.objects.get(user__username="carol").track == int(track)

    def test_it_leaves_the_default_track_option_without_track(self, cmd, exchange_profile):
        cmd(
            "mailbox", "add", "carol@contoso.com", "--user", "carol", "--create-user", "--profile", "exchange"
        )
        carol = User.objects.get(username="carol")
        options = PersonalOptions.objects.filter(user=carol).first()
        assert options is None or options.track == TrackOption.RESPONSES

    @pytest.mark.parametrize("track", ["5", "-1", "all", "1.0"])
    def test_it_refuses_a_bad_track_option(self, cmd, exchange_profile, track):
        with pytest.raises(CommandError):
            cmd(
                "mailbox",
                "add",
                "carol@contoso.com",
                "--user",
                "carol",
                "--create-user",
                "--profile",
                "exchange",
                "--track",
                track,
            )
        assert not Mailbox.objects.exists()
        assert not User.objects.exists()

    def test_it_refuses_a_duplicate_address(self, cmd, exchange_profile):
        cmd(
            "mailbox", "add", "carol@contoso.com", "--user", "carol", "--create-user", "--profile", "exchange"
        )
        with pytest.raises(CommandError) as exc:
            cmd("mailbox", "add", "CAROL@contoso.com", "--queue", "Carol", "--profile", "exchange")
        assert "carol@contoso.com" in str(exc.value)
        assert Mailbox.objects.count() == 1
        assert not Queue.objects.exists()

    def test_it_refuses_an_unknown_profile(self, db, cmd):
        with pytest.raises(CommandError) as exc:
            cmd(
                "mailbox", "add", "carol@contoso.com", "--user", "carol", "--create-user", "--profile", "nope"
            )
        assert "nope" in str(exc.value)
        assert not Mailbox.objects.exists()
        assert not User.objects.exists()

    @pytest.mark.parametrize(
        "address",
        ["carol", "carol@", "@contoso.com", "carol at contoso.com", "Carol <carol@contoso.com>", ""],
    )
    def test_it_refuses_a_non_address(self, cmd, exchange_profile, address):
        with pytest.raises(CommandError):
            cmd("mailbox", "add", address, "--user", "carol", "--create-user", "--profile", "exchange")
        assert not Mailbox.objects.exists()
        assert not User.objects.exists()

    def test_it_refuses_user_and_queue_together(self, cmd, exchange_profile):
        with pytest.raises(CommandError):
            cmd("mailbox", "add", "x@contoso.com", "--user", "x", "--queue", "X", "--profile", "exchange")
        assert not Mailbox.objects.exists()

    def test_it_refuses_create_user_with_a_queue(self, cmd, exchange_profile):
        with pytest.raises(CommandError):
            cmd("mailbox", "add", "x@contoso.com", "--queue", "X", "--create-user", "--profile", "exchange")
        assert not Mailbox.objects.exists()
        assert not Queue.objects.exists()

    @pytest.mark.parametrize(
        "args",
        [
            ("a" * 320 + "@contoso.com", "--queue", "Long"),
            ("u@contoso.com", "--user", "u" * 151, "--create-user"),
        ],
        ids=["address-over-320", "username-over-150"],
    )
    def test_it_refuses_values_too_long_to_store(self, cmd, exchange_profile, args):
        with pytest.raises(CommandError):
            cmd("mailbox", "add", *args, "--profile", "exchange")
        assert not Mailbox.objects.exists()


# ---------------------------------------------------------------------------------------------
# personaloptions
# ---------------------------------------------------------------------------------------------


class TestPersonalOptions:
    def test_it_prints_the_current_options_without_changing_them(self, cmd, alice_user):
        before = audit_count("personal_options_changed")
        lines = cmd("personaloptions", "alice").out.splitlines()
        assert lines == [
            "track: 1 (Email messages in response to SyncAdmin email)",
            "auto_create: off",
            "allow_send_on_behalf: false",
        ]
        assert audit_count("personal_options_changed") == before
        assert PersonalOptions.objects.get(user=alice_user).track == 1

    def test_it_prints_defaults_for_a_user_without_options(self, db, cmd):
        User.objects.create_user("frank")
        out = cmd("personaloptions", "frank").out
        assert "track: 1 " in out
        assert "auto_create: off" in out

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("0", 0), ("1", 1), ("2", 2), ("3", 3), ("4", 4),
            ("all", 0), ("responses", 1), ("crm", 2), ("email-enabled", 3), ("none", 4),
        ],
    )  # fmt: skip
    def test_it_sets_the_track_option(self, cmd, alice_user, value, expected):
        if expected == 1:
            do_set_personal_options(alice_user, track=4)
        out = cmd("personaloptions", "alice", "--track", value).out
        assert PersonalOptions.objects.get(user=alice_user).track == expected
        assert f"track: {expected} ({TrackOption(expected).label})" in out

    @pytest.mark.parametrize("value", ["off", "contact", "lead"])
    def test_it_sets_auto_create(self, cmd, alice_user, value):
        if value == "off":
            do_set_personal_options(alice_user, auto_create="lead")
        out = cmd("personaloptions", "alice", "--auto-create", value).out
        assert PersonalOptions.objects.get(user=alice_user).auto_create == value
        assert f"auto_create: {value}" in out

    def test_it_audits_each_change(self, cmd, alice_user):
        cmd("personaloptions", "alice", "--track", "all", "--auto-create", "contact")
        events = {
            e.target: (e.old_value, e.new_value, e.actor_label)
            for e in AuditEvent.objects.filter(action="personal_options_changed")
        }
        cli = cli_label()
        assert events == {"alice.track": ("1", "0", cli), "alice.auto_create": ("off", "contact", cli)}

    def test_it_refuses_an_unknown_user(self, db, cmd):
        with pytest.raises(CommandError) as exc:
            cmd("personaloptions", "nobody", "--track", "0")
        assert "nobody" in str(exc.value)
        assert not PersonalOptions.objects.exists()

    @pytest.mark.parametrize(
        "args", [("--track", "5"), ("--track", "everything"), ("--auto-create", "account")]
    )
    def test_it_refuses_a_bad_value(self, cmd, alice_user, args):
        with pytest.raises(CommandError):
            cmd("personaloptions", "alice", *args)
        options = PersonalOptions.objects.get(user=alice_user)
        assert (options.track, options.auto_create) == (1, "off")
        assert audit_count("personal_options_changed") == 0


# ---------------------------------------------------------------------------------------------
# import_records
# ---------------------------------------------------------------------------------------------


def write_csv(tmp_path: Path, text: str, name: str = "records.csv", encoding: str = "utf-8") -> str:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return str(path)


def err_lines(result) -> list[str]:
    return [line for line in result.err.splitlines() if line.strip()]


class TestImportRecords:
    def test_it_imports_contacts(self, cmd, alice_user, tmp_path):
        path = write_csv(
            tmp_path,
            "name,email,email2,email3,owner,active\n"
            "Jane Roe,Jane.Roe@Fabrikam.com,JROE@fabrikam.COM,,alice,true\n"
            "John Doe,john@example.com,,,,\n",
        )
        result = cmd("import_records", "contact", path)
        assert result.out.strip() == "created 2, updated 0, rejected 0"
        assert result.err == ""
        jane = CrmRecord.objects.get(name="Jane Roe")
        assert (jane.kind, jane.email1, jane.email2, jane.email3) == (
            "contact",
            "jane.roe@fabrikam.com",
            "jroe@fabrikam.com",
            "",
        )
        assert jane.owner == alice_user
        assert jane.active is True
        john = CrmRecord.objects.get(name="John Doe")
        assert john.owner is None and john.active is True

    def test_it_imports_other_records_with_their_kind(self, db, cmd, tmp_path):
        path = write_csv(tmp_path, "name,email,kind,active\nRival Corp,info@rival.example,Competitor,no\n")
        assert cmd("import_records", "other", path).out.strip() == "created 1, updated 0, rejected 0"
        record = CrmRecord.objects.get()
        assert (record.kind, record.other_kind, record.active) == ("other", "Competitor", False)

    @pytest.mark.parametrize("word", ["true", "TRUE", "yes", "1", "active", "Active", ""])
    def test_it_reads_active_words(self, db, cmd, tmp_path, word):
        cmd("import_records", "lead", write_csv(tmp_path, f"name,email,active\nL,l@example.com,{word}\n"))
        assert CrmRecord.objects.get().active is True

    @pytest.mark.parametrize("word", ["false", "FALSE", "no", "0", "inactive", "Inactive"])
    def test_it_reads_inactive_words(self, db, cmd, tmp_path, word):
        cmd("import_records", "lead", write_csv(tmp_path, f"name,email,active\nL,l@example.com,{word}\n"))
        assert CrmRecord.objects.get().active is False

    def test_it_rejects_bad_rows_with_line_and_reason(self, cmd, alice_user, tmp_path):
        path = write_csv(
            tmp_path,
            "name,email,email2,owner,kind,active\n"  # line 1
            "Good One,good1@example.com,,alice,,yes\n"  # 2
            "Bad Email,not-an-address,,,,\n"  # 3
            ",nameless@example.com,,,,\n"  # 4
            "Bad Owner,owner@example.com,,mallory,,\n"  # 5
            "Has Kind,kind@example.com,,,Competitor,\n"  # 6
            "Bad Active,active@example.com,,,,perhaps\n"  # 7
            "Bad Email2,ok@example.com,broken@,,,\n"  # 8
            "No Email,,,,,\n"  # 9
            "Good Two,good2@example.com,,,,no\n",  # 10
        )
        result = cmd("import_records", "account", path)
        assert result.out.strip() == "created 2, updated 0, rejected 7"
        lines = err_lines(result)
        assert len(lines) == 7
        by_line = {int(line.split()[1].rstrip(":")): line for line in lines}
        assert sorted(by_line) == [3, 4, 5, 6, 7, 8, 9]
        assert "not-an-address" in by_line[3]
        assert "name" in by_line[4]
        assert "mallory" in by_line[5]
        assert "kind" in by_line[6]
        assert "perhaps" in by_line[7]
        assert "broken@" in by_line[8]
        assert "email" in by_line[9]
        assert all(line.startswith(f"line {n}: rejected: ") for n, line in by_line.items())
        assert sorted(CrmRecord.objects.values_list("name", flat=True)) == ["Good One", "Good Two"]

    def test_it_counts_physical_lines_past_blank_lines_and_quoted_newlines(self, db, cmd, tmp_path):
        path = write_csv(
            tmp_path,
            "name,email\n"  # 1
            "\n"  # 2
            '"Two\nLines Inc",two@example.com\n'  # 3-4
            "Broken,nope\n",  # 5
        )
        result = cmd("import_records", "account", path)
        assert result.out.strip() == "created 1, updated 0, rejected 1"
        assert err_lines(result) == ["line 5: rejected: email 'nope' is not an email address"]

    def test_it_updates_on_reimport_instead_of_duplicating(self, cmd, alice_user, tmp_path):
        first = (
            "name,email,email2,owner,active\nJane Roe,jane@fabrikam.com,,,yes\nJohn Doe,john@example.com,,,\n"
        )
        cmd("import_records", "contact", write_csv(tmp_path, first))
        again = (
            "name,email,email2,owner,active\n"
            "Jane Roe,JANE@Fabrikam.com,j.roe@fabrikam.com,alice,no\n"
            "John Doe,john@example.com,,,\n"
        )
        result = cmd("import_records", "contact", write_csv(tmp_path, again, "again.csv"))
        assert result.out.strip() == "created 0, updated 2, rejected 0"
        assert CrmRecord.objects.count() == 2
        jane = CrmRecord.objects.get(name="Jane Roe")
        assert (jane.email1, jane.email2, jane.owner, jane.active) == (
            "jane@fabrikam.com",
            "j.roe@fabrikam.com",
            alice_user,
            False,
        )

    def test_it_keeps_records_of_another_kind_apart(self, db, cmd, tmp_path):
        path = write_csv(tmp_path, "name,email\nFabrikam,info@fabrikam.com\n")
        cmd("import_records", "account", path)
        assert cmd("import_records", "lead", path).out.strip() == "created 1, updated 0, rejected 0"
        assert sorted(CrmRecord.objects.values_list("kind", flat=True)) == ["account", "lead"]

    def test_it_reads_a_header_in_any_case_with_a_bom(self, db, cmd, tmp_path):
        path = write_csv(
            tmp_path, "Name , EMAIL\r\nJürgen Müller,Juergen@Example.DE\r\n", encoding="utf-8-sig"
        )
        assert cmd("import_records", "contact", path).out.strip() == "created 1, updated 0, rejected 0"
        record = CrmRecord.objects.get()
        assert (record.name, record.email1) == ("Jürgen Müller", "juergen@example.de")

    @pytest.mark.parametrize("header", ["name,mail", "fullname,email", "email", "name", ""])
    def test_it_refuses_a_header_without_name_and_email(self, db, cmd, tmp_path, header):
        path = write_csv(tmp_path, f"{header}\nJane,jane@example.com\n")
        with pytest.raises(CommandError) as exc:
            cmd("import_records", "contact", path)
        assert "name" in str(exc.value) and "email" in str(exc.value)
        assert not CrmRecord.objects.exists()

    def test_it_refuses_an_unknown_column(self, db, cmd, tmp_path):
        path = write_csv(tmp_path, "name,email,phone\nJane,jane@example.com,555\n")
        with pytest.raises(CommandError) as exc:
            cmd("import_records", "contact", path)
        assert "phone" in str(exc.value)
        assert not CrmRecord.objects.exists()

    def test_it_refuses_an_unknown_kind(self, db, cmd, tmp_path):
        path = write_csv(tmp_path, "name,email\nJane,jane@example.com\n")
        with pytest.raises(CommandError):
            cmd("import_records", "opportunity", path)
        assert not CrmRecord.objects.exists()

    def test_it_refuses_a_missing_file(self, db, cmd, tmp_path):
        with pytest.raises(CommandError) as exc:
            cmd("import_records", "contact", str(tmp_path / "nope.csv"))
        assert "nope.csv" in str(exc.value)

    def test_it_refuses_a_file_that_is_not_utf8(self, db, cmd, tmp_path):
        path = write_csv(tmp_path, "name,email\nJ\u00f6rg,joerg@example.de\n", encoding="utf-16")
        with pytest.raises(CommandError):
            cmd("import_records", "contact", path)
        assert not CrmRecord.objects.exists()

    @pytest.mark.parametrize(
        "row",
        [
            "N" * 301 + ",long@example.com,",
            "Long Mail," + "a" * 320 + "@example.com,",
            "Long Kind,k@example.com," + "K" * 101,
        ],
        ids=["name-over-300", "email-over-320", "kind-over-100"],
    )
    def test_it_rejects_a_value_too_long_to_store(self, db, cmd, tmp_path, row):
        path = write_csv(tmp_path, f"name,email,kind\nGood,good@example.com,\n{row}\n")
        result = cmd("import_records", "other", path)
        assert result.out.strip() == "created 1, updated 0, rejected 1"
        assert err_lines(result)[0].startswith("line 3: rejected: ")
        assert list(CrmRecord.objects.values_list("name", flat=True)) == ["Good"]


# ---------------------------------------------------------------------------------------------
# explain
# ---------------------------------------------------------------------------------------------

EXPLAIN_KEYS = {
    "message_id",
    "folder",
    "outcome",
    "reason",
    "accepting_entity",
    "correlation_method",
    "correlated_message_id",
    "regarding",
    "direction",
    "trace",
}


def eml(
    tmp_path: Path,
    name: str = "message.eml",
    *,
    sender: str = "stranger@fabrikam.com",
    msgid: str = "<x1@fabrikam.com>",
) -> str:
    path = tmp_path / name
    path.write_bytes(
        (
            f"From: Stranger <{sender}>\n"
            "To: Alice <alice@contoso.com>\n"
            "Subject: Offer\n"
            "Date: Tue, 03 Mar 2026 10:00:00 +0000\n"
            f"Message-ID: {msgid}\n"
            "\n"
            "Hello.\n"
        ).encode()
    )
    return str(path)


def row_counts() -> dict[str, int]:
    models = (
        Decision,
        TrackedEmail,
        ScanRun,
        CrmRecord,
        FolderSyncState,
        AuditEvent,
        Mailbox,
        PersonalOptions,
    )
    return {m.__name__: m.objects.count() for m in models}


class TestExplain:
    def test_its_json_has_exactly_the_documented_keys(self, cmd, alice, tmp_path):
        out = cmd(
            "explain", "--mailbox", "alice@contoso.com", "--folder", "inbox", eml(tmp_path), "--json"
        ).out
        data = json.loads(out)
        assert set(data) == EXPLAIN_KEYS
        assert "new" not in data
        assert data["message_id"] == "<x1@fabrikam.com>"
        assert data["folder"] == "inbox"
        assert data["direction"] == "incoming"
        assert (data["outcome"], data["reason"]) == ("not_tracked", "no_correlation")
        assert data["accepting_entity"] is None
        assert data["correlation_method"] is None
        assert data["trace"]
        assert all(set(step) == {"check", "result", "detail"} for step in data["trace"])

    def test_it_writes_nothing_for_a_message_a_scan_would_track(self, cmd, alice, alice_user, tmp_path):
        do_set_personal_options(alice_user, track=TrackOption.ALL, auto_create="contact")
        OrgSettings.load()
        path = eml(tmp_path)
        before = row_counts()
        with CaptureQueriesContext(connection) as queries:
            out = cmd("explain", "--mailbox", "alice@contoso.com", "--folder", "inbox", path, "--json").out
        data = json.loads(out)
        assert (data["outcome"], data["reason"]) == ("tracked", "accepted_all")
        assert data["accepting_entity"]["email"] == "alice@contoso.com"
        assert row_counts() == before
        writes = [
            q["sql"]
            for q in queries.captured_queries
            if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))
        ]
        assert writes == []

    def test_it_prints_the_trace_as_text(self, cmd, alice, tmp_path):
        path = eml(tmp_path)
        data = json.loads(
            cmd("explain", "--mailbox", "alice@contoso.com", "--folder", "inbox", path, "--json").out
        )
        lines = cmd("explain", "--mailbox", "alice@contoso.com", "--folder", "inbox", path).out.splitlines()
        assert lines[0].startswith("<x1@fabrikam.com>")
        assert "not_tracked/no_correlation" in lines[0]
        assert len(lines) == 1 + len(data["trace"])
        for step, line in zip(data["trace"], lines[1:], strict=True):
            assert line.startswith(f"  {step['check']}: {step['result']}")
            assert step["detail"] in line
        assert row_counts()["Decision"] == 0

    def test_it_says_sent_items_are_unsupported_on_a_non_exchange_mailbox(self, cmd, imap_profile, tmp_path):
        # With AutoTrackSentFolderItems off the reason is sent_items_disabled; on, the server is the obstacle.
        cmd("orgsettings", "set", "AutoTrackSentFolderItems", "true")
        make_mailbox("ivan@contoso.com", "ivan", imap_profile, track=0)
        out = cmd(
            "explain", "--mailbox", "ivan@contoso.com", "--folder", "sentitems", eml(tmp_path), "--json"
        ).out
        data = json.loads(out)
        assert (data["outcome"], data["reason"]) == ("not_tracked", "sent_items_unsupported_server")
        assert data["direction"] == "outgoing"

    def test_it_says_sent_items_are_disabled_by_default(self, cmd, alice, tmp_path):
        out = cmd(
            "explain", "--mailbox", "alice@contoso.com", "--folder", "sentitems", eml(tmp_path), "--json"
        ).out
        assert json.loads(out)["reason"] == "sent_items_disabled"

    def test_it_explains_an_already_tracked_message_without_writing(
        self, cmd, alice, bob, alice_user, tmp_path
    ):
        do_set_personal_options(alice_user, track=TrackOption.ALL)
        path = eml(tmp_path)
        cmd("ingest", "--mailbox", "alice@contoso.com", "--folder", "inbox", path)
        before = row_counts()
        data = json.loads(
            cmd("explain", "--mailbox", "bob@contoso.com", "--folder", "inbox", path, "--json").out
        )
        assert (data["outcome"], data["reason"]) == ("already_tracked", "duplicate_message_id")
        assert row_counts() == before

    def test_it_explains_an_unparseable_file(self, cmd, alice, tmp_path):
        path = tmp_path / "garbage.eml"
        path.write_bytes(b"\x00\x01\x02 this is not mail \xff\xfe")
        data = json.loads(
            cmd("explain", "--mailbox", "alice@contoso.com", "--folder", "inbox", str(path), "--json").out
        )
        assert (data["outcome"], data["reason"]) == ("failed", "unparseable")
        assert set(data) == EXPLAIN_KEYS
        assert row_counts()["Decision"] == 0

    def test_it_explains_the_first_message_of_an_mbox(self, cmd, alice, tmp_path):
        path = tmp_path / "two.mbox"
        path.write_bytes(
            b"From a@x Tue Mar  3 10:00:00 2026\nFrom: a@x.com\nMessage-ID: <first@x.com>\n\none\n\n"
            b"From a@x Tue Mar  3 10:00:00 2026\nFrom: a@x.com\nMessage-ID: <second@x.com>\n\ntwo\n"
        )
        data = json.loads(
            cmd("explain", "--mailbox", "alice@contoso.com", "--folder", "inbox", str(path), "--json").out
        )
        assert data["message_id"] == "<first@x.com>"

    def test_it_refuses_an_unknown_mailbox(self, cmd, alice, tmp_path):
        with pytest.raises(CommandError) as exc:
            cmd("explain", "--mailbox", "nobody@contoso.com", "--folder", "inbox", eml(tmp_path))
        assert "nobody@contoso.com" in str(exc.value)

    def test_it_refuses_a_missing_file(self, cmd, alice, tmp_path):
        with pytest.raises(CommandError) as exc:
            cmd(
                "explain",
                "--mailbox",
                "alice@contoso.com",
                "--folder",
                "inbox",
                str(tmp_path / "missing.eml"),
            )
        assert "missing.eml" in str(exc.value)
        assert row_counts()["ScanRun"] == 0

    def test_it_refuses_an_empty_mbox(self, cmd, alice, tmp_path):
        path = tmp_path / "empty.mbox"
        path.write_bytes(b"")
        with pytest.raises(CommandError):
            cmd("explain", "--mailbox", "alice@contoso.com", "--folder", "inbox", str(path))

    def test_it_refuses_an_unknown_folder(self, cmd, alice, tmp_path):
        with pytest.raises(CommandError):
            cmd("explain", "--mailbox", "alice@contoso.com", "--folder", "drafts", eml(tmp_path))


# ---------------------------------------------------------------------------------------------
# Parsed values that do not fit the database (parser robustness, end to end through ingest)
# ---------------------------------------------------------------------------------------------


class TestParsedValuesFitTheDatabase:
    @pytest.mark.parametrize(
        "header",
        [
            "From: " + "a" * 400 + "@fabrikam.com",
            "From: stranger@fabrikam.com\nThread-Index: " + base64.b64encode(bytes(1200)).decode(),
        ],
        ids=["sender-over-320", "thread-index-over-1000-bytes"],
    )
    def test_it_ingests_a_message_with_an_over_long_value(self, cmd, alice, alice_user, tmp_path, header):
        do_set_personal_options(alice_user, track=TrackOption.ALL)
        path = tmp_path / "long.eml"
        rest = "To: alice@contoso.com\nSubject: hi\nMessage-ID: <long@fabrikam.com>\n\nbody\n"
        path.write_bytes(f"{header}\n{rest}".encode())
        rows = cmd(
            "ingest", "--mailbox", "alice@contoso.com", "--folder", "inbox", str(path), "--json"
        ).json_lines()
        assert len(rows) == 1
        for email in TrackedEmail.objects.all():
            assert len(email.sender) <= 320
            assert len(email.conversation_index) <= 2000
