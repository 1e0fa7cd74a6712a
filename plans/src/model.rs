//! The plan, as the engine uses it once it has been read and checked.
//!
//! Every field is documented where it is declared; `vfio-migrate schema` and
//! `docs/plan.md` describe the same fields. The values a plan gets for keys it leaves out
//! come from [`crate::defaults`]; field docs name a default only where it follows another
//! key, the schema carries the values.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Serialize;

use crate::defaults;
use crate::units::{serialize_duration, Bytes, Rate};

/// A complete, valid migration plan for one VM.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// The VM being moved.
    pub vm: Vm,
    /// Where the VM runs now.
    #[schemars(with = "SourceKeys")]
    pub source: Endpoint,
    /// Where it should run afterwards.
    pub destination: Destination,
    /// How the migration stream travels.
    #[serde(default)]
    pub migration: Migration,
    /// The VFIO devices the VM owns, by QOM id.
    #[serde(default)]
    pub devices: Vec<Device>,
    /// Limits the migration must stay within.
    #[serde(default)]
    pub limits: Limits,
    /// How progress is measured and when a migration counts as not converging.
    #[serde(default)]
    pub convergence: Convergence,
    /// What to do when it does not converge.
    #[serde(default)]
    pub policy: Policy,
    /// Guards the plan lowers on purpose; every one is up unless the plan says otherwise.
    #[serde(default)]
    pub security: Security,
    /// How libvirt migrates, for a plan whose sides are libvirt domains.
    #[serde(default)]
    pub libvirt: LibvirtOptions,
    /// Who is told about the run as it happens (webhooks); none when left out.
    // TOML has no null: the schema describes the table a plan writes, not the echo's
    // `null` for a plan without one.
    #[serde(default)]
    #[schemars(with = "Notify")]
    pub notify: Option<Notify>,
}

/// The VM being moved.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Vm {
    /// A name for reports and logs.
    pub name: String,
    /// Allow VFIO devices on the VM that the plan does not list.
    #[serde(default = "allow_unlisted_devices")]
    pub allow_unlisted_devices: bool,
}

/// How the tool reaches the hypervisor on one side of the migration.
// One variant per kind of control channel, each carrying what that kind needs. Serialized
// as the keys the plan's table holds (`"qmp": ...`, or `"libvirt": ...` with `"domain"`),
// so a plan echoed as JSON keeps the keys the TOML used; the schema says the same through
// `EndpointKeys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(into = "EndpointKeys")]
#[schemars(with = "EndpointKeys")]
pub enum Endpoint {
    /// A QEMU monitor, reached over QMP.
    Qmp(QmpAddress),
    /// A domain of a libvirt daemon.
    Libvirt(LibvirtEndpoint),
}

impl Endpoint {
    /// The QMP socket, when this side is reached over QMP.
    pub fn qmp(&self) -> Option<&QmpAddress> {
        match self {
            Endpoint::Qmp(address) => Some(address),
            Endpoint::Libvirt(_) => None,
        }
    }

    /// The libvirt connection and domain, when this side is reached through libvirt.
    pub fn libvirt(&self) -> Option<&LibvirtEndpoint> {
        match self {
            Endpoint::Qmp(_) => None,
            Endpoint::Libvirt(endpoint) => Some(endpoint),
        }
    }
}

impl fmt::Display for Endpoint {
    /// As the plan wrote it, for messages; a libvirt URI with any password masked.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Qmp(address) => address.fmt(f),
            Endpoint::Libvirt(endpoint) => endpoint.fmt(f),
        }
    }
}

/// A libvirt connection and the domain on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibvirtEndpoint {
    /// The connection URI: `qemu:///system`, `qemu+ssh://HOST/system`,
    /// `qemu+tls://HOST/system`, ... (or `test:///default`, libvirt's test driver).
    pub uri: String,
    /// The domain, by name or UUID. Always set on the source; on the destination, the
    /// name the domain gets there, `None` to keep its name.
    pub domain: Option<String>,
}

