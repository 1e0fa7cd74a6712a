//! The QMP backend: an [`engine::Driver`] over two QEMU monitors.
//!
//! It reports what QEMU says and does what the engine asks; it decides nothing. What it
//! changes on the source (capabilities, parameters) it remembers, so an aborted run puts
//! the source back as it found it and a later migration by another tool is not surprised
//! by, say, `pause-before-switchover` left on.

mod events;
pub mod stats;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::time::Instant;

use async_trait::async_trait;
use engine::driver::{
    DeviceEvents, DeviceInfo, DirtyRate, DirtyRateMode, Driver, DriverError, DriverEvent, KernelDirtyRate,
    Listen, MigrationStatus, PairFacts, RunState, Sample, Setup, Side, SideFacts, SwitchoverHold, Throttle,
};
use plans::QmpAddress;
use qapi_qmp::{MigrateSetParameters, MigrationCapability, MigrationCapabilityStatus};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::qmp::{QmpClient, QmpEndpoint, QmpError};

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

/// What `configure` changed, to put back on abort (and, through a journal, by another
/// process after this one died).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Saved {
    capabilities: Vec<(MigrationCapability, bool)>,
    parameters: Option<MigrateSetParameters>,
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
}

fn error(side: Side, request: &str, e: QmpError) -> DriverError {
    let disconnected = matches!(
        e,
        QmpError::Closed { .. } | QmpError::Connect { .. } | QmpError::Protocol { .. }
    );
    DriverError {
        side,
        request: request.to_string(),
        message: e.to_string(),
        disconnected,
    }
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
        }
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
        let status = self.raw(side, "query-status", None).await?;
        let migrate = self.raw(side, "query-migrate", None).await?;
        let kvm = self
            .raw(side, "query-kvm", None)
            .await?
            .get("enabled")
            .and_then(Value::as_bool)
            .unwrap_or(false);
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
        Ok(SideFacts {
            version,
            run_state: stats::run_state(&status),
            migration: stats::migration_status(&migrate),
            blocked_reasons: stats::blocked_reasons(&migrate),
            dirty_ring_size,
            kvm,
            ram_bytes,
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

    async fn set_capabilities(&self, caps: &[(MigrationCapability, bool)]) -> Result<(), DriverError> {
        let capabilities = caps
            .iter()
            .map(|(capability, state)| MigrationCapabilityStatus {
                capability: *capability,
                state: *state,
            })
            .collect();
        self.typed(Side::Source, qapi_qmp::migrate_set_capabilities { capabilities })
            .await?;
        Ok(())
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
        let source = QmpClient::connect(&self.source_address, "source", CONNECT_TIMEOUT)
            .await
            .map_err(|e| error(Side::Source, "connect", e))?;
        let destination = QmpClient::connect(&self.destination_address, "destination", CONNECT_TIMEOUT)
            .await
            .map_err(|e| error(Side::Destination, "connect", e))?;
        self.events = Some(events::forward(&source, &destination));
        self.source = Some(source);
        self.destination = Some(destination);
        Ok(())
    }

    fn take_events(&mut self) -> mpsc::UnboundedReceiver<DriverEvent> {
        self.events.take().unwrap_or_else(|| mpsc::unbounded_channel().1)
    }

    async fn reconnect(&mut self, side: Side) -> Result<(), DriverError> {
        let (slot, address) = match side {
            Side::Source => (&mut self.source, &self.source_address),
            Side::Destination => (&mut self.destination, &self.destination_address),
        };
        // QEMU serves one client per monitor: the old connection goes first.
        *slot = None;
        let client = QmpClient::connect(address, &side.to_string(), CONNECT_TIMEOUT)
            .await
            .map_err(|e| error(side, "connect", e))?;
        *slot = Some(client);
        Ok(())
    }

    async fn inspect(&mut self) -> Result<PairFacts, DriverError> {
        Ok(PairFacts {
            source: self.side_facts(Side::Source).await?,
            destination: self.side_facts(Side::Destination).await?,
        })
    }

    async fn configure(&mut self, setup: &Setup) -> Result<(), DriverError> {
        let current = self.raw(Side::Source, "query-migrate-capabilities", None).await?;
        let was = |name: &str| {
            current
                .as_array()
                .and_then(|a| {
                    a.iter()
                        .find(|c| c.get("capability").and_then(Value::as_str) == Some(name))
                })
                .and_then(|c| c.get("state").and_then(Value::as_bool))
                .unwrap_or(false)
        };
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
        ];
        if setup.switchover_ack {
            // The source waits for the destination to acknowledge pre-copy devices'
            // initial data; both need the return path for it.
            wanted.push((MigrationCapability::return_path, "return-path", true));
            wanted.push((MigrationCapability::switchover_ack, "switchover-ack", true));
            let caps = vec![
                MigrationCapabilityStatus {
                    capability: MigrationCapability::return_path,
                    state: true,
                },
                MigrationCapabilityStatus {
                    capability: MigrationCapability::switchover_ack,
                    state: true,
                },
            ];
            self.typed(
                Side::Destination,
                qapi_qmp::migrate_set_capabilities { capabilities: caps },
            )
            .await?;
        }
        wanted.retain(|(_, name, state)| was(name) != *state);
        self.saved.capabilities = wanted.iter().map(|(c, name, _)| (*c, was(name))).collect();
        let set: Vec<_> = wanted.iter().map(|(c, _, s)| (*c, *s)).collect();
        if !set.is_empty() {
            self.set_capabilities(&set).await?;
        }

        let params = self.raw(Side::Source, "query-migrate-parameters", None).await?;
        let param = |key: &str| params.get(key).and_then(Value::as_u64);
        self.saved.parameters = Some(MigrateSetParameters {
            downtime_limit: param("downtime-limit"),
            max_bandwidth: param("max-bandwidth"),
            cpu_throttle_initial: param("cpu-throttle-initial").map(|v| v as u8 as _),
            cpu_throttle_increment: param("cpu-throttle-increment").map(|v| v as u8 as _),
            max_cpu_throttle: param("max-cpu-throttle").map(|v| v as u8 as _),
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
        }
        self.set_parameters(new).await
    }

    async fn start(&mut self, uri: &str) -> Result<(), DriverError> {
        self.raw(Side::Source, "migrate", Some(json!({"uri": uri})))
            .await?;
        Ok(())
    }

    async fn sample(&mut self) -> Result<Sample, DriverError> {
        let reply = self.raw(Side::Source, "query-migrate", None).await?;
        Ok(stats::sample(&reply, Instant::now()))
    }

    async fn set_downtime_limit(&mut self, ms: u64) -> Result<(), DriverError> {
        self.set_parameters(MigrateSetParameters {
            downtime_limit: Some(ms),
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

    async fn run_state(&mut self, side: Side) -> Result<RunState, DriverError> {
        match self.raw(side, "query-status", None).await {
            Ok(reply) => Ok(stats::run_state(&reply)),
            Err(e) if e.disconnected => Ok(RunState::Gone),
            Err(e) => Err(e),
        }
    }

    async fn destination_migration(&mut self) -> Result<MigrationStatus, DriverError> {
        let reply = self.raw(Side::Destination, "query-migrate", None).await?;
        Ok(stats::migration_status(&reply))
    }

    async fn resume(&mut self, side: Side) -> Result<(), DriverError> {
        self.typed(side, qapi_qmp::cont {}).await?;
        Ok(())
    }

    fn saved_settings(&self) -> Option<Value> {
        let nothing = self.saved.capabilities.is_empty() && self.saved.parameters.is_none();
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

    async fn restore(&mut self) -> Result<(), DriverError> {
        if let Some(params) = self.saved.parameters.take() {
            self.set_parameters(params).await?;
        }
        let caps = std::mem::take(&mut self.saved.capabilities);
        if !caps.is_empty() {
            self.set_capabilities(&caps).await?;
        }
        Ok(())
    }

    engine::capabilities!(switchover_hold, device_events, kernel_dirty_rate, listener);
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
        let list = self
            .raw(
                Side::Source,
                "qom-list",
                Some(json!({"path": "/machine/peripheral"})),
            )
            .await?;
        let mut devices = Vec::new();
        for entry in list.as_array().into_iter().flatten() {
            let (Some(name), Some(kind)) = (
                entry.get("name").and_then(Value::as_str),
                entry.get("type").and_then(Value::as_str),
            ) else {
                continue;
            };
            let Some(type_name) = kind.strip_prefix("child<").and_then(|t| t.strip_suffix('>')) else {
                continue;
            };
            if !type_name.starts_with("vfio") {
                continue;
            }
            let qom_path = format!("/machine/peripheral/{name}");
            let migration_events = self
                .raw(
                    Side::Source,
                    "qom-get",
                    Some(json!({"path": qom_path, "property": "migration-events"})),
                )
                .await
                .ok()
                .and_then(|v| v.as_bool());
            devices.push(DeviceInfo {
                id: name.to_string(),
                qom_path,
                type_name: type_name.to_string(),
                migration_events,
            });
        }
        Ok(devices)
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
