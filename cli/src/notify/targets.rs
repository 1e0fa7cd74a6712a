//! Where a run's webhooks go and how, resolved once before the run starts: the plan's
//! `[notify]` with the command line's `--notify` and `--notify-secret-env` on top, the
//! signing key read from its variable, the private CA read from its file.
//!
//! Everything that can be wrong with them is found here, before the migration starts:
//! a run never learns half-way that its webhooks cannot be signed.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Duration;

use engine::ExitStatus;
use plans::Notify;
use reqwest::{Certificate, Url};

use super::sign::Key;

/// The webhooks of a run, ready to deliver.
#[derive(Debug, Clone)]
pub struct Targets {
    /// Where each event is POSTed, in the plan's order, command-line URLs after.
    pub urls: Vec<Url>,
    pub(crate) key: Option<Key>,
    pub(crate) ca: Vec<Certificate>,
    /// How long one request may take.
    pub timeout: Duration,
    /// How long a failed delivery is tried again.
    pub retry_for: Duration,
}

/// Why a run's webhooks cannot be delivered as asked.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The signing key's variable is not set.
    #[error("notify.secret_env: the environment variable {name} is not set; export the webhook signing key in it, or leave `secret_env` out to send unsigned")]
    SecretUnset {
        /// The variable.
        name: String,
    },
    /// The signing key's variable is empty.
    #[error(
        "notify.secret_env: the environment variable {name} is empty; a webhook signing key must not be"
    )]
    SecretEmpty {
        /// The variable.
        name: String,
    },
    /// The signing key was refused.
    #[error("notify.secret_env: the key in {name} cannot be used for HMAC-SHA256")]
    SecretRefused {
        /// The variable.
        name: String,
    },
    /// The CA file cannot be read.
    #[error("notify.ca_file: cannot read {}", path.display())]
    CaUnreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The CA file holds no PEM certificate.
    #[error("notify.ca_file: {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display())]
    CaNotPem {
        /// The file.
        path: PathBuf,
    },
    /// A URL the plan's check let through and the HTTP client refuses.
    #[error("notify.urls: {url} is not a URL the HTTP client takes")]
    Url {
        /// The URL, any password masked.
        url: String,
        /// Why.
        #[source]
        source: url::ParseError,
    },
    /// The HTTP client cannot be set up (its TLS configuration, the system's CAs).
    #[error("cannot set up the webhooks' HTTP client")]
    Client {
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// The delivery thread cannot be started.
    #[error("cannot start the webhooks' delivery thread")]
    Thread {
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl NotifyError {
    /// The exit code a run that stops on this error ends with: nothing was changed.
    /// A URL is the plan's mistake (2); a key, a CA file or a client this host does not
    /// have is the host not being ready (3), like a lock another run holds.
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            NotifyError::Url { .. } => ExitStatus::InvalidPlan,
            _ => ExitStatus::NotReady,
        }
    }
}

impl Targets {
    /// Resolves the plan's (or the command line's) `[notify]`, reading the key from the
    /// process's environment.
    pub fn resolve(notify: &Notify) -> Result<Targets, NotifyError> {
        Targets::resolve_with(notify, |name| std::env::var_os(name))
    }

