//! Choosing the backend a plan names, in one place.

use engine::Driver;
use plans::{Endpoint, Plan};

use crate::libvirt::{LibvirtDriver, LibvirtTarget};
use crate::qemu::QmpDriver;

/// The driver for the plan's two sides. Nothing is contacted until the engine calls
/// [`Driver::connect`]. Validation has already made sure both sides are of one kind.
pub fn open(plan: &Plan) -> Box<dyn Driver> {
    match (&plan.source, &plan.destination.endpoint) {
        (Endpoint::Qmp(source), Endpoint::Qmp(destination)) => Box::new(QmpDriver::new(source, destination)),
        (Endpoint::Libvirt(source), Endpoint::Libvirt(destination)) => {
            Box::new(LibvirtDriver::new(LibvirtTarget {
                source_uri: source.uri.clone(),
                // Validation requires the source's domain.
                domain: source.domain.clone().unwrap_or_default(),
                destination_uri: destination.uri.clone(),
                destination_name: destination.domain.clone(),
                peer_to_peer: plan.libvirt.peer_to_peer,
                persist: plan.libvirt.persist,
                undefine_source: plan.libvirt.undefine_source,
                devices: plan.devices.iter().map(|d| d.id.clone()).collect(),
                device_moves: plan
                    .devices
                    .iter()
                    .filter_map(|d| Some((d.id.clone(), d.destination_host.clone()?)))
                    .collect(),
                mdev_moves: plan
                    .devices
                    .iter()
                    .filter_map(|d| Some((d.id.clone(), d.destination_mdev.clone()?)))
                    .collect(),
            }))
        }
        // Validation refuses a plan whose sides are of different kinds.
        (Endpoint::Qmp(_), Endpoint::Libvirt(_)) | (Endpoint::Libvirt(_), Endpoint::Qmp(_)) => {
            unreachable!("validation refuses a plan that mixes QMP and libvirt sides")
        }
    }
}

#[cfg(test)]
mod tests {
    use engine::Capabilities;

    use super::*;

    #[test]
    fn a_qmp_plan_gets_a_driver_with_every_capability() {
        let plan = plans::load(
            "plan.toml",
            "[vm]\nname = \"vm\"\n[source]\nqmp = \"unix:/run/s.qmp\"\n[destination]\nqmp = \"unix:/run/d.qmp\"\nlisten = \"tcp:127.0.0.1:4444\"\n",
        )
        .expect("a valid plan");
        let all = Capabilities {
            switchover_hold: true,
            device_events: true,
            kernel_dirty_rate: true,
            listen: true,
        };
        assert_eq!(open(&plan).capabilities(), all);
    }

    #[test]
    fn a_libvirt_plan_gets_a_driver_that_cannot_hold_the_switchover_nor_make_the_destination_listen() {
        let plan = plans::load(
            "plan.toml",
            "[vm]\nname = \"vm\"\n[source]\nlibvirt = \"qemu:///system\"\ndomain = \"vm\"\n[destination]\nlibvirt = \"qemu+ssh://dst.example/system\"\n[migration]\ntls = false\n",
        )
        .expect("a valid plan");
        let libvirt = Capabilities {
            switchover_hold: false,
            device_events: true,
            kernel_dirty_rate: true,
            listen: false,
        };
        assert_eq!(open(&plan).capabilities(), libvirt);
    }
}
