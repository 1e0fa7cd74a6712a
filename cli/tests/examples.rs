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
    use vfio_migrate::demo::{plan_text, Endpoints};
    let qmp = Endpoints::Qmp {
        source: Path::new("/tmp/s.qmp"),
        destination: Path::new("/tmp/d.qmp"),
        port: 4444,
    };
    // `--libvirt`'s plans have no devices: the libvirt backend does not follow them yet.
    let libvirt = Endpoints::Libvirt {
        source: "qemu+unix:///system?socket=/tmp/s/run/libvirt-sock",
        destination: "qemu+unix:///system?socket=/tmp/d/run/libvirt-sock",
        domain: vfio_migrate::demo::LIBVIRT_DOMAIN,
    };
    for scenario in [
        Scenario::Converge,
        Scenario::Abort,
        Scenario::Force,
        Scenario::Throttle,
    ] {
        for (endpoints, devices) in [(qmp, true), (qmp, false), (libvirt, false)] {
            let text = plan_text(scenario, endpoints, devices);
            if let Err(e) = plans::load("demo", &text) {
                panic!("{e}\n{text}");
            }
        }
    }
}
