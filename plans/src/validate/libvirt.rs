//! Libvirt endpoints, across keys.
//!
//! A plan reaches both sides one way: over QMP, or through libvirt. Through libvirt the
//! daemons start the destination and make it listen, pick the stream's route unless
//! `migration.uri` names one, and read their certificates from their own configuration,
//! and libvirt authenticates its connections. So a key only the QMP path uses is refused
//! in a libvirt plan, and a key only libvirt uses is refused in a QMP plan, rather than
//! ignored.

use crate::diagnostic::Diagnostic;
use crate::model::{LibvirtEndpoint, Plan};
use crate::parse::{Spans, LIBVIRT_TEST_DRIVER};
use crate::reader::Mistakes;
use crate::text::quoted;

/// The `[migration]` keys the tool sets over QMP that libvirt has no setting for.
const NOT_THROUGH_LIBVIRT: [(&str, &str); 2] = [
    ("migration.zero_page_detection", "`zero-page-detection`"),
    (
        "migration.device_state_transfer",
        "`x-migration-multifd-transfer`",
    ),
];

/// The certificate directories, which libvirt reads from its own configuration.
const TLS_DIRS: [&str; 3] = [
    "migration.tls_dir",
    "migration.tls_dir_source",
    "migration.tls_dir_destination",
];

/// Whether both sides are reached the same way; a mistake at the destination's key when
/// they are not.
pub(super) fn check_one_kind(plan: &Plan, spans: &Spans, m: &mut Mistakes) -> bool {
    let (key, message, hint) = match (plan.source.libvirt(), plan.destination.endpoint.libvirt()) {
        (Some(_), None) => (
            "destination.qmp",
            "the source is a libvirt domain and the destination a QMP monitor",
            "both sides are reached the same way: give the destination `libvirt = \"qemu+ssh://HOST/system\"` too, or the source `qmp = \"...\"`",
        ),
        (None, Some(_)) => (
            "destination.libvirt",
            "the source is a QMP monitor and the destination a libvirt domain",
            "both sides are reached the same way: give the source `libvirt = \"qemu:///system\"` and `domain` too, or the destination `qmp = \"...\"`",
        ),
        _ => return true,
    };
    m.push(Diagnostic::new(key, spans.of(key), message).hint(hint));
    false
}

/// The keys that belong to one kind of endpoint, in a plan of the other.
pub(super) fn check(plan: &Plan, spans: &Spans, m: &mut Mistakes) {
    let mut refuse = |key: &str, message: String, hint: &str| {
        m.push(Diagnostic::new(key, spans.of(key), message).hint(hint));
    };
    match (plan.source.libvirt(), plan.destination.endpoint.libvirt()) {
        (Some(source), Some(destination)) => {
            check_libvirt_plan(plan, source, destination, spans, &mut refuse)
        }
        _ => check_qmp_plan(plan, spans, &mut refuse),
    }
}

fn check_libvirt_plan(
    plan: &Plan,
    source: &LibvirtEndpoint,
    destination: &LibvirtEndpoint,
    spans: &Spans,
    refuse: &mut impl FnMut(&str, String, &str),
) {
    // libvirt's test driver is one process-local daemon, so both sides may name it.
    if source.uri == destination.uri && source.uri != LIBVIRT_TEST_DRIVER {
        refuse(
            "destination.libvirt",
            "source and destination name the same libvirt connection".into(),
            "a VM cannot migrate onto its own host; give the destination host's URI, e.g. `qemu+ssh://HOST/system`",
        );
    }
    if spans.written("destination.listen") {
        refuse(
            "destination.listen",
            "`listen` does not apply to libvirt endpoints".into(),
            "libvirt starts the destination and makes it listen itself: remove `listen`; to choose where the stream goes, set `uri` in [migration]",
        );
    }
    if spans.written("security.remote_qmp") {
        refuse(
            "security.remote_qmp",
            "has no effect: the plan reaches both sides through libvirt".into(),
            "libvirt authenticates its connections (SSH, TLS certificates, SASL); remove the key",
        );
    }
    for key in TLS_DIRS.into_iter().filter(|key| spans.written(key)) {
        refuse(
            key,
            "has no effect with libvirt endpoints".into(),
            "libvirt reads the certificates from `migrate_tls_x509_cert_dir` in each host's qemu.conf; remove the key",
        );
    }
    for (key, setting) in NOT_THROUGH_LIBVIRT
        .into_iter()
        .filter(|(key, _)| spans.written(key))
    {
        refuse(
            key,
            "cannot be set through libvirt".into(),
            &format!(
                "libvirt has no setting for QEMU's {setting}; remove the key to leave it as QEMU has it"
            ),
        );
    }
    let mut seen: Vec<&str> = Vec::new();
    for (i, d) in plan.devices.iter().enumerate() {
        let Some(host) = d.destination_host.as_deref() else {
            continue;
        };
        if seen.contains(&host) {
            refuse(
                &format!("devices[{i}].destination_host"),
                format!("{} is the destination of two devices", quoted(host)),
                "each device becomes its own PCI device on the destination host",
            );
        }
        seen.push(host);
    }
    let mut seen: Vec<&str> = Vec::new();
    for (i, d) in plan.devices.iter().enumerate() {
        let Some(uuid) = d.destination_mdev.as_deref() else {
            continue;
        };
        if seen.contains(&uuid) {
            refuse(
                &format!("devices[{i}].destination_mdev"),
                format!("{} is the destination of two devices", quoted(uuid)),
                "each device becomes its own mediated device on the destination host",
            );
        }
        seen.push(uuid);
    }
}

fn check_qmp_plan(plan: &Plan, spans: &Spans, refuse: &mut impl FnMut(&str, String, &str)) {
    if spans.written("libvirt") {
        refuse(
            "libvirt",
            "[libvirt] applies only to libvirt endpoints".into(),
            "the plan reaches both sides over QMP: remove the [libvirt] table",
        );
    }
    for i in 0..plan.devices.len() {
        for name in ["destination_host", "destination_mdev"] {
            let key = format!("devices[{i}].{name}");
            if spans.written(&key) {
                refuse(
                    &key,
                    format!("`{name}` applies only to libvirt endpoints"),
                    "over QMP the destination QEMU is started with its devices already: remove the key",
                );
            }
        }
    }
}
