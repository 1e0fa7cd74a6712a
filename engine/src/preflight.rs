//! Preflight: read both sides and the plan's devices, change nothing, and say whether
//! the hosts are ready. `run` uses it before the first change; a dry-run check can use
//! it as it is.
//!
//! Every reason for "not ready" is a [`Problem`], typed so that callers can match on it
//! and rendered to words in one place (`words.rs`).

use plans::{Plan, Step, ThrottleMethod};
use serde::Serialize;

use crate::driver::{
    Capabilities, DeviceInfo, Driver, DriverError, MigrationStatus, PairFacts, RunState, Side,
};
use crate::gate::Follow;
use crate::placement::{Placement, Sides};

mod stream;
pub(crate) mod versions;
pub use versions::Release;

/// A reason the hosts are not ready.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Problem {
    /// A side could not be reached or read.
    Driver {
        /// What failed.
        error: DriverError,
    },
    /// A side's QEMU is older than the release that brought a feature this plan needs.
    QemuTooOld {
        /// The side.
        side: Side,
        /// Its version, as it reports it.
        version: String,
        /// The release the feature came with.
        needs: Release,
        /// The feature, as QEMU names it (`switchover-ack`).
        feature: &'static str,
        /// What in the plan needs it (`devices`, `destination.listen`).
        key: &'static str,
    },
    /// The VM is not simply running on the source, ready to go: where both sides stand
    /// (a migration under way, a paused source, the VM already moved, ...).
    Placement {
        /// What both sides add up to.
        placement: Placement,
        /// What they said.
        sides: Sides,
    },
    /// The destination is not waiting for an incoming migration.
    DestinationNotWaiting {
        /// The destination's run state.
        state: RunState,
    },
    /// The plan does not make the destination listen, and it does not listen: QEMU
    /// reports no incoming migration (started with `-incoming defer`, never told where).
    DestinationNotListening,
    /// The plan makes the destination listen, but it already has an incoming migration.
    IncomingAlreadySetUp {
        /// The destination's migration status.
        status: MigrationStatus,
    },
    /// QEMU reports a migration blocker (quoted verbatim).
    Blocked {
        /// QEMU's words.
        reason: String,
    },
    /// The destination cannot take the VM, as its backend found (a device the plan maps
    /// to a destination host's device that is missing, bound elsewhere or in use).
    DestinationRefuses {
        /// What was found, in the backend's words.
        reason: String,
    },
    /// Guest RAM differs between the sides.
    RamDiffers {
        /// Source RAM, bytes.
        source: u64,
        /// Destination RAM, bytes.
        destination: u64,
    },
    /// A dirty limit needs the KVM dirty ring, which the source does not have.
    DirtyLimitNeedsRing,
    /// The plan needs something this backend cannot do.
    Unsupported {
        /// The capability (`listen`, `device-events`).
        capability: &'static str,
        /// The plan's key that needs it.
        key: &'static str,
    },
    /// A device the plan lists is not on the source.
    DeviceMissing {
        /// The plan's id.
        id: String,
        /// The VFIO devices the source has.
        present: Vec<String>,
    },
    /// A device has no `migration-events` property (QEMU older than 9.1).
    DeviceEventsUnsupported {
        /// The device.
        id: String,
    },
    /// A device has `migration-events=off` and QEMU refused to turn it on.
    DeviceEventsOff {
        /// The device.
        id: String,
        /// QEMU's refusal.
        refusal: String,
    },
    /// A side's QEMU does not offer a migration capability the plan's stream needs.
    CapabilityMissing {
        /// The side.
        side: Side,
        /// The capability, as QEMU names it (`multifd`, `xbzrle`).
        capability: &'static str,
        /// The plan's key that needs it.
        key: &'static str,
    },
    /// A device has no `x-migration-multifd-transfer` property (QEMU older than 10.0),
    /// so the plan's `device_state_transfer` cannot be set on it.
    DeviceTransferUnsupported {
        /// The device.
        id: String,
    },
    /// The source has a VFIO device the plan does not list.
    UnlistedDevice {
        /// The device.
        id: String,
        /// Its QOM type.
        type_name: String,
    },
}

impl From<DriverError> for Problem {
    fn from(error: DriverError) -> Self {
        Problem::Driver { error }
    }
}

