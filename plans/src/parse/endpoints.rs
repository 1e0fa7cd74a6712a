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
use crate::text::{bounded, is_unprintable, quoted};

use super::{stream, tls};

/// The keys of `[source]`: an endpoint's only.
const SOURCE_KEYS: &[&str] = &["qmp", "libvirt", "domain"];

/// The keys of `[destination]`: an endpoint's, and what the tool does with the destination.
const DESTINATION_KEYS: &[&str] = &["qmp", "libvirt", "domain", "listen", "resume"];

/// The hint for an endpoint table that names neither kind.
const EITHER_KIND: &str = "write `qmp = \"unix:/run/qemu/vm.qmp\"` to reach a QEMU monitor, or `libvirt = \"qemu:///system\"` with `domain = \"vm1\"` to reach a libvirt domain";

/// The URI of libvirt's built-in test driver, accepted beside the qemu driver's so that
/// the tool's libvirt side can be tried without a hypervisor.
pub(crate) const LIBVIRT_TEST_DRIVER: &str = "test:///default";

/// The transports libvirt's remote driver knows (`qemu+TRANSPORT://`).
const LIBVIRT_TRANSPORTS: &[&str] = &["ssh", "tls", "tcp", "unix", "libssh", "libssh2", "ext"];

/// Whether an endpoint's libvirt domain must be named: on the source it must, on the
/// destination it is the name the domain gets there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Domain {
    Required,
    Optional,
}

pub(super) fn read_source(t: &DeTable<'_>, s: Range<usize>, m: &mut Mistakes) -> Option<Endpoint> {
    let r = TableReader::new("source", t, s, SOURCE_KEYS);
    let endpoint = read_endpoint(&r, m, Domain::Required);
    r.finish(m);
    endpoint
}

