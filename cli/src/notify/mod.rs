//! Webhooks: a run's events POSTed as JSON to the URLs of the plan's `[notify]` (and
//! `--notify`), signed, in order, and never in the migration's way.
//!
//! The engine's [`EventSink::emit`](engine::EventSink::emit) runs on the engine's task,
//! sometimes while QEMU holds the guest paused; so sending an event only puts it on one
//! bounded queue per URL and returns. The deliveries run on a thread of their own, one
//! task per URL taking its queue in order (see `lane.rs` for tries, pauses and giving
//! up). A receiver that is slow, hangs or is gone costs a warning on stderr and the
//! report's `notify` counts, nothing else.
//!
//! ```text
//! engine ──emit──▶ NotifySink ──▶ inner sink (renderer, journal)
//!                      │
//!                      └─send──▶ NotifyHandle ──try──▶ queue per URL ──▶ delivery task ──POST──▶ receiver
//! ```
//!
//! # Use
//!
//! ```no_run
//! # use vfio_migrate::notify::{Notifier, NotifySink, Targets};
//! # async fn run(plan: &plans::Plan, driver: &mut dyn engine::Driver, inner: &mut dyn engine::EventSink,
//! #     controls: engine::Controls) -> Result<(), Box<dyn std::error::Error>> {
//! let notify = plan.notify.as_ref().ok_or("no webhooks")?;
//! let notifier = Notifier::start(Targets::resolve(notify)?)?; // before anything changes
//! let handle = notifier.handle(); // cheap to clone, one per VM
//! let mut sink = NotifySink::new(inner, handle.clone(), plan); // sends `run_started`
//! let mut report = engine::migrate(plan, driver, &mut sink, controls).await;
//! handle.result(&report); // queued; never left out
//! report.notify = Some(notifier.finish().await); // waits for the result, at most `retry_for`
//! # Ok(()) }
//! ```
//!
//! Many VMs share one [`Notifier`]: each run gets a clone of the handle and its own
//! [`NotifySink`]; [`NotifyHandle::send`] numbers each VM's events from its
//! `run_started` on. [`Notifier::finish`] ends them all: progress still queued gets
//! [`GRACE`], each result `retry_for` from when it was queued.
//!
//! What receivers get (body, headers, signature) is in `docs/notify.md`.

mod counts;
pub mod event;
mod lane;
pub mod run;
mod sign;
mod sink;
mod targets;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use engine::report::NotifyCounts;
use engine::Report;
use serde_json::Value;
use tokio::sync::{oneshot, watch};

pub use event::Kind;
pub use sink::NotifySink;
pub use targets::{with_command_line, NotifyError, Targets};

use counts::Counts;
use event::Event;
use lane::{Deliver, Lane};

/// How long progress still queued or being tried is given once the run ends.
pub const GRACE: Duration = Duration::from_secs(1);

/// What [`Notifier::finish`] waits beyond the deliveries' own bounds before it stops
/// waiting for a delivery thread that does not end.
const SLACK: Duration = Duration::from_secs(1);

/// The webhooks of a run (or of many VMs' runs): queues and the thread that delivers
/// them.
pub struct Notifier {
    shared: Arc<Shared>,
    grace: watch::Sender<Option<std::time::Instant>>,
    done: Option<oneshot::Receiver<()>>,
    /// The longest a result can take: its tries, then one request.
    bound: Duration,
}

/// Sends events to a [`Notifier`]'s URLs; cheap to clone, for every VM and thread.
#[derive(Clone)]
pub struct NotifyHandle {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    counts: Arc<Counts>,
    urls: usize,
}

struct State {
    /// `None` once the run ended.
    lanes: Option<Vec<Lane>>,
    /// Each VM's run: its id and the last number given.
    runs: HashMap<String, (String, u64)>,
}

