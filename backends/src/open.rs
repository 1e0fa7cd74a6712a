//! Choosing the backend a plan names, in one place.

use engine::Driver;
use plans::{Endpoint, Plan};

use crate::qemu::QmpDriver;

/// The driver for the plan's two sides. Nothing is contacted until the engine calls
/// [`Driver::connect`]. Validation has already made sure both sides are of one kind.
pub fn open(plan: &Plan) -> Box<dyn Driver> {
    match (&plan.source, &plan.destination.endpoint) {
        (Endpoint::Qmp(source), Endpoint::Qmp(destination)) => Box::new(QmpDriver::new(source, destination)),
    }
}
