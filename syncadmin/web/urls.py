"""The product's pages: one function view per URL, names prefixed web-."""

from django.contrib.auth import views as auth_views
from django.urls import path
from django.views.decorators.http import require_http_methods

from syncadmin.web.views import (
    dashboard,
    decisions,
    directory,
    exclusions,
    explain,
    home,
    mailboxes,
    orgsettings,
    personal,
    profiles,
)

urlpatterns = [
    path("", home.home, name="web-home"),
    # Django's LoginView would take a PUT as a POST.
    path(
        "login/",
        require_http_methods(["GET", "POST"])(auth_views.LoginView.as_view(redirect_authenticated_user=True)),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    # dashboard (admins, auditors)
    path("dashboard/", dashboard.dashboard, name="web-dashboard"),
    path("dashboard/scans/", dashboard.scans_in_progress, name="web-dashboard-scans"),
    # mailboxes
    path("mailboxes/", mailboxes.mailbox_list, name="web-mailboxes"),
    path("mailboxes/<int:pk>/", mailboxes.mailbox_detail, name="web-mailbox"),
    path("mailboxes/<int:pk>/status/", mailboxes.mailbox_status, name="web-mailbox-status"),
    path("mailboxes/<int:pk>/approve/", mailboxes.mailbox_approve, name="web-mailbox-approve"),
    path("mailboxes/<int:pk>/test/", mailboxes.mailbox_test, name="web-mailbox-test"),
    path("mailboxes/<int:pk>/scan/", mailboxes.mailbox_scan, name="web-mailbox-scan"),
    path("mailboxes/<int:pk>/disable/", mailboxes.mailbox_disable, name="web-mailbox-disable"),
    path("mailboxes/<int:pk>/reset-sync/", mailboxes.mailbox_reset_sync, name="web-mailbox-reset-sync"),
    path("mailboxes/<int:pk>/watermark/", mailboxes.mailbox_watermark, name="web-mailbox-watermark"),
    # server profiles
    path("profiles/", profiles.profile_list, name="web-profiles"),
    path("profiles/new/", profiles.profile_create, name="web-profile-create"),
    path("profiles/<int:pk>/", profiles.profile_edit, name="web-profile-edit"),
    # org settings
    path("settings/", orgsettings.org_settings, name="web-orgsettings"),
    path("settings/changes/", orgsettings.org_settings_changes, name="web-orgsettings-changes"),
    # personal options (self only)
    path("me/options/", personal.personal_options, name="web-personal-options"),
    path("me/folder-rules/", personal.folder_rules, name="web-folder-rules"),
    path("me/folder-rules/<int:pk>/delete/", personal.folder_rule_delete, name="web-folder-rule-delete"),
    # decision log
    path("decisions/", decisions.decision_list, name="web-decisions"),
    path("decisions/export.csv", decisions.decision_export, name="web-decisions-export"),
    path("decisions/<int:pk>/", decisions.decision_detail, name="web-decision"),
    path("decisions/<int:pk>/track/", decisions.decision_track, name="web-decision-track"),
    # explain and what-if
    path("explain/", explain.explain, name="web-explain"),
    path("what-if/", explain.what_if, name="web-what-if"),
    # CRM directory
    path("directory/", directory.record_list, name="web-directory"),
    path("directory/import/", directory.record_import, name="web-directory-import"),
    path("directory/import/<int:pk>/", directory.record_import_result, name="web-directory-import-result"),
    # exclusion list
    path("exclusions/", exclusions.exclusion_list, name="web-exclusions"),
    path("exclusions/<int:pk>/delete/", exclusions.exclusion_delete, name="web-exclusion-delete"),
]
