//! Carries out a peer's [`Policy`] on the pair over plain QMP, with no orchestrator of
//! this project's in between: `migrate-incoming`, the policy's capabilities and
//! parameters, the shared `max-bandwidth`, `migrate`, then the policy's loop.
//!
//! Every strategy resumes the destination the same way, with `cont` as soon as the
//! destination reports its incoming migration `completed` (as libvirt does), so that
//! the pause compares QEMU's switchover and not each peer's transport (Proxmox, for
//! one, resumes over an SSH tunnel).

use std::time::{Duration, Instant};

use backends::qmp::{QmpClient, QmpEndpoint};
use rig::QemuPair;
use serde_json::{json, Value};

use super::policy::{Act, Policy};

/// How a peer's migration ended.
#[derive(Debug, Clone, PartialEq)]
pub enum End {
    /// Completed and resumed on the destination.
    Migrated,
    /// Still running at the cap, then cancelled.
    Capped,
}

/// Runs `policy` on `pair` with the link capped at `max_bandwidth` bytes/s, cancelling
/// the migration if it has not completed after `cap`.
pub fn run(
    pair: &QemuPair,
    policy: &mut dyn Policy,
    max_bandwidth: u64,
    cap: Duration,
) -> Result<End, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(drive(pair, policy, max_bandwidth, cap))
}

async fn drive(
    pair: &QemuPair,
    policy: &mut dyn Policy,
    max_bandwidth: u64,
    cap: Duration,
) -> Result<End, String> {
    let err = |e: backends::qmp::QmpError| e.to_string();
    let t = Duration::from_secs(5);
    let src = QmpClient::connect(&QmpEndpoint::Unix(pair.source.qmp_socket.clone()), "source", t)
        .await
        .map_err(err)?;
    let dst = QmpClient::connect(
        &QmpEndpoint::Unix(pair.destination.qmp_socket.clone()),
        "destination",
        t,
    )
    .await
    .map_err(err)?;
    let uri = format!("tcp:127.0.0.1:{}", pair.migration_port);
    set_capabilities(&dst, &["events"]).await?;
    let resumed = tokio::spawn(resume_when_loaded(dst.clone()));
    dst.execute_raw(
        "migrate-incoming",
        Some(json!({"uri": uri, "exit-on-error": false})),
    )
    .await
    .map_err(err)?;
    set_capabilities(&src, &policy.capabilities()).await?;
    let mut parameters = policy.parameters();
    parameters.insert("max-bandwidth".into(), json!(max_bandwidth));
    src.execute_raw("migrate-set-parameters", Some(Value::Object(parameters)))
        .await
        .map_err(err)?;
    let held = policy
        .capabilities()
        .contains(&"pause-before-switchover")
        .then(|| tokio::spawn(continue_at_pre_switchover(src.clone(), src.subscribe())));
    let result = migrate_and_poll(&src, policy, &uri, cap, resumed).await;
    if let Some(held) = held {
        held.abort();
    }
    result
}

/// `migrate`, then the policy's loop until the migration has completed (and the
/// destination resumed), failed, or reached `cap`.
async fn migrate_and_poll(
    src: &QmpClient,
    policy: &mut dyn Policy,
    uri: &str,
    cap: Duration,
    resumed: tokio::task::JoinHandle<Result<(), String>>,
) -> Result<End, String> {
    let err = |e: backends::qmp::QmpError| e.to_string();
    src.execute_raw("migrate", Some(json!({"uri": uri})))
        .await
        .map_err(err)?;
    let started = Instant::now();
    loop {
        tokio::time::sleep(policy.wait()).await;
        if started.elapsed() >= cap {
            cancel(src).await;
            resumed.abort();
            return Ok(End::Capped);
        }
        let stats = src.execute_raw("query-migrate", None).await.map_err(err)?;
        match stats["status"].as_str() {
            Some("completed") => {
                return match tokio::time::timeout(Duration::from_secs(10), resumed).await {
                    Ok(Ok(Ok(()))) => Ok(End::Migrated),
                    Ok(Ok(Err(e))) => Err(e),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("the destination did not complete within 10 s of the source".into()),
                };
            }
            Some("failed") | Some("cancelled") => {
                return Err(format!(
                    "migration ended {}: {}",
                    stats["status"],
                    stats["error-desc"].as_str().unwrap_or("-")
                ))
            }
            _ => {}
        }
        for act in policy.on_poll(started.elapsed(), &stats) {
            let (command, arguments) = match act {
                Act::Downtime(ms) => ("migrate-set-parameters", Some(json!({"downtime-limit": ms}))),
                Act::Suspend => ("stop", None),
            };
            src.execute_raw(command, arguments).await.map_err(err)?;
        }
    }
}

async fn set_capabilities(client: &QmpClient, on: &[&str]) -> Result<(), String> {
    if on.is_empty() {
        return Ok(());
    }
    let caps: Vec<Value> = on
        .iter()
        .map(|c| json!({"capability": c, "state": true}))
        .collect();
    client
        .execute_raw("migrate-set-capabilities", Some(json!({"capabilities": caps})))
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// `migrate-continue` on the source each time it reports `pre-switchover`.
async fn continue_at_pre_switchover(
    src: QmpClient,
    mut events: tokio::sync::broadcast::Receiver<backends::qmp::QmpEvent>,
) {
    loop {
        match events.recv().await {
            Ok(e) if e.name == "MIGRATION" && e.data["status"] == "pre-switchover" => {
                let state = json!({"state": "pre-switchover"});
                if src.execute_raw("migrate-continue", Some(state)).await.is_err() {
                    return;
                }
            }
            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// `cont` on the destination once its incoming migration has completed.
async fn resume_when_loaded(dst: QmpClient) -> Result<(), String> {
    let mut events = dst.subscribe();
    loop {
        match events.recv().await {
            Ok(e) if e.name == "MIGRATION" && e.data["status"] == "completed" => break,
            Ok(e) if e.name == "MIGRATION" && e.data["status"] == "failed" => {
                return Err("the destination's incoming migration failed".into())
            }
            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                return Err("the destination's monitor closed".into())
            }
        }
    }
    dst.execute_raw("cont", None)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Cancels and waits (briefly) for the source to say so; the pair is dropped next.
async fn cancel(src: &QmpClient) {
    let _ = src.execute_raw("migrate_cancel", None).await;
    for _ in 0..50 {
        match src.execute_raw("query-migrate", None).await {
            Ok(s) if s["status"] != "cancelling" && s["status"] != "active" => return,
            Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(_) => return,
        }
    }
}
