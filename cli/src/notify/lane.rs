//! One URL's queue and the task that delivers it, in order.
//!
//! Sending only queues: a lane holds at most [`QUEUE`] progress events, and one more is
//! left out (and counted); a result is always queued. The task takes events one at a
//! time and POSTs each until the receiver answers 2xx, tries again after 408, 429, 5xx,
//! a timeout or a failed connection, with pauses doubling from [`FIRST_PAUSE`] to
//! [`MAX_PAUSE`], for `retry_for` at most, and gives up at once on any other answer
//! (redirects are not followed: a POST must not turn into a GET elsewhere).
//!
//! At the run's end progress gets a short grace, then what is still queued is
//! abandoned and what is being tried is given up; a result is tried for `retry_for`
//! after it was queued, whatever the grace.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Client, StatusCode, Url};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::counts::Counts;
use super::event::{Event, Kind};
use super::sign::{random_id, Key};

/// The most progress events a lane holds.
pub(crate) const QUEUE: usize = 256;
/// The pause before the first try again.
const FIRST_PAUSE: Duration = Duration::from_millis(200);
/// The longest pause between tries.
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// The queue's sending end, held by the notifier until the run ends.
pub(crate) struct Lane {
    tx: mpsc::UnboundedSender<Arc<Event>>,
    queued_progress: Arc<AtomicUsize>,
    /// Progress left out at a full queue, for the warnings.
    left_out: Arc<AtomicU64>,
    shown: Arc<str>,
}

/// What the delivery task needs besides its queue.
pub(crate) struct Deliver {
    pub(crate) client: Client,
    pub(crate) url: Url,
    pub(crate) key: Option<Key>,
    pub(crate) retry_for: Duration,
    pub(crate) counts: Arc<Counts>,
    /// When progress stops being tried: set once the run ends.
    pub(crate) grace_until: watch::Receiver<Option<std::time::Instant>>,
}

impl Lane {
    /// A lane for `deliver.url` and its task, to be spawned where deliveries run.
    pub(crate) fn new(deliver: Deliver) -> (Lane, impl std::future::Future<Output = ()> + Send) {
        let (tx, rx) = mpsc::unbounded_channel();
        let lane = Lane {
            tx,
            queued_progress: Arc::new(AtomicUsize::new(0)),
            left_out: Arc::new(AtomicU64::new(0)),
            shown: shown(&deliver.url).into(),
        };
        let task = work(
            rx,
            deliver,
            lane.queued_progress.clone(),
            lane.left_out.clone(),
            lane.shown.clone(),
        );
        (lane, task)
    }

    /// Queues `event` unless it is progress and the lane is full; never waits.
    pub(crate) fn push(&self, event: &Arc<Event>, counts: &Counts) {
        if event.event.is_progress() {
            let before = self.queued_progress.fetch_add(1, Ordering::AcqRel);
            if before >= QUEUE {
                self.queued_progress.fetch_sub(1, Ordering::AcqRel);
                counts.left_out();
                // Once: how many in all is said at the end.
                if self.left_out.fetch_add(1, Ordering::Relaxed) == 0 {
                    warn(
                        &self.shown,
                        "its queue is full; progress events are left out while it is",
                    );
                }
                return;
            }
        }
        match self.tx.send(event.clone()) {
            Ok(()) => counts.accepted(),
            // The task is gone (it only ends once the lane is dropped, or on a panic).
            Err(_) => counts.left_out(),
        }
    }
}

/// A URL as messages show it: its origin only, since paths and queries often carry a
/// receiver's token.
pub(crate) fn shown(url: &Url) -> String {
    format!("{}/…", url.origin().ascii_serialization())
}

/// Says something about one URL's deliveries on stderr.
fn warn(shown: &str, what: &str) {
    eprintln!("vfio-migrate: warning: webhook {shown}: {what}");
}

