//! Each side of a plan is an [`Endpoint`]: here a QEMU monitor reached over QMP (libvirt
//! endpoints are in `libvirt.rs`). The TOML and the JSON echo (`vfio-migrate validate
//! --output json`) keep the key the operator wrote, `qmp`, whatever shape the model has
//! inside.

use plans::{Endpoint, QmpAddress};
use serde_json::json;

const PLAN: &str = r#"
[vm]
name = "db-01"

[source]
qmp = "unix:/run/src.qmp"

[destination]
qmp = "tcp:127.0.0.1:4444"
listen = "tcp:127.0.0.1:49152"
"#;

fn plan() -> plans::Plan {
    match plans::load("plan.toml", PLAN) {
        Ok(plan) => plan,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn both_sides_are_qmp_endpoints() {
    let plan = plan();
    assert_eq!(
        plan.source,
        Endpoint::Qmp(QmpAddress::Unix("/run/src.qmp".into()))
    );
    assert_eq!(
        plan.destination.endpoint.qmp(),
        Some(&QmpAddress::Tcp("127.0.0.1".into(), 4444))
    );
}

#[test]
fn an_endpoint_displays_as_the_plan_wrote_it() {
    let plan = plan();
    assert_eq!(plan.source.to_string(), "unix:/run/src.qmp");
    assert_eq!(plan.destination.endpoint.to_string(), "tcp:127.0.0.1:4444");
}

#[test]
fn the_json_echo_keeps_the_qmp_key_on_both_sides() {
    let echo = serde_json::to_value(plan()).expect("a plan serializes");
    assert_eq!(echo["source"], json!({ "qmp": "unix:/run/src.qmp" }));
    assert_eq!(
        echo["destination"],
        json!({
            "qmp": "tcp:127.0.0.1:4444",
            "listen": "tcp:127.0.0.1:49152",
            "resume": true,
        })
    );
}
