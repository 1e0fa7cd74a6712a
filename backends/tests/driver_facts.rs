//! The QMP driver reads facts the engine decides on, and validates them: an odd reply
//! is an error naming the side, never a guess; a side that does not answer is "not
//! answering", and only a closed monitor is "gone".

mod fake;

use std::time::{Duration, Instant};

use engine::driver::{Driver, RunState, Side};
use fake::{fake_pair, Answer, Imitation};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_millis(500);

#[tokio::test]
async fn an_empty_query_status_reply_is_an_unexpected_reply_not_a_paused_vm() {
    let source = Imitation::source().answering("query-status", Answer::Return(json!({})));
    let mut pair = fake_pair(source, Imitation::destination(), TIMEOUT);
    pair.driver.connect().await.expect("connect");
    let error = pair.driver.inspect().await.expect_err("no run state");
    assert_eq!(error.side, Side::Source);
    assert_eq!(error.request, "query-status");
    assert!(!error.disconnected);
    assert_eq!(
        error.message,
        format!(
            "source (unix:{}): unexpected reply to query-status: {{}}",
            pair.source.path().display()
        )
    );
    let state = pair.driver.run_state(Side::Source).await;
    assert_eq!(
        state,
        Err(error),
        "run_state says the same, instead of paused (unknown)"
    );
}

#[tokio::test]
async fn a_query_status_reply_without_return_is_a_protocol_error_saying_so() {
    let destination =
        Imitation::destination().answering("query-status", Answer::Line(|id| json!({"id": id}).to_string()));
    let mut pair = fake_pair(Imitation::source(), destination, TIMEOUT);
    pair.driver.connect().await.expect("connect");
    let started = Instant::now();
    let error = pair.driver.inspect().await.expect_err("no return");
    assert!(
        started.elapsed() < TIMEOUT,
        "failed at once, not after the timeout"
    );
    assert_eq!(error.side, Side::Destination);
    assert!(!error.disconnected);
    let expected = format!(
        "destination (unix:{}): query-status: protocol error: reply without `return` or `error`: `{{\"id\":",
        pair.destination.path().display()
    );
    assert!(error.message.starts_with(&expected), "{}", error.message);
}

#[tokio::test]
async fn a_side_that_stops_answering_is_not_answering_not_gone() {
    let destination = Imitation::destination().answering("query-status", Answer::Silence);
    let mut pair = fake_pair(Imitation::source(), destination, TIMEOUT);
    pair.driver.connect().await.expect("connect");
    let state = pair
        .driver
        .run_state(Side::Destination)
        .await
        .expect("a run state");
    assert_eq!(state, RunState::NotAnswering { after_ms: 500 });
    assert_eq!(state.to_string(), "not answering within 500ms");

    let error = pair.driver.inspect().await.expect_err("no answer");
    assert!(!error.disconnected, "a stopped QEMU is not a gone one");
    assert_eq!(
        error.message,
        format!(
            "destination (unix:{}): query-status: not answering within 500ms",
            pair.destination.path().display()
        )
    );
}

#[tokio::test]
async fn a_side_whose_monitor_closes_is_gone() {
    let destination = Imitation::destination().answering("query-status", Answer::Hangup);
    let mut pair = fake_pair(Imitation::source(), destination, TIMEOUT);
    pair.driver.connect().await.expect("connect");
    let state = pair
        .driver
        .run_state(Side::Destination)
        .await
        .expect("a run state");
    assert_eq!(state, RunState::Gone);
}

#[tokio::test]
async fn wrong_types_in_facts_are_unexpected_replies() {
    let cases = [
        ("query-status", json!({"status": 5, "running": "yes"})),
        ("query-migrate", json!(["active"])),
        ("query-migrate", json!({"blocked-reasons": "vfio"})),
        ("query-kvm", json!({"enabled": "yes"})),
    ];
    for (command, reply) in cases {
        let source = Imitation::source().answering(command, Answer::Return(reply.clone()));
        let mut pair = fake_pair(source, Imitation::destination(), TIMEOUT);
        pair.driver.connect().await.expect("connect");
        let error = pair.driver.inspect().await.expect_err("odd reply");
        assert_eq!(
            error.message,
            format!(
                "source (unix:{}): unexpected reply to {command}: {reply}",
                pair.source.path().display()
            )
        );
    }
}
