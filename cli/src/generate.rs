//! Shell completions and the man page, generated from the clap definitions. The
//! committed copies in `completions/` and `docs/` are checked against these by a test.

use std::io::Write;

use clap::CommandFactory;
use clap_complete::Shell;

use crate::args::Cli;

/// Writes completions for `shell`.
pub fn completions(shell: Shell, out: &mut dyn Write) {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "vfio-migrate", out);
}

/// The man page (roff).
pub fn man_page() -> Vec<u8> {
    let mut buf = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = clap_mangen::Man::new(Cli::command()).render(&mut buf);
    buf
}

/// The file names and contents of every generated file, relative to the workspace root.
pub fn generated_files() -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for (shell, name) in [
        (Shell::Bash, "completions/vfio-migrate.bash"),
        (Shell::Zsh, "completions/_vfio-migrate"),
        (Shell::Fish, "completions/vfio-migrate.fish"),
    ] {
        let mut buf = Vec::new();
        completions(shell, &mut buf);
        files.push((name.to_string(), buf));
    }
    files.push(("docs/vfio-migrate.1".to_string(), man_page()));
    files
}
