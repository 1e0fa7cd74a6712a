//! Plans whose sides are libvirt domains: `libvirt` and `domain` in the endpoint tables,
//! the `[libvirt]` table, devices' `destination_host`, and the mistakes a plan can make
//! with them, each at its file, line, key, with a hint. A side is reached one way, told
//! by its keys; both sides the same way; keys that mean something only over QMP are
//! refused through libvirt, and the other way round.

use plans::{defaults, Endpoint, LibvirtEndpoint, Plan, PlanErrors};
use serde_json::json;

/// A valid libvirt plan; tests replace parts of it or add tables after it.
const LIBVIRT: &str = r#"[vm]
name = "db-01"

[source]
libvirt = "qemu:///system"
domain = "db-01"

[destination]
libvirt = "qemu+ssh://dst.example/system"

[migration]
tls = true
"#;

/// A valid QMP plan, the same as the other tests' smallest one.
const QMP: &str = r#"[vm]
name = "db-01"

[source]
qmp = "unix:/run/src.qmp"

[destination]
qmp = "unix:/run/dst.qmp"
listen = "tcp:127.0.0.1:49152"
"#;

fn load(text: &str) -> Result<Plan, PlanErrors> {
    plans::load("plan.toml", text)
}

fn valid(text: &str) -> Plan {
    load(text).unwrap_or_else(|e| panic!("{e}"))
}

/// One mistake as the operator sees it.
#[derive(Debug)]
struct Mistake {
    line: usize,
    key: String,
    message: String,
    hint: String,
}

fn mistakes(text: &str) -> Vec<Mistake> {
    match load(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e
            .located()
            .into_iter()
            .map(|d| {
                assert_eq!(d.file, "plan.toml");
                Mistake {
                    line: d.line.expect("a mistake in the plan has a line"),
                    key: d.diagnostic.key,
                    message: d.diagnostic.message,
                    hint: d.diagnostic.hint.expect("every mistake here has a hint"),
                }
            })
            .collect(),
    }
}

/// The only mistake of a plan.
fn the_mistake(text: &str) -> Mistake {
    let mut all = mistakes(text);
    assert_eq!(all.len(), 1, "{all:#?}");
    all.remove(0)
}

// The happy paths.

#[test]
fn both_sides_are_libvirt_domains() {
    let plan = valid(LIBVIRT);
    assert!(plan.is_libvirt());
    assert_eq!(
        plan.source,
        Endpoint::Libvirt(LibvirtEndpoint {
            uri: "qemu:///system".into(),
            domain: Some("db-01".into()),
        })
    );
    let destination = plan
        .destination
        .endpoint
        .libvirt()
        .expect("a libvirt destination");
    assert_eq!(destination.uri, "qemu+ssh://dst.example/system");
    assert_eq!(destination.domain, None, "left out: the domain keeps its name");
    assert_eq!(plan.source.qmp(), None);
}

#[test]
fn the_libvirt_table_defaults_to_a_managed_migration_that_moves_the_definition() {
    let plan = valid(LIBVIRT);
    assert_eq!(plan.libvirt.peer_to_peer, defaults::libvirt::PEER_TO_PEER);
    assert_eq!(plan.libvirt.persist, defaults::libvirt::PERSIST);
    assert_eq!(plan.libvirt.undefine_source, defaults::libvirt::UNDEFINE_SOURCE);
    assert!(!plan.libvirt.peer_to_peer && plan.libvirt.persist && plan.libvirt.undefine_source);
    let plan = valid(&format!(
        "{LIBVIRT}[libvirt]\npeer_to_peer = true\npersist = false\nundefine_source = false\n"
    ));
    assert!(plan.libvirt.peer_to_peer && !plan.libvirt.persist && !plan.libvirt.undefine_source);
}