pub(super) fn read_destination(t: &DeTable<'_>, s: Range<usize>, m: &mut Mistakes) -> Option<Destination> {
    let r = TableReader::new("destination", t, s, DESTINATION_KEYS);
    let endpoint = read_endpoint(&r, m, Domain::Optional);
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
/// is decided here, from the keys it holds: `qmp` for a QEMU monitor, `libvirt` (with
/// `domain`) for a libvirt domain.
fn read_endpoint(r: &TableReader<'_, '_>, m: &mut Mistakes, domain: Domain) -> Option<Endpoint> {
    match (r.value_span("qmp"), r.value_span("libvirt")) {
        (Some(qmp), Some(libvirt)) => {
            // The one written second is the one too many.
            let second = if libvirt.start > qmp.start {
                ("libvirt", libvirt)
            } else {
                ("qmp", qmp)
            };
            m.push(
                Diagnostic::new(
                    r.key_path(second.0),
                    second.1,
                    "`qmp` and `libvirt` cannot both be set: a side is reached one way",
                )
                .hint("keep `qmp` to reach the QEMU monitor, or `libvirt` with `domain` to reach the domain through libvirt; remove the other"),
            );
            None
        }
        (None, None) => {
            r.missing(m, "qmp", EITHER_KIND);
            None
        }
        (Some(_), None) => {
            if let Some(span) = r.value_span("domain") {
                m.push(
                    Diagnostic::new(r.key_path("domain"), span, "`domain` goes with `libvirt`, not `qmp`")
                        .hint("a QMP monitor belongs to one VM already: remove `domain`, or reach the side through libvirt with `libvirt = \"qemu:///system\"`"),
                );
            }
            read_qmp(r, m).map(Endpoint::Qmp)
        }
        (None, Some(_)) => read_libvirt(r, m, domain).map(Endpoint::Libvirt),
    }
}

fn read_libvirt(r: &TableReader<'_, '_>, m: &mut Mistakes, domain: Domain) -> Option<LibvirtEndpoint> {
    let uri = r.string(m, "libvirt");
    let uri = uri.and_then(|uri| match check_libvirt_uri(&uri.value) {
        Ok(()) => Some(uri.value),
        Err((msg, hint)) => {
            m.push(Diagnostic::new(r.key_path("libvirt"), uri.span, msg).hint(hint));
            None
        }
    });
    let name = if r.has("domain") {
        let name = r.name(m, "domain", "vm1")?;
        if name.value.contains('/') {
            m.push(
                Diagnostic::new(
                    r.key_path("domain"),
                    name.span,
                    format!(
                        "{} is not a domain name or UUID: libvirt's names hold no \"/\"",
                        quoted(&name.value)
                    ),
                )
                .hint("write the domain's name as `virsh list --all` shows it, or its UUID"),
            );
            return None;
        }
        Some(name.value)
    } else {
        if domain == Domain::Required {
            r.missing(
                m,
                "domain",
                "name the domain to migrate, by name or UUID: e.g. `domain = \"vm1\"`",
            );
            return None;
        }
        None
    };
    Some(LibvirtEndpoint {
        uri: uri?,
        domain: name,
    })
}

/// Checks a libvirt connection URI: the qemu driver, over one of libvirt's transports, to
/// the system or session daemon; or [`LIBVIRT_TEST_DRIVER`].
fn check_libvirt_uri(text: &str) -> Result<(), (String, String)> {
    let example =
        "write e.g. `libvirt = \"qemu:///system\"` or `libvirt = \"qemu+ssh://host.example/system\"`";
    if text == LIBVIRT_TEST_DRIVER {
        return Ok(());
    }
    let not_a_uri = |why: &str| {
        let why = if why.is_empty() {
            String::new()
        } else {
            format!(": {why}")
        };
        Err((
            format!("{} is not a libvirt URI{why}", quoted(text)),
            example.to_string(),
        ))
    };
    if text.chars().any(|c| c.is_whitespace() || is_unprintable(c)) {
        return not_a_uri("it holds a space or a control character");
    }
    let Some((scheme, rest)) = text.split_once("://") else {
        return not_a_uri("");
    };
    let (driver, transport) = match scheme.split_once('+') {
        Some((driver, transport)) => (driver, Some(transport)),
        None => (scheme, None),
    };
    if driver != "qemu" {
        return Err((
            format!("{} names libvirt's {} driver, not its qemu driver", quoted(text), quoted(driver)),
            "this tool migrates QEMU/KVM domains: write `qemu:///system` for this host, `qemu+ssh://HOST/system` or `qemu+tls://HOST/system` for another".into(),
        ));
    }
    if let Some(transport) = transport.filter(|t| !LIBVIRT_TRANSPORTS.contains(t)) {
        return Err((
            format!(
                "{} names the unknown transport {}",
                quoted(text),
                quoted(transport)
            ),
            format!(
                "libvirt's transports are {}; e.g. `qemu+ssh://HOST/system`",
                LIBVIRT_TRANSPORTS.join(", ")
            ),
        ));
    }
    let hierarchical = &rest[..rest.find(['?', '#']).unwrap_or(rest.len())];
    let (authority, path) = hierarchical.split_at(hierarchical.find('/').unwrap_or(hierarchical.len()));
    if let Some((userinfo, _)) = authority.rsplit_once('@') {
        if userinfo.contains(':') {
            return Err((
                format!("{} carries a password", quoted(text)),
                "libvirt takes no password in its URI: it authenticates with SSH keys, TLS certificates or SASL; remove `:PASSWORD`".into(),
            ));
        }
    }
    if uri_host_port(authority).is_none() {
        return not_a_uri(
            "the host is not an IP address or a host name, or the port not a number from 1 to 65535",
        );
    }
    if path != "/system" && path != "/session" {
        return Err((
            format!("{} names no QEMU daemon: the path must be /system or /session", quoted(text)),
            "`/system` reaches the daemon that runs the host's VMs, `/session` a user's own; e.g. `qemu+ssh://HOST/system`".into(),
        ));
    }
    Ok(())
}

/// The host and port of a URI's authority (`[user@]host[:port]`, `[v6]` too); the host
/// is empty for a URI without one. `None` when either is malformed.
fn uri_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = match host_port.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']')?;
            if host.parse::<std::net::Ipv6Addr>().is_err() {
                return None;
            }
            (host, after)
        }
        None => match host_port.find(':') {
            Some(i) => (&host_port[..i], &host_port[i..]),
            None => (host_port, ""),
        },
    };
    let host_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':');
    if !host.chars().all(host_char) {
        return None;
    }
    let port = match port.strip_prefix(':') {
        None if port.is_empty() => None,
        None => return None,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().ok().filter(|p| *p != 0)?)
        }
        Some(_) => return None,
    };
    Some((host, port))
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

