//! The QMP client against a scripted fake monitor: what it does when the peer
//! misbehaves, sends what the `qapi-qmp` schema does not know, or is slow.

mod fake;

use std::time::{Duration, Instant, UNIX_EPOCH};

use backends::qmp::{Noise, QmpClient, QmpEndpoint, QmpError, QmpPeer};
use fake::{connect, event, fake, write_long_line, Peer, GREETING, SHORT};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

#[tokio::test]
async fn connect_to_a_missing_socket_says_there_is_no_such_socket() {
    let endpoint = QmpEndpoint::Unix("/nonexistent/dir/m.qmp".into());
    let error = QmpClient::connect(&endpoint, "source", SHORT)
        .await
        .expect_err("no socket");
    assert!(matches!(error, QmpError::Connect { .. }), "{error:?}");
    assert!(error.connection_lost());
    assert_eq!(
        error.to_string(),
        "source (unix:/nonexistent/dir/m.qmp): cannot connect: no such socket"
    );
    assert!(std::error::Error::source(&error).is_some());
}

#[tokio::test]
async fn connect_to_a_socket_nobody_listens_on_says_connection_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("stale.qmp");
    // A QEMU that died leaves its socket file behind: bound once, listened on no more.
    drop(std::os::unix::net::UnixListener::bind(&path).expect("bind"));
    let endpoint = QmpEndpoint::Unix(path.clone());
    let error = QmpClient::connect(&endpoint, "destination", SHORT)
        .await
        .expect_err("nobody listens");
    assert_eq!(
        error.to_string(),
        format!(
            "destination (unix:{}): cannot connect: connection refused (nothing listens there)",
            path.display()
        )
    );
}

#[test]
fn a_socket_the_user_may_not_open_says_permission_denied() {
    // Tests run as root here, which no file mode stops: the OS error is made by hand.
    let error = QmpError::Connect {
        endpoint: QmpPeer {
            label: "source".into(),
            endpoint: QmpEndpoint::Unix("/run/vm/src.qmp".into()),
        },
        source: std::io::Error::from_raw_os_error(libc::EACCES),
    };
    assert_eq!(
        error.to_string(),
        "source (unix:/run/vm/src.qmp): cannot connect: permission denied"
    );
}

