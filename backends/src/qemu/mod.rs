//! The QMP backend: an [`engine::Driver`] over two QEMU monitors.
//!
//! It reports what QEMU says and does what the engine asks; it decides nothing. What it
//! changes (capabilities and parameters on the source, capabilities on the destination)
//! it remembers, so that [`Driver::restore`] puts both back as it found them, after an
//! aborted run and after a completed one alike: the source QEMU may live on, and a later
//! migration by another tool must not be surprised by, say, `pause-before-switchover`
//! left on. TLS credentials for the stream are added to both sides and removed again
//! ([`tls`]); the stream's multifd, compression and device-channel settings are set on
//! both sides and put back ([`stream`]).
//!
//! Facts are validated, not guessed ([`stats`]); a side that does not answer in time is
//! "not answering", and only a closed connection is "gone".

pub(crate) mod devices;
pub(crate) mod events;
pub mod stats;
pub mod stream;
mod survey;
pub mod tls;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::time::Instant;

use async_trait::async_trait;
use engine::driver::{
    DeviceEvents, DeviceInfo, DirtyRate, DirtyRateMode, Driver, DriverError, DriverEvent, KernelDirtyRate,
    Listen, MigrationStatus, PairFacts, RunState, Sample, Setup, Side, SideFacts, SideSurvey, Survey,
    SwitchoverHold, Throttle,
};
use plans::QmpAddress;
use qapi_qmp::{MigrateSetParameters, MigrationCapability, MigrationCapabilityStatus};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::qmp::{QmpClient, QmpEndpoint, QmpError, QmpPeer, DEFAULT_COMMAND_TIMEOUT};
use stats::UnexpectedReply;

/// How long connecting to a monitor may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Turns a plan's QMP address into a client endpoint.
pub fn endpoint(address: &QmpAddress) -> QmpEndpoint {
    match address {
        QmpAddress::Unix(path) => QmpEndpoint::Unix(path.clone()),
        QmpAddress::Tcp(host, port) => {
            let ip = host.parse::<IpAddr>().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
            QmpEndpoint::Tcp(SocketAddr::new(ip, *port))
        }
    }
}

/// What `configure` changed, with the values it found, for `restore` (and, through a
/// journal, for another process after this one died).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Saved {
    /// The source's capabilities.
    capabilities: Vec<(MigrationCapability, bool)>,
    /// The source's parameters.
    parameters: Option<MigrateSetParameters>,
    /// The destination's capabilities (`return-path`, `switchover-ack`, `multifd`);
    /// absent from journals written before they were kept.
    #[serde(default)]
    destination_capabilities: Vec<(MigrationCapability, bool)>,
    /// TLS credentials added and parameters changed, on both sides; absent from
    /// journals written before the stream could be encrypted.
    #[serde(default, skip_serializing_if = "tls::SavedTls::is_empty")]
    tls: tls::SavedTls,
    /// The stream's parameters and device properties, on both sides; absent from
    /// journals written before the stream could be tuned.
    #[serde(default, skip_serializing_if = "stream::SavedStream::is_empty")]
    stream: stream::SavedStream,
}

/// A source and a destination QEMU, reached over QMP.
pub struct QmpDriver {
    source_address: QmpEndpoint,
    destination_address: QmpEndpoint,
    source: Option<QmpClient>,
    destination: Option<QmpClient>,
    events: Option<mpsc::UnboundedReceiver<DriverEvent>>,
    saved: Saved,
    dirty_mode: DirtyRateMode,
    connect_timeout: Duration,
    command_timeout: Duration,
}

fn error(side: Side, request: &str, e: QmpError) -> DriverError {
    DriverError {
        side,
        request: request.to_string(),
        message: e.to_string(),
        disconnected: e.connection_lost(),
    }
}

/// A reply that answered but did not say what the command promises: the side is there,
/// so it is not disconnected.
fn unexpected(side: Side, peer: &QmpPeer, e: UnexpectedReply) -> DriverError {
    DriverError {
        side,
        request: e.command.to_string(),
        message: format!("{peer}: {e}"),
        disconnected: false,
    }
}

/// A capability's state in a `query-migrate-capabilities` reply (off when not listed).
fn capability_state(list: &Value, name: &str) -> bool {
    list.as_array()
        .and_then(|a| {
            a.iter()
                .find(|c| c.get("capability").and_then(Value::as_str) == Some(name))
        })
        .and_then(|c| c.get("state").and_then(Value::as_bool))
        .unwrap_or(false)
}

