"""Set Personal Options: every signed-in user edits their own, and only their own (no user id in any URL).

Tabs General (time zone, rows per page, language) and Email (send on behalf, Track option, folder
tracking rules, automatic record creation, a link to the user's mailbox) switch by ?tab= links, so
they work without JavaScript. Every saved change is audited by the actions.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.models import User
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import translation
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from syncadmin.web.forms.personal import EmailForm, FolderRuleForm, GeneralForm
from syncadmin.web.permissions import AuthenticatedHttpRequest, user_required
from tracking.actions import ActionError, do_delete_folder_rule, do_set_personal_options
from tracking.choices import AutoCreate, TrackOption
from tracking.folders import add_folder_rule, rule_rows, server_folders, why_no_folder_tracking
from tracking.models import FolderTrackingRule, Mailbox, OrgSettings, PersonalOptions
from tracking.sources.base import SourceError

TABS = ("general", "email")


def _own_mailbox(user: User) -> Mailbox | None:
    return Mailbox.objects.select_related("profile").filter(user=user).first()


def _tab_url(tab: str, anchor: str = "") -> str:
    return f"{reverse('web-personal-options')}?tab={tab}{anchor}"


def _folder_rules_block(
    mailbox: Mailbox | None, org: OrgSettings, rule_form: FolderRuleForm, *, refresh: bool
) -> dict[str, Any]:
    """The folder tracking rules with their state, and the picker of the server's folders; or why there
    are no rules (in words for the user)."""
    why = why_no_folder_tracking(mailbox)
    if why is not None:
        return {"folder_rules_shown": False, "folder_rules_why": why}
    assert mailbox is not None
    if not org.folder_tracking_enabled:
        return {
            "folder_rules_shown": False,
            "folder_rules_why": _("Your organisation has turned folder-based tracking off."),
        }
    rules = list(mailbox.folder_rules.select_related("regarding").order_by("folder", "pk"))
    folders_error = ""
    offered: list[str] | None = None
    if len(rules) < org.max_folder_mappings:
        try:
            listed = server_folders(mailbox, refresh=refresh)
        except SourceError as exc:
            folders_error = _(
                "Your mail server could not be reached to list your folders (%(error)s). Try again with "
                "Refresh folders, or type the folder's path."
            ) % {"error": exc}
        else:
            mapped = {r.folder_id for r in rules}
            offered = [f.path for f in listed if f.id not in mapped]
    rule_form.offer(offered)
    return {
        "folder_rules_shown": True,
        "folder_rules": rule_rows(rules, org),
        "folder_rules_max": org.max_folder_mappings,
        "folder_rules_full": len(rules) >= org.max_folder_mappings,
        "folders_error": folders_error,
        "folders_offered": offered,
    }


def _render(
    request: AuthenticatedHttpRequest,
    tab: str,
    *,
    general_form: GeneralForm | None = None,
    email_form: EmailForm | None = None,
    rule_form: FolderRuleForm | None = None,
    status: int = 200,
) -> HttpResponse:
    user = request.user
    options = PersonalOptions.objects.of(user)
    org = OrgSettings.load()
    mailbox = _own_mailbox(user)
    context: dict[str, Any] = {
        "title": _("Set Personal Options"),
        "nav_section": "personal",
        "tab": tab,
        "options": options,
        "mailbox": mailbox,
    }
    if tab == "general":
        context["form"] = general_form or GeneralForm(
            initial={
                "time_zone": options.time_zone,
                "rows_per_page": options.rows_per_page,
                "language": options.language,
                "alert_mail": options.alert_mail,
            }
        )
    else:
        form = email_form or EmailForm(options=options, org=org, initial=_email_initial(options))
        context["form"] = form
        context["track_choices"] = _track_choices(form, options)
        context["forced"] = (
            TrackOption(org.force_filtering_method) if org.force_filtering_method >= 0 else None
        )
        context["rule_form"] = rule_form = rule_form or FolderRuleForm()
        context.update(
            _folder_rules_block(mailbox, org, rule_form, refresh=request.GET.get("refresh_folders") == "1")
        )
    return render(request, "web/personal.html", context, status=status)


def _email_initial(options: PersonalOptions) -> dict[str, Any]:
    return {
        "allow_send_on_behalf": options.allow_send_on_behalf,
        "track": options.track,
        "auto_create": options.auto_create != AutoCreate.OFF,
        "auto_create_kind": options.auto_create
        if options.auto_create != AutoCreate.OFF
        else AutoCreate.CONTACT,
    }


def _track_choices(form: EmailForm, options: PersonalOptions) -> list[dict[str, Any]]:
    """The radio list: what is offered, what is selected, and what is shown only because it is stored."""
    selected = str(form["track"].value())
    return [
        {
            "value": option.value,
            "label": option.label,
            "checked": str(option.value) == selected,
            "hidden_by_org": option not in form.visible_options,
        }
        for option in TrackOption
        if option in form.visible_options or option == options.track
    ]


@user_required
@require_http_methods(["GET", "POST"])
def personal_options(request: AuthenticatedHttpRequest) -> HttpResponse:
    tab = request.POST.get("tab") if request.method == "POST" else request.GET.get("tab")
    if tab not in TABS:
        tab = "general"
    if request.method != "POST":
        return _render(request, tab)
    user = request.user
    options = PersonalOptions.objects.of(user)
    if tab == "general":
        # the stored zone stays acceptable even when the list no longer offers it (a legacy link)
        general = GeneralForm(request.POST, initial={"time_zone": options.time_zone})
        if not general.is_valid():
            return _render(request, tab, general_form=general, status=400)
        options = do_set_personal_options(
            user,
            time_zone=general.cleaned_data["time_zone"],
            rows_per_page=general.cleaned_data["rows_per_page"],
            language=general.cleaned_data["language"],
            alert_mail=general.cleaned_data["alert_mail"],
            acting_user=user,
        )
    else:
        email = EmailForm(request.POST, options=options, org=OrgSettings.load())
        if not email.is_valid():
            return _render(request, tab, email_form=email, status=400)
        track_before = options.track
        options = do_set_personal_options(
            user,
            track=email.cleaned_data["track"],
            auto_create=email.cleaned_data["auto_create_value"],
            allow_send_on_behalf=email.cleaned_data["allow_send_on_behalf"],
            acting_user=user,
        )
    # Said in the language just chosen, which every later page uses too.
    with translation.override(options.language):
        messages.success(request, _("Your personal options are saved."))
        own = Mailbox.objects.filter(user=user).values_list("pk", flat=True).first()
        if tab != "general" and options.track != track_before and own is not None:
            # A new Track option applies to mail scanned from now on; older mail only through a round (§3.6).
            messages.info(
                request,
                format_html(
                    '{} <a href="{}?mailbox={}">{}</a>',
                    _("The new Track option applies to mail scanned from now on."),
                    reverse("web-reprocess"),
                    own,
                    _("Apply it to my mail since…"),
                ),
            )
    return redirect(_tab_url(tab))


@user_required
@require_POST
def folder_rules(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Add a folder tracking rule to the user's own mailbox."""
    user = request.user
    form = FolderRuleForm(request.POST)
    if not form.is_valid():
        return _render(request, "email", rule_form=form, status=400)
    mailbox = _own_mailbox(user)
    if mailbox is None:
        form.add_error(None, _("You have no mailbox in SyncAdmin."))
        return _render(request, "email", rule_form=form, status=400)
    try:
        rule = add_folder_rule(
            mailbox, form.cleaned_data["folder"], regarding=form.cleaned_data["regarding"], acting_user=user
        )
    except ActionError as exc:
        form.add_error(None, str(exc))
        return _render(request, "email", rule_form=form, status=400)
    messages.success(request, _("Messages in %(folder)s will be tracked.") % {"folder": rule.folder})
    return redirect(_tab_url("email", "#folder-rules"))


@user_required
@require_POST
def folder_rule_delete(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """Delete one of the user's own folder rules; another user's rule id is a 404, admins included."""
    user = request.user
    rule = (
        FolderTrackingRule.objects.visible_to(user)
        .select_related("mailbox", "regarding")
        .filter(pk=pk)
        .first()
    )
    if rule is None:
        raise Http404
    folder = rule.folder
    do_delete_folder_rule(rule, acting_user=user)
    messages.success(request, _("The rule for %(folder)s is deleted.") % {"folder": folder})
    return redirect(_tab_url("email", "#folder-rules"))
