//! The guest's integrity check catches lost writes: that is what makes `errors=0` after a
//! migration mean something. The guest's RAM is put in a shared file so that the test
//! can change pages behind the guest's back, as a migration that lost them would.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rig::{parse_heartbeat, Heartbeat, GUEST_ELF};

/// Where the guest's working set starts in its physical memory (see guest/guest.S).
const WSS_BASE: u64 = 16 << 20;

/// Kills QEMU however the test ends.
struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn heartbeats(log: &Path) -> Vec<Heartbeat> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines().filter_map(parse_heartbeat).collect()
}

fn wait_for_heartbeats(log: &Path, n: usize) -> Heartbeat {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(hb) = heartbeats(log).get(n - 1) {
            return *hb;
        }
        assert!(
            Instant::now() < deadline,
            "no heartbeat {n}: {:?}",
            std::fs::read_to_string(log)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn pages_changed_behind_the_guest_s_back_are_counted_as_errors() {
    // tmpfs when there is one: the guest's RAM should not go through a disk.
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .expect("tempdir");
    let kernel = dir.path().join("guest.elf");
    std::fs::write(&kernel, GUEST_ELF).expect("write the guest");
    let ram = dir.path().join("ram");
    let log = dir.path().join("serial");
    // TCG: works on every host, and sees host writes to the shared file at once.
    let child = Command::new("qemu-system-x86_64")
        .args(["-machine", "pc,memory-backend=ram", "-m", "64", "-smp", "1"])
        .arg("-object")
        .arg(format!(
            "memory-backend-file,id=ram,size=64M,share=on,mem-path={}",
            ram.display()
        ))
        .args([
            "-accel",
            "tcg",
            "-cpu",
            "qemu64",
            "-display",
            "none",
            "-nodefaults",
            "-no-user-config",
        ])
        .args(["-bios", "/usr/share/qemu/qboot.rom", "-kernel"])
        .arg(&kernel)
        .args(["-append", "wss_mb=16 rate_mb=50"])
        .arg("-serial")
        .arg(format!("file:{}", log.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("start QEMU");
    let _qemu = Qemu(child);

    let before = wait_for_heartbeats(&log, 1);
    assert_eq!(before.errors, 0, "{before:?}");

    // 16 MiB is 4096 pages; at 50 MiB/s the guest comes round every ~0.3 s, so each
    // changed page is found within the next heartbeat.
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&ram)
        .expect("open guest RAM");
    for page in [7u64, 1000, 4095] {
        let at = WSS_BASE + page * 4096;
        let mut word = [0u8; 8];
        file.seek(SeekFrom::Start(at)).expect("seek");
        file.read_exact(&mut word).expect("read");
        let value = u64::from_le_bytes(word);
        assert_ne!(value, 0, "the working set is filled with non-zero values");
        file.seek(SeekFrom::Start(at)).expect("seek");
        file.write_all(&(value ^ 0x5a5a).to_le_bytes()).expect("write");
    }
    drop(file);

    let after = wait_for_heartbeats(&log, 3);
    assert_eq!(after.errors, 3, "{:?}", heartbeats(&log));
}
