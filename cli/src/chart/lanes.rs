//! Device lanes: each VFIO device's states as spans on the chart's time axis.

use super::view::DeviceView;

/// One state held from `from_ms` until `to_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// QEMU's name for the state.
    pub state: String,
    /// When it was entered, ms since `migrate`.
    pub from_ms: u64,
    /// When the next state was entered, or the end of the run.
    pub to_ms: u64,
    /// The migration's status when it was entered.
    pub migration_status: Option<String>,
}

/// A device's spans: one per state change in its timeline, each lasting until the next
/// change (the last until `end_ms`). A state left at once still gets its span, of zero
/// length, because the chart shows that it happened.
pub fn spans(device: &DeviceView, end_ms: u64) -> Vec<Span> {
    let timeline = &device.timeline;
    timeline
        .iter()
        .enumerate()
        .map(|(i, change)| {
            let next = timeline.get(i + 1).map_or(end_ms, |n| n.at_ms);
            Span {
                state: change.state.clone(),
                from_ms: change.at_ms,
                to_ms: next.max(change.at_ms),
                migration_status: change.migration_status.clone(),
            }
        })
        .collect()
}

/// The colour a state is drawn in: saving while the guest runs in blues, the stop-copy
/// stage in orange, stopped in grey; a state this version does not know in purple.
pub fn state_color(state: &str) -> &'static str {
    match state {
        "running" => "#a1d99b",
        "running-p2p" => "#74c476",
        "pre-copy" => "#6baed6",
        "pre-copy-p2p" => "#3182bd",
        "stop-copy" => "#fd8d3c",
        "stop" => "#bdbdbd",
        "resuming" => "#fdd0a2",
        _ => "#9e9ac8",
    }
}

/// The states with their own colour, for the legend.
pub const KNOWN_STATES: &[&str] = &[
    "running",
    "running-p2p",
    "pre-copy",
    "pre-copy-p2p",
    "stop-copy",
    "stop",
    "resuming",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chart::view::StateView;

    fn device(changes: &[(&str, u64)]) -> DeviceView {
        DeviceView {
            id: "gpu0".into(),
            timeline: changes
                .iter()
                .map(|(state, at_ms)| StateView {
                    state: state.to_string(),
                    at_ms: *at_ms,
                    migration_status: None,
                })
                .collect(),
            ..DeviceView::default()
        }
    }

    #[test]
    fn each_state_lasts_until_the_next_and_the_last_until_the_end() {
        let s = spans(
            &device(&[("pre-copy", 5), ("stop-copy", 2605), ("stop", 2714)]),
            3000,
        );
        let ranges: Vec<(u64, u64)> = s.iter().map(|s| (s.from_ms, s.to_ms)).collect();
        assert_eq!(ranges, [(5, 2605), (2605, 2714), (2714, 3000)]);
    }

    #[test]
    fn a_state_left_at_once_keeps_its_span() {
        let s = spans(&device(&[("running-p2p", 10), ("stop", 10)]), 20);
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].from_ms, s[0].to_ms), (10, 10));
    }

    #[test]
    fn a_device_without_events_has_no_spans() {
        assert!(spans(&device(&[]), 100).is_empty());
    }

    #[test]
    fn unknown_states_are_drawn_in_their_own_colour() {
        assert_ne!(state_color("x-new-state"), state_color("stop"));
        for s in KNOWN_STATES {
            assert_ne!(state_color(s), state_color("x-new-state"), "{s}");
        }
    }
}