/// What preflight found when the hosts are ready.
#[derive(Debug, Clone)]
pub struct Ready {
    /// Facts about both sides.
    pub facts: PairFacts,
    /// The plan's devices as found on the source.
    pub devices: DeviceCheck,
    /// What this backend can do.
    pub capabilities: Capabilities,
}

/// Why the hosts are not ready; the facts when they could be read.
#[derive(Debug, Clone)]
pub struct NotReady {
    /// Every problem found.
    pub problems: Vec<Problem>,
    /// Facts about both sides, when they could be read.
    pub facts: Option<PairFacts>,
}

/// Reads both sides (already connected) and checks them against the plan. Changes
/// nothing on either side.
pub async fn check(plan: &Plan, driver: &mut dyn Driver) -> Result<Ready, NotReady> {
    let capabilities = driver.capabilities();
    let facts = driver.inspect().await.map_err(|e| NotReady {
        problems: vec![e.into()],
        facts: None,
    })?;
    let found = match driver.device_events() {
        Some(devices) => devices.vfio_devices().await,
        None => Ok(Vec::new()),
    };
    let found = found.map_err(|e| NotReady {
        problems: vec![e.into()],
        facts: Some(facts.clone()),
    })?;
    let devices = devices(plan, &found);
    let mut problems = versions::problems(plan, capabilities, &facts);
    problems.extend(pair_problems(plan, &facts));
    problems.extend(capability_problems(plan, capabilities));
    problems.extend(stream::capability_problems(plan, &facts));
    problems.extend(devices.problems.iter().cloned());
    match problems.is_empty() {
        true => Ok(Ready {
            facts,
            devices,
            capabilities,
        }),
        false => Err(NotReady {
            problems,
            facts: Some(facts),
        }),
    }
}

/// Every reason the two sides are not ready for this plan.
pub fn pair_problems(plan: &Plan, facts: &PairFacts) -> Vec<Problem> {
    let mut out = Vec::new();
    let src = &facts.source;
    let dst = &facts.destination;
    let sides = Sides::from(facts);
    match sides.placement() {
        Placement::OnSource => {
            if dst.run_state != RunState::InMigrate {
                out.push(Problem::DestinationNotWaiting {
                    state: dst.run_state.clone(),
                });
            }
            match (&plan.destination.listen, &dst.migration) {
                (Some(_), MigrationStatus::None) => {}
                (Some(_), status) => out.push(Problem::IncomingAlreadySetUp {
                    status: status.clone(),
                }),
                // Without `listen` the destination must listen already (`-incoming URI`
                // shows as `setup`); one that does not would refuse the stream.
                (None, MigrationStatus::None) if dst.run_state == RunState::InMigrate => {
                    out.push(Problem::DestinationNotListening)
                }
                (None, _) => {}
            }
        }
        placement => out.push(Problem::Placement { placement, sides }),
    }
    out.extend(src.blocked_reasons.iter().map(|reason| Problem::Blocked {
        reason: reason.clone(),
    }));
    out.extend(
        dst.blocked_reasons
            .iter()
            .map(|reason| Problem::DestinationRefuses {
                reason: reason.clone(),
            }),
    );
    if let (Some(source), Some(destination)) = (src.ram_bytes, dst.ram_bytes) {
        if source != destination {
            out.push(Problem::RamDiffers { source, destination });
        }
    }
    let throttles = plan.policy.escalation.contains(&Step::Throttle);
    if throttles && plan.policy.throttle == ThrottleMethod::DirtyLimit && src.dirty_ring_size.is_none() {
        out.push(Problem::DirtyLimitNeedsRing);
    }
    out
}

/// What the plan needs that this backend cannot do.
fn capability_problems(plan: &Plan, caps: Capabilities) -> Vec<Problem> {
    let mut out = Vec::new();
    if plan.destination.listen.is_some() && !caps.listen {
        out.push(Problem::Unsupported {
            capability: "listen",
            key: "destination.listen",
        });
    }
    if !plan.devices.is_empty() && !caps.device_events {
        out.push(Problem::Unsupported {
            capability: "device-events",
            key: "devices",
        });
    }
    out
}

/// What preflight found about the plan's VFIO devices.
#[derive(Debug, Clone, Default)]
pub struct DeviceCheck {
    /// Reasons the hosts are not ready.
    pub problems: Vec<Problem>,
    /// Devices whose `migration-events` is off: (plan id, QOM path). The run tries to
    /// turn it on before it starts; QEMU refuses that for realized devices in most
    /// versions.
    pub enable_events: Vec<(String, String)>,
    /// Devices to follow through the migration.
    pub follow: Vec<Follow>,
    /// Things worth saying that change nothing.
    pub notes: Vec<String>,
}