#[tokio::test]
async fn peer_that_never_greets_may_be_serving_another_client() {
    let fake = fake(|peer| async move {
        let _silent = peer;
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let started = Instant::now();
    let error = QmpClient::connect(&fake.endpoint, "source", Duration::from_millis(300))
        .await
        .expect_err("no greeting");
    assert!(started.elapsed() < Duration::from_secs(2));
    let QmpError::NoGreeting { after, .. } = &error else {
        panic!("expected no greeting, got {error:?}");
    };
    assert_eq!(*after, Duration::from_millis(300));
    assert!(!error.connection_lost(), "a silent monitor is not gone");
    assert_eq!(
        error.to_string(),
        format!(
            "source (unix:{}): no greeting within 300ms: another client may hold this monitor \
             (QEMU serves one QMP client at a time), or QEMU is not answering",
            fake.path().display()
        )
    );
}

#[tokio::test]
async fn a_first_line_far_longer_than_a_greeting_is_refused_early() {
    let (written_tx, written_rx) = tokio::sync::oneshot::channel();
    let fake = fake(|mut peer| async move {
        let written = write_long_line(&mut peer, 100 * 1024 * 1024).await;
        let _ = written_tx.send(written);
    });
    let error = QmpClient::connect(&fake.endpoint, "source", SHORT)
        .await
        .expect_err("no greeting");
    let QmpError::Greeting { detail, .. } = &error else {
        panic!("expected a greeting error, got {error:?}");
    };
    assert_eq!(
        detail,
        "first line longer than 65536 bytes (a greeting is a few hundred)"
    );
    let written = tokio::time::timeout(SHORT, written_rx)
        .await
        .expect("peer finishes")
        .expect("peer reports");
    assert!(written < 8 * 1024 * 1024, "client read {written} bytes");
}

#[tokio::test]
async fn first_line_that_is_not_a_greeting_is_a_greeting_error() {
    let fake = fake(|mut peer| async move {
        peer.send(r#"{"return": {}}"#).await;
        let _ = peer.recv().await;
    });
    let error = QmpClient::connect(&fake.endpoint, "destination", SHORT)
        .await
        .expect_err("bad greeting");
    assert!(matches!(error, QmpError::Greeting { .. }), "{error:?}");
    assert!(error.to_string().starts_with("destination (unix:"), "{error}");
}

#[tokio::test]
async fn events_ahead_of_the_greeting_are_skipped() {
    // QEMU can broadcast an event to a monitor between a new client's connection and
    // its greeting (the monitor is still in command mode from the client before).
    let fake = fake(|mut peer| async move {
        peer.send(&event("MIGRATION", json!({"status": "failed"}))).await;
        peer.send(&event("STOP", json!({}))).await;
        peer.handshake().await;
        let id = peer.expect("query-status").await;
        peer.reply(&id, json!({"status": "running", "running": true}))
            .await;
        peer.idle().await;
    });
    let client = connect(&fake).await;
    assert_eq!(client.greeting().package, "fake");
    let status = client.execute_raw("query-status", None).await.expect("a reply");
    assert_eq!(status["status"], "running");
}

#[tokio::test]
async fn greeting_is_parsed_into_version_and_capabilities() {
    let fake = fake(|mut peer| async move {
        peer.handshake().await;
        let _ = peer.recv().await;
    });
    let client = connect(&fake).await;
    let greeting = client.greeting();
    assert_eq!(greeting.version.to_string(), "10.0.2");
    assert_eq!(greeting.package, "fake");
    assert_eq!(greeting.capabilities, ["oob"]);
}

#[tokio::test]
async fn commands_carry_increasing_ids_and_omit_empty_arguments() {
    let fake = fake(|mut peer| async move {
        peer.send(GREETING).await;
        let negotiate = peer.recv().await.expect("qmp_capabilities");
        assert_eq!(negotiate.get("arguments"), None, "{negotiate}");
        peer.reply(&negotiate["id"], json!({})).await;

        let status = peer.recv().await.expect("query-status");
        assert_eq!(status["execute"], "query-status");
        assert_eq!(status.get("arguments"), None, "{status}");
        assert!(status["id"].as_u64() > negotiate["id"].as_u64());
        peer.reply(&status["id"], json!({"status": "running", "running": true}))
            .await;

        let set = peer.recv().await.expect("migrate-set-parameters");
        assert_eq!(set["execute"], "migrate-set-parameters");
        assert_eq!(
            set["arguments"],
            json!({"downtime-limit": 500, "max-bandwidth": 1024})
        );
        assert!(set["id"].as_u64() > status["id"].as_u64());
        peer.reply(&set["id"], json!({})).await;
        let _ = peer.recv().await;
    });
    let client = connect(&fake).await;
    let status = client
        .execute(qapi_qmp::query_status {})
        .await
        .expect("query-status");
    assert!(status.running);
    let parameters = qapi_qmp::MigrateSetParameters {
        downtime_limit: Some(500),
        max_bandwidth: Some(1024),
        ..Default::default()
    };
    client
        .execute(qapi_qmp::migrate_set_parameters(parameters))
        .await
        .expect("migrate-set-parameters");
    fake.script.abort();
}

#[tokio::test]
async fn garbage_line_is_noted_and_the_connection_survives() {
    let fake = fake(|mut peer| async move {
        peer.handshake().await;
        let id = peer.expect("query-status").await;
        peer.send("this is not JSON").await;
        peer.send(r#"["nor", "an", "object"]"#).await;
        peer.send(r#"{"neither": "reply nor event"}"#).await;
        peer.reply(&id, json!({"status": "paused", "running": false}))
            .await;
        let _ = peer.recv().await;
    });
    let client = connect(&fake).await;
    let status = client
        .execute(qapi_qmp::query_status {})
        .await
        .expect("reply after garbage");
    assert!(!status.running);
    assert!(!client.is_closed());
    let notes = client.protocol_errors();
    assert_eq!(notes.len(), 3, "{notes:?}");
    assert!(notes[0].contains("not JSON"), "{notes:?}");
}

#[tokio::test]
async fn notes_about_huge_lines_keep_only_their_start() {
    let fake = fake(|mut peer| async move {
        peer.handshake().await;
        let id = peer.expect("query-status").await;
        let long = "x".repeat(1 << 20);
        peer.send(&json!({ long.clone(): 1 }).to_string()).await;
        peer.send(&json!({"return": {}, "id": long}).to_string()).await;
        peer.reply(&id, json!({"status": "paused", "running": false}))
            .await;
        let _ = peer.recv().await;
    });
    let client = connect(&fake).await;
    client
        .execute(qapi_qmp::query_status {})
        .await
        .expect("reply after the huge lines");
    let notes = client.protocol_errors();
    assert_eq!(notes.len(), 2, "{} notes", notes.len());
    for note in &notes {
        assert!(note.len() < 1024, "a note of {} bytes", note.len());
    }
}

#[tokio::test]
async fn truncated_json_then_close_fails_the_waiting_command_with_closed() {
    let fake = fake(|mut peer| async move {
        peer.handshake().await;
        let _ = peer.expect("query-status").await;
        peer.out
            .write_all(br#"{"return": {"status": "runn"#)
            .await
            .expect("write");
    });
    let client = connect(&fake).await;
    let error = client
        .execute(qapi_qmp::query_status {})
        .await
        .expect_err("peer hung up");
    let QmpError::Closed { command, .. } = &error else {
        panic!("expected Closed, got {error:?}");
    };
    assert_eq!(command.as_deref(), Some("query-status"));
    assert!(
        error.to_string().ends_with("query-status: connection closed"),
        "{error}"
    );
    assert!(client.is_closed());
    let again = client.execute_raw("query-status", None).await;
    assert!(matches!(again, Err(QmpError::Closed { .. })), "{again:?}");
}

#[tokio::test]
async fn all_waiting_commands_fail_with_closed_when_the_peer_hangs_up() {
    let fake = fake(|mut peer| async move {
        peer.handshake().await;
        for _ in 0..3 {
            let _ = peer.recv().await;
        }
    });
    let client = connect(&fake).await;
    let mut events = client.subscribe();
    let (a, b, c) = tokio::join!(
        client.execute(qapi_qmp::query_status {}),
        client.execute_raw("query-migrate", None),
        client.execute(qapi_qmp::query_version {}),
    );
    assert!(matches!(a, Err(QmpError::Closed { .. })), "{a:?}");
    assert!(matches!(b, Err(QmpError::Closed { .. })), "{b:?}");
    assert!(matches!(c, Err(QmpError::Closed { .. })), "{c:?}");
    let end = tokio::time::timeout(SHORT, events.recv()).await;
    assert!(
        matches!(end, Ok(Err(tokio::sync::broadcast::error::RecvError::Closed))),
        "subscribers learn that the connection closed"
    );
}

#[tokio::test]
async fn twenty_megabyte_line_is_a_protocol_error_that_closes_the_connection() {
    let fake = fake(|mut peer| async move {
        peer.handshake().await;
        let _ = peer.expect("query-migrate").await;
        write_long_line(&mut peer, 20 * 1024 * 1024).await;
        // Stay connected: the client, not the peer, must end the connection.
        while peer.recv().await.is_some() {}
    });
    let client = connect(&fake).await;
    let error = client
        .execute(qapi_qmp::query_migrate {})
        .await
        .expect_err("line too long");
    let QmpError::Protocol { command, detail, .. } = &error else {
        panic!("expected a protocol error, got {error:?}");
    };
    assert_eq!(command.as_deref(), Some("query-migrate"));
    assert!(detail.contains("longer than"), "{detail}");
    assert!(client.is_closed());
    drop(client);
    tokio::time::timeout(SHORT, fake.script)
        .await
        .expect("peer sees the connection closed")
        .expect("peer script");
}

#[tokio::test]
async fn over_long_line_is_never_buffered_whole() {
    const ATTEMPT: usize = 200 * 1024 * 1024;
    let (written_tx, written_rx) = tokio::sync::oneshot::channel();
    let fake = fake(|mut peer| async move {
        peer.handshake().await;
        let _ = peer.expect("query-migrate").await;
        let written = write_long_line(&mut peer, ATTEMPT).await;
        let _ = written_tx.send(written);
    });
    let client = connect(&fake).await;
    let error = client.execute_raw("query-migrate", None).await;
    assert!(matches!(error, Err(QmpError::Protocol { .. })), "{error:?}");
    let written = tokio::time::timeout(Duration::from_secs(20), written_rx)
        .await
        .expect("peer finishes")
        .expect("peer reports");
    assert!(
        written < ATTEMPT / 2,
        "client read {written} bytes of an over-long line before hanging up"
    );
}

#[tokio::test]
async fn unknown_event_is_delivered_raw_and_connection_survives() {
    let fake = fake(|mut peer| async move {
        peer.handshake().await;
        let id = peer.expect("query-status").await;
        peer.send(&event(
            "NETDEV_VHOST_USER_CONNECTED",
            json!({"netdev-id": "n0", "chardev-id": "c0"}),
        ))
        .await;
        peer.reply(&id, json!({"status": "running", "running": true}))
            .await;
        let id = peer.expect("query-status").await;
        peer.reply(&id, json!({"status": "running", "running": true}))
            .await;
        let _ = peer.recv().await;
    });
    let client = connect(&fake).await;
    let mut events = client.subscribe();
    client
        .execute(qapi_qmp::query_status {})
        .await
        .expect("query-status");
    let received = tokio::time::timeout(SHORT, events.recv())
        .await
        .expect("event in time")
        .expect("event");
    assert_eq!(received.name, "NETDEV_VHOST_USER_CONNECTED");
    assert_eq!(received.data["netdev-id"], "n0");
    assert!(received.typed().is_none());
    assert_eq!(
        received.timestamp.duration_since(UNIX_EPOCH).ok(),
        Some(Duration::from_micros(1_700_000_000_250_000))
    );
    client
        .execute(qapi_qmp::query_status {})
        .await
        .expect("connection still usable");
    assert!(client.protocol_errors().is_empty());
}

#[tokio::test]
async fn vfio_migration_event_with_unknown_device_state_is_delivered_untyped() {
    let fake = fake(|mut peer| async move {
        peer.handshake().await;
        let id = peer.expect("query-migrate").await;
        let vfio = |state: &str| {
            event(
                "VFIO_MIGRATION",
                json!({"device-id": "nic0", "qom-path": "/machine/peripheral/nic0", "device-state": state}),
            )
        };
        peer.send(&vfio("pre-copy-turbo")).await;
        peer.send(&vfio("stop-copy")).await;
        peer.send(&event("MIGRATION", json!({"status": "wormhole"})))
            .await;
        peer.reply(&id, json!({})).await;
        let _ = peer.recv().await;
    });
    let client = connect(&fake).await;
    let mut events = client.subscribe();
    let info = client
        .execute(qapi_qmp::query_migrate {})
        .await
        .expect("query-migrate");
    assert!(info.status.is_none());

    let mut next = async || {
        tokio::time::timeout(SHORT, events.recv())
            .await
            .expect("event in time")
            .expect("event")
    };
    let unknown_state = next().await;
    assert_eq!(unknown_state.name, "VFIO_MIGRATION");
    assert_eq!(unknown_state.data["device-state"], "pre-copy-turbo");
    assert!(unknown_state.typed().is_none());

    let known_state = next().await;
    match known_state.typed() {
        Some(qapi_qmp::Event::VFIO_MIGRATION { data, .. }) => {
            assert_eq!(data.device_state, qapi_qmp::VfioMigrationState::stop_copy);
            assert_eq!(data.device_id, "nic0");
        }
        other => panic!("expected a typed VFIO_MIGRATION, got {other:?}"),
    }

    let unknown_status = next().await;
    assert_eq!(unknown_status.data["status"], "wormhole");
    assert!(unknown_status.typed().is_none());
    assert!(!client.is_closed());
}

#[tokio::test]
async fn replies_with_unknown_or_duplicate_ids_are_ignored() {
    let fake = fake(|mut peer| async move {
        peer.handshake().await;
        let id = peer.expect("query-status").await;
        peer.reply(&json!(987_654), json!({"status": "paused", "running": false}))
            .await;
        peer.reply(&json!("not-a-number"), json!({})).await;
        peer.send(r#"{"return": {}}"#).await;
        peer.reply(&id, json!({"status": "running", "running": true}))
            .await;
        peer.reply(&id, json!({"status": "running", "running": true}))
            .await;
        let next = peer.expect("query-version").await;
        peer.reply(&id, json!({"status": "running", "running": true}))
            .await;
        peer.reply(
            &next,
            json!({"qemu": {"major": 10, "minor": 0, "micro": 2}, "package": ""}),
        )
        .await;
        let _ = peer.recv().await;
    });
    let client = connect(&fake).await;
    let status = client
        .execute(qapi_qmp::query_status {})
        .await
        .expect("the reply with the right id");
    assert!(status.running);
    let version = client
        .execute(qapi_qmp::query_version {})
        .await
        .expect("a stale duplicate does not answer the next command");
    assert_eq!(version.qemu.major, 10);
    let notes = client.protocol_errors();
    assert_eq!(notes.len(), 5, "{notes:?}");
    assert!(!client.is_closed());
}

#[tokio::test]
async fn error_replies_carry_class_and_desc_for_every_command() {
    let fake = fake(|mut peer| async move {
        peer.handshake().await;
        while let Some(command) = peer.recv().await {
            let desc = format!("{} is not allowed here", command["execute"]);
            let reply = json!({"id": command["id"], "error": {"class": "GenericError", "desc": desc}});
            peer.send(&reply.to_string()).await;
        }
    });
    let client = connect(&fake).await;
    let typed = client
        .execute(qapi_qmp::migrate {
            uri: Some("tcp:127.0.0.1:1".into()),
            channels: None,
            detach: None,
            resume: None,
        })
        .await
        .expect_err("error reply");
    let QmpError::Command {
        command, class, desc, ..
    } = &typed
    else {
        panic!("expected a command error, got {typed:?}");
    };
    assert_eq!(command, "migrate");
    assert_eq!(class, "GenericError");
    assert_eq!(desc, "\"migrate\" is not allowed here");
    assert_eq!(typed.class(), Some("GenericError"));
    let fake_path = match &fake.endpoint {
        QmpEndpoint::Unix(path) => path.display().to_string(),
        QmpEndpoint::Tcp(addr) => addr.to_string(),
    };
    assert_eq!(
        typed.to_string(),
        format!("test (unix:{fake_path}): migrate: GenericError: \"migrate\" is not allowed here")
    );

    let raw = client
        .execute_raw("query-migrate", Some(json!({})))
        .await
        .expect_err("error reply");
    assert_eq!(raw.class(), Some("GenericError"));
    assert!(!client.is_closed());
}

#[tokio::test]
async fn slow_reply_beyond_the_timeout_is_a_timeout_naming_endpoint_and_command() {
    let fake = fake(|mut peer| async move {
        peer.handshake().await;
        let slow = peer.expect("query-status").await;
        tokio::time::sleep(Duration::from_millis(1000)).await;
        peer.reply(&slow, json!({"status": "running", "running": true}))
            .await;
        let next = peer.expect("query-status").await;
        peer.reply(&next, json!({"status": "paused", "running": false}))
            .await;
        let _ = peer.recv().await;
    });
    let client = connect(&fake).await;
    let started = Instant::now();
    let error = client
        .execute_with_timeout(qapi_qmp::query_status {}, Duration::from_millis(100))
        .await
        .expect_err("too slow");
    assert!(started.elapsed() < Duration::from_millis(900));
    let QmpError::Timeout { command, after, .. } = &error else {
        panic!("expected a timeout, got {error:?}");
    };
    assert_eq!(command, "query-status");
    assert_eq!(*after, Duration::from_millis(100));
    let message = error.to_string();
    assert!(message.starts_with("test (unix:"), "{message}");
    assert!(message.contains(": query-status: "), "{message}");

    let status = client
        .execute(qapi_qmp::query_status {})
        .await
        .expect("the late reply is discarded, the next command gets its own");
    assert!(!status.running);
    assert!(
        client.protocol_errors().is_empty(),
        "{:?}",
        client.protocol_errors()
    );
}

#[tokio::test]
async fn set_command_timeout_applies_to_execute_and_execute_raw() {
    let fake = fake(|mut peer| async move {
        peer.handshake().await;
        while peer.recv().await.is_some() {}
    });
    let mut client = connect(&fake).await;
    client.set_command_timeout(Duration::from_millis(50));
    let typed = client.execute(qapi_qmp::query_status {}).await;
    assert!(matches!(typed, Err(QmpError::Timeout { .. })), "{typed:?}");
    let raw = client.execute_raw("query-status", None).await;
    assert!(matches!(raw, Err(QmpError::Timeout { .. })), "{raw:?}");
}

#[tokio::test]
async fn reply_of_the_wrong_shape_is_a_decode_error() {
    let fake = fake(|mut peer| async move {
        peer.handshake().await;
        let id = peer.expect("query-status").await;
        peer.reply(&id, json!({"status": "running"})).await;
        let _ = peer.recv().await;
    });
    let client = connect(&fake).await;
    let error = client
        .execute(qapi_qmp::query_status {})
        .await
        .expect_err("missing field");
    assert!(matches!(error, QmpError::Decode { .. }), "{error:?}");
    assert!(error.to_string().contains("query-status: cannot decode reply"));
}

#[tokio::test]
async fn dropping_the_last_clone_closes_the_socket() {
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let fake = fake(|mut peer| async move {
        peer.handshake().await;
        let id = peer.expect("query-status").await;
        peer.reply(&id, json!({"status": "running", "running": true}))
            .await;
        let _ = done_tx.send(peer.recv().await.is_none());
    });
    let client = connect(&fake).await;
    let clone = client.clone();
    drop(client);
    clone
        .execute(qapi_qmp::query_status {})
        .await
        .expect("a clone keeps the connection");
    drop(clone);
    let hung_up = tokio::time::timeout(SHORT, done_rx)
        .await
        .expect("peer sees EOF")
        .expect("peer reports");
    assert!(hung_up);
}

#[tokio::test]
async fn tcp_endpoint_works_like_unix() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let script = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        let (read, write) = stream.into_split();
        let mut peer = Peer::new(Box::new(read), Box::new(write));
        peer.handshake().await;
        let id = peer.expect("query-status").await;
        peer.reply(&id, json!({"status": "running", "running": true}))
            .await;
        let _ = peer.recv().await;
    });
    let endpoint = QmpEndpoint::Tcp(addr);
    assert_eq!(endpoint.to_string(), format!("tcp:{addr}"));
    let client = QmpClient::connect(&endpoint, "destination", SHORT)
        .await
        .expect("connect over tcp");
    assert_eq!(client.peer().to_string(), format!("destination (tcp:{addr})"));
    let status = client
        .execute(qapi_qmp::query_status {})
        .await
        .expect("query-status");
    assert!(status.running);
    drop(client);
    script.await.expect("peer script");
}

#[tokio::test]
async fn a_reply_without_return_is_a_protocol_error_at_once_not_a_timeout() {
    let fake = fake(|mut peer| async move {
        peer.handshake().await;
        let id = peer.expect("query-status").await;
        peer.send(&json!({"id": id}).to_string()).await;
        let id = peer.expect("query-status").await;
        peer.reply(&id, json!({"status": "running", "running": true}))
            .await;
        peer.idle().await;
    });
    let client = connect(&fake).await;
    let started = Instant::now();
    let error = client
        .execute_raw("query-status", None)
        .await
        .expect_err("no return");
    assert!(started.elapsed() < SHORT / 2, "answered at once");
    let QmpError::Protocol {
        command,
        detail,
        closed,
        ..
    } = &error
    else {
        panic!("expected a protocol error, got {error:?}");
    };
    assert_eq!(command.as_deref(), Some("query-status"));
    assert!(!closed);
    assert!(!error.connection_lost());
    assert!(
        detail.starts_with("reply without `return` or `error`: `{\"id\":"),
        "{detail}"
    );
    assert!(
        error
            .to_string()
            .contains("): query-status: protocol error: reply without `return`"),
        "{error}"
    );
    let status = client
        .execute(qapi_qmp::query_status {})
        .await
        .expect("the connection stays usable");
    assert!(status.running);
}

#[tokio::test]
async fn a_timeout_says_what_came_instead_of_the_reply() {
    let fake = fake(|mut peer| async move {
        peer.handshake().await;
        let _ = peer.expect("query-status").await;
        peer.send("garbage").await;
        peer.send(r#"{"return": {"status": "runn"#).await;
        peer.idle().await;
    });
    let client = connect(&fake).await;
    let error = client
        .execute_with_timeout(qapi_qmp::query_status {}, Duration::from_millis(300))
        .await
        .expect_err("no reply");
    let QmpError::Timeout { noise, .. } = &error else {
        panic!("expected a timeout, got {error:?}");
    };
    let Some(Noise { lines, last }) = noise else {
        panic!("expected noise, got {error:?}");
    };
    assert_eq!(*lines, 2);
    assert!(last.starts_with("not JSON (EOF while parsing"), "{last}");
    let message = error.to_string();
    assert!(
        message.contains(": query-status: not answering within 300ms; meanwhile it sent 2 lines that are not replies, the last: not JSON"),
        "{message}"
    );
}

#[tokio::test]
async fn commands_reach_the_peer_in_the_order_they_were_sent_when_the_socket_is_full() {
    // The first command is larger than the socket takes at once: its rest and every
    // command after it wait for the writer task, and none overtakes it.
    let big = "x".repeat(4 * 1024 * 1024);
    let fake = fake(|mut peer| async move {
        peer.handshake().await;
        for name in ["first", "second", "third"] {
            let command = peer.recv().await.expect("a command");
            assert_eq!(command["execute"], name, "in order");
            peer.reply(&command["id"], json!({})).await;
        }
        peer.idle().await;
    });
    let client = connect(&fake).await;
    let (first, second, third) = tokio::join!(
        client.execute_raw("first", Some(json!({"pad": big}))),
        client.execute_raw("second", None),
        client.execute_raw("third", None),
    );
    for reply in [first, second, third] {
        assert_eq!(reply.expect("answered"), json!({}));
    }
}

#[tokio::test]
async fn a_peer_that_hung_up_is_known_hung_up_and_a_live_one_is_not() {
    let (hang_up_tx, hang_up_rx) = tokio::sync::oneshot::channel::<()>();
    let fake = fake(|mut peer| async move {
        peer.handshake().await;
        let _ = hang_up_rx.await;
        drop(peer);
    });
    let client = connect(&fake).await;
    assert!(!client.is_hung_up(), "connected and answering");
    let _ = hang_up_tx.send(());
    let deadline = Instant::now() + SHORT;
    while !client.is_hung_up() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(client.is_hung_up());
}