impl Notifier {
    /// Starts delivering to `targets`' URLs on a thread of its own; fails when the HTTP
    /// client (its TLS settings, the system's CAs, `ca_file`) or the thread cannot be
    /// set up. Works inside a tokio runtime or outside one.
    pub fn start(targets: Targets) -> Result<Notifier, NotifyError> {
        let mut client = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(targets.timeout)
            .connect_timeout(targets.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("vfio-migrate/", env!("CARGO_PKG_VERSION")));
        for ca in &targets.ca {
            client = client.add_root_certificate(ca.clone());
        }
        let client = client.build().map_err(|source| NotifyError::Client { source })?;
        let counts = Arc::new(Counts::default());
        let (grace, grace_until) = watch::channel(None);
        let (lanes, tasks): (Vec<Lane>, Vec<_>) = targets
            .urls
            .iter()
            .map(|url| {
                Lane::new(Deliver {
                    client: client.clone(),
                    url: url.clone(),
                    key: targets.key.clone(),
                    retry_for: targets.retry_for,
                    counts: counts.clone(),
                    grace_until: grace_until.clone(),
                })
            })
            .unzip();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| NotifyError::Thread { source })?;
        let (finished, done) = oneshot::channel();
        std::thread::Builder::new()
            .name("webhooks".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let running: Vec<_> = tasks.into_iter().map(tokio::spawn).collect();
                    for task in running {
                        let _ = task.await;
                    }
                });
                let _ = finished.send(());
            })
            .map_err(|source| NotifyError::Thread { source })?;
        Ok(Notifier {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    lanes: Some(lanes),
                    runs: HashMap::new(),
                }),
                counts,
                urls: targets.urls.len(),
            }),
            grace,
            done: Some(done),
            bound: GRACE + targets.retry_for + targets.timeout + SLACK,
        })
    }

    /// A handle to send events with.
    pub fn handle(&self) -> NotifyHandle {
        NotifyHandle {
            shared: self.shared.clone(),
        }
    }

    /// Ends the run's webhooks and waits for what is owed: progress for [`GRACE`],
    /// results for `retry_for` after each was queued. Events sent afterwards are
    /// counted as dropped.
    pub async fn finish(mut self) -> NotifyCounts {
        self.end();
        if let Some(done) = self.done.take() {
            let _ = tokio::time::timeout(self.bound, done).await;
        }
        self.shared.counts.total()
    }

    /// Closes the queues (the delivery tasks end once theirs is empty) and starts the
    /// progress grace.
    fn end(&self) {
        let lanes = self.shared.lock().lanes.take();
        if lanes.is_some() {
            let _ = self.grace.send(Some(std::time::Instant::now() + GRACE));
        }
        drop(lanes);
    }
}

impl Drop for Notifier {
    /// A notifier dropped without [`Notifier::finish`] still lets its thread end.
    fn drop(&mut self) {
        self.end();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A sender that panicked leaves nothing half-done in the state worth refusing.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl NotifyHandle {
    /// Queues an event of `vm`'s run for every URL and returns at once. `run_started`
    /// begins a new run of `vm` (a new run id, numbers from 1); progress is left out at
    /// a full queue, a result never is.
    pub fn send(&self, vm: &str, kind: Kind, data: Value) {
        let time = SystemTime::now();
        let mut state = self.shared.lock();
        let fresh = || (sign::random_id(), 0);
        let run = state.runs.entry(vm.to_string()).or_insert_with(fresh);
        if kind == Kind::RunStarted && run.1 > 0 {
            *run = fresh();
        }
        run.1 += 1;
        let event = Arc::new(Event {
            event: kind,
            vm: vm.to_string(),
            run: run.0.clone(),
            seq: run.1,
            time,
            data,
            queued: std::time::Instant::now(),
        });
        let counts = &self.shared.counts;
        match &state.lanes {
            Some(lanes) => lanes.iter().for_each(|lane| lane.push(&event, counts)),
            None => (0..self.shared.urls).for_each(|_| counts.left_out()),
        }
    }

    /// Queues the run's result: the report's summary.
    pub fn result(&self, report: &Report) {
        self.send(&report.vm, Kind::Result, event::result(report));
    }
}