#[test]
fn every_transport_of_the_qemu_driver_and_both_daemons_are_taken() {
    for uri in [
        "qemu:///system",
        "qemu:///session",
        "qemu+ssh://dst.example/system",
        "qemu+ssh://root@dst.example:2222/system?keyfile=/root/.ssh/id_ed25519",
        "qemu+tls://dst.example/system",
        "qemu+tcp://192.0.2.10:16509/system",
        "qemu+unix:///system?socket=/run/libvirt/virtqemud-sock",
        "qemu+libssh://dst.example/system",
        "qemu+libssh2://dst.example/system?known_hosts=/root/.ssh/known_hosts",
        "qemu+ext:///system?command=/usr/local/bin/connect",
        "qemu+tls://[2001:db8::2]:16514/system",
    ] {
        let text = LIBVIRT
            .replace("qemu:///system", "qemu+ssh://src.example/system")
            .replace("qemu+ssh://dst.example/system", uri);
        let plan = load(&text).unwrap_or_else(|e| panic!("{uri}: {e}"));
        assert_eq!(
            plan.destination.endpoint.libvirt().map(|l| l.uri.as_str()),
            Some(uri)
        );
    }
}

#[test]
fn libvirts_test_driver_is_taken_on_both_sides() {
    let text = LIBVIRT
        .replace("qemu:///system", "test:///default")
        .replace("qemu+ssh://dst.example/system", "test:///default");
    let plan = valid(&text);
    assert_eq!(plan.source.to_string(), "test:///default");
}

#[test]
fn a_domain_is_named_by_name_or_uuid_and_the_destination_may_rename_it() {
    let text = LIBVIRT
        .replace(
            "domain = \"db-01\"",
            "domain = \"4dea22b3-1d52-d8f3-2516-782e98ab3fa0\"",
        )
        .replace(
            "libvirt = \"qemu+ssh://dst.example/system\"",
            "libvirt = \"qemu+ssh://dst.example/system\"\ndomain = \"db-01-moved\"",
        );
    let plan = valid(&text);
    assert_eq!(
        plan.source.libvirt().and_then(|l| l.domain.as_deref()),
        Some("4dea22b3-1d52-d8f3-2516-782e98ab3fa0")
    );
    assert_eq!(
        plan.destination
            .endpoint
            .libvirt()
            .and_then(|l| l.domain.as_deref()),
        Some("db-01-moved")
    );
}

#[test]
fn a_destination_host_is_a_pci_address_kept_in_lower_case() {
    let plan = valid(&format!(
        "{LIBVIRT}[[devices]]\nid = \"ua-gpu0\"\nhost = \"0000:3b:00.0\"\ndestination_host = \"0000:5E:00.3\"\n"
    ));
    assert_eq!(plan.devices[0].destination_host.as_deref(), Some("0000:5e:00.3"));
    assert_eq!(valid(QMP).devices.len(), 0);
}

#[test]
fn through_libvirt_the_stream_needs_no_uri_and_multifd_no_listen() {
    let plan = valid(&LIBVIRT.replace("tls = true", "tls = true\nmultifd_channels = 4"));
    assert_eq!(
        plan.migration_uri(),
        None,
        "libvirt sends it to the destination host"
    );
    assert_eq!(plan.migration.multifd_channels, Some(4));
    let plan = valid(&LIBVIRT.replace("tls = true", "uri = \"tcp:10.0.0.2:49152\"\ntls = true"));
    assert_eq!(plan.migration_uri(), Some("tcp:10.0.0.2:49152"));
}

#[test]
fn a_daemon_on_this_host_streams_in_the_clear_unless_the_plan_asks() {
    let text = LIBVIRT
        .replace("qemu+ssh://dst.example/system", "qemu+ssh://localhost/system")
        .replace("tls = true", "");
    assert!(!valid(&text).migration.tls);
}

#[test]
fn the_json_echo_keeps_the_libvirt_and_domain_keys() {
    let echo = serde_json::to_value(valid(LIBVIRT)).expect("a plan serializes");
    assert_eq!(
        echo["source"],
        json!({ "libvirt": "qemu:///system", "domain": "db-01" })
    );
    assert_eq!(
        echo["destination"],
        json!({
            "libvirt": "qemu+ssh://dst.example/system",
            "listen": null,
            "resume": true,
        })
    );
    assert_eq!(
        echo["libvirt"],
        json!({ "peer_to_peer": false, "persist": true, "undefine_source": true })
    );
}

