//! The oldest QEMU each part of a plan works with.
//!
//! A QEMU too old for what the tool sends answers the first command it does not know
//! with an error, often after the tool has changed settings, or worse, accepts the
//! migration and skips what keeps it safe (an old QEMU has no `pause-before-switchover`
//! to hold the guest at). So preflight compares each side's version with what this plan
//! needs, and only that: a plan without devices does not need 9.1.
//!
//! The versions are QEMU's own `Since:` lines (qapi/migration.json, qapi/vfio.json; the
//! vfio-pci `migration-events` property came with the `VFIO_MIGRATION` event):
//!
//! | feature | since | needed for |
//! |---|---|---|
//! | `pause-before-switchover` capability, `migrate-continue` | 2.11 | holding the guest at `pre-switchover` (every QMP run) |
//! | `max-cpu-throttle` parameter | 3.1 | `policy.throttle = "auto-converge"` |
//! | `set-vcpu-dirty-limit` | 7.1 | `policy.throttle = "dirty-limit"` |
//! | `switchover-ack` capability, both sides | 8.1 | devices with `precopy = true` |
//! | `migration-events` property, `VFIO_MIGRATION` event | 9.1 | `[[devices]]` |
//! | `exit-on-error` argument of `migrate-incoming` | 9.1 | `destination.listen` |
//! | `multifd` capability (no longer `x-multifd`) | 4.0 | `migration.multifd_channels`, both sides |
//! | `multifd-compression` parameter | 5.0 | `migration.multifd_compression`, both sides |
//! | `xbzrle-cache-size` parameter | 2.11 | `migration.xbzrle_cache` |
//! | `zero-page-detection` parameter | 9.0 | `migration.zero_page_detection` |
//! | `x-migration-multifd-transfer` vfio-pci property | 10.0 | `migration.device_state_transfer`, both sides |
//!
//! The kernel dirty rate (`calc-dirty-rate` in milliseconds, 8.2) is not required: the
//! convergence loop falls back to QEMU's statistics, and says so.

use std::fmt;

use plans::{MultifdCompression, Plan, Step, ThrottleMethod};
use serde::{Serialize, Serializer};

use crate::driver::{Capabilities, PairFacts, Side};

use super::Problem;

/// A QEMU release, as `major.minor` (the micro version never adds features); reports
/// spell it `8.1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Release {
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
}

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl Serialize for Release {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Release {
    const fn new(major: u32, minor: u32) -> Self {
        Release { major, minor }
    }

    /// Reads the start of a version string (`10.0.2`, `8.2.0 (Debian ...)`); `None` when
    /// it does not start with `major.minor`.
    pub fn parse(version: &str) -> Option<Self> {
        let (major, rest) = version.split_once('.')?;
        let minor: String = rest.chars().take_while(char::is_ascii_digit).collect();
        Some(Release {
            major: major.parse().ok()?,
            minor: minor.parse().ok()?,
        })
    }
}

/// Where a feature must be present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sides {
    Source,
    Destination,
    Both,
}

/// One thing the plan uses, the release that brought it, and the plan's reason.
struct Need {
    feature: &'static str,
    since: Release,
    sides: Sides,
    key: &'static str,
}

