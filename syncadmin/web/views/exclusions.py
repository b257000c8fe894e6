"""The exclusion list (DOMAIN §10): addresses and @domains that are never tracked.

Org-wide entries: admins add and delete, everyone else reads. Personal entries: each user manages
their own (another user's entry is a 404, for admins too) and nobody else sees them.
"""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods, require_POST

from syncadmin.web.permissions import AuthenticatedHttpRequest, is_admin, user_required
from tracking.actions import ActionError, do_add_exclusion, do_delete_exclusion
from tracking.models import ExclusionEntry

PATTERN_MAX = 320
_DOMAIN = re.compile(r"^(?=.{1,253}$)[^\s@.]+(?:\.[^\s@.]+)*$")
ORG, PERSONAL = "org", "personal"


def normalize_pattern(raw: str) -> str | None:
    """name@example.com or @example.com, lower-cased; None when it is neither."""
    value = raw.strip().lower()
    if not value or len(value) > PATTERN_MAX or any(c.isspace() for c in value):
        return None
    local, at, domain = value.rpartition("@")
    if not at or "@" in local or not _DOMAIN.match(domain):
        return None
    if local.startswith(".") or local.endswith(".") or ".." in local:
        return None
    return value


class ExclusionForm(forms.Form):
    scope = forms.ChoiceField(choices=[(ORG, ORG), (PERSONAL, PERSONAL)], widget=forms.HiddenInput)
    pattern = forms.CharField(
        label=gettext_lazy("Email address or @domain"),
        max_length=PATTERN_MAX,
        help_text=gettext_lazy(
            "For example name@example.com, or @example.com for every address of a domain."
        ),
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )

    def __init__(self, *args: Any, user: User, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_pattern(self) -> str:
        pattern = normalize_pattern(self.cleaned_data["pattern"])
        if pattern is None:
            raise forms.ValidationError(
                _("Enter an email address (name@example.com) or a domain starting with @ (@example.com).")
            )
        return pattern

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        pattern, scope = data.get("pattern"), data.get("scope")
        if pattern and scope:
            owner = None if scope == ORG else self.user
            if ExclusionEntry.objects.filter(pattern__iexact=pattern, user=owner).exists():
                message = (
                    _("%(pattern)s is already on the organisation's exclusion list.")
                    if owner is None
                    else _("%(pattern)s is already on your exclusion list.")
                )
                self.add_error("pattern", message % {"pattern": pattern})
        return data


@user_required
@require_http_methods(["GET", "POST"])
def exclusion_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    user = request.user
    admin = is_admin(user)
    # Two forms on one page post the same field names; auto_id keeps their element ids apart.
    org_form = ExclusionForm(initial={"scope": ORG}, user=user, auto_id=f"{ORG}_%s")
    own_form = ExclusionForm(initial={"scope": PERSONAL}, user=user, auto_id=f"{PERSONAL}_%s")
    if request.method == "POST":
        scope = ORG if request.POST.get("scope") == ORG else PERSONAL
        if scope == ORG and not admin:
            raise PermissionDenied
        data = request.POST.copy()
        data["scope"] = scope
        form = ExclusionForm(data, user=user, auto_id=f"{scope}_%s")
        if form.is_valid():
            owner = None if form.cleaned_data["scope"] == ORG else user
            try:
                entry = do_add_exclusion(form.cleaned_data["pattern"], user=owner, acting_user=user)
            except ActionError as exc:
                form.add_error("pattern", str(exc))
            else:
                messages.success(
                    request,
                    _("%(pattern)s is added: messages from or to it are not tracked.")
                    % {"pattern": entry.pattern},
                )
                return redirect("web-exclusions")
        if scope == ORG:
            org_form = form
        else:
            own_form = form
    entries = list(ExclusionEntry.objects.visible_to(user).order_by("pattern"))
    context = {
        "title": _("Exclusion list"),
        "nav_section": "exclusions",
        "org_entries": [e for e in entries if e.user_id is None],
        "own_entries": [e for e in entries if e.user_id is not None],
        "can_edit_org": admin,
        "org_form": org_form,
        "own_form": own_form,
    }
    invalid = org_form.errors or own_form.errors
    return render(request, "web/exclusions.html", context, status=400 if invalid else 200)


@user_required
@require_POST
def exclusion_delete(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    user = request.user
    entry = ExclusionEntry.objects.visible_to(user).select_related("user").filter(pk=pk).first()
    if entry is None:
        raise Http404
    if entry.user_id is None and not is_admin(user):
        raise PermissionDenied
    pattern = entry.pattern
    do_delete_exclusion(entry, acting_user=user)
    messages.success(request, _("%(pattern)s is removed from the exclusion list.") % {"pattern": pattern})
    return redirect("web-exclusions")
