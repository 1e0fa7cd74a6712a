//! Reading a plan's TOML into a [`Plan`], recording every mistake with its position.
//!
//! Each table has its own function listing the keys it knows, in a module per part of the
//! plan; checks that involve more than one key live in [`crate::validate`].

mod devices;
mod endpoints;
mod libvirt;
mod limits;
mod notify;
mod policy;
mod security;
mod spans;
mod stream;
mod tls;

use std::ops::Range;

use toml::de::DeTable;

use crate::defaults;
use crate::model::*;
use crate::reader::{Mistakes, TableReader};

pub(crate) use endpoints::LIBVIRT_TEST_DRIVER;
pub use notify::{is_variable_name, webhook_url_problem};
pub(crate) use spans::Spans;

/// The plan's parts as read; a part is `None` when reading it found a mistake.
struct Parts {
    vm: Option<Vm>,
    source: Option<Endpoint>,
    destination: Option<Destination>,
    migration: Option<Migration>,
    devices: Option<Vec<Device>>,
    limits: Option<Limits>,
    convergence: Option<Convergence>,
    policy: Option<Policy>,
    security: Option<Security>,
    libvirt: Option<LibvirtOptions>,
    /// `Some(None)` when the plan has no `[notify]`.
    notify: Option<Option<Notify>>,
}

impl Parts {
    /// The plan, when every part read.
    fn plan(self) -> Option<Plan> {
        Some(Plan {
            vm: self.vm?,
            source: self.source?,
            destination: self.destination?,
            migration: self.migration?,
            devices: self.devices?,
            limits: self.limits?,
            convergence: self.convergence?,
            policy: self.policy?,
            security: self.security?,
            libvirt: self.libvirt?,
            notify: self.notify?,
        })
    }
}

/// Reads the whole plan, defaults included. Returns `None` for the plan when any mistake
/// was found.
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
        "security",
        "libvirt",
        "notify",
    ];
    let spans = Spans::of_document(root, span.clone());
    let top = TableReader::new("", root, span, KEYS);
    let parts = Parts {
        vm: required_table(&top, m, "vm", "add a [vm] table with `name = \"...\"`")
            .and_then(|(t, s)| read_vm(t, s, m)),
        source: required_table(
            &top,
            m,
            "source",
            "add a [source] table with `qmp = \"unix:/path/to/qmp.sock\"`, or with `libvirt = \"qemu:///system\"` and `domain = \"vm1\"`",
        )
        .and_then(|(t, s)| endpoints::read_source(t, s, m)),
        destination: required_table(
            &top,
            m,
            "destination",
            "add a [destination] table with `qmp = \"unix:/path/to/qmp.sock\"`, or with `libvirt = \"qemu+ssh://HOST/system\"`",
        )
        .and_then(|(t, s)| endpoints::read_destination(t, s, m)),
        migration: optional_table(&top, m, "migration", endpoints::read_migration),
        devices: devices::read_devices(&top, m),
        limits: optional_table(&top, m, "limits", limits::read_limits),
        convergence: optional_table(&top, m, "convergence", limits::read_convergence),
        policy: optional_table(&top, m, "policy", policy::read_policy),
        security: optional_table(&top, m, "security", security::read_security),
        libvirt: optional_table(&top, m, "libvirt", libvirt::read_libvirt),
        notify: match top.has("notify") {
            true => top
                .table(m, "notify")
                .and_then(|(t, s)| notify::read_notify(t, s, m))
                .map(Some),
            false => Some(None),
        },
    };
    top.finish(m);
    let mut plan = parts.plan();
    if let Some(plan) = &mut plan {
        defaults::follow(plan, |key| spans.written(key));
    }
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
    read: impl FnOnce(&'a DeTable<'i>, Range<usize>, &mut Mistakes) -> Option<T>,
) -> Option<T> {
    if !top.has(key) {
        return Some(T::default());
    }
    let (t, s) = top.table(m, key)?;
    read(t, s, m)
}

fn read_vm(t: &DeTable<'_>, s: Range<usize>, m: &mut Mistakes) -> Option<Vm> {
    let r = TableReader::new("vm", t, s, &["name", "allow_unlisted_devices"]);
    let name = r.name(m, "name", "db-01");
    if name.is_none() && !r.has("name") {
        r.missing(m, "name", "name the VM, e.g. `name = \"db-01\"`");
    }
    let allow = r.boolean(m, "allow_unlisted_devices");
    r.finish(m);
    Some(Vm {
        name: name?.value,
        allow_unlisted_devices: allow.map_or(defaults::vm::ALLOW_UNLISTED_DEVICES, |a| a.value),
    })
}
