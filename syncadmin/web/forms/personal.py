"""Set Personal Options: the General and Email tabs and the folder tracking rule form."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from django import forms
from django.conf import settings
from django.utils.translation import gettext_lazy as _
from django_stubs_ext import StrOrPromise

from tracking.choices import AutoCreate, TrackOption
from tracking.models import CrmRecord, OrgSettings, PersonalOptions

ROWS_MIN, ROWS_MAX = 10, 250
HIDDEN_BY_TRACK_ALL = frozenset({TrackOption.ALL})
# tracking-rules §4: HideEmailAutoTrackOptions leaves only 1 and 4, as in Dynamics.
HIDDEN_BY_AUTO_TRACK = frozenset({TrackOption.ALL, TrackOption.CRM_PARTIES, TrackOption.EMAIL_ENABLED})


# The regions of the tz database. The rest of zoneinfo.available_timezones() are links kept for old
# systems ("US/Eastern", "Etc/GMT+5", "Cuba", "localtime"): offered too, they made the list show the
# same place twice, and "localtime" is the server's, not a place.
REGIONS: dict[str, StrOrPromise] = {
    "Africa": _("Africa"),
    "America": _("America"),
    "Antarctica": _("Antarctica"),
    "Arctic": _("Arctic"),
    "Asia": _("Asia"),
    "Atlantic": _("Atlantic"),
    "Australia": _("Australia"),
    "Europe": _("Europe"),
    "Indian": _("Indian Ocean"),
    "Pacific": _("Pacific"),
}


@cache
def time_zone_names() -> frozenset[str]:
    """UTC and every zone of a region (Europe/Berlin), without the legacy links."""
    return frozenset(name for name in zoneinfo.available_timezones() if name.partition("/")[0] in REGIONS) | {
        "UTC"
    }


def utc_offset(name: str, now: datetime) -> str:
    """The zone's offset from UTC now (daylight saving included): UTC+01:00, UTC−03:30."""
    offset = now.astimezone(zoneinfo.ZoneInfo(name)).utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "\u2212"
    hours, mins = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours:02d}:{mins:02d}"


def time_zone_choices(current: str = "") -> list[tuple[Any, Any]]:
    """UTC first, then the zones grouped by region (Berlin under Europe), each with its offset now.

    Not cached: the offsets change with daylight saving time. `current`, a zone the list does not
    offer (a legacy link stored before), is offered as it is so that saving the form keeps it.
    """
    now = datetime.now(UTC)
    groups: dict[str, list[tuple[str, str]]] = {}
    for name in sorted(time_zone_names() - {"UTC"}):
        region, _slash, place = name.partition("/")
        label = place.replace("_", " ").replace("/", " – ")
        groups.setdefault(region, []).append((name, f"{label} ({utc_offset(name, now)})"))
    choices: list[tuple[Any, Any]] = [("UTC", "UTC")]
    choices += [(str(REGIONS[region]), zones) for region, zones in sorted(groups.items())]
    if current and current not in time_zone_names() and current in zoneinfo.available_timezones():
        choices.append((_("Other"), [(current, f"{current} ({utc_offset(current, now)})")]))
    return choices