impl QmpDriver {
    /// A driver for two monitors; nothing is contacted until `connect`.
    pub fn new(source: &QmpAddress, destination: &QmpAddress) -> Self {
        QmpDriver {
            source_address: endpoint(source),
            destination_address: endpoint(destination),
            source: None,
            destination: None,
            events: None,
            saved: Saved::default(),
            dirty_mode: DirtyRateMode::DirtyBitmap,
            connect_timeout: CONNECT_TIMEOUT,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
        }
    }

    /// The same driver with another bound on connecting and on each command (10 s
    /// each by default): a side that takes longer is reported not answering.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self.command_timeout = timeout;
        self
    }

    /// Runs a command whose reply is a fact the engine decides on, and validates it.
    async fn fact<T>(
        &self,
        side: Side,
        command: &str,
        read: impl FnOnce(&Value) -> Result<T, UnexpectedReply>,
    ) -> Result<T, DriverError> {
        let client = self.client(side, command)?;
        let reply = self.raw(side, command, None).await?;
        read(&reply).map_err(|e| unexpected(side, client.peer(), e))
    }

    /// Connects to one side, dropping an old connection first: QEMU serves one client
    /// per monitor.
    async fn connect_one(&mut self, side: Side) -> Result<(), DriverError> {
        let (slot, address) = match side {
            Side::Source => (&mut self.source, &self.source_address),
            Side::Destination => (&mut self.destination, &self.destination_address),
        };
        // QEMU serves one client per monitor: the old connection goes first.
        *slot = None;
        let mut client = QmpClient::connect(address, &side.to_string(), self.connect_timeout)
            .await
            .map_err(|e| error(side, "connect", e))?;
        client.set_command_timeout(self.command_timeout);
        *slot = Some(client);
        Ok(())
    }

    fn client(&self, side: Side, request: &str) -> Result<&QmpClient, DriverError> {
        match side {
            Side::Source => self.source.as_ref(),
            Side::Destination => self.destination.as_ref(),
        }
        .ok_or_else(|| DriverError::not_connected(side, request))
    }

    async fn raw(&self, side: Side, command: &str, args: Option<Value>) -> Result<Value, DriverError> {
        self.client(side, command)?
            .execute_raw(command, args)
            .await
            .map_err(|e| error(side, command, e))
    }

    async fn typed<C: qapi_spec::Command>(&self, side: Side, cmd: C) -> Result<C::Ok, DriverError> {
        self.client(side, C::NAME)?
            .execute(cmd)
            .await
            .map_err(|e| error(side, C::NAME, e))
    }

    async fn side_facts(&self, side: Side) -> Result<SideFacts, DriverError> {
        let client = self.client(side, "query-version")?;
        let v = &client.greeting().version;
        let version = format!("{}.{}.{}", v.major, v.minor, v.micro);
        let run_state = self.fact(side, "query-status", stats::run_state).await?;
        let (migration, blocked_reasons) = self
            .fact(side, "query-migrate", |reply| {
                Ok((stats::migration_status(reply)?, stats::blocked_reasons(reply)?))
            })
            .await?;
        let kvm = self.fact(side, "query-kvm", stats::kvm_enabled).await?;
        // QMP does not show the ring size (the accelerator is not in the QOM tree), but
        // QEMU refuses a dirty-ring measurement at once when the ring is off. When it is
        // on, the 100 ms measurement is waited out so the convergence loop can start its
        // own.
        let dirty_ring_size = if kvm && side == Side::Source {
            self.probe_dirty_ring().await?
        } else {
            None
        };
        let ram_bytes = self
            .raw(side, "query-memory-size-summary", None)
            .await
            .ok()
            .and_then(|v| v.get("base-memory").and_then(Value::as_u64));
        let migration_capabilities = self
            .fact(side, "query-migrate-capabilities", stats::capability_names)
            .await?;
        Ok(SideFacts {
            version,
            run_state,
            migration,
            blocked_reasons,
            dirty_ring_size,
            kvm,
            ram_bytes,
            migration_capabilities: Some(migration_capabilities),
        })
    }

    async fn probe_dirty_ring(&self) -> Result<Option<u64>, DriverError> {
        let args = json!({"calc-time": 100, "calc-time-unit": "millisecond", "mode": "dirty-ring"});
        match self.raw(Side::Source, "calc-dirty-rate", Some(args)).await {
            Ok(_) => {}
            Err(e) if !e.disconnected => return Ok(None),
            Err(e) => return Err(e),
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            let reply = self.raw(Side::Source, "query-dirty-rate", None).await?;
            if reply.get("status").and_then(Value::as_str) != Some("measuring") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The size itself is not reported; any ring is enough for what the engine does.
        Ok(Some(1))
    }

    async fn set_capabilities(
        &self,
        side: Side,
        caps: &[(MigrationCapability, bool)],
    ) -> Result<(), DriverError> {
        let capabilities = caps
            .iter()
            .map(|(capability, state)| MigrationCapabilityStatus {
                capability: *capability,
                state: *state,
            })
            .collect();
        self.typed(side, qapi_qmp::migrate_set_capabilities { capabilities })
            .await?;
        Ok(())
    }

    /// Puts capabilities back on one side: all in one command, or, when QEMU refuses
    /// the set, one at a time until nothing more is accepted (QEMU checks each change
    /// against the others: `return-path` cannot go off while `switchover-ack` is on).
    /// Returns what was refused.
    async fn put_back(&self, side: Side, caps: Vec<(MigrationCapability, bool)>) -> Vec<DriverError> {
        match self.set_capabilities(side, &caps).await {
            Ok(()) => return Vec::new(),
            Err(e) if e.disconnected => return vec![e],
            Err(_) => {}
        }
        let mut left = caps;
        loop {
            let mut refused = Vec::new();
            let mut still = Vec::new();
            for cap in &left {
                match self.set_capabilities(side, std::slice::from_ref(cap)).await {
                    Ok(()) => {}
                    Err(e) if e.disconnected => return vec![e],
                    Err(e) => {
                        refused.push(e);
                        still.push(*cap);
                    }
                }
            }
            if still.is_empty() || still.len() == left.len() {
                return refused;
            }
            left = still;
        }
    }

    async fn set_parameters(&self, params: MigrateSetParameters) -> Result<(), DriverError> {
        self.typed(Side::Source, qapi_qmp::migrate_set_parameters(params))
            .await?;
        Ok(())
    }
}

