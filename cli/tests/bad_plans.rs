//! Every malformed plan in `tests/bad_plans/` is refused the same careful way by the real
//! binary: exit 2, file, line and column where the file has them, the key, our own
//! words, no panic, a bounded stderr without raw control characters, no secret shown;
//! and with `--output json` one JSON object whose `errors` are not empty.
//!
//! Each plan states what it expects on its first line:
//! `# expect: key=KEY line=LINE says="WORDS"` (`-` for no key, or for no line), and
//! optionally `never="TEXT"`, something the output must not contain (a password). Files
//! that cannot hold such a line (an empty file, UTF-16) are listed in
//! [`WITHOUT_MANIFEST`]. A plan above the size limit, a directory and a plan with a
//! 900 kB line are made by the tests rather than committed.

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use serde_json::Value;

/// The most a refusal may write to stderr.
const MAX_STDERR: usize = 64 * 1024;

/// What one bad plan must produce.
#[derive(Debug, Clone)]
struct Expect {
    key: Option<String>,
    line: Option<usize>,
    says: String,
    never: Option<String>,
}

/// Files whose first line cannot state what they expect.
const WITHOUT_MANIFEST: &[(&str, usize, &str)] = &[
    ("file-empty.toml", 1, "the plan is empty"),
    (
        "encoding-utf16-with-byte-order-mark.toml",
        1,
        "starts with a UTF-16 byte-order mark",
    ),
];

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad_plans")
}

/// The value of `name=` in a manifest line: a bare word, or a quoted string in which
/// `\"` is a quote and any other backslash is itself.
fn field(line: &str, name: &str) -> Option<String> {
    let start = line.find(&format!(" {name}="))? + name.len() + 2;
    let rest = &line[start..];
    if let Some(quoted) = rest.strip_prefix('"') {
        let mut value = String::new();
        let mut chars = quoted.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next()? {
                    '"' => value.push('"'),
                    other => {
                        value.push('\\');
                        value.push(other);
                    }
                },
                '"' => return Some(value),
                c => value.push(c),
            }
        }
        None
    } else {
        Some(rest.split_whitespace().next()?.to_string())
    }
}

/// What the file at `path` expects.
fn expectation(path: &Path) -> Expect {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    if let Some((_, line, says)) = WITHOUT_MANIFEST.iter().find(|(n, ..)| *n == name) {
        return Expect {
            key: None,
            line: Some(*line),
            says: says.to_string(),
            never: None,
        };
    }
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{name}: {e}"));
    let first = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
    let first = String::from_utf8_lossy(first);
    let Some(manifest) = first.strip_prefix("# expect:") else {
        panic!("{name}: no `# expect:` line and not in WITHOUT_MANIFEST");
    };
    let manifest = format!(" {}", manifest.trim());
    let word = |name: &str| field(&manifest, name).filter(|v| v != "-");
    Expect {
        key: word("key"),
        line: word("line").map(|l| l.parse().unwrap_or_else(|_| panic!("{name}: line {l}"))),
        says: word("says").unwrap_or_else(|| panic!("{name}: no says=")),
        never: word("never"),
    }
}

fn run(args: &[&str], path: &Path) -> Output {
    Command::cargo_bin("vfio-migrate")
        .expect("binary")
        .args(args)
        .arg(path)
        .timeout(std::time::Duration::from_secs(30))
        .output()
        .expect("run vfio-migrate")
}

/// The error line of a human refusal that should name the mistake.
fn error_line(stderr: &str, path: &str, expect: &Expect) -> Result<String, String> {
    let at = expect.line.map(|l| format!("error: {path}:{l}:"));
    let found = stderr.lines().find(|l| {
        let placed = match &at {
            Some(at) => l.strip_prefix(at.as_str()).is_some_and(|rest| {
                let digits = rest.chars().take_while(char::is_ascii_digit).count();
                digits > 0 && rest[digits..].starts_with(": ")
            }),
            None => l.starts_with("error: "),
        };
        let keyed = expect
            .key
            .as_ref()
            .is_none_or(|k| l.contains(&format!(": {k}: ")));
        placed && keyed
    });
    found
        .map(str::to_string)
        .ok_or_else(|| format!("no error line at {at:?} for key {:?}", expect.key))
}

