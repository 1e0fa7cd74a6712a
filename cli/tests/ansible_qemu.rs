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

/// `ansible-playbook`, or `None` after saying the test is skipped; a missing Ansible
/// fails the test under `CI_REQUIRE_ANSIBLE=1`.
fn ansible_or_skip() -> Option<PathBuf> {
    let found = ansible_playbook();
    if found.is_none() {
        let why =
            "ansible-playbook not found (set VFIO_MIGRATE_ANSIBLE_PLAYBOOK, or run scripts/ansible-venv)";
        assert!(
            std::env::var("CI_REQUIRE_ANSIBLE").as_deref() != Ok("1"),
            "{why}; CI_REQUIRE_ANSIBLE=1 forbids skipping"
        );
        eprintln!("skipped: {why}");
    }
    found
}

/// Runs the playbook on `plan`, hermetically: Ansible's home, temp and config are under
/// `dir`, so nothing from this machine's `~/.ansible` or an `ansible.cfg` takes part.
fn playbook(ansible: &Path, dir: &Path, plan: &Path, check_mode: bool) -> (Output, String) {
    let extra = serde_json::json!({
        "vfio_migrate_plan": plan,
        "vfio_migrate_bin": assert_cmd::cargo::cargo_bin("vfio-migrate"),
    });
    let inventory = example("inventory.ini");
    run_playbook(ansible, dir, &inventory, "migrate.yml", &extra, check_mode)
}

/// Runs the example playbook `book` with `inventory` and the extra variables `extra`,
/// hermetically as [`playbook`] says.
fn run_playbook(
    ansible: &Path,
    dir: &Path,
    inventory: &Path,
    book: &str,
    extra: &serde_json::Value,
    check_mode: bool,
) -> (Output, String) {
    let home = dir.join("ansible-home");
    std::fs::create_dir_all(&home).expect("Ansible's home");
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
        .arg(inventory)
        .arg(example(book))
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
    recap_of(text, "localhost", key).unwrap_or_else(|| panic!("no PLAY RECAP line for localhost in:\n{text}"))
}

/// The count `key` on `host`'s PLAY RECAP line; `None` when the play never reached it.
fn recap_of(text: &str, host: &str, key: &str) -> Option<u32> {
    let line = text
        .lines()
        .skip_while(|l| !l.starts_with("PLAY RECAP"))
        .find(|l| l.split_whitespace().next() == Some(host))?;
    let count = line
        .split_whitespace()
        .find_map(|field| field.strip_prefix(&format!("{key}=")))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"));
    Some(count)
}

#[test]
fn the_example_playbook_predicts_in_check_mode_migrates_once_and_then_changes_nothing() {
    let Some(ansible) = ansible_or_skip() else {
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

/// An inventory of two hypervisors, both this machine, for `drain.yml`.
fn two_hosts(dir: &Path) -> PathBuf {
    let path = dir.join("hosts.ini");
    let local = "ansible_connection=local ansible_python_interpreter=\"{{ ansible_playbook_python }}\"";
    std::fs::write(&path, format!("[hypervisors]\nhv1 {local}\nhv2 {local}\n")).expect("inventory");
    path
}

/// Writes the plan of `pair` as VM `name` into the drain directory of `host`.
fn drain_plan(root: &Path, host: &str, name: &str, pair: &rig::QemuPair, limits: &str) {
    let dir = root.join(host);
    std::fs::create_dir_all(&dir).expect("the host's plan directory");
    let plan = plan_for(pair, limits, "escalation = [\"abort\"]")
        .replace("name = \"test\"", &format!("name = \"{name}\""));
    std::fs::write(dir.join(format!("{name}.toml")), plan).expect("write plan");
}

fn drain(ansible: &Path, dir: &Path, root: &Path) -> (Output, String) {
    let extra = serde_json::json!({
        "vfio_migrate_drain_root": root,
        "vfio_migrate_bin": assert_cmd::cargo::cargo_bin("vfio-migrate"),
        "vfio_migrate_budget": "256MiB/s",
    });
    run_playbook(ansible, dir, &two_hosts(dir), "drain.yml", &extra, false)
}

#[test]
fn the_drain_playbook_empties_one_host_after_another() {
    let Some(ansible) = ansible_or_skip() else {
        return;
    };
    let _one = ONE_AT_A_TIME.lock();
    let pairs = [pair(16, 0), pair(16, 0), pair(16, 0)];
    let root = pairs[0].dir().join("drain");
    drain_plan(&root, "hv1", "vm-a", &pairs[0], "");
    drain_plan(&root, "hv1", "vm-b", &pairs[1], "");
    drain_plan(&root, "hv2", "vm-c", &pairs[2], "");
    let (out, text) = drain(&ansible, pairs[0].dir(), &root);
    assert_eq!(out.status.code(), Some(0), "the drain failed:\n{text}");
    for host in ["hv1", "hv2"] {
        assert_eq!(
            recap_of(&text, host, "changed"),
            Some(1),
            "{host} emptied:\n{text}"
        );
        assert_eq!(recap_of(&text, host, "failed"), Some(0));
    }
    assert!(text.contains("2 VMs: 2 migrated"), "hv1 says what moved:\n{text}");
    // serial: 1 — hv1's evacuation ended before hv2's began.
    let first = text.find("2 VMs: 2 migrated").unwrap_or(usize::MAX);
    let second = text.find("1 VM: 1 migrated").unwrap_or(0);
    assert!(first < second, "hv1 before hv2:\n{text}");
    for pair in &pairs {
        assert_eq!(status(&pair.destination.observer_socket), "running");
    }
}

#[test]
fn a_host_that_is_not_emptied_stops_the_drain_before_the_next_host() {
    let Some(ansible) = ansible_or_skip() else {
        return;
    };
    let _one = ONE_AT_A_TIME.lock();
    let stuck = pair(256, 200);
    let next = pair(16, 0);
    let root = stuck.dir().join("drain");
    drain_plan(&root, "hv1", "vm-stuck", &stuck, "max_bandwidth = \"128MiB/s\"");
    drain_plan(&root, "hv2", "vm-next", &next, "");
    let (out, text) = drain(&ansible, stuck.dir(), &root);
    assert_ne!(out.status.code(), Some(0), "the play failed:\n{text}");
    assert_eq!(recap_of(&text, "hv1", "failed"), Some(1), "{text}");
    assert!(
        recap_of(&text, "hv2", "ok").unwrap_or(0) == 0,
        "hv2 was never touched:\n{text}"
    );
    assert_eq!(status(&stuck.source.observer_socket), "running");
    assert_eq!(status(&next.source.observer_socket), "running");
    assert_eq!(status(&next.destination.observer_socket), "inmigrate");
}
