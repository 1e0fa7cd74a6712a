//! Shows an evacuation as it goes: on a terminal one line per VM (its phase, pass,
//! bytes, dirty rate and expected downtime) and a total line, drawn with indicatif's
//! `MultiProgress`; plain lines tagged with the VM's name when stderr is not a terminal;
//! JSON lines with a `vm` key for `--output ndjson`.
//!
//! Every VM's run emits into its own [`VmSink`]; the sinks share the board behind a
//! mutex held only while one event is drawn, so no run waits on another's.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex, PoisonError};

use engine::{EngineEvent, EventSink};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use plans::units::format_bytes;

use crate::args::Output;
use crate::render::human::{event_line, ms_text, rate_text};
use crate::render::print_json;

/// How the board shows events.
enum Mode {
    /// A line per VM and a total line, redrawn on a terminal.
    Bars {
        multi: MultiProgress,
        vms: Vec<ProgressBar>,
        total: ProgressBar,
    },
    /// Plain lines on stderr, tagged with the VM.
    Lines,
    /// Nothing until the report.
    Silent,
    /// JSON lines on stdout with a `vm` key.
    Ndjson,
}

/// What the board keeps per VM for the total line.
#[derive(Clone, Default)]
struct Tally {
    sent: u64,
    ended: Option<&'static str>,
    running: bool,
}

/// The shared display.
pub struct Board {
    mode: Mode,
    names: Vec<String>,
    tallies: Vec<Tally>,
}

impl Board {
    /// A board for VMs named `names` (in plan order), as `output` and `quiet` ask.
    pub fn new(names: Vec<String>, output: Output, quiet: bool) -> Arc<Mutex<Board>> {
        let mode = match output {
            Output::Ndjson => Mode::Ndjson,
            _ if quiet => Mode::Silent,
            Output::Human if std::io::stderr().is_terminal() => bars(&names),
            _ => Mode::Lines,
        };
        let tallies = vec![Tally::default(); names.len()];
        Arc::new(Mutex::new(Board { mode, names, tallies }))
    }

    /// Says something about the evacuation itself (a VM started, skipped, finished).
    pub fn say(&mut self, line: &str) {
        match &self.mode {
            Mode::Bars { multi, .. } => {
                let _ = multi.println(format!("vfio-migrate: {line}"));
            }
            Mode::Lines => eprintln!("vfio-migrate: {line}"),
            Mode::Silent => {}
            Mode::Ndjson => print_json(&serde_json::json!({"event": "evacuation", "msg": line})),
        }
    }

    /// VM `index` started.
    pub fn started(&mut self, index: usize) {
        self.tallies[index].running = true;
        self.redraw_total();
    }

    /// VM `index` ended with the outcome `word`.
    pub fn ended(&mut self, index: usize, word: &'static str) {
        let tally = &mut self.tallies[index];
        tally.running = false;
        tally.ended = Some(word);
        if let Mode::Bars { vms, .. } = &self.mode {
            vms[index].set_prefix(format!("{} {word}", self.names[index]));
            vms[index].finish();
        }
        self.redraw_total();
    }

    /// Removes the bars before the report is printed.
    pub fn clear(&mut self) {
        if let Mode::Bars { multi, .. } = &self.mode {
            let _ = multi.clear();
        }
    }

    fn show(&mut self, index: usize, event: &EngineEvent) {
        let name = &self.names[index];
        match &self.mode {
            Mode::Bars { multi, vms, .. } => {
                let bar = &vms[index];
                match event {
                    EngineEvent::Phase { phase } => bar.set_prefix(format!("{name} {}", phase.name())),
                    EngineEvent::Progress(p) => {
                        bar.set_length(p.total_bytes.max(1));
                        bar.set_position(p.total_bytes.saturating_sub(p.remaining_bytes));
                        bar.set_message(progress_words(p));
                        self.tallies[index].sent = p.transferred_bytes;
                        self.redraw_total();
                    }
                    other => {
                        if let Some(line) = event_line(other) {
                            let _ = multi.println(tagged(name, &line));
                        }
                    }
                }
            }
            Mode::Lines => {
                if let Some(line) = event_line(event) {
                    eprintln!("{}", tagged(name, &line));
                }
            }
            Mode::Silent => {}
            Mode::Ndjson => {
                let mut value = serde_json::to_value(event).unwrap_or_default();
                if let Some(object) = value.as_object_mut() {
                    object.insert("vm".into(), name.clone().into());
                }
                print_json(&value);
            }
        }
    }

