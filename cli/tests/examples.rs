//! Every plan in `examples/` is valid, so the examples cannot rot.

use std::path::Path;

#[test]
fn every_example_plan_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("examples/ exists") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).expect("readable");
            if let Err(e) = plans::load(&path.display().to_string(), &text) {
                panic!("{e}");
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 3,
        "expected at least three example plans, found {checked}"
    );
}

/// The demo's bundled plans exist only in builds with the `demo` feature.
#[cfg(feature = "demo")]
#[test]
fn every_demo_plan_is_valid() {
    use vfio_migrate::args::Scenario;
    for scenario in [
        Scenario::Converge,
        Scenario::Abort,
        Scenario::Force,
        Scenario::Throttle,
    ] {
        for devices in [true, false] {
            let text = vfio_migrate::demo::plan_text(
                scenario,
                Path::new("/tmp/s.qmp"),
                Path::new("/tmp/d.qmp"),
                4444,
                devices,
            );
            if let Err(e) = plans::load("demo", &text) {
                panic!("{e}");
            }
        }
    }
}
