//! `check PLAN` against both monitors: read, judge, predict.

use plans::Plan;

use crate::driver::Driver;
use crate::placement::{Placement, Sides};

use super::predict::{predict, Forecast, Inputs, Prediction};
use super::read::{read, Reading};
use super::rows::monitor_rows;
use super::{CheckReport, Row};

/// Checks `plan` against both monitors without changing anything; `measure` takes one
/// dirty-rate measurement on the source for the prediction. `extra` rows (the hosts'
/// own checks) join the monitors' before the verdict.
pub async fn check_plan(plan: &Plan, driver: &mut dyn Driver, measure: bool, extra: Vec<Row>) -> CheckReport {
    let reading = read(plan, driver, measure).await;
    check_reading(plan, reading, extra)
}

/// How long migrating `plan` is expected to take, ms, from what was read: check's
/// prediction when it can make one, else the guest's RAM sent at the plan's (or the
/// source's) bandwidth; `None` when neither is known. What `run --order shortest-first`
/// sorts by.
pub fn expected_ms(plan: &Plan, reading: &Reading) -> Option<u64> {
    if let Some(p) = prediction(plan, reading, &mut Vec::new()) {
        return Some(p.total_ms);
    }
    let ram = reading.facts.as_ref()?.source.ram_bytes?;
    let bandwidth = plan
        .limits
        .max_bandwidth
        .map(|r| r.bytes_per_sec())
        .or(reading.source.as_ref()?.max_bandwidth)
        .filter(|b| *b > 0)?;
    Some(crate::estimate::transfer_ms(ram, bandwidth))
}

/// Judges what was read.
fn check_reading(plan: &Plan, reading: Reading, extra: Vec<Row>) -> CheckReport {
    let mut rows = vec![Row::pass(
        "plan.valid",
        format!("valid plan for VM {:?}", plan.vm.name),
    )];
    rows.extend(monitor_rows(plan, &reading));
    rows.extend(extra);
    let placement = reading.facts.as_ref().map(|f| Sides::from(f).placement());
    let prediction = match placement {
        Some(Placement::OnSource) => prediction(plan, &reading, &mut rows),
        _ => None,
    };
    let mut report = CheckReport::new(Some(plan.vm.name.clone()), rows);
    report.would_change = placement.map(|p| p != Placement::Migrated);
    report.measured = reading.dirty_rate.clone();
    report.prediction = prediction;
    report.surveys = [reading.source, reading.destination];
    report
}

/// The prediction and its rows: what it assumed, and its verdict.
fn prediction(plan: &Plan, reading: &Reading, rows: &mut Vec<Row>) -> Option<Prediction> {
    let facts = reading.facts.as_ref()?;
    let Some(ram_bytes) = facts.source.ram_bytes else {
        rows.push(Row::warn(
            "predict",
            "no prediction: the source does not report its RAM size",
            "upgrade QEMU",
        ));
        return None;
    };
    let Some(rate) = &reading.dirty_rate else {
        let why = reading
            .dirty_rate_missing
            .as_deref()
            .unwrap_or("not measured (--no-measure)");
        rows.push(Row::warn(
            "predict",
            format!("no prediction: no dirty rate ({why})"),
            "run check without --no-measure",
        ));
        return None;
    };
    let src = reading.source.as_ref()?;
    let Some(bandwidth) = plan
        .limits
        .max_bandwidth
        .map(|r| r.bytes_per_sec())
        .or(src.max_bandwidth)
        .filter(|b| *b > 0)
    else {
        rows.push(Row::warn(
            "predict",
            "no prediction: no bandwidth in the plan or on the source",
            "set limits.max_bandwidth",
        ));
        return None;
    };
    let data_bytes = src.resident_bytes.map_or(ram_bytes, |r| r.min(ram_bytes));
    let inputs = Inputs {
        ram_bytes,
        data_bytes,
        dirty_bytes_per_sec: rate.bytes_per_sec,
        bandwidth,
        device_bytes: plan.device_state_bytes(),
    };
    rows.push(Row::pass(
        "predict.inputs",
        assumptions(plan, src.resident_bytes, &inputs),
    ));
    let prediction = predict(plan, &inputs);
    rows.push(verdict_row(&prediction));
    Some(prediction)
}

fn assumptions(plan: &Plan, resident: Option<u64>, inputs: &Inputs) -> String {
    let data = match resident {
        Some(_) => format!(
            "{} MiB of {} MiB RAM holds data (resident memory of the source QEMU)",
            inputs.data_bytes >> 20,
            inputs.ram_bytes >> 20
        ),
        None => format!(
            "all {} MiB of RAM counted as data (the source QEMU's memory is not readable from here)",
            inputs.ram_bytes >> 20
        ),
    };
    let link = match plan.limits.max_bandwidth {
        Some(_) => "limits.max_bandwidth",
        None => "the source's max-bandwidth",
    };
    format!(
        "{data}; dirty rate {} MiB/s measured with calc-dirty-rate (changes no setting); link {} MiB/s ({link}); device state {} MiB",
        inputs.dirty_bytes_per_sec >> 20,
        inputs.bandwidth >> 20,
        inputs.device_bytes >> 20
    )
}

fn verdict_row(p: &Prediction) -> Row {
    let shape = format!(
        "{} pass(es), about {:.1} s{}",
        p.passes,
        p.total_ms as f64 / 1000.0,
        p.downtime_ms
            .map(|d| format!(", pause about {d} ms"))
            .unwrap_or_default()
    );
    let steps: Vec<String> = p
        .steps
        .iter()
        .map(|s| {
            format!(
                "{} at pass {} (+{:.1} s)",
                s.step,
                s.pass,
                s.at_ms as f64 / 1000.0
            )
        })
        .collect();
    let steps = match steps.is_empty() {
        true => String::new(),
        false => format!("; {}", steps.join(", ")),
    };
    match &p.forecast {
        Forecast::Converges => Row::pass("predict.outcome", format!("converges: {shape}")),
        Forecast::ConvergesAfter { step } => Row::pass("predict.outcome", format!("converges after {step}: {shape}{steps}")),
        Forecast::CannotMeetLimits { why } => Row::fail(
            "predict.outcome",
            format!("cannot meet the limits: {why} ({shape}{steps})"),
            "raise limits.max_downtime or the bandwidth, add a throttle step to policy.escalation, or migrate when the guest is quieter",
        ),
    }
}
