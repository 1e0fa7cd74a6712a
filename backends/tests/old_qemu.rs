//! Preflight refuses a QEMU older than what the plan needs, before anything changes,
//! naming the side, the version and the feature.

mod fake;

use std::time::Duration;

use engine::events::NullSink;
use engine::preflight::Problem;
use engine::{Reason, Side};
use fake::{Imitation, Log};
use tokio::sync::watch;

/// A plan for the two fakes; the migration goes to `[migration] uri`, so the
/// destination is not asked to listen.
fn plan(source: &fake::Fake, destination: &fake::Fake, rest: &str) -> plans::Plan {
    let text = format!(
        "[vm]\nname = \"vm\"\n[source]\nqmp = \"unix:{}\"\n[destination]\nqmp = \"unix:{}\"\n[migration]\nuri = \"tcp:127.0.0.1:1\"\n{rest}",
        source.path().display(),
        destination.path().display()
    );
    plans::load("plan.toml", &text).expect("a valid plan")
}

fn commands(log: &Log) -> Vec<String> {
    log.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

#[tokio::test]
async fn a_qemu_2_0_source_is_refused_in_preflight_and_never_asked_to_migrate() {
    let (source, source_log) = fake::qemu_like(Imitation::source().version(2, 0, 0));
    let (destination, _) = fake::qemu_like(Imitation::destination());
    let plan = plan(&source, &destination, "[policy]\nescalation = [\"abort\"]");
    let mut driver = backends::open(&plan);
    let (_interrupt_tx, interrupt) = watch::channel(false);
    let report = tokio::time::timeout(
        Duration::from_secs(30),
        engine::migrate(&plan, driver.as_mut(), &mut NullSink, interrupt.into()),
    )
    .await
    .expect("preflight ends the run");

    assert_eq!(report.rc, engine::ExitStatus::NotReady.code());
    let Some(Reason::NotReady { problems }) = &report.reason else {
        panic!("not a preflight refusal: {:?}", report.reason);
    };
    let Some(Problem::QemuTooOld {
        side,
        version,
        needs,
        feature,
        ..
    }) = problems.first()
    else {
        panic!("the version is the first problem: {problems:?}");
    };
    assert_eq!(
        (*side, version.as_str(), feature.to_owned()),
        (Side::Source, "2.0.0", "pause-before-switchover")
    );
    assert_eq!(needs.to_string(), "2.11");
    let error = report.error.clone().unwrap_or_default();
    assert!(
        error.starts_with(
            "QEMU 2.0.0 on the source is older than 2.11, which `pause-before-switchover` needs"
        ),
        "{error}"
    );
    let sent = commands(&source_log);
    let changes = [
        "migrate",
        "migrate-set-capabilities",
        "migrate-set-parameters",
        "qom-set",
    ];
    assert!(
        !sent.iter().any(|c| changes.contains(&c.as_str())),
        "preflight changed nothing: {sent:?}"
    );
}

#[tokio::test]
async fn a_destination_too_old_for_precopy_devices_is_refused_naming_switchover_ack() {
    let (source, _) = fake::qemu_like(Imitation::source());
    let (destination, _) = fake::qemu_like(Imitation::destination().version(8, 0, 0));
    let plan = plan(
        &source,
        &destination,
        "[[devices]]\nid = \"nic0\"\nhost = \"0000:3b:00.1\"\n[policy]\nescalation = [\"abort\"]",
    );
    let mut driver = backends::open(&plan);
    let (_interrupt_tx, interrupt) = watch::channel(false);
    let report = engine::migrate(&plan, driver.as_mut(), &mut NullSink, interrupt.into()).await;
    assert_eq!(report.rc, engine::ExitStatus::NotReady.code());
    let error = report.error.clone().unwrap_or_default();
    assert!(
        error.starts_with("QEMU 8.0.0 on the destination is older than 8.1, which `switchover-ack` needs (for devices with precopy = true)"),
        "{error}"
    );
}
