//! The same migration driven by a bare QMP client, with QEMU's defaults and nothing
//! else: the baseline the tool's overhead is measured against.

use std::time::Duration;

use backends::qmp::{QmpClient, QmpEndpoint};
use rig::QemuPair;
use serde_json::json;

/// Migrates the pair and returns QEMU's `total-time` in ms.
pub fn migrate(pair: &QemuPair, max_bandwidth: u64) -> Result<f64, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let t = Duration::from_secs(5);
        let src = QmpClient::connect(&QmpEndpoint::Unix(pair.source.qmp_socket.clone()), "source", t)
            .await
            .map_err(|e| e.to_string())?;
        let dst = QmpClient::connect(
            &QmpEndpoint::Unix(pair.destination.qmp_socket.clone()),
            "destination",
            t,
        )
        .await
        .map_err(|e| e.to_string())?;
        let uri = format!("tcp:127.0.0.1:{}", pair.migration_port);
        dst.execute_raw(
            "migrate-incoming",
            Some(json!({"uri": uri, "exit-on-error": false})),
        )
        .await
        .map_err(|e| e.to_string())?;
        src.execute_raw(
            "migrate-set-parameters",
            Some(json!({"max-bandwidth": max_bandwidth})),
        )
        .await
        .map_err(|e| e.to_string())?;
        src.execute_raw("migrate", Some(json!({"uri": uri})))
            .await
            .map_err(|e| e.to_string())?;
        loop {
            let info = src
                .execute_raw("query-migrate", None)
                .await
                .map_err(|e| e.to_string())?;
            match info["status"].as_str() {
                Some("completed") => {
                    dst.execute_raw("cont", None).await.map_err(|e| e.to_string())?;
                    return info["total-time"].as_f64().ok_or("no total-time".to_string());
                }
                Some("failed") | Some("cancelled") => {
                    return Err(format!("migration ended {}", info["status"]))
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
}
