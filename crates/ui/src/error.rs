//! What a page or an endpoint answers when it cannot show what was asked: a status, a stable
//! code and a one-line message, as HTML for pages and as JSON for the endpoints.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;
use stint_ports::StoreError;

/// A failure of a page (shown as HTML).
#[derive(Debug)]
pub(crate) struct UiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl UiError {
    /// Nothing recorded under this name.
    pub(crate) fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            code,
            message: message.into(),
        }
    }

    /// A request this server refuses.
    pub(crate) fn refused(status: StatusCode, code: &'static str, message: &str) -> Self {
        Self {
            status,
            code,
            message: message.to_owned(),
        }
    }

    /// The same failure, answered as JSON.
    pub(crate) fn json(self) -> ApiError {
        ApiError(self)
    }
}

impl From<StoreError> for UiError {
    fn from(error: StoreError) -> Self {
        let (status, code) = match &error {
            StoreError::Conflict { .. } => (StatusCode::CONFLICT, "STORE_CONFLICT"),
            _ => (StatusCode::SERVICE_UNAVAILABLE, "STORE_UNAVAILABLE"),
        };
        Self {
            status,
            code,
            message: error.to_string(),
        }
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let body = crate::pages::layout(
            "error",
            html! {
                h1 { "Error" }
                p.error { code { (self.code) } ": " (self.message) }
                p { a href="/" { "back to the runs" } }
            },
            None,
        );
        (self.status, body).into_response()
    }
}

/// A failure of a JSON endpoint: `{"error": {"code", "message"}}`.
#[derive(Debug)]
pub(crate) struct ApiError(UiError);

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        Self(UiError::from(error))
    }
}

impl From<UiError> for ApiError {
    fn from(error: UiError) -> Self {
        Self(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": { "code": self.0.code, "message": self.0.message }
        });
        (self.0.status, Json(body)).into_response()
    }
}