class GeneralForm(forms.Form):
    time_zone = forms.ChoiceField(
        label=_("Time zone"),
        help_text=_("Times on every page are shown in this time zone."),
        error_messages={"invalid_choice": _("%(value)s is not a known time zone.")},
    )
    rows_per_page = forms.IntegerField(
        label=_("Records per page"),
        min_value=ROWS_MIN,
        max_value=ROWS_MAX,
        help_text=_("How many rows lists show per page, from 10 to 250."),
        error_messages={"invalid": _("Enter a whole number from 10 to 250.")},
    )
    language = forms.ChoiceField(
        label=_("Language"),
        help_text=_("The language of SyncAdmin's pages; it applies from the next page you open."),
    )
    alert_mail = forms.BooleanField(
        label=_("Alert mail"),
        required=False,
        help_text=_("Mail me when a mailbox I own or administer raises an error alert (in this language)."),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        self._current_zone = str(self.initial.get("time_zone", ""))
        self.fields["time_zone"].choices = time_zone_choices(self._current_zone)  # type: ignore[attr-defined]
        self.fields["language"].choices = settings.LANGUAGES  # type: ignore[attr-defined]

    def clean_time_zone(self) -> str:
        value: str = self.cleaned_data["time_zone"]
        if value not in time_zone_names() and value != self._current_zone:
            raise forms.ValidationError(_("%(value)s is not a known time zone."), params={"value": value})
        return value


def visible_track_options(org: OrgSettings) -> list[TrackOption]:
    hidden: set[TrackOption] = set()
    if org.hide_track_all_option:
        hidden |= HIDDEN_BY_TRACK_ALL
    if org.hide_auto_track_options:
        hidden |= HIDDEN_BY_AUTO_TRACK
    return [option for option in TrackOption if option not in hidden]


class EmailForm(forms.Form):
    """The Email tab: send on behalf, the Track option (minus what the org hides), automatic creation.

    A stored Track option that the organisation has since hidden stays selectable, so saving the
    other fields does not change it behind the user's back; choosing a hidden option anew is refused.
    """

    allow_send_on_behalf = forms.BooleanField(
        label=_("Allow other users to send email on your behalf"), required=False
    )
    track = forms.TypedChoiceField(label=_("Track"), coerce=int, widget=forms.RadioSelect)
    auto_create = forms.BooleanField(label=_("Create"), required=False)
    auto_create_kind = forms.ChoiceField(
        label=_("Record type"),
        required=False,
        choices=[
            (AutoCreate.LEAD.value, AutoCreate.LEAD.label),
            (AutoCreate.CONTACT.value, AutoCreate.CONTACT.label),
        ],
    )

    def __init__(self, *args: Any, options: PersonalOptions, org: OrgSettings, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        self.options = options
        visible = visible_track_options(org)
        self.visible_options = visible
        allowed = [o for o in TrackOption if o in visible or o == options.track]
        self.fields["track"].choices = [(o.value, o.label) for o in allowed]  # type: ignore[attr-defined]
        self.fields["track"].error_messages["invalid_choice"] = _(
            "%(value)s is not one of the Track options your organisation offers."
        )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("auto_create"):
            kind = data.get("auto_create_kind")
            if kind not in (AutoCreate.LEAD, AutoCreate.CONTACT):
                self.add_error("auto_create_kind", _("Choose Leads or Contacts."))
            else:
                data["auto_create_value"] = kind
        else:
            data["auto_create_value"] = AutoCreate.OFF.value
        return data


class RecordChoiceField(forms.ModelChoiceField[CrmRecord]):
    def label_from_instance(self, obj: CrmRecord) -> str:
        email = f" <{obj.email1}>" if obj.email1 else ""
        return f"{obj}{email}"


class FolderRuleForm(forms.Form):
    folder = forms.CharField(
        label=_("Folder"),
        max_length=255,
        help_text=_(
            "A folder under your Inbox, e.g. Inbox/Projects/Contoso; every message in it is tracked."
        ),
    )
    regarding = RecordChoiceField(
        label=_("Regarding"),
        queryset=CrmRecord.objects.none(),
        required=False,
        empty_label=_("(no regarding record)"),
        help_text=_("Optional: the record the tracked messages are set regarding."),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        field = self.fields["regarding"]
        assert isinstance(field, RecordChoiceField)
        field.queryset = CrmRecord.objects.filter(active=True).order_by("kind", "name", "pk")

    def offer(self, paths: list[str] | None) -> None:
        """Pick the folder from the server's list (None: the list could not be read; the path is typed)."""
        if paths is None:
            return
        self.fields["folder"].widget = forms.Select(
            choices=[("", _("Choose a folder"))] + [(p, p) for p in paths]
        )
        self.fields["folder"].help_text = _("A folder under your Inbox, as your mail server lists it.")
