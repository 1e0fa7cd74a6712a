//! Progress bars on a terminal: bytes sent against guest RAM, with the pass, the live
//! dirty rate, bandwidth and expected downtime against the limit. Actions and notes are
//! printed above the bar so they stay on screen.

use engine::EngineEvent;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use plans::units::format_bytes;

use super::human::{event_line, ms_text, rate_text};

/// The bar and what it last showed.
pub struct Bars {
    bar: ProgressBar,
}

impl Bars {
    /// A bar drawn on stderr.
    pub fn new() -> Self {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr_with_hz(10));
        let style = ProgressStyle::with_template(
            "{spinner:.green} {prefix:<10.bold} [{bar:28.cyan/blue}] {bytes:>9}/{total_bytes:<9} {wide_msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        Bars { bar }
    }

    /// Updates the display for one event.
    pub fn show(&mut self, event: &EngineEvent) {
        match event {
            EngineEvent::Phase { phase } => self.bar.set_prefix(phase.name()),
            EngineEvent::Progress(p) => {
                self.bar.set_length(p.total_bytes.max(1));
                self.bar
                    .set_position(p.total_bytes.saturating_sub(p.remaining_bytes));
                let source = p.dirty_rate_source.trim_start_matches("kernel:");
                let dirty = p
                    .dirty_rate
                    .map_or("-".to_string(), |d| format!("{} ({source})", rate_text(d)));
                let expected = p.expected_downtime_ms.map_or("-".to_string(), ms_text);
                let mut msg = format!(
                    "pass {} · dirty {dirty} · link {} · left {} · downtime ~{expected}/{}",
                    p.pass,
                    rate_text(p.bandwidth),
                    format_bytes(p.remaining_bytes),
                    ms_text(p.downtime_limit_ms)
                );
                if let Some(t) = p.cpu_throttle_percentage.filter(|t| *t > 0) {
                    msg.push_str(&format!(" · throttle {t}%"));
                }
                self.bar.set_message(msg);
            }
            other => {
                if let Some(line) = event_line(other) {
                    if !matches!(other, EngineEvent::Phase { .. }) {
                        self.bar.println(line);
                    }
                }
            }
        }
    }

    /// Removes the bar before the report is printed.
    pub fn clear(&mut self) {
        self.bar.finish_and_clear();
    }
}

impl Default for Bars {
    fn default() -> Self {
        Self::new()
    }
}