/// What this plan, on a backend with these capabilities, needs from QEMU.
fn needs(plan: &Plan, caps: Capabilities) -> Vec<Need> {
    let mut out = Vec::new();
    let mut need = |feature, since, sides, key| {
        out.push(Need {
            feature,
            since,
            sides,
            key,
        })
    };
    if caps.switchover_hold {
        need(
            "pause-before-switchover",
            Release::new(2, 11),
            Sides::Source,
            "holding the guest at pre-switchover",
        );
    }
    if plan.policy.escalation.contains(&Step::Throttle) {
        match plan.policy.throttle {
            ThrottleMethod::AutoConverge => need(
                "max-cpu-throttle",
                Release::new(3, 1),
                Sides::Source,
                "policy.throttle",
            ),
            ThrottleMethod::DirtyLimit => need(
                "set-vcpu-dirty-limit",
                Release::new(7, 1),
                Sides::Source,
                "policy.throttle",
            ),
        }
    }
    if plan.devices.iter().any(|d| d.precopy) {
        need(
            "switchover-ack",
            Release::new(8, 1),
            Sides::Both,
            "devices with precopy = true",
        );
    }
    if !plan.devices.is_empty() {
        need("migration-events", Release::new(9, 1), Sides::Source, "devices");
    }
    let m = &plan.migration;
    if m.multifd_channels.is_some() {
        need(
            "multifd",
            Release::new(4, 0),
            Sides::Both,
            "migration.multifd_channels",
        );
    }
    if m.multifd_channels.is_some() && m.multifd_compression != MultifdCompression::None {
        need(
            "multifd-compression",
            Release::new(5, 0),
            Sides::Both,
            "migration.multifd_compression",
        );
    }
    if m.xbzrle_cache.is_some() {
        need(
            "xbzrle-cache-size",
            Release::new(2, 11),
            Sides::Source,
            "migration.xbzrle_cache",
        );
    }
    if m.zero_page_detection.is_some() {
        need(
            "zero-page-detection",
            Release::new(9, 0),
            Sides::Source,
            "migration.zero_page_detection",
        );
    }
    if m.device_state_transfer.is_some() {
        need(
            "x-migration-multifd-transfer",
            Release::new(10, 0),
            Sides::Both,
            "migration.device_state_transfer",
        );
    }
    if plan.destination.listen.is_some() && caps.listen {
        need(
            "exit-on-error",
            Release::new(9, 1),
            Sides::Destination,
            "destination.listen",
        );
    }
    out
}

