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

from syncadmin.web.forms.mailbox_admin import ProfileTestForm
from syncadmin.web.forms.profiles import KindProfileForm
from syncadmin.web.htmx import is_htmx
from syncadmin.web.permissions import AuthenticatedHttpRequest, admin_required, is_admin, reader_required
from syncadmin.web.views.mailbox_admin import connection_test_state
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


def _kind_form(request: AuthenticatedHttpRequest, profile: EmailServerProfile | None) -> KindProfileForm:
    """The form for the kind asked for: ?kind= (htmx swaps the kind's fields in), or the kind posted with
    "Show the fields of this kind" (the same without JavaScript: the values typed stay, nothing is saved)."""
    if request.method == "POST" and "refresh_kind" not in request.POST:
        return KindProfileForm(request.POST, profile=profile)
    source = request.POST if request.method == "POST" else request.GET
    kept = {k: v for k, v in source.items() if k not in ("secret", "csrfmiddlewaretoken", "refresh_kind")}
    kind = source.get("kind")
    if not kept:
        return KindProfileForm(kind=kind, profile=profile)
    return KindProfileForm(kind=kind, profile=profile, initial=kept)


def _form_page(
    request: AuthenticatedHttpRequest, context: dict[str, object], form: KindProfileForm
) -> HttpResponse:
    if is_htmx(request, target="kind-fields"):
        return render(request, "web/_profile_kind_fields.html", context)
    return render(
        request, "web/profile_form.html", context, status=400 if form.is_bound and form.errors else 200
    )


@admin_required
@sensitive_post_parameters("secret")
@require_http_methods(["GET", "POST"])
@sensitive_variables()
def profile_create(request: AuthenticatedHttpRequest) -> HttpResponse:
    form = _kind_form(request, None)
    if form.is_bound and form.is_valid():
        try:
            profile = check_add_profile(
                ProfileValues.from_data(form.cleaned_data),
                secret=form.cleaned_data.get("secret", ""),
                acting_user=request.user,
            )
        except ActionError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, _("Server profile %(name)s created.") % {"name": profile.name})
            return redirect("web-profile-edit", profile.pk)
    return _form_page(
        request,
        {"title": _("New server profile"), "nav_section": "profiles", "form": form, "profile": None},
        form,
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
    form = _kind_form(request, profile)
    if form.is_bound and form.is_valid():
        try:
            changed = check_update_profile(
                profile,
                ProfileValues.from_data(form.cleaned_data),
                secret=form.cleaned_data.get("secret") or None,
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
    connection_test = connection_test_state(request, profile) if admin else None
    if is_htmx(request, target="connection-test"):
        return render(
            request, "web/_profile_connection_test.html", {"profile": profile, "test": connection_test}
        )
    first = profile.mailboxes.order_by("email_address").first()
    context = {
        "title": profile.name,
        "nav_section": "profiles",
        "form": form,
        "profile": profile,
        "admin": admin,
        "mailboxes": profile.mailboxes.order_by("email_address")[:50],
        "test_form": ProfileTestForm(
            initial={
                "address": connection_test.address
                if connection_test
                else first.email_address
                if first
                else ""
            }
        ),
        "test": connection_test,
    }
    return _form_page(request, context, form)
