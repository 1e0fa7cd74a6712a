//! `[notify]` in a plan: where the run's events go as webhooks, the name of the variable
//! holding the signing key (never the key), a private CA, and how long deliveries may
//! take. Each mistake is refused at its key, and a value that may be a key pasted by
//! mistake is never quoted back.

use std::path::Path;
use std::time::Duration;

use plans::{Notify, Plan, PlanErrors};

mod common;
use common::BASE;

fn load(notify: &str) -> Result<Plan, PlanErrors> {
    plans::load("plan.toml", &format!("{BASE}\n[notify]\n{notify}\n"))
}

fn notify(keys: &str) -> Notify {
    match load(keys) {
        Ok(plan) => plan.notify.expect("[notify] read"),
        Err(e) => panic!("{e}"),
    }
}

/// Each mistake as (line, column, key, message), and the whole rendered error.
fn mistakes(notify: &str) -> (Vec<(usize, usize, String, String)>, String) {
    match load(notify) {
        Ok(_) => panic!("accepted:\n{notify}"),
        Err(e) => {
            let found = e
                .located()
                .into_iter()
                .map(|d| {
                    let at = (d.line.unwrap_or(0), d.column.unwrap_or(0));
                    (at.0, at.1, d.diagnostic.key, d.diagnostic.message)
                })
                .collect();
            (found, e.to_string())
        }
    }
}

/// The line of `[notify]`'s first key in these plans.
const FIRST: usize = 12;

const URL: &str = "urls = [\"https://hooks.example/vfio\"]";

#[test]
fn a_plan_without_notify_tells_nobody() {
    let plan = plans::load("plan.toml", BASE).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plan.notify, None);
}

#[test]
fn urls_alone_are_posted_to_unsigned_with_the_default_timeout_and_retry() {
    let n = notify(URL);
    assert_eq!(n.urls, ["https://hooks.example/vfio"]);
    assert_eq!(n.secret_env, None);
    assert_eq!(n.ca_file, None);
    assert_eq!(n.timeout, plans::defaults::notify::TIMEOUT);
    assert_eq!(n.retry_for, plans::defaults::notify::RETRY_FOR);
    assert_eq!(n, Notify::to(vec!["https://hooks.example/vfio".into()]));
}

#[test]
fn every_key_reads_as_written() {
    let n = notify(
        "urls = [\"http://127.0.0.1:8080/hook\", \"https://hooks.example/vfio\"]\n\
         secret_env = \"VFIO_MIGRATE_WEBHOOK_KEY\"\n\
         ca_file = \"/etc/pki/webhooks/ca.pem\"\n\
         timeout = \"2s\"\n\
         retry_for = \"0s\"",
    );
    assert_eq!(n.urls.len(), 2);
    assert_eq!(n.secret_env.as_deref(), Some("VFIO_MIGRATE_WEBHOOK_KEY"));
    assert_eq!(n.ca_file.as_deref(), Some(Path::new("/etc/pki/webhooks/ca.pem")));
    assert_eq!(n.timeout, Duration::from_secs(2));
    assert_eq!(n.retry_for, Duration::ZERO, "zero: one try, none again");
}

#[test]
fn a_url_that_is_not_http_or_https_is_refused_at_its_item() {
    let (found, _) = mistakes(
        "urls = [\"https://ok.example/\", \"ftp://files.example/\", \"hooks.example/vfio\", \"https:///x\"]",
    );
    let at: Vec<_> = found.iter().map(|f| (f.0, f.1, f.2.as_str())).collect();
    assert_eq!(
        at,
        [
            (FIRST, 32, "notify.urls[1]"),
            (FIRST, 56, "notify.urls[2]"),
            (FIRST, 78, "notify.urls[3]"),
        ]
    );
    assert_eq!(
        found[0].3,
        "\"ftp://files.example/\" is not an http:// or https:// URL"
    );
    assert_eq!(found[2].3, "\"https:///x\" names no host");
}

#[test]
fn a_url_with_a_space_or_listed_twice_is_refused() {
    let (found, _) =
        mistakes("urls = [\"https://a.example/x y\", \"https://b.example/\", \"https://b.example/\"]");
    let messages: Vec<_> = found.iter().map(|f| (f.2.as_str(), f.3.as_str())).collect();
    assert_eq!(
        messages,
        [
            (
                "notify.urls[0]",
                "\"https://a.example/x y\" contains a space or a control character"
            ),
            ("notify.urls[2]", "\"https://b.example/\" is listed twice"),
        ]
    );
}

