//! Reading a plan's TOML into a [`Plan`], recording every mistake with its position.
//!
//! Each table has its own function listing the keys it knows; checks that involve more
//! than one key live in [`crate::validate`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::Range;
use std::path::PathBuf;

use toml::de::{DeTable, DeValue};

use crate::diagnostic::Diagnostic;
use crate::model::*;
use crate::reader::{At, Mistakes, TableReader};

/// Where each key's value sits in the plan text, for checks made after reading.
#[derive(Debug, Default)]
pub(crate) struct Spans {
    map: HashMap<String, Range<usize>>,
    /// Span of the whole document (for keys missing at top level).
    pub(crate) document: Range<usize>,
}

impl Spans {
    fn record<T>(&mut self, key: String, at: &At<T>) {
        self.map.insert(key, at.span.clone());
    }

    /// The span of a key's value, or of its table when the key was left out.
    pub(crate) fn of(&self, key: &str) -> Range<usize> {
        if let Some(span) = self.map.get(key) {
            return span.clone();
        }
        // Fall back to the closest recorded parent table.
        let mut parent = key;
        while let Some(i) = parent.rfind('.') {
            parent = &parent[..i];
            if let Some(span) = self.map.get(parent) {
                return span.clone();
            }
        }
        self.document.clone()
    }
}

/// Reads the whole plan. Returns `None` for the plan when any mistake was found.
pub(crate) fn read_plan(root: &DeTable<'_>, span: Range<usize>, m: &mut Mistakes) -> (Option<Plan>, Spans) {
    const KEYS: &[&str] = &[
        "vm",
        "source",
        "destination",
        "migration",
        "devices",
        "limits",
        "convergence",
        "policy",
    ];
    let mut spans = Spans {
        document: span.start..span.start,
        ..Spans::default()
    };
    let top = TableReader::new("", root, span, KEYS);
    let vm = required_table(&top, m, "vm", "add a [vm] table with `name = \"...\"`")
        .and_then(|(t, s)| read_vm(t, s, m, &mut spans));
    let source = required_table(
        &top,
        m,
        "source",
        "add a [source] table with `qmp = \"unix:/path/to/qmp.sock\"`",
    )
    .and_then(|(t, s)| read_endpoint("source", t, s, m, &mut spans));
    let destination = required_table(
        &top,
        m,
        "destination",
        "add a [destination] table with `qmp = \"unix:/path/to/qmp.sock\"`",
    )
    .and_then(|(t, s)| read_destination(t, s, m, &mut spans));
    let migration = optional_table(&top, m, "migration", &mut spans, |t, s, m, spans| {
        read_migration(t, s, m, spans)
    });
    let devices = read_devices(&top, m, &mut spans);
    let limits = optional_table(&top, m, "limits", &mut spans, read_limits);
    let convergence = optional_table(&top, m, "convergence", &mut spans, read_convergence);
    let policy = optional_table(&top, m, "policy", &mut spans, read_policy);
    top.finish(m);

    let plan = match (
        vm,
        source,
        destination,
        migration,
        devices,
        limits,
        convergence,
        policy,
    ) {
        (
            Some(vm),
            Some(source),
            Some(destination),
            Some(migration),
            Some(devices),
            Some(limits),
            Some(convergence),
            Some(policy),
        ) => Some(Plan {
            vm,
            source,
            destination,
            migration,
            devices,
            limits,
            convergence,
            policy,
        }),
        _ => None,
    };
    (plan, spans)
}

fn required_table<'a, 'i>(
    top: &TableReader<'a, 'i>,
    m: &mut Mistakes,
    key: &str,
    hint: &str,
) -> Option<(&'a DeTable<'i>, Range<usize>)> {
    if !top.has(key) {
        top.missing(m, key, hint);
        return None;
    }
    top.table(m, key)
}

/// Reads an optional table; an absent table gives the defaults.
fn optional_table<'a, 'i, T: Default>(
    top: &TableReader<'a, 'i>,
    m: &mut Mistakes,
    key: &str,
    spans: &mut Spans,
    read: impl FnOnce(&'a DeTable<'i>, Range<usize>, &mut Mistakes, &mut Spans) -> Option<T>,
) -> Option<T> {
    if !top.has(key) {
        return Some(T::default());
    }
    let (t, s) = top.table(m, key)?;
    read(t, s, m, spans)
}

