//! Where the VM goes: the `[source]` and `[destination]` endpoints and the `[migration]`
//! stream between them.

use std::net::IpAddr;
use std::ops::Range;
use std::path::PathBuf;

use toml::de::DeTable;

use crate::defaults;
use crate::diagnostic::Diagnostic;
use crate::model::*;
use crate::reader::{At, Mistakes, TableReader};

use super::tls;

/// The keys of `[source]`: an endpoint's only.
const SOURCE_KEYS: &[&str] = &["qmp"];

/// The keys of `[destination]`: an endpoint's, and what the tool does with the destination.
const DESTINATION_KEYS: &[&str] = &["qmp", "listen", "resume"];

pub(super) fn read_source(t: &DeTable<'_>, s: Range<usize>, m: &mut Mistakes) -> Option<Endpoint> {
    let r = TableReader::new("source", t, s, SOURCE_KEYS);
    let endpoint = read_endpoint(&r, m);
    r.finish(m);
    endpoint
}

pub(super) fn read_destination(t: &DeTable<'_>, s: Range<usize>, m: &mut Mistakes) -> Option<Destination> {
    let r = TableReader::new("destination", t, s, DESTINATION_KEYS);
    let endpoint = read_endpoint(&r, m);
    let listen = r.string(m, "listen");
    if let Some(l) = &listen {
        check_migration_uri("destination.listen", l, m);
    }
    let resume = r.boolean(m, "resume");
    r.finish(m);
    Some(Destination {
        endpoint: endpoint?,
        listen: listen.map(|l| l.value),
        resume: resume.map_or(defaults::destination::RESUME, |r| r.value),
    })
}

/// Reads the keys that say how a side is reached. Which kind of endpoint a table names
/// is decided here, from the keys it holds; today there is one kind, `qmp`.
fn read_endpoint(r: &TableReader<'_, '_>, m: &mut Mistakes) -> Option<Endpoint> {
    read_qmp(r, m).map(Endpoint::Qmp)
}

fn read_qmp(r: &TableReader<'_, '_>, m: &mut Mistakes) -> Option<QmpAddress> {
    let Some(text) = r.string(m, "qmp") else {
        if !r.has("qmp") {
            r.missing(m, "qmp", "write `qmp = \"unix:/run/qemu/vm.qmp\"`");
        }
        return None;
    };
    match parse_qmp_address(&text.value) {
        Ok(a) => Some(a),
        Err((msg, hint)) => {
            m.push(Diagnostic::new(r.key_path("qmp"), text.span, msg).hint(hint));
            None
        }
    }
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

/// The keys of `[migration]`: the stream's route, post-copy, and its TLS keys.
const MIGRATION_KEYS: &[&str] = &[
    "uri",
    "postcopy",
    tls::KEYS[0],
    tls::KEYS[1],
    tls::KEYS[2],
    tls::KEYS[3],
    tls::KEYS[4],
];

pub(super) fn read_migration(t: &DeTable<'_>, s: Range<usize>, m: &mut Mistakes) -> Option<Migration> {
    let r = TableReader::new("migration", t, s, MIGRATION_KEYS);
    let uri = r.string(m, "uri");
    if let Some(u) = &uri {
        check_migration_uri("migration.uri", u, m);
    }
    let postcopy = r.boolean(m, "postcopy");
    let tls = tls::read_tls(&r, m);
    r.finish(m);
    // A directory left out follows `tls_dir`, set by `defaults::follow` once all is read.
    let d = Migration::default();
    Some(Migration {
        uri: uri.map(|u| u.value),
        postcopy: postcopy.map_or(defaults::migration::POSTCOPY, |p| p.value),
        tls: tls.tls,
        tls_dir: tls.dir,
        tls_dir_source: tls.dir_source.unwrap_or(d.tls_dir_source),
        tls_dir_destination: tls.dir_destination.unwrap_or(d.tls_dir_destination),
        tls_hostname: tls.hostname,
    })
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