#[async_trait]
impl Driver for QmpDriver {
    async fn connect(&mut self) -> Result<(), DriverError> {
        let mut source = QmpClient::connect(&self.source_address, "source", self.connect_timeout)
            .await
            .map_err(|e| error(Side::Source, "connect", e))?;
        let mut destination =
            QmpClient::connect(&self.destination_address, "destination", self.connect_timeout)
                .await
                .map_err(|e| error(Side::Destination, "connect", e))?;
        source.set_command_timeout(self.command_timeout);
        destination.set_command_timeout(self.command_timeout);
        self.events = Some(events::forward(&source, &destination));
        self.source = Some(source);
        self.destination = Some(destination);
        Ok(())
    }

    fn hung_up(&self) -> Option<Side> {
        [
            (Side::Source, &self.source),
            (Side::Destination, &self.destination),
        ]
        .into_iter()
        .find(|(_, client)| client.as_ref().is_some_and(QmpClient::is_hung_up))
        .map(|(side, _)| side)
    }

    fn take_events(&mut self) -> mpsc::UnboundedReceiver<DriverEvent> {
        self.events.take().unwrap_or_else(|| mpsc::unbounded_channel().1)
    }

    async fn reconnect(&mut self, side: Side) -> Result<(), DriverError> {
        self.connect_one(side).await
    }

    async fn inspect(&mut self) -> Result<PairFacts, DriverError> {
        Ok(PairFacts {
            source: self.side_facts(Side::Source).await?,
            destination: self.side_facts(Side::Destination).await?,
        })
    }