fn read_vm(t: &DeTable<'_>, s: Range<usize>, m: &mut Mistakes, spans: &mut Spans) -> Option<Vm> {
    let r = TableReader::new("vm", t, s.clone(), &["name", "allow_unlisted_devices"]);
    spans.map.insert("vm".into(), s);
    let name = r.string(m, "name");
    if name.is_none() && !r.has("name") {
        r.missing(m, "name", "name the VM, e.g. `name = \"db-01\"`");
    }
    if let Some(n) = &name {
        if n.value.trim().is_empty() {
            m.push(
                Diagnostic::new("vm.name", n.span.clone(), "must not be empty")
                    .hint("name the VM, e.g. `name = \"db-01\"`"),
            );
        }
    }
    let allow = r.boolean(m, "allow_unlisted_devices");
    r.finish(m);
    Some(Vm {
        name: name?.value,
        allow_unlisted_devices: allow.is_some_and(|a| a.value),
    })
}

/// Parses `unix:PATH` or `tcp:HOST:PORT` (loopback only).
fn parse_qmp_address(text: &str) -> Result<QmpAddress, (String, String)> {
    let example = "write `qmp = \"unix:/run/qemu/vm.qmp\"` or `qmp = \"tcp:127.0.0.1:4444\"`";
    if let Some(path) = text.strip_prefix("unix:") {
        if path.is_empty() {
            return Err(("the unix socket path is empty".into(), example.into()));
        }
        return Ok(QmpAddress::Unix(PathBuf::from(path)));
    }
    if let Some(rest) = text.strip_prefix("tcp:") {
        let (host, port) = split_host_port(rest)
            .ok_or_else(|| (format!("\"{text}\" is not tcp:HOST:PORT"), example.to_string()))?;
        let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
        if !loopback {
            return Err((
                format!("QMP over TCP to {host} is refused: the monitor protocol has no authentication"),
                "use a unix socket, or reach a remote monitor through an SSH-forwarded local socket".into(),
            ));
        }
        return Ok(QmpAddress::Tcp(host.to_string(), port));
    }
    Err((format!("\"{text}\" is not a QMP address"), example.into()))
}

fn split_host_port(text: &str) -> Option<(&str, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port.parse().ok()?;
    (!host.is_empty() && port != 0).then_some((host, port))
}

/// Checks a migration URI's form: `tcp:HOST:PORT` or `unix:PATH`.
fn check_migration_uri(key: &str, at: &At<String>, m: &mut Mistakes) {
    let hint = "write e.g. \"tcp:10.0.0.2:49152\" or \"unix:/run/vfio-migrate/stream.sock\"";
    let ok = if let Some(rest) = at.value.strip_prefix("tcp:") {
        split_host_port(rest).is_some()
    } else if let Some(path) = at.value.strip_prefix("unix:") {
        !path.is_empty()
    } else {
        false
    };
    if !ok {
        m.push(
            Diagnostic::new(
                key,
                at.span.clone(),
                format!("\"{}\" is not a migration URI this tool supports", at.value),
            )
            .hint(hint),
        );
    }
}

fn read_qmp(r: &TableReader<'_, '_>, m: &mut Mistakes, spans: &mut Spans) -> Option<QmpAddress> {
    let key = r.key_path("qmp");
    let Some(text) = r.string(m, "qmp") else {
        if !r.has("qmp") {
            r.missing(m, "qmp", "write `qmp = \"unix:/run/qemu/vm.qmp\"`");
        }
        return None;
    };
    spans.record(key.clone(), &text);
    match parse_qmp_address(&text.value) {
        Ok(a) => Some(a),
        Err((msg, hint)) => {
            m.push(Diagnostic::new(key, text.span, msg).hint(hint));
            None
        }
    }
}

