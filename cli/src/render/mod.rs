//! Shows a run to people and programs: progress bars or plain lines on stderr for
//! people, JSON on stdout for programs. stdout carries only results, so
//! `--output json | jq` and Ansible's `from_json` always get clean input.

pub(crate) mod human;
mod progress;

use std::io::{IsTerminal, Write};

use engine::{EngineEvent, EventSink, Report};
use serde::Serialize;

use crate::args::Output;

pub use human::report_text;

/// Renders engine events as the output mode asks.
pub enum Renderer {
    /// Progress bars on a terminal.
    Bars(progress::Bars),
    /// Plain lines on stderr (not a terminal).
    Lines,
    /// Nothing until the result.
    Silent,
    /// JSON lines on stdout.
    Ndjson,
}

impl Renderer {
    /// Picks the renderer for an output mode and whether stderr is a terminal.
    pub fn new(output: Output, quiet: bool) -> Self {
        match output {
            Output::Ndjson => Renderer::Ndjson,
            _ if quiet => Renderer::Silent,
            Output::Human if std::io::stderr().is_terminal() => Renderer::Bars(progress::Bars::new()),
            _ => Renderer::Lines,
        }
    }

    /// Writes the final report in the chosen format.
    pub fn finish(&mut self, output: Output, report: &Report) {
        if let Renderer::Bars(bars) = self {
            bars.clear();
        }
        match output {
            Output::Human => print_stdout(&report_text(report)),
            Output::Json => print_json(report),
            Output::Ndjson => print_json(&Tagged {
                event: "report",
                report,
            }),
        }
    }
}

#[derive(Serialize)]
struct Tagged<'a> {
    event: &'static str,
    #[serde(flatten)]
    report: &'a Report,
}

fn print_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    // A closed stdout (e.g. `| head`) must not turn a migration result into a panic.
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

/// Prints one value as a JSON line on stdout.
pub fn print_json<T: Serialize>(value: &T) {
    match serde_json::to_string(value) {
        Ok(line) => print_stdout(&line),
        Err(e) => eprintln!("vfio-migrate: cannot encode output as JSON: {e}"),
    }
}

impl EventSink for Renderer {
    fn emit(&mut self, event: EngineEvent) {
        match self {
            Renderer::Bars(bars) => bars.show(&event),
            Renderer::Lines => {
                if let Some(line) = human::event_line(&event) {
                    eprintln!("{line}");
                }
            }
            Renderer::Silent => {}
            Renderer::Ndjson => print_json(&event),
        }
    }
}
