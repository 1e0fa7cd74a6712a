//! Hostile and odd monitors: what the QMP driver does when a side's monitor never
//! greets, talks garbage, cuts a reply short, sends one 100 MB line, answers with the
//! wrong types, refuses every command, answers too late, or floods unknown events.
//!
//! For each, the specification is the same: a clear error naming the side (and its
//! socket) within the timeout, never a panic or a hang, and a peak resident memory of
//! the whole process under 64 MiB. Each case runs in a child process (this binary
//! again), which aborts on any panic, even one in a spawned task; the parent measures
//! the child's peak memory with `wait4`, so no other test's buffers count.

mod fake;

use std::time::{Duration, Instant};

use backends::qemu::QmpDriver;
use engine::driver::{Driver, DriverError, RunState, Side};
use fake::child;
use fake::{fake, write_long_line, Fake, Imitation, Peer, GREETING};
use plans::QmpAddress;
use serde_json::json;

/// The ignored test the child processes run.
const ENTRY: &str = "child_entry";
/// The most memory a hostile monitor may cost the whole process.
const BUDGET_KIB: u64 = 64 * 1024;
/// The timeout the driver gets in these cases (10 s by default).
const TIMEOUT: Duration = Duration::from_secs(1);
/// Slack for scheduling on a loaded machine, on top of the timeout.
const SLACK: Duration = Duration::from_secs(1);

/// Runs `case` in a child and checks what every case must hold.
fn hostile(case: &str) {
    let run = child::run(ENTRY, case);
    println!(
        "{case}: peak RSS {} KiB, {:?}\n{}",
        run.peak_rss_kib, run.elapsed, run.output
    );
    assert!(run.passed, "case {case} failed:\n{}", run.output);
    assert!(
        run.peak_rss_kib < BUDGET_KIB,
        "case {case}: peak RSS {} KiB, over {BUDGET_KIB} KiB",
        run.peak_rss_kib
    );
}

#[test]
fn hostile_a_monitor_that_never_greets() {
    hostile("never_greets");
}

#[test]
fn hostile_a_monitor_that_talks_garbage() {
    hostile("garbage");
}

#[test]
fn hostile_a_reply_cut_short() {
    hostile("truncated");
}

#[test]
fn hostile_a_single_100_mb_line() {
    hostile("huge_line");
}

#[test]
fn hostile_wrong_types_in_replies() {
    hostile("wrong_types");
}

#[test]
fn hostile_an_error_for_every_command() {
    hostile("refuses_everything");
}

#[test]
fn hostile_answers_slower_than_the_timeout() {
    hostile("slow");
}

#[test]
fn hostile_a_flood_of_unknown_events() {
    hostile("event_flood");
}

#[test]
fn hostile_a_flood_of_unknown_events_each_near_the_line_limit() {
    hostile("large_event_flood");
}

#[test]
#[ignore = "the entry point of the child processes the hostile_* tests start"]
fn child_entry() {
    let case = std::env::var(child::CASE).expect("started by a hostile_* test");
    // A panic anywhere, in a spawned task too (tokio would only log it), fails the case.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        std::process::abort();
    }));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        match case.as_str() {
            "never_greets" => never_greets().await,
            "garbage" => garbage().await,
            "truncated" => truncated().await,
            "huge_line" => huge_line().await,
            "wrong_types" => wrong_types().await,
            "refuses_everything" => refuses_everything().await,
            "slow" => slow().await,
            "event_flood" => event_flood(200).await,
            "large_event_flood" => event_flood(backends::qmp::MAX_LINE_BYTES - 1024).await,
            other => panic!("no case {other}"),
        }
    });
}

/// A driver between `source` and `destination` with the cases' timeout.
fn driver(source: &Fake, destination: &Fake) -> QmpDriver {
    QmpDriver::new(
        &QmpAddress::Unix(source.path()),
        &QmpAddress::Unix(destination.path()),
    )
    .with_timeout(TIMEOUT)
}

/// What preflight does first: connect, then read both sides. The error, and how long
/// it took to come.
async fn preflight(driver: &mut QmpDriver) -> (DriverError, Duration) {
    let started = Instant::now();
    let result = async {
        driver.connect().await?;
        driver.inspect().await
    }
    .await;
    let error = result.expect_err("a hostile monitor is an error");
    (error, started.elapsed())
}

/// The error names the side and its socket, and came within `bound`.
fn assert_named(error: &DriverError, side: Side, fake: &Fake, took: Duration, bound: Duration) {
    assert_eq!(error.side, side, "{error}");
    let name = format!("{side} (unix:{}): ", fake.path().display());
    assert!(error.message.starts_with(&name), "{}", error.message);
    assert!(took <= bound, "took {took:?}, more than {bound:?}: {error}");
    assert!(
        !error.message.chars().any(char::is_control),
        "no control characters reach a terminal: {:?}",
        error.message
    );
    println!("error after {took:?}: {}", error.message);
}

/// A peer that keeps sending lines until the client hangs up.
async fn keep_sending(mut peer: Peer, line: impl Fn(u64) -> String) {
    let mut n = 0;
    while peer.try_send(&line(n)).await {
        n += 1;
    }
}

async fn never_greets() {
    let (source, _) = fake::qemu_like(Imitation::source());
    let destination = fake(|peer| peer.idle());
    let (error, took) = preflight(&mut driver(&source, &destination)).await;
    assert_named(&error, Side::Destination, &destination, took, TIMEOUT + SLACK);
    assert!(
        error
            .message
            .ends_with("no greeting within 1s: another client may hold this monitor (QEMU serves one QMP client at a time), or QEMU is not answering"),
        "{}",
        error.message
    );
    assert!(!error.disconnected);
}