#[test]
fn the_schema_shows_the_libvirt_and_domain_keys_on_both_sides() {
    let schema: serde_json::Value =
        serde_json::from_str(&plans::schema::plan_schema_json()).expect("schema is JSON");
    let source = &schema["$defs"]["SourceEndpoint"]["oneOf"][1];
    assert_eq!(source["required"], json!(["libvirt", "domain"]));
    let destination = &schema["$defs"]["Destination"]["oneOf"][1];
    assert_eq!(destination["required"], json!(["libvirt"]));
    assert!(destination["properties"]["domain"].is_object());
}

#[test]
fn an_endpoint_displays_its_uri_with_any_password_masked() {
    let endpoint = LibvirtEndpoint {
        uri: "qemu+ssh://root:hunter2@dst.example/system".into(),
        domain: None,
    };
    assert_eq!(
        Endpoint::Libvirt(endpoint).to_string(),
        "qemu+ssh://root:***@dst.example/system"
    );
    assert_eq!(
        valid(LIBVIRT).destination.endpoint.to_string(),
        "qemu+ssh://dst.example/system"
    );
}

// Reading an endpoint table.

#[test]
fn a_table_with_both_kinds_is_refused_at_the_one_written_second() {
    let text = LIBVIRT.replace(
        "libvirt = \"qemu:///system\"",
        "libvirt = \"qemu:///system\"\nqmp = \"unix:/run/src.qmp\"",
    );
    let m = the_mistake(&text);
    assert_eq!((m.line, m.key.as_str()), (6, "source.qmp"));
    assert_eq!(
        m.message,
        "`qmp` and `libvirt` cannot both be set: a side is reached one way"
    );
    assert!(
        m.hint
            .starts_with("keep `qmp` to reach the QEMU monitor, or `libvirt`"),
        "{}",
        m.hint
    );

    let text = QMP.replace(
        "qmp = \"unix:/run/dst.qmp\"",
        "qmp = \"unix:/run/dst.qmp\"\nlibvirt = \"qemu:///system\"",
    );
    let m = the_mistake(&text);
    assert_eq!((m.line, m.key.as_str()), (9, "destination.libvirt"));
}

#[test]
fn a_table_with_neither_kind_names_both_in_its_hint() {
    let text = LIBVIRT.replace("libvirt = \"qemu+ssh://dst.example/system\"\n", "");
    let m = the_mistake(&text);
    assert_eq!((m.line, m.key.as_str()), (8, "destination.qmp"));
    assert_eq!(m.message, "missing required key `qmp`");
    assert!(m.hint.contains("`qmp = \"unix:/run/qemu/vm.qmp\"`"), "{}", m.hint);
    assert!(
        m.hint
            .contains("`libvirt = \"qemu:///system\"` with `domain = \"vm1\"`"),
        "{}",
        m.hint
    );
}

#[test]
fn a_libvirt_source_must_name_its_domain() {
    let m = the_mistake(&LIBVIRT.replace("domain = \"db-01\"\n", ""));
    assert_eq!((m.line, m.key.as_str()), (4, "source.domain"));
    assert_eq!(m.message, "missing required key `domain`");
    assert_eq!(
        m.hint,
        "name the domain to migrate, by name or UUID: e.g. `domain = \"vm1\"`"
    );
}

#[test]
fn an_empty_domain_or_one_with_a_slash_is_refused_at_its_value() {
    let m = the_mistake(&LIBVIRT.replace("domain = \"db-01\"", "domain = \" \""));
    assert_eq!((m.line, m.key.as_str()), (6, "source.domain"));
    assert_eq!(m.message, "must not be empty");
    assert_eq!(m.hint, "write e.g. `domain = \"vm1\"`");

    let m = the_mistake(&LIBVIRT.replace("domain = \"db-01\"", "domain = \"vms/db-01\""));
    assert_eq!((m.line, m.key.as_str()), (6, "source.domain"));
    assert_eq!(
        m.message,
        "\"vms/db-01\" is not a domain name or UUID: libvirt's names hold no \"/\""
    );
    assert_eq!(
        m.hint,
        "write the domain's name as `virsh list --all` shows it, or its UUID"
    );
}