/// Every feature this plan needs that a side's QEMU is too old for. A version that does
/// not read as `major.minor` is not judged.
pub(crate) fn problems(plan: &Plan, caps: Capabilities, facts: &PairFacts) -> Vec<Problem> {
    let mut out = Vec::new();
    for need in needs(plan, caps) {
        for (side, version) in [
            (Side::Source, &facts.source.version),
            (Side::Destination, &facts.destination.version),
        ] {
            let applies = match need.sides {
                Sides::Both => true,
                Sides::Source => side == Side::Source,
                Sides::Destination => side == Side::Destination,
            };
            let Some(release) = Release::parse(version) else {
                continue;
            };
            if applies && release < need.since {
                out.push(Problem::QemuTooOld {
                    side,
                    version: version.clone(),
                    needs: need.since,
                    feature: need.feature,
                    key: need.key,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_read_from_their_start() {
        assert_eq!(Release::parse("10.0.2"), Some(Release::new(10, 0)));
        assert_eq!(
            Release::parse("8.2.0 (Debian 1:8.2.2+ds-0ubuntu1)"),
            Some(Release::new(8, 2))
        );
        assert_eq!(Release::parse("10.0.2 (sim)"), Some(Release::new(10, 0)));
        assert_eq!(Release::parse("9.1"), Some(Release::new(9, 1)));
        for unreadable in ["", "10", "v10.0.2", ".1.2", "libvirt"] {
            assert_eq!(Release::parse(unreadable), None, "{unreadable}");
        }
    }

    /// A plan whose destination has `destination` added (a `listen`, or nothing and the
    /// stream goes to a `[migration] uri`), followed by `rest`.
    fn plan_with(destination: &str, rest: &str) -> Plan {
        let uri = match destination.is_empty() {
            true => "[migration]\nuri = \"tcp:192.0.2.1:4444\"\ntls = false\n",
            false => "",
        };
        let text = format!(
            "[vm]\nname = \"vm\"\n[source]\nqmp = \"unix:/run/s.qmp\"\n[destination]\nqmp = \"unix:/run/d.qmp\"\n{destination}\n{uri}{rest}"
        );
        plans::load("plan.toml", &text).expect("a valid plan")
    }

    fn plan(rest: &str) -> Plan {
        plan_with("", rest)
    }

    fn facts(source: &str, destination: &str) -> PairFacts {
        let side = |version: &str| crate::driver::SideFacts {
            version: version.into(),
            run_state: crate::driver::RunState::Running,
            migration: crate::driver::MigrationStatus::None,
            blocked_reasons: Vec::new(),
            dirty_ring_size: None,
            kvm: false,
            ram_bytes: None,
            migration_capabilities: None,
        };
        PairFacts {
            source: side(source),
            destination: side(destination),
        }
    }

    const QMP: Capabilities = Capabilities {
        switchover_hold: true,
        device_events: true,
        kernel_dirty_rate: true,
        listen: true,
    };

    /// (side, feature, release) of each problem, to compare in one line.
    fn found(plan: &Plan, source: &str, destination: &str) -> Vec<(Side, &'static str, String)> {
        problems(plan, QMP, &facts(source, destination))
            .into_iter()
            .map(|p| match p {
                Problem::QemuTooOld {
                    side, feature, needs, ..
                } => (side, feature, needs.to_string()),
                other => panic!("not a version problem: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_qemu_without_pause_before_switchover_is_refused_whatever_the_plan() {
        let found = found(&plan("[policy]\nescalation = [\"abort\"]"), "2.0.0", "10.0.2");
        assert_eq!(
            found,
            [(Side::Source, "pause-before-switchover", "2.11".to_string())]
        );
    }

    #[test]
    fn a_plan_without_devices_or_listen_does_not_need_a_recent_qemu() {
        assert!(found(&plan("[policy]\nescalation = [\"abort\"]"), "2.11.0", "2.11.0").is_empty());
        assert!(found(&plan(""), "3.1.0", "3.1.0").is_empty());
    }

    #[test]
    fn throttling_needs_what_the_chosen_throttle_uses() {
        let default = found(&plan(""), "3.0.0", "3.0.0");
        assert_eq!(default, [(Side::Source, "max-cpu-throttle", "3.1".to_string())]);
        let dirty_limit = plan("[policy]\nthrottle = \"dirty-limit\"");
        let found = found(&dirty_limit, "7.0.0", "7.0.0");
        assert_eq!(found, [(Side::Source, "set-vcpu-dirty-limit", "7.1".to_string())]);
    }

    #[test]
    fn precopy_devices_need_switchover_ack_on_both_sides_and_events_on_the_source() {
        let plan =
            plan("[[devices]]\nid = \"nic0\"\nhost = \"0000:3b:00.1\"\n[policy]\nescalation = [\"abort\"]");
        let found = found(&plan, "8.0.0", "8.0.0");
        assert_eq!(
            found,
            [
                (Side::Source, "switchover-ack", "8.1".to_string()),
                (Side::Destination, "switchover-ack", "8.1".to_string()),
                (Side::Source, "migration-events", "9.1".to_string()),
            ]
        );
    }

    #[test]
    fn listening_needs_exit_on_error_on_the_destination_only() {
        let plan = plan_with(
            "listen = \"tcp:127.0.0.1:4444\"",
            "[policy]\nescalation = [\"abort\"]",
        );
        let found = found(&plan, "9.0.0", "9.0.0");
        assert_eq!(found, [(Side::Destination, "exit-on-error", "9.1".to_string())]);
    }

    #[test]
    fn stream_choices_need_the_release_that_brought_each_on_the_sides_that_use_it() {
        let plan = plan_with(
            "listen = \"tcp:127.0.0.1:4444\"",
            "[migration]\nmultifd_channels = 4\nmultifd_compression = \"zstd\"\nzero_page_detection = \"legacy\"\n[policy]\nescalation = [\"abort\"]",
        );
        let old_source = found(&plan, "8.2.0", "9.1.0");
        assert_eq!(
            old_source,
            [(Side::Source, "zero-page-detection", "9.0".to_string())]
        );
        let plan = plan_with(
            "listen = \"tcp:127.0.0.1:4444\"",
            "[migration]\nmultifd_channels = 4\ndevice_state_transfer = \"multifd\"\n[[devices]]\nid = \"gpu0\"\n[policy]\nescalation = [\"abort\"]",
        );
        let old_destination = found(&plan, "10.0.2", "9.2.0");
        assert_eq!(
            old_destination,
            [(
                Side::Destination,
                "x-migration-multifd-transfer",
                "10.0".to_string()
            )]
        );
    }

    #[test]
    fn a_version_that_does_not_read_is_not_judged() {
        assert!(found(&plan(""), "unknown", "libvirt").is_empty());
    }

    #[test]
    fn releases_order_by_minor_as_a_number() {
        assert!(Release::new(2, 11) > Release::new(2, 2));
        assert!(Release::new(10, 0) > Release::new(9, 1));
        assert_eq!(Release::new(2, 11).to_string(), "2.11");
    }
}
