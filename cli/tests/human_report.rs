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
        .args(["--output", "human", "--quiet"])
        .arg(&plan)
        .assert()
        .code(3)
        .stdout(predicate::str::starts_with(
            "not migrated (failed): DB-Primary runs on the source (exit 3)",
        ));
}
