//! The libvirt backend: an [`engine::Driver`] over two libvirt daemons and a domain.
//!
//! Most VFIO VMs in production are libvirt domains, whose QEMU monitor belongs to the
//! daemon. This driver reaches them through libvirt's API: the migration is one
//! `virDomainMigrate3` (managed: this process talks to both daemons) or
//! `virDomainMigrateToURI3` with `VIR_MIGRATE_PEER2PEER` (the source daemon talks to the
//! destination's), always live and with `VIR_MIGRATE_PAUSED`, so that the destination's
//! guest starts only when the engine has confirmed completion, as `-S` does over QMP.
//!
//! libvirt's calls block: each runs on tokio's blocking pool under a deadline, and the
//! migration call itself on a thread of its own for as long as the migration lasts.
//!
//! How the engine's questions read through libvirt:
//! - Before a run the destination daemon holds no running domain of that name; libvirt
//!   creates the incoming QEMU itself. That reads as [`RunState::InMigrate`] with an
//!   incoming migration set up, which is what the engine's preflight asks of a QMP
//!   destination. A destination that already runs the domain reads as running.
//! - The destination's migration is the libvirt job's: active while the migration call
//!   runs, completed when it returned success (libvirt has then finished its own
//!   hand-over), failed when it returned an error. The destination's own QEMU events are
//!   not forwarded: they say "loaded" before libvirt has handed the domain over.
//! - Status and pass events are QEMU's own (`MIGRATION`, `MIGRATION_PASS`, `STOP`,
//!   `RESUME`, `VFIO_MIGRATION`), relayed by libvirt
//!   (`virConnectDomainQemuMonitorEventRegister`), so the convergence loop judges the
//!   same boundaries as over QMP. Listening to them does not taint the domain.
//! - Progress is libvirt's job statistics ([`job`]).
//! - libvirt answers `pre-switchover` itself, so this backend cannot hold the guest
//!   there ([`engine::SwitchoverHold`] is absent).
//! - A throttle has no libvirt API once a migration runs (auto-converge's percentages
//!   are fixed when it starts; there is no dirty-limit call): it is set with a QEMU
//!   monitor command through libvirt, which marks the domain tainted
//!   (`custom-monitor`). Only a policy that throttles does that, and the report says so.

mod ffi;
pub mod hostdev;
pub mod job;
mod survey;
mod xml;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use engine::driver::{
    DeviceEvents, DeviceInfo, DirtyRate, DirtyRateMode, Driver, DriverError, DriverEvent, KernelDirtyRate,
    MigrationStatus, PairFacts, RunState, Sample, Setup, Side, SideFacts, Throttle,
};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;
use virt::connect::Connect;
use virt::domain::{Domain, MigrateParameters};
use virt::error::{Error as VirtError, ErrorNumber};
use virt::sys;

use plans::MultifdCompression;

use crate::qemu::devices::{self, SourceCommands};
use crate::qmp::QmpEvent;

/// How long one libvirt call may take before the side is reported not answering.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// What the plan says about the two daemons and the domain.
#[derive(Debug, Clone)]
pub struct LibvirtTarget {
    /// The source daemon's URI.
    pub source_uri: String,
    /// The domain on the source, by name or UUID.
    pub domain: String,
    /// The destination daemon's URI.
    pub destination_uri: String,
    /// The domain's name on the destination; the source's when `None`.
    pub destination_name: Option<String>,
    /// The source daemon connects to the destination's (`VIR_MIGRATE_PEER2PEER`).
    pub peer_to_peer: bool,
    /// Define the domain on the destination (`VIR_MIGRATE_PERSIST_DEST`).
    pub persist: bool,
    /// Remove the source's definition after success (`VIR_MIGRATE_UNDEFINE_SOURCE`).
    pub undefine_source: bool,
    /// The plan's VFIO device ids (the hostdevs' aliases).
    pub devices: Vec<String>,
    /// Hostdevs that pass a different host device through on the destination: the
    /// hostdev's alias (the plan's device id) and the destination host's PCI address.
    pub device_moves: Vec<(String, String)>,
    /// The same for mediated devices (vGPUs): the alias and the destination's UUID.
    pub mdev_moves: Vec<(String, String)>,
}

/// Where the migration call is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Job {
    /// Not started.
    Idle,
    /// The migration call runs.
    Running,
    /// It returned success: the destination holds the domain.
    Completed,
    /// It returned this error.
    Failed(String),
}

/// What the event callbacks and the migration thread share with the driver.
struct Shared {
    job: Mutex<Job>,
    /// QEMU's last `MIGRATION` status on the source.
    status: Mutex<MigrationStatus>,
}

/// A source and a destination libvirt daemon and the domain to move.
pub struct LibvirtDriver {
    target: LibvirtTarget,
    source: Option<Connect>,
    destination: Option<Connect>,
    domain: Option<Domain>,
    /// The domain's name on the source, read at connect.
    name: String,
    events_tx: mpsc::UnboundedSender<DriverEvent>,
    events_rx: Option<mpsc::UnboundedReceiver<DriverEvent>>,
    registrations: Vec<ffi::MonitorEvents>,
    shared: Arc<Shared>,
    setup: Option<Setup>,
    /// The downtime limit found before `configure` changed it, in ms.
    saved_downtime_ms: Option<u64>,
    /// A dirty limit this run set (it outlives the migration).
    dirty_limit_set: bool,
    /// Monitor commands sent, which taint the domain.
    monitor_commands: Vec<String>,
    /// The mode of the last dirty-rate measurement started.
    dirty_mode: DirtyRateMode,
    timeout: Duration,
}

fn failure(side: Side, request: &str, e: &VirtError) -> DriverError {
    let lost = matches!(
        e.code().known(),
        Some(ErrorNumber::NoConnect | ErrorNumber::SystemError | ErrorNumber::Rpc | ErrorNumber::AuthFailed)
    );
    DriverError {
        side,
        request: request.to_string(),
        message: format!("{side}: {request}: {}", e.message()),
        disconnected: lost,
    }
}

fn not_answering(side: Side, request: &str, after: Duration) -> DriverError {
    DriverError {
        side,
        request: request.to_string(),
        message: format!("{side}: {request}: libvirt did not answer within {after:?}"),
        disconnected: false,
    }
}

fn is_no_domain(e: &VirtError) -> bool {
    matches!(e.code().known(), Some(ErrorNumber::NoDomain))
}

/// Looks a domain up by UUID when `id` reads as one, else by name.
fn lookup(connection: &Connect, id: &str) -> Result<Domain, VirtError> {
    let uuid_like = id.len() == 36 && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    match uuid_like {
        true => connection.lookup_domain_by_uuid_string(id),
        false => connection.lookup_domain_by_name(id),
    }
}

