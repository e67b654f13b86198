//! Errors in OpenAI's shape: `{"error": {"message", "type", "param",
//! "code"}}` with the HTTP status clients branch on.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// One refusal or failure, as the client will see it.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong and what to do.
    pub message: String,
    /// OpenAI's error type (`invalid_request_error`, …).
    pub kind: &'static str,
    /// The request field at fault, if one.
    pub param: Option<String>,
    /// A machine-readable code, if one.
    pub code: Option<&'static str>,
}

impl ApiError {
    /// 400: the request is wrong in `param`.
    pub fn invalid(message: impl Into<String>, param: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param: Some(param.into()),
            code: None,
        }
    }

    /// 400 for a body that is not the JSON asked for.
    pub fn bad_json(message: impl Into<String>) -> ApiError {
        ApiError {
            code: Some("invalid_json"),
            param: None,
            ..ApiError::invalid(message, "")
        }
    }

    /// 400: the prompt does not fit the context.
    pub fn context_length(message: impl Into<String>) -> ApiError {
        ApiError {
            code: Some("context_length_exceeded"),
            param: Some("messages".into()),
            ..ApiError::invalid(message, "")
        }
    }

    /// 401: no or a wrong API key.
    pub fn unauthorized() -> ApiError {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            message: "invalid or missing API key: send `Authorization: Bearer KEY` with the key in the server's --api-key-file".into(),
            kind: "authentication_error",
            param: None,
            code: Some("invalid_api_key"),
        }
    }

    /// 404: no such endpoint.
    pub fn not_found(path: &str) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!("no endpoint {path}; warden serves /v1/chat/completions, /v1/completions, /completion, /v1/models, /props, /health, /tokenize, /apply-template and /metrics"),
            kind: "not_found_error",
            param: None,
            code: None,
        }
    }

    /// 405: the endpoint exists, not with this method.
    pub fn method(path: &str) -> ApiError {
        ApiError {
            status: StatusCode::METHOD_NOT_ALLOWED,
            message: format!("{path} does not take this method"),
            kind: "invalid_request_error",
            param: None,
            code: None,
        }
    }

    /// 413: the body is larger than the server takes.
    pub fn too_large(limit: usize) -> ApiError {
        ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: format!("the request body is over {limit} bytes (the server's --max-body)"),
            kind: "invalid_request_error",
            param: None,
            code: Some("request_too_large"),
        }
    }

    /// 503: every slot is busy and the queue is full.
    pub fn busy(queue: usize) -> ApiError {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: format!("the server is busy: every slot is generating and {queue} request(s) are queued; retry later"),
            kind: "server_error",
            param: None,
            code: Some("server_busy"),
        }
    }

    /// 500: the engine failed (the message says how).
    pub fn internal(err: &anyhow::Error) -> ApiError {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: format!("{err:#}"),
            kind: "server_error",
            param: None,
            code: None,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param.as_deref().filter(|p| !p.is_empty()),
            "code": self.code,
        }})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body())).into_response()
    }
}
