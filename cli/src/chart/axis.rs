//! Axes: time along the bottom in seconds, bytes on the left, bytes per second on the
//! right, each with grid lines at readable ticks.

use plans::units::format_bytes;

use super::scale::{ByteScale, Scale};
use super::svg::Svg;
use crate::render::human::ms_text;

const AXIS: &str = r##"stroke="#444" stroke-width="1""##;
const GRID: &str = r##"stroke="#e4e4e4" stroke-width="1""##;
const LABEL: &str = r##"font-size="11" fill="#333""##;

/// The time axis under the plot, with vertical grid lines from `top` to `bottom`.
pub fn time(svg: &mut Svg, x: &Scale, top: f64, bottom: f64) {
    svg.raw(r#"<g class="axis time">"#);
    for t in x.ticks(8) {
        let px = x.at(t);
        svg.line((px, top), (px, bottom), GRID);
        svg.text(
            (px, bottom + 16.0),
            &ms_text(t as u64),
            &format!(r#"{LABEL} text-anchor="middle""#),
        );
    }
    svg.line((x.at(0.0), bottom), (x.at(x.max()), bottom), AXIS);
    svg.text(
        (x.at(x.max()), bottom + 30.0),
        "time since migrate",
        &format!(r#"{LABEL} text-anchor="end""#),
    );
    svg.raw("</g>");
}

/// The bytes axis on the left of the plot at `x0`, with horizontal grid lines to `x1`.
pub fn bytes(svg: &mut Svg, y: &ByteScale, x0: f64, x1: f64) {
    svg.raw(r#"<g class="axis bytes">"#);
    for v in y.ticks() {
        let py = y.at(v);
        svg.line((x0, py), (x1, py), GRID);
        svg.text(
            (x0 - 6.0, py + 4.0),
            &format_bytes(v as u64),
            &format!(r#"{LABEL} text-anchor="end""#),
        );
    }
    let ticks = y.ticks();
    let (bottom, top) = (y.at(0.0), y.at(ticks.last().copied().unwrap_or(0.0)));
    svg.line((x0, bottom), (x0, top), AXIS);
    svg.text(
        (x0 - 6.0, top - 10.0),
        "bytes",
        &format!(r#"{LABEL} text-anchor="end" font-weight="bold""#),
    );
    svg.raw("</g>");
}

/// The rate axis on the right of the plot at `x1`.
pub fn rate(svg: &mut Svg, y: &ByteScale, x1: f64) {
    svg.raw(r#"<g class="axis rate">"#);
    let ticks = y.ticks();
    for v in &ticks {
        let py = y.at(*v);
        svg.line((x1, py), (x1 + 4.0, py), AXIS);
        svg.text(
            (x1 + 7.0, py + 4.0),
            &format!("{}/s", format_bytes(*v as u64)),
            LABEL,
        );
    }
    let (bottom, top) = (y.at(0.0), y.at(ticks.last().copied().unwrap_or(0.0)));
    svg.line((x1, bottom), (x1, top), AXIS);
    svg.text(
        (x1 + 7.0, top - 10.0),
        "bytes/s",
        &format!(r#"{LABEL} font-weight="bold""#),
    );
    svg.raw("</g>");
}