impl LibvirtEndpoint {
    /// The host the URI names, without user or port; `None` for a daemon on this host
    /// (`qemu:///system`, `qemu+unix:///system?socket=...`).
    pub fn host(&self) -> Option<&str> {
        let (_, rest) = self.uri.split_once("://")?;
        let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let host = match host_port.strip_prefix('[') {
            Some(v6) => v6.split_once(']').map_or(v6, |(h, _)| h),
            None => host_port.split_once(':').map_or(host_port, |(h, _)| h),
        };
        (!host.is_empty()).then_some(host)
    }

    /// Whether the daemon is on another host: the URI names a host that is not
    /// `localhost` or a loopback address.
    pub fn is_remote(&self) -> bool {
        self.host().is_some_and(|host| {
            host != "localhost" && !host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
        })
    }
}

impl fmt::Display for LibvirtEndpoint {
    /// The URI, any password in it masked.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::redact::redact(&self.uri))
    }
}

/// The keys of an endpoint table, as the JSON echo and the schema show them.
#[derive(Serialize, JsonSchema)]
#[serde(untagged, deny_unknown_fields)]
#[schemars(transform = exclusive)]
enum EndpointKeys {
    /// A QEMU monitor, reached over QMP.
    Qmp {
        /// The monitor's socket: `unix:/path/to/qmp.sock` or `tcp:IP:PORT`.
        qmp: QmpAddress,
    },
    /// A domain of a libvirt daemon.
    Libvirt {
        /// The connection URI: `qemu:///system`, `qemu+ssh://HOST/system`,
        /// `qemu+tls://HOST/system`, `qemu+unix:///system?socket=PATH`; the path is
        /// `/system` or `/session`.
        libvirt: String,
        /// The domain, by name or UUID; required on the source. On the destination, the
        /// name the domain gets there; when left out, it keeps its name.
        #[serde(skip_serializing_if = "Option::is_none")]
        domain: Option<String>,
    },
}

impl From<Endpoint> for EndpointKeys {
    fn from(endpoint: Endpoint) -> EndpointKeys {
        match endpoint {
            Endpoint::Qmp(qmp) => EndpointKeys::Qmp { qmp },
            Endpoint::Libvirt(LibvirtEndpoint { uri, domain }) => {
                EndpointKeys::Libvirt { libvirt: uri, domain }
            }
        }
    }
}

/// The source's endpoint table, for the schema: a libvirt source names its domain.
#[derive(JsonSchema)]
#[serde(untagged, deny_unknown_fields)]
#[schemars(rename = "SourceEndpoint", transform = exclusive)]
#[allow(dead_code)] // Only its schema is used.
enum SourceKeys {
    /// A QEMU monitor, reached over QMP.
    Qmp {
        /// The monitor's socket: `unix:/path/to/qmp.sock` or `tcp:IP:PORT`.
        qmp: QmpAddress,
    },
    /// A domain of a libvirt daemon.
    Libvirt {
        /// The connection URI: `qemu:///system`, `qemu+ssh://HOST/system`,
        /// `qemu+tls://HOST/system`, `qemu+unix:///system?socket=PATH`; the path is
        /// `/system` or `/session`.
        libvirt: String,
        /// The domain to migrate, by name or UUID.
        domain: String,
    },
}

/// An endpoint table holds the keys of exactly one kind: the schema of an untagged enum
/// says `anyOf`, this makes it `oneOf`.
fn exclusive(schema: &mut schemars::Schema) {
    if let Some(branches) = schema.remove("anyOf") {
        schema.insert("oneOf".into(), branches);
    }
}

/// A QMP socket: `unix:/path/to/qmp.sock` or `tcp:127.0.0.1:4444`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(into = "String")]
#[schemars(with = "String")]
pub enum QmpAddress {
    /// A Unix socket path.
    Unix(PathBuf),
    /// A TCP address: an IP address or `localhost`, and a port. Plans accept one that is
    /// not loopback only with `[security] remote_qmp = true`.
    Tcp(String, u16),
}

