//! How a backend reports a request that failed.

use super::Side;

/// A failure reported by a backend, naming the side and the request that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[error("{message}")]
pub struct DriverError {
    /// The side whose request failed.
    pub side: Side,
    /// The request (e.g. the QMP command).
    pub request: String,
    /// What went wrong, naming the side and request (backends write it complete).
    pub message: String,
    /// The connection to that side is gone (the process died or closed its monitor).
    pub disconnected: bool,
}

impl DriverError {
    /// A request made before the driver connected to `side` (or after it lost it).
    pub fn not_connected(side: Side, request: &str) -> Self {
        DriverError {
            side,
            request: request.to_string(),
            message: format!("{side}: {request}: not connected"),
            disconnected: true,
        }
    }

    /// Several failures of one request as one error (e.g. each setting `restore` could
    /// not put back): `Ok` when there were none.
    pub fn all(request: &str, failures: Vec<DriverError>) -> Result<(), DriverError> {
        let Some(first) = failures.first() else {
            return Ok(());
        };
        Err(DriverError {
            side: first.side,
            request: request.to_string(),
            message: failures
                .iter()
                .map(|e| e.message.as_str())
                .collect::<Vec<_>>()
                .join("; "),
            disconnected: failures.iter().any(|e| e.disconnected),
        })
    }
}
