"""Users & roles (admins): who uses SyncAdmin, with role, mailbox, last sign-in and source; invite a
person by email, change a role (the two groups), deactivate someone. Every change is audited.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.models import User
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST, require_safe

from syncadmin.web.forms.users import InviteForm, RoleForm
from syncadmin.web.permissions import AuthenticatedHttpRequest, admin_required
from tracking.actions import ActionError, check_deactivate_user, check_invite_user, check_set_role, user_rows
from tracking.choices import Role
from tracking.invitations import send_invitation, site_url


def _render_list(request: AuthenticatedHttpRequest, form: InviteForm, *, status: int = 200) -> HttpResponse:
    context = {
        "title": _("Users & roles"),
        "nav_section": "users",
        "rows": user_rows(),
        "form": form,
        "roles": Role.choices,
    }
    return render(request, "web/users.html", context, status=status)


@admin_required
@require_safe
def user_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    return _render_list(request, InviteForm())


@admin_required
@require_POST
def user_invite(request: AuthenticatedHttpRequest) -> HttpResponse:
    form = InviteForm(request.POST)
    if not form.is_valid():
        return _render_list(request, form, status=400)
    try:
        user = check_invite_user(
            form.cleaned_data["email"], Role(form.cleaned_data["role"]), acting_user=request.user
        )
    except ActionError as exc:
        form.add_error("email", str(exc))
        return _render_list(request, form, status=400)
    link, mailed = send_invitation(user, site_url(request.build_absolute_uri("/")))
    if mailed:
        messages.success(
            request, _("Invited %(email)s: the set-password link is on its way.") % {"email": user.email}
        )
    else:
        messages.warning(
            request,
            _(
                "Invited %(email)s. Email is not configured: give them this link, "
                "which works once within 72 hours: %(link)s"
            )
            % {"email": user.email, "link": link},
        )
    return redirect("web-users")


def _get_user(pk: int) -> User:
    user = User.objects.filter(pk=pk).first()
    if user is None:
        raise Http404
    return user


@admin_required
@require_POST
def user_role(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    user = _get_user(pk)
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Choose a role."))
        return _render_list(request, InviteForm(), status=400)
    try:
        changed = check_set_role(user, Role(form.cleaned_data["role"]), acting_user=request.user)
    except ActionError as exc:
        messages.error(request, str(exc))
        return _render_list(request, InviteForm(), status=400)
    if changed:
        messages.success(
            request,
            _("%(user)s is now: %(role)s.")
            % {"user": user.get_username(), "role": Role(form.cleaned_data["role"]).label},
        )
    return redirect("web-users")


@admin_required
@require_POST
def user_deactivate(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    user = _get_user(pk)
    try:
        changed = check_deactivate_user(user, acting_user=request.user)
    except ActionError as exc:
        messages.error(request, str(exc))
        return _render_list(request, InviteForm(), status=400)
    if changed:
        messages.success(
            request,
            _("%(user)s is deactivated: signed out, and their mailbox is no longer scanned.")
            % {"user": user.get_username()},
        )
    return redirect("web-users")
