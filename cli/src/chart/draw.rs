//! The chart as one SVG: the series over time, the threshold line, the policy actions
//! where they happened, the pause shaded, and a lane per VFIO device below on the same
//! time axis. Every element a test or a reader looks for carries a `class` and `data-`
//! attributes; colours are attributes, not a stylesheet, so the SVG looks the same
//! embedded in a page, opened alone or pasted into an incident note.

use std::fmt::Write as _;

use plans::units::format_bytes;

use super::lanes::{self, state_color, KNOWN_STATES};
use super::scale::{ByteScale, Scale};
use super::series::{self, Axis, Series};
use super::svg::{escape, num, Svg};
use super::view::{ActionView, View};
use super::{axis, words};
use crate::render::human::ms_text;

/// The drawing's width, px.
pub const WIDTH: f64 = 1160.0;
const LEFT: f64 = 90.0;
const RIGHT: f64 = 1060.0;
const PLOT_TOP: f64 = 80.0;
const PLOT_BOTTOM: f64 = 380.0;
const LANES_TOP: f64 = 452.0;
const LANE: f64 = 24.0;
const LANE_GAP: f64 = 8.0;
const FONT: &str = r#"font-family="DejaVu Sans, Verdana, Arial, sans-serif""#;

/// The chart of `view` as a standalone SVG document.
pub fn svg(view: &View) -> String {
    let end_ms = view.end_ms().max(1);
    let x = Scale::new(end_ms as f64, LEFT, RIGHT);
    let all = series::series(view);
    let max_of = |axis: Axis| {
        all.iter()
            .filter(|s| s.axis == axis)
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .fold(0.0, f64::max)
    };
    let y_bytes = ByteScale::new(max_of(Axis::Bytes) * 1.05, PLOT_BOTTOM, PLOT_TOP + 20.0);
    let y_rate = ByteScale::new(max_of(Axis::Rate) * 1.05, PLOT_BOTTOM, PLOT_TOP + 20.0);
    let lanes_bottom = LANES_TOP + view.devices.len().max(1) as f64 * (LANE + LANE_GAP);

    let mut body = Svg::default();
    header(&mut body, view);
    axis::time(&mut body, &x, PLOT_TOP, PLOT_BOTTOM);
    axis::bytes(&mut body, &y_bytes, LEFT, RIGHT);
    axis::rate(&mut body, &y_rate, RIGHT);
    if all.is_empty() {
        body.text(
            ((LEFT + RIGHT) / 2.0, (PLOT_TOP + PLOT_BOTTOM) / 2.0),
            &format!(
                "no measurements: the run ended in {} before the first sample",
                view.phase.as_deref().unwrap_or("an early phase")
            ),
            r##"font-size="14" fill="#666" text-anchor="middle""##,
        );
    }
    pause(&mut body, view, &x, lanes_bottom);
    gate(&mut body, view, &x, lanes_bottom);
    for s in &all {
        let y = match s.axis {
            Axis::Bytes => y_bytes,
            Axis::Rate => y_rate,
        };
        line(&mut body, s, &x, &y);
    }
    lanes(&mut body, view, &x, end_ms);
    for (i, a) in view.actions.iter().enumerate() {
        action(&mut body, i, a, &x, lanes_bottom);
    }
    let height = legend(&mut body, view, &all, lanes_bottom + 28.0) + 12.0;

    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="vfio-migrate-chart" width="{w}" height="{h}" viewBox="0 0 {w} {h}" {FONT} role="img" aria-label="{label}">"#,
        w = num(WIDTH),
        h = num(height),
        label = escape(&format!("migration of {}: {}", view.vm, view.result)),
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    out.push_str(&body.finish());
    out.push_str("</svg>\n");
    out
}

