//! The journal of a run: what it changed on the hosts, written at every phase change and
//! every action, so that whoever comes after a run that died knows what to undo.
//!
//! One JSON file per VM, replaced atomically (write a temporary file, fsync, rename,
//! fsync the directory), mode 0600. A finished run marks it finished; an unfinished one
//! found later means that run died.
//!
//! The first record is written before the run contacts anything (a journal that cannot
//! be written stops the run there); later ones go to a writer thread, because an fsync
//! takes milliseconds and the engine must never wait for one, least of all while QEMU
//! holds the guest paused at `pre-switchover`. The writer keeps only the newest record
//! when several are waiting. `finish` writes the last one and waits for it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use engine::events::{EngineEvent, EventSink};
use engine::policy::Action;
use engine::repair::Journaled;
use serde::{Deserialize, Serialize};

/// What the journal file holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct JournalRecord {
    /// The plan's VM name.
    pub vm: String,
    /// The plan file the run carried out.
    pub plan: PathBuf,
    /// The run's process id.
    pub pid: u32,
    /// When the run started, ms since the Unix epoch.
    pub started_unix_ms: u64,
    /// When this record was written, ms since the Unix epoch.
    pub updated_unix_ms: u64,
    /// The phase the run was in.
    pub phase: String,
    /// What the run changed, in order, in words.
    pub changes: Vec<String>,
    /// The backend's saved settings, to put back.
    pub saved_settings: Option<serde_json::Value>,
    /// The run throttled the guest.
    pub throttled: bool,
    /// The run ended (whatever its result) and left nothing to undo.
    pub finished: bool,
    /// The exit code it ended with, when finished.
    pub rc: Option<i32>,
}

impl JournalRecord {
    /// What a repair needs to know from it.
    pub fn journaled(&self) -> Journaled {
        Journaled {
            saved_settings: self.saved_settings.clone(),
            throttled: self.throttled,
        }
    }
}

/// A journal file.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    record: JournalRecord,
    writer: Option<Writer>,
}

/// The thread that writes records in the background, and the first error it met.
#[derive(Debug)]
struct Writer {
    records: mpsc::Sender<JournalRecord>,
    thread: JoinHandle<std::io::Result<()>>,
}

impl Writer {
    fn start(path: PathBuf) -> Writer {
        let (records, inbox) = mpsc::channel::<JournalRecord>();
        let thread = std::thread::spawn(move || {
            let mut first_error = Ok(());
            while let Ok(mut record) = inbox.recv() {
                // Only the newest record matters.
                while let Ok(newer) = inbox.try_recv() {
                    record = newer;
                }
                if let Err(e) = write_atomically(&path, &record) {
                    first_error = first_error.and(Err(e));
                }
            }
            first_error
        });
        Writer { records, thread }
    }

    /// Sends the last record and waits until everything sent is written.
    fn close(self, last: JournalRecord) -> std::io::Result<()> {
        let _ = self.records.send(last);
        drop(self.records);
        self.thread
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the journal writer panicked")))
    }
}

impl Journal {
    /// Starts the journal for the VM keyed `key` under `dir`: writes its first record
    /// (so a directory that cannot hold it is found before anything is contacted) and
    /// starts the writer for the rest.
    pub fn start(dir: &Path, key: &str, vm: &str, plan: &Path) -> std::io::Result<Journal> {
        let path = super::subdir(dir, "journal")?.join(format!("{key}.json"));
        let mut journal = Journal::new(path, vm, plan);
        write_atomically(&journal.path, &journal.record)?;
        journal.writer = Some(Writer::start(journal.path.clone()));
        Ok(journal)
    }

    fn new(path: PathBuf, vm: &str, plan: &Path) -> Journal {
        let now = unix_ms();
        Journal {
            path,
            writer: None,
            record: JournalRecord {
                vm: vm.to_string(),
                plan: plan.to_path_buf(),
                pid: std::process::id(),
                started_unix_ms: now,
                updated_unix_ms: now,
                phase: "connect".into(),
                ..JournalRecord::default()
            },
        }
    }

    /// The record a journal file holds, when there is one.
    pub fn read(dir: &Path, key: &str) -> Option<(PathBuf, JournalRecord)> {
        let path = dir.join("journal").join(format!("{key}.json"));
        let text = std::fs::read_to_string(&path).ok()?;
        let record = serde_json::from_str(&text).ok()?;
        Some((path, record))
    }

    /// Replaces the record of the VM keyed `key` (e.g. marked finished after a repair).
    pub fn rewrite(dir: &Path, key: &str, record: &JournalRecord) -> std::io::Result<()> {
        let path = super::subdir(dir, "journal")?.join(format!("{key}.json"));
        write_atomically(&path, record)
    }

