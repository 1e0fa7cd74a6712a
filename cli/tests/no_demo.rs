//! A build without the `demo` feature (the default, so the tool installs without the
//! guest's gcc and binutils) still lists `demo`, and running it says how to get one.
#![cfg(not(feature = "demo"))]

use assert_cmd::Command;
use predicates::prelude::*;

#[test]
fn demo_without_the_feature_exits_2_and_says_how_to_get_one() {
    Command::cargo_bin("vfio-migrate")
        .expect("binary")
        .args(["demo", "--scenario", "abort"])
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::contains("this build has no demo"))
        .stderr(predicate::str::contains("--features demo"))
        .stderr(predicate::str::contains("scripts/demo"));
}

#[test]
fn demo_is_still_listed_in_the_help() {
    Command::cargo_bin("vfio-migrate")
        .expect("binary")
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("demo"));
}
