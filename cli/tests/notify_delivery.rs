//! Webhook delivery against real HTTP receivers on loopback: events arrive in order,
//! signed (checked here with ring, not the tool's HMAC), each with its own delivery id;
//! a failing receiver is tried again and then counted; a hanging one never holds up
//! sending; a full queue leaves progress out but keeps the result; HTTPS with a private
//! CA works only with `ca_file`.

mod common;

use std::collections::HashSet;
use std::ffi::OsString;
use std::time::{Duration, Instant};

use common::hooks::{Answer, Receiver, Request};
use engine::report::NotifyCounts;
use plans::Notify;
use serde_json::json;
use vfio_migrate::notify::{Kind, Notifier, Targets, GRACE};

const KEY: &str = "test-webhook-key";

/// Webhooks to `urls`, signed with [`KEY`], trying for `retry_for`.
fn targets(urls: &[&str], timeout: Duration, retry_for: Duration) -> Targets {
    let notify = Notify {
        secret_env: Some("HOOK_KEY".into()),
        timeout,
        retry_for,
        ..Notify::to(urls.iter().map(|u| u.to_string()).collect())
    };
    Targets::resolve_with(&notify, |name| (name == "HOOK_KEY").then(|| OsString::from(KEY)))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Sends `run_started`, `progress` phase events and a result for VM `vm`.
fn send_run(notifier: &Notifier, vm: &str, progress: usize) {
    let handle = notifier.handle();
    handle.send(vm, Kind::RunStarted, json!({"source": "unix:/run/src.qmp"}));
    for i in 0..progress {
        handle.send(vm, Kind::Phase, json!({"phase": "converge", "i": i}));
    }
    handle.send(vm, Kind::Result, json!({"result": "migrated", "rc": 0}));
}

fn seqs(requests: &[Request]) -> Vec<u64> {
    requests
        .iter()
        .map(|r| r.json()["seq"].as_u64().unwrap_or(0))
        .collect()
}

#[test]
fn events_arrive_in_order_signed_each_with_its_own_delivery_id() {
    let first = Receiver::start(Answer::Status(204));
    let second = Receiver::start(Answer::Status(200));
    let rt = runtime();
    let counts = rt.block_on(async {
        let notifier = Notifier::start(targets(
            &[&first.url, &second.url],
            Duration::from_secs(5),
            Duration::from_secs(5),
        ))
        .expect("start");
        send_run(&notifier, "db-01", 20);
        notifier.finish().await
    });
    assert_eq!(
        counts,
        NotifyCounts {
            sent: 44,
            failed: 0,
            dropped: 0
        },
        "22 events to each of two URLs"
    );
    let mut ids = HashSet::new();
    for receiver in [&first, &second] {
        let got = receiver.requests();
        assert_eq!(
            seqs(&got),
            (1..=22).collect::<Vec<u64>>(),
            "in order, none missing"
        );
        let run = got[0].json()["run"].clone();
        for r in &got {
            let body = r.json();
            assert!(r.signed_with(KEY.as_bytes()), "signature of {body}");
            assert!(!r.signed_with(b"another key"));
            assert_eq!(r.event, body["event"], "the header names the body's kind");
            assert_eq!(r.content_type, "application/json");
            assert_eq!(body["vm"], "db-01");
            assert_eq!(body["run"], run, "one run id for the run");
            assert!(body["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{body}");
            assert_eq!(r.delivery.len(), 32, "128 bits in hex: {}", r.delivery);
            assert!(
                ids.insert(r.delivery.clone()),
                "delivery id {} used twice",
                r.delivery
            );
        }
        assert_eq!(got[0].event, "run_started");
        assert_eq!(got[21].event, "result");
        assert_eq!(got[21].json()["data"], json!({"result": "migrated", "rc": 0}));
    }
}

#[test]
fn many_vms_share_one_notifier_and_each_run_is_numbered_from_one() {
    let receiver = Receiver::start(Answer::Status(204));
    let rt = runtime();
    let counts = rt.block_on(async {
        let notifier = Notifier::start(targets(
            &[&receiver.url],
            Duration::from_secs(5),
            Duration::from_secs(5),
        ))
        .expect("start");
        std::thread::scope(|s| {
            for vm in ["vm-a", "vm-b", "vm-c"] {
                let handle = notifier.handle();
                s.spawn(move || {
                    handle.send(vm, Kind::RunStarted, json!({}));
                    for state in ["pre-copy", "stop-copy", "stop"] {
                        handle.send(vm, Kind::Device, json!({"id": "gpu0", "state": state}));
                    }
                    handle.send(vm, Kind::Result, json!({"result": "migrated"}));
                });
            }
        });
        notifier.finish().await
    });
    assert_eq!(counts.sent, 15);
    let got = receiver.requests();
    let mut runs = HashSet::new();
    for vm in ["vm-a", "vm-b", "vm-c"] {
        let of_vm: Vec<Request> = got.iter().filter(|r| r.json()["vm"] == vm).cloned().collect();
        assert_eq!(seqs(&of_vm), [1, 2, 3, 4, 5], "{vm}");
        runs.insert(of_vm[0].json()["run"].to_string());
    }
    assert_eq!(runs.len(), 3, "each VM's run has its own id");
}

#[test]
fn a_receiver_that_fails_twice_gets_the_event_on_the_third_try_with_the_same_delivery_id() {
    let receiver = Receiver::start(Answer::FailFirst(2));
    let rt = runtime();
    let counts = rt.block_on(async {
        let notifier = Notifier::start(targets(
            &[&receiver.url],
            Duration::from_secs(5),
            Duration::from_secs(10),
        ))
        .expect("start");
        notifier
            .handle()
            .send("db-01", Kind::Result, json!({"result": "migrated"}));
        notifier.finish().await
    });
    assert_eq!(
        counts,
        NotifyCounts {
            sent: 1,
            failed: 0,
            dropped: 0
        }
    );
    let got = receiver.requests();
    assert_eq!(got.len(), 3);
    assert!(
        got.iter().all(|r| r.delivery == got[0].delivery),
        "one delivery, three tries"
    );
    assert!(got.iter().all(|r| r.body == got[0].body), "the same body");
    let pause = got[1].at.duration_since(got[0].at);
    assert!(pause >= Duration::from_millis(150), "tries are spaced: {pause:?}");
}

#[test]
fn a_receiver_answering_500_is_tried_for_retry_for_and_then_counted_failed() {
    let receiver = Receiver::start(Answer::Status(500));
    let rt = runtime();
    let retry_for = Duration::from_millis(1500);
    let started = Instant::now();
    let counts = rt.block_on(async {
        let notifier =
            Notifier::start(targets(&[&receiver.url], Duration::from_secs(5), retry_for)).expect("start");
        notifier
            .handle()
            .send("db-01", Kind::Result, json!({"result": "migrated"}));
        notifier.finish().await
    });
    let took = started.elapsed();
    assert_eq!(
        counts,
        NotifyCounts {
            sent: 0,
            failed: 1,
            dropped: 0
        }
    );
    let tries = receiver.requests().len();
    // Pauses of 200, 400 and 800 ms fit in 1.5 s: four tries.
    assert!((3..=5).contains(&tries), "{tries} tries");
    assert!(
        took < retry_for + Duration::from_secs(2),
        "gave up in time: {took:?}"
    );
    println!("500: {tries} tries in {took:?}");
}

#[test]
fn a_receiver_refusing_the_request_with_a_4xx_is_not_tried_again() {
    let receiver = Receiver::start(Answer::Status(403));
    let rt = runtime();
    let counts = rt.block_on(async {
        let notifier = Notifier::start(targets(
            &[&receiver.url],
            Duration::from_secs(5),
            Duration::from_secs(10),
        ))
        .expect("start");
        notifier.handle().send("db-01", Kind::Result, json!({}));
        notifier.finish().await
    });
    assert_eq!(counts.failed, 1);
    assert_eq!(receiver.requests().len(), 1);
}

#[test]
fn a_hanging_receiver_never_holds_up_sending_and_a_full_queue_leaves_progress_out() {
    let receiver = Receiver::start(Answer::Hang);
    let rt = runtime();
    let timeout = Duration::from_secs(1);
    let retry_for = Duration::from_secs(1);
    let (counts, slowest, finishing) = rt.block_on(async {
        let notifier = Notifier::start(targets(&[&receiver.url], timeout, retry_for)).expect("start");
        let handle = notifier.handle();
        let mut slowest = Duration::ZERO;
        for i in 0..400 {
            let sent = Instant::now();
            handle.send("db-01", Kind::Device, json!({"id": "gpu0", "i": i}));
            slowest = slowest.max(sent.elapsed());
        }
        let sent = Instant::now();
        handle.send("db-01", Kind::Result, json!({"result": "migrated"}));
        slowest = slowest.max(sent.elapsed());
        let finishing = Instant::now();
        let counts = notifier.finish().await;
        (counts, slowest, finishing.elapsed())
    });
    println!("hang: slowest send {slowest:?}, finish {finishing:?}, {counts:?}");
    assert!(slowest < Duration::from_millis(50), "a send waited {slowest:?}");
    // Every event is counted once: the one being tried, then 256 queued; the rest left
    // out; the result queued although the queue was full.
    assert_eq!(counts.sent + counts.failed + counts.dropped, 401, "{counts:?}");
    assert_eq!(counts.sent, 0);
    assert!(counts.dropped >= 400 - 256 - 1, "{counts:?}");
    assert!(counts.failed >= 1, "the result was tried: {counts:?}");
    let bound = GRACE + retry_for + timeout + Duration::from_secs(1);
    assert!(
        finishing <= bound,
        "finish waited {finishing:?}, more than {bound:?}"
    );
}

#[test]
fn a_full_queue_leaves_progress_out_but_the_result_gets_through() {
    // The first request is answered after a second; meanwhile the queue fills.
    let receiver = Receiver::start(Answer::SlowFirst(Duration::from_secs(1)));
    let rt = runtime();
    let counts = rt.block_on(async {
        let notifier = Notifier::start(targets(
            &[&receiver.url],
            Duration::from_secs(5),
            Duration::from_secs(10),
        ))
        .expect("start");
        send_run(&notifier, "db-01", 399);
        // All that was queued gets through once the receiver answers again.
        receiver.wait_for_result(Duration::from_secs(20));
        notifier.finish().await
    });
    let got = receiver.requests();
    println!("full queue: {} received, {counts:?}", got.len());
    // 256 queued, and the first besides when the delivery task took it out before the
    // queue filled; the result on top.
    assert!((257..=258).contains(&got.len()), "{} received", got.len());
    assert_eq!(
        counts,
        NotifyCounts {
            sent: got.len() as u64,
            failed: 0,
            dropped: 401 - got.len() as u64
        }
    );
    let last = got.last().map(Request::json).unwrap_or_default();
    assert_eq!(last["event"], "result");
    assert_eq!(last["seq"], 401, "numbered as sent, so a receiver sees the gap");
    let seqs = seqs(&got);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");
}

#[test]
fn progress_a_hanging_receiver_holds_is_given_up_after_the_grace_while_the_result_is_tried() {
    let receiver = Receiver::start(Answer::Hang);
    let rt = runtime();
    let retry_for = Duration::from_secs(1);
    let timeout = Duration::from_secs(3);
    let started = Instant::now();
    let counts = rt.block_on(async {
        let notifier = Notifier::start(targets(&[&receiver.url], timeout, retry_for)).expect("start");
        notifier
            .handle()
            .send("db-01", Kind::Phase, json!({"phase": "verify"}));
        notifier
            .handle()
            .send("db-01", Kind::Phase, json!({"phase": "verify"}));
        notifier.handle().send("db-01", Kind::Result, json!({}));
        notifier.finish().await
    });
    let took = started.elapsed();
    println!("grace: {counts:?} after {took:?}");
    // The first progress event was being tried: failed at the grace; the second never
    // tried; the result tried once more, its request running for the whole timeout.
    assert_eq!(
        counts,
        NotifyCounts {
            sent: 0,
            failed: 2,
            dropped: 1
        }
    );
    assert!(took >= GRACE, "progress had its grace: {took:?}");
    assert!(
        took < GRACE + retry_for + timeout + Duration::from_secs(1),
        "{took:?}"
    );
}

mod https {
    use super::*;
    use common::tls::{Ca, Role};

    /// An HTTPS receiver whose certificate a private CA issued; the CA's file.
    fn private_receiver(dir: &std::path::Path) -> (Receiver, std::path::PathBuf) {
        let ca = Ca::new(dir.join("ca"), "webhooks-test-ca");
        let server = dir.join("server");
        ca.issue(&server, Role::Server, "IP:127.0.0.1");
        let receiver = Receiver::start_tls(
            Answer::Status(204),
            &server.join("server-cert.pem"),
            &server.join("server-key.pem"),
        );
        (receiver, ca.dir.join("ca-cert.pem"))
    }

    fn deliver(receiver: &Receiver, ca_file: Option<std::path::PathBuf>) -> NotifyCounts {
        let notify = Notify {
            ca_file,
            retry_for: Duration::ZERO,
            ..Notify::to(vec![receiver.url.clone()])
        };
        let targets = Targets::resolve(&notify).unwrap_or_else(|e| panic!("{e}"));
        runtime().block_on(async {
            let notifier = Notifier::start(targets).expect("start");
            notifier.handle().send("db-01", Kind::Result, json!({}));
            notifier.finish().await
        })
    }

    #[test]
    fn https_with_a_private_ca_works_only_with_its_ca_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (receiver, ca) = private_receiver(dir.path());
        assert!(receiver.url.starts_with("https://"));
        let without = deliver(&receiver, None);
        assert_eq!((without.sent, without.failed), (0, 1), "an unknown CA is refused");
        assert!(receiver.requests().is_empty());
        let with = deliver(&receiver, Some(ca));
        assert_eq!((with.sent, with.failed), (1, 0));
        assert_eq!(receiver.requests().len(), 1);
        assert!(
            receiver.requests()[0].signature.is_none(),
            "no secret_env: unsigned"
        );
    }
}