impl QmpAddress {
    /// Whether the monitor is on another host: a TCP address that is not loopback.
    pub fn is_remote(&self) -> bool {
        match self {
            QmpAddress::Unix(_) => false,
            QmpAddress::Tcp(host, _) => {
                host != "localhost" && !host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
            }
        }
    }
}

impl fmt::Display for QmpAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QmpAddress::Unix(p) => write!(f, "unix:{}", p.display()),
            QmpAddress::Tcp(h, p) => write!(f, "tcp:{h}:{p}"),
        }
    }
}

impl From<QmpAddress> for String {
    fn from(a: QmpAddress) -> String {
        a.to_string()
    }
}

/// The destination: how to reach it, and whether the tool makes it listen.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Destination {
    /// How the tool reaches the destination; flattened so its keys sit next to `listen`
    /// and `resume`, as in the plan's `[destination]` table.
    #[serde(flatten)]
    pub endpoint: Endpoint,
    /// When set, the tool sends `migrate-incoming` with this URI (for a destination
    /// started with `-incoming defer`), asking QEMU to stay alive if the migration fails.
    pub listen: Option<String>,
    /// Start the destination's vCPUs after a completed migration when it was started
    /// paused (`-S`). Never done before the migration completed.
    #[serde(default = "resume")]
    pub resume: bool,
}

// serde's `default = "..."` takes a function; these hand it the defaults.
fn allow_unlisted_devices() -> bool {
    defaults::vm::ALLOW_UNLISTED_DEVICES
}

fn resume() -> bool {
    defaults::destination::RESUME
}

fn postcopy() -> bool {
    defaults::migration::POSTCOPY
}

fn tls() -> bool {
    defaults::migration::TLS
}

fn tls_dir() -> PathBuf {
    PathBuf::from(defaults::migration::TLS_DIR)
}

fn multifd_compression() -> MultifdCompression {
    defaults::migration::MULTIFD_COMPRESSION
}

fn peer_to_peer() -> bool {
    defaults::libvirt::PEER_TO_PEER
}

fn persist() -> bool {
    defaults::libvirt::PERSIST
}

fn undefine_source() -> bool {
    defaults::libvirt::UNDEFINE_SOURCE
}

fn precopy() -> bool {
    defaults::devices::PRECOPY
}

fn notify_timeout() -> Duration {
    defaults::notify::TIMEOUT
}

fn notify_retry_for() -> Duration {
    defaults::notify::RETRY_FOR
}

