//! `[notify]`: where the run's events go as webhooks, how requests are signed, and how
//! long a delivery may take.
//!
//! The signing key is a secret, so the plan names only the environment variable that
//! holds it; a value that is no variable's name may be the key itself, pasted by
//! mistake, and is never quoted back.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::de::{DeTable, DeValue};

use crate::defaults;
use crate::diagnostic::Diagnostic;
use crate::model::Notify;
use crate::reader::{At, Mistakes, TableReader};
use crate::text::quoted;

/// The longest `timeout`: a receiver that takes longer is not one to wait for.
const MAX_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest `retry_for`: the run's end waits this long at most for its result to be
/// delivered.
const MAX_RETRY_FOR: Duration = Duration::from_secs(600);

const KEYS: &[&str] = &["urls", "secret_env", "ca_file", "timeout", "retry_for"];

pub(super) fn read_notify(t: &DeTable<'_>, s: Range<usize>, m: &mut Mistakes) -> Option<Notify> {
    let r = TableReader::new("notify", t, s, KEYS);
    let urls = read_urls(&r, m);
    let secret_env = r.string(m, "secret_env");
    let secret_ok = secret_env.as_ref().is_none_or(|at| check_secret_env(&r, at, m));
    let ca_file = read_ca_file(&r, m);
    let timeout = bounded_duration(&r, m, "timeout", "5s", false, MAX_TIMEOUT);
    let retry_for = bounded_duration(&r, m, "retry_for", "30s", true, MAX_RETRY_FOR);
    let failed = r.failed() || !secret_ok;
    r.finish(m);
    if failed {
        return None;
    }
    Some(Notify {
        urls: urls?,
        secret_env: secret_env.map(|at| at.value),
        ca_file: ca_file?,
        timeout: timeout?.unwrap_or(defaults::notify::TIMEOUT),
        retry_for: retry_for?.unwrap_or(defaults::notify::RETRY_FOR),
    })
}

/// What is wrong with a webhook URL, if anything: it must be `http://` or `https://`
/// with a host, free of spaces and control characters, and a URL the HTTP client takes
/// (a port up to 65535, a host name of valid characters). The command line's `--notify`
/// takes URLs by the same rule.
///
/// ```
/// assert_eq!(plans::webhook_url_problem("https://hooks.example/vfio"), None);
/// assert!(plans::webhook_url_problem("ftp://hooks.example/").is_some());
/// assert!(plans::webhook_url_problem("https:///vfio").is_some());
/// assert!(plans::webhook_url_problem("http://hooks.example:99999/").is_some());
/// ```
pub fn webhook_url_problem(text: &str) -> Option<String> {
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("contains a space or a control character".into());
    }
    let web = |scheme: &str| scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https");
    let rest = match text.split_once("://") {
        Some((scheme, rest)) if web(scheme) => rest,
        _ => return Some("is not an http:// or https:// URL".into()),
    };
    // The URL standard reads `https:///x` as `https://x/`: a host left out is a mistake
    // here, not a path to take for one.
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    if authority
        .rsplit_once('@')
        .map_or(authority, |(_, h)| h)
        .is_empty()
    {
        return Some("names no host".into());
    }
    match url::Url::parse(text) {
        Ok(_) => None,
        Err(url::ParseError::InvalidPort) => Some("has a port that is not a number up to 65535".into()),
        Err(e) => Some(format!("is not a valid URL: {e}")),
    }
}

/// `urls`: required, at least one, each a webhook URL and each once.
fn read_urls(r: &TableReader<'_, '_>, m: &mut Mistakes) -> Option<Vec<String>> {
    const HINT: &str = "list where the events go, e.g. `urls = [\"https://hooks.example/vfio-migrate\"]`";
    if !r.has("urls") {
        r.missing(m, "urls", HINT);
        return None;
    }
    let (items, span) = r.array(m, "urls")?;
    if items.is_empty() {
        m.push(Diagnostic::new(r.key_path("urls"), span, "must list at least one URL").hint(HINT));
        return None;
    }
    let mut urls: Vec<String> = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let key = format!("{}[{i}]", r.key_path("urls"));
        let problem = match item.get_ref() {
            DeValue::String(url) if urls.iter().any(|u| u == url.as_ref()) => {
                Some(format!("{} is listed twice", quoted(url)))
            }
            DeValue::String(url) => match webhook_url_problem(url) {
                None => {
                    urls.push(url.to_string());
                    None
                }
                Some(problem) => Some(format!("{} {problem}", quoted(url))),
            },
            _ => Some("expected a string".to_string()),
        };
        if let Some(problem) = problem {
            m.push(Diagnostic::new(key, item.span(), problem).hint(
                "write each URL once, as `http://HOST/PATH` or `https://HOST/PATH`; for HTTPS with a private CA, add `ca_file`",
            ));
            ok = false;
        }
    }
    ok.then_some(urls)
}

/// `secret_env` names an environment variable: letters, digits and `_`, not starting
/// with a digit. Anything else may be the key itself, so the value is not quoted.
fn check_secret_env(r: &TableReader<'_, '_>, at: &At<String>, m: &mut Mistakes) -> bool {
    let name = &at.value;
    if is_variable_name(name) {
        return true;
    }
    let problem = match name.is_empty() {
        true => "must not be empty",
        false => "is not the name of an environment variable (letters, digits and `_`)",
    };
    m.push(
        Diagnostic::new(r.key_path("secret_env"), at.span.clone(), problem).hint(
            "write the NAME of the variable that holds the signing key, e.g. `secret_env = \"VFIO_MIGRATE_WEBHOOK_KEY\"`; the key itself never goes in a plan",
        ),
    );
    false
}

/// Whether `name` can name an environment variable, as `secret_env` and
/// `--notify-secret-env` must: letters, digits and `_`, not starting with a digit.
pub fn is_variable_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `ca_file`: an absolute path, read by the tool when the run starts. `None` inside
/// when left out; `None` outside on a mistake.
fn read_ca_file(r: &TableReader<'_, '_>, m: &mut Mistakes) -> Option<Option<PathBuf>> {
    let Some(at) = r.string(m, "ca_file") else {
        return Some(None);
    };
    if at.value.is_empty() || !Path::new(&at.value).is_absolute() {
        let problem = match at.value.is_empty() {
            true => "must not be empty",
            false => "must be an absolute path",
        };
        m.push(
            Diagnostic::new(r.key_path("ca_file"), at.span, problem)
                .hint("write the PEM file's absolute path, e.g. `ca_file = \"/etc/pki/webhooks/ca.pem\"`"),
        );
        return None;
    }
    Some(Some(PathBuf::from(at.value)))
}

/// A duration no longer than `max`: `None` inside when left out, `None` outside on a
/// mistake.
fn bounded_duration(
    r: &TableReader<'_, '_>,
    m: &mut Mistakes,
    key: &str,
    example: &str,
    allow_zero: bool,
    max: Duration,
) -> Option<Option<Duration>> {
    if !r.has(key) {
        return Some(None);
    }
    let at = r.duration(m, key, example, allow_zero)?;
    if at.value > max {
        m.push(
            Diagnostic::new(
                r.key_path(key),
                at.span,
                format!("is longer than {}", humantime::format_duration(max)),
            )
            .hint(format!("write e.g. `{key} = \"{example}\"`")),
        );
        return None;
    }
    Some(Some(at.value))
}
