"""Forms of mailbox administration: New mailbox, a mailbox's setup, a queue's page, and bulk actions."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _

from syncadmin.web.forms.mailboxes import DateTimeLocalInput
from tracking.actions import default_profile, user_for_email
from tracking.choices import BulkAction, IncomingMethod, TrackOption
from tracking.messages import normalize_address
from tracking.models import EmailServerProfile, Mailbox, Queue

OWNER_KINDS = [
    ("user", _("A user")),
    ("invite", _("A new user, invited by email")),
    ("queue", _("A queue")),
]


def _users_without_mailbox() -> QuerySet[User]:
    return get_user_model().objects.filter(is_active=True, mailbox__isnull=True).order_by("username")


class MailboxSetupForm(forms.Form):
    """What an admin sets of a mailbox: its profile, incoming method and start date."""

    profile = forms.ModelChoiceField(
        label=_("Server profile"), queryset=EmailServerProfile.objects.order_by("name"), empty_label=None
    )
    incoming_method = forms.ChoiceField(label=_("Incoming email"), choices=IncomingMethod.choices)
    process_emails_received_after = forms.DateTimeField(
        label=_("Process emails received after"),
        required=False,
        widget=DateTimeLocalInput(),
        help_text=_("In your time zone. Leave empty to evaluate every message the server returns."),
    )


class MailboxCreateForm(MailboxSetupForm):
    """New mailbox, for an existing user, a new user invited by email to the mailbox's address, or a queue
    (new or existing)."""

    email_address = forms.CharField(label=_("Email address"), max_length=320)
    owner_kind = forms.ChoiceField(
        label=_("Owner"),
        choices=OWNER_KINDS,
        widget=forms.RadioSelect,
        initial="user",
        help_text=_(
            "A new user is made with the role user and the mailbox's address as email, and invited there "
            "to choose a password."
        ),
    )
    user = forms.ModelChoiceField(
        label=_("User"),
        queryset=get_user_model().objects.none(),
        required=False,
        help_text=_("Users who have no mailbox yet."),
    )
    queue_name = forms.CharField(
        label=_("Queue"),
        max_length=200,
        required=False,
        help_text=_("An existing queue without a mailbox, or the name of a new one."),
    )
    approve = forms.BooleanField(label=_("Approve the email address now"), required=False)

    field_order = [
        "email_address",
        "owner_kind",
        "user",
        "queue_name",
        "profile",
        "incoming_method",
        "process_emails_received_after",
        "approve",
    ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        user_field = self.fields["user"]
        assert isinstance(user_field, forms.ModelChoiceField)
        user_field.queryset = _users_without_mailbox()
        default = default_profile()
        if default is not None:
            self.fields["profile"].initial = default.pk
            self.fields["profile"].help_text = _("New mailboxes get the default profile, %(name)s.") % {
                "name": default.name
            }

    def clean_email_address(self) -> str:
        raw = self.cleaned_data["email_address"]
        email = normalize_address(raw)
        if email is None:
            raise forms.ValidationError(_("Enter an email address."))
        if Mailbox.objects.filter(email_address=email).exists():
            raise forms.ValidationError(
                _("A mailbox for %(address)s already exists."), params={"address": email}
            )
        return email

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("owner_kind") == "queue":
            name = str(data.get("queue_name") or "").strip()
            if not name:
                self.add_error("queue_name", _("Name the queue."))
            elif Mailbox.objects.filter(queue__name=name).exists():
                self.add_error("queue_name", _("This queue already has a mailbox."))
            data["queue_name"] = name
        elif data.get("owner_kind") == "user" and data.get("user") is None and "user" not in self.errors:
            self.add_error("user", _("Choose the user whose mailbox this is."))
        elif data.get("owner_kind") == "invite" and data.get("email_address"):
            known = user_for_email(str(data["email_address"]))
            if known is not None:
                self.add_error(
                    "owner_kind",
                    _("%(user)s has this email address already: choose them as the user.")
                    % {"user": known.get_username()},
                )
        return data


class QueueForm(forms.Form):
    track = forms.TypedChoiceField(
        label=_("Select the email messages to track"), choices=TrackOption.choices, coerce=int
    )
    owner = forms.ModelChoiceField(
        label=_("Owner"),
        queryset=get_user_model().objects.filter(is_active=True).order_by("username"),
        required=False,
        empty_label=_("(nobody)"),
    )

    @classmethod
    def for_queue(cls, queue: Queue, data: Any = None) -> QueueForm:
        return cls(data, initial={"track": queue.track, "owner": queue.owner_id})


class BulkForm(forms.Form):
    """A bulk action on the mailboxes ticked, or on every mailbox the list's filters match."""

    action = forms.ChoiceField(label=_("Bulk action"), choices=BulkAction.choices)
    scope = forms.ChoiceField(choices=[("selected", _("Selected")), ("all", _("All matching"))])
    mailbox = forms.TypedMultipleChoiceField(coerce=int, required=False)
    query = forms.CharField(required=False)

    def __init__(self, *args: Any, mailbox_ids: list[int], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["mailbox"]
        assert isinstance(field, forms.TypedMultipleChoiceField)
        field.choices = [(str(pk), str(pk)) for pk in mailbox_ids]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("scope") == "selected" and not data.get("mailbox"):
            raise forms.ValidationError(_("Select at least one mailbox, or choose all matching."))
        return data


class ProfileTestForm(forms.Form):
    address = forms.CharField(
        label=_("Mailbox to try"),
        max_length=320,
        help_text=_("Any address on this server; nothing is stored."),
    )

    def clean_address(self) -> str:
        email = normalize_address(self.cleaned_data["address"])
        if email is None:
            raise forms.ValidationError(_("Enter an email address."))
        return email
