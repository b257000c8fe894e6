"""The exclusion list (tracking-rules §10): addresses and @domains that are never tracked.

Org-wide entries: admins add and delete, everyone else reads. Personal entries: each user manages
their own (another user's entry is a 404, for admins too) and nobody else sees them.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from syncadmin.web.forms.exclusions import ORG, PERSONAL, ExclusionForm
from syncadmin.web.permissions import AuthenticatedHttpRequest, is_admin, user_required
from tracking.actions import ActionError, do_add_exclusion, do_delete_exclusion
from tracking.models import ExclusionEntry


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
