//! Builds the bare-metal guest from `guest/guest.S` with gcc and binutils and leaves
//! `guest.elf` in OUT_DIR for `include_bytes!`.
//!
//! QEMU's `-kernel` loads multiboot images only as ELF32 (it refuses ELF64 multiboot),
//! while the guest runs in long mode; so it is assembled and linked as x86-64 and the
//! result converted to ELF32 with objcopy. gcc (not bare `as`) assembles it because the
//! source uses the C preprocessor for its constants.

use std::path::PathBuf;
use std::process::{exit, Command};

/// Stops the build with a plain message (no panic backtrace: this is a setup problem).
fn fail(message: String) -> ! {
    eprintln!("error: building the rig's guest: {message}");
    println!("cargo:warning=building the rig's guest: {message}");
    exit(1)
}

fn run(tool: &str, cmd: &mut Command) {
    let shown = format!("{cmd:?}");
    match cmd.status() {
        Ok(s) if s.success() => {}
        Ok(s) => fail(format!("{tool} failed ({s}): {shown}")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => fail(format!(
            "`{tool}` was not found; the guest needs gcc and binutils (apt-get install gcc binutils)"
        )),
        Err(e) => fail(format!("cannot run {tool}: {e}: {shown}")),
    }
}

fn main() {
    let Some(out) = std::env::var_os("OUT_DIR").map(PathBuf::from) else {
        fail("OUT_DIR is not set (run this through cargo)".into())
    };
    let src = PathBuf::from("guest");
    println!("cargo:rerun-if-changed=guest/guest.S");
    println!("cargo:rerun-if-changed=guest/guest.ld");
    let obj = out.join("guest.o");
    let elf64 = out.join("guest64.elf");
    let elf32 = out.join("guest.elf");
    run(
        "gcc",
        Command::new("gcc")
            .args(["-c", "-m64", "-o"])
            .arg(&obj)
            .arg(src.join("guest.S")),
    );
    run(
        "ld",
        Command::new("ld")
            .args(["-m", "elf_x86_64", "-nostdlib", "--no-warn-rwx-segments", "-T"])
            .arg(src.join("guest.ld"))
            .arg("-o")
            .arg(&elf64)
            .arg(&obj),
    );
    run(
        "objcopy",
        Command::new("objcopy")
            .args(["-O", "elf32-i386"])
            .arg(&elf64)
            .arg(&elf32),
    );
}
