//! Builds the bare-metal guest from `guest/guest.S` with gcc and binutils and leaves
//! `guest.elf` in OUT_DIR for `include_bytes!`.
//!
//! QEMU's `-kernel` loads multiboot images only as ELF32, while the guest runs in long
//! mode; so it is assembled and linked as x86-64 and the result converted to ELF32.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn run(cmd: &mut Command) {
    let shown = format!("{cmd:?}");
    match cmd.status() {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("building the guest failed ({s}): {shown}"),
        Err(e) => {
            panic!("building the guest needs gcc and binutils (apt-get install gcc binutils): {shown}: {e}")
        }
    }
}

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let src = PathBuf::from("guest");
    println!("cargo:rerun-if-changed=guest/guest.S");
    println!("cargo:rerun-if-changed=guest/guest.ld");
    let obj = out.join("guest.o");
    let elf64 = out.join("guest64.elf");
    let elf32 = out.join("guest.elf");
    run(Command::new("gcc")
        .arg("-c")
        .arg("-o")
        .arg(&obj)
        .arg(src.join("guest.S")));
    run(Command::new("ld")
        .args(["-m", "elf_x86_64", "-nostdlib", "--no-warn-rwx-segments", "-T"])
        .arg(src.join("guest.ld"))
        .arg("-o")
        .arg(&elf64)
        .arg(&obj));
    run(Command::new("objcopy")
        .args(["-O", "elf32-i386"])
        .arg(&elf64)
        .arg(&elf32));
}