/// Delivers the queue in order until the lane is dropped and the queue is empty.
async fn work(
    mut rx: mpsc::UnboundedReceiver<Arc<Event>>,
    deliver: Deliver,
    queued_progress: Arc<AtomicUsize>,
    left_out: Arc<AtomicU64>,
    shown: Arc<str>,
) {
    let mut failing = false;
    let (mut given_up, mut abandoned) = (0u64, 0u64);
    while let Some(event) = rx.recv().await {
        let progress = event.event.is_progress();
        if progress {
            queued_progress.fetch_sub(1, Ordering::AcqRel);
            if deliver.past_grace() {
                deliver.counts.abandoned();
                abandoned += 1;
                continue;
            }
        }
        match deliver.one(&event).await {
            Ok(()) => {
                deliver.counts.sent();
                if failing {
                    warn(&shown, "delivering again");
                    failing = false;
                }
            }
            Err(why) => {
                deliver.counts.failed();
                given_up += 1;
                if !failing || event.event == Kind::Result {
                    warn(
                        &shown,
                        &format!("{} #{} not delivered: {why}", event.event.name(), event.seq),
                    );
                    failing = true;
                }
            }
        }
    }
    let left_out = left_out.load(Ordering::Relaxed);
    if given_up + abandoned + left_out > 0 {
        warn(
            &shown,
            &format!(
                "{given_up} event(s) not delivered, {left_out} left out at a full queue, {abandoned} still queued at the end"
            ),
        );
    }
}

impl Deliver {
    fn past_grace(&self) -> bool {
        self.grace_until
            .borrow()
            .is_some_and(|t| std::time::Instant::now() >= t)
    }

    /// Resolves once progress must no longer be tried; never for a result.
    async fn cut(&self, kind: Kind) {
        if !kind.is_progress() {
            return std::future::pending().await;
        }
        let mut grace = self.grace_until.clone();
        let until = match grace.wait_for(Option::is_some).await {
            Ok(until) => *until,
            // The notifier is gone: nobody waits for this any more.
            Err(_) => None,
        };
        if let Some(until) = until {
            tokio::time::sleep_until(Instant::from_std(until)).await;
        }
    }

    /// Delivers one event, trying again while it may; why not, when it was not.
    async fn one(&self, event: &Event) -> Result<(), String> {
        let body = event.body().map_err(|e| format!("cannot encode it: {e}"))?;
        let signature = self.key.as_ref().map(|key| key.sign(&body));
        // One id for every try of this delivery: a receiver that got a try whose answer
        // was lost can tell the next one is the same.
        let id = random_id();
        let started = match event.event {
            Kind::Result => Instant::from_std(event.queued),
            _ => Instant::now(),
        };
        let deadline = started + self.retry_for;
        let mut pause = FIRST_PAUSE;
        let mut tries = 0u32;
        loop {
            tries += 1;
            let mut request = self
                .client
                .post(self.url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header("X-Vfio-Migrate-Event", event.event.name())
                .header("X-Vfio-Migrate-Delivery", &id)
                .body(body.clone());
            if let Some(signature) = &signature {
                request = request.header("X-Vfio-Migrate-Signature", signature);
            }
            let answer = tokio::select! {
                answer = request.send() => Answer::of(answer),
                () = self.cut(event.event) => return Err("the run ended first".into()),
            };
            let why = match answer {
                Answer::Delivered => return Ok(()),
                Answer::Refused(why) => return Err(why),
                Answer::Again(why) => why,
            };
            let next = Instant::now() + pause;
            if next > deadline {
                let after = match tries {
                    1 => String::new(),
                    n => format!(" (after {n} tries)"),
                };
                return Err(format!("{why}{after}"));
            }
            tokio::select! {
                () = tokio::time::sleep_until(next) => {}
                () = self.cut(event.event) => return Err(format!("{why}; the run ended first")),
            }
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }
}

/// What one try came to.
enum Answer {
    Delivered,
    /// Worth trying again.
    Again(String),
    /// Not worth it: the receiver refused the request itself.
    Refused(String),
}

impl Answer {
    fn of(answer: Result<reqwest::Response, reqwest::Error>) -> Answer {
        let response = match answer {
            Ok(response) => response,
            Err(e) if e.is_timeout() => return Answer::Again("no answer in time".into()),
            Err(e) => return Answer::Again(describe(&e)),
        };
        let status = response.status();
        let said = format!("answered {status}");
        match status {
            s if s.is_success() => Answer::Delivered,
            StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS => Answer::Again(said),
            s if s.is_server_error() => Answer::Again(said),
            s if s.is_redirection() => Answer::Refused(format!("{said}: webhooks are not redirected")),
            _ => Answer::Refused(said),
        }
    }
}

/// A client error and its causes on one line, without the URL (which may carry a token).
fn describe(e: &reqwest::Error) -> String {
    let mut text = String::from(if e.is_connect() {
        "cannot connect"
    } else {
        "the request failed"
    });
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}