    fn redraw_total(&self) {
        let Mode::Bars { total, .. } = &self.mode else {
            return;
        };
        let count = |word: &str| self.tallies.iter().filter(|t| t.ended == Some(word)).count();
        let running = self.tallies.iter().filter(|t| t.running).count();
        let ended = self.tallies.iter().filter(|t| t.ended.is_some()).count();
        let sent: u64 = self.tallies.iter().map(|t| t.sent).sum();
        total.set_position(ended as u64);
        total.set_message(format!(
            "{} migrated · {} not · {running} running · {} waiting · sent {}",
            count("migrated"),
            ended - count("migrated"),
            self.names.len() - ended - running,
            format_bytes(sent)
        ));
    }
}

/// One line per VM and the total line below them.
fn bars(names: &[String]) -> Mode {
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
    let width = names.iter().map(String::len).max().unwrap_or(0) + 11;
    let style = ProgressStyle::with_template(&format!(
        "{{prefix:<{width}.bold}} [{{bar:24.cyan/blue}}] {{bytes:>9}}/{{total_bytes:<9}} {{wide_msg}}"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    let vms = names
        .iter()
        .map(|name| {
            let bar = multi.add(ProgressBar::new(1).with_style(style.clone()));
            bar.set_prefix(format!("{name} waiting"));
            bar
        })
        .collect();
    let total_style = ProgressStyle::with_template("{prefix:.bold} {pos}/{len} done · {wide_msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    let total = multi.add(ProgressBar::new(names.len() as u64).with_style(total_style));
    total.set_prefix("total");
    Mode::Bars { multi, vms, total }
}

/// A VM's progress in words, as the single run's bar says it.
fn progress_words(p: &engine::events::Progress) -> String {
    let dirty = p.dirty_rate.map_or("-".to_string(), rate_text);
    let expected = p.expected_downtime_ms.map_or("-".to_string(), ms_text);
    format!(
        "pass {} · dirty {dirty} · link {} · downtime ~{expected}/{}",
        p.pass,
        rate_text(p.bandwidth),
        ms_text(p.downtime_limit_ms)
    )
}

/// `vfio-migrate: pass 3: …` becomes `vfio-migrate [db1]: pass 3: …`.
fn tagged(name: &str, line: &str) -> String {
    match line.strip_prefix("vfio-migrate: ") {
        Some(rest) => format!("vfio-migrate [{name}]: {rest}"),
        None => format!("[{name}] {line}"),
    }
}

/// One VM's events, onto the shared board.
pub struct VmSink {
    board: Arc<Mutex<Board>>,
    index: usize,
}

impl VmSink {
    /// The sink of VM `index`.
    pub fn new(board: Arc<Mutex<Board>>, index: usize) -> Self {
        VmSink { board, index }
    }
}

impl EventSink for VmSink {
    fn emit(&mut self, event: EngineEvent) {
        // A panic elsewhere while drawing must not stop this VM's run from reporting.
        let mut board = self.board.lock().unwrap_or_else(PoisonError::into_inner);
        board.show(self.index, &event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_name_the_vm() {
        assert_eq!(
            tagged("db1", "vfio-migrate: pass 3: remaining 1 MiB"),
            "vfio-migrate [db1]: pass 3: remaining 1 MiB"
        );
    }
}