fn header(svg: &mut Svg, view: &View) {
    svg.text(
        (LEFT, 26.0),
        &words::headline(view),
        r##"font-size="17" font-weight="bold" fill="#111" class="headline""##,
    );
    svg.text(
        (LEFT, 48.0),
        &words::numbers(view),
        r##"font-size="12" fill="#333""##,
    );
    if let Some(note) = words::limits(view) {
        svg.text((LEFT, 66.0), &note, r##"font-size="12" fill="#555""##);
    }
}

fn line(svg: &mut Svg, s: &Series, x: &Scale, y: &ByteScale) {
    let points: Vec<(f64, f64)> = s
        .points
        .iter()
        .map(|(at, v)| (x.at(*at as f64), y.at(*v)))
        .collect();
    let dash = if s.dashed {
        r#" stroke-dasharray="6 4""#
    } else {
        ""
    };
    svg.raw(&format!(
        r#"<g class="series"><title>{}</title>"#,
        escape(s.label)
    ));
    svg.polyline(
        &points,
        &format!(
            r#"class="series-line" data-series="{}" stroke="{}" stroke-width="2"{dash}"#,
            s.id, s.color
        ),
    );
    if s.dots {
        for ((at, v), (px, py)) in s.points.iter().zip(&points) {
            let value = match s.axis {
                Axis::Bytes => format_bytes(*v as u64),
                Axis::Rate => format!("{}/s", format_bytes(*v as u64)),
            };
            svg.raw(&format!(
                r#"<circle cx="{}" cy="{}" r="3" fill="{}"><title>{}: {value} at +{}</title></circle>"#,
                num(*px),
                num(*py),
                s.color,
                escape(s.label),
                ms_text(*at)
            ));
        }
    }
    svg.raw("</g>");
}

/// The guest-visible pause, from the source's STOP to the RESUME, shaded across the plot
/// and the lanes.
fn pause(svg: &mut Svg, view: &View, x: &Scale, bottom: f64) {
    let Some(ms) = view.paused_ms else {
        return;
    };
    let (from, placed) = match view.paused_at_ms {
        Some(at) => (at, "measured from the source's STOP to the RESUME"),
        None => (
            view.total_ms.saturating_sub(ms),
            "placed at the end: this report does not say when the pause began",
        ),
    };
    let (x0, x1) = (x.at(from as f64), x.at(from.saturating_add(ms) as f64));
    let width = (x1 - x0).max(3.0);
    let title = format!("guest paused {} ({placed})", ms_text(ms));
    svg.raw(&format!(
        r#"<g class="pause" data-from-ms="{from}" data-ms="{ms}"><title>{}</title>"#,
        escape(&title)
    ));
    svg.rect(
        (x0, PLOT_TOP),
        (width, bottom - PLOT_TOP),
        r##"fill="#ffd54f" fill-opacity="0.35" stroke="#f9a825" stroke-width="1""##,
        None,
    );
    svg.text(
        (x0 + width / 2.0, PLOT_TOP - 2.0),
        &format!("paused {}", ms_text(ms)),
        r##"font-size="11" fill="#8d6e00" text-anchor="middle""##,
    );
    svg.raw("</g>");
}

/// The moment every device was saving: decisions on dirty data began there.
fn gate(svg: &mut Svg, view: &View, x: &Scale, bottom: f64) {
    let Some(at) = view.gate_opened_ms else {
        return;
    };
    let px = x.at(at as f64);
    svg.raw(&format!(
        r#"<g class="gate" data-at-ms="{at}"><title>{}</title>"#,
        escape(&format!(
            "gate opened at +{}: every VFIO device was saving; the policy judged dirty data from here",
            ms_text(at)
        ))
    ));
    svg.line(
        (px, PLOT_TOP + 20.0),
        (px, bottom),
        r##"stroke="#2e7d32" stroke-width="1.5" stroke-dasharray="3 3""##,
    );
    svg.text(
        (px + 3.0, LANES_TOP - 6.0),
        "gate opened",
        r##"font-size="11" fill="#2e7d32""##,
    );
    svg.raw("</g>");
}

fn lanes(svg: &mut Svg, view: &View, x: &Scale, end_ms: u64) {
    svg.text(
        (LEFT, LANES_TOP - 20.0),
        "VFIO devices",
        r##"font-size="12" font-weight="bold" fill="#333""##,
    );
    if view.devices.is_empty() {
        svg.text(
            (LEFT + 4.0, LANES_TOP + 16.0),
            "no VFIO devices in this run",
            r##"font-size="12" fill="#666" class="no-devices""##,
        );
        return;
    }
    for (i, device) in view.devices.iter().enumerate() {
        let top = LANES_TOP + i as f64 * (LANE + LANE_GAP);
        svg.raw(&format!(
            r#"<g class="lane" data-device="{}">"#,
            escape(&device.id)
        ));
        svg.text(
            (LEFT - 6.0, top + 16.0),
            &short(&device.id, 12),
            r##"font-size="12" fill="#111" text-anchor="end""##,
        );
        svg.rect(
            (LEFT, top),
            (RIGHT - LEFT, LANE),
            r##"fill="#f7f7f7" stroke="#ddd""##,
            None,
        );
        let spans = lanes::spans(device, end_ms);
        if spans.is_empty() {
            svg.text(
                (LEFT + 6.0, top + 16.0),
                "no state events",
                r##"font-size="11" fill="#666""##,
            );
        }
        for span in spans {
            let (x0, x1) = (x.at(span.from_ms as f64), x.at(span.to_ms as f64));
            let width = (x1 - x0).max(2.0);
            let title = format!(
                "{}: {} from +{} to +{}{}",
                device.id,
                span.state,
                ms_text(span.from_ms),
                ms_text(span.to_ms),
                span.migration_status
                    .as_deref()
                    .map_or(String::new(), |s| format!(" (migration {s})"))
            );
            svg.rect(
                (x0, top + 2.0),
                (width, LANE - 4.0),
                &format!(
                    r#"class="state" data-state="{}" data-from-ms="{}" fill="{}" stroke="white" stroke-width="0.5""#,
                    escape(&span.state),
                    span.from_ms,
                    state_color(&span.state)
                ),
                Some(&title),
            );
            if width > 7.0 * span.state.len() as f64 + 8.0 {
                svg.text(
                    (x0 + 4.0, top + 16.0),
                    &span.state,
                    r##"font-size="11" fill="#111" pointer-events="none""##,
                );
            }
        }
        svg.raw("</g>");
    }
}

/// A policy action: a line at the moment it was taken, a numbered marker, a short label,
/// and the whole reason as its tooltip.
fn action(svg: &mut Svg, i: usize, a: &ActionView, x: &Scale, bottom: f64) {
    let px = x.at(a.at as f64);
    let color = match a.action.as_str() {
        "throttle" => "#00838f",
        "raise-downtime" => "#ad1457",
        "stop-guest" => "#5d4037",
        "abort" => "#c62828",
        _ => "#424242",
    };
    let cy = PLOT_TOP + 30.0 + (i % 3) as f64 * 22.0;
    svg.raw(&format!(
        r#"<g class="action" data-action="{}" data-pass="{}" data-at-ms="{}"><title>{}</title>"#,
        escape(&a.action),
        a.pass,
        a.at,
        escape(&words::action(i, a))
    ));
    svg.line(
        (px, PLOT_TOP + 20.0),
        (px, bottom),
        &format!(r#"stroke="{color}" stroke-width="1.5""#),
    );
    svg.raw(&format!(
        r#"<circle class="action-marker" cx="{}" cy="{}" r="9" fill="{color}"/>"#,
        num(px),
        num(cy)
    ));
    svg.text(
        (px, cy + 4.0),
        &(i + 1).to_string(),
        r##"font-size="11" font-weight="bold" fill="white" text-anchor="middle""##,
    );
    let label = words::action_label(a);
    // Near the right edge the label goes to the left of the marker.
    let (lx, anchor) = match px + 12.0 + 7.0 * label.len() as f64 > RIGHT {
        true => (px - 12.0, "end"),
        false => (px + 12.0, "start"),
    };
    svg.text(
        (lx, cy + 4.0),
        &label,
        &format!(r#"class="action-label" font-size="11" fill="{color}" text-anchor="{anchor}""#),
    );
    svg.raw("</g>");
}

/// The legend from `top`; returns where it ends.
fn legend(svg: &mut Svg, view: &View, all: &[Series], top: f64) -> f64 {
    let mut y = top;
    svg.raw(r#"<g class="legend">"#);
    for s in all {
        let dash = if s.dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        svg.line(
            (LEFT, y - 4.0),
            (LEFT + 28.0, y - 4.0),
            &format!(r#"stroke="{}" stroke-width="2"{dash}"#, s.color),
        );
        let axis = match s.axis {
            Axis::Bytes => "left axis",
            Axis::Rate => "right axis",
        };
        svg.text(
            (LEFT + 36.0, y),
            &format!("{} ({axis})", s.label),
            r##"font-size="12" fill="#222""##,
        );
        y += 17.0;
    }
    for note in words::missing(view, all) {
        svg.text(
            (LEFT, y),
            &note,
            r##"font-size="12" fill="#8a4b00" class="note""##,
        );
        y += 17.0;
    }
    if !view.devices.is_empty() {
        let mut x = LEFT;
        for state in KNOWN_STATES {
            svg.rect(
                (x, y - 10.0),
                (12.0, 12.0),
                &format!(r#"fill="{}""#, state_color(state)),
                None,
            );
            svg.text((x + 16.0, y), state, r##"font-size="11" fill="#222""##);
            x += 24.0 + 7.0 * state.len() as f64;
        }
        y += 17.0;
    }
    svg.rect(
        (LEFT, y - 10.0),
        (12.0, 12.0),
        r##"fill="#ffd54f" fill-opacity="0.35" stroke="#f9a825""##,
        None,
    );
    svg.text(
        (LEFT + 16.0, y),
        "guest paused (STOP → RESUME)    numbered markers: policy actions (hover for the reason)    dashed green: gate opened",
        r##"font-size="11" fill="#222""##,
    );
    svg.raw("</g>");
    y
}

/// At most `n` characters, with `…` when cut.
fn short(text: &str, n: usize) -> String {
    match text.chars().count() > n {
        true => format!("{}…", text.chars().take(n - 1).collect::<String>()),
        false => text.to_string(),
    }
}