/// `10000002` (libvirt's encoding of 10.0.2) as `10.0.2`.
fn version_text(encoded: u32) -> String {
    format!(
        "{}.{}.{}",
        encoded / 1_000_000,
        (encoded / 1_000) % 1_000,
        encoded % 1_000
    )
}

/// A domain's run state in the engine's words (`virDomainState` and its reason).
fn run_state_of(state: i32, reason: i32) -> RunState {
    match state as u32 {
        sys::VIR_DOMAIN_RUNNING => RunState::Running,
        sys::VIR_DOMAIN_PAUSED => RunState::Paused {
            reason: paused_reason(reason).into(),
        },
        sys::VIR_DOMAIN_SHUTOFF if reason as u32 == sys::VIR_DOMAIN_SHUTOFF_MIGRATED => RunState::PostMigrate,
        // Shut off, crashed or shutting down: no QEMU holds the guest.
        _ => RunState::Gone,
    }
}

fn paused_reason(reason: i32) -> &'static str {
    match reason as u32 {
        sys::VIR_DOMAIN_PAUSED_USER => "paused",
        sys::VIR_DOMAIN_PAUSED_MIGRATION => "migration",
        sys::VIR_DOMAIN_PAUSED_IOERROR => "io-error",
        sys::VIR_DOMAIN_PAUSED_SHUTTING_DOWN => "shutdown",
        sys::VIR_DOMAIN_PAUSED_POSTCOPY => "postcopy",
        sys::VIR_DOMAIN_PAUSED_STARTING_UP => "prelaunch",
        sys::VIR_DOMAIN_PAUSED_POSTCOPY_FAILED => "postcopy-failed",
        _ => "paused",
    }
}

impl LibvirtDriver {
    /// A driver for two daemons; nothing is contacted until `connect`.
    pub fn new(target: LibvirtTarget) -> Self {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        LibvirtDriver {
            name: target.domain.clone(),
            target,
            source: None,
            destination: None,
            domain: None,
            events_tx,
            events_rx: Some(events_rx),
            registrations: Vec::new(),
            shared: Arc::new(Shared {
                job: Mutex::new(Job::Idle),
                status: Mutex::new(MigrationStatus::None),
            }),
            setup: None,
            saved_downtime_ms: None,
            dirty_limit_set: false,
            monitor_commands: Vec::new(),
            dirty_mode: DirtyRateMode::DirtyBitmap,
            timeout: CALL_TIMEOUT,
        }
    }

    /// The same driver with another bound on each call (10 s by default).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The monitor commands this run sent through libvirt (each taints the domain).
    pub fn monitor_commands(&self) -> &[String] {
        &self.monitor_commands
    }

    fn job(&self) -> Job {
        self.shared.job.lock().map(|j| j.clone()).unwrap_or(Job::Idle)
    }

    fn destination_name(&self) -> String {
        self.target
            .destination_name
            .clone()
            .unwrap_or_else(|| self.name.clone())
    }