/// Parses `unix:PATH` or `tcp:HOST:PORT`, HOST an IP address or `localhost`. Whether a
/// host other than this one may be reached is a check across keys (`[security]`), in
/// [`crate::validate`].
fn parse_qmp_address(text: &str) -> Result<QmpAddress, (String, String)> {
    let example = "write `qmp = \"unix:/run/qemu/vm.qmp\"` or `qmp = \"tcp:127.0.0.1:4444\"`";
    if let Some(path) = text.strip_prefix("unix:") {
        if path.is_empty() {
            return Err(("the unix socket path is empty".into(), example.into()));
        }
        return Ok(QmpAddress::Unix(PathBuf::from(path)));
    }
    if let Some(rest) = text.strip_prefix("tcp:") {
        let (host, port) =
            split_host_port(rest).map_err(|e| (e.message(text, "tcp:HOST:PORT"), example.into()))?;
        if host != "localhost" && host.parse::<IpAddr>().is_err() {
            return Err((
                format!("QMP over TCP takes an IP address or localhost, not the host name {}", quoted(host)),
                "the tool does not resolve names for a monitor: write its address, e.g. `tcp:192.0.2.10:4444`"
                    .into(),
            ));
        }
        return Ok(QmpAddress::Tcp(host.to_string(), port));
    }
    Err((format!("{} is not a QMP address", quoted(text)), example.into()))
}

/// Why the `HOST:PORT` of a `tcp:` address did not read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPortError {
    /// No `:PORT`, or nothing after the colon.
    NoPort,
    /// Nothing before `:PORT`.
    NoHost,
    /// The port has something other than digits.
    PortNotANumber,
    /// The port is 0 or above 65535; the digits as written.
    PortOutOfRange(String),
    /// `user:password@` before the host, which neither QEMU nor QMP takes here.
    Credentials,
    /// The host has characters no address or host name has.
    BadHost,
}

impl HostPortError {
    /// The message for the address `text` (quoted whole, so nothing in it is shown
    /// unmasked), which should have the form `form`.
    fn message(&self, text: &str, form: &str) -> String {
        match self {
            HostPortError::NoPort => format!("{} is not {form}: the port is missing", quoted(text)),
            HostPortError::NoHost => format!("{} is not {form}: the host is missing", quoted(text)),
            HostPortError::PortNotANumber => {
                format!("{} is not {form}: the port is not a number", quoted(text))
            }
            HostPortError::PortOutOfRange(port) => {
                format!("port {} is out of range: the port must be 1–65535", bounded(port))
            }
            HostPortError::Credentials => format!(
                "{} is not {form}: it carries a user or password, which a tcp: address cannot",
                quoted(text)
            ),
            HostPortError::BadHost => format!(
                "{} is not {form}: the host is not an IP address or a host name",
                quoted(text)
            ),
        }
    }
}

/// Splits `HOST:PORT` (`[V6]:PORT` too), the port 1 to 65535.
fn split_host_port(text: &str) -> Result<(&str, u16), HostPortError> {
    let (host, port) = text.rsplit_once(':').ok_or(HostPortError::NoPort)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if port.is_empty() {
        return Err(HostPortError::NoPort);
    }
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HostPortError::PortNotANumber);
    }
    let port = match port.parse::<u16>() {
        Ok(p) if p != 0 => p,
        _ => return Err(HostPortError::PortOutOfRange(port.to_string())),
    };
    if host.is_empty() {
        return Err(HostPortError::NoHost);
    }
    if host.contains('@') {
        return Err(HostPortError::Credentials);
    }
    // Letters, digits, dots and hyphens name a host; colons an IPv6 address; QEMU takes
    // nothing else before the port.
    let host_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':');
    if !host.chars().all(host_char) {
        return Err(HostPortError::BadHost);
    }
    Ok((host, port))
}

/// The keys of `[migration]`: the stream's route, post-copy, its TLS keys and its
/// efficiency keys.
const MIGRATION_KEYS: &[&str] = &[
    "uri",
    "postcopy",
    tls::KEYS[0],
    tls::KEYS[1],
    tls::KEYS[2],
    tls::KEYS[3],
    tls::KEYS[4],
    stream::KEYS[0],
    stream::KEYS[1],
    stream::KEYS[2],
    stream::KEYS[3],
    stream::KEYS[4],
    stream::KEYS[5],
];