/// How the migration stream travels.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Migration {
    /// Where the source sends the stream (`tcp:HOST:PORT`, `unix:PATH`); defaults to
    /// `destination.listen`.
    pub uri: Option<String>,
    /// Post-copy migration. Refused with VFIO devices: QEMU does not support it for them.
    #[serde(default = "postcopy")]
    pub postcopy: bool,
    /// Encrypt the stream with TLS: x509 certificates on both sides, each verifying the
    /// other's. A plan whose stream leaves this host must write this key: `true`, or
    /// `false` to send the guest's memory in the clear on purpose.
    #[serde(default = "tls")]
    pub tls: bool,
    /// The directory holding the certificates on both hosts (an absolute path on each).
    #[serde(default = "tls_dir")]
    pub tls_dir: PathBuf,
    /// The source's directory: `ca-cert.pem`, `client-cert.pem`, `client-key.pem`;
    /// when left out, `tls_dir`.
    #[serde(default = "tls_dir")]
    pub tls_dir_source: PathBuf,
    /// The destination's directory: `ca-cert.pem`, `server-cert.pem`,
    /// `server-key.pem`; when left out, `tls_dir`.
    #[serde(default = "tls_dir")]
    pub tls_dir_destination: PathBuf,
    /// The name the destination's certificate must carry, when it is not the host the
    /// URI names (required with a `unix:` URI, which names no host).
    pub tls_hostname: Option<String>,
    /// Send RAM over this many parallel connections (QEMU's `multifd` capability and
    /// `multifd-channels`, set on both sides before the destination listens); when left
    /// out, one connection carries everything.
    pub multifd_channels: Option<u8>,
    /// How the multifd channels compress pages (`multifd-compression`, both sides).
    #[serde(default = "multifd_compression")]
    pub multifd_compression: MultifdCompression,
    /// The compression level (`multifd-zlib-level` 0–9 or `multifd-zstd-level` 0–20);
    /// when left out, QEMU's.
    pub multifd_compression_level: Option<u8>,
    /// Send pages that changed since the last pass as deltas (QEMU's `xbzrle`
    /// capability), keeping this much of the guest's memory as a cache on the source
    /// (`xbzrle-cache-size`, a power of two); when left out, XBZRLE is off.
    pub xbzrle_cache: Option<Bytes>,
    /// Where zero pages are found (`zero-page-detection`); when left out, QEMU's.
    pub zero_page_detection: Option<ZeroPageDetection>,
    /// Which channel carries the VFIO devices' state (the vfio-pci property
    /// `x-migration-multifd-transfer`, QEMU 10.0); when left out, the property is left
    /// as QEMU has it.
    pub device_state_transfer: Option<DeviceStateTransfer>,
}

/// How multifd channels compress pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum MultifdCompression {
    /// Pages go as they are.
    None,
    /// zlib: slower than zstd at a similar ratio.
    Zlib,
    /// Zstandard.
    Zstd,
}

impl MultifdCompression {
    /// The words plans write for it, in the order hints list them.
    pub const WORDS: &'static [(&'static str, MultifdCompression)] = &[
        ("none", MultifdCompression::None),
        ("zlib", MultifdCompression::Zlib),
        ("zstd", MultifdCompression::Zstd),
    ];

    /// The levels QEMU accepts for the method, `None` for a method without levels.
    pub fn levels(self) -> Option<std::ops::RangeInclusive<u8>> {
        match self {
            MultifdCompression::None => None,
            MultifdCompression::Zlib => Some(0..=9),
            MultifdCompression::Zstd => Some(0..=20),
        }
    }
}

/// Where QEMU looks for pages that are all zeros, which it then sends as a flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ZeroPageDetection {
    /// Not at all: zero pages are sent whole.
    None,
    /// In the main migration thread.
    Legacy,
    /// In the multifd threads, in parallel (in the main thread without multifd).
    Multifd,
}

impl ZeroPageDetection {
    /// The words plans write for it, in the order hints list them.
    pub const WORDS: &'static [(&'static str, ZeroPageDetection)] = &[
        ("none", ZeroPageDetection::None),
        ("legacy", ZeroPageDetection::Legacy),
        ("multifd", ZeroPageDetection::Multifd),
    ];
}

/// Which channel carries the VFIO devices' state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceStateTransfer {
    /// The main migration channel, after RAM (`x-migration-multifd-transfer=off`).
    Main,
    /// The multifd channels, in parallel (`x-migration-multifd-transfer=on`).
    Multifd,
}

impl DeviceStateTransfer {
    /// The words plans write for it, in the order hints list them.
    pub const WORDS: &'static [(&'static str, DeviceStateTransfer)] = &[
        ("main", DeviceStateTransfer::Main),
        ("multifd", DeviceStateTransfer::Multifd),
    ];
}

impl Default for Migration {
    fn default() -> Self {
        Migration {
            uri: None,
            postcopy: defaults::migration::POSTCOPY,
            tls: defaults::migration::TLS,
            tls_dir: tls_dir(),
            tls_dir_source: tls_dir(),
            tls_dir_destination: tls_dir(),
            tls_hostname: None,
            multifd_channels: None,
            multifd_compression: defaults::migration::MULTIFD_COMPRESSION,
            multifd_compression_level: None,
            xbzrle_cache: None,
            zero_page_detection: None,
            device_state_transfer: None,
        }
    }
}