/// Everything wrong with how the binary refuses the plan at `path`.
fn problems(path: &Path, expect: &Expect) -> Vec<String> {
    let shown = path.display().to_string();
    let mut wrong = Vec::new();

    let out = run(&["validate"], path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() != Some(2) {
        wrong.push(format!("validate exits {:?}, not 2", out.status.code()));
    }
    if stderr.len() > MAX_STDERR {
        wrong.push(format!("stderr is {} bytes", stderr.len()));
    }
    if stderr.contains("panicked") {
        wrong.push("a panic".into());
    }
    if let Some(c) = stderr.chars().find(|c| c.is_control() && *c != '\n') {
        wrong.push(format!("{c:?} printed raw"));
    }
    match error_line(&stderr, &shown, expect) {
        Ok(line) if !line.contains(&expect.says) => {
            wrong.push(format!("{line:?} does not say {:?}", expect.says))
        }
        Ok(_) => {}
        Err(e) => wrong.push(e),
    }
    if let Some(never) = &expect.never {
        if stderr.contains(never.as_str()) {
            wrong.push(format!("stderr shows {never:?}"));
        }
    }
    if !wrong.is_empty() {
        wrong.push(format!("stderr was:\n{}", &stderr[..stderr.len().min(4000)]));
    }

    let out = run(&[], path);
    if out.status.code() != Some(2) || out.stderr.len() > MAX_STDERR {
        wrong.push(format!(
            "`vfio-migrate PLAN` exits {:?} with {} bytes of stderr",
            out.status.code(),
            out.stderr.len()
        ));
    }

    let out = run(&["--output", "json", "validate"], path);
    if out.status.code() != Some(2) {
        wrong.push(format!("--output json exits {:?}, not 2", out.status.code()));
    }
    let values: Result<Vec<Value>, _> = serde_json::Deserializer::from_slice(&out.stdout)
        .into_iter::<Value>()
        .collect();
    match values.as_deref() {
        Ok([object @ Value::Object(_)]) => {
            let errors = object["errors"].as_array().cloned().unwrap_or_default();
            if errors.is_empty() {
                wrong.push(format!("JSON errors is empty: {object}"));
            }
            let wanted_line = expect.line.map(Value::from).unwrap_or(Value::Null);
            let matches = errors.iter().any(|e| {
                let key = e["key"].as_str().unwrap_or_default();
                expect.key.as_deref().unwrap_or_default() == key && e["line"] == wanted_line
            });
            if !matches {
                wrong.push(format!(
                    "no JSON error with key {:?} at line {wanted_line}: {object}",
                    expect.key
                ));
            }
        }
        other => wrong.push(format!("stdout is not one JSON object: {other:?}")),
    }
    if let Some(never) = &expect.never {
        if String::from_utf8_lossy(&out.stdout).contains(never.as_str()) {
            wrong.push(format!("JSON shows {never:?}"));
        }
    }
    wrong
}

fn assert_refused_well(path: &Path, expect: &Expect) {
    let wrong = problems(path, expect);
    assert!(wrong.is_empty(), "{}:\n{}", path.display(), wrong.join("\n"));
}

#[test]
fn every_bad_plan_is_refused_with_exit_2_where_and_why() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus())
        .expect("tests/bad_plans")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 60, "only {} bad plans", files.len());
    let failures: Vec<String> = files
        .iter()
        .filter_map(|path| {
            let wrong = problems(path, &expectation(path));
            (!wrong.is_empty()).then(|| format!("{}:\n  {}", path.display(), wrong.join("\n  ")))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} bad plans are not refused as they should be:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n\n")
    );
}

#[test]
fn a_plan_above_one_mebibyte_is_refused_unread() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("huge.toml");
    let line = format!("[vm]\nname = \"{}\"\n", "a".repeat(2 * 1024 * 1024));
    std::fs::write(&path, line).expect("write");
    assert_refused_well(
        &path,
        &Expect {
            key: None,
            line: None,
            says: "a plan may be at most 1 MiB".into(),
            never: None,
        },
    );
}

#[test]
fn a_directory_is_not_a_plan() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("plan.toml");
    std::fs::create_dir(&path).expect("mkdir");
    assert_refused_well(
        &path,
        &Expect {
            key: None,
            line: None,
            says: "is a directory, not a plan file".into(),
            never: None,
        },
    );
}

#[test]
fn a_mistake_on_a_900_kilobyte_line_shows_a_window_of_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("wide.toml");
    let text = std::fs::read_to_string(corpus().join("control-nul-in-vm-name.toml")).expect("read");
    let wide = text.replacen("db\\u0000-01", &format!("{}\\u0000", "a".repeat(900_000)), 1);
    std::fs::write(&path, wide).expect("write");
    assert_refused_well(
        &path,
        &Expect {
            key: Some("vm.name".into()),
            line: Some(3),
            says: "contains the control character \"\\u0000\" at character 900001".into(),
            never: None,
        },
    );
}
