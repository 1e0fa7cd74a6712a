//! The report people read names the VM exactly as the plan does. Needs no QEMU: a
//! source that cannot be reached ends the run at preflight with the human report.

use assert_cmd::Command;
use predicates::prelude::*;

const PLAN: &str = r#"
[vm]
name = "DB-Primary"
[source]
qmp = "unix:/nonexistent/vfio-migrate-test/source.qmp"
[destination]
qmp = "unix:/nonexistent/vfio-migrate-test/destination.qmp"
listen = "tcp:127.0.0.1:49152"
"#;

#[test]
fn the_human_report_keeps_the_vm_names_case_and_says_the_outcome_in_words() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let plan = dir.path().join("plan.toml");
    std::fs::write(&plan, PLAN).expect("write plan");
    Command::cargo_bin("vfio-migrate")
        .expect("binary")
        .env("VFIO_MIGRATE_STATE_DIR", dir.path().join("state"))
        .args(["--output", "human", "--quiet"])
        .arg(&plan)
        .assert()
        .code(3)
        .stdout(predicate::str::starts_with(
            // Neither side answered: where the VM runs is not claimed.
            "not ready, nothing was changed: where DB-Primary runs is not known (a side did not answer) (exit 3)",
        ));
}