/// A VFIO device passed through to the VM.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Device {
    /// The device's QOM id (`-device vfio-pci,id=...`, libvirt's `hostdev` alias).
    pub id: String,
    /// The host PCI address on the source, e.g. `0000:3b:00.1`.
    pub host: Option<String>,
    /// With libvirt endpoints, the destination host's PCI device this device becomes,
    /// e.g. `0000:5e:00.3`, in lower case.
    pub destination_host: Option<String>,
    /// With libvirt endpoints, the destination host's mediated device (a vGPU, by its
    /// UUID, in lower case) this device becomes; it must be of the source's mdev type.
    pub destination_mdev: Option<String>,
    /// Whether the device supports pre-copy. A device without it stays `running` until
    /// the VM stops and saves everything in stop-copy.
    #[serde(default = "precopy")]
    pub precopy: bool,
    /// The device's expected stop-copy state size. QMP does not report it, but QEMU
    /// counts it when deciding to switch over, so the downtime prediction needs it.
    pub state_size: Option<Bytes>,
}

/// Limits the migration must stay within.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Downtime limit QEMU starts with (`downtime-limit`); when left out, at most
    /// `max_downtime`.
    #[serde(serialize_with = "serialize_duration")]
    #[schemars(with = "String")]
    pub downtime: Duration,
    /// The most downtime the policy may allow when forcing completion; default: the same
    /// as `downtime` (forcing then cannot raise it).
    #[serde(serialize_with = "serialize_duration")]
    #[schemars(with = "String")]
    pub max_downtime: Duration,
    /// Bandwidth cap for the migration stream (`max-bandwidth`); default: QEMU's own.
    pub max_bandwidth: Option<Rate>,
    /// Wall-clock limit for the whole migration.
    #[serde(serialize_with = "serialize_duration")]
    #[schemars(with = "String")]
    pub deadline: Duration,
    /// How long every VFIO device may take to reach its saving state; when left out, at
    /// most `deadline`.
    #[serde(serialize_with = "serialize_duration")]
    #[schemars(with = "String")]
    pub saving_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            downtime: defaults::limits::DOWNTIME,
            max_downtime: defaults::limits::max_downtime(defaults::limits::DOWNTIME),
            max_bandwidth: None,
            deadline: defaults::limits::DEADLINE,
            saving_timeout: defaults::limits::saving_timeout(defaults::limits::DEADLINE),
        }
    }
}

/// Where dirty rates come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DirtyRateSource {
    /// The kernel's dirty log (KVM dirty ring or dirty bitmap), measured by QEMU's
    /// `calc-dirty-rate` while the migration runs.
    Kernel,
    /// QEMU's migration statistics (`ram.dirty-pages-rate`).
    Stats,
}

impl DirtyRateSource {
    /// The words plans write for it, in the order hints list them.
    pub const WORDS: &'static [(&'static str, DirtyRateSource)] = &[
        ("kernel", DirtyRateSource::Kernel),
        ("stats", DirtyRateSource::Stats),
    ];
}

/// Which kernel dirty log `calc-dirty-rate` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum KernelDirtyMode {
    /// The dirty ring when the guest has one, else the dirty bitmap.
    Auto,
    /// KVM dirty ring (needs `-accel kvm,dirty-ring-size=N`); gives per-vCPU rates.
    DirtyRing,
    /// KVM dirty bitmap (only when the ring is off).
    DirtyBitmap,
}

impl KernelDirtyMode {
    /// The words plans write for it, in the order hints list them.
    pub const WORDS: &'static [(&'static str, KernelDirtyMode)] = &[
        ("auto", KernelDirtyMode::Auto),
        ("dirty-ring", KernelDirtyMode::DirtyRing),
        ("dirty-bitmap", KernelDirtyMode::DirtyBitmap),
    ];
}