fn read_endpoint(
    path: &str,
    t: &DeTable<'_>,
    s: Range<usize>,
    m: &mut Mistakes,
    spans: &mut Spans,
) -> Option<Endpoint> {
    let r = TableReader::new(path, t, s.clone(), &["qmp"]);
    spans.map.insert(path.into(), s);
    let qmp = read_qmp(&r, m, spans);
    r.finish(m);
    Some(Endpoint::Qmp(qmp?))
}

fn read_destination(
    t: &DeTable<'_>,
    s: Range<usize>,
    m: &mut Mistakes,
    spans: &mut Spans,
) -> Option<Destination> {
    let r = TableReader::new("destination", t, s.clone(), &["qmp", "listen", "resume"]);
    spans.map.insert("destination".into(), s);
    let qmp = read_qmp(&r, m, spans);
    let listen = r.string(m, "listen");
    if let Some(l) = &listen {
        spans.record("destination.listen".into(), l);
        check_migration_uri("destination.listen", l, m);
    }
    let resume = r.boolean(m, "resume");
    r.finish(m);
    Some(Destination {
        endpoint: Endpoint::Qmp(qmp?),
        listen: listen.map(|l| l.value),
        resume: resume.is_none_or(|r| r.value),
    })
}

fn read_migration(
    t: &DeTable<'_>,
    s: Range<usize>,
    m: &mut Mistakes,
    spans: &mut Spans,
) -> Option<Migration> {
    let r = TableReader::new("migration", t, s.clone(), &["uri", "postcopy"]);
    spans.map.insert("migration".into(), s);
    let uri = r.string(m, "uri");
    if let Some(u) = &uri {
        spans.record("migration.uri".into(), u);
        check_migration_uri("migration.uri", u, m);
    }
    let postcopy = r.boolean(m, "postcopy");
    if let Some(p) = &postcopy {
        spans.record("migration.postcopy".into(), p);
    }
    r.finish(m);
    Some(Migration {
        uri: uri.map(|u| u.value),
        postcopy: postcopy.is_some_and(|p| p.value),
    })
}

fn is_pci_address(text: &str) -> bool {
    // DDDD:BB:DD.F, hexadecimal, as sysfs names devices.
    let b = text.as_bytes();
    let hex = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_hexdigit);
    b.len() == 12
        && b[4] == b':'
        && b[7] == b':'
        && b[10] == b'.'
        && hex(0..4)
        && hex(5..7)
        && hex(8..10)
        && (b'0'..=b'7').contains(&b[11])
}

fn read_devices(top: &TableReader<'_, '_>, m: &mut Mistakes, spans: &mut Spans) -> Option<Vec<Device>> {
    if !top.has("devices") {
        return Some(Vec::new());
    }
    let (items, span) = top.array(m, "devices")?;
    spans.map.insert("devices".into(), span);
    let mut devices = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let path = format!("devices[{i}]");
        let DeValue::Table(t) = item.get_ref() else {
            m.push(
                Diagnostic::new(path, item.span(), "expected a table")
                    .hint("list devices as [[devices]] tables with `id = \"...\"`"),
            );
            ok = false;
            continue;
        };
        let r = TableReader::new(
            path.clone(),
            t,
            item.span(),
            &["id", "host", "precopy", "state_size"],
        );
        let id = r.string(m, "id");
        if id.is_none() && !r.has("id") {
            r.missing(m, "id", "give the device's QOM id, e.g. `id = \"hostdev0\"`");
        }
        if let Some(id) = &id {
            spans.record(format!("{path}.id"), id);
            if id.value.is_empty() {
                m.push(Diagnostic::new(
                    format!("{path}.id"),
                    id.span.clone(),
                    "must not be empty",
                ));
            }
        }
        let host = r.string(m, "host");
        if let Some(h) = &host {
            if !is_pci_address(&h.value) {
                m.push(
                    Diagnostic::new(
                        format!("{path}.host"),
                        h.span.clone(),
                        format!("\"{}\" is not a PCI address", h.value),
                    )
                    .hint("write the full address as sysfs shows it, e.g. \"0000:3b:00.1\""),
                );
            }
        }
        let precopy = r.boolean(m, "precopy");
        let state_size = r.bytes(m, "state_size", "512MiB");
        r.finish(m);
        match id {
            Some(id) => devices.push(Device {
                id: id.value,
                host: host.map(|h| h.value),
                precopy: precopy.is_none_or(|p| p.value),
                state_size: state_size.map(|s| s.value),
            }),
            None => ok = false,
        }
    }
    ok.then_some(devices)
}

