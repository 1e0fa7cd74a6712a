//! `vfio-migrate check`: will this plan work, and what will it cost? Answered without
//! changing anything on either side, as rows of findings ([`Row`]) that add up to a
//! [`Verdict`].
//!
//! The rows come from three places: the plan and both monitors (this module), each
//! host's kernel as sysfs shows it (the backends' host probes), and a prediction of how
//! the migration will go.

mod row;

pub use row::{Row, Status, Verdict};
mod devices;
mod read;
mod rows;

pub use devices::UNKNOWN_STOP_COPY_BYTES;
pub use read::{read, Reading};
pub use rows::monitor_rows;
mod predict;

pub use predict::{predict, Forecast, Inputs, Prediction, StepAt};
mod plan;
mod report;

pub use plan::{check_plan, expected_ms};
pub use report::CheckReport;