/// Checks the plan's devices against the VFIO devices the source has.
pub fn devices(plan: &Plan, found: &[DeviceInfo]) -> DeviceCheck {
    let mut check = DeviceCheck {
        problems: stream::device_problems(plan, found),
        ..DeviceCheck::default()
    };
    for wanted in &plan.devices {
        let Some(dev) = found.iter().find(|d| d.id == wanted.id) else {
            check.problems.push(Problem::DeviceMissing {
                id: wanted.id.clone(),
                present: found.iter().map(|d| d.id.clone()).collect(),
            });
            continue;
        };
        match dev.migration_events {
            Some(true) => {}
            Some(false) => check.enable_events.push((dev.id.clone(), dev.qom_path.clone())),
            None => check
                .problems
                .push(Problem::DeviceEventsUnsupported { id: dev.id.clone() }),
        }
        check.follow.push(Follow {
            id: wanted.id.clone(),
            qom_path: dev.qom_path.clone(),
            precopy: wanted.precopy,
            state_transfer: Some(stream::device_transfer(plan, dev.multifd_transfer)),
        });
    }
    for dev in found
        .iter()
        .filter(|d| !plan.devices.iter().any(|p| p.id == d.id))
    {
        if plan.vm.allow_unlisted_devices {
            check.notes.push(format!(
                "VFIO device {} ({}) is not in the plan; vm.allow_unlisted_devices lets it through, unfollowed",
                dev.id, dev.type_name
            ));
        } else {
            check.problems.push(Problem::UnlistedDevice {
                id: dev.id.clone(),
                type_name: dev.type_name.clone(),
            });
        }
    }
    check
}

impl Problem {
    /// Whether only a person can decide what to do about it (exit 4, not 3).
    pub fn needs_a_person(&self) -> bool {
        matches!(self, Problem::Placement { placement, .. } if placement.needs_a_person())
    }

    /// The side the problem is on, when it is on one.
    pub fn side(&self) -> Option<Side> {
        match self {
            Problem::Driver { error } => Some(error.side),
            Problem::QemuTooOld { side, .. } => Some(*side),
            Problem::DestinationNotWaiting { .. } | Problem::IncomingAlreadySetUp { .. } => {
                Some(Side::Destination)
            }
            Problem::DestinationNotListening => Some(Side::Destination),
            Problem::Placement { .. } => None,
            Problem::RamDiffers { .. } => Some(Side::Destination),
            Problem::Unsupported { .. } => None,
            Problem::CapabilityMissing { side, .. } => Some(*side),
            _ => Some(Side::Source),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::SideFacts;

    fn side(run_state: RunState, migration: &str) -> SideFacts {
        SideFacts {
            version: "10.0.2".into(),
            run_state,
            migration: MigrationStatus::parse(migration),
            blocked_reasons: Vec::new(),
            dirty_ring_size: None,
            kvm: true,
            ram_bytes: Some(1 << 30),
            migration_capabilities: None,
        }
    }

    fn plan(destination: &str) -> Plan {
        let text = format!(
            "[vm]\nname = \"t\"\n[source]\nqmp = \"unix:/run/src.qmp\"\n[destination]\nqmp = \"unix:/run/dst.qmp\"\n{destination}"
        );
        plans::load("plan.toml", &text).expect("a valid plan")
    }

    fn problems(plan: &Plan, destination_migration: &str) -> Vec<Problem> {
        let facts = PairFacts {
            source: side(RunState::Running, "none"),
            destination: side(RunState::InMigrate, destination_migration),
        };
        pair_problems(plan, &facts)
    }

    #[test]
    fn without_listen_a_destination_that_reports_no_incoming_migration_is_not_listening() {
        let uri_only = plan("[migration]\nuri = \"tcp:127.0.0.1:49152\"\n");
        assert_eq!(
            problems(&uri_only, "none"),
            vec![Problem::DestinationNotListening]
        );
        // `-incoming tcp:...` on its command line shows as `setup`.
        assert_eq!(problems(&uri_only, "setup"), vec![]);
        let listen = plan("listen = \"tcp:127.0.0.1:49152\"\n");
        assert_eq!(problems(&listen, "none"), vec![]);
    }
}