fn read_limits(t: &DeTable<'_>, s: Range<usize>, m: &mut Mistakes, spans: &mut Spans) -> Option<Limits> {
    let r = TableReader::new(
        "limits",
        t,
        s.clone(),
        &[
            "downtime",
            "max_downtime",
            "max_bandwidth",
            "deadline",
            "saving_timeout",
        ],
    );
    spans.map.insert("limits".into(), s);
    let d = Limits::default();
    let downtime = r.duration(m, "downtime", "300ms", false);
    let max_downtime = r.duration(m, "max_downtime", "2s", false);
    let max_bandwidth = r.rate(m, "max_bandwidth", "1GiB/s");
    let deadline = r.duration(m, "deadline", "10m", false);
    let saving_timeout = r.duration(m, "saving_timeout", "30s", false);
    for (key, at) in [
        ("downtime", &downtime),
        ("max_downtime", &max_downtime),
        ("deadline", &deadline),
        ("saving_timeout", &saving_timeout),
    ] {
        if let Some(at) = at {
            spans.record(format!("limits.{key}"), at);
        }
    }
    let failed = r.failed();
    r.finish(m);
    if failed {
        return None;
    }
    let downtime = downtime.map_or(d.downtime, |a| a.value);
    Some(Limits {
        downtime,
        // Without a ceiling, forcing may not go beyond the downtime the plan asked for.
        max_downtime: max_downtime.map_or(downtime, |a| a.value),
        max_bandwidth: max_bandwidth.map(|a| a.value),
        deadline: deadline.map_or(d.deadline, |a| a.value),
        saving_timeout: saving_timeout.map_or(d.saving_timeout, |a| a.value),
    })
}

fn read_convergence(
    t: &DeTable<'_>,
    s: Range<usize>,
    m: &mut Mistakes,
    spans: &mut Spans,
) -> Option<Convergence> {
    let r = TableReader::new(
        "convergence",
        t,
        s.clone(),
        &[
            "sample_interval",
            "dirty_rate",
            "kernel_mode",
            "calc_time",
            "stall_passes",
        ],
    );
    spans.map.insert("convergence".into(), s);
    let d = Convergence::default();
    let sample_interval = r.duration(m, "sample_interval", "200ms", false);
    let dirty_rate = r.choice(
        m,
        "dirty_rate",
        &[
            ("kernel", DirtyRateSource::Kernel),
            ("stats", DirtyRateSource::Stats),
        ],
    );
    let kernel_mode = r.choice(
        m,
        "kernel_mode",
        &[
            ("auto", KernelDirtyMode::Auto),
            ("dirty-ring", KernelDirtyMode::DirtyRing),
            ("dirty-bitmap", KernelDirtyMode::DirtyBitmap),
        ],
    );
    let calc_time = r.duration(m, "calc_time", "1s", false);
    if let Some(c) = &calc_time {
        spans.record("convergence.calc_time".into(), c);
    }
    if let Some(si) = &sample_interval {
        spans.record("convergence.sample_interval".into(), si);
    }
    let stall_passes = r.integer(m, "stall_passes", 1..=100);
    let failed = r.failed();
    r.finish(m);
    if failed {
        return None;
    }
    Some(Convergence {
        sample_interval: sample_interval.map_or(d.sample_interval, |a| a.value),
        dirty_rate: dirty_rate.map_or(d.dirty_rate, |a| a.value),
        kernel_mode: kernel_mode.map_or(d.kernel_mode, |a| a.value),
        calc_time: calc_time.map_or(d.calc_time, |a| a.value),
        stall_passes: stall_passes.map_or(d.stall_passes, |a| a.value as u32),
    })
}

const STEPS: &[(&str, Step)] = &[
    ("throttle", Step::Throttle),
    ("force-downtime", Step::ForceDowntime),
    ("abort", Step::Abort),
];

