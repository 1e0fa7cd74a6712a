//! The migration stream's encryption, across keys.
//!
//! The stream carries the guest's whole memory, secrets included. On this host (a
//! loopback address or a unix socket) it may travel in the clear; once it leaves the
//! host the plan must say which it wants: `tls = true`, or `tls = false` written out to
//! send it unencrypted on purpose. The `tls_*` keys mean something only with
//! `tls = true`, and a `unix:` URI names no host to check a certificate against.

use std::net::IpAddr;

use crate::diagnostic::Diagnostic;
use crate::model::Plan;
use crate::parse::Spans;
use crate::reader::Mistakes;

/// The keys that take effect only with `tls = true`.
const TLS_ONLY: [&str; 4] = [
    "migration.tls_dir",
    "migration.tls_dir_source",
    "migration.tls_dir_destination",
    "migration.tls_hostname",
];

pub(super) fn check(plan: &Plan, spans: &Spans, m: &mut Mistakes) {
    let Some(route) = route(plan, spans) else {
        return; // No URI is a mistake of its own.
    };
    if !plan.migration.tls {
        // With libvirt the directories are refused whatever `tls` says (see `libvirt`).
        let refused_anyway = |key: &&str| plan.is_libvirt() && *key != "migration.tls_hostname";
        for key in TLS_ONLY
            .into_iter()
            .filter(|key| spans.written(key) && !refused_anyway(key))
        {
            m.push(
                Diagnostic::new(key, spans.of(key), "has no effect: the stream is not encrypted")
                    .hint("add `tls = true` to [migration] to encrypt the stream with these certificates, or remove the key"),
            );
        }
        if let Some(host) = route.remote.filter(|_| !spans.written("migration.tls")) {
            let hint = if plan.is_libvirt() {
                "it carries the guest's whole memory: add `tls = true` to [migration] (libvirt's VIR_MIGRATE_TLS, with the certificates each host's qemu.conf names), or `tls = false` to send it in the clear on purpose"
            } else {
                "it carries the guest's whole memory: add `tls = true` to [migration] (certificates in /etc/pki/qemu on both hosts, or `tls_dir`), or `tls = false` to send it in the clear on purpose"
            };
            m.push(
                Diagnostic::new(
                    route.key,
                    spans.of(route.key),
                    format!(
                        "the migration stream to {} would leave this host unencrypted",
                        host.escape_debug()
                    ),
                )
                .hint(hint),
            );
        }
        return;
    }
    if route.unix && plan.migration.tls_hostname.is_none() {
        m.push(
            Diagnostic::new(
                "migration.tls_hostname",
                spans.of("migration.tls"),
                "a unix: migration URI names no host to check the destination's certificate against",
            )
            .hint("set `tls_hostname` to the name the destination's certificate carries; without it QEMU refuses: \"No hostname available for TLS\""),
        );
    }
}

/// Where the source sends the stream.
struct Route<'p> {
    /// The key that says so.
    key: &'static str,
    /// The host it goes to, when that is not this host.
    remote: Option<&'p str>,
    /// Whether it is a unix socket, which names no host.
    unix: bool,
}

/// The route of the stream: the URI the plan gives, or, through libvirt without one, the
/// destination daemon's host, which libvirt sends the stream to.
fn route<'p>(plan: &'p Plan, spans: &Spans) -> Option<Route<'p>> {
    if let Some(uri) = plan.migration_uri() {
        let key = match spans.written("migration.uri") {
            true => "migration.uri",
            false => "destination.listen",
        };
        return Some(Route {
            key,
            remote: remote_host(uri),
            unix: uri.starts_with("unix:"),
        });
    }
    let destination = plan.destination.endpoint.libvirt()?;
    Some(Route {
        key: "destination.libvirt",
        remote: destination.host().filter(|_| destination.is_remote()),
        unix: false,
    })
}

/// The host a `tcp:HOST:PORT` URI names when it is not this host; `None` for loopback
/// (`localhost`, 127.0.0.0/8, `::1`) and for `unix:` sockets.
fn remote_host(uri: &str) -> Option<&str> {
    let (host, _port) = uri.strip_prefix("tcp:")?.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    (!loopback).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::remote_host;

    #[test]
    fn only_a_tcp_host_off_loopback_is_remote() {
        assert_eq!(remote_host("tcp:10.0.0.2:49152"), Some("10.0.0.2"));
        assert_eq!(remote_host("tcp:dst-01.example:49152"), Some("dst-01.example"));
        assert_eq!(remote_host("tcp:[2001:db8::2]:49152"), Some("2001:db8::2"));
        assert_eq!(remote_host("tcp:0.0.0.0:49152"), Some("0.0.0.0"));
        assert_eq!(remote_host("tcp:127.0.0.1:49152"), None);
        assert_eq!(remote_host("tcp:127.4.5.6:49152"), None);
        assert_eq!(remote_host("tcp:[::1]:49152"), None);
        assert_eq!(remote_host("tcp:localhost:49152"), None);
        assert_eq!(remote_host("unix:/run/vfio-migrate/stream.sock"), None);
    }
}
