//! The chart's series, taken from a report as data (time in ms, value in bytes or
//! bytes/s) before anything is drawn, so which series exist and what they hold is tested
//! apart from pixels.

use super::view::View;

/// Which y axis a series is read against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Axis {
    /// Bytes, on the left.
    Bytes,
    /// Bytes per second, on the right.
    Rate,
}

/// One line on the chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Stable name, written as `data-series` so tests and stylesheets can find it.
    pub id: &'static str,
    /// What the legend says.
    pub label: &'static str,
    /// Its axis.
    pub axis: Axis,
    /// Stroke colour.
    pub color: &'static str,
    /// Drawn dashed.
    pub dashed: bool,
    /// Each point drawn as a dot too (pass boundaries, measurements).
    pub dots: bool,
    /// (ms since `migrate`, value).
    pub points: Vec<(u64, f64)>,
}

/// Every series the report has data for, in drawing order; a series without points is
/// left out (the legend says which are missing).
pub fn series(view: &View) -> Vec<Series> {
    let has_samples = !view.samples.is_empty();
    let mut all = Vec::new();
    all.push(Series {
        id: "remaining-samples",
        label: "remaining, each sample",
        axis: Axis::Bytes,
        color: "#1f77b4",
        dashed: false,
        dots: false,
        points: view
            .samples
            .iter()
            .map(|s| (s.at_ms, s.remaining as f64))
            .collect(),
    });
    all.push(Series {
        id: "remaining-passes",
        label: "remaining at each pass boundary",
        axis: Axis::Bytes,
        color: "#0b3d91",
        dashed: false,
        dots: true,
        points: view
            .pass_history
            .iter()
            .map(|p| (p.elapsed, p.remaining as f64))
            .collect(),
    });
    all.push(Series {
        id: "threshold",
        label: "bandwidth × downtime limit (QEMU switches over below it)",
        axis: Axis::Bytes,
        color: "#d62728",
        dashed: true,
        dots: false,
        points: threshold(view),
    });
    let boundary_rates = |keep: fn(Option<&str>) -> bool| -> Vec<(u64, f64)> {
        view.pass_history
            .iter()
            .filter(|p| keep(p.dirty_rate_source.as_deref()))
            .map(|p| (p.elapsed, p.dirty_rate as f64))
            .collect()
    };
    all.push(Series {
        id: "dirty-kernel",
        label: "dirty rate, kernel measurement (calc-dirty-rate) at pass boundaries",
        axis: Axis::Rate,
        color: "#ff7f0e",
        dashed: false,
        dots: true,
        points: boundary_rates(|s| s.is_some_and(|s| s.starts_with("kernel"))),
    });
    all.push(Series {
        id: "dirty-stats",
        label: "dirty rate, QEMU statistic (dirty-pages-rate)",
        axis: Axis::Rate,
        color: "#9467bd",
        dashed: true,
        dots: !has_samples,
        points: match has_samples {
            true => view
                .samples
                .iter()
                .map(|s| (s.at_ms, s.stats_dirty_rate as f64))
                .collect(),
            false => boundary_rates(|s| s == Some("stats")),
        },
    });
    all.push(Series {
        id: "dirty-unrecorded",
        label: "dirty rate at pass boundaries (the report does not say measured how)",
        axis: Axis::Rate,
        color: "#8c564b",
        dashed: false,
        dots: true,
        points: boundary_rates(|s| s.is_none()),
    });
    all.push(Series {
        id: "bandwidth",
        label: "bandwidth",
        axis: Axis::Rate,
        color: "#2ca02c",
        dashed: false,
        dots: !has_samples,
        points: bandwidth(view),
    });
    all.retain(|s| !s.points.is_empty());
    all
}

/// Bandwidth over time: each sample, or each boundary when the report has no samples.
fn bandwidth(view: &View) -> Vec<(u64, f64)> {
    match view.samples.is_empty() {
        true => view
            .pass_history
            .iter()
            .map(|p| (p.elapsed, p.bandwidth as f64))
            .collect(),
        false => view
            .samples
            .iter()
            .map(|s| (s.at_ms, s.bandwidth as f64))
            .collect(),
    }
}

