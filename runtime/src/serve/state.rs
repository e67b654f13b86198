//! What every route shares: the server's state, reading a request body
//! within its bound, and the time responses carry.

use super::engine::Engine;
use super::error::ApiError;
use super::metrics::Metrics;
use axum::body::Body;
use std::time::{SystemTime, UNIX_EPOCH};

/// What every route sees.
pub struct State {
    /// The model and slots.
    pub engine: Engine,
    /// The counters.
    pub metrics: Metrics,
    /// The key clients must send, if any.
    pub api_key: Option<String>,
    /// Largest body, bytes.
    pub max_body: usize,
    /// Agent mode: the policy's tools run here.
    pub agent: Option<super::agent::Agent>,
}

/// Reads a JSON body of at most `max_body` bytes.
pub(super) async fn read_json<T: serde::de::DeserializeOwned>(
    s: &State,
    body: Body,
) -> Result<T, ApiError> {
    let bytes = axum::body::to_bytes(body, s.max_body)
        .await
        .map_err(|_| ApiError::too_large(s.max_body))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_json(format!("the body is not the JSON expected: {e}")))
}

/// Seconds since the Unix epoch.
pub(super) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