    async fn configure(&mut self, setup: &Setup) -> Result<(), DriverError> {
        let current = self.raw(Side::Source, "query-migrate-capabilities", None).await?;
        let was = |name: &str| capability_state(&current, name);
        let mut wanted = vec![
            (MigrationCapability::events, "events", true),
            (
                MigrationCapability::pause_before_switchover,
                "pause-before-switchover",
                true,
            ),
            (
                MigrationCapability::auto_converge,
                "auto-converge",
                setup.arm_auto_converge,
            ),
            // The stream's shape is the plan's: on when it asks, off when it does not,
            // whatever an earlier user left. A capability this QEMU does not list reads
            // as off, so asking for it off changes nothing.
            (
                MigrationCapability::multifd,
                "multifd",
                setup.stream.multifd_channels.is_some(),
            ),
            (
                MigrationCapability::xbzrle,
                "xbzrle",
                setup.stream.xbzrle_cache_bytes.is_some(),
            ),
        ];
        // The destination must agree on multifd before it listens; its events say the
        // moment it has loaded, so its guest is started without polling while paused.
        let mut there_wanted = vec![
            (
                MigrationCapability::multifd,
                "multifd",
                setup.stream.multifd_channels.is_some(),
            ),
            (MigrationCapability::events, "events", true),
        ];
        if setup.switchover_ack {
            // The source waits for the destination to acknowledge pre-copy devices'
            // initial data; both need the return path for it.
            for pair in [
                (MigrationCapability::return_path, "return-path", true),
                (MigrationCapability::switchover_ack, "switchover-ack", true),
            ] {
                wanted.push(pair);
                there_wanted.push(pair);
            }
        }
        let there = self
            .raw(Side::Destination, "query-migrate-capabilities", None)
            .await?;
        there_wanted.retain(|(_, name, state)| capability_state(&there, name) != *state);
        self.saved.destination_capabilities = there_wanted
            .iter()
            .map(|(cap, name, _)| (*cap, capability_state(&there, name)))
            .collect();
        let there_set: Vec<_> = there_wanted.iter().map(|(c, _, s)| (*c, *s)).collect();
        if !there_set.is_empty() {
            self.set_capabilities(Side::Destination, &there_set).await?;
        }
        wanted.retain(|(_, name, state)| was(name) != *state);
        self.saved.capabilities = wanted.iter().map(|(c, name, _)| (*c, was(name))).collect();
        let set: Vec<_> = wanted.iter().map(|(c, _, s)| (*c, *s)).collect();
        if !set.is_empty() {
            self.set_capabilities(Side::Source, &set).await?;
        }

        let params = self.raw(Side::Source, "query-migrate-parameters", None).await?;
        let param = |key: &str| params.get(key).and_then(Value::as_u64);
        self.saved.parameters = Some(MigrateSetParameters {
            downtime_limit: param("downtime-limit"),
            max_bandwidth: param("max-bandwidth"),
            cpu_throttle_initial: param("cpu-throttle-initial").map(|v| v as u8 as _),
            cpu_throttle_increment: param("cpu-throttle-increment").map(|v| v as u8 as _),
            max_cpu_throttle: param("max-cpu-throttle").map(|v| v as u8 as _),
            cpu_throttle_tailslow: params.get("cpu-throttle-tailslow").and_then(Value::as_bool),
            ..MigrateSetParameters::default()
        });
        let mut new = MigrateSetParameters {
            downtime_limit: Some(setup.downtime_limit_ms),
            max_bandwidth: setup.max_bandwidth,
            ..MigrateSetParameters::default()
        };
        if setup.arm_auto_converge {
            // auto-converge cannot be switched on once a migration runs, so it is armed
            // now at the smallest throttle QEMU accepts (1%) and raised when the policy
            // escalates to it.
            new.cpu_throttle_initial = Some(1);
            new.cpu_throttle_increment = Some(1);
            new.max_cpu_throttle = Some(1);
            // With tailslow QEMU adds less than the increment near the end: a sized
            // throttle must land where it was set.
            new.cpu_throttle_tailslow = Some(false);
        }
        self.set_parameters(new).await?;
        stream::configure(self, &setup.stream).await?;
        if let Some(setup) = &setup.tls {
            tls::configure(self, setup).await?;
        }
        Ok(())
    }

    async fn start(&mut self, uri: &str) -> Result<(), DriverError> {
        self.raw(Side::Source, "migrate", Some(json!({"uri": uri})))
            .await?;
        Ok(())
    }

    async fn sample(&mut self) -> Result<Sample, DriverError> {
        self.fact(Side::Source, "query-migrate", |reply| {
            stats::sample(reply, Instant::now())
        })
        .await
    }

    async fn set_downtime_limit(&mut self, ms: u64) -> Result<(), DriverError> {
        self.set_parameters(MigrateSetParameters {
            downtime_limit: Some(ms),
            ..MigrateSetParameters::default()
        })
        .await
    }

    async fn set_max_bandwidth(&mut self, bytes_per_sec: u64) -> Result<(), DriverError> {
        self.set_parameters(MigrateSetParameters {
            max_bandwidth: Some(bytes_per_sec as _),
            ..MigrateSetParameters::default()
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
                self.set_parameters(MigrateSetParameters {
                    cpu_throttle_initial: Some(*initial as _),
                    cpu_throttle_increment: Some(*increment as _),
                    max_cpu_throttle: Some(*max as _),
                    ..MigrateSetParameters::default()
                })
                .await
            }
            Throttle::DirtyLimit { mib_per_sec } => {
                self.typed(
                    Side::Source,
                    qapi_qmp::set_vcpu_dirty_limit {
                        cpu_index: None,
                        dirty_rate: *mib_per_sec,
                    },
                )
                .await?;
                Ok(())
            }
        }
    }