#[test]
fn a_domain_next_to_qmp_is_refused() {
    let text = QMP.replace(
        "qmp = \"unix:/run/src.qmp\"",
        "qmp = \"unix:/run/src.qmp\"\ndomain = \"db-01\"",
    );
    let m = the_mistake(&text);
    assert_eq!((m.line, m.key.as_str()), (6, "source.domain"));
    assert_eq!(m.message, "`domain` goes with `libvirt`, not `qmp`");
    assert!(
        m.hint
            .starts_with("a QMP monitor belongs to one VM already: remove `domain`"),
        "{}",
        m.hint
    );
}

/// The mistake of a plan whose destination URI is `uri`.
fn destination_uri_mistake(uri: &str) -> Mistake {
    let m = the_mistake(&LIBVIRT.replace("qemu+ssh://dst.example/system", uri));
    assert_eq!((m.line, m.key.as_str()), (9, "destination.libvirt"), "{uri}");
    m
}

#[test]
fn another_driver_is_refused_naming_the_qemu_driver_in_the_hint() {
    for (uri, driver) in [
        ("xen://dst.example/system", "xen"),
        ("lxc:///system", "lxc"),
        ("test:///other", "test"),
        ("test+ssh://dst.example/default", "test"),
    ] {
        let m = destination_uri_mistake(uri);
        assert_eq!(
            m.message,
            format!("\"{uri}\" names libvirt's \"{driver}\" driver, not its qemu driver")
        );
        assert!(
            m.hint
                .starts_with("this tool migrates QEMU/KVM domains: write `qemu:///system`"),
            "{}",
            m.hint
        );
    }
}

#[test]
fn an_unknown_transport_is_refused_listing_libvirts() {
    let m = destination_uri_mistake("qemu+http://dst.example/system");
    assert_eq!(
        m.message,
        "\"qemu+http://dst.example/system\" names the unknown transport \"http\""
    );
    assert_eq!(
        m.hint,
        "libvirt's transports are ssh, tls, tcp, unix, libssh, libssh2, ext; e.g. `qemu+ssh://HOST/system`"
    );
}

#[test]
fn a_path_other_than_system_or_session_is_refused() {
    for uri in [
        "qemu+ssh://dst.example/",
        "qemu+ssh://dst.example",
        "qemu:///embed?root=/tmp",
    ] {
        let m = destination_uri_mistake(uri);
        assert!(
            m.message
                .ends_with("names no QEMU daemon: the path must be /system or /session"),
            "{uri}: {}",
            m.message
        );
        assert!(m.hint.starts_with("`/system` reaches the daemon"), "{}", m.hint);
    }
}

#[test]
fn a_password_in_the_uri_is_refused_and_never_shown() {
    let m = destination_uri_mistake("qemu+ssh://root:hunter2@dst.example/system");
    assert_eq!(
        m.message,
        "\"qemu+ssh://root:***@dst.example/system\" carries a password"
    );
    assert!(
        m.hint.starts_with("libvirt takes no password in its URI"),
        "{}",
        m.hint
    );
    let rendered = load(&LIBVIRT.replace(
        "qemu+ssh://dst.example/system",
        "qemu+ssh://root:hunter2@dst.example/system",
    ))
    .expect_err("refused")
    .to_string();
    assert!(!rendered.contains("hunter2"), "{rendered}");
    assert!(
        rendered.contains("plan.toml:9:11: destination.libvirt"),
        "{rendered}"
    );
}