pub(super) fn read_migration(t: &DeTable<'_>, s: Range<usize>, m: &mut Mistakes) -> Option<Migration> {
    let r = TableReader::new("migration", t, s, MIGRATION_KEYS);
    let uri = r.string(m, "uri");
    if let Some(u) = &uri {
        check_migration_uri("migration.uri", u, m);
    }
    let postcopy = r.boolean(m, "postcopy");
    let tls = tls::read_tls(&r, m);
    let stream = stream::read_stream(&r, m);
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
        multifd_channels: stream.multifd_channels,
        multifd_compression: stream.multifd_compression,
        multifd_compression_level: stream.multifd_compression_level,
        xbzrle_cache: stream.xbzrle_cache,
        zero_page_detection: stream.zero_page_detection,
        device_state_transfer: stream.device_state_transfer,
    })
}

/// Checks a migration URI's form: `tcp:HOST:PORT` or `unix:PATH`.
fn check_migration_uri(key: &str, at: &At<String>, m: &mut Mistakes) {
    let hint = "write e.g. \"tcp:10.0.0.2:49152\" or \"unix:/run/vfio-migrate/stream.sock\"";
    let problem = if let Some(rest) = at.value.strip_prefix("tcp:") {
        split_host_port(rest)
            .err()
            .map(|e| e.message(&at.value, "tcp:HOST:PORT"))
    } else if let Some(path) = at.value.strip_prefix("unix:") {
        path.is_empty()
            .then(|| "the unix socket path is empty".to_string())
    } else {
        Some(format!(
            "{} is not a migration URI this tool supports",
            quoted(&at.value)
        ))
    };
    if let Some(problem) = problem {
        m.push(Diagnostic::new(key, at.span.clone(), problem).hint(hint));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_is_a_number_from_1_to_65535() {
        assert_eq!(split_host_port("h:65535"), Ok(("h", 65535)));
        assert_eq!(split_host_port("[::1]:1"), Ok(("::1", 1)));
        assert_eq!(
            split_host_port("h:65536"),
            Err(HostPortError::PortOutOfRange("65536".into()))
        );
        assert_eq!(
            split_host_port("h:0"),
            Err(HostPortError::PortOutOfRange("0".into()))
        );
        assert_eq!(split_host_port("h:http"), Err(HostPortError::PortNotANumber));
        assert_eq!(split_host_port("h:-1"), Err(HostPortError::PortNotANumber));
        assert_eq!(split_host_port("h"), Err(HostPortError::NoPort));
        assert_eq!(split_host_port("h:"), Err(HostPortError::NoPort));
        assert_eq!(split_host_port(":80"), Err(HostPortError::NoHost));
    }

    #[test]
    fn a_host_is_an_address_or_a_name_without_credentials() {
        assert_eq!(
            split_host_port("dst-01.example:49152"),
            Ok(("dst-01.example", 49152))
        );
        assert_eq!(split_host_port("::1:49152"), Ok(("::1", 49152)));
        assert_eq!(
            split_host_port("admin:hunter2@10.0.0.2:49152"),
            Err(HostPortError::Credentials)
        );
        assert_eq!(split_host_port("10.0.0.2 ; rm:1"), Err(HostPortError::BadHost));
        assert_eq!(split_host_port("h\u{1b}[2J:1"), Err(HostPortError::BadHost));
    }

    #[test]
    fn a_port_out_of_range_says_what_a_port_may_be() {
        let e = HostPortError::PortOutOfRange("99999".into());
        assert_eq!(
            e.message("tcp:h:99999", "tcp:HOST:PORT"),
            "port 99999 is out of range: the port must be 1–65535"
        );
    }

    #[test]
    fn a_malformed_address_with_credentials_is_quoted_masked() {
        let message = HostPortError::PortNotANumber.message("tcp:user:hunter2@host", "tcp:HOST:PORT");
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn a_qmp_host_is_an_ip_address_or_localhost() {
        assert!(parse_qmp_address("tcp:localhost:4444").is_ok());
        assert!(parse_qmp_address("tcp:192.0.2.10:4444").is_ok());
        assert!(parse_qmp_address("tcp:[2001:db8::1]:4444").is_ok());
        let (message, _) = parse_qmp_address("tcp:qemu.example:4444").expect_err("a name");
        assert!(message.contains("takes an IP address"), "{message}");
    }
}