    async fn release_throttle(&mut self) -> Result<(), DriverError> {
        // Only a dirty limit outlives the migration; auto-converge stops with it.
        let limits = self
            .raw(Side::Source, "query-vcpu-dirty-limit", None)
            .await
            .unwrap_or(Value::Null);
        if limits.as_array().is_some_and(|a| !a.is_empty()) {
            self.typed(
                Side::Source,
                qapi_qmp::cancel_vcpu_dirty_limit { cpu_index: None },
            )
            .await?;
        }
        Ok(())
    }

    async fn stop_source(&mut self) -> Result<(), DriverError> {
        self.typed(Side::Source, qapi_qmp::stop {}).await?;
        Ok(())
    }

    async fn cancel(&mut self) -> Result<(), DriverError> {
        self.typed(Side::Source, qapi_qmp::migrate_cancel {}).await?;
        Ok(())
    }

    /// Gone only when the connection is closed; a side that does not answer in time
    /// (stopped, hung) is [`RunState::NotAnswering`]; a reply without a run state is an
    /// error.
    async fn run_state(&mut self, side: Side) -> Result<RunState, DriverError> {
        let Ok(client) = self.client(side, "query-status") else {
            return Ok(RunState::Gone);
        };
        match client.execute_raw("query-status", None).await {
            Ok(reply) => stats::run_state(&reply).map_err(|e| unexpected(side, client.peer(), e)),
            Err(QmpError::Timeout { after, .. }) => Ok(RunState::NotAnswering {
                after_ms: u64::try_from(after.as_millis()).unwrap_or(u64::MAX),
            }),
            Err(e) if e.connection_lost() => Ok(RunState::Gone),
            Err(e) => Err(error(side, "query-status", e)),
        }
    }

    async fn destination_migration(&mut self) -> Result<MigrationStatus, DriverError> {
        self.fact(Side::Destination, "query-migrate", stats::migration_status)
            .await
    }

    async fn resume(&mut self, side: Side) -> Result<(), DriverError> {
        self.typed(side, qapi_qmp::cont {}).await?;
        Ok(())
    }

    fn saved_settings(&self) -> Option<Value> {
        let nothing = self.saved.capabilities.is_empty()
            && self.saved.parameters.is_none()
            && self.saved.destination_capabilities.is_empty()
            && self.saved.tls.is_empty()
            && self.saved.stream.is_empty();
        match nothing {
            true => None,
            false => serde_json::to_value(&self.saved).ok(),
        }
    }

    fn adopt_saved_settings(&mut self, saved: Value) -> Result<(), DriverError> {
        self.saved = serde_json::from_value(saved).map_err(|e| DriverError {
            side: Side::Source,
            request: "restore".into(),
            message: format!("source: the journal's saved settings cannot be read: {e}"),
            disconnected: false,
        })?;
        Ok(())
    }

    /// Puts back what `configure` changed, on both sides, whether the migration
    /// completed or not (QEMU 10 accepts every one of these in `postmigrate`). Sets what
    /// QEMU accepts; the error lists what it refused. Once called, nothing is left to
    /// restore.
    async fn restore(&mut self) -> Result<(), DriverError> {
        let mut refused = Vec::new();
        // TLS first: its steps are independent of the rest and each is tried.
        if let Err(e) = tls::restore(self).await {
            refused.push(e);
        }
        if let Some(params) = self.saved.parameters.take() {
            if let Err(e) = self.set_parameters(params).await {
                refused.push(e);
            }
        }
        refused.extend(stream::restore(self).await);
        let source = std::mem::take(&mut self.saved.capabilities);
        let destination = std::mem::take(&mut self.saved.destination_capabilities);
        for (side, caps) in [(Side::Source, source), (Side::Destination, destination)] {
            if !caps.is_empty() {
                refused.extend(self.put_back(side, caps).await);
            }
        }
        DriverError::all("restore", refused)
    }

    engine::capabilities!(
        switchover_hold,
        device_events,
        kernel_dirty_rate,
        listener,
        survey
    );
}