#[test]
fn what_is_not_a_uri_is_refused_with_examples() {
    for (uri, why) in [
        ("qemu", ""),
        ("dst.example", ""),
        ("qemu:///system ", ": it holds a space or a control character"),
        (
            "qemu+ssh://dst example/system",
            ": it holds a space or a control character",
        ),
        (
            "qemu+tcp://dst.example:0/system",
            ": the host is not an IP address or a host name, or the port not a number from 1 to 65535",
        ),
        (
            "qemu+ssh://dst;rm/system",
            ": the host is not an IP address or a host name, or the port not a number from 1 to 65535",
        ),
    ] {
        let m = destination_uri_mistake(uri);
        assert_eq!(m.message, format!("\"{uri}\" is not a libvirt URI{why}"));
        assert_eq!(
            m.hint,
            "write e.g. `libvirt = \"qemu:///system\"` or `libvirt = \"qemu+ssh://host.example/system\"`"
        );
    }
}

#[test]
fn a_destination_host_that_is_not_a_pci_address_is_refused_at_its_value() {
    let m = the_mistake(&format!(
        "{LIBVIRT}[[devices]]\nid = \"ua-gpu0\"\ndestination_host = \"5e:00.3\"\n"
    ));
    assert_eq!((m.line, m.key.as_str()), (15, "devices[0].destination_host"));
    assert_eq!(m.message, "\"5e:00.3\" is not a PCI address");
    assert_eq!(
        m.hint,
        "write the destination host's address as sysfs shows it there, e.g. \"0000:5e:00.3\""
    );
}

#[test]
fn the_libvirt_table_knows_its_keys() {
    let m = the_mistake(&format!("{LIBVIRT}[libvirt]\npeer_to_per = true\n"));
    assert_eq!((m.line, m.key.as_str()), (14, "libvirt.peer_to_per"));
    assert_eq!(m.message, "unknown key `peer_to_per`");
    assert_eq!(m.hint, "did you mean `peer_to_peer`?");
    let m = the_mistake(&format!("{LIBVIRT}[libvirt]\npersist = \"yes\"\n"));
    assert_eq!((m.line, m.key.as_str()), (14, "libvirt.persist"));
    assert_eq!(m.message, "expected true or false, found a string");
}

// Across keys.

#[test]
fn a_qmp_side_and_a_libvirt_side_are_refused_at_the_destination() {
    let text = LIBVIRT.replace(
        "libvirt = \"qemu+ssh://dst.example/system\"",
        "qmp = \"unix:/run/dst.qmp\"",
    );
    let m = the_mistake(&text);
    assert_eq!((m.line, m.key.as_str()), (9, "destination.qmp"));
    assert_eq!(
        m.message,
        "the source is a libvirt domain and the destination a QMP monitor"
    );
    assert!(
        m.hint.starts_with("both sides are reached the same way"),
        "{}",
        m.hint
    );

    let text = QMP.replace(
        "qmp = \"unix:/run/dst.qmp\"\nlisten = \"tcp:127.0.0.1:49152\"",
        "libvirt = \"qemu+ssh://dst.example/system\"",
    );
    let m = the_mistake(&text);
    assert_eq!((m.line, m.key.as_str()), (8, "destination.libvirt"));
    assert_eq!(
        m.message,
        "the source is a QMP monitor and the destination a libvirt domain"
    );
}

#[test]
fn the_same_connection_on_both_sides_is_refused() {
    let m = the_mistake(&LIBVIRT.replace("qemu+ssh://dst.example/system", "qemu:///system"));
    assert_eq!((m.line, m.key.as_str()), (9, "destination.libvirt"));
    assert_eq!(
        m.message,
        "source and destination name the same libvirt connection"
    );
    assert!(
        m.hint.starts_with("a VM cannot migrate onto its own host"),
        "{}",
        m.hint
    );
}

#[test]
fn listen_is_refused_through_libvirt() {
    let text = LIBVIRT.replace(
        "libvirt = \"qemu+ssh://dst.example/system\"",
        "libvirt = \"qemu+ssh://dst.example/system\"\nlisten = \"tcp:10.0.0.2:49152\"",
    );
    let m = the_mistake(&text);
    assert_eq!((m.line, m.key.as_str()), (10, "destination.listen"));
    assert_eq!(m.message, "`listen` does not apply to libvirt endpoints");
    assert!(
        m.hint
            .starts_with("libvirt starts the destination and makes it listen itself"),
        "{}",
        m.hint
    );
}

