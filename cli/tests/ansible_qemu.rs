//! A real client of the tool: `examples/ansible/migrate.yml`, run by `ansible-playbook`
//! against localhost, migrating the rig's QEMU pair. In check mode first (the VM must
//! stay where it is), then for real (`changed=1`), then again (`changed=0`: already
//! migrated), then in check mode again (`changed=0`: nothing would change).
//!
//! `ansible-playbook` is `$VFIO_MIGRATE_ANSIBLE_PLAYBOOK`, else the one on the PATH.
//! Without either the test says it is skipped and passes, except under
//! `CI_REQUIRE_ANSIBLE=1` (set by `.ci/run`, which installs Ansible with
//! `scripts/ansible-venv`), where a missing Ansible is a failure.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use common::{pair, plan_for, status, ONE_AT_A_TIME};

/// The playbook and its inventory, as shipped.
fn example(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/ansible")
        .join(file)
}

/// Where `ansible-playbook` is, if anywhere.
fn ansible_playbook() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("VFIO_MIGRATE_ANSIBLE_PLAYBOOK").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "VFIO_MIGRATE_ANSIBLE_PLAYBOOK={} does not exist",
            path.display()
        );
        return Some(path);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("ansible-playbook"))
        .find(|p| p.is_file())
}

/// Runs the playbook on `plan`, hermetically: Ansible's home, temp and config are under
/// `dir`, so nothing from this machine's `~/.ansible` or an `ansible.cfg` takes part.
fn playbook(ansible: &Path, dir: &Path, plan: &Path, check_mode: bool) -> (Output, String) {
    let home = dir.join("ansible-home");
    std::fs::create_dir_all(&home).expect("Ansible's home");
    let extra = serde_json::json!({
        "vfio_migrate_plan": plan,
        "vfio_migrate_bin": assert_cmd::cargo::cargo_bin("vfio-migrate"),
    });
    let mut command = assert_cmd::Command::new(ansible);
    command
        .current_dir(&home)
        .env("HOME", &home)
        .env("ANSIBLE_HOME", home.join(".ansible"))
        .env("ANSIBLE_LOCAL_TEMP", home.join("tmp"))
        .env("ANSIBLE_REMOTE_TEMP", home.join("remote-tmp"))
        .env("ANSIBLE_CONFIG", home.join("no-ansible.cfg"))
        .env("ANSIBLE_LOCALHOST_WARNING", "False")
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_FORCE_COLOR", "0")
        .env("ANSIBLE_RETRY_FILES_ENABLED", "False")
        .env("VFIO_MIGRATE_STATE_DIR", dir.join("state"))
        .arg("-i")
        .arg(example("inventory.ini"))
        .arg(example("migrate.yml"))
        .arg("-e")
        .arg(extra.to_string())
        .timeout(Duration::from_secs(120));
    if check_mode {
        command.arg("--check");
    }
    let out = command.output().expect("run ansible-playbook");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "ansible-playbook{}:\n{text}",
        if check_mode { " --check" } else { "" }
    );
    (out, text)
}

/// The count `key` (`changed`, `failed`, ...) on localhost's PLAY RECAP line.
fn recap(text: &str, key: &str) -> u32 {
    let line = text
        .lines()
        .skip_while(|l| !l.starts_with("PLAY RECAP"))
        .find(|l| l.starts_with("localhost"))
        .unwrap_or_else(|| panic!("no PLAY RECAP line for localhost in:\n{text}"));
    line.split_whitespace()
        .find_map(|field| field.strip_prefix(&format!("{key}=")))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

#[test]
fn the_example_playbook_predicts_in_check_mode_migrates_once_and_then_changes_nothing() {
    let Some(ansible) = ansible_playbook() else {
        let why =
            "ansible-playbook not found (set VFIO_MIGRATE_ANSIBLE_PLAYBOOK, or run scripts/ansible-venv)";
        assert!(
            std::env::var("CI_REQUIRE_ANSIBLE").as_deref() != Ok("1"),
            "{why}; CI_REQUIRE_ANSIBLE=1 forbids skipping"
        );
        eprintln!("skipped: {why}");
        return;
    };
    let _one = ONE_AT_A_TIME.lock();
    let pair = pair(64, 0);
    let plan = pair.dir().join("plan.toml");
    std::fs::write(&plan, plan_for(&pair, "", "escalation = [\"abort\"]")).expect("write plan");

    // Check mode runs `check` only: it reports the move it would make, and makes none.
    let (out, text) = playbook(&ansible, pair.dir(), &plan, true);
    assert_eq!(out.status.code(), Some(0), "check mode failed:\n{text}");
    assert_eq!(recap(&text, "changed"), 1, "check mode predicts the move");
    assert_eq!(recap(&text, "failed"), 0);
    assert_eq!(status(&pair.source.observer_socket), "running");
    assert_eq!(status(&pair.destination.observer_socket), "inmigrate");

    // The real run migrates.
    let (out, text) = playbook(&ansible, pair.dir(), &plan, false);
    assert_eq!(out.status.code(), Some(0), "the migration failed:\n{text}");
    assert_eq!(recap(&text, "changed"), 1);
    assert_eq!(recap(&text, "failed"), 0);
    assert_eq!(status(&pair.destination.observer_socket), "running");
    assert_eq!(status(&pair.source.observer_socket), "postmigrate");

    // Again: the VM already runs on the destination, so nothing changes.
    let (out, text) = playbook(&ansible, pair.dir(), &plan, false);
    assert_eq!(out.status.code(), Some(0), "the second run failed:\n{text}");
    assert_eq!(recap(&text, "changed"), 0);
    assert_eq!(recap(&text, "failed"), 0);
    assert!(
        text.contains("already migrated"),
        "the play says why nothing changed"
    );
    assert_eq!(status(&pair.destination.observer_socket), "running");

    // And check mode now predicts no change either.
    let (out, text) = playbook(&ansible, pair.dir(), &plan, true);
    assert_eq!(
        out.status.code(),
        Some(0),
        "check mode after the move failed:\n{text}"
    );
    assert_eq!(recap(&text, "changed"), 0);
    assert_eq!(status(&pair.destination.observer_socket), "running");
}