    /// Resolves `notify` with `env` as the environment.
    pub fn resolve_with(
        notify: &Notify,
        env: impl Fn(&str) -> Option<OsString>,
    ) -> Result<Targets, NotifyError> {
        let urls = notify
            .urls
            .iter()
            .map(|u| {
                Url::parse(u).map_err(|source| NotifyError::Url {
                    url: plans::redact(u).into_owned(),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let key = match &notify.secret_env {
            None => None,
            Some(name) => Some(read_key(name, &env)?),
        };
        let ca = match &notify.ca_file {
            None => Vec::new(),
            Some(path) => read_ca(path)?,
        };
        Ok(Targets {
            urls,
            key,
            ca,
            timeout: notify.timeout,
            retry_for: notify.retry_for,
        })
    }

    /// Whether requests are signed.
    pub fn signed(&self) -> bool {
        self.key.is_some()
    }
}

fn read_key(name: &str, env: &impl Fn(&str) -> Option<OsString>) -> Result<Key, NotifyError> {
    let name = name.to_string();
    let value = env(&name).ok_or_else(|| NotifyError::SecretUnset { name: name.clone() })?;
    if value.is_empty() {
        return Err(NotifyError::SecretEmpty { name });
    }
    Key::new(value.as_bytes()).map_err(|_| NotifyError::SecretRefused { name })
}

fn read_ca(path: &std::path::Path) -> Result<Vec<Certificate>, NotifyError> {
    let pem = std::fs::read(path).map_err(|source| NotifyError::CaUnreadable {
        path: path.to_path_buf(),
        source,
    })?;
    let not_pem = || NotifyError::CaNotPem {
        path: path.to_path_buf(),
    };
    let certs = Certificate::from_pem_bundle(&pem).map_err(|_| not_pem())?;
    match certs.is_empty() {
        true => Err(not_pem()),
        false => Ok(certs),
    }
}

/// The plan's `[notify]` with the command line's on top: `urls` are added after the
/// plan's (each once), `secret_env` replaces the plan's. Without any URL there are no
/// webhooks, whatever else was given.
pub fn with_command_line(plan: Option<Notify>, urls: &[String], secret_env: Option<&str>) -> Option<Notify> {
    let mut notify = match plan {
        Some(notify) => notify,
        None if urls.is_empty() => return None,
        None => Notify::to(Vec::new()),
    };
    for url in urls {
        if !notify.urls.contains(url) {
            notify.urls.push(url.clone());
        }
    }
    if let Some(name) = secret_env {
        notify.secret_env = Some(name.to_string());
    }
    Some(notify)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notify(secret_env: Option<&str>) -> Notify {
        Notify {
            secret_env: secret_env.map(str::to_string),
            ..Notify::to(vec!["http://127.0.0.1:9/hook".into()])
        }
    }

    fn env_with(value: &'static str) -> impl Fn(&str) -> Option<OsString> {
        move |name| (name == "HOOK_KEY").then(|| OsString::from(value))
    }

    #[test]
    fn an_unset_or_empty_key_variable_is_named_and_never_quoted() {
        let err = Targets::resolve_with(&notify(Some("HOOK_KEY")), |_| None).expect_err("unset");
        assert!(matches!(&err, NotifyError::SecretUnset { name } if name == "HOOK_KEY"));
        assert_eq!(err.exit_status(), ExitStatus::NotReady);
        let err = Targets::resolve_with(&notify(Some("HOOK_KEY")), env_with("")).expect_err("empty");
        assert!(err.to_string().contains("HOOK_KEY is empty"), "{err}");
    }

    #[test]
    fn a_set_key_signs_and_no_secret_env_means_unsigned() {
        let targets = Targets::resolve_with(&notify(Some("HOOK_KEY")), env_with("k")).expect("resolved");
        assert!(targets.signed());
        assert!(!format!("{targets:?}").contains("\"k\""));
        let targets = Targets::resolve_with(&notify(None), env_with("k")).expect("resolved");
        assert!(!targets.signed());
    }

    #[test]
    fn a_ca_file_that_is_missing_or_holds_no_certificate_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ca.pem");
        let with_ca = Notify {
            ca_file: Some(path.clone()),
            ..notify(None)
        };
        let err = Targets::resolve(&with_ca).expect_err("missing");
        assert!(matches!(err, NotifyError::CaUnreadable { .. }), "{err}");
        std::fs::write(&path, "not a certificate\n").expect("write");
        let err = Targets::resolve(&with_ca).expect_err("not PEM");
        assert!(matches!(err, NotifyError::CaNotPem { .. }), "{err}");
    }

    #[test]
    fn the_command_line_adds_urls_and_replaces_the_key_variable() {
        assert_eq!(with_command_line(None, &[], Some("K")), None);
        let only = with_command_line(None, &["http://a/".into()], None).expect("webhooks");
        assert_eq!(only, Notify::to(vec!["http://a/".into()]));
        let plan = Notify {
            secret_env: Some("PLAN_KEY".into()),
            ..Notify::to(vec!["http://a/".into()])
        };
        let both = with_command_line(
            Some(plan),
            &["http://a/".into(), "http://b/".into()],
            Some("CLI_KEY"),
        )
        .expect("webhooks");
        assert_eq!(both.urls, ["http://a/", "http://b/"]);
        assert_eq!(both.secret_env.as_deref(), Some("CLI_KEY"));
    }
}