async fn garbage() {
    let source = fake(|mut peer| async move {
        if peer.try_send(GREETING).await {
            keep_sending(peer, |n| format!("\u{1b}[31m garbage {n} }}{{ \u{0}")).await;
        }
    });
    let (destination, _) = fake::qemu_like(Imitation::destination());
    let (error, took) = preflight(&mut driver(&source, &destination)).await;
    assert_named(&error, Side::Source, &source, took, TIMEOUT + SLACK);
    assert!(
        error
            .message
            .contains(": qmp_capabilities: not answering within 1s; meanwhile it sent "),
        "{}",
        error.message
    );
    assert!(error
        .message
        .contains("lines that are not replies, the last: not JSON"));
}

async fn truncated() {
    let (source, _) = fake::qemu_like(Imitation::source().answering(
        "query-status",
        fake::Answer::Line(|_| r#"{"return": {"status": "runn"#.to_owned()),
    ));
    let (destination, _) = fake::qemu_like(Imitation::destination());
    let (error, took) = preflight(&mut driver(&source, &destination)).await;
    assert_named(&error, Side::Source, &source, took, TIMEOUT + SLACK);
    assert!(
        error.message.ends_with(
            ": query-status: not answering within 1s; meanwhile it sent 1 line that is not a reply: \
             not JSON (EOF while parsing a string at line 1 column 27): `{\"return\": {\"status\": \"runn`"
        ),
        "{}",
        error.message
    );
}

async fn huge_line() {
    let source = fake(|mut peer| async move {
        peer.handshake().await;
        if peer.recv().await.is_some() {
            write_long_line(&mut peer, 100 * 1024 * 1024).await;
        }
        peer.idle().await;
    });
    let (destination, _) = fake::qemu_like(Imitation::destination());
    let mut driver = driver(&source, &destination);
    let (error, took) = preflight(&mut driver).await;
    assert_named(&error, Side::Source, &source, took, TIMEOUT + SLACK);
    assert!(
        error
            .message
            .ends_with(": query-status: protocol error: line longer than 4194304 bytes (connection closed)"),
        "{}",
        error.message
    );
    assert!(error.disconnected, "the client closed the connection");
    assert_eq!(driver.run_state(Side::Source).await, Ok(RunState::Gone));
}

async fn wrong_types() {
    let reply = json!({"status": 5, "running": "yes"});
    let (source, _) = fake::qemu_like(Imitation::source());
    let (destination, _) = fake::qemu_like(
        Imitation::destination().answering("query-status", fake::Answer::Return(reply.clone())),
    );
    let (error, took) = preflight(&mut driver(&source, &destination)).await;
    assert_named(&error, Side::Destination, &destination, took, TIMEOUT);
    assert!(
        error
            .message
            .ends_with(&format!(": unexpected reply to query-status: {reply}")),
        "{}",
        error.message
    );
}

async fn refuses_everything() {
    let source = fake(|mut peer| async move {
        if !peer.try_send(GREETING).await {
            return;
        }
        while let Some(command) = peer.recv().await {
            let desc = format!("{} is not allowed here", command["execute"]);
            let error = json!({"id": command["id"], "error": {"class": "GenericError", "desc": desc}});
            if !peer.try_send(&error.to_string()).await {
                return;
            }
        }
    });
    let (destination, _) = fake::qemu_like(Imitation::destination());
    let (error, took) = preflight(&mut driver(&source, &destination)).await;
    assert_named(&error, Side::Source, &source, took, TIMEOUT);
    assert!(
        error
            .message
            .ends_with(": qmp_capabilities: GenericError: \"qmp_capabilities\" is not allowed here"),
        "{}",
        error.message
    );
}

async fn slow() {
    let (source, _) = fake::qemu_like(Imitation::source());
    let destination = fake(|mut peer| async move {
        peer.handshake().await;
        while let Some(command) = peer.recv().await {
            tokio::time::sleep(TIMEOUT * 3).await;
            let reply = json!({"return": {"status": "inmigrate", "running": false}, "id": command["id"]});
            if !peer.try_send(&reply.to_string()).await {
                return;
            }
        }
    });
    let mut driver = driver(&source, &destination);
    let (error, took) = preflight(&mut driver).await;
    assert_named(&error, Side::Destination, &destination, took, TIMEOUT + SLACK);
    assert!(
        error.message.ends_with(": query-status: not answering within 1s"),
        "{}",
        error.message
    );
    assert!(!error.disconnected, "a slow side is not a gone one");
    assert_eq!(
        driver.run_state(Side::Destination).await,
        Ok(RunState::NotAnswering { after_ms: 1000 })
    );
}

/// Floods events nobody knows, each with `size` bytes of data, and answers nothing.
async fn event_flood(size: usize) {
    let source = fake(move |mut peer| async move {
        peer.handshake().await;
        let line = fake::event("X_UNKNOWN_EVENT", json!({"id": "x".repeat(size)}));
        keep_sending(peer, move |_| line.clone()).await;
    });
    let (destination, _) = fake::qemu_like(Imitation::destination());
    let (error, took) = preflight(&mut driver(&source, &destination)).await;
    assert_named(&error, Side::Source, &source, took, TIMEOUT + SLACK);
    assert!(
        error.message.ends_with(": query-status: not answering within 1s"),
        "{}",
        error.message
    );
}