/// Everything `check` compares, read with queries only.
#[async_trait]
impl Survey for QmpDriver {
    async fn survey(&mut self, side: Side) -> Result<SideSurvey, DriverError> {
        self.survey_side(side).await
    }

    async fn connect_side(&mut self, side: Side) -> Result<(), DriverError> {
        self.connect_one(side).await
    }
}

/// `pause-before-switchover` is always on: QEMU waits at `pre-switchover`.
#[async_trait]
impl SwitchoverHold for QmpDriver {
    async fn continue_switchover(&mut self) -> Result<(), DriverError> {
        self.raw(
            Side::Source,
            "migrate-continue",
            Some(json!({"state": "pre-switchover"})),
        )
        .await?;
        Ok(())
    }
}

/// VFIO devices from the QOM tree; their states from `VFIO_MIGRATION` events.
#[async_trait]
impl DeviceEvents for QmpDriver {
    async fn vfio_devices(&mut self) -> Result<Vec<DeviceInfo>, DriverError> {
        devices::list_vfio(self).await
    }

    async fn enable_migration_events(&mut self, qom_path: &str) -> Result<(), DriverError> {
        self.raw(
            Side::Source,
            "qom-set",
            Some(json!({"path": qom_path, "property": "migration-events", "value": true})),
        )
        .await?;
        Ok(())
    }
}

/// `calc-dirty-rate` in dirty-ring or dirty-bitmap mode: the kernel's dirty log.
#[async_trait]
impl KernelDirtyRate for QmpDriver {
    async fn start_dirty_rate(&mut self, mode: DirtyRateMode, calc: Duration) -> Result<(), DriverError> {
        let mode_name = match mode {
            DirtyRateMode::DirtyRing => "dirty-ring",
            DirtyRateMode::DirtyBitmap => "dirty-bitmap",
        };
        self.dirty_mode = mode;
        let args =
            json!({"calc-time": calc.as_millis() as u64, "calc-time-unit": "millisecond", "mode": mode_name});
        match self.raw(Side::Source, "calc-dirty-rate", Some(args)).await {
            // A measurement still running (e.g. preflight's probe) delivers its result
            // to the next query just the same.
            Err(e) if e.message.contains("already being measured") => Ok(()),
            Err(e) => Err(e),
            Ok(_) => Ok(()),
        }
    }

    async fn dirty_rate(&mut self) -> Result<Option<DirtyRate>, DriverError> {
        let reply = self
            .raw(
                Side::Source,
                "query-dirty-rate",
                Some(json!({"calc-time-unit": "millisecond"})),
            )
            .await?;
        Ok(stats::dirty_rate(&reply, self.dirty_mode))
    }
}

#[async_trait]
impl devices::SourceCommands for QmpDriver {
    async fn source_command(&mut self, command: &str, args: Value) -> Result<Value, DriverError> {
        self.raw(Side::Source, command, Some(args)).await
    }
}

/// `migrate-incoming` on a destination started with `-incoming defer`.
#[async_trait]
impl Listen for QmpDriver {
    async fn listen(&mut self, uri: &str) -> Result<(), DriverError> {
        // exit-on-error=false keeps the destination alive when the migration fails or is
        // cancelled, so the tool can report on it and a retry needs no restart.
        self.raw(
            Side::Destination,
            "migrate-incoming",
            Some(json!({"uri": uri, "exit-on-error": false})),
        )
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn driver() -> QmpDriver {
        let unix = |p: &str| QmpAddress::Unix(p.into());
        QmpDriver::new(&unix("/run/s.qmp"), &unix("/run/d.qmp"))
    }

    #[test]
    fn the_destinations_saved_capabilities_go_through_the_journal() {
        let mut first = driver();
        first.saved.destination_capabilities = vec![(MigrationCapability::switchover_ack, false)];
        let kept = first.saved_settings().expect("something to restore");
        let mut second = driver();
        second.adopt_saved_settings(kept).expect("adopted");
        assert_eq!(
            second.saved.destination_capabilities,
            [(MigrationCapability::switchover_ack, false)]
        );
    }

    #[test]
    fn a_journal_from_before_the_destination_was_restored_is_still_adopted() {
        let mut driver = driver();
        let old = json!({"capabilities": [["events", false]], "parameters": null});
        driver.adopt_saved_settings(old).expect("adopted");
        assert_eq!(driver.saved.capabilities, [(MigrationCapability::events, false)]);
        assert!(driver.saved.destination_capabilities.is_empty());
    }
}