    /// Where it is written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Hands the record as it stands now to the writer; never waits for the disk.
    fn write_behind(&mut self) {
        self.record.updated_unix_ms = unix_ms();
        if let Some(writer) = &self.writer {
            let _ = writer.records.send(self.record.clone());
        }
    }

    /// Records the run's end with exit code `rc`, and waits until that is written;
    /// reports the first write that failed on the way. A run that ended needing a person
    /// (exit 4: e.g. a monitor lost for good, so settings could not be put back) leaves
    /// the journal unfinished, so that `recover`, or the next run, still repairs from it.
    pub fn finish(&mut self, rc: i32) -> std::io::Result<()> {
        self.record.finished = rc != engine::ExitStatus::NeedsAttention.code();
        self.record.rc = Some(rc);
        self.record.phase = "done".into();
        self.record.updated_unix_ms = unix_ms();
        match self.writer.take() {
            Some(writer) => writer.close(self.record.clone()),
            None => write_atomically(&self.path, &self.record),
        }
    }

    /// Notes what an engine event changed; returns whether the record changed.
    fn note(&mut self, event: &EngineEvent) -> bool {
        let r = &mut self.record;
        match event {
            // The guest is paused while the engine is in this phase: nothing may wake
            // the writer then, and there is nothing new to undo.
            EngineEvent::Phase {
                phase: engine::phase::Phase::Switchover,
            } => return false,
            EngineEvent::Phase { phase } => {
                r.phase = phase.name().to_string();
                r.changes.push(format!("phase {}", phase.name()));
            }
            EngineEvent::SettingsSaved { settings } => {
                r.saved_settings = Some(settings.clone());
                r.changes.push("migration capabilities and parameters set".into());
            }
            EngineEvent::Action(action) => {
                if matches!(action.action, Action::Throttle { .. }) {
                    r.throttled = true;
                }
                r.changes
                    .push(format!("policy step {} at pass {}", action.step, action.pass));
            }
            _ => return false,
        }
        true
    }
}

/// Writes `value` as JSON to `path` so that a reader sees the old file or the new one,
/// never half of either, even across a crash of this machine.
fn write_atomically<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let bytes = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Passes the engine's events on to `inner` and keeps the journal in step with them.
pub struct JournalSink<'a> {
    inner: &'a mut dyn EventSink,
    journal: &'a mut Journal,
}

impl<'a> JournalSink<'a> {
    /// A sink that journals as it passes events on.
    pub fn new(inner: &'a mut dyn EventSink, journal: &'a mut Journal) -> Self {
        JournalSink { inner, journal }
    }
}

impl EventSink for JournalSink<'_> {
    fn emit(&mut self, event: EngineEvent) {
        if self.journal.note(&event) {
            self.journal.write_behind();
        }
        self.inner.emit(event);
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_journal_is_private_and_says_what_a_run_changed_until_it_finished() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut journal = Journal::start(dir.path(), "vm", "db", Path::new("plan.toml")).expect("journal");
        let mut shown = engine::events::VecSink::default();
        {
            let mut sink = JournalSink::new(&mut shown, &mut journal);
            sink.emit(EngineEvent::Phase {
                phase: engine::phase::Phase::Configure,
            });
            sink.emit(EngineEvent::SettingsSaved {
                settings: serde_json::json!({"capabilities": []}),
            });
        }
        // What the writer has by now reaches the disk soon after; wait for it.
        let written = |want: &dyn Fn(&JournalRecord) -> bool| {
            for _ in 0..200 {
                if let Some((path, record)) = Journal::read(dir.path(), "vm").filter(|(_, r)| want(r)) {
                    return (path, record);
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            panic!("the journal was not written in time");
        };
        let (path, record) = written(&|r| r.saved_settings.is_some());
        assert_eq!(record.phase, "configure");
        assert!(record.saved_settings.is_some());
        assert!(!record.finished);
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(shown.0.len(), 2, "events still reach the display");

        journal.finish(0).expect("finish");
        let (_, record) = Journal::read(dir.path(), "vm").expect("written at once by finish");
        assert!(record.finished);
        assert_eq!(record.rc, Some(0));
    }

    #[test]
    fn a_run_that_needs_a_person_leaves_its_journal_for_recover() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut journal = Journal::start(dir.path(), "vm", "db", Path::new("plan.toml")).expect("journal");
        journal.finish(4).expect("finish");
        let (_, record) = Journal::read(dir.path(), "vm").expect("written");
        assert!(!record.finished, "recover must still repair from it");
        assert_eq!(record.rc, Some(4));
    }
}