fn read_policy(t: &DeTable<'_>, s: Range<usize>, m: &mut Mistakes, spans: &mut Spans) -> Option<Policy> {
    const KEYS: &[&str] = &[
        "escalation",
        "on_deadline",
        "throttle",
        "dirty_limit",
        "throttle_initial",
        "throttle_increment",
        "throttle_max",
        "force",
    ];
    let r = TableReader::new("policy", t, s.clone(), KEYS);
    spans.map.insert("policy".into(), s);
    let d = Policy::default();
    let mut failed = false;
    let escalation = if r.has("escalation") {
        read_escalation(&r, m, spans)
    } else {
        Some(d.escalation.clone())
    };
    failed |= escalation.is_none();
    let on_deadline = r.choice(
        m,
        "on_deadline",
        &[("abort", Step::Abort), ("force-downtime", Step::ForceDowntime)],
    );
    let throttle = r.choice(
        m,
        "throttle",
        &[
            ("auto-converge", ThrottleMethod::AutoConverge),
            ("dirty-limit", ThrottleMethod::DirtyLimit),
        ],
    );
    if let Some(t) = &throttle {
        spans.record("policy.throttle".into(), t);
    }
    let dirty_limit = r.rate(m, "dirty_limit", "50MiB/s");
    let initial = r.integer(m, "throttle_initial", 1..=99);
    let increment = r.integer(m, "throttle_increment", 1..=100);
    let max = r.integer(m, "throttle_max", 1..=99);
    if let Some(i) = &initial {
        spans.record("policy.throttle_initial".into(), i);
    }
    let force = r.choice(
        m,
        "force",
        &[
            ("raise-limit", ForceMethod::RaiseLimit),
            ("stop-guest", ForceMethod::StopGuest),
        ],
    );
    if let Some(f) = &force {
        spans.record("policy.force".into(), f);
    }
    failed |= r.failed();
    r.finish(m);
    if failed {
        return None;
    }
    Some(Policy {
        escalation: escalation?,
        on_deadline: on_deadline.map_or(d.on_deadline, |a| a.value),
        throttle: throttle.map_or(d.throttle, |a| a.value),
        dirty_limit: dirty_limit.map_or(d.dirty_limit, |a| a.value),
        throttle_initial: initial.map_or(d.throttle_initial, |a| a.value as u8),
        throttle_increment: increment.map_or(d.throttle_increment, |a| a.value as u8),
        throttle_max: max.map_or(d.throttle_max, |a| a.value as u8),
        force: force.map_or(d.force, |a| a.value),
    })
}

fn read_escalation(r: &TableReader<'_, '_>, m: &mut Mistakes, spans: &mut Spans) -> Option<Vec<Step>> {
    let (items, span) = r.array(m, "escalation")?;
    spans.map.insert("policy.escalation".into(), span.clone());
    let hint = "list steps in order, e.g. `escalation = [\"throttle\", \"force-downtime\", \"abort\"]`";
    if items.is_empty() {
        m.push(Diagnostic::new("policy.escalation", span, "must list at least one step").hint(hint));
        return None;
    }
    let mut steps = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let key = format!("policy.escalation[{i}]");
        let step = match item.get_ref() {
            DeValue::String(s) => STEPS.iter().find(|(n, _)| *n == s.as_ref()).map(|(_, st)| *st),
            _ => None,
        };
        let Some(step) = step else {
            m.push(
                Diagnostic::new(key, item.span(), "unknown step")
                    .hint("steps are \"throttle\", \"force-downtime\" and \"abort\""),
            );
            ok = false;
            continue;
        };
        if steps.contains(&step) {
            m.push(
                Diagnostic::new(
                    key,
                    item.span(),
                    format!("step \"{}\" is listed twice", step.name()),
                )
                .hint(hint),
            );
            ok = false;
        } else if steps.contains(&Step::Abort) {
            m.push(
                Diagnostic::new(
                    key,
                    item.span(),
                    format!(
                        "step \"{}\" comes after \"abort\" and would never run",
                        step.name()
                    ),
                )
                .hint("put \"abort\" last"),
            );
            ok = false;
        }
        steps.push(step);
    }
    ok.then_some(steps)
}