/// `bandwidth × downtime limit` wherever both are known: the remaining RAM that QEMU
/// would send within the limit, so the migration can switch over once remaining falls
/// under it. The limit follows the plan's `downtime` and each `raise-downtime` action.
fn threshold(view: &View) -> Vec<(u64, f64)> {
    let start = initial_limit_ms(view);
    bandwidth(view)
        .into_iter()
        .filter_map(|(at, bw)| limit_at(view, start, at).map(|ms| (at, bw * ms as f64 / 1000.0)))
        .collect()
}

/// The downtime limit before any action raised it: the plan's `limits.downtime`, or,
/// for a report without the plan, the final limit when nothing raised it.
pub fn initial_limit_ms(view: &View) -> Option<u64> {
    let from_plan = view
        .plan_setting("limits", "downtime")
        .and_then(|v| v.as_str())
        .and_then(|text| plans::units::parse_duration(text).ok())
        .map(|d| d.as_millis() as u64);
    let raised = view.actions.iter().any(|a| a.to_ms.is_some());
    from_plan.or(view.downtime_limit_ms.filter(|_| !raised))
}

/// The limit in force at `at` ms.
fn limit_at(view: &View, start: Option<u64>, at: u64) -> Option<u64> {
    view.actions
        .iter()
        .filter(|a| a.at <= at)
        .filter_map(|a| a.to_ms)
        .next_back()
        .or(start)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chart::view::{ActionView, PassView, SampleView};

    fn pass(elapsed: u64, source: Option<&str>) -> PassView {
        PassView {
            pass: elapsed / 100,
            elapsed,
            remaining: 100 << 20,
            dirty_rate: 50 << 20,
            dirty_rate_source: source.map(str::to_string),
            bandwidth: 128 << 20,
        }
    }

    fn ids(view: &View) -> Vec<&'static str> {
        series(view).iter().map(|s| s.id).collect()
    }

    #[test]
    fn a_report_without_samples_draws_boundaries_only_with_each_rate_under_its_source() {
        let view = View {
            pass_history: vec![pass(100, Some("stats")), pass(200, Some("kernel:dirty-ring"))],
            downtime_limit_ms: Some(500),
            ..View::default()
        };
        assert_eq!(
            ids(&view),
            [
                "remaining-passes",
                "threshold",
                "dirty-kernel",
                "dirty-stats",
                "bandwidth"
            ]
        );
        let kernel = series(&view).into_iter().find(|s| s.id == "dirty-kernel");
        assert_eq!(kernel.map(|s| s.points), Some(vec![(200, (50u64 << 20) as f64)]));
    }

    #[test]
    fn an_older_report_that_does_not_say_where_rates_came_from_says_so() {
        let view = View {
            pass_history: vec![pass(100, None)],
            ..View::default()
        };
        assert!(ids(&view).contains(&"dirty-unrecorded"));
        assert!(!ids(&view).contains(&"dirty-kernel"));
    }

    #[test]
    fn the_threshold_follows_the_limit_as_actions_raise_it() {
        let view = View {
            samples: [0, 1000, 2000]
                .into_iter()
                .map(|at_ms| SampleView {
                    at_ms,
                    bandwidth: 100 << 20,
                    ..SampleView::default()
                })
                .collect(),
            plan: Some(serde_json::json!({"limits": {"downtime": "500ms"}})),
            actions: vec![ActionView {
                at: 1500,
                to_ms: Some(2000),
                action: "raise-downtime".into(),
                ..ActionView::default()
            }],
            ..View::default()
        };
        let t = series(&view).into_iter().find(|s| s.id == "threshold");
        let mib = (1u64 << 20) as f64;
        assert_eq!(
            t.map(|s| s.points),
            Some(vec![(0, 50.0 * mib), (1000, 50.0 * mib), (2000, 200.0 * mib)])
        );
    }

    #[test]
    fn a_report_of_a_run_that_never_started_has_no_series() {
        assert!(series(&View::default()).is_empty());
    }
}
