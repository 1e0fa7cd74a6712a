//! The guardian: a small process each run starts beside itself, which repairs the VM if
//! the run dies without saying goodbye (SIGKILL, the OOM killer, a crash).
//!
//! `pause-before-switchover` makes QEMU stop the guest and wait for the tool; a tool that
//! is gone would leave the guest frozen there, and a migration nobody watches also escapes
//! the plan's deadline and policy. So the run keeps a pipe to the guardian open and
//! writes `done` when it ends normally. End of file without `done` means the run died:
//! its monitor connections and its lock went with it, so the guardian takes the lock and
//! repairs exactly as `vfio-migrate recover` would (cancel, put back, resume the source
//! unless the destination runs the VM), and writes what it found and did to
//! `guardian.log` in the state directory.
//!
//! It runs in a process group of its own, so the signals a terminal sends its job
//! (Ctrl-C, a closed terminal) reach the run, which cleans up itself, and not the
//! guardian. What it cannot survive: being killed together with the run (a whole
//! cgroup killed, the machine itself going down); then `vfio-migrate recover`, or the
//! next run of the plan, repairs from the journal.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use crate::state::{self, VmLock};

/// What the run writes before it lets go.
const DONE: &[u8] = b"done\n";

/// How long the guardian waits for a dying run's lock to be released.
const LOCK_PATIENCE: Duration = Duration::from_secs(30);

/// The run's end of the pipe to its guardian.
pub struct Guardian {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Guardian {
    /// Starts a guardian for the plan at `plan` (with state under `dir`).
    pub fn spawn(plan: &Path, dir: &Path) -> std::io::Result<Guardian> {
        let log = state::subdir(dir, "")?.join("guardian.log");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
        let mut child = Command::new(std::env::current_exe()?)
            .arg("--state-dir")
            .arg(dir)
            .arg("guard")
            .arg(plan)
            .stdin(Stdio::piped())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()?;
        let stdin = child.stdin.take();
        Ok(Guardian { child, stdin })
    }

    /// The run ended normally: the guardian has nothing to do and exits.
    pub fn stand_down(mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(DONE);
        }
        let _ = self.child.wait();
    }
}

/// The guardian's side: waits for the run, and repairs if it died. Returns the exit
/// code (that of the repair, or 0 when the run said goodbye).
pub fn watch(plan_path: &Path, dir: &Path) -> i32 {
    let mut said = Vec::new();
    let _ = std::io::stdin().lock().read_to_end(&mut said);
    if said.ends_with(DONE) {
        return 0;
    }
    log(&format!("the run of {} died; repairing", plan_path.display()));
    let plan = match std::fs::read_to_string(plan_path)
        .map_err(|e| e.to_string())
        .and_then(|text| plans::load(&plan_path.display().to_string(), &text).map_err(|e| e.to_string()))
    {
        Ok(plan) => plan,
        Err(e) => {
            log(&format!(
                "cannot read the plan: {e}; run `vfio-migrate recover` by hand"
            ));
            return engine::ExitStatus::NeedsAttention.code();
        }
    };
    let lock = match VmLock::acquire_within(dir, &state::vm_keys(&plan), LOCK_PATIENCE) {
        Ok(lock) => lock,
        Err(e) => {
            log(&format!("{e}; leaving the VM to that run"));
            return engine::ExitStatus::NotReady.code();
        }
    };
    let repair = crate::recover::repair_now(&plan, dir, &lock);
    log(&serde_json::to_string(&repair).unwrap_or_else(|e| format!("(report not encodable: {e})")));
    repair.rc
}

fn log(line: &str) {
    eprintln!("vfio-migrate guardian (pid {}): {line}", std::process::id());
}