#[test]
fn a_stream_to_the_destination_host_must_say_whether_it_is_encrypted() {
    let m = the_mistake(&LIBVIRT.replace("tls = true", ""));
    assert_eq!((m.line, m.key.as_str()), (9, "destination.libvirt"));
    assert_eq!(
        m.message,
        "the migration stream to dst.example would leave this host unencrypted"
    );
    assert!(m.hint.contains("VIR_MIGRATE_TLS"), "{}", m.hint);
    assert!(!valid(&LIBVIRT.replace("tls = true", "tls = false")).migration.tls);
    // A URI the plan gives is the route, and the one named.
    let m = the_mistake(&LIBVIRT.replace("tls = true", "uri = \"tcp:10.0.0.2:49152\""));
    assert_eq!((m.line, m.key.as_str()), (12, "migration.uri"));
}

#[test]
fn remote_qmp_is_refused_through_libvirt_and_not_needed() {
    let m = the_mistake(&format!("{LIBVIRT}[security]\nremote_qmp = true\n"));
    assert_eq!((m.line, m.key.as_str()), (14, "security.remote_qmp"));
    assert_eq!(
        m.message,
        "has no effect: the plan reaches both sides through libvirt"
    );
    assert!(
        m.hint.starts_with("libvirt authenticates its connections"),
        "{}",
        m.hint
    );
}

#[test]
fn the_certificate_directories_are_refused_through_libvirt_and_tls_hostname_is_not() {
    for key in ["tls_dir", "tls_dir_source", "tls_dir_destination"] {
        for tls in ["true", "false"] {
            let text = LIBVIRT.replace("tls = true", &format!("tls = {tls}\n{key} = \"/srv/pki\""));
            let m = the_mistake(&text);
            assert_eq!((m.line, m.key.clone()), (13, format!("migration.{key}")));
            assert_eq!(m.message, "has no effect with libvirt endpoints");
            assert!(m.hint.contains("migrate_tls_x509_cert_dir"), "{}", m.hint);
        }
    }
    let plan = valid(&LIBVIRT.replace("tls = true", "tls = true\ntls_hostname = \"dst.example\""));
    assert_eq!(plan.migration.tls_hostname.as_deref(), Some("dst.example"));
}

#[test]
fn qemu_settings_libvirt_has_no_parameter_for_are_refused() {
    for (line, setting) in [
        ("zero_page_detection = \"none\"", "`zero-page-detection`"),
        (
            "device_state_transfer = \"main\"",
            "`x-migration-multifd-transfer`",
        ),
    ] {
        let text = format!(
            "{}[[devices]]\nid = \"ua-gpu0\"\n",
            LIBVIRT.replace("tls = true", &format!("tls = true\n{line}"))
        );
        let m = the_mistake(&text);
        assert_eq!(m.line, 13, "{line}");
        assert_eq!(m.message, "cannot be set through libvirt");
        assert!(m.hint.contains(setting), "{}", m.hint);
    }
}

#[test]
fn two_devices_cannot_become_the_same_destination_device() {
    let text = format!(
        "{LIBVIRT}[[devices]]\nid = \"ua-gpu0\"\ndestination_host = \"0000:5E:00.3\"\n[[devices]]\nid = \"ua-gpu1\"\ndestination_host = \"0000:5e:00.3\"\n"
    );
    let m = the_mistake(&text);
    assert_eq!((m.line, m.key.as_str()), (18, "devices[1].destination_host"));
    assert_eq!(m.message, "\"0000:5e:00.3\" is the destination of two devices");
    assert_eq!(
        m.hint,
        "each device becomes its own PCI device on the destination host"
    );
}

#[test]
fn the_libvirt_table_is_refused_in_a_qmp_plan() {
    let m = the_mistake(&format!("{QMP}[libvirt]\npersist = false\n"));
    assert_eq!((m.line, m.key.as_str()), (10, "libvirt"));
    assert_eq!(m.message, "[libvirt] applies only to libvirt endpoints");
    assert_eq!(
        m.hint,
        "the plan reaches both sides over QMP: remove the [libvirt] table"
    );
}

