//! The `tls*` keys of `[migration]`: whether the stream is encrypted, where each side
//! keeps its certificates, and the name the destination's certificate carries. Checks
//! across keys (a key without `tls = true`, a stream that leaves the host in the clear)
//! are in `validate`.

use std::path::{Path, PathBuf};

use crate::defaults;
use crate::diagnostic::Diagnostic;
use crate::reader::{At, Mistakes, TableReader};

/// The `tls*` keys, as `[migration]` lists them.
pub(super) const KEYS: [&str; 5] = [
    "tls",
    "tls_dir",
    "tls_dir_source",
    "tls_dir_destination",
    "tls_hostname",
];

/// The `tls*` keys as read; a directory left out is `None` (its default follows later).
pub(super) struct Tls {
    pub(super) tls: bool,
    pub(super) dir: PathBuf,
    pub(super) dir_source: Option<PathBuf>,
    pub(super) dir_destination: Option<PathBuf>,
    pub(super) hostname: Option<String>,
}

pub(super) fn read_tls(r: &TableReader<'_, '_>, m: &mut Mistakes) -> Tls {
    let tls = r.boolean(m, "tls");
    let dir = directory(r, m, "tls_dir");
    let dir_source = directory(r, m, "tls_dir_source");
    let dir_destination = directory(r, m, "tls_dir_destination");
    let hostname = r.string(m, "tls_hostname");
    if let Some(h) = &hostname {
        check_hostname(r, h, m);
    }
    Tls {
        tls: tls.map_or(defaults::migration::TLS, |t| t.value),
        dir: dir.unwrap_or_else(|| PathBuf::from(defaults::migration::TLS_DIR)),
        dir_source,
        dir_destination,
        hostname: hostname.map(|h| h.value),
    }
}

/// A certificate directory: an absolute path, since QEMU opens it relative to its own
/// working directory, which the plan cannot know.
fn directory(r: &TableReader<'_, '_>, m: &mut Mistakes, key: &str) -> Option<PathBuf> {
    let at = r.string(m, key)?;
    let hint = format!(
        "write the directory's absolute path on that host, e.g. `{key} = \"{}\"`",
        defaults::migration::TLS_DIR
    );
    if at.value.is_empty() {
        m.push(Diagnostic::new(r.key_path(key), at.span, "must not be empty").hint(hint));
        return None;
    }
    if !Path::new(&at.value).is_absolute() {
        m.push(
            Diagnostic::new(
                r.key_path(key),
                at.span,
                "must be an absolute path: QEMU would look for it relative to its own working directory",
            )
            .hint(hint),
        );
        return None;
    }
    Some(PathBuf::from(at.value))
}

/// A host name or IP address, as QEMU checks the destination's certificate against it.
/// An empty one would make QEMU fall back to the URI's host without saying so.
fn check_hostname(r: &TableReader<'_, '_>, at: &At<String>, m: &mut Mistakes) {
    let hint = "write the name the destination's certificate carries (its subjectAltName), e.g. `tls_hostname = \"dst-01.example\"`";
    let name_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':');
    let problem = if at.value.is_empty() {
        Some("must not be empty")
    } else if !at.value.chars().all(name_char) {
        Some("is not a host name or IP address")
    } else {
        None
    };
    if let Some(problem) = problem {
        m.push(Diagnostic::new(r.key_path("tls_hostname"), at.span.clone(), problem).hint(hint));
    }
}
