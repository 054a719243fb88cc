//! Debian 13 (trixie): the core cases again, on trixie nodes and on a mixed lab (validator-2
//! trixie next to bookworm validator-1 and -3): fresh plan, apply + hand edits (drift),
//! rollback, bootstrap of a bare node; apply then a no-op apply and plan on the mixed lab.
//! The same case bodies as on bookworm; the harness brings the lab to the case's release
//! first and checks each node's VERSION_ID. Registered last, so the rest of the suite runs
//! on bookworm. `scripts/e2e-trixie.sh` runs the whole suite on trixie (or mixed) nodes.

use crate::common::*;
use crate::{bootstrap_cases, lab_cases, plan_apply_cases, rollback_cases};

const ALL: &[&str] = &["validator-1", "validator-2", "validator-3"];

pub fn cases() -> Vec<Case> {
    vec![
        // The lab's container drop-ins (chrony, alertmanager) hold on trixie.
        case_on(
            "trixie",
            "trixie::lab::systemd_is_running_on_every_node",
            &[],
            lab_cases::systemd_is_running,
        ),
        case_on(
            "trixie",
            "trixie::lab::services_the_suite_needs_are_active",
            &[],
            lab_cases::services_active,
        ),
        case_on(
            "trixie",
            "trixie::plan::fresh_node_is_all_add_exit_2",
            &["validator-1"],
            plan_apply_cases::fresh_node_plan,
        ),
        case_on(
            "trixie",
            "trixie::plan::each_hand_edit_reported_exactly",
            &["validator-1"],
            plan_apply_cases::hand_edits,
        ),
        case_on(
            "trixie",
            "trixie::rollback::returns_files_services_and_firewall_then_repo_is_pending",
            &["validator-1"],
            rollback_cases::rollback_after_good_apply,
        ),
        case_on(
            "trixie",
            "trixie::bootstrap::bare_node_to_converged_validator_then_rerun_is_a_noop",
            ALL,
            bootstrap_cases::bare_to_converged,
        ),
        // Both releases in one fleet (validator-1 bookworm, validator-2 trixie): one rollout
        // converges them, and the second apply and the plan find nothing to do on either.
        case_on(
            "mixed",
            "trixie::mixed_lab::apply::converges_then_second_apply_is_a_noop",
            &["validator-1", "validator-2"],
            plan_apply_cases::converge_then_noop,
        ),
    ]
}
