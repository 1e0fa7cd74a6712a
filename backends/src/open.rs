//! Choosing the backend a plan names, in one place.

use engine::Driver;
use plans::Plan;

use crate::qemu::QmpDriver;

/// The driver for the plan's two sides. Nothing is contacted until the engine calls
/// [`Driver::connect`].
pub fn open(plan: &Plan) -> Box<dyn Driver> {
    Box::new(QmpDriver::new(&plan.source.qmp, &plan.destination.qmp))
}