/// How progress is measured and when a migration counts as not converging.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Convergence {
    /// How often migration statistics are read; when left out, at most `limits.deadline`.
    #[serde(serialize_with = "serialize_duration")]
    #[schemars(with = "String")]
    pub sample_interval: Duration,
    /// Dirty-rate source.
    pub dirty_rate: DirtyRateSource,
    /// Kernel dirty log to read.
    pub kernel_mode: KernelDirtyMode,
    /// Length of one dirty-rate measurement.
    #[serde(serialize_with = "serialize_duration")]
    #[schemars(with = "String")]
    pub calc_time: Duration,
    /// Dirty-sync passes without progress before the policy acts.
    pub stall_passes: u32,
}

impl Default for Convergence {
    fn default() -> Self {
        Convergence {
            sample_interval: defaults::convergence::SAMPLE_INTERVAL,
            dirty_rate: defaults::convergence::DIRTY_RATE,
            kernel_mode: defaults::convergence::KERNEL_MODE,
            calc_time: defaults::convergence::CALC_TIME,
            stall_passes: defaults::convergence::STALL_PASSES,
        }
    }
}

/// One step of the escalation taken when a migration does not converge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// Slow the guest's vCPUs down (auto-converge or a dirty limit).
    Throttle,
    /// Allow the downtime the remaining data needs, up to `limits.max_downtime`.
    ForceDowntime,
    /// Cancel the migration; the VM keeps running on the source.
    Abort,
}

impl Step {
    /// The words plans write for it, in the order hints list them.
    pub const WORDS: &'static [(&'static str, Step)] = &[
        ("throttle", Step::Throttle),
        ("force-downtime", Step::ForceDowntime),
        ("abort", Step::Abort),
    ];

    /// The name plans use for it.
    pub fn name(self) -> &'static str {
        match self {
            Step::Throttle => "throttle",
            Step::ForceDowntime => "force-downtime",
            Step::Abort => "abort",
        }
    }
}

/// How vCPUs are throttled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ThrottleMethod {
    /// QEMU's auto-converge: vCPU sleep time rises every pass that dirties too much.
    AutoConverge,
    /// A per-vCPU dirty-page rate limit enforced through the KVM dirty ring.
    DirtyLimit,
}

impl ThrottleMethod {
    /// The words plans write for it, in the order hints list them.
    pub const WORDS: &'static [(&'static str, ThrottleMethod)] = &[
        ("auto-converge", ThrottleMethod::AutoConverge),
        ("dirty-limit", ThrottleMethod::DirtyLimit),
    ];
}

/// How completion is forced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ForceMethod {
    /// Raise `downtime-limit` to what the remaining data needs, so QEMU switches over
    /// itself with the devices in stop-copy.
    RaiseLimit,
    /// Stop the guest so the rest is copied while it is paused. Refused with VFIO
    /// devices: stopping vCPUs does not stop device DMA in every case.
    StopGuest,
}

impl ForceMethod {
    /// The words plans write for it, in the order hints list them.
    pub const WORDS: &'static [(&'static str, ForceMethod)] = &[
        ("raise-limit", ForceMethod::RaiseLimit),
        ("stop-guest", ForceMethod::StopGuest),
    ];
}

