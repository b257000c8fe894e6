"""Every state change of SyncAdmin: named, atomic, audited where the rules ask for it, one module per area.

`do_*` performs a change that its caller has validated; `check_*` validates as well and raises
ActionError (a message meant for the person who asked) without changing anything. Callers import
from this package; the modules are where a reader finds an area's rules.
"""

from tracking.actions.alerts import raise_alert
from tracking.actions.directory import check_import_records
from tracking.actions.errors import ActionError
from tracking.actions.exclusions import do_add_exclusion, do_delete_exclusion
from tracking.actions.folders import (
    HierarchyChange,
    do_apply_folder_hierarchy,
    do_set_regarding_by_folder_rule,
)
from tracking.actions.mailbox_admin import (
    check_add_mailbox_for_new_user,
    check_start_bulk,
    check_update_mailbox,
    check_update_queue,
    default_profile,
    do_apply_default_profile,
    do_finish_bulk,
    do_record_bulk_result,
    do_set_default_profile,
)
from tracking.actions.mailboxes import (
    check_add_mailbox,
    do_approve_mailbox,
    do_disable_mailbox,
    do_note_mailbox_job,
    do_record_test_result,
    do_reset_mailbox_sync_state,
    do_set_mailbox_start_date,
)
from tracking.actions.manual import (
    current_decision,
    do_set_regarding_by_hand,
    do_track_again,
    do_untrack,
)
from tracking.actions.parties import do_backfill_parties
from tracking.actions.personal import (
    check_add_folder_rule,
    do_delete_folder_rule,
    do_set_personal_options,
    normalize_folder_path,
)
from tracking.actions.profiles import (
    SECRET_BOUND_FIELDS,
    ProfileValues,
    SecretRequired,
    check_add_profile,
    check_update_profile,
    endpoint_problem,
    secret_bound_changes,
    secret_required_message,
)
from tracking.actions.queues import do_mark_queue_item_done
from tracking.actions.reprocessing import (
    RoundRequest,
    RoundStatus,
    do_begin_round_run,
    do_cancel_round,
    do_finish_round_run,
    do_reset_round_state,
    do_start_round,
    round_status,
)
from tracking.actions.retention import content_purgeable, do_purge_content, do_purge_decisions
from tracking.actions.scans import (
    do_audit_manual_tracking,
    do_commit_page,
    do_finish_scan_run,
    do_mark_scan_failed,
    do_mark_scan_started,
    do_mark_scan_succeeded,
    do_record_skipped_scan,
    do_reset_sync_state,
    do_set_scan_estimate,
    do_start_scan_run,
)
from tracking.actions.schedule import (
    do_claim_due_mailboxes,
    do_finish_cycle,
    do_postpone_scan,
    do_record_cycle_failure,
)
from tracking.actions.settings import check_set_org_setting
from tracking.actions.users import (
    check_deactivate_user,
    check_invite_user,
    check_set_role,
    last_sign_in_methods,
    parse_role,
    role_of,
    source_of,
    user_for_email,
    user_rows,
)

__all__ = [
    "SECRET_BOUND_FIELDS",
    "ActionError",
    "HierarchyChange",
    "ProfileValues",
    "RoundRequest",
    "RoundStatus",
    "SecretRequired",
    "check_add_folder_rule",
    "check_add_mailbox",
    "check_add_mailbox_for_new_user",
    "check_add_profile",
    "check_deactivate_user",
    "check_import_records",
    "check_invite_user",
    "check_set_org_setting",
    "check_set_role",
    "check_start_bulk",
    "check_update_mailbox",
    "check_update_profile",
    "check_update_queue",
    "content_purgeable",
    "current_decision",
    "default_profile",
    "do_add_exclusion",
    "do_apply_default_profile",
    "do_apply_folder_hierarchy",
    "do_approve_mailbox",
    "do_audit_manual_tracking",
    "do_backfill_parties",
    "do_begin_round_run",
    "do_cancel_round",
    "do_claim_due_mailboxes",
    "do_commit_page",
    "do_delete_exclusion",
    "do_delete_folder_rule",
    "do_disable_mailbox",
    "do_finish_bulk",
    "do_finish_cycle",
    "do_finish_round_run",
    "do_finish_scan_run",
    "do_mark_queue_item_done",
    "do_mark_scan_failed",
    "do_mark_scan_started",
    "do_mark_scan_succeeded",
    "do_note_mailbox_job",
    "do_postpone_scan",
    "do_purge_content",
    "do_purge_decisions",
    "do_record_bulk_result",
    "do_record_cycle_failure",
    "do_record_skipped_scan",
    "do_record_test_result",
    "do_reset_mailbox_sync_state",
    "do_reset_round_state",
    "do_reset_sync_state",
    "do_set_default_profile",
    "do_set_mailbox_start_date",
    "do_set_personal_options",
    "do_set_regarding_by_folder_rule",
    "do_set_regarding_by_hand",
    "do_set_scan_estimate",
    "do_start_round",
    "do_start_scan_run",
    "do_track_again",
    "do_untrack",
    "endpoint_problem",
    "last_sign_in_methods",
    "normalize_folder_path",
    "parse_role",
    "raise_alert",
    "role_of",
    "round_status",
    "secret_bound_changes",
    "secret_required_message",
    "source_of",
    "user_for_email",
    "user_rows",
]