    /// Runs a blocking libvirt call on the blocking pool, under the deadline: `None`
    /// when it did not answer in time (the call goes on in the background).
    async fn call_raw<T: Send + 'static>(
        &self,
        side: Side,
        request: &str,
        f: impl FnOnce() -> Result<T, VirtError> + Send + 'static,
    ) -> Result<Option<Result<T, VirtError>>, DriverError> {
        let task = tokio::task::spawn_blocking(f);
        match tokio::time::timeout(self.timeout, task).await {
            Err(_) => Ok(None),
            Ok(Err(join)) => Err(DriverError {
                side,
                request: request.to_string(),
                message: format!("{side}: {request}: {join}"),
                disconnected: false,
            }),
            Ok(Ok(result)) => Ok(Some(result)),
        }
    }

    /// [`Self::call_raw`] with libvirt's error and a missed deadline as [`DriverError`]s.
    async fn call<T: Send + 'static>(
        &self,
        side: Side,
        request: &str,
        f: impl FnOnce() -> Result<T, VirtError> + Send + 'static,
    ) -> Result<T, DriverError> {
        match self.call_raw(side, request, f).await? {
            None => Err(not_answering(side, request, self.timeout)),
            Some(result) => result.map_err(|e| failure(side, request, &e)),
        }
    }

    fn connection(&self, side: Side, request: &str) -> Result<Connect, DriverError> {
        match side {
            Side::Source => self.source.clone(),
            Side::Destination => self.destination.clone(),
        }
        .ok_or_else(|| DriverError::not_connected(side, request))
    }

    fn source_domain(&self, request: &str) -> Result<Domain, DriverError> {
        self.domain
            .clone()
            .ok_or_else(|| DriverError::not_connected(Side::Source, request))
    }

    /// The destination's domain, when the destination daemon has one by that name.
    async fn destination_domain(&self, request: &str) -> Result<Option<Domain>, DriverError> {
        let connection = self.connection(Side::Destination, request)?;
        let name = self.destination_name();
        self.call(Side::Destination, request, move || {
            match connection.lookup_domain_by_name(&name) {
                Ok(domain) => Ok(Some(domain)),
                Err(e) if is_no_domain(&e) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await
    }

    async fn open(&self, side: Side, uri: &str) -> Result<Connect, DriverError> {
        // libvirt prints every error on stderr unless told not to; this driver reports
        // them itself.
        virt::error::clear_error_callback();
        let uri = uri.to_string();
        self.call(side, "connect", move || Connect::open(Some(&uri)))
            .await
    }

    /// Forwards QEMU's events for this domain from one daemon.
    fn listen_to(&mut self, side: Side, connection: &Connect, domain: String) -> Result<(), DriverError> {
        let tx = self.events_tx.clone();
        let shared = Arc::clone(&self.shared);
        let registration = ffi::MonitorEvents::register(connection, move |event| {
            if event.domain != domain {
                return;
            }
            // The destination's QEMU says "loaded" before libvirt has handed the domain
            // over; the migration thread reports the destination's end instead.
            if side == Side::Destination && event.name == "MIGRATION" {
                return;
            }
            let data = event
                .details
                .as_deref()
                .and_then(|d| serde_json::from_str::<Value>(d).ok());
            let qmp = QmpEvent::new(event.name, data, None);
            let Some(mapped) = crate::qemu::events::map(side, &qmp) else {
                return;
            };
            if let DriverEvent::Migration { status, .. } = &mapped {
                if let Ok(mut last) = shared.status.lock() {
                    *last = status.clone();
                }
            }
            let _ = tx.send(mapped);
        })
        .map_err(|e| failure(side, "register for QEMU events", &e))?;
        self.registrations.push(registration);
        Ok(())
    }

    async fn side_facts(&self, side: Side) -> Result<SideFacts, DriverError> {
        let connection = self.connection(side, "version")?;
        let version = self
            .call(side, "version", move || connection.hyp_version())
            .await
            .map(version_text)?;
        let domain = match side {
            Side::Source => Some(self.source_domain("state")?),
            Side::Destination => self.destination_domain("state").await?,
        };
        let blocked_reasons = match side {
            Side::Source => Vec::new(),
            Side::Destination => self.device_move_problems().await?,
        };
        let Some(domain) = domain else {
            // No domain yet: libvirt creates the incoming QEMU when the migration starts.
            return Ok(SideFacts {
                version,
                run_state: RunState::InMigrate,
                migration: MigrationStatus::Setup,
                blocked_reasons,
                dirty_ring_size: None,
                kvm: true,
                ram_bytes: None,
                migration_capabilities: None,
            });
        };
        let (state, xml, info, stats) = self
            .call(side, "state", move || {
                let state = ffi::domain_state(&domain)?;
                let xml = domain.xml_desc(0)?;
                let info = domain.info()?;
                // An inactive domain has no job to ask about (libvirt refuses the question).
                let stats = match domain.is_active()? {
                    true => ffi::job_stats(&domain, false)?,
                    false => ffi::JobStats::default(),
                };
                Ok((state, xml, info, stats))
            })
            .await?;
        let run_state = run_state_of(state.0, state.1);
        let (run_state, migration) = match (side, &run_state) {
            // A defined but inactive domain on the destination is one a migration can
            // arrive into.
            (Side::Destination, RunState::Gone) => (RunState::InMigrate, MigrationStatus::Setup),
            _ => (run_state, job::status_of(stats.kind)),
        };
        Ok(SideFacts {
            version,
            run_state,
            migration,
            // libvirt refuses a migration QEMU blocks and quotes the reason then; it has
            // no call that lists blockers beforehand.
            blocked_reasons,
            dirty_ring_size: xml::dirty_ring_size(&xml),
            kvm: xml::is_kvm(&xml),
            ram_bytes: Some(info.max_mem.saturating_mul(1024)),
            migration_capabilities: None,
        })
    }

    /// Sends a QMP command to the source's QEMU through libvirt
    /// (`virDomainQemuMonitorCommand`), which taints the domain; used only where libvirt
    /// has no API.
    async fn monitor(&mut self, command: &str, arguments: Value) -> Result<Value, DriverError> {
        let domain = self.source_domain(command)?;
        let text = json!({"execute": command, "arguments": arguments}).to_string();
        self.monitor_commands.push(command.to_string());
        let reply = self
            .call(Side::Source, command, move || {
                domain.qemu_monitor_command(&text, 0)
            })
            .await?;
        let reply: Value = serde_json::from_str(&reply).map_err(|e| DriverError {
            side: Side::Source,
            request: command.to_string(),
            message: format!("source: {command}: libvirt relayed a reply that is not JSON: {e}"),
            disconnected: false,
        })?;
        if let Some(error) = reply.get("error") {
            return Err(DriverError {
                side: Side::Source,
                request: command.to_string(),
                message: format!(
                    "source: {command}: {}",
                    error
                        .get("desc")
                        .and_then(Value::as_str)
                        .unwrap_or("QEMU refused it")
                ),
                disconnected: false,
            });
        }
        Ok(reply.get("return").cloned().unwrap_or(Value::Null))
    }

    /// Why the destination cannot take the hostdevs the plan moves: each destination
    /// device must exist there, be bound to the driver its source device is bound to,
    /// and not be passed through to a running domain already.
    async fn device_move_problems(&self) -> Result<Vec<String>, DriverError> {
        if self.target.device_moves.is_empty() && self.target.mdev_moves.is_empty() {
            return Ok(Vec::new());
        }
        let domain = self.source_domain("dumpxml")?;
        let source_xml = self
            .call(Side::Source, "dumpxml", move || domain.xml_desc(0))
            .await?;
        let mut problems = Vec::new();
        for (alias, to) in &self.target.device_moves {
            let Some(to) = hostdev::PciAddress::parse(to) else {
                problems.push(format!("device {alias}: {to} is not a PCI address"));
                continue;
            };
            let Some(from) = hostdev::address_of(&source_xml, alias) else {
                problems.push(format!(
                    "device {alias}: the source domain has no PCI <hostdev> with that alias to move to {to}"
                ));
                continue;
            };
            let source_driver = self.nodedev_driver(Side::Source, from).await?;
            let Some(destination_driver) = self.nodedev_driver(Side::Destination, to).await? else {
                problems.push(format!(
                    "device {alias}: the destination host has no PCI device {to}"
                ));
                continue;
            };
            if let Some(source_driver) = source_driver.flatten() {
                if destination_driver.as_deref() != Some(source_driver.as_str()) {
                    problems.push(format!(
                        "device {alias}: {to} is bound to {} on the destination, {from} to {source_driver} on the source",
                        destination_driver.as_deref().unwrap_or("no driver")
                    ));
                }
            }
            if let Some(user) = self.destination_user_of(to).await? {
                problems.push(format!(
                    "device {alias}: {to} is passed through to domain {user} on the destination"
                ));
            }
        }
        for (alias, to) in &self.target.mdev_moves {
            let Some(from) = hostdev::mdev_of(&source_xml, alias) else {
                problems.push(format!(
                    "device {alias}: the source domain has no mdev <hostdev> with that alias to move to {to}"
                ));
                continue;
            };
            let Some(destination_type) = self.mdev_type(Side::Destination, to).await? else {
                problems.push(format!(
                    "device {alias}: the destination host has no mediated device {to}"
                ));
                continue;
            };
            if let Some(source_type) = self.mdev_type(Side::Source, &from).await? {
                if source_type != destination_type {
                    problems.push(format!(
                        "device {alias}: mediated device {to} is of type {destination_type} on the destination, {from} of type {source_type} on the source"
                    ));
                }
            }
            if let Some(user) = self.destination_mdev_user_of(to).await? {
                problems.push(format!(
                    "device {alias}: mediated device {to} is passed through to domain {user} on the destination"
                ));
            }
        }
        Ok(problems)
    }

    /// A PCI device's driver on one side: `None` when the host has no such device,
    /// `Some(None)` when it is bound to none.
    async fn nodedev_driver(
        &self,
        side: Side,
        address: hostdev::PciAddress,
    ) -> Result<Option<Option<String>>, DriverError> {
        let connection = self.connection(side, "nodedev-dumpxml")?;
        let name = address.nodedev_name();
        self.call(side, "nodedev-dumpxml", move || {
            match connection.lookup_node_device_by_name(&name) {
                Ok(device) => Ok(Some(hostdev::nodedev_driver(&device.xml_desc(0)?))),
                Err(e) if matches!(e.code().known(), Some(ErrorNumber::NoNodeDevice)) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// A mediated device's type on one side, by UUID; `None` when the host has none.
    async fn mdev_type(&self, side: Side, uuid: &str) -> Result<Option<String>, DriverError> {
        let connection = self.connection(side, "nodedev-list")?;
        let uuid = uuid.to_ascii_lowercase();
        self.call(side, "nodedev-list", move || {
            for device in connection.list_all_node_devices(sys::VIR_CONNECT_LIST_NODE_DEVICES_CAP_MDEV)? {
                if let Some((kind, found)) = hostdev::nodedev_mdev(&device.xml_desc(0)?) {
                    if found == uuid {
                        return Ok(Some(kind));
                    }
                }
            }
            Ok(None)
        })
        .await
    }

    /// The running domain on the destination that passes this mediated device through.
    async fn destination_mdev_user_of(&self, uuid: &str) -> Result<Option<String>, DriverError> {
        let connection = self.connection(Side::Destination, "list")?;
        let uuid = uuid.to_ascii_lowercase();
        self.call(Side::Destination, "list", move || {
            for domain in connection.list_all_domains(sys::VIR_CONNECT_LIST_DOMAINS_ACTIVE)? {
                if hostdev::mdev_uuids(&domain.xml_desc(0)?).contains(&uuid) {
                    return Ok(Some(domain.name()?));
                }
            }
            Ok(None)
        })
        .await
    }

    /// The running domain on the destination that passes this device through, if any.
    async fn destination_user_of(&self, address: hostdev::PciAddress) -> Result<Option<String>, DriverError> {
        let connection = self.connection(Side::Destination, "list")?;
        self.call(Side::Destination, "list", move || {
            for domain in connection.list_all_domains(sys::VIR_CONNECT_LIST_DOMAINS_ACTIVE)? {
                if hostdev::addresses(&domain.xml_desc(0)?).contains(&address) {
                    return Ok(Some(domain.name()?));
                }
            }
            Ok(None)
        })
        .await
    }

    /// The domain XML for the destination with the plan's devices moved, when it moves
    /// any.
    async fn destination_xml(&self) -> Result<Option<String>, DriverError> {
        if self.target.device_moves.is_empty() && self.target.mdev_moves.is_empty() {
            return Ok(None);
        }
        let pci = self.target.device_moves.iter().map(|(alias, to)| {
            hostdev::PciAddress::parse(to)
                .map(|to| (alias.clone(), hostdev::Target::Pci(to)))
                .ok_or_else(|| format!("device {alias}: {to} is not a PCI address"))
        });
        let mdev = self
            .target
            .mdev_moves
            .iter()
            .map(|(alias, to)| Ok((alias.clone(), hostdev::Target::Mdev(to.clone()))));
        let moves = pci.chain(mdev).collect::<Result<Vec<_>, String>>();
        let domain = self.source_domain("dumpxml")?;
        let xml = self
            .call(Side::Source, "dumpxml", move || {
                domain.xml_desc(sys::VIR_DOMAIN_XML_MIGRATABLE | sys::VIR_DOMAIN_XML_SECURE)
            })
            .await?;
        moves
            .and_then(|moves| hostdev::retarget(&xml, &moves))
            .map(Some)
            .map_err(|message| DriverError {
                side: Side::Destination,
                request: "migrate".into(),
                message: format!("destination: migrate: {message}"),
                disconnected: false,
            })
    }

    /// Whether libvirt has handed the domain over while its migration call still runs:
    /// the source's QEMU completed and the destination daemon finished its side (the
    /// domain there paused by `VIR_MIGRATE_PAUSED`, no longer by the migration). What
    /// remains is libvirt's confirmation on the source, which ends the source's QEMU:
    /// about 200 ms measured here, which the guest need not wait for. libvirt itself,
    /// without `VIR_MIGRATE_PAUSED`, starts the destination at this very point.
    async fn handed_over(&self) -> bool {
        matches!(
            self.destination_while_confirming().await,
            Some(RunState::Paused { .. })
        )
    }

    /// The destination's state once libvirt has handed the domain over and is still
    /// confirming on the source: paused (as `VIR_MIGRATE_PAUSED` leaves it) or running
    /// (started since); `None` before the hand-over.
    async fn destination_while_confirming(&self) -> Option<RunState> {
        let completed = self
            .shared
            .status
            .lock()
            .is_ok_and(|s| *s == MigrationStatus::Completed);
        if !completed {
            return None;
        }
        let domain = self.destination_domain("domstate").await.ok()??;
        let (state, reason) = self
            .call(Side::Destination, "domstate", move || ffi::domain_state(&domain))
            .await
            .ok()?;
        match (state as u32, reason as u32) {
            (sys::VIR_DOMAIN_PAUSED, sys::VIR_DOMAIN_PAUSED_USER) => Some(RunState::Paused {
                reason: "paused".into(),
            }),
            (sys::VIR_DOMAIN_RUNNING, _) => Some(RunState::Running),
            _ => None,
        }
    }

    /// Waits (within the call deadline) for libvirt's migration call to return.
    async fn until_the_call_returns(&self) {
        let deadline = Instant::now() + self.timeout;
        while self.job() == Job::Running && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The finished migration's statistics: the destination's copy, else the source's.
    async fn completed_stats(&self) -> Result<ffi::JobStats, DriverError> {
        if let Some(domain) = self.destination_domain("domjobinfo").await? {
            let stats = self
                .call(Side::Destination, "domjobinfo", move || {
                    ffi::job_stats(&domain, true)
                })
                .await?;
            if stats.kind != job::kind::NONE {
                return Ok(stats);
            }
        }
        let domain = self.source_domain("domjobinfo")?;
        self.call(Side::Source, "domjobinfo", move || {
            match ffi::job_stats(&domain, true) {
                Err(e) if is_no_domain(&e) => Ok(ffi::JobStats::default()),
                other => other,
            }
        })
        .await
    }

    /// The flags and typed parameters the setup implies.
    fn migration_request(&self, uri: &str) -> Result<(u32, MigrateParameters), DriverError> {
        let setup = self.setup.clone().unwrap_or_else(|| Setup {
            downtime_limit_ms: 300,
            max_bandwidth: None,
            arm_auto_converge: false,
            switchover_ack: false,
            tls: None,
            stream: Default::default(),
        });
        let mut flags = sys::VIR_MIGRATE_LIVE | sys::VIR_MIGRATE_PAUSED | sys::VIR_MIGRATE_ABORT_ON_ERROR;
        if self.target.peer_to_peer {
            flags |= sys::VIR_MIGRATE_PEER2PEER;
        }
        if self.target.persist {
            flags |= sys::VIR_MIGRATE_PERSIST_DEST;
        }
        if self.target.undefine_source {
            flags |= sys::VIR_MIGRATE_UNDEFINE_SOURCE;
        }
        let mut params = MigrateParameters {
            dest_name: self.target.destination_name.clone(),
            uri: (!uri.is_empty()).then(|| uri.to_string()),
            ..MigrateParameters::default()
        };
        if let Some(bytes) = setup.max_bandwidth {
            // libvirt takes MiB/s; rounding up keeps the link at least as fast as asked.
            params.bandwidth = Some(bytes.div_ceil(1 << 20).max(1));
        }
        if setup.arm_auto_converge {
            // As over QMP: armed at the smallest throttle, raised when the policy acts.
            flags |= sys::VIR_MIGRATE_AUTO_CONVERGE;
            params.auto_converge_initial = Some(1);
            params.auto_converge_increment = Some(1);
        }
        if let Some(channels) = setup.stream.multifd_channels {
            flags |= sys::VIR_MIGRATE_PARALLEL;
            params.parallel_connections = Some(i32::from(channels));
        }
        let level = setup.stream.multifd_compression_level.map(i32::from);
        match setup.stream.multifd_compression {
            Some(MultifdCompression::Zstd) => {
                flags |= sys::VIR_MIGRATE_COMPRESSED;
                params.compression = Some("zstd".into());
                params.compression_zstd_level = level;
            }
            Some(MultifdCompression::Zlib) => {
                flags |= sys::VIR_MIGRATE_COMPRESSED;
                params.compression = Some("zlib".into());
                params.compression_zlib_level = level;
            }
            Some(MultifdCompression::None) | None => {}
        }
        if let Some(cache) = setup.stream.xbzrle_cache_bytes {
            // Validation refuses XBZRLE with multifd, so this is the only method.
            flags |= sys::VIR_MIGRATE_COMPRESSED;
            params.compression = Some("xbzrle".into());
            params.compression_xbzrle_cache = Some(cache);
        }
        if let Some(tls) = &setup.tls {
            // The certificates are the daemons': `migrate_tls_x509_cert_dir` in each
            // host's qemu.conf.
            flags |= sys::VIR_MIGRATE_TLS;
            params.tls_destination = tls.hostname.clone();
        }
        // `switchover_ack` needs nothing from here: libvirt 11 turns `return-path` and
        // `switchover-ack` on for every migration itself (seen with
        // `query-migrate-capabilities` during one), as it does `pause-before-switchover`.
        if setup.stream.zero_page_detection.is_some() || setup.stream.device_state_transfer.is_some() {
            return Err(DriverError {
                side: Side::Source,
                request: "migrate".into(),
                message: "source: migrate: libvirt has no parameter for zero-page detection or a device's \
                          state channel; drop them from the plan or reach QEMU over QMP"
                    .into(),
                disconnected: false,
            });
        }
        Ok((flags, params))
    }
}

#[async_trait]
impl Driver for LibvirtDriver {
    async fn connect(&mut self) -> Result<(), DriverError> {
        ffi::start_event_loop().map_err(|message| DriverError {
            side: Side::Source,
            request: "connect".into(),
            message: format!("source: connect: libvirt's event loop did not start: {message}"),
            disconnected: true,
        })?;
        let source = self.open(Side::Source, &self.target.source_uri.clone()).await?;
        let destination = self
            .open(Side::Destination, &self.target.destination_uri.clone())
            .await?;
        let (domain, name) = {
            let connection = source.clone();
            let id = self.target.domain.clone();
            self.call(Side::Source, "lookup domain", move || {
                let domain = lookup(&connection, &id)?;
                let name = domain.name()?;
                Ok((domain, name))
            })
            .await?
        };
        self.name = name.clone();
        self.listen_to(Side::Source, &source, name)?;
        let destination_name = self.destination_name();
        self.listen_to(Side::Destination, &destination, destination_name)?;
        self.source = Some(source);
        self.destination = Some(destination);
        self.domain = Some(domain);
        Ok(())
    }

    fn take_events(&mut self) -> mpsc::UnboundedReceiver<DriverEvent> {
        self.events_rx
            .take()
            .unwrap_or_else(|| mpsc::unbounded_channel().1)
    }

    async fn inspect(&mut self) -> Result<PairFacts, DriverError> {
        Ok(PairFacts {
            source: self.side_facts(Side::Source).await?,
            destination: self.side_facts(Side::Destination).await?,
        })
    }

    async fn configure(&mut self, setup: &Setup) -> Result<(), DriverError> {
        self.setup = Some(setup.clone());
        // Refuse what libvirt cannot carry before anything changes.
        self.migration_request("")?;
        let domain = self.source_domain("migrate-setmaxdowntime")?;
        let ms = setup.downtime_limit_ms;
        let saved = self
            .call(Side::Source, "migrate-getmaxdowntime", {
                let domain = domain.clone();
                move || ffi::max_downtime(&domain)
            })
            .await?;
        self.call(Side::Source, "migrate-setmaxdowntime", move || {
            domain.migrate_set_max_downtime(ms, 0).map(|_| ())
        })
        .await?;
        self.saved_downtime_ms = Some(saved);
        Ok(())
    }

    async fn start(&mut self, uri: &str) -> Result<(), DriverError> {
        let (flags, mut params) = self.migration_request(uri)?;
        params.dest_xml = self.destination_xml().await?;
        let domain = self.source_domain("migrate")?;
        let destination = self.connection(Side::Destination, "migrate")?;
        let destination_uri = self.target.destination_uri.clone();
        let peer_to_peer = self.target.peer_to_peer;
        let shared = Arc::clone(&self.shared);
        let tx = self.events_tx.clone();
        if let Ok(mut job) = shared.job.lock() {
            *job = Job::Running;
        }
        std::thread::Builder::new()
            .name("libvirt-migrate".into())
            .spawn(move || {
                let result = match peer_to_peer {
                    true => domain.migrate_to_uri3(Some(&destination_uri), params, flags),
                    false => domain.migrate3(&destination, params, flags).map(|_| ()),
                };
                let (job, status) = match result {
                    Ok(()) => (Job::Completed, MigrationStatus::Completed),
                    Err(e) => (Job::Failed(e.message().to_string()), MigrationStatus::Failed),
                };
                if let Ok(mut slot) = shared.job.lock() {
                    *slot = job;
                }
                let _ = tx.send(DriverEvent::DestinationMigration {
                    status,
                    at: Instant::now(),
                });
            })
            .map_err(|e| DriverError {
                side: Side::Source,
                request: "migrate".into(),
                message: format!("source: migrate: no thread for the migration call: {e}"),
                disconnected: false,
            })?;
        Ok(())
    }

    async fn sample(&mut self) -> Result<Sample, DriverError> {
        let source_completed = self
            .shared
            .status
            .lock()
            .is_ok_and(|s| *s == MigrationStatus::Completed);
        if self.job() == Job::Running && source_completed {
            // The final statistics come with the call's return.
            self.until_the_call_returns().await;
        }
        let job = self.job();
        let stats = match &job {
            // The source may no longer know the domain (`undefine_source`); libvirt hands
            // the finished job's statistics to the destination with the domain.
            Job::Completed => self.completed_stats().await?,
            _ => {
                let domain = self.source_domain("domjobinfo")?;
                let finished = !matches!(job, Job::Running | Job::Idle);
                self.call(Side::Source, "domjobinfo", move || {
                    ffi::job_stats(&domain, finished)
                })
                .await?
            }
        };
        let last_event = self
            .shared
            .status
            .lock()
            .map(|s| s.clone())
            .unwrap_or(MigrationStatus::None);
        let status = match &job {
            Job::Completed => MigrationStatus::Completed,
            Job::Failed(_) if stats.kind == job::kind::CANCELLED => MigrationStatus::Cancelled,
            Job::Failed(_) => MigrationStatus::Failed,
            Job::Running if last_event != MigrationStatus::None => last_event,
            _ => job::status_of(stats.kind),
        };
        let mut sample = job::sample(&stats, status, Instant::now());
        if let (Job::Failed(message), None) = (&job, &sample.error) {
            sample.error = Some(message.clone());
        }
        Ok(sample)
    }

    async fn set_downtime_limit(&mut self, ms: u64) -> Result<(), DriverError> {
        let domain = self.source_domain("migrate-setmaxdowntime")?;
        self.call(Side::Source, "migrate-setmaxdowntime", move || {
            domain.migrate_set_max_downtime(ms, 0).map(|_| ())
        })
        .await
    }

    async fn set_max_bandwidth(&mut self, bytes_per_sec: u64) -> Result<(), DriverError> {
        // libvirt counts in MiB/s; a share below 1 MiB/s is still a cap, never "none" (0).
        let mib = (bytes_per_sec / (1024 * 1024)).max(1);
        let domain = self.source_domain("migrate-setspeed")?;
        self.call(Side::Source, "migrate-setspeed", move || {
            domain.migrate_set_max_speed(mib, 0).map(|_| ())
        })
        .await
    }

    async fn throttle(&mut self, throttle: &Throttle) -> Result<(), DriverError> {
        match throttle {
            Throttle::AutoConverge {
                initial,
                increment,
                max,
            } => {
                self.monitor(
                    "migrate-set-parameters",
                    json!({"cpu-throttle-initial": initial, "cpu-throttle-increment": increment,
                           "max-cpu-throttle": max, "cpu-throttle-tailslow": false}),
                )
                .await?;
            }
            Throttle::DirtyLimit { mib_per_sec } => {
                self.monitor("set-vcpu-dirty-limit", json!({"dirty-rate": mib_per_sec}))
                    .await?;
                self.dirty_limit_set = true;
            }
        }
        Ok(())
    }

    async fn release_throttle(&mut self) -> Result<(), DriverError> {
        if std::mem::take(&mut self.dirty_limit_set) {
            self.monitor("cancel-vcpu-dirty-limit", json!({})).await?;
        }
        Ok(())
    }

    async fn stop_source(&mut self) -> Result<(), DriverError> {
        let domain = self.source_domain("suspend")?;
        self.call(Side::Source, "suspend", move || domain.suspend().map(|_| ()))
            .await
    }

    /// Aborts the job, then waits (within the call deadline) until libvirt has finished
    /// with it: the migration call returned and the destination daemon no longer runs
    /// the incoming domain, so that what the run reports next is where the VM stays.
    async fn cancel(&mut self) -> Result<(), DriverError> {
        let domain = self.source_domain("domjobabort")?;
        self.call(Side::Source, "domjobabort", move || {
            match ffi::abort_job(&domain) {
                // No job to abort: the migration already ended.
                Err(e) if matches!(e.code().known(), Some(ErrorNumber::OperationInvalid)) => Ok(()),
                other => other,
            }
        })
        .await?;
        let deadline = Instant::now() + self.timeout;
        while self.job() == Job::Running && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if self.job() == Job::Completed {
            return Ok(());
        }
        while Instant::now() < deadline {
            let Some(domain) = self.destination_domain("domstate").await? else {
                return Ok(());
            };
            let active = self
                .call(Side::Destination, "domstate", move || {
                    match ffi::domain_state(&domain) {
                        Ok((state, _)) => Ok(state as u32 != sys::VIR_DOMAIN_SHUTOFF),
                        Err(e) if is_no_domain(&e) => Ok(false),
                        Err(e) => Err(e),
                    }
                })
                .await?;
            if !active {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    async fn run_state(&mut self, side: Side) -> Result<RunState, DriverError> {
        let job = self.job();
        let domain = match side {
            Side::Source => match self.source_domain("domstate") {
                Ok(domain) => Some(domain),
                Err(_) => return Ok(RunState::Gone),
            },
            // While libvirt moves the domain in, the destination waits for it.
            Side::Destination if job == Job::Running => {
                return Ok(self
                    .destination_while_confirming()
                    .await
                    .unwrap_or(RunState::InMigrate));
            }
            Side::Destination => match self.destination_domain("domstate").await {
                Ok(domain) => domain,
                Err(e) if e.disconnected => return Ok(RunState::Gone),
                Err(e) => return Err(e),
            },
        };
        let Some(domain) = domain else {
            return Ok(RunState::InMigrate);
        };
        let asked = self
            .call_raw(side, "domstate", move || match ffi::domain_state(&domain) {
                Ok(state) => Ok(Some(state)),
                Err(e) if is_no_domain(&e) => Ok(None),
                Err(e) => Err(e),
            })
            .await?;
        let Some(answer) = asked else {
            return Ok(RunState::NotAnswering {
                after_ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
            });
        };
        Ok(match (side, answer) {
            (_, Ok(Some((state, reason)))) => match (side, run_state_of(state, reason)) {
                // An inactive destination holds no guest: a migration could come in.
                (Side::Destination, RunState::Gone) => RunState::InMigrate,
                (_, state) => state,
            },
            // Undefined after it handed the guest over (`undefine_source`).
            (Side::Source, Ok(None)) if job == Job::Completed => RunState::PostMigrate,
            (Side::Source, Ok(None)) => RunState::Gone,
            (Side::Destination, Ok(None)) => RunState::InMigrate,
            (_, Err(e)) => {
                let error = failure(side, "domstate", &e);
                match error.disconnected {
                    true => RunState::Gone,
                    false => return Err(error),
                }
            }
        })
    }

    async fn destination_migration(&mut self) -> Result<MigrationStatus, DriverError> {
        Ok(match self.job() {
            Job::Idle => MigrationStatus::Setup,
            Job::Running if self.handed_over().await => MigrationStatus::Completed,
            Job::Running => MigrationStatus::Active,
            Job::Completed => MigrationStatus::Completed,
            Job::Failed(_) => MigrationStatus::Failed,
        })
    }

    async fn resume(&mut self, side: Side) -> Result<(), DriverError> {
        let domain = match side {
            Side::Source => self.source_domain("resume")?,
            Side::Destination => self
                .destination_domain("resume")
                .await?
                .ok_or_else(|| DriverError {
                    side,
                    request: "resume".into(),
                    message: format!(
                        "destination: resume: the destination daemon has no domain {}",
                        self.destination_name()
                    ),
                    disconnected: false,
                })?,
        };
        self.call(side, "resume", move || domain.resume().map(|_| ()))
            .await
    }

    /// The domain is tainted when this run sent QEMU a command through libvirt.
    fn footprint(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if self.job() == Job::Completed {
            for (alias, to) in &self.target.device_moves {
                notes.push(format!("device {alias} passes through {to} on the destination"));
            }
            for (alias, to) in &self.target.mdev_moves {
                notes.push(format!(
                    "device {alias} passes through mediated device {to} on the destination"
                ));
            }
        }
        if self.monitor_commands.is_empty() {
            return notes;
        }
        let mut counted: Vec<(String, usize)> = Vec::new();
        for command in &self.monitor_commands {
            match counted.iter_mut().find(|(c, _)| c == command) {
                Some((_, n)) => *n += 1,
                None => counted.push((command.clone(), 1)),
            }
        }
        let list: Vec<String> = counted
            .iter()
            .map(|(c, n)| match n {
                1 => c.clone(),
                n => format!("{c} \u{d7}{n}"),
            })
            .collect();
        notes.push(format!(
            "libvirt marked the domain tainted (custom-monitor): QEMU commands libvirt has no API for \
             were sent through it ({})",
            list.join(", ")
        ));
        notes
    }

    engine::capabilities!(device_events, kernel_dirty_rate, survey);

    /// Puts back the downtime limit on a source that still runs the guest (libvirt
    /// puts back its own migration parameters when a job ends).
    async fn restore(&mut self) -> Result<(), DriverError> {
        // libvirt may still be confirming on the source after the destination runs.
        self.until_the_call_returns().await;
        let Some(ms) = self.saved_downtime_ms.take() else {
            return Ok(());
        };
        if self.job() == Job::Completed {
            return Ok(());
        }
        let Ok(domain) = self.source_domain("migrate-setmaxdowntime") else {
            return Ok(());
        };
        self.call(Side::Source, "migrate-setmaxdowntime", move || {
            domain.migrate_set_max_downtime(ms, 0).map(|_| ())
        })
        .await
    }
}

/// The kernel's dirty rate through libvirt: `virDomainStartDirtyRateCalc` while no job
/// runs; during a migration libvirt refuses it (it waits 30 s for the migration's job lock,
/// then fails), so QEMU's `calc-dirty-rate` is sent through libvirt instead, which taints
/// the domain. The result is read from libvirt's `dirtyrate.*` statistics either way.
#[async_trait]
impl KernelDirtyRate for LibvirtDriver {
    async fn start_dirty_rate(&mut self, mode: DirtyRateMode, calc: Duration) -> Result<(), DriverError> {
        self.dirty_mode = mode;
        if self.job() == Job::Running {
            let mode_name = match mode {
                DirtyRateMode::DirtyRing => "dirty-ring",
                DirtyRateMode::DirtyBitmap => "dirty-bitmap",
            };
            let args = json!({"calc-time": calc.as_millis() as u64, "calc-time-unit": "millisecond", "mode": mode_name});
            return match self.monitor("calc-dirty-rate", args).await {
                // One still running delivers its result all the same.
                Err(e) if e.message.contains("already being measured") => Ok(()),
                other => other.map(|_| ()),
            };
        }
        let domain = self.source_domain("domdirtyrate-calc")?;
        let seconds = i32::try_from(calc.as_secs().max(1)).unwrap_or(i32::MAX);
        let flags = match mode {
            DirtyRateMode::DirtyRing => sys::VIR_DOMAIN_DIRTYRATE_MODE_DIRTY_RING,
            DirtyRateMode::DirtyBitmap => sys::VIR_DOMAIN_DIRTYRATE_MODE_DIRTY_BITMAP,
        };
        self.call(Side::Source, "domdirtyrate-calc", move || {
            ffi::start_dirty_rate_calc(&domain, seconds, flags)
        })
        .await
    }

    async fn dirty_rate(&mut self) -> Result<Option<DirtyRate>, DriverError> {
        let domain = self.source_domain("domstats")?;
        let mode = self.dirty_mode;
        let fields = self
            .call(Side::Source, "domstats", move || {
                ffi::domain_stats(&domain, sys::VIR_DOMAIN_STATS_DIRTYRATE)
            })
            .await?;
        Ok(job::dirty_rate(&fields, mode))
    }
}

#[async_trait]
impl SourceCommands for LibvirtDriver {
    async fn source_command(&mut self, command: &str, args: Value) -> Result<Value, DriverError> {
        self.monitor(command, args).await
    }
}

/// VFIO devices through libvirt. Their QOM properties (is `migration-events` on?) have no
/// libvirt API, so they are read with QEMU's `qom-list`/`qom-get` through libvirt, which
/// taints the domain; their `VFIO_MIGRATION` events arrive relayed by libvirt. A device
/// cannot be changed after QEMU started it: `migration-events` comes from the domain XML.
#[async_trait]
impl DeviceEvents for LibvirtDriver {
    /// The domain's hostdevs, from its XML; QEMU's properties (`migration-events`,
    /// `x-migration-multifd-transfer`) only for the devices the plan lists, which is
    /// where a command through libvirt is needed. A plan device the XML does not
    /// describe (added with `<qemu:commandline>`, say) makes the whole list come from
    /// QEMU's QOM tree, the truth about what QEMU runs.
    async fn vfio_devices(&mut self) -> Result<Vec<DeviceInfo>, DriverError> {
        let domain = self.source_domain("dumpxml")?;
        let xml = self
            .call(Side::Source, "dumpxml", move || domain.xml_desc(0))
            .await?;
        let aliases = hostdev::aliases(&xml);
        if self.target.devices.iter().any(|id| !aliases.contains(id)) {
            return devices::list_vfio(self).await;
        }
        let mut found = Vec::new();
        for alias in aliases {
            let qom_path = format!("/machine/peripheral/{alias}");
            let listed = self.target.devices.contains(&alias);
            let (migration_events, multifd_transfer) = match listed {
                true => devices::properties(self, &qom_path).await,
                false => (None, None),
            };
            found.push(DeviceInfo {
                id: alias,
                qom_path,
                type_name: "vfio-pci".into(),
                migration_events,
                multifd_transfer,
            });
        }
        Ok(found)
    }

    async fn enable_migration_events(&mut self, qom_path: &str) -> Result<(), DriverError> {
        let alias = qom_path.rsplit('/').next().unwrap_or(qom_path).to_string();
        let args = json!({"path": qom_path, "property": "migration-events", "value": true});
        self.monitor("qom-set", args)
            .await
            .map(|_| ())
            .map_err(|e| DriverError {
                message: format!("{}; {}", e.message, override_hint(&alias)),
                ..e
            })
    }
}

/// The domain XML that starts a hostdev with `migration-events` on, for an operator
/// whose device has it off.
pub fn override_hint(alias: &str) -> String {
    format!(
        "turn it on in the domain XML (xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'): \
         <qemu:override><qemu:device alias='{alias}'><qemu:frontend><qemu:property \
         name='migration-events' type='bool' value='true'/></qemu:frontend></qemu:device></qemu:override>, \
         then restart the domain"
    )
}

#[cfg(test)]
mod tests {
    use engine::driver::{StreamSetup, TlsSetup};

    use super::*;

    fn driver(peer_to_peer: bool) -> LibvirtDriver {
        LibvirtDriver::new(LibvirtTarget {
            source_uri: "qemu:///system".into(),
            domain: "vm".into(),
            destination_uri: "qemu+ssh://dst.example/system".into(),
            destination_name: None,
            peer_to_peer,
            persist: true,
            undefine_source: true,
            devices: Vec::new(),
            device_moves: Vec::new(),
            mdev_moves: Vec::new(),
        })
    }

    fn setup(stream: StreamSetup) -> Setup {
        Setup {
            downtime_limit_ms: 300,
            max_bandwidth: Some(100 << 20),
            arm_auto_converge: true,
            switchover_ack: true,
            tls: Some(TlsSetup {
                source_dir: "/etc/pki/qemu".into(),
                destination_dir: "/etc/pki/qemu".into(),
                hostname: Some("dst.example".into()),
            }),
            stream,
        }
    }

    fn has(flags: u32, flag: u32) -> bool {
        flags & flag == flag
    }

    #[test]
    fn multifd_with_zstd_tls_and_auto_converge_become_libvirt_s_flags_and_parameters() {
        let mut d = driver(true);
        d.setup = Some(setup(StreamSetup {
            multifd_channels: Some(4),
            multifd_compression: Some(MultifdCompression::Zstd),
            multifd_compression_level: Some(3),
            ..StreamSetup::default()
        }));
        let (flags, params) = d
            .migration_request("tcp://10.0.0.2:49152")
            .expect("carried by libvirt");
        for flag in [
            sys::VIR_MIGRATE_LIVE,
            sys::VIR_MIGRATE_PAUSED,
            sys::VIR_MIGRATE_PEER2PEER,
            sys::VIR_MIGRATE_PERSIST_DEST,
            sys::VIR_MIGRATE_UNDEFINE_SOURCE,
            sys::VIR_MIGRATE_AUTO_CONVERGE,
            sys::VIR_MIGRATE_PARALLEL,
            sys::VIR_MIGRATE_COMPRESSED,
            sys::VIR_MIGRATE_TLS,
        ] {
            assert!(has(flags, flag), "flag {flag:#x} missing from {flags:#x}");
        }
        assert!(
            !has(flags, sys::VIR_MIGRATE_POSTCOPY),
            "post-copy is never offered"
        );
        assert_eq!(params.parallel_connections, Some(4));
        assert_eq!(params.compression.as_deref(), Some("zstd"));
        assert_eq!(params.compression_zstd_level, Some(3));
        assert_eq!(params.bandwidth, Some(100), "MiB/s");
        assert_eq!(
            (params.auto_converge_initial, params.auto_converge_increment),
            (Some(1), Some(1))
        );
        assert_eq!(params.tls_destination.as_deref(), Some("dst.example"));
        assert_eq!(params.uri.as_deref(), Some("tcp://10.0.0.2:49152"));
    }

    #[test]
    fn xbzrle_is_libvirt_s_compression_method_with_its_cache() {
        let mut d = driver(false);
        d.setup = Some(setup(StreamSetup {
            xbzrle_cache_bytes: Some(64 << 20),
            ..StreamSetup::default()
        }));
        let (flags, params) = d.migration_request("").expect("carried by libvirt");
        assert!(has(flags, sys::VIR_MIGRATE_COMPRESSED));
        assert!(!has(flags, sys::VIR_MIGRATE_PEER2PEER), "managed");
        assert!(!has(flags, sys::VIR_MIGRATE_PARALLEL));
        assert_eq!(params.compression.as_deref(), Some("xbzrle"));
        assert_eq!(params.compression_xbzrle_cache, Some(64 << 20));
        assert_eq!(params.uri, None, "libvirt chooses the route");
    }

    #[test]
    fn what_libvirt_has_no_parameter_for_is_refused_before_anything_changes() {
        let mut d = driver(false);
        d.setup = Some(setup(StreamSetup {
            zero_page_detection: Some(plans::ZeroPageDetection::None),
            ..StreamSetup::default()
        }));
        let refused = d.migration_request("").expect_err("no libvirt parameter");
        assert!(refused.message.contains("zero-page"), "{}", refused.message);
    }
}