/// What to do when a migration does not converge, and what to do at the deadline.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// Steps taken in order, one each time the migration stalls.
    pub escalation: Vec<Step>,
    /// What happens when `limits.deadline` passes: `abort` or `force-downtime`.
    pub on_deadline: Step,
    /// Throttle method.
    pub throttle: ThrottleMethod,
    /// The lowest per-vCPU dirty limit the `dirty-limit` method sets (the limit itself is
    /// computed from the dirty rate and bandwidth).
    pub dirty_limit: Rate,
    /// Auto-converge: the least first throttle percentage (the throttle itself is
    /// computed); when left out, at most `throttle_max`.
    pub throttle_initial: u8,
    /// Auto-converge: the least percentage a correction adds.
    pub throttle_increment: u8,
    /// Auto-converge: the most the guest is throttled, in percent.
    pub throttle_max: u8,
    /// How completion is forced.
    pub force: ForceMethod,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            escalation: defaults::policy::ESCALATION.to_vec(),
            on_deadline: defaults::policy::ON_DEADLINE,
            throttle: defaults::policy::THROTTLE,
            dirty_limit: defaults::policy::DIRTY_LIMIT,
            throttle_initial: defaults::policy::THROTTLE_INITIAL,
            throttle_increment: defaults::policy::THROTTLE_INCREMENT,
            throttle_max: defaults::policy::THROTTLE_MAX,
            force: defaults::policy::FORCE,
        }
    }
}

/// Guards a plan may lower, each for a reason the operator states by writing it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Security {
    /// Allow QMP over TCP to another host (a `tcp:` address that is not loopback). QMP
    /// has no authentication and no encryption: whoever reaches the port controls the
    /// VM and reads what the monitor says. Only for a network where that is acceptable;
    /// otherwise reach the monitor through an SSH-forwarded local socket.
    pub remote_qmp: bool,
}

impl Default for Security {
    fn default() -> Self {
        Security {
            remote_qmp: defaults::security::REMOTE_QMP,
        }
    }
}

/// How libvirt migrates a plan whose sides are libvirt domains (`[libvirt]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LibvirtOptions {
    /// The source's daemon connects to the destination's itself
    /// (`VIR_MIGRATE_PEER2PEER`); otherwise the tool connects to both (managed
    /// migration).
    #[serde(default = "peer_to_peer")]
    pub peer_to_peer: bool,
    /// Define the domain on the destination once migrated (`VIR_MIGRATE_PERSIST_DEST`).
    #[serde(default = "persist")]
    pub persist: bool,
    /// Remove the source's definition once migrated (`VIR_MIGRATE_UNDEFINE_SOURCE`), so
    /// that the VM cannot be started on both hosts.
    #[serde(default = "undefine_source")]
    pub undefine_source: bool,
}

impl Default for LibvirtOptions {
    fn default() -> Self {
        LibvirtOptions {
            peer_to_peer: defaults::libvirt::PEER_TO_PEER,
            persist: defaults::libvirt::PERSIST,
            undefine_source: defaults::libvirt::UNDEFINE_SOURCE,
        }
    }
}

/// Webhooks: the run's events POSTed as JSON, as they happen, to each URL (`[notify]`).
/// Delivery never delays the migration; see `docs/notify.md`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Notify {
    /// Where the events go: `http://` or `https://` URLs, at least one, each once.
    #[schemars(length(min = 1))]
    pub urls: Vec<String>,
    /// The name of the environment variable that holds the key each request is signed
    /// with (HMAC-SHA256 over the body); the key itself never goes in a plan. When left
    /// out, requests are not signed.
    pub secret_env: Option<String>,
    /// A PEM file with the CA that signed an HTTPS endpoint's certificate, when that is a
    /// private CA (an absolute path); trusted besides the system's CAs. There is no way
    /// to accept any certificate.
    pub ca_file: Option<PathBuf>,
    /// How long one request may take.
    #[serde(default = "notify_timeout", serialize_with = "serialize_duration")]
    #[schemars(with = "String")]
    pub timeout: Duration,
    /// How long a delivery that failed is tried again, with growing pauses between
    /// tries; at most 10m. A run's result is tried for this long after the migration
    /// ended.
    #[serde(default = "notify_retry_for", serialize_with = "serialize_duration")]
    #[schemars(with = "String")]
    pub retry_for: Duration,
}

impl Notify {
    /// Webhooks to `urls`, with every other key at its default.
    pub fn to(urls: Vec<String>) -> Self {
        Notify {
            urls,
            secret_env: None,
            ca_file: None,
            timeout: defaults::notify::TIMEOUT,
            retry_for: defaults::notify::RETRY_FOR,
        }
    }
}