#[test]
fn a_destination_host_is_refused_in_a_qmp_plan() {
    let m = the_mistake(&format!(
        "{QMP}[[devices]]\nid = \"hostdev0\"\ndestination_host = \"0000:5e:00.3\"\n"
    ));
    assert_eq!((m.line, m.key.as_str()), (12, "devices[0].destination_host"));
    assert_eq!(m.message, "`destination_host` applies only to libvirt endpoints");
    assert!(
        m.hint
            .starts_with("over QMP the destination QEMU is started with its devices"),
        "{}",
        m.hint
    );
}

#[test]
fn qmp_plans_keep_their_own_rules() {
    // Without `listen` or `uri` a QMP plan has no route, and multifd needs `listen`.
    let text = QMP.replace("listen = \"tcp:127.0.0.1:49152\"\n", "");
    let m = the_mistake(&text);
    assert_eq!(m.key, "migration.uri");
    let text = format!("{QMP}[migration]\nuri = \"tcp:127.0.0.1:49152\"\nmultifd_channels = 2\n")
        .replace("listen = \"tcp:127.0.0.1:49152\"\n", "");
    let m = the_mistake(&text);
    assert_eq!(m.key, "migration.multifd_channels");
}

#[test]
fn a_destination_mdev_is_a_uuid_kept_in_lower_case() {
    let plan = valid(&format!(
        "{LIBVIRT}[[devices]]\nid = \"hostdev0\"\ndestination_mdev = \"4B20D080-1B54-4048-85B3-A6A62D165C01\"\n"
    ));
    assert_eq!(
        plan.devices[0].destination_mdev.as_deref(),
        Some("4b20d080-1b54-4048-85b3-a6a62d165c01")
    );
}

#[test]
fn a_destination_mdev_that_is_not_a_uuid_is_refused_at_its_value() {
    let m = the_mistake(&format!(
        "{LIBVIRT}[[devices]]\nid = \"hostdev0\"\ndestination_mdev = \"nvidia-63\"\n"
    ));
    assert_eq!((m.line, m.key.as_str()), (15, "devices[0].destination_mdev"));
    assert_eq!(m.message, "\"nvidia-63\" is not a mediated device's UUID");
    assert!(m.hint.contains("mdevctl list"), "{}", m.hint);
}

#[test]
fn a_device_moves_to_a_pci_device_or_a_mediated_device_not_both() {
    let m = the_mistake(&format!(
        "{LIBVIRT}[[devices]]\nid = \"hostdev0\"\ndestination_host = \"0000:5e:00.3\"\ndestination_mdev = \"4b20d080-1b54-4048-85b3-a6a62d165c01\"\n"
    ));
    assert_eq!((m.line, m.key.as_str()), (16, "devices[0].destination_mdev"));
    assert_eq!(
        m.message,
        "`destination_host` and `destination_mdev` cannot both be set"
    );
}

#[test]
fn two_devices_cannot_become_the_same_mediated_device() {
    let m = the_mistake(&format!(
        "{LIBVIRT}[[devices]]\nid = \"hostdev0\"\ndestination_mdev = \"4b20d080-1b54-4048-85b3-a6a62d165c01\"\n[[devices]]\nid = \"hostdev1\"\ndestination_mdev = \"4B20D080-1B54-4048-85B3-A6A62D165C01\"\n"
    ));
    assert_eq!((m.line, m.key.as_str()), (18, "devices[1].destination_mdev"));
    assert_eq!(
        m.message,
        "\"4b20d080-1b54-4048-85b3-a6a62d165c01\" is the destination of two devices"
    );
}

#[test]
fn a_destination_mdev_is_refused_in_a_qmp_plan() {
    let m = the_mistake(&format!(
        "{QMP}[[devices]]\nid = \"hostdev0\"\ndestination_mdev = \"4b20d080-1b54-4048-85b3-a6a62d165c01\"\n"
    ));
    assert_eq!((m.line, m.key.as_str()), (12, "devices[0].destination_mdev"));
    assert_eq!(m.message, "`destination_mdev` applies only to libvirt endpoints");
}
