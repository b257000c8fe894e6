"""Server profiles: the list, and the create / edit form (admins) that auditors read without editing.

A profile's secret is write-only (and hidden from Django's error reports: sensitive parameters and
variables): the form's password field never renders a value, an empty
field keeps the stored secret, and pages only ever say whether one is set.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_http_methods, require_safe

from syncadmin.web.forms.mailboxes import ProfileForm
from syncadmin.web.permissions import AuthenticatedHttpRequest, admin_required, is_admin, reader_required
from tracking.actions import (
    ActionError,
    ProfileValues,
    SecretRequired,
    check_add_profile,
    check_update_profile,
)
from tracking.models import EmailServerProfile


@reader_required
@require_safe
def profile_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    profiles = EmailServerProfile.objects.annotate(mailbox_count=Count("mailboxes")).order_by("name")
    return render(
        request,
        "web/profile_list.html",
        {
            "title": _("Server profiles"),
            "nav_section": "profiles",
            "profiles": profiles,
            "admin": is_admin(request.user),
        },
    )


@admin_required
@sensitive_post_parameters("secret")
@require_http_methods(["GET", "POST"])
@sensitive_variables()
def profile_create(request: AuthenticatedHttpRequest) -> HttpResponse:
    form = ProfileForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            profile = check_add_profile(
                ProfileValues.from_data(form.cleaned_data),
                secret=form.cleaned_data["secret"],
                acting_user=request.user,
            )
        except ActionError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, _("Server profile %(name)s created.") % {"name": profile.name})
            return redirect("web-profile-edit", profile.pk)
    return render(
        request,
        "web/profile_form.html",
        {"title": _("New server profile"), "nav_section": "profiles", "form": form, "profile": None},
        status=400 if form.is_bound and form.errors else 200,
    )


@reader_required
@sensitive_post_parameters("secret")
@require_http_methods(["GET", "POST"])
@sensitive_variables()
def profile_edit(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """Admins edit; auditors read the same fields, and their POST is refused."""
    profile = get_object_or_404(EmailServerProfile.objects.annotate(mailbox_count=Count("mailboxes")), pk=pk)
    admin = is_admin(request.user)
    if request.method == "POST" and not admin:
        raise PermissionDenied
    form = ProfileForm(request.POST if request.method == "POST" else None, profile=profile)
    if request.method == "POST" and form.is_valid():
        try:
            changed = check_update_profile(
                profile,
                ProfileValues.from_data(form.cleaned_data),
                secret=form.cleaned_data["secret"] or None,
                clear_secret=form.cleaned_data.get("clear_secret", False),
                acting_user=request.user,
            )
        except SecretRequired as exc:
            form.add_error("secret", str(exc))
        except ActionError as exc:
            form.add_error(None, str(exc))
        else:
            if changed:
                messages.success(
                    request, _("Server profile %(name)s saved.") % {"name": form.cleaned_data["name"]}
                )
            else:
                messages.info(request, _("Nothing changed."))
            return redirect("web-profile-edit", profile.pk)
    return render(
        request,
        "web/profile_form.html",
        {
            "title": profile.name,
            "nav_section": "profiles",
            "form": form,
            "profile": profile,
            "admin": admin,
            "mailboxes": profile.mailboxes.order_by("email_address")[:50],
        },
        status=400 if form.is_bound and form.errors else 200,
    )
