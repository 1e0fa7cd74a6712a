//! The migration stream's encryption in a plan: `tls` and the keys that go with it, the
//! stream that may not leave the host in the clear unless the plan says so, and the
//! mistakes a plan can make with them, each at its position.

use std::path::Path;

use plans::{defaults, Plan, PlanErrors};

/// A plan without `[migration]` whose destination listens on `listen`.
fn plan_text(listen: &str, migration: &str) -> String {
    format!(
        r#"[vm]
name = "db-01"

[source]
qmp = "unix:/run/src.qmp"

[destination]
qmp = "unix:/run/dst.qmp"
listen = "{listen}"

[migration]
{migration}
"#
    )
}

fn load(listen: &str, migration: &str) -> Result<Plan, PlanErrors> {
    plans::load("plan.toml", &plan_text(listen, migration))
}

fn valid(listen: &str, migration: &str) -> Plan {
    load(listen, migration).unwrap_or_else(|e| panic!("{e}"))
}

/// Each mistake as (line, column, key, message).
fn mistakes(listen: &str, migration: &str) -> Vec<(usize, usize, String, String)> {
    match load(listen, migration) {
        Ok(_) => panic!("accepted:\n{}", plan_text(listen, migration)),
        Err(e) => e
            .located()
            .into_iter()
            .map(|d| {
                let line = d.line.expect("a mistake in the plan has a line");
                let column = d.column.expect("and a column");
                (line, column, d.diagnostic.key, d.diagnostic.message)
            })
            .collect(),
    }
}

const LOOPBACK: &str = "tcp:127.0.0.1:49152";
const REMOTE: &str = "tcp:10.0.0.2:49152";

#[test]
fn a_stream_on_loopback_is_plain_unless_the_plan_asks() {
    let plan = valid(LOOPBACK, "");
    assert!(!plan.migration.tls);
    assert!(!valid("tcp:localhost:49152", "").migration.tls);
    assert!(!valid("tcp:[::1]:49152", "").migration.tls);
    assert!(!valid("unix:/run/stream.sock", "").migration.tls);
}

#[test]
fn a_stream_to_another_host_is_refused_at_its_uri_until_the_plan_chooses() {
    let found = mistakes(REMOTE, "");
    assert_eq!(found.len(), 1, "{found:?}");
    let (line, column, key, message) = &found[0];
    assert_eq!((*line, *column), (9, 10), "at the listen value");
    assert_eq!(key, "destination.listen");
    assert_eq!(
        message,
        "the migration stream to 10.0.0.2 would leave this host unencrypted"
    );
    // `uri` is where the source sends it, so a remote `uri` is the one named.
    let found = mistakes(LOOPBACK, "uri = \"tcp:dst-01.example:49152\"");
    assert_eq!(found[0].2, "migration.uri");
    assert!(found[0].3.contains("dst-01.example"), "{found:?}");
}

#[test]
fn tls_written_either_way_is_the_plans_choice() {
    assert!(valid(REMOTE, "tls = true").migration.tls);
    assert!(!valid(REMOTE, "tls = false").migration.tls);
}

#[test]
fn the_certificates_default_to_one_directory_for_both_sides() {
    let plan = valid(REMOTE, "tls = true");
    let dir = Path::new(defaults::migration::TLS_DIR);
    assert_eq!(plan.migration.tls_dir, dir);
    assert_eq!(plan.migration.tls_dir_source, dir);
    assert_eq!(plan.migration.tls_dir_destination, dir);
    assert_eq!(plan.migration.tls_hostname, None);
}

#[test]
fn a_side_left_out_follows_tls_dir_and_a_side_written_keeps_its_own() {
    let plan = valid(
        REMOTE,
        "tls = true\ntls_dir = \"/srv/pki\"\ntls_dir_destination = \"/srv/pki-dst\"",
    );
    assert_eq!(plan.migration.tls_dir_source, Path::new("/srv/pki"));
    assert_eq!(plan.migration.tls_dir_destination, Path::new("/srv/pki-dst"));
}

#[test]
fn a_relative_or_empty_directory_is_refused_at_its_value() {
    let found = mistakes(
        LOOPBACK,
        "tls = true\ntls_dir_source = \"pki\"\ntls_dir_destination = \"\"",
    );
    let keys: Vec<_> = found.iter().map(|f| (f.0, f.1, f.2.as_str())).collect();
    assert_eq!(
        keys,
        [
            (13, 18, "migration.tls_dir_source"),
            (14, 23, "migration.tls_dir_destination")
        ]
    );
    assert!(found[0].3.starts_with("must be an absolute path"), "{found:?}");
    assert_eq!(found[1].3, "must not be empty");
}

#[test]
fn a_tls_key_without_tls_is_refused_as_having_no_effect() {
    let found = mistakes(
        LOOPBACK,
        "tls_dir = \"/srv/pki\"\ntls_hostname = \"dst-01.example\"",
    );
    let keys: Vec<_> = found.iter().map(|f| f.2.as_str()).collect();
    assert_eq!(keys, ["migration.tls_dir", "migration.tls_hostname"]);
    assert!(found
        .iter()
        .all(|f| f.3 == "has no effect: the stream is not encrypted"));
    // Written out as off, the same keys are still a contradiction.
    let found = mistakes(REMOTE, "tls = false\ntls_dir = \"/srv/pki\"");
    assert_eq!(found.len(), 1, "{found:?}");
}

#[test]
fn a_unix_uri_with_tls_needs_the_name_to_check_the_certificate_against() {
    let found = mistakes("unix:/run/stream.sock", "tls = true");
    assert_eq!(found.len(), 1, "{found:?}");
    let (line, column, key, message) = &found[0];
    assert_eq!((*line, *column), (12, 7), "at `tls = true`");
    assert_eq!(key, "migration.tls_hostname");
    assert!(message.contains("names no host"), "{message}");
    let plan = valid(
        "unix:/run/stream.sock",
        "tls = true\ntls_hostname = \"dst-01.example\"",
    );
    assert_eq!(plan.migration.tls_hostname.as_deref(), Some("dst-01.example"));
}

#[test]
fn a_hostname_is_a_name_or_an_address() {
    assert!(
        valid(LOOPBACK, "tls = true\ntls_hostname = \"192.0.2.7\"")
            .migration
            .tls
    );
    let found = mistakes(LOOPBACK, "tls = true\ntls_hostname = \"\"");
    assert_eq!(found[0].3, "must not be empty");
    let found = mistakes(LOOPBACK, "tls = true\ntls_hostname = \"dst 01\"");
    assert_eq!(found[0].2, "migration.tls_hostname");
    assert_eq!(found[0].3, "is not a host name or IP address");
}

#[test]
fn a_misspelt_tls_key_is_matched_to_the_nearest() {
    let errors = load(LOOPBACK, "tls = true\ntls_dir_destinaton = \"/srv\"").expect_err("unknown key");
    let shown = errors.to_string();
    assert!(shown.contains("unknown key `tls_dir_destinaton`"), "{shown}");
    assert!(shown.contains("did you mean `tls_dir_destination`?"), "{shown}");
}
