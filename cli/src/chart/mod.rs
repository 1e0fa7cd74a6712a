//! The report drawn for people: a chart of the migration over time and a page that
//! holds it with the numbers, written as SVG and HTML text by this small module (no
//! JavaScript, no chart library, nothing fetched), so the page opens anywhere and the
//! tests can read its structure.
//!
//! - [`view`]: the JSON report read leniently (any key may be missing);
//! - [`series`], [`lanes`]: what to draw, as data;
//! - [`scale`], [`axis`], [`svg`]: pixels and escaping;
//! - [`draw`]: the SVG; [`page`]: the HTML around it; [`words`]: its sentences.

mod axis;
pub mod draw;
pub mod lanes;
pub mod page;
pub mod scale;
pub mod series;
pub mod svg;
pub mod view;
mod words;

use std::path::{Path, PathBuf};

pub use view::{View, ViewError};

/// Where to write the drawings of a run's report; either may be absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Files {
    /// The HTML page.
    pub html: Option<PathBuf>,
    /// The SVG chart alone.
    pub svg: Option<PathBuf>,
}

impl Files {
    /// True when nothing is to be drawn.
    pub fn is_empty(&self) -> bool {
        self.html.is_none() && self.svg.is_none()
    }

    /// Draws `view` into each file asked for; returns the paths written, or the first
    /// file that could not be written and why.
    pub fn write(&self, view: &View) -> Result<Vec<PathBuf>, String> {
        let mut written = Vec::new();
        if let Some(path) = &self.html {
            write(path, &page::html(view))?;
            written.push(path.clone());
        }
        if let Some(path) = &self.svg {
            let doc = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{}", draw::svg(view));
            write(path, &doc)?;
            written.push(path.clone());
        }
        Ok(written)
    }

    /// Draws a run's report, after the run: a drawing that cannot be written is a
    /// warning on stderr, never a change to the run's exit code or its stdout, which
    /// say what happened to the VM.
    pub fn write_for_run(&self, report: &engine::Report, quiet: bool) {
        if self.is_empty() {
            return;
        }
        let result = View::of_report(report)
            .map_err(|e| e.to_string())
            .and_then(|view| self.write(&view));
        match result {
            Ok(paths) if !quiet => {
                for p in paths {
                    eprintln!("vfio-migrate: report drawn: {}", p.display());
                }
            }
            Ok(_) => {}
            Err(e) => eprintln!("vfio-migrate: warning: the report was not drawn: {e}"),
        }
    }
}

/// Writes `text` to `path` through a temporary file beside it, so a reader never sees
/// half a page.
fn write(path: &Path, text: &str) -> Result<(), String> {
    let name = path
        .file_name()
        .ok_or_else(|| format!("{}: not a file name", path.display()))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("cannot write {}: {e}", path.display())
        })
}