#[test]
fn a_password_in_a_url_is_masked_in_messages() {
    let (found, rendered) = mistakes("urls = [\"ftp://user:hunter2@files.example/\"]");
    assert_eq!(found.len(), 1);
    assert!(!rendered.contains("hunter2"), "{rendered}");
}

#[test]
fn a_url_the_http_client_would_refuse_is_refused_in_the_plan() {
    let (found, _) = mistakes("urls = [\"http://hooks.example:99999/\", \"http://hooks^example/\"]");
    let messages: Vec<_> = found.iter().map(|f| f.3.as_str()).collect();
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert!(
        messages[0].ends_with("has a port that is not a number up to 65535"),
        "{messages:?}"
    );
    assert!(messages[1].contains("is not a valid URL"), "{messages:?}");
}

#[test]
fn notify_without_urls_or_with_none_is_refused() {
    let (found, _) = mistakes("timeout = \"1s\"");
    assert_eq!(found[0].2, "notify.urls");
    assert_eq!(found[0].3, "missing required key `urls`");
    let (found, _) = mistakes("urls = []");
    assert_eq!((found[0].0, found[0].2.as_str()), (FIRST, "notify.urls"));
    assert_eq!(found[0].3, "must list at least one URL");
}

#[test]
fn a_secret_env_that_is_no_variable_name_is_refused_without_quoting_it() {
    let key = "s3cr3t-k3y/+=";
    let (found, rendered) = mistakes(&format!("{URL}\nsecret_env = \"{key}\""));
    assert_eq!(found.len(), 1);
    assert_eq!(
        (found[0].0, found[0].2.as_str()),
        (FIRST + 1, "notify.secret_env")
    );
    assert_eq!(
        found[0].3,
        "is not the name of an environment variable (letters, digits and `_`)"
    );
    assert!(
        !rendered.contains(key),
        "the value may be the key itself:\n{rendered}"
    );
    let (found, _) = mistakes(&format!("{URL}\nsecret_env = \"\""));
    assert_eq!(found[0].3, "must not be empty");
    let (found, _) = mistakes(&format!("{URL}\nsecret_env = \"1KEY\""));
    assert_eq!(
        found[0].2, "notify.secret_env",
        "a name does not start with a digit"
    );
}

#[test]
fn a_relative_ca_file_is_refused() {
    let (found, _) = mistakes(&format!("{URL}\nca_file = \"ca.pem\""));
    assert_eq!(found.len(), 1);
    assert_eq!(
        (found[0].2.as_str(), found[0].3.as_str()),
        ("notify.ca_file", "must be an absolute path")
    );
}

#[test]
fn timeout_and_retry_for_are_bounded() {
    let (found, _) = mistakes(&format!("{URL}\ntimeout = \"2m\"\nretry_for = \"11m\""));
    let messages: Vec<_> = found.iter().map(|f| (f.2.as_str(), f.3.as_str())).collect();
    assert_eq!(
        messages,
        [
            ("notify.timeout", "is longer than 1m"),
            ("notify.retry_for", "is longer than 10m"),
        ]
    );
    let (found, _) = mistakes(&format!("{URL}\ntimeout = \"0s\""));
    assert_eq!(found[0].3, "must be greater than zero");
}

#[test]
fn a_misspelt_key_is_refused_with_the_nearest_one() {
    let (found, rendered) = mistakes(&format!("{URL}\nsecret_evn = \"KEY\""));
    assert_eq!(found[0].2, "notify.secret_evn");
    assert!(rendered.contains("did you mean `secret_env`?"), "{rendered}");
}

#[test]
fn the_plans_echo_names_the_variable_and_carries_the_defaults() {
    let plan = load(&format!("{URL}\nsecret_env = \"HOOK_KEY\"")).unwrap_or_else(|e| panic!("{e}"));
    let echo = serde_json::to_value(&plan).expect("a plan serializes");
    assert_eq!(
        echo["notify"],
        serde_json::json!({
            "urls": ["https://hooks.example/vfio"],
            "secret_env": "HOOK_KEY",
            "ca_file": null,
            "timeout": "5s",
            "retry_for": "30s",
        })
    );
}
