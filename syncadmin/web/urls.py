"""The product's pages: one function view per URL, names prefixed web-."""

from django.contrib.auth import views as auth_views
from django.urls import path

from syncadmin.web.views import (
    accounts,
    audit,
    dashboard,
    decisions,
    directory,
    emails,
    exclusions,
    explain,
    graph_push,
    home,
    mailbox_admin,
    mailboxes,
    orgsettings,
    personal,
    profiles,
    records,
    reprocess,
    search,
    users,
)

urlpatterns = [
    path("", home.home, name="web-home"),
    path("login/", accounts.sign_in, name="login"),
    # password reset by email, and the set-password page of invitations and resets
    path("password-reset/", accounts.password_reset, name="password_reset"),
    path("password-reset/sent/", accounts.password_reset_done, name="password_reset_done"),
    path("set-password/<uidb64>/<token>/", accounts.password_reset_confirm, name="password_reset_confirm"),
    path("set-password/done/", accounts.password_reset_complete, name="password_reset_complete"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    # OpenID Connect sign-in (when OIDC_ISSUER is set; 404 otherwise); the redirect URI is /oidc/callback/
    path("oidc/authenticate/", accounts.oidc_sign_in, name="oidc_authentication_init"),
    path("oidc/callback/", accounts.oidc_callback, name="oidc_authentication_callback"),
    path("oidc/refused/", accounts.oidc_refused, name="web-oidc-refused"),
    # Microsoft Graph change notifications: public, Graph posts to them (SYNCADMIN_SITE_URL + these paths)
    path("graph/notifications/", graph_push.notifications, name="web-graph-notifications"),
    path("graph/lifecycle/", graph_push.lifecycle, name="web-graph-lifecycle"),
    # dashboard (admins, auditors)
    path("dashboard/", dashboard.dashboard, name="web-dashboard"),
    path("dashboard/scans/", dashboard.scans_in_progress, name="web-dashboard-scans"),
    # mailboxes
    path("mailboxes/", mailboxes.mailbox_list, name="web-mailboxes"),
    path("mailboxes/new/", mailbox_admin.mailbox_create, name="web-mailbox-create"),
    path("mailboxes/bulk/", mailbox_admin.mailbox_bulk, name="web-mailbox-bulk"),
    path("mailboxes/bulk/<int:pk>/", mailbox_admin.bulk_operation, name="web-bulk-operation"),
    path("mailboxes/<int:pk>/", mailboxes.mailbox_detail, name="web-mailbox"),
    # reprocessing rounds (tracking-rules §3.6)
    path("reprocess/", reprocess.reprocess_new, name="web-reprocess"),
    path("reprocess/<int:pk>/", reprocess.round_detail, name="web-round"),
    path("reprocess/<int:pk>/cancel/", reprocess.round_cancel, name="web-round-cancel"),
    path("mailboxes/<int:pk>/edit/", mailbox_admin.mailbox_edit, name="web-mailbox-edit"),
    path("mailboxes/<int:pk>/reject/", mailbox_admin.mailbox_reject, name="web-mailbox-reject"),
    path("mailboxes/<int:pk>/status/", mailboxes.mailbox_status, name="web-mailbox-status"),
    path("mailboxes/<int:pk>/approve/", mailboxes.mailbox_approve, name="web-mailbox-approve"),
    path("mailboxes/<int:pk>/test/", mailboxes.mailbox_test, name="web-mailbox-test"),
    path("mailboxes/<int:pk>/scan/", mailboxes.mailbox_scan, name="web-mailbox-scan"),
    path("mailboxes/<int:pk>/disable/", mailboxes.mailbox_disable, name="web-mailbox-disable"),
    path("mailboxes/<int:pk>/reset-sync/", mailboxes.mailbox_reset_sync, name="web-mailbox-reset-sync"),
    path("mailboxes/<int:pk>/start-date/", mailboxes.mailbox_start_date, name="web-mailbox-start-date"),
    # server profiles
    path("profiles/", profiles.profile_list, name="web-profiles"),
    path("profiles/new/", profiles.profile_create, name="web-profile-create"),
    path("profiles/<int:pk>/", profiles.profile_edit, name="web-profile-edit"),
    path("profiles/<int:pk>/test/", mailbox_admin.profile_test, name="web-profile-test"),
    path(
        "profiles/<int:pk>/test-mailboxes/",
        mailbox_admin.profile_test_mailboxes,
        name="web-profile-test-mailboxes",
    ),
    path("profiles/<int:pk>/default/", mailbox_admin.profile_default, name="web-profile-default"),
    # queues (a queue's Track option and owner, its queue items)
    path("queues/<int:pk>/", mailbox_admin.queue_detail, name="web-queue"),
    path("queues/items/<int:pk>/done/", mailbox_admin.queue_item_done, name="web-queue-item-done"),
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
    path("decisions/<int:pk>/regarding/", decisions.decision_regarding, name="web-decision-regarding"),
    path("decisions/<int:pk>/untrack/", decisions.decision_untrack, name="web-decision-untrack"),
    # tracked emails and record pages with their timelines (tracking-rules §2)
    path("emails/<int:pk>/", emails.email_detail, name="web-email"),
    path("emails/<int:pk>/body/", emails.email_body, name="web-email-body"),
    path("records/<str:kind>/<int:pk>/", records.record_detail, name="web-record"),
    path("search/", search.search_emails, name="web-search"),
    path("attachments/<int:pk>/", decisions.tracked_attachment, name="web-tracked-attachment"),
    path("attachments/<int:pk>/inline/", emails.email_inline, name="web-email-inline"),
    # explain and what-if
    path("explain/", explain.explain, name="web-explain"),
    path("what-if/", explain.what_if, name="web-what-if"),
    # audit trail (admins, auditors)
    path("audit/", audit.audit_list, name="web-audit"),
    path("audit/export.csv", audit.audit_export, name="web-audit-export"),
    # users and roles (admins)
    path("users/", users.user_list, name="web-users"),
    path("users/invite/", users.user_invite, name="web-user-invite"),
    path("users/<int:pk>/role/", users.user_role, name="web-user-role"),
    path("users/<int:pk>/deactivate/", users.user_deactivate, name="web-user-deactivate"),
    # CRM directory
    path("directory/", directory.record_list, name="web-directory"),
    path("directory/import/", directory.record_import, name="web-directory-import"),
    path("directory/import/<int:pk>/", directory.record_import_result, name="web-directory-import-result"),
    # exclusion list
    path("exclusions/", exclusions.exclusion_list, name="web-exclusions"),
    path("exclusions/<int:pk>/delete/", exclusions.exclusion_delete, name="web-exclusion-delete"),
]
