//! Reading both sides for `check`: each side on its own connection, so that one that
//! does not answer still leaves the other's rows; queries only, and one dirty-rate
//! measurement, which changes no setting.

use std::time::Duration;

use plans::{KernelDirtyMode, Plan};

use crate::driver::{DeviceInfo, DirtyRate, DirtyRateMode, Driver, DriverError, PairFacts, Side, SideSurvey};

/// Everything `check` read.
#[derive(Debug, Clone, Default)]
pub struct Reading {
    /// Each side's connection failure, when it had one.
    pub unreachable: Vec<DriverError>,
    /// Facts about both sides, when both answered.
    pub facts: Option<PairFacts>,
    /// What the source showed beyond the facts.
    pub source: Option<SideSurvey>,
    /// What the destination showed beyond the facts.
    pub destination: Option<SideSurvey>,
    /// The source's dirty rate, when it could be measured.
    pub dirty_rate: Option<DirtyRate>,
    /// Why it could not be, when it could not.
    pub dirty_rate_missing: Option<String>,
}

impl Reading {
    /// The VFIO devices of the source as preflight reads them.
    pub fn source_devices(&self) -> Vec<DeviceInfo> {
        self.source
            .iter()
            .flat_map(|s| &s.devices)
            .map(|d| DeviceInfo {
                id: d.id.clone(),
                qom_path: format!("/machine/peripheral/{}", d.id),
                type_name: d.type_name.clone(),
                migration_events: d.migration_events,
                multifd_transfer: d.multifd_transfer,
            })
            .collect()
    }
}

/// Reads both sides without changing anything. `measure` takes one `calc-dirty-rate`
/// on the source.
pub async fn read(plan: &Plan, driver: &mut dyn Driver, measure: bool) -> Reading {
    let mut reading = Reading::default();
    let Some(survey) = driver.survey() else {
        reading.unreachable.push(DriverError {
            side: Side::Source,
            request: "check".into(),
            message: "this backend cannot be checked without migrating".into(),
            disconnected: false,
        });
        return reading;
    };
    let mut connected = Vec::new();
    for side in [Side::Source, Side::Destination] {
        match survey.connect_side(side).await {
            Ok(()) => connected.push(side),
            Err(e) => reading.unreachable.push(e),
        }
    }
    for side in connected.iter().copied() {
        let read = survey.survey(side).await;
        match (side, read) {
            (Side::Source, Ok(s)) => reading.source = Some(s),
            (Side::Destination, Ok(s)) => reading.destination = Some(s),
            (_, Err(e)) => reading.unreachable.push(e),
        }
    }
    if reading.unreachable.is_empty() {
        match driver.inspect().await {
            Ok(facts) => reading.facts = Some(facts),
            Err(e) => reading.unreachable.push(e),
        }
    }
    if measure && connected.contains(&Side::Source) {
        let ring = reading
            .facts
            .as_ref()
            .is_some_and(|f| f.source.dirty_ring_size.is_some());
        match measure_dirty_rate(plan, driver, ring).await {
            Ok(rate) => reading.dirty_rate = Some(rate),
            Err(why) => reading.dirty_rate_missing = Some(why),
        }
    }
    reading
}

/// One kernel dirty-rate measurement on the source, in the mode the run would use.
async fn measure_dirty_rate(plan: &Plan, driver: &mut dyn Driver, ring: bool) -> Result<DirtyRate, String> {
    let Some(kernel) = driver.kernel_dirty_rate() else {
        return Err("this backend cannot measure the kernel's dirty rate".into());
    };
    let mode = match plan.convergence.kernel_mode {
        KernelDirtyMode::DirtyRing => DirtyRateMode::DirtyRing,
        KernelDirtyMode::DirtyBitmap => DirtyRateMode::DirtyBitmap,
        KernelDirtyMode::Auto if ring => DirtyRateMode::DirtyRing,
        KernelDirtyMode::Auto => DirtyRateMode::DirtyBitmap,
    };
    let calc = plan.convergence.calc_time.max(Duration::from_millis(500));
    kernel
        .start_dirty_rate(mode, calc)
        .await
        .map_err(|e| e.to_string())?;
    let deadline = tokio::time::Instant::now() + calc + Duration::from_secs(5);
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        match kernel.dirty_rate().await {
            Ok(Some(rate)) => return Ok(rate),
            Ok(None) if tokio::time::Instant::now() < deadline => continue,
            Ok(None) => return Err("the measurement did not finish in time".into()),
            Err(e) => return Err(e.to_string()),
        }
    }
}
