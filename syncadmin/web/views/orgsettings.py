"""Org settings (tracking-rules §11): the System Settings email tab, the OrgDBOrgSettings list and their
audit trail.

Admins edit; auditors read the same pages without any controls; users get 403.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_http_methods, require_safe

from syncadmin.web.forms import settings as fs
from syncadmin.web.paging import cursor_param, keyset_page
from syncadmin.web.permissions import AuthenticatedHttpRequest, is_admin, reader_required
from tracking.actions import ActionError, check_set_org_setting
from tracking.choices import AuditAction
from tracking.models import AuditEvent, OrgSettings
from tracking.orgsettings import ORG_SETTINGS, SETTINGS_BY_NAME

TABS = ("email", "orgdb")
CHANGES_PAGE = 200


@reader_required
@require_http_methods(["GET", "POST"])
def org_settings(request: AuthenticatedHttpRequest) -> HttpResponse:
    tab = request.GET.get("tab", "email")
    if tab not in TABS:
        tab = "email"
    current = fs.current_values(OrgSettings.load())
    if request.method == "POST":
        if not is_admin(request.user):
            raise PermissionDenied
        return _save(request, current)
    if tab == "orgdb":
        rows = [
            fs.SettingRow(spec, current[spec.name], spec.format(current[spec.name])) for spec in ORG_SETTINGS
        ]
        return render(
            request,
            "web/orgsettings_orgdb.html",
            {"title": _("OrgDBOrgSettings"), "nav_section": "orgsettings", "tab": tab, "rows": rows},
        )
    return _render_email_tab(request, fs.build_sections(current))


def _render_email_tab(
    request: AuthenticatedHttpRequest, sections: list[fs.Section], *, status: int = 200
) -> HttpResponse:
    context = {
        "title": _("System Settings · Email"),
        "nav_section": "orgsettings",
        "tab": "email",
        "sections": sections,
        "editable": is_admin(request.user),
        "error_count": sum(1 for s in sections for r in s.rows if r.error),
    }
    return render(request, "web/orgsettings.html", context, status=status)


def _save(request: AuthenticatedHttpRequest, current: dict[str, fs.SettingValue]) -> HttpResponse:
    """Validate every posted field first; save the changed ones only when none is refused."""
    raw = fs.posted_values(request.POST)
    values, errors = fs.validate(raw)
    if errors:
        return _render_email_tab(request, fs.build_sections(current, raw, errors), status=400)
    names = fs.changed(values, current)
    try:
        with transaction.atomic():
            for name in names:
                spec = SETTINGS_BY_NAME[name.lower()]
                # Each change is one audited event: who, when, old → new.
                check_set_org_setting(name, spec.format(values[name]), acting_user=request.user)
    except ActionError as exc:
        messages.error(request, str(exc))
        return _render_email_tab(request, fs.build_sections(current, raw), status=400)
    if names:
        messages.success(
            request,
            ngettext("Saved %(count)d change: %(names)s.", "Saved %(count)d changes: %(names)s.", len(names))
            % {"count": len(names), "names": ", ".join(names)},
        )
    else:
        messages.info(request, _("Nothing changed."))
    return redirect(reverse("web-orgsettings") + "?tab=email")


@reader_required
@require_safe
def org_settings_changes(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The audit list of org setting changes, newest first, 200 at a time (keyset on id)."""
    events = AuditEvent.objects.filter(action=AuditAction.ORGSETTING_CHANGED)
    # PostgreSQL refuses NUL in a text parameter; no setting name holds one.
    setting = request.GET.get("setting", "").replace("\x00", "")
    if setting:
        events = events.filter(target=setting)
    page = keyset_page(events, order=("-id",), start_after=cursor_param(request, "before"), size=CHANGES_PAGE)
    context = {
        "title": _("Changes to organisation settings"),
        "nav_section": "orgsettings",
        "tab": "changes",
        "events": page.rows,
        "older": page.next,
        "setting": setting,
        "paged": page.paged,
        "setting_names": [spec.name for spec in ORG_SETTINGS],
    }
    return render(request, "web/orgsettings_changes.html", context)