impl Plan {
    /// Whether the plan reaches its sides through libvirt (the source's kind; validation
    /// has made sure the destination is of the same kind).
    pub fn is_libvirt(&self) -> bool {
        self.source.libvirt().is_some()
    }

    /// The URI the source sends the migration stream to. Through libvirt, `None` unless
    /// `migration.uri` names one: libvirt then sends it to the destination host.
    pub fn migration_uri(&self) -> Option<&str> {
        if self.is_libvirt() {
            return self.migration.uri.as_deref();
        }
        self.migration
            .uri
            .as_deref()
            .or(self.destination.listen.as_deref())
    }

    /// The sum of the devices' declared stop-copy state sizes.
    pub fn device_state_bytes(&self) -> u64 {
        self.devices
            .iter()
            .filter_map(|d| d.state_size)
            .map(|b| b.0)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON name of a value, as `validate --output json` echoes it.
    fn json_name<T: Serialize>(value: T) -> String {
        match serde_json::to_value(value) {
            Ok(serde_json::Value::String(s)) => s,
            other => panic!("not serialized as a string: {other:?}"),
        }
    }

    fn assert_words_are_json_names<T: Serialize + Copy>(words: &[(&str, T)]) {
        for (word, value) in words {
            assert_eq!(json_name(*value), *word);
        }
    }

    #[test]
    fn only_a_tcp_monitor_off_loopback_is_remote() {
        let tcp = |host: &str| QmpAddress::Tcp(host.into(), 4444);
        assert!(!QmpAddress::Unix("/run/a.qmp".into()).is_remote());
        assert!(!tcp("localhost").is_remote());
        assert!(!tcp("127.0.0.1").is_remote());
        assert!(!tcp("127.8.9.10").is_remote());
        assert!(!tcp("::1").is_remote());
        assert!(tcp("192.0.2.10").is_remote());
        assert!(tcp("0.0.0.0").is_remote());
        assert!(tcp("::ffff:127.0.0.1").is_remote());
    }

    #[test]
    fn a_libvirt_daemon_is_remote_when_its_uri_names_another_host() {
        let at = |uri: &str| LibvirtEndpoint {
            uri: uri.into(),
            domain: None,
        };
        assert_eq!(at("qemu:///system").host(), None);
        assert_eq!(at("qemu+unix:///system?socket=/run/a.sock").host(), None);
        assert_eq!(
            at("qemu+ssh://root@dst.example:22/system").host(),
            Some("dst.example")
        );
        assert_eq!(
            at("qemu+tls://[2001:db8::2]:16514/system").host(),
            Some("2001:db8::2")
        );
        assert!(!at("qemu:///system").is_remote());
        assert!(!at("qemu+ssh://localhost/system").is_remote());
        assert!(!at("qemu+tcp://127.0.0.1/system").is_remote());
        assert!(!at("test:///default").is_remote());
        assert!(at("qemu+ssh://dst.example/system").is_remote());
        assert!(at("qemu+tls://[2001:db8::2]/system").is_remote());
    }

    #[test]
    fn a_plan_is_echoed_with_the_words_it_was_written_with() {
        assert_words_are_json_names(DirtyRateSource::WORDS);
        assert_words_are_json_names(KernelDirtyMode::WORDS);
        assert_words_are_json_names(Step::WORDS);
        assert_words_are_json_names(ThrottleMethod::WORDS);
        assert_words_are_json_names(ForceMethod::WORDS);
        assert_words_are_json_names(MultifdCompression::WORDS);
        assert_words_are_json_names(ZeroPageDetection::WORDS);
        assert_words_are_json_names(DeviceStateTransfer::WORDS);
        for (word, step) in Step::WORDS {
            assert_eq!(step.name(), *word);
        }
    }
}
